//! The `sluice` binary: the broker (`sluice serve`, the default) and Kafka's
//! command-line tools as subcommands (`topics`, `console-producer`, `console-consumer`,
//! `consumer-groups`; see `tools`).

mod serve;
mod tools;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "A Kafka-compatible message broker, thread-per-core"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a broker (the default), configured like kafka-server-start.sh.
    Serve(ServeArgs),
    /// Create, list, describe, alter or delete topics, like kafka-topics.sh.
    Topics(tools::topics::TopicsArgs),
    /// Produce lines of stdin to a topic, like kafka-console-producer.sh.
    ConsoleProducer(tools::console_producer::ConsoleProducerArgs),
    /// Print a topic's records, like kafka-console-consumer.sh.
    ConsoleConsumer(tools::console_consumer::ConsoleConsumerArgs),
    /// List, describe, delete consumer groups and reset their offsets, like
    /// kafka-consumer-groups.sh.
    ConsumerGroups(tools::consumer_groups::ConsumerGroupsArgs),
}

#[derive(clap::Args, Default)]
pub struct ServeArgs {
    /// A server.properties file with Kafka's configuration keys.
    config: Option<PathBuf>,
    /// Set a configuration key, over the file: `--override key=value` (repeatable).
    #[arg(long = "override", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Number of shards, one pinned executor per core (default: every core).
    #[arg(long)]
    cores: Option<usize>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve::run(ServeArgs::default()),
        Some(Command::Serve(args)) => serve::run(args),
        Some(Command::Topics(args)) => tools::topics::run(args),
        Some(Command::ConsoleProducer(args)) => tools::console_producer::run(args),
        Some(Command::ConsoleConsumer(args)) => tools::console_consumer::run(args),
        Some(Command::ConsumerGroups(args)) => tools::consumer_groups::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice: {e:#}");
            ExitCode::FAILURE
        }
    }
}
