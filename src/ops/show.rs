//! `heat-pipeline show`: the three records of one resource, read at one revision.

use crate::keys::{Family, Keyspace};
use crate::ops::state::{self, Resource, ResourceState};
use crate::records::OrderKey;
use crate::store::{Store, Transient};

/// One record as `show` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    /// `heat_stacks`, `job_state` or `state`.
    pub name: &'static str,
    pub key: String,
    pub value: Option<Vec<u8>>,
    /// The etcd revision that last wrote the record.
    pub revision: Option<i64>,
    /// Who wrote it: the order key beside it (for `/state`, its lineage key) with its
    /// version and phase, and, when written by a version that keeps lineage, the stage,
    /// time and trace id. `None` when that key is absent or unreadable.
    pub lineage: Option<OrderKey>,
    /// For a job_state that wrap already removed: its last value and the revision it was
    /// written at, read from etcd's history (absent once etcd compacted that revision).
    pub removed: Option<(i64, Vec<u8>)>,
}

/// The records `show` prints, in order, with their names.
const RECORDS: [(&str, Family); 3] = [
    ("heat_stacks", Family::HeatStacks),
    ("job_state", Family::JobState),
    ("state", Family::State),
];

/// Reads the three records of `path`/`id`, with the keys that say who wrote them, at one
/// revision.
pub async fn records(
    store: &Store,
    keys: &Keyspace,
    path: &str,
    id: &str,
) -> Result<Vec<Shown>, Transient> {
    let resource = state::read(store, keys, path, id).await?;
    let mut removed = match resource.job_state {
        None => last_job_state(store, keys, &resource).await?,
        Some(_) => None,
    };
    let parsed = ResourceState::of(&resource);
    let shown = RECORDS.map(|(name, family)| {
        let stored = resource.get(family);
        Shown {
            name,
            key: resource.key(keys, family),
            value: stored.map(|s| s.value.clone()),
            revision: stored.map(|s| s.mod_revision),
            lineage: parsed.lineage_of(family).cloned(),
            removed: match family {
                Family::JobState => removed.take(),
                _ => None,
            },
        }
    });
    Ok(shown.into())
}

/// The job_state record's order key is written in the same transaction as the record and
/// outlives it, so its `mod_revision` is the revision at which the last record was written.
async fn last_job_state(
    store: &Store,
    keys: &Keyspace,
    resource: &Resource,
) -> Result<Option<(i64, Vec<u8>)>, Transient> {
    let Some(order) = &resource.job_state_order else {
        return Ok(None);
    };
    let key = resource.key(keys, Family::JobState);
    // A compacted revision is an error from etcd; history is a courtesy, so say nothing.
    Ok(store
        .get(&key, Some(order.mod_revision))
        .await
        .ok()
        .flatten()
        .map(|s| (order.mod_revision, s.value)))
}
