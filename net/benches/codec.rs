//! Codec work per request on the connection's shard, with the versions librdkafka and
//! the Java client use: decoding a Produce request carrying one 16 KiB batch for each
//! of 8 partitions and encoding its response; encoding a Fetch response that carries
//! 1 MiB of record bytes (the records are `Bytes` referenced, so this is framing plus
//! one copy into the response buffer).

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kafka_protocol::messages::{
    fetch_response::{FetchableTopicResponse, PartitionData},
    produce_request::{PartitionProduceData, TopicProduceData},
    produce_response::{PartitionProduceResponse, TopicProduceResponse},
    FetchResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

const PRODUCE_VERSION: i16 = 9;
const FETCH_VERSION: i16 = 12;
const PARTITIONS: i32 = 8;
const BATCH_BYTES: usize = 16 * 1024;
const FETCH_BYTES: usize = 1 << 20;

fn topic() -> TopicName {
    TopicName(StrBytes::from_static_str("bench-topic"))
}

fn produce_request_bytes() -> Bytes {
    let batch = Bytes::from(vec![7u8; BATCH_BYTES]);
    let request = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic())
            .with_partition_data(
                (0..PARTITIONS)
                    .map(|p| {
                        PartitionProduceData::default()
                            .with_index(p)
                            .with_records(Some(batch.clone()))
                    })
                    .collect(),
            )]);
    let mut buf = BytesMut::new();
    request.encode(&mut buf, PRODUCE_VERSION).expect("encode");
    buf.freeze()
}

fn produce_response() -> ProduceResponse {
    ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
        .with_name(topic())
        .with_partition_responses(
            (0..PARTITIONS)
                .map(|p| {
                    PartitionProduceResponse::default()
                        .with_index(p)
                        .with_base_offset(1_000_000 + i64::from(p))
                        .with_log_append_time_ms(-1)
                        .with_log_start_offset(0)
                })
                .collect(),
        )])
}

fn fetch_response() -> FetchResponse {
    let per_partition = FETCH_BYTES / PARTITIONS as usize;
    let records = Bytes::from(vec![9u8; per_partition]);
    FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
        .with_topic(topic())
        .with_partitions(
            (0..PARTITIONS)
                .map(|p| {
                    PartitionData::default()
                        .with_partition_index(p)
                        .with_high_watermark(5_000_000)
                        .with_last_stable_offset(5_000_000)
                        .with_log_start_offset(0)
                        .with_records(Some(records.clone()))
                })
                .collect(),
        )])
}

fn bench(c: &mut Criterion) {
    let request = produce_request_bytes();
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Bytes(request.len() as u64));
    group.bench_function("produce_request_decode_8x16KiB", |b| {
        b.iter(|| {
            let mut body = request.clone();
            ProduceRequest::decode(black_box(&mut body), PRODUCE_VERSION).expect("decode")
        })
    });
    let response = produce_response();
    group.throughput(Throughput::Elements(1));
    group.bench_function("produce_response_encode_8_partitions", |b| {
        let mut buf = BytesMut::with_capacity(1024);
        b.iter(|| {
            buf.clear();
            black_box(&response)
                .encode(&mut buf, PRODUCE_VERSION)
                .expect("encode");
            buf.len()
        })
    });
    let fetch = fetch_response();
    group.throughput(Throughput::Bytes(FETCH_BYTES as u64));
    group.bench_function("fetch_response_encode_1MiB", |b| {
        b.iter(|| {
            let size = fetch.compute_size(FETCH_VERSION).expect("size");
            let mut buf = BytesMut::with_capacity(size);
            black_box(&fetch)
                .encode(&mut buf, FETCH_VERSION)
                .expect("encode");
            buf.len()
        })
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
