//! Classic consumer group membership (JoinGroup/SyncGroup/Heartbeat/LeaveGroup) and group
//! offsets (OffsetCommit/OffsetFetch), as the Java client speaks them.
//!
//! [`Consumer`](crate::Consumer) drives the rebalance from `poll` (as the Java client does);
//! a background task only heartbeats while the member is stable and raises `rejoin_needed`
//! when the coordinator says a rebalance began or the member was fenced.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, GroupId, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupRequest, OffsetCommitRequest, OffsetFetchRequest, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::{Request, StrBytes};
use parking_lot::Mutex;

use crate::assignor::{self, Assignor, MemberSubscription, Subscription, CONSUMER_PROTOCOL_TYPE};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::types::TopicPartition;

/// Coordinator lookups and group requests retried at most this often before giving up.
const GROUP_ATTEMPTS_MAX: u32 = 20;

/// Error codes (Kafka's numbering) the membership logic branches on.
mod code {
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const ILLEGAL_GENERATION: i16 = 22;
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    pub const FENCED_INSTANCE_ID: i16 = 82;
}

fn is_coordinator_error(code: i16) -> bool {
    matches!(
        code,
        code::COORDINATOR_LOAD_IN_PROGRESS
            | code::COORDINATOR_NOT_AVAILABLE
            | code::NOT_COORDINATOR
    )
}

fn group_id(group: &str) -> GroupId {
    GroupId(StrBytes::from_string(group.to_string()))
}

fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Where a group's coordinator is: node id and `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coordinator {
    /// Node id.
    pub node_id: i32,
    /// `host:port`.
    pub addr: String,
}

/// Finds `group`'s coordinator (FindCoordinator), retrying while it is not available yet.
pub async fn find_coordinator(client: &Client, group: &str) -> Result<Coordinator> {
    let mut attempt = 0;
    loop {
        match find_coordinator_once(client, group).await {
            Ok(coordinator) => return Ok(coordinator),
            Err(error) if error.is_retriable() && attempt < GROUP_ATTEMPTS_MAX => {
                attempt += 1;
                tracing::debug!(%error, group, attempt, "find coordinator failed; retrying");
                tokio::time::sleep(Duration::from_millis(client.config().retry_backoff_ms)).await;
            }
            Err(error) => return Err(error),
        }
    }
}

async fn find_coordinator_once(client: &Client, group: &str) -> Result<Coordinator> {
    let connection = client.any_connection().await?;
    let version = connection.version(ApiKey::FindCoordinator).unwrap_or(0);
    let mut request = FindCoordinatorRequest::default();
    request.key_type = 0;
    if version >= 4 {
        request.coordinator_keys = vec![str_bytes(group)];
    } else {
        request.key = str_bytes(group);
    }
    let (version, response) = connection.send(&request).await?;
    let context = || format!("find coordinator of group {group:?}");
    let (node_id, host, port) = if version >= 4 {
        let c = response
            .coordinators
            .first()
            .ok_or_else(|| Error::Protocol("FindCoordinator response has no coordinator".into()))?;
        crate::error::check(c.error_code, context, c.error_message.as_ref())?;
        (c.node_id.0, c.host.to_string(), c.port)
    } else {
        crate::error::check(
            response.error_code,
            context,
            response.error_message.as_ref(),
        )?;
        (response.node_id.0, response.host.to_string(), response.port)
    };
    Ok(Coordinator {
        node_id,
        addr: format!("{host}:{port}"),
    })
}

/// Sends a request to `group`'s coordinator, finding it first.
pub(crate) async fn send_to_coordinator<R: Request + 'static>(
    client: &Client,
    coordinator: &Coordinator,
    request: &R,
) -> Result<(i16, R::Response)> {
    let connection = client.connection_to(&coordinator.addr).await?;
    connection.send(request).await
}

/// Committed offsets of `group` for `partitions` (-1 where nothing is committed); `None`
/// asks for every partition the group has an offset for.
pub async fn fetch_committed(
    client: &Client,
    group: &str,
    partitions: Option<&[TopicPartition]>,
) -> Result<BTreeMap<TopicPartition, i64>> {
    let mut attempt = 0;
    loop {
        let coordinator = find_coordinator(client, group).await?;
        match fetch_committed_from(client, &coordinator, group, partitions).await {
            Ok(out) => return Ok(out),
            Err(error) if error.is_retriable() && attempt < GROUP_ATTEMPTS_MAX => {
                attempt += 1;
                tracing::debug!(%error, group, attempt, "offset fetch failed; retrying");
                tokio::time::sleep(Duration::from_millis(client.config().retry_backoff_ms)).await;
            }
            Err(error) => return Err(error),
        }
    }
}

async fn fetch_committed_from(
    client: &Client,
    coordinator: &Coordinator,
    group: &str,
    partitions: Option<&[TopicPartition]>,
) -> Result<BTreeMap<TopicPartition, i64>> {
    let connection = client.connection_to(&coordinator.addr).await?;
    let mut request = OffsetFetchRequest::default();
    request.group_id = group_id(group);
    request.require_stable = connection.version(ApiKey::OffsetFetch).unwrap_or(0) >= 7;
    request.topics = partitions.map(|partitions| {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for tp in partitions {
            by_topic.entry(&tp.topic).or_default().push(tp.partition);
        }
        by_topic
            .into_iter()
            .map(|(name, partition_indexes)| {
                let mut t = OffsetFetchRequestTopic::default();
                t.name = TopicName(str_bytes(name));
                t.partition_indexes = partition_indexes;
                t
            })
            .collect()
    });
    let (_, response) = connection.send(&request).await?;
    crate::error::check(
        response.error_code,
        || format!("fetch committed offsets of group {group:?}"),
        None,
    )?;
    let mut out = BTreeMap::new();
    for topic in response.topics {
        for p in topic.partitions {
            let tp = TopicPartition::new(topic.name.0.to_string(), p.partition_index);
            crate::error::check(
                p.error_code,
                || format!("fetch committed offset of {tp} for group {group:?}"),
                None,
            )?;
            out.insert(tp, p.committed_offset);
        }
    }
    Ok(out)
}

/// Commits `offsets` (the next offset to read, per partition) for `group`, as a member
/// (`Some((member_id, generation, instance id))`) or, with `None`, as a group without active
/// members (what `kafka-consumer-groups --reset-offsets` does).
pub async fn commit_offsets(
    client: &Client,
    group: &str,
    member: Option<(&str, i32, Option<&str>)>,
    offsets: &BTreeMap<TopicPartition, i64>,
) -> Result<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    let mut attempt = 0;
    loop {
        let coordinator = find_coordinator(client, group).await?;
        match commit_to(client, &coordinator, group, member, offsets).await {
            Ok(()) => return Ok(()),
            Err(error)
                if error
                    .kafka_code()
                    .is_some_and(|c| is_coordinator_error(c.code()))
                    || matches!(error, Error::Disconnected { .. }) =>
            {
                if attempt >= GROUP_ATTEMPTS_MAX {
                    return Err(error);
                }
                attempt += 1;
                tracing::debug!(%error, group, attempt, "offset commit failed; retrying");
                tokio::time::sleep(Duration::from_millis(client.config().retry_backoff_ms)).await;
            }
            Err(error) => return Err(error),
        }
    }
}

async fn commit_to(
    client: &Client,
    coordinator: &Coordinator,
    group: &str,
    member: Option<(&str, i32, Option<&str>)>,
    offsets: &BTreeMap<TopicPartition, i64>,
) -> Result<()> {
    let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for (tp, offset) in offsets {
        let mut p = OffsetCommitRequestPartition::default();
        p.partition_index = tp.partition;
        p.committed_offset = *offset;
        p.committed_leader_epoch = -1;
        p.committed_metadata = Some(StrBytes::from_static_str(""));
        by_topic.entry(&tp.topic).or_default().push(p);
    }
    let (member_id, generation, instance) = member.unwrap_or(("", -1, None));
    let mut request = OffsetCommitRequest::default();
    request.group_id = group_id(group);
    request.member_id = str_bytes(member_id);
    request.generation_id_or_member_epoch = generation;
    request.group_instance_id = instance.map(str_bytes);
    request.retention_time_ms = -1;
    request.topics = by_topic
        .into_iter()
        .map(|(name, partitions)| {
            let mut t = OffsetCommitRequestTopic::default();
            t.name = TopicName(str_bytes(name));
            t.partitions = partitions;
            t
        })
        .collect();
    let (_, response) = send_to_coordinator(client, coordinator, &request).await?;
    for topic in response.topics {
        for p in topic.partitions {
            let tp = TopicPartition::new(topic.name.0.to_string(), p.partition_index);
            crate::error::check(
                p.error_code,
                || format!("commit offset of {tp} for group {group:?}"),
                None,
            )?;
        }
    }
    Ok(())
}

/// Group membership settings (from [`ConsumerConfig`](crate::ConsumerConfig)).
#[derive(Debug, Clone)]
pub(crate) struct MembershipConfig {
    pub group_id: String,
    pub group_instance_id: Option<String>,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub heartbeat_interval_ms: u64,
    pub assignors: Vec<Assignor>,
}

/// What the consumer and the heartbeat task share.
#[derive(Debug)]
struct MemberState {
    member_id: String,
    generation: i32,
    coordinator: Option<Coordinator>,
    /// Joined and synced: heartbeats go out.
    stable: bool,
    /// The coordinator asked for a rejoin (or the member must rejoin for another reason).
    rejoin_needed: bool,
    /// The member's generation is gone (fenced, unknown): its partitions are lost, not revoked.
    lost: bool,
}

/// One classic group membership: a member id, a generation, a heartbeat task.
pub(crate) struct Membership {
    client: Client,
    config: MembershipConfig,
    state: Arc<Mutex<MemberState>>,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Membership {
    fn drop(&mut self) {
        if let Some(task) = self.heartbeat.take() {
            task.abort();
        }
    }
}

/// The outcome of one join and sync.
#[derive(Debug)]
pub(crate) struct Joined {
    pub generation: i32,
    pub assigned: Vec<TopicPartition>,
}

impl Membership {
    pub(crate) fn new(client: Client, config: MembershipConfig) -> Membership {
        let state = MemberState {
            member_id: String::new(),
            generation: -1,
            coordinator: None,
            stable: false,
            rejoin_needed: true,
            lost: false,
        };
        Membership {
            client,
            config,
            state: Arc::new(Mutex::new(state)),
            heartbeat: None,
        }
    }

    pub(crate) fn group_id(&self) -> &str {
        &self.config.group_id
    }

    /// Whether every configured assignor is cooperative (then the member keeps its partitions
    /// through rebalances; otherwise it revokes everything before joining, as Java's eager
    /// protocol does).
    pub(crate) fn cooperative(&self) -> bool {
        self.config.assignors.iter().all(|a| a.is_cooperative())
    }

    pub(crate) fn needs_rejoin(&self) -> bool {
        let state = self.state.lock();
        state.rejoin_needed || !state.stable
    }

    /// Whether the last generation was lost (partitions must be dropped without committing);
    /// clears the flag.
    pub(crate) fn take_lost(&self) -> bool {
        std::mem::take(&mut self.state.lock().lost)
    }

    pub(crate) fn request_rejoin(&self) {
        self.state.lock().rejoin_needed = true;
    }

    /// `(member id, generation, instance id)` for commits, if the member is in a generation.
    pub(crate) fn identity(&self) -> Option<(String, i32)> {
        let state = self.state.lock();
        (state.generation >= 0 && !state.member_id.is_empty())
            .then(|| (state.member_id.clone(), state.generation))
    }

    pub(crate) fn instance_id(&self) -> Option<&str> {
        self.config.group_instance_id.as_deref()
    }

    async fn coordinator(&self) -> Result<Coordinator> {
        if let Some(coordinator) = self.state.lock().coordinator.clone() {
            return Ok(coordinator);
        }
        let coordinator = find_coordinator(&self.client, &self.config.group_id).await?;
        self.state.lock().coordinator = Some(coordinator.clone());
        Ok(coordinator)
    }

    fn forget_coordinator(&self) {
        self.state.lock().coordinator = None;
    }

    /// Joins (or rejoins) the group and syncs: returns the new generation's assignment.
    /// `owned` is what the member holds now (empty under the eager protocol).
    pub(crate) async fn join(
        &mut self,
        topics: &[String],
        owned: &[TopicPartition],
    ) -> Result<Joined> {
        self.state.lock().stable = false;
        for attempt in 0..GROUP_ATTEMPTS_MAX {
            let join = match self.join_once(topics, owned).await {
                Ok(join) => join,
                Err(error) if self.retriable_group_error(&error) => {
                    tracing::debug!(%error, group = %self.config.group_id, attempt, "join failed; retrying");
                    self.backoff().await;
                    continue;
                }
                Err(error) => return Err(error),
            };
            match self.sync(join).await {
                Ok(joined) => {
                    let mut state = self.state.lock();
                    state.generation = joined.generation;
                    state.stable = true;
                    state.rejoin_needed = false;
                    drop(state);
                    self.start_heartbeat();
                    return Ok(joined);
                }
                Err(error) if self.retriable_group_error(&error) => {
                    tracing::debug!(%error, group = %self.config.group_id, attempt, "sync failed; rejoining");
                    continue;
                }
                Err(error) => return Err(error),
            }
        }
        Err(Error::Invalid(format!(
            "could not join group {:?} after {GROUP_ATTEMPTS_MAX} attempts",
            self.config.group_id
        )))
    }

    /// Classifies group errors: coordinator moves and rebalances are retried (after fixing up
    /// member id or coordinator); anything else ends the join.
    fn retriable_group_error(&self, error: &Error) -> bool {
        let Some(code) = error.kafka_code().map(|c| c.code()) else {
            let transient = error.is_retriable();
            if transient {
                self.forget_coordinator();
            }
            return transient;
        };
        match code {
            c if is_coordinator_error(c) => {
                self.forget_coordinator();
                true
            }
            code::UNKNOWN_MEMBER_ID => {
                // The session expired unnoticed: whatever this member owned may have moved.
                let mut state = self.state.lock();
                state.member_id.clear();
                state.lost = true;
                true
            }
            code::REBALANCE_IN_PROGRESS | code::ILLEGAL_GENERATION | code::MEMBER_ID_REQUIRED => {
                true
            }
            _ => false,
        }
    }

    async fn backoff(&self) {
        tokio::time::sleep(Duration::from_millis(self.client.config().retry_backoff_ms)).await;
    }

    fn subscription(
        &self,
        assignor: Assignor,
        topics: &[String],
        owned: &[TopicPartition],
    ) -> Result<bytes::Bytes> {
        let generation = self.state.lock().generation;
        let mut topics = topics.to_vec();
        topics.sort();
        topics.dedup();
        let user_data = assignor
            .is_cooperative()
            .then(|| bytes::Bytes::copy_from_slice(&generation.to_be_bytes()));
        assignor::encode_subscription(&Subscription {
            topics,
            owned_partitions: owned.to_vec(),
            generation,
            user_data,
        })
    }

    async fn join_once(
        &self,
        topics: &[String],
        owned: &[TopicPartition],
    ) -> Result<JoinGroupResponse> {
        let coordinator = self.coordinator().await?;
        let connection = self.client.connection_to(&coordinator.addr).await?;
        let mut request = JoinGroupRequest::default();
        request.group_id = group_id(&self.config.group_id);
        request.session_timeout_ms = self.config.session_timeout_ms;
        request.rebalance_timeout_ms = self.config.rebalance_timeout_ms;
        request.group_instance_id = self.config.group_instance_id.as_deref().map(str_bytes);
        request.protocol_type = StrBytes::from_static_str(CONSUMER_PROTOCOL_TYPE);
        request.protocols = self
            .config
            .assignors
            .iter()
            .map(|&assignor| {
                let mut protocol = JoinGroupRequestProtocol::default();
                protocol.name = StrBytes::from_static_str(assignor.name());
                protocol.metadata = self.subscription(assignor, topics, owned)?;
                Ok(protocol)
            })
            .collect::<Result<_>>()?;
        // The coordinator holds a JoinGroup until every member joined (up to the rebalance
        // timeout).
        let timeout_ms = self.client.config().request_timeout_ms
            + self.config.rebalance_timeout_ms.max(0) as u64;
        loop {
            request.member_id = str_bytes(&self.state.lock().member_id);
            let (_, response) = connection.send_timeout(&request, timeout_ms).await?;
            match response.error_code {
                0 => {
                    let mut state = self.state.lock();
                    state.member_id = response.member_id.to_string();
                    state.generation = response.generation_id;
                    return Ok(response);
                }
                code::MEMBER_ID_REQUIRED if !response.member_id.is_empty() => {
                    // KIP-394: join again with the id the coordinator handed out.
                    self.state.lock().member_id = response.member_id.to_string();
                }
                code => {
                    return Err(Error::kafka(
                        code,
                        format!("join group {:?}", self.config.group_id),
                        None,
                    ));
                }
            }
        }
    }

    async fn sync(&self, join: JoinGroupResponse) -> Result<Joined> {
        let coordinator = self.coordinator().await?;
        let member_id = join.member_id.to_string();
        let protocol = join
            .protocol_name
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_default();
        let mut request = SyncGroupRequest::default();
        request.group_id = group_id(&self.config.group_id);
        request.generation_id = join.generation_id;
        request.member_id = str_bytes(&member_id);
        request.group_instance_id = self.config.group_instance_id.as_deref().map(str_bytes);
        let connection = self.client.connection_to(&coordinator.addr).await?;
        if connection.version(ApiKey::SyncGroup).unwrap_or(0) >= 5 {
            request.protocol_type = Some(StrBytes::from_static_str(CONSUMER_PROTOCOL_TYPE));
            request.protocol_name = Some(str_bytes(&protocol));
        }
        if join.leader.as_str() == member_id && !join.skip_assignment {
            request.assignments = self.lead(&join, &protocol).await?;
        }
        let timeout_ms = self.client.config().request_timeout_ms
            + self.config.rebalance_timeout_ms.max(0) as u64;
        let (_, response) = connection.send_timeout(&request, timeout_ms).await?;
        crate::error::check(
            response.error_code,
            || format!("sync group {:?}", self.config.group_id),
            None,
        )?;
        let assigned = assignor::decode_assignment(&response.assignment)?;
        tracing::debug!(group = %self.config.group_id, generation = join.generation_id, %protocol, ?assigned, "joined");
        Ok(Joined {
            generation: join.generation_id,
            assigned,
        })
    }

    /// The leader's part: decode every member's subscription, run the group's assignor.
    async fn lead(
        &self,
        join: &JoinGroupResponse,
        protocol: &str,
    ) -> Result<Vec<SyncGroupRequestAssignment>> {
        let assignor = Assignor::from_name(protocol).ok_or_else(|| {
            Error::Protocol(format!(
                "the group chose assignor {protocol:?}, which this client does not have"
            ))
        })?;
        let mut members = Vec::with_capacity(join.members.len());
        for m in &join.members {
            let subscription = assignor::decode_subscription(&m.metadata)?;
            members.push(MemberSubscription {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
                subscription,
            });
        }
        let mut topics: Vec<String> = members
            .iter()
            .flat_map(|m| m.subscription.topics.iter().cloned())
            .collect();
        topics.sort();
        topics.dedup();
        let metadata = self.client.refresh_metadata(Some(&topics), false).await?;
        let partition_counts: BTreeMap<String, i32> = topics
            .iter()
            .filter_map(|t| {
                metadata
                    .topics
                    .get(t)
                    .map(|info| (t.clone(), info.partitions.len() as i32))
            })
            .collect();
        let assignment = assignor::assign(assignor, &members, &partition_counts);
        tracing::debug!(group = %self.config.group_id, %protocol, ?assignment, "leader assigned");
        assignment
            .into_iter()
            .map(|(member_id, partitions)| {
                let mut a = SyncGroupRequestAssignment::default();
                a.member_id = str_bytes(&member_id);
                a.assignment = assignor::encode_assignment(&partitions)?;
                Ok(a)
            })
            .collect()
    }

    fn start_heartbeat(&mut self) {
        if self
            .heartbeat
            .as_ref()
            .is_some_and(|task| !task.is_finished())
        {
            return;
        }
        let task = heartbeat_loop(self.client.clone(), self.config.clone(), self.state.clone());
        self.heartbeat = Some(tokio::spawn(task));
    }

    /// Leaves the group (LeaveGroup); static members stay (their session timeout ends them,
    /// as in the Java client).
    pub(crate) async fn leave(&mut self) -> Result<()> {
        if let Some(task) = self.heartbeat.take() {
            task.abort();
        }
        let member_id = {
            let mut state = self.state.lock();
            state.stable = false;
            std::mem::take(&mut state.member_id)
        };
        if member_id.is_empty() || self.config.group_instance_id.is_some() {
            return Ok(());
        }
        let coordinator = self.coordinator().await?;
        let mut identity = MemberIdentity::default();
        identity.member_id = str_bytes(&member_id);
        identity.reason = Some(StrBytes::from_static_str("the consumer is closing"));
        let connection = self.client.connection_to(&coordinator.addr).await?;
        let mut request = LeaveGroupRequest::default();
        request.group_id = group_id(&self.config.group_id);
        if connection.version(ApiKey::LeaveGroup).unwrap_or(0) >= 3 {
            request.members = vec![identity];
        } else {
            request.member_id = str_bytes(&member_id);
        }
        let (_, response) = connection.send(&request).await?;
        crate::error::check(
            response.error_code,
            || format!("leave group {:?}", self.config.group_id),
            None,
        )?;
        for m in &response.members {
            if m.error_code != code::UNKNOWN_MEMBER_ID {
                crate::error::check(
                    m.error_code,
                    || format!("leave group {:?}", self.config.group_id),
                    None,
                )?;
            }
        }
        Ok(())
    }

    /// Applies a commit failure to the membership: a rebalance or fencing means rejoin.
    pub(crate) fn on_commit_error(&self, error: &Error) {
        let Some(code) = error.kafka_code().map(|c| c.code()) else {
            return;
        };
        let mut state = self.state.lock();
        match code {
            code::REBALANCE_IN_PROGRESS => state.rejoin_needed = true,
            code::ILLEGAL_GENERATION | code::UNKNOWN_MEMBER_ID | code::FENCED_INSTANCE_ID => {
                state.rejoin_needed = true;
                state.lost = true;
                if code == code::UNKNOWN_MEMBER_ID {
                    state.member_id.clear();
                }
                state.generation = -1;
            }
            _ => {}
        }
    }
}

async fn heartbeat_loop(client: Client, config: MembershipConfig, state: Arc<Mutex<MemberState>>) {
    let interval = Duration::from_millis(config.heartbeat_interval_ms.max(1));
    loop {
        tokio::time::sleep(interval).await;
        let (member_id, generation, coordinator) = {
            let state = state.lock();
            if !state.stable || state.rejoin_needed {
                continue;
            }
            (
                state.member_id.clone(),
                state.generation,
                state.coordinator.clone(),
            )
        };
        let coordinator = match coordinator {
            Some(c) => c,
            None => match find_coordinator(&client, &config.group_id).await {
                Ok(c) => {
                    state.lock().coordinator = Some(c.clone());
                    c
                }
                Err(error) => {
                    tracing::debug!(%error, "heartbeat: no coordinator");
                    continue;
                }
            },
        };
        let mut request = HeartbeatRequest::default();
        request.group_id = group_id(&config.group_id);
        request.generation_id = generation;
        request.member_id = str_bytes(&member_id);
        request.group_instance_id = config.group_instance_id.as_deref().map(str_bytes);
        let code = match send_to_coordinator(&client, &coordinator, &request).await {
            Ok((_, response)) => response.error_code,
            Err(error) => {
                tracing::debug!(%error, "heartbeat failed");
                state.lock().coordinator = None;
                continue;
            }
        };
        let mut state = state.lock();
        if state.generation != generation {
            continue;
        }
        match code {
            0 => {}
            code::REBALANCE_IN_PROGRESS => state.rejoin_needed = true,
            code::ILLEGAL_GENERATION | code::UNKNOWN_MEMBER_ID | code::FENCED_INSTANCE_ID => {
                tracing::info!(group = %config.group_id, code, "member fenced; its partitions are lost and it rejoins");
                state.rejoin_needed = true;
                state.lost = true;
                state.generation = -1;
                if code == code::UNKNOWN_MEMBER_ID {
                    state.member_id.clear();
                }
            }
            c if is_coordinator_error(c) => state.coordinator = None,
            other => {
                tracing::warn!(group = %config.group_id, code = other, "unexpected heartbeat error")
            }
        }
    }
}
