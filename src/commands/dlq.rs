//! `heat-pipeline dlq list|replay|purge`: arguments, printing, the purge prompt and a
//! replay's progress (the work is in the library's `dlq`). Errors reach `main`, which
//! prints them on one line (`report.rs`).

use std::cell::OnceCell;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use heat_pipeline::config::Settings;
use heat_pipeline::ops::dlq::{DeadLetterQueue, Progress};

use super::format::Format;
use super::progress;

#[derive(Debug, clap::Args)]
#[command(after_help = "Exit codes:
  0  done
  1  the broker or the dead-letter queue failed the command (the error says why), or a
     purge was declined at its prompt
  2  the command line is wrong
Each subcommand's --help says which failures are which.")]
pub(crate) struct DlqArgs {
    #[command(subcommand)]
    command: DlqCommand,
}

const LIST_EXIT_CODES: &str = "Exit codes:
  0  the letters were listed (none, if the queue is empty) and all left in the queue
  1  the dead-letter queue does not exist (is PIPELINE_NAME right? has the stage run yet?),
     the broker could not be reached or refused, or it did not hand over a letter in time;
     nothing was changed (the error says why)
  2  the command line is wrong";

const REPLAY_EXIT_CODES: &str = "Exit codes:
  0  every letter taken was replayed and confirmed by the broker (with --dry-run: described,
     and all left in the queue)
  1  the dead-letter queue does not exist (is PIPELINE_NAME right? has the stage run yet?),
     the broker could not be reached or refused (the stage queues' declaration, say), or it
     did not hand over a letter in time: no letter was replayed; or a letter could not be
     replayed, or removed once replayed: the ones before it were replayed, it and the rest
     stay in the dead-letter queue (the error says how many)
  2  the command line is wrong";

const PURGE_EXIT_CODES: &str = "Exit codes:
  0  the letters counted were purged (or there were none)
  1  the purge was declined at the prompt (anything but y or yes, or no answer: end of
     input, no terminal), nothing purged; the dead-letter queue does not exist (is
     PIPELINE_NAME right? has the stage run yet?); or the broker could not be reached,
     refused, or did not hand over or remove the letters: none was removed (the error says
     why)
  2  the command line is wrong";

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// Show a stage's dead letters and why they failed, leaving them in the queue.
    /// Everything taken from a letter is shown escaped (`\n`, `\xNN`, `\u{NNNN}`).
    #[command(after_help = LIST_EXIT_CODES)]
    List {
        /// capture, normalize or wrap.
        stage: heat_pipeline::stages::StageName,
        /// Show at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// `text`: a block per letter for people; `json`: one JSON object for scripts.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Send a stage's dead letters back to the stage, with their failure headers removed.
    #[command(after_help = REPLAY_EXIT_CODES)]
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
    #[command(after_help = PURGE_EXIT_CODES)]
    Purge {
        /// capture, normalize or wrap.
        stage: heat_pipeline::stages::StageName,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
}

pub(crate) async fn dlq(settings: Settings, args: DlqArgs) -> anyhow::Result<ExitCode> {
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
            let listing = DeadLetterQueue::of(url, &topology, stage)
                .list(limit)
                .await
                .with_context(broker)?;
            // The letters' texts are escaped by the library: one line each, nothing a
            // terminal acts on.
            if format == Format::Json {
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
            // On a terminal, a bar through both halves: fetching every letter, then
            // replaying each. Made at the first letter, when the count is known.
            let bar = OnceCell::new();
            let replayed = DeadLetterQueue::of(url, &topology, stage)
                .replay_with_progress(limit, dry_run, |step| match step {
                    Progress::Fetched { done, of } => bar
                        .get_or_init(|| progress::bar("fetching", of as u64))
                        .set_position(done as u64),
                    Progress::Replayed { done, of } => {
                        let bar = bar.get_or_init(|| progress::bar("fetching", of as u64));
                        if done == 1 {
                            bar.set_length(of as u64);
                            bar.reset_eta();
                            bar.set_prefix(if dry_run { "describing" } else { "replaying" });
                        }
                        bar.set_position(done as u64);
                    }
                })
                .await
                .with_context(broker);
            if let Some(bar) = bar.get() {
                bar.finish_and_clear();
            }
            let replayed = replayed?;
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
            let dead = DeadLetterQueue::of(url, &topology, stage);
            let n = dead.count().await.with_context(broker)?;
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
            let purged = dead.purge(n).await.with_context(broker)?;
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
