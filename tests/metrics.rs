//! The Prometheus endpoint (`metrics.listener`, off unless configured): shard 0
//! answers `GET /metrics` with every shard's counters, and they move with traffic;
//! connections are placed on the shards in turn.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

use anyhow::{ensure, Context, Result};
use kafka_protocol::records::Compression;

use common::{encode_batch, record, Broker, REQUEST_TIMEOUT};

/// A port free a moment ago, for `metrics.listener` (the broker reports only its Kafka
/// port, so the test picks this one).
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Sends one HTTP GET and returns (status line, body).
fn http_get(addr: SocketAddr, path: &str) -> Result<(String, String)> {
    let mut stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("no end of HTTP head")?;
    let status = head.lines().next().unwrap_or_default().to_owned();
    Ok((status, body.to_owned()))
}

/// Sums every sample of `name` whose labels contain all of `labels`.
fn sum(body: &str, name: &str, labels: &[&str]) -> f64 {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && labels.iter().all(|want| rest.contains(want)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}

fn scrape(addr: SocketAddr) -> Result<String> {
    let (status, body) = http_get(addr, "/metrics")?;
    ensure!(status.contains("200"), "GET /metrics: {status}");
    Ok(body)
}

/// A broker in `dir` with its metrics endpoint on a free port; returns the endpoint's
/// address too.
fn start_with_metrics(dir: &std::path::Path) -> Result<(Broker, SocketAddr)> {
    let listener = format!("127.0.0.1:{}", free_port()?);
    let broker = Broker::start(dir, &[("metrics.listener", &listener)])?;
    Ok((broker, listener.parse()?))
}

#[test]
fn metrics_endpoint_counts_requests_bytes_and_log_sizes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (broker, metrics_addr) = start_with_metrics(dir.path())?;

    let (status, _) = http_get(metrics_addr, "/nothing")?;
    ensure!(status.contains("404"), "unexpected status {status}");

    let before = scrape(metrics_addr)?;
    ensure!(
        sum(&before, "sluice_requests_total", &["api=\"Produce\""]) == 0.0,
        "no Produce yet:\n{before}"
    );
    // Both shards report, even with no traffic.
    ensure!(
        before.contains("sluice_bytes_in_total{shard=\"0\"}"),
        "{before}"
    );
    ensure!(
        before.contains("sluice_bytes_in_total{shard=\"1\"}"),
        "{before}"
    );

    let mut client = broker.client()?;
    client.create_topic("metered", 4)?;
    let value = vec![b'x'; 1000];
    let batch = encode_batch(&[record(None, &value, 0)], Compression::None)?;
    for partition in 0..4 {
        for _ in 0..3 {
            client.produce_ok("metered", partition, batch.clone())?;
        }
    }

    let after = scrape(metrics_addr)?;
    ensure!(
        sum(&after, "sluice_requests_total", &["api=\"Produce\""]) == 12.0,
        "12 Produce requests:\n{after}"
    );
    ensure!(
        sum(
            &after,
            "sluice_request_latency_seconds_count",
            &["api=\"Produce\""]
        ) == 12.0,
        "{after}"
    );
    ensure!(
        sum(
            &after,
            "sluice_request_latency_seconds_bucket",
            &["api=\"Produce\"", "le=\"+Inf\""]
        ) == 12.0,
        "{after}"
    );
    // Each acknowledged produce waited for its own segment write.
    let writes = sum(&after, "sluice_log_write_latency_seconds_count", &[]);
    ensure!(writes >= 12.0, "at least 12 segment writes:\n{after}");
    ensure!(
        sum(
            &after,
            "sluice_log_write_latency_seconds_bucket",
            &["le=\"+Inf\""]
        ) == writes,
        "{after}"
    );
    ensure!(
        after.contains("# TYPE sluice_log_sync_latency_seconds histogram"),
        "{after}"
    );
    let bytes_in = sum(&after, "sluice_bytes_in_total", &[]);
    ensure!(
        bytes_in >= 12.0 * value.len() as f64,
        "bytes in {bytes_in} below what was produced"
    );
    ensure!(
        sum(&after, "sluice_bytes_out_total", &[]) > sum(&before, "sluice_bytes_out_total", &[]),
        "{after}"
    );
    ensure!(
        sum(&after, "sluice_connections_open", &[]) >= 1.0,
        "{after}"
    );

    // Every partition is reported once, by its owner, with its data on disk.
    for partition in 0..4 {
        let label = format!("partition=\"{partition}\"");
        let size = sum(
            &after,
            "sluice_log_size_bytes",
            &["topic=\"metered\"", &label],
        );
        ensure!(
            size >= 3.0 * value.len() as f64,
            "partition {partition}: {size} bytes"
        );
        ensure!(
            sum(
                &after,
                "sluice_log_end_offset",
                &["topic=\"metered\"", &label]
            ) == 3.0,
            "{after}"
        );
    }
    ensure!(sum(&after, "sluice_partitions", &[]) >= 4.0, "{after}");
    // The written records sit in the shards' read caches, and reading them back is
    // answered from there.
    ensure!(
        sum(&after, "sluice_read_cache_bytes", &[]) >= 12.0 * value.len() as f64,
        "{after}"
    );
    for partition in 0..4 {
        let (error, _, records) = client.fetch("metered", partition, 0, 0)?;
        ensure!(
            error == 0 && !records.is_empty(),
            "fetch {partition}: error {error}"
        );
    }
    let read = scrape(metrics_addr)?;
    ensure!(
        sum(&read, "sluice_read_cache_hits_total", &[])
            >= sum(&after, "sluice_read_cache_hits_total", &[]) + 4.0,
        "{read}"
    );
    Ok(())
}

/// Connections are placed on the shards in turn, as Kafka's acceptor hands them to its
/// network threads, whichever shard the kernel's `SO_REUSEPORT` hash gave them to.
#[test]
fn connections_are_placed_on_the_shards_in_turn() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (broker, metrics_addr) = start_with_metrics(dir.path())?;
    let mut clients = Vec::new();
    for opened in 1..=10 {
        // Each answers its ApiVersions, so it is being served by then.
        clients.push(broker.client()?);
        let body = scrape(metrics_addr)?;
        let per_shard: Vec<f64> = (0..2)
            .map(|s| {
                sum(
                    &body,
                    "sluice_connections_open",
                    &[&format!("shard=\"{s}\"")],
                )
            })
            .collect();
        ensure!(
            per_shard.iter().sum::<f64>() == opened as f64,
            "{opened} connections open: {per_shard:?}"
        );
        ensure!(
            (per_shard[0] - per_shard[1]).abs() <= 1.0,
            "{opened} connections: {per_shard:?} per shard"
        );
    }
    // Every placed connection is served: each answers on its shard.
    for client in &mut clients {
        client.metadata(None)?;
    }
    Ok(())
}
