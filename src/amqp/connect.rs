//! Connections (to one node of a cluster, whichever answers) and channels.

use std::time::Duration;

use lapin::options::ConfirmSelectOptions;
use lapin::types::LongString;
use lapin::uri::AMQPScheme;
use lapin::{Channel, Connection, ConnectionProperties, ErrorKind};

use super::config::{AmqpConfig, Node};
use super::refusal::Refusal;

/// How long one node may take to accept a connection (TCP, TLS, AMQP handshake). A paused
/// or unreachable node sends no RST: without this bound it would hold the process until
/// the kernel gives up, minutes later, while the other nodes could serve.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(4);

/// Opens a connection to the first node that accepts one, trying the nodes in a random
/// order (so processes spread over a cluster, and a dead node is one short attempt, not
/// every process's first choice). The connection is named after `role`, so the broker's
/// management view says who it is. Returns the node it reached; on failure the last
/// node's error, after a log line for each. A node that could not be reached, or that
/// does not speak AMQP, fails with an I/O error holding a [`ConnectFailure`]; the broker's
/// refusals stay protocol errors (for [`Refusal::of`]).
pub async fn connect(broker: &AmqpConfig, role: &str) -> Result<(Connection, Node), lapin::Error> {
    let mut nodes = broker.nodes().map_err(std::io::Error::other)?;
    fastrand::shuffle(&mut nodes);
    let mut last = None;
    for node in nodes {
        match tokio::time::timeout(NODE_TIMEOUT, connect_node(broker, &node, role)).await {
            Ok(Ok(connection)) => return Ok((connection, node)),
            Ok(Err(error)) => {
                let error = explain(broker, &node, error);
                tracing::debug!(%node, %error, "broker node refused the connection");
                last = Some(error);
            }
            Err(_) => {
                tracing::debug!(%node, timeout = ?NODE_TIMEOUT, "broker node did not answer");
                last = Some(timed_out(&node).await);
            }
        }
    }
    Err(last.expect("nodes() returns at least one node"))
}

/// Why a node could not be reached, in one line naming the node (its password masked) and
/// the setting to check, instead of lapin's own words (a parser's debug output for a port
/// that is not AMQP, "IO error: ..." twice over through the layers above).
///
/// It travels inside the I/O error that [`connect`] returns (`io::Error::get_ref`), so that
/// every caller's error type carries it as it is, and lapin's error kinds stay what the
/// runner decides on; [`ConnectFailure::find`] takes it out of an error chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectFailure {
    /// Nothing answered: connection refused, no route, no answer at all.
    #[error("RabbitMQ at {node} is not answering ({reason}); check AMQP_URL")]
    NotAnswering { node: String, reason: String },
    /// Something answered, but not as a broker: another service's port.
    #[error("{node} did not answer as an AMQP broker ({reason}); check AMQP_URL")]
    NotAmqp { node: String, reason: String },
    /// The node accepted the connection and dropped it during the handshake.
    #[error(
        "RabbitMQ at {node} closed the connection during the handshake ({reason}); check \
         AMQP_URL and the broker's log"
    )]
    Dropped { node: String, reason: String },
    /// TLS failed in a way the setting named can fix.
    #[error("{node}: {reason} ({hint})")]
    Tls {
        node: String,
        reason: String,
        hint: &'static str,
    },
}

/// The one line that says why the broker could not be reached or used, if `error` or one of
/// its sources says it: a [`ConnectFailure`], or one of the broker's [`Refusal`]s (a wrong
/// login or vhost) with `url` as it may be shown (masked). For the operator commands, whose
/// errors come through several layers that each repeat their source.
pub fn describe_failure(error: &(dyn std::error::Error + 'static), url: &str) -> Option<String> {
    if let Some(failure) = ConnectFailure::find(error) {
        return Some(failure.to_string());
    }
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(refusal) = error.downcast_ref::<Refusal>() {
            return Some(refusal.to_string());
        }
        let refused = error.downcast_ref::<lapin::Error>();
        if let Some(refusal) = refused.and_then(|e| Refusal::of(e, url)) {
            return Some(refusal.to_string());
        }
        cause = error.source();
    }
    None
}

impl ConnectFailure {
    /// The failure that `error` or one of its sources carries, if any.
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a ConnectFailure> {
        let mut cause = Some(error);
        while let Some(error) = cause {
            if let Some(failure) = error.downcast_ref::<ConnectFailure>() {
                return Some(failure);
            }
            let io = match error.downcast_ref::<lapin::Error>().map(lapin::Error::kind) {
                Some(ErrorKind::IOError(io)) => Some(&**io),
                _ => error.downcast_ref::<std::io::Error>(),
            };
            if let Some(failure) = io
                .and_then(std::io::Error::get_ref)
                .and_then(|inner| inner.downcast_ref::<ConnectFailure>())
            {
                return Some(failure);
            }
            cause = error.source();
        }
        None
    }

    fn into_error(self, kind: std::io::ErrorKind) -> lapin::Error {
        std::io::Error::new(kind, self).into()
    }
}

/// A node's failure to connect, said as a [`ConnectFailure`] when it is one; the broker's
/// own refusals (login, vhost) and anything unforeseen are returned as they are.
fn explain(broker: &AmqpConfig, node: &Node, error: lapin::Error) -> lapin::Error {
    let error = explain_tls(broker, node, error);
    let plain = node.uri.scheme == AMQPScheme::AMQP;
    let node = node.to_string();
    match error.kind() {
        ErrorKind::IOError(io) if io.get_ref().is_some_and(|e| e.is::<ConnectFailure>()) => error,
        ErrorKind::IOError(io) if dropped(io.kind()) => ConnectFailure::Dropped {
            node,
            reason: io_reason(io),
        }
        .into_error(io.kind()),
        ErrorKind::IOError(io) if io.kind() == std::io::ErrorKind::InvalidData => {
            ConnectFailure::NotAmqp {
                node,
                reason: io_reason(io),
            }
            .into_error(io.kind())
        }
        // Over TLS another error may be the handshake's, which `explain_tls` did not know.
        ErrorKind::IOError(io) if plain || unanswered(io.kind()) => ConnectFailure::NotAnswering {
            node,
            reason: io_reason(io),
        }
        .into_error(io.kind()),
        // What came back was not an AMQP frame: an HTTP answer, a banner, TLS on a plain port.
        ErrorKind::ParsingError(_) => ConnectFailure::NotAmqp {
            node,
            reason: "its answer is not an AMQP frame".into(),
        }
        .into_error(std::io::ErrorKind::InvalidData),
        ErrorKind::InvalidProtocolVersion(version) => ConnectFailure::NotAmqp {
            node,
            reason: format!("it speaks AMQP {version}, not 0-9-1"),
        }
        .into_error(std::io::ErrorKind::InvalidData),
        _ => error,
    }
}

/// A node that took longer than [`NODE_TIMEOUT`]: not answering, unless its port accepts a
/// TCP connection at once, which means something listens there and kept silent: another
/// service (etcd's port, say), or a broker paused or overloaded, whose kernel still takes
/// connections; the reason names both.
async fn timed_out(node: &Node) -> lapin::Error {
    let authority = &node.uri.authority;
    let address = (authority.host.as_str(), authority.port);
    let probe = tokio::net::TcpStream::connect(address);
    let listening = matches!(
        tokio::time::timeout(Duration::from_secs(1), probe).await,
        Ok(Ok(_))
    );
    let node = node.to_string();
    let failure = if listening {
        ConnectFailure::NotAmqp {
            node,
            reason: format!(
                "no AMQP handshake within {NODE_TIMEOUT:?}: another service, or a paused broker"
            ),
        }
    } else {
        ConnectFailure::NotAnswering {
            node,
            reason: format!("no answer within {NODE_TIMEOUT:?}"),
        }
    };
    failure.into_error(std::io::ErrorKind::TimedOut)
}

/// How a connection that nothing took shows.
fn unanswered(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        kind,
        ConnectionRefused | TimedOut | HostUnreachable | NetworkUnreachable | AddrNotAvailable
    )
}

/// An I/O error in a few words: "connection refused" rather than "Connection refused (os
/// error 111)".
fn io_reason(io: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match io.kind() {
        ConnectionRefused => "connection refused".into(),
        ConnectionReset => "connection reset".into(),
        UnexpectedEof => "connection closed".into(),
        HostUnreachable => "host unreachable".into(),
        NetworkUnreachable => "network unreachable".into(),
        _ => io.to_string(),
    }
}

/// rustls words a TLS refusal for itself ("invalid peer certificate: UnknownIssuer",
/// "received fatal alert: CertificateRequired"), naming neither the node nor the setting
/// to fix: this adds both. A broker that wants a client certificate may also just reset
/// the connection after the handshake (TLS 1.3), which is worth the hint too when there is
/// none. Any other error is returned as it is; the kind stays an I/O error either way.
fn explain_tls(broker: &AmqpConfig, node: &Node, error: lapin::Error) -> lapin::Error {
    let ErrorKind::IOError(io) = error.kind() else {
        return error;
    };
    if node.uri.scheme != AMQPScheme::AMQPS {
        return error;
    }
    let reason = io.to_string();
    let tls = broker.tls_config();
    let (ca, identity) = (tls.cert_chain.is_some(), tls.identity.is_some());
    let untrusted = reason.contains("invalid peer certificate");
    let alert = |alerts: &[&str]| {
        let alert = reason.split("received fatal alert: ").nth(1);
        alert.is_some_and(|alert| alerts.iter().any(|a| alert.starts_with(a)))
    };
    let hint = if reason.contains("invalid peer certificate: NotValidForName") {
        "the broker's certificate does not name the host of AMQP_URL"
    } else if untrusted && ca {
        "the broker's certificate is not trusted: AMQP_CA_FILE must hold the CA that signed it"
    } else if untrusted {
        "the broker's certificate is not trusted by the system's CA roots: set AMQP_CA_FILE to \
         the CA that signed it"
    } else if !identity && alert(&["CertificateRequired"]) {
        "the broker requires a client certificate: set AMQP_CERT_FILE and AMQP_KEY_FILE"
    } else if !identity && (alert(&["HandshakeFailure"]) || dropped(io.kind())) {
        "if the broker requires a client certificate, set AMQP_CERT_FILE and AMQP_KEY_FILE"
    } else if identity && alert(&["BadCertificate", "UnknownCA", "CertificateUnknown"]) {
        "the broker refused the client certificate of AMQP_CERT_FILE: is it signed by a CA the \
         broker trusts, and still valid?"
    } else {
        return error;
    };
    let explained = ConnectFailure::Tls {
        node: node.to_string(),
        reason,
        hint,
    };
    std::io::Error::new(io.kind(), explained).into()
}

/// How a connection the other end dropped shows.
fn dropped(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        kind,
        ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
    )
}

async fn connect_node(
    broker: &AmqpConfig,
    node: &Node,
    role: &str,
) -> Result<Connection, lapin::Error> {
    let name = format!("heat-pipeline {role} pid {}", std::process::id());
    let properties =
        ConnectionProperties::default().with_connection_name(LongString::from(name.into_bytes()));
    let runtime = lapin::runtime::default_runtime()?;
    Connection::connect_uri_with_config(node.uri.clone(), properties, broker.tls_config(), runtime)
        .await
}

/// Opens a channel with publisher confirms on.
pub async fn confirm_channel(connection: &Connection) -> Result<Channel, lapin::Error> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}
