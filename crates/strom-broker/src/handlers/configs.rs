//! DescribeConfigs, AlterConfigs, IncrementalAlterConfigs for topics (and a read-only view of
//! the broker's static settings).

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use strom_metadata::topic_config::{config_key, effective_configs, ConfigSource, ConfigType};

use super::str_bytes;
use crate::errors::controller_error_code;
use crate::state::BrokerState;

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

pub fn describe_configs(
    state: &BrokerState,
    version: i16,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let mut response = DescribeConfigsResponse::default();
    for resource in request.resources {
        let mut result = DescribeConfigsResult::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        let keys: Option<Vec<String>> = resource
            .configuration_keys
            .map(|keys| keys.iter().map(|k| k.to_string()).collect());
        let wanted = |name: &str| keys.as_ref().is_none_or(|k| k.iter().any(|k| k == name));
        match resource.resource_type {
            RESOURCE_TOPIC => {
                let image = state.image();
                match image.topic(&resource.resource_name) {
                    None => {
                        result.error_code = ResponseError::UnknownTopicOrPartition.code();
                        result.error_message = Some(str_bytes(&format!(
                            "topic '{}' does not exist",
                            resource.resource_name.as_str()
                        )));
                    }
                    Some(topic) => {
                        result.configs =
                            effective_configs(&topic.configs, state.replicas.topic_defaults())
                                .into_iter()
                                .filter(|c| wanted(c.name))
                                .map(|c| {
                                    let mut entry = DescribeConfigsResourceResult::default();
                                    entry.name = str_bytes(c.name);
                                    entry.value = Some(str_bytes(&c.value));
                                    entry.config_source = c.source.wire_code();
                                    entry.read_only = false;
                                    entry.is_sensitive = false;
                                    if let Some(key) = config_key(c.name) {
                                        entry.config_type = key.config_type.wire_code();
                                        if request.include_documentation {
                                            entry.documentation = Some(str_bytes(key.doc));
                                        }
                                        if request.include_synonyms {
                                            entry.synonyms = synonyms(
                                                state,
                                                &topic.configs,
                                                key.name,
                                                key.default_value,
                                            );
                                        }
                                    }
                                    if version == 0 && c.source == ConfigSource::Default {
                                        entry.config_source = -1;
                                    }
                                    entry
                                })
                                .collect();
                    }
                }
            }
            RESOURCE_BROKER => {
                let name = resource.resource_name.as_str();
                if !name.is_empty() && name != state.node_id().to_string() {
                    result.error_code = ResponseError::InvalidRequest.code();
                    result.error_message = Some(str_bytes(&format!("unknown broker '{name}'")));
                } else {
                    result.configs = broker_configs(state)
                        .into_iter()
                        .filter(|(k, _, _)| wanted(k))
                        .map(|(name, value, config_type)| {
                            let mut entry = DescribeConfigsResourceResult::default();
                            entry.name = str_bytes(&name);
                            entry.value = Some(str_bytes(&value));
                            entry.config_source = ConfigSource::StaticBroker.wire_code();
                            entry.read_only = true;
                            entry.config_type = config_type.wire_code();
                            entry
                        })
                        .collect();
                }
            }
            other => {
                result.error_code = ResponseError::InvalidRequest.code();
                result.error_message = Some(str_bytes(&format!(
                    "resource type {other} has no configs here"
                )));
            }
        }
        response.results.push(result);
    }
    response
}

fn synonyms(
    state: &BrokerState,
    overrides: &BTreeMap<String, String>,
    name: &str,
    default_value: &str,
) -> Vec<DescribeConfigsSynonym> {
    let synonym = |value: &str, source: ConfigSource| {
        let mut s = DescribeConfigsSynonym::default();
        s.name = str_bytes(name);
        s.value = Some(str_bytes(value));
        s.source = source.wire_code();
        s
    };
    let mut list = Vec::new();
    if let Some(value) = overrides.get(name) {
        list.push(synonym(value, ConfigSource::Topic));
    }
    if let Some(value) = state.replicas.topic_defaults().get(name) {
        list.push(synonym(value, ConfigSource::StaticBroker));
    }
    list.push(synonym(default_value, ConfigSource::Default));
    list
}

fn broker_configs(state: &BrokerState) -> Vec<(String, String, ConfigType)> {
    let config = &state.config;
    let mut entries = vec![
        (
            "node.id".to_string(),
            config.node_id.to_string(),
            ConfigType::Int,
        ),
        (
            "broker.id".to_string(),
            config.node_id.to_string(),
            ConfigType::Int,
        ),
        (
            "log.dirs".to_string(),
            config.data_dir.display().to_string(),
            ConfigType::String,
        ),
        (
            "auto.create.topics.enable".to_string(),
            config.auto_create_topics_enable.to_string(),
            ConfigType::Boolean,
        ),
        (
            "num.partitions".to_string(),
            config.num_partitions.to_string(),
            ConfigType::Int,
        ),
        (
            "default.replication.factor".to_string(),
            config.default_replication_factor.to_string(),
            ConfigType::Int,
        ),
        (
            "socket.request.max.bytes".to_string(),
            config.socket_request_max_bytes.to_string(),
            ConfigType::Int,
        ),
        (
            "log.retention.check.interval.ms".to_string(),
            config.log_retention_check_interval_ms.to_string(),
            ConfigType::Long,
        ),
    ];
    for (key, value) in &config.topic_defaults {
        entries.push((
            format!("topic.default.{key}"),
            value.clone(),
            ConfigType::String,
        ));
    }
    entries
}

pub fn alter_configs(state: &BrokerState, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut response = AlterConfigsResponse::default();
    for resource in request.resources {
        let mut result = alter_configs_response::AlterConfigsResourceResponse::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        let outcome = if resource.resource_type != RESOURCE_TOPIC {
            Err(unsupported_resource(resource.resource_type))
        } else {
            let topic = resource.resource_name.to_string();
            // AlterConfigs replaces the whole set: what is not named goes back to its default.
            let mut changes: Vec<(String, Option<String>)> = resource
                .configs
                .iter()
                .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
                .collect();
            if let Some(current) = state.image().topic(&topic) {
                for key in current.configs.keys() {
                    if !changes.iter().any(|(k, _)| k == key) {
                        changes.push((key.clone(), None));
                    }
                }
            }
            apply(state, &topic, &changes, request.validate_only)
        };
        if let Err((code, message)) = outcome {
            result.error_code = code;
            result.error_message = Some(str_bytes(&message));
        }
        response.responses.push(result);
    }
    response
}

pub fn incremental_alter_configs(
    state: &BrokerState,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut response = IncrementalAlterConfigsResponse::default();
    for resource in request.resources {
        let mut result =
            incremental_alter_configs_response::AlterConfigsResourceResponse::default();
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        let outcome = if resource.resource_type != RESOURCE_TOPIC {
            Err(unsupported_resource(resource.resource_type))
        } else {
            let topic = resource.resource_name.to_string();
            let current = state
                .image()
                .topic(&topic)
                .map(|t| t.configs.clone())
                .unwrap_or_default();
            resource
                .configs
                .iter()
                .map(|c| {
                    incremental_change(
                        state,
                        &current,
                        &c.name,
                        c.config_operation,
                        c.value.as_ref(),
                    )
                })
                .collect::<Result<Vec<_>, _>>()
                .and_then(|changes| apply(state, &topic, &changes, request.validate_only))
        };
        if let Err((code, message)) = outcome {
            result.error_code = code;
            result.error_message = Some(str_bytes(&message));
        }
        response.responses.push(result);
    }
    response
}

fn incremental_change(
    state: &BrokerState,
    current: &BTreeMap<String, String>,
    name: &StrBytes,
    operation: i8,
    value: Option<&StrBytes>,
) -> Result<(String, Option<String>), (i16, String)> {
    let name = name.to_string();
    let invalid = |message: String| (ResponseError::InvalidConfig.code(), message);
    match operation {
        OP_SET => Ok((name, value.map(|v| v.to_string()))),
        OP_DELETE => Ok((name, None)),
        OP_APPEND | OP_SUBTRACT => {
            let key = config_key(&name)
                .ok_or_else(|| invalid(format!("unknown topic config '{name}'")))?;
            if key.config_type != ConfigType::List {
                return Err(invalid(format!(
                    "{name} is not a list; APPEND and SUBTRACT need one"
                )));
            }
            let existing = strom_metadata::topic_config::effective_value(
                &name,
                current,
                state.replicas.topic_defaults(),
            )
            .unwrap_or_default();
            let mut items: Vec<String> = existing
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            let given: Vec<String> = value
                .map(|v| {
                    v.split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            if operation == OP_APPEND {
                for item in given {
                    if !items.contains(&item) {
                        items.push(item);
                    }
                }
            } else {
                items.retain(|item| !given.contains(item));
            }
            Ok((name, Some(items.join(","))))
        }
        other => Err((
            ResponseError::InvalidRequest.code(),
            format!("unknown config operation {other}"),
        )),
    }
}

fn apply(
    state: &BrokerState,
    topic: &str,
    changes: &[(String, Option<String>)],
    validate_only: bool,
) -> Result<(), (i16, String)> {
    state
        .with_controller(|c| c.alter_topic_configs(topic, changes, validate_only))
        .map_err(|e| (controller_error_code(&e), e.to_string()))
}

fn unsupported_resource(resource_type: i8) -> (i16, String) {
    let message = if resource_type == RESOURCE_BROKER {
        "broker configs are static in Strom: set them in strom.toml and restart".to_string()
    } else {
        format!("resource type {resource_type} has no alterable configs")
    };
    (ResponseError::InvalidRequest.code(), message)
}
