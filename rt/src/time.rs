//! Time on the current shard.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_lite::future;

/// Sleeps for `duration`.
pub async fn sleep(duration: Duration) {
    glommio::timer::sleep(duration).await;
}

/// Sleeps until `deadline` (returns at once if it has passed).
pub async fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        sleep(deadline - now).await;
    }
}

/// Runs `fut` until it completes or `duration` passes; `None` on timeout.
pub async fn timeout<T>(duration: Duration, fut: impl Future<Output = T>) -> Option<T> {
    future::or(async { Some(fut.await) }, async {
        sleep(duration).await;
        None
    })
    .await
}

/// Wall-clock milliseconds since the Unix epoch, as Kafka timestamps are.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    //! The reactor keeps a timer that is still armed instead of re-arming it on every
    //! poll (vendor/README.md, glommio patch). These pin what that must not break: a
    //! sleep never ends early, whether the shard slept or spun through it, and a
    //! shorter timer set while a longer one is armed still wakes the shard.
    use super::*;
    use crate::exec::{block_on, spawn};
    use std::cell::Cell;
    use std::rc::Rc;

    #[test]
    fn sleeps_longer_than_the_preempt_period_end_after_their_deadline() {
        block_on(async {
            // glommio's preempt timer is 100 ms: this sleep spans an armed preempt
            // timer firing while the shard is parked.
            let start = Instant::now();
            sleep(Duration::from_millis(250)).await;
            assert!(start.elapsed() >= Duration::from_millis(250));
        });
    }

    #[test]
    fn a_short_timer_after_a_long_one_wakes_the_parked_shard() {
        block_on(async {
            let long = spawn(sleep(Duration::from_secs(30)));
            // Let the long timer's sleep become the armed one.
            sleep(Duration::from_millis(1)).await;
            let start = Instant::now();
            sleep(Duration::from_millis(20)).await;
            assert!(start.elapsed() >= Duration::from_millis(20));
            drop(long);
        });
    }

    #[test]
    fn timers_fire_while_tasks_keep_the_shard_busy() {
        block_on(async {
            let stop = Rc::new(Cell::new(false));
            let busy = {
                let stop = stop.clone();
                spawn(async move {
                    let mut spins = 0u64;
                    while !stop.get() {
                        spins += 1;
                        crate::exec::yield_if_needed().await;
                        futures_lite::future::yield_now().await;
                    }
                    spins
                })
            };
            for ms in [1u64, 5, 30, 120] {
                let start = Instant::now();
                sleep(Duration::from_millis(ms)).await;
                assert!(start.elapsed() >= Duration::from_millis(ms));
            }
            stop.set(true);
            assert!(busy.await > 0);
        });
    }

    #[test]
    fn timeout_gives_up_on_a_future_that_never_completes() {
        block_on(async {
            let start = Instant::now();
            let r = timeout(Duration::from_millis(15), future::pending::<()>()).await;
            assert!(r.is_none());
            assert!(start.elapsed() >= Duration::from_millis(15));
            assert_eq!(timeout(Duration::from_secs(5), async { 7 }).await, Some(7));
        });
    }
}
