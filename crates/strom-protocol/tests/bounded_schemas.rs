//! Proof that the hand-written request schemas match `kafka-protocol`'s wire format, for every
//! API and version with a schema ([`SCHEMA_VERSIONS`], including APIs the broker does not accept
//! yet), and that a crafted array count is rejected for every API.

mod common;

use bytes::Bytes;
use common::{all_versions, build, empty_top_level_array, encode_frame, is_flexible};
use kafka_protocol::messages::{ApiKey, RequestKind};
use strom_protocol::bounded::{check_request, BoundedError, DecodeLimits};
use strom_protocol::request::{decode_request_in, DecodedRequest, RequestError};
use strom_protocol::versions::SCHEMA_VERSIONS;

/// Decodes against [`SCHEMA_VERSIONS`], so the schemas of APIs not accepted yet are proven too.
fn decode_request(frame: Bytes, limits: &DecodeLimits) -> Result<DecodedRequest, RequestError> {
    decode_request_in(SCHEMA_VERSIONS, frame, limits)
}

#[test]
fn every_schema_version_has_a_builder_and_schema_that_round_trip() {
    let limits = DecodeLimits::default();
    for (api_key, version) in all_versions() {
        let body = build(api_key, version);
        let frame = encode_frame(api_key, version, &body);
        // The walker accepts it and consumes exactly all bytes.
        let trailing = check_request(api_key, version, &frame, &limits)
            .unwrap_or_else(|error| panic!("{api_key:?} v{version}: {error}"));
        assert_eq!(trailing, 0, "{api_key:?} v{version}");
        let decoded = decode_request(frame.clone(), &limits)
            .unwrap_or_else(|error| panic!("{api_key:?} v{version}: {error}"));
        assert_eq!(decoded.body, body, "{api_key:?} v{version}");
        assert_eq!(decoded.header, common::header(api_key, version));
        // The nearest rejected inputs: one byte more, one byte less.
        let mut longer = frame.to_vec();
        longer.push(0);
        assert_eq!(
            check_request(api_key, version, &longer, &limits),
            Ok(1),
            "{api_key:?} v{version}"
        );
        assert!(check_request(api_key, version, &frame[..frame.len() - 1], &limits).is_err());
    }
}

#[test]
fn the_walker_counts_every_array_element_and_tagged_field() {
    for (api_key, version) in all_versions() {
        let frame = encode_frame(api_key, version, &build(api_key, version));
        let fits = |max| {
            let limits = DecodeLimits {
                array_elements_total_max: max,
            };
            check_request(api_key, version, &frame, &limits)
        };
        // Find the exact element total by bisection, then check its neighbour is rejected.
        let (mut low, mut high) = (0usize, frame.len());
        while low < high {
            let middle = (low + high) / 2;
            if fits(middle).is_ok() {
                high = middle;
            } else {
                low = middle + 1;
            }
        }
        assert!(fits(low).is_ok());
        if low > 0 {
            let error = fits(low - 1).unwrap_err();
            assert!(error.is_limit(), "{api_key:?} v{version}: {error}");
        }
    }
}

/// Varint encoding of a compact count claiming `n` elements.
fn compact_count(n: u32) -> Vec<u8> {
    let mut value = n + 1;
    let mut bytes = vec![];
    while value >= 0x80 {
        bytes.push((value as u8) | 0x80);
        value >>= 7;
    }
    bytes.push(value as u8);
    bytes
}

#[test]
fn a_crafted_top_level_count_is_rejected_for_every_api_and_version() {
    let limits = DecodeLimits::default();
    let mut apis_covered = std::collections::BTreeSet::new();
    for (api_key, version) in all_versions() {
        let full = build(api_key, version);
        let mut empty = full.clone();
        if !empty_top_level_array(&mut empty, version) {
            continue; // no top-level array: ApiVersions, DescribeCluster, Heartbeat, ...
        }
        let full = encode_frame(api_key, version, &full);
        let empty = encode_frame(api_key, version, &empty);
        // The first differing byte is the last byte of the top-level array's count.
        let differ = (0..empty.len())
            .find(|&i| full[i] != empty[i])
            .expect("frames differ");
        let flexible = is_flexible(api_key, version);
        let count_start = if flexible { differ } else { differ - 3 };
        for claimed in [i32::MAX as u32, 1 << 20, 1000] {
            let mut crafted = empty[..count_start].to_vec();
            if flexible {
                crafted.extend(compact_count(claimed));
            } else {
                crafted.extend((claimed as i32).to_be_bytes());
            }
            let error = check_request(api_key, version, &crafted, &limits).unwrap_err();
            assert!(
                matches!(error, BoundedError::CountTooLarge { count, .. } if count == u64::from(claimed)),
                "{api_key:?} v{version}: {error}"
            );
            let error = decode_request(Bytes::from(crafted), &limits).unwrap_err();
            assert!(
                matches!(error, RequestError::Malformed { .. }),
                "{api_key:?} v{version}: {error}"
            );
        }
        apis_covered.insert(api_key as i16);
    }
    assert_eq!(apis_covered.len(), 27);
}

/// Empties one nested array or bytes field (inside an element of a top-level array), if the
/// request has one worth crafting: group protocol metadata and assignments (bytes) and nested
/// partition lists.
fn empty_nested(body: &mut RequestKind) -> bool {
    match body {
        RequestKind::JoinGroup(r) => r.protocols[0].metadata = Bytes::new(),
        RequestKind::SyncGroup(r) => r.assignments[0].assignment = Bytes::new(),
        RequestKind::ConsumerGroupHeartbeat(r) => {
            r.topic_partitions.as_mut().expect("built with partitions")[0]
                .partitions
                .clear()
        }
        RequestKind::OffsetCommit(r) => r.topics[0].partitions.clear(),
        RequestKind::OffsetFetch(r) if r.groups.is_empty() => {
            r.topics.as_mut().expect("built with topics")[0]
                .partition_indexes
                .clear()
        }
        RequestKind::OffsetFetch(r) => r.groups[0].topics = Some(vec![]),
        RequestKind::OffsetDelete(r) => r.topics[0].partitions.clear(),
        RequestKind::TxnOffsetCommit(r) => r.topics[0].partitions.clear(),
        RequestKind::AddPartitionsToTxn(r) if r.transactions.is_empty() => {
            r.v3_and_below_topics[0].partitions.clear()
        }
        RequestKind::AddPartitionsToTxn(r) => r.transactions[0].topics.clear(),
        _ => return false,
    }
    true
}

#[test]
fn a_crafted_nested_count_or_bytes_length_is_rejected() {
    let limits = DecodeLimits::default();
    let mut apis_covered = std::collections::BTreeSet::new();
    for (api_key, version) in all_versions() {
        let full = build(api_key, version);
        let mut emptied = full.clone();
        if !empty_nested(&mut emptied) {
            continue;
        }
        let full = encode_frame(api_key, version, &full);
        let emptied = encode_frame(api_key, version, &emptied);
        // The first differing byte is the last byte of the nested count or length (int32 in
        // non-flexible versions: arrays and bytes alike; a one-byte varint in flexible ones).
        let differ = (0..emptied.len())
            .find(|&i| full[i] != emptied[i])
            .expect("frames differ");
        let flexible = is_flexible(api_key, version);
        let (count_start, count_end) = if flexible {
            (differ, differ + 1)
        } else {
            (differ - 3, differ + 1)
        };
        for claimed in [i32::MAX as u32, 1 << 20, 1000] {
            // The full frame with only that count replaced, so every enclosing count still fits.
            let mut crafted = full[..count_start].to_vec();
            if flexible {
                crafted.extend(compact_count(claimed));
            } else {
                crafted.extend((claimed as i32).to_be_bytes());
            }
            crafted.extend_from_slice(&full[count_end..]);
            let error = check_request(api_key, version, &crafted, &limits).unwrap_err();
            let claimed = u64::from(claimed);
            assert!(
                matches!(error, BoundedError::CountTooLarge { count, .. } if count == claimed)
                    || matches!(error, BoundedError::Truncated { needed, .. } if needed == claimed),
                "{api_key:?} v{version}: {error}"
            );
            let error = decode_request(Bytes::from(crafted), &limits).unwrap_err();
            assert!(
                matches!(error, RequestError::Malformed { .. }),
                "{api_key:?} v{version}: {error}"
            );
        }
        apis_covered.insert(api_key as i16);
    }
    assert_eq!(apis_covered.len(), 8);
}

#[test]
fn metadata_body_of_four_bytes_claiming_i32_max_topics() {
    for version in 0..=8 {
        let mut frame = common::encode_header(ApiKey::Metadata, version);
        frame.extend_from_slice(&i32::MAX.to_be_bytes());
        let error = decode_request(Bytes::from(frame), &DecodeLimits::default()).unwrap_err();
        assert!(
            matches!(&error, RequestError::Malformed { reason, .. } if reason.contains("2147483647")),
            "v{version}: {error}"
        );
    }
}

/// Writes one encoded request per API and version into the fuzz corpus when
/// `STROM_WRITE_FUZZ_CORPUS` names a directory (e.g. `fuzz/corpus/decode_request`).
#[test]
fn write_fuzz_corpus() {
    let Some(dir) = std::env::var_os("STROM_WRITE_FUZZ_CORPUS") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (api_key, version) in all_versions() {
        let frame = encode_frame(api_key, version, &build(api_key, version));
        std::fs::write(dir.join(format!("{api_key:?}-v{version}")), &frame).unwrap();
    }
}
