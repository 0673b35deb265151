//! The new consumer group protocol (KIP-848): members heartbeat with ConsumerGroupHeartbeat,
//! the coordinator computes the assignment (uniform or range assignor) and hands it out
//! incrementally: a partition moving from member A to member B is first revoked from A, and
//! given to B only once A's heartbeat shows it no longer owns it. No partition is ever owned
//! by two members at once.
//!
//! Epochs: the group epoch bumps on every membership or subscription change (and when the
//! subscribed topics' partition counts change); the assignment epoch is the group epoch the
//! target assignment was computed for; a member's epoch reaches the assignment epoch once it
//! has revoked what it must give up.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use strom_metadata::MetadataImage;
use uuid::Uuid;

/// A topic id and partition.
pub type TopicPartition = (Uuid, i32);

/// Member epoch sent by a member that joins.
pub const JOIN_EPOCH: i32 = 0;
/// Member epoch sent by a member that leaves.
pub const LEAVE_EPOCH: i32 = -1;
/// Member epoch sent by a static member that leaves temporarily.
pub const STATIC_LEAVE_EPOCH: i32 = -2;

/// A ConsumerGroupHeartbeat, in the coordinator's terms.
#[derive(Debug, Clone)]
pub struct HeartbeatRequest {
    /// Member id (empty on a v0 join: the coordinator picks one).
    pub member_id: String,
    /// Member epoch.
    pub member_epoch: i32,
    /// Static instance id.
    pub instance_id: Option<String>,
    /// Rack id.
    pub rack_id: Option<String>,
    /// Rebalance timeout, -1 if unchanged.
    pub rebalance_timeout_ms: i32,
    /// Subscribed topic names, `None` if unchanged.
    pub subscribed_topic_names: Option<Vec<String>>,
    /// Subscribed topic regex, `None` if unchanged.
    pub subscribed_topic_regex: Option<String>,
    /// Server-side assignor, `None` if unchanged.
    pub server_assignor: Option<String>,
    /// Partitions the member owns now, `None` if unchanged.
    pub owned: Option<BTreeSet<TopicPartition>>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
}

/// What a heartbeat gets back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatOutcome {
    /// Member id.
    pub member_id: String,
    /// Member epoch.
    pub member_epoch: i32,
    /// The member's assignment, when it changed since the last answer.
    pub assignment: Option<BTreeSet<TopicPartition>>,
}

/// One member.
#[derive(Debug, Clone)]
pub struct ConsumerMember {
    /// Member id.
    pub member_id: String,
    /// Static instance id.
    pub instance_id: Option<String>,
    /// Rack id.
    pub rack_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Current epoch.
    pub member_epoch: i32,
    previous_member_epoch: i32,
    /// Subscribed topic names.
    pub subscribed_topic_names: Vec<String>,
    /// Subscribed topic regex.
    pub subscribed_topic_regex: Option<String>,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Partitions the member may own now.
    pub assigned: BTreeSet<TopicPartition>,
    /// Partitions the member must give up before it moves on.
    pub pending_revocation: BTreeSet<TopicPartition>,
    revocation_deadline: Option<Instant>,
    session_deadline: Instant,
    last_sent: Option<(i32, BTreeSet<TopicPartition>)>,
}

/// Settings of consumer groups.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerGroupTimings {
    /// `group.consumer.session.timeout.ms`.
    pub session_timeout_ms: u64,
    /// `group.consumer.heartbeat.interval.ms`.
    pub heartbeat_interval_ms: i32,
    /// Most members in one group.
    pub max_members: usize,
}

/// The KIP-848 state of a group.
#[derive(Debug, Clone, Default)]
pub struct ConsumerGroupState {
    /// Group epoch.
    pub group_epoch: i32,
    /// Epoch of the target assignment.
    pub assignment_epoch: i32,
    /// Members by id.
    pub members: BTreeMap<String, ConsumerMember>,
    /// Target assignment by member id.
    pub target: HashMap<String, BTreeSet<TopicPartition>>,
    /// Assignor of the last computed target.
    pub assignor: String,
    /// Partition count of every subscribed topic when the target was computed.
    subscription_fingerprint: BTreeMap<Uuid, usize>,
}

fn error(code: ResponseError, message: impl Into<String>) -> (i16, String) {
    (code.code(), message.into())
}

impl ConsumerGroupState {
    /// Kafka's name of the group state (ConsumerGroupDescribe uses lower case).
    pub fn state_name(&self) -> &'static str {
        if self.members.is_empty() {
            "Empty"
        } else if self.assignment_epoch < self.group_epoch {
            "Assigning"
        } else if self.members.values().any(|m| {
            m.member_epoch != self.assignment_epoch
                || !m.pending_revocation.is_empty()
                || self
                    .target
                    .get(&m.member_id)
                    .is_some_and(|t| *t != m.assigned)
        }) {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    /// Topics any member subscribes to, by name (regexes resolved against the image).
    pub fn subscribed_topics(&self, image: &MetadataImage) -> HashSet<String> {
        let mut topics = HashSet::new();
        for member in self.members.values() {
            topics.extend(member_topics(member, image));
        }
        topics
    }

    /// Handles one heartbeat.
    pub fn heartbeat(
        &mut self,
        request: HeartbeatRequest,
        new_member_id: impl FnOnce() -> String,
        image: &MetadataImage,
        timings: &ConsumerGroupTimings,
        now: Instant,
    ) -> Result<HeartbeatOutcome, (i16, String)> {
        if let Some(regex) = &request.subscribed_topic_regex {
            if !regex.is_empty() {
                regex::Regex::new(regex)
                    .map_err(|e| error(ResponseError::InvalidRegularExpression, e.to_string()))?;
            }
        }
        let member_id = match request.member_epoch {
            JOIN_EPOCH => self.join(&request, new_member_id, timings, now)?,
            LEAVE_EPOCH | STATIC_LEAVE_EPOCH => {
                if self.members.remove(&request.member_id).is_some() {
                    self.target.remove(&request.member_id);
                    self.group_epoch += 1;
                }
                return Ok(HeartbeatOutcome {
                    member_id: request.member_id,
                    member_epoch: request.member_epoch,
                    assignment: None,
                });
            }
            epoch => {
                let Some(member) = self.members.get(&request.member_id) else {
                    return Err(error(
                        ResponseError::UnknownMemberId,
                        format!("member {} is not in the group", request.member_id),
                    ));
                };
                let owned_is_subset = request
                    .owned
                    .as_ref()
                    .is_none_or(|owned| owned.is_subset(&member.assigned));
                if epoch != member.member_epoch
                    && !(epoch == member.previous_member_epoch && owned_is_subset)
                {
                    return Err(error(
                        ResponseError::FencedMemberEpoch,
                        format!(
                            "member epoch {epoch} does not match the current epoch {}",
                            member.member_epoch
                        ),
                    ));
                }
                request.member_id.clone()
            }
        };
        let changed = self.update_member(&member_id, &request, timings, now);
        let fingerprint = self.fingerprint(image);
        if changed || fingerprint != self.subscription_fingerprint {
            self.group_epoch += 1;
        }
        if self.group_epoch > self.assignment_epoch {
            self.compute_target(image, request.server_assignor.as_deref());
            self.subscription_fingerprint = fingerprint;
        }
        self.reconcile(&member_id, request.owned.as_ref(), now);
        let member = self
            .members
            .get_mut(&member_id)
            .ok_or_else(|| error(ResponseError::UnknownMemberId, "member vanished"))?;
        let current = (member.member_epoch, member.assigned.clone());
        let assignment = if member.last_sent.as_ref() != Some(&current)
            || request.member_epoch == JOIN_EPOCH
            || request
                .owned
                .as_ref()
                .is_some_and(|o| *o != member.assigned)
        {
            member.last_sent = Some(current);
            Some(member.assigned.clone())
        } else {
            None
        };
        Ok(HeartbeatOutcome {
            member_id,
            member_epoch: member.member_epoch,
            assignment,
        })
    }

    fn join(
        &mut self,
        request: &HeartbeatRequest,
        new_member_id: impl FnOnce() -> String,
        timings: &ConsumerGroupTimings,
        now: Instant,
    ) -> Result<String, (i16, String)> {
        let member_id = if request.member_id.is_empty() {
            new_member_id()
        } else {
            request.member_id.clone()
        };
        if let Some(instance) = &request.instance_id {
            let previous: Vec<String> = self
                .members
                .values()
                .filter(|m| m.instance_id.as_ref() == Some(instance) && m.member_id != member_id)
                .map(|m| m.member_id.clone())
                .collect();
            for old in previous {
                self.members.remove(&old);
                self.target.remove(&old);
            }
        }
        if !self.members.contains_key(&member_id) && self.members.len() >= timings.max_members {
            return Err(error(
                ResponseError::GroupMaxSizeReached,
                "the group is full",
            ));
        }
        // A (re)joining member starts from nothing: whatever it owned before is gone.
        self.members.insert(
            member_id.clone(),
            ConsumerMember {
                member_id: member_id.clone(),
                instance_id: request.instance_id.clone(),
                rack_id: request.rack_id.clone(),
                client_id: request.client_id.clone(),
                client_host: request.client_host.clone(),
                member_epoch: 0,
                previous_member_epoch: -1,
                subscribed_topic_names: Vec::new(),
                subscribed_topic_regex: None,
                rebalance_timeout_ms: request.rebalance_timeout_ms.max(0),
                assigned: BTreeSet::new(),
                pending_revocation: BTreeSet::new(),
                revocation_deadline: None,
                session_deadline: now + Duration::from_millis(timings.session_timeout_ms),
                last_sent: None,
            },
        );
        self.group_epoch += 1;
        Ok(member_id)
    }

    /// Applies the request's fields to the member; true when its subscription changed.
    fn update_member(
        &mut self,
        member_id: &str,
        request: &HeartbeatRequest,
        timings: &ConsumerGroupTimings,
        now: Instant,
    ) -> bool {
        let Some(member) = self.members.get_mut(member_id) else {
            return false;
        };
        member.session_deadline = now + Duration::from_millis(timings.session_timeout_ms);
        if request.rebalance_timeout_ms >= 0 {
            member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        }
        if request.rack_id.is_some() {
            member.rack_id = request.rack_id.clone();
        }
        let mut changed = false;
        if let Some(names) = &request.subscribed_topic_names {
            let mut names = names.clone();
            names.sort();
            names.dedup();
            if names != member.subscribed_topic_names {
                member.subscribed_topic_names = names;
                changed = true;
            }
        }
        if let Some(regex) = &request.subscribed_topic_regex {
            let regex = (!regex.is_empty()).then(|| regex.clone());
            if regex != member.subscribed_topic_regex {
                member.subscribed_topic_regex = regex;
                changed = true;
            }
        }
        changed
    }

    fn fingerprint(&self, image: &MetadataImage) -> BTreeMap<Uuid, usize> {
        self.subscribed_topics(image)
            .iter()
            .filter_map(|name| image.topic(name))
            .map(|t| (t.topic_id, t.partitions.len()))
            .collect()
    }

    /// Computes the target assignment for the current group epoch.
    fn compute_target(&mut self, image: &MetadataImage, assignor: Option<&str>) {
        let assignor = match assignor {
            Some("range") => "range",
            Some(_) | None if self.assignor == "range" && assignor.is_none() => "range",
            _ => "uniform",
        };
        self.assignor = assignor.to_string();
        let subscriptions: BTreeMap<String, BTreeSet<TopicPartition>> = self
            .members
            .values()
            .map(|m| {
                let partitions = member_topics(m, image)
                    .iter()
                    .filter_map(|name| image.topic(name))
                    .flat_map(|t| (0..t.partitions.len() as i32).map(move |p| (t.topic_id, p)))
                    .collect();
                (m.member_id.clone(), partitions)
            })
            .collect();
        self.target = if assignor == "range" {
            range_assign(&subscriptions)
        } else {
            uniform_assign(&subscriptions, &self.target)
        };
        self.assignment_epoch = self.group_epoch;
    }

    /// Moves a member toward its target without ever giving it a partition another member
    /// still owns.
    fn reconcile(
        &mut self,
        member_id: &str,
        owned: Option<&BTreeSet<TopicPartition>>,
        now: Instant,
    ) {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let owned_by_others: HashSet<TopicPartition> = self
            .members
            .values()
            .filter(|m| m.member_id != member_id)
            .flat_map(|m| {
                m.assigned
                    .iter()
                    .chain(m.pending_revocation.iter())
                    .copied()
            })
            .collect();
        let assignment_epoch = self.assignment_epoch;
        let Some(member) = self.members.get_mut(member_id) else {
            return;
        };
        if !member.pending_revocation.is_empty() {
            let revoked = owned.is_some_and(|o| o.is_disjoint(&member.pending_revocation));
            if !revoked {
                return;
            }
            member.pending_revocation.clear();
            member.revocation_deadline = None;
        }
        if member.member_epoch != assignment_epoch {
            let revoke: BTreeSet<TopicPartition> =
                member.assigned.difference(&target).copied().collect();
            if !revoke.is_empty() {
                member.assigned.retain(|tp| target.contains(tp));
                member.pending_revocation = revoke;
                let timeout = Duration::from_millis(member.rebalance_timeout_ms.max(0) as u64);
                member.revocation_deadline = Some(now + timeout);
                return;
            }
            member.previous_member_epoch = member.member_epoch;
            member.member_epoch = assignment_epoch;
        }
        for tp in target {
            if !owned_by_others.contains(&tp) {
                member.assigned.insert(tp);
            }
        }
    }

    /// Expires members whose session ran out or who did not revoke in time; true if any left.
    pub fn tick(&mut self, now: Instant) -> bool {
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.session_deadline <= now || m.revocation_deadline.is_some_and(|d| d <= now)
            })
            .map(|m| m.member_id.clone())
            .collect();
        for member_id in &gone {
            tracing::info!(member = %member_id, "consumer group member expired");
            self.members.remove(member_id);
            self.target.remove(member_id);
        }
        if !gone.is_empty() {
            self.group_epoch += 1;
        }
        !gone.is_empty()
    }

    /// Checks an offset commit's member id and epoch.
    pub fn authorize_commit(&self, member_id: &str, member_epoch: i32) -> Result<(), i16> {
        if member_epoch < 0 && member_id.is_empty() {
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(ResponseError::UnknownMemberId.code())
            };
        }
        let member = self
            .members
            .get(member_id)
            .ok_or(ResponseError::UnknownMemberId.code())?;
        if member_epoch > member.member_epoch {
            return Err(ResponseError::FencedMemberEpoch.code());
        }
        if member_epoch < member.member_epoch && member_epoch != member.previous_member_epoch {
            return Err(ResponseError::StaleMemberEpoch.code());
        }
        Ok(())
    }
}

fn member_topics(member: &ConsumerMember, image: &MetadataImage) -> Vec<String> {
    let mut topics: Vec<String> = member.subscribed_topic_names.clone();
    if let Some(pattern) = &member.subscribed_topic_regex {
        if let Ok(regex) = regex::Regex::new(&format!("^(?:{pattern})$")) {
            topics.extend(
                image
                    .topics
                    .keys()
                    .filter(|name| !name.starts_with("__") && regex.is_match(name))
                    .cloned(),
            );
        }
    }
    topics
}

/// Spreads partitions evenly over the members subscribed to them, keeping each partition
/// where it was when that is still fair (sticky).
fn uniform_assign(
    subscriptions: &BTreeMap<String, BTreeSet<TopicPartition>>,
    previous: &HashMap<String, BTreeSet<TopicPartition>>,
) -> HashMap<String, BTreeSet<TopicPartition>> {
    let mut assignment: HashMap<String, BTreeSet<TopicPartition>> = subscriptions
        .keys()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    let all: BTreeSet<TopicPartition> = subscriptions.values().flatten().copied().collect();
    let eligible = |tp: &TopicPartition| -> Vec<&String> {
        subscriptions
            .iter()
            .filter(|(_, subs)| subs.contains(tp))
            .map(|(m, _)| m)
            .collect()
    };
    // Keep previous owners where still subscribed.
    let mut taken = HashSet::new();
    for (member, partitions) in previous {
        if let (Some(subs), Some(mine)) = (subscriptions.get(member), assignment.get_mut(member)) {
            for tp in partitions {
                if subs.contains(tp) && taken.insert(*tp) {
                    mine.insert(*tp);
                }
            }
        }
    }
    // Give the rest to the least loaded eligible member.
    for tp in all.iter().filter(|tp| !taken.contains(tp)) {
        if let Some(member) = eligible(tp)
            .into_iter()
            .min_by_key(|m| (assignment[*m].len(), (*m).clone()))
        {
            if let Some(mine) = assignment.get_mut(member) {
                mine.insert(*tp);
            }
        }
    }
    // Balance: move partitions from the most to the least loaded eligible member.
    for _ in 0..all.len() {
        let mut moved = false;
        let mut members: Vec<String> = assignment.keys().cloned().collect();
        members.sort_by_key(|m| std::cmp::Reverse(assignment[m].len()));
        'outer: for from in &members {
            for to in members.iter().rev() {
                if assignment[from].len() <= assignment[to].len() + 1 {
                    continue;
                }
                let candidate = assignment[from]
                    .iter()
                    .rev()
                    .find(|tp| subscriptions[to].contains(tp))
                    .copied();
                if let Some(tp) = candidate {
                    if let Some(source) = assignment.get_mut(from) {
                        source.remove(&tp);
                    }
                    if let Some(target) = assignment.get_mut(to) {
                        target.insert(tp);
                    }
                    moved = true;
                    break 'outer;
                }
            }
        }
        if !moved {
            break;
        }
    }
    assignment
}

/// Kafka's range assignor per topic: each topic's partitions in contiguous ranges over the
/// sorted members subscribed to it.
fn range_assign(
    subscriptions: &BTreeMap<String, BTreeSet<TopicPartition>>,
) -> HashMap<String, BTreeSet<TopicPartition>> {
    let mut assignment: HashMap<String, BTreeSet<TopicPartition>> = subscriptions
        .keys()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    let mut by_topic: BTreeMap<Uuid, BTreeSet<i32>> = BTreeMap::new();
    for (topic, partition) in subscriptions.values().flatten() {
        by_topic.entry(*topic).or_default().insert(*partition);
    }
    for (topic, partitions) in by_topic {
        let members: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, subs)| subs.iter().any(|(t, _)| *t == topic))
            .map(|(m, _)| m)
            .collect();
        if members.is_empty() {
            continue;
        }
        let partitions: Vec<i32> = partitions.into_iter().collect();
        let per_member = partitions.len() / members.len();
        let extra = partitions.len() % members.len();
        let mut start = 0;
        for (i, member) in members.iter().enumerate() {
            let count = per_member + usize::from(i < extra);
            if let Some(mine) = assignment.get_mut(*member) {
                mine.extend(partitions[start..start + count].iter().map(|p| (topic, *p)));
            }
            start += count;
        }
    }
    assignment
}

#[cfg(test)]
mod tests {
    use super::*;
    use strom_metadata::Controller;

    const TIMINGS: ConsumerGroupTimings = ConsumerGroupTimings {
        session_timeout_ms: 45_000,
        heartbeat_interval_ms: 100,
        max_members: 100,
    };

    fn image_with_topic(partitions: i32) -> (MetadataImage, Uuid, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let mut controller = Controller::open(dir.path()).unwrap();
        controller.register_broker(0, "h", 1, None).unwrap();
        let topic = controller
            .create_topic("t", partitions, 1, &Default::default(), false)
            .unwrap();
        (controller.image().clone(), topic.topic_id, dir)
    }

    fn join(member: &str) -> HeartbeatRequest {
        HeartbeatRequest {
            member_id: member.to_string(),
            member_epoch: 0,
            instance_id: None,
            rack_id: None,
            rebalance_timeout_ms: 30_000,
            subscribed_topic_names: Some(vec!["t".to_string()]),
            subscribed_topic_regex: None,
            server_assignor: None,
            owned: Some(BTreeSet::new()),
            client_id: "c".into(),
            client_host: "/h".into(),
        }
    }

    fn beat(member: &str, epoch: i32, owned: &BTreeSet<TopicPartition>) -> HeartbeatRequest {
        HeartbeatRequest {
            member_epoch: epoch,
            subscribed_topic_names: None,
            owned: Some(owned.clone()),
            ..join(member)
        }
    }

    /// No partition is owned by two members, as seen from what each was last told.
    fn assert_exclusive(owned: &HashMap<String, BTreeSet<TopicPartition>>) {
        let mut seen = HashSet::new();
        for partitions in owned.values() {
            for tp in partitions {
                assert!(seen.insert(*tp), "{tp:?} owned twice: {owned:?}");
            }
        }
    }

    #[test]
    fn a_third_member_gets_partitions_only_after_they_are_revoked() {
        let (image, _, _dir) = image_with_topic(4);
        let now = Instant::now();
        let mut group = ConsumerGroupState::default();
        let mut owned: HashMap<String, BTreeSet<TopicPartition>> = HashMap::new();
        let mut epochs: HashMap<String, i32> = HashMap::new();
        let step = |group: &mut ConsumerGroupState,
                    request: HeartbeatRequest,
                    owned: &mut HashMap<String, BTreeSet<TopicPartition>>,
                    epochs: &mut HashMap<String, i32>| {
            let id = request.member_id.clone();
            let outcome = group
                .heartbeat(request, || unreachable!(), &image, &TIMINGS, now)
                .unwrap();
            epochs.insert(id.clone(), outcome.member_epoch);
            if let Some(assignment) = outcome.assignment {
                owned.insert(id, assignment);
            }
            assert_exclusive(owned);
        };
        step(&mut group, join("a"), &mut owned, &mut epochs);
        step(&mut group, join("b"), &mut owned, &mut epochs);
        for _ in 0..3 {
            for m in ["a", "b"] {
                let o = owned.get(m).cloned().unwrap_or_default();
                step(&mut group, beat(m, epochs[m], &o), &mut owned, &mut epochs);
            }
        }
        assert_eq!(owned["a"].len() + owned["b"].len(), 4);
        assert_eq!(owned["a"].len(), 2);
        assert_eq!(group.state_name(), "Stable");

        step(&mut group, join("c"), &mut owned, &mut epochs);
        for _ in 0..4 {
            for m in ["c", "a", "b"] {
                let o = owned.get(m).cloned().unwrap_or_default();
                step(&mut group, beat(m, epochs[m], &o), &mut owned, &mut epochs);
            }
        }
        let sizes: Vec<usize> = ["a", "b", "c"].iter().map(|m| owned[*m].len()).collect();
        assert_eq!(sizes.iter().sum::<usize>(), 4);
        assert!(sizes.iter().all(|s| (1..=2).contains(s)), "{sizes:?}");
        assert_eq!(group.state_name(), "Stable");

        // A stale epoch is fenced; leaving frees the partitions for the others.
        let stale = beat("a", epochs["a"] - 5, &owned["a"]);
        assert_eq!(
            group
                .heartbeat(stale, || unreachable!(), &image, &TIMINGS, now)
                .unwrap_err()
                .0,
            ResponseError::FencedMemberEpoch.code()
        );
        let mut leave = beat("c", LEAVE_EPOCH, &owned["c"]);
        leave.owned = None;
        group
            .heartbeat(leave, || unreachable!(), &image, &TIMINGS, now)
            .unwrap();
        owned.remove("c");
        for _ in 0..3 {
            for m in ["a", "b"] {
                let o = owned.get(m).cloned().unwrap_or_default();
                step(&mut group, beat(m, epochs[m], &o), &mut owned, &mut epochs);
            }
        }
        assert_eq!(owned["a"].len() + owned["b"].len(), 4);
    }

    #[test]
    fn assignors_cover_every_partition_once() {
        let t = Uuid::new_v4();
        let subs: BTreeMap<String, BTreeSet<TopicPartition>> = ["x", "y", "z"]
            .iter()
            .map(|m| (m.to_string(), (0..7).map(|p| (t, p)).collect()))
            .collect();
        for assignment in [range_assign(&subs), uniform_assign(&subs, &HashMap::new())] {
            let mut all: Vec<TopicPartition> = assignment.values().flatten().copied().collect();
            all.sort();
            assert_eq!(all, (0..7).map(|p| (t, p)).collect::<Vec<_>>());
            let sizes: Vec<usize> = assignment.values().map(|a| a.len()).collect();
            assert!(sizes.iter().all(|s| (2..=3).contains(s)), "{sizes:?}");
        }
    }
}
