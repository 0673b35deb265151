//! Consumer group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups, OffsetDelete. Each
//! translates the request for the group coordinator and its answer back.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{str_bytes, topic_name};
use crate::group::state::JoinRequest;
use crate::group::{OffsetCommit, OffsetValue};
use crate::state::BrokerState;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

fn group_id(text: &str) -> GroupId {
    GroupId(str_bytes(text))
}

fn opt(text: &Option<StrBytes>) -> Option<&str> {
    text.as_ref().map(|s| s.as_str())
}

pub fn find_coordinator(
    state: &BrokerState,
    version: i16,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let keys: Vec<String> = if version >= 4 {
        request
            .coordinator_keys
            .iter()
            .map(|k| k.to_string())
            .collect()
    } else {
        vec![request.key.to_string()]
    };
    type Answer = (String, Result<(), (i16, String)>);
    let answers: Vec<Answer> =
        keys.into_iter()
            .map(|key| {
                let answer = match request.key_type {
                    KEY_TYPE_GROUP => state.groups.coordinates(state, &key).map_err(|code| {
                        (code, "the group coordinator is not available".to_string())
                    }),
                    // One node coordinates everything; InitProducerId then says transactions are
                    // not supported yet.
                    KEY_TYPE_TRANSACTION => Ok(()),
                    other => Err((
                        ResponseError::InvalidRequest.code(),
                        format!("unknown coordinator key type {other}"),
                    )),
                };
                (key, answer)
            })
            .collect();
    let mut response = FindCoordinatorResponse::default();
    if version >= 4 {
        response.coordinators = answers
            .into_iter()
            .map(|(key, answer)| {
                let mut c = Coordinator::default();
                c.key = str_bytes(&key);
                match answer {
                    Ok(()) => {
                        c.node_id = BrokerId(state.node_id());
                        c.host = str_bytes(&state.advertised_host);
                        c.port = state.advertised_port as i32;
                    }
                    Err((code, message)) => {
                        c.node_id = BrokerId(-1);
                        c.port = -1;
                        c.error_code = code;
                        c.error_message = Some(str_bytes(&message));
                    }
                }
                c
            })
            .collect();
    } else if let Some((_, answer)) = answers.into_iter().next() {
        match answer {
            Ok(()) => {
                response.node_id = BrokerId(state.node_id());
                response.host = str_bytes(&state.advertised_host);
                response.port = state.advertised_port as i32;
            }
            Err((code, message)) => {
                response.node_id = BrokerId(-1);
                response.port = -1;
                response.error_code = code;
                if version >= 1 {
                    response.error_message = Some(str_bytes(&message));
                }
            }
        }
    }
    response
}

pub async fn join_group(
    state: &BrokerState,
    version: i16,
    client_id: &str,
    client_host: &str,
    request: JoinGroupRequest,
) -> JoinGroupResponse {
    let join = JoinRequest {
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: client_id.to_string(),
        client_host: client_host.to_string(),
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms: if version >= 1 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        },
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let outcome = state.groups.join(state, &request.group_id, join).await;
    let mut response = JoinGroupResponse::default();
    response.error_code = outcome.error_code;
    response.generation_id = outcome.generation_id;
    response.protocol_type = outcome.protocol_type.as_deref().map(str_bytes);
    response.protocol_name = outcome.protocol_name.as_deref().map(str_bytes);
    if version < 7 && response.protocol_name.is_none() {
        response.protocol_name = Some(StrBytes::default());
    }
    response.leader = str_bytes(&outcome.leader);
    response.member_id = str_bytes(&outcome.member_id);
    response.members = outcome
        .members
        .into_iter()
        .map(|m| {
            let mut member = JoinGroupResponseMember::default();
            member.member_id = str_bytes(&m.member_id);
            if version >= 5 {
                member.group_instance_id = m.group_instance_id.as_deref().map(str_bytes);
            }
            member.metadata = m.metadata;
            member
        })
        .collect();
    response
}

pub async fn sync_group(state: &BrokerState, request: SyncGroupRequest) -> SyncGroupResponse {
    let assignments = request
        .assignments
        .iter()
        .map(|a| (a.member_id.to_string(), a.assignment.clone()))
        .collect();
    let outcome = state
        .groups
        .sync(
            state,
            &request.group_id,
            &request.member_id,
            opt(&request.group_instance_id),
            request.generation_id,
            opt(&request.protocol_type),
            opt(&request.protocol_name),
            assignments,
        )
        .await;
    let mut response = SyncGroupResponse::default();
    response.error_code = outcome.error_code;
    response.protocol_type = outcome.protocol_type.as_deref().map(str_bytes);
    response.protocol_name = outcome.protocol_name.as_deref().map(str_bytes);
    response.assignment = outcome.assignment;
    response
}

pub fn heartbeat(state: &BrokerState, request: HeartbeatRequest) -> HeartbeatResponse {
    let mut response = HeartbeatResponse::default();
    response.error_code = state.groups.heartbeat(
        state,
        &request.group_id,
        &request.member_id,
        opt(&request.group_instance_id),
        request.generation_id,
    );
    response
}

pub fn leave_group(
    state: &BrokerState,
    version: i16,
    request: LeaveGroupRequest,
) -> LeaveGroupResponse {
    let members: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    let (group_code, codes) = state.groups.leave(state, &request.group_id, &members);
    let mut response = LeaveGroupResponse::default();
    if version >= 3 {
        response.error_code = group_code;
        response.members = members
            .into_iter()
            .zip(codes.into_iter().chain(std::iter::repeat(group_code)))
            .map(|((member_id, instance), code)| {
                let mut m = MemberResponse::default();
                m.member_id = str_bytes(&member_id);
                m.group_instance_id = instance.as_deref().map(str_bytes);
                m.error_code = code;
                m
            })
            .collect();
    } else {
        response.error_code = if group_code != 0 {
            group_code
        } else {
            codes.first().copied().unwrap_or(0)
        };
    }
    response
}

pub fn offset_commit(state: &BrokerState, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let offsets: Vec<OffsetCommit> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| OffsetCommit {
                topic: t.name.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: p.committed_leader_epoch,
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
            })
        })
        .collect();
    let codes = state.groups.commit_offsets(
        state,
        &request.group_id,
        &request.member_id,
        opt(&request.group_instance_id),
        request.generation_id_or_member_epoch,
        &offsets,
    );
    let mut code_at = {
        let mut index = 0usize;
        move || {
            let code = match &codes {
                Ok(codes) => codes.get(index).copied().unwrap_or(0),
                Err(code) => *code,
            };
            index += 1;
            code
        }
    };
    let mut response = OffsetCommitResponse::default();
    for topic in request.topics {
        let mut t = OffsetCommitResponseTopic::default();
        t.name = topic.name.clone();
        t.topic_id = topic.topic_id;
        for p in topic.partitions {
            let mut partition = OffsetCommitResponsePartition::default();
            partition.partition_index = p.partition_index;
            partition.error_code = code_at();
            t.partitions.push(partition);
        }
        response.topics.push(t);
    }
    response
}

type FetchedTopic = (String, Vec<(i32, Option<OffsetValue>)>);

pub fn offset_fetch(
    state: &BrokerState,
    version: i16,
    request: OffsetFetchRequest,
) -> OffsetFetchResponse {
    let mut response = OffsetFetchResponse::default();
    if version >= 8 {
        for group in request.groups {
            let topics = group.topics.map(|topics| {
                topics
                    .into_iter()
                    .map(|t| (t.name.to_string(), t.partition_indexes))
                    .collect()
            });
            let mut result = OffsetFetchResponseGroup::default();
            result.group_id = group.group_id.clone();
            match state.groups.fetch_offsets(state, &group.group_id, topics) {
                Ok(fetched) => result.topics = fetched.into_iter().map(topics_v8).collect(),
                Err(code) => result.error_code = code,
            }
            response.groups.push(result);
        }
        return response;
    }
    let topics = request.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.name.to_string(), t.partition_indexes))
            .collect()
    });
    match state.groups.fetch_offsets(state, &request.group_id, topics) {
        Ok(fetched) => response.topics = fetched.into_iter().map(topics_v0).collect(),
        Err(code) => {
            if version >= 2 {
                response.error_code = code;
            }
        }
    }
    response
}

fn topics_v0((topic, partitions): FetchedTopic) -> OffsetFetchResponseTopic {
    let mut t = OffsetFetchResponseTopic::default();
    t.name = topic_name(&topic);
    t.partitions = partitions
        .into_iter()
        .map(|(index, value)| {
            let mut p = OffsetFetchResponsePartition::default();
            p.partition_index = index;
            fill(
                value,
                &mut p.committed_offset,
                &mut p.committed_leader_epoch,
                &mut p.metadata,
            );
            p
        })
        .collect();
    t
}

fn topics_v8((topic, partitions): FetchedTopic) -> OffsetFetchResponseTopics {
    let mut t = OffsetFetchResponseTopics::default();
    t.name = topic_name(&topic);
    t.partitions = partitions
        .into_iter()
        .map(|(index, value)| {
            let mut p = OffsetFetchResponsePartitions::default();
            p.partition_index = index;
            fill(
                value,
                &mut p.committed_offset,
                &mut p.committed_leader_epoch,
                &mut p.metadata,
            );
            p
        })
        .collect();
    t
}

fn fill(
    value: Option<OffsetValue>,
    offset: &mut i64,
    epoch: &mut i32,
    metadata: &mut Option<StrBytes>,
) {
    match value {
        Some(v) => {
            *offset = v.offset;
            *epoch = v.leader_epoch;
            *metadata = Some(str_bytes(&v.metadata));
        }
        None => {
            *offset = -1;
            *epoch = -1;
            *metadata = Some(StrBytes::default());
        }
    }
}

pub fn list_groups(state: &BrokerState, request: ListGroupsRequest) -> ListGroupsResponse {
    let states: Vec<String> = request
        .states_filter
        .iter()
        .map(|s| s.to_string())
        .collect();
    let types: Vec<String> = request
        .types_filter
        .iter()
        .map(|s| s.to_lowercase())
        .collect();
    let mut response = ListGroupsResponse::default();
    response.groups = state
        .groups
        .list(&states)
        .into_iter()
        .filter(|g| types.is_empty() || types.iter().any(|t| t == g.group_type))
        .map(|g| {
            let mut listed = ListedGroup::default();
            listed.group_id = group_id(&g.group_id);
            listed.protocol_type = str_bytes(&g.protocol_type);
            listed.group_state = str_bytes(g.state);
            listed.group_type = str_bytes(g.group_type);
            listed
        })
        .collect();
    response
}

pub fn describe_groups(
    state: &BrokerState,
    version: i16,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let mut response = DescribeGroupsResponse::default();
    for id in request.groups {
        let description = state.groups.describe(state, &id);
        let mut group = DescribedGroup::default();
        group.group_id = id.clone();
        // Before v6 an unknown group is described as Dead with no error, as Kafka does.
        group.error_code =
            if description.error_code == ResponseError::GroupIdNotFound.code() && version < 6 {
                0
            } else {
                description.error_code
            };
        group.group_state = str_bytes(description.state);
        group.protocol_type = str_bytes(&description.protocol_type);
        group.protocol_data = str_bytes(&description.protocol_name);
        group.members = description
            .members
            .into_iter()
            .map(|m| {
                let mut member = DescribedGroupMember::default();
                member.member_id = str_bytes(&m.member_id);
                if version >= 4 {
                    member.group_instance_id = m.group_instance_id.as_deref().map(str_bytes);
                }
                member.client_id = str_bytes(&m.client_id);
                member.client_host = str_bytes(&m.client_host);
                member.member_metadata = m.metadata;
                member.member_assignment = m.assignment;
                member
            })
            .collect();
        response.groups.push(group);
    }
    response
}

pub fn delete_groups(state: &BrokerState, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut response = DeleteGroupsResponse::default();
    for id in request.groups_names {
        let mut result = DeletableGroupResult::default();
        result.error_code = state.groups.delete_group(state, &id);
        result.group_id = id;
        response.results.push(result);
    }
    response
}

pub fn offset_delete(state: &BrokerState, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let partitions: Vec<(String, i32)> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.to_string(), p.partition_index))
        })
        .collect();
    let mut response = OffsetDeleteResponse::default();
    match state
        .groups
        .delete_offsets(state, &request.group_id, &partitions)
    {
        Err(code) => response.error_code = code,
        Ok(codes) => {
            let mut codes = codes.into_iter();
            for topic in request.topics {
                let mut t = OffsetDeleteResponseTopic::default();
                t.name = topic.name.clone();
                for p in topic.partitions {
                    let mut partition = OffsetDeleteResponsePartition::default();
                    partition.partition_index = p.partition_index;
                    partition.error_code = codes.next().unwrap_or(0);
                    t.partitions.push(partition);
                }
                response.topics.push(t);
            }
        }
    }
    response
}

pub fn consumer_group_heartbeat(
    state: &BrokerState,
    client_id: &str,
    client_host: &str,
    request: kafka_protocol::messages::ConsumerGroupHeartbeatRequest,
) -> kafka_protocol::messages::ConsumerGroupHeartbeatResponse {
    use crate::group::consumer::HeartbeatRequest;
    use kafka_protocol::messages::consumer_group_heartbeat_response::{
        Assignment, TopicPartitions,
    };
    let image = state.image();
    let owned = request.topic_partitions.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.topic_id, *p)))
            .collect()
    });
    let heartbeat = HeartbeatRequest {
        member_id: request.member_id.to_string(),
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.as_ref().map(|s| s.to_string()),
        rack_id: request.rack_id.as_ref().map(|s| s.to_string()),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        subscribed_topic_names: request
            .subscribed_topic_names
            .as_ref()
            .map(|names| names.iter().map(|n| n.to_string()).collect()),
        subscribed_topic_regex: request
            .subscribed_topic_regex
            .as_ref()
            .map(|s| s.to_string()),
        server_assignor: request.server_assignor.as_ref().map(|s| s.to_string()),
        owned,
        client_id: client_id.to_string(),
        client_host: client_host.to_string(),
    };
    let mut response = kafka_protocol::messages::ConsumerGroupHeartbeatResponse::default();
    response.heartbeat_interval_ms = state.groups.consumer_heartbeat_interval_ms();
    match state
        .groups
        .consumer_heartbeat(state, &request.group_id, heartbeat)
    {
        Err((code, message)) => {
            response.error_code = code;
            response.error_message = Some(str_bytes(&message));
            response.member_epoch = -1;
        }
        Ok(outcome) => {
            response.member_id = Some(str_bytes(&outcome.member_id));
            response.member_epoch = outcome.member_epoch;
            response.assignment = outcome.assignment.map(|partitions| {
                let mut by_topic: std::collections::BTreeMap<uuid::Uuid, Vec<i32>> =
                    Default::default();
                for (topic_id, partition) in partitions {
                    if image.topic_by_id(&topic_id).is_some() {
                        by_topic.entry(topic_id).or_default().push(partition);
                    }
                }
                let mut assignment = Assignment::default();
                assignment.topic_partitions = by_topic
                    .into_iter()
                    .map(|(topic_id, partitions)| {
                        let mut tp = TopicPartitions::default();
                        tp.topic_id = topic_id;
                        tp.partitions = partitions;
                        tp
                    })
                    .collect();
                assignment
            });
        }
    }
    response
}

pub fn consumer_group_describe(
    state: &BrokerState,
    request: kafka_protocol::messages::ConsumerGroupDescribeRequest,
) -> kafka_protocol::messages::ConsumerGroupDescribeResponse {
    use kafka_protocol::messages::consumer_group_describe_response::{
        Assignment, DescribedGroup, Member, TopicPartitions,
    };
    let image = state.image();
    let to_assignment = |partitions: &std::collections::BTreeSet<(uuid::Uuid, i32)>| {
        let mut by_topic: std::collections::BTreeMap<uuid::Uuid, Vec<i32>> = Default::default();
        for (topic_id, partition) in partitions {
            by_topic.entry(*topic_id).or_default().push(*partition);
        }
        let mut assignment = Assignment::default();
        assignment.topic_partitions = by_topic
            .into_iter()
            .filter_map(|(topic_id, partitions)| {
                let topic = image.topic_by_id(&topic_id)?;
                let mut tp = TopicPartitions::default();
                tp.topic_id = topic_id;
                tp.topic_name = topic_name(&topic.name);
                tp.partitions = partitions;
                Some(tp)
            })
            .collect();
        assignment
    };
    let mut response = kafka_protocol::messages::ConsumerGroupDescribeResponse::default();
    for id in request.group_ids {
        let mut group = DescribedGroup::default();
        group.group_id = id.clone();
        match state.groups.describe_consumer_group(state, &id) {
            Err(code) => {
                group.error_code = code;
                group.error_message = Some(str_bytes(&format!(
                    "group {} is not a consumer group",
                    id.as_str()
                )));
            }
            Ok(consumer) => {
                group.group_state = str_bytes(&consumer.state_name().to_lowercase());
                group.group_epoch = consumer.group_epoch;
                group.assignment_epoch = consumer.assignment_epoch;
                group.assignor_name = str_bytes(if consumer.assignor.is_empty() {
                    "uniform"
                } else {
                    &consumer.assignor
                });
                group.members = consumer
                    .members
                    .values()
                    .map(|m| {
                        let mut member = Member::default();
                        member.member_id = str_bytes(&m.member_id);
                        member.instance_id = m.instance_id.as_deref().map(str_bytes);
                        member.rack_id = m.rack_id.as_deref().map(str_bytes);
                        member.member_epoch = m.member_epoch;
                        member.client_id = str_bytes(&m.client_id);
                        member.client_host = str_bytes(&m.client_host);
                        member.subscribed_topic_names = m
                            .subscribed_topic_names
                            .iter()
                            .map(|n| topic_name(n))
                            .collect();
                        member.subscribed_topic_regex =
                            m.subscribed_topic_regex.as_deref().map(str_bytes);
                        member.assignment = to_assignment(&m.assigned);
                        member.target_assignment = to_assignment(
                            &consumer
                                .target
                                .get(&m.member_id)
                                .cloned()
                                .unwrap_or_default(),
                        );
                        member
                    })
                    .collect();
            }
        }
        response.groups.push(group);
    }
    response
}
