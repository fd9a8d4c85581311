//! `sluice console-producer`, after kafka-console-producer.sh: one record per line of
//! stdin. A reader thread feeds lines to the main thread, which sends whatever has
//! arrived as one batch per partition, so typed lines go out at once and piped input is
//! batched.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::sync::mpsc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use clap::ArgGroup;
use sluice_client::records::partition_for_key;
use sluice_client::{Acks, Client, ProducerRecord};

use super::{connect, parse_properties, property_bool, unescape};

/// Lines queued between the stdin reader and the sender.
const LINE_QUEUE_DEPTH: usize = 10_000;
/// Most records sent in one round.
const MAX_RECORDS_PER_ROUND: usize = 1_000;
/// How long the broker may take to acknowledge a batch.
const PRODUCE_TIMEOUT_MS: i32 = 30_000;

#[derive(clap::Args, Debug)]
#[command(group(ArgGroup::new("servers").required(true).args(["bootstrap_server", "broker_list"])))]
pub struct ConsoleProducerArgs {
    /// The Kafka server to connect to: HOST:PORT[,HOST:PORT...].
    #[arg(long, value_name = "HOST:PORT")]
    bootstrap_server: Option<String>,
    /// Deprecated synonym of --bootstrap-server.
    #[arg(long, value_name = "HOST:PORT")]
    broker_list: Option<String>,
    /// The topic to produce messages to.
    #[arg(long)]
    topic: String,
    /// Reader properties: parse.key=true, key.separator=SEP, ignore.error=true.
    #[arg(long = "property", value_name = "KEY=VALUE")]
    properties: Vec<String>,
    /// Producer configuration, e.g. acks=all (repeatable).
    #[arg(long = "producer-property", value_name = "KEY=VALUE")]
    producer_properties: Vec<String>,
    /// The required acks of produce requests (all, -1, 0 or 1).
    #[arg(long)]
    request_required_acks: Option<String>,
}

struct LineFormat {
    parse_key: bool,
    key_separator: String,
    ignore_error: bool,
}

pub fn run(args: ConsoleProducerArgs) -> Result<()> {
    let servers = args
        .bootstrap_server
        .clone()
        .or(args.broker_list.clone())
        .expect("clap requires one");
    let props = parse_properties("--property", &args.properties)?;
    let format = LineFormat {
        parse_key: property_bool(&props, "parse.key", false)?,
        key_separator: unescape(props.get("key.separator").map_or("\t", String::as_str)),
        ignore_error: property_bool(&props, "ignore.error", false)?,
    };
    let producer_props = parse_properties("--producer-property", &args.producer_properties)?;
    let acks_text = producer_props
        .get("acks")
        .or(args.request_required_acks.as_ref())
        .map_or("all", String::as_str);
    let acks: Acks = acks_text.parse()?;
    for key in producer_props.keys() {
        if !matches!(
            key.as_str(),
            "acks" | "client.id" | "linger.ms" | "batch.size" | "compression.type"
        ) {
            eprintln!("sluice: the producer property '{key}' is not used");
        }
    }
    let client_id = producer_props
        .get("client.id")
        .map_or("console-producer", String::as_str);
    let mut client = connect(&servers, client_id)?;

    let (tx, rx) = mpsc::sync_channel::<std::io::Result<String>>(LINE_QUEUE_DEPTH);
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let stop = line.is_err();
                if tx.send(line).is_err() || stop {
                    return;
                }
            }
        })
        .context("cannot start the stdin reader")?;

    let mut producer = Producer {
        topic: args.topic.clone(),
        partitions: 0,
        next_partition: 0,
        acks,
    };
    let mut line_number = 0u64;
    let mut failures = 0u64;
    while let Ok(first) = rx.recv() {
        let mut lines = vec![first];
        while lines.len() < MAX_RECORDS_PER_ROUND {
            match rx.try_recv() {
                Ok(line) => lines.push(line),
                Err(_) => break,
            }
        }
        let mut records = Vec::with_capacity(lines.len());
        for line in lines {
            let line = line.context("reading stdin")?;
            line_number += 1;
            records.push(parse_line(&line, line_number, &format)?);
        }
        if let Err(e) = producer.send(&mut client, records) {
            if !format.ignore_error {
                return Err(e);
            }
            eprintln!("sluice: {e:#}");
            failures += 1;
        }
    }
    if failures > 0 {
        bail!("{failures} batches could not be sent");
    }
    Ok(())
}

fn parse_line(line: &str, line_number: u64, format: &LineFormat) -> Result<ProducerRecord> {
    let timestamp_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let (key, value) = if format.parse_key {
        let Some((key, value)) = line.split_once(&format.key_separator) else {
            bail!("No key separator found on line number {line_number}: '{line}'");
        };
        (Some(Bytes::copy_from_slice(key.as_bytes())), value)
    } else {
        (None, line)
    };
    Ok(ProducerRecord {
        key,
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        headers: Vec::new(),
        timestamp_ms,
    })
}

struct Producer {
    topic: String,
    /// Learned from Metadata on the first send (which may auto-create the topic).
    partitions: i32,
    /// Round-robin position for records without a key.
    next_partition: i32,
    acks: Acks,
}

impl Producer {
    fn send(&mut self, client: &mut Client, records: Vec<ProducerRecord>) -> Result<()> {
        if self.partitions == 0 {
            self.partitions = self.discover(client)?;
        }
        let mut by_partition: BTreeMap<i32, Vec<ProducerRecord>> = BTreeMap::new();
        for record in records {
            let partition = match &record.key {
                Some(key) => partition_for_key(key, self.partitions),
                None => {
                    let p = self.next_partition;
                    self.next_partition = (self.next_partition + 1) % self.partitions;
                    p
                }
            };
            by_partition.entry(partition).or_default().push(record);
        }
        for (partition, records) in by_partition {
            client
                .produce(
                    &self.topic,
                    partition,
                    &records,
                    self.acks,
                    PRODUCE_TIMEOUT_MS,
                )
                .with_context(|| {
                    format!(
                        "Error when sending {} messages to topic {} partition {partition}",
                        records.len(),
                        self.topic
                    )
                })?;
        }
        Ok(())
    }

    /// The topic's partition count, letting the broker auto-create it as Kafka's
    /// producer does; a new topic may take a moment to get leaders.
    fn discover(&self, client: &mut Client) -> Result<i32> {
        for _ in 0..50 {
            match client.topic(&self.topic, true) {
                Ok(t) if !t.partitions.is_empty() && t.partitions.iter().all(|p| p.leader >= 0) => {
                    return Ok(t.partitions.len() as i32);
                }
                Ok(_) => {}
                Err(e)
                    if e.kafka_code().is_some_and(|c| {
                        sluice_client::KafkaError::new(c, None).is_retriable()
                    }) => {}
                Err(e) => return Err(e.into()),
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Err(anyhow!(
            "Topic {} not present in metadata after 5000 ms.",
            self.topic
        ))
    }
}
