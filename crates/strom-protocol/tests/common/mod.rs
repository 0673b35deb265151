//! Builders of valid requests for every API and version with a schema (accepted by the broker or
//! not yet), with non-empty arrays, strings and bytes at every level and unknown tagged fields in
//! every struct of flexible versions.

#![allow(dead_code)]

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use strom_protocol::versions::SCHEMA_VERSIONS;
use uuid::Uuid;

pub const CORRELATION_ID: i32 = 0x0102_0304;

/// Every (api key, version) with a request schema ([`SCHEMA_VERSIONS`], a superset of what the
/// broker accepts).
pub fn all_versions() -> impl Iterator<Item = (ApiKey, i16)> {
    SCHEMA_VERSIONS
        .iter()
        .flat_map(|&(key, min, max)| (min..=max).map(move |version| (key, version)))
}

fn s(text: &'static str) -> StrBytes {
    StrBytes::from_static_str(text)
}

fn topic(text: &'static str) -> TopicName {
    TopicName(s(text))
}

fn group(text: &'static str) -> GroupId {
    GroupId(s(text))
}

fn transactional(text: &'static str) -> TransactionalId {
    TransactionalId(s(text))
}

macro_rules! mk {
    ($ty:ident { $($field:ident : $value:expr),* $(,)? }) => {{
        let mut value = $ty::default();
        $(value.$field = $value;)*
        value
    }};
}

const UUID: Uuid = Uuid::from_u128(0x0011_2233_4455_6677_8899_aabb_ccdd_eeff);

/// Unknown tagged fields (tags no schema knows) for flexible versions.
fn tags(flexible: bool) -> BTreeMap<i32, Bytes> {
    let mut tags = BTreeMap::new();
    if flexible {
        tags.insert(90, Bytes::from_static(b"x"));
        tags.insert(1000, Bytes::from_static(&[0xff; 3]));
    }
    tags
}

/// Whether this version of the API uses the flexible encoding (header v2 iff flexible body).
pub fn is_flexible(api_key: ApiKey, version: i16) -> bool {
    api_key.request_header_version(version) >= 2
}

/// A request of this API and version with non-empty arrays and strings at every level.
pub fn build(api_key: ApiKey, v: i16) -> RequestKind {
    let t = || tags(is_flexible(api_key, v));
    match api_key {
        ApiKey::ApiVersions => RequestKind::ApiVersions(mk!(ApiVersionsRequest {
            client_software_name: if v >= 3 { s("strom-test") } else { s("") },
            client_software_version: if v >= 3 { s("1.0") } else { s("") },
            unknown_tagged_fields: t(),
        })),
        ApiKey::Metadata => {
            use metadata_request::*;
            let topic = |name| {
                mk!(MetadataRequestTopic {
                    topic_id: if v >= 10 { UUID } else { Uuid::nil() },
                    name: Some(topic(name)),
                    unknown_tagged_fields: t(),
                })
            };
            RequestKind::Metadata(mk!(MetadataRequest {
                topics: Some(vec![topic("a"), topic("bb")]),
                allow_auto_topic_creation: v < 4,
                include_cluster_authorized_operations: (8..=10).contains(&v),
                include_topic_authorized_operations: v >= 8,
                unknown_tagged_fields: t(),
            }))
        }
        ApiKey::CreateTopics => {
            use create_topics_request::*;
            let creatable = |name| {
                mk!(CreatableTopic {
                    name: topic(name),
                    num_partitions: -1,
                    replication_factor: -1,
                    assignments: vec![mk!(CreatableReplicaAssignment {
                        partition_index: 0,
                        broker_ids: vec![BrokerId(1), BrokerId(2)],
                        unknown_tagged_fields: t(),
                    })],
                    configs: vec![mk!(CreatableTopicConfig {
                        name: s("cleanup.policy"),
                        value: Some(s("compact")),
                        unknown_tagged_fields: t(),
                    })],
                    unknown_tagged_fields: t(),
                })
            };
            RequestKind::CreateTopics(mk!(CreateTopicsRequest {
                topics: vec![creatable("a"), creatable("bb")],
                timeout_ms: 30_000,
                validate_only: true,
                unknown_tagged_fields: t(),
            }))
        }
        ApiKey::DeleteTopics => {
            use delete_topics_request::*;
            let (topics, topic_names) = if v >= 6 {
                let state = mk!(DeleteTopicState {
                    name: Some(topic("a")),
                    topic_id: UUID,
                    unknown_tagged_fields: t(),
                });
                (vec![state.clone(), state], vec![])
            } else {
                (vec![], vec![topic("a"), topic("bb")])
            };
            RequestKind::DeleteTopics(mk!(DeleteTopicsRequest {
                topics: topics,
                topic_names: topic_names,
                timeout_ms: 30_000,
                unknown_tagged_fields: t(),
            }))
        }
        ApiKey::CreatePartitions => {
            use create_partitions_request::*;
            let partitions_topic = |name| {
                mk!(CreatePartitionsTopic {
                    name: topic(name),
                    count: 3,
                    assignments: Some(vec![mk!(CreatePartitionsAssignment {
                        broker_ids: vec![BrokerId(1), BrokerId(2)],
                        unknown_tagged_fields: t(),
                    })]),
                    unknown_tagged_fields: t(),
                })
            };
            RequestKind::CreatePartitions(mk!(CreatePartitionsRequest {
                topics: vec![partitions_topic("a"), partitions_topic("bb")],
                timeout_ms: 30_000,
                validate_only: false,
                unknown_tagged_fields: t(),
            }))
        }
        ApiKey::Produce => {
            use produce_request::*;
            let data = |name| {
                mk!(TopicProduceData {
                    name: topic(name),
                    topic_id: Uuid::nil(),
                    partition_data: vec![mk!(PartitionProduceData {
                        index: 0,
                        records: Some(Bytes::from_static(b"not really a record batch")),
                        unknown_tagged_fields: t(),
                    })],
                    unknown_tagged_fields: t(),
                })
            };
            RequestKind::Produce(mk!(ProduceRequest {
                transactional_id: Some(TransactionalId(s("tx"))),
                acks: -1,
                timeout_ms: 30_000,
                topic_data: vec![data("a"), data("bb")],
                unknown_tagged_fields: t(),
            }))
        }
        ApiKey::Fetch => {
            use fetch_request::*;
            let partition = mk!(FetchPartition {
                partition: 0,
                current_leader_epoch: if v >= 9 { 5 } else { -1 },
                fetch_offset: 42,
                last_fetched_epoch: if v >= 12 { 4 } else { -1 },
                log_start_offset: if v >= 5 { 0 } else { -1 },
                partition_max_bytes: 1 << 20,
                replica_directory_id: Uuid::nil(),
                high_watermark: i64::MAX,
                unknown_tagged_fields: t(),
            });
            let fetch_topic = |name| {
                mk!(FetchTopic {
                    topic: topic(name),
                    topic_id: Uuid::nil(),
                    partitions: vec![partition.clone(), partition.clone()],
                    unknown_tagged_fields: t(),
                })
            };
            let forgotten = mk!(ForgottenTopic {
                topic: topic("old"),
                topic_id: Uuid::nil(),
                partitions: vec![1, 2],
                unknown_tagged_fields: t(),
            });
            RequestKind::Fetch(mk!(FetchRequest {
                cluster_id: (v >= 12).then(|| s("cluster")),
                replica_id: BrokerId(-1),
                replica_state: ReplicaState::default(),
                max_wait_ms: 500,
                min_bytes: 1,
                max_bytes: 50 << 20,
                isolation_level: 1,
                session_id: if v >= 7 { 1 } else { 0 },
                session_epoch: if v >= 7 { 2 } else { -1 },
                topics: vec![fetch_topic("a"), fetch_topic("bb")],
                forgotten_topics_data: if v >= 7 { vec![forgotten] } else { vec![] },
                rack_id: if v >= 11 { s("rack") } else { s("") },
                unknown_tagged_fields: t(),
            }))
        }
        ApiKey::ListOffsets => {
            use list_offsets_request::*;
            let offsets_topic = |name| {
                mk!(ListOffsetsTopic {
                    name: topic(name),
                    partitions: vec![mk!(ListOffsetsPartition {
                        partition_index: 0,
                        current_leader_epoch: if v >= 4 { 3 } else { -1 },
                        timestamp: -1,
                        unknown_tagged_fields: t(),
                    })],
                    unknown_tagged_fields: t(),
                })
            };
            RequestKind::ListOffsets(mk!(ListOffsetsRequest {
                replica_id: BrokerId(-1),
                isolation_level: if v >= 2 { 1 } else { 0 },
                topics: vec![offsets_topic("a"), offsets_topic("bb")],
                timeout_ms: 0,
                unknown_tagged_fields: t(),
            }))
        }
        ApiKey::DescribeConfigs => {
            use describe_configs_request::*;
            let resource = mk!(DescribeConfigsResource {
                resource_type: 2,
                resource_name: s("a"),
                configuration_keys: Some(vec![s("retention.ms"), s("segment.bytes")]),
                unknown_tagged_fields: t(),
            });
            RequestKind::DescribeConfigs(mk!(DescribeConfigsRequest {
                resources: vec![resource.clone(), resource],
                include_synonyms: true,
                include_documentation: v >= 3,
                unknown_tagged_fields: t(),
            }))
        }
        ApiKey::AlterConfigs => {
            use alter_configs_request::*;
            let resource = mk!(AlterConfigsResource {
                resource_type: 2,
                resource_name: s("a"),
                configs: vec![mk!(AlterableConfig {
                    name: s("retention.ms"),
                    value: Some(s("1000")),
                    unknown_tagged_fields: t(),
                })],
                unknown_tagged_fields: t(),
            });
            RequestKind::AlterConfigs(mk!(AlterConfigsRequest {
                resources: vec![resource.clone(), resource],
                validate_only: false,
                unknown_tagged_fields: t(),
            }))
        }
        ApiKey::IncrementalAlterConfigs => {
            use incremental_alter_configs_request::*;
            let resource = mk!(AlterConfigsResource {
                resource_type: 2,
                resource_name: s("a"),
                configs: vec![mk!(AlterableConfig {
                    name: s("retention.ms"),
                    config_operation: 0,
                    value: Some(s("1000")),
                    unknown_tagged_fields: t(),
                })],
                unknown_tagged_fields: t(),
            });
            RequestKind::IncrementalAlterConfigs(mk!(IncrementalAlterConfigsRequest {
                resources: vec![resource.clone(), resource],
                validate_only: false,
                unknown_tagged_fields: t(),
            }))
        }
        ApiKey::DeleteRecords => {
            use delete_records_request::*;
            let records_topic = |name| {
                mk!(DeleteRecordsTopic {
                    name: topic(name),
                    partitions: vec![mk!(DeleteRecordsPartition {
                        partition_index: 0,
                        offset: 10,
                        unknown_tagged_fields: t(),
                    })],
                    unknown_tagged_fields: t(),
                })
            };
            RequestKind::DeleteRecords(mk!(DeleteRecordsRequest {
                topics: vec![records_topic("a"), records_topic("bb")],
                timeout_ms: 30_000,
                unknown_tagged_fields: t(),
            }))
        }
        ApiKey::DescribeCluster => RequestKind::DescribeCluster(mk!(DescribeClusterRequest {
            include_cluster_authorized_operations: true,
            endpoint_type: if v >= 1 { 2 } else { 1 },
            include_fenced_brokers: false,
            unknown_tagged_fields: t(),
        })),
        ApiKey::DescribeLogDirs => {
            use describe_log_dirs_request::*;
            let dir_topic = |name| {
                mk!(DescribableLogDirTopic {
                    topic: topic(name),
                    partitions: vec![0, 1],
                    unknown_tagged_fields: t(),
                })
            };
            RequestKind::DescribeLogDirs(mk!(DescribeLogDirsRequest {
                topics: Some(vec![dir_topic("a"), dir_topic("bb")]),
                unknown_tagged_fields: t(),
            }))
        }
        ApiKey::OffsetForLeaderEpoch => {
            use offset_for_leader_epoch_request::*;
            let epoch_topic = |name| {
                mk!(OffsetForLeaderTopic {
                    topic: topic(name),
                    partitions: vec![mk!(OffsetForLeaderPartition {
                        partition: 0,
                        current_leader_epoch: 3,
                        leader_epoch: 2,
                        unknown_tagged_fields: t(),
                    })],
                    unknown_tagged_fields: t(),
                })
            };
            RequestKind::OffsetForLeaderEpoch(mk!(OffsetForLeaderEpochRequest {
                replica_id: if v >= 3 { BrokerId(-1) } else { BrokerId(-2) },
                topics: vec![epoch_topic("a"), epoch_topic("bb")],
                unknown_tagged_fields: t(),
            }))
        }
        ApiKey::FindCoordinator => RequestKind::FindCoordinator(mk!(FindCoordinatorRequest {
            key: if v <= 3 { s("group") } else { s("") },
            key_type: if v >= 1 { 1 } else { 0 },
            coordinator_keys: if v >= 4 {
                vec![s("group"), s("tx")]
            } else {
                vec![]
            },
            unknown_tagged_fields: t(),
        })),
        ApiKey::JoinGroup => {
            use join_group_request::*;
            let protocol = |name| {
                mk!(JoinGroupRequestProtocol {
                    name: s(name),
                    metadata: Bytes::from_static(b"\x00\x03subscription"),
                    unknown_tagged_fields: t(),
                })
            };
            RequestKind::JoinGroup(mk!(JoinGroupRequest {
                group_id: group("group"),
                session_timeout_ms: 45_000,
                rebalance_timeout_ms: if v >= 1 { 300_000 } else { -1 },
                member_id: s("member-1"),
                group_instance_id: (v >= 5).then(|| s("instance")),
                protocol_type: s("consumer"),
                protocols: vec![protocol("range"), protocol("cooperative-sticky")],
                reason: (v >= 8).then(|| s("rejoin")),
                unknown_tagged_fields: t(),
            }))
        }
        ApiKey::SyncGroup => {
            use sync_group_request::*;
            let assignment = |member| {
                mk!(SyncGroupRequestAssignment {
                    member_id: s(member),
                    assignment: Bytes::from_static(b"\x00\x03assignment"),
                    unknown_tagged_fields: t(),
                })
            };
            RequestKind::SyncGroup(mk!(SyncGroupRequest {
                group_id: group("group"),
                generation_id: 3,
                member_id: s("member-1"),
                group_instance_id: (v >= 3).then(|| s("instance")),
                protocol_type: (v >= 5).then(|| s("consumer")),
                protocol_name: (v >= 5).then(|| s("range")),
                assignments: vec![assignment("member-1"), assignment("member-2")],
                unknown_tagged_fields: t(),
            }))
        }
        ApiKey::Heartbeat => RequestKind::Heartbeat(mk!(HeartbeatRequest {
            group_id: group("group"),
            generation_id: 3,
            member_id: s("member-1"),
            group_instance_id: (v >= 3).then(|| s("instance")),
            unknown_tagged_fields: t(),
        })),
        ApiKey::LeaveGroup => {
            use leave_group_request::*;
            let member = |id| {
                mk!(MemberIdentity {
                    member_id: s(id),
                    group_instance_id: Some(s("instance")),
                    reason: (v >= 5).then(|| s("bye")),
                    unknown_tagged_fields: t(),
                })
            };
            RequestKind::LeaveGroup(mk!(LeaveGroupRequest {
                group_id: group("group"),
                member_id: if v <= 2 { s("member-1") } else { s("") },
                members: if v >= 3 {
                    vec![member("member-1"), member("member-2")]
                } else {
                    vec![]
                },
                unknown_tagged_fields: t(),
            }))
        }
        ApiKey::OffsetCommit => {
            use offset_commit_request::*;
            let partition = mk!(OffsetCommitRequestPartition {
                partition_index: 0,
                committed_offset: 42,
                committed_leader_epoch: if v >= 6 { 3 } else { -1 },
                committed_metadata: Some(s("meta")),
                unknown_tagged_fields: t(),
            });
            let commit_topic = |name| {
                mk!(OffsetCommitRequestTopic {
                    name: topic(name),
                    topic_id: Uuid::nil(),
                    partitions: vec![partition.clone(), partition.clone()],
                    unknown_tagged_fields: t(),
                })
            };
            RequestKind::OffsetCommit(mk!(OffsetCommitRequest {
                group_id: group("group"),
                generation_id_or_member_epoch: 5,
                member_id: s("member-1"),
                group_instance_id: (v >= 7).then(|| s("instance")),
                retention_time_ms: if v <= 4 { 86_400_000 } else { -1 },
                topics: vec![commit_topic("a"), commit_topic("bb")],
                unknown_tagged_fields: t(),
            }))
        }
        ApiKey::OffsetFetch => {
            use offset_fetch_request::*;
            let fetch_topic = |name| {
                mk!(OffsetFetchRequestTopic {
                    name: topic(name),
                    partition_indexes: vec![0, 1],
                    unknown_tagged_fields: t(),
                })
            };
            let group_topic = |name| {
                mk!(OffsetFetchRequestTopics {
                    name: topic(name),
                    topic_id: Uuid::nil(),
                    partition_indexes: vec![0, 1],
                    unknown_tagged_fields: t(),
                })
            };
            let fetch_group = |id| {
                mk!(OffsetFetchRequestGroup {
                    group_id: group(id),
                    member_id: (v >= 9).then(|| s("member-1")),
                    member_epoch: if v >= 9 { 7 } else { -1 },
                    topics: Some(vec![group_topic("a"), group_topic("bb")]),
                    unknown_tagged_fields: t(),
                })
            };
            let (group_id, topics, groups) = if v <= 7 {
                let topics = vec![fetch_topic("a"), fetch_topic("bb")];
                (group("group"), Some(topics), vec![])
            } else {
                let groups = vec![fetch_group("group-1"), fetch_group("group-2")];
                (group(""), Some(vec![]), groups)
            };
            RequestKind::OffsetFetch(mk!(OffsetFetchRequest {
                group_id: group_id,
                topics: topics,
                groups: groups,
                require_stable: v >= 7,
                unknown_tagged_fields: t(),
            }))
        }
        ApiKey::ListGroups => RequestKind::ListGroups(mk!(ListGroupsRequest {
            states_filter: if v >= 4 {
                vec![s("Stable"), s("Empty")]
            } else {
                vec![]
            },
            types_filter: if v >= 5 {
                vec![s("classic"), s("consumer")]
            } else {
                vec![]
            },
            unknown_tagged_fields: t(),
        })),
        ApiKey::DescribeGroups => RequestKind::DescribeGroups(mk!(DescribeGroupsRequest {
            groups: vec![group("group-1"), group("group-2")],
            include_authorized_operations: v >= 3,
            unknown_tagged_fields: t(),
        })),
        ApiKey::DeleteGroups => RequestKind::DeleteGroups(mk!(DeleteGroupsRequest {
            groups_names: vec![group("group-1"), group("group-2")],
            unknown_tagged_fields: t(),
        })),
        ApiKey::OffsetDelete => {
            use offset_delete_request::*;
            let partition = |index| {
                mk!(OffsetDeleteRequestPartition {
                    partition_index: index
                })
            };
            let delete_topic = |name| {
                mk!(OffsetDeleteRequestTopic {
                    name: topic(name),
                    partitions: vec![partition(0), partition(1)],
                })
            };
            RequestKind::OffsetDelete(mk!(OffsetDeleteRequest {
                group_id: group("group"),
                topics: vec![delete_topic("a"), delete_topic("bb")],
            }))
        }
        ApiKey::ConsumerGroupHeartbeat => {
            use consumer_group_heartbeat_request::*;
            let assigned = mk!(TopicPartitions {
                topic_id: UUID,
                partitions: vec![0, 1],
                unknown_tagged_fields: t(),
            });
            RequestKind::ConsumerGroupHeartbeat(mk!(ConsumerGroupHeartbeatRequest {
                group_id: group("group"),
                member_id: s("member-1"),
                member_epoch: 4,
                instance_id: Some(s("instance")),
                rack_id: Some(s("rack")),
                rebalance_timeout_ms: 300_000,
                subscribed_topic_names: Some(vec![topic("a"), topic("bb")]),
                subscribed_topic_regex: (v >= 1).then(|| s("^t.*")),
                server_assignor: Some(s("uniform")),
                topic_partitions: Some(vec![assigned.clone(), assigned]),
                unknown_tagged_fields: t(),
            }))
        }
        ApiKey::ConsumerGroupDescribe => {
            RequestKind::ConsumerGroupDescribe(mk!(ConsumerGroupDescribeRequest {
                group_ids: vec![group("group-1"), group("group-2")],
                include_authorized_operations: true,
                unknown_tagged_fields: t(),
            }))
        }
        ApiKey::InitProducerId => RequestKind::InitProducerId(mk!(InitProducerIdRequest {
            transactional_id: Some(transactional("tx")),
            transaction_timeout_ms: 60_000,
            producer_id: ProducerId(if v >= 3 { 1000 } else { -1 }),
            producer_epoch: if v >= 3 { 2 } else { -1 },
            enable_2_pc: false,
            keep_prepared_txn: false,
            unknown_tagged_fields: t(),
        })),
        ApiKey::AddPartitionsToTxn => {
            use add_partitions_to_txn_request::*;
            let txn_topic = |name| {
                mk!(AddPartitionsToTxnTopic {
                    name: topic(name),
                    partitions: vec![0, 1],
                    unknown_tagged_fields: t(),
                })
            };
            let transaction = |id| {
                mk!(AddPartitionsToTxnTransaction {
                    transactional_id: transactional(id),
                    producer_id: ProducerId(1000),
                    producer_epoch: 2,
                    verify_only: true,
                    topics: vec![txn_topic("a"), txn_topic("bb")],
                    unknown_tagged_fields: t(),
                })
            };
            let mut request = mk!(AddPartitionsToTxnRequest {
                unknown_tagged_fields: t(),
            });
            if v >= 4 {
                request.transactions = vec![transaction("tx-1"), transaction("tx-2")];
            } else {
                request.v3_and_below_transactional_id = transactional("tx");
                request.v3_and_below_producer_id = ProducerId(1000);
                request.v3_and_below_producer_epoch = 2;
                request.v3_and_below_topics = vec![txn_topic("a"), txn_topic("bb")];
            }
            RequestKind::AddPartitionsToTxn(request)
        }
        ApiKey::AddOffsetsToTxn => RequestKind::AddOffsetsToTxn(mk!(AddOffsetsToTxnRequest {
            transactional_id: transactional("tx"),
            producer_id: ProducerId(1000),
            producer_epoch: 2,
            group_id: group("group"),
            unknown_tagged_fields: t(),
        })),
        ApiKey::EndTxn => RequestKind::EndTxn(mk!(EndTxnRequest {
            transactional_id: transactional("tx"),
            producer_id: ProducerId(1000),
            producer_epoch: 2,
            committed: true,
            unknown_tagged_fields: t(),
        })),
        ApiKey::TxnOffsetCommit => {
            use txn_offset_commit_request::*;
            let partition = mk!(TxnOffsetCommitRequestPartition {
                partition_index: 0,
                committed_offset: 42,
                committed_leader_epoch: if v >= 2 { 3 } else { -1 },
                committed_metadata: Some(s("meta")),
                unknown_tagged_fields: t(),
            });
            let commit_topic = |name| {
                mk!(TxnOffsetCommitRequestTopic {
                    name: topic(name),
                    partitions: vec![partition.clone(), partition.clone()],
                    unknown_tagged_fields: t(),
                })
            };
            RequestKind::TxnOffsetCommit(mk!(TxnOffsetCommitRequest {
                transactional_id: transactional("tx"),
                group_id: group("group"),
                producer_id: ProducerId(1000),
                producer_epoch: 2,
                generation_id: if v >= 3 { 5 } else { -1 },
                member_id: if v >= 3 { s("member-1") } else { s("") },
                group_instance_id: (v >= 3).then(|| s("instance")),
                topics: vec![commit_topic("a"), commit_topic("bb")],
                unknown_tagged_fields: t(),
            }))
        }
        other => panic!("no builder for {other:?}: add one when adding the API"),
    }
}

/// Empties the top-level array of the request at this version, if that version has one (for
/// locating its count).
pub fn empty_top_level_array(body: &mut RequestKind, version: i16) -> bool {
    match body {
        RequestKind::Metadata(r) => r.topics = Some(vec![]),
        RequestKind::CreateTopics(r) => r.topics.clear(),
        RequestKind::DeleteTopics(r) => {
            r.topics.clear();
            r.topic_names.clear();
        }
        RequestKind::CreatePartitions(r) => r.topics.clear(),
        RequestKind::Produce(r) => r.topic_data.clear(),
        RequestKind::Fetch(r) => r.topics.clear(),
        RequestKind::ListOffsets(r) => r.topics.clear(),
        RequestKind::DescribeConfigs(r) => r.resources.clear(),
        RequestKind::AlterConfigs(r) => r.resources.clear(),
        RequestKind::IncrementalAlterConfigs(r) => r.resources.clear(),
        RequestKind::DeleteRecords(r) => r.topics.clear(),
        RequestKind::DescribeLogDirs(r) => r.topics = Some(vec![]),
        RequestKind::OffsetForLeaderEpoch(r) => r.topics.clear(),
        RequestKind::FindCoordinator(r) if version >= 4 => r.coordinator_keys.clear(),
        RequestKind::JoinGroup(r) => r.protocols.clear(),
        RequestKind::SyncGroup(r) => r.assignments.clear(),
        RequestKind::LeaveGroup(r) if version >= 3 => r.members.clear(),
        RequestKind::OffsetCommit(r) => r.topics.clear(),
        RequestKind::OffsetFetch(r) => {
            r.topics = Some(vec![]);
            r.groups.clear();
        }
        RequestKind::ListGroups(r) if version >= 4 => r.states_filter.clear(),
        RequestKind::DescribeGroups(r) => r.groups.clear(),
        RequestKind::DeleteGroups(r) => r.groups_names.clear(),
        RequestKind::OffsetDelete(r) => r.topics.clear(),
        RequestKind::ConsumerGroupHeartbeat(r) => r.subscribed_topic_names = Some(vec![]),
        RequestKind::ConsumerGroupDescribe(r) => r.group_ids.clear(),
        RequestKind::AddPartitionsToTxn(r) => {
            r.transactions.clear();
            r.v3_and_below_topics.clear();
        }
        RequestKind::TxnOffsetCommit(r) => r.topics.clear(),
        _ => return false,
    }
    true
}

/// The request header every test frame uses.
pub fn header(api_key: ApiKey, version: i16) -> RequestHeader {
    RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(CORRELATION_ID)
        .with_client_id(Some(s("strom-test")))
        .with_unknown_tagged_fields(tags(is_flexible(api_key, version)))
}

/// The encoded request header.
pub fn encode_header(api_key: ApiKey, version: i16) -> Vec<u8> {
    let mut buf = BytesMut::new();
    header(api_key, version)
        .encode(&mut buf, api_key.request_header_version(version))
        .expect("header encodes");
    buf.to_vec()
}

/// A request frame (without the size prefix): header then body, encoded by kafka-protocol.
pub fn encode_frame(api_key: ApiKey, version: i16, body: &RequestKind) -> Bytes {
    let mut buf = BytesMut::new();
    header(api_key, version)
        .encode(&mut buf, api_key.request_header_version(version))
        .expect("header encodes");
    body.encode(&mut buf, version).expect("body encodes");
    buf.freeze()
}
