//! Reading one resource's keys from etcd, all at one revision.

use futures_util::future::try_join_all;

use crate::keys::{Family, Keyspace};
use crate::plan::Stored;
use crate::store::{Store, Transient};

use super::resource::Resource;

/// Reads the six keys of `path`/`id` (`show`, `reconcile`) as they stood at one revision:
/// the first read is linearizable (the store as it is now), the other five are pinned to
/// the revision it answered at (and sent together), so no write in between can make the
/// keys disagree. If etcd compacts that revision meanwhile, the read fails (run the command
/// again).
pub async fn read(
    store: &Store,
    keys: &Keyspace,
    path: &str,
    id: &str,
) -> Result<Resource, Transient> {
    let mut resource = Resource::new(path, id);
    let [first, rest @ ..] = Family::ALL;
    let (stored, revision) = read_key(store, &resource.key(keys, first), None).await?;
    *resource.slot(first) = stored;
    let pinned = rest.map(|family| {
        let key = resource.key(keys, family);
        async move { read_key(store, &key, Some(revision)).await }
    });
    for (family, (stored, _)) in rest.into_iter().zip(try_join_all(pinned).await?) {
        *resource.slot(family) = stored;
    }
    resource.revision = revision;
    Ok(resource)
}

/// One key, now or at `revision`, and the store's revision when it answered.
async fn read_key(
    store: &Store,
    key: &str,
    revision: Option<i64>,
) -> Result<(Option<Stored>, i64), Transient> {
    let key = key.as_bytes();
    // The range of this one key: `[key, key + "\0")`.
    let end = [key, b"\0"].concat();
    let page = store.range_page(key, &end, 1, revision).await?;
    let stored = page.kvs.into_iter().next().map(|(_, stored)| stored);
    Ok((stored, revision.unwrap_or(page.revision)))
}
