//! Record-level access to v2 batches, for the log cleaner only (the append and fetch paths
//! never decode records). Records are walked in place after decompression; a retained record
//! is copied byte for byte from its key length to its end (key, value and headers, including
//! repeated header keys), and only its timestamp delta is re-encoded when the batch's base
//! timestamp changes. Decompression and compression use `kafka-protocol`'s codecs.
//!
//! Every length and varint is bounds-checked: a malformed batch is an error, never a panic.

use bytes::{Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Decompressor, Gzip, Lz4, Snappy, Zstd};
use strom_protocol::record_batch::{COMPRESSION_MASK, CRC_AT};

use crate::batch::{compute_crc, BatchHeader, BATCH_HEADER_SIZE_BYTES, BATCH_LENGTH_PREFIX_BYTES};

/// One record seen in place inside a decompressed records section.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordView<'a> {
    /// Record attributes byte (unused by Kafka today, kept as is).
    pub(crate) attributes: u8,
    /// Timestamp relative to the batch's `baseTimestamp`.
    pub(crate) timestamp_delta: i64,
    /// Offset relative to the batch's `baseOffset`.
    pub(crate) offset_delta: i32,
    /// The key, `None` for a null key.
    pub(crate) key: Option<&'a [u8]>,
    /// Whether the value is non-null (a null value is a tombstone).
    pub(crate) has_value: bool,
    /// The bytes from the key length to the end of the record (key, value, headers).
    pub(crate) body: &'a [u8],
}

/// Walks the records of a decompressed records section; see [`records`].
pub(crate) struct Records<'a> {
    data: &'a [u8],
    position: usize,
    remaining: i32,
    failed: bool,
}

/// Iterates `count` records in `data`. Yields an error (once) for a malformed record or when
/// the bytes and the count disagree.
pub(crate) fn records(data: &[u8], count: i32) -> Records<'_> {
    Records {
        data,
        position: 0,
        remaining: count,
        failed: false,
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<RecordView<'a>, String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        if self.remaining <= 0 {
            if self.position != self.data.len() {
                self.failed = true;
                return Some(Err(format!(
                    "{} bytes after the last record",
                    self.data.len() - self.position
                )));
            }
            return None;
        }
        match parse_record(self.data, &mut self.position) {
            Some(view) => {
                self.remaining -= 1;
                Some(Ok(view))
            }
            None => {
                self.failed = true;
                Some(Err(format!(
                    "malformed record at byte {} with {} records left",
                    self.position, self.remaining
                )))
            }
        }
    }
}

fn parse_record<'a>(data: &'a [u8], position: &mut usize) -> Option<RecordView<'a>> {
    let length = usize::try_from(read_varint(data, position)?).ok()?;
    let end = position.checked_add(length)?;
    let record = data.get(*position..end)?;
    *position = end;
    let mut at = 0usize;
    let attributes = *record.first()?;
    at += 1;
    let timestamp_delta = read_varlong(record, &mut at)?;
    let offset_delta = read_varint(record, &mut at)?;
    let body = record.get(at..)?;
    let key = read_nullable_bytes(record, &mut at)?;
    let value = read_nullable_bytes(record, &mut at)?;
    Some(RecordView {
        attributes,
        timestamp_delta,
        offset_delta,
        key,
        has_value: value.is_some(),
        body,
    })
}

fn read_nullable_bytes<'a>(data: &'a [u8], position: &mut usize) -> Option<Option<&'a [u8]>> {
    let length = read_varint(data, position)?;
    if length < 0 {
        return Some(None);
    }
    let end = position.checked_add(length as usize)?;
    let bytes = data.get(*position..end)?;
    *position = end;
    Some(Some(bytes))
}

/// Reads a zigzag varlong; `None` if truncated or longer than 10 bytes.
pub(crate) fn read_varlong(data: &[u8], position: &mut usize) -> Option<i64> {
    let mut raw = 0u64;
    for shift in (0..70).step_by(7) {
        let byte = *data.get(*position)?;
        *position += 1;
        raw |= u64::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
    }
    None
}

/// Reads a zigzag varint; `None` if truncated or out of the `i32` range.
pub(crate) fn read_varint(data: &[u8], position: &mut usize) -> Option<i32> {
    i32::try_from(read_varlong(data, position)?).ok()
}

/// Appends `value` as a zigzag varlong.
pub(crate) fn write_varlong(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

/// Appends one record with the given deltas and `body` (key length to end) copied as is.
pub(crate) fn write_record(
    out: &mut Vec<u8>,
    attributes: u8,
    timestamp_delta: i64,
    offset_delta: i32,
    body: &[u8],
) {
    let mut head = Vec::with_capacity(16);
    head.push(attributes);
    write_varlong(&mut head, timestamp_delta);
    write_varlong(&mut head, i64::from(offset_delta));
    write_varlong(out, (head.len() + body.len()) as i64);
    out.extend_from_slice(&head);
    out.extend_from_slice(body);
}

/// The records section of `batch` (whole batch bytes), decompressed.
pub(crate) fn decompressed_records(header: &BatchHeader, batch: Bytes) -> Result<Bytes, String> {
    let mut section = batch.slice(BATCH_HEADER_SIZE_BYTES.min(batch.len())..);
    let take = |buf: &mut Bytes| Ok(std::mem::take(buf));
    let result = match header.compression() {
        0 => Ok(section),
        1 => <Gzip as Decompressor<Bytes>>::decompress(&mut section, take),
        2 => <Snappy as Decompressor<Bytes>>::decompress(&mut section, take),
        3 => <Lz4 as Decompressor<Bytes>>::decompress(&mut section, take),
        4 => <Zstd as Decompressor<Bytes>>::decompress(&mut section, take),
        codec => return Err(format!("unknown compression codec {codec}")),
    };
    result.map_err(|e| format!("decompressing batch at offset {}: {e}", header.base_offset))
}

fn compress(codec: u8, raw: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = BytesMut::new();
    let fill = |buf: &mut BytesMut| {
        buf.extend_from_slice(raw);
        Ok(())
    };
    let result = match codec {
        0 => return Ok(raw.to_vec()),
        1 => <Gzip as Compressor<BytesMut>>::compress(&mut out, fill),
        2 => <Snappy as Compressor<BytesMut>>::compress(&mut out, fill),
        3 => <Lz4 as Compressor<BytesMut>>::compress(&mut out, fill),
        4 => <Zstd as Compressor<BytesMut>>::compress(&mut out, fill),
        codec => return Err(format!("unknown compression codec {codec}")),
    };
    result.map_err(|e| format!("compressing records: {e}"))?;
    Ok(out.to_vec())
}

/// Builds a v2 batch from `header` (offsets, producer fields, leader epoch, `maxTimestamp` and
/// `lastOffsetDelta` kept) with new `attributes`, `base_timestamp` and records: `raw_records`
/// is the uncompressed records section holding `records_count` records, compressed here with
/// the codec of `attributes`. Recomputes the length and the CRC.
pub(crate) fn build_batch(
    header: &BatchHeader,
    attributes: i16,
    base_timestamp: i64,
    records_count: i32,
    raw_records: &[u8],
) -> Result<Vec<u8>, String> {
    let section = if records_count == 0 {
        Vec::new()
    } else {
        compress((attributes & COMPRESSION_MASK) as u8, raw_records)?
    };
    let size_bytes = BATCH_HEADER_SIZE_BYTES + section.len();
    let batch_length = i32::try_from(size_bytes - BATCH_LENGTH_PREFIX_BYTES)
        .map_err(|_| format!("rewritten batch of {size_bytes} bytes is too large"))?;
    let new_header = BatchHeader {
        batch_length,
        attributes,
        base_timestamp,
        records_count,
        crc: 0,
        ..*header
    };
    let mut out = Vec::with_capacity(size_bytes);
    new_header.encode(&mut out);
    out.extend_from_slice(&section);
    let crc = compute_crc(&out);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::records::{Compression, RecordBatchDecoder};

    use crate::test_support::{keyed_batch, KeyedRecord};

    #[test]
    fn varints_round_trip_and_reject_garbage() {
        for value in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            300,
            i64::from(i32::MAX),
            i64::MIN,
            i64::MAX,
        ] {
            let mut out = Vec::new();
            write_varlong(&mut out, value);
            let mut at = 0;
            assert_eq!(read_varlong(&out, &mut at), Some(value));
            assert_eq!(at, out.len());
        }
        assert_eq!(read_varlong(&[0x80], &mut 0), None);
        assert_eq!(read_varlong(&[0xff; 11], &mut 0), None);
        let mut big = Vec::new();
        write_varlong(&mut big, i64::from(i32::MAX) + 1);
        assert_eq!(read_varint(&big, &mut 0), None);
    }

    #[test]
    fn walks_and_rebuilds_records_with_every_codec() {
        let records = [
            KeyedRecord::new(Some("a"), Some("1"), 100),
            KeyedRecord::new(None, Some("2"), 101),
            KeyedRecord::new(Some("c"), None, 105),
        ];
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let bytes = keyed_batch(&records, compression, None);
            let header = BatchHeader::parse(&bytes).unwrap();
            let data = decompressed_records(&header, Bytes::from(bytes.clone())).unwrap();
            let views: Vec<RecordView<'_>> = records_of(&data, header.records_count);
            assert_eq!(views.len(), 3);
            assert_eq!(views[0].key, Some(&b"a"[..]));
            assert!(views[0].has_value);
            assert_eq!(views[1].key, None);
            assert_eq!(views[2].key, Some(&b"c"[..]));
            assert!(!views[2].has_value);
            assert_eq!(views[2].offset_delta, 2);
            assert_eq!(views[2].timestamp_delta, 5);
            // Keep the last record only, moving the base timestamp down by 10.
            let mut raw = Vec::new();
            let last = views[2];
            write_record(
                &mut raw,
                last.attributes,
                last.timestamp_delta + 10,
                last.offset_delta,
                last.body,
            );
            let rebuilt = build_batch(
                &header,
                header.attributes,
                header.base_timestamp - 10,
                1,
                &raw,
            )
            .unwrap();
            let decoded = RecordBatchDecoder::decode(&mut Bytes::from(rebuilt.clone())).unwrap();
            assert_eq!(decoded.records.len(), 1);
            assert_eq!(decoded.records[0].offset, header.base_offset + 2);
            assert_eq!(decoded.records[0].timestamp, 105);
            assert_eq!(decoded.records[0].value, None);
            let rebuilt_header = BatchHeader::parse(&rebuilt).unwrap();
            assert_eq!(rebuilt_header.last_offset_delta, header.last_offset_delta);
            assert_eq!(rebuilt_header.max_timestamp, header.max_timestamp);
            assert_eq!(rebuilt_header.compression(), header.compression());
        }
    }

    fn records_of(data: &[u8], count: i32) -> Vec<RecordView<'_>> {
        records(data, count).map(|r| r.unwrap()).collect()
    }

    #[test]
    fn malformed_sections_are_errors() {
        let bytes = keyed_batch(
            &[KeyedRecord::new(Some("a"), Some("1"), 1)],
            Compression::None,
            None,
        );
        let data = &bytes[BATCH_HEADER_SIZE_BYTES..];
        assert!(records(data, 2).any(|r| r.is_err()));
        assert!(records(data, 0).any(|r| r.is_err()));
        assert!(records(&data[..data.len() - 1], 1).any(|r| r.is_err()));
        for cut in 0..data.len() {
            let _ = records(&data[..cut], 1).count();
        }
    }
}
