//! Record batches: building v2 batches for Produce and cutting Fetch data into records.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType, NO_PARTITION_LEADER_EPOCH, NO_PRODUCER_EPOCH, NO_PRODUCER_ID,
};

use crate::error::{ClientError, Result};

/// Bytes of a v2 batch before its `batch length` field ends (base offset + length).
const BATCH_LENGTH_END: usize = 12;

/// A record to produce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerRecord {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    pub timestamp_ms: i64,
}

/// A record read from a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: i64,
    /// True when the broker stamped the time (LogAppendTime).
    pub log_append_time: bool,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
}

/// Encodes `records` as one uncompressed v2 batch (base offset 0: the broker assigns
/// offsets), or several if the encoder splits them.
pub fn encode_batch(records: &[ProducerRecord]) -> Result<Bytes> {
    if records.is_empty() {
        return Err(ClientError::Invalid(
            "a batch needs at least one record".into(),
        ));
    }
    let encoded: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: NO_PARTITION_LEADER_EPOCH,
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // No idempotence: base sequence -1 (NO_SEQUENCE). The encoder keeps records
            // in one batch while offset - sequence is constant, hence offset - 1.
            sequence: (i as i32).wrapping_sub(1),
            timestamp: r.timestamp_ms,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (StrBytes::from_string(k.clone()), v.clone()))
                .collect::<IndexMap<_, _>>(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &encoded,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| ClientError::Invalid(format!("encoding a record batch: {e}")))?;
    Ok(buf.freeze())
}

/// Decodes the records of a Fetch answer for `partition`, skipping control records and
/// records before `from_offset` (a batch may start before the offset asked for). A
/// partial batch at the end (cut by the fetch size limit) is ignored.
pub fn decode_records(
    partition: i32,
    mut data: Bytes,
    from_offset: i64,
) -> Result<Vec<ConsumerRecord>> {
    let mut out = Vec::new();
    while data.len() >= BATCH_LENGTH_END {
        let batch_length = i32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        let Ok(batch_length) = usize::try_from(batch_length) else {
            return Err(ClientError::Invalid(format!(
                "partition {partition}: negative batch length {batch_length}"
            )));
        };
        let total = BATCH_LENGTH_END + batch_length;
        if data.len() < total {
            break;
        }
        let mut batch = data.split_to(total);
        let set = RecordBatchDecoder::decode(&mut batch)
            .map_err(|e| ClientError::Invalid(format!("partition {partition}: {e}")))?;
        for r in set.records {
            if r.control || r.offset < from_offset {
                continue;
            }
            out.push(ConsumerRecord {
                partition,
                offset: r.offset,
                timestamp_ms: r.timestamp,
                log_append_time: r.timestamp_type == TimestampType::LogAppend,
                key: r.key,
                value: r.value,
                headers: r
                    .headers
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            });
        }
    }
    debug_assert!(
        data.remaining() < BATCH_LENGTH_END || out.iter().all(|r| r.offset >= from_offset)
    );
    Ok(out)
}

/// Kafka's murmur2 (the Java client's `Utils.murmur2`), used to pick a key's partition.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len() as u32;
    let mut h: u32 = SEED ^ length;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for a keyed record.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    assert!(partitions > 0, "a topic has at least one partition");
    (murmur2(key) & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::NO_SEQUENCE;

    #[test]
    fn murmur2_matches_the_java_client() {
        // Kafka's UtilsTest.testMurmur2.
        let cases: &[(&[u8], i32)] = &[
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (data, expected) in cases {
            assert_eq!(
                murmur2(data),
                *expected,
                "{:?}",
                String::from_utf8_lossy(data)
            );
        }
        for key in [&b"k"[..], b"key-1", b"\xff\xfe"] {
            let p = partition_for_key(key, 3);
            assert!((0..3).contains(&p));
        }
    }

    fn record(key: Option<&str>, value: &str, ts: i64) -> ProducerRecord {
        ProducerRecord {
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            headers: vec![
                ("h".into(), Some(Bytes::from_static(b"v"))),
                ("n".into(), None),
            ],
            timestamp_ms: ts,
        }
    }

    #[test]
    fn batch_round_trip() {
        let records = vec![
            record(Some("k1"), "hello", 1_700_000_000_000),
            record(None, "world", 1_700_000_000_005),
            ProducerRecord::default(),
        ];
        let batch = encode_batch(&records).expect("encodes");
        assert_eq!(batch[16], 2, "magic byte of a v2 batch");
        let base_sequence = i32::from_be_bytes([batch[53], batch[54], batch[55], batch[56]]);
        assert_eq!(base_sequence, NO_SEQUENCE, "one batch, not idempotent");
        let record_count = i32::from_be_bytes([batch[57], batch[58], batch[59], batch[60]]);
        assert_eq!(record_count, 3, "one batch holds every record");
        let decoded = decode_records(7, batch.clone(), 0).expect("decodes");
        assert_eq!(decoded.len(), 3);
        for (i, (d, r)) in decoded.iter().zip(&records).enumerate() {
            assert_eq!(d.partition, 7);
            assert_eq!(d.offset, i as i64);
            assert_eq!(d.key, r.key);
            assert_eq!(d.value, r.value);
            assert_eq!(d.headers, r.headers);
            assert_eq!(d.timestamp_ms, r.timestamp_ms);
            assert!(!d.log_append_time);
        }
        // From offset 1: the first record of the batch is skipped.
        let tail = decode_records(7, batch.clone(), 1).expect("decodes");
        assert_eq!(tail.iter().map(|r| r.offset).collect::<Vec<_>>(), [1, 2]);
        // A batch cut short by the fetch size limit yields nothing, not an error.
        let cut = batch.slice(..batch.len() - 1);
        assert!(decode_records(7, cut, 0).expect("partial").is_empty());
        // Two whole batches followed by a partial one.
        let mut two = BytesMut::new();
        two.extend_from_slice(&batch);
        two.extend_from_slice(&batch);
        two.extend_from_slice(&batch[..20]);
        assert_eq!(decode_records(0, two.freeze(), 0).expect("two").len(), 6);
        assert!(encode_batch(&[]).is_err());
    }
}
