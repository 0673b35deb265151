//! One thin handler per Kafka API: take the decoded request, ask the component that owns the
//! concept, build the response. Dispatch and response encoding live here.

mod api_versions;
mod configs;
mod fetch;
mod groups;
mod metadata;
mod offsets;
mod produce;
mod producer_ids;
mod topics;

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use strom_protocol::chunked::Frame;
use strom_protocol::request::DecodedRequest;
use strom_protocol::response::{encode_fetch_response, encode_response};

use crate::state::BrokerState;

/// What the connection does after a request.
pub enum Outcome {
    /// Write this response frame.
    Respond(Frame),
    /// Write this response frame of a catch-up fetch from the catch-up threads
    /// ([`crate::catchup`]).
    RespondCatchUp(Frame),
    /// The client expects no response (acks=0 produce).
    Silent,
    /// No answer can be given (a response that cannot be encoded, a request without a
    /// handler): close the connection so the client does not wait for one.
    Close(String),
}

/// Handles one request.
pub async fn handle(
    state: &BrokerState,
    request: DecodedRequest,
    peer: std::net::SocketAddr,
) -> Outcome {
    let header = request.header;
    let version = header.request_api_version;
    let correlation_id = header.correlation_id;
    let Ok(api_key) = ApiKey::try_from(header.request_api_key) else {
        return Outcome::Close(format!(
            "decoded request has an unknown api key {}",
            header.request_api_key
        ));
    };
    let mut catch_up = false;
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
        RequestKind::Fetch(r) => {
            let (response, is_catch_up) = fetch::handle(state, version, r).await;
            catch_up = is_catch_up;
            Some(ResponseKind::Fetch(response))
        }
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
        RequestKind::FindCoordinator(r) => Some(ResponseKind::FindCoordinator(
            groups::find_coordinator(state, version, r),
        )),
        RequestKind::JoinGroup(r) => {
            let client_id = header
                .client_id
                .as_ref()
                .map(|c| c.to_string())
                .unwrap_or_default();
            Some(ResponseKind::JoinGroup(
                groups::join_group(state, version, &client_id, &format!("/{}", peer.ip()), r).await,
            ))
        }
        RequestKind::SyncGroup(r) => {
            Some(ResponseKind::SyncGroup(groups::sync_group(state, r).await))
        }
        RequestKind::Heartbeat(r) => Some(ResponseKind::Heartbeat(groups::heartbeat(state, r))),
        RequestKind::LeaveGroup(r) => Some(ResponseKind::LeaveGroup(groups::leave_group(
            state, version, r,
        ))),
        RequestKind::OffsetCommit(r) => {
            Some(ResponseKind::OffsetCommit(groups::offset_commit(state, r)))
        }
        RequestKind::OffsetFetch(r) => Some(ResponseKind::OffsetFetch(groups::offset_fetch(
            state, version, r,
        ))),
        RequestKind::ListGroups(r) => Some(ResponseKind::ListGroups(groups::list_groups(state, r))),
        RequestKind::DescribeGroups(r) => Some(ResponseKind::DescribeGroups(
            groups::describe_groups(state, version, r),
        )),
        RequestKind::DeleteGroups(r) => {
            Some(ResponseKind::DeleteGroups(groups::delete_groups(state, r)))
        }
        RequestKind::OffsetDelete(r) => {
            Some(ResponseKind::OffsetDelete(groups::offset_delete(state, r)))
        }
        RequestKind::ConsumerGroupHeartbeat(r) => {
            let client_id = header
                .client_id
                .as_ref()
                .map(|c| c.to_string())
                .unwrap_or_default();
            Some(ResponseKind::ConsumerGroupHeartbeat(
                groups::consumer_group_heartbeat(state, &client_id, &format!("/{}", peer.ip()), r),
            ))
        }
        RequestKind::ConsumerGroupDescribe(r) => Some(ResponseKind::ConsumerGroupDescribe(
            groups::consumer_group_describe(state, r),
        )),
        RequestKind::InitProducerId(r) => Some(ResponseKind::InitProducerId(
            producer_ids::init_producer_id(state, r),
        )),
        other => {
            // The version table and this match must agree; the decoder only lets through
            // what the table lists.
            return Outcome::Close(format!(
                "no handler for a decoded {api_key:?} request: {:?}",
                std::mem::discriminant(&other)
            ));
        }
    };
    let Some(response) = response else {
        return Outcome::Silent;
    };
    let encoded = match &response {
        // Fetched batches go to the socket from the buffers they were read into.
        ResponseKind::Fetch(fetch) => encode_fetch_response(correlation_id, version, fetch),
        other => encode_response(correlation_id, api_key, version, other).map(Frame::single),
    };
    match encoded {
        Ok(frame) if catch_up => Outcome::RespondCatchUp(frame),
        Ok(frame) => Outcome::Respond(frame),
        Err(error) => {
            tracing::error!(?api_key, version, %error, "cannot encode response");
            Outcome::Close(format!("cannot encode the {api_key:?} v{version} response"))
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
