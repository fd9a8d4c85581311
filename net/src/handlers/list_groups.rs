//! ListGroups: the groups of every shard's loaded `__consumer_offsets` partitions,
//! filtered by state (v4+) and type (v5+; every group here is "classic").

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{ApiKey, GroupId, ListGroupsRequest, ListGroupsResponse};

use sluice_coordination::group::GroupListing;
use sluice_rt::exec::spawn;

use super::{gather, str_bytes};
use crate::api::{Handler, RequestContext};

pub struct ListGroups;

const GROUP_TYPE: &str = "classic";

impl Handler for ListGroups {
    type Request = ListGroupsRequest;
    type Response = ListGroupsResponse;
    const KEY: ApiKey = ApiKey::ListGroups;
    const MIN_VERSION: i16 = 0;
    const MAX_VERSION: i16 = 5;

    async fn handle(
        ctx: &RequestContext,
        request: ListGroupsRequest,
    ) -> Option<ListGroupsResponse> {
        let version = ctx.api_version;
        let shard = &ctx.shard;
        let tasks = (0..shard.count)
            .map(|target| {
                let shard = shard.clone();
                spawn(async move {
                    shard
                        .run_on(target, |s| async move { s.groups().with(|c| c.list()) })
                        .await
                        .unwrap_or_default()
                })
            })
            .collect();
        let states: Vec<String> = request
            .states_filter
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect();
        let types: Vec<String> = request
            .types_filter
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect();
        let wanted = |g: &GroupListing| {
            (states.is_empty() || states.contains(&g.state.as_str().to_ascii_lowercase()))
                && (types.is_empty() || types.iter().any(|t| t == GROUP_TYPE))
        };
        let groups = gather(tasks)
            .await
            .into_iter()
            .flatten()
            .filter(|g| wanted(g))
            .map(|g| {
                let mut listed = ListedGroup::default()
                    .with_group_id(GroupId(str_bytes(&g.group_id)))
                    .with_protocol_type(str_bytes(&g.protocol_type));
                if version >= 4 {
                    listed.group_state = str_bytes(g.state.as_str());
                }
                if version >= 5 {
                    listed.group_type = str_bytes(GROUP_TYPE);
                }
                listed
            })
            .collect();
        Some(ListGroupsResponse::default().with_groups(groups))
    }
}
