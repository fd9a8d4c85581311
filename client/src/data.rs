//! The data plane: produce to a partition's leader, list offsets, fetch. Requests for
//! several partitions are split by leader; a retriable error refreshes the metadata and
//! retries once.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use kafka_protocol::messages::{
    fetch_request::{FetchPartition, FetchTopic},
    list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
    produce_request::{PartitionProduceData, TopicProduceData},
    BrokerId, FetchRequest, ListOffsetsRequest, ProduceRequest,
};

use crate::admin::topic_name;
use crate::cluster::Client;
use crate::error::{code, ClientError, KafkaError, Result};
use crate::records::{decode_records, encode_batch, ConsumerRecord, ProducerRecord};

/// ListOffsets timestamps with special meaning.
pub const LATEST_TIMESTAMP: i64 = -1;
pub const EARLIEST_TIMESTAMP: i64 = -2;
/// Most bytes one Fetch asks for, per partition and in total.
const FETCH_PARTITION_MAX_BYTES: i32 = 1024 * 1024;
const FETCH_MAX_BYTES: i32 = 50 * 1024 * 1024;

/// Produce acknowledgement modes (`acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// Fire and forget: the broker does not answer.
    None,
    Leader,
    All,
}

impl Acks {
    pub fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

impl FromStr for Acks {
    type Err = ClientError;
    fn from_str(s: &str) -> Result<Acks> {
        match s.trim() {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "all" | "-1" => Ok(Acks::All),
            other => Err(ClientError::Invalid(format!(
                "invalid acks value {other:?} (expected all, -1, 0 or 1)"
            ))),
        }
    }
}

/// What one partition returned from a Fetch.
#[derive(Debug, Clone)]
pub struct PartitionFetch {
    pub partition: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub records: Vec<ConsumerRecord>,
}

impl Client {
    /// Produces `records` to `topic`-`partition`; returns the base offset assigned, or
    /// `None` with `Acks::None`.
    pub fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        records: &[ProducerRecord],
        acks: Acks,
        timeout_ms: i32,
    ) -> Result<Option<i64>> {
        let batch = encode_batch(records)?;
        let request = ProduceRequest::default()
            .with_acks(acks.wire())
            .with_timeout_ms(timeout_ms)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(partition)
                    .with_records(Some(batch))])]);
        let context = || format!("producing to {topic}-{partition}");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let leader = self.leader_or_refresh(topic, partition)?;
            let conn = self.broker(leader)?;
            if acks == Acks::None {
                conn.send_no_response(&request)?;
                return Ok(None);
            }
            let (_, response) = conn.send(&request)?;
            let p = response
                .responses
                .first()
                .and_then(|t| t.partition_responses.first())
                .ok_or_else(|| crate::admin::missing_result("Produce"))?;
            match KafkaError::check(
                p.error_code,
                p.error_message.as_ref().map(|m| m.to_string()),
            ) {
                Ok(()) => return Ok(Some(p.base_offset)),
                Err(e) if e.is_retriable() && attempt < 2 => {
                    self.metadata(Some(&[topic]), false)?;
                }
                Err(e) => return Err(ClientError::kafka(context(), e)),
            }
        }
    }

    /// The offset at `timestamp` (`LATEST_TIMESTAMP`, `EARLIEST_TIMESTAMP` or a time in
    /// ms) of each partition, asking each partition's leader.
    pub fn list_offsets(
        &mut self,
        topic: &str,
        partitions: &[i32],
        timestamp: i64,
    ) -> Result<BTreeMap<i32, i64>> {
        let mut out = BTreeMap::new();
        for (leader, parts) in self.group_by_leader(topic, partitions)? {
            let request = ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![ListOffsetsTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(
                        parts
                            .iter()
                            .map(|p| {
                                ListOffsetsPartition::default()
                                    .with_partition_index(*p)
                                    .with_current_leader_epoch(-1)
                                    .with_timestamp(timestamp)
                            })
                            .collect(),
                    )]);
            let (_, response) = self.broker(leader)?.send(&request)?;
            for t in &response.topics {
                for p in &t.partitions {
                    KafkaError::check(p.error_code, None).map_err(|e| {
                        ClientError::kafka(
                            format!("listing offsets of {topic}-{}", p.partition_index),
                            e,
                        )
                    })?;
                    out.insert(p.partition_index, p.offset);
                }
            }
        }
        Ok(out)
    }

    /// Fetches from each partition at its position, waiting up to `max_wait` for data.
    /// Per-partition errors are returned in `PartitionFetch::error_code`.
    pub fn fetch(
        &mut self,
        topic: &str,
        positions: &BTreeMap<i32, i64>,
        max_wait: Duration,
    ) -> Result<Vec<PartitionFetch>> {
        let partitions: Vec<i32> = positions.keys().copied().collect();
        let by_leader = self.group_by_leader(topic, &partitions)?;
        // With several leaders, each waits a share so one call stays within max_wait.
        let wait_ms = i32::try_from(max_wait.as_millis() / by_leader.len().max(1) as u128)
            .unwrap_or(i32::MAX);
        let mut out = Vec::with_capacity(partitions.len());
        for (leader, parts) in by_leader {
            let request = FetchRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_max_wait_ms(wait_ms)
                .with_min_bytes(1)
                .with_max_bytes(FETCH_MAX_BYTES)
                .with_isolation_level(0)
                .with_session_id(0)
                .with_session_epoch(-1)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(topic_name(topic))
                    .with_partitions(
                        parts
                            .iter()
                            .map(|p| {
                                FetchPartition::default()
                                    .with_partition(*p)
                                    .with_current_leader_epoch(-1)
                                    .with_fetch_offset(positions[p])
                                    .with_log_start_offset(-1)
                                    .with_partition_max_bytes(FETCH_PARTITION_MAX_BYTES)
                            })
                            .collect(),
                    )]);
            let wait = Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0));
            let (_, response) = self.broker(leader)?.send_waiting(&request, wait)?;
            KafkaError::check(response.error_code, None)
                .map_err(|e| ClientError::kafka(format!("fetching from {topic}"), e))?;
            for t in response.responses {
                for p in t.partitions {
                    let from = positions.get(&p.partition_index).copied().ok_or_else(|| {
                        ClientError::Invalid(format!(
                            "Fetch answered partition {} that was not asked for",
                            p.partition_index
                        ))
                    })?;
                    let records = match (p.error_code, p.records) {
                        (code::NONE, Some(data)) => decode_records(p.partition_index, data, from)?,
                        _ => Vec::new(),
                    };
                    out.push(PartitionFetch {
                        partition: p.partition_index,
                        error_code: p.error_code,
                        high_watermark: p.high_watermark,
                        records,
                    });
                }
            }
        }
        if out.iter().any(|p| {
            p.error_code == code::NOT_LEADER_OR_FOLLOWER
                || p.error_code == code::LEADER_NOT_AVAILABLE
        }) {
            self.metadata(Some(&[topic]), false)?;
        }
        Ok(out)
    }

    fn leader_or_refresh(&mut self, topic: &str, partition: i32) -> Result<i32> {
        if let Some(leader) = self.leader_of(topic, partition) {
            return Ok(leader);
        }
        let t = self.topic(topic, false)?;
        if !t.partitions.iter().any(|p| p.partition == partition) {
            return Err(ClientError::kafka(
                format!("{topic}-{partition}"),
                KafkaError::new(
                    code::UNKNOWN_TOPIC_OR_PARTITION,
                    Some(format!(
                        "Topic {topic} has {} partitions; partition {partition} does not exist",
                        t.partitions.len()
                    )),
                ),
            ));
        }
        self.leader_of(topic, partition).ok_or_else(|| {
            ClientError::kafka(
                format!("{topic}-{partition}"),
                KafkaError::new(code::LEADER_NOT_AVAILABLE, None),
            )
        })
    }

    fn group_by_leader(
        &mut self,
        topic: &str,
        partitions: &[i32],
    ) -> Result<BTreeMap<i32, Vec<i32>>> {
        let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for &p in partitions {
            let leader = self.leader_or_refresh(topic, p)?;
            by_leader.entry(leader).or_default().push(p);
        }
        Ok(by_leader)
    }
}
