//! DeleteTopics, by name (v1-5) or by name or id (v6).

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{ApiKey, DeleteTopicsRequest, DeleteTopicsResponse};

use sluice_core::ErrorCode;

use super::{message, topic_name};
use crate::api::{Handler, RequestContext};

pub struct DeleteTopics;

impl Handler for DeleteTopics {
    type Request = DeleteTopicsRequest;
    type Response = DeleteTopicsResponse;
    const KEY: ApiKey = ApiKey::DeleteTopics;
    const MIN_VERSION: i16 = 1;
    const MAX_VERSION: i16 = 6;

    async fn handle(
        ctx: &RequestContext,
        request: DeleteTopicsRequest,
    ) -> Option<DeleteTopicsResponse> {
        let shard = &ctx.shard;
        let snapshot = shard.snapshot();
        // Resolve every entry to a name (v6 may name a topic by id only).
        let mut results = Vec::new();
        let mut names = Vec::new();
        let mut slots = Vec::new();
        let entries: Vec<(Option<String>, uuid::Uuid)> = if ctx.api_version >= 6 {
            request
                .topics
                .iter()
                .map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id))
                .collect()
        } else {
            request
                .topic_names
                .iter()
                .map(|n| (Some(n.0.to_string()), uuid::Uuid::nil()))
                .collect()
        };
        for (name, id) in entries {
            let name = name.or_else(|| {
                snapshot
                    .topic_by_id(id.as_bytes())
                    .map(|t| t.name.to_string())
            });
            let mut result = DeletableTopicResult::default()
                .with_topic_id(id)
                .with_name(name.as_deref().map(topic_name));
            match name {
                Some(name) => {
                    slots.push(results.len());
                    names.push(name);
                }
                None => {
                    result.error_code = ErrorCode::UnknownTopicId.code();
                    result.error_message = message(ErrorCode::UnknownTopicId, "unknown topic id");
                }
            }
            results.push(result);
        }
        if !names.is_empty() {
            let count = names.len();
            let outcomes = match shard.control.delete_topics(names).await {
                Ok(outcomes) => outcomes.into_iter().map(Some).collect(),
                Err(_) => vec![None; count],
            };
            for (slot, outcome) in slots.into_iter().zip(outcomes) {
                let result = &mut results[slot];
                match outcome {
                    Some(Ok(id)) => result.topic_id = uuid::Uuid::from_bytes(id),
                    Some(Err(e)) => {
                        result.error_code = e.code.code();
                        result.error_message = message(e.code, e.message);
                    }
                    None => result.error_code = ErrorCode::NotController.code(),
                }
            }
        }
        Some(DeleteTopicsResponse::default().with_responses(results))
    }
}
