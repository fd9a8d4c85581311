//! Sluice's control plane for a single node: cluster metadata, topic administration and
//! producer ids.
//!
//! The control plane runs on a std thread of its own (never on a shard) and owns the
//! cluster metadata. Shards never see it mutably: after every change the control thread
//! builds an immutable [`MetadataSnapshot`], pushes it to every shard and waits until
//! each shard has created or deleted its partition logs, and only then answers the
//! request that caused the change. A produce sent right after CreateTopics therefore
//! finds its partition.
//!
//! Modules:
//! - `metadata`: the snapshot shards read ([`MetadataSnapshot`], [`TopicMetadata`],
//!   [`BrokerEndpoint`]).
//! - `rules`: Kafka's validation of topic names, partition counts and replication
//!   factors, as pure functions returning [`ControlError`]s.
//! - `store`: the embedded metadata store, one JSON file in the first log dir written
//!   atomically, plus Kafka's `meta.properties`.
//! - `control`: the control thread, its request type [`ControlRequest`], the
//!   [`ControlHandle`] shards use to reach it, and [`start`].
//! - `zk`: the cluster control plane behind the same [`start`] when
//!   `zookeeper.connect` is set: Kafka's ZooKeeper layout, broker registration,
//!   controller election and the controller's leader/ISR decisions.
//! - `error`: [`CoordinationError`] (the control plane cannot run) and [`ControlError`]
//!   (one item of a request failed; that is data in the answer).
//! - [`group`]: the classic consumer-group protocol as a state machine without I/O,
//!   run by the shard owning the group's `__consumer_offsets` partition (not by the
//!   control thread), and the record layouts of that topic.
//!
//! Invariants: only the control thread writes the metadata store; a snapshot's version
//! grows by one with every change; a reply is sent only after every shard has applied
//! the snapshot that contains the change; a producer id is handed out only from a block
//! already persisted, so none repeats across restarts.

mod control;
mod error;
pub mod group;
mod metadata;
mod rules;
mod store;
mod zk;

pub use control::{
    start, ControlHandle, ControlRequest, SnapshotUpdate, Started, PRODUCER_ID_BLOCK_SIZE,
};
pub use error::{ControlError, CoordinationError};
pub use metadata::{BrokerEndpoint, MetadataSnapshot, NewTopic, PartitionState, TopicMetadata};
pub use rules::{
    is_internal_topic, validate_topic_name, CONSUMER_OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC,
};
pub use store::METADATA_FILE_NAME;
