use super::*;

#[test]
fn a_bad_hand_off_is_rejected_with_the_field_named_though_its_outputs_stay_raw() {
    let body = br#"{"job": {"action": "create", "resource_type": "port", "resource_id": "a", "version": "one", "tenant_id": "t"}, "heat_stack": {"stack_id": "s", "tenant_id": "t", "stack_status": "CREATE_COMPLETE", "output": [{"a": 1}], "status_reason": "", "id": "port:a"}, "outputs_form": "python"}"#;
    let err = NormalizeRequest::decode(body).unwrap_err();
    assert!(err.detail.contains("job.version"), "{}", err.detail);
    let body = br#"{"job": {"action": "create", "resource_type": "port", "resource_id": "a", "version": 1, "tenant_id": "t"}, "heat_stack": {"stack_id": "s", "tenant_id": "t", "stack_status": "CREATE_COMPLETE", "output": [{"a": 1,}], "status_reason": "", "id": "port:a"}}"#;
    let err = NormalizeRequest::decode(body).unwrap_err();
    assert_eq!(err.kind, RejectKind::MalformedJson, "{}", err.detail);
}

#[test]
fn a_hand_off_with_a_duplicate_key_is_rejected_as_input_would_be() {
    let body = br#"{"job": {"action": "create", "resource_type": "port", "resource_id": "a", "version": 1, "version": 99, "tenant_id": "t"}, "heat_stack": {"stack_id": "s", "tenant_id": "t", "stack_status": "CREATE_COMPLETE", "output": [], "status_reason": "", "id": "port:a"}}"#;
    let err = NormalizeRequest::decode(body).unwrap_err();
    assert_eq!(err.kind, RejectKind::InvalidMessage);
    assert!(err.detail.contains("version"), "{}", err.detail);
}

#[test]
fn a_key_named_twice_in_a_hand_offs_outputs_is_named_with_its_path() {
    let body = br#"{"job": {"action": "create", "resource_type": "port", "resource_id": "a", "version": 1, "tenant_id": "t"}, "heat_stack": {"stack_id": "s", "tenant_id": "t", "stack_status": "CREATE_COMPLETE", "output": [{"a": [{"k": 1, "k": 2}]}], "status_reason": "", "id": "port:a"}, "outputs_form": "python"}"#;
    let err = NormalizeRequest::decode(body).unwrap_err();
    assert_eq!(err.kind, RejectKind::InvalidMessage);
    assert!(
        err.detail
            .starts_with("duplicate key heat_stack.output[0].a[0].k"),
        "{}",
        err.detail
    );
    // A field no stage reads is skipped unread, a key named twice in it with it.
    let body = br#"{"job": {"action": "create", "resource_type": "port", "resource_id": "a", "version": 1, "tenant_id": "t"}, "job_state": {"heat_outputs": [], "orchestration_state": "CREATE_COMPLETE", "note": {"x": 1, "x": 2}}, "status_reason": "", "outputs_form": "python"}"#;
    assert!(WrapRequest::decode(body).is_ok());
}

#[test]
fn an_order_key_reads_in_both_formats_and_orders_by_version_and_phase_only() {
    let old = br#"{"version":3,"phase":"final"}"#;
    let key = OrderKey::from_bytes(old).unwrap();
    assert_eq!(key.stage, None);
    assert_eq!(key.written_at, None);
    let order = key.order();
    let lineage = Lineage {
        written_at: "2026-11-27T08:00:00.000Z".into(),
        trace_id: "abc".into(),
    };
    let new = OrderKey::new(order, "normalize", &lineage).to_bytes();
    assert_eq!(
            &new[..],
            br#"{"version":3,"phase":"final","stage":"normalize","written_at":"2026-11-27T08:00:00.000Z","trace_id":"abc"}"#
        );
    // Readers that only know the order (older processes, the stages' guards) read both.
    assert_eq!(Order::from_bytes(&new), Some(order));
    assert_eq!(Order::from_bytes(old), Some(order));
    assert_eq!(OrderKey::from_bytes(&new).unwrap().order(), order);
    // The bare order is what an older process wrote, byte for byte.
    assert_eq!(order.to_bytes(), old);
}
