//! The metadata snapshot: an immutable picture of the cluster that the control thread
//! builds after every change and hands to every shard as an `Arc`.

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_core::config::{LogConfig, TopicConfigs};

/// A topic as the cluster knows it. Immutable; shared by every snapshot that contains
/// it unchanged. Lives on every shard (read-only) and on the control thread.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicMetadata {
    pub name: Arc<str>,
    /// Kafka topic id (a random UUID v4, never all zeros).
    pub id: [u8; 16],
    /// Partitions `0..partitions`.
    pub partitions: i32,
    pub replication_factor: i16,
    /// The topic's own configs (CreateTopics `configs`), as given.
    pub configs: TopicConfigs,
    /// The broker's log defaults overlaid with `configs`.
    pub log_config: LogConfig,
    /// `__consumer_offsets` or `__transaction_state`.
    pub internal: bool,
    /// Replicas and leadership of partitions `0..partitions`, by index.
    pub partition_states: Vec<PartitionState>,
}

impl TopicMetadata {
    /// The state of `partition`, if the topic has it.
    pub fn partition(&self, partition: i32) -> Option<&PartitionState> {
        usize::try_from(partition)
            .ok()
            .and_then(|index| self.partition_states.get(index))
    }
}

/// One partition's replicas and leadership: the topic's assignment plus ZooKeeper's
/// `/brokers/topics/<topic>/partitions/<p>/state` in a cluster; the local broker alone
/// on a single node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    /// Assigned replicas (broker ids), the preferred leader first.
    pub replicas: Vec<i32>,
    /// The leader's broker id; -1 when no replica may lead (the partition is offline).
    pub leader: i32,
    /// Bumped by the controller with every leader change.
    pub leader_epoch: i32,
    /// The in-sync replicas, the leader included.
    pub isr: Vec<i32>,
    /// The version of the state znode: the compare-and-set token an ISR change must
    /// present (Kafka's zkVersion, later "partition epoch"). 0 on a single node.
    pub partition_epoch: i32,
}

impl PartitionState {
    /// The state of a partition that lives on broker `broker` alone.
    pub fn single(broker: i32) -> PartitionState {
        PartitionState {
            replicas: vec![broker],
            leader: broker,
            leader_epoch: 0,
            isr: vec![broker],
            partition_epoch: 0,
        }
    }

    pub fn is_replica(&self, broker: i32) -> bool {
        self.replicas.contains(&broker)
    }

    pub fn is_leader(&self, broker: i32) -> bool {
        self.leader == broker && broker >= 0
    }
}

/// A broker clients can reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerEndpoint {
    pub id: i32,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
}

/// The cluster metadata at one version. Built on the control thread; read on every
/// shard. Never mutated after construction.
#[derive(Debug, Clone)]
pub struct MetadataSnapshot {
    /// Grows by one with every change; a shard applies updates in this order.
    pub version: u64,
    pub cluster_id: String,
    pub controller_id: i32,
    pub brokers: Vec<BrokerEndpoint>,
    pub topics: BTreeMap<Arc<str>, Arc<TopicMetadata>>,
    /// Topic id -> name, for requests that name topics by id (Fetch v13+).
    topic_ids: BTreeMap<[u8; 16], Arc<str>>,
}

impl MetadataSnapshot {
    /// Builds a snapshot and its topic-id index.
    pub fn new(
        version: u64,
        cluster_id: String,
        controller_id: i32,
        brokers: Vec<BrokerEndpoint>,
        topics: BTreeMap<Arc<str>, Arc<TopicMetadata>>,
    ) -> MetadataSnapshot {
        let topic_ids: BTreeMap<[u8; 16], Arc<str>> = topics
            .values()
            .map(|topic| (topic.id, topic.name.clone()))
            .collect();
        assert_eq!(topic_ids.len(), topics.len(), "topic ids must be unique");
        for (name, topic) in &topics {
            assert_eq!(name, &topic.name, "topic map key must be the topic's name");
            assert_eq!(
                topic.partition_states.len(),
                topic.partitions as usize,
                "topic {name}: one state per partition"
            );
        }
        MetadataSnapshot {
            version,
            cluster_id,
            controller_id,
            brokers,
            topics,
            topic_ids,
        }
    }

    pub fn topic(&self, name: &str) -> Option<&Arc<TopicMetadata>> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: &[u8; 16]) -> Option<&Arc<TopicMetadata>> {
        self.topic_ids
            .get(id)
            .and_then(|name| self.topics.get(name))
    }

    /// The state of `topic`'s `partition`.
    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionState> {
        self.topics.get(topic).and_then(|t| t.partition(partition))
    }

    /// The broker with id `id`, if it is in the cluster.
    pub fn broker(&self, id: i32) -> Option<&BrokerEndpoint> {
        self.brokers.iter().find(|broker| broker.id == id)
    }
}

/// A topic to create (one entry of CreateTopics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    pub name: String,
    /// -1 takes `num.partitions`.
    pub num_partitions: i32,
    /// -1 takes `default.replication.factor`.
    pub replication_factor: i16,
    pub configs: TopicConfigs,
}
