//! One thin handler per Kafka API: take the decoded request, ask the component that owns the
//! concept, build the response. Dispatch and response encoding live here.

mod api_versions;
mod configs;
mod fetch;
mod metadata;
mod offsets;
mod produce;
mod topics;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use strom_protocol::request::DecodedRequest;
use strom_protocol::response::encode_response;

use crate::state::BrokerState;

/// Handles one request; returns the encoded response frame, or `None` when the client expects
/// no response (acks=0 produce).
pub async fn handle(state: &BrokerState, request: DecodedRequest) -> Option<Bytes> {
    let header = request.header;
    let version = header.request_api_version;
    let correlation_id = header.correlation_id;
    let Ok(api_key) = ApiKey::try_from(header.request_api_key) else {
        tracing::error!(
            api_key = header.request_api_key,
            "decoded request has an unknown api key"
        );
        return None;
    };
    let response = match request.body {
        RequestKind::ApiVersions(r) => Some(ResponseKind::ApiVersions(api_versions::handle(
            state, version, r,
        ))),
        RequestKind::Metadata(r) => {
            Some(ResponseKind::Metadata(metadata::handle(state, version, r)))
        }
        RequestKind::CreateTopics(r) => Some(ResponseKind::CreateTopics(topics::create_topics(
            state, version, r,
        ))),
        RequestKind::DeleteTopics(r) => Some(ResponseKind::DeleteTopics(topics::delete_topics(
            state, version, r,
        ))),
        RequestKind::CreatePartitions(r) => Some(ResponseKind::CreatePartitions(
            topics::create_partitions(state, r),
        )),
        RequestKind::Produce(r) => produce::handle(state, version, r).map(ResponseKind::Produce),
        RequestKind::Fetch(r) => Some(ResponseKind::Fetch(fetch::handle(state, version, r).await)),
        RequestKind::ListOffsets(r) => Some(ResponseKind::ListOffsets(offsets::list_offsets(
            state, version, r,
        ))),
        RequestKind::DeleteRecords(r) => Some(ResponseKind::DeleteRecords(
            offsets::delete_records(state, r),
        )),
        RequestKind::OffsetForLeaderEpoch(r) => Some(ResponseKind::OffsetForLeaderEpoch(
            offsets::offset_for_leader_epoch(state, r),
        )),
        RequestKind::DescribeConfigs(r) => Some(ResponseKind::DescribeConfigs(
            configs::describe_configs(state, version, r),
        )),
        RequestKind::AlterConfigs(r) => {
            Some(ResponseKind::AlterConfigs(configs::alter_configs(state, r)))
        }
        RequestKind::IncrementalAlterConfigs(r) => Some(ResponseKind::IncrementalAlterConfigs(
            configs::incremental_alter_configs(state, r),
        )),
        RequestKind::DescribeCluster(r) => Some(ResponseKind::DescribeCluster(
            metadata::describe_cluster(state, version, r),
        )),
        RequestKind::DescribeLogDirs(r) => Some(ResponseKind::DescribeLogDirs(
            offsets::describe_log_dirs(state, version, r),
        )),
        other => {
            // The version table and this match must agree; the decoder only lets through
            // what the table lists.
            tracing::error!(
                ?api_key,
                "no handler for a decoded request: {:?}",
                std::mem::discriminant(&other)
            );
            return None;
        }
    }?;
    match encode_response(correlation_id, api_key, version, &response) {
        Ok(bytes) => Some(bytes),
        Err(error) => {
            tracing::error!(?api_key, version, %error, "cannot encode response");
            None
        }
    }
}

/// A protocol string from text.
pub(crate) fn str_bytes(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// A topic name from text.
pub(crate) fn topic_name(text: &str) -> TopicName {
    TopicName(str_bytes(text))
}
