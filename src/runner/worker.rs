//! What one stage's deliveries share in a process, across its broker sessions: the
//! process's [`Pipeline`] (connection, store, topology, settings) and the stage's own
//! store batcher and per-resource sequencer.

use std::sync::Arc;
use std::time::Duration;

use backoff::ExponentialBackoff;

use super::budget::{ByteBudget, DEFAULT_IN_FLIGHT_BYTES};
use super::cache::RecordCache;
use super::connection::SharedConnection;
use super::sequencer::Sequencer;
use crate::amqp::Topology;
use crate::store::{BatchedStore, Store};
use crate::telemetry::health::Health;

/// Messages in flight per stage by default. Measured on 2 cores with RabbitMQ and etcd
/// beside it (20,000 creates, one `run all`): 64 drained about 1,650 msg/s where 32 drained
/// about 1,100 in the same hour: more in flight means larger etcd batches. 128 gained
/// nothing more (docs/SCALING.md).
pub const DEFAULT_CONCURRENCY: u16 = 64;

/// Settings of a stage runner.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Messages handled at once by one stage in this process; also the AMQP prefetch, so the
    /// broker never hands this process more than it works on.
    pub concurrency: u16,
    /// How long a shutdown waits for in-flight messages before returning them to the queue.
    pub drain_timeout: Duration,
    /// etcd's `--max-request-bytes`: larger writes are dead-lettered, not retried.
    pub max_request_bytes: usize,
    /// Bytes of message bodies one stage works on at once ([`DEFAULT_IN_FLIGHT_BYTES`]).
    pub in_flight_bytes: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            concurrency: DEFAULT_CONCURRENCY,
            drain_timeout: Duration::from_secs(30),
            max_request_bytes: 1536 * 1024,
            in_flight_bytes: DEFAULT_IN_FLIGHT_BYTES,
        }
    }
}

/// What every stage runner of a process shares.
pub struct Pipeline {
    /// One connection for every stage of the process, each with its own channels.
    pub connection: SharedConnection,
    /// Readiness flags shared with `/readyz`.
    pub health: Arc<Health>,
    pub topology: Topology,
    pub store: Store,
    pub options: RunOptions,
}

/// What one stage's deliveries share in a process: survives reconnects.
pub(super) struct Worker<S> {
    pub(super) stage: S,
    pub(super) pipeline: Arc<Pipeline>,
    /// The stage's own batcher, so that a batch never mixes stages (normalize and wrap
    /// touch the same job_state keys).
    pub(super) store: BatchedStore,
    pub(super) sequencer: Arc<Sequencer>,
    /// What this stage last committed or read at each key (a bounded guess source).
    pub(super) cache: std::sync::Mutex<RecordCache>,
    /// Bounds the bytes of the deliveries in work, as prefetch bounds their count.
    pub(super) budget: ByteBudget,
}

/// Retries a transient store error: at most every 5 s, forever. While the store is down
/// every in-flight message waits here, prefetch is exhausted and the stage takes no new
/// work: back-pressure, not failure.
pub(super) fn store_backoff() -> ExponentialBackoff {
    retry_forever(Duration::from_millis(50), Duration::from_secs(5))
}

/// Retries from `initial` up to every `max`, forever, with jitter so that many processes
/// do not retry in step.
pub(super) fn retry_forever(initial: Duration, max: Duration) -> ExponentialBackoff {
    backoff::ExponentialBackoffBuilder::new()
        .with_initial_interval(initial)
        .with_max_interval(max)
        .with_randomization_factor(0.5)
        .with_max_elapsed_time(None)
        .build()
}
