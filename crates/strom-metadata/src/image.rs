//! The metadata image: what every request handler reads to answer Metadata, route produce and
//! fetch, and describe configs. It is a pure function of the records applied to it.

use std::collections::{BTreeMap, HashMap};

use uuid::Uuid;

use crate::record::MetadataRecord;

/// A broker known to the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRegistration {
    /// Node id.
    pub node_id: i32,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: u16,
    /// Rack, if any.
    pub rack: Option<String>,
}

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionImage {
    /// Partition index.
    pub partition: i32,
    /// Leader node id, -1 when there is none.
    pub leader: i32,
    /// Leader epoch; bumped on every leader change.
    pub leader_epoch: i32,
    /// Partition epoch; bumped on every change to this partition.
    pub partition_epoch: i32,
    /// Replica node ids.
    pub replicas: Vec<i32>,
    /// In-sync replica node ids.
    pub isr: Vec<i32>,
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicImage {
    /// Topic name.
    pub name: String,
    /// Topic id.
    pub topic_id: uuid::Uuid,
    /// Partitions, indexed by partition number.
    pub partitions: Vec<PartitionImage>,
    /// Config overrides set on this topic (not defaults).
    pub configs: BTreeMap<String, String>,
}

impl TopicImage {
    /// Whether the topic is internal (its name starts with `__`).
    pub fn is_internal(&self) -> bool {
        self.name.starts_with("__")
    }
}

/// An in-broker topic-to-topic transform: what the server runs for it is decided outside this
/// crate; here it is a name, two topics and opaque steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformImage {
    /// Transform name.
    pub name: String,
    /// Topic it reads.
    pub input: String,
    /// Topic it writes.
    pub output: String,
    /// The steps as a JSON array (not interpreted by the metadata layer).
    pub steps: String,
    /// Offset of the record that created it: tells a re-created transform of the same name
    /// from the old one.
    pub created_offset: i64,
}

/// The whole cluster metadata as of `last_applied_offset`.
#[derive(Debug, Clone, Default)]
pub struct MetadataImage {
    /// Cluster id; empty until the cluster is created.
    pub cluster_id: String,
    /// Offset of the last record applied; -1 for an empty image.
    pub last_applied_offset: i64,
    /// Brokers by node id.
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicImage>,
    /// Topic names by id.
    pub topic_names_by_id: HashMap<Uuid, String>,
    /// In-broker transforms by name.
    pub transforms: BTreeMap<String, TransformImage>,
}

impl MetadataImage {
    /// An image with nothing applied.
    pub fn empty() -> MetadataImage {
        MetadataImage {
            last_applied_offset: -1,
            ..MetadataImage::default()
        }
    }

    /// Looks a topic up by name.
    pub fn topic(&self, name: &str) -> Option<&TopicImage> {
        self.topics.get(name)
    }

    /// Looks a topic up by id.
    pub fn topic_by_id(&self, topic_id: &Uuid) -> Option<&TopicImage> {
        self.topic_names_by_id
            .get(topic_id)
            .and_then(|name| self.topics.get(name))
    }

    /// Applies one record at `offset`. Records that name unknown topics are ignored (they can
    /// only follow a deletion), so replay is total.
    pub fn apply(&mut self, offset: i64, record: &MetadataRecord) {
        debug_assert!(
            offset > self.last_applied_offset,
            "metadata offsets go forward"
        );
        self.last_applied_offset = offset;
        match record {
            MetadataRecord::ClusterCreated { cluster_id } => self.cluster_id = cluster_id.clone(),
            MetadataRecord::RegisterBroker {
                node_id,
                host,
                port,
                rack,
            } => {
                self.brokers.insert(
                    *node_id,
                    BrokerRegistration {
                        node_id: *node_id,
                        host: host.clone(),
                        port: *port,
                        rack: rack.clone(),
                    },
                );
            }
            MetadataRecord::Topic { name, topic_id } => {
                self.topic_names_by_id.insert(*topic_id, name.clone());
                self.topics.insert(
                    name.clone(),
                    TopicImage {
                        name: name.clone(),
                        topic_id: *topic_id,
                        partitions: Vec::new(),
                        configs: BTreeMap::new(),
                    },
                );
            }
            MetadataRecord::Partition {
                topic_id,
                partition,
                replicas,
                isr,
                leader,
                leader_epoch,
            } => {
                if let Some(topic) = self.topic_by_id_mut(topic_id) {
                    let image = PartitionImage {
                        partition: *partition,
                        leader: *leader,
                        leader_epoch: *leader_epoch,
                        partition_epoch: 0,
                        replicas: replicas.clone(),
                        isr: isr.clone(),
                    };
                    let index = *partition as usize;
                    if index < topic.partitions.len() {
                        topic.partitions[index] = image;
                    } else if index == topic.partitions.len() {
                        topic.partitions.push(image);
                    }
                }
            }
            MetadataRecord::PartitionChange {
                topic_id,
                partition,
                leader,
                isr,
            } => {
                let Some(topic) = self.topic_by_id_mut(topic_id) else {
                    return;
                };
                let Some(image) = topic.partitions.get_mut(*partition as usize) else {
                    return;
                };
                image.partition_epoch += 1;
                if let Some(leader) = leader {
                    image.leader = *leader;
                    image.leader_epoch += 1;
                }
                if let Some(isr) = isr {
                    image.isr = isr.clone();
                }
            }
            MetadataRecord::Config { topic, key, value } => {
                if let Some(topic) = self.topics.get_mut(topic) {
                    match value {
                        Some(value) => topic.configs.insert(key.clone(), value.clone()),
                        None => topic.configs.remove(key),
                    };
                }
            }
            MetadataRecord::RemoveTopic { topic_id } => {
                if let Some(name) = self.topic_names_by_id.remove(topic_id) {
                    self.topics.remove(&name);
                }
            }
            MetadataRecord::Transform {
                name,
                input,
                output,
                steps,
            } => {
                self.transforms.insert(
                    name.clone(),
                    TransformImage {
                        name: name.clone(),
                        input: input.clone(),
                        output: output.clone(),
                        steps: steps.clone(),
                        created_offset: offset,
                    },
                );
            }
            MetadataRecord::RemoveTransform { name } => {
                self.transforms.remove(name);
            }
        }
    }

    fn topic_by_id_mut(&mut self, topic_id: &Uuid) -> Option<&mut TopicImage> {
        let name = self.topic_names_by_id.get(topic_id)?;
        self.topics.get_mut(name)
    }
}
