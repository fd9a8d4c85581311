//! The log's one error type and its mapping to Kafka error codes.

use sluice_core::batch::BatchError;
use sluice_core::ErrorCode;

/// Why a log operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A produced batch failed validation; nothing of the request was appended.
    #[error("invalid batch: {0}")]
    Batch(#[from] BatchError),
    /// A read or truncation named an offset outside `[log_start_offset, log_end_offset]`.
    #[error("offset {offset} is outside the log [{log_start_offset}, {log_end_offset}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: i64,
        log_end_offset: i64,
    },
    /// An idempotent producer's batch does not follow its last sequence.
    #[error("producer {producer_id}: sequence {found} does not follow {expected_after}")]
    OutOfOrderSequence {
        producer_id: i64,
        expected_after: i32,
        found: i32,
    },
    /// An idempotent producer's batch carries an epoch older than the one known.
    #[error("producer {producer_id}: epoch {found} is older than {current}")]
    InvalidProducerEpoch {
        producer_id: i64,
        current: i16,
        found: i16,
    },
    /// A follower append whose batches do not start at the log end or do not follow
    /// on from one another (Kafka's `UnexpectedAppendOffsetException`); nothing was
    /// appended. Only the replica fetcher sees it; the broker's replication state is
    /// wrong, so it maps to UNKNOWN_SERVER_ERROR rather than to a code a client
    /// would act on.
    #[error("replicated batch starts at offset {found}, expected {expected}")]
    UnexpectedAppendOffset { expected: i64, found: i64 },
    /// The request carried no batch at all.
    #[error("empty record set")]
    EmptyRecordSet,
    /// Offsets would overflow what a segment can address (more than `u32::MAX` offsets
    /// past its base): a broken invariant of the caller, refused rather than stored.
    #[error("offset {offset} cannot be stored in the segment based at {base_offset}")]
    OffsetOverflow { offset: i64, base_offset: i64 },
    /// A file of the log is damaged in a way recovery cannot repair.
    #[error("corrupt log file {path}: {reason}")]
    Corrupt { path: String, reason: String },
    /// An earlier write failed; the log takes no more appends until it is reopened
    /// (Kafka takes the log directory offline).
    #[error("log is offline after an I/O failure: {0}")]
    Offline(String),
    /// The append was cut off by a truncation before it was written (the partition
    /// changed leader); nothing of it remains.
    #[error("append cut off by a truncation to {end_offset}")]
    Truncated { end_offset: i64 },
    /// The log was closed or deleted.
    #[error("log is closed")]
    Closed,
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl LogError {
    /// The Kafka error code a client receives for this failure. The one mapping from
    /// log errors to the wire.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            LogError::Batch(e) => e.error_code(),
            LogError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
            LogError::OutOfOrderSequence { .. } => ErrorCode::OutOfOrderSequenceNumber,
            LogError::InvalidProducerEpoch { .. } => ErrorCode::InvalidProducerEpoch,
            LogError::EmptyRecordSet => ErrorCode::InvalidRecord,
            LogError::OffsetOverflow { .. } | LogError::UnexpectedAppendOffset { .. } => {
                ErrorCode::UnknownServerError
            }
            LogError::Corrupt { .. } | LogError::Offline(_) | LogError::Io(_) => {
                ErrorCode::KafkaStorageError
            }
            LogError::Truncated { .. } | LogError::Closed => ErrorCode::NotLeaderOrFollower,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_code_table() {
        let table: Vec<(LogError, ErrorCode)> = vec![
            (
                LogError::Batch(BatchError::CrcMismatch {
                    stored: 1,
                    computed: 2,
                }),
                ErrorCode::CorruptMessage,
            ),
            (
                LogError::Batch(BatchError::TooLarge { size: 2, limit: 1 }),
                ErrorCode::MessageTooLarge,
            ),
            (
                LogError::OffsetOutOfRange {
                    offset: 9,
                    log_start_offset: 0,
                    log_end_offset: 3,
                },
                ErrorCode::OffsetOutOfRange,
            ),
            (
                LogError::OutOfOrderSequence {
                    producer_id: 1,
                    expected_after: 4,
                    found: 7,
                },
                ErrorCode::OutOfOrderSequenceNumber,
            ),
            (
                LogError::InvalidProducerEpoch {
                    producer_id: 1,
                    current: 3,
                    found: 2,
                },
                ErrorCode::InvalidProducerEpoch,
            ),
            (LogError::EmptyRecordSet, ErrorCode::InvalidRecord),
            (
                LogError::UnexpectedAppendOffset {
                    expected: 4,
                    found: 7,
                },
                ErrorCode::UnknownServerError,
            ),
            (
                LogError::OffsetOverflow {
                    offset: 1 << 40,
                    base_offset: 0,
                },
                ErrorCode::UnknownServerError,
            ),
            (
                LogError::Corrupt {
                    path: "x".into(),
                    reason: "y".into(),
                },
                ErrorCode::KafkaStorageError,
            ),
            (LogError::Offline("z".into()), ErrorCode::KafkaStorageError),
            (
                LogError::Io(std::io::Error::other("disk")),
                ErrorCode::KafkaStorageError,
            ),
            (LogError::Closed, ErrorCode::NotLeaderOrFollower),
            (
                LogError::Truncated { end_offset: 3 },
                ErrorCode::NotLeaderOrFollower,
            ),
        ];
        for (err, code) in table {
            assert_eq!(err.error_code(), code, "{err}");
        }
    }
}
