//! InitProducerId for idempotent producers (no transactional id): a new producer id at epoch
//! 0, or, when the client presents its current id and epoch (KIP-360), the same id at the next
//! epoch so it can recover from a sequence error without losing its identity.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::state::BrokerState;

pub fn init_producer_id(
    state: &BrokerState,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let mut response = InitProducerIdResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    if request.transactional_id.is_some() {
        response.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
        tracing::warn!(
            "InitProducerId with a transactional id: transactions are not supported yet"
        );
        return response;
    }
    let bump = request.producer_id.0 >= 0 && request.producer_epoch >= 0;
    if bump && request.producer_epoch < i16::MAX - 1 {
        response.producer_id = request.producer_id;
        response.producer_epoch = request.producer_epoch + 1;
        return response;
    }
    match state.producer_ids.allocate() {
        Ok(id) => {
            response.producer_id = ProducerId(id);
            response.producer_epoch = 0;
        }
        Err(error) => {
            tracing::error!(%error, "cannot allocate a producer id");
            response.error_code = ResponseError::KafkaStorageError.code();
        }
    }
    response
}
