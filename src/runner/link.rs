//! The contract between a session and its delivery tasks: what a delivery may use of the
//! session it arrived on, and nothing more.
//!
//! A delivery publishes its hand-off or dead letter, hands itself to the ack batcher, and
//! watches two signals: `abandon` (stop, leave the delivery unacked) and `broken` (which it
//! raises when the session can no longer ack or publish). The consumer loop and teardown
//! stay in `session.rs`; this type is all that crosses between the two.

use std::time::Duration;

use lapin::message::Delivery;
use lapin::{BasicProperties, Channel};
use tokio_util::sync::CancellationToken;

use super::acks::{Acks, BatcherStopped};
use crate::amqp::{publish_confirmed, PublishError};

/// How often a nacked publish is tried again before the session is given up (and the
/// delivery, unacked, comes back to publish again after the reconnect).
const NACK_RETRIES: u32 = 3;

/// The pause before publishing a nacked message again, times the attempt.
const NACK_PAUSE: Duration = Duration::from_millis(200);

pub(super) struct SessionLink {
    /// Hand-offs and dead letters leave here, with publisher confirms. A channel apart from
    /// the consume channel, so that publish back-pressure never stalls acks.
    publish: Channel,
    /// Acks finished deliveries in batches (`multiple`).
    acks: Acks,
    /// Raised by any task that finds the session broken (an ack or publish failed), so that
    /// the runner reconnects instead of consuming into a dead channel.
    broken: CancellationToken,
    /// Raised to stop in-flight tasks: the session was lost, or the drain deadline passed.
    /// Their deliveries stay unacked and the broker redelivers them.
    abandon: CancellationToken,
}

impl SessionLink {
    pub(super) fn new(publish: Channel, acks: Acks, broken: CancellationToken) -> SessionLink {
        SessionLink {
            publish,
            acks,
            broken,
            abandon: CancellationToken::new(),
        }
    }

    /// Publishes persistently and mandatorily, and waits for the broker's confirm. A nack
    /// (a quorum queue that lost its leader, say) is published again, up to
    /// [`NACK_RETRIES`] times: the next stage is idempotent, so a duplicate is harmless.
    /// Any other failure is returned, and the caller breaks the session.
    pub(super) async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), PublishError> {
        let mut nacks = 0;
        loop {
            let published = publish_confirmed(
                &self.publish,
                exchange,
                routing_key,
                body,
                properties.clone(),
            )
            .await;
            match published {
                Err(PublishError::Nacked) if nacks < NACK_RETRIES => {
                    nacks += 1;
                    tracing::warn!(nacks, "the broker nacked a publish; publishing it again");
                    tokio::time::sleep(NACK_PAUSE * nacks).await;
                }
                other => return other,
            }
        }
    }

    /// Hands a finished delivery to the ack batcher: acked with the next run of finished
    /// deliveries, or alone shortly after.
    pub(super) async fn ack(&self, delivery: &Delivery) -> Result<(), BatcherStopped> {
        self.acks
            .done(delivery.delivery_tag, delivery.acker.clone())
            .await
    }

    /// Says the session cannot ack or publish any more: the runner reconnects.
    pub(super) fn mark_broken(&self) {
        self.broken.cancel();
    }

    /// Resolves when in-flight deliveries must stop where they are.
    pub(super) async fn abandoned(&self) {
        self.abandon.cancelled().await
    }

    // --- the session's side ---

    pub(super) fn abandon(&self) {
        self.abandon.cancel();
    }

    pub(super) fn broken(&self) -> &CancellationToken {
        &self.broken
    }

    pub(super) fn acks(&self) -> &Acks {
        &self.acks
    }

    pub(super) fn publish_channel(&self) -> &Channel {
        &self.publish
    }
}
