//! Hand-made inputs for the walker; the per-API schema proofs live in `tests/bounded_schemas.rs`.

use super::*;

/// Header v1 (api key, version, correlation id, client id "c") for Metadata v1.
fn metadata_v1_header() -> Vec<u8> {
    let mut bytes = vec![0, 3, 0, 1, 0, 0, 0, 7];
    bytes.extend_from_slice(&[0, 1, b'c']);
    bytes
}

#[test]
fn metadata_claiming_i32_max_topics_is_rejected() {
    let mut frame = metadata_v1_header();
    frame.extend_from_slice(&i32::MAX.to_be_bytes());
    let error = check_request(ApiKey::Metadata, 1, &frame, &DecodeLimits::default()).unwrap_err();
    assert!(
        matches!(error, BoundedError::CountTooLarge { count, .. } if count == i32::MAX as u64),
        "{error}"
    );
}

#[test]
fn metadata_with_null_topics_is_accepted() {
    let mut frame = metadata_v1_header();
    frame.extend_from_slice(&(-1i32).to_be_bytes());
    check_request(ApiKey::Metadata, 1, &frame, &DecodeLimits::default()).unwrap();
}

#[test]
fn count_exactly_fitting_is_accepted_one_more_is_rejected() {
    // Two topics with empty names: 2 bytes each.
    let mut frame = metadata_v1_header();
    frame.extend_from_slice(&2i32.to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0]);
    check_request(ApiKey::Metadata, 1, &frame, &DecodeLimits::default()).unwrap();
    let at = frame.len() - 5;
    frame[at] = 3;
    let error = check_request(ApiKey::Metadata, 1, &frame, &DecodeLimits::default()).unwrap_err();
    assert!(
        matches!(error, BoundedError::CountTooLarge { count: 3, .. }),
        "{error}"
    );
}

#[test]
fn element_limit_is_enforced() {
    let mut frame = metadata_v1_header();
    frame.extend_from_slice(&3i32.to_be_bytes());
    frame.extend_from_slice(&[0; 6]);
    let limits = DecodeLimits {
        array_elements_total_max: 2,
    };
    let error = check_request(ApiKey::Metadata, 1, &frame, &limits).unwrap_err();
    assert_eq!(error, BoundedError::ElementsTotalExceeded { max: 2 });
    assert!(error.is_limit());
    let limits = DecodeLimits {
        array_elements_total_max: 3,
    };
    check_request(ApiKey::Metadata, 1, &frame, &limits).unwrap();
}

#[test]
fn trailing_byte_is_counted_not_rejected() {
    let mut frame = metadata_v1_header();
    frame.extend_from_slice(&0i32.to_be_bytes());
    assert_eq!(
        check_request(ApiKey::Metadata, 1, &frame, &DecodeLimits::default()),
        Ok(0)
    );
    frame.push(0);
    assert_eq!(
        check_request(ApiKey::Metadata, 1, &frame, &DecodeLimits::default()),
        Ok(1)
    );
}

#[test]
fn negative_string_length_is_rejected() {
    let mut frame = metadata_v1_header();
    frame.extend_from_slice(&1i32.to_be_bytes());
    frame.extend_from_slice(&(-2i16).to_be_bytes());
    let error = check_request(ApiKey::Metadata, 1, &frame, &DecodeLimits::default()).unwrap_err();
    assert!(
        matches!(error, BoundedError::NegativeLength { length: -2, .. }),
        "{error}"
    );
}

/// Fetch v12 header v2 with an empty client id and no header tags.
fn fetch_v12_prefix() -> Vec<u8> {
    let mut bytes = vec![0, 1, 0, 12, 0, 0, 0, 9, 0, 0, 0];
    // replica_id, max_wait_ms, min_bytes, max_bytes, isolation_level, session_id, session_epoch
    bytes.extend_from_slice(&[0; 4 * 4 + 1 + 4 * 2]);
    // topics: empty; forgotten: empty; rack_id: ""
    bytes.extend_from_slice(&[1, 1, 1]);
    bytes
}

#[test]
fn known_tag_must_take_its_declared_size() {
    // One tagged field: tag 0 (cluster_id), size 3, compact string "ab" (length 2 + 1).
    let mut frame = fetch_v12_prefix();
    frame.extend_from_slice(&[1, 0, 3, 3, b'a', b'b']);
    check_request(ApiKey::Fetch, 12, &frame, &DecodeLimits::default()).unwrap();
    // Same value declared as 2 bytes: kafka-protocol would read 3, the spec says 2.
    let mut frame = fetch_v12_prefix();
    frame.extend_from_slice(&[1, 0, 2, 3, b'a', b'b']);
    let error = check_request(ApiKey::Fetch, 12, &frame, &DecodeLimits::default()).unwrap_err();
    assert!(
        matches!(error, BoundedError::TagSizeMismatch { tag: 0, .. }),
        "{error}"
    );
}

#[test]
fn unknown_tags_are_skipped_by_size_and_counted() {
    let mut frame = fetch_v12_prefix();
    frame.extend_from_slice(&[2, 7, 2, 0xff, 0xff, 8, 0]);
    check_request(ApiKey::Fetch, 12, &frame, &DecodeLimits::default()).unwrap();
    let limits = DecodeLimits {
        array_elements_total_max: 1,
    };
    let error = check_request(ApiKey::Fetch, 12, &frame, &limits).unwrap_err();
    assert!(error.is_limit());
    // An unknown tag whose size runs past the frame.
    let mut frame = fetch_v12_prefix();
    frame.extend_from_slice(&[1, 7, 0x7f]);
    let error = check_request(ApiKey::Fetch, 12, &frame, &DecodeLimits::default()).unwrap_err();
    assert!(matches!(error, BoundedError::Truncated { .. }), "{error}");
}

#[test]
fn tagged_field_count_beyond_the_frame_is_rejected() {
    let mut frame = fetch_v12_prefix();
    frame.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x07]);
    let error = check_request(ApiKey::Fetch, 12, &frame, &DecodeLimits::default()).unwrap_err();
    assert!(
        matches!(error, BoundedError::CountTooLarge { .. }),
        "{error}"
    );
}

#[test]
fn unsupported_version_has_no_schema() {
    let frame = metadata_v1_header();
    let error = check_request(ApiKey::Metadata, 13, &frame, &DecodeLimits::default()).unwrap_err();
    assert!(matches!(error, BoundedError::NoSchema { .. }));
    let error = check_request(ApiKey::JoinGroup, 10, &frame, &DecodeLimits::default()).unwrap_err();
    assert!(matches!(error, BoundedError::NoSchema { .. }));
    let error =
        check_request(ApiKey::SaslHandshake, 1, &frame, &DecodeLimits::default()).unwrap_err();
    assert!(matches!(error, BoundedError::NoSchema { .. }));
}

#[test]
fn every_schema_versions_row_has_a_schema_for_each_of_its_versions() {
    for &(api_key, min, max) in crate::versions::SCHEMA_VERSIONS {
        let schema = schemas::message_schema(api_key).unwrap_or_else(|| panic!("{api_key:?}"));
        assert_eq!(schema.api_key, api_key);
        assert!(schema.versions.contains(min) && schema.versions.contains(max));
        for version in min..=max {
            let header_version = api_key.request_header_version(version);
            assert!(schemas::REQUEST_HEADER_VERSIONS.contains(header_version));
            // The header is flexible exactly when the body is.
            assert_eq!(
                header_version >= 2,
                schema.flexible.contains(version),
                "{api_key:?}"
            );
        }
    }
}
