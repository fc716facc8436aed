//! One resource's keys as a scan (or `reconcile`) reads them, and parsed.

use std::time::{Duration, SystemTime};

use crate::keys::{Family, Keyspace};
use crate::plan::Stored;
use crate::records::{HeatStackRecord, JobStateRecord, Order, OrderKey, StateRecord};
use crate::store::{Store, Transient};

/// The families a scan reads, in the order of a [`Resource`]'s keys.
const SCANNED: [Family; 5] = [
    Family::HeatStacks,
    Family::HeatStacksOrder,
    Family::JobState,
    Family::JobStateOrder,
    Family::State,
];

/// One resource's keys as the scan found them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resource {
    pub path: String,
    pub id: String,
    pub heat_stacks: Option<Stored>,
    pub heat_stacks_order: Option<Stored>,
    pub job_state: Option<Stored>,
    pub job_state_order: Option<Stored>,
    pub state: Option<Stored>,
}

impl Resource {
    pub(super) fn slot(&mut self, family: Family) -> &mut Option<Stored> {
        match family {
            Family::HeatStacks => &mut self.heat_stacks,
            Family::HeatStacksOrder => &mut self.heat_stacks_order,
            Family::JobState => &mut self.job_state,
            Family::JobStateOrder => &mut self.job_state_order,
            Family::State | Family::StateLineage => &mut self.state,
        }
    }

    /// Reads one resource's keys (for `reconcile`).
    pub async fn read(
        store: &Store,
        keys: &Keyspace,
        path: &str,
        id: &str,
    ) -> Result<Resource, Transient> {
        let mut resource = Resource {
            path: path.to_string(),
            id: id.to_string(),
            ..Resource::default()
        };
        let wanted = [
            keys.heat_stack(path, id),
            keys.heat_stack_order(path, id),
            keys.job_state(path, id),
            keys.job_state_order(path, id),
            keys.state(path, id),
        ];
        for (family, key) in SCANNED.into_iter().zip(wanted) {
            *resource.slot(family) = store.get(&key, None).await?;
        }
        Ok(resource)
    }
}

/// A resource's keys, parsed: `Err` for a present key that does not parse.
pub struct Parsed {
    pub heat_stacks: Option<Result<HeatStackRecord, String>>,
    pub heat_stacks_order: Option<Result<OrderKey, String>>,
    pub job_state: Option<Result<JobStateRecord, String>>,
    pub job_state_order: Option<Result<OrderKey, String>>,
    pub state: Option<Result<StateRecord, String>>,
}

fn parse<T: serde::de::DeserializeOwned>(stored: &Option<Stored>) -> Option<Result<T, String>> {
    stored
        .as_ref()
        .map(|s| serde_json::from_slice(&s.value).map_err(|e| e.to_string()))
}

impl Parsed {
    pub fn of(resource: &Resource) -> Parsed {
        Parsed {
            heat_stacks: parse(&resource.heat_stacks),
            heat_stacks_order: parse(&resource.heat_stacks_order),
            job_state: parse(&resource.job_state),
            job_state_order: parse(&resource.job_state_order),
            state: parse(&resource.state),
        }
    }
}

/// How old `resource`'s job_state is at `now`, from its order key's `written_at`; `None`
/// without a job_state or without a time (a key from before lineage).
pub fn job_state_age(resource: &Resource, now: SystemTime) -> Option<Duration> {
    resource.job_state.as_ref()?;
    let order = OrderKey::from_bytes(&resource.job_state_order.as_ref()?.value)?;
    let at = humantime::parse_rfc3339(order.written_at.as_deref()?).ok()?;
    Some(now.duration_since(at).unwrap_or(Duration::ZERO))
}

/// The [`Order`] of an order key's bytes, old format or new.
pub fn order_of(stored: &Option<Stored>) -> Option<Order> {
    stored.as_ref().and_then(|s| Order::from_bytes(&s.value))
}
