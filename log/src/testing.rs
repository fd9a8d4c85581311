//! Builders of valid v2 record batches, for tests across the workspace.
//!
//! Unlike an opaque filler, the records here are encoded as Kafka encodes them
//! (varint lengths, timestamp and offset deltas), so code that walks records, such as
//! `offset_for_timestamp`, can be tested on them.

use sluice_core::batch::{
    compute_crc, header_mut, HEADER_SIZE, LOG_OVERHEAD, MAGIC_V2, NO_PRODUCER_ID, NO_SEQUENCE,
};

/// Base timestamp of batches built by [`make_batch`].
pub const BASE_TIMESTAMP_MS: i64 = 1_700_000_000_000;

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        if z < 0x80 {
            out.push(z as u8);
            return;
        }
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
}

/// A batch of `record_count` records carrying about `payload_len` value bytes in all,
/// record `i` stamped `BASE_TIMESTAMP_MS + i`; `producer` is `(id, epoch, base seq)`.
pub fn make_batch(
    record_count: i32,
    payload_len: usize,
    producer: Option<(i64, i16, i32)>,
) -> Vec<u8> {
    let stamps: Vec<i64> = (0..i64::from(record_count))
        .map(|i| BASE_TIMESTAMP_MS + i)
        .collect();
    make_batch_with_timestamps(&stamps, payload_len, producer)
}

/// A batch with one record per timestamp in `timestamps_ms` (at least one).
pub fn make_batch_with_timestamps(
    timestamps_ms: &[i64],
    payload_len: usize,
    producer: Option<(i64, i16, i32)>,
) -> Vec<u8> {
    assert!(!timestamps_ms.is_empty());
    let count = timestamps_ms.len();
    let base_ts = timestamps_ms[0];
    let max_ts = timestamps_ms.iter().copied().max().unwrap_or(base_ts);
    let mut bytes = vec![0u8; HEADER_SIZE];
    let mut record = Vec::new();
    for (i, &ts) in timestamps_ms.iter().enumerate() {
        let value_len = payload_len / count
            + if i == count - 1 {
                payload_len % count
            } else {
                0
            };
        record.clear();
        record.push(0); // attributes
        put_varint(&mut record, ts - base_ts);
        put_varint(&mut record, i as i64);
        put_varint(&mut record, -1); // null key
        put_varint(&mut record, value_len as i64);
        record.extend((0..value_len).map(|j| ((i + j) % 251) as u8));
        put_varint(&mut record, 0); // no headers
        put_varint(&mut bytes, record.len() as i64);
        bytes.extend_from_slice(&record);
    }
    let len = bytes.len();
    let h = header_mut(&mut bytes).expect("header");
    h.base_offset.set(0);
    h.batch_length.set((len - LOG_OVERHEAD) as i32);
    h.partition_leader_epoch.set(-1);
    h.magic = MAGIC_V2;
    h.attributes.set(0);
    h.last_offset_delta.set(count as i32 - 1);
    h.base_timestamp.set(base_ts);
    h.max_timestamp.set(max_ts);
    let (pid, epoch, seq) = producer.unwrap_or((NO_PRODUCER_ID, -1, NO_SEQUENCE));
    h.producer_id.set(pid);
    h.producer_epoch.set(epoch);
    h.base_sequence.set(seq);
    h.record_count.set(count as i32);
    let crc = compute_crc(&bytes);
    header_mut(&mut bytes).expect("header").crc.set(crc);
    bytes
}
