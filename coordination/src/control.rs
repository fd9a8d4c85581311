//! The control thread: it alone changes cluster metadata, persists it, and pushes each
//! new snapshot to every shard before answering the request that caused it.
//!
//! Requests arrive as [`ControlRequest`]s through a [`ControlHandle`]; per-item failures
//! are answered as [`ControlError`] data, never as a failed request.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use futures_lite::future;
use sluice_core::config::{BrokerConfig, LogConfig};
use sluice_core::ErrorCode;
use sluice_rt::sync::{bounded, oneshot, unbounded, Receiver, Sender};

use crate::error::{ControlError, CoordinationError};
use crate::metadata::{BrokerEndpoint, MetadataSnapshot, NewTopic, PartitionState, TopicMetadata};
use crate::rules;
use crate::store::{base64_url, Store, StoredMetadata, StoredTopic};

/// Producer ids reserved in the store at a time. A restart skips what is left of the
/// current block; 1000 ids per restart is a negligible share of the 2^63 id space.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// A request to the control thread. Each carries the channel its answer goes to; the
/// answer is sent only after the change is persisted and applied by every shard.
#[derive(Debug)]
pub enum ControlRequest {
    /// One answer per topic, in request order. With `validate_only` nothing changes and
    /// a successful answer carries topic id zero.
    CreateTopics {
        topics: Vec<NewTopic>,
        validate_only: bool,
        reply: Sender<Vec<Result<Arc<TopicMetadata>, ControlError>>>,
    },
    /// One answer per name, in request order: the deleted topic's id.
    DeleteTopics {
        names: Vec<String>,
        reply: Sender<Vec<Result<[u8; 16], ControlError>>>,
    },
    /// `(topic, new total partition count)`; one answer per entry, in request order.
    CreatePartitions {
        topics: Vec<(String, i32)>,
        validate_only: bool,
        reply: Sender<Vec<Result<(), ControlError>>>,
    },
    AllocateProducerId {
        reply: Sender<Result<i64, ControlError>>,
    },
    /// A partition leader asks to change its ISR (Kafka's AlterPartition): the change
    /// applies only if `leader_epoch` and `partition_epoch` are still current
    /// (compare-and-set on the state znode in a cluster). Answers the new state, or
    /// FENCED_LEADER_EPOCH / INVALID_UPDATE_VERSION / NOT_LEADER_OR_FOLLOWER; the
    /// change reaches every shard through a snapshot before the answer.
    AlterIsr {
        topic: Arc<str>,
        partition: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<i32>,
        reply: Sender<Result<PartitionState, ControlError>>,
    },
    Shutdown,
}

/// A new snapshot for one shard. The shard creates the partition logs it owns that the
/// snapshot adds, deletes those it removes, then sends `()` on `applied`. Updates arrive
/// in version order; the first one (sent by [`start`]) carries the initial snapshot.
/// Sending on `applied` fails only if the control thread has stopped; ignore that.
#[derive(Debug)]
pub struct SnapshotUpdate {
    pub snapshot: Arc<MetadataSnapshot>,
    pub applied: Sender<()>,
}

/// The way to the control thread. Cheap to clone; usable from any shard or thread.
#[derive(Debug, Clone)]
pub struct ControlHandle {
    requests: Sender<ControlRequest>,
    /// Closed by [`ControlHandle::shutdown`]; wakes the control thread even while it
    /// waits for shard acknowledgements.
    stop: Sender<()>,
    /// The latest snapshot every shard has applied.
    latest: Arc<RwLock<Arc<MetadataSnapshot>>>,
}

impl ControlHandle {
    /// A handle on a control thread's channels (used by the ZooKeeper backend).
    pub(crate) fn new(
        requests: Sender<ControlRequest>,
        stop: Sender<()>,
        latest: Arc<RwLock<Arc<MetadataSnapshot>>>,
    ) -> ControlHandle {
        ControlHandle {
            requests,
            stop,
            latest,
        }
    }

    /// The latest snapshot that every shard has applied.
    pub fn snapshot(&self) -> Arc<MetadataSnapshot> {
        // A poisoned lock only means a writer panicked after or before the swap of an
        // `Arc`; the value is always a complete snapshot.
        match self.latest.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub async fn create_topics(
        &self,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Result<Vec<Result<Arc<TopicMetadata>, ControlError>>, CoordinationError> {
        let (reply, answer) = oneshot();
        self.call(
            ControlRequest::CreateTopics {
                topics,
                validate_only,
                reply,
            },
            answer,
        )
        .await
    }

    pub async fn delete_topics(
        &self,
        names: Vec<String>,
    ) -> Result<Vec<Result<[u8; 16], ControlError>>, CoordinationError> {
        let (reply, answer) = oneshot();
        self.call(ControlRequest::DeleteTopics { names, reply }, answer)
            .await
    }

    pub async fn create_partitions(
        &self,
        topics: Vec<(String, i32)>,
        validate_only: bool,
    ) -> Result<Vec<Result<(), ControlError>>, CoordinationError> {
        let (reply, answer) = oneshot();
        self.call(
            ControlRequest::CreatePartitions {
                topics,
                validate_only,
                reply,
            },
            answer,
        )
        .await
    }

    pub async fn allocate_producer_id(
        &self,
    ) -> Result<Result<i64, ControlError>, CoordinationError> {
        let (reply, answer) = oneshot();
        self.call(ControlRequest::AllocateProducerId { reply }, answer)
            .await
    }

    /// Asks for `partition`'s ISR to become `isr` (see [`ControlRequest::AlterIsr`]).
    pub async fn alter_isr(
        &self,
        topic: Arc<str>,
        partition: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<i32>,
    ) -> Result<Result<PartitionState, ControlError>, CoordinationError> {
        let (reply, answer) = oneshot();
        self.call(
            ControlRequest::AlterIsr {
                topic,
                partition,
                leader_epoch,
                partition_epoch,
                isr,
                reply,
            },
            answer,
        )
        .await
    }

    /// Asks the control thread to stop. Requests not yet answered fail with
    /// [`CoordinationError::Stopped`]; join the thread returned by [`start`] to wait.
    pub fn shutdown(&self) {
        self.stop.close();
        // The request channel is unbounded: this fails only if the thread is gone.
        let _ = self.requests.try_send(ControlRequest::Shutdown);
    }

    async fn call<T>(
        &self,
        request: ControlRequest,
        answer: Receiver<T>,
    ) -> Result<T, CoordinationError> {
        self.requests
            .send(request)
            .await
            .map_err(|_| CoordinationError::Stopped)?;
        answer.recv().await.map_err(|_| CoordinationError::Stopped)
    }
}

/// What [`start`] returns: the handle, one snapshot receiver per shard (index = shard
/// id), and the control thread.
pub type Started = (ControlHandle, Vec<Receiver<SnapshotUpdate>>, JoinHandle<()>);

/// Starts the control plane of a single node: opens the metadata store in the first
/// log dir, builds the initial snapshot (version 1) and starts the control thread.
/// With `zookeeper.connect` set it starts the cluster control plane instead (same
/// handle, same snapshot protocol; see the `zk` module).
///
/// Returns the handle, one snapshot receiver per shard (index = shard id) and the
/// thread. Each receiver's first update is the initial snapshot; the control thread
/// serves no request until every shard has acknowledged it. A shard must drain its
/// receiver in a task of its own (never in a task that also awaits a control request)
/// and acknowledge every update, an update whose version it already holds included.
/// A shard that has dropped its receiver is no longer waited for.
pub fn start(
    config: &BrokerConfig,
    advertised: BrokerEndpoint,
    shard_count: usize,
) -> Result<Started, CoordinationError> {
    assert!(shard_count >= 1, "at least one shard");
    assert_eq!(
        advertised.id, config.broker_id,
        "the advertised endpoint is this broker's"
    );
    if config.zookeeper_connect.is_some() {
        return crate::zk::start(config, advertised, shard_count);
    }
    let dir = config
        .log_dirs
        .first()
        .expect("BrokerConfig always has at least one log dir");
    let (store, stored) = Store::open(dir, config.broker_id)?;

    let mut topics = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for topic in &stored.topics {
        let metadata = topic_from_store(config.broker_id, &config.log, topic, dir)?;
        if !ids.insert(metadata.id) || topics.contains_key(&metadata.name) {
            return Err(CoordinationError::Corrupt {
                path: dir.join(crate::store::METADATA_FILE_NAME),
                reason: format!("topic {} or its id appears twice", metadata.name),
            });
        }
        topics.insert(metadata.name.clone(), Arc::new(metadata));
    }
    let initial = Arc::new(MetadataSnapshot::new(
        1,
        stored.cluster_id.clone(),
        config.broker_id,
        vec![advertised.clone()],
        topics.clone(),
    ));

    let (shard_senders, shard_receivers) = shard_channels(shard_count);
    let (requests, request_receiver) = unbounded();
    let (stop, stop_receiver) = bounded(1);
    let latest = Arc::new(RwLock::new(initial.clone()));

    let next_producer_id = stored.next_producer_id_block;
    let mut controller = Controller {
        config: config.clone(),
        broker: advertised,
        store,
        stored,
        topics,
        version: 1,
        shards: shard_senders,
        latest: latest.clone(),
        stop: stop_receiver,
        next_producer_id,
        producer_id_block_end: next_producer_id,
    };
    let initial_acks = controller.push(&initial);
    let thread = std::thread::Builder::new()
        .name("sluice-control".into())
        .spawn(move || {
            if controller.wait_for_acks(initial_acks) {
                controller.run(request_receiver);
            }
            tracing::info!("control thread stopped");
        })
        .map_err(CoordinationError::Spawn)?;
    let handle = ControlHandle {
        requests,
        stop,
        latest,
    };
    Ok((handle, shard_receivers, thread))
}

fn topic_from_store(
    broker_id: i32,
    defaults: &LogConfig,
    topic: &StoredTopic,
    dir: &std::path::Path,
) -> Result<TopicMetadata, CoordinationError> {
    let corrupt = |reason: String| CoordinationError::Corrupt {
        path: dir.join(crate::store::METADATA_FILE_NAME),
        reason,
    };
    let id = uuid::Uuid::parse_str(&topic.id).map_err(|error| {
        corrupt(format!(
            "topic {}: bad id {:?}: {error}",
            topic.name, topic.id
        ))
    })?;
    if rules::validate_topic_name(&topic.name).is_err()
        || topic.partitions < 1
        || topic.replication_factor < 1
    {
        return Err(corrupt(format!(
            "topic {:?} is not a valid topic",
            topic.name
        )));
    }
    let log_config = LogConfig::for_topic(defaults, &topic.configs).map_err(|source| {
        CoordinationError::TopicConfig {
            topic: topic.name.clone(),
            source,
        }
    })?;
    Ok(TopicMetadata {
        name: topic.name.as_str().into(),
        id: *id.as_bytes(),
        partitions: topic.partitions,
        replication_factor: topic.replication_factor,
        configs: topic.configs.clone(),
        log_config,
        internal: rules::is_internal_topic(&topic.name),
        partition_states: vec![PartitionState::single(broker_id); topic.partitions as usize],
    })
}

fn topic_to_store(topic: &TopicMetadata) -> StoredTopic {
    StoredTopic {
        name: topic.name.to_string(),
        id: uuid::Uuid::from_bytes(topic.id).to_string(),
        partitions: topic.partitions,
        replication_factor: topic.replication_factor,
        configs: topic.configs.clone(),
    }
}

/// A random topic id Kafka would accept: not the reserved zero or one UUIDs, and not
/// one whose string form starts with `-` (Kafka avoids those; they read as flags).
fn new_topic_id() -> [u8; 16] {
    loop {
        let id = *uuid::Uuid::new_v4().as_bytes();
        let reserved = id[..15].iter().all(|&b| b == 0) && id[15] <= 1;
        if !reserved && !base64_url(&id).starts_with('-') {
            return id;
        }
    }
}

/// One snapshot channel per shard: the senders stay with the control thread, the
/// receivers (index = shard id) go to the shards.
pub(crate) fn shard_channels(
    shard_count: usize,
) -> (Vec<Sender<SnapshotUpdate>>, Vec<Receiver<SnapshotUpdate>>) {
    (0..shard_count).map(|_| unbounded()).unzip()
}

/// The id of a new topic: zero when only validating.
pub(crate) fn topic_id(validate_only: bool) -> [u8; 16] {
    if validate_only {
        [0; 16]
    } else {
        new_topic_id()
    }
}

/// Replaces every successful answer with `error` (the change they made was not
/// persisted).
fn fail_successes<T>(answers: &mut [Result<T, ControlError>], error: &ControlError) {
    for answer in answers {
        if answer.is_ok() {
            *answer = Err(error.clone());
        }
    }
}

/// The control thread's state. Lives on the control thread only.
struct Controller {
    config: BrokerConfig,
    broker: BrokerEndpoint,
    store: Store,
    /// What the store holds (kept equal to `topics` after every successful change).
    stored: StoredMetadata,
    topics: BTreeMap<Arc<str>, Arc<TopicMetadata>>,
    version: u64,
    shards: Vec<Sender<SnapshotUpdate>>,
    latest: Arc<RwLock<Arc<MetadataSnapshot>>>,
    stop: Receiver<()>,
    next_producer_id: i64,
    /// First id of the store's next unreserved block; ids below it are reserved.
    producer_id_block_end: i64,
}

impl Controller {
    fn run(&mut self, requests: Receiver<ControlRequest>) {
        loop {
            let stop = async {
                // Nothing is ever sent on `stop`: it only closes.
                let _ = self.stop.recv().await;
                None
            };
            let next = async { requests.recv().await.ok() };
            let Some(request) = future::block_on(future::or(stop, next)) else {
                return;
            };
            match request {
                ControlRequest::CreateTopics {
                    topics,
                    validate_only,
                    reply,
                } => {
                    let answer = self.create_topics(topics, validate_only);
                    let _ = reply.send_blocking(answer);
                }
                ControlRequest::DeleteTopics { names, reply } => {
                    let answer = self.delete_topics(names);
                    let _ = reply.send_blocking(answer);
                }
                ControlRequest::CreatePartitions {
                    topics,
                    validate_only,
                    reply,
                } => {
                    let answer = self.create_partitions(topics, validate_only);
                    let _ = reply.send_blocking(answer);
                }
                ControlRequest::AllocateProducerId { reply } => {
                    let answer = self.allocate_producer_id();
                    let _ = reply.send_blocking(answer);
                }
                ControlRequest::AlterIsr {
                    topic,
                    partition,
                    leader_epoch,
                    partition_epoch,
                    isr,
                    reply,
                } => {
                    let answer =
                        self.alter_isr(&topic, partition, leader_epoch, partition_epoch, &isr);
                    let _ = reply.send_blocking(answer);
                }
                ControlRequest::Shutdown => return,
            }
            if self.stop.is_closed() {
                return;
            }
        }
    }

    fn create_topics(
        &mut self,
        topics: Vec<NewTopic>,
        validate_only: bool,
    ) -> Vec<Result<Arc<TopicMetadata>, ControlError>> {
        let duplicated = rules::duplicates(topics.iter().map(|t| t.name.as_str()));
        let mut names = rules::TopicNames::new(&self.topics);
        let mut answers = Vec::with_capacity(topics.len());
        let mut created = Vec::new();
        for topic in &topics {
            let answer = if duplicated.contains(&topic.name) {
                Err(rules::duplicate_error(&topic.name))
            } else {
                self.check_new_topic(topic, &names, validate_only)
            };
            if let Ok(metadata) = &answer {
                names.take(&metadata.name);
                if !validate_only {
                    created.push(metadata.clone());
                }
            }
            answers.push(answer);
        }
        if created.is_empty() {
            return answers;
        }
        let mut next_topics = self.topics.clone();
        for topic in &created {
            next_topics.insert(topic.name.clone(), topic.clone());
        }
        if let Err(error) = self.commit(next_topics, self.stored.next_producer_id_block) {
            fail_successes(&mut answers, &error);
        } else {
            for topic in &created {
                tracing::info!(topic = %topic.name, partitions = topic.partitions, "created topic");
            }
        }
        answers
    }

    /// Checks one topic of CreateTopics against the cluster and builds its metadata.
    fn check_new_topic(
        &self,
        topic: &NewTopic,
        names: &rules::TopicNames,
        validate_only: bool,
    ) -> Result<Arc<TopicMetadata>, ControlError> {
        names.check(&topic.name)?;
        let broker_id = self.config.broker_id;
        let metadata = rules::new_topic(
            topic,
            &self.config,
            self.config.default_replication_factor,
            1,
            topic_id(validate_only),
            |partitions, _| vec![PartitionState::single(broker_id); partitions as usize],
        )?;
        Ok(Arc::new(metadata))
    }

    fn delete_topics(&mut self, names: Vec<String>) -> Vec<Result<[u8; 16], ControlError>> {
        if !self.config.delete_topic_enable {
            return names
                .iter()
                .map(|_| Err(rules::deletion_disabled_error()))
                .collect();
        }
        let duplicated = rules::duplicates(names.iter().map(String::as_str));
        let mut next_topics = self.topics.clone();
        let mut answers: Vec<Result<[u8; 16], ControlError>> = names
            .iter()
            .map(|name| {
                if duplicated.contains(name) {
                    return Err(rules::duplicate_error(name));
                }
                match next_topics.remove(name.as_str()) {
                    Some(topic) => Ok(topic.id),
                    None => Err(rules::unknown_topic_error()),
                }
            })
            .collect();
        if next_topics.len() == self.topics.len() {
            return answers;
        }
        if let Err(error) = self.commit(next_topics, self.stored.next_producer_id_block) {
            fail_successes(&mut answers, &error);
        } else {
            for (name, answer) in names.iter().zip(&answers) {
                if answer.is_ok() {
                    tracing::info!(topic = %name, "deleted topic");
                }
            }
        }
        answers
    }

    fn create_partitions(
        &mut self,
        topics: Vec<(String, i32)>,
        validate_only: bool,
    ) -> Vec<Result<(), ControlError>> {
        let duplicated = rules::duplicates(topics.iter().map(|(name, _)| name.as_str()));
        let mut next_topics = self.topics.clone();
        let mut changed = false;
        let mut answers: Vec<Result<(), ControlError>> = topics
            .iter()
            .map(|(name, count)| {
                if duplicated.contains(name) {
                    return Err(rules::duplicate_error(name));
                }
                let topic = rules::check_new_partitions(
                    name,
                    next_topics.get(name.as_str()).map(|t| &**t),
                    *count,
                )?;
                if !validate_only {
                    let mut grown = TopicMetadata {
                        partitions: *count,
                        ..TopicMetadata::clone(topic)
                    };
                    grown.partition_states.resize(
                        *count as usize,
                        PartitionState::single(self.config.broker_id),
                    );
                    next_topics.insert(grown.name.clone(), Arc::new(grown));
                    changed = true;
                }
                Ok(())
            })
            .collect();
        if !changed {
            return answers;
        }
        if let Err(error) = self.commit(next_topics, self.stored.next_producer_id_block) {
            fail_successes(&mut answers, &error);
        }
        answers
    }

    fn allocate_producer_id(&mut self) -> Result<i64, ControlError> {
        if self.next_producer_id == self.producer_id_block_end {
            let block_end = self
                .producer_id_block_end
                .checked_add(PRODUCER_ID_BLOCK_SIZE)
                .ok_or_else(|| {
                    ControlError::new(ErrorCode::UnknownServerError, "producer ids exhausted")
                })?;
            let mut stored = self.stored.clone();
            stored.next_producer_id_block = block_end;
            self.store.save(&stored).map_err(|error| {
                tracing::error!(%error, "cannot reserve a block of producer ids");
                ControlError::new(ErrorCode::UnknownServerError, error.to_string())
            })?;
            self.stored = stored;
            self.producer_id_block_end = block_end;
        }
        assert!(self.next_producer_id < self.producer_id_block_end);
        let id = self.next_producer_id;
        self.next_producer_id += 1;
        Ok(id)
    }

    /// On a single node every partition's ISR is this broker, always: the only change
    /// granted is none.
    fn alter_isr(
        &self,
        topic: &str,
        partition: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: &[i32],
    ) -> Result<PartitionState, ControlError> {
        let state = self
            .topics
            .get(topic)
            .and_then(|t| t.partition(partition))
            .ok_or_else(|| {
                ControlError::new(
                    ErrorCode::UnknownTopicOrPartition,
                    format!("{topic}-{partition} does not exist."),
                )
            })?;
        if leader_epoch != state.leader_epoch {
            return Err(ControlError::new(
                ErrorCode::FencedLeaderEpoch,
                format!(
                    "leader epoch {leader_epoch} is not the current {}",
                    state.leader_epoch
                ),
            ));
        }
        if partition_epoch != state.partition_epoch {
            return Err(ControlError::new(
                ErrorCode::InvalidUpdateVersion,
                format!(
                    "partition epoch {partition_epoch} is not the current {}",
                    state.partition_epoch
                ),
            ));
        }
        if isr != state.isr.as_slice() {
            return Err(ControlError::new(
                ErrorCode::InvalidRequest,
                "a single-node broker's ISR is the broker itself",
            ));
        }
        Ok(state.clone())
    }

    /// Persists `topics` as the new metadata, then publishes the snapshot and waits for
    /// every shard. On a store failure nothing changes and the error is returned.
    fn commit(
        &mut self,
        topics: BTreeMap<Arc<str>, Arc<TopicMetadata>>,
        next_producer_id_block: i64,
    ) -> Result<(), ControlError> {
        let stored = StoredMetadata {
            topics: topics.values().map(|topic| topic_to_store(topic)).collect(),
            next_producer_id_block,
            ..self.stored.clone()
        };
        self.store.save(&stored).map_err(|error| {
            tracing::error!(%error, "cannot persist cluster metadata");
            ControlError::new(ErrorCode::UnknownServerError, error.to_string())
        })?;
        self.stored = stored;
        self.topics = topics;
        self.version += 1;
        let snapshot = Arc::new(MetadataSnapshot::new(
            self.version,
            self.stored.cluster_id.clone(),
            self.config.broker_id,
            vec![self.broker.clone()],
            self.topics.clone(),
        ));
        let acks = self.push(&snapshot);
        self.wait_for_acks(acks);
        Ok(())
    }

    /// Sends `snapshot` to every shard still listening and returns what to wait for.
    fn push(&self, snapshot: &Arc<MetadataSnapshot>) -> PendingAcks {
        let mut acks = Vec::with_capacity(self.shards.len());
        for (shard, sender) in self.shards.iter().enumerate() {
            let (applied, ack) = oneshot();
            let update = SnapshotUpdate {
                snapshot: snapshot.clone(),
                applied,
            };
            // A shard that dropped its receiver has stopped; nobody waits for it.
            if sender.try_send(update).is_ok() {
                acks.push((shard, ack));
            }
        }
        PendingAcks {
            snapshot: snapshot.clone(),
            acks,
        }
    }

    /// Waits until every shard has applied the pushed snapshot, then publishes it as
    /// the handle's latest. Returns false if a shutdown came first.
    ///
    /// A shard counts as done when it acknowledges, when it drops the acknowledgement
    /// sender, or when its receiver was already dropped before the wait for it began.
    /// A shard that drops its receiver while the update is queued and the wait is under
    /// way holds the wait until [`ControlHandle::shutdown`] (which every shutdown path
    /// calls).
    fn wait_for_acks(&self, pending: PendingAcks) -> bool {
        for (shard, ack) in pending.acks {
            if self.shards[shard].is_closed() {
                continue;
            }
            let stop = async {
                // Nothing is ever sent on `stop`: it only closes.
                let _ = self.stop.recv().await;
                false
            };
            let acked = async {
                // An error means the shard dropped the update unacknowledged: it stopped.
                let _ = ack.recv().await;
                true
            };
            if !future::block_on(future::or(stop, acked)) {
                return false;
            }
        }
        let mut latest = match self.latest.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        assert!(
            pending.snapshot.version > latest.version || pending.snapshot.version == 1,
            "snapshot versions only grow"
        );
        *latest = pending.snapshot;
        true
    }
}

/// A snapshot sent to the shards whose acknowledgements are outstanding.
struct PendingAcks {
    snapshot: Arc<MetadataSnapshot>,
    /// `(shard, acknowledgement)` for every shard the update was queued for.
    acks: Vec<(usize, Receiver<()>)>,
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use futures_lite::future::block_on;
    use sluice_core::config::TopicConfigs;

    /// A simulated shard: a thread that records the version of every snapshot update it
    /// receives, then acknowledges it. Stops when the control thread drops its sender.
    struct FakeShard {
        applied: Arc<Mutex<Vec<u64>>>,
        thread: std::thread::JoinHandle<()>,
    }

    fn spawn_shards(receivers: Vec<Receiver<SnapshotUpdate>>) -> Vec<FakeShard> {
        receivers
            .into_iter()
            .map(|receiver| {
                let applied = Arc::new(Mutex::new(Vec::new()));
                let record = applied.clone();
                let thread = std::thread::spawn(move || {
                    while let Ok(update) = receiver.recv_blocking() {
                        record.lock().unwrap().push(update.snapshot.version);
                        // Fails only when the control thread has stopped meanwhile.
                        let _ = update.applied.send_blocking(());
                    }
                });
                FakeShard { applied, thread }
            })
            .collect()
    }

    struct Node {
        handle: ControlHandle,
        shards: Vec<FakeShard>,
        thread: JoinHandle<()>,
    }

    impl Node {
        fn start(config: &BrokerConfig, shard_count: usize) -> Node {
            let (handle, receivers, thread) = start(config, endpoint(), shard_count).unwrap();
            let shards = spawn_shards(receivers);
            Node {
                handle,
                shards,
                thread,
            }
        }

        fn stop(self) -> Vec<Vec<u64>> {
            self.handle.shutdown();
            self.thread.join().unwrap();
            self.shards
                .into_iter()
                .map(|shard| {
                    shard.thread.join().unwrap();
                    Arc::try_unwrap(shard.applied)
                        .unwrap()
                        .into_inner()
                        .unwrap()
                })
                .collect()
        }

        fn create(
            &self,
            topics: Vec<NewTopic>,
            validate_only: bool,
        ) -> Vec<Result<Arc<TopicMetadata>, ControlError>> {
            block_on(self.handle.create_topics(topics, validate_only)).unwrap()
        }

        fn create_one(&self, topic: NewTopic) -> Result<Arc<TopicMetadata>, ControlError> {
            let mut answers = self.create(vec![topic], false);
            assert_eq!(answers.len(), 1);
            answers.remove(0)
        }
    }

    fn endpoint() -> BrokerEndpoint {
        BrokerEndpoint {
            id: 0,
            host: "127.0.0.1".into(),
            port: 9092,
            rack: None,
        }
    }

    fn config(dir: &std::path::Path) -> BrokerConfig {
        BrokerConfig {
            log_dirs: vec![dir.to_path_buf()],
            num_partitions: 3,
            ..BrokerConfig::default()
        }
    }

    fn new_topic(name: &str, partitions: i32, configs: &[(&str, &str)]) -> NewTopic {
        NewTopic {
            name: name.into(),
            num_partitions: partitions,
            replication_factor: -1,
            configs: configs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<TopicConfigs>(),
        }
    }

    fn code<T: std::fmt::Debug>(answer: &Result<T, ControlError>) -> ErrorCode {
        match answer {
            Ok(_) => ErrorCode::None,
            Err(error) => error.code,
        }
    }

    #[test]
    fn create_pushes_the_snapshot_to_every_shard_before_replying() {
        let dir = tempfile::tempdir().unwrap();
        let node = Node::start(&config(dir.path()), 3);
        let initial = node.handle.snapshot();
        assert_eq!(initial.version, 1);
        assert!(initial.topics.is_empty());
        assert_eq!(initial.brokers, vec![endpoint()]);
        assert_eq!(initial.controller_id, 0);
        assert_eq!(initial.cluster_id.len(), 22);

        let topic = node
            .create_one(new_topic("orders", -1, &[("retention.ms", "1000")]))
            .unwrap();
        // The reply came after every shard recorded version 2.
        for shard in &node.shards {
            assert_eq!(*shard.applied.lock().unwrap(), vec![1, 2]);
        }
        assert_eq!(topic.partitions, 3, "num.partitions applies to -1");
        assert_eq!(topic.replication_factor, 1);
        assert_eq!(topic.log_config.retention_ms, Some(1000));
        assert!(!topic.internal);
        assert_ne!(topic.id, [0; 16]);

        let snapshot = node.handle.snapshot();
        assert_eq!(snapshot.version, 2);
        assert_eq!(snapshot.cluster_id, initial.cluster_id);
        assert_eq!(snapshot.topic("orders"), Some(&topic));
        assert_eq!(snapshot.topic_by_id(&topic.id), Some(&topic));

        let offsets = node
            .create_one(new_topic("__consumer_offsets", 50, &[]))
            .unwrap();
        assert!(offsets.internal);
        assert!(
            !node
                .create_one(new_topic("__private", 1, &[]))
                .unwrap()
                .internal
        );
        let applied = node.stop();
        assert_eq!(applied, vec![vec![1, 2, 3, 4]; 3]);
    }

    /// A shard that has received the update but not acknowledged it holds the reply back.
    #[test]
    fn reply_waits_for_a_slow_shard() {
        let dir = tempfile::tempdir().unwrap();
        let (handle, mut receivers, thread) = start(&config(dir.path()), endpoint(), 2).unwrap();
        let slow = receivers.pop().unwrap();
        let fast = spawn_shards(receivers);
        let initial = slow.recv_blocking().unwrap();
        initial.applied.send_blocking(()).unwrap();

        let (reply_sender, reply) = std::sync::mpsc::channel();
        let caller = handle.clone();
        let request = std::thread::spawn(move || {
            let answer = block_on(caller.create_topics(vec![new_topic("t", 1, &[])], false));
            reply_sender.send(answer).unwrap();
        });
        let update = slow.recv_blocking().unwrap();
        assert_eq!(update.snapshot.version, 2);
        assert!(update.snapshot.topic("t").is_some());
        assert!(
            reply.try_recv().is_err(),
            "replied before the slow shard applied"
        );
        assert_eq!(
            handle.snapshot().version,
            1,
            "latest moves only after every ack"
        );
        update.applied.send_blocking(()).unwrap();
        let answer = reply.recv().unwrap().unwrap();
        assert!(answer[0].is_ok());
        assert_eq!(handle.snapshot().version, 2);
        request.join().unwrap();

        handle.shutdown();
        thread.join().unwrap();
        for shard in fast {
            shard.thread.join().unwrap();
        }
    }

    /// A shard that dropped its receiver is not waited for; shutdown is not held up by
    /// a shard that never acknowledges.
    #[test]
    fn gone_or_stuck_shards_do_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let (handle, mut receivers, thread) = start(&config(dir.path()), endpoint(), 2).unwrap();
        let gone = receivers.pop().unwrap();
        let stuck = receivers.pop().unwrap();
        for receiver in [&gone, &stuck] {
            let initial = receiver.recv_blocking().unwrap();
            initial.applied.send_blocking(()).unwrap();
        }
        drop(gone);

        let caller = handle.clone();
        let request = std::thread::spawn(move || {
            block_on(caller.create_topics(vec![new_topic("t", 1, &[])], false))
        });
        let update = stuck.recv_blocking().unwrap();
        update.applied.send_blocking(()).unwrap();
        let answers = request.join().unwrap().unwrap();
        assert!(answers[0].is_ok(), "the gone shard was not waited for");

        let caller = handle.clone();
        let request = std::thread::spawn(move || {
            block_on(caller.create_topics(vec![new_topic("u", 1, &[])], false))
        });
        // Received, never acknowledged.
        let update = stuck.recv_blocking().unwrap();
        handle.shutdown();
        thread.join().unwrap();
        drop(update);
        // The change was persisted before the shutdown was seen, so the caller gets
        // either the answer or Stopped, but is not left hanging.
        let _ = request.join().unwrap();
        assert!(matches!(
            block_on(handle.allocate_producer_id()),
            Err(CoordinationError::Stopped)
        ));
    }

    #[test]
    fn create_topics_errors() {
        let dir = tempfile::tempdir().unwrap();
        let node = Node::start(&config(dir.path()), 1);
        node.create_one(new_topic("exists", 1, &[])).unwrap();
        node.create_one(new_topic("a.b", 1, &[])).unwrap();
        let long = "x".repeat(250);
        let rf = |name: &str, factor: i16| NewTopic {
            replication_factor: factor,
            ..new_topic(name, 1, &[])
        };
        let cases = [
            (new_topic("", 1, &[]), ErrorCode::InvalidTopicException),
            (new_topic(".", 1, &[]), ErrorCode::InvalidTopicException),
            (new_topic("..", 1, &[]), ErrorCode::InvalidTopicException),
            (new_topic(&long, 1, &[]), ErrorCode::InvalidTopicException),
            (new_topic("a/b", 1, &[]), ErrorCode::InvalidTopicException),
            (new_topic("a_b", 1, &[]), ErrorCode::InvalidTopicException),
            (new_topic("exists", 1, &[]), ErrorCode::TopicAlreadyExists),
            (new_topic("p0", 0, &[]), ErrorCode::InvalidPartitions),
            (new_topic("pm2", -2, &[]), ErrorCode::InvalidPartitions),
            (
                new_topic("pbig", 1_000_000, &[]),
                ErrorCode::InvalidPartitions,
            ),
            (rf("rf0", 0), ErrorCode::InvalidReplicationFactor),
            (rf("rf2", 2), ErrorCode::InvalidReplicationFactor),
            (rf("rfm2", -2), ErrorCode::InvalidReplicationFactor),
            (
                new_topic("c1", 1, &[("retention.ms", "x")]),
                ErrorCode::InvalidConfig,
            ),
            (
                new_topic("c2", 1, &[("no.such", "1")]),
                ErrorCode::InvalidConfig,
            ),
            (
                new_topic("c3", 1, &[("cleanup.policy", "compact")]),
                ErrorCode::InvalidConfig,
            ),
            (new_topic("ok", 2, &[]), ErrorCode::None),
        ];
        let (topics, expected): (Vec<NewTopic>, Vec<ErrorCode>) = cases.into_iter().unzip();
        for validate_only in [true, false] {
            let answers = node.create(topics.clone(), validate_only);
            let codes: Vec<ErrorCode> = answers.iter().map(code).collect();
            assert_eq!(codes, expected, "validate_only={validate_only}");
            let config_error = answers[13].as_ref().unwrap_err();
            assert!(
                config_error.message.contains("retention.ms"),
                "{config_error:?}"
            );
        }

        // Duplicates within one request are refused, like Kafka.
        let answers = node.create(vec![new_topic("d", 1, &[]), new_topic("d", 1, &[])], false);
        assert_eq!(
            answers.iter().map(code).collect::<Vec<_>>(),
            vec![ErrorCode::InvalidRequest; 2]
        );
        // Two new topics of one request that collide with each other.
        let answers = node.create(
            vec![new_topic("x.y", 1, &[]), new_topic("x_y", 1, &[])],
            false,
        );
        assert_eq!(
            answers.iter().map(code).collect::<Vec<_>>(),
            vec![ErrorCode::None, ErrorCode::InvalidTopicException]
        );
        node.stop();
    }

    #[test]
    fn validate_only_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let node = Node::start(&config(dir.path()), 2);
        node.create_one(new_topic("t", 1, &[])).unwrap();
        let store_before = std::fs::read(dir.path().join(crate::METADATA_FILE_NAME)).unwrap();
        let before = node.handle.snapshot();

        let answers = node.create(vec![new_topic("v", 4, &[("segment.bytes", "1000")])], true);
        let validated = answers[0].as_ref().unwrap();
        assert_eq!(validated.partitions, 4);
        assert_eq!(validated.log_config.segment_bytes, 1000);
        assert_eq!(validated.id, [0; 16]);
        let answers = block_on(node.handle.create_partitions(vec![("t".into(), 5)], true)).unwrap();
        assert_eq!(answers, vec![Ok(())]);

        let after = node.handle.snapshot();
        assert_eq!(after.version, before.version);
        assert!(after.topic("v").is_none());
        assert_eq!(after.topic("t").unwrap().partitions, 1);
        let store_after = std::fs::read(dir.path().join(crate::METADATA_FILE_NAME)).unwrap();
        assert_eq!(store_before, store_after);
        let applied = node.stop();
        assert_eq!(applied, vec![vec![1, 2]; 2], "nothing was pushed");
    }

    #[test]
    fn delete_topics() {
        let dir = tempfile::tempdir().unwrap();
        let node = Node::start(&config(dir.path()), 2);
        let topic = node.create_one(new_topic("t", 2, &[])).unwrap();
        let answers = block_on(node.handle.delete_topics(vec!["t".into(), "nope".into()])).unwrap();
        assert_eq!(answers[0], Ok(topic.id));
        assert_eq!(code(&answers[1]), ErrorCode::UnknownTopicOrPartition);
        let snapshot = node.handle.snapshot();
        assert!(snapshot.topic("t").is_none());
        assert!(snapshot.topic_by_id(&topic.id).is_none());
        assert_eq!(snapshot.version, 3);

        let answers = block_on(node.handle.delete_topics(vec!["u".into(), "u".into()])).unwrap();
        assert_eq!(
            answers.iter().map(code).collect::<Vec<_>>(),
            vec![ErrorCode::InvalidRequest; 2]
        );
        // Only unknown topics: nothing is pushed.
        block_on(node.handle.delete_topics(vec!["gone".into()])).unwrap();
        assert_eq!(node.stop(), vec![vec![1, 2, 3]; 2]);

        let disabled = BrokerConfig {
            delete_topic_enable: false,
            ..config(dir.path())
        };
        let node = Node::start(&disabled, 1);
        node.create_one(new_topic("kept", 1, &[])).unwrap();
        let answers = block_on(
            node.handle
                .delete_topics(vec!["kept".into(), "nope".into()]),
        )
        .unwrap();
        assert_eq!(
            answers.iter().map(code).collect::<Vec<_>>(),
            vec![ErrorCode::TopicDeletionDisabled; 2]
        );
        assert!(node.handle.snapshot().topic("kept").is_some());
        node.stop();
    }

    #[test]
    fn create_partitions() {
        let dir = tempfile::tempdir().unwrap();
        let node = Node::start(&config(dir.path()), 1);
        let topic = node.create_one(new_topic("t", 2, &[])).unwrap();
        node.create_one(new_topic("__consumer_offsets", 5, &[]))
            .unwrap();
        let answers = block_on(node.handle.create_partitions(
            vec![
                ("t".into(), 4),
                ("nope".into(), 4),
                ("__consumer_offsets".into(), 6),
                ("dup".into(), 3),
                ("dup".into(), 3),
            ],
            false,
        ))
        .unwrap();
        assert_eq!(
            answers.iter().map(code).collect::<Vec<_>>(),
            vec![
                ErrorCode::None,
                ErrorCode::UnknownTopicOrPartition,
                ErrorCode::InvalidPartitions,
                ErrorCode::InvalidRequest,
                ErrorCode::InvalidRequest
            ]
        );
        let grown = node.handle.snapshot().topic("t").unwrap().clone();
        assert_eq!(grown.partitions, 4);
        assert_eq!(grown.id, topic.id, "growing keeps the topic id");
        for count in [4, 3, 0, -1, 1_000_000] {
            let answers = block_on(
                node.handle
                    .create_partitions(vec![("t".into(), count)], false),
            )
            .unwrap();
            assert_eq!(code(&answers[0]), ErrorCode::InvalidPartitions, "{count}");
        }
        node.stop();
    }

    #[test]
    fn metadata_and_producer_ids_survive_restart() {
        let dir = tempfile::tempdir().unwrap();
        let node = Node::start(&config(dir.path()), 2);
        let cluster_id = node.handle.snapshot().cluster_id.clone();
        let a = node
            .create_one(new_topic("a", 2, &[("retention.ms", "5000")]))
            .unwrap();
        let b = node.create_one(new_topic("b", 1, &[])).unwrap();
        block_on(node.handle.create_partitions(vec![("b".into(), 3)], false)).unwrap();
        let mut ids = BTreeSet::new();
        for _ in 0..5 {
            assert!(ids.insert(
                block_on(node.handle.allocate_producer_id())
                    .unwrap()
                    .unwrap()
            ));
        }
        node.stop();

        let node = Node::start(&config(dir.path()), 2);
        let snapshot = node.handle.snapshot();
        assert_eq!(snapshot.version, 1);
        assert_eq!(snapshot.cluster_id, cluster_id);
        assert_eq!(snapshot.topics.len(), 2);
        assert_eq!(snapshot.topic("a"), Some(&a));
        let b2 = snapshot.topic("b").unwrap();
        assert_eq!((b2.id, b2.partitions), (b.id, 3));
        for _ in 0..(PRODUCER_ID_BLOCK_SIZE + 5) {
            let id = block_on(node.handle.allocate_producer_id())
                .unwrap()
                .unwrap();
            assert!(ids.insert(id), "producer id {id} handed out twice");
        }
        assert_eq!(
            node.create_one(new_topic("a", 1, &[])).unwrap_err().code,
            ErrorCode::TopicAlreadyExists
        );
        node.stop();

        // The whole first block was skipped by the restart; ids are never reused.
        let first_after_restart = ids.iter().find(|&&id| id >= 5).copied();
        assert_eq!(first_after_restart, Some(PRODUCER_ID_BLOCK_SIZE));
    }

    /// A store whose topics do not make sense is refused at start, naming the problem.
    #[test]
    fn bad_stored_topics_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let node = Node::start(&config(dir.path()), 1);
        node.create_one(new_topic("t", 1, &[])).unwrap();
        node.stop();
        let path = dir.path().join(crate::METADATA_FILE_NAME);
        let good = std::fs::read_to_string(&path).unwrap();
        let duplicated = {
            let mut value: serde_json::Value = serde_json::from_str(&good).unwrap();
            let topic = value["topics"][0].clone();
            value["topics"].as_array_mut().unwrap().push(topic);
            value.to_string()
        };
        let cases = [
            (duplicated, "appears twice"),
            (
                good.replace("\"partitions\": 1", "\"partitions\": 0"),
                "not a valid topic",
            ),
            (
                good.replace("\"configs\": {}", "\"configs\": {\"x\": \"1\"}"),
                "invalid configuration",
            ),
        ];
        for (text, expected) in cases {
            assert_ne!(text, good, "{expected}: the case must change the file");
            std::fs::write(&path, &text).unwrap();
            let error = start(&config(dir.path()), endpoint(), 1).unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
        }
    }

    #[test]
    fn stopped_control_plane_answers_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let node = Node::start(&config(dir.path()), 1);
        let handle = node.handle.clone();
        node.stop();
        assert!(matches!(
            block_on(handle.create_topics(vec![new_topic("t", 1, &[])], false)),
            Err(CoordinationError::Stopped)
        ));
        assert!(matches!(
            block_on(handle.delete_topics(vec!["t".into()])),
            Err(CoordinationError::Stopped)
        ));
    }
}
