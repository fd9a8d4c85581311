//! Metadata: the live brokers, the controller, and topics with their partitions'
//! leaders, leader epochs, replicas and ISR, from the shard's snapshot. A partition
//! whose leader is not a live broker is LEADER_NOT_AVAILABLE (leader -1), as in Kafka;
//! replicas on brokers that are not live are listed as offline. Unknown topics named in
//! the request are auto-created when allowed.

use std::sync::Arc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{ApiKey, BrokerId, MetadataRequest, MetadataResponse};

use sluice_coordination::{MetadataSnapshot, PartitionState, TopicMetadata};
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

/// A topic as Metadata shows it.
fn describe_topic(
    snapshot: &MetadataSnapshot,
    topic: &Arc<TopicMetadata>,
) -> MetadataResponseTopic {
    let partitions = (0..topic.partitions)
        .zip(&topic.partition_states)
        .map(|(p, state)| describe_partition(snapshot, p, state))
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&topic.name)))
        .with_topic_id(uuid::Uuid::from_bytes(topic.id))
        .with_is_internal(topic.internal)
        .with_partitions(partitions)
}

fn describe_partition(
    snapshot: &MetadataSnapshot,
    partition: i32,
    state: &PartitionState,
) -> MetadataResponsePartition {
    let ids = |ids: &[i32]| ids.iter().copied().map(BrokerId).collect::<Vec<_>>();
    let live = |id: i32| snapshot.broker(id).is_some();
    let (error, leader) = if state.leader >= 0 && live(state.leader) {
        (ErrorCode::None, state.leader)
    } else {
        (ErrorCode::LeaderNotAvailable, -1)
    };
    let offline: Vec<i32> = state
        .replicas
        .iter()
        .copied()
        .filter(|&r| !live(r))
        .collect();
    MetadataResponsePartition::default()
        .with_error_code(error.code())
        .with_partition_index(partition)
        .with_leader_id(BrokerId(leader))
        .with_leader_epoch(state.leader_epoch)
        .with_replica_nodes(ids(&state.replicas))
        .with_isr_nodes(ids(&state.isr))
        .with_offline_replicas(ids(&offline))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use sluice_coordination::BrokerEndpoint;

    use super::*;

    fn snapshot(live: &[i32]) -> MetadataSnapshot {
        let brokers = live
            .iter()
            .map(|&id| BrokerEndpoint {
                id,
                host: "127.0.0.1".into(),
                port: 9000 + id as u16,
                rack: None,
            })
            .collect();
        MetadataSnapshot::new(1, "c".into(), live[0], brokers, BTreeMap::new())
    }

    #[test]
    fn partitions_show_their_state_and_offline_replicas() {
        let state = PartitionState {
            replicas: vec![1, 2, 3],
            leader: 2,
            leader_epoch: 7,
            isr: vec![2, 1],
            partition_epoch: 9,
        };
        let p = describe_partition(&snapshot(&[1, 2]), 4, &state);
        assert_eq!(p.error_code, 0);
        assert_eq!(p.partition_index, 4);
        assert_eq!(p.leader_id, BrokerId(2));
        assert_eq!(p.leader_epoch, 7);
        assert_eq!(p.replica_nodes, vec![BrokerId(1), BrokerId(2), BrokerId(3)]);
        assert_eq!(p.isr_nodes, vec![BrokerId(2), BrokerId(1)]);
        assert_eq!(p.offline_replicas, vec![BrokerId(3)]);

        // A leader that is not live, or none at all: LEADER_NOT_AVAILABLE, leader -1.
        for leader in [3, -1] {
            let p = describe_partition(
                &snapshot(&[1, 2]),
                0,
                &PartitionState {
                    leader,
                    ..state.clone()
                },
            );
            assert_eq!(p.error_code, ErrorCode::LeaderNotAvailable.code());
            assert_eq!(p.leader_id, BrokerId(-1));
        }
    }
}
