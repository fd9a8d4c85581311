//! CreatePartitions: grow a topic's partition count (incl. validate_only).

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{ApiKey, CreatePartitionsRequest, CreatePartitionsResponse};

use sluice_core::ErrorCode;

use super::message;
use crate::api::{Handler, RequestContext};

pub struct CreatePartitions;

impl Handler for CreatePartitions {
    type Request = CreatePartitionsRequest;
    type Response = CreatePartitionsResponse;
    const KEY: ApiKey = ApiKey::CreatePartitions;
    const MIN_VERSION: i16 = 0;
    const MAX_VERSION: i16 = 3;

    async fn handle(
        ctx: &RequestContext,
        request: CreatePartitionsRequest,
    ) -> Option<CreatePartitionsResponse> {
        let shard = &ctx.shard;
        let mut results: Vec<CreatePartitionsTopicResult> = request
            .topics
            .iter()
            .map(|t| CreatePartitionsTopicResult::default().with_name(t.name.clone()))
            .collect();
        let changes: Vec<(String, i32)> = request
            .topics
            .iter()
            .map(|t| (t.name.0.to_string(), t.count))
            .collect();
        if changes.is_empty() {
            return Some(CreatePartitionsResponse::default().with_results(results));
        }
        match shard
            .control
            .create_partitions(changes, request.validate_only)
            .await
        {
            Ok(outcomes) => {
                for (result, outcome) in results.iter_mut().zip(outcomes) {
                    if let Err(e) = outcome {
                        result.error_code = e.code.code();
                        result.error_message = message(e.code, e.message);
                    }
                }
            }
            Err(_) => {
                for result in &mut results {
                    result.error_code = ErrorCode::NotController.code();
                }
            }
        }
        Some(CreatePartitionsResponse::default().with_results(results))
    }
}
