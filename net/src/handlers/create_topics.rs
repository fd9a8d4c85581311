//! CreateTopics (incl. validate_only), forwarded to the control plane, which answers
//! once every shard has opened the new partitions' logs.

use std::collections::HashSet;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, CreateTopicsResponse};

use sluice_coordination::NewTopic;
use sluice_core::config::topic_config_entries;
use sluice_core::ErrorCode;

use super::{message, str_bytes};
use crate::api::{Handler, RequestContext};

pub struct CreateTopics;

impl Handler for CreateTopics {
    type Request = CreateTopicsRequest;
    type Response = CreateTopicsResponse;
    const KEY: ApiKey = ApiKey::CreateTopics;
    const MIN_VERSION: i16 = 2;
    const MAX_VERSION: i16 = 7;

    async fn handle(
        ctx: &RequestContext,
        request: CreateTopicsRequest,
    ) -> Option<CreateTopicsResponse> {
        let shard = &ctx.shard;
        // Kafka refuses every entry of a name given more than once.
        let mut seen = HashSet::new();
        let duplicated: HashSet<String> = request
            .topics
            .iter()
            .map(|t| t.name.0.to_string())
            .filter(|n| !seen.insert(n.clone()))
            .collect();

        let mut results: Vec<CreatableTopicResult> = Vec::with_capacity(request.topics.len());
        let mut to_create = Vec::new();
        for topic in &request.topics {
            let name = topic.name.0.to_string();
            let mut result = CreatableTopicResult::default().with_name(topic.name.clone());
            let refused = if duplicated.contains(&name) {
                Some((ErrorCode::InvalidRequest, format!("Create topics request from client contains multiple entries for the topic {name}")))
            } else if !topic.assignments.is_empty()
                && (topic.num_partitions != -1 || topic.replication_factor != -1)
            {
                Some((
                    ErrorCode::InvalidRequest,
                    "Both numPartitions or replicationFactor and replicasAssignments were set."
                        .to_owned(),
                ))
            } else {
                topic
                    .assignments
                    .iter()
                    .flat_map(|a| a.broker_ids.iter())
                    .find(|id| shard.snapshot().broker(id.0).is_none())
                    .map(|bad| {
                        (
                            ErrorCode::InvalidReplicaAssignment,
                            format!("Unknown broker {} in replica assignment", bad.0),
                        )
                    })
            };
            if let Some((code, text)) = refused {
                result.error_code = code.code();
                result.error_message = message(code, text);
            } else {
                let (num_partitions, replication_factor) = if topic.assignments.is_empty() {
                    (topic.num_partitions, topic.replication_factor)
                } else {
                    (
                        topic.assignments.len() as i32,
                        topic.assignments[0].broker_ids.len() as i16,
                    )
                };
                let configs = topic
                    .configs
                    .iter()
                    .filter_map(|c| {
                        c.value
                            .as_ref()
                            .map(|v| (c.name.to_string(), v.to_string()))
                    })
                    .collect();
                to_create.push((
                    results.len(),
                    NewTopic {
                        name,
                        num_partitions,
                        replication_factor,
                        configs,
                    },
                ));
            }
            results.push(result);
        }

        let (slots, topics): (Vec<usize>, Vec<NewTopic>) = to_create.into_iter().unzip();
        let outcomes = if topics.is_empty() {
            Vec::new()
        } else {
            match shard
                .control
                .create_topics(topics, request.validate_only)
                .await
            {
                Ok(outcomes) => outcomes.into_iter().map(Some).collect(),
                Err(_) => vec![None; slots.len()],
            }
        };
        for (slot, outcome) in slots.into_iter().zip(outcomes) {
            let result = &mut results[slot];
            match outcome {
                Some(Ok(topic)) => {
                    result.topic_id = uuid::Uuid::from_bytes(topic.id);
                    result.num_partitions = topic.partitions;
                    result.replication_factor = topic.replication_factor;
                    result.configs = Some(
                        topic_config_entries(&shard.config, &topic.configs)
                            .into_iter()
                            .map(|e| {
                                CreatableTopicConfigs::default()
                                    .with_name(str_bytes(&e.name))
                                    .with_value(e.value.as_deref().map(str_bytes))
                                    .with_read_only(e.read_only)
                                    .with_config_source(e.source.code())
                                    .with_is_sensitive(e.sensitive)
                            })
                            .collect(),
                    );
                }
                Some(Err(e)) => {
                    result.error_code = e.code.code();
                    result.error_message = message(e.code, e.message);
                }
                None => {
                    result.error_code = ErrorCode::NotController.code();
                    result.error_message = message(
                        ErrorCode::NotController,
                        "the control plane is not available",
                    );
                }
            }
        }
        Some(CreateTopicsResponse::default().with_topics(results))
    }
}
