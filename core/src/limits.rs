//! Fixed bounds the broker enforces, each with its reason. Configurable limits live in
//! [`crate::config`]; these are the ones that protect the process from its input.

/// Smallest possible request frame: api key, version, correlation id, client id length.
pub const MIN_REQUEST_FRAME_BYTES: usize = 2 + 2 + 4 + 2;

/// Requests read from one connection but not yet answered. librdkafka pipelines up to
/// `max.in.flight` (1,000,000 by default) requests; bounding it keeps one client from
/// holding unbounded response memory. Reading pauses while the window is full.
pub const MAX_IN_FLIGHT_REQUESTS_PER_CONNECTION: usize = 128;

/// Longest a Fetch may park waiting for `min_bytes` (`fetch.max.wait.ms` is capped so a
/// shutdown is never held up by a client's choice).
pub const MAX_FETCH_WAIT_MS: i32 = 30_000;

/// Topic names: Kafka's limit (`Topic.MAX_NAME_LENGTH`), which keeps
/// `<topic>-<partition>` a legal file name.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Partitions a single topic may have. Kafka has no hard limit; every partition costs
/// open files and memory here, so refuse what would exhaust them rather than crash.
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 10_000;
