//! The file sinks (Parquet, JSON lines): per partition one open file of consecutive offsets in
//! one hour bucket, rolled by records, bytes or age, written atomically under a name made of
//! its offset range.
//!
//! Exactly once across crashes and rebalances: when a sink is given a partition (at start, or
//! when it moves from another sink of the group) it deletes the partition's temporary files a
//! crash left ([`FileSink::prepare`]), lists its finished files and starts it after the last
//! offset already on disk (or at the group's committed offset, whichever is later). A sink
//! that loses a partition drops its open file ([`FileSink::discard`]): the records are read
//! again by the new owner. The group's committed offsets trail the files (committed only after
//! a rename), so the files are the truth; commits give lag to tools and a start point when the
//! root is new.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parquet::basic::Compression;
use strom_client::TopicPartition;

use crate::error::{Error, Result};
use crate::record::Record;
use crate::sink::encode::{self, JsonSchema, Mode};
use crate::sink::layout;
use crate::sink::store::Store;

/// File format of a file sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Apache Parquet.
    Parquet(Compression),
    /// JSON lines.
    Jsonl,
}

impl Format {
    fn ext(self) -> &'static str {
        match self {
            Format::Parquet(_) => "parquet",
            Format::Jsonl => "jsonl",
        }
    }
}

/// When an open file is finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollPolicy {
    /// Rows per file at most.
    pub records_max: usize,
    /// Record bytes (keys, values, headers) per file at most.
    pub bytes_max: usize,
    /// Age of an open file at most.
    pub age_max: Duration,
    /// Record bytes held in all open files at most; past it the largest file is finished early.
    pub buffer_bytes_max: usize,
}

impl Default for RollPolicy {
    fn default() -> Self {
        RollPolicy {
            records_max: 100_000,
            bytes_max: 64 * 1024 * 1024,
            age_max: Duration::from_secs(300),
            buffer_bytes_max: 256 * 1024 * 1024,
        }
    }
}

struct OpenFile {
    bucket: i64,
    first_offset: i64,
    last_offset: i64,
    records: Vec<Record>,
    bytes: usize,
    opened: Instant,
}

/// Counters of a file sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileSinkCounts {
    /// Files finished.
    pub files: u64,
    /// Rows in finished files.
    pub rows: u64,
}

/// A Parquet or JSON-lines sink into a Hive layout.
pub struct FileSink {
    store: Store,
    format: Format,
    mode: Mode,
    roll: RollPolicy,
    declared_schema: Option<JsonSchema>,
    schemas: HashMap<String, Arc<JsonSchema>>,
    open: BTreeMap<TopicPartition, OpenFile>,
    buffered_bytes: usize,
    counts: FileSinkCounts,
}

const SCHEMA_FILE: &str = "_strom_schema.json";

impl FileSink {
    /// A sink writing `format` files under `store`.
    pub fn new(
        store: Store,
        format: Format,
        mode: Mode,
        roll: RollPolicy,
        declared_schema: Option<JsonSchema>,
    ) -> FileSink {
        FileSink {
            store,
            format,
            mode,
            roll,
            declared_schema,
            schemas: HashMap::new(),
            open: BTreeMap::new(),
            buffered_bytes: 0,
            counts: FileSinkCounts::default(),
        }
    }

    /// Files and rows finished so far.
    pub fn counts(&self) -> FileSinkCounts {
        self.counts
    }

    /// The root, for logs.
    pub fn describe(&self) -> String {
        self.store.describe()
    }

    /// Loads the JSON schemas persisted for `topics` (JSON mode without a declared schema), so
    /// a restarted sink keeps the columns of its earlier files.
    pub async fn load_schemas(&mut self, topics: &[String]) -> Result<()> {
        if self.mode != Mode::Json || self.declared_schema.is_some() {
            return Ok(());
        }
        for topic in topics {
            if let Some(schema) = self.load_schema(topic).await? {
                self.schemas.insert(topic.clone(), Arc::new(schema));
            }
        }
        Ok(())
    }

    /// Prepares `partitions`, just given to this sink, to be written: removes the partial
    /// files a crash left for them, and returns per partition the offset after the last one
    /// already in a finished file (absent when none is).
    pub async fn prepare(
        &mut self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, i64>> {
        let ext = self.format.ext();
        let mut by_topic: BTreeMap<&str, BTreeSet<i32>> = BTreeMap::new();
        for tp in partitions {
            by_topic.entry(&tp.topic).or_default().insert(tp.partition);
        }
        let mut next = BTreeMap::new();
        for (topic, wanted) in by_topic {
            self.store.remove_temporaries(topic, &wanted).await?;
            let mut ranges: BTreeMap<i32, Vec<(i64, i64)>> = BTreeMap::new();
            for (_, name) in self.store.list(topic).await? {
                if let Some((partition, first, last)) = layout::parse_file_name(&name, ext) {
                    if wanted.contains(&partition) {
                        ranges.entry(partition).or_default().push((first, last));
                    }
                }
            }
            for (partition, mut ranges) in ranges {
                ranges.sort_unstable();
                for pair in ranges.windows(2) {
                    if pair[1].0 <= pair[0].1 {
                        tracing::warn!(topic, partition, earlier = ?pair[0], later = ?pair[1], "files with overlapping offset ranges");
                    }
                }
                let last = ranges.iter().map(|r| r.1).max().expect("non-empty");
                next.insert(TopicPartition::new(topic, partition), last + 1);
            }
        }
        Ok(next)
    }

    /// Drops `tp`'s open file unwritten (the partition went to another sink, whose start is
    /// after the last finished file); returns how many records it held.
    pub fn discard(&mut self, tp: &TopicPartition) -> usize {
        let Some(file) = self.open.remove(tp) else {
            return 0;
        };
        self.buffered_bytes -= file.bytes;
        file.records.len()
    }

    /// The partitions with an open file.
    pub fn open_partitions(&self) -> Vec<TopicPartition> {
        self.open.keys().cloned().collect()
    }

    async fn load_schema(&self, topic: &str) -> Result<Option<JsonSchema>> {
        let relative = format!("{topic}/{SCHEMA_FILE}");
        let Some(bytes) = self.store.read(&relative).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            Error::Config(format!(
                "{relative} under {} is not a schema: {e}",
                self.store.describe()
            ))
        })
    }

    /// The offset from which `tp` is not yet in a finished file, if a file is open for it.
    pub fn open_first_offset(&self, tp: &TopicPartition) -> Option<i64> {
        self.open.get(tp).map(|f| f.first_offset)
    }

    /// Adds `record` (read at `record.offset` of `tp`) to its partition's open file; `None`
    /// means the offset was consumed but its record dropped by a transform. Finishes files
    /// that are due (a new hour bucket, a full file, the memory bound).
    pub async fn write(
        &mut self,
        tp: &TopicPartition,
        offset: i64,
        record: Option<Record>,
    ) -> Result<()> {
        let Some(record) = record else {
            if let Some(file) = self.open.get_mut(tp) {
                debug_assert!(offset > file.last_offset);
                file.last_offset = offset;
            }
            return Ok(());
        };
        let bucket = layout::hour_bucket(record.timestamp_ms);
        if self.open.get(tp).is_some_and(|f| f.bucket != bucket) {
            self.finish(tp).await?;
        }
        let size = record.size_bytes();
        let file = self.open.entry(tp.clone()).or_insert_with(|| OpenFile {
            bucket,
            first_offset: offset,
            last_offset: offset,
            records: Vec::new(),
            bytes: 0,
            opened: Instant::now(),
        });
        debug_assert!(
            offset >= file.first_offset && (file.records.is_empty() || offset > file.last_offset)
        );
        file.last_offset = offset;
        file.bytes += size;
        file.records.push(record);
        self.buffered_bytes += size;
        if file.records.len() >= self.roll.records_max || file.bytes >= self.roll.bytes_max {
            self.finish(tp).await?;
        }
        while self.buffered_bytes > self.roll.buffer_bytes_max {
            let largest = self
                .open
                .iter()
                .max_by_key(|(_, f)| f.bytes)
                .map(|(tp, _)| tp.clone());
            let Some(largest) = largest else { break };
            self.finish(&largest).await?;
        }
        Ok(())
    }

    /// Finishes every open file older than the age bound (all of them with `all`).
    pub async fn finish_due(&mut self, all: bool) -> Result<()> {
        let due: Vec<TopicPartition> = self
            .open
            .iter()
            .filter(|(_, f)| all || f.opened.elapsed() >= self.roll.age_max)
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in due {
            self.finish(&tp).await?;
        }
        Ok(())
    }

    async fn schema_for(&mut self, topic: &str, records: &[Record]) -> Result<Arc<JsonSchema>> {
        if let Some(declared) = &self.declared_schema {
            return Ok(Arc::new(declared.clone()));
        }
        if let Some(schema) = self.schemas.get(topic) {
            return Ok(schema.clone());
        }
        // Another sink of the group may have inferred it since this one started.
        if let Some(schema) = self.load_schema(topic).await? {
            let schema = Arc::new(schema);
            self.schemas.insert(topic.to_string(), schema.clone());
            return Ok(schema);
        }
        let schema = encode::infer_schema(records);
        let text = serde_json::to_vec_pretty(&schema).map_err(|e| Error::Parquet(e.to_string()))?;
        self.store
            .put_atomic(&format!("{topic}/{SCHEMA_FILE}"), text)
            .await?;
        tracing::info!(
            topic,
            ?schema,
            "inferred the JSON schema from the first file"
        );
        let schema = Arc::new(schema);
        self.schemas.insert(topic.to_string(), schema.clone());
        Ok(schema)
    }

    async fn finish(&mut self, tp: &TopicPartition) -> Result<()> {
        let Some(file) = self.open.remove(tp) else {
            return Ok(());
        };
        self.buffered_bytes -= file.bytes;
        let relative = layout::file_path(
            &tp.topic,
            file.bucket,
            tp.partition,
            file.first_offset,
            file.last_offset,
            self.format.ext(),
        );
        let rows = file.records.len();
        let bytes = match self.format {
            Format::Jsonl => encode::jsonl_file(&file.records, self.mode),
            Format::Parquet(compression) => {
                let schema = match self.mode {
                    Mode::Json => self.schema_for(&tp.topic, &file.records).await?,
                    Mode::Raw => Arc::new(Vec::new()),
                };
                let mode = self.mode;
                tokio::task::spawn_blocking(move || {
                    encode::parquet_file(&file.records, mode, &schema, compression)
                })
                .await
                .map_err(|e| Error::Parquet(e.to_string()))??
            }
        };
        let size = bytes.len();
        self.store.put_atomic(&relative, bytes).await?;
        self.counts.files += 1;
        self.counts.rows += rows as u64;
        tracing::debug!(file = %relative, rows, size, "finished a file");
        Ok(())
    }
}
