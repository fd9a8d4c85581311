//! OffsetFetch: committed offsets from the coordinator's cache; -1 for partitions
//! with none. A null topic list asks for every partition of the group; v8+ asks for
//! several groups at once. `require_stable` is ignored (no transactions).

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{ApiKey, GroupId, OffsetFetchRequest, OffsetFetchResponse};

use sluice_core::ErrorCode;

use super::{str_bytes, topic_name};
use crate::api::{Handler, RequestContext};
use crate::groups::on_coordinator;

pub struct OffsetFetch;

/// One partition's answer: (partition, offset, leader epoch, metadata, error).
type PartitionOffset = (i32, i64, i32, String, ErrorCode);
type TopicOffsets = Vec<(String, Vec<PartitionOffset>)>;
/// Topics and partitions asked for; `None` asks for all.
type AskedTopics = Vec<(String, Vec<i32>)>;

impl Handler for OffsetFetch {
    type Request = OffsetFetchRequest;
    type Response = OffsetFetchResponse;
    const KEY: ApiKey = ApiKey::OffsetFetch;
    const MIN_VERSION: i16 = 1;
    const MAX_VERSION: i16 = 9;

    async fn handle(
        ctx: &RequestContext,
        request: OffsetFetchRequest,
    ) -> Option<OffsetFetchResponse> {
        let version = ctx.api_version;
        let asks: Vec<(String, Option<AskedTopics>)> = if version >= 8 {
            request
                .groups
                .into_iter()
                .map(|g| {
                    let topics = g.topics.map(|ts| {
                        ts.into_iter()
                            .map(|t| (t.name.0.to_string(), t.partition_indexes))
                            .collect()
                    });
                    (g.group_id.0.to_string(), topics)
                })
                .collect()
        } else {
            let topics = request.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name.0.to_string(), t.partition_indexes))
                    .collect()
            });
            vec![(request.group_id.0.to_string(), topics)]
        };
        let mut answers = Vec::with_capacity(asks.len());
        for (group_id, topics) in asks {
            let answer = fetch_group(ctx, &group_id, topics).await;
            answers.push((group_id, answer));
        }
        let mut response = OffsetFetchResponse::default();
        if version >= 8 {
            response.groups = answers
                .into_iter()
                .map(|(group_id, (code, topics))| {
                    OffsetFetchResponseGroup::default()
                        .with_group_id(GroupId(str_bytes(&group_id)))
                        .with_error_code(code.code())
                        .with_topics(
                            topics
                                .into_iter()
                                .map(|(name, parts)| {
                                    OffsetFetchResponseTopics::default()
                                        .with_name(topic_name(&name))
                                        .with_partitions(
                                            parts
                                                .into_iter()
                                                .map(|(p, offset, epoch, metadata, code)| {
                                                    OffsetFetchResponsePartitions::default()
                                                        .with_partition_index(p)
                                                        .with_committed_offset(offset)
                                                        .with_committed_leader_epoch(epoch)
                                                        .with_metadata(Some(str_bytes(&metadata)))
                                                        .with_error_code(code.code())
                                                })
                                                .collect(),
                                        )
                                })
                                .collect(),
                        )
                })
                .collect();
        } else if let Some((_, (code, topics))) = answers.into_iter().next() {
            if version >= 2 {
                response.error_code = code.code();
            }
            response.topics = topics
                .into_iter()
                .map(|(name, parts)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(topic_name(&name))
                        .with_partitions(
                            parts
                                .into_iter()
                                .map(|(p, offset, epoch, metadata, code)| {
                                    OffsetFetchResponsePartition::default()
                                        .with_partition_index(p)
                                        .with_committed_offset(offset)
                                        .with_committed_leader_epoch(if version >= 5 {
                                            epoch
                                        } else {
                                            -1
                                        })
                                        .with_metadata(Some(str_bytes(&metadata)))
                                        .with_error_code(code.code())
                                })
                                .collect(),
                        )
                })
                .collect();
        }
        Some(response)
    }
}

/// One group's offsets (a group-level error, and per-partition answers).
async fn fetch_group(
    ctx: &RequestContext,
    group_id: &str,
    topics: Option<AskedTopics>,
) -> (ErrorCode, TopicOffsets) {
    let gid = group_id.to_string();
    let asked = topics.clone();
    let outcome = on_coordinator(&ctx.shard, group_id, move |shard| async move {
        shard.groups().with(|c| match topics {
            None => {
                let mut out: TopicOffsets = Vec::new();
                for (topic, partition, v) in c.all_committed(&gid) {
                    let entry = (
                        partition,
                        v.offset,
                        v.leader_epoch,
                        v.metadata,
                        ErrorCode::None,
                    );
                    match out.last_mut() {
                        Some((t, parts)) if *t == topic => parts.push(entry),
                        _ => out.push((topic, vec![entry])),
                    }
                }
                out
            }
            Some(topics) => topics
                .into_iter()
                .map(|(topic, partitions)| {
                    let parts = partitions
                        .into_iter()
                        .map(|p| match c.committed(&gid, &topic, p) {
                            Some(v) => (
                                p,
                                v.offset,
                                v.leader_epoch,
                                v.metadata.clone(),
                                ErrorCode::None,
                            ),
                            None => (p, -1, -1, String::new(), ErrorCode::None),
                        })
                        .collect();
                    (topic, parts)
                })
                .collect(),
        })
    })
    .await;
    match outcome {
        Ok(topics) => (ErrorCode::None, topics),
        Err(code) => {
            let topics = asked
                .unwrap_or_default()
                .into_iter()
                .map(|(topic, partitions)| {
                    let parts = partitions
                        .into_iter()
                        .map(|p| (p, -1, -1, String::new(), code))
                        .collect();
                    (topic, parts)
                })
                .collect();
            (code, topics)
        }
    }
}
