//! Failures to reach etcd, said for an operator: [`ConnectError`] (why
//! [`Store::connect`](super::Store::connect) failed) and [`describe_failure`] (a failed
//! request), each in one line that names the endpoints and the setting to check, without
//! the gRPC client's dump of codes, metadata and transport internals.

use tonic::Code;

use super::error::Transient;
use super::StoreConfig;

/// Why [`Store::connect`](super::Store::connect) failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    /// etcd answered and refused the user name or password: retrying cannot help.
    #[error("{0}")]
    Refused(String),
    /// The settings cannot work: a malformed endpoint, a certificate etcd or we reject.
    #[error("{0}")]
    Invalid(String),
    /// etcd did not answer (down, unreachable, timed out, or something else at its
    /// address); it may later.
    #[error("{0}")]
    Unavailable(String),
}

impl ConnectError {
    /// Whether a retry with the same settings may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, ConnectError::Unavailable(_))
    }
}

/// How a request that did not reach etcd failed.
pub(super) enum Unreached {
    /// Nothing answered, or not in time: connection refused, timed out.
    Silent(String),
    /// Something answered, but not as etcd's gRPC does: another service's port.
    Stranger(String),
    /// The connection was closed (or broke) before any answer.
    Closed,
}

impl Unreached {
    /// Whether `error` says the request did not reach etcd, and how; `None` for an answer
    /// from etcd (a refusal, a conflict, a compacted revision).
    pub(super) fn of(error: &etcd_client::Error) -> Option<Unreached> {
        let status = match error {
            etcd_client::Error::GRpcStatus(status) => status,
            etcd_client::Error::TransportError(transport) => {
                return Some(Unreached::Silent(reason(
                    "transport error",
                    std::error::Error::source(transport),
                )))
            }
            etcd_client::Error::IoError(io) => {
                return Some(Unreached::Silent(reason("", Some(io))))
            }
            _ => return None,
        };
        let message = status.message();
        let source = std::error::Error::source(status);
        // tonic's words for an HTTP answer without gRPC in it (a 404 from a web server).
        if message.starts_with("grpc-status header missing") || status.code() == Code::Unimplemented
        {
            return Some(Unreached::Stranger(message.to_string()));
        }
        match status.code() {
            Code::Cancelled if message == "Timeout expired" => Some(Unreached::Silent(
                "no answer within ETCD_TIMEOUT".to_string(),
            )),
            // A port that is not etcd's closing on the client's first bytes, etcd going
            // down, or, over TLS, etcd refusing a client without a certificate.
            Code::Cancelled => Some(Unreached::Closed),
            // A port that does not speak HTTP/2 (AMQP's, say) breaks the client's framing.
            Code::Internal if message.starts_with("h2 protocol error") => Some(
                Unreached::Stranger("it does not speak HTTP/2 gRPC".to_string()),
            ),
            Code::Unavailable | Code::DeadlineExceeded => {
                Some(Unreached::Silent(reason(message, source)))
            }
            // A status with a source is the client's own, from its transport (a broken pipe,
            // a reset): etcd's answers carry none.
            _ if source.is_some() => Some(Unreached::Closed),
            _ => None,
        }
    }

    /// The line for `endpoints` (and, for the hint, `config`).
    pub(super) fn line(&self, endpoints: &str, config: Option<&StoreConfig>) -> String {
        // etcd with --client-cert-auth drops the connection of a client without a
        // certificate, and how the drop surfaces varies (closed, reset, broken pipe): over
        // TLS without a certificate every such failure is worth the hint, though it may be
        // a plain outage.
        let hint = match config {
            Some(config)
                if config.uses_https()
                    && config.tls.as_ref().is_none_or(|t| t.identity.is_none()) =>
            {
                " (or, if etcd requires client certificates, set ETCD_CERT_FILE and ETCD_KEY_FILE)"
            }
            _ => "",
        };
        match self {
            Unreached::Silent(reason) => format!(
                "etcd at {endpoints} is not answering ({reason}); check ETCD_ENDPOINTS{hint}"
            ),
            Unreached::Stranger(reason) => {
                format!("{endpoints} did not answer as etcd ({reason}); check ETCD_ENDPOINTS{hint}")
            }
            Unreached::Closed => format!(
                "{endpoints} closed the connection without answering (is etcd there, and \
                 up?); check ETCD_ENDPOINTS{hint}"
            ),
        }
    }
}

/// A few words: the deepest I/O error says it best ("connection refused"), else `message`.
fn reason(message: &str, source: Option<&(dyn std::error::Error + 'static)>) -> String {
    let mut io = None;
    let mut cause = source;
    while let Some(error) = cause {
        if let Some(found) = error.downcast_ref::<std::io::Error>() {
            io = Some(found);
        }
        cause = error.source();
    }
    match io {
        Some(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused".to_string()
        }
        Some(io) => io.to_string(),
        None => error_chain(message.to_string(), source),
    }
}

/// A failed request in one line for an operator: etcd not answering (or something else
/// answering in its place), with the setting to check; otherwise etcd's answer in its own
/// words. `endpoints` as the command was given them.
pub fn describe_failure(endpoints: &str, error: &Transient) -> String {
    let Transient::Request { op, source } = error else {
        return error.to_string();
    };
    if let Some(unreached) = Unreached::of(source) {
        return unreached.line(endpoints, None);
    }
    let reason = match &**source {
        etcd_client::Error::GRpcStatus(status) => error_chain(
            status.message().to_string(),
            std::error::Error::source(status),
        ),
        other => other.to_string(),
    };
    format!("etcd at {endpoints} answered a {op} with an error: {reason}")
}

/// Sorts a failure to connect (with credentials: to authenticate) into what a retry can
/// and cannot change, with the whole cause chain (a TLS failure is a few levels down).
pub(super) fn classify_connect_error(
    endpoints: &str,
    config: &StoreConfig,
    error: &etcd_client::Error,
) -> ConnectError {
    let reason = match error {
        // Status's Display adds details and metadata; the message and causes are enough.
        etcd_client::Error::GRpcStatus(status) => error_chain(
            status.message().to_string(),
            std::error::Error::source(status),
        ),
        other => error_chain(other.to_string(), std::error::Error::source(other)),
    };
    let user = config.user.as_ref().map_or("", |u| u.name.as_str());
    match error {
        etcd_client::Error::GRpcStatus(status) => match status.code() {
            // etcd: "authentication failed, invalid user ID or password" (InvalidArgument),
            // "authentication is not enabled" (FailedPrecondition).
            Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::Unauthenticated
            | Code::PermissionDenied => ConnectError::Refused(format!(
                "etcd at {endpoints} refused the credentials of user {user}: {reason}"
            )),
            _ if reason.to_ascii_lowercase().contains("certificate") => {
                ConnectError::Invalid(format!(
                    "TLS with etcd at {endpoints} failed (check ETCD_CA_FILE, ETCD_CERT_FILE, \
                     ETCD_KEY_FILE): {reason}"
                ))
            }
            _ => {
                let unreached = Unreached::of(error).unwrap_or(Unreached::Silent(reason));
                ConnectError::Unavailable(unreached.line(endpoints, Some(config)))
            }
        },
        // Refused before anything was sent: a malformed endpoint or TLS material.
        _ => ConnectError::Invalid(format!("cannot connect to etcd at {endpoints}: {reason}")),
    }
}

/// An error's message and its sources', `: `-separated, each said once (tonic repeats
/// itself).
fn error_chain(message: String, mut source: Option<&(dyn std::error::Error + 'static)>) -> String {
    let mut parts = vec![message];
    while let Some(cause) = source {
        let said = cause.to_string();
        if !parts.iter().any(|part| part.contains(&said)) {
            parts.retain(|part| !said.contains(part.as_str()));
            parts.push(said);
        }
        source = cause.source();
    }
    parts.join(": ")
}
