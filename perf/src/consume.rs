//! The consumer side: one thread per connection running a Fetch loop over its
//! partitions, one request in flight (as Kafka consumers do per broker). Records are
//! counted from batch headers (`recordCount`); records themselves are never decoded,
//! except that e2e runs read the stamp at the start of each batch's first record.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use kafka_protocol::messages::{
    fetch_request::FetchPartition, fetch_request::FetchTopic, BrokerId, FetchRequest,
};

use crate::client::{decode_response, encode_frame, read_frame, topic_name};
use crate::produce::{read_stamp, BATCH_ATTRIBUTES_OFFSET, BATCH_HEADER_BYTES};
use crate::stats::{Clock, Stats};

/// Attribute bit of control batches (transaction markers), which hold no user records.
const CONTROL_BIT: i16 = 0x20;
/// Attribute bits of the compression codec.
const COMPRESSION_MASK: i16 = 0x07;

#[derive(Debug, Clone)]
pub struct FetchSpec {
    pub topic: String,
    pub fetch_version: i16,
    pub max_wait_ms: i32,
    pub max_bytes: i32,
    pub partition_max_bytes: i32,
    /// Read e2e stamps and record produce-to-consume latency.
    pub stamped: bool,
}

/// One partition's position: where to fetch next and where to stop (exclusive).
#[derive(Debug, Clone, Copy)]
pub struct Position {
    pub next_offset: i64,
    pub end_offset: Option<i64>,
}

/// Stops every consumer once `stats.records` reaches `target` (u64::MAX: no target).
pub struct Target {
    pub records: AtomicU64,
}

pub fn start(
    addr: SocketAddr,
    spec: FetchSpec,
    mut positions: BTreeMap<i32, Position>,
    clock: Clock,
    stats: Arc<Stats>,
    target: Arc<Target>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<Result<()>>> {
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_millis(
        u64::try_from(spec.max_wait_ms).unwrap_or(0) + 30_000,
    )))?;
    Ok(thread::spawn(move || -> Result<()> {
        let mut correlation_id: i32 = 1;
        loop {
            if stop.load(Ordering::Relaxed)
                || stats.records.load(Ordering::Relaxed) >= target.records.load(Ordering::Relaxed)
            {
                return Ok(());
            }
            let open: Vec<(i32, i64)> = positions
                .iter()
                .filter(|(_, p)| p.end_offset.is_none_or(|end| p.next_offset < end))
                .map(|(partition, p)| (*partition, p.next_offset))
                .collect();
            if open.is_empty() {
                return Ok(());
            }
            let request = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(spec.max_wait_ms)
                .with_min_bytes(1)
                .with_max_bytes(spec.max_bytes)
                .with_isolation_level(0)
                .with_session_id(0)
                .with_session_epoch(-1)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(topic_name(&spec.topic))
                    .with_partitions(
                        open.iter()
                            .map(|(partition, offset)| {
                                FetchPartition::default()
                                    .with_partition(*partition)
                                    .with_current_leader_epoch(-1)
                                    .with_fetch_offset(*offset)
                                    .with_last_fetched_epoch(-1)
                                    .with_log_start_offset(-1)
                                    .with_partition_max_bytes(spec.partition_max_bytes)
                            })
                            .collect(),
                    )]);
            let frame = encode_frame(&request, spec.fetch_version, correlation_id)?;
            stream.write_all(&frame)?;
            let response =
                read_frame(&mut stream)?.ok_or_else(|| anyhow!("broker closed the connection"))?;
            let response =
                decode_response::<FetchRequest>(response, spec.fetch_version, correlation_id)?;
            correlation_id = correlation_id.wrapping_add(1).max(1);
            if response.error_code != 0 {
                bail!("Fetch error {}", response.error_code);
            }
            let now_ns = clock.now_ns();
            for topic in &response.responses {
                for data in &topic.partitions {
                    if data.error_code != 0 {
                        bail!(
                            "Fetch {}-{}: error {}",
                            spec.topic,
                            data.partition_index,
                            data.error_code
                        );
                    }
                    let Some(position) = positions.get_mut(&data.partition_index) else {
                        continue;
                    };
                    let Some(records) = &data.records else {
                        continue;
                    };
                    let mut counted = Counted::default();
                    count_batches(
                        records,
                        &mut position.next_offset,
                        position.end_offset,
                        &mut counted,
                        |batch, count| {
                            if spec.stamped {
                                if let Some((intended, interval)) = read_stamp(batch) {
                                    stats.record_batch_latency(now_ns, intended, interval, count);
                                }
                            }
                        },
                    );
                    stats.add(counted.records, counted.bytes);
                }
            }
        }
    }))
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counted {
    pub records: u64,
    pub bytes: u64,
}

/// Walks the whole batches in `records` from a Fetch response, counting the records at
/// or after `next_offset` (and before `end_offset`) from the batch headers, and moves
/// `next_offset` past them. A trailing partial batch (cut by the byte limit) is left
/// for the next fetch. `on_batch` sees each counted batch and its record count.
pub fn count_batches(
    records: &[u8],
    next_offset: &mut i64,
    end_offset: Option<i64>,
    counted: &mut Counted,
    mut on_batch: impl FnMut(&[u8], u64),
) {
    let mut pos = 0usize;
    while records.len() - pos >= BATCH_HEADER_BYTES {
        let header = &records[pos..];
        let base_offset = i64::from_be_bytes(header[0..8].try_into().expect("8 bytes"));
        let batch_length = i32::from_be_bytes(header[8..12].try_into().expect("4 bytes"));
        let Ok(batch_length) = usize::try_from(batch_length) else {
            return;
        };
        let total = 12 + batch_length;
        if total < BATCH_HEADER_BYTES || header.len() < total {
            return;
        }
        let attributes = i16::from_be_bytes(
            header[BATCH_ATTRIBUTES_OFFSET..BATCH_ATTRIBUTES_OFFSET + 2]
                .try_into()
                .expect("2 bytes"),
        );
        let last_offset_delta = i32::from_be_bytes(header[23..27].try_into().expect("4 bytes"));
        let record_count = i32::from_be_bytes(header[57..61].try_into().expect("4 bytes"));
        let next = base_offset + i64::from(last_offset_delta) + 1;
        pos += total;
        if next <= *next_offset {
            continue; // a batch before the fetch offset, sent whole
        }
        let mut count = u64::try_from(record_count).unwrap_or(0);
        // An uncompressed batch's records are offset-contiguous; count only those at
        // or after the fetch offset. A compressed one is counted whole.
        if attributes & COMPRESSION_MASK == 0 && base_offset < *next_offset {
            count = count.saturating_sub((*next_offset - base_offset) as u64);
        }
        if attributes & CONTROL_BIT == 0 {
            counted.records += count;
            counted.bytes += total as u64;
            on_batch(&header[..total], count);
        }
        *next_offset = next;
        if end_offset.is_some_and(|end| next >= end) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::produce::encode_batch;
    use kafka_protocol::records::Compression;

    fn with_base(batch: &[u8], base: i64) -> Vec<u8> {
        let mut b = batch.to_vec();
        b[..8].copy_from_slice(&base.to_be_bytes());
        b
    }

    #[test]
    fn counts_whole_batches_and_leaves_a_partial_tail() {
        let batch = encode_batch(5, 20, Compression::None, false).unwrap();
        let mut bytes = with_base(&batch, 0);
        bytes.extend(with_base(&batch, 5));
        bytes.extend(&with_base(&batch, 10)[..batch.len() - 3]);
        let mut next = 0;
        let mut counted = Counted::default();
        let mut seen = 0;
        count_batches(&bytes, &mut next, None, &mut counted, |_, n| seen += n);
        assert_eq!(next, 10);
        assert_eq!(counted.records, 10);
        assert_eq!(seen, 10);
        assert_eq!(counted.bytes, 2 * batch.len() as u64);
    }

    #[test]
    fn skips_records_before_the_fetch_offset() {
        let batch = encode_batch(5, 20, Compression::None, false).unwrap();
        let bytes = with_base(&batch, 0);
        let mut next = 3;
        let mut counted = Counted::default();
        count_batches(&bytes, &mut next, None, &mut counted, |_, _| {});
        assert_eq!((next, counted.records), (5, 2));
        let mut counted = Counted::default();
        count_batches(&bytes, &mut next, None, &mut counted, |_, _| {});
        assert_eq!(counted.records, 0);
    }
}
