//! `heat-pipeline audit`: prints the findings of the library's `audit` scan, one per line
//! as they are found (a table, or JSON lines), then those of dead letters whose resource
//! has no key in etcd, and exits 0 (none), 1 (some) or 2 (the scan failed).

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use heat_pipeline::amqp::AmqpConfig;
use heat_pipeline::config::Settings;
use heat_pipeline::ops::audit::{self, DeadLetters, Finding};
use heat_pipeline::store::Store;

use super::format::Format;
use super::progress;
use super::report::{one_line, Services};

#[derive(Debug, clap::Args)]
#[command(after_help = "Exit codes:
  0  no finding
  1  at least one finding
  2  the scan could not run or finish (etcd, a setting: the error says why)
  2  the command line is wrong")]
pub(crate) struct AuditArgs {
    /// A job_state or heat_stacks younger than this belongs to a job still running: not
    /// reported as stuck or behind (age from the order key's `written_at`).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    older_than: Duration,
    /// `text`: a table for people; `json`: one JSON object per finding, per line.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Keys per etcd request (memory holds five pages).
    #[arg(long, default_value_t = audit::DEFAULT_PAGE_SIZE)]
    page_size: i64,
    /// Dead letters read per stage to explain findings (left in their queues).
    #[arg(long, default_value_t = 10_000)]
    dead_letter_limit: usize,
    /// Do not read the dead-letter queues (no broker needed; `dead_letter` is null, and no
    /// `dead_letter_only` finding).
    #[arg(long)]
    no_dead_letters: bool,
}

/// Exit code when the scan could not run or finish.
const CANNOT_SCAN: u8 = 2;

pub(crate) async fn audit(settings: Settings, args: AuditArgs) -> anyhow::Result<ExitCode> {
    let services = Services::of(&settings);
    Ok(match scan(&settings, &args, &services).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: cannot scan: {}", one_line(&error, &services));
            ExitCode::from(CANNOT_SCAN)
        }
    })
}

async fn scan(
    settings: &Settings,
    args: &AuditArgs,
    services: &Services,
) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    if let Some(warning) = audit::prefix_warning(&settings.naming.etcd_key_prefix) {
        eprintln!("warning: {warning}");
    }
    let broker = match args.no_dead_letters {
        true => None,
        false => Some(settings.amqp_config()?),
    };
    let mut letters = DeadLetters::default();
    if let Some(broker) = &broker {
        let topology = settings.topology();
        match audit::dead_letters(broker, &topology, args.dead_letter_limit).await {
            Ok(read) => letters = read,
            Err(error) => eprintln!(
                "warning: dead letters not read, findings are not explained: {}",
                one_line(&error.into(), services)
            ),
        }
    }
    let keys = settings.keyspace();
    let store = Store::connect_checked(&settings.store_config()?).await?;
    let now = SystemTime::now();
    let bar = progress::counter("scanning", "resources");
    let mut printer = Printer::new(args.format, !bar.is_hidden());
    let scanned = audit::scan(&store, &keys, args.page_size, |resource| {
        bar.inc(1);
        letters.met(&resource.path, &resource.id);
        for mut finding in audit::classify(&resource, &keys, now, args.older_than) {
            finding.dead_letter = letters.explain(&finding);
            bar.suspend(|| printer.print(&finding));
            bar.set_message(format!(", {} finding(s)", printer.found));
        }
    })
    .await;
    bar.finish_and_clear();
    let stats = match scanned {
        Ok(stats) => stats,
        Err(error) => {
            let found = printer.found;
            drop(printer);
            eprintln!(
                "error: cannot scan: {} ({found} finding(s) printed before)",
                one_line(&error.into(), services)
            );
            return Ok(ExitCode::from(CANNOT_SCAN));
        }
    };
    for finding in letters.dead_letter_only(&keys) {
        printer.print(&finding);
    }
    let found = printer.found;
    drop(printer);
    eprintln!(
        "scanned {} resources ({} keys, {} pages) at revision {} in {:.1} s; {} dead letters read; {found} finding(s)",
        stats.resources,
        stats.keys,
        stats.pages,
        stats.revision,
        started.elapsed().as_secs_f64(),
        letters.total,
    );
    if stats.keys == 0 {
        warn_if_the_pipeline_ran(settings, broker.as_ref()).await;
    }
    Ok(if found == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A scan that found no key is a clean bill only if the pipeline never ran: if its queues
/// exist, the keys are most likely elsewhere (another `ETCD_KEY_PREFIX`). Said on stderr;
/// without a broker (`--no-dead-letters`, or it cannot be asked) nothing is said.
async fn warn_if_the_pipeline_ran(settings: &Settings, broker: Option<&AmqpConfig>) {
    let Some(broker) = broker else {
        return;
    };
    if let Ok(true) = audit::pipeline_queues_exist(broker, &settings.topology()).await {
        eprintln!(
            "warning: no key under ETCD_KEY_PREFIX {:?} (API {}), yet the queues of pipeline \
             {:?} exist: is ETCD_KEY_PREFIX (or ETCD_API_VERSION) right?",
            settings.naming.etcd_key_prefix,
            settings.naming.etcd_api_version,
            settings.naming.pipeline_name
        );
    }
}

/// Prints findings to stdout as they come, and counts them.
struct Printer {
    format: Format,
    out: std::io::BufWriter<std::io::StdoutLock<'static>>,
    /// Whether each line goes out at once: with a progress bar on the terminal, a line
    /// must be out before the bar is drawn again.
    flush_each: bool,
    found: u64,
}

impl Printer {
    fn new(format: Format, flush_each: bool) -> Printer {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        if format == Format::Text {
            let _ = writeln!(
                out,
                "{:<16}  {:<12}  {:<38}  {:>7}  {:<24}  WHY",
                "PROBLEM", "PATH", "ID", "VERSION", "SINCE"
            );
        }
        Printer {
            format,
            out,
            flush_each,
            found: 0,
        }
    }

    fn print(&mut self, finding: &Finding) {
        self.found += 1;
        let _ = match self.format {
            Format::Json => writeln!(
                self.out,
                "{}",
                serde_json::to_string(finding).expect("a finding serializes")
            ),
            Format::Text => writeln!(self.out, "{}", row(finding)),
        };
        if self.flush_each {
            let _ = self.out.flush();
        }
    }
}

impl Drop for Printer {
    fn drop(&mut self) {
        let _ = self.out.flush();
    }
}

fn row(finding: &Finding) -> String {
    let mut why = finding.detail.clone();
    if let Some(letter) = &finding.dead_letter {
        why.push_str(&format!(
            "; dead letter at {}: {} {}: {} (attempts {}, last {})",
            letter.stage,
            letter.kind,
            letter.class.as_deref().unwrap_or("-"),
            letter.reason.as_deref().unwrap_or("-"),
            letter.attempts.map_or("-".to_string(), |n| n.to_string()),
            letter.last_failed_at.as_deref().unwrap_or("-"),
        ));
    }
    format!(
        "{:<16}  {:<12}  {:<38}  {:>7}  {:<24}  {why}",
        finding.problem.as_str(),
        finding.path,
        finding.id,
        finding.version.map_or("-".to_string(), |v| v.to_string()),
        finding.since.as_deref().unwrap_or("-"),
    )
}
