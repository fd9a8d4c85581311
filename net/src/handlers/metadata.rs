//! Metadata: brokers, controller, and topics with their partitions' leaders and ISR.
//! Unknown topics named in the request are auto-created when allowed.

use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{ApiKey, BrokerId, MetadataRequest, MetadataResponse};

use sluice_coordination::{MetadataSnapshot, TopicMetadata};
use sluice_core::ErrorCode;

use super::{str_bytes, topic_name, topic_or_auto_create};
use crate::api::{Handler, RequestContext};

pub struct Metadata;

impl Handler for Metadata {
    type Request = MetadataRequest;
    type Response = MetadataResponse;
    const KEY: ApiKey = ApiKey::Metadata;
    const MIN_VERSION: i16 = 0;
    const MAX_VERSION: i16 = 12;

    async fn handle(ctx: &RequestContext, request: MetadataRequest) -> Option<MetadataResponse> {
        let shard = &ctx.shard;
        // v0: an empty list means every topic; v1+: null means every topic.
        let requested = match request.topics {
            Some(topics) if !(ctx.api_version == 0 && topics.is_empty()) => Some(topics),
            Some(_) | None => None,
        };
        let allow_auto_create = ctx.api_version < 4 || request.allow_auto_topic_creation;
        let mut topics = Vec::new();
        match requested {
            None => {
                let snapshot = shard.snapshot();
                topics.extend(
                    snapshot
                        .topics
                        .values()
                        .map(|t| describe_topic(&snapshot, t)),
                );
            }
            Some(wanted) => {
                for wanted in wanted {
                    let by_name = wanted.name.as_ref().map(|n| n.0.to_string());
                    let result = match by_name {
                        Some(name) => topic_or_auto_create(shard, &name, allow_auto_create)
                            .await
                            .map_err(|e| (e, name)),
                        None => shard
                            .snapshot()
                            .topic_by_id(wanted.topic_id.as_bytes())
                            .cloned()
                            .ok_or((ErrorCode::UnknownTopicId, String::new())),
                    };
                    topics.push(match result {
                        Ok(topic) => describe_topic(&shard.snapshot(), &topic),
                        Err((code, name)) => MetadataResponseTopic::default()
                            .with_error_code(code.code())
                            .with_name((!name.is_empty()).then(|| topic_name(&name)))
                            .with_topic_id(wanted.topic_id),
                    });
                }
            }
        }
        let snapshot = shard.snapshot();
        Some(
            MetadataResponse::default()
                .with_brokers(brokers(&snapshot))
                .with_cluster_id(Some(str_bytes(&snapshot.cluster_id)))
                .with_controller_id(BrokerId(snapshot.controller_id))
                .with_topics(topics),
        )
    }
}

fn brokers(snapshot: &MetadataSnapshot) -> Vec<MetadataResponseBroker> {
    snapshot
        .brokers
        .iter()
        .map(|b| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(b.id))
                .with_host(str_bytes(&b.host))
                .with_port(i32::from(b.port))
                .with_rack(b.rack.as_deref().map(str_bytes))
        })
        .collect()
}

/// A topic as Metadata shows it. On a single node every replica is this broker, the
/// leader, and in sync.
fn describe_topic(
    snapshot: &MetadataSnapshot,
    topic: &Arc<TopicMetadata>,
) -> MetadataResponseTopic {
    let broker = BrokerId(snapshot.controller_id);
    let partitions = (0..topic.partitions)
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(broker)
                .with_leader_epoch(0)
                .with_replica_nodes(vec![broker])
                .with_isr_nodes(vec![broker])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&topic.name)))
        .with_topic_id(uuid::Uuid::from_bytes(topic.id))
        .with_is_internal(topic.internal)
        .with_partitions(partitions)
}
