//! The pipeline file: a `[source]`, optional `[[transform]]` steps, a `[sink]`.
//!
//! ```toml
//! name = "lake"
//!
//! [source]
//! type = "kafka"
//! topics = ["game-events", "alerts"]
//! group = "lake"
//!
//! [[transform]]
//! type = "hash"
//! fields = ["$.ip"]
//!
//! [sink]
//! type = "parquet"
//! root = "s3://bucket/lake"   # or a directory, or file:///dir
//! mode = "json"
//! roll_records = 100000
//! roll_secs = 300
//! ```

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::sink::encode::{ColumnType, JsonSchema, Mode};
use crate::sink::file::RollPolicy;
use crate::sink::store::S3Options;
use crate::transform::{Chain, TransformConfig};

/// One pipeline.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Name in logs and `GET /connect` (default: the file name or `pipeline`).
    pub name: Option<String>,
    /// Where records come from.
    pub source: SourceConfig,
    /// Transforms, in order.
    #[serde(default)]
    pub transform: Vec<TransformConfig>,
    /// Where records go.
    pub sink: SinkConfig,
}

/// Where a Kafka source starts a partition that has no committed offset and no files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Start {
    /// The log start offset.
    #[default]
    Earliest,
    /// The end: only new records.
    Latest,
}

/// A source.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SourceConfig {
    /// Topics of the cluster, read by a consumer group.
    Kafka {
        /// Topics.
        topics: Vec<String>,
        /// Consumer group (its committed offsets show the sink's progress).
        group: String,
        /// Start of partitions with no progress yet.
        #[serde(default)]
        start: Start,
    },
    /// Lines appended to files matching a glob (`*` and `?` in the file name only), following
    /// rotation, positions kept in a file.
    Taildir {
        /// `DIR/PATTERN`, e.g. `/var/log/game/*.log*`.
        files: String,
        /// The positions file (JSON, replaced atomically).
        positions: PathBuf,
        /// How often to look for new lines, in ms (default 200).
        poll_ms: Option<u64>,
    },
    /// An HTTP endpoint: `POST /` (or `/topics/NAME`) with JSON (an object or an array of
    /// objects) or lines; `?key=K` or `key_field` gives keys.
    Http {
        /// Listen address.
        addr: String,
        /// JSON field whose value is the key.
        key_field: Option<String>,
    },
    /// Lines of standard input; the pipeline ends at end of input.
    Stdin {
        /// Split each line into key and value at the first occurrence of this.
        key_separator: Option<String>,
    },
}

/// A sink.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum SinkConfig {
    /// Parquet files in a Hive layout.
    Parquet(FileSinkConfig),
    /// JSON-lines files in a Hive layout.
    Jsonl(FileSinkConfig),
    /// A topic (or the topic a `route` transform picked).
    Kafka {
        /// Target topic.
        topic: String,
        /// `acks` (default all).
        acks: Option<String>,
        /// `compression.type` (default none).
        compression: Option<String>,
    },
}

/// Settings of the file sinks.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// A directory, `file:///dir` or `s3://bucket/prefix`.
    pub root: String,
    /// `raw` (default) or `json`.
    #[serde(default)]
    pub mode: Mode,
    /// Rows per file at most (default 100000).
    pub roll_records: Option<usize>,
    /// Record bytes per file at most (default 64 MiB).
    pub roll_bytes: Option<usize>,
    /// Seconds a file stays open at most (default 300).
    pub roll_secs: Option<u64>,
    /// Parquet compression: `snappy` (default), `zstd` or `none`.
    pub compression: Option<String>,
    /// JSON-mode columns as `"name:type"` (bool, long, double, string); inferred from the first
    /// file of each topic when absent.
    pub schema: Option<Vec<String>>,
    /// Object store options.
    pub s3: Option<S3Options>,
}

impl FileSinkConfig {
    /// The roll policy.
    pub fn roll(&self) -> Result<RollPolicy> {
        let defaults = RollPolicy::default();
        let roll = RollPolicy {
            records_max: self.roll_records.unwrap_or(defaults.records_max),
            bytes_max: self.roll_bytes.unwrap_or(defaults.bytes_max),
            age_max: self.roll_secs.map_or(defaults.age_max, Duration::from_secs),
            buffer_bytes_max: defaults.buffer_bytes_max.max(self.roll_bytes.unwrap_or(0)),
        };
        if roll.records_max == 0 || roll.bytes_max == 0 || roll.age_max.is_zero() {
            return Err(Error::Config(
                "roll_records, roll_bytes and roll_secs must be above 0".to_string(),
            ));
        }
        Ok(roll)
    }

    /// The declared JSON schema, if any.
    pub fn declared_schema(&self) -> Result<Option<JsonSchema>> {
        let Some(columns) = &self.schema else {
            return Ok(None);
        };
        let mut schema = Vec::with_capacity(columns.len());
        for column in columns {
            let (name, kind) = column.split_once(':').ok_or_else(|| {
                Error::Config(format!("schema column {column:?}: write name:type"))
            })?;
            let kind: ColumnType =
                serde_json::from_value(serde_json::Value::String(kind.trim().to_string()))
                    .map_err(|_| {
                        Error::Config(format!(
                            "schema column {column:?}: type must be bool, long, double or string"
                        ))
                    })?;
            schema.push((name.trim().to_string(), kind));
        }
        Ok(Some(schema))
    }
}

impl PipelineConfig {
    /// Parses and checks a pipeline file's text.
    pub fn from_toml(text: &str) -> Result<PipelineConfig> {
        let config: PipelineConfig =
            toml::from_str(text).map_err(|e| Error::Config(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: combinations and values.
    pub fn validate(&self) -> Result<()> {
        Chain::new(&self.transform)?;
        let kafka_source = matches!(self.source, SourceConfig::Kafka { .. });
        if let SourceConfig::Kafka { topics, group, .. } = &self.source {
            if topics.is_empty() || group.is_empty() {
                return Err(Error::Config(
                    "a kafka source needs topics and a group".to_string(),
                ));
            }
        }
        match &self.sink {
            SinkConfig::Parquet(file) | SinkConfig::Jsonl(file) => {
                if !kafka_source {
                    return Err(Error::Config(
                        "file sinks take a kafka source (ingest to a topic first)".to_string(),
                    ));
                }
                file.roll()?;
                file.declared_schema()?;
                if let Some(c) = &file.compression {
                    crate::sink::encode::parse_compression(c)?;
                }
            }
            SinkConfig::Kafka { topic, .. } => {
                if topic.is_empty() {
                    return Err(Error::Config("a kafka sink needs a topic".to_string()));
                }
            }
        }
        Ok(())
    }

    /// The name to show.
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| "pipeline".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_pipeline_parses() {
        let config = PipelineConfig::from_toml(
            r#"
            name = "lake"
            [source]
            type = "kafka"
            topics = ["a", "b"]
            group = "g"
            [[transform]]
            type = "hash"
            fields = ["$.ip"]
            [sink]
            type = "parquet"
            root = "s3://bucket/x"
            mode = "json"
            roll_records = 10
            schema = ["a:long", "b:string"]
            s3 = { endpoint = "http://127.0.0.1:9000", allow_http = true }
            "#,
        )
        .unwrap();
        let SinkConfig::Parquet(file) = &config.sink else {
            panic!()
        };
        assert_eq!(file.roll().unwrap().records_max, 10);
        assert_eq!(
            file.declared_schema().unwrap().unwrap()[0],
            ("a".to_string(), ColumnType::Long)
        );
    }

    #[test]
    fn wrong_combinations_and_typos_are_refused() {
        let taildir_to_parquet =
            "[source]\ntype = \"stdin\"\n[sink]\ntype = \"parquet\"\nroot = \"/tmp/x\"\n";
        assert!(PipelineConfig::from_toml(taildir_to_parquet).is_err());
        let typo =
            "[source]\ntype = \"stdin\"\n[sink]\ntype = \"kafka\"\ntopic = \"t\"\ntopik = \"x\"\n";
        assert!(PipelineConfig::from_toml(typo).is_err());
        let zero = "[source]\ntype = \"kafka\"\ntopics = [\"t\"]\ngroup = \"g\"\n[sink]\ntype = \"jsonl\"\nroot = \"/x\"\nroll_records = 0\n";
        assert!(PipelineConfig::from_toml(zero).is_err());
        let bad_schema = "[source]\ntype = \"kafka\"\ntopics = [\"t\"]\ngroup = \"g\"\n[sink]\ntype = \"parquet\"\nroot = \"/x\"\nschema = [\"a:int128\"]\n";
        assert!(PipelineConfig::from_toml(bad_schema).is_err());
        let ok = "[source]\ntype = \"stdin\"\n[sink]\ntype = \"kafka\"\ntopic = \"t\"\n";
        assert!(PipelineConfig::from_toml(ok).is_ok());
    }
}
