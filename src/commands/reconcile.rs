//! `heat-pipeline reconcile PATH/ID... | --all-stuck`: re-drives resources through the
//! stages (the library's `reconcile`) and prints what it did, one line (or one JSON object)
//! per resource; exit 1 when one could not be re-driven.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use heat_pipeline::config::Settings;
use heat_pipeline::ops::audit::prefix_warning;
use heat_pipeline::ops::reconcile::{self, Reconciled, Remedy};
use heat_pipeline::store::Store;
use serde_json::json;

use super::format::Format;
use super::progress;
use super::resource::{self, ResourceRef};

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["resources", "all_stuck"])))]
#[command(after_help = "Exit codes:
  0  every resource was re-driven, or had nothing half done
  1  a resource cannot be re-driven (its line says why), or etcd or the broker failed (the
     error says why)
  2  the command line is wrong (a resource without its \"/\", say)")]
pub(crate) struct ReconcileArgs {
    /// Resources as `PATH/ID`, e.g. `ports/23464cbc-d910-430a-93f7-3776ea07f992`.
    #[arg(value_name = "PATH/ID", value_parser = resource::parse)]
    resources: Vec<ResourceRef>,
    /// Every resource `audit` finds stuck or behind (older than `--older-than`).
    #[arg(long)]
    all_stuck: bool,
    /// With `--all-stuck`: how old a job must be to count as stuck.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    older_than: Duration,
    /// Say what would be done; publish and replay nothing.
    #[arg(long)]
    dry_run: bool,
    /// `text`: one line per resource; `json`: one JSON object per resource, per line.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub(crate) async fn reconcile(settings: Settings, args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    if let Some(warning) = prefix_warning(&settings.naming.etcd_key_prefix) {
        eprintln!("warning: {warning}");
    }
    let url = settings.amqp_config()?;
    let topology = settings.topology();
    let keys = settings.keyspace();
    let store = Store::connect_checked(&settings.store_config()?).await?;
    let mut targets: Vec<(String, String)> = (args.resources.iter())
        .map(|r| (r.path.clone(), r.id.clone()))
        .collect();
    if args.all_stuck {
        let bar = progress::counter("finding stuck jobs among", "resources");
        let now = SystemTime::now();
        let stuck = reconcile::stuck(&store, &keys, now, args.older_than, || bar.inc(1)).await?;
        bar.finish_and_clear();
        targets.extend(stuck);
    }
    let bar = progress::bar("re-driving", targets.len() as u64);
    let mut failed = 0;
    let print = |done: Reconciled| {
        bar.suspend(|| match args.format {
            Format::Text => println!(
                "{}/{}: {}: {}",
                done.path,
                done.id,
                verb(&done, args.dry_run),
                done.detail
            ),
            Format::Json => println!("{}", to_json(&done, args.dry_run)),
        });
        bar.inc(1);
        failed += usize::from(done.failed());
    };
    reconcile::reconcile(
        &store,
        &url,
        &topology,
        &keys,
        &targets,
        args.dry_run,
        print,
    )
    .await?;
    bar.finish_and_clear();
    if targets.is_empty() && args.format == Format::Text {
        println!("nothing to reconcile");
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What was done, in words.
fn verb(done: &Reconciled, dry_run: bool) -> String {
    match (&done.action, dry_run) {
        (Remedy::Replayed { letters }, false) => {
            format!("replayed {} dead letter(s)", letters.len())
        }
        (Remedy::Replayed { letters }, true) => {
            format!("would replay {} dead letter(s)", letters.len())
        }
        (Remedy::Published { stage, version }, false) => {
            format!("re-drove version {version} to {stage}")
        }
        (Remedy::Published { stage, version }, true) => {
            format!("would re-drive version {version} to {stage}")
        }
        (Remedy::Nothing, _) => "nothing to do".to_string(),
        (Remedy::Cannot(_), _) => "cannot re-drive".to_string(),
    }
}

/// `{"resource", "action": "replayed"|"published"|"nothing"|"cannot", "dry_run", "stage",
/// "version", "letters": [{"stage", "why"}], "detail"}`.
fn to_json(done: &Reconciled, dry_run: bool) -> serde_json::Value {
    let (action, stage, version, letters) = match &done.action {
        Remedy::Replayed { letters } => {
            let letters: Vec<_> = letters
                .iter()
                .map(|(stage, why)| json!({"stage": stage.as_str(), "why": why}))
                .collect();
            ("replayed", None, None, letters)
        }
        Remedy::Published { stage, version } => (
            "published",
            Some(stage.as_str()),
            Some(*version),
            Vec::new(),
        ),
        Remedy::Nothing => ("nothing", None, None, Vec::new()),
        Remedy::Cannot(_) => ("cannot", None, None, Vec::new()),
    };
    json!({
        "resource": format!("{}/{}", done.path, done.id),
        "action": action,
        "dry_run": dry_run,
        "stage": stage,
        "version": version,
        "letters": letters,
        "detail": done.detail,
    })
}
