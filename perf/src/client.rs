//! A minimal blocking Kafka client for the control requests the load generator needs
//! (ApiVersions, Metadata, CreateTopics, ListOffsets), and the frame helpers the
//! producer and consumer connections share.
//!
//! Runs on whichever thread calls it; one `Client` is one TCP connection.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    create_topics_request::CreatableTopic, list_offsets_request::ListOffsetsPartition,
    list_offsets_request::ListOffsetsTopic, metadata_request::MetadataRequestTopic, ApiKey,
    ApiVersionsRequest, ApiVersionsResponse, BrokerId, CreateTopicsRequest, CreateTopicsResponse,
    ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse, RequestHeader,
    ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

/// The client id sent in every request header.
pub const CLIENT_ID: &str = "sluice-perf";
/// Largest response frame accepted; a bigger length prefix is a protocol error.
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;
/// How long a control request may wait for its answer.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(30);

/// Highest version of each API this tool speaks; the broker's maximum is used if lower.
/// Produce v9 and Fetch v12 are the last versions that name topics (v13+ use ids).
const CLIENT_MAX_VERSIONS: &[(ApiKey, i16)] = &[
    (ApiKey::Produce, 9),
    (ApiKey::Fetch, 12),
    (ApiKey::ListOffsets, 7),
    (ApiKey::Metadata, 12),
    (ApiKey::CreateTopics, 7),
];
/// Lowest version usable: record batches v2 need Produce v3 and Fetch v4.
const CLIENT_MIN_VERSIONS: &[(ApiKey, i16)] = &[
    (ApiKey::Produce, 3),
    (ApiKey::Fetch, 4),
    (ApiKey::ListOffsets, 1),
    (ApiKey::Metadata, 1),
    (ApiKey::CreateTopics, 2),
];

/// API versions agreed with a broker.
#[derive(Debug, Clone, Copy)]
pub struct Versions {
    pub produce: i16,
    pub fetch: i16,
    pub list_offsets: i16,
    pub metadata: i16,
    pub create_topics: i16,
}

/// Where each partition of a topic is led.
#[derive(Debug, Clone)]
pub struct TopicLayout {
    /// Leader address per partition, indexed by partition id.
    pub leaders: Vec<SocketAddr>,
}

impl TopicLayout {
    /// Partitions grouped by leader address.
    pub fn by_leader(&self) -> BTreeMap<SocketAddr, Vec<i32>> {
        let mut groups: BTreeMap<SocketAddr, Vec<i32>> = BTreeMap::new();
        for (partition, addr) in self.leaders.iter().enumerate() {
            groups.entry(*addr).or_default().push(partition as i32);
        }
        groups
    }
}

pub fn resolve(bootstrap: &str) -> Result<SocketAddr> {
    bootstrap
        .to_socket_addrs()
        .with_context(|| format!("resolving {bootstrap}"))?
        .next()
        .ok_or_else(|| anyhow!("{bootstrap} resolves to no address"))
}

pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

/// Encodes a whole request frame (length prefix, header, body).
pub fn encode_frame<R: Request + Encodable>(
    request: &R,
    version: i16,
    correlation_id: i32,
) -> Result<BytesMut> {
    let key = ApiKey::try_from(R::KEY).map_err(|_| anyhow!("unknown api key {}", R::KEY))?;
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&[0; 4]);
    header.encode(&mut buf, key.request_header_version(version))?;
    request.encode(&mut buf, version)?;
    let size = i32::try_from(buf.len() - 4).context("request too large")?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf)
}

/// Reads one size-prefixed frame (without the prefix). `Ok(None)` on a clean close.
pub fn read_frame(stream: &mut TcpStream) -> Result<Option<Bytes>> {
    let mut len = [0u8; 4];
    let mut filled = 0;
    while filled < 4 {
        match stream.read(&mut len[filled..]) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => bail!("connection closed inside a frame length"),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("reading frame length"),
        }
    }
    let len = i32::from_be_bytes(len);
    let len = usize::try_from(len).map_err(|_| anyhow!("negative frame length {len}"))?;
    ensure!(
        len <= MAX_RESPONSE_BYTES,
        "frame of {len} bytes is too large"
    );
    let mut body = BytesMut::zeroed(len);
    stream.read_exact(&mut body).context("reading frame body")?;
    Ok(Some(body.freeze()))
}

/// Decodes a response frame for `R`, checking the correlation id.
pub fn decode_response<R: Request>(
    mut frame: Bytes,
    version: i16,
    correlation_id: i32,
) -> Result<R::Response> {
    let key = ApiKey::try_from(R::KEY).map_err(|_| anyhow!("unknown api key {}", R::KEY))?;
    let header = ResponseHeader::decode(&mut frame, key.response_header_version(version))?;
    ensure!(
        header.correlation_id == correlation_id,
        "{key:?}: correlation id {} where {correlation_id} was expected",
        header.correlation_id
    );
    R::Response::decode(&mut frame, version)
        .with_context(|| format!("decoding {key:?} v{version} response"))
}

/// One blocking connection for control requests.
pub struct Client {
    stream: TcpStream,
    next_correlation_id: i32,
    pub versions: Versions,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Result<Client> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(CONTROL_TIMEOUT))?;
        let mut client = Client {
            stream,
            next_correlation_id: 1,
            versions: Versions {
                produce: 0,
                fetch: 0,
                list_offsets: 0,
                metadata: 0,
                create_topics: 0,
            },
        };
        let response: ApiVersionsResponse = client.send(
            0,
            &ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
                .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION"))),
        )?;
        ensure!(
            response.error_code == 0,
            "ApiVersions error {}",
            response.error_code
        );
        let pick = |key: ApiKey| -> Result<i16> {
            let max = CLIENT_MAX_VERSIONS
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| *v)
                .expect("every API used has a cap");
            let min = CLIENT_MIN_VERSIONS
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| *v)
                .expect("every API used has a floor");
            let advertised = response
                .api_keys
                .iter()
                .find(|k| k.api_key == key as i16)
                .ok_or_else(|| anyhow!("broker does not support {key:?}"))?;
            let version = max.min(advertised.max_version);
            ensure!(
                version >= min.max(advertised.min_version),
                "no common version of {key:?} (broker {}..={})",
                advertised.min_version,
                advertised.max_version
            );
            Ok(version)
        };
        client.versions = Versions {
            produce: pick(ApiKey::Produce)?,
            fetch: pick(ApiKey::Fetch)?,
            list_offsets: pick(ApiKey::ListOffsets)?,
            metadata: pick(ApiKey::Metadata)?,
            create_topics: pick(ApiKey::CreateTopics)?,
        };
        Ok(client)
    }

    pub fn send<R: Request + Encodable>(
        &mut self,
        version: i16,
        request: &R,
    ) -> Result<R::Response> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let frame = encode_frame(request, version, correlation_id)?;
        self.stream.write_all(&frame)?;
        let response =
            read_frame(&mut self.stream)?.ok_or_else(|| anyhow!("broker closed the connection"))?;
        decode_response::<R>(response, version, correlation_id)
    }

    fn metadata(&mut self, topic: &str) -> Result<MetadataResponse> {
        let request = MetadataRequest::default()
            .with_allow_auto_topic_creation(false)
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic_name(topic)))
            ]));
        self.send(self.versions.metadata, &request)
    }

    /// Where each partition of `topic` is led, or `None` if the topic does not exist.
    pub fn layout(&mut self, topic: &str) -> Result<Option<TopicLayout>> {
        let response = self.metadata(topic)?;
        let brokers: BTreeMap<i32, SocketAddr> = response
            .brokers
            .iter()
            .map(|b| {
                let addr = resolve(&format!("{}:{}", b.host.as_str(), b.port))?;
                Ok((b.node_id.0, addr))
            })
            .collect::<Result<_>>()?;
        let Some(t) = response.topics.first() else {
            return Ok(None);
        };
        if t.error_code == 3 {
            return Ok(None);
        }
        ensure!(
            t.error_code == 0,
            "Metadata for {topic}: error {}",
            t.error_code
        );
        let mut leaders = vec![None; t.partitions.len()];
        for p in &t.partitions {
            let index = usize::try_from(p.partition_index)
                .ok()
                .filter(|i| *i < leaders.len())
                .ok_or_else(|| anyhow!("partition index {} out of range", p.partition_index))?;
            let addr = brokers
                .get(&p.leader_id.0)
                .ok_or_else(|| anyhow!("{topic}-{index} has no live leader"))?;
            leaders[index] = Some(*addr);
        }
        let leaders = leaders
            .into_iter()
            .enumerate()
            .map(|(i, a)| a.ok_or_else(|| anyhow!("{topic}-{i} missing from Metadata")))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(TopicLayout { leaders }))
    }

    /// The topic's layout, creating it with `partitions` partitions if it is missing.
    pub fn ensure_topic(&mut self, topic: &str, partitions: i32) -> Result<TopicLayout> {
        if let Some(layout) = self.layout(topic)? {
            if layout.leaders.len() != partitions as usize {
                eprintln!(
                    "sluice-perf: topic {topic} exists with {} partitions (asked {partitions}); using it as it is",
                    layout.leaders.len()
                );
            }
            return Ok(layout);
        }
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(topic))
                .with_num_partitions(partitions)
                .with_replication_factor(-1)]);
        let response: CreateTopicsResponse = self.send(self.versions.create_topics, &request)?;
        if let Some(t) = response.topics.first() {
            // 36 = TOPIC_ALREADY_EXISTS: someone else created it meanwhile.
            ensure!(
                t.error_code == 0 || t.error_code == 36,
                "creating {topic}: error {} {:?}",
                t.error_code,
                t.error_message
            );
        }
        // Metadata may lag creation on some brokers: ask a few times.
        for _ in 0..50 {
            if let Some(layout) = self.layout(topic)? {
                if !layout.leaders.is_empty() {
                    return Ok(layout);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("topic {topic} was created but has no leaders in Metadata")
    }

    /// Offsets of every partition at `timestamp` (-1 latest, -2 earliest).
    pub fn list_offsets(
        &mut self,
        topic: &str,
        partitions: &[i32],
        timestamp: i64,
    ) -> Result<BTreeMap<i32, i64>> {
        let request = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(
                    partitions
                        .iter()
                        .map(|p| {
                            ListOffsetsPartition::default()
                                .with_partition_index(*p)
                                .with_current_leader_epoch(-1)
                                .with_timestamp(timestamp)
                        })
                        .collect(),
                )]);
        let response: ListOffsetsResponse = self.send(self.versions.list_offsets, &request)?;
        let mut offsets = BTreeMap::new();
        for t in &response.topics {
            for p in &t.partitions {
                ensure!(
                    p.error_code == 0,
                    "ListOffsets {topic}-{}: error {}",
                    p.partition_index,
                    p.error_code
                );
                offsets.insert(p.partition_index, p.offset);
            }
        }
        Ok(offsets)
    }
}
