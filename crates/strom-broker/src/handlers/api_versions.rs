//! ApiVersions: advertise exactly the APIs and versions the decoder accepts.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse};
use strom_protocol::versions::SUPPORTED_APIS;

use crate::state::BrokerState;

pub fn handle(
    _state: &BrokerState,
    _version: i16,
    _request: ApiVersionsRequest,
) -> ApiVersionsResponse {
    let mut response = ApiVersionsResponse::default();
    response.error_code = 0;
    response.api_keys = SUPPORTED_APIS
        .iter()
        .map(|(api_key, min, max)| {
            let mut api = ApiVersion::default();
            api.api_key = *api_key as i16;
            api.min_version = *min;
            api.max_version = *max;
            api
        })
        .collect();
    response
}
