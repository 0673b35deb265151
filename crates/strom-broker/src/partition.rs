//! The partition manager: the partitions this node hosts, each an open log plus the state the
//! broker keeps beside it (high watermark watchers, effective configs).
//!
//! The set of partitions follows the metadata image: [`ReplicaManager::apply_image`] opens logs
//! for partitions assigned to this node and deletes those whose topic is gone. Logs are opened
//! in parallel (recovery is mostly waiting on the file system) and share one budget of open
//! segment files ([`FileCache`], `log_open_files_max`).

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use strom_metadata::topic_config::effective_value;
use strom_metadata::{MetadataImage, TopicImage};
use strom_storage::batch::{BatchValidation, TimestampType};
use strom_storage::{
    CacheTrimStats, CacheTrimmer, CompactionConfig, FileCache, LogConfig, LogOpenOptions,
    PartitionLog, StorageError,
};
use tokio::sync::watch;
use uuid::Uuid;

/// File in each partition directory naming the topic id it belongs to (Kafka's
/// `partition.metadata`), so a re-created topic of the same name never inherits old data.
const PARTITION_METADATA_FILE: &str = "partition.metadata";

/// Threads that open logs at once when many are opened together (start-up, a large topic).
const OPEN_THREADS_MAX: usize = 8;

/// Below this many logs to open, they are opened on the calling thread.
const OPEN_PARALLEL_MIN: usize = 32;

/// A topic name and partition index.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

/// A topic name and partition index as borrowed parts, so the hosted partitions can be looked
/// up by `(&str, i32)` without allocating a [`TopicPartition`] (a fetch or produce looks up
/// every partition it names).
trait PartitionKey {
    fn parts(&self) -> (&str, i32);
}

impl PartitionKey for TopicPartition {
    fn parts(&self) -> (&str, i32) {
        (&self.topic, self.partition)
    }
}

impl PartitionKey for (&str, i32) {
    fn parts(&self) -> (&str, i32) {
        *self
    }
}

impl<'a> Borrow<dyn PartitionKey + 'a> for TopicPartition {
    fn borrow(&self) -> &(dyn PartitionKey + 'a) {
        self
    }
}

// Hash and equality of the owned and borrowed keys agree: both go through `parts`.
impl Hash for TopicPartition {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

impl Hash for dyn PartitionKey + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

impl PartialEq for dyn PartitionKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn PartitionKey + '_ {}

/// The rules a produce request to this partition must follow, derived from topic configs.
#[derive(Debug, Clone)]
pub struct ProduceRules {
    /// Batch validation rules (`max.message.bytes`, timestamps).
    pub validation: BatchValidation,
    /// `min.insync.replicas`.
    pub min_insync_replicas: usize,
    /// `cleanup.policy` includes `compact`: every record needs a key.
    pub compacted: bool,
    /// `cleanup.policy` includes `delete`: DeleteRecords is allowed.
    pub deletable: bool,
    /// `compression.type` other than `producer`: batches in another codec are recompressed.
    pub compression: Option<kafka_protocol::records::Compression>,
}

/// One hosted partition.
#[derive(Debug)]
pub struct Partition {
    /// Topic name.
    pub topic: String,
    /// Topic id.
    pub topic_id: Uuid,
    /// Partition index.
    pub index: i32,
    /// The log. Never held across an `.await`.
    pub log: Mutex<PartitionLog>,
    /// Leader epoch and ISR as of the last image applied.
    pub leadership: RwLock<Leadership>,
    /// Produce rules from the topic's effective configs.
    pub rules: RwLock<ProduceRules>,
    /// Publishes the log end offset after every append (and truncation) so long polls wake.
    log_end_offset_sender: watch::Sender<i64>,
    /// Bytes appended lately, which a fetch's lag does not count (`fetch_catchup_tail_ms`).
    pub recent_appends: Mutex<crate::catchup::RecentAppends>,
}

/// Leadership facts of a partition from the metadata image.
#[derive(Debug, Clone)]
pub struct Leadership {
    /// Leader node id.
    pub leader: i32,
    /// Leader epoch.
    pub leader_epoch: i32,
    /// In-sync replicas.
    pub isr: Vec<i32>,
}

impl Partition {
    /// A receiver that sees every later change of the log end offset.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.log_end_offset_sender.subscribe()
    }

    /// Publishes the new log end offset to long-polling fetches.
    pub fn publish_log_end_offset(&self, log_end_offset: i64) {
        self.log_end_offset_sender.send_replace(log_end_offset);
    }

    /// The current leader epoch.
    pub fn leader_epoch(&self) -> i32 {
        self.leadership.read().leader_epoch
    }
}

/// The partitions hosted by this node.
#[derive(Debug)]
pub struct ReplicaManager {
    node_id: i32,
    data_dir: PathBuf,
    topic_defaults: BTreeMap<String, String>,
    files: Arc<FileCache>,
    cache_trimmer: Option<Arc<CacheTrimmer>>,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
}

impl ReplicaManager {
    /// An empty manager for partitions under `data_dir`, keeping at most `open_files_max`
    /// segment files open and, unless `cache_window_bytes` is 0, about that many of each
    /// partition's newest bytes in the page cache (see `strom_storage::cache_window`). A
    /// trimming thread that cannot start is logged and done without.
    pub fn new(
        node_id: i32,
        data_dir: &Path,
        topic_defaults: BTreeMap<String, String>,
        open_files_max: usize,
        cache_window_bytes: u64,
    ) -> Self {
        let cache_trimmer = if cache_window_bytes == 0 {
            None
        } else {
            match CacheTrimmer::start(cache_window_bytes) {
                Ok(trimmer) => Some(trimmer),
                Err(error) => {
                    tracing::warn!(%error, "cannot start the page cache trimming thread; the kernel keeps what it likes");
                    None
                }
            }
        };
        ReplicaManager {
            node_id,
            data_dir: data_dir.to_path_buf(),
            topic_defaults,
            files: FileCache::new(open_files_max),
            cache_trimmer,
            partitions: RwLock::new(HashMap::new()),
        }
    }

    /// The page cache trimming thread's counters (`None` when it is off).
    pub fn cache_trim_stats(&self) -> Option<CacheTrimStats> {
        self.cache_trimmer.as_ref().map(|t| t.stats())
    }

    /// The budget of open segment files shared by the hosted logs.
    pub fn files(&self) -> &Arc<FileCache> {
        &self.files
    }

    /// The broker-wide topic config defaults.
    pub fn topic_defaults(&self) -> &BTreeMap<String, String> {
        &self.topic_defaults
    }

    /// Looks a hosted partition up.
    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .get(&(topic, partition) as &dyn PartitionKey)
            .cloned()
    }

    /// All hosted partitions.
    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().values().cloned().collect()
    }

    /// Makes the hosted partitions match the image: opens (recovering) logs for partitions
    /// assigned to this node, updates leadership and configs of open ones, and closes and
    /// deletes those whose topic is gone. Also removes partition directories on disk that no
    /// topic in the image owns (left by a crash during deletion).
    pub fn apply_image(&self, image: &MetadataImage, now_ms: i64) -> Result<(), StorageError> {
        self.apply_image_opening(image, now_ms, false)
    }

    /// [`ReplicaManager::apply_image`] at start-up: with `clean_shutdown` (the data
    /// directory's clean-shutdown marker was found) logs are opened without scanning their
    /// active segments.
    pub fn load(
        &self,
        image: &MetadataImage,
        now_ms: i64,
        clean_shutdown: bool,
    ) -> Result<(), StorageError> {
        self.apply_image_opening(image, now_ms, clean_shutdown)
    }

    fn apply_image_opening(
        &self,
        image: &MetadataImage,
        now_ms: i64,
        clean_shutdown: bool,
    ) -> Result<(), StorageError> {
        let mut wanted = HashMap::new();
        for topic in image.topics.values() {
            for partition in &topic.partitions {
                if partition.replicas.contains(&self.node_id) {
                    let key = TopicPartition {
                        topic: topic.name.clone(),
                        partition: partition.partition,
                    };
                    wanted.insert(key, (topic, partition));
                }
            }
        }
        let stale: Vec<Arc<Partition>> = {
            let mut partitions = self.partitions.write();
            let stale_keys: Vec<TopicPartition> = partitions
                .iter()
                .filter(|(key, p)| {
                    wanted
                        .get(*key)
                        .is_none_or(|(topic, _)| topic.topic_id != p.topic_id)
                })
                .map(|(key, _)| key.clone())
                .collect();
            stale_keys
                .iter()
                .filter_map(|key| partitions.remove(key))
                .collect()
        };
        for partition in stale {
            self.delete_partition(partition);
        }
        let mut first_error = None;
        let mut to_open = Vec::new();
        // Configs are derived once per topic, not once per partition.
        let mut topic_configs: HashMap<&str, (LogConfig, ProduceRules, CompactionConfig)> =
            HashMap::new();
        for (key, (topic, image)) in wanted {
            let leadership = Leadership {
                leader: image.leader,
                leader_epoch: image.leader_epoch,
                isr: image.isr.clone(),
            };
            let (log_config, rules, compaction) = topic_configs
                .entry(topic.name.as_str())
                .or_insert_with(|| {
                    let (log_config, rules) = self.configs_for(topic);
                    (log_config, rules, self.compaction_config_for(topic))
                })
                .clone();
            if let Some(existing) = self.get(&key.topic, key.partition) {
                let leads = leadership.leader == self.node_id;
                let leader_epoch = leadership.leader_epoch;
                *existing.leadership.write() = leadership;
                *existing.rules.write() = rules;
                let mut log = existing.log.lock();
                if leads {
                    if let Err(error) = log.assign_leader_epoch(leader_epoch) {
                        tracing::error!(topic = %key.topic, partition = key.partition, %error, "cannot record the leader epoch");
                        first_error.get_or_insert(error);
                    }
                }
                if *log.config() != log_config {
                    log.set_config(log_config);
                }
                log.set_compaction_config(compaction);
                continue;
            }
            to_open.push(ToOpen {
                key,
                topic,
                log_config,
                rules,
                compaction,
                leadership,
            });
        }
        let options = LogOpenOptions {
            files: self.files.clone(),
            clean_shutdown,
            cache_trimmer: self.cache_trimmer.clone(),
        };
        for (key, opened) in self.open_partitions(to_open, now_ms, &options) {
            match opened {
                Ok(partition) => {
                    self.partitions.write().insert(key, Arc::new(partition));
                }
                Err(error) => {
                    tracing::error!(topic = %key.topic, partition = key.partition, %error, "cannot open partition");
                    first_error.get_or_insert(error);
                }
            }
        }
        self.remove_orphan_directories(image);
        match first_error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Effective log config and produce rules of a topic.
    pub fn configs_for(&self, topic: &TopicImage) -> (LogConfig, ProduceRules) {
        let value = |name: &str| effective_value(name, &topic.configs, &self.topic_defaults);
        let number = |name: &str, fallback: i64| {
            value(name)
                .and_then(|v| v.trim().parse::<i64>().ok())
                .unwrap_or(fallback)
        };
        let defaults = LogConfig::default();
        let log_config = LogConfig {
            segment_size_bytes: number("segment.bytes", defaults.segment_size_bytes as i64).max(1)
                as u64,
            segment_ms: number("segment.ms", defaults.segment_ms),
            retention_bytes: number("retention.bytes", defaults.retention_bytes),
            retention_ms: number("retention.ms", defaults.retention_ms),
            index_interval_bytes: number(
                "index.interval.bytes",
                defaults.index_interval_bytes as i64,
            )
            .clamp(0, u32::MAX as i64) as u32,
            segment_index_size_bytes: number(
                "segment.index.bytes",
                defaults.segment_index_size_bytes as i64,
            )
            .clamp(4096, u32::MAX as i64) as u32,
            flush_messages: number("flush.messages", defaults.flush_messages),
            flush_ms: number("flush.ms", defaults.flush_ms),
            file_delete_delay_ms: number("file.delete.delay.ms", defaults.file_delete_delay_ms),
        };
        let timestamp_type = match value("message.timestamp.type").as_deref() {
            Some("LogAppendTime") => TimestampType::LogAppendTime,
            _ => TimestampType::CreateTime,
        };
        let rules = ProduceRules {
            validation: BatchValidation {
                max_message_bytes: number("max.message.bytes", 1_048_588).max(0) as usize,
                timestamp_type,
                timestamp_before_max_ms: number("message.timestamp.before.max.ms", i64::MAX),
                timestamp_after_max_ms: number("message.timestamp.after.max.ms", i64::MAX),
            },
            min_insync_replicas: number("min.insync.replicas", 1).max(1) as usize,
            compacted: false,
            deletable: true,
            compression: None,
        };
        let compression = match value("compression.type").as_deref() {
            Some("uncompressed") => Some(kafka_protocol::records::Compression::None),
            Some("gzip") => Some(kafka_protocol::records::Compression::Gzip),
            Some("snappy") => Some(kafka_protocol::records::Compression::Snappy),
            Some("lz4") => Some(kafka_protocol::records::Compression::Lz4),
            Some("zstd") => Some(kafka_protocol::records::Compression::Zstd),
            _ => None,
        };
        let (compacted, deletable) = value("cleanup.policy")
            .and_then(|v| CompactionConfig::parse_cleanup_policy(&v))
            .unwrap_or((false, true));
        let rules = ProduceRules {
            compacted,
            deletable,
            compression,
            ..rules
        };
        (log_config, rules)
    }

    /// Compaction settings of a topic from its effective configs.
    pub fn compaction_config_for(&self, topic: &TopicImage) -> CompactionConfig {
        let value = |name: &str| effective_value(name, &topic.configs, &self.topic_defaults);
        let defaults = CompactionConfig::default();
        let number = |name: &str, fallback: i64| {
            value(name)
                .and_then(|v| v.trim().parse::<i64>().ok())
                .unwrap_or(fallback)
        };
        let (compact, delete) = value("cleanup.policy")
            .and_then(|v| CompactionConfig::parse_cleanup_policy(&v))
            .unwrap_or((
                defaults.cleanup_policy_compact,
                defaults.cleanup_policy_delete,
            ));
        CompactionConfig {
            cleanup_policy_compact: compact,
            cleanup_policy_delete: delete,
            delete_retention_ms: number("delete.retention.ms", defaults.delete_retention_ms),
            min_compaction_lag_ms: number("min.compaction.lag.ms", defaults.min_compaction_lag_ms),
            max_compaction_lag_ms: number("max.compaction.lag.ms", defaults.max_compaction_lag_ms),
            min_cleanable_dirty_ratio: value("min.cleanable.dirty.ratio")
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(defaults.min_cleanable_dirty_ratio),
            producer_id_expiration_ms: defaults.producer_id_expiration_ms,
        }
    }

    /// Opens the logs of `to_open`, on up to [`OPEN_THREADS_MAX`] threads when there are
    /// many. Returns each partition with its outcome, in no particular order.
    fn open_partitions(
        &self,
        to_open: Vec<ToOpen<'_>>,
        now_ms: i64,
        options: &LogOpenOptions,
    ) -> Vec<(TopicPartition, Result<Partition, StorageError>)> {
        run_parallel(to_open, |item| {
            let key = item.key.clone();
            (key, self.open_partition(item, now_ms, options))
        })
    }

    /// Closes every log (clean shutdown) without fsyncs. Returns whether every log was closed
    /// cleanly; then the caller must call `strom_storage::checkpoint::mark_clean_shutdown`,
    /// which syncs the file system and marks the data directory.
    pub fn close_all(&self) -> bool {
        let partitions: Vec<Arc<Partition>> =
            self.partitions.write().drain().map(|(_, p)| p).collect();
        // In parallel: a log with something new costs several fsyncs.
        let closed = run_parallel(partitions, |partition| {
            match Arc::try_unwrap(partition) {
                // Writes what is new, snapshots producer state and marks it clean, without an
                // fsync: the caller syncs the file system once (mark_clean_shutdown).
                Ok(partition) => match partition.log.into_inner().close_unsynced() {
                    Ok(()) => true,
                    Err(error) => {
                        tracing::error!(%error, "close on shutdown failed");
                        false
                    }
                },
                // A request still holds it: flush at least.
                Err(partition) => {
                    if let Err(error) = partition.log.lock().flush() {
                        tracing::error!(topic = %partition.topic, partition = partition.index, %error, "flush on shutdown failed");
                    }
                    false
                }
            }
        });
        closed.into_iter().all(|clean| clean)
    }

    fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.data_dir.join(format!("{topic}-{partition}"))
    }

    fn open_partition(
        &self,
        item: ToOpen<'_>,
        now_ms: i64,
        options: &LogOpenOptions,
    ) -> Result<Partition, StorageError> {
        let ToOpen {
            key,
            topic,
            log_config,
            rules,
            compaction,
            leadership,
        } = item;
        let index = key.partition;
        let dir = self.partition_dir(&topic.name, index);
        let marker = dir.join(PARTITION_METADATA_FILE);
        let expected = format!("topic_id: {}\n", topic.topic_id);
        let found = std::fs::read_to_string(&marker).ok();
        if found.as_ref().is_some_and(|found| *found != expected) {
            tracing::warn!(dir = %dir.display(), "partition directory belongs to a deleted topic of the same name; removing it");
            remove_dir(&dir);
        }
        let mut log = PartitionLog::open_with(&dir, log_config, now_ms, options)?;
        // One node: every replica is in sync, so the high watermark is the log end offset,
        // including what was appended before a crash (the checkpoint may be stale).
        let log_end_offset = log.log_end_offset();
        log.set_high_watermark(log_end_offset);
        if leadership.leader == self.node_id {
            // As a Kafka leader does on taking over: the epoch starts at the log end offset,
            // so the first append in it has no file to write.
            log.assign_leader_epoch(leadership.leader_epoch)?;
        }
        if found.as_ref() != Some(&expected) {
            std::fs::write(&marker, expected).map_err(|source| StorageError::Io {
                context: format!("writing {}", marker.display()),
                source,
            })?;
        }
        log.set_compaction_config(compaction);
        let (sender, _) = watch::channel(log.log_end_offset());
        Ok(Partition {
            topic: topic.name.clone(),
            topic_id: topic.topic_id,
            index,
            log: Mutex::new(log),
            leadership: RwLock::new(leadership),
            rules: RwLock::new(rules),
            log_end_offset_sender: sender,
            recent_appends: Mutex::default(),
        })
    }

    fn delete_partition(&self, partition: Arc<Partition>) {
        tracing::info!(topic = %partition.topic, partition = partition.index, "deleting partition");
        let dir = partition.log.lock().dir().to_path_buf();
        // Wake long polls so they notice the partition is gone.
        partition.publish_log_end_offset(-1);
        // Closes the log's files now, or (a request still holds the partition) when that
        // request finishes; open handles keep working after the rename below.
        drop(partition);
        retire_dir(&dir);
    }

    fn remove_orphan_directories(&self, image: &MetadataImage) {
        let Ok(entries) = std::fs::read_dir(&self.data_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            // A deleted partition's directory: one queued for removal already, or one whose
            // removal a crash interrupted (its metadata file may be gone). The remover thread
            // takes it either way (removing it here would hold up the caller; a second
            // removal of the same directory finds nothing and is quiet).
            let retired = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(RETIRED_DIR_SUFFIX));
            if retired {
                DirectoryRemover::get().remove(path);
                continue;
            }
            if !path.join(PARTITION_METADATA_FILE).exists() {
                continue;
            }
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let owned = name.rsplit_once('-').is_some_and(|(topic, index)| {
                let index: Option<i32> = index.parse().ok();
                index.is_some_and(|i| {
                    image
                        .topic(topic)
                        .is_some_and(|t| (i as usize) < t.partitions.len())
                })
            });
            if !owned {
                tracing::warn!(dir = %path.display(), "removing partition directory no topic owns");
                remove_dir(&path);
            }
        }
    }
}

/// Runs `work` on every item, on up to [`OPEN_THREADS_MAX`] threads when there are at least
/// [`OPEN_PARALLEL_MIN`] items (opening and closing logs is mostly waiting on the file system,
/// so more threads than cores help). Results come back in no particular order.
fn run_parallel<T: Send, R: Send>(items: Vec<T>, work: impl Fn(T) -> R + Sync) -> Vec<R> {
    if items.len() < OPEN_PARALLEL_MIN {
        return items.into_iter().map(work).collect();
    }
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get() * 2)
        .clamp(2, OPEN_THREADS_MAX);
    let count = items.len();
    let queue = Mutex::new(items);
    let results = Mutex::new(Vec::with_capacity(count));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let Some(item) = queue.lock().pop() else {
                    break;
                };
                let outcome = work(item);
                results.lock().push(outcome);
            });
        }
    });
    results.into_inner()
}

/// A partition [`ReplicaManager::apply_image`] must open, with its configs.
struct ToOpen<'a> {
    key: TopicPartition,
    topic: &'a TopicImage,
    log_config: LogConfig,
    rules: ProduceRules,
    compaction: CompactionConfig,
    leadership: Leadership,
}

/// Suffix of a deleted partition's directory while it waits for [`DirectoryRemover`].
const RETIRED_DIR_SUFFIX: &str = ".deleting";

/// Takes a deleted partition's directory out of the way at once (a rename) and removes it
/// on the remover thread. Removing gigabytes takes long (a file system mounted with
/// `discard` trims every block inside the unlink: 0.9 s for a 1.9 GB partition on the
/// benchmark VM), and the caller holds the controller's lock on an async worker. Kafka also
/// renames deleted logs and deletes them later. Leftovers of a crash go to the remover at
/// the next start (see [`ReplicaManager::remove_orphan_directories`]).
fn retire_dir(dir: &Path) {
    static RETIRED_DIRS: AtomicU64 = AtomicU64::new(0);
    let mut name = dir.as_os_str().to_os_string();
    let serial = RETIRED_DIRS.fetch_add(1, Ordering::Relaxed);
    name.push(format!(
        ".{}-{serial}{RETIRED_DIR_SUFFIX}",
        std::process::id()
    ));
    let retired = PathBuf::from(name);
    match std::fs::rename(dir, &retired) {
        Ok(()) => DirectoryRemover::get().remove(retired),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            tracing::warn!(dir = %dir.display(), %error, "cannot rename a deleted partition's directory; removing it in place");
            remove_dir(dir);
        }
    }
}

/// One thread that removes retired directories in the background, in the order they came.
struct DirectoryRemover {
    queue: Mutex<std::sync::mpsc::Sender<PathBuf>>,
}

impl DirectoryRemover {
    fn get() -> &'static DirectoryRemover {
        static REMOVER: std::sync::OnceLock<DirectoryRemover> = std::sync::OnceLock::new();
        REMOVER.get_or_init(|| {
            let (sender, receiver) = std::sync::mpsc::channel::<PathBuf>();
            let started = std::thread::Builder::new()
                .name("strom-dir-remover".to_string())
                .spawn(move || {
                    for dir in receiver {
                        remove_dir(&dir);
                    }
                });
            if let Err(error) = started {
                tracing::error!(%error, "cannot start the directory remover; deleted partitions are removed at the next start");
            }
            DirectoryRemover {
                queue: Mutex::new(sender),
            }
        })
    }

    fn remove(&self, dir: PathBuf) {
        if self.queue.lock().send(dir).is_err() {
            tracing::error!(
                "the directory remover is gone; deleted partitions are removed at the next start"
            );
        }
    }
}

fn remove_dir(dir: &Path) {
    if let Err(error) = std::fs::remove_dir_all(dir) {
        if error.kind() != std::io::ErrorKind::NotFound {
            tracing::error!(dir = %dir.display(), %error, "cannot remove directory");
        }
    }
}

#[cfg(test)]
mod key_tests {
    use super::*;

    #[test]
    fn hosted_partitions_are_found_by_borrowed_parts() {
        let mut map: HashMap<TopicPartition, u32> = HashMap::new();
        for (i, topic) in ["a", "b", "orders"].iter().enumerate() {
            for partition in 0..3 {
                let key = TopicPartition {
                    topic: topic.to_string(),
                    partition,
                };
                map.insert(key, i as u32 * 10 + partition as u32);
            }
        }
        assert_eq!(map.get(&("orders", 2) as &dyn PartitionKey), Some(&22));
        assert_eq!(map.get(&("a", 0) as &dyn PartitionKey), Some(&0));
        assert_eq!(map.get(&("a", 3) as &dyn PartitionKey), None);
        assert_eq!(map.get(&("order", 2) as &dyn PartitionKey), None);
    }
}
