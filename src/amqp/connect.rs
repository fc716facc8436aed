//! Connections (to one node of a cluster, whichever answers) and channels.

use std::time::Duration;

use lapin::options::ConfirmSelectOptions;
use lapin::types::LongString;
use lapin::{Channel, Connection, ConnectionProperties};

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
