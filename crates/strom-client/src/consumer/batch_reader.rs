//! The consumer's reader of v2 record batches, lean on purpose: it walks batch headers, checks
//! each batch's CRC-32C, and reads records in place. Keys, values and header values are
//! zero-copy slices of the fetched buffer (or of a compressed batch's records section,
//! decompressed once, under a bound), so a record costs no allocation beyond its
//! [`ConsumerRecord`] (and its header keys, if it has headers). [`decode_batches`] checks the
//! same and builds nothing per record: its [`FetchedBatch`]es are read again in place (one
//! more walk over the record headers, through the same [`read_record`]), for consumers that
//! pay neither an allocation nor a reference count per record.
//!
//! Every varint and length is bounds-checked: malformed input is an [`Error::Protocol`], never a
//! panic.
//!
//! Batch layout (Kafka's `DefaultRecordBatch`): base offset (8), length (4), partition leader
//! epoch (4), magic (1), CRC-32C (4) of everything after it, attributes (2), last offset delta
//! (4), base timestamp (8), max timestamp (8), producer id (8), producer epoch (2), base
//! sequence (4), record count (4), then the records. A record: length (varint), attributes (1),
//! timestamp delta (varlong), offset delta (varint), key and value (varint length, -1 for null,
//! bytes), header count (varint), headers (key: varint length and UTF-8 bytes; value: varint
//! length, -1 for null, bytes).

use std::sync::Arc;

use bytes::Bytes;
use strom_protocol::record_batch::{
    i16_at, i32_at, i64_at, ATTRIBUTES_AT, BASE_OFFSET_AT, BASE_TIMESTAMP_AT,
    BATCH_HEADER_SIZE_BYTES, BATCH_LENGTH_AT, BATCH_LENGTH_PREFIX_BYTES, COMPRESSION_MASK,
    CONTROL_BIT, CRC_AT, LAST_OFFSET_DELTA_AT, MAGIC_AT, MAGIC_V2, MAX_TIMESTAMP_AT,
    RECORDS_COUNT_AT, TIMESTAMP_TYPE_BIT,
};

use crate::error::{Error, Result};
use crate::types::{ConsumerRecord, TopicPartition};

/// Records of a compressed batch may number this many at most (a guard against a broker
/// claiming billions of records in a few bytes).
const COMPRESSED_BATCH_RECORDS_MAX: i64 = 16 * 1024 * 1024;
/// A record takes at least this many bytes (length, attributes, two deltas, key and value
/// lengths, header count: one byte each).
const RECORD_BYTES_MIN: usize = 7;
pub(crate) use strom_protocol::compression::DECOMPRESSED_BATCH_BYTES_MAX;

/// What one batch header says.
#[derive(Debug, Clone, Copy)]
struct BatchHeader {
    base_offset: i64,
    /// Bytes of the whole batch, header included.
    size_bytes: usize,
    attributes: i16,
    base_timestamp: i64,
    max_timestamp: i64,
    record_count: i32,
    /// The offset after the batch's last record.
    next_offset: i64,
}

/// Reads the header of the batch at the start of `bytes`: `Ok(None)` when `bytes` holds only
/// part of it (a fetch may end in a partial batch).
fn read_header(tp: &TopicPartition, bytes: &[u8]) -> Result<Option<BatchHeader>> {
    if bytes.len() < BATCH_HEADER_SIZE_BYTES {
        return Ok(None);
    }
    let base_offset = i64_at(bytes, BASE_OFFSET_AT);
    let batch_length = i32_at(bytes, BATCH_LENGTH_AT);
    let bad = |what: String| {
        Err(Error::Protocol(format!(
            "{tp}: batch at offset {base_offset}: {what}"
        )))
    };
    if batch_length < 0 {
        return Err(Error::Protocol(format!(
            "{tp}: negative batch length at offset {base_offset}"
        )));
    }
    let size_bytes = BATCH_LENGTH_PREFIX_BYTES + batch_length as usize;
    if size_bytes < BATCH_HEADER_SIZE_BYTES {
        return bad(format!(
            "length {batch_length} is shorter than a batch header"
        ));
    }
    if bytes.len() < size_bytes {
        return Ok(None);
    }
    let magic = bytes[MAGIC_AT] as i8;
    if magic != MAGIC_V2 {
        return Err(Error::Protocol(format!(
            "{tp}: message format v{magic} at offset {base_offset} is not supported"
        )));
    }
    let attributes = i16_at(bytes, ATTRIBUTES_AT);
    let last_offset_delta = i32_at(bytes, LAST_OFFSET_DELTA_AT);
    let record_count = i32_at(bytes, RECORDS_COUNT_AT);
    let count_max = if attributes & COMPRESSION_MASK != 0 {
        COMPRESSED_BATCH_RECORDS_MAX
    } else {
        ((size_bytes - BATCH_HEADER_SIZE_BYTES) / RECORD_BYTES_MIN) as i64
    };
    if record_count < 0 || i64::from(record_count) > count_max {
        return Err(Error::Protocol(format!(
            "{tp}: batch at offset {base_offset} claims {record_count} records"
        )));
    }
    if last_offset_delta < 0 {
        return bad(format!("negative last offset delta {last_offset_delta}"));
    }
    let Some(next_offset) = base_offset.checked_add(i64::from(last_offset_delta) + 1) else {
        return bad(format!("last offset delta {last_offset_delta} overflows"));
    };
    Ok(Some(BatchHeader {
        base_offset,
        size_bytes,
        attributes,
        base_timestamp: i64_at(bytes, BASE_TIMESTAMP_AT),
        max_timestamp: i64_at(bytes, MAX_TIMESTAMP_AT),
        record_count,
        next_offset,
    }))
}

/// Reads batch headers only: the offset after the last complete batch in `bytes` (at least
/// `position`) and about how many records [`decode_records`] will return from `position`
/// (what the headers claim, a compressed batch counted at most one record per byte). The
/// checks are those of [`decode_records`] short of the CRC and the records.
pub(crate) fn scan(tp: &TopicPartition, bytes: &[u8], position: i64) -> Result<(i64, usize)> {
    let mut next = position;
    let mut records = 0usize;
    let mut at = 0;
    while let Some(header) = read_header(tp, &bytes[at..])? {
        next = next.max(header.next_offset);
        at += header.size_bytes;
        if header.attributes & CONTROL_BIT == 0 && header.next_offset > position {
            records += (header.record_count as usize).min(header.size_bytes);
        }
    }
    Ok((next, records))
}

/// Decodes every complete batch in `bytes` (a fetch may end in a partial batch), appends the
/// records at or after `position` to `out`, and returns the offset after the last complete
/// batch. Control batches are skipped (but moved past). With `check_crc` false the batches'
/// CRC-32C is not checked (`check.crcs=false`); everything else is.
pub fn decode_records(
    tp: &TopicPartition,
    bytes: Bytes,
    position: i64,
    check_crc: bool,
    out: &mut Vec<ConsumerRecord>,
) -> Result<i64> {
    // One topic name for every record of the call.
    let mut topic: Option<Arc<str>> = None;
    for_each_batch(tp, &bytes, position, check_crc, |header, data| {
        let topic = topic.get_or_insert_with(|| Arc::from(tp.topic.as_str()));
        read_records(topic, tp.partition, header, &data, position, out)
    })
}

/// [`decode_records`] without building records: checks every complete batch in `bytes` as
/// `decode_records` does (header, CRC-32C, decompression, every record's layout) and appends
/// each batch with records at or after `position` to `out` as a [`FetchedBatch`], whose
/// records are then read in place. Returns the offset after the last complete batch. With
/// `check_crc` false the batches' CRC-32C is not checked (`check.crcs=false`).
pub fn decode_batches(
    tp: &TopicPartition,
    bytes: Bytes,
    position: i64,
    check_crc: bool,
    out: &mut Vec<FetchedBatch>,
) -> Result<i64> {
    let mut topic: Option<Arc<str>> = None;
    for_each_batch(tp, &bytes, position, check_crc, |header, data| {
        let len = check_records(header, &data, position)?;
        if len > 0 {
            out.push(FetchedBatch {
                topic: topic
                    .get_or_insert_with(|| Arc::from(tp.topic.as_str()))
                    .clone(),
                partition: tp.partition,
                header: *header,
                position,
                len,
                data,
            });
        }
        Ok(())
    })
}

/// Walks every complete batch in `bytes`: checks its header, skips control batches and those
/// wholly before `position`, checks the CRC-32C of the others (if `check_crc`), and hands `read` each one's
/// header and (uncompressed) records section. Returns the offset after the last complete
/// batch (at least `position`).
fn for_each_batch(
    tp: &TopicPartition,
    bytes: &Bytes,
    position: i64,
    check_crc: bool,
    mut read: impl FnMut(&BatchHeader, Bytes) -> Result<(), Malformed>,
) -> Result<i64> {
    let mut next = position;
    let mut at = 0;
    while let Some(header) = read_header(tp, &bytes[at..])? {
        let start = at;
        at += header.size_bytes;
        next = header.next_offset;
        if header.attributes & CONTROL_BIT != 0
            || header.next_offset <= position
            || header.record_count == 0
        {
            continue;
        }
        if check_crc {
            let batch = &bytes[start..at];
            let stored = i32_at(batch, CRC_AT) as u32;
            let computed = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
            if stored != computed {
                return Err(Error::Protocol(format!(
                    "{tp}: cannot decode the batch at offset {}: CRC-32C is {computed:#010x}, the batch says {stored:#010x}",
                    header.base_offset
                )));
            }
        }
        let codec = header.attributes & COMPRESSION_MASK;
        let section = start + BATCH_HEADER_SIZE_BYTES..at;
        let data = if codec == 0 {
            bytes.slice(section)
        } else {
            let raw = strom_protocol::compression::decompress(
                codec,
                &bytes[section],
                DECOMPRESSED_BATCH_BYTES_MAX,
            )
            .map_err(|e| {
                Error::Protocol(format!(
                    "{tp}: cannot decode the batch at offset {}: {e}",
                    header.base_offset
                ))
            })?;
            Bytes::from(raw)
        };
        read(&header, data).map_err(|e| {
            Error::Protocol(format!(
                "{tp}: cannot decode the batch at offset {}: {e}",
                header.base_offset
            ))
        })?;
    }
    Ok(next.max(position))
}

/// Why a record could not be read.
type Malformed = String;

/// Reads a zigzag varlong at `*at` in `buf`: at most 10 bytes.
#[inline(always)]
fn varlong(buf: &[u8], at: &mut usize) -> Result<i64, Malformed> {
    let Some(&first) = buf.get(*at) else {
        return Err(truncated(*at));
    };
    *at += 1;
    if first < 0x80 {
        return Ok(i64::from(first >> 1) ^ -i64::from(first & 1));
    }
    let mut raw = u64::from(first & 0x7f);
    let mut shift = 7;
    loop {
        let Some(&byte) = buf.get(*at) else {
            return Err(truncated(*at));
        };
        *at += 1;
        raw |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
        }
        shift += 7;
        if shift > 63 {
            return Err(format!("varint longer than 10 bytes at byte {}", *at));
        }
    }
}

/// Reads a zigzag varint (a varlong in the `i32` range).
#[inline(always)]
fn varint(buf: &[u8], at: &mut usize) -> Result<i32, Malformed> {
    let start = *at;
    let value = varlong(buf, at)?;
    i32::try_from(value).map_err(|_| format!("varint {value} out of range at byte {start}"))
}

fn truncated(at: usize) -> Malformed {
    format!("record truncated at byte {at}")
}

/// Reads a length-prefixed byte string (-1 for null) and returns its range in `buf`.
#[inline(always)]
fn nullable(
    buf: &[u8],
    at: &mut usize,
    what: &str,
) -> Result<Option<std::ops::Range<usize>>, Malformed> {
    let length = varint(buf, at)?;
    if length < 0 {
        if length == -1 {
            return Ok(None);
        }
        return Err(format!("negative {what} length {length} at byte {}", *at));
    }
    let start = *at;
    let end = start + length as usize;
    if end > buf.len() {
        return Err(format!(
            "{what} of {length} bytes at byte {start} runs past its record"
        ));
    }
    *at = end;
    Ok(Some(start..end))
}

/// One record's fields, as ranges into its batch's records section.
struct RawRecord {
    offset: i64,
    timestamp_delta: i64,
    key: Option<std::ops::Range<usize>>,
    value: Option<std::ops::Range<usize>>,
    /// The headers' bytes (after the header count).
    headers: std::ops::Range<usize>,
    header_count: usize,
}

/// Reads the record at `*at` of `buf` (a batch's records section) and moves `*at` past it;
/// `None` for a record before `position` (skipped unread). Every length is checked against
/// the record's, header keys must be UTF-8, and the fields must fill the record exactly.
#[inline(always)]
fn read_record(
    buf: &[u8],
    at: &mut usize,
    base_offset: i64,
    position: i64,
) -> Result<Option<RawRecord>, Malformed> {
    let length = varint(buf, at)?;
    if length < 0 {
        return Err(format!("negative record length {length} at byte {}", *at));
    }
    let end = *at + length as usize;
    if end > buf.len() {
        return Err(format!(
            "record of {length} bytes at byte {} runs past the batch",
            *at
        ));
    }
    // Reads below are bounded by the record's end.
    let record = &buf[..end];
    *at += 1; // attributes, unused
    let timestamp_delta = varlong(record, at)?;
    let offset_delta = varint(record, at)?;
    let offset = base_offset.wrapping_add(i64::from(offset_delta));
    if offset < position {
        *at = end;
        return Ok(None);
    }
    let key = nullable(record, at, "key")?;
    let value = nullable(record, at, "value")?;
    let header_count = varint(record, at)?;
    let headers_start = *at;
    if header_count != 0 {
        walk_headers(record, at, header_count, |_, _| {})?;
    }
    if *at != end {
        return Err(format!(
            "record ending at byte {end} has {} bytes more than its fields",
            end as i64 - *at as i64
        ));
    }
    Ok(Some(RawRecord {
        offset,
        timestamp_delta,
        key,
        value,
        headers: headers_start..end,
        header_count: header_count as usize,
    }))
}

/// Reads `count` headers at `*at` of `record`, handing each key and value range to `f`.
fn walk_headers(
    record: &[u8],
    at: &mut usize,
    count: i32,
    mut f: impl FnMut(&str, Option<std::ops::Range<usize>>),
) -> Result<(), Malformed> {
    if count < 0 {
        return Err(format!("negative header count {count} at byte {}", *at));
    }
    for _ in 0..count {
        let (key, value) = read_record_header(record, at)?;
        f(key, value);
    }
    Ok(())
}

/// Reads the header at `*at` of `record`: its key (not null, UTF-8) and its value's range.
#[inline]
fn read_record_header<'r>(
    record: &'r [u8],
    at: &mut usize,
) -> Result<(&'r str, Option<std::ops::Range<usize>>), Malformed> {
    let key = match nullable(record, at, "header key")? {
        Some(range) => std::str::from_utf8(&record[range])
            .map_err(|_| format!("header key before byte {} is not UTF-8", *at))?,
        None => return Err(format!("null header key before byte {}", *at)),
    };
    let value = nullable(record, at, "header value")?;
    Ok((key, value))
}

/// The timestamp of a record with `timestamp_delta` in the batch of `header`.
#[inline(always)]
fn timestamp_of(header: &BatchHeader, timestamp_delta: i64) -> (i64, bool) {
    if header.attributes & TIMESTAMP_TYPE_BIT != 0 {
        (header.max_timestamp, true)
    } else {
        (header.base_timestamp.wrapping_add(timestamp_delta), false)
    }
}

/// Reads the `header.record_count` records of `data` (a batch's uncompressed records section)
/// and appends those at or after `position` to `out`.
fn read_records(
    topic: &Arc<str>,
    partition: i32,
    header: &BatchHeader,
    data: &Bytes,
    position: i64,
    out: &mut Vec<ConsumerRecord>,
) -> Result<(), Malformed> {
    let buf: &[u8] = data;
    let count = header.record_count as usize;
    // The count is bounded by the bytes, so this cannot reserve absurdly.
    out.reserve(count.min(buf.len() / RECORD_BYTES_MIN));
    let mut at = 0usize;
    for _ in 0..count {
        let Some(raw) = read_record(buf, &mut at, header.base_offset, position)? else {
            continue;
        };
        let headers = if raw.header_count == 0 {
            Vec::new()
        } else {
            let mut headers = Vec::with_capacity(raw.header_count);
            let mut at = raw.headers.start;
            walk_headers(buf, &mut at, raw.header_count as i32, |key, value| {
                headers.push((key.to_owned(), value.map(|r| data.slice(r))));
            })?;
            headers
        };
        let (timestamp_ms, log_append_time) = timestamp_of(header, raw.timestamp_delta);
        out.push(ConsumerRecord {
            topic: topic.clone(),
            partition,
            offset: raw.offset,
            timestamp_ms,
            log_append_time,
            key: raw.key.map(|r| data.slice(r)),
            value: raw.value.map(|r| data.slice(r)),
            headers,
        });
    }
    check_end(buf, at, count)
}

/// Checks the `header.record_count` records of `data` as [`read_records`] does; returns how
/// many are at or after `position`.
fn check_records(header: &BatchHeader, data: &[u8], position: i64) -> Result<usize, Malformed> {
    let count = header.record_count as usize;
    let mut at = 0usize;
    let mut len = 0;
    for _ in 0..count {
        len += usize::from(read_record(data, &mut at, header.base_offset, position)?.is_some());
    }
    check_end(data, at, count)?;
    Ok(len)
}

/// The records of a batch must fill its records section exactly.
fn check_end(buf: &[u8], at: usize, count: usize) -> Result<(), Malformed> {
    if at != buf.len() {
        return Err(format!(
            "{} bytes after the last of {count} records",
            buf.len().saturating_sub(at)
        ));
    }
    Ok(())
}

/// A record batch of a fetch, checked in full when it was fetched (CRC-32C, header,
/// decompression, every record's layout, as for [`ConsumerRecord`]s), whose records are read
/// in place: iterating them costs no allocation and no reference count per record.
///
/// It holds its records section (a slice of the fetch response, or the batch decompressed).
/// Control batches never appear; records before the consumer's position when the batch was
/// fetched are skipped.
#[derive(Clone)]
pub struct FetchedBatch {
    topic: Arc<str>,
    partition: i32,
    header: BatchHeader,
    /// Records before this offset are skipped.
    position: i64,
    /// Records at or after `position`.
    len: usize,
    /// The records section, uncompressed.
    data: Bytes,
}

impl std::fmt::Debug for FetchedBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchedBatch")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("base_offset", &self.header.base_offset)
            .field("len", &self.len)
            .finish()
    }
}

impl FetchedBatch {
    /// Topic (shared by the batches of a partition).
    pub fn topic(&self) -> &Arc<str> {
        &self.topic
    }

    /// Partition.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// The offset of the batch's first record (which may come before the records returned).
    pub fn base_offset(&self) -> i64 {
        self.header.base_offset
    }

    /// The offset after the batch's last record.
    pub fn next_offset(&self) -> i64 {
        self.header.next_offset
    }

    /// How many records [`records`](Self::records) yields (at least 1).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the batch yields no record (never, for a batch from a poll).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The records, in offset order, read in place.
    pub fn records(&self) -> RecordViews<'_> {
        RecordViews {
            batch: self,
            at: 0,
            left: self.header.record_count as usize,
        }
    }
}

/// The records of a [`FetchedBatch`], read in place.
#[derive(Debug, Clone)]
pub struct RecordViews<'a> {
    batch: &'a FetchedBatch,
    /// Where the next record starts in the records section.
    at: usize,
    /// Records of the batch not read yet (skipped ones included).
    left: usize,
}

impl<'a> Iterator for RecordViews<'a> {
    type Item = RecordView<'a>;

    #[inline]
    fn next(&mut self) -> Option<RecordView<'a>> {
        let batch = self.batch;
        let data: &'a [u8] = &batch.data;
        while self.left > 0 {
            self.left -= 1;
            // Checked when the batch was fetched, so an error cannot happen here; were one to,
            // the iteration ends.
            let raw =
                match read_record(data, &mut self.at, batch.header.base_offset, batch.position) {
                    Ok(Some(raw)) => raw,
                    Ok(None) => continue,
                    Err(error) => {
                        debug_assert!(false, "a checked batch failed: {error}");
                        self.left = 0;
                        return None;
                    }
                };
            let (timestamp_ms, log_append_time) = timestamp_of(&batch.header, raw.timestamp_delta);
            return Some(RecordView {
                offset: raw.offset,
                timestamp_ms,
                log_append_time,
                key: raw.key.map(|r| &data[r]),
                value: raw.value.map(|r| &data[r]),
                headers: RecordHeaders {
                    bytes: &data[raw.headers],
                    count: raw.header_count,
                },
            });
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left))
    }
}

/// A record of a [`FetchedBatch`], borrowed from it: what a [`ConsumerRecord`] holds, without
/// an allocation or a reference count (topic and partition are the batch's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// Offset.
    pub offset: i64,
    /// Timestamp in ms since the epoch.
    pub timestamp_ms: i64,
    /// Whether the timestamp is the broker's append time (else the producer's create time).
    pub log_append_time: bool,
    /// Key.
    pub key: Option<&'a [u8]>,
    /// Value.
    pub value: Option<&'a [u8]>,
    /// Headers, in order (duplicate keys kept).
    pub headers: RecordHeaders<'a>,
}

/// The headers of a [`RecordView`], read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeaders<'a> {
    /// The encoded headers (after their count).
    bytes: &'a [u8],
    count: usize,
}

impl<'a> RecordHeaders<'a> {
    /// How many headers the record has.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the record has no header.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The headers in order: key and value (`None` for a null value).
    pub fn iter(&self) -> HeaderViews<'a> {
        HeaderViews {
            bytes: self.bytes,
            at: 0,
            left: self.count,
        }
    }
}

impl<'a> IntoIterator for RecordHeaders<'a> {
    type Item = (&'a str, Option<&'a [u8]>);
    type IntoIter = HeaderViews<'a>;
    fn into_iter(self) -> HeaderViews<'a> {
        self.iter()
    }
}

/// Iterates the headers of a [`RecordView`].
#[derive(Debug, Clone)]
pub struct HeaderViews<'a> {
    bytes: &'a [u8],
    at: usize,
    left: usize,
}

impl<'a> Iterator for HeaderViews<'a> {
    type Item = (&'a str, Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let bytes = self.bytes;
        // Checked when the batch was fetched; were it to fail now, the iteration ends.
        match read_record_header(bytes, &mut self.at) {
            Ok((key, value)) => Some((key, value.map(|r| &bytes[r]))),
            Err(error) => {
                debug_assert!(false, "a checked header failed: {error}");
                self.left = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::types::Header;
    use bytes::BytesMut;
    use indexmap::IndexMap;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    /// The record a view shows, as `decode_records` builds it.
    pub(crate) fn view_record(batch: &FetchedBatch, view: RecordView<'_>) -> ConsumerRecord {
        ConsumerRecord {
            topic: batch.topic().clone(),
            partition: batch.partition(),
            offset: view.offset,
            timestamp_ms: view.timestamp_ms,
            log_append_time: view.log_append_time,
            key: view.key.map(Bytes::copy_from_slice),
            value: view.value.map(Bytes::copy_from_slice),
            headers: view
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.map(Bytes::copy_from_slice)))
                .collect(),
        }
    }

    /// `decode_records`, checking that `decode_batches` agrees with it: the same next offset
    /// or the same error, and batches whose views are the same records.
    pub(crate) fn checked_decode(
        tp: &TopicPartition,
        bytes: Bytes,
        position: i64,
        out: &mut Vec<ConsumerRecord>,
    ) -> Result<i64> {
        let before = out.len();
        let records = decode_records(tp, bytes.clone(), position, true, out);
        let mut batches = Vec::new();
        let batched = decode_batches(tp, bytes, position, true, &mut batches);
        match (&records, &batched) {
            (Ok(next), Ok(batch_next)) => {
                assert_eq!(next, batch_next);
                let viewed: Vec<ConsumerRecord> = batches
                    .iter()
                    .flat_map(|b| b.records().map(move |v| view_record(b, v)))
                    .collect();
                assert_eq!(&out[before..], &viewed[..]);
                let lens: usize = batches.iter().map(FetchedBatch::len).sum();
                assert_eq!(lens, viewed.len());
                assert!(batches.iter().all(|b| !b.is_empty()));
            }
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            _ => panic!("decode_records gave {records:?}, decode_batches {batched:?}"),
        }
        records
    }

    const CODECS: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    fn record(offset: i64, key: Option<&str>, value: Option<&str>) -> Record {
        Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset,
            // kafka-protocol's encoder starts a new batch where offset - sequence changes.
            sequence: offset as i32,
            timestamp: 1_000 + offset * 3,
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            headers: IndexMap::new(),
        }
    }

    fn encode(records: &[Record], compression: Compression) -> Bytes {
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        let one_batch = BATCH_LENGTH_PREFIX_BYTES + i32_at(&buf, BATCH_LENGTH_AT) as usize;
        assert_eq!(one_batch, buf.len(), "the records make one batch");
        buf.freeze()
    }

    fn fix_crc(batch: &mut [u8]) {
        let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
        batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    }

    /// A batch of `n` records with keys, null keys, null values, empty values and headers.
    fn varied(base: i64, n: i64) -> Vec<Record> {
        (0..n)
            .map(|i| {
                let offset = base + i;
                let key = format!("k{offset}");
                let value = format!("value-{offset}");
                let mut r = record(
                    offset,
                    (i % 3 != 0).then_some(key.as_str()),
                    match i % 5 {
                        0 => None,
                        1 => Some(""),
                        _ => Some(value.as_str()),
                    },
                );
                if i % 4 == 1 {
                    r.headers.insert(
                        StrBytes::from_static_str("h"),
                        Some(Bytes::from_static(b"1")),
                    );
                    r.headers.insert(StrBytes::from_static_str("empty"), None);
                    r.headers.insert(
                        StrBytes::from_string(format!("n{offset}")),
                        Some(Bytes::new()),
                    );
                }
                r
            })
            .collect()
    }

    fn assert_same(decoded: &[ConsumerRecord], expected: &[Record]) {
        assert_eq!(decoded.len(), expected.len());
        for (d, e) in decoded.iter().zip(expected) {
            assert_eq!(d.offset, e.offset);
            assert_eq!(d.timestamp_ms, e.timestamp);
            assert!(!d.log_append_time);
            assert_eq!(d.key, e.key);
            assert_eq!(d.value, e.value);
            let headers: Vec<Header> = e
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            assert_eq!(d.headers, headers);
        }
    }

    #[test]
    fn round_trips_every_codec() {
        let tp = TopicPartition::new("t", 3);
        for codec in CODECS {
            let records = varied(10, 40);
            let mut out = Vec::new();
            let next = checked_decode(&tp, encode(&records, codec), 10, &mut out).unwrap();
            assert_eq!(next, 50, "{codec:?}");
            assert_same(&out, &records);
            assert!(out.iter().all(|r| &*r.topic == "t" && r.partition == 3));
        }
    }

    #[test]
    fn duplicate_header_keys_are_kept_in_order() {
        // kafka-protocol's encoder takes an IndexMap (unique keys), so write the record by hand:
        // key "k", value "v", headers a=1, a=null, a=2.
        let tp = TopicPartition::new("t", 0);
        let mut body = vec![0u8]; // attributes
        body.extend_from_slice(&[0, 0]); // timestamp delta 0, offset delta 0
        body.extend_from_slice(&[2, b'k', 2, b'v', 6]); // key, value, 3 headers
        body.extend_from_slice(&[2, b'a', 2, b'1']);
        body.extend_from_slice(&[2, b'a', 1]);
        body.extend_from_slice(&[2, b'a', 2, b'2']);
        let mut section = vec![(body.len() as u8) << 1];
        section.extend_from_slice(&body);
        let mut batch = encode(&[record(7, None, Some("x"))], Compression::None).to_vec();
        batch.truncate(BATCH_HEADER_SIZE_BYTES);
        batch.extend_from_slice(&section);
        let length = (batch.len() - BATCH_LENGTH_PREFIX_BYTES) as i32;
        batch[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
        fix_crc(&mut batch);
        let mut out = Vec::new();
        assert_eq!(
            checked_decode(&tp, Bytes::from(batch), 0, &mut out).unwrap(),
            8
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].key.as_deref(), Some(&b"k"[..]));
        assert_eq!(out[0].value.as_deref(), Some(&b"v"[..]));
        let one = |s: &'static [u8]| Some(Bytes::from_static(s));
        assert_eq!(
            out[0].headers,
            vec![
                ("a".to_string(), one(b"1")),
                ("a".to_string(), None),
                ("a".to_string(), one(b"2"))
            ]
        );
    }

    #[test]
    fn round_trips_the_producers_batches_with_duplicate_header_keys() {
        use crate::record_batch::{ProducerStamp, RecordBatchBuilder};
        let tp = TopicPartition::new("t", 0);
        let one = |s: &'static [u8]| Some(Bytes::from_static(s));
        let headers: Vec<Header> = vec![
            ("a".into(), one(b"1")),
            ("a".into(), None),
            ("b".into(), one(b"")),
            ("a".into(), one(b"2")),
        ];
        for codec in CODECS {
            let mut builder = RecordBatchBuilder::with_capacity(1024);
            builder.append(500, Some(b"k"), Some(b"v"), &headers);
            builder.append(499, None, None, &[]);
            builder.append(510, Some(b""), Some(b"third"), &headers[..1]);
            let batch = builder.finish(codec, ProducerStamp::NONE).unwrap();
            let mut out = Vec::new();
            assert_eq!(checked_decode(&tp, batch, 0, &mut out).unwrap(), 3);
            assert_eq!(out.len(), 3, "{codec:?}");
            assert_eq!(out[0].headers, headers);
            assert_eq!(
                (out[0].key.clone(), out[0].value.clone()),
                (one(b"k"), one(b"v"))
            );
            assert_eq!((out[1].key.clone(), out[1].value.clone()), (None, None));
            assert!(out[1].headers.is_empty());
            assert_eq!(out[2].key, one(b""));
            assert_eq!(out[2].value, one(b"third"));
            let offsets_and_times: Vec<(i64, i64)> =
                out.iter().map(|r| (r.offset, r.timestamp_ms)).collect();
            assert_eq!(offsets_and_times, [(0, 500), (1, 499), (2, 510)]);
        }
    }

    #[test]
    fn starts_inside_a_batch_and_stops_at_a_partial_one() {
        let tp = TopicPartition::new("t", 0);
        for codec in CODECS {
            let first = varied(0, 10);
            let second = varied(10, 5);
            let mut bytes = BytesMut::new();
            bytes.extend_from_slice(&encode(&first, codec));
            bytes.extend_from_slice(&encode(&second, codec));
            let third = encode(&varied(15, 5), codec);
            bytes.extend_from_slice(&third[..third.len() - 1]);
            let bytes = bytes.freeze();
            let mut out = Vec::new();
            assert_eq!(checked_decode(&tp, bytes.clone(), 7, &mut out).unwrap(), 15);
            let expected: Vec<Record> = first[7..].iter().chain(&second).cloned().collect();
            assert_same(&out, &expected);
            let (next, count) = scan(&tp, &bytes, 7).unwrap();
            assert_eq!((next, count), (15, 15));
            // A position past everything complete: nothing, and the position stays.
            let mut out = Vec::new();
            assert_eq!(
                checked_decode(&tp, bytes.clone(), 15, &mut out).unwrap(),
                15
            );
            assert!(out.is_empty());
            // Only a partial header.
            assert_eq!(
                checked_decode(&tp, bytes.slice(..30), 0, &mut out).unwrap(),
                0
            );
        }
    }

    #[test]
    fn control_batches_are_skipped_and_moved_past() {
        let tp = TopicPartition::new("t", 0);
        let mut control = record(0, Some("\0\0\0\0"), Some("\0\0\0\0\0\0"));
        control.control = true;
        control.transactional = true;
        let mut bytes = BytesMut::new();
        bytes.extend_from_slice(&encode(&[control], Compression::None));
        bytes.extend_from_slice(&encode(&[record(1, None, Some("a"))], Compression::None));
        let mut out = Vec::new();
        assert_eq!(checked_decode(&tp, bytes.freeze(), 0, &mut out).unwrap(), 2);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].offset, 1);
    }

    #[test]
    fn log_append_time_is_the_max_timestamp() {
        let tp = TopicPartition::new("t", 0);
        let mut batch = encode(&varied(0, 3), Compression::None).to_vec();
        let attributes = i16_at(&batch, ATTRIBUTES_AT) | TIMESTAMP_TYPE_BIT;
        batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
        batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&99_999i64.to_be_bytes());
        fix_crc(&mut batch);
        let mut out = Vec::new();
        checked_decode(&tp, Bytes::from(batch), 0, &mut out).unwrap();
        assert!(out
            .iter()
            .all(|r| r.log_append_time && r.timestamp_ms == 99_999));
    }

    #[test]
    fn malformed_records_are_errors() {
        let tp = TopicPartition::new("t", 0);
        let good = encode(&[record(0, Some("k"), Some("v"))], Compression::None).to_vec();
        let decode = |batch: &[u8]| {
            let mut batch = batch.to_vec();
            fix_crc(&mut batch);
            checked_decode(&tp, Bytes::from(batch), 0, &mut Vec::new())
        };
        assert!(decode(&good).is_ok());
        // The record: length, attributes, timestamp delta, offset delta, key length (1 byte:
        // zigzag 2), 'k', value length, 'v', header count.
        let key_length_at = BATCH_HEADER_SIZE_BYTES + 4;
        assert_eq!(good[key_length_at], 2);
        let header_count_at = good.len() - 1;
        for (at, patch, expected) in [
            (key_length_at, 5u8, "negative key length"),   // -3
            (key_length_at, 0x7e, "runs past its record"), // 63 bytes
            (header_count_at, 0x80, "record truncated"),   // a varint running past the record
            (header_count_at, 1, "negative header count"),
            (BATCH_HEADER_SIZE_BYTES, 0x7e, "runs past the batch"), // record length 63
        ] {
            let mut bad = good.clone();
            bad[at] = patch;
            let error = decode(&bad).unwrap_err().to_string();
            assert!(error.contains(expected), "{at} {patch}: {error}");
        }
        // A record count above what the bytes hold.
        let mut bad = good.clone();
        bad[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&2i32.to_be_bytes());
        assert!(decode(&bad).is_err());
        // Trailing bytes after the last record.
        let mut bad = good.clone();
        bad.push(0);
        let length = (bad.len() - BATCH_LENGTH_PREFIX_BYTES) as i32;
        bad[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&length.to_be_bytes());
        assert!(decode(&bad)
            .unwrap_err()
            .to_string()
            .contains("after the last"));
        // A batch length shorter than a header.
        let mut bad = good.clone();
        bad[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&10i32.to_be_bytes());
        assert!(decode(&bad).unwrap_err().to_string().contains("shorter"));
    }

    /// Truncations and bit flips (with the CRC fixed up, so the record walker and the
    /// decompressors see the damage) never panic.
    #[test]
    fn damaged_batches_never_panic() {
        let tp = TopicPartition::new("t", 0);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for codec in CODECS {
            let good = encode(&varied(100, 12), codec);
            for cut in 0..good.len() {
                let mut out = Vec::new();
                let next = checked_decode(&tp, good.slice(..cut), 100, &mut out).unwrap();
                assert_eq!(next, 100);
                assert!(out.is_empty());
            }
            for _ in 0..3_000 {
                let mut bad = good.to_vec();
                for _ in 0..1 + random() % 3 {
                    let bit = random() as usize % (bad.len() * 8);
                    bad[bit / 8] ^= 1 << (bit % 8);
                }
                let _ = checked_decode(&tp, Bytes::from(bad.clone()), 0, &mut Vec::new());
                fix_crc(&mut bad);
                let _ = checked_decode(&tp, Bytes::from(bad.clone()), 0, &mut Vec::new());
                let _ = scan(&tp, &bad, 0);
                if codec == Compression::None {
                    // Random bytes as the records section.
                    for b in &mut bad[BATCH_HEADER_SIZE_BYTES..] {
                        *b = random() as u8;
                    }
                    fix_crc(&mut bad);
                    let _ = checked_decode(&tp, Bytes::from(bad), 0, &mut Vec::new());
                }
            }
        }
    }
}

#[cfg(test)]
mod speed {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    /// Decoding cost per 100-byte record, apart from fetching:
    /// `cargo test --release -p strom-client --lib decode_speed -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn decode_speed() {
        let mut buf = BytesMut::new();
        let value = Bytes::from(vec![b'x'; 100]);
        let mut offset = 0i64;
        while buf.len() < 8 << 20 {
            let records: Vec<Record> = (0..150)
                .map(|i| Record {
                    transactional: false,
                    control: false,
                    delete_horizon: false,
                    partition_leader_epoch: 0,
                    producer_id: -1,
                    producer_epoch: -1,
                    timestamp_type: TimestampType::Creation,
                    offset: offset + i,
                    sequence: (offset + i) as i32,
                    timestamp: 1000,
                    key: None,
                    value: Some(value.clone()),
                    headers: Default::default(),
                })
                .collect();
            offset += 150;
            RecordBatchEncoder::encode(
                &mut buf,
                records.iter(),
                &RecordEncodeOptions {
                    version: 2,
                    compression: Compression::None,
                },
            )
            .unwrap();
        }
        let bytes = buf.freeze();
        let tp = TopicPartition::new("c100", 0);
        let mut total = 0;
        let mut decoding = std::time::Duration::ZERO;
        let mut dropping = std::time::Duration::ZERO;
        let mut crc = std::time::Duration::ZERO;
        for _ in 0..30 {
            let mut out = Vec::with_capacity(offset as usize);
            let started = std::time::Instant::now();
            decode_records(&tp, bytes.clone(), 0, true, &mut out).unwrap();
            decoding += started.elapsed();
            total += out.len();
            let started = std::time::Instant::now();
            drop(out);
            dropping += started.elapsed();
            let started = std::time::Instant::now();
            std::hint::black_box(crc32c::crc32c(&bytes));
            crc += started.elapsed();
        }
        // The same through decode_batches, reading every value in place.
        let mut batched = std::time::Duration::ZERO;
        let mut viewed = 0;
        for _ in 0..30 {
            let started = std::time::Instant::now();
            let mut batches = Vec::new();
            decode_batches(&tp, bytes.clone(), 0, true, &mut batches).unwrap();
            for batch in &batches {
                for record in batch.records() {
                    viewed += record.value.map_or(0, <[u8]>::len).min(1);
                }
            }
            drop(batches);
            batched += started.elapsed();
        }
        assert_eq!(viewed, total);
        let per = |d: std::time::Duration| d.as_nanos() as f64 / total as f64;
        println!(
            "decode: {:.1} ns/record, drop {:.1}, crc {:.1}; decode_batches and a read of every value: {:.1} ({total} records)",
            per(decoding),
            per(dropping),
            per(crc),
            per(batched)
        );
    }
}
