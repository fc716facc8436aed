//! `heat-pipeline reconcile PATH/ID... | --all-stuck`: re-drives resources through the
//! stages (the library's `reconcile`) and prints what it did; exit 1 when one could not be
//! re-driven.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use heat_pipeline::config::Settings;
use heat_pipeline::ops::audit::{self, Problem};
use heat_pipeline::ops::reconcile::{self, Remedy};
use heat_pipeline::store::Store;

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["resources", "all_stuck"])))]
pub(crate) struct ReconcileArgs {
    /// Resources as `PATH/ID`, e.g. `ports/23464cbc-d910-430a-93f7-3776ea07f992`.
    resources: Vec<String>,
    /// Every resource `audit` finds stuck or behind (older than `--older-than`).
    #[arg(long)]
    all_stuck: bool,
    /// With `--all-stuck`: how old a job must be to count as stuck.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    older_than: Duration,
    /// Say what would be done; publish and replay nothing.
    #[arg(long)]
    dry_run: bool,
}

pub(crate) async fn reconcile(settings: Settings, args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    let url = settings.amqp_config()?;
    let topology = settings.topology();
    let keys = settings.keyspace();
    let store = Store::connect(&settings.store_config()?).await?;
    let mut targets = Vec::new();
    for resource in &args.resources {
        let Some((path, id)) = resource.split_once('/') else {
            anyhow::bail!("{resource:?} is not PATH/ID (e.g. ports/<id>)");
        };
        targets.push((path.to_string(), id.to_string()));
    }
    if args.all_stuck {
        let now = SystemTime::now();
        audit::scan(&store, &keys, audit::DEFAULT_PAGE_SIZE, |resource| {
            let half_done = audit::classify(&resource, &keys, now, args.older_than)
                .iter()
                .any(|f| matches!(f.problem, Problem::Stuck | Problem::Behind));
            if half_done {
                targets.push((resource.path, resource.id));
            }
        })
        .await
        .context("scanning etcd")?;
    }
    let mut failed = 0;
    for (path, id) in &targets {
        let done = reconcile::reconcile(&store, &url, &topology, &keys, path, id, args.dry_run)
            .await
            .with_context(|| format!("{path}/{id}"))?;
        let verb = match (&done.action, args.dry_run) {
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
            (Remedy::Cannot, _) => "cannot re-drive".to_string(),
        };
        println!("{path}/{id}: {verb}: {}", done.detail);
        failed += usize::from(done.failed());
    }
    if targets.is_empty() {
        println!("nothing to reconcile");
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
