//! The producer: per-partition batching by size and linger, compression, acks, retries.
//!
//! Records go into a per-partition queue of batches (the accumulator). One sender task drains
//! batches that are ready (full, lingered long enough, or flushed), groups them by leader into
//! one Produce request per broker, and keeps at most `max_in_flight_requests_per_connection`
//! requests in flight per broker. With `linger_ms = 0` batches still fill up while requests are
//! in flight, as in the Java client.
//!
//! With `enable_idempotence`, the producer gets a producer id (InitProducerId) and gives each
//! batch a per-partition sequence number when it is first sent; a retried batch keeps its
//! sequence (so the broker drops a duplicate) and goes out alone and in order. When sequences
//! can no longer line up (the broker forgot the producer, or a sequenced batch failed for
//! good), the producer waits for its in-flight requests, bumps its epoch (KIP-360) and numbers
//! the queued batches afresh.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{InitProducerIdRequest, ProduceRequest, ProducerId, TopicName};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use parking_lot::Mutex;
use tokio::sync::{oneshot, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::partitioner::{partition_for_key, NullKeyPartitioning};
use crate::types::{now_ms, Acks, Compression, ProducerRecord, RecordMetadata, TopicPartition};

/// Producer settings; the defaults follow the Java client's.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// `acks`.
    pub acks: Acks,
    /// `batch.size`: a partition's batch is sent once it holds this many bytes.
    pub batch_size_bytes: usize,
    /// `linger.ms`: how long a batch that is not full waits for more records.
    pub linger_ms: u64,
    /// `compression.type`.
    pub compression: Compression,
    /// How many times a batch that failed with a retriable error is sent again (within
    /// `delivery_timeout_ms`, which is the bound that usually ends retrying).
    pub retries: u32,
    /// `retry.backoff.ms`.
    pub retry_backoff_ms: u64,
    /// The produce request's `timeout_ms` (how long the broker may wait for acks=all).
    pub request_timeout_ms: i32,
    /// `buffer.memory`: bytes of records buffered at most; `send` waits when it is reached.
    pub buffer_memory_bytes: usize,
    /// `max.in.flight.requests.per.connection`.
    pub max_in_flight_requests_per_connection: usize,
    /// `max.request.size`: bytes of batches in one Produce request at most.
    pub max_request_size_bytes: usize,
    /// How records with neither key nor partition are spread.
    pub null_key_partitioning: NullKeyPartitioning,
    /// `delivery.timeout.ms`: a record not acknowledged this long after its batch was
    /// created fails with [`Error::DeliveryTimeout`], whatever retries remain.
    pub delivery_timeout_ms: u64,
    /// `enable.idempotence`: retries never write a record twice or out of order. Needs
    /// `acks = all` (the producer uses it whatever `acks` says).
    pub enable_idempotence: bool,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::All,
            batch_size_bytes: 16 * 1024,
            linger_ms: 5,
            compression: Compression::None,
            retries: u32::MAX,
            retry_backoff_ms: 100,
            request_timeout_ms: 30_000,
            buffer_memory_bytes: 32 * 1024 * 1024,
            max_in_flight_requests_per_connection: 5,
            max_request_size_bytes: 1024 * 1024,
            null_key_partitioning: NullKeyPartitioning::Sticky,
            delivery_timeout_ms: 120_000,
            enable_idempotence: false,
        }
    }
}

type DeliverySender = oneshot::Sender<Result<RecordMetadata>>;

/// Resolves when the broker acknowledged (or finally rejected) one record.
#[derive(Debug)]
pub struct DeliveryFuture {
    receiver: oneshot::Receiver<Result<RecordMetadata>>,
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.receiver)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(Error::Closed)))
    }
}

struct Batch {
    tp: TopicPartition,
    records: Vec<Record>,
    waiters: Vec<DeliverySender>,
    size_bytes: usize,
    created: Instant,
    attempts: u32,
    retry_at: Option<Instant>,
    last_error: Option<String>,
    /// Idempotence: the first record's sequence and the producer epoch, once first sent.
    sequence: Option<(i32, i16)>,
    _memory: Option<OwnedSemaphorePermit>,
}

#[derive(Default)]
struct Accumulator {
    queues: HashMap<TopicPartition, VecDeque<Batch>>,
    sticky: HashMap<String, (i32, usize)>,
    round_robin: HashMap<String, i32>,
}

struct Inner {
    client: Client,
    config: ProducerConfig,
    accumulator: Mutex<Accumulator>,
    wake: Notify,
    idle: Notify,
    memory: Arc<Semaphore>,
    in_flight: Mutex<HashMap<i32, Arc<Semaphore>>>,
    outstanding_records: AtomicUsize,
    flushes: AtomicUsize,
    closed: AtomicBool,
    refreshing: AtomicBool,
    /// Producer id, epoch and sequences; `None` without idempotence.
    idempotence: Option<Mutex<IdempotenceState>>,
}

/// The idempotent producer's state.
#[derive(Debug, Default)]
struct IdempotenceState {
    /// Producer id, -1 until InitProducerId answered.
    producer_id: i64,
    epoch: i16,
    /// Sequence of the next new batch per partition.
    next_sequence: HashMap<TopicPartition, i32>,
    /// Sequence the broker expects next per partition (end of the last acknowledged batch).
    acked_sequence: HashMap<TopicPartition, i32>,
    /// Batches in flight per partition.
    in_flight: HashMap<TopicPartition, usize>,
    /// Sequences no longer line up: bump the epoch once nothing is in flight.
    bump_needed: bool,
}

/// An asynchronous, batching producer. Cheap to clone; all clones share one sender task.
///
/// ```no_run
/// # async fn example() -> strom_client::Result<()> {
/// use strom_client::{Client, ClientConfig, Producer, ProducerConfig, ProducerRecord};
/// let client = Client::connect(ClientConfig::new("127.0.0.1:9092")).await?;
/// let producer = Producer::new(client, ProducerConfig::default());
/// let delivery = producer.send(ProducerRecord::new("events", "hello").key("user-1")).await?;
/// let landed = delivery.await?;
/// println!("partition {} offset {}", landed.partition, landed.offset);
/// producer.close().await;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
    _last_clone: Arc<CloseOnDrop>,
}

/// Dropped with the last clone of a [`Producer`]: the sender task sends what is queued and
/// stops (nobody can await those deliveries any more, but the records still go out).
struct CloseOnDrop(Arc<Inner>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.wake.notify_one();
    }
}

impl Producer {
    /// Starts a producer (and its sender task) on `client`. Needs a tokio runtime.
    pub fn new(client: Client, mut config: ProducerConfig) -> Producer {
        if config.enable_idempotence && config.acks != Acks::All {
            tracing::warn!(acks = ?config.acks, "enable_idempotence needs acks=all; using acks=all");
            config.acks = Acks::All;
        }
        let idempotence = config.enable_idempotence.then(|| {
            Mutex::new(IdempotenceState {
                producer_id: -1,
                epoch: -1,
                ..IdempotenceState::default()
            })
        });
        let memory_permits = config.buffer_memory_bytes.clamp(1, Semaphore::MAX_PERMITS);
        let inner = Arc::new(Inner {
            client,
            memory: Arc::new(Semaphore::new(memory_permits)),
            config,
            accumulator: Mutex::new(Accumulator::default()),
            wake: Notify::new(),
            idle: Notify::new(),
            in_flight: Mutex::new(HashMap::new()),
            outstanding_records: AtomicUsize::new(0),
            flushes: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            refreshing: AtomicBool::new(false),
            idempotence,
        });
        tokio::spawn(sender_loop(inner.clone()));
        Producer {
            _last_clone: Arc::new(CloseOnDrop(inner.clone())),
            inner,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ProducerConfig {
        &self.inner.config
    }

    /// Queues `record` and returns a future for its delivery.
    ///
    /// Waits only when the topic's metadata must be loaded or `buffer_memory_bytes` is full.
    /// Records to one partition are sent in order.
    pub async fn send(&self, record: ProducerRecord) -> Result<DeliveryFuture> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        let partition_count = self.partition_count(&record.topic).await?;
        let size_bytes = record.size_estimate_bytes();
        let permits = size_bytes.clamp(1, self.inner.config.buffer_memory_bytes.max(1)) as u32;
        let memory = self
            .inner
            .memory
            .clone()
            .acquire_many_owned(permits)
            .await
            .map_err(|_| Error::Closed)?;
        let (sender, receiver) = oneshot::channel();
        let mut accumulator = self.inner.accumulator.lock();
        let partition = match record.partition {
            Some(p) if p < 0 || p as usize >= partition_count => {
                return Err(Error::UnknownPartition {
                    topic: record.topic,
                    partition: p,
                })
            }
            Some(p) => p,
            None => self.choose_partition(
                &mut accumulator,
                &record,
                partition_count as i32,
                size_bytes,
            ),
        };
        let tp = TopicPartition {
            topic: record.topic,
            partition,
        };
        let timestamp = record.timestamp_ms.unwrap_or_else(now_ms);
        let queue = accumulator.queues.entry(tp.clone()).or_default();
        let batch_size = self.inner.config.batch_size_bytes;
        let needs_new = match queue.back() {
            Some(last) => last.attempts > 0 || last.size_bytes + size_bytes > batch_size,
            None => true,
        };
        if needs_new {
            queue.push_back(Batch {
                tp,
                records: Vec::new(),
                waiters: Vec::new(),
                size_bytes: 0,
                created: Instant::now(),
                attempts: 0,
                retry_at: None,
                last_error: None,
                sequence: None,
                _memory: None,
            });
        }
        let batch = queue.back_mut().expect("a batch was just ensured");
        let index = batch.records.len() as i64;
        batch.records.push(Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: index,
            // Offset minus sequence must be constant within a batch for the encoder; this makes
            // the batch's base sequence -1 (no idempotence).
            sequence: (index - 1) as i32,
            timestamp,
            key: record.key,
            value: record.value,
            headers: record
                .headers
                .into_iter()
                .map(|(k, v)| (StrBytes::from_string(k), v))
                .collect::<IndexMap<_, _>>(),
        });
        batch.waiters.push(sender);
        batch.size_bytes += size_bytes;
        match &mut batch._memory {
            Some(held) => held.merge(memory),
            None => batch._memory = Some(memory),
        }
        let wake = needs_new || batch.size_bytes >= batch_size;
        drop(accumulator);
        self.inner
            .outstanding_records
            .fetch_add(1, Ordering::AcqRel);
        if wake {
            self.inner.wake.notify_one();
        }
        Ok(DeliveryFuture { receiver })
    }

    async fn partition_count(&self, topic: &str) -> Result<usize> {
        if let Some(n) = self.inner.client.cached_partition_count(topic) {
            return Ok(n);
        }
        let info = self.inner.client.topic(topic, true).await?;
        if info.partitions.is_empty() {
            return Err(Error::UnknownTopic(topic.to_string()));
        }
        Ok(info.partitions.len())
    }

    fn choose_partition(
        &self,
        accumulator: &mut Accumulator,
        record: &ProducerRecord,
        count: i32,
        size_bytes: usize,
    ) -> i32 {
        if let Some(key) = &record.key {
            return partition_for_key(key, count);
        }
        match self.inner.config.null_key_partitioning {
            NullKeyPartitioning::RoundRobin => {
                let next = accumulator
                    .round_robin
                    .entry(record.topic.clone())
                    .or_insert_with(|| start_partition(count));
                let partition = *next % count;
                *next = (partition + 1) % count;
                partition
            }
            NullKeyPartitioning::Sticky => {
                let batch_size = self.inner.config.batch_size_bytes;
                let sticky = accumulator
                    .sticky
                    .entry(record.topic.clone())
                    .or_insert_with(|| (start_partition(count), 0));
                if sticky.1 >= batch_size {
                    *sticky = ((sticky.0 + 1) % count, 0);
                }
                sticky.1 += size_bytes;
                sticky.0 % count
            }
        }
    }

    /// Sends everything queued now and waits until every record sent so far is acknowledged
    /// or failed.
    pub async fn flush(&self) {
        self.inner.flushes.fetch_add(1, Ordering::AcqRel);
        self.inner.wake.notify_one();
        loop {
            let idle = self.inner.idle.notified();
            if self.inner.outstanding_records.load(Ordering::Acquire) == 0 {
                break;
            }
            idle.await;
        }
        self.inner.flushes.fetch_sub(1, Ordering::AcqRel);
    }

    /// Flushes, then stops the sender task; later `send`s fail with [`Error::Closed`].
    pub async fn close(&self) {
        self.flush().await;
        self.inner.closed.store(true, Ordering::Release);
        self.inner.wake.notify_one();
    }
}

fn start_partition(count: i32) -> i32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos % count.max(1) as u32) as i32
}

struct Request {
    leader: i32,
    batches: Vec<Batch>,
    permit: OwnedSemaphorePermit,
}

async fn sender_loop(inner: Arc<Inner>) {
    loop {
        let notified = inner.wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let may_send = prepare_idempotence(&inner).await;
        let (requests, mut next_deadline, empty) = drain_ready(&inner, may_send);
        if !may_send {
            let backoff = Instant::now() + Duration::from_millis(inner.config.retry_backoff_ms);
            next_deadline = Some(next_deadline.map_or(backoff, |d| d.min(backoff)));
        }
        for request in requests {
            // Written in order here (so batches of one partition stay in order on the
            // connection); their responses are awaited concurrently.
            let in_flight = start_request(&inner, request).await;
            tokio::spawn(finish_request(inner.clone(), in_flight));
        }
        if empty && inner.closed.load(Ordering::Acquire) {
            return;
        }
        match next_deadline {
            Some(deadline) => {
                tokio::select! {
                    _ = &mut notified => {}
                    _ = tokio::time::sleep_until(deadline) => {}
                }
            }
            None => notified.await,
        }
    }
}

/// Takes the batches that are ready and whose leader has a free in-flight slot, grouped into
/// requests; returns them with the next time something becomes ready and whether the
/// accumulator is empty.
fn drain_ready(inner: &Arc<Inner>, may_send: bool) -> (Vec<Request>, Option<Instant>, bool) {
    let config = &inner.config;
    let now = Instant::now();
    let linger = Duration::from_millis(config.linger_ms);
    let flushing =
        inner.flushes.load(Ordering::Acquire) > 0 || inner.closed.load(Ordering::Acquire);
    let mut requests: HashMap<i32, Request> = HashMap::new();
    let mut blocked: Vec<i32> = Vec::new();
    let mut next_deadline: Option<Instant> = None;
    let mut missing_leader = false;
    let delivery_timeout = Duration::from_millis(config.delivery_timeout_ms);
    let mut accumulator = inner.accumulator.lock();
    for (tp, queue) in accumulator.queues.iter_mut() {
        while queue
            .front()
            .is_some_and(|b| now >= b.created + delivery_timeout)
        {
            let batch = queue.pop_front().expect("front exists");
            let error = delivery_timeout_error(inner, &batch);
            sequence_lost(inner, &batch);
            complete(inner, batch, Err(error));
        }
        let Some(front) = queue.front() else { continue };
        if !may_send || retry_must_wait(inner, front) {
            continue;
        }
        if let Some(retry_at) = front.retry_at.filter(|&t| t > now) {
            next_deadline = Some(next_deadline.map_or(retry_at, |d| d.min(retry_at)));
            continue;
        }
        let ready = flushing
            || queue.len() > 1
            || front.size_bytes >= config.batch_size_bytes
            || now >= front.created + linger;
        if !ready {
            let at = front.created + linger;
            next_deadline = Some(next_deadline.map_or(at, |d| d.min(at)));
            continue;
        }
        let Some(leader) = inner.client.cached_leader(&tp.topic, tp.partition) else {
            missing_leader = true;
            continue;
        };
        if blocked.contains(&leader) {
            continue;
        }
        let request = match requests.entry(leader) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let semaphore = inner
                    .in_flight
                    .lock()
                    .entry(leader)
                    .or_insert_with(|| {
                        Arc::new(Semaphore::new(
                            config.max_in_flight_requests_per_connection.max(1),
                        ))
                    })
                    .clone();
                match semaphore.try_acquire_owned() {
                    Ok(permit) => e.insert(Request {
                        leader,
                        batches: Vec::new(),
                        permit,
                    }),
                    Err(_) => {
                        blocked.push(leader);
                        continue;
                    }
                }
            }
        };
        let request_bytes: usize = request.batches.iter().map(|b| b.size_bytes).sum();
        if !request.batches.is_empty()
            && request_bytes + front.size_bytes > config.max_request_size_bytes
        {
            continue;
        }
        let mut batch = queue.pop_front().expect("front exists");
        stamp_sequence(inner, &mut batch);
        request.batches.push(batch);
    }
    accumulator.queues.retain(|_, q| !q.is_empty());
    let empty = accumulator.queues.is_empty();
    drop(accumulator);
    if missing_leader {
        let backoff = now + Duration::from_millis(config.retry_backoff_ms);
        next_deadline = Some(next_deadline.map_or(backoff, |d| d.min(backoff)));
        refresh_metadata_in_background(inner);
    }
    let requests = requests
        .into_values()
        .filter(|r| !r.batches.is_empty())
        .collect();
    (requests, next_deadline, empty)
}

fn refresh_metadata_in_background(inner: &Arc<Inner>) {
    if inner.refreshing.swap(true, Ordering::AcqRel) {
        return;
    }
    let inner = inner.clone();
    tokio::spawn(async move {
        let topics: Vec<String> = {
            let accumulator = inner.accumulator.lock();
            let mut topics: Vec<String> = accumulator
                .queues
                .keys()
                .map(|tp| tp.topic.clone())
                .collect();
            topics.sort();
            topics.dedup();
            topics
        };
        if let Err(error) = inner.client.refresh_metadata(Some(&topics), true).await {
            tracing::debug!(%error, "producer metadata refresh failed");
        }
        inner.refreshing.store(false, Ordering::Release);
        inner.wake.notify_one();
    });
}

/// Idempotence: gets a producer id, or bumps the epoch once nothing is in flight when
/// sequences no longer line up. Returns whether batches may be sent now.
async fn prepare_idempotence(inner: &Arc<Inner>) -> bool {
    let Some(state) = &inner.idempotence else {
        return true;
    };
    let current = {
        let state = state.lock();
        if state.producer_id >= 0 && !state.bump_needed {
            return true;
        }
        if state.in_flight.values().any(|n| *n > 0) {
            return false;
        }
        (state.producer_id >= 0).then_some((state.producer_id, state.epoch))
    };
    match init_producer_id(inner, current).await {
        Ok((producer_id, epoch)) => {
            tracing::debug!(
                producer_id,
                epoch,
                bumped = current.is_some(),
                "producer id"
            );
            let mut state = state.lock();
            *state = IdempotenceState {
                producer_id,
                epoch,
                ..IdempotenceState::default()
            };
            drop(state);
            // Queued batches are numbered afresh under the new epoch.
            for queue in inner.accumulator.lock().queues.values_mut() {
                for batch in queue.iter_mut() {
                    batch.sequence = None;
                }
            }
            true
        }
        Err(error) => {
            tracing::warn!(%error, "InitProducerId failed; will retry");
            false
        }
    }
}

/// InitProducerId without a transactional id: a new producer id, or (KIP-360, v3+) the same
/// id with a bumped epoch.
async fn init_producer_id(inner: &Inner, current: Option<(i64, i16)>) -> Result<(i64, i16)> {
    let connection = inner.client.any_connection().await?;
    let version = connection
        .version(kafka_protocol::messages::ApiKey::InitProducerId)
        .ok_or_else(|| {
            Error::Invalid(
                "the broker does not support idempotent producers (no InitProducerId)".into(),
            )
        })?;
    let mut request = InitProducerIdRequest::default();
    request.transactional_id = None;
    request.transaction_timeout_ms = 60_000;
    let (producer_id, epoch) = current.filter(|_| version >= 3).unwrap_or((-1, -1));
    request.producer_id = ProducerId(producer_id);
    request.producer_epoch = epoch;
    let (_, response) = connection.send(&request).await?;
    crate::error::check(response.error_code, || "InitProducerId".to_string(), None)?;
    Ok((response.producer_id.0, response.producer_epoch))
}

/// Idempotence: a batch that already has a sequence is a retry; it goes out only when nothing
/// else of its partition is in flight, so retries reach the broker in sequence order.
fn retry_must_wait(inner: &Inner, front: &Batch) -> bool {
    let Some(state) = &inner.idempotence else {
        return false;
    };
    front.sequence.is_some()
        && state
            .lock()
            .in_flight
            .get(&front.tp)
            .is_some_and(|n| *n > 0)
}

/// Idempotence: gives a batch leaving the accumulator its sequence (kept across retries) and
/// counts it in flight.
fn stamp_sequence(inner: &Inner, batch: &mut Batch) {
    let Some(state) = &inner.idempotence else {
        return;
    };
    let mut state = state.lock();
    let (base, epoch) = match batch.sequence {
        Some(sequence) => sequence,
        None => {
            let next = state.next_sequence.entry(batch.tp.clone()).or_insert(0);
            let base = *next;
            *next = next.wrapping_add(batch.records.len() as i32) & i32::MAX;
            (base, state.epoch)
        }
    };
    batch.sequence = Some((base, epoch));
    for (i, record) in batch.records.iter_mut().enumerate() {
        record.producer_id = state.producer_id;
        record.producer_epoch = epoch;
        record.sequence = base.wrapping_add(i as i32);
    }
    *state.in_flight.entry(batch.tp.clone()).or_insert(0) += 1;
}

/// Idempotence: a sequenced batch failed for good, leaving a gap the broker will never see
/// filled: bump the epoch before sending more.
fn sequence_lost(inner: &Inner, batch: &Batch) {
    if let (Some(state), Some(_)) = (&inner.idempotence, batch.sequence) {
        state.lock().bump_needed = true;
    }
}

/// Kafka error codes the idempotent producer handles itself.
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
const UNKNOWN_PRODUCER_ID: i16 = 59;

/// What to do with an idempotent batch that failed with `error`.
enum SequenceVerdict {
    /// Not an idempotence matter: the usual retry rules.
    Usual,
    /// The broker already has it (a retry of a written batch).
    Written,
    /// Send again (same sequence), whatever `retries` says: an earlier batch's failure
    /// caused this one's, or the epoch is being bumped.
    Again,
}

fn sequence_verdict(inner: &Inner, batch: &Batch, error: &Error) -> SequenceVerdict {
    let (Some(state), Some((base, _))) = (&inner.idempotence, batch.sequence) else {
        return SequenceVerdict::Usual;
    };
    match error.kafka_code().map(|c| c.code()) {
        Some(DUPLICATE_SEQUENCE_NUMBER) => SequenceVerdict::Written,
        Some(OUT_OF_ORDER_SEQUENCE_NUMBER | UNKNOWN_PRODUCER_ID) => {
            let mut state = state.lock();
            let expected = state.acked_sequence.get(&batch.tp).copied().unwrap_or(0);
            if base == expected || error.kafka_code().map(|c| c.code()) == Some(UNKNOWN_PRODUCER_ID)
            {
                // The broker lost this producer's state (KIP-360): new epoch, new sequences.
                state.bump_needed = true;
            }
            SequenceVerdict::Again
        }
        _ => SequenceVerdict::Usual,
    }
}

fn encode_batch(batch: &Batch, compression: Compression) -> Result<Bytes> {
    let mut buf = BytesMut::with_capacity(batch.size_bytes + 64);
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, batch.records.iter(), &options).map_err(|e| {
        Error::Invalid(format!(
            "cannot encode a record batch for {}: {e}",
            batch.tp
        ))
    })?;
    Ok(buf.freeze())
}

fn build_request(inner: &Inner, batches: &[Batch]) -> Result<ProduceRequest> {
    let mut topics: IndexMap<String, Vec<PartitionProduceData>> = IndexMap::new();
    for batch in batches {
        let mut data = PartitionProduceData::default();
        data.index = batch.tp.partition;
        data.records = Some(encode_batch(batch, inner.config.compression)?);
        topics.entry(batch.tp.topic.clone()).or_default().push(data);
    }
    let mut request = ProduceRequest::default();
    request.acks = inner.config.acks.wire();
    request.timeout_ms = inner.config.request_timeout_ms;
    request.topic_data = topics
        .into_iter()
        .map(|(name, partition_data)| {
            let mut topic = TopicProduceData::default();
            topic.name = TopicName(StrBytes::from_string(name));
            topic.partition_data = partition_data;
            topic
        })
        .collect();
    Ok(request)
}

type Failed = Vec<(Batch, Error)>;

enum Started {
    /// Waiting for the broker's answer.
    Waiting(
        crate::connection::InFlight<kafka_protocol::messages::ProduceResponse>,
        Vec<Batch>,
        OwnedSemaphorePermit,
    ),
    /// Done without an answer (acks=0) or failed before one.
    Done(Failed, OwnedSemaphorePermit),
}

fn fail_all(batches: Vec<Batch>, error: &Error) -> Failed {
    batches
        .into_iter()
        .map(|b| (b, error.duplicate()))
        .collect()
}

async fn start_request(inner: &Arc<Inner>, request: Request) -> Started {
    let Request {
        leader,
        batches,
        permit,
    } = request;
    let produce = match build_request(inner, &batches) {
        Ok(produce) => produce,
        Err(error) => return Started::Done(fail_all(batches, &error), permit),
    };
    let connection = match inner.client.connection(leader).await {
        Ok(connection) => connection,
        Err(error) => return Started::Done(fail_all(batches, &error), permit),
    };
    if inner.config.acks == Acks::None {
        if let Err(error) = connection.send_no_response(&produce).await {
            return Started::Done(fail_all(batches, &error), permit);
        }
        for batch in batches {
            complete(inner, batch, Ok((-1, -1)));
        }
        return Started::Done(Vec::new(), permit);
    }
    let timeout_ms =
        inner.client.config().request_timeout_ms + inner.config.request_timeout_ms.max(0) as u64;
    match connection.start(&produce, timeout_ms).await {
        Ok(in_flight) => Started::Waiting(in_flight, batches, permit),
        Err(error) => Started::Done(fail_all(batches, &error), permit),
    }
}

async fn finish_request(inner: Arc<Inner>, started: Started) {
    let sent: Vec<TopicPartition> = match &started {
        Started::Done(failed, _) => failed.iter().map(|(b, _)| b.tp.clone()).collect(),
        Started::Waiting(_, batches, _) => batches.iter().map(|b| b.tp.clone()).collect(),
    };
    let (failed, permit) = match started {
        Started::Done(failed, permit) => (failed, permit),
        Started::Waiting(in_flight, batches, permit) => match in_flight.response().await {
            Ok(response) => (apply_response(&inner, response, batches), permit),
            Err(error) => (fail_all(batches, &error), permit),
        },
    };
    let mut retry = Vec::new();
    let mut refresh = false;
    let delivery_timeout = Duration::from_millis(inner.config.delivery_timeout_ms);
    for (mut batch, error) in failed {
        let expired = Instant::now() >= batch.created + delivery_timeout;
        let verdict = sequence_verdict(&inner, &batch, &error);
        if matches!(verdict, SequenceVerdict::Written) {
            complete(&inner, batch, Ok((-1, -1)));
            continue;
        }
        let again = matches!(verdict, SequenceVerdict::Again);
        if expired && (again || error.is_retriable()) {
            batch.last_error = Some(error.to_string());
            let error = delivery_timeout_error(&inner, &batch);
            sequence_lost(&inner, &batch);
            complete(&inner, batch, Err(error));
            continue;
        }
        let retriable = again || (error.is_retriable() && batch.attempts < inner.config.retries);
        if retriable && !inner.closed.load(Ordering::Acquire) {
            tracing::debug!(%error, tp = %batch.tp, attempt = batch.attempts + 1, "produce failed; will retry");
            refresh |= error.needs_metadata_refresh();
            batch.attempts += 1;
            batch.last_error = Some(error.to_string());
            batch.retry_at =
                Some(Instant::now() + Duration::from_millis(inner.config.retry_backoff_ms));
            retry.push(batch);
        } else {
            sequence_lost(&inner, &batch);
            complete(&inner, batch, Err(error));
        }
    }
    if !retry.is_empty() {
        let mut accumulator = inner.accumulator.lock();
        for batch in retry.into_iter().rev() {
            let queue = accumulator.queues.entry(batch.tp.clone()).or_default();
            // Retries go back in sequence order (ahead of batches not sent yet).
            let at = match batch.sequence {
                Some((base, _)) => queue
                    .iter()
                    .position(|b| b.sequence.is_none_or(|(s, _)| s > base))
                    .unwrap_or(queue.len()),
                None => 0,
            };
            queue.insert(at, batch);
        }
    }
    if let Some(state) = &inner.idempotence {
        let mut state = state.lock();
        for tp in sent {
            if let Some(n) = state.in_flight.get_mut(&tp) {
                *n = n.saturating_sub(1);
            }
        }
    }
    if refresh {
        refresh_metadata_in_background(&inner);
    }
    drop(permit);
    inner.wake.notify_one();
}

/// Completes the batches the broker accepted; returns the rest with their errors.
fn apply_response(
    inner: &Inner,
    response: kafka_protocol::messages::ProduceResponse,
    batches: Vec<Batch>,
) -> Failed {
    // (topic, partition) -> (error code, base offset, log append time, error message)
    type PartitionResult = (i16, i64, i64, Option<String>);
    let mut results: HashMap<(String, i32), PartitionResult> = HashMap::new();
    for topic in response.responses {
        for p in topic.partition_responses {
            let message = p.error_message.map(|m| m.to_string());
            results.insert(
                (topic.name.0.to_string(), p.index),
                (p.error_code, p.base_offset, p.log_append_time_ms, message),
            );
        }
    }
    let mut failed = Vec::new();
    for batch in batches {
        match results.remove(&(batch.tp.topic.clone(), batch.tp.partition)) {
            Some((0, base_offset, log_append_time_ms, _)) => {
                complete(inner, batch, Ok((base_offset, log_append_time_ms)))
            }
            Some((code, _, _, message)) => {
                let context = format!("produce to {}", batch.tp);
                failed.push((batch, Error::kafka(code, context, message)));
            }
            None => {
                let error =
                    Error::Protocol(format!("produce response has no result for {}", batch.tp));
                failed.push((batch, error));
            }
        }
    }
    failed
}

fn delivery_timeout_error(inner: &Inner, batch: &Batch) -> Error {
    Error::DeliveryTimeout {
        tp: batch.tp.to_string(),
        timeout_ms: inner.config.delivery_timeout_ms,
        last_error: batch.last_error.clone(),
    }
}

fn complete(inner: &Inner, batch: Batch, result: Result<(i64, i64)>) {
    let count = batch.waiters.len();
    if let (Some(state), Some((base, epoch)), Ok(_)) = (&inner.idempotence, batch.sequence, &result)
    {
        let mut state = state.lock();
        if state.epoch == epoch {
            state
                .acked_sequence
                .insert(batch.tp.clone(), base.wrapping_add(count as i32) & i32::MAX);
        }
    }
    match result {
        Ok((base_offset, log_append_time_ms)) => {
            for (i, (waiter, record)) in batch
                .waiters
                .into_iter()
                .zip(batch.records.iter())
                .enumerate()
            {
                let _ = waiter.send(Ok(RecordMetadata {
                    topic: batch.tp.topic.clone(),
                    partition: batch.tp.partition,
                    offset: if base_offset < 0 {
                        -1
                    } else {
                        base_offset + i as i64
                    },
                    timestamp_ms: if log_append_time_ms >= 0 {
                        log_append_time_ms
                    } else {
                        record.timestamp
                    },
                }));
            }
        }
        Err(error) => {
            for waiter in batch.waiters {
                let _ = waiter.send(Err(error.duplicate()));
            }
        }
    }
    if inner.outstanding_records.fetch_sub(count, Ordering::AcqRel) == count {
        inner.idle.notify_waiters();
    }
}
