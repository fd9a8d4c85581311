//! One module per Kafka API. Each implements [`crate::api::Handler`]; the list in
//! `api.rs` is the dispatch table. Handlers return response values and never touch a
//! socket, so they are tested without a network.

pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod metadata;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sync_group;

use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;

use sluice_coordination::{NewTopic, TopicMetadata};
use sluice_core::ErrorCode;
use sluice_rt::exec::{spawn, Task};

use crate::shard::{Shard, ShardGone};

pub(crate) fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

pub(crate) fn topic_name(s: &str) -> TopicName {
    TopicName(str_bytes(s))
}

pub(crate) fn message(code: ErrorCode, text: impl Into<String>) -> Option<StrBytes> {
    (!code.is_ok()).then(|| StrBytes::from_string(text.into()))
}

/// Awaits every task, keeping their order.
pub(crate) async fn gather<T: 'static>(tasks: Vec<Task<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(tasks.len());
    for task in tasks {
        out.push(task.await);
    }
    out
}

/// Where one partition's answer goes in a response: (topic index, partition index),
/// in request order.
pub(crate) type Slot = (usize, usize);

/// One partition's part of a request, on its way to the shard that owns the partition.
pub(crate) trait Part: Send + 'static {
    fn slot(&self) -> Slot;
}

/// No parts yet for each shard of this broker, indexed by owning shard id.
pub(crate) fn per_shard<P>(shard: &Shard) -> Vec<Vec<P>> {
    (0..shard.count).map(|_| Vec::new()).collect()
}

/// Whether `partition` is one of the partitions of `topic` (`None`: an unknown topic).
pub(crate) fn has_partition(topic: Option<&TopicMetadata>, partition: i32) -> bool {
    topic.is_some_and(|t| partition >= 0 && partition < t.partitions)
}

/// Runs `local` on every shard that owns some of the parts (`by_shard`, indexed by
/// owning shard id), concurrently, and returns every part's outcome with its slot. The
/// parts sent to a shard that is gone (shutting down) get `gone`'s outcome.
pub(crate) async fn on_owners<P, R, F, Fut>(
    shard: &Rc<Shard>,
    by_shard: Vec<Vec<P>>,
    local: F,
    gone: fn(ShardGone) -> R,
) -> Vec<(Slot, R)>
where
    P: Part,
    R: Send + 'static,
    F: FnOnce(Rc<Shard>, Vec<P>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Vec<(Slot, R)>> + 'static,
{
    let tasks = by_shard
        .into_iter()
        .enumerate()
        .filter(|(_, parts)| !parts.is_empty())
        .map(|(owner, parts)| {
            let shard = shard.clone();
            let local = local.clone();
            spawn(async move {
                let slots: Vec<Slot> = parts.iter().map(Part::slot).collect();
                match shard.run_on(owner, move |s| local(s, parts)).await {
                    Ok(outcomes) => outcomes,
                    Err(shard_gone) => slots
                        .into_iter()
                        .map(|slot| (slot, gone(shard_gone)))
                        .collect(),
                }
            })
        })
        .collect();
    gather(tasks).await.into_iter().flatten().collect()
}

/// The topic named, creating it with the broker's defaults if it does not exist and
/// auto-creation is on (`auto.create.topics.enable`) and allowed by the request.
pub(crate) async fn topic_or_auto_create(
    shard: &Shard,
    name: &str,
    allow_auto_create: bool,
) -> Result<Arc<TopicMetadata>, ErrorCode> {
    if let Some(topic) = shard.topic(name) {
        return Ok(topic);
    }
    if !(allow_auto_create && shard.config.auto_create_topics_enable) {
        return Err(ErrorCode::UnknownTopicOrPartition);
    }
    let request = NewTopic {
        name: name.to_owned(),
        num_partitions: -1,
        replication_factor: -1,
        configs: Default::default(),
    };
    let results = shard
        .control
        .create_topics(vec![request], false)
        .await
        .map_err(|_| ErrorCode::CoordinatorNotAvailable)?;
    match results.into_iter().next() {
        Some(Ok(topic)) => Ok(topic),
        // Another client created it first: serve what the metadata now holds.
        Some(Err(e)) if e.code == ErrorCode::TopicAlreadyExists => {
            shard.topic(name).ok_or(ErrorCode::LeaderNotAvailable)
        }
        Some(Err(e)) => Err(e.code),
        None => Err(ErrorCode::UnknownServerError),
    }
}

/// `min.insync.replicas` of a topic: its own setting, else the broker's.
pub(crate) fn min_insync_replicas(shard: &Shard, topic: &TopicMetadata) -> i32 {
    topic
        .configs
        .get("min.insync.replicas")
        .and_then(|v| v.parse().ok())
        .unwrap_or(shard.config.min_insync_replicas)
}
