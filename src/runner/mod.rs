//! The one consumer loop shared by every stage.
//!
//! `run` owns the reconnect loop (lapin's auto-recovery is not trusted after a broker
//! restart): connect, declare the topology, consume until the session fails or shutdown is
//! asked for, then start over with backoff. Each delivery is handled by
//! `delivery::handle` in its own task; prefetch bounds how many run at once.
//!
//! Invariant: a delivery is acked only after its etcd transaction committed and its
//! hand-off (or dead letter) was confirmed by the broker. Whatever stops a delivery before
//! that leaves it unacked, and the broker redelivers it.

mod acks;
mod budget;
mod cache;
mod connection;
mod delivery;
mod headers;
mod link;
mod sequencer;
mod session;
mod worker;

use std::sync::Arc;
use std::time::{Duration, Instant};

use backoff::backoff::Backoff;
use backoff::ExponentialBackoff;
use tokio_util::sync::CancellationToken;

use crate::amqp::Refusal;
use crate::stages::Stage;
use crate::store::BatchedStore;
use crate::telemetry::events::{Reconnected, StageStarted, OUTAGE_SUMMARY_EVERY};
use budget::ByteBudget;
use session::{Loss, OpenError, Session, SessionEnd};
use worker::Worker;

pub use budget::DEFAULT_IN_FLIGHT_BYTES;
pub use connection::SharedConnection;
pub use worker::{Pipeline, RunOptions, DEFAULT_CONCURRENCY};

/// How long opening a session may take: reaching a node (each node of a cluster gets
/// `amqp::connect::NODE_TIMEOUT`), its channels and the topology.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `stage` until `shutdown` is cancelled, then drains and returns. Before its first
/// session, a refusal no retry can change (a wrong login, a missing vhost, queues declared
/// with other arguments) ends it with that [`Refusal`]; later, every failure is retried.
pub(crate) async fn run<S: Stage>(
    stage: S,
    pipeline: Arc<Pipeline>,
    shutdown: CancellationToken,
) -> Result<(), Refusal> {
    let name = stage.name();
    let store = BatchedStore::new(
        pipeline.store.clone(),
        name,
        pipeline.options.max_request_bytes,
        usize::from(pipeline.options.concurrency),
    );
    let worker = Arc::new(Worker {
        stage,
        pipeline: pipeline.clone(),
        store,
        sequencer: Arc::default(),
        cache: Default::default(),
        budget: ByteBudget::new(pipeline.options.in_flight_bytes),
    });
    StageStarted { stage: name }.emit();
    let health = pipeline.health.stage(name);
    let mut retry = reconnect_backoff();
    let mut attempt: u32 = 0;
    let mut sessions: u64 = 0;
    // Since when the stage has had no session, and when that was last logged at warn.
    let mut down_since = Instant::now();
    let mut last_line: Option<Instant> = None;
    loop {
        if shutdown.is_cancelled() {
            return Ok(());
        }
        attempt += 1;
        // A broker that accepts TCP but never finishes the handshake must not hang us.
        let opened = match tokio::time::timeout(OPEN_TIMEOUT, Session::open(&pipeline)).await {
            Ok(result) => result,
            Err(_) => Err(OpenError::TimedOut(OPEN_TIMEOUT)),
        };
        match opened {
            Ok(session) => {
                tracing::info!(stage = %name, node = %session.node, "consuming");
                sessions += 1;
                if sessions > 1 {
                    Reconnected {
                        stage: name,
                        attempt,
                        after: down_since.elapsed(),
                    }
                    .emit();
                }
                last_line = None;
                retry.reset();
                attempt = 0;
                health.set(true);
                let end = session.consume(worker.clone(), &shutdown).await;
                health.set(false);
                down_since = Instant::now();
                match end {
                    SessionEnd::Shutdown => return Ok(()),
                    SessionEnd::Lost(Loss::ConsumeRefused(error)) if sessions == 1 => {
                        if let Some(refusal) = refusal(&pipeline, &error) {
                            return Err(refusal);
                        }
                        tracing::warn!(stage = %name, %error, "cannot consume; reconnecting");
                    }
                    SessionEnd::Lost(reason) => {
                        tracing::warn!(stage = %name, %reason, "broker session lost; reconnecting");
                    }
                }
            }
            Err(OpenError::Broker(error))
                if sessions == 0 && refusal(&pipeline, &error).is_some() =>
            {
                return Err(refusal(&pipeline, &error).expect("checked"));
            }
            // The first failure is a warning, then one summary every OUTAGE_SUMMARY_EVERY:
            // a broker away for minutes must not write a line per attempt.
            Err(error) if last_line.is_none_or(|at| at.elapsed() >= OUTAGE_SUMMARY_EVERY) => {
                last_line = Some(Instant::now());
                let down =
                    humantime::format_duration(Duration::from_secs(down_since.elapsed().as_secs()));
                tracing::warn!(
                    stage = %name,
                    attempt,
                    down = %down,
                    url = %pipeline.connection.config(),
                    %error,
                    "cannot open a broker session; retrying"
                );
            }
            Err(error) => {
                tracing::debug!(stage = %name, attempt, %error, "cannot open a broker session");
            }
        }
        let wait = retry.next_backoff().unwrap_or(Duration::from_secs(10));
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// `error` as a [`Refusal`], if it is one, with the broker shown masked.
fn refusal(pipeline: &Pipeline, error: &lapin::Error) -> Option<Refusal> {
    Refusal::of(error, &pipeline.connection.config().redacted_url())
}

/// Reconnects: quick at first, then at most every 10 s, forever, with jitter so that many
/// processes do not hammer a restarted broker in step.
fn reconnect_backoff() -> ExponentialBackoff {
    worker::retry_forever(Duration::from_millis(200), Duration::from_secs(10))
}
