//! Stage 2: the heat_stacks record becomes the job_state record.

use super::{guarded_write, wrap_removes_job_state, Stage, StageName};
use crate::error::Rejection;
use crate::keys::{Family, Keyspace};
use crate::lifecycle::classify;
use crate::message::Job;
use crate::plan::{Decision, Lineage, Snapshot};
use crate::records::{
    encode, handoff_bytes, Handoff, JobStateRecord, NormalizeRequest, Order, OrderKey, WrapRequest,
};

/// Job-state normalization.
#[derive(Debug, Clone)]
pub struct Normalize {
    pub keys: Keyspace,
}

impl Stage for Normalize {
    type Input = NormalizeRequest;

    fn name(&self) -> StageName {
        StageName::Normalize
    }

    fn decode(&self, body: &[u8]) -> Result<NormalizeRequest, Rejection> {
        NormalizeRequest::decode(body)
    }

    fn job<'a>(&self, input: &'a NormalizeRequest) -> &'a Job {
        &input.job
    }

    fn reads(&self, input: &NormalizeRequest) -> Vec<String> {
        let keys = self.keys.for_job(&input.job);
        vec![keys.key(Family::JobState), keys.key(Family::JobStateOrder)]
    }

    /// The job_state record: [`Normalize::decide`] only asks whether it is this result's.
    fn compared_only(&self, key: &str) -> bool {
        self.keys.is_of(Family::JobState, key)
    }

    /// This job's job_state, if wrap will remove it (`wrap_removes_job_state`): by the
    /// next version, it is most likely gone.
    fn removed_later(&self, input: &NormalizeRequest) -> Vec<String> {
        let Ok(progress) = classify(input.job.action, &input.heat_stack.stack_status) else {
            return Vec::new();
        };
        let order = Order {
            version: input.job.version,
            phase: progress.phase(),
        };
        if !wrap_removes_job_state(order) {
            return Vec::new();
        }
        vec![self.keys.for_job(&input.job).key(Family::JobState)]
    }

    fn decide(
        &self,
        input: &NormalizeRequest,
        snapshot: &Snapshot,
        lineage: &Lineage,
    ) -> Result<Decision, Rejection> {
        let stack = &input.heat_stack;
        let progress = classify(input.job.action, &stack.stack_status)?;
        let record = JobStateRecord {
            heat_outputs: stack.output.clone(),
            orchestration_state: stack.stack_status.clone(),
        };
        let bytes = encode(&record)?;
        let order = Order {
            version: input.job.version,
            phase: progress.phase(),
        };
        let handoff = |order_bytes: &[u8]| {
            handoff_bytes(&WrapRequest {
                job: input.job.clone(),
                job_state: record,
                status_reason: stack.status_reason.clone(),
                job_state_order: Some(String::from_utf8_lossy(order_bytes).into_owned()),
            })
        };
        let keys = self.keys.for_job(&input.job);
        Ok(guarded_write(
            snapshot,
            &keys.key(Family::JobState),
            &keys.key(Family::JobStateOrder),
            bytes,
            OrderKey::new(order, self.name().as_str(), lineage),
            handoff,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Outcome;
    use crate::stages::test_support::*;
    use crate::stages::Capture;

    const SEED_KEY: &str = "/esi-worker/job_state/v2.0/ports/23464cbc-d910-430a-93f7-3776ea07f992";

    fn stages() -> (Capture, Normalize) {
        let keys = Keyspace::new("", "v2.0");
        (Capture { keys: keys.clone() }, Normalize { keys })
    }

    #[test]
    fn anticipates_that_wrap_removes_a_final_jobs_job_state() {
        let (capture, normalize) = stages();
        let mut store = vec![];
        let handoff = step(&capture, &mut store, SEED_INPUT).handoff.unwrap();
        let input = normalize.decode(&handoff).unwrap();
        assert_eq!(normalize.removed_later(&input), vec![SEED_KEY.to_string()]);
        // A running job keeps its job_state until its final result.
        let running = String::from_utf8(handoff)
            .unwrap()
            .replace("CREATE_COMPLETE", "CREATE_IN_PROGRESS");
        let input = normalize.decode(running.as_bytes()).unwrap();
        assert_eq!(normalize.removed_later(&input), Vec::<String>::new());
    }

    #[test]
    fn writes_the_seed_record_byte_for_byte() {
        let (capture, normalize) = stages();
        let mut store = vec![];
        let handoff = step(&capture, &mut store, SEED_INPUT).handoff.unwrap();
        let decision = step(&normalize, &mut store, &handoff);
        assert_eq!(decision.outcome, Outcome::Written);
        assert_eq!(get(&store, SEED_KEY).unwrap(), SEED_JOB_STATE);
    }

    #[test]
    fn a_repeat_after_wrap_removed_the_record_does_not_bring_it_back() {
        let (capture, normalize) = stages();
        let mut store = vec![];
        let handoff = step(&capture, &mut store, SEED_INPUT).handoff.unwrap();
        step(&normalize, &mut store, &handoff);
        store.retain(|(k, _)| k != SEED_KEY); // what wrap does
        let again = step(&normalize, &mut store, &handoff);
        assert_eq!(again.outcome, Outcome::Stale);
        assert_eq!(again.handoff, None);
        assert_eq!(get(&store, SEED_KEY), None);
    }

    #[test]
    fn the_hand_off_carries_the_order_key_as_stored_so_wrap_can_guess_it() {
        let (capture, normalize) = stages();
        let mut store = vec![];
        let to_normalize = step(&capture, &mut store, SEED_INPUT).handoff.unwrap();
        let first = step(&normalize, &mut store, &to_normalize).handoff.unwrap();
        let order_key =
            "/heat-pipeline/order/job_state/v2.0/ports/23464cbc-d910-430a-93f7-3776ea07f992";
        let stored = get(&store, order_key).unwrap().to_vec();
        assert_eq!(
            stored,
            br#"{"version":1,"phase":"final","stage":"normalize","written_at":"2026-11-27T08:00:00.000Z","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}"#
        );
        let request = WrapRequest::decode(&first).unwrap();
        assert_eq!(
            request.job_state_order.as_deref().map(str::as_bytes),
            Some(&stored[..])
        );

        // A redelivery at another time, with another trace: a duplicate, whose hand-off
        // carries the bytes found, not its own lineage.
        let input = normalize.decode(&to_normalize).unwrap();
        let view: Vec<(&str, &[u8])> = store
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        let later = Lineage {
            written_at: "2026-11-27T09:00:00.000Z".into(),
            trace_id: "other".into(),
        };
        let again = normalize
            .decide(&input, &snapshot(&normalize.reads(&input), &view), &later)
            .unwrap();
        assert_eq!(again.outcome, Outcome::Duplicate);
        let request = WrapRequest::decode(&again.handoff.unwrap()).unwrap();
        assert_eq!(
            request.job_state_order.as_deref().map(str::as_bytes),
            Some(&stored[..])
        );
    }
}
