//! A real ZooKeeper and a cluster of `sluice` brokers on 127.0.0.1, for the cluster
//! tests, and a client that behaves as a Kafka client does while brokers die: it
//! bootstraps from every broker address, follows partition leaders through Metadata and
//! retries retriable errors and broken connections.
//!
//! - [`ZooKeeper`]: one standalone ZooKeeper server from the Debian package (`java` +
//!   `/usr/share/java/zookeeper.jar`), on a free port with its own data directory.
//! - [`Cluster`]: n `sluice serve` processes with broker ids 1..=n, each with its own
//!   log dir and a port it keeps across restarts, registered in ZooKeeper under the
//!   chroot `/sluice`; `kill`/`restart` one broker; `wait_for` a Metadata condition.
//! - [`ClusterClient`]: Metadata, CreateTopics, Produce, Fetch and ListOffsets routed to
//!   partition leaders, on `sluice_client`'s blocking `Connection`.
//!
//! Everything runs on the test's threads over std sockets; processes are killed when
//! their owner is dropped, so a failing test leaves nothing running.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use kafka_protocol::messages::CreateTopicsRequest;
use sluice_client::records::{decode_records, encode_batch};
use sluice_client::{
    ClientConfig, ClusterMetadata, Connection, ConsumerRecord, KafkaError, PartitionMetadata,
    ProducerRecord,
};
use tempfile::TempDir;

use super::{
    creatable_topic, fetch_answer, fetch_request, list_offsets_answer, list_offsets_request,
    produce_answer, produce_request, Broker, LATEST_TIMESTAMP,
};

/// The Debian package's ZooKeeper: its jar names every dependency in its manifest.
const ZOOKEEPER_CLASSPATH: &str = "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar";
const ZOOKEEPER_MAIN: &str = "org.apache.zookeeper.server.ZooKeeperServerMain";
/// How long ZooKeeper (a JVM) may take to answer `ruok`.
pub const ZOOKEEPER_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// ZooKeeper's tick: sessions may time out from 2 ticks (1 s).
const ZOOKEEPER_TICK_MS: u64 = 500;
/// The chroot every broker of a [`Cluster`] uses.
pub const CHROOT: &str = "/sluice";

/// Broker session timeout: a SIGKILLed broker's znode disappears this long after its
/// death, so failovers take a few seconds.
pub const SESSION_TIMEOUT_MS: u64 = 4_000;
/// A follower that has not caught up for this long leaves the ISR.
pub const REPLICA_LAG_TIME_MAX_MS: u64 = 3_000;
/// Shards per broker: two, so partitions and follower fetchers live on several shards.
pub const BROKER_CORES: usize = 2;
/// How long a failover (session expiry, election, new metadata everywhere) may take.
pub const FAILOVER_TIMEOUT: Duration = Duration::from_secs(40);
/// How long a cluster change without a broker death may take to show in Metadata
/// (topic creation, ISR expansion after a restart).
pub const CHANGE_TIMEOUT: Duration = Duration::from_secs(40);
/// Pause between two polls of a condition.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Pause before retrying a request after a retriable error (a client's retry.backoff.ms).
const RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// Kafka error codes the cluster tests check, beyond those in `super::error_code`.
pub mod code {
    pub const NONE: i16 = 0;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const LEADER_NOT_AVAILABLE: i16 = 5;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const NOT_ENOUGH_REPLICAS: i16 = 19;
    pub const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
    pub const NOT_CONTROLLER: i16 = 41;
}

/// A free TCP port on 127.0.0.1: bound, read and released. Another process may take it
/// before it is used; the window is short.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A standalone ZooKeeper server. Killed (SIGKILL) on drop.
pub struct ZooKeeper {
    child: Option<Child>,
    pub port: u16,
    dir: TempDir,
}

impl ZooKeeper {
    /// Starts ZooKeeper on a free port with a fresh data directory and waits until it
    /// answers `ruok` with `imok` and serves requests.
    pub fn start() -> Result<ZooKeeper> {
        let dir = tempfile::tempdir()?;
        let port = free_port()?;
        let data_dir = dir.path().join("data");
        fs::create_dir_all(&data_dir)?;
        let config_path = dir.path().join("zoo.cfg");
        fs::write(
            &config_path,
            format!(
                "tickTime={ZOOKEEPER_TICK_MS}\n\
                 dataDir={}\n\
                 clientPort={port}\n\
                 clientPortAddress=127.0.0.1\n\
                 maxClientCnxns=0\n\
                 admin.enableServer=false\n\
                 4lw.commands.whitelist=*\n",
                data_dir.display()
            ),
        )?;
        let log = fs::File::create(dir.path().join("zookeeper.log"))?;
        let child = Command::new("java")
            // A small heap and the client compiler: starts faster, weighs less on the
            // machine that also runs the brokers.
            .args(["-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"])
            .arg("-cp")
            .arg(ZOOKEEPER_CLASSPATH)
            .arg(ZOOKEEPER_MAIN)
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawning ZooKeeper (java; is the Debian package zookeeper installed?)")?;
        let mut zk = ZooKeeper {
            child: Some(child),
            port,
            dir,
        };
        let deadline = Instant::now() + ZOOKEEPER_READY_TIMEOUT;
        loop {
            // `imok` only says the process runs; `srvr` names a mode once it serves.
            let running = zk.four_letter_word("ruok").is_ok_and(|a| a == "imok");
            if running
                && zk
                    .four_letter_word("srvr")
                    .is_ok_and(|a| a.contains("Mode: "))
            {
                return Ok(zk);
            }
            if let Some(status) = zk.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!(
                    "ZooKeeper exited with {status} before it was ready:\n{}",
                    zk.log_tail()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "ZooKeeper did not answer ruok within {ZOOKEEPER_READY_TIMEOUT:?}:\n{}",
                    zk.log_tail()
                );
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    /// `127.0.0.1:<port>`, without a chroot.
    pub fn connect_string(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Sends a four-letter command (`ruok`, `srvr`, `cons`, `dump`, ...) and returns the
    /// whole answer.
    pub fn four_letter_word(&self, command: &str) -> Result<String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(command.as_bytes())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    }

    /// The last lines ZooKeeper logged, for error messages.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(self.dir.path().join("zookeeper.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for ZooKeeper {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One broker of a [`Cluster`]: its id, the port it keeps across restarts, its log dir,
/// and the process while it runs.
struct Node {
    id: i32,
    port: u16,
    dir: TempDir,
    broker: Option<Broker>,
}

/// n brokers with ids 1..=n sharing one ZooKeeper. Every broker is killed on drop.
pub struct Cluster {
    nodes: Vec<Node>,
    /// Every `--override` each broker gets besides `broker.id`, `listeners`, `log.dirs`.
    overrides: Vec<(String, String)>,
}

impl Cluster {
    /// Starts `n` brokers against `zk` (chroot [`CHROOT`]) with the cluster test
    /// settings (short session timeout, ISR lag time and leader rebalance interval, a
    /// small replicated `__consumer_offsets`) plus `extra` overrides, which win over them.
    /// Returns once every broker has printed its ready line.
    pub fn start(n: usize, zk: &ZooKeeper, extra: &[(&str, &str)]) -> Result<Cluster> {
        ensure!(n >= 1, "a cluster needs a broker");
        let mut overrides: BTreeMap<String, String> = [
            (
                "zookeeper.connect",
                format!("{}{CHROOT}", zk.connect_string()),
            ),
            (
                "zookeeper.session.timeout.ms",
                SESSION_TIMEOUT_MS.to_string(),
            ),
            ("zookeeper.connection.timeout.ms", "10000".to_owned()),
            (
                "replica.lag.time.max.ms",
                REPLICA_LAG_TIME_MAX_MS.to_string(),
            ),
            ("offsets.topic.replication.factor", n.min(3).to_string()),
            ("offsets.topic.num.partitions", "4".to_owned()),
            ("group.initial.rebalance.delay.ms", "0".to_owned()),
            ("leader.imbalance.check.interval.seconds", "2".to_owned()),
            // Brokers never create topics behind a test's back.
            ("auto.create.topics.enable", "false".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (key, value) in extra {
            overrides.insert((*key).to_owned(), (*value).to_owned());
        }
        let mut cluster = Cluster {
            nodes: Vec::with_capacity(n),
            overrides: overrides.into_iter().collect(),
        };
        for id in 1..=n {
            cluster.nodes.push(Node {
                id: i32::try_from(id)?,
                port: 0,
                dir: tempfile::tempdir()?,
                broker: None,
            });
        }
        // Start them all at once: each waits for ZooKeeper and its ready line.
        let started: Vec<Result<Broker>> = thread::scope(|scope| {
            let handles: Vec<_> = cluster
                .nodes
                .iter()
                .map(|node| {
                    let (dir, id) = (node.dir.path().to_path_buf(), node.id);
                    let overrides = &cluster.overrides;
                    scope.spawn(move || launch(id, &dir, 0, overrides))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(anyhow!("launcher panicked")))
                })
                .collect()
        });
        for (node, broker) in cluster.nodes.iter_mut().zip(started) {
            let broker = broker.with_context(|| format!("starting broker {}", node.id))?;
            node.port = broker.addr.port();
            node.broker = Some(broker);
        }
        Ok(cluster)
    }

    /// Every broker id, running or not.
    pub fn ids(&self) -> Vec<i32> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// Ids of the brokers whose process runs.
    pub fn live_ids(&self) -> Vec<i32> {
        self.nodes
            .iter()
            .filter(|n| n.broker.is_some())
            .map(|n| n.id)
            .collect()
    }

    pub fn addr(&self, id: i32) -> Result<SocketAddr> {
        Ok(SocketAddr::from(([127, 0, 0, 1], self.node(id)?.port)))
    }

    /// Every broker's address, running or not (as a client's bootstrap list would be).
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.nodes
            .iter()
            .map(|n| SocketAddr::from(([127, 0, 0, 1], n.port)))
            .collect()
    }

    /// The running brokers' addresses, comma-separated, for `sluice_client::Client`.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .filter(|n| n.broker.is_some())
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn node(&self, id: i32) -> Result<&Node> {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .with_context(|| format!("no broker {id} in the cluster"))
    }

    fn node_mut(&mut self, id: i32) -> Result<&mut Node> {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .with_context(|| format!("no broker {id} in the cluster"))
    }

    /// SIGKILLs broker `id` and waits for the process to be gone.
    pub fn kill(&mut self, id: i32) -> Result<()> {
        let node = self.node_mut(id)?;
        let mut broker = node
            .broker
            .take()
            .with_context(|| format!("broker {id} is not running"))?;
        broker.kill9()?;
        Ok(())
    }

    /// Starts broker `id` again on its log dir and port.
    pub fn restart(&mut self, id: i32) -> Result<()> {
        let overrides = self.overrides.clone();
        let node = self.node_mut(id)?;
        ensure!(node.broker.is_none(), "broker {id} is running");
        let broker = launch(id, node.dir.path(), node.port, &overrides)
            .with_context(|| format!("restarting broker {id}"))?;
        ensure!(
            broker.addr.port() == node.port,
            "broker {id} came back on port {} instead of {}",
            broker.addr.port(),
            node.port
        );
        node.broker = Some(broker);
        Ok(())
    }

    /// A client bootstrapping from every broker address.
    pub fn client(&self) -> ClusterClient {
        ClusterClient::new(self.addrs())
    }

    /// A `sluice_client::Client` bootstrapped from the running brokers (for the group
    /// protocol).
    pub fn sluice_client(&self) -> Result<sluice_client::Client> {
        Ok(sluice_client::Client::connect(
            &self.bootstrap(),
            client_config(),
        )?)
    }

    /// Metadata of every topic as broker `id` answers it.
    pub fn metadata_from(&self, id: i32) -> Result<ClusterMetadata> {
        let addr = self.addr(id)?;
        let mut client = sluice_client::Client::connect(&addr.to_string(), client_config())?;
        Ok(client.metadata(None, false)?)
    }

    /// Polls Metadata from the running brokers in turn until one answer satisfies
    /// `condition`; returns that answer. Fails after `timeout`, showing the last answer.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        condition: impl Fn(&ClusterMetadata) -> bool,
    ) -> Result<ClusterMetadata> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no answer");
        for round in 0.. {
            let live = self.live_ids();
            ensure!(!live.is_empty(), "waiting for {what}: no broker is running");
            let id = live[round % live.len()];
            match self.metadata_from(id) {
                Ok(metadata) if condition(&metadata) => return Ok(metadata),
                Ok(metadata) => last = format!("broker {id}: {}", describe(&metadata)),
                Err(e) => last = format!("broker {id}: {e:#}"),
            }
            if Instant::now() >= deadline {
                break;
            }
            thread::sleep(POLL_INTERVAL);
        }
        bail!("timed out after {timeout:?} waiting for {what}; last metadata from {last}")
    }

    /// As [`Cluster::wait_for`], until every running broker's answer satisfies
    /// `condition` in one round; returns the answers by broker id.
    pub fn wait_for_all(
        &self,
        what: &str,
        timeout: Duration,
        condition: impl Fn(&ClusterMetadata) -> bool,
    ) -> Result<BTreeMap<i32, ClusterMetadata>> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no answer");
        loop {
            let mut answers = BTreeMap::new();
            for id in self.live_ids() {
                match self.metadata_from(id) {
                    Ok(metadata) if condition(&metadata) => {
                        answers.insert(id, metadata);
                    }
                    Ok(metadata) => {
                        last = format!("broker {id}: {}", describe(&metadata));
                        break;
                    }
                    Err(e) => {
                        last = format!("broker {id}: {e:#}");
                        break;
                    }
                }
            }
            if answers.len() == self.live_ids().len() {
                return Ok(answers);
            }
            if Instant::now() >= deadline {
                bail!(
                    "timed out after {timeout:?} waiting for every broker to show {what}; \
                     last metadata from {last}"
                );
            }
            thread::sleep(POLL_INTERVAL);
        }
    }
}

/// Starts one broker of a cluster.
fn launch(
    id: i32,
    dir: &std::path::Path,
    port: u16,
    overrides: &[(String, String)],
) -> Result<Broker> {
    let id_string = id.to_string();
    let mut all: Vec<(&str, &str)> = vec![("broker.id", id_string.as_str())];
    all.extend(overrides.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    Broker::start_with(dir, &all, port, BROKER_CORES, &format!("broker {id}"))
}

fn client_config() -> ClientConfig {
    ClientConfig {
        client_id: "sluice-cluster-tests".to_owned(),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(20),
    }
}

/// One partition of `metadata`, if the topic and partition exist.
pub fn partition<'a>(
    metadata: &'a ClusterMetadata,
    topic: &str,
    partition: i32,
) -> Option<&'a PartitionMetadata> {
    metadata
        .topics
        .get(topic)?
        .partitions
        .iter()
        .find(|p| p.partition == partition)
}

/// `ids` sorted, to compare replica sets.
pub fn sorted(ids: &[i32]) -> Vec<i32> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids
}

/// True when every partition of `topic` (which has `partitions` partitions) has
/// `replication_factor` replicas, a leader among them and every replica in its ISR.
pub fn fully_replicated(
    metadata: &ClusterMetadata,
    topic: &str,
    partitions: usize,
    replication_factor: usize,
) -> bool {
    let Some(t) = metadata.topics.get(topic) else {
        return false;
    };
    t.error_code == code::NONE
        && t.partitions.len() == partitions
        && t.partitions.iter().all(|p| {
            p.error_code == code::NONE
                && p.replicas.len() == replication_factor
                && p.replicas.contains(&p.leader)
                && sorted(&p.isr) == sorted(&p.replicas)
        })
}

/// A one-line summary of the metadata, for failure messages.
pub fn describe(metadata: &ClusterMetadata) -> String {
    let mut out = format!(
        "controller {} brokers {:?}",
        metadata.controller_id,
        metadata.brokers.keys().collect::<Vec<_>>()
    );
    for topic in metadata.topics.values() {
        out.push_str(&format!("; {} (error {})", topic.name, topic.error_code));
        for p in &topic.partitions {
            out.push_str(&format!(
                " [p{} leader {} epoch {} replicas {:?} isr {:?}{}]",
                p.partition,
                p.leader,
                p.leader_epoch,
                p.replicas,
                p.isr,
                if p.error_code == 0 {
                    String::new()
                } else {
                    format!(" error {}", p.error_code)
                }
            ));
        }
    }
    out
}

/// A record whose value is `value` (no key), as the tests number them.
pub fn value_record(value: &str) -> ProducerRecord {
    ProducerRecord {
        key: None,
        value: Some(bytes::Bytes::copy_from_slice(value.as_bytes())),
        headers: Vec::new(),
        timestamp_ms: 1_700_000_000_000,
    }
}

/// The value of a fetched record as text.
pub fn value_of(record: &ConsumerRecord) -> String {
    record
        .value
        .as_ref()
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

/// What one Fetch of one partition returned.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub error_code: i16,
    pub high_watermark: i64,
    pub records: Vec<ConsumerRecord>,
}

/// A Kafka client of a cluster that survives broker deaths: Metadata from whichever
/// bootstrap address answers, requests routed to leaders, one connection per broker
/// reopened after an error. Used by one thread at a time (it is `Send`).
pub struct ClusterClient {
    bootstrap: Vec<SocketAddr>,
    /// Which bootstrap address to try first for the next Metadata.
    next_bootstrap: usize,
    metadata: ClusterMetadata,
    connections: BTreeMap<i32, Connection>,
}

impl ClusterClient {
    pub fn new(bootstrap: Vec<SocketAddr>) -> ClusterClient {
        assert!(!bootstrap.is_empty(), "a client needs a bootstrap address");
        ClusterClient {
            bootstrap,
            next_bootstrap: 0,
            metadata: ClusterMetadata::default(),
            connections: BTreeMap::new(),
        }
    }

    /// Asks the bootstrap addresses in turn for the metadata of every topic; the first
    /// answer is cached and returned. Connections to brokers are reopened afterwards.
    pub fn refresh(&mut self) -> Result<&ClusterMetadata> {
        let mut errors = Vec::new();
        for _ in 0..self.bootstrap.len() {
            let addr = self.bootstrap[self.next_bootstrap % self.bootstrap.len()];
            self.next_bootstrap = (self.next_bootstrap + 1) % self.bootstrap.len();
            let answer = sluice_client::Client::connect(&addr.to_string(), client_config())
                .and_then(|mut c| c.metadata(None, false));
            match answer {
                Ok(metadata) => {
                    // A broker restarted on its old address leaves a dead connection
                    // behind: reconnect to every broker after a refresh.
                    self.connections.clear();
                    self.metadata = metadata;
                    return Ok(&self.metadata);
                }
                Err(e) => errors.push(format!("{addr}: {e}")),
            }
        }
        bail!(
            "no bootstrap broker answered Metadata: {}",
            errors.join("; ")
        )
    }

    /// The metadata of the last refresh.
    pub fn metadata(&self) -> &ClusterMetadata {
        &self.metadata
    }

    /// The leader of `topic`-`partition` in the cached metadata.
    pub fn leader(&self, topic: &str, p: i32) -> Option<i32> {
        partition(&self.metadata, topic, p)
            .map(|p| p.leader)
            .filter(|l| *l >= 0)
    }

    /// The connection to broker `id` (address from the cached metadata), opened on
    /// first use.
    pub fn connection(&mut self, id: i32) -> Result<&mut Connection> {
        if !self.connections.contains_key(&id) {
            if !self.metadata.brokers.contains_key(&id) {
                self.refresh()?;
            }
            let info = self
                .metadata
                .brokers
                .get(&id)
                .with_context(|| format!("broker {id} is not in the metadata"))?;
            let conn = Connection::connect(&info.address(), &client_config())?;
            self.connections.insert(id, conn);
        }
        Ok(self.connections.get_mut(&id).expect("inserted above"))
    }

    /// Runs `request` on broker `id`'s connection, dropping the connection on an error
    /// so the next request reconnects.
    fn on_broker<T>(
        &mut self,
        id: i32,
        api: &str,
        request: impl FnOnce(&mut Connection) -> sluice_client::Result<T>,
    ) -> Result<T> {
        let connection = self
            .connection(id)
            .with_context(|| format!("connecting to broker {id} for {api}"))?;
        let result = request(connection);
        if result.is_err() {
            self.connections.remove(&id);
        }
        result.with_context(|| format!("{api} to broker {id}"))
    }

    /// CreateTopics sent to the controller (retrying while the controller moves);
    /// returns the topic's error code.
    pub fn create_topic(
        &mut self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(&str, &str)],
    ) -> Result<i16> {
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![creatable_topic(
                name,
                partitions,
                replication_factor,
                configs,
            )]);
        let deadline = Instant::now() + CHANGE_TIMEOUT;
        loop {
            let controller = self.refresh()?.controller_id;
            let target = if controller >= 0 {
                controller
            } else {
                *self
                    .metadata
                    .brokers
                    .keys()
                    .next()
                    .context("the metadata lists no broker")?
            };
            let answer = self.on_broker(target, "CreateTopics", |c| c.send(&request));
            let error = match answer {
                Ok((_, response)) => {
                    let result = response
                        .topics
                        .first()
                        .context("no topic in the CreateTopics answer")?;
                    if result.error_code == code::NONE
                        || !KafkaError::new(result.error_code, None).is_retriable()
                    {
                        return Ok(result.error_code);
                    }
                    format!("error {}", result.error_code)
                }
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                bail!("creating {name}: still failing after {CHANGE_TIMEOUT:?}: {error}");
            }
            thread::sleep(RETRY_BACKOFF);
        }
    }

    /// As [`ClusterClient::create_topic`], requiring success.
    pub fn create_topic_ok(
        &mut self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: &[(&str, &str)],
    ) -> Result<()> {
        let error = self.create_topic(name, partitions, replication_factor, configs)?;
        ensure!(error == code::NONE, "creating {name}: error {error}");
        Ok(())
    }

    /// One Produce of `records` (one batch) to broker `broker`; returns (error code,
    /// base offset). Connection errors are errors.
    pub fn produce_to(
        &mut self,
        broker: i32,
        topic: &str,
        p: i32,
        records: &[ProducerRecord],
        acks: i16,
    ) -> Result<(i16, i64)> {
        let request =
            produce_request(topic, p, encode_batch(records)?, acks).with_timeout_ms(10_000);
        let (_, response) = self.on_broker(broker, "Produce", |c| c.send(&request))?;
        let answer = produce_answer(&response, topic, p)?;
        Ok((answer.error_code, answer.base_offset))
    }

    /// One Produce to the partition's leader as the cached (or, if it has none, fresh)
    /// metadata names it; returns (leader, error code, base offset).
    pub fn produce_once(
        &mut self,
        topic: &str,
        p: i32,
        records: &[ProducerRecord],
        acks: i16,
    ) -> Result<(i32, i16, i64)> {
        let leader = match self.leader(topic, p) {
            Some(leader) => leader,
            None => {
                self.refresh()?;
                self.leader(topic, p)
                    .with_context(|| format!("{topic}-{p} has no leader"))?
            }
        };
        let (error, base_offset) = self.produce_to(leader, topic, p, records, acks)?;
        Ok((leader, error, base_offset))
    }

    /// Produces `records` to the partition's leader until it is acknowledged, as a Kafka
    /// producer with retries does: on a retriable error or a broken connection it
    /// refreshes the metadata and sends again (so a record may be written twice). Returns
    /// the base offset; fails on a non-retriable error or after `timeout`.
    pub fn produce(
        &mut self,
        topic: &str,
        p: i32,
        records: &[ProducerRecord],
        acks: i16,
        timeout: Duration,
    ) -> Result<i64> {
        let deadline = Instant::now() + timeout;
        loop {
            let failure = match self.produce_once(topic, p, records, acks) {
                Ok((_, code::NONE, base_offset)) => return Ok(base_offset),
                Ok((leader, error, _)) => {
                    if !KafkaError::new(error, None).is_retriable() {
                        bail!("producing to {topic}-{p} (leader {leader}): error {error}");
                    }
                    format!("leader {leader}: error {error}")
                }
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                bail!("producing to {topic}-{p}: not acknowledged within {timeout:?}: {failure}");
            }
            thread::sleep(RETRY_BACKOFF);
            // A refresh failing (every broker down for a moment) is retried as well.
            let _ = self.refresh();
        }
    }

    /// One consumer Fetch of one partition from broker `broker`.
    pub fn fetch_from(
        &mut self,
        broker: i32,
        topic: &str,
        p: i32,
        offset: i64,
        max_wait_ms: i32,
    ) -> Result<Fetched> {
        let request = fetch_request(topic, p, offset, max_wait_ms);
        let wait = Duration::from_millis(u64::try_from(max_wait_ms).unwrap_or(0));
        let (_, response) = self.on_broker(broker, "Fetch", |c| c.send_waiting(&request, wait))?;
        let data =
            fetch_answer(&response, p).with_context(|| format!("Fetch from broker {broker}"))?;
        let records = match (&data.records, data.error_code) {
            (Some(bytes), code::NONE) => decode_records(p, bytes.clone(), offset)?,
            _ => Vec::new(),
        };
        Ok(Fetched {
            error_code: data.error_code,
            high_watermark: data.high_watermark,
            records,
        })
    }

    /// Reads `topic`-`p` from `from_offset` up to the high watermark from broker
    /// `broker`, which must lead the partition. Returns the records and the high
    /// watermark.
    pub fn read_from(
        &mut self,
        broker: i32,
        topic: &str,
        p: i32,
        from_offset: i64,
    ) -> Result<(Vec<ConsumerRecord>, i64)> {
        let mut records = Vec::new();
        let mut offset = from_offset;
        let deadline = Instant::now() + CHANGE_TIMEOUT;
        loop {
            let fetched = self.fetch_from(broker, topic, p, offset, 0)?;
            ensure!(
                fetched.error_code == code::NONE,
                "fetching {topic}-{p}@{offset} from broker {broker}: error {}",
                fetched.error_code
            );
            if offset >= fetched.high_watermark {
                return Ok((records, fetched.high_watermark));
            }
            ensure!(
                !fetched.records.is_empty() || Instant::now() < deadline,
                "no progress reading {topic}-{p} at {offset} from broker {broker} \
                 (high watermark {})",
                fetched.high_watermark
            );
            for record in fetched.records {
                ensure!(
                    record.offset == offset,
                    "{topic}-{p}: offset {} where {offset} was expected",
                    record.offset
                );
                offset += 1;
                records.push(record);
            }
        }
    }

    /// Reads `topic`-`p` from `from_offset` up to the high watermark from whichever
    /// broker leads it, following leader changes as a consumer does. Returns the records
    /// and the leader that answered.
    pub fn read(
        &mut self,
        topic: &str,
        p: i32,
        from_offset: i64,
        timeout: Duration,
    ) -> Result<(Vec<ConsumerRecord>, i32)> {
        let deadline = Instant::now() + timeout;
        loop {
            let attempt = match self.leader(topic, p) {
                Some(leader) => self
                    .read_from(leader, topic, p, from_offset)
                    .map(|(records, _)| (records, leader)),
                None => Err(anyhow!("{topic}-{p} has no leader")),
            };
            match attempt {
                Ok(answer) => return Ok(answer),
                Err(e) if Instant::now() >= deadline => {
                    return Err(e.context(format!("reading {topic}-{p} for {timeout:?}")))
                }
                Err(_) => {
                    thread::sleep(RETRY_BACKOFF);
                    let _ = self.refresh();
                }
            }
        }
    }

    /// ListOffsets (latest) of `topic`-`p` asked of broker `broker`; returns (error
    /// code, offset).
    pub fn latest_offset_from(&mut self, broker: i32, topic: &str, p: i32) -> Result<(i16, i64)> {
        let request = list_offsets_request(topic, p, LATEST_TIMESTAMP);
        let (_, response) = self.on_broker(broker, "ListOffsets", |c| c.send(&request))?;
        let answer = list_offsets_answer(&response, p)?;
        Ok((answer.error_code, answer.offset))
    }
}
