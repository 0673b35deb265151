//! The broker over real sockets with raw Kafka frames: version negotiation, the bad-input
//! cases (each followed by proof that the broker still serves), and a produce/fetch round trip
//! checked byte for byte.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    FetchRequest, FetchResponse, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use strom_broker::{Broker, BrokerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start() -> (Broker, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        kafka_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: None,
        ..BrokerConfig::default()
    };
    (Broker::start(config).await.unwrap(), dir)
}

fn frame<R: Request + Encodable>(request: &R, version: i16, correlation_id: i32) -> Bytes {
    let mut header = RequestHeader::default();
    header.request_api_key = R::KEY;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(StrBytes::from_static_str("wire-test"));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, R::header_version(version))
        .unwrap();
    request.encode(&mut body, version).unwrap();
    let mut out = BytesMut::new();
    out.put_i32(body.len() as i32);
    out.put(body);
    out.freeze()
}

async fn read_frame(stream: &mut TcpStream) -> Option<Bytes> {
    let mut size = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut size))
        .await
        .ok()?
        .ok()?;
    let mut body = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut body).await.ok()?;
    Some(Bytes::from(body))
}

async fn call<Req, Resp>(stream: &mut TcpStream, request: &Req, version: i16) -> Resp
where
    Req: Request + Encodable,
    Resp: Decodable + HeaderVersion,
{
    stream.write_all(&frame(request, version, 7)).await.unwrap();
    let mut body = read_frame(stream).await.expect("a response");
    let header = ResponseHeader::decode(&mut body, Req::Response::header_version(version)).unwrap();
    assert_eq!(header.correlation_id, 7);
    Resp::decode(&mut body, version).unwrap()
}

async fn connect(broker: &Broker) -> TcpStream {
    TcpStream::connect(broker.kafka_addr()).await.unwrap()
}

/// A fresh connection can still ask for metadata: the broker keeps serving.
async fn assert_still_serving(broker: &Broker) {
    let mut stream = connect(broker).await;
    let response: MetadataResponse = call(&mut stream, &MetadataRequest::default(), 12).await;
    assert_eq!(response.brokers.len(), 1);
}

/// After a bad frame the broker closes the connection (read sees EOF) rather than answering.
async fn assert_closed(stream: &mut TcpStream) {
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut byte))
        .await
        .expect("the broker must close the connection");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "expected a closed connection, got {read:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_versions_current_and_fallback() {
    let (broker, _dir) = start().await;
    let mut stream = connect(&broker).await;
    let response: ApiVersionsResponse = call(&mut stream, &ApiVersionsRequest::default(), 3).await;
    assert_eq!(response.error_code, 0);
    let produce = response
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::Produce as i16)
        .expect("produce advertised");
    assert!(produce.min_version <= 9 && produce.max_version >= 9);

    // v99: Kafka's fallback, a v0 body with UNSUPPORTED_VERSION and the ranges we speak.
    let mut raw = BytesMut::new();
    raw.put_i16(ApiKey::ApiVersions as i16);
    raw.put_i16(99);
    raw.put_i32(42);
    raw.put_i16(-1);
    let mut framed = BytesMut::new();
    framed.put_i32(raw.len() as i32);
    framed.put(raw);
    stream.write_all(&framed).await.unwrap();
    let mut body = read_frame(&mut stream).await.unwrap();
    assert_eq!(body.get_i32(), 42);
    let fallback = ApiVersionsResponse::decode(&mut body, 0).unwrap();
    assert_eq!(fallback.error_code, 35);
    assert!(fallback
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::Fetch as i16));
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_close_only_their_connection() {
    let (broker, _dir) = start().await;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("negative length", (-5i32).to_be_bytes().to_vec()),
        (
            "oversized length",
            (200 * 1024 * 1024i32).to_be_bytes().to_vec(),
        ),
        ("too short for a header", [0, 0, 0, 3, 0, 3, 0].to_vec()),
        ("unknown api key", {
            let mut v = 12i32.to_be_bytes().to_vec();
            v.extend_from_slice(&[0x7f, 0x00, 0, 1, 0, 0, 0, 1, 0xff, 0xff, 0, 0]);
            v
        }),
        ("metadata claiming 2^31-1 topics", {
            // Metadata v1: header (key 3, version 1, correlation 1, null client id), then a
            // topics array count of i32::MAX with nothing after it.
            let mut body = vec![0, 3, 0, 1, 0, 0, 0, 1, 0xff, 0xff];
            body.extend_from_slice(&i32::MAX.to_be_bytes());
            let mut v = (body.len() as i32).to_be_bytes().to_vec();
            v.extend_from_slice(&body);
            v
        }),
        ("garbage body", {
            let mut body = vec![0, 3, 0, 12, 0, 0, 0, 1];
            body.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 0x01]);
            let mut v = (body.len() as i32).to_be_bytes().to_vec();
            v.extend_from_slice(&body);
            v
        }),
    ];
    for (name, bytes) in cases {
        let mut stream = connect(&broker).await;
        stream.write_all(&bytes).await.unwrap();
        assert_closed(&mut stream).await;
        assert_still_serving(&broker).await;
        eprintln!("ok: {name}");
    }
    // A truncated frame followed by the client hanging up.
    let mut stream = connect(&broker).await;
    stream.write_all(&[0, 0, 1, 0, 0, 3]).await.unwrap();
    drop(stream);
    assert_still_serving(&broker).await;
    broker.shutdown().await;
}

/// The batches with base offset (bytes 0..8) and partition leader epoch (12..16) zeroed.
fn without_offsets_and_epochs(blob: &[u8]) -> Vec<u8> {
    let mut out = blob.to_vec();
    let mut at = 0;
    while at + 12 <= out.len() {
        let length = i32::from_be_bytes(out[at + 8..at + 12].try_into().unwrap()) as usize;
        out[at..at + 8].fill(0);
        out[at + 12..at + 16].fill(0);
        at += 12 + length;
    }
    out
}

fn records(count: usize) -> Vec<Record> {
    (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // offset - sequence is constant, so kafka-protocol encodes one batch (Produce v3+
            // takes exactly one per partition); with producer id -1 the sequence means nothing.
            sequence: i as i32,
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(format!("value-{i}"))),
            headers: Default::default(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_then_fetch_returns_the_stored_bytes() {
    let (broker, _dir) = start().await;
    let mut stream = connect(&broker).await;

    let mut create = CreateTopicsRequest::default();
    let mut topic = CreatableTopic::default();
    topic.name = TopicName(StrBytes::from_static_str("wire"));
    topic.num_partitions = 2;
    topic.replication_factor = 1;
    create.topics.push(topic.clone());
    let mut bad = topic.clone();
    bad.name = TopicName(StrBytes::from_static_str("bad name"));
    create.topics.push(bad);
    let mut zero = topic.clone();
    zero.name = TopicName(StrBytes::from_static_str("zero"));
    zero.num_partitions = 0;
    create.topics.push(zero);
    let created: CreateTopicsResponse = call(&mut stream, &create, 7).await;
    let codes: Vec<i16> = created.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(codes, vec![0, 17, 37]);
    let again: CreateTopicsResponse = call(&mut stream, &create, 7).await;
    assert_eq!(again.topics[0].error_code, 36, "duplicate topic");

    let mut batch = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut batch, &records(5), &options).unwrap();
    let sent = batch.freeze();
    let mut produce = ProduceRequest::default();
    produce.acks = -1;
    produce.timeout_ms = 5000;
    let mut data = TopicProduceData::default();
    data.name = TopicName(StrBytes::from_static_str("wire"));
    let mut partition = PartitionProduceData::default();
    partition.index = 1;
    partition.records = Some(sent.clone());
    data.partition_data.push(partition);
    produce.topic_data.push(data);
    for expected_base in [0, 5] {
        let produced: ProduceResponse = call(&mut stream, &produce, 9).await;
        let p = &produced.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (0, expected_base));
    }

    let mut fetch = FetchRequest::default();
    fetch.max_wait_ms = 100;
    fetch.max_bytes = 1 << 20;
    let mut fetch_topic = FetchTopic::default();
    fetch_topic.topic = TopicName(StrBytes::from_static_str("wire"));
    let mut fetch_partition = FetchPartition::default();
    fetch_partition.partition = 1;
    fetch_partition.fetch_offset = 0;
    fetch_partition.partition_max_bytes = 1 << 20;
    fetch_topic.partitions.push(fetch_partition);
    fetch.topics.push(fetch_topic);
    let fetched: FetchResponse = call(&mut stream, &fetch, 12).await;
    let data = &fetched.responses[0].partitions[0];
    assert_eq!(data.error_code, 0);
    assert_eq!(data.high_watermark, 10);
    let stored = data.records.clone().unwrap();
    assert_eq!(stored.len(), 2 * sent.len());
    // Apart from base offset and leader epoch, every stored byte is what was sent.
    assert_eq!(
        without_offsets_and_epochs(&stored[..sent.len()]),
        without_offsets_and_epochs(&sent)
    );
    assert_eq!(
        without_offsets_and_epochs(&stored[sent.len()..]),
        without_offsets_and_epochs(&sent)
    );
    let mut cursor = stored.clone();
    let sets = RecordBatchDecoder::decode_all(&mut cursor).unwrap();
    let offsets: Vec<i64> = sets
        .iter()
        .flat_map(|s| s.records.iter().map(|r| r.offset))
        .collect();
    assert_eq!(offsets, (0..10).collect::<Vec<_>>());
    let last = sets.last().and_then(|s| s.records.last()).unwrap();
    assert_eq!(last.value.as_deref(), Some(&b"value-4"[..]));

    // Fetching past the end is OFFSET_OUT_OF_RANGE.
    let mut far = fetch.clone();
    far.topics[0].partitions[0].fetch_offset = 11;
    let fetched: FetchResponse = call(&mut stream, &far, 12).await;
    assert_eq!(fetched.responses[0].partitions[0].error_code, 1);

    // Two batches for one partition: Produce v3+ takes exactly one (INVALID_RECORD).
    let mut two = BytesMut::from(&sent[..]);
    two.extend_from_slice(&sent);
    produce.topic_data[0].partition_data[0].records = Some(two.freeze());
    let produced: ProduceResponse = call(&mut stream, &produce, 9).await;
    assert_eq!(produced.responses[0].partition_responses[0].error_code, 87);

    // A batch with one flipped bit is CORRUPT_MESSAGE and appends nothing.
    let mut corrupt = BytesMut::from(&sent[..]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 1;
    produce.topic_data[0].partition_data[0].records = Some(corrupt.freeze());
    let produced: ProduceResponse = call(&mut stream, &produce, 9).await;
    assert_eq!(produced.responses[0].partition_responses[0].error_code, 2);
    broker.shutdown().await;
}

/// `connections_max_idle_ms`: a connection that sends nothing is closed; one that keeps
/// sending requests stays open well past the idle time; a half-sent frame does not count as
/// activity forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_busy_ones_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let config = BrokerConfig {
        data_dir: dir.path().to_path_buf(),
        kafka_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: None,
        connections_max_idle_ms: 300,
        ..BrokerConfig::default()
    };
    let broker = Broker::start(config).await.unwrap();

    let mut silent = connect(&broker).await;
    let mut partial = connect(&broker).await;
    partial.write_all(&[0, 0, 0, 50, 0, 18]).await.unwrap(); // 2 of 50 announced bytes
    let mut busy = connect(&broker).await;
    for _ in 0..10 {
        let response: ApiVersionsResponse =
            call(&mut busy, &ApiVersionsRequest::default(), 3).await;
        assert_eq!(response.error_code, 0);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A second of requests 100 ms apart: the busy connection is still open.
    let response: ApiVersionsResponse = call(&mut busy, &ApiVersionsRequest::default(), 3).await;
    assert_eq!(response.error_code, 0);
    assert_closed(&mut silent).await;
    assert_closed(&mut partial).await;
    assert_still_serving(&broker).await;
}
