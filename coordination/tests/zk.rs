//! The ZooKeeper control plane against a real ZooKeeper (Debian's `zookeeper`
//! package): several control planes, each a `coordination::start` with its own broker
//! id and log dir, form a cluster. Shards are simulated by threads that acknowledge
//! every snapshot update.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_lite::future::block_on;
use sluice_coordination::{
    start, BrokerEndpoint, ControlError, ControlHandle, CoordinationError, MetadataSnapshot,
    NewTopic, TopicMetadata,
};
use sluice_core::config::BrokerConfig;
use sluice_core::ErrorCode;

/// How long one readiness probe of ZooKeeper may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A standalone ZooKeeper server on a free port with a temporary data dir; killed on
/// drop.
struct ZooKeeper {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl ZooKeeper {
    fn start() -> ZooKeeper {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let config = dir.path().join("zoo.cfg");
        std::fs::write(
            &config,
            format!(
                "tickTime=500\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
                 admin.enableServer=false\n4lw.commands.whitelist=*\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.path().join("zookeeper.log")).unwrap();
        let child = Command::new("java")
            .arg("-cp")
            .arg("/etc/zookeeper/conf:/usr/share/java/zookeeper.jar")
            .arg("org.apache.zookeeper.server.ZooKeeperServerMain")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("java and Debian's zookeeper package are installed");
        let zookeeper = ZooKeeper {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !zookeeper.is_ok() {
            assert!(Instant::now() < deadline, "ZooKeeper did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        zookeeper
    }

    /// The four-letter `ruok` command answers `imok`.
    fn is_ok(&self) -> bool {
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        let Ok(mut stream) = TcpStream::connect_timeout(&address, PROBE_TIMEOUT) else {
            return false;
        };
        // A ZooKeeper still starting up can accept the connection and neither answer
        // nor close it: without a timeout the probe would wait forever.
        if stream.set_read_timeout(Some(PROBE_TIMEOUT)).is_err()
            || stream.set_write_timeout(Some(PROBE_TIMEOUT)).is_err()
        {
            return false;
        }
        let mut answer = String::new();
        stream.write_all(b"ruok").is_ok()
            && stream.read_to_string(&mut answer).is_ok()
            && answer == "imok"
    }

    fn connect(&self) -> String {
        format!("127.0.0.1:{}/sluice", self.port)
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What the simulated shards of a node saw last, with a condition variable that wakes
/// on every applied update.
#[derive(Default)]
struct Seen {
    latest: Mutex<Option<Arc<MetadataSnapshot>>>,
    changed: Condvar,
}

/// One control plane with simulated shards.
struct Node {
    id: i32,
    handle: ControlHandle,
    thread: Option<JoinHandle<()>>,
    shards: Vec<JoinHandle<()>>,
    seen: Arc<Seen>,
}

fn config(zookeeper: &ZooKeeper, id: i32, dir: &Path) -> BrokerConfig {
    BrokerConfig {
        broker_id: id,
        log_dirs: vec![dir.to_path_buf()],
        zookeeper_connect: Some(zookeeper.connect()),
        zookeeper_session_timeout_ms: 6_000,
        zookeeper_connection_timeout_ms: 10_000,
        num_partitions: 1,
        ..BrokerConfig::default()
    }
}

fn endpoint(id: i32) -> BrokerEndpoint {
    BrokerEndpoint {
        id,
        host: "127.0.0.1".into(),
        port: 9000 + id as u16,
        rack: None,
    }
}

impl Node {
    fn start(config: &BrokerConfig) -> Node {
        let (handle, receivers, thread) = start(config, endpoint(config.broker_id), 2).unwrap();
        let seen = Arc::new(Seen::default());
        let shards = receivers
            .into_iter()
            .enumerate()
            .map(|(shard, receiver)| {
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let mut version = 0;
                    while let Ok(update) = receiver.recv_blocking() {
                        assert!(update.snapshot.version > version, "versions grow");
                        version = update.snapshot.version;
                        if shard == 0 {
                            *seen.latest.lock().unwrap() = Some(update.snapshot.clone());
                            seen.changed.notify_all();
                        }
                        let _ = update.applied.send_blocking(());
                    }
                })
            })
            .collect();
        Node {
            id: config.broker_id,
            handle,
            thread: Some(thread),
            shards,
            seen,
        }
    }

    /// Waits until the snapshot the shards hold satisfies `condition`; returns it.
    fn wait(
        &self,
        what: &str,
        condition: impl Fn(&MetadataSnapshot) -> bool,
    ) -> Arc<MetadataSnapshot> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut latest = self.seen.latest.lock().unwrap();
        loop {
            if let Some(snapshot) = latest.as_ref().filter(|s| condition(s)) {
                return snapshot.clone();
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| {
                    panic!(
                        "broker {}: timed out waiting for {what}: {latest:#?}",
                        self.id
                    )
                });
            latest = self.seen.changed.wait_timeout(latest, left).unwrap().0;
        }
    }

    fn create(&self, topics: Vec<NewTopic>) -> Vec<Result<Arc<TopicMetadata>, ControlError>> {
        block_on(self.handle.create_topics(topics, false)).unwrap()
    }

    fn stop(mut self) {
        self.handle.shutdown();
        self.thread.take().unwrap().join().unwrap();
        for shard in self.shards.drain(..) {
            shard.join().unwrap();
        }
    }
}

fn topic(name: &str, partitions: i32, replication_factor: i16) -> NewTopic {
    NewTopic {
        name: name.into(),
        num_partitions: partitions,
        replication_factor,
        configs: BTreeMap::new(),
    }
}

fn code<T>(answer: &Result<T, ControlError>) -> ErrorCode {
    match answer {
        Ok(_) => ErrorCode::None,
        Err(error) => error.code,
    }
}

/// Reads a znode with a client of the test's own.
fn zk_get(zookeeper: &ZooKeeper, path: &str) -> Option<String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = zookeeper_client::Client::connect(&zookeeper.connect())
            .await
            .unwrap();
        match client.get_data(path).await {
            Ok((data, _)) => Some(String::from_utf8(data).unwrap()),
            Err(zookeeper_client::Error::NoNode) => None,
            Err(error) => panic!("{path}: {error}"),
        }
    })
}

struct Cluster {
    zookeeper: ZooKeeper,
    dirs: Vec<tempfile::TempDir>,
    nodes: BTreeMap<i32, Node>,
}

impl Cluster {
    /// Brokers `1..=count`, each waited for until it sees all of them and a controller.
    fn start(count: i32, tweak: impl Fn(&mut BrokerConfig)) -> Cluster {
        let zookeeper = ZooKeeper::start();
        let mut cluster = Cluster {
            zookeeper,
            dirs: (0..count).map(|_| tempfile::tempdir().unwrap()).collect(),
            nodes: BTreeMap::new(),
        };
        for id in 1..=count {
            let mut config = cluster.config(id);
            tweak(&mut config);
            cluster.nodes.insert(id, Node::start(&config));
        }
        for node in cluster.nodes.values() {
            node.wait("every broker and a controller", |s| {
                s.brokers.len() == count as usize && s.controller_id > 0
            });
        }
        cluster
    }

    fn config(&self, id: i32) -> BrokerConfig {
        config(&self.zookeeper, id, self.dirs[id as usize - 1].path())
    }

    fn node(&self, id: i32) -> &Node {
        &self.nodes[&id]
    }

    fn stop(&mut self, id: i32) {
        self.nodes.remove(&id).unwrap().stop();
    }

    fn stop_all(mut self) {
        let ids: Vec<i32> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop(id);
        }
    }
}

fn controller_epoch(zookeeper: &ZooKeeper) -> i32 {
    zk_get(zookeeper, "/controller_epoch")
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn registration_election_and_controller_failover() {
    let mut cluster = Cluster::start(3, |_| {});
    // (`Cluster::start` waited until every broker saw all three and a controller.)
    let first = cluster
        .node(1)
        .wait("a controller", |s| s.controller_id > 0);
    let controller = first.controller_id;
    for node in cluster.nodes.values() {
        let snapshot = node.wait("the controller", |s| s.controller_id == controller);
        assert_eq!(
            snapshot.brokers,
            vec![endpoint(1), endpoint(2), endpoint(3)]
        );
        assert_eq!(snapshot.cluster_id.len(), 22);
        assert_eq!(snapshot.cluster_id, first.cluster_id);
    }
    let registration = zk_get(&cluster.zookeeper, "/brokers/ids/2").unwrap();
    assert!(
        registration.contains(r#""endpoints":["PLAINTEXT://127.0.0.1:9002"]"#),
        "{registration}"
    );
    let epoch = controller_epoch(&cluster.zookeeper);
    assert!(epoch >= 1);
    let meta = std::fs::read_to_string(cluster.dirs[0].path().join("meta.properties")).unwrap();
    assert!(meta.contains(&format!(
        "cluster.id={}",
        cluster.node(1).handle.snapshot().cluster_id
    )));

    cluster.stop(controller);
    let survivor = *cluster.nodes.keys().next().unwrap();
    let after = cluster.node(survivor).wait("a new controller", |s| {
        s.controller_id > 0 && s.controller_id != controller && s.brokers.len() == 2
    });
    assert!(after.broker(controller).is_none());
    assert!(controller_epoch(&cluster.zookeeper) > epoch);
    for node in cluster.nodes.values() {
        node.wait("the same new controller", |s| {
            s.controller_id == after.controller_id
        });
    }
    cluster.stop_all();
}

#[test]
fn create_topic_spreads_replicas_and_leaders() {
    let cluster = Cluster::start(3, |_| {});
    let node = cluster.node(2);
    let answers = node.create(vec![topic("orders", 4, 3), topic("big", 1, 4)]);
    let orders = answers[0].as_ref().unwrap();
    assert_eq!(orders.partitions, 4);
    assert_eq!(orders.replication_factor, 3);
    let refused = answers[1].as_ref().unwrap_err();
    assert_eq!(refused.code, ErrorCode::InvalidReplicationFactor);
    assert_eq!(
        refused.message,
        "Replication factor: 4 larger than available brokers: 3."
    );
    // The answer came after this node's shards applied a snapshot with every leader.
    let snapshot = node.handle.snapshot();
    assert_eq!(snapshot.topic("orders"), Some(orders));
    for other in cluster.nodes.values() {
        let seen = other.wait("orders with every leader", |s| {
            s.topic("orders")
                .is_some_and(|t| t.partition_states.iter().all(|p| p.leader >= 0))
        });
        let topic = seen.topic("orders").unwrap();
        assert_eq!(topic.id, orders.id);
        let mut leaders = BTreeSet::new();
        for state in &topic.partition_states {
            let replicas: BTreeSet<i32> = state.replicas.iter().copied().collect();
            assert_eq!(replicas, BTreeSet::from([1, 2, 3]), "{state:?}");
            assert_eq!(state.leader, state.replicas[0], "preferred leader leads");
            assert_eq!(state.isr, state.replicas, "full ISR");
            assert_eq!(state.leader_epoch, 0);
            leaders.insert(state.leader);
        }
        assert_eq!(leaders.len(), 3, "leaders spread: {topic:?}");
    }
    let state = zk_get(
        &cluster.zookeeper,
        "/brokers/topics/orders/partitions/0/state",
    )
    .unwrap();
    assert!(state.contains(r#""version":1,"leader_epoch":0"#), "{state}");
    let assignment = zk_get(&cluster.zookeeper, "/brokers/topics/orders").unwrap();
    assert!(
        assignment.starts_with(r#"{"version":3,"partitions":{"0":["#),
        "{assignment}"
    );

    // Refusals and validate_only.
    let again = node.create(vec![topic("orders", 1, 1)]);
    assert_eq!(code(&again[0]), ErrorCode::TopicAlreadyExists);
    let validated = block_on(node.handle.create_topics(vec![topic("v", 3, 2)], true)).unwrap();
    let validated = validated[0].as_ref().unwrap();
    assert_eq!(validated.id, [0; 16]);
    assert_eq!(validated.partition_states[0].replicas.len(), 2);
    assert!(zk_get(&cluster.zookeeper, "/brokers/topics/v").is_none());
    // Replication factor -1 takes default.replication.factor (1).
    let single = node.create(vec![topic("single", 2, -1)]);
    assert_eq!(single[0].as_ref().unwrap().replication_factor, 1);
    // ... and offsets.topic.replication.factor (3) for __consumer_offsets.
    let offsets = node.create(vec![topic("__consumer_offsets", 3, -1)]);
    let offsets = offsets[0].as_ref().unwrap();
    assert_eq!(offsets.replication_factor, 3);
    assert!(offsets.internal);

    // More partitions: the new ones get leaders too.
    let grown = block_on(
        node.handle
            .create_partitions(vec![("orders".into(), 6)], false),
    )
    .unwrap();
    assert_eq!(grown, vec![Ok(())]);
    let topic = node.handle.snapshot().topic("orders").unwrap().clone();
    assert_eq!(topic.partitions, 6);
    assert!(topic
        .partition_states
        .iter()
        .all(|p| p.leader >= 0 && p.isr.len() == 3));
    cluster.stop_all();
}

#[test]
fn leader_failover_recovery_and_preferred_leaders() {
    let mut cluster = Cluster::start(3, |config| {
        config.leader_imbalance_check_interval_seconds = 1;
    });
    let node = cluster.node(1);
    let answers = node.create(vec![topic("t", 4, 3), topic("solo", 3, 1)]);
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    let controller = node.handle.snapshot().controller_id;
    // A broker that leads some partition and is not the controller.
    let before = node.handle.snapshot();
    let victim = (1..=3)
        .find(|&b| {
            b != controller
                && before
                    .topic("t")
                    .unwrap()
                    .partition_states
                    .iter()
                    .any(|p| p.leader == b)
        })
        .unwrap();
    let solo = before.topic("solo").unwrap();
    let solo_on_victim = solo
        .partition_states
        .iter()
        .position(|p| p.replicas == vec![victim])
        .expect("one solo partition per broker") as i32;

    cluster.stop(victim);
    let observer = cluster.node(controller);
    let after = observer.wait("failover", |s| {
        s.broker(victim).is_none()
            && s.topic("t")
                .unwrap()
                .partition_states
                .iter()
                .all(|p| p.leader != victim && !p.isr.contains(&victim))
            && s.partition("solo", solo_on_victim).unwrap().leader == -1
    });
    for (old, new) in before
        .topic("t")
        .unwrap()
        .partition_states
        .iter()
        .zip(&after.topic("t").unwrap().partition_states)
    {
        if old.leader == victim {
            assert_eq!(new.leader_epoch, old.leader_epoch + 1, "{new:?}");
            assert!(old.isr.contains(&new.leader));
            // The first live ISR member in assignment order.
            let expected = old.replicas.iter().find(|&&r| r != victim).unwrap();
            assert_eq!(new.leader, *expected);
        } else {
            assert_eq!(new.leader, old.leader);
            assert_eq!(
                new.leader_epoch, old.leader_epoch,
                "ISR shrink keeps the epoch"
            );
        }
        assert!(new.partition_epoch > old.partition_epoch);
    }
    let offline = after.partition("solo", solo_on_victim).unwrap();
    assert_eq!(offline.isr, vec![victim], "the last ISR is kept");
    assert_eq!(offline.leader_epoch, 1);

    // The broker returns: its offline partition recovers.
    let config = cluster.config(victim);
    cluster.nodes.insert(victim, Node::start(&config));
    let back = cluster.node(controller).wait("recovery", |s| {
        s.broker(victim).is_some() && s.partition("solo", solo_on_victim).unwrap().leader == victim
    });
    assert_eq!(
        back.partition("solo", solo_on_victim).unwrap().leader_epoch,
        2
    );

    // The current leader of a partition the victim prefers adds it back to the ISR;
    // the controller's rebalance then hands leadership back to it.
    let (partition, state) = back
        .topic("t")
        .unwrap()
        .partition_states
        .iter()
        .enumerate()
        .find(|(_, p)| p.replicas[0] == victim)
        .map(|(p, s)| (p as i32, s.clone()))
        .expect("the victim is some partition's preferred leader");
    let mut isr = state.isr.clone();
    isr.push(victim);
    let leader = cluster.node(state.leader);
    let altered = block_on(leader.handle.alter_isr(
        "t".into(),
        partition,
        state.leader_epoch,
        state.partition_epoch,
        isr.clone(),
    ))
    .unwrap()
    .unwrap();
    assert_eq!(altered.isr, isr);
    let restored = cluster.node(victim).wait("preferred leader restored", |s| {
        s.partition("t", partition).unwrap().leader == victim
    });
    assert_eq!(
        restored.partition("t", partition).unwrap().leader_epoch,
        state.leader_epoch + 1
    );
    cluster.stop_all();
}

#[test]
fn alter_isr_compare_and_set() {
    let cluster = Cluster::start(2, |_| {});
    let created = cluster.node(1).create(vec![topic("t", 1, 2)]);
    let state = created[0].as_ref().unwrap().partition_states[0].clone();
    let leader = cluster.node(state.leader);
    let follower = state
        .replicas
        .iter()
        .copied()
        .find(|&r| r != state.leader)
        .unwrap();
    let alter = |node: &Node, leader_epoch, partition_epoch, isr: Vec<i32>| {
        block_on(
            node.handle
                .alter_isr("t".into(), 0, leader_epoch, partition_epoch, isr),
        )
        .unwrap()
    };

    let shrunk = alter(
        leader,
        state.leader_epoch,
        state.partition_epoch,
        vec![state.leader],
    )
    .unwrap();
    assert_eq!(shrunk.isr, vec![state.leader]);
    assert_eq!(shrunk.leader, state.leader);
    assert_eq!(shrunk.leader_epoch, state.leader_epoch);
    assert_eq!(shrunk.partition_epoch, state.partition_epoch + 1);
    // Answered only after this node's shards applied it.
    assert_eq!(leader.handle.snapshot().partition("t", 0), Some(&shrunk));

    let stale = alter(
        leader,
        state.leader_epoch,
        state.partition_epoch,
        state.isr.clone(),
    );
    assert_eq!(code(&stale), ErrorCode::InvalidUpdateVersion);
    let fenced = alter(
        leader,
        state.leader_epoch + 1,
        shrunk.partition_epoch,
        state.isr.clone(),
    );
    assert_eq!(code(&fenced), ErrorCode::FencedLeaderEpoch);
    let not_leader = alter(
        cluster.node(follower),
        state.leader_epoch,
        shrunk.partition_epoch,
        state.isr.clone(),
    );
    assert_eq!(code(&not_leader), ErrorCode::NotLeaderOrFollower);
    let unknown = block_on(leader.handle.alter_isr("nope".into(), 0, 0, 0, vec![1])).unwrap();
    assert_eq!(code(&unknown), ErrorCode::UnknownTopicOrPartition);

    let expanded = alter(
        leader,
        state.leader_epoch,
        shrunk.partition_epoch,
        state.isr.clone(),
    )
    .unwrap();
    assert_eq!(expanded.isr, state.isr);
    cluster.node(follower).wait("the expanded ISR", |s| {
        s.partition("t", 0) == Some(&expanded)
    });
    cluster.stop_all();
}

#[test]
fn producer_id_blocks_never_overlap() {
    let cluster = Cluster::start(2, |_| {});
    let ids = Arc::new(Mutex::new(BTreeSet::new()));
    let per_node = 1_100;
    let threads: Vec<_> = cluster
        .nodes
        .values()
        .map(|node| {
            let handle = node.handle.clone();
            let ids = ids.clone();
            std::thread::spawn(move || {
                for _ in 0..per_node {
                    let id = block_on(handle.allocate_producer_id()).unwrap().unwrap();
                    assert!(ids.lock().unwrap().insert(id), "producer id {id} twice");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(ids.lock().unwrap().len(), 2 * per_node);
    let block = zk_get(&cluster.zookeeper, "/latest_producer_id_block").unwrap();
    assert!(
        block.contains(r#""block_start":"3000","block_end":"3999""#),
        "{block}"
    );
    cluster.stop_all();
}

#[test]
fn delete_topic() {
    let cluster = Cluster::start(2, |_| {});
    let node = cluster.node(2);
    let created = node.create(vec![topic("gone", 2, 2)]);
    let id = created[0].as_ref().unwrap().id;
    let answers = block_on(
        node.handle
            .delete_topics(vec!["gone".into(), "nope".into()]),
    )
    .unwrap();
    assert_eq!(answers[0], Ok(id));
    assert_eq!(code(&answers[1]), ErrorCode::UnknownTopicOrPartition);
    assert!(node.handle.snapshot().topic("gone").is_none());
    cluster
        .node(1)
        .wait("the topic gone", |s| s.topic("gone").is_none());
    assert!(zk_get(&cluster.zookeeper, "/brokers/topics/gone").is_none());
    assert!(zk_get(&cluster.zookeeper, "/config/topics/gone").is_none());
    assert!(zk_get(&cluster.zookeeper, "/admin/delete_topics/gone").is_none());
    // The name is free again.
    let again = node.create(vec![topic("gone", 1, 1)]);
    assert_ne!(again[0].as_ref().unwrap().id, id);
    cluster.stop_all();
}

#[test]
fn start_up_errors() {
    let cluster = Cluster::start(1, |_| {});
    let dir = tempfile::tempdir().unwrap();
    // A live broker's id: refused once a session timeout has passed without the
    // registration vanishing (it could have been a crashed session's leftover).
    let same_id = BrokerConfig {
        zookeeper_session_timeout_ms: 1_000,
        ..config(&cluster.zookeeper, 1, dir.path())
    };
    let error = start(&same_id, endpoint(1), 1).unwrap_err();
    assert!(
        matches!(error, CoordinationError::BrokerIdInUse(1)),
        "{error}"
    );

    let other: PathBuf = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(
        other.join("meta.properties"),
        "version=0\nbroker.id=5\ncluster.id=AAAAAAAAAAAAAAAAAAAAAA\n",
    )
    .unwrap();
    let error = start(&config(&cluster.zookeeper, 5, &other), endpoint(5), 1).unwrap_err();
    assert!(error.to_string().contains("does not match"), "{error}");

    let nowhere = BrokerConfig {
        zookeeper_connect: Some(format!("127.0.0.1:{}", free_port())),
        zookeeper_connection_timeout_ms: 1_000,
        ..config(&cluster.zookeeper, 6, dir.path())
    };
    let started = Instant::now();
    let error = start(&nowhere, endpoint(6), 1).unwrap_err();
    assert!(
        matches!(error, CoordinationError::ZooKeeper { .. }),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    cluster.stop_all();
}
