//! The etcd readiness probe. It lives in the wiring, not in telemetry, because it is the
//! one place where a health flag is fed from an adapter: telemetry stays a leaf that
//! imports no adapter, and the store knows nothing of readiness.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::Store;
use crate::telemetry::health::Health;

/// How often etcd is asked, so that readiness follows an outage even when no message flows.
pub(super) const PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// Reads one key every `every` until `shutdown`, and records whether etcd answered.
pub(super) async fn probe_store(
    health: Arc<Health>,
    store: Store,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        let up = store.get("/", None).await.is_ok();
        health.set_store(up);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
