//! LeaveGroup: one member (v0-2) or a batch of members by id or instance id (v3+);
//! the group rebalances without them.

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{ApiKey, LeaveGroupRequest, LeaveGroupResponse};

use sluice_coordination::group::Effects;
use sluice_core::ErrorCode;
use sluice_rt::time::now_ms;

use super::str_bytes;
use crate::api::{Handler, RequestContext};
use crate::groups::on_coordinator;

pub struct LeaveGroup;

impl Handler for LeaveGroup {
    type Request = LeaveGroupRequest;
    type Response = LeaveGroupResponse;
    const KEY: ApiKey = ApiKey::LeaveGroup;
    const MIN_VERSION: i16 = 0;
    const MAX_VERSION: i16 = 5;

    async fn handle(
        ctx: &RequestContext,
        request: LeaveGroupRequest,
    ) -> Option<LeaveGroupResponse> {
        let version = ctx.api_version;
        let group_id = request.group_id.0.to_string();
        let members: Vec<(String, Option<String>)> = if version >= 3 {
            request
                .members
                .iter()
                .map(|m| {
                    (
                        m.member_id.to_string(),
                        m.group_instance_id.as_ref().map(|s| s.to_string()),
                    )
                })
                .collect()
        } else {
            vec![(request.member_id.to_string(), None)]
        };
        let asked = members.clone();
        let gid = group_id.clone();
        let outcome = on_coordinator(&ctx.shard, &group_id, move |shard| async move {
            let groups = shard.groups().clone();
            let (now, wall) = (groups.clock_ms(), now_ms());
            let mut effects = Effects::default();
            let result = groups.with(|c| c.leave(now, wall, &gid, &members, &mut effects));
            let _ = groups.apply(&shard, effects).await;
            result
        })
        .await
        .and_then(|r| r);
        let mut response = LeaveGroupResponse::default();
        match outcome {
            Err(code) => response.error_code = code.code(),
            Ok(codes) if version < 3 => {
                response.error_code = codes.first().copied().unwrap_or(ErrorCode::None).code();
            }
            Ok(codes) => {
                response.members = asked
                    .into_iter()
                    .zip(codes)
                    .map(|((member_id, instance), code)| {
                        MemberResponse::default()
                            .with_member_id(str_bytes(&member_id))
                            .with_group_instance_id(instance.as_deref().map(str_bytes))
                            .with_error_code(code.code())
                    })
                    .collect();
            }
        }
        Some(response)
    }
}
