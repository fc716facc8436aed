//! In-flight work bounded by bytes as well as by count.
//!
//! Prefetch bounds how many deliveries a stage works on, not how large they are: 64
//! deliveries of 64 KiB of outputs, each held decoded, encoded as a record and as a
//! hand-off and copied into an etcd batch, took a `run all` process to 78 MiB. A stage
//! takes a delivery into work only once its body fits in the stage's [`ByteBudget`]; small
//! messages never wait (64 seed-sized bodies are about 100 KiB).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes of message bodies one stage of a process works on at once, by default
/// (`--in-flight-bytes`). A full prefetch of creates (about 1.5 KiB each) is under half of it,
/// so their batches are as large as the count allows; messages with 64 KiB outputs (a little
/// over 64 KiB each) run 3 at a time. A body in work costs several times its size (decoded,
/// encoded as a record and as a hand-off, batched), so this is what holds the peak RSS with
/// large outputs: on the benchmark's lifecycle (20,000 messages, outputs 1-64 KiB) `run all`
/// peaked at 63.6-64.0 MiB with 512 KiB and 57.5-57.7 MiB with 256 KiB, with no loss of drain
/// rate (docs/SCALING.md, "The in-flight budget at 256 KiB").
pub const DEFAULT_IN_FLIGHT_BYTES: usize = 256 << 10;

/// The bytes a stage may have in work; cloned into each delivery's task.
#[derive(Clone)]
pub(super) struct ByteBudget {
    bytes: Arc<Semaphore>,
    total: u32,
}

/// A delivery's share of the budget, given back when the delivery's task ends.
pub(super) type Reserved = OwnedSemaphorePermit;

impl ByteBudget {
    pub(super) fn new(bytes: usize) -> ByteBudget {
        let total = u32::try_from(bytes).unwrap_or(u32::MAX).max(1);
        ByteBudget {
            bytes: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    /// Waits until a body of `len` bytes fits. A body larger than the whole budget takes
    /// all of it, so it is worked on alone rather than never.
    pub(super) async fn reserve(&self, len: usize) -> Reserved {
        let share = u32::try_from(len).unwrap_or(u32::MAX).clamp(1, self.total);
        self.bytes
            .clone()
            .acquire_many_owned(share)
            .await
            .expect("the budget's semaphore is never closed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn small_bodies_share_the_budget_and_a_huge_one_runs_alone() {
        let budget = ByteBudget::new(100);
        let a = budget.reserve(40).await;
        let b = budget.reserve(60).await;
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(20), budget.reserve(1));
        assert!(
            waiting.await.is_err(),
            "a full budget makes the next one wait"
        );
        drop((a, b));
        let huge = budget.reserve(10_000).await;
        assert_eq!(budget.bytes.available_permits(), 0);
        drop(huge);
        assert_eq!(budget.bytes.available_permits(), 100);
    }
}
