//! `strom-storage` owns partition logs on disk: record batches in segment files, their sparse
//! offset and time indexes, the leader epoch cache, checkpoints, crash recovery, retention and
//! DeleteRecords.
//!
//! What it must never do: touch the network, run an async runtime, decode records on the
//! append or fetch path (batch headers and CRCs only), panic on bad disk data (corrupt files
//! are an expected operating error: they are truncated or rebuilt and logged), or allocate per
//! record.
//!
//! Start with [`PartitionLog`] (the log of one partition) and [`batch`] (the v2 batch header,
//! produce-time validation and offset assignment).
//!
//! On disk, a partition directory holds `<base offset>.log` segments (20-digit names, as in
//! Kafka) with `.index` (relative offset -> position, 8-byte entries) and `.timeindex`
//! (timestamp -> relative offset, 12-byte entries) files, a `leader-epoch-checkpoint` and a
//! `partition.checkpoint` (recovery point, log start offset, high watermark), producer state
//! snapshots (`<offset>.snapshot`, see [`producer_state`]) and, for compacted logs, a
//! `cleaner-offset-checkpoint` (see [`cleaner`]).

#![deny(missing_docs)]

pub mod batch;
pub mod cache_window;
#[cfg(test)]
mod cache_window_tests;
pub mod checkpoint;
pub mod cleaner;
#[cfg(test)]
mod cleaner_tests;
pub mod config;
pub mod epoch;
mod error;
#[cfg(test)]
mod file_budget_tests;
mod index;
mod io;
pub mod log;
pub mod producer_state;
#[cfg(test)]
mod producer_tests;
mod records;
mod segment;
#[cfg(any(test, feature = "test-support"))]
pub mod test_support;
#[cfg(test)]
mod tests;
mod time_index;

pub use cache_window::{CacheTrimStats, CacheTrimmer};
pub use cleaner::CleanStats;
pub use config::{CompactionConfig, LogConfig};
pub use error::StorageError;
pub use io::{default_open_files_max, open_files_limit, FileCache, FileCacheStats, FileRegion};
pub use log::{
    AppendInfo, AppendOutcome, LogOpenOptions, PartitionLog, PendingFlush, ReadPlan, RetiredFiles,
};
pub use producer_state::{ProducerStateError, Verdict};
