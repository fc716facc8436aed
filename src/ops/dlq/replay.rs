//! `dlq replay`: dead letters sent back to their stage, each confirmed before it is acked.

use lapin::message::Delivery;
use lapin::options::BasicAckOptions;

use super::broker::{fetch, requeue, Session};
use super::{describe, replay_properties, DeadLetterInfo, DeadLetterQueue, DlqError};
use crate::amqp;

/// How far a replay is, told to [`DeadLetterQueue::replay_with_progress`]'s caller (for a progress bar): once
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

impl DeadLetterQueue<'_> {
    /// Sends up to `limit` dead letters back to the stage's queue, each confirmed by the
    /// broker before its dead letter is acked (a crash in between replays it twice, which
    /// the stages' version guards make harmless, rather than losing it).
    ///
    /// Only the messages in the queue at the start are taken, and all are fetched before
    /// the first is replayed, so a replay that fails again is not picked up a second time.
    /// `dry_run` fetches and describes them, and returns them all to the queue.
    pub async fn replay(&self, limit: usize, dry_run: bool) -> Result<Vec<Replayed>, DlqError> {
        self.replay_with_progress(limit, dry_run, |_| {}).await
    }

    /// [`DeadLetterQueue::replay`], telling `on_progress` of each letter fetched and each
    /// replayed: thousands of letters take a round trip each to fetch and a confirm each to
    /// replay.
    pub async fn replay_with_progress(
        &self,
        limit: usize,
        dry_run: bool,
        on_progress: impl FnMut(Progress),
    ) -> Result<Vec<Replayed>, DlqError> {
        Session::with(self.broker, "dlq replay", async |session| {
            replay_on(session, *self, limit, dry_run, |_| true, on_progress).await
        })
        .await
    }

    /// [`DeadLetterQueue::replay`] of the dead letters whose body `wanted` accepts
    /// (`reconcile`: one resource's); the others are looked at and returned to the queue
    /// untouched, in order.
    ///
    /// Every letter goes to [`Topology::route`](crate::amqp::Topology::route)`(stage)`, with [`replay_properties`]:
    /// nothing the letter carries (`x-original-routing-key`, `CC`, `BCC`, `user_id`,
    /// `expiration`) chooses or bars its way, so one hostile letter cannot strand the valid
    /// ones behind it nor reach another stage.
    pub async fn replay_where(
        &self,
        limit: usize,
        dry_run: bool,
        wanted: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<Replayed>, DlqError> {
        Session::with(self.broker, "dlq replay", async |session| {
            replay_on(session, *self, limit, dry_run, wanted, |_| {}).await
        })
        .await
    }
}

async fn replay_on(
    session: &Session,
    DeadLetterQueue {
        topology, stage, ..
    }: DeadLetterQueue<'_>,
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
