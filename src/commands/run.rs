//! `heat-pipeline run`: the library's [`App`], until SIGTERM or SIGINT.

use std::process::ExitCode;

use heat_pipeline::app::{cancel_on_signal, App, AppConfig, RunSettings};
use heat_pipeline::config::Settings;
use tokio_util::sync::CancellationToken;

pub(crate) async fn run(settings: Settings, run: RunSettings) -> anyhow::Result<ExitCode> {
    let app = App::build(AppConfig::from_settings(&settings, &run)?).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    app.run(shutdown).await?;
    Ok(ExitCode::SUCCESS)
}
