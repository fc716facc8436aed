//! The data a stage's pure step works on: what it read, and what it decided to do.
//!
//! Stages never talk to etcd or RabbitMQ. The runner reads a [`Snapshot`], the stage
//! returns a [`Decision`], and the store commits the decision only if nothing it read has
//! changed since (an optimistic transaction), so two processes handling the same resource
//! at once cannot both win.

use std::collections::BTreeMap;

use crate::error::{RejectKind, Rejection};

/// A key's value and the revision that last modified it, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

/// The keys a stage asked for, as they stood at one etcd revision. An absent key maps to
/// `None`, which the commit guard checks too (the key must still be absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    entries: BTreeMap<String, Option<Stored>>,
}

impl Snapshot {
    pub fn insert(&mut self, key: String, stored: Option<Stored>) {
        self.entries.insert(key, stored);
    }

    /// The value of `key`, `None` if absent.
    ///
    /// # Panics
    /// If `key` was not read: that is a bug in the stage's list of reads.
    pub fn value(&self, key: &str) -> Option<&[u8]> {
        self.entries
            .get(key)
            .unwrap_or_else(|| panic!("stage read {key} without asking for it"))
            .as_ref()
            .map(|s| s.value.as_slice())
    }

    /// Each key read, with the `mod_revision` a commit must still find (0: absent).
    pub fn guards(&self) -> impl Iterator<Item = (&str, i64)> {
        self.entries
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_ref().map_or(0, |s| s.mod_revision)))
    }
}

/// One etcd operation of a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Put { key: String, value: Vec<u8> },
    Delete { key: String },
}

impl Write {
    /// Bytes this operation adds to an etcd request.
    pub fn size(&self) -> usize {
        match self {
            Write::Put { key, value } => key.len() + value.len(),
            Write::Delete { key } => key.len(),
        }
    }
}

/// What happened to the stage's record; becomes a log field and a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The record was written (or, for wrap, job_state only was cleaned up).
    Written,
    /// The same result was already recorded; nothing changed.
    Duplicate,
    /// A newer result is already recorded; nothing changed.
    Stale,
    /// The job is still running: no `/state` yet.
    NotFinal,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Written => "written",
            Outcome::Duplicate => "duplicate",
            Outcome::Stale => "stale",
            Outcome::NotFinal => "not_final",
        }
    }
}

/// A stage's decision for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Applied in one etcd transaction, guarded by the snapshot.
    pub writes: Vec<Write>,
    pub outcome: Outcome,
    /// The body to hand to the next stage, if any.
    pub handoff: Option<Vec<u8>>,
}

impl Decision {
    /// Refuses a decision etcd would refuse anyway (`--max-request-bytes`), so that it is
    /// dead-lettered with a clear reason instead of retried.
    pub fn check_size(&self, max_request_bytes: usize) -> Result<(), Rejection> {
        // Room for the transaction's framing and its compare clauses.
        const OVERHEAD: usize = 4096;
        let size: usize = self.writes.iter().map(Write::size).sum();
        if size + OVERHEAD > max_request_bytes {
            return Err(Rejection::new(
                RejectKind::RecordTooLarge,
                format!(
                    "the write is {size} bytes, over etcd's request limit of {max_request_bytes}"
                ),
            ));
        }
        Ok(())
    }
}
