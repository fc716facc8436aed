//! Dependencies going away and coming back: the broker session restored, readiness, and
//! etcd's outage as one line going, a summary while it lasts and one line coming back.

use std::time::Duration;

use metrics::{counter, gauge};

use super::InFlight;
use crate::stages::StageName;

/// A broker session was opened again after a loss.
pub struct Reconnected {
    pub stage: StageName,
    pub attempt: u32,
    /// How long the stage had no session.
    pub after: Duration,
}

impl Reconnected {
    pub fn emit(self) {
        let after = humantime::format_duration(round(self.after));
        tracing::info!(stage = %self.stage, attempt = self.attempt, %after, "broker session restored");
        counter!("heat_pipeline_reconnects_total", "stage" => self.stage.as_str()).increment(1);
    }
}

/// A stage's readiness changed.
pub struct Readiness {
    pub stage: StageName,
    pub ready: bool,
}

impl Readiness {
    pub fn emit(self) {
        gauge!("heat_pipeline_ready", "stage" => self.stage.as_str()).set(if self.ready {
            1.0
        } else {
            0.0
        });
    }
}

/// How often a dependency that stays away (etcd for the probe, the broker for a stage's
/// reconnect loop) is summed up in the log, after the line that says it went.
pub const OUTAGE_SUMMARY_EVERY: Duration = Duration::from_secs(30);

/// What the etcd probe saw change: etcd stopped answering, still does not, or answers
/// again. One line each (and a summary every `OUTAGE_SUMMARY_EVERY` while it lasts),
/// instead of a line per message per retry.
pub enum StoreOutage<'a> {
    Began {
        endpoints: &'a str,
        error: &'a str,
        at_start: bool,
    },
    Lasts {
        endpoints: &'a str,
        error: &'a str,
        since: Duration,
    },
    Ended {
        endpoints: &'a str,
        after: Duration,
        waited: usize,
    },
}

impl StoreOutage<'_> {
    pub fn emit(self) {
        match self {
            StoreOutage::Began {
                endpoints,
                error,
                at_start: true,
            } => tracing::warn!(
                endpoints,
                error,
                "etcd does not answer at start-up; the stages wait for it (check ETCD_ENDPOINTS)"
            ),
            StoreOutage::Began {
                endpoints,
                error,
                at_start: false,
            } => tracing::warn!(
                endpoints,
                error,
                in_flight = InFlight::total(),
                "etcd stopped answering; messages wait until it answers"
            ),
            StoreOutage::Lasts {
                endpoints,
                error,
                since,
            } => tracing::warn!(
                endpoints, error, since = %humantime::format_duration(round(since)), waiting = InFlight::total(),
                "etcd still does not answer"
            ),
            StoreOutage::Ended {
                endpoints,
                after,
                waited,
            } => tracing::info!(
                endpoints, after = %humantime::format_duration(round(after)), waited,
                "etcd answers again"
            ),
        }
    }
}

/// A duration to the second, for a log line.
fn round(duration: Duration) -> Duration {
    Duration::from_secs(duration.as_secs())
}
