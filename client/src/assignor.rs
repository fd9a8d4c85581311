//! The `range` assignor of the `consumer` protocol, as Kafka's RangeAssignor: for each
//! topic, members subscribed to it (sorted by member id) get consecutive ranges of its
//! partitions, the first `partitions % members` getting one extra. Also the
//! ConsumerProtocol subscription/assignment encodings (a version prefix, then the
//! struct at that version).

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    consumer_protocol_assignment::TopicPartition as AssignedPartitions, ConsumerProtocolAssignment,
    ConsumerProtocolSubscription,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::admin::topic_name;
use crate::error::{ClientError, Result};

/// Name of the assignor, as sent in JoinGroup's protocol list.
pub const RANGE: &str = "range";
/// Highest ConsumerProtocol version this crate writes and reads.
const CONSUMER_PROTOCOL_VERSION: i16 = 3;

/// Partitions per topic.
pub type Assignment = BTreeMap<String, Vec<i32>>;

/// Assigns the partitions of every subscribed topic. `subscriptions` maps member id to
/// its topics; `partition_counts` maps topic to its number of partitions (topics
/// missing from it are not assigned). Every member appears in the result.
pub fn range_assign(
    subscriptions: &BTreeMap<String, Vec<String>>,
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, Assignment> {
    let mut result: BTreeMap<String, Assignment> = subscriptions
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    for (topic, &count) in partition_counts {
        let members: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, topics)| topics.contains(topic))
            .map(|(m, _)| m)
            .collect();
        if members.is_empty() || count <= 0 {
            continue;
        }
        let n = members.len() as i32;
        let (per_member, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, member) in members.into_iter().enumerate() {
            let len = per_member + i32::from((i as i32) < extra);
            if len > 0 {
                let partitions: Vec<i32> = (next..next + len).collect();
                result
                    .get_mut(member)
                    .expect("every member has an entry")
                    .insert(topic.clone(), partitions);
            }
            next += len;
        }
        assert_eq!(next, count, "range assignment covers every partition once");
    }
    result
}

pub fn encode_subscription(topics: &[String]) -> Result<Bytes> {
    let subscription = ConsumerProtocolSubscription::default()
        .with_topics(
            topics
                .iter()
                .map(|t| StrBytes::from_string(t.clone()))
                .collect(),
        )
        .with_generation_id(-1);
    encode_versioned(&subscription)
}

/// The topics of a member's subscription metadata.
pub fn decode_subscription(mut data: Bytes) -> Result<Vec<String>> {
    let version = read_version(&mut data)?;
    let s = ConsumerProtocolSubscription::decode(&mut data, version)
        .map_err(|e| ClientError::Invalid(format!("bad consumer subscription: {e}")))?;
    Ok(s.topics.iter().map(|t| t.to_string()).collect())
}

pub fn encode_assignment(assignment: &Assignment) -> Result<Bytes> {
    let a = ConsumerProtocolAssignment::default().with_assigned_partitions(
        assignment
            .iter()
            .map(|(t, ps)| {
                AssignedPartitions::default()
                    .with_topic(topic_name(t))
                    .with_partitions(ps.clone())
            })
            .collect(),
    );
    encode_versioned(&a)
}

/// A member's assignment from SyncGroup; empty bytes mean no partitions.
pub fn decode_assignment(mut data: Bytes) -> Result<Assignment> {
    if data.is_empty() {
        return Ok(Assignment::new());
    }
    let version = read_version(&mut data)?;
    let a = ConsumerProtocolAssignment::decode(&mut data, version)
        .map_err(|e| ClientError::Invalid(format!("bad consumer assignment: {e}")))?;
    let mut out = Assignment::new();
    for tp in a.assigned_partitions {
        out.entry(tp.topic.to_string())
            .or_default()
            .extend(tp.partitions);
    }
    Ok(out)
}

fn encode_versioned<T: Encodable>(message: &T) -> Result<Bytes> {
    let mut buf = BytesMut::new();
    buf.put_i16(CONSUMER_PROTOCOL_VERSION);
    message
        .encode(&mut buf, CONSUMER_PROTOCOL_VERSION)
        .map_err(|e| ClientError::Invalid(format!("encoding consumer protocol: {e}")))?;
    Ok(buf.freeze())
}

/// Reads the version prefix; newer versions are read as ours (they only add fields at
/// the end, which Kafka's own clients ignore the same way).
fn read_version(data: &mut Bytes) -> Result<i16> {
    if data.len() < 2 {
        return Err(ClientError::Invalid(
            "consumer protocol data too short".into(),
        ));
    }
    let version = data.get_i16();
    if version < 0 {
        return Err(ClientError::Invalid(format!(
            "consumer protocol version {version}"
        )));
    }
    Ok(version.min(CONSUMER_PROTOCOL_VERSION))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(rows: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        rows.iter()
            .map(|(m, ts)| (m.to_string(), ts.iter().map(|t| t.to_string()).collect()))
            .collect()
    }

    fn counts(rows: &[(&str, i32)]) -> BTreeMap<String, i32> {
        rows.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    #[test]
    fn range_splits_like_kafka() {
        // Kafka's RangeAssignor doc example: 2 consumers, 2 topics of 3 partitions.
        let a = range_assign(
            &subs(&[("c0", &["t0", "t1"]), ("c1", &["t0", "t1"])]),
            &counts(&[("t0", 3), ("t1", 3)]),
        );
        assert_eq!(a["c0"]["t0"], [0, 1]);
        assert_eq!(a["c0"]["t1"], [0, 1]);
        assert_eq!(a["c1"]["t0"], [2]);
        assert_eq!(a["c1"]["t1"], [2]);
    }

    #[test]
    fn range_handles_more_members_than_partitions_and_partial_subscriptions() {
        let a = range_assign(
            &subs(&[("a", &["t"]), ("b", &["t", "u"]), ("c", &["t"])]),
            &counts(&[("t", 2), ("u", 4), ("unsubscribed", 5)]),
        );
        assert_eq!(a["a"]["t"], [0]);
        assert_eq!(a["b"]["t"], [1]);
        assert!(!a["c"].contains_key("t"), "third member gets nothing of t");
        assert_eq!(a["b"]["u"], [0, 1, 2, 3]);
        assert!(a.values().all(|m| !m.contains_key("unsubscribed")));
        // Every partition exactly once.
        let mut seen: Vec<(String, i32)> = a
            .values()
            .flat_map(|m| {
                m.iter()
                    .flat_map(|(t, ps)| ps.iter().map(|p| (t.clone(), *p)))
            })
            .collect();
        seen.sort();
        assert_eq!(seen.len(), 6);
        seen.dedup();
        assert_eq!(seen.len(), 6);
    }

    #[test]
    fn consumer_protocol_round_trips() {
        let topics = vec!["orders".to_string(), "payments".to_string()];
        let sub = encode_subscription(&topics).expect("encodes");
        assert_eq!(&sub[..2], &CONSUMER_PROTOCOL_VERSION.to_be_bytes());
        assert_eq!(decode_subscription(sub).expect("decodes"), topics);

        let mut assignment = Assignment::new();
        assignment.insert("orders".into(), vec![0, 2]);
        assignment.insert("payments".into(), vec![1]);
        let bytes = encode_assignment(&assignment).expect("encodes");
        assert_eq!(decode_assignment(bytes).expect("decodes"), assignment);
        assert!(decode_assignment(Bytes::new()).expect("empty").is_empty());
        assert!(decode_assignment(Bytes::from_static(&[0])).is_err());
    }

    #[test]
    fn reads_version_zero_written_by_older_clients() {
        let mut buf = BytesMut::new();
        buf.put_i16(0);
        ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_static_str("t")])
            .encode(&mut buf, 0)
            .expect("v0 encodes");
        assert_eq!(decode_subscription(buf.freeze()).expect("v0"), ["t"]);
    }
}
