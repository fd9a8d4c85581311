//! Cluster mode (issue #6) against a real ZooKeeper and three `sluice` brokers on
//! 127.0.0.1: replicated topics, acks=all across a leader's SIGKILL, ISR shrink and
//! expansion, min.insync.replicas, truncation of a divergent follower tail, controller
//! failover and consumer-group offsets surviving their coordinator.
//!
//! Each test starts its own ZooKeeper and brokers (`tests/common/cluster.rs`) and waits
//! for cluster changes by polling Metadata with a deadline. scripts/nextest.toml runs
//! these tests one at a time: each starts a JVM and three brokers.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use common::cluster::{
    code, describe, fully_replicated, partition, sorted, value_of, value_record, Cluster,
    ClusterClient, ZooKeeper, CHANGE_TIMEOUT, FAILOVER_TIMEOUT,
};
use sluice_client::{ClusterMetadata, GroupMember, MemberConfig, Offsets};

/// How long a producer keeps retrying one record (across a failover) before failing.
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(60);
/// acks values on the wire.
const ACKS_ALL: i16 = -1;
const ACKS_LEADER: i16 = 1;

/// Produces one record holding `value` to `topic`-`p` with acks=all, retrying across
/// failovers as a producer with retries does; returns its offset.
fn produce_value(client: &mut ClusterClient, topic: &str, p: i32, value: &str) -> Result<i64> {
    client.produce(topic, p, &[value_record(value)], ACKS_ALL, PRODUCE_TIMEOUT)
}

/// Creates `topic` with `partitions` partitions of `replicas` replicas and `configs`,
/// and waits until every live broker shows all of them fully replicated; returns each
/// broker's Metadata answer.
fn create_replicated(
    cluster: &Cluster,
    client: &mut ClusterClient,
    topic: &str,
    partitions: i32,
    replicas: i16,
    configs: &[(&str, &str)],
) -> Result<BTreeMap<i32, ClusterMetadata>> {
    client.create_topic_ok(topic, partitions, replicas, configs)?;
    cluster.wait_for_all(
        &format!("{topic} with {partitions} fully replicated partitions"),
        CHANGE_TIMEOUT,
        |m| fully_replicated(m, topic, partitions as usize, replicas as usize),
    )
}

/// Polls `condition` until it holds; fails after `timeout`.
fn poll_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !condition() {
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// ZooKeeper and three brokers, waited on until every broker lists all three and names
/// the same controller.
fn three_brokers(extra: &[(&str, &str)]) -> Result<(ZooKeeper, Cluster)> {
    let zk = ZooKeeper::start()?;
    let cluster = Cluster::start(3, &zk, extra)?;
    let answers = cluster.wait_for_all(
        "three registered brokers and a controller",
        CHANGE_TIMEOUT,
        |m| m.brokers.len() == 3 && m.controller_id > 0,
    )?;
    let controllers: BTreeSet<i32> = answers.values().map(|m| m.controller_id).collect();
    ensure!(
        controllers.len() == 1,
        "brokers disagree on the controller: {controllers:?}"
    );
    Ok((zk, cluster))
}

/// The partition's state in `metadata`, or an error naming what is missing.
fn state(
    metadata: &ClusterMetadata,
    topic: &str,
    p: i32,
) -> Result<sluice_client::PartitionMetadata> {
    partition(metadata, topic, p)
        .cloned()
        .with_context(|| format!("{topic}-{p} missing from {}", describe(metadata)))
}

/// The harness itself: ZooKeeper answers four-letter words, brokers start against it,
/// and a killed broker restarts on its own port and directory.
#[test]
fn harness_starts_zookeeper_and_restarts_brokers_on_their_ports() -> Result<()> {
    let zk = ZooKeeper::start()?;
    let srvr = zk.four_letter_word("srvr")?;
    ensure!(srvr.contains("Mode: standalone"), "srvr answered {srvr:?}");
    let mut cluster = Cluster::start(3, &zk, &[])?;
    ensure!(
        cluster.live_ids() == vec![1, 2, 3],
        "ids {:?}",
        cluster.ids()
    );
    let ports: BTreeSet<u16> = cluster.addrs().iter().map(|a| a.port()).collect();
    ensure!(ports.len() == 3, "brokers share ports: {ports:?}");
    for id in cluster.ids() {
        cluster
            .metadata_from(id)
            .with_context(|| format!("Metadata from broker {id}"))?;
    }
    let addr = cluster.addr(2)?;
    cluster.kill(2)?;
    ensure!(
        cluster.live_ids() == vec![1, 3],
        "live {:?}",
        cluster.live_ids()
    );
    ensure!(
        cluster.metadata_from(2).is_err(),
        "a killed broker still answers"
    );
    cluster.restart(2)?;
    ensure!(cluster.addr(2)? == addr, "broker 2 moved");
    cluster.metadata_from(2).context("Metadata after restart")?;
    drop(cluster);
    ensure!(
        zk.four_letter_word("ruok")? == "imok",
        "ZooKeeper died with the brokers"
    );
    Ok(())
}

/// Scenario 1: a topic with 4 partitions and replication factor 3 is described by every
/// broker with three replicas, a full ISR and leaders spread over the brokers; a factor
/// above the number of brokers is refused; a non-leader refuses produce and fetch.
#[test]
fn replicated_topic_has_spread_leaders_and_full_isr() -> Result<()> {
    let (_zk, cluster) = three_brokers(&[])?;
    let mut client = cluster.client();
    let answers = create_replicated(&cluster, &mut client, "spread", 4, 3, &[])?;
    let reference = &answers[&1].topics["spread"];
    for (id, metadata) in &answers {
        let topic = &metadata.topics["spread"];
        ensure!(
            topic.partitions == reference.partitions,
            "broker {id} describes spread differently: {}",
            describe(metadata)
        );
    }
    let mut leaders = BTreeSet::new();
    let mut preferred = BTreeSet::new();
    for p in &reference.partitions {
        ensure!(
            sorted(&p.replicas) == vec![1, 2, 3],
            "p{} replicas {:?}",
            p.partition,
            p.replicas
        );
        ensure!(
            p.leader == p.replicas[0],
            "p{}: leader {} is not the preferred replica {:?}",
            p.partition,
            p.leader,
            p.replicas
        );
        ensure!(
            p.leader_epoch >= 0,
            "p{}: leader epoch {}",
            p.partition,
            p.leader_epoch
        );
        leaders.insert(p.leader);
        preferred.insert(p.replicas[0]);
    }
    ensure!(
        preferred.len() == 3,
        "preferred leaders of 4 partitions on 3 brokers are not spread: {preferred:?}"
    );
    ensure!(leaders.len() >= 2, "leaders not spread: {leaders:?}");

    let error = client.create_topic("too-replicated", 1, 4, &[])?;
    ensure!(
        error == code::INVALID_REPLICATION_FACTOR,
        "replication factor 4 on 3 brokers: error {error}"
    );
    let metadata = client.refresh()?;
    ensure!(
        metadata
            .topics
            .get("too-replicated")
            .is_none_or(|t| t.error_code == code::UNKNOWN_TOPIC_OR_PARTITION),
        "a refused topic exists: {}",
        describe(metadata)
    );

    // Any broker answers Metadata; only the leader takes produce and consumer fetch.
    let p0 = reference.partitions[0].clone();
    let follower = *p0
        .replicas
        .iter()
        .find(|r| **r != p0.leader)
        .context("a follower")?;
    let record = [value_record("to-the-leader")];
    let (error, _) = client.produce_to(follower, "spread", 0, &record, ACKS_ALL)?;
    ensure!(
        error == code::NOT_LEADER_OR_FOLLOWER,
        "produce to follower {follower}: error {error}"
    );
    let (error, offset) = client.produce_to(p0.leader, "spread", 0, &record, ACKS_ALL)?;
    ensure!(
        error == code::NONE && offset == 0,
        "produce to leader: error {error}, offset {offset}"
    );
    let fetched = client.fetch_from(follower, "spread", 0, 0, 0)?;
    ensure!(
        fetched.error_code == code::NOT_LEADER_OR_FOLLOWER,
        "consumer fetch from follower {follower}: error {}",
        fetched.error_code
    );
    let (records, high_watermark) = client.read_from(p0.leader, "spread", 0, 0)?;
    ensure!(
        high_watermark == 1 && records.len() == 1 && value_of(&records[0]) == "to-the-leader",
        "leader has {} records, high watermark {high_watermark}",
        records.len()
    );
    Ok(())
}

/// Scenario 2: acks=all production continues while the partition's leader is
/// SIGKILLed; every acknowledged record is at its acknowledged offset on the new leader,
/// in order, and a consumer continues from its position on the new leader.
#[test]
fn acks_all_loses_nothing_when_the_leader_is_killed() -> Result<()> {
    const TOPIC: &str = "failover";
    const TOTAL: u32 = 120;
    const KILL_AFTER: usize = 40;
    let (_zk, mut cluster) = three_brokers(&[])?;
    let mut client = cluster.client();
    create_replicated(&cluster, &mut client, TOPIC, 1, 3, &[])?;
    let initial = state(client.refresh()?, TOPIC, 0)?;
    let old_leader = initial.leader;
    ensure!(
        initial.replicas[0] == old_leader,
        "a new partition is led by its preferred replica: {initial:?}"
    );

    // (record number, acknowledged offset), in acknowledgement order.
    let acked: Arc<Mutex<Vec<(u32, i64)>>> = Arc::new(Mutex::new(Vec::new()));
    let producer = {
        let acked = acked.clone();
        let mut producer_client = cluster.client();
        thread::spawn(move || -> Result<()> {
            producer_client.refresh()?;
            for n in 0..TOTAL {
                let offset = produce_value(&mut producer_client, TOPIC, 0, &n.to_string())?;
                acked.lock().expect("acked").push((n, offset));
            }
            Ok(())
        })
    };
    poll_until(
        "records acknowledged before the kill",
        PRODUCE_TIMEOUT,
        || acked.lock().expect("acked").len() >= KILL_AFTER || producer.is_finished(),
    )?;
    ensure!(
        !producer.is_finished(),
        "the producer stopped early: {:?}",
        producer.join()
    );

    // A consumer reads what is committed so far from the old leader...
    let (consumed_before, _) = client.read_from(old_leader, TOPIC, 0, 0)?;
    cluster.kill(old_leader)?;
    let acked_at_kill = acked.lock().expect("acked").len();
    let metadata = cluster.wait_for("a new leader", FAILOVER_TIMEOUT, |m| {
        partition(m, TOPIC, 0).is_some_and(|p| p.leader > 0 && p.leader != old_leader)
    })?;
    let new_leader = state(&metadata, TOPIC, 0)?.leader;
    producer
        .join()
        .map_err(|_| anyhow!("producer panicked"))?
        .context("producer")?;
    let acked = acked.lock().expect("acked").clone();
    ensure!(
        acked.len() == TOTAL as usize,
        "{} acknowledged",
        acked.len()
    );
    ensure!(
        acked_at_kill < TOTAL as usize,
        "every record was acknowledged before the kill"
    );

    // ...and continues from its position on the new leader.
    client.refresh()?;
    let (consumed_after, reader) =
        client.read(TOPIC, 0, consumed_before.len() as i64, FAILOVER_TIMEOUT)?;
    ensure!(
        reader != old_leader,
        "read from the dead leader {old_leader}"
    );
    let (log, _) = client.read_from(reader, TOPIC, 0, 0)?;
    let consumed: Vec<_> = consumed_before.iter().chain(&consumed_after).collect();
    ensure!(
        consumed.len() == log.len()
            && consumed
                .iter()
                .zip(&log)
                .all(|(c, l)| c.offset == l.offset && c.value == l.value),
        "the consumer read {} records across the failover, the log of {reader} has {}",
        consumed.len(),
        log.len()
    );

    let numbers: Vec<u32> = log
        .iter()
        .map(|r| value_of(r).parse::<u32>())
        .collect::<Result<_, _>>()
        .context("a record that is not a number")?;
    for (n, offset) in &acked {
        let at = usize::try_from(*offset)?;
        ensure!(
            numbers.get(at) == Some(n),
            "record {n} was acknowledged at offset {offset}, the new leader {new_leader} has {:?} there",
            numbers.get(at)
        );
    }
    // Retries after the failover may repeat a record, never reorder or skip one.
    ensure!(
        numbers.windows(2).all(|w| w[0] <= w[1]),
        "records out of order: {numbers:?}"
    );
    let distinct: BTreeSet<u32> = numbers.iter().copied().collect();
    ensure!(
        distinct == (0..TOTAL).collect(),
        "records missing: {:?}",
        (0..TOTAL)
            .filter(|n| !distinct.contains(n))
            .collect::<Vec<_>>()
    );

    // The old leader returns (dropping whatever it had written but not replicated),
    // catches up, and takes its preferred leadership back.
    cluster.restart(old_leader)?;
    cluster.wait_for_all(
        &format!("broker {old_leader} leading again with a full ISR"),
        CHANGE_TIMEOUT,
        |m| {
            fully_replicated(m, TOPIC, 1, 3)
                && partition(m, TOPIC, 0).is_some_and(|s| s.leader == old_leader)
        },
    )?;
    let (relog, _) = client.read_from(old_leader, TOPIC, 0, 0)?;
    ensure!(
        relog.len() == log.len() && relog.iter().zip(&log).all(|(a, b)| a.value == b.value),
        "broker {old_leader} has {} records after rejoining, broker {reader} had {}",
        relog.len(),
        log.len()
    );
    Ok(())
}

/// Scenario 3: the ISR loses a killed follower and takes it back once it has restarted
/// and caught up.
#[test]
fn isr_shrinks_without_a_follower_and_expands_when_it_returns() -> Result<()> {
    const TOPIC: &str = "isr";
    let (_zk, mut cluster) = three_brokers(&[])?;
    let mut client = cluster.client();
    create_replicated(&cluster, &mut client, TOPIC, 1, 3, &[])?;
    let metadata = client.refresh()?.clone();
    let p = state(&metadata, TOPIC, 0)?;
    // A follower that is not the controller, so the controller stays put.
    let follower = *p
        .replicas
        .iter()
        .find(|r| **r != p.leader && **r != metadata.controller_id)
        .or_else(|| p.replicas.iter().find(|r| **r != p.leader))
        .context("a follower")?;
    let rest: Vec<i32> = sorted(&p.replicas)
        .into_iter()
        .filter(|r| *r != follower)
        .collect();
    for n in 0..10 {
        produce_value(&mut client, TOPIC, 0, &format!("before-{n}"))?;
    }

    cluster.kill(follower)?;
    cluster.wait_for(
        &format!("the ISR to shrink to {rest:?}"),
        FAILOVER_TIMEOUT,
        |m| partition(m, TOPIC, 0).is_some_and(|s| s.leader == p.leader && sorted(&s.isr) == rest),
    )?;
    // Writes go on with two in-sync replicas, and the returning follower must fetch them.
    for n in 0..10 {
        produce_value(&mut client, TOPIC, 0, &format!("during-{n}"))?;
    }

    cluster.restart(follower)?;
    cluster.wait_for_all(
        &format!("broker {follower} back in the ISR"),
        CHANGE_TIMEOUT,
        |m| fully_replicated(m, TOPIC, 1, 3),
    )?;
    let offset = produce_value(&mut client, TOPIC, 0, "after")?;
    ensure!(
        offset == 20,
        "the record after the return is at offset {offset}"
    );

    // The returned follower holds every record: it alone is left to lead.
    for other in rest {
        cluster.kill(other)?;
    }
    cluster.wait_for(
        &format!("broker {follower} leading alone"),
        FAILOVER_TIMEOUT,
        |m| partition(m, TOPIC, 0).is_some_and(|s| s.leader == follower && s.isr == vec![follower]),
    )?;
    client.refresh()?;
    let (records, reader) = client.read(TOPIC, 0, 0, FAILOVER_TIMEOUT)?;
    ensure!(reader == follower, "read from {reader}");
    let values: Vec<String> = records.iter().map(value_of).collect();
    let expected: Vec<String> = (0..10)
        .map(|n| format!("before-{n}"))
        .chain((0..10).map(|n| format!("during-{n}")))
        .chain(["after".to_owned()])
        .collect();
    ensure!(
        values == expected,
        "broker {follower} holds {values:?}, expected {expected:?}"
    );
    Ok(())
}

/// Scenario 4: with min.insync.replicas=2 and two of three brokers down, acks=all is
/// refused with NOT_ENOUGH_REPLICAS while acks=1 is still written.
#[test]
fn min_insync_replicas_refuses_acks_all_with_two_brokers_down() -> Result<()> {
    const TOPIC: &str = "min-isr";
    let (_zk, mut cluster) = three_brokers(&[])?;
    let mut client = cluster.client();
    let configs = [("min.insync.replicas", "2")];
    create_replicated(&cluster, &mut client, TOPIC, 1, 3, &configs)?;
    let p = state(client.refresh()?, TOPIC, 0)?;
    produce_value(&mut client, TOPIC, 0, "in-sync")?;

    for follower in p.replicas.iter().filter(|r| **r != p.leader) {
        cluster.kill(*follower)?;
    }
    cluster.wait_for("the ISR to shrink to the leader", FAILOVER_TIMEOUT, |m| {
        partition(m, TOPIC, 0).is_some_and(|s| s.leader == p.leader && s.isr == vec![p.leader])
    })?;
    let (error, _) = client.produce_to(p.leader, TOPIC, 0, &[value_record("refused")], ACKS_ALL)?;
    ensure!(
        error == code::NOT_ENOUGH_REPLICAS || error == code::NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        "acks=all with an ISR of 1 and min.insync.replicas=2: error {error}"
    );
    let (error, offset) = client.produce_to(
        p.leader,
        TOPIC,
        0,
        &[value_record("leader-only")],
        ACKS_LEADER,
    )?;
    ensure!(error == code::NONE, "acks=1: error {error}");
    let (records, _) = client.read_from(p.leader, TOPIC, 0, 0)?;
    let last = records.last().context("no records")?;
    ensure!(
        last.offset == offset && value_of(last) == "leader-only",
        "last record {:?} at {}, acks=1 wrote offset {offset}",
        value_of(last),
        last.offset
    );
    if error == code::NOT_ENOUGH_REPLICAS {
        ensure!(
            !records.iter().any(|r| value_of(r) == "refused"),
            "a record refused before its append is in the log"
        );
    }
    Ok(())
}

/// Scenario 5: a replica with a divergent tail truncates it. A (leader) takes records
/// with acks=1 while B is down; A dies; B comes back and is elected uncleanly, takes
/// other records; A returns, must drop its tail, fetch B's records and rejoin the ISR.
/// A is then made leader (B killed) and its log must be exactly B's.
#[test]
fn returning_replica_truncates_its_divergent_tail() -> Result<()> {
    const TOPIC: &str = "diverge";
    let (_zk, mut cluster) = three_brokers(&[])?;
    let mut client = cluster.client();
    let configs = [
        ("unclean.leader.election.enable", "true"),
        ("min.insync.replicas", "1"),
    ];
    create_replicated(&cluster, &mut client, TOPIC, 1, 2, &configs)?;
    let p = state(client.refresh()?, TOPIC, 0)?;
    let a = p.leader;
    let b = *p
        .replicas
        .iter()
        .find(|r| **r != a)
        .context("a second replica")?;
    let mut expected: Vec<String> = Vec::new();
    for n in 0..5 {
        let value = format!("common-{n}");
        produce_value(&mut client, TOPIC, 0, &value)?;
        expected.push(value);
    }

    cluster.kill(b)?;
    cluster.wait_for(
        &format!("the ISR to shrink to [{a}]"),
        FAILOVER_TIMEOUT,
        |m| partition(m, TOPIC, 0).is_some_and(|s| s.leader == a && s.isr == vec![a]),
    )?;
    // A's tail: only A ever has these.
    for n in 0..4 {
        let (error, offset) = client.produce_to(
            a,
            TOPIC,
            0,
            &[value_record(&format!("a-only-{n}"))],
            ACKS_LEADER,
        )?;
        ensure!(
            error == code::NONE && offset == 5 + n,
            "a-only-{n}: error {error} at {offset}"
        );
    }

    cluster.kill(a)?;
    cluster.wait_for("the partition to go offline", FAILOVER_TIMEOUT, |m| {
        partition(m, TOPIC, 0).is_some_and(|s| s.leader < 0)
    })?;
    cluster.restart(b)?;
    cluster.wait_for(
        &format!("broker {b} elected uncleanly"),
        FAILOVER_TIMEOUT,
        |m| partition(m, TOPIC, 0).is_some_and(|s| s.leader == b),
    )?;
    // B's records take the offsets of A's tail; fewer of them, so A's tail sticks out.
    // (Retried as a client does: B may answer before it has taken up the leadership.)
    client.refresh()?;
    for n in 0..2 {
        let value = format!("b-only-{n}");
        let offset = produce_value(&mut client, TOPIC, 0, &value)?;
        ensure!(offset == 5 + n, "{value} written at {offset}");
        expected.push(value);
    }
    ensure!(
        client.leader(TOPIC, 0) == Some(b),
        "B's records went to {:?}",
        client.leader(TOPIC, 0)
    );

    cluster.restart(a)?;
    cluster.wait_for_all(
        &format!("broker {a} back in the ISR"),
        CHANGE_TIMEOUT,
        |m| fully_replicated(m, TOPIC, 1, 2),
    )?;
    let value = "both".to_owned();
    produce_value(&mut client, TOPIC, 0, &value)?;
    expected.push(value);

    // Read A's log as its leader.
    cluster.kill(b)?;
    cluster.wait_for(&format!("broker {a} leading"), FAILOVER_TIMEOUT, |m| {
        partition(m, TOPIC, 0).is_some_and(|s| s.leader == a && s.isr == vec![a])
    })?;
    client.refresh()?;
    let (records, _) = client.read(TOPIC, 0, 0, FAILOVER_TIMEOUT)?;
    let values: Vec<String> = records.iter().map(value_of).collect();
    ensure!(
        values == expected,
        "broker {a}'s log after rejoining:\n  {values:?}\nexpected B's log:\n  {expected:?}"
    );
    let mut end = None;
    poll_until(
        "ListOffsets from the new leader",
        CHANGE_TIMEOUT,
        || match client.latest_offset_from(a, TOPIC, 0) {
            Ok((code::NONE, offset)) => {
                end = Some(offset);
                true
            }
            _ => false,
        },
    )?;
    ensure!(
        end == Some(expected.len() as i64),
        "broker {a}'s log end offset {end:?}, expected {}",
        expected.len()
    );
    Ok(())
}

/// Scenario 6: when the controller's broker dies another broker becomes controller and
/// topics created afterwards get leaders on the live brokers.
#[test]
fn controller_fails_over_and_the_new_one_creates_topics() -> Result<()> {
    let (_zk, mut cluster) = three_brokers(&[])?;
    let old = cluster.metadata_from(1)?.controller_id;
    cluster.kill(old)?;
    let answers = cluster.wait_for_all("a new controller", FAILOVER_TIMEOUT, |m| {
        m.controller_id > 0 && m.controller_id != old && !m.brokers.contains_key(&old)
    })?;
    let controllers: BTreeSet<i32> = answers.values().map(|m| m.controller_id).collect();
    ensure!(
        controllers.len() == 1,
        "the live brokers disagree on the controller: {controllers:?}"
    );

    let mut client = cluster.client();
    let error = client.create_topic("three-of-two", 1, 3, &[])?;
    ensure!(
        error == code::INVALID_REPLICATION_FACTOR,
        "replication factor 3 with 2 live brokers: error {error}"
    );
    let answers = create_replicated(&cluster, &mut client, "after-failover", 2, 2, &[])?;
    for metadata in answers.values() {
        for p in &metadata.topics["after-failover"].partitions {
            ensure!(
                !p.replicas.contains(&old),
                "a replica was assigned to the dead broker {old}: {}",
                describe(metadata)
            );
        }
    }
    client.refresh()?;
    for p in 0..2 {
        produce_value(&mut client, "after-failover", p, "hello")?;
    }
    Ok(())
}

/// Scenario 7: a group's committed offsets survive the death of its coordinator's
/// broker: FindCoordinator names another broker, which answers OffsetFetch with them.
#[test]
fn group_offsets_survive_the_coordinators_death() -> Result<()> {
    const GROUP: &str = "survivors";
    let (_zk, mut cluster) = three_brokers(&[])?;
    let mut client = cluster.client();
    create_replicated(&cluster, &mut client, "orders", 2, 3, &[])?;
    let mut group_client = cluster.sluice_client()?;
    // The first FindCoordinator creates __consumer_offsets (4 partitions, factor 3).
    group_client.find_coordinator(GROUP)?;
    cluster.wait_for_all("__consumer_offsets fully replicated", CHANGE_TIMEOUT, |m| {
        fully_replicated(m, "__consumer_offsets", 4, 3)
    })?;

    let member = GroupMember::join(
        &mut group_client,
        GROUP,
        vec!["orders".to_owned()],
        MemberConfig {
            session_timeout_ms: 6_000,
            rebalance_timeout_ms: 10_000,
            heartbeat_interval: Duration::from_millis(500),
        },
    )?;
    let offsets: Offsets = BTreeMap::from([
        (("orders".to_owned(), 0), 12),
        (("orders".to_owned(), 1), 34),
    ]);
    member.commit(&mut group_client, &offsets)?;
    ensure!(
        group_client.fetch_committed(GROUP, None)? == offsets,
        "committed offsets not read back"
    );
    let coordinator = group_client.find_coordinator(GROUP)?;
    drop(member);
    drop(group_client);

    cluster.kill(coordinator)?;
    let deadline = Instant::now() + FAILOVER_TIMEOUT;
    loop {
        let attempt = cluster.sluice_client().and_then(|mut c| {
            let new = c.find_coordinator(GROUP)?;
            let committed = c.fetch_committed(GROUP, None)?;
            Ok((new, committed))
        });
        let last = match attempt {
            Ok((new, committed)) if new != coordinator && committed == offsets => break,
            Ok((new, committed)) => format!("coordinator {new}, offsets {committed:?}"),
            Err(e) => format!("{e:#}"),
        };
        ensure!(
            Instant::now() < deadline,
            "the group's offsets did not come back within {FAILOVER_TIMEOUT:?} after coordinator \
             {coordinator} died; last: {last}"
        );
        thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}
