//! The producer: per-partition batching by size and linger, compression, acks, retries.
//!
//! Records go into a per-partition queue of batches (the accumulator). One sender task drains
//! batches that are ready (full, lingered long enough, or flushed), groups them by leader into
//! one Produce request per broker, and keeps at most `max_in_flight_requests_per_connection`
//! requests in flight per broker. With `linger_ms = 0` batches still fill up while requests are
//! in flight, as in the Java client.
//!
//! A record costs no allocation of its own: `send` encodes it straight into its batch's buffer
//! (record format v2, in `record_batch.rs`), reserved at `batch_size_bytes` and charged to
//! `buffer_memory_bytes` as a whole when the batch opens (so a full buffer makes `send` wait,
//! and makes every batch ready to go). The batch header (and compression) is
//! written when the batch first leaves; retries resend the same bytes. The records of a batch
//! share one completion, which their [`DeliveryFuture`]s hold. [`Producer::send_many_ref`]
//! queues many records under one hold of the accumulator's lock and returns one
//! [`BatchDelivery`] per run of them in one batch, so the per-record lock, unlock and
//! reference count of `send_ref` (three atomic read-modify-writes, each a full fence behind
//! the record's freshly written bytes) become per-call and per-batch costs.
//!
//! With `enable_idempotence`, the producer gets a producer id (InitProducerId) and gives each
//! batch a per-partition sequence number when it is first sent; a retried batch keeps its
//! sequence (so the broker drops a duplicate) and goes out alone and in order. When sequences
//! can no longer line up (the broker forgot the producer, or a sequenced batch failed for
//! good), the producer waits for its in-flight requests, bumps its epoch (KIP-360) and numbers
//! the queued batches afresh. Stamping a batch patches its header (producer id, epoch, base
//! sequence) and CRC only.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use indexmap::IndexMap;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{InitProducerIdRequest, ProduceRequest, ProducerId, TopicName};
use kafka_protocol::protocol::StrBytes;
use parking_lot::Mutex;
use strom_protocol::record_batch::BATCH_HEADER_SIZE_BYTES;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::time::Instant;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::partitioner::{partition_for_key, NullKeyPartitioning};
use crate::record_batch::{self, ProducerStamp, RecordBatchBuilder};
use crate::types::{
    now_ms, Acks, Compression, ProducerRecord, RecordMetadata, RecordRef, TopicPartition,
};

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

/// One batch's outcome, shared by the delivery futures of its records: set once, when the
/// broker acknowledged the batch or it failed for good.
struct Completion {
    tp: TopicPartition,
    done: OnceLock<Done>,
    wakers: Mutex<Vec<Waker>>,
}

struct Done {
    /// Base offset and log append time, or the failure.
    result: Result<(i64, i64)>,
    at: std::time::Instant,
}

impl Completion {
    fn new(tp: TopicPartition) -> Completion {
        Completion {
            tp,
            done: OnceLock::new(),
            wakers: Mutex::new(Vec::new()),
        }
    }

    /// Sets the outcome (the first one wins) and wakes every waiting delivery future.
    fn set(&self, result: Result<(i64, i64)>) {
        let at = std::time::Instant::now();
        if self.done.set(Done { result, at }).is_ok() {
            let wakers = std::mem::take(&mut *self.wakers.lock());
            for waker in wakers {
                waker.wake();
            }
        }
    }
}

/// A handle on a batch's completion that a future polls: registers its waker once, in a
/// slot of the completion's list, and updates it there.
struct CompletionHandle {
    completion: Arc<Completion>,
    /// Where this handle's waker sits in the completion's list, once registered.
    slot: u32,
}

/// `CompletionHandle::slot` before the handle registered a waker.
const NO_SLOT: u32 = u32::MAX;

impl CompletionHandle {
    fn new(completion: Arc<Completion>) -> CompletionHandle {
        CompletionHandle {
            completion,
            slot: NO_SLOT,
        }
    }

    /// Ready once the outcome is in (`completion.done`); until then, registers `cx`'s
    /// waker.
    fn poll_done(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let completion = &*self.completion;
        if completion.done.get().is_some() {
            return Poll::Ready(());
        }
        let mut wakers = completion.wakers.lock();
        // Checked again under the lock: `set` takes the wakers after setting the outcome.
        if completion.done.get().is_some() {
            return Poll::Ready(());
        }
        match wakers.get_mut(self.slot as usize) {
            Some(waker) => {
                if !waker.will_wake(cx.waker()) {
                    *waker = cx.waker().clone();
                }
            }
            None => {
                self.slot = wakers.len() as u32;
                wakers.push(cx.waker().clone());
            }
        }
        Poll::Pending
    }

    fn completed_at(&self) -> Option<std::time::Instant> {
        self.completion.done.get().map(|d| d.at)
    }

    /// Once the outcome is in: where the batch's record `index` landed, or the batch's error.
    fn poll_landed(&mut self, cx: &mut Context<'_>, index: u32) -> Poll<Result<Landed>> {
        if self.poll_done(cx).is_pending() {
            return Poll::Pending;
        }
        let completion = &*self.completion;
        let Some(done) = completion.done.get() else {
            return Poll::Pending;
        };
        Poll::Ready(match &done.result {
            Ok((base_offset, log_append_time_ms)) => Ok(Landed {
                topic: completion.tp.topic.clone(),
                partition: completion.tp.partition,
                offset: if *base_offset < 0 {
                    -1
                } else {
                    base_offset + i64::from(index)
                },
                log_append_time_ms: (*log_append_time_ms >= 0).then_some(*log_append_time_ms),
            }),
            Err(error) => Err(error.duplicate()),
        })
    }
}

/// Where a record of a completed batch landed: what [`RecordMetadata`] and
/// [`RecordsMetadata`] are made of.
struct Landed {
    topic: String,
    partition: i32,
    /// The record's offset, or -1 with `acks=0`.
    offset: i64,
    /// The broker's append time with `LogAppendTime` topics.
    log_append_time_ms: Option<i64>,
}

/// Resolves when the broker acknowledged (or finally rejected) one record.
///
/// The records of one batch share one completion, so a future costs no allocation; dropping
/// it does not cancel the record.
pub struct DeliveryFuture {
    handle: CompletionHandle,
    index: u32,
    timestamp_ms: i64,
}

impl std::fmt::Debug for DeliveryFuture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryFuture")
            .field("tp", &self.handle.completion.tp)
            .field("index", &self.index)
            .field("done", &self.handle.completed_at().is_some())
            .finish()
    }
}

impl DeliveryFuture {
    /// Whether `other`'s record travels in the same batch as this one (so both resolve at the
    /// same moment, with the same outcome).
    pub fn same_batch(&self, other: &DeliveryFuture) -> bool {
        Arc::ptr_eq(&self.handle.completion, &other.handle.completion)
    }

    /// When the producer learned the outcome of this record's batch (its acknowledgement or
    /// final failure); `None` while it is pending.
    pub fn completed_at(&self) -> Option<std::time::Instant> {
        self.handle.completed_at()
    }
}

impl Future for DeliveryFuture {
    type Output = Result<RecordMetadata>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let timestamp_ms = this.timestamp_ms;
        this.handle
            .poll_landed(cx, this.index)
            .map_ok(|landed| RecordMetadata {
                topic: landed.topic,
                partition: landed.partition,
                offset: landed.offset,
                timestamp_ms: landed.log_append_time_ms.unwrap_or(timestamp_ms),
            })
    }
}

/// Resolves when the broker acknowledged (or finally rejected) a run of consecutive records
/// of one [`Producer::send_many_ref`] call that travel in one batch: the records
/// `first_index()..first_index() + count()` of the call.
///
/// Costs no allocation (the batch's records share one completion); dropping it does not
/// cancel the records.
pub struct BatchDelivery {
    handle: CompletionHandle,
    /// The run's first record: its index among the call's records.
    first: usize,
    /// Records in the run.
    count: usize,
    /// The run's first record: its index in the batch.
    index: u32,
}

/// Where a run of records sent with [`Producer::send_many_ref`] landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordsMetadata {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The first record's offset (the others follow it one by one), or -1 with `acks=0`.
    pub offset: i64,
    /// Records in the run.
    pub count: usize,
    /// The broker's append time with `LogAppendTime` topics (every record of the run has
    /// it); `None` when the records keep their create times.
    pub log_append_time_ms: Option<i64>,
}

impl std::fmt::Debug for BatchDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchDelivery")
            .field("tp", &self.handle.completion.tp)
            .field("first", &self.first)
            .field("count", &self.count)
            .field("done", &self.handle.completed_at().is_some())
            .finish()
    }
}

impl BatchDelivery {
    /// The index of the run's first record among the records passed to `send_many_ref`.
    pub fn first_index(&self) -> usize {
        self.first
    }

    /// How many records the run holds (at least 1).
    pub fn count(&self) -> usize {
        self.count
    }

    /// The partition the run's records go to.
    pub fn topic_partition(&self) -> &TopicPartition {
        &self.handle.completion.tp
    }

    /// Whether `other`'s records travel in the same batch as this run (so both resolve at
    /// the same moment, with the same outcome).
    pub fn same_batch(&self, other: &BatchDelivery) -> bool {
        Arc::ptr_eq(&self.handle.completion, &other.handle.completion)
    }

    /// When the producer learned the outcome of the run's batch (its acknowledgement or
    /// final failure); `None` while it is pending.
    pub fn completed_at(&self) -> Option<std::time::Instant> {
        self.handle.completed_at()
    }
}

impl Future for BatchDelivery {
    type Output = Result<RecordsMetadata>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let count = this.count;
        this.handle
            .poll_landed(cx, this.index)
            .map_ok(|landed| RecordsMetadata {
                topic: landed.topic,
                partition: landed.partition,
                offset: landed.offset,
                count,
                log_append_time_ms: landed.log_append_time_ms,
            })
    }
}

/// A batch's records: encoded as they arrive, then (once first sent) the finished batch,
/// which retries resend.
enum BatchData {
    Open(RecordBatchBuilder),
    Closed(Bytes),
}

struct Batch {
    tp: TopicPartition,
    data: BatchData,
    record_count: usize,
    /// Bytes the batch may grow to (what it holds of `buffer_memory_bytes`).
    limit_bytes: usize,
    completion: Arc<Completion>,
    created: Instant,
    attempts: u32,
    retry_at: Option<Instant>,
    last_error: Option<String>,
    /// Idempotence: the first record's sequence and the producer epoch, once first sent.
    sequence: Option<(i32, i16)>,
    /// Idempotence: the producer id the sequence belongs to.
    producer_id: i64,
    _memory: Option<OwnedSemaphorePermit>,
}

impl Batch {
    fn size_bytes(&self) -> usize {
        match &self.data {
            BatchData::Open(builder) => builder.size_bytes(),
            BatchData::Closed(bytes) => bytes.len(),
        }
    }

    /// The batch's bytes as they go out now: finished (and compressed) the first time, and
    /// stamped with the producer id, epoch and sequence the batch has (the same bytes again
    /// for a retry with the same sequence).
    fn encoded(&mut self, compression: Compression) -> Result<Bytes> {
        let stamp = match self.sequence {
            Some((base_sequence, producer_epoch)) => ProducerStamp {
                producer_id: self.producer_id,
                producer_epoch,
                base_sequence,
            },
            None => ProducerStamp::NONE,
        };
        let bytes = match std::mem::replace(&mut self.data, BatchData::Closed(Bytes::new())) {
            BatchData::Open(builder) => builder.finish(compression, stamp).map_err(|e| {
                Error::Invalid(format!("cannot encode a record batch for {}: {e}", self.tp))
            })?,
            BatchData::Closed(bytes) => record_batch::restamp(bytes, stamp),
        };
        self.data = BatchData::Closed(bytes.clone());
        Ok(bytes)
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // A batch dropped unfinished (the producer went away): its records fail.
        self.completion.set(Err(Error::Closed));
    }
}

/// The batches of one partition.
#[derive(Default)]
struct PartitionQueue {
    batches: VecDeque<Batch>,
    /// Whether the partition is in `Accumulator::active`.
    active: bool,
}

/// A topic's queues and partitioner state.
struct TopicQueues {
    name: String,
    partition_count: usize,
    /// Sends left before the partition count is read from the metadata cache again (0: at
    /// the next send; also after every new batch).
    sends_until_check: u32,
    partitions: Vec<PartitionQueue>,
    /// Sticky partitioner: the partition and the bytes sent to it.
    sticky: Option<(i32, usize)>,
    round_robin: Option<i32>,
}

/// How many sends may go by on a cached partition count.
const SENDS_PER_PARTITION_COUNT_CHECK: u32 = 256;

#[derive(Default)]
struct Accumulator {
    topics: Vec<TopicQueues>,
    by_name: HashMap<String, usize>,
    /// The topic of the last send (most sends go where the last one went).
    last_topic: usize,
    /// Partitions with queued batches: (topic index, partition).
    active: Vec<(usize, i32)>,
    /// Where the next drain starts in `active` (so every partition gets its turn at the
    /// front of a request).
    drain_start: usize,
}

impl Accumulator {
    /// The topic's index if it is known and its partition count need not be checked now.
    fn lookup(&mut self, name: &str) -> Option<usize> {
        let index = match self.topics.get(self.last_topic) {
            Some(t) if t.name == name => self.last_topic,
            _ => *self.by_name.get(name)?,
        };
        self.last_topic = index;
        let topic = &mut self.topics[index];
        if topic.sends_until_check == 0 {
            return None;
        }
        topic.sends_until_check -= 1;
        Some(index)
    }

    /// Records the topic's partition count (adding the topic if new).
    fn set_partition_count(&mut self, name: &str, count: usize) -> usize {
        let index = match self.by_name.get(name) {
            Some(&i) => i,
            None => {
                self.topics.push(TopicQueues {
                    name: name.to_string(),
                    partition_count: 0,
                    sends_until_check: 0,
                    partitions: Vec::new(),
                    sticky: None,
                    round_robin: None,
                });
                self.by_name.insert(name.to_string(), self.topics.len() - 1);
                self.topics.len() - 1
            }
        };
        let topic = &mut self.topics[index];
        topic.partition_count = count;
        if topic.partitions.len() < count {
            topic.partitions.resize_with(count, PartitionQueue::default);
        }
        topic.sends_until_check = SENDS_PER_PARTITION_COUNT_CHECK;
        self.last_topic = index;
        index
    }

    fn queue(&mut self, tp: &TopicPartition) -> Option<&mut PartitionQueue> {
        let &topic = self.by_name.get(&tp.topic)?;
        let queue = self.topics[topic]
            .partitions
            .get_mut(usize::try_from(tp.partition).ok()?)?;
        if !queue.active {
            queue.active = true;
            self.active.push((topic, tp.partition));
        }
        Some(queue)
    }

    fn batches_mut(&mut self) -> impl Iterator<Item = &mut Batch> {
        self.topics
            .iter_mut()
            .flat_map(|t| t.partitions.iter_mut())
            .flat_map(|q| q.batches.iter_mut())
    }
}

struct Inner {
    client: Client,
    config: ProducerConfig,
    accumulator: Mutex<Accumulator>,
    wake: Notify,
    idle: Notify,
    memory: Arc<Semaphore>,
    /// Sends waiting for `memory`: every batch is ready then, so memory comes back.
    memory_waiters: AtomicUsize,
    in_flight: Mutex<HashMap<i32, Arc<Semaphore>>>,
    /// Batches created and not completed yet.
    outstanding_batches: AtomicUsize,
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
            memory_waiters: AtomicUsize::new(0),
            config,
            accumulator: Mutex::new(Accumulator::default()),
            wake: Notify::new(),
            idle: Notify::new(),
            in_flight: Mutex::new(HashMap::new()),
            outstanding_batches: AtomicUsize::new(0),
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
        self.send_ref(record.borrowed()).await
    }

    /// [`send`](Self::send) for a borrowed record: the record is encoded into its batch
    /// right away, so nothing of it is kept (or allocated) per record.
    pub async fn send_ref(&self, record: RecordRef<'_>) -> Result<DeliveryFuture> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        check_sizes(&record)?;
        let timestamp = record.timestamp_ms.unwrap_or_else(now_ms);
        let mut state = SendState::new(&record);
        let inner = &*self.inner;
        loop {
            // The guard is dropped before any await (it must not live across one).
            let waiting = {
                let mut accumulator = inner.accumulator.lock();
                match append(inner, &mut accumulator, &record, timestamp, &mut state)? {
                    Appended::Done {
                        completion,
                        index,
                        wake,
                    } => {
                        let completion = completion.clone();
                        drop(accumulator);
                        if wake {
                            inner.wake.notify_one();
                        }
                        return Ok(DeliveryFuture {
                            handle: CompletionHandle::new(completion),
                            index,
                            timestamp_ms: timestamp,
                        });
                    }
                    Appended::NeedsPartitionCount => Waiting::PartitionCount,
                    Appended::NeedsMemory(permits) => Waiting::Memory(permits),
                }
            };
            match waiting {
                Waiting::PartitionCount => {
                    state.partition_count = Some(self.partition_count(record.topic).await?);
                }
                Waiting::Memory(permits) => {
                    state.memory = Some(self.wait_for_memory(permits).await?);
                }
            }
        }
    }

    /// Queues `records` in order, like [`send_ref`](Self::send_ref) each, and pushes onto
    /// `deliveries` one [`BatchDelivery`] per run of consecutive records that share a batch
    /// (rather than a future per record).
    ///
    /// Cheaper per record than `send_ref`: the accumulator's lock is taken once per up to
    /// [`RECORDS_PER_LOCK_MAX`] records, a run's delivery is one shared handle, and the
    /// sender is woken once per call for the batches that filled up or opened. Records
    /// without a timestamp get the time of the call (read again after a wait).
    ///
    /// Partitions, ordering, back-pressure and errors are those of `send_ref`: when
    /// `buffer_memory_bytes` runs out midway, the records queued so far stay queued (their
    /// deliveries are in `deliveries`), the call waits for memory and goes on with the next
    /// record, so no record is queued twice or skipped. A record too large for a batch fails
    /// the call before anything is queued. Any other error (an unknown topic or partition, a
    /// closed producer) leaves `deliveries` holding the runs of the records queued before
    /// the one that failed: `deliveries` grew by runs covering exactly the first `n`
    /// records, and the rest were not queued. The same holds if the call is cancelled while
    /// it waits. `deliveries` is only appended to, so it can be reused across calls.
    ///
    /// ```no_run
    /// # async fn example(producer: strom_client::Producer) -> strom_client::Result<()> {
    /// use strom_client::RecordRef;
    /// let values = [b"a", b"b", b"c"];
    /// let records: Vec<RecordRef<'_>> = values.iter().map(|v| RecordRef::new("events", *v)).collect();
    /// let mut deliveries = Vec::new();
    /// producer.send_many_ref(&records, &mut deliveries).await?;
    /// for delivery in deliveries {
    ///     let landed = delivery.await?;
    ///     println!("{} records from offset {}", landed.count, landed.offset);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn send_many_ref(
        &self,
        records: &[RecordRef<'_>],
        deliveries: &mut Vec<BatchDelivery>,
    ) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        for record in records {
            check_sizes(record)?;
        }
        let Some(first) = records.first() else {
            return Ok(());
        };
        let mut run = RunState {
            next: 0,
            runs_from: deliveries.len(),
            state: SendState::new(first),
            now_ms: None,
        };
        while run.next < records.len() {
            let waiting = self.append_run(records, &mut run, deliveries)?;
            let Some(waiting) = waiting else { continue };
            let topic = records[run.next].topic;
            match waiting {
                Waiting::PartitionCount => {
                    run.state.partition_count = Some(self.partition_count(topic).await?)
                }
                Waiting::Memory(permits) => {
                    run.state.memory = Some(self.wait_for_memory(permits).await?);
                }
            }
            // A wait may have been long: records without a timestamp take the time after it.
            run.now_ms = None;
        }
        Ok(())
    }

    /// Appends `records[run.next..]` under one hold of the accumulator's lock (at most
    /// [`RECORDS_PER_LOCK_MAX`] of them), until they are all queued or one must wait.
    fn append_run(
        &self,
        records: &[RecordRef<'_>],
        run: &mut RunState,
        deliveries: &mut Vec<BatchDelivery>,
    ) -> Result<Option<Waiting>> {
        let inner = &*self.inner;
        let mut accumulator = inner.accumulator.lock();
        let mut wake = false;
        let end = records.len().min(run.next + RECORDS_PER_LOCK_MAX);
        let mut outcome = Ok(None);
        while run.next < end {
            let record = &records[run.next];
            let timestamp = match record.timestamp_ms {
                Some(timestamp) => timestamp,
                None => *run.now_ms.get_or_insert_with(now_ms),
            };
            match append(inner, &mut accumulator, record, timestamp, &mut run.state) {
                Ok(Appended::Done {
                    completion,
                    index,
                    wake: batch_wake,
                }) => {
                    wake |= batch_wake;
                    let i = run.next;
                    let own_runs = deliveries.len() > run.runs_from;
                    match deliveries.last_mut() {
                        Some(last)
                            if own_runs && Arc::ptr_eq(&last.handle.completion, completion) =>
                        {
                            debug_assert_eq!(last.first + last.count, i);
                            last.count += 1;
                        }
                        _ => deliveries.push(BatchDelivery {
                            handle: CompletionHandle::new(completion.clone()),
                            first: i,
                            count: 1,
                            index,
                        }),
                    }
                    run.next += 1;
                    if let Some(record) = records.get(run.next) {
                        run.state = SendState::new(record);
                    }
                }
                Ok(Appended::NeedsPartitionCount) => {
                    outcome = Ok(Some(Waiting::PartitionCount));
                    break;
                }
                Ok(Appended::NeedsMemory(permits)) => {
                    outcome = Ok(Some(Waiting::Memory(permits)));
                    break;
                }
                Err(error) => {
                    outcome = Err(error);
                    break;
                }
            }
        }
        drop(accumulator);
        if wake {
            inner.wake.notify_one();
        }
        outcome
    }

    /// Waits for `permits` bytes of `buffer_memory_bytes`; meanwhile every batch counts as
    /// ready, so the sender frees memory.
    async fn wait_for_memory(&self, permits: usize) -> Result<OwnedSemaphorePermit> {
        let inner = &self.inner;
        inner.memory_waiters.fetch_add(1, Ordering::AcqRel);
        inner.wake.notify_one();
        let permit = inner
            .memory
            .clone()
            .acquire_many_owned(permits as u32)
            .await;
        inner.memory_waiters.fetch_sub(1, Ordering::AcqRel);
        permit.map_err(|_| Error::Closed)
    }

    async fn partition_count(&self, topic: &str) -> Result<usize> {
        if let Some(n) = self.inner.client.cached_partition_count(topic) {
            if n > 0 {
                return Ok(n);
            }
        }
        let info = self.inner.client.topic(topic, true).await?;
        if info.partitions.is_empty() {
            return Err(Error::UnknownTopic(topic.to_string()));
        }
        Ok(info.partitions.len())
    }

    /// Sends everything queued now and waits until every record sent so far is acknowledged
    /// or failed.
    pub async fn flush(&self) {
        self.inner.flushes.fetch_add(1, Ordering::AcqRel);
        self.inner.wake.notify_one();
        loop {
            let idle = self.inner.idle.notified();
            if self.inner.outstanding_batches.load(Ordering::Acquire) == 0 {
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

/// What a send has found out so far.
struct SendState {
    partition: Option<i32>,
    /// The topic's partition count, just loaded.
    partition_count: Option<usize>,
    /// Memory for a new batch, waited for.
    memory: Option<OwnedSemaphorePermit>,
}

impl SendState {
    fn new(record: &RecordRef<'_>) -> SendState {
        SendState {
            partition: record.partition,
            partition_count: None,
            memory: None,
        }
    }
}

/// How far a [`Producer::send_many_ref`] call is.
struct RunState {
    /// The index of the next record to queue.
    next: usize,
    /// `deliveries` had this many entries when the call began (runs extend only its own).
    runs_from: usize,
    /// The send state of the next record.
    state: SendState,
    /// The call's time, for records without a timestamp; read when first needed.
    now_ms: Option<i64>,
}

/// What a send waits for before it can go on.
enum Waiting {
    PartitionCount,
    Memory(usize),
}

/// Records [`Producer::send_many_ref`] appends under one hold of the accumulator's lock at
/// most (so the sender is not kept from draining for long).
pub const RECORDS_PER_LOCK_MAX: usize = 256;

enum Appended<'a> {
    /// The record is in a batch: the batch's completion, the record's index in it, and
    /// whether the sender should look (a batch filled up or opened).
    Done {
        completion: &'a Arc<Completion>,
        index: u32,
        wake: bool,
    },
    NeedsPartitionCount,
    NeedsMemory(usize),
}

/// Appends a record to its partition's open batch or a new one, with the accumulator's lock
/// held, unless the topic's partition count or memory must be waited for first.
fn append<'a>(
    inner: &Inner,
    accumulator: &'a mut Accumulator,
    record: &RecordRef<'_>,
    timestamp: i64,
    state: &mut SendState,
) -> Result<Appended<'a>> {
    let batch_size = inner.config.batch_size_bytes;
    let fresh_count = state.partition_count.take();
    let topic_index = match (accumulator.lookup(record.topic), fresh_count) {
        (_, Some(count)) => accumulator.set_partition_count(record.topic, count),
        (Some(index), None) => index,
        (None, None) => return Ok(Appended::NeedsPartitionCount),
    };
    let topic = &mut accumulator.topics[topic_index];
    let p = match state.partition {
        Some(p) if p < 0 || p as usize >= topic.partition_count => {
            if fresh_count.is_none() && p >= 0 {
                // The cached count may be behind the metadata cache: look once more.
                return Ok(Appended::NeedsPartitionCount);
            }
            return Err(Error::UnknownPartition {
                topic: record.topic.to_string(),
                partition: p,
            });
        }
        Some(p) => p,
        None => {
            let p = choose_partition(&inner.config, topic, record);
            state.partition = Some(p);
            p
        }
    };
    let (key, value, headers) = (record.key, record.value, record.headers);
    // The open batch at the back takes the record if it fits.
    let queue = &mut topic.partitions[p as usize].batches;
    let mut fits = false;
    if let Some(batch) = queue.back_mut() {
        if let BatchData::Open(builder) = &mut batch.data {
            fits = builder.try_append(timestamp, key, value, headers, batch.limit_bytes);
            batch.record_count += usize::from(fits);
            debug_assert_eq!(builder.count(), batch.record_count);
        }
    }
    if fits {
        // Looked up again: a borrow returned on one path only must start on that path.
        let queue = &accumulator.topics[topic_index].partitions[p as usize].batches;
        let batch = queue.back().expect("the record went into it");
        return Ok(Appended::Done {
            completion: &batch.completion,
            index: (batch.record_count - 1) as u32,
            wake: batch.size_bytes() >= batch_size,
        });
    }
    let topic = &mut accumulator.topics[topic_index];
    // A new batch, holding its share of `buffer_memory_bytes` until it completes.
    // A batch never takes more than the whole buffer, unless its one record is larger.
    let buffer_memory = inner.config.buffer_memory_bytes.max(1);
    let limit_bytes = batch_size
        .min(buffer_memory)
        .max(BATCH_HEADER_SIZE_BYTES + RecordBatchBuilder::first_record_size(key, value, headers));
    let permits = limit_bytes.min(buffer_memory).min(u32::MAX as usize);
    let permit = match state.memory.take() {
        Some(permit) if permit.num_permits() == permits => permit,
        _ => match inner.memory.clone().try_acquire_many_owned(permits as u32) {
            Ok(permit) => permit,
            Err(TryAcquireError::Closed) => return Err(Error::Closed),
            Err(TryAcquireError::NoPermits) => return Ok(Appended::NeedsMemory(permits)),
        },
    };
    let mut builder = RecordBatchBuilder::with_capacity(limit_bytes);
    builder.append(timestamp, key, value, headers);
    let tp = TopicPartition {
        topic: topic.name.clone(),
        partition: p,
    };
    let completion = Arc::new(Completion::new(tp.clone()));
    // A new batch is a good moment to look at the partition count again.
    topic.sends_until_check = 0;
    let queue = &mut topic.partitions[p as usize];
    if !queue.active {
        queue.active = true;
        accumulator.active.push((topic_index, p));
    }
    inner.outstanding_batches.fetch_add(1, Ordering::AcqRel);
    let queue = &mut accumulator.topics[topic_index].partitions[p as usize].batches;
    queue.push_back(Batch {
        tp,
        data: BatchData::Open(builder),
        record_count: 1,
        limit_bytes,
        completion,
        created: Instant::now(),
        attempts: 0,
        retry_at: None,
        last_error: None,
        sequence: None,
        producer_id: -1,
        _memory: Some(permit),
    });
    let batch = queue.back().expect("just pushed");
    Ok(Appended::Done {
        completion: &batch.completion,
        index: 0,
        wake: true,
    })
}

/// Refuses what a record batch cannot express.
fn check_sizes(record: &RecordRef<'_>) -> Result<()> {
    const MAX: usize = i32::MAX as usize / 2;
    let too_large = record.key.is_some_and(|k| k.len() > MAX)
        || record.value.is_some_and(|v| v.len() > MAX)
        || record.headers.len() > MAX
        || record
            .headers
            .iter()
            .any(|(k, v)| k.len() > MAX || v.as_ref().is_some_and(|v| v.len() > MAX));
    if too_large {
        return Err(Error::Invalid(format!(
            "a record for {} is too large for a record batch",
            record.topic
        )));
    }
    Ok(())
}

fn choose_partition(
    config: &ProducerConfig,
    topic: &mut TopicQueues,
    record: &RecordRef<'_>,
) -> i32 {
    let count = topic.partition_count.max(1) as i32;
    if let Some(key) = record.key {
        return partition_for_key(key, count);
    }
    match config.null_key_partitioning {
        NullKeyPartitioning::RoundRobin => {
            let next = topic
                .round_robin
                .get_or_insert_with(|| start_partition(count));
            let partition = *next % count;
            *next = (partition + 1) % count;
            partition
        }
        NullKeyPartitioning::Sticky => {
            let sticky = topic
                .sticky
                .get_or_insert_with(|| (start_partition(count), 0));
            if sticky.1 >= config.batch_size_bytes {
                *sticky = ((sticky.0 + 1) % count, 0);
            }
            sticky.1 += record_size_estimate(record);
            sticky.0 % count
        }
    }
}

/// Bytes a record adds to a batch, roughly (as `ProducerRecord::size_estimate_bytes`).
fn record_size_estimate(record: &RecordRef<'_>) -> usize {
    const RECORD_OVERHEAD_BYTES: usize = 21;
    RECORD_OVERHEAD_BYTES
        + record.key.map_or(0, <[u8]>::len)
        + record.value.map_or(0, <[u8]>::len)
        + record
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Bytes::len) + 2)
            .sum::<usize>()
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
    /// Bytes of the batches (before compression).
    bytes: usize,
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
    let memory_short = inner.memory_waiters.load(Ordering::Acquire) > 0;
    let mut accumulator = inner.accumulator.lock();
    let accumulator = &mut *accumulator;
    let active_count = accumulator.active.len();
    let start = accumulator.drain_start % active_count.max(1);
    accumulator.drain_start = accumulator.drain_start.wrapping_add(1);
    for i in 0..active_count {
        let (topic_index, partition) = accumulator.active[(start + i) % active_count];
        let topic = &mut accumulator.topics[topic_index];
        let queue = &mut topic.partitions[partition as usize].batches;
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
            || memory_short
            || queue.len() > 1
            || front.size_bytes() >= config.batch_size_bytes
            || now >= front.created + linger;
        if !ready {
            let at = front.created + linger;
            next_deadline = Some(next_deadline.map_or(at, |d| d.min(at)));
            continue;
        }
        let Some(leader) = inner.client.cached_leader(&topic.name, partition) else {
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
                        bytes: 0,
                        permit,
                    }),
                    Err(_) => {
                        blocked.push(leader);
                        continue;
                    }
                }
            }
        };
        if !request.batches.is_empty()
            && request.bytes + front.size_bytes() > config.max_request_size_bytes
        {
            continue;
        }
        let mut batch = queue.pop_front().expect("front exists");
        stamp_sequence(inner, &mut batch);
        request.bytes += batch.size_bytes();
        request.batches.push(batch);
    }
    let topics = &mut accumulator.topics;
    accumulator.active.retain(|&(t, p)| {
        let queue = &mut topics[t].partitions[p as usize];
        queue.active = !queue.batches.is_empty();
        queue.active
    });
    let empty = accumulator.active.is_empty();
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
                .active
                .iter()
                .map(|&(t, _)| accumulator.topics[t].name.clone())
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
            for batch in inner.accumulator.lock().batches_mut() {
                batch.sequence = None;
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
            *next = next.wrapping_add(batch.record_count as i32) & i32::MAX;
            batch.producer_id = state.producer_id;
            (base, state.epoch)
        }
    };
    batch.sequence = Some((base, epoch));
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

fn build_request(inner: &Inner, batches: &mut [Batch]) -> Result<ProduceRequest> {
    let mut topics: IndexMap<String, Vec<PartitionProduceData>> = IndexMap::new();
    for batch in batches {
        let mut data = PartitionProduceData::default();
        data.index = batch.tp.partition;
        data.records = Some(batch.encoded(inner.config.compression)?);
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
        mut batches,
        permit,
        ..
    } = request;
    let produce = match build_request(inner, &mut batches) {
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
            let Some(queue) = accumulator.queue(&batch.tp) else {
                // Unreachable: topics and partitions stay in the accumulator.
                complete(&inner, batch, Err(Error::Closed));
                continue;
            };
            let queue = &mut queue.batches;
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
    let count = batch.record_count;
    if let (Some(state), Some((base, epoch)), Ok(_)) = (&inner.idempotence, batch.sequence, &result)
    {
        let mut state = state.lock();
        if state.epoch == epoch {
            state
                .acked_sequence
                .insert(batch.tp.clone(), base.wrapping_add(count as i32) & i32::MAX);
        }
    }
    batch.completion.set(result);
    // The batch's memory goes back before anyone sees the producer idle.
    drop(batch);
    if inner.outstanding_batches.fetch_sub(1, Ordering::AcqRel) == 1 {
        inner.idle.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{Admin, ClientConfig, Consumer, ConsumerConfig, NewTopic, OffsetSpec};

    async fn broker() -> (strom_broker::Broker, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let config = strom_broker::BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            kafka_addr: "127.0.0.1:0".parse().unwrap(),
            http_addr: None,
            ..Default::default()
        };
        (strom_broker::Broker::start(config).await.unwrap(), dir)
    }

    async fn client_with_topic(broker: &strom_broker::Broker, topic: &str) -> Client {
        let client = Client::connect(ClientConfig::new(&broker.kafka_addr().to_string()))
            .await
            .unwrap();
        Admin::new(client.clone())
            .create_topics(&[NewTopic::new(topic, 1)])
            .await
            .unwrap();
        client
    }

    async fn consume(client: &Client, topic: &str, expected: usize) -> Vec<crate::ConsumerRecord> {
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
    async fn records_come_back_as_sent_with_the_offsets_their_futures_gave() {
        let (broker, _dir) = broker().await;
        let client = client_with_topic(&broker, "t").await;
        for compression in [Compression::None, Compression::Lz4] {
            let producer = Producer::new(
                client.clone(),
                ProducerConfig {
                    batch_size_bytes: 300,
                    compression,
                    ..ProducerConfig::default()
                },
            );
            let headers = vec![
                ("h".to_string(), Some(Bytes::from_static(b"v"))),
                ("null".to_string(), None),
            ];
            let mut deliveries = Vec::new();
            let mut expected = Vec::new();
            for i in 0..100i64 {
                let key = format!("k{i}");
                let value = format!("value {i}");
                let (delivery, value) = match i % 4 {
                    0 => (
                        producer
                            .send(ProducerRecord::new("t", value.clone()).key(key.clone()))
                            .await,
                        Some(value),
                    ),
                    1 => (
                        producer
                            .send_ref(
                                RecordRef::new("t", value.as_bytes())
                                    .key(key.as_bytes())
                                    .headers(&headers),
                            )
                            .await,
                        Some(value),
                    ),
                    2 => {
                        let record = RecordRef {
                            topic: "t",
                            key: Some(key.as_bytes()),
                            timestamp_ms: Some(1_700_000_000_000 + i),
                            ..RecordRef::default()
                        };
                        (producer.send_ref(record).await, None)
                    }
                    _ => (
                        producer
                            .send(ProducerRecord::new("t", value.clone()).key(key.clone()))
                            .await,
                        Some(value),
                    ),
                };
                deliveries.push(delivery.unwrap());
                expected.push((key, value, i % 4 == 1, i % 4 == 2));
            }
            assert!(deliveries[0].same_batch(&deliveries[1]));
            assert!(
                !deliveries[0].same_batch(&deliveries[99]),
                "several batches"
            );
            let mut offsets = Vec::new();
            for (i, mut delivery) in deliveries.into_iter().enumerate() {
                let metadata = (&mut delivery).await.unwrap();
                assert!(delivery.completed_at().is_some());
                assert_eq!(metadata.topic, "t");
                if i % 4 == 2 {
                    assert_eq!(metadata.timestamp_ms, 1_700_000_000_000 + i as i64);
                }
                offsets.push(metadata.offset);
            }
            let base = offsets[0];
            assert_eq!(offsets, (base..base + 100).collect::<Vec<_>>());
            let records = consume(&client, "t", base as usize + 100).await;
            let records = &records[base as usize..];
            assert_eq!(records.len(), 100);
            for (record, (key, value, with_headers, stamped)) in records.iter().zip(&expected) {
                assert_eq!(record.key.as_deref(), Some(key.as_bytes()));
                assert_eq!(
                    record.value.as_deref(),
                    value.as_ref().map(|v| v.as_bytes())
                );
                if *with_headers {
                    assert_eq!(record.headers, headers);
                } else {
                    assert!(record.headers.is_empty());
                }
                if *stamped {
                    assert!(record.timestamp_ms < 1_800_000_000_000);
                }
            }
            producer.close().await;
        }
        broker.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_buffer_makes_every_batch_ready_instead_of_waiting_for_linger() {
        let (broker, _dir) = broker().await;
        let client = client_with_topic(&broker, "m").await;
        let producer = Producer::new(
            client.clone(),
            ProducerConfig {
                batch_size_bytes: 1024,
                buffer_memory_bytes: 3 * 1024,
                linger_ms: 60_000,
                acks: Acks::Leader,
                ..ProducerConfig::default()
            },
        );
        let value = [7u8; 100];
        let mut last = None;
        let sending = async {
            for _ in 0..1000 {
                last = Some(
                    producer
                        .send_ref(RecordRef::new("m", &value))
                        .await
                        .unwrap(),
                );
            }
        };
        // Sends waiting for memory make the queued batches ready (else they would wait out
        // the linger, one batch a minute).
        tokio::time::timeout(Duration::from_secs(20), sending)
            .await
            .expect("sends went on");
        producer.flush().await;
        let last = last.unwrap().await.unwrap();
        assert_eq!(last.offset, 999);
        producer.close().await;
        assert_eq!(producer.inner.memory.available_permits(), 3 * 1024);
        broker.shutdown().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unknown_partition_is_refused_and_a_closed_producer_refuses_sends() {
        let (broker, _dir) = broker().await;
        let client = client_with_topic(&broker, "u").await;
        let producer = Producer::new(
            client.clone(),
            ProducerConfig {
                linger_ms: 60_000,
                ..ProducerConfig::default()
            },
        );
        let error = producer
            .send_ref(RecordRef::new("u", b"x").partition(1))
            .await
            .unwrap_err();
        assert!(matches!(
            error,
            Error::UnknownPartition { partition: 1, .. }
        ));
        producer.close().await;
        let error = producer
            .send_ref(RecordRef::new("u", b"x"))
            .await
            .unwrap_err();
        assert!(matches!(error, Error::Closed));
        broker.shutdown().await;
    }

    /// Every record of `send_many_ref` calls (of sizes 1 to above `RECORDS_PER_LOCK_MAX`,
    /// across batch boundaries) is queued once, in order: the runs cover the calls' records
    /// exactly, their offsets follow one another, and the consumer reads the values back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn send_many_queues_every_record_once_in_order_across_batches() {
        let (broker, _dir) = broker().await;
        let client = client_with_topic(&broker, "many").await;
        let producer = Producer::new(
            client.clone(),
            ProducerConfig {
                batch_size_bytes: 700,
                linger_ms: 2,
                ..ProducerConfig::default()
            },
        );
        let values: Vec<String> = (0..2_000).map(|i| format!("value {i:05}")).collect();
        let sizes = [1usize, 7, 64, RECORDS_PER_LOCK_MAX + 45, 2, 500];
        let mut deliveries = Vec::new();
        let mut sent = 0;
        let mut call = 0;
        while sent < values.len() {
            let n = sizes[call % sizes.len()].min(values.len() - sent);
            call += 1;
            let records: Vec<RecordRef<'_>> = values[sent..sent + n]
                .iter()
                .map(|v| RecordRef::new("many", v.as_bytes()))
                .collect();
            let before = deliveries.len();
            producer
                .send_many_ref(&records, &mut deliveries)
                .await
                .unwrap();
            // This call's runs cover its records exactly, in order.
            let mut next = 0;
            for run in &deliveries[before..] {
                assert_eq!(run.first_index(), next);
                assert!(run.count() >= 1);
                next += run.count();
            }
            assert_eq!(next, n);
            sent += n;
        }
        assert!(deliveries.len() > values.len() / 60, "several batches");
        assert!(deliveries[0].same_batch(&deliveries[1]));
        let mut expected_offset = None;
        for delivery in deliveries {
            let count = delivery.count();
            let landed = delivery.await.unwrap();
            assert_eq!((landed.topic.as_str(), landed.partition), ("many", 0));
            assert_eq!(landed.count, count);
            if let Some(expected) = expected_offset {
                assert_eq!(landed.offset, expected);
            }
            expected_offset = Some(landed.offset + count as i64);
        }
        let records = consume(&client, "many", values.len()).await;
        let read: Vec<&[u8]> = records.iter().filter_map(|r| r.value.as_deref()).collect();
        let expected: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        assert_eq!(read, expected);
        producer.close().await;
        broker.shutdown().await;
    }

    /// A call larger than `buffer_memory_bytes` waits for memory midway (every batch is made
    /// ready meanwhile) and goes on: nothing lost, nothing twice, and all memory comes back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn send_many_waits_for_memory_midway_without_losing_or_repeating_records() {
        let (broker, _dir) = broker().await;
        let client = client_with_topic(&broker, "m").await;
        let producer = Producer::new(
            client.clone(),
            ProducerConfig {
                batch_size_bytes: 1024,
                buffer_memory_bytes: 3 * 1024,
                linger_ms: 60_000,
                acks: Acks::Leader,
                ..ProducerConfig::default()
            },
        );
        let values: Vec<Vec<u8>> = (0..1_000u32)
            .map(|i| {
                let mut v = vec![7u8; 100];
                v[..4].copy_from_slice(&i.to_be_bytes());
                v
            })
            .collect();
        let records: Vec<RecordRef<'_>> = values.iter().map(|v| RecordRef::new("m", v)).collect();
        let mut deliveries = Vec::new();
        // 1000 records of ~110 bytes need ~36 batches of 1 KiB; 3 fit in the buffer.
        tokio::time::timeout(
            Duration::from_secs(20),
            producer.send_many_ref(&records, &mut deliveries),
        )
        .await
        .expect("the call went on after waiting for memory")
        .unwrap();
        let covered: usize = deliveries.iter().map(BatchDelivery::count).sum();
        assert_eq!(covered, records.len());
        assert!(deliveries.len() >= 30, "{} runs", deliveries.len());
        producer.flush().await;
        let mut next_offset = 0;
        for delivery in deliveries {
            let landed = delivery.await.unwrap();
            assert_eq!(landed.offset, next_offset);
            next_offset += landed.count as i64;
        }
        assert_eq!(next_offset, 1_000);
        let read = consume(&client, "m", 1_000).await;
        let read: Vec<Vec<u8>> = read
            .into_iter()
            .filter_map(|r| r.value)
            .map(|v| v.to_vec())
            .collect();
        assert_eq!(read, values);
        producer.close().await;
        assert_eq!(producer.inner.memory.available_permits(), 3 * 1024);
        broker.shutdown().await;
    }

    /// Keyed records to several partitions: runs break where the partition changes, each
    /// record lands where the partitioner says, and per partition in call order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn send_many_keeps_each_partitions_order_with_keys() {
        let (broker, _dir) = broker().await;
        let client = Client::connect(ClientConfig::new(&broker.kafka_addr().to_string()))
            .await
            .unwrap();
        Admin::new(client.clone())
            .create_topics(&[NewTopic::new("keyed", 3)])
            .await
            .unwrap();
        let producer = Producer::new(client.clone(), ProducerConfig::default());
        let keys: Vec<String> = (0..300).map(|i| format!("key {}", i % 7)).collect();
        let values: Vec<String> = (0..300).map(|i| format!("value {i}")).collect();
        let records: Vec<RecordRef<'_>> = keys
            .iter()
            .zip(&values)
            .map(|(k, v)| RecordRef::new("keyed", v.as_bytes()).key(k.as_bytes()))
            .collect();
        let mut deliveries = Vec::new();
        producer
            .send_many_ref(&records, &mut deliveries)
            .await
            .unwrap();
        // (partition, offset) of each record, from the runs.
        let mut landed_at = vec![(0, 0); records.len()];
        for delivery in deliveries {
            let first = delivery.first_index();
            let tp = delivery.topic_partition().clone();
            let landed = delivery.await.unwrap();
            assert_eq!(landed.partition, tp.partition);
            for k in 0..landed.count {
                let key = records[first + k].key.unwrap();
                assert_eq!(landed.partition, partition_for_key(key, 3));
                landed_at[first + k] = (landed.partition, landed.offset + k as i64);
            }
        }
        let mut consumer = Consumer::new(client.clone(), ConsumerConfig::default());
        consumer.assign_topic("keyed").await.unwrap();
        consumer.seek_all(OffsetSpec::Earliest);
        let mut read = Vec::new();
        for _ in 0..50 {
            read.extend(consumer.poll(Duration::from_millis(200)).await.unwrap());
            if read.len() >= records.len() {
                break;
            }
        }
        assert_eq!(read.len(), records.len());
        for record in read {
            let value = String::from_utf8(record.value.unwrap().to_vec()).unwrap();
            let i: usize = value["value ".len()..].parse().unwrap();
            assert_eq!(landed_at[i], (record.partition, record.offset), "{value}");
        }
        producer.close().await;
        broker.shutdown().await;
    }

    /// An unknown partition midway: the records before it are queued (and their runs
    /// returned), it and the rest are not. A closed producer queues nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn send_many_reports_what_it_queued_before_an_error() {
        let (broker, _dir) = broker().await;
        let client = client_with_topic(&broker, "e").await;
        let producer = Producer::new(client.clone(), ProducerConfig::default());
        let records = [
            RecordRef::new("e", b"0"),
            RecordRef::new("e", b"1"),
            RecordRef::new("e", b"2").partition(5),
            RecordRef::new("e", b"3"),
        ];
        let mut deliveries = Vec::new();
        // An earlier call's runs in the vector are left alone (and never extended).
        producer
            .send_many_ref(&records[..1], &mut deliveries)
            .await
            .unwrap();
        let error = producer
            .send_many_ref(&records, &mut deliveries)
            .await
            .unwrap_err();
        assert!(matches!(
            error,
            Error::UnknownPartition { partition: 5, .. }
        ));
        assert_eq!(deliveries.len(), 2);
        assert_eq!((deliveries[0].first_index(), deliveries[0].count()), (0, 1));
        assert_eq!((deliveries[1].first_index(), deliveries[1].count()), (0, 2));
        assert!(deliveries[0].same_batch(&deliveries[1]));
        producer.flush().await;
        let first = deliveries.remove(0).await.unwrap();
        let second = deliveries.remove(0).await.unwrap();
        assert_eq!((first.offset, second.offset, second.count), (0, 1, 2));
        let read = consume(&client, "e", 3).await;
        let read: Vec<&[u8]> = read.iter().filter_map(|r| r.value.as_deref()).collect();
        assert_eq!(read, [&b"0"[..], b"0", b"1"]);
        // Nothing to send is no error.
        producer.send_many_ref(&[], &mut deliveries).await.unwrap();
        assert!(deliveries.is_empty());
        producer.close().await;
        let error = producer
            .send_many_ref(&records[..1], &mut deliveries)
            .await
            .unwrap_err();
        assert!(matches!(error, Error::Closed));
        assert!(deliveries.is_empty());
        broker.shutdown().await;
    }

    /// Queueing cost per 100-byte record, `send_ref` against `send_many_ref` (128 records a
    /// call), apart from sending (the broker runs in process):
    /// `cargo test --release -p strom-client --lib send_speed -- --ignored --nocapture`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore]
    async fn send_speed() {
        let (broker, _dir) = broker().await;
        let client = client_with_topic(&broker, "speed").await;
        let producer = Producer::new(
            client.clone(),
            ProducerConfig {
                acks: Acks::Leader,
                batch_size_bytes: 64 * 1024,
                linger_ms: 1,
                buffer_memory_bytes: 256 * 1024 * 1024,
                ..ProducerConfig::default()
            },
        );
        const RECORDS: usize = 1 << 20;
        let value = [b'x'; 100];
        let records = vec![RecordRef::new("speed", &value).timestamp_ms(1); 128];
        for round in 0..3 {
            let started = std::time::Instant::now();
            for _ in 0..RECORDS {
                std::hint::black_box(producer.send_ref(records[0]).await.unwrap());
            }
            let one = started.elapsed();
            producer.flush().await;
            let mut deliveries = Vec::with_capacity(records.len());
            let started = std::time::Instant::now();
            for _ in 0..RECORDS / records.len() {
                deliveries.clear();
                producer
                    .send_many_ref(&records, &mut deliveries)
                    .await
                    .unwrap();
            }
            let many = started.elapsed();
            producer.flush().await;
            let per = |d: Duration| d.as_nanos() as f64 / RECORDS as f64;
            println!(
                "round {round}: send_ref {:.1} ns/record, send_many_ref {:.1} ns/record",
                per(one),
                per(many)
            );
        }
        producer.close().await;
        broker.shutdown().await;
    }
}
