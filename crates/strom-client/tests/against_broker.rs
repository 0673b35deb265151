//! The client against a real broker: an in-process `strom_broker::Broker` on a free port
//! (a dev-dependency only; the client itself never imports the broker).

use std::collections::BTreeMap;
use std::time::Duration;

use strom_client::*;

struct TestBroker {
    broker: Option<strom_broker::Broker>,
    _dir: tempfile::TempDir,
}

impl TestBroker {
    async fn start() -> TestBroker {
        let dir = tempfile::tempdir().unwrap();
        let config = strom_broker::BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            kafka_addr: "127.0.0.1:0".parse().unwrap(),
            http_addr: None,
            ..Default::default()
        };
        let broker = strom_broker::Broker::start(config).await.unwrap();
        TestBroker {
            broker: Some(broker),
            _dir: dir,
        }
    }

    fn bootstrap(&self) -> String {
        self.broker.as_ref().unwrap().kafka_addr().to_string()
    }

    async fn client(&self) -> Client {
        Client::connect(ClientConfig::new(&self.bootstrap()))
            .await
            .unwrap()
    }

    async fn stop(mut self) {
        self.broker.take().unwrap().shutdown().await;
    }
}

async fn consume_all(client: &Client, topic: &str, expected: usize) -> Vec<ConsumerRecord> {
    let mut consumer = Consumer::new(client.clone(), ConsumerConfig::default());
    consumer.assign_topic(topic).await.unwrap();
    consumer.seek_all(OffsetSpec::Earliest);
    let mut records = Vec::new();
    for _ in 0..50 {
        records.extend(consumer.poll(Duration::from_millis(200)).await.unwrap());
        if records.len() >= expected {
            break;
        }
    }
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_broker_says_what_to_do() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let error = Client::connect(ClientConfig::new(&format!("127.0.0.1:{port}")))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(&format!(
            "cannot reach 127.0.0.1:{port}: is `strom server` running?"
        )),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_topic_lifecycle() {
    let broker = TestBroker::start().await;
    let admin = Admin::new(broker.client().await);
    let mut topic = NewTopic::new("lifecycle", 3);
    topic
        .configs
        .insert("retention.ms".into(), "3600000".into());
    admin.create_topics(&[topic.clone()]).await.unwrap();
    let again = admin.create_topics(&[topic]).await.unwrap_err();
    assert_eq!(
        again.kafka_code(),
        Some(ResponseError::TopicAlreadyExists),
        "{again}"
    );

    let names: Vec<String> = admin
        .list_topics()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert!(names.contains(&"lifecycle".to_string()), "{names:?}");

    let description = admin.describe_topic("lifecycle").await.unwrap();
    assert_eq!(description.partitions.len(), 3);
    assert!(description
        .partitions
        .iter()
        .all(|p| p.leader == 0 && p.high_watermark == 0 && p.log_start_offset == 0));
    let retention = description
        .configs
        .iter()
        .find(|c| c.name == "retention.ms")
        .unwrap();
    assert_eq!(retention.value.as_deref(), Some("3600000"));
    assert_eq!(retention.source, ConfigSource::Topic);

    admin
        .alter_topic_config(
            "lifecycle",
            &[
                ConfigChange::Set("segment.bytes".into(), "1048576".into()),
                ConfigChange::Delete("retention.ms".into()),
            ],
        )
        .await
        .unwrap();
    let configs = admin.describe_topic_config("lifecycle").await.unwrap();
    let get = |name: &str| configs.iter().find(|c| c.name == name).cloned().unwrap();
    assert_eq!(get("segment.bytes").value.as_deref(), Some("1048576"));
    assert_eq!(get("segment.bytes").source, ConfigSource::Topic);
    assert_ne!(get("retention.ms").source, ConfigSource::Topic);

    admin.create_partitions("lifecycle", 5).await.unwrap();
    assert_eq!(
        admin
            .describe_topic("lifecycle")
            .await
            .unwrap()
            .partitions
            .len(),
        5
    );
    let shrink = admin.create_partitions("lifecycle", 2).await.unwrap_err();
    assert!(shrink.kafka_code().is_some(), "{shrink}");

    let cluster = admin.describe_cluster().await.unwrap();
    assert_eq!(cluster.brokers.len(), 1);
    assert_eq!(cluster.controller_id, 0);
    assert!(cluster.cluster_id.is_some());

    admin
        .delete_topics(&["lifecycle".to_string()])
        .await
        .unwrap();
    let gone = admin.describe_topic("lifecycle").await.unwrap_err();
    assert!(matches!(gone, Error::UnknownTopic(_)), "{gone}");
    let unknown = admin
        .delete_topics(&["never-was".to_string()])
        .await
        .unwrap_err();
    assert_eq!(
        unknown.kafka_code(),
        Some(ResponseError::UnknownTopicOrPartition)
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_and_consume_every_codec() {
    let broker = TestBroker::start().await;
    let client = broker.client().await;
    let admin = Admin::new(client.clone());
    for (i, codec) in ["none", "gzip", "snappy", "lz4", "zstd"].iter().enumerate() {
        let topic = format!("codec-{codec}");
        admin
            .create_topics(&[NewTopic::new(&topic, 2)])
            .await
            .unwrap();
        let config = ProducerConfig {
            compression: parse_compression(codec).unwrap(),
            acks: if i % 2 == 0 { Acks::All } else { Acks::Leader },
            linger_ms: 2,
            batch_size_bytes: 4096,
            ..ProducerConfig::default()
        };
        let producer = Producer::new(client.clone(), config);
        let mut deliveries = Vec::new();
        for n in 0..500 {
            let record = ProducerRecord::new(&topic, format!("value-{n}-{}", "x".repeat(n % 50)))
                .key(format!("key-{}", n % 7))
                .header("n", n.to_string());
            deliveries.push(producer.send(record).await.unwrap());
        }
        producer.flush().await;
        let mut landed = Vec::new();
        for delivery in deliveries {
            landed.push(delivery.await.unwrap());
        }
        // Keys land where the Java client puts them, and offsets are dense per partition.
        for (n, meta) in landed.iter().enumerate() {
            assert_eq!(
                meta.partition,
                partition_for_key(format!("key-{}", n % 7).as_bytes(), 2)
            );
        }
        let mut per_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
        for meta in &landed {
            per_partition
                .entry(meta.partition)
                .or_default()
                .push(meta.offset);
        }
        for offsets in per_partition.values() {
            assert_eq!(*offsets, (0..offsets.len() as i64).collect::<Vec<_>>());
        }
        let records = consume_all(&client, &topic, 500).await;
        assert_eq!(records.len(), 500, "{codec}");
        let mut by_value: BTreeMap<String, &ConsumerRecord> = BTreeMap::new();
        for r in &records {
            by_value.insert(
                String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap(),
                r,
            );
        }
        for (n, meta) in landed.iter().enumerate() {
            let r = by_value[&format!("value-{n}-{}", "x".repeat(n % 50))];
            assert_eq!((r.partition, r.offset), (meta.partition, meta.offset));
            assert_eq!(r.key.as_deref(), Some(format!("key-{}", n % 7).as_bytes()));
            assert_eq!(
                r.headers,
                vec![("n".to_string(), Some(n.to_string().into()))]
            );
        }
        producer.close().await;
    }
    broker.stop().await;
}

/// `poll_batches` yields the records `poll` returns, in the same order, with the same
/// positions after each poll: plain and compressed batches, keys, null values, headers (with a
/// duplicate key and a null value), two partitions, and a start inside a batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poll_batches_yields_what_poll_returns() {
    let broker = TestBroker::start().await;
    let client = broker.client().await;
    let admin = Admin::new(client.clone());
    admin
        .create_topics(&[NewTopic::new("views", 2)])
        .await
        .unwrap();
    for compression in [Compression::None, Compression::Lz4] {
        let producer = Producer::new(
            client.clone(),
            ProducerConfig {
                compression,
                linger_ms: 2,
                batch_size_bytes: 2048,
                ..ProducerConfig::default()
            },
        );
        for n in 0..600 {
            let mut record =
                ProducerRecord::new("views", format!("value-{n}")).key(format!("k{}", n % 5));
            if n % 3 == 0 {
                record.value = None;
            }
            if n % 4 == 0 {
                record = record.header("h", n.to_string()).header("h", "again");
                record.headers.push(("null".to_string(), None));
            }
            producer.send(record).await.unwrap();
        }
        producer.close().await;
    }
    let tp0 = TopicPartition::new("views", 0);
    let start = async |consumer: &mut Consumer| {
        consumer.assign_topic("views").await.unwrap();
        consumer.seek_all(OffsetSpec::Earliest);
        // Start partition 0 inside a batch.
        consumer.seek(&tp0, OffsetSpec::Offset(3)).unwrap();
    };
    let config = ConsumerConfig {
        max_partition_fetch_bytes: 4096,
        ..ConsumerConfig::default()
    };
    let mut by_records = Consumer::new(client.clone(), config.clone());
    let mut by_batches = Consumer::new(client.clone(), config);
    start(&mut by_records).await;
    start(&mut by_batches).await;
    let mut records = Vec::new();
    let mut viewed = Vec::new();
    for _ in 0..200 {
        if records.len() >= 1197 && viewed.len() >= 1197 {
            break;
        }
        records.extend(by_records.poll(Duration::from_millis(200)).await.unwrap());
        for batch in by_batches
            .poll_batches(Duration::from_millis(200))
            .await
            .unwrap()
        {
            assert!(!batch.is_empty());
            let before = viewed.len();
            for view in batch.records() {
                viewed.push(ConsumerRecord {
                    topic: batch.topic().clone(),
                    partition: batch.partition(),
                    offset: view.offset,
                    timestamp_ms: view.timestamp_ms,
                    log_append_time: view.log_append_time,
                    key: view.key.map(bytes::Bytes::copy_from_slice),
                    value: view.value.map(bytes::Bytes::copy_from_slice),
                    headers: view
                        .headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.map(bytes::Bytes::copy_from_slice)))
                        .collect(),
                });
            }
            assert_eq!(viewed.len() - before, batch.len());
        }
    }
    assert_eq!(records.len(), 1197);
    // Per partition in the same order (the polls may split the partitions differently).
    let by_partition = |records: &[ConsumerRecord]| {
        let mut split: BTreeMap<i32, Vec<ConsumerRecord>> = BTreeMap::new();
        for r in records {
            split.entry(r.partition).or_default().push(r.clone());
        }
        split
    };
    assert_eq!(by_partition(&viewed), by_partition(&records));
    assert!(records.iter().any(|r| r.value.is_none()));
    assert!(records.iter().any(|r| r.headers.len() == 3));
    for tp in by_records.assignment() {
        assert_eq!(by_records.position(&tp), by_batches.position(&tp));
    }
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_keys_spread_and_acks_zero() {
    let broker = TestBroker::start().await;
    let client = broker.client().await;
    Admin::new(client.clone())
        .create_topics(&[NewTopic::new("spread", 4)])
        .await
        .unwrap();
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            null_key_partitioning: NullKeyPartitioning::RoundRobin,
            ..ProducerConfig::default()
        },
    );
    let mut partitions = Vec::new();
    for n in 0..8 {
        let d = producer
            .send(ProducerRecord::new("spread", format!("{n}")))
            .await
            .unwrap();
        partitions.push(d);
    }
    producer.flush().await;
    let mut seen = Vec::new();
    for d in partitions {
        seen.push(d.await.unwrap().partition);
    }
    for p in 0..4 {
        assert_eq!(seen.iter().filter(|&&x| x == p).count(), 2, "{seen:?}");
    }
    let fire_and_forget = Producer::new(
        client.clone(),
        ProducerConfig {
            acks: Acks::None,
            ..ProducerConfig::default()
        },
    );
    let d = fire_and_forget
        .send(ProducerRecord::new("spread", "x").partition(3))
        .await
        .unwrap();
    fire_and_forget.flush().await;
    assert_eq!(d.await.unwrap().offset, -1);
    let bad = fire_and_forget
        .send(ProducerRecord::new("spread", "x").partition(9))
        .await
        .unwrap_err();
    assert!(matches!(bad, Error::UnknownPartition { .. }), "{bad}");
    let records = consume_all(&client, "spread", 9).await;
    assert_eq!(records.len(), 9);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_list_offsets_delete_records_and_out_of_range() {
    let broker = TestBroker::start().await;
    let client = broker.client().await;
    let admin = Admin::new(client.clone());
    admin
        .create_topics(&[NewTopic::new("seek", 1)])
        .await
        .unwrap();
    let producer = Producer::new(client.clone(), ProducerConfig::default());
    let base_ms = now_ms() - 100_000;
    for n in 0..10i64 {
        producer
            .send(ProducerRecord::new("seek", format!("{n}")).timestamp_ms(base_ms + n * 1000))
            .await
            .unwrap();
    }
    producer.flush().await;
    let tp = TopicPartition::new("seek", 0);
    let offsets = admin
        .list_offsets(&[(tp.clone(), OffsetSpec::Earliest)])
        .await
        .unwrap();
    assert_eq!(offsets[&tp].offset, 0);
    let latest = admin
        .list_offsets(&[(tp.clone(), OffsetSpec::Latest)])
        .await
        .unwrap();
    assert_eq!(latest[&tp].offset, 10);
    let by_time = admin
        .list_offsets(&[(tp.clone(), OffsetSpec::Timestamp(base_ms + 4500))])
        .await
        .unwrap();
    assert_eq!(by_time[&tp].offset, 5);

    let mut consumer = Consumer::new(client.clone(), ConsumerConfig::default());
    consumer.assign([tp.clone()]);
    consumer
        .seek(&tp, OffsetSpec::Timestamp(base_ms + 7000))
        .unwrap();
    let records = consumer.poll(Duration::from_millis(500)).await.unwrap();
    assert_eq!(
        records.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![7, 8, 9]
    );
    assert_eq!(records[0].timestamp_ms, base_ms + 7000);
    assert!(consumer.at_end(&tp));

    consumer.seek(&tp, OffsetSpec::Offset(3)).unwrap();
    let records = consumer.poll(Duration::from_millis(500)).await.unwrap();
    assert_eq!(records.first().map(|r| r.offset), Some(3));

    let low = admin.delete_records(&[(tp.clone(), 4)]).await.unwrap();
    assert_eq!(low[&tp], 4);
    // Offset 1 is now out of range: Earliest policy moves to the new log start.
    let mut consumer = Consumer::new(
        client.clone(),
        ConsumerConfig {
            auto_offset_reset: AutoOffsetReset::Earliest,
            ..ConsumerConfig::default()
        },
    );
    consumer.assign([tp.clone()]);
    consumer.seek(&tp, OffsetSpec::Offset(1)).unwrap();
    let mut records = Vec::new();
    for _ in 0..5 {
        records.extend(consumer.poll(Duration::from_millis(200)).await.unwrap());
    }
    assert_eq!(records.first().map(|r| r.offset), Some(4));
    // With no reset policy the error comes out.
    let mut strict = Consumer::new(
        client.clone(),
        ConsumerConfig {
            auto_offset_reset: AutoOffsetReset::None,
            ..ConsumerConfig::default()
        },
    );
    strict.assign([tp.clone()]);
    strict.seek(&tp, OffsetSpec::Offset(1)).unwrap();
    let error = strict.poll(Duration::from_millis(200)).await.unwrap_err();
    assert_eq!(
        error.kafka_code(),
        Some(ResponseError::OffsetOutOfRange),
        "{error}"
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_pipelines_and_times_out() {
    let broker = TestBroker::start().await;
    let client = broker.client().await;
    let connection = client.any_connection().await.unwrap();
    assert_eq!(
        connection.version(kafka_protocol::messages::ApiKey::Fetch),
        Some(12)
    );
    // Many requests in flight on one connection, answered in order and matched by id.
    let request = kafka_protocol::messages::MetadataRequest::default();
    let requests = (0..50).map(|_| client.send_any(&request));
    for answer in futures::future::join_all(requests).await {
        answer.unwrap();
    }
    broker.stop().await;
    // After the broker is gone, requests fail with an error, not a hang.
    let error = client
        .send_any(&kafka_protocol::messages::MetadataRequest::default())
        .await
        .unwrap_err();
    assert!(error.is_retriable(), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_server_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let hold = tokio::spawn(async move {
        let (_socket, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(10)).await;
    });
    let error = strom_client::connection::Connection::connect(&addr, "test", 1000, 300)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Timeout { .. }), "{error}");
    hold.abort();
}
