//! The cluster metadata: the image every node serves from, the records that change it, and
//! the durable log those records live in.
//!
//! Owns: brokers, topics (name, id, partitions, leaders, leader epochs, replicas, ISR) and topic
//! configs, and their validation (topic names, config keys and values); in-broker transforms
//! (name, input and output topics, and their steps as opaque JSON that the server interprets). A change is a
//! [`MetadataRecord`]; the [`MetadataImage`] is the fold of all records; the [`Controller`]
//! validates requests, writes records to the [`MetadataLog`] and applies them.
//!
//! Today a single node is its own controller and the log is a local file. In a cluster the same
//! records will be replicated by a Raft quorum (KRaft's design); nothing outside this crate
//! depends on how records are made durable.
//!
//! Never: networking, partition data, or any knowledge of the Kafka wire protocol.

pub mod controller;
pub mod image;
pub mod log;
pub mod record;
pub mod topic_config;
pub mod topic_name;

pub use controller::{Controller, ControllerError, TransformError};
pub use image::{BrokerRegistration, MetadataImage, PartitionImage, TopicImage, TransformImage};
pub use log::{MetadataLog, MetadataLogError};
pub use record::MetadataRecord;
