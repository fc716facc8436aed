//! `heat-pipeline run`: starts the operator endpoints, connects to etcd, and runs the
//! chosen stages until SIGTERM or SIGINT (the work is in the library's `runner`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::ValueEnum;
use heat_pipeline::config::Settings;
use heat_pipeline::runner::{self, Pipeline, RunOptions, SharedConnection};
use heat_pipeline::stages::{Capture, Normalize, Wrap};
use heat_pipeline::store::Store;
use heat_pipeline::telemetry::{self, health::Health};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum StageChoice {
    Capture,
    Normalize,
    Wrap,
    /// All three stages in one process (small sites, the demo).
    All,
}

#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// Which stage to run.
    #[arg(value_enum)]
    stage: StageChoice,

    /// Messages handled at once per stage; also the AMQP prefetch.
    #[arg(long, env = "CONCURRENCY", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,

    /// How long SIGTERM waits for in-flight messages before returning them to the queue.
    #[arg(long, env = "DRAIN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    drain_timeout: Duration,

    /// Where to serve /metrics, /healthz and /readyz (port 0: any free port, logged).
    #[arg(long, env = "HTTP_ADDR", default_value = "127.0.0.1:9464")]
    http_addr: SocketAddr,

    /// etcd's --max-request-bytes; larger records are dead-lettered.
    #[arg(long, env = "ETCD_MAX_REQUEST_BYTES", default_value_t = 1536 * 1024)]
    etcd_max_request_bytes: usize,
}

pub(crate) async fn run(settings: Settings, args: RunArgs) -> anyhow::Result<ExitCode> {
    let amqp = settings.amqp_config()?;
    let store_config = settings.store_config()?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));

    // Operator endpoints first, so that /healthz answers (and /readyz says why not) while
    // the stores are still being reached.
    let health = Arc::new(Health::default());
    let metrics = telemetry::metrics_handle();
    telemetry::http::serve(args.http_addr, metrics, health.clone(), shutdown.clone())
        .await
        .with_context(|| format!("serving HTTP on {}", args.http_addr))?;

    let store = tokio::select! {
        store = Store::connect_retrying(&store_config) => store?,
        _ = shutdown.cancelled() => return Ok(ExitCode::SUCCESS),
    };
    tokio::spawn(health.clone().probe_store(
        store.clone(),
        Duration::from_secs(2),
        shutdown.clone(),
    ));
    let pipeline = Arc::new(Pipeline {
        connection: SharedConnection::new(amqp),
        health,
        topology: settings.topology(),
        store,
        options: RunOptions {
            concurrency: args.concurrency,
            drain_timeout: args.drain_timeout,
            max_request_bytes: args.etcd_max_request_bytes,
        },
    });

    let keys = settings.keyspace();
    let mut stages = tokio::task::JoinSet::new();
    let wanted = |choice| args.stage == choice || args.stage == StageChoice::All;
    if wanted(StageChoice::Capture) {
        stages.spawn(runner::run(
            Capture { keys: keys.clone() },
            pipeline.clone(),
            shutdown.clone(),
        ));
    }
    if wanted(StageChoice::Normalize) {
        stages.spawn(runner::run(
            Normalize { keys: keys.clone() },
            pipeline.clone(),
            shutdown.clone(),
        ));
    }
    if wanted(StageChoice::Wrap) {
        stages.spawn(runner::run(
            Wrap { keys },
            pipeline.clone(),
            shutdown.clone(),
        ));
    }
    while let Some(result) = stages.join_next().await {
        result.context("a stage runner panicked")?;
    }
    pipeline.connection.close().await;
    tracing::info!("stopped cleanly");
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM (orchestrators) and SIGINT (a terminal) both ask for a clean drain.
async fn cancel_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
    }
    shutdown.cancel();
}
