//! `heat-pipeline dlq`: look at, replay and purge a stage's dead letters
//! (`<PIPELINE_NAME>.<stage>.dead`).
//!
//! Dead letters come from two places, and [`describe`] reads both:
//! - the runner, which rejects a message it can never process and says why in `x-error-*`
//!   headers (see `runner/delivery.rs`);
//! - the broker, which dead-letters a message that reached the stage queue's
//!   `x-delivery-limit` (it kept killing or timing out its consumer); it only adds `x-death`
//!   and `x-first-death-*` headers.
//!
//! A dead letter is untrusted input: whatever upstream published can end up here. So what
//! is shown of it is escaped (`escape.rs`), a letter of any shape is shown rather than
//! refused, and a replay routes by the stage alone ([`Topology::route`]), never by the
//! letter's headers.
//!
//! Nothing here loses a dead letter: messages are fetched with `basic.get` without auto-ack,
//! and a message is acked only after its replay was confirmed by the broker (or, for a
//! purge, once every letter counted is in hand). Whatever is not acked goes back to the
//! dead-letter queue, explicitly with `basic.nack` or, if this process dies first, when the
//! broker sees the connection close. Each fetch is bounded ([`FETCH_TIMEOUT`]).
//!
//! Parts: `broker.rs` (connection, bounded fetches), `letter.rs` ([`describe`],
//! [`replay_properties`]), `escape.rs` (what is printed).

mod broker;
mod escape;
mod letter;

use std::time::Duration;

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};

use crate::amqp::{self, PublishError, Topology};
use crate::stages::StageName;
use broker::{fetch, fetch_one, requeue, Session};

pub use escape::{escape, escape_bytes, preview, value_text, PREVIEW_BYTES};
pub use letter::{describe, replay_properties, DeadLetterInfo};

/// How long one `basic.get` may take. It is one round trip to the queue's leader:
/// milliseconds normally, a few seconds during a leader election. Past this the broker or
/// the queue is not answering, and without a bound the command would hang for good.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// What went wrong talking to the broker.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error("queue {queue} does not exist (is PIPELINE_NAME right?)")]
    NoQueue { queue: String },
    #[error("broker error: {0}")]
    Broker(#[from] lapin::Error),
    /// Every command fetches all its letters before it changes anything, so a failed
    /// fetch changes nothing.
    #[error(
        "the broker did not hand over dead letter {position} of {queue} within {timeout:?}; \
         nothing was changed: check the broker (heat-pipeline status) and run the command again"
    )]
    FetchTimedOut {
        queue: String,
        position: usize,
        timeout: Duration,
    },
    #[error(
        "dead letter {position} of {queue} could not be fetched ({source}); nothing was \
         changed: check the broker and run the command again"
    )]
    Fetch {
        queue: String,
        position: usize,
        source: lapin::Error,
    },
    /// Replay stops at the first message the broker did not take; that one and the rest
    /// stay dead letters, the earlier ones were replayed.
    #[error(
        "dead letter {position} could not be replayed ({source}); {replayed} were replayed, \
         it and the rest stay in the dead-letter queue"
    )]
    Replay {
        position: usize,
        replayed: usize,
        source: PublishError,
    },
    /// The replay was confirmed but the dead letter could not be removed: it stays, and a
    /// later replay would send it a second time (harmless, the stages are idempotent).
    #[error(
        "dead letter {position} was replayed but stays in the dead-letter queue (the ack \
         failed); {replayed} were replayed, the rest stay in the dead-letter queue"
    )]
    Ack { position: usize, replayed: usize },
    /// The letters of a purge are removed by one ack; if it cannot be sent, none is.
    #[error(
        "the {taken} dead letter(s) taken from {queue} could not be removed (the ack \
         failed); they stay: check the broker and purge again"
    )]
    PurgeAck { queue: String, taken: u32 },
}

/// The dead letters found, and how many the queue held when they were read.
#[derive(Debug, serde::Serialize)]
pub struct Listing {
    pub queue: String,
    pub in_queue: u32,
    pub letters: Vec<DeadLetterInfo>,
}

/// How far a replay is, told to [`replay_with_progress`]'s caller (for a progress bar): once
/// per dead letter fetched, then once per dead letter replayed (in a dry run, described).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// `done` of the `of` letters to take are in hand (`of`: the queue's count at the start,
    /// at most the limit; fewer arrive if others took some meanwhile).
    Fetched { done: usize, of: usize },
    /// `done` of the `of` letters fetched were replayed, each confirmed by the broker.
    Replayed { done: usize, of: usize },
}

/// One dead letter sent back to its stage (or that would be, in a dry run).
#[derive(Debug)]
pub struct Replayed {
    pub info: DeadLetterInfo,
    pub exchange: String,
    pub routing_key: String,
}

/// Shows up to `limit` dead letters of `stage` and leaves them all in the queue.
pub async fn list(
    url: &amqp::AmqpConfig,
    topology: &Topology,
    stage: StageName,
    limit: usize,
) -> Result<Listing, DlqError> {
    let queue = topology.dead_queue(stage);
    let session = Session::open(url, "dlq list").await?;
    let listed = async {
        let in_queue = session.ready_count(&queue).await?;
        let to_take = limit.min(in_queue as usize);
        let deliveries = fetch(&session.channel, &queue, to_take, |_| {}).await?;
        let letters = deliveries
            .iter()
            .enumerate()
            .map(|(i, d)| describe(i + 1, &d.properties, &d.data))
            .collect();
        requeue(&deliveries).await;
        Ok(Listing {
            queue: queue.clone(),
            in_queue,
            letters,
        })
    }
    .await;
    session.close("done").await;
    listed
}

/// Sends up to `limit` dead letters of `stage` back to the stage's queue, each confirmed
/// by the broker before its dead letter is acked (a crash in between replays it twice,
/// which the stages' version guards make harmless, rather than losing it).
///
/// Only the messages in the queue at the start are taken, and all are fetched before the
/// first is replayed, so a replay that fails again is not picked up a second time.
/// `dry_run` fetches and describes them, and returns them all to the queue.
pub async fn replay(
    url: &amqp::AmqpConfig,
    topology: &Topology,
    stage: StageName,
    limit: usize,
    dry_run: bool,
) -> Result<Vec<Replayed>, DlqError> {
    replay_with_progress(url, topology, stage, limit, dry_run, |_| {}).await
}

/// [`replay`], telling `on_progress` of each letter fetched and each replayed: thousands
/// of letters take a round trip each to fetch and a confirm each to replay.
pub async fn replay_with_progress(
    url: &amqp::AmqpConfig,
    topology: &Topology,
    stage: StageName,
    limit: usize,
    dry_run: bool,
    on_progress: impl FnMut(Progress),
) -> Result<Vec<Replayed>, DlqError> {
    let session = Session::open(url, "dlq replay").await?;
    let replayed = replay_on(
        &session,
        topology,
        stage,
        limit,
        dry_run,
        |_| true,
        on_progress,
    )
    .await;
    session.close("done").await;
    replayed
}

/// [`replay`] of the dead letters whose body `wanted` accepts (`reconcile`: one
/// resource's); the others are looked at and returned to the queue untouched, in order.
///
/// Every letter goes to [`Topology::route`]`(stage)`, with [`replay_properties`]: nothing
/// the letter carries (`x-original-routing-key`, `CC`, `BCC`, `user_id`, `expiration`)
/// chooses or bars its way, so one hostile letter cannot strand the valid ones behind it
/// nor reach another stage.
pub async fn replay_where(
    url: &amqp::AmqpConfig,
    topology: &Topology,
    stage: StageName,
    limit: usize,
    dry_run: bool,
    wanted: impl Fn(&[u8]) -> bool,
) -> Result<Vec<Replayed>, DlqError> {
    let session = Session::open(url, "dlq replay").await?;
    let replayed = replay_on(&session, topology, stage, limit, dry_run, wanted, |_| {}).await;
    session.close("done").await;
    replayed
}

async fn replay_on(
    session: &Session,
    topology: &Topology,
    stage: StageName,
    limit: usize,
    dry_run: bool,
    wanted: impl Fn(&[u8]) -> bool,
    mut on_progress: impl FnMut(Progress),
) -> Result<Vec<Replayed>, DlqError> {
    let queue = topology.dead_queue(stage);
    let channel = &session.channel;
    let in_queue = session.ready_count(&queue).await?;
    // Like every process that publishes, make sure the stage queues exist and are bound.
    topology.declare(channel).await?;
    let of = limit.min(in_queue as usize);
    let deliveries = fetch(channel, &queue, of, |done| {
        on_progress(Progress::Fetched { done, of })
    })
    .await?;
    let (chosen, others): (Vec<_>, Vec<_>) = deliveries
        .into_iter()
        .enumerate()
        .partition(|(_, d)| wanted(&d.data));
    let others: Vec<Delivery> = others.into_iter().map(|(_, d)| d).collect();
    let (exchange, routing_key) = topology.route(stage);
    let mut replayed = Vec::new();
    for (n, (i, delivery)) in chosen.iter().enumerate() {
        let target = Replayed {
            info: describe(i + 1, &delivery.properties, &delivery.data),
            exchange: exchange.clone(),
            routing_key: routing_key.to_string(),
        };
        if !dry_run {
            let sent = amqp::publish_confirmed(
                channel,
                &exchange,
                routing_key,
                &delivery.data,
                replay_properties(&delivery.properties),
            )
            .await;
            if let Err(source) = sent {
                requeue(chosen[n..].iter().map(|(_, d)| d)).await;
                requeue(&others).await;
                return Err(DlqError::Replay {
                    position: i + 1,
                    replayed: replayed.len(),
                    source,
                });
            }
            if !matches!(
                delivery.acker.ack(BasicAckOptions::default()).await,
                Ok(true)
            ) {
                requeue(chosen[n + 1..].iter().map(|(_, d)| d)).await;
                requeue(&others).await;
                return Err(DlqError::Ack {
                    position: i + 1,
                    replayed: replayed.len() + 1,
                });
            }
        }
        replayed.push(target);
        on_progress(Progress::Replayed {
            done: replayed.len(),
            of: chosen.len(),
        });
    }
    if dry_run {
        requeue(chosen.iter().map(|(_, d)| d)).await;
    }
    requeue(&others).await;
    Ok(replayed)
}

/// The resource a dead letter is about, read from its body's `job` (every stage's input
/// carries one): `(path, id)`, `None` for a body that names none (malformed input).
pub fn resource_of(body: &[u8]) -> Option<(String, String)> {
    #[derive(serde::Deserialize)]
    struct Body {
        job: JobRef,
    }
    #[derive(serde::Deserialize)]
    struct JobRef {
        resource_type: String,
        #[serde(default)]
        resource_path: Option<String>,
        resource_id: String,
    }
    let job = serde_json::from_slice::<Body>(body).ok()?.job;
    let path = job
        .resource_path
        .unwrap_or_else(|| format!("{}s", job.resource_type));
    Some((path, job.resource_id))
}

/// Up to `limit` dead letters of `stage`, each with the resource it is about, all left in
/// the queue (as [`list`]). A missing queue has none.
pub async fn letters_by_resource(
    url: &amqp::AmqpConfig,
    topology: &Topology,
    stage: StageName,
    limit: usize,
) -> Result<Vec<(DeadLetterInfo, Option<(String, String)>)>, DlqError> {
    let queue = topology.dead_queue(stage);
    let session = Session::open(url, "dlq list").await?;
    let letters = async {
        let in_queue = match session.ready_count(&queue).await {
            Ok(n) => n,
            Err(DlqError::NoQueue { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let to_take = limit.min(in_queue as usize);
        let deliveries = fetch(&session.channel, &queue, to_take, |_| {}).await?;
        let letters = deliveries
            .iter()
            .enumerate()
            .map(|(i, d)| {
                (
                    describe(i + 1, &d.properties, &d.data),
                    resource_of(&d.data),
                )
            })
            .collect();
        requeue(&deliveries).await;
        Ok(letters)
    }
    .await;
    session.close("done").await;
    letters
}

/// How many dead letters `stage` has (ready ones; none are normally unacked).
pub async fn count(
    url: &amqp::AmqpConfig,
    topology: &Topology,
    stage: StageName,
) -> Result<u32, DlqError> {
    let session = Session::open(url, "dlq count").await?;
    let counted = session.ready_count(&topology.dead_queue(stage)).await;
    session.close("done").await;
    counted
}

/// Deletes the first `counted` dead letters of `stage` (the ones [`count`] counted, which
/// the operator agreed to) and returns how many it removed: fewer if some were gone by
/// then. Letters that arrived after the count are behind them in the queue, and stay.
/// (`queue.purge` would take those too.) Irreversible: the CLI asks first.
///
/// All or nothing: the letters are taken without auto-ack and removed by one `multiple`
/// ack once all are in hand; if a fetch fails, they are all returned. (Another consumer
/// taking letters in between would make the count point further down the queue; nothing
/// but `dlq` and `audit`, which return what they take, reads a dead-letter queue.)
pub async fn purge(
    url: &amqp::AmqpConfig,
    topology: &Topology,
    stage: StageName,
    counted: u32,
) -> Result<u32, DlqError> {
    let queue = topology.dead_queue(stage);
    let session = Session::open(url, "dlq purge").await?;
    let purged = async {
        session.ready_count(&queue).await?;
        let mut taken = 0;
        let mut last = None;
        while taken < counted {
            match fetch_one(&session.channel, &queue, taken as usize + 1).await {
                // Only the ack handle is kept: a purge need not hold the bodies.
                Ok(Some(delivery)) => last = Some(delivery.acker),
                Ok(None) => break,
                Err(error) => {
                    if let Some(last) = &last {
                        let options = BasicNackOptions {
                            requeue: true,
                            multiple: true,
                        };
                        let _ = last.nack(options).await;
                    }
                    return Err(error);
                }
            }
            taken += 1;
        }
        if let Some(last) = last {
            let options = BasicAckOptions { multiple: true };
            if !matches!(last.ack(options).await, Ok(true)) {
                return Err(DlqError::PurgeAck {
                    queue: queue.clone(),
                    taken,
                });
            }
        }
        Ok(taken)
    }
    .await;
    session.close("done").await;
    purged
}
