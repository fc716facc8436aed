use super::*;
use crate::stages::test_support::*;
use crate::stages::{Capture, Normalize};

const ID: &str = "23464cbc-d910-430a-93f7-3776ea07f992";

/// Runs all three stages over `body`, returning wrap's decision.
fn pipeline(store: &mut Vec<(String, Vec<u8>)>, body: &[u8]) -> Option<Decision> {
    let to_wrap = up_to_wrap(store, body)?;
    Some(step(
        &Wrap {
            keys: Keyspace::new("", "v2.0"),
        },
        store,
        &to_wrap,
    ))
}

/// Runs capture and normalize over `body`, returning normalize's hand-off to wrap.
fn up_to_wrap(store: &mut Vec<(String, Vec<u8>)>, body: &[u8]) -> Option<Vec<u8>> {
    let keys = Keyspace::new("", "v2.0");
    let to_normalize = step(&Capture { keys: keys.clone() }, store, body).handoff?;
    step(&Normalize { keys }, store, &to_normalize).handoff
}

fn seed_with(from: &str, to: &str) -> String {
    String::from_utf8(SEED_INPUT.to_vec())
        .unwrap()
        .replace(from, to)
}

#[test]
fn a_large_job_state_is_read_not_guessed() {
    let big = "x".repeat(MAX_GUESSED_BYTES);
    let body = seed_with("\"Virtual network.\"", &format!("\"{big}\""));
    let keys = Keyspace::new("", "v2.0");
    let mut store = vec![];
    let to_normalize = step(&Capture { keys: keys.clone() }, &mut store, body.as_bytes())
        .handoff
        .unwrap();
    let to_wrap = step(&Normalize { keys: keys.clone() }, &mut store, &to_normalize)
        .handoff
        .unwrap();
    let wrap = Wrap { keys };
    let input = wrap.decode(&to_wrap).unwrap();
    let guess = wrap.expected(&input, &wrap.reads(&input), wrap.inferred(&input));
    assert_eq!(guess, None);
}

#[test]
fn the_seed_gives_all_three_records_byte_for_byte() {
    let mut store = vec![];
    let keys = Keyspace::new("", "v2.0");
    let capture = Capture { keys: keys.clone() };
    let normalize = Normalize { keys: keys.clone() };
    let to_normalize = step(&capture, &mut store, SEED_INPUT).handoff.unwrap();
    let to_wrap = step(&normalize, &mut store, &to_normalize).handoff.unwrap();
    assert_eq!(
        get(&store, &keys.job_state("ports", ID)).unwrap(),
        SEED_JOB_STATE
    );
    let decision = step(&Wrap { keys: keys.clone() }, &mut store, &to_wrap);
    assert_eq!(decision.outcome, Outcome::Written);
    assert_eq!(
        get(&store, &keys.heat_stack("ports", ID)).unwrap(),
        SEED_HEAT_STACKS
    );
    assert_eq!(get(&store, &keys.state("ports", ID)).unwrap(), SEED_STATE);
    assert_eq!(
        get(&store, &keys.job_state("ports", ID)),
        None,
        "wrap removes job_state"
    );
}

/// During a rolling upgrade a stage meets hand-offs of an older one, which carried the
/// outputs in serde_json's compact form and no `outputs_form`: they give the same bytes.
#[test]
fn hand_offs_of_an_older_stage_give_the_seed_records_byte_for_byte() {
    /// A hand-off as an older stage wrote it: parsed into a tree, encoded compact,
    /// without `outputs_form`.
    fn older(handoff: &[u8]) -> Vec<u8> {
        let mut value: serde_json::Value = serde_json::from_slice(handoff).unwrap();
        value
            .as_object_mut()
            .unwrap()
            .remove("outputs_form")
            .unwrap();
        let compact = serde_json::to_vec(&value).unwrap();
        assert!(!compact.windows(2).any(|w| w == b", "), "compact form");
        compact
    }
    let keys = Keyspace::new("", "v2.0");
    let capture = Capture { keys: keys.clone() };
    let normalize = Normalize { keys: keys.clone() };
    let mut store = vec![];
    let to_normalize = step(&capture, &mut store, SEED_INPUT).handoff.unwrap();
    let to_wrap = step(&normalize, &mut store, &older(&to_normalize))
        .handoff
        .unwrap();
    assert_eq!(
        get(&store, &keys.job_state("ports", ID)).unwrap(),
        SEED_JOB_STATE
    );
    step(&Wrap { keys: keys.clone() }, &mut store, &older(&to_wrap));
    assert_eq!(get(&store, &keys.state("ports", ID)).unwrap(), SEED_STATE);
}

#[test]
fn modify_failed_and_delete_map_to_their_worker_states() {
    let cases = [
        (
            seed_with("\"create\"", "\"modify\"").replace("CREATE_COMPLETE", "UPDATE_COMPLETE"),
            "MODIFY_COMPLETED",
            "",
        ),
        (
            seed_with("CREATE_COMPLETE", "CREATE_FAILED").replace(
                "Stack CREATE completed successfully",
                "Resource CREATE failed: quota",
            ),
            "CREATE_FAILED",
            "Resource CREATE failed: quota",
        ),
        (
            seed_with("CREATE_COMPLETE", "ROLLBACK_COMPLETE")
                .replace("Stack CREATE completed successfully", ""),
            "CREATE_FAILED",
            "ROLLBACK_COMPLETE (Heat gave no reason)",
        ),
    ];
    for (body, worker_state, error) in cases {
        let mut store = vec![];
        pipeline(&mut store, body.as_bytes()).unwrap();
        let state: serde_json::Value =
            serde_json::from_slice(get(&store, &format!("/state/v2.0/ports/{ID}")).unwrap())
                .unwrap();
        assert_eq!(state["state"]["worker_state"], worker_state);
        assert_eq!(state["error"], error);
    }

    let delete = br#"{"job": {"action": "delete", "resource_type": "port", "resource_id": "r1", "version": 4, "tenant_id": "t"}}"#;
    let mut store = vec![];
    pipeline(&mut store, delete).unwrap();
    assert_eq!(
            get(&store, "/state/v2.0/ports/r1").unwrap(),
            br#"{"state": {"worker_state": "DELETE_COMPLETED", "heat_outputs": "[]", "orchestration_state": "DELETE_COMPLETE"}, "version": 4, "error": ""}"#
        );
}

#[test]
fn in_progress_writes_no_state_and_keeps_job_state() {
    let mut store = vec![];
    let running = seed_with("CREATE_COMPLETE", "CREATE_IN_PROGRESS");
    let decision = pipeline(&mut store, running.as_bytes()).unwrap();
    assert_eq!(decision.outcome, Outcome::NotFinal);
    assert_eq!(get(&store, &format!("/state/v2.0/ports/{ID}")), None);
    assert!(get(&store, &format!("/esi-worker/job_state/v2.0/ports/{ID}")).is_some());
}

#[test]
fn an_older_wrap_never_replaces_state_nor_deletes_a_newer_job_state() {
    let keys = Keyspace::new("", "v2.0");
    let wrap = Wrap { keys: keys.clone() };
    let v2 = seed_with("\"version\": 1", "\"version\": 2");
    let mut store = vec![];

    // v1 reaches wrap's queue, then v2 runs through capture and normalize.
    let v1_to_wrap = up_to_wrap(&mut store, SEED_INPUT).unwrap();
    let v2_to_wrap = up_to_wrap(&mut store, v2.as_bytes()).unwrap();

    // v2's wrap first, then the late v1.
    assert_eq!(
        step(&wrap, &mut store, &v2_to_wrap).outcome,
        Outcome::Written
    );
    let late = step(&wrap, &mut store, &v1_to_wrap);
    assert_eq!(late.outcome, Outcome::Stale);
    assert!(late.writes.is_empty());
    let state: serde_json::Value =
        serde_json::from_slice(get(&store, &keys.state("ports", ID)).unwrap()).unwrap();
    assert_eq!(state["version"], 2);

    // The reverse: v1's wrap while v2's job_state is stored must leave it alone.
    let mut store = vec![];
    let v1_to_wrap = up_to_wrap(&mut store, SEED_INPUT).unwrap();
    up_to_wrap(&mut store, v2.as_bytes());
    let early = step(&wrap, &mut store, &v1_to_wrap);
    assert_eq!(early.outcome, Outcome::Written);
    assert!(
        get(&store, &keys.job_state("ports", ID)).is_some(),
        "v2's job_state stays"
    );
}

#[test]
fn a_duplicate_wrap_changes_nothing() {
    let mut store = vec![];
    let keys = Keyspace::new("", "v2.0");
    let to_normalize = step(&Capture { keys: keys.clone() }, &mut store, SEED_INPUT)
        .handoff
        .unwrap();
    let to_wrap = step(&Normalize { keys: keys.clone() }, &mut store, &to_normalize)
        .handoff
        .unwrap();
    step(&Wrap { keys: keys.clone() }, &mut store, &to_wrap);
    let before = store.clone();
    let again = step(&Wrap { keys }, &mut store, &to_wrap);
    assert_eq!(again.outcome, Outcome::Duplicate);
    assert!(again.writes.is_empty());
    assert_eq!(store, before);
}
