//! Errors of the control plane.

use std::path::PathBuf;

use sluice_core::config::ConfigError;
use sluice_core::ErrorCode;

/// The control plane cannot start or cannot be reached.
#[derive(Debug, thiserror::Error)]
pub enum CoordinationError {
    #[error("metadata store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("metadata store {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path}: {reason}")]
    Inconsistent { path: PathBuf, reason: String },
    #[error("stored topic {topic} has an invalid configuration: {source}")]
    TopicConfig {
        topic: String,
        #[source]
        source: ConfigError,
    },
    #[error("cannot start the control thread: {0}")]
    Spawn(#[source] std::io::Error),
    #[error("the control plane has stopped")]
    Stopped,
    /// ZooKeeper failed or could not be reached (cluster mode).
    #[error("ZooKeeper {path}: {source}")]
    ZooKeeper {
        path: String,
        #[source]
        source: zookeeper_client::Error,
    },
    /// Another live broker is registered under this broker's id (cluster mode).
    #[error("broker.id {0} is already registered in ZooKeeper by another live broker")]
    BrokerIdInUse(i32),
    /// A `__consumer_offsets` record or batch that cannot be decoded (or encoded).
    #[error("group record: {0}")]
    CorruptGroupRecord(String),
}

/// One item of a control request failed; sent back as data, with the Kafka error code
/// the client sees and a message for the response's `error_message`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ControlError {
    pub code: ErrorCode,
    pub message: String,
}

impl ControlError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ControlError {
        ControlError {
            code,
            message: message.into(),
        }
    }
}
