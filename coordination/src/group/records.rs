//! The records of `__consumer_offsets`, in the layouts Kafka's `GroupMetadataManager`
//! writes (big-endian; strings with an i16 length, -1 for null; bytes with an i32
//! length), and their framing into v2 record batches.
//!
//! Keys: an offset commit key (version 0 or 1: group, topic, partition) or a group
//! metadata key (version 2: group). Values: offset commit value versions 0-3 are read,
//! version 3 is written (offset, leader epoch, metadata, commit timestamp); group
//! metadata value versions 0-3 are read, version 3 is written. A null value is a
//! tombstone: the offset or the group was deleted.
//!
//! Pure code, used on the coordinator's shard when it writes and when it loads.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::error::CoordinationError;

/// Key version of offset commits written by Kafka 0.10+ (version 0 has the same layout).
pub const OFFSET_COMMIT_KEY_VERSION: i16 = 1;
/// Key version of group metadata.
pub const GROUP_METADATA_KEY_VERSION: i16 = 2;
/// Offset commit value version written (with the committed leader epoch).
pub const OFFSET_COMMIT_VALUE_VERSION: i16 = 3;
/// Group metadata value version written (with static members' instance ids).
pub const GROUP_METADATA_VALUE_VERSION: i16 = 3;

/// The key of a `__consumer_offsets` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
}

/// A committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    /// -1 when the client did not send one.
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

/// One member as stored in the group metadata value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The member's metadata for the selected protocol.
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// A group's membership as stored after each completed rebalance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation_id: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub current_state_timestamp_ms: i64,
    pub members: Vec<MemberValue>,
}

/// A decoded record: its key and its value, `None` for a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRecord {
    Offset {
        group: String,
        topic: String,
        partition: i32,
        value: Option<OffsetValue>,
    },
    Group {
        group: String,
        value: Option<GroupValue>,
    },
}

fn corrupt(reason: impl Into<String>) -> CoordinationError {
    CoordinationError::CorruptGroupRecord(reason.into())
}

fn put_string(buf: &mut BytesMut, s: &str) {
    assert!(
        s.len() <= i16::MAX as usize,
        "string too long for the record layout"
    );
    buf.put_i16(s.len() as i16);
    buf.put_slice(s.as_bytes());
}

fn put_nullable_string(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_string(buf, s),
        None => buf.put_i16(-1),
    }
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_i32(b.len() as i32);
    buf.put_slice(b);
}

/// A bounds-checked big-endian reader over one key or value.
struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CoordinationError> {
        if self.buf.len() < n {
            return Err(corrupt(format!("{} is truncated", self.what)));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn i16(&mut self) -> Result<i16, CoordinationError> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Result<i32, CoordinationError> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i64(&mut self) -> Result<i64, CoordinationError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(i64::from_be_bytes(a))
    }

    fn nullable_string(&mut self) -> Result<Option<String>, CoordinationError> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        let bytes = self.take(len as usize)?;
        String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|_| corrupt(format!("{} holds a string that is not UTF-8", self.what)))
    }

    fn string(&mut self) -> Result<String, CoordinationError> {
        self.nullable_string()?
            .ok_or_else(|| corrupt(format!("{} holds a null string", self.what)))
    }

    fn bytes(&mut self) -> Result<Bytes, CoordinationError> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(Bytes::new());
        }
        Ok(Bytes::copy_from_slice(self.take(len as usize)?))
    }
}

impl RecordKey {
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        match self {
            RecordKey::Offset {
                group,
                topic,
                partition,
            } => {
                buf.put_i16(OFFSET_COMMIT_KEY_VERSION);
                put_string(&mut buf, group);
                put_string(&mut buf, topic);
                buf.put_i32(*partition);
            }
            RecordKey::Group { group } => {
                buf.put_i16(GROUP_METADATA_KEY_VERSION);
                put_string(&mut buf, group);
            }
        }
        buf.freeze()
    }

    pub fn decode(bytes: &[u8]) -> Result<RecordKey, CoordinationError> {
        let mut r = Reader {
            buf: bytes,
            what: "record key",
        };
        match r.i16()? {
            0 | 1 => Ok(RecordKey::Offset {
                group: r.string()?,
                topic: r.string()?,
                partition: r.i32()?,
            }),
            2 => Ok(RecordKey::Group { group: r.string()? }),
            v => Err(corrupt(format!("unknown record key version {v}"))),
        }
    }
}

impl OffsetValue {
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(OFFSET_COMMIT_VALUE_VERSION);
        buf.put_i64(self.offset);
        buf.put_i32(self.leader_epoch);
        put_string(&mut buf, &self.metadata);
        buf.put_i64(self.commit_timestamp_ms);
        buf.freeze()
    }

    pub fn decode(bytes: &[u8]) -> Result<OffsetValue, CoordinationError> {
        let mut r = Reader {
            buf: bytes,
            what: "offset commit value",
        };
        let version = r.i16()?;
        let offset = r.i64()?;
        let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
        let metadata = r.string()?;
        let commit_timestamp_ms = r.i64()?;
        match version {
            // v1 also stored an expire timestamp, which Kafka no longer uses.
            1 => {
                r.i64()?;
            }
            0 | 2 | 3 => {}
            v => return Err(corrupt(format!("unknown offset commit value version {v}"))),
        }
        Ok(OffsetValue {
            offset,
            leader_epoch,
            metadata,
            commit_timestamp_ms,
        })
    }
}

impl GroupValue {
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(GROUP_METADATA_VALUE_VERSION);
        put_string(&mut buf, &self.protocol_type);
        buf.put_i32(self.generation_id);
        put_nullable_string(&mut buf, self.protocol.as_deref());
        put_nullable_string(&mut buf, self.leader.as_deref());
        buf.put_i64(self.current_state_timestamp_ms);
        buf.put_i32(self.members.len() as i32);
        for m in &self.members {
            put_string(&mut buf, &m.member_id);
            put_nullable_string(&mut buf, m.group_instance_id.as_deref());
            put_string(&mut buf, &m.client_id);
            put_string(&mut buf, &m.client_host);
            buf.put_i32(m.rebalance_timeout_ms);
            buf.put_i32(m.session_timeout_ms);
            put_bytes(&mut buf, &m.subscription);
            put_bytes(&mut buf, &m.assignment);
        }
        buf.freeze()
    }

    pub fn decode(bytes: &[u8]) -> Result<GroupValue, CoordinationError> {
        let mut r = Reader {
            buf: bytes,
            what: "group metadata value",
        };
        let version = r.i16()?;
        if !(0..=3).contains(&version) {
            return Err(corrupt(format!(
                "unknown group metadata value version {version}"
            )));
        }
        let protocol_type = r.string()?;
        let generation_id = r.i32()?;
        let protocol = r.nullable_string()?;
        let leader = r.nullable_string()?;
        let current_state_timestamp_ms = if version >= 2 { r.i64()? } else { -1 };
        let count = r.i32()?;
        // Never trust a count read off the disk for an allocation: each member takes at
        // least 22 bytes, so a larger count than that allows is corrupt.
        if count < 0 || count as usize > r.buf.len() / 22 + 1 {
            return Err(corrupt(format!(
                "group metadata value claims {count} members"
            )));
        }
        let mut members = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let member_id = r.string()?;
            let group_instance_id = if version >= 3 {
                r.nullable_string()?
            } else {
                None
            };
            let client_id = r.string()?;
            let client_host = r.string()?;
            let session_first = version == 0;
            let (rebalance_timeout_ms, session_timeout_ms) = if session_first {
                let session = r.i32()?;
                (session, session)
            } else {
                let rebalance = r.i32()?;
                (rebalance, r.i32()?)
            };
            members.push(MemberValue {
                member_id,
                group_instance_id,
                client_id,
                client_host,
                rebalance_timeout_ms,
                session_timeout_ms,
                subscription: r.bytes()?,
                assignment: r.bytes()?,
            });
        }
        Ok(GroupValue {
            protocol_type,
            generation_id,
            protocol,
            leader,
            current_state_timestamp_ms,
            members,
        })
    }
}

impl GroupRecord {
    /// The record's key and value bytes (`None` for a tombstone).
    pub fn to_key_value(&self) -> (Bytes, Option<Bytes>) {
        match self {
            GroupRecord::Offset {
                group,
                topic,
                partition,
                value,
            } => (
                RecordKey::Offset {
                    group: group.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                }
                .encode(),
                value.as_ref().map(OffsetValue::encode),
            ),
            GroupRecord::Group { group, value } => (
                RecordKey::Group {
                    group: group.clone(),
                }
                .encode(),
                value.as_ref().map(GroupValue::encode),
            ),
        }
    }

    pub fn from_key_value(
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<GroupRecord, CoordinationError> {
        Ok(match RecordKey::decode(key)? {
            RecordKey::Offset {
                group,
                topic,
                partition,
            } => GroupRecord::Offset {
                group,
                topic,
                partition,
                value: value.map(OffsetValue::decode).transpose()?,
            },
            RecordKey::Group { group } => GroupRecord::Group {
                group,
                value: value.map(GroupValue::decode).transpose()?,
            },
        })
    }

    /// The group the record belongs to.
    pub fn group(&self) -> &str {
        match self {
            GroupRecord::Offset { group, .. } | GroupRecord::Group { group, .. } => group,
        }
    }
}

/// Frames `records` as one uncompressed v2 record batch (offsets from 0; the log
/// assigns the real ones), stamped `timestamp_ms`.
pub fn encode_batch(
    records: &[GroupRecord],
    timestamp_ms: i64,
) -> Result<Bytes, CoordinationError> {
    assert!(!records.is_empty(), "a batch holds at least one record");
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (key, value) = r.to_key_value();
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: -1,
                timestamp: timestamp_ms,
                key: Some(key),
                value,
                headers: Default::default(),
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| corrupt(format!("cannot frame group records: {e}")))?;
    Ok(buf.freeze())
}

/// Decodes every record of the batches in `bytes` (as read from the log), calling
/// `each` with the record's offset and the decoded record. Records whose key or value
/// cannot be decoded are reported through `each` as errors so the caller can skip them
/// (Kafka does the same for unknown versions); a batch that cannot be parsed stops the
/// walk with an error.
pub fn decode_batches(
    bytes: Bytes,
    mut each: impl FnMut(i64, Result<GroupRecord, CoordinationError>),
) -> Result<(), CoordinationError> {
    let mut buf = bytes;
    while !buf.is_empty() {
        let set = RecordBatchDecoder::decode(&mut buf)
            .map_err(|e| corrupt(format!("cannot decode a batch: {e}")))?;
        for record in set.records {
            if record.control {
                continue;
            }
            let Some(key) = record.key.as_deref() else {
                each(record.offset, Err(corrupt("record without a key")));
                continue;
            };
            each(
                record.offset,
                GroupRecord::from_key_value(key, record.value.as_deref()),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset_record(value: Option<OffsetValue>) -> GroupRecord {
        GroupRecord::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
            value,
        }
    }

    #[test]
    fn offset_key_and_value_are_byte_exact() {
        // Kafka's OffsetCommitKey v1 for ("g", "t", 3) and OffsetCommitValue v3 for
        // offset 42, leader epoch 7, metadata "m", commit timestamp 1000, as
        // GroupMetadataManager.offsetCommitKey/offsetCommitValue write them.
        let (key, value) = offset_record(Some(OffsetValue {
            offset: 42,
            leader_epoch: 7,
            metadata: "m".into(),
            commit_timestamp_ms: 1000,
        }))
        .to_key_value();
        assert_eq!(&key[..], &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 3][..]);
        assert_eq!(
            &value.unwrap()[..],
            &[
                0, 3, // version
                0, 0, 0, 0, 0, 0, 0, 42, // offset
                0, 0, 0, 7, // leader epoch
                0, 1, b'm', // metadata
                0, 0, 0, 0, 0, 0, 3, 232, // commit timestamp
            ][..]
        );
        let (key, _) = GroupRecord::Group {
            group: "g".into(),
            value: None,
        }
        .to_key_value();
        assert_eq!(&key[..], &[0, 2, 0, 1, b'g'][..]);
    }

    #[test]
    fn group_value_is_byte_exact() {
        let value = GroupValue {
            protocol_type: "consumer".into(),
            generation_id: 1,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            current_state_timestamp_ms: 5,
            members: vec![MemberValue {
                member_id: "m1".into(),
                group_instance_id: None,
                client_id: "c".into(),
                client_host: "/h".into(),
                rebalance_timeout_ms: 300,
                session_timeout_ms: 100,
                subscription: Bytes::from_static(b"S"),
                assignment: Bytes::from_static(b"A"),
            }],
        };
        let mut expected: Vec<u8> = vec![0, 3, 0, 8];
        expected.extend_from_slice(b"consumer");
        expected.extend_from_slice(&[0, 0, 0, 1, 0, 5]);
        expected.extend_from_slice(b"range");
        expected.extend_from_slice(&[0, 2, b'm', b'1']);
        expected.extend_from_slice(&5i64.to_be_bytes());
        expected.extend_from_slice(&[0, 0, 0, 1, 0, 2, b'm', b'1', 0xff, 0xff, 0, 1, b'c']);
        expected.extend_from_slice(&[0, 2, b'/', b'h']);
        expected.extend_from_slice(&300i32.to_be_bytes());
        expected.extend_from_slice(&100i32.to_be_bytes());
        expected.extend_from_slice(&[0, 0, 0, 1, b'S', 0, 0, 0, 1, b'A']);
        assert_eq!(&value.encode()[..], &expected[..]);
        assert_eq!(GroupValue::decode(&expected).unwrap(), value);
    }

    #[test]
    fn older_value_versions_decode() {
        // OffsetCommitValue v1: offset, metadata, commit timestamp, expire timestamp.
        let mut v1 = vec![0, 1];
        v1.extend_from_slice(&9i64.to_be_bytes());
        v1.extend_from_slice(&[0, 0]);
        v1.extend_from_slice(&11i64.to_be_bytes());
        v1.extend_from_slice(&12i64.to_be_bytes());
        assert_eq!(
            OffsetValue::decode(&v1).unwrap(),
            OffsetValue {
                offset: 9,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp_ms: 11
            }
        );
        assert!(OffsetValue::decode(&v1[..v1.len() - 1]).is_err());
        assert!(RecordKey::decode(&[0, 9, 0, 0]).is_err());
        assert!(GroupValue::decode(&[0, 3, 0]).is_err());
    }

    #[test]
    fn batches_round_trip_with_tombstones() {
        let records = vec![
            offset_record(Some(OffsetValue {
                offset: 1,
                leader_epoch: -1,
                metadata: "meta".into(),
                commit_timestamp_ms: 7,
            })),
            offset_record(None),
            GroupRecord::Group {
                group: "g".into(),
                value: Some(GroupValue {
                    protocol_type: String::new(),
                    generation_id: 0,
                    protocol: None,
                    leader: None,
                    current_state_timestamp_ms: 1,
                    members: vec![],
                }),
            },
            GroupRecord::Group {
                group: "g".into(),
                value: None,
            },
        ];
        let mut bytes = BytesMut::new();
        bytes.extend_from_slice(&encode_batch(&records[..2], 100).unwrap());
        bytes.extend_from_slice(&encode_batch(&records[2..], 100).unwrap());
        let mut decoded = Vec::new();
        decode_batches(bytes.freeze(), |_, r| decoded.push(r.unwrap())).unwrap();
        assert_eq!(decoded, records);
    }
}
