//! What operators see: metrics, readiness and trace context.
//!
//! - [`events`]: every counted thing is a named event whose `emit()` both logs and records
//!   the metric, so logs and metrics never drift apart.
//! - [`health`]: readiness (connected to the broker and to etcd) as shared flags.
//! - [`http`]: `/metrics`, `/healthz` and `/readyz`.
//! - [`trace`]: the W3C `traceparent` carried from the input through all three stages.

pub mod events;
pub mod health;
pub mod http;
pub mod trace;

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets for the latency histograms, in seconds: 1 ms to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often histogram samples are folded into their buckets.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Installs the process-wide Prometheus recorder (once; later calls return the same handle).
///
/// The recorder keeps every histogram sample until upkeep folds it into the buckets, which
/// otherwise happens only when `/metrics` is scraped: a process nobody scrapes would grow
/// by every message's samples (14 MiB over 200,000 messages in the benchmark). A thread
/// runs the upkeep instead, so memory stays flat whether or not Prometheus is there.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .expect("static buckets are valid");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // A second recorder (another library, a test) keeps its own; ours still renders.
            let _ = metrics::set_global_recorder(recorder);
            events::describe();
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP_INTERVAL);
                    upkeep.run_upkeep();
                })
                .expect("start the metrics upkeep thread");
            handle
        })
        .clone()
}
