//! Fetch: stored batches, as they are, below the high watermark. A fetch that finds fewer than
//! `min_bytes` waits (a delayed operation) until an append to one of its partitions or
//! `max_wait_ms`, whichever comes first; it is woken by appends, never by polling.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::select_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use strom_storage::{FileRegion, ReadPlan, StorageError};

use crate::errors::storage_error_code;
use crate::partition::Partition;
use crate::state::{now_ms, BrokerState};

/// Longest a fetch may wait, whatever the client asks for.
const FETCH_WAIT_MS_MAX: u64 = 300_000;

/// Long waits end on a shared grid of this many milliseconds, so the deadlines of many idle
/// consumers expire together in one timer wake-up instead of one each (1,000 consumers polling
/// every 500 ms otherwise wake the broker ~870 times a second for ~2 expiries each).
const FETCH_WAIT_GRID_MS: u64 = 10;

/// Waits shorter than this keep their exact deadline: a consumer asking for a few milliseconds
/// is after latency, and a deadline moved by up to a grid step would matter to it.
const FETCH_WAIT_GRID_FROM_MS: u64 = 100;

/// The instant the deadline grid counts from: the first fetch's arrival in this process.
fn fetch_wait_epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// When a fetch that asked to wait `wait_ms` from `now` gives up. Long waits are moved earlier
/// (never later: `max_wait_ms` is a maximum) onto the [`FETCH_WAIT_GRID_MS`] grid counted
/// from `epoch`, by less than one grid step (under 10% of the wait).
fn fetch_deadline(now: Instant, wait_ms: u64, epoch: Instant) -> Instant {
    let exact = now + Duration::from_millis(wait_ms.min(FETCH_WAIT_MS_MAX));
    if wait_ms < FETCH_WAIT_GRID_FROM_MS {
        return exact;
    }
    let since_epoch_ns = exact.saturating_duration_since(epoch).as_nanos();
    let past_grid_ns = since_epoch_ns % u128::from(FETCH_WAIT_GRID_MS * 1_000_000);
    exact - Duration::from_nanos(past_grid_ns as u64)
}

struct Target {
    topic_index: usize,
    index: i32,
    fetch_offset: i64,
    partition_max_bytes: usize,
    current_leader_epoch: i32,
    partition: Result<Arc<Partition>, i16>,
}

/// Answers a fetch; the flag says whether it is a catch-up read (one of its partitions is
/// read from at least `fetch_catchup_lag_bytes` behind its end, not counting what it received
/// within `fetch_catchup_tail_ms`), whose bytes were read on the catch-up threads and should
/// be written by them too.
pub async fn handle(
    state: &BrokerState,
    version: i16,
    request: FetchRequest,
) -> (FetchResponse, bool) {
    let wait_ms = request.max_wait_ms.max(0) as u64;
    let deadline = fetch_deadline(Instant::now(), wait_ms, fetch_wait_epoch());
    let response_bytes_max = if request.max_bytes <= 0 {
        state.config.fetch_response_bytes_max
    } else {
        (request.max_bytes as usize).min(state.config.fetch_response_bytes_max)
    };
    let min_bytes = request.min_bytes.max(0) as usize;
    let image = state.image();
    let mut topics: Vec<(TopicName, Uuid)> = Vec::with_capacity(request.topics.len());
    let mut targets = Vec::new();
    for topic in request.topics {
        let name = if version >= 13 {
            image
                .topic_by_id(&topic.topic_id)
                .map(|t| super::topic_name(&t.name))
                .unwrap_or_default()
        } else {
            topic.topic.clone()
        };
        let topic_index = topics.len();
        for p in topic.partitions {
            let partition = state.replicas.get(&name, p.partition).ok_or_else(|| {
                if image
                    .topic(&name)
                    .is_some_and(|t| (p.partition as usize) < t.partitions.len())
                {
                    ResponseError::NotLeaderOrFollower.code()
                } else if version >= 13 {
                    ResponseError::UnknownTopicId.code()
                } else {
                    ResponseError::UnknownTopicOrPartition.code()
                }
            });
            targets.push(Target {
                topic_index,
                index: p.partition,
                fetch_offset: p.fetch_offset,
                partition_max_bytes: p.partition_max_bytes.max(0) as usize,
                current_leader_epoch: p.current_leader_epoch,
                partition,
            });
        }
        topics.push((name, topic.topic_id));
    }
    loop {
        // Subscribe before reading so an append between the read and the wait still wakes us.
        let mut receivers: Vec<watch::Receiver<i64>> = targets
            .iter()
            .filter_map(|t| t.partition.as_ref().ok().map(|p| p.subscribe()))
            .collect();
        let planned = plan_partitions(state, &targets, response_bytes_max);
        let waited_enough = wait_ms == 0 || Instant::now() >= deadline;
        if planned.bytes_total >= min_bytes
            || planned.any_error
            || waited_enough
            || receivers.is_empty()
        {
            return read_planned(state, topics, planned).await;
        }
        if !wait_for_append(&mut receivers, deadline).await {
            let planned = plan_partitions(state, &targets, response_bytes_max);
            return read_planned(state, topics, planned).await;
        }
    }
}

/// Waits until one of the receivers sees an append (true) or the deadline passes (false).
/// One partition (the usual consumer fetch) is awaited directly, without boxing a future and
/// selecting over a list of one.
async fn wait_for_append(receivers: &mut [watch::Receiver<i64>], deadline: Instant) -> bool {
    match receivers {
        [one] => tokio::time::timeout_at(deadline, one.changed())
            .await
            .is_ok(),
        many => {
            let changed = select_all(many.iter_mut().map(|r| Box::pin(r.changed())));
            tokio::time::timeout_at(deadline, changed).await.is_ok()
        }
    }
}

/// Every partition's answer, with the regions still to be read into it.
struct Planned {
    partitions: Vec<(usize, PartitionData, Vec<FileRegion>)>,
    bytes_total: usize,
    any_error: bool,
    /// The largest distance, in bytes, between a read's start and its partition's log end,
    /// less what the partition received within `fetch_catchup_tail_ms`.
    lag_bytes_max: u64,
}

fn plan_partitions(state: &BrokerState, targets: &[Target], response_bytes_max: usize) -> Planned {
    let tail_ms = state.config.fetch_catchup_tail_ms;
    let now = now_ms();
    let mut planned = Planned {
        partitions: Vec::with_capacity(targets.len()),
        bytes_total: 0,
        any_error: false,
        lag_bytes_max: 0,
    };
    for target in targets {
        let mut data = PartitionData::default();
        data.partition_index = target.index;
        let mut regions = Vec::new();
        match &target.partition {
            Err(code) => {
                data.error_code = *code;
                data.high_watermark = -1;
            }
            Ok(partition) => {
                let remaining = response_bytes_max.saturating_sub(planned.bytes_total);
                let plan = plan_one(
                    partition,
                    target,
                    remaining,
                    planned.bytes_total == 0,
                    &mut data,
                );
                planned.bytes_total += plan
                    .regions
                    .iter()
                    .map(FileRegion::len_bytes)
                    .sum::<usize>();
                let recent_bytes = if tail_ms > 0 && plan.lag_bytes > 0 {
                    partition.recent_appends.lock().bytes_within(now, tail_ms)
                } else {
                    0
                };
                let lag_bytes = plan.lag_bytes.saturating_sub(recent_bytes);
                planned.lag_bytes_max = planned.lag_bytes_max.max(lag_bytes);
                regions = plan.regions;
            }
        }
        planned.any_error |= data.error_code != 0;
        planned.partitions.push((target.topic_index, data, regions));
    }
    planned
}

/// Fills in the partition's offsets and plans its read, under the log's lock; the bytes are
/// read afterwards without it, so a large or cold read never holds up appends.
fn plan_one(
    partition: &Partition,
    target: &Target,
    remaining_bytes: usize,
    min_one_batch: bool,
    data: &mut PartitionData,
) -> ReadPlan {
    let leader_epoch = partition.leader_epoch();
    if target.current_leader_epoch >= 0 && target.current_leader_epoch != leader_epoch {
        data.error_code = if target.current_leader_epoch < leader_epoch {
            ResponseError::FencedLeaderEpoch.code()
        } else {
            ResponseError::UnknownLeaderEpoch.code()
        };
        return ReadPlan::default();
    }
    let log = partition.log.lock();
    let high_watermark = log.high_watermark();
    data.high_watermark = high_watermark;
    data.last_stable_offset = high_watermark;
    data.log_start_offset = log.log_start_offset();
    let max_bytes = target.partition_max_bytes.min(remaining_bytes);
    match log.read_regions(
        target.fetch_offset,
        max_bytes,
        high_watermark,
        min_one_batch && max_bytes > 0,
    ) {
        Ok(plan) => plan,
        Err(error) => {
            data.error_code = storage_error_code(&error);
            data.records = Some(Bytes::new());
            ReadPlan::default()
        }
    }
}

/// Reads the planned regions into the partitions' records, on the catch-up threads when the
/// fetch is a catch-up read, and builds the response.
async fn read_planned(
    state: &BrokerState,
    topics: Vec<(TopicName, Uuid)>,
    planned: Planned,
) -> (FetchResponse, bool) {
    let threshold_bytes = state.config.fetch_catchup_lag_bytes;
    let catch_up = threshold_bytes > 0 && planned.lag_bytes_max >= threshold_bytes;
    let (mut answers, reads): (Vec<(usize, PartitionData)>, Vec<Vec<FileRegion>>) = planned
        .partitions
        .into_iter()
        .map(|(topic_index, data, regions)| ((topic_index, data), regions))
        .unzip();
    let read = if catch_up {
        let planned_bytes = reads.iter().flatten().map(FileRegion::len_bytes).sum();
        let wait = state.catch_up_budget.reserve(planned_bytes);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        state
            .catch_up
            .run(move || reads.iter().map(|r| read_regions(r)).collect::<Vec<_>>())
            .await
    } else {
        Ok(reads.iter().map(|r| read_regions(r)).collect())
    };
    match read {
        Ok(bytes) => {
            for ((_, data), bytes) in answers.iter_mut().zip(bytes) {
                if data.error_code != 0 {
                    continue;
                }
                match bytes {
                    Ok(bytes) => data.records = Some(bytes),
                    Err(error) => {
                        tracing::warn!(%error, "fetch read failed");
                        data.error_code = storage_error_code(&error);
                        data.records = Some(Bytes::new());
                    }
                }
            }
        }
        Err(lost) => {
            tracing::error!(%lost, "catch-up fetch read lost");
            for (_, data) in answers.iter_mut().filter(|(_, d)| d.error_code == 0) {
                data.error_code = ResponseError::UnknownServerError.code();
                data.records = Some(Bytes::new());
            }
        }
    }
    (build_response(topics, answers), catch_up)
}

/// Reads planned regions into one buffer (not zeroed first).
fn read_regions(regions: &[FileRegion]) -> Result<Bytes, StorageError> {
    let planned: usize = regions.iter().map(FileRegion::len_bytes).sum();
    let mut bytes = Vec::with_capacity(planned);
    for region in regions {
        region.read_into(&mut bytes)?;
    }
    Ok(Bytes::from(bytes))
}

fn build_response(
    topics: Vec<(TopicName, Uuid)>,
    partitions: Vec<(usize, PartitionData)>,
) -> FetchResponse {
    let mut responses: Vec<FetchableTopicResponse> = topics
        .into_iter()
        .map(|(name, topic_id)| {
            let mut topic = FetchableTopicResponse::default();
            topic.topic = name;
            topic.topic_id = topic_id;
            topic
        })
        .collect();
    for (topic_index, data) in partitions {
        if let Some(topic) = responses.get_mut(topic_index) {
            topic.partitions.push(data);
        }
    }
    let mut response = FetchResponse::default();
    response.responses = responses;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_waits_keep_their_exact_deadline() {
        let epoch = Instant::now();
        let now = epoch + Duration::from_micros(12_345);
        for wait_ms in [0, 1, 5, FETCH_WAIT_GRID_FROM_MS - 1] {
            assert_eq!(
                fetch_deadline(now, wait_ms, epoch),
                now + Duration::from_millis(wait_ms)
            );
        }
    }

    #[test]
    fn long_waits_end_on_the_grid_never_later_and_less_than_a_step_earlier() {
        let epoch = Instant::now();
        let step = Duration::from_millis(FETCH_WAIT_GRID_MS);
        let mut deadlines = std::collections::BTreeSet::new();
        // 1,000 fetches arriving 37 µs apart within one grid step's worth of spread.
        for i in 0..1_000u64 {
            let now = epoch + Duration::from_micros(1_000_000 + i * 37);
            for wait_ms in [FETCH_WAIT_GRID_FROM_MS, 500, 5_000, FETCH_WAIT_MS_MAX + 1] {
                let exact = now + Duration::from_millis(wait_ms.min(FETCH_WAIT_MS_MAX));
                let deadline = fetch_deadline(now, wait_ms, epoch);
                assert!(deadline <= exact);
                assert!(exact - deadline < step);
                assert_eq!((deadline - epoch).as_nanos() % step.as_nanos(), 0);
                if wait_ms == 500 {
                    deadlines.insert(deadline);
                }
            }
        }
        // 37 ms of arrivals share 4 or 5 expiry instants instead of 1,000.
        assert!(
            deadlines.len() <= 5,
            "{} distinct deadlines",
            deadlines.len()
        );
    }
}
