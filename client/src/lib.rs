//! A small blocking Kafka client on `std::net`, built on the `kafka-protocol` codecs.
//! It backs `sluice`'s Kafka-style tools and speaks to any Kafka broker.
//!
//! - `conn`: one TCP connection: framing, correlation ids, ApiVersions negotiation.
//! - `cluster`: `Client`: bootstrap, Metadata, a connection per broker, leader routing.
//! - `admin`: create/delete topics, add partitions, describe configs.
//! - `records`: v2 batch building and decoding, Kafka's key partitioner.
//! - `data`: produce, list offsets, fetch.
//! - `assignor`: the range assignor and the ConsumerProtocol encodings.
//! - `group`: coordinator lookup, group membership with a heartbeat thread, offset
//!   commit/fetch, and the group admin calls.
//!
//! Everything runs on the caller's thread except the heartbeat, which has its own
//! thread and connection. Nothing here knows the broker's runtime.

pub mod admin;
pub mod assignor;
pub mod cluster;
pub mod conn;
pub mod data;
pub mod error;
pub mod group;
pub mod records;

pub use admin::{ConfigEntry, NewTopic};
pub use cluster::{
    topic_id_string, BrokerInfo, Client, ClusterMetadata, PartitionMetadata, TopicMetadata,
};
pub use conn::{ClientConfig, Connection};
pub use data::{Acks, PartitionFetch, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP};
pub use error::{ClientError, KafkaError, Result};
pub use group::{
    GroupDescription, GroupMember, ListedGroup, MemberConfig, MemberDescription, Offsets,
};
pub use records::{ConsumerRecord, ProducerRecord};
