//! [`PartitionLog`]: one partition's segment log, on the partition's owning shard.
//!
//! Append copies the produced batches into the active segment's aligned write buffer
//! (the one copy on the produce path), rewrites their headers there, and queues the
//! buffer for the writer task. The writer keeps at most one write in flight per log:
//! it takes the next filled buffer and writes it with direct I/O; appends arriving
//! meanwhile fill the next buffer, which begins with a copy of the last partial page
//! so that its write rewrites that page (group commit falls out of this). When a
//! write completes the written offset advances, [`PartitionLog::written_notify`] fires
//! and the appenders waiting for it resolve; unless the log is replicated the high
//! watermark follows and [`PartitionLog::notify`] fires too.
//!
//! The bytes of every completed write go into the shard's [`ReadCache`], and reads
//! that miss it read a window of the file and cache that too (see [`crate::cache`]).

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::rc::{Rc, Weak};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use sluice_core::batch::{self, header, Compression, HEADER_SIZE};
use sluice_core::config::{LogConfig, TimestampType};
use sluice_rt::fs::{self as rtfs, DmaBuffer, DmaFile};
use sluice_rt::sync::Notify;

use crate::cache::ReadCache;
use crate::epoch::{EpochCache, CHECKPOINT_FILE};
use crate::files;
use crate::io_stats;
use crate::producer::{ProducerState, SequenceCheck};
use crate::records;
use crate::segment::{
    align_down, align_up, parse_file_name, scan, segment_path, Segment, SegmentMeta, INDEX_SUFFIX,
    LOG_SUFFIX, PAGE_BYTES, SNAPSHOT_SUFFIX, TIME_INDEX_SUFFIX,
};
use crate::{AppendInfo, LogError};

/// Smallest write buffer. A buffer is sized for the append that opens it, so one
/// larger batch gets a larger buffer.
pub const WRITE_BUFFER_BYTES: usize = 128 * 1024;
/// Smallest read from a segment file (the read-ahead of a small fetch). A read that
/// misses the cache reads twice what it was asked for (plus an index interval), so a
/// reader's next fetch, or another reader's, finds it in the cache.
const MIN_READ_WINDOW_BYTES: usize = 128 * 1024;
/// Largest single read from a segment file for one fetch; more is read in steps.
const MAX_READ_WINDOW_BYTES: usize = 8 << 20;
/// Producer snapshots kept (the latest ones).
const SNAPSHOTS_KEPT: usize = 2;

/// Marker written last by [`PartitionLog::close`]; its presence at open means the
/// closed segments and their index files can be trusted without a scan.
pub const CLEAN_SHUTDOWN_FILE: &str = ".clean-shutdown";
/// Checkpoint of the log start offset moved by DeleteRecords.
pub const LOG_START_FILE: &str = "log-start-offset";
/// Checkpoint of the replicated high watermark (decimal text); present only while the
/// log is replicated.
pub const HIGH_WATERMARK_FILE: &str = "high-watermark-checkpoint";
/// Suffix of a spare segment file: `<next offset, 20 digits>.spare`, a deleted
/// segment's `.log` kept to become the file of a later segment (see [`Spare`]).
pub const SPARE_SUFFIX: &str = ".spare";
/// Appended to the files of a segment retention or DeleteRecords removed, between the
/// removal and the unlink; open removes any left over.
pub const DELETED_SUFFIX: &str = ".deleted";

/// A segment file that retention deleted, kept (renamed) so that the next new segment
/// is written over it instead of into fresh preallocated space.
///
/// Why: a direct write into preallocated space lands on *unwritten* extents. ext4
/// cannot do such a write without blocking, so io_uring hands every one to a worker
/// thread, and converts the extents to written in a workqueue when it completes: two
/// more threads and their context switches per write, which at small records is a
/// large share of the broker's CPU (BENCHMARKS.md). Space that was written before is
/// overwritten in place, inline, on the shard.
///
/// Safety: the file still holds the old segment's batches. Its name records the
/// offset after its last batch, and it is reused only by a segment whose base offset
/// is at least that, so every stale batch has an offset below the new segment's
/// base. Readers never read past what the writer completed, and recovery's scan stops
/// at the first batch whose offsets do not follow on (or at the zero padding of the
/// last page), so a stale batch is never taken for data.
#[derive(Debug)]
struct Spare {
    path: PathBuf,
    /// Offset after the old segment's last batch.
    next_offset: i64,
    len: u64,
}

/// A buffer of appended bytes for one segment, positioned at an aligned file offset.
struct WriteBuf {
    segment_base: i64,
    /// Aligned file position of `buf[0]`.
    file_pos: u64,
    buf: DmaBuffer,
    /// Bytes of `buf` in use.
    len: usize,
    /// Leading bytes copied from the previous buffer (the last partial page).
    carried: usize,
    /// Offset after the last batch in the buffer.
    end_offset: i64,
}

impl WriteBuf {
    fn has_new_data(&self) -> bool {
        self.len > self.carried
    }
}

/// Work for the writer task, done strictly in order.
enum Job {
    Write(WriteBuf),
    /// The segment was rolled: cut its file to its logical size, sync it, persist its
    /// index files and the producer snapshot taken at the roll.
    Finish {
        segment_base: i64,
        snapshot_offset: i64,
        snapshot: Vec<u8>,
    },
}

struct Inner {
    segments: BTreeMap<i64, Segment>,
    log_start_offset: i64,
    log_end_offset: i64,
    /// Offset after the last batch whose write to the segment file completed.
    written_offset: i64,
    /// What consumers may read: equal to `written_offset` unless `replicated`, when
    /// only [`PartitionLog::advance_high_watermark`] moves it (and truncation cuts it).
    high_watermark: i64,
    /// The high watermark is driven by replication rather than by writes.
    replicated: bool,
    /// The high-watermark checkpoint file may exist (it is kept only while
    /// `replicated`), and the value last written to it.
    hw_checkpoint: Option<i64>,
    /// Offsets below this are fdatasync'ed.
    synced_offset: i64,
    /// The flush policy asked for offsets below this to be synced.
    sync_requested_offset: i64,
    unsynced_records: u64,
    last_sync_ms: i64,
    producers: ProducerState,
    epochs: EpochCache,
    /// The buffer appends go to (for the active segment).
    filling: Option<WriteBuf>,
    jobs: VecDeque<Job>,
    writer_running: bool,
    /// Set while a maintenance operation owns the files: the writer does not start.
    writer_blocked: bool,
    /// A maintenance operation (truncate, retention, close, ...) is running.
    maintenance: bool,
    /// Bumped by every truncation; appends made before it and cut by it fail.
    truncations: u64,
    /// `truncations` after the last [`PartitionLog::truncate_fully_and_start_at`]:
    /// every append made before it fails.
    full_truncation: u64,
    /// Set when a write fails: the log takes no more appends.
    failed: Option<String>,
    closed: bool,
    /// A deleted segment's file kept for the next new segment (at most one).
    spare: Option<Spare>,
    /// Roll work running beside the writer: finishing rolled segments (cut, sync,
    /// index files, producer snapshot) and syncing new segment files' directory
    /// entries. Writes to the new segment do not wait for it; a sync-requiring
    /// append (flush policy) is acknowledged only once none is left, and the log is
    /// idle (for maintenance, flush and close) only then.
    background: usize,
}

impl Inner {
    fn active(&self) -> &Segment {
        self.segments
            .values()
            .next_back()
            .expect("a log always has a segment")
    }

    fn usable(&self) -> Result<(), LogError> {
        if self.closed {
            return Err(LogError::Closed);
        }
        if let Some(reason) = &self.failed {
            return Err(LogError::Offline(reason.clone()));
        }
        Ok(())
    }

    fn is_idle(&self) -> bool {
        !self.writer_running
            && self.background == 0
            && self.jobs.is_empty()
            && !self.filling.as_ref().is_some_and(WriteBuf::has_new_data)
    }

    /// Moves the filling buffer to the job queue, remembering its last partial page
    /// as the start of the segment's next buffer.
    fn seal_filling(&mut self) {
        let Some(f) = self.filling.take() else {
            return;
        };
        if let Some(seg) = self.segments.get_mut(&f.segment_base) {
            let from = align_down(f.len as u64) as usize;
            seg.tail.clear();
            seg.tail.extend_from_slice(&f.buf.as_bytes()[from..f.len]);
        }
        if f.has_new_data() {
            self.jobs.push_back(Job::Write(f));
        }
    }

    /// The filling buffer of the active segment, with room for `needed` more bytes.
    fn buffer_for(&mut self, needed: usize) -> &mut WriteBuf {
        let active_base = self.active().meta.base_offset;
        let fits = self
            .filling
            .as_ref()
            .is_some_and(|f| f.segment_base == active_base && f.len + needed <= f.buf.len());
        if !fits {
            self.seal_filling();
            let seg = self.active();
            let carried = seg.tail.len();
            let file_pos = align_down(seg.meta.size_bytes);
            assert_eq!(
                file_pos + carried as u64,
                seg.meta.size_bytes,
                "tail is the last partial page"
            );
            let capacity =
                align_up((carried + needed) as u64).max(WRITE_BUFFER_BYTES as u64) as usize;
            let mut buf = rtfs::alloc_buffer(capacity);
            buf.as_bytes_mut()[..carried].copy_from_slice(&seg.tail);
            let end_offset = seg.meta.next_offset;
            self.filling = Some(WriteBuf {
                segment_base: active_base,
                file_pos,
                buf,
                len: carried,
                carried,
                end_offset,
            });
        }
        self.filling.as_mut().expect("just ensured")
    }

    /// Starts a new active segment at the log end; the old one is finished by the
    /// writer after its last buffer.
    fn roll_now(&mut self) {
        if self.active().meta.is_empty() {
            return;
        }
        self.seal_filling();
        let segment_base = self.active().meta.base_offset;
        let snapshot_offset = self.log_end_offset;
        self.jobs.push_back(Job::Finish {
            segment_base,
            snapshot_offset,
            snapshot: self.producers.to_snapshot(),
        });
        self.segments
            .insert(snapshot_offset, Segment::new(snapshot_offset));
    }
}

/// One partition's log.
///
/// Lives on the partition's owning shard only (`!Send`), shared there through `Rc`;
/// state is behind a `RefCell` that is never borrowed across an `.await`.
pub struct PartitionLog {
    dir: PathBuf,
    config: LogConfig,
    self_ref: Weak<PartitionLog>,
    inner: RefCell<Inner>,
    /// The shard's cache of segment bytes, and this log's id in it.
    cache: Rc<ReadCache>,
    cache_id: u64,
    /// Fires when the high watermark advances.
    hw_notify: Notify,
    /// Fires when the written offset advances.
    written_notify: Notify,
    /// Fires when the writer completes a job or stops, and when maintenance ends.
    io_event: Notify,
}

/// Held by a maintenance operation: the writer is idle and does not start until the
/// guard drops. Appends still assign offsets and fill buffers meanwhile.
struct MaintenanceGuard<'a>(&'a PartitionLog);

impl Drop for MaintenanceGuard<'_> {
    fn drop(&mut self) {
        {
            let mut inner = self.0.inner.borrow_mut();
            inner.maintenance = false;
            inner.writer_blocked = false;
        }
        self.0.kick_writer();
        self.0.io_event.notify(usize::MAX);
    }
}

/// An append whose offsets are assigned, waiting for its write.
struct Ticket {
    info: AppendInfo,
    /// Resolved once the written offset (or the synced offset) reaches this.
    end_offset: i64,
    needs_sync: bool,
    truncations: u64,
}

impl PartitionLog {
    /// Opens or creates the log in `dir` (creating the directory), running recovery
    /// (see the crate documentation). Reads are cached in the shard's [`ReadCache`],
    /// whose budget becomes `config.cache_max_bytes`.
    pub async fn open(dir: PathBuf, config: LogConfig) -> Result<Rc<PartitionLog>, LogError> {
        let budget_bytes = usize::try_from(config.cache_max_bytes).unwrap_or(usize::MAX);
        Self::open_with_cache(dir, config, ReadCache::for_shard(budget_bytes)).await
    }

    /// [`open`](Self::open) with a given cache (on this shard) instead of the shard's.
    pub async fn open_with_cache(
        dir: PathBuf,
        config: LogConfig,
        cache: Rc<ReadCache>,
    ) -> Result<Rc<PartitionLog>, LogError> {
        std::fs::create_dir_all(&dir)?;
        let clean = dir.join(CLEAN_SHUTDOWN_FILE).exists();
        let mut bases = Vec::new();
        let mut spare = None;
        for entry in std::fs::read_dir(&dir)? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(files::TMP_SUFFIX) || name.ends_with(DELETED_SUFFIX) {
                files::remove_if_exists(&dir.join(name))?;
            } else if let Some(base) = parse_file_name(name, LOG_SUFFIX) {
                bases.push(base);
            } else if let Some(next_offset) = parse_file_name(name, SPARE_SUFFIX) {
                let path = dir.join(name);
                // One spare at most; any other is removed.
                if spare.is_some() || config.preallocate_bytes == 0 {
                    files::remove_if_exists(&path)?;
                } else {
                    let len = std::fs::metadata(&path)?.len();
                    spare = Some(Spare {
                        path,
                        next_offset,
                        len,
                    });
                }
            }
        }
        bases.sort_unstable();
        let start_checkpoint = read_offset_file(&dir.join(LOG_START_FILE))?;
        let hw_checkpoint = read_offset_file(&dir.join(HIGH_WATERMARK_FILE))?;

        let mut segments = BTreeMap::new();
        let mut i = 0;
        while i < bases.len() {
            let base = bases[i];
            let next_base = bases.get(i + 1).copied();
            let file = Rc::new(rtfs::open_read_write(&segment_path(&dir, base, LOG_SUFFIX)).await?);
            assert_eq!(
                PAGE_BYTES % file.alignment(),
                0,
                "device alignment above a page"
            );
            let file_len = rtfs::file_size(&file).await?;
            let trusted = match next_base {
                Some(next) if clean => SegmentMeta::load_trusted(&dir, base, file_len, next),
                _ => None,
            };
            let meta = match trusted {
                Some(meta) => meta,
                None => {
                    let out = scan(
                        &file,
                        file_len,
                        base,
                        true,
                        None,
                        config.index_interval_bytes,
                        |_| {},
                    )
                    .await?;
                    if out.meta.size_bytes < file_len {
                        if let Some(reason) = &out.invalid_tail {
                            tracing::warn!(dir = %dir.display(), base, reason, "truncating segment tail at recovery");
                        }
                        rtfs::truncate(&file, out.meta.size_bytes).await?;
                        fdatasync(&file).await?;
                    }
                    if next_base.is_some_and(|next| next != out.meta.next_offset) {
                        // A hole in the middle of the log: nothing after it can be
                        // trusted to follow on (Kafka drops the later segments too).
                        tracing::warn!(dir = %dir.display(), base, "segment ends early; dropping later segments");
                        for &later in &bases[i + 1..] {
                            remove_segment_files(&dir, later)?;
                        }
                        bases.truncate(i + 1);
                    }
                    out.meta
                }
            };
            let mut seg = Segment::new(base);
            seg.written_bytes = meta.size_bytes;
            seg.first_append_ms = (!meta.is_empty()).then_some(meta.max_timestamp_ms.max(0));
            seg.meta = meta;
            seg.file = Some(file);
            segments.insert(base, seg);
            i += 1;
        }
        if segments.is_empty() {
            let base = start_checkpoint.unwrap_or(0).max(0);
            segments.insert(base, Segment::new(base));
        }
        // The active segment's last partial page starts the next write buffer.
        let (log_end_offset, first_base) = {
            let active = segments.values_mut().next_back().expect("non-empty");
            let size = active.meta.size_bytes;
            let from = align_down(size);
            if size > from {
                let file = active.file.as_ref().expect("non-empty segment has a file");
                let page = rtfs::read_at(file, from, (size - from) as usize).await?;
                if page.len() as u64 != size - from {
                    return Err(LogError::Corrupt {
                        path: segment_path(&dir, active.meta.base_offset, LOG_SUFFIX)
                            .display()
                            .to_string(),
                        reason: "short read of the last page".into(),
                    });
                }
                active.tail = page.to_vec();
            }
            (
                active.meta.next_offset,
                *segments.keys().next().expect("non-empty"),
            )
        };
        let log_start_offset = start_checkpoint
            .unwrap_or(first_base)
            .max(first_base)
            .min(log_end_offset);
        // A high-watermark checkpoint means the log was replicated: it stays so, with
        // the checkpointed high watermark (cut to the log that survived recovery),
        // until replication says otherwise.
        let high_watermark = hw_checkpoint.map_or(log_end_offset, |hw| {
            hw.clamp(log_start_offset, log_end_offset)
        });
        let mut epochs = match files::read_if_exists(&dir.join(CHECKPOINT_FILE))? {
            Some(b) => std::str::from_utf8(&b)
                .ok()
                .and_then(EpochCache::from_text)
                .unwrap_or_default(),
            None => EpochCache::default(),
        };
        let epochs_changed =
            epochs.truncate_from_end(log_end_offset) | epochs.truncate_from_start(log_start_offset);

        let log = Rc::new_cyclic(|self_ref| PartitionLog {
            dir: dir.clone(),
            config: config.clone(),
            self_ref: self_ref.clone(),
            inner: RefCell::new(Inner {
                segments,
                log_start_offset,
                log_end_offset,
                written_offset: log_end_offset,
                high_watermark,
                replicated: hw_checkpoint.is_some(),
                hw_checkpoint,
                synced_offset: log_end_offset,
                sync_requested_offset: log_end_offset,
                unsynced_records: 0,
                last_sync_ms: sluice_rt::time::now_ms(),
                producers: ProducerState::default(),
                epochs,
                filling: None,
                jobs: VecDeque::new(),
                writer_running: false,
                writer_blocked: false,
                maintenance: false,
                truncations: 0,
                full_truncation: 0,
                failed: None,
                closed: false,
                spare,
                background: 0,
            }),
            cache_id: cache.register_log(),
            cache,
            hw_notify: Notify::new(),
            written_notify: Notify::new(),
            io_event: Notify::new(),
        });
        if epochs_changed {
            log.write_epoch_checkpoint()?;
        }
        let producers = log.rebuild_producers(log_end_offset).await?;
        log.inner.borrow_mut().producers = producers;
        if let Some(interval_ms) = config.flush_ms {
            sluice_rt::exec::spawn_detached(periodic_flush(
                Rc::downgrade(&log),
                interval_ms.max(1),
            ));
        }
        // From here on a crash is an unclean shutdown.
        files::remove_if_exists(&dir.join(CLEAN_SHUTDOWN_FILE))?;
        files::sync_dir(&dir)?;
        Ok(log)
    }

    pub fn config(&self) -> LogConfig {
        self.config.clone()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn log_start_offset(&self) -> i64 {
        self.inner.borrow().log_start_offset
    }

    /// The next offset to assign.
    pub fn log_end_offset(&self) -> i64 {
        self.inner.borrow().log_end_offset
    }

    /// Offset after the last batch whose write to the segment file completed: the end
    /// of what [`read`](Self::read) returns (followers are served up to here). Never
    /// moves back except by truncation.
    pub fn written_offset(&self) -> i64 {
        self.inner.borrow().written_offset
    }

    /// The high watermark: the end of what consumers may read (and of what
    /// ListOffsets and DeleteRecords see). Equal to
    /// [`written_offset`](Self::written_offset) unless the log is
    /// [replicated](Self::set_replicated), when only
    /// [`advance_high_watermark`](Self::advance_high_watermark) moves it. Never
    /// moves back except by truncation.
    pub fn high_watermark(&self) -> i64 {
        self.inner.borrow().high_watermark
    }

    /// Notified whenever the high watermark advances.
    pub fn notify(&self) -> &Notify {
        &self.hw_notify
    }

    /// Notified whenever the written offset advances (a leader recomputes its high
    /// watermark on it; follower fetches wait on it).
    pub fn written_notify(&self) -> &Notify {
        &self.written_notify
    }

    /// Whether the high watermark is driven by replication (see
    /// [`set_replicated`](Self::set_replicated)).
    pub fn is_replicated(&self) -> bool {
        self.inner.borrow().replicated
    }

    /// `false` (single node, or a leader whose ISR is itself alone): the high
    /// watermark follows the written offset by itself; switching to `false` raises it
    /// to the written offset at once (and the next
    /// [`checkpoint_high_watermark`](Self::checkpoint_high_watermark) removes the
    /// checkpoint file). `true` (a leader with followers in its ISR, or a follower):
    /// the high watermark moves only through
    /// [`advance_high_watermark`](Self::advance_high_watermark); switching to `true`
    /// writes the high-watermark checkpoint at once, so that a crash before the next
    /// periodic checkpoint reopens the log replicated (if that write fails the log
    /// goes offline, as after a failed segment write). A log opens replicated
    /// exactly when it has a high-watermark checkpoint.
    pub fn set_replicated(&self, replicated: bool) {
        let (raised, newly_replicated) = {
            let mut inner = self.inner.borrow_mut();
            let newly_replicated = replicated && !inner.replicated;
            inner.replicated = replicated;
            let raised = !replicated && inner.written_offset > inner.high_watermark;
            if raised {
                inner.high_watermark = inner.written_offset;
            }
            (raised, newly_replicated)
        };
        if raised {
            self.hw_notify.notify(usize::MAX);
        }
        if newly_replicated {
            match self.checkpoint_high_watermark() {
                Ok(()) | Err(LogError::Closed) => {}
                Err(e) => {
                    tracing::error!(dir = %self.dir.display(), error = %e, "high-watermark checkpoint failed; log is offline");
                    self.inner.borrow_mut().failed = Some(e.to_string());
                    self.io_event.notify(usize::MAX);
                }
            }
        }
    }

    /// Raises the high watermark to `min(offset, written_offset())` if that is higher
    /// (it never moves back) and returns it; fires [`notify`](Self::notify) when it
    /// moved. In a log that is not replicated it already equals the written offset.
    pub fn advance_high_watermark(&self, offset: i64) -> i64 {
        let (hw, moved) = {
            let mut inner = self.inner.borrow_mut();
            let target = offset.min(inner.written_offset);
            if target > inner.high_watermark {
                inner.high_watermark = target;
                (target, true)
            } else {
                (inner.high_watermark, false)
            }
        };
        if moved {
            self.hw_notify.notify(usize::MAX);
        }
        hw
    }

    /// Total logical size of the segments.
    pub fn size_bytes(&self) -> u64 {
        self.inner
            .borrow()
            .segments
            .values()
            .map(|s| s.meta.size_bytes)
            .sum()
    }

    pub fn segment_count(&self) -> usize {
        self.inner.borrow().segments.len()
    }

    /// Base offsets of the segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.inner.borrow().segments.keys().copied().collect()
    }

    /// `(epoch, start offset)` entries of the leader-epoch cache.
    pub fn leader_epochs(&self) -> Vec<(i32, i64)> {
        self.inner.borrow().epochs.entries().to_vec()
    }

    /// The epoch of the latest entry of the leader-epoch cache.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.inner.borrow().epochs.latest_epoch()
    }

    /// OffsetForLeaderEpoch: the largest known epoch `<= epoch` and its end offset.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        let inner = self.inner.borrow();
        inner.epochs.end_offset_for(epoch, inner.log_end_offset)
    }

    /// Appends the batches of `records` (a produce request's record set for this
    /// partition): validates each ([`batch::validate`] with `max.message.bytes`),
    /// checks idempotent-producer sequences, assigns offsets at call time (so
    /// concurrent appends keep call order) and resolves once the data is written to
    /// the segment file, and fdatasync'ed when the flush policy asks for it.
    pub async fn append(
        &self,
        records: &[u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        let ticket = self.begin_append(records, leader_epoch, now_ms)?;
        self.kick_writer();
        self.wait_for(&ticket).await?;
        Ok(ticket.info)
    }

    fn begin_append(
        &self,
        records: &[u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<Ticket, LogError> {
        let max_batch_bytes = self.config.max_message_bytes as usize;
        let mut inner = self.inner.borrow_mut();
        inner.usable()?;
        // 1. Validate every batch; nothing is appended unless all pass.
        let (mut batches, mut idempotent, mut record_count) = (0usize, 0usize, 0i64);
        for frame in batch::frames(records) {
            let (pos, _) = frame?;
            batch::validate(&records[pos..], max_batch_bytes)?;
            let h = header(&records[pos..]).expect("validated");
            batches += 1;
            idempotent += usize::from(h.has_producer_id());
            record_count += i64::from(h.last_offset_delta.get()) + 1;
        }
        if batches == 0 {
            return Err(LogError::EmptyRecordSet);
        }
        // 2. Producer sequences.
        if idempotent > 0 {
            if batches == 1 {
                let h = header(records).expect("validated");
                if let SequenceCheck::Duplicate(m) = inner.producers.check(h)? {
                    return Ok(Ticket {
                        info: AppendInfo {
                            base_offset: m.first_offset,
                            last_offset: m.last_offset,
                            log_append_time_ms: -1,
                            log_start_offset: inner.log_start_offset,
                            duplicate: true,
                        },
                        end_offset: m.last_offset + 1,
                        needs_sync: false,
                        truncations: inner.truncations,
                    });
                }
            } else {
                // Rare (clients send one batch per partition): check in sequence on
                // a scratch copy.
                let mut scratch = inner.producers.clone();
                for frame in batch::frames(records) {
                    let (pos, _) = frame?;
                    let h = header(&records[pos..]).expect("validated");
                    match scratch.check(h)? {
                        SequenceCheck::Append => scratch.update(h),
                        SequenceCheck::Duplicate(_) => {
                            return Err(LogError::OutOfOrderSequence {
                                producer_id: h.producer_id(),
                                expected_after: h.base_sequence(),
                                found: h.base_sequence(),
                            })
                        }
                    }
                }
            }
        }
        // 3. Roll by size, time, or relative-offset range.
        let base_offset = inner.log_end_offset;
        self.roll_if_needed(
            &mut inner,
            records.len(),
            base_offset + record_count,
            now_ms,
        );
        // 4. Leader epoch (checkpointed before the data, so it never lags the log).
        if inner.epochs.assign(leader_epoch, base_offset) {
            let text = inner.epochs.to_text();
            files::write_atomic(&self.dir.join(CHECKPOINT_FILE), text.as_bytes())?;
        }
        // 5. Copy into the write buffer and rewrite the headers there.
        let append_time =
            (self.config.timestamp_type == TimestampType::LogAppendTime).then_some(now_ms);
        let next = self.copy_in(
            &mut inner,
            records,
            now_ms,
            Some((leader_epoch, append_time)),
        );
        assert_eq!(next, base_offset + record_count);
        // 6. Flush policy.
        let needs_sync = self.count_unsynced(&mut inner, record_count, now_ms);
        Ok(Ticket {
            info: AppendInfo {
                base_offset,
                last_offset: next - 1,
                log_append_time_ms: append_time.unwrap_or(-1),
                log_start_offset: inner.log_start_offset,
                duplicate: false,
            },
            end_offset: next,
            needs_sync,
            truncations: inner.truncations,
        })
    }

    /// Follower append: stores the leader's batches as they are (base offsets,
    /// partition leader epochs, timestamps and CRCs untouched). Every batch is
    /// validated ([`batch::validate`], without the `max.message.bytes` limit, which
    /// the leader applied); the first must start at [`log_end_offset`] and each next
    /// one where the previous ends, else [`LogError::UnexpectedAppendOffset`] and
    /// nothing is appended. Producer state is updated without sequence checks (so
    /// the log still dedupes retries once it leads), each batch's leader epoch enters
    /// the epoch cache at its base offset (checkpointed before the data), segments
    /// roll as for [`append`](Self::append). Resolves once written (or synced, per the
    /// flush policy). An empty `records` appends nothing and returns at once with
    /// `base_offset == log_end_offset()` and `last_offset == base_offset - 1`.
    ///
    /// [`log_end_offset`]: Self::log_end_offset
    pub async fn append_replicated(&self, records: &[u8]) -> Result<AppendInfo, LogError> {
        let ticket = self.begin_append_replicated(records)?;
        self.kick_writer();
        self.wait_for(&ticket).await?;
        Ok(ticket.info)
    }

    fn begin_append_replicated(&self, records: &[u8]) -> Result<Ticket, LogError> {
        let now_ms = sluice_rt::time::now_ms();
        let mut inner = self.inner.borrow_mut();
        inner.usable()?;
        let base_offset = inner.log_end_offset;
        // 1. Validate every batch and its offsets; nothing is appended unless all pass.
        let mut next = base_offset;
        for frame in batch::frames(records) {
            let (pos, _) = frame?;
            batch::validate(&records[pos..], usize::MAX)?;
            let h = header(&records[pos..]).expect("validated");
            if h.base_offset() != next {
                return Err(LogError::UnexpectedAppendOffset {
                    expected: next,
                    found: h.base_offset(),
                });
            }
            next = h.next_offset();
        }
        let record_count = next - base_offset;
        if record_count == 0 {
            return Ok(Ticket {
                info: AppendInfo {
                    base_offset,
                    last_offset: base_offset - 1,
                    log_append_time_ms: -1,
                    log_start_offset: inner.log_start_offset,
                    duplicate: false,
                },
                end_offset: base_offset,
                needs_sync: false,
                truncations: inner.truncations,
            });
        }
        // 2. Roll as a leader append would.
        self.roll_if_needed(&mut inner, records.len(), next, now_ms);
        // 3. The leader's epochs, checkpointed before the data.
        let mut epochs_changed = false;
        for frame in batch::frames(records) {
            let (pos, _) = frame?;
            let h = header(&records[pos..]).expect("validated");
            epochs_changed |= inner
                .epochs
                .assign(h.partition_leader_epoch.get(), h.base_offset());
        }
        if epochs_changed {
            let text = inner.epochs.to_text();
            files::write_atomic(&self.dir.join(CHECKPOINT_FILE), text.as_bytes())?;
        }
        // 4. Copy as is.
        let end = self.copy_in(&mut inner, records, now_ms, None);
        assert_eq!(end, next);
        // 5. Flush policy.
        let needs_sync = self.count_unsynced(&mut inner, record_count, now_ms);
        Ok(Ticket {
            info: AppendInfo {
                base_offset,
                last_offset: next - 1,
                log_append_time_ms: -1,
                log_start_offset: inner.log_start_offset,
                duplicate: false,
            },
            end_offset: next,
            needs_sync,
            truncations: inner.truncations,
        })
    }

    /// Rolls the active segment before an append of `size_bytes` that ends at
    /// `end_offset` when its size, age or relative-offset range asks for it.
    fn roll_if_needed(&self, inner: &mut Inner, size_bytes: usize, end_offset: i64, now_ms: i64) {
        let active = inner.active();
        let size_limit = self.config.segment_bytes.min(u64::from(u32::MAX));
        let by_size = active.meta.size_bytes + size_bytes as u64 > size_limit;
        let by_time = active
            .first_append_ms
            .is_some_and(|t| now_ms.saturating_sub(t) >= self.config.segment_ms as i64);
        let by_offsets = end_offset - active.meta.base_offset > i64::from(i32::MAX);
        if !active.meta.is_empty() && (by_size || by_time || by_offsets) {
            inner.roll_now();
        }
    }

    /// Copies validated `records` into the active segment's write buffer, indexes
    /// them and records them in the producer state; returns the offset after them.
    /// `rewrite` is `(leader epoch, log append time)` for a leader append, which
    /// assigns offsets from the log end; `None` keeps the batches as they are (their
    /// offsets were checked to follow on from the log end).
    fn copy_in(
        &self,
        inner: &mut Inner,
        records: &[u8],
        now_ms: i64,
        rewrite: Option<(i32, Option<i64>)>,
    ) -> i64 {
        let interval = self.config.index_interval_bytes;
        let base_offset = inner.log_end_offset;
        let buf_start = {
            let wb = inner.buffer_for(records.len());
            let start = wb.len;
            wb.buf.as_bytes_mut()[start..start + records.len()].copy_from_slice(records);
            wb.len += records.len();
            start
        };
        let Inner {
            filling,
            segments,
            producers,
            ..
        } = inner;
        let wb = filling.as_mut().expect("buffer_for made one");
        let seg = segments.values_mut().next_back().expect("active");
        if seg.first_append_ms.is_none() {
            seg.first_append_ms = Some(now_ms);
        }
        let mut next = base_offset;
        let mut pos = 0;
        while pos < records.len() {
            let bytes = &mut wb.buf.as_bytes_mut()[buf_start + pos..buf_start + records.len()];
            let size = batch::frame_size(bytes).expect("validated");
            if let Some((leader_epoch, append_time)) = rewrite {
                batch::assign_offsets(&mut bytes[..size], next, leader_epoch, append_time);
            }
            let h = header(bytes).expect("validated");
            assert_eq!(h.base_offset(), next, "batches follow on from the log end");
            seg.meta
                .on_batch(h, wb.file_pos + (buf_start + pos) as u64, interval);
            producers.update(h);
            next = h.next_offset();
            pos += size;
        }
        wb.end_offset = next;
        inner.log_end_offset = next;
        next
    }

    /// Counts `record_count` appended records against the flush policy; returns
    /// whether this append must wait for an fdatasync.
    fn count_unsynced(&self, inner: &mut Inner, record_count: i64, now_ms: i64) -> bool {
        inner.unsynced_records += record_count as u64;
        let needs_sync = self
            .config
            .flush_messages
            .is_some_and(|n| inner.unsynced_records >= n)
            || self
                .config
                .flush_ms
                .is_some_and(|ms| now_ms.saturating_sub(inner.last_sync_ms) >= ms as i64);
        if needs_sync {
            inner.sync_requested_offset = inner.log_end_offset;
            inner.unsynced_records = 0;
            inner.last_sync_ms = now_ms;
        }
        needs_sync
    }

    async fn wait_for(&self, ticket: &Ticket) -> Result<(), LogError> {
        let done = || -> Result<bool, LogError> {
            let inner = self.inner.borrow();
            if inner.truncations != ticket.truncations && ticket.end_offset > inner.log_end_offset {
                return Err(LogError::Truncated {
                    end_offset: inner.log_end_offset,
                });
            }
            if ticket.truncations < inner.full_truncation {
                return Err(LogError::Truncated {
                    end_offset: inner.log_end_offset,
                });
            }
            let reached = if ticket.needs_sync {
                inner.synced_offset
            } else {
                inner.written_offset
            };
            if reached >= ticket.end_offset {
                return Ok(true);
            }
            inner.usable()?;
            Ok(false)
        };
        loop {
            if done()? {
                return Ok(());
            }
            let listener = self.io_event.listen();
            if done()? {
                return Ok(());
            }
            listener.await;
        }
    }

    /// Starts the writer task if there is work and none is running.
    fn kick_writer(&self) {
        {
            let mut inner = self.inner.borrow_mut();
            if inner.writer_running
                || inner.writer_blocked
                || inner.failed.is_some()
                || inner.closed
            {
                return;
            }
            if inner.jobs.is_empty() && !inner.filling.as_ref().is_some_and(WriteBuf::has_new_data)
            {
                return;
            }
            inner.writer_running = true;
        }
        let Some(log) = self.self_ref.upgrade() else {
            self.inner.borrow_mut().writer_running = false;
            return;
        };
        sluice_rt::exec::spawn_detached(async move { log.writer_loop().await });
    }

    /// The writer task: one job at a time, in order, until there is none.
    async fn writer_loop(self: Rc<Self>) {
        loop {
            let job = {
                let mut inner = self.inner.borrow_mut();
                if inner.writer_blocked || inner.failed.is_some() {
                    None
                } else if let Some(job) = inner.jobs.pop_front() {
                    Some(job)
                } else if inner.filling.as_ref().is_some_and(WriteBuf::has_new_data) {
                    inner.seal_filling();
                    inner.jobs.pop_front()
                } else {
                    None
                }
            };
            let Some(job) = job else { break };
            let result = match job {
                Job::Write(wb) => self.write_job(wb).await,
                Job::Finish {
                    segment_base,
                    snapshot_offset,
                    snapshot,
                } => {
                    // Its last write has completed; the new segment's writes go on
                    // while it is cut and synced (Kafka flushes a rolled segment
                    // asynchronously too).
                    let log = self.clone();
                    self.in_background(async move {
                        log.finish_job(segment_base, snapshot_offset, &snapshot)
                            .await
                    });
                    Ok(())
                }
            };
            if let Err(e) = result {
                tracing::error!(dir = %self.dir.display(), error = %e, "log write failed; log is offline");
                self.inner.borrow_mut().failed = Some(e.to_string());
                break;
            }
            self.io_event.notify(usize::MAX);
        }
        self.inner.borrow_mut().writer_running = false;
        self.io_event.notify(usize::MAX);
    }

    async fn segment_file(&self, segment_base: i64) -> Result<Rc<DmaFile>, LogError> {
        let existing = {
            let inner = self.inner.borrow();
            let seg = inner
                .segments
                .get(&segment_base)
                .expect("jobs refer to live segments");
            seg.file.clone()
        };
        if let Some(file) = existing {
            return Ok(file);
        }
        let path = segment_path(&self.dir, segment_base, LOG_SUFFIX);
        let reused = self.take_spare_for(segment_base, &path)?;
        let file = Rc::new(rtfs::open_read_write(&path).await?);
        assert_eq!(
            PAGE_BYTES % file.alignment(),
            0,
            "device alignment above a page"
        );
        // Durability step 1: the new file's directory entry, synced beside the
        // writes; only a sync-requiring acknowledgement waits for it.
        let dir = self.dir.clone();
        self.in_background(async move {
            sluice_rt::exec::spawn_blocking(move || files::sync_dir(&dir)).await?;
            Ok(())
        });
        let mut inner = self.inner.borrow_mut();
        let seg = inner
            .segments
            .get_mut(&segment_base)
            .expect("jobs refer to live segments");
        seg.file = Some(file.clone());
        if let Some(len) = reused {
            // Written space: the file's size already covers it, nothing to reserve.
            seg.preallocated_bytes = align_down(len);
        }
        Ok(file)
    }

    /// Renames the spare segment file to `path`, the file of the new segment at
    /// `segment_base`, if there is a spare and every batch in it has a lower offset.
    /// Returns the reused file's length.
    fn take_spare_for(&self, segment_base: i64, path: &Path) -> Result<Option<u64>, LogError> {
        let spare = {
            let mut inner = self.inner.borrow_mut();
            match &inner.spare {
                Some(s) if s.next_offset <= segment_base && !path.exists() => inner.spare.take(),
                _ => None,
            }
        };
        let Some(spare) = spare else {
            return Ok(None);
        };
        std::fs::rename(&spare.path, path)?;
        tracing::debug!(dir = %self.dir.display(), segment_base, bytes = spare.len, "new segment reuses a deleted segment's file");
        Ok(Some(spare.len))
    }

    async fn write_job(&self, wb: WriteBuf) -> Result<(), LogError> {
        let file = self.segment_file(wb.segment_base).await?;
        let WriteBuf {
            segment_base,
            file_pos,
            mut buf,
            len,
            carried,
            end_offset,
        } = wb;
        let padded = align_up(len as u64) as usize;
        let end = file_pos + padded as u64;
        let preallocated = self
            .inner
            .borrow()
            .segments
            .get(&segment_base)
            .map_or(0, |s| s.preallocated_bytes);
        if self.config.preallocate_bytes > 0 && end > preallocated {
            // Reserve ahead, but not (much) past where the segment will roll.
            let roll_at = align_up(self.config.segment_bytes.min(u64::from(u32::MAX)));
            let target = align_up(end + self.config.preallocate_bytes).min(roll_at.max(end));
            rtfs::preallocate(&file, target).await?;
            if let Some(seg) = self.inner.borrow_mut().segments.get_mut(&segment_base) {
                seg.preallocated_bytes = target;
            }
        }
        buf.as_bytes_mut()[len..padded].fill(0);
        buf.trim_to_size(padded);
        let buf = Rc::new(buf);
        let started = Instant::now();
        rtfs::write_all_at(&file, buf.clone(), file_pos).await?;
        io_stats::record_write(started.elapsed());
        let needs_sync = {
            let inner = self.inner.borrow();
            inner.sync_requested_offset > inner.synced_offset
        };
        if needs_sync {
            fdatasync(&file).await?;
            // Everything before this file's data must be synced too: rolled
            // segments still being finished, and this file's directory entry.
            self.wait_background().await?;
        }
        {
            let mut inner = self.inner.borrow_mut();
            if let Some(seg) = inner.segments.get_mut(&segment_base) {
                // The new bytes follow on from what earlier writes left in the file
                // (the carried partial page is a copy of their end).
                let new_from = file_pos + carried as u64;
                assert_eq!(seg.written_bytes, new_from, "writes follow on");
                seg.written_bytes = file_pos + len as u64;
                // Cached before the written offset moves, so a reader never misses it.
                self.cache.insert_written(
                    self.cache_id,
                    segment_base,
                    new_from,
                    &buf.as_bytes()[carried..len],
                );
            }
            assert!(
                end_offset >= inner.written_offset,
                "the written offset never moves back"
            );
            inner.written_offset = end_offset;
            if !inner.replicated {
                inner.high_watermark = end_offset;
            }
            if needs_sync {
                inner.synced_offset = end_offset;
            }
        }
        self.written_notify.notify(usize::MAX);
        if !self.inner.borrow().replicated {
            self.hw_notify.notify(usize::MAX);
        }
        Ok(())
    }

    /// Runs `work` beside the writer, counted in [`Inner::background`]; a failure
    /// takes the log offline as a failed write does.
    fn in_background(&self, work: impl Future<Output = Result<(), LogError>> + 'static) {
        let Some(log) = self.self_ref.upgrade() else {
            return;
        };
        self.inner.borrow_mut().background += 1;
        sluice_rt::exec::spawn_detached(async move {
            let result = work.await;
            {
                let mut inner = log.inner.borrow_mut();
                inner.background -= 1;
                if let Err(e) = result {
                    tracing::error!(dir = %log.dir.display(), error = %e, "log write failed; log is offline");
                    inner.failed.get_or_insert(e.to_string());
                }
            }
            log.io_event.notify(usize::MAX);
        });
    }

    /// Waits until no background roll work is left (see [`Inner::background`]).
    async fn wait_background(&self) -> Result<(), LogError> {
        self.wait_until(|inner| inner.background == 0).await
    }

    /// Waits until `done` holds of the log's state, re-checked at every `io_event`
    /// (a writer job or background work done, maintenance over); fails if the log
    /// goes offline first.
    async fn wait_until(&self, done: impl Fn(&Inner) -> bool) -> Result<(), LogError> {
        loop {
            let listener = {
                let inner = self.inner.borrow();
                if let Some(reason) = &inner.failed {
                    return Err(LogError::Offline(reason.clone()));
                }
                if done(&inner) {
                    return Ok(());
                }
                self.io_event.listen()
            };
            listener.await;
        }
    }

    async fn finish_job(
        &self,
        segment_base: i64,
        snapshot_offset: i64,
        snapshot: &[u8],
    ) -> Result<(), LogError> {
        let (file, size) = {
            let inner = self.inner.borrow();
            match inner.segments.get(&segment_base) {
                Some(seg) => (seg.file.clone(), seg.meta.size_bytes),
                None => return Ok(()),
            }
        };
        if let Some(file) = &file {
            rtfs::truncate(file, size).await?;
            fdatasync(file).await?;
        }
        let index_files = {
            let mut inner = self.inner.borrow_mut();
            inner.segments.get_mut(&segment_base).map(|seg| {
                seg.tail = Vec::new();
                seg.preallocated_bytes = size;
                seg.meta.index_files(&self.dir)
            })
        };
        // Small files, each written and synced with its directory: on the blocking
        // thread, so a roll does not hold up the shard for a handful of fsyncs.
        let dir = self.dir.clone();
        let snapshot = snapshot.to_vec();
        sluice_rt::exec::spawn_blocking(move || -> std::io::Result<()> {
            for (path, bytes) in index_files.into_iter().flatten() {
                files::write_atomic(&path, &bytes)?;
            }
            write_snapshot(&dir, snapshot_offset, &snapshot)
        })
        .await?;
        Ok(())
    }

    fn snapshot_offsets(&self) -> Result<Vec<i64>, LogError> {
        Ok(snapshot_offsets(&self.dir)?)
    }

    fn write_epoch_checkpoint(&self) -> Result<(), LogError> {
        let text = self.inner.borrow().epochs.to_text();
        files::write_atomic(&self.dir.join(CHECKPOINT_FILE), text.as_bytes())?;
        Ok(())
    }

    /// Producer state as of `end_offset`: the latest snapshot at or below it, plus the
    /// batch headers after the snapshot (read from the segment files). Snapshots past
    /// `end_offset` are deleted.
    async fn rebuild_producers(&self, end_offset: i64) -> Result<ProducerState, LogError> {
        let mut offsets = self.snapshot_offsets()?;
        offsets.sort_unstable();
        let mut state = ProducerState::default();
        let mut from = i64::MIN;
        for &o in offsets.iter().rev() {
            let path = segment_path(&self.dir, o, SNAPSHOT_SUFFIX);
            if o > end_offset {
                files::remove_if_exists(&path)?;
                continue;
            }
            if let Some(s) =
                files::read_if_exists(&path)?.and_then(|b| ProducerState::from_snapshot(&b))
            {
                state = s;
                from = o;
                break;
            }
        }
        let segments: Vec<(i64, Option<Rc<DmaFile>>, u64)> = {
            let inner = self.inner.borrow();
            inner
                .segments
                .values()
                .filter(|s| s.meta.next_offset > from && s.meta.base_offset < end_offset)
                .map(|s| (s.meta.base_offset, s.file.clone(), s.written_bytes))
                .collect()
        };
        for (base, file, written) in segments {
            let Some(file) = file else { continue };
            scan(
                &file,
                written,
                base,
                false,
                Some(end_offset),
                self.config.index_interval_bytes,
                |h| {
                    if h.base_offset() >= from {
                        state.update(h);
                    }
                },
            )
            .await?;
        }
        Ok(state)
    }

    /// Waits until everything appended so far is written.
    async fn wait_idle(&self) -> Result<(), LogError> {
        loop {
            {
                let inner = self.inner.borrow();
                if let Some(reason) = &inner.failed {
                    return Err(LogError::Offline(reason.clone()));
                }
                if inner.is_idle() {
                    return Ok(());
                }
            }
            self.kick_writer();
            let listener = self.io_event.listen();
            if self.inner.borrow().is_idle() {
                continue;
            }
            listener.await;
        }
    }

    /// Takes the maintenance lock and waits for the writer to go idle (everything
    /// appended so far written); the writer does not start again until the guard
    /// drops.
    async fn lock(&self) -> Result<MaintenanceGuard<'_>, LogError> {
        let guard = self.maintenance().await?;
        self.wait_idle().await?;
        self.inner.borrow_mut().writer_blocked = true;
        Ok(guard)
    }

    /// Takes the maintenance lock and stops the writer after its current job, without
    /// writing what is still buffered: for work on segments the writer no longer
    /// touches (retention, DeleteRecords), which a steady stream of appends would
    /// otherwise keep from ever seeing the writer idle. Waits for background roll
    /// work too, which may still be finishing the segments concerned.
    async fn pause_writer(&self) -> Result<MaintenanceGuard<'_>, LogError> {
        let guard = self.maintenance().await?;
        self.inner.borrow_mut().writer_blocked = true;
        self.wait_until(|inner| !inner.writer_running && inner.background == 0)
            .await?;
        Ok(guard)
    }

    /// Takes the maintenance flag (one maintenance operation at a time).
    async fn maintenance(&self) -> Result<MaintenanceGuard<'_>, LogError> {
        loop {
            {
                let mut inner = self.inner.borrow_mut();
                inner.usable()?;
                if !inner.maintenance {
                    inner.maintenance = true;
                    break;
                }
            }
            let listener = self.io_event.listen();
            if !self.inner.borrow().maintenance {
                continue;
            }
            listener.await;
        }
        Ok(MaintenanceGuard(self))
    }

    /// Returns whole batches starting with the one that contains `offset`: at most
    /// `max_bytes` in all, except that the first batch is returned whole when
    /// `min_one` (KIP-74); only batches whose last offset is below `upper_bound`
    /// (itself capped at [`written_offset`](Self::written_offset)). Callers serving
    /// consumers pass [`high_watermark`](Self::high_watermark); followers and the
    /// log's own loaders may pass `i64::MAX`. Empty at the end of the log.
    pub async fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        upper_bound: i64,
        min_one: bool,
    ) -> Result<Bytes, LogError> {
        let upper = {
            let inner = self.inner.borrow();
            if inner.closed {
                return Err(LogError::Closed);
            }
            if offset < inner.log_start_offset || offset > inner.log_end_offset {
                return Err(LogError::OffsetOutOfRange {
                    offset,
                    log_start_offset: inner.log_start_offset,
                    log_end_offset: inner.log_end_offset,
                });
            }
            upper_bound.min(inner.written_offset)
        };
        let window = (max_bytes.saturating_mul(2))
            .saturating_add(self.config.index_interval_bytes as usize)
            .clamp(MIN_READ_WINDOW_BYTES, MAX_READ_WINDOW_BYTES);
        // The answer's byte range in each segment it touches, with the segment's
        // bytes held by its source.
        let mut spans: Vec<(Source<'_>, u64, u64)> = Vec::new();
        let mut total = 0usize;
        let mut cur = offset;
        while cur < upper {
            let Some(loc) = self.locate(cur) else { break };
            let mut src = Source::new(self, &loc, window);
            let mut pos = loc.start_pos;
            let mut span_start = None;
            let mut head = [0u8; HEADER_SIZE];
            let mut full = false;
            while pos < loc.limit {
                let h = src.header_at(pos, &mut head).await?;
                let size = h.total_size();
                let last = h.last_offset();
                if last < cur {
                    pos += size as u64;
                    continue;
                }
                if last >= upper || (total + size > max_bytes && !(min_one && total == 0)) {
                    full = true;
                    break;
                }
                let next = h.next_offset();
                src.ensure(pos, size).await?;
                span_start.get_or_insert(pos);
                total += size;
                pos += size as u64;
                cur = next;
            }
            if let Some(start) = span_start {
                spans.push((src, start, pos));
            }
            if full || loc.is_last {
                break;
            }
            cur = cur.max(loc.next_offset);
        }
        // One cached piece holds the whole answer: hand out a slice of it.
        if let [(src, start, end)] = spans.as_slice() {
            if let Some(bytes) = src.slice(*start, *end) {
                return Ok(bytes);
            }
        }
        let mut out = BytesMut::with_capacity(total);
        for (src, start, end) in &spans {
            src.copy_to(*start, *end, &mut out);
        }
        debug_assert_eq!(out.len(), total);
        let out = out.freeze();
        // Copied from several pieces of one segment: cache the answer whole, so the
        // next reader of the same range (another consumer of the backlog) gets a
        // slice of it.
        if let [(src, start, end)] = spans.as_slice() {
            if self.may_cache_read(src.segment_base, src.truncations, *end) {
                self.cache
                    .promote(self.cache_id, src.segment_base, *start, out.clone());
            }
        }
        Ok(out)
    }

    /// The segment holding `offset` (or the first after it) and where to start
    /// scanning for it.
    fn locate(&self, offset: i64) -> Option<Location> {
        let inner = self.inner.borrow();
        let seg = match inner.segments.range(..=offset).next_back() {
            Some((_, s)) if offset < s.meta.next_offset => s,
            _ => inner.segments.range(offset + 1..).next().map(|(_, s)| s)?,
        };
        let start_pos = if offset > seg.meta.base_offset {
            u64::from(seg.meta.index.lookup(seg.meta.relative(offset)))
        } else {
            0
        };
        let is_last = inner
            .segments
            .range(seg.meta.base_offset + 1..)
            .next()
            .is_none();
        Some(Location {
            segment_base: seg.meta.base_offset,
            file: seg.file.clone(),
            start_pos,
            limit: seg.written_bytes,
            next_offset: seg.meta.next_offset,
            is_last,
        })
    }

    /// ListOffsets by timestamp: the first offset whose record timestamp is
    /// `>= timestamp_ms`, with that timestamp. Records of uncompressed batches are
    /// walked to find the exact record; for compressed (or `LogAppendTime`) batches
    /// the answer is the batch's base offset and max timestamp. `None` if no record
    /// qualifies. (Kafka's special timestamps -1/-2 are the caller's: they are
    /// `log_end_offset` / `log_start_offset`.)
    pub async fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<(i64, i64)>, LogError> {
        let (candidates, hw, log_start) = {
            let inner = self.inner.borrow();
            inner.usable()?;
            let c: Vec<(i64, u64)> = inner
                .segments
                .values()
                .filter(|s| s.meta.max_timestamp_ms >= timestamp_ms)
                .map(|s| {
                    let rel = s.meta.time_index.lookup(timestamp_ms);
                    (s.meta.base_offset, u64::from(s.meta.index.lookup(rel)))
                })
                .collect();
            (c, inner.high_watermark, inner.log_start_offset)
        };
        for (base, start_pos) in candidates {
            let Some(loc) = self.locate(base) else { break };
            if loc.segment_base != base {
                continue;
            }
            let mut src = Source::new(self, &loc, MIN_READ_WINDOW_BYTES);
            let mut pos = start_pos;
            let mut head = [0u8; HEADER_SIZE];
            while pos < loc.limit {
                let h = src.header_at(pos, &mut head).await?;
                let size = h.total_size();
                if h.last_offset() >= hw {
                    return Ok(None);
                }
                if h.last_offset() >= log_start && h.max_timestamp() >= timestamp_ms {
                    let walkable =
                        h.compression() == Some(Compression::None) && !h.is_log_append_time();
                    if !walkable {
                        return Ok(Some((h.base_offset().max(log_start), h.max_timestamp())));
                    }
                    src.ensure(pos, size).await?;
                    let mut whole = BytesMut::with_capacity(size);
                    src.copy_to(pos, pos + size as u64, &mut whole);
                    if let Some((offset, ts)) =
                        records::first_record_at_or_after(&whole, timestamp_ms)
                    {
                        if offset >= log_start {
                            return Ok(Some((offset, ts)));
                        }
                    }
                }
                pos += size as u64;
            }
        }
        Ok(None)
    }

    /// ListOffsets' MAX_TIMESTAMP (-3, KIP-734): the first record carrying the largest
    /// timestamp below the high watermark, with that timestamp (inside compressed or
    /// LogAppendTime batches, the batch's base offset). `None` for an empty log.
    pub async fn max_timestamp(&self) -> Result<Option<(i64, i64)>, LogError> {
        let max_ts = {
            let inner = self.inner.borrow();
            inner.usable()?;
            inner
                .segments
                .values()
                .map(|s| s.meta.max_timestamp_ms)
                .max()
        };
        match max_ts {
            Some(ts) if ts >= 0 => self.offset_for_timestamp(ts).await,
            _ => Ok(None),
        }
    }

    /// Drops every batch whose last offset is `>= offset` (the batch containing
    /// `offset` goes whole); the log end becomes the base of the first dropped batch.
    /// Appends not yet written that the cut removes fail with `Truncated`.
    pub async fn truncate_to(&self, offset: i64) -> Result<(), LogError> {
        let guard = self.lock().await?;
        let (base, file, written) = {
            let inner = self.inner.borrow();
            if offset >= inner.log_end_offset {
                return Ok(());
            }
            if offset < inner.log_start_offset {
                return Err(LogError::OffsetOutOfRange {
                    offset,
                    log_start_offset: inner.log_start_offset,
                    log_end_offset: inner.log_end_offset,
                });
            }
            let (_, seg) = inner
                .segments
                .range(..=offset)
                .next_back()
                .expect("offset >= log start");
            (seg.meta.base_offset, seg.file.clone(), seg.written_bytes)
        };
        let interval = self.config.index_interval_bytes;
        let (meta, tail) = match &file {
            Some(f) => {
                let meta = scan(f, written, base, false, Some(offset), interval, |_| {})
                    .await?
                    .meta;
                let size = meta.size_bytes;
                let from = align_down(size);
                let tail = if size > from {
                    rtfs::read_at(f, from, (size - from) as usize)
                        .await?
                        .to_vec()
                } else {
                    Vec::new()
                };
                (meta, tail)
            }
            None => (SegmentMeta::new(base), Vec::new()),
        };
        let new_end = meta.next_offset;
        let producers = self.rebuild_producers(new_end).await?;
        let size = meta.size_bytes;
        // Apply in one step.
        let removed: Vec<(i64, Option<Rc<DmaFile>>)> = {
            let mut inner = self.inner.borrow_mut();
            let later: Vec<i64> = inner.segments.range(base + 1..).map(|(&b, _)| b).collect();
            let removed = later
                .into_iter()
                .map(|b| (b, inner.segments.remove(&b).and_then(|s| s.file)))
                .collect();
            let seg = inner.segments.get_mut(&base).expect("cut segment");
            seg.first_append_ms = if meta.is_empty() {
                None
            } else {
                seg.first_append_ms
            };
            seg.meta = meta;
            seg.written_bytes = size;
            seg.tail = tail;
            seg.preallocated_bytes = 0;
            inner.filling = None;
            inner.jobs.clear();
            inner.log_end_offset = new_end;
            // Cutting the batch that holds the log start moves the start back to the
            // new end (the start never passes the end).
            inner.log_start_offset = inner.log_start_offset.min(new_end);
            inner.written_offset = inner.written_offset.min(new_end);
            inner.high_watermark = inner.high_watermark.min(new_end);
            inner.synced_offset = inner.synced_offset.min(new_end);
            inner.sync_requested_offset = inner.sync_requested_offset.min(new_end);
            inner.producers = producers;
            inner.epochs.truncate_from_end(new_end);
            inner.truncations += 1;
            self.cache
                .invalidate(self.cache_id, |segment_base, _, end| {
                    segment_base > base || (segment_base == base && end > size)
                });
            removed
        };
        self.io_event.notify(usize::MAX);
        if let Some(f) = &file {
            rtfs::truncate(f, size).await?;
            fdatasync(f).await?;
        }
        for (b, f) in removed {
            if let Some(f) = f {
                rtfs::close_rc(f).await?;
            }
            self.remove_segment_files(b).await?;
        }
        files::sync_dir(&self.dir)?;
        self.write_epoch_checkpoint()?;
        let start = self.log_start_offset();
        files::write_atomic(&self.dir.join(LOG_START_FILE), start.to_string().as_bytes())?;
        drop(guard);
        Ok(())
    }

    /// Empties the log and restarts it at `offset`: every segment, producer snapshot
    /// and leader epoch is dropped; log start, log end, written offset and high
    /// watermark all become `offset` (which may be above or below the old log end).
    /// For a follower whose fetch offset fell below the leader's log start. Appends
    /// not yet resolved fail with `Truncated`. Persisted: the segments are removed
    /// first, then the epoch, log-start and high-watermark checkpoints are written, so
    /// a restart at any point recovers either an empty log at the old start (and the
    /// follower truncates again) or the empty log at `offset`.
    pub async fn truncate_fully_and_start_at(&self, offset: i64) -> Result<(), LogError> {
        if offset < 0 {
            let inner = self.inner.borrow();
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset: inner.log_start_offset,
                log_end_offset: inner.log_end_offset,
            });
        }
        let guard = self.lock().await?;
        let removed: Vec<(i64, Option<Rc<DmaFile>>)> = {
            let mut inner = self.inner.borrow_mut();
            let old = std::mem::take(&mut inner.segments);
            inner.segments.insert(offset, Segment::new(offset));
            inner.filling = None;
            inner.jobs.clear();
            inner.log_start_offset = offset;
            inner.log_end_offset = offset;
            inner.written_offset = offset;
            inner.high_watermark = offset;
            inner.synced_offset = offset;
            inner.sync_requested_offset = offset;
            inner.unsynced_records = 0;
            inner.producers = ProducerState::default();
            inner.epochs = EpochCache::default();
            inner.truncations += 1;
            inner.full_truncation = inner.truncations;
            self.cache.remove_log(self.cache_id);
            old.into_iter().map(|(b, s)| (b, s.file)).collect()
        };
        self.io_event.notify(usize::MAX);
        self.hw_notify.notify(usize::MAX);
        self.written_notify.notify(usize::MAX);
        for (b, f) in removed {
            if let Some(f) = f {
                rtfs::close_rc(f).await?;
            }
            self.remove_segment_files(b).await?;
        }
        for o in self.snapshot_offsets()? {
            files::remove_if_exists(&segment_path(&self.dir, o, SNAPSHOT_SUFFIX))?;
        }
        files::sync_dir(&self.dir)?;
        self.write_epoch_checkpoint()?;
        files::write_atomic(
            &self.dir.join(LOG_START_FILE),
            offset.to_string().as_bytes(),
        )?;
        self.checkpoint_high_watermark()?;
        drop(guard);
        Ok(())
    }

    /// Starts a new segment at the log end (no-op while the active one is empty), and
    /// waits until the old one is finished on disk.
    pub async fn roll(&self) -> Result<(), LogError> {
        self.inner.borrow_mut().roll_now();
        self.kick_writer();
        self.wait_idle().await
    }

    /// Deletes whole segments, oldest first, that are past `retention.ms` (by their
    /// largest timestamp), that keep the log over `retention.bytes`, or that lie
    /// wholly below the log start offset. Never the active segment, nor a segment
    /// with offsets at or past the high watermark. Returns how many.
    pub async fn apply_retention(&self, now_ms: i64) -> Result<usize, LogError> {
        // Most passes find nothing: they neither wait for the writer nor block it.
        if self.retention_victims(now_ms).is_empty() {
            return Ok(0);
        }
        let guard = self.pause_writer().await?;
        let victims = self.retention_victims(now_ms);
        self.remove_segments(guard, &victims).await?;
        Ok(victims.len())
    }

    /// The segments [`apply_retention`](Self::apply_retention) would delete now,
    /// oldest first.
    fn retention_victims(&self, now_ms: i64) -> Vec<i64> {
        let inner = self.inner.borrow();
        let mut remaining: u64 = inner.segments.values().map(|s| s.meta.size_bytes).sum();
        let mut out = Vec::new();
        let closed: Vec<&Segment> = inner.segments.values().collect();
        for pair in closed.windows(2) {
            let (s, next) = (pair[0], pair[1]);
            let size = s.meta.size_bytes;
            let by_time = self.config.retention_ms.is_some_and(|ms| {
                s.meta.max_timestamp_ms >= 0
                    && now_ms.saturating_sub(s.meta.max_timestamp_ms) > ms as i64
            });
            let by_size = self
                .config
                .retention_bytes
                .is_some_and(|limit| remaining - size >= limit);
            let by_start = next.meta.base_offset <= inner.log_start_offset;
            // Never past the high watermark: what is not yet committed stays (so the
            // log start never passes it).
            let committed = next.meta.base_offset <= inner.high_watermark;
            if !committed || !(by_time || by_size || by_start) {
                break;
            }
            out.push(s.meta.base_offset);
            remaining -= size;
        }
        out
    }

    /// DeleteRecords: moves the log start offset up to `offset` (at most the high
    /// watermark), persists it, and deletes segments wholly below it. Returns the new
    /// log start offset.
    pub async fn delete_records_before(&self, offset: i64) -> Result<i64, LogError> {
        let guard = self.pause_writer().await?;
        let victims: Vec<i64> = {
            let mut inner = self.inner.borrow_mut();
            if offset > inner.high_watermark || offset < 0 {
                return Err(LogError::OffsetOutOfRange {
                    offset,
                    log_start_offset: inner.log_start_offset,
                    log_end_offset: inner.log_end_offset,
                });
            }
            if offset <= inner.log_start_offset {
                return Ok(inner.log_start_offset);
            }
            inner.log_start_offset = offset;
            inner.epochs.truncate_from_start(offset);
            let bases: Vec<i64> = inner.segments.keys().copied().collect();
            bases
                .windows(2)
                .take_while(|w| w[1] <= offset)
                .map(|w| w[0])
                .collect()
        };
        files::write_atomic(
            &self.dir.join(LOG_START_FILE),
            offset.to_string().as_bytes(),
        )?;
        self.write_epoch_checkpoint()?;
        self.remove_segments(guard, &victims).await?;
        Ok(self.log_start_offset())
    }

    /// Removes the given (non-active) segments, then moves the log start to the first
    /// remaining segment if it was below it. Takes the maintenance lock, and releases
    /// it once the segments are gone from the log and their files renamed out of the
    /// way (`.spare`, or `.deleted`, which open also removes): unlinking them (with
    /// `discard`, a trim of every freed extent) and syncing the directory then run on
    /// the blocking thread while appends go on, as Kafka deletes segment files
    /// asynchronously. The leader-epoch checkpoint is not rewritten for a move of the
    /// log start: open cuts the cache at the log start it recovers, and the next
    /// checkpoint (epoch change, truncation, close) persists it.
    async fn remove_segments(
        &self,
        guard: MaintenanceGuard<'_>,
        bases: &[i64],
    ) -> Result<(), LogError> {
        if bases.is_empty() {
            return Ok(());
        }
        let files: Vec<(i64, Option<Rc<DmaFile>>, i64)> = {
            let mut inner = self.inner.borrow_mut();
            let active_base = inner.active().meta.base_offset;
            let mut out = Vec::new();
            for &b in bases {
                assert_ne!(b, active_base, "the active segment is never deleted");
                if let Some(seg) = inner.segments.remove(&b) {
                    out.push((b, seg.file, seg.meta.next_offset));
                }
            }
            let first = *inner.segments.keys().next().expect("active remains");
            inner.log_start_offset = inner.log_start_offset.max(first);
            let start = inner.log_start_offset;
            inner.epochs.truncate_from_start(start);
            self.cache.invalidate(self.cache_id, |segment_base, _, _| {
                bases.contains(&segment_base)
            });
            out
        };
        let mut doomed = Vec::new();
        for (b, f, next_offset) in files {
            if let Some(f) = f {
                rtfs::close_rc(f).await?;
            }
            self.keep_as_spare(b, next_offset)?;
            doomed.extend(rename_to_deleted(&self.dir, b)?);
        }
        drop(guard);
        let dir = self.dir.clone();
        sluice_rt::exec::spawn_blocking(move || -> std::io::Result<()> {
            for path in doomed {
                files::remove_if_exists(&path)?;
            }
            files::sync_dir(&dir)
        })
        .await?;
        Ok(())
    }

    /// Removes the files of segment `base` on the shard's blocking thread: unlinking
    /// a large segment frees (and, with `discard`, trims) its extents before it
    /// returns, which would hold up every other task on the shard.
    async fn remove_segment_files(&self, base: i64) -> std::io::Result<()> {
        let dir = self.dir.clone();
        sluice_rt::exec::spawn_blocking(move || remove_segment_files(&dir, base)).await
    }

    /// Keeps the `.log` file of the deleted segment `base` as the spare (renamed to
    /// `<next_offset>.spare`) when there is none yet and preallocation is on.
    fn keep_as_spare(&self, base: i64, next_offset: i64) -> Result<(), LogError> {
        if self.config.preallocate_bytes == 0 || self.inner.borrow().spare.is_some() {
            return Ok(());
        }
        let from = segment_path(&self.dir, base, LOG_SUFFIX);
        let len = match std::fs::metadata(&from) {
            Ok(m) if m.len() > 0 => m.len(),
            _ => return Ok(()),
        };
        let path = segment_path(&self.dir, next_offset, SPARE_SUFFIX);
        std::fs::rename(&from, &path)?;
        self.inner.borrow_mut().spare = Some(Spare {
            path,
            next_offset,
            len,
        });
        Ok(())
    }

    /// Persists the high watermark of a replicated log to
    /// [`HIGH_WATERMARK_FILE`] (atomically; skipped when unchanged since the last
    /// checkpoint). A log that is not replicated keeps no checkpoint (this removes a
    /// leftover one): its high watermark is the log end recovered at open. Called
    /// periodically (`replica.high.watermark.checkpoint.interval.ms`) and by
    /// [`close`](Self::close).
    pub fn checkpoint_high_watermark(&self) -> Result<(), LogError> {
        let (replicated, hw) = {
            let inner = self.inner.borrow();
            if inner.closed {
                return Err(LogError::Closed);
            }
            let unchanged = if inner.replicated {
                inner.hw_checkpoint == Some(inner.high_watermark)
            } else {
                inner.hw_checkpoint.is_none()
            };
            if unchanged {
                return Ok(());
            }
            (inner.replicated, inner.high_watermark)
        };
        let path = self.dir.join(HIGH_WATERMARK_FILE);
        if replicated {
            files::write_atomic(&path, hw.to_string().as_bytes())?;
            self.inner.borrow_mut().hw_checkpoint = Some(hw);
        } else {
            files::remove_if_exists(&path)?;
            files::sync_dir(&self.dir)?;
            self.inner.borrow_mut().hw_checkpoint = None;
        }
        Ok(())
    }

    /// fdatasyncs everything appended so far.
    pub async fn flush(&self) -> Result<(), LogError> {
        self.wait_idle().await?;
        let (file, written) = {
            let inner = self.inner.borrow();
            (inner.active().file.clone(), inner.written_offset)
        };
        if let Some(f) = file {
            fdatasync(&f).await?;
        }
        let mut inner = self.inner.borrow_mut();
        inner.synced_offset = inner.synced_offset.max(written);
        Ok(())
    }

    /// Flushes, writes the active segment's indexes, the producer snapshot and the
    /// checkpoints, then the clean-shutdown marker. The log takes no more requests.
    pub async fn close(&self) -> Result<(), LogError> {
        let guard = self.lock().await?;
        let (file, size) = {
            let inner = self.inner.borrow();
            (inner.active().file.clone(), inner.active().meta.size_bytes)
        };
        if let Some(f) = &file {
            rtfs::truncate(f, size).await?;
            fdatasync(f).await?;
        }
        let (snapshot, end, start) = {
            let inner = self.inner.borrow();
            inner.active().meta.persist_indexes(&self.dir)?;
            (
                inner.producers.to_snapshot(),
                inner.log_end_offset,
                inner.log_start_offset,
            )
        };
        write_snapshot(&self.dir, end, &snapshot)?;
        self.write_epoch_checkpoint()?;
        files::write_atomic(&self.dir.join(LOG_START_FILE), start.to_string().as_bytes())?;
        self.checkpoint_high_watermark()?;
        files::write_atomic(&self.dir.join(CLEAN_SHUTDOWN_FILE), b"")?;
        self.shut().await?;
        drop(guard);
        Ok(())
    }

    /// Marks the log closed and closes its files.
    async fn shut(&self) -> Result<(), LogError> {
        let files: Vec<Rc<DmaFile>> = {
            let mut inner = self.inner.borrow_mut();
            inner.closed = true;
            self.cache.remove_log(self.cache_id);
            inner.filling = None;
            inner.jobs.clear();
            inner
                .segments
                .values_mut()
                .filter_map(|s| s.file.take())
                .collect()
        };
        self.io_event.notify(usize::MAX);
        self.hw_notify.notify(usize::MAX);
        self.written_notify.notify(usize::MAX);
        for f in files {
            rtfs::close_rc(f).await?;
        }
        Ok(())
    }

    /// Deletes the log and its directory (topic deletion).
    /// Works on a closed or offline log too.
    pub async fn delete(self: Rc<Self>) -> Result<(), LogError> {
        match self.lock().await {
            Ok(guard) => {
                self.shut().await?;
                drop(guard);
            }
            Err(LogError::Closed) => {}
            Err(_) => self.shut().await?,
        }
        let dir = self.dir.clone();
        sluice_rt::exec::spawn_blocking(move || std::fs::remove_dir_all(dir)).await?;
        if let Some(parent) = self.dir.parent() {
            files::sync_dir(parent)?;
        }
        Ok(())
    }
}

impl PartitionLog {
    /// Whether bytes of the segment up to `end_pos`, read from its file by a reader that
    /// located it when the log had seen `truncations` truncations, are still the
    /// file's and may be cached: no truncation since, the segment still there, the
    /// bytes written, the log open.
    fn may_cache_read(&self, segment_base: i64, truncations: u64, end_pos: u64) -> bool {
        let inner = self.inner.borrow();
        !inner.closed
            && inner.truncations == truncations
            && inner
                .segments
                .get(&segment_base)
                .is_some_and(|s| end_pos <= s.written_bytes)
    }
}

impl Drop for PartitionLog {
    fn drop(&mut self) {
        self.cache.remove_log(self.cache_id);
    }
}

/// `flush.ms` for a log that stops receiving appends: fdatasyncs written data at
/// least every `interval_ms` (appends also request a sync when the interval has
/// passed). Ends when the log is closed or dropped.
async fn periodic_flush(log: Weak<PartitionLog>, interval_ms: u64) {
    loop {
        sluice_rt::time::sleep(std::time::Duration::from_millis(interval_ms)).await;
        let Some(log) = log.upgrade() else { return };
        let pending = {
            let inner = log.inner.borrow();
            if inner.closed || inner.failed.is_some() {
                return;
            }
            inner.synced_offset < inner.written_offset
        };
        if pending {
            if let Err(e) = log.flush().await {
                tracing::warn!(dir = %log.dir.display(), error = %e, "periodic flush failed");
            }
        }
    }
}

/// An offset checkpoint (decimal text); `None` when missing or unreadable.
fn read_offset_file(path: &Path) -> std::io::Result<Option<i64>> {
    Ok(files::read_if_exists(path)?.and_then(|b| {
        std::str::from_utf8(&b)
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
    }))
}

/// Writes the producer snapshot at `offset` and removes all but the latest
/// [`SNAPSHOTS_KEPT`].
fn write_snapshot(dir: &Path, offset: i64, snapshot: &[u8]) -> std::io::Result<()> {
    files::write_atomic(&segment_path(dir, offset, SNAPSHOT_SUFFIX), snapshot)?;
    let mut offsets = snapshot_offsets(dir)?;
    offsets.sort_unstable();
    let excess = offsets.len().saturating_sub(SNAPSHOTS_KEPT);
    for &old in &offsets[..excess] {
        files::remove_if_exists(&segment_path(dir, old, SNAPSHOT_SUFFIX))?;
    }
    Ok(())
}

/// Offsets of the producer snapshots in `dir`.
fn snapshot_offsets(dir: &Path) -> std::io::Result<Vec<i64>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        if let Some(o) = entry?
            .file_name()
            .to_str()
            .and_then(|n| parse_file_name(n, SNAPSHOT_SUFFIX))
        {
            out.push(o);
        }
    }
    Ok(out)
}

/// fdatasync, counted in the shard's sync latency ([`io_stats`]).
async fn fdatasync(file: &DmaFile) -> std::io::Result<()> {
    let started = Instant::now();
    rtfs::fdatasync(file).await?;
    io_stats::record_sync(started.elapsed());
    Ok(())
}

/// Renames the files of segment `base` that exist to `<name>.deleted`; returns the
/// new paths.
fn rename_to_deleted(dir: &Path, base: i64) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        let from = segment_path(dir, base, suffix);
        let mut to = from.clone().into_os_string();
        to.push(DELETED_SUFFIX);
        match std::fs::rename(&from, &to) {
            Ok(()) => out.push(PathBuf::from(to)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

fn remove_segment_files(dir: &Path, base: i64) -> std::io::Result<()> {
    for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        files::remove_if_exists(&segment_path(dir, base, suffix))?;
    }
    Ok(())
}

/// Where a read goes in one segment.
struct Location {
    segment_base: i64,
    file: Option<Rc<DmaFile>>,
    start_pos: u64,
    /// Written bytes: readers never look past them.
    limit: u64,
    next_offset: i64,
    is_last: bool,
}

/// Reads bytes of one segment for a fetch: from the shard's cache when it holds them,
/// else from the file a window at a time (each window cached in turn). Holds every
/// piece it used until dropped, so eviction during a read does not lose them.
struct Source<'a> {
    log: &'a PartitionLog,
    segment_base: i64,
    file: Option<Rc<DmaFile>>,
    limit: u64,
    window_bytes: usize,
    /// The log's truncation count when the segment was located: a window read from
    /// the file is cached only if no truncation happened meanwhile.
    truncations: u64,
    /// `(file position, bytes)` of the pieces in use, in the order they were found.
    pieces: Vec<(u64, Bytes)>,
}

impl<'a> Source<'a> {
    fn new(log: &'a PartitionLog, loc: &Location, window_bytes: usize) -> Source<'a> {
        Source {
            log,
            segment_base: loc.segment_base,
            file: loc.file.clone(),
            limit: loc.limit,
            window_bytes,
            truncations: log.inner.borrow().truncations,
            pieces: Vec::new(),
        }
    }

    fn corrupt(&self, pos: u64, reason: &str) -> LogError {
        LogError::Corrupt {
            path: segment_path(&self.log.dir, self.segment_base, LOG_SUFFIX)
                .display()
                .to_string(),
            reason: format!("at position {pos}: {reason}"),
        }
    }

    /// The held piece containing `pos`: `(its position, its bytes)`.
    fn piece_at(&self, pos: u64) -> Option<&(u64, Bytes)> {
        self.pieces
            .iter()
            .rev()
            .find(|(start, bytes)| *start <= pos && pos < start + bytes.len() as u64)
    }

    /// Makes the held pieces cover `[pos, pos + len)`: from the cache, else from the
    /// file (a window from the first missing byte, up to the next cached byte).
    async fn ensure(&mut self, pos: u64, len: usize) -> Result<(), LogError> {
        let end = pos + len as u64;
        if end > self.limit {
            return Err(self.corrupt(pos, "batch runs past the written end"));
        }
        let (cache, log_id) = (&self.log.cache, self.log.cache_id);
        let mut cur = pos;
        while cur < end {
            if let Some((start, bytes)) = self.piece_at(cur) {
                cur = start + bytes.len() as u64;
                continue;
            }
            if let Some(piece) = cache.get(log_id, self.segment_base, cur) {
                self.pieces.push(piece);
                continue;
            }
            let Some(file) = &self.file else {
                return Err(self.corrupt(cur, "segment has no file"));
            };
            let mut read_end = end.max(cur + self.window_bytes as u64).min(self.limit);
            if let Some(next) = cache.next_start_after(log_id, self.segment_base, cur) {
                read_end = read_end.min(next);
            }
            let n = (read_end - cur) as usize;
            let window = rtfs::read_at(file, cur, n).await?;
            if window.len() < n {
                return Err(self.corrupt(cur, "short read"));
            }
            let bytes = Bytes::copy_from_slice(&window);
            drop(window);
            if self
                .log
                .may_cache_read(self.segment_base, self.truncations, read_end)
            {
                cache.insert_read(log_id, self.segment_base, cur, bytes.clone());
            }
            self.pieces.push((cur, bytes));
        }
        Ok(())
    }

    /// `[start, end)` as one slice of a held piece, if one holds all of it.
    fn slice(&self, start: u64, end: u64) -> Option<Bytes> {
        let (p, bytes) = self.piece_at(start)?;
        let (from, to) = ((start - p) as usize, (end - p) as usize);
        (to <= bytes.len()).then(|| bytes.slice(from..to))
    }

    /// Appends `[start, end)` from the held pieces ([`ensure`](Self::ensure)d before).
    fn copy_to(&self, start: u64, end: u64, out: &mut BytesMut) {
        let mut cur = start;
        while cur < end {
            let (p, bytes) = self.piece_at(cur).expect("ensured before");
            let from = (cur - p) as usize;
            let take = (bytes.len() - from).min((end - cur) as usize);
            out.extend_from_slice(&bytes[from..from + take]);
            cur += take as u64;
        }
    }

    /// The header of the batch at `pos`, checked for a sane length.
    async fn header_at<'h>(
        &mut self,
        pos: u64,
        head: &'h mut [u8; HEADER_SIZE],
    ) -> Result<&'h batch::BatchHeader, LogError> {
        self.ensure(pos, HEADER_SIZE).await?;
        let mut cur = pos;
        let mut filled = 0;
        while filled < HEADER_SIZE {
            let (p, bytes) = self.piece_at(cur).expect("ensured");
            let from = (cur - p) as usize;
            let take = (bytes.len() - from).min(HEADER_SIZE - filled);
            head[filled..filled + take].copy_from_slice(&bytes[from..from + take]);
            filled += take;
            cur += take as u64;
        }
        let h = header(&head[..]).expect("header-sized");
        if h.batch_length.get() < (HEADER_SIZE - batch::LOG_OVERHEAD) as i32
            || pos + h.total_size() as u64 > self.limit
        {
            return Err(self.corrupt(pos, "bad batch length"));
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{make_batch, make_batch_with_timestamps, BASE_TIMESTAMP_MS};
    use sluice_core::config::TimestampType;
    use std::future::Future;

    const NOW: i64 = BASE_TIMESTAMP_MS + 1_000;

    fn config() -> LogConfig {
        LogConfig {
            segment_bytes: 64 * 1024,
            index_interval_bytes: 1024,
            preallocate_bytes: 256 * 1024,
            retention_ms: None,
            ..LogConfig::default()
        }
    }

    fn run<F, Fut>(f: F)
    where
        F: FnOnce(PathBuf) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        sluice_rt::exec::block_on(async move { f(path).await });
        drop(dir);
    }

    /// Appends `n` single-batch requests of `records` records each; returns the
    /// batches as stored (with their assigned offsets).
    async fn append_n(log: &PartitionLog, n: usize, records: i32, payload: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for _ in 0..n {
            let mut b = make_batch(records, payload, None);
            let info = log.append(&b, 0, NOW).await.unwrap();
            batch::assign_offsets(&mut b, info.base_offset, 0, None);
            out.push(b);
        }
        out
    }

    async fn read_all(log: &PartitionLog, from: i64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut next = from;
        loop {
            let bytes = log
                .read(next, 10_000, log.high_watermark(), true)
                .await
                .unwrap();
            if bytes.is_empty() {
                return out;
            }
            for f in batch::frames(&bytes) {
                let (pos, size) = f.unwrap();
                batch::validate(&bytes[pos..pos + size], usize::MAX).unwrap();
                next = header(&bytes[pos..]).unwrap().next_offset();
            }
            out.extend_from_slice(&bytes);
        }
    }

    fn last_segment_path(dir: &Path) -> PathBuf {
        let mut logs: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let n = e.unwrap().file_name().into_string().unwrap();
                n.ends_with(".log").then(|| dir.join(n))
            })
            .collect();
        logs.sort();
        logs.pop().unwrap()
    }

    #[test]
    fn append_assigns_offsets_and_reads_back() {
        run(|dir| async move {
            let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
            assert_eq!(
                (
                    log.log_start_offset(),
                    log.log_end_offset(),
                    log.high_watermark()
                ),
                (0, 0, 0)
            );
            let stored = append_n(&log, 20, 3, 300).await;
            assert_eq!((log.log_end_offset(), log.high_watermark()), (60, 60));
            assert_eq!(read_all(&log, 0).await, stored.concat());
            // Reading from an offset in the middle of a batch returns that batch.
            let bytes = log.read(4, 1, 60, true).await.unwrap();
            assert_eq!(&bytes[..], &stored[1][..]);
            log.close().await.unwrap();
            // After a clean restart everything comes from the file.
            let log = PartitionLog::open(dir, config()).await.unwrap();
            assert_eq!(log.log_end_offset(), 60);
            assert_eq!(read_all(&log, 0).await, stored.concat());
            assert_eq!(read_all(&log, 31).await, stored[10..].concat());
        });
    }

    #[test]
    fn read_bounds_and_min_one() {
        run(|dir| async move {
            let log = PartitionLog::open(dir, config()).await.unwrap();
            let stored = append_n(&log, 4, 2, 500).await;
            let size = stored[0].len();
            assert!(matches!(
                log.read(9, 100, 8, true).await,
                Err(LogError::OffsetOutOfRange { .. })
            ));
            assert!(matches!(
                log.read(-1, 100, 8, true).await,
                Err(LogError::OffsetOutOfRange { .. })
            ));
            assert!(log.read(8, 100, 8, true).await.unwrap().is_empty());
            // max_bytes smaller than a batch: nothing unless min_one.
            assert!(log.read(0, size - 1, 8, false).await.unwrap().is_empty());
            assert_eq!(log.read(0, size - 1, 8, true).await.unwrap().len(), size);
            // Exactly two batches fit.
            assert_eq!(
                log.read(0, 2 * size + 1, 8, false).await.unwrap().len(),
                2 * size
            );
            // The upper bound excludes the batch containing it.
            assert_eq!(
                log.read(0, 1 << 20, 5, false).await.unwrap().len(),
                2 * size
            );
            assert!(log.read(0, 1 << 20, 0, true).await.unwrap().is_empty());
        });
    }

    #[test]
    fn rolls_by_size_and_time_and_persists_indexes() {
        run(|dir| async move {
            let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
            let stored = append_n(&log, 40, 4, 4000).await; // ~160 KiB over 64 KiB segments
            assert!(log.segment_count() >= 3, "{}", log.segment_count());
            // A roll writes the sealed segment's indexes beside the writer, off
            // the append's path: they exist once that background work is done.
            log.wait_background().await.unwrap();
            assert!(dir.join("00000000000000000000.index").exists());
            assert!(dir.join("00000000000000000000.timeindex").exists());
            assert_eq!(read_all(&log, 0).await, stored.concat());
            // Time: an append segment.ms after the segment's first one rolls.
            let cfg = LogConfig {
                segment_ms: 1_000,
                ..config()
            };
            let log2 = PartitionLog::open(dir.join("../t-1"), cfg).await.unwrap();
            let b = make_batch(1, 10, None);
            log2.append(&b, 0, NOW).await.unwrap();
            log2.append(&b, 0, NOW + 999).await.unwrap();
            assert_eq!(log2.segment_count(), 1);
            log2.append(&b, 0, NOW + 1_000).await.unwrap();
            assert_eq!(log2.segment_base_offsets(), vec![0, 2]);
            // Explicit roll; a roll of an empty segment is a no-op.
            log2.roll().await.unwrap();
            log2.roll().await.unwrap();
            assert_eq!(log2.segment_base_offsets(), vec![0, 2, 3]);
            log.close().await.unwrap();
            let log = PartitionLog::open(dir, config()).await.unwrap();
            assert_eq!(read_all(&log, 0).await, stored.concat());
        });
    }

    async fn reopen_after_damage(
        dir: PathBuf,
        damage: impl FnOnce(&Path),
    ) -> (Vec<Vec<u8>>, Rc<PartitionLog>) {
        let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
        let stored = append_n(&log, 5, 2, 700).await;
        drop(log); // unclean: no close
        damage(&last_segment_path(&dir));
        let log = PartitionLog::open(dir, config()).await.unwrap();
        (stored, log)
    }

    #[test]
    fn recovery_truncates_torn_tail() {
        run(|dir| async move {
            let (stored, log) = reopen_after_damage(dir.clone(), |p| {
                let len: usize = stored_len_before_last(p);
                let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
                f.set_len(len as u64 + 100).unwrap();
            })
            .await;
            assert_eq!(log.log_end_offset(), 8);
            assert_eq!(read_all(&log, 0).await, stored[..4].concat());
            // The log continues after the cut.
            let more = append_n(&log, 1, 2, 10).await;
            assert_eq!(header(&more[0]).unwrap().base_offset(), 8);
            assert_eq!(
                std::fs::metadata(last_segment_path(&dir)).unwrap().len() % PAGE_BYTES,
                0
            );
        });
    }

    /// Byte position where the last batch of the segment starts.
    fn stored_len_before_last(p: &Path) -> usize {
        let bytes = std::fs::read(p).unwrap();
        let mut last = 0;
        for f in batch::frames(&bytes) {
            match f {
                Ok((pos, _)) if header(&bytes[pos..]).unwrap().batch_length.get() > 0 => last = pos,
                _ => break,
            }
        }
        last
    }

    #[test]
    fn preallocated_space_is_cut_at_recovery_and_at_close() {
        run(|dir| async move {
            let mut lens = Vec::new();
            let (stored, log) = reopen_after_damage(dir.clone(), |p| {
                lens.push(std::fs::metadata(p).unwrap().len());
            })
            .await;
            let data: u64 = stored.iter().map(|b| b.len() as u64).sum();
            // The writes went into space reserved ahead (up to where the segment will
            // roll), which the file's size covers.
            assert!(data < config().segment_bytes);
            assert_eq!(lens, [config().segment_bytes]);
            assert_eq!(log.log_end_offset(), 10);
            assert_eq!(read_all(&log, 0).await, stored.concat());
            let seg = last_segment_path(&dir);
            assert_eq!(std::fs::metadata(&seg).unwrap().len(), data);
            let more = append_n(&log, 1, 2, 10).await;
            assert!(std::fs::metadata(&seg).unwrap().len() > data + 4096);
            log.close().await.unwrap();
            let total = data + more[0].len() as u64;
            assert_eq!(std::fs::metadata(&seg).unwrap().len(), total);
        });
    }

    #[test]
    fn recovery_truncates_corrupt_crc() {
        run(|dir| async move {
            let (stored, log) = reopen_after_damage(dir, |p| {
                let pos = stored_len_before_last(p);
                let mut bytes = std::fs::read(p).unwrap();
                bytes[pos + HEADER_SIZE + 5] ^= 0x55;
                std::fs::write(p, bytes).unwrap();
            })
            .await;
            assert_eq!(log.log_end_offset(), 8);
            assert_eq!(read_all(&log, 0).await, stored[..4].concat());
        });
    }

    #[test]
    fn recovery_drops_zero_tail() {
        run(|dir| async move {
            let (stored, log) = reopen_after_damage(dir.clone(), |p| {
                let mut bytes = std::fs::read(p).unwrap();
                bytes.extend_from_slice(&[0u8; 20_000]);
                std::fs::write(p, bytes).unwrap();
            })
            .await;
            assert_eq!(log.log_end_offset(), 10);
            assert_eq!(read_all(&log, 0).await, stored.concat());
            let expected: usize = stored.iter().map(Vec::len).sum();
            assert_eq!(
                std::fs::metadata(last_segment_path(&dir)).unwrap().len(),
                expected as u64
            );
        });
    }

    #[test]
    fn idempotent_producer_duplicate_gap_epoch_and_restart() {
        run(|dir| async move {
            let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
            let b0 = make_batch(3, 30, Some((9, 0, 0)));
            let b1 = make_batch(2, 30, Some((9, 0, 3)));
            let i0 = log.append(&b0, 0, NOW).await.unwrap();
            log.append(&b1, 0, NOW).await.unwrap();
            let dup = log.append(&b0, 0, NOW).await.unwrap();
            assert_eq!(
                (dup.base_offset, dup.last_offset, dup.duplicate),
                (i0.base_offset, i0.last_offset, true)
            );
            assert_eq!(log.log_end_offset(), 5);
            let gap = make_batch(1, 30, Some((9, 0, 7)));
            let e = log.append(&gap, 0, NOW).await.unwrap_err();
            assert_eq!(
                e.error_code(),
                sluice_core::ErrorCode::OutOfOrderSequenceNumber
            );
            log.append(&make_batch(1, 30, Some((9, 1, 0))), 0, NOW)
                .await
                .unwrap();
            let e = log
                .append(&make_batch(1, 30, Some((9, 0, 5))), 0, NOW)
                .await
                .unwrap_err();
            assert_eq!(e.error_code(), sluice_core::ErrorCode::InvalidProducerEpoch);
            let b2 = make_batch(1, 30, Some((9, 1, 1)));
            log.append(&b2, 0, NOW).await.unwrap();
            // Unclean restart: state rebuilt from the batch headers.
            drop(log);
            let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
            let dup = log.append(&b2, 0, NOW).await.unwrap();
            assert!(dup.duplicate);
            assert_eq!(dup.base_offset, 6);
            // Clean restart: state from the snapshot.
            log.close().await.unwrap();
            assert!(dir.join("00000000000000000007.snapshot").exists());
            let log = PartitionLog::open(dir, config()).await.unwrap();
            assert!(log.append(&b2, 0, NOW).await.unwrap().duplicate);
            let b3 = make_batch(1, 30, Some((9, 1, 2)));
            assert_eq!(log.append(&b3, 0, NOW).await.unwrap().base_offset, 7);
        });
    }

    #[test]
    fn retention_by_time_and_bytes() {
        run(|dir| async move {
            let cfg = LogConfig {
                retention_bytes: Some(100 * 1024),
                ..config()
            };
            let log = PartitionLog::open(dir.clone(), cfg).await.unwrap();
            append_n(&log, 60, 2, 4000).await; // ~240 KiB
            let before = log.segment_count();
            let size_before = log.size_bytes();
            let deleted = log.apply_retention(NOW).await.unwrap();
            assert!(deleted > 0);
            assert_eq!(log.segment_count(), before - deleted);
            assert!(log.size_bytes() >= 100 * 1024 && log.size_bytes() < size_before);
            let first = log.segment_base_offsets()[0];
            assert_eq!(log.log_start_offset(), first);
            assert!(matches!(
                log.read(0, 100, 1000, true).await,
                Err(LogError::OffsetOutOfRange { .. })
            ));
            assert!(!log
                .read(first, 100, log.high_watermark(), true)
                .await
                .unwrap()
                .is_empty());
            assert!(!dir.join("00000000000000000000.log").exists());
            // By time: everything but the active segment is older than retention.ms.
            let cfg = LogConfig {
                retention_ms: Some(60_000),
                ..config()
            };
            let log = PartitionLog::open(dir.join("../t-1"), cfg).await.unwrap();
            append_n(&log, 40, 2, 4000).await;
            assert_eq!(
                log.apply_retention(BASE_TIMESTAMP_MS + 60_000)
                    .await
                    .unwrap(),
                0
            );
            let n = log.segment_count();
            assert_eq!(
                log.apply_retention(BASE_TIMESTAMP_MS + 60_100)
                    .await
                    .unwrap(),
                n - 1
            );
            assert_eq!(log.segment_count(), 1);
        });
    }

    fn spare_files(dir: &Path) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(SPARE_SUFFIX))
            .collect();
        out.sort();
        out
    }

    fn inode(p: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(p).unwrap().ino()
    }

    /// A log with retention by bytes whose retention has just deleted segments; returns
    /// it with every batch appended, the spare's inode and the offset named by it.
    async fn log_with_a_spare(dir: &Path) -> (Rc<PartitionLog>, Vec<Vec<u8>>, u64, i64) {
        let cfg = LogConfig {
            retention_bytes: Some(100 * 1024),
            ..config()
        };
        let log = PartitionLog::open(dir.to_path_buf(), cfg).await.unwrap();
        let stored = append_n(&log, 60, 2, 4000).await; // ~240 KiB in 64 KiB segments
        let first_base = log.segment_base_offsets()[0];
        let second_base = log.segment_base_offsets()[1];
        let old = inode(&segment_path(dir, first_base, LOG_SUFFIX));
        assert!(log.apply_retention(NOW).await.unwrap() > 0);
        // The first deleted segment's file is kept, named by the offset after it.
        let spares = spare_files(dir);
        assert_eq!(spares, [format!("{second_base:020}{SPARE_SUFFIX}")]);
        let spare = dir.join(&spares[0]);
        assert_eq!(inode(&spare), old);
        assert!(!segment_path(dir, first_base, LOG_SUFFIX).exists());
        assert!(!segment_path(dir, first_base, INDEX_SUFFIX).exists());
        (log, stored, old, second_base)
    }

    /// Appends to `log` (recording the batches in `stored`) until a new segment
    /// starts; returns its base offset.
    async fn append_until_roll(log: &PartitionLog, stored: &mut Vec<Vec<u8>>) -> i64 {
        let before = log.segment_base_offsets();
        while log.segment_base_offsets().last() == before.last() {
            stored.extend(append_n(log, 1, 2, 4000).await);
        }
        *log.segment_base_offsets().last().unwrap()
    }

    /// The stored batches from offset `from` on, as the log holds them.
    fn batches_from(stored: &[Vec<u8>], from: i64) -> Vec<u8> {
        stored
            .iter()
            .filter(|b| header(b).unwrap().base_offset() >= from)
            .flatten()
            .copied()
            .collect()
    }

    /// Occupies the shard's blocking thread until the returned sender is dropped or
    /// sent to; resolves once the thread is held.
    async fn hold_blocking_thread() -> std::sync::mpsc::Sender<()> {
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = sluice_rt::sync::bounded::<()>(1);
        sluice_rt::exec::spawn_detached(async move {
            sluice_rt::exec::spawn_blocking(move || {
                let _ = started_tx.send_blocking(());
                let _ = held.recv();
            })
            .await;
        });
        started_rx.recv().await.unwrap();
        release
    }

    /// Guards a step that must complete without the blocking thread: with the thread
    /// held, a step that needs it never completes, and the test fails here instead of
    /// hanging.
    async fn without_blocking_thread<T>(step: impl Future<Output = T>) -> T {
        sluice_rt::time::timeout(std::time::Duration::from_secs(30), step)
            .await
            .expect("the step waited for the blocking thread")
    }

    fn deleted_files(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(DELETED_SUFFIX))
            .collect()
    }

    #[test]
    fn appends_after_a_roll_do_not_wait_for_the_old_segment_to_be_finished() {
        run(|dir| async move {
            let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
            let mut stored = append_n(&log, 2, 2, 4000).await;
            log.flush().await.unwrap();
            // The rolled segment's index files and the new segment's directory sync
            // need the blocking thread; the appends must not.
            let release = hold_blocking_thread().await;
            let new_base = without_blocking_thread(async {
                let base = append_until_roll(&log, &mut stored).await;
                stored.extend(append_n(&log, 3, 2, 4000).await);
                base
            })
            .await;
            assert_eq!(log.written_offset(), log.log_end_offset());
            assert!(!segment_path(&dir, 0, INDEX_SUFFIX).exists());
            assert_eq!(read_all(&log, 0).await, stored.concat());
            drop(release);
            // Once the thread is free the roll completes: idle means finished.
            log.flush().await.unwrap();
            assert!(segment_path(&dir, 0, INDEX_SUFFIX).exists());
            assert!(segment_path(&dir, 0, TIME_INDEX_SUFFIX).exists());
            assert!(new_base > 0);
            log.close().await.unwrap();
            let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
            assert_eq!(read_all(&log, 0).await, stored.concat());
        });
    }

    #[test]
    fn a_synced_append_after_a_roll_waits_for_the_old_segment_to_be_finished() {
        run(|dir| async move {
            let cfg = LogConfig {
                flush_messages: Some(1),
                ..config()
            };
            let log = PartitionLog::open(dir.clone(), cfg).await.unwrap();
            let mut stored = append_n(&log, 2, 2, 4000).await;
            let release = hold_blocking_thread().await;
            let done = Rc::new(std::cell::Cell::new(false));
            let appender = {
                let (log, done) = (log.clone(), done.clone());
                sluice_rt::exec::spawn(async move {
                    let base = append_until_roll(&log, &mut stored).await;
                    // Acknowledged (synced) in the new segment: the old one is cut,
                    // synced and indexed by now.
                    let indexed = segment_path(&log.dir, 0, INDEX_SUFFIX).exists();
                    done.set(true);
                    (base, indexed)
                })
            };
            // With the thread held, the first append in the new segment cannot be
            // acknowledged: the old segment is not finished, and the new one's
            // directory entry not synced. Give a wrong implementation time to
            // acknowledge it anyway.
            for _ in 0..200 {
                sluice_rt::time::sleep(std::time::Duration::from_millis(1)).await;
                assert!(!done.get(), "acknowledged before the roll was durable");
            }
            drop(release);
            let (base, indexed) = appender.await;
            assert!(base > 0);
            assert!(
                indexed,
                "acknowledged before the rolled segment was finished"
            );
            assert_eq!(log.inner.borrow().synced_offset, log.log_end_offset());
        });
    }

    #[test]
    fn retention_does_not_hold_up_appends_while_it_unlinks() {
        run(|dir| async move {
            let cfg = LogConfig {
                retention_bytes: Some(100 * 1024),
                ..config()
            };
            let log = PartitionLog::open(dir.clone(), cfg.clone()).await.unwrap();
            let mut stored = append_n(&log, 60, 2, 4000).await; // ~240 KiB in 64 KiB segments
            log.flush().await.unwrap();
            let segments = log.segment_count();
            let release = hold_blocking_thread().await;
            let retention = {
                let log = log.clone();
                sluice_rt::exec::spawn(async move { log.apply_retention(NOW).await })
            };
            // The pass removes the segments from the log and renames their files
            // at once; the unlinks wait for the blocking thread, the appends do not.
            without_blocking_thread(async {
                while log.segment_count() == segments {
                    sluice_rt::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                stored.extend(append_n(&log, 2, 2, 4000).await);
            })
            .await;
            assert!(!deleted_files(&dir).is_empty());
            drop(release);
            let deleted = retention.await.unwrap();
            assert_eq!(log.segment_count(), segments - deleted);
            assert!(deleted_files(&dir).is_empty());
            let start = log.log_start_offset();
            assert_eq!(read_all(&log, start).await, batches_from(&stored, start));
        });
    }

    #[test]
    fn open_removes_files_a_retention_pass_left_renamed() {
        run(|dir| async move {
            let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
            let stored = append_n(&log, 3, 2, 4000).await;
            log.close().await.unwrap();
            drop(log);
            for suffix in [LOG_SUFFIX, INDEX_SUFFIX] {
                let mut name = segment_path(&dir, 0, suffix).into_os_string();
                name.push(format!("-old{DELETED_SUFFIX}"));
                std::fs::write(&name, b"stale").unwrap();
            }
            assert_eq!(deleted_files(&dir).len(), 2);
            let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
            assert!(deleted_files(&dir).is_empty());
            assert_eq!(read_all(&log, 0).await, stored.concat());
        });
    }

    #[test]
    fn a_segment_deleted_by_retention_becomes_the_file_of_the_next_segment() {
        run(|dir| async move {
            let (log, mut stored, spare_inode, _) = log_with_a_spare(&dir).await;
            // The next new segment is written over the spare.
            let new_base = append_until_roll(&log, &mut stored).await;
            let new_path = segment_path(&dir, new_base, LOG_SUFFIX);
            assert_eq!(inode(&new_path), spare_inode);
            assert!(spare_files(&dir).is_empty());
            // What is read back is what was appended from the log start: nothing of
            // the old segment's bytes past the new data.
            let start = log.log_start_offset();
            let expected = batches_from(&stored, start);
            assert_eq!(read_all(&log, start).await, expected);
            // A clean close cuts the reused file to its data; a reopen reads the same.
            log.close().await.unwrap();
            let active_bytes = batches_from(&stored, new_base).len() as u64;
            assert_eq!(std::fs::metadata(&new_path).unwrap().len(), active_bytes);
            let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
            assert_eq!(read_all(&log, start).await, expected);
        });
    }

    #[test]
    fn recovery_of_a_reused_file_stops_at_the_stale_batches_past_the_data() {
        run(|dir| async move {
            let (log, mut stored, _, _) = log_with_a_spare(&dir).await;
            let new_base = append_until_roll(&log, &mut stored).await;
            let end = log.log_end_offset();
            let new_path = segment_path(&dir, new_base, LOG_SUFFIX);
            let data = batches_from(&stored, new_base).len();
            drop(log); // unclean: no close
            let bytes = std::fs::read(&new_path).unwrap();
            // The rest of the file is the old segment's: batches (offsets below the
            // new base) where the zero padding of the last page does not hide them.
            assert!(bytes.len() > data + 4096);
            let stale = align_up(data as u64) as usize;
            let stale_header = header(&bytes[stale..]).unwrap();
            assert!(stale_header.base_offset() < new_base);
            // Make the stale data follow the new data directly, as when the data ends
            // on a page boundary.
            let mut shifted = bytes[..data].to_vec();
            shifted.extend_from_slice(&bytes[stale..]);
            std::fs::write(&new_path, &shifted).unwrap();
            let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
            assert_eq!(log.log_end_offset(), end);
            assert_eq!(std::fs::metadata(&new_path).unwrap().len(), data as u64);
            let start = log.log_start_offset();
            let expected = batches_from(&stored, start);
            assert_eq!(read_all(&log, start).await, expected);
            // And the log goes on from there.
            let more = append_n(&log, 1, 2, 10).await;
            assert_eq!(header(&more[0]).unwrap().base_offset(), end);
        });
    }

    #[test]
    fn a_spare_is_never_reused_below_its_offsets_and_survives_a_restart() {
        run(|dir| async move {
            let (log, _, spare_inode, spare_next) = log_with_a_spare(&dir).await;
            log.close().await.unwrap();
            // The spare is found again at open.
            let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
            assert_eq!(spare_files(&dir).len(), 1);
            // A log restarted below the spare's offsets (a follower reset) must not
            // write over it: its stale batches could follow on from the new ones.
            log.truncate_fully_and_start_at(0).await.unwrap();
            append_n(&log, 3, 2, 100).await;
            assert_ne!(inode(&segment_path(&dir, 0, LOG_SUFFIX)), spare_inode);
            assert_eq!(
                spare_files(&dir),
                [format!("{spare_next:020}{SPARE_SUFFIX}")]
            );
            assert_eq!(
                read_all(&log, 0).await.len(),
                3 * make_batch(2, 100, None).len()
            );
            // With preallocation off there are no spares: a leftover one is removed.
            log.close().await.unwrap();
            let cfg = LogConfig {
                preallocate_bytes: 0,
                ..config()
            };
            let _log = PartitionLog::open(dir.clone(), cfg).await.unwrap();
            assert!(spare_files(&dir).is_empty());
        });
    }

    #[test]
    fn delete_records_moves_log_start_and_survives_restart() {
        run(|dir| async move {
            let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
            append_n(&log, 40, 2, 4000).await;
            let segments = log.segment_count();
            assert!(matches!(
                log.delete_records_before(81).await,
                Err(LogError::OffsetOutOfRange { .. })
            ));
            assert_eq!(log.delete_records_before(41).await.unwrap(), 41);
            assert!(log.segment_count() < segments);
            assert!(matches!(
                log.read(40, 100, 80, true).await,
                Err(LogError::OffsetOutOfRange { .. })
            ));
            // The batch containing 41 starts at 40.
            let bytes = log.read(41, 100, 80, true).await.unwrap();
            assert_eq!(header(&bytes).unwrap().base_offset(), 40);
            drop(log);
            let log = PartitionLog::open(dir, config()).await.unwrap();
            assert_eq!(log.log_start_offset(), 41);
        });
    }

    #[test]
    fn truncate_drops_tail_and_continues() {
        run(|dir| async move {
            let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
            let stored = append_n(&log, 40, 2, 4000).await;
            log.truncate_to(31).await.unwrap(); // mid-batch: the batch at 30 goes
            assert_eq!((log.log_end_offset(), log.high_watermark()), (30, 30));
            assert_eq!(read_all(&log, 0).await, stored[..15].concat());
            let more = append_n(&log, 3, 2, 100).await;
            assert_eq!(header(&more[0]).unwrap().base_offset(), 30);
            let mut expected = stored[..15].concat();
            expected.extend(more.concat());
            assert_eq!(read_all(&log, 0).await, expected);
            drop(log);
            let log = PartitionLog::open(dir, config()).await.unwrap();
            assert_eq!(read_all(&log, 0).await, expected);
            log.truncate_to(0).await.unwrap();
            assert_eq!((log.log_end_offset(), log.segment_count()), (0, 1));
        });
    }

    #[test]
    fn offset_for_timestamp_walks_records() {
        run(|dir| async move {
            let log = PartitionLog::open(dir, config()).await.unwrap();
            log.append(
                &make_batch_with_timestamps(&[100, 300, 200], 30, None),
                0,
                NOW,
            )
            .await
            .unwrap();
            log.append(&make_batch_with_timestamps(&[400, 500], 30, None), 0, NOW)
                .await
                .unwrap();
            let cases = [
                (0, Some((0, 100))),
                (100, Some((0, 100))),
                (150, Some((1, 300))),
                (301, Some((3, 400))),
                (450, Some((4, 500))),
                (501, None),
            ];
            for (ts, want) in cases {
                assert_eq!(log.offset_for_timestamp(ts).await.unwrap(), want, "ts {ts}");
            }
        });
    }

    #[test]
    fn max_timestamp_finds_the_first_record_with_the_largest_timestamp() {
        run(|dir| async move {
            let log = PartitionLog::open(dir, config()).await.unwrap();
            assert_eq!(log.max_timestamp().await.unwrap(), None);
            for timestamps in [&[100, 900, 200][..], &[400, 900], &[300]] {
                log.append(&make_batch_with_timestamps(timestamps, 30, None), 0, NOW)
                    .await
                    .unwrap();
            }
            assert_eq!(log.max_timestamp().await.unwrap(), Some((1, 900)));
        });
    }

    #[test]
    fn log_append_time_and_leader_epochs() {
        run(|dir| async move {
            let cfg = LogConfig {
                timestamp_type: TimestampType::LogAppendTime,
                ..config()
            };
            let log = PartitionLog::open(dir.clone(), cfg.clone()).await.unwrap();
            let info = log.append(&make_batch(2, 10, None), 3, NOW).await.unwrap();
            assert_eq!(info.log_append_time_ms, NOW);
            log.append(&make_batch(2, 10, None), 5, NOW).await.unwrap();
            log.append(&make_batch(2, 10, None), 5, NOW).await.unwrap();
            let bytes = log.read(0, 1 << 20, 6, true).await.unwrap();
            let h = header(&bytes).unwrap();
            assert!(h.is_log_append_time());
            assert_eq!(
                (h.max_timestamp(), h.partition_leader_epoch.get()),
                (NOW, 3)
            );
            assert_eq!(log.leader_epochs(), vec![(3, 0), (5, 2)]);
            assert_eq!(log.end_offset_for_epoch(4), Some((3, 2)));
            let text = std::fs::read_to_string(dir.join(CHECKPOINT_FILE)).unwrap();
            assert_eq!(text, "0\n2\n3 0\n5 2\n");
            log.truncate_to(2).await.unwrap();
            assert_eq!(log.leader_epochs(), vec![(3, 0)]);
            assert_eq!(log.offset_for_timestamp(NOW).await.unwrap(), Some((0, NOW)));
        });
    }

    #[test]
    fn invalid_batches_append_nothing() {
        run(|dir| async move {
            let log = PartitionLog::open(dir, config()).await.unwrap();
            let good = make_batch(1, 10, None);
            let mut bad = make_batch(1, 10, None);
            *bad.last_mut().unwrap() ^= 1;
            let mut both = good.clone();
            both.extend_from_slice(&bad);
            let e = log.append(&both, 0, NOW).await.unwrap_err();
            assert_eq!(e.error_code(), sluice_core::ErrorCode::CorruptMessage);
            assert!(matches!(
                log.append(&[], 0, NOW).await,
                Err(LogError::EmptyRecordSet)
            ));
            let big = make_batch(1, 2_000_000, None);
            let e = log.append(&big, 0, NOW).await.unwrap_err();
            assert_eq!(e.error_code(), sluice_core::ErrorCode::MessageTooLarge);
            assert_eq!(log.log_end_offset(), 0);
        });
    }

    #[test]
    fn concurrent_appends_keep_call_order_and_group_commit() {
        run(|dir| async move {
            let cfg = LogConfig {
                flush_messages: Some(1),
                ..config()
            };
            let log = PartitionLog::open(dir, cfg).await.unwrap();
            let mut tasks = Vec::new();
            for i in 0..50 {
                let log = log.clone();
                tasks.push(sluice_rt::exec::spawn(async move {
                    let b = make_batch(1, 100 + i, None);
                    log.append(&b, 0, NOW).await.unwrap().base_offset
                }));
            }
            for (i, t) in tasks.into_iter().enumerate() {
                assert_eq!(t.await, i as i64);
            }
            assert_eq!(log.high_watermark(), 50);
            assert_eq!(log.inner.borrow().synced_offset, 50);
            let waiter = log.notify().listen();
            let log2 = log.clone();
            sluice_rt::exec::spawn_detached(async move {
                log2.append(&make_batch(1, 10, None), 0, NOW).await.unwrap();
            });
            waiter.await;
            assert!(log.high_watermark() > 50);
        });
    }

    #[test]
    fn corrupt_middle_segment_drops_later_segments() {
        run(|dir| async move {
            let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
            let stored = append_n(&log, 40, 2, 4000).await;
            let bases = log.segment_base_offsets();
            assert!(bases.len() >= 3);
            drop(log); // unclean: every segment is verified at open
            let second = segment_path(&dir, bases[1], LOG_SUFFIX);
            let mut bytes = std::fs::read(&second).unwrap();
            let first_size = header(&bytes).unwrap().total_size();
            bytes[first_size + HEADER_SIZE + 1] ^= 0xff; // the segment's second batch
            std::fs::write(&second, bytes).unwrap();
            let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
            assert_eq!(log.segment_base_offsets(), bases[..2].to_vec());
            assert_eq!(log.log_end_offset(), bases[1] + 2);
            let kept = stored
                .iter()
                .take_while(|b| header(b).unwrap().base_offset() <= bases[1]);
            assert_eq!(
                read_all(&log, 0).await,
                kept.cloned().collect::<Vec<_>>().concat()
            );
            assert!(!segment_path(&dir, bases[2], LOG_SUFFIX).exists());
        });
    }

    #[test]
    fn missing_or_damaged_index_files_are_rebuilt() {
        run(|dir| async move {
            let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
            let mut stored = Vec::new();
            for i in 0..40 {
                let ts = BASE_TIMESTAMP_MS + 10 * i;
                let mut b = make_batch_with_timestamps(&[ts, ts + 5], 4000, None);
                let info = log.append(&b, 0, NOW).await.unwrap();
                batch::assign_offsets(&mut b, info.base_offset, 0, None);
                stored.push(b);
            }
            log.close().await.unwrap();
            let bases = {
                let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
                let bases = log.segment_base_offsets();
                log.close().await.unwrap();
                bases
            };
            std::fs::remove_file(segment_path(&dir, bases[0], INDEX_SUFFIX)).unwrap();
            std::fs::write(segment_path(&dir, bases[1], TIME_INDEX_SUFFIX), b"garbage").unwrap();
            let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
            assert_eq!(read_all(&log, 0).await, stored.concat());
            for (i, _) in stored.iter().enumerate() {
                let ts = BASE_TIMESTAMP_MS + 10 * i as i64;
                let want = Some((2 * i as i64 + 1, ts + 5));
                assert_eq!(
                    log.offset_for_timestamp(ts + 1).await.unwrap(),
                    want,
                    "batch {i}"
                );
            }
            let last = BASE_TIMESTAMP_MS + 10 * 39 + 5;
            assert_eq!(log.offset_for_timestamp(last + 1).await.unwrap(), None);
        });
    }

    /// Zeroes the segment file `name` behind the log's back: reads that still return
    /// the data did not touch the file.
    fn wipe(dir: &Path, name: &str) {
        let path = dir.join(name);
        let len = std::fs::metadata(&path).unwrap().len() as usize;
        std::fs::write(&path, vec![0u8; len]).unwrap();
    }

    const FIRST_SEGMENT: &str = "00000000000000000000.log";

    #[test]
    fn tailing_reads_are_served_from_memory() {
        run(|dir| async move {
            let cache = ReadCache::new(256 * 1024);
            let log = PartitionLog::open_with_cache(dir.clone(), config(), cache.clone())
                .await
                .unwrap();
            let stored = append_n(&log, 3, 2, 500).await;
            wipe(&dir, FIRST_SEGMENT);
            assert_eq!(read_all(&log, 0).await, stored.concat());
            assert_eq!(cache.stats().misses, 0);
            // (The next write rewrites that last partial page, undoing the damage.)
            // Once the budget has moved on, the same offsets come from the file.
            append_n(&log, 40, 1, 30_000).await;
            assert!(cache.stats().used_bytes <= 256 * 1024);
            assert!(cache.stats().evicted_bytes > 0);
            wipe(&dir, FIRST_SEGMENT);
            let e = log.read(0, 1 << 20, 6, true).await.unwrap_err();
            assert!(matches!(e, LogError::Corrupt { .. }), "{e:?}");
        });
    }

    #[test]
    fn backlog_read_from_disk_is_cached_for_the_next_reader() {
        run(|dir| async move {
            let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
            let stored = append_n(&log, 40, 3, 3_000).await;
            log.close().await.unwrap();
            drop(log);
            let cache = ReadCache::new(8 << 20);
            let log = PartitionLog::open_with_cache(dir.clone(), config(), cache.clone())
                .await
                .unwrap();
            // Cold: the first reader goes to the file and caches what it read.
            assert_eq!(read_all(&log, 0).await, stored.concat());
            let cold = cache.stats();
            assert!(cold.misses > 0 && cold.inserted_bytes > 0, "{cold:?}");
            // The second reader is served from memory: the file is not touched.
            assert!(log.segment_count() > 1);
            for entry in std::fs::read_dir(&dir).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                if name.ends_with(LOG_SUFFIX) {
                    wipe(&dir, &name);
                }
            }
            assert_eq!(read_all(&log, 0).await, stored.concat());
            let warm = cache.stats();
            assert_eq!(warm.misses, cold.misses);
            assert!(warm.hits > cold.hits);
            // An answer inside one cached piece is a slice of it, not a copy.
            let a = log
                .read(3, 2_500, log.high_watermark(), true)
                .await
                .unwrap();
            let b = log
                .read(3, 2_500, log.high_watermark(), true)
                .await
                .unwrap();
            assert!(!a.is_empty());
            assert_eq!(a.as_ptr(), b.as_ptr());
        });
    }

    #[test]
    fn an_answer_copied_from_several_pieces_is_cached_whole() {
        run(|dir| async move {
            let cfg = LogConfig {
                segment_bytes: 1 << 20,
                ..config()
            };
            let cache = ReadCache::new(8 << 20);
            let log = PartitionLog::open_with_cache(dir.clone(), cfg, cache.clone())
                .await
                .unwrap();
            // One write per append: entries of about 90 KB (writes merge while short).
            let stored = append_n(&log, 20, 1, 30_000).await;
            assert!(cache.stats().entries > 3);
            let hw = log.high_watermark();
            let a = log.read(1, 200_000, hw, true).await.unwrap();
            let b = log.read(1, 200_000, hw, true).await.unwrap();
            assert!(a.len() > 150_000);
            assert_eq!(a, stored[1..a.len() / stored[1].len() + 1].concat());
            assert_eq!(
                a.as_ptr(),
                b.as_ptr(),
                "the second read is a slice of the first"
            );
            // The pieces around it keep the rest: everything reads back, from memory.
            wipe(&dir, FIRST_SEGMENT);
            assert_eq!(read_all(&log, 0).await, stored.concat());
            assert_eq!(cache.stats().misses, 0);
        });
    }

    #[test]
    fn cache_budget_is_shared_by_the_logs_of_a_shard() {
        run(|dir| async move {
            let budget = 96 * 1024;
            let cache = ReadCache::new(budget);
            let a = PartitionLog::open_with_cache(dir.join("a"), config(), cache.clone())
                .await
                .unwrap();
            let b = PartitionLog::open_with_cache(dir.join("b"), config(), cache.clone())
                .await
                .unwrap();
            let mut stored_a = Vec::new();
            let mut stored_b = Vec::new();
            for _ in 0..10 {
                stored_a.extend(append_n(&a, 2, 2, 6_000).await);
                stored_b.extend(append_n(&b, 2, 2, 6_000).await);
                assert!(cache.stats().used_bytes <= budget);
            }
            assert!(cache.stats().evicted_bytes > 0);
            // a's newest bytes are cached; b's first ones were evicted for them.
            assert_eq!(read_all(&a, 0).await, stored_a.concat());
            assert_eq!(read_all(&b, 0).await, stored_b.concat());
            assert!(cache.stats().used_bytes <= budget);
            // Deleting a log drops its entries only.
            let before = cache.stats().used_bytes;
            b.clone().delete().await.unwrap();
            assert!(cache.stats().used_bytes < before);
            a.close().await.unwrap();
            assert_eq!(cache.stats().used_bytes, 0);
        });
    }

    #[test]
    fn truncation_drops_cached_bytes_past_the_cut() {
        run(|dir| async move {
            let cache = ReadCache::new(8 << 20);
            let log = PartitionLog::open_with_cache(dir.clone(), config(), cache.clone())
                .await
                .unwrap();
            let first = append_n(&log, 6, 2, 700).await;
            assert_eq!(read_all(&log, 0).await, first.concat());
            // Cut in the middle and append different batches at the same offsets and
            // file positions: no reader may see the old ones.
            log.truncate_to(6).await.unwrap();
            let second = append_n(&log, 3, 2, 900).await;
            assert_eq!(
                read_all(&log, 0).await,
                [&first[..3], &second[..]].concat().concat()
            );
            // The same through bytes read back from the file: fill the cache from the
            // file, truncate, re-append.
            let fresh = ReadCache::new(8 << 20);
            log.close().await.unwrap();
            drop(log);
            let log = PartitionLog::open_with_cache(dir.clone(), config(), fresh.clone())
                .await
                .unwrap();
            let all = [&first[..3], &second[..]].concat();
            assert_eq!(read_all(&log, 0).await, all.concat());
            assert!(fresh.stats().misses > 0);
            log.truncate_to(2).await.unwrap();
            let third = append_n(&log, 2, 2, 333).await;
            assert_eq!(
                read_all(&log, 0).await,
                [&all[..1], &third[..]].concat().concat()
            );
            // Full truncation restarting at a base that held other bytes.
            log.truncate_fully_and_start_at(0).await.unwrap();
            assert_eq!(fresh.stats().used_bytes, 0);
            let fourth = append_n(&log, 2, 1, 1_234).await;
            assert_eq!(read_all(&log, 0).await, fourth.concat());
        });
    }

    #[test]
    fn retention_drops_the_cached_bytes_of_deleted_segments() {
        run(|dir| async move {
            let cache = ReadCache::new(8 << 20);
            let cfg = LogConfig {
                retention_bytes: Some(20_000),
                ..config()
            };
            let log = PartitionLog::open_with_cache(dir.clone(), cfg, cache.clone())
                .await
                .unwrap();
            let stored = append_n(&log, 40, 1, 6_000).await;
            assert!(log.segment_count() > 2);
            let before = cache.stats().used_bytes;
            assert_eq!(before as u64, log.size_bytes());
            assert!(log.apply_retention(NOW).await.unwrap() > 0);
            // Exactly the remaining segments' bytes stay cached.
            assert_eq!(cache.stats().used_bytes as u64, log.size_bytes());
            let start = log.log_start_offset();
            let kept = batches_from(&stored, start);
            assert_eq!(read_all(&log, start).await, kept);
            // DeleteRecords past a segment: the same.
            let offset = log.high_watermark() - 2;
            log.delete_records_before(offset).await.unwrap();
            assert_eq!(cache.stats().used_bytes as u64, log.size_bytes());
            drop(log);
            assert_eq!(cache.stats().used_bytes, 0, "a dropped log leaves nothing");
        });
    }

    #[test]
    fn replicated_high_watermark_moves_only_on_advance() {
        run(|dir| async move {
            let cfg = LogConfig {
                retention_ms: Some(1_000),
                ..config()
            };
            let log = PartitionLog::open(dir.clone(), cfg).await.unwrap();
            assert!(!log.is_replicated());
            append_n(&log, 2, 2, 100).await;
            assert_eq!((log.written_offset(), log.high_watermark()), (4, 4));
            log.set_replicated(true);
            let stored = append_n(&log, 3, 2, 100).await;
            // acks=1 resolved on the write; consumers do not see it yet.
            assert_eq!(
                (
                    log.log_end_offset(),
                    log.written_offset(),
                    log.high_watermark()
                ),
                (10, 10, 4)
            );
            assert!(log
                .read(4, 1 << 20, log.high_watermark(), true)
                .await
                .unwrap()
                .is_empty());
            // A follower reads up to the written offset.
            assert_eq!(
                &log.read(4, 1 << 20, i64::MAX, true).await.unwrap()[..],
                &stored.concat()[..]
            );
            // ListOffsets' bounds follow the replicated high watermark.
            assert_eq!(
                log.offset_for_timestamp(0).await.unwrap().map(|(o, _)| o),
                Some(0)
            );
            assert_eq!(
                log.offset_for_timestamp(BASE_TIMESTAMP_MS + 1)
                    .await
                    .unwrap()
                    .map(|(o, _)| o),
                Some(1)
            );
            assert!(matches!(
                log.delete_records_before(5).await,
                Err(LogError::OffsetOutOfRange { .. })
            ));
            // Advance: capped at the written offset, never back, notifies.
            let listener = log.notify().listen();
            assert_eq!(log.advance_high_watermark(6), 6);
            listener.await;
            assert_eq!(log.advance_high_watermark(5), 6);
            assert_eq!(log.advance_high_watermark(100), 10);
            assert_eq!(log.high_watermark(), 10);
            // The written offset notifies on its own.
            let listener = log.written_notify().listen();
            let log2 = log.clone();
            sluice_rt::exec::spawn_detached(async move {
                log2.append(&make_batch(1, 10, None), 0, NOW).await.unwrap();
            });
            listener.await;
            assert_eq!((log.written_offset(), log.high_watermark()), (11, 10));
            // Back to not replicated: lifted at once, then follows writes.
            log.set_replicated(false);
            assert_eq!(log.high_watermark(), 11);
            append_n(&log, 1, 1, 10).await;
            assert_eq!(log.high_watermark(), 12);
            // Truncation cuts both.
            log.set_replicated(true);
            append_n(&log, 1, 1, 10).await;
            log.truncate_to(11).await.unwrap();
            assert_eq!(
                (
                    log.log_end_offset(),
                    log.written_offset(),
                    log.high_watermark()
                ),
                (11, 11, 11)
            );
            // Retention keeps what is past the high watermark.
            log.set_replicated(true);
            append_n(&log, 40, 1, 4000).await;
            assert!(log.segment_count() > 2);
            let hw = log.high_watermark();
            assert_eq!(log.apply_retention(i64::MAX).await.unwrap(), 0);
            log.advance_high_watermark(i64::MAX);
            assert!(log.apply_retention(i64::MAX).await.unwrap() > 0);
            assert!(log.log_start_offset() > hw);
        });
    }

    /// Reads everything up to the written offset, as a follower fetch would.
    async fn read_written(log: &PartitionLog, from: i64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut next = from;
        loop {
            let bytes = log.read(next, 10_000, i64::MAX, true).await.unwrap();
            if bytes.is_empty() {
                return out;
            }
            for f in batch::frames(&bytes) {
                let (pos, _) = f.unwrap();
                next = header(&bytes[pos..]).unwrap().next_offset();
            }
            out.extend_from_slice(&bytes);
        }
    }

    #[test]
    fn follower_append_keeps_the_leaders_batches() {
        run(|dir| async move {
            let leader_cfg = LogConfig {
                timestamp_type: TimestampType::LogAppendTime,
                ..config()
            };
            let leader = PartitionLog::open(dir.clone(), leader_cfg).await.unwrap();
            let follower_dir = dir.with_file_name("t-1");
            let follower = PartitionLog::open(follower_dir.clone(), config())
                .await
                .unwrap();
            follower.set_replicated(true);
            let idempotent = make_batch(2, 50, Some((7, 0, 0)));
            leader
                .append(&make_batch(3, 4000, None), 1, NOW)
                .await
                .unwrap();
            leader.append(&idempotent, 1, NOW).await.unwrap();
            for i in 0..30 {
                leader
                    .append(&make_batch(2, 4000, None), 3, NOW + i)
                    .await
                    .unwrap();
            }
            leader
                .append(&make_batch(1, 10, None), 4, NOW)
                .await
                .unwrap();
            let all = read_written(&leader, 0).await;
            // Replicate in fetch-sized pieces.
            let mut next = 0;
            while next < leader.log_end_offset() {
                let piece = leader.read(next, 20_000, i64::MAX, true).await.unwrap();
                let info = follower.append_replicated(&piece).await.unwrap();
                assert_eq!(info.base_offset, next);
                next = info.last_offset + 1;
                assert!(follower.written_offset() >= next);
            }
            assert_eq!(follower.log_end_offset(), leader.log_end_offset());
            assert!(follower.segment_count() > 1, "follower rolls segments");
            assert_eq!(read_written(&follower, 0).await, all);
            // Its high watermark waits for the leader's.
            assert_eq!(follower.high_watermark(), 0);
            assert_eq!(follower.advance_high_watermark(40), 40);
            // Epochs as on the leader.
            assert_eq!(follower.leader_epochs(), vec![(1, 0), (3, 5), (4, 65)]);
            assert_eq!(follower.leader_epochs(), leader.leader_epochs());
            assert_eq!(follower.latest_epoch(), Some(4));
            assert_eq!(follower.end_offset_for_epoch(2), Some((1, 5)));
            assert_eq!(follower.end_offset_for_epoch(3), Some((3, 65)));
            assert_eq!(
                std::fs::read(follower_dir.join(CHECKPOINT_FILE)).unwrap(),
                std::fs::read(dir.join(CHECKPOINT_FILE)).unwrap()
            );
            // Nothing to replicate.
            let info = follower.append_replicated(&[]).await.unwrap();
            assert_eq!((info.base_offset, info.last_offset), (66, 65));
            // Refused: a gap, a repeat, a batch that does not follow on, a bad CRC.
            let mut gap = make_batch(1, 10, None);
            batch::assign_offsets(&mut gap, 67, 4, None);
            let e = follower.append_replicated(&gap).await.unwrap_err();
            assert!(
                matches!(
                    e,
                    LogError::UnexpectedAppendOffset {
                        expected: 66,
                        found: 67
                    }
                ),
                "{e:?}"
            );
            assert_eq!(e.error_code(), sluice_core::ErrorCode::UnknownServerError);
            let repeat = leader.read(65, 1000, i64::MAX, true).await.unwrap();
            assert!(matches!(
                follower.append_replicated(&repeat).await,
                Err(LogError::UnexpectedAppendOffset { .. })
            ));
            let mut first = make_batch(1, 10, None);
            batch::assign_offsets(&mut first, 66, 4, None);
            let mut two = first.clone();
            two.extend_from_slice(&gap[..]); // 66 then 67: fine
            two.extend_from_slice(&gap[..]); // 67 again: refused
            assert!(matches!(
                follower.append_replicated(&two).await,
                Err(LogError::UnexpectedAppendOffset {
                    expected: 68,
                    found: 67
                })
            ));
            let mut bad = first.clone();
            *bad.last_mut().unwrap() ^= 1;
            let e = follower.append_replicated(&bad).await.unwrap_err();
            assert_eq!(e.error_code(), sluice_core::ErrorCode::CorruptMessage);
            assert_eq!(follower.log_end_offset(), 66);
            // Promoted to leader, it still recognises the producer's retry.
            let dup = follower.append(&idempotent, 5, NOW).await.unwrap();
            assert!(dup.duplicate);
            assert_eq!((dup.base_offset, dup.last_offset), (3, 4));
            // Also after an unclean restart (state rebuilt from the headers).
            drop(follower);
            let follower = PartitionLog::open(follower_dir, config()).await.unwrap();
            assert!(
                follower
                    .append(&idempotent, 5, NOW)
                    .await
                    .unwrap()
                    .duplicate
            );
            assert_eq!(read_written(&follower, 0).await, all);
            assert_eq!(follower.latest_epoch(), Some(4));
        });
    }

    #[test]
    fn truncate_fully_restarts_the_log_at_an_offset() {
        run(|dir| async move {
            let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
            let idempotent = make_batch(1, 10, Some((7, 0, 0)));
            log.append(&idempotent, 2, NOW).await.unwrap();
            append_n(&log, 40, 2, 4000).await;
            log.roll().await.unwrap();
            assert!(log.segment_count() > 2);
            assert!(!log.snapshot_offsets().unwrap().is_empty());
            log.set_replicated(true);
            log.checkpoint_high_watermark().unwrap();
            log.truncate_fully_and_start_at(1000).await.unwrap();
            assert_eq!(
                (
                    log.log_start_offset(),
                    log.log_end_offset(),
                    log.written_offset(),
                    log.high_watermark()
                ),
                (1000, 1000, 1000, 1000)
            );
            assert_eq!(log.segment_base_offsets(), vec![1000]);
            assert_eq!(log.leader_epochs(), vec![]);
            assert!(log.snapshot_offsets().unwrap().is_empty());
            assert!(!dir.join("00000000000000000000.log").exists());
            assert!(log
                .read(1000, 100, i64::MAX, true)
                .await
                .unwrap()
                .is_empty());
            assert!(matches!(
                log.read(81, 100, i64::MAX, true).await,
                Err(LogError::OffsetOutOfRange { .. })
            ));
            // A restart before any append keeps the empty log at 1000.
            drop(log);
            let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
            assert_eq!(
                (
                    log.log_start_offset(),
                    log.log_end_offset(),
                    log.high_watermark()
                ),
                (1000, 1000, 1000)
            );
            assert!(log.is_replicated());
            // Replication continues from there; the producer is forgotten.
            let mut b = make_batch(2, 10, None);
            batch::assign_offsets(&mut b, 1000, 6, None);
            log.append_replicated(&b).await.unwrap();
            assert_eq!(log.leader_epochs(), vec![(6, 1000)]);
            let info = log.append(&idempotent, 7, NOW).await.unwrap();
            assert!(!info.duplicate);
            assert_eq!(info.base_offset, 1002);
            // Below the old end works the same way.
            log.truncate_fully_and_start_at(5).await.unwrap();
            append_n(&log, 2, 1, 10).await;
            log.close().await.unwrap();
            let log = PartitionLog::open(dir, config()).await.unwrap();
            assert_eq!((log.log_start_offset(), log.log_end_offset()), (5, 7));
            assert_eq!(log.segment_base_offsets(), vec![5]);
        });
    }

    #[test]
    fn high_watermark_checkpoint_survives_restart_capped_by_the_log_end() {
        run(|dir| async move {
            let hw_file = dir.join(HIGH_WATERMARK_FILE);
            // Not replicated: no checkpoint, the high watermark is the log end.
            let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
            append_n(&log, 3, 2, 100).await;
            log.checkpoint_high_watermark().unwrap();
            log.close().await.unwrap();
            assert!(!hw_file.exists());
            let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
            assert!(!log.is_replicated());
            assert_eq!(log.high_watermark(), 6);
            // Replicated: checkpointed at once, and close keeps the high watermark
            // below the log end.
            log.set_replicated(true);
            assert_eq!(std::fs::read_to_string(&hw_file).unwrap(), "6");
            append_n(&log, 2, 2, 100).await;
            log.advance_high_watermark(8);
            log.close().await.unwrap();
            assert_eq!(std::fs::read_to_string(&hw_file).unwrap(), "8");
            let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
            assert!(log.is_replicated());
            assert_eq!((log.log_end_offset(), log.high_watermark()), (10, 8));
            append_n(&log, 1, 2, 100).await;
            assert_eq!(log.high_watermark(), 8);
            // Periodic checkpoint, then a crash that tears the tail below it.
            log.advance_high_watermark(12);
            log.checkpoint_high_watermark().unwrap();
            assert_eq!(std::fs::read_to_string(&hw_file).unwrap(), "12");
            drop(log);
            let last = last_segment_path(&dir);
            let cut = stored_len_before_last(&last);
            let f = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
            f.set_len(cut as u64 + 10).unwrap();
            let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
            assert_eq!((log.log_end_offset(), log.high_watermark()), (10, 10));
            // Leaving replication lifts the high watermark and drops the checkpoint.
            log.set_replicated(true);
            append_n(&log, 1, 2, 100).await;
            assert_eq!(log.high_watermark(), 10);
            log.set_replicated(false);
            assert_eq!(log.high_watermark(), 12);
            assert!(hw_file.exists());
            log.checkpoint_high_watermark().unwrap();
            assert!(!hw_file.exists());
            drop(log);
            let log = PartitionLog::open(dir, config()).await.unwrap();
            assert!(!log.is_replicated());
            assert_eq!(log.high_watermark(), 12);
        });
    }

    #[test]
    fn delete_removes_directory() {
        run(|dir| async move {
            let log = PartitionLog::open(dir.clone(), config()).await.unwrap();
            append_n(&log, 2, 1, 10).await;
            log.clone().delete().await.unwrap();
            assert!(!dir.exists());
            // A closed log can be deleted too.
            let other = dir.with_file_name("t-9");
            let log2 = PartitionLog::open(other.clone(), config()).await.unwrap();
            log2.close().await.unwrap();
            log2.delete().await.unwrap();
            assert!(!other.exists());
            assert!(matches!(
                log.append(&make_batch(1, 1, None), 0, NOW).await,
                Err(LogError::Closed)
            ));
        });
    }
}
