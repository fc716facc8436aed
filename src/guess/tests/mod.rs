//! The guess's tests: one resource's life through the three stages, each with its own cache
//! as in a process, on an in-memory etcd ([`harness`]); and each touch point alone.

mod harness;

use std::collections::BTreeMap;

use super::*;
use crate::keys::Keyspace;
use crate::plan::{Guard, Kept, Outcome, Remembered};
use crate::records::Encoded;
use crate::stages::test_support::{lineage, snapshot as read_of, step, SEED_INPUT};
use crate::stages::{Capture, Normalize, Wrap};
use harness::*;

#[test]
fn a_life_decided_on_guesses_is_decided_as_on_reads_at_one_request_a_stage() {
    let mut pipeline = Pipeline::new();
    let mut wrapped = vec![];
    for body in life() {
        let handled = pipeline.run(&body);
        assert_eq!(
            costs(&handled),
            [(1, 0); 3],
            "one request a stage, no retry"
        );
        wrapped.push(handled[2].decision.outcome);
        pipeline.assert_same_records();
    }
    use Outcome::*;
    assert_eq!(wrapped, [NotFinal, Written, Written, Written, Written]);
    assert_eq!(
        pipeline.guesses_checked(),
        15,
        "every decision was on a guess"
    );
    let state = &pipeline.etcd.keys["/state/v2.0/ports/23464cbc-d910-430a-93f7-3776ea07f992"];
    assert!(String::from_utf8_lossy(&state.0).contains("DELETE_COMPLETED"));

    // Redeliveries, guessed from the cache too: an older result is stale at capture, and
    // the last one a duplicate there, stale at normalize (wrap removed its job_state).
    let [_, _, modified, _, deleted] = life();
    let old = pipeline.run(&modified);
    assert_eq!(costs(&old), [(1, 0)]);
    assert_eq!(old[0].decision.outcome, Stale);
    let again = pipeline.run(&deleted);
    assert_eq!(costs(&again), [(1, 0); 2]);
    let outcomes: Vec<_> = again.iter().map(|h| h.decision.outcome).collect();
    assert_eq!(outcomes, [Duplicate, Stale]);
    assert_eq!(pipeline.guesses_checked(), 18);
    pipeline.assert_same_records();
}

#[test]
fn a_large_record_only_compared_is_remembered_as_its_digest_and_compares_the_same() {
    let padding = "x".repeat(DIGEST_ABOVE);
    let created = heat_result_with("create", 1, "CREATE_COMPLETE", &padding);
    let modified = heat_result_with("modify", 2, "UPDATE_COMPLETE", &padding);
    let mut pipeline = Pipeline::new();
    pipeline.run(&created);
    pipeline.run(&modified);
    let heat_stack = "/esi-worker/heat_stacks/v2.0/ports/23464cbc-d910-430a-93f7-3776ea07f992";
    let remembered = pipeline
        .capture
        .cache
        .recall_all([heat_stack.to_string()].iter());
    let kept = remembered.unwrap().pop().unwrap().1.unwrap().kept;
    assert!(matches!(kept, Kept::Digest(_)), "kept as its digest");

    // A redelivery is told a duplicate from the digest, on a guess, as on a read...
    let again = pipeline.run(&modified);
    assert_eq!(costs(&again), [(1, 0); 2]);
    let outcomes: Vec<_> = again.iter().map(|h| h.decision.outcome).collect();
    assert_eq!(outcomes, [Outcome::Duplicate, Outcome::Stale]);
    // ...and a different result of the same version and phase is stale, not a duplicate.
    let other = heat_result_with("modify", 2, "UPDATE_COMPLETE", &padding.replace('x', "y"));
    let other = pipeline.run(&other);
    assert_eq!(costs(&other), [(1, 0)]);
    assert_eq!(other[0].decision.outcome, Outcome::Stale);
    assert!(
        pipeline.guesses_checked() >= 8,
        "decided on guesses, each checked"
    );
    pipeline.assert_same_records();
}

#[test]
fn a_guess_whose_guards_fail_costs_one_retry_and_ends_in_the_same_records() {
    let [_, created, modified, failed, deleted] = life();

    // Another process handles the modify: this one's cache is stale at every stage.
    let mut pipeline = Pipeline::new();
    pipeline.run(&created);
    pipeline.elsewhere(&modified);
    let handled = pipeline.run(&failed);
    assert_eq!(costs(&handled), [(2, 1); 3]);
    pipeline.assert_same_records();

    // Normalize runs ahead of wrap: it anticipated the job_state removed, but wrap has not
    // removed it yet; and the late wrap expects its own job_state, replaced meanwhile.
    let mut pipeline = Pipeline::new();
    let v1 = pipeline.capture(&created).decision.handoff.unwrap();
    let v1 = pipeline.normalize(&v1).decision.handoff.unwrap();
    let v2 = pipeline.capture(&modified).decision.handoff.unwrap();
    let v2 = pipeline.normalize(&v2);
    assert_eq!((v2.requests, v2.retries), (2, 1));
    let late = pipeline.wrap(&v1);
    assert_eq!((late.requests, late.retries), (2, 1));
    assert_eq!(late.decision.outcome, Outcome::Written);
    let v2 = pipeline.wrap(&v2.decision.handoff.unwrap());
    assert_eq!(
        (v2.requests, v2.retries),
        (1, 0),
        "the cache learned the retry's read"
    );
    pipeline.assert_same_records();

    // A restarted process has no cache: a redelivery's first-version guess is wrong, and
    // the keys the refused commit returned show it done (nothing to write, no 2nd request).
    let mut pipeline = Pipeline::new();
    pipeline.run(&created);
    pipeline.restart();
    let again = pipeline.run(&created);
    assert_eq!(costs(&again), [(1, 1); 2]);
    pipeline.run(&deleted);
    pipeline.assert_same_records();
}

#[test]
fn a_commit_is_recalled_guarded_by_its_revision_as_the_stage_anticipates_it() {
    let mut pipeline = Pipeline::new();
    let [_, created, modified, ..] = life();
    let v1 = pipeline.capture(&created).decision.handoff.unwrap();
    let v2 = pipeline.capture(&modified).decision.handoff.unwrap();
    let normalize = &pipeline.normalize.stage;
    let (v1, v2) = (
        normalize.decode(&v1).unwrap(),
        normalize.decode(&v2).unwrap(),
    );
    let reads = normalize.reads(&v2);
    let (job_state, order) = (reads[0].as_str(), reads[1].as_str());
    let mut cache = RecordCache::default();
    assert_eq!(snapshot(normalize, &v2, &reads, || &mut cache), None);

    let writes = normalize
        .decide(&v1, &read_of(&reads, &[]), &lineage())
        .unwrap()
        .writes;
    learn_commit(normalize, &v1, writes.clone(), 7, || &mut cache);
    let guess = snapshot(normalize, &v2, &reads, || &mut cache).unwrap();
    assert!(guess.is_guess());
    let guards: BTreeMap<&str, Guard> = guess.guards().collect();
    // A final job: wrap will have removed its job_state, remembered absent.
    assert_eq!(guards[job_state], Guard::Revision(0));
    assert_eq!(guards[order], Guard::Revision(7));
    assert_eq!(
        writes[1],
        Write::Put {
            key: order.to_string(),
            value: Encoded::stored(guess.value(order).unwrap()),
        }
    );
}

#[test]
fn what_the_message_tells_is_completed_from_the_cache_or_else_read() {
    let mut pipeline = Pipeline::new();
    let [_, created, modified, ..] = life();
    let wrote = pipeline.run(&created).pop().unwrap().decision.writes;
    let v2 = pipeline.capture(&modified).decision.handoff.unwrap();
    let v2 = pipeline.normalize(&v2).decision.handoff.unwrap();
    let wrap = &pipeline.wrap.stage;
    let input = wrap.decode(&v2).unwrap();
    let reads = wrap.reads(&input);

    // A later version, and nothing remembered: read.
    let mut cache = RecordCache::default();
    assert_eq!(snapshot(wrap, &input, &reads, || &mut cache), None);

    // `/state` remembered from the commit, job_state and its order from the hand-off.
    let revision = pipeline.etcd.keys[&reads[0]].1;
    learn_commit(wrap, &input, wrote, revision, || &mut cache);
    let guess = snapshot(wrap, &input, &reads, || &mut cache).unwrap();
    let guards: BTreeMap<&str, Guard> = guess.guards().collect();
    assert_eq!(
        guards[reads[0].as_str()],
        Guard::Revision(revision),
        "/state"
    );
    assert!(
        matches!(guards[reads[1].as_str()], Guard::Value(_)),
        "job_state"
    );
    assert!(
        matches!(guards[reads[2].as_str()], Guard::Value(_)),
        "its order"
    );
    assert!(pipeline.etcd.guards_hold(&guess), "and it holds");
}

#[test]
fn a_read_is_learned_but_not_what_was_assumed() {
    let keys = ["/assumed".to_string(), "/read".to_string()];
    let mut found = read_of(&keys[1..], &[("/read", b"r")]);
    found.assume(keys[0].clone(), b"a".to_vec());
    let mut cache = RecordCache::default();
    let capture = Capture {
        keys: Keyspace::new("", "v2.0"),
    };
    learn_read(&capture, &found, || &mut cache);
    assert!(cache.recall_all(keys[1..].iter()).is_some());
    assert!(cache.recall_all(keys.iter()).is_none());
}

#[test]
fn a_decision_on_a_guess_is_confirmed_and_one_too_large_for_its_guards_reads_first() {
    let capture = Capture {
        keys: Keyspace::new("", "v2.0"),
    };
    let input = capture.decode(SEED_INPUT).unwrap();
    let reads = capture.reads(&input);
    let guess = snapshot(
        &capture,
        &input,
        &reads,
        || Box::new(RecordCache::default()),
    )
    .unwrap();
    let max = MAX_REQUEST_BYTES;
    let on_guess = decide(&capture, &input, &guess, &lineage(), max).unwrap();
    let Next::Commit(decision) = on_guess else {
        panic!("a guess is committed");
    };

    // Done: on the keys read, the same message again writes nothing and needs no commit.
    let mut store = vec![];
    step(&capture, &mut store, SEED_INPUT);
    let view: Vec<(&str, &[u8])> = store.iter().map(|(k, v)| (k.as_str(), &v[..])).collect();
    let read = read_of(&reads, &view);
    let on_read = decide(&capture, &input, &read, &lineage(), max).unwrap();
    assert!(matches!(on_read, Next::Done(d) if d.outcome == Outcome::Duplicate));

    // The same duplicate on a guess (remembered, say) must still be confirmed.
    let mut remembered = Snapshot::default();
    for key in read.keys() {
        let value = read.value(key).map(|v| Remembered {
            kept: Kept::Bytes(v.to_vec()),
            mod_revision: 1,
        });
        remembered.remember(key.to_string(), value);
    }
    let confirm = decide(&capture, &input, &remembered, &lineage(), max).unwrap();
    assert!(matches!(confirm, Next::Commit(d) if d.writes.is_empty()));

    // Too large: a guess reads first (its guards may be the excess); a read is rejected.
    let writes: usize = decision.writes.iter().map(Write::size).sum();
    let tight = writes + 4096 + guess.guard_size();
    let mut bulky = Snapshot::default();
    for key in &reads {
        bulky.assume(key.clone(), vec![b' '; 1024]);
    }
    assert_eq!(
        decide(&capture, &input, &bulky, &lineage(), tight),
        Ok(Next::Read)
    );
    let absent = read_of(&reads, &[]);
    assert!(decide(&capture, &input, &absent, &lineage(), tight - 1).is_err());
}

#[test]
fn each_stage_guesses_what_a_first_version_finds_and_reads_for_later_ones() {
    let keys = Keyspace::new("", "v2.0");
    let (capture, normalize, wrap) = (
        Capture { keys: keys.clone() },
        Normalize { keys: keys.clone() },
        Wrap { keys },
    );
    let mut store = vec![];
    let to_normalize = step(&capture, &mut store, SEED_INPUT).handoff.unwrap();
    let to_wrap = step(&normalize, &mut store, &to_normalize).handoff.unwrap();
    step(&wrap, &mut store, &to_wrap);

    // Each stage's guess, checked against the store the stage met.
    let mut fresh = vec![];
    assert_eq!(guess_holds(&capture, &fresh, SEED_INPUT), Some(true));
    step(&capture, &mut fresh, SEED_INPUT);
    assert_eq!(guess_holds(&normalize, &fresh, &to_normalize), Some(true));
    step(&normalize, &mut fresh, &to_normalize);
    assert_eq!(guess_holds(&wrap, &fresh, &to_wrap), Some(true));
    step(&wrap, &mut fresh, &to_wrap);

    // A job still running: wrap's guess holds too (it then writes nothing).
    let running = seed_with("\"CREATE_COMPLETE\"", "\"CREATE_IN_PROGRESS\"");
    let mut fresh = vec![];
    let running = step(&capture, &mut fresh, running.as_bytes())
        .handoff
        .unwrap();
    let running = step(&normalize, &mut fresh, &running).handoff.unwrap();
    assert_eq!(guess_holds(&wrap, &fresh, &running), Some(true));

    // A redelivery finds its own records: no guess holds.
    assert_eq!(guess_holds(&capture, &store, SEED_INPUT), Some(false));
    assert_eq!(guess_holds(&normalize, &store, &to_normalize), Some(false));
    assert_eq!(guess_holds(&wrap, &store, &to_wrap), Some(false));

    // A later version, with nothing remembered, reads first.
    let v2 = seed_with("\"version\": 1", "\"version\": 2");
    assert_eq!(guess_holds(&capture, &store, v2.as_bytes()), None);
    let to_normalize = step(&capture, &mut store, v2.as_bytes()).handoff.unwrap();
    assert_eq!(guess_holds(&normalize, &store, &to_normalize), None);
    let to_wrap = step(&normalize, &mut store, &to_normalize).handoff.unwrap();
    assert_eq!(guess_holds(&wrap, &store, &to_wrap), None);
}

/// Whether `stage`'s guess for `body`, with nothing remembered, is what `store` holds
/// (`None`: no guess), and if so, that deciding on the guess gives the decision that
/// deciding on a read gives.
fn guess_holds<S: Stage>(stage: &S, store: &[(String, Vec<u8>)], body: &[u8]) -> Option<bool> {
    let input = stage.decode(body).expect("decodes");
    let reads = stage.reads(&input);
    let guess = snapshot(stage, &input, &reads, || Box::new(RecordCache::default()))?;
    assert!(guess.is_guess());
    let view: Vec<(&str, &[u8])> = store.iter().map(|(k, v)| (k.as_str(), &v[..])).collect();
    let read = read_of(&reads, &view);
    let holds = guess.holds_in(&read);
    if holds {
        assert_eq!(
            stage.decide(&input, &guess, &lineage()),
            stage.decide(&input, &read, &lineage())
        );
    }
    Some(holds)
}

fn seed_with(from: &str, to: &str) -> String {
    String::from_utf8(SEED_INPUT.to_vec())
        .unwrap()
        .replace(from, to)
}
