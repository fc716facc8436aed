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
