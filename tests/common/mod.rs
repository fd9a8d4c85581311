//! Shared helpers for the root package's integration tests: a launcher for the real
//! `sluice` binary and a minimal blocking Kafka client built on the `kafka-protocol` crate.
//!
//! Everything here runs on the test's own thread over `std::net::TcpStream`; nothing
//! touches glommio. Each integration test file includes this module with `mod common;`,
//! so not every helper is used by every file. `cluster` adds a real ZooKeeper, a
//! cluster of brokers and a failover-aware client for `tests/cluster.rs`.
#![allow(dead_code)]

pub mod cluster;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    create_topics_request::CreatableTopic, create_topics_request::CreatableTopicConfig,
    fetch_request::FetchPartition, fetch_request::FetchTopic, fetch_response::PartitionData,
    list_offsets_request::ListOffsetsPartition, list_offsets_request::ListOffsetsTopic,
    list_offsets_response::ListOffsetsPartitionResponse, produce_request::PartitionProduceData,
    produce_request::TopicProduceData, produce_response::PartitionProduceResponse, ApiKey,
    ApiVersionsRequest, ApiVersionsResponse, BrokerId, CreateTopicsRequest, CreateTopicsResponse,
    FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest,
    MetadataResponse, ProduceRequest, ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// How long a broker may take to print its ready line before the test fails.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one request may take to be answered before the test fails.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a broker may take to exit after SIGTERM before the test fails.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// Kafka error codes the tests check (Kafka's `Errors` enum numbering).
pub mod error_code {
    pub const NONE: i16 = 0;
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    pub const CORRUPT_MESSAGE: i16 = 2;
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    pub const INVALID_TOPIC_EXCEPTION: i16 = 17;
    pub const TOPIC_ALREADY_EXISTS: i16 = 36;
    pub const UNSUPPORTED_VERSION: i16 = 35;
    pub const INVALID_PARTITIONS: i16 = 37;
    pub const INVALID_REPLICATION_FACTOR: i16 = 38;
}

/// ListOffsets timestamps with special meaning.
pub const LATEST_TIMESTAMP: i64 = -1;
pub const EARLIEST_TIMESTAMP: i64 = -2;

/// A running `sluice serve` child process on an ephemeral port. Killed (SIGKILL) on drop
/// if the test did not stop it.
pub struct Broker {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
}

impl Broker {
    /// Starts the broker on `127.0.0.1:0` with `log.dirs = data_dir` plus the given
    /// `--override key=value` pairs, and waits for its ready line.
    pub fn start(data_dir: &Path, overrides: &[(&str, &str)]) -> Result<Broker> {
        // Two shards even on a 2-core machine, so cross-shard routing is exercised.
        Broker::start_with(data_dir, overrides, 0, 2, "sluice")
    }

    /// As [`Broker::start`], listening on `127.0.0.1:port` (0: a free port the broker
    /// picks and reports in its ready line) with `cores` shards. Every line the broker
    /// writes is echoed with `label` in front, so the output of several brokers can be
    /// told apart.
    pub fn start_with(
        data_dir: &Path,
        overrides: &[(&str, &str)],
        port: u16,
        cores: usize,
        label: &str,
    ) -> Result<Broker> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sluice"));
        command
            .arg("serve")
            .arg("--override")
            .arg(format!("listeners=PLAINTEXT://127.0.0.1:{port}"))
            .arg("--override")
            .arg(format!("log.dirs={}", data_dir.display()));
        for (key, value) in overrides {
            command.arg("--override").arg(format!("{key}={value}"));
        }
        command.arg("--cores").arg(cores.to_string());
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().context("spawning sluice")?;
        let stdout = child.stdout.take().context("child stdout")?;
        let stderr = child.stderr.take().context("child stderr")?;
        let stderr_label = label.to_owned();
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[{stderr_label}] {line}");
            }
        });
        let label = label.to_owned();

        let (ready_tx, ready_rx) = mpsc::channel::<String>();
        // Reads the ready line, then keeps draining stdout so the broker never blocks on
        // a full pipe.
        thread::spawn(move || {
            let mut ready_tx = Some(ready_tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains("ready on ") {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(line.clone());
                    }
                }
                println!("[{label} stdout] {line}");
            }
        });

        let mut broker = Broker {
            child: Some(child),
            addr: "127.0.0.1:0".parse().expect("static address"),
            data_dir: data_dir.to_path_buf(),
        };
        let line = match ready_rx.recv_timeout(READY_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let status = broker
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten());
                bail!("sluice did not print its ready line within {READY_TIMEOUT:?} (exit status: {status:?})");
            }
        };
        broker.addr = parse_ready_line(&line)?;
        Ok(broker)
    }

    pub fn pid(&self) -> i32 {
        let child = self.child.as_ref().expect("broker is running");
        i32::try_from(child.id()).expect("pid fits in i32")
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> Result<ExitStatus> {
        self.signal_and_wait(libc::SIGTERM)
    }

    /// Sends SIGKILL and waits: a crash, no clean shutdown.
    pub fn kill9(&mut self) -> Result<ExitStatus> {
        self.signal_and_wait(libc::SIGKILL)
    }

    fn signal_and_wait(&mut self, signal: libc::c_int) -> Result<ExitStatus> {
        let mut child = self.child.take().context("broker already stopped")?;
        let pid = i32::try_from(child.id()).context("pid")?;
        // SAFETY: plain kill(2) on our own child, which has not been reaped yet.
        let rc = unsafe { libc::kill(pid, signal) };
        ensure!(
            rc == 0,
            "kill({pid}, {signal}) failed: {}",
            io::Error::last_os_error()
        );
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("sluice did not exit within {SHUTDOWN_TIMEOUT:?} of signal {signal}");
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn client(&self) -> Result<Client> {
        Client::connect(self.addr)
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Parses `sluice: ready on 127.0.0.1:PORT (N shards)`.
pub fn parse_ready_line(line: &str) -> Result<SocketAddr> {
    let rest = line
        .split("ready on ")
        .nth(1)
        .ok_or_else(|| anyhow!("not a ready line: {line:?}"))?;
    let endpoint = rest.split_whitespace().next().unwrap_or_default();
    endpoint
        .parse()
        .with_context(|| format!("bad address in ready line {line:?}"))
}

/// A blocking Kafka connection. Versions are negotiated with ApiVersions on connect,
/// capped to what this client knows how to fill in (see `CLIENT_MAX_VERSIONS`).
pub struct Client {
    stream: TcpStream,
    next_correlation_id: i32,
    /// (api key, broker min, broker max) from the broker's ApiVersions answer.
    broker_versions: Vec<(i16, i16, i16)>,
}

/// Highest version of each API this client builds requests for. Produce v13 and
/// Fetch v13+ address topics by id only, so the client stops below them.
const CLIENT_MAX_VERSIONS: &[(ApiKey, i16)] = &[
    (ApiKey::Produce, 12),
    (ApiKey::Fetch, 12),
    (ApiKey::ListOffsets, 8),
    (ApiKey::Metadata, 12),
    (ApiKey::ApiVersions, 3),
    (ApiKey::CreateTopics, 7),
    (ApiKey::InitProducerId, 4),
];

impl Client {
    pub fn connect(addr: SocketAddr) -> Result<Client> {
        let mut client = Client::connect_raw(addr)?;
        let versions: ApiVersionsResponse = client.send(
            3,
            &ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("sluice-tests"))
                .with_client_software_version(StrBytes::from_static_str("0.1")),
        )?;
        ensure!(
            versions.error_code == error_code::NONE,
            "ApiVersions error {}",
            versions.error_code
        );
        client.broker_versions = versions
            .api_keys
            .iter()
            .map(|k| (k.api_key, k.min_version, k.max_version))
            .collect();
        Ok(client)
    }

    /// Connects without the ApiVersions handshake (for bad-input tests).
    pub fn connect_raw(addr: SocketAddr) -> Result<Client> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            next_correlation_id: 1,
            broker_versions: Vec::new(),
        })
    }

    /// The version to use for `key`: the highest both sides support.
    pub fn version(&self, key: ApiKey) -> Result<i16> {
        let (_, client_max) = CLIENT_MAX_VERSIONS
            .iter()
            .find(|(k, _)| *k == key)
            .with_context(|| format!("client has no version cap for {key:?}"))?;
        let (_, broker_min, broker_max) = self
            .broker_versions
            .iter()
            .find(|(k, _, _)| *k == key as i16)
            .with_context(|| format!("broker does not advertise {key:?}"))?;
        let version = (*client_max).min(*broker_max);
        let client_min = key.valid_versions().min;
        ensure!(
            version >= *broker_min && version >= client_min,
            "no common version for {key:?}: broker {broker_min}..={broker_max}, client {client_min}..={client_max}"
        );
        Ok(version)
    }

    pub fn advertised(&self, key: i16) -> Option<(i16, i16)> {
        self.broker_versions
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, min, max)| (*min, *max))
    }

    /// Sends `request` at `version` and decodes the response.
    pub fn send<R: Request>(&mut self, version: i16, request: &R) -> Result<R::Response> {
        let api_key =
            ApiKey::try_from(R::KEY).map_err(|_| anyhow!("unknown api key {}", R::KEY))?;
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("sluice-tests")));
        let mut body = BytesMut::new();
        header.encode(&mut body, api_key.request_header_version(version))?;
        request.encode(&mut body, version)?;
        self.write_frame(&body)?;

        let mut frame = Bytes::from(self.read_frame()?);
        let response_header =
            ResponseHeader::decode(&mut frame, api_key.response_header_version(version))?;
        ensure!(
            response_header.correlation_id == correlation_id,
            "correlation id {} != {}",
            response_header.correlation_id,
            correlation_id
        );
        let response = R::Response::decode(&mut frame, version)
            .with_context(|| format!("decoding {api_key:?} v{version} response"))?;
        ensure!(
            !frame.has_remaining(),
            "{} trailing bytes after {api_key:?} v{version} response",
            frame.remaining()
        );
        Ok(response)
    }

    /// Writes a length-prefixed frame.
    pub fn write_frame(&mut self, body: &[u8]) -> Result<()> {
        let mut frame = Vec::with_capacity(4 + body.len());
        frame.put_i32(i32::try_from(body.len())?);
        frame.extend_from_slice(body);
        self.stream.write_all(&frame)?;
        Ok(())
    }

    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads one length-prefixed frame (without the prefix).
    pub fn read_frame(&mut self) -> Result<Vec<u8>> {
        let mut len = [0u8; 4];
        self.stream
            .read_exact(&mut len)
            .context("reading frame length")?;
        let len = i32::from_be_bytes(len);
        ensure!(
            (0..=256 * 1024 * 1024).contains(&len),
            "bad response length {len}"
        );
        let mut body = vec![0u8; len as usize];
        self.stream
            .read_exact(&mut body)
            .context("reading frame body")?;
        Ok(body)
    }

    /// Waits until the broker closes this connection, failing if it instead sends data
    /// or keeps it open for longer than `REQUEST_TIMEOUT`.
    pub fn expect_closed(&mut self) -> Result<()> {
        let mut buf = [0u8; 1024];
        match self.stream.read(&mut buf) {
            Ok(0) => Ok(()),
            Ok(n) => bail!("expected the connection to be closed, got {n} bytes"),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Ok(()),
            Err(e) => Err(e).context("expected the connection to be closed"),
        }
    }

    /// Reads what the broker sends next: `Ok(None)` if it closed the connection.
    pub fn read_frame_or_close(&mut self) -> Result<Option<Vec<u8>>> {
        let mut len = [0u8; 4];
        let mut filled = 0;
        while filled < 4 {
            match self.stream.read(&mut len[filled..]) {
                Ok(0) if filled == 0 => return Ok(None),
                Ok(0) => bail!("connection closed inside a frame length"),
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Ok(None),
                Err(e) => return Err(e).context("reading frame length"),
            }
        }
        let len = i32::from_be_bytes(len);
        ensure!(
            (0..=256 * 1024 * 1024).contains(&len),
            "bad response length {len}"
        );
        let mut body = vec![0u8; len as usize];
        self.stream
            .read_exact(&mut body)
            .context("reading frame body")?;
        Ok(Some(body))
    }

    // ---- typed helpers -------------------------------------------------------------

    pub fn create_topic(&mut self, name: &str, partitions: i32) -> Result<()> {
        let response = self.create_topics(&[(name, partitions)], false)?;
        let result = response
            .topics
            .first()
            .context("no topic in CreateTopics response")?;
        ensure!(
            result.error_code == error_code::NONE,
            "creating {name}: error {} {:?}",
            result.error_code,
            result.error_message
        );
        Ok(())
    }

    pub fn create_topics(
        &mut self,
        topics: &[(&str, i32)],
        validate_only: bool,
    ) -> Result<CreateTopicsResponse> {
        let version = self.version(ApiKey::CreateTopics)?;
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_validate_only(validate_only)
            .with_topics(
                topics
                    .iter()
                    .map(|(name, partitions)| creatable_topic(name, *partitions, 1, &[]))
                    .collect(),
            );
        self.send(version, &request)
    }

    pub fn metadata(&mut self, topics: Option<&[&str]>) -> Result<MetadataResponse> {
        use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
        let version = self.version(ApiKey::Metadata)?;
        let request = MetadataRequest::default()
            .with_allow_auto_topic_creation(false)
            .with_topics(topics.map(|names| {
                names
                    .iter()
                    .map(|n| MetadataRequestTopic::default().with_name(Some(topic_name(n))))
                    .collect()
            }));
        self.send(version, &request)
    }

    /// Produces one raw batch to one partition; returns (error code, base offset).
    pub fn produce(
        &mut self,
        topic: &str,
        partition: i32,
        batch: Bytes,
        acks: i16,
    ) -> Result<(i16, i64)> {
        let version = self.version(ApiKey::Produce)?;
        let request = produce_request(topic, partition, batch, acks);
        let response: ProduceResponse = self.send(version, &request)?;
        let answer = produce_answer(&response, topic, partition)?;
        Ok((answer.error_code, answer.base_offset))
    }

    /// Produces and requires success; returns the base offset.
    pub fn produce_ok(&mut self, topic: &str, partition: i32, batch: Bytes) -> Result<i64> {
        let (error, base_offset) = self.produce(topic, partition, batch, -1)?;
        ensure!(
            error == error_code::NONE,
            "produce to {topic}-{partition}: error {error}"
        );
        Ok(base_offset)
    }

    /// One Fetch of one partition; returns (error code, high watermark, record bytes).
    pub fn fetch(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_wait_ms: i32,
    ) -> Result<(i16, i64, Bytes)> {
        let version = self.version(ApiKey::Fetch)?;
        let request = fetch_request(topic, partition, offset, max_wait_ms);
        let response: FetchResponse = self.send(version, &request)?;
        let data = fetch_answer(&response, partition)?;
        Ok((
            data.error_code,
            data.high_watermark,
            data.records.clone().unwrap_or_default(),
        ))
    }

    /// Fetches every record of a partition from `from_offset` up to the high watermark.
    pub fn fetch_all(
        &mut self,
        topic: &str,
        partition: i32,
        from_offset: i64,
    ) -> Result<Vec<Record>> {
        let mut records = Vec::new();
        let mut offset = from_offset;
        let deadline = Instant::now() + REQUEST_TIMEOUT;
        loop {
            let (error, high_watermark, bytes) = self.fetch(topic, partition, offset, 0)?;
            ensure!(
                error == error_code::NONE,
                "fetch {topic}-{partition}@{offset}: error {error}"
            );
            if offset >= high_watermark {
                return Ok(records);
            }
            let batch = decode_records(bytes)?;
            ensure!(
                !batch.is_empty() || Instant::now() < deadline,
                "no progress fetching {topic}-{partition} at {offset} (high watermark {high_watermark})"
            );
            for record in batch {
                if record.offset >= offset {
                    offset = record.offset + 1;
                    records.push(record);
                }
            }
        }
    }

    /// ListOffsets for one partition at `timestamp` (or LATEST/EARLIEST); returns
    /// (error code, offset).
    pub fn list_offset(
        &mut self,
        topic: &str,
        partition: i32,
        timestamp: i64,
    ) -> Result<(i16, i64)> {
        let version = self.version(ApiKey::ListOffsets)?;
        let request = list_offsets_request(topic, partition, timestamp);
        let response: ListOffsetsResponse = self.send(version, &request)?;
        let answer = list_offsets_answer(&response, partition)?;
        Ok((answer.error_code, answer.offset))
    }

    pub fn latest_offset(&mut self, topic: &str, partition: i32) -> Result<i64> {
        let (error, offset) = self.list_offset(topic, partition, LATEST_TIMESTAMP)?;
        ensure!(
            error == error_code::NONE,
            "ListOffsets {topic}-{partition}: error {error}"
        );
        Ok(offset)
    }
}

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

pub fn produce_request(topic: &str, partition: i32, batch: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch))])])
}

/// A topic of a CreateTopics request.
pub fn creatable_topic(
    name: &str,
    partitions: i32,
    replication_factor: i16,
    configs: &[(&str, &str)],
) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(topic_name(name))
        .with_num_partitions(partitions)
        .with_replication_factor(replication_factor)
        .with_configs(
            configs
                .iter()
                .map(|(key, value)| {
                    CreatableTopicConfig::default()
                        .with_name(StrBytes::from_string((*key).to_owned()))
                        .with_value(Some(StrBytes::from_string((*value).to_owned())))
                })
                .collect(),
        )
}

/// A consumer's Fetch of one partition from `offset`, read uncommitted, without a
/// fetch session.
pub fn fetch_request(topic: &str, partition: i32, offset: i64, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(64 * 1024 * 1024)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_current_leader_epoch(-1)
                .with_fetch_offset(offset)
                .with_last_fetched_epoch(-1)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(16 * 1024 * 1024)])])
}

/// A consumer's ListOffsets of one partition at `timestamp` (or LATEST/EARLIEST).
pub fn list_offsets_request(topic: &str, partition: i32, timestamp: i64) -> ListOffsetsRequest {
    ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(0)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_current_leader_epoch(-1)
                .with_timestamp(timestamp)])])
}

/// The answer for `topic`-`partition` in the response to a one-partition Produce.
pub fn produce_answer<'a>(
    response: &'a ProduceResponse,
    topic: &str,
    partition: i32,
) -> Result<&'a PartitionProduceResponse> {
    let topic_response = response
        .responses
        .first()
        .context("no topic in Produce response")?;
    ensure!(
        topic_response.name.as_str() == topic,
        "wrong topic in Produce response"
    );
    let answer = topic_response
        .partition_responses
        .first()
        .context("no partition in Produce response")?;
    ensure!(
        answer.index == partition,
        "Produce answered partition {}",
        answer.index
    );
    Ok(answer)
}

/// The answer for `partition` in the response to a one-partition Fetch; an error
/// for the whole request fails.
pub fn fetch_answer(response: &FetchResponse, partition: i32) -> Result<&PartitionData> {
    ensure!(
        response.error_code == error_code::NONE,
        "Fetch error {}",
        response.error_code
    );
    let data = response
        .responses
        .first()
        .and_then(|t| t.partitions.first())
        .context("no partition in Fetch response")?;
    ensure!(
        data.partition_index == partition,
        "Fetch answered partition {}",
        data.partition_index
    );
    Ok(data)
}

/// The answer for `partition` in the response to a one-partition ListOffsets.
pub fn list_offsets_answer(
    response: &ListOffsetsResponse,
    partition: i32,
) -> Result<&ListOffsetsPartitionResponse> {
    let answer = response
        .topics
        .first()
        .and_then(|t| t.partitions.first())
        .context("no partition in ListOffsets response")?;
    ensure!(
        answer.partition_index == partition,
        "ListOffsets answered partition {}",
        answer.partition_index
    );
    Ok(answer)
}

/// A record with the given key and value, created at `timestamp_ms`.
pub fn record(key: Option<&[u8]>, value: &[u8], timestamp_ms: i64) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: timestamp_ms,
        key: key.map(Bytes::copy_from_slice),
        value: Some(Bytes::copy_from_slice(value)),
        headers: Default::default(),
    }
}

/// Encodes `records` as one v2 batch (offset deltas 0..n).
pub fn encode_batch(records: &[Record], compression: Compression) -> Result<Bytes> {
    let mut records = records.to_vec();
    for (i, r) in records.iter_mut().enumerate() {
        r.offset = i as i64;
    }
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )?;
    Ok(buf.freeze())
}

/// Decodes every complete batch in `bytes`; a partial batch at the end (which Fetch
/// may return) is ignored.
pub fn decode_records(mut bytes: Bytes) -> Result<Vec<Record>> {
    let mut records = Vec::new();
    // A batch starts with base offset (8 bytes) and batch length (4 bytes).
    while bytes.len() >= 12 {
        let batch_len = i32::from_be_bytes(bytes[8..12].try_into().expect("4 bytes"));
        ensure!(batch_len >= 0, "negative batch length {batch_len}");
        let total = 12 + batch_len as usize;
        if bytes.len() < total {
            break;
        }
        let mut batch = bytes.split_to(total);
        let set = RecordBatchDecoder::decode(&mut batch)?;
        records.extend(set.records);
    }
    Ok(records)
}

/// Offset of the CRC field in a v2 batch header; the CRC covers everything after it.
pub const BATCH_CRC_OFFSET: usize = 17;
