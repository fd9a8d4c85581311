//! How long the shard's segment writes and fdatasyncs take: per-shard (thread-local)
//! latency histograms, reported by the broker's metrics endpoint. They tell a slow
//! device (or a host that stalls it) from a slow broker.

use std::time::Duration;

use sluice_core::latency::{LatencyHistogram, LatencySnapshot};

#[derive(Default)]
struct ShardIo {
    writes: LatencyHistogram,
    syncs: LatencyHistogram,
}

thread_local! {
    /// The shard's histograms (a shard is one thread).
    static SHARD_IO: ShardIo = ShardIo::default();
}

/// The current shard's log I/O latencies so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogIoStats {
    /// Segment data writes, from submission to completion.
    pub writes: LatencySnapshot,
    /// fdatasyncs of segment files (flush policy, roll, flush, close).
    pub syncs: LatencySnapshot,
}

impl LogIoStats {
    /// This shard's figures.
    pub fn current() -> LogIoStats {
        SHARD_IO.with(|io| LogIoStats {
            writes: io.writes.snapshot(),
            syncs: io.syncs.snapshot(),
        })
    }
}

pub(crate) fn record_write(latency: Duration) {
    SHARD_IO.with(|io| io.writes.record(latency));
}

pub(crate) fn record_sync(latency: Duration) {
    SHARD_IO.with(|io| io.syncs.record(latency));
}
