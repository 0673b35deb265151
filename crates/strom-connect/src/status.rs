//! A pipeline's progress: what the logs print and `GET /connect` serves.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;

/// Live counters of one pipeline, shared with whoever reports them.
#[derive(Debug, Default)]
pub struct Status {
    /// Pipeline name.
    pub name: String,
    /// Records read from the source.
    pub records_in: AtomicU64,
    /// Records written by the sink (rows, lines or produced records).
    pub records_out: AtomicU64,
    /// Bytes (keys, values, headers) written by the sink.
    pub bytes_out: AtomicU64,
    /// Records dropped by a filter.
    pub records_filtered: AtomicU64,
    /// Files finished (file sinks).
    pub files: AtomicU64,
    /// Records behind the high watermarks (Kafka sources), -1 when unknown.
    pub lag: AtomicI64,
    state: Mutex<String>,
    last_error: Mutex<Option<String>>,
}

/// A point-in-time copy of a [`Status`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StatusSnapshot {
    /// Pipeline name.
    pub name: String,
    /// `starting`, `running`, `stopped` or `failed`.
    pub state: String,
    /// Records read.
    pub records_in: u64,
    /// Records written.
    pub records_out: u64,
    /// Bytes written.
    pub bytes_out: u64,
    /// Records dropped by filters.
    pub records_filtered: u64,
    /// Files finished.
    pub files: u64,
    /// Lag, -1 when unknown.
    pub lag: i64,
    /// The error that stopped the pipeline.
    pub last_error: Option<String>,
}

impl Status {
    /// A status in state `starting`.
    pub fn new(name: impl Into<String>) -> Arc<Status> {
        let status = Status {
            name: name.into(),
            lag: AtomicI64::new(-1),
            ..Status::default()
        };
        *status.state.lock() = "starting".to_string();
        Arc::new(status)
    }

    /// Sets the state.
    pub fn set_state(&self, state: &str) {
        *self.state.lock() = state.to_string();
    }

    /// Records the error that stopped the pipeline.
    pub fn fail(&self, error: &str) {
        *self.last_error.lock() = Some(error.to_string());
        self.set_state("failed");
    }

    /// Adds to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// A copy of the counters.
    pub fn snapshot(&self) -> StatusSnapshot {
        StatusSnapshot {
            name: self.name.clone(),
            state: self.state.lock().clone(),
            records_in: self.records_in.load(Ordering::Relaxed),
            records_out: self.records_out.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            records_filtered: self.records_filtered.load(Ordering::Relaxed),
            files: self.files.load(Ordering::Relaxed),
            lag: self.lag.load(Ordering::Relaxed),
            last_error: self.last_error.lock().clone(),
        }
    }

    /// Logs one progress line.
    pub fn log_progress(&self) {
        let s = self.snapshot();
        tracing::info!(
            pipeline = %s.name, records_in = s.records_in, records_out = s.records_out, bytes_out = s.bytes_out,
            filtered = s.records_filtered, files = s.files, lag = s.lag, "progress"
        );
    }
}
