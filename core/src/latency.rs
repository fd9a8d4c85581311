//! A latency histogram for one thread: Prometheus-style fixed buckets in `Cell`s, so
//! recording touches no atomic and no other core's memory. Request latency per API
//! (the broker's metrics) and the log's write and sync latency use it.

use std::cell::Cell;
use std::time::Duration;

/// Upper bounds of the buckets, microseconds (Prometheus `le` in seconds).
pub const LATENCY_BOUNDS_US: [u64; 16] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];
/// One more bucket for everything above the last bound (`+Inf`).
pub const BUCKETS: usize = LATENCY_BOUNDS_US.len() + 1;

/// Counts, a sum and buckets of observed latencies. Not `Sync`: one per thread.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    count: Cell<u64>,
    sum_us: Cell<u64>,
    buckets: [Cell<u64>; BUCKETS],
}

fn add(cell: &Cell<u64>, n: u64) {
    cell.set(cell.get().wrapping_add(n));
}

impl LatencyHistogram {
    /// Counts one observation of `latency` in the first bucket whose bound is at or
    /// above it.
    pub fn record(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        add(&self.count, 1);
        add(&self.sum_us, us);
        add(
            &self.buckets[LATENCY_BOUNDS_US.partition_point(|bound| *bound < us)],
            1,
        );
    }

    pub fn count(&self) -> u64 {
        self.count.get()
    }

    /// The counts as they are, to send to another thread.
    pub fn snapshot(&self) -> LatencySnapshot {
        LatencySnapshot {
            count: self.count.get(),
            sum_us: self.sum_us.get(),
            buckets: std::array::from_fn(|i| self.buckets[i].get()),
        }
    }
}

/// A [`LatencyHistogram`]'s counts at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LatencySnapshot {
    pub count: u64,
    pub sum_us: u64,
    /// Per bucket (not cumulative), the last one `+Inf`.
    pub buckets: [u64; BUCKETS],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_lands_in_the_first_bucket_at_or_above_it() {
        let h = LatencyHistogram::default();
        h.record(Duration::from_micros(100));
        h.record(Duration::from_micros(101));
        h.record(Duration::from_secs(11));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.sum_us, 100 + 101 + 11_000_000);
        assert_eq!(s.buckets[0], 1);
        assert_eq!(s.buckets[1], 1);
        assert_eq!(s.buckets[BUCKETS - 1], 1);
        assert_eq!(s.buckets.iter().sum::<u64>(), 3);
    }
}
