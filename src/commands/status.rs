//! `heat-pipeline status`: prints each stage's queue counts (read by the library's
//! `status`).

use std::process::ExitCode;

use anyhow::Context;
use heat_pipeline::config::Settings;

use super::format::Format;

#[derive(Debug, clap::Args)]
#[command(after_help = "Exit codes:
  0  every queue of the pipeline exists
  1  a queue is missing (is PIPELINE_NAME right? has a stage process run yet?), or the
     broker could not be asked (the error says why)
  2  the command line is wrong")]
pub(crate) struct StatusArgs {
    /// `text`: a table for people; `json`: one JSON object for scripts.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
}

pub(crate) async fn status(settings: Settings, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let broker = settings.amqp_config()?;
    let status = heat_pipeline::ops::status::status(&broker, &settings.topology())
        .await
        .with_context(|| format!("RabbitMQ {broker}"))?;
    match args.format {
        Format::Text => print!("{status}"),
        Format::Json => println!("{}", status.to_json()),
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
