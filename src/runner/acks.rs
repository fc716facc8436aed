//! Acks of one session's deliveries, in batches.
//!
//! A delivery is handed here only once its etcd commit and its hand-off (or dead letter)
//! are confirmed. The longest run of finished delivery tags from the lowest outstanding one
//! is acked with a single `multiple` ack; a finished delivery that cannot join a run (an
//! earlier one is still in flight) is acked alone after [`HOLD`], so one slow message never
//! holds the prefetch window. Delivery tags of a channel start at 1 and have no gaps, and
//! this is the only place that acks on the consume channel, so a `multiple` ack never
//! covers a delivery that is not finished.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use lapin::options::BasicAckOptions;
use lapin::Acker;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a finished delivery waits for the ones before it before it is acked alone.
/// Each ack is a settle command in a quorum queue's log: at 5 ms, 21-51 % more acks went
/// alone than in the I/O floor (docs/SCALING.md, "The I/O floor"). A delivery waits here
/// already committed and handed off, so the hold delays nothing a reader sees; with a
/// prefetch of 64, 20 ms keeps the window open.
const HOLD: Duration = Duration::from_millis(20);

/// An ack is a frame handed to lapin's IO loop, which takes microseconds. One not sent in
/// this time means the connection is dead: after a connection reset lapin can leave such a
/// future pending forever, which once held a stage's session open through a broker
/// restart.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// The batcher has stopped (its session is closing): the delivery stays unacked and the
/// broker redelivers it.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the ack batcher has stopped")]
pub(super) struct BatcherStopped;

/// The handle the delivery tasks use; [`Acks::finish`] flushes and stops the batcher.
pub(super) struct Acks {
    tx: mpsc::Sender<(u64, Acker)>,
    close: CancellationToken,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Acks {
    /// Starts the batcher. `capacity` bounds the finished deliveries waiting (the prefetch
    /// suffices); `broken` is cancelled if an ack cannot be sent.
    pub(super) fn start(capacity: usize, broken: CancellationToken) -> Acks {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let close = CancellationToken::new();
        let task = tokio::spawn(run(rx, close.clone(), broken));
        Acks {
            tx,
            close,
            task: std::sync::Mutex::new(Some(task)),
        }
    }

    /// Hands over a finished delivery. An error means the batcher is gone (the session is
    /// closing); the delivery then stays unacked and is redelivered.
    pub(super) async fn done(&self, tag: u64, acker: Acker) -> Result<(), BatcherStopped> {
        self.tx.send((tag, acker)).await.map_err(|_| BatcherStopped)
    }

    /// Acks everything handed over so far and stops, waiting at most `within` (then the
    /// unsent acks are dropped and the broker redelivers). Call after the delivery tasks
    /// ended.
    pub(super) async fn finish(&self, within: Duration) {
        self.close.cancel();
        let task = self.task.lock().expect("not poisoned").take();
        if let Some(mut task) = task {
            if tokio::time::timeout(within, &mut task).await.is_err() {
                tracing::warn!(?within, "acks not sent in time; the broker will redeliver");
                task.abort();
            }
        }
    }
}

async fn run(
    mut rx: mpsc::Receiver<(u64, Acker)>,
    close: CancellationToken,
    broken: CancellationToken,
) {
    let mut pending = Pending::default();
    loop {
        let closing = tokio::select! {
            received = rx.recv() => match received {
                Some((tag, acker)) => {
                    pending.finished.insert(tag, acker);
                    false
                }
                None => true,
            },
            _ = tokio::time::sleep(HOLD), if !pending.finished.is_empty() => {
                if !pending.ack_alone(&broken).await {
                    return;
                }
                continue;
            }
            _ = close.cancelled() => true,
        };
        while let Ok((tag, acker)) = rx.try_recv() {
            pending.finished.insert(tag, acker);
        }
        if !pending.ack_run(&broken).await {
            return;
        }
        if closing {
            pending.ack_alone(&broken).await;
            return;
        }
    }
}

/// Finished deliveries not yet acked, and where the next run starts.
struct Pending {
    /// The lowest delivery tag not yet acked (as part of a run or alone).
    next: u64,
    finished: BTreeMap<u64, Acker>,
    /// Tags above `next` that were acked alone.
    acked_alone: BTreeSet<u64>,
}

impl Default for Pending {
    fn default() -> Self {
        Pending {
            next: 1,
            finished: BTreeMap::new(),
            acked_alone: BTreeSet::new(),
        }
    }
}

impl Pending {
    /// Acks the run from `next` with one `multiple` ack. `false` if the channel is gone.
    async fn ack_run(&mut self, broken: &CancellationToken) -> bool {
        let mut last = None;
        loop {
            if let Some(acker) = self.finished.remove(&self.next) {
                last = Some(acker);
            } else if !self.acked_alone.remove(&self.next) {
                break;
            }
            self.next += 1;
        }
        match last {
            Some(acker) => send(&acker, true, broken).await,
            None => true,
        }
    }

    /// Acks every finished delivery alone (they waited [`HOLD`] for a run).
    async fn ack_alone(&mut self, broken: &CancellationToken) -> bool {
        for (tag, acker) in std::mem::take(&mut self.finished) {
            if !send(&acker, false, broken).await {
                return false;
            }
            self.acked_alone.insert(tag);
        }
        // Runs that the lone acks completed move `next` on.
        self.ack_run(broken).await
    }
}

async fn send(acker: &Acker, multiple: bool, broken: &CancellationToken) -> bool {
    let ack = acker.ack(BasicAckOptions { multiple });
    match tokio::time::timeout(SEND_TIMEOUT, ack).await {
        Ok(Ok(true)) => true,
        outcome => {
            // The channel is gone: nothing was sent, and the broker will redeliver.
            tracing::warn!(?outcome, "ack failed; the session will reconnect");
            broken.cancel();
            false
        }
    }
}
