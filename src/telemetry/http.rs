//! The operator endpoints: `/metrics` (Prometheus text), `/healthz` (alive) and `/readyz`
//! (200 only while connected to the broker and to etcd, 503 with the reasons otherwise).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::health::Health;

#[derive(Clone)]
struct Endpoints {
    metrics: PrometheusHandle,
    health: Arc<Health>,
}

/// Serves on `listener` until `shutdown`. The bound address is logged, so that a port picked
/// by the system (port 0) can be found.
pub fn serve(
    listener: TcpListener,
    metrics: PrometheusHandle,
    health: Arc<Health>,
    shutdown: CancellationToken,
) {
    let bound = listener.local_addr();
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(Endpoints { metrics, health });
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(error) = served {
            tracing::error!(%error, "the HTTP server stopped");
        }
    });
    if let Ok(addr) = bound {
        tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
    }
}

async fn render_metrics(State(endpoints): State<Endpoints>) -> String {
    endpoints.metrics.run_upkeep();
    endpoints.metrics.render()
}

async fn readyz(State(endpoints): State<Endpoints>) -> (StatusCode, String) {
    match endpoints.health.readiness() {
        (true, _) => (StatusCode::OK, "ready\n".into()),
        (false, reasons) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", reasons.join("; ")),
        ),
    }
}
