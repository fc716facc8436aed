//! One dead letter read for a person ([`describe`], [`DeadLetterInfo`]) and made ready to
//! go back to its stage ([`replay_properties`]).

use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::BasicProperties;

use super::escape::{escape, preview, value_text};

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

/// Headers the broker routes by (sender-selected distribution): each routing key in `CC`
/// or `BCC` is routed as if it had been the publish's own. A replay goes through the
/// hand-off exchange, to which every stage queue is bound, so a letter carrying
/// `CC: ["stage.wrap"]` would also reach wrap, with upstream's bytes. Matched without
/// regard to case, to be safe.
const ROUTING_HEADERS: &[&str] = &["CC", "BCC"];

/// One dead letter as a person needs to see it: why it failed, when, and what it was.
///
/// Every text in it came from the message, so it is escaped ([`escape`]): no control,
/// format or bidi character, whatever the publisher put there. Printed as it is by
/// `dlq list` (text and JSON), `dlq replay --dry-run`, `audit` and `reconcile`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
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
    /// `None` also when the header is not an integer (its value is not shown then).
    pub attempts: Option<i64>,
    pub original_exchange: Option<String>,
    pub original_routing_key: Option<String>,
    pub body_size: usize,
    /// The start of the body, with anything unprintable escaped, so a terminal shows it
    /// safely whatever the bytes are.
    pub preview: String,
}

/// Reads a dead letter's headers into what [`DeadLetterInfo`] shows. Never fails: a header
/// of an unexpected type is shown as text ([`value_text`]), bytes that are not UTF-8 as
/// `\xNN`, a body that is not JSON as its escaped bytes.
pub fn describe(position: usize, properties: &BasicProperties, body: &[u8]) -> DeadLetterInfo {
    let headers = properties.headers().as_ref();
    let text = |name: &str| header(headers, name).map(value_text);
    let first_death = first_death(headers);
    let mut info = DeadLetterInfo {
        position,
        message_id: properties
            .message_id()
            .as_ref()
            .map(|id| escape(id.as_str())),
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

/// The properties of a replayed message: the dead letter's identity (message id, content
/// type and encoding, correlation id, timestamp, type, app id) and its headers, without
/// the failure headers (the `x-error-*` family and the delivery counters), the broker's
/// `x-death*` and the routing headers `CC` and `BCC`. Nothing else of the letter goes along:
/// an `expiration` would drop the replay from the stage queue, a `user_id` not ours makes
/// the broker refuse the publish (and strand the letters behind it), and the route is
/// the stage's ([`Topology::route`](crate::amqp::Topology::route)), never the letter's.
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
                        && !ROUTING_HEADERS.iter().any(|r| r.eq_ignore_ascii_case(name))
                        && !name.starts_with("x-death")
                        && !name.starts_with("x-first-death-")
                        && !name.starts_with("x-last-death-")
                })
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect::<std::collections::BTreeMap<_, _>>()
                .into()
        })
        .unwrap_or_default();
    let mut replayed = BasicProperties::default().with_headers(kept);
    if let Some(id) = dead.message_id() {
        replayed = replayed.with_message_id(id.clone());
    }
    if let Some(content_type) = dead.content_type() {
        replayed = replayed.with_content_type(content_type.clone());
    }
    if let Some(encoding) = dead.content_encoding() {
        replayed = replayed.with_content_encoding(encoding.clone());
    }
    if let Some(id) = dead.correlation_id() {
        replayed = replayed.with_correlation_id(id.clone());
    }
    if let Some(timestamp) = dead.timestamp() {
        replayed = replayed.with_timestamp(*timestamp);
    }
    if let Some(kind) = dead.kind() {
        replayed = replayed.with_type(kind.clone());
    }
    if let Some(app) = dead.app_id() {
        replayed = replayed.with_app_id(app.clone());
    }
    replayed
}

/// The first `x-death` entry: the broker's record of the first time it dead-lettered this
/// message, with the queue's exchange and routing key at that moment. Escaped, as the rest.
struct Death {
    reason: Option<String>,
    time: Option<String>,
    exchange: Option<String>,
    routing_key: Option<String>,
}

fn first_death(headers: Option<&FieldTable>) -> Option<Death> {
    let Some(AMQPValue::FieldArray(deaths)) = header(headers, "x-death") else {
        return None;
    };
    // The broker keeps the most recent death first; the original routing is in the last.
    let Some(AMQPValue::FieldTable(death)) = deaths.as_slice().last() else {
        return None;
    };
    let field = |name: &str| death.inner().get(&ShortString::from(name));
    let routing_key = match field("routing-keys") {
        Some(AMQPValue::FieldArray(keys)) => keys.as_slice().first().map(value_text),
        other => other.map(value_text),
    };
    let time = match field("time") {
        Some(AMQPValue::Timestamp(secs)) => Some(
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(*secs)).to_string(),
        ),
        other => other.map(value_text),
    };
    Some(Death {
        reason: field("reason").map(value_text),
        time,
        exchange: field("exchange").map(value_text),
        routing_key,
    })
}

fn header<'a>(headers: Option<&'a FieldTable>, name: &str) -> Option<&'a AMQPValue> {
    headers?.inner().get(&ShortString::from(name))
}

fn header_int(headers: Option<&FieldTable>, name: &str) -> Option<i64> {
    match header(headers, name)? {
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

impl fmt::Display for DeadLetterInfo {
    /// One block per dead letter, for `dlq list` and `dlq replay --dry-run`: nine lines,
    /// whatever the letter holds (its texts are escaped).
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
    fn every_text_from_the_message_is_escaped() {
        let mut headers = FieldTable::default();
        headers.insert("x-error-reason".into(), long("a\n#2 message id: x\x1b[2J"));
        headers.insert(
            "x-error-class".into(),
            AMQPValue::LongString(LongString::from(b"c\xff".to_vec())),
        );
        headers.insert("x-attempts".into(), long("3"));
        let mut death = FieldTable::default();
        death.insert("reason".into(), long("rejected\u{202e}"));
        headers.insert(
            "x-death".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(death)])),
        );
        let mut with_kind = headers.clone();
        with_kind.insert("x-error-kind".into(), AMQPValue::LongLongInt(7));
        let properties = BasicProperties::default()
            .with_message_id("id\u{fffd}\r".into())
            .with_headers(with_kind);
        let info = describe(1, &properties, b"\xff");
        assert_eq!(info.reason.as_deref(), Some("a\\n#2 message id: x\\x1b[2J"));
        assert_eq!(info.class.as_deref(), Some("c\\xff"));
        assert_eq!(info.kind, "7");
        assert_eq!(info.attempts, None);
        assert_eq!(info.message_id.as_deref(), Some("id\\u{fffd}\\r"));
        assert_eq!(info.preview, "\\xff");
        assert_eq!(info.to_string().lines().count(), 9);

        let broker = describe(1, &BasicProperties::default().with_headers(headers), b"");
        assert_eq!(broker.kind, "dead-lettered");
        assert_eq!(
            broker.reason.as_deref(),
            Some("dead-lettered by the broker: rejected\\u{202e}")
        );
    }

    #[test]
    fn replay_drops_the_failure_and_routing_headers_and_the_delivery_properties() {
        let mut headers = FieldTable::default();
        for name in [
            "x-error-kind",
            "x-error-reason",
            "x-death",
            "x-first-death-reason",
            "x-delivery-count",
            "x-first-failed-at",
            "traceparent",
            "CC",
            "BCC",
            "cc",
        ] {
            headers.insert(name.into(), long("v"));
        }
        headers.insert("x-attempts".into(), AMQPValue::LongLongInt(2));
        let dead = BasicProperties::default()
            .with_message_id("m-1".into())
            .with_content_type("application/json".into())
            .with_expiration("1".into())
            .with_user_id("upstream".into())
            .with_reply_to("somewhere".into())
            .with_priority(9)
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
        assert_eq!(
            replayed.content_type().as_ref().unwrap().as_str(),
            "application/json"
        );
        assert_eq!(replayed.expiration(), &None);
        assert_eq!(replayed.user_id(), &None);
        assert_eq!(replayed.reply_to(), &None);
        assert_eq!(replayed.priority(), &None);
    }
}
