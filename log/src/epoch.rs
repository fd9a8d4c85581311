//! Leader epochs of a partition: `(epoch, start offset)` pairs, kept in Kafka's
//! `leader-epoch-checkpoint` text format (version line `0`, count line, then one
//! `epoch startOffset` line per entry).
//!
//! An entry is added when a batch with a new, larger leader epoch is appended; entries
//! at or past a truncation point are dropped. Replication answers
//! OffsetForLeaderEpoch from it. Lives on the partition's owning shard.

/// File name inside the partition directory.
pub const CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";

/// Epoch entries, strictly increasing in both epoch and start offset.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EpochCache {
    entries: Vec<(i32, i64)>,
}

impl EpochCache {
    /// Records that `epoch` starts at `start_offset`. Returns whether the cache changed
    /// (and so must be checkpointed). Epochs not larger than the latest are ignored.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 {
            return false;
        }
        match self.entries.last() {
            Some(&(e, _)) if epoch <= e => false,
            Some(&(_, s)) => {
                assert!(start_offset >= s, "leader epoch start offsets go backwards");
                self.entries.push((epoch, start_offset));
                true
            }
            None => {
                self.entries.push((epoch, start_offset));
                true
            }
        }
    }

    /// Drops entries starting at or past `end_offset` (the log was truncated there).
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let keep = self.entries.partition_point(|&(_, s)| s < end_offset);
        let changed = keep != self.entries.len();
        self.entries.truncate(keep);
        changed
    }

    /// Moves the start of the earliest remaining epoch up to `start_offset` (the log
    /// start moved), dropping epochs that ended before it.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let first_kept = self.entries.partition_point(|&(_, s)| s <= start_offset);
        if first_kept == 0 {
            return false;
        }
        // Entry first_kept-1 covers start_offset: keep it, clamped.
        let (epoch, s) = self.entries[first_kept - 1];
        self.entries.drain(..first_kept - 1);
        self.entries[0] = (epoch, start_offset);
        s != start_offset || first_kept > 1
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|&(e, _)| e)
    }

    pub fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    /// OffsetForLeaderEpoch: the largest epoch `<= epoch` and the offset where the next
    /// epoch starts (or `log_end_offset` for the latest one). `None` if `epoch` is older
    /// than every known epoch.
    pub fn end_offset_for(&self, epoch: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        let i = self.entries.partition_point(|&(e, _)| e <= epoch);
        if i == 0 {
            return None;
        }
        let found = self.entries[i - 1].0;
        let end = self.entries.get(i).map_or(log_end_offset, |&(_, s)| s);
        Some((found, end))
    }

    pub fn to_text(&self) -> String {
        let mut out = format!("0\n{}\n", self.entries.len());
        for (e, s) in &self.entries {
            out.push_str(&format!("{e} {s}\n"));
        }
        out
    }

    /// Parses a checkpoint; `None` if it is not a well-formed version-0 file.
    pub fn from_text(text: &str) -> Option<EpochCache> {
        let mut lines = text.lines();
        if lines.next()?.trim() != "0" {
            return None;
        }
        let count: usize = lines.next()?.trim().parse().ok()?;
        let mut cache = EpochCache::default();
        for _ in 0..count {
            let mut parts = lines.next()?.split_whitespace();
            let e: i32 = parts.next()?.parse().ok()?;
            let s: i64 = parts.next()?.parse().ok()?;
            if let Some(&(le, ls)) = cache.entries.last() {
                if e <= le || s < ls {
                    return None;
                }
            }
            cache.entries.push((e, s));
        }
        Some(cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assign_truncate_and_lookup() {
        let mut c = EpochCache::default();
        assert!(c.assign(0, 0));
        assert!(!c.assign(0, 5));
        assert!(c.assign(2, 10));
        assert!(c.assign(5, 30));
        assert_eq!(c.end_offset_for(0, 50), Some((0, 10)));
        assert_eq!(c.end_offset_for(1, 50), Some((0, 10)));
        assert_eq!(c.end_offset_for(4, 50), Some((2, 30)));
        assert_eq!(c.end_offset_for(9, 50), Some((5, 50)));
        assert_eq!(c.end_offset_for(-1, 50), None);
        assert!(c.truncate_from_end(30));
        assert_eq!(c.latest_epoch(), Some(2));
        assert!(c.truncate_from_start(12));
        assert_eq!(c.entries(), &[(2, 12)]);
        assert!(!c.truncate_from_start(5));
    }

    #[test]
    fn checkpoint_text_round_trips() {
        let mut c = EpochCache::default();
        c.assign(1, 0);
        c.assign(3, 42);
        let text = c.to_text();
        assert_eq!(text, "0\n2\n1 0\n3 42\n");
        assert_eq!(EpochCache::from_text(&text), Some(c));
        assert_eq!(EpochCache::from_text("1\n0\n"), None);
        assert_eq!(EpochCache::from_text("0\n2\n1 0\n"), None);
        assert_eq!(EpochCache::from_text("0\n2\n3 5\n1 9\n"), None);
    }
}
