//! `heat-pipeline audit`: prints the findings of the library's `audit` scan, one per line
//! as they are found (a table, or JSON lines), and exits 0 (none), 1 (some) or 2 (the scan
//! failed).

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use clap::ValueEnum;
use heat_pipeline::config::Settings;
use heat_pipeline::ops::audit::{self, DeadLetters, Finding};
use heat_pipeline::store::Store;

#[derive(Debug, clap::Args)]
pub(crate) struct AuditArgs {
    /// A job_state or heat_stacks younger than this belongs to a job still running: not
    /// reported as stuck or behind (age from the order key's `written_at`).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    older_than: Duration,
    /// `text`: a table for people; `json`: one JSON object per finding, per line.
    #[arg(long, value_enum, default_value_t = AuditFormat::Text)]
    format: AuditFormat,
    /// Keys per etcd request (memory holds five pages).
    #[arg(long, default_value_t = audit::DEFAULT_PAGE_SIZE)]
    page_size: i64,
    /// Dead letters read per stage to explain findings (left in their queues).
    #[arg(long, default_value_t = 10_000)]
    dead_letter_limit: usize,
    /// Do not read the dead-letter queues (no broker needed; `dead_letter` is null).
    #[arg(long)]
    no_dead_letters: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AuditFormat {
    Text,
    Json,
}

/// Exit code when the scan could not finish.
const CANNOT_SCAN: u8 = 2;

pub(crate) async fn audit(settings: Settings, args: AuditArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let letters = if args.no_dead_letters {
        DeadLetters::default()
    } else {
        let url = settings.amqp_config()?;
        match audit::dead_letters(&url, &settings.topology(), args.dead_letter_limit).await {
            Ok(letters) => letters,
            Err(error) => {
                eprintln!("warning: dead letters not read (RabbitMQ {url}: {error}); findings are not explained");
                DeadLetters::default()
            }
        }
    };
    let keys = settings.keyspace();
    let store = match Store::connect(&settings.store_config()?).await {
        Ok(store) => store,
        Err(error) => {
            eprintln!("error: cannot scan: {error}");
            return Ok(ExitCode::from(CANNOT_SCAN));
        }
    };
    let now = SystemTime::now();
    let mut found = 0u64;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if let AuditFormat::Text = args.format {
        let _ = writeln!(
            out,
            "{:<10}  {:<12}  {:<38}  {:>7}  {:<24}  WHY",
            "PROBLEM", "PATH", "ID", "VERSION", "SINCE"
        );
    }
    let scanned = audit::scan(&store, &keys, args.page_size, |resource| {
        for mut finding in audit::classify(&resource, &keys, now, args.older_than) {
            finding.dead_letter = letters.explain(&finding);
            found += 1;
            let _ = match args.format {
                AuditFormat::Json => writeln!(
                    out,
                    "{}",
                    serde_json::to_string(&finding).expect("a finding serializes")
                ),
                AuditFormat::Text => writeln!(out, "{}", row(&finding)),
            };
        }
    })
    .await;
    let _ = out.flush();
    drop(out);
    match scanned {
        Ok(stats) => {
            eprintln!(
                "scanned {} resources ({} keys, {} pages) at revision {} in {:.1} s; {} dead letters read; {found} finding(s)",
                stats.resources,
                stats.keys,
                stats.pages,
                stats.revision,
                started.elapsed().as_secs_f64(),
                letters.total,
            );
            Ok(if found == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Err(error) => {
            eprintln!("error: cannot scan: {error} ({found} finding(s) printed before)");
            Ok(ExitCode::from(CANNOT_SCAN))
        }
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
        "{:<10}  {:<12}  {:<38}  {:>7}  {:<24}  {why}",
        finding.problem.as_str(),
        finding.path,
        finding.id,
        finding.version.map_or("-".to_string(), |v| v.to_string()),
        finding.since.as_deref().unwrap_or("-"),
    )
}
