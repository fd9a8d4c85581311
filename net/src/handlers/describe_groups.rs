//! DescribeGroups: state, protocol and members (with metadata and assignment once the
//! group is stable) from each group's coordinator shard. An unknown group is "Dead"
//! with no members, as in Kafka.

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{ApiKey, DescribeGroupsRequest, DescribeGroupsResponse};

use sluice_coordination::group::GroupDescription;
use sluice_core::ErrorCode;

use super::str_bytes;
use crate::api::{Handler, RequestContext};
use crate::groups::on_coordinator;

pub struct DescribeGroups;

/// Kafka's AclOperation codes a group supports: READ (3), DELETE (6), DESCRIBE (8).
const GROUP_OPERATIONS: i32 = (1 << 3) | (1 << 6) | (1 << 8);

impl Handler for DescribeGroups {
    type Request = DescribeGroupsRequest;
    type Response = DescribeGroupsResponse;
    const KEY: ApiKey = ApiKey::DescribeGroups;
    const MIN_VERSION: i16 = 0;
    const MAX_VERSION: i16 = 5;

    async fn handle(
        ctx: &RequestContext,
        request: DescribeGroupsRequest,
    ) -> Option<DescribeGroupsResponse> {
        let version = ctx.api_version;
        let mut groups = Vec::with_capacity(request.groups.len());
        for group_id in request.groups {
            let name = group_id.0.to_string();
            let gid = name.clone();
            let described = on_coordinator(&ctx.shard, &name, move |shard| async move {
                shard.groups().with(|c| c.describe(&gid))
            })
            .await;
            let mut group = DescribedGroup::default().with_group_id(group_id);
            if version >= 3 && request.include_authorized_operations {
                group.authorized_operations = GROUP_OPERATIONS;
            }
            match described {
                Err(code) => group.error_code = code.code(),
                Ok(d) => fill(&mut group, d, version),
            }
            groups.push(group);
        }
        Some(DescribeGroupsResponse::default().with_groups(groups))
    }
}

fn fill(group: &mut DescribedGroup, d: GroupDescription, version: i16) {
    group.error_code = ErrorCode::None.code();
    group.group_state = str_bytes(d.state.as_str());
    group.protocol_type = str_bytes(&d.protocol_type);
    group.protocol_data = str_bytes(&d.protocol);
    group.members = d
        .members
        .into_iter()
        .map(|m| {
            DescribedGroupMember::default()
                .with_member_id(str_bytes(&m.member_id))
                .with_group_instance_id(if version >= 4 {
                    m.group_instance_id.as_deref().map(str_bytes)
                } else {
                    None
                })
                .with_client_id(str_bytes(&m.client_id))
                .with_client_host(str_bytes(&m.client_host))
                .with_member_metadata(m.metadata)
                .with_member_assignment(m.assignment)
        })
        .collect();
}
