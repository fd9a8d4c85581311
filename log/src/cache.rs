//! [`ReadCache`]: one shard's cache of segment bytes, shared by every partition log the
//! shard owns: what Kafka gets from the page cache and Redpanda from its batch cache.
//!
//! Segment data is written and read with direct I/O, so without this cache every read
//! of data older than the write in flight would go to the disk. The cache keeps:
//! - the bytes of every completed write (inserted when the write completes, before
//!   the written offset moves past them), so tailing readers and readers of a recent
//!   backlog never touch the disk;
//! - the read-ahead windows that readers fetched from the disk, so the next fetch of
//!   the same reader, and every other reader of the same data, is served from memory.
//!
//! Entries are `Bytes` (refcounted, `Send`) holding a byte range of one segment file of
//! one log. A read answered by a single entry is a slice of it (no copy); a read
//! spanning entries is copied once into a buffer sized for the whole answer, and when
//! those entries are small (the pieces of writes) the answer replaces them, so the next
//! reader of the same range (another consumer, or a re-read) gets a slice. Entries
//! of a log and segment never overlap. The budget ([`LogConfig::cache_max_bytes`],
//! `log.cache.max.bytes`) counts the bytes of the entries; when an insert would exceed
//! it, the least recently used entries of any log of the shard are evicted. Bytes a
//! reader still holds stay alive until it drops them, outside the budget.
//!
//! The cache is only a cache: it holds copies of bytes whose write to the segment file
//! completed (or that were read back from it), so losing it loses nothing. The logs
//! invalidate it exactly when the bytes it holds stop being the file's: truncation
//! drops the entries past the cut, segment deletion (retention, DeleteRecords, full
//! truncation) drops the segment's entries, and closing, deleting or dropping a log
//! drops all of its entries.
//!
//! Lives on one shard (`!Send`, `Rc`); [`ReadCache::for_shard`] is the shard's instance.
//!
//! [`LogConfig::cache_max_bytes`]: sluice_core::config::LogConfig::cache_max_bytes

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};

/// A written range that follows on from an entry shorter than this is merged into it
/// (by a copy of both), so that a slow producer's many small writes do not become as
/// many tiny entries. Copying is bounded by this much per write.
const MERGE_BELOW_BYTES: usize = 64 * 1024;

/// A read answer copied from several entries replaces them only when none is larger
/// than this (see [`ReadCache::promote`]).
const PROMOTE_PIECES_UP_TO_BYTES: usize = 256 * 1024;

thread_local! {
    /// The shard's cache (a shard is one thread).
    static SHARD_CACHE: Rc<ReadCache> = ReadCache::new(0);
}

/// Where an entry's bytes are: which log, which segment, which file position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    log_id: u64,
    segment_base: i64,
    file_pos: u64,
}

impl Key {
    fn new(log_id: u64, segment_base: i64, file_pos: u64) -> Key {
        Key {
            log_id,
            segment_base,
            file_pos,
        }
    }
}

struct Entry {
    data: Bytes,
    /// Recency: the value of the cache's clock at the entry's last use.
    tick: u64,
}

impl Entry {
    fn end(&self, key: &Key) -> u64 {
        key.file_pos + self.data.len() as u64
    }
}

/// Counters of a [`ReadCache`], for tests, benchmarks and metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered by an entry.
    pub hits: u64,
    /// Lookups that found nothing (the reader went to the disk).
    pub misses: u64,
    /// Bytes inserted (written data and read-ahead windows).
    pub inserted_bytes: u64,
    /// Bytes evicted to stay within the budget.
    pub evicted_bytes: u64,
    /// Bytes held now.
    pub used_bytes: usize,
    /// Entries held now.
    pub entries: usize,
}

struct CacheInner {
    budget_bytes: usize,
    used_bytes: usize,
    /// Logical clock for recency.
    clock: u64,
    next_log_id: u64,
    entries: BTreeMap<Key, Entry>,
    /// Entries by recency: `tick -> key`, oldest first.
    lru: BTreeMap<u64, Key>,
    stats: CacheStats,
}

impl CacheInner {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// The entry holding `file_pos` of the segment, if any.
    fn containing(&self, log_id: u64, segment_base: i64, file_pos: u64) -> Option<Key> {
        let (key, entry) = self
            .entries
            .range(..=Key::new(log_id, segment_base, file_pos))
            .next_back()?;
        (key.log_id == log_id && key.segment_base == segment_base && entry.end(key) > file_pos)
            .then_some(*key)
    }

    fn remove(&mut self, key: &Key) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        self.lru.remove(&entry.tick);
        self.used_bytes -= entry.data.len();
        Some(entry)
    }

    /// Evicts least recently used entries until `incoming` more bytes fit.
    fn make_room(&mut self, incoming: usize) {
        while self.used_bytes + incoming > self.budget_bytes {
            let Some((_, key)) = self.lru.pop_first() else {
                break;
            };
            let entry = self
                .entries
                .remove(&key)
                .expect("every recency record has its entry");
            self.used_bytes -= entry.data.len();
            self.stats.evicted_bytes += entry.data.len() as u64;
        }
    }

    /// Inserts `data` at `key` unless it overlaps an entry or exceeds the budget.
    fn insert(&mut self, key: Key, data: Bytes) {
        let len = data.len();
        if len == 0 || len > self.budget_bytes {
            return;
        }
        let end = key.file_pos + len as u64;
        let before_overlaps = self
            .containing(key.log_id, key.segment_base, key.file_pos)
            .is_some();
        let after_overlaps = self.entries.range(key..).next().is_some_and(|(k, _)| {
            k.log_id == key.log_id && k.segment_base == key.segment_base && k.file_pos < end
        });
        if before_overlaps || after_overlaps {
            // Another reader cached (part of) the range meanwhile.
            return;
        }
        self.make_room(len);
        let tick = self.tick();
        self.used_bytes += len;
        self.stats.inserted_bytes += len as u64;
        self.lru.insert(tick, key);
        self.entries.insert(key, Entry { data, tick });
    }

    fn check(&self) {
        debug_assert_eq!(self.entries.len(), self.lru.len());
        debug_assert_eq!(
            self.used_bytes,
            self.entries.values().map(|e| e.data.len()).sum::<usize>()
        );
    }
}

/// One shard's cache of segment bytes (see the module documentation).
pub struct ReadCache {
    inner: RefCell<CacheInner>,
}

impl ReadCache {
    /// A cache holding at most `budget_bytes` (0 caches nothing).
    pub fn new(budget_bytes: usize) -> Rc<ReadCache> {
        Rc::new(ReadCache {
            inner: RefCell::new(CacheInner {
                budget_bytes,
                used_bytes: 0,
                clock: 0,
                next_log_id: 0,
                entries: BTreeMap::new(),
                lru: BTreeMap::new(),
                stats: CacheStats::default(),
            }),
        })
    }

    /// The current shard's cache, with its budget set to `budget_bytes` (every log of a
    /// broker is opened with the same `log.cache.max.bytes`).
    pub fn for_shard(budget_bytes: usize) -> Rc<ReadCache> {
        let cache = SHARD_CACHE.with(Rc::clone);
        cache.set_budget(budget_bytes);
        cache
    }

    /// The current shard's cache as it is, for reporting (no budget change).
    pub fn current() -> Rc<ReadCache> {
        SHARD_CACHE.with(Rc::clone)
    }

    /// Changes the budget, evicting down to it at once.
    pub fn set_budget(&self, budget_bytes: usize) {
        let mut inner = self.inner.borrow_mut();
        inner.budget_bytes = budget_bytes;
        inner.make_room(0);
    }

    pub fn budget_bytes(&self) -> usize {
        self.inner.borrow().budget_bytes
    }

    pub fn stats(&self) -> CacheStats {
        let inner = self.inner.borrow();
        inner.check();
        CacheStats {
            used_bytes: inner.used_bytes,
            entries: inner.entries.len(),
            ..inner.stats
        }
    }

    /// A fresh id for a log opened on this cache; never reused, so a reopened log
    /// never sees another's entries.
    pub(crate) fn register_log(&self) -> u64 {
        let mut inner = self.inner.borrow_mut();
        inner.next_log_id += 1;
        inner.next_log_id
    }

    /// The entry holding `file_pos` of the segment: `(its file position, its bytes)`.
    /// Marks it most recently used.
    pub(crate) fn get(
        &self,
        log_id: u64,
        segment_base: i64,
        file_pos: u64,
    ) -> Option<(u64, Bytes)> {
        let mut inner = self.inner.borrow_mut();
        let Some(key) = inner.containing(log_id, segment_base, file_pos) else {
            inner.stats.misses += 1;
            return None;
        };
        inner.stats.hits += 1;
        let tick = inner.tick();
        let entry = inner.entries.get_mut(&key).expect("just found");
        let old = std::mem::replace(&mut entry.tick, tick);
        let data = entry.data.clone();
        inner.lru.remove(&old);
        inner.lru.insert(tick, key);
        Some((key.file_pos, data))
    }

    /// File position of the first entry of the segment that starts after `file_pos`.
    pub(crate) fn next_start_after(
        &self,
        log_id: u64,
        segment_base: i64,
        file_pos: u64,
    ) -> Option<u64> {
        let inner = self.inner.borrow();
        let from = Key::new(log_id, segment_base, file_pos.checked_add(1)?);
        inner
            .entries
            .range(from..)
            .next()
            .filter(|(k, _)| k.log_id == log_id && k.segment_base == segment_base)
            .map(|(k, _)| k.file_pos)
    }

    /// Caches `data`, read from the segment file at `file_pos`. Skipped when it
    /// overlaps an entry (another reader was first) or exceeds the budget.
    pub(crate) fn insert_read(&self, log_id: u64, segment_base: i64, file_pos: u64, data: Bytes) {
        self.inner
            .borrow_mut()
            .insert(Key::new(log_id, segment_base, file_pos), data);
    }

    /// Caches `data`, just written to the segment file at `file_pos` (where the
    /// previously written bytes end). Merged into the entry ending there when that is
    /// short. Copies `data` only when the cache has a budget.
    pub(crate) fn insert_written(
        &self,
        log_id: u64,
        segment_base: i64,
        file_pos: u64,
        data: &[u8],
    ) {
        let mut inner = self.inner.borrow_mut();
        if data.is_empty() || inner.budget_bytes == 0 {
            return;
        }
        let short_previous = file_pos.checked_sub(1).and_then(|last| {
            inner.containing(log_id, segment_base, last).filter(|k| {
                let e = &inner.entries[k];
                e.end(k) == file_pos && e.data.len() < MERGE_BELOW_BYTES
            })
        });
        match short_previous {
            Some(key) => {
                let old = inner.remove(&key).expect("just found");
                let mut merged = BytesMut::with_capacity(old.data.len() + data.len());
                merged.extend_from_slice(&old.data);
                merged.extend_from_slice(data);
                inner.insert(key, merged.freeze());
            }
            _ => inner.insert(
                Key::new(log_id, segment_base, file_pos),
                Bytes::copy_from_slice(data),
            ),
        }
    }

    /// Caches `data`, the bytes at `file_pos` of the segment, which a reader copied
    /// together from several entries (the answer to a read), in place of them, so the
    /// next read of the same range is a slice of one entry. The entries it overlaps
    /// are cut to their parts outside it, copied, so that no memory is held twice.
    /// Only done over entries of at most [`PROMOTE_PIECES_UP_TO_BYTES`] (the pieces
    /// of writes): over read-ahead windows the copies would cost more than they save.
    pub(crate) fn promote(&self, log_id: u64, segment_base: i64, file_pos: u64, data: Bytes) {
        let mut inner = self.inner.borrow_mut();
        let len = data.len();
        if len == 0 || len > inner.budget_bytes {
            return;
        }
        let end = file_pos + len as u64;
        let mut overlapping: Vec<Key> = inner
            .containing(log_id, segment_base, file_pos)
            .into_iter()
            .chain(
                inner
                    .entries
                    .range(
                        Key::new(log_id, segment_base, file_pos)
                            ..Key::new(log_id, segment_base, end),
                    )
                    .map(|(k, _)| *k),
            )
            .collect();
        overlapping.dedup();
        if overlapping
            .iter()
            .any(|k| inner.entries[k].data.len() > PROMOTE_PIECES_UP_TO_BYTES)
        {
            return;
        }
        let mut parts = Vec::new();
        for key in overlapping {
            let entry = inner.remove(&key).expect("just found");
            let entry_end = entry.end(&key);
            if key.file_pos < file_pos {
                let front = &entry.data[..(file_pos - key.file_pos) as usize];
                parts.push((key, Bytes::copy_from_slice(front)));
            }
            if entry_end > end {
                let back = &entry.data[(end - key.file_pos) as usize..];
                parts.push((
                    Key::new(log_id, segment_base, end),
                    Bytes::copy_from_slice(back),
                ));
            }
        }
        inner.insert(Key::new(log_id, segment_base, file_pos), data);
        for (key, part) in parts {
            inner.insert(key, part);
        }
    }

    /// Drops the log's entries for which `gone(segment_base, file_pos, end_pos)` holds.
    pub(crate) fn invalidate(&self, log_id: u64, gone: impl Fn(i64, u64, u64) -> bool) {
        let mut inner = self.inner.borrow_mut();
        let victims: Vec<Key> = inner
            .entries
            .range(Key::new(log_id, i64::MIN, 0)..=Key::new(log_id, i64::MAX, u64::MAX))
            .filter(|(k, e)| gone(k.segment_base, k.file_pos, e.end(k)))
            .map(|(k, _)| *k)
            .collect();
        for key in victims {
            inner.remove(&key);
        }
    }

    /// Drops every entry of the log.
    pub(crate) fn remove_log(&self, log_id: u64) {
        self.invalidate(log_id, |_, _, _| true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(len: usize, fill: u8) -> Bytes {
        Bytes::from(vec![fill; len])
    }

    #[test]
    fn hit_miss_and_containing_entry() {
        let cache = ReadCache::new(1 << 20);
        let log = cache.register_log();
        cache.insert_read(log, 0, 100, bytes(50, 7));
        assert_eq!(cache.get(log, 0, 99), None);
        assert_eq!(
            cache.get(log, 0, 100).map(|(p, b)| (p, b.len())),
            Some((100, 50))
        );
        assert_eq!(cache.get(log, 0, 149).map(|(p, _)| p), Some(100));
        assert_eq!(cache.get(log, 0, 150), None);
        // Another segment or log does not see it.
        assert_eq!(cache.get(log, 1, 120), None);
        assert_eq!(cache.get(log + 1, 0, 120), None);
        let s = cache.stats();
        assert_eq!((s.hits, s.misses, s.used_bytes, s.entries), (2, 4, 50, 1));
        assert_eq!(cache.next_start_after(log, 0, 0), Some(100));
        assert_eq!(cache.next_start_after(log, 0, 100), None);
    }

    #[test]
    fn overlapping_inserts_are_skipped() {
        let cache = ReadCache::new(1 << 20);
        let log = cache.register_log();
        cache.insert_read(log, 0, 100, bytes(50, 1));
        cache.insert_read(log, 0, 120, bytes(100, 2)); // starts inside
        cache.insert_read(log, 0, 0, bytes(101, 3)); // ends inside
        cache.insert_read(log, 0, 0, bytes(100, 4)); // touches: fine
        cache.insert_read(log, 0, 150, bytes(10, 5)); // touches: fine
        let s = cache.stats();
        assert_eq!((s.entries, s.used_bytes), (3, 160));
        assert_eq!(cache.get(log, 0, 99).unwrap().1[0], 4);
        assert_eq!(cache.get(log, 0, 149).unwrap().1[0], 1);
        assert_eq!(cache.get(log, 0, 150).unwrap().1[0], 5);
    }

    #[test]
    fn budget_is_shared_across_logs_and_evicts_least_recently_used() {
        let cache = ReadCache::new(300);
        let (a, b) = (cache.register_log(), cache.register_log());
        cache.insert_read(a, 0, 0, bytes(100, 1));
        cache.insert_read(b, 0, 0, bytes(100, 2));
        cache.insert_read(a, 0, 100, bytes(100, 3));
        // Use a's first entry: b's becomes the oldest.
        assert!(cache.get(a, 0, 0).is_some());
        cache.insert_read(b, 5, 0, bytes(100, 4));
        assert!(
            cache.get(b, 0, 0).is_none(),
            "least recently used went first"
        );
        assert!(cache.get(a, 0, 0).is_some());
        assert!(cache.get(a, 0, 100).is_some());
        assert!(cache.get(b, 5, 0).is_some());
        let s = cache.stats();
        assert_eq!((s.used_bytes, s.evicted_bytes), (300, 100));
        // Larger than the whole budget: not cached, nothing evicted.
        cache.insert_read(b, 6, 0, bytes(301, 5));
        assert_eq!(cache.stats().used_bytes, 300);
        // Shrinking the budget evicts at once, oldest first (a@0 was used before a@100
        // and b@5 in the lookups above).
        cache.set_budget(200);
        assert!(cache.get(a, 0, 0).is_none());
        assert!(cache.get(a, 0, 100).is_some());
        assert_eq!(cache.stats().used_bytes, 200);
        cache.set_budget(0);
        let s = cache.stats();
        assert_eq!((s.used_bytes, s.entries), (0, 0));
    }

    #[test]
    fn small_writes_merge_into_the_entry_they_follow() {
        let cache = ReadCache::new(1 << 20);
        let log = cache.register_log();
        cache.insert_written(log, 0, 0, &[1; 10]);
        cache.insert_written(log, 0, 10, &[2; 10]);
        let (pos, data) = cache.get(log, 0, 15).unwrap();
        assert_eq!((pos, &data[..]), (0, &[[1u8; 10], [2u8; 10]].concat()[..]));
        let big = MERGE_BELOW_BYTES as u64;
        cache.insert_written(log, 0, 20, &[3; MERGE_BELOW_BYTES]);
        assert_eq!(cache.stats().entries, 1, "merged into the short entry");
        // The entry is no longer short: the next write is an entry of its own.
        cache.insert_written(log, 0, 20 + big, &[4; 10]);
        let s = cache.stats();
        assert_eq!((s.entries, s.used_bytes), (2, 30 + MERGE_BELOW_BYTES));
        assert_eq!(cache.get(log, 0, 20 + big).unwrap().0, 20 + big);
        // Not contiguous with the previous entry: an entry of its own.
        cache.insert_written(log, 0, 1_000_000, &[5; 5]);
        assert_eq!(cache.stats().entries, 3);
        // Without a budget nothing is copied or kept.
        let off = ReadCache::new(0);
        let log = off.register_log();
        off.insert_written(log, 0, 0, &[1; 10]);
        assert_eq!(off.stats().entries, 0);
    }

    #[test]
    fn promoted_range_replaces_the_entries_it_overlaps() {
        let cache = ReadCache::new(1 << 20);
        let log = cache.register_log();
        for (i, pos) in [0u64, 100, 200, 300].into_iter().enumerate() {
            cache.insert_read(log, 0, pos, bytes(100, i as u8));
        }
        // A reader's answer [150, 250): two entries' worth, copied together.
        let answer: Vec<u8> = [vec![1u8; 50], vec![2u8; 50]].concat();
        cache.promote(log, 0, 150, Bytes::from(answer.clone()));
        let (pos, data) = cache.get(log, 0, 160).unwrap();
        assert_eq!((pos, &data[..]), (150, &answer[..]));
        // The cut entries keep their outside parts.
        let found = |pos| cache.get(log, 0, pos).map(|(p, d)| (p, d.len()));
        assert_eq!(found(120), Some((100, 50)));
        assert_eq!(found(260), Some((250, 50)));
        assert_eq!(found(0), Some((0, 100)));
        let s = cache.stats();
        assert_eq!((s.entries, s.used_bytes), (5, 400));
        // Promoting over exactly one entry's range replaces it.
        cache.promote(log, 0, 0, bytes(100, 9));
        assert_eq!(cache.get(log, 0, 50).unwrap().1[0], 9);
        assert_eq!(cache.stats().entries, 5);
        // Not over a large entry (a read-ahead window): nothing changes.
        cache.insert_read(log, 0, 1000, bytes(PROMOTE_PIECES_UP_TO_BYTES + 1, 7));
        cache.promote(log, 0, 350, bytes(700, 8));
        assert_eq!(cache.get(log, 0, 360).unwrap().0, 300);
        assert_eq!(cache.stats().entries, 6);
    }

    #[test]
    fn invalidation_is_per_log_and_exact() {
        let cache = ReadCache::new(1 << 20);
        let (a, b) = (cache.register_log(), cache.register_log());
        for seg in [0i64, 100, 200] {
            cache.insert_read(a, seg, 0, bytes(10, 1));
            cache.insert_read(a, seg, 10, bytes(10, 1));
            cache.insert_read(b, seg, 0, bytes(10, 1));
        }
        // Like truncate_to(segment 100, size 15): later segments, and entries of the
        // cut segment ending past 15.
        cache.invalidate(a, |seg, _, end| seg > 100 || (seg == 100 && end > 15));
        assert!(cache.get(a, 0, 15).is_some());
        assert!(cache.get(a, 100, 5).is_some());
        assert!(cache.get(a, 100, 15).is_none());
        assert!(cache.get(a, 200, 0).is_none());
        assert_eq!(cache.stats().entries, 3 + 3);
        cache.remove_log(a);
        assert_eq!(cache.stats().entries, 3);
        assert!(cache.get(b, 200, 0).is_some());
    }
}
