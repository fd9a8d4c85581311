//! Fetch responses that carry large record sets: the broker writes them as several
//! parts gathered into one send (the record sets straight from the log's buffers), so
//! these check that what arrives is byte-for-byte the frame Kafka's codec describes,
//! in request order, also when responses are pipelined and fill the socket; and that a
//! parked Fetch is answered with what either shard appends.

mod common;

use anyhow::{ensure, Context, Result};
use bytes::{Bytes, BytesMut};
use common::{decode_records, encode_batch, record, topic_name, Broker};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::Compression;

const PARTITIONS: i32 = 3;
const BATCHES: usize = 4;
const RECORDS_PER_BATCH: usize = 16;
const VALUE_BYTES: usize = 8 * 1024;

fn value(partition: i32, n: usize) -> Vec<u8> {
    (0..VALUE_BYTES)
        .map(|j| (partition as usize * 7 + n * 13 + j) as u8)
        .collect()
}

fn fetch_all_partitions(offset: i64, partition_max_bytes: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_min_bytes(1)
        .with_max_bytes(64 * 1024 * 1024)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name("big"))
            .with_partitions(
                (0..PARTITIONS)
                    .map(|p| {
                        FetchPartition::default()
                            .with_partition(p)
                            .with_current_leader_epoch(-1)
                            .with_fetch_offset(offset)
                            .with_last_fetched_epoch(-1)
                            .with_log_start_offset(-1)
                            .with_partition_max_bytes(partition_max_bytes)
                    })
                    .collect(),
            )])
}

/// Checks the answer: every record from `offset` on has the value produced, and each
/// partition holds at least `at_least(partition)` records.
fn check_records(
    response: &FetchResponse,
    offset: i64,
    at_least: impl Fn(i32) -> usize,
) -> Result<()> {
    ensure!(response.responses.len() == 1, "one topic in the answer");
    let partitions = &response.responses[0].partitions;
    ensure!(
        partitions.len() == PARTITIONS as usize,
        "every partition answered"
    );
    for data in partitions {
        let p = data.partition_index;
        ensure!(
            data.error_code == 0,
            "partition {p}: error {}",
            data.error_code
        );
        let records = decode_records(data.records.clone().unwrap_or_default())?;
        ensure!(
            records.len() >= at_least(p),
            "partition {p} from {offset}: {} records, expected at least {}",
            records.len(),
            at_least(p)
        );
        for r in records.iter().filter(|r| r.offset >= offset) {
            let expected = value(p, r.offset as usize);
            ensure!(
                r.value.as_deref() == Some(&expected[..]),
                "partition {p} offset {}: value differs",
                r.offset
            );
        }
    }
    Ok(())
}

#[test]
fn large_fetches_arrive_whole_and_in_order_when_pipelined() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let broker = Broker::start(dir.path(), &[])?;
    let mut client = broker.client()?;
    client.create_topic("big", PARTITIONS)?;
    for p in 0..PARTITIONS {
        for b in 0..BATCHES {
            let records: Vec<_> = (0..RECORDS_PER_BATCH)
                .map(|i| {
                    record(
                        None,
                        &value(p, b * RECORDS_PER_BATCH + i),
                        1_700_000_000_000,
                    )
                })
                .collect();
            let batch = encode_batch(&records, Compression::None)?;
            let base = client.produce_ok("big", p, batch)?;
            ensure!(base == (b * RECORDS_PER_BATCH) as i64, "base offset {base}");
        }
    }
    let total = (BATCHES * RECORDS_PER_BATCH) as i64;

    // Many requests written before any answer is read: the answers (about 1.5 MiB each)
    // fill the socket, so the broker's writes have to wait for room part-way through.
    let version = client.version(ApiKey::Fetch)?;
    let header_version = ApiKey::Fetch.request_header_version(version);
    let cases: Vec<(i64, i32)> = (0..12)
        .map(|i| match i % 3 {
            0 => (0, 16 * 1024 * 1024),
            // Less than a batch: the first batch anyway (Kafka's "at least one").
            1 => (i as i64 % total, 1),
            _ => (total - 1, 16 * 1024 * 1024),
        })
        .collect();
    let mut raw = common::Client::connect(broker.addr)?;
    for (i, (offset, max)) in cases.iter().enumerate() {
        let mut body = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(ApiKey::Fetch as i16)
            .with_request_api_version(version)
            .with_correlation_id(i as i32)
            .with_client_id(Some(StrBytes::from_static_str("fetch-test")))
            .encode(&mut body, header_version)?;
        fetch_all_partitions(*offset, *max).encode(&mut body, version)?;
        raw.write_frame(&body)?;
    }
    for (i, (offset, max)) in cases.iter().enumerate() {
        let mut frame = Bytes::from(raw.read_frame()?);
        let header =
            ResponseHeader::decode(&mut frame, ApiKey::Fetch.response_header_version(version))?;
        ensure!(header.correlation_id == i as i32, "answer {i} out of order");
        let response =
            FetchResponse::decode(&mut frame, version).with_context(|| format!("answer {i}"))?;
        ensure!(
            frame.is_empty(),
            "answer {i}: {} trailing bytes",
            frame.len()
        );
        // Below a batch, the first partition still gets its first batch (KIP-74);
        // otherwise every partition answers up to its end.
        let at_least = |p: i32| match (*max, p) {
            (1, 0) => 1,
            (1, _) => 0,
            _ => (total - offset) as usize,
        };
        check_records(&response, *offset, at_least).with_context(|| format!("answer {i}"))?;
    }
    Ok(())
}

/// A Fetch of every partition at its end, parked (long poll), answers with a record
/// appended to a partition of either shard: whichever shard's wait ends reads its
/// partitions itself and hands the data back with the wake-up.
#[test]
fn a_parked_fetch_answers_with_what_either_shard_appends() -> Result<()> {
    const TOPIC: &str = "tail";
    const TOPIC_PARTITIONS: i32 = 4;
    let dir = tempfile::tempdir()?;
    let broker = Broker::start(dir.path(), &[])?;
    let mut producer = broker.client()?;
    producer.create_topic(TOPIC, TOPIC_PARTITIONS)?;
    let on_shard = |shard: usize| {
        (0..TOPIC_PARTITIONS)
            .find(|p| sluice_core::ids::owner_shard(TOPIC, *p, 2) == shard)
            .expect("4 partitions over 2 shards give each one")
    };
    let version = producer.version(ApiKey::Fetch)?;
    let mut consumer = broker.client()?;
    let mut ends = vec![0i64; TOPIC_PARTITIONS as usize];
    for (round, partition) in [on_shard(0), on_shard(1), on_shard(1), on_shard(0)]
        .into_iter()
        .enumerate()
    {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(sluice_core::limits::MAX_FETCH_WAIT_MS)
            .with_min_bytes(1)
            .with_max_bytes(1024 * 1024)
            .with_session_epoch(-1)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name(TOPIC))
                .with_partitions(
                    (0..TOPIC_PARTITIONS)
                        .map(|p| {
                            FetchPartition::default()
                                .with_partition(p)
                                .with_current_leader_epoch(-1)
                                .with_fetch_offset(ends[p as usize])
                                .with_last_fetched_epoch(-1)
                                .with_log_start_offset(-1)
                                .with_partition_max_bytes(1024 * 1024)
                        })
                        .collect(),
                )]);
        let started = std::time::Instant::now();
        let parked = std::thread::spawn(move || -> Result<(FetchResponse, common::Client)> {
            let response: FetchResponse = consumer.send(version, &request)?;
            Ok((response, consumer))
        });
        let payload = format!("round {round}");
        let batch = encode_batch(&[record(None, payload.as_bytes(), 0)], Compression::None)?;
        let offset = producer.produce_ok(TOPIC, partition, batch)?;
        let (response, client) = parked.join().expect("fetch thread")?;
        consumer = client;
        // Answered by the append, not by the 30 s deadline.
        ensure!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "round {round}: the parked fetch was not woken"
        );
        let mut found = false;
        for data in &response.responses[0].partitions {
            ensure!(
                data.error_code == 0,
                "round {round}: error {}",
                data.error_code
            );
            let records = decode_records(data.records.clone().unwrap_or_default())?;
            if data.partition_index == partition {
                ensure!(
                    records.len() == 1
                        && records[0].offset == offset
                        && records[0].value.as_deref() == Some(payload.as_bytes()),
                    "round {round}: partition {partition} answered {records:?}"
                );
                found = true;
            } else {
                ensure!(records.is_empty(), "round {round}: data from nowhere");
            }
        }
        ensure!(found, "round {round}: partition {partition} missing");
        ends[partition as usize] = offset + 1;
    }
    Ok(())
}
