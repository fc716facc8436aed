//! Stage 3: the job_state record becomes `/state`, and job_state is removed.

use super::{wrap_removes_job_state, Stage, StageName};
use crate::error::Rejection;
use crate::keys::{Family, Keyspace};
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
        let job_state = encode(&request.job_state)?.into_bytes();
        Ok(WrapInput { request, job_state })
    }

    fn job<'a>(&self, input: &'a WrapInput) -> &'a Job {
        &input.request.job
    }

    fn reads(&self, input: &WrapInput) -> Vec<String> {
        let keys = self.keys.for_job(&input.request.job);
        vec![
            keys.key(Family::State),
            keys.key(Family::JobState),
            keys.key(Family::JobStateOrder),
        ]
    }

    /// job_state: [`Wrap::decide`] only asks whether it is what normalize wrote for this job.
    fn compared_only(&self, key: &str) -> bool {
        self.keys.is_of(Family::JobState, key)
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
        snapshot.assume_absent(self.keys.for_job(&input.request.job).key(Family::State));
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
        snapshot.assume(keys.key(Family::JobState), job_state.clone());
        // The bytes normalize wrote, lineage included; an older normalize wrote the bare order.
        let order_bytes = match &request.job_state_order {
            Some(bytes) => bytes.as_bytes().to_vec(),
            None => order.to_bytes(),
        };
        snapshot.assume(keys.key(Family::JobStateOrder), order_bytes);
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
        let (state_key, job_state_key) = (keys.key(Family::State), keys.key(Family::JobState));
        let mut writes = Vec::with_capacity(2);

        let stored_version = snapshot
            .value(&state_key)
            .and_then(|bytes| serde_json::from_slice::<StoredStateVersion>(bytes).ok())
            .map(|s| s.version);
        let outcome = match stored_version {
            Some(v) if v > record.version => Outcome::Stale,
            Some(v) if v == record.version => Outcome::Duplicate,
            _ => {
                writes.push(Write::Put {
                    key: state_key,
                    value: encode(&record)?,
                });
                let ours = Order {
                    version: record.version,
                    phase: Phase::Final,
                };
                writes.push(Write::Put {
                    key: keys.key(Family::StateLineage),
                    value: OrderKey::new(ours, self.name().as_str(), lineage).to_bytes(),
                });
                Outcome::Written
            }
        };

        let stored_order = snapshot
            .value(&keys.key(Family::JobStateOrder))
            .and_then(Order::from_bytes);
        let job_state_is_ours = stored_order.is_some_and(|order| {
            order.version == request.job.version && wrap_removes_job_state(order)
        }) && snapshot.holds(&job_state_key, job_state);
        if job_state_is_ours {
            writes.push(Write::Delete { key: job_state_key });
        }

        Ok(Decision {
            writes,
            outcome,
            handoff: None,
        })
    }
}

#[cfg(test)]
mod tests;
