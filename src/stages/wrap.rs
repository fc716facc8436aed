//! Stage 3: the job_state record becomes `/state`, and job_state is removed.

use super::{wrap_removes_job_state, Stage, StageName};
use crate::error::Rejection;
use crate::keys::Keyspace;
use crate::lifecycle::{classify, Phase, Progress};
use crate::message::Job;
use crate::outputs::OutputsString;
use crate::plan::{Decision, Lineage, Outcome, Snapshot, Write};
use crate::records::{
    encode, Handoff, Order, OrderKey, StateRecord, StoredStateVersion, WorkerState, WrapRequest,
};

/// The largest job_state [`Wrap::expected`] guesses rather than reads.
const MAX_GUESSED_BYTES: usize = 64 * 1024;

/// Final state wrapping.
#[derive(Debug, Clone)]
pub struct Wrap {
    pub keys: Keyspace,
}

/// What wrap works on: the hand-off, and the job_state bytes normalize wrote for it, encoded
/// once at decode since both the guess and the check that job_state is still this job's
/// compare them.
#[derive(Debug)]
pub struct WrapInput {
    request: WrapRequest,
    job_state: Vec<u8>,
}

impl Wrap {
    /// The `/state` record, `None` while the job is still running.
    fn record(input: &WrapRequest) -> Result<Option<StateRecord<OutputsString>>, Rejection> {
        let job_state = &input.job_state;
        let status = &job_state.orchestration_state;
        let progress = classify(input.job.action, status)?;
        let Some(worker_state) = progress.worker_state(input.job.action) else {
            return Ok(None);
        };
        let error = match progress {
            // The API server tells failure by a non-empty error; Heat may give no reason.
            Progress::Failed if input.status_reason.is_empty() => {
                format!("{status} (Heat gave no reason)")
            }
            Progress::Failed => input.status_reason.clone(),
            _ => String::new(),
        };
        let heat_outputs = OutputsString::from(&job_state.heat_outputs);
        Ok(Some(StateRecord {
            state: WorkerState {
                worker_state,
                heat_outputs,
                orchestration_state: status.clone(),
            },
            version: input.job.version,
            error,
        }))
    }
}

impl Stage for Wrap {
    type Input = WrapInput;

    fn name(&self) -> StageName {
        StageName::Wrap
    }

    fn decode(&self, body: &[u8]) -> Result<WrapInput, Rejection> {
        let request = WrapRequest::decode(body)?;
        let job_state = encode(&request.job_state)?;
        Ok(WrapInput { request, job_state })
    }

    fn job<'a>(&self, input: &'a WrapInput) -> &'a Job {
        &input.request.job
    }

    fn reads(&self, input: &WrapInput) -> Vec<String> {
        let keys = self.keys.for_job(&input.request.job);
        vec![keys.state, keys.job_state, keys.job_state_order]
    }

    /// For a job's first version, guesses what normalize just wrote: job_state holding
    /// this job's record under this job's order ([`Wrap::inferred`]), and no `/state` yet.
    /// A later version reads when the cache does not know its `/state` (an earlier
    /// version's), and so does a large job_state (nothing inferred).
    fn expected(
        &self,
        input: &WrapInput,
        _reads: &[String],
        inferred: Snapshot,
    ) -> Option<Snapshot> {
        if !input.request.job.is_first_version() {
            return None;
        }
        let mut snapshot = inferred;
        // Nothing inferred (a job_state too large to guard by value): read.
        snapshot.keys().next()?;
        snapshot.assume_absent(self.keys.for_job(&input.request.job).state);
        Some(snapshot)
    }

    /// The job_state and order normalize wrote for this hand-off: its bytes, and its order,
    /// final or still running (then a decision writes nothing and only confirms the guess,
    /// by a read-only transaction). Nothing when job_state is too large to guard by value.
    fn inferred(&self, input: &WrapInput) -> Snapshot {
        let WrapInput { request, job_state } = input;
        let mut snapshot = Snapshot::default();
        let progress = classify(request.job.action, &request.job_state.orchestration_state);
        let (Ok(progress), true) = (progress, job_state.len() <= MAX_GUESSED_BYTES) else {
            return snapshot;
        };
        let keys = self.keys.for_job(&request.job);
        let order = Order {
            version: request.job.version,
            phase: progress.phase(),
        };
        snapshot.assume(keys.job_state, job_state.clone());
        // The bytes normalize wrote, lineage included; an older normalize wrote the bare order.
        let order_bytes = match &request.job_state_order {
            Some(bytes) => bytes.as_bytes().to_vec(),
            None => order.to_bytes(),
        };
        snapshot.assume(keys.job_state_order, order_bytes);
        snapshot
    }

    /// Writes `/state` unless it already holds this version or a newer one, and in the same
    /// transaction deletes job_state if it still holds exactly what this job's normalize
    /// wrote (its order key names this version as final, and its bytes match), so a newer
    /// job's job_state is never deleted.
    fn decide(
        &self,
        input: &WrapInput,
        snapshot: &Snapshot,
        lineage: &Lineage,
    ) -> Result<Decision, Rejection> {
        let WrapInput { request, job_state } = input;
        let Some(record) = Self::record(request)? else {
            return Ok(Decision {
                writes: vec![],
                outcome: Outcome::NotFinal,
                handoff: None,
            });
        };
        let keys = self.keys.for_job(&request.job);
        let mut writes = Vec::with_capacity(2);

        let stored_version = snapshot
            .value(&keys.state)
            .and_then(|bytes| serde_json::from_slice::<StoredStateVersion>(bytes).ok())
            .map(|s| s.version);
        let outcome = match stored_version {
            Some(v) if v > record.version => Outcome::Stale,
            Some(v) if v == record.version => Outcome::Duplicate,
            _ => {
                writes.push(Write::Put {
                    key: keys.state.clone(),
                    value: encode(&record)?,
                });
                let ours = Order {
                    version: record.version,
                    phase: Phase::Final,
                };
                writes.push(Write::Put {
                    key: keys.state_lineage.clone(),
                    value: OrderKey::new(ours, self.name().as_str(), lineage).to_bytes(),
                });
                Outcome::Written
            }
        };

        let stored_order = snapshot
            .value(&keys.job_state_order)
            .and_then(Order::from_bytes);
        let job_state_is_ours = stored_order.is_some_and(|order| {
            order.version == request.job.version && wrap_removes_job_state(order)
        }) && snapshot.value(&keys.job_state) == Some(job_state.as_slice());
        if job_state_is_ours {
            writes.push(Write::Delete {
                key: keys.job_state,
            });
        }

        Ok(Decision {
            writes,
            outcome,
            handoff: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stages::test_support::*;
    use crate::stages::{Capture, Normalize};

    const ID: &str = "23464cbc-d910-430a-93f7-3776ea07f992";

    /// Runs all three stages over `body`, returning wrap's decision.
    fn pipeline(store: &mut Vec<(String, Vec<u8>)>, body: &[u8]) -> Option<Decision> {
        let keys = Keyspace::new("", "v2.0");
        let to_normalize = step(&Capture { keys: keys.clone() }, store, body).handoff?;
        let to_wrap = step(&Normalize { keys: keys.clone() }, store, &to_normalize).handoff?;
        Some(step(&Wrap { keys }, store, &to_wrap))
    }

    fn seed_with(from: &str, to: &str) -> String {
        String::from_utf8(SEED_INPUT.to_vec())
            .unwrap()
            .replace(from, to)
    }

    #[test]
    fn a_large_job_state_is_read_not_guessed() {
        let big = "x".repeat(MAX_GUESSED_BYTES);
        let body = seed_with("\"Virtual network.\"", &format!("\"{big}\""));
        let keys = Keyspace::new("", "v2.0");
        let mut store = vec![];
        let to_normalize = step(&Capture { keys: keys.clone() }, &mut store, body.as_bytes())
            .handoff
            .unwrap();
        let to_wrap = step(&Normalize { keys: keys.clone() }, &mut store, &to_normalize)
            .handoff
            .unwrap();
        let wrap = Wrap { keys };
        let input = wrap.decode(&to_wrap).unwrap();
        let guess = wrap.expected(&input, &wrap.reads(&input), wrap.inferred(&input));
        assert_eq!(guess, None);
    }

    #[test]
    fn the_seed_gives_all_three_records_byte_for_byte() {
        let mut store = vec![];
        let keys = Keyspace::new("", "v2.0");
        let capture = Capture { keys: keys.clone() };
        let normalize = Normalize { keys: keys.clone() };
        let to_normalize = step(&capture, &mut store, SEED_INPUT).handoff.unwrap();
        let to_wrap = step(&normalize, &mut store, &to_normalize).handoff.unwrap();
        assert_eq!(
            get(&store, &keys.job_state("ports", ID)).unwrap(),
            SEED_JOB_STATE
        );
        let decision = step(&Wrap { keys: keys.clone() }, &mut store, &to_wrap);
        assert_eq!(decision.outcome, Outcome::Written);
        assert_eq!(
            get(&store, &keys.heat_stack("ports", ID)).unwrap(),
            SEED_HEAT_STACKS
        );
        assert_eq!(get(&store, &keys.state("ports", ID)).unwrap(), SEED_STATE);
        assert_eq!(
            get(&store, &keys.job_state("ports", ID)),
            None,
            "wrap removes job_state"
        );
    }

    /// During a rolling upgrade a stage meets hand-offs of an older one, which carried the
    /// outputs in serde_json's compact form and no `outputs_form`: they give the same bytes.
    #[test]
    fn hand_offs_of_an_older_stage_give_the_seed_records_byte_for_byte() {
        /// A hand-off as an older stage wrote it: parsed into a tree, encoded compact,
        /// without `outputs_form`.
        fn older(handoff: &[u8]) -> Vec<u8> {
            let mut value: serde_json::Value = serde_json::from_slice(handoff).unwrap();
            value
                .as_object_mut()
                .unwrap()
                .remove("outputs_form")
                .unwrap();
            let compact = serde_json::to_vec(&value).unwrap();
            assert!(!compact.windows(2).any(|w| w == b", "), "compact form");
            compact
        }
        let keys = Keyspace::new("", "v2.0");
        let capture = Capture { keys: keys.clone() };
        let normalize = Normalize { keys: keys.clone() };
        let mut store = vec![];
        let to_normalize = step(&capture, &mut store, SEED_INPUT).handoff.unwrap();
        let to_wrap = step(&normalize, &mut store, &older(&to_normalize))
            .handoff
            .unwrap();
        assert_eq!(
            get(&store, &keys.job_state("ports", ID)).unwrap(),
            SEED_JOB_STATE
        );
        step(&Wrap { keys: keys.clone() }, &mut store, &older(&to_wrap));
        assert_eq!(get(&store, &keys.state("ports", ID)).unwrap(), SEED_STATE);
    }

    #[test]
    fn modify_failed_and_delete_map_to_their_worker_states() {
        let cases = [
            (
                seed_with("\"create\"", "\"modify\"").replace("CREATE_COMPLETE", "UPDATE_COMPLETE"),
                "MODIFY_COMPLETED",
                "",
            ),
            (
                seed_with("CREATE_COMPLETE", "CREATE_FAILED").replace(
                    "Stack CREATE completed successfully",
                    "Resource CREATE failed: quota",
                ),
                "CREATE_FAILED",
                "Resource CREATE failed: quota",
            ),
            (
                seed_with("CREATE_COMPLETE", "ROLLBACK_COMPLETE")
                    .replace("Stack CREATE completed successfully", ""),
                "CREATE_FAILED",
                "ROLLBACK_COMPLETE (Heat gave no reason)",
            ),
        ];
        for (body, worker_state, error) in cases {
            let mut store = vec![];
            pipeline(&mut store, body.as_bytes()).unwrap();
            let state: serde_json::Value =
                serde_json::from_slice(get(&store, &format!("/state/v2.0/ports/{ID}")).unwrap())
                    .unwrap();
            assert_eq!(state["state"]["worker_state"], worker_state);
            assert_eq!(state["error"], error);
        }

        let delete = br#"{"job": {"action": "delete", "resource_type": "port", "resource_id": "r1", "version": 4, "tenant_id": "t"}}"#;
        let mut store = vec![];
        pipeline(&mut store, delete).unwrap();
        assert_eq!(
            get(&store, "/state/v2.0/ports/r1").unwrap(),
            br#"{"state": {"worker_state": "DELETE_COMPLETED", "heat_outputs": "[]", "orchestration_state": "DELETE_COMPLETE"}, "version": 4, "error": ""}"#
        );
    }

    #[test]
    fn in_progress_writes_no_state_and_keeps_job_state() {
        let mut store = vec![];
        let running = seed_with("CREATE_COMPLETE", "CREATE_IN_PROGRESS");
        let decision = pipeline(&mut store, running.as_bytes()).unwrap();
        assert_eq!(decision.outcome, Outcome::NotFinal);
        assert_eq!(get(&store, &format!("/state/v2.0/ports/{ID}")), None);
        assert!(get(&store, &format!("/esi-worker/job_state/v2.0/ports/{ID}")).is_some());
    }

    #[test]
    fn an_older_wrap_never_replaces_state_nor_deletes_a_newer_job_state() {
        let keys = Keyspace::new("", "v2.0");
        let capture = Capture { keys: keys.clone() };
        let normalize = Normalize { keys: keys.clone() };
        let wrap = Wrap { keys: keys.clone() };
        let v2 = seed_with("\"version\": 1", "\"version\": 2");
        let mut store = vec![];

        // v1 reaches wrap's queue, then v2 runs through capture and normalize.
        let v1_to_normalize = step(&capture, &mut store, SEED_INPUT).handoff.unwrap();
        let v1_to_wrap = step(&normalize, &mut store, &v1_to_normalize)
            .handoff
            .unwrap();
        let v2_to_normalize = step(&capture, &mut store, v2.as_bytes()).handoff.unwrap();
        let v2_to_wrap = step(&normalize, &mut store, &v2_to_normalize)
            .handoff
            .unwrap();

        // v2's wrap first, then the late v1.
        assert_eq!(
            step(&wrap, &mut store, &v2_to_wrap).outcome,
            Outcome::Written
        );
        let late = step(&wrap, &mut store, &v1_to_wrap);
        assert_eq!(late.outcome, Outcome::Stale);
        assert!(late.writes.is_empty());
        let state: serde_json::Value =
            serde_json::from_slice(get(&store, &keys.state("ports", ID)).unwrap()).unwrap();
        assert_eq!(state["version"], 2);

        // The reverse: v1's wrap while v2's job_state is stored must leave it alone.
        let mut store = vec![];
        let v1_to_normalize = step(&capture, &mut store, SEED_INPUT).handoff.unwrap();
        let v1_to_wrap = step(&normalize, &mut store, &v1_to_normalize)
            .handoff
            .unwrap();
        let v2_to_normalize = step(&capture, &mut store, v2.as_bytes()).handoff.unwrap();
        step(&normalize, &mut store, &v2_to_normalize);
        let early = step(&wrap, &mut store, &v1_to_wrap);
        assert_eq!(early.outcome, Outcome::Written);
        assert!(
            get(&store, &keys.job_state("ports", ID)).is_some(),
            "v2's job_state stays"
        );
    }

    #[test]
    fn a_duplicate_wrap_changes_nothing() {
        let mut store = vec![];
        let keys = Keyspace::new("", "v2.0");
        let to_normalize = step(&Capture { keys: keys.clone() }, &mut store, SEED_INPUT)
            .handoff
            .unwrap();
        let to_wrap = step(&Normalize { keys: keys.clone() }, &mut store, &to_normalize)
            .handoff
            .unwrap();
        step(&Wrap { keys: keys.clone() }, &mut store, &to_wrap);
        let before = store.clone();
        let again = step(&Wrap { keys }, &mut store, &to_wrap);
        assert_eq!(again.outcome, Outcome::Duplicate);
        assert!(again.writes.is_empty());
        assert_eq!(store, before);
    }
}
