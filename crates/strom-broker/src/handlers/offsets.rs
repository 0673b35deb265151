//! ListOffsets, DeleteRecords, OffsetForLeaderEpoch and DescribeLogDirs: questions about
//! offsets and sizes of hosted partitions.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    DeleteRecordsRequest, DeleteRecordsResponse, DescribeLogDirsRequest, DescribeLogDirsResponse,
    ListOffsetsRequest, ListOffsetsResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
};

use strom_storage::RetiredFiles;

use super::{str_bytes, topic_name};
use crate::errors::storage_error_code;
use crate::partition::Partition;
use crate::state::BrokerState;

/// ListOffsets special timestamps.
const LATEST_TIMESTAMP: i64 = -1;
const EARLIEST_TIMESTAMP: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL_TIMESTAMP: i64 = -4;

/// Finds a hosted partition this node leads, or the error code to answer with.
fn leader_partition(
    state: &BrokerState,
    topic: &str,
    index: i32,
    current_leader_epoch: i32,
) -> Result<Arc<Partition>, i16> {
    let Some(partition) = state.replicas.get(topic, index) else {
        let exists = state
            .image()
            .topic(topic)
            .is_some_and(|t| (index as usize) < t.partitions.len());
        return Err(if exists {
            ResponseError::NotLeaderOrFollower.code()
        } else {
            ResponseError::UnknownTopicOrPartition.code()
        });
    };
    let leadership = partition.leadership.read().clone();
    if leadership.leader != state.node_id() {
        return Err(ResponseError::NotLeaderOrFollower.code());
    }
    if current_leader_epoch >= 0 && current_leader_epoch < leadership.leader_epoch {
        return Err(ResponseError::FencedLeaderEpoch.code());
    }
    if current_leader_epoch > leadership.leader_epoch {
        return Err(ResponseError::UnknownLeaderEpoch.code());
    }
    Ok(partition)
}

pub fn list_offsets(
    state: &BrokerState,
    version: i16,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let read_committed = request.isolation_level == 1;
    let mut response = ListOffsetsResponse::default();
    for topic in request.topics {
        let mut topic_response = ListOffsetsTopicResponse::default();
        topic_response.name = topic.name.clone();
        for p in topic.partitions {
            let mut result = ListOffsetsPartitionResponse::default();
            result.partition_index = p.partition_index;
            result.timestamp = -1;
            result.offset = -1;
            result.leader_epoch = -1;
            match leader_partition(
                state,
                &topic.name,
                p.partition_index,
                p.current_leader_epoch,
            ) {
                Err(code) => result.error_code = code,
                Ok(partition) => {
                    let leader_epoch = partition.leader_epoch();
                    let log = partition.log.lock();
                    let found = match p.timestamp {
                        LATEST_TIMESTAMP => Ok(Some((-1, log.high_watermark()))),
                        EARLIEST_TIMESTAMP | EARLIEST_LOCAL_TIMESTAMP => {
                            Ok(Some((-1, log.log_start_offset())))
                        }
                        MAX_TIMESTAMP => Ok(log.max_timestamp_and_offset()),
                        timestamp if timestamp >= 0 => log
                            .offset_for_timestamp(timestamp)
                            .map(|found| found.map(|(offset, ts)| (ts, offset))),
                        other => {
                            tracing::debug!(timestamp = other, "unsupported ListOffsets timestamp");
                            Ok(None)
                        }
                    };
                    let _ = read_committed; // no transactions yet: the last stable offset is the high watermark
                    match found {
                        Ok(Some((timestamp, offset))) => {
                            result.timestamp = timestamp;
                            result.offset = offset;
                            if version >= 4 {
                                result.leader_epoch = leader_epoch;
                            }
                        }
                        Ok(None) => {}
                        Err(error) => result.error_code = storage_error_code(&error),
                    }
                }
            }
            topic_response.partitions.push(result);
        }
        response.topics.push(topic_response);
    }
    response
}

pub fn delete_records(state: &BrokerState, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut response = DeleteRecordsResponse::default();
    for topic in request.topics {
        let mut topic_result = DeleteRecordsTopicResult::default();
        topic_result.name = topic.name.clone();
        for p in topic.partitions {
            let mut result = DeleteRecordsPartitionResult::default();
            result.partition_index = p.partition_index;
            result.low_watermark = -1;
            match leader_partition(state, &topic.name, p.partition_index, -1) {
                Err(code) => result.error_code = code,
                Ok(partition) if !partition.rules.read().deletable => {
                    let _ = partition;
                    result.error_code = ResponseError::PolicyViolation.code();
                }
                Ok(partition) => {
                    let mut log = partition.log.lock();
                    // -1 means "up to the high watermark".
                    let offset = if p.offset == -1 {
                        log.high_watermark()
                    } else {
                        p.offset
                    };
                    if offset < 0 || offset > log.high_watermark() {
                        result.error_code = ResponseError::OffsetOutOfRange.code();
                    } else {
                        match log.delete_records_before(offset) {
                            Ok(low_watermark) => result.low_watermark = low_watermark,
                            Err(error) => result.error_code = storage_error_code(&error),
                        }
                        let retired = log.take_retired_files();
                        drop(log);
                        unlink_in_background(retired, &topic.name, p.partition_index);
                    }
                }
            }
            topic_result.partitions.push(result);
        }
        response.topics.push(topic_result);
    }
    response
}

/// Unlinks segment files DeleteRecords retired, off the async workers and without the
/// partition's lock: on a file system mounted with `discard` an unlink trims the file's blocks
/// inside the call (~150 ms per GiB measured here). Without a runtime (unit tests), inline.
fn unlink_in_background(retired: RetiredFiles, topic: &str, partition: i32) {
    if retired.is_empty() {
        return;
    }
    let topic = topic.to_string();
    let unlink = move || {
        if let Err(error) = retired.delete() {
            tracing::error!(%topic, partition, %error, "deleting segment files after DeleteRecords failed");
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(unlink)),
        Err(_) => unlink(),
    }
}

pub fn offset_for_leader_epoch(
    state: &BrokerState,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let mut response = OffsetForLeaderEpochResponse::default();
    for topic in request.topics {
        let mut topic_result = OffsetForLeaderTopicResult::default();
        topic_result.topic = topic.topic.clone();
        for p in topic.partitions {
            let mut result = EpochEndOffset::default();
            result.partition = p.partition;
            result.leader_epoch = -1;
            result.end_offset = -1;
            match leader_partition(state, &topic.topic, p.partition, p.current_leader_epoch) {
                Err(code) => result.error_code = code,
                Ok(partition) => {
                    let current_epoch = partition.leader_epoch();
                    let log = partition.log.lock();
                    let found = if p.leader_epoch >= current_epoch {
                        // The current epoch (or a future one a confused client asks about)
                        // ends at the log end offset.
                        (p.leader_epoch == current_epoch)
                            .then(|| (current_epoch, log.log_end_offset()))
                    } else {
                        log.end_offset_for_epoch(p.leader_epoch)
                    };
                    if let Some((epoch, end_offset)) = found {
                        result.leader_epoch = epoch;
                        result.end_offset = end_offset;
                    }
                }
            }
            topic_result.partitions.push(result);
        }
        response.topics.push(topic_result);
    }
    response
}

pub fn describe_log_dirs(
    state: &BrokerState,
    _version: i16,
    request: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    let wanted: Option<BTreeMap<String, Vec<i32>>> = request.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.topic.to_string(), t.partitions))
            .collect()
    });
    let mut by_topic: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for partition in state.replicas.all() {
        let included = wanted.as_ref().is_none_or(|w| {
            w.get(&partition.topic)
                .is_some_and(|ps| ps.contains(&partition.index))
        });
        if !included {
            continue;
        }
        let mut entry = DescribeLogDirsPartition::default();
        entry.partition_index = partition.index;
        let log = partition.log.lock();
        entry.partition_size = log.size_bytes() as i64;
        entry.offset_lag = 0;
        by_topic
            .entry(partition.topic.clone())
            .or_default()
            .push(entry);
    }
    let dir = std::fs::canonicalize(&state.config.data_dir)
        .unwrap_or_else(|_| state.config.data_dir.clone());
    let (total_bytes, usable_bytes) = volume_bytes(&dir);
    let mut result = DescribeLogDirsResult::default();
    result.log_dir = str_bytes(&dir.display().to_string());
    result.total_bytes = total_bytes;
    result.usable_bytes = usable_bytes;
    result.topics = by_topic
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_by_key(|p| p.partition_index);
            let mut topic = DescribeLogDirsTopic::default();
            topic.name = topic_name(&name);
            topic.partitions = partitions;
            topic
        })
        .collect();
    let mut response = DescribeLogDirsResponse::default();
    response.results = vec![result];
    response
}

/// Total and free bytes of the file system holding `dir`; -1 when unknown.
fn volume_bytes(dir: &std::path::Path) -> (i64, i64) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return (-1, -1);
    };
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid NUL-terminated string and `stat` a writable statvfs.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return (-1, -1);
    }
    let block = stat.f_frsize as i64;
    (stat.f_blocks as i64 * block, stat.f_bavail as i64 * block)
}
