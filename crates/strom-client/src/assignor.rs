//! Client-side partition assignment for classic consumer groups: the consumer protocol's
//! subscription and assignment encodings (byte-compatible with the Java client and librdkafka,
//! so members of all three can share a group) and the `range` and `cooperative-sticky`
//! assignors.
//!
//! The group leader runs an assignor over every member's subscription; the others only encode
//! their subscription and decode their assignment. Pure functions, no I/O: tested here.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTopic;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::error::{Error, Result};
use crate::types::TopicPartition;

/// The `protocol_type` of consumer groups.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";
/// The consumer protocol version this client writes (the Java client's latest).
const CONSUMER_PROTOCOL_VERSION: i16 = 3;

/// A partition assignment strategy (`partition.assignment.strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Assignor {
    /// `range`: per topic, consecutive ranges of partitions to members sorted by id (eager).
    Range,
    /// `cooperative-sticky`: balanced, keeps partitions where they are, and moves them in two
    /// rebalances (revoke, then assign) so members keep consuming the rest (KIP-429).
    CooperativeSticky,
}

impl Assignor {
    /// The protocol name members announce in JoinGroup.
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::CooperativeSticky => "cooperative-sticky",
        }
    }

    /// The assignor called `name`, if this client has it.
    pub fn from_name(name: &str) -> Option<Assignor> {
        match name {
            "range" => Some(Assignor::Range),
            "cooperative-sticky" => Some(Assignor::CooperativeSticky),
            _ => None,
        }
    }

    /// Whether it supports the incremental cooperative rebalance protocol.
    pub fn is_cooperative(self) -> bool {
        matches!(self, Assignor::CooperativeSticky)
    }
}

impl std::str::FromStr for Assignor {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Assignor, String> {
        Assignor::from_name(s)
            .ok_or_else(|| format!("assignor must be range or cooperative-sticky, not {s:?}"))
    }
}

/// One member's subscription as the consumer protocol carries it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscription {
    /// Topics the member wants.
    pub topics: Vec<String>,
    /// Partitions it owns now (v1+; cooperative members send them).
    pub owned_partitions: Vec<TopicPartition>,
    /// The generation its owned partitions are from (v2+, or sticky user data), -1 if unknown.
    pub generation: i32,
    /// Opaque assignor data.
    pub user_data: Option<Bytes>,
}

/// Encodes a subscription (version prefix, then the struct), as the Java client does.
pub fn encode_subscription(subscription: &Subscription) -> Result<Bytes> {
    let mut message = ConsumerProtocolSubscription::default();
    message.topics = subscription
        .topics
        .iter()
        .map(|t| StrBytes::from_string(t.clone()))
        .collect();
    message.user_data = subscription.user_data.clone();
    message.owned_partitions = group_by_topic(&subscription.owned_partitions)
        .into_iter()
        .map(|(topic, partitions)| {
            let mut owned = OwnedTopic::default();
            owned.topic = TopicName(StrBytes::from_string(topic));
            owned.partitions = partitions;
            owned
        })
        .collect();
    message.generation_id = subscription.generation;
    message.rack_id = None;
    encode_versioned(&message)
}

/// Decodes a subscription of any version (later versions only append fields, so they are
/// read as the latest version this client knows, as the Java client does).
pub fn decode_subscription(bytes: &[u8]) -> Result<Subscription> {
    let (version, mut body) = split_version(bytes, "subscription")?;
    let message = ConsumerProtocolSubscription::decode(&mut body, version).map_err(|e| {
        Error::Protocol(format!(
            "cannot decode a consumer subscription v{version}: {e}"
        ))
    })?;
    let mut generation = if version >= 2 {
        message.generation_id
    } else {
        -1
    };
    if generation < 0 {
        // The sticky assignors' user data: the generation as a 4-byte integer.
        if let Some(data) = message.user_data.as_ref().filter(|d| d.len() == 4) {
            generation = (&data[..]).get_i32();
        }
    }
    let mut owned_partitions = Vec::new();
    for t in &message.owned_partitions {
        owned_partitions.extend(
            t.partitions
                .iter()
                .map(|p| TopicPartition::new(t.topic.0.to_string(), *p)),
        );
    }
    Ok(Subscription {
        topics: message.topics.iter().map(|t| t.to_string()).collect(),
        owned_partitions,
        generation,
        user_data: message.user_data,
    })
}

/// Encodes an assignment.
pub fn encode_assignment(partitions: &[TopicPartition]) -> Result<Bytes> {
    let mut message = ConsumerProtocolAssignment::default();
    message.assigned_partitions = group_by_topic(partitions)
        .into_iter()
        .map(|(topic, partitions)| {
            let mut assigned = AssignedTopic::default();
            assigned.topic = TopicName(StrBytes::from_string(topic));
            assigned.partitions = partitions;
            assigned
        })
        .collect();
    encode_versioned(&message)
}

/// Decodes an assignment of any version; an empty byte string is an empty assignment (what
/// the coordinator sends a member the leader gave nothing).
pub fn decode_assignment(bytes: &[u8]) -> Result<Vec<TopicPartition>> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let (version, mut body) = split_version(bytes, "assignment")?;
    let message = ConsumerProtocolAssignment::decode(&mut body, version).map_err(|e| {
        Error::Protocol(format!(
            "cannot decode a consumer assignment v{version}: {e}"
        ))
    })?;
    let mut out = Vec::new();
    for t in &message.assigned_partitions {
        out.extend(
            t.partitions
                .iter()
                .map(|p| TopicPartition::new(t.topic.0.to_string(), *p)),
        );
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn encode_versioned<M: Encodable>(message: &M) -> Result<Bytes> {
    let version = CONSUMER_PROTOCOL_VERSION;
    let invalid = |e: &dyn std::fmt::Display| {
        Error::Invalid(format!("cannot encode consumer protocol data: {e}"))
    };
    let size = message.compute_size(version).map_err(|e| invalid(&e))?;
    let mut buf = BytesMut::with_capacity(2 + size);
    buf.put_i16(version);
    message.encode(&mut buf, version).map_err(|e| invalid(&e))?;
    Ok(buf.freeze())
}

fn split_version(bytes: &[u8], what: &str) -> Result<(i16, Bytes)> {
    if bytes.len() < 2 {
        return Err(Error::Protocol(format!(
            "consumer {what} of {} bytes has no version",
            bytes.len()
        )));
    }
    let version = i16::from_be_bytes([bytes[0], bytes[1]]);
    if version < 0 {
        return Err(Error::Protocol(format!(
            "consumer {what} has negative version {version}"
        )));
    }
    Ok((
        version.min(CONSUMER_PROTOCOL_VERSION),
        Bytes::copy_from_slice(&bytes[2..]),
    ))
}

fn group_by_topic(partitions: &[TopicPartition]) -> BTreeMap<String, Vec<i32>> {
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for tp in partitions {
        by_topic
            .entry(tp.topic.clone())
            .or_default()
            .push(tp.partition);
    }
    for partitions in by_topic.values_mut() {
        partitions.sort_unstable();
        partitions.dedup();
    }
    by_topic
}

/// A group member as the leader sees it: id, static instance id, subscription.
#[derive(Debug, Clone)]
pub struct MemberSubscription {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
    /// What it asked for.
    pub subscription: Subscription,
}

/// Runs `assignor` over the members; `partition_counts` has every subscribed topic the
/// cluster knows (topics it does not know are skipped). Every member gets an entry.
pub fn assign(
    assignor: Assignor,
    members: &[MemberSubscription],
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let mut out = match assignor {
        Assignor::Range => range(members, partition_counts),
        Assignor::CooperativeSticky => cooperative_sticky(members, partition_counts),
    };
    for member in members {
        out.entry(member.member_id.clone()).or_default();
    }
    for partitions in out.values_mut() {
        partitions.sort();
    }
    out
}

/// Java's RangeAssignor: per topic, the members subscribed to it sorted (static instance id
/// first, then member id); each gets `partitions / members`, the first `partitions % members`
/// one more.
fn range(
    members: &[MemberSubscription],
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let mut out: BTreeMap<String, Vec<TopicPartition>> = BTreeMap::new();
    for (topic, &count) in partition_counts {
        let mut subscribed: Vec<&MemberSubscription> = members
            .iter()
            .filter(|m| m.subscription.topics.iter().any(|t| t == topic))
            .collect();
        if subscribed.is_empty() || count <= 0 {
            continue;
        }
        subscribed.sort_by(|a, b| member_order(a).cmp(&member_order(b)));
        let n = subscribed.len() as i32;
        let (per_member, extra) = (count / n, count % n);
        for (i, member) in subscribed.iter().enumerate() {
            let i = i as i32;
            let start = per_member * i + i.min(extra);
            let length = per_member + i32::from(i < extra);
            let assigned = out.entry(member.member_id.clone()).or_default();
            assigned.extend((start..start + length).map(|p| TopicPartition::new(topic.clone(), p)));
        }
    }
    out
}

/// Static members sort by instance id before dynamic members, which sort by member id.
fn member_order(member: &MemberSubscription) -> (bool, &str, &str) {
    match &member.group_instance_id {
        Some(instance) => (false, instance.as_str(), member.member_id.as_str()),
        None => (true, member.member_id.as_str(), ""),
    }
}

/// Balanced and sticky, then made cooperative: a partition moving from one live member to
/// another is left out this round (its owner revokes it and rejoins; the next rebalance gives
/// it to the new owner).
fn cooperative_sticky(
    members: &[MemberSubscription],
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let owners = valid_owners(members, partition_counts);
    let target = sticky(members, partition_counts, &owners);
    let mut out = BTreeMap::new();
    for (member, partitions) in target {
        let kept: Vec<TopicPartition> = partitions
            .into_iter()
            .filter(|tp| owners.get(tp).is_none_or(|owner| *owner == member))
            .collect();
        out.insert(member, kept);
    }
    out
}

/// Who owns each partition, from the members' claims: partitions that still exist, of topics
/// the claimant still subscribes to; a partition claimed twice goes to the higher generation.
fn valid_owners(
    members: &[MemberSubscription],
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<TopicPartition, String> {
    let mut owners: BTreeMap<TopicPartition, (i32, String)> = BTreeMap::new();
    for member in members {
        let subscription = &member.subscription;
        for tp in &subscription.owned_partitions {
            let exists = partition_counts
                .get(&tp.topic)
                .is_some_and(|&n| tp.partition >= 0 && tp.partition < n);
            if !exists || !subscription.topics.contains(&tp.topic) {
                continue;
            }
            let claim = (subscription.generation, member.member_id.clone());
            match owners.get(tp) {
                Some((generation, _)) if *generation >= claim.0 => {}
                _ => {
                    owners.insert(tp.clone(), claim);
                }
            }
        }
    }
    owners
        .into_iter()
        .map(|(tp, (_, member))| (tp, member))
        .collect()
}

/// A balanced assignment that keeps owned partitions where balance allows.
fn sticky(
    members: &[MemberSubscription],
    partition_counts: &BTreeMap<String, i32>,
    owners: &BTreeMap<TopicPartition, String>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let subscribed: BTreeMap<&str, BTreeSet<&str>> = members
        .iter()
        .map(|m| {
            (
                m.member_id.as_str(),
                m.subscription.topics.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    let eligible = |member: &str, tp: &TopicPartition| {
        subscribed
            .get(member)
            .is_some_and(|t| t.contains(tp.topic.as_str()))
    };
    let all: Vec<TopicPartition> = partition_counts
        .iter()
        .filter(|(topic, _)| subscribed.values().any(|t| t.contains(topic.as_str())))
        .flat_map(|(topic, &n)| (0..n.max(0)).map(move |p| TopicPartition::new(topic.clone(), p)))
        .collect();
    let mut assignment: BTreeMap<String, Vec<TopicPartition>> = members
        .iter()
        .map(|m| (m.member_id.clone(), Vec::new()))
        .collect();
    if members.is_empty() {
        return assignment;
    }
    // Members that all subscribe to the same topics can be held to exact quotas.
    let same_subscriptions = subscribed
        .values()
        .all(|t| Some(t) == subscribed.values().next());
    let (quota_min, extra) = (all.len() / members.len(), all.len() % members.len());
    let mut at_max = 0;
    let mut unassigned = Vec::new();
    // Keep owned partitions, up to the quota.
    let mut owned_by: BTreeMap<&str, Vec<&TopicPartition>> = BTreeMap::new();
    for (tp, owner) in owners {
        owned_by.entry(owner.as_str()).or_default().push(tp);
    }
    for member in members {
        let owned = owned_by
            .remove(member.member_id.as_str())
            .unwrap_or_default();
        let keep = if !same_subscriptions {
            owned.len()
        } else if owned.len() > quota_min && at_max < extra {
            at_max += 1;
            quota_min + 1
        } else {
            quota_min
        };
        let target = assignment
            .get_mut(&member.member_id)
            .expect("every member has an entry");
        for (i, tp) in owned.into_iter().enumerate() {
            if i < keep {
                target.push(tp.clone());
            } else {
                unassigned.push(tp.clone());
            }
        }
    }
    unassigned.extend(all.iter().filter(|tp| !owners.contains_key(tp)).cloned());
    unassigned.sort();
    // Each remaining partition to the eligible member with the fewest (ties: member order).
    for tp in unassigned {
        let least = assignment
            .iter()
            .filter(|(m, _)| eligible(m, &tp))
            .min_by_key(|(m, assigned)| (assigned.len(), (*m).clone()))
            .map(|(m, _)| m.clone());
        if let Some(member) = least {
            assignment
                .get_mut(&member)
                .expect("chosen from the map")
                .push(tp);
        }
    }
    balance(&mut assignment, &eligible);
    assignment
}

/// Moves partitions from the fullest member to an eligible emptier one while that narrows the
/// gap by at least two (bounded by the number of partitions).
fn balance(
    assignment: &mut BTreeMap<String, Vec<TopicPartition>>,
    eligible: &dyn Fn(&str, &TopicPartition) -> bool,
) {
    let moves_max: usize = assignment.values().map(Vec::len).sum::<usize>() + 1;
    for _ in 0..moves_max {
        let mut moved = false;
        let mut by_size: Vec<(String, usize)> = assignment
            .iter()
            .map(|(m, a)| (m.clone(), a.len()))
            .collect();
        by_size.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        'search: for (donor, donor_len) in &by_size {
            for (receiver, receiver_len) in by_size.iter().rev() {
                if receiver_len + 1 >= *donor_len {
                    break;
                }
                let candidate = assignment[donor]
                    .iter()
                    .rposition(|tp| eligible(receiver, tp));
                if let Some(index) = candidate {
                    let tp = assignment
                        .get_mut(donor)
                        .expect("donor exists")
                        .remove(index);
                    assignment
                        .get_mut(receiver)
                        .expect("receiver exists")
                        .push(tp);
                    moved = true;
                    break 'search;
                }
            }
        }
        if !moved {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(
        id: &str,
        topics: &[&str],
        owned: &[(&str, i32)],
        generation: i32,
    ) -> MemberSubscription {
        MemberSubscription {
            member_id: id.to_string(),
            group_instance_id: None,
            subscription: Subscription {
                topics: topics.iter().map(|t| t.to_string()).collect(),
                owned_partitions: owned
                    .iter()
                    .map(|(t, p)| TopicPartition::new(*t, *p))
                    .collect(),
                generation,
                user_data: None,
            },
        }
    }

    fn counts(topics: &[(&str, i32)]) -> BTreeMap<String, i32> {
        topics.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    fn parts(assigned: &[TopicPartition]) -> Vec<String> {
        assigned.iter().map(|tp| tp.to_string()).collect()
    }

    #[test]
    fn range_matches_the_java_assignor() {
        // Java's RangeAssignorTest.testTwoConsumersTwoTopicsSixPartitions: 3 partitions per
        // topic, two consumers: the first gets 0,1 of each, the second 2.
        let members = [
            member("c1", &["t1", "t2"], &[], -1),
            member("c2", &["t1", "t2"], &[], -1),
        ];
        let out = assign(Assignor::Range, &members, &counts(&[("t1", 3), ("t2", 3)]));
        assert_eq!(parts(&out["c1"]), ["t1-0", "t1-1", "t2-0", "t2-1"]);
        assert_eq!(parts(&out["c2"]), ["t1-2", "t2-2"]);
    }

    #[test]
    fn range_skips_unsubscribed_topics_and_gives_empty_entries() {
        let members = [
            member("a", &["t1"], &[], -1),
            member("b", &["t2"], &[], -1),
            member("c", &["t1"], &[], -1),
        ];
        let out = assign(Assignor::Range, &members, &counts(&[("t1", 1), ("t2", 2)]));
        assert_eq!(parts(&out["a"]), ["t1-0"]);
        assert_eq!(parts(&out["b"]), ["t2-0", "t2-1"]);
        assert!(out["c"].is_empty());
    }

    #[test]
    fn sticky_balances_new_members_without_moving_owned_partitions_at_once() {
        // c1 owned all six; c2 joins. Target: three each, but c1 must revoke first, so c2 gets
        // nothing this round and c1 keeps three.
        let owned: Vec<(&str, i32)> = (0..6).map(|p| ("t", p)).collect();
        let members = [
            member("c1", &["t"], &owned, 3),
            member("c2", &["t"], &[], -1),
        ];
        let out = assign(Assignor::CooperativeSticky, &members, &counts(&[("t", 6)]));
        assert_eq!(out["c1"].len(), 3);
        assert!(out["c2"].is_empty());
        // Next round: c1 owns its three, c2 nothing: the free three go to c2.
        let kept: Vec<(&str, i32)> = out["c1"].iter().map(|tp| ("t", tp.partition)).collect();
        let members = [member("c1", &["t"], &kept, 4), member("c2", &["t"], &[], 4)];
        let out = assign(Assignor::CooperativeSticky, &members, &counts(&[("t", 6)]));
        assert_eq!(parts(&out["c1"]).len(), 3);
        assert_eq!(out["c2"].len(), 3);
        let all: BTreeSet<_> = out.values().flatten().cloned().collect();
        assert_eq!(all.len(), 6);
        assert!(
            kept.iter()
                .all(|(_, p)| out["c1"].contains(&TopicPartition::new("t", *p))),
            "sticky"
        );
    }

    #[test]
    fn sticky_hands_a_leavers_partitions_to_the_rest() {
        let members = [
            member("a", &["t"], &[("t", 0), ("t", 1)], 5),
            member("b", &["t"], &[("t", 2), ("t", 3)], 5),
        ];
        // c left, owning 4 and 5.
        let out = assign(Assignor::CooperativeSticky, &members, &counts(&[("t", 6)]));
        assert_eq!(out["a"].len(), 3);
        assert_eq!(out["b"].len(), 3);
        assert!(
            out["a"].contains(&TopicPartition::new("t", 0))
                && out["a"].contains(&TopicPartition::new("t", 1))
        );
    }

    #[test]
    fn a_stale_claim_loses_to_a_newer_generation() {
        let members = [
            member("a", &["t"], &[("t", 0)], 2),
            member("b", &["t"], &[("t", 0)], 3),
        ];
        let out = assign(Assignor::CooperativeSticky, &members, &counts(&[("t", 2)]));
        assert_eq!(parts(&out["b"]), ["t-0"]);
        assert_eq!(parts(&out["a"]), ["t-1"]);
    }

    #[test]
    fn sticky_with_different_subscriptions_stays_within_subscriptions() {
        let members = [
            member("a", &["t1"], &[], -1),
            member("b", &["t1", "t2"], &[], -1),
        ];
        let out = assign(
            Assignor::CooperativeSticky,
            &members,
            &counts(&[("t1", 4), ("t2", 2)]),
        );
        assert!(out["a"].iter().all(|tp| tp.topic == "t1"));
        assert_eq!(out["a"].len() + out["b"].len(), 6);
        assert!(out["a"].len().abs_diff(out["b"].len()) <= 1);
    }

    #[test]
    fn subscription_round_trips_and_reads_java_v0_bytes() {
        let subscription = Subscription {
            topics: vec!["a".into(), "b".into()],
            owned_partitions: vec![TopicPartition::new("a", 1), TopicPartition::new("a", 0)],
            generation: 7,
            user_data: Some(Bytes::from_static(&[0, 0, 0, 7])),
        };
        let decoded = decode_subscription(&encode_subscription(&subscription).unwrap()).unwrap();
        assert_eq!(decoded.topics, subscription.topics);
        assert_eq!(
            decoded.owned_partitions,
            [TopicPartition::new("a", 0), TopicPartition::new("a", 1)]
        );
        assert_eq!(decoded.generation, 7);
        // Version 0 as the Java client wrote it: version, [topics], user data (null).
        let java_v0 = [
            0u8, 0, 0, 0, 0, 1, 0, 6, b'e', b'v', b'e', b'n', b't', b's', 0xff, 0xff, 0xff, 0xff,
        ];
        let decoded = decode_subscription(&java_v0).unwrap();
        assert_eq!(decoded.topics, ["events"]);
        assert_eq!(decoded.generation, -1);
        assert!(decoded.owned_partitions.is_empty());
        // A future version with extra bytes at the end is read as ours.
        let mut future = encode_subscription(&subscription).unwrap().to_vec();
        future[1] = 9;
        future.extend_from_slice(&[1, 2, 3]);
        assert_eq!(
            decode_subscription(&future).unwrap().topics,
            subscription.topics
        );
    }

    #[test]
    fn assignment_round_trips_and_rejects_truncation() {
        let partitions = vec![TopicPartition::new("a", 2), TopicPartition::new("b", 0)];
        let bytes = encode_assignment(&partitions).unwrap();
        assert_eq!(decode_assignment(&bytes).unwrap(), partitions);
        assert!(decode_assignment(&bytes[..bytes.len() - 3]).is_err());
        assert!(decode_assignment(&[0]).is_err());
        assert!(decode_assignment(&[]).unwrap().is_empty());
    }
}
