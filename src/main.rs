//! The `heat-pipeline` command: parses the command line and calls the library.

mod commands;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use commands::audit::AuditArgs;
use commands::dlq::DlqArgs;
use commands::healthcheck::HealthcheckArgs;
use commands::publish::PublishArgs;
use commands::reconcile::ReconcileArgs;
use commands::report::{one_line, Services};
use commands::show::ShowArgs;
use commands::status::StatusArgs;
use heat_pipeline::app::RunSettings;
use heat_pipeline::config::Settings;

/// Turns OpenStack Heat stack results into the state records kept in etcd.
#[derive(Debug, Parser)]
#[command(
    version,
    propagate_version = true,
    after_help = "Exit codes: 0 done; 2 the command line is wrong; each command's --help lists \
                  its others."
)]
struct Cli {
    #[command(flatten)]
    settings: Settings,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true,
          help_heading = "Logging")]
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
    #[command(after_help = RUN_EXIT_CODES)]
    Run(RunSettings),
    /// Publish Heat results (one JSON document per file, or JSON lines) to the input exchange.
    Publish(PublishArgs),
    /// Print the three records of a resource, named as PATH/ID.
    Show(ShowArgs),
    /// List, replay or purge a stage's dead letters.
    Dlq(DlqArgs),
    /// Show each stage's waiting messages, consumers and dead letters (exit 1: a queue is missing).
    Status(StatusArgs),
    /// Find jobs left half done and records that break the invariants, with the dead
    /// letters that explain them (exit 0: none, 1: some, 2: could not scan).
    Audit(AuditArgs),
    /// Re-drive resources through the stages from their dead letters or stored records.
    Reconcile(ReconcileArgs),
    /// Remove the input exchange's bindings to the normalize and wrap queues that versions
    /// before 0.2 made (run once every process is 0.2 or later: docs/OPERATIONS.md).
    #[command(after_help = SEAL_EXIT_CODES)]
    Seal,
    /// Exit 0 if a running process answers 200 on its readiness URL (container healthchecks;
    /// the image has no curl).
    Healthcheck(HealthcheckArgs),
}

/// `run`'s exit codes (its flags are the library's `RunSettings`, so they are said here).
const RUN_EXIT_CODES: &str = "Exit codes:
  0  stopped by SIGTERM or SIGINT, after draining
  1  refused to start, or stopped on an error (the error says why): the HTTP port in use, a
     setting that cannot work, etcd refusing the credentials, the broker refusing the login,
     vhost, permissions or queue arguments; an unreachable broker or etcd is waited for
  2  the command line is wrong";

const SEAL_EXIT_CODES: &str = "Exit codes:
  0  sealed (or already sealed)
  1  the broker could not be reached or refused (the error says why)
  2  the command line is wrong";

/// jemalloc instead of glibc's malloc: about a fifth less CPU per message, since records
/// and hand-offs of tens of KiB cost glibc fresh pages (and their faults) again and again.
/// Measured in docs/SCALING.md ("Outputs as text, and jemalloc").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read when it starts (`MALLOC_CONF`'s format; the variable
/// `_RJEM_MALLOC_CONF` still overrides them). Two arenas instead of eight on two cores, and
/// freed pages handed back after a second instead of ten: a lower peak RSS, which
/// orchestrators hold a process to.
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8; 70] =
    b"narenas:2,dirty_decay_ms:1000,muzzy_decay_ms:0,background_thread:true\0";

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
    let services = Services::of(&cli.settings);
    match dispatch(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", one_line(&error, &services));
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = cli.settings;
    match cli.command {
        Command::Run(args) => commands::run::run(settings, args).await,
        Command::Publish(args) => commands::publish::publish(settings, args).await,
        Command::Show(args) => commands::show::show(settings, args).await,
        Command::Dlq(args) => commands::dlq::dlq(settings, args).await,
        Command::Status(args) => commands::status::status(settings, args).await,
        Command::Audit(args) => commands::audit::audit(settings, args).await,
        Command::Reconcile(args) => commands::reconcile::reconcile(settings, args).await,
        Command::Seal => commands::seal::seal(settings).await,
        Command::Healthcheck(args) => commands::healthcheck::healthcheck(args).await,
    }
}

/// Logs to stderr at `info` unless `RUST_LOG` says otherwise, in colour only on a terminal
/// (a log file or a container's log collector would get escape codes). lapin's own log is
/// off unless `RUST_LOG` names it (`RUST_LOG=info,lapin=warn`): every failure it reports, the runner and the commands
/// report once themselves, while lapin repeats each as two or three ERROR lines (and says
/// "aborting recovery" of a recovery the runner owns).
fn init_logging(format: LogFormat) {
    let mut spec = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    if !spec.contains("lapin") {
        spec.push_str(",lapin=off");
    }
    let filter = tracing_subscriber::EnvFilter::new(spec);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        // A closed or broken log stream (`| head`) is ignored: the default reports the
        // failed write with `eprintln!`, which panics on that same stream.
        .log_internal_errors(false);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
