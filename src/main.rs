//! The `heat-pipeline` command: parses the command line and calls the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use heat_pipeline::config::Settings;
use heat_pipeline::publish;
use heat_pipeline::runner::{self, Pipeline, RunOptions, SharedConnection};
use heat_pipeline::stages::{Capture, Normalize, Wrap};
use heat_pipeline::store::Store;
use heat_pipeline::telemetry::{self, health::Health};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

/// Turns OpenStack Heat stack results into the state records kept in etcd.
#[derive(Debug, Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    settings: Settings,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a stage's consumer (or all three) until SIGTERM or SIGINT, then drain and exit 0.
    Run(RunArgs),
    /// Publish Heat results (one JSON document per file, or JSON lines) to the input exchange.
    Publish(PublishArgs),
    /// Print the three records of a resource.
    Show(ShowArgs),
    /// List, replay or purge a stage's dead letters.
    Dlq(DlqArgs),
    /// Show each stage's waiting messages, consumers and dead letters (exit 1: a queue is missing).
    Status(StatusArgs),
    /// Exit 0 if a running process answers 200 on its readiness URL (container healthchecks;
    /// the image has no curl).
    Healthcheck(HealthcheckArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum StageChoice {
    Capture,
    Normalize,
    Wrap,
    /// All three stages in one process (small sites, the demo).
    All,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
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

#[derive(Debug, clap::Args)]
struct PublishArgs {
    /// Files to publish; `-` reads standard input.
    #[arg(required = true)]
    files: Vec<PathBuf>,

    /// Publish documents even if they are not valid Heat results (to test dead-lettering).
    #[arg(long)]
    no_validate: bool,
}

#[derive(Debug, clap::Args)]
struct HealthcheckArgs {
    /// The URL to ask.
    #[arg(long, default_value = "http://127.0.0.1:9464/readyz")]
    url: String,
}

#[derive(Debug, clap::Args)]
struct ShowArgs {
    /// The resource's collection, e.g. `ports`.
    path: String,
    /// The resource's id.
    id: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    // Not `Cli::parse()`: the matches also tell where a value came from.
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Err(error) = cli.settings.refuse_secrets_on_command_line(&matches) {
        let kind = clap::error::ErrorKind::ValueValidation;
        Cli::command().error(kind, error).exit();
    }
    init_logging(cli.log_format);
    match dispatch(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = cli.settings;
    match cli.command {
        Command::Run(args) => run(settings, args).await,
        Command::Publish(args) => publish(settings, args).await,
        Command::Show(args) => show(settings, args).await,
        Command::Dlq(args) => dlq(settings, args).await,
        Command::Status(args) => status(settings, args).await,
        Command::Healthcheck(args) => healthcheck(args).await,
    }
}

async fn run(settings: Settings, args: RunArgs) -> anyhow::Result<ExitCode> {
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

async fn publish(settings: Settings, args: PublishArgs) -> anyhow::Result<ExitCode> {
    let amqp = settings.amqp_config()?;
    let mut documents = Vec::new();
    for file in &args.files {
        let (name, content) = if file.as_os_str() == "-" {
            let mut content = Vec::new();
            tokio::io::stdin()
                .read_to_end(&mut content)
                .await
                .context("reading standard input")?;
            ("<stdin>".to_string(), content)
        } else {
            let content = tokio::fs::read(file)
                .await
                .with_context(|| format!("reading {}", file.display()))?;
            (file.display().to_string(), content)
        };
        documents.extend(publish::split_documents(&name, &content)?);
    }
    if !args.no_validate {
        publish::validate(&documents)?;
    }
    let confirmed = publish::publish(&amqp, &settings.topology(), &documents)
        .await
        .with_context(|| {
            format!(
                "publishing to {}",
                heat_pipeline::amqp::redact_url(&settings.amqp_url)
            )
        })?;
    println!(
        "{confirmed} of {} message(s) confirmed by the broker (exchange {})",
        documents.len(),
        settings.topology().exchange()
    );
    if confirmed != documents.len() {
        bail!("not every message was confirmed");
    }
    Ok(ExitCode::SUCCESS)
}

async fn show(settings: Settings, args: ShowArgs) -> anyhow::Result<ExitCode> {
    let store = Store::connect(&settings.store_config()?).await?;
    let records =
        heat_pipeline::show::records(&store, &settings.keyspace(), &args.path, &args.id).await?;
    for record in &records {
        println!("{}: {}", record.name, record.key);
        match (&record.value, &record.removed) {
            (Some(value), _) => println!("{}", String::from_utf8_lossy(value)),
            (None, Some((revision, value))) => println!(
                "(absent: removed when the job finished; last written at revision {revision}:)\n{}",
                String::from_utf8_lossy(value)
            ),
            (None, None) => println!("(absent)"),
        }
        println!();
    }
    // job_state is absent once a job has finished, so only "nothing at all" is a failure.
    let nothing = records.iter().all(|r| r.value.is_none());
    Ok(if nothing {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

fn init_logging(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

// ---- `heat-pipeline dlq` (the work is in src/dlq.rs) ----

#[derive(Debug, clap::Args)]
struct DlqArgs {
    #[command(subcommand)]
    command: DlqCommand,
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// Show a stage's dead letters and why they failed, leaving them in the queue.
    List {
        /// capture, normalize or wrap.
        stage: heat_pipeline::stages::StageName,
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Send a stage's dead letters back to the stage, with their failure headers removed.
    Replay {
        /// capture, normalize or wrap.
        stage: heat_pipeline::stages::StageName,
        /// Only print what would be replayed; leave every dead letter in the queue.
        #[arg(long)]
        dry_run: bool,
        /// Replay at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Delete all of a stage's dead letters (asks first unless --yes).
    Purge {
        /// capture, normalize or wrap.
        stage: heat_pipeline::stages::StageName,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
}

async fn dlq(settings: Settings, args: DlqArgs) -> anyhow::Result<ExitCode> {
    use heat_pipeline::dlq;
    use std::io::{BufRead, Write};

    let url = &settings.amqp_config()?;
    let topology = settings.topology();
    let broker = || format!("RabbitMQ {url}");
    match args.command {
        DlqCommand::List { stage, limit } => {
            let listing = dlq::list(url, &topology, stage, limit)
                .await
                .with_context(broker)?;
            for letter in &listing.letters {
                println!("{letter}\n");
            }
            println!(
                "{} of {} dead letter(s) in {} listed; all left in the queue",
                listing.letters.len(),
                listing.in_queue,
                listing.queue
            );
        }
        DlqCommand::Replay {
            stage,
            dry_run,
            limit,
        } => {
            let replayed = dlq::replay(url, &topology, stage, limit, dry_run)
                .await
                .with_context(broker)?;
            for target in &replayed {
                println!(
                    "{}\n  -> exchange {}, routing key {}\n",
                    target.info, target.exchange, target.routing_key
                );
            }
            let queue = topology.dead_queue(stage);
            if dry_run {
                let n = replayed.len();
                println!("dry run: {n} dead letter(s) would be replayed; all left in {queue}");
            } else {
                println!("{} dead letter(s) replayed from {queue}", replayed.len());
            }
        }
        DlqCommand::Purge { stage, yes } => {
            let queue = topology.dead_queue(stage);
            if !yes {
                let n = dlq::count(url, &topology, stage)
                    .await
                    .with_context(broker)?;
                println!("{n} dead letter(s) in {queue} would be purged");
                if n == 0 {
                    return Ok(ExitCode::SUCCESS);
                }
                eprint!("Purge {n} dead letters from {queue}? [y/N] ");
                std::io::stderr().flush()?;
                let mut answer = String::new();
                // No terminal or end of input reads as "no".
                let _ = std::io::stdin().lock().read_line(&mut answer);
                if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
                    eprintln!("aborted; nothing purged");
                    return Ok(ExitCode::FAILURE);
                }
            }
            let purged = dlq::purge(url, &topology, stage)
                .await
                .with_context(broker)?;
            println!("{purged} dead letter(s) purged from {queue}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ---- end of `heat-pipeline dlq` ----

// ---- `heat-pipeline status` (the work is in src/status.rs) ----

#[derive(Debug, clap::Args)]
struct StatusArgs {
    /// `text`: a table for people; `json`: one JSON object for scripts.
    #[arg(long, value_enum, default_value_t = StatusFormat::Text)]
    format: StatusFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StatusFormat {
    Text,
    Json,
}

async fn status(settings: Settings, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let url = settings.amqp_config()?;
    let status = heat_pipeline::status::status(&url, &settings.topology())
        .await
        .with_context(|| format!("RabbitMQ {url}"))?;
    match args.format {
        StatusFormat::Text => print!("{status}"),
        StatusFormat::Json => println!("{}", status.to_json()),
    }
    let missing = status.missing();
    if missing.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "missing queue(s): {} (is PIPELINE_NAME right? has a stage process run yet?)",
        missing.join(", ")
    );
    Ok(ExitCode::FAILURE)
}

// ---- end of `heat-pipeline status` ----

async fn healthcheck(args: HealthcheckArgs) -> anyhow::Result<ExitCode> {
    let url = args.url.clone();
    let answer = tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .http_status_as_error(false)
            .build()
            .new_agent();
        agent.get(&url).call()
    })
    .await?;
    match answer {
        Ok(response) if response.status() == 200 => Ok(ExitCode::SUCCESS),
        Ok(response) => {
            eprintln!("{}: {}", args.url, response.status());
            Ok(ExitCode::FAILURE)
        }
        Err(error) => {
            eprintln!("{}: {error}", args.url);
            Ok(ExitCode::FAILURE)
        }
    }
}
