//! Running pipelines: a Kafka source into a file or Kafka sink, or an ingest source (taildir,
//! HTTP, stdin) into a topic. Progress goes to the logs every [`PROGRESS_INTERVAL`] and to a
//! shared [`Status`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strom_client::{
    Acks, Client, ClientConfig, Consumer, ConsumerRecord, DeliveryFuture, OffsetSpec, Producer,
    ProducerConfig, TopicPartition,
};
use tokio::sync::watch;

use crate::config::{PipelineConfig, SinkConfig, SourceConfig};
use crate::error::{Error, Result};
use crate::kafka_source::{self, Change, KafkaSource, Ownership};
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
                topics: topics.clone(),
                group: group.clone(),
                start: *start,
            };
            kafka_to_files(&client, source, chain, sink, &status, shutdown).await
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
                topics: topics.clone(),
                group: group.clone(),
                start: *start,
            };
            kafka_to_kafka(&client, source, chain, producer, topic, &status, shutdown).await
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
    // A retried batch is not written twice (idempotence needs acks=all).
    config.enable_idempotence = config.acks == Acks::All;
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

/// Commits, as the member, the offsets of `durable` that changed since the last commit.
async fn commit_changes(
    consumer: &mut Consumer,
    durable: &BTreeMap<TopicPartition, i64>,
    committed: &mut BTreeMap<TopicPartition, i64>,
) -> Result<()> {
    let changed: BTreeMap<TopicPartition, i64> = durable
        .iter()
        .filter(|(tp, o)| committed.get(*tp) != Some(*o))
        .map(|(tp, o)| (tp.clone(), *o))
        .collect();
    if kafka_source::commit(consumer, &changed).await? {
        committed.extend(changed);
    }
    Ok(())
}

/// Per owned partition, what a file sink has done with it.
#[derive(Default)]
struct FileProgress {
    /// The offset after the last record written to an open file (or filtered), or where the
    /// partition started.
    consumed: BTreeMap<TopicPartition, i64>,
    /// What the group last accepted from this member.
    committed: BTreeMap<TopicPartition, i64>,
}

impl FileProgress {
    fn forget(&mut self, tp: &TopicPartition) {
        self.consumed.remove(tp);
        self.committed.remove(tp);
    }

    /// Per partition, the offset below which everything is in finished files (or was filtered).
    fn durable(&self, sink: &FileSink) -> BTreeMap<TopicPartition, i64> {
        self.consumed
            .iter()
            .map(|(tp, next)| (tp.clone(), sink.open_first_offset(tp).unwrap_or(*next)))
            .collect()
    }
}

/// Applies an assignment change to a file sink; `records` (from the poll that changed it)
/// loses the records of partitions that restart elsewhere.
///
/// Revoked partitions drop their open file unwritten: the new owner may be reading them
/// already, and starts after the last finished file. Gained partitions start after the last
/// offset in a finished file or at the committed offset, whichever is later. A partition kept
/// through a new generation keeps its open file if no one wrote or committed past it
/// meanwhile (it was not lost, or lost and given back untouched), else it restarts like a
/// gained one.
async fn reassign_files(
    consumer: &mut Consumer,
    source: &KafkaSource,
    sink: &mut FileSink,
    progress: &mut FileProgress,
    change: Change,
    records: &mut Vec<ConsumerRecord>,
) -> Result<()> {
    for tp in &change.revoked {
        let dropped = sink.discard(tp);
        progress.forget(tp);
        tracing::info!(%tp, dropped, "partition revoked; its open file is dropped for the new owner to write");
    }
    let check: Vec<TopicPartition> = change.gained.iter().chain(&change.kept).cloned().collect();
    if check.is_empty() {
        return Ok(());
    }
    let on_disk = sink.prepare(&check).await?;
    let committed = consumer.committed(&check).await?;
    let mut restarted = BTreeSet::new();
    for tp in &check {
        let files_end = on_disk.get(tp).copied();
        let committed = committed.get(tp).copied().flatten();
        let start = files_end.max(committed);
        let kept = change.kept.contains(tp);
        if let (true, Some(&next)) = (kept, progress.consumed.get(tp)) {
            let durable = sink.open_first_offset(tp).unwrap_or(next);
            if start.is_none_or(|start| start <= durable) {
                // Nobody wrote past this sink: go on where it was (the client may have moved
                // the position back to the committed offset).
                consumer.seek(tp, OffsetSpec::Offset(next))?;
                restarted.insert(tp.clone());
                progress.committed.remove(tp); // commit again: the group may hold another's
                tracing::info!(%tp, ?files_end, ?committed, next, "partition kept");
                continue;
            }
        }
        let dropped = sink.discard(tp);
        progress.forget(tp);
        match start {
            Some(start) => {
                consumer.seek(tp, OffsetSpec::Offset(start))?;
                progress.consumed.insert(tp.clone(), start);
                restarted.insert(tp.clone());
            }
            None if kept => {
                consumer.seek(tp, source.start_spec())?;
                restarted.insert(tp.clone());
            }
            // Nothing written or committed: the client's start (the pipeline's `start`) stands.
            None => {}
        }
        tracing::info!(%tp, ?files_end, ?committed, ?start, dropped, "partition start");
    }
    kafka_source::drop_records_of(records, &restarted);
    Ok(())
}

fn store_file_counts(sink: &FileSink, status: &Status) {
    let counts = sink.counts();
    status.files.store(counts.files, Ordering::Relaxed);
    status.records_out.store(counts.rows, Ordering::Relaxed);
}

async fn kafka_to_files(
    client: &Client,
    source: KafkaSource,
    chain: Chain,
    mut sink: FileSink,
    status: &Status,
    shutdown: Shutdown,
) -> Result<()> {
    sink.load_schemas(&source.topics).await?;
    let mut consumer = source.consumer(client)?;
    let result = files_loop(&mut consumer, &source, &chain, &mut sink, status, shutdown).await;
    leave(&mut consumer).await;
    result
}

/// Leaves the group (also after a failure, so the partitions move at once rather than after
/// the session timeout; nothing is committed: auto-commit is off).
async fn leave(consumer: &mut Consumer) {
    if let Err(error) = consumer.close().await {
        tracing::warn!(%error, "leaving the group failed; the group notices when the session times out");
    }
}

async fn files_loop(
    consumer: &mut Consumer,
    source: &KafkaSource,
    chain: &Chain,
    sink: &mut FileSink,
    status: &Status,
    mut shutdown: Shutdown,
) -> Result<()> {
    tracing::info!(pipeline = %status.name, root = %sink.describe(), topics = ?source.topics, group = %source.group, "file sink running");
    status.set_state("running");
    let mut ownership = Ownership::default();
    let mut progress = FileProgress::default();
    let (mut last_commit, mut last_progress) = (Instant::now(), Instant::now());
    let mut files_before = 0;
    loop {
        let mut records = tokio::select! {
            records = consumer.poll(POLL_TIMEOUT) => records?,
            _ = shutdown.changed() => break,
        };
        if let Some(change) = ownership.observe(consumer) {
            reassign_files(consumer, source, sink, &mut progress, change, &mut records).await?;
        }
        if kafka_source::fenced(consumer) {
            // Out of the group until the next poll rejoins: write nothing (the partitions may
            // be another member's now); the rejoin checks every partition again.
            continue;
        }
        Status::add(&status.records_in, records.len() as u64);
        for record in records {
            let tp = TopicPartition::new(&*record.topic, record.partition);
            let offset = record.offset;
            let out = chain.apply(Record::from(record));
            match &out {
                Some(r) => Status::add(&status.bytes_out, r.size_bytes() as u64),
                None => Status::add(&status.records_filtered, 1),
            }
            sink.write(&tp, offset, out).await?;
            progress.consumed.insert(tp, offset + 1);
        }
        if kafka_source::fenced(consumer) {
            continue;
        }
        sink.finish_due(false).await?;
        store_file_counts(sink, status);
        status
            .lag
            .store(kafka_source::lag(consumer), Ordering::Relaxed);
        let counts = sink.counts();
        if counts.files != files_before || last_commit.elapsed() >= COMMIT_INTERVAL {
            files_before = counts.files;
            let durable = progress.durable(sink);
            commit_changes(consumer, &durable, &mut progress.committed).await?;
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
    // A poll cut short by the shutdown may have rebalanced: finish only what is still ours.
    if let Some(change) = ownership.observe(consumer) {
        reassign_files(
            consumer,
            source,
            sink,
            &mut progress,
            change,
            &mut Vec::new(),
        )
        .await?;
    }
    if kafka_source::fenced(consumer) {
        for tp in sink.open_partitions() {
            sink.discard(&tp);
        }
    } else {
        sink.finish_due(true).await?;
        store_file_counts(sink, status);
        let durable = progress.durable(sink);
        commit_changes(consumer, &durable, &mut progress.committed).await?;
    }
    Ok(())
}

async fn kafka_to_kafka(
    client: &Client,
    source: KafkaSource,
    chain: Chain,
    producer: Producer,
    topic: &str,
    status: &Status,
    shutdown: Shutdown,
) -> Result<()> {
    let mut consumer = source.consumer(client)?;
    let result = kafka_loop(&mut consumer, &chain, &producer, topic, status, shutdown).await;
    producer.close().await;
    leave(&mut consumer).await;
    result
}

async fn kafka_loop(
    consumer: &mut Consumer,
    chain: &Chain,
    producer: &Producer,
    topic: &str,
    status: &Status,
    mut shutdown: Shutdown,
) -> Result<()> {
    status.set_state("running");
    let mut ownership = Ownership::default();
    let mut committed = BTreeMap::new();
    let mut last_progress = Instant::now();
    loop {
        let records = tokio::select! {
            records = consumer.poll(POLL_TIMEOUT) => records?,
            _ = shutdown.changed() => break,
        };
        if let Some(change) = ownership.observe(consumer) {
            // Positions of gained partitions come from the group's committed offsets: what
            // was acknowledged before their last commit is not sent again.
            for tp in change
                .revoked
                .iter()
                .chain(&change.gained)
                .chain(&change.kept)
            {
                committed.remove(tp);
            }
        }
        Status::add(&status.records_in, records.len() as u64);
        let mut consumed = BTreeMap::new();
        let mut deliveries = Vec::with_capacity(records.len());
        for record in records {
            consumed.insert(
                TopicPartition::new(&*record.topic, record.partition),
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
        commit_changes(consumer, &consumed, &mut committed).await?;
        status
            .lag
            .store(kafka_source::lag(consumer), Ordering::Relaxed);
        if last_progress.elapsed() >= PROGRESS_INTERVAL {
            status.log_progress();
            last_progress = Instant::now();
        }
    }
    Ok(())
}
