//! `strom bench produce|consume|e2e`: throughput and latency against any Kafka broker.
//!
//! Latencies go into an HdrHistogram in microseconds: for `produce`, from `send` to the
//! broker's acknowledgement; for `consume`, the round trip of each fetch (poll); for `e2e`,
//! from `send` to the moment the consumer holds the record (the send time travels in the
//! first 8 bytes of the value, so it needs `--size 8` at least). MB are 10^6 bytes, as in
//! `wire-limit`, so the two compare directly.
//!
//! Without `--rate` the producers send as fast as they can, and produce latency is mostly time
//! queued in the producer's buffer. With `--rate N` (produce and e2e) they send open loop at N
//! records per second in total, each paced producer on a thread of its own that sleeps until
//! its next record is due (the runtime's timer ticks in milliseconds, which made the load
//! arrive in 1-2 ms bursts) and then sends every record due by then: a record's latency
//! counts from its scheduled time, so the pacer's own lateness (a sleep overshoots by tens of
//! µs) and any stall (a full buffer, a thread the OS did not run) show in the latency of every
//! record they delayed rather than hiding (no coordinated omission).
//!
//! The producers send with `Producer::send_many_ref` (no per-record allocation, one lock and
//! one delivery handle per batch touched): paced, every record due at once in one call;
//! unpaced, calls of [`RECORDS_PER_SEND_MAX`] records. They track latency per batch: when a
//! batch completes, each record's latency is the batch's completion time minus the record's
//! send time, which is its scheduled time when paced. Unpaced, the clock is read once per call
//! and the call's records count from that reading (a few µs early, so latencies err high by as
//! much). The consumers read with `Consumer::poll_batches`, in place (no per-record
//! allocation or reference count).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use hdrhistogram::Histogram;
use serde_json::json;
use strom_client::{
    parse_compression, Acks, Admin, BatchDelivery, Client, ClientConfig, Compression, Consumer,
    ConsumerConfig, NewTopic, OffsetSpec, Producer, ProducerConfig, RecordRef, ResponseError,
    TopicPartition,
};
use tokio::sync::mpsc;

use super::{print_json, Format, GlobalArgs};

/// Batches awaited by the latency collector at most; producers wait beyond it (the producer's
/// buffer memory usually binds first).
const BATCHES_QUEUED_MAX: usize = 4096;
/// Records one `send_many_ref` call sends at most: unpaced, every call sends this many (and
/// reads the clock once for them); paced, more records due at once go in several calls.
const RECORDS_PER_SEND_MAX: u64 = 128;
/// Bytes of values one call sends at most (paced with `e2e`, every record of a call has a
/// value buffer of its own, for its send time).
const SEND_VALUE_BYTES_MAX: usize = 1024 * 1024;
/// `--warm-heap-mib`: more than an e2e run of 100 B records at 3.45M msgs/s takes from the
/// allocator (104 MiB; BENCHMARKS.md, tenth session).
const WARM_HEAP_MIB_DEFAULT: usize = 160;
/// Highest latency the histogram records (longer ones are clamped), in microseconds.
const LATENCY_US_MAX: u64 = 600_000_000;
/// `--interval-ms`: intervals reported at most (each holds a histogram of ~20 KiB); records
/// sent after the last one count only in the whole run's figures.
const INTERVALS_MAX: usize = 1_000;

/// `strom bench ...`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Produce as fast as possible (or at --rate) and report throughput and acknowledgement
    /// latency (send to ack).
    ///
    /// Examples:
    ///   strom bench produce --messages 1000000 --size 100 --acks 1
    ///   strom bench produce --topic bench --producers 4 --compression lz4 --format json
    ///   strom bench produce --messages 2000000 --rate 500000   # latency at a fixed load
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
    ///   strom bench e2e --messages 2000000 --rate 500000   # latency at a fixed load
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
    /// produce and e2e: send at this many messages per second in total, open loop (0: as
    /// fast as possible). Latency then counts from each record's scheduled send time, so
    /// stalls are not hidden.
    #[arg(long, default_value_t = 0, value_name = "MSGS_PER_SEC")]
    rate: u64,
    /// e2e: also report latency for each interval of this many milliseconds of send time, to
    /// see warm-up and stalls over the run (0: only the whole run).
    #[arg(long, default_value_t = 0)]
    interval_ms: u64,
    /// Runtime worker threads of the bench client (paced producers have a thread each on top).
    /// Default: 1 for e2e (its consumer and producer I/O on one thread wake each other without
    /// a thread switch, which measured lower latency at every rate tried), one per core
    /// otherwise.
    #[arg(long)]
    client_threads: Option<usize>,
    /// consume and e2e: check each fetched batch's CRC-32C (`check.crcs`). Off by default, as
    /// in librdkafka: the bench measures the broker, and the check is the client's CPU.
    #[arg(long)]
    check_crcs: bool,
    /// MiB of heap to touch and free before the clock starts, so that the run's allocations
    /// reuse memory the process already holds instead of faulting in fresh pages while timed
    /// (a warmed-up client, as a long-running producer or consumer is). 0: none.
    #[arg(long, default_value_t = WARM_HEAP_MIB_DEFAULT)]
    warm_heap_mib: usize,
}

/// The figures of one run.
struct Report {
    kind: &'static str,
    messages: u64,
    bytes: u64,
    seconds: f64,
    latency_us: Histogram<u64>,
    /// e2e with `--interval-ms`: latency of the records sent in each interval, in order.
    intervals: Vec<Histogram<u64>>,
    /// e2e: the producers' latency from send to the broker's acknowledgement, which splits
    /// `latency_us` into the way to the broker and the way back out (empty otherwise).
    ack_latency_us: Histogram<u64>,
}

/// Runs `strom bench ...` on a runtime of its own (see `--client-threads`).
pub fn main(global: &GlobalArgs, args: BenchArgs) -> anyhow::Result<()> {
    let load = match &args.command {
        BenchCommand::Produce(load) | BenchCommand::Consume(load) | BenchCommand::E2e(load) => load,
    };
    crate::allocator::warm_heap(load.warm_heap_mib.saturating_mul(1024 * 1024));
    let default_threads = match args.command {
        BenchCommand::E2e(_) => 1,
        _ => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(load.client_threads.unwrap_or(default_threads).max(1))
        .enable_all()
        .thread_name("strom-bench")
        .build()
        .context("cannot start the async runtime")?
        .block_on(run(global, args))
}

/// Runs `strom bench ...` on the current runtime.
///
/// e2e runs as a task on the runtime's worker, next to its connections' I/O: its consumer is
/// woken by the worker that read its socket, without a thread switch. `produce` and `consume`
/// run on the calling thread: there the consumer decodes while the workers read, and as a
/// task it consumed 7.3-7.8M instead of 9.5-10.8M msgs/s (100 B, alternating runs).
async fn run(global: &GlobalArgs, args: BenchArgs) -> anyhow::Result<()> {
    let (report, load) = match args.command {
        BenchCommand::Produce(load) => (produce(global, &load).await?, load),
        BenchCommand::Consume(load) => (consume(global, &load).await?, load),
        BenchCommand::E2e(load) => {
            let (task_global, task_load) = (global.clone(), load.clone());
            let report = tokio::spawn(async move { e2e(&task_global, &task_load).await })
                .await
                .context("the e2e task failed")??;
            (report, load)
        }
    };
    print_report(global.format, &report, &load);
    Ok(())
}

fn new_histogram() -> Histogram<u64> {
    latency_histogram(3)
}

/// A histogram for one `--interval-ms` interval: two significant digits, a tenth of the size.
fn new_interval_histogram() -> Histogram<u64> {
    latency_histogram(2)
}

/// Latencies from 1 µs to [`LATENCY_US_MAX`] with `significant_digits` (2 or 3: constant
/// bounds that `new_with_bounds` accepts, so it cannot fail).
fn latency_histogram(significant_digits: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, significant_digits)
        .expect("valid histogram bounds")
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

/// Consecutive records of one producer batch: the delivery of the first run of them, and
/// when they were sent.
struct SentBatch {
    delivery: BatchDelivery,
    /// The producer's index of the first record.
    first: u64,
    count: u64,
    /// Unpaced: runs of records that count from one clock reading (reading, records). Paced:
    /// empty (each record counts from its scheduled time, `Schedule::due`).
    reads: Vec<(Instant, u64)>,
}

/// Open-loop pacing at a fixed rate.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    started: Instant,
    nanos_per_record: f64,
}

impl Schedule {
    /// When record `index` is due.
    fn due(&self, index: u64) -> Instant {
        self.started + Duration::from_nanos(self.due_ns(index))
    }

    /// When record `index` is due, in ns since the start (cheaper than an `Instant`).
    fn due_ns(&self, index: u64) -> u64 {
        (index as f64 * self.nanos_per_record) as u64
    }

    /// Waits until record `index` is due, blocking the thread (a paced producer has a thread
    /// of its own); returns how many records from `index` on are due by the time it returns
    /// (at least 1), to be sent back to back without reading the clock again.
    fn wait(&self, index: u64) -> u64 {
        let due = self.due(index);
        let mut now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
            now = Instant::now();
        }
        let elapsed_ns = now.saturating_duration_since(self.started).as_nanos() as f64;
        let last_due = (elapsed_ns / self.nanos_per_record) as u64;
        (last_due + 1).saturating_sub(index).max(1)
    }
}

/// Records the latencies of a completed batch's records, acknowledged at `acked`.
fn record_latencies(
    histogram: &mut Histogram<u64>,
    schedule: Option<&Schedule>,
    batch: &SentBatch,
    acked: Instant,
) {
    let Some(schedule) = schedule else {
        for &(sent, count) in &batch.reads {
            let us = acked.saturating_duration_since(sent).as_micros() as u64;
            histogram.saturating_record_n(us.clamp(1, LATENCY_US_MAX), count);
        }
        return;
    };
    let acked_ns = acked.saturating_duration_since(schedule.started).as_nanos() as u64;
    // Neighbours are due a fraction of a µs apart: equal latencies go in as one count.
    let mut run: Option<(u64, u64)> = None;
    for index in batch.first..batch.first + batch.count {
        let us = (acked_ns.saturating_sub(schedule.due_ns(index)) / 1000).clamp(1, LATENCY_US_MAX);
        match &mut run {
            Some((value, count)) if *value == us => *count += 1,
            _ => {
                if let Some((value, count)) = run.replace((us, 1)) {
                    histogram.saturating_record_n(value, count);
                }
            }
        }
    }
    if let Some((value, count)) = run {
        histogram.saturating_record_n(value, count);
    }
}

/// Runs the producers; `stamp` puts the send time into the first 8 bytes of each value.
/// `--producers` producers, each on its own client with the topic's metadata and a connection
/// to every partition leader, so that a run's clock starts when they can send: setting them up
/// (bootstrap, metadata, connecting) is not latency the broker caused.
async fn ready_producers(global: &GlobalArgs, load: &LoadArgs) -> anyhow::Result<Vec<Producer>> {
    let mut producers = Vec::new();
    for _ in 0..load.producers.max(1) {
        let client = connect(global).await?;
        let topic = client
            .topic(&load.topic, false)
            .await
            .with_context(|| format!("no metadata for topic {:?}", load.topic))?;
        let mut leaders: Vec<i32> = topic.partitions.iter().map(|p| p.leader).collect();
        leaders.sort_unstable();
        leaders.dedup();
        for leader in leaders.into_iter().filter(|&leader| leader >= 0) {
            client
                .connection(leader)
                .await
                .with_context(|| format!("cannot connect to broker {leader}"))?;
        }
        producers.push(Producer::new(client, producer_config(load)));
    }
    Ok(producers)
}

/// Runs `producers` (from [`ready_producers`]), each sending its share of `--messages`.
async fn run_producers(
    producers: Vec<Producer>,
    load: &LoadArgs,
    started: Instant,
    stamp: bool,
    progress: Arc<AtomicU64>,
) -> anyhow::Result<Histogram<u64>> {
    let producer_count = producers.len().max(1) as u64;
    let mut tasks = Vec::new();
    for (index, producer) in (0u64..).zip(producers) {
        let producers = producer_count;
        let count = load.messages / producers + u64::from(index < load.messages % producers);
        let topic = load.topic.clone();
        let progress = progress.clone();
        let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let schedule = (load.rate > 0).then(|| Schedule {
            started,
            nanos_per_record: 1e9 * producers as f64 / load.rate as f64,
        });
        let started_ms = strom_client::now_ms() - started.elapsed().as_millis() as i64;
        let paced = schedule.is_some();
        let per_send =
            ((SEND_VALUE_BYTES_MAX / load.size.max(1)) as u64).clamp(1, RECORDS_PER_SEND_MAX);
        // Paced with stamps, each record of a call carries its own send time, so it needs a
        // value of its own; otherwise the call's records share one.
        let buffers = if paced && stamp { per_send as usize } else { 1 };
        let mut values = vec![payload(load.size, index + 1); buffers];
        let body = async move {
            let (sender, mut receiver) = mpsc::channel::<SentBatch>(BATCHES_QUEUED_MAX);
            let collector_failed = failed.clone();
            let collector = tokio::spawn(async move {
                let mut histogram = new_histogram();
                let mut first_error = None;
                while let Some(mut batch) = receiver.recv().await {
                    match (&mut batch.delivery).await {
                        Ok(_) => {
                            let acked = batch.delivery.completed_at().unwrap_or_else(Instant::now);
                            record_latencies(&mut histogram, schedule.as_ref(), &batch, acked);
                            progress.fetch_add(batch.count, Ordering::Relaxed);
                        }
                        Err(error) => {
                            collector_failed.store(true, Ordering::Relaxed);
                            first_error.get_or_insert(error);
                        }
                    }
                }
                (histogram, first_error)
            });
            // The create time of a record sent `since_ns` after the start (the same reading).
            let create_ms = |since_ns: u64| started_ms + (since_ns / 1_000_000) as i64;
            let mut current: Option<SentBatch> = None;
            let mut deliveries = Vec::new();
            let mut next = 0u64;
            'sending: while next < count {
                if failed.load(Ordering::Relaxed) {
                    break;
                }
                // How many records go in this call, and (unpaced) the clock reading they share.
                let (n, reading) = match &schedule {
                    Some(schedule) => (schedule.wait(next).min(count - next).min(per_send), None),
                    None => ((count - next).min(per_send), Some(Instant::now())),
                };
                // Send time of the call's record `k`, in ns since the start.
                let reading_ns =
                    reading.map(|r| r.saturating_duration_since(started).as_nanos() as u64);
                let sent_ns = |k: u64| match (&schedule, reading_ns) {
                    (Some(schedule), _) => schedule.due_ns(next + k),
                    (None, reading_ns) => reading_ns.unwrap_or(0),
                };
                if stamp {
                    for (k, value) in values.iter_mut().take(n as usize).enumerate() {
                        value[..8].copy_from_slice(&sent_ns(k as u64).to_be_bytes());
                    }
                }
                let records: Vec<RecordRef<'_>> = (0..n)
                    .map(|k| {
                        let value = &values[k as usize % values.len()];
                        RecordRef::new(&topic, value).timestamp_ms(create_ms(sent_ns(k)))
                    })
                    .collect();
                deliveries.clear();
                producer.send_many_ref(&records, &mut deliveries).await?;
                for delivery in deliveries.drain(..) {
                    let first = next + delivery.first_index() as u64;
                    let records = delivery.count() as u64;
                    match &mut current {
                        Some(batch) if batch.delivery.same_batch(&delivery) => {
                            batch.count += records;
                            if let Some(reading) = reading {
                                match batch.reads.last_mut() {
                                    Some((at, n)) if *at == reading => *n += records,
                                    _ => batch.reads.push((reading, records)),
                                }
                            }
                        }
                        _ => {
                            let batch = SentBatch {
                                delivery,
                                first,
                                count: records,
                                reads: reading.map(|r| vec![(r, records)]).unwrap_or_default(),
                            };
                            if let Some(done) = current.replace(batch) {
                                if sender.send(done).await.is_err() {
                                    break 'sending;
                                }
                            }
                        }
                    }
                }
                next += n;
            }
            if let Some(done) = current.take() {
                let _ = sender.send(done).await;
            }
            drop(sender);
            producer.close().await;
            let (histogram, first_error) = collector.await.context("latency collector failed")?;
            if let Some(error) = first_error {
                return Err(anyhow::Error::from(error).context("produce failed"));
            }
            anyhow::Ok(histogram)
        };
        tasks.push(if paced {
            // Sleeps between sends block this thread, not a runtime worker; the producer's
            // own I/O still runs on the runtime.
            let runtime = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || runtime.block_on(body))
        } else {
            tokio::spawn(body)
        });
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
    let producers = ready_producers(global, load).await?;
    let progress = Progress::start("produce", load.messages, load.size);
    let started = Instant::now();
    let histogram = run_producers(producers, load, started, false, progress.done.clone()).await?;
    let seconds = started.elapsed().as_secs_f64();
    progress.finish();
    Ok(Report {
        kind: "produce",
        messages: load.messages,
        bytes: load.messages * load.size as u64,
        seconds,
        latency_us: histogram,
        intervals: Vec::new(),
        ack_latency_us: new_histogram(),
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
        check_crcs: load.check_crcs,
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
        let batches = consumer.poll_batches(Duration::from_millis(500)).await?;
        histogram.saturating_record(
            (poll_started.elapsed().as_micros() as u64).clamp(1, LATENCY_US_MAX),
        );
        for batch in &batches {
            for record in batch.records() {
                bytes += record.value.map_or(0, |v| v.len() as u64);
            }
            messages += batch.len() as u64;
        }
        progress.done.store(messages, Ordering::Relaxed);
        if batches.is_empty() && assignment.iter().all(|tp| consumer.at_end(tp)) {
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
        intervals: Vec::new(),
        ack_latency_us: new_histogram(),
    })
}

/// Consecutive e2e records with one latency and one `--interval-ms` interval.
struct LatencyRun {
    latency_us: u64,
    /// Index of the interval the records were sent in (`None` without `--interval-ms`).
    interval: Option<u64>,
    count: u64,
}

impl LatencyRun {
    /// Adds the run to the whole run's histogram and to its interval's (counting it in
    /// `beyond_intervals` past [`INTERVALS_MAX`]).
    fn record(
        &self,
        histogram: &mut Histogram<u64>,
        intervals: &mut Vec<Histogram<u64>>,
        beyond_intervals: &mut u64,
    ) {
        histogram.saturating_record_n(self.latency_us, self.count);
        let Some(index) = self.interval else {
            return;
        };
        match usize::try_from(index) {
            Ok(index) if index < INTERVALS_MAX => {
                if intervals.len() <= index {
                    intervals.resize_with(index + 1, new_interval_histogram);
                }
                intervals[index].saturating_record_n(self.latency_us, self.count);
            }
            _ => *beyond_intervals += self.count,
        }
    }
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
    let producers = ready_producers(global, load).await?;
    let progress = Progress::start("e2e", load.messages, load.size);
    let started = Instant::now();
    let producing = {
        let load = load.clone();
        tokio::spawn(async move {
            run_producers(producers, &load, started, true, Arc::new(AtomicU64::new(0))).await
        })
    };
    let mut histogram = new_histogram();
    let mut messages = 0u64;
    let mut bytes = 0u64;
    let deadline = Duration::from_secs(30);
    let mut idle_since = Instant::now();
    let interval_ns = load.interval_ms.saturating_mul(1_000_000);
    let mut intervals: Vec<Histogram<u64>> = Vec::new();
    let mut beyond_intervals = 0u64;
    while messages < load.messages {
        let batches = consumer.poll_batches(Duration::from_millis(200)).await?;
        let now_ns = started.elapsed().as_nanos() as u64;
        if batches.is_empty() {
            if producing.is_finished() && idle_since.elapsed() > deadline {
                bail!(
                    "e2e: only {messages} of {} messages came back",
                    load.messages
                );
            }
            continue;
        }
        idle_since = Instant::now();
        // A poll's records share one receive time and were due a fraction of a µs apart, so
        // neighbours share a latency: each run of equal latencies is recorded once.
        let mut run: Option<LatencyRun> = None;
        for record in batches.iter().flat_map(|batch| batch.records()) {
            let Some(stamp) = record.value.and_then(|v| v.first_chunk::<8>()) else {
                continue;
            };
            let sent_ns = u64::from_be_bytes(*stamp);
            let latency_us = (now_ns.saturating_sub(sent_ns) / 1000).clamp(1, LATENCY_US_MAX);
            // Bounded by the run's length: a value's stamp is at most its receive time.
            let interval = sent_ns.min(now_ns).checked_div(interval_ns);
            match &mut run {
                Some(run) if run.latency_us == latency_us && run.interval == interval => {
                    run.count += 1
                }
                _ => {
                    let next = LatencyRun {
                        latency_us,
                        interval,
                        count: 1,
                    };
                    if let Some(done) = run.replace(next) {
                        done.record(&mut histogram, &mut intervals, &mut beyond_intervals);
                    }
                }
            }
            bytes += record.value.map_or(0, |v| v.len() as u64);
            messages += 1;
        }
        if let Some(done) = run {
            done.record(&mut histogram, &mut intervals, &mut beyond_intervals);
        }
        progress.done.store(messages, Ordering::Relaxed);
    }
    let seconds = started.elapsed().as_secs_f64();
    let ack_latency_us = producing.await.context("producers failed")??;
    progress.finish();
    if beyond_intervals > 0 {
        eprintln!(
            "note: {beyond_intervals} messages were sent after the last of {INTERVALS_MAX} intervals and count only in the whole run"
        );
    }
    Ok(Report {
        kind: "e2e",
        messages,
        bytes,
        seconds,
        latency_us: histogram,
        intervals,
        ack_latency_us,
    })
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// p50, p99, p99.9 and max of a latency histogram in milliseconds (zeros when empty).
fn quantiles_ms(h: &Histogram<u64>) -> (f64, f64, f64, f64) {
    if h.is_empty() {
        return (0.0, 0.0, 0.0, 0.0);
    }
    (
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max()),
    )
}

fn print_report(format: Format, report: &Report, load: &LoadArgs) {
    let seconds = report.seconds.max(1e-9);
    let msgs_per_sec = report.messages as f64 / seconds;
    let mb_per_sec = report.bytes as f64 / 1e6 / seconds;
    let (p50, p99, p999, max) = quantiles_ms(&report.latency_us);
    let ack_latency = (!report.ack_latency_us.is_empty()).then(|| {
        let (p50, p99, p999, max) = quantiles_ms(&report.ack_latency_us);
        json!({"p50": p50, "p99": p99, "p999": p999, "max": max})
    });
    let intervals = report.intervals.iter().enumerate().map(|(index, h)| {
        let (p50, p99, _, max) = quantiles_ms(h);
        (index as u64 * load.interval_ms, h.len(), p50, p99, max)
    });
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
            "ack_latency_ms": ack_latency,
            "intervals": intervals
                .map(|(start_ms, messages, p50, p99, max)| json!({
                    "start_ms": start_ms,
                    "messages": messages,
                    "latency_ms": {"p50": p50, "p99": p99, "max": max},
                }))
                .collect::<Vec<_>>(),
        }));
        return;
    }
    println!(
        "{}: {} msgs, {} bytes in {:.2}s: {:.0} msgs/s, {:.2} MB/s",
        report.kind, report.messages, report.bytes, report.seconds, msgs_per_sec, mb_per_sec
    );
    println!("latency ms: p50 {p50:.3}  p99 {p99:.3}  p99.9 {p999:.3}  max {max:.3}");
    if !report.ack_latency_us.is_empty() {
        let (p50, p99, p999, max) = quantiles_ms(&report.ack_latency_us);
        println!(
            "send to acknowledgement ms: p50 {p50:.3}  p99 {p99:.3}  p99.9 {p999:.3}  max {max:.3}"
        );
    }
    for (start_ms, messages, p50, p99, max) in intervals {
        println!(
            "  from {start_ms} ms: {messages} msgs, latency ms p50 {p50:.3}  p99 {p99:.3}  max {max:.3}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_latency_run_counts_every_record_once_in_the_run_and_in_its_interval() {
        let mut histogram = new_histogram();
        let mut intervals = Vec::new();
        let mut beyond = 0;
        let runs = [
            (250, Some(0), 3),
            (900, Some(2), 5),
            (40, None, 7),
            (60, Some(INTERVALS_MAX as u64), 11),
        ];
        for (latency_us, interval, count) in runs {
            LatencyRun {
                latency_us,
                interval,
                count,
            }
            .record(&mut histogram, &mut intervals, &mut beyond);
        }
        assert_eq!(histogram.len(), 3 + 5 + 7 + 11);
        assert_eq!(histogram.count_at(900), 5);
        assert_eq!(intervals.len(), 3, "intervals up to the last one used");
        let counts: Vec<u64> = intervals.iter().map(|h| h.len()).collect();
        assert_eq!(counts, [3, 0, 5]);
        assert_eq!(intervals[2].count_at(900), 5);
        assert_eq!(beyond, 11);
    }
}
