//! `strom-client`: a lean async Kafka client on the `kafka-protocol` crate and tokio.
//!
//! Owns: connections to brokers (framing, correlation ids, pipelining, API version
//! negotiation, per-request timeouts), bootstrap and the metadata cache, a batching
//! [`Producer`] with compression, acks, retries, optional idempotence and a partitioner
//! identical to the Java client's, a [`Consumer`] of assigned partitions or of a classic
//! consumer group ([`Consumer::subscribe`]: the `range` and `cooperative-sticky` assignors in
//! [`assignor`], membership and commits in [`group`]), and an [`Admin`] for topics, configs,
//! partitions, records, groups and the cluster.
//!
//! Never: imports the Strom broker (it must work against any Kafka broker), panics on what a
//! broker sends, or buffers without a bound (`buffer_memory_bytes`, response frame size).
//!
//! ```no_run
//! # async fn example() -> strom_client::Result<()> {
//! use std::time::Duration;
//! use strom_client::*;
//!
//! let client = Client::connect(ClientConfig::new("127.0.0.1:9092")).await?;
//! Admin::new(client.clone()).create_topics(&[NewTopic::new("events", 3)]).await?;
//!
//! let producer = Producer::new(client.clone(), ProducerConfig::default());
//! let delivery = producer.send(ProducerRecord::new("events", "hello").key("user-1")).await?;
//! println!("written at {:?}", delivery.await?);
//!
//! let mut consumer = Consumer::new(client, ConsumerConfig::default());
//! consumer.assign_topic("events").await?;
//! consumer.seek_all(OffsetSpec::Earliest);
//! let records = consumer.poll(Duration::from_secs(1)).await?;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod admin;
mod admin_groups;
pub mod assignor;
mod client;
pub mod connection;
mod consumer;
mod error;
pub mod group;
mod offsets;
mod partitioner;
mod producer;
mod record_batch;
mod types;

pub use admin::{
    format_uuid, Admin, ClusterInfo, ConfigChange, ConfigEntry, ConfigSource, NewTopic,
    PartitionDescription, TopicDescription,
};
pub use admin_groups::{
    GroupDescription, GroupListing, GroupMemberDescription, GroupPartitionOffsets, OffsetReset,
};
pub use assignor::Assignor;
pub use client::{BrokerInfo, Client, ClientConfig, Metadata, PartitionInfo, TopicInfo};
pub use consumer::{
    decode_batches, decode_records, AutoOffsetReset, Consumer, ConsumerConfig, FetchedBatch,
    HeaderViews, RecordHeaders, RecordView, RecordViews,
};
pub use error::{Error, Result};
pub use kafka_protocol::error::ResponseError;
pub use offsets::{list_offsets, ListedOffset, OffsetSpec};
pub use partitioner::{murmur2, partition_for_key, to_positive, NullKeyPartitioning};
pub use producer::{
    BatchDelivery, DeliveryFuture, Producer, ProducerConfig, RecordsMetadata, RECORDS_PER_LOCK_MAX,
};
pub use types::{
    compression_name, now_ms, parse_compression, Acks, Compression, ConsumerRecord, Header,
    ProducerRecord, RecordMetadata, RecordRef, TopicPartition,
};
