//! Idempotent-producer state of one partition (Kafka's `ProducerStateManager`).
//!
//! For each producer id: its epoch and the sequence and offset ranges of its last
//! [`MAX_BATCHES_PER_PRODUCER`] batches, which is what lets a retried batch be
//! recognised as a duplicate and answered with its original offsets. Checked from the
//! batch header only. Snapshotted to `<offset, 20 digits>.snapshot` at roll and close;
//! rebuilt at open from the latest snapshot plus the batch headers after it.
//!
//! Lives on the partition's owning shard.

use std::collections::{HashMap, VecDeque};

use sluice_core::batch::{BatchHeader, NO_SEQUENCE};

use crate::LogError;

/// Batches remembered per producer: Kafka's `max.in.flight.requests.per.connection`
/// limit for idempotent producers is 5, so a retry is always among the last five.
pub const MAX_BATCHES_PER_PRODUCER: usize = 5;

/// One appended batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<BatchMetadata>,
}

/// What an append should do with a batch from an idempotent producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// A new batch: append it.
    Append,
    /// A retry of a batch already in the log: answer with its original offsets.
    Duplicate(BatchMetadata),
}

/// Per-partition producer state.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProducerState {
    producers: HashMap<i64, ProducerEntry>,
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

impl ProducerState {
    /// Checks `header` against the producer's state without changing it. Batches
    /// without a producer id are always appended.
    pub fn check(&self, header: &BatchHeader) -> Result<SequenceCheck, LogError> {
        if !header.has_producer_id() {
            return Ok(SequenceCheck::Append);
        }
        let producer_id = header.producer_id();
        let (epoch, first_seq) = (header.producer_epoch(), header.base_sequence());
        let Some(entry) = self.producers.get(&producer_id) else {
            return if first_seq == 0 || first_seq == NO_SEQUENCE {
                Ok(SequenceCheck::Append)
            } else {
                Err(LogError::OutOfOrderSequence {
                    producer_id,
                    expected_after: -1,
                    found: first_seq,
                })
            };
        };
        if epoch < entry.epoch {
            return Err(LogError::InvalidProducerEpoch {
                producer_id,
                current: entry.epoch,
                found: epoch,
            });
        }
        if epoch > entry.epoch {
            return if first_seq == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err(LogError::OutOfOrderSequence {
                    producer_id,
                    expected_after: -1,
                    found: first_seq,
                })
            };
        }
        let last_seq = header.last_sequence();
        if let Some(dup) = entry
            .batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
        {
            return Ok(SequenceCheck::Duplicate(*dup));
        }
        let expected_after = entry.batches.back().map_or(-1, |b| b.last_seq);
        if first_seq != next_seq(expected_after) {
            return Err(LogError::OutOfOrderSequence {
                producer_id,
                expected_after,
                found: first_seq,
            });
        }
        Ok(SequenceCheck::Append)
    }

    /// Records an appended batch (after [`check`](Self::check) said `Append`, or while
    /// replaying the log at open, where no check is made).
    pub fn update(&mut self, header: &BatchHeader) {
        if !header.has_producer_id() {
            return;
        }
        let entry = self
            .producers
            .entry(header.producer_id())
            .or_insert_with(|| ProducerEntry {
                epoch: header.producer_epoch(),
                batches: VecDeque::with_capacity(MAX_BATCHES_PER_PRODUCER),
            });
        if header.producer_epoch() != entry.epoch {
            entry.epoch = header.producer_epoch();
            entry.batches.clear();
        }
        if entry.batches.len() == MAX_BATCHES_PER_PRODUCER {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchMetadata {
            first_seq: header.base_sequence(),
            last_seq: header.last_sequence(),
            first_offset: header.base_offset(),
            last_offset: header.last_offset(),
        });
    }

    /// Number of producers known.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Snapshot file format (all big-endian): `u32` version (1), `u32` producer count,
    /// then per producer `i64` id, `i16` epoch, `u8` batch count, and per batch `i32`
    /// first seq, `i32` last seq, `i64` first offset, `i64` last offset; then a CRC-32C
    /// of everything before it.
    pub fn to_snapshot(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.producers.len() * 40);
        out.extend_from_slice(&1u32.to_be_bytes());
        out.extend_from_slice(&(self.producers.len() as u32).to_be_bytes());
        let mut ids: Vec<_> = self.producers.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            let e = &self.producers[&id];
            out.extend_from_slice(&id.to_be_bytes());
            out.extend_from_slice(&e.epoch.to_be_bytes());
            out.push(e.batches.len() as u8);
            for b in &e.batches {
                out.extend_from_slice(&b.first_seq.to_be_bytes());
                out.extend_from_slice(&b.last_seq.to_be_bytes());
                out.extend_from_slice(&b.first_offset.to_be_bytes());
                out.extend_from_slice(&b.last_offset.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Parses a snapshot; `None` if it is torn or damaged.
    pub fn from_snapshot(bytes: &[u8]) -> Option<ProducerState> {
        let body_len = bytes.len().checked_sub(4)?;
        let (body, crc) = bytes.split_at(body_len);
        if crc32c::crc32c(body) != u32::from_be_bytes(crc.try_into().ok()?) {
            return None;
        }
        let mut r = Reader(body);
        if r.u32()? != 1 {
            return None;
        }
        let count = r.u32()?;
        let mut state = ProducerState::default();
        for _ in 0..count {
            let id = r.i64()?;
            let epoch = r.i16()?;
            let n = r.u8()? as usize;
            if n > MAX_BATCHES_PER_PRODUCER {
                return None;
            }
            let mut batches = VecDeque::with_capacity(MAX_BATCHES_PER_PRODUCER);
            for _ in 0..n {
                batches.push_back(BatchMetadata {
                    first_seq: r.i32()?,
                    last_seq: r.i32()?,
                    first_offset: r.i64()?,
                    last_offset: r.i64()?,
                });
            }
            state.producers.insert(id, ProducerEntry { epoch, batches });
        }
        r.0.is_empty().then_some(state)
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        if self.0.len() < N {
            return None;
        }
        let (head, rest) = self.0.split_at(N);
        self.0 = rest;
        head.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|b| b[0])
    }
    fn i16(&mut self) -> Option<i16> {
        self.take().map(i16::from_be_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_be_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_be_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_be_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::make_batch;
    use sluice_core::batch::{assign_offsets, header};

    /// Builds the header of a batch of `count` records from `(pid, epoch, seq)` placed at
    /// `base_offset`.
    fn batch(pid: i64, epoch: i16, seq: i32, count: i32, base_offset: i64) -> Vec<u8> {
        let mut b = make_batch(count, 10, Some((pid, epoch, seq)));
        assign_offsets(&mut b, base_offset, 0, None);
        b
    }

    fn append(state: &mut ProducerState, b: &[u8]) -> Result<SequenceCheck, LogError> {
        let h = header(b).unwrap();
        let r = state.check(h)?;
        if r == SequenceCheck::Append {
            state.update(h);
        }
        Ok(r)
    }

    #[test]
    fn sequence_rules() {
        let mut s = ProducerState::default();
        // Unknown producer must start at 0.
        assert!(matches!(
            append(&mut s, &batch(7, 0, 3, 1, 0)),
            Err(LogError::OutOfOrderSequence { .. })
        ));
        assert_eq!(
            append(&mut s, &batch(7, 0, 0, 3, 0)).unwrap(),
            SequenceCheck::Append
        );
        assert_eq!(
            append(&mut s, &batch(7, 0, 3, 2, 3)).unwrap(),
            SequenceCheck::Append
        );
        // Retry of the first batch: original offsets.
        assert_eq!(
            append(&mut s, &batch(7, 0, 0, 3, 99)).unwrap(),
            SequenceCheck::Duplicate(BatchMetadata {
                first_seq: 0,
                last_seq: 2,
                first_offset: 0,
                last_offset: 2
            })
        );
        // Gap.
        let err = append(&mut s, &batch(7, 0, 6, 1, 5)).unwrap_err();
        assert!(matches!(
            err,
            LogError::OutOfOrderSequence {
                expected_after: 4,
                found: 6,
                ..
            }
        ));
        // Old epoch is fenced once a newer one is seen.
        assert_eq!(
            append(&mut s, &batch(7, 1, 0, 1, 5)).unwrap(),
            SequenceCheck::Append
        );
        assert!(matches!(
            append(&mut s, &batch(7, 0, 5, 1, 6)),
            Err(LogError::InvalidProducerEpoch {
                current: 1,
                found: 0,
                ..
            })
        ));
        // A new epoch must start at 0.
        assert!(matches!(
            append(&mut s, &batch(7, 2, 1, 1, 6)),
            Err(LogError::OutOfOrderSequence { .. })
        ));
        // Non-idempotent batches are not tracked.
        let plain = make_batch(2, 10, None);
        assert_eq!(append(&mut s, &plain).unwrap(), SequenceCheck::Append);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn only_last_five_batches_are_remembered_and_sequence_wraps() {
        let mut s = ProducerState::default();
        for i in 0..7 {
            append(&mut s, &batch(1, 0, i, 1, i64::from(i))).unwrap();
        }
        // Batches 2..=6 are remembered, 0 and 1 forgotten.
        assert!(matches!(
            append(&mut s, &batch(1, 0, 2, 1, 50)).unwrap(),
            SequenceCheck::Duplicate(BatchMetadata {
                first_offset: 2,
                ..
            })
        ));
        assert!(append(&mut s, &batch(1, 0, 1, 1, 50)).is_err());
        // Wrap at i32::MAX.
        let mut s = ProducerState::default();
        let mut b = batch(2, 0, 0, 1, 0);
        append(&mut s, &b).unwrap();
        b = batch(2, 0, i32::MAX - 1, 1, 1);
        // Replay (no check) puts the producer near the wrap point.
        s.update(header(&b).unwrap());
        append(&mut s, &batch(2, 0, i32::MAX, 2, 2)).unwrap();
        assert_eq!(
            append(&mut s, &batch(2, 0, 1, 1, 4)).unwrap(),
            SequenceCheck::Append
        );
    }

    #[test]
    fn snapshot_round_trips_and_detects_damage() {
        let mut s = ProducerState::default();
        for pid in 0..3 {
            for i in 0..(pid as i32 + 4) {
                append(&mut s, &batch(pid, 2, i, 1, i64::from(i))).unwrap();
            }
        }
        let snap = s.to_snapshot();
        assert_eq!(ProducerState::from_snapshot(&snap), Some(s));
        let mut bad = snap.clone();
        bad[9] ^= 1;
        assert_eq!(ProducerState::from_snapshot(&bad), None);
        assert_eq!(ProducerState::from_snapshot(&snap[..snap.len() - 1]), None);
        assert_eq!(ProducerState::from_snapshot(&[]), None);
    }
}
