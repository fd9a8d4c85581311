//! Kafka's v2 `RecordBatch`, seen through its 61-byte header.
//!
//! The broker never decodes individual records. A produced batch is checked through its
//! header (lengths, magic, CRC-32C over everything after the CRC field, offset delta and
//! record count) and appended exactly as received, after its `baseOffset` and
//! `partitionLeaderEpoch` are rewritten in place. Neither field is covered by the CRC,
//! so the rewrite needs no checksum work; only `LogAppendTime` topics, which rewrite
//! `maxTimestamp`, recompute it.
//!
//! Layout (all big-endian):
//! ```text
//!  0 baseOffset i64 | 8 batchLength i32 | 12 partitionLeaderEpoch i32 | 16 magic i8
//! 17 crc u32 | 21 attributes i16 | 23 lastOffsetDelta i32 | 27 baseTimestamp i64
//! 35 maxTimestamp i64 | 43 producerId i64 | 51 producerEpoch i16 | 53 baseSequence i32
//! 57 recordCount i32 | 61 records...
//! ```

use zerocopy::byteorder::big_endian::{I16, I32, I64, U32};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Size of the fixed batch header.
pub const HEADER_SIZE: usize = 61;
/// Bytes before `batchLength` counts: `baseOffset` and `batchLength` themselves.
pub const LOG_OVERHEAD: usize = 12;
/// Offset of the first byte covered by the CRC (`attributes`).
pub const CRC_START: usize = 21;
/// The only record format Sluice stores.
pub const MAGIC_V2: i8 = 2;
/// `producerId` of a batch from a non-idempotent producer.
pub const NO_PRODUCER_ID: i64 = -1;
/// `baseSequence` of a batch from a non-idempotent producer.
pub const NO_SEQUENCE: i32 = -1;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

/// The fixed header of a v2 record batch, as it lies in memory.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct BatchHeader {
    pub base_offset: I64,
    pub batch_length: I32,
    pub partition_leader_epoch: I32,
    pub magic: i8,
    pub crc: U32,
    pub attributes: I16,
    pub last_offset_delta: I32,
    pub base_timestamp: I64,
    pub max_timestamp: I64,
    pub producer_id: I64,
    pub producer_epoch: I16,
    pub base_sequence: I32,
    pub record_count: I32,
}

const _: () = assert!(std::mem::size_of::<BatchHeader>() == HEADER_SIZE);

/// Compression codec named by the low three bits of `attributes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl BatchHeader {
    /// Total size of the batch on the wire and on disk.
    pub fn total_size(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.get() as usize
    }
    pub fn base_offset(&self) -> i64 {
        self.base_offset.get()
    }
    pub fn last_offset(&self) -> i64 {
        self.base_offset.get() + i64::from(self.last_offset_delta.get())
    }
    /// Offset after the batch: the log end offset once it is appended.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }
    pub fn compression(&self) -> Option<Compression> {
        match self.attributes.get() & COMPRESSION_MASK {
            0 => Some(Compression::None),
            1 => Some(Compression::Gzip),
            2 => Some(Compression::Snappy),
            3 => Some(Compression::Lz4),
            4 => Some(Compression::Zstd),
            _ => None,
        }
    }
    pub fn is_log_append_time(&self) -> bool {
        self.attributes.get() & TIMESTAMP_TYPE_BIT != 0
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes.get() & TRANSACTIONAL_BIT != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes.get() & CONTROL_BIT != 0
    }
    pub fn producer_id(&self) -> i64 {
        self.producer_id.get()
    }
    pub fn producer_epoch(&self) -> i16 {
        self.producer_epoch.get()
    }
    pub fn base_sequence(&self) -> i32 {
        self.base_sequence.get()
    }
    pub fn record_count(&self) -> i32 {
        self.record_count.get()
    }
    pub fn max_timestamp(&self) -> i64 {
        self.max_timestamp.get()
    }
    pub fn base_timestamp(&self) -> i64 {
        self.base_timestamp.get()
    }
    /// Sequence number of the last record, wrapping as Kafka does at `i32::MAX`.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence.get() == NO_SEQUENCE {
            return NO_SEQUENCE;
        }
        let last = i64::from(self.base_sequence.get()) + i64::from(self.last_offset_delta.get());
        if last > i64::from(i32::MAX) {
            (last - i64::from(i32::MAX) - 1) as i32
        } else {
            last as i32
        }
    }
    pub fn has_producer_id(&self) -> bool {
        self.producer_id.get() >= 0
    }
}

/// Why a batch was refused. Each maps to the error code Kafka answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("record set ends inside a batch header ({remaining} bytes left)")]
    TruncatedHeader { remaining: usize },
    #[error("batch length {length} is smaller than a batch header")]
    LengthTooSmall { length: i32 },
    #[error("batch of {size} bytes runs past the end of the record set ({remaining} bytes left)")]
    TruncatedBatch { size: usize, remaining: usize },
    #[error("unsupported record format magic {magic}")]
    UnsupportedMagic { magic: i8 },
    #[error("CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("record count {count} does not match last offset delta {delta}")]
    CountMismatch { count: i32, delta: i32 },
    #[error("unknown compression codec in attributes {attributes:#x}")]
    UnknownCompression { attributes: i16 },
    #[error("batch of {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
}

impl BatchError {
    /// Kafka's answer to a produce request carrying this batch.
    pub fn error_code(&self) -> crate::ErrorCode {
        use crate::ErrorCode;
        match self {
            BatchError::TruncatedHeader { .. }
            | BatchError::LengthTooSmall { .. }
            | BatchError::TruncatedBatch { .. }
            | BatchError::CrcMismatch { .. } => ErrorCode::CorruptMessage,
            BatchError::UnsupportedMagic { .. } => ErrorCode::UnsupportedForMessageFormat,
            BatchError::CountMismatch { .. } => ErrorCode::InvalidRecord,
            BatchError::UnknownCompression { .. } => ErrorCode::UnsupportedCompressionType,
            BatchError::TooLarge { .. } => ErrorCode::MessageTooLarge,
        }
    }
}

/// Reads the header at the start of `bytes` without checking anything but its size.
pub fn header(bytes: &[u8]) -> Option<&BatchHeader> {
    BatchHeader::ref_from_prefix(bytes).ok().map(|(h, _)| h)
}

/// Mutable header at the start of `bytes`.
pub fn header_mut(bytes: &mut [u8]) -> Option<&mut BatchHeader> {
    BatchHeader::mut_from_prefix(bytes).ok().map(|(h, _)| h)
}

/// CRC-32C as stored in a batch: over `attributes` to the end of the batch.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[CRC_START..])
}

/// Checks the framing of the batch at the start of `bytes` (length fits, header
/// present) and returns its total size. Does not verify the CRC.
pub fn frame_size(bytes: &[u8]) -> Result<usize, BatchError> {
    let Some(h) = header(bytes) else {
        return Err(BatchError::TruncatedHeader {
            remaining: bytes.len(),
        });
    };
    let length = h.batch_length.get();
    if length < (HEADER_SIZE - LOG_OVERHEAD) as i32 {
        return Err(BatchError::LengthTooSmall { length });
    }
    let size = LOG_OVERHEAD + length as usize;
    if size > bytes.len() {
        return Err(BatchError::TruncatedBatch {
            size,
            remaining: bytes.len(),
        });
    }
    Ok(size)
}

/// Fully checks the batch at the start of `bytes`: framing, magic, CRC, compression
/// codec and the agreement of record count with the last offset delta. Returns the
/// batch's size. This is what a produced batch must pass before it is appended, and
/// what recovery checks of every batch past the recovery point.
pub fn validate(bytes: &[u8], max_batch_bytes: usize) -> Result<usize, BatchError> {
    let size = frame_size(bytes)?;
    let h = header(bytes).expect("frame_size checked the header");
    if h.magic != MAGIC_V2 {
        return Err(BatchError::UnsupportedMagic { magic: h.magic });
    }
    if size > max_batch_bytes {
        return Err(BatchError::TooLarge {
            size,
            limit: max_batch_bytes,
        });
    }
    let stored = h.crc.get();
    let computed = compute_crc(&bytes[..size]);
    if stored != computed {
        return Err(BatchError::CrcMismatch { stored, computed });
    }
    if h.compression().is_none() {
        return Err(BatchError::UnknownCompression {
            attributes: h.attributes.get(),
        });
    }
    let (count, delta) = (h.record_count.get(), h.last_offset_delta.get());
    if count < 1 || delta != count - 1 {
        return Err(BatchError::CountMismatch { count, delta });
    }
    Ok(size)
}

/// Iterates over the batches of a record set, yielding `(position, size)` of each after
/// checking its framing only. Stops at the first framing error, which it yields.
pub fn frames(bytes: &[u8]) -> impl Iterator<Item = Result<(usize, usize), BatchError>> + '_ {
    let mut pos = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || pos >= bytes.len() {
            return None;
        }
        match frame_size(&bytes[pos..]) {
            Ok(size) => {
                let item = (pos, size);
                pos += size;
                Some(Ok(item))
            }
            Err(e) => {
                failed = true;
                Some(Err(e))
            }
        }
    })
}

/// Assigns offsets to a batch being appended: rewrites `baseOffset` and
/// `partitionLeaderEpoch` in place. When `log_append_time_ms` is given (topics with
/// `message.timestamp.type=LogAppendTime`), sets the timestamp type and
/// `maxTimestamp` and recomputes the CRC, as Kafka does.
pub fn assign_offsets(
    batch: &mut [u8],
    base_offset: i64,
    leader_epoch: i32,
    log_append_time_ms: Option<i64>,
) {
    let h = header_mut(batch).expect("assign_offsets on a validated batch");
    h.base_offset.set(base_offset);
    h.partition_leader_epoch.set(leader_epoch);
    if let Some(ts) = log_append_time_ms {
        h.attributes.set(h.attributes.get() | TIMESTAMP_TYPE_BIT);
        h.max_timestamp.set(ts);
        let crc = compute_crc(batch);
        header_mut(batch).expect("header").crc.set(crc);
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Builds a syntactically valid uncompressed batch whose records are opaque filler
    /// (the broker never looks inside them). Used across the workspace's tests.
    pub fn make_batch(
        record_count: i32,
        payload_len: usize,
        producer: Option<(i64, i16, i32)>,
    ) -> Vec<u8> {
        let mut bytes = vec![0u8; HEADER_SIZE + payload_len];
        for (i, b) in bytes[HEADER_SIZE..].iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        let len = bytes.len();
        let h = header_mut(&mut bytes).unwrap();
        h.base_offset.set(0);
        h.batch_length.set((len - LOG_OVERHEAD) as i32);
        h.partition_leader_epoch.set(-1);
        h.magic = MAGIC_V2;
        h.attributes.set(0);
        h.last_offset_delta.set(record_count - 1);
        h.base_timestamp.set(1_700_000_000_000);
        h.max_timestamp
            .set(1_700_000_000_000 + i64::from(record_count));
        let (pid, epoch, seq) = producer.unwrap_or((NO_PRODUCER_ID, -1, NO_SEQUENCE));
        h.producer_id.set(pid);
        h.producer_epoch.set(epoch);
        h.base_sequence.set(seq);
        h.record_count.set(record_count);
        let crc = compute_crc(&bytes);
        header_mut(&mut bytes).unwrap().crc.set(crc);
        bytes
    }

    #[test]
    fn valid_batch_passes() {
        let b = make_batch(5, 100, None);
        assert_eq!(validate(&b, 1 << 20), Ok(b.len()));
        let h = header(&b).unwrap();
        assert_eq!(h.record_count(), 5);
        assert_eq!(h.last_offset(), 4);
    }

    #[test]
    fn corrupt_crc_is_rejected() {
        let mut b = make_batch(1, 10, None);
        *b.last_mut().unwrap() ^= 0xff;
        let err = validate(&b, 1 << 20).unwrap_err();
        assert!(matches!(err, BatchError::CrcMismatch { .. }));
        assert_eq!(err.error_code(), crate::ErrorCode::CorruptMessage);
    }

    #[test]
    fn truncated_and_short_batches_are_rejected() {
        let b = make_batch(1, 10, None);
        assert!(matches!(
            validate(&b[..30], 1 << 20),
            Err(BatchError::TruncatedHeader { .. })
        ));
        assert!(matches!(
            validate(&b[..b.len() - 1], 1 << 20),
            Err(BatchError::TruncatedBatch { .. })
        ));
        let mut short = b.clone();
        header_mut(&mut short).unwrap().batch_length.set(10);
        assert!(matches!(
            validate(&short, 1 << 20),
            Err(BatchError::LengthTooSmall { .. })
        ));
    }

    #[test]
    fn wrong_magic_and_count_are_rejected() {
        let mut b = make_batch(3, 10, None);
        header_mut(&mut b).unwrap().magic = 1;
        assert_eq!(
            validate(&b, 1 << 20),
            Err(BatchError::UnsupportedMagic { magic: 1 })
        );
        let mut b = make_batch(3, 10, None);
        header_mut(&mut b).unwrap().record_count.set(7);
        let crc = compute_crc(&b);
        header_mut(&mut b).unwrap().crc.set(crc);
        assert!(matches!(
            validate(&b, 1 << 20),
            Err(BatchError::CountMismatch { .. })
        ));
    }

    #[test]
    fn oversized_batch_is_rejected() {
        let b = make_batch(1, 1000, None);
        let err = validate(&b, 500).unwrap_err();
        assert_eq!(err.error_code(), crate::ErrorCode::MessageTooLarge);
    }

    #[test]
    fn assign_offsets_keeps_crc_valid() {
        let mut b = make_batch(4, 50, None);
        assign_offsets(&mut b, 1234, 7, None);
        assert_eq!(validate(&b, 1 << 20), Ok(b.len()));
        let h = header(&b).unwrap();
        assert_eq!(
            (
                h.base_offset(),
                h.last_offset(),
                h.partition_leader_epoch.get()
            ),
            (1234, 1237, 7)
        );
        assign_offsets(&mut b, 10, 0, Some(42));
        assert_eq!(validate(&b, 1 << 20), Ok(b.len()));
        let h = header(&b).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp(), 42);
    }

    #[test]
    fn last_sequence_wraps() {
        let mut b = make_batch(3, 0, Some((1, 0, i32::MAX - 1)));
        let h = header(&b).unwrap();
        assert_eq!(h.last_sequence(), 0);
        header_mut(&mut b).unwrap().base_sequence.set(NO_SEQUENCE);
        assert_eq!(header(&b).unwrap().last_sequence(), NO_SEQUENCE);
    }

    proptest! {
        /// Validation never panics on arbitrary bytes, and whatever it accepts frames
        /// consistently.
        #[test]
        fn validate_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(size) = validate(&bytes, 1 << 20) {
                prop_assert!(size <= bytes.len());
                prop_assert_eq!(frame_size(&bytes), Ok(size));
            }
        }

        #[test]
        fn frames_walks_concatenated_batches(counts in proptest::collection::vec(1i32..20, 1..8)) {
            let batches: Vec<Vec<u8>> = counts.iter().map(|&c| make_batch(c, c as usize * 3, None)).collect();
            let joined: Vec<u8> = batches.concat();
            let sizes: Vec<usize> = frames(&joined).map(|r| r.unwrap().1).collect();
            prop_assert_eq!(sizes, batches.iter().map(Vec::len).collect::<Vec<_>>());
        }
    }
}
