//! Consumer groups, classic protocol: finding the coordinator, joining as a `consumer`
//! member with the range assignor, heartbeats from a background thread, committing and
//! fetching offsets, leaving; and the admin calls ListGroups, DescribeGroups,
//! DeleteGroups.
//!
//! `GroupMember` is driven by the consumer's thread; its `Heartbeat` thread owns its
//! own connection to the coordinator and only reports (through an atomic flag) that
//! the member must rejoin.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use kafka_protocol::messages::{
    find_coordinator_request::FindCoordinatorRequest,
    join_group_request::JoinGroupRequestProtocol,
    leave_group_request::MemberIdentity,
    offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic},
    offset_fetch_request::OffsetFetchRequestTopic,
    sync_group_request::SyncGroupRequestAssignment,
    DeleteGroupsRequest, DescribeGroupsRequest, GroupId, HeartbeatRequest, JoinGroupRequest,
    LeaveGroupRequest, ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest,
    SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;

use crate::admin::{missing_result, topic_name};
use crate::assignor::{self, Assignment};
use crate::cluster::Client;
use crate::conn::Connection;
use crate::error::{code, ClientError, KafkaError, Result};

/// The protocol type of Kafka consumers.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";
/// Attempts at finding a coordinator or completing a join before giving up.
const MAX_COORDINATOR_ATTEMPTS: u32 = 30;
/// Pause between attempts while a coordinator loads or a group rebalances.
const RETRY_BACKOFF: Duration = Duration::from_millis(200);

/// Timeouts of a group member.
#[derive(Debug, Clone)]
pub struct MemberConfig {
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub heartbeat_interval: Duration,
}

impl Default for MemberConfig {
    fn default() -> Self {
        MemberConfig {
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            heartbeat_interval: Duration::from_secs(1),
        }
    }
}

/// (topic, partition) -> offset.
pub type Offsets = BTreeMap<(String, i32), i64>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedGroup {
    pub group_id: String,
    pub protocol_type: String,
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub client_id: String,
    pub host: String,
    pub assignment: Assignment,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    /// Kafka's state name: Empty, PreparingRebalance, CompletingRebalance, Stable, Dead.
    pub state: String,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

fn group_id(g: &str) -> GroupId {
    StrBytes::from_string(g.to_owned()).into()
}

impl Client {
    /// The broker id coordinating `group`, retrying while coordinators load.
    pub fn find_coordinator(&mut self, group: &str) -> Result<i32> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let conn = self.any_broker();
            let version = conn.version_of::<FindCoordinatorRequest>()?;
            let mut request = FindCoordinatorRequest::default().with_key_type(0);
            if version >= 4 {
                request.coordinator_keys = vec![StrBytes::from_string(group.to_owned())];
            } else {
                request.key = StrBytes::from_string(group.to_owned());
            }
            let response = conn.send_version(version, &request, None)?;
            let (node, error, message) = if version >= 4 {
                let c = response
                    .coordinators
                    .first()
                    .ok_or_else(|| missing_result("FindCoordinator"))?;
                (c.node_id.0, c.error_code, c.error_message.clone())
            } else {
                (
                    response.node_id.0,
                    response.error_code,
                    response.error_message.clone(),
                )
            };
            match KafkaError::check(error, message.map(|m| m.to_string())) {
                Ok(()) => {
                    if self.address_of(node).is_none() {
                        self.metadata(Some(&[]), false)?;
                    }
                    return Ok(node);
                }
                Err(e) if e.is_retriable() && attempt < MAX_COORDINATOR_ATTEMPTS => {
                    std::thread::sleep(RETRY_BACKOFF);
                }
                Err(e) => {
                    return Err(ClientError::kafka(
                        format!("finding the coordinator of group {group}"),
                        e,
                    ))
                }
            }
        }
    }

    /// Groups known to every broker of the cluster.
    pub fn list_groups(&mut self) -> Result<Vec<ListedGroup>> {
        let ids: Vec<i32> = self.cached_metadata().brokers.keys().copied().collect();
        let mut out = Vec::new();
        for id in ids {
            let (_, response) = self.broker(id)?.send(&ListGroupsRequest::default())?;
            KafkaError::check(response.error_code, None)
                .map_err(|e| ClientError::kafka("listing groups", e))?;
            out.extend(response.groups.iter().map(|g| ListedGroup {
                group_id: g.group_id.to_string(),
                protocol_type: g.protocol_type.to_string(),
                state: g.group_state.to_string(),
            }));
        }
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out.dedup_by(|a, b| a.group_id == b.group_id);
        Ok(out)
    }

    pub fn describe_group(&mut self, group: &str) -> Result<GroupDescription> {
        let coordinator = self.find_coordinator(group)?;
        let request = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
        let (_, response) = self.broker(coordinator)?.send(&request)?;
        let g = response
            .groups
            .into_iter()
            .next()
            .ok_or_else(|| missing_result("DescribeGroups"))?;
        KafkaError::check(g.error_code, g.error_message.map(|m| m.to_string()))
            .map_err(|e| ClientError::kafka(format!("describing group {group}"), e))?;
        let protocol_type = g.protocol_type.to_string();
        let members = g
            .members
            .into_iter()
            .map(|m| {
                let assignment = if protocol_type == CONSUMER_PROTOCOL_TYPE {
                    assignor::decode_assignment(m.member_assignment)?
                } else {
                    Assignment::new()
                };
                Ok(MemberDescription {
                    member_id: m.member_id.to_string(),
                    client_id: m.client_id.to_string(),
                    host: m.client_host.to_string(),
                    assignment,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(GroupDescription {
            group_id: g.group_id.to_string(),
            state: g.group_state.to_string(),
            protocol_type,
            protocol: g.protocol_data.to_string(),
            members,
        })
    }

    /// Deletes each group; the per-group outcome is returned in order.
    pub fn delete_groups(
        &mut self,
        groups: &[&str],
    ) -> Result<Vec<(String, Result<(), KafkaError>)>> {
        let mut out = Vec::with_capacity(groups.len());
        for group in groups {
            let coordinator = self.find_coordinator(group)?;
            let request = DeleteGroupsRequest::default().with_groups_names(vec![group_id(group)]);
            let (_, response) = self.broker(coordinator)?.send(&request)?;
            let r = response
                .results
                .first()
                .ok_or_else(|| missing_result("DeleteGroups"))?;
            out.push((group.to_string(), KafkaError::check(r.error_code, None)));
        }
        Ok(out)
    }

    /// Committed offsets of `group`: of the given partitions, or of every partition it
    /// has committed when `partitions` is `None`. Partitions without a commit are left
    /// out.
    pub fn fetch_committed(
        &mut self,
        group: &str,
        partitions: Option<&BTreeMap<String, Vec<i32>>>,
    ) -> Result<Offsets> {
        let coordinator = self.find_coordinator(group)?;
        let request = OffsetFetchRequest::default()
            .with_group_id(group_id(group))
            .with_topics(partitions.map(|ps| {
                ps.iter()
                    .map(|(t, parts)| {
                        OffsetFetchRequestTopic::default()
                            .with_name(topic_name(t))
                            .with_partition_indexes(parts.clone())
                    })
                    .collect()
            }));
        let (_, response) = self.broker(coordinator)?.send(&request)?;
        KafkaError::check(response.error_code, None)
            .map_err(|e| ClientError::kafka(format!("fetching offsets of group {group}"), e))?;
        let mut out = Offsets::new();
        for t in response.topics {
            for p in t.partitions {
                KafkaError::check(p.error_code, None).map_err(|e| {
                    ClientError::kafka(
                        format!(
                            "offset of {}-{} in group {group}",
                            t.name.as_str(),
                            p.partition_index
                        ),
                        e,
                    )
                })?;
                if p.committed_offset >= 0 {
                    out.insert((t.name.to_string(), p.partition_index), p.committed_offset);
                }
            }
        }
        Ok(out)
    }

    /// Commits `offsets` for `group`: as a member (`generation` and `member_id` from its
    /// join) or, with generation -1 and an empty member id, for an empty group.
    pub fn commit_offsets(
        &mut self,
        group: &str,
        generation: i32,
        member_id: &str,
        offsets: &Offsets,
    ) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for ((t, p), offset) in offsets {
            topics.entry(t).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(*p)
                    .with_committed_offset(*offset)
                    .with_committed_leader_epoch(-1),
            );
        }
        let request = OffsetCommitRequest::default()
            .with_group_id(group_id(group))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(StrBytes::from_string(member_id.to_owned()))
            .with_retention_time_ms(-1)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(t, ps)| {
                        OffsetCommitRequestTopic::default()
                            .with_name(topic_name(t))
                            .with_partitions(ps)
                    })
                    .collect(),
            );
        let coordinator = self.find_coordinator(group)?;
        let (_, response) = self.broker(coordinator)?.send(&request)?;
        for t in &response.topics {
            for p in &t.partitions {
                KafkaError::check(p.error_code, None).map_err(|e| {
                    ClientError::kafka(
                        format!(
                            "committing {}-{} for group {group}",
                            t.name.as_str(),
                            p.partition_index
                        ),
                        e,
                    )
                })?;
            }
        }
        Ok(())
    }
}

/// Heartbeats for one generation, on its own thread with its own connection. Stopped
/// (and joined) when dropped.
struct Heartbeat {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Heartbeat {
    fn start(
        mut conn: Connection,
        group: String,
        generation: i32,
        member_id: String,
        interval: Duration,
        rejoin: Arc<AtomicBool>,
        failure: Arc<Mutex<Option<String>>>,
    ) -> Result<Heartbeat> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("heartbeat-{group}"))
            .spawn(move || loop {
                match stopped.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
                let request = HeartbeatRequest::default()
                    .with_group_id(group_id(&group))
                    .with_generation_id(generation)
                    .with_member_id(StrBytes::from_string(member_id.clone()));
                match conn.send(&request) {
                    Ok((_, r)) if r.error_code == code::NONE => {}
                    Ok((_, r))
                        if matches!(
                            r.error_code,
                            code::REBALANCE_IN_PROGRESS
                                | code::ILLEGAL_GENERATION
                                | code::UNKNOWN_MEMBER_ID
                                | code::NOT_COORDINATOR
                                | code::COORDINATOR_NOT_AVAILABLE
                        ) =>
                    {
                        rejoin.store(true, Ordering::Release);
                        return;
                    }
                    Ok((_, r)) => {
                        *failure.lock().expect("failure slot") = Some(format!(
                            "heartbeat: {}",
                            KafkaError::new(r.error_code, None)
                        ));
                        rejoin.store(true, Ordering::Release);
                        return;
                    }
                    Err(e) => {
                        *failure.lock().expect("failure slot") = Some(format!("heartbeat: {e}"));
                        rejoin.store(true, Ordering::Release);
                        return;
                    }
                }
            })
            .map_err(|e| ClientError::Invalid(format!("cannot start the heartbeat thread: {e}")))?;
        Ok(Heartbeat {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A member of a consumer group, subscribed to some topics. Lives on the consumer's
/// thread; its heartbeat runs on a thread of its own.
pub struct GroupMember {
    pub group: String,
    pub topics: Vec<String>,
    pub member_id: String,
    pub generation: i32,
    pub coordinator: i32,
    /// Partitions assigned in the current generation.
    pub assignment: Assignment,
    config: MemberConfig,
    rejoin: Arc<AtomicBool>,
    heartbeat_failure: Arc<Mutex<Option<String>>>,
    heartbeat: Option<Heartbeat>,
}

impl GroupMember {
    /// Joins `group` subscribed to `topics` and waits for an assignment.
    pub fn join(
        client: &mut Client,
        group: &str,
        topics: Vec<String>,
        config: MemberConfig,
    ) -> Result<GroupMember> {
        if group.is_empty() {
            return Err(ClientError::Invalid(
                "the group id must not be empty".into(),
            ));
        }
        let mut member = GroupMember {
            group: group.to_owned(),
            topics,
            member_id: String::new(),
            generation: -1,
            coordinator: -1,
            assignment: Assignment::new(),
            config,
            rejoin: Arc::new(AtomicBool::new(false)),
            heartbeat_failure: Arc::new(Mutex::new(None)),
            heartbeat: None,
        };
        member.rejoin(client)?;
        Ok(member)
    }

    /// True once the heartbeat saw a rebalance (or lost the coordinator): commit, then
    /// call `rejoin`.
    pub fn needs_rejoin(&self) -> bool {
        self.rejoin.load(Ordering::Acquire)
    }

    /// Why the last heartbeat failed, if it did for a reason other than a rebalance.
    pub fn heartbeat_failure(&self) -> Option<String> {
        self.heartbeat_failure.lock().expect("failure slot").clone()
    }

    /// (Re)joins the group: JoinGroup, the range assignment when this member leads,
    /// SyncGroup, then a fresh heartbeat thread.
    pub fn rejoin(&mut self, client: &mut Client) -> Result<()> {
        self.heartbeat = None;
        self.rejoin.store(false, Ordering::Release);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.join_once(client) {
                Ok(()) => break,
                Err(e) if attempt < MAX_COORDINATOR_ATTEMPTS && rejoinable(&e) => {
                    if e.kafka_code() == Some(code::UNKNOWN_MEMBER_ID) {
                        self.member_id.clear();
                    }
                    if matches!(
                        e.kafka_code(),
                        Some(code::NOT_COORDINATOR | code::COORDINATOR_NOT_AVAILABLE)
                    ) || e.kafka_code().is_none()
                    {
                        client.forget(self.coordinator);
                        self.coordinator = -1;
                        std::thread::sleep(RETRY_BACKOFF);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        let address = client.address_of(self.coordinator).ok_or_else(|| {
            ClientError::Invalid(format!("coordinator {} has no address", self.coordinator))
        })?;
        let conn = Connection::connect(&address, client.config())?;
        self.heartbeat = Some(Heartbeat::start(
            conn,
            self.group.clone(),
            self.generation,
            self.member_id.clone(),
            self.config.heartbeat_interval,
            self.rejoin.clone(),
            self.heartbeat_failure.clone(),
        )?);
        Ok(())
    }

    fn join_once(&mut self, client: &mut Client) -> Result<()> {
        if self.coordinator < 0 {
            self.coordinator = client.find_coordinator(&self.group)?;
        }
        let metadata = assignor::encode_subscription(&self.topics)?;
        let rebalance_wait =
            Duration::from_millis(u64::try_from(self.config.rebalance_timeout_ms).unwrap_or(0));
        let join = loop {
            let request = JoinGroupRequest::default()
                .with_group_id(group_id(&self.group))
                .with_session_timeout_ms(self.config.session_timeout_ms)
                .with_rebalance_timeout_ms(self.config.rebalance_timeout_ms)
                .with_member_id(StrBytes::from_string(self.member_id.clone()))
                .with_protocol_type(StrBytes::from_static_str(CONSUMER_PROTOCOL_TYPE))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str(assignor::RANGE))
                    .with_metadata(metadata.clone())]);
            let (_, response) = client
                .broker(self.coordinator)?
                .send_waiting(&request, rebalance_wait)?;
            if response.error_code == code::MEMBER_ID_REQUIRED {
                // Since JoinGroup v4 the first join only hands out a member id.
                self.member_id = response.member_id.to_string();
                continue;
            }
            KafkaError::check(response.error_code, None)
                .map_err(|e| ClientError::kafka(format!("joining group {}", self.group), e))?;
            break response;
        };
        self.member_id = join.member_id.to_string();
        self.generation = join.generation_id;
        let protocol = join
            .protocol_name
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_else(|| assignor::RANGE.to_owned());
        let assignments = if join.leader == join.member_id {
            let mut subscriptions = BTreeMap::new();
            for m in &join.members {
                subscriptions.insert(
                    m.member_id.to_string(),
                    assignor::decode_subscription(m.metadata.clone())?,
                );
            }
            let mut all_topics: Vec<String> = subscriptions.values().flatten().cloned().collect();
            all_topics.sort();
            all_topics.dedup();
            let names: Vec<&str> = all_topics.iter().map(String::as_str).collect();
            let cluster = client.metadata(Some(&names), false)?;
            let counts: BTreeMap<String, i32> = cluster
                .topics
                .values()
                .filter(|t| t.error_code == code::NONE)
                .map(|t| (t.name.clone(), t.partitions.len() as i32))
                .collect();
            assignor::range_assign(&subscriptions, &counts)
                .into_iter()
                .map(|(member, a)| {
                    Ok(SyncGroupRequestAssignment::default()
                        .with_member_id(StrBytes::from_string(member))
                        .with_assignment(assignor::encode_assignment(&a)?))
                })
                .collect::<Result<Vec<_>>>()?
        } else {
            Vec::new()
        };
        let request = SyncGroupRequest::default()
            .with_group_id(group_id(&self.group))
            .with_generation_id(self.generation)
            .with_member_id(StrBytes::from_string(self.member_id.clone()))
            .with_protocol_type(Some(StrBytes::from_static_str(CONSUMER_PROTOCOL_TYPE)))
            .with_protocol_name(Some(StrBytes::from_string(protocol)))
            .with_assignments(assignments);
        let (_, sync) = client
            .broker(self.coordinator)?
            .send_waiting(&request, rebalance_wait)?;
        KafkaError::check(sync.error_code, None)
            .map_err(|e| ClientError::kafka(format!("syncing group {}", self.group), e))?;
        self.assignment = assignor::decode_assignment(sync.assignment)?;
        Ok(())
    }

    /// Commits positions as this member of the current generation.
    pub fn commit(&self, client: &mut Client, offsets: &Offsets) -> Result<()> {
        client.commit_offsets(&self.group, self.generation, &self.member_id, offsets)
    }

    /// Leaves the group so its partitions are reassigned at once.
    pub fn leave(mut self, client: &mut Client) -> Result<()> {
        self.heartbeat = None;
        if self.member_id.is_empty() || self.coordinator < 0 {
            return Ok(());
        }
        let conn = client.broker(self.coordinator)?;
        let version = conn.version_of::<LeaveGroupRequest>()?;
        let mut request = LeaveGroupRequest::default().with_group_id(group_id(&self.group));
        if version >= 3 {
            request.members = vec![MemberIdentity::default()
                .with_member_id(StrBytes::from_string(self.member_id.clone()))];
        } else {
            request.member_id = StrBytes::from_string(self.member_id.clone());
        }
        let response = conn.send_version(version, &request, None)?;
        let member_error = response
            .members
            .first()
            .map_or(code::NONE, |m| m.error_code);
        for error in [response.error_code, member_error] {
            match error {
                code::NONE | code::UNKNOWN_MEMBER_ID => {}
                other => {
                    return Err(ClientError::kafka(
                        format!("leaving group {}", self.group),
                        KafkaError::new(other, None),
                    ))
                }
            }
        }
        Ok(())
    }
}

/// Errors after which joining again may succeed.
fn rejoinable(e: &ClientError) -> bool {
    match e.kafka_code() {
        Some(
            code::REBALANCE_IN_PROGRESS
            | code::ILLEGAL_GENERATION
            | code::UNKNOWN_MEMBER_ID
            | code::NOT_COORDINATOR
            | code::COORDINATOR_NOT_AVAILABLE
            | code::COORDINATOR_LOAD_IN_PROGRESS,
        ) => true,
        Some(_) => false,
        None => matches!(e, ClientError::Closed { .. } | ClientError::Io { .. }),
    }
}
