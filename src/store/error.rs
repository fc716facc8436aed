//! What can go wrong with etcd, typed so that the runner decides on kinds, never on texts:
//! a [`Transient`] error is retried with backoff, a [`Rejection`] dead-letters the message.

use std::sync::Arc;

use tonic::Code;

use crate::error::{RejectKind, Rejection};

/// A failure of the store that may pass by itself (unavailable, timed out, no leader,
/// connection reset). The message is kept and the step retried.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Transient {
    /// etcd did not answer, or answered with an error no refusal below explains.
    #[error("etcd {op} failed: {source}")]
    Request {
        op: &'static str,
        source: Arc<etcd_client::Error>,
    },
    /// A transaction's responses did not match its requests (never seen; not worth a crash).
    #[error("etcd answered a read of {key} without a range response")]
    OddAnswer { key: String },
    /// The stage's store batcher is gone: the process is stopping.
    #[error("the store batcher stopped")]
    BatcherStopped,
}

impl Transient {
    /// Whether etcd's answer was over the client's message limit (a range of large
    /// records): a smaller page would pass.
    pub fn is_response_too_large(&self) -> bool {
        match self {
            Transient::Request { source, .. } => matches!(
                &**source,
                etcd_client::Error::GRpcStatus(status)
                    if matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted)
                        && status.message().contains("message length too large")
            ),
            _ => false,
        }
    }

    pub(super) fn request(op: &'static str, error: etcd_client::Error) -> Transient {
        Transient::Request {
            op,
            source: Arc::new(error),
        }
    }
}

/// Everything that can stop one message's store step.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StepError {
    #[error("rejected: {0}")]
    Rejected(#[from] Rejection),
    #[error("transient: {0}")]
    Transient(#[from] Transient),
}

/// etcd-client has no typed errors for etcd's refusals: etcd's own Go client recognises
/// them by their gRPC code and description (its `rpctypes`), and so does this, in this one
/// place. Only a refusal that no retry can change is listed; anything else is transient.
/// (`ResourceExhausted` is also "database space exceeded" and "too many requests", which
/// pass once an operator or the load acts, so only the size refusal of that code counts.)
const TOO_LARGE: &[(Code, &str)] = &[
    // etcd: the request exceeds --max-request-bytes.
    (Code::InvalidArgument, "etcdserver: request is too large"),
    // etcd's gRPC server: the message exceeds --max-request-bytes plus its overhead.
    (
        Code::ResourceExhausted,
        "grpc: received message larger than max",
    ),
    // tonic, in this process: the encoded request exceeds the client's limit.
    (Code::OutOfRange, "Error, encoded message length too large"),
];

/// Sorts a failed request (`op`: a read or a write) into a rejection (it is too large for
/// etcd) or a transient error.
pub(super) fn classify_error(op: &'static str, error: etcd_client::Error) -> StepError {
    if let etcd_client::Error::GRpcStatus(status) = &error {
        let refused = TOO_LARGE
            .iter()
            .any(|(code, text)| status.code() == *code && status.message().starts_with(text));
        if refused {
            let detail = format!("etcd refused the {op}: {}", status.message());
            return Rejection::new(RejectKind::RecordTooLarge, detail).into();
        }
    }
    Transient::request(op, error).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: Code, message: &str) -> etcd_client::Error {
        etcd_client::Error::GRpcStatus(tonic::Status::new(code, message))
    }

    #[test]
    fn only_size_refusals_are_permanent() {
        for (code, text) in TOO_LARGE {
            let error = classify_error("read", status(*code, &format!("{text} (1 vs 2)")));
            assert!(
                matches!(&error, StepError::Rejected(r) if r.kind == RejectKind::RecordTooLarge),
                "{error}"
            );
        }
        for (code, text) in [
            (
                Code::ResourceExhausted,
                "etcdserver: mvcc: database space exceeded",
            ),
            (Code::ResourceExhausted, "etcdserver: too many requests"),
            (Code::Unavailable, "etcdserver: leader changed"),
            (
                Code::InvalidArgument,
                "etcdserver: too many operations in txn request",
            ),
            (Code::DeadlineExceeded, "timeout"),
        ] {
            let error = classify_error("write", status(code, text));
            assert!(matches!(error, StepError::Transient(_)), "{text}: {error}");
        }
    }
}
