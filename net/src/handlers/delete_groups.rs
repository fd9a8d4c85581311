//! DeleteGroups: an empty group's offsets and metadata are removed and tombstones
//! (null values) appended to `__consumer_offsets`, so a restart does not bring them
//! back. A group with members gets NON_EMPTY_GROUP.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{ApiKey, DeleteGroupsRequest, DeleteGroupsResponse};

use sluice_core::ErrorCode;

use crate::api::{Handler, RequestContext};
use crate::groups::{append_records, on_coordinator};

pub struct DeleteGroups;

impl Handler for DeleteGroups {
    type Request = DeleteGroupsRequest;
    type Response = DeleteGroupsResponse;
    const KEY: ApiKey = ApiKey::DeleteGroups;
    const MIN_VERSION: i16 = 0;
    const MAX_VERSION: i16 = 2;

    async fn handle(
        ctx: &RequestContext,
        request: DeleteGroupsRequest,
    ) -> Option<DeleteGroupsResponse> {
        let mut results = Vec::with_capacity(request.groups_names.len());
        for group_id in request.groups_names {
            let gid = group_id.0.to_string();
            let name = gid.clone();
            let code = on_coordinator(&ctx.shard, &name, move |shard| async move {
                let deleted = shard.groups().with(|c| c.delete_group(&gid));
                match deleted {
                    Err(code) => code,
                    Ok((partition, records)) => {
                        let records = records.into_iter().map(|r| (partition, r)).collect();
                        match append_records(&shard, records).await {
                            Ok(()) => ErrorCode::None,
                            Err(code) => code,
                        }
                    }
                }
            })
            .await
            .unwrap_or_else(|code| code);
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(group_id)
                    .with_error_code(code.code()),
            );
        }
        Some(DeleteGroupsResponse::default().with_results(results))
    }
}
