//! Follower fetchers: the follower half of replication (Kafka's `ReplicaFetcherThread`).
//!
//! Each shard has one [`Fetchers`]; it runs one task per *source* broker (a leader of
//! partitions this shard follows), and that task carries every partition the shard
//! follows from that leader over one TCP connection. Per partition the task:
//!
//! 1. **truncates** when it starts following a leader (a partition new to the set, a new
//!    leader, or a new leader epoch): it asks the leader OffsetForLeaderEpoch for the
//!    follower's latest epoch and cuts the divergent tail (KIP-101/279, see
//!    [`truncation_offset`]); a log without epochs is cut to its high watermark;
//! 2. **fetches** from its log end with Fetch v12 (`replica_id` = this broker), appends
//!    what arrives with the leader's offsets and epochs (`append_replicated`), and moves
//!    its high watermark to `min(leader high watermark, written offset)`.
//!
//! FENCED_LEADER_EPOCH (this broker's metadata is older than the leader's) pauses the
//! partition until [`Fetchers::update`] brings new leadership. Other partition errors,
//! including NOT_LEADER_OR_FOLLOWER and UNKNOWN_LEADER_EPOCH (the leader has not yet
//! applied the metadata that makes it leader), are retried after
//! `replica.fetch.backoff.ms`: pausing on them could wait forever for an update that
//! never comes. A connection failure or a round trip slower than the socket timeout
//! drops the connection; the task backs off and reconnects to the leader's current
//! endpoint.
//!
//! Everything here lives on its shard: [`Fetchers`] inside `Shard`, the tasks on the
//! same executor, the logs owned by that shard.
//!
//! Invariants: a response is applied to a partition only if that partition is still
//! followed from the same leader at the same epoch (the same [`Follow`]) and its log
//! end is still the offset fetched from; one log change (append or truncation) at a
//! time per partition, even across the tasks of an old and a new leader.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io;
use std::net::ToSocketAddrs;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures_lite::future;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
    RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use sluice_coordination::MetadataSnapshot;
use sluice_core::batch;
use sluice_core::config::BrokerConfig;
use sluice_core::ids::{ShardId, TopicPartition};
use sluice_core::ErrorCode;
use sluice_log::PartitionLog;
use sluice_rt::exec::{spawn_detached, yield_if_needed};
use sluice_rt::net::{AsyncWriteExt, TcpStream};
use sluice_rt::sync::Notify;
use sluice_rt::time::timeout;

use crate::frame::{FrameError, FrameReader};
use crate::handlers::offset_for_leader_epoch::{UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET};
use crate::handlers::topic_name;

/// Fetch version sent to leaders (Sluice peers serve it; no ApiVersions exchange).
pub const FETCH_VERSION: i16 = 12;
/// OffsetForLeaderEpoch version sent to leaders: the first that carries `replica_id`.
pub const OFFSET_FOR_LEADER_EPOCH_VERSION: i16 = 3;
/// A round trip may take the leader's long-poll wait plus this before it times out,
/// whatever `replica.socket.timeout.ms` says (Kafka requires the socket timeout to be
/// at least the fetch wait).
const ROUND_TRIP_MARGIN_MS: u64 = 1_000;
/// Fetch isolation level of a follower: it replicates everything written.
const READ_UNCOMMITTED: i8 = 0;
/// Full fetch requests: no incremental fetch session (KIP-227).
const NO_SESSION_ID: i32 = 0;
const NO_SESSION_EPOCH: i32 = -1;

/// A partition this shard follows, as the shard's replica roles hand it over.
pub struct FollowedPartition {
    pub tp: TopicPartition,
    /// The leader's broker id.
    pub leader: i32,
    pub leader_epoch: i32,
    pub log: Rc<PartitionLog>,
}

/// The follower fetchers of one shard: one task per source (leader) broker, carrying
/// every partition this shard follows from it. Lives inside `Shard`, on its core.
pub struct Fetchers {
    config: Arc<BrokerConfig>,
    shard_id: ShardId,
    /// By leader broker id.
    sources: RefCell<BTreeMap<i32, Rc<Source>>>,
    /// One per followed partition, kept across leader changes: the task of the old
    /// leader may still be applying a response when the new leader's starts truncating.
    locks: RefCell<HashMap<TopicPartition, Rc<LogLock>>>,
    shut_down: Cell<bool>,
}

impl Fetchers {
    pub fn new(config: Arc<BrokerConfig>, shard_id: ShardId) -> Rc<Fetchers> {
        Rc::new(Fetchers {
            config,
            shard_id,
            sources: RefCell::new(BTreeMap::new()),
            locks: RefCell::new(HashMap::new()),
            shut_down: Cell::new(false),
        })
    }

    /// The complete set of partitions this shard follows now. Partitions new to the set
    /// or whose leader or leader epoch changed are truncated (OffsetForLeaderEpoch)
    /// before they are fetched (again); partitions that left the set stop being
    /// fetched. Brokers' endpoints come from `snapshot`. Partitions without a leader
    /// (-1) wait for an update that names one.
    pub fn update(
        self: &Rc<Self>,
        snapshot: &Arc<MetadataSnapshot>,
        followed: Vec<FollowedPartition>,
    ) {
        if self.shut_down.get() {
            return;
        }
        let mut by_leader: BTreeMap<i32, Vec<FollowedPartition>> = BTreeMap::new();
        for f in followed {
            assert_ne!(
                f.leader, self.config.broker_id,
                "{}: a broker does not follow itself",
                f.tp
            );
            if f.leader >= 0 {
                by_leader.entry(f.leader).or_default().push(f);
            }
        }

        let mut locks = self.locks.borrow_mut();
        let mut old_locks = std::mem::take(&mut *locks);
        let mut sources = self.sources.borrow_mut();
        sources.retain(|leader, source| {
            let keep = by_leader.contains_key(leader);
            if !keep {
                source.stop();
            }
            keep
        });
        for (leader, partitions) in by_leader {
            let source = sources.entry(leader).or_insert_with(|| {
                let source = Rc::new(Source::new(self.config.clone(), self.shard_id, leader));
                spawn_detached(source.clone().run());
                source
            });
            let endpoint = snapshot.broker(leader).map(|b| (b.host.clone(), b.port));
            let endpoint_changed = *source.endpoint.borrow() != endpoint;
            *source.endpoint.borrow_mut() = endpoint;

            let mut current = source.partitions.borrow_mut();
            let mut next = BTreeMap::new();
            let mut changed = endpoint_changed || current.len() != partitions.len();
            for f in partitions {
                let lock = old_locks
                    .remove(&f.tp)
                    .unwrap_or_else(|| Rc::new(LogLock::default()));
                locks.insert(f.tp.clone(), lock.clone());
                let kept = current.remove(&f.tp).filter(|old| {
                    old.leader_epoch == f.leader_epoch && Rc::ptr_eq(&old.log, &f.log)
                });
                let follow = kept.unwrap_or_else(|| {
                    changed = true;
                    tracing::info!(
                        partition = %f.tp,
                        leader,
                        leader_epoch = f.leader_epoch,
                        shard = self.shard_id,
                        "following"
                    );
                    Rc::new(Follow {
                        tp: f.tp.clone(),
                        leader_epoch: f.leader_epoch,
                        log: f.log,
                        lock,
                        phase: Cell::new(Phase::Truncating),
                        retry_at: Cell::new(None),
                    })
                });
                next.insert(f.tp, follow);
            }
            *current = next;
            drop(current);
            if changed {
                source.changed.notify(usize::MAX);
            }
        }
    }

    /// Stops every fetch task (shutdown). Each stops at its next step; a log change
    /// under way completes first, and nothing is applied afterwards.
    pub fn shutdown(&self) {
        self.shut_down.set(true);
        for source in std::mem::take(&mut *self.sources.borrow_mut()).into_values() {
            source.stop();
        }
        self.locks.borrow_mut().clear();
    }
}

/// Where a followed partition is in its cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Must find the divergence point with the leader (OffsetForLeaderEpoch) first.
    Truncating,
    Fetching,
    /// The leader has a newer epoch than ours: wait for the metadata that says so.
    Fenced,
}

/// One partition followed from one leader at one leader epoch. A new leader or epoch
/// is a new `Follow`; responses for an old one are dropped.
struct Follow {
    tp: TopicPartition,
    leader_epoch: i32,
    log: Rc<PartitionLog>,
    lock: Rc<LogLock>,
    phase: Cell<Phase>,
    /// Not sent again before this instant (after an error).
    retry_at: Cell<Option<Instant>>,
}

impl Follow {
    fn retry_after(&self, delay: Duration) {
        self.retry_at.set(Some(Instant::now() + delay));
    }
}

/// Serialises the changes a fetcher makes to one log. Shard-local.
#[derive(Default)]
struct LogLock {
    held: Cell<bool>,
    released: Notify,
}

struct LogGuard<'a>(&'a LogLock);

impl LogLock {
    async fn acquire(&self) -> LogGuard<'_> {
        loop {
            if !self.held.get() {
                self.held.set(true);
                return LogGuard(self);
            }
            let listener = self.released.listen();
            if !self.held.get() {
                continue;
            }
            listener.await;
        }
    }
}

impl Drop for LogGuard<'_> {
    fn drop(&mut self) {
        self.0.held.set(false);
        self.0.released.notify(1);
    }
}

/// Why a round trip to the leader failed. Every variant drops the connection.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("the fetcher was stopped")]
    Stopped,
    #[error("leader address {0} resolves to nothing")]
    NoAddress(String),
    #[error("no answer within {0} ms")]
    TimedOut(u64),
    #[error("connection closed by the leader")]
    Closed,
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("bad response frame: {0}")]
    Frame(#[from] FrameError),
    #[error("response correlation id {found}, expected {expected}")]
    Correlation { expected: i32, found: i32 },
    #[error("codec: {0}")]
    Codec(String),
}

/// The fetch task of one leader broker and what it carries.
struct Source {
    leader: i32,
    config: Arc<BrokerConfig>,
    client_id: String,
    /// The leader's `(host, port)` from the latest snapshot; `None` while it is not a
    /// live broker.
    endpoint: RefCell<Option<(String, u16)>>,
    partitions: RefCell<BTreeMap<TopicPartition, Rc<Follow>>>,
    /// Fired when the partitions or the endpoint change, or the task must stop.
    changed: Notify,
    stopped: Cell<bool>,
}

impl Source {
    fn new(config: Arc<BrokerConfig>, shard_id: ShardId, leader: i32) -> Source {
        Source {
            leader,
            client_id: format!("sluice-replica-{}-{shard_id}", config.broker_id),
            config,
            endpoint: RefCell::new(None),
            partitions: RefCell::new(BTreeMap::new()),
            changed: Notify::new(),
            stopped: Cell::new(false),
        }
    }

    fn stop(&self) {
        self.stopped.set(true);
        self.changed.notify(usize::MAX);
    }

    /// Whether `follow` is still what this task fetches for its partition.
    fn is_current(&self, follow: &Rc<Follow>) -> bool {
        !self.stopped.get()
            && self
                .partitions
                .borrow()
                .get(&follow.tp)
                .is_some_and(|f| Rc::ptr_eq(f, follow))
    }

    fn backoff(&self) -> Duration {
        Duration::from_millis(self.config.replica_fetch_backoff_ms)
    }

    fn round_trip_timeout_ms(&self) -> u64 {
        let wait_ms = self.config.replica_fetch_wait_max_ms.max(0) as u64;
        self.config
            .replica_socket_timeout_ms
            .max(wait_ms + ROUND_TRIP_MARGIN_MS)
    }

    /// Resolves when the task must stop.
    async fn stopped(&self) {
        loop {
            let listener = self.changed.listen();
            if self.stopped.get() {
                return;
            }
            listener.await;
        }
    }

    /// Runs `fut` unless the task is stopped or the round-trip timeout passes first.
    async fn io<T>(
        &self,
        fut: impl Future<Output = Result<T, FetchError>>,
    ) -> Result<T, FetchError> {
        let timeout_ms = self.round_trip_timeout_ms();
        let raced = future::or(fut, async {
            self.stopped().await;
            Err(FetchError::Stopped)
        });
        timeout(Duration::from_millis(timeout_ms), raced)
            .await
            .unwrap_or(Err(FetchError::TimedOut(timeout_ms)))
    }

    /// Waits `replica.fetch.backoff.ms`, or less if the task is stopped.
    async fn back_off(&self) {
        let _ = timeout(self.backoff(), self.stopped()).await;
    }

    /// The partitions due for truncation and for fetching now, and the earliest time a
    /// partition waiting after an error becomes due.
    fn due(&self, now: Instant) -> (Vec<Rc<Follow>>, Vec<Rc<Follow>>, Option<Instant>) {
        let (mut truncating, mut fetching, mut next) = (Vec::new(), Vec::new(), None);
        for follow in self.partitions.borrow().values() {
            if let Some(at) = follow.retry_at.get() {
                if at > now {
                    next = Some(next.map_or(at, |n: Instant| n.min(at)));
                    continue;
                }
                follow.retry_at.set(None);
            }
            match follow.phase.get() {
                Phase::Truncating => truncating.push(follow.clone()),
                Phase::Fetching => fetching.push(follow.clone()),
                Phase::Fenced => {}
            }
        }
        (truncating, fetching, next)
    }

    /// The task: truncate what needs it, fetch the rest, until stopped.
    async fn run(self: Rc<Self>) {
        let mut conn: Option<Connection> = None;
        while !self.stopped.get() {
            let changed = self.changed.listen();
            let now = Instant::now();
            let (truncating, fetching, next_due) = self.due(now);
            if truncating.is_empty() && fetching.is_empty() {
                match next_due {
                    Some(at) => {
                        let _ = timeout(at.saturating_duration_since(now), changed).await;
                    }
                    None => changed.await,
                }
                continue;
            }
            let endpoint = self.endpoint.borrow().clone();
            let Some(endpoint) = endpoint else {
                // The leader is not a live broker: wait for a snapshot that changes that.
                let _ = timeout(self.backoff(), changed).await;
                continue;
            };
            if conn.as_ref().is_some_and(|c| c.endpoint != endpoint) {
                conn = None;
            }
            if conn.is_none() {
                let max_frame_bytes = self.config.socket_request_max_bytes as usize;
                match self
                    .io(Connection::connect(endpoint.clone(), max_frame_bytes))
                    .await
                {
                    Ok(c) => conn = Some(c),
                    Err(FetchError::Stopped) => return,
                    Err(e) => {
                        tracing::warn!(
                            leader = self.leader,
                            host = %endpoint.0,
                            port = endpoint.1,
                            error = %e,
                            "cannot connect to leader"
                        );
                        self.back_off().await;
                        continue;
                    }
                }
            }
            let c = conn.as_mut().expect("connected above");
            let step = if truncating.is_empty() {
                self.fetch(c, fetching).await
            } else {
                self.truncate(c, truncating).await
            };
            match step {
                Ok(()) => {}
                Err(FetchError::Stopped) => return,
                Err(e) => {
                    tracing::warn!(leader = self.leader, error = %e, "fetch from leader failed");
                    conn = None;
                    self.back_off().await;
                }
            }
            yield_if_needed().await;
        }
    }

    /// Asks the leader where our latest epochs end and cuts what diverges.
    async fn truncate(
        &self,
        conn: &mut Connection,
        follows: Vec<Rc<Follow>>,
    ) -> Result<(), FetchError> {
        let mut asked = Vec::with_capacity(follows.len());
        for follow in follows {
            match follow.log.latest_epoch() {
                // Nothing to compare: keep what is known committed (Kafka does the same).
                None => {
                    let high_watermark = follow.log.high_watermark();
                    self.apply_truncation(&follow, None, |_| Truncation {
                        offset: high_watermark,
                        again: false,
                    })
                    .await;
                }
                Some(epoch) => asked.push((follow, epoch)),
            }
        }
        if asked.is_empty() {
            return Ok(());
        }
        let request = offset_for_leader_epoch_request(
            self.config.broker_id,
            asked
                .iter()
                .map(|(f, epoch)| (&f.tp, f.leader_epoch, *epoch)),
        );
        let response: OffsetForLeaderEpochResponse = self
            .io(conn.round_trip(
                ApiKey::OffsetForLeaderEpoch,
                OFFSET_FOR_LEADER_EPOCH_VERSION,
                &self.client_id,
                &request,
            ))
            .await?;
        let mut answers = HashMap::new();
        for topic in &response.topics {
            for p in &topic.partitions {
                answers.insert((topic.topic.0.as_str(), p.partition), p);
            }
        }
        for (follow, requested) in asked {
            if !self.is_current(&follow) {
                continue;
            }
            let Some(answer) = answers.get(&(&*follow.tp.topic, follow.tp.partition)) else {
                tracing::warn!(partition = %follow.tp, "leader left the partition out of its OffsetForLeaderEpoch answer");
                follow.retry_after(self.backoff());
                continue;
            };
            if answer.error_code != ErrorCode::None.code() {
                self.partition_error(&follow, answer.error_code, "OffsetForLeaderEpoch");
                continue;
            }
            let (leader_epoch, end_offset) = (answer.leader_epoch, answer.end_offset);
            self.apply_truncation(&follow, Some(requested), |log| {
                truncation_offset(
                    leader_epoch,
                    end_offset,
                    |epoch| log.end_offset_for_epoch(epoch),
                    log.log_end_offset(),
                    log.high_watermark(),
                )
            })
            .await;
            yield_if_needed().await;
        }
        Ok(())
    }

    /// Truncates `follow`'s log where `decide` says (decided under the log lock, from
    /// the log as it is then), and moves the partition on to fetching unless it must
    /// ask again. `requested` is the epoch the leader was asked about.
    async fn apply_truncation(
        &self,
        follow: &Rc<Follow>,
        requested: Option<i32>,
        decide: impl FnOnce(&PartitionLog) -> Truncation,
    ) {
        let _guard = follow.lock.acquire().await;
        if !self.is_current(follow) {
            return;
        }
        let log = &follow.log;
        let decision = decide(log);
        let log_end_offset = log.log_end_offset();
        if decision.offset < log_end_offset {
            tracing::info!(
                partition = %follow.tp,
                from = log_end_offset,
                to = decision.offset,
                leader = self.leader,
                leader_epoch = follow.leader_epoch,
                "truncating divergent tail"
            );
            if let Err(e) = truncate_log(log, decision.offset).await {
                tracing::error!(partition = %follow.tp, error = %e, "cannot truncate");
                follow.retry_after(self.backoff());
                return;
            }
        }
        // Asking again only makes sense with a smaller latest epoch; otherwise this
        // truncation is the last.
        let again = decision.again
            && matches!((log.latest_epoch(), requested), (Some(now), Some(asked)) if now < asked);
        if !again {
            follow.phase.set(Phase::Fetching);
        }
    }

    /// One Fetch round trip for `follows`, applied partition by partition.
    async fn fetch(
        &self,
        conn: &mut Connection,
        follows: Vec<Rc<Follow>>,
    ) -> Result<(), FetchError> {
        let positions: Vec<Position> = follows
            .into_iter()
            .map(|follow| Position {
                fetch_offset: follow.log.log_end_offset(),
                log_start_offset: follow.log.log_start_offset(),
                follow,
            })
            .collect();
        let request = fetch_request(&self.config, &positions);
        let response: FetchResponse = self
            .io(conn.round_trip(ApiKey::Fetch, FETCH_VERSION, &self.client_id, &request))
            .await?;
        if response.error_code != ErrorCode::None.code() {
            tracing::warn!(
                leader = self.leader,
                error_code = response.error_code,
                "fetch refused"
            );
            for p in &positions {
                p.follow.retry_after(self.backoff());
            }
            return Ok(());
        }
        let index: HashMap<(&str, i32), &Position> = positions
            .iter()
            .map(|p| ((&*p.follow.tp.topic, p.follow.tp.partition), p))
            .collect();
        for topic in response.responses {
            for data in topic.partitions {
                let Some(position) = index.get(&(topic.topic.0.as_str(), data.partition_index))
                else {
                    continue;
                };
                self.apply_fetched(position, data).await;
                yield_if_needed().await;
            }
        }
        Ok(())
    }

    /// Applies one partition's part of a Fetch response.
    async fn apply_fetched(&self, position: &Position, data: PartitionData) {
        let follow = &position.follow;
        if !self.is_current(follow) {
            return;
        }
        if data.error_code == ErrorCode::OffsetOutOfRange.code() {
            return self.out_of_range(position, &data).await;
        }
        if data.error_code != ErrorCode::None.code() {
            return self.partition_error(follow, data.error_code, "Fetch");
        }
        let _guard = follow.lock.acquire().await;
        if !self.is_current(follow) {
            return;
        }
        let log = &follow.log;
        if log.log_end_offset() != position.fetch_offset {
            // The log moved while the fetch was in flight; fetch again from its end.
            return;
        }
        let records = data.records.unwrap_or_default();
        let records = whole_batches(&records);
        if !records.is_empty() {
            if let Err(e) = log.append_replicated(records).await {
                tracing::warn!(
                    partition = %follow.tp,
                    fetch_offset = position.fetch_offset,
                    error = %e,
                    "cannot append fetched batches; truncating again"
                );
                follow.phase.set(Phase::Truncating);
                follow.retry_after(self.backoff());
                return;
            }
        }
        if data.high_watermark >= 0 {
            log.advance_high_watermark(data.high_watermark);
        }
    }

    /// OFFSET_OUT_OF_RANGE: below the leader's log start, start over at it; past the
    /// leader's end, cut back to what the leader has.
    async fn out_of_range(&self, position: &Position, data: &PartitionData) {
        let follow = &position.follow;
        let _guard = follow.lock.acquire().await;
        if !self.is_current(follow) || follow.log.log_end_offset() != position.fetch_offset {
            return;
        }
        let log = &follow.log;
        let fetch_offset = position.fetch_offset;
        if data.log_start_offset >= 0 && fetch_offset < data.log_start_offset {
            tracing::info!(
                partition = %follow.tp,
                fetch_offset,
                leader_log_start = data.log_start_offset,
                "behind the leader's log start; starting over there"
            );
            if let Err(e) = log.truncate_fully_and_start_at(data.log_start_offset).await {
                tracing::error!(partition = %follow.tp, error = %e, "cannot reset log");
                follow.retry_after(self.backoff());
            }
        } else if data.high_watermark >= 0 && fetch_offset > data.high_watermark {
            // Ahead of the leader's end (Kafka cuts to the leader's log end offset; the
            // high watermark is at or below it and committed, so it is safe too).
            tracing::info!(
                partition = %follow.tp,
                fetch_offset,
                leader_high_watermark = data.high_watermark,
                "ahead of the leader; truncating to its high watermark"
            );
            if let Err(e) = truncate_log(log, data.high_watermark).await {
                tracing::error!(partition = %follow.tp, error = %e, "cannot truncate");
                follow.retry_after(self.backoff());
            }
        } else {
            // Nothing to go by: find the divergence point again, not in a hot loop.
            follow.phase.set(Phase::Truncating);
            follow.retry_after(self.backoff());
        }
    }

    /// A partition error in a leader's answer.
    fn partition_error(&self, follow: &Follow, error_code: i16, api: &str) {
        if error_code == ErrorCode::FencedLeaderEpoch.code() {
            tracing::info!(
                partition = %follow.tp,
                leader = self.leader,
                leader_epoch = follow.leader_epoch,
                api,
                "fenced by a newer leader epoch; waiting for metadata"
            );
            follow.phase.set(Phase::Fenced);
        } else {
            tracing::debug!(partition = %follow.tp, leader = self.leader, error_code, api, "retrying later");
            follow.retry_after(self.backoff());
        }
    }
}

/// Cuts `log` back to `offset`; below its start, the log starts over empty there
/// (Kafka's `truncateTo` does the same).
async fn truncate_log(log: &PartitionLog, offset: i64) -> Result<(), sluice_log::LogError> {
    let offset = offset.max(0);
    if offset < log.log_start_offset() {
        log.truncate_fully_and_start_at(offset).await
    } else {
        log.truncate_to(offset).await
    }
}

/// One partition of a Fetch request, with what it was sent with.
struct Position {
    follow: Rc<Follow>,
    fetch_offset: i64,
    log_start_offset: i64,
}

/// Where a follower truncates after an OffsetForLeaderEpoch answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Truncation {
    pub offset: i64,
    /// The follower does not know the epoch the leader answered with: it truncates to
    /// the end of its own largest epoch below it and asks again with its new latest.
    pub again: bool,
}

/// The truncation point for the leader's answer `(leader_epoch, leader_end_offset)`
/// (Kafka's `AbstractFetcherThread.getOffsetTruncationState`, KIP-279):
/// - the leader knows nothing (end offset -1): the follower's high watermark;
/// - no epoch in the answer (an old leader): the leader's end offset;
/// - the follower also has `leader_epoch`: where the first of the two copies of that
///   epoch ends, `min(follower end, leader end)`;
/// - the follower's largest epoch `<= leader_epoch` is smaller: the end of that one,
///   and ask again;
/// - the follower has no epoch that old: the leader's end offset.
///
/// Never past the follower's log end. `follower_end_for(e)` is the follower's
/// `end_offset_for_epoch(e)`.
pub(crate) fn truncation_offset(
    leader_epoch: i32,
    leader_end_offset: i64,
    follower_end_for: impl FnOnce(i32) -> Option<(i32, i64)>,
    log_end_offset: i64,
    high_watermark: i64,
) -> Truncation {
    let done = |offset: i64| Truncation {
        offset: offset.min(log_end_offset),
        again: false,
    };
    if leader_end_offset == UNDEFINED_EPOCH_OFFSET {
        return done(high_watermark);
    }
    if leader_epoch == UNDEFINED_EPOCH {
        return done(leader_end_offset);
    }
    match follower_end_for(leader_epoch) {
        Some((epoch, end)) if epoch == leader_epoch => done(end.min(leader_end_offset)),
        Some((_, end)) => Truncation {
            offset: end.min(log_end_offset),
            again: true,
        },
        None => done(leader_end_offset),
    }
}

/// The OffsetForLeaderEpoch request for `(partition, current leader epoch, epoch asked)`
/// triples, grouped by topic in the order given.
pub(crate) fn offset_for_leader_epoch_request<'a>(
    broker_id: i32,
    partitions: impl Iterator<Item = (&'a TopicPartition, i32, i32)>,
) -> OffsetForLeaderEpochRequest {
    let mut topics: Vec<OffsetForLeaderTopic> = Vec::new();
    for (tp, current_leader_epoch, leader_epoch) in partitions {
        let partition = OffsetForLeaderPartition::default()
            .with_partition(tp.partition)
            .with_current_leader_epoch(current_leader_epoch)
            .with_leader_epoch(leader_epoch);
        match topics.last_mut() {
            Some(t) if t.topic.0.as_str() == &*tp.topic => t.partitions.push(partition),
            _ => topics.push(
                OffsetForLeaderTopic::default()
                    .with_topic(topic_name(&tp.topic))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    OffsetForLeaderEpochRequest::default()
        .with_replica_id(broker_id.into())
        .with_topics(topics)
}

/// The follower's full Fetch request for `positions` (grouped by topic in the order
/// given).
fn fetch_request(config: &BrokerConfig, positions: &[Position]) -> FetchRequest {
    fetch_request_for(
        config,
        positions.iter().map(|p| {
            (
                &p.follow.tp,
                p.follow.leader_epoch,
                p.fetch_offset,
                p.log_start_offset,
            )
        }),
    )
}

/// [`fetch_request`] over `(partition, current leader epoch, fetch offset, log start
/// offset)`.
pub(crate) fn fetch_request_for<'a>(
    config: &BrokerConfig,
    partitions: impl Iterator<Item = (&'a TopicPartition, i32, i64, i64)>,
) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for (tp, current_leader_epoch, fetch_offset, log_start_offset) in partitions {
        let partition = FetchPartition::default()
            .with_partition(tp.partition)
            .with_current_leader_epoch(current_leader_epoch)
            .with_fetch_offset(fetch_offset)
            // Divergence is found with OffsetForLeaderEpoch, not in Fetch (KIP-595).
            .with_last_fetched_epoch(UNDEFINED_EPOCH)
            .with_log_start_offset(log_start_offset)
            .with_partition_max_bytes(config.replica_fetch_max_bytes);
        match topics.last_mut() {
            Some(t) if t.topic.0.as_str() == &*tp.topic => t.partitions.push(partition),
            _ => topics.push(
                FetchTopic::default()
                    .with_topic(topic_name(&tp.topic))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    FetchRequest::default()
        .with_replica_id(config.broker_id.into())
        .with_max_wait_ms(config.replica_fetch_wait_max_ms)
        .with_min_bytes(config.replica_fetch_min_bytes)
        .with_max_bytes(config.replica_fetch_response_max_bytes)
        .with_isolation_level(READ_UNCOMMITTED)
        .with_session_id(NO_SESSION_ID)
        .with_session_epoch(NO_SESSION_EPOCH)
        .with_topics(topics)
}

/// The whole batches at the start of `records`: a leader may cut a record set at its
/// size limit mid-batch; the cut batch comes again in the next fetch.
pub(crate) fn whole_batches(records: &[u8]) -> &[u8] {
    let mut end = 0;
    for frame in batch::frames(records) {
        match frame {
            Ok((pos, size)) => end = pos + size,
            // A batch whose header claims too small a length is passed on whole for
            // `append_replicated` to refuse; only a cut tail is dropped here.
            Err(batch::BatchError::LengthTooSmall { .. }) => return records,
            Err(_) => break,
        }
    }
    &records[..end]
}

/// Encodes a request frame: size prefix, header, body.
pub(crate) fn encode_request<R: Encodable>(
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: &str,
    request: &R,
) -> anyhow::Result<Bytes> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_string(client_id.to_owned())));
    let mut buf = BytesMut::new();
    buf.put_i32(0);
    header.encode(&mut buf, key.request_header_version(version))?;
    request.encode(&mut buf, version)?;
    let size = i32::try_from(buf.len() - 4)?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

/// A fetcher's connection to a leader: one request at a time.
struct Connection {
    stream: TcpStream,
    frames: FrameReader,
    endpoint: (String, u16),
    correlation_id: i32,
}

impl Connection {
    async fn connect(
        endpoint: (String, u16),
        max_frame_bytes: usize,
    ) -> Result<Connection, FetchError> {
        // Resolves here rather than in the runtime, which panics on an empty answer.
        let addr = (endpoint.0.as_str(), endpoint.1)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| FetchError::NoAddress(format!("{}:{}", endpoint.0, endpoint.1)))?;
        let stream = TcpStream::connect(addr).await.map_err(io::Error::from)?;
        stream.set_nodelay(true).map_err(io::Error::from)?;
        Ok(Connection {
            stream,
            frames: FrameReader::new(max_frame_bytes),
            endpoint,
            correlation_id: 0,
        })
    }

    /// Sends `request` and reads its response.
    async fn round_trip<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        client_id: &str,
        request: &Req,
    ) -> Result<Resp, FetchError> {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let frame = encode_request(key, version, self.correlation_id, client_id, request)
            .map_err(|e| FetchError::Codec(format!("{key:?} v{version} request: {e}")))?;
        self.stream.write_all(&frame).await?;
        self.stream.flush().await?;
        let mut body = self
            .frames
            .next_frame(&mut self.stream)
            .await?
            .ok_or(FetchError::Closed)?;
        let header = ResponseHeader::decode(&mut body, key.response_header_version(version))
            .map_err(|e| FetchError::Codec(format!("{key:?} response header: {e}")))?;
        if header.correlation_id != self.correlation_id {
            return Err(FetchError::Correlation {
                expected: self.correlation_id,
                found: header.correlation_id,
            });
        }
        Resp::decode(&mut body, version)
            .map_err(|e| FetchError::Codec(format!("{key:?} v{version} response: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::fetch_response::FetchableTopicResponse;
    use kafka_protocol::messages::offset_for_leader_epoch_response::{
        EpochEndOffset, OffsetForLeaderTopicResult,
    };
    use sluice_coordination::BrokerEndpoint;
    use sluice_core::config::LogConfig;
    use sluice_log::testing::make_batch;
    use sluice_rt::exec::spawn;
    use sluice_rt::net::TcpListener;

    use crate::handlers::offset_for_leader_epoch::epoch_end_offset;

    /// `end_offset_for_epoch` of a follower whose epochs are `(epoch, start)` pairs and
    /// whose log ends at `log_end_offset`.
    fn follower_end_for(
        epochs: &[(i32, i64)],
        log_end_offset: i64,
        epoch: i32,
    ) -> Option<(i32, i64)> {
        let i = epochs.partition_point(|&(e, _)| e <= epoch);
        (i > 0).then(|| {
            let end = epochs.get(i).map_or(log_end_offset, |&(_, s)| s);
            (epochs[i - 1].0, end)
        })
    }

    #[test]
    fn truncation_point_follows_kafka() {
        // Follower: epoch 1 from 0, epoch 2 from 10, epoch 4 from 20; log end 30, HW 15.
        let epochs = [(1, 0), (2, 10), (4, 20)];
        let decide = |leader_epoch, leader_end| {
            truncation_offset(
                leader_epoch,
                leader_end,
                |e| follower_end_for(&epochs, 30, e),
                30,
                15,
            )
        };
        let done = |offset| Truncation {
            offset,
            again: false,
        };
        // Same latest epoch: the shorter copy wins.
        assert_eq!(decide(4, 25), done(25));
        assert_eq!(decide(4, 40), done(30));
        // The leader's largest epoch <= ours is one we also have: where ours ends, or
        // the leader's if earlier.
        assert_eq!(decide(2, 18), done(18));
        assert_eq!(decide(2, 25), done(20));
        assert_eq!(decide(2, 9), done(9));
        // An epoch we never had (3): cut to the end of our largest below it, ask again.
        assert_eq!(
            decide(3, 25),
            Truncation {
                offset: 20,
                again: true
            }
        );
        // Older than every epoch of ours: the leader's end.
        assert_eq!(decide(0, 5), done(5));
        // The leader knows nothing: our high watermark.
        assert_eq!(decide(-1, -1), done(15));
        assert_eq!(decide(4, -1), done(15));
        // An answer without an epoch (old protocol): the leader's end.
        assert_eq!(decide(-1, 12), done(12));
    }

    #[test]
    fn requests_carry_the_follower_settings_and_round_trip() {
        let config = BrokerConfig {
            broker_id: 7,
            replica_fetch_max_bytes: 1234,
            replica_fetch_response_max_bytes: 56789,
            replica_fetch_wait_max_ms: 321,
            replica_fetch_min_bytes: 9,
            ..BrokerConfig::default()
        };
        let (a0, a1, b0) = (
            TopicPartition::new("a", 0),
            TopicPartition::new("a", 1),
            TopicPartition::new("b", 0),
        );
        let request = fetch_request_for(
            &config,
            [(&a0, 3, 100, 0), (&a1, 3, 7, 5), (&b0, 1, 0, 0)].into_iter(),
        );
        let frame = encode_request(
            ApiKey::Fetch,
            FETCH_VERSION,
            42,
            "sluice-replica-7-0",
            &request,
        )
        .unwrap();
        let mut body = frame.slice(4..);
        assert_eq!(
            i32::from_be_bytes(frame[..4].try_into().unwrap()) as usize,
            body.len()
        );
        let header = RequestHeader::decode(
            &mut body,
            ApiKey::Fetch.request_header_version(FETCH_VERSION),
        )
        .unwrap();
        assert_eq!(header.request_api_key, ApiKey::Fetch as i16);
        assert_eq!(header.request_api_version, FETCH_VERSION);
        assert_eq!(header.correlation_id, 42);
        assert_eq!(header.client_id.as_deref(), Some("sluice-replica-7-0"));
        let decoded = FetchRequest::decode(&mut body, FETCH_VERSION).unwrap();
        assert!(body.is_empty());
        assert_eq!(decoded, request);
        assert_eq!(decoded.replica_id.0, 7);
        assert_eq!(
            (decoded.max_wait_ms, decoded.min_bytes, decoded.max_bytes),
            (321, 9, 56789)
        );
        assert_eq!((decoded.session_id, decoded.session_epoch), (0, -1));
        let names: Vec<&str> = decoded.topics.iter().map(|t| t.topic.0.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        let a = &decoded.topics[0].partitions;
        assert_eq!(a.len(), 2);
        assert_eq!(
            (a[1].partition, a[1].current_leader_epoch, a[1].fetch_offset),
            (1, 3, 7)
        );
        assert_eq!((a[1].log_start_offset, a[1].partition_max_bytes), (5, 1234));
        assert_eq!(a[1].last_fetched_epoch, -1);

        let request = offset_for_leader_epoch_request(7, [(&a0, 3, 2), (&b0, 1, 1)].into_iter());
        let frame = encode_request(
            ApiKey::OffsetForLeaderEpoch,
            OFFSET_FOR_LEADER_EPOCH_VERSION,
            1,
            "x",
            &request,
        )
        .unwrap();
        let mut body = frame.slice(4..);
        RequestHeader::decode(
            &mut body,
            ApiKey::OffsetForLeaderEpoch.request_header_version(OFFSET_FOR_LEADER_EPOCH_VERSION),
        )
        .unwrap();
        let decoded =
            OffsetForLeaderEpochRequest::decode(&mut body, OFFSET_FOR_LEADER_EPOCH_VERSION)
                .unwrap();
        assert_eq!(decoded.replica_id.0, 7);
        assert_eq!(decoded.topics.len(), 2);
        let p = &decoded.topics[0].partitions[0];
        assert_eq!(
            (p.partition, p.current_leader_epoch, p.leader_epoch),
            (0, 3, 2)
        );
    }

    #[test]
    fn only_whole_batches_are_appended() {
        let mut records = make_batch(2, 50, None);
        let first = records.len();
        records.extend_from_slice(&make_batch(3, 50, None));
        assert_eq!(whole_batches(&records).len(), records.len());
        assert_eq!(whole_batches(&records[..records.len() - 1]).len(), first);
        assert_eq!(whole_batches(&records[..first + 20]).len(), first);
        assert!(whole_batches(&records[..first - 1]).is_empty());
        assert!(whole_batches(&[]).is_empty());
    }

    /// A leader that serves OffsetForLeaderEpoch and Fetch for one partition `t-0` from
    /// `log`, at leader epoch `epoch`, to connections on `listener`.
    async fn serve_leader(listener: TcpListener, log: Rc<PartitionLog>, epoch: Rc<Cell<i32>>) {
        loop {
            let Ok(mut stream) = listener.accept().await else {
                return;
            };
            let (log, epoch) = (log.clone(), epoch.clone());
            spawn_detached(async move {
                let mut frames = FrameReader::new(1 << 20);
                while let Ok(Some(mut frame)) = frames.next_frame(&mut stream).await {
                    let key = ApiKey::try_from(i16::from_be_bytes([frame[0], frame[1]])).unwrap();
                    let version = i16::from_be_bytes([frame[2], frame[3]]);
                    let header =
                        RequestHeader::decode(&mut frame, key.request_header_version(version))
                            .unwrap();
                    let mut out = BytesMut::new();
                    out.put_i32(0);
                    ResponseHeader::default()
                        .with_correlation_id(header.correlation_id)
                        .encode(&mut out, key.response_header_version(version))
                        .unwrap();
                    match key {
                        ApiKey::OffsetForLeaderEpoch => {
                            let request =
                                OffsetForLeaderEpochRequest::decode(&mut frame, version).unwrap();
                            let p = &request.topics[0].partitions[0];
                            let mut answer = EpochEndOffset::default().with_partition(0);
                            match epoch_end_offset(
                                &log,
                                epoch.get(),
                                p.current_leader_epoch,
                                p.leader_epoch,
                            ) {
                                Ok((e, end)) => {
                                    answer.leader_epoch = e;
                                    answer.end_offset = end;
                                }
                                Err(code) => answer.error_code = code.code(),
                            }
                            OffsetForLeaderEpochResponse::default()
                                .with_topics(vec![OffsetForLeaderTopicResult::default()
                                    .with_topic(topic_name("t"))
                                    .with_partitions(vec![answer])])
                                .encode(&mut out, version)
                                .unwrap();
                        }
                        ApiKey::Fetch => {
                            let request = FetchRequest::decode(&mut frame, version).unwrap();
                            let p = &request.topics[0].partitions[0];
                            let fenced = match p.current_leader_epoch.cmp(&epoch.get()) {
                                std::cmp::Ordering::Less => Some(ErrorCode::FencedLeaderEpoch),
                                std::cmp::Ordering::Greater => Some(ErrorCode::UnknownLeaderEpoch),
                                std::cmp::Ordering::Equal => None,
                            };
                            if fenced.is_none() && p.fetch_offset >= log.log_end_offset() {
                                let wait = Duration::from_millis(request.max_wait_ms as u64);
                                let _ = timeout(wait, log.notify().listen()).await;
                            }
                            let mut data = PartitionData::default()
                                .with_partition_index(0)
                                .with_high_watermark(log.high_watermark())
                                .with_log_start_offset(log.log_start_offset());
                            let max_bytes = p.partition_max_bytes as usize;
                            let read = match fenced {
                                Some(code) => Err(code),
                                None => log
                                    .read(p.fetch_offset, max_bytes, i64::MAX, true)
                                    .await
                                    .map_err(|e| e.error_code()),
                            };
                            match read {
                                Ok(records) => data.records = Some(records),
                                Err(code) => data.error_code = code.code(),
                            }
                            FetchResponse::default()
                                .with_responses(vec![FetchableTopicResponse::default()
                                    .with_topic(topic_name("t"))
                                    .with_partitions(vec![data])])
                                .encode(&mut out, version)
                                .unwrap();
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                    let size = (out.len() - 4) as i32;
                    out[..4].copy_from_slice(&size.to_be_bytes());
                    if stream.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    }

    /// Waits (bounded) until the follower's high watermark reaches `offset`.
    async fn wait_for_high_watermark(log: &PartitionLog, offset: i64) {
        let reached = timeout(Duration::from_secs(20), async {
            loop {
                let listener = log.notify().listen();
                if log.high_watermark() >= offset {
                    return;
                }
                listener.await;
            }
        })
        .await;
        assert!(
            reached.is_some(),
            "high watermark {} never reached {offset} (log end {})",
            log.high_watermark(),
            log.log_end_offset()
        );
    }

    fn follower_config() -> Arc<BrokerConfig> {
        Arc::new(BrokerConfig {
            broker_id: 2,
            replica_fetch_wait_max_ms: 100,
            replica_fetch_backoff_ms: 20,
            ..BrokerConfig::default()
        })
    }

    fn snapshot_with_leader(port: u16) -> Arc<MetadataSnapshot> {
        Arc::new(MetadataSnapshot::new(
            1,
            "cluster".into(),
            1,
            vec![BrokerEndpoint {
                id: 1,
                host: "127.0.0.1".into(),
                port,
                rack: None,
            }],
            BTreeMap::new(),
        ))
    }

    async fn open(dir: &std::path::Path, name: &str) -> Rc<PartitionLog> {
        PartitionLog::open(dir.join(name), LogConfig::default())
            .await
            .unwrap()
    }

    #[test]
    fn follower_cuts_its_divergent_tail_then_catches_up_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        sluice_rt::exec::block_on(async move {
            // Leader: epoch 1 at 0-2, epoch 3 at 3-4.
            let leader = open(&path, "leader").await;
            leader.append(&make_batch(3, 40, None), 1, 0).await.unwrap();
            // Follower: the same epoch-1 batch, then a tail of epoch 2 the leader never had.
            // Its high watermark stays at the shared part.
            let follower = open(&path, "follower").await;
            follower.set_replicated(true);
            let shared = leader.read(0, 1 << 20, i64::MAX, true).await.unwrap();
            follower.append_replicated(&shared).await.unwrap();
            follower
                .append(&make_batch(1, 40, None), 2, 0)
                .await
                .unwrap();
            follower.advance_high_watermark(3);
            leader.append(&make_batch(2, 40, None), 3, 0).await.unwrap();
            assert_eq!(follower.leader_epochs(), vec![(1, 0), (2, 3)]);
            // Shorter than the leader's log: only the epochs tell the tail diverges.
            assert_eq!(follower.log_end_offset(), 4);
            assert_eq!(follower.high_watermark(), 3);

            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let leader_epoch = Rc::new(Cell::new(3));
            let _leader_task = spawn(serve_leader(listener, leader.clone(), leader_epoch.clone()));

            let fetchers = Fetchers::new(follower_config(), 0);
            let tp = TopicPartition::new("t", 0);
            let followed = |log: &Rc<PartitionLog>, leader_epoch| {
                vec![FollowedPartition {
                    tp: tp.clone(),
                    leader: 1,
                    leader_epoch,
                    log: log.clone(),
                }]
            };
            let snapshot = snapshot_with_leader(port);
            fetchers.update(&snapshot, followed(&follower, 3));
            wait_for_high_watermark(&follower, 5).await;
            assert_eq!(follower.log_end_offset(), 5);
            assert_eq!(follower.leader_epochs(), leader.leader_epochs());
            let all = |log: Rc<PartitionLog>| async move {
                log.read(0, 1 << 20, i64::MAX, true).await.unwrap()
            };
            assert_eq!(all(follower.clone()).await, all(leader.clone()).await);

            // Later appends flow while the partition stays followed.
            leader.append(&make_batch(5, 40, None), 3, 0).await.unwrap();
            wait_for_high_watermark(&follower, 10).await;
            assert_eq!(all(follower.clone()).await, all(leader.clone()).await);

            // A new leader epoch fences fetches at the old one until the update that
            // brings it; then the follower checks its tail again and goes on.
            leader_epoch.set(4);
            leader.append(&make_batch(2, 40, None), 4, 0).await.unwrap();
            fetchers.update(&snapshot, followed(&follower, 4));
            wait_for_high_watermark(&follower, 12).await;
            assert_eq!(follower.leader_epochs(), vec![(1, 0), (3, 3), (4, 10)]);
            assert_eq!(all(follower.clone()).await, all(leader.clone()).await);

            fetchers.shutdown();
            follower.close().await.unwrap();
            leader.close().await.unwrap();
        });
    }

    #[test]
    fn follower_behind_the_leaders_log_start_starts_over_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        sluice_rt::exec::block_on(async move {
            let leader = open(&path, "leader").await;
            for _ in 0..3 {
                leader.append(&make_batch(2, 40, None), 1, 0).await.unwrap();
            }
            assert_eq!(leader.delete_records_before(4).await.unwrap(), 4);
            let follower = open(&path, "follower").await;
            follower.set_replicated(true);

            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let _leader_task = spawn(serve_leader(
                listener,
                leader.clone(),
                Rc::new(Cell::new(1)),
            ));
            let fetchers = Fetchers::new(follower_config(), 0);
            fetchers.update(
                &snapshot_with_leader(port),
                vec![FollowedPartition {
                    tp: TopicPartition::new("t", 0),
                    leader: 1,
                    leader_epoch: 1,
                    log: follower.clone(),
                }],
            );
            wait_for_high_watermark(&follower, 6).await;
            assert_eq!(follower.log_start_offset(), 4);
            assert_eq!(follower.log_end_offset(), 6);
            assert_eq!(
                follower.read(4, 1 << 20, i64::MAX, true).await.unwrap(),
                leader.read(4, 1 << 20, i64::MAX, true).await.unwrap()
            );
            fetchers.shutdown();
            follower.close().await.unwrap();
            leader.close().await.unwrap();
        });
    }
}
