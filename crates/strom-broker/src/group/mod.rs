//! The group coordinator: classic consumer groups (join, sync, heartbeat, leave), committed
//! offsets, and their durability as records in the compacted internal topic
//! `__consumer_offsets`, reloaded when the broker starts.
//!
//! One home for the concept: handlers translate requests and call [`GroupCoordinator`];
//! the state machine is in [`state`], the record formats in [`records`].
//!
//! Durability: a change is appended to the group's `__consumer_offsets` partition (acks=all
//! semantics: on one node the high watermark moves with the append) before the in-memory state
//! answers with it. A group maps to partition `abs(hash(group_id)) % partitions`, Kafka's rule.

pub mod consumer;
pub mod records;
pub mod state;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use parking_lot::Mutex;
use strom_metadata::ControllerError;
use strom_storage::batch::batches;

use crate::partition::{Partition, ReplicaManager};
use crate::state::{now_ms, BrokerState};
pub use records::OffsetValue;
use records::{CoordinatorRecord, OffsetKey};
use state::{Group, GroupState, GroupTimings, JoinOutcome, JoinRequest, Reply, SyncOutcome};

/// The internal topic holding group metadata and offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Settings of the group coordinator.
#[derive(Debug, Clone, Copy)]
pub struct GroupConfig {
    /// Partitions of `__consumer_offsets` when it is created.
    pub offsets_topic_num_partitions: i32,
    /// `segment.bytes` of `__consumer_offsets`.
    pub offsets_topic_segment_bytes: i64,
    /// Timers of the state machine.
    pub timings: GroupTimings,
    /// How long offsets of an empty group are kept (`offsets.retention.minutes`, in ms).
    pub offsets_retention_ms: i64,
    /// Largest commit metadata string.
    pub offset_metadata_max_bytes: usize,
    /// Timers of KIP-848 consumer groups.
    pub consumer_timings: consumer::ConsumerGroupTimings,
}

/// One offset commit of a partition.
#[derive(Debug, Clone)]
pub struct OffsetCommit {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Leader epoch, -1 if unknown.
    pub leader_epoch: i32,
    /// Metadata.
    pub metadata: Option<String>,
}

/// A summary of a group for ListGroups.
#[derive(Debug, Clone)]
pub struct GroupListing {
    /// Group id.
    pub group_id: String,
    /// Protocol type.
    pub protocol_type: String,
    /// State name.
    pub state: &'static str,
    /// Group type (`classic`).
    pub group_type: &'static str,
}

/// A full description of a group for DescribeGroups.
#[derive(Debug, Clone)]
pub struct GroupDescription {
    /// Error code (0, or GROUP_ID_NOT_FOUND for an unknown group).
    pub error_code: i16,
    /// State name.
    pub state: &'static str,
    /// Protocol type.
    pub protocol_type: String,
    /// Protocol name.
    pub protocol_name: String,
    /// Members: id, instance id, client id, host, metadata, assignment.
    pub members: Vec<MemberDescription>,
}

/// A member in a description.
#[derive(Debug, Clone)]
pub struct MemberDescription {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Subscription metadata.
    pub metadata: Bytes,
    /// Assignment.
    pub assignment: Bytes,
}

/// The group coordinator of this node.
#[derive(Debug)]
pub struct GroupCoordinator {
    config: GroupConfig,
    groups: Mutex<HashMap<String, Group>>,
    member_counter: std::sync::atomic::AtomicU64,
}

impl GroupCoordinator {
    /// A coordinator with no groups loaded.
    pub fn new(config: GroupConfig) -> GroupCoordinator {
        GroupCoordinator {
            config,
            groups: Mutex::new(HashMap::new()),
            member_counter: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Creates `__consumer_offsets` if it does not exist, then loads every group from it.
    pub fn start(&self, state: &BrokerState) -> Result<(), String> {
        if state.image().topic(OFFSETS_TOPIC).is_none() {
            let configs = BTreeMap::from([
                ("cleanup.policy".to_string(), "compact".to_string()),
                (
                    "segment.bytes".to_string(),
                    self.config.offsets_topic_segment_bytes.to_string(),
                ),
            ]);
            match state.with_controller(|c| {
                c.create_topic(
                    OFFSETS_TOPIC,
                    self.config.offsets_topic_num_partitions,
                    1,
                    &configs,
                    false,
                )
            }) {
                Ok(_) | Err(ControllerError::TopicAlreadyExists(_)) => {}
                Err(error) => return Err(format!("cannot create {OFFSETS_TOPIC}: {error}")),
            }
        }
        self.load(&state.replicas)
    }

    fn load(&self, replicas: &ReplicaManager) -> Result<(), String> {
        let started = Instant::now();
        let mut records_loaded = 0usize;
        let mut groups = self.groups.lock();
        let now = Instant::now();
        let wall = now_ms();
        for partition in replicas.all().iter().filter(|p| p.topic == OFFSETS_TOPIC) {
            let log = partition.log.lock();
            let mut offset = log.log_start_offset();
            let end = log.high_watermark();
            while offset < end {
                let chunk = log
                    .read(offset, 1 << 20, end, true)
                    .map_err(|e| format!("reading {OFFSETS_TOPIC}-{}: {e}", partition.index))?;
                if chunk.is_empty() {
                    break;
                }
                for batch in batches(&chunk) {
                    let (header, bytes) = batch.map_err(|e| e.to_string())?;
                    offset = header.next_offset();
                    if header.is_control() {
                        continue;
                    }
                    let mut cursor = Bytes::copy_from_slice(bytes);
                    let set = RecordBatchDecoder::decode(&mut cursor)
                        .map_err(|e| format!("decoding {OFFSETS_TOPIC}: {e:#}"))?;
                    for record in set.records {
                        let Some(key) = record.key.as_deref() else {
                            continue;
                        };
                        match records::decode(key, record.value.as_deref()) {
                            Ok(decoded) => {
                                records_loaded += 1;
                                apply_record(&mut groups, decoded, now, wall);
                            }
                            Err(error) => tracing::warn!(%error, "skipping record"),
                        }
                    }
                }
            }
        }
        groups.retain(|_, g| !g.is_empty_and_unused());
        tracing::info!(
            groups = groups.len(),
            records_loaded,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "group coordinator loaded"
        );
        Ok(())
    }

    fn new_member_id(&self, client_id: &str) -> String {
        let n = self
            .member_counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("{client_id}-{}-{n}", uuid::Uuid::new_v4().simple())
    }

    /// The `__consumer_offsets` partition of a group, Kafka's rule.
    pub fn partition_for(&self, state: &BrokerState, group_id: &str) -> Option<i32> {
        let partitions = state.image().topic(OFFSETS_TOPIC)?.partitions.len() as i32;
        (partitions > 0).then(|| java_abs(java_string_hash(group_id)) % partitions)
    }

    fn offsets_partition(
        &self,
        state: &BrokerState,
        group_id: &str,
    ) -> Result<Arc<Partition>, i16> {
        self.partition_for(state, group_id)
            .and_then(|p| state.replicas.get(OFFSETS_TOPIC, p))
            .ok_or(ResponseError::CoordinatorNotAvailable.code())
    }

    /// Whether this node coordinates the group (it leads its offsets partition).
    pub fn coordinates(&self, state: &BrokerState, group_id: &str) -> Result<(), i16> {
        let partition = self.offsets_partition(state, group_id)?;
        if partition.leadership.read().leader == state.node_id() {
            Ok(())
        } else {
            Err(ResponseError::NotCoordinator.code())
        }
    }

    /// JoinGroup.
    pub async fn join(
        &self,
        state: &BrokerState,
        group_id: &str,
        request: JoinRequest,
    ) -> JoinOutcome {
        if let Err(code) = self.check_group(state, group_id) {
            return JoinOutcome {
                error_code: code,
                generation_id: -1,
                member_id: request.member_id,
                ..JoinOutcome::default()
            };
        }
        let reply = {
            let mut groups = self.groups.lock();
            if !request.member_id.is_empty() && !groups.contains_key(group_id) {
                return JoinOutcome {
                    error_code: ResponseError::UnknownMemberId.code(),
                    generation_id: -1,
                    member_id: request.member_id,
                    ..JoinOutcome::default()
                };
            }
            let group = groups
                .entry(group_id.to_string())
                .or_insert_with(|| Group::new(group_id, now_ms()));
            if group.is_active_consumer_group() {
                return JoinOutcome {
                    error_code: ResponseError::InconsistentGroupProtocol.code(),
                    generation_id: -1,
                    member_id: request.member_id,
                    ..JoinOutcome::default()
                };
            }
            group.consumer = None;
            let client_id = request.client_id.clone();
            let reply = group.join(
                request,
                || self.new_member_id(&client_id),
                &self.config.timings,
                Instant::now(),
                now_ms(),
            );
            self.persist_if_dirty(state, group);
            reply
        };
        match reply {
            Reply::Now(outcome) => outcome,
            Reply::Later(receiver) => receiver.await.unwrap_or_else(|_| JoinOutcome {
                error_code: ResponseError::UnknownMemberId.code(),
                generation_id: -1,
                ..JoinOutcome::default()
            }),
        }
    }

    /// SyncGroup.
    #[allow(clippy::too_many_arguments)]
    pub async fn sync(
        &self,
        state: &BrokerState,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncOutcome {
        let fail = |error_code| SyncOutcome {
            error_code,
            ..SyncOutcome::default()
        };
        if let Err(code) = self.check_group(state, group_id) {
            return fail(code);
        }
        let reply = {
            let mut groups = self.groups.lock();
            let Some(group) = groups.get_mut(group_id) else {
                return fail(ResponseError::UnknownMemberId.code());
            };
            let reply = group.sync(
                member_id,
                group_instance_id,
                generation_id,
                protocol_type,
                protocol_name,
                assignments,
                Instant::now(),
                now_ms(),
            );
            self.persist_if_dirty(state, group);
            reply
        };
        match reply {
            Reply::Now(outcome) => outcome,
            Reply::Later(receiver) => receiver
                .await
                .unwrap_or_else(|_| fail(ResponseError::RebalanceInProgress.code())),
        }
    }

    /// Heartbeat; returns the error code.
    pub fn heartbeat(
        &self,
        state: &BrokerState,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> i16 {
        if let Err(code) = self.check_group(state, group_id) {
            return code;
        }
        let mut groups = self.groups.lock();
        match groups.get_mut(group_id) {
            None => ResponseError::UnknownMemberId.code(),
            Some(group) => {
                group.heartbeat(member_id, group_instance_id, generation_id, Instant::now())
            }
        }
    }

    /// LeaveGroup for several members; returns the group error and one code per member.
    pub fn leave(
        &self,
        state: &BrokerState,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> (i16, Vec<i16>) {
        if let Err(code) = self.check_group(state, group_id) {
            return (code, Vec::new());
        }
        let mut groups = self.groups.lock();
        let Some(group) = groups.get_mut(group_id) else {
            return (
                ResponseError::UnknownMemberId.code(),
                vec![ResponseError::UnknownMemberId.code(); members.len()],
            );
        };
        let codes = members
            .iter()
            .map(|(member_id, instance)| {
                group.leave(
                    member_id,
                    instance.as_deref(),
                    &self.config.timings,
                    Instant::now(),
                    now_ms(),
                )
            })
            .collect();
        self.persist_if_dirty(state, group);
        (0, codes)
    }

    /// OffsetCommit: the group-level error, or one code per offset.
    pub fn commit_offsets(
        &self,
        state: &BrokerState,
        group_id: &str,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        offsets: &[OffsetCommit],
    ) -> Result<Vec<i16>, i16> {
        self.check_group(state, group_id)?;
        let partition = self.offsets_partition(state, group_id)?;
        let mut groups = self.groups.lock();
        if !groups.contains_key(group_id) {
            if generation_id >= 0 || !member_id.is_empty() {
                return Err(if generation_id >= 0 {
                    ResponseError::IllegalGeneration.code()
                } else {
                    ResponseError::UnknownMemberId.code()
                });
            }
            groups.insert(group_id.to_string(), Group::new(group_id, now_ms()));
        }
        let Some(group) = groups.get_mut(group_id) else {
            return Err(ResponseError::CoordinatorNotAvailable.code());
        };
        match &group.consumer {
            Some(consumer) => consumer.authorize_commit(member_id, generation_id)?,
            None => group.authorize_commit(
                member_id,
                group_instance_id,
                generation_id,
                Instant::now(),
            )?,
        }
        let image = state.image();
        let commit_timestamp_ms = now_ms();
        let mut codes = Vec::with_capacity(offsets.len());
        let mut accepted = Vec::new();
        for commit in offsets {
            let metadata = commit.metadata.clone().unwrap_or_default();
            let known = image.topic(&commit.topic).is_some_and(|t| {
                commit.partition >= 0 && (commit.partition as usize) < t.partitions.len()
            });
            let code = if !known {
                ResponseError::UnknownTopicOrPartition.code()
            } else if metadata.len() > self.config.offset_metadata_max_bytes {
                ResponseError::OffsetMetadataTooLarge.code()
            } else {
                let key = OffsetKey {
                    group: group_id.to_string(),
                    topic: commit.topic.clone(),
                    partition: commit.partition,
                };
                let value = OffsetValue {
                    offset: commit.offset,
                    leader_epoch: commit.leader_epoch,
                    metadata,
                    commit_timestamp_ms,
                };
                accepted.push((key, value));
                0
            };
            codes.push(code);
        }
        if accepted.is_empty() {
            return Ok(codes);
        }
        let batch: Vec<(Bytes, Option<Bytes>)> = accepted
            .iter()
            .map(|(key, value)| (key.encode(), Some(value.encode())))
            .collect();
        if let Err(code) = append_records(state, &partition, &batch) {
            return Ok(codes
                .into_iter()
                .map(|c| if c == 0 { code } else { c })
                .collect());
        }
        for (key, value) in accepted {
            group.offsets.insert((key.topic, key.partition), value);
        }
        Ok(codes)
    }

    /// OffsetFetch for one group: `(topic, partition, offset value)`; `None` topics = all.
    #[allow(clippy::type_complexity)]
    pub fn fetch_offsets(
        &self,
        state: &BrokerState,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<(String, Vec<(i32, Option<OffsetValue>)>)>, i16> {
        self.check_group(state, group_id)?;
        let groups = self.groups.lock();
        let offsets = groups.get(group_id).map(|g| &g.offsets);
        let result = match topics {
            Some(topics) => topics
                .into_iter()
                .map(|(topic, partitions)| {
                    let values = partitions
                        .into_iter()
                        .map(|p| (p, offsets.and_then(|o| o.get(&(topic.clone(), p))).cloned()))
                        .collect();
                    (topic, values)
                })
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<(i32, Option<OffsetValue>)>> =
                    BTreeMap::new();
                for ((topic, partition), value) in offsets.into_iter().flatten() {
                    by_topic
                        .entry(topic.clone())
                        .or_default()
                        .push((*partition, Some(value.clone())));
                }
                for values in by_topic.values_mut() {
                    values.sort_by_key(|(p, _)| *p);
                }
                by_topic.into_iter().collect()
            }
        };
        Ok(result)
    }

    /// ListGroups, filtered by state names (case-insensitive) when given.
    pub fn list(&self, states: &[String]) -> Vec<GroupListing> {
        let groups = self.groups.lock();
        let mut listings: Vec<GroupListing> = groups
            .values()
            .filter(|g| g.state != GroupState::Dead)
            .filter(|g| {
                states.is_empty()
                    || states
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(g.state.name()))
            })
            .map(|g| GroupListing {
                group_id: g.group_id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state.name(),
                group_type: "classic",
            })
            .collect();
        listings.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        listings
    }

    /// DescribeGroups for one group.
    pub fn describe(&self, state: &BrokerState, group_id: &str) -> GroupDescription {
        let mut description = GroupDescription {
            error_code: 0,
            state: GroupState::Dead.name(),
            protocol_type: String::new(),
            protocol_name: String::new(),
            members: Vec::new(),
        };
        if let Err(code) = self.check_group(state, group_id) {
            description.error_code = code;
            return description;
        }
        let groups = self.groups.lock();
        let Some(group) = groups.get(group_id) else {
            description.error_code = ResponseError::GroupIdNotFound.code();
            return description;
        };
        if let Some(consumer) = &group.consumer {
            description.state = consumer.state_name();
            description.protocol_type = "consumer".to_string();
            description.members = consumer
                .members
                .values()
                .map(|m| MemberDescription {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: Bytes::new(),
                    assignment: Bytes::new(),
                })
                .collect();
            return description;
        }
        let protocol = group.protocol_name.clone().unwrap_or_default();
        description.state = group.state.name();
        description.protocol_type = group.protocol_type.clone().unwrap_or_default();
        description.protocol_name = protocol.clone();
        description.members = group
            .members
            .values()
            .map(|m| MemberDescription {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: m
                    .protocols
                    .iter()
                    .find(|(n, _)| *n == protocol)
                    .map(|(_, md)| md.clone())
                    .unwrap_or_default(),
                assignment: m.assignment.clone(),
            })
            .collect();
        description
    }

    /// DeleteGroups for one group; returns the error code.
    pub fn delete_group(&self, state: &BrokerState, group_id: &str) -> i16 {
        if let Err(code) = self.check_group(state, group_id) {
            return code;
        }
        let Ok(partition) = self.offsets_partition(state, group_id) else {
            return ResponseError::CoordinatorNotAvailable.code();
        };
        let mut groups = self.groups.lock();
        let Some(group) = groups.get(group_id) else {
            return ResponseError::GroupIdNotFound.code();
        };
        if !group.members.is_empty()
            || group.state != GroupState::Empty
            || group.is_active_consumer_group()
        {
            return ResponseError::NonEmptyGroup.code();
        }
        let mut tombstones: Vec<(Bytes, Option<Bytes>)> = group
            .offsets
            .keys()
            .map(|(topic, p)| {
                let key = OffsetKey {
                    group: group_id.to_string(),
                    topic: topic.clone(),
                    partition: *p,
                };
                (key.encode(), None)
            })
            .collect();
        tombstones.push((records::encode_group_key(group_id), None));
        if let Err(code) = append_records(state, &partition, &tombstones) {
            return code;
        }
        groups.remove(group_id);
        0
    }

    /// OffsetDelete: the group error, or one code per partition.
    pub fn delete_offsets(
        &self,
        state: &BrokerState,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<i16>, i16> {
        self.check_group(state, group_id)?;
        let partition = self.offsets_partition(state, group_id)?;
        let mut groups = self.groups.lock();
        let group = groups
            .get_mut(group_id)
            .ok_or(ResponseError::GroupIdNotFound.code())?;
        let subscribed = match &group.consumer {
            Some(consumer) if !consumer.members.is_empty() => {
                Some(consumer.subscribed_topics(&state.image()))
            }
            _ => group.subscribed_topics(),
        };
        if subscribed.is_none() && !group.members.is_empty() {
            return Err(ResponseError::NonEmptyGroup.code());
        }
        let mut codes = Vec::with_capacity(partitions.len());
        let mut tombstones = Vec::new();
        for (topic, p) in partitions {
            if subscribed.as_ref().is_some_and(|s| s.contains(topic)) {
                codes.push(ResponseError::GroupSubscribedToTopic.code());
                continue;
            }
            let key = OffsetKey {
                group: group_id.to_string(),
                topic: topic.clone(),
                partition: *p,
            };
            tombstones.push((key.encode(), None));
            codes.push(0);
        }
        if !tombstones.is_empty() {
            append_records(state, &partition, &tombstones)?;
        }
        for ((topic, p), code) in partitions.iter().zip(&codes) {
            if *code == 0 {
                group.offsets.remove(&(topic.clone(), *p));
            }
        }
        Ok(codes)
    }

    /// Advances every group's timers and persists what changed.
    pub fn tick(&self, state: &BrokerState) {
        let now = Instant::now();
        let wall = now_ms();
        let mut groups = self.groups.lock();
        for group in groups.values_mut() {
            match &mut group.consumer {
                Some(consumer) => {
                    consumer.tick(now);
                }
                None => {
                    group.tick(&self.config.timings, now, wall);
                    self.persist_if_dirty(state, group);
                }
            }
        }
    }

    /// Drops committed offsets of empty groups older than the retention, and empty groups
    /// with no offsets left.
    pub fn expire_offsets(&self, state: &BrokerState) {
        let cutoff = now_ms() - self.config.offsets_retention_ms;
        let mut groups = self.groups.lock();
        let mut forgotten = Vec::new();
        for group in groups.values_mut() {
            if group.state != GroupState::Empty || group.is_active_consumer_group() {
                continue;
            }
            let expired: Vec<(String, i32)> = group
                .offsets
                .iter()
                .filter(|(_, v)| v.commit_timestamp_ms < cutoff)
                .map(|(k, _)| k.clone())
                .collect();
            let Ok(partition) = self.offsets_partition(state, &group.group_id) else {
                continue;
            };
            let mut tombstones: Vec<(Bytes, Option<Bytes>)> = expired
                .iter()
                .map(|(topic, p)| {
                    let key = OffsetKey {
                        group: group.group_id.clone(),
                        topic: topic.clone(),
                        partition: *p,
                    };
                    (key.encode(), None)
                })
                .collect();
            let forget = expired.len() == group.offsets.len();
            if forget {
                tombstones.push((records::encode_group_key(&group.group_id), None));
            }
            if tombstones.is_empty() || append_records(state, &partition, &tombstones).is_err() {
                continue;
            }
            for key in &expired {
                group.offsets.remove(key);
            }
            if forget {
                forgotten.push(group.group_id.clone());
            }
            tracing::info!(group = %group.group_id, expired_offsets = expired.len(), "offsets expired");
        }
        for group_id in forgotten {
            groups.remove(&group_id);
        }
    }

    /// ConsumerGroupHeartbeat (KIP-848).
    pub fn consumer_heartbeat(
        &self,
        state: &BrokerState,
        group_id: &str,
        request: consumer::HeartbeatRequest,
    ) -> Result<consumer::HeartbeatOutcome, (i16, String)> {
        self.check_group(state, group_id).map_err(|code| {
            (
                code,
                "this broker does not coordinate the group".to_string(),
            )
        })?;
        let image = state.image();
        let mut groups = self.groups.lock();
        if request.member_epoch != consumer::JOIN_EPOCH && !groups.contains_key(group_id) {
            return Err((
                ResponseError::UnknownMemberId.code(),
                format!("group {group_id} has no member {}", request.member_id),
            ));
        }
        let group = groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id, now_ms()));
        if group.consumer.is_none() {
            if !group.members.is_empty() {
                return Err((
                    ResponseError::GroupIdNotFound.code(),
                    format!("group {group_id} is a classic group with members"),
                ));
            }
            group.consumer = Some(consumer::ConsumerGroupState::default());
            group.protocol_type = Some("consumer".to_string());
        }
        let Some(consumer_group) = group.consumer.as_mut() else {
            return Err((
                ResponseError::UnknownServerError.code(),
                "no consumer state".to_string(),
            ));
        };
        consumer_group.heartbeat(
            request,
            || uuid::Uuid::new_v4().simple().to_string(),
            &image,
            &self.config.consumer_timings,
            Instant::now(),
        )
    }

    /// The heartbeat interval members are told to keep.
    pub fn consumer_heartbeat_interval_ms(&self) -> i32 {
        self.config.consumer_timings.heartbeat_interval_ms
    }

    /// ConsumerGroupDescribe: the KIP-848 state of a group, if it is a consumer group.
    pub fn describe_consumer_group(
        &self,
        state: &BrokerState,
        group_id: &str,
    ) -> Result<consumer::ConsumerGroupState, i16> {
        self.check_group(state, group_id)?;
        let groups = self.groups.lock();
        let group = groups
            .get(group_id)
            .ok_or(ResponseError::GroupIdNotFound.code())?;
        // Kafka answers GROUP_ID_NOT_FOUND for a classic group, empty or not; clients then
        // fall back to DescribeGroups.
        group
            .consumer
            .clone()
            .ok_or(ResponseError::GroupIdNotFound.code())
    }

    fn check_group(&self, state: &BrokerState, group_id: &str) -> Result<(), i16> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId.code());
        }
        self.coordinates(state, group_id)
    }

    fn persist_if_dirty(&self, state: &BrokerState, group: &mut Group) {
        if !group.dirty {
            return;
        }
        group.dirty = false;
        let Ok(partition) = self.offsets_partition(state, &group.group_id) else {
            return;
        };
        let record = group.to_record();
        let batch = vec![(
            records::encode_group_key(&group.group_id),
            Some(record.encode()),
        )];
        if let Err(code) = append_records(state, &partition, &batch) {
            tracing::error!(group = %group.group_id, code, "cannot persist group metadata");
        }
    }
}

fn apply_record(
    groups: &mut HashMap<String, Group>,
    record: CoordinatorRecord,
    now: Instant,
    wall: i64,
) {
    match record {
        CoordinatorRecord::Offset(key, value) => {
            let group = groups
                .entry(key.group.clone())
                .or_insert_with(|| Group::new(&key.group, wall));
            match value {
                Some(value) => {
                    group.offsets.insert((key.topic, key.partition), value);
                }
                None => {
                    group.offsets.remove(&(key.topic, key.partition));
                }
            }
        }
        CoordinatorRecord::Group(group_id, Some(record)) => {
            let group = groups
                .entry(group_id.clone())
                .or_insert_with(|| Group::new(&group_id, wall));
            group.restore(&record, now);
        }
        CoordinatorRecord::Group(group_id, None) => {
            groups.remove(&group_id);
        }
    }
}

/// Appends coordinator records as one batch to an offsets partition; returns the Kafka error
/// code on failure.
fn append_records(
    state: &BrokerState,
    partition: &Partition,
    entries: &[(Bytes, Option<Bytes>)],
) -> Result<(), i16> {
    let now = now_ms();
    let records: Vec<Record> = entries
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: -1,
            timestamp: now,
            key: Some(key.clone()),
            value: value.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut buffer = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buffer, &records, &options).map_err(|error| {
        tracing::error!(%error, "cannot encode coordinator records");
        ResponseError::UnknownServerError.code()
    })?;
    let leader_epoch = partition.leader_epoch();
    let log_end_offset = {
        let mut log = partition.log.lock();
        log.append(&mut buffer, leader_epoch, None, now)
            .map_err(|error| {
                tracing::error!(%error, "cannot append to {OFFSETS_TOPIC}");
                crate::errors::storage_error_code(&error)
            })?;
        let end = log.log_end_offset();
        log.set_high_watermark(end);
        end
    };
    partition.publish_log_end_offset(log_end_offset);
    let _ = state;
    Ok(())
}

/// Java's `String.hashCode` over UTF-16 code units.
fn java_string_hash(text: &str) -> i32 {
    text.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(unit as i32)
    })
}

/// Kafka's `Utils.abs`: `Integer.MIN_VALUE` maps to 0.
fn java_abs(value: i32) -> i32 {
    if value == i32::MIN {
        0
    } else {
        value.abs()
    }
}

/// Runs the coordinator's timers until shutdown.
pub async fn run_timers(
    state: Arc<BrokerState>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    retention_check_interval: Duration,
) {
    let mut ticks = tokio::time::interval(Duration::from_millis(100));
    let mut last_retention = Instant::now();
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        state.groups.tick(&state);
        if last_retention.elapsed() >= retention_check_interval {
            last_retention = Instant::now();
            state.groups.expire_offsets(&state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_hash_matches_known_values() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE in Java.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(java_abs(i32::MIN), 0);
    }
}
