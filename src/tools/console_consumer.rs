//! `sluice console-consumer`, after kafka-console-consumer.sh: print a topic's records
//! from one partition (`--partition`), as a member of a group (`--group`), or from
//! every partition. Prints `Processed a total of N messages` on stderr when it stops
//! (after --max-messages, --timeout-ms without records, or SIGINT/SIGTERM).

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sluice_client::error::code;
use sluice_client::{
    Client, ConsumerRecord, GroupMember, MemberConfig, Offsets, EARLIEST_TIMESTAMP,
    LATEST_TIMESTAMP,
};

use super::{connect, parse_properties, property_bool, unescape};

/// How long one Fetch may wait for records; also how often signals are noticed.
const POLL_WAIT: Duration = Duration::from_millis(500);

#[derive(clap::Args, Debug)]
pub struct ConsoleConsumerArgs {
    /// The Kafka server to connect to: HOST:PORT[,HOST:PORT...].
    #[arg(long, value_name = "HOST:PORT")]
    bootstrap_server: String,
    /// The topic to consume.
    #[arg(long)]
    topic: String,
    /// Start with the earliest message when there is no committed offset.
    #[arg(long)]
    from_beginning: bool,
    /// Consume only this partition.
    #[arg(long)]
    partition: Option<i32>,
    /// Where to start in --partition: an offset, earliest or latest (default latest).
    #[arg(long)]
    offset: Option<String>,
    /// The consumer group to join.
    #[arg(long)]
    group: Option<String>,
    /// Consumer configuration, e.g. group.id=G or auto.offset.reset=earliest.
    #[arg(long = "consumer-property", value_name = "KEY=VALUE")]
    consumer_properties: Vec<String>,
    /// Formatter properties: print.key, print.value, print.partition, print.offset,
    /// print.timestamp, print.headers, key.separator, line.separator, null.literal.
    #[arg(long = "property", value_name = "KEY=VALUE")]
    properties: Vec<String>,
    /// Exit after this many messages.
    #[arg(long)]
    max_messages: Option<u64>,
    /// Exit when no message arrives for this long.
    #[arg(long)]
    timeout_ms: Option<u64>,
}

/// Kafka's DefaultMessageFormatter.
struct Formatter {
    print_timestamp: bool,
    print_partition: bool,
    print_offset: bool,
    print_headers: bool,
    print_key: bool,
    print_value: bool,
    key_separator: String,
    line_separator: String,
    headers_separator: String,
    null_literal: String,
}

impl Formatter {
    fn from_properties(props: &BTreeMap<String, String>) -> Result<Formatter> {
        let text =
            |key: &str, default: &str| unescape(props.get(key).map_or(default, String::as_str));
        Ok(Formatter {
            print_timestamp: property_bool(props, "print.timestamp", false)?,
            print_partition: property_bool(props, "print.partition", false)?,
            print_offset: property_bool(props, "print.offset", false)?,
            print_headers: property_bool(props, "print.headers", false)?,
            print_key: property_bool(props, "print.key", false)?,
            print_value: property_bool(props, "print.value", true)?,
            key_separator: text("key.separator", "\t"),
            line_separator: text("line.separator", "\n"),
            headers_separator: text("headers.separator", ","),
            null_literal: text("null.literal", "null"),
        })
    }

    fn format(&self, r: &ConsumerRecord, out: &mut Vec<u8>) {
        let mut fields: Vec<Vec<u8>> = Vec::new();
        if self.print_timestamp {
            let kind = if r.log_append_time {
                "LogAppendTime"
            } else {
                "CreateTime"
            };
            let text = if r.timestamp_ms < 0 {
                "NO_TIMESTAMP".to_owned()
            } else {
                format!("{kind}:{}", r.timestamp_ms)
            };
            fields.push(text.into_bytes());
        }
        if self.print_partition {
            fields.push(format!("Partition:{}", r.partition).into_bytes());
        }
        if self.print_offset {
            fields.push(format!("Offset:{}", r.offset).into_bytes());
        }
        if self.print_headers {
            let text = if r.headers.is_empty() {
                "NO_HEADERS".to_owned()
            } else {
                r.headers
                    .iter()
                    .map(|(k, v)| {
                        let v = v.as_ref().map_or(self.null_literal.clone(), |v| {
                            String::from_utf8_lossy(v).into_owned()
                        });
                        format!("{k}:{v}")
                    })
                    .collect::<Vec<_>>()
                    .join(&self.headers_separator)
            };
            fields.push(text.into_bytes());
        }
        let bytes_or_null = |b: &Option<bytes::Bytes>| {
            b.as_ref()
                .map_or(self.null_literal.as_bytes().to_vec(), |b| b.to_vec())
        };
        if self.print_key {
            fields.push(bytes_or_null(&r.key));
        }
        if self.print_value {
            fields.push(bytes_or_null(&r.value));
        }
        for (i, field) in fields.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(self.key_separator.as_bytes());
            }
            out.extend_from_slice(field);
        }
        out.extend_from_slice(self.line_separator.as_bytes());
    }
}

pub fn run(args: ConsoleConsumerArgs) -> Result<()> {
    let consumer_props = parse_properties("--consumer-property", &args.consumer_properties)?;
    let group = match (&args.group, consumer_props.get("group.id")) {
        (Some(g), Some(p)) if g != p => bail!(
            "Option [group] takes precedence over property group.id, but they differ ({g} and {p})"
        ),
        (Some(g), _) | (None, Some(g)) => Some(g.clone()),
        (None, None) => None,
    };
    if args.offset.is_some() && args.partition.is_none() {
        bail!("The partition is required when offset is specified.");
    }
    if args.offset.is_some() && args.from_beginning {
        bail!("Options from-beginning and offset cannot be specified together.");
    }
    if group.is_some() && args.partition.is_some() {
        bail!("Options group and partition cannot be specified together.");
    }
    let reset_earliest = match consumer_props.get("auto.offset.reset").map(String::as_str) {
        _ if args.from_beginning => true,
        Some("earliest") => true,
        Some("latest") | None => false,
        Some(other) => bail!("invalid auto.offset.reset {other:?}: expected earliest or latest"),
    };
    let formatter = Formatter::from_properties(&parse_properties("--property", &args.properties)?)?;

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())
            .context("cannot install signal handlers")?;
    }
    let client_id = consumer_props
        .get("client.id")
        .map_or("console-consumer", String::as_str);
    let mut client = connect(&args.bootstrap_server, client_id)?;
    let topic = client.topic(&args.topic, false).map_err(|e| {
        if e.kafka_code() == Some(code::UNKNOWN_TOPIC_OR_PARTITION) {
            anyhow::anyhow!("Topic '{}' does not exist", args.topic)
        } else {
            e.into()
        }
    })?;

    let mut consumer = Consumer {
        topic: args.topic.clone(),
        reset_earliest,
        positions: BTreeMap::new(),
        committed: BTreeMap::new(),
        member: None,
        formatter,
        processed: 0,
    };
    let outcome = (|| -> Result<()> {
        if let Some(group) = &group {
            let member = GroupMember::join(
                &mut client,
                group,
                vec![args.topic.clone()],
                MemberConfig::default(),
            )?;
            consumer.member = Some(member);
            consumer.start_from_committed(&mut client)?;
        } else if let Some(partition) = args.partition {
            if !topic.partitions.iter().any(|p| p.partition == partition) {
                bail!(
                    "Partition {partition} of topic {} does not exist (it has {} partitions)",
                    args.topic,
                    topic.partitions.len()
                );
            }
            let start = match args.offset.as_deref() {
                None if args.from_beginning => Start::Earliest,
                None | Some("latest") => Start::Latest,
                Some("earliest") => Start::Earliest,
                Some(n) => match n.parse::<i64>() {
                    Ok(offset) if offset >= 0 => Start::Offset(offset),
                    _ => bail!("The provided offset value '{n}' is incorrect. Valid values are 'earliest', 'latest', or a non-negative long."),
                },
            };
            consumer.start(&mut client, &[partition], start)?;
        } else {
            let partitions: Vec<i32> = topic.partitions.iter().map(|p| p.partition).collect();
            let start = if reset_earliest {
                Start::Earliest
            } else {
                Start::Latest
            };
            consumer.start(&mut client, &partitions, start)?;
        }
        consumer.poll_loop(
            &mut client,
            &stop,
            args.max_messages,
            args.timeout_ms.map(Duration::from_millis),
        )
    })();
    let finish = consumer.finish(&mut client);
    eprintln!("Processed a total of {} messages", consumer.processed);
    outcome.and(finish)
}

#[derive(Clone, Copy)]
enum Start {
    Earliest,
    Latest,
    Offset(i64),
}

struct Consumer {
    topic: String,
    reset_earliest: bool,
    /// Next offset to read, per assigned partition.
    positions: BTreeMap<i32, i64>,
    /// Last committed position per partition (group mode).
    committed: BTreeMap<i32, i64>,
    member: Option<GroupMember>,
    formatter: Formatter,
    processed: u64,
}

impl Consumer {
    fn start(&mut self, client: &mut Client, partitions: &[i32], start: Start) -> Result<()> {
        self.positions = match start {
            Start::Offset(offset) => partitions.iter().map(|p| (*p, offset)).collect(),
            Start::Earliest => client.list_offsets(&self.topic, partitions, EARLIEST_TIMESTAMP)?,
            Start::Latest => client.list_offsets(&self.topic, partitions, LATEST_TIMESTAMP)?,
        };
        Ok(())
    }

    /// Positions of the member's partitions: committed offsets, or the reset policy.
    fn start_from_committed(&mut self, client: &mut Client) -> Result<()> {
        let member = self.member.as_ref().expect("group mode");
        let mine: Vec<i32> = member
            .assignment
            .get(&self.topic)
            .cloned()
            .unwrap_or_default();
        let mut wanted = BTreeMap::new();
        wanted.insert(self.topic.clone(), mine.clone());
        let committed = if mine.is_empty() {
            Offsets::new()
        } else {
            client.fetch_committed(&member.group, Some(&wanted))?
        };
        let missing: Vec<i32> = mine
            .iter()
            .copied()
            .filter(|p| !committed.contains_key(&(self.topic.clone(), *p)))
            .collect();
        let reset = if missing.is_empty() {
            BTreeMap::new()
        } else {
            let ts = if self.reset_earliest {
                EARLIEST_TIMESTAMP
            } else {
                LATEST_TIMESTAMP
            };
            client.list_offsets(&self.topic, &missing, ts)?
        };
        self.committed = committed
            .into_iter()
            .map(|((_, p), offset)| (p, offset))
            .collect();
        self.positions = self.committed.clone();
        self.positions.extend(reset);
        Ok(())
    }

    fn poll_loop(
        &mut self,
        client: &mut Client,
        stop: &AtomicBool,
        max_messages: Option<u64>,
        idle_timeout: Option<Duration>,
    ) -> Result<()> {
        let mut last_record = Instant::now();
        let stdout = std::io::stdout();
        let mut out = Vec::with_capacity(64 * 1024);
        while !stop.load(Ordering::Relaxed) && max_messages.is_none_or(|m| self.processed < m) {
            if idle_timeout.is_some_and(|t| last_record.elapsed() >= t) {
                break;
            }
            if self.member.as_ref().is_some_and(GroupMember::needs_rejoin) {
                self.rebalance(client)?;
                continue;
            }
            if self.positions.is_empty() {
                // A group member without partitions waits for the next rebalance.
                std::thread::sleep(POLL_WAIT / 5);
                continue;
            }
            let fetched = client.fetch(&self.topic, &self.positions, POLL_WAIT)?;
            let mut progressed = false;
            for partition in fetched {
                match partition.error_code {
                    code::NONE => {}
                    code::OFFSET_OUT_OF_RANGE => {
                        let ts = if self.reset_earliest {
                            EARLIEST_TIMESTAMP
                        } else {
                            LATEST_TIMESTAMP
                        };
                        let reset = client.list_offsets(&self.topic, &[partition.partition], ts)?;
                        self.positions.extend(reset);
                        continue;
                    }
                    code::NOT_LEADER_OR_FOLLOWER | code::LEADER_NOT_AVAILABLE => continue,
                    other => bail!(
                        "fetching {}-{}: {}",
                        self.topic,
                        partition.partition,
                        sluice_client::KafkaError::new(other, None)
                    ),
                }
                for record in &partition.records {
                    if max_messages.is_some_and(|m| self.processed >= m) {
                        break;
                    }
                    self.formatter.format(record, &mut out);
                    self.processed += 1;
                    self.positions.insert(record.partition, record.offset + 1);
                    progressed = true;
                }
            }
            if progressed {
                last_record = Instant::now();
                let mut lock = stdout.lock();
                if lock.write_all(&out).and_then(|()| lock.flush()).is_err() {
                    // stdout closed (e.g. piped into head): stop like Kafka does.
                    break;
                }
                out.clear();
                self.commit(client)?;
            }
        }
        Ok(())
    }

    /// Commits positions that moved since the last commit (group mode only).
    fn commit(&mut self, client: &mut Client) -> Result<()> {
        let Some(member) = &self.member else {
            return Ok(());
        };
        let changed: Offsets = self
            .positions
            .iter()
            .filter(|(p, offset)| self.committed.get(p) != Some(offset))
            .map(|(p, offset)| ((self.topic.clone(), *p), *offset))
            .collect();
        match member.commit(client, &changed) {
            Ok(()) => {
                self.committed
                    .extend(changed.into_iter().map(|((_, p), o)| (p, o)));
                Ok(())
            }
            // The group moved on; the next rebalance hands the partitions out again.
            Err(e)
                if matches!(
                    e.kafka_code(),
                    Some(
                        code::REBALANCE_IN_PROGRESS
                            | code::ILLEGAL_GENERATION
                            | code::UNKNOWN_MEMBER_ID
                    )
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    fn rebalance(&mut self, client: &mut Client) -> Result<()> {
        self.commit(client)?;
        let member = self.member.as_mut().expect("group mode");
        if let Some(reason) = member.heartbeat_failure() {
            tracing::warn!("rejoining group {}: {reason}", member.group);
        }
        member.rejoin(client)?;
        self.start_from_committed(client)
    }

    fn finish(&mut self, client: &mut Client) -> Result<()> {
        let committed = self.commit(client);
        let left = match self.member.take() {
            Some(member) => member.leave(client).map_err(Into::into),
            None => Ok(()),
        };
        committed.and(left)
    }
}
