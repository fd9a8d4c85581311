//! Shared vocabulary of Sluice.
//!
//! Everything here is plain data and pure functions, usable on every shard and on the
//! control plane alike; nothing in this crate does I/O or knows about the runtime.
//!
//! - [`error`]: Kafka's error codes, the one place they are defined.
//! - [`batch`]: a zero-copy view of a Kafka v2 `RecordBatch` header, its validation
//!   (lengths, magic, CRC-32C) and the in-place offset rewrite done on append.
//! - [`ids`]: topic/partition identities and the partition-to-shard mapping.
//! - [`config`]: broker configuration with Kafka's `server.properties` key names, and
//!   the per-topic log configuration derived from it.
//! - [`limits`]: every fixed bound the broker enforces, with the reason for each.
//! - [`latency`]: a per-thread latency histogram (Prometheus buckets) for metrics.

pub mod batch;
pub mod config;
pub mod error;
pub mod ids;
pub mod latency;
pub mod limits;

pub use error::ErrorCode;
pub use ids::{ShardId, TopicPartition};
