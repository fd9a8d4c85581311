//! `sluice-perf`: a load generator that speaks plain Kafka, so it measures Sluice and
//! any other Kafka-compatible broker the same way.
//!
//! - `produce`: pipelined Produce requests of batches built once ([`produce`]).
//! - `consume`: Fetch loops counting records from batch headers ([`consume`]).
//! - `e2e`: both at once; the producer stamps each batch's first record with its
//!   intended send time and the consumer records produce-to-consume latency.
//! - `sink`: produce into a built-in discard server ([`sink`]): the tool's own ceiling,
//!   which `produce` and `e2e` also measure first and print beside their results.
//! - `hiccup`: how late a thread that sleeps 1 ms at a time wakes ([`hiccup`]): the
//!   machine's own stalls, the reference a latency figure is read against.
//!
//! With `--rate` every record has an intended send time on a fixed schedule and latency
//! is measured from it (no coordinated omission). A progress line goes to stderr every
//! second; the summary (throughput, p50/p90/p99/p99.9/p99.99/max) to stdout; `--hgrm`
//! and `--json` write HdrHistogram's percentile distribution and a JSON summary.
//!
//! Plain std threads and blocking sockets: nothing here shares the broker's runtime.

mod client;
mod consume;
mod hiccup;
mod produce;
mod sink;
mod stats;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use kafka_protocol::records::Compression;

use client::{Client, TopicLayout};
use consume::{FetchSpec, Position, Target};
use produce::{ProduceSpec, Producer, Schedule};
use stats::{Clock, Progress, Stats, Summary};

#[derive(Parser)]
#[command(name = "sluice-perf", version, about = "Kafka-protocol load generator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Produce records and report throughput and acknowledgement latency.
    Produce(PerfArgs),
    /// Consume a topic's backlog (or tail it for --duration-s) and report throughput.
    Consume(PerfArgs),
    /// Produce and consume at once; report produce-to-consume latency.
    E2e(PerfArgs),
    /// Produce into a built-in discard server: the tool's own ceiling.
    Sink(PerfArgs),
    /// How late a thread that sleeps a fixed interval wakes: the machine's own stalls,
    /// to run beside a benchmark (no broker needed).
    Hiccup(HiccupArgs),
}

#[derive(Args, Clone)]
struct HiccupArgs {
    /// Run for this long, seconds.
    #[arg(long, default_value_t = 10.0)]
    duration_s: f64,
    /// Sleep interval, microseconds.
    #[arg(long, default_value_t = 1000)]
    interval_us: u64,
    /// Write the lateness percentile distribution (HdrHistogram .hgrm text) here.
    #[arg(long)]
    hgrm: Option<PathBuf>,
    /// Write a JSON summary here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args, Clone)]
struct PerfArgs {
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap_server: String,
    #[arg(long, default_value = "sluice-perf")]
    topic: String,
    /// Value size of each record, bytes.
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// Records to produce (or consume) in total.
    #[arg(long)]
    records: Option<u64>,
    /// Run for this long (default 10 s when --records is not given; consume defaults
    /// to reading the backlog present at start).
    #[arg(long)]
    duration_s: Option<f64>,
    /// Batch size in bytes of record values: records per batch = batch-size / record-size.
    #[arg(long, default_value_t = 16384)]
    batch_size: usize,
    /// At a --rate, a batch is sent when full or this long after its first record
    /// (fractions allowed: 0.2 is 200 µs). This wait counts in the measured latency.
    #[arg(long, default_value_t = 5.0)]
    linger_ms: f64,
    /// 0, 1 or -1 (all).
    #[arg(long, default_value_t = 1, allow_hyphen_values = true)]
    acks: i16,
    #[arg(long, value_enum, default_value = "none")]
    compression: Codec,
    /// Partitions of the topic (created with this many when missing).
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// Producer instances; each opens one connection per leader broker.
    #[arg(long, default_value_t = 1)]
    producers: usize,
    /// Consumer connections; partitions are split among them.
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// Batches per Produce request, one per partition (0: one for every partition the
    /// connection's broker leads, as a Kafka producer under load sends).
    #[arg(long, default_value_t = 0)]
    partitions_per_request: usize,
    /// Produce requests in flight per connection.
    #[arg(long, default_value_t = 5)]
    max_in_flight: usize,
    /// Target rate, records/s over all producers; latency counts from intended times.
    #[arg(long)]
    rate: Option<f64>,
    /// Leave records due in the first this many seconds of the run out of the latency
    /// figures (they are still sent, acknowledged and counted in the throughput), so
    /// the figures describe the steady state and not the topic's first appends.
    #[arg(long, default_value_t = 0.0)]
    warmup_s: f64,
    /// Write the latency percentile distribution (HdrHistogram .hgrm text) here.
    #[arg(long)]
    hgrm: Option<PathBuf>,
    /// Write a JSON summary here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Skip measuring the tool's own ceiling into the discard sink first.
    #[arg(long)]
    no_sink_check: bool,
    /// How long the sink check runs, seconds.
    #[arg(long, default_value_t = 2.0)]
    sink_seconds: f64,
    #[arg(long, default_value_t = 52_428_800)]
    fetch_max_bytes: i32,
    #[arg(long, default_value_t = 1_048_576)]
    partition_max_bytes: i32,
    #[arg(long, default_value_t = 500)]
    fetch_max_wait_ms: i32,
    #[arg(long, default_value_t = 30_000)]
    request_timeout_ms: i32,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Codec {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    fn compression(self) -> Compression {
        match self {
            Codec::None => Compression::None,
            Codec::Gzip => Compression::Gzip,
            Codec::Snappy => Compression::Snappy,
            Codec::Lz4 => Compression::Lz4,
            Codec::Zstd => Compression::Zstd,
        }
    }
}

/// How long e2e consumers may take, after the producers stop, to read what was acked.
const E2E_DRAIN: Duration = Duration::from_secs(10);
/// Default run length when neither --records nor --duration-s is given.
const DEFAULT_DURATION_S: f64 = 10.0;

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Produce(args) => run_produce(&args),
        Command::Consume(args) => run_consume(&args),
        Command::E2e(args) => run_e2e(&args),
        Command::Sink(args) => {
            let args = PerfArgs {
                sink_seconds: args.duration_s.unwrap_or(args.sink_seconds),
                ..args
            };
            let summary = sink_ceiling(&args)?;
            summary.print();
            write_outputs(&args, &[&summary], None)
        }
        Command::Hiccup(args) => run_hiccup(&args),
    }
}

fn run_hiccup(args: &HiccupArgs) -> Result<()> {
    ensure!(
        args.duration_s > 0.0 && args.duration_s.is_finite(),
        "--duration-s must be positive"
    );
    ensure!(args.interval_us >= 1, "--interval-us must be at least 1");
    let stats = Stats::new("hiccup");
    let progress = Progress::start(vec![stats.clone()], args.quiet);
    let clock = Clock::new();
    let start = Instant::now();
    hiccup::tight_timer_slack();
    let end_ns = clock.now_ns() + (args.duration_s * 1e9) as u64;
    hiccup::run(clock, args.interval_us * 1000, end_ns, &stats);
    progress.stop();
    let summary = Summary::of(&stats, start.elapsed());
    println!(
        "hiccup: {} wake-ups due every {} µs in {:.2} s; lateness ms:{}",
        summary.records,
        args.interval_us,
        summary.elapsed.as_secs_f64(),
        summary.latency_ms_line()
    );
    write_files(args.hgrm.as_ref(), args.json.as_ref(), &summary, || {
        serde_json::json!({
            "settings": { "interval_us": args.interval_us, "duration_s": args.duration_s },
            "results": [summary.to_json()],
        })
    })
}

fn validate(args: &PerfArgs) -> Result<()> {
    ensure!(args.record_size >= 1, "--record-size must be at least 1");
    ensure!(matches!(args.acks, -1..=1), "--acks must be 0, 1 or -1");
    ensure!(args.partitions >= 1, "--partitions must be at least 1");
    ensure!(
        args.producers >= 1 && args.consumers >= 1,
        "need at least one connection"
    );
    if let Some(rate) = args.rate {
        ensure!(rate > 0.0 && rate.is_finite(), "--rate must be positive");
    }
    ensure!(
        args.linger_ms >= 0.0 && args.linger_ms.is_finite(),
        "--linger-ms must be 0 or more"
    );
    ensure!(
        args.warmup_s >= 0.0 && args.warmup_s.is_finite(),
        "--warmup-s must be 0 or more"
    );
    Ok(())
}

fn records_per_batch(args: &PerfArgs) -> usize {
    (args.batch_size / args.record_size).max(1)
}

fn produce_spec(args: &PerfArgs, produce_version: i16, stamp: bool) -> ProduceSpec {
    ProduceSpec {
        topic: args.topic.clone(),
        record_size: args.record_size,
        records_per_batch: records_per_batch(args),
        partitions_per_request: args.partitions_per_request,
        compression: args.compression.compression(),
        acks: args.acks,
        produce_version,
        max_in_flight: args.max_in_flight,
        stamp,
        timeout_ms: args.request_timeout_ms,
    }
}

/// Starts `--producers` instances, each with a connection per leader, splitting the
/// record budget and the rate evenly across connections.
fn start_producers(
    args: &PerfArgs,
    spec: &ProduceSpec,
    layout: &TopicLayout,
    clock: Clock,
    stats: &Arc<Stats>,
    also_measured: &[&Arc<Stats>],
    stop: &Arc<AtomicBool>,
) -> Result<Vec<Producer>> {
    let groups = layout.by_leader();
    let connections = args.producers * groups.len();
    let interval_ns = args
        .rate
        .map(|rate| ((connections as f64 * 1e9 / rate).round() as u64).max(1));
    // Every connection of an instance serves the partitions of one leader.
    let widest = groups.values().map(Vec::len).max().unwrap_or(1);
    let per_request = match spec.partitions_per_request {
        0 => widest,
        n => n.min(widest),
    };
    let full = spec.records_per_batch;
    let (batches_per_request, batch_records) = match interval_ns {
        Some(interval) => {
            let records = produce::records_per_request_at_rate(
                full * per_request,
                interval,
                (args.linger_ms * 1e6) as u64,
            );
            let batches = per_request.min(records);
            (batches, (records / batches).clamp(1, full))
        }
        None => (per_request, full),
    };
    let batch = produce::encode_batch(
        batch_records,
        spec.record_size,
        spec.compression,
        spec.stamp,
    )?;
    let records_each = args
        .records
        .map_or(u64::MAX, |n| n.div_ceil(connections as u64));
    let end_ns = match (args.duration_s, args.records) {
        (Some(s), _) => (s * 1e9) as u64,
        (None, Some(_)) => u64::MAX,
        (None, None) => (DEFAULT_DURATION_S * 1e9) as u64,
    };
    // Connections and frames first; the schedule starts once all are ready.
    let mut ready = Vec::new();
    for _ in 0..args.producers {
        for (addr, partitions) in &groups {
            let frames = partitions
                .chunks(batches_per_request)
                .map(|group| produce::build_frame(spec, group, &batch, batch_records as u64))
                .collect::<Result<Vec<_>>>()?;
            ready.push((Producer::connect(*addr)?, frames));
        }
    }
    let start_ns = clock.now_ns();
    let measure_from = start_ns + (args.warmup_s * 1e9) as u64;
    for measured in std::iter::once(stats).chain(also_measured.iter().copied()) {
        measured.measure_from(measure_from);
    }
    let schedule = Schedule {
        records: records_each,
        start_ns,
        end_ns: start_ns.saturating_add(end_ns),
        interval_ns,
    };
    ready
        .into_iter()
        .map(|(stream, frames)| {
            Producer::start(
                stream,
                spec,
                frames,
                schedule,
                clock,
                stats.clone(),
                stop.clone(),
            )
        })
        .collect()
}

/// Produces into the discard sink with the run's settings (no rate): the records/s the
/// tool itself can push on this machine.
fn sink_ceiling(args: &PerfArgs) -> Result<Summary> {
    validate(args)?;
    let acks = if args.acks == 0 { 0 } else { 1 };
    let version = 9;
    let addr = sink::start(version, acks)?;
    let layout = TopicLayout {
        leaders: vec![addr; args.partitions as usize],
    };
    let sink_args = PerfArgs {
        rate: None,
        records: None,
        acks,
        warmup_s: 0.0,
        duration_s: Some(args.sink_seconds),
        ..args.clone()
    };
    let spec = produce_spec(&sink_args, version, false);
    let clock = Clock::new();
    let stats = Stats::new("sink");
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let producers = start_producers(&sink_args, &spec, &layout, clock, &stats, &[], &stop)?;
    for p in producers {
        p.join()?;
    }
    Ok(Summary::of(&stats, start.elapsed()))
}

fn print_ceiling(ceiling: &Option<Summary>) {
    if let Some(c) = ceiling {
        println!(
            "tool ceiling (discard sink on loopback, same settings, no rate): {:.0} records/s, {:.2} MiB/s",
            c.records_per_s(),
            c.mib_per_s()
        );
    }
}

fn run_produce(args: &PerfArgs) -> Result<()> {
    validate(args)?;
    let ceiling = (!args.no_sink_check)
        .then(|| sink_ceiling(args))
        .transpose()?;
    let mut client = Client::connect(client::resolve(&args.bootstrap_server)?)?;
    let layout = client.ensure_topic(&args.topic, args.partitions)?;
    let spec = produce_spec(args, client.versions.produce, false);
    let clock = Clock::new();
    let stats = Stats::new("produce");
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Progress::start(vec![stats.clone()], args.quiet);
    let start = Instant::now();
    let producers = start_producers(args, &spec, &layout, clock, &stats, &[], &stop)?;
    let mut result = Ok(());
    for p in producers {
        if let Err(e) = p.join() {
            result = Err(e);
        }
    }
    let elapsed = start.elapsed();
    progress.stop();
    result?;
    let summary = Summary::of(&stats, elapsed);
    summary.print();
    print_ceiling(&ceiling);
    write_outputs(args, &[&summary], ceiling.as_ref())
}

fn run_consume(args: &PerfArgs) -> Result<()> {
    validate(args)?;
    let mut client = Client::connect(client::resolve(&args.bootstrap_server)?)?;
    let layout = client
        .layout(&args.topic)?
        .with_context(|| format!("topic {} does not exist", args.topic))?;
    let all: Vec<i32> = (0..layout.leaders.len() as i32).collect();
    let earliest = client.list_offsets(&args.topic, &all, -2)?;
    let latest = client.list_offsets(&args.topic, &all, -1)?;
    // Without --records or --duration-s: read the backlog present now, then stop.
    let bounded = args.records.is_none() && args.duration_s.is_none();
    let positions: BTreeMap<i32, Position> = all
        .iter()
        .map(|p| {
            let position = Position {
                next_offset: earliest.get(p).copied().unwrap_or(0),
                end_offset: bounded.then(|| latest.get(p).copied().unwrap_or(0)),
            };
            (*p, position)
        })
        .collect();
    let backlog: i64 = positions
        .values()
        .map(|p| p.end_offset.unwrap_or(p.next_offset) - p.next_offset)
        .sum();
    if bounded {
        eprintln!("sluice-perf: consuming a backlog of {backlog} records");
    }
    let stats = Stats::new("consume");
    let target = Arc::new(Target {
        records: AtomicU64::new(args.records.unwrap_or(u64::MAX)),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let spec = fetch_spec(args, client.versions.fetch, false);
    let progress = Progress::start(vec![stats.clone()], args.quiet);
    let start = Instant::now();
    let consumers = start_consumers(
        args,
        &spec,
        &layout,
        positions,
        Clock::new(),
        &stats,
        &target,
        &stop,
    )?;
    if let Some(s) = args.duration_s {
        stop_after(&stop, Duration::from_secs_f64(s));
    }
    let result = join_consumers(consumers);
    let elapsed = start.elapsed();
    progress.stop();
    result?;
    let summary = Summary::of(&stats, elapsed);
    summary.print();
    write_outputs(args, &[&summary], None)
}

fn run_e2e(args: &PerfArgs) -> Result<()> {
    validate(args)?;
    ensure!(
        matches!(args.compression, Codec::None),
        "e2e reads a stamp from each batch's first record and needs --compression none"
    );
    ensure!(
        args.record_size >= produce::STAMP_BYTES,
        "e2e needs --record-size of at least {} bytes for its stamp",
        produce::STAMP_BYTES
    );
    let ceiling = (!args.no_sink_check)
        .then(|| sink_ceiling(args))
        .transpose()?;
    let mut client = Client::connect(client::resolve(&args.bootstrap_server)?)?;
    let layout = client.ensure_topic(&args.topic, args.partitions)?;
    let all: Vec<i32> = (0..layout.leaders.len() as i32).collect();
    let latest = client.list_offsets(&args.topic, &all, -1)?;
    let positions: BTreeMap<i32, Position> = all
        .iter()
        .map(|p| {
            let position = Position {
                next_offset: latest.get(p).copied().unwrap_or(0),
                end_offset: None,
            };
            (*p, position)
        })
        .collect();
    let clock = Clock::new();
    let produced = Stats::new("produce");
    let consumed = Stats::new("e2e");
    let target = Arc::new(Target {
        records: AtomicU64::new(u64::MAX),
    });
    let stop_consumers = Arc::new(AtomicBool::new(false));
    let stop_producers = Arc::new(AtomicBool::new(false));
    let fetch = fetch_spec(args, client.versions.fetch, true);
    let consumers = start_consumers(
        args,
        &fetch,
        &layout,
        positions,
        clock,
        &consumed,
        &target,
        &stop_consumers,
    )?;
    let spec = produce_spec(args, client.versions.produce, true);
    let progress = Progress::start(vec![produced.clone(), consumed.clone()], args.quiet);
    let start = Instant::now();
    let producers = start_producers(
        args,
        &spec,
        &layout,
        clock,
        &produced,
        &[&consumed],
        &stop_producers,
    )?;
    let mut result = Ok(());
    for p in producers {
        if let Err(e) = p.join() {
            result = Err(e);
        }
    }
    let produce_elapsed = start.elapsed();
    // Consumers stop once they have read every acknowledged record (or after a grace
    // period, when the broker lost some: that shows as a record count mismatch).
    let acknowledged = produced.records.load(Ordering::Relaxed);
    target.records.store(acknowledged, Ordering::Relaxed);
    // The e2e time ends with the last record consumed, not with the consumers'
    // parked fetches returning empty at their max wait.
    let all_consumed = when_counted(&consumed, acknowledged, E2E_DRAIN);
    stop_after(&stop_consumers, E2E_DRAIN);
    let consumed_result = join_consumers(consumers);
    let elapsed = all_consumed.map_or_else(|| start.elapsed(), |at| at - start);
    progress.stop();
    result?;
    consumed_result?;
    let produce_summary = Summary::of(&produced, produce_elapsed);
    let e2e_summary = Summary::of(&consumed, elapsed);
    produce_summary.print();
    e2e_summary.print();
    if e2e_summary.records < produce_summary.records {
        eprintln!(
            "sluice-perf: consumed {} of {} acknowledged records",
            e2e_summary.records, produce_summary.records
        );
    }
    print_ceiling(&ceiling);
    write_outputs(args, &[&produce_summary, &e2e_summary], ceiling.as_ref())
}

fn fetch_spec(args: &PerfArgs, fetch_version: i16, stamped: bool) -> FetchSpec {
    FetchSpec {
        topic: args.topic.clone(),
        fetch_version,
        max_wait_ms: args.fetch_max_wait_ms,
        max_bytes: args.fetch_max_bytes,
        partition_max_bytes: args.partition_max_bytes,
        stamped,
    }
}

/// Splits partitions over `--consumers` (partition p to consumer p mod n), and each
/// consumer's partitions by leader: one connection per (consumer, leader).
#[allow(clippy::too_many_arguments)]
fn start_consumers(
    args: &PerfArgs,
    spec: &FetchSpec,
    layout: &TopicLayout,
    positions: BTreeMap<i32, Position>,
    clock: Clock,
    stats: &Arc<Stats>,
    target: &Arc<Target>,
    stop: &Arc<AtomicBool>,
) -> Result<Vec<thread::JoinHandle<Result<()>>>> {
    let mut groups: BTreeMap<(usize, std::net::SocketAddr), BTreeMap<i32, Position>> =
        BTreeMap::new();
    for (partition, position) in positions {
        let consumer = partition as usize % args.consumers;
        let addr = layout.leaders[partition as usize];
        groups
            .entry((consumer, addr))
            .or_default()
            .insert(partition, position);
    }
    groups
        .into_iter()
        .map(|((_, addr), positions)| {
            consume::start(
                addr,
                spec.clone(),
                positions,
                clock,
                stats.clone(),
                target.clone(),
                stop.clone(),
            )
        })
        .collect()
}

fn join_consumers(consumers: Vec<thread::JoinHandle<Result<()>>>) -> Result<()> {
    let mut result = Ok(());
    for c in consumers {
        match c.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => result = Err(e),
            Err(_) => bail!("a consumer thread panicked"),
        }
    }
    result
}

/// When `stats` has counted `target` records, polled every half millisecond for up to
/// `limit`; `None` if it has not by then.
fn when_counted(stats: &Stats, target: u64, limit: Duration) -> Option<Instant> {
    let deadline = Instant::now() + limit;
    loop {
        let now = Instant::now();
        if stats.records.load(Ordering::Relaxed) >= target {
            return Some(now);
        }
        if now >= deadline {
            return None;
        }
        thread::sleep(Duration::from_micros(500));
    }
}

/// Sets `stop` after `after` on a helper thread (the run may end sooner).
fn stop_after(stop: &Arc<AtomicBool>, after: Duration) {
    let stop = stop.clone();
    thread::spawn(move || {
        thread::sleep(after);
        stop.store(true, Ordering::Relaxed);
    });
}

/// Writes `--hgrm` (the last summary's latency, which is the one a run is about: the
/// acks of `produce`, produce-to-consume of `e2e`) and `--json` (all summaries).
fn write_outputs(args: &PerfArgs, summaries: &[&Summary], ceiling: Option<&Summary>) -> Result<()> {
    let main = summaries.last().expect("at least one summary");
    write_files(args.hgrm.as_ref(), args.json.as_ref(), main, || {
        serde_json::json!({
            "bootstrap_server": args.bootstrap_server,
            "topic": args.topic,
            "settings": {
                "record_size": args.record_size,
                "records_per_batch": records_per_batch(args),
                "partitions_per_request": args.partitions_per_request,
                "linger_ms": args.linger_ms,
                "acks": args.acks,
                "compression": format!("{:?}", args.compression.compression()),
                "partitions": args.partitions,
                "producers": args.producers,
                "consumers": args.consumers,
                "max_in_flight": args.max_in_flight,
                "rate_records_per_s": args.rate,
                "warmup_s": args.warmup_s,
            },
            "results": summaries.iter().map(|s| s.to_json()).collect::<Vec<_>>(),
            "tool_ceiling": ceiling.map(|c| c.to_json()),
        })
    })
}

/// Writes the `.hgrm` distribution of `main`'s latency to `hgrm`, and to `json` the
/// object `fields` builds with the tool's name and version added.
fn write_files(
    hgrm: Option<&PathBuf>,
    json: Option<&PathBuf>,
    main: &Summary,
    fields: impl FnOnce() -> serde_json::Value,
) -> Result<()> {
    if let Some(path) = hgrm {
        stats::write_file(path, &stats::hgrm(&main.latency_us))?;
    }
    if let Some(path) = json {
        let mut document = fields();
        let object = document
            .as_object_mut()
            .expect("summary fields are an object");
        object.insert("tool".into(), "sluice-perf".into());
        object.insert("version".into(), env!("CARGO_PKG_VERSION").into());
        stats::write_file(path, &(serde_json::to_string_pretty(&document)? + "\n"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn when_counted_is_the_time_the_count_is_reached() {
        let stats = Stats::new("e2e");
        stats.add(5, 500);
        let before = Instant::now();
        let at = when_counted(&stats, 5, Duration::from_secs(10)).expect("already counted");
        assert!(at >= before);
        // Not reached: gives up at the limit.
        assert!(when_counted(&stats, 6, Duration::from_millis(2)).is_none());
        // Reached later, by another thread.
        let counter = stats.clone();
        let adder = thread::spawn(move || counter.add(1, 100));
        assert!(when_counted(&stats, 6, Duration::from_secs(10)).is_some());
        adder.join().unwrap();
    }
}
