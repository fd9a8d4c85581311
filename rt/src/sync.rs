//! Channels and notifications.
//!
//! Channels are `async-channel` (lock-free queues, `Send`), used between shards (the
//! forwarding mesh connected at start) and between shards and the control plane.
//! [`Notify`] wakes every waiter when something changes (a partition's high watermark,
//! a flush); waiters re-check their condition after waking.

pub use async_channel::{bounded, unbounded, Receiver, RecvError, SendError, Sender};
pub use event_listener::{Event as Notify, EventListener, Listener};

/// A channel for exactly one reply.
pub fn oneshot<T>() -> (Sender<T>, Receiver<T>) {
    bounded(1)
}
