//! TCP for the Kafka listener.
//!
//! Every shard binds the same address; the listener sets `SO_REUSEPORT`, so the kernel
//! spreads incoming connections over the shards.

pub use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
pub use glommio::net::{TcpListener, TcpStream};
