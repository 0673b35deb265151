//! The request schemas, one per accepted API, written by hand from Kafka's message definitions
//! and checked against `kafka-protocol`'s generated decoders (see the tests in
//! `tests/bounded_schemas.rs`: every accepted version of every API round-trips through them).
//!
//! Versions in field ranges follow Kafka's definitions even beyond the versions the broker
//! accepts today, so raising a version in [`crate::versions::SUPPORTED_APIS`] usually means
//! only raising `versions` here and rerunning the tests.

use kafka_protocol::messages::ApiKey;

use super::schema::{
    between, field, since, until, Field, MessageSchema, StructSchema, TaggedField, Ty, Versions,
    ALL,
};

/// The schema of the request with this key, if the broker accepts that API.
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
