//! Crash test: a child process appends batches in a loop and prints every
//! acknowledged offset range; the parent SIGKILLs it after reading a number of
//! acknowledgements (no sleeps), reopens the log, and checks that every acknowledged
//! batch is there and every stored batch verifies. Repeated, so each child also
//! recovers what the previous kill left.
//!
//! The child is this test binary itself, re-executed with `CHILD_DIR_ENV` set.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sluice_core::batch::{self, header};
use sluice_core::config::LogConfig;
use sluice_log::testing::make_batch;
use sluice_log::PartitionLog;

const CHILD_DIR_ENV: &str = "SLUICE_LOG_CRASH_CHILD_DIR";
const TEST_NAME: &str = "killed_writer_loses_no_acknowledged_batch";
/// Appends in flight at once in the child (so writes are group-committed and a kill
/// lands with several unacknowledged appends pending).
const CONCURRENT_APPENDERS: usize = 8;
const ROUNDS: usize = 3;
const ACKS_PER_ROUND: usize = 400;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 256 * 1024,
        index_interval_bytes: 1024,
        preallocate_bytes: 1 << 20,
        retention_ms: None,
        ..LogConfig::default()
    }
}

/// Child: append forever, printing `ACK base last` for each acknowledged append.
fn child(dir: PathBuf) -> ! {
    sluice_rt::exec::block_on(async move {
        let log = PartitionLog::open(dir, config()).await.expect("open");
        let mut tasks = Vec::new();
        for task in 0..CONCURRENT_APPENDERS {
            let log = log.clone();
            tasks.push(sluice_rt::exec::spawn(async move {
                for i in 0usize.. {
                    let records = 1 + ((i + task) % 7) as i32;
                    let b = make_batch(records, 100 + (i * 37 + task * 101) % 9000, None);
                    let info = log
                        .append(&b, 0, sluice_rt::time::now_ms())
                        .await
                        .expect("append");
                    println!("ACK {} {}", info.base_offset, info.last_offset);
                }
            }));
        }
        for t in tasks {
            t.await;
        }
    });
    unreachable!("the child appends until it is killed");
}

fn run_child_until_acks(dir: &Path, acks: usize) -> Vec<(i64, i64)> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut acked = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.unwrap();
        let Some(rest) = line.strip_prefix("ACK ") else {
            continue;
        };
        let mut parts = rest.split(' ').map(|p| p.parse::<i64>().unwrap());
        acked.push((parts.next().unwrap(), parts.next().unwrap()));
        if acked.len() == acks {
            break;
        }
    }
    assert_eq!(acked.len(), acks, "child stopped early");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    acked
}

/// Reopens the log and returns every stored batch's `(base, last)`, verified.
fn stored_batches(dir: &Path) -> Vec<(i64, i64)> {
    let dir = dir.to_path_buf();
    sluice_rt::exec::block_on(async move {
        let log = PartitionLog::open(dir, config()).await.unwrap();
        let mut out = Vec::new();
        let mut next = log.log_start_offset();
        loop {
            let bytes = log
                .read(next, 1 << 20, log.high_watermark(), true)
                .await
                .unwrap();
            if bytes.is_empty() {
                break;
            }
            for f in batch::frames(&bytes) {
                let (pos, size) = f.unwrap();
                batch::validate(&bytes[pos..pos + size], usize::MAX).unwrap();
                let h = header(&bytes[pos..]).unwrap();
                out.push((h.base_offset(), h.last_offset()));
                next = h.next_offset();
            }
        }
        assert_eq!(next, log.log_end_offset());
        // Unclean shutdown again: the next child recovers from this state as is.
        out
    })
}

#[test]
fn killed_writer_loses_no_acknowledged_batch() {
    if let Some(dir) = std::env::var_os(CHILD_DIR_ENV) {
        child(PathBuf::from(dir));
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("crash-0");
    let mut all_acked = Vec::new();
    for round in 0..ROUNDS {
        let acked = run_child_until_acks(&dir, ACKS_PER_ROUND);
        all_acked.extend(acked);
        let stored = stored_batches(&dir);
        // Offsets are contiguous from 0 and every acknowledged batch is stored whole.
        let mut expected_next = 0;
        for &(base, last) in &stored {
            assert_eq!(base, expected_next, "round {round}: gap before {base}");
            expected_next = last + 1;
        }
        let stored: std::collections::HashSet<_> = stored.into_iter().collect();
        for ack in &all_acked {
            assert!(
                stored.contains(ack),
                "round {round}: acknowledged batch {ack:?} lost"
            );
        }
    }
}
