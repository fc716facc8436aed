//! The data a stage's pure step works on: what it read, and what it decided to do.
//!
//! Stages never talk to etcd or RabbitMQ. The runner reads or guesses a [`Snapshot`], the
//! stage returns a [`Decision`], and the store commits the decision only if every key still
//! holds what the snapshot says (an optimistic transaction), so two processes handling the
//! same resource at once cannot both win, and a wrong guess only costs a retry
//! ([`crate::guess`] makes that argument).

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::error::{RejectKind, Rejection};
use crate::records::Encoded;
pub use crate::records::Lineage;

/// A key's value and the revision that last modified it, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

/// What a stage's cache keeps of a value: its bytes, or only their SHA-256 when the stage
/// never reads the value and only asks whether it equals bytes of its own
/// ([`Snapshot::holds`]). A digest keeps a large record's entry at a few dozen bytes, and a
/// collision-resistant one makes "the same digest" as good as "the same bytes", even
/// against bytes an upstream chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    Bytes(Vec<u8>),
    Digest([u8; 32]),
}

impl Kept {
    /// The digest of `bytes`.
    pub fn digest(bytes: &[u8]) -> Kept {
        Kept::Digest(Sha256::digest(bytes).into())
    }

    /// Whether the kept value is `bytes`.
    pub fn is(&self, bytes: &[u8]) -> bool {
        match self {
            Kept::Bytes(kept) => kept == bytes,
            Kept::Digest(digest) => Sha256::digest(bytes)[..] == digest[..],
        }
    }

    /// Bytes it holds.
    pub fn size(&self) -> usize {
        match self {
            Kept::Bytes(bytes) => bytes.len(),
            Kept::Digest(digest) => digest.len(),
        }
    }
}

/// What the cache remembers at a key: the value as kept and the revision that last
/// modified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remembered {
    pub kept: Kept,
    pub mod_revision: i64,
}

/// What a commit must still find at a key for the decision made on the snapshot to stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard<'a> {
    /// The key's `mod_revision` (0: the key is absent).
    Revision(i64),
    /// The key holds exactly these bytes (a guess, see [`Snapshot::assume`]).
    Value(&'a [u8]),
}

/// One key of a snapshot: read from etcd, or assumed without reading.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Read(Option<Stored>),
    /// A guess: these bytes, or absent.
    Assumed(Option<Vec<u8>>),
    /// A guess from what this process last committed or read there, at a known revision:
    /// guarded by that revision (a small compare, whatever the value's size).
    Remembered(Option<Remembered>),
}

/// The keys a stage looks at, either as they stood at one etcd revision or as guessed
/// ([`crate::guess`]). An absent key maps to `None`, which the commit guard checks too (the
/// key must still be absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    entries: BTreeMap<String, Entry>,
}

impl Snapshot {
    /// Records a key as read.
    pub fn insert(&mut self, key: String, stored: Option<Stored>) {
        self.entries.insert(key, Entry::Read(stored));
    }

    /// Records a guess that `key` holds `value` (guarded by value, since its revision is
    /// unknown).
    pub fn assume(&mut self, key: String, value: Vec<u8>) {
        self.entries.insert(key, Entry::Assumed(Some(value)));
    }

    /// Records a guess that `key` is absent (guarded like a read absence).
    pub fn assume_absent(&mut self, key: String) {
        self.entries.insert(key, Entry::Assumed(None));
    }

    /// Records a guess that `key` still holds what this process last saw there (`None`:
    /// absent), guarded by that revision.
    pub fn remember(&mut self, key: String, remembered: Option<Remembered>) {
        self.entries.insert(key, Entry::Remembered(remembered));
    }

    /// Whether `key` is in the snapshot (read or guessed).
    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// The keys read, with their values and revisions, for the cache.
    pub fn read(&self) -> impl Iterator<Item = (&str, Option<&Stored>)> {
        self.entries.iter().filter_map(|(key, entry)| match entry {
            Entry::Read(stored) => Some((key.as_str(), stored.as_ref())),
            Entry::Assumed(_) | Entry::Remembered(_) => None,
        })
    }

    /// Whether any key was guessed rather than read: a decision on it must be confirmed
    /// by a commit, even one without writes.
    pub fn is_guess(&self) -> bool {
        self.entries
            .values()
            .any(|e| matches!(e, Entry::Assumed(_) | Entry::Remembered(_)))
    }

    /// The value of `key`, `None` if absent.
    ///
    /// # Panics
    /// If `key` was not read, or the cache kept only its digest (a key of
    /// [`crate::stages::Stage::compared_only`]): either is a bug in the stage.
    pub fn value(&self, key: &str) -> Option<&[u8]> {
        match self.entry(key) {
            Entry::Read(stored) => stored.as_ref().map(|s| s.value.as_slice()),
            Entry::Remembered(remembered) => remembered.as_ref().map(|r| match &r.kept {
                Kept::Bytes(bytes) => bytes.as_slice(),
                Kept::Digest(_) => panic!("stage read {key}, which it only compares"),
            }),
            Entry::Assumed(value) => value.as_deref(),
        }
    }

    /// Whether `key` holds exactly `bytes` (`false` if absent). What a stage asks of a key
    /// it only compares, whose value the cache may keep as a digest.
    ///
    /// # Panics
    /// If `key` was not read: that is a bug in the stage's list of reads.
    pub fn holds(&self, key: &str, bytes: &[u8]) -> bool {
        match self.entry(key) {
            Entry::Read(stored) => stored.as_ref().is_some_and(|s| s.value == bytes),
            Entry::Remembered(remembered) => remembered.as_ref().is_some_and(|r| r.kept.is(bytes)),
            Entry::Assumed(value) => value.as_deref() == Some(bytes),
        }
    }

    fn entry(&self, key: &str) -> &Entry {
        self.entries
            .get(key)
            .unwrap_or_else(|| panic!("stage read {key} without asking for it"))
    }

    /// The keys, in the order of [`Snapshot::guards`].
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Each key, with what a commit must still find there.
    pub fn guards(&self) -> impl Iterator<Item = (&str, Guard<'_>)> {
        self.entries.iter().map(|(k, entry)| {
            let guard = match entry {
                Entry::Read(stored) => {
                    Guard::Revision(stored.as_ref().map_or(0, |s| s.mod_revision))
                }
                Entry::Remembered(remembered) => {
                    Guard::Revision(remembered.as_ref().map_or(0, |r| r.mod_revision))
                }
                Entry::Assumed(None) => Guard::Revision(0),
                Entry::Assumed(Some(value)) => Guard::Value(value),
            };
            (k.as_str(), guard)
        })
    }

    /// Whether a commit guarded by this snapshot would pass against `found`, a snapshot of
    /// the same keys read at one revision.
    pub fn holds_in(&self, found: &Snapshot) -> bool {
        self.guards().all(|(key, guard)| {
            let now = match found.entries.get(key) {
                Some(Entry::Read(stored)) => stored.as_ref(),
                _ => return false,
            };
            match guard {
                Guard::Revision(0) => now.is_none(),
                Guard::Revision(revision) => now.is_some_and(|s| s.mod_revision == revision),
                Guard::Value(value) => now.is_some_and(|s| s.value == value),
            }
        })
    }

    /// Bytes the guards add to a commit request (values compared by content).
    pub fn guard_size(&self) -> usize {
        self.guards()
            .map(|(key, guard)| match guard {
                Guard::Revision(_) => key.len(),
                Guard::Value(value) => key.len() + value.len(),
            })
            .sum()
    }
}

/// One etcd operation of a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    Put { key: String, value: Encoded },
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
    pub const ALL: [Outcome; 4] = [
        Outcome::Written,
        Outcome::Duplicate,
        Outcome::Stale,
        Outcome::NotFinal,
    ];

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
    /// `guard_bytes` is what the snapshot's guards add ([`Snapshot::guard_size`]).
    pub fn check_size(
        &self,
        max_request_bytes: usize,
        guard_bytes: usize,
    ) -> Result<(), Rejection> {
        // Room for the transaction's framing and its revision compares.
        const OVERHEAD: usize = 4096;
        let size = self.writes.iter().map(Write::size).sum::<usize>() + guard_bytes;
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
