//! What `audit` reports: the kinds of problem, a finding, and the dead letter that explains
//! it.

use serde::Serialize;

use crate::lifecycle::Phase;
use crate::ops::dlq::DeadLetterInfo;
use crate::stages::StageName;

/// What is wrong with a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// job_state is there, older than the threshold, and no `/state` of its version.
    Stuck,
    /// heat_stacks holds a newer result than normalize took and than `/state` reflects.
    Behind,
    /// An order key with neither record it orders, or a record without its order key.
    Orphan,
    /// `/state` is older than the version the order keys say was finished.
    Stale,
    /// A record that does not parse as its format.
    Unreadable,
    /// Dead letters of a resource of which etcd holds no key at all: a stage (capture, as a
    /// rule) refused its first message, so no scan of the keys can find it.
    DeadLetterOnly,
}

impl Problem {
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::Stuck => "stuck",
            Problem::Behind => "behind",
            Problem::Orphan => "orphan",
            Problem::Stale => "stale",
            Problem::Unreadable => "unreadable",
            Problem::DeadLetterOnly => "dead_letter_only",
        }
    }
}

/// The dead letter that explains a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetterRef {
    pub stage: String,
    /// `permanent`, `exhausted-retries`, `dead-lettered` or `unknown` (see `dlq list`).
    pub kind: String,
    /// The rejection class, e.g. `record_too_large`.
    pub class: Option<String>,
    pub reason: Option<String>,
    pub attempts: Option<i64>,
    pub first_failed_at: Option<String>,
    pub last_failed_at: Option<String>,
}

impl DeadLetterRef {
    pub fn new(stage: StageName, info: &DeadLetterInfo) -> DeadLetterRef {
        DeadLetterRef {
            stage: stage.as_str().to_string(),
            kind: info.kind.clone(),
            class: info.class.clone(),
            reason: info.reason.clone(),
            attempts: info.attempts,
            first_failed_at: info.first_failed_at.clone(),
            last_failed_at: info.last_failed_at.clone(),
        }
    }
}

/// One problem of one resource. Serialized as one line of `audit --format json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub problem: Problem,
    pub path: String,
    pub id: String,
    /// The job version concerned (from the order key), when known.
    pub version: Option<u64>,
    pub phase: Option<Phase>,
    /// When the record concerned was written (RFC 3339), when its lineage says.
    pub since: Option<String>,
    /// The etcd key of the record concerned.
    pub key: String,
    /// What is wrong, in words.
    pub detail: String,
    pub dead_letter: Option<DeadLetterRef>,
}

/// Which stage's dead letter best explains a problem, first choice first: the stage that
/// should have taken the resource further.
pub(super) fn stage_preference(problem: Problem) -> [StageName; 3] {
    match problem {
        Problem::Stuck | Problem::Stale => {
            [StageName::Wrap, StageName::Normalize, StageName::Capture]
        }
        Problem::Behind => [StageName::Normalize, StageName::Wrap, StageName::Capture],
        Problem::Orphan | Problem::Unreadable => {
            [StageName::Wrap, StageName::Normalize, StageName::Capture]
        }
        // The first stage refused it: its letter is the cause, the later ones echoes.
        Problem::DeadLetterOnly => [StageName::Capture, StageName::Normalize, StageName::Wrap],
    }
}

/// Every problem [`classify`](super::classify) finds in a resource's keys, in a fixed order
/// (for counts: `run --audit-every` exports one gauge each). `dead_letter_only` is not
/// among them: it comes from the dead letters, which a periodic scan does not read.
pub const PROBLEMS: [Problem; 5] = [
    Problem::Stuck,
    Problem::Behind,
    Problem::Orphan,
    Problem::Stale,
    Problem::Unreadable,
];
