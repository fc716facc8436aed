//! The stage's cache as its deliveries share it: one [`RecordCache`] behind a lock
//! (`Worker::cache`). What the cache holds, when it learns and how a guess uses it is
//! [`crate::guess`]'s; the runner only takes the lock, once for each touch point, never
//! across an await.

use std::sync::{Mutex, MutexGuard};

pub(super) use crate::guess::RecordCache;

/// The stage's cache, locked for one touch point.
pub(super) fn lock(cache: &Mutex<RecordCache>) -> MutexGuard<'_, RecordCache> {
    cache.lock().expect("not poisoned")
}
