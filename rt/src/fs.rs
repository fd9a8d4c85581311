//! Direct-I/O files for the segment log.

pub use glommio::io::{DmaBuffer, DmaFile, ReadResult};
