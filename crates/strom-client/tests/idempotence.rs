//! The idempotent producer against a real broker: sequences, and retries across a broker
//! restart that neither duplicate nor reorder records.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use strom_client::*;

async fn start_broker(dir: &Path, addr: SocketAddr) -> strom_broker::Broker {
    let config = strom_broker::BrokerConfig {
        data_dir: dir.to_path_buf(),
        kafka_addr: addr,
        http_addr: None,
        ..Default::default()
    };
    strom_broker::Broker::start(config).await.unwrap()
}

fn idempotent() -> ProducerConfig {
    ProducerConfig {
        enable_idempotence: true,
        linger_ms: 1,
        batch_size_bytes: 2048,
        retry_backoff_ms: 50,
        delivery_timeout_ms: 60_000,
        ..ProducerConfig::default()
    }
}

async fn read_all(client: &Client, topic: &str, expected: usize) -> Vec<ConsumerRecord> {
    let mut consumer = Consumer::new(client.clone(), ConsumerConfig::default());
    consumer.assign_topic(topic).await.unwrap();
    consumer.seek_all(OffsetSpec::Earliest);
    let mut records = Vec::new();
    for _ in 0..100 {
        records.extend(consumer.poll(Duration::from_millis(200)).await.unwrap());
        if records.len() >= expected {
            // One more poll: anything past `expected` is a duplicate.
            records.extend(consumer.poll(Duration::from_millis(200)).await.unwrap());
            break;
        }
    }
    records
}

/// Per partition, the values in offset order must be 0, 1, 2, ... exactly once.
fn assert_exactly_once_in_order(records: &[ConsumerRecord], partitions: i32, per_partition: usize) {
    let mut by_partition: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for r in records {
        let value: usize = std::str::from_utf8(r.value.as_deref().unwrap())
            .unwrap()
            .split(':')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        by_partition.entry(r.partition).or_default().push(value);
    }
    for p in 0..partitions {
        let values = by_partition.remove(&p).unwrap_or_default();
        assert_eq!(
            values,
            (0..per_partition).collect::<Vec<_>>(),
            "partition {p}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotent_records_arrive_once_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), "127.0.0.1:0".parse().unwrap()).await;
    let client = Client::connect(ClientConfig::new(&broker.kafka_addr().to_string()))
        .await
        .unwrap();
    Admin::new(client.clone())
        .create_topics(&[NewTopic::new("idem", 3)])
        .await
        .unwrap();
    // acks=1 is raised to all: idempotence needs it.
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            acks: Acks::Leader,
            ..idempotent()
        },
    );
    assert_eq!(producer.config().acks, Acks::All);
    let mut deliveries = Vec::new();
    for i in 0..3000usize {
        let p = (i % 3) as i32;
        deliveries.push(
            producer
                .send(ProducerRecord::new("idem", format!("{p}:{}", i / 3)).partition(p))
                .await
                .unwrap(),
        );
    }
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    for d in deliveries {
        let m = d.await.unwrap();
        let previous = last.insert(m.partition, m.offset);
        assert!(
            previous.is_none_or(|o| o < m.offset),
            "offsets grow per partition"
        );
    }
    producer.close().await;
    assert_exactly_once_in_order(&read_all(&client, "idem", 3000).await, 3, 1000);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retries_across_a_broker_restart_neither_duplicate_nor_reorder() {
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let broker = start_broker(dir.path(), addr).await;
    let client = Client::connect(ClientConfig::new(&addr.to_string()))
        .await
        .unwrap();
    Admin::new(client.clone())
        .create_topics(&[NewTopic::new("restart", 2)])
        .await
        .unwrap();
    let producer = Producer::new(client.clone(), idempotent());
    let sender = {
        let producer = producer.clone();
        tokio::spawn(async move {
            let mut deliveries = Vec::new();
            for i in 0..4000usize {
                let p = (i % 2) as i32;
                deliveries.push(
                    producer
                        .send(ProducerRecord::new("restart", format!("{p}:{}", i / 2)).partition(p))
                        .await
                        .unwrap(),
                );
                if i % 200 == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            for d in deliveries {
                d.await.unwrap();
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    broker.shutdown().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let broker = start_broker(dir.path(), addr).await;
    sender.await.unwrap();
    producer.close().await;
    assert_exactly_once_in_order(&read_all(&client, "restart", 4000).await, 2, 2000);
    broker.shutdown().await;
}
