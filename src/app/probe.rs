//! The etcd readiness probe. It lives in the wiring, not in telemetry, because it is the
//! one place where a health flag is fed from an adapter: telemetry stays a leaf that
//! imports no adapter, and the store knows nothing of readiness.
//!
//! It is also what tells the story of an etcd outage in the log, whether messages flow or
//! not: one line when etcd stops answering (or does not answer at start-up), a summary every
//! [`OUTAGE_SUMMARY_EVERY`] while it lasts, one line when it answers again, with how long
//! and how many messages waited. The stages' own retries log only at debug.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::store::{describe_failure, Store};
use crate::telemetry::events::{InFlight, StoreOutage, OUTAGE_SUMMARY_EVERY};
use crate::telemetry::health::Health;

/// How often etcd is asked, so that readiness follows an outage even when no message flows.
pub(super) const PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// An outage as the probe follows it.
struct Outage {
    since: Instant,
    last_line: Instant,
    /// The most messages in flight while it lasted: those that waited for etcd.
    waited: usize,
}

/// Reads one key every `every` until `shutdown`, records whether etcd answered, and logs
/// the outages (`endpoints` as ETCD_ENDPOINTS gave them).
pub(super) async fn probe_store(
    health: Arc<Health>,
    store: Store,
    endpoints: String,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut outage: Option<Outage> = None;
    let mut first = true;
    loop {
        let answer = store.get("/", None).await;
        health.set_store(answer.is_ok());
        let now = Instant::now();
        match (answer, outage.as_mut()) {
            (Ok(_), None) => {}
            (Ok(_), Some(ended)) => {
                StoreOutage::Ended {
                    endpoints: &endpoints,
                    after: now - ended.since,
                    waited: ended.waited.max(InFlight::total()),
                }
                .emit();
                outage = None;
            }
            (Err(error), None) => {
                let error = describe_failure(&endpoints, &error);
                StoreOutage::Began {
                    endpoints: &endpoints,
                    error: &error,
                    at_start: first,
                }
                .emit();
                outage = Some(Outage {
                    since: now,
                    last_line: now,
                    waited: InFlight::total(),
                });
            }
            (Err(error), Some(lasting)) => {
                lasting.waited = lasting.waited.max(InFlight::total());
                if now - lasting.last_line >= OUTAGE_SUMMARY_EVERY {
                    lasting.last_line = now;
                    StoreOutage::Lasts {
                        endpoints: &endpoints,
                        error: &describe_failure(&endpoints, &error),
                        since: now - lasting.since,
                    }
                    .emit();
                }
            }
        }
        first = false;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
