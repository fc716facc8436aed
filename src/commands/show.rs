//! `heat-pipeline show`: prints a resource's three records (the reading is in the
//! library's `show`).

use std::process::ExitCode;

use heat_pipeline::config::Settings;
use heat_pipeline::store::Store;

#[derive(Debug, clap::Args)]
pub(crate) struct ShowArgs {
    /// The resource's collection, e.g. `ports`.
    path: String,
    /// The resource's id.
    id: String,
}

pub(crate) async fn show(settings: Settings, args: ShowArgs) -> anyhow::Result<ExitCode> {
    let store = Store::connect(&settings.store_config()?).await?;
    let records =
        heat_pipeline::ops::show::records(&store, &settings.keyspace(), &args.path, &args.id)
            .await?;
    for record in &records {
        println!("{}: {}", record.name, record.key);
        if let Some(line) = lineage_line(record) {
            println!("{line}");
        }
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

/// How a record came to be: revision, stage, time, job version and trace id.
fn lineage_line(record: &heat_pipeline::ops::show::Shown) -> Option<String> {
    let revision = record
        .revision
        .or(record.removed.as_ref().map(|(revision, _)| *revision))?;
    let mut line = format!("(written at revision {revision}");
    match &record.lineage {
        Some(lineage) => {
            if let Some(stage) = &lineage.stage {
                line.push_str(&format!(" by {stage}"));
            }
            if let Some(at) = &lineage.written_at {
                line.push_str(&format!(" at {at}"));
            }
            let phase = match lineage.phase {
                heat_pipeline::lifecycle::Phase::Final => "final",
                heat_pipeline::lifecycle::Phase::InProgress => "in progress",
            };
            line.push_str(&format!(", job version {} ({phase})", lineage.version));
            match &lineage.trace_id {
                Some(trace) => line.push_str(&format!(", trace {trace}")),
                None => line.push_str(", no lineage: written before heat-pipeline kept it"),
            }
        }
        None => line.push_str(", no order or lineage key beside it"),
    }
    line.push(')');
    Some(line)
}
