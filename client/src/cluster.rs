//! `Client`: a bootstrap connection, the cluster's metadata, and one connection per
//! broker opened on demand, so requests can be routed to partition leaders and group
//! coordinators. Used by one thread.

use std::collections::BTreeMap;

use kafka_protocol::messages::{metadata_request::MetadataRequestTopic, MetadataRequest};
use kafka_protocol::protocol::StrBytes;

use crate::conn::{ClientConfig, Connection};
use crate::error::{ClientError, KafkaError, Result};

/// A broker as Metadata lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

impl BrokerInfo {
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// One partition of a topic as Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMetadata {
    pub partition: i32,
    /// -1 when the partition has no leader.
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub error_code: i16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    pub name: String,
    pub id: uuid::Uuid,
    pub internal: bool,
    /// 0, or why the topic could not be described (3: it does not exist).
    pub error_code: i16,
    /// Sorted by partition id.
    pub partitions: Vec<PartitionMetadata>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterMetadata {
    pub cluster_id: Option<String>,
    pub controller_id: i32,
    pub brokers: BTreeMap<i32, BrokerInfo>,
    pub topics: BTreeMap<String, TopicMetadata>,
}

/// A topic id as Kafka's tools print it: URL-safe base64 without padding.
pub fn topic_id_string(id: &uuid::Uuid) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = id.as_bytes();
    let mut out = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A client of one cluster. Connections are opened lazily and kept.
pub struct Client {
    pub(crate) config: ClientConfig,
    bootstrap: Connection,
    brokers: BTreeMap<i32, BrokerInfo>,
    connections: BTreeMap<i32, Connection>,
    pub(crate) metadata: ClusterMetadata,
}

impl Client {
    /// Connects to the first reachable server of a comma-separated bootstrap list and
    /// loads the broker list.
    pub fn connect(bootstrap_servers: &str, config: ClientConfig) -> Result<Client> {
        let mut last_error = None;
        for server in bootstrap_servers
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            match Connection::connect(server, &config) {
                Ok(bootstrap) => {
                    let mut client = Client {
                        config,
                        bootstrap,
                        brokers: BTreeMap::new(),
                        connections: BTreeMap::new(),
                        metadata: ClusterMetadata::default(),
                    };
                    client.metadata(Some(&[]), false)?;
                    return Ok(client);
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error
            .unwrap_or_else(|| ClientError::Invalid("no bootstrap server given".to_owned())))
    }

    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The bootstrap connection, for requests any broker can answer.
    pub fn any_broker(&mut self) -> &mut Connection {
        &mut self.bootstrap
    }

    /// The connection to broker `id`, opened on first use.
    pub fn broker(&mut self, id: i32) -> Result<&mut Connection> {
        if !self.connections.contains_key(&id) {
            let info = self.brokers.get(&id).ok_or_else(|| {
                ClientError::Invalid(format!("broker {id} is not in the cluster metadata"))
            })?;
            let conn = Connection::connect(&info.address(), &self.config)?;
            self.connections.insert(id, conn);
        }
        Ok(self.connections.get_mut(&id).expect("inserted above"))
    }

    /// Drops the connection to broker `id` (after an I/O error), to be reopened.
    pub fn forget(&mut self, id: i32) {
        self.connections.remove(&id);
    }

    /// The controller's connection, or the bootstrap one when the controller is unknown
    /// (KRaft brokers forward admin requests to the controller themselves).
    pub fn controller(&mut self) -> Result<&mut Connection> {
        let id = self.metadata.controller_id;
        if id >= 0 && self.brokers.contains_key(&id) {
            self.broker(id)
        } else {
            Ok(&mut self.bootstrap)
        }
    }

    pub fn address_of(&self, id: i32) -> Option<String> {
        self.brokers.get(&id).map(BrokerInfo::address)
    }

    /// The metadata from the last Metadata request.
    pub fn cached_metadata(&self) -> &ClusterMetadata {
        &self.metadata
    }

    /// Asks for metadata: `None` for every topic, `Some(&[])` for brokers only.
    /// Topics that do not exist are returned with error code 3 unless `auto_create` lets
    /// the broker create them.
    pub fn metadata(
        &mut self,
        topics: Option<&[&str]>,
        auto_create: bool,
    ) -> Result<ClusterMetadata> {
        let request = MetadataRequest::default()
            .with_allow_auto_topic_creation(auto_create)
            .with_topics(topics.map(|names| {
                names
                    .iter()
                    .map(|n| {
                        MetadataRequestTopic::default()
                            .with_name(Some(StrBytes::from_string((*n).to_owned()).into()))
                    })
                    .collect()
            }));
        let (_, response) = self.bootstrap.send(&request)?;
        let mut metadata = ClusterMetadata {
            cluster_id: response.cluster_id.map(|s| s.to_string()),
            controller_id: response.controller_id.0,
            brokers: BTreeMap::new(),
            topics: BTreeMap::new(),
        };
        for b in &response.brokers {
            metadata.brokers.insert(
                b.node_id.0,
                BrokerInfo {
                    id: b.node_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.as_ref().map(|r| r.to_string()),
                },
            );
        }
        for t in response.topics {
            let Some(name) = t.name else { continue };
            let mut partitions: Vec<PartitionMetadata> = t
                .partitions
                .iter()
                .map(|p| PartitionMetadata {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                    error_code: p.error_code,
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            metadata.topics.insert(
                name.to_string(),
                TopicMetadata {
                    name: name.to_string(),
                    id: t.topic_id,
                    internal: t.is_internal,
                    error_code: t.error_code,
                    partitions,
                },
            );
        }
        // Broker connections whose address changed are stale.
        let old_brokers = std::mem::replace(&mut self.brokers, metadata.brokers.clone());
        self.connections
            .retain(|id, _| old_brokers.get(id) == metadata.brokers.get(id));
        self.metadata = metadata.clone();
        Ok(metadata)
    }

    /// Metadata of one existing topic; `UNKNOWN_TOPIC_OR_PARTITION` when it is missing.
    pub fn topic(&mut self, name: &str, auto_create: bool) -> Result<TopicMetadata> {
        let metadata = self.metadata(Some(&[name]), auto_create)?;
        let topic = metadata.topics.get(name).cloned().ok_or_else(|| {
            ClientError::kafka(
                format!("topic {name}"),
                KafkaError::new(crate::error::code::UNKNOWN_TOPIC_OR_PARTITION, None),
            )
        })?;
        KafkaError::check(topic.error_code, None)
            .map_err(|e| ClientError::kafka(format!("topic {name}"), e))?;
        Ok(topic)
    }

    /// The leader of `topic`-`partition` from cached metadata.
    pub fn leader_of(&self, topic: &str, partition: i32) -> Option<i32> {
        self.metadata
            .topics
            .get(topic)?
            .partitions
            .iter()
            .find(|p| p.partition == partition)
            .map(|p| p.leader)
            .filter(|l| *l >= 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_ids_print_like_kafka() {
        // base64.urlsafe_b64encode(bytes.fromhex('3c99...f6b2')) without the '=' padding.
        let id = uuid::Uuid::from_u64_pair(0x3c99_9987_1c5b_47cf, 0xb4d3_0320_c0c1_f6b2);
        assert_eq!(topic_id_string(&id), "PJmZhxxbR8-00wMgwMH2sg");
        assert_eq!(
            topic_id_string(&uuid::Uuid::nil()),
            "AAAAAAAAAAAAAAAAAAAAAA"
        );
        assert_eq!(topic_id_string(&id).len(), 22);
    }
}
