//! `sluice consumer-groups`, after kafka-consumer-groups.sh: `--list`, `--describe`
//! (offsets, log-end offsets, lag and owner per partition), `--delete`,
//! `--reset-offsets`.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Result};
use clap::ArgGroup;
use sluice_client::error::code;
use sluice_client::{Client, Offsets, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP};

use super::connect;

#[derive(clap::Args, Debug)]
#[command(group(
    ArgGroup::new("action")
        .required(true)
        .args(["list", "describe", "delete", "reset_offsets"])
))]
#[command(group(ArgGroup::new("reset_to").args(["to_earliest", "to_latest", "to_offset"])))]
pub struct ConsumerGroupsArgs {
    /// The Kafka server to connect to: HOST:PORT[,HOST:PORT...].
    #[arg(long, value_name = "HOST:PORT")]
    bootstrap_server: String,
    /// List all consumer groups.
    #[arg(long)]
    list: bool,
    /// Describe a consumer group: offsets, lag and members per partition.
    #[arg(long)]
    describe: bool,
    /// Delete consumer groups (they must have no members).
    #[arg(long)]
    delete: bool,
    /// Reset the group's offsets (the group must have no members).
    #[arg(long)]
    reset_offsets: bool,
    /// The consumer group (repeatable with --delete).
    #[arg(long)]
    group: Vec<String>,
    /// The topic whose offsets --reset-offsets changes.
    #[arg(long)]
    topic: Option<String>,
    /// Reset to the earliest offset.
    #[arg(long)]
    to_earliest: bool,
    /// Reset to the latest offset.
    #[arg(long)]
    to_latest: bool,
    /// Reset to this offset.
    #[arg(long, value_name = "N")]
    to_offset: Option<i64>,
    /// Apply the reset (without it, only show what would be done).
    #[arg(long)]
    execute: bool,
    /// Show what --reset-offsets would do (the default).
    #[arg(long)]
    dry_run: bool,
}

pub fn run(args: ConsumerGroupsArgs) -> Result<()> {
    if (args.describe || args.reset_offsets) && args.group.len() != 1 {
        bail!("Option [describe] and [reset-offsets] take exactly one --group");
    }
    if args.delete && args.group.is_empty() {
        bail!("Option [delete] takes one or more --group");
    }
    if args.reset_offsets && !(args.to_earliest || args.to_latest || args.to_offset.is_some()) {
        bail!("Option [reset-offsets] needs one of --to-earliest, --to-latest, --to-offset");
    }
    if args.reset_offsets && args.topic.is_none() {
        bail!("Option [reset-offsets] needs --topic");
    }
    let mut client = connect(&args.bootstrap_server, "sluice-consumer-groups")?;
    if args.list {
        for group in client.list_groups()? {
            println!("{}", group.group_id);
        }
        Ok(())
    } else if args.describe {
        describe(&mut client, &args.group[0])
    } else if args.delete {
        delete(&mut client, &args.group)
    } else {
        reset(&mut client, &args)
    }
}

/// One row of the describe table.
struct Row {
    topic: String,
    partition: i32,
    current: Option<i64>,
    log_end: Option<i64>,
    consumer_id: String,
    host: String,
    client_id: String,
}

fn describe(client: &mut Client, group: &str) -> Result<()> {
    let description = client.describe_group(group)?;
    let committed = client.fetch_committed(group, None)?;
    if description.state == "Dead"
        || (description.members.is_empty() && committed.is_empty() && description.state != "Empty")
    {
        bail!("Consumer group '{group}' does not exist.");
    }
    // Every partition that is assigned or has a committed offset.
    let mut owners: BTreeMap<(String, i32), (String, String, String)> = BTreeMap::new();
    for m in &description.members {
        for (topic, partitions) in &m.assignment {
            for p in partitions {
                owners.insert(
                    (topic.clone(), *p),
                    (
                        m.member_id.clone(),
                        // Some brokers leave the host empty; keep the column readable.
                        if m.host.is_empty() {
                            "-".to_owned()
                        } else {
                            m.host.clone()
                        },
                        m.client_id.clone(),
                    ),
                );
            }
        }
    }
    let keys: BTreeSet<(String, i32)> = owners.keys().chain(committed.keys()).cloned().collect();
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (t, p) in &keys {
        by_topic.entry(t.clone()).or_default().push(*p);
    }
    let mut log_end: Offsets = Offsets::new();
    for (topic, partitions) in &by_topic {
        // A deleted topic has no log end; its rows show "-".
        if let Ok(ends) = client.list_offsets(topic, partitions, LATEST_TIMESTAMP) {
            log_end.extend(ends.into_iter().map(|(p, o)| ((topic.clone(), p), o)));
        }
    }
    let rows: Vec<Row> = keys
        .into_iter()
        .map(|key| {
            let (consumer_id, host, client_id) = owners
                .get(&key)
                .cloned()
                .unwrap_or_else(|| ("-".into(), "-".into(), "-".into()));
            Row {
                current: committed.get(&key).copied(),
                log_end: log_end.get(&key).copied(),
                topic: key.0,
                partition: key.1,
                consumer_id,
                host,
                client_id,
            }
        })
        .collect();
    match description.state.as_str() {
        "Empty" => println!("\nConsumer group '{group}' has no active members."),
        "PreparingRebalance" | "CompletingRebalance" => {
            println!("\nWarning: Consumer group '{group}' is rebalancing.")
        }
        _ => {}
    }
    print_offsets(group, &rows);
    Ok(())
}

fn dash(v: Option<i64>) -> String {
    v.map_or("-".to_owned(), |v| v.to_string())
}

/// Kafka's layout: columns padded to the widest value (at least 15 wide), one space
/// apart, after a blank line.
fn print_offsets(group: &str, rows: &[Row]) {
    let width = |f: &dyn Fn(&Row) -> usize, header: &str| {
        rows.iter()
            .map(f)
            .max()
            .unwrap_or(0)
            .max(header.len())
            .max(15)
    };
    let group_w = group.len().max(15);
    let topic_w = width(&|r| r.topic.len(), "TOPIC");
    let consumer_w = width(&|r| r.consumer_id.len(), "CONSUMER-ID");
    let host_w = width(&|r| r.host.len(), "HOST");
    let line = |cols: [&str; 9]| {
        println!(
            "{:<group_w$} {:<topic_w$} {:<10} {:<15} {:<15} {:<15} {:<consumer_w$} {:<host_w$} {}",
            cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], cols[7], cols[8]
        )
    };
    println!();
    line([
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
    ]);
    for r in rows {
        let lag = match (r.current, r.log_end) {
            (Some(c), Some(e)) => Some((e - c).max(0)),
            _ => None,
        };
        line([
            group,
            &r.topic,
            &r.partition.to_string(),
            &dash(r.current),
            &dash(r.log_end),
            &dash(lag),
            &r.consumer_id,
            &r.host,
            &r.client_id,
        ]);
    }
}

fn delete(client: &mut Client, groups: &[String]) -> Result<()> {
    let names: Vec<&str> = groups.iter().map(String::as_str).collect();
    let results = client.delete_groups(&names)?;
    let mut failed = Vec::new();
    for (group, result) in &results {
        match result {
            Ok(()) => {}
            Err(e) if e.code == code::GROUP_ID_NOT_FOUND => {
                failed.push(format!(
                    "Group '{group}' could not be deleted due to: Group '{group}' does not exist."
                ));
            }
            Err(e) if e.code == code::NON_EMPTY_GROUP => {
                failed.push(format!(
                    "Group '{group}' could not be deleted due to: The group is not empty."
                ));
            }
            Err(e) => failed.push(format!("Group '{group}' could not be deleted due to: {e}")),
        }
    }
    let deleted: Vec<String> = results
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(g, _)| format!("'{g}'"))
        .collect();
    if !deleted.is_empty() {
        println!(
            "Deletion of requested consumer groups ({}) was successful.",
            deleted.join(", ")
        );
    }
    if !failed.is_empty() {
        bail!("{}", failed.join("\n"));
    }
    Ok(())
}

fn reset(client: &mut Client, args: &ConsumerGroupsArgs) -> Result<()> {
    let group = &args.group[0];
    let topic_arg = args.topic.as_deref().expect("checked");
    // TOPIC or TOPIC:P1,P2 as Kafka accepts.
    let (topic, only): (&str, Option<Vec<i32>>) = match topic_arg.split_once(':') {
        Some((t, ps)) => (
            t,
            Some(
                ps.split(',')
                    .map(|p| p.trim().parse::<i32>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| anyhow::anyhow!("invalid partitions in --topic {topic_arg}"))?,
            ),
        ),
        None => (topic_arg, None),
    };
    let description = client.describe_group(group)?;
    if !matches!(description.state.as_str(), "Empty" | "Dead") {
        bail!(
            "Assignments can only be reset if the group '{group}' is inactive, but the current state is {}.",
            description.state
        );
    }
    let metadata = client.topic(topic, false).map_err(|e| {
        if e.kafka_code() == Some(code::UNKNOWN_TOPIC_OR_PARTITION) {
            anyhow::anyhow!("Topic '{topic}' does not exist")
        } else {
            e.into()
        }
    })?;
    let partitions: Vec<i32> = match only {
        Some(ps) => ps,
        None => metadata.partitions.iter().map(|p| p.partition).collect(),
    };
    let earliest = client.list_offsets(topic, &partitions, EARLIEST_TIMESTAMP)?;
    let latest = client.list_offsets(topic, &partitions, LATEST_TIMESTAMP)?;
    let mut new_offsets = Offsets::new();
    for p in &partitions {
        let (low, high) = (earliest[p], latest[p]);
        let target = if args.to_earliest {
            low
        } else if args.to_latest {
            high
        } else {
            // Kafka clamps an out-of-range target into [earliest, latest].
            args.to_offset.expect("checked").clamp(low, high)
        };
        new_offsets.insert((topic.to_owned(), *p), target);
    }
    if args.execute {
        client.commit_offsets(group, -1, "", &new_offsets)?;
    } else {
        eprintln!("WARN: No action will be performed as the --execute option is missing. In a future major release, the default behavior of this command will be to prompt the user before executing the reset rather than doing a dry run. You should add the --dry-run option explicitly if you are scripting this command and want to keep the current default behavior without prompting.");
    }
    println!();
    println!(
        "{:<30} {:<30} {:<10} {:<15}",
        "GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"
    );
    for ((t, p), offset) in &new_offsets {
        println!("{group:<30} {t:<30} {p:<10} {offset:<15}");
    }
    Ok(())
}
