//! `heat-pipeline status`: how much work waits in each stage, who is consuming it, and how
//! many dead letters piled up, read straight from the broker.
//!
//! The counts come from passive `queue.declare`s over AMQP, not from RabbitMQ's management
//! plugin: the pipeline needs nothing but AMQP, so neither does its status, and the same
//! credentials as the stages suffice. A passive declare creates nothing (a status check must
//! not declare a mistyped `PIPELINE_NAME` into existence) and answers with the queue's ready
//! messages and consumers.
//!
//! A missing queue is a finding, not a failure: the broker answers a passive declare of a
//! missing queue by closing the channel (`404 NOT_FOUND`), so each declare gets a channel of
//! its own and the other queues are still reported.

use std::fmt;

use lapin::Connection;

pub use crate::amqp::QueueCounts;
use crate::amqp::{self, queue_counts, AmqpConfig, Topology};
use crate::stages::StageName;

/// What stopped the status from being read at all (a missing queue does not: see
/// [`StageStatus`]). The broker's error is the [`source`](std::error::Error::source), not
/// repeated in the message, so that a chain printer (anyhow's `{:#}`) shows it once.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// The broker could not be reached or refused the login.
    #[error("cannot connect")]
    Connect(#[source] lapin::Error),
    /// The broker refused a question about an existing queue (a permission, say), or the
    /// connection broke: the answer would be incomplete, so there is none.
    #[error("cannot read queue {queue}")]
    Queue {
        queue: String,
        #[source]
        source: lapin::Error,
    },
}

/// One stage: its queue and its dead-letter queue. `None` means the queue does not exist
/// (no process of this pipeline ever started, or `PIPELINE_NAME` is wrong).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageStatus {
    pub stage: StageName,
    /// `<PIPELINE_NAME>.<stage>`.
    pub queue: String,
    pub counts: Option<QueueCounts>,
    /// `<PIPELINE_NAME>.<stage>.dead`.
    pub dead_queue: String,
    /// Dead letters waiting there (nothing consumes them; `heat-pipeline dlq` handles them).
    pub dead: Option<u32>,
}

impl StageStatus {
    /// The queues of this stage that do not exist.
    pub fn missing(&self) -> impl Iterator<Item = &str> {
        let queue = self.counts.is_none().then_some(self.queue.as_str());
        let dead = self.dead.is_none().then_some(self.dead_queue.as_str());
        queue.into_iter().chain(dead)
    }
}

/// The status of one pipeline, stage by stage in pipeline order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineStatus {
    /// `PIPELINE_NAME`.
    pub pipeline: String,
    /// The broker's URL with its password masked: safe to print.
    pub broker: String,
    pub stages: Vec<StageStatus>,
}

impl PipelineStatus {
    /// Every queue of the pipeline that does not exist, in pipeline order.
    pub fn missing(&self) -> Vec<&str> {
        self.stages.iter().flat_map(StageStatus::missing).collect()
    }

    /// One JSON object for scripts: `{"pipeline", "stages": [{"stage", "ready",
    /// "consumers", "dead"}]}`, with `null` for a count of a missing queue. The broker URL
    /// is left out: a script knows where it pointed the command.
    pub fn to_json(&self) -> serde_json::Value {
        let stages: Vec<serde_json::Value> = self
            .stages
            .iter()
            .map(|s| {
                serde_json::json!({
                    "stage": s.stage.as_str(),
                    "ready": s.counts.map(|c| c.ready),
                    "consumers": s.counts.map(|c| c.consumers),
                    "dead": s.dead,
                })
            })
            .collect();
        serde_json::json!({"pipeline": self.pipeline, "stages": stages})
    }
}

impl fmt::Display for PipelineStatus {
    /// A header line naming the pipeline and the (masked) broker, then a table with one
    /// row per stage, numbers right-aligned under their headings; a count of a missing
    /// queue reads `missing`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = |n: Option<u32>| n.map_or_else(|| "missing".to_string(), |n| n.to_string());
        let rows: Vec<[String; 4]> = self
            .stages
            .iter()
            .map(|s| {
                [
                    s.stage.to_string(),
                    count(s.counts.map(|c| c.ready)),
                    count(s.counts.map(|c| c.consumers)),
                    count(s.dead),
                ]
            })
            .collect();
        let heading = ["stage", "ready", "consumers", "dead"].map(String::from);
        let mut widths = heading.clone().map(|h| h.len());
        for row in &rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.len());
            }
        }
        writeln!(f, "pipeline {} on {}", self.pipeline, self.broker)?;
        for row in std::iter::once(&heading).chain(&rows) {
            let line = format!(
                "{:<w0$}  {:>w1$}  {:>w2$}  {:>w3$}",
                row[0],
                row[1],
                row[2],
                row[3],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3],
            );
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// Reads the status of every stage of `topology` from the broker at `broker`, over one
/// connection that is closed before returning.
pub async fn status(
    broker: &AmqpConfig,
    topology: &Topology,
) -> Result<PipelineStatus, StatusError> {
    let (connection, node) = amqp::connect(broker, "status")
        .await
        .map_err(StatusError::Connect)?;
    let read = read_stages(&connection, topology).await;
    let _ = connection.close(200, "done".into()).await;
    Ok(PipelineStatus {
        pipeline: topology.input_exchange().to_string(),
        broker: node.to_string(),
        stages: read?,
    })
}

async fn read_stages(
    connection: &Connection,
    topology: &Topology,
) -> Result<Vec<StageStatus>, StatusError> {
    let mut stages = Vec::new();
    for stage in StageName::ALL {
        let queue = topology.queue(stage);
        let dead_queue = topology.dead_queue(stage);
        let failed = |queue: &str| {
            let queue = queue.to_string();
            |source| StatusError::Queue { queue, source }
        };
        let counts = queue_counts(connection, &queue)
            .await
            .map_err(failed(&queue))?;
        let dead = queue_counts(connection, &dead_queue)
            .await
            .map_err(failed(&dead_queue))?;
        stages.push(StageStatus {
            stage,
            queue,
            counts,
            dead_queue,
            dead: dead.map(|c| c.ready),
        });
    }
    Ok(stages)
}
