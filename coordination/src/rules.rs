//! Kafka's rules for topic administration, as pure functions. Each failure carries the
//! error code Kafka answers with.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use sluice_core::config::{BrokerConfig, LogConfig};
use sluice_core::limits::{MAX_PARTITIONS_PER_TOPIC, MAX_TOPIC_NAME_LEN};
use sluice_core::ErrorCode;

use crate::error::ControlError;
use crate::metadata::{NewTopic, PartitionState, TopicMetadata};

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

/// The names that occur more than once in a request; Kafka answers each of their items
/// INVALID_REQUEST ([`duplicate_error`]).
pub fn duplicates<'a>(names: impl Iterator<Item = &'a str>) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut duplicated = BTreeSet::new();
    for name in names {
        if !seen.insert(name) {
            duplicated.insert(name.to_owned());
        }
    }
    duplicated
}

pub fn duplicate_error(name: &str) -> ControlError {
    ControlError::new(
        ErrorCode::InvalidRequest,
        format!("Duplicate topic {name:?} in the request."),
    )
}

/// DeleteTopics' answer to every name while `delete.topic.enable` is false.
pub fn deletion_disabled_error() -> ControlError {
    ControlError::new(
        ErrorCode::TopicDeletionDisabled,
        "Topic deletion is disabled (delete.topic.enable=false).",
    )
}

/// DeleteTopics' answer for a topic that does not exist.
pub fn unknown_topic_error() -> ControlError {
    ControlError::new(
        ErrorCode::UnknownTopicOrPartition,
        "This server does not host this topic-partition.",
    )
}

pub fn topic_exists_error(name: &str) -> ControlError {
    ControlError::new(
        ErrorCode::TopicAlreadyExists,
        format!("Topic '{name}' already exists."),
    )
}

/// The names CreateTopics checks each new topic's name against: the existing topics,
/// and by [`collision_key`] those and the topics taken earlier in the same request.
pub struct TopicNames<'a> {
    existing: &'a BTreeMap<Arc<str>, Arc<TopicMetadata>>,
    collision_keys: BTreeMap<String, Arc<str>>,
}

impl<'a> TopicNames<'a> {
    pub fn new(existing: &'a BTreeMap<Arc<str>, Arc<TopicMetadata>>) -> TopicNames<'a> {
        let collision_keys = existing
            .keys()
            .map(|name| (collision_key(name), name.clone()))
            .collect();
        TopicNames {
            existing,
            collision_keys,
        }
    }

    /// Kafka's checks of a new topic's name: valid ([`validate_topic_name`]), not an
    /// existing topic (TOPIC_ALREADY_EXISTS), not colliding with one
    /// (INVALID_TOPIC_EXCEPTION).
    pub fn check(&self, name: &str) -> Result<(), ControlError> {
        validate_topic_name(name)?;
        if self.existing.contains_key(name) {
            return Err(topic_exists_error(name));
        }
        if let Some(existing) = self.collision_keys.get(&collision_key(name)) {
            return Err(ControlError::new(
                ErrorCode::InvalidTopicException,
                format!("Topic '{name}' collides with existing topic: {existing}"),
            ));
        }
        Ok(())
    }

    /// Takes `name` for the rest of the request: later names colliding with it fail.
    pub fn take(&mut self, name: &Arc<str>) {
        self.collision_keys
            .insert(collision_key(name), name.clone());
    }
}

/// The metadata of a new topic of CreateTopics whose name passed [`TopicNames::check`]:
/// its partition count and replication factor (the request's, or the broker's
/// `num.partitions` and `default_replication_factor` for -1; at most `live_brokers`
/// replicas), its log configuration (INVALID_CONFIG if a config is bad), topic id `id`,
/// and the partition states `assign(partitions, replication_factor)` gives.
pub fn new_topic(
    topic: &NewTopic,
    config: &BrokerConfig,
    default_replication_factor: i16,
    live_brokers: usize,
    id: [u8; 16],
    assign: impl FnOnce(i32, i16) -> Vec<PartitionState>,
) -> Result<TopicMetadata, ControlError> {
    let partitions = resolve_partitions(topic.num_partitions, config.num_partitions)?;
    let replication_factor = resolve_replication_factor(
        topic.replication_factor,
        default_replication_factor,
        live_brokers,
    )?;
    let log_config = LogConfig::for_topic(&config.log, &topic.configs)
        .map_err(|error| ControlError::new(ErrorCode::InvalidConfig, error.to_string()))?;
    let partition_states = assign(partitions, replication_factor);
    assert_eq!(partition_states.len(), partitions as usize);
    Ok(TopicMetadata {
        name: topic.name.as_str().into(),
        id,
        partitions,
        replication_factor,
        configs: topic.configs.clone(),
        log_config,
        internal: is_internal_topic(&topic.name),
        partition_states,
    })
}

/// CreatePartitions' checks of growing topic `name` (`topic`: its metadata, if it
/// exists) to `count` partitions: the topic exists, `count` is larger than its
/// partition count and within [`MAX_PARTITIONS_PER_TOPIC`], and the topic is not
/// internal. Answers the topic's metadata.
pub fn check_new_partitions<'t>(
    name: &str,
    topic: Option<&'t TopicMetadata>,
    count: i32,
) -> Result<&'t TopicMetadata, ControlError> {
    let Some(topic) = topic else {
        return Err(ControlError::new(
            ErrorCode::UnknownTopicOrPartition,
            format!("The topic '{name}' does not exist."),
        ));
    };
    if count < topic.partitions {
        return Err(ControlError::new(
            ErrorCode::InvalidPartitions,
            format!(
                "Topic currently has {} partitions, which is higher than the requested {count}.",
                topic.partitions
            ),
        ));
    }
    if count == topic.partitions {
        return Err(ControlError::new(
            ErrorCode::InvalidPartitions,
            format!("Topic already has {} partitions.", topic.partitions),
        ));
    }
    if topic.internal {
        return Err(ControlError::new(
            ErrorCode::InvalidPartitions,
            format!(
                "The partition count of internal topic {name} is fixed: groups map to its partitions by hash."
            ),
        ));
    }
    check_partition_limit(count)?;
    Ok(topic)
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

    fn topic(name: &str, partitions: i32) -> NewTopic {
        NewTopic {
            name: name.into(),
            num_partitions: partitions,
            replication_factor: -1,
            configs: Default::default(),
        }
    }

    fn metadata(name: &str, partitions: i32) -> Arc<TopicMetadata> {
        let config = BrokerConfig::default();
        let states = |count: i32, _| vec![PartitionState::single(0); count as usize];
        Arc::new(new_topic(&topic(name, partitions), &config, 1, 1, [1; 16], states).unwrap())
    }

    #[test]
    fn duplicated_names() {
        let names = ["a", "b", "a", "c", "a"];
        let duplicated = duplicates(names.into_iter());
        assert_eq!(duplicated.into_iter().collect::<Vec<_>>(), vec!["a"]);
        assert_eq!(duplicate_error("a").code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn new_topic_names_are_checked_against_existing_and_taken_ones() {
        let existing: BTreeMap<Arc<str>, Arc<TopicMetadata>> =
            [("a.b".into(), metadata("a.b", 1))].into_iter().collect();
        let mut names = TopicNames::new(&existing);
        let code = |names: &TopicNames, name| names.check(name).unwrap_err().code;
        assert_eq!(code(&names, "a.b"), ErrorCode::TopicAlreadyExists);
        assert_eq!(code(&names, "a_b"), ErrorCode::InvalidTopicException);
        assert_eq!(code(&names, ".."), ErrorCode::InvalidTopicException);
        assert!(names.check("c.d").is_ok());
        names.take(&"c.d".into());
        assert_eq!(code(&names, "c_d"), ErrorCode::InvalidTopicException);
    }

    #[test]
    fn new_topic_metadata_takes_the_defaults() {
        let config = BrokerConfig::default();
        let states = |count: i32, factor: i16| {
            assert_eq!(factor, 1);
            vec![PartitionState::single(7); count as usize]
        };
        let made = new_topic(
            &topic("__consumer_offsets", -1),
            &config,
            1,
            1,
            [3; 16],
            states,
        )
        .unwrap();
        assert_eq!(made.partitions, config.num_partitions);
        assert_eq!(made.partition_states.len(), config.num_partitions as usize);
        assert_eq!((made.id, made.replication_factor), ([3; 16], 1));
        assert!(made.internal);
        let mut bad_config = topic("t", 1);
        bad_config
            .configs
            .insert("retention.ms".into(), "soon".into());
        let refused = new_topic(&bad_config, &config, 1, 1, [3; 16], |_, _| {
            panic!("a refused topic gets no assignment")
        });
        assert_eq!(refused.unwrap_err().code, ErrorCode::InvalidConfig);
        let refused = new_topic(&topic("t", 1), &config, 2, 1, [3; 16], |_, _| {
            panic!("a refused topic gets no assignment")
        });
        assert_eq!(
            refused.unwrap_err().code,
            ErrorCode::InvalidReplicationFactor
        );
    }

    #[test]
    fn new_partitions() {
        let t = metadata("t", 2);
        let internal = metadata("__consumer_offsets", 2);
        let code = |topic: Option<&TopicMetadata>, count| {
            check_new_partitions("t", topic, count).unwrap_err().code
        };
        assert_eq!(code(None, 3), ErrorCode::UnknownTopicOrPartition);
        for count in [1, 2, MAX_PARTITIONS_PER_TOPIC + 1] {
            assert_eq!(
                code(Some(&t), count),
                ErrorCode::InvalidPartitions,
                "{count}"
            );
        }
        assert_eq!(code(Some(&internal), 3), ErrorCode::InvalidPartitions);
        assert_eq!(
            check_new_partitions("t", Some(&t), 3).unwrap().partitions,
            2
        );
    }
}
