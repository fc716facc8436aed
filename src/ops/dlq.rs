//! `heat-pipeline dlq`: look at, replay and purge a stage's dead letters
//! (`<PIPELINE_NAME>.<stage>.dead`).
//!
//! Dead letters come from two places, and [`describe`] reads both:
//! - the runner, which rejects a message it can never process and says why in `x-error-*`
//!   headers (see `runner/delivery.rs`);
//! - the broker, which dead-letters a message that reached the stage queue's
//!   `x-delivery-limit` (it kept killing or timing out its consumer); it only adds `x-death`
//!   and `x-first-death-*` headers.
//!
//! Nothing here loses a dead letter: messages are fetched with `basic.get` without auto-ack,
//! and a message is acked only after its replay was confirmed by the broker. Whatever is not
//! acked goes back to the dead-letter queue, explicitly with `basic.nack` or, if this process
//! dies first, when the broker sees the connection close.

use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions, QueuePurgeOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection};

use crate::amqp::{self, header_str, PublishError, Topology};
use crate::stages::StageName;

/// How many bytes of a body [`DeadLetterInfo::preview`] shows.
pub const PREVIEW_BYTES: usize = 72;

/// Headers that describe a failure rather than the message. A replay drops them so the
/// stage sees a fresh message: above all `x-delivery-count`, from which the runner counts
/// attempts, and which the broker would otherwise count on from (quorum queues only add it
/// on redelivery, so a stale copy would survive). `x-first-failed-at` is kept on purpose:
/// if the replay fails again, the new dead letter still says when the trouble began.
const FAILURE_HEADERS: &[&str] = &[
    "x-stage",
    "x-error-kind",
    "x-error-class",
    "x-error-reason",
    "x-last-failed-at",
    "x-attempts",
    "x-original-exchange",
    "x-original-routing-key",
    "x-delivery-count",
    "x-acquired-count",
];

/// What went wrong talking to the broker.
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error("queue {queue} does not exist (is PIPELINE_NAME right?)")]
    NoQueue { queue: String },
    #[error("broker error: {0}")]
    Broker(#[from] lapin::Error),
    /// Replay stops at the first message the broker did not take; that one and the rest
    /// stay dead letters, the earlier ones were replayed.
    #[error(
        "dead letter {position} could not be replayed ({source}); {replayed} were replayed, \
         it and the rest stay in the dead-letter queue"
    )]
    Replay {
        position: usize,
        replayed: usize,
        source: PublishError,
    },
    /// The replay was confirmed but the dead letter could not be removed: it stays, and a
    /// later replay would send it a second time (harmless, the stages are idempotent).
    #[error(
        "dead letter {position} was replayed but stays in the dead-letter queue (the ack \
         failed); {replayed} were replayed, the rest stay in the dead-letter queue"
    )]
    Ack { position: usize, replayed: usize },
}

/// One dead letter as a person needs to see it: why it failed, when, and what it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterInfo {
    /// 1-based position in the queue at the time it was read.
    pub position: usize,
    pub message_id: Option<String>,
    /// `permanent` (rejected by the stage), `exhausted-retries` (the broker's delivery
    /// limit), `dead-lettered` (another broker reason) or `unknown` (no headers at all).
    pub kind: String,
    /// The stage's rejection class, e.g. `status_mismatch`.
    pub class: Option<String>,
    pub reason: Option<String>,
    pub first_failed_at: Option<String>,
    pub last_failed_at: Option<String>,
    pub attempts: Option<i64>,
    pub original_exchange: Option<String>,
    pub original_routing_key: Option<String>,
    pub body_size: usize,
    /// The start of the body, with anything unprintable escaped, so a terminal shows it
    /// safely whatever the bytes are.
    pub preview: String,
}

/// The dead letters found, and how many the queue held when they were read.
#[derive(Debug)]
pub struct Listing {
    pub queue: String,
    pub in_queue: u32,
    pub letters: Vec<DeadLetterInfo>,
}

/// One dead letter sent back to its stage (or that would be, in a dry run).
#[derive(Debug)]
pub struct Replayed {
    pub info: DeadLetterInfo,
    pub exchange: String,
    pub routing_key: String,
}

/// Shows up to `limit` dead letters of `stage` and leaves them all in the queue.
pub async fn list(
    url: &amqp::AmqpConfig,
    topology: &Topology,
    stage: StageName,
    limit: usize,
) -> Result<Listing, DlqError> {
    let queue = topology.dead_queue(stage);
    let (connection, channel) = open(url, "dlq list").await?;
    let in_queue = ready_count(&connection, &queue).await?;
    let deliveries = fetch(&channel, &queue, limit.min(in_queue as usize)).await?;
    let letters = deliveries
        .iter()
        .enumerate()
        .map(|(i, d)| describe(i + 1, &d.properties, &d.data))
        .collect();
    requeue(&deliveries).await;
    let _ = connection.close(200, "done".into()).await;
    Ok(Listing {
        queue,
        in_queue,
        letters,
    })
}

/// Sends up to `limit` dead letters of `stage` back to the stage's queue, each confirmed
/// by the broker before its dead letter is acked (a crash in between replays it twice,
/// which the stages' version guards make harmless, rather than losing it).
///
/// Only the messages in the queue at the start are taken, and all are fetched before the
/// first is replayed, so a replay that fails again is not picked up a second time.
/// `dry_run` fetches and describes them, and returns them all to the queue.
pub async fn replay(
    url: &amqp::AmqpConfig,
    topology: &Topology,
    stage: StageName,
    limit: usize,
    dry_run: bool,
) -> Result<Vec<Replayed>, DlqError> {
    replay_where(url, topology, stage, limit, dry_run, |_| true).await
}

/// [`replay`] of the dead letters whose body `wanted` accepts (`reconcile`: one
/// resource's); the others are looked at and returned to the queue untouched, in order.
pub async fn replay_where(
    url: &amqp::AmqpConfig,
    topology: &Topology,
    stage: StageName,
    limit: usize,
    dry_run: bool,
    wanted: impl Fn(&[u8]) -> bool,
) -> Result<Vec<Replayed>, DlqError> {
    let queue = topology.dead_queue(stage);
    let (connection, channel) = open(url, "dlq replay").await?;
    let in_queue = ready_count(&connection, &queue).await?;
    // Like every process that publishes, make sure the stage queues exist and are bound.
    topology.declare(&channel).await?;
    let deliveries = fetch(&channel, &queue, limit.min(in_queue as usize)).await?;
    let (chosen, others): (Vec<_>, Vec<_>) = deliveries
        .into_iter()
        .enumerate()
        .partition(|(_, d)| wanted(&d.data));
    let others: Vec<Delivery> = others.into_iter().map(|(_, d)| d).collect();
    let mut replayed = Vec::new();
    for (n, (i, delivery)) in chosen.iter().enumerate() {
        let (exchange, routing_key) = topology.route(stage);
        let target = Replayed {
            info: describe(i + 1, &delivery.properties, &delivery.data),
            exchange,
            routing_key: routing_key.to_string(),
        };
        if !dry_run {
            let sent = amqp::publish_confirmed(
                &channel,
                &target.exchange,
                &target.routing_key,
                &delivery.data,
                replay_properties(&delivery.properties),
            )
            .await;
            if let Err(source) = sent {
                requeue(chosen[n..].iter().map(|(_, d)| d)).await;
                requeue(&others).await;
                let _ = connection.close(200, "replay failed".into()).await;
                return Err(DlqError::Replay {
                    position: i + 1,
                    replayed: replayed.len(),
                    source,
                });
            }
            if !matches!(
                delivery.acker.ack(BasicAckOptions::default()).await,
                Ok(true)
            ) {
                let _ = connection.close(200, "ack failed".into()).await;
                return Err(DlqError::Ack {
                    position: i + 1,
                    replayed: replayed.len() + 1,
                });
            }
        }
        replayed.push(target);
    }
    if dry_run {
        requeue(chosen.iter().map(|(_, d)| d)).await;
    }
    requeue(&others).await;
    let _ = connection.close(200, "done".into()).await;
    Ok(replayed)
}

/// The resource a dead letter is about, read from its body's `job` (every stage's input
/// carries one): `(path, id)`, `None` for a body that names none (malformed input).
pub fn resource_of(body: &[u8]) -> Option<(String, String)> {
    #[derive(serde::Deserialize)]
    struct Body {
        job: JobRef,
    }
    #[derive(serde::Deserialize)]
    struct JobRef {
        resource_type: String,
        #[serde(default)]
        resource_path: Option<String>,
        resource_id: String,
    }
    let job = serde_json::from_slice::<Body>(body).ok()?.job;
    let path = job
        .resource_path
        .unwrap_or_else(|| format!("{}s", job.resource_type));
    Some((path, job.resource_id))
}

/// Up to `limit` dead letters of `stage`, each with the resource it is about, all left in
/// the queue (as [`list`]). A missing queue has none.
pub async fn letters_by_resource(
    url: &amqp::AmqpConfig,
    topology: &Topology,
    stage: StageName,
    limit: usize,
) -> Result<Vec<(DeadLetterInfo, Option<(String, String)>)>, DlqError> {
    let queue = topology.dead_queue(stage);
    let (connection, channel) = open(url, "dlq list").await?;
    let in_queue = match ready_count(&connection, &queue).await {
        Ok(n) => n,
        Err(DlqError::NoQueue { .. }) => {
            let _ = connection.close(200, "done".into()).await;
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    };
    let deliveries = fetch(&channel, &queue, limit.min(in_queue as usize)).await?;
    let letters = deliveries
        .iter()
        .enumerate()
        .map(|(i, d)| {
            (
                describe(i + 1, &d.properties, &d.data),
                resource_of(&d.data),
            )
        })
        .collect();
    requeue(&deliveries).await;
    let _ = connection.close(200, "done".into()).await;
    Ok(letters)
}

/// How many dead letters `stage` has (ready ones; none are normally unacked).
pub async fn count(
    url: &amqp::AmqpConfig,
    topology: &Topology,
    stage: StageName,
) -> Result<u32, DlqError> {
    let (connection, _channel) = open(url, "dlq count").await?;
    let counted = ready_count(&connection, &topology.dead_queue(stage)).await;
    let _ = connection.close(200, "done".into()).await;
    counted
}

/// Deletes every dead letter of `stage` and returns how many there were. Irreversible:
/// the CLI asks first.
pub async fn purge(
    url: &amqp::AmqpConfig,
    topology: &Topology,
    stage: StageName,
) -> Result<u32, DlqError> {
    let queue = topology.dead_queue(stage);
    let (connection, channel) = open(url, "dlq purge").await?;
    ready_count(&connection, &queue).await?;
    let purged = channel
        .queue_purge(queue.as_str().into(), QueuePurgeOptions::default())
        .await;
    let _ = connection.close(200, "done".into()).await;
    Ok(purged?)
}

/// Reads a dead letter's headers into what [`DeadLetterInfo`] shows.
pub fn describe(position: usize, properties: &BasicProperties, body: &[u8]) -> DeadLetterInfo {
    let headers = properties.headers().as_ref();
    let text = |name| header_str(headers, name);
    let first_death = first_death(headers);
    let mut info = DeadLetterInfo {
        position,
        message_id: properties.message_id().as_ref().map(|id| id.to_string()),
        kind: "unknown".to_string(),
        class: text("x-error-class"),
        reason: text("x-error-reason"),
        first_failed_at: text("x-first-failed-at"),
        last_failed_at: text("x-last-failed-at"),
        attempts: header_int(headers, "x-attempts"),
        original_exchange: text("x-original-exchange"),
        original_routing_key: text("x-original-routing-key"),
        body_size: body.len(),
        preview: preview(body),
    };
    if let Some(kind) = text("x-error-kind") {
        info.kind = kind;
    } else if let Some(death) = first_death {
        let reason = text("x-first-death-reason").or(death.reason);
        if reason.as_deref() == Some("delivery_limit") {
            info.kind = "exhausted-retries".to_string();
            info.reason = Some("delivery limit reached".to_string());
        } else {
            info.kind = "dead-lettered".to_string();
            info.reason = reason.map(|r| format!("dead-lettered by the broker: {r}"));
        }
        info.first_failed_at = death.time;
        // The broker's delivery count stays with the stage queue: the number of attempts
        // is not in the message (the queue's x-delivery-limit bounds it).
        info.original_exchange = text("x-first-death-exchange").or(death.exchange);
        info.original_routing_key = death.routing_key;
    }
    info
}

/// The properties of a replayed message: the dead letter's identity and other headers,
/// without the failure headers (the `x-error-*` family and the delivery counters) and the broker's `x-death*`.
pub fn replay_properties(dead: &BasicProperties) -> BasicProperties {
    let kept: FieldTable = dead
        .headers()
        .as_ref()
        .map(|headers| {
            headers
                .into_iter()
                .filter(|(name, _)| {
                    let name = name.as_str();
                    !FAILURE_HEADERS.contains(&name)
                        && !name.starts_with("x-death")
                        && !name.starts_with("x-first-death-")
                        && !name.starts_with("x-last-death-")
                })
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect::<std::collections::BTreeMap<_, _>>()
                .into()
        })
        .unwrap_or_default();
    dead.clone().with_headers(kept)
}

/// The first `x-death` entry: the broker's record of the first time it dead-lettered this
/// message, with the queue's exchange and routing key at that moment.
struct Death {
    reason: Option<String>,
    time: Option<String>,
    exchange: Option<String>,
    routing_key: Option<String>,
}

fn first_death(headers: Option<&FieldTable>) -> Option<Death> {
    let Some(AMQPValue::FieldArray(deaths)) = headers?.inner().get(&ShortString::from("x-death"))
    else {
        return None;
    };
    // The broker keeps the most recent death first; the original routing is in the last.
    let Some(AMQPValue::FieldTable(death)) = deaths.as_slice().last() else {
        return None;
    };
    let routing_key = match death.inner().get(&ShortString::from("routing-keys")) {
        Some(AMQPValue::FieldArray(keys)) => keys.as_slice().first().and_then(value_str),
        _ => None,
    };
    let time = match death.inner().get(&ShortString::from("time")) {
        Some(AMQPValue::Timestamp(secs)) => Some(
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(*secs)).to_string(),
        ),
        _ => None,
    };
    let field = |name: &str| {
        death
            .inner()
            .get(&ShortString::from(name))
            .and_then(value_str)
    };
    Some(Death {
        reason: field("reason"),
        time,
        exchange: field("exchange"),
        routing_key,
    })
}

fn value_str(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(s.to_string()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

fn header_int(headers: Option<&FieldTable>, name: &str) -> Option<i64> {
    match headers?.inner().get(&ShortString::from(name))? {
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some((*n).into()),
        AMQPValue::LongUInt(n) => Some((*n).into()),
        AMQPValue::ShortInt(n) => Some((*n).into()),
        AMQPValue::ShortUInt(n) => Some((*n).into()),
        AMQPValue::ShortShortInt(n) => Some((*n).into()),
        AMQPValue::ShortShortUInt(n) => Some((*n).into()),
        _ => None,
    }
}

/// The first [`PREVIEW_BYTES`] of `body` as printable ASCII: other bytes (controls,
/// non-ASCII) and the backslash are escaped, so a terminal shows any body safely and
/// unambiguously, while JSON stays readable.
pub fn preview(body: &[u8]) -> String {
    let shown = &body[..body.len().min(PREVIEW_BYTES)];
    let mut text = String::with_capacity(shown.len());
    for &byte in shown {
        match byte {
            b'\\' => text.push_str("\\\\"),
            b'\n' => text.push_str("\\n"),
            b'\t' => text.push_str("\\t"),
            b'\r' => text.push_str("\\r"),
            0x20..=0x7e => text.push(char::from(byte)),
            _ => text.push_str(&format!("\\x{byte:02x}")),
        }
    }
    if shown.len() < body.len() {
        text.push_str("...");
    }
    text
}

async fn open(url: &amqp::AmqpConfig, role: &str) -> Result<(Connection, Channel), DlqError> {
    let (connection, _node) = amqp::connect(url, role).await?;
    let channel = amqp::confirm_channel(&connection).await?;
    Ok((connection, channel))
}

/// Ready messages in `queue`; a missing queue is an error here.
async fn ready_count(connection: &Connection, queue: &str) -> Result<u32, DlqError> {
    match amqp::queue_counts(connection, queue).await? {
        Some(counts) => Ok(counts.ready),
        None => Err(DlqError::NoQueue {
            queue: queue.to_string(),
        }),
    }
}

/// Takes up to `limit` messages from `queue` without acking them: they stay the broker's,
/// invisible to others, until acked, nacked or this connection closes.
async fn fetch(channel: &Channel, queue: &str, limit: usize) -> Result<Vec<Delivery>, DlqError> {
    let mut deliveries = Vec::new();
    while deliveries.len() < limit {
        match channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: false })
            .await?
        {
            Some(message) => deliveries.push(message.delivery),
            None => break,
        }
    }
    Ok(deliveries)
}

/// Returns messages to their queue, in order. `basic.nack` rather than closing the
/// channel: since RabbitMQ 4.3 a quorum queue counts a channel close as a failed delivery
/// (`x-delivery-count`) but not a nack, and looking at a dead letter is no failure.
/// Best effort: a nack that cannot be sent is done by the connection close that follows.
async fn requeue<'a>(deliveries: impl IntoIterator<Item = &'a Delivery>) {
    for delivery in deliveries {
        let options = BasicNackOptions {
            requeue: true,
            multiple: false,
        };
        let _ = delivery.acker.nack(options).await;
    }
}

impl fmt::Display for DeadLetterInfo {
    /// One block per dead letter, for `dlq list` and `dlq replay --dry-run`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let or_dash = |value: &Option<String>| value.clone().unwrap_or_else(|| "-".into());
        writeln!(
            f,
            "#{} message id: {}",
            self.position,
            or_dash(&self.message_id)
        )?;
        writeln!(f, "  kind:         {}", self.kind)?;
        writeln!(f, "  class:        {}", or_dash(&self.class))?;
        writeln!(f, "  reason:       {}", or_dash(&self.reason))?;
        writeln!(f, "  first failed: {}", or_dash(&self.first_failed_at))?;
        writeln!(f, "  last failed:  {}", or_dash(&self.last_failed_at))?;
        let attempts = self.attempts.map(|n| n.to_string());
        writeln!(f, "  attempts:     {}", or_dash(&attempts))?;
        writeln!(
            f,
            "  original:     exchange {}, routing key {}",
            or_dash(&self.original_exchange),
            or_dash(&self.original_routing_key)
        )?;
        write!(
            f,
            "  body:         {} bytes: {}",
            self.body_size, self.preview
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::{FieldArray, LongString};

    fn long(value: &str) -> AMQPValue {
        AMQPValue::LongString(LongString::from(value.as_bytes().to_vec()))
    }

    #[test]
    fn a_delivery_limit_dead_letter_is_exhausted_retries() {
        let mut death = FieldTable::default();
        death.insert("reason".into(), long("delivery_limit"));
        death.insert("exchange".into(), long("hp"));
        death.insert("time".into(), AMQPValue::Timestamp(0));
        death.insert(
            "routing-keys".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![long("heat.result")])),
        );
        let mut headers = FieldTable::default();
        headers.insert(
            "x-death".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(death)])),
        );
        headers.insert("x-first-death-reason".into(), long("delivery_limit"));
        let properties = BasicProperties::default().with_headers(headers);
        let info = describe(3, &properties, b"{}");
        assert_eq!(info.kind, "exhausted-retries");
        assert_eq!(info.reason.as_deref(), Some("delivery limit reached"));
        assert_eq!(info.original_routing_key.as_deref(), Some("heat.result"));
        assert_eq!(info.original_exchange.as_deref(), Some("hp"));
        assert_eq!(
            info.first_failed_at.as_deref(),
            Some("1970-01-01T00:00:00Z")
        );
    }

    #[test]
    fn replay_drops_only_the_failure_headers() {
        let mut headers = FieldTable::default();
        for name in [
            "x-error-kind",
            "x-error-reason",
            "x-death",
            "x-first-death-reason",
            "x-delivery-count",
            "x-first-failed-at",
            "traceparent",
        ] {
            headers.insert(name.into(), long("v"));
        }
        headers.insert("x-attempts".into(), AMQPValue::LongLongInt(2));
        let dead = BasicProperties::default()
            .with_message_id("m-1".into())
            .with_headers(headers);
        let replayed = replay_properties(&dead);
        let kept: Vec<&str> = replayed
            .headers()
            .as_ref()
            .unwrap()
            .into_iter()
            .map(|(name, _)| name.as_str())
            .collect();
        assert_eq!(kept, ["traceparent", "x-first-failed-at"]);
        assert_eq!(replayed.message_id().as_ref().unwrap().as_str(), "m-1");
    }

    #[test]
    fn the_preview_is_short_and_escaped() {
        assert_eq!(
            preview(b"{\"a\": \"\\\\\"}\n\xff\x1b"),
            r#"{"a": "\\\\"}\n\xff\x1b"#
        );
        let long = vec![b'x'; 100];
        assert_eq!(preview(&long), format!("{}...", "x".repeat(PREVIEW_BYTES)));
    }
}
