//! JoinGroup: parked on the group's coordinator shard until the rebalance completes
//! (every known member rejoined, or the rebalance timeout passed). v4+ hands a new
//! member its id with MEMBER_ID_REQUIRED first.

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{ApiKey, JoinGroupRequest, JoinGroupResponse};

use sluice_coordination::group::{JoinRequest, JoinResult};

use super::str_bytes;
use crate::api::{Handler, RequestContext};
use crate::groups::on_coordinator;

pub struct JoinGroup;

impl Handler for JoinGroup {
    type Request = JoinGroupRequest;
    type Response = JoinGroupResponse;
    const KEY: ApiKey = ApiKey::JoinGroup;
    const MIN_VERSION: i16 = 0;
    const MAX_VERSION: i16 = 9;

    async fn handle(ctx: &RequestContext, request: JoinGroupRequest) -> Option<JoinGroupResponse> {
        let version = ctx.api_version;
        let group_id = request.group_id.0.to_string();
        let join = JoinRequest {
            group_id: group_id.clone(),
            member_id: request.member_id.to_string(),
            group_instance_id: request.group_instance_id.map(|s| s.to_string()),
            client_id: ctx.client_id.clone().unwrap_or_default(),
            client_host: format!("/{}", ctx.peer.ip()),
            session_timeout_ms: request.session_timeout_ms,
            // v0 has no rebalance timeout: the session timeout serves as both.
            rebalance_timeout_ms: if version == 0 {
                request.session_timeout_ms
            } else {
                request.rebalance_timeout_ms
            },
            protocol_type: request.protocol_type.to_string(),
            protocols: request
                .protocols
                .into_iter()
                .map(|p| (p.name.to_string(), p.metadata))
                .collect(),
            require_known_member_id: version >= 4,
        };
        let member_id = join.member_id.clone();
        let result = on_coordinator(&ctx.shard, &group_id, move |shard| async move {
            let groups = shard.groups().clone();
            groups.join(&shard, join).await
        })
        .await
        .unwrap_or_else(|code| JoinResult {
            error: code,
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id,
            members: Vec::new(),
        });
        Some(response(result, version))
    }
}

fn response(result: JoinResult, version: i16) -> JoinGroupResponse {
    // Before v7 the protocol name is not nullable: Kafka sends "" for none.
    let protocol_name = match result.protocol_name {
        None if version < 7 => Some(str_bytes("")),
        other => other.as_deref().map(str_bytes),
    };
    JoinGroupResponse::default()
        .with_error_code(result.error.code())
        .with_generation_id(result.generation_id)
        .with_protocol_type(if version >= 7 {
            result.protocol_type.as_deref().map(str_bytes)
        } else {
            None
        })
        .with_protocol_name(protocol_name)
        .with_leader(str_bytes(&result.leader))
        .with_member_id(str_bytes(&result.member_id))
        .with_members(
            result
                .members
                .into_iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(&m.member_id))
                        .with_group_instance_id(if version >= 5 {
                            m.group_instance_id.as_deref().map(str_bytes)
                        } else {
                            None
                        })
                        .with_metadata(m.metadata)
                })
                .collect(),
        )
}
