//! Named telemetry events. Each one logs and records its metric in one `emit()`, so that a
//! log line and a metric can never disagree. Labels are low-cardinality: stage, outcome,
//! rejection class, cause, operation; never a resource id.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};

use crate::error::{RejectKind, Rejection};
use crate::plan::Outcome;
use crate::stages::StageName;

mod outage;
mod series;
pub use outage::{Readiness, Reconnected, StoreOutage, OUTAGE_SUMMARY_EVERY};
pub use series::Step;

/// Registers the help text of every metric.
pub(super) fn describe() {
    describe_counter!("heat_pipeline_messages_total", "Messages handled, by stage and outcome (written, duplicate, stale, not_final, dead_lettered).");
    describe_counter!(
        "heat_pipeline_rejections_total",
        "Messages dead-lettered, by stage and rejection class."
    );
    describe_counter!("heat_pipeline_retries_total", "Store steps retried, by stage and cause (store: etcd unavailable or slow; conflict: another process changed the keys; guess: the keys were not as the stage guessed, e.g. an update).");
    describe_histogram!(
        "heat_pipeline_processing_seconds",
        Unit::Seconds,
        "Time from delivery to ack, by stage."
    );
    describe_histogram!(
        "heat_pipeline_step_seconds",
        Unit::Seconds,
        "Time of one step of a delivery, by stage and step (turn: waiting for the resource's earlier message; store: the etcd work with its retries; handoff: the publish and its confirm; ack)."
    );
    describe_histogram!(
        "heat_pipeline_etcd_request_seconds",
        Unit::Seconds,
        "etcd transaction time, by stage and operation (read, commit)."
    );
    describe_gauge!(
        "heat_pipeline_in_flight",
        "Messages being handled, by stage."
    );
    describe_counter!(
        "heat_pipeline_reconnects_total",
        "Broker sessions opened again after a loss, by stage."
    );
    describe_histogram!(
        "heat_pipeline_end_to_end_seconds",
        Unit::Seconds,
        "Age of a result when wrap wrote its /state, from the publish time in its headers."
    );
    describe_gauge!(
        "heat_pipeline_stuck_jobs",
        "Resources the last periodic audit (run --audit-every) found stuck: job_state older than the threshold and no /state of its version."
    );
    describe_gauge!(
        "heat_pipeline_audit_findings",
        "Findings of the last periodic audit, by problem (stuck, behind, orphan, stale, unreadable)."
    );
    describe_gauge!(
        "heat_pipeline_oldest_job_state_seconds",
        Unit::Seconds,
        "Age of the oldest job_state the last periodic audit saw (from its order key's written_at); 0 when none."
    );
    describe_gauge!(
        "heat_pipeline_ready",
        "1 while the stage is connected to the broker and etcd answers, else 0."
    );
    describe_gauge!(
        "heat_pipeline_dead_letters",
        "Messages in the stage's dead-letter queue, as the broker last counted them."
    );
    describe_gauge!(
        "heat_pipeline_queue_ready",
        "Messages waiting in the stage's queue (not yet delivered), as the broker last counted them."
    );
}

/// A stage starts in this process: every series a rule or a panel reads exists from now
/// on, at 0. A counter that first appears at 1 shows no increase to `rate()` or
/// `increase()`, so the first dead letter would never fire an alert; and an idle stage
/// would leave its panels without data.
pub struct StageStarted {
    pub stage: StageName,
}

impl StageStarted {
    pub fn emit(self) {
        let stage = self.stage.as_str();
        for outcome in Outcome::ALL {
            counter!("heat_pipeline_messages_total", "stage" => stage, "outcome" => outcome.as_str())
                .increment(0);
        }
        counter!("heat_pipeline_messages_total", "stage" => stage, "outcome" => "dead_lettered")
            .increment(0);
        for class in RejectKind::ALL {
            counter!("heat_pipeline_rejections_total", "stage" => stage, "class" => class.as_str())
                .increment(0);
        }
        for cause in RetryCause::ALL {
            counter!("heat_pipeline_retries_total", "stage" => stage, "cause" => cause.as_str())
                .increment(0);
        }
        counter!("heat_pipeline_reconnects_total", "stage" => stage).increment(0);
        gauge!("heat_pipeline_in_flight", "stage" => stage).increment(0.0);
        gauge!("heat_pipeline_dead_letters", "stage" => stage).set(0.0);
        gauge!("heat_pipeline_queue_ready", "stage" => stage).set(0.0);
    }
}

/// The broker counted a stage's queues.
pub struct QueuesCounted {
    pub stage: StageName,
    /// Messages ready in the stage's queue.
    pub ready: u32,
    /// Messages in its dead-letter queue.
    pub dead_letters: u32,
}

impl QueuesCounted {
    pub fn emit(self) {
        let stage = self.stage.as_str();
        gauge!("heat_pipeline_queue_ready", "stage" => stage).set(f64::from(self.ready));
        gauge!("heat_pipeline_dead_letters", "stage" => stage).set(f64::from(self.dead_letters));
    }
}

/// A periodic audit (`run --audit-every`) finished its scan.
pub struct AuditScanned<'a> {
    /// Findings by problem name (`stuck`, `behind`, `orphan`, `stale`, `unreadable`).
    pub findings: &'a [(&'static str, u64)],
    /// The oldest job_state's age (zero when there is none).
    pub oldest_job_state: Duration,
    pub resources: u64,
    pub took: Duration,
}

impl AuditScanned<'_> {
    pub fn emit(self) {
        let total: u64 = self.findings.iter().map(|(_, n)| n).sum();
        let stuck = self
            .findings
            .iter()
            .find(|(name, _)| *name == "stuck")
            .map_or(0, |(_, n)| *n);
        if total > 0 {
            tracing::warn!(
                resources = self.resources,
                findings = total,
                stuck,
                took_ms = self.took.as_millis() as u64,
                "audit found problems (heat-pipeline audit lists them)"
            );
        } else {
            tracing::debug!(
                resources = self.resources,
                took_ms = self.took.as_millis() as u64,
                "audit found nothing"
            );
        }
        gauge!("heat_pipeline_stuck_jobs").set(stuck as f64);
        for (problem, count) in self.findings {
            gauge!("heat_pipeline_audit_findings", "problem" => *problem).set(*count as f64);
        }
        gauge!("heat_pipeline_oldest_job_state_seconds").set(self.oldest_job_state.as_secs_f64());
    }
}

/// A message finished: acked after its commit and hand-off, or dead-lettered.
pub struct MessageHandled {
    pub stage: StageName,
    pub outcome: Outcome,
    pub took: Duration,
}

impl MessageHandled {
    pub fn emit(self) {
        tracing::debug!(
            outcome = self.outcome.as_str(),
            took_ms = self.took.as_millis() as u64,
            "done"
        );
        let series = series::of(self.stage);
        series.outcomes[series::outcome_index(self.outcome)].increment(1);
        series.processing.record(self.took.as_secs_f64());
    }
}

/// A message was dead-lettered for a permanent reason.
pub struct MessageRejected<'a> {
    pub stage: StageName,
    pub rejection: &'a Rejection,
    pub took: Duration,
}

impl MessageRejected<'_> {
    pub fn emit(self) {
        tracing::warn!(class = self.rejection.kind.as_str(), reason = ?self.rejection.detail, "dead-lettered");
        let stage = self.stage.as_str();
        counter!("heat_pipeline_messages_total", "stage" => stage, "outcome" => "dead_lettered")
            .increment(1);
        counter!("heat_pipeline_rejections_total", "stage" => stage, "class" => self.rejection.kind.as_str()).increment(1);
        histogram!("heat_pipeline_processing_seconds", "stage" => stage)
            .record(self.took.as_secs_f64());
    }
}

/// Why a store step is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryCause {
    /// etcd unavailable or too slow; backing off.
    Store,
    /// Another process changed the keys between read and commit; deciding again.
    Conflict,
    /// The stage's guess of the stored keys was wrong (e.g. an update of a known
    /// resource); deciding again on the keys the commit returned.
    Guess,
}

impl RetryCause {
    pub const ALL: [RetryCause; 3] = [RetryCause::Store, RetryCause::Conflict, RetryCause::Guess];

    /// The `cause` label.
    pub fn as_str(self) -> &'static str {
        match self {
            RetryCause::Store => "store",
            RetryCause::Conflict => "conflict",
            RetryCause::Guess => "guess",
        }
    }
}

pub struct StoreRetried<'a> {
    pub stage: StageName,
    pub cause: RetryCause,
    pub error: Option<&'a str>,
    pub wait: Duration,
}

impl StoreRetried<'_> {
    pub fn emit(self) {
        let cause = self.cause.as_str();
        match self.cause {
            // One line per message per retry would flood the log during an outage: the
            // probe says when etcd goes and comes back (`StoreOutage`), this only at debug.
            RetryCause::Store => {
                tracing::debug!(error = self.error.unwrap_or(""), wait = ?self.wait, "store unavailable; retrying")
            }
            RetryCause::Conflict => tracing::debug!("commit conflict; deciding again"),
            RetryCause::Guess => {
                tracing::debug!("the stored keys were not as guessed; deciding again")
            }
        }
        counter!("heat_pipeline_retries_total", "stage" => self.stage.as_str(), "cause" => cause)
            .increment(1);
    }
}

/// One etcd transaction (a batch) finished.
pub struct EtcdRequest {
    pub stage: StageName,
    pub op: &'static str,
    pub took: Duration,
}

impl EtcdRequest {
    pub fn emit(self) {
        histogram!("heat_pipeline_etcd_request_seconds", "stage" => self.stage.as_str(), "op" => self.op)
            .record(self.took.as_secs_f64());
    }
}

/// One step of a delivery, timed, so that a slow tail of `heat_pipeline_processing_seconds`
/// can be placed: waiting for the resource's earlier message (`turn`), the etcd work with its
/// retries (`store`), the hand-off's publisher confirm (`handoff`), or the ack (`ack`).
pub struct StepTook {
    pub stage: StageName,
    pub step: Step,
    pub took: Duration,
}

impl StepTook {
    pub fn emit(self) {
        series::of(self.stage).steps[self.step as usize].record(self.took.as_secs_f64());
    }
}

/// Counts a message in flight for as long as it lives.
pub struct InFlight {
    stage: StageName,
}

/// Messages in flight in this process, all stages: what the outage log lines report as
/// waiting (a gauge cannot be read back).
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

impl InFlight {
    pub fn enter(stage: StageName) -> InFlight {
        series::of(stage).in_flight.increment(1.0);
        IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
        InFlight { stage }
    }

    /// Messages in flight in this process now.
    pub fn total() -> usize {
        IN_FLIGHT.load(Ordering::Relaxed)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        series::of(self.stage).in_flight.decrement(1.0);
        IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    }
}

/// wrap wrote a /state: how old the result was.
pub struct EndToEnd {
    pub age: Duration,
}

impl EndToEnd {
    pub fn emit(self) {
        histogram!("heat_pipeline_end_to_end_seconds", "stage" => "wrap")
            .record(self.age.as_secs_f64());
    }
}
