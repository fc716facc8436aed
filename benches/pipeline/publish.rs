//! Publishing the workload's results to the pipeline's exchange.

use std::time::{Duration, Instant};

use heat_pipeline::amqp::Topology;
use heat_pipeline::ops::publish::input_properties;
use heat_pipeline::stages::StageName;
use lapin::options::BasicPublishOptions;
use lapin::Channel;

use super::now_ms;
use super::watcher::Published;
use super::workload::Message;

/// Publishes `messages`, confirms awaited in windows of 500; with `rate`, paced to that many
/// per second. Records when each finished job's result was published.
pub async fn publish(
    published: &Published,
    channel: &Channel,
    topology: &Topology,
    messages: &[Message],
    rate: Option<u64>,
) {
    let started = Instant::now();
    let options = BasicPublishOptions {
        mandatory: true,
        ..Default::default()
    };
    for (i, message) in messages.iter().enumerate() {
        if let Some(rate) = rate {
            let due = started + Duration::from_secs_f64(i as f64 / rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        if message.finished.is_some() {
            published
                .lock()
                .unwrap()
                .insert((message.id.clone(), message.version), now_ms());
        }
        channel
            .basic_publish(
                topology.input_exchange().into(),
                StageName::Capture.routing_key().into(),
                options,
                &message.body,
                input_properties().with_delivery_mode(2),
            )
            .await
            .expect("publish");
        if i % 500 == 499 && rate.is_none() {
            channel.wait_for_confirms().await.expect("confirms");
        }
    }
    channel.wait_for_confirms().await.expect("confirms");
}
