//! The machine's own hiccups (jHiccup's idea): a thread that asks to wake every
//! `interval` records how late each wake-up was due. Nothing it does depends on a
//! broker, so run beside a benchmark it shows the stalls the platform (scheduler,
//! hypervisor) adds to any thread at that moment: the floor under a latency figure.
//!
//! Ticks are on a fixed schedule and a late wake-up counts every tick it missed, each
//! from its own due time, as a request stream at that interval would have seen them
//! (no coordinated omission).

use std::thread;
use std::time::Duration;

use crate::stats::{Clock, Stats};

/// Sleeps tick to tick on `clock` until `end_ns`, counting ticks as records of `stats`
/// with their lateness as latency.
pub fn run(clock: Clock, interval_ns: u64, end_ns: u64, stats: &Stats) {
    assert!(interval_ns > 0, "a hiccup interval is positive");
    let mut next = clock.now_ns() + interval_ns;
    while next <= end_ns {
        let now = clock.now_ns();
        if now < next {
            // A plain sleep, never a spin: the wake-up is what is measured.
            thread::sleep(Duration::from_nanos(next - now));
        }
        let woke = clock.now_ns();
        next += account(stats, woke, next, interval_ns, end_ns) * interval_ns;
    }
}

/// Records a wake-up at `woke_ns` for the tick due at `due_ns`: that tick and every
/// later one due by then (and by `end_ns`), each late by its own amount. Returns how
/// many ticks it covered.
fn account(stats: &Stats, woke_ns: u64, due_ns: u64, interval_ns: u64, end_ns: u64) -> u64 {
    let missed = woke_ns.saturating_sub(due_ns) / interval_ns;
    let left = end_ns.saturating_sub(due_ns) / interval_ns;
    let ticks = missed.min(left) + 1;
    stats.add(ticks, 0);
    stats.record_batch_latency(woke_ns, due_ns, interval_ns, ticks);
    ticks
}

/// Asks the kernel for the tightest timer slack on this thread (the default 50 µs would
/// add to every sample). Best effort.
pub fn tight_timer_slack() {
    // 1 ns is the smallest slack accepted (0 means "the default").
    // SAFETY: PR_SET_TIMERSLACK only changes this thread's timer slack.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1u64, 0u64, 0u64, 0u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_on_time_wake_up_is_one_tick() {
        let stats = Stats::new("hiccup");
        assert_eq!(
            account(&stats, 1_000_050_000, 1_000_000_000, 1_000_000, u64::MAX),
            1
        );
        let h = stats.histogram();
        assert_eq!(h.len(), 1);
        assert_eq!(h.max(), 50);
    }

    #[test]
    fn a_late_wake_up_counts_every_tick_it_missed() {
        // Due at 1 ms intervals from t = 1 s; woke 10.5 ms late: ticks due at +0..+10 ms
        // were all missed, late by 10.5, 9.5, ..., 0.5 ms.
        let stats = Stats::new("hiccup");
        let due = 1_000_000_000;
        let ticks = account(&stats, due + 10_500_000, due, 1_000_000, u64::MAX);
        assert_eq!(ticks, 11);
        assert_eq!(stats.records.load(std::sync::atomic::Ordering::Relaxed), 11);
        let h = stats.histogram();
        assert_eq!(h.len(), 11);
        assert!(h.equivalent(h.max(), 10_500));
        assert!(h.equivalent(h.min(), 500));
        assert!(h.equivalent(h.value_at_quantile(0.5), 5_500));
    }

    #[test]
    fn ticks_past_the_end_are_not_counted() {
        let stats = Stats::new("hiccup");
        let due = 1_000_000_000;
        // Woke 10.5 ms late, but the run ended 3 ms after the tick: 4 ticks.
        assert_eq!(
            account(&stats, due + 10_500_000, due, 1_000_000, due + 3_000_000),
            4
        );
    }

    #[test]
    fn a_short_run_ticks_at_its_interval() {
        let stats = Stats::new("hiccup");
        let clock = Clock::new();
        let end = clock.now_ns() + 20_000_000;
        run(clock, 1_000_000, end, &stats);
        // The ticks due in the 20 ms, however late each woke (the first is due a
        // tick after run's start, a little after `end` was taken).
        let ticks = stats.records.load(std::sync::atomic::Ordering::Relaxed);
        assert!((19..=20).contains(&ticks), "{ticks} ticks");
        assert_eq!(stats.histogram().len(), ticks);
    }
}
