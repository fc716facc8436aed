//! [`RecordCache`]: what a stage last committed or read at each key, with the revision it
//! was at. Storage only: what goes in and when, and how a guess uses it, is the policy of
//! [`crate::guess`].
//!
//! Bounded by bytes (keys and values), least recently used first out: records of large
//! Heat outputs must not make a process grow.

use lru::LruCache;

use crate::plan::Stored;

/// What a stage's cache may hold, in bytes of keys and values.
pub const CACHE_BYTES: usize = 4 << 20;

/// Bytes an entry costs beyond its key and value (the map's node, the `String`, the
/// `Vec`): an estimate, so that many small entries are bounded too.
const ENTRY_OVERHEAD: usize = 96;

/// Each key's last known value and `mod_revision` (`None`: known absent), for one stage of
/// one process.
pub struct RecordCache {
    entries: LruCache<String, Option<Stored>>,
    bytes: usize,
    limit: usize,
}

impl RecordCache {
    pub fn new(limit: usize) -> RecordCache {
        RecordCache {
            entries: LruCache::unbounded(),
            bytes: 0,
            limit,
        }
    }

    /// What the cache holds at each of `keys`, if it knows every one of them (then each is
    /// marked recently used); `None` if it misses one.
    pub(super) fn recall_all<'k>(
        &mut self,
        keys: impl Iterator<Item = &'k String> + Clone,
    ) -> Option<Vec<(String, Option<Stored>)>> {
        if !keys.clone().all(|key| self.entries.contains(key)) {
            return None;
        }
        Some(
            keys.map(|key| (key.clone(), self.entries.get(key).cloned().flatten()))
                .collect(),
        )
    }

    /// Remembers `stored` at `key` (`None`: absent), most recently used, dropping the least
    /// recently used entries beyond the byte bound.
    pub(super) fn put(&mut self, mut key: String, mut stored: Option<Stored>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn recall(cache: &mut RecordCache, key: &str) -> Option<Option<Stored>> {
        let key = key.to_string();
        cache
            .recall_all(std::iter::once(&key))
            .map(|mut found| found.pop().unwrap().1)
    }

    fn stored(value: &[u8], mod_revision: i64) -> Option<Stored> {
        Some(Stored {
            value: value.to_vec(),
            mod_revision,
        })
    }

    #[test]
    fn recalls_all_of_the_keys_or_none() {
        let mut cache = RecordCache::default();
        cache.put("/a".into(), stored(b"one", 7));
        cache.put("/b".into(), None);
        let keys = ["/a".to_string(), "/b".to_string()];
        assert_eq!(
            cache.recall_all(keys.iter()),
            Some(vec![("/a".into(), stored(b"one", 7)), ("/b".into(), None)])
        );
        let more = ["/a".to_string(), "/c".to_string()];
        assert_eq!(cache.recall_all(more.iter()), None);
        assert_eq!(cache.recall_all(std::iter::empty()), Some(vec![]));
    }

    #[test]
    fn stays_within_its_bytes_oldest_out_first() {
        // Keys of 3 bytes ("/42"), values of 1,000: room for exactly ten.
        let mut cache = RecordCache::new(10 * (1000 + 3 + ENTRY_OVERHEAD));
        for n in 0..100 {
            cache.put(format!("/{n:02}"), stored(&[0; 1000], n));
        }
        assert_eq!(cache.entries.len(), 10);
        assert_eq!(cache.bytes, 10 * (1000 + 3 + ENTRY_OVERHEAD));
        assert!(recall(&mut cache, "/99").is_some());
        assert!(recall(&mut cache, "/00").is_none());
        // One value over the whole limit is not kept (and does not empty the cache).
        cache.put("/huge".into(), stored(&vec![0; 1 << 20], 200));
        assert!(recall(&mut cache, "/huge").is_none());
        assert_eq!(cache.entries.len(), 10);
    }
}
