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

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Buckets for the latency histograms, in seconds: 1 ms to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the process-wide Prometheus recorder (once; later calls return the same handle).
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
            handle
        })
        .clone()
}
