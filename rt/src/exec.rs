//! Shards: one executor pinned per core, and the tasks on it.

use glommio::{LocalExecutorBuilder, Placement};
use std::future::Future;
use std::io;

pub use glommio::{ExecutorJoinHandle as ShardHandle, Task};

/// Memory glommio may register for io_uring buffers, per shard. The process's
/// locked-memory limit (8 MiB on the development machine, not raisable) is shared by
/// every shard's rings and registered buffers; glommio falls back to unregistered
/// buffers when registration fails, so this only has to fit, not to be large.
pub const DEFAULT_IO_MEMORY_BYTES: usize = 512 * 1024;

/// The longest a shard runs tasks before it looks at its rings again (glommio's
/// preempt timer, Seastar's task quota). glommio's default is 100 ms: while a
/// shard's tasks keep one another runnable, its network and disk completions and
/// other shards' jobs would wait that long. Seastar polls every 0.5 ms.
pub const TASK_QUOTA: std::time::Duration = std::time::Duration::from_millis(1);

/// Starts `count` shards, each running `main(shard_id)` on its own thread and executor,
/// pinned to core `shard_id % cores` when `pin` is set. Returns the threads' handles;
/// each thread ends when its `main` future completes.
pub fn start_shards<F, Fut>(
    count: usize,
    pin: bool,
    io_memory_bytes: usize,
    main: F,
) -> io::Result<Vec<ShardHandle<()>>>
where
    F: Fn(usize) -> Fut + Send + Clone + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let cpus = available_cores();
    let mut handles = Vec::with_capacity(count);
    for shard in 0..count {
        let placement = if pin {
            Placement::Fixed(shard % cpus)
        } else {
            Placement::Unbound
        };
        let main = main.clone();
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("shard-{shard}"))
            .io_memory(io_memory_bytes)
            .preempt_timer(TASK_QUOTA)
            .spawn(move || main(shard))
            .map_err(|e| io::Error::other(format!("cannot start shard {shard}: {e}")))?;
        handles.push(handle);
    }
    Ok(handles)
}

/// Runs a future to completion on a fresh executor on the calling thread. For tests,
/// tools and benchmarks that need the runtime without shards.
pub fn block_on<T, Fut>(fut: Fut) -> T
where
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    glommio::LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(DEFAULT_IO_MEMORY_BYTES)
        .make()
        .expect("executor")
        .run(fut)
}

/// Number of cores this process may run on.
pub fn available_cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Spawns a task on the current shard. The task stops when the returned handle is
/// dropped, unless it is detached.
pub fn spawn<T: 'static>(fut: impl Future<Output = T> + 'static) -> Task<T> {
    glommio::spawn_local(fut)
}

/// Spawns a task that runs to completion on its own.
pub fn spawn_detached(fut: impl Future<Output = ()> + 'static) {
    glommio::spawn_local(fut).detach();
}

/// Yields to other tasks if this one has run for its time slice. Call in long loops.
pub async fn yield_if_needed() {
    glommio::yield_if_needed().await
}

/// Runs `f` on the current shard's blocking thread (one per shard, placed like the
/// shard) and waits for it without holding up the shard's other tasks. For system
/// calls that may block for long and have no io_uring form: unlinking a large file
/// frees its extents and, on a file system mounted with `discard`, trims them before
/// returning (about 10 ms per 64 MiB on the development VM).
pub async fn spawn_blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    glommio::executor().spawn_blocking(f).await
}
