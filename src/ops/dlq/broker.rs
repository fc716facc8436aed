//! The broker side of `dlq`: a short-lived connection, bounded fetches, and returning
//! what was fetched.

use std::time::Duration;

use lapin::message::Delivery;
use lapin::options::{BasicGetOptions, BasicNackOptions};
use lapin::{Channel, Connection};

use super::{DlqError, FETCH_TIMEOUT};
use crate::amqp;

/// How long closing the connection may take. A broker that stopped answering would
/// otherwise hold the command (or `run --audit-every`) after its work is done or failed;
/// past this the connection is dropped, and its socket closes with it.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// One command's connection and confirm channel.
pub(super) struct Session {
    connection: Connection,
    pub(super) channel: Channel,
}

impl Session {
    pub(super) async fn open(url: &amqp::AmqpConfig, role: &str) -> Result<Session, DlqError> {
        let (connection, _node) = amqp::connect(url, role).await?;
        let channel = amqp::confirm_channel(&connection).await?;
        Ok(Session {
            connection,
            channel,
        })
    }

    /// Ready messages in `queue`; a missing queue is an error here.
    pub(super) async fn ready_count(&self, queue: &str) -> Result<u32, DlqError> {
        match amqp::queue_counts(&self.connection, queue).await? {
            Some(counts) => Ok(counts.ready),
            None => Err(DlqError::NoQueue {
                queue: queue.to_string(),
            }),
        }
    }

    /// Opens a session as `role`, runs `work` on it, and closes it whatever `work` returned
    /// (closing returns every letter still unacked to its queue).
    pub(super) async fn with<T>(
        url: &amqp::AmqpConfig,
        role: &str,
        work: impl AsyncFnOnce(&Session) -> Result<T, DlqError>,
    ) -> Result<T, DlqError> {
        let session = Session::open(url, role).await?;
        let result = work(&session).await;
        session.close("done").await;
        result
    }

    /// Closes the connection, which returns to their queue the messages still unacked on
    /// it; bounded by [`CLOSE_TIMEOUT`].
    pub(super) async fn close(self, why: &str) {
        let closing = self.connection.close(200, why.into());
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, closing).await;
    }
}

/// Takes up to `limit` messages from `queue` without acking them: they stay the broker's,
/// invisible to others, until acked, nacked or this connection closes. Each `basic.get`
/// is bounded by [`FETCH_TIMEOUT`]. On a failure the messages taken so far are returned
/// ([`requeue`]) and the error names the letter that was being fetched. `on_fetched` is told
/// how many are in hand after each one.
pub(super) async fn fetch(
    channel: &Channel,
    queue: &str,
    limit: usize,
    mut on_fetched: impl FnMut(usize),
) -> Result<Vec<Delivery>, DlqError> {
    let mut deliveries = Vec::new();
    while deliveries.len() < limit {
        match fetch_one(channel, queue, deliveries.len() + 1).await {
            Ok(Some(delivery)) => {
                deliveries.push(delivery);
                on_fetched(deliveries.len());
            }
            Ok(None) => break,
            Err(error) => {
                requeue(&deliveries).await;
                return Err(error);
            }
        }
    }
    Ok(deliveries)
}

/// One `basic.get` without auto-ack, bounded by [`FETCH_TIMEOUT`]; `None` when the queue
/// is empty. `position` (1-based) names the letter in the error. A fetch given up on may
/// still be answered later: that letter is then unacked on this channel and goes back to
/// the queue when the connection closes.
pub(super) async fn fetch_one(
    channel: &Channel,
    queue: &str,
    position: usize,
) -> Result<Option<Delivery>, DlqError> {
    let get = channel.basic_get(queue.into(), BasicGetOptions { no_ack: false });
    match tokio::time::timeout(FETCH_TIMEOUT, get).await {
        Ok(Ok(message)) => Ok(message.map(|m| m.delivery)),
        Ok(Err(source)) => Err(DlqError::Fetch {
            queue: queue.to_string(),
            position,
            source,
        }),
        Err(_) => Err(DlqError::FetchTimedOut {
            queue: queue.to_string(),
            position,
            timeout: FETCH_TIMEOUT,
        }),
    }
}

/// Returns messages to their queue, in order. `basic.nack` rather than closing the
/// channel: since RabbitMQ 4.3 a quorum queue counts a channel close as a failed delivery
/// (`x-delivery-count`) but not a nack, and looking at a dead letter is no failure.
/// Best effort: a nack that cannot be sent is done by the connection close that follows.
pub(super) async fn requeue<'a>(deliveries: impl IntoIterator<Item = &'a Delivery>) {
    for delivery in deliveries {
        let options = BasicNackOptions {
            requeue: true,
            multiple: false,
        };
        let _ = delivery.acker.nack(options).await;
    }
}
