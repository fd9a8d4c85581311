//! Per-shard counters and the Prometheus text endpoint (`metrics.listener`, off by
//! default).
//!
//! Every shard keeps its own [`ShardMetrics`] in plain `Cell`s: the data path never
//! touches an atomic or another core's memory. Counted per shard: requests and their
//! latency per API (a Prometheus histogram), request and response bytes, connections.
//! Shard 0 serves `GET /metrics` on the configured address: it gathers a
//! [`MetricsSnapshot`] from every shard with `Shard::run_on` (each shard also reports
//! its partitions and their log sizes) and renders the text exposition format.
//!
//! Latency is measured from when a request frame has been cut to when its response is
//! ready (a parked Fetch counts its wait, as Kafka's `TotalTimeMs` does); response bytes
//! are counted when a response is produced.

use std::cell::Cell;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::future;
use kafka_protocol::messages::ApiKey;

use sluice_core::latency::{LatencyHistogram, LatencySnapshot, LATENCY_BOUNDS_US};
use sluice_rt::exec::{spawn, spawn_detached, Task};
use sluice_rt::net::{AsyncReadExt, AsyncWriteExt, TcpListener, TcpStream};
use sluice_rt::sync::Receiver;

use crate::api::{dispatch, DispatchError};
use crate::encode::ResponseFrame;
use crate::shard::Shard;

/// API keys below this are counted (Kafka's keys are below 100).
const API_SLOTS: usize = 128;
/// Largest HTTP request head the endpoint reads before giving up on a client.
const MAX_HTTP_REQUEST_BYTES: usize = 8 * 1024;
/// How long the endpoint waits for a client's request head.
const HTTP_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Counters of one shard. Lives on that shard only (not `Send`); read by others only
/// through a [`MetricsSnapshot`] taken on the shard.
pub struct ShardMetrics {
    /// Request latency per API key.
    apis: Box<[LatencyHistogram]>,
    bytes_in: Cell<u64>,
    bytes_out: Cell<u64>,
    connections_accepted: Cell<u64>,
    connections_open: Cell<u64>,
}

impl Default for ShardMetrics {
    fn default() -> Self {
        ShardMetrics {
            apis: (0..API_SLOTS)
                .map(|_| LatencyHistogram::default())
                .collect(),
            bytes_in: Cell::new(0),
            bytes_out: Cell::new(0),
            connections_accepted: Cell::new(0),
            connections_open: Cell::new(0),
        }
    }
}

fn add(cell: &Cell<u64>, n: u64) {
    cell.set(cell.get().wrapping_add(n));
}

impl ShardMetrics {
    pub fn connection_opened(&self) {
        add(&self.connections_accepted, 1);
        add(&self.connections_open, 1);
    }

    pub fn connection_closed(&self) {
        let open = self.connections_open.get();
        debug_assert!(open > 0, "more connections closed than opened");
        self.connections_open.set(open.saturating_sub(1));
    }

    /// Counts one request of `api_key` (raw, from the frame) that took `latency`.
    pub fn request_done(
        &self,
        api_key: i16,
        latency: Duration,
        request_bytes: u64,
        response_bytes: u64,
    ) {
        add(&self.bytes_in, request_bytes);
        add(&self.bytes_out, response_bytes);
        if let Some(api) = usize::try_from(api_key).ok().and_then(|k| self.apis.get(k)) {
            api.record(latency);
        }
    }

    /// A copy of these counters plus the shard's partitions, to send to shard 0.
    pub fn snapshot(&self, shard: &Shard) -> MetricsSnapshot {
        let apis = self
            .apis
            .iter()
            .enumerate()
            .filter(|(_, api)| api.count() > 0)
            .map(|(key, api)| ApiSnapshot {
                key: key as i16,
                latency: api.snapshot(),
            })
            .collect();
        let mut partitions: Vec<PartitionSnapshot> = shard
            .logs()
            .into_iter()
            .map(|(tp, log)| PartitionSnapshot {
                topic: tp.topic.to_string(),
                partition: tp.partition,
                size_bytes: log.size_bytes(),
                log_end_offset: log.log_end_offset(),
                high_watermark: log.high_watermark(),
            })
            .collect();
        partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        MetricsSnapshot {
            shard: shard.id,
            apis,
            bytes_in: self.bytes_in.get(),
            bytes_out: self.bytes_out.get(),
            connections_accepted: self.connections_accepted.get(),
            connections_open: self.connections_open.get(),
            partitions,
            cache: sluice_log::ReadCache::current().stats(),
            log_io: sluice_log::LogIoStats::current(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiSnapshot {
    pub key: i16,
    /// Its requests' latency (the count is the number of requests).
    pub latency: LatencySnapshot,
}

#[derive(Debug, Clone)]
pub struct PartitionSnapshot {
    pub topic: String,
    pub partition: i32,
    pub size_bytes: u64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
}

/// One shard's counters at a moment; `Send`, gathered on shard 0.
#[derive(Debug, Clone)]
pub struct MetricsSnapshot {
    pub shard: usize,
    pub apis: Vec<ApiSnapshot>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub connections_accepted: u64,
    pub connections_open: u64,
    pub partitions: Vec<PartitionSnapshot>,
    /// The shard's read cache (`log.cache.max.bytes`).
    pub cache: sluice_log::CacheStats,
    /// The shard's segment write and fdatasync latencies.
    pub log_io: sluice_log::LogIoStats,
}

/// Dispatches one request frame, counting it on this shard. What `conn` spawns per frame.
pub async fn observed_dispatch(
    shard: Rc<Shard>,
    peer: SocketAddr,
    frame: Bytes,
) -> Result<Option<ResponseFrame>, DispatchError> {
    let started = Instant::now();
    let api_key = match frame.get(..2) {
        Some(b) => i16::from_be_bytes([b[0], b[1]]),
        None => -1,
    };
    // The 4-byte size prefix is part of what crossed the wire.
    let request_bytes = frame.len() as u64 + 4;
    let result = dispatch(shard.clone(), peer, frame).await;
    let response_bytes = match &result {
        Ok(Some(response)) => response.byte_len() as u64,
        _ => 0,
    };
    shard
        .metrics
        .request_done(api_key, started.elapsed(), request_bytes, response_bytes);
    result
}

/// The `_bucket` (cumulative), `_sum` and `_count` rows of one histogram.
fn histogram_rows(out: &mut String, name: &str, labels: &str, h: &LatencySnapshot) {
    let mut cumulative = 0u64;
    for (i, count) in h.buckets.iter().enumerate() {
        cumulative += count;
        let le = match LATENCY_BOUNDS_US.get(i) {
            Some(us) => format!("{}", *us as f64 / 1e6),
            None => "+Inf".to_owned(),
        };
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
    }
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
}

fn api_name(key: i16) -> String {
    match ApiKey::try_from(key) {
        Ok(api) => format!("{api:?}"),
        Err(_) => format!("api_{key}"),
    }
}

/// A per-shard metric family: name, type, help, value.
type ShardFamily = (
    &'static str,
    &'static str,
    &'static str,
    fn(&MetricsSnapshot) -> u64,
);
/// A per-shard histogram family: name, help, value.
type HistogramFamily = (
    &'static str,
    &'static str,
    fn(&MetricsSnapshot) -> &LatencySnapshot,
);
/// A per-partition gauge family: name, help, value.
type PartitionFamily = (&'static str, &'static str, fn(&PartitionSnapshot) -> i64);

/// Renders every shard's snapshot in Prometheus' text exposition format (0.0.4).
pub fn render(snapshots: &[MetricsSnapshot]) -> String {
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, rows: &mut dyn FnMut(&mut String)| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        rows(&mut out);
    };
    family(
        "sluice_requests_total",
        "counter",
        "Requests handled, per shard and API.",
        &mut |out| {
            for s in snapshots {
                for a in &s.apis {
                    let _ = writeln!(
                        out,
                        "sluice_requests_total{{shard=\"{}\",api=\"{}\"}} {}",
                        s.shard,
                        api_name(a.key),
                        a.latency.count
                    );
                }
            }
        },
    );
    family(
        "sluice_request_latency_seconds",
        "histogram",
        "Time from a request frame arriving to its response being ready.",
        &mut |out| {
            for s in snapshots {
                for a in &s.apis {
                    let labels = format!("shard=\"{}\",api=\"{}\"", s.shard, api_name(a.key));
                    histogram_rows(out, "sluice_request_latency_seconds", &labels, &a.latency);
                }
            }
        },
    );
    let log_io: [HistogramFamily; 2] = [
        (
            "sluice_log_write_latency_seconds",
            "Segment data writes, from submission to completion (the device's latency as the shard sees it).",
            |s| &s.log_io.writes,
        ),
        (
            "sluice_log_sync_latency_seconds",
            "fdatasyncs of segment files (flush policy, roll, flush, close).",
            |s| &s.log_io.syncs,
        ),
    ];
    for (name, help, value) in log_io {
        family(name, "histogram", help, &mut |out| {
            for s in snapshots {
                histogram_rows(out, name, &format!("shard=\"{}\"", s.shard), value(s));
            }
        });
    }
    let per_shard: [ShardFamily; 12] = [
        (
            "sluice_bytes_in_total",
            "counter",
            "Request bytes received.",
            |s| s.bytes_in,
        ),
        (
            "sluice_bytes_out_total",
            "counter",
            "Response bytes produced.",
            |s| s.bytes_out,
        ),
        (
            "sluice_connections_accepted_total",
            "counter",
            "Client connections accepted.",
            |s| s.connections_accepted,
        ),
        (
            "sluice_connections_open",
            "gauge",
            "Client connections open.",
            |s| s.connections_open,
        ),
        ("sluice_partitions", "gauge", "Partitions owned.", |s| {
            s.partitions.len() as u64
        }),
        (
            "sluice_read_cache_hits_total",
            "counter",
            "Log reads answered from the shard's read cache.",
            |s| s.cache.hits,
        ),
        (
            "sluice_read_cache_misses_total",
            "counter",
            "Log reads that went to the disk.",
            |s| s.cache.misses,
        ),
        (
            "sluice_read_cache_evicted_bytes_total",
            "counter",
            "Bytes evicted from the read cache to stay within log.cache.max.bytes.",
            |s| s.cache.evicted_bytes,
        ),
        (
            "sluice_read_cache_bytes",
            "gauge",
            "Bytes held by the shard's read cache's entries.",
            |s| s.cache.used_bytes as u64,
        ),
        (
            "sluice_read_cache_reserved_bytes",
            "gauge",
            "Room held by the read cache's chunks being written, counted against log.cache.max.bytes.",
            |s| s.cache.reserved_bytes as u64,
        ),
        (
            "sluice_read_cache_chunks_allocated_total",
            "counter",
            "Chunks allocated for written data by the read cache.",
            |s| s.cache.chunks_allocated,
        ),
        (
            "sluice_read_cache_chunks_reused_total",
            "counter",
            "Retired read-cache chunks that nothing read any more, written again instead of allocating.",
            |s| s.cache.chunks_reused,
        ),
    ];
    for (name, kind, help, value) in per_shard {
        family(name, kind, help, &mut |out| {
            for s in snapshots {
                let _ = writeln!(out, "{name}{{shard=\"{}\"}} {}", s.shard, value(s));
            }
        });
    }
    let per_partition: [PartitionFamily; 3] = [
        (
            "sluice_log_size_bytes",
            "Bytes in the partition's segments.",
            |p| i64::try_from(p.size_bytes).unwrap_or(i64::MAX),
        ),
        (
            "sluice_log_end_offset",
            "Next offset to be assigned.",
            |p| p.log_end_offset,
        ),
        ("sluice_high_watermark", "Last committed offset + 1.", |p| {
            p.high_watermark
        }),
    ];
    for (name, help, value) in per_partition {
        family(name, "gauge", help, &mut |out| {
            for s in snapshots {
                for p in &s.partitions {
                    let _ = writeln!(
                        out,
                        "{name}{{shard=\"{}\",topic=\"{}\",partition=\"{}\"}} {}",
                        s.shard,
                        p.topic,
                        p.partition,
                        value(p)
                    );
                }
            }
        });
    }
    out
}

/// Binds `metrics.listener` and serves it until shutdown, on shard 0 only; `Ok(None)`
/// on other shards or when the endpoint is off.
pub fn start_endpoint(
    shard: &Rc<Shard>,
    shutdown: Receiver<()>,
) -> Result<Option<Task<()>>, String> {
    let Some(address) = shard.config.metrics_listener.clone() else {
        return Ok(None);
    };
    if shard.id != 0 {
        return Ok(None);
    }
    let listener = TcpListener::bind(address.as_str())
        .map_err(|e| format!("cannot listen on metrics.listener {address}: {e}"))?;
    let shard = shard.clone();
    Ok(Some(spawn(async move {
        loop {
            let accepted = future::or(async { Some(listener.accept().await) }, async {
                let _ = shutdown.recv().await;
                None
            })
            .await;
            match accepted {
                None => return,
                Some(Ok(stream)) => spawn_detached(serve_http(shard.clone(), stream)),
                Some(Err(e)) => tracing::warn!(error = %e, "metrics accept failed"),
            }
        }
    })))
}

/// Answers one HTTP request on `stream` and closes it.
async fn serve_http(shard: Rc<Shard>, mut stream: TcpStream) {
    let head = sluice_rt::time::timeout(HTTP_READ_TIMEOUT, read_request_head(&mut stream)).await;
    let Some(Some(head)) = head else {
        return;
    };
    let request_line = head.lines().next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let path = path.split('?').next().unwrap_or_default();
    let (status, body) = if method != "GET" {
        ("405 Method Not Allowed", String::from("only GET\n"))
    } else if path != "/metrics" {
        ("404 Not Found", String::from("see /metrics\n"))
    } else {
        ("200 OK", render(&gather(&shard).await))
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.flush().await;
    let _ = stream.close().await;
}

/// Reads up to the blank line ending an HTTP request head; `None` if the client went
/// away or sent more than `MAX_HTTP_REQUEST_BYTES` without one.
async fn read_request_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await.ok()?;
        if n == 0 || head.len() + n > MAX_HTTP_REQUEST_BYTES {
            return None;
        }
        head.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(head).ok()
}

/// Every shard's snapshot, in shard order; a shard that is gone is left out.
async fn gather(shard: &Rc<Shard>) -> Vec<MetricsSnapshot> {
    let mut snapshots = Vec::with_capacity(shard.count);
    for target in 0..shard.count {
        if let Ok(s) = shard
            .run_on(target, |s: Rc<Shard>| async move { s.metrics.snapshot(&s) })
            .await
        {
            snapshots.push(s);
        }
    }
    snapshots
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::latency::BUCKETS;

    #[test]
    fn latency_lands_in_the_first_bucket_at_or_above_it() {
        let m = ShardMetrics::default();
        m.request_done(0, Duration::from_micros(100), 10, 20);
        m.request_done(0, Duration::from_micros(101), 10, 20);
        m.request_done(0, Duration::from_secs(60), 10, 0);
        m.request_done(-5, Duration::from_micros(1), 3, 0); // unknown key: bytes only
        let api = m.apis[0].snapshot();
        assert_eq!(api.count, 3);
        assert_eq!(api.buckets[0], 1);
        assert_eq!(api.buckets[1], 1);
        assert_eq!(api.buckets[BUCKETS - 1], 1);
        assert_eq!(m.bytes_in.get(), 33);
        assert_eq!(m.bytes_out.get(), 40);
    }

    #[test]
    fn render_is_cumulative_and_labelled() {
        let mut buckets = [0u64; BUCKETS];
        buckets[0] = 2;
        buckets[3] = 1;
        let snapshot = MetricsSnapshot {
            shard: 1,
            apis: vec![ApiSnapshot {
                key: 0,
                latency: LatencySnapshot {
                    count: 3,
                    sum_us: 1_500,
                    buckets,
                },
            }],
            bytes_in: 7,
            bytes_out: 9,
            connections_accepted: 2,
            connections_open: 1,
            partitions: vec![PartitionSnapshot {
                topic: "t".into(),
                partition: 4,
                size_bytes: 4096,
                log_end_offset: 10,
                high_watermark: 10,
            }],
            cache: sluice_log::CacheStats {
                hits: 5,
                misses: 2,
                inserted_bytes: 100,
                evicted_bytes: 30,
                used_bytes: 70,
                reserved_bytes: 20,
                entries: 1,
                chunks_allocated: 4,
                chunks_reused: 9,
            },
            log_io: sluice_log::LogIoStats {
                writes: LatencySnapshot {
                    count: 4,
                    sum_us: 2_000,
                    buckets: std::array::from_fn(|i| [1, 3].get(i).copied().unwrap_or(0)),
                },
                syncs: LatencySnapshot::default(),
            },
        };
        let text = render(&[snapshot]);
        assert!(text.contains("sluice_requests_total{shard=\"1\",api=\"Produce\"} 3\n"));
        assert!(text.contains(
            "sluice_request_latency_seconds_bucket{shard=\"1\",api=\"Produce\",le=\"0.001\"} 3\n"
        ));
        assert!(text.contains(
            "sluice_request_latency_seconds_bucket{shard=\"1\",api=\"Produce\",le=\"+Inf\"} 3\n"
        ));
        assert!(text
            .contains("sluice_request_latency_seconds_sum{shard=\"1\",api=\"Produce\"} 0.0015\n"));
        assert!(text.contains("sluice_bytes_in_total{shard=\"1\"} 7\n"));
        assert!(
            text.contains("sluice_log_write_latency_seconds_bucket{shard=\"1\",le=\"0.0001\"} 1\n")
        );
        assert!(text
            .contains("sluice_log_write_latency_seconds_bucket{shard=\"1\",le=\"0.00025\"} 4\n"));
        assert!(text.contains("sluice_log_write_latency_seconds_count{shard=\"1\"} 4\n"));
        assert!(text.contains("sluice_log_write_latency_seconds_sum{shard=\"1\"} 0.002\n"));
        assert!(text.contains("sluice_log_sync_latency_seconds_count{shard=\"1\"} 0\n"));
        assert!(text.contains("# TYPE sluice_log_sync_latency_seconds histogram\n"));
        assert!(
            text.contains("sluice_log_size_bytes{shard=\"1\",topic=\"t\",partition=\"4\"} 4096\n")
        );
        assert!(text.contains("sluice_read_cache_hits_total{shard=\"1\"} 5\n"));
        assert!(text.contains("sluice_read_cache_misses_total{shard=\"1\"} 2\n"));
        assert!(text.contains("sluice_read_cache_evicted_bytes_total{shard=\"1\"} 30\n"));
        assert!(text.contains("sluice_read_cache_bytes{shard=\"1\"} 70\n"));
        assert!(text.contains("sluice_read_cache_reserved_bytes{shard=\"1\"} 20\n"));
        assert!(text.contains("sluice_read_cache_chunks_allocated_total{shard=\"1\"} 4\n"));
        assert!(text.contains("sluice_read_cache_chunks_reused_total{shard=\"1\"} 9\n"));
        assert_eq!(text.matches("# TYPE").count(), 19);
    }
}
