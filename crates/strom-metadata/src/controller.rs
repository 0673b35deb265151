//! The controller: validates metadata changes, makes them durable as records, applies them to
//! the image. A single node is its own controller today; in a cluster this becomes the Raft
//! leader's job, with the same records.

use std::collections::BTreeMap;
use std::path::Path;

use uuid::Uuid;

use crate::image::{MetadataImage, TopicImage, TransformImage};
use crate::log::{MetadataLog, MetadataLogError};
use crate::record::MetadataRecord;
use crate::topic_config::validate_topic_config;
use crate::topic_name::validate_topic_name;

/// Most partitions one topic may have.
pub const PARTITIONS_PER_TOPIC_MAX: i32 = 100_000;

/// Why a metadata change was refused. Each maps to one Kafka error code.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// TOPIC_ALREADY_EXISTS (36).
    #[error("topic '{0}' already exists")]
    TopicAlreadyExists(String),
    /// INVALID_TOPIC_EXCEPTION (17).
    #[error("{0}")]
    InvalidTopic(String),
    /// UNKNOWN_TOPIC_OR_PARTITION (3).
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    /// INVALID_PARTITIONS (37).
    #[error("{0}")]
    InvalidPartitions(String),
    /// INVALID_REPLICATION_FACTOR (38).
    #[error("{0}")]
    InvalidReplicationFactor(String),
    /// INVALID_CONFIG (40).
    #[error("{0}")]
    InvalidConfig(String),
    /// INVALID_REQUEST (42).
    #[error("{0}")]
    InvalidRequest(String),
    /// The metadata log failed: KAFKA_STORAGE_ERROR (56).
    #[error(transparent)]
    Log(#[from] MetadataLogError),
}

/// Why a transform change was refused. Separate from [`ControllerError`] (whose variants each
/// map to a Kafka error code) because transforms are managed over HTTP, not the Kafka protocol.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// A transform of that name exists (HTTP 409).
    #[error("transform '{0}' already exists")]
    AlreadyExists(String),
    /// No transform of that name (HTTP 404).
    #[error("transform '{0}' does not exist")]
    Unknown(String),
    /// A bad name, topic or steps (HTTP 400).
    #[error("{0}")]
    Invalid(String),
    /// The metadata log failed.
    #[error(transparent)]
    Log(#[from] MetadataLogError),
}

impl From<ControllerError> for TransformError {
    fn from(error: ControllerError) -> TransformError {
        match error {
            ControllerError::Log(error) => TransformError::Log(error),
            other => TransformError::Invalid(other.to_string()),
        }
    }
}

/// Checks a transform name: the rules of topic names.
pub fn validate_transform_name(name: &str) -> Result<(), String> {
    validate_topic_name(name).map_err(|e| e.replacen("topic name", "transform name", 1))
}

/// Owns the metadata image and the log that makes it durable.
#[derive(Debug)]
pub struct Controller {
    log: MetadataLog,
    image: MetadataImage,
}

impl Controller {
    /// Opens (or formats) the metadata in `dir` and replays it into an image.
    pub fn open(dir: &Path) -> Result<Controller, ControllerError> {
        let (log, records) = MetadataLog::open(dir)?;
        let mut image = MetadataImage::empty();
        for (offset, record) in records.iter().enumerate() {
            image.apply(offset as i64, record);
        }
        let mut controller = Controller { log, image };
        if controller.image.cluster_id.is_empty() {
            let cluster_id = new_cluster_id();
            controller.commit(vec![MetadataRecord::ClusterCreated { cluster_id }])?;
        }
        Ok(controller)
    }

    /// The current image.
    pub fn image(&self) -> &MetadataImage {
        &self.image
    }

    /// Registers a broker's advertised listener; writes nothing if it is unchanged.
    pub fn register_broker(
        &mut self,
        node_id: i32,
        host: &str,
        port: u16,
        rack: Option<String>,
    ) -> Result<(), ControllerError> {
        if let Some(known) = self.image.brokers.get(&node_id) {
            if known.host == host && known.port == port && known.rack == rack {
                return Ok(());
            }
        }
        self.commit(vec![MetadataRecord::RegisterBroker {
            node_id,
            host: host.to_string(),
            port,
            rack,
        }])
    }

    /// Creates a topic with `partition_count` partitions placed over the registered brokers.
    /// With `validate_only`, checks everything and changes nothing.
    pub fn create_topic(
        &mut self,
        name: &str,
        partition_count: i32,
        replication_factor: i16,
        configs: &BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<TopicImage, ControllerError> {
        validate_topic_name(name).map_err(ControllerError::InvalidTopic)?;
        if self.image.topics.contains_key(name) {
            return Err(ControllerError::TopicAlreadyExists(name.to_string()));
        }
        if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&partition_count) {
            return Err(ControllerError::InvalidPartitions(format!(
                "number of partitions must be between 1 and {PARTITIONS_PER_TOPIC_MAX}, not {partition_count}"
            )));
        }
        let replicas = self.check_replication_factor(replication_factor)?;
        for (key, value) in configs {
            validate_topic_config(key, value).map_err(ControllerError::InvalidConfig)?;
        }
        let topic_id = Uuid::new_v4();
        let mut records = vec![MetadataRecord::Topic {
            name: name.to_string(),
            topic_id,
        }];
        records.extend(self.partition_records(topic_id, 0..partition_count, replicas));
        for (key, value) in configs {
            records.push(MetadataRecord::Config {
                topic: name.to_string(),
                key: key.clone(),
                value: Some(value.trim().to_string()),
            });
        }
        if validate_only {
            let mut preview = self.image.clone();
            for (i, record) in records.iter().enumerate() {
                preview.apply(self.log.next_offset() + i as i64, record);
            }
            return preview
                .topics
                .remove(name)
                .ok_or_else(|| ControllerError::UnknownTopic(name.to_string()));
        }
        self.commit(records)?;
        self.topic(name).cloned()
    }

    /// Deletes a topic; returns what it was.
    pub fn delete_topic(&mut self, name: &str) -> Result<TopicImage, ControllerError> {
        let topic = self.topic(name)?.clone();
        self.commit(vec![MetadataRecord::RemoveTopic {
            topic_id: topic.topic_id,
        }])?;
        Ok(topic)
    }

    /// Grows a topic to `partition_count` partitions in total.
    pub fn create_partitions(
        &mut self,
        name: &str,
        partition_count: i32,
        validate_only: bool,
    ) -> Result<TopicImage, ControllerError> {
        let topic = self.topic(name)?;
        let current = topic.partitions.len() as i32;
        let topic_id = topic.topic_id;
        let replication = topic
            .partitions
            .first()
            .map(|p| p.replicas.len())
            .unwrap_or(1);
        if partition_count <= current {
            return Err(ControllerError::InvalidPartitions(format!(
                "topic '{name}' has {current} partitions; the new count must be larger, not {partition_count}"
            )));
        }
        if partition_count > PARTITIONS_PER_TOPIC_MAX {
            return Err(ControllerError::InvalidPartitions(format!(
                "number of partitions must be at most {PARTITIONS_PER_TOPIC_MAX}, not {partition_count}"
            )));
        }
        if validate_only {
            return self.topic(name).cloned();
        }
        let records = self.partition_records(topic_id, current..partition_count, replication);
        self.commit(records)?;
        self.topic(name).cloned()
    }

    /// Sets (`Some`) or removes (`None`) topic config overrides, all or nothing.
    pub fn alter_topic_configs(
        &mut self,
        name: &str,
        changes: &[(String, Option<String>)],
        validate_only: bool,
    ) -> Result<(), ControllerError> {
        self.topic(name)?;
        for (key, value) in changes {
            match value {
                Some(value) => validate_topic_config(key, value),
                None => crate::topic_config::config_key(key)
                    .map(|_| ())
                    .ok_or_else(|| format!("unknown topic config '{key}'")),
            }
            .map_err(ControllerError::InvalidConfig)?;
        }
        if validate_only || changes.is_empty() {
            return Ok(());
        }
        let records = changes
            .iter()
            .map(|(key, value)| MetadataRecord::Config {
                topic: name.to_string(),
                key: key.clone(),
                value: value.as_ref().map(|v| v.trim().to_string()),
            })
            .collect();
        self.commit(records)
    }

    /// Creates an in-broker transform reading `input` and writing `output` through `steps` (a
    /// JSON array whose elements this crate does not interpret). The topics need not exist
    /// yet, but their names must be legal and differ.
    pub fn create_transform(
        &mut self,
        name: &str,
        input: &str,
        output: &str,
        steps: &str,
    ) -> Result<TransformImage, TransformError> {
        validate_transform_name(name).map_err(TransformError::Invalid)?;
        if self.image.transforms.contains_key(name) {
            return Err(TransformError::AlreadyExists(name.to_string()));
        }
        for (role, topic) in [("input", input), ("output", output)] {
            validate_topic_name(topic)
                .map_err(|e| TransformError::Invalid(format!("{role} topic: {e}")))?;
        }
        if input == output {
            return Err(TransformError::Invalid(format!(
                "input and output are the same topic '{input}': a transform would read its own output"
            )));
        }
        match serde_json::from_str::<serde_json::Value>(steps) {
            Ok(serde_json::Value::Array(_)) => {}
            Ok(_) => {
                return Err(TransformError::Invalid(
                    "steps must be a JSON array".to_string(),
                ))
            }
            Err(error) => {
                return Err(TransformError::Invalid(format!(
                    "steps are not valid JSON: {error}"
                )))
            }
        }
        self.commit(vec![MetadataRecord::Transform {
            name: name.to_string(),
            input: input.to_string(),
            output: output.to_string(),
            steps: steps.to_string(),
        }])?;
        self.image
            .transforms
            .get(name)
            .cloned()
            .ok_or_else(|| TransformError::Unknown(name.to_string()))
    }

    /// Deletes an in-broker transform; returns what it was.
    pub fn delete_transform(&mut self, name: &str) -> Result<TransformImage, TransformError> {
        let transform = self
            .image
            .transforms
            .get(name)
            .cloned()
            .ok_or_else(|| TransformError::Unknown(name.to_string()))?;
        self.commit(vec![MetadataRecord::RemoveTransform {
            name: name.to_string(),
        }])?;
        Ok(transform)
    }

    fn topic(&self, name: &str) -> Result<&TopicImage, ControllerError> {
        self.image
            .topics
            .get(name)
            .ok_or_else(|| ControllerError::UnknownTopic(name.to_string()))
    }

    fn check_replication_factor(&self, replication_factor: i16) -> Result<usize, ControllerError> {
        let brokers = self.image.brokers.len();
        // -1 asks for the broker's default, which is 1 until clusters arrive.
        let wanted = if replication_factor == -1 {
            1
        } else {
            replication_factor
        };
        if wanted < 1 || wanted as usize > brokers {
            return Err(ControllerError::InvalidReplicationFactor(format!(
                "replication factor {replication_factor} is impossible with {brokers} available broker(s)"
            )));
        }
        Ok(wanted as usize)
    }

    /// Places partitions round-robin over the brokers, preferred leader first.
    fn partition_records(
        &self,
        topic_id: Uuid,
        partitions: std::ops::Range<i32>,
        replication: usize,
    ) -> Vec<MetadataRecord> {
        let nodes: Vec<i32> = self.image.brokers.keys().copied().collect();
        partitions
            .map(|partition| {
                let replicas: Vec<i32> = (0..replication.min(nodes.len()))
                    .map(|i| nodes[(partition as usize + i) % nodes.len()])
                    .collect();
                MetadataRecord::Partition {
                    topic_id,
                    partition,
                    isr: replicas.clone(),
                    leader: replicas.first().copied().unwrap_or(-1),
                    replicas,
                    leader_epoch: 0,
                }
            })
            .collect()
    }

    fn commit(&mut self, records: Vec<MetadataRecord>) -> Result<(), ControllerError> {
        if records.is_empty() {
            return Ok(());
        }
        let first = self.log.append(&records)?;
        for (i, record) in records.iter().enumerate() {
            self.image.apply(first + i as i64, record);
        }
        Ok(())
    }
}

/// A Kafka-style cluster id: a random UUID in URL-safe base64 without padding (22 characters).
fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let value = Uuid::new_v4().as_u128();
    (0..22)
        .map(|i| {
            let shift = 128i32 - 6 * (i + 1);
            let index = if shift >= 0 {
                (value >> shift) & 63
            } else {
                (value << -shift) & 63
            };
            ALPHABET[index as usize] as char
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn controller(dir: &Path) -> Controller {
        let mut controller = Controller::open(dir).unwrap();
        controller
            .register_broker(0, "127.0.0.1", 9092, None)
            .unwrap();
        controller
    }

    #[test]
    fn topics_survive_reopen_with_configs() {
        let dir = tempfile::tempdir().unwrap();
        let configs = BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]);
        let (cluster_id, topic_id) = {
            let mut c = controller(dir.path());
            let t = c.create_topic("orders", 3, 1, &configs, false).unwrap();
            c.create_partitions("orders", 5, false).unwrap();
            (c.image().cluster_id.clone(), t.topic_id)
        };
        let c = Controller::open(dir.path()).unwrap();
        assert_eq!(c.image().cluster_id, cluster_id);
        assert_eq!(cluster_id.len(), 22);
        let topic = c.image().topic("orders").unwrap();
        assert_eq!(topic.topic_id, topic_id);
        assert_eq!(topic.partitions.len(), 5);
        assert_eq!(topic.partitions[4].leader, 0);
        assert_eq!(topic.configs, configs);
    }

    #[test]
    fn refuses_bad_topics() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = controller(dir.path());
        let none = BTreeMap::new();
        assert!(matches!(
            c.create_topic("a b", 1, 1, &none, false),
            Err(ControllerError::InvalidTopic(_))
        ));
        assert!(matches!(
            c.create_topic("t", 0, 1, &none, false),
            Err(ControllerError::InvalidPartitions(_))
        ));
        assert!(matches!(
            c.create_topic("t", 1, 3, &none, false),
            Err(ControllerError::InvalidReplicationFactor(_))
        ));
        let bad = BTreeMap::from([("retention.ms".to_string(), "x".to_string())]);
        assert!(matches!(
            c.create_topic("t", 1, 1, &bad, false),
            Err(ControllerError::InvalidConfig(_))
        ));
        c.create_topic("t", 1, -1, &none, true).unwrap();
        assert!(
            c.image().topic("t").is_none(),
            "validate_only changes nothing"
        );
        c.create_topic("t", 1, 1, &none, false).unwrap();
        assert!(matches!(
            c.create_topic("t", 1, 1, &none, false),
            Err(ControllerError::TopicAlreadyExists(_))
        ));
        assert!(matches!(
            c.create_partitions("t", 1, false),
            Err(ControllerError::InvalidPartitions(_))
        ));
        c.delete_topic("t").unwrap();
        assert!(matches!(
            c.delete_topic("t"),
            Err(ControllerError::UnknownTopic(_))
        ));
    }

    const STEPS: &str = r#"[{"type":"hash","fields":["$.ip"]}]"#;

    #[test]
    fn transforms_survive_reopen_and_deletion_is_durable() {
        let dir = tempfile::tempdir().unwrap();
        let created = {
            let mut c = controller(dir.path());
            let kept = c
                .create_transform("clean", "raw", "clean-out", STEPS)
                .unwrap();
            c.create_transform("gone", "raw", "other", "[]").unwrap();
            c.delete_transform("gone").unwrap();
            kept
        };
        assert_eq!(created.input, "raw");
        let mut c = Controller::open(dir.path()).unwrap();
        let transforms = &c.image().transforms;
        assert_eq!(transforms.len(), 1, "{transforms:?}");
        assert_eq!(transforms["clean"], created);
        assert_eq!(transforms["clean"].steps, STEPS);
        // A re-created transform is told apart from the one before it by its offset.
        c.delete_transform("clean").unwrap();
        let again = c
            .create_transform("clean", "raw", "clean-out", STEPS)
            .unwrap();
        assert!(again.created_offset > created.created_offset);
        drop(c);
        let c = Controller::open(dir.path()).unwrap();
        assert_eq!(c.image().transforms["clean"], again);
    }

    #[test]
    fn refuses_bad_transforms() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = controller(dir.path());
        let invalid = |r: Result<TransformImage, TransformError>| {
            matches!(r, Err(TransformError::Invalid(_)))
        };
        assert!(invalid(c.create_transform("a b", "in", "out", "[]")));
        assert!(invalid(c.create_transform("", "in", "out", "[]")));
        assert!(invalid(c.create_transform("t", "in put", "out", "[]")));
        assert!(invalid(c.create_transform("t", "in", "", "[]")));
        assert!(invalid(c.create_transform("t", "same", "same", "[]")));
        assert!(invalid(c.create_transform("t", "in", "out", "{}")));
        assert!(invalid(c.create_transform("t", "in", "out", "[")));
        let message = c
            .create_transform("a/b", "in", "out", "[]")
            .unwrap_err()
            .to_string();
        assert!(message.starts_with("transform name"), "{message}");
        assert!(c.image().transforms.is_empty());
        c.create_transform("t", "in", "out", "[]").unwrap();
        assert!(matches!(
            c.create_transform("t", "x", "y", "[]"),
            Err(TransformError::AlreadyExists(_))
        ));
        assert!(matches!(
            c.delete_transform("nope"),
            Err(TransformError::Unknown(_))
        ));
        c.delete_transform("t").unwrap();
        assert!(matches!(
            c.delete_transform("t"),
            Err(TransformError::Unknown(_))
        ));
    }

    #[test]
    fn transform_records_round_trip_through_json() {
        let record = MetadataRecord::Transform {
            name: "n".to_string(),
            input: "i".to_string(),
            output: "o".to_string(),
            steps: STEPS.to_string(),
        };
        let text = serde_json::to_string(&record).unwrap();
        assert_eq!(
            serde_json::from_str::<MetadataRecord>(&text).unwrap(),
            record
        );
    }
}
