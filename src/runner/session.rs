//! One stage's broker session (its two channels on the shared connection), from open to
//! drain.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::acks::Acks;
use super::delivery::{self, Work};
use super::headers;
use super::link::SessionLink;
use super::worker::{Pipeline, Worker};
use crate::amqp::{self, Node};
use crate::stages::{Stage, StageName};
use crate::telemetry::events::QueuesCounted;

/// A connection with its two channels: deliveries arrive on the consume channel; hand-offs
/// and dead letters leave through the [`SessionLink`], which is all a delivery task sees.
pub(super) struct Session {
    /// Held so that the connection outlives the session's channels, and watched (see
    /// [`HEALTH_CHECK`]).
    connection: Arc<Connection>,
    /// The broker node the connection reached (masked), for the log.
    pub(super) node: Node,
    consume: Channel,
    link: Arc<SessionLink>,
}

/// How often a session checks that its connection and channels are still up. lapin does
/// not always end a consumer's stream when the connection drops (seen after a broker
/// restart: a stage with no ack or publish in flight at that moment waited forever), so
/// the session looks for itself.
const HEALTH_CHECK: Duration = Duration::from_secs(1);

/// How often a session asks the broker how many messages wait in its stage's queue and
/// dead-letter queue (`heat_pipeline_queue_ready`, `heat_pipeline_dead_letters`): often
/// enough for an alert on one dead letter within a scrape or two, and two passive declares
/// on a channel of their own each time cost the broker next to nothing.
const QUEUE_COUNT_EVERY: Duration = Duration::from_secs(15);

/// The longest a session's teardown waits for the broker (final acks, channel closes).
const TEARDOWN: Duration = Duration::from_secs(5);

/// Why [`Session::open`] failed; the runner retries either with backoff.
#[derive(Debug, thiserror::Error)]
pub(super) enum OpenError {
    #[error(transparent)]
    Broker(#[from] lapin::Error),
    /// A broker that accepts TCP but never finishes the handshake must not hang a stage.
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
}

/// Why [`Session::consume`] returned.
#[derive(Debug)]
pub(super) enum SessionEnd {
    Shutdown,
    Lost(Loss),
}

/// How a session was lost; the runner reconnects after each.
#[derive(Debug, thiserror::Error)]
pub(super) enum Loss {
    #[error("cannot consume: {0}")]
    ConsumeRefused(lapin::Error),
    #[error("an ack or publish failed")]
    AckOrPublishFailed,
    #[error("the broker connection is gone")]
    ConnectionGone,
    #[error("a channel was closed")]
    ChannelClosed,
    #[error("the consumer failed: {0}")]
    Consumer(lapin::Error),
    /// The broker cancelled the consumer (queue deleted, its leader's node down): not the
    /// end of the work.
    #[error("the broker cancelled the consumer")]
    Cancelled,
}

impl Session {
    pub(super) async fn open(pipeline: &Pipeline) -> Result<Session, OpenError> {
        let (connection, node) = pipeline.connection.get().await?;
        let consume = connection.create_channel().await?;
        let publish = amqp::confirm_channel(&connection).await?;
        pipeline.topology.declare(&consume).await?;
        consume
            .basic_qos(pipeline.options.concurrency, BasicQosOptions::default())
            .await?;
        let broken = CancellationToken::new();
        let acks = Acks::start(
            2 * usize::from(pipeline.options.concurrency),
            broken.clone(),
        );
        Ok(Session {
            connection,
            node,
            consume,
            link: Arc::new(SessionLink::new(publish, acks, broken)),
        })
    }

    /// Why the session can no longer work, if it cannot.
    fn lost(&self) -> Option<Loss> {
        if !self.connection.status().connected() {
            Some(Loss::ConnectionGone)
        } else if !self.consume.status().connected()
            || !self.link.publish_channel().status().connected()
        {
            Some(Loss::ChannelClosed)
        } else {
            None
        }
    }

    /// Consumes until shutdown or a failure, then drains in-flight deliveries.
    pub(super) async fn consume<S: Stage>(
        self,
        worker: Arc<Worker<S>>,
        shutdown: &CancellationToken,
    ) -> SessionEnd {
        let pipeline = &worker.pipeline;
        let name = worker.stage.name();
        let tag = format!("{name}-{}", std::process::id());
        let mut consumer = match self
            .consume
            .basic_consume(
                pipeline.topology.queue(name).into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
        {
            Ok(consumer) => consumer,
            Err(error) => return SessionEnd::Lost(Loss::ConsumeRefused(error)),
        };

        let session = self;
        let max_body = headers::max_body_bytes(pipeline.options.max_request_bytes);
        let tasks = TaskTracker::new();
        let mut health_check = tokio::time::interval(HEALTH_CHECK);
        let mut queue_count = tokio::time::interval(QUEUE_COUNT_EVERY);
        let end = loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break SessionEnd::Shutdown,
                _ = session.link.broken().cancelled() => break SessionEnd::Lost(Loss::AckOrPublishFailed),
                _ = health_check.tick() => if let Some(loss) = session.lost() {
                    break SessionEnd::Lost(loss);
                },
                _ = queue_count.tick() => {
                    tokio::spawn(count_queues(session.connection.clone(), pipeline.topology.clone(), name));
                }
                next = consumer.next() => match next {
                    Some(Ok(message)) => {
                        // Taken into work once its body fits the stage's byte budget; until
                        // then it stays unacked, and a shutdown or a lost session returns it.
                        let reserved = tokio::select! {
                            biased;
                            _ = shutdown.cancelled() => break SessionEnd::Shutdown,
                            _ = session.link.broken().cancelled() => break SessionEnd::Lost(Loss::AckOrPublishFailed),
                            reserved = worker.budget.reserve(message.data.len()) => reserved,
                        };
                        // Decoded here, in delivery order, so that each resource's turn is
                        // taken in that order.
                        let admitted = headers::admit(&message, max_body);
                        let work = match admitted.and_then(|()| worker.stage.decode(&message.data)) {
                            Ok(input) => {
                                let job = worker.stage.job(&input);
                                let key = format!("{}/{}", job.path(), job.resource_id);
                                Work::Step(input, worker.sequencer.enter(key))
                            }
                            Err(rejection) => Work::Reject(rejection),
                        };
                        // Boxed once here: spawning moves the future three times more, and a
                        // delivery's future is kilobytes (docs/SCALING.md).
                        tasks.spawn(Box::pin(delivery::handle(worker.clone(), session.link.clone(), message, work, reserved)));
                    }
                    Some(Err(error)) => break SessionEnd::Lost(Loss::Consumer(error)),
                    None => break SessionEnd::Lost(Loss::Cancelled),
                },
            }
        };
        tasks.close();

        match &end {
            SessionEnd::Shutdown => {
                // Stop deliveries first, so that draining ends.
                let _ = session
                    .consume
                    .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
                    .await;
                let drain = pipeline.options.drain_timeout;
                if tokio::time::timeout(drain, tasks.wait()).await.is_err() {
                    tracing::warn!(
                        stage = %name,
                        in_flight = tasks.len(),
                        ?drain,
                        "drain deadline passed; returning in-flight messages to the queue"
                    );
                }
            }
            SessionEnd::Lost(_) => {}
        }
        session.link.abandon();
        tasks.wait().await;
        // Every finished delivery is acked before the channel closes; the rest go back.
        // Bounded, like the closes: on a dead connection lapin may never answer.
        session.link.acks().finish(TEARDOWN).await;
        // Closing the channels returns every unacked delivery to the queue. The connection
        // stays for the other stages (and the next session).
        for channel in [&session.consume, session.link.publish_channel()] {
            let close = channel.close(200, "heat-pipeline closing".into());
            let _ = tokio::time::timeout(TEARDOWN, close).await;
        }
        end
    }
}

/// Counts the stage's queue and dead-letter queue for the gauges, each on a channel of its
/// own (`amqp::queue_counts`), at most [`TEARDOWN`] long: a count that fails or hangs is
/// skipped, and the next one comes [`QUEUE_COUNT_EVERY`] later.
async fn count_queues(connection: Arc<Connection>, topology: amqp::Topology, stage: StageName) {
    let count = async {
        let ready = amqp::queue_counts(&connection, &topology.queue(stage)).await?;
        let dead = amqp::queue_counts(&connection, &topology.dead_queue(stage)).await?;
        Ok::<_, lapin::Error>(ready.zip(dead))
    };
    if let Ok(Ok(Some((ready, dead)))) = tokio::time::timeout(TEARDOWN, count).await {
        QueuesCounted {
            stage,
            ready: ready.ready,
            dead_letters: dead.ready,
        }
        .emit();
    }
}
