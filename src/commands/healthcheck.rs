//! `heat-pipeline healthcheck`: asks a running process's readiness URL, for container
//! healthchecks (the image has no curl).

use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Args)]
#[command(after_help = "Exit codes:
  0  the process answered 200: ready
  1  it answered otherwise (not ready) or did not answer: the status or error is printed
  2  the command line is wrong")]
pub(crate) struct HealthcheckArgs {
    /// The URL to ask.
    #[arg(long, default_value = "http://127.0.0.1:9464/readyz")]
    url: String,
}

pub(crate) async fn healthcheck(args: HealthcheckArgs) -> anyhow::Result<ExitCode> {
    let url = args.url.clone();
    let answer = tokio::task::spawn_blocking(move || {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .http_status_as_error(false)
            .build()
            .new_agent();
        agent.get(&url).call()
    })
    .await?;
    match answer {
        Ok(response) if response.status() == 200 => Ok(ExitCode::SUCCESS),
        Ok(response) => {
            eprintln!("{}: {}", args.url, response.status());
            Ok(ExitCode::FAILURE)
        }
        Err(error) => {
            eprintln!("{}: {error}", args.url);
            Ok(ExitCode::FAILURE)
        }
    }
}
