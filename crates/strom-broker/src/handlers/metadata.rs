//! Metadata and DescribeCluster: what the image says about brokers, topics and partitions.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeClusterRequest, DescribeClusterResponse, MetadataRequest, MetadataResponse,
};
use strom_metadata::topic_name::validate_topic_name;
use strom_metadata::TopicImage;
use uuid::Uuid;

use super::{str_bytes, topic_name};
use crate::state::BrokerState;

pub fn handle(state: &BrokerState, version: i16, request: MetadataRequest) -> MetadataResponse {
    let requested: Option<Vec<(Option<String>, Uuid)>> = match request.topics {
        // v0 uses an empty list for "all topics"; v1+ uses null.
        Some(topics) if !(version == 0 && topics.is_empty()) => Some(
            topics
                .into_iter()
                .map(|t| (t.name.map(|n| n.to_string()), t.topic_id))
                .collect(),
        ),
        _ => None,
    };
    let auto_create = version < 4 || request.allow_auto_topic_creation;
    let mut creation_failures = Default::default();
    if let (Some(requested), true) = (&requested, auto_create) {
        let names: Vec<String> = requested
            .iter()
            .filter_map(|(name, _)| name.clone())
            .filter(|name| validate_topic_name(name).is_ok())
            .collect();
        creation_failures = state.auto_create_topics(&names);
    }
    let image = state.image();
    let topics = match requested {
        None => image
            .topics
            .values()
            .map(|topic| topic_metadata(topic, 0))
            .collect(),
        Some(requested) => requested
            .into_iter()
            .map(|(name, topic_id)| {
                let found = match &name {
                    Some(name) => image.topic(name),
                    None => image.topic_by_id(&topic_id),
                };
                match (found, name) {
                    (Some(topic), _) => topic_metadata(topic, 0),
                    (None, Some(name)) => {
                        let code = if validate_topic_name(&name).is_err() {
                            ResponseError::InvalidTopicException.code()
                        } else {
                            creation_failures
                                .get(&name)
                                .copied()
                                .unwrap_or(ResponseError::UnknownTopicOrPartition.code())
                        };
                        missing_topic(Some(name), Uuid::nil(), code)
                    }
                    (None, None) => {
                        missing_topic(None, topic_id, ResponseError::UnknownTopicId.code())
                    }
                }
            })
            .collect(),
    };
    let mut response = MetadataResponse::default();
    response.brokers = image
        .brokers
        .values()
        .map(|b| {
            let mut broker = MetadataResponseBroker::default();
            broker.node_id = BrokerId(b.node_id);
            broker.host = str_bytes(&b.host);
            broker.port = b.port as i32;
            broker.rack = b.rack.as_deref().map(str_bytes);
            broker
        })
        .collect();
    response.cluster_id = Some(str_bytes(&image.cluster_id));
    response.controller_id = BrokerId(state.node_id());
    response.topics = topics;
    response
}

fn missing_topic(name: Option<String>, topic_id: Uuid, error_code: i16) -> MetadataResponseTopic {
    let mut topic = MetadataResponseTopic::default();
    topic.error_code = error_code;
    topic.name = name.as_deref().map(topic_name);
    topic.topic_id = topic_id;
    topic
}

fn topic_metadata(topic: &TopicImage, error_code: i16) -> MetadataResponseTopic {
    let mut response = MetadataResponseTopic::default();
    response.error_code = error_code;
    response.name = Some(topic_name(&topic.name));
    response.topic_id = topic.topic_id;
    response.is_internal = topic.is_internal();
    response.partitions = topic
        .partitions
        .iter()
        .map(|p| {
            let mut partition = MetadataResponsePartition::default();
            partition.partition_index = p.partition;
            partition.leader_id = BrokerId(p.leader);
            partition.leader_epoch = p.leader_epoch;
            partition.replica_nodes = p.replicas.iter().map(|id| BrokerId(*id)).collect();
            partition.isr_nodes = p.isr.iter().map(|id| BrokerId(*id)).collect();
            partition.error_code = if p.leader < 0 {
                ResponseError::LeaderNotAvailable.code()
            } else {
                0
            };
            partition
        })
        .collect();
    response
}

pub fn describe_cluster(
    state: &BrokerState,
    version: i16,
    _request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let image = state.image();
    let mut response = DescribeClusterResponse::default();
    response.cluster_id = str_bytes(&image.cluster_id);
    response.controller_id = BrokerId(state.node_id());
    if version >= 1 {
        response.endpoint_type = 1;
    }
    response.brokers = image
        .brokers
        .values()
        .map(|b| {
            let mut broker = DescribeClusterBroker::default();
            broker.broker_id = BrokerId(b.node_id);
            broker.host = str_bytes(&b.host);
            broker.port = b.port as i32;
            broker.rack = b.rack.as_deref().map(str_bytes);
            broker
        })
        .collect();
    response
}
