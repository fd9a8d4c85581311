//! The runtime layer: everything Sluice needs from glommio, and nothing more, behind
//! names of our own, so the rest of the code reads as plain async Rust and a change of
//! runtime touches this crate only.
//!
//! - [`exec`]: starting one pinned executor per core (a *shard*), spawning tasks on the
//!   current shard, cooperative yielding.
//! - [`time`]: sleeping, deadlines and timeouts on the current shard.
//! - [`net`]: TCP listeners (bound with `SO_REUSEPORT` so every shard accepts on the
//!   same port) and streams.
//! - [`fs`]: direct-I/O files and aligned buffers for the segment log.
//! - [`sync`]: channels between shards and to the control plane, and a shard-local
//!   notification for waiters (long-polling fetches, appenders waiting for a flush).
//!
//! Invariant: no other crate names `glommio`.

pub mod exec;
pub mod fs;
pub mod net;
pub mod sync;
pub mod time;
