//! Stored keys for the unit tests of the rules, of audit's findings and of reconcile's
//! re-drives: one resource's records and order keys as etcd would hold them, at fixed times.

use std::time::SystemTime;

use super::Resource;
use crate::plan::Stored;

/// The tests' "now"; [`OLD`] is an hour before it, [`RECENT`] half a minute.
pub const NOW: &str = "2026-11-27T09:00:00Z";
pub const OLD: &str = "2026-11-27T08:00:00.000Z";
pub const RECENT: &str = "2026-11-27T08:59:30.000Z";
/// A heat_stacks record.
pub const HS: &[u8] = br#"{"stack_id": "s", "tenant_id": "t", "stack_status": "CREATE_COMPLETE", "output": [], "status_reason": "ok", "id": "port:r1"}"#;
/// A job_state record.
pub const JS: &[u8] = br#"{"heat_outputs": [], "orchestration_state": "CREATE_COMPLETE"}"#;

pub fn now() -> SystemTime {
    humantime::parse_rfc3339(NOW).unwrap()
}

/// `value` as stored at revision 7.
pub fn stored(value: &[u8]) -> Option<Stored> {
    Some(Stored {
        value: value.to_vec(),
        mod_revision: 7,
    })
}

/// An order key, with its lineage time when `at` is given (an older key has none).
pub fn order(version: u64, phase: &str, at: Option<&str>) -> Option<Stored> {
    let at = at.map_or(String::new(), |t| format!(r#","written_at":"{t}""#));
    stored(format!(r#"{{"version":{version},"phase":"{phase}"{at}}}"#).as_bytes())
}

/// A `/state` record of `version`.
pub fn state(version: u64) -> Option<Stored> {
    stored(format!(r#"{{"state": {{"worker_state": "CREATE_COMPLETED", "heat_outputs": "[]", "orchestration_state": "CREATE_COMPLETE"}}, "version": {version}, "error": ""}}"#).as_bytes())
}

/// `ports/r1` with no key. The steps below add what each stage leaves behind, so that a
/// test reads as the resource's story: `resource().normalized(3, OLD).wrapped(3)` went
/// through, then `.captured(4, OLD)` is behind.
pub fn resource() -> Resource {
    Resource::new("ports", "r1")
}

impl Resource {
    /// Capture took `version` at `at`: a heat_stacks record and its final order key.
    pub fn captured(mut self, version: u64, at: &str) -> Resource {
        self.heat_stacks = stored(HS);
        self.heat_stacks_order = order(version, "final", Some(at));
        self
    }

    /// Normalize took `version` at `at`: a job_state record and its final order key.
    pub fn normalized(mut self, version: u64, at: &str) -> Resource {
        self.job_state = stored(JS);
        self.job_state_order = order(version, "final", Some(at));
        self
    }

    /// Wrap wrote `/state` of `version` and removed job_state (its order key stays).
    pub fn wrapped(mut self, version: u64) -> Resource {
        self.job_state = None;
        self.state = state(version);
        self
    }
}
