//! Confirmed publishing: a message is the broker's only once it confirmed it.

use std::time::Duration;

use lapin::options::BasicPublishOptions;
use lapin::{BasicProperties, Channel, Confirmation};

/// How long a publish may wait for the broker's confirm. A quorum queue confirms once a
/// majority of its members has the message: seconds during a leader election, never
/// while the node we talk to hangs. Past this the caller treats the channel as broken.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a publish was not confirmed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("broker error: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the broker refused the message (nack)")]
    Nacked,
    #[error("no confirm within {0:?}")]
    TimedOut(Duration),
    #[error("no queue is bound to {exchange} with key {routing_key}")]
    Unroutable {
        exchange: String,
        routing_key: String,
    },
}

/// Publishes a persistent, mandatory message and waits (at most [`CONFIRM_TIMEOUT`]) for the
/// broker's confirm: only then is the message the broker's responsibility.
pub async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Result<(), PublishError> {
    let options = BasicPublishOptions {
        mandatory: true,
        ..Default::default()
    };
    let publish = async {
        channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                options,
                body,
                properties.with_delivery_mode(2),
            )
            .await?
            .await
    };
    let confirmation = tokio::time::timeout(CONFIRM_TIMEOUT, publish)
        .await
        .map_err(|_| PublishError::TimedOut(CONFIRM_TIMEOUT))??;
    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(_)) => Err(PublishError::Unroutable {
            exchange: exchange.to_string(),
            routing_key: routing_key.to_string(),
        }),
        Confirmation::Nack(_) => Err(PublishError::Nacked),
        Confirmation::NotRequested => unreachable!("confirm_channel enables confirms"),
    }
}
