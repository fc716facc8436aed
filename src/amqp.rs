//! The RabbitMQ adapter: topology, connections and confirmed publishing.

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::Confirmation;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

use crate::stages::StageName;

/// Names of the exchanges and queues of one pipeline (design section 4).
#[derive(Debug, Clone)]
pub struct Topology {
    /// `PIPELINE_NAME`: the prefix of every name, so several pipelines share one broker.
    name: String,
    /// `x-delivery-limit` of the stage queues: a message that keeps killing its consumer
    /// is dead-lettered by the broker after this many deliveries instead of looping.
    delivery_limit: u32,
}

impl Topology {
    pub fn new(name: impl Into<String>, delivery_limit: u32) -> Self {
        Topology {
            name: name.into(),
            delivery_limit,
        }
    }

    /// The exchange upstream publishes to, and the stages hand off through.
    pub fn exchange(&self) -> &str {
        &self.name
    }

    /// Where dead letters go, routed by stage name.
    pub fn dead_exchange(&self) -> String {
        format!("{}.dead", self.name)
    }

    pub fn queue(&self, stage: StageName) -> String {
        format!("{}.{stage}", self.name)
    }

    pub fn dead_queue(&self, stage: StageName) -> String {
        format!("{}.{stage}.dead", self.name)
    }

    /// Declares the whole topology, not only the caller's part: a hand-off is published
    /// `mandatory`, so the next stage's queue must exist even if no process of it ran yet.
    /// Idempotent; called after every (re)connect.
    pub async fn declare(&self, channel: &Channel) -> Result<(), lapin::Error> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        for exchange in [self.exchange().to_string(), self.dead_exchange()] {
            channel
                .exchange_declare(
                    exchange.into(),
                    ExchangeKind::Direct,
                    durable,
                    FieldTable::default(),
                )
                .await?;
        }
        for stage in StageName::ALL {
            let dead = self.dead_queue(stage);
            declare_quorum_queue(channel, &dead, FieldTable::default()).await?;
            channel
                .queue_bind(
                    dead.into(),
                    self.dead_exchange().into(),
                    stage.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;

            let queue = self.queue(stage);
            let mut args = FieldTable::default();
            args.insert(
                "x-dead-letter-exchange".into(),
                long_string(&self.dead_exchange()),
            );
            args.insert(
                "x-dead-letter-routing-key".into(),
                long_string(stage.as_str()),
            );
            args.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongLongInt(self.delivery_limit.into()),
            );
            // Broker-side dead-lettering (delivery limit) is at-most-once unless both are set.
            args.insert(
                "x-dead-letter-strategy".into(),
                long_string("at-least-once"),
            );
            args.insert("x-overflow".into(), long_string("reject-publish"));
            declare_quorum_queue(channel, &queue, args).await?;
            channel
                .queue_bind(
                    queue.into(),
                    self.exchange().into(),
                    stage.routing_key().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }
}

async fn declare_quorum_queue(
    channel: &Channel,
    name: &str,
    mut args: FieldTable,
) -> Result<(), lapin::Error> {
    args.insert("x-queue-type".into(), long_string("quorum"));
    let options = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel.queue_declare(name.into(), options, args).await?;
    Ok(())
}

pub fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.as_bytes().to_vec()))
}

/// Opens a connection named after its role, so the broker's management view says who it is.
pub async fn connect(url: &str, role: &str) -> Result<Connection, lapin::Error> {
    let name = format!("heat-pipeline {role} pid {}", std::process::id());
    let properties =
        ConnectionProperties::default().with_connection_name(LongString::from(name.into_bytes()));
    Connection::connect(url, properties).await
}

/// Opens a channel with publisher confirms on.
pub async fn confirm_channel(connection: &Connection) -> Result<Channel, lapin::Error> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// Why a publish was not confirmed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("broker error: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the broker refused the message (nack)")]
    Nacked,
    #[error("no queue is bound to {exchange} with key {routing_key}")]
    Unroutable {
        exchange: String,
        routing_key: String,
    },
}

/// Publishes a persistent, mandatory message and waits for the broker's confirm: only then
/// is the message the broker's responsibility.
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
    let confirmation = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            options,
            body,
            properties.with_delivery_mode(2),
        )
        .await?
        .await?;
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

/// A header value as text, for the few headers the pipeline reads back.
pub fn header_str(headers: Option<&FieldTable>, name: &str) -> Option<String> {
    match headers?.inner().get(&ShortString::from(name))? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// Masks the password of an AMQP URL, for logs.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:****{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_the_password_only() {
        assert_eq!(
            redact_url("amqp://guest:secret@host:5672/%2f"),
            "amqp://guest:****@host:5672/%2f"
        );
        assert_eq!(redact_url("amqp://host:5672"), "amqp://host:5672");
        assert_eq!(redact_url("amqps://u@host"), "amqps://u@host");
    }

    #[test]
    fn names_follow_the_design() {
        let t = Topology::new("hp", 20);
        assert_eq!(t.queue(StageName::Wrap), "hp.wrap");
        assert_eq!(t.dead_queue(StageName::Capture), "hp.capture.dead");
        assert_eq!(t.dead_exchange(), "hp.dead");
    }
}
