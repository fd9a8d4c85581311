//! A shard's main task: open the partitions it owns, follow metadata changes, accept
//! connections on the shared port, run periodic log maintenance, and shut down cleanly.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::future;

use sluice_coordination::{ControlHandle, SnapshotUpdate};
use sluice_core::config::BrokerConfig;
use sluice_core::ids::ShardId;
use sluice_rt::exec::{spawn, spawn_detached};
use sluice_rt::net::{AcceptedTcpStream, TcpListener};
use sluice_rt::sync::{unbounded, Notify, Receiver, Sender};
use sluice_rt::time::{now_ms, sleep, timeout};

use crate::conn;
use crate::shard::{Job, Shard};

/// How long shutdown waits for open connections to finish their in-flight requests.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);

/// Everything a shard is started with. Built on the main thread, moved to the shard.
pub struct ShardContext {
    pub id: ShardId,
    pub config: Arc<BrokerConfig>,
    pub control: ControlHandle,
    /// Metadata changes from the control plane, for this shard.
    pub metadata: Receiver<SnapshotUpdate>,
    /// Job queues of every shard (index = shard id), and this shard's own.
    pub peers: Vec<Sender<Job>>,
    pub jobs: Receiver<Job>,
    /// Host and port to listen on (the port already resolved when 0 was configured).
    pub listen_host: String,
    pub port: u16,
    /// Closed by the main thread to begin shutdown.
    pub shutdown: Receiver<()>,
    /// Told once this shard's connections are done after shutdown began.
    pub drained: Sender<ShardId>,
    /// Closed by the main thread once every shard has drained: close the logs, exit.
    pub close_logs: Receiver<()>,
    /// Told once the shard is listening and its partitions are open, or why it cannot.
    pub ready: Sender<Result<ShardId, String>>,
    /// Shared by every shard: the count of connections accepted so far, which places
    /// each new connection on the next shard in turn.
    pub accepted: Arc<AtomicUsize>,
}

/// Runs a shard until shutdown completes.
pub async fn run_shard(ctx: ShardContext) {
    let shard = Shard::new(
        ctx.id,
        ctx.config.clone(),
        ctx.control.clone(),
        ctx.port,
        ctx.peers,
    );
    shard.apply_snapshot(shard.control.snapshot()).await;
    spawn_detached(shard.clone().serve_jobs(ctx.jobs));
    spawn_detached(follow_metadata(shard.clone(), ctx.metadata));
    spawn_detached(crate::groups::run_timers(shard.clone()));
    spawn_detached(crate::replica::run_isr_shrink(shard.clone()));
    let maintenance = spawn(maintain_logs(shard.clone()));
    let checkpoints = spawn(checkpoint_high_watermarks(shard.clone()));

    let listener = match TcpListener::bind((ctx.listen_host.as_str(), ctx.port)) {
        Ok(l) => l,
        Err(e) => {
            let _ = ctx
                .ready
                .send(Err(format!(
                    "shard {} cannot listen on {}:{}: {e}",
                    ctx.id, ctx.listen_host, ctx.port
                )))
                .await;
            return;
        }
    };
    let metrics_endpoint = match crate::metrics::start_endpoint(&shard, ctx.shutdown.clone()) {
        Ok(endpoint) => endpoint,
        Err(e) => {
            let _ = ctx.ready.send(Err(e)).await;
            return;
        }
    };
    let _ = ctx.ready.send(Ok(ctx.id)).await;

    let open = Rc::new(Cell::new(0usize));
    let closed = Rc::new(Notify::new());
    // Connections other shards accepted and placed here.
    let (placed_tx, placed_rx) = unbounded::<AcceptedTcpStream>();
    shard.set_connection_inbox(placed_tx);
    // One accept stays in flight across the loop's turns: dropping it when a placed
    // connection or shutdown wins the race would cancel an accept the kernel may
    // already have completed, and that connection would be lost with its client
    // waiting on it.
    let mut accept = Box::pin(listener.shared_accept());
    loop {
        let next = future::or(
            async {
                Some(Incoming::Accepted(
                    accept.as_mut().await.map_err(std::io::Error::from),
                ))
            },
            future::or(
                async { placed_rx.recv().await.ok().map(Incoming::Placed) },
                async {
                    let _ = ctx.shutdown.recv().await;
                    None
                },
            ),
        )
        .await;
        if matches!(next, Some(Incoming::Accepted(_))) {
            accept.set(listener.shared_accept());
        }
        let accepted = match next {
            None => break,
            Some(Incoming::Placed(accepted)) => accepted,
            Some(Incoming::Accepted(Ok(accepted))) => {
                // Kafka's acceptor hands connections to its network threads in turn.
                // The kernel's SO_REUSEPORT hash would leave a few long-lived
                // connections (a producer and a consumer) on one shard half the time,
                // and that shard decodes every request and sends every response.
                let target = ctx.accepted.fetch_add(1, Ordering::Relaxed) % shard.count;
                if target != shard.id {
                    let placer = shard.clone();
                    spawn_detached(async move {
                        let placed = placer
                            .run_on(target, move |s| async move { s.place_connection(accepted) })
                            .await;
                        if !matches!(placed, Ok(true)) {
                            tracing::debug!(shard = target, "shard gone; connection dropped");
                        }
                    });
                    continue;
                }
                accepted
            }
            Some(Incoming::Accepted(Err(e))) => {
                tracing::warn!(shard = ctx.id, error = %e, "accept failed");
                continue;
            }
        };
        let stream = accepted.bind_to_executor();
        let _ = stream.set_nodelay(true);
        let peer = match stream.peer_addr() {
            Ok(peer) => peer,
            Err(_) => continue,
        };
        open.set(open.get() + 1);
        let (shard, shutdown, open, closed) = (
            shard.clone(),
            ctx.shutdown.clone(),
            open.clone(),
            closed.clone(),
        );
        spawn_detached(async move {
            conn::serve(shard, stream, peer, shutdown).await;
            open.set(open.get() - 1);
            closed.notify(usize::MAX);
        });
    }

    // Shutdown: stop accepting, let connections finish what they have in flight, then
    // flush and close every log (writing indexes, producer state and checkpoints).
    shard.begin_shutdown();
    drop(accept);
    drop(listener);
    // A connection another shard places here from now on is closed, not left waiting.
    drop(placed_rx);
    let drained = timeout(SHUTDOWN_DRAIN, async {
        while open.get() > 0 {
            let listener = closed.listen();
            if open.get() == 0 {
                break;
            }
            listener.await;
        }
    })
    .await;
    if drained.is_none() {
        tracing::warn!(
            shard = ctx.id,
            connections = open.get(),
            "connections still open at shutdown"
        );
    }
    drop(maintenance);
    drop(checkpoints);
    drop(metrics_endpoint);
    // Every shard must be done with its connections before any closes its logs and
    // exits: a connection on another shard may still be waiting for a job run here,
    // and a job sent to an executor that has exited is never answered.
    let _ = ctx.drained.send(ctx.id).await;
    let _ = ctx.close_logs.recv().await;
    for (tp, log) in shard.logs() {
        if let Err(e) = log.close().await {
            tracing::error!(partition = %tp, error = %e, "cannot close partition log");
        }
    }
}

/// What the accept loop takes next.
enum Incoming {
    Accepted(std::io::Result<AcceptedTcpStream>),
    Placed(AcceptedTcpStream),
}

/// Applies every metadata change, acknowledging each once this shard's logs match it.
async fn follow_metadata(shard: Rc<Shard>, updates: Receiver<SnapshotUpdate>) {
    while let Ok(update) = updates.recv().await {
        shard.apply_snapshot(update.snapshot).await;
        let _ = update.applied.send(()).await;
    }
}

/// Writes every hosted log's high-watermark checkpoint each
/// `replica.high.watermark.checkpoint.interval.ms` (closing a log writes it too).
async fn checkpoint_high_watermarks(shard: Rc<Shard>) {
    let interval = Duration::from_millis(
        shard
            .config
            .replica_high_watermark_checkpoint_interval_ms
            .max(100),
    );
    loop {
        sleep(interval).await;
        for (tp, log) in shard.logs() {
            if let Err(e) = log.checkpoint_high_watermark() {
                tracing::error!(partition = %tp, error = %e, "cannot checkpoint high watermark");
            }
        }
    }
}

/// Periodic retention (`log.retention.check.interval.ms`) for the logs this shard owns.
async fn maintain_logs(shard: Rc<Shard>) {
    let interval = Duration::from_millis(shard.config.log_retention_check_interval_ms.max(100));
    loop {
        sleep(interval).await;
        for (tp, log) in shard.logs() {
            match log.apply_retention(now_ms()).await {
                Ok(0) => {}
                Ok(deleted) => {
                    tracing::info!(partition = %tp, deleted, "retention deleted segments")
                }
                Err(e) => tracing::error!(partition = %tp, error = %e, "retention failed"),
            }
        }
    }
}
