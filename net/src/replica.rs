//! Replica roles and the leader side of replication.
//!
//! A shard hosts a [`Replica`] for every partition it owns whose assignment
//! (`PartitionState.replicas`) contains this broker. Each replica is either the
//! partition's leader or a follower, decided from the latest snapshot in
//! `Shard::apply_snapshot`. Followers are fed by the shard's `Fetchers`
//! (`crate::fetcher`); this module is the leader's half:
//!
//! - [`LeaderState`] tracks every follower's progress ([`FollowerProgress`]: its log end
//!   offset, learnt from the offsets it fetches at, and Kafka's *last caught up time*),
//!   computes the high watermark as the minimum log end offset over the ISR, and decides
//!   ISR expansion (a follower caught up to the high watermark) and shrink (a follower
//!   not caught up for `replica.lag.time.max.ms`). It is plain data driven with an
//!   explicit clock, so its rules are unit-tested below without sockets.
//! - The functions at the bottom apply those decisions on the shard: advancing the log's
//!   high watermark, waking parked fetches and acks=all produces, and sending one
//!   `AlterIsr` per partition at a time to the control plane.
//!
//! ISR changes go through the control plane and come back as a new snapshot; until the
//! answer arrives the leader counts the *maximal* ISR (committed ISR plus the proposed
//! additions, without the proposed removals) for its high watermark, as Kafka does, so
//! the high watermark never covers a record that a member of either ISR lacks.
//!
//! Everything here lives on the partition's owning shard only; no `RefCell` borrow is
//! held across an `.await`.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use futures_lite::future;

use sluice_coordination::PartitionState;
use sluice_core::ids::TopicPartition;
use sluice_core::ErrorCode;
use sluice_log::PartitionLog;
use sluice_rt::exec::spawn_detached;
use sluice_rt::time::{sleep, timeout};

use crate::shard::Shard;

/// Pause before proposing an ISR change again after the control plane failed to answer
/// one (for a stale epoch the leader waits for the next snapshot instead).
pub const ALTER_ISR_RETRY_BACKOFF_MS: i64 = 1_000;
/// Shortest period of the ISR shrink check, whatever `replica.lag.time.max.ms` says.
const MIN_SHRINK_CHECK_INTERVAL: Duration = Duration::from_millis(50);

/// Milliseconds on a monotonic clock shared by the process; the replication timers
/// (last caught up, lag) run on it so that wall-clock steps cannot shrink an ISR.
pub fn clock_ms() -> i64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_millis() as i64
}

/// What this broker is for one partition.
#[derive(Debug)]
pub enum Role {
    Leader(LeaderState),
    /// Following broker `leader` (-1: the partition has no leader now) in `leader_epoch`.
    Follower {
        leader: i32,
        leader_epoch: i32,
    },
}

/// A partition hosted on this shard: its log and this broker's role for it. Lives on
/// the owning shard only, shared through `Rc` with the tasks working on it.
pub struct Replica {
    pub tp: TopicPartition,
    pub log: Rc<PartitionLog>,
    role: RefCell<Role>,
}

/// A short view of a replica's role, copied out of the `RefCell`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleView {
    Leader {
        leader_epoch: i32,
        /// Size of the committed ISR (what `min.insync.replicas` is checked against).
        isr_len: usize,
    },
    Follower {
        leader: i32,
        leader_epoch: i32,
    },
}

impl RoleView {
    /// The error a client request that needs the leader gets here: LEADER_NOT_AVAILABLE
    /// while the partition has no leader, else NOT_LEADER_OR_FOLLOWER.
    pub fn not_leader_error(&self) -> ErrorCode {
        match self {
            RoleView::Follower { leader: -1, .. } => ErrorCode::LeaderNotAvailable,
            _ => ErrorCode::NotLeaderOrFollower,
        }
    }

    pub fn leader_epoch(&self) -> i32 {
        match self {
            RoleView::Leader { leader_epoch, .. } | RoleView::Follower { leader_epoch, .. } => {
                *leader_epoch
            }
        }
    }
}

impl Replica {
    pub fn new(tp: TopicPartition, log: Rc<PartitionLog>, role: Role) -> Rc<Replica> {
        Rc::new(Replica {
            tp,
            log,
            role: RefCell::new(role),
        })
    }

    pub fn role(&self) -> RoleView {
        match &*self.role.borrow() {
            Role::Leader(l) => RoleView::Leader {
                leader_epoch: l.leader_epoch,
                isr_len: l.isr.len(),
            },
            Role::Follower {
                leader,
                leader_epoch,
            } => RoleView::Follower {
                leader: *leader,
                leader_epoch: *leader_epoch,
            },
        }
    }

    /// The current leader epoch if this broker leads the partition.
    pub fn leader_epoch(&self) -> Option<i32> {
        match &*self.role.borrow() {
            Role::Leader(l) => Some(l.leader_epoch),
            Role::Follower { .. } => None,
        }
    }

    pub fn is_leader(&self) -> bool {
        matches!(&*self.role.borrow(), Role::Leader(_))
    }

    /// Runs `f` on the leader state, if this broker leads (a short borrow).
    pub fn with_leader<T>(&self, f: impl FnOnce(&mut LeaderState) -> T) -> Option<T> {
        match &mut *self.role.borrow_mut() {
            Role::Leader(l) => Some(f(l)),
            Role::Follower { .. } => None,
        }
    }

    /// Applies the partition's state from a new snapshot; returns what changed.
    /// `broker_id` is this broker, which must be one of `state.replicas`.
    pub fn apply_state(&self, broker_id: i32, state: &PartitionState, now_ms: i64) -> Transition {
        debug_assert!(state.is_replica(broker_id));
        let mut role = self.role.borrow_mut();
        let was_leader = matches!(&*role, Role::Leader(_));
        let transition = if state.is_leader(broker_id) {
            match &mut *role {
                Role::Leader(l) => {
                    l.apply_state(state, self.log.log_end_offset(), now_ms);
                    Transition::StaysLeader
                }
                Role::Follower { .. } => {
                    *role = Role::Leader(LeaderState::new(
                        broker_id,
                        state,
                        self.log.log_end_offset(),
                        now_ms,
                    ));
                    Transition::BecomesLeader
                }
            }
        } else {
            let changed = !matches!(
                &*role,
                Role::Follower { leader, leader_epoch }
                    if *leader == state.leader && *leader_epoch == state.leader_epoch
            );
            *role = Role::Follower {
                leader: state.leader,
                leader_epoch: state.leader_epoch,
            };
            match (was_leader, changed) {
                (true, _) => Transition::BecomesFollower,
                (false, true) => Transition::FollowsAnew,
                (false, false) => Transition::StaysFollower,
            }
        };
        let replicated = match &*role {
            Role::Leader(l) => l.is_replicated(),
            Role::Follower { .. } => true,
        };
        drop(role);
        self.log.set_replicated(replicated);
        transition
    }
}

/// How a replica's role moved with a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    BecomesLeader,
    StaysLeader,
    BecomesFollower,
    /// A follower whose leader or leader epoch changed (or a new follower).
    FollowsAnew,
    StaysFollower,
}

/// The leader's view of one follower. Offsets are -1 until the follower's first fetch
/// in this leadership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerProgress {
    /// The follower's log end offset: the offset it last fetched at.
    pub log_end_offset: i64,
    /// Last time the follower was known to have everything the leader had written.
    pub last_caught_up_ms: i64,
    /// Time of its last fetch, and the leader's written offset then.
    pub last_fetch_ms: i64,
    pub last_fetch_leader_end_offset: i64,
}

impl FollowerProgress {
    fn new(in_sync: bool, now_ms: i64) -> FollowerProgress {
        FollowerProgress {
            log_end_offset: -1,
            // Kafka: an ISR member gets the benefit of the doubt for one lag period;
            // others must catch up first.
            last_caught_up_ms: if in_sync { now_ms } else { 0 },
            last_fetch_ms: 0,
            last_fetch_leader_end_offset: -1,
        }
    }

    /// Records a fetch at `fetch_offset` while the leader had written up to
    /// `leader_end_offset`. Kafka's rule: a fetch at the leader's end makes the follower
    /// caught up now; a fetch at or past the leader's end at the previous fetch makes it
    /// caught up as of that previous fetch (it has everything the leader had then).
    pub fn record_fetch(&mut self, fetch_offset: i64, leader_end_offset: i64, now_ms: i64) {
        if fetch_offset >= leader_end_offset {
            self.last_caught_up_ms = self.last_caught_up_ms.max(now_ms);
        } else if fetch_offset >= self.last_fetch_leader_end_offset
            && self.last_fetch_leader_end_offset >= 0
        {
            self.last_caught_up_ms = self.last_caught_up_ms.max(self.last_fetch_ms);
        }
        self.log_end_offset = fetch_offset;
        self.last_fetch_ms = now_ms;
        self.last_fetch_leader_end_offset = leader_end_offset;
    }

    /// Kafka's `isCaughtUp`: at the leader's end, or caught up within the lag bound.
    pub fn is_caught_up(&self, leader_end_offset: i64, now_ms: i64, lag_max_ms: i64) -> bool {
        self.log_end_offset == leader_end_offset || now_ms - self.last_caught_up_ms <= lag_max_ms
    }
}

/// An ISR change to send to the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterIsr {
    /// Tells the answer apart from that of an earlier request.
    pub seq: u64,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
}

/// The control plane's answer to an [`AlterIsr`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlterOutcome {
    /// Applied; the snapshot carrying it has been applied on every shard.
    Applied,
    Refused(ErrorCode),
}

/// The leader's replication state of one partition. Plain data: every method takes the
/// time and offsets it needs.
#[derive(Debug)]
pub struct LeaderState {
    broker_id: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    /// The ISR the control plane committed (the leader included).
    isr: Vec<i32>,
    /// Log end offset when this leadership (epoch) began: a follower must reach it to
    /// join the ISR, so that it holds every record of the current epoch's leader.
    epoch_start_offset: i64,
    followers: BTreeMap<i32, FollowerProgress>,
    pending: Option<AlterIsr>,
    next_seq: u64,
    /// A proposal failed with a stale epoch: no new one before the next snapshot.
    awaiting_snapshot: bool,
    /// A proposal failed otherwise: no new one before this time.
    retry_after_ms: i64,
}

impl LeaderState {
    pub fn new(
        broker_id: i32,
        state: &PartitionState,
        log_end_offset: i64,
        now_ms: i64,
    ) -> LeaderState {
        assert!(
            state.is_leader(broker_id),
            "broker {broker_id} does not lead"
        );
        let followers = state
            .replicas
            .iter()
            .filter(|&&r| r != broker_id)
            .map(|&r| (r, FollowerProgress::new(state.isr.contains(&r), now_ms)))
            .collect();
        LeaderState {
            broker_id,
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            isr: state.isr.clone(),
            epoch_start_offset: log_end_offset,
            followers,
            pending: None,
            next_seq: 0,
            awaiting_snapshot: false,
            retry_after_ms: 0,
        }
    }

    /// A new snapshot in which this broker still leads. A new leader epoch starts a new
    /// leadership (pending proposal dropped, epoch start moved) but keeps what is known
    /// of the followers; the ISR and partition epoch are taken as committed.
    pub fn apply_state(&mut self, state: &PartitionState, log_end_offset: i64, now_ms: i64) {
        assert!(state.is_leader(self.broker_id));
        if state.leader_epoch != self.leader_epoch {
            self.leader_epoch = state.leader_epoch;
            self.epoch_start_offset = log_end_offset;
            self.pending = None;
        }
        self.partition_epoch = state.partition_epoch;
        self.isr = state.isr.clone();
        self.awaiting_snapshot = false;
        let broker_id = self.broker_id;
        self.followers.retain(|id, _| state.replicas.contains(id));
        for &r in state.replicas.iter().filter(|&&r| r != broker_id) {
            self.followers
                .entry(r)
                .or_insert_with(|| FollowerProgress::new(state.isr.contains(&r), now_ms));
        }
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    pub fn partition_epoch(&self) -> i32 {
        self.partition_epoch
    }

    pub fn isr(&self) -> &[i32] {
        &self.isr
    }

    pub fn epoch_start_offset(&self) -> i64 {
        self.epoch_start_offset
    }

    pub fn follower(&self, id: i32) -> Option<&FollowerProgress> {
        self.followers.get(&id)
    }

    pub fn pending(&self) -> Option<&AlterIsr> {
        self.pending.as_ref()
    }

    /// Is `id` in the committed ISR or in a proposed one?
    fn in_maximal_isr(&self, id: i32) -> bool {
        self.isr.contains(&id) || self.pending.as_ref().is_some_and(|p| p.isr.contains(&id))
    }

    /// Whether the high watermark waits for followers: some other broker is in the
    /// maximal ISR. When false the log's high watermark follows its own writes.
    pub fn is_replicated(&self) -> bool {
        self.followers.keys().any(|&f| self.in_maximal_isr(f))
    }

    /// The high watermark the ISR allows: the minimum log end offset over the maximal
    /// ISR, the leader's being `leader_written`. A follower whose offset is not known
    /// yet holds it at -1 (no advance).
    pub fn high_watermark(&self, leader_written: i64) -> i64 {
        self.followers
            .iter()
            .filter(|(&id, _)| self.in_maximal_isr(id))
            .map(|(_, p)| p.log_end_offset)
            .fold(leader_written, i64::min)
    }

    /// Records a fetch of follower `follower` at `fetch_offset`. False if it is not a
    /// replica of the partition.
    pub fn record_fetch(
        &mut self,
        follower: i32,
        fetch_offset: i64,
        leader_end_offset: i64,
        now_ms: i64,
    ) -> bool {
        match self.followers.get_mut(&follower) {
            Some(progress) => {
                progress.record_fetch(fetch_offset, leader_end_offset, now_ms);
                true
            }
            None => false,
        }
    }

    fn may_propose(&self, now_ms: i64) -> bool {
        self.pending.is_none() && !self.awaiting_snapshot && now_ms >= self.retry_after_ms
    }

    /// The ISR to propose if followers outside it have caught up: their log end offset
    /// is at least the high watermark `high_watermark` and the start of this epoch.
    pub fn expansion(&self, high_watermark: i64, now_ms: i64) -> Option<Vec<i32>> {
        if !self.may_propose(now_ms) {
            return None;
        }
        let joining: Vec<i32> = self
            .followers
            .iter()
            .filter(|(id, p)| {
                !self.isr.contains(id)
                    && p.log_end_offset >= 0
                    && p.log_end_offset >= high_watermark
                    && p.log_end_offset >= self.epoch_start_offset
            })
            .map(|(&id, _)| id)
            .collect();
        (!joining.is_empty()).then(|| {
            let mut isr = self.isr.clone();
            isr.extend(joining);
            isr
        })
    }

    /// The ISR to propose if members have not been caught up for `lag_max_ms` while
    /// the leader has written up to `leader_end_offset`. The leader always stays.
    pub fn shrink(&self, leader_end_offset: i64, now_ms: i64, lag_max_ms: i64) -> Option<Vec<i32>> {
        if !self.may_propose(now_ms) {
            return None;
        }
        let isr: Vec<i32> = self
            .isr
            .iter()
            .copied()
            .filter(|&id| {
                id == self.broker_id
                    || self
                        .followers
                        .get(&id)
                        .is_some_and(|p| p.is_caught_up(leader_end_offset, now_ms, lag_max_ms))
            })
            .collect();
        (isr.len() < self.isr.len()).then_some(isr)
    }

    /// Marks `isr` as proposed; the request to send.
    pub fn begin_alter(&mut self, isr: Vec<i32>) -> AlterIsr {
        assert!(self.pending.is_none(), "one ISR change in flight at a time");
        assert!(isr.contains(&self.broker_id), "the leader stays in its ISR");
        self.next_seq += 1;
        let request = AlterIsr {
            seq: self.next_seq,
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
            isr,
        };
        self.pending = Some(request.clone());
        request
    }

    /// The answer to `request`. Ignored unless it is the one in flight.
    pub fn end_alter(&mut self, request: &AlterIsr, outcome: AlterOutcome, now_ms: i64) {
        if self.pending.as_ref() != Some(request) {
            return;
        }
        self.pending = None;
        match outcome {
            AlterOutcome::Applied => {}
            AlterOutcome::Refused(
                ErrorCode::FencedLeaderEpoch | ErrorCode::InvalidUpdateVersion,
            ) if request.leader_epoch == self.leader_epoch
                && request.partition_epoch == self.partition_epoch =>
            {
                // Our state is older than the control plane's: the snapshot with the
                // newer one is on its way.
                self.awaiting_snapshot = true;
            }
            AlterOutcome::Refused(_) => {
                self.retry_after_ms = now_ms + ALTER_ISR_RETRY_BACKOFF_MS;
            }
        }
    }
}

/// Checks a request's `current_leader_epoch` against the leader's (-1 skips the check):
/// older is FENCED_LEADER_EPOCH, newer (this broker has not seen it yet) is
/// UNKNOWN_LEADER_EPOCH.
pub fn check_leader_epoch(requested: i32, current: i32) -> Result<(), ErrorCode> {
    match requested {
        -1 => Ok(()),
        e if e < current => Err(ErrorCode::FencedLeaderEpoch),
        e if e > current => Err(ErrorCode::UnknownLeaderEpoch),
        _ => Ok(()),
    }
}

/// Raises the log's high watermark to what the ISR allows; wakes parked fetches and
/// acks=all produces when it moved. Call after anything that may raise it (a follower
/// fetch, an ISR change).
pub fn update_high_watermark(shard: &Shard, replica: &Replica) {
    let Some(target) = replica.with_leader(|l| l.high_watermark(replica.log.written_offset()))
    else {
        return;
    };
    let before = replica.log.high_watermark();
    if replica.log.advance_high_watermark(target) > before {
        shard.appended().notify(usize::MAX);
    }
}

/// A follower fetched `replica` at `fetch_offset` while the leader had written up to
/// `leader_end_offset`: records its progress, advances the high watermark, and proposes
/// the follower for the ISR when it has caught up. False if `follower` is not a replica
/// of the partition (or this broker no longer leads it).
pub fn follower_fetched(
    shard: &Rc<Shard>,
    replica: &Rc<Replica>,
    follower: i32,
    fetch_offset: i64,
    leader_end_offset: i64,
) -> bool {
    let now = clock_ms();
    let known = replica
        .with_leader(|l| l.record_fetch(follower, fetch_offset, leader_end_offset, now))
        .unwrap_or(false);
    if !known {
        return false;
    }
    update_high_watermark(shard, replica);
    let high_watermark = replica.log.high_watermark();
    let proposal = replica
        .with_leader(|l| {
            l.expansion(high_watermark, now)
                .map(|isr| l.begin_alter(isr))
        })
        .flatten();
    if let Some(request) = proposal {
        tracing::info!(partition = %replica.tp, isr = ?request.isr, "expanding ISR");
        send_alter_isr(shard.clone(), replica.clone(), request);
    }
    true
}

/// Sends `request` to the control plane and records the answer. The answer comes only
/// after every shard applied the resulting snapshot, so this runs as its own task and
/// is never awaited inside `apply_snapshot`.
fn send_alter_isr(shard: Rc<Shard>, replica: Rc<Replica>, request: AlterIsr) {
    spawn_detached(async move {
        let answer = shard
            .control
            .alter_isr(
                replica.tp.topic.clone(),
                replica.tp.partition,
                request.leader_epoch,
                request.partition_epoch,
                request.isr.clone(),
            )
            .await;
        let outcome = match answer {
            Ok(Ok(_)) => AlterOutcome::Applied,
            Ok(Err(e)) => {
                tracing::info!(partition = %replica.tp, error = %e, "ISR change refused");
                AlterOutcome::Refused(e.code)
            }
            Err(e) => {
                tracing::warn!(partition = %replica.tp, error = %e, "ISR change not answered");
                AlterOutcome::Refused(ErrorCode::UnknownServerError)
            }
        };
        replica.with_leader(|l| l.end_alter(&request, outcome, clock_ms()));
        let replicated = replica.with_leader(|l| l.is_replicated());
        if let Some(replicated) = replicated {
            replica.log.set_replicated(replicated);
        }
        update_high_watermark(&shard, &replica);
    });
}

/// How an acks=all wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replication {
    /// The high watermark covers the records; the committed ISR has `isr_len` members.
    Covered {
        isr_len: usize,
    },
    /// This broker stopped leading the partition (or hosting it) meanwhile.
    NotLeader,
    TimedOut,
}

/// acks=all: waits on the owning shard until `replica`'s high watermark passes
/// `last_offset` while this broker leads it, or until `deadline`.
pub async fn await_high_watermark(
    shard: &Shard,
    replica: &Rc<Replica>,
    last_offset: i64,
    deadline: Instant,
) -> Replication {
    loop {
        // Listen first, then check: a wake-up between the two is not lost.
        let advanced = replica.log.notify().listen();
        let changed = shard.appended().listen();
        let still_hosted = shard
            .replica(&replica.tp)
            .is_some_and(|r| Rc::ptr_eq(&r, replica));
        match replica.role() {
            RoleView::Leader { isr_len, .. } if still_hosted => {
                if replica.log.high_watermark() > last_offset {
                    return Replication::Covered { isr_len };
                }
            }
            _ => return Replication::NotLeader,
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero()
            || timeout(remaining, future::or(advanced, changed))
                .await
                .is_none()
        {
            return Replication::TimedOut;
        }
    }
}

/// The shard's ISR shrink task: every `replica.lag.time.max.ms / 2`, each partition this
/// shard leads drops the followers that have not caught up for longer than
/// `replica.lag.time.max.ms`. Stops at shutdown.
pub async fn run_isr_shrink(shard: Rc<Shard>) {
    let lag_max_ms = shard.config.replica_lag_time_max_ms as i64;
    let interval = Duration::from_millis(shard.config.replica_lag_time_max_ms / 2)
        .max(MIN_SHRINK_CHECK_INTERVAL);
    while !shard.is_shutting_down() {
        sleep(interval).await;
        let now = clock_ms();
        for replica in shard.replicas() {
            let written = replica.log.written_offset();
            let proposal = replica
                .with_leader(|l| {
                    l.shrink(written, now, lag_max_ms)
                        .map(|isr| l.begin_alter(isr))
                })
                .flatten();
            if let Some(request) = proposal {
                tracing::info!(partition = %replica.tp, isr = ?request.isr, "shrinking ISR");
                send_alter_isr(shard.clone(), replica, request);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: i32 = 1;

    fn state(
        replicas: &[i32],
        isr: &[i32],
        leader_epoch: i32,
        partition_epoch: i32,
    ) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            leader: ME,
            leader_epoch,
            isr: isr.to_vec(),
            partition_epoch,
        }
    }

    #[test]
    fn single_replica_is_not_replicated_and_its_high_watermark_is_its_writes() {
        let leader = LeaderState::new(ME, &PartitionState::single(ME), 0, 0);
        assert!(!leader.is_replicated());
        assert_eq!(leader.high_watermark(42), 42);
        assert_eq!(leader.expansion(42, 0), None);
        assert_eq!(leader.shrink(42, 1_000_000, 10), None);
    }

    #[test]
    fn high_watermark_is_the_minimum_over_the_isr_only() {
        let mut leader = LeaderState::new(ME, &state(&[1, 2, 3], &[1, 2], 0, 0), 0, 0);
        assert!(leader.is_replicated());
        // Follower 2 has not fetched yet: nothing is committed.
        assert_eq!(leader.high_watermark(10), -1);
        assert!(leader.record_fetch(2, 7, 10, 1));
        assert_eq!(leader.high_watermark(10), 7);
        // 3 is not in the ISR: its lag does not hold the high watermark.
        assert!(leader.record_fetch(3, 1, 10, 1));
        assert_eq!(leader.high_watermark(10), 7);
        // The leader's own writes bound it too.
        assert_eq!(leader.high_watermark(5), 5);
        // Not a replica.
        assert!(!leader.record_fetch(9, 10, 10, 1));
    }

    #[test]
    fn proposed_isr_counts_for_the_high_watermark_until_answered() {
        let mut leader = LeaderState::new(ME, &state(&[1, 2, 3], &[1, 2, 3], 0, 0), 0, 0);
        leader.record_fetch(2, 10, 10, 1);
        leader.record_fetch(3, 4, 10, 1);
        assert_eq!(leader.high_watermark(10), 4);
        // Removing 3 is proposed: until committed, 3 still holds the high watermark.
        let request = leader.begin_alter(vec![1, 2]);
        assert_eq!(leader.high_watermark(10), 4);
        leader.end_alter(&request, AlterOutcome::Applied, 2);
        leader.apply_state(&state(&[1, 2, 3], &[1, 2], 0, 1), 10, 2);
        assert_eq!(leader.high_watermark(10), 10);
        // Adding 3 back: it counts at once.
        leader.record_fetch(3, 10, 10, 3);
        leader.begin_alter(vec![1, 2, 3]);
        leader.record_fetch(3, 8, 12, 3);
        assert_eq!(leader.high_watermark(12), 8);
    }

    #[test]
    fn last_caught_up_follows_kafkas_rule() {
        let mut p = FollowerProgress::new(false, 0);
        // Behind the leader's end on the first fetch: not caught up.
        p.record_fetch(5, 10, 100);
        assert_eq!(p.last_caught_up_ms, 0);
        // At the leader's end: caught up now.
        p.record_fetch(10, 10, 200);
        assert_eq!(p.last_caught_up_ms, 200);
        // Behind the new end (the leader wrote meanwhile) but at the end seen at the
        // previous fetch: caught up as of that fetch.
        p.record_fetch(10, 15, 300);
        assert_eq!(p.last_caught_up_ms, 200);
        p.record_fetch(15, 20, 400);
        assert_eq!(p.last_caught_up_ms, 300);
        // Falling behind what the leader had at the previous fetch: no credit.
        p.record_fetch(16, 30, 500);
        assert_eq!(p.last_caught_up_ms, 300);
        assert_eq!(p.log_end_offset, 16);
        // Never moves back.
        p.record_fetch(30, 30, 450);
        assert_eq!(p.last_caught_up_ms, 450);
        p.record_fetch(30, 30, 460);
        assert_eq!(p.last_caught_up_ms, 460);
    }

    #[test]
    fn caught_up_at_the_leaders_end_even_when_idle() {
        let mut p = FollowerProgress::new(true, 0);
        p.record_fetch(10, 10, 0);
        assert!(p.is_caught_up(10, 1_000_000, 30_000));
        assert!(!p.is_caught_up(11, 1_000_000, 30_000));
        assert!(p.is_caught_up(11, 30_000, 30_000));
    }

    #[test]
    fn expansion_needs_the_high_watermark_and_the_epoch_start() {
        // Leader of epoch 3 since offset 20.
        let mut leader = LeaderState::new(ME, &state(&[1, 2, 3], &[1], 3, 5), 20, 0);
        leader.record_fetch(2, 15, 25, 1);
        // High watermark 15 reached, but not the epoch start.
        assert_eq!(leader.expansion(15, 1), None);
        leader.record_fetch(2, 22, 25, 2);
        assert_eq!(leader.expansion(25, 2), None, "below the high watermark");
        assert_eq!(leader.expansion(22, 2), Some(vec![1, 2]));
        leader.record_fetch(3, 25, 25, 2);
        assert_eq!(leader.expansion(22, 2), Some(vec![1, 2, 3]));
        // One proposal in flight at a time.
        let request = leader.begin_alter(vec![1, 2, 3]);
        assert_eq!(
            request,
            AlterIsr {
                seq: 1,
                leader_epoch: 3,
                partition_epoch: 5,
                isr: vec![1, 2, 3]
            }
        );
        assert_eq!(leader.expansion(22, 2), None);
        assert_eq!(leader.shrink(25, 1_000_000, 10), None);
    }

    #[test]
    fn shrink_drops_members_not_caught_up_for_the_lag_bound() {
        let lag = 30_000;
        let mut leader = LeaderState::new(ME, &state(&[1, 2, 3], &[1, 2, 3], 0, 0), 0, 1_000);
        // ISR members start caught up as of the leadership's start.
        assert_eq!(leader.shrink(10, 1_000 + lag, lag), None);
        leader.record_fetch(2, 10, 10, 20_000);
        assert_eq!(leader.shrink(10, 1_001 + lag, lag), Some(vec![1, 2]));
        // Follower 3 at the leader's end counts as caught up however long ago.
        leader.record_fetch(3, 10, 10, 2_000);
        assert_eq!(leader.shrink(10, 1_000_000, lag), None);
        // Once the leader writes more, both lag.
        assert_eq!(leader.shrink(11, 1_000_000, lag), Some(vec![1]));
    }

    #[test]
    fn refused_proposals_wait_for_a_snapshot_or_back_off() {
        let mut leader = LeaderState::new(ME, &state(&[1, 2], &[1], 0, 0), 0, 0);
        leader.record_fetch(2, 0, 0, 1);
        let request = leader.begin_alter(leader.expansion(0, 1).unwrap());
        // A stale answer is ignored.
        let mut stale = request.clone();
        stale.seq = 0;
        leader.end_alter(&stale, AlterOutcome::Applied, 2);
        assert!(leader.pending().is_some());
        leader.end_alter(
            &request,
            AlterOutcome::Refused(ErrorCode::InvalidUpdateVersion),
            2,
        );
        assert_eq!(leader.expansion(0, 1_000_000), None, "waits for a snapshot");
        leader.apply_state(&state(&[1, 2], &[1], 0, 1), 0, 3);
        let request = leader.begin_alter(leader.expansion(0, 3).unwrap());
        assert_eq!(request.partition_epoch, 1);
        leader.end_alter(
            &request,
            AlterOutcome::Refused(ErrorCode::UnknownServerError),
            3,
        );
        assert_eq!(
            leader.expansion(0, 3 + ALTER_ISR_RETRY_BACKOFF_MS - 1),
            None
        );
        assert_eq!(
            leader.expansion(0, 3 + ALTER_ISR_RETRY_BACKOFF_MS),
            Some(vec![1, 2])
        );
    }

    #[test]
    fn new_epoch_drops_the_proposal_and_moves_the_epoch_start() {
        let mut leader = LeaderState::new(ME, &state(&[1, 2], &[1], 0, 0), 0, 0);
        leader.record_fetch(2, 5, 5, 1);
        let request = leader.begin_alter(vec![1, 2]);
        leader.apply_state(&state(&[1, 2], &[1], 1, 1), 8, 2);
        assert_eq!(leader.pending(), None);
        assert_eq!(leader.epoch_start_offset(), 8);
        assert_eq!(leader.follower(2).map(|p| p.log_end_offset), Some(5));
        // The old answer does not touch the new leadership.
        leader.end_alter(&request, AlterOutcome::Applied, 3);
        assert_eq!(leader.expansion(5, 3), None, "5 is below the epoch start");
        // Replicas removed from the assignment are forgotten, added ones tracked.
        leader.apply_state(&state(&[1, 3], &[1], 1, 2), 8, 4);
        assert_eq!(leader.follower(2), None);
        assert!(leader.follower(3).is_some());
    }

    #[test]
    fn leader_epoch_check() {
        assert_eq!(check_leader_epoch(-1, 5), Ok(()));
        assert_eq!(check_leader_epoch(5, 5), Ok(()));
        assert_eq!(check_leader_epoch(4, 5), Err(ErrorCode::FencedLeaderEpoch));
        assert_eq!(check_leader_epoch(6, 5), Err(ErrorCode::UnknownLeaderEpoch));
    }
}
