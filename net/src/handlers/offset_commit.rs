//! OffsetCommit: checked against the group on its coordinator shard, appended to the
//! group's `__consumer_offsets` partition, and answered once the append completed;
//! only then does OffsetFetch see the new offsets.

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{ApiKey, OffsetCommitRequest, OffsetCommitResponse};

use sluice_coordination::group::{GroupRecord, OffsetValue};
use sluice_core::ErrorCode;
use sluice_rt::time::now_ms;

use super::topic_name;
use crate::api::{Handler, RequestContext};
use crate::groups::{append_records, on_coordinator};

pub struct OffsetCommit;

impl Handler for OffsetCommit {
    type Request = OffsetCommitRequest;
    type Response = OffsetCommitResponse;
    const KEY: ApiKey = ApiKey::OffsetCommit;
    const MIN_VERSION: i16 = 2;
    const MAX_VERSION: i16 = 9;

    async fn handle(
        ctx: &RequestContext,
        request: OffsetCommitRequest,
    ) -> Option<OffsetCommitResponse> {
        let version = ctx.api_version;
        let group_id = request.group_id.0.to_string();
        // (topic, partition, offset, leader epoch, metadata) in request order.
        let mut asked: CommitTopics = Vec::new();
        for topic in &request.topics {
            asked.push((
                topic.name.0.to_string(),
                topic
                    .partitions
                    .iter()
                    .map(|p| {
                        (
                            p.partition_index,
                            p.committed_offset,
                            if version >= 6 {
                                p.committed_leader_epoch
                            } else {
                                -1
                            },
                            p.committed_metadata
                                .as_ref()
                                .map(|m| m.to_string())
                                .unwrap_or_default(),
                        )
                    })
                    .collect(),
            ));
        }
        let generation_id = request.generation_id_or_member_epoch;
        let member_id = request.member_id.to_string();
        let instance = request.group_instance_id.map(|s| s.to_string());
        let gid = group_id.clone();
        let request_topics = asked.clone();
        let outcome = on_coordinator(&ctx.shard, &group_id, move |shard| async move {
            commit(
                shard,
                gid,
                generation_id,
                member_id,
                instance,
                request_topics,
            )
            .await
        })
        .await;
        let codes: Vec<Vec<ErrorCode>> = match outcome {
            Ok(Ok(codes)) => codes,
            Ok(Err(code)) | Err(code) => asked
                .iter()
                .map(|(_, parts)| vec![code; parts.len()])
                .collect(),
        };
        let topics = asked
            .into_iter()
            .zip(codes)
            .map(|((name, parts), codes)| {
                OffsetCommitResponseTopic::default()
                    .with_name(topic_name(&name))
                    .with_partitions(
                        parts
                            .into_iter()
                            .zip(codes)
                            .map(|((index, ..), code)| {
                                OffsetCommitResponsePartition::default()
                                    .with_partition_index(index)
                                    .with_error_code(code.code())
                            })
                            .collect(),
                    )
            })
            .collect();
        Some(OffsetCommitResponse::default().with_topics(topics))
    }
}

/// Per topic: (partition, offset, leader epoch, metadata), in request order.
type CommitTopics = Vec<(String, Vec<(i32, i64, i32, String)>)>;

/// On the coordinator shard: validate, append, then update the cache.
async fn commit(
    shard: std::rc::Rc<crate::shard::Shard>,
    group_id: String,
    generation_id: i32,
    member_id: String,
    instance: Option<String>,
    topics: CommitTopics,
) -> Result<Vec<Vec<ErrorCode>>, ErrorCode> {
    let groups = shard.groups().clone();
    let now = groups.clock_ms();
    let partition = groups.with(|c| {
        c.check_commit(
            now,
            &group_id,
            generation_id,
            &member_id,
            instance.as_deref(),
        )
    })?;
    let max_metadata = groups.with(|c| c.config().offset_metadata_max_bytes);
    let commit_ms = now_ms();
    let snapshot = shard.snapshot();
    let mut codes = Vec::with_capacity(topics.len());
    let mut records = Vec::new();
    for (topic, parts) in &topics {
        let known = snapshot.topic(topic).map(|t| t.partitions);
        let mut topic_codes = Vec::with_capacity(parts.len());
        for (index, offset, leader_epoch, metadata) in parts {
            let code = if known.is_none_or(|n| *index < 0 || *index >= n) {
                ErrorCode::UnknownTopicOrPartition
            } else if metadata.len() > max_metadata {
                ErrorCode::OffsetMetadataTooLarge
            } else {
                records.push((
                    partition,
                    GroupRecord::Offset {
                        group: group_id.clone(),
                        topic: topic.clone(),
                        partition: *index,
                        value: Some(OffsetValue {
                            offset: *offset,
                            leader_epoch: *leader_epoch,
                            metadata: metadata.clone(),
                            commit_timestamp_ms: commit_ms,
                        }),
                    },
                ));
                ErrorCode::None
            };
            topic_codes.push(code);
        }
        codes.push(topic_codes);
    }
    let written = records.clone();
    if let Err(code) = append_records(&shard, records).await {
        // Nothing is visible unless it is in the log.
        for topic_codes in &mut codes {
            for c in topic_codes.iter_mut().filter(|c| c.is_ok()) {
                *c = code;
            }
        }
        return Ok(codes);
    }
    groups.with(|c| {
        for (_, record) in written {
            if let GroupRecord::Offset {
                group,
                topic,
                partition,
                value: Some(value),
            } = record
            {
                c.commit_applied(&group, &topic, partition, value);
            }
        }
    });
    Ok(codes)
}
