//! The cluster as this broker last read it from ZooKeeper: live brokers, the
//! controller, topics with their assignment, configs and partition states, and the
//! topics queued for deletion. Read whole (in three multi-reads) after every burst of
//! watch events; lives on the control thread.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use sluice_core::config::{BrokerConfig, LogConfig};
use zookeeper_client::{Client, MultiReadResult};

use super::znodes::{self, BrokerZnode, ConfigZnode, ControllerZnode, StateZnode, TopicZnode};
use crate::metadata::{BrokerEndpoint, PartitionState, TopicMetadata};
use crate::rules;

/// Reads per multi-read request, so a response stays far below ZooKeeper's 1 MiB
/// `jute.maxbuffer` (a state znode is about 100 bytes).
const READS_PER_REQUEST: usize = 512;

#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    /// Live brokers by id.
    pub brokers: BTreeMap<i32, BrokerEndpoint>,
    /// -1 when there is no controller.
    pub controller_id: i32,
    /// Session id owning `/controller` (0 when there is none).
    pub controller_session: i64,
    pub topics: BTreeMap<Arc<str>, Arc<TopicMetadata>>,
    /// Children of `/admin/delete_topics`.
    pub deletions: BTreeSet<String>,
}

impl ClusterView {
    pub fn live(&self) -> BTreeSet<i32> {
        self.brokers.keys().copied().collect()
    }
}

/// `partition_epoch` of a partition that has no state znode yet.
pub const NO_STATE: i32 = -1;

/// The state shown for a partition whose state znode the controller has not created.
pub fn stateless(replicas: Vec<i32>) -> PartitionState {
    PartitionState {
        replicas,
        leader: -1,
        leader_epoch: -1,
        isr: Vec::new(),
        partition_epoch: NO_STATE,
    }
}

async fn multi_read(
    client: &Client,
    reads: &[(bool, String)],
) -> Result<Vec<MultiReadResult>, zookeeper_client::Error> {
    let mut results = Vec::with_capacity(reads.len());
    for chunk in reads.chunks(READS_PER_REQUEST) {
        let mut reader = client.new_multi_reader();
        for (children, path) in chunk {
            if *children {
                reader.add_get_children(path)?;
            } else {
                reader.add_get_data(path)?;
            }
        }
        results.extend(reader.commit().await?);
    }
    assert_eq!(results.len(), reads.len());
    Ok(results)
}

fn children(result: MultiReadResult) -> Vec<String> {
    match result {
        MultiReadResult::Children { children } => children,
        _ => Vec::new(),
    }
}

fn data(result: MultiReadResult) -> Option<(Vec<u8>, zookeeper_client::Stat)> {
    match result {
        MultiReadResult::Data { data, stat } => Some((data, stat)),
        _ => None,
    }
}

/// Reads the whole cluster view. Malformed znodes are skipped with a warning (another
/// tool may have written them); ZooKeeper errors fail the read.
pub async fn read_view(
    client: &Client,
    config: &BrokerConfig,
) -> Result<ClusterView, zookeeper_client::Error> {
    let first = multi_read(
        client,
        &[
            (true, znodes::BROKER_IDS.to_string()),
            (true, znodes::TOPICS.to_string()),
            (false, znodes::CONTROLLER.to_string()),
            (true, znodes::DELETE_TOPICS.to_string()),
        ],
    )
    .await?;
    let mut first = first.into_iter();
    let mut next = || first.next().expect("four results");
    let broker_ids: Vec<i32> = children(next())
        .iter()
        .filter_map(|id| id.parse().ok())
        .collect();
    let topic_names: Vec<String> = children(next())
        .into_iter()
        .filter(|name| rules::validate_topic_name(name).is_ok())
        .collect();
    let (controller_id, controller_session) = match data(next()) {
        Some((bytes, stat)) => match serde_json::from_slice::<ControllerZnode>(&bytes) {
            Ok(controller) => (controller.brokerid, stat.ephemeral_owner),
            Err(error) => {
                tracing::warn!(%error, "unreadable /controller");
                (-1, 0)
            }
        },
        None => (-1, 0),
    };
    let deletions = children(next()).into_iter().collect();

    let mut reads = Vec::with_capacity(broker_ids.len() + 2 * topic_names.len());
    reads.extend(
        broker_ids
            .iter()
            .map(|&id| (false, znodes::broker_path(id))),
    );
    for name in &topic_names {
        reads.push((false, znodes::topic_path(name)));
        reads.push((false, znodes::config_path(name)));
    }
    let mut second = multi_read(client, &reads).await?.into_iter();
    let mut brokers = BTreeMap::new();
    for &id in &broker_ids {
        let Some((bytes, _)) = second.next().and_then(data) else {
            continue;
        };
        match serde_json::from_slice::<BrokerZnode>(&bytes)
            .ok()
            .and_then(|znode| znode.endpoint(id))
        {
            Some(endpoint) => {
                brokers.insert(id, endpoint);
            }
            None => tracing::warn!(broker = id, "unreadable broker registration"),
        }
    }
    // (name, id, assignment, configs) of every readable topic.
    let mut assigned = Vec::with_capacity(topic_names.len());
    for name in topic_names {
        let topic = second.next().and_then(data);
        let config = second.next().and_then(data);
        let Some((bytes, _)) = topic else {
            continue; // deleted between the reads
        };
        let parsed = serde_json::from_slice::<TopicZnode>(&bytes)
            .ok()
            .and_then(|znode| Some((znode.id()?, znode.assignment()?)));
        let Some((id, assignment)) = parsed else {
            tracing::warn!(topic = %name, "unreadable topic assignment or topic id; topic ignored");
            continue;
        };
        let configs = match config {
            Some((bytes, _)) => match serde_json::from_slice::<ConfigZnode>(&bytes) {
                Ok(znode) => znode.config,
                Err(error) => {
                    tracing::warn!(topic = %name, %error, "unreadable topic config; defaults used");
                    BTreeMap::new()
                }
            },
            None => BTreeMap::new(),
        };
        assigned.push((name, id, assignment, configs));
    }

    let reads: Vec<(bool, String)> = assigned
        .iter()
        .flat_map(|(name, _, assignment, _)| {
            (0..assignment.len()).map(move |p| (false, znodes::state_path(name, p as i32)))
        })
        .collect();
    let mut states = multi_read(client, &reads).await?.into_iter();
    let mut topics = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for (name, id, assignment, configs) in assigned {
        let partition_states: Vec<PartitionState> = assignment
            .into_iter()
            .map(|replicas| {
                let read = states.next().and_then(data);
                let parsed = read.and_then(|(bytes, stat)| {
                    serde_json::from_slice::<StateZnode>(&bytes)
                        .ok()
                        .map(|state| (state, stat.version))
                });
                match parsed {
                    Some((state, version)) => PartitionState {
                        replicas,
                        leader: state.leader,
                        leader_epoch: state.leader_epoch,
                        isr: state.isr,
                        partition_epoch: version,
                    },
                    None => stateless(replicas),
                }
            })
            .collect();
        if !ids.insert(id) {
            tracing::warn!(topic = %name, "topic id used by two topics; topic ignored");
            continue;
        }
        let log_config = LogConfig::for_topic(&config.log, &configs).unwrap_or_else(|error| {
            tracing::warn!(topic = %name, %error, "invalid topic config; broker defaults used");
            config.log.clone()
        });
        let metadata = TopicMetadata {
            name: name.as_str().into(),
            id,
            partitions: partition_states.len() as i32,
            replication_factor: partition_states[0].replicas.len() as i16,
            configs,
            log_config,
            internal: rules::is_internal_topic(&name),
            partition_states,
        };
        topics.insert(metadata.name.clone(), Arc::new(metadata));
    }
    Ok(ClusterView {
        brokers,
        controller_id,
        controller_session,
        topics,
        deletions,
    })
}
