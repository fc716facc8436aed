//! The guess: what a message most likely finds at its stage's keys, so that the usual
//! message costs one etcd request (a guarded commit) instead of two (a read, then the
//! commit). The whole policy is here: where a guess comes from and in which order, what the
//! stage's [`RecordCache`] learns and when, and when a decision on a guess must still be
//! confirmed. The runner only does the I/O around it: the read, the commit, the lock.
//!
//! # Why a wrong guess costs a retry, never a wrong record
//!
//! A [`Snapshot`] holds, for every key [`Stage::decide`] looks at ([`Stage::reads`]), a value
//! and what a commit must still find there ([`crate::plan::Guard`]): the bytes of a key
//! assumed, the `mod_revision` of a key read or remembered (0: absent). The decision is a
//! pure function of the message and those values, and its writes go in one etcd transaction
//! guarded by every key. If the transaction is applied, every key held what the decision
//! saw, so the decision is the one a read at that revision would have given. If a guard
//! fails, nothing is written, the same transaction returns the keys as they stand, and the
//! stage decides again on them: one more request, whatever was guessed and however stale.
//! This holds as long as:
//! - a decision on a guess is committed even when it writes nothing (a read-only
//!   transaction, [`decide`]), so that no guess is acted on (handed off, acked) unconfirmed;
//! - a remembered value is the one etcd held at its revision: the cache takes values only
//!   from a read or from the writes of an applied commit at that commit's revision, and what
//!   a stage anticipates ([`Stage::removed_later`]) only ever turns a value into an absence,
//!   which is guarded as one (revision 0).
//!
//! # Where a guess comes from, in order ([`snapshot`])
//!
//! 1. [`Stage::inferred`]: what the message itself tells, for every version (wrap: the
//!    job_state and order key normalize wrote, carried in the hand-off). Guarded by bytes.
//! 2. The stage's [`RecordCache`] completes the other keys, if it knows every one of them: an
//!    update, or a later result of the same job, of a resource this process handled before.
//!    Guarded by revision, a small compare whatever the value's size.
//! 3. Otherwise [`Stage::expected`], given what step 1 inferred: a job's first version,
//!    whose records are not there yet (wrap: are what normalize just wrote).
//! 4. Otherwise no guess: the runner reads the keys first.
//!
//! # What the cache learns ([`learn_read`], [`learn_commit`])
//!
//! Every key whose value and revision are known: a read, the keys a refused commit returns,
//! and an applied commit's writes at its revision, as the stage anticipates them (normalize:
//! a final job's job_state absent, since wrap removes it). Assumed keys are not learned:
//! their revision is unknown. A large value of a key the stage only compares
//! ([`Stage::compared_only`]) is learned as its SHA-256: [`Snapshot::holds`] answers the
//! same from it as from the bytes, and [`Snapshot::value`] refuses it, so a stage that
//! began to read such a key would fail its tests rather than decide on a digest.

mod cache;
#[cfg(test)]
mod tests;

use std::ops::DerefMut;

use crate::error::Rejection;
use crate::plan::{Decision, Lineage, Snapshot, Stored, Write};
use crate::stages::Stage;

pub use cache::{RecordCache, CACHE_BYTES, DIGEST_ABOVE};

/// The guess for `input` at its stage's `reads` (sources in the module's order), or `None`:
/// read first. `lock` gives the stage's cache; it is called at most once, and the cache is
/// held only while the remembered keys are looked up.
pub fn snapshot<S: Stage, C: DerefMut<Target = RecordCache>>(
    stage: &S,
    input: &S::Input,
    reads: &[String],
    lock: impl FnOnce() -> C,
) -> Option<Snapshot> {
    let mut guess = stage.inferred(input);
    let remembered = lock().recall_all(reads.iter().filter(|key| !guess.contains(key)));
    match remembered {
        Some(remembered) => {
            for (key, stored) in remembered {
                guess.remember(key, stored);
            }
            Some(guess)
        }
        // Only what the message tells: the first-version guess builds on it.
        None => stage.expected(input, reads, guess),
    }
}

/// What to do with a decision on `snapshot`.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// It stands as it is: made on keys read, and it writes nothing.
    Done(Decision),
    /// Read the keys and decide again: on a guess, the decision is too large once the
    /// guessed bytes are added as guards (guarded by revision, it may fit).
    Read,
    /// Commit its writes guarded by the snapshot; on a guess even none, to confirm it.
    Commit(Decision),
}

/// The stage's decision on `snapshot`, and what it still needs before it may be acted on. A
/// decision etcd would refuse as too large is a [`Rejection`] (on keys read).
pub fn decide<S: Stage>(
    stage: &S,
    input: &S::Input,
    snapshot: &Snapshot,
    lineage: &Lineage,
    max_request_bytes: usize,
) -> Result<Next, Rejection> {
    let decision = stage.decide(input, snapshot, lineage)?;
    let guessed = snapshot.is_guess();
    if let Err(rejection) = decision.check_size(max_request_bytes, snapshot.guard_size()) {
        return if guessed {
            Ok(Next::Read)
        } else {
            Err(rejection)
        };
    }
    if decision.writes.is_empty() && !guessed {
        return Ok(Next::Done(decision));
    }
    Ok(Next::Commit(decision))
}

/// Teaches `stage`'s cache what a read found: the keys read, or those a refused commit
/// returned.
pub fn learn_read<S: Stage, C: DerefMut<Target = RecordCache>>(
    stage: &S,
    found: &Snapshot,
    lock: impl FnOnce() -> C,
) {
    let mut cache = lock();
    for (key, stored) in found.read() {
        let compared_only = stage.compared_only(key);
        cache.put(key.to_string(), stored.cloned(), compared_only);
    }
}

/// Teaches the cache what an applied commit wrote at `revision`, as the stage anticipates
/// finding it next time ([`Stage::removed_later`]).
pub fn learn_commit<S: Stage, C: DerefMut<Target = RecordCache>>(
    stage: &S,
    input: &S::Input,
    writes: Vec<Write>,
    revision: i64,
    lock: impl FnOnce() -> C,
) {
    let removed_later = stage.removed_later(input);
    let mut cache = lock();
    for write in writes {
        match write {
            Write::Put { key, value } if !removed_later.contains(&key) => {
                let compared_only = stage.compared_only(&key);
                let stored = Stored {
                    value: value.into_bytes(),
                    mod_revision: revision,
                };
                cache.put(key, Some(stored), compared_only)
            }
            Write::Put { key, .. } | Write::Delete { key } => cache.put(key, None, false),
        }
    }
}
