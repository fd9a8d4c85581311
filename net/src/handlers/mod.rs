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

use std::sync::Arc;

use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;

use sluice_coordination::{NewTopic, TopicMetadata};
use sluice_core::ErrorCode;
use sluice_rt::exec::Task;

use crate::shard::Shard;

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
