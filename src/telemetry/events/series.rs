//! The series every message touches, registered once per stage. A `counter!` or
//! `histogram!` with labels builds its key, hashes it and looks it up in the registry on
//! every call, and a message made eight such calls in each stage; a handle goes straight to
//! its series (docs/SCALING.md, "What was changed on the floor's findings").

use std::sync::OnceLock;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

use crate::plan::Outcome;
use crate::stages::StageName;

/// The steps of a delivery that [`super::StepTook`] times, in the order they happen: waiting
/// for the resource's earlier message, the etcd work with its retries, the hand-off's
/// publisher confirm, the ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Turn,
    Store,
    Handoff,
    Ack,
}

impl Step {
    const ALL: [Step; 4] = [Step::Turn, Step::Store, Step::Handoff, Step::Ack];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Turn => "turn",
            Step::Store => "store",
            Step::Handoff => "handoff",
            Step::Ack => "ack",
        }
    }
}

/// One stage's per-message series.
pub(super) struct StageSeries {
    /// `heat_pipeline_step_seconds`, one per [`Step`], in its order.
    pub(super) steps: [Histogram; 4],
    pub(super) processing: Histogram,
    /// `heat_pipeline_messages_total`, one per [`Outcome::ALL`].
    pub(super) outcomes: [Counter; 4],
    pub(super) in_flight: Gauge,
}

impl StageSeries {
    fn register(stage: StageName) -> StageSeries {
        let stage = stage.as_str();
        StageSeries {
            steps: Step::ALL.map(|step| {
                histogram!("heat_pipeline_step_seconds", "stage" => stage, "step" => step.as_str())
            }),
            processing: histogram!("heat_pipeline_processing_seconds", "stage" => stage),
            outcomes: Outcome::ALL.map(|outcome| {
                counter!("heat_pipeline_messages_total", "stage" => stage, "outcome" => outcome.as_str())
            }),
            in_flight: gauge!("heat_pipeline_in_flight", "stage" => stage),
        }
    }
}

/// `stage`'s series, registered on its first use: a process exports only the stages it
/// runs (`HeatPipelineStageDown` reads a stage's series' absence). The first call installs
/// the process's recorder if nothing has, so that the handles are the recorder's and not
/// no-ops.
pub(super) fn of(stage: StageName) -> &'static StageSeries {
    static ALL: [OnceLock<StageSeries>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let at = StageName::ALL.iter().position(|s| *s == stage);
    ALL[at.expect("every stage is in StageName::ALL")].get_or_init(|| {
        crate::telemetry::metrics_handle();
        StageSeries::register(stage)
    })
}

/// Where `outcome` is in [`Outcome::ALL`].
pub(super) fn outcome_index(outcome: Outcome) -> usize {
    Outcome::ALL
        .iter()
        .position(|o| *o == outcome)
        .expect("every outcome is in Outcome::ALL")
}
