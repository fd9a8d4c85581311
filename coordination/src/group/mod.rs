//! Kafka's classic consumer-group protocol, without I/O.
//!
//! - [`state`]: [`GroupCoordinator`], the state machine of the groups whose
//!   `__consumer_offsets` partitions one shard owns (join, sync, heartbeat, leave,
//!   session and rebalance timeouts, static membership, committed offsets), driven by
//!   an injected clock.
//! - [`records`]: the key and value layouts Kafka writes to `__consumer_offsets`, and
//!   their framing into v2 record batches, for appending and for replay at load.
//!
//! The coordinator of a group is the owner of partition
//! [`partition_for_group`]`(group, offsets.topic.num.partitions)` of
//! `__consumer_offsets`; the net crate routes every group request there and performs
//! the appends and timers this module asks for.

pub mod records;
pub mod state;

pub use records::{GroupRecord, GroupValue, MemberValue, OffsetValue};
pub use state::{
    java_string_hash, parse_subscription_topics, partition_for_group, Effects, GroupConfig,
    GroupCoordinator, GroupDescription, GroupListing, GroupState, JoinRequest, JoinResult,
    JoinedMember, MemberDescription, PartitionStatus, Reply, SyncRequest, SyncResult, WaiterId,
};
