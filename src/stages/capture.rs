//! Stage 1: a Heat result becomes the heat_stacks record.

use super::{guarded_write, Stage, StageName};
use crate::error::Rejection;
use crate::keys::{Family, Keyspace};
use crate::lifecycle::{classify, Progress, DELETE_COMPLETE};
use crate::message::{Action, HeatResult, Job};
use crate::outputs::PythonOutputs;
use crate::plan::{Decision, Lineage, Snapshot};
use crate::records::{encode, handoff_bytes, HeatStackRecord, NormalizeRequest, Order, OrderKey};

/// Heat result capture.
#[derive(Debug, Clone)]
pub struct Capture {
    pub keys: Keyspace,
}

impl Capture {
    /// The record and its progress, as the original worker recorded them.
    fn record(
        result: &HeatResult,
    ) -> Result<(HeatStackRecord<PythonOutputs>, Progress), Rejection> {
        let job = &result.job;
        let status = result
            .stack
            .as_ref()
            .map_or(DELETE_COMPLETE, |s| s.stack_status.as_str());
        let progress = classify(job.action, status)?;
        let id = format!("{}:{}", job.resource_type, job.resource_id);
        let record = match &result.stack {
            // A finished delete: Heat's stack is gone or going, and the original worker
            // recorded it blank.
            _ if job.action == Action::Delete && progress == Progress::Completed => {
                HeatStackRecord {
                    stack_id: String::new(),
                    tenant_id: job.tenant_id.clone(),
                    stack_status: status.to_string(),
                    output: PythonOutputs::empty(),
                    status_reason: String::new(),
                    id,
                }
            }
            Some(stack) => HeatStackRecord {
                stack_id: stack.stack_name.clone(),
                tenant_id: job.tenant_id.clone(),
                stack_status: stack.stack_status.clone(),
                output: stack.outputs.clone().unwrap_or_else(PythonOutputs::empty),
                status_reason: stack.stack_status_reason.clone().unwrap_or_default(),
                id,
            },
            None => unreachable!(
                "decode admits a missing stack only for a delete, which classifies as completed"
            ),
        };
        Ok((record, progress))
    }
}

impl Stage for Capture {
    type Input = HeatResult;

    fn name(&self) -> StageName {
        StageName::Capture
    }

    fn decode(&self, body: &[u8]) -> Result<HeatResult, Rejection> {
        HeatResult::decode(body)
    }

    fn job<'a>(&self, input: &'a HeatResult) -> &'a Job {
        &input.job
    }

    fn reads(&self, input: &HeatResult) -> Vec<String> {
        let keys = self.keys.for_job(&input.job);
        vec![
            keys.key(Family::HeatStacks),
            keys.key(Family::HeatStacksOrder),
        ]
    }

    /// The heat_stacks record: [`Capture::decide`] only asks whether it is this result's.
    fn compared_only(&self, key: &str) -> bool {
        self.keys.is_of(Family::HeatStacks, key)
    }

    fn decide(
        &self,
        input: &HeatResult,
        snapshot: &Snapshot,
        lineage: &Lineage,
    ) -> Result<Decision, Rejection> {
        let (record, progress) = Self::record(input)?;
        let bytes = encode(&record)?;
        let order = Order {
            version: input.job.version,
            phase: progress.phase(),
        };
        let handoff = handoff_bytes(&NormalizeRequest {
            job: input.job.clone(),
            heat_stack: record,
        });
        let keys = self.keys.for_job(&input.job);
        Ok(guarded_write(
            snapshot,
            &keys.key(Family::HeatStacks),
            &keys.key(Family::HeatStacksOrder),
            bytes,
            OrderKey::new(order, self.name().as_str(), lineage),
            |_| handoff,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Outcome;
    use crate::stages::test_support::*;

    fn capture() -> Capture {
        Capture {
            keys: Keyspace::new("", "v2.0"),
        }
    }

    const SEED_KEY: &str =
        "/esi-worker/heat_stacks/v2.0/ports/23464cbc-d910-430a-93f7-3776ea07f992";

    #[test]
    fn writes_the_seed_record_byte_for_byte() {
        let mut store = vec![];
        let decision = step(&capture(), &mut store, SEED_INPUT);
        assert_eq!(decision.outcome, Outcome::Written);
        assert_eq!(get(&store, SEED_KEY).unwrap(), SEED_HEAT_STACKS);
        assert!(decision.handoff.is_some());
    }

    #[test]
    fn a_duplicate_changes_nothing_but_hands_off_again() {
        let mut store = vec![];
        step(&capture(), &mut store, SEED_INPUT);
        let before = store.clone();
        let again = step(&capture(), &mut store, SEED_INPUT);
        assert_eq!(again.outcome, Outcome::Duplicate);
        assert!(again.writes.is_empty());
        assert!(again.handoff.is_some());
        assert_eq!(store, before);
    }

    #[test]
    fn an_older_version_is_stale() {
        let newer = String::from_utf8(SEED_INPUT.to_vec())
            .unwrap()
            .replace("\"version\": 1", "\"version\": 2");
        let mut store = vec![];
        step(&capture(), &mut store, newer.as_bytes());
        let old = step(&capture(), &mut store, SEED_INPUT);
        assert_eq!(old.outcome, Outcome::Stale);
        assert_eq!(old.handoff, None);
    }

    #[test]
    fn final_result_replaces_in_progress_of_the_same_version_not_the_reverse() {
        let seed = String::from_utf8(SEED_INPUT.to_vec()).unwrap();
        let running = seed.replace("\"CREATE_COMPLETE\"", "\"CREATE_IN_PROGRESS\"");
        let mut store = vec![];
        assert_eq!(
            step(&capture(), &mut store, running.as_bytes()).outcome,
            Outcome::Written
        );
        assert_eq!(
            step(&capture(), &mut store, SEED_INPUT).outcome,
            Outcome::Written
        );
        assert_eq!(
            step(&capture(), &mut store, running.as_bytes()).outcome,
            Outcome::Stale
        );
        assert_eq!(get(&store, SEED_KEY).unwrap(), SEED_HEAT_STACKS);
    }

    #[test]
    fn a_delete_without_stack_is_recorded_blank() {
        let body = br#"{"job": {"action": "delete", "resource_type": "port", "resource_path": "ports", "resource_id": "r1", "version": 3, "tenant_id": "t"}, "stack": null}"#;
        let mut store = vec![];
        step(&capture(), &mut store, body);
        assert_eq!(
            get(&store, "/esi-worker/heat_stacks/v2.0/ports/r1").unwrap(),
            br#"{"stack_id": "", "tenant_id": "t", "stack_status": "DELETE_COMPLETE", "output": [], "status_reason": "", "id": "port:r1"}"#
        );
    }

    #[test]
    fn a_status_that_contradicts_the_action_is_rejected() {
        let body = String::from_utf8(SEED_INPUT.to_vec())
            .unwrap()
            .replace("\"CREATE_COMPLETE\"", "\"DELETE_COMPLETE\"");
        let input = capture().decode(body.as_bytes()).unwrap();
        let keys = capture().reads(&input);
        let err = capture()
            .decide(&input, &snapshot(&keys, &[]), &lineage())
            .unwrap_err();
        assert_eq!(err.kind, crate::error::RejectKind::StatusMismatch);
    }
}
