//! Request decoding: prefix, version check, bounded pre-pass, then `kafka-protocol`.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;

use crate::bounded::{self, DecodeLimits};
use crate::versions;

/// The first 8 bytes of any request: api key, api version, correlation id (readable even when
/// the rest is not, so the broker can answer with the right correlation id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestPrefix {
    /// The api key as sent, known or not.
    pub api_key: i16,
    /// The api version as sent.
    pub api_version: i16,
    /// The correlation id the response must carry.
    pub correlation_id: i32,
}

/// A decoded request: the header and the body as `kafka-protocol`'s [`RequestKind`].
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedRequest {
    /// The request header (api key, version, correlation id, client id).
    pub header: RequestHeader,
    /// The request body.
    pub body: RequestKind,
}

impl DecodedRequest {
    /// The api key of this request (from [`decode_request`], always one of
    /// [`versions::SUPPORTED_APIS`]).
    pub fn api_key(&self) -> i16 {
        self.header.request_api_key
    }
}

/// Why a request could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The broker does not speak this API. The broker closes the connection.
    #[error("unknown or unsupported api key {}", .0.api_key)]
    UnknownApi(RequestPrefix),
    /// The broker speaks this API but not at this version: the broker answers
    /// UNSUPPORTED_VERSION (35), for ApiVersions with [`crate::response::encode_api_versions_fallback`].
    #[error("unsupported version {} of api key {}", .0.api_version, .0.api_key)]
    UnsupportedVersion(RequestPrefix),
    /// The bytes are not a valid request. The broker closes the connection with a log line.
    #[error("malformed request: {reason}")]
    Malformed {
        /// The prefix, when the frame was long enough to hold one.
        prefix: Option<RequestPrefix>,
        /// What was wrong.
        reason: String,
    },
    /// The request broke a decode limit (see [`DecodeLimits`]).
    #[error("request exceeds a decode limit: {reason}")]
    LimitExceeded {
        /// The prefix of the request.
        prefix: RequestPrefix,
        /// Which limit.
        reason: String,
    },
}

impl RequestError {
    /// The request prefix, when it could be read.
    pub fn prefix(&self) -> Option<RequestPrefix> {
        match self {
            RequestError::UnknownApi(prefix)
            | RequestError::UnsupportedVersion(prefix)
            | RequestError::LimitExceeded { prefix, .. } => Some(*prefix),
            RequestError::Malformed { prefix, .. } => *prefix,
        }
    }
}

/// Reads the api key, api version and correlation id from the first 8 bytes of a frame (the
/// bytes after the 4-byte size prefix).
pub fn parse_prefix(frame: &[u8]) -> Result<RequestPrefix, RequestError> {
    match frame {
        [k0, k1, v0, v1, c0, c1, c2, c3, ..] => Ok(RequestPrefix {
            api_key: i16::from_be_bytes([*k0, *k1]),
            api_version: i16::from_be_bytes([*v0, *v1]),
            correlation_id: i32::from_be_bytes([*c0, *c1, *c2, *c3]),
        }),
        _ => Err(RequestError::Malformed {
            prefix: None,
            reason: format!(
                "frame of {} bytes is shorter than a request prefix (8)",
                frame.len()
            ),
        }),
    }
}

/// Decodes a request frame (the request bytes after the 4-byte size prefix): parses the prefix,
/// checks the version table ([`versions::SUPPORTED_APIS`]), bounded-checks header and body, then
/// decodes both with `kafka-protocol` (header version from [`ApiKey::request_header_version`]).
/// Bytes after the body are ignored, as Kafka does.
pub fn decode_request(frame: Bytes, limits: &DecodeLimits) -> Result<DecodedRequest, RequestError> {
    decode_request_in(versions::SUPPORTED_APIS, frame, limits)
}

/// [`decode_request`] against another version table: accepts exactly the (api key, version)
/// pairs of `apis` (rows of api key, lowest and highest version). The broker uses
/// [`decode_request`]; this is for proving and fuzzing the schemas of APIs it does not accept
/// yet (with [`versions::SCHEMA_VERSIONS`]). The bounded pre-pass still runs first, so a pair
/// without a schema is [`RequestError::Malformed`] and never reaches `kafka-protocol`.
pub fn decode_request_in(
    apis: &[(ApiKey, i16, i16)],
    frame: Bytes,
    limits: &DecodeLimits,
) -> Result<DecodedRequest, RequestError> {
    let prefix = parse_prefix(&frame)?;
    let (min, max) =
        versions::range_in(apis, prefix.api_key).ok_or(RequestError::UnknownApi(prefix))?;
    let api_key =
        ApiKey::try_from(prefix.api_key).map_err(|()| RequestError::UnknownApi(prefix))?;
    if !(min..=max).contains(&prefix.api_version) {
        return Err(RequestError::UnsupportedVersion(prefix));
    }
    bounded::check_request(api_key, prefix.api_version, &frame, limits).map_err(|error| {
        if error.is_limit() {
            RequestError::LimitExceeded {
                prefix,
                reason: error.to_string(),
            }
        } else {
            malformed(prefix, error)
        }
    })?;

    let mut buf = frame;
    let header_version = api_key.request_header_version(prefix.api_version);
    let header = RequestHeader::decode(&mut buf, header_version)
        .map_err(|error| malformed(prefix, format_args!("header: {error:#}")))?;
    let body = RequestKind::decode(api_key, &mut buf, prefix.api_version)
        .map_err(|error| malformed(prefix, format_args!("{error:#}")))?;
    if buf.has_remaining() {
        // Kafka ignores bytes after the body, and clients depend on it: librdkafka 2.16 sends
        // Metadata v12 with a stray IncludeClusterAuthorizedOperations flag and a tagged-field
        // block after the body. The bounded pre-pass has already walked everything decoded.
        tracing::debug!(
            api_key = prefix.api_key,
            api_version = prefix.api_version,
            trailing_bytes = buf.remaining(),
            "ignoring bytes after the request body"
        );
    }
    Ok(DecodedRequest { header, body })
}

fn malformed(prefix: RequestPrefix, reason: impl std::fmt::Display) -> RequestError {
    RequestError::Malformed {
        prefix: Some(prefix),
        reason: reason.to_string(),
    }
}
