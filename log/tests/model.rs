//! Model-based test of the partition log: random operations checked against a plain
//! in-memory list of batches (sled's `prop_tree_matches_btreemap`, Redpanda's opfuzz).

use std::path::PathBuf;
use std::rc::Rc;

use proptest::prelude::*;
use sluice_core::batch::{self, header};
use sluice_core::config::LogConfig;
use sluice_log::testing::{make_batch, BASE_TIMESTAMP_MS};
use sluice_log::{LogError, PartitionLog};

const NOW: i64 = BASE_TIMESTAMP_MS + 1_000;

#[derive(Debug, Clone)]
enum Op {
    /// One request of `(records, payload bytes)` batches.
    Append(Vec<(i32, usize)>),
    /// Read from `start + (end - start) * fraction`, at most `max_bytes`.
    Read {
        fraction: f64,
        max_bytes: usize,
        min_one: bool,
    },
    /// Truncate to `start + (end - start) * fraction` (may be below start: an error).
    Truncate {
        fraction: f64,
        below_start: bool,
    },
    Roll,
    Retention {
        bytes: u64,
    },
    DeleteRecords {
        fraction: f64,
    },
    Restart {
        clean: bool,
    },
    /// Replication drives the high watermark (`true`) or writes do.
    SetReplicated(bool),
    /// Advance the high watermark to `hw + (end - hw) * fraction` (+1 past the end).
    AdvanceHw {
        fraction: f64,
        past_end: bool,
    },
    CheckpointHw,
    /// Empty the log and restart it at `end + delta` (may be below the start).
    TruncateFully {
        delta: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => prop::collection::vec((1i32..6, 0usize..3000), 1..4).prop_map(Op::Append),
        3 => (0.0f64..1.0, 1usize..20_000, any::<bool>())
            .prop_map(|(fraction, max_bytes, min_one)| Op::Read { fraction, max_bytes, min_one }),
        1 => (0.0f64..1.0, prop::bool::weighted(0.1))
            .prop_map(|(fraction, below_start)| Op::Truncate { fraction, below_start }),
        1 => Just(Op::Roll),
        1 => (0u64..40_000).prop_map(|bytes| Op::Retention { bytes }),
        1 => (0.0f64..1.0).prop_map(|fraction| Op::DeleteRecords { fraction }),
        1 => any::<bool>().prop_map(|clean| Op::Restart { clean }),
        1 => any::<bool>().prop_map(Op::SetReplicated),
        2 => (0.0f64..1.0, prop::bool::weighted(0.2))
            .prop_map(|(fraction, past_end)| Op::AdvanceHw { fraction, past_end }),
        1 => Just(Op::CheckpointHw),
        1 => (-30i64..30).prop_map(|delta| Op::TruncateFully { delta }),
    ]
}

/// `cache_max_bytes`: the shard cache's budget, from none to more than any test log.
fn config(cache_max_bytes: u64) -> LogConfig {
    LogConfig {
        cache_max_bytes,
        segment_bytes: 16 * 1024,
        index_interval_bytes: 512,
        preallocate_bytes: 64 * 1024,
        retention_ms: None,
        retention_bytes: None,
        ..LogConfig::default()
    }
}

/// The model: batches as stored, the log start offset, and the high watermark with
/// its mode and checkpoint.
#[derive(Default)]
struct Model {
    batches: Vec<Vec<u8>>,
    log_start: i64,
    end: i64,
    hw: i64,
    replicated: bool,
    /// Contents of the high-watermark checkpoint file, if there is one.
    hw_checkpoint: Option<i64>,
}

impl Model {
    fn expected_read(&self, offset: i64, max_bytes: usize, min_one: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for b in &self.batches {
            if header(b).unwrap().last_offset() < offset {
                continue;
            }
            if out.len() + b.len() > max_bytes && !(min_one && out.is_empty()) {
                break;
            }
            out.extend_from_slice(b);
        }
        out
    }

    fn size_bytes(&self) -> u64 {
        self.batches.iter().map(|b| b.len() as u64).sum()
    }

    fn pick(&self, fraction: f64) -> i64 {
        self.log_start + ((self.end - self.log_start) as f64 * fraction) as i64
    }

    /// After an append or a switch out of replication.
    fn written(&mut self) {
        if !self.replicated {
            self.hw = self.end;
        }
    }

    /// What `checkpoint_high_watermark` (and `close`) leave on disk.
    fn checkpoint(&mut self) {
        self.hw_checkpoint = self.replicated.then_some(self.hw);
    }

    /// What `open` recovers.
    fn reopen(&mut self) {
        self.replicated = self.hw_checkpoint.is_some();
        self.hw = self
            .hw_checkpoint
            .map_or(self.end, |hw| hw.clamp(self.log_start, self.end));
    }
}

/// A compact, comparable summary of a record set: `(base, last, size, crc)` per batch.
fn summary(bytes: &[u8]) -> Vec<(i64, i64, usize, u32)> {
    batch::frames(bytes)
        .map(|f| {
            let (pos, size) = f.unwrap();
            let b = &bytes[pos..pos + size];
            batch::validate(b, usize::MAX).unwrap();
            let h = header(b).unwrap();
            (h.base_offset(), h.last_offset(), size, crc32c::crc32c(b))
        })
        .collect()
}

async fn check_state(log: &PartitionLog, model: &Model) {
    assert_eq!(log.log_end_offset(), model.end, "log end");
    assert_eq!(log.written_offset(), model.end, "written offset");
    assert_eq!(log.high_watermark(), model.hw, "high watermark");
    assert_eq!(log.is_replicated(), model.replicated, "replicated");
    assert!(model.log_start <= model.hw && model.hw <= model.end);
    assert_eq!(log.log_start_offset(), model.log_start, "log start");
    assert_eq!(log.size_bytes(), model.size_bytes(), "size");
    // The whole log, read in modest steps from the log start, is the model from the
    // batch holding the log start on.
    let mut all = Vec::new();
    let mut next = model.log_start;
    loop {
        let bytes = log.read(next, 7_000, model.end, true).await.unwrap();
        if bytes.is_empty() {
            break;
        }
        let s = summary(&bytes);
        next = s.last().unwrap().1 + 1;
        all.extend(s);
    }
    let expected = summary(&model.expected_read(model.log_start, usize::MAX, true));
    assert_eq!(all, expected, "log contents");
}

/// Budgets of the shard's read cache the model runs with: off, a few batches (constant
/// eviction, reads spanning cached and uncached bytes), more than the test logs hold.
fn cache_budget() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), Just(6 * 1024), Just(40 * 1024), Just(64 << 20)]
}

async fn run_ops(dir: PathBuf, ops: Vec<Op>, cache_max_bytes: u64) {
    let config = || config(cache_max_bytes);
    let mut log: Rc<PartitionLog> = PartitionLog::open(dir.clone(), config()).await.unwrap();
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Append(specs) => {
                let mut request = Vec::new();
                let mut stored = Vec::new();
                let mut next = model.end;
                for (records, payload) in specs {
                    let mut b = make_batch(records, payload, None);
                    request.extend_from_slice(&b);
                    batch::assign_offsets(&mut b, next, 0, None);
                    next += i64::from(records);
                    stored.push(b);
                }
                let info = log.append(&request, 0, NOW).await.unwrap();
                assert_eq!((info.base_offset, info.last_offset), (model.end, next - 1));
                model.batches.extend(stored);
                model.end = next;
                model.written();
            }
            Op::Read {
                fraction,
                max_bytes,
                min_one,
            } => {
                let offset = model.pick(fraction);
                let got = log
                    .read(offset, max_bytes, model.end, min_one)
                    .await
                    .unwrap();
                let want = model.expected_read(offset, max_bytes, min_one);
                assert_eq!(
                    summary(&got),
                    summary(&want),
                    "read {offset} max {max_bytes}"
                );
                assert_eq!(&got[..], &want[..]);
            }
            Op::Truncate {
                fraction,
                below_start,
            } => {
                if below_start && model.log_start > 0 {
                    let r = log.truncate_to(model.log_start - 1).await;
                    assert!(matches!(r, Err(LogError::OffsetOutOfRange { .. })), "{r:?}");
                } else {
                    let offset = model.pick(fraction);
                    log.truncate_to(offset).await.unwrap();
                    if offset < model.end {
                        let first_base = model
                            .batches
                            .first()
                            .map(|b| header(b).unwrap().base_offset());
                        model
                            .batches
                            .retain(|b| header(b).unwrap().last_offset() < offset);
                        model.end = match model.batches.last() {
                            Some(b) => header(b).unwrap().next_offset(),
                            None => first_base.unwrap_or(model.end),
                        };
                        model.log_start = model.log_start.min(model.end);
                        model.hw = model.hw.min(model.end);
                    }
                }
            }
            Op::Roll => log.roll().await.unwrap(),
            Op::Retention { bytes } => {
                // Retention settings are the log's config: reopen with them (clean).
                log.close().await.unwrap();
                model.checkpoint();
                model.reopen();
                let cfg = LogConfig {
                    retention_bytes: Some(bytes),
                    ..config()
                };
                log = PartitionLog::open(dir.clone(), cfg).await.unwrap();
                let before = log.segment_count();
                let deleted = log.apply_retention(NOW).await.unwrap();
                assert_eq!(log.segment_count(), before - deleted);
                let start = log.log_start_offset();
                assert!(start >= model.log_start);
                assert!(start <= model.hw, "retention keeps what is not committed");
                model.log_start = start;
                let first_kept = log.segment_base_offsets()[0];
                model
                    .batches
                    .retain(|b| header(b).unwrap().base_offset() >= first_kept);
                log.close().await.unwrap();
                log = PartitionLog::open(dir.clone(), config()).await.unwrap();
            }
            Op::DeleteRecords { fraction } => {
                // Up to the high watermark.
                let offset =
                    model.log_start + ((model.hw - model.log_start) as f64 * fraction) as i64;
                if model.hw < model.end {
                    let r = log.delete_records_before(model.hw + 1).await;
                    assert!(matches!(r, Err(LogError::OffsetOutOfRange { .. })), "{r:?}");
                }
                let start = log.delete_records_before(offset).await.unwrap();
                assert_eq!(start, offset.max(model.log_start));
                model.log_start = start;
                // Whole segments below the start go; the batches of the segment
                // holding it stay.
                let first_kept = log.segment_base_offsets()[0];
                model
                    .batches
                    .retain(|b| header(b).unwrap().base_offset() >= first_kept);
            }
            Op::Restart { clean } => {
                if clean {
                    log.close().await.unwrap();
                    model.checkpoint();
                }
                drop(log);
                log = PartitionLog::open(dir.clone(), config()).await.unwrap();
                model.reopen();
            }
            Op::SetReplicated(replicated) => {
                let newly = replicated && !model.replicated;
                log.set_replicated(replicated);
                model.replicated = replicated;
                model.written();
                if newly {
                    model.checkpoint();
                }
            }
            Op::AdvanceHw { fraction, past_end } => {
                let target = if past_end {
                    model.end + 1
                } else {
                    model.hw + ((model.end - model.hw) as f64 * fraction) as i64
                };
                let hw = log.advance_high_watermark(target);
                model.hw = model.hw.max(target.min(model.end));
                assert_eq!(hw, model.hw);
            }
            Op::CheckpointHw => {
                log.checkpoint_high_watermark().unwrap();
                model.checkpoint();
            }
            Op::TruncateFully { delta } => {
                let offset = (model.end + delta).max(0);
                log.truncate_fully_and_start_at(offset).await.unwrap();
                model.batches.clear();
                (model.log_start, model.end, model.hw) = (offset, offset, offset);
                model.checkpoint();
            }
        }
        check_state(&log, &model).await;
    }
    log.close().await.unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn log_matches_model(ops in prop::collection::vec(op(), 1..40), cache in cache_budget()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m-0");
        sluice_rt::exec::block_on(run_ops(path, ops, cache));
    }
}

/// Shrunk case kept as a regression test. Cause: truncating inside the batch that
/// holds the log start (moved there by DeleteRecords) cut the whole batch, leaving the
/// log end below the log start; reads then failed for every offset and appends went
/// below the start. Fixed by moving the start back to the new end.
#[test]
fn regression_truncate_inside_batch_holding_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let ops = vec![
        Op::Append(vec![(5, 100)]),
        Op::DeleteRecords { fraction: 0.5 },
        Op::Truncate {
            fraction: 0.4,
            below_start: false,
        },
        Op::Append(vec![(2, 10)]),
        Op::Restart { clean: false },
    ];
    sluice_rt::exec::block_on(run_ops(dir.path().join("r-0"), ops, 64 << 20));
}
