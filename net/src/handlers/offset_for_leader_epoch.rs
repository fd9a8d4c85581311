//! OffsetForLeaderEpoch (KIP-101, KIP-279, KIP-320): where a leader epoch ends in the
//! leader's log. A follower asks it after a leader change and truncates the tail it
//! wrote under epochs the leader does not share; a consumer asks it to detect a
//! truncated log. Answered by the shard that owns each partition, by the leader only.
//!
//! Versions 2-4 (what the codec crate has); v3 adds `replica_id`, which changes
//! nothing in the answer: Kafka answers followers and consumers alike.

use std::rc::Rc;
use std::sync::Arc;

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{ApiKey, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use sluice_core::ids::TopicPartition;
use sluice_core::ErrorCode;
use sluice_log::PartitionLog;

use super::{has_partition, on_owners, per_shard, Part, Slot};
use crate::api::{Handler, RequestContext};
use crate::shard::Shard;

pub struct OffsetForLeaderEpoch;

/// Kafka's `UNDEFINED_EPOCH`: no epoch asked, or none known.
pub const UNDEFINED_EPOCH: i32 = -1;
/// Kafka's `UNDEFINED_EPOCH_OFFSET`: the leader knows nothing about the epoch asked.
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;

impl Handler for OffsetForLeaderEpoch {
    type Request = OffsetForLeaderEpochRequest;
    type Response = OffsetForLeaderEpochResponse;
    const KEY: ApiKey = ApiKey::OffsetForLeaderEpoch;
    const MIN_VERSION: i16 = 2;
    const MAX_VERSION: i16 = 4;

    async fn handle(
        ctx: &RequestContext,
        request: OffsetForLeaderEpochRequest,
    ) -> Option<OffsetForLeaderEpochResponse> {
        let shard = &ctx.shard;
        let mut topics = Vec::with_capacity(request.topics.len());
        let mut by_shard: Vec<Vec<Lookup>> = per_shard(shard);
        for topic in request.topics {
            let name: Arc<str> = topic.topic.0.as_str().into();
            let metadata = shard.topic(&name);
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for p in topic.partitions {
                let slot = (topics.len(), partitions.len());
                let mut answer = EpochEndOffset::default()
                    .with_partition(p.partition)
                    .with_leader_epoch(UNDEFINED_EPOCH)
                    .with_end_offset(UNDEFINED_EPOCH_OFFSET);
                if has_partition(metadata.as_deref(), p.partition) {
                    by_shard[shard.owner(&name, p.partition)].push(Lookup {
                        slot,
                        tp: TopicPartition::new(name.clone(), p.partition),
                        current_leader_epoch: p.current_leader_epoch,
                        leader_epoch: p.leader_epoch,
                    });
                } else {
                    answer.error_code = ErrorCode::UnknownTopicOrPartition.code();
                }
                partitions.push(answer);
            }
            topics.push(
                OffsetForLeaderTopicResult::default()
                    .with_topic(topic.topic)
                    .with_partitions(partitions),
            );
        }
        let local = |s: Rc<Shard>, lookups| async move { lookup_local(&s, lookups) };
        let found = on_owners(shard, by_shard, local, |_| {
            Err(ErrorCode::NotLeaderOrFollower)
        })
        .await;
        for (slot, found) in found {
            let answer = &mut topics[slot.0].partitions[slot.1];
            match found {
                Ok((epoch, end_offset)) => {
                    answer.leader_epoch = epoch;
                    answer.end_offset = end_offset;
                }
                Err(code) => answer.error_code = code.code(),
            }
        }
        Some(OffsetForLeaderEpochResponse::default().with_topics(topics))
    }
}

/// One partition's question, on its way to the owning shard.
struct Lookup {
    slot: Slot,
    tp: TopicPartition,
    current_leader_epoch: i32,
    leader_epoch: i32,
}

impl Part for Lookup {
    fn slot(&self) -> Slot {
        self.slot
    }
}

type Found = (Slot, Result<(i32, i64), ErrorCode>);

/// On the owning shard.
fn lookup_local(shard: &Shard, lookups: Vec<Lookup>) -> Vec<Found> {
    lookups
        .into_iter()
        .map(|lookup| {
            let found = leader_epoch_of(shard, &lookup.tp).and_then(|epoch_now| {
                let log = shard
                    .log(&lookup.tp)
                    .ok_or(ErrorCode::NotLeaderOrFollower)?;
                epoch_end_offset(
                    &log,
                    epoch_now,
                    lookup.current_leader_epoch,
                    lookup.leader_epoch,
                )
            });
            (lookup.slot, found)
        })
        .collect()
}

/// The leader epoch this broker leads `tp` at, or why it does not lead it. The one
/// place this handler decides leadership (from the shard's metadata snapshot).
fn leader_epoch_of(shard: &Shard, tp: &TopicPartition) -> Result<i32, ErrorCode> {
    let snapshot = shard.snapshot();
    match snapshot.partition(&tp.topic, tp.partition) {
        None => Err(ErrorCode::UnknownTopicOrPartition),
        Some(state) if state.is_leader(shard.config.broker_id) => Ok(state.leader_epoch),
        Some(_) => Err(ErrorCode::NotLeaderOrFollower),
    }
}

/// The answer of a leader at `leader_epoch_now` for `requested_epoch`: the largest
/// epoch it knows that is `<= requested_epoch` and the offset where that epoch ends
/// (the start of the next epoch, or the log end for the latest one), as Kafka's
/// `LeaderEpochFileCache.endOffsetFor`:
/// - `current_leader_epoch` older than the leader's: FENCED_LEADER_EPOCH (the asker's
///   metadata is stale); newer: UNKNOWN_LEADER_EPOCH (this broker's is); -1 skips it;
/// - an epoch older than every epoch of the log ends where the log's first epoch
///   starts, answered as `(requested_epoch, that offset)`;
/// - nothing known (no epochs at all, or -1 asked): `(-1, -1)`.
pub(crate) fn epoch_end_offset(
    log: &PartitionLog,
    leader_epoch_now: i32,
    current_leader_epoch: i32,
    requested_epoch: i32,
) -> Result<(i32, i64), ErrorCode> {
    if current_leader_epoch != UNDEFINED_EPOCH {
        if current_leader_epoch < leader_epoch_now {
            return Err(ErrorCode::FencedLeaderEpoch);
        }
        if current_leader_epoch > leader_epoch_now {
            return Err(ErrorCode::UnknownLeaderEpoch);
        }
    }
    if requested_epoch < 0 {
        return Ok((UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET));
    }
    if let Some(found) = log.end_offset_for_epoch(requested_epoch) {
        return Ok(found);
    }
    Ok(match log.leader_epochs().first() {
        Some(&(_, first_start_offset)) => (requested_epoch, first_start_offset),
        None => (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    use kafka_protocol::protocol::{Decodable, Encodable};
    use sluice_core::config::LogConfig;
    use sluice_log::testing::make_batch;

    /// A log holding 3 records of epoch 1 (offsets 0-2), then 2 of epoch 3 (3-4), then
    /// 1 of epoch 4 (5): epochs (1, 0), (3, 3), (4, 5), log end 6.
    async fn log_with_epochs(dir: &std::path::Path) -> Rc<PartitionLog> {
        let log = PartitionLog::open(dir.join("t-0"), LogConfig::default())
            .await
            .unwrap();
        for (count, epoch) in [(3, 1), (2, 3), (1, 4)] {
            log.append(&make_batch(count, 10, None), epoch, 0)
                .await
                .unwrap();
        }
        assert_eq!(log.leader_epochs(), vec![(1, 0), (3, 3), (4, 5)]);
        assert_eq!(log.log_end_offset(), 6);
        log
    }

    #[test]
    fn answers_where_each_epoch_ends_and_fences_stale_askers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        sluice_rt::exec::block_on(async move {
            let log = log_with_epochs(&path).await;
            let ok = |requested| epoch_end_offset(&log, 4, 4, requested);
            // Exact epochs end where the next starts; the latest at the log end.
            assert_eq!(ok(1), Ok((1, 3)));
            assert_eq!(ok(3), Ok((3, 5)));
            assert_eq!(ok(4), Ok((4, 6)));
            // An epoch the leader never wrote: the largest one below it.
            assert_eq!(ok(2), Ok((1, 3)));
            // Older than every epoch: ends where the first epoch starts.
            assert_eq!(ok(0), Ok((0, 0)));
            // Nothing asked.
            assert_eq!(ok(-1), Ok((-1, -1)));
            // The asker's view of the leadership is checked first; -1 skips the check.
            assert_eq!(
                epoch_end_offset(&log, 4, 3, 1),
                Err(ErrorCode::FencedLeaderEpoch)
            );
            assert_eq!(
                epoch_end_offset(&log, 4, 5, 1),
                Err(ErrorCode::UnknownLeaderEpoch)
            );
            assert_eq!(epoch_end_offset(&log, 4, -1, 3), Ok((3, 5)));
            log.close().await.unwrap();
        });
    }

    #[test]
    fn a_log_without_epochs_knows_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        sluice_rt::exec::block_on(async move {
            let log = PartitionLog::open(path.join("t-0"), LogConfig::default())
                .await
                .unwrap();
            assert_eq!(epoch_end_offset(&log, 0, 0, 0), Ok((-1, -1)));
            log.close().await.unwrap();
        });
    }

    #[test]
    fn every_advertised_version_round_trips() {
        for version in OffsetForLeaderEpoch::MIN_VERSION..=OffsetForLeaderEpoch::MAX_VERSION {
            let request = OffsetForLeaderEpochRequest::default()
                .with_replica_id(if version >= 3 { 2.into() } else { (-2).into() })
                .with_topics(vec![OffsetForLeaderTopic::default()
                    .with_topic(super::super::topic_name("t"))
                    .with_partitions(vec![OffsetForLeaderPartition::default()
                        .with_partition(3)
                        .with_current_leader_epoch(7)
                        .with_leader_epoch(5)])]);
            let mut buf = BytesMut::new();
            request.encode(&mut buf, version).unwrap();
            let decoded = OffsetForLeaderEpoch::decode(&mut Bytes::from(buf), version).unwrap();
            assert_eq!(decoded, request, "v{version}");

            let response = OffsetForLeaderEpochResponse::default().with_topics(vec![
                OffsetForLeaderTopicResult::default()
                    .with_topic(super::super::topic_name("t"))
                    .with_partitions(vec![EpochEndOffset::default()
                        .with_partition(3)
                        .with_leader_epoch(5)
                        .with_end_offset(42)]),
            ]);
            let mut buf = crate::encode::FrameBuf::new(64, Vec::new());
            OffsetForLeaderEpoch::encode(&response, &mut buf, version).unwrap();
            let decoded =
                OffsetForLeaderEpochResponse::decode(&mut buf.finish().to_bytes(), version)
                    .unwrap();
            assert_eq!(decoded, response, "v{version}");
        }
    }
}
