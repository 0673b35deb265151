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
    if request.producer_id.0 >= 0 && request.producer_epoch >= 0 {
        match state
            .producer_ids
            .bump(request.producer_id.0, request.producer_epoch)
        {
            Ok(Some(epoch)) => {
                response.producer_id = request.producer_id;
                response.producer_epoch = epoch;
                return response;
            }
            // Not an id we issued, or its epochs are used up: a fresh id below.
            Ok(None) => {}
            Err(error) => {
                tracing::info!(%error, "refusing an epoch bump");
                response.error_code = ResponseError::InvalidProducerEpoch.code();
                return response;
            }
        }
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
