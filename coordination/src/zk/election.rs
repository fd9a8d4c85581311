//! The controller's leader and ISR decisions, as pure functions of a partition's state
//! and the set of live brokers (Kafka's `PartitionStateMachine` elections).
//!
//! The controller is level-triggered: after every change it sees it asks
//! [`reconcile`] about every partition, so a broker death, a broker's return and a
//! failover to a new controller are all the same computation over the current state.

use std::collections::BTreeSet;

use crate::metadata::PartitionState;

/// Leader, leader epoch and ISR to write to a partition's state znode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderAndIsr {
    pub leader: i32,
    pub leader_epoch: i32,
    pub isr: Vec<i32>,
}

/// The state of a new partition: the first live replica in assignment order leads,
/// every live replica is in sync. `None` while no replica is live.
pub fn initial_state(replicas: &[i32], live: &BTreeSet<i32>) -> Option<LeaderAndIsr> {
    let isr: Vec<i32> = replicas
        .iter()
        .copied()
        .filter(|r| live.contains(r))
        .collect();
    let leader = *isr.first()?;
    Some(LeaderAndIsr {
        leader,
        leader_epoch: 0,
        isr,
    })
}

/// What a partition's state must become with `live` brokers, or `None` if it is fine.
///
/// - Live leader: dead brokers leave the ISR (leader epoch unchanged).
/// - Dead or no leader: the first replica in assignment order that is in the ISR and
///   live leads, the ISR keeps its live members, leader epoch + 1. With none such, and
///   `unclean` allowed, the first live replica leads alone; otherwise the partition is
///   offline (leader -1) and the ISR is kept as it was, so the last in-sync replicas
///   are the ones that may lead when they return (Kafka's behaviour).
pub fn reconcile(
    state: &PartitionState,
    live: &BTreeSet<i32>,
    unclean: bool,
) -> Option<LeaderAndIsr> {
    let live_isr: Vec<i32> = state
        .isr
        .iter()
        .copied()
        .filter(|r| live.contains(r))
        .collect();
    if state.leader >= 0 && live.contains(&state.leader) {
        if live_isr.len() == state.isr.len() || !live_isr.contains(&state.leader) {
            return None;
        }
        return Some(LeaderAndIsr {
            leader: state.leader,
            leader_epoch: state.leader_epoch,
            isr: live_isr,
        });
    }
    let clean = state
        .replicas
        .iter()
        .copied()
        .find(|r| live_isr.contains(r));
    if let Some(leader) = clean {
        return Some(LeaderAndIsr {
            leader,
            leader_epoch: state.leader_epoch + 1,
            isr: live_isr,
        });
    }
    if unclean {
        if let Some(leader) = state.replicas.iter().copied().find(|r| live.contains(r)) {
            return Some(LeaderAndIsr {
                leader,
                leader_epoch: state.leader_epoch + 1,
                isr: vec![leader],
            });
        }
    }
    if state.leader == -1 {
        return None;
    }
    Some(LeaderAndIsr {
        leader: -1,
        leader_epoch: state.leader_epoch + 1,
        isr: state.isr.clone(),
    })
}

/// Moves leadership back to the preferred replica (the first assigned) when it is live
/// and in sync but does not lead; `None` otherwise.
pub fn preferred_leader(state: &PartitionState, live: &BTreeSet<i32>) -> Option<LeaderAndIsr> {
    let preferred = *state.replicas.first()?;
    if state.leader == preferred || !live.contains(&preferred) || !state.isr.contains(&preferred) {
        return None;
    }
    Some(LeaderAndIsr {
        leader: preferred,
        leader_epoch: state.leader_epoch + 1,
        isr: state.isr.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(replicas: &[i32], leader: i32, epoch: i32, isr: &[i32]) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            leader,
            leader_epoch: epoch,
            isr: isr.to_vec(),
            partition_epoch: 3,
        }
    }

    fn live(ids: &[i32]) -> BTreeSet<i32> {
        ids.iter().copied().collect()
    }

    fn lai(leader: i32, leader_epoch: i32, isr: &[i32]) -> Option<LeaderAndIsr> {
        Some(LeaderAndIsr {
            leader,
            leader_epoch,
            isr: isr.to_vec(),
        })
    }

    #[test]
    fn initial() {
        assert_eq!(
            initial_state(&[2, 1, 3], &live(&[1, 2, 3])),
            lai(2, 0, &[2, 1, 3])
        );
        assert_eq!(
            initial_state(&[2, 1, 3], &live(&[1, 3])),
            lai(1, 0, &[1, 3])
        );
        assert_eq!(initial_state(&[2], &live(&[1])), None);
    }

    #[test]
    fn healthy_partition_is_left_alone() {
        let s = state(&[1, 2, 3], 1, 4, &[1, 2, 3]);
        assert_eq!(reconcile(&s, &live(&[1, 2, 3]), false), None);
        // A replica outside the ISR dying changes nothing.
        let s = state(&[1, 2, 3], 1, 4, &[1, 2]);
        assert_eq!(reconcile(&s, &live(&[1, 2]), false), None);
    }

    #[test]
    fn dead_follower_leaves_the_isr() {
        let s = state(&[1, 2, 3], 1, 4, &[1, 2, 3]);
        assert_eq!(reconcile(&s, &live(&[1, 3]), false), lai(1, 4, &[1, 3]));
    }

    #[test]
    fn dead_leader_is_replaced_from_the_isr_in_assignment_order() {
        let s = state(&[1, 2, 3], 1, 4, &[3, 1, 2]);
        assert_eq!(reconcile(&s, &live(&[2, 3]), false), lai(2, 5, &[3, 2]));
        // Replica 2 is live but out of sync: 3 leads.
        let s = state(&[1, 2, 3], 1, 4, &[1, 3]);
        assert_eq!(reconcile(&s, &live(&[2, 3]), false), lai(3, 5, &[3]));
    }

    #[test]
    fn no_live_isr_goes_offline_unless_unclean() {
        let s = state(&[1, 2, 3], 1, 4, &[1]);
        assert_eq!(reconcile(&s, &live(&[2, 3]), false), lai(-1, 5, &[1]));
        assert_eq!(reconcile(&s, &live(&[2, 3]), true), lai(2, 5, &[2]));
        // Offline stays offline (no epoch churn) until an ISR member returns.
        let offline = state(&[1, 2, 3], -1, 5, &[1]);
        assert_eq!(reconcile(&offline, &live(&[2, 3]), false), None);
        assert_eq!(
            reconcile(&offline, &live(&[1, 2, 3]), false),
            lai(1, 6, &[1])
        );
        // No live replica at all: nothing to elect even when unclean.
        assert_eq!(reconcile(&offline, &live(&[7]), true), None);
    }

    #[test]
    fn preferred() {
        let s = state(&[1, 2, 3], 2, 5, &[2, 3, 1]);
        assert_eq!(
            preferred_leader(&s, &live(&[1, 2, 3])),
            lai(1, 6, &[2, 3, 1])
        );
        assert_eq!(
            preferred_leader(&s, &live(&[2, 3])),
            None,
            "preferred is dead"
        );
        let out_of_sync = state(&[1, 2, 3], 2, 5, &[2, 3]);
        assert_eq!(preferred_leader(&out_of_sync, &live(&[1, 2, 3])), None);
        let leading = state(&[1, 2, 3], 1, 5, &[1, 2, 3]);
        assert_eq!(preferred_leader(&leading, &live(&[1, 2, 3])), None);
    }
}
