//! InitProducerId for idempotent producers: a fresh producer id with epoch 0, from
//! blocks the control plane reserves durably, so ids never repeat across restarts.
//! Transactional ids are refused: transactions are not implemented.

use kafka_protocol::messages::{ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use sluice_core::ErrorCode;

use crate::api::{Handler, RequestContext};

pub struct InitProducerId;

impl Handler for InitProducerId {
    type Request = InitProducerIdRequest;
    type Response = InitProducerIdResponse;
    const KEY: ApiKey = ApiKey::InitProducerId;
    const MIN_VERSION: i16 = 0;
    const MAX_VERSION: i16 = 4;

    async fn handle(
        ctx: &RequestContext,
        request: InitProducerIdRequest,
    ) -> Option<InitProducerIdResponse> {
        let response = InitProducerIdResponse::default()
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        if request.transactional_id.is_some() {
            return Some(
                response.with_error_code(ErrorCode::TransactionalIdAuthorizationFailed.code()),
            );
        }
        Some(match ctx.shard.control.allocate_producer_id().await {
            Ok(Ok(id)) => response
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(0),
            Ok(Err(e)) => response.with_error_code(e.code.code()),
            Err(_) => response.with_error_code(ErrorCode::CoordinatorNotAvailable.code()),
        })
    }
}
