//! A shard's state: the partitions it owns, its view of cluster metadata, and its links
//! to the other shards.
//!
//! One [`Shard`] exists per core, shared by the tasks of that core through `Rc`. It is
//! never sent to another thread: other shards reach it only by sending it a [`Job`]
//! over the mesh connected at start.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use sluice_coordination::{
    ControlHandle, MetadataSnapshot, PartitionState, TopicMetadata, CONSUMER_OFFSETS_TOPIC,
};
use sluice_core::config::BrokerConfig;
use sluice_core::ids::{owner_shard, ShardId, TopicPartition};
use sluice_log::PartitionLog;
use sluice_rt::net::AcceptedTcpStream;
use sluice_rt::sync::{oneshot, Notify, Receiver, Sender};

use crate::fetcher::{Fetchers, FollowedPartition};
use crate::groups::GroupShard;
use crate::replica::{self, Replica, Role, Transition};

/// Work sent to another shard: a closure run there with that shard's state.
pub type Job = Box<dyn FnOnce(Rc<Shard>) -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// The other shard is gone (shutting down); the request part cannot be served.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("shard {0} is not available")]
pub struct ShardGone(pub ShardId);

/// State of one shard. Lives on its own core only.
pub struct Shard {
    pub id: ShardId,
    pub count: usize,
    pub config: Arc<BrokerConfig>,
    pub control: ControlHandle,
    /// Port actually bound by the listener (differs from the configured one when 0).
    pub port: u16,
    /// This shard's request, byte and connection counters.
    pub metrics: crate::metrics::ShardMetrics,
    snapshot: RefCell<Arc<MetadataSnapshot>>,
    /// The partitions this shard owns and this broker hosts (is a replica of), with
    /// their logs and this broker's role for each; only those.
    partitions: RefCell<HashMap<TopicPartition, Rc<Replica>>>,
    /// Senders to every shard's job queue, indexed by shard id.
    peers: Vec<Sender<Job>>,
    /// Notified after every append on this shard, every advance of a high watermark
    /// that was not caused by an append, and every change of replica roles, so parked
    /// fetches re-check.
    appended: Notify,
    shutting_down: Cell<bool>,
    /// The group coordinator of the `__consumer_offsets` partitions this shard leads.
    groups: Rc<GroupShard>,
    /// The fetchers of the partitions this shard follows.
    fetchers: Rc<Fetchers>,
    /// Where connections another shard accepted and placed here go (the accept
    /// loop's queue); unset until the shard listens, closed when it stops.
    connection_inbox: RefCell<Option<Sender<AcceptedTcpStream>>>,
}

impl Shard {
    pub fn new(
        id: ShardId,
        config: Arc<BrokerConfig>,
        control: ControlHandle,
        port: u16,
        peers: Vec<Sender<Job>>,
    ) -> Rc<Shard> {
        let snapshot = control.snapshot();
        let groups = GroupShard::new(&config);
        let fetchers = Fetchers::new(config.clone(), id);
        Rc::new(Shard {
            id,
            count: peers.len(),
            config,
            control,
            port,
            metrics: crate::metrics::ShardMetrics::default(),
            snapshot: RefCell::new(snapshot),
            partitions: RefCell::new(HashMap::new()),
            peers,
            appended: Notify::new(),
            shutting_down: Cell::new(false),
            groups,
            fetchers,
            connection_inbox: RefCell::new(None),
        })
    }

    /// Sets where [`place_connection`](Self::place_connection) puts connections.
    pub fn set_connection_inbox(&self, inbox: Sender<AcceptedTcpStream>) {
        *self.connection_inbox.borrow_mut() = Some(inbox);
    }

    /// Takes a connection another shard accepted, for this shard's accept loop to
    /// serve; false (and the connection closed) if this shard no longer accepts.
    pub fn place_connection(&self, accepted: AcceptedTcpStream) -> bool {
        self.connection_inbox
            .borrow()
            .as_ref()
            .is_some_and(|inbox| inbox.try_send(accepted).is_ok())
    }

    /// The metadata this shard currently serves from.
    pub fn snapshot(&self) -> Arc<MetadataSnapshot> {
        self.snapshot.borrow().clone()
    }

    pub fn topic(&self, name: &str) -> Option<Arc<TopicMetadata>> {
        self.snapshot.borrow().topic(name).cloned()
    }

    pub fn owner(&self, topic: &str, partition: i32) -> ShardId {
        owner_shard(topic, partition, self.count)
    }

    /// The log of a partition this shard owns. Asserts ownership: asking for another
    /// shard's partition is a routing bug.
    pub fn log(&self, tp: &TopicPartition) -> Option<Rc<PartitionLog>> {
        self.replica(tp).map(|r| r.log.clone())
    }

    /// The replica (log and role) of a partition this shard owns, if this broker hosts
    /// it. Asserts ownership like [`log`](Self::log).
    pub fn replica(&self, tp: &TopicPartition) -> Option<Rc<Replica>> {
        debug_assert_eq!(
            self.owner(&tp.topic, tp.partition),
            self.id,
            "{tp} routed to the wrong shard"
        );
        self.partitions.borrow().get(tp).cloned()
    }

    /// Every replica this shard hosts.
    pub fn replicas(&self) -> Vec<Rc<Replica>> {
        self.partitions.borrow().values().cloned().collect()
    }

    pub fn fetchers(&self) -> &Rc<Fetchers> {
        &self.fetchers
    }

    pub fn groups(&self) -> &Rc<GroupShard> {
        &self.groups
    }

    pub fn appended(&self) -> &Notify {
        &self.appended
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.get()
    }

    /// Stops taking work: marks the shard as shutting down and stops its fetchers
    /// (nothing is appended to a follower's log after this).
    pub fn begin_shutdown(&self) {
        self.shutting_down.set(true);
        self.fetchers.shutdown();
    }

    /// Runs `f` on shard `target` with that shard's state and returns its result. On the
    /// current shard it runs inline.
    pub async fn run_on<T, F, Fut>(self: &Rc<Self>, target: ShardId, f: F) -> Result<T, ShardGone>
    where
        T: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        if target == self.id {
            return Ok(f(self.clone()).await);
        }
        let (tx, rx) = oneshot();
        let job: Job = Box::new(move |shard| {
            Box::pin(async move {
                // The asker may have given up (connection closed); nothing to do then.
                let _ = tx.send(f(shard).await).await;
            })
        });
        self.peers[target]
            .send(job)
            .await
            .map_err(|_| ShardGone(target))?;
        rx.recv().await.map_err(|_| ShardGone(target))
    }

    /// Serves jobs sent by other shards until every sender is gone.
    pub async fn serve_jobs(self: Rc<Self>, jobs: Receiver<Job>) {
        while let Ok(job) = jobs.recv().await {
            sluice_rt::exec::spawn_detached(job(self.clone()));
        }
    }

    /// Brings the hosted partitions in line with `snapshot`: deletes the logs of
    /// partitions that are gone (topic deleted or re-created under a new id) or no
    /// longer assigned to this broker, opens those newly assigned, sets every replica's
    /// role (leader or follower) from its partition state, loads or unloads consumer
    /// groups with the leadership of `__consumer_offsets` partitions, makes the snapshot
    /// current, and hands the fetchers the complete set of partitions followed now.
    ///
    /// Never waits for the control plane (an ISR change it answers only after every
    /// shard applied its snapshot).
    pub async fn apply_snapshot(&self, snapshot: Arc<MetadataSnapshot>) {
        let broker_id = self.config.broker_id;
        let data_dir = self.config.log_dirs[0].clone();
        let stale: Vec<TopicPartition> = {
            let partitions = self.partitions.borrow();
            partitions
                .keys()
                .filter(|tp| match snapshot.topic(&tp.topic) {
                    None => true,
                    Some(t) => {
                        t.partition(tp.partition)
                            .is_none_or(|state| !state.is_replica(broker_id))
                            || self.topic(&tp.topic).is_some_and(|old| old.id != t.id)
                    }
                })
                .cloned()
                .collect()
        };
        for tp in stale {
            let replica = self.partitions.borrow_mut().remove(&tp);
            if &*tp.topic == CONSUMER_OFFSETS_TOPIC {
                self.groups.unload(tp.partition);
            }
            if let Some(replica) = replica {
                let log = replica.log.clone();
                drop(replica);
                if let Err(e) = log.delete().await {
                    tracing::error!(partition = %tp, error = %e, "cannot delete partition log");
                }
            }
        }
        let now = replica::clock_ms();
        let mut followed = Vec::new();
        for topic in snapshot.topics.values() {
            for (partition, state) in (0..topic.partitions).zip(&topic.partition_states) {
                if self.owner(&topic.name, partition) != self.id || !state.is_replica(broker_id) {
                    continue;
                }
                let tp = TopicPartition::new(topic.name.clone(), partition);
                let Some(replica) = self.host(&tp, topic, state, &data_dir).await else {
                    continue;
                };
                let transition = replica.apply_state(broker_id, state, now);
                self.on_transition(&replica, transition);
                if !replica.is_leader() && state.leader >= 0 {
                    followed.push(FollowedPartition {
                        tp,
                        leader: state.leader,
                        leader_epoch: state.leader_epoch,
                        log: replica.log.clone(),
                    });
                }
                // An ISR change may let the high watermark advance.
                replica::update_high_watermark(self, &replica);
            }
        }
        *self.snapshot.borrow_mut() = snapshot.clone();
        self.fetchers.update(&snapshot, followed);
        // Roles and high watermarks may have changed: parked requests re-check.
        self.appended.notify(usize::MAX);
    }

    /// The replica of `tp`, opening its log first if this shard does not host it yet.
    /// A new replica starts as a follower of no one; its role comes next.
    async fn host(
        &self,
        tp: &TopicPartition,
        topic: &TopicMetadata,
        state: &PartitionState,
        data_dir: &std::path::Path,
    ) -> Option<Rc<Replica>> {
        if let Some(replica) = self.partitions.borrow().get(tp) {
            return Some(replica.clone());
        }
        match PartitionLog::open(data_dir.join(tp.dir_name()), topic.log_config.clone()).await {
            Ok(log) => {
                let replica = Replica::new(
                    tp.clone(),
                    log,
                    Role::Follower {
                        leader: -1,
                        leader_epoch: state.leader_epoch,
                    },
                );
                self.partitions
                    .borrow_mut()
                    .insert(tp.clone(), replica.clone());
                Some(replica)
            }
            Err(e) => {
                tracing::error!(partition = %tp, error = %e, "cannot open partition log");
                None
            }
        }
    }

    /// Side effects of a role change: the group coordinator follows the leadership of
    /// `__consumer_offsets` partitions.
    fn on_transition(&self, replica: &Rc<Replica>, transition: Transition) {
        match transition {
            Transition::BecomesLeader => {
                tracing::info!(partition = %replica.tp, "becomes leader");
                if &*replica.tp.topic == CONSUMER_OFFSETS_TOPIC {
                    self.groups
                        .start_load(replica.tp.partition, replica.log.clone());
                }
            }
            Transition::BecomesFollower => {
                tracing::info!(partition = %replica.tp, "becomes follower");
                if &*replica.tp.topic == CONSUMER_OFFSETS_TOPIC {
                    self.groups.unload(replica.tp.partition);
                }
            }
            Transition::FollowsAnew => {
                tracing::debug!(partition = %replica.tp, role = ?replica.role(), "follows");
            }
            Transition::StaysLeader | Transition::StaysFollower => {}
        }
    }

    /// Every owned log, for periodic work and shutdown.
    pub fn logs(&self) -> Vec<(TopicPartition, Rc<PartitionLog>)> {
        self.partitions
            .borrow()
            .iter()
            .map(|(tp, replica)| (tp.clone(), replica.log.clone()))
            .collect()
    }
}
