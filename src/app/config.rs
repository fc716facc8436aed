//! What a running process is made of: the shared [`Settings`] plus the `run` command's own
//! settings, resolved into one [`AppConfig`] that [`super::App`] is built from.

use std::net::SocketAddr;
use std::time::Duration;

use clap::ValueEnum;

use super::audit::AuditEvery;
use crate::amqp::{AmqpConfig, Topology};
use crate::config::Settings;
use crate::keys::Keyspace;
use crate::runner::{RunOptions, DEFAULT_CONCURRENCY, DEFAULT_IN_FLIGHT_BYTES};
use crate::secrets::SettingError;
use crate::stages::StageName;
use crate::store::StoreConfig;

/// Which stages a process runs.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum StageChoice {
    Capture,
    Normalize,
    Wrap,
    /// All three stages in one process (small sites, the demo).
    All,
    /// No stage: only the periodic audit (every `--audit-every`, or
    /// [`AUDITOR_DEFAULT_EVERY`]) and the endpoints. Run one replica of it.
    Auditor,
}

/// How often `run auditor` audits when `--audit-every` is not given.
pub const AUDITOR_DEFAULT_EVERY: Duration = Duration::from_secs(300);

impl StageChoice {
    pub fn stages(self) -> Vec<StageName> {
        match self {
            StageChoice::Capture => vec![StageName::Capture],
            StageChoice::Normalize => vec![StageName::Normalize],
            StageChoice::Wrap => vec![StageName::Wrap],
            StageChoice::All => StageName::ALL.to_vec(),
            StageChoice::Auditor => Vec::new(),
        }
    }
}

/// `heat-pipeline run`'s own settings (each also an environment variable).
#[derive(Debug, Clone, clap::Args)]
pub struct RunSettings {
    /// Which stage to run.
    #[arg(value_enum)]
    pub stage: StageChoice,

    /// Messages handled at once per stage; also the AMQP prefetch.
    #[arg(long, env = "CONCURRENCY", default_value_t = DEFAULT_CONCURRENCY, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,

    /// Bytes of message bodies handled at once per stage: a delivery waits (unacked) until
    /// its body fits, so large outputs do not multiply memory by the prefetch.
    #[arg(long, env = "IN_FLIGHT_BYTES", default_value_t = DEFAULT_IN_FLIGHT_BYTES, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=u64::from(u32::MAX)))]
    pub in_flight_bytes: usize,

    /// How long SIGTERM waits for in-flight messages before returning them to the queue.
    #[arg(long, env = "DRAIN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,

    /// Where to serve /metrics, /healthz and /readyz (port 0: any free port, logged).
    #[arg(long, env = "HTTP_ADDR", default_value = "127.0.0.1:9464")]
    pub http_addr: SocketAddr,

    /// Run the `audit` scan this often and export its counts as gauges
    /// (`heat_pipeline_stuck_jobs`, ...). Off by default; enable it on one process only.
    #[arg(long, env = "AUDIT_EVERY", value_parser = humantime::parse_duration)]
    pub audit_every: Option<Duration>,

    /// With `--audit-every`: from what age a job_state without its /state counts as stuck.
    #[arg(long, env = "AUDIT_OLDER_THAN", default_value = "10m", value_parser = humantime::parse_duration)]
    pub audit_older_than: Duration,

    /// etcd's --max-request-bytes; larger records are dead-lettered.
    #[arg(long, env = "ETCD_MAX_REQUEST_BYTES", default_value_t = 1536 * 1024)]
    pub etcd_max_request_bytes: usize,
}

/// Everything [`super::App::build`] needs, resolved and checked.
#[derive(Debug, Clone)]
pub struct AppConfig {
    pub amqp: AmqpConfig,
    pub store: StoreConfig,
    pub topology: Topology,
    pub keys: Keyspace,
    /// The stages this process runs, each once.
    pub stages: Vec<StageName>,
    pub options: RunOptions,
    pub http_addr: SocketAddr,
    /// `--audit-every`: the periodic audit, if any.
    pub audit: Option<AuditEvery>,
}

impl AppConfig {
    /// Reads the secret files and checks the URLs now, so that a bad setting fails at
    /// start-up, by name.
    pub fn from_settings(
        settings: &Settings,
        run: &RunSettings,
    ) -> Result<AppConfig, SettingError> {
        Ok(AppConfig {
            amqp: settings.amqp_config()?,
            store: settings.store_config()?,
            topology: settings.topology(),
            keys: settings.keyspace(),
            stages: run.stage.stages(),
            options: RunOptions {
                concurrency: run.concurrency,
                drain_timeout: run.drain_timeout,
                max_request_bytes: run.etcd_max_request_bytes,
                in_flight_bytes: run.in_flight_bytes,
            },
            http_addr: run.http_addr,
            audit: run
                .audit_every
                .or((run.stage == StageChoice::Auditor).then_some(AUDITOR_DEFAULT_EVERY))
                .map(|every| AuditEvery {
                    every,
                    older_than: run.audit_older_than,
                }),
        })
    }
}
