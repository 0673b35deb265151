//! The layout of a Kafka record batch v2 header (magic 2, Kafka's `DefaultRecordBatch`): where
//! each field of the fixed 61-byte header starts, the attribute bits, and big-endian readers
//! for fields at an offset. The one definition shared by the storage format, the broker and the
//! client's batch builder and reader.
//!
//! Layout (offsets in bytes from the start of the batch, all integers big-endian):
//!
//! | offset | size | field                  |
//! |-------:|-----:|------------------------|
//! |      0 |    8 | `baseOffset`           |
//! |      8 |    4 | `batchLength`          |
//! |     12 |    4 | `partitionLeaderEpoch` |
//! |     16 |    1 | `magic`                |
//! |     17 |    4 | `crc` (CRC-32C)        |
//! |     21 |    2 | `attributes`           |
//! |     23 |    4 | `lastOffsetDelta`      |
//! |     27 |    8 | `baseTimestamp`        |
//! |     35 |    8 | `maxTimestamp`         |
//! |     43 |    8 | `producerId`           |
//! |     51 |    2 | `producerEpoch`        |
//! |     53 |    4 | `baseSequence`         |
//! |     57 |    4 | `recordsCount`         |
//! |     61 |      | the records            |
//!
//! `batchLength` counts the bytes after it (a batch is `batchLength + 12` bytes); the CRC covers
//! the bytes from `attributes` to the end of the batch, so `baseOffset` and
//! `partitionLeaderEpoch` can be written without recomputing it.

/// Offset of `baseOffset` (i64): the offset of the batch's first record.
pub const BASE_OFFSET_AT: usize = 0;
/// Offset of `batchLength` (i32): the bytes of the batch after this field.
pub const BATCH_LENGTH_AT: usize = 8;
/// Offset of `partitionLeaderEpoch` (i32): the epoch of the leader that appended the batch
/// (outside the CRC).
pub const PARTITION_LEADER_EPOCH_AT: usize = 12;
/// Offset of `magic` (i8): the format version, [`MAGIC_V2`].
pub const MAGIC_AT: usize = 16;
/// Offset of `crc` (u32): CRC-32C (Castagnoli) of the bytes from [`ATTRIBUTES_AT`] to the end of
/// the batch.
pub const CRC_AT: usize = 17;
/// Offset of `attributes` (i16): compression codec, timestamp type, transactional and control
/// flags (see the `*_MASK` and `*_BIT` constants). The CRC covers the batch from here to its end.
pub const ATTRIBUTES_AT: usize = 21;
/// Offset of `lastOffsetDelta` (i32): the last record's offset minus `baseOffset`.
pub const LAST_OFFSET_DELTA_AT: usize = 23;
/// Offset of `baseTimestamp` (i64): the first record's timestamp (or, with
/// [`DELETE_HORIZON_BIT`], the delete horizon).
pub const BASE_TIMESTAMP_AT: usize = 27;
/// Offset of `maxTimestamp` (i64): the largest record timestamp (the append time for
/// `LogAppendTime`).
pub const MAX_TIMESTAMP_AT: usize = 35;
/// Offset of `producerId` (i64): the idempotent or transactional producer's id, -1 if none.
pub const PRODUCER_ID_AT: usize = 43;
/// Offset of `producerEpoch` (i16): the producer's epoch, -1 if none.
pub const PRODUCER_EPOCH_AT: usize = 51;
/// Offset of `baseSequence` (i32): the first record's sequence number, -1 if none.
pub const BASE_SEQUENCE_AT: usize = 53;
/// Offset of `recordsCount` (i32): the number of records in the batch.
pub const RECORDS_COUNT_AT: usize = 57;

/// Size of the fixed v2 batch header in bytes: the records start here.
pub const BATCH_HEADER_SIZE_BYTES: usize = 61;
/// Bytes before and including the `batchLength` field (`baseOffset` and `batchLength`);
/// a batch is `batchLength + 12` bytes.
pub const BATCH_LENGTH_PREFIX_BYTES: usize = 12;
/// Smallest valid `batchLength`: a header with no records (49).
pub const BATCH_LENGTH_MIN: i32 = (BATCH_HEADER_SIZE_BYTES - BATCH_LENGTH_PREFIX_BYTES) as i32;
/// The magic byte of the v2 format, the only one Strom reads or writes.
pub const MAGIC_V2: i8 = 2;

/// Attribute bits 0-2: the compression codec (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
pub const COMPRESSION_MASK: i16 = 0x07;
/// The largest compression codec Kafka defines (4, zstd).
pub const COMPRESSION_CODEC_MAX: u8 = 4;
/// Attribute bit 3: timestamps are `LogAppendTime` (set) or `CreateTime` (clear).
pub const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
/// Attribute bit 4: the batch belongs to a transaction.
pub const TRANSACTIONAL_BIT: i16 = 1 << 4;
/// Attribute bit 5: a control batch (transaction markers), not application records.
pub const CONTROL_BIT: i16 = 1 << 5;
/// Attribute bit 6 (KIP-534): `baseTimestamp` holds the delete horizon, set by the log cleaner.
pub const DELETE_HORIZON_BIT: i16 = 1 << 6;

/// The big-endian i16 at byte `at` of `buf`. Panics if `buf` is shorter than `at + 2`.
pub fn i16_at(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([buf[at], buf[at + 1]])
}

/// The big-endian i32 at byte `at` of `buf`. Panics if `buf` is shorter than `at + 4`.
pub fn i32_at(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

/// The big-endian i64 at byte `at` of `buf`. Panics if `buf` is shorter than `at + 8`.
pub fn i64_at(buf: &[u8], at: usize) -> i64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&buf[at..at + 8]);
    i64::from_be_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The offsets follow from the field sizes, in order, and end at the header size.
    #[test]
    fn offsets_follow_the_field_sizes() {
        let fields = [
            (BASE_OFFSET_AT, 8),
            (BATCH_LENGTH_AT, 4),
            (PARTITION_LEADER_EPOCH_AT, 4),
            (MAGIC_AT, 1),
            (CRC_AT, 4),
            (ATTRIBUTES_AT, 2),
            (LAST_OFFSET_DELTA_AT, 4),
            (BASE_TIMESTAMP_AT, 8),
            (MAX_TIMESTAMP_AT, 8),
            (PRODUCER_ID_AT, 8),
            (PRODUCER_EPOCH_AT, 2),
            (BASE_SEQUENCE_AT, 4),
            (RECORDS_COUNT_AT, 4),
        ];
        let mut at = 0;
        for (offset, size) in fields {
            assert_eq!(offset, at);
            at += size;
        }
        assert_eq!(at, BATCH_HEADER_SIZE_BYTES);
        assert_eq!(BATCH_LENGTH_PREFIX_BYTES, PARTITION_LEADER_EPOCH_AT);
        assert_eq!(BATCH_LENGTH_MIN, 49);
    }

    #[test]
    fn reads_big_endian_fields() {
        let mut buf = vec![0u8; BATCH_HEADER_SIZE_BYTES];
        buf[PRODUCER_ID_AT..PRODUCER_EPOCH_AT].copy_from_slice(&(-2i64).to_be_bytes());
        buf[PRODUCER_EPOCH_AT..BASE_SEQUENCE_AT].copy_from_slice(&0x1234i16.to_be_bytes());
        buf[RECORDS_COUNT_AT..].copy_from_slice(&0x0102_0304i32.to_be_bytes());
        assert_eq!(i64_at(&buf, PRODUCER_ID_AT), -2);
        assert_eq!(i16_at(&buf, PRODUCER_EPOCH_AT), 0x1234);
        assert_eq!(i32_at(&buf, RECORDS_COUNT_AT), 0x0102_0304);
    }
}
