//! The scan: the five key families of one prefix read side by side in key order, a page at a
//! time, at one revision, merged into one resource at a time.

use std::collections::VecDeque;

use crate::keys::{Family, Keyspace};
use crate::plan::Stored;
use crate::store::{Store, Transient};

use super::resource::Resource;

/// Keys per etcd request of a scan unless told otherwise: five pages of it stay in memory
/// (about 26 MiB at a million resources; `docs/SCALING.md`).
pub const DEFAULT_PAGE_SIZE: i64 = 5000;

/// How much a scan read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanStats {
    pub resources: u64,
    pub keys: u64,
    pub pages: u64,
    /// The store revision the whole scan saw.
    pub revision: i64,
}

/// One family's keys, read page by page. Everything below `upto` (a key suffix; `None`:
/// the family's end) has been fetched: it is in `buffer` or was visited.
struct Cursor {
    family: Family,
    prefix: Vec<u8>,
    end: Vec<u8>,
    buffer: VecDeque<(Vec<u8>, Stored)>,
    upto: Option<Vec<u8>>,
}

impl Cursor {
    fn new(keys: &Keyspace, family: Family) -> Cursor {
        let prefix = keys.family_prefix(family).into_bytes();
        let mut end = prefix.clone();
        // The prefix ends in `/`; the range ends just after every key that starts with it.
        *end.last_mut().expect("a prefix is never empty") += 1;
        Cursor {
            family,
            prefix,
            end,
            buffer: VecDeque::new(),
            upto: Some(Vec::new()),
        }
    }

    fn done(&self) -> bool {
        self.upto.is_none()
    }

    /// Whether the buffer is empty with keys still to fetch below `bound` (`None`: the end).
    fn wants(&self, bound: Option<&[u8]>) -> bool {
        match (&self.upto, bound) {
            (None, _) => false,
            (Some(_), None) => self.buffer.is_empty(),
            (Some(upto), Some(bound)) => self.buffer.is_empty() && upto.as_slice() < bound,
        }
    }

    /// Fetches the next page below `bound` (a suffix; `None`: the family's end); returns
    /// how many keys etcd counted from the start of the page to `bound`.
    async fn fill(
        &mut self,
        store: &Store,
        bound: Option<&[u8]>,
        scan: &mut ScanState,
    ) -> Result<i64, Transient> {
        let from = [
            self.prefix.as_slice(),
            self.upto.as_deref().unwrap_or_default(),
        ]
        .concat();
        let to = match bound {
            Some(bound) => [self.prefix.as_slice(), bound].concat(),
            None => self.end.clone(),
        };
        let page = loop {
            match store
                .range_page(&from, &to, scan.page_size, scan.revision)
                .await
            {
                Ok(page) => break page,
                // A page over the client's message limit (large records): smaller pages.
                Err(error) if error.is_response_too_large() && scan.page_size > 1 => {
                    scan.page_size = (scan.page_size / 4).max(1)
                }
                Err(error) => return Err(error),
            }
        };
        scan.stats.pages += 1;
        scan.revision.get_or_insert(page.revision);
        scan.stats.keys += page.kvs.len() as u64;
        self.upto = match (page.more, page.kvs.last(), bound) {
            (true, Some((last, _)), _) => {
                let mut after = last[self.prefix.len()..].to_vec();
                after.push(0);
                Some(after)
            }
            (_, _, Some(bound)) => Some(bound.to_vec()),
            (_, _, None) => None,
        };
        for (key, stored) in page.kvs {
            self.buffer
                .push_back((key[self.prefix.len()..].to_vec(), stored));
        }
        Ok(page.count)
    }
}

/// What the cursors of one scan share.
struct ScanState {
    page_size: i64,
    revision: Option<i64>,
    stats: ScanStats,
    /// How many bytes of the driver's next key bound its next request (see [`scan`]).
    depth: usize,
}

/// The first key after every key that starts with `prefix` (`None`: there is none).
fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut next = prefix.to_vec();
    while let Some(last) = next.pop() {
        if last < u8::MAX {
            next.push(last + 1);
            return Some(next);
        }
    }
    None
}

/// Scans every resource of `keys`' prefix and API version, calling `visit` once per
/// resource (in key order of `<path>/<id>`), with a few pages of `page_size` keys in memory.
/// All pages are read at the revision of the first, so the scan sees one state of the
/// store; if etcd compacts that revision meanwhile, the scan fails (run it again).
///
/// etcd (3.4) walks the whole of a range to count it on every request, limited or not, so
/// pages read "from here to the end" would cost O(n²) in etcd (1.1 s a page at a million
/// keys). So every request is bounded: the heat_stacks order keys (every resource the
/// pipeline touched has one) drive, read in windows of keys sharing a prefix of the next
/// key, one byte longer when etcd counted too many in the last window, one shorter when
/// too few; the other families are read up to where the driver's page ended. When the
/// driver is done, the others continue to their end.
pub async fn scan(
    store: &Store,
    keys: &Keyspace,
    page_size: i64,
    mut visit: impl FnMut(Resource),
) -> Result<ScanStats, Transient> {
    // The driver first.
    let order = [
        Family::HeatStacksOrder,
        Family::HeatStacks,
        Family::JobState,
        Family::JobStateOrder,
        Family::State,
    ];
    let mut cursors: Vec<Cursor> = order.iter().map(|f| Cursor::new(keys, *f)).collect();
    let mut scan = ScanState {
        page_size: page_size.max(1),
        revision: None,
        stats: ScanStats::default(),
        depth: 8,
    };
    loop {
        if cursors[0].wants(None) {
            // The driver's window: keys sharing the first `depth` bytes of the next one
            // (the whole rest for the first request). etcd's count of the window says
            // whether it was too wide or too narrow for the next.
            let from = cursors[0].upto.clone().unwrap_or_default();
            let bound = if from.is_empty() {
                None
            } else {
                successor(&from[..scan.depth.min(from.len())])
            };
            let count = cursors[0].fill(store, bound.as_deref(), &mut scan).await?;
            if count > 8 * scan.page_size {
                scan.depth += 1;
            } else if count < scan.page_size / 2 && scan.depth > 1 {
                scan.depth -= 1;
            }
        }
        // The window: what the driver has fetched.
        let bound = cursors[0].upto.clone();
        for cursor in &mut cursors[1..] {
            if cursor.wants(bound.as_deref()) {
                cursor.fill(store, bound.as_deref(), &mut scan).await?;
            }
        }
        if cursors.iter().all(|c| c.done() && c.buffer.is_empty()) {
            break;
        }
        // The smallest key fetched, if no cursor may still hold a smaller one unfetched.
        let floor = cursors
            .iter()
            .filter(|c| c.buffer.is_empty() && !c.done())
            .filter_map(|c| c.upto.as_ref())
            .min();
        let Some(next) = cursors
            .iter()
            .filter_map(|c| c.buffer.front().map(|(suffix, _)| suffix))
            .min()
            .filter(|next| floor.is_none_or(|floor| *next < floor))
            .cloned()
        else {
            continue;
        };
        let suffix = String::from_utf8_lossy(&next);
        let (path, id) = suffix.split_once('/').unwrap_or((&suffix, ""));
        let mut resource = Resource::new(path, id);
        resource.revision = scan.revision.unwrap_or(0);
        for cursor in &mut cursors {
            if cursor.buffer.front().is_some_and(|(s, _)| *s == next) {
                let (_, stored) = cursor.buffer.pop_front().expect("a front");
                *resource.slot(cursor.family) = Some(stored);
            }
        }
        scan.stats.resources += 1;
        visit(resource);
    }
    scan.stats.revision = scan.revision.unwrap_or(0);
    Ok(scan.stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_successor_of_a_prefix_bounds_every_key_that_starts_with_it() {
        assert_eq!(successor(b"ports/0a"), Some(b"ports/0b".to_vec()));
        assert_eq!(successor(b"a\xff\xff"), Some(b"b".to_vec()));
        assert_eq!(successor(b"\xff"), None);
        assert_eq!(successor(b""), None);
    }
}
