//! `heat-pipeline reconcile`: re-drives resources left half done through the stages.
//!
//! Nothing here writes to etcd. A resource with dead letters gets them replayed (the same
//! replay as `dlq replay`, for that resource's letters only); otherwise the hand-off the
//! next stage expects ([`ResourceState::next`]) is rebuilt from what etcd holds and
//! published:
//! - job_state and its order key (with heat_stacks for the job's type, tenant and status
//!   reason) give wrap's `WrapRequest`;
//! - heat_stacks and its order key give normalize's `NormalizeRequest`.
//!
//! The stage then decides as always, guarded on what it reads, so a re-drive can never
//! overwrite a newer result: at worst it is a duplicate or stale message.
//!
//! However many resources, the dead letters are read once: one pass over each stage's
//! dead-letter queue replays the letters of all of them (`letters.rs`). Then each
//! resource without letters is read at one revision and re-driven from its records, on one
//! broker connection (`drive.rs`, with `--all-stuck`'s selection, [`stuck`]).

mod drive;
mod letters;

pub use drive::{reconcile, stuck};

use crate::amqp::PublishError;
use crate::message::{Action, Job};
use crate::ops::dlq::DlqError;
use crate::ops::state::{CannotRedrive, Next, Resource, ResourceState};
use crate::records::{NormalizeRequest, WrapRequest};
use crate::stages::StageName;
use crate::store::Transient;

/// What reconcile did (or, in a dry run, would do) for one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remedy {
    /// Its dead letters were sent back to their stages.
    Replayed { letters: Vec<(StageName, String)> },
    /// A hand-off rebuilt from the records was published to `stage`.
    Published { stage: StageName, version: u64 },
    /// Nothing is half done.
    Nothing,
    /// It cannot be re-driven, for this reason.
    Cannot(CannotRedrive),
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
        matches!(self.action, Remedy::Cannot(_))
    }
}

/// What stopped reconcile talking to a service.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// `--all-stuck`'s scan.
    #[error("scanning etcd: {0}")]
    Scan(#[source] Transient),
    #[error("{path}/{id}: etcd: {source}")]
    Read {
        path: String,
        id: String,
        source: Transient,
    },
    #[error("dead letters: {0}")]
    DeadLetters(#[from] DlqError),
    #[error("{path}/{id}: publish: {source}")]
    Publish {
        path: String,
        id: String,
        source: PublishError,
    },
}

/// A hand-off rebuilt from stored records: to which stage, for which version, the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redrive {
    pub stage: StageName,
    pub version: u64,
    pub body: Vec<u8>,
}

/// Pure: the hand-off that takes `resource` one stage further ([`ResourceState::next`]),
/// `Ok(None)` when nothing is half done, `Err` when the records cannot say.
pub fn redrive_from_records(resource: &Resource) -> Result<Option<Redrive>, CannotRedrive> {
    let state = ResourceState::of(resource);
    let Some(next) = state.next()? else {
        return Ok(None);
    };
    // `next` found every key readable.
    let heat_stack = state.heat_stacks.as_ref().and_then(|r| r.as_ref().ok());
    let hs_order = state
        .heat_stacks_order
        .as_ref()
        .and_then(|r| r.as_ref().ok());
    let (path, id) = (resource.path.as_str(), resource.id.as_str());
    let job = |version: u64, status: &str| Job {
        action: action_of(status, resource.state.is_some()),
        resource_type: heat_stack
            .and_then(|h| h.id.split_once(':').map(|(t, _)| t.to_string()))
            .unwrap_or_else(|| path.strip_suffix('s').unwrap_or(path).to_string()),
        resource_path: Some(path.to_string()),
        resource_id: id.to_string(),
        version,
        tenant_id: heat_stack.map_or(String::new(), |h| h.tenant_id.clone()),
    };

    match next {
        // job_state waiting for wrap.
        Next::Wrap { job_state, order } => {
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
            Ok(Some(Redrive {
                stage: StageName::Wrap,
                version: order.version,
                body: serde_json::to_vec(&request).expect("a hand-off serializes"),
            }))
        }
        // heat_stacks that normalize never took.
        Next::Normalize { heat_stack, order } => {
            let request = NormalizeRequest {
                job: job(order.version, &heat_stack.stack_status),
                heat_stack: heat_stack.clone(),
            };
            Ok(Some(Redrive {
                stage: StageName::Normalize,
                version: order.version,
                body: serde_json::to_vec(&request).expect("a hand-off serializes"),
            }))
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Family;
    use crate::ops::state::fixtures::*;
    use crate::ops::state::Unreadable;
    use crate::records::Handoff;

    #[test]
    fn a_stuck_job_state_is_handed_to_wrap_with_what_wrap_needs() {
        let stuck = resource().captured(1, OLD).normalized(1, OLD);
        let redrive = redrive_from_records(&stuck).unwrap().unwrap();
        assert_eq!((redrive.stage, redrive.version), (StageName::Wrap, 1));
        let request = WrapRequest::decode(&redrive.body).unwrap();
        assert_eq!(request.job.resource_type, "port");
        assert_eq!(request.job.tenant_id, "t");
        assert_eq!(request.job.action, Action::Create);
        // heat_stacks' reason: it holds the same result (the same order) as job_state.
        assert_eq!(request.status_reason, "ok");
        let order = stuck.job_state_order.map(|o| o.value);
        assert_eq!(request.job_state_order.map(String::into_bytes), order);
    }

    #[test]
    fn heat_stacks_never_normalized_is_handed_to_normalize_and_a_healthy_one_needs_nothing() {
        let behind = resource().normalized(1, OLD).wrapped(1).captured(2, OLD);
        let redrive = redrive_from_records(&behind).unwrap().unwrap();
        assert_eq!((redrive.stage, redrive.version), (StageName::Normalize, 2));
        let request = NormalizeRequest::decode(&redrive.body).unwrap();
        assert_eq!(request.job.version, 2);
        let healthy = behind.captured(1, OLD);
        assert_eq!(redrive_from_records(&healthy), Ok(None));
    }

    #[test]
    fn unreadable_or_orderless_records_cannot_be_re_driven() {
        let corrupt = Resource {
            job_state: stored(b"{garbage"),
            ..resource().normalized(1, OLD)
        };
        assert!(matches!(
            redrive_from_records(&corrupt),
            Err(CannotRedrive::Unreadable(Unreadable {
                family: Family::JobState,
                ..
            }))
        ));
        let orderless = Resource {
            job_state: stored(JS),
            ..resource()
        };
        assert_eq!(
            redrive_from_records(&orderless),
            Err(CannotRedrive::NoOrderKey)
        );
    }
}
