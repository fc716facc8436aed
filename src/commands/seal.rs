//! `heat-pipeline seal`: closes the legacy way from the input exchange to the normalize
//! and wrap queues (`ops::seal`).

use std::process::ExitCode;

use anyhow::Context;
use heat_pipeline::config::Settings;

pub(crate) async fn seal(settings: Settings) -> anyhow::Result<ExitCode> {
    let url = settings.amqp_config()?;
    let topology = settings.topology();
    heat_pipeline::ops::seal::seal(&url, &topology)
        .await
        .with_context(|| format!("RabbitMQ {url}"))?;
    println!(
        "sealed: exchange {} now routes only to {} (hand-offs go through {})",
        topology.input_exchange(),
        topology.queue(heat_pipeline::stages::StageName::Capture),
        topology.handoff_exchange()
    );
    Ok(ExitCode::SUCCESS)
}
