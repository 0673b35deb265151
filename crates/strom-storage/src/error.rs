//! The storage error type.

use crate::batch::BatchError;

/// Everything that can go wrong in a partition log. Operating errors only: a broken invariant is a
/// bug and is asserted, not returned.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A file operation failed (disk full, permissions, a vanished directory).
    #[error("i/o error while {context}: {source}")]
    Io {
        /// What the log was doing, with the file involved.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A read asked for an offset outside `[log_start, log_end]`.
    #[error("offset {requested} is out of range [{log_start}, {log_end}]")]
    OffsetOutOfRange {
        /// The offset asked for.
        requested: i64,
        /// The log start offset at the time of the request.
        log_start: i64,
        /// The log end offset at the time of the request.
        log_end: i64,
    },
    /// A batch failed framing or validation.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// An offset argument is not acceptable for the operation (above the high watermark, not batch
    /// aligned, below the log start offset).
    #[error("invalid offset: {0}")]
    InvalidOffset(String),
    /// An idempotent batch was rejected by the producer state (sequence gap, stale epoch,
    /// unknown producer); nothing was appended.
    #[error(transparent)]
    Producer(#[from] crate::producer_state::ProducerStateError),
    /// The on-disk data is inconsistent in a way recovery could not repair (for example two
    /// segments overlap), or a record batch could not be decoded where records were needed.
    #[error("corrupt log: {0}")]
    Corrupt(String),
}

impl StorageError {
    /// Wraps an `io::Error` with what the log was doing.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> StorageError {
        StorageError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = StorageError> = std::result::Result<T, E>;
