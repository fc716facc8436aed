//! `heat-pipeline status`: prints each stage's queue counts (read by the library's
//! `status`).

use std::process::ExitCode;

use anyhow::Context;
use clap::ValueEnum;
use heat_pipeline::config::Settings;

#[derive(Debug, clap::Args)]
pub(crate) struct StatusArgs {
    /// `text`: a table for people; `json`: one JSON object for scripts.
    #[arg(long, value_enum, default_value_t = StatusFormat::Text)]
    format: StatusFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum StatusFormat {
    Text,
    Json,
}

pub(crate) async fn status(settings: Settings, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let url = settings.amqp_config()?;
    let status = heat_pipeline::ops::status::status(&url, &settings.topology())
        .await
        .with_context(|| format!("RabbitMQ {url}"))?;
    match args.format {
        StatusFormat::Text => print!("{status}"),
        StatusFormat::Json => println!("{}", status.to_json()),
    }
    let missing = status.missing();
    if missing.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "missing queue(s): {} (is PIPELINE_NAME right? has a stage process run yet?)",
        missing.join(", ")
    );
    Ok(ExitCode::FAILURE)
}
