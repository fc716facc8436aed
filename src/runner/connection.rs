//! The process's one broker connection, shared by the stages it runs.
//!
//! Each stage session opens its own two channels on it; a channel error ends only that
//! stage's session. When the connection itself is gone (a broker restart), the first
//! stage to notice opens a new one and the others reuse it.

use std::sync::Arc;

use lapin::Connection;
use tokio::sync::Mutex;

use crate::amqp::{self, AmqpConfig, Node};

pub struct SharedConnection {
    config: AmqpConfig,
    /// The live connection and the node it reached, if any; replaced when found closed.
    current: Mutex<Option<(Arc<Connection>, Node)>>,
}

impl SharedConnection {
    pub fn new(config: AmqpConfig) -> SharedConnection {
        SharedConnection {
            config,
            current: Mutex::new(None),
        }
    }

    /// The broker's settings (they print with the password masked).
    pub fn config(&self) -> &AmqpConfig {
        &self.config
    }

    /// The live connection and its node, opening a new one (to whichever node of the
    /// cluster answers first, in a random order) if there is none.
    pub(super) async fn get(&self) -> Result<(Arc<Connection>, Node), lapin::Error> {
        let mut current = self.current.lock().await;
        if let Some((connection, node)) = current.as_ref().filter(|(c, _)| c.status().connected()) {
            return Ok((connection.clone(), node.clone()));
        }
        let (connection, node) = amqp::connect(&self.config, "pipeline").await?;
        let connection = Arc::new(connection);
        tracing::info!(%node, "connected to the broker");
        *current = Some((connection.clone(), node.clone()));
        Ok((connection, node))
    }

    /// Closes the connection (after every stage drained).
    pub async fn close(&self) {
        if let Some((connection, _)) = self.current.lock().await.take() {
            let _ = connection.close(200, "heat-pipeline stopping".into()).await;
        }
    }
}
