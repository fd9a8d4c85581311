//! Replica assignment of new partitions, Kafka's rack-unaware
//! `AdminUtils.assignReplicasToBrokers`: the first replicas (preferred leaders) go
//! round-robin over the brokers from a random start, and each further replica follows
//! at a shift that grows every time the partitions wrap around the broker list, so
//! leaders and followers both spread evenly.
//!
//! Pure functions; used on the control thread.

/// Replicas of partitions `first_partition..first_partition + partitions`, by index.
///
/// `brokers` must be sorted and non-empty, `replication_factor` in `1..=brokers.len()`.
/// `start_index` and `replica_shift` are Kafka's random `startIndex` and
/// `nextReplicaShift` (taken modulo the broker count).
pub fn assign_replicas(
    brokers: &[i32],
    partitions: i32,
    replication_factor: usize,
    first_partition: i32,
    start_index: usize,
    replica_shift: usize,
) -> Vec<Vec<i32>> {
    let n = brokers.len();
    assert!(n >= 1, "at least one broker");
    assert!(
        (1..=n).contains(&replication_factor),
        "replication factor {replication_factor} with {n} brokers"
    );
    assert!(brokers.windows(2).all(|w| w[0] < w[1]), "brokers sorted");
    let start_index = start_index % n;
    let mut shift = replica_shift % n;
    let first_partition = first_partition.max(0) as usize;
    let mut assignment = Vec::with_capacity(partitions.max(0) as usize);
    for partition in first_partition..first_partition + partitions.max(0) as usize {
        if partition > 0 && partition % n == 0 {
            shift += 1;
        }
        let first = (partition + start_index) % n;
        let mut replicas = Vec::with_capacity(replication_factor);
        replicas.push(brokers[first]);
        for j in 0..replication_factor - 1 {
            // Kafka's replicaIndex: never lands on the first replica again.
            let offset = 1 + (shift + j) % (n - 1);
            replicas.push(brokers[(first + offset) % n]);
        }
        assignment.push(replicas);
    }
    assignment
}

/// A random index in `0..n` (Kafka's `rand.nextInt(n)`).
pub fn random_index(n: usize) -> usize {
    assert!(n >= 1);
    (uuid::Uuid::new_v4().as_u128() % n as u128) as usize
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn matches_kafkas_fixed_start_example() {
        // Kafka's AdminUtils doc example: 5 brokers, 10 partitions, RF 3, start 0.
        let assignment = assign_replicas(&[0, 1, 2, 3, 4], 10, 3, 0, 0, 0);
        let expected = [
            [0, 1, 2],
            [1, 2, 3],
            [2, 3, 4],
            [3, 4, 0],
            [4, 0, 1],
            [0, 2, 3],
            [1, 3, 4],
            [2, 4, 0],
            [3, 0, 1],
            [4, 1, 2],
        ];
        assert_eq!(assignment, expected.map(|r| r.to_vec()).to_vec());
    }

    #[test]
    fn replicas_distinct_and_leaders_spread() {
        let brokers = [1, 2, 3];
        for start in 0..3 {
            for shift in 0..3 {
                let assignment = assign_replicas(&brokers, 4, 3, 0, start, shift);
                assert_eq!(assignment.len(), 4);
                let mut leaders = BTreeMap::new();
                for replicas in &assignment {
                    let mut sorted = replicas.clone();
                    sorted.sort();
                    assert_eq!(sorted, vec![1, 2, 3], "{assignment:?}");
                    *leaders.entry(replicas[0]).or_insert(0) += 1;
                }
                // 4 partitions over 3 brokers: every broker leads one or two.
                assert_eq!(leaders.len(), 3, "{assignment:?}");
            }
        }
    }

    #[test]
    fn continues_from_existing_partitions() {
        let all = assign_replicas(&[0, 1, 2, 3], 8, 2, 0, 1, 2);
        let tail = assign_replicas(&[0, 1, 2, 3], 3, 2, 5, 1, 2);
        // Kafka recomputes the shift from the partition id, so a continuation equals
        // the tail of a full assignment with the same start when the shift is reapplied.
        assert_eq!(tail[0][0], all[5][0]);
        assert_eq!(tail.len(), 3);
        let single = assign_replicas(&[5], 3, 1, 0, 7, 7);
        assert_eq!(single, vec![vec![5]; 3]);
    }

    #[test]
    fn random_index_in_range() {
        for n in 1..10 {
            assert!(random_index(n) < n);
        }
    }
}
