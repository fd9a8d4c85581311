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
//! of a log and segment never overlap.
//!
//! Written bytes are copied once, into the log's current *chunk* (see
//! [`crate::chunk`]): one allocation of 64 KiB to 1 MiB that a log's writes fill one
//! after another, its entry growing over the same memory with every write, so a write
//! costs one copy and no allocation. A chunk that nothing reads any more (its entries
//! evicted, its readers done) is written again by a later write rather than freed, so
//! the write path stays on memory that is already mapped. The budget ([`LogConfig::cache_max_bytes`],
//! `log.cache.max.bytes`) counts the bytes of the entries plus the unwritten room of
//! the open chunks (which hold at most a quarter of it: a shard with many written logs
//! gets smaller chunks and retires the least recently written one's); when an insert
//! would exceed it, the least recently used entries of any log of the shard are
//! evicted. Bytes a reader still holds stay alive until it drops them, outside the
//! budget, and so does the rest of a chunk while an entry or a reader holds part of it.
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
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;

use bytes::Bytes;

use crate::chunk::{ChunkWriter, Retired};

/// The first chunk a log's writes are copied into holds this much; each next one
/// twice the last, up to [`MAX_CHUNK_BYTES`]. A log with little traffic holds little
/// unused room; a busy one gets entries as large as a read-ahead window.
const MIN_CHUNK_BYTES: usize = 64 * 1024;

/// The largest chunk (see [`MIN_CHUNK_BYTES`]).
const MAX_CHUNK_BYTES: usize = 1024 * 1024;

/// Chunks being filled hold at most the budget divided by this (a shard with many
/// written logs gets smaller chunks, then retires the least recently written), so
/// entries always have most of the budget.
const OPEN_CHUNKS_SHARE: usize = 4;

/// Retired chunks looked at per chunk opening for one to reuse (see
/// [`CacheInner::reclaim`]).
const RECLAIM_SCAN: usize = 16;

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
    /// Bytes held now by entries.
    pub used_bytes: usize,
    /// Room held in the chunks written data is being copied into, not yet in any
    /// entry (counted against the budget with `used_bytes`).
    pub reserved_bytes: usize,
    /// Entries held now.
    pub entries: usize,
    /// Chunks allocated for written data.
    pub chunks_allocated: u64,
    /// Retired chunks written again instead of allocating (see `CacheInner::reclaim`).
    pub chunks_reused: u64,
}

/// The chunk a log's writes are copied into, and the entry its latest write made or
/// extended.
struct OpenRun {
    writer: ChunkWriter,
    /// The entry's key and where its bytes start in the chunk: it holds exactly
    /// `[start, writer.filled())` unless it was evicted, invalidated or replaced.
    entry: Option<(Key, usize)>,
    /// The cache's clock at the log's last write (the least recently written run is
    /// retired first when chunks would take too much of the budget).
    last_write_tick: u64,
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
    /// Per log, the chunk its writes go into.
    open: HashMap<u64, OpenRun>,
    /// Chunks no longer written, oldest first, until nothing reads them (see
    /// [`CacheInner::reclaim`]).
    retired: VecDeque<Retired>,
    /// Capacity of the chunks in `open`, at most [`OPEN_CHUNKS_SHARE`] of the budget.
    open_capacity_bytes: usize,
    /// Their room not yet written: memory held but in no entry, counted against the
    /// budget beside `used_bytes`.
    reserved_bytes: usize,
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

    /// Evicts least recently used entries until `incoming` more bytes fit beside the
    /// entries and the room reserved in open chunks.
    fn make_room(&mut self, incoming: usize) {
        while self.used_bytes + self.reserved_bytes + incoming > self.budget_bytes {
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

    /// Inserts `data` at `key` unless it overlaps an entry or exceeds the budget left
    /// beside the room reserved in open chunks.
    fn insert(&mut self, key: Key, data: Bytes) {
        let len = data.len();
        if len == 0 || len + self.reserved_bytes > self.budget_bytes {
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

    /// Gives the log a fresh chunk for its writes: twice as large as its last one
    /// (up to [`MAX_CHUNK_BYTES`]), or smaller when the open chunks would hold more
    /// than their share of the budget, retiring the least recently written logs'
    /// chunks if still needed. Their entries stay. The chunk is a retired one that
    /// nothing reads any more when one of the size is at hand (see
    /// [`CacheInner::reclaim`]), else a new allocation.
    fn open_chunk(&mut self, log_id: u64) {
        let previous = self.retire(log_id);
        let share = (self.budget_bytes / OPEN_CHUNKS_SHARE).max(1);
        let mut capacity = previous
            .map_or(MIN_CHUNK_BYTES, |c| c.saturating_mul(2))
            .min(MAX_CHUNK_BYTES)
            .min(share);
        if self.open_capacity_bytes + capacity > share {
            capacity = capacity.min(MIN_CHUNK_BYTES);
        }
        while self.open_capacity_bytes + capacity > share {
            let Some(oldest) = self
                .open
                .iter()
                .min_by_key(|(_, run)| run.last_write_tick)
                .map(|(id, _)| *id)
            else {
                break;
            };
            self.retire(oldest);
        }
        self.make_room(capacity);
        let writer = match self.reclaim(capacity) {
            Some(writer) => {
                self.stats.chunks_reused += 1;
                writer
            }
            None => {
                self.stats.chunks_allocated += 1;
                ChunkWriter::new(capacity)
            }
        };
        self.open_capacity_bytes += writer.capacity();
        self.reserved_bytes += writer.remaining();
        self.open.insert(
            log_id,
            OpenRun {
                writer,
                entry: None,
                last_write_tick: self.clock,
            },
        );
    }

    /// Stops filling the log's chunk, keeping it to be reclaimed; returns its
    /// capacity.
    fn retire(&mut self, log_id: u64) -> Option<usize> {
        let run = self.open.remove(&log_id)?;
        let capacity = run.writer.capacity();
        self.open_capacity_bytes -= capacity;
        self.reserved_bytes -= run.writer.remaining();
        self.retired.push_back(run.writer.retire());
        Some(capacity)
    }

    /// A retired chunk of `capacity` bytes that no entry or reader holds any more,
    /// to be written again. Looks at up to [`RECLAIM_SCAN`] retired chunks, oldest
    /// first (eviction frees the oldest first); those still read go to the back, free
    /// ones of another size are freed. So every free chunk is reused or freed within
    /// a few chunk openings, and retired chunks never hold memory that the budget does
    /// not account for for long.
    fn reclaim(&mut self, capacity: usize) -> Option<ChunkWriter> {
        let mut found = None;
        for _ in 0..RECLAIM_SCAN.min(self.retired.len()) {
            let retired = self.retired.pop_front().expect("counted");
            match retired.reclaim() {
                Ok(writer) if found.is_none() && writer.capacity() == capacity => {
                    found = Some(writer);
                }
                Ok(other_size) => drop(other_size),
                Err(still_read) => self.retired.push_back(still_read),
            }
        }
        found
    }

    fn check(&self) {
        let (capacity, room) = self.open.values().fold((0, 0), |(c, r), run| {
            (c + run.writer.capacity(), r + run.writer.remaining())
        });
        debug_assert_eq!(
            (self.open_capacity_bytes, self.reserved_bytes),
            (capacity, room)
        );
        debug_assert!(
            self.used_bytes + self.reserved_bytes <= self.budget_bytes || self.entries.is_empty()
        );
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
                open: HashMap::new(),
                retired: VecDeque::new(),
                open_capacity_bytes: 0,
                reserved_bytes: 0,
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
        let logs: Vec<u64> = inner.open.keys().copied().collect();
        for log_id in logs {
            inner.retire(log_id);
        }
        inner.make_room(0);
        // The entries hold what they need; unheld chunks go now.
        inner.retired.clear();
    }

    pub fn budget_bytes(&self) -> usize {
        self.inner.borrow().budget_bytes
    }

    pub fn stats(&self) -> CacheStats {
        let inner = self.inner.borrow();
        inner.check();
        CacheStats {
            used_bytes: inner.used_bytes,
            reserved_bytes: inner.reserved_bytes,
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
    /// previously written bytes end): copied once into the log's chunk, extending the
    /// entry of the log's previous write when it ends at `file_pos` in the same chunk
    /// (no copy of what it holds), else as an entry of its own. Copies nothing when the
    /// cache has no budget.
    pub(crate) fn insert_written(
        &self,
        log_id: u64,
        segment_base: i64,
        file_pos: u64,
        data: &[u8],
    ) {
        let mut inner = self.inner.borrow_mut();
        if data.is_empty() || data.len() > inner.budget_bytes {
            return;
        }
        let mut pos = file_pos;
        let mut rest = data;
        while !rest.is_empty() {
            if inner
                .open
                .get(&log_id)
                .is_none_or(|run| run.writer.remaining() == 0)
            {
                inner.open_chunk(log_id);
            }
            let tick = inner.tick();
            let CacheInner {
                open,
                entries,
                lru,
                used_bytes,
                reserved_bytes,
                stats,
                ..
            } = &mut *inner;
            let run = open.get_mut(&log_id).expect("just opened");
            run.last_write_tick = tick;
            let from = run.writer.filled();
            let n = run.writer.append(rest);
            // The bytes move from the chunk's free room to an entry: the memory held
            // stays the same, so nothing is evicted for them.
            *reserved_bytes -= n;
            let to = from + n;
            let extended = run.entry.and_then(|(key, start)| {
                let entry = entries.get_mut(&key)?;
                let follows = key.segment_base == segment_base
                    && entry.end(&key) == pos
                    && entry.data.len() == from - start;
                follows.then(|| {
                    entry.data = run.writer.bytes(start, to);
                    lru.remove(&std::mem::replace(&mut entry.tick, tick));
                    lru.insert(tick, key);
                    *used_bytes += n;
                    stats.inserted_bytes += n as u64;
                })
            });
            if extended.is_none() {
                let key = Key::new(log_id, segment_base, pos);
                let bytes = run.writer.bytes(from, to);
                run.entry = Some((key, from));
                inner.insert(key, bytes);
            }
            pos += n as u64;
            rest = &rest[n..];
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

    /// Drops every entry of the log, and the chunk its writes went into.
    pub(crate) fn remove_log(&self, log_id: u64) {
        self.invalidate(log_id, |_, _, _| true);
        self.inner.borrow_mut().retire(log_id);
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
    fn consecutive_writes_extend_one_entry_without_copying_it() {
        let cache = ReadCache::new(1 << 20);
        let log = cache.register_log();
        cache.insert_written(log, 0, 0, &[1; 10]);
        let first = cache.get(log, 0, 0).unwrap().1;
        cache.insert_written(log, 0, 10, &[2; 10]);
        let (pos, data) = cache.get(log, 0, 15).unwrap();
        assert_eq!((pos, &data[..]), (0, &[[1u8; 10], [2u8; 10]].concat()[..]));
        assert_eq!(data.as_ptr(), first.as_ptr(), "the same memory, grown");
        assert_eq!(&first[..], &[1; 10], "a reader's bytes do not change");
        let s = cache.stats();
        assert_eq!((s.entries, s.used_bytes, s.inserted_bytes), (1, 20, 20));
        // Not contiguous with the previous entry: an entry of its own (and the next
        // write after it extends that one).
        cache.insert_written(log, 0, 1_000, &[3; 5]);
        cache.insert_written(log, 0, 1_005, &[4; 5]);
        assert_eq!(cache.stats().entries, 2);
        assert_eq!(cache.get(log, 0, 1_009).unwrap().0, 1_000);
        // Another segment: an entry of its own, in the same chunk.
        cache.insert_written(log, 7, 1_010, &[5; 5]);
        assert_eq!(cache.stats().entries, 3);
        assert_eq!(cache.get(log, 0, 1_010), None);
        // Without a budget nothing is copied or kept.
        let off = ReadCache::new(0);
        let log = off.register_log();
        off.insert_written(log, 0, 0, &[1; 10]);
        assert_eq!(off.stats().entries, 0);
    }

    #[test]
    fn a_write_past_the_chunk_continues_in_a_larger_one() {
        let cache = ReadCache::new(8 << 20);
        let log = cache.register_log();
        let head = MIN_CHUNK_BYTES - 100;
        cache.insert_written(log, 0, 0, &vec![1; head]);
        cache.insert_written(log, 0, head as u64, &[2; 300]);
        // The first chunk ends 100 bytes into the second write.
        let (pos, data) = cache.get(log, 0, 0).unwrap();
        assert_eq!((pos, data.len()), (0, MIN_CHUNK_BYTES));
        let (pos, data) = cache.get(log, 0, MIN_CHUNK_BYTES as u64).unwrap();
        assert_eq!((pos, &data[..]), (MIN_CHUNK_BYTES as u64, &[2u8; 200][..]));
        // The next chunk is twice as large: a write of that much more fits in it.
        let at = (head + 300) as u64;
        cache.insert_written(log, 0, at, &vec![3; MIN_CHUNK_BYTES]);
        assert_eq!(cache.stats().entries, 2);
        let (pos, data) = cache.get(log, 0, at).unwrap();
        assert_eq!(
            (pos, data.len()),
            (MIN_CHUNK_BYTES as u64, 200 + MIN_CHUNK_BYTES)
        );
        assert_eq!(cache.stats().used_bytes, head + 300 + MIN_CHUNK_BYTES);
    }

    #[test]
    fn an_evicted_or_invalidated_entry_is_not_extended() {
        const K: usize = 1024;
        let cache = ReadCache::new(256 * K);
        let (a, b) = (cache.register_log(), cache.register_log());
        cache.insert_written(a, 0, 0, &[1; 40 * K]);
        // A reader's window of another log needs the room: a's entry is the oldest.
        cache.insert_read(b, 0, 0, bytes(200 * K, 2));
        assert_eq!(cache.get(a, 0, 0), None);
        // a's next write is an entry of its own, not an extension of the evicted one.
        cache.insert_written(a, 0, 40 * K as u64, &[3; 10 * K]);
        let (pos, data) = cache.get(a, 0, 45 * K as u64).unwrap();
        assert_eq!((pos, data.len()), (40 * K as u64, 10 * K));
        let s = cache.stats();
        assert_eq!((s.entries, s.used_bytes), (2, 210 * K));
        assert_eq!(s.evicted_bytes, 40 * K as u64);
        // Truncated away (like truncate_to(45 KiB)) and written again: the new bytes
        // only.
        let cut = 45 * K as u64;
        cache.invalidate(a, |_, _, end| end > cut);
        cache.insert_written(a, 0, cut, &[4; 10]);
        let (pos, data) = cache.get(a, 0, cut).unwrap();
        assert_eq!((pos, &data[..]), (cut, &[4u8; 10][..]));
        // A closed log's chunk goes with its entries.
        cache.remove_log(a);
        assert_eq!(cache.stats().entries, 1);
        assert!(!cache.inner.borrow().open.contains_key(&a));
        assert_eq!(cache.stats().reserved_bytes, 0);
    }

    #[test]
    fn chunks_nothing_reads_are_written_again_instead_of_allocated() {
        const MIB: usize = 1 << 20;
        let budget = 4 * MIB;
        let cache = ReadCache::new(budget);
        let log = cache.register_log();
        let write = 16 * 1024;
        // A reader holds the first write's bytes throughout: its chunk is never reused.
        cache.insert_written(log, 0, 0, &[7; 16 * 1024]);
        let held = cache.get(log, 0, 0).unwrap().1;
        let mut pos = write as u64;
        for i in 1..(64 * MIB / write) {
            cache.insert_written(log, 0, pos, &[(i % 251) as u8; 16 * 1024]);
            pos += write as u64;
        }
        let stats = cache.stats();
        // 64 MiB went through a 4 MiB budget: chunks of 64 KiB to 1 MiB were opened,
        // and all but a budget's worth (plus the ramp-up and the held one) were
        // reclaimed ones.
        assert!(stats.chunks_reused >= 50, "reused {}", stats.chunks_reused);
        assert!(
            stats.chunks_allocated <= 12,
            "allocated {}",
            stats.chunks_allocated
        );
        assert_eq!(
            &held[..],
            &[7; 16 * 1024][..],
            "a held chunk is not rewritten"
        );
        // The last writes read back.
        let (start, data) = cache.get(log, 0, pos - 1).unwrap();
        let last = (64 * MIB / write - 1) % 251;
        assert_eq!(data[(pos - 1 - start) as usize], last as u8);
        // Without a budget nothing is kept, retired chunks included.
        cache.set_budget(0);
        assert!(cache.inner.borrow().retired.is_empty());
    }

    #[test]
    fn open_chunks_keep_to_their_share_of_the_budget() {
        let budget = 1 << 20;
        let cache = ReadCache::new(budget);
        let logs: Vec<u64> = (0..8).map(|_| cache.register_log()).collect();
        // Each log writes more than a chunk, in turns.
        for round in 0..20u64 {
            for &log in &logs {
                cache.insert_written(log, 0, round * 50_000, &[log as u8; 50_000]);
                let s = cache.stats();
                let inner = cache.inner.borrow();
                assert!(inner.open_capacity_bytes <= budget / OPEN_CHUNKS_SHARE);
                assert!(s.used_bytes + s.reserved_bytes <= budget);
            }
        }
        // The last writes of every log are cached and read back whole.
        for &log in &logs {
            let last = 19 * 50_000;
            let mut pos = last;
            while pos < last + 50_000 {
                let (start, data) = cache.get(log, 0, pos).expect("recent write cached");
                assert!(data.iter().all(|&b| b == log as u8));
                pos = start + data.len() as u64;
            }
        }
        // Without a budget nothing stays open.
        cache.set_budget(0);
        assert_eq!(cache.stats().reserved_bytes, 0);
        assert!(cache.inner.borrow().open.is_empty());
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
