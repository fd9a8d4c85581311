//! Broker configuration, with Kafka's `server.properties` key names.
//!
//! [`BrokerConfig::from_properties`] reads a properties text plus `--override`s, warns
//! about unknown keys, and refuses a bad value with an error naming the key;
//! [`BrokerConfig::load`] does the same from a file. The broker keeps the set of keys
//! that were set explicitly, so DescribeConfigs can tell a static broker setting from a
//! default.
//!
//! [`LogConfig`] is the per-partition log configuration: the broker's `log.*` defaults
//! overlaid with a topic's own configs (`retention.ms`, `segment.bytes`, ...), see
//! [`LogConfig::for_topic`]. [`TOPIC_CONFIGS`] is the one table of topic configs Sluice
//! supports; validation ([`validate_topic_configs`]) and DescribeConfigs
//! ([`topic_config_entries`], [`broker_config_entries`]) are driven by it.
//!
//! Everything here is plain data, usable on any thread: the configuration is read once
//! at start on the main thread and then shared read-only.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// A listener, `NAME://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Listener name, upper case (`PLAINTEXT`).
    pub name: String,
    /// Host or IP literal (IPv6 without brackets). An empty host in the configuration
    /// binds every interface and is stored as `0.0.0.0`.
    pub host: String,
    /// Port; 0 asks the kernel for an ephemeral port (tests).
    pub port: u16,
}

impl Listener {
    /// Parses `NAME://host:port` (`host` may be empty, or a bracketed IPv6 literal).
    /// `key` names the configuration in errors.
    fn parse(key: &str, text: &str) -> Result<Listener, ConfigError> {
        let bad = |reason: &str| ConfigError::invalid(key, text, reason);
        let (name, address) = text
            .split_once("://")
            .ok_or_else(|| bad("a listener is NAME://host:port"))?;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(bad("listener name must be letters, digits or '_'"));
        }
        let (host, port) = if let Some(rest) = address.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| bad("unterminated IPv6 address"))?;
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| bad("missing :port after the host"))?;
            (host, port)
        } else {
            address
                .rsplit_once(':')
                .ok_or_else(|| bad("missing :port after the host"))?
        };
        if host.contains(|c: char| c.is_whitespace() || c == '/' || c == '[' || c == ']')
            || (!address.starts_with('[') && host.contains(':'))
        {
            return Err(bad("malformed host"));
        }
        let port: u16 = port
            .parse()
            .map_err(|_| bad("port must be an integer in 0..=65535"))?;
        Ok(Listener {
            name: name.to_ascii_uppercase(),
            host: if host.is_empty() {
                "0.0.0.0".to_string()
            } else {
                host.to_string()
            },
            port,
        })
    }
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.name, self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.name, self.host, self.port)
        }
    }
}

/// How a record batch's timestamp is set (`message.timestamp.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

impl TimestampType {
    /// The configuration spelling (`CreateTime`, `LogAppendTime`).
    pub const fn as_str(self) -> &'static str {
        match self {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        }
    }
}

/// `compression.type` of a topic.
///
/// Only [`CompressionType::Producer`] semantics are implemented: batches are stored as
/// the producer compressed them. The other values are accepted and stored (so tools that
/// set them work and DescribeConfigs shows them), but the broker does not recompress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompressionType {
    Producer,
    Uncompressed,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl CompressionType {
    /// The configuration spelling (`producer`, `gzip`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            CompressionType::Producer => "producer",
            CompressionType::Uncompressed => "uncompressed",
            CompressionType::Gzip => "gzip",
            CompressionType::Snappy => "snappy",
            CompressionType::Lz4 => "lz4",
            CompressionType::Zstd => "zstd",
        }
    }

    fn parse(text: &str) -> Option<CompressionType> {
        const ALL: [CompressionType; 6] = [
            CompressionType::Producer,
            CompressionType::Uncompressed,
            CompressionType::Gzip,
            CompressionType::Snappy,
            CompressionType::Lz4,
            CompressionType::Zstd,
        ];
        ALL.into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(text))
    }
}

/// Configuration of one partition's log. Built from the broker defaults and the topic's
/// overrides; immutable once a log is opened with it.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes` / `log.segment.bytes`: roll when the active segment reaches this.
    pub segment_bytes: u64,
    /// `segment.ms` / `log.roll.ms` (`log.roll.hours`): roll when the active segment's
    /// first batch is older than this.
    pub segment_ms: u64,
    /// `retention.ms` / `log.retention.ms` (`.minutes`, `.hours`); `None` keeps forever (-1).
    pub retention_ms: Option<u64>,
    /// `retention.bytes` / `log.retention.bytes`; `None` is unlimited (-1).
    pub retention_bytes: Option<u64>,
    /// `index.interval.bytes` / `log.index.interval.bytes`: bytes between sparse index entries.
    pub index_interval_bytes: u32,
    /// `segment.index.bytes` / `log.index.size.max.bytes`: maximum size of an index file.
    pub segment_index_bytes: u32,
    /// `flush.messages` / `log.flush.interval.messages`: fdatasync after this many
    /// records; `None` never forces a sync by count (Kafka's default, `Long.MAX_VALUE`).
    pub flush_messages: Option<u64>,
    /// `flush.ms` / `log.flush.interval.ms`: fdatasync at least this often; `None` never.
    pub flush_ms: Option<u64>,
    /// `max.message.bytes` / `message.max.bytes`: largest record batch accepted.
    pub max_message_bytes: u32,
    /// `message.timestamp.type` / `log.message.timestamp.type`.
    pub timestamp_type: TimestampType,
    /// Bytes of segment space reserved ahead of the writer (direct-I/O writes into
    /// allocated space run 2-3x faster). `preallocate` / `log.preallocate` switch it:
    /// `false` sets 0, `true` keeps the default amount. Unlike Kafka, preallocation is
    /// on by default.
    pub preallocate_bytes: u64,
    /// `min.insync.replicas`: acks=all fails with NOT_ENOUGH_REPLICAS below this ISR size.
    pub min_insync_replicas: i32,
    /// `unclean.leader.election.enable`: may a replica outside the ISR become leader.
    pub unclean_leader_election_enable: bool,
    /// `compression.type`; stored, but only `producer` semantics are implemented.
    pub compression_type: CompressionType,
    /// `log.cache.max.bytes` (broker only, not a topic config; Sluice's own key): the
    /// byte budget of each shard's read cache of segment data, shared by all the
    /// partitions the shard owns (written data and read-ahead, least recently used
    /// evicted first). 0 turns the cache off.
    pub cache_max_bytes: u64,
}

/// Default of [`LogConfig::preallocate_bytes`] when preallocation is on.
pub const DEFAULT_PREALLOCATE_BYTES: u64 = 32 * 1024 * 1024;
/// Default of [`LogConfig::cache_max_bytes`], per shard.
pub const DEFAULT_LOG_CACHE_MAX_BYTES: u64 = 256 * 1024 * 1024;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: Some(7 * 24 * 3600 * 1000),
            retention_bytes: None,
            index_interval_bytes: 4096,
            segment_index_bytes: 10 * 1024 * 1024,
            flush_messages: None,
            flush_ms: None,
            max_message_bytes: 1_048_588,
            timestamp_type: TimestampType::CreateTime,
            preallocate_bytes: DEFAULT_PREALLOCATE_BYTES,
            min_insync_replicas: 1,
            unclean_leader_election_enable: false,
            compression_type: CompressionType::Producer,
            cache_max_bytes: DEFAULT_LOG_CACHE_MAX_BYTES,
        }
    }
}

impl LogConfig {
    /// The log configuration of a topic: `defaults` (the broker's `log.*` settings)
    /// overlaid with the topic's own configs. Errors name the offending topic config;
    /// Kafka answers them with INVALID_CONFIG.
    pub fn for_topic(defaults: &LogConfig, topic: &TopicConfigs) -> Result<LogConfig, ConfigError> {
        let mut log = defaults.clone();
        for (name, value) in topic {
            let def = topic_config_def(name)
                .ok_or_else(|| ConfigError::invalid(name, value, "unknown topic configuration"))?;
            set_topic_config(&mut log, def, name, value)?;
        }
        Ok(log)
    }

    /// The value of a topic config (a name from [`TOPIC_CONFIGS`]) as DescribeConfigs
    /// shows it; `None` for a config without a value (Kafka's `null`).
    pub fn topic_config_value(&self, name: &str) -> Option<String> {
        let value = match name {
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            "retention.ms" => optional_to_string(self.retention_ms, "-1"),
            "retention.bytes" => optional_to_string(self.retention_bytes, "-1"),
            "index.interval.bytes" => self.index_interval_bytes.to_string(),
            "segment.index.bytes" => self.segment_index_bytes.to_string(),
            "flush.messages" => optional_to_string(self.flush_messages, LONG_MAX),
            "flush.ms" => optional_to_string(self.flush_ms, LONG_MAX),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "message.timestamp.type" => self.timestamp_type.as_str().to_string(),
            "cleanup.policy" => "delete".to_string(),
            "compression.type" => self.compression_type.as_str().to_string(),
            "min.insync.replicas" => self.min_insync_replicas.to_string(),
            "preallocate" => (self.preallocate_bytes > 0).to_string(),
            "unclean.leader.election.enable" => self.unclean_leader_election_enable.to_string(),
            _ => return None,
        };
        Some(value)
    }
}

const LONG_MAX: &str = "9223372036854775807";

fn optional_to_string(value: Option<u64>, none: &str) -> String {
    value.map_or_else(|| none.to_string(), |v| v.to_string())
}

/// The broker's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerConfig {
    /// `broker.id`
    pub broker_id: i32,
    /// `listeners`
    pub listeners: Vec<Listener>,
    /// `advertised.listeners` (defaults to `listeners`). A listener bound to `0.0.0.0`
    /// or port 0 is advertised as configured; the binary substitutes the host name and
    /// the bound port.
    pub advertised_listeners: Vec<Listener>,
    /// `log.dirs` (or `log.dir`); the first is used for data.
    pub log_dirs: Vec<PathBuf>,
    /// `num.partitions`: partitions of an auto-created topic or one created without a count.
    pub num_partitions: i32,
    /// `default.replication.factor`
    pub default_replication_factor: i16,
    /// `min.insync.replicas` (the same value as `log.min_insync_replicas`).
    pub min_insync_replicas: i32,
    /// `auto.create.topics.enable`
    pub auto_create_topics_enable: bool,
    /// `delete.topic.enable`
    pub delete_topic_enable: bool,
    /// `socket.request.max.bytes`: a request frame larger than this is refused before
    /// any buffer is allocated for it.
    pub socket_request_max_bytes: u32,
    /// `log.retention.check.interval.ms`
    pub log_retention_check_interval_ms: u64,
    /// `replica.lag.time.max.ms`
    pub replica_lag_time_max_ms: u64,
    /// `zookeeper.connect` (`host:port[,host:port...][/chroot]`); `None` runs the
    /// embedded single-node metadata store.
    pub zookeeper_connect: Option<String>,
    /// `zookeeper.session.timeout.ms`: how long after losing touch with ZooKeeper this
    /// broker's ephemeral znodes vanish (and the controller fails its partitions over).
    pub zookeeper_session_timeout_ms: u64,
    /// `zookeeper.connection.timeout.ms`: how long start-up waits for ZooKeeper.
    pub zookeeper_connection_timeout_ms: u64,
    /// `broker.rack`
    pub broker_rack: Option<String>,
    /// `offsets.topic.replication.factor`
    pub offsets_topic_replication_factor: i16,
    /// `auto.leader.rebalance.enable`: the controller moves leadership back to each
    /// partition's preferred replica once it is in sync.
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`
    pub leader_imbalance_check_interval_seconds: u64,
    /// `replica.fetch.max.bytes`: bytes per partition a follower asks for.
    pub replica_fetch_max_bytes: i32,
    /// `replica.fetch.response.max.bytes`
    pub replica_fetch_response_max_bytes: i32,
    /// `replica.fetch.wait.max.ms`: how long a follower's fetch may wait at the leader.
    pub replica_fetch_wait_max_ms: i32,
    /// `replica.fetch.min.bytes`
    pub replica_fetch_min_bytes: i32,
    /// `replica.fetch.backoff.ms`: pause after a failed replica fetch.
    pub replica_fetch_backoff_ms: u64,
    /// `replica.socket.timeout.ms`
    pub replica_socket_timeout_ms: u64,
    /// `replica.high.watermark.checkpoint.interval.ms`
    pub replica_high_watermark_checkpoint_interval_ms: u64,
    /// `offsets.topic.num.partitions`
    pub offsets_topic_num_partitions: i32,
    /// `group.initial.rebalance.delay.ms`: how long a new group waits for more members
    /// before its first rebalance completes.
    pub group_initial_rebalance_delay_ms: i32,
    /// `group.min.session.timeout.ms`
    pub group_min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`
    pub group_max_session_timeout_ms: i32,
    /// `unclean.leader.election.enable` (the same value as
    /// `log.unclean_leader_election_enable`).
    pub unclean_leader_election_enable: bool,
    /// `metrics.listener`: `host:port` of the Prometheus endpoint; off when `None`.
    pub metrics_listener: Option<String>,
    /// Defaults of every partition's log (`log.*` keys).
    pub log: LogConfig,
    /// Every recognised key that the properties or overrides set explicitly (as
    /// written, e.g. `log.retention.hours`), for DescribeConfigs' STATIC_BROKER_CONFIG.
    pub explicit_keys: BTreeSet<String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        let listener = Listener {
            name: "PLAINTEXT".into(),
            host: "127.0.0.1".into(),
            port: 9092,
        };
        BrokerConfig {
            broker_id: 0,
            listeners: vec![listener.clone()],
            advertised_listeners: vec![listener],
            log_dirs: vec![PathBuf::from("./data")],
            num_partitions: 1,
            default_replication_factor: 1,
            min_insync_replicas: 1,
            auto_create_topics_enable: true,
            delete_topic_enable: true,
            socket_request_max_bytes: 104_857_600,
            log_retention_check_interval_ms: 300_000,
            replica_lag_time_max_ms: 30_000,
            zookeeper_connect: None,
            zookeeper_session_timeout_ms: 18_000,
            zookeeper_connection_timeout_ms: 18_000,
            broker_rack: None,
            offsets_topic_replication_factor: 3,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_seconds: 300,
            replica_fetch_max_bytes: 1_048_576,
            replica_fetch_response_max_bytes: 10_485_760,
            replica_fetch_wait_max_ms: 500,
            replica_fetch_min_bytes: 1,
            replica_fetch_backoff_ms: 1_000,
            replica_socket_timeout_ms: 30_000,
            replica_high_watermark_checkpoint_interval_ms: 5_000,
            offsets_topic_num_partitions: 50,
            group_initial_rebalance_delay_ms: 3_000,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            unclean_leader_election_enable: false,
            metrics_listener: None,
            log: LogConfig::default(),
            explicit_keys: BTreeSet::new(),
        }
    }
}

/// What went wrong with a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigErrorKind {
    /// `key` has the unusable `value`.
    InvalidValue,
    /// The configuration file `key` could not be read.
    File,
}

/// A configuration that cannot be used. The message names the key (or the file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.message())]
pub struct ConfigError {
    /// The configuration key, or the file path for [`ConfigErrorKind::File`].
    pub key: String,
    pub value: String,
    pub reason: String,
    pub kind: ConfigErrorKind,
}

impl ConfigError {
    /// `key` has the unusable `value` because of `reason`.
    pub fn invalid(key: &str, value: &str, reason: &str) -> ConfigError {
        ConfigError {
            key: key.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
            kind: ConfigErrorKind::InvalidValue,
        }
    }

    fn file(path: &Path, reason: &str) -> ConfigError {
        ConfigError {
            key: path.display().to_string(),
            value: String::new(),
            reason: reason.to_string(),
            kind: ConfigErrorKind::File,
        }
    }

    fn message(&self) -> String {
        match self.kind {
            ConfigErrorKind::InvalidValue => format!(
                "invalid value {:?} for configuration {}: {}",
                self.value, self.key, self.reason
            ),
            ConfigErrorKind::File => {
                format!(
                    "cannot read configuration file {}: {}",
                    self.key, self.reason
                )
            }
        }
    }
}

/// Topic-level overrides as given to CreateTopics or stored with a topic.
pub type TopicConfigs = BTreeMap<String, String>;

/// The type of a configuration, with DescribeConfigs' `config_type` codes (v3+).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean,
    String,
    Int,
    Long,
    List,
}

impl ConfigType {
    /// DescribeConfigs' `ConfigType` code (Kafka's `ConfigResource`/`ConfigEntry.ConfigType`).
    pub const fn code(self) -> i8 {
        match self {
            ConfigType::Boolean => 1,
            ConfigType::String => 2,
            ConfigType::Int => 3,
            ConfigType::Long => 5,
            ConfigType::List => 7,
        }
    }
}

/// A supported topic config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicConfigDef {
    /// The topic-level name (`retention.ms`).
    pub name: &'static str,
    /// The broker-level key that supplies the default (`log.retention.ms`).
    pub broker_key: &'static str,
    /// Other broker keys that set the same value (`log.retention.hours`, ...).
    pub broker_synonyms: &'static [&'static str],
    pub config_type: ConfigType,
    /// The value when neither the topic nor the broker sets it.
    pub default: &'static str,
}

/// Every topic config Sluice supports, in the order DescribeConfigs lists them.
pub const TOPIC_CONFIGS: &[TopicConfigDef] = &[
    TopicConfigDef {
        name: "cleanup.policy",
        broker_key: "log.cleanup.policy",
        broker_synonyms: &[],
        config_type: ConfigType::List,
        default: "delete",
    },
    TopicConfigDef {
        name: "compression.type",
        broker_key: "compression.type",
        broker_synonyms: &[],
        config_type: ConfigType::String,
        default: "producer",
    },
    TopicConfigDef {
        name: "flush.messages",
        broker_key: "log.flush.interval.messages",
        broker_synonyms: &[],
        config_type: ConfigType::Long,
        default: LONG_MAX,
    },
    TopicConfigDef {
        name: "flush.ms",
        broker_key: "log.flush.interval.ms",
        broker_synonyms: &[],
        config_type: ConfigType::Long,
        default: LONG_MAX,
    },
    TopicConfigDef {
        name: "index.interval.bytes",
        broker_key: "log.index.interval.bytes",
        broker_synonyms: &[],
        config_type: ConfigType::Int,
        default: "4096",
    },
    TopicConfigDef {
        name: "max.message.bytes",
        broker_key: "message.max.bytes",
        broker_synonyms: &[],
        config_type: ConfigType::Int,
        default: "1048588",
    },
    TopicConfigDef {
        name: "message.timestamp.type",
        broker_key: "log.message.timestamp.type",
        broker_synonyms: &[],
        config_type: ConfigType::String,
        default: "CreateTime",
    },
    TopicConfigDef {
        name: "min.insync.replicas",
        broker_key: "min.insync.replicas",
        broker_synonyms: &[],
        config_type: ConfigType::Int,
        default: "1",
    },
    TopicConfigDef {
        name: "preallocate",
        broker_key: "log.preallocate",
        broker_synonyms: &[],
        config_type: ConfigType::Boolean,
        default: "true",
    },
    TopicConfigDef {
        name: "retention.bytes",
        broker_key: "log.retention.bytes",
        broker_synonyms: &[],
        config_type: ConfigType::Long,
        default: "-1",
    },
    TopicConfigDef {
        name: "retention.ms",
        broker_key: "log.retention.ms",
        broker_synonyms: &["log.retention.minutes", "log.retention.hours"],
        config_type: ConfigType::Long,
        default: "604800000",
    },
    TopicConfigDef {
        name: "segment.bytes",
        broker_key: "log.segment.bytes",
        broker_synonyms: &[],
        config_type: ConfigType::Int,
        default: "1073741824",
    },
    TopicConfigDef {
        name: "segment.index.bytes",
        broker_key: "log.index.size.max.bytes",
        broker_synonyms: &[],
        config_type: ConfigType::Int,
        default: "10485760",
    },
    TopicConfigDef {
        name: "segment.ms",
        broker_key: "log.roll.ms",
        broker_synonyms: &["log.roll.hours"],
        config_type: ConfigType::Long,
        default: "604800000",
    },
    TopicConfigDef {
        name: "unclean.leader.election.enable",
        broker_key: "unclean.leader.election.enable",
        broker_synonyms: &[],
        config_type: ConfigType::Boolean,
        default: "false",
    },
];

/// The definition of topic config `name`, if Sluice supports it.
pub fn topic_config_def(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIGS.iter().find(|def| def.name == name)
}

/// Checks a topic's configs: every name must be in [`TOPIC_CONFIGS`] and every value
/// valid. The error names the first offending config; Kafka answers INVALID_CONFIG.
pub fn validate_topic_configs(configs: &TopicConfigs) -> Result<(), ConfigError> {
    LogConfig::for_topic(&LogConfig::default(), configs).map(|_| ())
}

/// Applies one topic config to `log`. `key` is the name used in errors (the topic name,
/// or the broker key when the value came from the properties).
fn set_topic_config(
    log: &mut LogConfig,
    def: &TopicConfigDef,
    key: &str,
    value: &str,
) -> Result<(), ConfigError> {
    let v = Value { key, text: value };
    match def.name {
        "segment.bytes" => log.segment_bytes = v.int_at_least(14)? as u64,
        "segment.ms" => log.segment_ms = v.long_at_least(1)? as u64,
        "retention.ms" => log.retention_ms = v.long_or_unlimited()?,
        "retention.bytes" => log.retention_bytes = v.long_or_unlimited()?,
        "index.interval.bytes" => log.index_interval_bytes = v.int_at_least(0)? as u32,
        "segment.index.bytes" => log.segment_index_bytes = v.int_at_least(4)? as u32,
        "flush.messages" => log.flush_messages = v.long_or_never(1)?,
        "flush.ms" => log.flush_ms = v.long_or_never(0)?,
        "max.message.bytes" => log.max_message_bytes = v.int_at_least(1)? as u32,
        "message.timestamp.type" => {
            log.timestamp_type = match v.trimmed() {
                "CreateTime" => TimestampType::CreateTime,
                "LogAppendTime" => TimestampType::LogAppendTime,
                _ => return Err(v.error("must be CreateTime or LogAppendTime")),
            }
        }
        "cleanup.policy" => {
            let policies = v.list();
            if policies.is_empty() {
                return Err(v.error("must be delete"));
            }
            for policy in policies {
                match policy {
                    "delete" => {}
                    "compact" => {
                        return Err(v.error("cleanup.policy=compact is not supported by Sluice"))
                    }
                    _ => return Err(v.error("must be delete (compact is not supported)")),
                }
            }
        }
        "compression.type" => {
            log.compression_type = CompressionType::parse(v.trimmed()).ok_or_else(|| {
                v.error("must be one of producer, uncompressed, gzip, snappy, lz4, zstd")
            })?
        }
        "min.insync.replicas" => log.min_insync_replicas = v.int_at_least(1)?,
        "preallocate" => {
            log.preallocate_bytes = if v.boolean()? {
                DEFAULT_PREALLOCATE_BYTES
            } else {
                0
            }
        }
        "unclean.leader.election.enable" => log.unclean_leader_election_enable = v.boolean()?,
        other => unreachable!("topic config {other} is in TOPIC_CONFIGS but not handled"),
    }
    Ok(())
}

/// One configuration value, with the key it was given for, for error messages.
struct Value<'a> {
    key: &'a str,
    text: &'a str,
}

impl Value<'_> {
    fn error(&self, reason: &str) -> ConfigError {
        ConfigError::invalid(self.key, self.text, reason)
    }

    fn trimmed(&self) -> &str {
        self.text.trim()
    }

    fn int(&self) -> Result<i32, ConfigError> {
        self.trimmed()
            .parse()
            .map_err(|_| self.error("not an integer"))
    }

    fn long(&self) -> Result<i64, ConfigError> {
        self.trimmed()
            .parse()
            .map_err(|_| self.error("not an integer"))
    }

    fn int_at_least(&self, min: i32) -> Result<i32, ConfigError> {
        let value = self.int()?;
        if value < min {
            return Err(self.error(&format!("must be at least {min}")));
        }
        Ok(value)
    }

    fn long_at_least(&self, min: i64) -> Result<i64, ConfigError> {
        let value = self.long()?;
        if value < min {
            return Err(self.error(&format!("must be at least {min}")));
        }
        Ok(value)
    }

    /// A non-negative long, or -1 for "unlimited".
    fn long_or_unlimited(&self) -> Result<Option<u64>, ConfigError> {
        let value = self.long()?;
        match value {
            -1 => Ok(None),
            v if v < -1 => Err(self.error("must be -1 (unlimited) or at least 0")),
            v => Ok(Some(v as u64)),
        }
    }

    /// A long of at least `min`, where `Long.MAX_VALUE` (Kafka's default) means never.
    fn long_or_never(&self, min: i64) -> Result<Option<u64>, ConfigError> {
        let value = self.long_at_least(min)?;
        Ok((value != i64::MAX).then_some(value as u64))
    }

    fn boolean(&self) -> Result<bool, ConfigError> {
        let text = self.trimmed();
        if text.eq_ignore_ascii_case("true") {
            Ok(true)
        } else if text.eq_ignore_ascii_case("false") {
            Ok(false)
        } else {
            Err(self.error("must be true or false"))
        }
    }

    /// Comma-separated items, trimmed, empty items dropped.
    fn list(&self) -> Vec<&str> {
        self.text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .collect()
    }
}

/// Keys Kafka has that Sluice accepts and ignores without a warning: thread counts and
/// socket buffers (sized differently here, per shard), and features not implemented
/// whose defaults match Sluice's behaviour.
const IGNORED_KEYS: &[&str] = &[
    "num.network.threads",
    "num.io.threads",
    "num.replica.fetchers",
    "num.recovery.threads.per.data.dir",
    "background.threads",
    "socket.send.buffer.bytes",
    "socket.receive.buffer.bytes",
    "queued.max.requests",
    "offsets.topic.segment.bytes",
    "offsets.retention.minutes",
    "zookeeper.set.acl",
    "listener.security.protocol.map",
    "inter.broker.listener.name",
    "security.inter.broker.protocol",
    "controlled.shutdown.enable",
    "replica.socket.receive.buffer.bytes",
];

/// Key prefixes accepted and ignored like [`IGNORED_KEYS`].
const IGNORED_PREFIXES: &[&str] = &["log.cleaner.", "transaction.state.log.", "transaction."];

/// Security protocols; only `PLAINTEXT` is implemented.
const SECURITY_PROTOCOLS: &[&str] = &["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];

impl BrokerConfig {
    /// Reads the configuration file at `path` (Kafka's `server.properties` syntax; no
    /// file means all defaults), then applies `overrides`, each `key=value`. Returns the
    /// configuration and one warning per unknown key.
    pub fn load(
        path: Option<&Path>,
        overrides: &[String],
    ) -> Result<(BrokerConfig, Vec<String>), ConfigError> {
        let text = match path {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|error| ConfigError::file(path, &error.to_string()))?,
            None => String::new(),
        };
        let overrides = overrides
            .iter()
            .map(|item| match item.split_once('=') {
                Some((key, value)) if !key.trim().is_empty() => {
                    Ok((key.trim().to_string(), value.trim().to_string()))
                }
                _ => Err(ConfigError::invalid(
                    "--override",
                    item,
                    "an override is key=value",
                )),
            })
            .collect::<Result<Vec<_>, _>>()?;
        BrokerConfig::from_properties(&text, &overrides)
    }

    /// Builds the configuration from a properties text (Java `.properties` syntax) and
    /// overrides applied after it. Returns the configuration and one warning per unknown
    /// key; a bad value is an error naming its key.
    ///
    /// Precedence follows Kafka: `log.retention.ms` over `.minutes` over `.hours`,
    /// `log.roll.ms` over `log.roll.hours`, `log.dirs` over `log.dir`; an override
    /// replaces the file's value of the same key.
    pub fn from_properties(
        text: &str,
        overrides: &[(String, String)],
    ) -> Result<(BrokerConfig, Vec<String>), ConfigError> {
        let mut props: BTreeMap<String, String> = parse_properties(text)?.into_iter().collect();
        for (key, value) in overrides {
            props.insert(key.clone(), value.clone());
        }
        let mut reader = PropertyReader {
            props: &props,
            used: BTreeSet::new(),
        };
        let config = reader.build()?;
        let warnings = props
            .keys()
            .filter(|key| {
                !reader.used.contains(key.as_str())
                    && !IGNORED_KEYS.contains(&key.as_str())
                    && !IGNORED_PREFIXES
                        .iter()
                        .any(|prefix| key.starts_with(prefix))
            })
            .map(|key| format!("unknown configuration {key} is ignored"))
            .collect();
        Ok((config, warnings))
    }
}

/// Looks keys up in the merged properties and remembers which ones were recognised.
struct PropertyReader<'a> {
    props: &'a BTreeMap<String, String>,
    used: BTreeSet<&'static str>,
}

impl<'a> PropertyReader<'a> {
    fn get(&mut self, key: &'static str) -> Option<Value<'a>> {
        self.used.insert(key);
        self.props.get(key).map(|text| Value { key, text })
    }

    /// The first of `keys` that is set (highest precedence first).
    fn first(&mut self, keys: &[&'static str]) -> Option<Value<'a>> {
        keys.iter()
            .map(|key| self.get(key))
            .fold(None, |found, next| found.or(next))
    }

    fn build(&mut self) -> Result<BrokerConfig, ConfigError> {
        let mut config = BrokerConfig::default();

        if let Some(v) = self.get("broker.id") {
            config.broker_id = v.int_at_least(0).map_err(|_| {
                v.error("must be at least 0 (automatic broker id generation is not supported)")
            })?;
        }
        let protocol_map = match self.get("listener.security.protocol.map") {
            Some(v) => parse_protocol_map(&v)?,
            None => SECURITY_PROTOCOLS
                .iter()
                .map(|p| (p.to_string(), p.to_string()))
                .collect(),
        };
        if let Some(v) = self.get("listeners") {
            config.listeners = parse_listeners(&v, &protocol_map)?;
        }
        config.advertised_listeners = match self.get("advertised.listeners") {
            Some(v) => {
                let advertised = parse_listeners(&v, &protocol_map)?;
                for listener in &advertised {
                    if listener.host == "0.0.0.0" || listener.host == "::" {
                        return Err(v.error("cannot advertise a wildcard address"));
                    }
                    if !config.listeners.iter().any(|l| l.name == listener.name) {
                        return Err(
                            v.error(&format!("listener {} is not in listeners", listener.name))
                        );
                    }
                }
                advertised
            }
            None => config.listeners.clone(),
        };
        if let Some(v) = self.first(&["log.dirs", "log.dir"]) {
            let dirs = v.list();
            if dirs.is_empty() {
                return Err(v.error("at least one directory is required"));
            }
            config.log_dirs = dirs.into_iter().map(PathBuf::from).collect();
        }
        if let Some(v) = self.get("num.partitions") {
            config.num_partitions = v.int_at_least(1)?;
        }
        if let Some(v) = self.get("default.replication.factor") {
            let factor = v.int_at_least(1)?;
            config.default_replication_factor = i16::try_from(factor)
                .map_err(|_| v.error(&format!("must be at most {}", i16::MAX)))?;
        }
        if let Some(v) = self.get("auto.create.topics.enable") {
            config.auto_create_topics_enable = v.boolean()?;
        }
        if let Some(v) = self.get("delete.topic.enable") {
            config.delete_topic_enable = v.boolean()?;
        }
        if let Some(v) = self.get("socket.request.max.bytes") {
            config.socket_request_max_bytes = v.int_at_least(1)? as u32;
        }
        if let Some(v) = self.get("log.retention.check.interval.ms") {
            config.log_retention_check_interval_ms = v.long_at_least(1)? as u64;
        }
        if let Some(v) = self.get("replica.lag.time.max.ms") {
            config.replica_lag_time_max_ms = v.long_at_least(1)? as u64;
        }
        if let Some(v) = self.get("zookeeper.connect") {
            let connect = v.trimmed();
            config.zookeeper_connect = (!connect.is_empty()).then(|| connect.to_string());
        }
        if let Some(v) = self.get("zookeeper.session.timeout.ms") {
            config.zookeeper_session_timeout_ms = v.long_at_least(1)? as u64;
        }
        if let Some(v) = self.get("zookeeper.connection.timeout.ms") {
            config.zookeeper_connection_timeout_ms = v.long_at_least(1)? as u64;
        }
        if let Some(v) = self.get("broker.rack") {
            let rack = v.trimmed();
            config.broker_rack = (!rack.is_empty()).then(|| rack.to_string());
        }
        if let Some(v) = self.get("offsets.topic.replication.factor") {
            let factor = v.int_at_least(1)?;
            config.offsets_topic_replication_factor = i16::try_from(factor)
                .map_err(|_| v.error(&format!("must be at most {}", i16::MAX)))?;
        }
        if let Some(v) = self.get("auto.leader.rebalance.enable") {
            config.auto_leader_rebalance_enable = v.boolean()?;
        }
        if let Some(v) = self.get("leader.imbalance.check.interval.seconds") {
            config.leader_imbalance_check_interval_seconds = v.long_at_least(1)? as u64;
        }
        if let Some(v) = self.get("replica.fetch.max.bytes") {
            config.replica_fetch_max_bytes = v.int_at_least(1)?;
        }
        if let Some(v) = self.get("replica.fetch.response.max.bytes") {
            config.replica_fetch_response_max_bytes = v.int_at_least(1)?;
        }
        if let Some(v) = self.get("replica.fetch.wait.max.ms") {
            config.replica_fetch_wait_max_ms = v.int_at_least(0)?;
        }
        if let Some(v) = self.get("replica.fetch.min.bytes") {
            config.replica_fetch_min_bytes = v.int_at_least(1)?;
        }
        if let Some(v) = self.get("replica.fetch.backoff.ms") {
            config.replica_fetch_backoff_ms = v.long_at_least(0)? as u64;
        }
        if let Some(v) = self.get("replica.socket.timeout.ms") {
            config.replica_socket_timeout_ms = v.long_at_least(1)? as u64;
        }
        if let Some(v) = self.get("replica.high.watermark.checkpoint.interval.ms") {
            config.replica_high_watermark_checkpoint_interval_ms = v.long_at_least(1)? as u64;
        }
        if let Some(v) = self.get("offsets.topic.num.partitions") {
            config.offsets_topic_num_partitions = v.int_at_least(1)?;
        }
        if let Some(v) = self.get("group.initial.rebalance.delay.ms") {
            config.group_initial_rebalance_delay_ms = v.int_at_least(0)?;
        }
        if let Some(v) = self.get("group.min.session.timeout.ms") {
            config.group_min_session_timeout_ms = v.int_at_least(0)?;
        }
        if let Some(v) = self.get("group.max.session.timeout.ms") {
            config.group_max_session_timeout_ms = v.int_at_least(0)?;
        }
        if let Some(v) = self.get("metrics.listener") {
            let text = v.trimmed();
            if !text.is_empty() {
                let (_, port) = text
                    .rsplit_once(':')
                    .ok_or_else(|| v.error("must be host:port"))?;
                port.parse::<u16>()
                    .map_err(|_| v.error("port must be an integer in 0..=65535"))?;
                config.metrics_listener = Some(text.to_string());
            }
        }

        if let Some(v) = self.get("log.cache.max.bytes") {
            config.log.cache_max_bytes = v.long_at_least(0)? as u64;
        }

        // Log defaults: every topic config's broker key, through the same code as the
        // topic-level configs so both validate alike.
        for def in TOPIC_CONFIGS {
            if let Some(v) = self.get(def.broker_key) {
                set_topic_config(&mut config.log, def, v.key, v.text)?;
            }
        }
        if self.props.contains_key("log.roll.ms") {
            // Set above; log.roll.hours is only a fallback.
            self.used.insert("log.roll.hours");
        } else if let Some(v) = self.get("log.roll.hours") {
            config.log.segment_ms = hours_to_ms(&v, v.int_at_least(1)? as u64)?;
        }
        if self.props.contains_key("log.retention.ms") {
            self.used.insert("log.retention.minutes");
            self.used.insert("log.retention.hours");
        } else if let Some(v) = self.first(&["log.retention.minutes", "log.retention.hours"]) {
            let amount = v.int()?;
            config.log.retention_ms = match amount {
                -1 => None,
                n if n < -1 => return Err(v.error("must be -1 (forever) or at least 0")),
                n if v.key == "log.retention.minutes" => Some((n as u64).saturating_mul(60 * 1000)),
                n => Some(hours_to_ms(&v, n as u64)?),
            };
        }
        config.min_insync_replicas = config.log.min_insync_replicas;
        config.unclean_leader_election_enable = config.log.unclean_leader_election_enable;

        config.explicit_keys = self
            .used
            .iter()
            .filter(|key| self.props.contains_key(**key))
            .map(|key| key.to_string())
            .collect();
        Ok(config)
    }
}

fn hours_to_ms(v: &Value<'_>, hours: u64) -> Result<u64, ConfigError> {
    hours
        .checked_mul(3600 * 1000)
        .ok_or_else(|| v.error("too large"))
}

/// `listener.security.protocol.map`: `NAME:PROTOCOL,...`.
fn parse_protocol_map(v: &Value<'_>) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut map = BTreeMap::new();
    for item in v.list() {
        let (name, protocol) = item
            .split_once(':')
            .ok_or_else(|| v.error("entries are NAME:PROTOCOL"))?;
        let protocol = protocol.trim().to_ascii_uppercase();
        if !SECURITY_PROTOCOLS.contains(&protocol.as_str()) {
            return Err(v.error(&format!("unknown security protocol {protocol}")));
        }
        map.insert(name.trim().to_ascii_uppercase(), protocol);
    }
    Ok(map)
}

/// A comma-separated listener list: every listener's name must map to PLAINTEXT, names
/// and ports must be distinct (port 0 excepted).
fn parse_listeners(
    v: &Value<'_>,
    protocol_map: &BTreeMap<String, String>,
) -> Result<Vec<Listener>, ConfigError> {
    let items = v.list();
    if items.is_empty() {
        return Err(v.error("at least one listener is required"));
    }
    let mut listeners: Vec<Listener> = Vec::with_capacity(items.len());
    for item in items {
        let listener = Listener::parse(v.key, item)?;
        match protocol_map.get(&listener.name).map(String::as_str) {
            Some("PLAINTEXT") => {}
            Some(protocol) => {
                return Err(v.error(&format!(
                    "security protocol {protocol} is not supported (only PLAINTEXT)"
                )))
            }
            None => {
                return Err(v.error(&format!(
                    "listener name {} is not in listener.security.protocol.map",
                    listener.name
                )))
            }
        }
        if listeners.iter().any(|l| l.name == listener.name) {
            return Err(v.error(&format!("listener name {} appears twice", listener.name)));
        }
        if listener.port != 0 && listeners.iter().any(|l| l.port == listener.port) {
            return Err(v.error(&format!("port {} appears twice", listener.port)));
        }
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Parses Java `.properties` text into `(key, value)` pairs in file order.
///
/// Lines starting with `#` or `!` (after leading whitespace) are comments; a line ending
/// in an odd number of backslashes continues on the next line, whose leading whitespace
/// is dropped. The key ends at the first unescaped `=`, `:` or whitespace; the separator
/// and whitespace around it are skipped. Escapes `\t \n \r \f \uXXXX` are decoded and any
/// other escaped character stands for itself. Keys and values are trimmed.
pub fn parse_properties(text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut pairs = Vec::new();
    let mut lines = text.lines();
    while let Some(first) = lines.next() {
        let first = first.trim_start();
        if first.is_empty() || first.starts_with('#') || first.starts_with('!') {
            continue;
        }
        let mut logical = String::from(first);
        while ends_with_continuation(&logical) {
            logical.pop();
            match lines.next() {
                Some(next) => logical.push_str(next.trim_start()),
                None => break,
            }
        }
        let (key, value) = split_key_value(&logical);
        let key = unescape(key).map_err(|reason| ConfigError::invalid(key, value, reason))?;
        let value = unescape(value).map_err(|reason| ConfigError::invalid(&key, value, reason))?;
        pairs.push((key.trim().to_string(), value.trim().to_string()));
    }
    Ok(pairs)
}

fn ends_with_continuation(line: &str) -> bool {
    line.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 1
}

/// Splits a logical line at the key's end, skipping the separator.
fn split_key_value(line: &str) -> (&str, &str) {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'=' | b':' | b' ' | b'\t' | b'\x0c' => break,
            _ => i += 1,
        }
    }
    let i = i.min(bytes.len());
    let key = &line[..i];
    let rest = line[i..].trim_start_matches([' ', '\t', '\x0c']);
    let rest = rest
        .strip_prefix('=')
        .or_else(|| rest.strip_prefix(':'))
        .unwrap_or(rest);
    (key, rest.trim_start_matches([' ', '\t', '\x0c']))
}

fn unescape(text: &str) -> Result<String, &'static str> {
    if !text.contains('\\') {
        return Ok(text.to_string());
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let code = (hex.len() == 4)
                    .then(|| u32::from_str_radix(&hex, 16).ok())
                    .flatten()
                    .and_then(char::from_u32)
                    .ok_or("malformed \\uXXXX escape")?;
                out.push(code);
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Ok(out)
}

/// Where a DescribeConfigs value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic (`DYNAMIC_TOPIC_CONFIG`).
    DynamicTopic,
    /// Set in the broker's properties or overrides (`STATIC_BROKER_CONFIG`).
    StaticBroker,
    /// Nobody set it (`DEFAULT_CONFIG`).
    DefaultConfig,
}

impl ConfigSource {
    /// DescribeConfigs' `config_source` code.
    pub const fn code(&self) -> i8 {
        match self {
            ConfigSource::DynamicTopic => 1,
            ConfigSource::StaticBroker => 4,
            ConfigSource::DefaultConfig => 5,
        }
    }
}

/// One entry of a DescribeConfigs answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    pub source: ConfigSource,
    pub read_only: bool,
    pub sensitive: bool,
    pub config_type: ConfigType,
}

/// Every supported topic config of a topic: its own value (DYNAMIC_TOPIC_CONFIG), else
/// the broker's (STATIC_BROKER_CONFIG when the broker key was set, else DEFAULT_CONFIG).
/// Topic configs other than those in [`TOPIC_CONFIGS`] are not listed (they cannot be
/// stored: creation validates them).
pub fn topic_config_entries(broker: &BrokerConfig, topic: &TopicConfigs) -> Vec<ConfigEntry> {
    TOPIC_CONFIGS
        .iter()
        .map(|def| {
            let (value, source) = match topic.get(def.name) {
                Some(value) => (Some(value.clone()), ConfigSource::DynamicTopic),
                None => {
                    let explicit = std::iter::once(&def.broker_key)
                        .chain(def.broker_synonyms)
                        .any(|key| broker.explicit_keys.contains(*key));
                    let source = if explicit {
                        ConfigSource::StaticBroker
                    } else {
                        ConfigSource::DefaultConfig
                    };
                    (broker.log.topic_config_value(def.name), source)
                }
            };
            ConfigEntry {
                name: def.name.to_string(),
                value,
                source,
                read_only: false,
                sensitive: false,
                config_type: def.config_type,
            }
        })
        .collect()
}

/// The broker's configuration as DescribeConfigs shows it (all read-only: Sluice has no
/// dynamic broker configs).
pub fn broker_config_entries(broker: &BrokerConfig) -> Vec<ConfigEntry> {
    let join = |listeners: &[Listener]| {
        listeners
            .iter()
            .map(Listener::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let log_dirs = broker
        .log_dirs
        .iter()
        .map(|dir| dir.display().to_string())
        .collect::<Vec<_>>()
        .join(",");
    let mut entries: Vec<(&str, &[&str], Option<String>, ConfigType)> = vec![
        (
            "broker.id",
            &[],
            Some(broker.broker_id.to_string()),
            ConfigType::Int,
        ),
        (
            "listeners",
            &[],
            Some(join(&broker.listeners)),
            ConfigType::String,
        ),
        (
            "advertised.listeners",
            &[],
            Some(join(&broker.advertised_listeners)),
            ConfigType::String,
        ),
        ("log.dirs", &["log.dir"], Some(log_dirs), ConfigType::String),
        (
            "num.partitions",
            &[],
            Some(broker.num_partitions.to_string()),
            ConfigType::Int,
        ),
        (
            "default.replication.factor",
            &[],
            Some(broker.default_replication_factor.to_string()),
            ConfigType::Int,
        ),
        (
            "auto.create.topics.enable",
            &[],
            Some(broker.auto_create_topics_enable.to_string()),
            ConfigType::Boolean,
        ),
        (
            "delete.topic.enable",
            &[],
            Some(broker.delete_topic_enable.to_string()),
            ConfigType::Boolean,
        ),
        (
            "socket.request.max.bytes",
            &[],
            Some(broker.socket_request_max_bytes.to_string()),
            ConfigType::Int,
        ),
        (
            "log.retention.check.interval.ms",
            &[],
            Some(broker.log_retention_check_interval_ms.to_string()),
            ConfigType::Long,
        ),
        (
            "replica.lag.time.max.ms",
            &[],
            Some(broker.replica_lag_time_max_ms.to_string()),
            ConfigType::Long,
        ),
        (
            "zookeeper.connect",
            &[],
            broker.zookeeper_connect.clone(),
            ConfigType::String,
        ),
        (
            "zookeeper.session.timeout.ms",
            &[],
            Some(broker.zookeeper_session_timeout_ms.to_string()),
            ConfigType::Int,
        ),
        (
            "broker.rack",
            &[],
            broker.broker_rack.clone(),
            ConfigType::String,
        ),
        (
            "offsets.topic.num.partitions",
            &[],
            Some(broker.offsets_topic_num_partitions.to_string()),
            ConfigType::Int,
        ),
        (
            "offsets.topic.replication.factor",
            &[],
            Some(broker.offsets_topic_replication_factor.to_string()),
            ConfigType::Int,
        ),
        (
            "auto.leader.rebalance.enable",
            &[],
            Some(broker.auto_leader_rebalance_enable.to_string()),
            ConfigType::Boolean,
        ),
        (
            "leader.imbalance.check.interval.seconds",
            &[],
            Some(broker.leader_imbalance_check_interval_seconds.to_string()),
            ConfigType::Long,
        ),
        (
            "replica.fetch.max.bytes",
            &[],
            Some(broker.replica_fetch_max_bytes.to_string()),
            ConfigType::Int,
        ),
        (
            "replica.fetch.wait.max.ms",
            &[],
            Some(broker.replica_fetch_wait_max_ms.to_string()),
            ConfigType::Int,
        ),
        (
            "metrics.listener",
            &[],
            broker.metrics_listener.clone(),
            ConfigType::String,
        ),
    ];
    for def in TOPIC_CONFIGS {
        entries.push((
            def.broker_key,
            def.broker_synonyms,
            broker.log.topic_config_value(def.name),
            def.config_type,
        ));
    }
    entries
        .into_iter()
        .map(|(name, synonyms, value, config_type)| {
            let explicit = std::iter::once(&name)
                .chain(synonyms)
                .any(|key| broker.explicit_keys.contains(*key));
            ConfigEntry {
                name: name.to_string(),
                value,
                source: if explicit {
                    ConfigSource::StaticBroker
                } else {
                    ConfigSource::DefaultConfig
                },
                read_only: true,
                sensitive: false,
                config_type,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> BrokerConfig {
        let (config, warnings) = BrokerConfig::from_properties(text, &[]).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        config
    }

    fn parse_err(text: &str) -> ConfigError {
        BrokerConfig::from_properties(text, &[]).unwrap_err()
    }

    fn topic(pairs: &[(&str, &str)]) -> TopicConfigs {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn properties_syntax() {
        let text = "# comment\n! also a comment\n\n  a=1\nb : 2\nc 3\nd\te=4\n\
                    f = spaced value  \ng=x\\\n    y\\\n  z\nh=back\\\\\ni=\\u0041\\t\\=\n\
                    j=a=b:c\nk:\nl\n";
        let pairs = parse_properties(text).unwrap();
        let expected = [
            ("a", "1"),
            ("b", "2"),
            ("c", "3"),
            ("d", "e=4"),
            ("f", "spaced value"),
            ("g", "xyz"),
            ("h", "back\\"),
            ("i", "A\t="),
            ("j", "a=b:c"),
            ("k", ""),
            ("l", ""),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(pairs, expected);
        assert!(parse_properties("a=\\u00zz").is_err());
        // A continuation on the last line ends the value.
        assert_eq!(
            parse_properties("a=b\\").unwrap(),
            vec![("a".to_string(), "b".to_string())]
        );
    }

    #[test]
    fn empty_properties_are_the_defaults() {
        let config = parse("");
        assert_eq!(config, BrokerConfig::default());
        assert!(config.explicit_keys.is_empty());
    }

    #[test]
    fn every_broker_key() {
        let text = "\
broker.id=7
listeners=PLAINTEXT://:9093
advertised.listeners=PLAINTEXT://broker7.example:19093
log.dirs=/a, /b
num.partitions=6
default.replication.factor=1
min.insync.replicas=2
auto.create.topics.enable=false
delete.topic.enable=FALSE
log.segment.bytes=1048576
log.roll.ms=60000
log.retention.ms=120000
log.retention.bytes=5000000
log.retention.check.interval.ms=1000
log.index.interval.bytes=8192
log.index.size.max.bytes=65536
log.flush.interval.messages=10
log.flush.interval.ms=50
message.max.bytes=2000000
log.message.timestamp.type=LogAppendTime
socket.request.max.bytes=1000000
replica.lag.time.max.ms=10000
zookeeper.connect=zk1:2181,zk2:2181/sluice
zookeeper.session.timeout.ms=6000
offsets.topic.replication.factor=2
auto.leader.rebalance.enable=false
leader.imbalance.check.interval.seconds=5
replica.fetch.wait.max.ms=100
broker.rack=r1
offsets.topic.num.partitions=10
unclean.leader.election.enable=true
metrics.listener=0.0.0.0:9644
log.preallocate=false
compression.type=zstd
log.cleanup.policy=delete
log.cache.max.bytes=67108864
";
        let config = parse(text);
        assert_eq!(config.broker_id, 7);
        assert_eq!(
            config.listeners,
            vec![Listener {
                name: "PLAINTEXT".into(),
                host: "0.0.0.0".into(),
                port: 9093
            }]
        );
        assert_eq!(
            config.advertised_listeners[0].to_string(),
            "PLAINTEXT://broker7.example:19093"
        );
        assert_eq!(
            config.log_dirs,
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
        assert_eq!(config.num_partitions, 6);
        assert_eq!(config.default_replication_factor, 1);
        assert_eq!(config.min_insync_replicas, 2);
        assert!(!config.auto_create_topics_enable);
        assert!(!config.delete_topic_enable);
        assert_eq!(config.socket_request_max_bytes, 1_000_000);
        assert_eq!(config.log_retention_check_interval_ms, 1000);
        assert_eq!(config.replica_lag_time_max_ms, 10_000);
        assert_eq!(
            config.zookeeper_connect.as_deref(),
            Some("zk1:2181,zk2:2181/sluice")
        );
        assert_eq!(config.offsets_topic_num_partitions, 10);
        assert_eq!(config.zookeeper_session_timeout_ms, 6000);
        assert_eq!(config.offsets_topic_replication_factor, 2);
        assert!(!config.auto_leader_rebalance_enable);
        assert_eq!(config.leader_imbalance_check_interval_seconds, 5);
        assert_eq!(config.replica_fetch_wait_max_ms, 100);
        assert_eq!(config.broker_rack.as_deref(), Some("r1"));
        assert!(config.unclean_leader_election_enable);
        assert_eq!(config.metrics_listener.as_deref(), Some("0.0.0.0:9644"));
        let log = LogConfig {
            segment_bytes: 1_048_576,
            segment_ms: 60_000,
            retention_ms: Some(120_000),
            retention_bytes: Some(5_000_000),
            index_interval_bytes: 8192,
            segment_index_bytes: 65_536,
            flush_messages: Some(10),
            flush_ms: Some(50),
            max_message_bytes: 2_000_000,
            timestamp_type: TimestampType::LogAppendTime,
            preallocate_bytes: 0,
            min_insync_replicas: 2,
            unclean_leader_election_enable: true,
            compression_type: CompressionType::Zstd,
            cache_max_bytes: 64 * 1024 * 1024,
        };
        assert_eq!(config.log, log);
        let keys: BTreeSet<String> = parse_properties(text)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(config.explicit_keys, keys);
    }

    #[test]
    fn precedence_rules() {
        let hours = parse("log.retention.hours=2\nlog.roll.hours=3");
        assert_eq!(hours.log.retention_ms, Some(2 * 3600 * 1000));
        assert_eq!(hours.log.segment_ms, 3 * 3600 * 1000);
        let minutes = parse("log.retention.hours=2\nlog.retention.minutes=5");
        assert_eq!(minutes.log.retention_ms, Some(5 * 60 * 1000));
        let ms = parse(
            "log.retention.hours=2\nlog.retention.minutes=5\nlog.retention.ms=7\n\
             log.roll.hours=3\nlog.roll.ms=9",
        );
        assert_eq!(ms.log.retention_ms, Some(7));
        assert_eq!(ms.log.segment_ms, 9);
        assert_eq!(parse("log.retention.ms=-1").log.retention_ms, None);
        assert_eq!(parse("log.retention.hours=-1").log.retention_ms, None);
        assert_eq!(parse("log.retention.bytes=-1").log.retention_bytes, None);
        assert_eq!(
            parse("log.flush.interval.messages=9223372036854775807")
                .log
                .flush_messages,
            None
        );

        let dirs = parse("log.dir=/single\nlog.dirs=/multi");
        assert_eq!(dirs.log_dirs, vec![PathBuf::from("/multi")]);
        assert_eq!(
            parse("log.dir=/single").log_dirs,
            vec![PathBuf::from("/single")]
        );

        // advertised.listeners defaults to listeners.
        let listeners = parse("listeners=PLAINTEXT://127.0.0.1:0");
        assert_eq!(listeners.advertised_listeners, listeners.listeners);
        assert_eq!(listeners.listeners[0].port, 0);

        // Overrides win over the file.
        let overrides = [("num.partitions".to_string(), "9".to_string())];
        let (config, _) = BrokerConfig::from_properties("num.partitions=3", &overrides).unwrap();
        assert_eq!(config.num_partitions, 9);
        assert!(config.explicit_keys.contains("num.partitions"));
    }

    #[test]
    fn bad_values_name_the_key() {
        let error = parse_err("num.partitions=abc");
        assert_eq!(
            error.to_string(),
            "invalid value \"abc\" for configuration num.partitions: not an integer"
        );
        let cases = [
            ("broker.id=-1", "broker.id"),
            ("num.partitions=0", "num.partitions"),
            ("default.replication.factor=0", "default.replication.factor"),
            ("default.replication.factor=40000", "default.replication.factor"),
            ("min.insync.replicas=0", "min.insync.replicas"),
            ("auto.create.topics.enable=yes", "auto.create.topics.enable"),
            ("log.segment.bytes=13", "log.segment.bytes"),
            ("log.segment.bytes=4294967296", "log.segment.bytes"),
            ("log.roll.ms=0", "log.roll.ms"),
            ("log.roll.hours=0", "log.roll.hours"),
            ("log.retention.ms=-2", "log.retention.ms"),
            ("log.retention.minutes=x", "log.retention.minutes"),
            ("log.retention.hours=-5", "log.retention.hours"),
            ("log.index.size.max.bytes=3", "log.index.size.max.bytes"),
            ("log.flush.interval.messages=0", "log.flush.interval.messages"),
            ("message.max.bytes=0", "message.max.bytes"),
            ("log.message.timestamp.type=Now", "log.message.timestamp.type"),
            ("socket.request.max.bytes=0", "socket.request.max.bytes"),
            ("offsets.topic.num.partitions=0", "offsets.topic.num.partitions"),
            ("metrics.listener=nohost", "metrics.listener"),
            ("metrics.listener=h:99999", "metrics.listener"),
            ("log.preallocate=1", "log.preallocate"),
            ("log.cleanup.policy=compact", "log.cleanup.policy"),
            ("compression.type=brotli", "compression.type"),
            ("log.dirs= , ", "log.dirs"),
            ("listeners=", "listeners"),
            ("listeners=localhost:9092", "listeners"),
            ("listeners=PLAINTEXT://h:70000", "listeners"),
            ("listeners=PLAINTEXT://h", "listeners"),
            ("listeners=PLAINTEXT://a:b:9092", "listeners"),
            ("listeners=SSL://:9093", "listeners"),
            ("listeners=CLIENT://:9093", "listeners"),
            ("listeners=PLAINTEXT://:1,PLAINTEXT://:2", "listeners"),
            ("listeners=PLAINTEXT://a:1,X://b:1\nlistener.security.protocol.map=PLAINTEXT:PLAINTEXT,X:PLAINTEXT", "listeners"),
            ("advertised.listeners=PLAINTEXT://:9092", "advertised.listeners"),
            ("advertised.listeners=OTHER://h:9092\nlistener.security.protocol.map=OTHER:PLAINTEXT", "advertised.listeners"),
            ("listener.security.protocol.map=A:KERBEROS", "listener.security.protocol.map"),
        ];
        for (text, key) in cases {
            let error = parse_err(text);
            assert_eq!(error.key, key, "{text}: {error}");
            assert!(error.to_string().contains(key), "{text}: {error}");
        }
    }

    #[test]
    fn listener_forms() {
        let config = parse(
            "listeners=plaintext://[::1]:9092,INTERNAL://10.0.0.1:9093\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT",
        );
        assert_eq!(config.listeners[0].name, "PLAINTEXT");
        assert_eq!(config.listeners[0].host, "::1");
        assert_eq!(config.listeners[0].to_string(), "PLAINTEXT://[::1]:9092");
        assert_eq!(config.listeners[1].to_string(), "INTERNAL://10.0.0.1:9093");
    }

    #[test]
    fn unknown_keys_warn_and_kafka_keys_are_ignored_silently() {
        let text = "num.network.threads=3\nnum.io.threads=8\nsocket.send.buffer.bytes=1\n\
                    socket.receive.buffer.bytes=1\nnum.recovery.threads.per.data.dir=1\n\
                    transaction.state.log.min.isr=1\n\
                    log.cleaner.enable=false\nno.such.key=1\n";
        let (config, warnings) = BrokerConfig::from_properties(text, &[]).unwrap();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("no.such.key"), "{warnings:?}");
        assert!(config.explicit_keys.is_empty());
    }

    #[test]
    fn load_reads_files_and_overrides() {
        let dir = std::env::temp_dir().join(format!("sluice-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("server.properties");
        std::fs::write(&path, "broker.id=3\nnum.partitions=2\n").unwrap();
        let (config, warnings) =
            BrokerConfig::load(Some(&path), &["num.partitions=5".to_string()]).unwrap();
        assert!(warnings.is_empty());
        assert_eq!((config.broker_id, config.num_partitions), (3, 5));

        let error = BrokerConfig::load(Some(&path), &["num.partitions".to_string()]).unwrap_err();
        assert!(error.to_string().contains("num.partitions"), "{error}");

        let missing = dir.join("missing.properties");
        let error = BrokerConfig::load(Some(&missing), &[]).unwrap_err();
        assert_eq!(error.kind, ConfigErrorKind::File);
        assert!(error.to_string().contains("missing.properties"), "{error}");

        let (config, _) = BrokerConfig::load(None, &[]).unwrap();
        assert_eq!(config, BrokerConfig::default());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn topic_config_validation() {
        let good = topic(&[
            ("cleanup.policy", "delete"),
            ("compression.type", "lz4"),
            ("flush.messages", "1"),
            ("flush.ms", "0"),
            ("index.interval.bytes", "0"),
            ("max.message.bytes", "100"),
            ("message.timestamp.type", "CreateTime"),
            ("min.insync.replicas", "1"),
            ("preallocate", "true"),
            ("retention.bytes", "-1"),
            ("retention.ms", "-1"),
            ("segment.bytes", "14"),
            ("segment.index.bytes", "4"),
            ("segment.ms", "1"),
            ("unclean.leader.election.enable", "false"),
        ]);
        assert_eq!(
            good.len(),
            TOPIC_CONFIGS.len(),
            "every topic config is covered"
        );
        validate_topic_configs(&good).unwrap();

        let bad = [
            ("no.such.config", "1"),
            ("cleanup.policy", "compact"),
            ("cleanup.policy", "delete,compact"),
            ("cleanup.policy", ""),
            ("compression.type", "brotli"),
            ("flush.messages", "0"),
            ("flush.ms", "-1"),
            ("index.interval.bytes", "-1"),
            ("max.message.bytes", "0"),
            ("message.timestamp.type", "create"),
            ("min.insync.replicas", "0"),
            ("preallocate", "maybe"),
            ("retention.bytes", "-2"),
            ("retention.ms", "soon"),
            ("segment.bytes", "13"),
            ("segment.index.bytes", "3"),
            ("segment.ms", "0"),
            ("unclean.leader.election.enable", "1"),
        ];
        for (name, value) in bad {
            let error = validate_topic_configs(&topic(&[(name, value)])).unwrap_err();
            assert_eq!(error.key, name, "{error}");
        }
        let error = validate_topic_configs(&topic(&[("cleanup.policy", "compact")])).unwrap_err();
        assert!(error.to_string().contains("not supported"), "{error}");
    }

    #[test]
    fn for_topic_overlays_the_defaults() {
        let (broker, _) =
            BrokerConfig::from_properties("log.retention.hours=1\nlog.segment.bytes=1000", &[])
                .unwrap();
        let log = LogConfig::for_topic(
            &broker.log,
            &topic(&[
                ("segment.bytes", "5000"),
                ("retention.bytes", "100"),
                ("message.timestamp.type", "LogAppendTime"),
                ("preallocate", "false"),
            ]),
        )
        .unwrap();
        let expected = LogConfig {
            segment_bytes: 5000,
            retention_ms: Some(3_600_000),
            retention_bytes: Some(100),
            timestamp_type: TimestampType::LogAppendTime,
            preallocate_bytes: 0,
            ..LogConfig::default()
        };
        assert_eq!(log, expected);
        assert_eq!(
            LogConfig::for_topic(&broker.log, &TopicConfigs::new()).unwrap(),
            broker.log
        );
    }

    /// The table's defaults are what an unconfigured broker reports, so the two never drift.
    #[test]
    fn table_defaults_match_log_config_defaults() {
        let defaults = LogConfig::default();
        for def in TOPIC_CONFIGS {
            assert_eq!(
                defaults.topic_config_value(def.name).as_deref(),
                Some(def.default),
                "{}",
                def.name
            );
            // Every default is itself a valid value.
            validate_topic_configs(&topic(&[(def.name, def.default)])).unwrap();
        }
    }

    #[test]
    fn describe_topic_entries_and_sources() {
        let (broker, _) =
            BrokerConfig::from_properties("log.retention.hours=1\nlog.roll.ms=5000", &[]).unwrap();
        let entries = topic_config_entries(&broker, &topic(&[("segment.ms", "42")]));
        assert_eq!(entries.len(), TOPIC_CONFIGS.len());
        let find = |name: &str| entries.iter().find(|e| e.name == name).unwrap();

        let segment_ms = find("segment.ms");
        assert_eq!(segment_ms.value.as_deref(), Some("42"));
        assert_eq!(segment_ms.source, ConfigSource::DynamicTopic);
        assert_eq!(segment_ms.source.code(), 1);

        let retention = find("retention.ms");
        assert_eq!(retention.value.as_deref(), Some("3600000"));
        assert_eq!(retention.source, ConfigSource::StaticBroker);
        assert_eq!(retention.source.code(), 4);
        assert_eq!(retention.config_type.code(), 5);

        let segment_bytes = find("segment.bytes");
        assert_eq!(segment_bytes.value.as_deref(), Some("1073741824"));
        assert_eq!(segment_bytes.source, ConfigSource::DefaultConfig);
        assert_eq!(segment_bytes.source.code(), 5);
        assert!(entries.iter().all(|e| !e.read_only && !e.sensitive));
    }

    #[test]
    fn describe_broker_entries() {
        let (broker, _) =
            BrokerConfig::from_properties("num.partitions=4\nlog.retention.minutes=2", &[])
                .unwrap();
        let entries = broker_config_entries(&broker);
        let find = |name: &str| entries.iter().find(|e| e.name == name).unwrap();
        assert!(entries.iter().all(|e| e.read_only));
        assert_eq!(find("num.partitions").value.as_deref(), Some("4"));
        assert_eq!(find("num.partitions").source, ConfigSource::StaticBroker);
        assert_eq!(find("log.retention.ms").value.as_deref(), Some("120000"));
        assert_eq!(find("log.retention.ms").source, ConfigSource::StaticBroker);
        assert_eq!(find("broker.id").source, ConfigSource::DefaultConfig);
        assert_eq!(find("zookeeper.connect").value, None);
        assert_eq!(
            find("listeners").value.as_deref(),
            Some("PLAINTEXT://127.0.0.1:9092")
        );
    }
}
