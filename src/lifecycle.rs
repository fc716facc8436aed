//! How a job's action and Heat's stack status map to a result (design section 3's table).

use serde::{Deserialize, Serialize};

use crate::error::{RejectKind, Rejection};
use crate::message::Action;

/// Where a job stands, as far as the stack status tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// `*_IN_PROGRESS`: recorded by capture and normalize, but no `/state` yet.
    InProgress,
    Completed,
    /// `*_FAILED`, or a rollback that finished after a failed create or update.
    Failed,
}

/// The second half of a record's order key: an in-progress result for a version is
/// replaced by the final one, never the other way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    InProgress,
    Final,
}

impl Progress {
    pub fn phase(self) -> Phase {
        match self {
            Progress::InProgress => Phase::InProgress,
            Progress::Completed | Progress::Failed => Phase::Final,
        }
    }

    /// `worker_state` of `/state`, `None` while the job is still running.
    pub fn worker_state(self, action: Action) -> Option<String> {
        let suffix = match self {
            Progress::InProgress => return None,
            Progress::Completed => "COMPLETED",
            Progress::Failed => "FAILED",
        };
        Some(format!("{}_{suffix}", action.worker_prefix()))
    }
}

/// The status Heat reports once a stack is gone; capture records it for a delete without a
/// stack, so the later stages see an ordinary completed delete.
pub const DELETE_COMPLETE: &str = "DELETE_COMPLETE";

/// Classifies `status` as a result of `action`, refusing a status the action cannot produce
/// (a create answered with `UPDATE_COMPLETE` is a bug upstream, not a state to record).
pub fn classify(action: Action, status: &str) -> Result<Progress, Rejection> {
    let (stack_action, state) = ["_IN_PROGRESS", "_COMPLETE", "_FAILED"]
        .iter()
        .find_map(|suffix| status.strip_suffix(suffix).map(|a| (a, *suffix)))
        .ok_or_else(|| {
            Rejection::new(
                RejectKind::StatusMismatch,
                format!("unknown Heat stack status {status:?}"),
            )
        })?;
    let expected: &[&str] = match action {
        Action::Create => &["CREATE", "ROLLBACK"],
        Action::Modify => &["UPDATE", "ROLLBACK"],
        Action::Delete => &["DELETE"],
    };
    if !expected.contains(&stack_action) {
        return Err(Rejection::new(
            RejectKind::StatusMismatch,
            format!(
                "Heat status {status} cannot result from a {} job",
                action.worker_prefix().to_lowercase()
            ),
        ));
    }
    Ok(match (stack_action, state) {
        (_, "_IN_PROGRESS") => Progress::InProgress,
        (_, "_FAILED") | ("ROLLBACK", _) => Progress::Failed,
        _ => Progress::Completed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_the_design_table() {
        use Action::*;
        use Progress::*;
        let cases = [
            (Create, "CREATE_COMPLETE", Completed),
            (Modify, "UPDATE_COMPLETE", Completed),
            (Delete, "DELETE_COMPLETE", Completed),
            (Create, "CREATE_FAILED", Failed),
            (Modify, "UPDATE_FAILED", Failed),
            (Delete, "DELETE_FAILED", Failed),
            (Create, "ROLLBACK_COMPLETE", Failed),
            (Modify, "ROLLBACK_COMPLETE", Failed),
            (Create, "ROLLBACK_FAILED", Failed),
            (Create, "CREATE_IN_PROGRESS", InProgress),
            (Modify, "ROLLBACK_IN_PROGRESS", InProgress),
            (Delete, "DELETE_IN_PROGRESS", InProgress),
        ];
        for (action, status, expected) in cases {
            assert_eq!(
                classify(action, status).unwrap(),
                expected,
                "{action:?} {status}"
            );
        }
        assert_eq!(Completed.worker_state(Modify).unwrap(), "MODIFY_COMPLETED");
        assert_eq!(Failed.worker_state(Delete).unwrap(), "DELETE_FAILED");
        assert_eq!(InProgress.worker_state(Create), None);
    }

    #[test]
    fn refuses_a_status_the_action_cannot_produce() {
        for (action, status) in [
            (Action::Create, "UPDATE_COMPLETE"),
            (Action::Delete, "CREATE_COMPLETE"),
            (Action::Delete, "ROLLBACK_COMPLETE"),
            (Action::Create, "COMPLETE"),
            (Action::Create, "create_complete"),
        ] {
            let err = classify(action, status).unwrap_err();
            assert_eq!(err.kind, RejectKind::StatusMismatch, "{action:?} {status}");
        }
    }
}
