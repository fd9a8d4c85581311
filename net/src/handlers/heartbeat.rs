//! Heartbeat: keeps a member's session alive; REBALANCE_IN_PROGRESS tells it to rejoin.

use kafka_protocol::messages::{ApiKey, HeartbeatRequest, HeartbeatResponse};

use crate::api::{Handler, RequestContext};
use crate::groups::on_coordinator;

pub struct Heartbeat;

impl Handler for Heartbeat {
    type Request = HeartbeatRequest;
    type Response = HeartbeatResponse;
    const KEY: ApiKey = ApiKey::Heartbeat;
    const MIN_VERSION: i16 = 0;
    const MAX_VERSION: i16 = 4;

    async fn handle(ctx: &RequestContext, request: HeartbeatRequest) -> Option<HeartbeatResponse> {
        let group_id = request.group_id.0.to_string();
        let member_id = request.member_id.to_string();
        let instance = request.group_instance_id.map(|s| s.to_string());
        let generation_id = request.generation_id;
        let gid = group_id.clone();
        let code = on_coordinator(&ctx.shard, &group_id, move |shard| async move {
            let groups = shard.groups();
            let now = groups.clock_ms();
            groups.with(|c| c.heartbeat(now, &gid, &member_id, instance.as_deref(), generation_id))
        })
        .await
        .unwrap_or_else(|code| code);
        Some(HeartbeatResponse::default().with_error_code(code.code()))
    }
}
