//! The request schemas, one per API in [`crate::versions::SCHEMA_VERSIONS`] (a superset of the
//! APIs the broker accepts), written by hand from Kafka's message definitions and checked
//! against `kafka-protocol`'s generated decoders (see the tests in `tests/bounded_schemas.rs`:
//! every version of every schema round-trips through them, accepted by the broker or not yet).
//!
//! Versions in field ranges follow Kafka's definitions even beyond the versions a schema covers
//! today, so raising a version in [`crate::versions::SCHEMA_VERSIONS`] usually means only
//! raising `versions` here and rerunning the tests.

use kafka_protocol::messages::ApiKey;

use super::schema::{
    between, field, since, until, Field, MessageSchema, StructSchema, TaggedField, Ty, Versions,
    ALL, NONE,
};

/// The schema of the request with this key, if there is one (the broker accepts only the APIs in
/// [`crate::versions::SUPPORTED_APIS`]).
pub fn message_schema(api_key: ApiKey) -> Option<&'static MessageSchema> {
    let schema = match api_key {
        ApiKey::Produce => &PRODUCE,
        ApiKey::Fetch => &FETCH,
        ApiKey::ListOffsets => &LIST_OFFSETS,
        ApiKey::Metadata => &METADATA,
        ApiKey::ApiVersions => &API_VERSIONS,
        ApiKey::CreateTopics => &CREATE_TOPICS,
        ApiKey::DeleteTopics => &DELETE_TOPICS,
        ApiKey::DeleteRecords => &DELETE_RECORDS,
        ApiKey::OffsetForLeaderEpoch => &OFFSET_FOR_LEADER_EPOCH,
        ApiKey::DescribeConfigs => &DESCRIBE_CONFIGS,
        ApiKey::AlterConfigs => &ALTER_CONFIGS,
        ApiKey::DescribeLogDirs => &DESCRIBE_LOG_DIRS,
        ApiKey::CreatePartitions => &CREATE_PARTITIONS,
        ApiKey::IncrementalAlterConfigs => &INCREMENTAL_ALTER_CONFIGS,
        ApiKey::DescribeCluster => &DESCRIBE_CLUSTER,
        ApiKey::FindCoordinator => &FIND_COORDINATOR,
        ApiKey::JoinGroup => &JOIN_GROUP,
        ApiKey::SyncGroup => &SYNC_GROUP,
        ApiKey::Heartbeat => &HEARTBEAT,
        ApiKey::LeaveGroup => &LEAVE_GROUP,
        ApiKey::OffsetCommit => &OFFSET_COMMIT,
        ApiKey::OffsetFetch => &OFFSET_FETCH,
        ApiKey::ListGroups => &LIST_GROUPS,
        ApiKey::DescribeGroups => &DESCRIBE_GROUPS,
        ApiKey::DeleteGroups => &DELETE_GROUPS,
        ApiKey::OffsetDelete => &OFFSET_DELETE,
        ApiKey::ConsumerGroupHeartbeat => &CONSUMER_GROUP_HEARTBEAT,
        ApiKey::ConsumerGroupDescribe => &CONSUMER_GROUP_DESCRIBE,
        ApiKey::InitProducerId => &INIT_PRODUCER_ID,
        ApiKey::AddPartitionsToTxn => &ADD_PARTITIONS_TO_TXN,
        ApiKey::AddOffsetsToTxn => &ADD_OFFSETS_TO_TXN,
        ApiKey::EndTxn => &END_TXN,
        ApiKey::TxnOffsetCommit => &TXN_OFFSET_COMMIT,
        _ => return None,
    };
    Some(schema)
}

const fn structure(name: &'static str, fields: &'static [Field]) -> StructSchema {
    StructSchema {
        name,
        fields,
        tagged: &[],
    }
}

const fn message(
    api_key: ApiKey,
    versions: Versions,
    flexible: Versions,
    body: StructSchema,
) -> MessageSchema {
    MessageSchema {
        api_key,
        versions,
        flexible,
        body,
    }
}

/// The request header, walked at the header version (1 or 2; header 0 is only used by
/// ControlledShutdown v0). `client_id` keeps its int16 length in header v2; v2 adds a
/// tagged-field section (no tags are known).
pub const REQUEST_HEADER: StructSchema = structure(
    "RequestHeader",
    &[
        field("request_api_key", ALL, Ty::Int16),
        field("request_api_version", ALL, Ty::Int16),
        field("correlation_id", ALL, Ty::Int32),
        field("client_id", since(1), Ty::LegacyString),
    ],
);

/// The header versions [`REQUEST_HEADER`] describes; from 2 on they are flexible.
pub const REQUEST_HEADER_VERSIONS: Versions = between(1, 2);

// ---------------------------------------------------------------------------------------------
// ApiVersions
const API_VERSIONS: MessageSchema = message(
    ApiKey::ApiVersions,
    between(0, 4),
    since(3),
    structure(
        "ApiVersionsRequest",
        &[
            field("client_software_name", since(3), Ty::String),
            field("client_software_version", since(3), Ty::String),
        ],
    ),
);

// ---------------------------------------------------------------------------------------------
// Metadata
const METADATA_TOPIC: StructSchema = structure(
    "MetadataRequestTopic",
    &[
        field("topic_id", since(10), Ty::Uuid),
        field("name", ALL, Ty::String),
    ],
);
const METADATA: MessageSchema = message(
    ApiKey::Metadata,
    between(0, 12),
    since(9),
    structure(
        "MetadataRequest",
        &[
            field("topics", ALL, Ty::StructArray(&METADATA_TOPIC)),
            field("allow_auto_topic_creation", since(4), Ty::Bool),
            field(
                "include_cluster_authorized_operations",
                between(8, 10),
                Ty::Bool,
            ),
            field("include_topic_authorized_operations", since(8), Ty::Bool),
        ],
    ),
);

// ---------------------------------------------------------------------------------------------
// CreateTopics
const CREATABLE_REPLICA_ASSIGNMENT: StructSchema = structure(
    "CreatableReplicaAssignment",
    &[
        field("partition_index", ALL, Ty::Int32),
        field("broker_ids", ALL, Ty::Array(&Ty::Int32)),
    ],
);
const CREATABLE_TOPIC_CONFIG: StructSchema = structure(
    "CreatableTopicConfig",
    &[
        field("name", ALL, Ty::String),
        field("value", ALL, Ty::String),
    ],
);
const CREATABLE_TOPIC: StructSchema = structure(
    "CreatableTopic",
    &[
        field("name", ALL, Ty::String),
        field("num_partitions", ALL, Ty::Int32),
        field("replication_factor", ALL, Ty::Int16),
        field(
            "assignments",
            ALL,
            Ty::StructArray(&CREATABLE_REPLICA_ASSIGNMENT),
        ),
        field("configs", ALL, Ty::StructArray(&CREATABLE_TOPIC_CONFIG)),
    ],
);
const CREATE_TOPICS: MessageSchema = message(
    ApiKey::CreateTopics,
    between(2, 7),
    since(5),
    structure(
        "CreateTopicsRequest",
        &[
            field("topics", ALL, Ty::StructArray(&CREATABLE_TOPIC)),
            field("timeout_ms", ALL, Ty::Int32),
            field("validate_only", since(1), Ty::Bool),
        ],
    ),
);

// ---------------------------------------------------------------------------------------------
// DeleteTopics
const DELETE_TOPIC_STATE: StructSchema = structure(
    "DeleteTopicState",
    &[
        field("name", ALL, Ty::String),
        field("topic_id", ALL, Ty::Uuid),
    ],
);
const DELETE_TOPICS: MessageSchema = message(
    ApiKey::DeleteTopics,
    between(1, 6),
    since(4),
    structure(
        "DeleteTopicsRequest",
        &[
            field("topics", since(6), Ty::StructArray(&DELETE_TOPIC_STATE)),
            field("topic_names", until(5), Ty::Array(&Ty::String)),
            field("timeout_ms", ALL, Ty::Int32),
        ],
    ),
);

// ---------------------------------------------------------------------------------------------
// CreatePartitions
const CREATE_PARTITIONS_ASSIGNMENT: StructSchema = structure(
    "CreatePartitionsAssignment",
    &[field("broker_ids", ALL, Ty::Array(&Ty::Int32))],
);
const CREATE_PARTITIONS_TOPIC: StructSchema = structure(
    "CreatePartitionsTopic",
    &[
        field("name", ALL, Ty::String),
        field("count", ALL, Ty::Int32),
        field(
            "assignments",
            ALL,
            Ty::StructArray(&CREATE_PARTITIONS_ASSIGNMENT),
        ),
    ],
);
const CREATE_PARTITIONS: MessageSchema = message(
    ApiKey::CreatePartitions,
    between(0, 3),
    since(2),
    structure(
        "CreatePartitionsRequest",
        &[
            field("topics", ALL, Ty::StructArray(&CREATE_PARTITIONS_TOPIC)),
            field("timeout_ms", ALL, Ty::Int32),
            field("validate_only", ALL, Ty::Bool),
        ],
    ),
);

// ---------------------------------------------------------------------------------------------
// Produce
const PARTITION_PRODUCE_DATA: StructSchema = structure(
    "PartitionProduceData",
    &[
        field("index", ALL, Ty::Int32),
        field("records", ALL, Ty::Bytes),
    ],
);
const TOPIC_PRODUCE_DATA: StructSchema = structure(
    "TopicProduceData",
    &[
        field("name", until(12), Ty::String),
        field("topic_id", since(13), Ty::Uuid),
        field(
            "partition_data",
            ALL,
            Ty::StructArray(&PARTITION_PRODUCE_DATA),
        ),
    ],
);
const PRODUCE: MessageSchema = message(
    ApiKey::Produce,
    between(3, 11),
    since(9),
    structure(
        "ProduceRequest",
        &[
            field("transactional_id", since(3), Ty::String),
            field("acks", ALL, Ty::Int16),
            field("timeout_ms", ALL, Ty::Int32),
            field("topic_data", ALL, Ty::StructArray(&TOPIC_PRODUCE_DATA)),
        ],
    ),
);

// ---------------------------------------------------------------------------------------------
// Fetch
const FETCH_PARTITION: StructSchema = StructSchema {
    name: "FetchPartition",
    fields: &[
        field("partition", ALL, Ty::Int32),
        field("current_leader_epoch", since(9), Ty::Int32),
        field("fetch_offset", ALL, Ty::Int64),
        field("last_fetched_epoch", since(12), Ty::Int32),
        field("log_start_offset", since(5), Ty::Int64),
        field("partition_max_bytes", ALL, Ty::Int32),
    ],
    tagged: &[
        TaggedField {
            tag: 0,
            field: field("replica_directory_id", since(17), Ty::Uuid),
        },
        TaggedField {
            tag: 1,
            field: field("high_watermark", since(18), Ty::Int64),
        },
    ],
};
const FETCH_TOPIC: StructSchema = structure(
    "FetchTopic",
    &[
        field("topic", until(12), Ty::String),
        field("topic_id", since(13), Ty::Uuid),
        field("partitions", ALL, Ty::StructArray(&FETCH_PARTITION)),
    ],
);
const FORGOTTEN_TOPIC: StructSchema = structure(
    "ForgottenTopic",
    &[
        field("topic", between(7, 12), Ty::String),
        field("topic_id", since(13), Ty::Uuid),
        field("partitions", since(7), Ty::Array(&Ty::Int32)),
    ],
);
const REPLICA_STATE: StructSchema = structure(
    "ReplicaState",
    &[
        field("replica_id", since(15), Ty::Int32),
        field("replica_epoch", since(15), Ty::Int64),
    ],
);
const FETCH: MessageSchema = message(
    ApiKey::Fetch,
    between(4, 12),
    since(12),
    StructSchema {
        name: "FetchRequest",
        fields: &[
            field("replica_id", until(14), Ty::Int32),
            field("max_wait_ms", ALL, Ty::Int32),
            field("min_bytes", ALL, Ty::Int32),
            field("max_bytes", since(3), Ty::Int32),
            field("isolation_level", since(4), Ty::Int8),
            field("session_id", since(7), Ty::Int32),
            field("session_epoch", since(7), Ty::Int32),
            field("topics", ALL, Ty::StructArray(&FETCH_TOPIC)),
            field(
                "forgotten_topics_data",
                since(7),
                Ty::StructArray(&FORGOTTEN_TOPIC),
            ),
            field("rack_id", since(11), Ty::String),
        ],
        tagged: &[
            TaggedField {
                tag: 0,
                field: field("cluster_id", since(12), Ty::String),
            },
            TaggedField {
                tag: 1,
                field: field("replica_state", since(15), Ty::Struct(&REPLICA_STATE)),
            },
        ],
    },
);

// ---------------------------------------------------------------------------------------------
// ListOffsets
const LIST_OFFSETS_PARTITION: StructSchema = structure(
    "ListOffsetsPartition",
    &[
        field("partition_index", ALL, Ty::Int32),
        field("current_leader_epoch", since(4), Ty::Int32),
        field("timestamp", ALL, Ty::Int64),
    ],
);
const LIST_OFFSETS_TOPIC: StructSchema = structure(
    "ListOffsetsTopic",
    &[
        field("name", ALL, Ty::String),
        field("partitions", ALL, Ty::StructArray(&LIST_OFFSETS_PARTITION)),
    ],
);
const LIST_OFFSETS: MessageSchema = message(
    ApiKey::ListOffsets,
    between(1, 8),
    since(6),
    structure(
        "ListOffsetsRequest",
        &[
            field("replica_id", ALL, Ty::Int32),
            field("isolation_level", since(2), Ty::Int8),
            field("topics", ALL, Ty::StructArray(&LIST_OFFSETS_TOPIC)),
            field("timeout_ms", since(10), Ty::Int32),
        ],
    ),
);

// ---------------------------------------------------------------------------------------------
// DescribeConfigs
const DESCRIBE_CONFIGS_RESOURCE: StructSchema = structure(
    "DescribeConfigsResource",
    &[
        field("resource_type", ALL, Ty::Int8),
        field("resource_name", ALL, Ty::String),
        field("configuration_keys", ALL, Ty::Array(&Ty::String)),
    ],
);
const DESCRIBE_CONFIGS: MessageSchema = message(
    ApiKey::DescribeConfigs,
    between(1, 4),
    since(4),
    structure(
        "DescribeConfigsRequest",
        &[
            field(
                "resources",
                ALL,
                Ty::StructArray(&DESCRIBE_CONFIGS_RESOURCE),
            ),
            field("include_synonyms", since(1), Ty::Bool),
            field("include_documentation", since(3), Ty::Bool),
        ],
    ),
);

// ---------------------------------------------------------------------------------------------
// AlterConfigs
const ALTERABLE_CONFIG: StructSchema = structure(
    "AlterableConfig",
    &[
        field("name", ALL, Ty::String),
        field("value", ALL, Ty::String),
    ],
);
const ALTER_CONFIGS_RESOURCE: StructSchema = structure(
    "AlterConfigsResource",
    &[
        field("resource_type", ALL, Ty::Int8),
        field("resource_name", ALL, Ty::String),
        field("configs", ALL, Ty::StructArray(&ALTERABLE_CONFIG)),
    ],
);
const ALTER_CONFIGS: MessageSchema = message(
    ApiKey::AlterConfigs,
    between(0, 2),
    since(2),
    structure(
        "AlterConfigsRequest",
        &[
            field("resources", ALL, Ty::StructArray(&ALTER_CONFIGS_RESOURCE)),
            field("validate_only", ALL, Ty::Bool),
        ],
    ),
);

// ---------------------------------------------------------------------------------------------
// IncrementalAlterConfigs
const INCREMENTAL_ALTERABLE_CONFIG: StructSchema = structure(
    "AlterableConfig",
    &[
        field("name", ALL, Ty::String),
        field("config_operation", ALL, Ty::Int8),
        field("value", ALL, Ty::String),
    ],
);
const INCREMENTAL_ALTER_CONFIGS_RESOURCE: StructSchema = structure(
    "AlterConfigsResource",
    &[
        field("resource_type", ALL, Ty::Int8),
        field("resource_name", ALL, Ty::String),
        field(
            "configs",
            ALL,
            Ty::StructArray(&INCREMENTAL_ALTERABLE_CONFIG),
        ),
    ],
);
const INCREMENTAL_ALTER_CONFIGS: MessageSchema = message(
    ApiKey::IncrementalAlterConfigs,
    between(0, 1),
    since(1),
    structure(
        "IncrementalAlterConfigsRequest",
        &[
            field(
                "resources",
                ALL,
                Ty::StructArray(&INCREMENTAL_ALTER_CONFIGS_RESOURCE),
            ),
            field("validate_only", ALL, Ty::Bool),
        ],
    ),
);

// ---------------------------------------------------------------------------------------------
// DeleteRecords
const DELETE_RECORDS_PARTITION: StructSchema = structure(
    "DeleteRecordsPartition",
    &[
        field("partition_index", ALL, Ty::Int32),
        field("offset", ALL, Ty::Int64),
    ],
);
const DELETE_RECORDS_TOPIC: StructSchema = structure(
    "DeleteRecordsTopic",
    &[
        field("name", ALL, Ty::String),
        field(
            "partitions",
            ALL,
            Ty::StructArray(&DELETE_RECORDS_PARTITION),
        ),
    ],
);
const DELETE_RECORDS: MessageSchema = message(
    ApiKey::DeleteRecords,
    between(0, 2),
    since(2),
    structure(
        "DeleteRecordsRequest",
        &[
            field("topics", ALL, Ty::StructArray(&DELETE_RECORDS_TOPIC)),
            field("timeout_ms", ALL, Ty::Int32),
        ],
    ),
);

// ---------------------------------------------------------------------------------------------
// DescribeCluster
const DESCRIBE_CLUSTER: MessageSchema = message(
    ApiKey::DescribeCluster,
    between(0, 1),
    ALL,
    structure(
        "DescribeClusterRequest",
        &[
            field("include_cluster_authorized_operations", ALL, Ty::Bool),
            field("endpoint_type", since(1), Ty::Int8),
            field("include_fenced_brokers", since(2), Ty::Bool),
        ],
    ),
);

// ---------------------------------------------------------------------------------------------
// DescribeLogDirs
const DESCRIBABLE_LOG_DIR_TOPIC: StructSchema = structure(
    "DescribableLogDirTopic",
    &[
        field("topic", ALL, Ty::String),
        field("partitions", ALL, Ty::Array(&Ty::Int32)),
    ],
);
const DESCRIBE_LOG_DIRS: MessageSchema = message(
    ApiKey::DescribeLogDirs,
    between(1, 4),
    since(2),
    structure(
        "DescribeLogDirsRequest",
        &[field(
            "topics",
            ALL,
            Ty::StructArray(&DESCRIBABLE_LOG_DIR_TOPIC),
        )],
    ),
);

// ---------------------------------------------------------------------------------------------
// OffsetForLeaderEpoch
const OFFSET_FOR_LEADER_PARTITION: StructSchema = structure(
    "OffsetForLeaderPartition",
    &[
        field("partition", ALL, Ty::Int32),
        field("current_leader_epoch", since(2), Ty::Int32),
        field("leader_epoch", ALL, Ty::Int32),
    ],
);
const OFFSET_FOR_LEADER_TOPIC: StructSchema = structure(
    "OffsetForLeaderTopic",
    &[
        field("topic", ALL, Ty::String),
        field(
            "partitions",
            ALL,
            Ty::StructArray(&OFFSET_FOR_LEADER_PARTITION),
        ),
    ],
);
const OFFSET_FOR_LEADER_EPOCH: MessageSchema = message(
    ApiKey::OffsetForLeaderEpoch,
    between(2, 4),
    since(4),
    structure(
        "OffsetForLeaderEpochRequest",
        &[
            field("replica_id", since(3), Ty::Int32),
            field("topics", ALL, Ty::StructArray(&OFFSET_FOR_LEADER_TOPIC)),
        ],
    ),
);

// ---------------------------------------------------------------------------------------------
// FindCoordinator
const FIND_COORDINATOR: MessageSchema = message(
    ApiKey::FindCoordinator,
    between(0, 6),
    since(3),
    structure(
        "FindCoordinatorRequest",
        &[
            field("key", until(3), Ty::String),
            field("key_type", since(1), Ty::Int8),
            field("coordinator_keys", since(4), Ty::Array(&Ty::String)),
        ],
    ),
);

// ---------------------------------------------------------------------------------------------
// JoinGroup
const JOIN_GROUP_REQUEST_PROTOCOL: StructSchema = structure(
    "JoinGroupRequestProtocol",
    &[
        field("name", ALL, Ty::String),
        field("metadata", ALL, Ty::Bytes),
    ],
);
const JOIN_GROUP: MessageSchema = message(
    ApiKey::JoinGroup,
    between(0, 9),
    since(6),
    structure(
        "JoinGroupRequest",
        &[
            field("group_id", ALL, Ty::String),
            field("session_timeout_ms", ALL, Ty::Int32),
            field("rebalance_timeout_ms", since(1), Ty::Int32),
            field("member_id", ALL, Ty::String),
            field("group_instance_id", since(5), Ty::String),
            field("protocol_type", ALL, Ty::String),
            field(
                "protocols",
                ALL,
                Ty::StructArray(&JOIN_GROUP_REQUEST_PROTOCOL),
            ),
            field("reason", since(8), Ty::String),
        ],
    ),
);

// ---------------------------------------------------------------------------------------------
// SyncGroup
const SYNC_GROUP_REQUEST_ASSIGNMENT: StructSchema = structure(
    "SyncGroupRequestAssignment",
    &[
        field("member_id", ALL, Ty::String),
        field("assignment", ALL, Ty::Bytes),
    ],
);
const SYNC_GROUP: MessageSchema = message(
    ApiKey::SyncGroup,
    between(0, 5),
    since(4),
    structure(
        "SyncGroupRequest",
        &[
            field("group_id", ALL, Ty::String),
            field("generation_id", ALL, Ty::Int32),
            field("member_id", ALL, Ty::String),
            field("group_instance_id", since(3), Ty::String),
            field("protocol_type", since(5), Ty::String),
            field("protocol_name", since(5), Ty::String),
            field(
                "assignments",
                ALL,
                Ty::StructArray(&SYNC_GROUP_REQUEST_ASSIGNMENT),
            ),
        ],
    ),
);

// ---------------------------------------------------------------------------------------------
// Heartbeat
const HEARTBEAT: MessageSchema = message(
    ApiKey::Heartbeat,
    between(0, 4),
    since(4),
    structure(
        "HeartbeatRequest",
        &[
            field("group_id", ALL, Ty::String),
            field("generation_id", ALL, Ty::Int32),
            field("member_id", ALL, Ty::String),
            field("group_instance_id", since(3), Ty::String),
        ],
    ),
);

// ---------------------------------------------------------------------------------------------
// LeaveGroup
const MEMBER_IDENTITY: StructSchema = structure(
    "MemberIdentity",
    &[
        field("member_id", since(3), Ty::String),
        field("group_instance_id", since(3), Ty::String),
        field("reason", since(5), Ty::String),
    ],
);
const LEAVE_GROUP: MessageSchema = message(
    ApiKey::LeaveGroup,
    between(0, 5),
    since(4),
    structure(
        "LeaveGroupRequest",
        &[
            field("group_id", ALL, Ty::String),
            field("member_id", until(2), Ty::String),
            field("members", since(3), Ty::StructArray(&MEMBER_IDENTITY)),
        ],
    ),
);

// ---------------------------------------------------------------------------------------------
// OffsetCommit
const OFFSET_COMMIT_REQUEST_PARTITION: StructSchema = structure(
    "OffsetCommitRequestPartition",
    &[
        field("partition_index", ALL, Ty::Int32),
        field("committed_offset", ALL, Ty::Int64),
        field("committed_leader_epoch", since(6), Ty::Int32),
        field("committed_metadata", ALL, Ty::String),
    ],
);
const OFFSET_COMMIT_REQUEST_TOPIC: StructSchema = structure(
    "OffsetCommitRequestTopic",
    &[
        field("name", until(9), Ty::String),
        field("topic_id", since(10), Ty::Uuid),
        field(
            "partitions",
            ALL,
            Ty::StructArray(&OFFSET_COMMIT_REQUEST_PARTITION),
        ),
    ],
);
const OFFSET_COMMIT: MessageSchema = message(
    ApiKey::OffsetCommit,
    between(2, 9),
    since(8),
    structure(
        "OffsetCommitRequest",
        &[
            field("group_id", ALL, Ty::String),
            field("generation_id_or_member_epoch", since(1), Ty::Int32),
            field("member_id", since(1), Ty::String),
            field("group_instance_id", since(7), Ty::String),
            field("retention_time_ms", between(2, 4), Ty::Int64),
            field("topics", ALL, Ty::StructArray(&OFFSET_COMMIT_REQUEST_TOPIC)),
        ],
    ),
);

// ---------------------------------------------------------------------------------------------
// OffsetFetch
const OFFSET_FETCH_REQUEST_TOPIC: StructSchema = structure(
    "OffsetFetchRequestTopic",
    &[
        field("name", until(7), Ty::String),
        field("partition_indexes", until(7), Ty::Array(&Ty::Int32)),
    ],
);
const OFFSET_FETCH_REQUEST_TOPICS: StructSchema = structure(
    "OffsetFetchRequestTopics",
    &[
        field("name", between(8, 9), Ty::String),
        field("topic_id", since(10), Ty::Uuid),
        field("partition_indexes", since(8), Ty::Array(&Ty::Int32)),
    ],
);
const OFFSET_FETCH_REQUEST_GROUP: StructSchema = structure(
    "OffsetFetchRequestGroup",
    &[
        field("group_id", since(8), Ty::String),
        field("member_id", since(9), Ty::String),
        field("member_epoch", since(9), Ty::Int32),
        field(
            "topics",
            since(8),
            Ty::StructArray(&OFFSET_FETCH_REQUEST_TOPICS),
        ),
    ],
);
const OFFSET_FETCH: MessageSchema = message(
    ApiKey::OffsetFetch,
    between(1, 9),
    since(6),
    structure(
        "OffsetFetchRequest",
        &[
            field("group_id", until(7), Ty::String),
            field(
                "topics",
                until(7),
                Ty::StructArray(&OFFSET_FETCH_REQUEST_TOPIC),
            ),
            field(
                "groups",
                since(8),
                Ty::StructArray(&OFFSET_FETCH_REQUEST_GROUP),
            ),
            field("require_stable", since(7), Ty::Bool),
        ],
    ),
);

// ---------------------------------------------------------------------------------------------
// OffsetDelete
const OFFSET_DELETE_REQUEST_PARTITION: StructSchema = structure(
    "OffsetDeleteRequestPartition",
    &[field("partition_index", ALL, Ty::Int32)],
);
const OFFSET_DELETE_REQUEST_TOPIC: StructSchema = structure(
    "OffsetDeleteRequestTopic",
    &[
        field("name", ALL, Ty::String),
        field(
            "partitions",
            ALL,
            Ty::StructArray(&OFFSET_DELETE_REQUEST_PARTITION),
        ),
    ],
);
const OFFSET_DELETE: MessageSchema = message(
    ApiKey::OffsetDelete,
    between(0, 0),
    NONE,
    structure(
        "OffsetDeleteRequest",
        &[
            field("group_id", ALL, Ty::String),
            field("topics", ALL, Ty::StructArray(&OFFSET_DELETE_REQUEST_TOPIC)),
        ],
    ),
);

// ---------------------------------------------------------------------------------------------
// ListGroups
const LIST_GROUPS: MessageSchema = message(
    ApiKey::ListGroups,
    between(0, 5),
    since(3),
    structure(
        "ListGroupsRequest",
        &[
            field("states_filter", since(4), Ty::Array(&Ty::String)),
            field("types_filter", since(5), Ty::Array(&Ty::String)),
        ],
    ),
);

// ---------------------------------------------------------------------------------------------
// DescribeGroups
const DESCRIBE_GROUPS: MessageSchema = message(
    ApiKey::DescribeGroups,
    between(0, 6),
    since(5),
    structure(
        "DescribeGroupsRequest",
        &[
            field("groups", ALL, Ty::Array(&Ty::String)),
            field("include_authorized_operations", since(3), Ty::Bool),
        ],
    ),
);

// ---------------------------------------------------------------------------------------------
// DeleteGroups
const DELETE_GROUPS: MessageSchema = message(
    ApiKey::DeleteGroups,
    between(0, 2),
    since(2),
    structure(
        "DeleteGroupsRequest",
        &[field("groups_names", ALL, Ty::Array(&Ty::String))],
    ),
);

// ---------------------------------------------------------------------------------------------
// ConsumerGroupHeartbeat
const CONSUMER_GROUP_HEARTBEAT_TOPIC_PARTITIONS: StructSchema = structure(
    "TopicPartitions",
    &[
        field("topic_id", ALL, Ty::Uuid),
        field("partitions", ALL, Ty::Array(&Ty::Int32)),
    ],
);
const CONSUMER_GROUP_HEARTBEAT: MessageSchema = message(
    ApiKey::ConsumerGroupHeartbeat,
    between(0, 1),
    ALL,
    structure(
        "ConsumerGroupHeartbeatRequest",
        &[
            field("group_id", ALL, Ty::String),
            field("member_id", ALL, Ty::String),
            field("member_epoch", ALL, Ty::Int32),
            field("instance_id", ALL, Ty::String),
            field("rack_id", ALL, Ty::String),
            field("rebalance_timeout_ms", ALL, Ty::Int32),
            field("subscribed_topic_names", ALL, Ty::Array(&Ty::String)),
            field("subscribed_topic_regex", since(1), Ty::String),
            field("server_assignor", ALL, Ty::String),
            field(
                "topic_partitions",
                ALL,
                Ty::StructArray(&CONSUMER_GROUP_HEARTBEAT_TOPIC_PARTITIONS),
            ),
        ],
    ),
);

// ---------------------------------------------------------------------------------------------
// ConsumerGroupDescribe
const CONSUMER_GROUP_DESCRIBE: MessageSchema = message(
    ApiKey::ConsumerGroupDescribe,
    between(0, 1),
    ALL,
    structure(
        "ConsumerGroupDescribeRequest",
        &[
            field("group_ids", ALL, Ty::Array(&Ty::String)),
            field("include_authorized_operations", ALL, Ty::Bool),
        ],
    ),
);

// ---------------------------------------------------------------------------------------------
// InitProducerId
const INIT_PRODUCER_ID: MessageSchema = message(
    ApiKey::InitProducerId,
    between(0, 5),
    since(2),
    structure(
        "InitProducerIdRequest",
        &[
            field("transactional_id", ALL, Ty::String),
            field("transaction_timeout_ms", ALL, Ty::Int32),
            field("producer_id", since(3), Ty::Int64),
            field("producer_epoch", since(3), Ty::Int16),
            field("enable_2pc", since(6), Ty::Bool),
            field("keep_prepared_txn", since(6), Ty::Bool),
        ],
    ),
);

// ---------------------------------------------------------------------------------------------
// AddPartitionsToTxn
const ADD_PARTITIONS_TO_TXN_TOPIC: StructSchema = structure(
    "AddPartitionsToTxnTopic",
    &[
        field("name", ALL, Ty::String),
        field("partitions", ALL, Ty::Array(&Ty::Int32)),
    ],
);
const ADD_PARTITIONS_TO_TXN_TRANSACTION: StructSchema = structure(
    "AddPartitionsToTxnTransaction",
    &[
        field("transactional_id", since(4), Ty::String),
        field("producer_id", since(4), Ty::Int64),
        field("producer_epoch", since(4), Ty::Int16),
        field("verify_only", since(4), Ty::Bool),
        field(
            "topics",
            since(4),
            Ty::StructArray(&ADD_PARTITIONS_TO_TXN_TOPIC),
        ),
    ],
);
const ADD_PARTITIONS_TO_TXN: MessageSchema = message(
    ApiKey::AddPartitionsToTxn,
    between(0, 5),
    since(3),
    structure(
        "AddPartitionsToTxnRequest",
        &[
            field(
                "transactions",
                since(4),
                Ty::StructArray(&ADD_PARTITIONS_TO_TXN_TRANSACTION),
            ),
            field("v3_and_below_transactional_id", until(3), Ty::String),
            field("v3_and_below_producer_id", until(3), Ty::Int64),
            field("v3_and_below_producer_epoch", until(3), Ty::Int16),
            field(
                "v3_and_below_topics",
                until(3),
                Ty::StructArray(&ADD_PARTITIONS_TO_TXN_TOPIC),
            ),
        ],
    ),
);

// ---------------------------------------------------------------------------------------------
// AddOffsetsToTxn
const ADD_OFFSETS_TO_TXN: MessageSchema = message(
    ApiKey::AddOffsetsToTxn,
    between(0, 4),
    since(3),
    structure(
        "AddOffsetsToTxnRequest",
        &[
            field("transactional_id", ALL, Ty::String),
            field("producer_id", ALL, Ty::Int64),
            field("producer_epoch", ALL, Ty::Int16),
            field("group_id", ALL, Ty::String),
        ],
    ),
);

// ---------------------------------------------------------------------------------------------
// EndTxn
const END_TXN: MessageSchema = message(
    ApiKey::EndTxn,
    between(0, 5),
    since(3),
    structure(
        "EndTxnRequest",
        &[
            field("transactional_id", ALL, Ty::String),
            field("producer_id", ALL, Ty::Int64),
            field("producer_epoch", ALL, Ty::Int16),
            field("committed", ALL, Ty::Bool),
        ],
    ),
);

// ---------------------------------------------------------------------------------------------
// TxnOffsetCommit
const TXN_OFFSET_COMMIT_REQUEST_PARTITION: StructSchema = structure(
    "TxnOffsetCommitRequestPartition",
    &[
        field("partition_index", ALL, Ty::Int32),
        field("committed_offset", ALL, Ty::Int64),
        field("committed_leader_epoch", since(2), Ty::Int32),
        field("committed_metadata", ALL, Ty::String),
    ],
);
const TXN_OFFSET_COMMIT_REQUEST_TOPIC: StructSchema = structure(
    "TxnOffsetCommitRequestTopic",
    &[
        field("name", ALL, Ty::String),
        field(
            "partitions",
            ALL,
            Ty::StructArray(&TXN_OFFSET_COMMIT_REQUEST_PARTITION),
        ),
    ],
);
const TXN_OFFSET_COMMIT: MessageSchema = message(
    ApiKey::TxnOffsetCommit,
    between(0, 5),
    since(3),
    structure(
        "TxnOffsetCommitRequest",
        &[
            field("transactional_id", ALL, Ty::String),
            field("group_id", ALL, Ty::String),
            field("producer_id", ALL, Ty::Int64),
            field("producer_epoch", ALL, Ty::Int16),
            field("generation_id", since(3), Ty::Int32),
            field("member_id", since(3), Ty::String),
            field("group_instance_id", since(3), Ty::String),
            field(
                "topics",
                ALL,
                Ty::StructArray(&TXN_OFFSET_COMMIT_REQUEST_TOPIC),
            ),
        ],
    ),
);
