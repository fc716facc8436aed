//! The rules on a resource's state, each written once: what `audit` finds (`classify`),
//! which resources `reconcile --all-stuck` picks, and what `reconcile` re-drives next. Pure.
//!
//! A resource moves heat_stacks → job_state → `/state`, each record with its order key
//! (`/state` carries its own version). Half done is one of two things, each for a moment
//! while a job runs and a problem once it is old:
//! - **stuck**: job_state waits for wrap (`/state` is below its version);
//! - **behind**: heat_stacks holds a result normalize never took.

use std::time::{Duration, SystemTime};

use crate::keys::Family;
use crate::lifecycle::Phase;
use crate::records::{HeatStackRecord, JobStateRecord, OrderKey};

use super::model::{key_words, ok, ResourceState, StateVersion, Unreadable};
use super::resource::Resource;

/// A record without its order key, or an order key without its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orphan {
    /// A heat_stacks order key without its heat_stacks record.
    HeatStacksOrder,
    /// heat_stacks without its order key.
    HeatStacks,
    /// job_state without its order key.
    JobState,
    /// A job_state order key with neither job_state nor `/state`.
    JobStateOrder,
}

impl Orphan {
    /// The key that is alone.
    pub fn family(self) -> Family {
        match self {
            Orphan::HeatStacksOrder => Family::HeatStacksOrder,
            Orphan::HeatStacks => Family::HeatStacks,
            Orphan::JobState => Family::JobState,
            Orphan::JobStateOrder => Family::JobStateOrder,
        }
    }
}

/// job_state gone while `/state` is below the version its order key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Consumed<'s> {
    /// `/state`'s version.
    pub state: u64,
    pub order: &'s OrderKey,
}

/// The hand-off that takes a resource one stage further, from its records.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next<'s> {
    /// A stuck job_state, for wrap.
    Wrap {
        job_state: &'s JobStateRecord,
        order: &'s OrderKey,
    },
    /// heat_stacks that normalize never took (behind), for normalize.
    Normalize {
        heat_stack: &'s HeatStackRecord,
        order: &'s OrderKey,
    },
}

/// Why nothing stored can re-drive a resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CannotRedrive {
    #[error(
        "{} is unreadable ({}): fix or delete it by hand, then publish the job's result again",
        the(.0.family),
        .0.reason
    )]
    Unreadable(Unreadable),
    #[error(
        "job_state has no order key, so its version is unknown: publish the job's result again"
    )]
    NoOrderKey,
    #[error(
        "/state holds version {state} but version {finished} was finished and its job_state \
         consumed: nothing stored can re-drive it; publish the job's result again (a newer \
         version)"
    )]
    Consumed { state: u64, finished: u64 },
    #[error("no record of this resource (only order keys, or nothing): nothing to re-drive from")]
    NoRecord,
}

/// A key in words with its article: "the heat_stacks order key", "job_state".
fn the(family: Family) -> String {
    match family {
        Family::HeatStacksOrder | Family::JobStateOrder => format!("the {}", key_words(family)),
        _ => key_words(family).to_string(),
    }
}

/// How old a record written at `written_at` (RFC 3339) is at `now`; `None` without a time
/// (a key from before lineage).
fn age(written_at: Option<&str>, now: SystemTime) -> Option<Duration> {
    let at = humantime::parse_rfc3339(written_at?).ok()?;
    Some(now.duration_since(at).unwrap_or(Duration::ZERO))
}

/// Whether `order`'s record is at least `older_than` old at `now`; an unknown time (an
/// order key from before lineage) counts as old.
pub fn is_old(order: &OrderKey, now: SystemTime, older_than: Duration) -> bool {
    age(order.written_at.as_deref(), now).is_none_or(|age| age >= older_than)
}

/// How old `resource`'s job_state is at `now`, from its order key's `written_at`; `None`
/// without a job_state or without a time. (Parses that key alone: `run --audit-every` asks
/// it of every resource.)
pub fn job_state_age(resource: &Resource, now: SystemTime) -> Option<Duration> {
    resource.job_state.as_ref()?;
    let order = OrderKey::from_bytes(&resource.job_state_order.as_ref()?.value)?;
    age(order.written_at.as_deref(), now)
}

impl ResourceState<'_> {
    /// Each present key that does not parse, in key order (the lineage key aside).
    pub fn unreadable_keys(&self) -> impl Iterator<Item = &Unreadable> {
        [
            Family::HeatStacks,
            Family::HeatStacksOrder,
            Family::JobState,
            Family::JobStateOrder,
            Family::State,
        ]
        .into_iter()
        .filter_map(|family| self.unreadable(family))
    }

    /// The orphans, in key order.
    pub fn orphans(&self) -> Vec<Orphan> {
        let r = self.resource;
        let (hs, hso) = (r.heat_stacks.is_some(), r.heat_stacks_order.is_some());
        let (js, jso) = (r.job_state.is_some(), r.job_state_order.is_some());
        [
            (hso && !hs, Orphan::HeatStacksOrder),
            (hs && !hso, Orphan::HeatStacks),
            (js && !jso, Orphan::JobState),
            (jso && !js && r.state.is_none(), Orphan::JobStateOrder),
        ]
        .into_iter()
        .filter_map(|(found, orphan)| found.then_some(orphan))
        .collect()
    }

    /// Stuck: job_state is there, its order key reads, and `/state` (readable) is below its
    /// version: wrap never turned it into `/state`. The job_state order key.
    pub fn stuck(&self) -> Option<&OrderKey> {
        self.resource.job_state.as_ref()?;
        ok(&self.job_state_order).filter(|order| self.state_version().below(order.version))
    }

    /// Behind: heat_stacks and its order key are there, normalize's order (job_state's) is
    /// below it, and so is `/state`: normalize never took it. The heat_stacks order key.
    pub fn behind(&self) -> Option<&OrderKey> {
        self.resource.heat_stacks.as_ref()?;
        let order = ok(&self.heat_stacks_order)?;
        let taken = ok(&self.job_state_order).is_some_and(|j| j.order() >= order.order());
        (!taken && self.state_version().below(order.version)).then_some(order)
    }

    /// job_state is gone and `/state` (readable) is below its order key's version: nothing
    /// stored holds what that version wrote.
    pub fn consumed(&self) -> Option<Consumed<'_>> {
        if self.resource.job_state.is_some() {
            return None;
        }
        let order = ok(&self.job_state_order)?;
        match self.state_version() {
            StateVersion::At(state) if state < order.version => Some(Consumed { state, order }),
            _ => None,
        }
    }

    /// Stale: [`consumed`](Self::consumed) of a final version, so wrap finished it (and
    /// removed job_state) and `/state` was overwritten by an older one, or never written.
    pub fn stale(&self) -> Option<Consumed<'_>> {
        self.consumed().filter(|c| c.order.phase == Phase::Final)
    }

    /// What `reconcile --all-stuck` picks: stuck or behind, and at least `older_than` old.
    pub fn half_done(&self, now: SystemTime, older_than: Duration) -> bool {
        let old = |order: &&OrderKey| is_old(order, now, older_than);
        self.stuck().filter(old).is_some() || self.behind().filter(old).is_some()
    }

    /// What takes the resource one stage further: a stuck job_state to wrap first, else
    /// heat_stacks that is behind to normalize; `Ok(None)` when nothing is half done.
    /// Nothing is re-driven from a resource with an unreadable key (the first in the order
    /// heat_stacks, its order key, job_state's order key, `/state`, job_state), a job_state
    /// without its order key, a consumed job_state, or no record at all.
    pub fn next(&self) -> Result<Option<Next<'_>>, CannotRedrive> {
        let unreadable = [
            Family::HeatStacks,
            Family::HeatStacksOrder,
            Family::JobStateOrder,
            Family::State,
            Family::JobState,
        ]
        .into_iter()
        .find_map(|family| self.unreadable(family));
        if let Some(unreadable) = unreadable {
            return Err(CannotRedrive::Unreadable(unreadable.clone()));
        }
        let r = self.resource;
        if r.job_state.is_some() && r.job_state_order.is_none() {
            return Err(CannotRedrive::NoOrderKey);
        }
        if let (Some(job_state), Some(order)) = (ok(&self.job_state), self.stuck()) {
            return Ok(Some(Next::Wrap { job_state, order }));
        }
        if let (Some(heat_stack), Some(order)) = (ok(&self.heat_stacks), self.behind()) {
            return Ok(Some(Next::Normalize { heat_stack, order }));
        }
        if let Some(Consumed { state, order }) = self.consumed() {
            return Err(CannotRedrive::Consumed {
                state,
                finished: order.version,
            });
        }
        if r.heat_stacks.is_none() && r.job_state.is_none() && r.state.is_none() {
            return Err(CannotRedrive::NoRecord);
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::state::fixtures::*;

    #[test]
    fn stuck_and_behind_are_half_done_once_old_and_next_takes_stuck_first() {
        let resource = resource().wrapped(2).normalized(3, RECENT).captured(4, OLD);
        let state = ResourceState::of(&resource);
        assert_eq!(state.stuck().map(|o| o.version), Some(3));
        assert_eq!(state.behind().map(|o| o.version), Some(4));
        assert!(
            state.half_done(now(), Duration::from_secs(600)),
            "behind is old"
        );
        assert!(!state.half_done(now(), Duration::from_secs(7200)));
        assert!(matches!(state.next(), Ok(Some(Next::Wrap { order, .. })) if order.version == 3));
    }

    #[test]
    fn an_unreadable_state_is_below_nothing() {
        let resource = Resource {
            job_state: stored(JS),
            job_state_order: order(3, "final", Some(OLD)),
            state: stored(b"{"),
            ..resource()
        };
        let state = ResourceState::of(&resource);
        assert_eq!(state.state_version(), StateVersion::Unreadable);
        assert_eq!(state.stuck(), None);
        let found: Vec<_> = state.unreadable_keys().map(|u| u.family).collect();
        assert_eq!(found, [Family::State]);
        assert!(matches!(
            state.next(),
            Err(CannotRedrive::Unreadable(Unreadable {
                family: Family::State,
                ..
            }))
        ));
    }

    #[test]
    fn a_consumed_job_state_is_stale_only_when_final_and_never_re_driven() {
        for (phase, stale) in [("final", true), ("in_progress", false)] {
            let resource = Resource {
                job_state_order: order(5, phase, Some(OLD)),
                state: state(4),
                ..resource()
            };
            let state = ResourceState::of(&resource);
            assert_eq!(state.consumed().map(|c| c.state), Some(4));
            assert_eq!(state.stale().is_some(), stale, "{phase}");
            assert_eq!(
                state.next(),
                Err(CannotRedrive::Consumed {
                    state: 4,
                    finished: 5
                })
            );
        }
    }

    #[test]
    fn orphans_and_the_resources_nothing_can_re_drive() {
        let lonely = Resource {
            heat_stacks_order: order(1, "final", Some(OLD)),
            ..resource()
        };
        let state = ResourceState::of(&lonely);
        assert_eq!(state.orphans(), [Orphan::HeatStacksOrder]);
        assert_eq!(state.next(), Err(CannotRedrive::NoRecord));
        let orderless = Resource {
            job_state: stored(JS),
            ..resource()
        };
        let state = ResourceState::of(&orderless);
        assert_eq!(state.orphans(), [Orphan::JobState]);
        assert_eq!(state.next(), Err(CannotRedrive::NoOrderKey));
    }

    #[test]
    fn a_job_state_s_age_comes_from_its_order_key() {
        let resource = resource().normalized(1, OLD);
        assert_eq!(
            job_state_age(&resource, now()),
            Some(Duration::from_secs(3600))
        );
        let gone = Resource {
            job_state: None,
            ..resource
        };
        assert_eq!(job_state_age(&gone, now()), None);
    }
}
