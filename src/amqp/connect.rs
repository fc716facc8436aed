//! Connections (to one node of a cluster, whichever answers) and channels.

use std::time::Duration;

use lapin::options::ConfirmSelectOptions;
use lapin::types::LongString;
use lapin::uri::AMQPScheme;
use lapin::{Channel, Connection, ConnectionProperties, ErrorKind};

use super::config::{AmqpConfig, Node};

/// How long one node may take to accept a connection (TCP, TLS, AMQP handshake). A paused
/// or unreachable node sends no RST: without this bound it would hold the process until
/// the kernel gives up, minutes later, while the other nodes could serve.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(4);

/// Opens a connection to the first node that accepts one, trying the nodes in a random
/// order (so processes spread over a cluster, and a dead node is one short attempt, not
/// every process's first choice). The connection is named after `role`, so the broker's
/// management view says who it is. Returns the node it reached; on failure the last
/// node's error, after a log line for each.
pub async fn connect(broker: &AmqpConfig, role: &str) -> Result<(Connection, Node), lapin::Error> {
    let mut nodes = broker.nodes().map_err(std::io::Error::other)?;
    fastrand::shuffle(&mut nodes);
    let mut last = None;
    for node in nodes {
        match tokio::time::timeout(NODE_TIMEOUT, connect_node(broker, &node, role)).await {
            Ok(Ok(connection)) => return Ok((connection, node)),
            Ok(Err(error)) => {
                let error = explain_tls(broker, &node, error);
                tracing::debug!(%node, %error, "broker node refused the connection");
                last = Some(error);
            }
            Err(_) => {
                tracing::debug!(%node, timeout = ?NODE_TIMEOUT, "broker node did not answer");
                let timed_out = std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("{node} did not answer within {NODE_TIMEOUT:?}"),
                );
                last = Some(timed_out.into());
            }
        }
    }
    Err(last.expect("nodes() returns at least one node"))
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
    let explained = format!("{node}: {reason} ({hint})");
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
