//! Identities: partitions, shards, and which shard owns which partition.

use std::fmt;
use std::sync::Arc;

/// Index of a shard (one pinned executor per core), `0..shard_count`.
pub type ShardId = usize;

/// A partition of a topic. The topic name is shared, so cloning is cheap.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: Arc<str>,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<Arc<str>>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    /// The partition's directory name under a log dir: `<topic>-<partition>`.
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }

    /// Parses a directory name made by [`TopicPartition::dir_name`].
    pub fn from_dir_name(name: &str) -> Option<Self> {
        let (topic, partition) = name.rsplit_once('-')?;
        let partition: i32 = partition.parse().ok()?;
        if topic.is_empty() || partition < 0 {
            return None;
        }
        Some(TopicPartition::new(topic, partition))
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// The shard that owns a partition. Partitions of one topic are spread round-robin
/// from a per-topic starting shard, so a topic with at least `shard_count` partitions
/// uses every core. The mapping depends only on the name, the partition and the shard
/// count, so every shard computes the same answer without asking anyone.
pub fn owner_shard(topic: &str, partition: i32, shard_count: usize) -> ShardId {
    assert!(shard_count > 0, "at least one shard");
    let start = crc32c::crc32c(topic.as_bytes()) as usize;
    (start.wrapping_add(partition as usize)) % shard_count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_name_round_trips_including_dashes() {
        let tp = TopicPartition::new("my-topic-1", 12);
        assert_eq!(tp.dir_name(), "my-topic-1-12");
        assert_eq!(TopicPartition::from_dir_name("my-topic-1-12"), Some(tp));
        assert_eq!(TopicPartition::from_dir_name("nodash"), None);
        assert_eq!(TopicPartition::from_dir_name("-3"), None);
    }

    #[test]
    fn partitions_of_a_topic_spread_over_shards() {
        let shards: std::collections::HashSet<_> = (0..8).map(|p| owner_shard("t", p, 4)).collect();
        assert_eq!(shards.len(), 4);
        assert_eq!(owner_shard("t", 3, 1), 0);
    }
}
