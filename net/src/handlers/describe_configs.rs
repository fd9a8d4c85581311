//! DescribeConfigs for topics (every supported topic config with its source) and for
//! this broker (its static configuration, read-only).

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{ApiKey, DescribeConfigsRequest, DescribeConfigsResponse};

use sluice_core::config::{broker_config_entries, topic_config_entries, ConfigEntry};
use sluice_core::ErrorCode;

use super::{message, str_bytes};
use crate::api::{Handler, RequestContext};

pub struct DescribeConfigs;

/// Kafka's `ConfigResource.Type` codes.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

impl Handler for DescribeConfigs {
    type Request = DescribeConfigsRequest;
    type Response = DescribeConfigsResponse;
    const KEY: ApiKey = ApiKey::DescribeConfigs;
    const MIN_VERSION: i16 = 1;
    const MAX_VERSION: i16 = 4;

    async fn handle(
        ctx: &RequestContext,
        request: DescribeConfigsRequest,
    ) -> Option<DescribeConfigsResponse> {
        let shard = &ctx.shard;
        let results = request
            .resources
            .into_iter()
            .map(|resource| {
                let name = resource.resource_name.to_string();
                let entries: Result<Vec<ConfigEntry>, (ErrorCode, String)> =
                    match resource.resource_type {
                        RESOURCE_TOPIC => match shard.topic(&name) {
                            Some(topic) => Ok(topic_config_entries(&shard.config, &topic.configs)),
                            None => Err((
                                ErrorCode::UnknownTopicOrPartition,
                                format!("Topic {name} does not exist"),
                            )),
                        },
                        RESOURCE_BROKER
                            if name.is_empty() || name == shard.config.broker_id.to_string() =>
                        {
                            Ok(broker_config_entries(&shard.config))
                        }
                        RESOURCE_BROKER => Err((
                            ErrorCode::InvalidRequest,
                            format!("Unexpected broker id, expected {}", shard.config.broker_id),
                        )),
                        other => Err((
                            ErrorCode::InvalidRequest,
                            format!("Unsupported resource type {other}"),
                        )),
                    };
                let mut result = DescribeConfigsResult::default()
                    .with_resource_type(resource.resource_type)
                    .with_resource_name(resource.resource_name);
                match entries {
                    Ok(entries) => {
                        let wanted = resource
                            .configuration_keys
                            .map(|keys| keys.iter().map(|k| k.to_string()).collect::<Vec<_>>());
                        result.configs = entries
                            .into_iter()
                            .filter(|e| wanted.as_ref().is_none_or(|w| w.contains(&e.name)))
                            .map(|e| {
                                DescribeConfigsResourceResult::default()
                                    .with_name(str_bytes(&e.name))
                                    .with_value(e.value.as_deref().map(str_bytes))
                                    .with_read_only(e.read_only)
                                    .with_config_source(e.source.code())
                                    .with_is_sensitive(e.sensitive)
                                    .with_config_type(e.config_type.code())
                            })
                            .collect();
                    }
                    Err((code, text)) => {
                        result.error_code = code.code();
                        result.error_message = message(code, text);
                    }
                }
                result
            })
            .collect();
        Some(DescribeConfigsResponse::default().with_results(results))
    }
}
