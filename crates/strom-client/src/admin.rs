//! Admin operations: topics, configs, partitions, records, cluster, offsets.

use std::collections::BTreeMap;

use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{
    ApiKey, CreatePartitionsRequest, CreateTopicsRequest, DeleteRecordsRequest,
    DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest,
    IncrementalAlterConfigsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::client::{BrokerInfo, Client, Metadata, TopicInfo};
use crate::error::{check, Error, Result};
use crate::offsets::{leader_of, list_offsets, ListedOffset, OffsetSpec};
use crate::types::TopicPartition;

/// Kafka's resource type for topics in config requests.
const RESOURCE_TOPIC: i8 = 2;
/// Kafka's resource type for brokers in config requests.
const RESOURCE_BROKER: i8 = 4;
/// How long the broker may take for topic changes.
const ADMIN_TIMEOUT_MS: i32 = 30_000;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// A topic to create.
#[derive(Debug, Clone)]
pub struct NewTopic {
    /// Name.
    pub name: String,
    /// Partition count (-1: the broker's default).
    pub partitions: i32,
    /// Replication factor (-1: the broker's default).
    pub replication_factor: i16,
    /// Topic config overrides (`retention.ms` ...).
    pub configs: BTreeMap<String, String>,
}

impl NewTopic {
    /// A topic with `partitions` partitions and the broker's default replication factor.
    pub fn new(name: impl Into<String>, partitions: i32) -> NewTopic {
        NewTopic {
            name: name.into(),
            partitions,
            replication_factor: -1,
            configs: BTreeMap::new(),
        }
    }
}

/// Where a config value comes from (Kafka's `ConfigSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic itself.
    Topic,
    /// A dynamic per-broker setting.
    DynamicBroker,
    /// A dynamic cluster-wide default.
    DynamicDefaultBroker,
    /// The broker's static configuration.
    StaticBroker,
    /// Kafka's built-in default.
    Default,
    /// Anything else.
    Other(i8),
}

impl ConfigSource {
    fn from_wire(source: i8) -> ConfigSource {
        match source {
            1 => ConfigSource::Topic,
            2 => ConfigSource::DynamicBroker,
            3 => ConfigSource::DynamicDefaultBroker,
            4 => ConfigSource::StaticBroker,
            5 => ConfigSource::Default,
            other => ConfigSource::Other(other),
        }
    }

    /// A short name (`topic`, `default`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ConfigSource::Topic => "topic",
            ConfigSource::DynamicBroker => "dynamic-broker",
            ConfigSource::DynamicDefaultBroker => "dynamic-default-broker",
            ConfigSource::StaticBroker => "static-broker",
            ConfigSource::Default => "default",
            ConfigSource::Other(_) => "other",
        }
    }
}

/// One config entry of a topic or broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Kafka config name.
    pub name: String,
    /// Value (`None` for sensitive or unset values).
    pub value: Option<String>,
    /// Where the value comes from.
    pub source: ConfigSource,
    /// Read-only.
    pub read_only: bool,
    /// Sensitive (value hidden).
    pub sensitive: bool,
}

/// A change to a topic config, for [`Admin::alter_topic_config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChange {
    /// Set `name` to `value`.
    Set(String, String),
    /// Remove the override of `name` (back to the default).
    Delete(String),
}

/// The cluster as DescribeCluster (or Metadata, on brokers without it) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterInfo {
    /// Cluster id.
    pub cluster_id: Option<String>,
    /// Controller node id, -1 if unknown.
    pub controller_id: i32,
    /// Brokers.
    pub brokers: Vec<BrokerInfo>,
}

/// A partition with its offsets, for [`Admin::describe_topic`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDescription {
    /// Partition index.
    pub partition: i32,
    /// Leader node id (-1: none).
    pub leader: i32,
    /// Leader epoch.
    pub leader_epoch: i32,
    /// Replicas.
    pub replicas: Vec<i32>,
    /// In-sync replicas.
    pub isr: Vec<i32>,
    /// Log start offset.
    pub log_start_offset: i64,
    /// High watermark.
    pub high_watermark: i64,
}

/// A topic with partitions, offsets and configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// Name.
    pub name: String,
    /// Topic id as a UUID string (all zeros if the broker sends none).
    pub topic_id: String,
    /// Internal.
    pub is_internal: bool,
    /// Partitions, by index.
    pub partitions: Vec<PartitionDescription>,
    /// Every config entry.
    pub configs: Vec<ConfigEntry>,
}

/// Admin operations against the cluster.
///
/// ```no_run
/// # async fn example() -> strom_client::Result<()> {
/// use strom_client::{Admin, Client, ClientConfig, NewTopic};
/// let admin = Admin::new(Client::connect(ClientConfig::new("127.0.0.1:9092")).await?);
/// admin.create_topics(&[NewTopic::new("events", 3)]).await?;
/// for topic in admin.list_topics().await? {
///     println!("{} ({} partitions)", topic.name, topic.partitions.len());
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Admin {
    client: Client,
}

impl Admin {
    /// Admin operations on `client`.
    pub fn new(client: Client) -> Admin {
        Admin { client }
    }

    /// The client underneath.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates topics; fails on the first topic the broker refuses (after trying all).
    pub async fn create_topics(&self, topics: &[NewTopic]) -> Result<()> {
        let mut request = CreateTopicsRequest::default();
        request.timeout_ms = ADMIN_TIMEOUT_MS;
        request.topics = topics
            .iter()
            .map(|t| {
                let mut topic = CreatableTopic::default();
                topic.name = name(&t.name);
                topic.num_partitions = t.partitions;
                topic.replication_factor = t.replication_factor;
                topic.configs = t
                    .configs
                    .iter()
                    .map(|(k, v)| {
                        let mut c = CreatableTopicConfig::default();
                        c.name = StrBytes::from_string(k.clone());
                        c.value = Some(StrBytes::from_string(v.clone()));
                        c
                    })
                    .collect();
                topic
            })
            .collect();
        let (_, response) = self.client.send_controller(&request).await?;
        for topic in &response.topics {
            check(
                topic.error_code,
                || format!("create topic {:?}", topic.name.0.as_str()),
                topic.error_message.as_ref(),
            )?;
        }
        Ok(())
    }

    /// Deletes topics by name.
    pub async fn delete_topics(&self, names: &[String]) -> Result<()> {
        let mut request = DeleteTopicsRequest::default();
        request.timeout_ms = ADMIN_TIMEOUT_MS;
        request.topic_names = names.iter().map(|n| name(n)).collect();
        let (_, response) = self.client.send_controller(&request).await?;
        for topic in &response.responses {
            let topic_name = topic
                .name
                .as_ref()
                .map(|n| n.0.to_string())
                .unwrap_or_default();
            check(
                topic.error_code,
                || format!("delete topic {topic_name:?}"),
                topic.error_message.as_ref(),
            )?;
        }
        Ok(())
    }

    /// Every topic the cluster has (fresh metadata), sorted by name.
    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>> {
        let metadata = self.client.refresh_metadata(None, false).await?;
        Ok(metadata.topics.into_values().collect())
    }

    /// Fresh metadata of the whole cluster.
    pub async fn metadata(&self) -> Result<Metadata> {
        self.client.refresh_metadata(None, false).await
    }

    /// One topic's partitions (with log start offsets and high watermarks) and configs.
    pub async fn describe_topic(&self, topic: &str) -> Result<TopicDescription> {
        let metadata = self
            .client
            .refresh_metadata(Some(&[topic.to_string()]), false)
            .await?;
        let info = metadata
            .topics
            .get(topic)
            .ok_or_else(|| Error::UnknownTopic(topic.to_string()))?;
        let tps: Vec<TopicPartition> = info
            .partitions
            .iter()
            .map(|p| TopicPartition::new(topic, p.partition))
            .collect();
        let earliest = self
            .list_offsets(
                &tps.iter()
                    .map(|tp| (tp.clone(), OffsetSpec::Earliest))
                    .collect::<Vec<_>>(),
            )
            .await?;
        let latest = self
            .list_offsets(
                &tps.iter()
                    .map(|tp| (tp.clone(), OffsetSpec::Latest))
                    .collect::<Vec<_>>(),
            )
            .await?;
        let partitions = info
            .partitions
            .iter()
            .map(|p| {
                let tp = TopicPartition::new(topic, p.partition);
                PartitionDescription {
                    partition: p.partition,
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replicas.clone(),
                    isr: p.isr.clone(),
                    log_start_offset: earliest.get(&tp).map_or(-1, |o| o.offset),
                    high_watermark: latest.get(&tp).map_or(-1, |o| o.offset),
                }
            })
            .collect();
        let configs = self.describe_topic_config(topic).await?;
        Ok(TopicDescription {
            name: topic.to_string(),
            topic_id: format_uuid(&info.topic_id),
            is_internal: info.is_internal,
            partitions,
            configs,
        })
    }

    /// Every config entry of a topic.
    pub async fn describe_topic_config(&self, topic: &str) -> Result<Vec<ConfigEntry>> {
        self.describe_configs(RESOURCE_TOPIC, topic).await
    }

    /// Every config entry of broker `node_id`.
    pub async fn describe_broker_config(&self, node_id: i32) -> Result<Vec<ConfigEntry>> {
        self.describe_configs(RESOURCE_BROKER, &node_id.to_string())
            .await
    }

    async fn describe_configs(
        &self,
        resource_type: i8,
        resource_name: &str,
    ) -> Result<Vec<ConfigEntry>> {
        let mut resource = DescribeConfigsResource::default();
        resource.resource_type = resource_type;
        resource.resource_name = StrBytes::from_string(resource_name.to_string());
        resource.configuration_keys = None;
        let mut request = DescribeConfigsRequest::default();
        request.resources = vec![resource];
        let (_, response) = if resource_type == RESOURCE_BROKER {
            let node_id: i32 = resource_name
                .parse()
                .map_err(|_| Error::Invalid(format!("bad broker id {resource_name:?}")))?;
            self.client.send_to(node_id, &request).await?
        } else {
            self.client.send_any(&request).await?
        };
        let mut entries = Vec::new();
        for result in response.results {
            check(
                result.error_code,
                || format!("describe configs of {resource_name:?}"),
                result.error_message.as_ref(),
            )?;
            for c in result.configs {
                entries.push(ConfigEntry {
                    name: c.name.to_string(),
                    value: c.value.map(|v| v.to_string()),
                    source: ConfigSource::from_wire(c.config_source),
                    read_only: c.read_only,
                    sensitive: c.is_sensitive,
                });
            }
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Sets and deletes topic config overrides (IncrementalAlterConfigs).
    pub async fn alter_topic_config(&self, topic: &str, changes: &[ConfigChange]) -> Result<()> {
        let mut resource = AlterConfigsResource::default();
        resource.resource_type = RESOURCE_TOPIC;
        resource.resource_name = StrBytes::from_string(topic.to_string());
        resource.configs = changes
            .iter()
            .map(|change| {
                let mut c = AlterableConfig::default();
                match change {
                    ConfigChange::Set(k, v) => {
                        c.name = StrBytes::from_string(k.clone());
                        c.config_operation = 0;
                        c.value = Some(StrBytes::from_string(v.clone()));
                    }
                    ConfigChange::Delete(k) => {
                        c.name = StrBytes::from_string(k.clone());
                        c.config_operation = 1;
                        c.value = None;
                    }
                }
                c
            })
            .collect();
        let mut request = IncrementalAlterConfigsRequest::default();
        request.resources = vec![resource];
        let (_, response) = self.client.send_controller(&request).await?;
        for r in &response.responses {
            check(
                r.error_code,
                || format!("alter config of topic {topic:?}"),
                r.error_message.as_ref(),
            )?;
        }
        Ok(())
    }

    /// Grows `topic` to `total_partitions` partitions.
    pub async fn create_partitions(&self, topic: &str, total_partitions: i32) -> Result<()> {
        let mut t = CreatePartitionsTopic::default();
        t.name = name(topic);
        t.count = total_partitions;
        t.assignments = None;
        let mut request = CreatePartitionsRequest::default();
        request.topics = vec![t];
        request.timeout_ms = ADMIN_TIMEOUT_MS;
        let (_, response) = self.client.send_controller(&request).await?;
        for r in &response.results {
            check(
                r.error_code,
                || format!("add partitions to topic {topic:?}"),
                r.error_message.as_ref(),
            )?;
        }
        self.client
            .refresh_metadata(Some(&[topic.to_string()]), false)
            .await?;
        Ok(())
    }

    /// Deletes records before the given offsets (-1: the high watermark); returns each
    /// partition's new log start offset.
    pub async fn delete_records(
        &self,
        before: &[(TopicPartition, i64)],
    ) -> Result<BTreeMap<TopicPartition, i64>> {
        let mut out = BTreeMap::new();
        for (tp, offset) in before {
            let leader = leader_of(&self.client, tp).await?;
            let mut partition = DeleteRecordsPartition::default();
            partition.partition_index = tp.partition;
            partition.offset = *offset;
            let mut topic = DeleteRecordsTopic::default();
            topic.name = name(&tp.topic);
            topic.partitions = vec![partition];
            let mut request = DeleteRecordsRequest::default();
            request.topics = vec![topic];
            request.timeout_ms = ADMIN_TIMEOUT_MS;
            let (_, response) = self.client.send_to(leader, &request).await?;
            for t in response.topics {
                for p in t.partitions {
                    check(p.error_code, || format!("delete records of {tp}"), None)?;
                    out.insert(
                        TopicPartition::new(t.name.0.to_string(), p.partition_index),
                        p.low_watermark,
                    );
                }
            }
        }
        Ok(out)
    }

    /// Looks up offsets (earliest, latest, by timestamp).
    pub async fn list_offsets(
        &self,
        specs: &[(TopicPartition, OffsetSpec)],
    ) -> Result<BTreeMap<TopicPartition, ListedOffset>> {
        list_offsets(&self.client, specs).await
    }

    /// Cluster id, controller and brokers (DescribeCluster where the broker has it, else
    /// Metadata).
    pub async fn describe_cluster(&self) -> Result<ClusterInfo> {
        let connection = self.client.any_connection().await?;
        if connection.version(ApiKey::DescribeCluster).is_some() {
            let (_, response) = connection.send(&DescribeClusterRequest::default()).await?;
            check(
                response.error_code,
                || "describe cluster".to_string(),
                response.error_message.as_ref(),
            )?;
            let mut brokers: Vec<BrokerInfo> = response
                .brokers
                .iter()
                .map(|b| BrokerInfo {
                    node_id: b.broker_id.0,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.as_ref().map(|r| r.to_string()),
                })
                .collect();
            brokers.sort_by_key(|b| b.node_id);
            return Ok(ClusterInfo {
                cluster_id: Some(response.cluster_id.to_string()),
                controller_id: response.controller_id.0,
                brokers,
            });
        }
        let metadata = self.client.refresh_metadata(Some(&[]), false).await?;
        Ok(ClusterInfo {
            cluster_id: metadata.cluster_id,
            controller_id: metadata.controller_id,
            brokers: metadata.brokers.into_values().collect(),
        })
    }
}

/// Formats 16 bytes as a UUID string.
pub fn format_uuid(bytes: &[u8; 16]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}
