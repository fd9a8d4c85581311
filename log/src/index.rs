//! Sparse offset and time indexes of one segment, in Kafka's file formats.
//!
//! `.index`: 8-byte entries, relative offset (u32 BE) and file position (u32 BE).
//! `.timeindex`: 12-byte entries, timestamp (i64 BE) and relative offset (u32 BE).
//! Both are kept in memory for every segment (they are sparse: one entry per
//! `index.interval.bytes` of log) and written to disk when a segment is rolled or the
//! log closed. A missing or inconsistent file is rebuilt from the segment at open.
//!
//! Lives on the partition's owning shard.

/// Size of one `.index` entry.
pub const OFFSET_ENTRY_BYTES: usize = 8;
/// Size of one `.timeindex` entry.
pub const TIME_ENTRY_BYTES: usize = 12;

/// Offset -> file position, sparse. Entries strictly increase in both fields.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OffsetIndex {
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    /// Adds an entry for the batch starting at `position` whose first offset is
    /// `relative_offset` past the segment base.
    pub fn push(&mut self, relative_offset: u32, position: u32) {
        if let Some(&(last_off, last_pos)) = self.entries.last() {
            assert!(relative_offset > last_off && position > last_pos);
        }
        self.entries.push((relative_offset, position));
    }

    /// File position of the batch with the largest indexed offset `<= relative_offset`,
    /// or 0: where a scan for the batch containing that offset starts.
    pub fn lookup(&self, relative_offset: u32) -> u32 {
        let i = self.entries.partition_point(|&(o, _)| o <= relative_offset);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].1
        }
    }

    /// Drops entries at or past `position` (truncation of the segment).
    pub fn truncate_to_position(&mut self, position: u32) {
        let i = self.entries.partition_point(|&(_, p)| p < position);
        self.entries.truncate(i);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * OFFSET_ENTRY_BYTES);
        for &(o, p) in &self.entries {
            out.extend_from_slice(&o.to_be_bytes());
            out.extend_from_slice(&p.to_be_bytes());
        }
        out
    }

    /// Parses an index file; `None` if it is inconsistent with a segment of
    /// `segment_size` bytes (odd length, entries not increasing, a position past the
    /// end). A trailing run of all-zero entries (Kafka preallocates index files) is
    /// ignored.
    pub fn from_bytes(bytes: &[u8], segment_size: u64) -> Option<OffsetIndex> {
        if !bytes.len().is_multiple_of(OFFSET_ENTRY_BYTES) {
            return None;
        }
        let mut index = OffsetIndex::default();
        for (i, e) in bytes.chunks_exact(OFFSET_ENTRY_BYTES).enumerate() {
            let o = u32::from_be_bytes(e[0..4].try_into().ok()?);
            let p = u32::from_be_bytes(e[4..8].try_into().ok()?);
            if i > 0 && o == 0 && p == 0 {
                break;
            }
            if u64::from(p) >= segment_size {
                return None;
            }
            if let Some(&(lo, lp)) = index.entries.last() {
                if o <= lo || p <= lp {
                    return None;
                }
            }
            index.entries.push((o, p));
        }
        Some(index)
    }
}

/// Timestamp -> offset, sparse. Timestamps and offsets strictly increase.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TimeIndex {
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    /// Records that the segment's largest timestamp reached `timestamp_ms` at the batch
    /// with offsets up to `relative_offset`. Ignored unless the timestamp grows.
    pub fn maybe_push(&mut self, timestamp_ms: i64, relative_offset: u32) {
        match self.entries.last() {
            Some(&(t, o)) if timestamp_ms <= t || relative_offset <= o => {}
            _ => self.entries.push((timestamp_ms, relative_offset)),
        }
    }

    /// Relative offset at which a scan for the first timestamp `>= timestamp_ms` may
    /// start: the offset of the last entry with a smaller timestamp, or 0.
    pub fn lookup(&self, timestamp_ms: i64) -> u32 {
        let i = self.entries.partition_point(|&(t, _)| t < timestamp_ms);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].1
        }
    }

    /// The last entry: the largest timestamp indexed and its relative offset.
    pub fn last(&self) -> Option<(i64, u32)> {
        self.entries.last().copied()
    }

    /// Drops entries for offsets at or past `relative_offset`.
    pub fn truncate_to_offset(&mut self, relative_offset: u32) {
        let i = self.entries.partition_point(|&(_, o)| o < relative_offset);
        self.entries.truncate(i);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * TIME_ENTRY_BYTES);
        for &(t, o) in &self.entries {
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&o.to_be_bytes());
        }
        out
    }

    /// Parses a time index file; `None` if inconsistent (see [`OffsetIndex::from_bytes`]);
    /// `max_relative_offset` is the segment's last offset relative to its base.
    pub fn from_bytes(bytes: &[u8], max_relative_offset: u32) -> Option<TimeIndex> {
        if !bytes.len().is_multiple_of(TIME_ENTRY_BYTES) {
            return None;
        }
        let mut index = TimeIndex::default();
        for (i, e) in bytes.chunks_exact(TIME_ENTRY_BYTES).enumerate() {
            let t = i64::from_be_bytes(e[0..8].try_into().ok()?);
            let o = u32::from_be_bytes(e[8..12].try_into().ok()?);
            if i > 0 && t == 0 && o == 0 {
                break;
            }
            if o > max_relative_offset {
                return None;
            }
            if let Some(&(lt, lo)) = index.entries.last() {
                if t <= lt || o <= lo {
                    return None;
                }
            }
            index.entries.push((t, o));
        }
        Some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_index_lookup_finds_floor_entry() {
        let mut ix = OffsetIndex::default();
        assert_eq!(ix.lookup(5), 0);
        ix.push(10, 4096);
        ix.push(20, 8192);
        ix.push(35, 12288);
        let cases = [
            (0, 0),
            (9, 0),
            (10, 4096),
            (19, 4096),
            (20, 8192),
            (34, 8192),
            (35, 12288),
            (99, 12288),
        ];
        for (off, pos) in cases {
            assert_eq!(ix.lookup(off), pos, "offset {off}");
        }
        ix.truncate_to_position(8192);
        assert_eq!(ix.len(), 1);
        assert_eq!(ix.lookup(99), 4096);
    }

    #[test]
    fn offset_index_round_trips_and_rejects_inconsistent_files() {
        let mut ix = OffsetIndex::default();
        ix.push(3, 100);
        ix.push(9, 5000);
        let bytes = ix.to_bytes();
        assert_eq!(bytes.len(), 16);
        assert_eq!(OffsetIndex::from_bytes(&bytes, 6000), Some(ix.clone()));
        // Position past the segment end.
        assert_eq!(OffsetIndex::from_bytes(&bytes, 5000), None);
        // Torn entry.
        assert_eq!(OffsetIndex::from_bytes(&bytes[..12], 6000), None);
        // Not increasing.
        let mut swapped = bytes[8..].to_vec();
        swapped.extend_from_slice(&bytes[..8]);
        assert_eq!(OffsetIndex::from_bytes(&swapped, 6000), None);
        // Zero padding is ignored.
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0; 16]);
        assert_eq!(OffsetIndex::from_bytes(&padded, 6000), Some(ix));
    }

    #[test]
    fn time_index_lookup_and_round_trip() {
        let mut ix = TimeIndex::default();
        ix.maybe_push(100, 0);
        ix.maybe_push(90, 1); // not larger: ignored
        ix.maybe_push(200, 5);
        ix.maybe_push(300, 9);
        assert_eq!(ix.len(), 3);
        assert_eq!(ix.lookup(50), 0);
        assert_eq!(ix.lookup(100), 0);
        assert_eq!(ix.lookup(150), 0);
        assert_eq!(ix.lookup(250), 5);
        assert_eq!(ix.lookup(1000), 9);
        let bytes = ix.to_bytes();
        assert_eq!(TimeIndex::from_bytes(&bytes, 9), Some(ix.clone()));
        assert_eq!(TimeIndex::from_bytes(&bytes, 8), None);
        ix.truncate_to_offset(5);
        assert_eq!(ix.len(), 1);
    }
}
