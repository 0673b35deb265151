//! Helpers that build valid v2 record batches for tests, here and in other crates (enable the
//! `test-support` feature).

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType as RecordTimestamp,
};

use strom_protocol::record_batch::{BASE_SEQUENCE_AT, CRC_AT};

use crate::batch::{compute_crc, BatchValidation, TimestampType};

/// A v2 batch of uncompressed records with the given timestamps, each with a value of
/// `value_size_bytes` bytes (filled with the record's index). Base offset 0, no producer id.
pub fn batch_with_timestamps(timestamps_ms: &[i64], value_size_bytes: usize) -> Vec<u8> {
    encoded_batch(timestamps_ms, value_size_bytes, Compression::None)
}

/// A v2 batch of `record_count` records with timestamps `first_timestamp_ms + i`.
pub fn batch(record_count: usize, value_size_bytes: usize, first_timestamp_ms: i64) -> Vec<u8> {
    let timestamps: Vec<i64> = (0..record_count as i64)
        .map(|i| first_timestamp_ms + i)
        .collect();
    batch_with_timestamps(&timestamps, value_size_bytes)
}

/// Like [`batch_with_timestamps`], with the records compressed.
pub fn compressed_batch(
    timestamps_ms: &[i64],
    value_size_bytes: usize,
    compression: Compression,
) -> Vec<u8> {
    encoded_batch(timestamps_ms, value_size_bytes, compression)
}

fn encoded_batch(
    timestamps_ms: &[i64],
    value_size_bytes: usize,
    compression: Compression,
) -> Vec<u8> {
    let records: Vec<Record> = timestamps_ms
        .iter()
        .enumerate()
        .map(|(i, &timestamp)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: RecordTimestamp::Creation,
            offset: i as i64,
            // The encoder starts a new batch when `offset - sequence` changes; the base
            // sequence is reset to -1 (no idempotent producer) below.
            sequence: i as i32,
            timestamp,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(vec![i as u8; value_size_bytes])),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options)
        .expect("encoding test records cannot fail");
    let mut bytes = buf.to_vec();
    bytes[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4].copy_from_slice(&(-1i32).to_be_bytes());
    fix_crc(&mut bytes);
    bytes
}

/// Rewrites the CRC of a single batch after a test tampered with it.
pub fn fix_crc(batch: &mut [u8]) {
    let crc = compute_crc(batch);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Validation rules that accept any timestamp and any size up to 16 MiB.
pub fn lenient_validation() -> BatchValidation {
    BatchValidation {
        max_message_bytes: 16 * 1024 * 1024,
        timestamp_type: TimestampType::CreateTime,
        timestamp_before_max_ms: i64::MAX,
        timestamp_after_max_ms: i64::MAX,
    }
}

/// One record for [`keyed_batch`]: key and value (`None` for null) and timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedRecord {
    /// The key, `None` for a null key.
    pub key: Option<Bytes>,
    /// The value, `None` for a tombstone.
    pub value: Option<Bytes>,
    /// The record timestamp.
    pub timestamp_ms: i64,
}

impl KeyedRecord {
    /// A record from string key and value.
    pub fn new(key: Option<&str>, value: Option<&str>, timestamp_ms: i64) -> KeyedRecord {
        KeyedRecord {
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            timestamp_ms,
        }
    }
}

/// A v2 batch of keyed records (base offset 0). With `producer = Some((id, epoch,
/// base_sequence))` the batch is idempotent; otherwise it carries no producer id.
pub fn keyed_batch(
    records: &[KeyedRecord],
    compression: Compression,
    producer: Option<(i64, i16, i32)>,
) -> Vec<u8> {
    let (producer_id, producer_epoch, base_sequence) = producer.unwrap_or((-1, -1, 0));
    let encoded: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch,
            timestamp_type: RecordTimestamp::Creation,
            offset: i as i64,
            sequence: base_sequence.wrapping_add(i as i32),
            timestamp: r.timestamp_ms,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, &encoded, &options)
        .expect("encoding test records cannot fail");
    let mut bytes = buf.to_vec();
    if producer.is_none() {
        bytes[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4].copy_from_slice(&(-1i32).to_be_bytes());
        fix_crc(&mut bytes);
    }
    bytes
}

/// An idempotent batch of `record_count` small records from producer `producer_id`.
pub fn producer_batch(
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    record_count: usize,
    timestamp_ms: i64,
) -> Vec<u8> {
    let records: Vec<KeyedRecord> = (0..record_count)
        .map(|i| KeyedRecord::new(Some(&format!("k{i}")), Some("v"), timestamp_ms))
        .collect();
    keyed_batch(
        &records,
        Compression::None,
        Some((producer_id, producer_epoch, base_sequence)),
    )
}

/// The answers of [`crate::PartitionLog::offset_for_timestamp`] for each of `timestamps_ms`, to
/// compare a log with itself across a restart.
pub fn offsets_for_timestamps(
    log: &crate::PartitionLog,
    timestamps_ms: &[i64],
) -> Vec<Option<(i64, i64)>> {
    timestamps_ms
        .iter()
        .map(|&t| log.offset_for_timestamp(t).expect("offset_for_timestamp"))
        .collect()
}

/// The files in `dir` whose extension is `extension`, sorted.
pub fn files_with_extension(dir: &std::path::Path, extension: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    files
}
