//! Fetch: read each partition on its owning shard, parking the request until
//! `min_bytes` are available or `max_wait_ms` passes (long polling).
//!
//! Only a partition's leader serves it (others answer NOT_LEADER_OR_FOLLOWER), after
//! checking the request's `current_leader_epoch` (v9+). Consumers (`replica_id` -1) read
//! up to the high watermark. A follower broker (`replica_id` >= 0) reads everything the
//! leader has written; the offset it fetches at is its log end offset, which the leader
//! records ([`crate::replica::follower_fetched`]) to advance the high watermark and to
//! grow the ISR.
//!
//! Limits follow Kafka (KIP-74): `partition_max_bytes` per partition and `max_bytes`
//! per response are soft for the first partition with data, which gets at least one
//! whole batch so a batch larger than the limits can never stall a consumer.
//! Fetch sessions (KIP-227) are declined by answering session id 0, which clients
//! handle by sending full fetch requests.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse};

use sluice_core::ids::{ShardId, TopicPartition};
use sluice_core::limits::MAX_FETCH_WAIT_MS;
use sluice_core::ErrorCode;
use sluice_rt::exec::spawn;
use sluice_rt::sync::bounded;
use sluice_rt::time::timeout;

use super::{gather, has_partition, per_shard};
use crate::api::{Handler, RequestContext};
use crate::replica::{self, check_leader_epoch};
use crate::shard::Shard;

pub struct Fetch;

const READ_COMMITTED: i8 = 1;

impl Handler for Fetch {
    type Request = FetchRequest;
    type Response = FetchResponse;
    const KEY: ApiKey = ApiKey::Fetch;
    const MIN_VERSION: i16 = 4;
    const MAX_VERSION: i16 = 12;

    fn referenced_parts(response: &FetchResponse) -> Vec<Bytes> {
        response
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter())
            .filter_map(|p| p.records.as_ref())
            .filter(|records| crate::encode::worth_referencing(records))
            .cloned()
            .collect()
    }

    async fn handle(ctx: &RequestContext, request: FetchRequest) -> Option<FetchResponse> {
        let shard = &ctx.shard;
        let max_wait_ms = request.max_wait_ms.clamp(0, MAX_FETCH_WAIT_MS);
        let deadline = Instant::now() + Duration::from_millis(max_wait_ms as u64);
        let min_bytes = request.min_bytes.max(0) as usize;
        let max_bytes = if request.max_bytes <= 0 {
            i32::MAX as usize
        } else {
            request.max_bytes as usize
        };
        let read_committed = request.isolation_level == READ_COMMITTED;
        // A broker's follower fetcher names itself; consumers send -1.
        let follower = (request.replica_id.0 >= 0).then_some(request.replica_id.0);

        // One slot per requested partition, in request order; known partitions are
        // grouped by owning shard.
        let mut responses: Vec<FetchableTopicResponse> = Vec::with_capacity(request.topics.len());
        let mut by_shard: Vec<Vec<FetchPart>> = per_shard(shard);
        for topic in request.topics {
            // One shared name per topic; each partition part clones the `Arc`.
            let name: Arc<str> = topic.topic.0.as_str().into();
            let metadata = shard.topic(&name);
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for p in topic.partitions {
                let slot = (responses.len(), partitions.len());
                let known = has_partition(metadata.as_deref(), p.partition);
                let mut data = PartitionData::default()
                    .with_partition_index(p.partition)
                    .with_high_watermark(-1)
                    .with_last_stable_offset(-1)
                    .with_log_start_offset(-1)
                    .with_aborted_transactions(read_committed.then(Vec::new))
                    .with_records(Some(Bytes::new()));
                if known {
                    by_shard[shard.owner(&name, p.partition)].push(FetchPart {
                        slot,
                        tp: TopicPartition::new(name.clone(), p.partition),
                        offset: p.fetch_offset,
                        max_bytes: p.partition_max_bytes.max(0) as usize,
                        current_leader_epoch: p.current_leader_epoch,
                    });
                } else {
                    data.error_code = ErrorCode::UnknownTopicOrPartition.code();
                }
                partitions.push(data);
            }
            responses.push(
                FetchableTopicResponse::default()
                    .with_topic(topic.topic)
                    .with_partitions(partitions),
            );
        }
        let groups: Vec<(ShardId, Rc<Vec<FetchPart>>)> = by_shard
            .into_iter()
            .enumerate()
            .filter(|(_, g)| !g.is_empty())
            .map(|(s, g)| (s, Rc::new(g)))
            .collect();

        let read = ReadSpec {
            max_bytes,
            follower,
        };
        // The reads of the shard whose wait ended: it read its parts right away.
        let mut woken: Option<(ShardId, Vec<PartRead>)> = None;
        loop {
            let mut reads: Vec<PartRead> = Vec::new();
            let tasks = groups
                .iter()
                .filter_map(|(owner, parts)| match woken.take() {
                    Some((s, done)) if s == *owner => {
                        reads.extend(done);
                        None
                    }
                    other => {
                        woken = other;
                        Some(spawn(read_on(shard.clone(), *owner, parts.clone(), read)))
                    }
                })
                .collect();
            reads.extend(gather(tasks).await.into_iter().flatten());
            let available: usize = reads.iter().map(|r| r.records.len()).sum();
            let failed = reads.iter().any(|r| !r.error.is_ok());
            if available >= min_bytes
                || failed
                || max_wait_ms == 0
                || Instant::now() >= deadline
                || shard.is_shutting_down()
            {
                fill(&mut responses, reads, max_bytes);
                return Some(FetchResponse::default().with_responses(responses));
            }
            woken = wait_for_data(shard, &groups, deadline, read).await;
        }
    }
}

/// How the owning shards read: the response budget and the fetching follower, if
/// any. (Both isolation levels read up to the high watermark: no transactions are
/// stored.)
#[derive(Clone, Copy)]
struct ReadSpec {
    max_bytes: usize,
    follower: Option<i32>,
}

/// One partition to read, on its way to the owning shard.
#[derive(Clone)]
struct FetchPart {
    slot: (usize, usize),
    tp: TopicPartition,
    offset: i64,
    max_bytes: usize,
    /// -1: not checked.
    current_leader_epoch: i32,
}

/// What the owning shard read for one partition.
struct PartRead {
    slot: (usize, usize),
    error: ErrorCode,
    high_watermark: i64,
    log_start_offset: i64,
    records: Bytes,
}

async fn read_on(
    shard: Rc<Shard>,
    owner: ShardId,
    parts: Rc<Vec<FetchPart>>,
    read: ReadSpec,
) -> Vec<PartRead> {
    let owned: Vec<FetchPart> = parts.as_ref().clone();
    let result = shard
        .run_on(owner, move |s| read_local(s, owned, read))
        .await;
    result.unwrap_or_else(|_| {
        parts
            .iter()
            .map(|p| PartRead {
                slot: p.slot,
                error: ErrorCode::NotLeaderOrFollower,
                high_watermark: -1,
                log_start_offset: -1,
                records: Bytes::new(),
            })
            .collect()
    })
}

/// Reads this shard's parts in request order within one response budget; for a
/// follower's fetch, records its progress on each partition.
async fn read_local(shard: Rc<Shard>, parts: Vec<FetchPart>, read: ReadSpec) -> Vec<PartRead> {
    let ReadSpec {
        max_bytes,
        follower,
    } = read;
    let mut budget = max_bytes;
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        let failed = |error: ErrorCode| PartRead {
            slot: part.slot,
            error,
            high_watermark: -1,
            log_start_offset: -1,
            records: Bytes::new(),
        };
        let Some(replica) = shard.replica(&part.tp) else {
            out.push(failed(ErrorCode::NotLeaderOrFollower));
            continue;
        };
        let Some(leader_epoch) = replica.leader_epoch() else {
            out.push(failed(ErrorCode::NotLeaderOrFollower));
            continue;
        };
        if let Err(error) = check_leader_epoch(part.current_leader_epoch, leader_epoch) {
            out.push(failed(error));
            continue;
        }
        let log = &replica.log;
        let limit = part.max_bytes.min(budget);
        let min_one = budget == max_bytes;
        let (error, records, high_watermark) = match follower {
            None => {
                // No transactions are stored, so the last stable offset is the high
                // watermark and both isolation levels read up to it.
                let high_watermark = log.high_watermark();
                match log.read(part.offset, limit, high_watermark, min_one).await {
                    Ok(records) => (ErrorCode::None, records, high_watermark),
                    Err(e) => (e.error_code(), Bytes::new(), high_watermark),
                }
            }
            Some(follower) => {
                let leader_end_offset = log.written_offset();
                match log.read(part.offset, limit, i64::MAX, min_one).await {
                    Ok(records) => {
                        if replica::follower_fetched(
                            &shard,
                            &replica,
                            follower,
                            part.offset,
                            leader_end_offset,
                        ) {
                            (ErrorCode::None, records, log.high_watermark())
                        } else {
                            tracing::warn!(partition = %part.tp, follower, "fetch from a broker that is not a replica");
                            (ErrorCode::NotLeaderOrFollower, Bytes::new(), -1)
                        }
                    }
                    Err(e) => (e.error_code(), Bytes::new(), log.high_watermark()),
                }
            }
        };
        budget = budget.saturating_sub(records.len());
        out.push(PartRead {
            slot: part.slot,
            error,
            high_watermark,
            log_start_offset: log.log_start_offset(),
            records,
        });
    }
    out
}

/// Puts the reads into the response, enforcing `max_bytes` across shards: a partition
/// whose data would overflow the response (after the first with data) is answered
/// empty and read again by the client's next fetch.
fn fill(responses: &mut [FetchableTopicResponse], reads: Vec<PartRead>, max_bytes: usize) {
    let mut reads = reads;
    reads.sort_by_key(|r| r.slot);
    let mut total = 0usize;
    for read in reads {
        let data = &mut responses[read.slot.0].partitions[read.slot.1];
        data.error_code = read.error.code();
        data.high_watermark = read.high_watermark;
        data.last_stable_offset = read.high_watermark;
        data.log_start_offset = read.log_start_offset;
        if total > 0 && total + read.records.len() > max_bytes {
            continue;
        }
        total += read.records.len();
        data.records = Some(read.records);
    }
}

/// Parks until any requested partition may have new data, or the deadline. The owning
/// shard whose wait ends reads its parts there and then, and they come back with the
/// wake-up: one cross-shard round trip instead of two.
async fn wait_for_data(
    shard: &Rc<Shard>,
    groups: &[(ShardId, Rc<Vec<FetchPart>>)],
    deadline: Instant,
    read: ReadSpec,
) -> Option<(ShardId, Vec<PartRead>)> {
    let (woke_tx, woke_rx) = bounded::<(ShardId, Option<Vec<PartRead>>)>(groups.len());
    let waiters: Vec<_> = groups
        .iter()
        .map(|(owner, parts)| {
            let (shard, woke_tx) = (shard.clone(), woke_tx.clone());
            let parts: Vec<FetchPart> = parts.as_ref().clone();
            let owner = *owner;
            spawn(async move {
                let reads = shard
                    .run_on(owner, move |s| wait_local(s, parts, deadline, read))
                    .await
                    .unwrap_or(None);
                let _ = woke_tx.try_send((owner, reads));
            })
        })
        .collect();
    drop(woke_tx);
    let remaining = deadline.saturating_duration_since(Instant::now());
    let woken = timeout(remaining, woke_rx.recv()).await;
    drop(waiters);
    match woken {
        Some(Ok((owner, Some(reads)))) => Some((owner, reads)),
        _ => None,
    }
}

/// On the owning shard: once a partition has data past the fetch position (below the
/// high watermark for a consumer, written for a follower) or its leadership changed,
/// reads the parts and returns what it read; `None` at the deadline.
async fn wait_local(
    shard: Rc<Shard>,
    parts: Vec<FetchPart>,
    deadline: Instant,
    read: ReadSpec,
) -> Option<Vec<PartRead>> {
    loop {
        let listener = shard.appended().listen();
        let ready = parts.iter().any(|part| {
            shard.replica(&part.tp).is_none_or(|replica| {
                let readable = if read.follower.is_some() {
                    replica.log.written_offset()
                } else {
                    replica.log.high_watermark()
                };
                !replica.is_leader() || readable > part.offset
            })
        });
        if ready {
            return Some(read_local(shard, parts, read).await);
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() || timeout(remaining, listener).await.is_none() {
            return None;
        }
    }
}
