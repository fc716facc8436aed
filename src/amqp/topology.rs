//! The pipeline's exchanges and queues (design section 4), declared idempotently.

use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

use super::headers::long_string;
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

impl Topology {
    /// Deletes the pipeline's queues and exchanges, messages included: for the tests and
    /// the benchmark, which clean up the pipelines they made. Best effort: a name already
    /// gone is no error.
    pub async fn delete(&self, channel: &Channel) {
        for stage in StageName::ALL {
            for queue in [self.queue(stage), self.dead_queue(stage)] {
                let _ = channel
                    .queue_delete(queue.into(), QueueDeleteOptions::default())
                    .await;
            }
        }
        for exchange in [self.exchange().to_string(), self.dead_exchange()] {
            let _ = channel
                .exchange_delete(exchange.into(), ExchangeDeleteOptions::default())
                .await;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_design() {
        let t = Topology::new("hp", 20);
        assert_eq!(t.queue(StageName::Wrap), "hp.wrap");
        assert_eq!(t.dead_queue(StageName::Capture), "hp.capture.dead");
        assert_eq!(t.dead_exchange(), "hp.dead");
    }
}
