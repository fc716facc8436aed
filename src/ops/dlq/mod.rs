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
//! Parts: `broker.rs` (connection, bounded fetches), `replay.rs`, `letter.rs` ([`describe`],
//! [`replay_properties`]), `escape.rs` (what is printed).

mod broker;
mod escape;
mod letter;
mod replay;

use std::time::Duration;

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};

use crate::amqp::{self, PublishError, Topology};
use crate::stages::StageName;
use broker::{fetch, fetch_one, requeue, Session};

pub use escape::{escape, escape_bytes, preview, value_text, PREVIEW_BYTES};
pub use letter::{describe, replay_properties, DeadLetterInfo};
pub use replay::{Progress, Replayed};

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

/// One stage's dead-letter queue (`<PIPELINE_NAME>.<stage>.dead`) on one broker: what
/// every `dlq` operation acts on, named once.
#[derive(Debug, Clone, Copy)]
pub struct DeadLetterQueue<'a> {
    pub broker: &'a amqp::AmqpConfig,
    pub topology: &'a Topology,
    pub stage: StageName,
}

impl<'a> DeadLetterQueue<'a> {
    pub fn of(
        broker: &'a amqp::AmqpConfig,
        topology: &'a Topology,
        stage: StageName,
    ) -> DeadLetterQueue<'a> {
        DeadLetterQueue {
            broker,
            topology,
            stage,
        }
    }

    /// The queue's name.
    pub fn queue(&self) -> String {
        self.topology.dead_queue(self.stage)
    }

    /// Shows up to `limit` dead letters and leaves them all in the queue.
    pub async fn list(&self, limit: usize) -> Result<Listing, DlqError> {
        let queue = self.queue();
        let (in_queue, letters) = Session::with(self.broker, "dlq list", async |session| {
            peek(session, &queue, limit, |d, n| {
                describe(n, &d.properties, &d.data)
            })
            .await
        })
        .await?;
        Ok(Listing {
            queue,
            in_queue,
            letters,
        })
    }

    /// Up to `limit` dead letters, each with the resource it is about, all left in the
    /// queue (as [`DeadLetterQueue::list`]). A missing queue has none.
    pub async fn letters_by_resource(
        &self,
        limit: usize,
    ) -> Result<Vec<(DeadLetterInfo, Option<(String, String)>)>, DlqError> {
        let queue = self.queue();
        let looked = Session::with(self.broker, "dlq list", async |session| {
            peek(session, &queue, limit, |d, n| {
                (describe(n, &d.properties, &d.data), resource_of(&d.data))
            })
            .await
        })
        .await;
        match looked {
            Ok((_, letters)) => Ok(letters),
            Err(DlqError::NoQueue { .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// How many dead letters there are (ready ones; none are normally unacked).
    pub async fn count(&self) -> Result<u32, DlqError> {
        let queue = self.queue();
        Session::with(self.broker, "dlq count", async |session| {
            session.ready_count(&queue).await
        })
        .await
    }

    /// Deletes the first `counted` dead letters (the ones [`DeadLetterQueue::count`] counted,
    /// which the operator agreed to) and returns how many it removed: fewer if some were
    /// gone by then. Letters that arrived after the count are behind them in the queue, and
    /// stay. (`queue.purge` would take those too.) Irreversible: the CLI asks first.
    ///
    /// All or nothing: the letters are taken without auto-ack and removed by one `multiple`
    /// ack once all are in hand; if a fetch fails, they are all returned. (Another consumer
    /// taking letters in between would make the count point further down the queue;
    /// nothing but `dlq` and `audit`, which return what they take, reads a dead-letter
    /// queue.)
    pub async fn purge(&self, counted: u32) -> Result<u32, DlqError> {
        let queue = self.queue();
        Session::with(self.broker, "dlq purge", async |session| {
            purge_on(session, &queue, counted).await
        })
        .await
    }
}

/// Up to `limit` letters of `queue`, each turned into a `T` by `each` (with its position,
/// from 1), all returned to the queue; and how many the queue held.
async fn peek<T>(
    session: &Session,
    queue: &str,
    limit: usize,
    each: impl Fn(&Delivery, usize) -> T,
) -> Result<(u32, Vec<T>), DlqError> {
    let in_queue = session.ready_count(queue).await?;
    let deliveries = fetch(
        &session.channel,
        queue,
        limit.min(in_queue as usize),
        |_| {},
    )
    .await?;
    let looked = deliveries
        .iter()
        .enumerate()
        .map(|(i, d)| each(d, i + 1))
        .collect();
    requeue(&deliveries).await;
    Ok((in_queue, looked))
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

async fn purge_on(session: &Session, queue: &str, counted: u32) -> Result<u32, DlqError> {
    session.ready_count(queue).await?;
    let mut taken = 0;
    let mut last = None;
    while taken < counted {
        match fetch_one(&session.channel, queue, taken as usize + 1).await {
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
                queue: queue.to_string(),
                taken,
            });
        }
    }
    Ok(taken)
}
