//! Clean shutdown and restart: SIGTERM exits 0, and a restart on the same data
//! directory keeps every topic, partition count and acknowledged record.

mod common;

use anyhow::{ensure, Context, Result};
use common::{encode_batch, error_code, parse_ready_line, record, Broker, EARLIEST_TIMESTAMP};
use kafka_protocol::records::{Compression, Record};

#[test]
fn ready_line_parses() -> Result<()> {
    let addr = parse_ready_line("sluice: ready on 127.0.0.1:40123 (2 shards)")?;
    ensure!(addr.port() == 40123, "port {}", addr.port());
    ensure!(
        parse_ready_line("sluice: starting").is_err(),
        "non-ready line parsed"
    );
    Ok(())
}

#[test]
fn sigterm_exits_zero() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut broker = Broker::start(dir.path(), &[])?;
    ensure!(broker.addr.port() != 0, "ready line reported port 0");
    // Connected clients must not keep the broker from shutting down.
    let mut client = broker.client()?;
    client.create_topic("idle", 1)?;
    let status = broker.terminate()?;
    ensure!(status.code() == Some(0), "SIGTERM exit status {status:?}");
    Ok(())
}

fn keyed_records(topic: &str, partition: i32, count: usize, first_ts: i64) -> Vec<Record> {
    (0..count)
        .map(|i| {
            let mut r = record(
                Some(format!("{topic}-{partition}-key-{i}").as_bytes()),
                format!("{topic}-{partition}-value-{i}").as_bytes(),
                first_ts + i as i64,
            );
            r.headers.insert(
                kafka_protocol::protocol::StrBytes::from_static_str("h"),
                Some(bytes::Bytes::from(format!("hv-{i}"))),
            );
            r
        })
        .collect()
}

#[test]
fn restart_keeps_topics_and_records() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let topics = [("alpha", 3), ("beta", 1), ("gamma", 5)];
    let mut expected: Vec<(String, i32, Vec<Record>)> = Vec::new();

    let mut broker = Broker::start(dir.path(), &[])?;
    {
        let mut client = broker.client()?;
        for (topic, partitions) in topics {
            client.create_topic(topic, partitions)?;
            for partition in 0..partitions {
                let records = keyed_records(topic, partition, 7, 1_700_000_000_000);
                // Two batches per partition: 3 records gzip, 4 records uncompressed.
                let first = encode_batch(&records[..3], Compression::Gzip)?;
                let second = encode_batch(&records[3..], Compression::None)?;
                ensure!(
                    client.produce_ok(topic, partition, first)? == 0,
                    "base offset 0"
                );
                ensure!(
                    client.produce_ok(topic, partition, second)? == 3,
                    "base offset 3"
                );
                expected.push((topic.to_owned(), partition, records));
            }
        }
    }
    let status = broker.terminate()?;
    ensure!(status.code() == Some(0), "first shutdown: {status:?}");

    for cycle in 0..2 {
        let mut broker = Broker::start(dir.path(), &[]).context("restart")?;
        let mut client = broker.client()?;
        let metadata = client.metadata(None)?;
        for (topic, partitions) in topics {
            let found = metadata
                .topics
                .iter()
                .find(|t| t.name.as_ref().map(|n| n.as_str()) == Some(topic))
                .with_context(|| format!("cycle {cycle}: topic {topic} missing after restart"))?;
            ensure!(
                found.error_code == error_code::NONE,
                "{topic}: error {}",
                found.error_code
            );
            ensure!(
                found.partitions.len() == partitions as usize,
                "{topic}: {} partitions after restart, expected {partitions}",
                found.partitions.len()
            );
        }
        for (topic, partition, records) in &expected {
            let fetched = client.fetch_all(topic, *partition, 0)?;
            ensure!(
                fetched.len() == records.len(),
                "cycle {cycle}: {topic}-{partition} has {} records, expected {}",
                fetched.len(),
                records.len()
            );
            for (i, (got, want)) in fetched.iter().zip(records).enumerate() {
                ensure!(
                    got.offset == i as i64,
                    "{topic}-{partition}: offset {}",
                    got.offset
                );
                ensure!(got.key == want.key, "{topic}-{partition}@{i}: key");
                ensure!(got.value == want.value, "{topic}-{partition}@{i}: value");
                ensure!(
                    got.timestamp == want.timestamp,
                    "{topic}-{partition}@{i}: timestamp"
                );
                ensure!(
                    got.headers == want.headers,
                    "{topic}-{partition}@{i}: headers"
                );
            }
            let latest = client.latest_offset(topic, *partition)?;
            ensure!(
                latest == records.len() as i64,
                "{topic}-{partition}: latest {latest}"
            );
            let (error, earliest) = client.list_offset(topic, *partition, EARLIEST_TIMESTAMP)?;
            ensure!(
                error == 0 && earliest == 0,
                "{topic}-{partition}: earliest {earliest} error {error}"
            );
        }
        // Appends continue at the old end.
        let more = encode_batch(
            &[record(None, b"appended-after-restart", 1)],
            Compression::None,
        )?;
        let base_offset = client.produce_ok("beta", 0, more)?;
        let (_, _, beta) = expected
            .iter_mut()
            .find(|(t, _, _)| t == "beta")
            .context("beta expected")?;
        ensure!(
            base_offset == beta.len() as i64,
            "cycle {cycle}: append at {base_offset}"
        );
        beta.push(record(None, b"appended-after-restart", 1));
        let status = broker.terminate()?;
        ensure!(
            status.code() == Some(0),
            "cycle {cycle}: shutdown {status:?}"
        );
    }
    Ok(())
}

#[test]
fn deleted_topic_stays_deleted_after_restart() -> Result<()> {
    use kafka_protocol::messages::{ApiKey, DeleteTopicsRequest};
    let dir = tempfile::tempdir()?;
    let mut broker = Broker::start(dir.path(), &[])?;
    let mut client = broker.client()?;
    client.create_topic("keep", 1)?;
    client.create_topic("drop", 2)?;
    let batch = encode_batch(&[record(None, b"x", 1)], Compression::None)?;
    client.produce_ok("drop", 1, batch)?;
    let version = client
        .advertised(ApiKey::DeleteTopics as i16)
        .map(|(_, max)| max.min(5))
        .context("DeleteTopics advertised")?;
    let request = DeleteTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topic_names(vec![common::topic_name("drop")]);
    let response = client.send(version, &request)?;
    let result = response
        .responses
        .first()
        .context("no DeleteTopics result")?;
    ensure!(result.error_code == 0, "delete error {}", result.error_code);
    ensure!(broker.terminate()?.code() == Some(0), "shutdown");

    let broker = Broker::start(dir.path(), &[])?;
    let mut client = broker.client()?;
    let names: Vec<String> = client
        .metadata(None)?
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.as_str().to_owned()))
        .collect();
    ensure!(names == ["keep"], "topics after restart: {names:?}");
    Ok(())
}
