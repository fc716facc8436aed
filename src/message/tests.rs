use super::*;

const SEED: &[u8] = include_bytes!("../../tests/fixtures/seed/heat_result.port.json");

#[test]
fn decodes_the_seed() {
    let result = HeatResult::decode(SEED).unwrap();
    assert_eq!(result.job.action, Action::Create);
    assert_eq!(result.job.path(), "ports");
    let outputs = result.stack.unwrap().outputs.unwrap();
    let values: Vec<Value> = serde_json::from_str(outputs.as_str()).unwrap();
    assert_eq!(values.len(), 5);
}

#[test]
fn accepts_the_wrapped_stack_body() {
    let mut doc: Value = serde_json::from_slice(SEED).unwrap();
    let stack = doc["stack"].take();
    doc["stack"] = serde_json::json!({ "stack": stack });
    let body = serde_json::to_vec(&doc).unwrap();
    assert_eq!(
        HeatResult::decode(&body).unwrap(),
        HeatResult::decode(SEED).unwrap()
    );
}

#[test]
fn resource_path_defaults_to_plural_type() {
    let body = br#"{"job": {"action": "delete", "resource_type": "port", "resource_id": "a", "version": 2, "tenant_id": "t"}}"#;
    let result = HeatResult::decode(body).unwrap();
    assert_eq!(result.job.path(), "ports");
    assert!(result.stack.is_none());
}

fn rejection(body: &[u8]) -> Rejection {
    HeatResult::decode(body).unwrap_err()
}

#[test]
fn names_what_is_wrong() {
    let cases: &[(&[u8], RejectKind, &str)] = &[
            (b"", RejectKind::MalformedJson, "empty body"),
            (b"{not json", RejectKind::MalformedJson, "key must be a string"),
            (b"\xff\xfe", RejectKind::MalformedJson, ""),
            (
                br#"{"job": {"action": "delete", "resource_type": "port", "resource_id": "a", "version": 1, "tenant_id": "t"}} }"#,
                RejectKind::MalformedJson,
                "trailing characters",
            ),
            (br#"{"stack": null}"#, RejectKind::InvalidMessage, "missing field `job`"),
            (
                br#"{"job": {"action": "create", "resource_type": "port", "resource_id": "a", "version": "1", "tenant_id": "t"}}"#,
                RejectKind::InvalidMessage,
                "job.version: invalid type",
            ),
            (
                br#"{"job": {"action": "create", "resource_type": "port", "resource_id": "a", "version": -1, "tenant_id": "t"}}"#,
                RejectKind::InvalidMessage,
                "job.version",
            ),
            (
                br#"{"job": {"action": "create", "resource_type": "port", "resource_id": "a", "version": 1.5, "tenant_id": "t"}}"#,
                RejectKind::InvalidMessage,
                "job.version",
            ),
            (
                br#"{"job": {"action": "explode", "resource_type": "port", "resource_id": "a", "version": 1, "tenant_id": "t"}}"#,
                RejectKind::InvalidMessage,
                "job.action: unknown variant `explode`",
            ),
            (
                br#"{"job": {"action": "create", "resource_type": "port", "resource_id": "a/b", "version": 1, "tenant_id": "t"}}"#,
                RejectKind::InvalidMessage,
                "job.resource_id",
            ),
            (
                br#"{"job": {"action": "create", "resource_type": "port", "resource_id": "a", "version": 1, "tenant_id": "t"}}"#,
                RejectKind::InvalidMessage,
                "only a delete may omit",
            ),
            (
                br#"{"job": {"action": "create", "resource_type": "port", "resource_id": "a", "version": 1, "tenant_id": "t"}, "stack": {"stack_name": "x"}}"#,
                RejectKind::InvalidMessage,
                "missing field `stack_status`",
            ),
            (
                br#"{"job": {"action": "delete", "action": "create", "resource_type": "port", "resource_id": "a", "version": 1, "tenant_id": "t"}}"#,
                RejectKind::InvalidMessage,
                "job: duplicate field `action`",
            ),
            (
                br#"{"job": {"action": "create", "resource_type": "port", "resource_id": "a", "version": 1, "tenant_id": "t"}, "stack": {"stack_name": "x", "stack_status": "CREATE_COMPLETE", "outputs": [{"output_key": "a", "output_key": "b"}]}}"#,
                RejectKind::InvalidMessage,
                "duplicate key stack.outputs[0].output_key",
            ),
            (
                br#"{"job": {"action": "create", "resource_type": "port", "resource_id": "a", "version": 1, "tenant_id": "t"}, "stack": {"stack_name": "x", "stack_status": "CREATE_COMPLETE", "outputs": [1]}}"#,
                RejectKind::InvalidMessage,
                "stack.outputs[0]",
            ),
            (
                br#"{"job": {"action": "create", "resource_type": "port", "resource_id": "a", "version": 1, "tenant_id": "t"}, "stack": {"stack_name": "x", "stack_status": "CREATE_COMPLETE", "outputs": "none"}}"#,
                RejectKind::InvalidMessage,
                "stack.outputs: invalid type: string \"none\", expected a sequence",
            ),
            (
                br#"{"job": {"action": "create", "resource_type": "port", "resource_id": "a", "version": 1, "tenant_id": "t"}, "stack": {"stack": {"stack_name": "x", "stack_status": "CREATE_COMPLETE", "outputs": {}}}}"#,
                RejectKind::InvalidMessage,
                "stack.outputs: invalid type: map, expected a sequence",
            ),
        ];
    for (body, kind, needle) in cases {
        let r = rejection(body);
        assert_eq!(r.kind, *kind, "{r} for {}", String::from_utf8_lossy(body));
        assert!(r.detail.contains(needle), "{r:?} should mention {needle:?}");
    }
}

fn with_id(id: &str, version: u64) -> Vec<u8> {
    serde_json::to_vec(
        &serde_json::json!({"job": {"action": "delete", "resource_type": "port",
            "resource_id": id, "version": version, "tenant_id": "t"}}),
    )
    .unwrap()
}

#[test]
fn key_segments_are_bounded_and_plain() {
    assert!(HeatResult::decode(&with_id(&"a".repeat(MAX_KEY_SEGMENT_BYTES), 1)).is_ok());
    let long = rejection(&with_id(&"a".repeat(1_200_000), 1));
    assert_eq!(long.kind, RejectKind::InvalidMessage);
    assert!(long.detail.contains("1200000 bytes"), "{long}");
    assert!(
        long.detail.len() < 200,
        "the reason does not echo the value"
    );
    for bad in [
        ".",
        "..",
        "a\nb",
        "a\u{1b}[2Jb",
        "\u{202E}gnp.exe",
        "a\u{2066}b",
    ] {
        let r = rejection(&with_id(bad, 1));
        assert_eq!(r.kind, RejectKind::InvalidMessage, "{bad:?}");
        assert!(r.detail.starts_with("job.resource_id"), "{r}");
        assert!(
            !r.detail.contains(['\n', '\u{1b}', '\u{202E}', '\u{2066}']),
            "{r:?}"
        );
    }
    // Dots inside a segment are ordinary.
    assert!(HeatResult::decode(&with_id("a.b..c", 1)).is_ok());
}

#[test]
fn a_version_has_an_upper_bound() {
    assert!(HeatResult::decode(&with_id("a", MAX_VERSION)).is_ok());
    let r = rejection(&with_id("a", MAX_VERSION + 1));
    assert!(r.detail.contains("job.version"), "{r}");
}

#[test]
fn deep_nesting_is_rejected_not_overflowed() {
    let mut body = "[".repeat(10_000);
    body.push_str(&"]".repeat(10_000));
    assert_eq!(rejection(body.as_bytes()).kind, RejectKind::MalformedJson);
}

/// The seed with `edit` applied to its stack, in the plain form and in Heat's body form.
fn seed_in_both_forms(edit: impl Fn(&mut Value)) -> [Vec<u8>; 2] {
    let mut doc: Value = serde_json::from_slice(SEED).unwrap();
    edit(&mut doc["stack"]);
    let plain = serde_json::to_string(&doc).unwrap();
    let stack = doc["stack"].take();
    doc["stack"] = serde_json::json!({ "stack": stack });
    let heat = serde_json::to_string(&doc).unwrap();
    [plain, heat].map(String::into_bytes)
}

#[test]
fn a_key_named_twice_in_what_capture_reads_is_refused_in_either_form() {
    // A `Value` cannot hold a repeated key: the edit leaves a marker the text replaces.
    let marker = r#""mark": 0"#;
    let forms = seed_in_both_forms(|stack| {
        stack["outputs"][3]["output_value"]["mark"] = 0.into();
        stack["stack_status_reason"] = "done".into();
    });
    for body in forms {
        let text = String::from_utf8(body).unwrap().replace(':', ": ");
        assert!(HeatResult::decode(text.as_bytes()).is_ok(), "{text}");
        let outputs = text.replacen(marker, r#""m": 0, "m": 1"#, 1);
        let r = rejection(outputs.as_bytes());
        assert_eq!(r.kind, RejectKind::InvalidMessage, "{r}");
        assert!(r.detail.contains("outputs[3].output_value.m"), "{r}");
        let status = text.replacen(
            r#""stack_status_reason""#,
            r#""stack_status": "x", "stack_status_reason""#,
            1,
        );
        let r = rejection(status.as_bytes());
        assert!(r.detail.contains("stack_status"), "{r}");
    }
}

#[test]
fn a_key_named_twice_in_a_field_capture_ignores_is_skipped_with_it_in_the_plain_form() {
    let [plain, _] = seed_in_both_forms(|stack| stack["parameters"] = serde_json::json!({"p": 1}));
    let text = String::from_utf8(plain).unwrap();
    let repeated = text.replacen(r#""p":1"#, r#""p":1,"p":2"#, 1);
    assert_ne!(repeated, text);
    assert_eq!(
        HeatResult::decode(repeated.as_bytes()).unwrap(),
        HeatResult::decode(SEED).unwrap()
    );
}
