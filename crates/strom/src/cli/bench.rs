//! `strom bench produce|consume|e2e`: throughput and latency against any Kafka broker.
//!
//! Latencies go into an HdrHistogram in microseconds: for `produce`, from `send` to the
//! broker's acknowledgement; for `consume`, the round trip of each fetch (poll); for `e2e`,
//! from `send` to the moment the consumer holds the record (the send time travels in the
//! first 8 bytes of the value, so it needs `--size 8` at least). MB are 10^6 bytes, as in
//! `wire-limit`, so the two compare directly.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::{Bytes, BytesMut};
use clap::{Args, Subcommand};
use hdrhistogram::Histogram;
use serde_json::json;
use strom_client::{
    parse_compression, Acks, Admin, Client, ClientConfig, Compression, Consumer, ConsumerConfig,
    NewTopic, OffsetSpec, Producer, ProducerConfig, ProducerRecord, ResponseError, TopicPartition,
};
use tokio::sync::mpsc;

use super::{print_json, Format, GlobalArgs};

/// Deliveries awaited by the latency collector at most; producers wait beyond it.
const DELIVERIES_QUEUED_MAX: usize = 64 * 1024;
/// Highest latency the histogram records (longer ones are clamped), in microseconds.
const LATENCY_US_MAX: u64 = 600_000_000;

/// `strom bench ...`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Produce as fast as possible and report throughput and acknowledgement latency.
    ///
    /// Examples:
    ///   strom bench produce --messages 1000000 --size 100 --acks 1
    ///   strom bench produce --topic bench --producers 4 --compression lz4 --format json
    Produce(LoadArgs),
    /// Read a topic from its start and report throughput and fetch latency.
    ///
    /// Examples:
    ///   strom bench consume --topic bench --messages 1000000
    Consume(LoadArgs),
    /// Produce and consume at once; report end-to-end latency (send to receive).
    ///
    /// Examples:
    ///   strom bench e2e --messages 200000 --size 1000 --acks all
    E2e(LoadArgs),
}

/// Flags shared by every bench.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Topic (created with --partitions if missing).
    #[arg(long, default_value = "strom-bench")]
    topic: String,
    /// Messages in total.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Concurrent producers, each with its own connections.
    #[arg(long, default_value_t = 1)]
    producers: u64,
    /// Acks: 0, 1, -1/all.
    #[arg(long, default_value = "1")]
    acks: Acks,
    /// Producer batch size in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    batch_size: usize,
    /// Producer linger in milliseconds.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// Compression: none, gzip, snappy, lz4, zstd.
    #[arg(long, default_value = "none", value_parser = parse_compression)]
    compression: Compression,
    /// Partitions of the topic when it is created.
    #[arg(long, default_value_t = 1)]
    partitions: i32,
}

/// The figures of one run.
struct Report {
    kind: &'static str,
    messages: u64,
    bytes: u64,
    seconds: f64,
    latency_us: Histogram<u64>,
}

/// Runs `strom bench ...`.
pub async fn run(global: &GlobalArgs, args: BenchArgs) -> anyhow::Result<()> {
    let (report, load) = match args.command {
        BenchCommand::Produce(load) => (produce(global, &load).await?, load),
        BenchCommand::Consume(load) => (consume(global, &load).await?, load),
        BenchCommand::E2e(load) => (e2e(global, &load).await?, load),
    };
    print_report(global.format, &report, &load);
    Ok(())
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).expect("valid histogram bounds")
}

async fn connect(global: &GlobalArgs) -> anyhow::Result<Client> {
    let config = ClientConfig {
        client_id: "strom-bench".to_string(),
        ..ClientConfig::new(&global.brokers)
    };
    Ok(Client::connect(config).await?)
}

async fn ensure_topic(client: &Client, load: &LoadArgs) -> anyhow::Result<()> {
    let admin = Admin::new(client.clone());
    match admin
        .create_topics(&[NewTopic::new(&load.topic, load.partitions)])
        .await
    {
        Ok(()) => {}
        Err(error) if error.kafka_code() == Some(ResponseError::TopicAlreadyExists) => {}
        Err(error) => return Err(error).context(format!("cannot create topic {:?}", load.topic)),
    }
    // Wait until the topic has leaders (a new topic may take a moment on a cluster).
    for _ in 0..100 {
        let metadata = client
            .refresh_metadata(Some(std::slice::from_ref(&load.topic)), false)
            .await?;
        if let Some(t) = metadata.topics.get(&load.topic) {
            if !t.partitions.is_empty() && t.partitions.iter().all(|p| p.leader >= 0) {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("topic {:?} has no leaders", load.topic)
}

/// A payload of printable pseudo-random bytes (so compression has something realistic to do).
fn payload(size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b'a' + (x % 26) as u8
        })
        .collect()
}

/// Progress as a bar on a terminal, as a line a second otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    done: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Progress {
    fn start(label: &'static str, total: u64, size: usize) -> Progress {
        let done = Arc::new(AtomicU64::new(0));
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} [{bar:40}] {pos}/{len} msgs {per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(label);
            bar
        });
        let task = {
            let done = done.clone();
            let bar = bar.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let mut last = 0;
                loop {
                    tokio::time::sleep(Duration::from_millis(if bar.is_some() {
                        100
                    } else {
                        1000
                    }))
                    .await;
                    let now = done.load(Ordering::Relaxed);
                    match &bar {
                        Some(bar) => bar.set_position(now),
                        None => {
                            let rate = (now - last) as f64;
                            eprintln!(
                                "{label}: {now}/{total} msgs, {rate:.0} msgs/s, {:.1} MB/s, {:.0}s",
                                rate * size as f64 / 1e6,
                                started.elapsed().as_secs_f64()
                            );
                            last = now;
                        }
                    }
                }
            })
        };
        Progress { bar, done, task }
    }

    fn finish(self) {
        self.task.abort();
        if let Some(bar) = self.bar {
            bar.set_position(self.done.load(Ordering::Relaxed));
            bar.finish_and_clear();
        }
    }
}

fn producer_config(load: &LoadArgs) -> ProducerConfig {
    ProducerConfig {
        acks: load.acks,
        batch_size_bytes: load.batch_size,
        linger_ms: load.linger_ms,
        compression: load.compression,
        buffer_memory_bytes: 64 * 1024 * 1024,
        max_request_size_bytes: (load.batch_size * 16).max(1024 * 1024),
        delivery_timeout_ms: 30_000,
        ..ProducerConfig::default()
    }
}

/// Runs the producers; `stamp` puts the send time into the first 8 bytes of each value.
async fn run_producers(
    global: &GlobalArgs,
    load: &LoadArgs,
    started: Instant,
    stamp: bool,
    progress: Arc<AtomicU64>,
) -> anyhow::Result<Histogram<u64>> {
    let producers = load.producers.max(1);
    let mut tasks = Vec::new();
    for index in 0..producers {
        let count = load.messages / producers + u64::from(index < load.messages % producers);
        let client = connect(global).await?;
        let producer = Producer::new(client, producer_config(load));
        let topic = load.topic.clone();
        let value = Bytes::from(payload(load.size, index + 1));
        let progress = progress.clone();
        let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        tasks.push(tokio::spawn(async move {
            let (sender, mut receiver) =
                mpsc::channel::<(Instant, strom_client::DeliveryFuture)>(DELIVERIES_QUEUED_MAX);
            let collector_failed = failed.clone();
            let collector = tokio::spawn(async move {
                let mut histogram = new_histogram();
                let mut first_error = None;
                while let Some((sent, delivery)) = receiver.recv().await {
                    match delivery.await {
                        Ok(_) => {
                            let us = (sent.elapsed().as_micros() as u64).clamp(1, LATENCY_US_MAX);
                            histogram.saturating_record(us);
                            progress.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(error) => {
                            collector_failed.store(true, Ordering::Relaxed);
                            first_error.get_or_insert(error);
                        }
                    }
                }
                (histogram, first_error)
            });
            for _ in 0..count {
                if failed.load(Ordering::Relaxed) {
                    break;
                }
                let now = Instant::now();
                let value = if stamp {
                    let mut v = BytesMut::from(&value[..]);
                    let nanos = now.duration_since(started).as_nanos() as u64;
                    v[..8].copy_from_slice(&nanos.to_be_bytes());
                    v.freeze()
                } else {
                    value.clone()
                };
                let record = ProducerRecord {
                    topic: topic.clone(),
                    value: Some(value),
                    ..ProducerRecord::default()
                };
                let delivery = producer.send(record).await?;
                if sender.send((now, delivery)).await.is_err() {
                    break;
                }
            }
            drop(sender);
            producer.close().await;
            let (histogram, first_error) = collector.await.context("latency collector failed")?;
            if let Some(error) = first_error {
                return Err(anyhow::Error::from(error).context("produce failed"));
            }
            anyhow::Ok(histogram)
        }));
    }
    let mut histogram = new_histogram();
    for task in tasks {
        histogram
            .add(task.await.context("producer task failed")??)
            .context("histogram")?;
    }
    Ok(histogram)
}

async fn produce(global: &GlobalArgs, load: &LoadArgs) -> anyhow::Result<Report> {
    let client = connect(global).await?;
    ensure_topic(&client, load).await?;
    let progress = Progress::start("produce", load.messages, load.size);
    let started = Instant::now();
    let histogram = run_producers(global, load, started, false, progress.done.clone()).await?;
    let seconds = started.elapsed().as_secs_f64();
    progress.finish();
    Ok(Report {
        kind: "produce",
        messages: load.messages,
        bytes: load.messages * load.size as u64,
        seconds,
        latency_us: histogram,
    })
}

async fn assigned_consumer(
    global: &GlobalArgs,
    load: &LoadArgs,
    start: OffsetSpec,
) -> anyhow::Result<(Consumer, Vec<TopicPartition>)> {
    let client = connect(global).await?;
    let config = ConsumerConfig {
        max_partition_fetch_bytes: 8 * 1024 * 1024,
        fetch_max_bytes: 64 * 1024 * 1024,
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(client, config);
    consumer.assign_topic(&load.topic).await?;
    consumer.seek_all(start);
    let assignment = consumer.assignment();
    Ok((consumer, assignment))
}

async fn consume(global: &GlobalArgs, load: &LoadArgs) -> anyhow::Result<Report> {
    let (mut consumer, assignment) = assigned_consumer(global, load, OffsetSpec::Earliest).await?;
    let progress = Progress::start("consume", load.messages, load.size);
    let mut histogram = new_histogram();
    let mut messages = 0u64;
    let mut bytes = 0u64;
    let started = Instant::now();
    while messages < load.messages {
        let poll_started = Instant::now();
        let records = consumer.poll(Duration::from_millis(500)).await?;
        histogram.saturating_record(
            (poll_started.elapsed().as_micros() as u64).clamp(1, LATENCY_US_MAX),
        );
        for record in &records {
            bytes += record.value.as_ref().map_or(0, |v| v.len() as u64);
        }
        messages += records.len() as u64;
        progress.done.store(messages, Ordering::Relaxed);
        if records.is_empty() && assignment.iter().all(|tp| consumer.at_end(tp)) {
            break;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    progress.finish();
    if messages < load.messages {
        eprintln!("note: the topic held only {messages} messages");
    }
    Ok(Report {
        kind: "consume",
        messages,
        bytes,
        seconds,
        latency_us: histogram,
    })
}

async fn e2e(global: &GlobalArgs, load: &LoadArgs) -> anyhow::Result<Report> {
    if load.size < 8 {
        bail!("e2e needs --size 8 or more (the send time travels in the value)");
    }
    let client = connect(global).await?;
    ensure_topic(&client, load).await?;
    let (mut consumer, _) = assigned_consumer(global, load, OffsetSpec::Latest).await?;
    // Resolve the end offsets before producing, so the consumer sees every new record.
    consumer.poll(Duration::from_millis(1)).await?;
    let progress = Progress::start("e2e", load.messages, load.size);
    let started = Instant::now();
    let producing = {
        let global = global.clone();
        let load = load.clone();
        tokio::spawn(async move {
            run_producers(&global, &load, started, true, Arc::new(AtomicU64::new(0))).await
        })
    };
    let mut histogram = new_histogram();
    let mut messages = 0u64;
    let mut bytes = 0u64;
    let deadline = Duration::from_secs(30);
    let mut idle_since = Instant::now();
    while messages < load.messages {
        let records = consumer.poll(Duration::from_millis(200)).await?;
        let now_ns = started.elapsed().as_nanos() as u64;
        if records.is_empty() {
            if producing.is_finished() && idle_since.elapsed() > deadline {
                bail!(
                    "e2e: only {messages} of {} messages came back",
                    load.messages
                );
            }
            continue;
        }
        idle_since = Instant::now();
        for record in &records {
            let Some(value) = &record.value else { continue };
            if value.len() < 8 {
                continue;
            }
            let sent_ns = u64::from_be_bytes(value[..8].try_into().expect("8 bytes"));
            histogram.saturating_record(
                (now_ns.saturating_sub(sent_ns) / 1000).clamp(1, LATENCY_US_MAX),
            );
            bytes += value.len() as u64;
            messages += 1;
        }
        progress.done.store(messages, Ordering::Relaxed);
    }
    let seconds = started.elapsed().as_secs_f64();
    producing.await.context("producers failed")??;
    progress.finish();
    Ok(Report {
        kind: "e2e",
        messages,
        bytes,
        seconds,
        latency_us: histogram,
    })
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn print_report(format: Format, report: &Report, load: &LoadArgs) {
    let seconds = report.seconds.max(1e-9);
    let msgs_per_sec = report.messages as f64 / seconds;
    let mb_per_sec = report.bytes as f64 / 1e6 / seconds;
    let h = &report.latency_us;
    let (p50, p99, p999, max) = if h.is_empty() {
        (0.0, 0.0, 0.0, 0.0)
    } else {
        (
            ms(h.value_at_quantile(0.5)),
            ms(h.value_at_quantile(0.99)),
            ms(h.value_at_quantile(0.999)),
            ms(h.max()),
        )
    };
    if format == Format::Json {
        print_json(&json!({
            "bench": report.kind,
            "topic": load.topic,
            "size": load.size,
            "acks": load.acks.wire(),
            "producers": load.producers,
            "compression": strom_client::compression_name(load.compression),
            "messages": report.messages,
            "bytes": report.bytes,
            "seconds": report.seconds,
            "msgs_per_sec": msgs_per_sec,
            "mb_per_sec": mb_per_sec,
            "latency_ms": {"p50": p50, "p99": p99, "p999": p999, "max": max},
        }));
        return;
    }
    println!(
        "{}: {} msgs, {} bytes in {:.2}s: {:.0} msgs/s, {:.2} MB/s",
        report.kind, report.messages, report.bytes, report.seconds, msgs_per_sec, mb_per_sec
    );
    println!("latency ms: p50 {p50:.3}  p99 {p99:.3}  p99.9 {p999:.3}  max {max:.3}");
}
