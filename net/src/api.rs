//! The API table and request dispatch.
//!
//! Each API is one handler module under `handlers/` implementing [`Handler`]: its key,
//! the versions it serves, and a function from request to response that never touches
//! a socket. The single list in [`apis!`] below is both the dispatch table and the
//! ApiVersions answer, so adding an API is one file and one line.
//!
//! Where a handler runs: *control-plane* handlers (CreateTopics, DeleteTopics, ...)
//! forward to the control-plane thread and wait for every shard to apply the result;
//! *data-plane* handlers (Produce, Fetch, ListOffsets) split the request by owning
//! shard and run each part there; the rest answer from the shard's metadata snapshot.

use std::net::SocketAddr;
use std::rc::Rc;

use bytes::{BufMut, Bytes};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::encode::{FrameBuf, ResponseFrame};
use crate::handlers;
use crate::shard::Shard;

/// What a request arrived with, besides its body. Lives for one request on the
/// connection's shard.
pub struct RequestContext {
    pub shard: Rc<Shard>,
    /// The client's address (DescribeGroups shows it as the member's host).
    pub peer: SocketAddr,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
}

/// One Kafka API served by this broker.
pub(crate) trait Handler {
    type Request: Decodable;
    type Response: Encodable;
    const KEY: ApiKey;
    /// Lowest version advertised in ApiVersions.
    const MIN_VERSION: i16;
    /// Highest version advertised and served.
    const MAX_VERSION: i16;

    /// Answers a request. `None` sends no response at all (Produce with acks=0).
    #[allow(async_fn_in_trait)]
    async fn handle(ctx: &RequestContext, request: Self::Request) -> Option<Self::Response>;

    /// Decodes the body; overridden where the codec crate lacks an advertised version.
    fn decode(body: &mut Bytes, version: i16) -> anyhow::Result<Self::Request> {
        Self::Request::decode(body, version)
    }

    /// Encodes the response body; overridden alongside `decode`.
    fn encode(response: &Self::Response, buf: &mut FrameBuf, version: i16) -> anyhow::Result<()> {
        response.encode(buf, version)
    }

    fn encoded_size(response: &Self::Response, version: i16) -> Option<usize> {
        response.compute_size(version).ok()
    }

    /// Record sets in the response to write from where they are instead of copying
    /// them into the frame (Fetch).
    fn referenced_parts(_response: &Self::Response) -> Vec<Bytes> {
        Vec::new()
    }
}

/// One row of the ApiVersions answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiSupport {
    pub key: ApiKey,
    pub min_version: i16,
    pub max_version: i16,
}

/// A request that cannot be answered: the connection is closed, as Kafka does.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("unknown api key {0}")]
    UnknownApi(i16),
    #[error("unsupported version {version} of {key:?}")]
    UnsupportedVersion { key: ApiKey, version: i16 },
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("cannot encode response: {0}")]
    Encode(String),
}

macro_rules! apis {
    ($($handler:ty),* $(,)?) => {
        /// Every API this broker implements, with the versions it serves.
        pub const SUPPORTED_APIS: &[ApiSupport] = &[$(ApiSupport {
            key: <$handler as Handler>::KEY,
            min_version: <$handler as Handler>::MIN_VERSION,
            max_version: <$handler as Handler>::MAX_VERSION,
        }),*];

        async fn dispatch_to_handler(
            ctx: RequestContext,
            key: ApiKey,
            body: Bytes,
        ) -> Result<Option<ResponseFrame>, DispatchError> {
            $(if key == <$handler as Handler>::KEY {
                return serve::<$handler>(ctx, body).await;
            })*
            Err(DispatchError::UnknownApi(key as i16))
        }
    };
}

apis! {
    handlers::produce::Produce,
    handlers::fetch::Fetch,
    handlers::list_offsets::ListOffsets,
    handlers::metadata::Metadata,
    handlers::api_versions::ApiVersions,
    handlers::create_topics::CreateTopics,
    handlers::delete_topics::DeleteTopics,
    handlers::init_producer_id::InitProducerId,
    handlers::describe_configs::DescribeConfigs,
    handlers::create_partitions::CreatePartitions,
    handlers::describe_cluster::DescribeCluster,
    handlers::find_coordinator::FindCoordinator,
    handlers::join_group::JoinGroup,
    handlers::sync_group::SyncGroup,
    handlers::heartbeat::Heartbeat,
    handlers::leave_group::LeaveGroup,
    handlers::offset_commit::OffsetCommit,
    handlers::offset_fetch::OffsetFetch,
    handlers::list_groups::ListGroups,
    handlers::describe_groups::DescribeGroups,
    handlers::delete_groups::DeleteGroups,
    handlers::offset_delete::OffsetDelete,
    handlers::offset_for_leader_epoch::OffsetForLeaderEpoch,
}

/// The supported version range of `key`, if this broker implements it.
pub fn supported(key: ApiKey) -> Option<ApiSupport> {
    SUPPORTED_APIS.iter().copied().find(|api| api.key == key)
}

/// Decodes, handles and encodes one request frame. `Ok(None)` sends nothing back.
pub async fn dispatch(
    shard: Rc<Shard>,
    peer: SocketAddr,
    mut frame: Bytes,
) -> Result<Option<ResponseFrame>, DispatchError> {
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let key = ApiKey::try_from(raw_key).map_err(|_| DispatchError::UnknownApi(raw_key))?;
    let support = supported(key).ok_or(DispatchError::UnknownApi(raw_key))?;
    if version < support.min_version || version > support.max_version {
        if key == ApiKey::ApiVersions {
            // Kafka answers an ApiVersions it cannot parse with a v0 response carrying
            // UNSUPPORTED_VERSION and its versions, so the client can pick one.
            let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
            let response = handlers::api_versions::unsupported_version_response();
            return frame_response::<handlers::api_versions::ApiVersions>(
                correlation_id,
                0,
                &response,
                0,
            )
            .map(Some);
        }
        return Err(DispatchError::UnsupportedVersion { key, version });
    }
    let header = RequestHeader::decode(&mut frame, key.request_header_version(version))
        .map_err(|e| DispatchError::Malformed(format!("request header: {e}")))?;
    let ctx = RequestContext {
        shard,
        peer,
        api_version: version,
        correlation_id: header.correlation_id,
        client_id: header.client_id.map(|s| s.to_string()),
    };
    dispatch_to_handler(ctx, key, frame).await
}

async fn serve<H: Handler>(
    ctx: RequestContext,
    mut body: Bytes,
) -> Result<Option<ResponseFrame>, DispatchError> {
    let version = ctx.api_version;
    let request = H::decode(&mut body, version)
        .map_err(|e| DispatchError::Malformed(format!("{:?}: {e}", H::KEY)))?;
    let Some(response) = H::handle(&ctx, request).await else {
        return Ok(None);
    };
    let header_version = H::KEY.response_header_version(version);
    frame_response::<H>(ctx.correlation_id, header_version, &response, version).map(Some)
}

/// Encodes a whole response frame: size prefix, header, body. Record sets the handler
/// names are referenced, not copied; then the size prefix is known before encoding.
fn frame_response<H: Handler>(
    correlation_id: i32,
    header_version: i16,
    response: &H::Response,
    version: i16,
) -> Result<ResponseFrame, DispatchError> {
    let encode_error =
        |e: anyhow::Error| DispatchError::Encode(format!("{:?} v{version}: {e}", H::KEY));
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_size = header.compute_size(header_version).map_err(encode_error)?;
    let referenced = H::referenced_parts(response);
    let body_size = H::encoded_size(response, version);
    let (mut buf, announced) = match body_size {
        Some(body) if !referenced.is_empty() => {
            let referenced_bytes: usize = referenced.iter().map(Bytes::len).sum();
            let head = (4 + header_size + body).saturating_sub(referenced_bytes);
            let mut buf = FrameBuf::new(head, referenced);
            buf.put_i32((header_size + body) as i32);
            (buf, Some(header_size + body))
        }
        _ => {
            let mut buf = FrameBuf::new(4 + header_size + body_size.unwrap_or(0), Vec::new());
            buf.put_i32(0);
            (buf, None)
        }
    };
    header
        .encode(&mut buf, header_version)
        .map_err(encode_error)?;
    H::encode(response, &mut buf, version).map_err(encode_error)?;
    let size = buf.offset() - 4;
    match announced {
        Some(announced) if announced != size => {
            return Err(DispatchError::Encode(format!(
                "{:?} v{version}: encoded {size} bytes, computed {announced}",
                H::KEY
            )));
        }
        Some(_) => {}
        None => buf
            .range(0..4)
            .copy_from_slice(&(size as i32).to_be_bytes()),
    }
    Ok(buf.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_api_is_listed_once_with_a_sane_range() {
        let mut keys: Vec<i16> = SUPPORTED_APIS.iter().map(|a| a.key as i16).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), SUPPORTED_APIS.len());
        for api in SUPPORTED_APIS {
            assert!(api.min_version <= api.max_version, "{api:?}");
        }
        // librdkafka disables compression unless Produce is advertised from v0.
        assert_eq!(supported(ApiKey::Produce).unwrap().min_version, 0);
    }
}
