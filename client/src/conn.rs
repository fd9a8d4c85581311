//! One blocking TCP connection to one broker: framing, correlation ids, and the API
//! versions agreed with that broker through ApiVersions.
//!
//! A `Connection` is used by one thread at a time; requests are sent one after another
//! and each waits for its answer (the heartbeat thread has its own connection).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

use crate::error::{ClientError, KafkaError, Result};

/// Largest response frame accepted; a bigger length prefix is a protocol error.
pub const MAX_RESPONSE_BYTES: usize = 128 * 1024 * 1024;

/// The range of versions this client builds requests for, per API. The upper bounds
/// stop before versions that change a request's shape in ways this client does not fill
/// in (Produce v10+/Fetch v13+ address topics by id; OffsetCommit v9/OffsetFetch v8+
/// belong to the new group protocol and batched groups).
pub const CLIENT_VERSIONS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::FindCoordinator, 1, 4),
    (ApiKey::JoinGroup, 1, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 2, 7),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
];

/// Settings shared by every connection a client opens.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Sent in every request header.
    pub client_id: String,
    /// How long a TCP connect may take before the broker counts as unreachable.
    pub connect_timeout: Duration,
    /// How long a request may wait for its answer (requests that block on the broker,
    /// such as JoinGroup, add their own wait to this).
    pub request_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            client_id: "sluice-client".to_owned(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// The version agreed for each API: `min(broker max, our max)` when that is at least
/// `max(broker min, our min)`; absent when the ranges do not meet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiVersionTable {
    agreed: Vec<(ApiKey, i16)>,
}

impl ApiVersionTable {
    /// `broker` rows are (api key, min version, max version) as ApiVersions lists them.
    pub fn negotiate(ours: &[(ApiKey, i16, i16)], broker: &[(i16, i16, i16)]) -> ApiVersionTable {
        let mut agreed = Vec::with_capacity(ours.len());
        for &(key, our_min, our_max) in ours {
            assert!(our_min <= our_max, "{key:?}: empty client version range");
            let Some(&(_, broker_min, broker_max)) =
                broker.iter().find(|(k, _, _)| *k == key as i16)
            else {
                continue;
            };
            let version = our_max.min(broker_max);
            if version >= our_min.max(broker_min) {
                agreed.push((key, version));
            }
        }
        ApiVersionTable { agreed }
    }

    pub fn get(&self, key: ApiKey) -> Option<i16> {
        self.agreed.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    pub fn require(&self, key: ApiKey) -> Result<i16> {
        self.get(key)
            .ok_or(ClientError::UnsupportedApi { api: key })
    }
}

/// Resolves `host:port` to its first address.
pub fn resolve(host_port: &str) -> Result<SocketAddr> {
    host_port
        .to_socket_addrs()
        .map_err(|_| ClientError::Resolve(host_port.to_owned()))?
        .next()
        .ok_or_else(|| ClientError::Resolve(host_port.to_owned()))
}

/// One TCP connection to one broker, with its negotiated versions.
pub struct Connection {
    stream: TcpStream,
    addr: String,
    client_id: StrBytes,
    request_timeout: Duration,
    next_correlation_id: i32,
    versions: ApiVersionTable,
}

impl Connection {
    /// Connects to `host_port` (within `config.connect_timeout`) and negotiates versions.
    pub fn connect(host_port: &str, config: &ClientConfig) -> Result<Connection> {
        let sock = resolve(host_port)?;
        let stream =
            TcpStream::connect_timeout(&sock, config.connect_timeout).map_err(|error| {
                ClientError::Connect {
                    addr: host_port.to_owned(),
                    error,
                }
            })?;
        let io = |error| ClientError::Io {
            addr: host_port.to_owned(),
            error,
        };
        stream.set_nodelay(true).map_err(io)?;
        stream
            .set_read_timeout(Some(config.request_timeout))
            .map_err(io)?;
        stream
            .set_write_timeout(Some(config.request_timeout))
            .map_err(io)?;
        let mut conn = Connection {
            stream,
            addr: host_port.to_owned(),
            client_id: StrBytes::from_string(config.client_id.clone()),
            request_timeout: config.request_timeout,
            next_correlation_id: 0,
            versions: ApiVersionTable::default(),
        };
        // v0 is understood by every broker version and carries the whole table.
        let response: ApiVersionsResponse =
            conn.send_version(0, &ApiVersionsRequest::default(), None)?;
        KafkaError::check(response.error_code, None)
            .map_err(|e| ClientError::kafka(format!("ApiVersions from {host_port}"), e))?;
        let broker: Vec<(i16, i16, i16)> = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, k.min_version, k.max_version))
            .collect();
        conn.versions = ApiVersionTable::negotiate(CLIENT_VERSIONS, &broker);
        Ok(conn)
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn versions(&self) -> &ApiVersionTable {
        &self.versions
    }

    /// The agreed version of `R`'s API.
    pub fn version_of<R: Request>(&self) -> Result<i16> {
        let key = api_key::<R>()?;
        self.versions.require(key)
    }

    /// Sends `request` at the agreed version and waits for the answer.
    pub fn send<R: Request + Encodable>(&mut self, request: &R) -> Result<(i16, R::Response)> {
        let version = self.version_of::<R>()?;
        Ok((version, self.send_version(version, request, None)?))
    }

    /// As `send`, allowing the broker `extra_wait` beyond the request timeout (for
    /// requests the broker holds, such as JoinGroup or a long-polling Fetch).
    pub fn send_waiting<R: Request + Encodable>(
        &mut self,
        request: &R,
        extra_wait: Duration,
    ) -> Result<(i16, R::Response)> {
        let version = self.version_of::<R>()?;
        Ok((
            version,
            self.send_version(version, request, Some(extra_wait))?,
        ))
    }

    /// Sends a request that the broker does not answer (Produce with acks=0).
    pub fn send_no_response<R: Request + Encodable>(&mut self, request: &R) -> Result<i16> {
        let version = self.version_of::<R>()?;
        let correlation_id = self.next_id();
        let frame = self.encode_frame(request, version, correlation_id)?;
        self.stream.write_all(&frame).map_err(|e| self.io(e))?;
        Ok(version)
    }

    pub fn send_version<R: Request + Encodable>(
        &mut self,
        version: i16,
        request: &R,
        extra_wait: Option<Duration>,
    ) -> Result<R::Response> {
        let correlation_id = self.next_id();
        let frame = self.encode_frame(request, version, correlation_id)?;
        self.stream.write_all(&frame).map_err(|e| self.io(e))?;
        if let Some(extra) = extra_wait {
            self.stream
                .set_read_timeout(Some(self.request_timeout + extra))
                .map_err(|e| self.io(e))?;
        }
        let frame = self.read_frame();
        if extra_wait.is_some() {
            self.stream
                .set_read_timeout(Some(self.request_timeout))
                .map_err(|e| self.io(e))?;
        }
        let mut frame = frame?;
        let key = api_key::<R>()?;
        let header = ResponseHeader::decode(&mut frame, key.response_header_version(version))
            .map_err(|e| self.protocol(format!("{key:?} response header: {e}")))?;
        if header.correlation_id != correlation_id {
            return Err(self.protocol(format!(
                "{key:?}: correlation id {} where {correlation_id} was expected",
                header.correlation_id
            )));
        }
        R::Response::decode(&mut frame, version)
            .map_err(|e| self.protocol(format!("{key:?} v{version} response: {e}")))
    }

    fn next_id(&mut self) -> i32 {
        let id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        id
    }

    fn encode_frame<R: Request + Encodable>(
        &self,
        request: &R,
        version: i16,
        correlation_id: i32,
    ) -> Result<BytesMut> {
        let key = api_key::<R>()?;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut buf = BytesMut::with_capacity(64);
        buf.extend_from_slice(&[0; 4]);
        header
            .encode(&mut buf, key.request_header_version(version))
            .map_err(|e| ClientError::Invalid(format!("encoding {key:?} header: {e}")))?;
        request
            .encode(&mut buf, version)
            .map_err(|e| ClientError::Invalid(format!("encoding {key:?} v{version}: {e}")))?;
        let size = i32::try_from(buf.len() - 4)
            .map_err(|_| ClientError::Invalid(format!("{key:?} request too large")))?;
        buf[..4].copy_from_slice(&size.to_be_bytes());
        Ok(buf)
    }

    fn read_frame(&mut self) -> Result<Bytes> {
        let mut len = [0u8; 4];
        self.read_exact(&mut len)?;
        let len = i32::from_be_bytes(len);
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l <= MAX_RESPONSE_BYTES)
            .ok_or_else(|| self.protocol(format!("response frame length {len}")))?;
        let mut body = BytesMut::zeroed(len);
        self.read_exact(&mut body)?;
        Ok(body.freeze())
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        match self.stream.read_exact(buf) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(ClientError::Closed {
                addr: self.addr.clone(),
            }),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                Err(ClientError::Timeout(format!(
                    "no answer from {} within {:?}",
                    self.addr, self.request_timeout
                )))
            }
            Err(e) => Err(self.io(e)),
        }
    }

    fn io(&self, error: std::io::Error) -> ClientError {
        ClientError::Io {
            addr: self.addr.clone(),
            error,
        }
    }

    fn protocol(&self, detail: String) -> ClientError {
        ClientError::Protocol {
            addr: self.addr.clone(),
            detail,
        }
    }
}

fn api_key<R: Request>() -> Result<ApiKey> {
    ApiKey::try_from(R::KEY)
        .map_err(|_| ClientError::Invalid(format!("unknown api key {}", R::KEY)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_picks_the_lower_maximum() {
        let ours = [
            (ApiKey::Produce, 3, 9),
            (ApiKey::Fetch, 4, 12),
            (ApiKey::Metadata, 1, 12),
        ];
        let broker = [
            (ApiKey::Produce as i16, 0, 11),
            (ApiKey::Fetch as i16, 0, 7),
            (ApiKey::Metadata as i16, 0, 12),
        ];
        let table = ApiVersionTable::negotiate(&ours, &broker);
        assert_eq!(table.get(ApiKey::Produce), Some(9));
        assert_eq!(table.get(ApiKey::Fetch), Some(7));
        assert_eq!(table.get(ApiKey::Metadata), Some(12));
    }

    #[test]
    fn negotiation_drops_apis_without_a_common_version() {
        let ours = [(ApiKey::Produce, 3, 9), (ApiKey::JoinGroup, 1, 9)];
        // The broker only speaks Produce 0-2 and has no JoinGroup at all.
        let broker = [(ApiKey::Produce as i16, 0, 2)];
        let table = ApiVersionTable::negotiate(&ours, &broker);
        assert_eq!(table.get(ApiKey::Produce), None);
        assert_eq!(table.get(ApiKey::JoinGroup), None);
        assert!(matches!(
            table.require(ApiKey::JoinGroup),
            Err(ClientError::UnsupportedApi {
                api: ApiKey::JoinGroup
            })
        ));
        // A broker whose minimum is above ours.
        let table = ApiVersionTable::negotiate(
            &[(ApiKey::Fetch, 4, 12)],
            &[(ApiKey::Fetch as i16, 13, 17)],
        );
        assert_eq!(table.get(ApiKey::Fetch), None);
    }

    #[test]
    fn client_ranges_are_well_formed() {
        for (key, min, max) in CLIENT_VERSIONS {
            assert!(min <= max, "{key:?}");
            assert!(
                *max <= key.valid_versions().max,
                "{key:?} v{max} unknown to kafka-protocol"
            );
        }
    }

    #[test]
    fn unreachable_broker_fails_fast() {
        // Bind then drop a listener: the port is very likely closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("ephemeral port");
        let started = std::time::Instant::now();
        let err = Connection::connect(&format!("127.0.0.1:{port}"), &ClientConfig::default())
            .err()
            .expect("nothing listens there");
        assert!(matches!(err, ClientError::Connect { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
