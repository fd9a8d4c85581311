//! Property test of the shard read cache: every read of a log served through a cache
//! (of a budget from "a few batches" to "everything") returns exactly the bytes the
//! same read returns from a cold, reopened log without a cache, also across
//! truncations (a follower's cut) that drop cached bytes and write new ones in
//! their place.

use std::path::PathBuf;

use proptest::prelude::*;
use sluice_core::config::LogConfig;
use sluice_log::testing::{make_batch, BASE_TIMESTAMP_MS};
use sluice_log::{PartitionLog, ReadCache};

const NOW: i64 = BASE_TIMESTAMP_MS + 1_000;

#[derive(Debug, Clone)]
enum Op {
    /// One request of `(records, payload bytes)` batches.
    Append(Vec<(i32, usize)>),
    /// Read from `end * fraction`, at most `max_bytes`.
    Read {
        fraction: f64,
        max_bytes: usize,
        min_one: bool,
    },
    Roll,
    /// Truncate to `end * fraction` (the batch holding it goes whole).
    Truncate(f64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec((1i32..6, 0usize..6000), 1..4).prop_map(Op::Append),
        4 => (0.0f64..1.0, 1usize..40_000, any::<bool>())
            .prop_map(|(fraction, max_bytes, min_one)| Op::Read { fraction, max_bytes, min_one }),
        1 => Just(Op::Roll),
        1 => (0.0f64..1.0).prop_map(Op::Truncate),
    ]
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 48 * 1024,
        index_interval_bytes: 1024,
        preallocate_bytes: 64 * 1024,
        retention_ms: None,
        ..LogConfig::default()
    }
}

/// A read and its upper bound (the high watermark when it was made).
type Read = (i64, usize, i64, bool);

async fn run(dir: PathBuf, ops: Vec<Op>, budget_bytes: usize) {
    let cache = ReadCache::new(budget_bytes);
    let log = PartitionLog::open_with_cache(dir.clone(), config(), cache.clone())
        .await
        .unwrap();
    let mut reads: Vec<(Read, bytes::Bytes)> = Vec::new();
    for op in ops {
        match op {
            Op::Append(specs) => {
                let request: Vec<u8> = specs
                    .iter()
                    .flat_map(|&(records, payload)| make_batch(records, payload, None))
                    .collect();
                log.append(&request, 0, NOW).await.unwrap();
            }
            Op::Read {
                fraction,
                max_bytes,
                min_one,
            } => {
                let hw = log.high_watermark();
                let offset = (hw as f64 * fraction) as i64;
                let got = log.read(offset, max_bytes, hw, min_one).await.unwrap();
                reads.push(((offset, max_bytes, hw, min_one), got));
            }
            Op::Roll => log.roll().await.unwrap(),
            Op::Truncate(fraction) => {
                let end = log.log_end_offset();
                log.truncate_to((end as f64 * fraction) as i64)
                    .await
                    .unwrap();
                // Reads bounded below the new end still hold for the cold log; the
                // bytes of the others are gone.
                let end = log.log_end_offset();
                reads.retain(|((_, _, upper, _), _)| *upper <= end);
            }
        }
        assert!(cache.stats().used_bytes <= budget_bytes);
    }
    // Every offset once more, in fetch-sized steps, now that the cache is warm.
    let hw = log.high_watermark();
    let mut next = 0;
    while next < hw {
        let got = log.read(next, 10_000, hw, true).await.unwrap();
        reads.push(((next, 10_000, hw, true), got.clone()));
        next = next_offset_after(&got);
    }
    log.close().await.unwrap();
    drop(log);
    assert_eq!(cache.stats().used_bytes, 0);

    let cold = PartitionLog::open_with_cache(dir, config(), ReadCache::new(0))
        .await
        .unwrap();
    for ((offset, max_bytes, upper, min_one), got) in reads {
        let want = cold.read(offset, max_bytes, upper, min_one).await.unwrap();
        assert_eq!(
            got, want,
            "read({offset}, {max_bytes}, {upper}, {min_one}) with a {budget_bytes}-byte cache"
        );
    }
    cold.close().await.unwrap();
}

/// The offset after the last batch of a non-empty record set.
fn next_offset_after(records: &[u8]) -> i64 {
    let (pos, _) = sluice_core::batch::frames(records)
        .last()
        .expect("non-empty")
        .unwrap();
    sluice_core::batch::header(&records[pos..])
        .unwrap()
        .next_offset()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn cached_reads_equal_cold_reads(
        ops in prop::collection::vec(op(), 1..60),
        budget in prop_oneof![Just(0usize), Just(8 * 1024), Just(50 * 1024), Just(300 * 1024), Just(64 << 20)],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-0");
        sluice_rt::exec::block_on(run(path, ops, budget));
    }
}
