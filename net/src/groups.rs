//! The group coordinator on the shards: routing a group request to the shard that owns
//! the group's `__consumer_offsets` partition, loading that partition's groups when
//! this broker becomes its leader (and unloading them when it stops leading it),
//! appending the records the state machine asks for and acknowledging them once
//! replicated, delivering parked JoinGroup/SyncGroup answers, and the timer task.
//!
//! One [`GroupShard`] per shard, holding the [`GroupCoordinator`] of the
//! `__consumer_offsets` partitions that shard owns and this broker leads: a group's
//! coordinator is the leader of its partition; elsewhere it is NOT_COORDINATOR. It
//! lives on its shard only; no `RefCell` borrow of it is held across an `.await`.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::future;

use sluice_coordination::group::{
    records, Effects, GroupConfig, GroupCoordinator, GroupRecord, JoinResult, PartitionStatus,
    Reply, SyncResult, WaiterId,
};
use sluice_coordination::{NewTopic, CONSUMER_OFFSETS_TOPIC};
use sluice_core::config::BrokerConfig;
use sluice_core::ids::TopicPartition;
use sluice_core::ErrorCode;
use sluice_log::PartitionLog;
use sluice_rt::exec::spawn_detached;
use sluice_rt::sync::{oneshot, Notify, Sender};
use sluice_rt::time::{now_ms, sleep};

use crate::replica::{await_high_watermark, Replication};
use crate::shard::Shard;

/// Longest the timer task sleeps without looking again.
const MAX_TIMER_SLEEP: Duration = Duration::from_secs(1);
/// Bytes read per step when loading a `__consumer_offsets` partition.
const LOAD_READ_BYTES: usize = 1 << 20;
/// `offsets.topic.segment.bytes` default.
const OFFSETS_SEGMENT_BYTES: &str = "104857600";
/// Kafka's `offsets.commit.timeout.ms` default: how long a coordinator append may wait
/// for the ISR to replicate it (COORDINATOR_NOT_AVAILABLE after).
const OFFSETS_COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// A shard's group coordinator state. Lives on its shard only.
pub struct GroupShard {
    coordinator: RefCell<GroupCoordinator>,
    joins: RefCell<HashMap<WaiterId, Sender<JoinResult>>>,
    syncs: RefCell<HashMap<WaiterId, Sender<SyncResult>>>,
    /// Notified when a deadline may have moved earlier, to wake the timer task.
    timers_changed: Notify,
    /// Origin of the monotonic clock given to the state machine.
    epoch: Instant,
    /// The load in progress of each partition being loaded, by id: a load task whose
    /// id is no longer there stops (its partition was unloaded, and maybe loaded again,
    /// meanwhile).
    loads: RefCell<HashMap<i32, u64>>,
    next_load: Cell<u64>,
}

impl GroupShard {
    pub fn new(config: &BrokerConfig) -> Rc<GroupShard> {
        Rc::new(GroupShard {
            coordinator: RefCell::new(GroupCoordinator::new(GroupConfig {
                offsets_partitions: config.offsets_topic_num_partitions,
                min_session_timeout_ms: config.group_min_session_timeout_ms,
                max_session_timeout_ms: config.group_max_session_timeout_ms,
                initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
                ..GroupConfig::default()
            })),
            joins: RefCell::new(HashMap::new()),
            syncs: RefCell::new(HashMap::new()),
            timers_changed: Notify::new(),
            epoch: Instant::now(),
            loads: RefCell::new(HashMap::new()),
            next_load: Cell::new(0),
        })
    }

    /// Milliseconds on the monotonic clock the state machine runs on.
    pub fn clock_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Runs `f` on the state machine (a short borrow; never across an await).
    pub fn with<T>(&self, f: impl FnOnce(&mut GroupCoordinator) -> T) -> T {
        let result = f(&mut self.coordinator.borrow_mut());
        self.timers_changed.notify(usize::MAX);
        result
    }

    /// Starts loading the groups of `__consumer_offsets` partition `partition`, which
    /// this broker now leads. Until the load ends its groups answer
    /// COORDINATOR_LOAD_IN_PROGRESS. As in Kafka, the load reads the whole log, past the
    /// high watermark: the new leader's log is the partition's from now on.
    pub fn start_load(self: &Rc<Self>, partition: i32, log: Rc<PartitionLog>) {
        self.coordinator.borrow_mut().begin_load(partition);
        let load = self.next_load.get() + 1;
        self.next_load.set(load);
        self.loads.borrow_mut().insert(partition, load);
        let this = self.clone();
        spawn_detached(async move {
            let current = || this.loads.borrow().get(&partition) == Some(&load);
            let mut offset = log.log_start_offset();
            let mut records = 0usize;
            let end = log.written_offset();
            while offset < end {
                if !current() {
                    return;
                }
                let bytes = match log.read(offset, LOAD_READ_BYTES, i64::MAX, true).await {
                    Ok(_) if !current() => return,
                    Ok(b) if !b.is_empty() => b,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::error!(partition, error = %e, "cannot read __consumer_offsets");
                        break;
                    }
                };
                let mut pos = 0;
                while let Some(h) = sluice_core::batch::header(&bytes[pos..]) {
                    offset = h.next_offset();
                    pos += h.total_size();
                    if pos >= bytes.len() {
                        break;
                    }
                }
                let now = this.clock_ms();
                let decoded = records::decode_batches(bytes, |at, record| match record {
                    Ok(record) => {
                        records += 1;
                        this.coordinator.borrow_mut().replay(partition, record, now);
                    }
                    Err(e) => {
                        tracing::warn!(partition, offset = at, error = %e, "skipping group record")
                    }
                });
                if let Err(e) = decoded {
                    tracing::error!(partition, error = %e, "cannot decode __consumer_offsets");
                    break;
                }
                sluice_rt::exec::yield_if_needed().await;
            }
            if !current() {
                return;
            }
            this.loads.borrow_mut().remove(&partition);
            this.coordinator.borrow_mut().finish_load(partition);
            this.timers_changed.notify(usize::MAX);
            tracing::debug!(partition, records, "loaded consumer groups");
        });
    }

    /// This broker no longer leads `partition` (or no longer hosts it).
    pub fn unload(&self, partition: i32) {
        self.loads.borrow_mut().remove(&partition);
        let effects = self.coordinator.borrow_mut().unload(partition);
        self.deliver(effects);
    }

    /// Appends the records of `effects` to `__consumer_offsets` (one batch per
    /// partition), then delivers the parked answers. Returns the first append error.
    pub async fn apply(&self, shard: &Shard, mut effects: Effects) -> Result<(), ErrorCode> {
        let records = std::mem::take(&mut effects.records);
        let result = append_records(shard, records).await;
        self.deliver(effects);
        result
    }

    fn deliver(&self, effects: Effects) {
        for (waiter, result) in effects.joins {
            if let Some(tx) = self.joins.borrow_mut().remove(&waiter) {
                let _ = tx.try_send(result);
            }
        }
        for (waiter, result) in effects.syncs {
            if let Some(tx) = self.syncs.borrow_mut().remove(&waiter) {
                let _ = tx.try_send(result);
            }
        }
    }
}

/// Registers the waiter of `reply` (if parked) before the effects are delivered, so an
/// answer produced by the same call is not lost. Returns the receiving half.
pub fn park<T>(
    map: &RefCell<HashMap<WaiterId, Sender<T>>>,
    reply: Reply<T>,
) -> Result<T, sluice_rt::sync::Receiver<T>> {
    match reply {
        Reply::Now(result) => Ok(result),
        Reply::Later(waiter) => {
            let (tx, rx) = oneshot();
            map.borrow_mut().insert(waiter, tx);
            Err(rx)
        }
    }
}

impl GroupShard {
    /// JoinGroup on this (the coordinator) shard: runs the state machine, appends,
    /// delivers, and waits for this member's answer.
    pub async fn join(
        &self,
        shard: &Shard,
        request: sluice_coordination::group::JoinRequest,
    ) -> JoinResult {
        let member_id = request.member_id.clone();
        let (now, wall) = (self.clock_ms(), now_ms());
        let mut effects = Effects::default();
        let reply = self.with(|c| c.join(now, wall, request, &mut effects));
        let parked = park(&self.joins, reply);
        let _ = self.apply(shard, effects).await;
        match parked {
            Ok(result) => result,
            Err(rx) => rx.recv().await.unwrap_or_else(|_| JoinResult {
                error: ErrorCode::NotCoordinator,
                generation_id: -1,
                protocol_type: None,
                protocol_name: None,
                leader: String::new(),
                member_id,
                members: Vec::new(),
            }),
        }
    }

    /// SyncGroup on this (the coordinator) shard.
    pub async fn sync(
        &self,
        shard: &Shard,
        request: sluice_coordination::group::SyncRequest,
    ) -> SyncResult {
        let (now, wall) = (self.clock_ms(), now_ms());
        let mut effects = Effects::default();
        let reply = self.with(|c| c.sync(now, wall, request, &mut effects));
        let parked = park(&self.syncs, reply);
        let stored = self.apply(shard, effects).await;
        match parked {
            Ok(mut result) => {
                if let Err(code) = stored {
                    result.error = code;
                }
                result
            }
            Err(rx) => rx.recv().await.unwrap_or(SyncResult {
                error: ErrorCode::NotCoordinator,
                protocol_type: None,
                protocol_name: None,
                assignment: Default::default(),
            }),
        }
    }
}

/// Appends group records to their `__consumer_offsets` partitions on this shard, which
/// must lead them, and returns once the high watermark covers them (acks=all: every ISR
/// member has them), as Kafka's coordinator does. Errors are what the group member
/// sees: NOT_COORDINATOR when this broker does not lead the partition (any more),
/// COORDINATOR_NOT_AVAILABLE when the ISR did not replicate the records in time.
pub async fn append_records(
    shard: &Shard,
    records: Vec<(i32, GroupRecord)>,
) -> Result<(), ErrorCode> {
    if records.is_empty() {
        return Ok(());
    }
    let mut by_partition: BTreeMap<i32, Vec<GroupRecord>> = BTreeMap::new();
    for (partition, record) in records {
        by_partition.entry(partition).or_default().push(record);
    }
    let mut result = Ok(());
    let mut written = Vec::with_capacity(by_partition.len());
    for (partition, records) in by_partition {
        let tp = TopicPartition::new(CONSUMER_OFFSETS_TOPIC, partition);
        let Some((replica, leader_epoch)) = shard
            .replica(&tp)
            .and_then(|r| r.leader_epoch().map(|epoch| (r, epoch)))
        else {
            result = Err(ErrorCode::NotCoordinator);
            continue;
        };
        let now = now_ms();
        let appended = match records::encode_batch(&records, now) {
            Ok(batch) => replica
                .log
                .append(&batch, leader_epoch, now)
                .await
                .map_err(|e| {
                    tracing::error!(partition = %tp, error = %e, "cannot append group records");
                    e.error_code()
                }),
            Err(e) => {
                tracing::error!(partition = %tp, error = %e, "cannot encode group records");
                Err(ErrorCode::UnknownServerError)
            }
        };
        match appended {
            Ok(info) => written.push((replica, info.last_offset)),
            Err(code) => result = Err(code),
        }
    }
    shard.appended().notify(usize::MAX);
    let deadline = Instant::now() + OFFSETS_COMMIT_TIMEOUT;
    for (replica, last_offset) in written {
        match await_high_watermark(shard, &replica, last_offset, deadline).await {
            Replication::Covered { .. } => {}
            Replication::NotLeader => result = Err(ErrorCode::NotCoordinator),
            Replication::TimedOut => {
                tracing::warn!(partition = %replica.tp, last_offset, "group records not replicated in time");
                result = Err(ErrorCode::CoordinatorNotAvailable);
            }
        }
    }
    result
}

/// Creates `__consumer_offsets` if it does not exist yet (Kafka does so on the first
/// FindCoordinator or group request). Its segments are kept forever: there is no log
/// compaction, and retention must not delete committed offsets.
pub async fn ensure_offsets_topic(shard: &Shard) -> Result<i32, ErrorCode> {
    if let Some(topic) = shard.topic(CONSUMER_OFFSETS_TOPIC) {
        return Ok(topic.partitions);
    }
    let configs = [
        ("retention.ms".to_string(), "-1".to_string()),
        (
            "segment.bytes".to_string(),
            OFFSETS_SEGMENT_BYTES.to_string(),
        ),
    ]
    .into_iter()
    .collect();
    let request = NewTopic {
        name: CONSUMER_OFFSETS_TOPIC.to_string(),
        num_partitions: shard.config.offsets_topic_num_partitions,
        replication_factor: -1,
        configs,
    };
    let results = shard
        .control
        .create_topics(vec![request], false)
        .await
        .map_err(|_| ErrorCode::CoordinatorNotAvailable)?;
    match results.into_iter().next() {
        Some(Ok(topic)) => Ok(topic.partitions),
        Some(Err(e)) if e.code == ErrorCode::TopicAlreadyExists => shard
            .topic(CONSUMER_OFFSETS_TOPIC)
            .map(|t| t.partitions)
            .ok_or(ErrorCode::CoordinatorNotAvailable),
        Some(Err(e)) => {
            tracing::error!(error = %e, "cannot create __consumer_offsets");
            Err(ErrorCode::CoordinatorNotAvailable)
        }
        None => Err(ErrorCode::CoordinatorNotAvailable),
    }
}

/// Runs `f` with the coordinator state on the shard that coordinates `group_id`, after
/// making sure `__consumer_offsets` exists and the group's partition is loaded there.
/// Errors are what the client should see: COORDINATOR_NOT_AVAILABLE,
/// COORDINATOR_LOAD_IN_PROGRESS or NOT_COORDINATOR.
pub async fn on_coordinator<T, F, Fut>(
    shard: &Rc<Shard>,
    group_id: &str,
    f: F,
) -> Result<T, ErrorCode>
where
    T: Send + 'static,
    F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
{
    ensure_offsets_topic(shard).await?;
    let partition = shard.groups().with(|c| c.partition_for(group_id));
    let owner = shard.owner(CONSUMER_OFFSETS_TOPIC, partition);
    shard
        .run_on(owner, move |s| async move {
            match s.groups().with(|c| c.partition_status(partition)) {
                Some(PartitionStatus::Loaded) => Ok(f(s).await),
                Some(PartitionStatus::Loading) => Err(ErrorCode::CoordinatorLoadInProgress),
                None => Err(ErrorCode::NotCoordinator),
            }
        })
        .await
        .unwrap_or(Err(ErrorCode::CoordinatorNotAvailable))
}

/// The timer task of a shard's group coordinator: sleeps until the earliest deadline
/// (session expiry, end of a rebalance phase) or until one may have moved, then ticks
/// the state machine and applies what it asks for. Stops at shutdown.
pub async fn run_timers(shard: Rc<Shard>) {
    let groups = shard.groups().clone();
    while !shard.is_shutting_down() {
        let changed = groups.timers_changed.listen();
        let now = groups.clock_ms();
        let next = groups.coordinator.borrow().next_deadline_ms();
        let wait = next.map_or(MAX_TIMER_SLEEP, |d| {
            Duration::from_millis(d.saturating_sub(now)).min(MAX_TIMER_SLEEP)
        });
        if !wait.is_zero() {
            future::or(sleep(wait), changed).await;
        }
        let effects = groups
            .coordinator
            .borrow_mut()
            .tick(groups.clock_ms(), now_ms());
        if !effects.is_empty() {
            let _ = groups.apply(&shard, effects).await;
        }
    }
}
