//! One heat-pipeline process, wired: settings → operator endpoints, etcd, the broker
//! connection, the stages and the etcd readiness probe, until shutdown.
//!
//! `main` runs an [`App`]; so do the integration tests (in process, on their own names and
//! a free HTTP port), so that what the tests exercise is what runs in production.
//!
//! ```no_run
//! # async fn example(config: heat_pipeline::app::AppConfig) -> Result<(), heat_pipeline::app::AppError> {
//! use tokio_util::sync::CancellationToken;
//! let shutdown = CancellationToken::new();
//! let app = heat_pipeline::app::App::build(config).await?; // binds the HTTP port
//! println!("serving on {}", app.http_addr());
//! app.run(shutdown).await // until the token is cancelled; then drains and returns
//! # }
//! ```

mod audit;
mod config;
mod probe;
mod signals;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::runner::{self, Pipeline, SharedConnection};
use crate::stages::{Capture, Normalize, StageName, Wrap};
use crate::store::{ConnectError, Store};
use crate::telemetry::{self, health::Health};

pub use audit::AuditEvery;
pub use config::{AppConfig, RunSettings, StageChoice, AUDITOR_DEFAULT_EVERY};
pub use signals::cancel_on_signal;

/// Why a process could not start or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot serve HTTP on {addr}")]
    Http {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// etcd refused the credentials or the settings cannot work (an unreachable etcd is
    /// waited for, not an error).
    #[error(transparent)]
    Store(#[from] ConnectError),
    /// The broker refused the process in a way no retry changes (login, vhost, queue
    /// arguments): one line that names the setting.
    #[error(transparent)]
    Broker(#[from] crate::amqp::Refusal),
    #[error("a stage runner panicked")]
    Panicked(#[source] tokio::task::JoinError),
}

/// A process, built but not yet running: its HTTP port is bound, nothing else is
/// connected.
pub struct App {
    config: AppConfig,
    listener: TcpListener,
    health: Arc<Health>,
}

impl App {
    /// Binds the operator endpoints' port (so that a port in use fails here, and a port 0
    /// is known before anything runs).
    pub async fn build(config: AppConfig) -> Result<App, AppError> {
        let http_error = |source| AppError::Http {
            addr: config.http_addr,
            source,
        };
        let listener = TcpListener::bind(config.http_addr)
            .await
            .map_err(http_error)?;
        Ok(App {
            config,
            listener,
            health: Arc::new(Health::default()),
        })
    }

    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub fn http_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves the endpoints, connects to etcd (waiting while it does not answer), runs the
    /// stages until `shutdown` is cancelled, drains them and closes the broker connection.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AppError> {
        let App {
            config,
            listener,
            health,
        } = self;
        // Endpoints first, so that /healthz answers (and /readyz says why not) while etcd
        // and the broker are still being reached.
        telemetry::http::serve(
            listener,
            telemetry::metrics_handle(),
            health.clone(),
            shutdown.clone(),
        );
        let store = tokio::select! {
            store = Store::connect_retrying(&config.store) => store?,
            _ = shutdown.cancelled() => return Ok(()),
        };
        tokio::spawn(probe::probe_store(
            health.clone(),
            store.clone(),
            config.store.endpoints.join(","),
            probe::PROBE_INTERVAL,
            shutdown.clone(),
        ));
        if let Some(every) = config.audit {
            tokio::spawn(audit::audit_periodically(
                store.clone(),
                config.keys.clone(),
                every,
                shutdown.clone(),
            ));
        }
        let pipeline = Arc::new(Pipeline {
            connection: SharedConnection::new(config.amqp),
            health,
            topology: config.topology,
            store,
            options: config.options,
        });

        // The stages stop with the process, or when one of them meets a refusal.
        let stop = shutdown.child_token();
        let mut stages = JoinSet::new();
        for stage in config.stages {
            let (keys, pipeline, shutdown) = (config.keys.clone(), pipeline.clone(), stop.clone());
            match stage {
                StageName::Capture => {
                    stages.spawn(runner::run(Capture { keys }, pipeline, shutdown))
                }
                StageName::Normalize => {
                    stages.spawn(runner::run(Normalize { keys }, pipeline, shutdown))
                }
                StageName::Wrap => stages.spawn(runner::run(Wrap { keys }, pipeline, shutdown)),
            };
        }
        if stages.is_empty() {
            // `run auditor`: the periodic audit and the endpoints, until shutdown.
            shutdown.cancelled().await;
        }
        let mut failed = None;
        while let Some(result) = stages.join_next().await {
            let error = match result {
                Ok(Ok(())) => continue,
                Ok(Err(refusal)) => AppError::Broker(refusal),
                Err(panic) => AppError::Panicked(panic),
            };
            stop.cancel();
            failed.get_or_insert(error);
        }
        pipeline.connection.close().await;
        match failed {
            Some(error) => Err(error),
            None => {
                tracing::info!("stopped cleanly");
                Ok(())
            }
        }
    }
}
