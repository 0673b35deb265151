//! Request decoding outcomes and response framing.

mod common;

use bytes::{Buf, Bytes};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use strom_protocol::bounded::DecodeLimits;
use strom_protocol::request::{
    decode_request, decode_request_in, parse_prefix, RequestError, RequestPrefix,
};
use strom_protocol::response::{encode_api_versions_fallback, encode_response, ResponseError};
use strom_protocol::versions::{is_supported, supported_range, SCHEMA_VERSIONS, SUPPORTED_APIS};

fn prefix_bytes(api_key: i16, api_version: i16) -> Vec<u8> {
    let mut bytes = api_key.to_be_bytes().to_vec();
    bytes.extend(api_version.to_be_bytes());
    bytes.extend(common::CORRELATION_ID.to_be_bytes());
    bytes
}

#[test]
fn prefix_needs_eight_bytes() {
    let bytes = prefix_bytes(3, 12);
    assert_eq!(
        parse_prefix(&bytes).unwrap(),
        RequestPrefix {
            api_key: 3,
            api_version: 12,
            correlation_id: common::CORRELATION_ID
        }
    );
    let error = parse_prefix(&bytes[..7]).unwrap_err();
    assert!(matches!(
        error,
        RequestError::Malformed { prefix: None, .. }
    ));
    assert_eq!(error.prefix(), None);
}

#[test]
fn unknown_api_and_unsupported_version_keep_the_prefix() {
    let limits = DecodeLimits::default();
    for (api_key, version) in [(ApiKey::EndTxn as i16, 0), (9999, 0), (-1, 0)] {
        let error = decode_request(Bytes::from(prefix_bytes(api_key, version)), &limits);
        assert!(matches!(error, Err(RequestError::UnknownApi(p)) if p.api_key == api_key));
    }
    for (api_key, version) in [
        (ApiKey::Metadata, 13),
        (ApiKey::Metadata, -1),
        (ApiKey::ApiVersions, 5),
        (ApiKey::Produce, 2),
        (ApiKey::Fetch, 13),
    ] {
        let error = decode_request(Bytes::from(prefix_bytes(api_key as i16, version)), &limits)
            .unwrap_err();
        assert!(
            matches!(error, RequestError::UnsupportedVersion(p)
                if p.api_version == version && p.correlation_id == common::CORRELATION_ID),
            "{error}"
        );
    }
}

#[test]
fn decode_request_accepts_only_supported_apis_though_more_have_schemas() {
    let limits = DecodeLimits::default();
    let mut schema_only = 0;
    for (api_key, version) in common::all_versions() {
        let frame = common::encode_frame(api_key, version, &common::build(api_key, version));
        decode_request_in(SCHEMA_VERSIONS, frame.clone(), &limits)
            .unwrap_or_else(|error| panic!("{api_key:?} v{version}: {error}"));
        let result = decode_request(frame, &limits);
        if is_supported(api_key as i16, version) {
            assert!(result.is_ok(), "{api_key:?} v{version}");
            continue;
        }
        schema_only += 1;
        match (supported_range(api_key as i16), result) {
            (None, Err(RequestError::UnknownApi(prefix)))
            | (Some(_), Err(RequestError::UnsupportedVersion(prefix))) => {
                assert_eq!(
                    (prefix.api_key, prefix.api_version),
                    (api_key as i16, version)
                );
            }
            (_, result) => panic!("{api_key:?} v{version} not supported: {result:?}"),
        }
    }
    assert!(schema_only > 0);
}

#[test]
fn element_limit_is_a_limit_error() {
    let body = common::build(ApiKey::Metadata, 12);
    let frame = common::encode_frame(ApiKey::Metadata, 12, &body);
    let limits = DecodeLimits {
        array_elements_total_max: 1,
    };
    let error = decode_request(frame, &limits).unwrap_err();
    assert!(
        matches!(error, RequestError::LimitExceeded { prefix, .. } if prefix.api_key == 3),
        "{error}"
    );
}

#[test]
fn header_only_frame_is_malformed() {
    let frame = common::encode_header(ApiKey::Metadata, 1);
    let error = decode_request(Bytes::from(frame), &DecodeLimits::default()).unwrap_err();
    assert!(
        matches!(
            error,
            RequestError::Malformed {
                prefix: Some(_),
                ..
            }
        ),
        "{error}"
    );
}

fn split_response(frame: &Bytes, header_version: i16) -> (ResponseHeader, Bytes) {
    let mut buf = frame.clone();
    let size = buf.get_i32() as usize;
    assert_eq!(size, buf.remaining());
    let header = ResponseHeader::decode(&mut buf, header_version).unwrap();
    (header, buf)
}

#[test]
fn metadata_response_round_trips_with_flexible_header() {
    let mut body = MetadataResponse::default();
    body.cluster_id = Some(StrBytes::from_static_str("strom"));
    body.controller_id = BrokerId(1);
    let kind = ResponseKind::Metadata(body.clone());
    for (version, header_version) in [(8, 0), (9, 1), (12, 1)] {
        let frame = encode_response(42, ApiKey::Metadata, version, &kind).unwrap();
        let (header, mut rest) = split_response(&frame, header_version);
        assert_eq!(header.correlation_id, 42);
        let decoded = MetadataResponse::decode(&mut rest, version).unwrap();
        assert!(!rest.has_remaining());
        assert_eq!(decoded.controller_id, body.controller_id);
        if version >= 2 {
            assert_eq!(decoded.cluster_id, body.cluster_id);
        }
    }
}

#[test]
fn api_versions_response_always_uses_header_v0() {
    let mut body = ApiVersionsResponse::default();
    body.api_keys = SUPPORTED_APIS
        .iter()
        .map(|&(key, min, max)| {
            let mut api = api_versions_response::ApiVersion::default();
            api.api_key = key as i16;
            api.min_version = min;
            api.max_version = max;
            api
        })
        .collect();
    let kind = ResponseKind::ApiVersions(body.clone());
    for version in 0..=4 {
        let frame = encode_response(7, ApiKey::ApiVersions, version, &kind).unwrap();
        let (header, mut rest) = split_response(&frame, 0);
        assert_eq!(header.correlation_id, 7);
        let decoded = ApiVersionsResponse::decode(&mut rest, version).unwrap();
        assert!(!rest.has_remaining(), "v{version}");
        assert_eq!(decoded.api_keys, body.api_keys);
    }
}

#[test]
fn body_of_another_api_is_refused() {
    let kind = ResponseKind::Metadata(MetadataResponse::default());
    let error = encode_response(1, ApiKey::Fetch, 12, &kind).unwrap_err();
    assert_eq!(
        error,
        ResponseError::KindMismatch {
            api_key: ApiKey::Fetch,
            body_api_key: ApiKey::Metadata
        }
    );
}

#[test]
fn version_the_body_type_lacks_is_an_encode_error() {
    let kind = ResponseKind::Metadata(MetadataResponse::default());
    let error = encode_response(1, ApiKey::Metadata, 99, &kind).unwrap_err();
    assert!(matches!(error, ResponseError::Encode { .. }), "{error}");
}

#[test]
fn api_versions_fallback_is_a_v0_response_with_unsupported_version() {
    let frame = encode_api_versions_fallback(99);
    let (header, mut rest) = split_response(&frame, 0);
    assert_eq!(header.correlation_id, 99);
    let body = ApiVersionsResponse::decode(&mut rest, 0).unwrap();
    assert!(!rest.has_remaining());
    assert_eq!(body.error_code, 35);
    let advertised: Vec<_> = body
        .api_keys
        .iter()
        .map(|api| (api.api_key, api.min_version, api.max_version))
        .collect();
    let supported: Vec<_> = SUPPORTED_APIS
        .iter()
        .map(|&(key, min, max)| (key as i16, min, max))
        .collect();
    assert_eq!(advertised, supported);
}

/// A default response body of this API.
fn default_response(api_key: ApiKey) -> ResponseKind {
    macro_rules! defaults {
        ($($variant:ident),* $(,)?) => {
            match api_key {
                $(ApiKey::$variant => ResponseKind::$variant(Default::default()),)*
                other => panic!("no default response for {other:?}: add it with its schema"),
            }
        };
    }
    defaults!(
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

#[test]
fn a_default_response_of_every_schema_api_and_version_encodes_and_round_trips() {
    for (api_key, version) in common::all_versions() {
        let body = default_response(api_key);
        let frame = encode_response(11, api_key, version, &body)
            .unwrap_or_else(|error| panic!("{api_key:?} v{version}: {error}"));
        let (header, mut rest) = split_response(&frame, api_key.response_header_version(version));
        assert_eq!(header.correlation_id, 11);
        let decoded = ResponseKind::decode(api_key, &mut rest, version)
            .unwrap_or_else(|error| panic!("{api_key:?} v{version}: {error:#}"));
        assert!(!rest.has_remaining(), "{api_key:?} v{version}");
        assert_eq!(decoded, body, "{api_key:?} v{version}");
        // The body is pre-sized: only pre-sized bodies are checked against the api key.
        let other = if api_key == ApiKey::Metadata {
            ApiKey::Fetch
        } else {
            ApiKey::Metadata
        };
        assert_eq!(
            encode_response(11, other, version, &body),
            Err(ResponseError::KindMismatch {
                api_key: other,
                body_api_key: api_key
            }),
            "{api_key:?} v{version}"
        );
    }
}
