//! `sluice serve`: start the control plane and one shard per core, print the ready
//! line, and shut down cleanly on SIGTERM or Ctrl-C.

use std::io::Write;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use sluice_coordination::{BrokerEndpoint, SnapshotUpdate};
use sluice_core::config::BrokerConfig;
use sluice_net::{Job, ShardContext};
use sluice_rt::exec::{available_cores, start_shards, DEFAULT_IO_MEMORY_BYTES};
use sluice_rt::net::reserve_port;
use sluice_rt::sync::{bounded, unbounded, Receiver};

use crate::ServeArgs;

/// What a shard receives: jobs from other shards, and metadata changes.
type ShardInbox = (Receiver<Job>, Receiver<SnapshotUpdate>);

/// Jobs one shard may have queued for another before the sender waits.
const MESH_QUEUE_DEPTH: usize = 1024;

/// Tells glibc's allocator to keep the memory it has instead of handing it back.
///
/// By default, glibc serves every allocation over its (dynamic) mmap threshold with its
/// own `mmap` and returns free memory at the top of a heap, growing it again later with
/// `mprotect`. A produce request is a ~130 KiB allocation, so at half the 100 B peak the
/// broker made ~60 `munmap`/`mprotect` calls and ~6000 page faults a second. Each of
/// those calls takes the address space's lock for writing, which waits for every page
/// fault in flight on the other shards, and shoots down the other cores' TLBs with
/// interrupts (on a VM, exits on both ends); a shard was caught blocked there while its
/// requests waited. With the heap kept, the calls and refaults stop: the broker keeps
/// what it used at its peak, as a JVM keeps its heap (BENCHMARKS.md, "glibc keeps its
/// memory").
fn keep_heap_memory() {
    // glibc's largest mmap threshold (HEAP_MAX_SIZE / 2 on 64-bit); setting it also
    // turns off the threshold's dynamic adjustment.
    const MMAP_THRESHOLD: libc::c_int = 32 << 20;
    const TRIM_THRESHOLD: libc::c_int = libc::c_int::MAX;
    // A new per-thread heap is made readable and writable whole (64 MiB), so it never
    // grows by `mprotect`; untouched pages cost nothing.
    const TOP_PAD: libc::c_int = 64 << 20;
    for (param, value, name) in [
        (libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD, "M_MMAP_THRESHOLD"),
        (libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD, "M_TRIM_THRESHOLD"),
        (libc::M_TOP_PAD, TOP_PAD, "M_TOP_PAD"),
    ] {
        // SAFETY: mallopt only sets allocator parameters; no thread allocates yet.
        if unsafe { libc::mallopt(param, value) } != 1 {
            tracing::warn!("mallopt({name}) failed; the allocator returns memory to the system");
        }
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    keep_heap_memory();
    let (config, warnings) = BrokerConfig::load(args.config.as_deref(), &args.overrides)?;
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    let shards = args.cores.unwrap_or_else(available_cores);
    if shards == 0 {
        bail!("--cores must be at least 1");
    }
    let data_dir = config.log_dirs[0].clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create log dir {}", data_dir.display()))?;

    // Signals are routed to this thread before any other starts, so no shard thread
    // ever takes them.
    let mut signals = Signals::new([SIGTERM, SIGINT]).context("cannot install signal handlers")?;

    let listener = config
        .listeners
        .first()
        .ok_or_else(|| anyhow!("no listener configured"))?
        .clone();
    let listen_host = if listener.host.is_empty() {
        "0.0.0.0".to_owned()
    } else {
        listener.host.clone()
    };
    let ip: IpAddr = listen_host
        .parse()
        .or_else(|_| resolve(&listen_host))
        .with_context(|| format!("cannot resolve listener host {listen_host}"))?;
    let reservation = if listener.port == 0 {
        Some(reserve_port(ip).context("cannot reserve a port")?)
    } else {
        None
    };
    let port = reservation.as_ref().map_or(listener.port, |r| r.port);

    let advertised = config
        .advertised_listeners
        .first()
        .cloned()
        .unwrap_or(listener.clone());
    let advertised_host = match advertised.host.as_str() {
        "" | "0.0.0.0" | "::" => "127.0.0.1".to_owned(),
        host => host.to_owned(),
    };
    let endpoint = BrokerEndpoint {
        id: config.broker_id,
        host: advertised_host,
        port: if advertised.port == 0 {
            port
        } else {
            advertised.port
        },
        rack: config.broker_rack.clone(),
    };

    let config = Arc::new(config);
    let (control, feeds, control_thread) = sluice_coordination::start(&config, endpoint, shards)
        .context("cannot start the control plane")?;

    let mut job_senders = Vec::with_capacity(shards);
    let mut job_receivers = Vec::with_capacity(shards);
    for _ in 0..shards {
        let (tx, rx) = bounded::<Job>(MESH_QUEUE_DEPTH);
        job_senders.push(tx);
        job_receivers.push(rx);
    }
    let (shutdown_tx, shutdown_rx) = bounded::<()>(1);
    let (ready_tx, ready_rx) = unbounded::<Result<usize, String>>();
    let (drained_tx, drained_rx) = unbounded::<usize>();
    let (close_logs_tx, close_logs_rx) = bounded::<()>(1);
    // Connections accepted so far, over all shards: places each on the next shard.
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));

    // Each shard takes its own receivers out of these slots on start.
    let slots: Arc<Mutex<Vec<Option<ShardInbox>>>> = Arc::new(Mutex::new(
        job_receivers.into_iter().zip(feeds).map(Some).collect(),
    ));
    let handles = {
        let (config, control, listen_host) = (config.clone(), control.clone(), listen_host.clone());
        start_shards(shards, true, DEFAULT_IO_MEMORY_BYTES, move |id| {
            let (jobs, metadata) = slots.lock().expect("slots")[id]
                .take()
                .expect("each shard starts once");
            let ctx = ShardContext {
                id,
                config: config.clone(),
                control: control.clone(),
                metadata,
                peers: job_senders.clone(),
                jobs,
                listen_host: listen_host.clone(),
                port,
                shutdown: shutdown_rx.clone(),
                ready: ready_tx.clone(),
                drained: drained_tx.clone(),
                close_logs: close_logs_rx.clone(),
                accepted: accepted.clone(),
            };
            sluice_net::run_shard(ctx)
        })
        .context("cannot start shards")?
    };

    for _ in 0..shards {
        match ready_rx.recv_blocking() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => bail!(e),
            Err(_) => bail!("a shard stopped during start-up"),
        }
    }
    drop(reservation);
    println!("sluice: ready on {listen_host}:{port} ({shards} shards)");
    std::io::stdout().flush().ok();

    let signal = signals.forever().next();
    tracing::info!(?signal, "shutting down");
    // Two phases, so no shard exits while another may still route work to it: every
    // shard drains its connections, then every shard closes its logs.
    drop(shutdown_tx);
    for _ in 0..shards {
        if drained_rx.recv_blocking().is_err() {
            break;
        }
    }
    drop(close_logs_tx);
    for handle in handles {
        if handle.join().is_err() {
            tracing::error!("a shard panicked during shutdown");
        }
    }
    control.shutdown();
    let _ = control_thread.join();
    tracing::info!("stopped");
    Ok(())
}

fn resolve(host: &str) -> std::io::Result<IpAddr> {
    use std::net::ToSocketAddrs;
    (host, 0)
        .to_socket_addrs()?
        .next()
        .map(|a| a.ip())
        .ok_or_else(|| std::io::Error::other("no address"))
}
