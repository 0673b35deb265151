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
    /// `segment_size_bytes` clamped to `[1, SEGMENT_SIZE_BYTES_MAX]`.
    pub fn segment_size_bytes_effective(&self) -> u64 {
        self.segment_size_bytes.clamp(1, SEGMENT_SIZE_BYTES_MAX)
    }
}
