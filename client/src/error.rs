//! The crate's one error type. Kafka error codes from responses are kept as numbers
//! (`KafkaError::code`) so callers can match on them; everything else is a connection,
//! protocol or usage problem.

use std::fmt;
use std::io;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;

/// Kafka error codes this crate and its callers act on (Kafka's `Errors` numbering).
pub mod code {
    pub const NONE: i16 = 0;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const LEADER_NOT_AVAILABLE: i16 = 5;
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    pub const REQUEST_TIMED_OUT: i16 = 7;
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const NON_EMPTY_GROUP: i16 = 68;
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
}

/// An error code returned by a broker, with the broker's message when it sent one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaError {
    pub code: i16,
    pub message: Option<String>,
}

impl KafkaError {
    pub fn new(code: i16, message: Option<String>) -> KafkaError {
        assert_ne!(code, code::NONE, "a KafkaError always carries an error");
        KafkaError {
            code,
            message: message.filter(|m| !m.is_empty()),
        }
    }

    /// `Err` for a non-zero code.
    pub fn check(code: i16, message: Option<String>) -> Result<(), KafkaError> {
        if code == code::NONE {
            Ok(())
        } else {
            Err(KafkaError::new(code, message))
        }
    }

    /// Kafka's upper-case name for the code, e.g. `UNKNOWN_TOPIC_OR_PARTITION`.
    pub fn name(&self) -> String {
        match ResponseError::try_from_code(self.code) {
            Some(ResponseError::Unknown(_)) | None => format!("UNKNOWN_ERROR_CODE_{}", self.code),
            Some(e) => screaming_snake(&format!("{e:?}")),
        }
    }

    /// Whether retrying the request (after refreshing metadata) may succeed.
    pub fn is_retriable(&self) -> bool {
        ResponseError::try_from_code(self.code).is_some_and(|e| e.is_retriable())
    }
}

impl fmt::Display for KafkaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.message {
            Some(m) => write!(f, "{m}"),
            None => match ResponseError::try_from_code(self.code) {
                Some(e) => write!(f, "{} ({e})", self.name()),
                None => write!(f, "{}", self.name()),
            },
        }
    }
}

fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, ch) in camel.chars().enumerate() {
        if ch.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot resolve {0}")]
    Resolve(String),
    // The io::Error is in the message rather than a `source`, so it is printed once.
    #[error("cannot connect to {addr}: {error}")]
    Connect { addr: String, error: io::Error },
    #[error("connection to {addr} failed: {error}")]
    Io { addr: String, error: io::Error },
    #[error("{addr} closed the connection")]
    Closed { addr: String },
    #[error("protocol error with {addr}: {detail}")]
    Protocol { addr: String, detail: String },
    #[error("the broker does not support a usable version of {api:?}")]
    UnsupportedApi { api: ApiKey },
    #[error("{context}: {error}")]
    Kafka { context: String, error: KafkaError },
    #[error("{0}")]
    Invalid(String),
    #[error("timed out: {0}")]
    Timeout(String),
}

impl ClientError {
    /// The Kafka error code, when the broker answered with one.
    pub fn kafka_code(&self) -> Option<i16> {
        match self {
            ClientError::Kafka { error, .. } => Some(error.code),
            _ => None,
        }
    }

    pub(crate) fn kafka(context: impl Into<String>, error: KafkaError) -> ClientError {
        ClientError::Kafka {
            context: context.into(),
            error,
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kafka() {
        assert_eq!(
            KafkaError::new(3, None).name(),
            "UNKNOWN_TOPIC_OR_PARTITION"
        );
        assert_eq!(KafkaError::new(36, None).name(), "TOPIC_ALREADY_EXISTS");
        assert_eq!(KafkaError::new(-7, None).name(), "UNKNOWN_ERROR_CODE_-7");
        assert!(KafkaError::new(6, None).is_retriable());
        assert!(!KafkaError::new(36, None).is_retriable());
    }

    #[test]
    fn broker_message_wins_over_description() {
        let e = KafkaError::new(36, Some("Topic 'a' already exists.".into()));
        assert_eq!(e.to_string(), "Topic 'a' already exists.");
        assert!(KafkaError::new(36, Some(String::new()))
            .to_string()
            .starts_with("TOPIC_ALREADY_EXISTS"));
    }
}
