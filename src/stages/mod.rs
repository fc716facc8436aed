//! The three stages' steps, each a pure function from a message and a [`Snapshot`] to a
//! [`Decision`]. All I/O lives in the runner; everything here is unit-tested byte for byte.

mod capture;
mod normalize;
mod wrap;

use std::fmt;
use std::str::FromStr;

pub use capture::Capture;
pub use normalize::Normalize;
pub use wrap::Wrap;

use crate::error::Rejection;
use crate::lifecycle::Phase;
use crate::message::Job;
use crate::plan::{Decision, Lineage, Outcome, Snapshot, Write};
use crate::records::{Encoded, Order, OrderKey};

/// Which stage a process runs; names queues, routing keys, logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StageName {
    Capture,
    Normalize,
    Wrap,
}

impl StageName {
    pub const ALL: [StageName; 3] = [StageName::Capture, StageName::Normalize, StageName::Wrap];

    pub fn as_str(self) -> &'static str {
        match self {
            StageName::Capture => "capture",
            StageName::Normalize => "normalize",
            StageName::Wrap => "wrap",
        }
    }

    /// The routing key of the messages this stage consumes.
    pub fn routing_key(self) -> &'static str {
        match self {
            StageName::Capture => "heat.result",
            StageName::Normalize => "stage.normalize",
            StageName::Wrap => "stage.wrap",
        }
    }

    /// The stage this one hands off to.
    pub fn next(self) -> Option<StageName> {
        match self {
            StageName::Capture => Some(StageName::Normalize),
            StageName::Normalize => Some(StageName::Wrap),
            StageName::Wrap => None,
        }
    }
}

impl fmt::Display for StageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StageName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StageName::ALL
            .into_iter()
            .find(|stage| stage.as_str() == s)
            .ok_or_else(|| format!("unknown stage {s:?} (capture, normalize or wrap)"))
    }
}

/// One step of the pipeline. The runner drives it: decode, guess or read [`Stage::reads`]
/// (the guess hooks, `inferred`, `expected` and `removed_later`, serve [`crate::guess`]),
/// call [`Stage::decide`], commit the writes, hand off, ack.
pub trait Stage: Send + Sync + 'static {
    /// The decoded message.
    type Input: Send + Sync + 'static;

    fn name(&self) -> StageName;

    /// Decodes a message body; a [`Rejection`] dead-letters it.
    fn decode(&self, body: &[u8]) -> Result<Self::Input, Rejection>;

    /// The job the message is about (for logs, and to keep one resource's messages in order).
    fn job<'a>(&self, input: &'a Self::Input) -> &'a Job;

    /// The etcd keys [`Stage::decide`] looks at; the commit is guarded on all of them.
    fn reads(&self, input: &Self::Input) -> Vec<String>;

    /// A job's first version: what the message most likely finds at [`Stage::reads`] when
    /// the stage's cache does not know them ([`crate::guess`] says when each source is
    /// asked, and why a wrong guess costs only a retry); `None` means read first.
    ///
    /// `reads` and `inferred` are this input's [`Stage::reads`] and [`Stage::inferred`],
    /// which the caller has computed already: passed in so that no message builds its keys
    /// or copies its inferred records twice.
    ///
    /// It may assume the usual case, a first version's first delivery: a redelivery that
    /// finds records costs a retry. The default guesses a new resource (nothing stored yet)
    /// for a job's first version, and reads for a later one, which usually finds the earlier
    /// version's records.
    fn expected(
        &self,
        input: &Self::Input,
        reads: &[String],
        _inferred: Snapshot,
    ) -> Option<Snapshot> {
        if !self.job(input).is_first_version() {
            return None;
        }
        let mut snapshot = Snapshot::default();
        for key in reads {
            snapshot.assume_absent(key.clone());
        }
        Some(snapshot)
    }

    /// The keys whose content the message itself tells, whatever the version (wrap: the
    /// job_state and order normalize wrote, carried in the hand-off), assumed by value. It
    /// may assume only what the message says; since each assumed byte is sent again as a
    /// guard, a large value is better left out (read or remembered). By default nothing.
    fn inferred(&self, _input: &Self::Input) -> Snapshot {
        Snapshot::default()
    }

    /// The keys among this stage's writes for `input` that another stage will most likely
    /// have removed when this stage next sees the resource (normalize: a final job's
    /// job_state, see `wrap_removes_job_state`). The cache remembers them absent, which a
    /// commit checks like any guess; only keys, never bytes, so it cannot vouch for a
    /// value. By default none.
    fn removed_later(&self, _input: &Self::Input) -> Vec<String> {
        Vec::new()
    }

    /// Whether [`Stage::decide`] only compares the value at `key`, one of its
    /// [`Stage::reads`], with bytes it has ([`Snapshot::holds`]) and never reads it
    /// ([`Snapshot::value`]): the stage's cache may keep a large one as its digest. By
    /// default no key.
    fn compared_only(&self, _key: &str) -> bool {
        false
    }

    /// The step itself. Pure: the same input, snapshot and lineage give the same decision.
    /// Any key of the snapshot may be a guess (the commit confirms it), so it must not
    /// assume the snapshot was read.
    /// `lineage` (this delivery's time and trace id) is only copied into heat-pipeline's
    /// own order or lineage keys, never into a record.
    fn decide(
        &self,
        input: &Self::Input,
        snapshot: &Snapshot,
        lineage: &Lineage,
    ) -> Result<Decision, Rejection>;
}

/// Whether wrap, handling a job, removes the job_state that job's normalize wrote under
/// `order`: only a final result's, since a running job's job_state waits for its final one.
/// Wrap applies the rule; normalize anticipates it for its cache ([`Stage::removed_later`]).
fn wrap_removes_job_state(order: Order) -> bool {
    order.phase == Phase::Final
}

/// The version guard shared by capture and normalize, whose records carry no version: the
/// record's order is kept under `order_key` (an [`OrderKey`]: the order and its lineage),
/// written in the same transaction. Only the [`crate::records::Order`] part compares.
///
/// `handoff` builds the hand-off from the order key's bytes as they stand after the
/// decision: the ones written, or for a duplicate the ones found (the next stage may
/// guess them).
///
/// - newer than what is stored (or nothing stored): write record and order, hand off;
/// - same order and same bytes: a duplicate delivery; hand off again, because the earlier
///   attempt may have stopped before its hand-off was confirmed;
/// - same order, record gone (wrap consumed it) or different (an earlier result for the
///   same version and phase stands): nothing to do;
/// - older: stale, nothing to do.
fn guarded_write(
    snapshot: &Snapshot,
    record_key: &str,
    order_key: &str,
    record: Encoded,
    order: OrderKey,
    handoff: impl FnOnce(&[u8]) -> Vec<u8>,
) -> Decision {
    let stored_bytes = snapshot.value(order_key);
    let stored_order = stored_bytes
        .and_then(OrderKey::from_bytes)
        .map(|o| o.order());
    let order_bytes = order.to_bytes();
    let order = order.order();
    match stored_order {
        Some(stored) if stored > order => Decision {
            writes: vec![],
            outcome: Outcome::Stale,
            handoff: None,
        },
        Some(stored) if stored == order => {
            let same = snapshot.holds(record_key, &record);
            Decision {
                writes: vec![],
                outcome: if same {
                    Outcome::Duplicate
                } else {
                    Outcome::Stale
                },
                handoff: same.then(|| handoff(stored_bytes.unwrap_or_default())),
            }
        }
        _ => Decision {
            writes: vec![
                Write::Put {
                    key: record_key.to_string(),
                    value: record,
                },
                Write::Put {
                    key: order_key.to_string(),
                    value: order_bytes.clone(),
                },
            ],
            outcome: Outcome::Written,
            handoff: Some(handoff(&order_bytes)),
        },
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Helpers to run a stage's step against an in-memory snapshot.

    use super::*;
    use crate::plan::Stored;

    /// The lineage every unit test writes with.
    pub fn lineage() -> Lineage {
        Lineage {
            written_at: "2026-11-27T08:00:00.000Z".to_string(),
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".to_string(),
        }
    }

    pub const SEED_INPUT: &[u8] = include_bytes!("../../tests/fixtures/seed/heat_result.port.json");
    pub const SEED_HEAT_STACKS: &[u8] =
        include_bytes!("../../tests/fixtures/seed/heat_stacks.port.bytes");
    pub const SEED_JOB_STATE: &[u8] =
        include_bytes!("../../tests/fixtures/seed/job_state.port.bytes");
    pub const SEED_STATE: &[u8] = include_bytes!("../../tests/fixtures/seed/state.port.bytes");

    /// A snapshot of `keys` holding `store`'s values (absent when not in `store`).
    pub fn snapshot(keys: &[String], store: &[(&str, &[u8])]) -> Snapshot {
        let mut snapshot = Snapshot::default();
        for key in keys {
            let stored = store.iter().find(|(k, _)| k == key).map(|(_, v)| Stored {
                value: v.to_vec(),
                mod_revision: 1,
            });
            snapshot.insert(key.clone(), stored);
        }
        snapshot
    }

    /// Applies a decision's writes to `store`, as etcd would.
    pub fn apply(store: &mut Vec<(String, Vec<u8>)>, decision: &Decision) {
        for write in &decision.writes {
            match write {
                Write::Put { key, value } => {
                    store.retain(|(k, _)| k != key);
                    store.push((key.clone(), value.to_vec()));
                }
                Write::Delete { key } => store.retain(|(k, _)| k != key),
            }
        }
    }

    /// Runs one step of `stage` against `store` and applies its writes.
    pub fn step<S: Stage>(stage: &S, store: &mut Vec<(String, Vec<u8>)>, body: &[u8]) -> Decision {
        let input = stage.decode(body).expect("decodes");
        let keys = stage.reads(&input);
        let view: Vec<(&str, &[u8])> = store
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        let decision = stage
            .decide(&input, &snapshot(&keys, &view), &lineage())
            .expect("decides");
        apply(store, &decision);
        decision
    }

    pub fn get<'a>(store: &'a [(String, Vec<u8>)], key: &str) -> Option<&'a [u8]> {
        store
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }
}
