//! The classic group state machine (Kafka's `GroupMetadata` + the join/sync/heartbeat/leave
//! logic of its group coordinator), as plain data and methods: no I/O, no locks, so every
//! transition is testable without sockets. Replies to waiting JoinGroup/SyncGroup requests
//! leave through the oneshot senders stored on members.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use tokio::sync::oneshot;

use super::records::{GroupRecord, MemberRecord, OffsetValue};

/// Kafka's group states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members (offsets may remain).
    Empty,
    /// Members are (re)joining.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Everyone has an assignment.
    Stable,
    /// Deleted.
    Dead,
}

impl GroupState {
    /// Kafka's name of the state (DescribeGroups, ListGroups).
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// What a JoinGroup request gets back.
#[derive(Debug, Clone, Default)]
pub struct JoinOutcome {
    /// Kafka error code.
    pub error_code: i16,
    /// Generation the member joined.
    pub generation_id: i32,
    /// Protocol type of the group.
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol_name: Option<String>,
    /// Leader member id.
    pub leader: String,
    /// The member's id.
    pub member_id: String,
    /// For the leader: every member with its metadata for the chosen protocol.
    pub members: Vec<JoinedMember>,
}

/// A member as the leader sees it in the JoinGroup response.
#[derive(Debug, Clone)]
pub struct JoinedMember {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub group_instance_id: Option<String>,
    /// Subscription metadata for the chosen protocol.
    pub metadata: Bytes,
}

/// What a SyncGroup request gets back.
#[derive(Debug, Clone, Default)]
pub struct SyncOutcome {
    /// Kafka error code.
    pub error_code: i16,
    /// Protocol type.
    pub protocol_type: Option<String>,
    /// Protocol name.
    pub protocol_name: Option<String>,
    /// The member's assignment.
    pub assignment: Bytes,
}

/// A reply now, or later through a channel.
pub enum Reply<T> {
    /// The answer is known.
    Now(T),
    /// The answer comes when the rebalance step completes.
    Later(oneshot::Receiver<T>),
}

/// A JoinGroup request, in the coordinator's terms.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// Member id ("" for a new member).
    pub member_id: String,
    /// Static instance id.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Protocol type.
    pub protocol_type: String,
    /// Protocols in preference order, with metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// Whether a new dynamic member must first get an id (JoinGroup v4+).
    pub require_known_member_id: bool,
}

/// One member of a classic group.
#[derive(Debug)]
pub struct Member {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Protocols with metadata, in preference order.
    pub protocols: Vec<(String, Bytes)>,
    /// Assignment from the last sync.
    pub assignment: Bytes,
    /// Session deadline (refreshed by heartbeats, joins, syncs, commits).
    pub session_deadline: Instant,
    join_waiter: Option<oneshot::Sender<JoinOutcome>>,
    sync_waiter: Option<oneshot::Sender<SyncOutcome>>,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    fn touch(&mut self, now: Instant) {
        self.session_deadline = now + Duration::from_millis(self.session_timeout_ms.max(0) as u64);
    }
}

/// Timing settings of the coordinator.
#[derive(Debug, Clone, Copy)]
pub struct GroupTimings {
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay_ms: u64,
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// Most members one group may have (`group.max.size`).
    pub max_members: usize,
}

/// A classic consumer group.
#[derive(Debug)]
pub struct Group {
    /// Group id.
    pub group_id: String,
    /// State.
    pub state: GroupState,
    /// When the state last changed (ms since epoch).
    pub state_timestamp_ms: i64,
    /// Protocol type of the members.
    pub protocol_type: Option<String>,
    /// Chosen protocol.
    pub protocol_name: Option<String>,
    /// Generation.
    pub generation_id: i32,
    /// Leader member id.
    pub leader_id: Option<String>,
    /// Members by id.
    pub members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, by deadline to come back.
    pending_members: HashMap<String, Instant>,
    /// Static instance id -> member id.
    static_members: HashMap<String, String>,
    /// Committed offsets by (topic, partition).
    pub offsets: HashMap<(String, i32), OffsetValue>,
    /// When the join phase ends at the latest.
    join_deadline: Option<Instant>,
    /// Whether the join phase is in its initial delay (the group was empty).
    in_initial_delay: bool,
    /// Set when the group must be written to the log (state or membership changed).
    pub dirty: bool,
    /// The KIP-848 state when this is a consumer group (`group.protocol=consumer`).
    pub consumer: Option<super::consumer::ConsumerGroupState>,
}

impl Group {
    /// A new, empty group.
    pub fn new(group_id: &str, now_ms: i64) -> Group {
        Group {
            group_id: group_id.to_string(),
            state: GroupState::Empty,
            state_timestamp_ms: now_ms,
            protocol_type: None,
            protocol_name: None,
            generation_id: 0,
            leader_id: None,
            members: BTreeMap::new(),
            pending_members: HashMap::new(),
            static_members: HashMap::new(),
            offsets: HashMap::new(),
            join_deadline: None,
            in_initial_delay: false,
            dirty: false,
            consumer: None,
        }
    }

    /// Rebuilds a group from its persisted record; members get a fresh session.
    pub fn restore(&mut self, record: &GroupRecord, now: Instant) {
        self.protocol_type = Some(record.protocol_type.clone());
        self.generation_id = record.generation_id;
        self.protocol_name = record.protocol_name.clone();
        self.leader_id = record.leader.clone();
        self.state_timestamp_ms = record.state_timestamp_ms;
        self.members.clear();
        self.static_members.clear();
        for m in &record.members {
            let protocols = match &record.protocol_name {
                Some(name) => vec![(name.clone(), m.subscription.clone())],
                None => Vec::new(),
            };
            let mut member = Member {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocols,
                assignment: m.assignment.clone(),
                session_deadline: now,
                join_waiter: None,
                sync_waiter: None,
            };
            member.touch(now);
            if let Some(instance) = &m.group_instance_id {
                self.static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            self.members.insert(m.member_id.clone(), member);
        }
        self.state = if self.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
    }

    /// The record persisting this group.
    pub fn to_record(&self) -> GroupRecord {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        GroupRecord {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation_id: self.generation_id,
            protocol_name: self.protocol_name.clone(),
            leader: self.leader_id.clone(),
            state_timestamp_ms: self.state_timestamp_ms,
            members: self
                .members
                .values()
                .map(|m| MemberRecord {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata_for(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    fn set_state(&mut self, state: GroupState, now_ms: i64) {
        self.state = state;
        self.state_timestamp_ms = now_ms;
    }

    /// Protocols every member supports (the candidates for the next generation).
    fn candidate_protocols(&self) -> Vec<String> {
        let mut members = self.members.values();
        let Some(first) = members.next() else {
            return Vec::new();
        };
        let mut candidates: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for member in members {
            candidates.retain(|c| member.protocols.iter().any(|(n, _)| n == c));
        }
        candidates
    }

    fn supports_protocols(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocols.is_empty() || protocol_type.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols
                .iter()
                .any(|(name, _)| self.candidate_protocols().contains(name))
    }

    /// Handles JoinGroup.
    pub fn join(
        &mut self,
        request: JoinRequest,
        new_member_id: impl FnOnce() -> String,
        timings: &GroupTimings,
        now: Instant,
        now_ms: i64,
    ) -> Reply<JoinOutcome> {
        let fail = |code: ResponseError, member_id: &str| {
            Reply::Now(JoinOutcome {
                error_code: code.code(),
                generation_id: -1,
                member_id: member_id.to_string(),
                ..JoinOutcome::default()
            })
        };
        if request.session_timeout_ms < timings.min_session_timeout_ms
            || request.session_timeout_ms > timings.max_session_timeout_ms
        {
            return fail(ResponseError::InvalidSessionTimeout, &request.member_id);
        }
        if self.state == GroupState::Dead {
            return fail(ResponseError::CoordinatorNotAvailable, &request.member_id);
        }
        if !self.supports_protocols(&request.protocol_type, &request.protocols) {
            return fail(ResponseError::InconsistentGroupProtocol, &request.member_id);
        }
        if request.member_id.is_empty() {
            self.join_new_member(request, new_member_id(), timings, now, now_ms)
        } else {
            self.join_known_member(request, timings, now, now_ms)
        }
    }

    fn join_new_member(
        &mut self,
        request: JoinRequest,
        member_id: String,
        timings: &GroupTimings,
        now: Instant,
        now_ms: i64,
    ) -> Reply<JoinOutcome> {
        if let Some(instance) = &request.group_instance_id {
            if let Some(old_id) = self.static_members.get(instance).cloned() {
                return self
                    .replace_static_member(&old_id, request, member_id, timings, now, now_ms);
            }
        } else if request.require_known_member_id {
            let deadline = now + Duration::from_millis(request.session_timeout_ms.max(0) as u64);
            self.pending_members.insert(member_id.clone(), deadline);
            return Reply::Now(JoinOutcome {
                error_code: ResponseError::MemberIdRequired.code(),
                generation_id: -1,
                member_id,
                ..JoinOutcome::default()
            });
        }
        if self.members.len() >= timings.max_members {
            return Reply::Now(JoinOutcome {
                error_code: ResponseError::GroupMaxSizeReached.code(),
                generation_id: -1,
                member_id: request.member_id,
                ..JoinOutcome::default()
            });
        }
        self.add_member_and_rebalance(request, member_id, timings, now, now_ms)
    }

    fn join_known_member(
        &mut self,
        request: JoinRequest,
        timings: &GroupTimings,
        now: Instant,
        now_ms: i64,
    ) -> Reply<JoinOutcome> {
        let member_id = request.member_id.clone();
        if let Some(instance) = &request.group_instance_id {
            if let Some(known) = self.static_members.get(instance) {
                if *known != member_id {
                    return Reply::Now(JoinOutcome {
                        error_code: ResponseError::FencedInstanceId.code(),
                        generation_id: -1,
                        member_id,
                        ..JoinOutcome::default()
                    });
                }
            }
        }
        if self.pending_members.remove(&member_id).is_some() {
            if self.members.len() >= timings.max_members {
                return Reply::Now(JoinOutcome {
                    error_code: ResponseError::GroupMaxSizeReached.code(),
                    generation_id: -1,
                    member_id,
                    ..JoinOutcome::default()
                });
            }
            return self.add_member_and_rebalance(request, member_id, timings, now, now_ms);
        }
        let Some(member) = self.members.get_mut(&member_id) else {
            return Reply::Now(JoinOutcome {
                error_code: ResponseError::UnknownMemberId.code(),
                generation_id: -1,
                member_id,
                ..JoinOutcome::default()
            });
        };
        let protocols_changed = member.protocols != request.protocols;
        member.protocols = request.protocols;
        member.session_timeout_ms = request.session_timeout_ms;
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        member.touch(now);
        match self.state {
            GroupState::PreparingRebalance => {
                let (sender, receiver) = oneshot::channel();
                if let Some(old) = member.join_waiter.replace(sender) {
                    let _ = old.send(JoinOutcome {
                        error_code: ResponseError::RebalanceInProgress.code(),
                        generation_id: -1,
                        member_id: member_id.clone(),
                        ..JoinOutcome::default()
                    });
                }
                self.maybe_complete_join(now, now_ms);
                Reply::Later(receiver)
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                let is_leader = self.leader_id.as_deref() == Some(member_id.as_str());
                if protocols_changed || (self.state == GroupState::Stable && is_leader) {
                    let (sender, receiver) = oneshot::channel();
                    if let Some(member) = self.members.get_mut(&member_id) {
                        member.join_waiter = Some(sender);
                    }
                    self.prepare_rebalance(timings, now, now_ms);
                    self.maybe_complete_join(now, now_ms);
                    Reply::Later(receiver)
                } else {
                    Reply::Now(self.join_outcome_for(&member_id))
                }
            }
            GroupState::Empty | GroupState::Dead => Reply::Now(JoinOutcome {
                error_code: ResponseError::UnknownMemberId.code(),
                generation_id: -1,
                member_id,
                ..JoinOutcome::default()
            }),
        }
    }

    fn replace_static_member(
        &mut self,
        old_id: &str,
        request: JoinRequest,
        new_id: String,
        timings: &GroupTimings,
        now: Instant,
        now_ms: i64,
    ) -> Reply<JoinOutcome> {
        let Some(mut member) = self.members.remove(old_id) else {
            return self.add_member_and_rebalance(request, new_id, timings, now, now_ms);
        };
        let fenced = JoinOutcome {
            error_code: ResponseError::FencedInstanceId.code(),
            generation_id: -1,
            member_id: old_id.to_string(),
            ..JoinOutcome::default()
        };
        if let Some(waiter) = member.join_waiter.take() {
            let _ = waiter.send(fenced);
        }
        if let Some(waiter) = member.sync_waiter.take() {
            let _ = waiter.send(SyncOutcome {
                error_code: ResponseError::FencedInstanceId.code(),
                ..SyncOutcome::default()
            });
        }
        let protocols_changed = member.protocols != request.protocols;
        member.member_id = new_id.clone();
        member.protocols = request.protocols;
        member.client_id = request.client_id;
        member.client_host = request.client_host;
        member.session_timeout_ms = request.session_timeout_ms;
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        member.touch(now);
        if self.leader_id.as_deref() == Some(old_id) {
            self.leader_id = Some(new_id.clone());
        }
        if let Some(instance) = &member.group_instance_id {
            self.static_members.insert(instance.clone(), new_id.clone());
        }
        self.members.insert(new_id.clone(), member);
        self.dirty = true;
        let is_leader = self.leader_id.as_deref() == Some(new_id.as_str());
        match self.state {
            GroupState::Stable if !protocols_changed && !is_leader => {
                Reply::Now(self.join_outcome_for(&new_id))
            }
            _ => {
                let (sender, receiver) = oneshot::channel();
                if let Some(member) = self.members.get_mut(&new_id) {
                    member.join_waiter = Some(sender);
                }
                if self.state != GroupState::PreparingRebalance {
                    self.prepare_rebalance(timings, now, now_ms);
                }
                self.maybe_complete_join(now, now_ms);
                Reply::Later(receiver)
            }
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        request: JoinRequest,
        member_id: String,
        timings: &GroupTimings,
        now: Instant,
        now_ms: i64,
    ) -> Reply<JoinOutcome> {
        let (sender, receiver) = oneshot::channel();
        let mut member = Member {
            member_id: member_id.clone(),
            group_instance_id: request.group_instance_id.clone(),
            client_id: request.client_id,
            client_host: request.client_host,
            session_timeout_ms: request.session_timeout_ms,
            rebalance_timeout_ms: request.rebalance_timeout_ms,
            protocols: request.protocols,
            assignment: Bytes::new(),
            session_deadline: now,
            join_waiter: Some(sender),
            sync_waiter: None,
        };
        member.touch(now);
        if self.members.is_empty() {
            self.protocol_type = Some(request.protocol_type);
        }
        if let Some(instance) = request.group_instance_id {
            self.static_members.insert(instance, member_id.clone());
        }
        self.members.insert(member_id, member);
        if self.state == GroupState::PreparingRebalance {
            if self.in_initial_delay {
                // A new member during the initial delay extends it, up to the rebalance timeout.
                let extended = now + Duration::from_millis(timings.initial_rebalance_delay_ms);
                let cap = now + self.rebalance_timeout();
                self.join_deadline = Some(extended.min(cap));
            }
        } else {
            self.prepare_rebalance(timings, now, now_ms);
        }
        self.maybe_complete_join(now, now_ms);
        Reply::Later(receiver)
    }

    fn rebalance_timeout(&self) -> Duration {
        let ms = self
            .members
            .values()
            .map(|m| m.rebalance_timeout_ms.max(m.session_timeout_ms))
            .max()
            .unwrap_or(0);
        Duration::from_millis(ms.max(0) as u64)
    }

    fn prepare_rebalance(&mut self, timings: &GroupTimings, now: Instant, now_ms: i64) {
        // Members waiting for an assignment learn that a new rebalance started.
        for member in self.members.values_mut() {
            if let Some(waiter) = member.sync_waiter.take() {
                let _ = waiter.send(SyncOutcome {
                    error_code: ResponseError::RebalanceInProgress.code(),
                    ..SyncOutcome::default()
                });
            }
        }
        let was_empty = self.state == GroupState::Empty;
        self.set_state(GroupState::PreparingRebalance, now_ms);
        if was_empty && timings.initial_rebalance_delay_ms > 0 {
            self.in_initial_delay = true;
            let delay = Duration::from_millis(timings.initial_rebalance_delay_ms);
            self.join_deadline = Some(now + delay.min(self.rebalance_timeout()));
        } else {
            self.in_initial_delay = false;
            self.join_deadline = Some(now + self.rebalance_timeout());
        }
    }

    fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.join_waiter.is_some())
    }

    fn maybe_complete_join(&mut self, now: Instant, now_ms: i64) {
        if self.state == GroupState::PreparingRebalance
            && !self.in_initial_delay
            && self.all_members_joined()
        {
            self.complete_join(now, now_ms);
        }
    }

    /// Ends the join phase: drops members that did not rejoin, starts the next generation and
    /// answers every waiting JoinGroup.
    fn complete_join(&mut self, now: Instant, now_ms: i64) {
        let absent: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for member_id in absent {
            self.remove_member(&member_id);
        }
        self.pending_members.clear();
        self.join_deadline = None;
        self.in_initial_delay = false;
        self.generation_id += 1;
        self.dirty = true;
        if self.members.is_empty() {
            self.protocol_name = None;
            self.leader_id = None;
            self.set_state(GroupState::Empty, now_ms);
            return;
        }
        self.protocol_name = self.select_protocol();
        if self
            .leader_id
            .as_ref()
            .is_none_or(|l| !self.members.contains_key(l))
        {
            self.leader_id = self.members.keys().next().cloned();
        }
        self.set_state(GroupState::CompletingRebalance, now_ms);
        let member_ids: Vec<String> = self.members.keys().cloned().collect();
        for member_id in member_ids {
            let outcome = self.join_outcome_for(&member_id);
            if let Some(member) = self.members.get_mut(&member_id) {
                member.touch(now);
                if let Some(waiter) = member.join_waiter.take() {
                    let _ = waiter.send(outcome);
                }
            }
        }
    }

    /// The vote of Kafka's coordinator: each member votes for its most preferred candidate.
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: Vec<(String, usize)> = candidates.iter().map(|c| (c.clone(), 0)).collect();
        for member in self.members.values() {
            if let Some((name, _)) = member
                .protocols
                .iter()
                .find(|(n, _)| candidates.contains(n))
            {
                if let Some(entry) = votes.iter_mut().find(|(c, _)| c == name) {
                    entry.1 += 1;
                }
            }
        }
        votes
            .into_iter()
            .fold(
                None,
                |best: Option<(String, usize)>, (name, count)| match best {
                    Some((_, best_count)) if best_count >= count => best,
                    _ => Some((name, count)),
                },
            )
            .map(|(name, _)| name)
    }

    fn join_outcome_for(&self, member_id: &str) -> JoinOutcome {
        let leader = self.leader_id.clone().unwrap_or_default();
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let members = if leader == member_id {
            self.members
                .values()
                .map(|m| JoinedMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    metadata: m.metadata_for(&protocol),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinOutcome {
            error_code: 0,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader,
            member_id: member_id.to_string(),
            members,
        }
    }

    fn remove_member(&mut self, member_id: &str) {
        if let Some(mut member) = self.members.remove(member_id) {
            if let Some(instance) = &member.group_instance_id {
                if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                    self.static_members.remove(instance);
                }
            }
            if let Some(waiter) = member.join_waiter.take() {
                let _ = waiter.send(JoinOutcome {
                    error_code: ResponseError::UnknownMemberId.code(),
                    generation_id: -1,
                    member_id: member_id.to_string(),
                    ..JoinOutcome::default()
                });
            }
            if let Some(waiter) = member.sync_waiter.take() {
                let _ = waiter.send(SyncOutcome {
                    error_code: ResponseError::UnknownMemberId.code(),
                    ..SyncOutcome::default()
                });
            }
            self.dirty = true;
        }
    }

    /// Checks member id, static instance and generation; Ok when they match.
    fn validate_member(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> Result<(), i16> {
        if let Some(instance) = group_instance_id {
            if let Some(known) = self.static_members.get(instance) {
                if known != member_id {
                    return Err(ResponseError::FencedInstanceId.code());
                }
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId.code());
        }
        if generation_id != self.generation_id {
            return Err(ResponseError::IllegalGeneration.code());
        }
        Ok(())
    }

    /// Handles SyncGroup.
    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
        now_ms: i64,
    ) -> Reply<SyncOutcome> {
        let fail = |code: i16| {
            Reply::Now(SyncOutcome {
                error_code: code,
                ..SyncOutcome::default()
            })
        };
        if let Err(code) = self.validate_member(member_id, group_instance_id, generation_id) {
            return fail(code);
        }
        let mismatched = |given: Option<&str>, have: &Option<String>| {
            given.is_some_and(|g| have.as_deref() != Some(g))
        };
        if mismatched(protocol_type, &self.protocol_type)
            || mismatched(protocol_name, &self.protocol_name)
        {
            return fail(ResponseError::InconsistentGroupProtocol.code());
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => fail(ResponseError::UnknownMemberId.code()),
            GroupState::PreparingRebalance => fail(ResponseError::RebalanceInProgress.code()),
            GroupState::Stable => {
                let member = &self.members[member_id];
                Reply::Now(self.sync_outcome(member.assignment.clone()))
            }
            GroupState::CompletingRebalance => {
                let (sender, receiver) = oneshot::channel();
                if let Some(member) = self.members.get_mut(member_id) {
                    member.touch(now);
                    member.sync_waiter = Some(sender);
                }
                if self.leader_id.as_deref() == Some(member_id) {
                    let assignments: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for member in self.members.values_mut() {
                        member.assignment = assignments
                            .get(&member.member_id)
                            .cloned()
                            .unwrap_or_default();
                    }
                    self.set_state(GroupState::Stable, now_ms);
                    self.dirty = true;
                    let outcomes: Vec<(String, SyncOutcome)> = self
                        .members
                        .values()
                        .map(|m| (m.member_id.clone(), self.sync_outcome(m.assignment.clone())))
                        .collect();
                    for (id, outcome) in outcomes {
                        if let Some(waiter) =
                            self.members.get_mut(&id).and_then(|m| m.sync_waiter.take())
                        {
                            let _ = waiter.send(outcome);
                        }
                    }
                }
                Reply::Later(receiver)
            }
        }
    }

    fn sync_outcome(&self, assignment: Bytes) -> SyncOutcome {
        SyncOutcome {
            error_code: 0,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment,
        }
    }

    /// Handles Heartbeat; returns the error code.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        now: Instant,
    ) -> i16 {
        if matches!(self.state, GroupState::Empty | GroupState::Dead) {
            return ResponseError::UnknownMemberId.code();
        }
        if let Err(code) = self.validate_member(member_id, group_instance_id, generation_id) {
            return code;
        }
        if let Some(member) = self.members.get_mut(member_id) {
            member.touch(now);
        }
        if self.state == GroupState::PreparingRebalance {
            ResponseError::RebalanceInProgress.code()
        } else {
            0
        }
    }

    /// Handles one member of a LeaveGroup; returns the error code for it.
    pub fn leave(
        &mut self,
        member_id: &str,
        group_instance_id: Option<&str>,
        timings: &GroupTimings,
        now: Instant,
        now_ms: i64,
    ) -> i16 {
        let member_id = match group_instance_id {
            Some(instance) => match self.static_members.get(instance) {
                Some(known) if member_id.is_empty() || known == member_id => known.clone(),
                Some(_) => return ResponseError::FencedInstanceId.code(),
                None => return ResponseError::UnknownMemberId.code(),
            },
            None => member_id.to_string(),
        };
        if self.pending_members.remove(&member_id).is_some() {
            self.maybe_complete_join(now, now_ms);
            return 0;
        }
        if !self.members.contains_key(&member_id) {
            return ResponseError::UnknownMemberId.code();
        }
        self.remove_member(&member_id);
        self.after_member_removed(timings, now, now_ms);
        0
    }

    fn after_member_removed(&mut self, timings: &GroupTimings, now: Instant, now_ms: i64) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                if self.members.is_empty() {
                    self.generation_id += 1;
                    self.protocol_name = None;
                    self.leader_id = None;
                    self.set_state(GroupState::Empty, now_ms);
                    self.dirty = true;
                } else {
                    self.prepare_rebalance(timings, now, now_ms);
                }
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now, now_ms),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Checks an offset commit against membership: Ok(true) for a member's commit, Ok(false)
    /// for a simple (standalone) commit, or the error code.
    pub fn authorize_commit(
        &mut self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        now: Instant,
    ) -> Result<(), i16> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable.code());
        }
        if generation_id < 0 && member_id.is_empty() {
            return if self.state == GroupState::Empty {
                Ok(())
            } else {
                Err(ResponseError::UnknownMemberId.code())
            };
        }
        self.validate_member(member_id, group_instance_id, generation_id)?;
        if self.state == GroupState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress.code());
        }
        if let Some(member) = self.members.get_mut(member_id) {
            member.touch(now);
        }
        Ok(())
    }

    /// Advances timers: ends a join phase whose deadline passed, expires members whose
    /// session ran out and pending member ids never used.
    pub fn tick(&mut self, timings: &GroupTimings, now: Instant, now_ms: i64) {
        self.pending_members.retain(|_, deadline| *deadline > now);
        if self.state == GroupState::PreparingRebalance
            && self.join_deadline.is_some_and(|d| d <= now)
        {
            if self.in_initial_delay && !self.all_members_joined() {
                // The initial delay is over but not everyone is back: wait for the rest up to
                // the rebalance timeout.
                self.in_initial_delay = false;
                self.join_deadline = Some(now + self.rebalance_timeout());
            } else {
                self.complete_join(now, now_ms);
            }
        }
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.session_deadline <= now && m.join_waiter.is_none() && m.sync_waiter.is_none()
            })
            .map(|m| m.member_id.clone())
            .collect();
        if !expired.is_empty() {
            for member_id in &expired {
                tracing::info!(group = %self.group_id, member = %member_id, "member session expired");
                self.remove_member(member_id);
            }
            self.after_member_removed(timings, now, now_ms);
        }
        // A leader that never syncs would leave the others waiting: its session expires above
        // since it has no sync waiter.
        if self.state == GroupState::PreparingRebalance {
            self.maybe_complete_join(now, now_ms);
        }
    }

    /// Whether the group has no members and no offsets (and may be forgotten).
    pub fn is_empty_and_unused(&self) -> bool {
        self.state == GroupState::Empty
            && self.members.is_empty()
            && self.offsets.is_empty()
            && self.consumer.as_ref().is_none_or(|c| c.members.is_empty())
    }

    /// Whether this is a KIP-848 consumer group with members.
    pub fn is_active_consumer_group(&self) -> bool {
        self.consumer
            .as_ref()
            .is_some_and(|c| !c.members.is_empty())
    }

    /// Topics the members subscribe to (consumer protocol only), if known.
    pub fn subscribed_topics(&self) -> Option<std::collections::HashSet<String>> {
        use kafka_protocol::messages::ConsumerProtocolSubscription;
        use kafka_protocol::protocol::Decodable;
        if self.protocol_type.as_deref() != Some("consumer") || self.members.is_empty() {
            return None;
        }
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let mut topics = std::collections::HashSet::new();
        for member in self.members.values() {
            let mut metadata = member.metadata_for(&protocol);
            if metadata.len() < 2 {
                continue;
            }
            let version = i16::from_be_bytes([metadata[0], metadata[1]]);
            bytes::Buf::advance(&mut metadata, 2);
            // Subscription metadata is small; a claimed count larger than the bytes is refused
            // before decoding.
            if metadata.len() >= 4 {
                let count =
                    i32::from_be_bytes([metadata[0], metadata[1], metadata[2], metadata[3]]);
                if count < 0 || count as usize > metadata.len() {
                    continue;
                }
            }
            if let Ok(subscription) =
                ConsumerProtocolSubscription::decode(&mut metadata, version.clamp(0, 3))
            {
                topics.extend(subscription.topics.iter().map(|t| t.to_string()));
            }
        }
        Some(topics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMINGS: GroupTimings = GroupTimings {
        initial_rebalance_delay_ms: 0,
        min_session_timeout_ms: 1000,
        max_session_timeout_ms: 60_000,
        max_members: 100,
    };

    fn request(member_id: &str, protocols: &[&str]) -> JoinRequest {
        JoinRequest {
            member_id: member_id.to_string(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::from(p.to_string())))
                .collect(),
            require_known_member_id: true,
        }
    }

    fn now_join(reply: Reply<JoinOutcome>) -> JoinOutcome {
        match reply {
            Reply::Now(outcome) => outcome,
            Reply::Later(mut receiver) => receiver.try_recv().expect("answered"),
        }
    }

    #[test]
    fn two_members_join_sync_and_rebalance_on_leave() {
        let now = Instant::now();
        let mut group = Group::new("g", 0);
        let mut ids = 0;
        let mut next_id = || {
            ids += 1;
            format!("m{ids}")
        };
        // First join without an id: MEMBER_ID_REQUIRED, then join with it.
        let first = now_join(group.join(request("", &["range"]), &mut next_id, &TIMINGS, now, 0));
        assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
        let m1 = first.member_id;
        let joined = now_join(group.join(request(&m1, &["range"]), &mut next_id, &TIMINGS, now, 0));
        assert_eq!((joined.error_code, joined.generation_id), (0, 1));
        assert_eq!(joined.leader, m1);
        assert_eq!(group.state, GroupState::CompletingRebalance);
        let Reply::Later(mut sync) = group.sync(
            &m1,
            None,
            1,
            None,
            None,
            vec![(m1.clone(), Bytes::from_static(b"a1"))],
            now,
            0,
        ) else {
            panic!("leader sync completes through the waiter");
        };
        assert_eq!(
            sync.try_recv().unwrap().assignment,
            Bytes::from_static(b"a1")
        );
        assert_eq!(group.state, GroupState::Stable);

        // A second member: the first must rejoin; the join completes when both are in.
        let second = now_join(group.join(
            request("", &["roundrobin", "range"]),
            &mut next_id,
            &TIMINGS,
            now,
            0,
        ));
        let m2 = second.member_id;
        let Reply::Later(mut join2) = group.join(
            request(&m2, &["roundrobin", "range"]),
            &mut next_id,
            &TIMINGS,
            now,
            0,
        ) else {
            panic!("waits for the others");
        };
        assert_eq!(
            group.heartbeat(&m1, None, 1, now),
            ResponseError::RebalanceInProgress.code()
        );
        let Reply::Later(mut join1) =
            group.join(request(&m1, &["range"]), &mut next_id, &TIMINGS, now, 0)
        else {
            panic!("completes through waiters");
        };
        let (j1, j2) = (join1.try_recv().unwrap(), join2.try_recv().unwrap());
        assert_eq!((j1.generation_id, j2.generation_id), (2, 2));
        assert_eq!(
            j1.protocol_name.as_deref(),
            Some("range"),
            "the only common protocol"
        );
        assert_eq!(j1.members.len(), 2, "the leader sees every member");
        assert!(j2.members.is_empty());
        assert_eq!(
            group.heartbeat(&m2, None, 1, now),
            ResponseError::IllegalGeneration.code()
        );

        // The leader leaves: the other rejoins alone.
        assert_eq!(group.leave(&m1, None, &TIMINGS, now, 0), 0);
        assert_eq!(group.state, GroupState::PreparingRebalance);
        let rejoined =
            now_join(group.join(request(&m2, &["range"]), &mut next_id, &TIMINGS, now, 0));
        assert_eq!(
            (rejoined.generation_id, rejoined.leader.as_str()),
            (3, m2.as_str())
        );
        assert_eq!(
            group.leave("nobody", None, &TIMINGS, now, 0),
            ResponseError::UnknownMemberId.code()
        );
    }

    #[test]
    fn expired_sessions_trigger_a_rebalance_and_empty_the_group() {
        let now = Instant::now();
        let mut group = Group::new("g", 0);
        let mut join = request("", &["range"]);
        join.require_known_member_id = false;
        let joined = now_join(group.join(join, || "m1".into(), &TIMINGS, now, 0));
        assert_eq!(joined.generation_id, 1);
        group.tick(&TIMINGS, now + Duration::from_secs(11), 0);
        assert_eq!(group.state, GroupState::Empty);
        assert!(group.members.is_empty());
        assert_eq!(group.generation_id, 2);
    }

    #[test]
    fn rejects_bad_joins() {
        let now = Instant::now();
        let mut group = Group::new("g", 0);
        let mut short = request("", &["range"]);
        short.session_timeout_ms = 10;
        assert_eq!(
            now_join(group.join(short, || "x".into(), &TIMINGS, now, 0)).error_code,
            ResponseError::InvalidSessionTimeout.code()
        );
        let mut join = request("", &["range"]);
        join.require_known_member_id = false;
        now_join(group.join(join, || "m1".into(), &TIMINGS, now, 0));
        let other = request("", &["sticky"]);
        assert_eq!(
            now_join(group.join(other, || "m2".into(), &TIMINGS, now, 0)).error_code,
            ResponseError::InconsistentGroupProtocol.code()
        );
        assert_eq!(
            now_join(group.join(
                request("ghost", &["range"]),
                || "m3".into(),
                &TIMINGS,
                now,
                0
            ))
            .error_code,
            ResponseError::UnknownMemberId.code()
        );
    }

    #[test]
    fn a_static_member_rejoining_keeps_its_assignment() {
        let now = Instant::now();
        let mut group = Group::new("g", 0);
        let mut join = request("", &["range"]);
        join.group_instance_id = Some("i1".into());
        let first = now_join(group.join(join.clone(), || "m1".into(), &TIMINGS, now, 0));
        assert_eq!(
            first.error_code, 0,
            "static members need no MEMBER_ID_REQUIRED round"
        );
        let mut join_b = request("", &["range"]);
        join_b.group_instance_id = Some("i2".into());
        // m1 is in CompletingRebalance; i2 joining starts a new rebalance, m1 rejoins.
        let Reply::Later(mut b) = group.join(join_b, || "m2".into(), &TIMINGS, now, 0) else {
            panic!()
        };
        let mut rejoin = join.clone();
        rejoin.member_id = "m1".into();
        now_join(group.join(rejoin, || unreachable!(), &TIMINGS, now, 0));
        assert_eq!(b.try_recv().unwrap().generation_id, 2);
        let Reply::Later(_) = group.sync(
            "m1",
            Some("i1"),
            2,
            None,
            None,
            vec![
                ("m1".into(), Bytes::from_static(b"A")),
                ("m2".into(), Bytes::from_static(b"B")),
            ],
            now,
            0,
        ) else {
            panic!()
        };
        // m2 restarts (new process, same instance id): it gets a new member id and its old
        // assignment back without a rebalance.
        let mut restart = request("", &["range"]);
        restart.group_instance_id = Some("i2".into());
        let back = now_join(group.join(restart, || "m2b".into(), &TIMINGS, now, 0));
        assert_eq!(
            (back.error_code, back.generation_id, back.member_id.as_str()),
            (0, 2, "m2b")
        );
        assert_eq!(group.state, GroupState::Stable);
        assert_eq!(
            group.heartbeat("m2", Some("i2"), 2, now),
            ResponseError::FencedInstanceId.code()
        );
        let Reply::Now(sync) = group.sync("m2b", Some("i2"), 2, None, None, vec![], now, 0) else {
            panic!()
        };
        assert_eq!(sync.assignment, Bytes::from_static(b"B"));
    }
}
