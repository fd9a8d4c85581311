//! SyncGroup: the leader hands in the assignment; followers are parked on the
//! coordinator shard until it arrives.

use kafka_protocol::messages::{ApiKey, SyncGroupRequest, SyncGroupResponse};

use sluice_coordination::group::{SyncRequest, SyncResult};

use super::str_bytes;
use crate::api::{Handler, RequestContext};
use crate::groups::on_coordinator;

pub struct SyncGroup;

impl Handler for SyncGroup {
    type Request = SyncGroupRequest;
    type Response = SyncGroupResponse;
    const KEY: ApiKey = ApiKey::SyncGroup;
    const MIN_VERSION: i16 = 0;
    const MAX_VERSION: i16 = 5;

    async fn handle(ctx: &RequestContext, request: SyncGroupRequest) -> Option<SyncGroupResponse> {
        let version = ctx.api_version;
        let group_id = request.group_id.0.to_string();
        let sync = SyncRequest {
            group_id: group_id.clone(),
            generation_id: request.generation_id,
            member_id: request.member_id.to_string(),
            group_instance_id: request.group_instance_id.map(|s| s.to_string()),
            protocol_type: request.protocol_type.map(|s| s.to_string()),
            protocol_name: request.protocol_name.map(|s| s.to_string()),
            assignments: request
                .assignments
                .into_iter()
                .map(|a| (a.member_id.to_string(), a.assignment))
                .collect(),
        };
        let result = on_coordinator(&ctx.shard, &group_id, move |shard| async move {
            let groups = shard.groups().clone();
            groups.sync(&shard, sync).await
        })
        .await
        .unwrap_or_else(|code| SyncResult {
            error: code,
            protocol_type: None,
            protocol_name: None,
            assignment: Default::default(),
        });
        let mut response = SyncGroupResponse::default()
            .with_error_code(result.error.code())
            .with_assignment(result.assignment);
        if version >= 5 {
            response.protocol_type = result.protocol_type.as_deref().map(str_bytes);
            response.protocol_name = result.protocol_name.as_deref().map(str_bytes);
        }
        Some(response)
    }
}
