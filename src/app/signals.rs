//! Signals that end a process: SIGTERM (orchestrators) and SIGINT (a terminal) both ask
//! for a clean drain, by cancelling the one shutdown token every task watches.

use tokio_util::sync::CancellationToken;

/// Cancels `shutdown` at the first SIGTERM or SIGINT.
pub async fn cancel_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(error) => {
            tracing::error!(%error, "cannot watch SIGTERM; only SIGINT stops this process");
            let _ = tokio::signal::ctrl_c().await;
            shutdown.cancel();
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
    }
    shutdown.cancel();
}
