//! Consumer groups against a real broker: members share partitions, a leaver hands its
//! partitions over, commits survive, and the admin's group operations.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use strom_client::*;
use tokio::sync::watch;

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
            group_initial_rebalance_delay_ms: 0,
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

fn group_config(group: &str, assignors: &[Assignor]) -> ConsumerConfig {
    ConsumerConfig {
        auto_offset_reset: AutoOffsetReset::Earliest,
        heartbeat_interval_ms: 100,
        session_timeout_ms: 6_000,
        rebalance_timeout_ms: 10_000,
        auto_commit_interval_ms: 200,
        assignors: assignors.to_vec(),
        ..ConsumerConfig::with_group(group)
    }
}

async fn produce(client: &Client, topic: &str, partitions: i32, per_partition: usize) {
    let producer = Producer::new(client.clone(), ProducerConfig::default());
    let mut deliveries = Vec::new();
    for p in 0..partitions {
        for i in 0..per_partition {
            deliveries.push(
                producer
                    .send(ProducerRecord::new(topic, format!("{p}-{i}")).partition(p))
                    .await
                    .unwrap(),
            );
        }
    }
    for d in deliveries {
        d.await.unwrap();
    }
}

/// A member polling in the background; records and assignments are shared with the test.
struct Member {
    records: Arc<Mutex<Vec<ConsumerRecord>>>,
    assignment: Arc<Mutex<Vec<TopicPartition>>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Consumer>,
}

fn spawn_member(client: &Client, config: ConsumerConfig, topic: &str) -> Member {
    let mut consumer = Consumer::new(client.clone(), config);
    consumer.subscribe(&[topic]).unwrap();
    let records = Arc::new(Mutex::new(Vec::new()));
    let assignment = Arc::new(Mutex::new(Vec::new()));
    let (stop, mut stopped) = watch::channel(false);
    let (r, a) = (records.clone(), assignment.clone());
    let task = tokio::spawn(async move {
        while !*stopped.borrow_and_update() {
            let polled = consumer.poll(Duration::from_millis(100)).await.unwrap();
            r.lock().extend(polled);
            *a.lock() = consumer.assignment();
        }
        consumer
    });
    Member {
        records,
        assignment,
        stop,
        task,
    }
}

impl Member {
    async fn close(self) -> Vec<ConsumerRecord> {
        self.stop.send(true).unwrap();
        let mut consumer = self.task.await.unwrap();
        consumer.close().await.unwrap();
        let records = self.records.lock().clone();
        records
    }
}

async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..300 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

fn disjoint_and_complete(a: &[TopicPartition], b: &[TopicPartition], partitions: i32) -> bool {
    let sa: BTreeSet<_> = a.iter().collect();
    let sb: BTreeSet<_> = b.iter().collect();
    !sa.is_empty()
        && !sb.is_empty()
        && sa.is_disjoint(&sb)
        && sa.len() + sb.len() == partitions as usize
}

async fn two_members_share_then_hand_over(assignors: &[Assignor]) {
    let broker = TestBroker::start().await;
    let client = broker.client().await;
    let group = format!("g-{}", assignors[0].name());
    Admin::new(client.clone())
        .create_topics(&[NewTopic::new("shared", 4)])
        .await
        .unwrap();
    produce(&client, "shared", 4, 25).await;

    let a = spawn_member(&client, group_config(&group, assignors), "shared");
    let b = spawn_member(
        &broker.client().await,
        group_config(&group, assignors),
        "shared",
    );
    let (aa, ba) = (a.assignment.clone(), b.assignment.clone());
    wait_until("both members have disjoint halves", || {
        disjoint_and_complete(&aa.lock(), &ba.lock(), 4)
    })
    .await;
    assert_eq!(aa.lock().len(), 2, "balanced");
    let (ar, br) = (a.records.clone(), b.records.clone());
    wait_until("all 100 records are read", || {
        ar.lock().len() + br.lock().len() >= 100
    })
    .await;

    // The group describes both members and their halves.
    let admin = Admin::new(client.clone());
    let description = admin.describe_group(&group).await.unwrap();
    assert_eq!(description.state, "Stable");
    assert_eq!(description.members.len(), 2);
    let expected_protocol = if assignors.len() == 1 {
        assignors[0].name()
    } else {
        "range"
    };
    assert_eq!(description.protocol, expected_protocol);

    // b leaves: a gets every partition at once (no session timeout wait) and nothing is read twice.
    let b_records = b.close().await;
    wait_until("the survivor owns all four partitions", || {
        aa.lock().len() == 4
    })
    .await;
    produce(&client, "shared", 4, 5).await;
    wait_until("the survivor reads the new records", || {
        ar.lock().len() + b_records.len() >= 120
    })
    .await;
    let a_records = a.close().await;
    let mut seen = BTreeMap::new();
    for r in a_records.iter().chain(&b_records) {
        *seen.entry((r.partition, r.offset)).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 120);
    assert!(
        seen.values().all(|n| *n == 1),
        "records read twice: {seen:?}"
    );

    // Commits survive: the group's offsets are at the end, a new member reads nothing old.
    let committed = admin.list_group_offsets(&group).await.unwrap();
    assert_eq!(committed.values().sum::<i64>(), 120, "{committed:?}");
    let c = spawn_member(&client, group_config(&group, assignors), "shared");
    let ca = c.assignment.clone();
    wait_until("the new member owns all partitions", || {
        ca.lock().len() == 4
    })
    .await;
    produce(&client, "shared", 1, 1).await;
    let cr = c.records.clone();
    wait_until("the new member reads the new record", || {
        !cr.lock().is_empty()
    })
    .await;
    let c_records = c.close().await;
    assert_eq!(c_records.len(), 1);
    assert_eq!(c_records[0].offset, 30);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn range_members_share_partitions_and_hand_them_over() {
    two_members_share_then_hand_over(&[Assignor::Range, Assignor::CooperativeSticky]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cooperative_sticky_members_share_partitions_and_hand_them_over() {
    two_members_share_then_hand_over(&[Assignor::CooperativeSticky]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn manual_commits_and_committed_and_reset_offsets() {
    let broker = TestBroker::start().await;
    let client = broker.client().await;
    let admin = Admin::new(client.clone());
    admin
        .create_topics(&[NewTopic::new("commits", 2)])
        .await
        .unwrap();
    produce(&client, "commits", 2, 10).await;
    let config = ConsumerConfig {
        enable_auto_commit: false,
        ..group_config("manual", &[Assignor::Range])
    };
    let mut consumer = Consumer::new(client.clone(), config.clone());
    consumer.subscribe(&["commits"]).unwrap();
    let mut read = 0;
    while read < 20 {
        read += consumer
            .poll(Duration::from_millis(200))
            .await
            .unwrap()
            .len();
    }
    let tp0 = TopicPartition::new("commits", 0);
    let tp1 = TopicPartition::new("commits", 1);
    assert_eq!(
        consumer
            .committed(std::slice::from_ref(&tp0))
            .await
            .unwrap()[&tp0],
        None
    );
    consumer
        .commit_offsets(&BTreeMap::from([(tp0.clone(), 4)]))
        .await
        .unwrap();
    consumer.commit().await.unwrap();
    let committed = consumer
        .committed(&[tp0.clone(), tp1.clone()])
        .await
        .unwrap();
    assert_eq!(committed[&tp0], Some(10));
    assert_eq!(committed[&tp1], Some(10));
    // Resetting while the member is in the group is refused with what to do.
    let refused = admin
        .reset_group_offsets("manual", "commits", &[], OffsetSpec::Earliest, true)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("stop its consumers first"),
        "{refused}"
    );
    consumer.close().await.unwrap();

    let groups = admin.list_groups().await.unwrap();
    assert!(
        groups
            .iter()
            .any(|g| g.group_id == "manual" && g.protocol_type == "consumer"),
        "{groups:?}"
    );
    let plan = admin
        .reset_group_offsets("manual", "commits", &[0], OffsetSpec::Offset(3), false)
        .await
        .unwrap();
    assert_eq!(
        plan,
        [OffsetReset {
            tp: tp0.clone(),
            current: Some(10),
            target: 3
        }]
    );
    assert_eq!(
        admin.list_group_offsets("manual").await.unwrap()[&tp0],
        10,
        "a dry run changes nothing"
    );
    admin
        .reset_group_offsets("manual", "commits", &[], OffsetSpec::Earliest, true)
        .await
        .unwrap();
    assert_eq!(admin.list_group_offsets("manual").await.unwrap()[&tp0], 0);
    // Out-of-range offsets are clamped to the log, as Kafka's tool does.
    let plan = admin
        .reset_group_offsets("manual", "commits", &[1], OffsetSpec::Offset(99), false)
        .await
        .unwrap();
    assert_eq!(plan[0].target, 10);

    // Resume from the committed offset (0 after the reset), with auto.offset.reset latest.
    let mut consumer = Consumer::new(
        client.clone(),
        ConsumerConfig {
            auto_offset_reset: AutoOffsetReset::Latest,
            ..config
        },
    );
    consumer.subscribe(&["commits"]).unwrap();
    let mut again = Vec::new();
    while again.len() < 20 {
        again.extend(consumer.poll(Duration::from_millis(200)).await.unwrap());
    }
    assert_eq!(
        again
            .iter()
            .filter(|r| r.partition == 0)
            .map(|r| r.offset)
            .min(),
        Some(0)
    );
    consumer.close().await.unwrap();

    let description = admin.describe_group("manual").await.unwrap();
    assert_eq!(description.state, "Empty");
    assert!(
        description
            .offsets
            .iter()
            .all(|o| o.end_offset == 10 && o.lag == Some(10)),
        "{description:?}"
    );
    admin.delete_groups(&["manual".to_string()]).await.unwrap();
    let gone = admin.describe_group("manual").await.unwrap_err();
    assert_eq!(
        gone.kafka_code(),
        Some(ResponseError::GroupIdNotFound),
        "{gone}"
    );
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_needs_a_group_and_commit_needs_a_group_id() {
    let broker = TestBroker::start().await;
    let client = broker.client().await;
    let mut consumer = Consumer::new(client.clone(), ConsumerConfig::default());
    let error = consumer.subscribe(&["t"]).unwrap_err();
    assert!(error.to_string().contains("group_id"), "{error}");
    let error = consumer
        .committed(&[TopicPartition::new("t", 0)])
        .await
        .unwrap_err();
    assert!(error.to_string().contains("group_id"), "{error}");
    let mut consumer = Consumer::new(client, ConsumerConfig::with_group("g"));
    assert!(consumer.subscribe::<&str>(&[]).is_err());
    broker.stop().await;
}
