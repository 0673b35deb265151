//! Request frames encoded as chunks are byte for byte the contiguous encoding, and a produce
//! request's record batches are the caller's buffers, not copies.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ProduceRequest, RequestHeader, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};
use strom_protocol::chunked::encode_request_frame;

fn produce(sizes: &[usize]) -> (ProduceRequest, Vec<Bytes>) {
    let mut request = ProduceRequest::default();
    request.acks = -1;
    request.timeout_ms = 30_000;
    let mut topic = TopicProduceData::default();
    topic.name = TopicName(StrBytes::from_static_str("orders"));
    let mut batches = Vec::new();
    for (i, &size) in sizes.iter().enumerate() {
        let batch = Bytes::from((0..size).map(|b| (b * 7 + i) as u8).collect::<Vec<u8>>());
        let mut partition = PartitionProduceData::default();
        partition.index = i as i32;
        partition.records = Some(batch.clone());
        topic.partition_data.push(partition);
        batches.push(batch);
    }
    request.topic_data.push(topic);
    (request, batches)
}

fn contiguous(
    header: &RequestHeader,
    header_version: i16,
    body: &ProduceRequest,
    version: i16,
) -> Bytes {
    let size = header.compute_size(header_version).unwrap() + body.compute_size(version).unwrap();
    let mut out = BytesMut::new();
    out.put_i32(size as i32);
    header.encode(&mut out, header_version).unwrap();
    body.encode(&mut out, version).unwrap();
    out.freeze()
}

#[test]
fn chunked_produce_frames_equal_contiguous_ones_and_share_the_batches() {
    for version in 3..=11i16 {
        let header_version = if version >= 9 { 2 } else { 1 };
        let mut header = RequestHeader::default();
        header.request_api_key = 0;
        header.request_api_version = version;
        header.correlation_id = 42;
        header.client_id = Some(StrBytes::from_static_str("test"));
        let (body, batches) = produce(&[100_000, 100, 70_000, 512]);
        let frame =
            encode_request_frame(&header, header_version, &body, version, &batches).unwrap();
        let expected = contiguous(&header, header_version, &body, version);
        assert_eq!(frame.len(), expected.len(), "v{version}");
        assert_eq!(frame.to_contiguous(), expected, "v{version}");
        let shared = |b: &Bytes| frame.references(b);
        assert!(
            shared(&batches[0]) && shared(&batches[2]) && shared(&batches[3]),
            "v{version}"
        );
        assert!(!shared(&batches[1]), "a small batch is copied, v{version}");
    }
}

#[test]
fn skip_written_drops_whole_chunks_then_advances_a_partial_one() {
    use strom_protocol::chunked::skip_written;
    let mut chunks = vec![
        Bytes::from_static(b"abc"),
        Bytes::from_static(b"defg"),
        Bytes::from_static(b"hi"),
    ];
    assert_eq!(skip_written(&mut chunks, 0, 0), 0);
    assert_eq!(skip_written(&mut chunks, 0, 3), 1);
    assert_eq!(skip_written(&mut chunks, 1, 2), 1);
    assert_eq!(&chunks[1][..], b"fg");
    assert_eq!(skip_written(&mut chunks, 1, 3), 2);
    assert_eq!(&chunks[2][..], b"i");
    assert_eq!(skip_written(&mut chunks, 2, 1), 3);
    // More than is left stops at the end.
    assert_eq!(skip_written(&mut chunks, 3, 10), 3);
}
