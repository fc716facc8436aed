//! Why a message can never succeed: a [`Rejection`] is dead-lettered at once. Its opposite,
//! a transient failure of etcd that is retried and never dead-lettered, is the store's
//! `Transient` (`store/error.rs`); pure stage logic only ever rejects.

use std::fmt;

/// Why a message was rejected. Low-cardinality on purpose: it becomes a metric label and
/// the `x-error-kind`-style header of a dead letter, while [`Rejection::detail`] carries the
/// specifics for a human.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectKind {
    /// The body is not UTF-8 JSON, or is nested too deeply to parse.
    MalformedJson,
    /// A field is missing, has the wrong type or an unusable value.
    InvalidMessage,
    /// The Heat status cannot be the result of the job's action.
    StatusMismatch,
    /// The record would exceed etcd's request size limit.
    RecordTooLarge,
    /// The record cannot be written as JSON (a number Python would print as `Infinity`).
    Unencodable,
}

impl RejectKind {
    pub const ALL: [RejectKind; 5] = [
        RejectKind::MalformedJson,
        RejectKind::InvalidMessage,
        RejectKind::StatusMismatch,
        RejectKind::RecordTooLarge,
        RejectKind::Unencodable,
    ];

    /// The stable snake_case name used in headers, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectKind::MalformedJson => "malformed_json",
            RejectKind::InvalidMessage => "invalid_message",
            RejectKind::StatusMismatch => "status_mismatch",
            RejectKind::RecordTooLarge => "record_too_large",
            RejectKind::Unencodable => "unencodable",
        }
    }
}

impl fmt::Display for RejectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A permanent failure: retrying the same message can never succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {detail}")]
pub struct Rejection {
    pub kind: RejectKind,
    pub detail: String,
}

/// The longest rejection, kind and detail together, in bytes: it becomes a dead letter's
/// `x-error-reason` header and a log line, and a detail that quotes its input (a decoder's
/// error, say) must not carry a whole hostile message into either. A longer detail is cut
/// at a character boundary and ends with `...`.
pub const MAX_REASON_BYTES: usize = 1024;

impl Rejection {
    pub fn new(kind: RejectKind, detail: impl Into<String>) -> Self {
        let mut detail = detail.into();
        let room = MAX_REASON_BYTES - kind.as_str().len() - ": ".len();
        if detail.len() > room {
            let mut end = room - "...".len();
            while !detail.is_char_boundary(end) {
                end -= 1;
            }
            detail.truncate(end);
            detail.push_str("...");
        }
        Rejection { kind, detail }
    }

    pub fn invalid(detail: impl Into<String>) -> Self {
        Rejection::new(RejectKind::InvalidMessage, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_capped_whole_at_a_character_boundary() {
        let long = "é".repeat(4_000);
        let rejection = Rejection::invalid(long);
        let reason = rejection.to_string();
        assert!(reason.len() <= MAX_REASON_BYTES, "{}", reason.len());
        assert!(reason.len() > MAX_REASON_BYTES - 4, "{}", reason.len());
        assert!(reason.ends_with("..."));
        assert_eq!(
            Rejection::invalid("short").to_string(),
            "invalid_message: short"
        );
    }
}
