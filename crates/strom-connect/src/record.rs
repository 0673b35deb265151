//! The record that flows through a pipeline, from any source to any sink.

use bytes::Bytes;
use strom_client::{ConsumerRecord, Header, ProducerRecord};

/// One record in flight. Records from a Kafka source carry their partition and offset;
/// records from files, HTTP or stdin have `partition == -1` and `offset == -1` until a sink
/// produces them.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Topic (the source topic, or the target topic for sources that produce).
    pub topic: String,
    /// Partition, or -1 when not read from Kafka.
    pub partition: i32,
    /// Offset, or -1 when not read from Kafka.
    pub offset: i64,
    /// Timestamp in ms since the epoch.
    pub timestamp_ms: i64,
    /// Key.
    pub key: Option<Bytes>,
    /// Value.
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<Header>,
}

impl Record {
    /// A record with a value for `topic`, stamped now.
    pub fn new(topic: impl Into<String>, value: impl Into<Bytes>) -> Record {
        Record {
            topic: topic.into(),
            partition: -1,
            offset: -1,
            timestamp_ms: strom_client::now_ms(),
            key: None,
            value: Some(value.into()),
            headers: Vec::new(),
        }
    }

    /// Bytes of key, value and headers (what progress counts as bytes).
    pub fn size_bytes(&self) -> usize {
        self.key.as_ref().map_or(0, Bytes::len)
            + self.value.as_ref().map_or(0, Bytes::len)
            + self
                .headers
                .iter()
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, Bytes::len))
                .sum::<usize>()
    }

    /// The record to produce (partition left to the partitioner).
    pub fn into_producer_record(self) -> ProducerRecord {
        ProducerRecord {
            topic: self.topic,
            partition: None,
            key: self.key,
            value: self.value,
            headers: self.headers,
            timestamp_ms: Some(self.timestamp_ms),
        }
    }
}

impl From<ConsumerRecord> for Record {
    fn from(r: ConsumerRecord) -> Record {
        Record {
            topic: r.topic.to_string(),
            partition: r.partition,
            offset: r.offset,
            timestamp_ms: r.timestamp_ms,
            key: r.key,
            value: r.value,
            headers: r.headers,
        }
    }
}
