//! `run --audit-every`: the `audit` scan run periodically inside a stage process, exporting
//! its counts as gauges (`heat_pipeline_stuck_jobs`, `heat_pipeline_audit_findings`,
//! `heat_pipeline_oldest_job_state_seconds`) for an alert. Enable it on one process only:
//! every process that has it scans the whole keyspace.

use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::keys::Keyspace;
use crate::ops::audit::{self, PROBLEMS};
use crate::store::Store;
use crate::telemetry::events::AuditScanned;

/// How often, and from what age a job counts as stuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditEvery {
    pub every: Duration,
    pub older_than: Duration,
}

/// Scans every `settings.every` (the first at once) until `shutdown`; a failed scan logs a
/// warning and leaves the gauges as they were.
pub(super) async fn audit_periodically(
    store: Store,
    keys: Keyspace,
    settings: AuditEvery,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(settings.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let started = Instant::now();
        let now = SystemTime::now();
        let mut counts = [0u64; PROBLEMS.len()];
        let mut oldest = Duration::ZERO;
        let scan = audit::scan(&store, &keys, audit::DEFAULT_PAGE_SIZE, |resource| {
            if let Some(age) = audit::job_state_age(&resource, now) {
                oldest = oldest.max(age);
            }
            for finding in audit::classify(&resource, &keys, now, settings.older_than) {
                let at = PROBLEMS.iter().position(|p| *p == finding.problem);
                counts[at.expect("every problem is listed")] += 1;
            }
        });
        let result = tokio::select! {
            result = scan => result,
            _ = shutdown.cancelled() => return,
        };
        match result {
            Ok(stats) => {
                let findings: Vec<(&'static str, u64)> = PROBLEMS
                    .iter()
                    .zip(counts)
                    .map(|(p, n)| (p.as_str(), n))
                    .collect();
                AuditScanned {
                    findings: &findings,
                    oldest_job_state: oldest,
                    resources: stats.resources,
                    took: started.elapsed(),
                }
                .emit();
            }
            Err(error) => tracing::warn!(%error, "periodic audit failed; will try again"),
        }
    }
}
