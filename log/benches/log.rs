//! The segment log's hot paths on one executor (as on a shard): appending 16 KiB
//! batches (validated, offsets assigned, written with direct I/O into preallocated
//! space), reading 1 MiB back (from the shard's read cache, which holds the whole
//! 16 MiB log, and with the cache off, from the file), and the sparse offset index
//! lookup.
//!
//! Each measurement opens a fresh log in a temporary directory on the disk under
//! `SLUICE_BENCH_DIR` (default: the system temp dir) inside `sluice_rt::exec::block_on`;
//! only the timed loop counts (`iter_custom`).

use std::hint::black_box;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use sluice_core::config::LogConfig;
use sluice_log::index::OffsetIndex;
use sluice_log::testing::make_batch;
use sluice_log::PartitionLog;
use sluice_rt::exec::{block_on, spawn};

const BATCH_RECORDS: i32 = 100;
const BATCH_PAYLOAD_BYTES: usize = 16 * 1024 - 61 - 100 * 8;
/// Appends in flight in the pipelined variant (a shard serving many producers).
const PIPELINE_DEPTH: u64 = 32;
const READ_BYTES: usize = 1 << 20;
/// Batches appended before the read benchmark (~16 MiB).
const READ_LOG_BATCHES: i64 = 1024;

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("SLUICE_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(PathBuf::from(dir)),
        None => tempfile::tempdir(),
    }
    .expect("temporary directory")
}

async fn open(dir: PathBuf) -> Rc<PartitionLog> {
    open_with(dir, LogConfig::default()).await
}

async fn open_with(dir: PathBuf, config: LogConfig) -> Rc<PartitionLog> {
    PartitionLog::open(dir.join("bench-0"), config)
        .await
        .expect("open log")
}

fn append(c: &mut Criterion) {
    let batch = make_batch(BATCH_RECORDS, BATCH_PAYLOAD_BYTES, None);
    let mut group = c.benchmark_group("log");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.bench_function("append_16KiB_one_at_a_time", |b| {
        b.iter_custom(|iters| {
            let batch = batch.clone();
            let dir = bench_dir();
            let path = dir.path().to_path_buf();
            block_on(async move {
                let log = open(path).await;
                let start = Instant::now();
                for _ in 0..iters {
                    log.append(&batch, 0, 0).await.expect("append");
                }
                let elapsed = start.elapsed();
                log.close().await.expect("close");
                elapsed
            })
        })
    });
    group.bench_function("append_16KiB_32_in_flight", |b| {
        b.iter_custom(|iters| {
            let batch = Rc::new(batch.clone());
            let dir = bench_dir();
            let path = dir.path().to_path_buf();
            block_on(async move {
                let log = open(path).await;
                let start = Instant::now();
                let mut left = iters;
                while left > 0 {
                    let n = left.min(PIPELINE_DEPTH);
                    let tasks: Vec<_> = (0..n)
                        .map(|_| {
                            let (log, batch) = (log.clone(), batch.clone());
                            spawn(async move { log.append(&batch, 0, 0).await.expect("append") })
                        })
                        .collect();
                    for t in tasks {
                        t.await;
                    }
                    left -= n;
                }
                let elapsed = start.elapsed();
                log.close().await.expect("close");
                elapsed
            })
        })
    });
    group.finish();
}

fn read(c: &mut Criterion) {
    let batch = make_batch(BATCH_RECORDS, BATCH_PAYLOAD_BYTES, None);
    let mut group = c.benchmark_group("log");
    group.throughput(Throughput::Bytes(READ_BYTES as u64));
    for (name, cache_max_bytes) in [
        ("read_1MiB", LogConfig::default().cache_max_bytes),
        ("read_1MiB_uncached", 0),
    ] {
        let config = LogConfig {
            cache_max_bytes,
            ..LogConfig::default()
        };
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let (batch, config) = (batch.clone(), config.clone());
                let dir = bench_dir();
                let path = dir.path().to_path_buf();
                block_on(async move {
                    let log = open_with(path, config).await;
                    for _ in 0..READ_LOG_BATCHES {
                        log.append(&batch, 0, 0).await.expect("append");
                    }
                    let end = log.high_watermark();
                    let start = Instant::now();
                    let mut offset = 0i64;
                    for _ in 0..iters {
                        let bytes = log.read(offset, READ_BYTES, end, true).await.expect("read");
                        black_box(bytes.len());
                        // Walk the whole log, not only its newest tail.
                        offset = (offset + 7 * i64::from(BATCH_RECORDS))
                            % (end - 64 * i64::from(BATCH_RECORDS));
                    }
                    let elapsed = start.elapsed();
                    log.close().await.expect("close");
                    elapsed
                })
            })
        });
    }
    group.finish();
}

fn index(c: &mut Criterion) {
    // A 1 GiB segment indexed every 4 KiB: 262,144 entries.
    let mut index = OffsetIndex::default();
    for i in 0..262_144u32 {
        index.push(i * 40, i * 4096 + 1);
    }
    let mut group = c.benchmark_group("index");
    group.bench_function("offset_lookup_262k_entries", |b| {
        let mut x = 12345u32;
        b.iter(|| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            index.lookup(black_box(x % (262_144 * 40)))
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = append, read, index
}
criterion_main!(benches);
