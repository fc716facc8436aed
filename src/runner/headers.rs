//! The pipeline's header vocabulary: what a delivery may bring (its limits), and the only
//! headers a hand-off or a dead letter carries.
//!
//! Nothing inbound is copied wholesale: a header upstream set (a 40 KiB value, a forged
//! `x-first-failed-at` or delivery count) would otherwise travel on to every later stage and
//! dead letter, and one that breaks a frame would break it again at each hop. So each header
//! written here is named, and its value is either the pipeline's own or an inbound value
//! checked for its type.

use std::time::SystemTime;

use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldArray, FieldTable, ShortString};

use crate::amqp::long_string;
use crate::error::{RejectKind, Rejection};
use crate::stages::StageName;
use crate::telemetry::trace::TraceParent;

/// The most header bytes a delivery may carry, all names and values together. The pipeline
/// itself writes under 2 KiB; the broker takes up to its frame size (128 KiB) from upstream,
/// and a table that large, copied and parsed at every hop, is a cost with no use.
pub(super) const MAX_HEADER_BYTES: usize = 16 * 1024;

/// The trace context; a hand-off carries this hop's child of it.
const TRACEPARENT: &str = "traceparent";
/// When upstream published the result (ms since the epoch), for the end-to-end latency.
pub(super) const PUBLISHED_AT: &str = "x-published-at-ms";
/// Set by the broker on a redelivery from a quorum queue.
const DELIVERY_COUNT: &str = "x-delivery-count";
/// When the message first failed; kept across a `dlq replay`.
const FIRST_FAILED_AT: &str = "x-first-failed-at";

/// The largest body a stage parses: twice etcd's request limit. Every record holds the
/// outputs it carries, so a body over this cannot become a record etcd takes (unknown
/// fields, which the stage ignores, get the other half). Checked before the body is parsed.
pub(super) fn max_body_bytes(max_request_bytes: usize) -> usize {
    max_request_bytes.saturating_mul(2)
}

/// Refuses a delivery no stage should parse: a body over `max_body` bytes, headers over
/// [`MAX_HEADER_BYTES`], or a header name, a short string or a property (`message_id`,
/// `content_type`, ...) that is not UTF-8 (which the AMQP client reads as U+FFFD:
/// `vendor/README.md`).
pub(super) fn admit(delivery: &Delivery, max_body: usize) -> Result<(), Rejection> {
    if delivery.data.len() > max_body {
        // Its record could never be written: the same class as etcd's own refusal.
        return Err(Rejection::new(
            RejectKind::RecordTooLarge,
            format!(
            "the body is {} bytes, over the {max_body}-byte limit (twice ETCD_MAX_REQUEST_BYTES)",
            delivery.data.len()
        ),
        ));
    }
    let p = &delivery.properties;
    let properties = [
        p.content_type(),
        p.content_encoding(),
        p.correlation_id(),
        p.reply_to(),
        p.expiration(),
        p.message_id(),
        p.kind(),
        p.user_id(),
        p.app_id(),
        p.cluster_id(),
    ];
    if let Some(name) = properties
        .iter()
        .zip(PROPERTY_NAMES)
        .find_map(|(value, name)| {
            value
                .as_ref()
                .filter(|v| has_replacement(v.as_str()))
                .map(|_| name)
        })
    {
        return Err(Rejection::invalid(format!(
            "the {name} property is not valid UTF-8"
        )));
    }
    let Some(headers) = delivery.properties.headers() else {
        return Ok(());
    };
    let size = table_size(headers);
    if size > MAX_HEADER_BYTES {
        return Err(Rejection::invalid(format!(
            "the headers are {size} bytes, over the {MAX_HEADER_BYTES}-byte limit"
        )));
    }
    if table_has_replacement(headers) {
        return Err(Rejection::invalid(
            "a header name or value is not valid UTF-8",
        ));
    }
    Ok(())
}

/// The headers of a hand-off: this hop's trace context and, if upstream gave a well-formed
/// one, the publish time. Nothing else travels on.
pub(super) fn handoff(delivery: &Delivery, trace: &TraceParent) -> FieldTable {
    let mut headers = FieldTable::default();
    headers.insert(TRACEPARENT.into(), long_string(trace.child().header()));
    if let Some(published) = published_at(delivery) {
        headers.insert(PUBLISHED_AT.into(), AMQPValue::LongLongInt(published));
    }
    headers
}

/// What a dead letter says about its failure.
pub(super) struct Failure<'a> {
    pub(super) stage: StageName,
    pub(super) rejection: &'a Rejection,
    /// Whether the delivery came through the pipeline's own exchange, whose headers the
    /// pipeline wrote (a replay keeps `x-first-failed-at`); upstream's are not trusted.
    pub(super) trusted: bool,
}

/// The headers of a dead letter: the failure (`x-stage`, `x-error-*`, the attempts and
/// times, where the message came from) and the trace, and nothing else.
pub(super) fn dead_letter(
    delivery: &Delivery,
    trace: &TraceParent,
    failure: Failure<'_>,
) -> FieldTable {
    let now = long_string(&humantime::format_rfc3339_millis(SystemTime::now()).to_string());
    let inbound = delivery.properties.headers().as_ref();
    let first_failed = inbound
        .filter(|_| failure.trusted)
        .and_then(|h| h.inner().get(&ShortString::from(FIRST_FAILED_AT)))
        .filter(|v| matches!(v, AMQPValue::LongString(s) if s.as_bytes().len() <= 64))
        .cloned()
        .unwrap_or_else(|| now.clone());
    let rejection = failure.rejection;
    let mut headers = handoff(delivery, trace);
    for (name, value) in [
        ("x-stage", long_string(failure.stage.as_str())),
        ("x-error-kind", long_string("permanent")),
        ("x-error-class", long_string(rejection.kind.as_str())),
        ("x-error-reason", long_string(&rejection.to_string())),
        (FIRST_FAILED_AT, first_failed),
        ("x-last-failed-at", now),
        ("x-attempts", AMQPValue::LongLongInt(attempts(delivery))),
        (
            "x-original-exchange",
            long_string(delivery.exchange.as_str()),
        ),
        (
            "x-original-routing-key",
            long_string(delivery.routing_key.as_str()),
        ),
    ] {
        headers.insert(name.into(), value);
    }
    headers
}

/// How many times this message was delivered, this time included. The broker's
/// `x-delivery-count` counts only on a redelivery; on a first delivery the header, if any,
/// is the publisher's and says nothing.
fn attempts(delivery: &Delivery) -> i64 {
    if !delivery.redelivered {
        return 1;
    }
    let count = delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get(&ShortString::from(DELIVERY_COUNT)));
    match count {
        Some(AMQPValue::LongLongInt(n)) => n.saturating_add(1),
        Some(AMQPValue::LongInt(n)) => i64::from(*n) + 1,
        _ => 2,
    }
}

/// The `x-published-at-ms` header, if it is a plausible time (a non-negative integer).
pub(super) fn published_at(delivery: &Delivery) -> Option<i64> {
    let headers = delivery.properties.headers().as_ref()?;
    match headers.inner().get(&ShortString::from(PUBLISHED_AT))? {
        AMQPValue::LongLongInt(ms) if *ms >= 0 => Some(*ms),
        AMQPValue::LongUInt(ms) => Some(i64::from(*ms)),
        AMQPValue::LongInt(ms) if *ms >= 0 => Some(i64::from(*ms)),
        _ => None,
    }
}

/// The short-string properties [`admit`] checks, in its order.
const PROPERTY_NAMES: [&str; 10] = [
    "content_type",
    "content_encoding",
    "correlation_id",
    "reply_to",
    "expiration",
    "message_id",
    "type",
    "user_id",
    "app_id",
    "cluster_id",
];

/// A header table's size on the wire, near enough: names, type tags and values.
fn table_size(table: &FieldTable) -> usize {
    table
        .inner()
        .iter()
        .map(|(name, value)| 1 + name.as_str().len() + 1 + value_size(value))
        .sum()
}

fn value_size(value: &AMQPValue) -> usize {
    match value {
        AMQPValue::LongString(s) => 4 + s.as_bytes().len(),
        AMQPValue::ShortString(s) => 1 + s.as_str().len(),
        AMQPValue::ByteArray(b) => 4 + b.as_slice().len(),
        AMQPValue::FieldTable(t) => 4 + table_size(t),
        AMQPValue::FieldArray(a) => 4 + array_size(a),
        _ => 8,
    }
}

fn array_size(array: &FieldArray) -> usize {
    array.as_slice().iter().map(|v| 1 + value_size(v)).sum()
}

/// Whether a name or string in the table holds U+FFFD, the mark of bytes that were not
/// UTF-8 (a sender that means U+FFFD has no business putting it in a header either).
fn table_has_replacement(table: &FieldTable) -> bool {
    table
        .inner()
        .iter()
        .any(|(name, value)| has_replacement(name.as_str()) || value_has_replacement(value))
}

fn value_has_replacement(value: &AMQPValue) -> bool {
    match value {
        AMQPValue::ShortString(s) => has_replacement(s.as_str()),
        AMQPValue::FieldTable(t) => table_has_replacement(t),
        AMQPValue::FieldArray(a) => a.as_slice().iter().any(value_has_replacement),
        _ => false,
    }
}

fn has_replacement(text: &str) -> bool {
    text.contains(char::REPLACEMENT_CHARACTER)
}
