//! Produce: validate each partition's batches by their headers, append them as received, and
//! answer with the base offset. On one node the high watermark follows the log end offset, so
//! acks=all is satisfied as soon as the append returns.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::records::Compression;
use strom_protocol::compression::DECOMPRESSED_BATCH_BYTES_MAX;
use strom_protocol::record_batch::{
    ATTRIBUTES_AT, BATCH_HEADER_SIZE_BYTES, BATCH_LENGTH_AT, BATCH_LENGTH_PREFIX_BYTES,
    COMPRESSION_MASK, CRC_AT,
};
use strom_storage::batch::batches as walk_batches;
use strom_storage::batch::{validate_batches, TimestampType};
use strom_storage::AppendOutcome;

use super::str_bytes;
use crate::errors::{batch_error_code, storage_error_code};
use crate::state::{now_ms, BrokerState};

/// Returns `None` for acks=0, where the client expects no response.
pub fn handle(
    state: &BrokerState,
    _version: i16,
    request: ProduceRequest,
) -> Option<ProduceResponse> {
    let acks = request.acks;
    let names: Vec<String> = request
        .topic_data
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    let creation_failures = state.auto_create_topics(&names);
    let mut response = ProduceResponse::default();
    for topic in request.topic_data {
        let name = topic.name.to_string();
        let mut topic_response = TopicProduceResponse::default();
        topic_response.name = topic.name.clone();
        for data in topic.partition_data {
            let outcome = if !matches!(acks, -1..=1) {
                Err((
                    ResponseError::InvalidRequiredAcks.code(),
                    format!("acks must be -1, 0 or 1, not {acks}"),
                ))
            } else if let Some(code) = creation_failures.get(&name) {
                Err((*code, format!("topic '{name}' could not be created")))
            } else {
                append(state, &name, data.index, data.records.as_deref(), acks)
            };
            let mut partition_response = PartitionProduceResponse::default();
            partition_response.index = data.index;
            match outcome {
                Ok(appended) => {
                    partition_response.base_offset = appended.base_offset;
                    partition_response.log_append_time_ms = appended.log_append_time_ms;
                    partition_response.log_start_offset = appended.log_start_offset;
                }
                Err((code, message)) => {
                    partition_response.error_code = code;
                    partition_response.base_offset = -1;
                    partition_response.log_append_time_ms = -1;
                    partition_response.log_start_offset = -1;
                    partition_response.error_message = Some(str_bytes(&message));
                }
            }
            topic_response.partition_responses.push(partition_response);
        }
        response.responses.push(topic_response);
    }
    (acks != 0).then_some(response)
}

struct Appended {
    base_offset: i64,
    log_append_time_ms: i64,
    log_start_offset: i64,
}

fn append(
    state: &BrokerState,
    topic: &str,
    index: i32,
    records: Option<&[u8]>,
    acks: i16,
) -> Result<Appended, (i16, String)> {
    let Some(partition) = state.replicas.get(topic, index) else {
        return Err((
            ResponseError::UnknownTopicOrPartition.code(),
            format!("this broker hosts no partition {index} of topic '{topic}'"),
        ));
    };
    let (leader, leader_epoch, isr_len) = {
        let leadership = partition.leadership.read();
        (
            leadership.leader,
            leadership.leader_epoch,
            leadership.isr.len(),
        )
    };
    if leader != state.node_id() {
        return Err((
            ResponseError::NotLeaderOrFollower.code(),
            format!(
                "broker {} is not the leader of {topic}-{index}",
                state.node_id()
            ),
        ));
    }
    let records = records.unwrap_or_default();
    if records.is_empty() {
        return Err((
            ResponseError::InvalidRecord.code(),
            "the produce request carries no record batch".to_string(),
        ));
    }
    let rules = partition.rules.read().clone();
    let now = now_ms();
    let validated = validate_batches(records, &rules.validation, now)
        .map_err(|e| (batch_error_code(&e), e.to_string()))?;
    if validated.batch_count != 1 {
        // Kafka: Produce v3+ carries exactly one batch per partition.
        return Err((
            ResponseError::InvalidRecord.code(),
            format!(
                "a produce request must carry exactly one record batch per partition, not {}",
                validated.batch_count
            ),
        ));
    }
    if rules.compacted {
        require_keys(records)?;
    }
    if acks == -1 && isr_len < rules.min_insync_replicas {
        return Err((
            ResponseError::NotEnoughReplicas.code(),
            format!(
                "{isr_len} in-sync replica(s), min.insync.replicas is {}",
                rules.min_insync_replicas
            ),
        ));
    }
    let log_append_time_ms =
        (rules.validation.timestamp_type == TimestampType::LogAppendTime).then_some(now);
    // The one copy: out of the request frame into a buffer whose headers we may rewrite
    // (re-encoded instead when the topic's compression.type asks for another codec).
    let mut batches = match rules.compression {
        Some(codec) => recompress(records, codec)?,
        None => records.to_vec(),
    };
    let (outcome, log_end_offset) = {
        let mut log = partition.log.lock();
        let outcome = log
            .append_checked(&mut batches, leader_epoch, log_append_time_ms, now)
            .map_err(|e| (storage_error_code(&e), e.to_string()))?;
        let log_end_offset = log.log_end_offset();
        log.set_high_watermark(log_end_offset);
        (outcome, log_end_offset)
    };
    match outcome {
        AppendOutcome::Appended(info) => {
            partition.publish_log_end_offset(log_end_offset);
            state.catch_up_budget.appended();
            partition.recent_appends.lock().record(
                now,
                batches.len() as u64,
                state.config.fetch_catchup_tail_ms,
            );
            Ok(Appended {
                base_offset: info.base_offset,
                log_append_time_ms: log_append_time_ms.unwrap_or(-1),
                log_start_offset: info.log_start_offset,
            })
        }
        // A retried batch already in the log: answer with where it went, append nothing.
        AppendOutcome::Duplicate {
            base_offset,
            log_start_offset,
            ..
        } => Ok(Appended {
            base_offset,
            log_append_time_ms: -1,
            log_start_offset,
        }),
    }
}

/// Compacted topics keep the last record per key, so every record needs one (Kafka answers
/// INVALID_RECORD otherwise). This reads records (decompressing under
/// [`DECOMPRESSED_BATCH_BYTES_MAX`]), which only compacted topics pay for.
fn require_keys(records: &[u8]) -> Result<(), (i16, String)> {
    let corrupt = |e: String| (ResponseError::CorruptMessage.code(), e);
    for batch in walk_batches(records) {
        let (header, bytes) = batch.map_err(|e| corrupt(e.to_string()))?;
        if header.is_control() {
            continue;
        }
        let section = &bytes[BATCH_HEADER_SIZE_BYTES..];
        let decompressed;
        let section = match header.compression() {
            0 => section,
            codec => {
                decompressed = strom_protocol::compression::decompress(
                    i16::from(codec),
                    section,
                    DECOMPRESSED_BATCH_BYTES_MAX,
                )
                .map_err(corrupt)?;
                &decompressed[..]
            }
        };
        if !all_records_keyed(section).map_err(corrupt)? {
            return Err((
                ResponseError::InvalidRecord.code(),
                "compacted topics accept only records with a key".to_string(),
            ));
        }
    }
    Ok(())
}

/// Whether every record of an uncompressed records section has a key. A record: length
/// (varint), attributes (1), timestamp delta (varlong), offset delta (varint), key length
/// (varint, -1 for null), ...
fn all_records_keyed(mut section: &[u8]) -> Result<bool, String> {
    while !section.is_empty() {
        let (length, used) = zigzag(section).ok_or("bad record length")?;
        let rest = &section[used..];
        let length = usize::try_from(length)
            .ok()
            .filter(|&n| n <= rest.len())
            .ok_or("record length past the end of the batch")?;
        let mut record = &rest[..length];
        record = record.get(1..).ok_or("truncated record")?; // attributes
        for _ in 0..2 {
            let (_, used) = zigzag(record).ok_or("bad record varint")?; // timestamp, offset deltas
            record = &record[used..];
        }
        let (key_length, _) = zigzag(record).ok_or("bad key length")?;
        if key_length < 0 {
            return Ok(false);
        }
        section = &rest[length..];
    }
    Ok(true)
}

/// A zigzag varint (up to 64 bits) and the bytes it used.
fn zigzag(bytes: &[u8]) -> Option<(i64, usize)> {
    let mut value = 0u64;
    for (i, byte) in bytes.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((((value >> 1) as i64) ^ -((value & 1) as i64), i + 1));
        }
    }
    None
}

/// Re-codes the records section of every batch whose codec differs from the topic's
/// `compression.type`. The 61-byte header is kept except for the codec bits, the length and the
/// CRC, so producer id, epoch, sequences, timestamps and record bytes stay exactly as sent.
fn recompress(records: &[u8], codec: Compression) -> Result<Vec<u8>, (i16, String)> {
    use strom_storage::batch::compute_crc;
    let corrupt = |e: String| (ResponseError::CorruptMessage.code(), e);
    let mut out = Vec::with_capacity(records.len());
    for batch in walk_batches(records) {
        let (header, bytes) = batch.map_err(|e| corrupt(e.to_string()))?;
        if header.compression() == codec as u8 || header.is_control() {
            out.extend_from_slice(bytes);
            continue;
        }
        let section = Bytes::copy_from_slice(&bytes[BATCH_HEADER_SIZE_BYTES..]);
        let raw = codec_decompress(header.compression(), section).map_err(corrupt)?;
        let coded = codec_compress(codec, &raw)
            .map_err(|e| (ResponseError::UnknownServerError.code(), e))?;
        let start = out.len();
        out.extend_from_slice(&bytes[..BATCH_HEADER_SIZE_BYTES]);
        out.extend_from_slice(&coded);
        let batch = &mut out[start..];
        let batch_length = (batch.len() - BATCH_LENGTH_PREFIX_BYTES) as i32;
        batch[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&batch_length.to_be_bytes());
        let attributes = (header.attributes & !COMPRESSION_MASK) | codec as i16;
        batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
        let crc = compute_crc(batch);
        batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    }
    Ok(out)
}

fn codec_decompress(codec: u8, data: Bytes) -> Result<Bytes, String> {
    if codec == 0 {
        return Ok(data);
    }
    strom_protocol::compression::decompress(i16::from(codec), &data, DECOMPRESSED_BATCH_BYTES_MAX)
        .map(Bytes::from)
}

fn codec_compress(codec: Compression, raw: &[u8]) -> Result<bytes::BytesMut, String> {
    use bytes::BufMut;
    use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
    let mut out = bytes::BytesMut::new();
    let result = match codec {
        Compression::None => {
            out.put_slice(raw);
            Ok(())
        }
        Compression::Gzip => Gzip::compress(&mut out, |buf| {
            buf.put_slice(raw);
            Ok(())
        }),
        Compression::Snappy => Snappy::compress(&mut out, |buf| {
            buf.put_slice(raw);
            Ok(())
        }),
        Compression::Lz4 => Lz4::compress(&mut out, |buf| {
            buf.put_slice(raw);
            Ok(())
        }),
        Compression::Zstd => Zstd::compress(&mut out, |buf| {
            buf.put_slice(raw);
            Ok(())
        }),
    };
    result.map_err(|e| format!("{e:#}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::indexmap::IndexMap;
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

    fn batch(keys: &[Option<&str>], compression: Compression) -> Vec<u8> {
        let records: Vec<Record> = keys
            .iter()
            .enumerate()
            .map(|(i, key)| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // Offset minus sequence must be constant for one batch (base sequence -1).
                sequence: i as i32 - 1,
                timestamp: 1_700_000_000_000 + i as i64,
                key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
                value: Some(Bytes::from(vec![b'v'; 300])),
                headers: IndexMap::new(),
            })
            .collect();
        let mut out = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression,
        };
        RecordBatchEncoder::encode(&mut out, records.iter(), &options).unwrap();
        out.to_vec()
    }

    #[test]
    fn compacted_topics_need_a_key_on_every_record_whatever_the_codec() {
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            assert!(require_keys(&batch(&[Some("a"), Some("")], codec)).is_ok());
            let error = require_keys(&batch(&[Some("a"), None, Some("c")], codec)).unwrap_err();
            assert_eq!(error.0, ResponseError::InvalidRecord.code(), "{codec:?}");
        }
    }

    #[test]
    fn damaged_records_are_corrupt_not_a_panic() {
        let good = batch(&[Some("a"), Some("b")], Compression::None);
        assert_eq!(walk_batches(&good).count(), 1);
        let section = &good[BATCH_HEADER_SIZE_BYTES..];
        assert_eq!(all_records_keyed(section), Ok(true));
        for cut in 0..section.len() {
            let _ = all_records_keyed(&section[..cut]);
        }
        assert!(all_records_keyed(&[0xff; 12]).is_err());
        assert!(all_records_keyed(&[0x7e]).is_err(), "length past the end");
    }
}
