//! Crash test: SIGKILL the broker in the middle of a stream of acks=1 produces, restart
//! it on the same data directory, and check that every acknowledged batch is there,
//! intact, at the offset it was acknowledged with.

mod common;

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::thread;

use anyhow::{ensure, Context, Result};
use common::{encode_batch, record, Broker, Client};
use kafka_protocol::records::Compression;

const RECORDS_PER_BATCH: usize = 10;
const VALUE_SIZE_BYTES: usize = 1_000;

fn value(batch: usize, index: usize) -> Vec<u8> {
    let mut value = format!("batch-{batch}-record-{index}-").into_bytes();
    let fill = b'a' + u8::try_from((batch + index) % 26).expect("< 26");
    value.resize(VALUE_SIZE_BYTES, fill);
    value
}

/// Produces batches 0, 1, 2, ... with acks=1 until the connection fails, sending
/// (partition, batch number, base offset) for every acknowledged batch.
fn produce_until_error(
    mut client: Client,
    topic: &str,
    partition: i32,
    acks: mpsc::Sender<(i32, usize, i64)>,
) {
    for batch_number in 0.. {
        let records: Vec<_> = (0..RECORDS_PER_BATCH)
            .map(|i| {
                let key = format!("{batch_number}/{i}");
                record(
                    Some(key.as_bytes()),
                    &value(batch_number, i),
                    1_700_000_000_000 + batch_number as i64,
                )
            })
            .collect();
        let Ok(batch) = encode_batch(&records, Compression::None) else {
            return;
        };
        match client.produce(topic, partition, batch, 1) {
            Ok((0, base_offset)) => {
                if acks.send((partition, batch_number, base_offset)).is_err() {
                    return;
                }
            }
            // An error answer or a dead connection both end the stream.
            Ok(_) | Err(_) => return,
        }
    }
}

fn crash_and_verify(partitions: i32, acks_before_kill: usize, note: &str) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut broker = Broker::start(dir.path(), &[("log.segment.bytes", "262144")])?;
    let topic = format!("crash-{partitions}");
    broker.client()?.create_topic(&topic, partitions)?;

    let (ack_tx, ack_rx) = mpsc::channel();
    let mut producers = Vec::new();
    for partition in 0..partitions {
        let client = broker.client()?;
        let tx = ack_tx.clone();
        let topic = topic.clone();
        producers.push(thread::spawn(move || {
            produce_until_error(client, &topic, partition, tx)
        }));
    }
    drop(ack_tx);

    // (partition, batch number, base offset) of every acknowledged batch.
    let mut acked: Vec<(i32, usize, i64)> = Vec::new();
    while acked.len() < acks_before_kill {
        let ack = ack_rx
            .recv_timeout(common::REQUEST_TIMEOUT)
            .context("producers stopped before enough acks")?;
        acked.push(ack);
    }
    broker.kill9()?;
    for producer in producers {
        producer
            .join()
            .map_err(|_| anyhow::anyhow!("producer thread panicked"))?;
    }
    // Acks that arrived between our last read and the kill count too.
    acked.extend(ack_rx.try_iter());
    drop(broker);

    let broker = Broker::start(dir.path(), &[("log.segment.bytes", "262144")])
        .context("restart after SIGKILL")?;
    let mut client = broker.client()?;
    let metadata = client.metadata(Some(&[topic.as_str()]))?;
    ensure!(
        metadata.topics.first().map(|t| t.partitions.len()) == Some(partitions as usize),
        "topic {topic} lost or changed after the crash"
    );

    let mut fetched: BTreeMap<(i32, i64), (Vec<u8>, Vec<u8>)> = BTreeMap::new();
    for partition in 0..partitions {
        let records = client.fetch_all(&topic, partition, 0)?;
        for (i, r) in records.iter().enumerate() {
            ensure!(
                r.offset == i as i64,
                "{topic}-{partition}: offset gap at {i} (found {})",
                r.offset
            );
            fetched.insert(
                (partition, r.offset),
                (
                    r.key.clone().unwrap_or_default().to_vec(),
                    r.value.clone().unwrap_or_default().to_vec(),
                ),
            );
        }
    }

    ensure!(!acked.is_empty(), "no acks");
    for (partition, batch_number, base_offset) in &acked {
        for i in 0..RECORDS_PER_BATCH {
            let offset = base_offset + i as i64;
            let (key, val) = fetched.get(&(*partition, offset)).with_context(|| {
                format!(
                    "record {i} of acknowledged batch {batch_number} (partition {partition}, \
                     base offset {base_offset}) missing after the crash ({note})"
                )
            })?;
            ensure!(
                key == format!("{batch_number}/{i}").as_bytes(),
                "wrong key at {partition}/{offset}: {:?}",
                String::from_utf8_lossy(key)
            );
            ensure!(
                val == &value(*batch_number, i),
                "corrupted value at {partition}/{offset}"
            );
        }
    }

    // The recovered log accepts new writes right after its end.
    let end = client.latest_offset(&topic, 0)?;
    let next = encode_batch(&[record(None, b"after-crash", 1)], Compression::None)?;
    ensure!(
        client.produce_ok(&topic, 0, next)? == end,
        "offset after recovery"
    );
    Ok(())
}

#[test]
fn acknowledged_batches_survive_sigkill_one_partition() -> Result<()> {
    crash_and_verify(1, 300, "one partition")
}

#[test]
fn acknowledged_batches_survive_sigkill_four_partitions() -> Result<()> {
    crash_and_verify(4, 400, "four partitions, both shards")
}

#[test]
fn repeated_crashes_keep_all_acknowledged_data() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut expected: Vec<Vec<u8>> = Vec::new();
    for round in 0..3 {
        let mut broker = Broker::start(dir.path(), &[])?;
        let mut client = broker.client()?;
        if round == 0 {
            client.create_topic("again", 1)?;
        }
        for i in 0..20 {
            let value = format!("round-{round}-{i}").into_bytes();
            let batch = encode_batch(
                &[record(None, &value, 1_700_000_000_000)],
                Compression::Gzip,
            )?;
            let (error, base_offset) = client.produce("again", 0, batch, 1)?;
            ensure!(error == 0, "produce error {error}");
            ensure!(
                base_offset == expected.len() as i64,
                "round {round}: base offset {base_offset}"
            );
            expected.push(value);
        }
        broker.kill9()?;
    }
    let broker = Broker::start(dir.path(), &[])?;
    let records = broker.client()?.fetch_all("again", 0, 0)?;
    let values: Vec<Vec<u8>> = records
        .iter()
        .map(|r| r.value.clone().unwrap_or_default().to_vec())
        .collect();
    ensure!(
        values == expected,
        "after 3 crashes: {} records, expected {}",
        values.len(),
        expected.len()
    );
    Ok(())
}
