//! The cluster control plane: Kafka's ZooKeeper mode behind the same [`ControlHandle`]
//! and snapshot protocol as the single-node store.
//!
//! One std thread ("sluice-control") runs a tokio current-thread runtime that drives
//! the ZooKeeper session and a single loop ([`ZkControl::run`]); shards never touch
//! ZooKeeper. The loop waits for control requests, ZooKeeper watch events (one
//! persistent recursive watch on the root), timers and the stop signal:
//!
//! - Every burst of watch events (drained, then coalesced) re-reads the whole cluster
//!   view ([`view::read_view`]); if it differs from the last published snapshot, a new
//!   [`MetadataSnapshot`] (version + 1) goes to every shard and the loop waits for all
//!   acknowledgements before it publishes it as [`ControlHandle::snapshot`].
//! - The broker whose ephemeral `/controller` create succeeds is the controller; it
//!   bumps `/controller_epoch` and, after each read, brings every partition state in
//!   line with the live brokers ([`election::reconcile`]), creates the states of new
//!   partitions and carries out queued topic deletions. Its writes are multi-ops that
//!   check the `/controller_epoch` version (a deposed controller's write fails) and
//!   compare-and-set the state znode's version.
//! - Requests write to ZooKeeper, re-read, and are answered once the applied snapshot
//!   shows the outcome (leaders elected, topic gone, new ISR), or time out.
//!
//! Invariants: snapshot versions grow by one per published change; a reply leaves only
//! after every shard applied a snapshot that contains its change; every partition
//! state write is a compare-and-set on the znode version.

mod assign;
mod election;
mod view;
mod znodes;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice_core::config::BrokerConfig;
use sluice_core::ErrorCode;
use sluice_rt::sync::{bounded, oneshot, unbounded, Receiver, Sender};
use tokio::time::Instant;
use zookeeper_client::{
    Acls, AddWatchMode, Client, CreateMode, CreateOptions, EventType, PersistentWatcher,
    SessionState, WatchedEvent,
};

use self::election::LeaderAndIsr;
use self::view::{ClusterView, NO_STATE};
use self::znodes::{
    ClusterIdZnode, ConfigZnode, ControllerZnode, ProducerIdBlockZnode, StateZnode, TopicZnode,
};
use crate::control::{
    shard_channels, topic_id, ControlHandle, ControlRequest, SnapshotUpdate, Started,
    PRODUCER_ID_BLOCK_SIZE,
};
use crate::error::{ControlError, CoordinationError};
use crate::metadata::{BrokerEndpoint, MetadataSnapshot, NewTopic, PartitionState, TopicMetadata};
use crate::rules;

/// How long CreateTopics, CreatePartitions and DeleteTopics wait for the cluster to
/// show their outcome before answering REQUEST_TIMED_OUT.
const REQUEST_WAIT: Duration = Duration::from_secs(30);
/// Pause before retrying after a failed ZooKeeper read or session set-up.
const RETRY_BACKOFF: Duration = Duration::from_secs(1);
/// Read-act passes of one refresh before the loop takes other work again.
const MAX_REFRESH_PASSES: usize = 8;
/// How long a shutdown waits for ZooKeeper to confirm the session's close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

const PERSISTENT: CreateOptions<'static> = CreateMode::Persistent.with_acls(Acls::anyone_all());
const EPHEMERAL: CreateOptions<'static> = CreateMode::Ephemeral.with_acls(Acls::anyone_all());

type ZkResult<T> = Result<T, zookeeper_client::Error>;

/// Starts the cluster control plane (see the module doc). Returns once this broker is
/// registered and every shard has been sent the initial snapshot, or with the reason
/// it cannot join the cluster (ZooKeeper unreachable, cluster id mismatch, broker id
/// in use).
pub(crate) fn start(
    config: &BrokerConfig,
    advertised: BrokerEndpoint,
    shard_count: usize,
) -> Result<Started, CoordinationError> {
    let (shard_senders, shard_receivers) = shard_channels(shard_count);
    let (requests, request_receiver) = unbounded();
    let (stop, stop_receiver) = bounded(1);
    let (ready_sender, ready) = std::sync::mpsc::channel();
    let config = config.clone();
    let thread = std::thread::Builder::new()
        .name("sluice-control".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = ready_sender.send(Err(CoordinationError::Spawn(error)));
                    return;
                }
            };
            runtime.block_on(async move {
                let session = match Session::open(&config, &advertised).await {
                    Ok(session) => session,
                    Err(error) => {
                        let _ = ready_sender.send(Err(error));
                        return;
                    }
                };
                let view = match view::read_view(&session.client, &config).await {
                    Ok(view) => view,
                    Err(source) => {
                        let _ = ready_sender.send(Err(CoordinationError::ZooKeeper {
                            path: "/".into(),
                            source,
                        }));
                        return;
                    }
                };
                let initial = Arc::new(MetadataSnapshot::new(
                    1,
                    session.cluster_id.clone(),
                    view.controller_id,
                    view.brokers.values().cloned().collect(),
                    view.topics,
                ));
                let latest = Arc::new(RwLock::new(initial.clone()));
                let mut control = ZkControl {
                    config,
                    broker: advertised,
                    session,
                    session_alive: true,
                    version: 1,
                    shards: shard_senders,
                    latest: latest.clone(),
                    applied: initial.clone(),
                    stop: stop_receiver,
                    stopping: false,
                    dirty: true,
                    retry_at: None,
                    controller: None,
                    waiters: Vec::new(),
                    producer_ids: None,
                    next_rebalance: None,
                };
                let _ = ready_sender.send(Ok(latest));
                let acks = control.push(&initial);
                if control.wait_for_acks(acks).await {
                    control.run(request_receiver).await;
                }
                control.close().await;
                tracing::info!("control thread stopped");
            });
        })
        .map_err(CoordinationError::Spawn)?;
    match ready.recv() {
        Ok(Ok(latest)) => Ok((
            ControlHandle::new(requests, stop, latest),
            shard_receivers,
            thread,
        )),
        Ok(Err(error)) => {
            let _ = thread.join();
            Err(error)
        }
        Err(_) => {
            let _ = thread.join();
            Err(CoordinationError::Stopped)
        }
    }
}

/// `host:port[,host:port...][/chroot]` -> `(hosts, chroot)`.
fn split_chroot(connect: &str) -> (&str, Option<&str>) {
    match connect.find('/') {
        Some(i) if connect.len() > i + 1 => (&connect[..i], Some(&connect[i..])),
        Some(i) => (&connect[..i], None),
        None => (connect, None),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn zk_error(path: &str) -> impl FnOnce(zookeeper_client::Error) -> CoordinationError + '_ {
    move |source| CoordinationError::ZooKeeper {
        path: path.to_string(),
        source,
    }
}

/// A ZooKeeper error inside a request: the client sees UNKNOWN_SERVER_ERROR.
fn server_error(path: &str, error: zookeeper_client::Error) -> ControlError {
    tracing::warn!(path, %error, "ZooKeeper request failed");
    ControlError::new(
        ErrorCode::UnknownServerError,
        format!("ZooKeeper {path}: {error}"),
    )
}

fn timeout_error(what: &str) -> ControlError {
    ControlError::new(
        ErrorCode::RequestTimedOut,
        format!(
            "{what} did not complete within {} s",
            REQUEST_WAIT.as_secs()
        ),
    )
}

/// Creates a persistent znode unless it exists; `NoNode` (a parent is missing) passes
/// through.
async fn create_if_missing(client: &Client, path: &str, data: &[u8]) -> ZkResult<()> {
    match client.create(path, data, &PERSISTENT).await {
        Ok(_) | Err(zookeeper_client::Error::NodeExists) => Ok(()),
        Err(error) => Err(error),
    }
}

/// One ZooKeeper session with this broker registered in it.
struct Session {
    client: Client,
    /// Persistent recursive watch on the root: every node event of the cluster.
    watcher: PersistentWatcher,
    cluster_id: String,
}

impl Session {
    /// Connects, creates the chroot and the persistent paths, starts watching, gets or
    /// creates the cluster id (checked against the first log dir's `meta.properties`)
    /// and registers this broker's ephemeral `/brokers/ids/<id>`.
    async fn open(
        config: &BrokerConfig,
        advertised: &BrokerEndpoint,
    ) -> Result<Session, CoordinationError> {
        let connect = config
            .zookeeper_connect
            .as_deref()
            .expect("ZooKeeper mode has zookeeper.connect");
        let (hosts, chroot) = split_chroot(connect);
        let connection_timeout = Duration::from_millis(config.zookeeper_connection_timeout_ms);
        let connector = Client::connector()
            .with_session_timeout(Duration::from_millis(config.zookeeper_session_timeout_ms))
            .with_connection_timeout(connection_timeout);
        let client = tokio::time::timeout(connection_timeout, connector.connect(hosts))
            .await
            .map_err(|_| CoordinationError::ZooKeeper {
                path: hosts.to_string(),
                source: zookeeper_client::Error::Timeout,
            })?
            .map_err(zk_error(hosts))?;
        let client = match chroot {
            Some(chroot) => {
                client
                    .mkdir(chroot, &PERSISTENT)
                    .await
                    .map_err(zk_error(chroot))?;
                client
                    .chroot(chroot)
                    .map_err(|_| CoordinationError::ZooKeeper {
                        path: chroot.to_string(),
                        source: zookeeper_client::Error::BadArguments(&"invalid chroot"),
                    })?
            }
            None => client,
        };
        for path in znodes::PERSISTENT_PATHS {
            client
                .mkdir(path, &PERSISTENT)
                .await
                .map_err(zk_error(path))?;
        }
        let watcher = client
            .watch("/", AddWatchMode::PersistentRecursive)
            .await
            .map_err(zk_error("/"))?;
        let cluster_id = Self::cluster_id(&client).await?;
        let dir = config
            .log_dirs
            .first()
            .expect("BrokerConfig always has at least one log dir");
        crate::store::check_meta_properties(dir, config.broker_id, &cluster_id)?;
        Self::register(&client, config.broker_id, advertised).await?;
        tracing::info!(
            broker = config.broker_id,
            %cluster_id,
            session = ?client.session_id(),
            "registered in ZooKeeper"
        );
        Ok(Session {
            client,
            watcher,
            cluster_id,
        })
    }

    /// Creates this broker's ephemeral registration. If the znode exists, it may be
    /// the leftover of this broker's previous, crashed session: wait (watching it) up
    /// to one session timeout for it to vanish before calling the id taken.
    async fn register(
        client: &Client,
        broker_id: i32,
        advertised: &BrokerEndpoint,
    ) -> Result<(), CoordinationError> {
        let path = znodes::broker_path(broker_id);
        let deadline = Instant::now() + client.session_timeout() + RETRY_BACKOFF;
        loop {
            let registration = znodes::encode(&znodes::BrokerZnode::new(advertised, now_ms()));
            match client.create(&path, &registration, &EPHEMERAL).await {
                Ok(_) => return Ok(()),
                Err(zookeeper_client::Error::NodeExists) => {}
                Err(source) => return Err(CoordinationError::ZooKeeper { path, source }),
            }
            let (stat, watcher) = client
                .check_and_watch_stat(&path)
                .await
                .map_err(zk_error(&path))?;
            if stat.is_none() {
                continue;
            }
            tracing::info!(
                broker = broker_id,
                "broker id registered by another session; waiting for it to expire"
            );
            if tokio::time::timeout_at(deadline, watcher.changed())
                .await
                .is_err()
            {
                return Err(CoordinationError::BrokerIdInUse(broker_id));
            }
        }
    }

    /// `/cluster/id`, created with a new id by the first broker of a cluster.
    async fn cluster_id(client: &Client) -> Result<String, CoordinationError> {
        let path = znodes::CLUSTER_ID;
        loop {
            match client.get_data(path).await {
                Ok((bytes, _)) => {
                    let znode: ClusterIdZnode =
                        serde_json::from_slice(&bytes).map_err(|e| CoordinationError::Corrupt {
                            path: path.into(),
                            reason: e.to_string(),
                        })?;
                    return Ok(znode.id);
                }
                Err(zookeeper_client::Error::NoNode) => {
                    client
                        .mkdir("/cluster", &PERSISTENT)
                        .await
                        .map_err(zk_error("/cluster"))?;
                    let znode = ClusterIdZnode {
                        version: "1".into(),
                        id: crate::store::new_cluster_id(),
                    };
                    match client
                        .create(path, &znodes::encode(&znode), &PERSISTENT)
                        .await
                    {
                        // Lost a race with another broker: read its id.
                        Ok(_) | Err(zookeeper_client::Error::NodeExists) => continue,
                        Err(source) => {
                            return Err(CoordinationError::ZooKeeper {
                                path: path.into(),
                                source,
                            })
                        }
                    }
                }
                Err(source) => {
                    return Err(CoordinationError::ZooKeeper {
                        path: path.into(),
                        source,
                    })
                }
            }
        }
    }
}

/// This broker's term as controller.
#[derive(Debug, Clone, Copy)]
struct ControllerTerm {
    epoch: i32,
    /// Version of `/controller_epoch` after this broker's bump: every controller write
    /// checks it, so a deposed controller cannot write.
    epoch_zk_version: i32,
}

/// Called with the applied snapshot and whether the deadline has passed; answers the
/// request and returns true when done.
type WaitCheck = Box<dyn FnMut(&MetadataSnapshot, bool) -> bool>;

/// Changes a request made, each with the index of its answer, waiting for the applied
/// snapshot to show them.
type Pending<P> = Vec<(usize, P)>;

/// A request answered once the applied snapshot shows its outcome, or at `deadline`.
struct Waiter {
    deadline: Instant,
    check: WaitCheck,
}

/// The control thread's state. Lives on the control thread only.
struct ZkControl {
    config: BrokerConfig,
    broker: BrokerEndpoint,
    session: Session,
    /// False after the session ended (expired) until a new one is open.
    session_alive: bool,
    version: u64,
    shards: Vec<Sender<SnapshotUpdate>>,
    latest: Arc<RwLock<Arc<MetadataSnapshot>>>,
    /// The last snapshot every shard applied (equal to `latest`).
    applied: Arc<MetadataSnapshot>,
    stop: Receiver<()>,
    stopping: bool,
    /// ZooKeeper changed since the last read.
    dirty: bool,
    /// When to retry a failed read.
    retry_at: Option<Instant>,
    controller: Option<ControllerTerm>,
    waiters: Vec<Waiter>,
    /// `(next id, end of the block, exclusive)` of this broker's producer id block.
    producer_ids: Option<(i64, i64)>,
    next_rebalance: Option<Instant>,
}

/// What woke the loop.
enum Wake {
    Stop,
    Request(ControlRequest),
    Event(WatchedEvent),
    Timer,
}

impl ZkControl {
    async fn run(&mut self, requests: Receiver<ControlRequest>) {
        while !self.stopping {
            if self.dirty && self.retry_at.is_none() {
                self.refresh().await;
                continue;
            }
            let timer = self.next_timer();
            let wake = tokio::select! {
                biased;
                _ = self.stop.recv() => Wake::Stop,
                event = self.session.watcher.changed(), if self.session_alive => Wake::Event(event),
                request = requests.recv() => match request {
                    Ok(request) => Wake::Request(request),
                    Err(_) => Wake::Stop,
                },
                _ = tokio::time::sleep_until(timer) => Wake::Timer,
            };
            match wake {
                Wake::Stop | Wake::Request(ControlRequest::Shutdown) => return,
                Wake::Request(request) => self.handle_request(request).await,
                Wake::Event(event) => {
                    self.handle_event(event);
                    // Coalesce a burst: take every event already queued, read once.
                    while self.session_alive {
                        match futures_lite::future::poll_once(self.session.watcher.changed()).await
                        {
                            Some(event) => self.handle_event(event),
                            None => break,
                        }
                    }
                }
                Wake::Timer => self.on_timer().await,
            }
            if !self.session_alive && !self.stopping {
                self.reopen_session().await;
            }
        }
    }

    fn next_timer(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        self.waiters
            .iter()
            .map(|w| w.deadline)
            .chain(self.retry_at)
            .chain(self.next_rebalance.filter(|_| self.controller.is_some()))
            .min()
            .unwrap_or(far)
    }

    fn handle_event(&mut self, event: WatchedEvent) {
        match event.event_type {
            EventType::Session => match event.session_state {
                // Events may have been lost while disconnected: read everything.
                SessionState::SyncConnected | SessionState::ConnectedReadOnly => self.dirty = true,
                SessionState::Disconnected => {
                    tracing::warn!("disconnected from ZooKeeper; reconnecting")
                }
                state => {
                    tracing::error!(?state, "ZooKeeper session ended");
                    self.session_alive = false;
                }
            },
            _ => self.dirty = true,
        }
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        if self.retry_at.is_some_and(|at| at <= now) {
            self.retry_at = None;
            self.dirty = true;
        }
        self.check_waiters();
        if self.next_rebalance.is_some_and(|at| at <= now) {
            self.schedule_rebalance();
            if self.controller.is_some() {
                self.rebalance().await;
            }
        }
    }

    fn schedule_rebalance(&mut self) {
        self.next_rebalance = self.config.auto_leader_rebalance_enable.then(|| {
            Instant::now()
                + Duration::from_secs(self.config.leader_imbalance_check_interval_seconds.max(1))
        });
    }

    /// A new session after the old one expired: register again, read everything.
    async fn reopen_session(&mut self) {
        self.controller = None;
        loop {
            match Session::open(&self.config, &self.broker).await {
                Ok(session) => {
                    if session.cluster_id != self.session.cluster_id {
                        tracing::error!("the cluster id in ZooKeeper changed; stopping");
                        self.stopping = true;
                        return;
                    }
                    self.session = session;
                    self.session_alive = true;
                    self.dirty = true;
                    return;
                }
                Err(error) => tracing::warn!(%error, "cannot open a new ZooKeeper session"),
            }
            tokio::select! {
                _ = self.stop.recv() => {
                    self.stopping = true;
                    return;
                }
                _ = tokio::time::sleep(RETRY_BACKOFF) => {}
            }
        }
    }

    /// Reads the cluster, publishes what changed, and (as controller, or by becoming
    /// it) acts on it, until a read shows nothing left to do.
    async fn refresh(&mut self) {
        self.dirty = false;
        for _ in 0..MAX_REFRESH_PASSES {
            let view = match view::read_view(&self.session.client, &self.config).await {
                Ok(view) => view,
                Err(error) => {
                    tracing::warn!(%error, "cannot read the cluster from ZooKeeper");
                    self.retry_later();
                    return;
                }
            };
            match self.update_controllership(&view).await {
                Ok(true) => continue,
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, "controller election failed");
                    self.retry_later();
                }
            }
            self.publish(&view).await;
            if self.stopping || self.controller.is_none() {
                return;
            }
            match self.controller_pass(&view, false).await {
                Ok(true) => continue,
                Ok(false) => return,
                Err(error) => {
                    tracing::warn!(%error, "controller action failed");
                    self.retry_later();
                    return;
                }
            }
        }
        self.dirty = true;
    }

    fn retry_later(&mut self) {
        self.dirty = true;
        self.retry_at = Some(Instant::now() + RETRY_BACKOFF);
    }

    /// Tries to become controller when there is none, adopts or drops the role as the
    /// view says. Returns true when the view is stale (this broker just won).
    async fn update_controllership(&mut self, view: &ClusterView) -> ZkResult<bool> {
        let me = self.config.broker_id;
        let my_session = self.session.client.session_id().0;
        if view.controller_id == -1 {
            return self.try_become_controller().await;
        }
        if view.controller_id == me && view.controller_session == my_session {
            if self.controller.is_none() {
                let (bytes, stat) = self
                    .session
                    .client
                    .get_data(znodes::CONTROLLER_EPOCH)
                    .await?;
                let epoch = String::from_utf8_lossy(&bytes).trim().parse().unwrap_or(0);
                self.become_controller(ControllerTerm {
                    epoch,
                    epoch_zk_version: stat.version,
                });
            }
        } else if self.controller.take().is_some() {
            tracing::info!(controller = view.controller_id, "no longer the controller");
        }
        Ok(false)
    }

    async fn try_become_controller(&mut self) -> ZkResult<bool> {
        let client = &self.session.client;
        let znode = ControllerZnode {
            version: 1,
            brokerid: self.config.broker_id,
            timestamp: now_ms().to_string(),
        };
        match client
            .create(znodes::CONTROLLER, &znodes::encode(&znode), &EPHEMERAL)
            .await
        {
            Ok(_) => {}
            Err(zookeeper_client::Error::NodeExists) => return Ok(true),
            Err(error) => return Err(error),
        }
        let term = loop {
            match client.get_data(znodes::CONTROLLER_EPOCH).await {
                Ok((bytes, stat)) => {
                    let epoch: i32 = String::from_utf8_lossy(&bytes).trim().parse().unwrap_or(0);
                    let next = epoch + 1;
                    match client
                        .set_data(
                            znodes::CONTROLLER_EPOCH,
                            next.to_string().as_bytes(),
                            Some(stat.version),
                        )
                        .await
                    {
                        Ok(stat) => {
                            break ControllerTerm {
                                epoch: next,
                                epoch_zk_version: stat.version,
                            }
                        }
                        Err(zookeeper_client::Error::BadVersion) => continue,
                        Err(error) => return Err(error),
                    }
                }
                Err(zookeeper_client::Error::NoNode) => {
                    match client
                        .create(znodes::CONTROLLER_EPOCH, b"1", &PERSISTENT)
                        .await
                    {
                        Ok((stat, _)) => {
                            break ControllerTerm {
                                epoch: 1,
                                epoch_zk_version: stat.version,
                            }
                        }
                        Err(zookeeper_client::Error::NodeExists) => continue,
                        Err(error) => return Err(error),
                    }
                }
                Err(error) => return Err(error),
            }
        };
        self.become_controller(term);
        Ok(true)
    }

    fn become_controller(&mut self, term: ControllerTerm) {
        tracing::info!(
            broker = self.config.broker_id,
            epoch = term.epoch,
            "became the controller"
        );
        self.controller = Some(term);
        self.schedule_rebalance();
    }

    /// The controller's duties over `view`: queued deletions, states of new
    /// partitions, and leader/ISR changes for the live brokers (or, with `preferred`,
    /// moving leadership back to preferred replicas). Returns whether it wrote.
    async fn controller_pass(&mut self, view: &ClusterView, preferred: bool) -> ZkResult<bool> {
        let live = view.live();
        let mut wrote = false;
        if !preferred {
            for topic in &view.deletions {
                self.delete_topic_znodes(topic).await?;
                wrote = true;
            }
        }
        for (name, topic) in &view.topics {
            if view.deletions.contains(name.as_ref()) {
                continue;
            }
            let unclean = topic.log_config.unclean_leader_election_enable;
            for (partition, state) in topic.partition_states.iter().enumerate() {
                let change = if state.partition_epoch == NO_STATE {
                    if preferred {
                        None
                    } else {
                        election::initial_state(&state.replicas, &live).map(|c| (c, None))
                    }
                } else if preferred {
                    election::preferred_leader(state, &live)
                        .map(|c| (c, Some(state.partition_epoch)))
                } else {
                    election::reconcile(state, &live, unclean)
                        .map(|c| (c, Some(state.partition_epoch)))
                };
                let Some((change, version)) = change else {
                    continue;
                };
                match self
                    .write_state(name, partition as i32, &change, version)
                    .await
                {
                    Ok(()) => {
                        tracing::info!(
                            topic = %name,
                            partition,
                            leader = change.leader,
                            leader_epoch = change.leader_epoch,
                            isr = ?change.isr,
                            "partition state changed"
                        );
                        wrote = true;
                    }
                    // Someone else changed it first: the next read shows what.
                    Err(
                        zookeeper_client::Error::BadVersion
                        | zookeeper_client::Error::NodeExists
                        | zookeeper_client::Error::NoNode,
                    ) => wrote = true,
                    Err(zookeeper_client::Error::RuntimeInconsistent) => {
                        tracing::info!("controller epoch moved on: no longer the controller");
                        self.controller = None;
                        return Ok(true);
                    }
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(wrote)
    }

    /// Writes a partition state as controller: a multi-op that checks this
    /// controller's `/controller_epoch` version and creates the state (`version`
    /// None) or sets it if its version is still `version`.
    async fn write_state(
        &self,
        topic: &str,
        partition: i32,
        change: &LeaderAndIsr,
        version: Option<i32>,
    ) -> ZkResult<()> {
        let term = self
            .controller
            .expect("only the controller writes partition states");
        let client = &self.session.client;
        let data = znodes::encode(&StateZnode {
            controller_epoch: term.epoch,
            leader: change.leader,
            version: 1,
            leader_epoch: change.leader_epoch,
            isr: change.isr.clone(),
        });
        let path = znodes::state_path(topic, partition);
        if version.is_none() {
            // Never `mkdir`: that would resurrect a topic deleted meanwhile.
            create_if_missing(client, &znodes::partitions_path(topic), b"").await?;
            create_if_missing(client, &znodes::partition_path(topic, partition), b"").await?;
        }
        let mut writer =
            client.new_check_writer(znodes::CONTROLLER_EPOCH, Some(term.epoch_zk_version))?;
        match version {
            None => writer.add_create(&path, &data, &PERSISTENT)?,
            Some(version) => writer.add_set_data(&path, &data, Some(version))?,
        }
        writer
            .commit()
            .await
            .map_err(zookeeper_client::Error::from)?;
        Ok(())
    }

    /// Deletes a topic queued in `/admin/delete_topics`: its partition states, its
    /// assignment, its config, then the queue entry.
    async fn delete_topic_znodes(&self, topic: &str) -> ZkResult<()> {
        let client = &self.session.client;
        let ignore_missing = |result: ZkResult<()>| match result {
            Ok(()) | Err(zookeeper_client::Error::NoNode) => Ok(()),
            Err(error) => Err(error),
        };
        match client.list_children(&znodes::partitions_path(topic)).await {
            Ok(partitions) => {
                for partition in partitions {
                    let path = format!("{}/{partition}", znodes::partitions_path(topic));
                    ignore_missing(client.delete(&format!("{path}/state"), None).await)?;
                    ignore_missing(client.delete(&path, None).await)?;
                }
            }
            Err(zookeeper_client::Error::NoNode) => {}
            Err(error) => return Err(error),
        }
        ignore_missing(client.delete(&znodes::partitions_path(topic), None).await)?;
        ignore_missing(client.delete(&znodes::topic_path(topic), None).await)?;
        ignore_missing(client.delete(&znodes::config_path(topic), None).await)?;
        ignore_missing(client.delete(&znodes::delete_path(topic), None).await)?;
        tracing::info!(topic, "deleted topic");
        Ok(())
    }

    /// Preferred leader election (`auto.leader.rebalance.enable`).
    async fn rebalance(&mut self) {
        let view = match view::read_view(&self.session.client, &self.config).await {
            Ok(view) => view,
            Err(error) => {
                tracing::warn!(%error, "cannot read the cluster for the leader rebalance");
                return;
            }
        };
        match self.controller_pass(&view, true).await {
            Ok(true) => self.refresh().await,
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "preferred leader election failed"),
        }
    }

    /// Publishes `view` as a new snapshot if it differs from the applied one: pushes it
    /// to every shard, waits for all acknowledgements, then answers waiters it
    /// satisfies.
    async fn publish(&mut self, view: &ClusterView) {
        let topics: BTreeMap<Arc<str>, Arc<TopicMetadata>> = view
            .topics
            .iter()
            .map(|(name, topic)| {
                let shared = match self.applied.topics.get(name) {
                    Some(old) if old == topic => old.clone(),
                    _ => topic.clone(),
                };
                (name.clone(), shared)
            })
            .collect();
        let brokers: Vec<BrokerEndpoint> = view.brokers.values().cloned().collect();
        if brokers == self.applied.brokers
            && view.controller_id == self.applied.controller_id
            && topics == self.applied.topics
        {
            return;
        }
        self.version += 1;
        let snapshot = Arc::new(MetadataSnapshot::new(
            self.version,
            self.session.cluster_id.clone(),
            view.controller_id,
            brokers,
            topics,
        ));
        let acks = self.push(&snapshot);
        if !self.wait_for_acks(acks).await {
            self.stopping = true;
            return;
        }
        self.check_waiters();
    }

    /// Sends `snapshot` to every shard still listening; returns the acknowledgements
    /// to wait for.
    fn push(&self, snapshot: &Arc<MetadataSnapshot>) -> (Arc<MetadataSnapshot>, Vec<Receiver<()>>) {
        let mut acks = Vec::with_capacity(self.shards.len());
        for sender in &self.shards {
            let (applied, ack) = oneshot();
            let update = SnapshotUpdate {
                snapshot: snapshot.clone(),
                applied,
            };
            // A shard that dropped its receiver has stopped; nobody waits for it.
            if sender.try_send(update).is_ok() {
                acks.push(ack);
            }
        }
        (snapshot.clone(), acks)
    }

    /// Waits until every shard has applied the pushed snapshot (or dropped it), then
    /// makes it the applied and published one. False if a shutdown came first.
    async fn wait_for_acks(&mut self, pending: (Arc<MetadataSnapshot>, Vec<Receiver<()>>)) -> bool {
        let (snapshot, acks) = pending;
        for ack in acks {
            let acked = tokio::select! {
                _ = self.stop.recv() => false,
                // An error means the shard dropped the update unacknowledged: it stopped.
                _ = ack.recv() => true,
            };
            if !acked {
                return false;
            }
        }
        let mut latest = match self.latest.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        assert!(
            snapshot.version > latest.version || snapshot.version == 1,
            "snapshot versions only grow"
        );
        *latest = snapshot.clone();
        drop(latest);
        self.applied = snapshot;
        true
    }

    fn check_waiters(&mut self) {
        let now = Instant::now();
        let snapshot = self.applied.clone();
        self.waiters
            .retain_mut(|waiter| !(waiter.check)(&snapshot, now >= waiter.deadline));
    }

    /// Registers a waiter and checks it against the applied snapshot at once.
    fn wait_for(&mut self, check: WaitCheck) {
        self.waiters.push(Waiter {
            deadline: Instant::now() + REQUEST_WAIT,
            check,
        });
        self.check_waiters();
    }

    async fn handle_request(&mut self, request: ControlRequest) {
        match request {
            ControlRequest::CreateTopics {
                topics,
                validate_only,
                reply,
            } => self.create_topics(topics, validate_only, reply).await,
            ControlRequest::DeleteTopics { names, reply } => self.delete_topics(names, reply).await,
            ControlRequest::CreatePartitions {
                topics,
                validate_only,
                reply,
            } => self.create_partitions(topics, validate_only, reply).await,
            ControlRequest::AllocateProducerId { reply } => {
                let answer = self.allocate_producer_id().await;
                let _ = reply.try_send(answer);
            }
            ControlRequest::AlterIsr {
                topic,
                partition,
                leader_epoch,
                partition_epoch,
                isr,
                reply,
            } => {
                let answer = self
                    .alter_isr(&topic, partition, leader_epoch, partition_epoch, isr)
                    .await;
                let _ = reply.try_send(answer);
            }
            ControlRequest::Shutdown => self.stopping = true,
        }
    }

    fn live_brokers(&self) -> Vec<i32> {
        // Snapshot brokers come from a BTreeMap: sorted by id.
        self.applied.brokers.iter().map(|b| b.id).collect()
    }

    async fn create_topics(
        &mut self,
        topics: Vec<NewTopic>,
        validate_only: bool,
        reply: Sender<Vec<Result<Arc<TopicMetadata>, ControlError>>>,
    ) {
        let duplicated = rules::duplicates(topics.iter().map(|t| t.name.as_str()));
        let live = self.live_brokers();
        let mut names = rules::TopicNames::new(&self.applied.topics);
        let mut answers = Vec::with_capacity(topics.len());
        let mut created: Pending<(Arc<str>, [u8; 16])> = Vec::new();
        for (index, topic) in topics.iter().enumerate() {
            let mut answer = if duplicated.contains(&topic.name) {
                Err(rules::duplicate_error(&topic.name))
            } else {
                self.check_new_topic(topic, &names, &live, validate_only)
            };
            if let Ok(metadata) = &answer {
                if !validate_only {
                    match self.write_new_topic(metadata).await {
                        Ok(()) => created.push((index, (metadata.name.clone(), metadata.id))),
                        Err(error) => answer = Err(error),
                    }
                }
            }
            if let Ok(metadata) = &answer {
                names.take(&metadata.name);
            }
            answers.push(answer);
        }
        self.reply_when_applied(
            reply,
            answers,
            created,
            |snapshot, (name, id)| {
                snapshot
                    .topic(name)
                    .filter(|topic| topic.id == *id && all_led(topic))
                    .cloned()
            },
            |(name, _)| timed_out_topic(name),
        )
        .await;
    }

    /// Checks one topic of CreateTopics against the applied snapshot and builds its
    /// metadata with a fresh assignment (partitions without leaders yet).
    fn check_new_topic(
        &self,
        topic: &NewTopic,
        names: &rules::TopicNames,
        live: &[i32],
        validate_only: bool,
    ) -> Result<Arc<TopicMetadata>, ControlError> {
        names.check(&topic.name)?;
        let default_factor = if topic.name == rules::CONSUMER_OFFSETS_TOPIC {
            self.config.offsets_topic_replication_factor
        } else {
            self.config.default_replication_factor
        };
        let metadata = rules::new_topic(
            topic,
            &self.config,
            default_factor,
            live.len(),
            topic_id(validate_only),
            |partitions, replication_factor| {
                assign::assign_replicas(
                    live,
                    partitions,
                    replication_factor as usize,
                    0,
                    assign::random_index(live.len()),
                    assign::random_index(live.len()),
                )
                .into_iter()
                .map(view::stateless)
                .collect()
            },
        )?;
        Ok(Arc::new(metadata))
    }

    /// Writes `/config/topics/<t>`, then `/brokers/topics/<t>` (Kafka's order).
    async fn write_new_topic(&self, topic: &TopicMetadata) -> Result<(), ControlError> {
        let client = &self.session.client;
        let config = znodes::encode(&ConfigZnode {
            version: 1,
            config: topic.configs.clone(),
        });
        let config_path = znodes::config_path(&topic.name);
        match client.create(&config_path, &config, &PERSISTENT).await {
            Ok(_) => {}
            Err(zookeeper_client::Error::NodeExists) => {
                // A leftover of an earlier topic of this name.
                client
                    .set_data(&config_path, &config, None)
                    .await
                    .map_err(|e| server_error(&config_path, e))?;
            }
            Err(error) => return Err(server_error(&config_path, error)),
        }
        let assignment: Vec<Vec<i32>> = topic
            .partition_states
            .iter()
            .map(|s| s.replicas.clone())
            .collect();
        let path = znodes::topic_path(&topic.name);
        let data = znodes::encode(&TopicZnode::new(&topic.id, &assignment));
        match client.create(&path, &data, &PERSISTENT).await {
            Ok(_) => {
                tracing::info!(topic = %topic.name, ?assignment, "created topic");
                Ok(())
            }
            Err(zookeeper_client::Error::NodeExists) => Err(rules::topic_exists_error(&topic.name)),
            Err(error) => Err(server_error(&path, error)),
        }
    }

    async fn delete_topics(
        &mut self,
        names: Vec<String>,
        reply: Sender<Vec<Result<[u8; 16], ControlError>>>,
    ) {
        if !self.config.delete_topic_enable {
            let answers = names
                .iter()
                .map(|_| Err(rules::deletion_disabled_error()))
                .collect();
            let _ = reply.try_send(answers);
            return;
        }
        let duplicated = rules::duplicates(names.iter().map(String::as_str));
        let mut answers = Vec::with_capacity(names.len());
        let mut pending: Pending<(String, [u8; 16])> = Vec::new();
        for (index, name) in names.iter().enumerate() {
            let answer = if duplicated.contains(name) {
                Err(rules::duplicate_error(name))
            } else if let Some(topic) = self.applied.topic(name) {
                let path = znodes::delete_path(name);
                match create_if_missing(&self.session.client, &path, b"").await {
                    Ok(()) => {
                        pending.push((index, (name.clone(), topic.id)));
                        Ok(topic.id)
                    }
                    Err(error) => Err(server_error(&path, error)),
                }
            } else {
                Err(rules::unknown_topic_error())
            };
            answers.push(answer);
        }
        self.reply_when_applied(
            reply,
            answers,
            pending,
            |snapshot, (name, id)| {
                let gone = snapshot.topic(name).is_none_or(|t| t.id != *id);
                gone.then_some(*id)
            },
            |(name, _)| timeout_error(&format!("Deleting topic {name}")),
        )
        .await;
    }

    async fn create_partitions(
        &mut self,
        topics: Vec<(String, i32)>,
        validate_only: bool,
        reply: Sender<Vec<Result<(), ControlError>>>,
    ) {
        let duplicated = rules::duplicates(topics.iter().map(|(n, _)| n.as_str()));
        let mut answers = Vec::with_capacity(topics.len());
        let mut pending: Pending<(String, i32)> = Vec::new();
        for (index, (name, count)) in topics.iter().enumerate() {
            let answer = if duplicated.contains(name) {
                Err(rules::duplicate_error(name))
            } else {
                match self.check_new_partitions(name, *count) {
                    Err(error) => Err(error),
                    Ok(()) if validate_only => Ok(()),
                    Ok(()) => self.add_partitions(name, *count).await.map(|()| {
                        pending.push((index, (name.clone(), *count)));
                    }),
                }
            };
            answers.push(answer);
        }
        self.reply_when_applied(
            reply,
            answers,
            pending,
            |snapshot, (name, count)| {
                snapshot
                    .topic(name)
                    .is_some_and(|t| t.partitions >= *count && all_led(t))
                    .then_some(())
            },
            |(name, _)| timed_out_topic(name),
        )
        .await;
    }

    /// Sends `answers` on `reply` once the applied snapshot shows every pending change
    /// (`(index of its answer, change)`): `applied` gives the change's answer once the
    /// snapshot shows it. Changes not shown within [`REQUEST_WAIT`] are answered
    /// `timed_out`. With nothing pending the answers leave at once.
    async fn reply_when_applied<T: 'static, P: 'static>(
        &mut self,
        reply: Sender<Vec<Result<T, ControlError>>>,
        mut answers: Vec<Result<T, ControlError>>,
        mut pending: Pending<P>,
        mut applied: impl FnMut(&MetadataSnapshot, &P) -> Option<T> + 'static,
        timed_out: impl Fn(&P) -> ControlError + 'static,
    ) {
        if pending.is_empty() {
            let _ = reply.try_send(answers);
            return;
        }
        self.refresh().await;
        self.wait_for(Box::new(move |snapshot, timed_out_now| {
            pending.retain(|(index, change)| match applied(snapshot, change) {
                Some(answer) => {
                    answers[*index] = Ok(answer);
                    false
                }
                None => true,
            });
            if !pending.is_empty() && !timed_out_now {
                return false;
            }
            for (index, change) in pending.drain(..) {
                answers[index] = Err(timed_out(&change));
            }
            let _ = reply.try_send(std::mem::take(&mut answers));
            true
        }));
    }

    /// CreatePartitions' checks against the applied snapshot: Kafka's rules
    /// ([`rules::check_new_partitions`]), and enough live brokers for the topic's
    /// replication factor.
    fn check_new_partitions(&self, name: &str, count: i32) -> Result<(), ControlError> {
        let topic =
            rules::check_new_partitions(name, self.applied.topic(name).map(|t| &**t), count)?;
        let live = self.applied.brokers.len();
        if topic.replication_factor as usize > live {
            return Err(ControlError::new(
                ErrorCode::InvalidReplicationFactor,
                format!(
                    "Replication factor: {} larger than available brokers: {live}.",
                    topic.replication_factor
                ),
            ));
        }
        Ok(())
    }

    /// Extends the topic's assignment to `count` partitions by compare-and-set on its
    /// znode (retried on a concurrent change).
    async fn add_partitions(&self, name: &str, count: i32) -> Result<(), ControlError> {
        let client = &self.session.client;
        let path = znodes::topic_path(name);
        let live = self.live_brokers();
        loop {
            let (bytes, stat) = client
                .get_data(&path)
                .await
                .map_err(|e| server_error(&path, e))?;
            let mut znode: TopicZnode = serde_json::from_slice(&bytes).map_err(|e| {
                ControlError::new(ErrorCode::UnknownServerError, format!("{path}: {e}"))
            })?;
            let assignment = znode.assignment().ok_or_else(|| {
                ControlError::new(
                    ErrorCode::UnknownServerError,
                    format!("{path}: bad assignment"),
                )
            })?;
            let current = assignment.len() as i32;
            if current >= count {
                return Err(ControlError::new(
                    ErrorCode::InvalidPartitions,
                    format!("Topic currently has {current} partitions."),
                ));
            }
            let factor = assignment[0].len();
            if factor > live.len() {
                return Err(ControlError::new(
                    ErrorCode::InvalidReplicationFactor,
                    format!(
                        "Replication factor: {factor} larger than available brokers: {}.",
                        live.len()
                    ),
                ));
            }
            // Kafka continues from partition 0's leader so leaders keep spreading.
            let start = live
                .iter()
                .position(|&b| b == assignment[0][0])
                .unwrap_or_else(|| assign::random_index(live.len()));
            let added = assign::assign_replicas(
                &live,
                count - current,
                factor,
                current,
                start,
                assign::random_index(live.len()),
            );
            for (offset, replicas) in added.into_iter().enumerate() {
                znode
                    .partitions
                    .insert((current as usize + offset).to_string(), replicas);
            }
            match client
                .set_data(&path, &znodes::encode(&znode), Some(stat.version))
                .await
            {
                Ok(_) => {
                    tracing::info!(topic = name, partitions = count, "added partitions");
                    return Ok(());
                }
                Err(zookeeper_client::Error::BadVersion) => continue,
                Err(zookeeper_client::Error::NoNode) => {
                    return Err(ControlError::new(
                        ErrorCode::UnknownTopicOrPartition,
                        format!("The topic '{name}' does not exist."),
                    ))
                }
                Err(error) => return Err(server_error(&path, error)),
            }
        }
    }

    async fn allocate_producer_id(&mut self) -> Result<i64, ControlError> {
        if let Some((next, end)) = self.producer_ids {
            if next < end {
                self.producer_ids = Some((next + 1, end));
                return Ok(next);
            }
        }
        let start = self.claim_producer_id_block().await?;
        self.producer_ids = Some((start + 1, start + PRODUCER_ID_BLOCK_SIZE));
        Ok(start)
    }

    /// Claims the next block of producer ids cluster-wide by compare-and-set on
    /// `/latest_producer_id_block`; returns its first id.
    async fn claim_producer_id_block(&self) -> Result<i64, ControlError> {
        let client = &self.session.client;
        let path = znodes::PRODUCER_ID_BLOCK;
        let block = |start: i64| ProducerIdBlockZnode {
            version: 1,
            broker: self.config.broker_id,
            block_start: start.to_string(),
            block_end: (start + PRODUCER_ID_BLOCK_SIZE - 1).to_string(),
        };
        loop {
            match client.get_data(path).await {
                Ok((bytes, stat)) => {
                    let last: ProducerIdBlockZnode =
                        serde_json::from_slice(&bytes).map_err(|e| {
                            ControlError::new(ErrorCode::UnknownServerError, format!("{path}: {e}"))
                        })?;
                    let start = last
                        .block_end
                        .parse::<i64>()
                        .ok()
                        .and_then(|end| end.checked_add(1))
                        .filter(|start| start.checked_add(PRODUCER_ID_BLOCK_SIZE).is_some())
                        .ok_or_else(|| {
                            ControlError::new(
                                ErrorCode::UnknownServerError,
                                format!("{path}: bad or exhausted block_end {:?}", last.block_end),
                            )
                        })?;
                    match client
                        .set_data(path, &znodes::encode(&block(start)), Some(stat.version))
                        .await
                    {
                        Ok(_) => return Ok(start),
                        Err(zookeeper_client::Error::BadVersion) => continue,
                        Err(error) => return Err(server_error(path, error)),
                    }
                }
                Err(zookeeper_client::Error::NoNode) => {
                    match client
                        .create(path, &znodes::encode(&block(0)), &PERSISTENT)
                        .await
                    {
                        Ok(_) => return Ok(0),
                        Err(zookeeper_client::Error::NodeExists) => continue,
                        Err(error) => return Err(server_error(path, error)),
                    }
                }
                Err(error) => return Err(server_error(path, error)),
            }
        }
    }

    /// The leader's ISR change: compare-and-set on the state znode, keeping leader and
    /// leader epoch; answered after the snapshot showing it is applied everywhere.
    async fn alter_isr(
        &mut self,
        topic: &str,
        partition: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<i32>,
    ) -> Result<PartitionState, ControlError> {
        let unknown = || {
            ControlError::new(
                ErrorCode::UnknownTopicOrPartition,
                format!("{topic}-{partition} does not exist."),
            )
        };
        let replicas = self
            .applied
            .partition(topic, partition)
            .ok_or_else(unknown)?
            .replicas
            .clone();
        let path = znodes::state_path(topic, partition);
        let client = &self.session.client;
        let (bytes, stat) = match client.get_data(&path).await {
            Ok(read) => read,
            Err(zookeeper_client::Error::NoNode) => return Err(unknown()),
            Err(error) => return Err(server_error(&path, error)),
        };
        let state: StateZnode = serde_json::from_slice(&bytes).map_err(|e| {
            ControlError::new(ErrorCode::UnknownServerError, format!("{path}: {e}"))
        })?;
        let me = self.config.broker_id;
        check_alter_isr(
            &state,
            stat.version,
            me,
            &replicas,
            leader_epoch,
            partition_epoch,
            &isr,
        )?;
        let next = StateZnode {
            isr: isr.clone(),
            ..state
        };
        let written = match client
            .set_data(&path, &znodes::encode(&next), Some(stat.version))
            .await
        {
            Ok(stat) => stat,
            Err(zookeeper_client::Error::BadVersion) => {
                return Err(ControlError::new(
                    ErrorCode::InvalidUpdateVersion,
                    format!("{topic}-{partition}: the partition state changed concurrently"),
                ))
            }
            Err(error) => return Err(server_error(&path, error)),
        };
        tracing::info!(topic, partition, ?isr, "ISR changed");
        self.refresh().await;
        Ok(PartitionState {
            replicas,
            leader: next.leader,
            leader_epoch: next.leader_epoch,
            isr,
            partition_epoch: written.version,
        })
    }

    /// Closes the ZooKeeper session (this broker's ephemeral znodes vanish at once)
    /// and waits briefly for the server to confirm.
    async fn close(self) {
        let mut state = self.session.client.state_watcher();
        drop(self);
        let closed = async {
            while !state.peek_state().is_terminated() {
                state.changed().await;
            }
        };
        if tokio::time::timeout(CLOSE_TIMEOUT, closed).await.is_err() {
            tracing::warn!("ZooKeeper did not confirm the session close");
        }
    }
}

/// Whether every partition of `topic` has a leader.
fn all_led(topic: &TopicMetadata) -> bool {
    topic.partition_states.iter().all(|s| s.leader >= 0)
}

fn timed_out_topic(name: &str) -> ControlError {
    timeout_error(&format!("Electing leaders of topic {name}"))
}

/// AlterIsr's checks against the current state znode (Kafka's AlterPartition rules).
fn check_alter_isr(
    state: &StateZnode,
    zk_version: i32,
    me: i32,
    replicas: &[i32],
    leader_epoch: i32,
    partition_epoch: i32,
    isr: &[i32],
) -> Result<(), ControlError> {
    if state.leader != me {
        return Err(ControlError::new(
            ErrorCode::NotLeaderOrFollower,
            format!("broker {me} is not the leader (leader is {})", state.leader),
        ));
    }
    if leader_epoch != state.leader_epoch {
        return Err(ControlError::new(
            ErrorCode::FencedLeaderEpoch,
            format!(
                "leader epoch {leader_epoch} is not the current {}",
                state.leader_epoch
            ),
        ));
    }
    if partition_epoch != zk_version {
        return Err(ControlError::new(
            ErrorCode::InvalidUpdateVersion,
            format!("partition epoch {partition_epoch} is not the current {zk_version}"),
        ));
    }
    let distinct: BTreeSet<i32> = isr.iter().copied().collect();
    if !isr.contains(&me)
        || distinct.len() != isr.len()
        || !isr.iter().all(|r| replicas.contains(r))
    {
        return Err(ControlError::new(
            ErrorCode::InvalidRequest,
            format!("ISR {isr:?} must hold the leader and only distinct replicas of {replicas:?}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chroot_is_split_off() {
        assert_eq!(split_chroot("a:1,b:2"), ("a:1,b:2", None));
        assert_eq!(
            split_chroot("a:1,b:2/kafka/x"),
            ("a:1,b:2", Some("/kafka/x"))
        );
        assert_eq!(split_chroot("a:1/"), ("a:1", None));
    }

    #[test]
    fn alter_isr_checks() {
        let state = StateZnode {
            controller_epoch: 1,
            leader: 1,
            version: 1,
            leader_epoch: 3,
            isr: vec![1, 2, 3],
        };
        let replicas = [1, 2, 3];
        let check = |me, epoch, version, isr: &[i32]| {
            check_alter_isr(&state, 7, me, &replicas, epoch, version, isr).map_err(|e| e.code)
        };
        assert_eq!(check(1, 3, 7, &[1, 2]), Ok(()));
        assert_eq!(check(2, 3, 7, &[1, 2]), Err(ErrorCode::NotLeaderOrFollower));
        assert_eq!(check(1, 2, 7, &[1, 2]), Err(ErrorCode::FencedLeaderEpoch));
        assert_eq!(
            check(1, 3, 6, &[1, 2]),
            Err(ErrorCode::InvalidUpdateVersion)
        );
        assert_eq!(check(1, 3, 7, &[2, 3]), Err(ErrorCode::InvalidRequest));
        assert_eq!(check(1, 3, 7, &[1, 4]), Err(ErrorCode::InvalidRequest));
        assert_eq!(check(1, 3, 7, &[1, 1]), Err(ErrorCode::InvalidRequest));
    }
}
