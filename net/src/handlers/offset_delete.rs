//! OffsetDelete: removes committed offsets of given partitions (tombstones appended to
//! `__consumer_offsets`), refused with GROUP_SUBSCRIBED_TO_TOPIC for topics an active
//! consumer group subscribes to.

use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{ApiKey, OffsetDeleteRequest, OffsetDeleteResponse};

use sluice_core::ErrorCode;

use super::topic_name;
use crate::api::{Handler, RequestContext};
use crate::groups::{append_records, on_coordinator};

pub struct OffsetDelete;

impl Handler for OffsetDelete {
    type Request = OffsetDeleteRequest;
    type Response = OffsetDeleteResponse;
    const KEY: ApiKey = ApiKey::OffsetDelete;
    const MIN_VERSION: i16 = 0;
    const MAX_VERSION: i16 = 0;

    async fn handle(
        ctx: &RequestContext,
        request: OffsetDeleteRequest,
    ) -> Option<OffsetDeleteResponse> {
        let group_id = request.group_id.0.to_string();
        let partitions: Vec<(String, i32)> = request
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(move |p| (t.name.0.to_string(), p.partition_index))
            })
            .collect();
        let gid = group_id.clone();
        let asked = partitions.clone();
        let outcome = on_coordinator(&ctx.shard, &group_id, move |shard| async move {
            let deleted = shard.groups().with(|c| c.delete_offsets(&gid, &asked));
            let (partition, codes, records) = deleted?;
            let records = records.into_iter().map(|r| (partition, r)).collect();
            append_records(&shard, records).await?;
            Ok(codes)
        })
        .await
        .and_then(|r| r);
        let mut response = OffsetDeleteResponse::default();
        let codes = match outcome {
            Ok(codes) => codes,
            Err(code) => {
                response.error_code = code.code();
                return Some(response);
            }
        };
        let mut codes = codes.into_iter();
        response.topics = request
            .topics
            .into_iter()
            .map(|t| {
                let partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        OffsetDeleteResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(codes.next().unwrap_or(ErrorCode::None).code())
                    })
                    .collect();
                OffsetDeleteResponseTopic::default()
                    .with_name(topic_name(&t.name.0))
                    .with_partitions(partitions)
            })
            .collect();
        Some(response)
    }
}
