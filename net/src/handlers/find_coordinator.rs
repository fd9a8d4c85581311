//! FindCoordinator: a group's coordinator is the leader of the group's
//! `__consumer_offsets` partition (COORDINATOR_NOT_AVAILABLE while that partition has
//! no live leader). Creates `__consumer_offsets` on first use, as Kafka does.
//! Transactions are not implemented: their coordinator is never available.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{ApiKey, BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use sluice_coordination::CONSUMER_OFFSETS_TOPIC;
use sluice_core::ErrorCode;

use super::{message, str_bytes};
use crate::api::{Handler, RequestContext};
use crate::groups::ensure_offsets_topic;
use crate::shard::Shard;

pub struct FindCoordinator;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

impl Handler for FindCoordinator {
    type Request = FindCoordinatorRequest;
    type Response = FindCoordinatorResponse;
    const KEY: ApiKey = ApiKey::FindCoordinator;
    const MIN_VERSION: i16 = 0;
    const MAX_VERSION: i16 = 4;

    async fn handle(
        ctx: &RequestContext,
        request: FindCoordinatorRequest,
    ) -> Option<FindCoordinatorResponse> {
        let keys = if ctx.api_version >= 4 {
            request.coordinator_keys
        } else {
            vec![request.key]
        };
        let mut coordinators = Vec::with_capacity(keys.len());
        for key in keys {
            let found = find(&ctx.shard, &key, request.key_type).await;
            coordinators.push((key, found));
        }
        let mut response = FindCoordinatorResponse::default();
        if ctx.api_version >= 4 {
            response.coordinators = coordinators
                .into_iter()
                .map(|(key, found)| {
                    let (code, node_id, host, port) = fields(found);
                    Coordinator::default()
                        .with_key(key)
                        .with_node_id(node_id)
                        .with_host(host)
                        .with_port(port)
                        .with_error_code(code.code())
                        .with_error_message(message(code, error_text(code)))
                })
                .collect();
        } else if let Some((_, found)) = coordinators.into_iter().next() {
            let (code, node_id, host, port) = fields(found);
            response.error_code = code.code();
            response.error_message = if ctx.api_version >= 1 {
                message(code, error_text(code))
            } else {
                None
            };
            response.node_id = node_id;
            response.host = host;
            response.port = port;
        }
        Some(response)
    }
}

/// (node id, host, port) of the coordinator, or why there is none.
async fn find(shard: &Shard, key: &str, key_type: i8) -> Result<(i32, String, u16), ErrorCode> {
    match key_type {
        KEY_TYPE_GROUP => {}
        KEY_TYPE_TRANSACTION => return Err(ErrorCode::CoordinatorNotAvailable),
        _ => return Err(ErrorCode::InvalidRequest),
    }
    if key.is_empty() {
        return Err(ErrorCode::InvalidRequest);
    }
    ensure_offsets_topic(shard).await?;
    let partition = shard.groups().with(|c| c.partition_for(key));
    let snapshot = shard.snapshot();
    let leader = snapshot
        .partition(CONSUMER_OFFSETS_TOPIC, partition)
        .map_or(-1, |state| state.leader);
    let broker = snapshot
        .broker(leader)
        .ok_or(ErrorCode::CoordinatorNotAvailable)?;
    Ok((broker.id, broker.host.clone(), broker.port))
}

fn fields(found: Result<(i32, String, u16), ErrorCode>) -> (ErrorCode, BrokerId, StrBytes, i32) {
    match found {
        Ok((id, host, port)) => (
            ErrorCode::None,
            BrokerId(id),
            str_bytes(&host),
            i32::from(port),
        ),
        Err(code) => (code, BrokerId(-1), str_bytes(""), -1),
    }
}

fn error_text(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::InvalidRequest => "Invalid coordinator key or key type.",
        _ => "The coordinator is not available.",
    }
}
