//! CreateTopics, DeleteTopics, CreatePartitions: thin wrappers over the controller.

use std::collections::{BTreeMap, HashSet};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse,
};
use strom_metadata::topic_config::effective_configs;
use strom_metadata::ControllerError;
use uuid::Uuid;

use super::{str_bytes, topic_name};
use crate::errors::controller_error_code;
use crate::state::BrokerState;

pub fn create_topics(
    state: &BrokerState,
    _version: i16,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut seen = HashSet::new();
    let duplicates: HashSet<String> = request
        .topics
        .iter()
        .map(|t| t.name.to_string())
        .filter(|name| !seen.insert(name.clone()))
        .collect();
    let mut response = CreateTopicsResponse::default();
    for topic in request.topics {
        let name = topic.name.to_string();
        let mut result = CreatableTopicResult::default();
        result.name = topic.name.clone();
        if duplicates.contains(&name) {
            result.error_code = ResponseError::InvalidRequest.code();
            result.error_message = Some(str_bytes(&format!(
                "topic '{name}' appears more than once in the request"
            )));
            response.topics.push(result);
            continue;
        }
        let (partitions, replication) = if topic.assignments.is_empty() {
            let partitions = if topic.num_partitions == -1 {
                state.config.num_partitions
            } else {
                topic.num_partitions
            };
            let replication = if topic.replication_factor == -1 {
                state.config.default_replication_factor
            } else {
                topic.replication_factor
            };
            (partitions, replication)
        } else {
            let image = state.image();
            let unknown_broker = topic
                .assignments
                .iter()
                .flat_map(|a| a.broker_ids.iter())
                .any(|id| !image.brokers.contains_key(&id.0));
            let replication = topic.assignments[0].broker_ids.len() as i16;
            let uneven = topic
                .assignments
                .iter()
                .any(|a| a.broker_ids.len() as i16 != replication);
            if unknown_broker || uneven || topic.num_partitions != -1 {
                result.error_code = ResponseError::InvalidReplicaAssignment.code();
                result.error_message = Some(str_bytes(
                    "replica assignments must name known brokers, have equal lengths, and come with num_partitions = -1",
                ));
                response.topics.push(result);
                continue;
            }
            (topic.assignments.len() as i32, replication)
        };
        let configs: BTreeMap<String, String> = topic
            .configs
            .iter()
            .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
            .collect();
        let created = state.with_controller(|c| {
            c.create_topic(
                &name,
                partitions,
                replication,
                &configs,
                request.validate_only,
            )
        });
        match created {
            Ok(image) => {
                result.topic_id = if request.validate_only {
                    Uuid::nil()
                } else {
                    image.topic_id
                };
                result.num_partitions = image.partitions.len() as i32;
                result.replication_factor = image
                    .partitions
                    .first()
                    .map_or(1, |p| p.replicas.len() as i16);
                result.configs = Some(
                    effective_configs(&image.configs, state.replicas.topic_defaults())
                        .into_iter()
                        .map(|c| {
                            let mut config = CreatableTopicConfigs::default();
                            config.name = str_bytes(c.name);
                            config.value = Some(str_bytes(&c.value));
                            config.config_source = c.source.wire_code();
                            config
                        })
                        .collect(),
                );
                if !request.validate_only {
                    tracing::info!(topic = %name, partitions, "created topic");
                }
            }
            Err(error) => {
                result.error_code = controller_error_code(&error);
                result.error_message = Some(str_bytes(&error.to_string()));
                result.num_partitions = -1;
                result.replication_factor = -1;
            }
        }
        response.topics.push(result);
    }
    response
}

pub fn delete_topics(
    state: &BrokerState,
    version: i16,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let targets: Vec<(Option<String>, Uuid)> = if version >= 6 {
        request
            .topics
            .into_iter()
            .map(|t| (t.name.map(|n| n.to_string()), t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .into_iter()
            .map(|n| (Some(n.to_string()), Uuid::nil()))
            .collect()
    };
    let mut response = DeleteTopicsResponse::default();
    for (name, topic_id) in targets {
        let mut result = DeletableTopicResult::default();
        result.topic_id = topic_id;
        let resolved = match &name {
            Some(name) => Some(name.clone()),
            None => state.image().topic_by_id(&topic_id).map(|t| t.name.clone()),
        };
        result.name = resolved.as_deref().or(name.as_deref()).map(topic_name);
        let Some(resolved) = resolved else {
            result.error_code = ResponseError::UnknownTopicId.code();
            response.responses.push(result);
            continue;
        };
        match state.with_controller(|c| c.delete_topic(&resolved)) {
            Ok(deleted) => {
                result.topic_id = deleted.topic_id;
                tracing::info!(topic = %resolved, "deleted topic");
            }
            Err(error) => {
                result.error_code = controller_error_code(&error);
                result.error_message = Some(str_bytes(&error.to_string()));
            }
        }
        response.responses.push(result);
    }
    response
}

pub fn create_partitions(
    state: &BrokerState,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut response = CreatePartitionsResponse::default();
    for topic in request.topics {
        let name = topic.name.to_string();
        let mut result = CreatePartitionsTopicResult::default();
        result.name = topic.name.clone();
        let outcome = state.with_controller(|c| {
            if let Some(assignments) = &topic.assignments {
                let current = c
                    .image()
                    .topic(&name)
                    .map_or(0, |t| t.partitions.len() as i32);
                if assignments.len() as i32 != topic.count - current {
                    return Err(ControllerError::InvalidRequest(format!(
                        "{} assignments given for {} new partitions",
                        assignments.len(),
                        topic.count - current
                    )));
                }
            }
            c.create_partitions(&name, topic.count, request.validate_only)
        });
        if let Err(error) = outcome {
            result.error_code = match error {
                ControllerError::InvalidRequest(_) => {
                    ResponseError::InvalidReplicaAssignment.code()
                }
                ref other => controller_error_code(other),
            };
            result.error_message = Some(str_bytes(&error.to_string()));
        }
        response.results.push(result);
    }
    response
}
