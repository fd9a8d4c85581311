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

use sluice_coordination::{ControlHandle, MetadataSnapshot, TopicMetadata, CONSUMER_OFFSETS_TOPIC};
use sluice_core::config::BrokerConfig;
use sluice_core::ids::{owner_shard, ShardId, TopicPartition};
use sluice_log::PartitionLog;
use sluice_rt::sync::{oneshot, Notify, Receiver, Sender};

use crate::groups::GroupShard;

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
    /// Logs of the partitions this shard owns, and only those.
    partitions: RefCell<HashMap<TopicPartition, Rc<PartitionLog>>>,
    /// Senders to every shard's job queue, indexed by shard id.
    peers: Vec<Sender<Job>>,
    /// Notified after every append on this shard, so parked fetches re-check.
    appended: Notify,
    shutting_down: Cell<bool>,
    /// The group coordinator of the `__consumer_offsets` partitions this shard owns.
    groups: Rc<GroupShard>,
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
        })
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
        debug_assert_eq!(
            self.owner(&tp.topic, tp.partition),
            self.id,
            "{tp} routed to the wrong shard"
        );
        self.partitions.borrow().get(tp).cloned()
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

    pub fn begin_shutdown(&self) {
        self.shutting_down.set(true);
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

    /// Brings the owned partition logs in line with `snapshot`: opens the logs of new
    /// partitions this shard owns, deletes those of topics that are gone (or were
    /// re-created under a new id), then makes the snapshot current.
    pub async fn apply_snapshot(&self, snapshot: Arc<MetadataSnapshot>) {
        let data_dir = self.config.log_dirs[0].clone();
        let stale: Vec<TopicPartition> = {
            let partitions = self.partitions.borrow();
            partitions
                .keys()
                .filter(|tp| match snapshot.topic(&tp.topic) {
                    None => true,
                    Some(t) => {
                        tp.partition >= t.partitions
                            || self.topic(&tp.topic).is_some_and(|old| old.id != t.id)
                    }
                })
                .cloned()
                .collect()
        };
        for tp in stale {
            let log = self.partitions.borrow_mut().remove(&tp);
            if &*tp.topic == CONSUMER_OFFSETS_TOPIC {
                self.groups.unload(tp.partition);
            }
            if let Some(log) = log {
                if let Err(e) = log.delete().await {
                    tracing::error!(partition = %tp, error = %e, "cannot delete partition log");
                }
            }
        }
        for topic in snapshot.topics.values() {
            for partition in 0..topic.partitions {
                if self.owner(&topic.name, partition) != self.id {
                    continue;
                }
                let tp = TopicPartition::new(topic.name.clone(), partition);
                if self.partitions.borrow().contains_key(&tp) {
                    continue;
                }
                match PartitionLog::open(data_dir.join(tp.dir_name()), topic.log_config.clone())
                    .await
                {
                    Ok(log) => {
                        if &*tp.topic == CONSUMER_OFFSETS_TOPIC {
                            self.groups.start_load(tp.partition, log.clone());
                        }
                        self.partitions.borrow_mut().insert(tp, log);
                    }
                    Err(e) => {
                        tracing::error!(partition = %tp, error = %e, "cannot open partition log")
                    }
                }
            }
        }
        *self.snapshot.borrow_mut() = snapshot;
    }

    /// Every owned log, for periodic work and shutdown.
    pub fn logs(&self) -> Vec<(TopicPartition, Rc<PartitionLog>)> {
        self.partitions
            .borrow()
            .iter()
            .map(|(tp, log)| (tp.clone(), log.clone()))
            .collect()
    }
}
