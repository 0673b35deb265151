//! Fetch responses encoded as chunks are byte for byte the contiguous encoding, and their
//! record batches are the handler's buffers, not copies.

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use strom_protocol::response::{encode_fetch_response, encode_response};

fn response(partitions_per_topic: &[Vec<Option<usize>>], seed: u8, version: i16) -> FetchResponse {
    let mut response = FetchResponse::default();
    if version >= 7 {
        response.session_id = 7;
    }
    for (t, partitions) in partitions_per_topic.iter().enumerate() {
        let mut topic = FetchableTopicResponse::default();
        topic.topic = TopicName(StrBytes::from_string(format!("topic-{t}")));
        for (p, size) in partitions.iter().enumerate() {
            let mut data = PartitionData::default();
            data.partition_index = p as i32;
            data.high_watermark = 1000 + p as i64;
            data.last_stable_offset = 1000 + p as i64;
            if version >= 5 {
                data.log_start_offset = 3;
            }
            data.records = size.map(|n| {
                Bytes::from(
                    (0..n)
                        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
                        .collect::<Vec<u8>>(),
                )
            });
            topic.partitions.push(data);
        }
        response.responses.push(topic);
    }
    response
}

#[test]
fn chunked_fetch_frames_equal_contiguous_ones_at_every_version() {
    let shapes: Vec<Vec<Vec<Option<usize>>>> = vec![
        vec![],
        vec![vec![None]],
        vec![vec![Some(0)]],
        vec![vec![Some(10)]],
        vec![vec![Some(511), Some(512), Some(513)]],
        vec![vec![Some(100_000)], vec![Some(4096), None, Some(70_000)]],
        vec![vec![Some(1 << 20); 3]],
    ];
    for version in 4..=12i16 {
        for (i, shape) in shapes.iter().enumerate() {
            let body = response(shape, i as u8, version);
            let chunked = encode_fetch_response(99, version, &body).unwrap();
            let contiguous = encode_response(
                99,
                ApiKey::Fetch,
                version,
                &ResponseKind::Fetch(body.clone()),
            )
            .unwrap();
            assert_eq!(chunked.len(), contiguous.len(), "v{version} shape {i}");
            assert_eq!(chunked.to_contiguous(), contiguous, "v{version} shape {i}");
        }
    }
}

#[test]
fn large_record_sets_are_not_copied() {
    let body = response(&[vec![Some(100_000), Some(100), Some(70_000)]], 1, 12);
    let frame = encode_fetch_response(1, 12, &body).unwrap();
    let stored: Vec<&Bytes> = body.responses[0]
        .partitions
        .iter()
        .filter_map(|p| p.records.as_ref())
        .collect();
    let shared = |b: &Bytes| frame.references(b);
    assert!(
        shared(stored[0]) && shared(stored[2]),
        "big record sets are chunks of their own"
    );
    assert!(
        !shared(stored[1]),
        "a small record set is copied into the frame"
    );
    // header+fields, records, fields (with the small set), records, trailing fields
    assert_eq!(frame.chunks().len(), 5);
}
