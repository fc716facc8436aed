//! `heat-pipeline show PATH/ID`: prints a resource's three records (the reading is in the
//! library's `show`), as text or one JSON object.

use std::process::ExitCode;

use heat_pipeline::config::Settings;
use heat_pipeline::lifecycle::Phase;
use heat_pipeline::ops::audit::prefix_warning;
use heat_pipeline::ops::show::Shown;
use heat_pipeline::store::Store;
use serde_json::json;

use super::format::Format;
use super::resource::{self, ResourceRef};

/// Exit code when etcd holds none of the three records.
const NOTHING: u8 = 3;

#[derive(Debug, clap::Args)]
#[command(after_help = "Exit codes:
  0  at least one record was found (job_state is gone once a job finished)
  1  etcd could not be read (the error says why)
  2  the command line is wrong (PATH/ID without its \"/\", say)
  3  none of the three records exists: no such resource, or the wrong ETCD_KEY_PREFIX")]
pub(crate) struct ShowArgs {
    /// The resource, as `PATH/ID`: its collection and its id, e.g.
    /// `ports/23464cbc-d910-430a-93f7-3776ea07f992`.
    #[arg(value_name = "PATH/ID", value_parser = resource::parse)]
    resource: ResourceRef,
    /// Anything after PATH/ID. Taken only to be refused: with it, the old form `show PATH
    /// ID` is refused for its PATH without a "/", which says how to name a resource, rather
    /// than for an "unexpected argument".
    #[arg(hide = true)]
    rest: Vec<String>,
    /// `text`: the records as stored, with how each was written; `json`: one object with
    /// each record's key, revision, lineage and text (`null` when absent).
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub(crate) async fn show(settings: Settings, args: ShowArgs) -> anyhow::Result<ExitCode> {
    if let Some(extra) = args.rest.first() {
        let message = format!(
            "unexpected argument {extra:?}: show takes one resource, as PATH/ID (e.g. \
             ports/23464cbc-d910-430a-93f7-3776ea07f992)\n"
        );
        clap::Error::raw(clap::error::ErrorKind::UnknownArgument, message).exit();
    }
    if let Some(warning) = prefix_warning(&settings.naming.etcd_key_prefix) {
        eprintln!("warning: {warning}");
    }
    let store = Store::connect_checked(&settings.store_config()?).await?;
    let ResourceRef { path, id } = &args.resource;
    let records = heat_pipeline::ops::show::records(&store, &settings.keyspace(), path, id).await?;
    match args.format {
        Format::Text => print_text(&records),
        Format::Json => println!("{}", to_json(&args.resource, &records)),
    }
    // job_state is absent once a job has finished, so only "nothing at all" is a failure.
    let nothing = records.iter().all(|r| r.value.is_none());
    if nothing {
        eprintln!("{}: no record in etcd", args.resource);
    }
    Ok(if nothing {
        ExitCode::from(NOTHING)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_text(records: &[Shown]) {
    for record in records {
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
}

/// `{"resource", "records": [{"name", "key", "revision", "value", "lineage", "removed"}]}`;
/// a record's `value` is its stored text, a string (the bytes as they are, which a
/// reader's JSON parser would not keep), `null` when absent.
fn to_json(resource: &ResourceRef, records: &[Shown]) -> serde_json::Value {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let records: Vec<serde_json::Value> = records
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "key": r.key,
                "revision": r.revision,
                "value": r.value.as_deref().map(text),
                "lineage": r.lineage,
                "removed": r.removed.as_ref().map(|(revision, value)| json!({
                    "revision": revision,
                    "value": text(value),
                })),
            })
        })
        .collect();
    json!({"resource": resource.to_string(), "records": records})
}

/// How a record came to be: revision, stage, time, job version and trace id.
fn lineage_line(record: &Shown) -> Option<String> {
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
                Phase::Final => "final",
                Phase::InProgress => "in progress",
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
