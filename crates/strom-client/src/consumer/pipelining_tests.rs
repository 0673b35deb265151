//! The consumer's one-ahead fetching against an in-process broker: prefetched data never
//! reaches the application after a seek or an assignment change, and positions stay exact.

use std::time::Duration;

use crate::*;

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

    async fn client(&self) -> Client {
        let addr = self.broker.as_ref().unwrap().kafka_addr().to_string();
        Client::connect(ClientConfig::new(&addr)).await.unwrap()
    }

    async fn stop(mut self) {
        self.broker.take().unwrap().shutdown().await;
    }
}

const PER_PARTITION: i64 = 3_000;

/// Two partitions of `PER_PARTITION` records each, in batches of about 100.
async fn topic_with_records(client: &Client, topic: &str) {
    Admin::new(client.clone())
        .create_topics(&[NewTopic::new(topic, 2)])
        .await
        .unwrap();
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            batch_size_bytes: 3_000,
            ..ProducerConfig::default()
        },
    );
    let mut deliveries = Vec::new();
    for i in 0..PER_PARTITION {
        for p in 0..2 {
            let record = ProducerRecord::new(topic, format!("{p}-{i:05}")).partition(p);
            deliveries.push(producer.send(record).await.unwrap());
        }
    }
    for d in deliveries {
        d.await.unwrap();
    }
}

/// A consumer fetching a few batches per request, so that many polls (and prefetches) happen.
fn small_fetches(client: &Client) -> Consumer {
    Consumer::new(
        client.clone(),
        ConsumerConfig {
            max_partition_fetch_bytes: 8 * 1024,
            fetch_max_wait_ms: 100,
            ..ConsumerConfig::default()
        },
    )
}

fn value(record: &ConsumerRecord) -> String {
    String::from_utf8(record.value.as_ref().unwrap().to_vec()).unwrap()
}

/// Checks that `records` continue each partition's sequence in `next` exactly.
fn check_contiguous(records: &[ConsumerRecord], next: &mut [i64; 2]) {
    for record in records {
        let p = record.partition as usize;
        assert_eq!(record.offset, next[p], "partition {p}");
        assert_eq!(value(record), format!("{p}-{:05}", record.offset));
        next[p] += 1;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn positions_stay_exact_and_seeks_drop_prefetched_data() {
    let broker = TestBroker::start().await;
    let client = broker.client().await;
    topic_with_records(&client, "pipelined").await;
    let mut consumer = small_fetches(&client);
    consumer.assign_topic("pipelined").await.unwrap();
    consumer.seek_all(OffsetSpec::Earliest);
    let tp = |p| TopicPartition::new("pipelined", p);

    // Read a while: every poll continues exactly where the last one ended.
    let mut next = [0i64; 2];
    let mut prefetched = 0;
    while next[0] < 1_000 {
        let records = consumer.poll(Duration::from_secs(1)).await.unwrap();
        check_contiguous(&records, &mut next);
        prefetched += usize::from(!consumer.in_flight.is_empty());
        for p in 0..2 {
            assert_eq!(consumer.position(&tp(p)), Some(next[p as usize]));
        }
    }
    assert!(prefetched > 0, "fetches ran ahead");

    // A seek backwards: the fetch in flight is stale, and reading resumes at the seek.
    assert!(!consumer.in_flight.is_empty());
    consumer.seek(&tp(0), OffsetSpec::Offset(10)).unwrap();
    next[0] = 10;
    // A seek to the very position a prefetch asked from keeps its data (it is the same).
    let p1 = consumer.position(&tp(1)).unwrap();
    consumer.seek(&tp(1), OffsetSpec::Offset(p1)).unwrap();
    for _ in 0..5 {
        let records = consumer.poll(Duration::from_secs(1)).await.unwrap();
        check_contiguous(&records, &mut next);
    }
    assert!(next[0] > 10);

    // Unassigning a partition drops what was fetched for it.
    consumer.assign([tp(1)]);
    for _ in 0..5 {
        let records = consumer.poll(Duration::from_secs(1)).await.unwrap();
        assert!(records.iter().all(|r| r.partition == 1));
        check_contiguous(&records, &mut next);
    }
    // And everything is read exactly once to the end.
    consumer.assign([tp(0), tp(1)]);
    consumer.seek(&tp(0), OffsetSpec::Offset(next[0])).unwrap();
    while next != [PER_PARTITION; 2] {
        let records = consumer.poll(Duration::from_secs(1)).await.unwrap();
        check_contiguous(&records, &mut next);
    }
    // At the end, nothing runs ahead: the next poll long-polls with the assignment of then.
    assert!(consumer.at_end(&tp(0)) && consumer.at_end(&tp(1)));
    assert!(consumer.in_flight.is_empty());
    let records = consumer.poll(Duration::from_millis(50)).await.unwrap();
    assert!(records.is_empty());
    broker.stop().await;
}

// One thread: the in-process broker answers only while this test yields, so a poll that
// needs the network is surely still pending when it is dropped (with a second worker thread
// a fast machine answered every poll in time and no poll was cancelled).
#[tokio::test(flavor = "current_thread")]
async fn a_cancelled_poll_loses_nothing() {
    let broker = TestBroker::start().await;
    let client = broker.client().await;
    topic_with_records(&client, "cancelled").await;
    let mut consumer = small_fetches(&client);
    consumer.assign_topic("cancelled").await.unwrap();
    consumer.seek_all(OffsetSpec::Earliest);
    let mut next = [0i64; 2];
    let mut cancelled = 0;
    let mut steps = 0usize;
    while next != [PER_PARTITION; 2] {
        // Drop polls after a varying number of steps, as `tokio::select!` does.
        steps += 1;
        let mut poll = Box::pin(consumer.poll(Duration::from_secs(1)));
        let mut done = false;
        for _ in 0..1 + steps % 7 {
            if let std::task::Poll::Ready(records) = futures::poll!(&mut poll) {
                check_contiguous(&records.unwrap(), &mut next);
                done = true;
                break;
            }
            tokio::task::yield_now().await;
        }
        cancelled += usize::from(!done);
    }
    println!("{cancelled} of {steps} polls cancelled");
    assert!(cancelled >= 3, "{cancelled} polls cancelled");
    broker.stop().await;
}
