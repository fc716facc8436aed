//! A resource's keys in, its findings out: the rules of [`ResourceState`] put in words.
//! Pure, so that every invariant is unit-tested without etcd.

use std::time::{Duration, SystemTime};

use crate::keys::{Family, Keyspace};
use crate::lifecycle::Phase;
use crate::ops::state::{is_old, Orphan, Resource, ResourceState, StateVersion};
use crate::records::OrderKey;

use super::problem::{Finding, Problem};

/// Classifies one resource's keys into findings, in this order: unreadable keys, orphans,
/// stuck, stale, behind. `older_than` applies to the problems a running job shows for a
/// moment (`stuck`, `behind`); the others are never a transient state of the pipeline.
pub fn classify(
    resource: &Resource,
    keys: &Keyspace,
    now: SystemTime,
    older_than: Duration,
) -> Vec<Finding> {
    let state = ResourceState::of(resource);
    let finding = |problem, family, order: Option<&OrderKey>, detail: String| Finding {
        problem,
        path: resource.path.clone(),
        id: resource.id.clone(),
        version: order.map(|o| o.version),
        phase: order.map(|o| o.phase),
        since: order.and_then(|o| o.written_at.clone()),
        key: resource.key(keys, family),
        detail,
        dead_letter: None,
    };
    let mut findings: Vec<Finding> = state
        .unreadable_keys()
        .map(|unreadable| {
            let detail = unreadable.to_string();
            finding(Problem::Unreadable, unreadable.family, None, detail)
        })
        .collect();
    for orphan in state.orphans() {
        let family = orphan.family();
        findings.push(finding(
            Problem::Orphan,
            family,
            state.order(family),
            orphan_words(orphan).into(),
        ));
    }
    let state_version = state.state_version();
    if let Some(order) = state.stuck().filter(|o| is_old(o, now, older_than)) {
        let detail = match order.phase {
            Phase::Final => format!(
                "job_state of version {} is final but /state {}",
                order.version,
                state_words(state_version)
            ),
            Phase::InProgress => format!(
                "job_state of version {} is still in progress (no final result from Heat), /state {}",
                order.version,
                state_words(state_version)
            ),
        };
        findings.push(finding(
            Problem::Stuck,
            Family::JobState,
            Some(order),
            detail,
        ));
    }
    if let Some(stale) = state.stale() {
        let detail = format!(
            "/state holds version {}, but version {} was finished (job_state consumed)",
            stale.state, stale.order.version
        );
        findings.push(finding(
            Problem::Stale,
            Family::State,
            Some(stale.order),
            detail,
        ));
    }
    if let Some(order) = state.behind().filter(|o| is_old(o, now, older_than)) {
        let detail = format!(
            "heat_stacks holds version {} ({}) but job_state {} and /state {}",
            order.version,
            phase_word(order.phase),
            match state.order(Family::JobStateOrder) {
                Some(j) => format!("is at version {} ({})", j.version, phase_word(j.phase)),
                None => "has no order".to_string(),
            },
            state_words(state_version)
        );
        findings.push(finding(
            Problem::Behind,
            Family::HeatStacks,
            Some(order),
            detail,
        ));
    }
    findings
}

fn orphan_words(orphan: Orphan) -> &'static str {
    match orphan {
        Orphan::HeatStacksOrder => "heat_stacks order key without its heat_stacks record",
        Orphan::HeatStacks => "heat_stacks without its order key",
        Orphan::JobState => "job_state without its order key",
        Orphan::JobStateOrder => "job_state order key with neither job_state nor /state",
    }
}

fn phase_word(phase: Phase) -> &'static str {
    match phase {
        Phase::Final => "final",
        Phase::InProgress => "in progress",
    }
}

fn state_words(state_version: StateVersion) -> String {
    match state_version {
        StateVersion::Absent => "is absent".to_string(),
        StateVersion::At(v) => format!("holds version {v}"),
        StateVersion::Unreadable => "is unreadable".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::state::fixtures::*;
    use crate::ops::state::Next;

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
        let done = resource().captured(2, OLD).normalized(2, OLD).wrapped(2);
        assert_eq!(problems(&done), vec![]);
        let running = done.captured(3, RECENT).normalized(3, RECENT);
        assert_eq!(problems(&running), vec![], "younger than the threshold");
    }

    #[test]
    fn an_old_job_state_without_its_state_is_stuck_and_an_undated_one_counts_as_old() {
        let stuck = resource().wrapped(2).captured(3, OLD).normalized(3, OLD);
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
        let behind = resource().normalized(3, OLD).wrapped(3).captured(4, OLD);
        assert_eq!(problems(&behind), vec![(Problem::Behind, Some(4))]);
        // Taken by normalize but not wrapped: that is stuck, not behind as well.
        let stuck = behind.normalized(4, OLD);
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
        // Normalize finished 5, yet `/state` is 4.
        let stale = resource().captured(5, OLD).normalized(5, OLD).wrapped(4);
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

    /// `reconcile` picks (`half_done`) and re-drives (`next`) exactly what `audit` reports
    /// stuck or behind, over every mix of absent, old, recent and unreadable keys.
    #[test]
    fn reconcile_picks_and_re_drives_what_audit_reports_stuck_or_behind() {
        let garbage = || stored(b"{");
        let orders = || {
            [
                None,
                order(1, "final", Some(OLD)),
                order(2, "in_progress", Some(RECENT)),
                order(2, "final", None),
                garbage(),
            ]
        };
        let keys = Keyspace::new("", "v2.0");
        let older_than = Duration::from_secs(600);
        let mut cases = 0;
        for heat_stacks in [None, stored(HS), garbage()] {
            for heat_stacks_order in orders() {
                for job_state in [None, stored(JS), garbage()] {
                    for job_state_order in orders() {
                        for state in [None, state(1), state(2), garbage()] {
                            let resource = Resource {
                                heat_stacks: heat_stacks.clone(),
                                heat_stacks_order: heat_stacks_order.clone(),
                                job_state: job_state.clone(),
                                job_state_order: job_state_order.clone(),
                                state,
                                ..resource()
                            };
                            let found = |older_than| {
                                classify(&resource, &keys, now(), older_than)
                                    .into_iter()
                                    .map(|f| f.problem)
                                    .collect::<Vec<_>>()
                            };
                            let (old, any_age) = (found(older_than), found(Duration::ZERO));
                            let model = ResourceState::of(&resource);
                            let half_done =
                                old.contains(&Problem::Stuck) || old.contains(&Problem::Behind);
                            assert_eq!(
                                model.half_done(now(), older_than),
                                half_done,
                                "{resource:?}"
                            );
                            match model.next() {
                                Ok(Some(Next::Wrap { .. })) => {
                                    assert!(any_age.contains(&Problem::Stuck), "{resource:?}")
                                }
                                Ok(Some(Next::Normalize { .. })) => {
                                    assert!(any_age.contains(&Problem::Behind), "{resource:?}")
                                }
                                Ok(None) => assert!(
                                    !any_age.contains(&Problem::Stuck)
                                        && !any_age.contains(&Problem::Behind),
                                    "{resource:?}"
                                ),
                                Err(_) => {}
                            }
                            cases += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(cases, 3 * 5 * 3 * 5 * 4);
    }
}
