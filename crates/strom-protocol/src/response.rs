//! Response frame encoding.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;

use crate::chunked::{ChunkedFrame, Frame, ZERO_COPY_MIN_BYTES};
use crate::versions::SUPPORTED_APIS;

/// Kafka's UNSUPPORTED_VERSION error code.
pub const UNSUPPORTED_VERSION_ERROR_CODE: i16 = 35;

/// Why a response could not be encoded. Every cause is a broker bug (a body of the wrong kind
/// or a version the body type does not have), never bad client input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// The body is the response of another API.
    #[error("response body for {body_api_key:?} sent as a response to {api_key:?}")]
    KindMismatch {
        /// The API of the request being answered.
        api_key: ApiKey,
        /// The API the body belongs to.
        body_api_key: ApiKey,
    },
    /// `kafka-protocol` refused to encode the header or body.
    #[error("encoding {api_key:?} v{api_version} response: {reason}")]
    Encode {
        /// The API.
        api_key: ApiKey,
        /// The version.
        api_version: i16,
        /// `kafka-protocol`'s error.
        reason: String,
    },
}

/// Encodes a complete response frame: the 4-byte size prefix, the response header of the right
/// version for `api_key` and `api_version` (ApiVersions responses always use header v0), then
/// the body.
pub fn encode_response(
    correlation_id: i32,
    api_key: ApiKey,
    api_version: i16,
    body: &ResponseKind,
) -> Result<Bytes, ResponseError> {
    let encode_error = encode_error(api_key, api_version);
    let (header, header_version, header_size) =
        response_header(correlation_id, api_key, api_version)?;
    let body_size = match body_api_key_and_size(body, api_version) {
        Some((body_api_key, _)) if body_api_key != api_key => {
            return Err(ResponseError::KindMismatch {
                api_key,
                body_api_key,
            })
        }
        Some((_, size)) => size.map_err(|error| encode_error(&error))?,
        None => 0, // not pre-sized: an API outside `body_api_key_and_size`
    };

    let mut frame = BytesMut::with_capacity(4 + header_size + body_size);
    frame.put_i32(0); // size, patched below
    header
        .encode(&mut frame, header_version)
        .map_err(|error| encode_error(&error))?;
    body.encode(&mut frame, api_version)
        .map_err(|error| encode_error(&error))?;
    let size = i32::try_from(frame.len() - 4).map_err(|error| encode_error(&error))?;
    frame[..4].copy_from_slice(&size.to_be_bytes());
    Ok(frame.freeze())
}

/// Encodes a Fetch response frame whose `records` stay the `Bytes` the handler put there (read
/// from the log) instead of being copied into the frame: the result is a [`Frame`] of chunks to
/// be written with vectored writes. Byte for byte the same as [`encode_response`].
pub fn encode_fetch_response(
    correlation_id: i32,
    api_version: i16,
    body: &FetchResponse,
) -> Result<Frame, ResponseError> {
    let api_key = ApiKey::Fetch;
    let encode_error = encode_error(api_key, api_version);
    let (header, header_version, header_size) =
        response_header(correlation_id, api_key, api_version)?;
    let body_size = body
        .compute_size(api_version)
        .map_err(|error| encode_error(&error))?;
    let size = i32::try_from(header_size + body_size).map_err(|error| encode_error(&error))?;
    // Only records the frame takes by reference (no allocation for an empty fetch; smaller
    // ones are copied into the head, which is sized for them).
    let records: Vec<Bytes> = body
        .responses
        .iter()
        .flat_map(|topic| topic.partitions.iter())
        .filter_map(|partition| partition.records.clone())
        .filter(|records| records.len() >= ZERO_COPY_MIN_BYTES)
        .collect();
    let stored_bytes: usize = records.iter().map(Bytes::len).sum();
    let mut frame = ChunkedFrame::new(
        (4 + header_size + body_size).saturating_sub(stored_bytes),
        &records,
    );
    frame.put_i32(size);
    header
        .encode(&mut frame, header_version)
        .map_err(|error| encode_error(&error))?;
    body.encode(&mut frame, api_version)
        .map_err(|error| encode_error(&error))?;
    match frame.finish() {
        Some(frame) => Ok(frame),
        None => {
            let kind = ResponseKind::Fetch(body.clone());
            encode_response(correlation_id, api_key, api_version, &kind).map(Frame::single)
        }
    }
}

/// Makes a [`ResponseError::Encode`] for `api_key` at `api_version` from any error.
fn encode_error(
    api_key: ApiKey,
    api_version: i16,
) -> impl Fn(&dyn std::fmt::Display) -> ResponseError {
    move |error| ResponseError::Encode {
        api_key,
        api_version,
        reason: format!("{error:#}"),
    }
}

/// The response header for `correlation_id`, its version for `api_key` at `api_version`, and
/// its encoded size.
fn response_header(
    correlation_id: i32,
    api_key: ApiKey,
    api_version: i16,
) -> Result<(ResponseHeader, i16, usize), ResponseError> {
    let header_version = api_key.response_header_version(api_version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_size = header
        .compute_size(header_version)
        .map_err(|error| encode_error(api_key, api_version)(&error))?;
    Ok((header, header_version, header_size))
}

/// The api key a response body belongs to and its encoded size, for every API with a request
/// schema ([`crate::versions::SCHEMA_VERSIONS`]; `tests/request_response.rs` checks each one).
fn body_api_key_and_size(
    body: &ResponseKind,
    version: i16,
) -> Option<(ApiKey, Result<usize, String>)> {
    macro_rules! sized {
        ($($variant:ident),* $(,)?) => {
            match body {
                $(ResponseKind::$variant(x) => Some((ApiKey::$variant, x.compute_size(version).map_err(|error| format!("{error:#}")))),)*
                _ => None,
            }
        };
    }
    sized!(
        Produce,
        Fetch,
        ListOffsets,
        Metadata,
        ApiVersions,
        CreateTopics,
        DeleteTopics,
        DeleteRecords,
        OffsetForLeaderEpoch,
        DescribeConfigs,
        AlterConfigs,
        DescribeLogDirs,
        CreatePartitions,
        IncrementalAlterConfigs,
        DescribeCluster,
        FindCoordinator,
        JoinGroup,
        SyncGroup,
        Heartbeat,
        LeaveGroup,
        OffsetCommit,
        OffsetFetch,
        ListGroups,
        DescribeGroups,
        DeleteGroups,
        OffsetDelete,
        ConsumerGroupHeartbeat,
        ConsumerGroupDescribe,
        InitProducerId,
        AddPartitionsToTxn,
        AddOffsetsToTxn,
        EndTxn,
        TxnOffsetCommit,
    )
}

/// Kafka's answer to an ApiVersions request at a version the broker does not speak: header v0,
/// then a v0-format body with error code UNSUPPORTED_VERSION (35) and the supported ranges
/// ([`SUPPORTED_APIS`]), so the client can retry at a version both sides speak.
pub fn encode_api_versions_fallback(correlation_id: i32) -> Bytes {
    // correlation id (4) + error code (2) + array count (4) + (key, min, max) per API (6 each).
    let size = 4 + 2 + 4 + 6 * SUPPORTED_APIS.len();
    let mut frame = BytesMut::with_capacity(4 + size);
    frame.put_i32(size as i32);
    frame.put_i32(correlation_id);
    frame.put_i16(UNSUPPORTED_VERSION_ERROR_CODE);
    frame.put_i32(SUPPORTED_APIS.len() as i32);
    for &(api_key, min, max) in SUPPORTED_APIS {
        frame.put_i16(api_key as i16);
        frame.put_i16(min);
        frame.put_i16(max);
    }
    debug_assert_eq!(frame.len(), 4 + size);
    frame.freeze()
}
