//! The pipeline end to end, in-process, against real RabbitMQ and etcd.

use std::time::Duration;

use crate::helpers::*;
use etcd_client::{EventType, WatchOptions};
use heat_pipeline::stages::StageName;

/// Publishes a marker result and waits for its `/state`: on a pipeline spawned with one
/// delivery at a time, every result published before it has then been through every stage.
async fn drain(pipeline: &TestPipeline) {
    pipeline
        .publish(&heat_result("create", "marker", 1, "CREATE_COMPLETE", ""))
        .await;
    pipeline.wait_for_state("marker", 1).await;
}

#[tokio::test]
async fn seed_create_writes_the_three_records_byte_for_byte() {
    let pipeline = TestPipeline::spawn("seed", 4).await;
    let job_state_key = pipeline.keys.job_state("ports", SEED_ID);
    let mut events = pipeline
        .etcd
        .watch_client()
        .watch(job_state_key.as_str(), Some(WatchOptions::new()))
        .await
        .unwrap();

    pipeline.publish(SEED_INPUT).await;
    pipeline.assert_seed_records().await;

    // job_state was written with the seed's bytes, then removed by wrap.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let response = tokio::time::timeout(PATIENCE, events.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        for event in response.events() {
            let value = event.kv().map(|kv| kv.value().to_vec()).unwrap_or_default();
            seen.push((event.event_type(), value));
        }
    }
    assert_eq!(seen[0], (EventType::Put, SEED_JOB_STATE.to_vec()));
    assert_eq!(seen[1].0, EventType::Delete);
    assert_eq!(pipeline.get(&job_state_key).await, None);
    pipeline.stop().await;
}

#[tokio::test]
async fn modify_to_version_2_replaces_the_state() {
    let pipeline = TestPipeline::spawn("modify", 4).await;
    pipeline.publish_seed().await;

    let modify = seed_with(&[
        ("\"create\"", "\"modify\""),
        ("\"version\": 1", "\"version\": 2"),
        ("CREATE_COMPLETE", "UPDATE_COMPLETE"),
        (
            "Stack CREATE completed successfully",
            "Stack UPDATE completed successfully",
        ),
        ("fa:16:3e:f7:60:7f", "fa:16:3e:00:00:02"),
    ]);
    pipeline.publish(&modify).await;
    let state = pipeline.wait_for_state(SEED_ID, 2).await;
    assert_eq!(state["state"]["worker_state"], "MODIFY_COMPLETED");
    assert_eq!(state["state"]["orchestration_state"], "UPDATE_COMPLETE");
    assert!(state["state"]["heat_outputs"]
        .as_str()
        .unwrap()
        .contains("fa:16:3e:00:00:02"));
    assert_eq!(state["error"], "");
    let stack = pipeline.heat_stack(SEED_ID).await.unwrap();
    assert!(String::from_utf8(stack)
        .unwrap()
        .contains("\"stack_status\": \"UPDATE_COMPLETE\""));
    pipeline.stop().await;
}

#[tokio::test]
async fn delete_without_a_stack_completes_the_delete() {
    let pipeline = TestPipeline::spawn("delete", 4).await;
    let delete = br#"{"job": {"action": "delete", "resource_type": "port", "resource_path": "ports", "resource_id": "gone-1", "version": 3, "tenant_id": "t"}, "stack": null}"#;
    pipeline.publish(delete).await;
    let state = pipeline
        .wait_for(&pipeline.keys.state("ports", "gone-1"), |_| true)
        .await;
    assert_eq!(
        state,
        br#"{"state": {"worker_state": "DELETE_COMPLETED", "heat_outputs": "[]", "orchestration_state": "DELETE_COMPLETE"}, "version": 3, "error": ""}"#
    );
    let stack = pipeline.heat_stack("gone-1").await.unwrap();
    assert_eq!(
        stack,
        br#"{"stack_id": "", "tenant_id": "t", "stack_status": "DELETE_COMPLETE", "output": [], "status_reason": "", "id": "port:gone-1"}"#
    );
    pipeline.stop().await;
}

#[tokio::test]
async fn a_failed_create_reports_the_reason() {
    let pipeline = TestPipeline::spawn("failed", 4).await;
    let reason = "Resource CREATE failed: Conflict: MAC address fa:16:3e:f7:60:7f is in use";
    pipeline
        .publish(&heat_result("create", "f-1", 1, "CREATE_FAILED", reason))
        .await;
    let state = pipeline.wait_for_state("f-1", 1).await;
    assert_eq!(state["state"]["worker_state"], "CREATE_FAILED");
    assert_eq!(state["state"]["orchestration_state"], "CREATE_FAILED");
    assert_eq!(state["error"], reason);

    // A rollback after a failed create is a failure too.
    pipeline
        .publish(&heat_result(
            "create",
            "f-2",
            1,
            "ROLLBACK_COMPLETE",
            "Quota exceeded",
        ))
        .await;
    let state = pipeline.wait_for_state("f-2", 1).await;
    assert_eq!(state["state"]["worker_state"], "CREATE_FAILED");
    assert_eq!(state["error"], "Quota exceeded");
    pipeline.stop().await;
}

#[tokio::test]
async fn in_progress_is_recorded_but_writes_no_state() {
    // Concurrency 1: messages are handled in publish order, so the marker proves the
    // in-progress result went through every stage before it.
    let pipeline = TestPipeline::spawn("progress", 1).await;
    pipeline
        .publish(&heat_result(
            "create",
            "p-1",
            1,
            "CREATE_IN_PROGRESS",
            "Stack CREATE started",
        ))
        .await;
    drain(&pipeline).await;

    assert_eq!(
        pipeline.get(&pipeline.keys.state("ports", "p-1")).await,
        None
    );
    let job_state = pipeline.job_state("p-1").await.unwrap();
    assert!(String::from_utf8(job_state)
        .unwrap()
        .contains("\"orchestration_state\": \"CREATE_IN_PROGRESS\""));

    // The final result of the same version then completes the job.
    pipeline
        .publish(&heat_result("create", "p-1", 1, "CREATE_COMPLETE", "done"))
        .await;
    let state = pipeline.wait_for_state("p-1", 1).await;
    assert_eq!(state["state"]["worker_state"], "CREATE_COMPLETED");
    assert_eq!(pipeline.job_state("p-1").await, None);
    pipeline.stop().await;
}

#[tokio::test]
async fn a_stale_version_never_replaces_a_newer_one() {
    let pipeline = TestPipeline::spawn("stale", 1).await;
    pipeline
        .publish(&heat_result(
            "create",
            "s-1",
            2,
            "CREATE_COMPLETE",
            "second",
        ))
        .await;
    pipeline.wait_for_state("s-1", 2).await;
    let stack_before = pipeline.heat_stack("s-1").await.unwrap();

    pipeline
        .publish(&heat_result("create", "s-1", 1, "CREATE_COMPLETE", "first"))
        .await;
    drain(&pipeline).await;

    let state = pipeline.wait_for_state("s-1", 2).await;
    assert_eq!(state["version"], 2);
    assert_eq!(pipeline.heat_stack("s-1").await.unwrap(), stack_before);
    assert_eq!(pipeline.job_state("s-1").await, None);
    pipeline.stop().await;
}

#[tokio::test]
async fn a_duplicate_changes_nothing() {
    let pipeline = TestPipeline::spawn("duplicate", 1).await;
    pipeline.publish_seed().await;
    let keys = [
        pipeline.keys.heat_stack("ports", SEED_ID),
        pipeline.keys.state("ports", SEED_ID),
    ];
    let mut revisions = Vec::new();
    for key in &keys {
        revisions.push(pipeline.mod_revision(key).await.unwrap());
    }

    pipeline.publish(SEED_INPUT).await;
    drain(&pipeline).await;

    for (key, revision) in keys.iter().zip(revisions) {
        assert_eq!(
            pipeline.mod_revision(key).await,
            Some(revision),
            "{key} was rewritten"
        );
    }
    assert_eq!(pipeline.get(&keys[1]).await.unwrap(), SEED_STATE);
    assert_eq!(pipeline.job_state(SEED_ID).await, None);
    pipeline.stop().await;
}

#[tokio::test]
async fn poison_messages_are_dead_lettered_and_the_next_is_processed() {
    let pipeline = TestPipeline::spawn("poison", 4).await;
    let poison: Vec<(&[u8], &str)> = vec![
        (b"this is not json", "malformed_json"),
        (b"\xff\xfe\x00garbage", "malformed_json"),
        (b"", "malformed_json"),
        (br#"{"job": {"action": "create"}}"#, "invalid_message"),
        (br#"{"job": {"action": "create", "resource_type": "port", "resource_id": "x", "version": "1", "tenant_id": "t"}, "stack": {}}"#, "invalid_message"),
        (br#"{"job": {"action": "rebuild", "resource_type": "port", "resource_id": "x", "version": 1, "tenant_id": "t"}}"#, "invalid_message"),
    ];
    for (body, _) in &poison {
        pipeline.publish(body).await;
    }
    let mismatch = heat_result("create", "m-1", 1, "DELETE_COMPLETE", "");
    pipeline.publish(&mismatch).await;
    pipeline.publish(SEED_INPUT).await;

    assert_eq!(pipeline.wait_for_state(SEED_ID, 1).await["error"], "");
    let mut letters = pipeline
        .take_dead_letters(StageName::Capture, poison.len() + 1)
        .await;
    letters.sort_by(|a, b| a.body.cmp(&b.body));
    let mut expected: Vec<(Vec<u8>, &str)> = poison.iter().map(|(b, c)| (b.to_vec(), *c)).collect();
    expected.push((mismatch.clone(), "status_mismatch"));
    expected.sort();
    for (letter, (body, class)) in letters.iter().zip(&expected) {
        assert_eq!(
            &letter.body, body,
            "the dead letter keeps the original bytes"
        );
        assert_eq!(letter.stage.as_deref(), Some("capture"));
        assert_eq!(letter.class.as_deref(), Some(*class), "{letter:?}");
        assert!(!letter.reason.as_deref().unwrap_or("").is_empty());
        assert_eq!(letter.routing_key.as_deref(), Some("heat.result"));
    }
    assert_eq!(pipeline.heat_stack("m-1").await, None);
    pipeline.stop().await;
}

#[tokio::test]
async fn a_bad_hand_off_is_dead_lettered_by_the_stage_that_got_it() {
    let pipeline = TestPipeline::spawn("handoff", 2).await;
    pipeline
        .publish_to(StageName::Normalize, br#"{"job": 7}"#)
        .await;
    pipeline.publish_to(StageName::Wrap, b"[]").await;
    let normalize = pipeline.take_dead_letters(StageName::Normalize, 1).await;
    assert_eq!(normalize[0].stage.as_deref(), Some("normalize"));
    assert!(normalize[0].reason.as_deref().unwrap().contains("job"));
    let wrap = pipeline.take_dead_letters(StageName::Wrap, 1).await;
    assert_eq!(wrap[0].routing_key.as_deref(), Some("stage.wrap"));
    pipeline.stop().await;
}

#[tokio::test]
async fn a_record_over_the_size_limit_is_dead_lettered() {
    let pipeline = TestPipeline::spawn("large", 2).await;
    let big = "x".repeat(2 * 1024 * 1024);
    let body = serde_json::to_vec(&serde_json::json!({
        "job": {"action": "create", "resource_type": "port", "resource_id": "big", "version": 1, "tenant_id": "t"},
        "stack": {"stack_name": "port_big", "stack_status": "CREATE_COMPLETE",
                  "outputs": [{"output_key": "blob", "output_value": big}]}
    }))
    .unwrap();
    pipeline.publish(&body).await;
    let letters = pipeline.take_dead_letters(StageName::Capture, 1).await;
    assert_eq!(letters[0].class.as_deref(), Some("record_too_large"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(pipeline.heat_stack("big").await, None);
    pipeline.stop().await;
}

#[tokio::test]
async fn hostile_input_is_dead_lettered_with_a_reason_and_never_crashes_a_stage() {
    let pipeline = TestPipeline::spawn("hostile", 4).await;
    let job = r#""job": {"action": "create", "resource_type": "port", "resource_id": "h", "version": 1, "tenant_id": "t"}"#;
    let deep = format!(
        r#"{{{job}, "stack": {{"stack_name": "s", "stack_status": "CREATE_COMPLETE", "outputs": [{{"output_value": {}{}}}]}}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let twenty_mb = serde_json::to_vec(&serde_json::json!({
        "job": {"action": "create", "resource_type": "port", "resource_id": "h", "version": 1, "tenant_id": "t"},
        "stack": {"stack_name": "s", "stack_status": "CREATE_COMPLETE",
                  "outputs": [{"output_key": "blob", "output_value": "y".repeat(20 * 1024 * 1024)}]}
    }))
    .unwrap();
    let mut non_utf8 = format!(r#"{{{job}, "stack": {{"stack_name": "s", "stack_status": "CREATE_COMPLETE", "stack_status_reason": "X"}}}}"#).into_bytes();
    let at = non_utf8.iter().rposition(|b| *b == b'X').unwrap();
    non_utf8[at] = 0xff;

    let hostile: Vec<(&str, Vec<u8>, &str)> = vec![
        ("nested 10,000 deep", deep.into_bytes(), "malformed_json"),
        ("20 MB body", twenty_mb, "record_too_large"),
        ("non-UTF-8 inside a string", non_utf8, "malformed_json"),
        (
            "wrong types everywhere",
            br#"{"job": {"action": 1, "resource_type": [], "resource_id": {}, "version": "one", "tenant_id": null}, "stack": 7}"#.to_vec(),
            "invalid_message",
        ),
        (
            "negative version",
            br#"{"job": {"action": "delete", "resource_type": "port", "resource_id": "h", "version": -3, "tenant_id": "t"}}"#.to_vec(),
            "invalid_message",
        ),
        (
            "non-integer version",
            br#"{"job": {"action": "delete", "resource_type": "port", "resource_id": "h", "version": 2.5, "tenant_id": "t"}}"#.to_vec(),
            "invalid_message",
        ),
        (
            "duplicate keys",
            format!(r#"{{{job}, "stack": {{"stack_name": "s", "stack_status": "CREATE_COMPLETE", "stack_status": "CREATE_FAILED"}}}}"#).into_bytes(),
            "invalid_message",
        ),
    ];
    for (_, body, _) in &hostile {
        pipeline.publish(body).await;
    }
    pipeline.publish_seed().await;

    let letters = pipeline
        .take_dead_letters(StageName::Capture, hostile.len())
        .await;
    for (what, body, class) in &hostile {
        let letter = letters
            .iter()
            .find(|l| &l.body == body)
            .unwrap_or_else(|| panic!("{what}: no dead letter"));
        assert_eq!(
            letter.class.as_deref(),
            Some(*class),
            "{what}: {:?}",
            letter.reason
        );
        assert!(!letter.reason.as_deref().unwrap_or("").is_empty(), "{what}");
    }
    assert_eq!(pipeline.heat_stack("h").await, None);
    pipeline.stop().await;
}
