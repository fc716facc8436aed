//! Questions about queues that create nothing (operators' commands).

use lapin::options::QueueDeclareOptions;
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::FieldTable;
use lapin::Connection;

/// A queue as the broker reported it to a passive declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueCounts {
    /// Messages waiting to be delivered. Messages delivered but not yet acked are not
    /// counted: they are in the hands of a consumer.
    pub ready: u32,
    /// Consumers attached: the stage processes (one per process and stage) working on it.
    pub consumers: u32,
}

/// Asks the broker about `queue` without creating it (an operator's typo must not declare
/// a queue into existence); `None` if it does not exist. On a channel of its own, because
/// the broker answers a missing queue by closing the channel it was asked on.
pub async fn queue_counts(
    connection: &Connection,
    queue: &str,
) -> Result<Option<QueueCounts>, lapin::Error> {
    let channel = connection.create_channel().await?;
    let options = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    match channel
        .queue_declare(queue.into(), options, FieldTable::default())
        .await
    {
        Ok(declared) => {
            let _ = channel.close(200, "done".into()).await;
            Ok(Some(QueueCounts {
                ready: declared.message_count(),
                consumers: declared.consumer_count(),
            }))
        }
        // The broker has closed this channel already.
        Err(error) if is_not_found(&error) => Ok(None),
        Err(error) => Err(error),
    }
}

/// The broker's `404 NOT_FOUND`: the queue or exchange named does not exist.
fn is_not_found(error: &lapin::Error) -> bool {
    matches!(error.kind(), lapin::ErrorKind::ProtocolError(e)
        if matches!(e.kind(), AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)))
}
