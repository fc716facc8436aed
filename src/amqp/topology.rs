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

    /// The input exchange: the only one upstream may write to (design section 4). Only the
    /// capture queue is bound to it, so whatever routing key upstream sets, its message
    /// reaches capture or nowhere.
    pub fn input_exchange(&self) -> &str {
        &self.name
    }

    /// The pipeline's own exchange: hand-offs, replays and re-drives go through it. Upstream
    /// has no write permission on it (docs/SECURITY.md), so what arrives through it was
    /// published by the pipeline; a stage may trust its headers (not its body: that is
    /// decoded as strictly as input).
    pub fn handoff_exchange(&self) -> String {
        format!("{}.handoff", self.name)
    }

    /// Where the pipeline publishes a message meant for `stage`'s queue: the hand-off
    /// exchange with the stage's routing key. Never the message's own headers: a dead
    /// letter's `x-original-routing-key` is a record of the past, not a route.
    pub fn route(&self, stage: StageName) -> (String, &'static str) {
        (self.handoff_exchange(), stage.routing_key())
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
        for exchange in self.exchanges() {
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
            for exchange in self.sources(stage) {
                channel
                    .queue_bind(
                        queue.as_str().into(),
                        exchange.into(),
                        stage.routing_key().into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// Removes the bindings through which versions before 0.2 handed off, and through which
    /// upstream could therefore forge a hand-off: the input exchange to the normalize and
    /// wrap queues. Run once no process older than 0.2 is left (an older process binds them
    /// again when it connects). Idempotent: unbinding what is not bound is no error.
    pub async fn seal(&self, channel: &Channel) -> Result<(), lapin::Error> {
        for stage in [StageName::Normalize, StageName::Wrap] {
            channel
                .queue_unbind(
                    self.queue(stage).into(),
                    self.input_exchange().into(),
                    stage.routing_key().into(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok(())
    }

    /// Every exchange of the pipeline.
    fn exchanges(&self) -> [String; 3] {
        [
            self.input_exchange().to_string(),
            self.handoff_exchange(),
            self.dead_exchange(),
        ]
    }

    /// The exchanges bound to `stage`'s queue: the hand-off exchange, and for capture also
    /// the input exchange.
    fn sources(&self, stage: StageName) -> Vec<String> {
        match stage {
            StageName::Capture => vec![self.input_exchange().to_string(), self.handoff_exchange()],
            _ => vec![self.handoff_exchange()],
        }
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
        for exchange in self.exchanges() {
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
        assert_eq!(
            t.route(StageName::Wrap),
            ("hp.handoff".into(), "stage.wrap")
        );
        assert_eq!(t.sources(StageName::Wrap), ["hp.handoff"]);
        assert_eq!(t.sources(StageName::Capture), ["hp", "hp.handoff"]);
    }
}
