//! Per-partition log configuration (Kafka's topic-level log configs).

/// Kafka caps `segment.bytes` at `i32::MAX` so that file positions fit the 4-byte index entries.
pub const SEGMENT_SIZE_BYTES_MAX: u64 = i32::MAX as u64;

/// Configuration of one partition log. Every field is named after the Kafka topic config it
/// mirrors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment before it would grow past this (default 1 GiB).
    pub segment_size_bytes: u64,
    /// `segment.ms`: roll the active segment once it is this old (default 7 days).
    pub segment_ms: i64,
    /// `retention.bytes`: delete old segments while the log is larger (-1: unlimited).
    pub retention_bytes: i64,
    /// `retention.ms`: delete segments whose newest record is older (-1: unlimited; default 7 days).
    pub retention_ms: i64,
    /// `index.interval.bytes`: bytes appended between two sparse index entries (default 4096).
    pub index_interval_bytes: u32,
    /// `segment.index.bytes`: capacity of each index file; the segment rolls when one is full
    /// (default 10 MiB).
    pub segment_index_size_bytes: u32,
    /// `flush.messages`: fsync after this many records (default `i64::MAX`: never).
    pub flush_messages: i64,
    /// `flush.ms`: fsync when the last flush is this old (default `i64::MAX`: never).
    pub flush_ms: i64,
    /// `file.delete.delay.ms`: accepted for compatibility; segment files are deleted at once
    /// because no reader can hold a segment across a `&mut` operation.
    pub file_delete_delay_ms: i64,
}

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            segment_size_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * DAY_MS,
            retention_bytes: -1,
            retention_ms: 7 * DAY_MS,
            index_interval_bytes: 4096,
            segment_index_size_bytes: 10 * 1024 * 1024,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            file_delete_delay_ms: 60_000,
        }
    }
}

impl LogConfig {
    /// Whether a flush policy (`flush.messages` or `flush.ms`) makes appends durable, so that
    /// a segment roll must be durable at once too.
    pub fn flushes(&self) -> bool {
        self.flush_messages != i64::MAX || self.flush_ms != i64::MAX
    }

    /// `segment_size_bytes` clamped to `[1, SEGMENT_SIZE_BYTES_MAX]`.
    pub fn segment_size_bytes_effective(&self) -> u64 {
        self.segment_size_bytes.clamp(1, SEGMENT_SIZE_BYTES_MAX)
    }
}

/// Kafka's default `producer.id.expiration.ms`: producer state idle this long is dropped.
pub const PRODUCER_ID_EXPIRATION_MS_DEFAULT: i64 = DAY_MS;

/// Memory the cleaner may spend on its key -> latest offset map for one run (Kafka's
/// `log.cleaner.dedupe.buffer.size`, 128 MiB). When the dirty section holds more distinct key
/// bytes, a run cleans up to the segment where the map filled and the next run continues.
pub const CLEANER_OFFSET_MAP_BYTES_MAX: usize = 128 * 1024 * 1024;

/// Cleanup policy and log compaction settings of one partition log (Kafka's `cleanup.policy`,
/// `delete.retention.ms`, `min.compaction.lag.ms`, `max.compaction.lag.ms`,
/// `min.cleanable.dirty.ratio`), plus the broker-level `producer.id.expiration.ms`.
///
/// Kept apart from [`LogConfig`] so that code building a `LogConfig` with a struct literal keeps
/// compiling; [`crate::PartitionLog::set_compaction_config`] installs it.
#[derive(Debug, Clone, PartialEq)]
pub struct CompactionConfig {
    /// `cleanup.policy` contains `compact`: the cleaner keeps the last record of each key.
    pub cleanup_policy_compact: bool,
    /// `cleanup.policy` contains `delete`: retention by time and size deletes old segments.
    pub cleanup_policy_delete: bool,
    /// `delete.retention.ms`: how long a tombstone survives after the clean that first saw it
    /// (Kafka's delete horizon; default 1 day).
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: a segment is cleanable only once its newest batch is this old
    /// (default 0).
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a dirty segment whose first batch is this old makes the log
    /// need cleaning whatever its dirty ratio; the active segment also rolls at this age
    /// (default `i64::MAX`: never).
    pub max_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`: the log needs cleaning when dirty bytes / cleanable bytes
    /// reaches this (default 0.5).
    pub min_cleanable_dirty_ratio: f64,
    /// `producer.id.expiration.ms`: producer state idle this long is dropped by
    /// [`crate::PartitionLog::remove_expired_producers`] (default 1 day).
    pub producer_id_expiration_ms: i64,
}

impl Default for CompactionConfig {
    fn default() -> CompactionConfig {
        CompactionConfig {
            cleanup_policy_compact: false,
            cleanup_policy_delete: true,
            delete_retention_ms: DAY_MS,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: 0.5,
            producer_id_expiration_ms: PRODUCER_ID_EXPIRATION_MS_DEFAULT,
        }
    }
}

impl CompactionConfig {
    /// Parses Kafka's `cleanup.policy` value (`delete`, `compact`, `compact,delete`, in any
    /// order, spaces allowed) into the two flags. `None` for an unknown or empty policy.
    pub fn parse_cleanup_policy(value: &str) -> Option<(bool, bool)> {
        let mut compact = false;
        let mut delete = false;
        for part in value.split(',').map(str::trim) {
            match part {
                "compact" => compact = true,
                "delete" => delete = true,
                _ => return None,
            }
        }
        Some((compact, delete))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_kafka_and_policies_parse() {
        let config = CompactionConfig::default();
        assert!(!config.cleanup_policy_compact && config.cleanup_policy_delete);
        assert_eq!(config.delete_retention_ms, 86_400_000);
        assert_eq!(config.min_compaction_lag_ms, 0);
        assert_eq!(config.max_compaction_lag_ms, i64::MAX);
        assert_eq!(config.min_cleanable_dirty_ratio, 0.5);
        assert_eq!(config.producer_id_expiration_ms, 86_400_000);
        assert_eq!(
            CompactionConfig::parse_cleanup_policy("compact"),
            Some((true, false))
        );
        assert_eq!(
            CompactionConfig::parse_cleanup_policy("delete"),
            Some((false, true))
        );
        assert_eq!(
            CompactionConfig::parse_cleanup_policy("compact, delete"),
            Some((true, true))
        );
        assert_eq!(
            CompactionConfig::parse_cleanup_policy("delete,compact"),
            Some((true, true))
        );
        assert_eq!(CompactionConfig::parse_cleanup_policy("compacted"), None);
        assert_eq!(CompactionConfig::parse_cleanup_policy(""), None);
    }
}
