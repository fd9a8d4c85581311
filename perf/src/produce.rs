//! The producer side: record batches built once, whole Produce request frames built
//! once per partition, and connections that pipeline them.
//!
//! Each producer connection has two threads: a *writer* that waits for the schedule
//! (at `--rate`) and for a free in-flight slot, patches the correlation id into a
//! prebuilt frame and writes it; and a *reader* that takes responses in order, checks
//! them, counts records and records latencies. Latency is measured from each record's
//! intended send time on the schedule, so a stalled broker (or a full in-flight window)
//! shows as latency rather than as a slower schedule (no coordinated omission). Without
//! `--rate` (a closed loop) latency is each request's round trip, from when it gets an
//! in-flight slot to its response.

use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use anyhow::{anyhow, bail, ensure, Context, Result};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    produce_request::PartitionProduceData, produce_request::TopicProduceData, ProduceRequest,
};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use std::io::{IoSlice, Write};

use crate::client::{decode_response, encode_frame, read_frame, topic_name};
use crate::stats::{Clock, Stats};

/// Marks the first record of every batch in e2e runs; followed by the intended send
/// time of that record and the schedule interval (both u64 big-endian nanoseconds on
/// the run's clock). Bytes no generated value contains (values are letters A-Z).
pub const STAMP_MAGIC: &[u8; 8] = b"\xffSLPERF\xff";
/// Magic, intended time, interval.
pub const STAMP_BYTES: usize = 24;
/// Offset of the frame's correlation id: size (4), api key (2), api version (2).
const CORRELATION_ID_OFFSET: usize = 8;
/// Offsets inside a v2 record batch (Kafka's `DefaultRecordBatch`).
pub const BATCH_CRC_OFFSET: usize = 17;
pub const BATCH_ATTRIBUTES_OFFSET: usize = 21;
pub const BATCH_HEADER_BYTES: usize = 61;

/// What a produce workload sends.
#[derive(Debug, Clone)]
pub struct ProduceSpec {
    pub topic: String,
    pub record_size: usize,
    pub records_per_batch: usize,
    /// Batches (one per partition) per request; 0: every partition of the connection.
    pub partitions_per_request: usize,
    pub compression: Compression,
    pub acks: i16,
    pub produce_version: i16,
    pub max_in_flight: usize,
    /// Embed a stamp in each batch's first record (e2e runs; needs no compression).
    pub stamp: bool,
    pub timeout_ms: i32,
}

/// When a connection stops and how fast it goes.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// Records this connection sends at most.
    pub records: u64,
    /// Run-clock time the first record is due (at a rate): once every connection is
    /// open, so setting up is not counted as the broker's latency.
    pub start_ns: u64,
    /// Run-clock time after which no new batch is sent.
    pub end_ns: u64,
    /// Spacing of intended record send times; `None` sends as fast as acks allow.
    pub interval_ns: Option<u64>,
}

/// Records per request at a rate: a request goes out when its batches are full or when
/// `linger_ns` has passed since its first record was due, whichever comes first.
pub fn records_per_request_at_rate(full: usize, interval_ns: u64, linger_ns: u64) -> usize {
    assert!(full >= 1 && interval_ns >= 1);
    let by_linger = 1 + linger_ns / interval_ns;
    full.min(usize::try_from(by_linger).unwrap_or(usize::MAX))
}

/// Value bytes of record `i`: uppercase letters from a fixed xorshift sequence, as
/// Kafka's producer-perf-test generates them (compressible about as much as text).
fn record_value(size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'A' + (x % 26) as u8
        })
        .collect()
}

/// Encodes one v2 batch of `count` records of `size` bytes each.
pub fn encode_batch(
    count: usize,
    size: usize,
    compression: Compression,
    stamp: bool,
) -> Result<Bytes> {
    ensure!(count >= 1, "a batch holds at least one record");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let records: Vec<Record> = (0..count)
        .map(|i| {
            let mut value = record_value(size, i as u64 + 1);
            if stamp && i == 0 {
                value[..STAMP_MAGIC.len()].copy_from_slice(STAMP_MAGIC);
            }
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // No idempotence: base sequence -1. kafka-protocol keeps records in one
                // batch while offset - sequence is constant, hence i - 1.
                sequence: (i as i32).wrapping_sub(1),
                timestamp: now_ms,
                key: None,
                value: Some(Bytes::from(value)),
                headers: Default::default(),
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )?;
    Ok(buf.freeze())
}

/// One record batch inside a prebuilt request frame.
#[derive(Clone, Copy)]
pub struct BatchSlot {
    /// Where the batch starts in the frame, and its length.
    pub offset: usize,
    pub len: usize,
    pub records: u64,
    /// Where the stamp's intended time goes (e2e runs).
    pub stamp_offset: Option<usize>,
}

/// A whole Produce request frame, built once and resent: one batch for each of a
/// group of partitions led by the same broker, as a Kafka producer under load drains
/// one ready batch per partition into each request.
#[derive(Clone)]
pub struct Frame {
    pub bytes: Bytes,
    /// Records in all batches.
    pub records: u64,
    /// Record batch bytes in all batches.
    pub batch_bytes: u64,
    pub batches: Vec<BatchSlot>,
}

pub fn build_frame(
    spec: &ProduceSpec,
    partitions: &[i32],
    batch: &Bytes,
    records_per_batch: u64,
) -> Result<Frame> {
    ensure!(
        !partitions.is_empty(),
        "a request carries at least one batch"
    );
    let request = ProduceRequest::default()
        .with_acks(spec.acks)
        .with_timeout_ms(spec.timeout_ms)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(&spec.topic))
            .with_partition_data(
                partitions
                    .iter()
                    .map(|p| {
                        PartitionProduceData::default()
                            .with_index(*p)
                            .with_records(Some(batch.clone()))
                    })
                    .collect(),
            )]);
    let bytes = encode_frame(&request, spec.produce_version, 0)?.freeze();
    let mut batches = Vec::with_capacity(partitions.len());
    let mut from = 0;
    for _ in partitions {
        let offset = from
            + bytes[from..]
                .windows(batch.len())
                .position(|w| w == &batch[..])
                .ok_or_else(|| anyhow!("record batch not found in its own request frame"))?;
        let stamp_offset = if spec.stamp {
            let body = &bytes[offset + BATCH_HEADER_BYTES..offset + batch.len()];
            let at = body
                .windows(STAMP_MAGIC.len())
                .position(|w| w == STAMP_MAGIC)
                .ok_or_else(|| anyhow!("stamp not found in the batch (is it compressed?)"))?;
            Some(offset + BATCH_HEADER_BYTES + at + STAMP_MAGIC.len())
        } else {
            None
        };
        batches.push(BatchSlot {
            offset,
            len: batch.len(),
            records: records_per_batch,
            stamp_offset,
        });
        from = offset + batch.len();
    }
    Ok(Frame {
        records: records_per_batch * partitions.len() as u64,
        batch_bytes: (batch.len() * partitions.len()) as u64,
        bytes,
        batches,
    })
}

/// Finds the stamp of a fetched uncompressed batch: (intended ns, interval ns).
pub fn read_stamp(batch: &[u8]) -> Option<(u64, u64)> {
    // The first record's value starts within a few varints of the header.
    let window_end = batch.len().min(BATCH_HEADER_BYTES + 40 + STAMP_BYTES);
    let body = batch.get(BATCH_HEADER_BYTES..window_end)?;
    let at = body
        .windows(STAMP_MAGIC.len())
        .position(|w| w == STAMP_MAGIC)?;
    let stamp = body.get(at + STAMP_MAGIC.len()..at + STAMP_BYTES)?;
    let intended = u64::from_be_bytes(stamp[..8].try_into().ok()?);
    let interval = u64::from_be_bytes(stamp[8..16].try_into().ok()?);
    Some((intended, interval))
}

/// A request written and not yet answered, as the reader needs to account for it.
struct InFlight {
    correlation_id: i32,
    first_intended_ns: u64,
    interval_ns: u64,
    records: u64,
    bytes: u64,
}

/// One producer connection: its writer and reader threads.
pub struct Producer {
    writer: JoinHandle<Result<()>>,
    reader: Option<JoinHandle<Result<()>>>,
}

impl Producer {
    /// Connects to `addr`, ready for [`Producer::start`].
    pub fn connect(addr: SocketAddr) -> Result<TcpStream> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// Starts sending `frames` round-robin on a connection from [`Producer::connect`].
    pub fn start(
        stream: TcpStream,
        spec: &ProduceSpec,
        frames: Vec<Frame>,
        schedule: Schedule,
        clock: Clock,
        stats: Arc<Stats>,
        stop: Arc<AtomicBool>,
    ) -> Result<Producer> {
        ensure!(
            !frames.is_empty(),
            "a producer needs at least one partition"
        );
        let acks = spec.acks;
        let spec_stamp = spec.stamp;
        let max_in_flight = spec.max_in_flight.max(1);
        let (slots_tx, slots_rx) = mpsc::sync_channel::<()>(max_in_flight);
        for _ in 0..max_in_flight {
            slots_tx.send(()).expect("receiver alive");
        }
        let (in_flight_tx, in_flight_rx) = mpsc::channel::<InFlight>();

        let reader = if acks != 0 {
            let mut stream = stream.try_clone()?;
            let stats = stats.clone();
            let version = spec.produce_version;
            Some(thread::spawn(move || -> Result<()> {
                while let Ok(sent) = in_flight_rx.recv() {
                    let frame = read_frame(&mut stream)?
                        .ok_or_else(|| anyhow!("broker closed the connection"))?;
                    let response =
                        decode_response::<ProduceRequest>(frame, version, sent.correlation_id)?;
                    let now = clock.now_ns();
                    let failed = response
                        .responses
                        .iter()
                        .any(|t| t.partition_responses.iter().any(|p| p.error_code != 0));
                    if failed {
                        stats.errors.fetch_add(sent.records, Ordering::Relaxed);
                    } else {
                        stats.add(sent.records, sent.bytes);
                        stats.record_batch_latency(
                            now,
                            sent.first_intended_ns,
                            sent.interval_ns,
                            sent.records,
                        );
                    }
                    // The writer may be done; a closed slot queue is fine then.
                    let _ = slots_tx.send(());
                }
                Ok(())
            }))
        } else {
            drop(in_flight_rx);
            None
        };

        let writer = thread::spawn(move || -> Result<()> {
            let mut stream = stream;
            let mut correlation_id: i32 = 1;
            let mut sent_records: u64 = 0;
            let mut batch_index: u64 = 0;
            let mut scratch = BytesMut::new();
            while sent_records < schedule.records && !stop.load(Ordering::Relaxed) {
                let frame = &frames[(batch_index % frames.len() as u64) as usize];
                let (first_ns, interval_ns) = match schedule.interval_ns {
                    Some(interval) => {
                        let first = schedule.start_ns + sent_records * interval;
                        // Due when its last record is due (the batch is then full, or
                        // linger has expired).
                        let due = first + (frame.records - 1) * interval;
                        if due >= schedule.end_ns {
                            break;
                        }
                        clock.sleep_until(due);
                        (first, interval)
                    }
                    None => {
                        // Closed loop: latency is the request's own round trip, from
                        // when it gets an in-flight slot.
                        if acks != 0 && slots_rx.recv().is_err() {
                            bail!("the response reader stopped");
                        }
                        let now = clock.now_ns();
                        if now >= schedule.end_ns {
                            break;
                        }
                        (now, 0)
                    }
                };
                // At a rate the slot wait counts as latency: the records were due.
                if acks != 0 && schedule.interval_ns.is_some() && slots_rx.recv().is_err() {
                    bail!("the response reader stopped");
                }
                if acks != 0 {
                    in_flight_tx
                        .send(InFlight {
                            correlation_id,
                            first_intended_ns: first_ns,
                            interval_ns,
                            records: frame.records,
                            bytes: frame.batch_bytes,
                        })
                        .map_err(|_| anyhow!("the response reader stopped"))?;
                }
                if spec_stamp {
                    patch(&mut scratch, frame, correlation_id, first_ns, interval_ns);
                    stream.write_all(&scratch)?;
                } else {
                    // The frame is shared as it is; only its first 12 bytes differ.
                    let mut head = [0u8; CORRELATION_ID_OFFSET + 4];
                    head.copy_from_slice(&frame.bytes[..CORRELATION_ID_OFFSET + 4]);
                    head[CORRELATION_ID_OFFSET..].copy_from_slice(&correlation_id.to_be_bytes());
                    write_two(&mut stream, &head, &frame.bytes[head.len()..])?;
                }
                if acks == 0 {
                    stats.add(frame.records, frame.batch_bytes);
                    stats.record_batch_latency(
                        clock.now_ns(),
                        first_ns,
                        interval_ns,
                        frame.records,
                    );
                }
                correlation_id = correlation_id.wrapping_add(1).max(1);
                sent_records += frame.records;
                batch_index += 1;
            }
            Ok(())
        });
        Ok(Producer { writer, reader })
    }

    /// Waits for the writer to finish and the reader to take every answer.
    pub fn join(self) -> Result<()> {
        let written = self
            .writer
            .join()
            .map_err(|_| anyhow!("producer writer panicked"))?;
        if let Some(reader) = self.reader {
            reader
                .join()
                .map_err(|_| anyhow!("producer reader panicked"))??;
        }
        written
    }
}

/// Writes `head` then `tail` with as few system calls as the socket allows.
fn write_two(stream: &mut TcpStream, head: &[u8], tail: &[u8]) -> std::io::Result<()> {
    let mut head = head;
    let mut tail = tail;
    while !head.is_empty() {
        let n = stream.write_vectored(&[IoSlice::new(head), IoSlice::new(tail)])?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        if n < head.len() {
            head = &head[n..];
        } else {
            tail = &tail[n - head.len()..];
            head = &[];
        }
    }
    stream.write_all(tail)
}

/// Copies `frame` into `scratch` with its correlation id and, for e2e, each batch's
/// stamp (the intended time of its first record) and CRC rewritten. The frame's
/// records are due `interval_ns` apart from `first_ns`, batch after batch.
fn patch(
    scratch: &mut BytesMut,
    frame: &Frame,
    correlation_id: i32,
    first_ns: u64,
    interval_ns: u64,
) {
    scratch.clear();
    scratch.extend_from_slice(&frame.bytes);
    scratch[CORRELATION_ID_OFFSET..CORRELATION_ID_OFFSET + 4]
        .copy_from_slice(&correlation_id.to_be_bytes());
    let mut records_before = 0u64;
    for slot in &frame.batches {
        if let Some(at) = slot.stamp_offset {
            let intended_ns = first_ns + records_before * interval_ns;
            scratch[at..at + 8].copy_from_slice(&intended_ns.to_be_bytes());
            scratch[at + 8..at + 16].copy_from_slice(&interval_ns.to_be_bytes());
            let batch = &mut scratch[slot.offset..slot.offset + slot.len];
            let crc = crc32c::crc32c(&batch[BATCH_ATTRIBUTES_OFFSET..]);
            batch[BATCH_CRC_OFFSET..BATCH_CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        }
        records_before += slot.records;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::RecordBatchDecoder;

    fn spec(stamp: bool) -> ProduceSpec {
        ProduceSpec {
            topic: "t".into(),
            record_size: 100,
            records_per_batch: 10,
            partitions_per_request: 0,
            compression: Compression::None,
            acks: 1,
            produce_version: 9,
            max_in_flight: 5,
            stamp,
            timeout_ms: 30_000,
        }
    }

    #[test]
    fn stamped_frame_stays_a_valid_batch() {
        let batch = encode_batch(10, 100, Compression::None, true).unwrap();
        let frame = build_frame(&spec(true), &[3, 4, 5], &batch, 10).unwrap();
        assert_eq!((frame.records, frame.batches.len()), (30, 3));
        let mut scratch = BytesMut::new();
        patch(&mut scratch, &frame, 42, 123_456_789, 1_000);
        assert_eq!(&scratch[8..12], &42i32.to_be_bytes());
        for (i, slot) in frame.batches.iter().enumerate() {
            let mut sent = Bytes::copy_from_slice(&scratch[slot.offset..slot.offset + slot.len]);
            let intended = 123_456_789 + 10 * 1_000 * i as u64;
            assert_eq!(read_stamp(&sent), Some((intended, 1_000)));
            // kafka-protocol verifies the CRC while decoding.
            let decoded = RecordBatchDecoder::decode(&mut sent).unwrap();
            assert_eq!(decoded.records.len(), 10);
        }
    }

    #[test]
    fn linger_caps_the_batch_at_a_rate() {
        // 1000 records/s (1 ms apart), 5 ms linger: 6 records per batch.
        assert_eq!(records_per_request_at_rate(100, 1_000_000, 5_000_000), 6);
        assert_eq!(records_per_request_at_rate(4, 1_000_000, 5_000_000), 4);
        assert_eq!(records_per_request_at_rate(100, 1_000_000, 0), 1);
    }
}
