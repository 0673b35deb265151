//! `strom-connect`: data integration without writing code. Pipelines of a source, optional
//! transforms and a sink, declared in TOML and run by `strom connect run`, or embedded in a
//! server through [`Pipelines`].
//!
//! Owns: the pipeline file format ([`config`]), the runner and its progress ([`runner`],
//! [`status`]), the Kafka source (a member of the pipeline's consumer group through
//! `strom_client::Consumer::subscribe`, committing only what its sink made durable), Flume-like interceptors ([`transform`]), the Parquet and JSON-lines sinks in a
//! Hive layout on a local directory or an object store ([`sink`]), and the ingest sources
//! (taildir, HTTP, stdin: [`source`]).
//!
//! Never: depends on the broker (it talks to any Kafka cluster through `strom-client`), writes
//! a file that a reader could see half written, or commits an offset before the records below
//! it are in a finished file.
//!
//! ```no_run
//! # async fn example() -> strom_connect::Result<()> {
//! use strom_connect::{PipelineConfig, Pipelines};
//! let config = PipelineConfig::from_toml(r#"
//!     [source]
//!     type = "kafka"
//!     topics = ["game-events"]
//!     group = "lake"
//!     [sink]
//!     type = "parquet"
//!     root = "/data/lake"
//! "#)?;
//! let pipelines = Pipelines::start("127.0.0.1:9092", vec![config]);
//! println!("{}", pipelines.status_json());
//! pipelines.stop().await;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

pub mod config;
mod error;
mod kafka_source;
mod pipelines;
pub mod record;
pub mod runner;
pub mod sink;
pub mod source;
pub mod status;
pub mod transform;

pub use config::{PipelineConfig, SinkConfig, SourceConfig};
pub use error::{Error, Result};
pub use pipelines::{serve_status, Pipelines, Statuses};
pub use record::Record;
pub use status::{Status, StatusSnapshot};
