//! Kafka's rules for topic administration, as pure functions. Each failure carries the
//! error code Kafka answers with.

use sluice_core::limits::{MAX_PARTITIONS_PER_TOPIC, MAX_TOPIC_NAME_LEN};
use sluice_core::ErrorCode;

use crate::error::ControlError;

/// The consumer-group offsets topic.
pub const CONSUMER_OFFSETS_TOPIC: &str = "__consumer_offsets";
/// The transaction log topic.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// Whether `name` is one of Kafka's internal topics. Other names starting with `__` are
/// ordinary topics.
pub fn is_internal_topic(name: &str) -> bool {
    name == CONSUMER_OFFSETS_TOPIC || name == TRANSACTION_STATE_TOPIC
}

/// Kafka's topic name rule (`Topic.validate`): 1 to 249 characters from
/// `[a-zA-Z0-9._-]`, and not `.` or `..`. Fails with INVALID_TOPIC_EXCEPTION.
pub fn validate_topic_name(name: &str) -> Result<(), ControlError> {
    let invalid =
        |message: String| Err(ControlError::new(ErrorCode::InvalidTopicException, message));
    if name.is_empty() {
        return invalid("Topic name is illegal, it can't be empty".into());
    }
    if name == "." || name == ".." {
        return invalid(format!("Topic name cannot be \".\" or \"..\": {name:?}"));
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return invalid(format!(
            "Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME_LEN} characters"
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return invalid(format!(
            "Topic name {name:?} is illegal, it contains a character other than ASCII \
             alphanumerics, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Kafka refuses a topic whose name equals an existing one once `.` is read as `_`
/// (their metric names would collide).
pub fn collision_key(name: &str) -> String {
    name.replace('.', "_")
}

/// The partition count of a new topic: `requested`, or `default` for -1.
pub fn resolve_partitions(requested: i32, default: i32) -> Result<i32, ControlError> {
    let count = if requested == -1 { default } else { requested };
    if count < 1 {
        return Err(ControlError::new(
            ErrorCode::InvalidPartitions,
            format!("Number of partitions must be larger than 0, got {count}."),
        ));
    }
    check_partition_limit(count)?;
    Ok(count)
}

/// The bound of [`MAX_PARTITIONS_PER_TOPIC`].
pub fn check_partition_limit(count: i32) -> Result<(), ControlError> {
    if count > MAX_PARTITIONS_PER_TOPIC {
        return Err(ControlError::new(
            ErrorCode::InvalidPartitions,
            format!("Number of partitions {count} exceeds the limit of {MAX_PARTITIONS_PER_TOPIC} per topic."),
        ));
    }
    Ok(())
}

/// The replication factor of a new topic: `requested`, or `default` for -1; at least 1
/// and at most the number of live brokers.
pub fn resolve_replication_factor(
    requested: i16,
    default: i16,
    live_brokers: usize,
) -> Result<i16, ControlError> {
    let factor = if requested == -1 { default } else { requested };
    if factor < 1 {
        return Err(ControlError::new(
            ErrorCode::InvalidReplicationFactor,
            format!("Replication factor must be larger than 0, got {factor}."),
        ));
    }
    if factor as usize > live_brokers {
        return Err(ControlError::new(
            ErrorCode::InvalidReplicationFactor,
            format!("Replication factor: {factor} larger than available brokers: {live_brokers}."),
        ));
    }
    Ok(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        let long = "a".repeat(MAX_TOPIC_NAME_LEN);
        for good in [
            "t",
            "a.b_c-D9",
            "__consumer_offsets",
            "__private",
            long.as_str(),
        ] {
            assert!(validate_topic_name(good).is_ok(), "{good}");
        }
        let too_long = "a".repeat(MAX_TOPIC_NAME_LEN + 1);
        for bad in ["", ".", "..", "a b", "a/b", "é", "t\n", too_long.as_str()] {
            let error = validate_topic_name(bad).unwrap_err();
            assert_eq!(error.code, ErrorCode::InvalidTopicException, "{bad:?}");
        }
    }

    #[test]
    fn internal_topics() {
        assert!(is_internal_topic("__consumer_offsets"));
        assert!(is_internal_topic("__transaction_state"));
        assert!(!is_internal_topic("__other"));
        assert!(!is_internal_topic("consumer_offsets"));
    }

    #[test]
    fn partitions_and_replication_factor() {
        assert_eq!(resolve_partitions(-1, 3), Ok(3));
        assert_eq!(resolve_partitions(5, 3), Ok(5));
        for bad in [0, -2, MAX_PARTITIONS_PER_TOPIC + 1] {
            assert_eq!(
                resolve_partitions(bad, 3).unwrap_err().code,
                ErrorCode::InvalidPartitions
            );
        }
        assert_eq!(resolve_replication_factor(-1, 1, 1), Ok(1));
        assert_eq!(resolve_replication_factor(1, 3, 1), Ok(1));
        for (requested, default) in [(0, 1), (-2, 1), (2, 1), (-1, 3)] {
            assert_eq!(
                resolve_replication_factor(requested, default, 1)
                    .unwrap_err()
                    .code,
                ErrorCode::InvalidReplicationFactor,
                "{requested} {default}"
            );
        }
    }
}
