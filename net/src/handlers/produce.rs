//! Produce: append each partition's record batch on the shard that owns the partition.
//!
//! The request body stays raw: each partition's records are a slice of the request
//! frame, handed to the owning shard's log, which validates the batch header and CRC
//! and copies it once into its write buffer, stamped with the current leader epoch.
//! Only the partition's leader appends (others answer NOT_LEADER_OR_FOLLOWER, or
//! LEADER_NOT_AVAILABLE while it has none). acks=0 gets no response; acks=1 is answered
//! once the batch is written; acks=all (-1) is refused with NOT_ENOUGH_REPLICAS when the
//! ISR is smaller than `min.insync.replicas`, and otherwise answered once the high
//! watermark covers the batch (every ISR member has it), or REQUEST_TIMED_OUT after the
//! request's `timeout_ms`; NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR shrank below
//! `min.insync.replicas` meanwhile. On a single node the ISR is the leader alone and the
//! high watermark follows the writes, so acks=all answers as acks=1 does.
//!
//! Produce is advertised from v0 because librdkafka turns compression off when the
//! minimum advertised version is above 0 (as Kafka 4.0 does, KAFKA-18659); v0-2 are
//! parsed and answered UNSUPPORTED_VERSION.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::{Decodable, Encodable};

use sluice_core::ids::TopicPartition;
use sluice_core::ErrorCode;
use sluice_log::AppendInfo;
use sluice_rt::exec::spawn;
use sluice_rt::time::now_ms;

use super::{
    gather, message, min_insync_replicas, on_owners, per_shard, topic_or_auto_create, Part, Slot,
};
use crate::api::{Handler, RequestContext};
use crate::encode::FrameBuf;
use crate::replica::{await_high_watermark, Replica, Replication, RoleView};
use crate::shard::Shard;

pub struct Produce;

/// Lowest Produce version this broker serves (record format v2).
const MIN_SERVED_VERSION: i16 = 3;

impl Handler for Produce {
    type Request = ProduceRequest;
    type Response = ProduceResponse;
    const KEY: ApiKey = ApiKey::Produce;
    const MIN_VERSION: i16 = 0;
    const MAX_VERSION: i16 = 9;

    fn decode(body: &mut Bytes, version: i16) -> anyhow::Result<ProduceRequest> {
        if version >= MIN_SERVED_VERSION {
            return ProduceRequest::decode(body, version);
        }
        // v0-2 are v3 without the leading transactional id: prefix a null one.
        let mut v3 = BytesMut::with_capacity(body.len() + 2);
        v3.put_i16(-1);
        v3.put_slice(body);
        ProduceRequest::decode(&mut v3.freeze(), MIN_SERVED_VERSION)
    }

    fn encode(response: &ProduceResponse, buf: &mut FrameBuf, version: i16) -> anyhow::Result<()> {
        if version >= MIN_SERVED_VERSION {
            return response.encode(buf, version);
        }
        encode_legacy(response, buf, version);
        Ok(())
    }

    async fn handle(ctx: &RequestContext, request: ProduceRequest) -> Option<ProduceResponse> {
        let acks = request.acks;
        let timeout_ms = request.timeout_ms.max(0) as u64;
        let refuse_all = if ctx.api_version < MIN_SERVED_VERSION {
            Some(ErrorCode::UnsupportedVersion)
        } else if !matches!(acks, -1..=1) {
            Some(ErrorCode::InvalidRequiredAcks)
        } else if request.transactional_id.is_some() {
            // Transactions are not implemented; refuse rather than store batches whose
            // commit markers would never come.
            Some(ErrorCode::TransactionalIdAuthorizationFailed)
        } else {
            None
        };

        // Plan: one response slot per partition in request order; the parts that can be
        // appended are grouped by owning shard.
        let shard = &ctx.shard;
        let mut responses: Vec<TopicProduceResponse> = Vec::with_capacity(request.topic_data.len());
        let mut by_shard: Vec<Vec<ProducePart>> = per_shard(shard);
        for topic in request.topic_data {
            // One shared name per topic; each partition part clones the `Arc`.
            let name: Arc<str> = topic.name.0.as_str().into();
            let metadata = match refuse_all {
                Some(code) => Err(code),
                None => topic_or_auto_create(shard, &name, true).await,
            };
            let mut partitions = Vec::with_capacity(topic.partition_data.len());
            for data in topic.partition_data {
                let slot = (responses.len(), partitions.len());
                let mut error = match &metadata {
                    Err(code) => Some(*code),
                    Ok(t) if data.index < 0 || data.index >= t.partitions => {
                        Some(ErrorCode::UnknownTopicOrPartition)
                    }
                    Ok(_) => None,
                };
                let min_insync = match &metadata {
                    Ok(t) if acks == -1 => min_insync_replicas(shard, t).max(1) as usize,
                    _ => 1,
                };
                let records = data.records.unwrap_or_default();
                if error.is_none() && records.is_empty() {
                    error = Some(ErrorCode::InvalidRecord);
                }
                partitions.push(partition_response(
                    data.index,
                    error.unwrap_or(ErrorCode::None),
                ));
                if error.is_none() {
                    let owner = shard.owner(&name, data.index);
                    by_shard[owner].push(ProducePart {
                        slot,
                        tp: TopicPartition::new(name.clone(), data.index),
                        records,
                        min_insync,
                    });
                }
            }
            responses.push(
                TopicProduceResponse::default()
                    .with_name(topic.name)
                    .with_partition_responses(partitions),
            );
        }

        let wait_for = Acks::from(acks);
        let local = move |s, parts| append_local(s, parts, wait_for, timeout_ms);
        let outcomes = on_owners(shard, by_shard, local, |gone| {
            Err((ErrorCode::NotLeaderOrFollower, gone.to_string()))
        })
        .await;
        for (slot, outcome) in outcomes {
            let response = &mut responses[slot.0].partition_responses[slot.1];
            match outcome {
                Ok(info) => {
                    response.base_offset = info.base_offset;
                    response.log_append_time_ms = info.log_append_time_ms;
                    response.log_start_offset = info.log_start_offset;
                }
                Err((code, text)) => {
                    response.error_code = code.code();
                    response.error_message = message(code, text);
                }
            }
        }
        (acks != 0).then(|| ProduceResponse::default().with_responses(responses))
    }
}

/// One partition's batch, on its way to the owning shard.
struct ProducePart {
    slot: Slot,
    tp: TopicPartition,
    records: Bytes,
    /// The topic's `min.insync.replicas` for acks=all (1 otherwise).
    min_insync: usize,
}

/// What the producer waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Acks {
    /// acks=0 and acks=1: the leader's write.
    Leader,
    /// acks=-1: the high watermark (every ISR member).
    All,
}

impl From<i16> for Acks {
    fn from(acks: i16) -> Acks {
        if acks == -1 {
            Acks::All
        } else {
            Acks::Leader
        }
    }
}

impl Part for ProducePart {
    fn slot(&self) -> Slot {
        self.slot
    }
}

type PartOutcome = (Slot, Result<AppendInfo, (ErrorCode, String)>);

fn partition_response(index: i32, code: ErrorCode) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code.code())
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
}

/// Appends each part to its log on this (the owning) shard, concurrently across
/// partitions, wakes parked fetches (consumers on a single node, followers otherwise),
/// then for acks=all waits for the high watermarks.
async fn append_local(
    shard: Rc<Shard>,
    parts: Vec<ProducePart>,
    acks: Acks,
    timeout_ms: u64,
) -> Vec<PartOutcome> {
    let now = now_ms();
    let tasks = parts
        .into_iter()
        .map(|part| {
            let leading = leader_of(&shard, &part.tp, acks, part.min_insync);
            spawn(async move {
                let outcome = match leading {
                    Err(refused) => Err(refused),
                    Ok((replica, leader_epoch)) => replica
                        .log
                        .append(&part.records, leader_epoch, now)
                        .await
                        .map(|info| (replica, info))
                        .map_err(|e| (e.error_code(), e.to_string())),
                };
                (part.slot, part.min_insync, outcome)
            })
        })
        .collect();
    let appended = gather(tasks).await;
    shard.appended().notify(usize::MAX);
    if acks == Acks::Leader {
        return appended
            .into_iter()
            .map(|(slot, _, outcome)| (slot, outcome.map(|(_, info)| info)))
            .collect();
    }
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    let waits = appended
        .into_iter()
        .map(|(slot, min_insync, outcome)| {
            let shard = shard.clone();
            spawn(async move {
                let outcome = match outcome {
                    Ok((replica, info)) => {
                        match await_high_watermark(&shard, &replica, info.last_offset, deadline)
                            .await
                        {
                            // As in Kafka, the ISR is checked once the batch is covered.
                            Replication::Covered { isr_len } if isr_len < min_insync => Err((
                                ErrorCode::NotEnoughReplicasAfterAppend,
                                format!(
                                    "the ISR of {} shrank to {isr_len}, fewer than min.insync.replicas {min_insync}",
                                    replica.tp
                                ),
                            )),
                            Replication::Covered { .. } => Ok(info),
                            Replication::NotLeader => Err((
                                ErrorCode::NotLeaderOrFollower,
                                format!("this broker stopped leading {}", replica.tp),
                            )),
                            Replication::TimedOut => Err((
                                ErrorCode::RequestTimedOut,
                                format!("the ISR of {} did not replicate the batch in time", replica.tp),
                            )),
                        }
                    }
                    Err(e) => Err(e),
                };
                (slot, outcome)
            })
        })
        .collect();
    gather(waits).await
}

/// The replica of `tp` and its leader epoch if this broker leads it, or the error the
/// producer gets: not the leader, or (acks=all) an ISR smaller than `min_insync`.
fn leader_of(
    shard: &Shard,
    tp: &TopicPartition,
    acks: Acks,
    min_insync: usize,
) -> Result<(Rc<Replica>, i32), (ErrorCode, String)> {
    let Some(replica) = shard.replica(tp) else {
        let leaderless = shard
            .snapshot()
            .partition(&tp.topic, tp.partition)
            .is_some_and(|p| p.leader < 0);
        return Err(if leaderless {
            (ErrorCode::LeaderNotAvailable, format!("{tp} has no leader"))
        } else {
            (
                ErrorCode::NotLeaderOrFollower,
                format!("this broker is not the leader of {tp}"),
            )
        });
    };
    match replica.role() {
        RoleView::Leader { isr_len, .. } if acks == Acks::All && isr_len < min_insync => Err((
            ErrorCode::NotEnoughReplicas,
            format!(
                "the ISR of {tp} has {isr_len} replicas, fewer than min.insync.replicas {min_insync}"
            ),
        )),
        RoleView::Leader { leader_epoch, .. } => Ok((replica, leader_epoch)),
        role => Err((
            role.not_leader_error(),
            format!("this broker is not the leader of {tp}"),
        )),
    }
}

/// Encodes a Produce v0-2 response (the codec crate starts at v3). v0: per partition
/// index, error code, base offset; v1 adds the trailing throttle time; v2 adds the
/// log append time.
fn encode_legacy(response: &ProduceResponse, buf: &mut impl BufMut, version: i16) {
    buf.put_i32(response.responses.len() as i32);
    for topic in &response.responses {
        let name = topic.name.0.as_bytes();
        buf.put_i16(name.len() as i16);
        buf.put_slice(name);
        buf.put_i32(topic.partition_responses.len() as i32);
        for p in &topic.partition_responses {
            buf.put_i32(p.index);
            buf.put_i16(p.error_code);
            buf.put_i64(p.base_offset);
            if version >= 2 {
                buf.put_i64(p.log_append_time_ms);
            }
        }
    }
    if version >= 1 {
        buf.put_i32(response.throttle_time_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};

    #[test]
    fn legacy_request_decodes_and_response_encodes() {
        let request = ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(100)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(super::super::topic_name("t"))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(Bytes::from_static(b"x")))])]);
        let mut v3 = BytesMut::new();
        request.encode(&mut v3, 3).unwrap();
        // Strip the null transactional id to get the v2 wire form.
        let mut v2 = v3.freeze().slice(2..);
        let decoded = Produce::decode(&mut v2, 2).unwrap();
        assert_eq!(decoded.acks, 1);
        assert_eq!(
            decoded.topic_data[0].partition_data[0].records.as_deref(),
            Some(&b"x"[..])
        );

        let response =
            ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
                .with_name(super::super::topic_name("t"))
                .with_partition_responses(vec![partition_response(
                    0,
                    ErrorCode::UnsupportedVersion,
                )])]);
        for (version, size) in [
            (0i16, 4 + 2 + 1 + 4 + 4 + 2 + 8),
            (1, 4 + 2 + 1 + 4 + 4 + 2 + 8 + 4),
            (2, 4 + 2 + 1 + 4 + 4 + 2 + 8 + 8 + 4),
        ] {
            let mut frame = FrameBuf::new(64, Vec::new());
            Produce::encode(&response, &mut frame, version).unwrap();
            let buf = frame.finish().to_bytes();
            assert_eq!(buf.len(), size, "v{version}");
            assert_eq!(
                &buf[15..17],
                &35i16.to_be_bytes(),
                "error code at its place in v{version}"
            );
        }
    }
}
