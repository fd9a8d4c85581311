//! Kafka's ZooKeeper layout: the paths and the JSON of every znode the control plane
//! reads or writes, byte-compatible with what Kafka's ZooKeeper mode writes so that
//! Kafka's tooling reads a Sluice cluster and the other way round.
//!
//! Pure data and functions; used on the control thread only.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::metadata::BrokerEndpoint;

pub const BROKER_IDS: &str = "/brokers/ids";
pub const TOPICS: &str = "/brokers/topics";
pub const CONFIG_TOPICS: &str = "/config/topics";
pub const DELETE_TOPICS: &str = "/admin/delete_topics";
pub const CONTROLLER: &str = "/controller";
pub const CONTROLLER_EPOCH: &str = "/controller_epoch";
pub const CLUSTER_ID: &str = "/cluster/id";
pub const PRODUCER_ID_BLOCK: &str = "/latest_producer_id_block";

/// The persistent znodes every broker creates at start-up if they are missing.
pub const PERSISTENT_PATHS: [&str; 4] = [BROKER_IDS, TOPICS, CONFIG_TOPICS, DELETE_TOPICS];

pub fn broker_path(id: i32) -> String {
    format!("{BROKER_IDS}/{id}")
}

pub fn topic_path(topic: &str) -> String {
    format!("{TOPICS}/{topic}")
}

pub fn partitions_path(topic: &str) -> String {
    format!("{TOPICS}/{topic}/partitions")
}

pub fn partition_path(topic: &str, partition: i32) -> String {
    format!("{TOPICS}/{topic}/partitions/{partition}")
}

pub fn state_path(topic: &str, partition: i32) -> String {
    format!("{TOPICS}/{topic}/partitions/{partition}/state")
}

pub fn config_path(topic: &str) -> String {
    format!("{CONFIG_TOPICS}/{topic}")
}

pub fn delete_path(topic: &str) -> String {
    format!("{DELETE_TOPICS}/{topic}")
}

/// `/brokers/ids/<id>` (ephemeral), Kafka's version 5 registration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrokerZnode {
    #[serde(default)]
    pub listener_security_protocol_map: BTreeMap<String, String>,
    #[serde(default)]
    pub endpoints: Vec<String>,
    #[serde(default = "minus_one")]
    pub jmx_port: i32,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default = "minus_one")]
    pub port: i32,
    #[serde(default)]
    pub timestamp: String,
    pub version: i32,
    #[serde(default)]
    pub rack: Option<String>,
}

fn minus_one() -> i32 {
    -1
}

impl BrokerZnode {
    pub fn new(endpoint: &BrokerEndpoint, now_ms: u64) -> BrokerZnode {
        let host = if endpoint.host.contains(':') {
            format!("[{}]", endpoint.host)
        } else {
            endpoint.host.clone()
        };
        BrokerZnode {
            listener_security_protocol_map: [("PLAINTEXT".to_string(), "PLAINTEXT".to_string())]
                .into(),
            endpoints: vec![format!("PLAINTEXT://{host}:{}", endpoint.port)],
            jmx_port: -1,
            host: Some(endpoint.host.clone()),
            port: i32::from(endpoint.port),
            timestamp: now_ms.to_string(),
            version: 5,
            rack: endpoint.rack.clone(),
        }
    }

    /// The endpoint clients reach broker `id` at: the PLAINTEXT endpoint (or the first
    /// one), else the legacy `host`/`port` fields.
    pub fn endpoint(&self, id: i32) -> Option<BrokerEndpoint> {
        let listed = self
            .endpoints
            .iter()
            .find(|e| e.starts_with("PLAINTEXT://"))
            .or_else(|| self.endpoints.first())
            .and_then(|e| parse_endpoint(e));
        let (host, port) = match listed {
            Some(found) => found,
            None => (
                self.host.clone()?,
                u16::try_from(self.port).ok().filter(|&p| p > 0)?,
            ),
        };
        Some(BrokerEndpoint {
            id,
            host,
            port,
            rack: self.rack.clone(),
        })
    }
}

/// `NAME://host:port` (host may be a bracketed IPv6 literal) -> `(host, port)`.
fn parse_endpoint(text: &str) -> Option<(String, u16)> {
    let (_, address) = text.split_once("://")?;
    let (host, port) = match address.strip_prefix('[') {
        Some(rest) => {
            let (host, after) = rest.split_once(']')?;
            (host, after.strip_prefix(':')?)
        }
        None => address.rsplit_once(':')?,
    };
    Some((host.to_string(), port.parse().ok()?))
}

/// `/controller` (ephemeral).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControllerZnode {
    pub version: i32,
    pub brokerid: i32,
    #[serde(default)]
    pub timestamp: String,
}

/// `/brokers/topics/<topic>`: the replica assignment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicZnode {
    pub version: i32,
    /// Partition (as a decimal string) -> replicas, the preferred leader first.
    pub partitions: BTreeMap<String, Vec<i32>>,
    /// Kafka's `Uuid.toString`: unpadded URL-safe base64 of the 16 bytes.
    #[serde(default)]
    pub topic_id: Option<String>,
    #[serde(default)]
    pub adding_replicas: BTreeMap<String, Vec<i32>>,
    #[serde(default)]
    pub removing_replicas: BTreeMap<String, Vec<i32>>,
}

impl TopicZnode {
    pub fn new(id: &[u8; 16], assignment: &[Vec<i32>]) -> TopicZnode {
        TopicZnode {
            version: 3,
            partitions: assignment
                .iter()
                .enumerate()
                .map(|(p, replicas)| (p.to_string(), replicas.clone()))
                .collect(),
            topic_id: Some(crate::store::base64_url(id)),
            adding_replicas: BTreeMap::new(),
            removing_replicas: BTreeMap::new(),
        }
    }

    /// The assignment by partition index, if partitions are exactly `0..n` (n >= 1),
    /// each with at least one replica.
    pub fn assignment(&self) -> Option<Vec<Vec<i32>>> {
        let mut by_index = BTreeMap::new();
        for (key, replicas) in &self.partitions {
            let partition: usize = key.parse().ok()?;
            if replicas.is_empty() {
                return None;
            }
            by_index.insert(partition, replicas.clone());
        }
        let count = by_index.len();
        if count == 0 || by_index.keys().next_back() != Some(&(count - 1)) {
            return None;
        }
        Some(by_index.into_values().collect())
    }

    pub fn id(&self) -> Option<[u8; 16]> {
        self.topic_id.as_deref().and_then(base64_url_decode_16)
    }
}

/// `/brokers/topics/<topic>/partitions/<p>/state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateZnode {
    pub controller_epoch: i32,
    pub leader: i32,
    pub version: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
}

/// `/config/topics/<topic>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigZnode {
    pub version: i32,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

/// `/cluster/id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterIdZnode {
    pub version: String,
    pub id: String,
}

/// `/latest_producer_id_block`: the last block handed out, bounds inclusive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProducerIdBlockZnode {
    pub version: i32,
    pub broker: i32,
    pub block_start: String,
    pub block_end: String,
}

/// Serialises a znode's JSON. Infallible for these types (string keys, no floats).
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("znode types always serialise")
}

/// Decodes unpadded URL-safe base64 of exactly 16 bytes (a Kafka `Uuid`).
pub fn base64_url_decode_16(text: &str) -> Option<[u8; 16]> {
    if text.len() != 22 {
        return None;
    }
    let mut bits: u32 = 0;
    let mut bit_count = 0;
    let mut out = Vec::with_capacity(16);
    for c in text.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(value);
        bit_count += 6;
        if bit_count >= 8 {
            bit_count -= 8;
            out.push((bits >> bit_count) as u8);
            bits &= (1 << bit_count) - 1;
        }
    }
    // 22 characters carry 132 bits: 16 bytes and 4 zero padding bits.
    if bits != 0 {
        return None;
    }
    out.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_registration_is_kafkas_json() {
        let endpoint = BrokerEndpoint {
            id: 2,
            host: "127.0.0.1".into(),
            port: 9093,
            rack: None,
        };
        let json = String::from_utf8(encode(&BrokerZnode::new(&endpoint, 17))).unwrap();
        assert_eq!(
            json,
            r#"{"listener_security_protocol_map":{"PLAINTEXT":"PLAINTEXT"},"endpoints":["PLAINTEXT://127.0.0.1:9093"],"jmx_port":-1,"host":"127.0.0.1","port":9093,"timestamp":"17","version":5,"rack":null}"#
        );
        let parsed: BrokerZnode = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed.endpoint(2), Some(endpoint));

        // Kafka's own registration with a second listener and a rack.
        let kafka = r#"{"features":{},"listener_security_protocol_map":{"SSL":"SSL","PLAINTEXT":"PLAINTEXT"},"endpoints":["SSL://h:9094","PLAINTEXT://[::1]:9092"],"jmx_port":-1,"port":9092,"host":"h","version":5,"timestamp":"1","rack":"r1"}"#;
        let parsed: BrokerZnode = serde_json::from_str(kafka).unwrap();
        let found = parsed.endpoint(7).unwrap();
        assert_eq!((found.host.as_str(), found.port), ("::1", 9092));
        assert_eq!(found.rack.as_deref(), Some("r1"));
        let ipv6 = BrokerEndpoint {
            host: "::1".into(),
            ..found.clone()
        };
        let json: BrokerZnode =
            serde_json::from_slice(&encode(&BrokerZnode::new(&ipv6, 1))).unwrap();
        assert_eq!(json.endpoints, vec!["PLAINTEXT://[::1]:9092"]);
        assert_eq!(json.endpoint(7), Some(ipv6));
    }

    #[test]
    fn topic_assignment_round_trip() {
        let id = [7u8; 16];
        let assignment: Vec<Vec<i32>> = (0..12).map(|p| vec![p % 3, (p + 1) % 3]).collect();
        let znode = TopicZnode::new(&id, &assignment);
        let json = String::from_utf8(encode(&znode)).unwrap();
        assert!(
            json.starts_with(r#"{"version":3,"partitions":{"0":[0,1],"1":[1,2],"10":"#),
            "{json}"
        );
        assert!(
            json.ends_with(r#""adding_replicas":{},"removing_replicas":{}}"#),
            "{json}"
        );
        let parsed: TopicZnode = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed.assignment(), Some(assignment));
        assert_eq!(parsed.id(), Some(id));

        let gap: TopicZnode =
            serde_json::from_str(r#"{"version":2,"partitions":{"0":[1],"2":[1]}}"#).unwrap();
        assert_eq!(gap.assignment(), None);
        assert_eq!(gap.id(), None);
        let empty: TopicZnode =
            serde_json::from_str(r#"{"version":2,"partitions":{"0":[]}}"#).unwrap();
        assert_eq!(empty.assignment(), None);
    }

    #[test]
    fn state_json() {
        let state = StateZnode {
            controller_epoch: 3,
            leader: 1,
            version: 1,
            leader_epoch: 4,
            isr: vec![1, 2],
        };
        assert_eq!(
            String::from_utf8(encode(&state)).unwrap(),
            r#"{"controller_epoch":3,"leader":1,"version":1,"leader_epoch":4,"isr":[1,2]}"#
        );
    }

    #[test]
    fn uuid_base64_round_trip() {
        for _ in 0..100 {
            let id = *uuid::Uuid::new_v4().as_bytes();
            let text = crate::store::base64_url(&id);
            assert_eq!(base64_url_decode_16(&text), Some(id));
        }
        assert_eq!(
            base64_url_decode_16("AAAAAAAAAAAAAAAAAAAAAA"),
            Some([0; 16])
        );
        assert_eq!(
            base64_url_decode_16("AAAAAAAAAAAAAAAAAAAAAB"),
            None,
            "padding bits"
        );
        assert_eq!(base64_url_decode_16("AAAA"), None);
        assert_eq!(base64_url_decode_16("AAAAAAAAAAAAAAAAAAAA+A"), None);
    }
}
