//! Kafka record batch v2 (magic 2) headers: parsing, produce-time validation and offset
//! assignment. Only the 61-byte header and the CRC are ever looked at here; records are never
//! decoded on this path. The header layout itself (field offsets, attribute bits) is
//! [`strom_protocol::record_batch`], shared with the client.

use strom_protocol::record_batch::{
    i16_at, i32_at, i64_at, ATTRIBUTES_AT, BASE_OFFSET_AT, BASE_SEQUENCE_AT, BASE_TIMESTAMP_AT,
    BATCH_LENGTH_AT, COMPRESSION_CODEC_MAX, COMPRESSION_MASK, CONTROL_BIT, CRC_AT,
    DELETE_HORIZON_BIT, LAST_OFFSET_DELTA_AT, MAGIC_AT, MAX_TIMESTAMP_AT,
    PARTITION_LEADER_EPOCH_AT, PRODUCER_EPOCH_AT, PRODUCER_ID_AT, RECORDS_COUNT_AT,
    TIMESTAMP_TYPE_BIT, TRANSACTIONAL_BIT,
};
pub use strom_protocol::record_batch::{
    BATCH_HEADER_SIZE_BYTES, BATCH_LENGTH_MIN, BATCH_LENGTH_PREFIX_BYTES, MAGIC_V2,
};

/// Why a batch (or a blob of batches) was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Bad framing or CRC (Kafka `CORRUPT_MESSAGE`).
    #[error("corrupt record batch: {0}")]
    Corrupt(String),
    /// Magic other than 2 (Kafka `UNSUPPORTED_FOR_MESSAGE_FORMAT`).
    #[error("unsupported record batch magic {0}")]
    UnsupportedMagic(i8),
    /// A batch larger than `max.message.bytes` (Kafka `MESSAGE_TOO_LARGE`).
    #[error("record batch of {size_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    TooLarge {
        /// Size of the offending batch.
        size_bytes: usize,
        /// The limit.
        max_bytes: usize,
    },
    /// A structurally valid batch whose contents are not acceptable (Kafka `INVALID_RECORD`).
    #[error("invalid record batch: {0}")]
    InvalidRecord(String),
    /// A `CreateTime` timestamp outside the accepted window (Kafka `INVALID_TIMESTAMP`).
    #[error("invalid timestamp: {0}")]
    InvalidTimestamp(String),
}

/// The decoded fixed header of a v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the `batchLength` field.
    pub batch_length: i32,
    /// Leader epoch of the leader that appended the batch.
    pub partition_leader_epoch: i32,
    /// Format version; 2 for every batch this crate accepts.
    pub magic: i8,
    /// CRC-32C over the bytes from `attributes` to the end of the batch.
    pub crc: u32,
    /// Compression, timestamp type, transactional and control flags.
    pub attributes: i16,
    /// `last offset - base offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest record timestamp (the append time for `LogAppendTime`).
    pub max_timestamp: i64,
    /// Idempotent/transactional producer id, -1 if none.
    pub producer_id: i64,
    /// Producer epoch, -1 if none.
    pub producer_epoch: i16,
    /// Sequence number of the first record, -1 if none.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub records_count: i32,
}

impl BatchHeader {
    /// Decodes the header at the start of `buf` (which needs at least
    /// [`BATCH_HEADER_SIZE_BYTES`] bytes). Checks neither magic nor CRC.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < BATCH_HEADER_SIZE_BYTES {
            return Err(BatchError::Corrupt(format!(
                "batch header needs {BATCH_HEADER_SIZE_BYTES} bytes, found {}",
                buf.len()
            )));
        }
        Ok(BatchHeader {
            base_offset: i64_at(buf, BASE_OFFSET_AT),
            batch_length: i32_at(buf, BATCH_LENGTH_AT),
            partition_leader_epoch: i32_at(buf, PARTITION_LEADER_EPOCH_AT),
            magic: buf[MAGIC_AT] as i8,
            crc: i32_at(buf, CRC_AT) as u32,
            attributes: i16_at(buf, ATTRIBUTES_AT),
            last_offset_delta: i32_at(buf, LAST_OFFSET_DELTA_AT),
            base_timestamp: i64_at(buf, BASE_TIMESTAMP_AT),
            max_timestamp: i64_at(buf, MAX_TIMESTAMP_AT),
            producer_id: i64_at(buf, PRODUCER_ID_AT),
            producer_epoch: i16_at(buf, PRODUCER_EPOCH_AT),
            base_sequence: i32_at(buf, BASE_SEQUENCE_AT),
            records_count: i32_at(buf, RECORDS_COUNT_AT),
        })
    }

    /// Whole batch size in bytes: `batch_length + 12`.
    pub fn size_bytes(&self) -> usize {
        (self.batch_length.max(0) as usize) + BATCH_LENGTH_PREFIX_BYTES
    }

    /// Offset of the last record.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// The offset after the last record.
    pub fn next_offset(&self) -> i64 {
        self.last_offset().saturating_add(1)
    }

    /// Compression codec: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression(&self) -> u8 {
        (self.attributes & COMPRESSION_MASK) as u8
    }

    /// Whether timestamps are `LogAppendTime` (attributes bit 3).
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    /// Whether the batch belongs to a transaction (attributes bit 4).
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// Whether this is a control batch (transaction markers; attributes bit 5).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// The delete horizon the log cleaner stored in `baseTimestamp` (KIP-534, attributes bit
    /// 6): tombstones in this batch are removed by a clean at or after this time.
    pub fn delete_horizon_ms(&self) -> Option<i64> {
        (self.attributes & DELETE_HORIZON_BIT != 0).then_some(self.base_timestamp)
    }

    /// Sequence number of the last record: `base_sequence + last_offset_delta`, wrapping past
    /// `i32::MAX` to 0 as Kafka's `DefaultRecordBatch.incrementSequence` does.
    pub fn last_sequence(&self) -> i32 {
        increment_sequence(self.base_sequence, self.last_offset_delta)
    }

    /// The 61 header bytes as they are (the CRC field is written as stored).
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.base_offset.to_be_bytes());
        out.extend_from_slice(&self.batch_length.to_be_bytes());
        out.extend_from_slice(&self.partition_leader_epoch.to_be_bytes());
        out.push(self.magic as u8);
        out.extend_from_slice(&self.crc.to_be_bytes());
        out.extend_from_slice(&self.attributes.to_be_bytes());
        out.extend_from_slice(&self.last_offset_delta.to_be_bytes());
        out.extend_from_slice(&self.base_timestamp.to_be_bytes());
        out.extend_from_slice(&self.max_timestamp.to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.producer_epoch.to_be_bytes());
        out.extend_from_slice(&self.base_sequence.to_be_bytes());
        out.extend_from_slice(&self.records_count.to_be_bytes());
    }
}

/// `sequence + increment` with Kafka's wrap-around past `i32::MAX` to 0.
pub fn increment_sequence(sequence: i32, increment: i32) -> i32 {
    let sum = i64::from(sequence) + i64::from(increment);
    let max = i64::from(i32::MAX);
    let wrapped = if sum > max { sum - max - 1 } else { sum };
    wrapped.clamp(i64::from(i32::MIN), max) as i32
}

/// CRC-32C of a whole batch as stored in its header (over `attributes..end`).
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES_AT..])
}

/// Checks the framing of the batch at the start of `rest` and returns its size in bytes: enough
/// bytes for the magic, magic 2, `batchLength >= 49` and the whole batch present.
pub fn frame_size_bytes(rest: &[u8]) -> Result<usize, BatchError> {
    if rest.len() <= MAGIC_AT {
        return Err(BatchError::Corrupt(format!(
            "trailing partial batch of {} bytes",
            rest.len()
        )));
    }
    let magic = rest[MAGIC_AT] as i8;
    if magic != MAGIC_V2 {
        return Err(BatchError::UnsupportedMagic(magic));
    }
    let batch_length = i32_at(rest, BATCH_LENGTH_AT);
    if batch_length < BATCH_LENGTH_MIN {
        return Err(BatchError::Corrupt(format!(
            "batchLength {batch_length} is below the minimum {BATCH_LENGTH_MIN}"
        )));
    }
    let size_bytes = batch_length as usize + BATCH_LENGTH_PREFIX_BYTES;
    if size_bytes > rest.len() {
        return Err(BatchError::Corrupt(format!(
            "batch of {size_bytes} bytes but only {} bytes follow",
            rest.len()
        )));
    }
    Ok(size_bytes)
}

/// Iterator over the batches of a blob; see [`batches`].
#[derive(Debug, Clone)]
pub struct Batches<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Iterator for Batches<'a> {
    type Item = Result<(BatchHeader, &'a [u8]), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        let framed = frame_size_bytes(self.rest)
            .and_then(|size| BatchHeader::parse(self.rest).map(|header| (header, size)));
        match framed {
            Ok((header, size)) => {
                let (batch, rest) = self.rest.split_at(size);
                self.rest = rest;
                Some(Ok((header, batch)))
            }
            Err(error) => {
                self.failed = true;
                Some(Err(error))
            }
        }
    }
}

/// Walks a blob batch by batch, yielding each header with the batch's bytes. Framing errors
/// (partial batch, bad length, magic other than 2) end the walk with one `Err`. CRCs are not
/// checked.
pub fn batches(blob: &[u8]) -> Batches<'_> {
    Batches {
        rest: blob,
        failed: false,
    }
}

/// Which timestamp a topic keeps (`message.timestamp.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// The producer's timestamps are kept (and checked against the allowed window).
    #[default]
    CreateTime,
    /// The broker overwrites `maxTimestamp` with the append time.
    LogAppendTime,
}

/// Produce-time validation rules, from the topic configs.
#[derive(Debug, Clone)]
pub struct BatchValidation {
    /// `max.message.bytes`: the largest accepted batch.
    pub max_message_bytes: usize,
    /// `message.timestamp.type`.
    pub timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms`: how far in the past a `CreateTime` timestamp may be.
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far in the future a `CreateTime` timestamp may be.
    pub timestamp_after_max_ms: i64,
}

/// Summary of a blob that passed [`validate_batches`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidatedBatches {
    /// Number of batches.
    pub batch_count: usize,
    /// Number of records over all batches.
    pub record_count: i64,
    /// `baseTimestamp` of the first batch.
    pub first_timestamp_ms: i64,
    /// Largest `maxTimestamp` over all batches (-1 if none carries a timestamp).
    pub max_timestamp_ms: i64,
    /// Total size of the blob.
    pub size_bytes: usize,
}

/// Validates a blob of one or more concatenated batches as received in a Produce request: magic
/// must be 2 (else [`BatchError::UnsupportedMagic`]), `batchLength >= 49` and within the blob, no
/// trailing partial batch, CRC-32C correct (else [`BatchError::Corrupt`]); each batch at most
/// `max_message_bytes` (else [`BatchError::TooLarge`]); `recordsCount >= 1` and
/// `lastOffsetDelta == recordsCount - 1`, no control batches, a known compression codec (else
/// [`BatchError::InvalidRecord`]); with `CreateTime`, `baseTimestamp` and `maxTimestamp` within
/// `[now - before, now + after]` unless -1 (else [`BatchError::InvalidTimestamp`]). Header and CRC
/// only: records are never decoded.
pub fn validate_batches(
    blob: &[u8],
    rules: &BatchValidation,
    now_ms: i64,
) -> Result<ValidatedBatches, BatchError> {
    if blob.is_empty() {
        return Err(BatchError::InvalidRecord("no record batches".to_string()));
    }
    let mut summary = ValidatedBatches {
        batch_count: 0,
        record_count: 0,
        first_timestamp_ms: -1,
        max_timestamp_ms: -1,
        size_bytes: blob.len(),
    };
    for item in batches(blob) {
        let (header, batch) = item?;
        validate_one(&header, batch, rules, now_ms)?;
        if summary.batch_count == 0 {
            summary.first_timestamp_ms = header.base_timestamp;
        }
        summary.batch_count += 1;
        summary.record_count += i64::from(header.records_count);
        summary.max_timestamp_ms = summary.max_timestamp_ms.max(header.max_timestamp);
    }
    Ok(summary)
}

fn validate_one(
    header: &BatchHeader,
    batch: &[u8],
    rules: &BatchValidation,
    now_ms: i64,
) -> Result<(), BatchError> {
    let crc = compute_crc(batch);
    if crc != header.crc {
        return Err(BatchError::Corrupt(format!(
            "CRC mismatch: header says {:#010x}, computed {crc:#010x}",
            header.crc
        )));
    }
    if batch.len() > rules.max_message_bytes {
        return Err(BatchError::TooLarge {
            size_bytes: batch.len(),
            max_bytes: rules.max_message_bytes,
        });
    }
    if header.records_count < 1 || header.last_offset_delta != header.records_count - 1 {
        return Err(BatchError::InvalidRecord(format!(
            "recordsCount {} does not match lastOffsetDelta {}",
            header.records_count, header.last_offset_delta
        )));
    }
    if header.compression() > COMPRESSION_CODEC_MAX {
        return Err(BatchError::InvalidRecord(format!(
            "unknown compression codec {}",
            header.compression()
        )));
    }
    if header.is_control() {
        return Err(BatchError::InvalidRecord(
            "control batches may not be produced by clients".to_string(),
        ));
    }
    if rules.timestamp_type == TimestampType::CreateTime {
        validate_timestamp(header.base_timestamp, rules, now_ms)?;
        validate_timestamp(header.max_timestamp, rules, now_ms)?;
    }
    Ok(())
}

fn validate_timestamp(
    timestamp_ms: i64,
    rules: &BatchValidation,
    now_ms: i64,
) -> Result<(), BatchError> {
    const NO_TIMESTAMP: i64 = -1;
    let earliest_ms = now_ms.saturating_sub(rules.timestamp_before_max_ms);
    let latest_ms = now_ms.saturating_add(rules.timestamp_after_max_ms);
    if timestamp_ms != NO_TIMESTAMP && (timestamp_ms < earliest_ms || timestamp_ms > latest_ms) {
        return Err(BatchError::InvalidTimestamp(format!(
            "timestamp {timestamp_ms} is outside [{earliest_ms}, {latest_ms}]"
        )));
    }
    Ok(())
}

/// Writes `baseOffset` and `partitionLeaderEpoch` (both outside the CRC) into each batch of the
/// blob, numbering from `first_offset`. With `log_append_time_ms`, also sets the `LogAppendTime`
/// attribute bit and `maxTimestamp` (as Kafka does; `baseTimestamp` is left alone) and
/// recomputes the CRC. Returns the offset after the last record.
pub fn assign_offsets(
    blob: &mut [u8],
    first_offset: i64,
    leader_epoch: i32,
    log_append_time_ms: Option<i64>,
) -> Result<i64, BatchError> {
    let mut position = 0;
    let mut next_offset = first_offset;
    while position < blob.len() {
        let size_bytes = frame_size_bytes(&blob[position..])?;
        let batch = &mut blob[position..position + size_bytes];
        let last_offset_delta = i32_at(batch, LAST_OFFSET_DELTA_AT);
        if last_offset_delta < 0 {
            return Err(BatchError::InvalidRecord(format!(
                "negative lastOffsetDelta {last_offset_delta}"
            )));
        }
        batch[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&next_offset.to_be_bytes());
        batch[PARTITION_LEADER_EPOCH_AT..PARTITION_LEADER_EPOCH_AT + 4]
            .copy_from_slice(&leader_epoch.to_be_bytes());
        if let Some(append_time_ms) = log_append_time_ms {
            let attributes = i16_at(batch, ATTRIBUTES_AT) | TIMESTAMP_TYPE_BIT;
            batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
            batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8]
                .copy_from_slice(&append_time_ms.to_be_bytes());
            let crc = compute_crc(batch);
            batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        }
        next_offset += i64::from(last_offset_delta) + 1;
        position += size_bytes;
    }
    Ok(next_offset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{batch, fix_crc, lenient_validation};

    const NOW_MS: i64 = 1_700_000_000_000;

    fn put_i32(buf: &mut [u8], at: usize, value: i32) {
        buf[at..at + 4].copy_from_slice(&value.to_be_bytes());
    }

    #[test]
    fn parses_encoder_output() {
        let bytes = batch(3, 10, NOW_MS);
        let header = BatchHeader::parse(&bytes).unwrap();
        assert_eq!(header.magic, 2);
        assert_eq!(header.records_count, 3);
        assert_eq!(header.last_offset_delta, 2);
        assert_eq!(header.size_bytes(), bytes.len());
        assert_eq!(header.base_timestamp, NOW_MS);
        assert_eq!(header.max_timestamp, NOW_MS + 2);
        assert_eq!(header.crc, compute_crc(&bytes));
        assert_eq!(header.compression(), 0);
        assert!(!header.is_log_append_time() && !header.is_transactional() && !header.is_control());
        assert!(BatchHeader::parse(&bytes[..60]).is_err());
    }

    #[test]
    fn accepts_valid_blob() {
        let mut blob = batch(3, 10, NOW_MS);
        blob.extend(batch(2, 5, NOW_MS + 10));
        let summary = validate_batches(&blob, &lenient_validation(), NOW_MS).unwrap();
        assert_eq!(summary.batch_count, 2);
        assert_eq!(summary.record_count, 5);
        assert_eq!(summary.size_bytes, blob.len());
        assert_eq!(summary.first_timestamp_ms, NOW_MS);
        assert_eq!(summary.max_timestamp_ms, NOW_MS + 11);
        assert_eq!(batches(&blob).count(), 2);
    }

    #[test]
    fn rejects_crc_off_by_one_bit_anywhere_under_the_crc() {
        let good = batch(2, 8, NOW_MS);
        for position in [CRC_AT, ATTRIBUTES_AT, RECORDS_COUNT_AT, good.len() - 1] {
            let mut bad = good.clone();
            bad[position] ^= 1;
            assert!(
                matches!(
                    validate_batches(&bad, &lenient_validation(), NOW_MS),
                    Err(BatchError::Corrupt(_))
                ),
                "bit flip at {position}"
            );
        }
        // The base offset and leader epoch are outside the CRC.
        let mut outside = good.clone();
        outside[3] ^= 1;
        outside[PARTITION_LEADER_EPOCH_AT] ^= 1;
        assert!(validate_batches(&outside, &lenient_validation(), NOW_MS).is_ok());
    }

    #[test]
    fn rejects_batch_length_one_byte_off() {
        let good = batch(2, 8, NOW_MS);
        let length = i32_at(&good, BATCH_LENGTH_AT);
        for wrong in [length + 1, length - 1, BATCH_LENGTH_MIN - 1, -1] {
            let mut bad = good.clone();
            put_i32(&mut bad, BATCH_LENGTH_AT, wrong);
            assert!(
                matches!(
                    validate_batches(&bad, &lenient_validation(), NOW_MS),
                    Err(BatchError::Corrupt(_))
                ),
                "batchLength {wrong}"
            );
        }
    }

    #[test]
    fn rejects_trailing_partial_batch() {
        let mut blob = batch(1, 8, NOW_MS);
        let second = batch(1, 8, NOW_MS);
        blob.extend_from_slice(&second[..20]);
        assert!(matches!(
            validate_batches(&blob, &lenient_validation(), NOW_MS),
            Err(BatchError::Corrupt(_))
        ));
        let mut tiny = batch(1, 8, NOW_MS);
        tiny.extend_from_slice(&[0u8; 5]);
        assert!(matches!(
            validate_batches(&tiny, &lenient_validation(), NOW_MS),
            Err(BatchError::Corrupt(_))
        ));
        assert!(validate_batches(&[], &lenient_validation(), NOW_MS).is_err());
    }

    #[test]
    fn rejects_record_count_mismatch() {
        let good = batch(3, 8, NOW_MS);
        for (count, delta) in [(4, 2), (2, 2), (3, 3), (0, -1), (-1, -2)] {
            let mut bad = good.clone();
            put_i32(&mut bad, RECORDS_COUNT_AT, count);
            put_i32(&mut bad, LAST_OFFSET_DELTA_AT, delta);
            fix_crc(&mut bad);
            assert!(
                matches!(
                    validate_batches(&bad, &lenient_validation(), NOW_MS),
                    Err(BatchError::InvalidRecord(_))
                ),
                "count {count} delta {delta}"
            );
        }
    }

    #[test]
    fn rejects_old_magic() {
        for magic in [0i8, 1, 3] {
            let mut bad = batch(1, 8, NOW_MS);
            bad[MAGIC_AT] = magic as u8;
            assert_eq!(
                validate_batches(&bad, &lenient_validation(), NOW_MS),
                Err(BatchError::UnsupportedMagic(magic))
            );
        }
    }

    #[test]
    fn rejects_too_large_and_accepts_exact_fit() {
        let blob = batch(2, 100, NOW_MS);
        let mut rules = lenient_validation();
        rules.max_message_bytes = blob.len();
        assert!(validate_batches(&blob, &rules, NOW_MS).is_ok());
        rules.max_message_bytes = blob.len() - 1;
        assert_eq!(
            validate_batches(&blob, &rules, NOW_MS),
            Err(BatchError::TooLarge {
                size_bytes: blob.len(),
                max_bytes: blob.len() - 1
            })
        );
    }

    #[test]
    fn checks_create_time_window() {
        let mut rules = lenient_validation();
        rules.timestamp_before_max_ms = 1000;
        rules.timestamp_after_max_ms = 1000;
        assert!(validate_batches(&batch(1, 8, NOW_MS - 1000), &rules, NOW_MS).is_ok());
        assert!(validate_batches(&batch(1, 8, NOW_MS + 1000), &rules, NOW_MS).is_ok());
        assert!(matches!(
            validate_batches(&batch(1, 8, NOW_MS - 1001), &rules, NOW_MS),
            Err(BatchError::InvalidTimestamp(_))
        ));
        assert!(matches!(
            validate_batches(&batch(2, 8, NOW_MS + 1000), &rules, NOW_MS),
            Err(BatchError::InvalidTimestamp(_))
        ));
        rules.timestamp_type = TimestampType::LogAppendTime;
        assert!(validate_batches(&batch(1, 8, 0), &rules, NOW_MS).is_ok());
    }

    #[test]
    fn rejects_control_batches_and_unknown_codecs() {
        let mut control = batch(1, 8, NOW_MS);
        control[ATTRIBUTES_AT + 1] |= CONTROL_BIT as u8;
        fix_crc(&mut control);
        assert!(matches!(
            validate_batches(&control, &lenient_validation(), NOW_MS),
            Err(BatchError::InvalidRecord(_))
        ));
        let mut codec = batch(1, 8, NOW_MS);
        codec[ATTRIBUTES_AT + 1] |= 5;
        fix_crc(&mut codec);
        assert!(matches!(
            validate_batches(&codec, &lenient_validation(), NOW_MS),
            Err(BatchError::InvalidRecord(_))
        ));
    }

    #[test]
    fn assigns_offsets_outside_the_crc() {
        let mut blob = batch(3, 8, NOW_MS);
        blob.extend(batch(2, 8, NOW_MS));
        let next = assign_offsets(&mut blob, 100, 7, None).unwrap();
        assert_eq!(next, 105);
        let headers: Vec<BatchHeader> = batches(&blob).map(|b| b.unwrap().0).collect();
        assert_eq!(headers[0].base_offset, 100);
        assert_eq!(headers[1].base_offset, 103);
        assert!(headers
            .iter()
            .all(|h| h.partition_leader_epoch == 7 && !h.is_log_append_time()));
        assert!(validate_batches(&blob, &lenient_validation(), NOW_MS).is_ok());
    }

    #[test]
    fn assigns_log_append_time_and_recomputes_crc() {
        let mut blob = batch(3, 8, 5);
        let next = assign_offsets(&mut blob, 0, 1, Some(NOW_MS)).unwrap();
        assert_eq!(next, 3);
        let header = BatchHeader::parse(&blob).unwrap();
        assert!(header.is_log_append_time());
        assert_eq!(header.max_timestamp, NOW_MS);
        assert_eq!(header.base_timestamp, 5);
        assert_eq!(header.crc, compute_crc(&blob));
    }

    #[test]
    fn header_encodes_back_to_its_bytes_and_sequences_wrap() {
        let bytes = batch(3, 8, NOW_MS);
        let header = BatchHeader::parse(&bytes).unwrap();
        let mut encoded = Vec::new();
        header.encode(&mut encoded);
        assert_eq!(encoded, bytes[..BATCH_HEADER_SIZE_BYTES]);
        assert_eq!(header.delete_horizon_ms(), None);
        assert_eq!(increment_sequence(5, 2), 7);
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
    }

    #[test]
    fn assign_offsets_rejects_bad_framing() {
        let mut blob = batch(1, 8, NOW_MS);
        blob.push(0);
        assert!(assign_offsets(&mut blob, 0, 0, None).is_err());
        let mut magic = batch(1, 8, NOW_MS);
        magic[MAGIC_AT] = 1;
        assert_eq!(
            assign_offsets(&mut magic, 0, 0, None),
            Err(BatchError::UnsupportedMagic(1))
        );
    }
}
