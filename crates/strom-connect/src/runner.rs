//! Running pipelines: a Kafka source into a file or Kafka sink, or an ingest source (taildir,
//! HTTP, stdin) into a topic. Progress goes to the logs every [`PROGRESS_INTERVAL`] and to a
//! shared [`Status`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strom_client::{
    AutoOffsetReset, Client, ClientConfig, Consumer, ConsumerConfig, DeliveryFuture, OffsetSpec,
    Producer, ProducerConfig, TopicPartition,
};
use tokio::sync::watch;

use crate::config::{PipelineConfig, SinkConfig, SourceConfig, Start};
use crate::error::{Error, Result};
use crate::group;
use crate::record::Record;
use crate::sink::encode::parse_compression;
use crate::sink::file::{FileSink, Format};
use crate::sink::store::Store;
use crate::source;
use crate::status::Status;
use crate::transform::Chain;

/// How often progress is logged.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);
/// Commits happen at most this often (and whenever a file was finished).
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);
/// How long one poll of a Kafka source waits for records.
const POLL_TIMEOUT: Duration = Duration::from_millis(500);

/// A signal to stop: flip the sender to `true`.
pub type Shutdown = watch::Receiver<bool>;

/// Runs `config` against `brokers` until `shutdown` or, for stdin, end of input. Open files
/// are finished and offsets committed before it returns.
pub async fn run(
    config: PipelineConfig,
    brokers: &str,
    status: Arc<Status>,
    shutdown: Shutdown,
) -> Result<()> {
    config.validate()?;
    let client_config = ClientConfig {
        client_id: format!("strom-connect-{}", config.display_name()),
        ..ClientConfig::new(brokers)
    };
    let client = Client::connect(client_config).await?;
    let chain = Chain::new(&config.transform)?;
    let result = match (&config.source, &config.sink) {
        (
            SourceConfig::Kafka {
                topics,
                group,
                start,
            },
            SinkConfig::Parquet(file) | SinkConfig::Jsonl(file),
        ) => {
            let format = match &config.sink {
                SinkConfig::Parquet(_) => Format::Parquet(parse_compression(
                    file.compression.as_deref().unwrap_or("snappy"),
                )?),
                _ => Format::Jsonl,
            };
            let store = Store::open(&file.root, &file.s3.clone().unwrap_or_default())?;
            let sink = FileSink::new(
                store,
                format,
                file.mode,
                file.roll()?,
                file.declared_schema()?,
            );
            let source = KafkaSource {
                client: client.clone(),
                topics: topics.clone(),
                group: group.clone(),
                start: *start,
            };
            kafka_to_files(source, chain, sink, &status, shutdown).await
        }
        (
            SourceConfig::Kafka {
                topics,
                group,
                start,
            },
            SinkConfig::Kafka {
                topic,
                acks,
                compression,
            },
        ) => {
            let producer = producer(&client, acks.as_deref(), compression.as_deref())?;
            let source = KafkaSource {
                client: client.clone(),
                topics: topics.clone(),
                group: group.clone(),
                start: *start,
            };
            kafka_to_kafka(source, chain, producer, topic, &status, shutdown).await
        }
        (
            ingest,
            SinkConfig::Kafka {
                topic,
                acks,
                compression,
            },
        ) => {
            let producer = producer(&client, acks.as_deref(), compression.as_deref())?;
            let output = Output {
                producer,
                chain,
                topic: topic.clone(),
                status: status.clone(),
            };
            status.set_state("running");
            let result = match ingest {
                SourceConfig::Taildir {
                    files,
                    positions,
                    poll_ms,
                } => {
                    source::taildir::run(
                        files,
                        positions,
                        Duration::from_millis(poll_ms.unwrap_or(200)),
                        &output,
                        shutdown,
                    )
                    .await
                }
                SourceConfig::Http { addr, key_field } => {
                    source::http::run(addr, key_field.clone(), output.clone(), shutdown).await
                }
                SourceConfig::Stdin { key_separator } => {
                    source::stdin::run(key_separator.as_deref(), &output, shutdown).await
                }
                SourceConfig::Kafka { .. } => unreachable!("matched above"),
            };
            output.producer.close().await;
            result
        }
        _ => Err(Error::Config("file sinks take a kafka source".to_string())),
    };
    match &result {
        Ok(()) => status.set_state("stopped"),
        Err(error) => status.fail(&error.to_string()),
    }
    status.log_progress();
    result
}

fn producer(client: &Client, acks: Option<&str>, compression: Option<&str>) -> Result<Producer> {
    let mut config = ProducerConfig::default();
    if let Some(acks) = acks {
        config.acks = acks.parse().map_err(Error::Config)?;
    }
    if let Some(compression) = compression {
        config.compression = strom_client::parse_compression(compression).map_err(Error::Config)?;
    }
    Ok(Producer::new(client.clone(), config))
}

/// Where ingest sources send records: the transform chain, then the producer.
#[derive(Clone)]
pub struct Output {
    producer: Producer,
    chain: Chain,
    topic: String,
    status: Arc<Status>,
}

impl Output {
    /// Transforms and sends a batch of values (with optional keys); returns once every record
    /// is acknowledged, with how many were sent (the rest were filtered).
    /// `topic` overrides the sink's topic.
    pub async fn send_all(
        &self,
        topic: Option<String>,
        batch: Vec<(Option<bytes::Bytes>, bytes::Bytes)>,
    ) -> Result<usize> {
        let topic = topic.unwrap_or_else(|| self.topic.clone());
        let mut deliveries: Vec<DeliveryFuture> = Vec::with_capacity(batch.len());
        let mut bytes = 0;
        Status::add(&self.status.records_in, batch.len() as u64);
        for (key, value) in batch {
            let mut record = Record::new(topic.clone(), value);
            record.key = key;
            let Some(record) = self.chain.apply(record) else {
                Status::add(&self.status.records_filtered, 1);
                continue;
            };
            bytes += record.size_bytes();
            deliveries.push(self.producer.send(record.into_producer_record()).await?);
        }
        let sent = deliveries.len();
        for delivery in deliveries {
            delivery.await?;
        }
        Status::add(&self.status.records_out, sent as u64);
        Status::add(&self.status.bytes_out, bytes as u64);
        Ok(sent)
    }

    /// The pipeline's status.
    pub fn status(&self) -> &Status {
        &self.status
    }
}

struct KafkaSource {
    client: Client,
    topics: Vec<String>,
    group: String,
    start: Start,
}

impl KafkaSource {
    /// A consumer of every partition of the topics, positioned at `resume` where given, else
    /// at the group's committed offsets, else at `start`.
    async fn consumer(&self, resume: &BTreeMap<TopicPartition, i64>) -> Result<Consumer> {
        let reset = match self.start {
            Start::Earliest => AutoOffsetReset::Earliest,
            Start::Latest => AutoOffsetReset::Latest,
        };
        let mut consumer = Consumer::new(
            self.client.clone(),
            ConsumerConfig {
                auto_offset_reset: reset,
                ..ConsumerConfig::default()
            },
        );
        for topic in &self.topics {
            consumer.assign_topic(topic).await?;
        }
        let assignment = consumer.assignment();
        let committed = group::fetch_offsets(&self.client, &self.group, &assignment).await?;
        for tp in &assignment {
            let from = committed.get(tp).copied().max(resume.get(tp).copied());
            if let Some(offset) = from {
                consumer.seek(tp, OffsetSpec::Offset(offset))?;
            }
            tracing::info!(%tp, committed = ?committed.get(tp), files_end = ?resume.get(tp), start = ?from, "partition start");
        }
        Ok(consumer)
    }

    async fn commit(&self, offsets: &BTreeMap<TopicPartition, i64>) -> Result<()> {
        group::commit_offsets(&self.client, &self.group, None, offsets)
            .await
            .map_err(Error::from)
    }
}

fn lag(consumer: &Consumer) -> i64 {
    consumer
        .assignment()
        .iter()
        .map(|tp| match consumer.position(tp) {
            Some(position) if consumer.high_watermark(tp) >= 0 => {
                (consumer.high_watermark(tp) - position).max(0)
            }
            _ => 0,
        })
        .sum()
}

/// Commits what changed since the last commit; returns whether it committed.
async fn commit_changes(
    source: &KafkaSource,
    durable: &BTreeMap<TopicPartition, i64>,
    committed: &mut BTreeMap<TopicPartition, i64>,
) -> Result<()> {
    let changed: BTreeMap<TopicPartition, i64> = durable
        .iter()
        .filter(|(tp, o)| committed.get(*tp) != Some(*o))
        .map(|(tp, o)| (tp.clone(), *o))
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    source.commit(&changed).await?;
    committed.extend(changed);
    Ok(())
}

async fn kafka_to_files(
    source: KafkaSource,
    chain: Chain,
    mut sink: FileSink,
    status: &Status,
    mut shutdown: Shutdown,
) -> Result<()> {
    let on_disk = sink.recover(&source.topics).await?;
    let mut consumer = source.consumer(&on_disk).await?;
    tracing::info!(pipeline = %status.name, root = %sink.describe(), topics = ?source.topics, group = %source.group, "file sink running (interim: simple-group commits, all partitions assigned)");
    status.set_state("running");
    let mut consumed: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    let mut committed: BTreeMap<TopicPartition, i64> = BTreeMap::new();
    let (mut last_commit, mut last_progress) = (Instant::now(), Instant::now());
    let mut files_before = 0;
    loop {
        let records = tokio::select! {
            records = consumer.poll(POLL_TIMEOUT) => records?,
            _ = shutdown.changed() => break,
        };
        Status::add(&status.records_in, records.len() as u64);
        for record in records {
            let tp = TopicPartition::new(record.topic.clone(), record.partition);
            let offset = record.offset;
            let out = chain.apply(Record::from(record));
            match &out {
                Some(r) => Status::add(&status.bytes_out, r.size_bytes() as u64),
                None => Status::add(&status.records_filtered, 1),
            }
            sink.write(&tp, offset, out).await?;
            consumed.insert(tp, offset + 1);
        }
        sink.finish_due(false).await?;
        let counts = sink.counts();
        status
            .files
            .store(counts.files, std::sync::atomic::Ordering::Relaxed);
        status
            .records_out
            .store(counts.rows, std::sync::atomic::Ordering::Relaxed);
        status
            .lag
            .store(lag(&consumer), std::sync::atomic::Ordering::Relaxed);
        if counts.files != files_before || last_commit.elapsed() >= COMMIT_INTERVAL {
            files_before = counts.files;
            commit_changes(&source, &durable(&sink, &consumed), &mut committed).await?;
            last_commit = Instant::now();
        }
        if last_progress.elapsed() >= PROGRESS_INTERVAL {
            status.log_progress();
            last_progress = Instant::now();
        }
        if *shutdown.borrow() {
            break;
        }
    }
    sink.finish_due(true).await?;
    let counts = sink.counts();
    status
        .files
        .store(counts.files, std::sync::atomic::Ordering::Relaxed);
    status
        .records_out
        .store(counts.rows, std::sync::atomic::Ordering::Relaxed);
    commit_changes(&source, &durable(&sink, &consumed), &mut committed).await
}

/// Per partition, the offset below which everything is in finished files (or was filtered).
fn durable(
    sink: &FileSink,
    consumed: &BTreeMap<TopicPartition, i64>,
) -> BTreeMap<TopicPartition, i64> {
    consumed
        .iter()
        .map(|(tp, next)| (tp.clone(), sink.open_first_offset(tp).unwrap_or(*next)))
        .collect()
}

async fn kafka_to_kafka(
    source: KafkaSource,
    chain: Chain,
    producer: Producer,
    topic: &str,
    status: &Status,
    mut shutdown: Shutdown,
) -> Result<()> {
    let mut consumer = source.consumer(&BTreeMap::new()).await?;
    status.set_state("running");
    let mut committed = BTreeMap::new();
    let mut last_progress = Instant::now();
    loop {
        let records = tokio::select! {
            records = consumer.poll(POLL_TIMEOUT) => records?,
            _ = shutdown.changed() => break,
        };
        Status::add(&status.records_in, records.len() as u64);
        let mut consumed = BTreeMap::new();
        let mut deliveries = Vec::with_capacity(records.len());
        for record in records {
            consumed.insert(
                TopicPartition::new(record.topic.clone(), record.partition),
                record.offset + 1,
            );
            let mut record = Record::from(record);
            record.topic = topic.to_string();
            let Some(out) = chain.apply(record) else {
                Status::add(&status.records_filtered, 1);
                continue;
            };
            Status::add(&status.bytes_out, out.size_bytes() as u64);
            deliveries.push(producer.send(out.into_producer_record()).await?);
        }
        let sent = deliveries.len() as u64;
        for delivery in deliveries {
            delivery.await?;
        }
        Status::add(&status.records_out, sent);
        commit_changes(&source, &consumed, &mut committed).await?;
        status
            .lag
            .store(lag(&consumer), std::sync::atomic::Ordering::Relaxed);
        if last_progress.elapsed() >= PROGRESS_INTERVAL {
            status.log_progress();
            last_progress = Instant::now();
        }
    }
    producer.close().await;
    Ok(())
}
