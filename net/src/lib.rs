//! The Kafka protocol server.
//!
//! Every shard runs [`server::run_shard`]: it listens on the shared port
//! (`SO_REUSEPORT`), places each connection it accepts on the next shard in turn, serves
//! the connections placed on it ([`conn`]), cuts frames
//! ([`frame`]), and dispatches each request through the API table ([`api`]) to one
//! handler module per Kafka API ([`handlers`]). Requests that touch partitions owned by
//! other shards are split by owner and the parts run there through the mesh of job
//! queues in [`shard`]; answers are gathered on the connection's shard and written in
//! request order.
//!
//! Invariants: a partition's log is touched only by its owning shard; handlers return
//! values and never touch sockets; per-partition failures are error codes in the
//! response, never connection errors.

pub mod api;
pub mod conn;
pub mod encode;
pub mod fetcher;
pub mod frame;
pub mod groups;
pub mod handlers;
pub mod metrics;
pub mod replica;
pub mod server;
pub mod shard;

pub use server::{run_shard, ShardContext};
pub use shard::Job;
