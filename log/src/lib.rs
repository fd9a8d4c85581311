//! The segment log: one [`PartitionLog`] per partition, on the partition's owning shard.
//!
//! (Skeleton: an in-memory stand-in with the final API; the direct-I/O segment log
//! replaces it.)

pub mod error;
pub mod files;
pub mod index;
pub mod producer;
pub mod testing;

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

use bytes::Bytes;
use sluice_core::batch::{self, header};
use sluice_core::config::LogConfig;
use sluice_rt::sync::Notify;

pub use error::LogError;

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: i64,
    pub last_offset: i64,
    /// The timestamp written into the batches on a `LogAppendTime` topic, else -1.
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
    /// The batch was a retry of one already in the log; offsets are the original ones.
    pub duplicate: bool,
}

/// One partition's log. Lives on the partition's owning shard (`!Send`), shared there
/// through `Rc`.
pub struct PartitionLog {
    dir: PathBuf,
    config: LogConfig,
    batches: RefCell<Vec<(i64, Vec<u8>)>>,
    end: std::cell::Cell<i64>,
    notify: Notify,
}

impl PartitionLog {
    pub async fn open(dir: PathBuf, config: LogConfig) -> Result<Rc<PartitionLog>, LogError> {
        std::fs::create_dir_all(&dir)?;
        Ok(Rc::new(PartitionLog {
            dir,
            config,
            batches: RefCell::new(Vec::new()),
            end: 0.into(),
            notify: Notify::new(),
        }))
    }
    pub fn config(&self) -> LogConfig {
        self.config.clone()
    }
    pub fn log_start_offset(&self) -> i64 {
        0
    }
    pub fn log_end_offset(&self) -> i64 {
        self.end.get()
    }
    pub fn high_watermark(&self) -> i64 {
        self.end.get()
    }
    pub async fn append(
        &self,
        records: &[u8],
        leader_epoch: i32,
        _now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        let base = self.end.get();
        let mut next = base;
        for f in batch::frames(records) {
            let (pos, size) = f?;
            batch::validate(
                &records[pos..pos + size],
                self.config.max_message_bytes as usize,
            )?;
            let mut b = records[pos..pos + size].to_vec();
            batch::assign_offsets(&mut b, next, leader_epoch, None);
            let h = header(&b).ok_or(LogError::EmptyRecordSet)?;
            let n = h.next_offset();
            self.batches.borrow_mut().push((next, b));
            next = n;
        }
        if next == base {
            return Err(LogError::EmptyRecordSet);
        }
        self.end.set(next);
        self.notify.notify(usize::MAX);
        Ok(AppendInfo {
            base_offset: base,
            last_offset: next - 1,
            log_append_time_ms: -1,
            log_start_offset: 0,
            duplicate: false,
        })
    }
    pub async fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        upper_bound: i64,
        min_one: bool,
    ) -> Result<Bytes, LogError> {
        if offset < 0 || offset > self.end.get() {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset: 0,
                log_end_offset: self.end.get(),
            });
        }
        let mut out = Vec::new();
        for (_, b) in self.batches.borrow().iter() {
            let h = header(b).ok_or(LogError::EmptyRecordSet)?;
            if h.last_offset() < offset {
                continue;
            }
            if h.last_offset() >= upper_bound {
                break;
            }
            if out.len() + b.len() > max_bytes && !(min_one && out.is_empty()) {
                break;
            }
            out.extend_from_slice(b);
        }
        Ok(Bytes::from(out))
    }
    pub async fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<(i64, i64)>, LogError> {
        for (base, b) in self.batches.borrow().iter() {
            let h = header(b).ok_or(LogError::EmptyRecordSet)?;
            if h.max_timestamp() >= timestamp_ms {
                return Ok(Some((*base, h.max_timestamp())));
            }
        }
        Ok(None)
    }
    pub fn notify(&self) -> &Notify {
        &self.notify
    }
    pub async fn truncate_to(&self, offset: i64) -> Result<(), LogError> {
        self.batches
            .borrow_mut()
            .retain(|(_, b)| header(b).is_some_and(|h| h.last_offset() < offset));
        let end = self
            .batches
            .borrow()
            .last()
            .and_then(|(_, b)| header(b).map(|h| h.next_offset()))
            .unwrap_or(0);
        self.end.set(end);
        Ok(())
    }
    pub async fn roll(&self) -> Result<(), LogError> {
        Ok(())
    }
    pub async fn apply_retention(&self, _now_ms: i64) -> Result<usize, LogError> {
        Ok(0)
    }
    pub async fn delete_records_before(&self, _offset: i64) -> Result<i64, LogError> {
        Ok(0)
    }
    pub async fn flush(&self) -> Result<(), LogError> {
        Ok(())
    }
    pub async fn close(&self) -> Result<(), LogError> {
        Ok(())
    }
    pub async fn delete(self: Rc<Self>) -> Result<(), LogError> {
        std::fs::remove_dir_all(&self.dir)?;
        Ok(())
    }
    pub fn size_bytes(&self) -> u64 {
        self.batches
            .borrow()
            .iter()
            .map(|(_, b)| b.len() as u64)
            .sum()
    }
    pub fn segment_count(&self) -> usize {
        1
    }
}
