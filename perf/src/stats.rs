//! Counters and latency histograms shared by a run's connection threads, the
//! once-a-second progress line, and the final report (`.hgrm` and JSON).
//!
//! Latencies are recorded in microseconds. Connection threads add to atomics and lock
//! the histogram once per acknowledged batch (uncontended but for the progress thread
//! reading once a second).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;

/// Highest latency the histograms hold: one hour, in microseconds.
const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Significant digits of the histograms (HdrHistogram's usual 3).
const SIGNIFICANT_DIGITS: u8 = 3;
const MIB: f64 = 1024.0 * 1024.0;

/// What one workload (produce or consume side of a run) has done so far.
pub struct Stats {
    pub name: &'static str,
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub errors: AtomicU64,
    latency_us: Mutex<Histogram<u64>>,
    /// Records intended before this run-clock time are left out of the latency
    /// histogram (the warm-up).
    measure_from_ns: AtomicU64,
}

impl Stats {
    pub fn new(name: &'static str) -> Arc<Stats> {
        Arc::new(Stats {
            name,
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            latency_us: Mutex::new(new_histogram()),
            measure_from_ns: AtomicU64::new(0),
        })
    }

    pub fn add(&self, records: u64, bytes: u64) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Records the latencies of a batch's records given their intended times.
    /// `first_ns` is the first record's intended time and `interval_ns` the schedule's
    /// spacing (0 when the whole batch was due at once), both on the run's clock.
    pub fn record_batch_latency(&self, now_ns: u64, first_ns: u64, interval_ns: u64, count: u64) {
        let from = self.measure_from_ns.load(Ordering::Relaxed);
        let (first_ns, count) = if first_ns >= from {
            (first_ns, count)
        } else if interval_ns == 0 {
            return;
        } else {
            // Records k < skip were due before `from`.
            let skip = (from - first_ns).div_ceil(interval_ns);
            if skip >= count {
                return;
            }
            (first_ns + skip * interval_ns, count - skip)
        };
        let mut histogram = self.latency_us.lock().expect("stats lock poisoned");
        if interval_ns == 0 {
            let latency_us = now_ns.saturating_sub(first_ns) / 1000;
            histogram.saturating_record_n(latency_us.max(1), count);
            return;
        }
        record_spaced(&mut histogram, now_ns, first_ns, interval_ns, count);
    }

    /// Leaves records intended before `at_ns` (run clock) out of the latencies.
    pub fn measure_from(&self, at_ns: u64) {
        self.measure_from_ns.store(at_ns, Ordering::Relaxed);
    }

    pub fn histogram(&self) -> Histogram<u64> {
        self.latency_us.lock().expect("stats lock poisoned").clone()
    }
}

/// Records the latencies at `now_ns` of `count` records intended at `first_ns`,
/// `first_ns + interval_ns`, ...: one histogram update per distinct microsecond value,
/// not one per record (at 100 B and millions of records/s, a batch's records span
/// tens of microseconds).
fn record_spaced(
    histogram: &mut Histogram<u64>,
    now_ns: u64,
    first_ns: u64,
    interval_ns: u64,
    count: u64,
) {
    let mut k = 0;
    while k < count {
        let age_ns = now_ns.saturating_sub(first_ns + k * interval_ns);
        let latency_us = age_ns / 1000;
        // Records k.. stay in this microsecond while their age is at least
        // latency_us * 1000; the last such record is k + (age - floor) / interval.
        let run = if age_ns == 0 {
            count - k
        } else {
            ((age_ns - latency_us * 1000) / interval_ns + 1).min(count - k)
        };
        histogram.saturating_record_n(latency_us.max(1), run);
        k += run;
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, SIGNIFICANT_DIGITS)
        .expect("static histogram bounds are valid")
}

/// The run's clock: nanoseconds since the run began, monotonic, shared by every thread.
#[derive(Clone, Copy)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            start: Instant::now(),
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// Sleeps until `at_ns` on this clock (returns at once if it is past). Sleeps most of
    /// the way, then spins the last ~50 µs so schedules at high rates stay accurate.
    pub fn sleep_until(&self, at_ns: u64) {
        loop {
            let now = self.now_ns();
            if now >= at_ns {
                return;
            }
            let left = at_ns - now;
            if left > 100_000 {
                thread::sleep(Duration::from_nanos(left - 50_000));
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

/// Prints one progress line per second for each workload until stopped. Quiet runs
/// start no thread at all; otherwise the thread sleeps until its next tick or until
/// [`Progress::stop`] wakes it, so it costs nothing between lines.
pub struct Progress {
    stop: Option<mpsc::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl Progress {
    pub fn start(workloads: Vec<Arc<Stats>>, quiet: bool) -> Progress {
        if quiet {
            return Progress {
                stop: None,
                handle: None,
            };
        }
        let (stop, stopped) = mpsc::channel::<()>();
        let handle = thread::spawn(move || {
            let start = Instant::now();
            let mut last: Vec<(u64, u64)> = vec![(0, 0); workloads.len()];
            let mut seen: Vec<Histogram<u64>> = workloads.iter().map(|_| new_histogram()).collect();
            for tick in 1u64.. {
                let due = start + Duration::from_secs(tick);
                let wait = due.saturating_duration_since(Instant::now());
                match stopped.recv_timeout(wait) {
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    // Stopped, or the handle was dropped.
                    Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
                eprintln!("{}", progress_line(tick, &workloads, &mut last, &mut seen));
            }
        });
        Progress {
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    pub fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// One progress line: each workload's records and bytes since the last line, its p99
/// so far, and the p99 and maximum of the latencies recorded since the last line
/// (`seen` holds what earlier lines saw), so a stall shows in the second it happened.
fn progress_line(
    tick: u64,
    workloads: &[Arc<Stats>],
    last: &mut [(u64, u64)],
    seen: &mut [Histogram<u64>],
) -> String {
    let mut line = format!("{:>4}s", tick);
    for ((stats, last), seen) in workloads.iter().zip(last.iter_mut()).zip(seen.iter_mut()) {
        let records = stats.records.load(Ordering::Relaxed);
        let bytes = stats.bytes.load(Ordering::Relaxed);
        let now = stats.histogram();
        let p99 = (!now.is_empty()).then(|| now.value_at_quantile(0.99));
        let mut recent = now.clone();
        recent
            .subtract(&*seen)
            .expect("a histogram only grows, with the same bounds");
        *seen = now;
        let _ = write!(
            line,
            "  {}: {:>10.0} rec/s {:>8.2} MiB/s",
            stats.name,
            (records - last.0) as f64,
            (bytes - last.1) as f64 / MIB
        );
        if let Some(p99) = p99 {
            let _ = write!(line, " p99 {:>8.3} ms", p99 as f64 / 1000.0);
        }
        if !recent.is_empty() {
            let _ = write!(
                line,
                " (this second p99 {:.3} max {:.3})",
                recent.value_at_quantile(0.99) as f64 / 1000.0,
                recent.max() as f64 / 1000.0
            );
        }
        let errors = stats.errors.load(Ordering::Relaxed);
        if errors > 0 {
            let _ = write!(line, " errors {errors}");
        }
        *last = (records, bytes);
    }
    line
}

/// The final figures of one workload.
pub struct Summary {
    pub name: &'static str,
    pub elapsed: Duration,
    pub records: u64,
    pub bytes: u64,
    pub errors: u64,
    pub latency_us: Histogram<u64>,
}

impl Summary {
    pub fn of(stats: &Stats, elapsed: Duration) -> Summary {
        Summary {
            name: stats.name,
            elapsed,
            records: stats.records.load(Ordering::Relaxed),
            bytes: stats.bytes.load(Ordering::Relaxed),
            errors: stats.errors.load(Ordering::Relaxed),
            latency_us: stats.histogram(),
        }
    }

    pub fn records_per_s(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn mib_per_s(&self) -> f64 {
        self.bytes as f64 / MIB / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub const PERCENTILES: [(&'static str, f64); 5] = [
        ("p50", 50.0),
        ("p90", 90.0),
        ("p99", 99.0),
        ("p99.9", 99.9),
        ("p99.99", 99.99),
    ];

    pub fn print(&self) {
        println!(
            "{}: {} records, {:.1} MiB in {:.2} s: {:.0} records/s, {:.2} MiB/s, {} errors",
            self.name,
            self.records,
            self.bytes as f64 / MIB,
            self.elapsed.as_secs_f64(),
            self.records_per_s(),
            self.mib_per_s(),
            self.errors
        );
        if self.latency_us.is_empty() {
            return;
        }
        println!("{} latency ms:{}", self.name, self.latency_ms_line());
    }

    /// The latency percentiles and max in ms, each as " label value".
    pub fn latency_ms_line(&self) -> String {
        let h = &self.latency_us;
        let mut line = String::new();
        for (label, p) in Self::PERCENTILES {
            let _ = write!(
                line,
                " {label} {:.3}",
                h.value_at_percentile(p) as f64 / 1000.0
            );
        }
        let _ = write!(line, " max {:.3}", h.max() as f64 / 1000.0);
        line
    }

    pub fn to_json(&self) -> serde_json::Value {
        let h = &self.latency_us;
        let latency = if h.is_empty() {
            serde_json::Value::Null
        } else {
            let mut map = serde_json::Map::new();
            for (label, p) in Self::PERCENTILES {
                map.insert(
                    format!("{label}_ms"),
                    (h.value_at_percentile(p) as f64 / 1000.0).into(),
                );
            }
            map.insert("max_ms".into(), (h.max() as f64 / 1000.0).into());
            map.insert("mean_ms".into(), (h.mean() / 1000.0).into());
            map.insert("count".into(), h.len().into());
            serde_json::Value::Object(map)
        };
        serde_json::json!({
            "workload": self.name,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "records": self.records,
            "bytes": self.bytes,
            "errors": self.errors,
            "records_per_s": self.records_per_s(),
            "mib_per_s": self.mib_per_s(),
            "latency": latency,
        })
    }
}

/// HdrHistogram's percentile distribution text (`outputPercentileDistribution` with
/// 5 ticks per half distance), values in milliseconds: the `.hgrm` form that
/// HdrHistogram's plotter and wrk2 read.
pub fn hgrm(histogram: &Histogram<u64>) -> String {
    const SCALE: f64 = 1000.0; // microseconds -> milliseconds
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    if histogram.is_empty() {
        return out;
    }
    let mut total = 0u64;
    for v in histogram.iter_quantiles(5) {
        total += v.count_since_last_iteration();
        let value = v.value_iterated_to() as f64 / SCALE;
        let quantile = v.quantile_iterated_to();
        if quantile < 1.0 {
            let _ = writeln!(
                out,
                "{value:>12.3} {quantile:>2.12} {total:>10} {:>14.2}",
                1.0 / (1.0 - quantile)
            );
        } else {
            let _ = writeln!(out, "{value:>12.3} {quantile:>2.12} {total:>10}");
        }
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        histogram.mean() / SCALE,
        histogram.stdev() / SCALE
    );
    let _ = writeln!(
        out,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        histogram.max() as f64 / SCALE,
        histogram.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        histogram.buckets(),
        sub_bucket_count(histogram.sigfig())
    );
    out
}

/// HdrHistogram's sub-bucket count for `sigfig` significant digits (2048 for 3).
fn sub_bucket_count(sigfig: u8) -> u64 {
    let single_unit_max = 2 * 10u64.pow(u32::from(sigfig));
    single_unit_max.next_power_of_two()
}

pub fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hgrm_has_header_rows_and_footer() {
        let mut h = new_histogram();
        for us in 1..=10_000u64 {
            h.record(us).unwrap();
        }
        let text = hgrm(&h);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("Percentile") && lines[0].contains("TotalCount"));
        let rows: Vec<&str> = lines
            .iter()
            .skip(2)
            .filter(|l| !l.starts_with('#'))
            .copied()
            .collect();
        assert!(rows.len() > 20, "{text}");
        let last: Vec<&str> = rows.last().unwrap().split_whitespace().collect();
        assert_eq!(last[1], "1.000000000000");
        assert_eq!(last[2], "10000");
        assert!(text.contains("#[Max     =       10.0"), "{text}");
        assert!(text.contains("SubBuckets     =         2048]"), "{text}");
    }

    #[test]
    fn batch_latency_uses_each_records_intended_time() {
        let stats = Stats::new("t");
        // Four records due at 0, 1, 2, 3 ms, all acknowledged at 10 ms.
        stats.record_batch_latency(10_000_000, 0, 1_000_000, 4);
        let h = stats.histogram();
        assert_eq!(h.len(), 4);
        assert_eq!(h.max(), h.highest_equivalent(10_000));
        assert_eq!(h.min(), h.lowest_equivalent(7_000));
    }

    #[test]
    fn warm_up_records_are_left_out() {
        let stats = Stats::new("t");
        stats.measure_from(2_500);
        // Due at 0, 1000, ..., 4000 ns: the last two are measured.
        stats.record_batch_latency(10_000, 0, 1_000, 5);
        assert_eq!(stats.histogram().len(), 2);
        // A whole batch inside the warm-up, closed loop or spaced, is left out.
        stats.record_batch_latency(10_000, 0, 0, 3);
        stats.record_batch_latency(10_000, 0, 100, 3);
        assert_eq!(stats.histogram().len(), 2);
        stats.record_batch_latency(10_000, 2_500, 0, 3);
        assert_eq!(stats.histogram().len(), 5);
    }

    proptest::proptest! {
        /// Grouping by microsecond records exactly what one update per record would.
        #[test]
        fn spaced_records_match_one_update_each(
            now_ns in 0u64..50_000_000,
            first_ns in 0u64..50_000_000,
            interval_ns in 1u64..5_000,
            count in 1u64..2_000,
        ) {
            let mut grouped = new_histogram();
            record_spaced(&mut grouped, now_ns, first_ns, interval_ns, count);
            let mut each = new_histogram();
            for k in 0..count {
                let latency_us = now_ns.saturating_sub(first_ns + k * interval_ns) / 1000;
                each.saturating_record(latency_us.max(1));
            }
            proptest::prop_assert_eq!(grouped.len(), count);
            proptest::prop_assert!(grouped == each);
        }
    }
}
