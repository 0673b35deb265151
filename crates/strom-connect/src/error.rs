//! The crate's error type.

/// What can go wrong in a pipeline.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The pipeline file or one-liner options are wrong; the message says what to fix.
    #[error("config: {0}")]
    Config(String),
    /// The Kafka side (broker unreachable, a request refused).
    #[error("kafka: {0}")]
    Kafka(#[from] strom_client::Error),
    /// A local file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The object store refused or failed a request.
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    /// Encoding a Parquet file failed.
    #[error("parquet: {0}")]
    Parquet(String),
}

impl Error {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// `Result<T, Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
