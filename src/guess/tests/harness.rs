//! What the guess's tests run on: an in-memory etcd, and each stage driven with its own
//! cache as the runner drives it, every decision on a guess that holds checked against the
//! decision on a read, and every message decided again on reads alone as the reference.

use std::collections::BTreeMap;

use crate::guess::{decide, learn_commit, learn_read, snapshot, Next, RecordCache};
use crate::keys::Keyspace;
use crate::plan::{Decision, Guard, Snapshot, Stored, Write};
use crate::stages::test_support::{lineage, step, SEED_INPUT};
use crate::stages::{Capture, Normalize, Stage, Wrap};

/// etcd's default `--max-request-bytes`, as the runner passes it.
pub(super) const MAX_REQUEST_BYTES: usize = 1536 * 1024;

/// etcd's semantics as far as a stage sees them: each key's bytes and `mod_revision`, and
/// transactions that write only if every guard holds, else return the keys as they stand.
#[derive(Default)]
pub(super) struct FakeEtcd {
    pub(super) keys: BTreeMap<String, (Vec<u8>, i64)>,
    pub(super) revision: i64,
}

impl FakeEtcd {
    pub(super) fn read(&self, keys: &[String]) -> Snapshot {
        let mut snapshot = Snapshot::default();
        for key in keys {
            let stored = self.keys.get(key).map(|(value, mod_revision)| Stored {
                value: value.clone(),
                mod_revision: *mod_revision,
            });
            snapshot.insert(key.clone(), stored);
        }
        snapshot
    }

    pub(super) fn guards_hold(&self, snapshot: &Snapshot) -> bool {
        snapshot
            .guards()
            .all(|(key, guard)| match (guard, self.keys.get(key)) {
                (Guard::Revision(0), now) => now.is_none(),
                (Guard::Revision(revision), Some((_, now))) => *now == revision,
                (Guard::Value(value), Some((now, _))) => now == value,
                (_, None) => false,
            })
    }

    /// The applied revision, or the snapshot's keys as they stand.
    pub(super) fn commit(
        &mut self,
        snapshot: &Snapshot,
        writes: &[Write],
    ) -> Result<i64, Snapshot> {
        if !self.guards_hold(snapshot) {
            let keys: Vec<String> = snapshot.keys().map(str::to_string).collect();
            return Err(self.read(&keys));
        }
        if !writes.is_empty() {
            self.revision += 1;
        }
        for write in writes {
            match write {
                Write::Put { key, value } => {
                    self.keys
                        .insert(key.clone(), (value.to_vec(), self.revision));
                }
                Write::Delete { key } => {
                    self.keys.remove(key);
                }
            }
        }
        Ok(self.revision)
    }

    pub(super) fn records(&self) -> Vec<(String, Vec<u8>)> {
        let records = self.keys.iter().map(|(k, (v, _))| (k.clone(), v.clone()));
        records.collect()
    }
}

/// One message handled: the decision (with its writes) and what it cost.
#[derive(Debug)]
pub(super) struct Handled {
    pub(super) decision: Decision,
    pub(super) requests: usize,
    pub(super) retries: usize,
}

/// One stage of one process: the stage and its cache, driven as the runner drives them.
pub(super) struct Process<S> {
    pub(super) stage: S,
    pub(super) cache: RecordCache,
    /// Decisions taken on a guess whose guards held, each checked against a read.
    guesses_checked: usize,
}

impl<S: Stage> Process<S> {
    pub(super) fn new(stage: S) -> Process<S> {
        Process {
            stage,
            cache: RecordCache::default(),
            guesses_checked: 0,
        }
    }

    /// The runner's loop (`runner/delivery.rs`, `apply`) with `etcd` for the store.
    pub(super) fn handle(&mut self, etcd: &mut FakeEtcd, body: &[u8]) -> Handled {
        let input = self.stage.decode(body).expect("decodes");
        let reads = self.stage.reads(&input);
        let (mut requests, mut retries) = (0, 0);
        let guess = snapshot(&self.stage, &input, &reads, || &mut self.cache);
        let mut snapshot = guess.unwrap_or_else(|| {
            requests += 1;
            let found = etcd.read(&reads);
            learn_read(&self.stage, &found, || &mut self.cache);
            found
        });
        loop {
            self.check_against_a_read(etcd, &input, &reads, &snapshot);
            let max = MAX_REQUEST_BYTES;
            let decision = match decide(&self.stage, &input, &snapshot, &lineage(), max) {
                Ok(Next::Done(decision)) => {
                    return Handled {
                        decision,
                        requests,
                        retries,
                    }
                }
                Ok(Next::Read) => unreachable!("no record here is near etcd's limit"),
                Ok(Next::Commit(decision)) => decision,
                Err(rejection) => panic!("rejected: {rejection:?}"),
            };
            requests += 1;
            match etcd.commit(&snapshot, &decision.writes) {
                Ok(revision) => {
                    let writes = decision.writes.clone();
                    learn_commit(&self.stage, &input, writes, revision, || &mut self.cache);
                    return Handled {
                        decision,
                        requests,
                        retries,
                    };
                }
                Err(found) => {
                    retries += 1;
                    learn_read(&self.stage, &found, || &mut self.cache);
                    snapshot = found;
                }
            }
        }
    }

    /// On a guess whose guards hold in `etcd`: the decision equals the one on a fresh read
    /// of the same keys (writes, outcome and hand-off), and the batcher's check
    /// (`Snapshot::holds_in`) agrees with etcd's.
    fn check_against_a_read(
        &mut self,
        etcd: &FakeEtcd,
        input: &S::Input,
        reads: &[String],
        snapshot: &Snapshot,
    ) {
        if !snapshot.is_guess() {
            return;
        }
        let read = etcd.read(reads);
        assert_eq!(snapshot.holds_in(&read), etcd.guards_hold(snapshot));
        if etcd.guards_hold(snapshot) {
            let on_guess = self.stage.decide(input, snapshot, &lineage());
            let on_read = self.stage.decide(input, &read, &lineage());
            assert_eq!(on_guess, on_read, "a guess that holds decides as a read");
            self.guesses_checked += 1;
        }
    }
}

/// A process running all three stages on one etcd, and the same messages decided on reads
/// alone (the stages' own test step) as the reference.
pub(super) struct Pipeline {
    pub(super) etcd: FakeEtcd,
    pub(super) capture: Process<Capture>,
    pub(super) normalize: Process<Normalize>,
    pub(super) wrap: Process<Wrap>,
    reference: Vec<(String, Vec<u8>)>,
}

impl Pipeline {
    pub(super) fn new() -> Pipeline {
        let keys = Keyspace::new("", "v2.0");
        Pipeline {
            etcd: FakeEtcd::default(),
            capture: Process::new(Capture { keys: keys.clone() }),
            normalize: Process::new(Normalize { keys: keys.clone() }),
            wrap: Process::new(Wrap { keys }),
            reference: Vec::new(),
        }
    }

    pub(super) fn capture(&mut self, body: &[u8]) -> Handled {
        both_ways(&mut self.capture, &mut self.etcd, &mut self.reference, body)
    }

    pub(super) fn normalize(&mut self, body: &[u8]) -> Handled {
        both_ways(
            &mut self.normalize,
            &mut self.etcd,
            &mut self.reference,
            body,
        )
    }

    pub(super) fn wrap(&mut self, body: &[u8]) -> Handled {
        both_ways(&mut self.wrap, &mut self.etcd, &mut self.reference, body)
    }

    /// All three stages, each handing off to the next; what each cost.
    pub(super) fn run(&mut self, body: &[u8]) -> Vec<Handled> {
        let mut handled = vec![self.capture(body)];
        if let Some(body) = handled[0].decision.handoff.clone() {
            handled.push(self.normalize(&body));
        }
        if let Some(body) = handled.get(1).and_then(|h| h.decision.handoff.clone()) {
            handled.push(self.wrap(&body));
        }
        handled
    }

    /// The records in etcd equal those of the reference.
    pub(super) fn assert_same_records(&self) {
        let mut reference = self.reference.clone();
        reference.sort();
        assert_eq!(self.etcd.records(), reference);
    }

    /// Another process handles `body`: the same etcd, caches of its own.
    pub(super) fn elsewhere(&mut self, body: &[u8]) {
        let mut other = Pipeline::new();
        std::mem::swap(&mut other.etcd, &mut self.etcd);
        std::mem::swap(&mut other.reference, &mut self.reference);
        other.run(body);
        std::mem::swap(&mut other.etcd, &mut self.etcd);
        std::mem::swap(&mut other.reference, &mut self.reference);
    }

    /// This process starts again: every cache empty.
    pub(super) fn restart(&mut self) {
        let etcd = std::mem::take(&mut self.etcd);
        let reference = std::mem::take(&mut self.reference);
        *self = Pipeline {
            etcd,
            reference,
            ..Pipeline::new()
        };
    }

    pub(super) fn guesses_checked(&self) -> usize {
        self.capture.guesses_checked + self.normalize.guesses_checked + self.wrap.guesses_checked
    }
}

/// Handles `body` at `process` with guesses, and again on the reference with reads: the
/// two decisions are equal.
pub(super) fn both_ways<S: Stage>(
    process: &mut Process<S>,
    etcd: &mut FakeEtcd,
    reference: &mut Vec<(String, Vec<u8>)>,
    body: &[u8],
) -> Handled {
    let handled = process.handle(etcd, body);
    let on_reads = step(&process.stage, reference, body);
    assert_eq!(handled.decision, on_reads, "decided otherwise on reads");
    handled
}

/// A Heat result for the seed's port: `action` at `version` ended in `status`. The outputs
/// name the version, so that each version's records differ. A delete has no stack.
pub(super) fn heat_result(action: &str, version: u64, status: &str) -> Vec<u8> {
    heat_result_with(action, version, status, "")
}

/// [`heat_result`] with `padding` appended to the version's output: its records grow.
pub(super) fn heat_result_with(action: &str, version: u64, status: &str, padding: &str) -> Vec<u8> {
    let mut result: serde_json::Value = serde_json::from_slice(SEED_INPUT).unwrap();
    result["job"]["action"] = action.into();
    result["job"]["version"] = version.into();
    if action == "delete" {
        result["stack"] = serde_json::Value::Null;
    } else {
        let stack = &mut result["stack"];
        stack["stack_status"] = status.into();
        stack["stack_status_reason"] = format!("{status}: version {version}").into();
        stack["outputs"][2]["output_value"] = format!("port-v{version}{padding}").into();
    }
    serde_json::to_vec(&result).unwrap()
}

/// Create in progress, create, modify, failed modify, delete: what upstream sends for one
/// port over its life.
pub(super) fn life() -> [Vec<u8>; 5] {
    [
        heat_result("create", 1, "CREATE_IN_PROGRESS"),
        heat_result("create", 1, "CREATE_COMPLETE"),
        heat_result("modify", 2, "UPDATE_COMPLETE"),
        heat_result("modify", 3, "UPDATE_FAILED"),
        heat_result("delete", 4, "DELETE_COMPLETE"),
    ]
}

pub(super) fn costs(handled: &[Handled]) -> Vec<(usize, usize)> {
    handled.iter().map(|h| (h.requests, h.retries)).collect()
}
