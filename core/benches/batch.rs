//! The produce path's per-batch work on the connection's shard: full validation of a
//! 16 KiB batch (framing, magic, CRC-32C, count/delta) and the in-place offset rewrite.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;

use sluice_core::batch::{
    assign_offsets, compute_crc, header_mut, validate, HEADER_SIZE, LOG_OVERHEAD, MAGIC_V2,
    NO_PRODUCER_ID, NO_SEQUENCE,
};

const BATCH_BYTES: usize = 16 * 1024;
const RECORDS: i32 = 160;

/// A valid uncompressed batch of `RECORDS` records whose record bytes are opaque filler
/// (validation never looks inside records).
fn batch() -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..BATCH_BYTES).map(|i| (i % 251) as u8).collect();
    let len = bytes.len();
    let h = header_mut(&mut bytes).expect("16 KiB holds a header");
    h.base_offset.set(0);
    h.batch_length.set((len - LOG_OVERHEAD) as i32);
    h.partition_leader_epoch.set(-1);
    h.magic = MAGIC_V2;
    h.attributes.set(0);
    h.last_offset_delta.set(RECORDS - 1);
    h.base_timestamp.set(1_700_000_000_000);
    h.max_timestamp.set(1_700_000_000_000);
    h.producer_id.set(NO_PRODUCER_ID);
    h.producer_epoch.set(-1);
    h.base_sequence.set(NO_SEQUENCE);
    h.record_count.set(RECORDS);
    let crc = compute_crc(&bytes);
    header_mut(&mut bytes).expect("header").crc.set(crc);
    assert!(bytes.len() > HEADER_SIZE);
    bytes
}

fn bench(c: &mut Criterion) {
    let batch = batch();
    assert_eq!(validate(&batch, 1 << 20), Ok(batch.len()));
    let mut group = c.benchmark_group("batch");
    group.throughput(Throughput::Bytes(batch.len() as u64));
    group.bench_function("validate_16KiB", |b| {
        b.iter(|| validate(black_box(&batch), 1 << 20))
    });
    group.bench_function("validate_and_assign_offsets_16KiB", |b| {
        b.iter_batched_ref(
            || batch.clone(),
            |bytes| {
                let size = validate(bytes, 1 << 20).expect("valid");
                assign_offsets(&mut bytes[..size], black_box(1_000_000), 3, None);
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("assign_offsets_log_append_time_16KiB", |b| {
        let mut bytes = batch.clone();
        b.iter(|| assign_offsets(black_box(&mut bytes), 42, 3, Some(1_700_000_000_123)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
