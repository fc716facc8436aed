//! AMQP header values, written and read back.

use std::borrow::Cow;

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

pub fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.as_bytes().to_vec()))
}

/// A header value as text, for the few headers the pipeline reads back: borrowed from the
/// table when it is a string in UTF-8 (a traceparent, on every delivery).
pub fn header_str<'a>(headers: Option<&'a FieldTable>, name: &str) -> Option<Cow<'a, str>> {
    match headers?.inner().get(&ShortString::from(name))? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes())),
        AMQPValue::ShortString(s) => Some(Cow::Borrowed(s.as_str())),
        other => Some(Cow::Owned(format!("{other:?}"))),
    }
}
