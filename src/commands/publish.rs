//! `heat-pipeline publish`: reads files (or standard input), validates and publishes them
//! (the work is in the library's `publish`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use heat_pipeline::config::Settings;
use heat_pipeline::ops::publish;
use tokio::io::AsyncReadExt;

use super::progress;

#[derive(Debug, clap::Args)]
#[command(after_help = "Exit codes:
  0  every message was confirmed by the broker
  1  a file could not be read or is not a Heat result (nothing was published then), or the
     broker could not be reached or did not confirm every message (the error says why)
  2  the command line is wrong")]
pub(crate) struct PublishArgs {
    /// Files to publish; `-` reads standard input.
    #[arg(required = true)]
    files: Vec<PathBuf>,

    /// Publish documents even if they are not valid Heat results (to test dead-lettering).
    #[arg(long)]
    no_validate: bool,
}

pub(crate) async fn publish(settings: Settings, args: PublishArgs) -> anyhow::Result<ExitCode> {
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
    let bar = progress::bar("publishing", documents.len() as u64);
    let confirmed = publish::publish(&amqp, &settings.topology(), &documents, |confirmed| {
        bar.set_position(confirmed as u64)
    })
    .await
    .with_context(|| format!("publishing to {amqp}"));
    bar.finish_and_clear();
    let confirmed = confirmed?;
    println!(
        "{confirmed} of {} message(s) confirmed by the broker (exchange {})",
        documents.len(),
        settings.topology().input_exchange()
    );
    if confirmed != documents.len() {
        bail!("not every message was confirmed");
    }
    Ok(ExitCode::SUCCESS)
}
