//! One resource's keys as etcd holds them: bytes and revisions, before any parse.

use crate::keys::{Family, Keyspace};
use crate::plan::Stored;

/// One resource's keys, each `None` when absent, as [`read`](super::read()) reads them (all
/// six at one revision) or [`scan`](super::scan()) meets them (the five it scans, at the
/// scan's revision).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resource {
    pub path: String,
    pub id: String,
    pub heat_stacks: Option<Stored>,
    pub heat_stacks_order: Option<Stored>,
    pub job_state: Option<Stored>,
    pub job_state_order: Option<Stored>,
    pub state: Option<Stored>,
    /// Who wrote `/state`; a scan does not read it (`None`), no rule looks at it.
    pub state_lineage: Option<Stored>,
    /// The store revision every key above was read at (0: not read from a store).
    pub revision: i64,
}

impl Resource {
    /// `path`/`id` with no key.
    pub fn new(path: &str, id: &str) -> Resource {
        Resource {
            path: path.to_string(),
            id: id.to_string(),
            ..Resource::default()
        }
    }

    /// The key of `family`, as read; `None` when absent.
    pub fn get(&self, family: Family) -> Option<&Stored> {
        match family {
            Family::HeatStacks => self.heat_stacks.as_ref(),
            Family::HeatStacksOrder => self.heat_stacks_order.as_ref(),
            Family::JobState => self.job_state.as_ref(),
            Family::JobStateOrder => self.job_state_order.as_ref(),
            Family::State => self.state.as_ref(),
            Family::StateLineage => self.state_lineage.as_ref(),
        }
    }

    /// The place of the key of `family`, to fill.
    pub fn slot(&mut self, family: Family) -> &mut Option<Stored> {
        match family {
            Family::HeatStacks => &mut self.heat_stacks,
            Family::HeatStacksOrder => &mut self.heat_stacks_order,
            Family::JobState => &mut self.job_state,
            Family::JobStateOrder => &mut self.job_state_order,
            Family::State => &mut self.state,
            Family::StateLineage => &mut self.state_lineage,
        }
    }

    /// Where this resource's key of `family` lives.
    pub fn key(&self, keys: &Keyspace, family: Family) -> String {
        let (path, id) = (self.path.as_str(), self.id.as_str());
        match family {
            Family::HeatStacks => keys.heat_stack(path, id),
            Family::HeatStacksOrder => keys.heat_stack_order(path, id),
            Family::JobState => keys.job_state(path, id),
            Family::JobStateOrder => keys.job_state_order(path, id),
            Family::State => keys.state(path, id),
            Family::StateLineage => keys.state_lineage(path, id),
        }
    }
}
