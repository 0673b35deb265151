//! Record batch v2, built in place: each record is encoded into its batch's buffer when it is
//! sent, and the 61-byte batch header is written in front when the batch leaves the
//! accumulator (compressing the records section first when a codec is configured).
//!
//! Layout (Kafka's `DefaultRecordBatch`): base offset (8), length (4), partition leader epoch
//! (4), magic (1), CRC-32C (4) over everything after it, attributes (2), last offset delta (4),
//! base timestamp (8), max timestamp (8), producer id (8), producer epoch (2), base sequence
//! (4), record count (4), then the records. A record: length (varint), attributes (1, zero),
//! timestamp delta (varlong), offset delta (varint), key (varint length, -1 for null, bytes),
//! value (likewise), header count (varint), headers (key as varint length and bytes, value as
//! varint length, -1 for null, and bytes). Duplicate header keys are kept, in order.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{self as codec, Compressor};
use strom_protocol::record_batch::{
    i16_at, i32_at, i64_at, ATTRIBUTES_AT, BASE_SEQUENCE_AT, BASE_TIMESTAMP_AT,
    BATCH_HEADER_SIZE_BYTES, BATCH_LENGTH_AT, BATCH_LENGTH_PREFIX_BYTES, CRC_AT,
    LAST_OFFSET_DELTA_AT, MAGIC_AT, MAGIC_V2, MAX_TIMESTAMP_AT, PARTITION_LEADER_EPOCH_AT,
    PRODUCER_EPOCH_AT, PRODUCER_ID_AT, RECORDS_COUNT_AT,
};

use crate::error::{Error, Result};
use crate::types::{Compression, Header};

/// Who wrote a batch, for idempotence: producer id, epoch and the first record's sequence
/// (all -1 without idempotence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerStamp {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
}

impl ProducerStamp {
    /// No idempotence.
    pub const NONE: ProducerStamp = ProducerStamp {
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
    };
}

/// The records of one batch, encoded as they arrive, behind room for the header.
#[derive(Debug)]
pub(crate) struct RecordBatchBuilder {
    buf: BytesMut,
    count: i32,
    base_timestamp: i64,
    max_timestamp: i64,
}

impl RecordBatchBuilder {
    /// An empty batch whose buffer holds `capacity_bytes` (header included) before it grows.
    pub fn with_capacity(capacity_bytes: usize) -> RecordBatchBuilder {
        let mut buf = BytesMut::with_capacity(capacity_bytes.max(BATCH_HEADER_SIZE_BYTES));
        buf.put_bytes(0, BATCH_HEADER_SIZE_BYTES);
        RecordBatchBuilder {
            buf,
            count: 0,
            base_timestamp: 0,
            max_timestamp: 0,
        }
    }

    /// Records in the batch.
    pub fn count(&self) -> usize {
        self.count as usize
    }

    /// Bytes of the batch so far, header included (before compression).
    pub fn size_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Bytes the buffer holds before it must grow.
    #[cfg(test)]
    pub fn capacity_bytes(&self) -> usize {
        self.buf.capacity()
    }

    /// Bytes `append` would add for this record (exact).
    #[cfg(test)]
    pub fn record_size(
        &self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) -> usize {
        let delta = if self.count == 0 {
            0
        } else {
            timestamp.wrapping_sub(self.base_timestamp)
        };
        let body = body_size(delta, self.count, key, value, headers);
        varint_size(body as i32) + body
    }

    /// Bytes the first record of a batch takes (exact).
    pub fn first_record_size(
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) -> usize {
        let body = body_size(0, 0, key, value, headers);
        varint_size(body as i32) + body
    }

    /// Appends a record (its offset delta is its index in the batch).
    ///
    /// Sizes beyond what Kafka can express (2 GiB) are the caller's to refuse.
    pub fn append(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
    ) {
        self.try_append(timestamp, key, value, headers, usize::MAX);
    }

    /// Appends a record if the batch stays within `limit_bytes` (header included) or is
    /// empty; returns whether it did.
    pub fn try_append(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[Header],
        limit_bytes: usize,
    ) -> bool {
        let base_timestamp = if self.count == 0 {
            timestamp
        } else {
            self.base_timestamp
        };
        let delta = timestamp.wrapping_sub(base_timestamp);
        let body = body_size(delta, self.count, key, value, headers);
        if self.count > 0 && self.buf.len() + varint_size(body as i32) + body > limit_bytes {
            return false;
        }
        if self.count == 0 {
            self.base_timestamp = timestamp;
            self.max_timestamp = timestamp;
        } else if timestamp > self.max_timestamp {
            self.max_timestamp = timestamp;
        }
        self.buf.reserve(body + 5);
        // Length, attributes, timestamp delta, offset delta, key length (at most 5+1+10+5+5
        // bytes), then the value length after the key (5 more): few copies per record.
        let mut head = [0u8; 31];
        let mut n = put_varint(&mut head, 0, body as i32);
        head[n] = 0;
        n += 1;
        n = put_varlong(&mut head, n, delta);
        n = put_varint(&mut head, n, self.count);
        n = put_varint(&mut head, n, key.map_or(-1, |k| k.len() as i32));
        if let Some(key) = key {
            self.buf.extend_from_slice(&head[..n]);
            self.buf.extend_from_slice(key);
            n = 0;
        }
        n = put_varint(&mut head, n, value.map_or(-1, |v| v.len() as i32));
        self.buf.extend_from_slice(&head[..n]);
        if let Some(value) = value {
            self.buf.extend_from_slice(value);
        }
        if headers.is_empty() {
            self.buf.put_u8(0);
            self.count += 1;
            return true;
        }
        self.put_varint(headers.len() as i32);
        for (name, value) in headers {
            self.put_varint(name.len() as i32);
            self.buf.extend_from_slice(name.as_bytes());
            self.put_varint(value.as_ref().map_or(-1, |v| v.len() as i32));
            if let Some(value) = value {
                self.buf.extend_from_slice(value);
            }
        }
        self.count += 1;
        true
    }

    fn put_varint(&mut self, value: i32) {
        let mut tmp = [0u8; 5];
        let n = put_varint(&mut tmp, 0, value);
        self.buf.extend_from_slice(&tmp[..n]);
    }

    /// The finished batch: header written (with `stamp`), records compressed with
    /// `compression`. An empty builder gives an empty batch (never sent).
    pub fn finish(self, compression: Compression, stamp: ProducerStamp) -> Result<Bytes> {
        let RecordBatchBuilder {
            mut buf,
            count,
            base_timestamp,
            max_timestamp,
        } = self;
        if compression != Compression::None {
            let records = buf.split_off(BATCH_HEADER_SIZE_BYTES);
            let mut out = BytesMut::with_capacity(BATCH_HEADER_SIZE_BYTES + records.len() / 2 + 64);
            out.put_bytes(0, BATCH_HEADER_SIZE_BYTES);
            compress(&mut out, records, compression)?;
            buf = out;
        }
        let length = buf.len() - BATCH_LENGTH_PREFIX_BYTES;
        if length > i32::MAX as usize {
            return Err(Error::Invalid(format!(
                "a record batch of {} bytes is too large",
                buf.len()
            )));
        }
        let header = &mut buf[..BATCH_HEADER_SIZE_BYTES];
        header[..BATCH_LENGTH_AT].copy_from_slice(&0i64.to_be_bytes());
        header[BATCH_LENGTH_AT..PARTITION_LEADER_EPOCH_AT]
            .copy_from_slice(&(length as i32).to_be_bytes());
        header[PARTITION_LEADER_EPOCH_AT..MAGIC_AT].copy_from_slice(&(-1i32).to_be_bytes());
        header[MAGIC_AT] = MAGIC_V2 as u8;
        header[ATTRIBUTES_AT..LAST_OFFSET_DELTA_AT]
            .copy_from_slice(&(compression as i16).to_be_bytes());
        header[LAST_OFFSET_DELTA_AT..BASE_TIMESTAMP_AT]
            .copy_from_slice(&(count - 1).max(0).to_be_bytes());
        header[BASE_TIMESTAMP_AT..MAX_TIMESTAMP_AT].copy_from_slice(&base_timestamp.to_be_bytes());
        header[MAX_TIMESTAMP_AT..PRODUCER_ID_AT].copy_from_slice(&max_timestamp.to_be_bytes());
        header[RECORDS_COUNT_AT..BATCH_HEADER_SIZE_BYTES].copy_from_slice(&count.to_be_bytes());
        write_stamp(&mut buf, stamp);
        Ok(buf.freeze())
    }
}

/// The producer fields of a finished batch.
pub(crate) fn stamp_of(batch: &[u8]) -> ProducerStamp {
    ProducerStamp {
        producer_id: i64_at(batch, PRODUCER_ID_AT),
        producer_epoch: i16_at(batch, PRODUCER_EPOCH_AT),
        base_sequence: i32_at(batch, BASE_SEQUENCE_AT),
    }
}

/// `batch` with other producer fields (and so a new CRC); the same bytes if they are equal.
pub(crate) fn restamp(batch: Bytes, stamp: ProducerStamp) -> Bytes {
    if stamp_of(&batch) == stamp {
        return batch;
    }
    let mut buf = BytesMut::from(&batch[..]);
    write_stamp(&mut buf, stamp);
    buf.freeze()
}

/// Writes the producer fields and the CRC.
fn write_stamp(buf: &mut BytesMut, stamp: ProducerStamp) {
    buf[PRODUCER_ID_AT..PRODUCER_EPOCH_AT].copy_from_slice(&stamp.producer_id.to_be_bytes());
    buf[PRODUCER_EPOCH_AT..BASE_SEQUENCE_AT].copy_from_slice(&stamp.producer_epoch.to_be_bytes());
    buf[BASE_SEQUENCE_AT..RECORDS_COUNT_AT].copy_from_slice(&stamp.base_sequence.to_be_bytes());
    let crc = crc32c::crc32c(&buf[ATTRIBUTES_AT..]);
    buf[CRC_AT..ATTRIBUTES_AT].copy_from_slice(&crc.to_be_bytes());
}

/// Appends `records` compressed with `compression` to `out`, in the framing Kafka's clients
/// use (kafka-protocol's compressors, as its own batch encoder does).
fn compress(out: &mut BytesMut, records: BytesMut, compression: Compression) -> Result<()> {
    let mut records = Some(records);
    let fill = |tmp: &mut BytesMut| {
        *tmp = records.take().unwrap_or_default();
        Ok(())
    };
    let result = match compression {
        Compression::None => {
            out.extend_from_slice(&records.take().unwrap_or_default());
            Ok(())
        }
        Compression::Gzip => codec::Gzip::compress(out, fill),
        Compression::Snappy => codec::Snappy::compress(out, fill),
        Compression::Lz4 => codec::Lz4::compress(out, fill),
        Compression::Zstd => codec::Zstd::compress(out, fill),
    };
    result.map_err(|e| Error::Invalid(format!("cannot compress a record batch: {e:#}")))
}

fn body_size(
    timestamp_delta: i64,
    offset_delta: i32,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[Header],
) -> usize {
    let mut size = 1
        + varlong_size(timestamp_delta)
        + varint_size(offset_delta)
        + bytes_size(key)
        + bytes_size(value)
        + varint_size(headers.len() as i32);
    for (name, value) in headers {
        size += varint_size(name.len() as i32) + name.len() + bytes_size(value.as_deref());
    }
    size
}

fn bytes_size(bytes: Option<&[u8]>) -> usize {
    match bytes {
        Some(b) => varint_size(b.len() as i32) + b.len(),
        None => 1,
    }
}

fn varint_size(value: i32) -> usize {
    let zigzag = ((value << 1) ^ (value >> 31)) as u32;
    // 1 byte per 7 bits, at least one.
    ((38 - (zigzag | 1).leading_zeros()) / 7) as usize
}

fn varlong_size(value: i64) -> usize {
    let zigzag = ((value << 1) ^ (value >> 63)) as u64;
    ((70 - (zigzag | 1).leading_zeros()) / 7) as usize
}

fn put_varint(buf: &mut [u8], at: usize, value: i32) -> usize {
    put_unsigned(buf, at, ((value << 1) ^ (value >> 31)) as u32 as u64)
}

fn put_varlong(buf: &mut [u8], at: usize, value: i64) -> usize {
    put_unsigned(buf, at, ((value << 1) ^ (value >> 63)) as u64)
}

fn put_unsigned(buf: &mut [u8], mut at: usize, mut value: u64) -> usize {
    while value >= 0x80 {
        buf[at] = (value as u8) | 0x80;
        value >>= 7;
        at += 1;
    }
    buf[at] = value as u8;
    at + 1
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use bytes::Buf;
    use kafka_protocol::compression::Decompressor;
    use kafka_protocol::records::{RecordBatchDecoder, TimestampType};

    use super::*;

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    type Plain = (i64, Option<Vec<u8>>, Option<Vec<u8>>, Vec<Header>);

    fn sample() -> Vec<Plain> {
        vec![
            (1_700_000_000_000, None, Some(b"no key".to_vec()), vec![]),
            (
                1_700_000_000_007,
                Some(b"k".to_vec()),
                Some(vec![b'x'; 300]),
                vec![],
            ),
            (
                1_700_000_000_003,
                Some(b"k2".to_vec()),
                Some(b"headers".to_vec()),
                vec![
                    ("a".to_string(), Some(Bytes::from_static(b"1"))),
                    ("b".to_string(), None),
                    ("a".to_string(), Some(Bytes::from_static(b"2"))),
                ],
            ),
            (1_700_000_000_004, Some(b"tombstone".to_vec()), None, vec![]),
            (1_700_000_000_005, None, Some(Vec::new()), vec![]),
            // Neither key nor value, and a large negative timestamp delta.
            (1_600_000_000_000, None, None, vec![]),
            (1_700_000_000_009, None, Some(vec![b'y'; 100]), vec![]),
        ]
    }

    fn build(records: &[Plain], compression: Compression, stamp: ProducerStamp) -> Bytes {
        let mut builder = RecordBatchBuilder::with_capacity(1024);
        for (ts, key, value, headers) in records {
            let before = builder.size_bytes();
            let expected = builder.record_size(*ts, key.as_deref(), value.as_deref(), headers);
            builder.append(*ts, key.as_deref(), value.as_deref(), headers);
            assert_eq!(builder.size_bytes() - before, expected);
        }
        assert_eq!(builder.count(), records.len());
        builder.finish(compression, stamp).unwrap()
    }

    /// Our own reading of the records section (kafka-protocol's keeps headers in a map, so it
    /// cannot show duplicate keys).
    fn read_records(mut records: &[u8], base_timestamp: i64) -> Vec<Plain> {
        fn varint(buf: &mut &[u8]) -> i64 {
            let mut value = 0u64;
            let mut shift = 0;
            loop {
                let b = buf.get_u8();
                value |= u64::from(b & 0x7f) << shift;
                if b & 0x80 == 0 {
                    break;
                }
                shift += 7;
            }
            ((value >> 1) as i64) ^ -((value & 1) as i64)
        }
        fn bytes(buf: &mut &[u8]) -> Option<Vec<u8>> {
            let len = varint(buf);
            (len >= 0).then(|| {
                let v = buf[..len as usize].to_vec();
                buf.advance(len as usize);
                v
            })
        }
        let mut out = Vec::new();
        let mut index = 0;
        while !records.is_empty() {
            let len = varint(&mut records) as usize;
            let mut record = &records[..len];
            records.advance(len);
            assert_eq!(record.get_u8(), 0, "attributes");
            let ts = base_timestamp + varint(&mut record);
            assert_eq!(varint(&mut record), index, "offset delta");
            let key = bytes(&mut record);
            let value = bytes(&mut record);
            let count = varint(&mut record);
            let headers = (0..count)
                .map(|_| {
                    let name = String::from_utf8(bytes(&mut record).unwrap()).unwrap();
                    (name, bytes(&mut record).map(Bytes::from))
                })
                .collect();
            assert!(record.is_empty());
            out.push((ts, key, value, headers));
            index += 1;
        }
        out
    }

    #[test]
    fn round_trips_through_kafka_protocols_decoder_with_every_codec() {
        let records = sample();
        for compression in CODECS {
            let batch = build(&records, compression, ProducerStamp::NONE);
            let mut buf = batch.clone();
            let set = RecordBatchDecoder::decode(&mut buf).unwrap();
            assert!(!buf.has_remaining());
            assert_eq!(set.compression, compression);
            assert_eq!(set.version, 2);
            assert_eq!(set.records.len(), records.len());
            for (i, (record, (ts, key, value, headers))) in
                set.records.iter().zip(&records).enumerate()
            {
                assert_eq!(record.offset, i as i64);
                assert_eq!(record.timestamp, *ts);
                assert_eq!(record.timestamp_type, TimestampType::Creation);
                assert_eq!(record.key.as_deref(), key.as_deref());
                assert_eq!(record.value.as_deref(), value.as_deref());
                assert_eq!(record.producer_id, -1);
                assert_eq!(record.producer_epoch, -1);
                assert_eq!(record.partition_leader_epoch, -1);
                // The decoder keeps one value per header key, so only the keys are checked
                // here (the duplicates are checked below).
                for (name, _) in headers {
                    assert!(record.headers.keys().any(|k| k.as_str() == name));
                }
            }
            let info = RecordBatchDecoder::decode_batch_info(&mut batch.clone()).unwrap();
            assert_eq!(info.len(), 1);
            assert_eq!(info[0].record_count, records.len() as i32);
            assert_eq!(info[0].min_timestamp, records[0].0);
        }
    }

    #[test]
    fn header_fields_and_crc_are_kafkas() {
        let records = sample();
        for compression in CODECS {
            let batch = build(&records, compression, ProducerStamp::NONE);
            assert_eq!(i64::from_be_bytes(batch[0..8].try_into().unwrap()), 0);
            let length = i32::from_be_bytes(batch[8..12].try_into().unwrap());
            assert_eq!(length as usize, batch.len() - 12);
            assert_eq!(i32::from_be_bytes(batch[12..16].try_into().unwrap()), -1);
            assert_eq!(batch[16], 2);
            let crc = u32::from_be_bytes(batch[17..21].try_into().unwrap());
            assert_eq!(crc, crc32c::crc32c(&batch[21..]));
            let attributes = i16::from_be_bytes(batch[21..23].try_into().unwrap());
            assert_eq!(attributes, compression as i16);
            let last_offset_delta = i32::from_be_bytes(batch[23..27].try_into().unwrap());
            assert_eq!(last_offset_delta, records.len() as i32 - 1);
            let base_ts = i64::from_be_bytes(batch[27..35].try_into().unwrap());
            let max_ts = i64::from_be_bytes(batch[35..43].try_into().unwrap());
            assert_eq!(base_ts, records[0].0);
            assert_eq!(max_ts, records.iter().map(|r| r.0).max().unwrap());
            assert_eq!(stamp_of(&batch), ProducerStamp::NONE);
            let count = i32::from_be_bytes(batch[57..61].try_into().unwrap());
            assert_eq!(count, records.len() as i32);
            if compression == Compression::None {
                // Duplicate header keys survive, in order, and every field reads back.
                assert_eq!(read_records(&batch[61..], base_ts), records);
            }
        }
    }

    #[test]
    fn duplicate_header_keys_are_kept_in_order_after_compression() {
        let records = sample();
        for compression in CODECS {
            let batch = build(&records, compression, ProducerStamp::NONE);
            let mut section = batch.slice(BATCH_HEADER_SIZE_BYTES..);
            let mut raw = BytesMut::new();
            let mut take = |b: &mut Bytes| {
                raw.extend_from_slice(b);
                Ok(())
            };
            match compression {
                Compression::None => take(&mut section).unwrap(),
                Compression::Gzip => codec::Gzip::decompress(&mut section, take).unwrap(),
                Compression::Snappy => codec::Snappy::decompress(&mut section, take).unwrap(),
                Compression::Lz4 => codec::Lz4::decompress(&mut section, take).unwrap(),
                Compression::Zstd => codec::Zstd::decompress(&mut section, take).unwrap(),
            }
            assert_eq!(read_records(&raw, records[0].0), records, "{compression:?}");
        }
    }

    #[test]
    fn restamping_patches_the_producer_fields_and_the_crc() {
        let records = sample();
        for compression in CODECS {
            let batch = build(&records, compression, ProducerStamp::NONE);
            let stamp = ProducerStamp {
                producer_id: 4711,
                producer_epoch: 3,
                base_sequence: 100,
            };
            let stamped = restamp(batch.clone(), stamp);
            assert_eq!(stamped.len(), batch.len());
            assert_eq!(stamp_of(&stamped), stamp);
            assert_eq!(stamped[61..], batch[61..]);
            let crc = u32::from_be_bytes(stamped[17..21].try_into().unwrap());
            assert_eq!(crc, crc32c::crc32c(&stamped[21..]));
            let set = RecordBatchDecoder::decode(&mut stamped.clone()).unwrap();
            for (i, record) in set.records.iter().enumerate() {
                assert_eq!(record.producer_id, 4711);
                assert_eq!(record.producer_epoch, 3);
                assert_eq!(record.sequence, 100 + i as i32);
            }
            // Same stamp: the very same bytes (a retry resends them).
            let again = restamp(stamped.clone(), stamp);
            assert_eq!(again.as_ptr(), stamped.as_ptr());
            // Built stamped from the start: identical to building and restamping.
            assert_eq!(build(&records, compression, stamp), stamped);
        }
    }

    #[test]
    fn varint_sizes_match_the_encoding() {
        for v in [
            0i64,
            1,
            -1,
            63,
            64,
            -64,
            -65,
            8191,
            8192,
            i32::MAX as i64,
            i32::MIN as i64,
            i64::MAX,
            i64::MIN,
        ] {
            let mut buf = [0u8; 10];
            assert_eq!(put_varlong(&mut buf, 0, v), varlong_size(v), "{v}");
            if let Ok(v) = i32::try_from(v) {
                assert_eq!(put_varint(&mut buf, 0, v), varint_size(v), "{v}");
            }
        }
    }

    #[test]
    fn try_append_keeps_to_the_limit_except_for_a_first_record() {
        let mut builder = RecordBatchBuilder::with_capacity(100);
        let value = [1u8; 20];
        let size = builder.record_size(0, None, Some(&value), &[]);
        assert!(builder.try_append(0, None, Some(&value), &[], 0), "first");
        let limit = builder.size_bytes() + size;
        assert!(builder.try_append(0, None, Some(&value), &[], limit));
        assert!(!builder.try_append(0, None, Some(&value), &[], limit));
        assert_eq!(builder.count(), 2);
        assert_eq!(builder.size_bytes(), limit);
    }

    #[test]
    fn an_empty_builder_reserves_room_and_large_records_grow_it() {
        let mut builder = RecordBatchBuilder::with_capacity(100);
        assert_eq!(builder.size_bytes(), BATCH_HEADER_SIZE_BYTES);
        assert!(builder.capacity_bytes() >= 100);
        let value = vec![7u8; 10_000];
        builder.append(5, None, Some(&value), &[]);
        let batch = builder
            .finish(Compression::None, ProducerStamp::NONE)
            .unwrap();
        let set = RecordBatchDecoder::decode(&mut batch.clone()).unwrap();
        assert_eq!(set.records[0].value.as_deref(), Some(&value[..]));
    }

    /// Appending cost per 100-byte record without key or headers, and of finishing (CRC):
    /// `cargo test --release -p strom-client --lib append_speed -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn append_speed() {
        let value = [b'x'; 100];
        const BATCHES: usize = 2_000;
        for round in 0..3 {
            let (mut appending, mut finishing) = (Duration::ZERO, Duration::ZERO);
            let mut records = 0usize;
            for _ in 0..BATCHES {
                let mut builder = RecordBatchBuilder::with_capacity(256 * 1024);
                let started = Instant::now();
                let mut timestamp = 1_700_000_000_000i64;
                while builder.try_append(timestamp, None, Some(&value), &[], 256 * 1024) {
                    timestamp += i64::from(records.is_multiple_of(3));
                    records += 1;
                }
                appending += started.elapsed();
                let started = Instant::now();
                std::hint::black_box(
                    builder
                        .finish(Compression::None, ProducerStamp::NONE)
                        .unwrap(),
                );
                finishing += started.elapsed();
            }
            let per = |d: Duration| d.as_nanos() as f64 / records as f64;
            println!(
                "round {round}: append {:.1} ns/record, finish {:.1} ns/record ({records} records)",
                per(appending),
                per(finishing)
            );
        }
    }
}
