//! ApiVersions: the versions of every API in the dispatch table.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};

use sluice_core::ErrorCode;

use crate::api::{Handler, RequestContext, SUPPORTED_APIS};

pub struct ApiVersions;

impl Handler for ApiVersions {
    type Request = ApiVersionsRequest;
    type Response = ApiVersionsResponse;
    const KEY: ApiKey = ApiKey::ApiVersions;
    const MIN_VERSION: i16 = 0;
    const MAX_VERSION: i16 = 3;

    async fn handle(
        _ctx: &RequestContext,
        _request: ApiVersionsRequest,
    ) -> Option<ApiVersionsResponse> {
        Some(response(ErrorCode::None))
    }
}

/// The v0 answer to an ApiVersions request of a version this broker cannot parse.
pub fn unsupported_version_response() -> ApiVersionsResponse {
    response(ErrorCode::UnsupportedVersion)
}

fn response(code: ErrorCode) -> ApiVersionsResponse {
    let api_keys = SUPPORTED_APIS
        .iter()
        .map(|api| {
            ApiVersion::default()
                .with_api_key(api.key as i16)
                .with_min_version(api.min_version)
                .with_max_version(api.max_version)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(code.code())
        .with_api_keys(api_keys)
}
