//! The segment log: one [`PartitionLog`] per partition, living on the partition's
//! owning shard only. `log` knows nothing of the network; it stores Kafka v2 record
//! batches exactly as they arrive on the wire. Of replication it knows only what a
//! replica's log must: a follower append that keeps the leader's offsets and epochs,
//! a high watermark that replication moves, and truncation.
//!
//! # Offsets
//! `log_start_offset <= high_watermark <= written_offset <= log_end_offset`.
//! The log end is the next offset to assign; the written offset is the end of the
//! batches whose write completed (reads stop there, appends resolve there); the high
//! watermark is what consumers may read. Unless the log is replicated
//! ([`PartitionLog::set_replicated`]) the high watermark equals the written offset;
//! replicated, only [`PartitionLog::advance_high_watermark`] raises it (the leader
//! from its ISR's log ends, a follower from its leader's high watermark).
//!
//! Modules:
//! - `partition`: [`PartitionLog`] — append (validation, producer checks, offset
//!   assignment, group-committed direct-I/O writes), follower append, read,
//!   ListOffsets by timestamp, truncation, roll, retention, DeleteRecords, flush,
//!   close, recovery at open.
//! - [`cache`]: [`ReadCache`], the shard's cache of segment bytes (written data and
//!   read-ahead) shared by its logs under one byte budget (`log.cache.max.bytes`).
//! - [`segment`]: a segment's file naming, in-memory metadata and the verifying scan.
//! - [`index`]: the sparse `.index` / `.timeindex` in Kafka's formats.
//! - [`producer`]: idempotent-producer state and its snapshots.
//! - [`epoch`]: the leader-epoch cache (`leader-epoch-checkpoint`).
//! - [`records`]: walking records inside a batch (ListOffsets only).
//! - [`files`]: atomic replacement of small metadata files with `std::fs`.
//! - [`io_stats`]: the shard's segment write and fdatasync latency histograms.
//! - [`testing`]: batch builders for tests across the workspace.
//!
//! # On disk
//! `<log.dirs>/<topic>-<partition>/` holds, per segment, `<base offset, 20 digits>.log`
//! (batches back to back), `.index` and `.timeindex` (written at roll and close);
//! `<offset>.snapshot` producer snapshots (the last two); `leader-epoch-checkpoint`;
//! `log-start-offset` (moved by DeleteRecords and full truncation);
//! `high-watermark-checkpoint` (only while the log is replicated); `.clean-shutdown`
//! (present only between a clean close and the next open).
//!
//! # Durability order
//! Segment data is written with `O_DIRECT` through glommio; small metadata files use
//! `std::fs` (they are written at roll, close, epoch change and DeleteRecords only,
//! never on the append or read path). Those a roll writes (index files, producer
//! snapshot, the new segment's directory sync) and segment unlinks run on the shard's
//! blocking thread (`sluice_rt::exec::spawn_blocking`), so a roll or a retention pass
//! does not stall the shard's other partitions for their fsyncs and trims; the others
//! stay on the shard, where they are ordered with the appends.
//! The shard's [`ReadCache`] holds copies of segment bytes whose write completed (or
//! that were read back from the file); it is only a cache, never a source of truth,
//! and it is invalidated by every operation that changes or removes those bytes.
//! 1. A new segment file is created and its directory fsynced beside its first writes,
//!    as background work (see 3); an acknowledgement that waits for an fdatasync
//!    (the flush policy) also waits for that sync. Without one, an acknowledged write
//!    is safe from a crash of the process, not of the machine, either way.
//! 2. Batches are written into the segment, into space preallocated ahead with
//!    `fallocate`, which sets the file's size: the file is longer than its data (zeroes
//!    past the written end) until it is cut at roll or close. A new segment may instead
//!    take over the partition's *spare*: the `.log` of a segment retention deleted,
//!    renamed `<offset after its last batch>.spare` and reused only by a segment whose
//!    base offset is at least that. Its file then holds stale batches past the data,
//!    all with offsets below the segment's base (writes there overwrite written
//!    extents, which ext4 does inline instead of on an io_uring worker). An append is
//!    acknowledged when its write completed (Kafka's default: replication, not fsync,
//!    gives safety), or after the fdatasync that follows the write when
//!    `flush.messages` / `flush.ms` asks for one.
//!    One fdatasync covers everything written before it.
//! 3. Rolling a segment: its last write completes, then its file is truncated to its
//!    logical size and fdatasynced, and its index files and the producer snapshot
//!    taken at the roll are written, as background work beside the writer: the new
//!    segment's writes do not wait for it. A sync-waiting acknowledgement waits for
//!    all background work, so it never covers data behind an unsynced rolled
//!    segment; maintenance, flush and close wait for it too.
//! 4. Retention and DeleteRecords take segments out of the log and rename their
//!    files (to the spare, or to `<name>.deleted`) with the writer stopped, then let
//!    it go on while the renamed files are unlinked and the directory synced. Open
//!    removes any `.deleted` file a crash left. The leader-epoch checkpoint is not
//!    rewritten for retention's move of the log start: open cuts the epoch cache at
//!    the log start it recovers.
//! 5. Every metadata file is replaced by: write `<name>.tmp`, fsync it, rename over
//!    `<name>`, fsync the directory.
//! 6. The leader-epoch checkpoint is written before the first batch of a new epoch is
//!    copied into the log, so it never lags the data.
//! 7. The high-watermark checkpoint is written when the log becomes replicated,
//!    periodically by the replication layer
//!    ([`PartitionLog::checkpoint_high_watermark`]) and at close; it may lag the
//!    high watermark (recovery only ever lowers what consumers see, never raises it
//!    past the data) and is removed when the log stops being replicated.
//! 8. A full truncation removes every segment and snapshot first, then writes the
//!    epoch, log-start and high-watermark checkpoints.
//! 9. Close: last write, truncate + fdatasync the active segment, its index files, the
//!    producer snapshot at the log end, checkpoints, and last the clean-shutdown
//!    marker.
//!
//! # Recovery (at open)
//! 1. Leftover `*.tmp` and `*.deleted` files are deleted. A `*.spare` file is kept as the spare (one
//!    at most; none when preallocation is off).
//! 2. With the clean-shutdown marker, closed segments are trusted with their index
//!    files when those are consistent (entries increase, positions inside the file);
//!    otherwise, and always for the last segment, and for every segment without the
//!    marker, each batch is verified (length, magic, CRC-32C, count, offsets that
//!    follow on) and the indexes rebuilt.
//! 3. The file is truncated where verification stops: a torn write, a corrupt batch,
//!    the zero padding of the last direct-I/O page, the zeroes of preallocated
//!    space past the data, or, in a reused spare, the first stale batch (its offsets
//!    do not follow on). Nothing acknowledged can be past
//!    that point: an append is acknowledged only after the write holding it completed.
//!    If a segment ends short of where the next begins, the later segments are deleted.
//! 4. Producer state is the latest snapshot at or below the log end plus the batch
//!    headers after it; later snapshots are deleted. The epoch cache drops entries past
//!    the log end.
//! 5. With a high-watermark checkpoint the log opens replicated, its high watermark
//!    the checkpoint clamped to `[log start, log end]`; without one it opens not
//!    replicated with the high watermark at the log end.
//! 6. The clean-shutdown marker is removed (and the directory fsynced) before the log
//!    takes an append.

pub mod cache;
mod chunk;
pub mod epoch;
pub mod error;
pub mod files;
pub mod index;
pub mod io_stats;
mod partition;
pub mod producer;
pub mod records;
pub mod segment;
pub mod testing;

pub use cache::{CacheStats, ReadCache};
pub use error::LogError;
pub use io_stats::LogIoStats;
pub use partition::{
    PartitionLog, CLEAN_SHUTDOWN_FILE, HIGH_WATERMARK_FILE, LOG_START_FILE, WRITE_BUFFER_BYTES,
};

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The timestamp written into the batches on a `LogAppendTime` topic, else -1.
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
    /// The batch was a retry of one already in the log; the offsets are the original
    /// ones and nothing was appended.
    pub duplicate: bool,
}
