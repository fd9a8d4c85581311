//! `sluice topics`, after kafka-topics.sh: `--create`, `--list`, `--describe`,
//! `--delete`, `--alter --partitions N`.

use anyhow::{anyhow, bail, Context, Result};
use clap::ArgGroup;
use sluice_client::{error::code, topic_id_string, Client, NewTopic, TopicMetadata};

use super::{connect, parse_properties};

#[derive(clap::Args, Debug)]
#[command(group(
    ArgGroup::new("action")
        .required(true)
        .args(["create", "list", "describe", "delete", "alter"])
))]
pub struct TopicsArgs {
    /// The Kafka server to connect to: HOST:PORT[,HOST:PORT...].
    #[arg(long, value_name = "HOST:PORT")]
    bootstrap_server: String,
    /// Create a new topic.
    #[arg(long)]
    create: bool,
    /// List all available topics.
    #[arg(long)]
    list: bool,
    /// List details for the given topics (all topics without --topic).
    #[arg(long)]
    describe: bool,
    /// Delete a topic.
    #[arg(long)]
    delete: bool,
    /// Change the number of partitions of a topic.
    #[arg(long)]
    alter: bool,
    /// The topic to create, alter, describe or delete.
    #[arg(long)]
    topic: Option<String>,
    /// The number of partitions for the topic being created or altered.
    #[arg(long, value_name = "N")]
    partitions: Option<i32>,
    /// The replication factor for each partition in the topic being created.
    #[arg(long, value_name = "R")]
    replication_factor: Option<i16>,
    /// A topic configuration override for the topic being created (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE")]
    configs: Vec<String>,
    /// With --alter, --delete or --describe: do nothing if the topic does not exist.
    #[arg(long)]
    if_exists: bool,
    /// With --create: do nothing if the topic already exists.
    #[arg(long)]
    if_not_exists: bool,
    /// Leave internal topics out of --list and --describe.
    #[arg(long)]
    exclude_internal: bool,
}

pub fn run(args: TopicsArgs) -> Result<()> {
    check_options(&args)?;
    let mut client = connect(&args.bootstrap_server, "sluice-topics")?;
    let result = if args.create {
        create(&mut client, &args)
    } else if args.list {
        list(&mut client, &args)
    } else if args.describe {
        describe(&mut client, &args)
    } else if args.delete {
        delete(&mut client, &args)
    } else {
        alter(&mut client, &args)
    };
    result.context("Error while executing topic command")
}

fn check_options(args: &TopicsArgs) -> Result<()> {
    if (args.create || args.delete || args.alter) && args.topic.is_none() {
        bail!("Missing required argument \"[topic]\"");
    }
    if !args.create && (args.replication_factor.is_some() || !args.configs.is_empty()) {
        bail!("Options --replication-factor and --config can only be used with --create");
    }
    if !(args.create || args.alter) && args.partitions.is_some() {
        bail!("Option --partitions can only be used with --create or --alter");
    }
    if args.alter && args.partitions.is_none() {
        bail!("--alter needs --partitions");
    }
    Ok(())
}

fn create(client: &mut Client, args: &TopicsArgs) -> Result<()> {
    let name = args.topic.clone().expect("checked");
    let configs = parse_properties("--config", &args.configs)?
        .into_iter()
        .collect();
    let topic = NewTopic {
        name: name.clone(),
        partitions: args.partitions.unwrap_or(-1),
        replication_factor: args.replication_factor.unwrap_or(-1),
        configs,
    };
    match client.create_topic(&topic) {
        Ok(()) => {
            println!("Created topic {name}.");
            Ok(())
        }
        Err(e) if e.kafka_code() == Some(code::TOPIC_ALREADY_EXISTS) && args.if_not_exists => {
            Ok(())
        }
        Err(e) if e.kafka_code() == Some(code::TOPIC_ALREADY_EXISTS) => {
            Err(anyhow!("Topic '{name}' already exists."))
        }
        Err(e) => Err(e.into()),
    }
}

/// Topics to show, sorted by name; the named topic only when --topic is given.
fn selected_topics(client: &mut Client, args: &TopicsArgs) -> Result<Vec<TopicMetadata>> {
    let metadata = client.metadata(None, false)?;
    let topics: Vec<TopicMetadata> = metadata
        .topics
        .into_values()
        .filter(|t| t.error_code == code::NONE)
        .filter(|t| !(args.exclude_internal && t.internal))
        .filter(|t| args.topic.as_ref().is_none_or(|name| *name == t.name))
        .collect();
    if let Some(name) = &args.topic {
        if topics.is_empty() && !args.if_exists {
            bail!("Topic '{name}' does not exist as expected");
        }
    }
    Ok(topics)
}

fn list(client: &mut Client, args: &TopicsArgs) -> Result<()> {
    for topic in selected_topics(client, args)? {
        println!("{}", topic.name);
    }
    Ok(())
}

fn describe(client: &mut Client, args: &TopicsArgs) -> Result<()> {
    let topics = selected_topics(client, args)?;
    let names: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
    // Configs are informative: a broker without DescribeConfigs still gets its topics
    // described.
    let configs = if names.is_empty() {
        Default::default()
    } else {
        client.describe_topic_configs(&names).unwrap_or_default()
    };
    for topic in &topics {
        let replication_factor = topic.partitions.first().map_or(0, |p| p.replicas.len());
        let overrides: Vec<String> = configs
            .get(&topic.name)
            .map(|entries| {
                entries
                    .iter()
                    .filter(|c| !c.is_default() && !c.sensitive)
                    .map(|c| format!("{}={}", c.name, c.value.as_deref().unwrap_or("null")))
                    .collect()
            })
            .unwrap_or_default();
        println!(
            "Topic: {}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {}\tConfigs: {}",
            topic.name,
            topic_id_string(&topic.id),
            topic.partitions.len(),
            replication_factor,
            overrides.join(",")
        );
        for p in &topic.partitions {
            let leader = if p.leader >= 0 {
                p.leader.to_string()
            } else {
                "none".to_owned()
            };
            println!(
                "\tTopic: {}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}",
                topic.name,
                p.partition,
                leader,
                join_ids(&p.replicas),
                join_ids(&p.isr)
            );
        }
    }
    Ok(())
}

fn join_ids(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

fn delete(client: &mut Client, args: &TopicsArgs) -> Result<()> {
    let name = args.topic.as_deref().expect("checked");
    match client.delete_topic(name) {
        Ok(()) => Ok(()),
        Err(e) if e.kafka_code() == Some(code::UNKNOWN_TOPIC_OR_PARTITION) && args.if_exists => {
            Ok(())
        }
        Err(e) if e.kafka_code() == Some(code::UNKNOWN_TOPIC_OR_PARTITION) => {
            Err(anyhow!("Topic '{name}' does not exist as expected"))
        }
        Err(e) => Err(e.into()),
    }
}

fn alter(client: &mut Client, args: &TopicsArgs) -> Result<()> {
    let name = args.topic.as_deref().expect("checked");
    let count = args.partitions.expect("checked");
    match client.create_partitions(name, count) {
        Ok(()) => Ok(()),
        Err(e) if e.kafka_code() == Some(code::UNKNOWN_TOPIC_OR_PARTITION) && args.if_exists => {
            Ok(())
        }
        Err(e) if e.kafka_code() == Some(code::UNKNOWN_TOPIC_OR_PARTITION) => {
            Err(anyhow!("Topic '{name}' does not exist as expected"))
        }
        Err(e) => Err(e.into()),
    }
}
