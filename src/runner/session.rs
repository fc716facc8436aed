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
use super::{Pipeline, Worker};
use crate::amqp;
use crate::stages::Stage;

/// A connection with its two channels: deliveries arrive on one, hand-offs and dead
/// letters leave on the other, with confirms. Separate channels keep a publish back-pressure
/// from stalling acks.
pub(super) struct Session {
    /// Held so that the connection outlives the session's channels, and watched (see
    /// [`HEALTH_CHECK`]).
    connection: Arc<Connection>,
    pub(super) consume: Channel,
    pub(super) publish: Channel,
    /// Cancelled by any task that finds the session broken (an ack or publish failed), so
    /// that the runner reconnects instead of consuming into a dead channel.
    pub(super) broken: CancellationToken,
    /// Cancelled to stop in-flight tasks: the session was lost, or the drain deadline passed.
    /// Their deliveries stay unacked and the broker redelivers them.
    pub(super) abandon: CancellationToken,
    /// Acks finished deliveries in batches (`multiple`).
    pub(super) acks: Acks,
}

/// How often a session checks that its connection and channels are still up. lapin does
/// not always end a consumer's stream when the connection drops (seen after a broker
/// restart: a stage with no ack or publish in flight at that moment waited forever), so
/// the session looks for itself.
const HEALTH_CHECK: Duration = Duration::from_secs(1);

/// The longest a session's teardown waits for the broker (final acks, channel closes).
const TEARDOWN: Duration = Duration::from_secs(5);

/// Why [`Session::consume`] returned.
#[derive(Debug)]
pub enum SessionEnd {
    Shutdown,
    Lost(String),
}

impl Session {
    pub(super) async fn open(pipeline: &Pipeline) -> Result<Session, lapin::Error> {
        let connection = pipeline.connection.get().await?;
        let consume = connection.create_channel().await?;
        let publish = amqp::confirm_channel(&connection).await?;
        pipeline.topology.declare(&consume).await?;
        consume
            .basic_qos(pipeline.options.concurrency, BasicQosOptions::default())
            .await?;
        let broken = CancellationToken::new();
        Ok(Session {
            connection,
            consume,
            publish,
            acks: Acks::start(
                2 * usize::from(pipeline.options.concurrency),
                broken.clone(),
            ),
            broken,
            abandon: CancellationToken::new(),
        })
    }

    /// Why the session can no longer work, if it cannot.
    fn lost(&self) -> Option<&'static str> {
        if !self.connection.status().connected() {
            Some("the broker connection is gone")
        } else if !self.consume.status().connected() || !self.publish.status().connected() {
            Some("a channel was closed")
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
            Err(error) => return SessionEnd::Lost(format!("cannot consume: {error}")),
        };

        let session = Arc::new(self);
        let tasks = TaskTracker::new();
        let mut health_check = tokio::time::interval(HEALTH_CHECK);
        let end = loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break SessionEnd::Shutdown,
                _ = session.broken.cancelled() => break SessionEnd::Lost("an ack or publish failed".into()),
                _ = health_check.tick() => if let Some(lost) = session.lost() {
                    break SessionEnd::Lost(lost.into());
                },
                next = consumer.next() => match next {
                    Some(Ok(message)) => {
                        // Decoded here, in delivery order, so that each resource's turn is
                        // taken in that order.
                        let work = match worker.stage.decode(&message.data) {
                            Ok(input) => {
                                let job = worker.stage.job(&input);
                                let key = format!("{}/{}", job.path(), job.resource_id);
                                Work::Step(input, worker.sequencer.enter(key))
                            }
                            Err(rejection) => Work::Reject(rejection),
                        };
                        tasks.spawn(delivery::handle(worker.clone(), session.clone(), message, work));
                    }
                    Some(Err(error)) => break SessionEnd::Lost(error.to_string()),
                    // The broker cancelled the consumer (queue deleted, node down): not the
                    // end of the work.
                    None => break SessionEnd::Lost("the broker cancelled the consumer".into()),
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
        session.abandon.cancel();
        tasks.wait().await;
        // Every finished delivery is acked before the channel closes; the rest go back.
        // Bounded, like the closes: on a dead connection lapin may never answer.
        session.acks.finish(TEARDOWN).await;
        // Closing the channels returns every unacked delivery to the queue. The connection
        // stays for the other stages (and the next session).
        for channel in [&session.consume, &session.publish] {
            let close = channel.close(200, "heat-pipeline closing".into());
            let _ = tokio::time::timeout(TEARDOWN, close).await;
        }
        end
    }
}
