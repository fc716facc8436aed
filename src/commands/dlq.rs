//! `heat-pipeline dlq list|replay|purge`: arguments, printing and the purge prompt (the work
//! is in the library's `dlq`).

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use heat_pipeline::config::Settings;

#[derive(Debug, clap::Args)]
pub(crate) struct DlqArgs {
    #[command(subcommand)]
    command: DlqCommand,
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// Show a stage's dead letters and why they failed, leaving them in the queue.
    /// Everything taken from a letter is shown escaped (`\n`, `\xNN`, `\u{NNNN}`).
    List {
        /// capture, normalize or wrap.
        stage: heat_pipeline::stages::StageName,
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// `text`: a block per letter for people; `json`: one JSON object for scripts.
        #[arg(long, value_enum, default_value_t = ListFormat::Text)]
        format: ListFormat,
    },
    /// Send a stage's dead letters back to the stage, with their failure headers removed.
    Replay {
        /// capture, normalize or wrap.
        stage: heat_pipeline::stages::StageName,
        /// Only print what would be replayed; leave every dead letter in the queue.
        #[arg(long)]
        dry_run: bool,
        /// Replay at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Delete a stage's dead letters: the ones counted when it starts (asks first unless
    /// --yes); letters arriving meanwhile stay.
    Purge {
        /// capture, normalize or wrap.
        stage: heat_pipeline::stages::StageName,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ListFormat {
    Text,
    Json,
}

pub(crate) async fn dlq(settings: Settings, args: DlqArgs) -> anyhow::Result<ExitCode> {
    use heat_pipeline::ops::dlq;
    use std::io::{BufRead, Write};

    let url = &settings.amqp_config()?;
    let topology = settings.topology();
    let broker = || format!("RabbitMQ {url}");
    match args.command {
        DlqCommand::List {
            stage,
            limit,
            format,
        } => {
            let listing = dlq::list(url, &topology, stage, limit)
                .await
                .with_context(broker)?;
            // The letters' texts are escaped by the library: one line each, nothing a
            // terminal acts on.
            if let ListFormat::Json = format {
                let json = serde_json::to_string(&listing).expect("a listing serializes");
                println!("{json}");
                return Ok(ExitCode::SUCCESS);
            }
            for letter in &listing.letters {
                println!("{letter}\n");
            }
            println!(
                "{} of {} dead letter(s) in {} listed; all left in the queue",
                listing.letters.len(),
                listing.in_queue,
                listing.queue
            );
        }
        DlqCommand::Replay {
            stage,
            dry_run,
            limit,
        } => {
            let replayed = dlq::replay(url, &topology, stage, limit, dry_run)
                .await
                .with_context(broker)?;
            for target in &replayed {
                println!(
                    "{}\n  -> exchange {}, routing key {}\n",
                    target.info, target.exchange, target.routing_key
                );
            }
            let queue = topology.dead_queue(stage);
            if dry_run {
                let n = replayed.len();
                println!("dry run: {n} dead letter(s) would be replayed; all left in {queue}");
            } else {
                println!("{} dead letter(s) replayed from {queue}", replayed.len());
            }
        }
        DlqCommand::Purge { stage, yes } => {
            let queue = topology.dead_queue(stage);
            // The purge removes exactly the letters counted here, the ones the operator
            // agrees to, not those that arrive while the prompt waits.
            let n = dlq::count(url, &topology, stage)
                .await
                .with_context(broker)?;
            if !yes {
                println!("{n} dead letter(s) in {queue} would be purged");
                if n == 0 {
                    return Ok(ExitCode::SUCCESS);
                }
                eprint!("Purge {n} dead letters from {queue}? [y/N] ");
                std::io::stderr().flush()?;
                let mut answer = String::new();
                // No terminal or end of input reads as "no".
                let _ = std::io::stdin().lock().read_line(&mut answer);
                if !matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
                    eprintln!("aborted; nothing purged");
                    return Ok(ExitCode::FAILURE);
                }
            }
            let purged = dlq::purge(url, &topology, stage, n)
                .await
                .with_context(broker)?;
            if purged == n {
                println!("{purged} dead letter(s) purged from {queue}");
            } else {
                println!(
                    "{purged} of the {n} dead letter(s) counted purged from {queue}; \
                     the others were gone already"
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
