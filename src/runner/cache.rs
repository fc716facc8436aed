//! What a stage last committed or read at each key, so that an update of a resource this
//! process handled before costs one etcd request (a commit on the remembered snapshot)
//! instead of two (a read, then a commit).
//!
//! Safe when stale: a remembered key is guarded by the revision it was seen at, so if
//! another process wrote in between, the commit's guard fails, the transaction returns the
//! keys as they stand, and the stage decides again on those. A stale entry costs a retry,
//! never a wrong record.
//!
//! Bounded by bytes (keys and values), least recently used first out: records of large
//! Heat outputs must not make a process grow.

use lru::LruCache;

use crate::plan::{Snapshot, Stored, Write};

/// What a stage's cache may hold, in bytes of keys and values.
pub(super) const CACHE_BYTES: usize = 4 << 20;

/// Bytes an entry costs beyond its key and value (the map's node, the `String`, the
/// `Vec`): an estimate, so that many small entries are bounded too.
const ENTRY_OVERHEAD: usize = 96;

pub(super) struct RecordCache {
    entries: LruCache<String, Option<Stored>>,
    bytes: usize,
    limit: usize,
}

impl RecordCache {
    pub(super) fn new(limit: usize) -> RecordCache {
        RecordCache {
            entries: LruCache::unbounded(),
            bytes: 0,
            limit,
        }
    }

    /// Fills the keys of `keys` that `snapshot` lacks from the cache, if it knows every one
    /// of them; `false` (and `snapshot` untouched) if not.
    pub(super) fn complete(&mut self, snapshot: &mut Snapshot, keys: &[String]) -> bool {
        let missing = || keys.iter().filter(|key| !snapshot.contains(key));
        if !missing().all(|key| self.entries.contains(key)) {
            return false;
        }
        let found: Vec<_> = missing()
            .map(|key| (key.clone(), self.entries.get(key).cloned().flatten()))
            .collect();
        for (key, stored) in found {
            snapshot.remember(key, stored);
        }
        true
    }

    /// Remembers every key of `snapshot` whose value and revision are known (read from
    /// etcd, or returned by a commit whose guards failed).
    pub(super) fn learn(&mut self, snapshot: &Snapshot) {
        for (key, stored) in snapshot.known() {
            self.put(key.to_string(), stored.cloned());
        }
    }

    /// Remembers what a commit applied at `revision`.
    pub(super) fn applied(&mut self, writes: Vec<Write>, revision: i64) {
        for write in writes {
            match write {
                Write::Put { key, value } => self.put(
                    key,
                    Some(Stored {
                        value,
                        mod_revision: revision,
                    }),
                ),
                Write::Delete { key } => self.put(key, None),
            }
        }
    }

    fn put(&mut self, mut key: String, mut stored: Option<Stored>) {
        // Encoders grow their buffers by doubling, so a record may hold up to twice its
        // bytes: kept, that slack would be memory the bound does not see.
        key.shrink_to_fit();
        if let Some(stored) = &mut stored {
            stored.value.shrink_to_fit();
        }
        let size = cost(&key, stored.as_ref());
        if size > self.limit {
            self.remove(&key);
            return;
        }
        if let Some((old_key, old)) = self.entries.push(key, stored) {
            self.bytes -= cost(&old_key, old.as_ref());
        }
        self.bytes += size;
        while self.bytes > self.limit {
            match self.entries.pop_lru() {
                Some((key, stored)) => self.bytes -= cost(&key, stored.as_ref()),
                None => break,
            }
        }
    }

    fn remove(&mut self, key: &str) {
        if let Some(stored) = self.entries.pop(key) {
            self.bytes -= cost(key, stored.as_ref());
        }
    }
}

impl Default for RecordCache {
    fn default() -> Self {
        RecordCache::new(CACHE_BYTES)
    }
}

fn cost(key: &str, stored: Option<&Stored>) -> usize {
    key.len() + stored.map_or(0, |s| s.value.len()) + ENTRY_OVERHEAD
}

/// The entry count and bytes, for tests.
#[cfg(test)]
impl RecordCache {
    fn usage(&self) -> (usize, usize) {
        (self.entries.len(), self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recall(cache: &mut RecordCache, keys: &[String]) -> Option<Snapshot> {
        let mut snapshot = Snapshot::default();
        cache.complete(&mut snapshot, keys).then_some(snapshot)
    }

    fn put(key: &str, value: &[u8]) -> Write {
        Write::Put {
            key: key.into(),
            value: value.to_vec(),
        }
    }

    #[test]
    fn recalls_what_was_committed_guarded_by_its_revision() {
        let mut cache = RecordCache::default();
        let keys = vec!["/a".to_string(), "/b".to_string()];
        assert!(recall(&mut cache, &keys).is_none());
        cache.applied(
            vec![put("/a", b"one"), Write::Delete { key: "/b".into() }],
            7,
        );
        let snapshot = recall(&mut cache, &keys).unwrap();
        assert!(snapshot.is_guess());
        assert_eq!(snapshot.value("/a"), Some(&b"one"[..]));
        assert_eq!(snapshot.value("/b"), None);
        let guards: Vec<_> = snapshot.guards().collect();
        assert_eq!(
            guards,
            [
                ("/a", crate::plan::Guard::Revision(7)),
                ("/b", crate::plan::Guard::Revision(0))
            ]
        );
    }

    #[test]
    fn completes_a_partial_guess_or_says_it_cannot() {
        let mut cache = RecordCache::default();
        cache.applied(vec![put("/state", b"s")], 3);
        let keys = vec!["/state".to_string(), "/job".to_string()];
        let mut guess = Snapshot::default();
        guess.assume("/job".into(), b"j".to_vec());
        assert!(cache.complete(&mut guess, &keys));
        assert_eq!(guess.value("/state"), Some(&b"s"[..]));
        let mut unknown = Snapshot::default();
        assert!(!cache.complete(&mut unknown, &keys));
    }

    #[test]
    fn stays_within_its_bytes_oldest_out_first() {
        // Keys of 3 bytes ("/42"), values of 1,000: room for exactly ten.
        let mut cache = RecordCache::new(10 * (1000 + 3 + ENTRY_OVERHEAD));
        for n in 0..100 {
            cache.applied(vec![put(&format!("/{n:02}"), &[0; 1000])], n);
        }
        let (entries, bytes) = cache.usage();
        assert_eq!(entries, 10);
        assert_eq!(bytes, 10 * (1000 + 3 + ENTRY_OVERHEAD));
        assert!(recall(&mut cache, &["/99".to_string()]).is_some());
        assert!(recall(&mut cache, &["/00".to_string()]).is_none());
        // One value over the whole limit is not kept (and does not empty the cache).
        cache.applied(vec![put("/huge", &vec![0; 1 << 20])], 200);
        assert!(recall(&mut cache, &["/huge".to_string()]).is_none());
        assert_eq!(cache.usage().0, 10);
    }
}
