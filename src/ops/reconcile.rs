//! `heat-pipeline reconcile`: re-drives a resource left half done through the stages.
//!
//! Nothing here writes to etcd. A resource with dead letters gets them replayed (the same
//! replay as `dlq replay`, for that resource's letters only); otherwise the hand-off the
//! next stage expects is rebuilt from what etcd holds and published:
//! - job_state and its order key (with heat_stacks for the job's type, tenant and status
//!   reason) give wrap's `WrapRequest`;
//! - heat_stacks and its order key give normalize's `NormalizeRequest`.
//!
//! The stage then decides as always, guarded on what it reads, so a re-drive can never
//! overwrite a newer result: at worst it is a duplicate or stale message.

use crate::amqp::{self, AmqpConfig, PublishError, Topology};
use crate::keys::Keyspace;
use crate::message::{Action, Job};
use crate::ops::audit::{Parsed, Resource};
use crate::ops::dlq::{self, DlqError};
use crate::ops::publish::input_properties;
use crate::records::{NormalizeRequest, WrapRequest};
use crate::stages::StageName;
use crate::store::{Store, Transient};
use crate::telemetry::trace::TraceParent;

/// Dead letters looked at per stage for one resource.
const DEAD_LETTER_LIMIT: usize = 10_000;

/// What reconcile did (or, in a dry run, would do) for one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remedy {
    /// Its dead letters were sent back to their stages.
    Replayed { letters: Vec<(StageName, String)> },
    /// A hand-off rebuilt from the records was published to `stage`.
    Published { stage: StageName, version: u64 },
    /// Nothing is half done.
    Nothing,
    /// It cannot be re-driven; the reason says why.
    Cannot,
}

/// One resource's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciled {
    pub path: String,
    pub id: String,
    pub action: Remedy,
    pub detail: String,
}

impl Reconciled {
    pub fn failed(&self) -> bool {
        self.action == Remedy::Cannot
    }
}

/// What stopped reconcile talking to a service.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("etcd: {0}")]
    Store(#[from] Transient),
    #[error("dead letters: {0}")]
    DeadLetters(#[from] DlqError),
    #[error("publish: {0}")]
    Publish(#[from] PublishError),
}

/// A hand-off rebuilt from stored records: to which stage, for which version, the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redrive {
    pub stage: StageName,
    pub version: u64,
    pub body: Vec<u8>,
}

/// A parsed record, `None` if absent, or the reason (naming `what`) if it is unreadable:
/// nothing can be re-driven from it.
fn readable<'a, T>(
    parsed: &'a Option<Result<T, String>>,
    what: &str,
) -> Result<Option<&'a T>, String> {
    match parsed {
        Some(Err(e)) => Err(format!(
            "{what} is unreadable ({e}): fix or delete it by hand, then publish the job's result \
             again"
        )),
        Some(Ok(value)) => Ok(Some(value)),
        None => Ok(None),
    }
}

/// Pure: the hand-off that takes `resource` one stage further, `Ok(None)` when nothing is
/// half done, `Err` (the reason) when the records cannot say.
pub fn redrive_from_records(resource: &Resource) -> Result<Option<Redrive>, String> {
    let parsed = Parsed::of(resource);
    let heat_stack = readable(&parsed.heat_stacks, "heat_stacks")?;
    let hs_order = readable(&parsed.heat_stacks_order, "the heat_stacks order key")?;
    let js_order = readable(&parsed.job_state_order, "the job_state order key")?;
    let state_version = readable(&parsed.state, "/state")?.map(|s| s.version);
    let (path, id) = (resource.path.as_str(), resource.id.as_str());
    let job = |version: u64, status: &str| Job {
        action: action_of(status, state_version.is_some()),
        resource_type: heat_stack
            .and_then(|h| h.id.split_once(':').map(|(t, _)| t.to_string()))
            .unwrap_or_else(|| path.strip_suffix('s').unwrap_or(path).to_string()),
        resource_path: Some(path.to_string()),
        resource_id: id.to_string(),
        version,
        tenant_id: heat_stack.map_or(String::new(), |h| h.tenant_id.clone()),
    };

    // job_state waiting for wrap.
    match (readable(&parsed.job_state, "job_state")?, js_order) {
        (Some(_), None) => return Err(
            "job_state has no order key, so its version is unknown: publish the job's result again"
                .into(),
        ),
        (Some(job_state), Some(order)) if state_version.is_none_or(|v| v < order.version) => {
            // The status reason is heat_stacks' when it holds the same result.
            let same = hs_order.is_some_and(|h| h.order() == order.order());
            let request = WrapRequest {
                job: job(order.version, &job_state.orchestration_state),
                job_state: job_state.clone(),
                status_reason: match (same, heat_stack) {
                    (true, Some(h)) => h.status_reason.clone(),
                    _ => String::new(),
                },
                job_state_order: resource
                    .job_state_order
                    .as_ref()
                    .map(|s| String::from_utf8_lossy(&s.value).into_owned()),
            };
            return Ok(Some(Redrive {
                stage: StageName::Wrap,
                version: order.version,
                body: serde_json::to_vec(&request).expect("a hand-off serializes"),
            }));
        }
        _ => {}
    }

    // heat_stacks that normalize never took.
    if let (Some(heat_stack), Some(order)) = (heat_stack, hs_order) {
        let taken = js_order.is_some_and(|j| j.order() >= order.order());
        if !taken && state_version.is_none_or(|v| v < order.version) {
            let request = NormalizeRequest {
                job: job(order.version, &heat_stack.stack_status),
                heat_stack: heat_stack.clone(),
            };
            return Ok(Some(Redrive {
                stage: StageName::Normalize,
                version: order.version,
                body: serde_json::to_vec(&request).expect("a hand-off serializes"),
            }));
        }
    }

    if let (None, Some(order), Some(version)) = (&parsed.job_state, js_order, state_version) {
        if version < order.version {
            return Err(format!(
                "/state holds version {version} but version {} was finished and its job_state consumed: \
                 nothing stored can re-drive it; publish the job's result again (a newer version)",
                order.version
            ));
        }
    }
    if resource.heat_stacks.is_none() && resource.job_state.is_none() && resource.state.is_none() {
        return Err(
            "no record of this resource (only order keys, or nothing): nothing to re-drive from"
                .into(),
        );
    }
    Ok(None)
}

/// The job action a Heat status comes from. A rollback follows a failed create, or a
/// failed modify of a resource that already has a `/state`.
fn action_of(status: &str, has_state: bool) -> Action {
    if status.starts_with("UPDATE_") {
        Action::Modify
    } else if status.starts_with("DELETE_") {
        Action::Delete
    } else if status.starts_with("ROLLBACK_") && has_state {
        Action::Modify
    } else {
        Action::Create
    }
}

/// Re-drives one resource: its dead letters if it has any, else its records.
pub async fn reconcile(
    store: &Store,
    url: &AmqpConfig,
    topology: &Topology,
    keys: &Keyspace,
    path: &str,
    id: &str,
    dry_run: bool,
) -> Result<Reconciled, ReconcileError> {
    let done = |action, detail| Reconciled {
        path: path.to_string(),
        id: id.to_string(),
        action,
        detail,
    };
    let ours = |body: &[u8]| dlq::resource_of(body).is_some_and(|(p, i)| p == path && i == id);
    let mut letters = Vec::new();
    for stage in StageName::ALL {
        let replayed =
            match dlq::replay_where(url, topology, stage, DEAD_LETTER_LIMIT, dry_run, ours).await {
                Ok(replayed) => replayed,
                Err(DlqError::NoQueue { .. }) => Vec::new(),
                Err(e) => return Err(e.into()),
            };
        for r in replayed {
            let why = format!(
                "{} {}",
                r.info.class.as_deref().unwrap_or(&r.info.kind),
                r.info.reason.as_deref().unwrap_or("")
            );
            letters.push((stage, why.trim().to_string()));
        }
    }
    if !letters.is_empty() {
        let detail = letters
            .iter()
            .map(|(stage, why)| format!("{stage}: {why}"))
            .collect::<Vec<_>>()
            .join("; ");
        return Ok(done(Remedy::Replayed { letters }, detail));
    }

    let resource = Resource::read(store, keys, path, id).await?;
    match redrive_from_records(&resource) {
        Err(reason) => Ok(done(Remedy::Cannot, reason)),
        Ok(None) => Ok(done(Remedy::Nothing, "nothing half done".into())),
        Ok(Some(redrive)) => {
            if !dry_run {
                publish(url, topology, &redrive).await?;
            }
            Ok(done(
                Remedy::Published {
                    stage: redrive.stage,
                    version: redrive.version,
                },
                format!(
                    "hand-off for version {} rebuilt from the stored records",
                    redrive.version
                ),
            ))
        }
    }
}

async fn publish(
    url: &AmqpConfig,
    topology: &Topology,
    redrive: &Redrive,
) -> Result<(), PublishError> {
    let (connection, _node) = amqp::connect(url, "reconcile").await?;
    let channel = amqp::confirm_channel(&connection).await?;
    topology.declare(&channel).await?;
    let mut properties = input_properties();
    let mut headers = properties.headers().clone().unwrap_or_default();
    headers.insert(
        "traceparent".into(),
        amqp::long_string(&TraceParent::start().header()),
    );
    headers.insert("x-reconciled".into(), amqp::long_string("true"));
    properties = properties.with_headers(headers);
    let (exchange, routing_key) = topology.route(redrive.stage);
    let sent =
        amqp::publish_confirmed(&channel, &exchange, routing_key, &redrive.body, properties).await;
    let _ = connection.close(200, "done".into()).await;
    sent
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Stored;
    use crate::records::Handoff;

    fn stored(value: &[u8]) -> Option<Stored> {
        Some(Stored {
            value: value.to_vec(),
            mod_revision: 1,
        })
    }

    const HS: &[u8] = br#"{"stack_id": "s", "tenant_id": "t", "stack_status": "CREATE_FAILED", "output": [], "status_reason": "quota", "id": "port:r1"}"#;
    const JS: &[u8] = br#"{"heat_outputs": [], "orchestration_state": "CREATE_FAILED"}"#;
    const V1: &[u8] = br#"{"version":1,"phase":"final","stage":"normalize","written_at":"2026-11-27T08:00:00.000Z","trace_id":"x"}"#;

    fn resource() -> Resource {
        Resource {
            path: "ports".into(),
            id: "r1".into(),
            ..Resource::default()
        }
    }

    #[test]
    fn a_stuck_job_state_is_handed_to_wrap_with_what_wrap_needs() {
        let stuck = Resource {
            heat_stacks: stored(HS),
            heat_stacks_order: stored(br#"{"version":1,"phase":"final"}"#),
            job_state: stored(JS),
            job_state_order: stored(V1),
            ..resource()
        };
        let redrive = redrive_from_records(&stuck).unwrap().unwrap();
        assert_eq!((redrive.stage, redrive.version), (StageName::Wrap, 1));
        let request = WrapRequest::decode(&redrive.body).unwrap();
        assert_eq!(request.job.resource_type, "port");
        assert_eq!(request.job.tenant_id, "t");
        assert_eq!(request.job.action, Action::Create);
        assert_eq!(request.status_reason, "quota");
        assert_eq!(
            request.job_state_order.as_deref().map(str::as_bytes),
            Some(V1)
        );
    }

    #[test]
    fn heat_stacks_never_normalized_is_handed_to_normalize_and_a_healthy_one_needs_nothing() {
        let behind = Resource {
            heat_stacks: stored(HS),
            heat_stacks_order: stored(br#"{"version":2,"phase":"final"}"#),
            job_state_order: stored(V1),
            state: stored(br#"{"state": {"worker_state": "CREATE_COMPLETED", "heat_outputs": "[]", "orchestration_state": "CREATE_COMPLETE"}, "version": 1, "error": ""}"#),
            ..resource()
        };
        let redrive = redrive_from_records(&behind).unwrap().unwrap();
        assert_eq!((redrive.stage, redrive.version), (StageName::Normalize, 2));
        let request = NormalizeRequest::decode(&redrive.body).unwrap();
        assert_eq!(request.job.version, 2);
        let healthy = Resource {
            heat_stacks_order: stored(br#"{"version":1,"phase":"final"}"#),
            ..behind
        };
        assert_eq!(redrive_from_records(&healthy), Ok(None));
    }

    #[test]
    fn unreadable_or_orderless_records_cannot_be_re_driven() {
        let corrupt = Resource {
            job_state: stored(b"{garbage"),
            job_state_order: stored(V1),
            ..resource()
        };
        assert!(redrive_from_records(&corrupt)
            .unwrap_err()
            .contains("unreadable"));
        let orderless = Resource {
            job_state: stored(JS),
            ..resource()
        };
        assert!(redrive_from_records(&orderless)
            .unwrap_err()
            .contains("no order key"));
    }
}
