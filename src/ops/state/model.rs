//! What a resource's keys say, parsed once: each record and order key as its type, absent,
//! or unreadable (with why). Pure; the rules on it are in `rules.rs`.

use serde::de::DeserializeOwned;

use crate::keys::Family;
use crate::plan::Stored;
use crate::records::{HeatStackRecord, JobStateRecord, OrderKey, StateRecord};

use super::resource::Resource;

/// A present key that does not parse as its format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} does not parse as its format: {reason}", key_words(*.family))]
pub struct Unreadable {
    pub family: Family,
    /// The parser's words.
    pub reason: String,
}

/// One key, parsed: `None` when absent.
pub type Parsed<T> = Option<Result<T, Unreadable>>;

/// A resource's keys, each parsed once.
#[derive(Debug, Clone)]
pub struct ResourceState<'a> {
    /// The keys as stored (bytes and revisions).
    pub resource: &'a Resource,
    pub heat_stacks: Parsed<HeatStackRecord>,
    pub heat_stacks_order: Parsed<OrderKey>,
    pub job_state: Parsed<JobStateRecord>,
    pub job_state_order: Parsed<OrderKey>,
    pub state: Parsed<StateRecord>,
    /// `/state`'s lineage key; `None` when absent or unreadable (only `show` reads it).
    pub state_lineage: Option<OrderKey>,
}

/// `/state`'s version, as the rules see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateVersion {
    Absent,
    At(u64),
    /// `/state` does not parse: no rule decides on it.
    Unreadable,
}

impl StateVersion {
    /// Whether `/state` is known to be below `version` (an absent one is).
    pub fn below(self, version: u64) -> bool {
        match self {
            StateVersion::Absent => true,
            StateVersion::At(v) => v < version,
            StateVersion::Unreadable => false,
        }
    }
}

fn parse<T: DeserializeOwned>(stored: &Option<Stored>, family: Family) -> Parsed<T> {
    stored.as_ref().map(|s| {
        serde_json::from_slice(&s.value).map_err(|e| Unreadable {
            family,
            reason: e.to_string(),
        })
    })
}

/// The value of a key that parsed; `None` when absent or unreadable.
pub fn ok<T>(parsed: &Parsed<T>) -> Option<&T> {
    parsed.as_ref().and_then(|r| r.as_ref().ok())
}

fn err<T>(parsed: &Parsed<T>) -> Option<&Unreadable> {
    parsed.as_ref().and_then(|r| r.as_ref().err())
}

impl<'a> ResourceState<'a> {
    pub fn of(resource: &'a Resource) -> ResourceState<'a> {
        ResourceState {
            resource,
            heat_stacks: parse(&resource.heat_stacks, Family::HeatStacks),
            heat_stacks_order: parse(&resource.heat_stacks_order, Family::HeatStacksOrder),
            job_state: parse(&resource.job_state, Family::JobState),
            job_state_order: parse(&resource.job_state_order, Family::JobStateOrder),
            state: parse(&resource.state, Family::State),
            state_lineage: (resource.state_lineage.as_ref())
                .and_then(|s| OrderKey::from_bytes(&s.value)),
        }
    }

    pub fn state_version(&self) -> StateVersion {
        match &self.state {
            None => StateVersion::Absent,
            Some(Ok(state)) => StateVersion::At(state.version),
            Some(Err(_)) => StateVersion::Unreadable,
        }
    }

    /// The order key (or, for `/state`, the lineage key) that says who wrote the record of
    /// `record` and for which version, if it parsed; `None` for a family that is no record.
    pub fn lineage_of(&self, record: Family) -> Option<&OrderKey> {
        match record {
            Family::HeatStacks => ok(&self.heat_stacks_order),
            Family::JobState => ok(&self.job_state_order),
            Family::State => self.state_lineage.as_ref(),
            _ => None,
        }
    }

    /// The key of `family` if it is an order key that parsed.
    pub fn order(&self, family: Family) -> Option<&OrderKey> {
        match family {
            Family::HeatStacksOrder => ok(&self.heat_stacks_order),
            Family::JobStateOrder => ok(&self.job_state_order),
            _ => None,
        }
    }

    /// Why the key of `family` is unreadable, if it is (never the lineage key: nothing
    /// decides on it).
    pub fn unreadable(&self, family: Family) -> Option<&Unreadable> {
        match family {
            Family::HeatStacks => err(&self.heat_stacks),
            Family::HeatStacksOrder => err(&self.heat_stacks_order),
            Family::JobState => err(&self.job_state),
            Family::JobStateOrder => err(&self.job_state_order),
            Family::State => err(&self.state),
            Family::StateLineage => None,
        }
    }
}

/// A key of `family` in words: `heat_stacks`, `heat_stacks order key`, `/state`, ...
pub fn key_words(family: Family) -> &'static str {
    match family {
        Family::HeatStacks => "heat_stacks",
        Family::HeatStacksOrder => "heat_stacks order key",
        Family::JobState => "job_state",
        Family::JobStateOrder => "job_state order key",
        Family::State => "/state",
        Family::StateLineage => "/state lineage key",
    }
}
