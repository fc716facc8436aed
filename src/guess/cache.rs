//! [`RecordCache`]: what a stage last committed or read at each key, with the revision it
//! was at. Storage only: what goes in and when, and how a guess uses it, is the policy of
//! [`crate::guess`].
//!
//! Bounded by bytes (keys and values), least recently used first out: records of large
//! Heat outputs must not make a process grow. A large value the stage only compares is kept
//! as its digest ([`Kept`]), so a window of large records costs entries of a few dozen bytes.

use lru::LruCache;

use crate::plan::{Kept, Remembered, Stored};

/// What a stage's cache may hold, in bytes of keys and values.
pub const CACHE_BYTES: usize = 4 << 20;

/// A value the stage only compares is kept as its SHA-256 above this size. Below it the
/// bytes cost the cache little, and hashing each commit's record would cost CPU: a create's
/// records (about 1.5 KiB) stay bytes, a lifecycle's records of Heat outputs (1-64 KiB) go
/// to 32 bytes each.
pub const DIGEST_ABOVE: usize = 4 << 10;

/// Bytes an entry costs beyond its key and value (the map's node, the `String`, the
/// `Vec`): an estimate, so that many small entries are bounded too.
const ENTRY_OVERHEAD: usize = 96;

/// Each key's last known value and `mod_revision` (`None`: known absent), for one stage of
/// one process.
pub struct RecordCache {
    entries: LruCache<String, Option<Remembered>>,
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
    ) -> Option<Vec<(String, Option<Remembered>)>> {
        if !keys.clone().all(|key| self.entries.contains(key)) {
            return None;
        }
        Some(
            keys.map(|key| (key.clone(), self.entries.get(key).cloned().flatten()))
                .collect(),
        )
    }

    /// Remembers `stored` at `key` (`None`: absent), most recently used, dropping the least
    /// recently used entries beyond the byte bound. `compared_only`: the stage never reads
    /// this key's value, so a large one is kept as its digest.
    pub(super) fn put(&mut self, mut key: String, stored: Option<Stored>, compared_only: bool) {
        // Encoders grow their buffers by doubling, so a record may hold up to twice its
        // bytes: kept, that slack would be memory the bound does not see (see `keep`).
        key.shrink_to_fit();
        let stored = stored.map(|stored| keep(stored, compared_only));
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

/// What the cache keeps of `stored`: a large value the stage only compares as its digest,
/// any other as its bytes, without the slack of the buffer it was encoded in.
fn keep(stored: Stored, compared_only: bool) -> Remembered {
    let Stored {
        mut value,
        mod_revision,
    } = stored;
    let kept = if compared_only && value.len() > DIGEST_ABOVE {
        Kept::digest(&value)
    } else {
        value.shrink_to_fit();
        Kept::Bytes(value)
    };
    Remembered { kept, mod_revision }
}

fn cost(key: &str, stored: Option<&Remembered>) -> usize {
    key.len() + stored.map_or(0, |s| s.kept.size()) + ENTRY_OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recall(cache: &mut RecordCache, key: &str) -> Option<Option<Remembered>> {
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

    fn remembered(value: &[u8], mod_revision: i64) -> Option<Remembered> {
        Some(Remembered {
            kept: Kept::Bytes(value.to_vec()),
            mod_revision,
        })
    }

    #[test]
    fn recalls_all_of_the_keys_or_none() {
        let mut cache = RecordCache::default();
        cache.put("/a".into(), stored(b"one", 7), false);
        cache.put("/b".into(), None, false);
        let keys = ["/a".to_string(), "/b".to_string()];
        assert_eq!(
            cache.recall_all(keys.iter()),
            Some(vec![
                ("/a".into(), remembered(b"one", 7)),
                ("/b".into(), None)
            ])
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
            cache.put(format!("/{n:02}"), stored(&[0; 1000], n), false);
        }
        assert_eq!(cache.entries.len(), 10);
        assert_eq!(cache.bytes, 10 * (1000 + 3 + ENTRY_OVERHEAD));
        assert!(recall(&mut cache, "/99").is_some());
        assert!(recall(&mut cache, "/00").is_none());
        // One value over the whole limit is not kept (and does not empty the cache).
        cache.put("/huge".into(), stored(&vec![0; 1 << 20], 200), false);
        assert!(recall(&mut cache, "/huge").is_none());
        assert_eq!(cache.entries.len(), 10);
    }

    #[test]
    fn keeps_a_large_value_it_only_compares_as_its_digest() {
        let mut cache = RecordCache::default();
        let large = vec![b'x'; DIGEST_ABOVE + 1];
        let small = vec![b'x'; DIGEST_ABOVE];
        cache.put("/large".into(), stored(&large, 3), true);
        cache.put("/small".into(), stored(&small, 4), true);
        cache.put("/read".into(), stored(&large, 5), false);

        let kept = |cache: &mut RecordCache, key| recall(cache, key).unwrap().unwrap();
        let digest = kept(&mut cache, "/large");
        assert_eq!(digest.kept.size(), 32);
        assert_eq!(digest.mod_revision, 3);
        assert!(digest.kept.is(&large));
        assert!(!digest.kept.is(&small));
        assert_eq!(kept(&mut cache, "/small").kept, Kept::Bytes(small));
        assert_eq!(kept(&mut cache, "/read").kept, Kept::Bytes(large));
        let keys = 6 + 6 + 5;
        assert_eq!(
            cache.bytes,
            keys + 32 + DIGEST_ABOVE + (DIGEST_ABOVE + 1) + 3 * ENTRY_OVERHEAD
        );
    }
}
