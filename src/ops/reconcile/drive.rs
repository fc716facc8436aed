//! Re-driving resources: their dead letters replayed in one pass (`letters.rs`), the others
//! read at one revision and re-driven from their records, on one broker connection; and
//! which resources `--all-stuck` picks.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use lapin::{Channel, Connection};

use crate::amqp::{self, AmqpConfig, PublishError, Topology};
use crate::keys::Keyspace;
use crate::ops::publish::input_properties;
use crate::ops::state::{self, ResourceState};
use crate::store::Store;
use crate::telemetry::trace::TraceParent;

use super::letters::{self, ResourceId};
use super::{redrive_from_records, ReconcileError, Reconciled, Redrive, Remedy};

/// The resources `reconcile --all-stuck` re-drives: those the scan finds stuck or behind
/// and at least `older_than` old at `now` ([`ResourceState::half_done`]), in key order.
/// `on_scanned` is told of each resource scanned (the command's progress).
pub async fn stuck(
    store: &Store,
    keys: &Keyspace,
    now: SystemTime,
    older_than: Duration,
    mut on_scanned: impl FnMut(),
) -> Result<Vec<ResourceId>, ReconcileError> {
    let mut picked = Vec::new();
    state::scan(store, keys, state::DEFAULT_PAGE_SIZE, |resource| {
        on_scanned();
        if ResourceState::of(&resource).half_done(now, older_than) {
            picked.push((resource.path, resource.id));
        }
    })
    .await
    .map_err(ReconcileError::Scan)?;
    Ok(picked)
}

/// Re-drives `resources` (`(path, id)`), telling `on_done` each one's result, in order.
///
/// First the dead letters of them all are replayed, in one pass over each stage's
/// dead-letter queue: a resource with letters is done by that. Each other resource is then
/// read at one revision ([`state::read()`]) and re-driven from its records
/// ([`redrive_from_records`]). A resource named twice is re-driven from its records the
/// second time. `dry_run` replays and publishes nothing.
pub async fn reconcile(
    store: &Store,
    url: &AmqpConfig,
    topology: &Topology,
    keys: &Keyspace,
    resources: &[ResourceId],
    dry_run: bool,
    mut on_done: impl FnMut(Reconciled),
) -> Result<(), ReconcileError> {
    let wanted: HashSet<ResourceId> = resources.iter().cloned().collect();
    let mut replayed = letters::replay(url, topology, &wanted, dry_run).await?;
    let mut publisher = Publisher::new(url, topology);
    for resource in resources {
        let (path, id) = resource;
        let done = |action, detail| Reconciled {
            path: path.clone(),
            id: id.clone(),
            action,
            detail,
        };
        if let Some(letters) = replayed.remove(resource) {
            let detail = letters
                .iter()
                .map(|(stage, why)| format!("{stage}: {why}"))
                .collect::<Vec<_>>()
                .join("; ");
            on_done(done(Remedy::Replayed { letters }, detail));
            continue;
        }
        let records =
            state::read(store, keys, path, id)
                .await
                .map_err(|source| ReconcileError::Read {
                    path: path.clone(),
                    id: id.clone(),
                    source,
                })?;
        let result = match redrive_from_records(&records) {
            Err(reason) => {
                let detail = reason.to_string();
                done(Remedy::Cannot(reason), detail)
            }
            Ok(None) => done(Remedy::Nothing, "nothing half done".into()),
            Ok(Some(redrive)) => {
                if !dry_run {
                    publisher.publish(&redrive).await.map_err(|source| {
                        ReconcileError::Publish {
                            path: path.clone(),
                            id: id.clone(),
                            source,
                        }
                    })?;
                }
                let detail = format!(
                    "hand-off for version {} rebuilt from the stored records",
                    redrive.version
                );
                let remedy = Remedy::Published {
                    stage: redrive.stage,
                    version: redrive.version,
                };
                done(remedy, detail)
            }
        };
        on_done(result);
    }
    publisher.close().await;
    Ok(())
}

/// The broker connection re-drives are published on: opened for the first, kept for the
/// others.
struct Publisher<'a> {
    url: &'a AmqpConfig,
    topology: &'a Topology,
    open: Option<(Connection, Channel)>,
}

impl<'a> Publisher<'a> {
    fn new(url: &'a AmqpConfig, topology: &'a Topology) -> Publisher<'a> {
        Publisher {
            url,
            topology,
            open: None,
        }
    }

    /// Publishes a re-drive through the pipeline's hand-off exchange, marked
    /// `x-reconciled`, with a new trace, and waits for the broker's confirm.
    async fn publish(&mut self, redrive: &Redrive) -> Result<(), PublishError> {
        if self.open.is_none() {
            let (connection, _node) = amqp::connect(self.url, "reconcile").await?;
            let channel = amqp::confirm_channel(&connection).await?;
            self.topology.declare(&channel).await?;
            self.open = Some((connection, channel));
        }
        let (_, channel) = self.open.as_ref().expect("opened above");
        let mut properties = input_properties();
        let mut headers = properties.headers().clone().unwrap_or_default();
        headers.insert(
            "traceparent".into(),
            amqp::long_string(TraceParent::start().header()),
        );
        headers.insert("x-reconciled".into(), amqp::long_string("true"));
        properties = properties.with_headers(headers);
        let (exchange, routing_key) = self.topology.route(redrive.stage);
        amqp::publish_confirmed(channel, &exchange, routing_key, &redrive.body, properties).await
    }

    async fn close(self) {
        if let Some((connection, _)) = self.open {
            let _ = connection.close(200, "done".into()).await;
        }
    }
}
