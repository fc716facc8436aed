//! `heat-pipeline show`: the three records of one resource.

use crate::keys::Keyspace;
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

/// Reads the three records of `path`/`id`.
pub async fn records(
    store: &Store,
    keys: &Keyspace,
    path: &str,
    id: &str,
) -> Result<Vec<Shown>, Transient> {
    let mut shown = Vec::with_capacity(3);
    let lineage_keys = [
        keys.heat_stack_order(path, id),
        keys.job_state_order(path, id),
        keys.state_lineage(path, id),
    ];
    for ((name, key), lineage_key) in keys.records_of(path, id).into_iter().zip(lineage_keys) {
        let stored = store.get(&key, None).await?;
        let revision = stored.as_ref().map(|s| s.mod_revision);
        let value = stored.map(|s| s.value);
        let lineage = store
            .get(&lineage_key, None)
            .await?
            .and_then(|s| OrderKey::from_bytes(&s.value));
        let removed = match (&value, name) {
            (None, "job_state") => last_job_state(store, keys, path, id).await?,
            _ => None,
        };
        shown.push(Shown {
            name,
            key,
            value,
            revision,
            lineage,
            removed,
        });
    }
    Ok(shown)
}

/// The job_state record's order key is written in the same transaction as the record and
/// outlives it, so its `mod_revision` is the revision at which the last record was written.
async fn last_job_state(
    store: &Store,
    keys: &Keyspace,
    path: &str,
    id: &str,
) -> Result<Option<(i64, Vec<u8>)>, Transient> {
    let Some(order) = store.get(&keys.job_state_order(path, id), None).await? else {
        return Ok(None);
    };
    let key = keys.job_state(path, id);
    // A compacted revision is an error from etcd; history is a courtesy, so say nothing.
    Ok(store
        .get(&key, Some(order.mod_revision))
        .await
        .ok()
        .flatten()
        .map(|s| (order.mod_revision, s.value)))
}
