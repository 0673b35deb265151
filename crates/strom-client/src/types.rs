//! Plain data types shared by the producer, consumer and admin.

use bytes::Bytes;

pub use kafka_protocol::records::Compression;

/// A topic and a partition index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// `TopicPartition { topic, partition }`.
    pub fn new(topic: impl Into<String>, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// A record header: a string key and an optional value.
pub type Header = (String, Option<Bytes>);

/// How many replicas must have a record before the broker acknowledges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// `acks=0`: no answer at all; offsets are unknown (-1).
    None,
    /// `acks=1`: the leader has it.
    Leader,
    /// `acks=all` (-1): every in-sync replica has it.
    #[default]
    All,
}

impl Acks {
    /// The wire value: 0, 1 or -1.
    pub fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

impl std::str::FromStr for Acks {
    type Err = String;
    fn from_str(s: &str) -> Result<Acks, String> {
        match s {
            "0" | "none" => Ok(Acks::None),
            "1" | "leader" => Ok(Acks::Leader),
            "-1" | "all" => Ok(Acks::All),
            _ => Err(format!("acks must be 0, 1, -1 or all, not {s:?}")),
        }
    }
}

/// Parses a compression name as Kafka spells it (`none`, `gzip`, `snappy`, `lz4`, `zstd`).
pub fn parse_compression(s: &str) -> Result<Compression, String> {
    match s {
        "none" => Ok(Compression::None),
        "gzip" => Ok(Compression::Gzip),
        "snappy" => Ok(Compression::Snappy),
        "lz4" => Ok(Compression::Lz4),
        "zstd" => Ok(Compression::Zstd),
        _ => Err(format!(
            "compression must be none, gzip, snappy, lz4 or zstd, not {s:?}"
        )),
    }
}

/// Kafka's name of a compression codec.
pub fn compression_name(compression: Compression) -> &'static str {
    match compression {
        Compression::None => "none",
        Compression::Gzip => "gzip",
        Compression::Snappy => "snappy",
        Compression::Lz4 => "lz4",
        Compression::Zstd => "zstd",
    }
}

/// A record to produce.
///
/// ```
/// use strom_client::ProducerRecord;
/// let record = ProducerRecord::new("events", "hello").key("user-1").header("source", "docs");
/// assert_eq!(record.key.as_deref(), Some(&b"user-1"[..]));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ProducerRecord {
    /// Target topic.
    pub topic: String,
    /// Explicit partition; `None` lets the partitioner choose.
    pub partition: Option<i32>,
    /// Key (`None` is Kafka's null key).
    pub key: Option<Bytes>,
    /// Value (`None` is a tombstone).
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<Header>,
    /// Create time in ms since the epoch; `None` means now.
    pub timestamp_ms: Option<i64>,
}

impl ProducerRecord {
    /// A record with a value and no key.
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> ProducerRecord {
        ProducerRecord {
            topic: topic.into(),
            value: Some(value.into()),
            ..ProducerRecord::default()
        }
    }

    /// Sets the key.
    pub fn key(mut self, key: impl Into<Bytes>) -> ProducerRecord {
        self.key = Some(key.into());
        self
    }

    /// Sets an explicit partition.
    pub fn partition(mut self, partition: i32) -> ProducerRecord {
        self.partition = Some(partition);
        self
    }

    /// Adds a header.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> ProducerRecord {
        self.headers.push((key.into(), Some(value.into())));
        self
    }

    /// Sets the create timestamp.
    pub fn timestamp_ms(mut self, timestamp_ms: i64) -> ProducerRecord {
        self.timestamp_ms = Some(timestamp_ms);
        self
    }

    /// Bytes this record adds to a batch, roughly (for batching and memory accounting).
    pub fn size_estimate_bytes(&self) -> usize {
        const RECORD_OVERHEAD_BYTES: usize = 21;
        RECORD_OVERHEAD_BYTES
            + self.key.as_ref().map_or(0, Bytes::len)
            + self.value.as_ref().map_or(0, Bytes::len)
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, Bytes::len) + 2)
                .sum::<usize>()
    }
}

/// A record to produce, borrowed: [`Producer::send_ref`](crate::Producer::send_ref) encodes it
/// straight into its batch, so sending it copies its bytes once and allocates nothing per
/// record.
///
/// ```
/// use strom_client::RecordRef;
/// let record = RecordRef::new("events", b"hello").key(b"user-1");
/// assert_eq!(record.key, Some(&b"user-1"[..]));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RecordRef<'a> {
    /// Target topic.
    pub topic: &'a str,
    /// Explicit partition; `None` lets the partitioner choose.
    pub partition: Option<i32>,
    /// Key (`None` is Kafka's null key).
    pub key: Option<&'a [u8]>,
    /// Value (`None` is a tombstone).
    pub value: Option<&'a [u8]>,
    /// Headers, in order (duplicate keys are kept).
    pub headers: &'a [Header],
    /// Create time in ms since the epoch; `None` means now.
    pub timestamp_ms: Option<i64>,
}

impl<'a> RecordRef<'a> {
    /// A record with a value and no key.
    pub fn new(topic: &'a str, value: &'a [u8]) -> RecordRef<'a> {
        RecordRef {
            topic,
            value: Some(value),
            ..RecordRef::default()
        }
    }

    /// Sets the key.
    pub fn key(mut self, key: &'a [u8]) -> RecordRef<'a> {
        self.key = Some(key);
        self
    }

    /// Sets an explicit partition.
    pub fn partition(mut self, partition: i32) -> RecordRef<'a> {
        self.partition = Some(partition);
        self
    }

    /// Sets the headers.
    pub fn headers(mut self, headers: &'a [Header]) -> RecordRef<'a> {
        self.headers = headers;
        self
    }

    /// Sets the create timestamp.
    pub fn timestamp_ms(mut self, timestamp_ms: i64) -> RecordRef<'a> {
        self.timestamp_ms = Some(timestamp_ms);
        self
    }
}

impl ProducerRecord {
    /// This record, borrowed (what [`Producer::send`](crate::Producer::send) encodes).
    pub fn borrowed(&self) -> RecordRef<'_> {
        RecordRef {
            topic: &self.topic,
            partition: self.partition,
            key: self.key.as_deref(),
            value: self.value.as_deref(),
            headers: &self.headers,
            timestamp_ms: self.timestamp_ms,
        }
    }
}

/// Where a produced record landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset, or -1 with `acks=0`.
    pub offset: i64,
    /// The broker's append time with `LogAppendTime` topics, else the create time.
    pub timestamp_ms: i64,
}

/// A record read by a [`Consumer`](crate::Consumer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    /// Topic (shared by the records of a partition: cloning it costs no allocation).
    pub topic: std::sync::Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Timestamp in ms since the epoch.
    pub timestamp_ms: i64,
    /// Whether the timestamp is the broker's append time (else the producer's create time).
    pub log_append_time: bool,
    /// Key.
    pub key: Option<Bytes>,
    /// Value.
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<Header>,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
