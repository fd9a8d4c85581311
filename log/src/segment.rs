//! One segment of a partition log: the file `<base offset, 20 digits>.log`, its
//! in-memory sparse indexes, and the scan that verifies it and rebuilds them.
//!
//! Lives on the partition's owning shard, inside its `PartitionLog`.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use sluice_core::batch::{self, BatchHeader, HEADER_SIZE, LOG_OVERHEAD};
use sluice_rt::fs::{self as rtfs, DmaFile, ReadResult};

use crate::index::{OffsetIndex, TimeIndex};
use crate::LogError;

pub const LOG_SUFFIX: &str = ".log";
pub const INDEX_SUFFIX: &str = ".index";
pub const TIME_INDEX_SUFFIX: &str = ".timeindex";
pub const SNAPSHOT_SUFFIX: &str = ".snapshot";

/// Direct-I/O page: write positions and buffer sizes are multiples of it (it is a
/// multiple of every device's logical block size).
pub const PAGE_BYTES: u64 = 4096;

/// Bytes read at a time when scanning a segment at open.
const SCAN_CHUNK_BYTES: usize = 1 << 20;

/// `<base offset, 20 digits>`, the stem of every file of the segment.
pub fn file_stem(base_offset: i64) -> String {
    format!("{base_offset:020}")
}

/// Path of the segment file `suffix` (`.log`, `.index`, ...) in `dir`.
pub fn segment_path(dir: &Path, base_offset: i64, suffix: &str) -> PathBuf {
    dir.join(format!("{}{suffix}", file_stem(base_offset)))
}

/// The base offset named by `name` if it is `<20 digits><suffix>`.
pub fn parse_file_name(name: &str, suffix: &str) -> Option<i64> {
    let stem = name.strip_suffix(suffix)?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

pub fn align_down(v: u64) -> u64 {
    v & !(PAGE_BYTES - 1)
}

pub fn align_up(v: u64) -> u64 {
    align_down(v + PAGE_BYTES - 1)
}

/// What the sparse indexes and the segment's summary are built from: every batch, in
/// order. Shared by append and the scan, so both build the same indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentMeta {
    pub base_offset: i64,
    /// Logical size: where the last batch ends.
    pub size_bytes: u64,
    /// Offset after the last batch (the base offset while empty).
    pub next_offset: i64,
    /// Largest batch `maxTimestamp`, -1 while empty.
    pub max_timestamp_ms: i64,
    /// Last offset of the batch holding `max_timestamp_ms`.
    pub offset_of_max_timestamp: i64,
    pub index: OffsetIndex,
    pub time_index: TimeIndex,
    bytes_since_index: u64,
}

impl SegmentMeta {
    pub fn new(base_offset: i64) -> SegmentMeta {
        SegmentMeta {
            base_offset,
            size_bytes: 0,
            next_offset: base_offset,
            max_timestamp_ms: -1,
            offset_of_max_timestamp: base_offset,
            index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            bytes_since_index: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.size_bytes == 0
    }

    /// Offset relative to the base, as the index files store it.
    pub fn relative(&self, offset: i64) -> u32 {
        let rel = offset - self.base_offset;
        assert!(
            (0..=i64::from(u32::MAX)).contains(&rel),
            "offset {offset} outside segment {}",
            self.base_offset
        );
        rel as u32
    }

    /// Accounts for the batch `h` written at `position` (which must be the current end).
    pub fn on_batch(&mut self, h: &BatchHeader, position: u64, index_interval_bytes: u32) {
        assert_eq!(position, self.size_bytes, "batches are contiguous");
        assert!(h.base_offset() >= self.next_offset, "offsets increase");
        if self.bytes_since_index >= u64::from(index_interval_bytes) {
            self.index
                .push(self.relative(h.last_offset()), position as u32);
            self.time_index.maybe_push(
                self.max_timestamp_ms,
                self.relative(self.offset_of_max_timestamp),
            );
            self.bytes_since_index = 0;
        }
        let size = h.total_size() as u64;
        self.bytes_since_index += size;
        if h.max_timestamp() > self.max_timestamp_ms {
            self.max_timestamp_ms = h.max_timestamp();
            self.offset_of_max_timestamp = h.last_offset();
        }
        self.next_offset = h.next_offset();
        self.size_bytes = position + size;
    }

    /// Time index as persisted: with a final entry for the segment's largest timestamp,
    /// as Kafka appends at roll, so the segment's maximum is known without a scan.
    pub fn time_index_for_disk(&self) -> TimeIndex {
        let mut ti = self.time_index.clone();
        if self.max_timestamp_ms >= 0 {
            ti.maybe_push(
                self.max_timestamp_ms,
                self.relative(self.offset_of_max_timestamp),
            );
        }
        ti
    }

    /// The `.index` and `.timeindex` files as persisted: their paths in `dir` and
    /// contents (for writing them elsewhere than on the shard).
    pub fn index_files(&self, dir: &Path) -> [(PathBuf, Vec<u8>); 2] {
        [
            (
                segment_path(dir, self.base_offset, INDEX_SUFFIX),
                self.index.to_bytes(),
            ),
            (
                segment_path(dir, self.base_offset, TIME_INDEX_SUFFIX),
                self.time_index_for_disk().to_bytes(),
            ),
        ]
    }

    /// Writes `.index` and `.timeindex` (std::fs, atomically).
    pub fn persist_indexes(&self, dir: &Path) -> std::io::Result<()> {
        crate::files::write_atomic(
            &segment_path(dir, self.base_offset, INDEX_SUFFIX),
            &self.index.to_bytes(),
        )?;
        crate::files::write_atomic(
            &segment_path(dir, self.base_offset, TIME_INDEX_SUFFIX),
            &self.time_index_for_disk().to_bytes(),
        )
    }

    /// Loads the index files of a segment of `size_bytes` whose next segment starts at
    /// `next_offset`, trusting the file (used for segments closed cleanly). `None` if
    /// the files are missing or inconsistent.
    pub fn load_trusted(
        dir: &Path,
        base_offset: i64,
        size_bytes: u64,
        next_offset: i64,
    ) -> Option<SegmentMeta> {
        let rel_last = u32::try_from(next_offset - 1 - base_offset).ok()?;
        if size_bytes == 0 || next_offset <= base_offset {
            return None;
        }
        let ix = std::fs::read(segment_path(dir, base_offset, INDEX_SUFFIX)).ok()?;
        let tix = std::fs::read(segment_path(dir, base_offset, TIME_INDEX_SUFFIX)).ok()?;
        let index = OffsetIndex::from_bytes(&ix, size_bytes)?;
        let time_index = TimeIndex::from_bytes(&tix, rel_last)?;
        let (max_ts, off_max) = time_index
            .last()
            .map_or((-1, base_offset), |(t, o)| (t, base_offset + i64::from(o)));
        Some(SegmentMeta {
            base_offset,
            size_bytes,
            next_offset,
            max_timestamp_ms: max_ts,
            offset_of_max_timestamp: off_max,
            index,
            time_index,
            // Closed segments take no more appends.
            bytes_since_index: 0,
        })
    }
}

/// How a scan ended.
#[derive(Debug)]
pub struct ScanOutcome {
    /// Rebuilt from the valid prefix.
    pub meta: SegmentMeta,
    /// Why the scan stopped before the end of the file, if it did (a torn, zero or
    /// corrupt tail, or `stop_at_offset` reached: `None` then).
    pub invalid_tail: Option<String>,
}

/// Walks the batches of `file` (of `file_len` bytes) from the start, rebuilding the
/// segment's metadata. With `verify` every batch's CRC and fields are checked
/// ([`batch::validate`]); otherwise only its framing. Stops at the first batch that
/// fails, that does not continue the offsets, or (if given) whose last offset is
/// `>= stop_at_offset`. `visit` sees every accepted batch header.
pub async fn scan(
    file: &DmaFile,
    file_len: u64,
    base_offset: i64,
    verify: bool,
    stop_at_offset: Option<i64>,
    index_interval_bytes: u32,
    mut visit: impl FnMut(&BatchHeader),
) -> Result<ScanOutcome, LogError> {
    let mut meta = SegmentMeta::new(base_offset);
    let mut window: Option<(u64, ReadResult)> = None;
    let mut pos = 0u64;
    let invalid_tail = loop {
        if pos >= file_len {
            break None;
        }
        // The header, then the whole batch, must lie in the window.
        let mut need = (HEADER_SIZE as u64).min(file_len - pos);
        let mut attempt = 0;
        let size = loop {
            let covered = window
                .as_ref()
                .is_some_and(|(s, w)| *s <= pos && pos + need <= *s + w.len() as u64);
            if !covered {
                let len = (need as usize)
                    .max(SCAN_CHUNK_BYTES)
                    .min((file_len - pos) as usize);
                window = Some((pos, rtfs::read_at(file, pos, len).await?));
            }
            let (s, w) = window.as_ref().expect("window was just read");
            let bytes = &w[(pos - s) as usize..];
            if attempt == 1 || bytes.len() < HEADER_SIZE {
                break bytes;
            }
            let h = batch::header(bytes).expect("header-sized");
            let length = h.batch_length.get();
            if length < (HEADER_SIZE - LOG_OVERHEAD) as i32 {
                break bytes;
            }
            need = (LOG_OVERHEAD as u64 + length as u64).min(file_len - pos);
            attempt = 1;
        };
        // Zeroes where a batch would start are where the data ends: preallocated
        // space, or the padding of the last direct-I/O page. Not a damaged tail.
        if size.len() >= LOG_OVERHEAD && size[..LOG_OVERHEAD].iter().all(|&b| b == 0) {
            break None;
        }
        let checked = if verify {
            batch::validate(size, usize::MAX)
        } else {
            batch::frame_size(size)
        };
        let batch_size = match checked {
            Ok(n) => n,
            Err(e) => break Some(format!("at position {pos}: {e}")),
        };
        let h = batch::header(size).expect("validated");
        if h.base_offset() < meta.next_offset
            || h.last_offset() < h.base_offset()
            || h.next_offset() - base_offset > i64::from(u32::MAX)
        {
            break Some(format!(
                "at position {pos}: batch offsets {}..={} do not follow {}",
                h.base_offset(),
                h.last_offset(),
                meta.next_offset
            ));
        }
        if stop_at_offset.is_some_and(|o| h.last_offset() >= o) {
            break None;
        }
        visit(h);
        meta.on_batch(h, pos, index_interval_bytes);
        pos += batch_size as u64;
        sluice_rt::exec::yield_if_needed().await;
    };
    Ok(ScanOutcome { meta, invalid_tail })
}

/// One segment of an open log.
pub struct Segment {
    pub meta: SegmentMeta,
    /// Open once the segment has been written to (or was found at open).
    pub file: Option<Rc<DmaFile>>,
    /// Prefix of the file the writer has completed: what readers may read.
    pub written_bytes: u64,
    /// Bytes of the file reserved with fallocate so far.
    pub preallocated_bytes: u64,
    /// The last partial page `[align_down(size), size)` of the segment's contents,
    /// when no write buffer holds it: the start of the next write buffer.
    pub tail: Vec<u8>,
    /// When the segment's first batch was appended (for `segment.ms`); `None` while empty.
    pub first_append_ms: Option<i64>,
}

impl Segment {
    pub fn new(base_offset: i64) -> Segment {
        Segment {
            meta: SegmentMeta::new(base_offset),
            file: None,
            written_bytes: 0,
            preallocated_bytes: 0,
            tail: Vec::new(),
            first_append_ms: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::make_batch;
    use sluice_core::batch::{assign_offsets, header};

    #[test]
    fn segment_names() {
        assert_eq!(file_stem(0), "00000000000000000000");
        assert_eq!(file_stem(1234), "00000000000000001234");
        let dir = Path::new("/d");
        assert_eq!(
            segment_path(dir, 42, INDEX_SUFFIX),
            Path::new("/d/00000000000000000042.index")
        );
        assert_eq!(
            parse_file_name("00000000000000000042.log", LOG_SUFFIX),
            Some(42)
        );
        assert_eq!(
            parse_file_name("00000000000000000042.index", LOG_SUFFIX),
            None
        );
        assert_eq!(parse_file_name("42.log", LOG_SUFFIX), None);
        assert_eq!(
            parse_file_name("0000000000000000004x.log", LOG_SUFFIX),
            None
        );
        assert_eq!(
            (align_down(4097), align_up(4097), align_up(4096)),
            (4096, 8192, 4096)
        );
    }

    #[test]
    fn meta_builds_sparse_index() {
        let mut m = SegmentMeta::new(100);
        let mut next = 100;
        let mut pos = 0;
        for _ in 0..10 {
            let mut b = make_batch(3, 1000, None);
            assign_offsets(&mut b, next, 0, None);
            let h = header(&b).unwrap();
            m.on_batch(h, pos, 2048);
            next = h.next_offset();
            pos += b.len() as u64;
        }
        assert_eq!(m.next_offset, 130);
        assert_eq!(m.size_bytes, pos);
        // ~1.1 KB per batch, one entry every two or three batches.
        assert!(
            m.index.len() >= 3 && m.index.len() <= 5,
            "{}",
            m.index.len()
        );
        assert_eq!(m.index.lookup(0), 0);
        assert!(m.max_timestamp_ms > 0);
    }
}
