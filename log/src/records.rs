//! Walking the records inside an uncompressed v2 batch, for the one operation that
//! needs per-record timestamps: ListOffsets by timestamp. Nothing on the produce or
//! fetch path decodes records.
//!
//! Record layout (after the 61-byte batch header): `length` varint, `attributes` i8,
//! `timestampDelta` varlong, `offsetDelta` varint, `keyLength` varint + key,
//! `valueLength` varint + value, `headerCount` varint + headers. Only the first three
//! fields are read; `length` skips the rest.

use sluice_core::batch::{header, HEADER_SIZE};

/// Reads a zig-zag varint at `*pos`, advancing it.
fn read_varint(bytes: &[u8], pos: &mut usize) -> Option<i64> {
    let mut raw: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        raw |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    None
}

/// First record of the (uncompressed) batch `batch` with timestamp `>= timestamp_ms`:
/// `(offset, timestamp)`. `None` if there is none, or if the records are malformed.
pub fn first_record_at_or_after(batch: &[u8], timestamp_ms: i64) -> Option<(i64, i64)> {
    let h = header(batch)?;
    let (base_offset, base_ts) = (h.base_offset(), h.base_timestamp());
    let end = h.total_size().min(batch.len());
    let mut pos = HEADER_SIZE;
    for _ in 0..h.record_count() {
        let len = usize::try_from(read_varint(batch, &mut pos)?).ok()?;
        let record_start = pos;
        if record_start.checked_add(len)? > end {
            return None;
        }
        pos += 1; // attributes
        let ts = base_ts.checked_add(read_varint(batch, &mut pos)?)?;
        let offset_delta = read_varint(batch, &mut pos)?;
        if ts >= timestamp_ms {
            return Some((base_offset.checked_add(offset_delta)?, ts));
        }
        pos = record_start + len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::make_batch_with_timestamps;
    use sluice_core::batch::assign_offsets;

    #[test]
    fn finds_first_record_at_or_after() {
        let mut b = make_batch_with_timestamps(&[100, 250, 200, 400], 40, None);
        assign_offsets(&mut b, 10, 0, None);
        assert_eq!(first_record_at_or_after(&b, 0), Some((10, 100)));
        assert_eq!(first_record_at_or_after(&b, 100), Some((10, 100)));
        assert_eq!(first_record_at_or_after(&b, 101), Some((11, 250)));
        assert_eq!(first_record_at_or_after(&b, 300), Some((13, 400)));
        assert_eq!(first_record_at_or_after(&b, 401), None);
        // Garbage records do not panic.
        let mut bad = b.clone();
        for x in &mut bad[HEADER_SIZE..] {
            *x = 0xff;
        }
        assert_eq!(first_record_at_or_after(&bad, 300), None);
    }
}
