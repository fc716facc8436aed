//! A resource's records in, its findings out: pure, so that every invariant is unit-tested
//! without etcd.

use std::time::{Duration, SystemTime};

use crate::keys::Keyspace;
use crate::lifecycle::Phase;
use crate::records::OrderKey;

use super::problem::{Finding, Problem};
use super::resource::{Parsed, Resource};

fn ok<T>(value: &Option<Result<T, String>>) -> Option<&T> {
    value.as_ref().and_then(|r| r.as_ref().ok())
}

/// Whether a record written at `written_at` (RFC 3339) is at least `older_than` old at
/// `now`; an unknown time (an order key from before lineage) counts as old.
fn is_old(written_at: Option<&str>, now: SystemTime, older_than: Duration) -> bool {
    let Some(at) = written_at.and_then(|t| humantime::parse_rfc3339(t).ok()) else {
        return true;
    };
    now.duration_since(at).unwrap_or(Duration::ZERO) >= older_than
}

/// Classifies one resource's records into findings (pure: the scan's decisions, unit-tested).
/// `older_than` applies to the problems a running job shows for a moment (`stuck`,
/// `behind`); the others are never a transient state of the pipeline.
pub fn classify(
    resource: &Resource,
    keys: &Keyspace,
    now: SystemTime,
    older_than: Duration,
) -> Vec<Finding> {
    let (path, id) = (resource.path.as_str(), resource.id.as_str());
    let parsed = Parsed::of(resource);
    let mut findings = Vec::new();
    let finding = |problem, key: String, order: Option<&OrderKey>, detail: String| Finding {
        problem,
        path: path.to_string(),
        id: id.to_string(),
        version: order.map(|o| o.version),
        phase: order.map(|o| o.phase),
        since: order.and_then(|o| o.written_at.clone()),
        key,
        detail,
        dead_letter: None,
    };

    // Unreadable: each present key that does not parse as its format.
    let unreadable = [
        (
            parsed.heat_stacks.as_ref().map(|r| r.as_ref().err()),
            keys.heat_stack(path, id),
            "heat_stacks",
        ),
        (
            parsed.heat_stacks_order.as_ref().map(|r| r.as_ref().err()),
            keys.heat_stack_order(path, id),
            "heat_stacks order key",
        ),
        (
            parsed.job_state.as_ref().map(|r| r.as_ref().err()),
            keys.job_state(path, id),
            "job_state",
        ),
        (
            parsed.job_state_order.as_ref().map(|r| r.as_ref().err()),
            keys.job_state_order(path, id),
            "job_state order key",
        ),
        (
            parsed.state.as_ref().map(|r| r.as_ref().err()),
            keys.state(path, id),
            "/state",
        ),
    ];
    for (error, key, what) in unreadable {
        if let Some(Some(error)) = error {
            findings.push(finding(
                Problem::Unreadable,
                key,
                None,
                format!("{what} does not parse as its format: {error}"),
            ));
        }
    }

    let hs = resource.heat_stacks.is_some();
    let hso = resource.heat_stacks_order.is_some();
    let js = resource.job_state.is_some();
    let jso = resource.job_state_order.is_some();
    let st = resource.state.is_some();
    let hs_order = ok(&parsed.heat_stacks_order);
    let js_order = ok(&parsed.job_state_order);
    // `/state`'s version; `None` when absent, unknown when unreadable (then no rule on it).
    let state_version = match &parsed.state {
        None => Some(None),
        Some(Ok(state)) => Some(Some(state.version)),
        Some(Err(_)) => None,
    };
    let state_below = |version: u64| state_version.is_some_and(|v| v.is_none_or(|v| v < version));

    // Orphans.
    if hso && !hs {
        findings.push(finding(
            Problem::Orphan,
            keys.heat_stack_order(path, id),
            hs_order,
            "heat_stacks order key without its heat_stacks record".into(),
        ));
    }
    if hs && !hso {
        findings.push(finding(
            Problem::Orphan,
            keys.heat_stack(path, id),
            None,
            "heat_stacks without its order key".into(),
        ));
    }
    if js && !jso {
        findings.push(finding(
            Problem::Orphan,
            keys.job_state(path, id),
            None,
            "job_state without its order key".into(),
        ));
    }
    if jso && !js && !st {
        findings.push(finding(
            Problem::Orphan,
            keys.job_state_order(path, id),
            js_order,
            "job_state order key with neither job_state nor /state".into(),
        ));
    }

    // Stuck: normalize wrote job_state, wrap never turned it into /state.
    if let (true, Some(order)) = (js, js_order) {
        if state_below(order.version) && is_old(order.written_at.as_deref(), now, older_than) {
            let detail = match order.phase {
                Phase::Final => format!(
                    "job_state of version {} is final but /state {}",
                    order.version,
                    state_words(&state_version)
                ),
                Phase::InProgress => format!(
                    "job_state of version {} is still in progress (no final result from Heat), /state {}",
                    order.version,
                    state_words(&state_version)
                ),
            };
            findings.push(finding(
                Problem::Stuck,
                keys.job_state(path, id),
                Some(order),
                detail,
            ));
        }
    }

    // Stale: wrap finished a version (job_state consumed) and /state is older than it.
    if let (false, Some(order), Some(Some(version))) = (js, js_order, state_version) {
        if order.phase == Phase::Final && version < order.version {
            findings.push(finding(
                Problem::Stale,
                keys.state(path, id),
                Some(order),
                format!(
                    "/state holds version {version}, but version {} was finished (job_state consumed)",
                    order.version
                ),
            ));
        }
    }

    // Behind: capture recorded a result that normalize never took.
    if let (true, Some(order)) = (hs, hs_order) {
        let taken = js_order.is_some_and(|j| j.order() >= order.order());
        if !taken
            && state_below(order.version)
            && is_old(order.written_at.as_deref(), now, older_than)
        {
            findings.push(finding(
                Problem::Behind,
                keys.heat_stack(path, id),
                Some(order),
                format!(
                    "heat_stacks holds version {} ({}) but job_state {} and /state {}",
                    order.version,
                    phase_word(order.phase),
                    match js_order {
                        Some(j) => format!("is at version {} ({})", j.version, phase_word(j.phase)),
                        None => "has no order".to_string(),
                    },
                    state_words(&state_version)
                ),
            ));
        }
    }
    findings
}

fn phase_word(phase: Phase) -> &'static str {
    match phase {
        Phase::Final => "final",
        Phase::InProgress => "in progress",
    }
}

fn state_words(state_version: &Option<Option<u64>>) -> String {
    match state_version {
        Some(None) => "is absent".to_string(),
        Some(Some(v)) => format!("holds version {v}"),
        None => "is unreadable".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Stored;

    const NOW: &str = "2026-11-27T09:00:00Z";
    const OLD: &str = "2026-11-27T08:00:00.000Z";
    const RECENT: &str = "2026-11-27T08:59:30.000Z";
    const HS: &[u8] = br#"{"stack_id": "s", "tenant_id": "t", "stack_status": "CREATE_COMPLETE", "output": [], "status_reason": "ok", "id": "port:r1"}"#;
    const JS: &[u8] = br#"{"heat_outputs": [], "orchestration_state": "CREATE_COMPLETE"}"#;

    fn now() -> SystemTime {
        humantime::parse_rfc3339(NOW).unwrap()
    }

    fn stored(value: &[u8]) -> Option<Stored> {
        Some(Stored {
            value: value.to_vec(),
            mod_revision: 7,
        })
    }

    fn order(version: u64, phase: &str, at: Option<&str>) -> Option<Stored> {
        let at = at.map_or(String::new(), |t| format!(r#","written_at":"{t}""#));
        stored(format!(r#"{{"version":{version},"phase":"{phase}"{at}}}"#).as_bytes())
    }

    fn state(version: u64) -> Option<Stored> {
        stored(format!(r#"{{"state": {{"worker_state": "CREATE_COMPLETED", "heat_outputs": "[]", "orchestration_state": "CREATE_COMPLETE"}}, "version": {version}, "error": ""}}"#).as_bytes())
    }

    fn resource() -> Resource {
        Resource {
            path: "ports".into(),
            id: "r1".into(),
            ..Resource::default()
        }
    }

    fn problems(resource: &Resource) -> Vec<(Problem, Option<u64>)> {
        classify(
            resource,
            &Keyspace::new("", "v2.0"),
            now(),
            Duration::from_secs(600),
        )
        .into_iter()
        .map(|f| (f.problem, f.version))
        .collect()
    }

    #[test]
    fn a_finished_job_and_a_running_one_are_fine() {
        let done = Resource {
            heat_stacks: stored(HS),
            heat_stacks_order: order(2, "final", Some(OLD)),
            job_state_order: order(2, "final", Some(OLD)),
            state: state(2),
            ..resource()
        };
        assert_eq!(problems(&done), vec![]);
        let running = Resource {
            heat_stacks: stored(HS),
            heat_stacks_order: order(3, "final", Some(RECENT)),
            job_state: stored(JS),
            job_state_order: order(3, "final", Some(RECENT)),
            state: state(2),
            ..resource()
        };
        assert_eq!(problems(&running), vec![], "younger than the threshold");
    }

    #[test]
    fn an_old_job_state_without_its_state_is_stuck_and_an_undated_one_counts_as_old() {
        let stuck = Resource {
            heat_stacks: stored(HS),
            heat_stacks_order: order(3, "final", Some(OLD)),
            job_state: stored(JS),
            job_state_order: order(3, "final", Some(OLD)),
            state: state(2),
            ..resource()
        };
        let found = classify(
            &stuck,
            &Keyspace::new("", "v2.0"),
            now(),
            Duration::from_secs(600),
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].problem, Problem::Stuck);
        assert_eq!(found[0].version, Some(3));
        assert_eq!(found[0].since.as_deref(), Some(OLD));
        assert_eq!(found[0].key, "/esi-worker/job_state/v2.0/ports/r1");

        let undated = Resource {
            job_state: stored(JS),
            job_state_order: order(1, "final", None),
            ..resource()
        };
        assert_eq!(problems(&undated), vec![(Problem::Stuck, Some(1))]);
    }

    #[test]
    fn heat_stacks_newer_than_normalize_took_is_behind() {
        let behind = Resource {
            heat_stacks: stored(HS),
            heat_stacks_order: order(4, "final", Some(OLD)),
            job_state_order: order(3, "final", Some(OLD)),
            state: state(3),
            ..resource()
        };
        assert_eq!(problems(&behind), vec![(Problem::Behind, Some(4))]);
        // Taken by normalize but not wrapped: that is stuck, not behind as well.
        let stuck = Resource {
            job_state: stored(JS),
            job_state_order: order(4, "final", Some(OLD)),
            ..behind
        };
        assert_eq!(problems(&stuck), vec![(Problem::Stuck, Some(4))]);
    }

    #[test]
    fn orphans_stale_and_unreadable() {
        let orphan_order = Resource {
            heat_stacks_order: order(1, "final", Some(OLD)),
            job_state_order: order(1, "final", Some(OLD)),
            ..resource()
        };
        assert_eq!(
            problems(&orphan_order),
            vec![(Problem::Orphan, Some(1)), (Problem::Orphan, Some(1))]
        );
        let orphan_record = Resource {
            heat_stacks: stored(HS),
            job_state: stored(JS),
            ..resource()
        };
        assert_eq!(
            problems(&orphan_record),
            vec![(Problem::Orphan, None), (Problem::Orphan, None)]
        );
        let stale = Resource {
            heat_stacks: stored(HS),
            heat_stacks_order: order(5, "final", Some(OLD)),
            job_state_order: order(5, "final", Some(OLD)),
            state: state(4),
            ..resource()
        };
        assert_eq!(problems(&stale), vec![(Problem::Stale, Some(5))]);
        let unreadable = Resource {
            heat_stacks: stored(b"{not json"),
            heat_stacks_order: order(1, "final", Some(OLD)),
            job_state_order: order(1, "final", Some(OLD)),
            state: stored(br#"{"version": "one"}"#),
            ..resource()
        };
        assert_eq!(
            problems(&unreadable),
            vec![(Problem::Unreadable, None), (Problem::Unreadable, None)]
        );
    }
}
