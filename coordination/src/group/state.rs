//! The classic group protocol as a pure state machine (Kafka's `GroupCoordinator` and
//! `GroupMetadata`): groups, members, generations, rebalances, committed offsets.
//!
//! [`GroupCoordinator`] lives on one shard and holds the groups of the
//! `__consumer_offsets` partitions that shard owns. It does no I/O and reads no clock:
//! every call takes `now_ms` (a monotonic millisecond clock of the caller's choosing;
//! tests drive it by hand), and what must happen outside it comes back as [`Effects`]:
//! records to append to `__consumer_offsets` and answers for requests that were parked.
//!
//! Delayed operations: a JoinGroup is parked (a [`WaiterId`]) until every known member
//! has rejoined or the rebalance timeout passes (for a new group, until
//! `group.initial.rebalance.delay.ms` passes with no new member, as Kafka's
//! `InitialDelayedJoin`); a follower's SyncGroup is parked until the leader sends the
//! assignment. [`GroupCoordinator::next_deadline_ms`] tells the caller when to call
//! [`GroupCoordinator::tick`], which expires sessions and completes timed-out phases.
//!
//! When a rebalance completes, dynamic members that did not rejoin are removed; static
//! members stay with their last subscription until their session expires, as in Kafka.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use sluice_core::ErrorCode;

use super::records::{GroupRecord, GroupValue, MemberValue, OffsetValue};

/// Identifies a parked JoinGroup or SyncGroup; its answer comes back in [`Effects`].
pub type WaiterId = u64;

/// Group coordinator settings (broker config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupConfig {
    /// `offsets.topic.num.partitions`
    pub offsets_partitions: i32,
    /// `group.min.session.timeout.ms`
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`
    pub initial_rebalance_delay_ms: i32,
    /// `offset.metadata.max.bytes`
    pub offset_metadata_max_bytes: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            offsets_partitions: 50,
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            offset_metadata_max_bytes: 4096,
        }
    }
}

/// Java's `String.hashCode` over UTF-16 code units.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// The `__consumer_offsets` partition of a group: `Utils.abs(hashCode) % partitions`,
/// where Kafka's `Utils.abs` is `hash & 0x7fffffff`.
pub fn partition_for_group(group_id: &str, partitions: i32) -> i32 {
    assert!(partitions > 0);
    (java_string_hash(group_id) & 0x7fff_ffff) % partitions
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name Kafka uses on the wire (ListGroups, DescribeGroups).
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// A JoinGroup, independent of its wire version.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub group_id: String,
    /// Empty for a member the group does not know yet.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata), in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new dynamic member first gets MEMBER_ID_REQUIRED and its id.
    pub require_known_member_id: bool,
}

/// One member as the leader sees it in its JoinGroup answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResult {
    pub error: ErrorCode,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Every member with its metadata, for the leader only.
    pub members: Vec<JoinedMember>,
}

impl JoinResult {
    fn error(error: ErrorCode, member_id: &str) -> JoinResult {
        JoinResult {
            error,
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

/// A SyncGroup, independent of its wire version.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// The leader's assignment, per member; empty from followers.
    pub assignments: Vec<(String, Bytes)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResult {
    pub error: ErrorCode,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResult {
    fn error(error: ErrorCode) -> SyncResult {
        SyncResult {
            error,
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// An answer now, or later through [`Effects`] under this waiter id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<T> {
    Now(T),
    Later(WaiterId),
}

/// What the caller must do after a call: first append `records` (each with its
/// `__consumer_offsets` partition), then deliver the parked answers.
#[derive(Debug, Default)]
pub struct Effects {
    pub records: Vec<(i32, GroupRecord)>,
    pub joins: Vec<(WaiterId, JoinResult)>,
    pub syncs: Vec<(WaiterId, SyncResult)>,
}

impl Effects {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.joins.is_empty() && self.syncs.is_empty()
    }
}

/// ListGroups row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    pub state: GroupState,
}

/// DescribeGroups member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// DescribeGroups group (`Dead` with no members for an unknown group, as Kafka).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

#[derive(Debug)]
struct Member {
    group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    protocol_type: String,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    awaiting_join: Option<WaiterId>,
    awaiting_sync: Option<WaiterId>,
    /// Sent SyncGroup in the current generation.
    synced: bool,
    session_deadline_ms: u64,
}

impl Member {
    /// Answers this member's parked JoinGroup and SyncGroup, if any, with `code`.
    fn fail_parked(&mut self, code: ErrorCode, member_id: &str, effects: &mut Effects) {
        if let Some(w) = self.awaiting_join.take() {
            effects.joins.push((w, JoinResult::error(code, member_id)));
        }
        if let Some(w) = self.awaiting_sync.take() {
            effects.syncs.push((w, SyncResult::error(code)));
        }
    }

    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(name, _)| name == protocol)
    }
}

#[derive(Debug)]
struct Group {
    partition: i32,
    state: GroupState,
    generation_id: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// group.instance.id -> member id
    static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with their expiry.
    pending_members: HashMap<String, u64>,
    /// End of the current PreparingRebalance or CompletingRebalance phase.
    phase_deadline_ms: Option<u64>,
    /// InitialDelayedJoin: (delay, rebalance time left, member count at its start).
    initial_delay: Option<(u64, u64, usize)>,
    state_timestamp_ms: i64,
    offsets: BTreeMap<(String, i32), OffsetValue>,
}

impl Group {
    fn new(partition: i32) -> Group {
        Group {
            partition,
            state: GroupState::Empty,
            generation_id: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            phase_deadline_ms: None,
            initial_delay: None,
            state_timestamp_ms: -1,
            offsets: BTreeMap::new(),
        }
    }

    fn rebalance_timeout_ms(&self) -> u64 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms.max(0) as u64)
            .max()
            .unwrap_or(0)
    }

    /// Protocols every member supports.
    fn common_protocols(&self) -> BTreeSet<String> {
        let mut members = self.members.values();
        let Some(first) = members.next() else {
            return BTreeSet::new();
        };
        let mut common: BTreeSet<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in members {
            common.retain(|p| m.supports(p));
        }
        common
    }

    /// Kafka's `supportsProtocols`: a joining member fits if the group is empty or its
    /// protocol type matches and it shares a protocol with every member.
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        let common = self.common_protocols();
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| common.contains(name))
    }

    /// Kafka's `selectProtocol`: each member votes for its most preferred protocol
    /// among those all support; the most votes wins.
    fn select_protocol(&self) -> Option<String> {
        let common = self.common_protocols();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        let mut order: Vec<&str> = Vec::new();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| common.contains(n)) {
                let count = votes.entry(name.as_str()).or_insert(0);
                if *count == 0 {
                    order.push(name.as_str());
                }
                *count += 1;
            }
        }
        // Ties go to the protocol voted for first.
        let best = order.iter().map(|n| votes[n]).max()?;
        order
            .into_iter()
            .find(|n| votes[n] == best)
            .map(str::to_string)
    }

    fn all_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    fn is_fenced(&self, group_instance_id: Option<&str>, member_id: &str) -> bool {
        group_instance_id
            .and_then(|id| self.static_members.get(id))
            .is_some_and(|known| known != member_id)
    }

    fn transition(&mut self, state: GroupState, wall_ms: i64) {
        self.state = state;
        self.state_timestamp_ms = wall_ms;
    }

    fn to_value(&self) -> GroupValue {
        let protocol = self.protocol.clone().unwrap_or_default();
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation_id: self.generation_id,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            current_state_timestamp_ms: self.state_timestamp_ms,
            members: self
                .members
                .iter()
                .map(|(id, m)| MemberValue {
                    member_id: id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Topics the members of a consumer group subscribe to, from their subscription
    /// metadata (`ConsumerProtocolSubscription`: version, then the topic array).
    fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol.as_deref()?;
        let mut topics = BTreeSet::new();
        for m in self.members.values() {
            topics.extend(parse_subscription_topics(&m.metadata(protocol))?);
        }
        Some(topics)
    }
}

/// The topics of a `ConsumerProtocolSubscription` (any version: they all start with an
/// i16 version and an array of i16-length strings). `None` if it cannot be parsed.
pub fn parse_subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut buf = metadata.get(2..)?;
    let count = i32::from_be_bytes(buf.get(..4)?.try_into().ok()?);
    buf = &buf[4..];
    let mut topics = Vec::new();
    for _ in 0..count.max(0) {
        let len = i16::from_be_bytes(buf.get(..2)?.try_into().ok()?);
        let len = usize::try_from(len).ok()?;
        let name = buf.get(2..2 + len)?;
        topics.push(String::from_utf8(name.to_vec()).ok()?);
        buf = &buf[2 + len..];
    }
    Some(topics)
}

/// Whether a `__consumer_offsets` partition's groups can be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionStatus {
    Loading,
    Loaded,
}

/// The groups of the `__consumer_offsets` partitions one shard owns. Lives on that
/// shard only.
#[derive(Debug)]
pub struct GroupCoordinator {
    config: GroupConfig,
    groups: HashMap<String, Group>,
    partitions: HashMap<i32, PartitionStatus>,
    next_waiter: WaiterId,
}

impl GroupCoordinator {
    pub fn new(config: GroupConfig) -> GroupCoordinator {
        assert!(config.offsets_partitions > 0);
        GroupCoordinator {
            config,
            groups: HashMap::new(),
            partitions: HashMap::new(),
            next_waiter: 1,
        }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    pub fn partition_for(&self, group_id: &str) -> i32 {
        partition_for_group(group_id, self.config.offsets_partitions)
    }

    pub fn partition_status(&self, partition: i32) -> Option<PartitionStatus> {
        self.partitions.get(&partition).copied()
    }

    /// Marks `partition` as loading: its groups are not served until [`Self::finish_load`].
    pub fn begin_load(&mut self, partition: i32) {
        self.partitions.insert(partition, PartitionStatus::Loading);
    }

    pub fn finish_load(&mut self, partition: i32) {
        self.partitions.insert(partition, PartitionStatus::Loaded);
    }

    /// Forgets the groups of `partition` (this shard no longer owns it); parked
    /// requests are answered NOT_COORDINATOR.
    pub fn unload(&mut self, partition: i32) -> Effects {
        self.partitions.remove(&partition);
        let mut effects = Effects::default();
        self.groups.retain(|_, g| {
            if g.partition != partition {
                return true;
            }
            for m in g.members.values_mut() {
                m.fail_parked(ErrorCode::NotCoordinator, "", &mut effects);
            }
            false
        });
        effects
    }

    /// Applies one record read from `__consumer_offsets` while loading `partition`.
    pub fn replay(&mut self, partition: i32, record: GroupRecord, now_ms: u64) {
        match record {
            GroupRecord::Offset {
                group,
                topic,
                partition: p,
                value,
            } => match value {
                Some(value) => {
                    self.groups
                        .entry(group)
                        .or_insert_with(|| Group::new(partition))
                        .offsets
                        .insert((topic, p), value);
                }
                None => {
                    if let Some(g) = self.groups.get_mut(&group) {
                        g.offsets.remove(&(topic, p));
                    }
                }
            },
            GroupRecord::Group { group, value: None } => {
                self.groups.remove(&group);
            }
            GroupRecord::Group {
                group,
                value: Some(value),
            } => {
                let g = self
                    .groups
                    .entry(group)
                    .or_insert_with(|| Group::new(partition));
                g.generation_id = value.generation_id;
                g.protocol_type = (!value.protocol_type.is_empty()).then_some(value.protocol_type);
                g.protocol = value.protocol;
                g.leader = value.leader;
                g.state_timestamp_ms = value.current_state_timestamp_ms;
                g.members.clear();
                g.static_members.clear();
                g.pending_members.clear();
                g.phase_deadline_ms = None;
                g.initial_delay = None;
                let protocol = g.protocol.clone().unwrap_or_default();
                for m in value.members {
                    if let Some(instance) = &m.group_instance_id {
                        g.static_members
                            .insert(instance.clone(), m.member_id.clone());
                    }
                    g.members.insert(
                        m.member_id,
                        Member {
                            group_instance_id: m.group_instance_id,
                            client_id: m.client_id,
                            client_host: m.client_host,
                            session_timeout_ms: m.session_timeout_ms,
                            rebalance_timeout_ms: m.rebalance_timeout_ms,
                            protocol_type: g.protocol_type.clone().unwrap_or_default(),
                            protocols: vec![(protocol.clone(), m.subscription)],
                            assignment: m.assignment,
                            awaiting_join: None,
                            awaiting_sync: None,
                            synced: true,
                            session_deadline_ms: now_ms + m.session_timeout_ms.max(0) as u64,
                        },
                    );
                }
                g.state = if g.members.is_empty() {
                    GroupState::Empty
                } else {
                    GroupState::Stable
                };
            }
        }
    }

    fn new_waiter(&mut self) -> WaiterId {
        let id = self.next_waiter;
        self.next_waiter += 1;
        id
    }

    /// JoinGroup.
    pub fn join(
        &mut self,
        now_ms: u64,
        wall_ms: i64,
        req: JoinRequest,
        effects: &mut Effects,
    ) -> Reply<JoinResult> {
        if req.group_id.is_empty() {
            return Reply::Now(JoinResult::error(ErrorCode::InvalidGroupId, &req.member_id));
        }
        if req.session_timeout_ms < self.config.min_session_timeout_ms
            || req.session_timeout_ms > self.config.max_session_timeout_ms
        {
            return Reply::Now(JoinResult::error(
                ErrorCode::InvalidSessionTimeout,
                &req.member_id,
            ));
        }
        let partition = self.partition_for(&req.group_id);
        if !self.groups.contains_key(&req.group_id) {
            if !req.member_id.is_empty() {
                return Reply::Now(JoinResult::error(
                    ErrorCode::UnknownMemberId,
                    &req.member_id,
                ));
            }
            self.groups
                .insert(req.group_id.clone(), Group::new(partition));
        }
        let waiter = self.new_waiter();
        let delay_ms = self.config.initial_rebalance_delay_ms.max(0) as u64;
        let group_id = req.group_id.clone();
        let g = self.groups.get_mut(&group_id).expect("inserted above");
        let reply = if g.state == GroupState::Dead {
            Reply::Now(JoinResult::error(
                ErrorCode::CoordinatorNotAvailable,
                &req.member_id,
            ))
        } else if !g.supports(&req.protocol_type, &req.protocols) {
            Reply::Now(JoinResult::error(
                ErrorCode::InconsistentGroupProtocol,
                &req.member_id,
            ))
        } else if req.member_id.is_empty() {
            join_unknown_member(g, req, waiter, now_ms, wall_ms, delay_ms, effects)
        } else {
            join_known_member(g, req, waiter, now_ms, wall_ms, delay_ms, effects)
        };
        try_complete_join(&group_id, g, now_ms, wall_ms, effects);
        take_own(reply, waiter, &mut effects.joins)
    }

    /// SyncGroup.
    pub fn sync(
        &mut self,
        now_ms: u64,
        wall_ms: i64,
        req: SyncRequest,
        effects: &mut Effects,
    ) -> Reply<SyncResult> {
        let Some(g) = self.groups.get_mut(&req.group_id) else {
            return Reply::Now(SyncResult::error(ErrorCode::UnknownMemberId));
        };
        if let Err(code) = check_member(
            g,
            &req.member_id,
            req.group_instance_id.as_deref(),
            Some(req.generation_id),
        ) {
            return Reply::Now(SyncResult::error(code));
        }
        let type_mismatch = req
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != g.protocol_type.as_ref());
        let name_mismatch = req
            .protocol_name
            .as_ref()
            .is_some_and(|n| Some(n) != g.protocol.as_ref());
        if type_mismatch || name_mismatch {
            return Reply::Now(SyncResult::error(ErrorCode::InconsistentGroupProtocol));
        }
        match g.state {
            GroupState::Empty => Reply::Now(SyncResult::error(ErrorCode::UnknownMemberId)),
            GroupState::Dead => Reply::Now(SyncResult::error(ErrorCode::CoordinatorNotAvailable)),
            GroupState::PreparingRebalance => {
                Reply::Now(SyncResult::error(ErrorCode::RebalanceInProgress))
            }
            GroupState::Stable => {
                let m = g.members.get_mut(&req.member_id).expect("checked");
                m.synced = true;
                m.session_deadline_ms = now_ms + m.session_timeout_ms as u64;
                let assignment = m.assignment.clone();
                Reply::Now(sync_ok(g, assignment))
            }
            GroupState::CompletingRebalance => {
                let waiter = self.next_waiter;
                self.next_waiter += 1;
                let m = g.members.get_mut(&req.member_id).expect("checked");
                m.synced = true;
                m.awaiting_sync = Some(waiter);
                m.session_deadline_ms = now_ms + m.session_timeout_ms as u64;
                if g.leader.as_deref() == Some(req.member_id.as_str()) {
                    let mut given: HashMap<String, Bytes> = req.assignments.into_iter().collect();
                    for (id, m) in g.members.iter_mut() {
                        m.assignment = given.remove(id).unwrap_or_default();
                    }
                    g.transition(GroupState::Stable, wall_ms);
                    g.phase_deadline_ms = None;
                    effects.records.push((
                        g.partition,
                        GroupRecord::Group {
                            group: req.group_id.clone(),
                            value: Some(g.to_value()),
                        },
                    ));
                    let answers: Vec<(WaiterId, Bytes)> = g
                        .members
                        .values_mut()
                        .filter_map(|m| m.awaiting_sync.take().map(|w| (w, m.assignment.clone())))
                        .collect();
                    for (w, assignment) in answers {
                        effects.syncs.push((w, sync_ok(g, assignment)));
                    }
                }
                take_own(Reply::Later(waiter), waiter, &mut effects.syncs)
            }
        }
    }

    /// Heartbeat.
    pub fn heartbeat(
        &mut self,
        now_ms: u64,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> ErrorCode {
        let Some(g) = self.groups.get_mut(group_id) else {
            return ErrorCode::UnknownMemberId;
        };
        match g.state {
            GroupState::Dead => return ErrorCode::CoordinatorNotAvailable,
            GroupState::Empty => return ErrorCode::UnknownMemberId,
            _ => {}
        }
        if let Err(code) = check_member(g, member_id, group_instance_id, Some(generation_id)) {
            return code;
        }
        let m = g.members.get_mut(member_id).expect("checked");
        m.session_deadline_ms = now_ms + m.session_timeout_ms as u64;
        match g.state {
            GroupState::PreparingRebalance => ErrorCode::RebalanceInProgress,
            _ => ErrorCode::None,
        }
    }

    /// LeaveGroup of `members` (member id, instance id): one error per member, or a
    /// group-level error.
    pub fn leave(
        &mut self,
        now_ms: u64,
        wall_ms: i64,
        group_id: &str,
        members: &[(String, Option<String>)],
        effects: &mut Effects,
    ) -> Result<Vec<ErrorCode>, ErrorCode> {
        let Some(g) = self.groups.get_mut(group_id) else {
            return Ok(vec![ErrorCode::UnknownMemberId; members.len()]);
        };
        if g.state == GroupState::Dead {
            return Err(ErrorCode::CoordinatorNotAvailable);
        }
        let mut results = Vec::with_capacity(members.len());
        for (member_id, instance) in members {
            let code = match instance {
                Some(instance) => match g.static_members.get(instance).cloned() {
                    None => ErrorCode::UnknownMemberId,
                    Some(known) if !member_id.is_empty() && *member_id != known => {
                        ErrorCode::FencedInstanceId
                    }
                    Some(known) => {
                        remove_member(g, &known, effects);
                        ErrorCode::None
                    }
                },
                None if g.pending_members.remove(member_id).is_some() => ErrorCode::None,
                None if g.members.contains_key(member_id) => {
                    remove_member(g, member_id, effects);
                    ErrorCode::None
                }
                None => ErrorCode::UnknownMemberId,
            };
            results.push(code);
        }
        if results.contains(&ErrorCode::None) {
            after_removal(group_id, g, now_ms, wall_ms, effects);
        }
        Ok(results)
    }

    /// The earliest time [`Self::tick`] has work to do.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.groups
            .values()
            .flat_map(|g| {
                let sessions = g
                    .members
                    .values()
                    .filter(|m| m.awaiting_join.is_none() && m.awaiting_sync.is_none())
                    .map(|m| m.session_deadline_ms);
                sessions
                    .chain(g.pending_members.values().copied())
                    .chain(g.phase_deadline_ms)
            })
            .min()
    }

    /// Expires sessions and pending members, and ends rebalance phases whose time is up.
    pub fn tick(&mut self, now_ms: u64, wall_ms: i64) -> Effects {
        let mut effects = Effects::default();
        let delay_ms = self.config.initial_rebalance_delay_ms.max(0) as u64;
        for (group_id, g) in self.groups.iter_mut() {
            let pending_before = g.pending_members.len();
            g.pending_members.retain(|_, deadline| *deadline > now_ms);
            let expired: Vec<String> = g
                .members
                .iter()
                .filter(|(_, m)| {
                    m.awaiting_join.is_none()
                        && m.awaiting_sync.is_none()
                        && m.session_deadline_ms <= now_ms
                })
                .map(|(id, _)| id.clone())
                .collect();
            for id in &expired {
                remove_member(g, id, &mut effects);
            }
            if !expired.is_empty() || g.pending_members.len() != pending_before {
                after_removal(group_id, g, now_ms, wall_ms, &mut effects);
            }
            if g.phase_deadline_ms.is_some_and(|d| d <= now_ms) {
                match g.state {
                    GroupState::PreparingRebalance => {
                        if let Some((delay, remaining, members_at_start)) = g.initial_delay {
                            if g.members.len() > members_at_start && remaining > 0 {
                                let step = delay_ms.min(remaining).max(1);
                                g.initial_delay = Some((delay, remaining - step, g.members.len()));
                                g.phase_deadline_ms = Some(now_ms + step);
                                continue;
                            }
                        }
                        complete_join(group_id, g, now_ms, wall_ms, &mut effects);
                    }
                    GroupState::CompletingRebalance => {
                        // The leader never sent the assignment: drop whoever did not
                        // sync and rebalance again.
                        let unsynced: Vec<String> = g
                            .members
                            .iter()
                            .filter(|(_, m)| !m.synced)
                            .map(|(id, _)| id.clone())
                            .collect();
                        for id in &unsynced {
                            remove_member(g, id, &mut effects);
                        }
                        g.phase_deadline_ms = None;
                        after_removal(group_id, g, now_ms, wall_ms, &mut effects);
                    }
                    _ => g.phase_deadline_ms = None,
                }
            }
        }
        effects
    }

    /// Checks an OffsetCommit against the group (Kafka's `validateOffsetCommit`),
    /// creating the group for a standalone commit. Returns the group's partition.
    pub fn check_commit(
        &mut self,
        now_ms: u64,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<i32, ErrorCode> {
        if group_id.is_empty() {
            return Err(ErrorCode::InvalidGroupId);
        }
        let partition = self.partition_for(group_id);
        let standalone = generation_id < 0 && member_id.is_empty() && group_instance_id.is_none();
        let g = match self.groups.get_mut(group_id) {
            Some(g) => g,
            None if standalone => self
                .groups
                .entry(group_id.to_string())
                .or_insert_with(|| Group::new(partition)),
            None => return Err(ErrorCode::IllegalGeneration),
        };
        if g.state == GroupState::Dead {
            return Err(ErrorCode::CoordinatorNotAvailable);
        }
        if standalone {
            return if g.state == GroupState::Empty {
                Ok(g.partition)
            } else {
                Err(ErrorCode::UnknownMemberId)
            };
        }
        check_member(g, member_id, group_instance_id, Some(generation_id))?;
        if g.state == GroupState::CompletingRebalance {
            return Err(ErrorCode::RebalanceInProgress);
        }
        let m = g.members.get_mut(member_id).expect("checked");
        m.session_deadline_ms = now_ms + m.session_timeout_ms as u64;
        Ok(g.partition)
    }

    /// Records a committed offset once its record is in the log.
    pub fn commit_applied(
        &mut self,
        group_id: &str,
        topic: &str,
        partition: i32,
        value: OffsetValue,
    ) {
        let group_partition = self.partition_for(group_id);
        self.groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_partition))
            .offsets
            .insert((topic.to_string(), partition), value);
    }

    /// The committed offset of a partition, if any.
    pub fn committed(&self, group_id: &str, topic: &str, partition: i32) -> Option<&OffsetValue> {
        self.groups
            .get(group_id)?
            .offsets
            .get(&(topic.to_string(), partition))
    }

    /// Every committed offset of a group, by topic then partition.
    pub fn all_committed(&self, group_id: &str) -> Vec<(String, i32, OffsetValue)> {
        self.groups.get(group_id).map_or_else(Vec::new, |g| {
            g.offsets
                .iter()
                .map(|((t, p), v)| (t.clone(), *p, v.clone()))
                .collect()
        })
    }

    /// Groups of the loaded partitions.
    pub fn list(&self) -> Vec<GroupListing> {
        let mut out: Vec<GroupListing> = self
            .groups
            .iter()
            .filter(|(_, g)| self.partition_status(g.partition) == Some(PartitionStatus::Loaded))
            .map(|(id, g)| GroupListing {
                group_id: id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state,
            })
            .collect();
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out
    }

    pub fn describe(&self, group_id: &str) -> GroupDescription {
        let Some(g) = self.groups.get(group_id) else {
            return GroupDescription {
                state: GroupState::Dead,
                protocol_type: String::new(),
                protocol: String::new(),
                members: Vec::new(),
            };
        };
        let protocol = g.protocol.clone().unwrap_or_default();
        let stable = g.state == GroupState::Stable;
        GroupDescription {
            state: g.state,
            protocol_type: g.protocol_type.clone().unwrap_or_default(),
            protocol: protocol.clone(),
            members: g
                .members
                .iter()
                .map(|(id, m)| MemberDescription {
                    member_id: id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata(&protocol)
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        }
    }

    /// DeleteGroups of one group: removes it and returns the tombstones to append (its
    /// offsets, then its metadata) with its partition.
    pub fn delete_group(&mut self, group_id: &str) -> Result<(i32, Vec<GroupRecord>), ErrorCode> {
        let Some(g) = self.groups.get(group_id) else {
            return Err(ErrorCode::GroupIdNotFound);
        };
        match g.state {
            GroupState::Dead => return Err(ErrorCode::GroupIdNotFound),
            GroupState::Empty => {}
            _ => return Err(ErrorCode::NonEmptyGroup),
        }
        let g = self.groups.remove(group_id).expect("present");
        let mut records: Vec<GroupRecord> = g
            .offsets
            .into_keys()
            .map(|(topic, partition)| GroupRecord::Offset {
                group: group_id.to_string(),
                topic,
                partition,
                value: None,
            })
            .collect();
        records.push(GroupRecord::Group {
            group: group_id.to_string(),
            value: None,
        });
        Ok((g.partition, records))
    }

    /// OffsetDelete: per partition an error code, plus the tombstones to append.
    #[allow(clippy::type_complexity)]
    pub fn delete_offsets(
        &mut self,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<(i32, Vec<ErrorCode>, Vec<GroupRecord>), ErrorCode> {
        let Some(g) = self.groups.get_mut(group_id) else {
            return Err(ErrorCode::GroupIdNotFound);
        };
        let subscribed = match g.state {
            GroupState::Dead => return Err(ErrorCode::GroupIdNotFound),
            GroupState::Empty => BTreeSet::new(),
            _ => g.subscribed_topics().ok_or(ErrorCode::NonEmptyGroup)?,
        };
        let mut codes = Vec::with_capacity(partitions.len());
        let mut records = Vec::new();
        for (topic, partition) in partitions {
            if subscribed.contains(topic) {
                codes.push(ErrorCode::GroupSubscribedToTopic);
                continue;
            }
            if g.offsets.remove(&(topic.clone(), *partition)).is_some() {
                records.push(GroupRecord::Offset {
                    group: group_id.to_string(),
                    topic: topic.clone(),
                    partition: *partition,
                    value: None,
                });
            }
            codes.push(ErrorCode::None);
        }
        Ok((g.partition, codes, records))
    }
}

/// If `reply` is parked under `waiter` and the answer is already among the effects,
/// answer now instead.
fn take_own<T>(reply: Reply<T>, waiter: WaiterId, answers: &mut Vec<(WaiterId, T)>) -> Reply<T> {
    match reply {
        Reply::Later(w) if w == waiter => match answers.iter().position(|(id, _)| *id == w) {
            Some(i) => Reply::Now(answers.remove(i).1),
            None => Reply::Later(w),
        },
        other => other,
    }
}

fn sync_ok(g: &Group, assignment: Bytes) -> SyncResult {
    SyncResult {
        error: ErrorCode::None,
        protocol_type: g.protocol_type.clone(),
        protocol_name: g.protocol.clone(),
        assignment,
    }
}

/// Kafka's `validateCurrentMember`: fenced static member, unknown member, generation.
fn check_member(
    g: &Group,
    member_id: &str,
    group_instance_id: Option<&str>,
    generation_id: Option<i32>,
) -> Result<(), ErrorCode> {
    if g.is_fenced(group_instance_id, member_id) {
        return Err(ErrorCode::FencedInstanceId);
    }
    if !g.members.contains_key(member_id) {
        return Err(ErrorCode::UnknownMemberId);
    }
    if generation_id.is_some_and(|gen| gen != g.generation_id) {
        return Err(ErrorCode::IllegalGeneration);
    }
    Ok(())
}

fn new_member_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

fn join_unknown_member(
    g: &mut Group,
    req: JoinRequest,
    waiter: WaiterId,
    now_ms: u64,
    wall_ms: i64,
    delay_ms: u64,
    effects: &mut Effects,
) -> Reply<JoinResult> {
    if let Some(instance) = req.group_instance_id.clone() {
        let new_id = new_member_id(&instance);
        if let Some(old_id) = g.static_members.get(&instance).cloned() {
            return replace_static_member(
                g, req, &old_id, new_id, waiter, now_ms, wall_ms, delay_ms, effects,
            );
        }
        add_member_and_rebalance(g, req, new_id, waiter, now_ms, wall_ms, delay_ms, effects);
        return Reply::Later(waiter);
    }
    let new_id = new_member_id(&req.client_id);
    if req.require_known_member_id {
        // KIP-394: hand out the id first, so a client that dies before rejoining does
        // not leave a ghost member behind for a whole session.
        g.pending_members
            .insert(new_id.clone(), now_ms + req.session_timeout_ms as u64);
        return Reply::Now(JoinResult::error(ErrorCode::MemberIdRequired, &new_id));
    }
    add_member_and_rebalance(g, req, new_id, waiter, now_ms, wall_ms, delay_ms, effects);
    Reply::Later(waiter)
}

#[allow(clippy::too_many_arguments)]
fn replace_static_member(
    g: &mut Group,
    req: JoinRequest,
    old_id: &str,
    new_id: String,
    waiter: WaiterId,
    now_ms: u64,
    wall_ms: i64,
    delay_ms: u64,
    effects: &mut Effects,
) -> Reply<JoinResult> {
    let mut member = g.members.remove(old_id).expect("static member is a member");
    // The old incarnation is fenced: its parked requests fail.
    member.fail_parked(ErrorCode::FencedInstanceId, old_id, effects);
    let instance = req.group_instance_id.clone().expect("static");
    g.static_members.insert(instance, new_id.clone());
    if g.leader.as_deref() == Some(old_id) {
        g.leader = Some(new_id.clone());
    }
    let protocols_unchanged = g.protocol.as_deref().is_some_and(|p| {
        req.protocols.iter().any(|(n, _)| n == p)
            && member.metadata(p) == metadata_of(&req.protocols, p)
    });
    member.client_id = req.client_id.clone();
    member.client_host = req.client_host.clone();
    member.session_timeout_ms = req.session_timeout_ms;
    member.rebalance_timeout_ms = req.rebalance_timeout_ms;
    member.session_deadline_ms = now_ms + req.session_timeout_ms as u64;
    if g.state == GroupState::Stable && protocols_unchanged {
        member.protocols = req.protocols;
        g.members.insert(new_id.clone(), member);
        effects.records.push((
            g.partition,
            GroupRecord::Group {
                group: req.group_id.clone(),
                value: Some(g.to_value()),
            },
        ));
        return Reply::Now(JoinResult {
            error: ErrorCode::None,
            generation_id: g.generation_id,
            protocol_type: g.protocol_type.clone(),
            protocol_name: g.protocol.clone(),
            leader: g.leader.clone().unwrap_or_default(),
            member_id: new_id,
            members: Vec::new(),
        });
    }
    member.protocols = req.protocols;
    member.awaiting_join = Some(waiter);
    g.members.insert(new_id, member);
    if g.state != GroupState::PreparingRebalance {
        prepare_rebalance(g, now_ms, wall_ms, delay_ms, effects);
    }
    Reply::Later(waiter)
}

fn metadata_of(protocols: &[(String, Bytes)], name: &str) -> Bytes {
    protocols
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, m)| m.clone())
        .unwrap_or_default()
}

#[allow(clippy::too_many_arguments)]
fn add_member_and_rebalance(
    g: &mut Group,
    req: JoinRequest,
    member_id: String,
    waiter: WaiterId,
    now_ms: u64,
    wall_ms: i64,
    delay_ms: u64,
    effects: &mut Effects,
) {
    if g.members.is_empty() {
        g.protocol_type = Some(req.protocol_type.clone());
    }
    if let Some(instance) = &req.group_instance_id {
        g.static_members.insert(instance.clone(), member_id.clone());
    }
    g.pending_members.remove(&member_id);
    g.members.insert(
        member_id.clone(),
        Member {
            group_instance_id: req.group_instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocol_type: req.protocol_type,
            protocols: req.protocols,
            assignment: Bytes::new(),
            awaiting_join: Some(waiter),
            awaiting_sync: None,
            synced: false,
            session_deadline_ms: now_ms + req.session_timeout_ms as u64,
        },
    );
    if g.leader.is_none() {
        g.leader = Some(member_id);
    }
    if g.state != GroupState::PreparingRebalance {
        prepare_rebalance(g, now_ms, wall_ms, delay_ms, effects);
    }
}

#[allow(clippy::too_many_arguments)]
fn join_known_member(
    g: &mut Group,
    req: JoinRequest,
    waiter: WaiterId,
    now_ms: u64,
    wall_ms: i64,
    delay_ms: u64,
    effects: &mut Effects,
) -> Reply<JoinResult> {
    if g.pending_members.contains_key(&req.member_id) {
        let id = req.member_id.clone();
        add_member_and_rebalance(g, req, id, waiter, now_ms, wall_ms, delay_ms, effects);
        return Reply::Later(waiter);
    }
    if let Err(code) = check_member(g, &req.member_id, req.group_instance_id.as_deref(), None) {
        return Reply::Now(JoinResult::error(code, &req.member_id));
    }
    let member_id = req.member_id.clone();
    let is_leader = g.leader.as_deref() == Some(member_id.as_str());
    let m = g.members.get_mut(&member_id).expect("checked");
    let same_protocols = m.protocols == req.protocols;
    m.session_deadline_ms = now_ms + req.session_timeout_ms as u64;
    match g.state {
        GroupState::PreparingRebalance => {
            update_member(m, req, waiter);
            Reply::Later(waiter)
        }
        GroupState::CompletingRebalance | GroupState::Stable
            if same_protocols && !(g.state == GroupState::Stable && is_leader) =>
        {
            // A member that lost its JoinGroup answer, or a follower rejoining a
            // stable group with nothing new: the current generation again.
            Reply::Now(JoinResult {
                error: ErrorCode::None,
                generation_id: g.generation_id,
                protocol_type: g.protocol_type.clone(),
                protocol_name: g.protocol.clone(),
                leader: g.leader.clone().unwrap_or_default(),
                member_id: member_id.clone(),
                members: if is_leader {
                    joined_members(g)
                } else {
                    Vec::new()
                },
            })
        }
        GroupState::CompletingRebalance | GroupState::Stable => {
            update_member(m, req, waiter);
            prepare_rebalance(g, now_ms, wall_ms, delay_ms, effects);
            Reply::Later(waiter)
        }
        GroupState::Empty | GroupState::Dead => {
            Reply::Now(JoinResult::error(ErrorCode::UnknownMemberId, &member_id))
        }
    }
}

fn update_member(m: &mut Member, req: JoinRequest, waiter: WaiterId) {
    m.protocols = req.protocols;
    m.protocol_type = req.protocol_type;
    m.session_timeout_ms = req.session_timeout_ms;
    m.rebalance_timeout_ms = req.rebalance_timeout_ms;
    m.client_id = req.client_id;
    m.client_host = req.client_host;
    m.awaiting_join = Some(waiter);
}

fn joined_members(g: &Group) -> Vec<JoinedMember> {
    let protocol = g.protocol.clone().unwrap_or_default();
    g.members
        .iter()
        .map(|(id, m)| JoinedMember {
            member_id: id.clone(),
            group_instance_id: m.group_instance_id.clone(),
            metadata: m.metadata(&protocol),
        })
        .collect()
}

fn prepare_rebalance(
    g: &mut Group,
    now_ms: u64,
    wall_ms: i64,
    delay_ms: u64,
    effects: &mut Effects,
) {
    if g.state == GroupState::CompletingRebalance {
        for m in g.members.values_mut() {
            m.assignment = Bytes::new();
            if let Some(w) = m.awaiting_sync.take() {
                effects
                    .syncs
                    .push((w, SyncResult::error(ErrorCode::RebalanceInProgress)));
            }
        }
    }
    let rebalance_ms = g.rebalance_timeout_ms();
    if g.state == GroupState::Empty && delay_ms > 0 {
        g.initial_delay = Some((
            delay_ms,
            rebalance_ms.saturating_sub(delay_ms),
            g.members.len(),
        ));
        g.phase_deadline_ms = Some(now_ms + delay_ms.min(rebalance_ms.max(1)));
    } else {
        g.initial_delay = None;
        g.phase_deadline_ms = Some(now_ms + rebalance_ms);
    }
    g.transition(GroupState::PreparingRebalance, wall_ms);
}

/// Completes the join phase early when everyone has rejoined (not during the initial
/// delay, which only ends on time).
fn try_complete_join(
    group_id: &str,
    g: &mut Group,
    now_ms: u64,
    wall_ms: i64,
    effects: &mut Effects,
) {
    if g.state == GroupState::PreparingRebalance && g.initial_delay.is_none() && g.all_joined() {
        complete_join(group_id, g, now_ms, wall_ms, effects);
    }
}

/// Kafka's `onCompleteJoin`: drop dynamic members that did not rejoin (static members
/// stay, with their last subscription, until their session expires), start the next
/// generation, answer every parked JoinGroup. If only absent static members remain,
/// completion is postponed by another rebalance timeout, as Kafka does.
fn complete_join(group_id: &str, g: &mut Group, now_ms: u64, wall_ms: i64, effects: &mut Effects) {
    assert_eq!(g.state, GroupState::PreparingRebalance);
    let absent: Vec<String> = g
        .members
        .iter()
        .filter(|(_, m)| m.awaiting_join.is_none() && m.group_instance_id.is_none())
        .map(|(id, _)| id.clone())
        .collect();
    for id in &absent {
        remove_member(g, id, effects);
    }
    if !g.members.is_empty() && g.members.values().all(|m| m.awaiting_join.is_none()) {
        g.phase_deadline_ms = Some(now_ms + g.rebalance_timeout_ms());
        return;
    }
    g.initial_delay = None;
    g.generation_id += 1;
    if g.members.is_empty() {
        g.protocol = None;
        g.leader = None;
        g.phase_deadline_ms = None;
        g.transition(GroupState::Empty, wall_ms);
        effects.records.push((
            g.partition,
            GroupRecord::Group {
                group: group_id.to_string(),
                value: Some(g.to_value()),
            },
        ));
        return;
    }
    g.protocol = g.select_protocol();
    let joined_leader = g
        .leader
        .as_ref()
        .and_then(|l| g.members.get(l))
        .is_some_and(|m| m.awaiting_join.is_some());
    if !joined_leader {
        g.leader = g
            .members
            .iter()
            .find(|(_, m)| m.awaiting_join.is_some())
            .map(|(id, _)| id.clone());
    }
    g.transition(GroupState::CompletingRebalance, wall_ms);
    g.phase_deadline_ms = Some(now_ms + g.rebalance_timeout_ms());
    let leader = g.leader.clone().unwrap_or_default();
    let all = joined_members(g);
    let (generation_id, protocol_type, protocol) =
        (g.generation_id, g.protocol_type.clone(), g.protocol.clone());
    for (id, m) in g.members.iter_mut() {
        m.assignment = Bytes::new();
        m.synced = false;
        // An absent static member keeps its session clock and gets no answer.
        let Some(waiter) = m.awaiting_join.take() else {
            continue;
        };
        m.session_deadline_ms = now_ms + m.session_timeout_ms as u64;
        effects.joins.push((
            waiter,
            JoinResult {
                error: ErrorCode::None,
                generation_id,
                protocol_type: protocol_type.clone(),
                protocol_name: protocol.clone(),
                leader: leader.clone(),
                member_id: id.clone(),
                members: if *id == leader {
                    all.clone()
                } else {
                    Vec::new()
                },
            },
        ));
    }
}

/// Removes a member; its parked requests fail with UNKNOWN_MEMBER_ID.
fn remove_member(g: &mut Group, member_id: &str, effects: &mut Effects) {
    let Some(mut m) = g.members.remove(member_id) else {
        return;
    };
    m.fail_parked(ErrorCode::UnknownMemberId, member_id, effects);
    if let Some(instance) = &m.group_instance_id {
        if g.static_members.get(instance).map(String::as_str) == Some(member_id) {
            g.static_members.remove(instance);
        }
    }
    if g.leader.as_deref() == Some(member_id) {
        g.leader = g.members.keys().next().cloned();
    }
}

/// After members left: a settled group rebalances; a rebalancing one may now be done.
fn after_removal(group_id: &str, g: &mut Group, now_ms: u64, wall_ms: i64, effects: &mut Effects) {
    match g.state {
        GroupState::Stable | GroupState::CompletingRebalance => {
            prepare_rebalance(g, now_ms, wall_ms, 0, effects);
            try_complete_join(group_id, g, now_ms, wall_ms, effects);
        }
        GroupState::PreparingRebalance => {
            if g.members.is_empty() {
                complete_join(group_id, g, now_ms, wall_ms, effects);
            } else {
                try_complete_join(group_id, g, now_ms, wall_ms, effects);
            }
        }
        GroupState::Empty | GroupState::Dead => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION_MS: i32 = 10_000;
    const REBALANCE_MS: i32 = 30_000;

    fn coordinator(initial_delay_ms: i32) -> GroupCoordinator {
        GroupCoordinator::new(GroupConfig {
            initial_rebalance_delay_ms: initial_delay_ms,
            ..GroupConfig::default()
        })
    }

    fn join_req(member_id: &str, instance: Option<&str>, require_known: bool) -> JoinRequest {
        JoinRequest {
            group_id: "g".into(),
            member_id: member_id.into(),
            group_instance_id: instance.map(str::to_string),
            client_id: "c".into(),
            client_host: "/h".into(),
            session_timeout_ms: SESSION_MS,
            rebalance_timeout_ms: REBALANCE_MS,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::from_static(b"meta"))],
            require_known_member_id: require_known,
        }
    }

    fn sync_req(
        member_id: &str,
        generation_id: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncRequest {
        SyncRequest {
            group_id: "g".into(),
            generation_id,
            member_id: member_id.into(),
            group_instance_id: None,
            protocol_type: None,
            protocol_name: None,
            assignments,
        }
    }

    fn waiter(reply: Reply<JoinResult>) -> WaiterId {
        match reply {
            Reply::Later(w) => w,
            Reply::Now(r) => panic!("expected a parked join, got {r:?}"),
        }
    }

    /// The answer of a join: given at once, or among the effects.
    fn settle(reply: Reply<JoinResult>, effects: &Effects) -> JoinResult {
        match reply {
            Reply::Now(r) => r,
            Reply::Later(w) => joined(effects, w),
        }
    }

    fn joined(effects: &Effects, w: WaiterId) -> JoinResult {
        effects
            .joins
            .iter()
            .find(|(id, _)| *id == w)
            .map(|(_, r)| r.clone())
            .unwrap_or_else(|| panic!("no answer for waiter {w}: {effects:?}"))
    }

    /// One member through MEMBER_ID_REQUIRED, join and sync; returns its id.
    fn single_member_group(c: &mut GroupCoordinator) -> String {
        let mut fx = Effects::default();
        let Reply::Now(first) = c.join(0, 0, join_req("", None, true), &mut fx) else {
            panic!("v4+ join of a new member answers at once");
        };
        assert_eq!(first.error, ErrorCode::MemberIdRequired);
        let id = first.member_id;
        let Reply::Now(done) = c.join(0, 0, join_req(&id, None, true), &mut fx) else {
            panic!("a lone member completes the join at once without initial delay");
        };
        assert_eq!(done.error, ErrorCode::None);
        assert_eq!(done.generation_id, 1);
        assert_eq!(done.leader, id);
        assert_eq!(done.members.len(), 1);
        let Reply::Now(synced) = c.sync(
            0,
            0,
            sync_req(&id, 1, vec![(id.clone(), Bytes::from_static(b"A"))]),
            &mut fx,
        ) else {
            panic!("the leader's sync answers at once");
        };
        assert_eq!(synced.assignment, Bytes::from_static(b"A"));
        assert_eq!(c.describe("g").state, GroupState::Stable);
        assert!(matches!(
            fx.records.last(),
            Some((_, GroupRecord::Group { value: Some(_), .. }))
        ));
        id
    }

    #[test]
    fn java_hash_and_partition_match_kafka() {
        // "group".hashCode() in Java is 98629247.
        assert_eq!(java_string_hash("group"), 98_629_247);
        assert_eq!(partition_for_group("group", 50), 98_629_247 % 50);
        // Negative hashes are masked, not negated: "polygenelubricants".hashCode() is
        // Integer.MIN_VALUE.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for_group("polygenelubricants", 50), 0);
        assert_eq!(java_string_hash(""), 0);
    }

    #[test]
    fn join_sync_heartbeat_and_generation_checks() {
        let mut c = coordinator(0);
        let id = single_member_group(&mut c);
        assert_eq!(c.heartbeat(1, "g", &id, None, 1), ErrorCode::None);
        assert_eq!(
            c.heartbeat(1, "g", &id, None, 0),
            ErrorCode::IllegalGeneration
        );
        assert_eq!(
            c.heartbeat(1, "g", "nobody", None, 1),
            ErrorCode::UnknownMemberId
        );
        assert_eq!(
            c.heartbeat(1, "other", &id, None, 1),
            ErrorCode::UnknownMemberId
        );
        let mut fx = Effects::default();
        assert_eq!(
            c.sync(1, 0, sync_req(&id, 7, vec![]), &mut fx),
            Reply::Now(SyncResult::error(ErrorCode::IllegalGeneration))
        );
        assert!(matches!(
            c.join(1, 0, join_req("ghost", None, true), &mut fx),
            Reply::Now(JoinResult {
                error: ErrorCode::UnknownMemberId,
                ..
            })
        ));
        let mut bad = join_req("", None, true);
        bad.session_timeout_ms = 10;
        assert!(matches!(
            c.join(1, 0, bad, &mut fx),
            Reply::Now(JoinResult {
                error: ErrorCode::InvalidSessionTimeout,
                ..
            })
        ));
        let mut other_type = join_req("", None, false);
        other_type.protocol_type = "connect".into();
        assert!(matches!(
            c.join(1, 0, other_type, &mut fx),
            Reply::Now(JoinResult {
                error: ErrorCode::InconsistentGroupProtocol,
                ..
            })
        ));
    }

    #[test]
    fn second_member_rebalances_and_follower_waits_for_leader() {
        let mut c = coordinator(0);
        let a = single_member_group(&mut c);
        let mut fx = Effects::default();
        // b joins (v3, no MEMBER_ID_REQUIRED): the group rebalances, a must rejoin.
        let wb = waiter(c.join(10, 0, join_req("", None, false), &mut fx));
        assert_eq!(c.describe("g").state, GroupState::PreparingRebalance);
        assert_eq!(
            c.heartbeat(11, "g", &a, None, 1),
            ErrorCode::RebalanceInProgress
        );
        let reply = c.join(12, 0, join_req(&a, None, true), &mut fx);
        let (ra, rb) = (settle(reply, &fx), joined(&fx, wb));
        assert_eq!((ra.generation_id, rb.generation_id), (2, 2));
        assert_eq!(ra.leader, a, "the leader stays the leader");
        assert_eq!(ra.members.len(), 2);
        assert!(
            rb.members.is_empty(),
            "only the leader gets the member list"
        );
        assert_eq!(ra.protocol_name.as_deref(), Some("range"));
        let b = rb.member_id;

        // The follower's sync is parked until the leader's assignment arrives.
        let mut fx = Effects::default();
        let Reply::Later(sb) = c.sync(13, 0, sync_req(&b, 2, vec![]), &mut fx) else {
            panic!("follower sync must wait")
        };
        assert_eq!(c.heartbeat(13, "g", &b, None, 2), ErrorCode::None);
        let assignments = vec![
            (a.clone(), Bytes::from_static(b"A")),
            (b.clone(), Bytes::from_static(b"B")),
        ];
        let Reply::Now(sa) = c.sync(14, 0, sync_req(&a, 2, assignments), &mut fx) else {
            panic!("leader sync answers at once")
        };
        assert_eq!(sa.assignment, Bytes::from_static(b"A"));
        assert_eq!(
            fx.syncs,
            vec![(
                sb,
                SyncResult {
                    error: ErrorCode::None,
                    protocol_type: Some("consumer".into()),
                    protocol_name: Some("range".into()),
                    assignment: Bytes::from_static(b"B"),
                }
            )]
        );
        let d = c.describe("g");
        assert_eq!(d.state, GroupState::Stable);
        assert_eq!(d.members.len(), 2);
    }

    #[test]
    fn leave_and_session_expiry_trigger_rebalance() {
        let mut c = coordinator(0);
        let a = single_member_group(&mut c);
        let mut fx = Effects::default();
        let wb = waiter(c.join(0, 0, join_req("", None, false), &mut fx));
        let reply = c.join(0, 0, join_req(&a, None, true), &mut fx);
        let b = joined(&fx, wb).member_id;
        assert_eq!(settle(reply, &fx).generation_id, 2);
        let mut fx = Effects::default();
        c.sync(0, 0, sync_req(&a, 2, vec![]), &mut fx);
        c.sync(0, 0, sync_req(&b, 2, vec![]), &mut fx);

        // b leaves: rebalance; a rejoins alone and gets generation 3.
        let mut fx = Effects::default();
        assert_eq!(
            c.leave(1, 0, "g", &[(b.clone(), None)], &mut fx),
            Ok(vec![ErrorCode::None])
        );
        assert_eq!(c.describe("g").state, GroupState::PreparingRebalance);
        assert!(matches!(
            c.join(2, 0, join_req(&a, None, true), &mut fx),
            Reply::Now(JoinResult {
                generation_id: 3,
                ..
            })
        ));
        assert_eq!(
            c.leave(2, 0, "g", &[(b, None)], &mut fx),
            Ok(vec![ErrorCode::UnknownMemberId])
        );
        c.sync(3, 0, sync_req(&a, 3, vec![]), &mut fx);

        // a stops heartbeating: expired after the session timeout, group empty.
        let deadline = c.next_deadline_ms().expect("a session deadline");
        assert_eq!(deadline, 3 + SESSION_MS as u64);
        assert!(c.tick(deadline - 1, 0).is_empty());
        let fx = c.tick(deadline, 0);
        let d = c.describe("g");
        assert_eq!(d.state, GroupState::Empty);
        assert!(d.members.is_empty());
        assert!(
            matches!(fx.records.last(), Some((_, GroupRecord::Group { value: Some(v), .. })) if v.members.is_empty() && v.generation_id == 4)
        );
    }

    #[test]
    fn rebalance_timeout_drops_members_that_do_not_rejoin() {
        let mut c = coordinator(0);
        let a = single_member_group(&mut c);
        let mut fx = Effects::default();
        let wb = waiter(c.join(100, 0, join_req("", None, false), &mut fx));
        // a keeps heartbeating but never rejoins.
        assert_eq!(
            c.heartbeat(200, "g", &a, None, 1),
            ErrorCode::RebalanceInProgress
        );
        let fx = c.tick(100 + REBALANCE_MS as u64, 0);
        let rb = joined(&fx, wb);
        assert_eq!(rb.error, ErrorCode::None);
        assert_eq!(rb.leader, rb.member_id, "b leads once a is gone");
        assert_eq!(
            c.heartbeat(100 + REBALANCE_MS as u64, "g", &a, None, 1),
            ErrorCode::UnknownMemberId
        );
    }

    #[test]
    fn initial_delay_waits_and_extends_for_new_members() {
        let mut c = coordinator(100);
        let mut fx = Effects::default();
        let w1 = waiter(c.join(0, 0, join_req("", None, false), &mut fx));
        assert_eq!(c.next_deadline_ms(), Some(100));
        let w2 = waiter(c.join(50, 0, join_req("", None, false), &mut fx));
        // A member arrived during the delay: it is extended once more.
        assert!(c.tick(100, 0).joins.is_empty());
        let fx = c.tick(200, 0);
        assert_eq!(joined(&fx, w1).generation_id, 1);
        assert_eq!(joined(&fx, w2).generation_id, 1);
    }

    #[test]
    fn absent_static_member_stays_through_a_rebalance() {
        let mut c = coordinator(0);
        let mut fx = Effects::default();
        let reply = c.join(0, 0, join_req("", Some("inst"), true), &mut fx);
        let stat = settle(reply, &fx).member_id;
        c.sync(
            0,
            0,
            sync_req(&stat, 1, vec![(stat.clone(), Bytes::from_static(b"A"))]),
            &mut fx,
        );

        // A dynamic member arrives; the static one does not rejoin in time.
        let mut fx = Effects::default();
        let Reply::Now(required) = c.join(1, 0, join_req("", None, true), &mut fx) else {
            panic!("a new dynamic member is asked for its id first")
        };
        assert_eq!(required.error, ErrorCode::MemberIdRequired);
        let dynamic = required.member_id;
        let w = waiter(c.join(2, 0, join_req(&dynamic, None, true), &mut fx));
        // The static member's session is kept alive by heartbeats (answered
        // REBALANCE_IN_PROGRESS), but it never sends JoinGroup.
        for now_ms in (9_000..REBALANCE_MS as u64).step_by(9_000) {
            assert_eq!(
                c.heartbeat(now_ms, "g", &stat, Some("inst"), 1),
                ErrorCode::RebalanceInProgress
            );
            assert!(c.tick(now_ms, 0).joins.is_empty());
        }
        let fx = c.tick(2 + REBALANCE_MS as u64 + 1, 0);
        let result = joined(&fx, w);
        assert_eq!(result.error, ErrorCode::None);
        assert_eq!(result.generation_id, 2);
        assert_eq!(
            result.leader, dynamic,
            "the leader is a member that rejoined"
        );
        let mut members: Vec<_> = result.members.iter().map(|m| m.member_id.clone()).collect();
        members.sort();
        let mut want = vec![stat.clone(), dynamic.clone()];
        want.sort();
        assert_eq!(members, want, "the absent static member keeps its place");
        assert_eq!(c.describe("g").members.len(), 2);
    }

    #[test]
    fn static_member_rejoin_keeps_assignment_and_fences_old_id() {
        let mut c = coordinator(0);
        let mut fx = Effects::default();
        let reply = c.join(0, 0, join_req("", Some("inst"), true), &mut fx);
        let first = settle(reply, &fx);
        let old = first.member_id.clone();
        assert!(old.starts_with("inst-"));
        c.sync(
            0,
            0,
            sync_req(&old, 1, vec![(old.clone(), Bytes::from_static(b"A"))]),
            &mut fx,
        );

        // The same instance restarts with no member id: new id, same generation, no
        // rebalance.
        let mut fx = Effects::default();
        let Reply::Now(again) = c.join(5, 0, join_req("", Some("inst"), true), &mut fx) else {
            panic!("a stable static member rejoins at once")
        };
        assert_eq!(again.error, ErrorCode::None);
        assert_eq!(again.generation_id, 1);
        assert_ne!(again.member_id, old);
        assert_eq!(c.describe("g").state, GroupState::Stable);
        assert_eq!(fx.records.len(), 1, "the new member id is persisted");
        // The old incarnation is fenced.
        assert_eq!(
            c.heartbeat(6, "g", &old, Some("inst"), 1),
            ErrorCode::FencedInstanceId
        );
        assert_eq!(
            c.heartbeat(6, "g", &again.member_id, Some("inst"), 1),
            ErrorCode::None
        );
        let Reply::Now(s) = c.sync(6, 0, sync_req(&again.member_id, 1, vec![]), &mut fx) else {
            panic!()
        };
        assert_eq!(s.assignment, Bytes::from_static(b"A"));
        // Leaving by instance id with a stale member id is fenced too.
        assert_eq!(
            c.leave(7, 0, "g", &[(old, Some("inst".into()))], &mut fx),
            Ok(vec![ErrorCode::FencedInstanceId])
        );
        assert_eq!(
            c.leave(7, 0, "g", &[(String::new(), Some("inst".into()))], &mut fx),
            Ok(vec![ErrorCode::None])
        );
        assert_eq!(c.describe("g").state, GroupState::Empty);
    }

    #[test]
    fn pending_member_expires() {
        let mut c = coordinator(0);
        let mut fx = Effects::default();
        let Reply::Now(r) = c.join(0, 0, join_req("", None, true), &mut fx) else {
            panic!()
        };
        assert_eq!(r.error, ErrorCode::MemberIdRequired);
        assert_eq!(c.next_deadline_ms(), Some(SESSION_MS as u64));
        c.tick(SESSION_MS as u64, 0);
        assert_eq!(c.next_deadline_ms(), None);
        // The id is no longer known.
        assert!(matches!(
            c.join(
                SESSION_MS as u64,
                0,
                join_req(&r.member_id, None, true),
                &mut fx
            ),
            Reply::Now(JoinResult {
                error: ErrorCode::UnknownMemberId,
                ..
            })
        ));
    }

    #[test]
    fn commits_fetch_delete_and_replay() {
        let mut c = coordinator(0);
        c.begin_load(c.partition_for("g"));
        c.finish_load(c.partition_for("g"));
        // Standalone commit (generation -1, no member) creates an empty group.
        let p = c.check_commit(0, "g", -1, "", None).unwrap();
        assert_eq!(p, c.partition_for("g"));
        let v = OffsetValue {
            offset: 5,
            leader_epoch: -1,
            metadata: "m".into(),
            commit_timestamp_ms: 1,
        };
        c.commit_applied("g", "t", 0, v.clone());
        assert_eq!(c.committed("g", "t", 0), Some(&v));
        assert_eq!(c.list().len(), 1);
        assert_eq!(
            c.check_commit(0, "nope", 3, "m", None),
            Err(ErrorCode::IllegalGeneration)
        );

        // A group with members refuses standalone commits and checks generations.
        let mut c2 = coordinator(0);
        let id = single_member_group(&mut c2);
        assert_eq!(
            c2.check_commit(0, "g", -1, "", None),
            Err(ErrorCode::UnknownMemberId)
        );
        assert_eq!(
            c2.check_commit(0, "g", 0, &id, None),
            Err(ErrorCode::IllegalGeneration)
        );
        assert!(c2.check_commit(0, "g", 1, &id, None).is_ok());
        assert_eq!(c2.delete_group("g"), Err(ErrorCode::NonEmptyGroup));

        // OffsetDelete and DeleteGroups produce tombstones; replay restores state.
        let (_, codes, records) = c
            .delete_offsets("g", &[("t".into(), 0), ("t".into(), 1)])
            .unwrap();
        assert_eq!(codes, vec![ErrorCode::None, ErrorCode::None]);
        assert_eq!(records.len(), 1);
        assert_eq!(c.committed("g", "t", 0), None);
        c.commit_applied("g", "t", 1, v.clone());
        let (_, tombstones) = c.delete_group("g").unwrap();
        assert_eq!(tombstones.len(), 2);
        assert_eq!(c.delete_group("g"), Err(ErrorCode::GroupIdNotFound));

        let mut replayed = coordinator(0);
        let part = replayed.partition_for("g");
        replayed.replay(
            part,
            GroupRecord::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 1,
                value: Some(v.clone()),
            },
            0,
        );
        assert_eq!(replayed.committed("g", "t", 1), Some(&v));
        for r in tombstones {
            replayed.replay(part, r, 0);
        }
        assert_eq!(replayed.committed("g", "t", 1), None);
        assert_eq!(replayed.describe("g").state, GroupState::Dead);
    }

    #[test]
    fn replayed_members_are_stable_until_their_sessions_expire() {
        let mut c = coordinator(0);
        let id = single_member_group(&mut c);
        let mut fx = Effects::default();
        c.sync(0, 0, sync_req(&id, 1, vec![]), &mut fx);
        let Some((
            part,
            GroupRecord::Group {
                value: Some(value), ..
            },
        )) = c.tick(0, 0).records.pop().or_else(|| {
            let g = c.groups.get("g").unwrap();
            Some((
                g.partition,
                GroupRecord::Group {
                    group: "g".into(),
                    value: Some(g.to_value()),
                },
            ))
        })
        else {
            panic!()
        };
        let mut loaded = coordinator(0);
        loaded.replay(
            part,
            GroupRecord::Group {
                group: "g".into(),
                value: Some(value),
            },
            1000,
        );
        assert_eq!(loaded.describe("g").state, GroupState::Stable);
        assert_eq!(loaded.heartbeat(1000, "g", &id, None, 1), ErrorCode::None);
        loaded.tick(1000 + SESSION_MS as u64, 0);
        assert_eq!(loaded.describe("g").state, GroupState::Empty);
    }

    #[test]
    fn offset_delete_refuses_subscribed_topics() {
        let mut c = coordinator(0);
        // ConsumerProtocolSubscription v0 for topic "t".
        let meta = Bytes::from_static(&[0, 0, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 0]);
        let mut fx = Effects::default();
        let mut req = join_req("", None, false);
        req.protocols = vec![("range".into(), meta.clone())];
        let reply = c.join(0, 0, req, &mut fx);
        let id = settle(reply, &fx).member_id;
        c.sync(0, 0, sync_req(&id, 1, vec![]), &mut fx);
        c.commit_applied(
            "g",
            "t",
            0,
            OffsetValue {
                offset: 1,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp_ms: 0,
            },
        );
        c.commit_applied(
            "g",
            "u",
            0,
            OffsetValue {
                offset: 1,
                leader_epoch: -1,
                metadata: String::new(),
                commit_timestamp_ms: 0,
            },
        );
        let (_, codes, records) = c
            .delete_offsets("g", &[("t".into(), 0), ("u".into(), 0)])
            .unwrap();
        assert_eq!(
            codes,
            vec![ErrorCode::GroupSubscribedToTopic, ErrorCode::None]
        );
        assert_eq!(records.len(), 1);
        assert_eq!(
            parse_subscription_topics(&meta),
            Some(vec!["t".to_string()])
        );
        assert_eq!(
            c.delete_offsets("missing", &[]),
            Err(ErrorCode::GroupIdNotFound)
        );
    }
}
