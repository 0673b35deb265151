//! The records that change the metadata image (KRaft's record types, by the same names).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One change to the cluster metadata. The image is the fold of these records in log order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// The cluster was formatted; written once, first.
    ClusterCreated {
        /// Kafka-style cluster id (22-character base64 of a UUID).
        cluster_id: String,
    },
    /// A broker announced itself (or its new listener).
    RegisterBroker {
        /// Node id of the broker.
        node_id: i32,
        /// Advertised host clients connect to.
        host: String,
        /// Advertised port clients connect to.
        port: u16,
        /// Rack of the broker, if configured.
        rack: Option<String>,
    },
    /// A topic was created.
    Topic {
        /// Topic name.
        name: String,
        /// Topic id, unique forever.
        topic_id: Uuid,
    },
    /// A partition was created (with its first leader and replica set).
    Partition {
        /// The topic the partition belongs to.
        topic_id: Uuid,
        /// Partition index.
        partition: i32,
        /// Replica node ids, preferred leader first.
        replicas: Vec<i32>,
        /// In-sync replica node ids.
        isr: Vec<i32>,
        /// Leader node id (-1: none).
        leader: i32,
        /// Leader epoch, bumped on every leader change.
        leader_epoch: i32,
    },
    /// A partition's leader or ISR changed.
    PartitionChange {
        /// The topic the partition belongs to.
        topic_id: Uuid,
        /// Partition index.
        partition: i32,
        /// New leader, if it changed.
        leader: Option<i32>,
        /// New ISR, if it changed.
        isr: Option<Vec<i32>>,
    },
    /// A topic config was set (`value: Some`) or removed back to its default (`value: None`).
    Config {
        /// Topic name.
        topic: String,
        /// Kafka config name, e.g. `retention.ms`.
        key: String,
        /// New value, or `None` to delete the override.
        value: Option<String>,
    },
    /// A topic was deleted.
    RemoveTopic {
        /// Id of the deleted topic.
        topic_id: Uuid,
    },
    /// An in-broker topic-to-topic transform was created (or replaced after a removal).
    Transform {
        /// Transform name (topic-name rules).
        name: String,
        /// Topic it reads.
        input: String,
        /// Topic it writes.
        output: String,
        /// The steps, a JSON array; opaque here (the connectors' transform configs).
        steps: String,
    },
    /// An in-broker transform was deleted.
    RemoveTransform {
        /// Name of the deleted transform.
        name: String,
    },
}
