//! ListOffsets: earliest (-2), latest (-1: the high watermark) or the first offset at or
//! after a timestamp, answered by the shard that owns each partition, on the partition's
//! leader only (NOT_LEADER_OR_FOLLOWER elsewhere), after checking the request's
//! `current_leader_epoch` (v4+).

use std::rc::Rc;
use std::sync::Arc;

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ApiKey, ListOffsetsRequest, ListOffsetsResponse};

use sluice_core::ids::TopicPartition;
use sluice_core::ErrorCode;

use super::{has_partition, on_owners, per_shard, Part, Slot};
use crate::api::{Handler, RequestContext};
use crate::replica::check_leader_epoch;
use crate::shard::Shard;

pub struct ListOffsets;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
/// KIP-734, from v7.
const MAX_TIMESTAMP: i64 = -3;

impl Handler for ListOffsets {
    type Request = ListOffsetsRequest;
    type Response = ListOffsetsResponse;
    const KEY: ApiKey = ApiKey::ListOffsets;
    const MIN_VERSION: i16 = 1;
    const MAX_VERSION: i16 = 7;

    async fn handle(
        ctx: &RequestContext,
        request: ListOffsetsRequest,
    ) -> Option<ListOffsetsResponse> {
        let shard = &ctx.shard;
        let mut topics = Vec::with_capacity(request.topics.len());
        let mut by_shard: Vec<Vec<Lookup>> = per_shard(shard);
        for topic in request.topics {
            // One shared name per topic; each partition part clones the `Arc`.
            let name: Arc<str> = topic.name.0.as_str().into();
            let metadata = shard.topic(&name);
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for p in topic.partitions {
                let slot = (topics.len(), partitions.len());
                let mut response = ListOffsetsPartitionResponse::default()
                    .with_partition_index(p.partition_index)
                    .with_timestamp(-1)
                    .with_offset(-1)
                    .with_leader_epoch(if ctx.api_version >= 4 { 0 } else { -1 });
                if has_partition(metadata.as_deref(), p.partition_index) {
                    by_shard[shard.owner(&name, p.partition_index)].push(Lookup {
                        slot,
                        tp: TopicPartition::new(name.clone(), p.partition_index),
                        timestamp: p.timestamp,
                        current_leader_epoch: if ctx.api_version >= 4 {
                            p.current_leader_epoch
                        } else {
                            -1
                        },
                    });
                } else {
                    response.error_code = ErrorCode::UnknownTopicOrPartition.code();
                }
                partitions.push(response);
            }
            topics.push(
                ListOffsetsTopicResponse::default()
                    .with_name(topic.name)
                    .with_partitions(partitions),
            );
        }
        let found = on_owners(shard, by_shard, lookup_local, |_| {
            Err(ErrorCode::NotLeaderOrFollower)
        })
        .await;
        for (slot, outcome) in found {
            let response = &mut topics[slot.0].partitions[slot.1];
            match outcome {
                Ok((found, leader_epoch)) => {
                    if ctx.api_version >= 4 {
                        response.leader_epoch = leader_epoch;
                    }
                    if let Some((offset, timestamp)) = found {
                        response.offset = offset;
                        response.timestamp = timestamp;
                    }
                }
                Err(code) => response.error_code = code.code(),
            }
        }
        Some(ListOffsetsResponse::default().with_topics(topics))
    }
}

struct Lookup {
    slot: Slot,
    tp: TopicPartition,
    timestamp: i64,
    /// -1: not checked.
    current_leader_epoch: i32,
}

impl Part for Lookup {
    fn slot(&self) -> Slot {
        self.slot
    }
}

/// The (offset, timestamp) found if any, with the leader's current epoch.
type Found = (Slot, Result<(Option<(i64, i64)>, i32), ErrorCode>);

/// On the owning shard.
async fn lookup_local(shard: Rc<Shard>, lookups: Vec<Lookup>) -> Vec<Found> {
    let mut out = Vec::with_capacity(lookups.len());
    for lookup in lookups {
        let leading = shard.replica(&lookup.tp).and_then(|replica| {
            replica
                .leader_epoch()
                .map(|epoch| (replica.log.clone(), epoch))
        });
        let outcome = match leading {
            None => Err(ErrorCode::NotLeaderOrFollower),
            Some((log, leader_epoch)) => {
                let found = match check_leader_epoch(lookup.current_leader_epoch, leader_epoch) {
                    Err(code) => Err(code),
                    Ok(()) => match lookup.timestamp {
                        EARLIEST => Ok(Some((log.log_start_offset(), -1))),
                        LATEST => Ok(Some((log.high_watermark(), -1))),
                        MAX_TIMESTAMP => log.max_timestamp().await.map_err(|e| e.error_code()),
                        ts if ts < 0 => Err(ErrorCode::InvalidRequest),
                        ts => log
                            .offset_for_timestamp(ts)
                            .await
                            .map_err(|e| e.error_code()),
                    },
                };
                // A timestamp lookup finds only what consumers may read.
                let high_watermark = log.high_watermark();
                found.map(|found| {
                    let visible = found.filter(|&(offset, _)| {
                        offset < high_watermark || matches!(lookup.timestamp, EARLIEST | LATEST)
                    });
                    (visible, leader_epoch)
                })
            }
        };
        out.push((lookup.slot, outcome));
    }
    out
}
