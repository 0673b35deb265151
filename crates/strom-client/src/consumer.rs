//! The consumer: by assignment or by subscription to a classic consumer group; positions,
//! seeks, commits, the fetch loop and record decoding.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::task::JoinHandle;

use crate::assignor::Assignor;
use crate::client::Client;
use crate::error::{Error, Result};
use crate::group::{self, Membership, MembershipConfig};
use crate::offsets::{leader_of, list_offsets, OffsetSpec};
use crate::types::{ConsumerRecord, TopicPartition};

mod batch_reader;
#[cfg(test)]
mod pipelining_tests;

pub use batch_reader::{
    decode_batches, decode_records, FetchedBatch, HeaderViews, RecordHeaders, RecordView,
    RecordViews,
};

/// What to do when a position is missing or out of range (`auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AutoOffsetReset {
    /// Go to the log start offset.
    Earliest,
    /// Go to the end (only new records).
    #[default]
    Latest,
    /// Fail the poll with the broker's OFFSET_OUT_OF_RANGE error.
    None,
}

/// Consumer settings; the defaults follow the Java client's.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `fetch.max.wait.ms`: how long the broker may hold a fetch waiting for `fetch_min_bytes`.
    pub fetch_max_wait_ms: u64,
    /// `fetch.min.bytes`.
    pub fetch_min_bytes: i32,
    /// `fetch.max.bytes`: bytes per fetch response at most (one batch may exceed it).
    pub fetch_max_bytes: i32,
    /// `max.partition.fetch.bytes`.
    pub max_partition_fetch_bytes: i32,
    /// `auto.offset.reset`.
    pub auto_offset_reset: AutoOffsetReset,
    /// Read only committed transactional records (`isolation.level=read_committed`).
    pub read_committed: bool,
    /// `group.id`: needed by [`Consumer::subscribe`] and the commit methods.
    pub group_id: Option<String>,
    /// `group.instance.id`: a static member keeps its assignment across restarts within the
    /// session timeout and does not leave the group on close.
    pub group_instance_id: Option<String>,
    /// `session.timeout.ms`: the coordinator removes a member it has not heard from this long.
    pub session_timeout_ms: i32,
    /// `max.poll.interval.ms`, sent as the rebalance timeout: how long members may take to
    /// rejoin, i.e. the longest gap between two `poll` calls during a rebalance.
    pub rebalance_timeout_ms: i32,
    /// `heartbeat.interval.ms`.
    pub heartbeat_interval_ms: u64,
    /// `partition.assignment.strategy`, in order of preference. The default is the Java
    /// client's (`range`, then `cooperative-sticky`, which runs the eager protocol); list only
    /// `cooperative-sticky` for incremental cooperative rebalancing.
    pub assignors: Vec<Assignor>,
    /// `enable.auto.commit`: commit positions every `auto_commit_interval_ms` from `poll`,
    /// before partitions are revoked, and on [`Consumer::close`].
    pub enable_auto_commit: bool,
    /// `auto.commit.interval.ms`.
    pub auto_commit_interval_ms: u64,
    /// `check.crcs`: check every fetched batch's CRC-32C (on by default, as in the Java
    /// client; librdkafka leaves it off). Off, a corrupted batch whose structure still reads
    /// comes back as records.
    pub check_crcs: bool,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            fetch_max_wait_ms: 500,
            fetch_min_bytes: 1,
            fetch_max_bytes: 50 * 1024 * 1024,
            max_partition_fetch_bytes: 1024 * 1024,
            auto_offset_reset: AutoOffsetReset::Latest,
            read_committed: false,
            group_id: None,
            group_instance_id: None,
            session_timeout_ms: 45_000,
            rebalance_timeout_ms: 300_000,
            heartbeat_interval_ms: 3_000,
            assignors: vec![Assignor::Range, Assignor::CooperativeSticky],
            enable_auto_commit: true,
            auto_commit_interval_ms: 5_000,
            check_crcs: true,
        }
    }
}

impl ConsumerConfig {
    /// The defaults with `group.id` set.
    pub fn with_group(group_id: impl Into<String>) -> ConsumerConfig {
        ConsumerConfig {
            group_id: Some(group_id.into()),
            ..ConsumerConfig::default()
        }
    }
}

#[derive(Debug, Clone)]
struct PartitionState {
    position: Option<i64>,
    seek: Option<OffsetSpec>,
    high_watermark: i64,
    log_start_offset: i64,
    /// Bytes to ask for from this partition; grows (up to `fetch_max_bytes`) when a fetch
    /// returned only part of a batch, so one batch larger than `max_partition_fetch_bytes`
    /// cannot stall the consumer.
    fetch_bytes: i32,
}

/// A consumer of explicitly assigned partitions ([`Consumer::assign`]) or, with a `group_id`,
/// of the partitions a consumer group gives it ([`Consumer::subscribe`]).
///
/// By assignment:
///
/// ```no_run
/// # async fn example() -> strom_client::Result<()> {
/// use std::time::Duration;
/// use strom_client::{Client, ClientConfig, Consumer, ConsumerConfig, OffsetSpec, TopicPartition};
/// let client = Client::connect(ClientConfig::new("127.0.0.1:9092")).await?;
/// let mut consumer = Consumer::new(client, ConsumerConfig::default());
/// consumer.assign_topic("events").await?;
/// consumer.seek_all(OffsetSpec::Earliest);
/// for record in consumer.poll(Duration::from_secs(1)).await? {
///     println!("{}-{}@{}: {:?}", record.topic, record.partition, record.offset, record.value);
/// }
/// # Ok(()) }
/// ```
///
/// In a group (members share the partitions; positions resume from committed offsets, else
/// `auto_offset_reset`; positions are committed every `auto_commit_interval_ms`):
///
/// ```no_run
/// # async fn example() -> strom_client::Result<()> {
/// use std::time::Duration;
/// use strom_client::{AutoOffsetReset, Client, ClientConfig, Consumer, ConsumerConfig};
/// let client = Client::connect(ClientConfig::new("127.0.0.1:9092")).await?;
/// let config = ConsumerConfig { auto_offset_reset: AutoOffsetReset::Earliest, ..ConsumerConfig::with_group("billing") };
/// let mut consumer = Consumer::new(client, config);
/// consumer.subscribe(&["events"])?;
/// for _ in 0..10 {
///     for record in consumer.poll(Duration::from_secs(1)).await? {
///         println!("{}-{}@{}", record.topic, record.partition, record.offset);
///     }
///     consumer.commit().await?;
/// }
/// consumer.close().await?; // commits and leaves the group, handing its partitions over
/// # Ok(()) }
/// ```
pub struct Consumer {
    client: Client,
    config: ConsumerConfig,
    partitions: BTreeMap<TopicPartition, PartitionState>,
    /// Topics subscribed to (empty: consuming by assignment).
    subscription: Vec<String>,
    membership: Option<Membership>,
    /// Offsets last committed per partition, so auto-commit skips unchanged ones.
    last_committed: BTreeMap<TopicPartition, i64>,
    last_auto_commit: tokio::time::Instant,
    /// Fetches sent and not applied yet, at most one per leader. A poll that gets an answer
    /// with more to read behind it sends the leader's next fetch before decoding the answer,
    /// so the broker reads while this side decodes and the application works.
    in_flight: Vec<PendingFetch>,
    /// A retriable fetch error said the metadata is stale: refresh it on the next poll.
    refresh_due: bool,
    /// A decoding error held back because the poll that met it returned records; the next
    /// poll reports it.
    deferred_error: Option<Error>,
}

/// Partitions to fetch from one leader, each with its position and its byte limit.
type FetchList = Vec<(TopicPartition, i64, i32)>;

/// A poll reserves room for this many records at most before decoding.
const RESERVED_RECORDS_MAX: usize = 1 << 20;

/// A fetch request on its way, with the positions it asked from: its answer is applied only to
/// partitions still assigned at those positions (a seek, an assignment change or a rebalance
/// in between makes it stale, and it is dropped).
struct PendingFetch {
    leader: i32,
    positions: HashMap<TopicPartition, i64>,
    task: JoinHandle<Result<FetchResponse>>,
    /// The task's result once it is in (kept here, so a cancelled poll loses nothing).
    result: Option<Result<FetchResponse>>,
}

impl Drop for PendingFetch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Consumer {
    /// A consumer with nothing assigned.
    pub fn new(client: Client, config: ConsumerConfig) -> Consumer {
        Consumer {
            client,
            config,
            partitions: BTreeMap::new(),
            subscription: Vec::new(),
            membership: None,
            last_committed: BTreeMap::new(),
            last_auto_commit: tokio::time::Instant::now(),
            in_flight: Vec::new(),
            refresh_due: false,
            deferred_error: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ConsumerConfig {
        &self.config
    }

    /// The client underneath.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Replaces the assignment. Partitions kept keep their positions; new ones start per
    /// `auto_offset_reset` unless [`Consumer::seek`] says otherwise.
    pub fn assign(&mut self, partitions: impl IntoIterator<Item = TopicPartition>) {
        let mut next = BTreeMap::new();
        for tp in partitions {
            let state = self.partitions.remove(&tp).unwrap_or(PartitionState {
                position: None,
                seek: None,
                high_watermark: -1,
                log_start_offset: -1,
                fetch_bytes: self.config.max_partition_fetch_bytes,
            });
            next.insert(tp, state);
        }
        self.partitions = next;
    }

    /// Adds every partition of `topic` to the assignment; returns how many it has.
    pub async fn assign_topic(&mut self, topic: &str) -> Result<usize> {
        let info = self
            .client
            .refresh_metadata(Some(&[topic.to_string()]), false)
            .await?;
        let topic_info = info
            .topics
            .get(topic)
            .ok_or_else(|| Error::UnknownTopic(topic.to_string()))?;
        let mut assignment: Vec<TopicPartition> = self.partitions.keys().cloned().collect();
        for p in &topic_info.partitions {
            let tp = TopicPartition::new(topic, p.partition);
            if !assignment.contains(&tp) {
                assignment.push(tp);
            }
        }
        self.assign(assignment);
        Ok(topic_info.partitions.len())
    }

    /// The assigned partitions.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.partitions.keys().cloned().collect()
    }

    /// Moves `tp`'s position; resolved (by ListOffsets if needed) on the next poll.
    pub fn seek(&mut self, tp: &TopicPartition, spec: OffsetSpec) -> Result<()> {
        let state = self
            .partitions
            .get_mut(tp)
            .ok_or_else(|| Error::Invalid(format!("{tp} is not assigned")))?;
        state.seek = Some(spec);
        state.position = None;
        Ok(())
    }

    /// Moves every assigned partition's position.
    pub fn seek_all(&mut self, spec: OffsetSpec) {
        for state in self.partitions.values_mut() {
            state.seek = Some(spec);
            state.position = None;
        }
    }

    /// The next offset to be read from `tp`, once known.
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.partitions.get(tp).and_then(|s| s.position)
    }

    /// The high watermark of `tp` as of the last fetch (-1 before the first).
    pub fn high_watermark(&self, tp: &TopicPartition) -> i64 {
        self.partitions.get(tp).map_or(-1, |s| s.high_watermark)
    }

    /// Whether `tp`'s position has reached the high watermark seen in the last fetch.
    pub fn at_end(&self, tp: &TopicPartition) -> bool {
        self.partitions.get(tp).is_some_and(|s| {
            s.high_watermark >= 0 && s.position.is_some_and(|p| p >= s.high_watermark)
        })
    }

    /// Resolves positions that are not known yet: explicit seeks first, else
    /// `auto_offset_reset`.
    async fn resolve_positions(&mut self) -> Result<()> {
        let mut specs = Vec::new();
        for (tp, state) in &self.partitions {
            if state.position.is_some() {
                continue;
            }
            let spec = match (state.seek, self.config.auto_offset_reset) {
                (Some(spec), _) => spec,
                (None, AutoOffsetReset::Earliest) => OffsetSpec::Earliest,
                (None, AutoOffsetReset::Latest) => OffsetSpec::Latest,
                (None, AutoOffsetReset::None) => {
                    return Err(Error::Invalid(format!(
                        "no position for {tp} and auto_offset_reset is none"
                    )))
                }
            };
            specs.push((tp.clone(), spec));
        }
        if specs.is_empty() {
            return Ok(());
        }
        let listed = list_offsets(&self.client, &specs).await?;
        let mut missing_by_time = Vec::new();
        for (tp, listed) in listed {
            if listed.offset < 0 {
                // No record at or after the timestamp: go to the end, as the Java client does.
                missing_by_time.push((tp, OffsetSpec::Latest));
                continue;
            }
            if let Some(state) = self.partitions.get_mut(&tp) {
                state.position = Some(listed.offset);
                state.seek = None;
            }
        }
        if !missing_by_time.is_empty() {
            for (tp, listed) in list_offsets(&self.client, &missing_by_time).await? {
                if let Some(state) = self.partitions.get_mut(&tp) {
                    state.position = Some(listed.offset);
                    state.seek = None;
                }
            }
        }
        Ok(())
    }

    /// Returns the records of the fetches that have answered, in offset order per partition:
    /// waits for one fetch from every leader of the assignment, or until one answers with
    /// records. Waits at most about `timeout` when nothing is there (a fetch sent by an earlier
    /// poll keeps the wait that poll gave it).
    ///
    /// Fetching runs one request ahead: when an answer leaves more to read, the leader's next
    /// fetch goes out before this poll decodes the answer (at most one fetch per leader is in
    /// flight). Positions and commits only ever count records returned; data fetched for a
    /// partition that was sought, unassigned or revoked meanwhile is dropped.
    ///
    /// A subscribed consumer also joins or rejoins its group here (a rebalance), and commits
    /// positions when auto-commit is due.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let Some(round) = self.fetch_round(timeout).await? else {
            return Ok(Vec::new());
        };
        // One allocation for the poll's records (a hint: a batch's claim is checked only as
        // it is decoded, so it is capped).
        let records = Vec::with_capacity(round.expected_records.min(RESERVED_RECORDS_MAX));
        self.decode_round(round, records, decode_records)
    }

    /// [`poll`](Self::poll), returning the fetched record batches rather than records: each
    /// [`FetchedBatch`] is checked in full here, as `poll` checks what it returns (CRC-32C,
    /// headers, decompression, every record's layout), and its records are then read in place
    /// by [`FetchedBatch::records`], as [`RecordView`](crate::RecordView)s borrowing keys,
    /// values and headers from the fetched bytes: a consumer that only reads them pays no
    /// allocation or reference count per record. The batches yield exactly the records `poll`
    /// would return, in the same order; positions, errors, control batches and everything
    /// else are as for `poll`.
    ///
    /// ```no_run
    /// # async fn example(mut consumer: strom_client::Consumer) -> strom_client::Result<()> {
    /// use std::time::Duration;
    /// let mut bytes = 0;
    /// for batch in consumer.poll_batches(Duration::from_secs(1)).await? {
    ///     for record in batch.records() {
    ///         bytes += record.value.map_or(0, <[u8]>::len);
    ///     }
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn poll_batches(&mut self, timeout: Duration) -> Result<Vec<FetchedBatch>> {
        let Some(round) = self.fetch_round(timeout).await? else {
            return Ok(Vec::new());
        };
        self.decode_round(round, Vec::new(), decode_batches)
    }

    /// What [`poll`](Self::poll) does before decoding: group upkeep, positions, fetches sent,
    /// answers waited for and applied (positions moved past the complete batches), and the
    /// next fetches sent. `None` with nothing assigned (after waiting out `timeout`).
    async fn fetch_round(&mut self, timeout: Duration) -> Result<Option<FetchRound>> {
        if let Some(error) = self.deferred_error.take() {
            return Err(error);
        }
        if self.membership.is_some() {
            self.maintain_group().await?;
        }
        if self.partitions.is_empty() {
            self.in_flight.clear();
            tokio::time::sleep(timeout).await;
            return Ok(None);
        }
        if self.refresh_due {
            tokio::time::sleep(Duration::from_millis(self.client.config().retry_backoff_ms)).await;
            let mut topics: Vec<String> =
                self.partitions.keys().map(|tp| tp.topic.clone()).collect();
            topics.dedup();
            self.client.refresh_metadata(Some(&topics), false).await?;
            self.refresh_due = false;
        }
        self.resolve_positions().await?;
        for (tp, state) in &self.partitions {
            if state.position.is_some()
                && self.client.cached_leader(&tp.topic, tp.partition).is_none()
            {
                leader_of(&self.client, tp).await?;
            }
        }
        let max_wait_ms = (timeout.as_millis() as u64).min(self.config.fetch_max_wait_ms);
        self.send_fetches(max_wait_ms, false);
        self.wait_for_fetches().await;
        // Nothing below awaits: what is taken here is applied in full.
        let (fetches, waiting): (Vec<PendingFetch>, Vec<PendingFetch>) =
            std::mem::take(&mut self.in_flight)
                .into_iter()
                .partition(|f| f.result.is_some());
        self.in_flight = waiting;
        let mut answers = Vec::with_capacity(fetches.len());
        for mut fetch in fetches {
            let result = fetch.result.take().expect("every fetch answered");
            let parts = result.and_then(|response| fetched_partitions(fetch.leader, response));
            match parts {
                Ok(parts) => answers.push((std::mem::take(&mut fetch.positions), parts)),
                Err(error) if error.is_retriable() => {
                    tracing::debug!(%error, "fetch failed; will retry");
                    self.refresh_due |= error.needs_metadata_refresh();
                }
                Err(error) => return Err(error),
            }
        }
        // Errors that fail the poll fail it before any position moves.
        for (positions, parts) in &answers {
            for part in parts {
                if self.is_current(part, positions) {
                    self.check_fatal(part)?;
                }
            }
        }
        let mut round = FetchRound {
            to_decode: Vec::new(),
            expected_records: 0,
            first_error: None,
        };
        for (positions, parts) in answers {
            for part in parts {
                if !self.is_current(&part, &positions) {
                    continue;
                }
                match self.apply(&part) {
                    Ok(Some((position, count))) => {
                        round.expected_records += count;
                        round.to_decode.push((part, position));
                    }
                    Ok(None) => {}
                    Err(error) => {
                        round.first_error.get_or_insert(error);
                    }
                }
            }
        }
        if !self.refresh_due {
            self.send_fetches(max_wait_ms, true);
        }
        Ok(Some(round))
    }

    /// Decodes a round's partitions into `out` with `decode` ([`decode_records`] or
    /// [`decode_batches`]). A partition that fails to decode gives back nothing and stays
    /// where it was; the first error fails the poll if nothing came back, else the next one.
    fn decode_round<T>(
        &mut self,
        round: FetchRound,
        mut out: Vec<T>,
        decode: impl Fn(&TopicPartition, Bytes, i64, bool, &mut Vec<T>) -> Result<i64>,
    ) -> Result<Vec<T>> {
        let mut first_error = round.first_error;
        let check_crcs = self.config.check_crcs;
        for (part, position) in round.to_decode {
            let before = out.len();
            if let Err(error) = decode(&part.tp, part.records, position, check_crcs, &mut out) {
                // Give back nothing of the partition and stay where it was.
                out.truncate(before);
                if let Some(state) = self.partitions.get_mut(&part.tp) {
                    state.position = Some(position);
                }
                first_error.get_or_insert(error);
            }
        }
        match first_error {
            Some(error) if out.is_empty() => Err(error),
            Some(error) => {
                self.deferred_error = Some(error);
                Ok(out)
            }
            None => Ok(out),
        }
    }

    /// Sends a fetch to every leader that has none in flight, for its partitions with a
    /// position that no fetch in flight covers; with `only_behind`, only to leaders with a
    /// partition below its high watermark (a consumer that has caught up long-polls from the
    /// next poll, with the assignment as it is then).
    fn send_fetches(&mut self, max_wait_ms: u64, only_behind: bool) {
        let busy: HashSet<i32> = self.in_flight.iter().map(|f| f.leader).collect();
        let mut by_leader: BTreeMap<i32, (bool, FetchList)> = BTreeMap::new();
        for (tp, state) in &self.partitions {
            let Some(position) = state.position else {
                continue;
            };
            let Some(leader) = self.client.cached_leader(&tp.topic, tp.partition) else {
                continue;
            };
            if busy.contains(&leader) || self.in_flight.iter().any(|f| f.positions.contains_key(tp))
            {
                continue;
            }
            let entry = by_leader.entry(leader).or_default();
            entry.0 |= position < state.high_watermark;
            entry.1.push((tp.clone(), position, state.fetch_bytes));
        }
        for (leader, (behind, partitions)) in by_leader {
            if behind || !only_behind {
                let fetch = self.start_fetch(leader, partitions, max_wait_ms);
                self.in_flight.push(fetch);
            }
        }
    }

    fn start_fetch(&self, leader: i32, partitions: FetchList, max_wait_ms: u64) -> PendingFetch {
        let mut topics: BTreeMap<&str, Vec<FetchPartition>> = BTreeMap::new();
        for (tp, position, fetch_bytes) in &partitions {
            let mut p = FetchPartition::default();
            p.partition = tp.partition;
            p.current_leader_epoch = -1;
            p.fetch_offset = *position;
            p.log_start_offset = -1;
            p.partition_max_bytes = *fetch_bytes;
            topics.entry(&tp.topic).or_default().push(p);
        }
        let mut request = FetchRequest::default();
        request.replica_id = BrokerId(-1);
        request.max_wait_ms = max_wait_ms as i32;
        request.min_bytes = self.config.fetch_min_bytes;
        request.max_bytes = self.config.fetch_max_bytes;
        request.isolation_level = i8::from(self.config.read_committed);
        request.session_id = 0;
        request.session_epoch = -1;
        request.topics = topics
            .into_iter()
            .map(|(name, partitions)| {
                let mut topic = FetchTopic::default();
                topic.topic = TopicName(StrBytes::from_string(name.to_string()));
                topic.partitions = partitions;
                topic
            })
            .collect();
        let client = self.client.clone();
        let timeout_ms = client.config().request_timeout_ms + max_wait_ms;
        let task = tokio::spawn(async move {
            let connection = client.connection(leader).await?;
            let (_, response) = connection.send_timeout(&request, timeout_ms).await?;
            Ok(response)
        });
        PendingFetch {
            leader,
            positions: partitions
                .into_iter()
                .map(|(tp, position, _)| (tp, position))
                .collect(),
            task,
            result: None,
        }
    }

    /// Waits until every fetch in flight has answered (each within its own timeout), or one
    /// has answered with records (the others, long polls perhaps, stay in flight).
    async fn wait_for_fetches(&mut self) {
        let in_flight = &mut self.in_flight;
        std::future::poll_fn(|cx| {
            let mut waiting = false;
            let mut records = false;
            for fetch in in_flight.iter_mut() {
                if fetch.result.is_none() {
                    match Pin::new(&mut fetch.task).poll(cx) {
                        Poll::Ready(joined) => {
                            fetch.result = Some(joined.unwrap_or_else(|e| {
                                Err(Error::Disconnected {
                                    addr: format!("broker {}", fetch.leader),
                                    reason: format!("fetch task ended: {e}"),
                                })
                            }))
                        }
                        Poll::Pending => waiting = true,
                    }
                }
                records |= fetch.result.as_ref().is_some_and(has_records);
            }
            if waiting && !records {
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        })
        .await
    }

    /// Whether `part` answers a fetch from the partition's current position.
    fn is_current(
        &self,
        part: &FetchedPartition,
        positions: &HashMap<TopicPartition, i64>,
    ) -> bool {
        let asked = positions.get(&part.tp);
        asked.is_some()
            && self
                .partitions
                .get(&part.tp)
                .is_some_and(|state| state.position.as_ref() == asked)
    }

    /// The error a partition's answer fails the poll with, if any.
    fn check_fatal(&self, part: &FetchedPartition) -> Result<()> {
        match part.error_code {
            0 => Ok(()),
            1 if self.config.auto_offset_reset == AutoOffsetReset::None => {
                let position = self.position(&part.tp).unwrap_or(-1);
                Err(Error::kafka(
                    1,
                    format!("fetch {} at offset {position}", part.tp),
                    None,
                ))
            }
            1 => Ok(()),
            code => {
                let error = Error::kafka(code, format!("fetch {}", part.tp), None);
                if error.is_retriable() {
                    Ok(())
                } else {
                    Err(error)
                }
            }
        }
    }

    /// Applies one partition's answer (current, and not fatal) from its batch headers: moves
    /// the position past the complete batches and returns the position they are to be decoded
    /// from and about how many records that gives, or `None` when there is nothing to
    /// decode.
    fn apply(&mut self, part: &FetchedPartition) -> Result<Option<(i64, usize)>> {
        let reset = self.config.auto_offset_reset;
        let Some(state) = self.partitions.get_mut(&part.tp) else {
            return Ok(None);
        };
        let Some(position) = state.position else {
            return Ok(None);
        };
        match part.error_code {
            0 => {}
            1 => {
                // OFFSET_OUT_OF_RANGE
                state.seek = Some(match reset {
                    AutoOffsetReset::Earliest => OffsetSpec::Earliest,
                    _ => OffsetSpec::Latest,
                });
                tracing::debug!(tp = %part.tp, position, ?reset, "offset out of range; resetting");
                state.position = None;
                return Ok(None);
            }
            _ => {
                self.refresh_due = true;
                return Ok(None);
            }
        }
        state.high_watermark = part.high_watermark;
        state.log_start_offset = part.log_start_offset;
        if part.records.is_empty() {
            return Ok(None);
        }
        let (next, count) = batch_reader::scan(&part.tp, &part.records, position)?;
        if next <= position {
            // Only part of a batch came back: ask for more next time.
            state.fetch_bytes = state
                .fetch_bytes
                .saturating_mul(2)
                .min(self.config.fetch_max_bytes.max(state.fetch_bytes));
            return Ok(None);
        }
        state.fetch_bytes = self.config.max_partition_fetch_bytes;
        state.position = Some(next);
        Ok(Some((position, count)))
    }
}

fn has_records(result: &Result<FetchResponse>) -> bool {
    result.as_ref().is_ok_and(|response| {
        response.responses.iter().any(|topic| {
            topic
                .partitions
                .iter()
                .any(|p| p.records.as_ref().is_some_and(|r| !r.is_empty()))
        })
    })
}

/// The partitions of a fetch answer.
fn fetched_partitions(leader: i32, response: FetchResponse) -> Result<Vec<FetchedPartition>> {
    crate::error::check(
        response.error_code,
        || format!("fetch from broker {leader}"),
        None,
    )?;
    let mut out = Vec::new();
    for topic in response.responses {
        let name = topic.topic.0.to_string();
        for p in topic.partitions {
            out.push(FetchedPartition {
                tp: TopicPartition::new(name.clone(), p.partition_index),
                error_code: p.error_code,
                high_watermark: p.high_watermark,
                log_start_offset: p.log_start_offset,
                records: p.records.unwrap_or_default(),
            });
        }
    }
    Ok(out)
}

/// Group membership and commits.
impl Consumer {
    /// Subscribes to `topics` as a member of the consumer group `group_id`. The group is
    /// joined on the next [`Consumer::poll`], which from then on keeps the assignment current.
    /// Replaces any earlier subscription or assignment.
    pub fn subscribe<S: AsRef<str>>(&mut self, topics: &[S]) -> Result<()> {
        let Some(group_id) = self.config.group_id.clone() else {
            return Err(Error::Invalid(
                "subscribe needs a group_id in the ConsumerConfig".into(),
            ));
        };
        if topics.is_empty() {
            return Err(Error::Invalid("subscribe needs at least one topic".into()));
        }
        if self.config.assignors.is_empty() {
            return Err(Error::Invalid(
                "subscribe needs at least one assignor".into(),
            ));
        }
        let mut topics: Vec<String> = topics.iter().map(|t| t.as_ref().to_string()).collect();
        topics.sort();
        topics.dedup();
        self.subscription = topics;
        match &self.membership {
            Some(membership) => membership.request_rejoin(),
            None => {
                self.assign(Vec::new());
                self.membership = Some(Membership::new(
                    self.client.clone(),
                    MembershipConfig {
                        group_id,
                        group_instance_id: self.config.group_instance_id.clone(),
                        session_timeout_ms: self.config.session_timeout_ms,
                        rebalance_timeout_ms: self.config.rebalance_timeout_ms,
                        heartbeat_interval_ms: self.config.heartbeat_interval_ms,
                        assignors: self.config.assignors.clone(),
                    },
                ))
            }
        }
        Ok(())
    }

    /// The subscribed topics (empty when consuming by assignment).
    pub fn subscription(&self) -> &[String] {
        &self.subscription
    }

    /// This member's id and generation once it has joined its group.
    pub fn group_member(&self) -> Option<(String, i32)> {
        self.membership.as_ref().and_then(Membership::identity)
    }

    /// Joins the group now (rather than on the next poll) if a rebalance is due; returns the
    /// assignment.
    pub async fn join_group(&mut self) -> Result<Vec<TopicPartition>> {
        self.maintain_group().await?;
        Ok(self.assignment())
    }

    async fn maintain_group(&mut self) -> Result<()> {
        // A cooperative rebalance that revoked partitions needs a second one at once.
        for _ in 0..3 {
            let Some(membership) = &self.membership else {
                return Ok(());
            };
            if !membership.needs_rejoin() {
                break;
            }
            self.rebalance().await?;
        }
        if self.config.enable_auto_commit
            && self.last_auto_commit.elapsed()
                >= Duration::from_millis(self.config.auto_commit_interval_ms)
        {
            self.last_auto_commit = tokio::time::Instant::now();
            if let Err(error) = self.commit_positions(None).await {
                tracing::warn!(%error, "auto-commit failed");
            }
        }
        Ok(())
    }

    async fn rebalance(&mut self) -> Result<()> {
        let membership = self.membership.as_ref().expect("called with a membership");
        let cooperative = membership.cooperative();
        let lost = membership.take_lost();
        let owned = self.assignment();
        if lost {
            // Another member may own these now: drop them without committing.
            self.assign(Vec::new());
        } else if !cooperative && !owned.is_empty() {
            // Eager protocol: commit and revoke everything before joining.
            if self.config.enable_auto_commit {
                if let Err(error) = self.commit_positions(None).await {
                    tracing::warn!(%error, "commit before revoking failed");
                }
            }
            self.assign(Vec::new());
        }
        let owned = self.assignment();
        let topics = self.subscription.clone();
        let membership = self.membership.as_mut().expect("called with a membership");
        let joined = membership.join(&topics, &owned).await?;
        let revoked: Vec<TopicPartition> = owned
            .iter()
            .filter(|tp| !joined.assigned.contains(tp))
            .cloned()
            .collect();
        let added: Vec<TopicPartition> = joined
            .assigned
            .iter()
            .filter(|tp| !owned.contains(tp))
            .cloned()
            .collect();
        tracing::info!(group = %membership.group_id(), generation = joined.generation, assigned = joined.assigned.len(),
            added = added.len(), revoked = revoked.len(), "joined group");
        if membership.take_lost() {
            // The member was unknown to the coordinator during the join: its old positions are
            // stale, so every partition it gets starts again from the committed offsets.
            tracing::info!(group = %membership.group_id(), "membership was lost during the join; positions reset");
            self.assign(Vec::new());
        }
        let revoked = if self.assignment().is_empty() {
            Vec::new()
        } else {
            revoked
        };
        if !revoked.is_empty() {
            if self.config.enable_auto_commit {
                if let Err(error) = self.commit_positions(Some(&revoked)).await {
                    tracing::warn!(%error, "commit of revoked partitions failed");
                }
            }
            // Cooperative: the partitions go to their new owners in the next rebalance.
            self.membership
                .as_ref()
                .expect("still there")
                .request_rejoin();
        }
        self.assign(joined.assigned.clone());
        self.last_committed
            .retain(|tp, _| joined.assigned.contains(tp));
        self.seek_to_committed(&added).await
    }

    /// Moves `partitions` to their committed offsets; those without one start per
    /// `auto_offset_reset`.
    async fn seek_to_committed(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        if partitions.is_empty() {
            return Ok(());
        }
        let committed = self.committed(partitions).await?;
        for (tp, offset) in committed {
            if let Some(offset) = offset {
                self.seek(&tp, OffsetSpec::Offset(offset))?;
                self.last_committed.insert(tp, offset);
            }
        }
        Ok(())
    }

    fn group_id(&self) -> Result<&str> {
        self.config.group_id.as_deref().ok_or_else(|| {
            Error::Invalid("committing offsets needs a group_id in the ConsumerConfig".into())
        })
    }

    /// Commits the current position of every assigned partition (synchronously).
    pub async fn commit(&mut self) -> Result<()> {
        self.commit_positions(None).await
    }

    async fn commit_positions(&mut self, only: Option<&[TopicPartition]>) -> Result<()> {
        let offsets: BTreeMap<TopicPartition, i64> = self
            .partitions
            .iter()
            .filter(|(tp, _)| only.is_none_or(|only| only.contains(tp)))
            .filter_map(|(tp, state)| state.position.map(|p| (tp.clone(), p)))
            .filter(|(tp, p)| self.last_committed.get(tp) != Some(p))
            .collect();
        self.commit_offsets(&offsets).await
    }

    /// Commits `offsets` (per partition, the offset of the next record to read) for the
    /// group: as this member while it is in a generation, else as a group without members.
    pub async fn commit_offsets(&mut self, offsets: &BTreeMap<TopicPartition, i64>) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let group_id = self.group_id()?.to_string();
        let identity = self.membership.as_ref().and_then(Membership::identity);
        let instance = self
            .membership
            .as_ref()
            .and_then(|m| m.instance_id().map(String::from));
        let member = identity
            .as_ref()
            .map(|(id, generation)| (id.as_str(), *generation, instance.as_deref()));
        match group::commit_offsets(&self.client, &group_id, member, offsets).await {
            Ok(()) => {
                self.last_committed
                    .extend(offsets.iter().map(|(tp, o)| (tp.clone(), *o)));
                Ok(())
            }
            Err(error) => {
                if let Some(membership) = &self.membership {
                    membership.on_commit_error(&error);
                }
                Err(error)
            }
        }
    }

    /// The group's committed offsets of `partitions` (`None` where nothing is committed).
    pub async fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<BTreeMap<TopicPartition, Option<i64>>> {
        let group_id = self.group_id()?;
        let fetched = group::fetch_committed(&self.client, group_id, Some(partitions)).await?;
        Ok(partitions
            .iter()
            .map(|tp| (tp.clone(), fetched.get(tp).copied().filter(|o| *o >= 0)))
            .collect())
    }

    /// Commits (with auto-commit on) and leaves the group, so its partitions go to the other
    /// members at once rather than after the session timeout. A consumer by assignment only
    /// commits. The consumer can subscribe again afterwards.
    pub async fn close(&mut self) -> Result<()> {
        self.in_flight.clear();
        self.deferred_error = None;
        let mut first_error = None;
        if self.config.enable_auto_commit && self.config.group_id.is_some() {
            if let Err(error) = self.commit_positions(None).await {
                first_error.get_or_insert(error);
            }
        }
        if let Some(mut membership) = self.membership.take() {
            if let Err(error) = membership.leave().await {
                first_error.get_or_insert(error);
            }
            self.subscription.clear();
            self.assign(Vec::new());
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// A poll's fetched answers, applied and waiting to be decoded.
struct FetchRound {
    /// Partitions with complete batches, and the position to decode each from.
    to_decode: Vec<(FetchedPartition, i64)>,
    /// About how many records they hold.
    expected_records: usize,
    /// The first error met applying the answers.
    first_error: Option<Error>,
}

struct FetchedPartition {
    tp: TopicPartition,
    error_code: i16,
    high_watermark: i64,
    log_start_offset: i64,
    records: Bytes,
}

#[cfg(test)]
mod tests {
    use super::batch_reader::tests::checked_decode;
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    fn batch(base_offset: i64, count: i64, compression: Compression, control: bool) -> Bytes {
        let records: Vec<Record> = (0..count)
            .map(|i| Record {
                transactional: control,
                control,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: base_offset + i,
                sequence: (base_offset + i - 1) as i32,
                timestamp: 1000 + i,
                key: None,
                value: Some(Bytes::from(format!("v{}", base_offset + i))),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf.freeze()
    }

    fn values(out: &[ConsumerRecord]) -> Vec<String> {
        out.iter()
            .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn decodes_from_the_position_and_stops_at_a_partial_batch() {
        let tp = TopicPartition::new("t", 0);
        let mut bytes = BytesMut::new();
        bytes.extend_from_slice(&batch(0, 3, Compression::Gzip, false));
        bytes.extend_from_slice(&batch(3, 2, Compression::None, false));
        let third = batch(5, 2, Compression::None, false);
        bytes.extend_from_slice(&third[..third.len() - 1]);
        let mut out = Vec::new();
        let next = checked_decode(&tp, bytes.freeze(), 1, &mut out).unwrap();
        assert_eq!(next, 5);
        assert_eq!(values(&out), ["v1", "v2", "v3", "v4"]);
        assert_eq!(out[0].offset, 1);
        assert_eq!(out[0].timestamp_ms, 1001);
    }

    #[test]
    fn skips_control_batches_but_moves_past_them() {
        let tp = TopicPartition::new("t", 0);
        let mut bytes = BytesMut::new();
        bytes.extend_from_slice(&batch(0, 1, Compression::None, true));
        bytes.extend_from_slice(&batch(1, 1, Compression::None, false));
        let mut out = Vec::new();
        assert_eq!(checked_decode(&tp, bytes.freeze(), 0, &mut out).unwrap(), 2);
        assert_eq!(values(&out), ["v1"]);
    }

    #[test]
    fn rejects_absurd_record_counts_and_old_formats() {
        let tp = TopicPartition::new("t", 0);
        let mut bad = BytesMut::from(&batch(0, 1, Compression::None, false)[..]);
        bad[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        let error = checked_decode(&tp, bad.freeze(), 0, &mut Vec::new()).unwrap_err();
        assert!(error.to_string().contains("claims"), "{error}");
        let mut old = BytesMut::from(&batch(0, 1, Compression::None, false)[..]);
        old[16] = 1;
        let error = checked_decode(&tp, old.freeze(), 0, &mut Vec::new()).unwrap_err();
        assert!(error.to_string().contains("message format v1"), "{error}");
        let mut negative = BytesMut::from(&batch(0, 1, Compression::None, false)[..]);
        negative[8..12].copy_from_slice(&(-5i32).to_be_bytes());
        assert!(checked_decode(&tp, negative.freeze(), 0, &mut Vec::new()).is_err());
    }

    #[test]
    fn a_bit_flip_fails_the_crc() {
        let tp = TopicPartition::new("t", 0);
        let mut flipped = BytesMut::from(&batch(0, 2, Compression::None, false)[..]);
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let error = checked_decode(&tp, flipped.freeze(), 0, &mut Vec::new()).unwrap_err();
        assert!(error.to_string().contains("cannot decode"), "{error}");
    }

    /// With `check.crcs` off, a flipped value byte reads back as it is (the structure still
    /// holds); with it on, the same batch fails, both ways of decoding.
    #[test]
    fn check_crcs_off_reads_a_flipped_value_byte_and_on_fails_it() {
        let tp = TopicPartition::new("t", 0);
        let mut flipped = BytesMut::from(&batch(0, 2, Compression::None, false)[..]);
        // The last record ends with its value "v1" and a header count of 0.
        let value_end = flipped.len() - 1;
        assert_eq!(flipped[value_end - 1], b'1');
        flipped[value_end - 1] = b'9';
        let flipped = flipped.freeze();
        let mut records = Vec::new();
        assert_eq!(
            decode_records(&tp, flipped.clone(), 0, false, &mut records).unwrap(),
            2
        );
        let values: Vec<_> = records.iter().map(|r| r.value.clone().unwrap()).collect();
        assert_eq!(values, [&b"v0"[..], &b"v9"[..]]);
        let mut batches = Vec::new();
        assert_eq!(
            decode_batches(&tp, flipped.clone(), 0, false, &mut batches).unwrap(),
            2
        );
        assert_eq!(batches[0].records().count(), 2);
        let error = decode_records(&tp, flipped.clone(), 0, true, &mut Vec::new()).unwrap_err();
        assert!(error.to_string().contains("CRC-32C"), "{error}");
        let error = decode_batches(&tp, flipped, 0, true, &mut Vec::new()).unwrap_err();
        assert!(error.to_string().contains("CRC-32C"), "{error}");
    }

    /// Records of a transaction and its abort marker: the marker (a control batch) is moved
    /// past and the records come back, the same from `decode_records` and `decode_batches`
    /// (the consumer leaves aborted records to the broker's read_committed limit, and reads
    /// them with read_uncommitted, either way).
    #[test]
    fn transactional_batches_and_their_abort_marker_read_the_same_both_ways() {
        let tp = TopicPartition::new("t", 0);
        let transactional = |base_offset: i64, count: i64, control: bool, codec| {
            let records: Vec<Record> = (0..count)
                .map(|i| Record {
                    transactional: true,
                    control,
                    delete_horizon: false,
                    partition_leader_epoch: 0,
                    producer_id: 7,
                    producer_epoch: 1,
                    timestamp_type: TimestampType::Creation,
                    offset: base_offset + i,
                    sequence: (base_offset + i) as i32,
                    timestamp: 1000 + i,
                    key: control.then(|| Bytes::from_static(&[0, 0, 0, 0])),
                    value: Some(if control {
                        Bytes::from_static(&[0, 0, 0, 0, 0, 0])
                    } else {
                        Bytes::from(format!("v{}", base_offset + i))
                    }),
                    headers: Default::default(),
                })
                .collect();
            let mut buf = BytesMut::new();
            RecordBatchEncoder::encode(
                &mut buf,
                records.iter(),
                &RecordEncodeOptions {
                    version: 2,
                    compression: codec,
                },
            )
            .unwrap();
            buf.freeze()
        };
        let mut bytes = BytesMut::new();
        bytes.extend_from_slice(&transactional(0, 3, false, Compression::Lz4));
        bytes.extend_from_slice(&transactional(3, 1, true, Compression::None));
        bytes.extend_from_slice(&batch(4, 2, Compression::None, false));
        let mut out = Vec::new();
        assert_eq!(checked_decode(&tp, bytes.freeze(), 1, &mut out).unwrap(), 6);
        assert_eq!(values(&out), ["v1", "v2", "v4", "v5"]);
    }
}
