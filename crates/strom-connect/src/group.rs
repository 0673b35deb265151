//! Group offsets and a minimal KIP-848 group member, until `strom-client` has its own.
//!
//! **Interim.** `strom-client` is gaining group membership (subscribe, range and
//! cooperative-sticky assignors, commits). Until it lands, the sinks consume by assignment of
//! every partition and commit as a "simple" consumer group (OffsetCommit with generation -1,
//! accepted while the group has no active members), and [`GroupMember`] speaks the KIP-848
//! ConsumerGroupHeartbeat (server-side assignment: one request type) for the examples. Both
//! go away for the client's API once it exists.

use std::collections::BTreeMap;

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ConsumerGroupHeartbeatRequest, FindCoordinatorRequest, GroupId, OffsetCommitRequest,
    OffsetFetchRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use strom_client::{Client, Error as ClientError, TopicPartition};

/// The result type of this module (client errors).
pub type Result<T> = std::result::Result<T, ClientError>;

fn check(code: i16, what: impl Into<String>) -> Result<()> {
    if code == 0 {
        return Ok(());
    }
    let error = kafka_protocol::ResponseError::try_from_code(code)
        .map(|e| format!("{e:?}"))
        .unwrap_or_else(|| format!("error code {code}"));
    Err(ClientError::Invalid(format!("{}: {error}", what.into())))
}

/// The node id of `group`'s coordinator.
pub async fn find_coordinator(client: &Client, group: &str) -> Result<i32> {
    let connection = client.any_connection().await?;
    let version = connection
        .version(kafka_protocol::messages::ApiKey::FindCoordinator)
        .unwrap_or(0);
    let mut request = FindCoordinatorRequest::default();
    request.key_type = 0;
    if version >= 4 {
        request.coordinator_keys = vec![StrBytes::from_string(group.to_string())];
    } else {
        request.key = StrBytes::from_string(group.to_string());
    }
    let response = connection
        .send_versioned(&request, version, client.config().request_timeout_ms)
        .await?;
    if version >= 4 {
        let c = response
            .coordinators
            .first()
            .ok_or_else(|| ClientError::Protocol("FindCoordinator: no answer".into()))?;
        check(c.error_code, format!("find coordinator of group {group}"))?;
        return Ok(c.node_id.0);
    }
    check(
        response.error_code,
        format!("find coordinator of group {group}"),
    )?;
    Ok(response.node_id.0)
}

/// The committed offsets of `group` for `partitions` (absent where none is committed).
pub async fn fetch_offsets(
    client: &Client,
    group: &str,
    partitions: &[TopicPartition],
) -> Result<BTreeMap<TopicPartition, i64>> {
    let coordinator = find_coordinator(client, group).await?;
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in partitions {
        by_topic.entry(&tp.topic).or_default().push(tp.partition);
    }
    let mut request = OffsetFetchRequest::default();
    request.group_id = GroupId(StrBytes::from_string(group.to_string()));
    request.topics = Some(
        by_topic
            .into_iter()
            .map(|(name, partitions)| {
                let mut t = OffsetFetchRequestTopic::default();
                t.name = TopicName(StrBytes::from_string(name.to_string()));
                t.partition_indexes = partitions;
                t
            })
            .collect(),
    );
    let (_, response) = client.send_to(coordinator, &request).await?;
    check(
        response.error_code,
        format!("fetch offsets of group {group}"),
    )?;
    let mut out = BTreeMap::new();
    for topic in response.topics {
        for p in topic.partitions {
            check(
                p.error_code,
                format!("fetch offset of {}-{}", topic.name.0, p.partition_index),
            )?;
            if p.committed_offset >= 0 {
                out.insert(
                    TopicPartition::new(topic.name.0.to_string(), p.partition_index),
                    p.committed_offset,
                );
            }
        }
    }
    Ok(out)
}

/// Commits `offsets` (next offset to read, per partition) for `group`: as a simple group with
/// `member == None`, else as that member (`(member_id, generation or member epoch)`).
pub async fn commit_offsets(
    client: &Client,
    group: &str,
    member: Option<(&str, i32)>,
    offsets: &BTreeMap<TopicPartition, i64>,
) -> Result<()> {
    if offsets.is_empty() {
        return Ok(());
    }
    let coordinator = find_coordinator(client, group).await?;
    let mut by_topic: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for (tp, offset) in offsets {
        let mut p = OffsetCommitRequestPartition::default();
        p.partition_index = tp.partition;
        p.committed_offset = *offset;
        p.committed_leader_epoch = -1;
        by_topic.entry(&tp.topic).or_default().push(p);
    }
    let mut request = OffsetCommitRequest::default();
    request.group_id = GroupId(StrBytes::from_string(group.to_string()));
    let (member_id, generation) = member.unwrap_or(("", -1));
    request.member_id = StrBytes::from_string(member_id.to_string());
    request.generation_id_or_member_epoch = generation;
    request.retention_time_ms = -1;
    request.topics = by_topic
        .into_iter()
        .map(|(name, partitions)| {
            let mut t = OffsetCommitRequestTopic::default();
            t.name = TopicName(StrBytes::from_string(name.to_string()));
            t.partitions = partitions;
            t
        })
        .collect();
    let (_, response) = client.send_to(coordinator, &request).await?;
    for topic in response.topics {
        for p in topic.partitions {
            check(
                p.error_code,
                format!(
                    "commit offset of {}-{} for group {group}",
                    topic.name.0, p.partition_index
                ),
            )?;
        }
    }
    Ok(())
}

/// ConsumerGroupHeartbeat's version used (v0: subscribed topic names, server assignor).
const HEARTBEAT_VERSION: i16 = 0;

/// A member of a KIP-848 consumer group: the broker assigns partitions; the member heartbeats
/// and acknowledges its assignment by reporting what it owns.
pub struct GroupMember {
    client: Client,
    group: String,
    topics: Vec<String>,
    coordinator: i32,
    /// Member id (given by the broker on join).
    pub member_id: String,
    /// Member epoch (what commits carry as their generation).
    pub member_epoch: i32,
    /// How often the broker wants heartbeats.
    pub heartbeat_interval_ms: i32,
    owned: Vec<TopicPartition>,
}

impl GroupMember {
    /// Joins `group` subscribed to `topics`.
    pub async fn join(client: Client, group: &str, topics: &[String]) -> Result<GroupMember> {
        let coordinator = find_coordinator(&client, group).await?;
        let mut member = GroupMember {
            client,
            group: group.to_string(),
            topics: topics.to_vec(),
            coordinator,
            member_id: String::new(),
            member_epoch: 0,
            heartbeat_interval_ms: 1000,
            owned: Vec::new(),
        };
        member.heartbeat().await?;
        Ok(member)
    }

    /// The partitions owned since the last heartbeat.
    pub fn assignment(&self) -> &[TopicPartition] {
        &self.owned
    }

    /// Heartbeats once; returns the assignment (which the caller now owns) when it changed.
    /// A fenced member rejoins with a new epoch and an empty assignment first.
    pub async fn heartbeat(&mut self) -> Result<Option<Vec<TopicPartition>>> {
        let response = self.send_heartbeat(self.member_epoch).await?;
        if matches!(response.error_code, 110 | 25) {
            // FENCED_MEMBER_EPOCH or UNKNOWN_MEMBER_ID: lose everything, join again.
            tracing::warn!(group = %self.group, member = %self.member_id, "fenced; rejoining");
            self.member_epoch = 0;
            self.owned.clear();
            let response = self.send_heartbeat(0).await?;
            let assigned = self.apply(response).await?;
            return Ok(Some(assigned.unwrap_or_default()));
        }
        self.apply(response).await
    }

    async fn send_heartbeat(
        &self,
        epoch: i32,
    ) -> Result<kafka_protocol::messages::ConsumerGroupHeartbeatResponse> {
        let mut request = ConsumerGroupHeartbeatRequest::default();
        request.group_id = GroupId(StrBytes::from_string(self.group.clone()));
        request.member_id = StrBytes::from_string(self.member_id.clone());
        request.member_epoch = epoch;
        request.rebalance_timeout_ms = 30_000;
        request.subscribed_topic_names = Some(
            self.topics
                .iter()
                .map(|t| TopicName(StrBytes::from_string(t.clone())))
                .collect(),
        );
        let metadata = self.client.metadata();
        let mut owned: BTreeMap<[u8; 16], Vec<i32>> = BTreeMap::new();
        for tp in &self.owned {
            if let Some(topic) = metadata.topics.get(&tp.topic) {
                owned.entry(topic.topic_id).or_default().push(tp.partition);
            }
        }
        request.topic_partitions = Some(
            owned
                .into_iter()
                .map(|(id, partitions)| {
                    let mut t = TopicPartitions::default();
                    t.topic_id = uuid::Uuid::from_bytes(id);
                    t.partitions = partitions;
                    t
                })
                .collect(),
        );
        let connection = self.client.connection(self.coordinator).await?;
        connection
            .send_versioned(
                &request,
                HEARTBEAT_VERSION,
                self.client.config().request_timeout_ms,
            )
            .await
    }

    async fn apply(
        &mut self,
        response: kafka_protocol::messages::ConsumerGroupHeartbeatResponse,
    ) -> Result<Option<Vec<TopicPartition>>> {
        check(
            response.error_code,
            format!("heartbeat of group {}", self.group),
        )?;
        if let Some(id) = response.member_id {
            self.member_id = id.to_string();
        }
        self.member_epoch = response.member_epoch;
        self.heartbeat_interval_ms = response.heartbeat_interval_ms.max(100);
        let Some(assignment) = response.assignment else {
            return Ok(None);
        };
        let mut metadata = self.client.metadata();
        let mut next = Vec::new();
        for t in assignment.topic_partitions {
            let id = *t.topic_id.as_bytes();
            if !metadata.topics.values().any(|i| i.topic_id == id) {
                metadata = self
                    .client
                    .refresh_metadata(Some(&self.topics), false)
                    .await?;
            }
            let Some(info) = metadata.topics.values().find(|i| i.topic_id == id) else {
                tracing::warn!(group = %self.group, "assigned a topic id not in the metadata");
                continue;
            };
            next.extend(
                t.partitions
                    .iter()
                    .map(|p| TopicPartition::new(info.name.clone(), *p)),
            );
        }
        next.sort();
        self.owned = next.clone();
        Ok(Some(next))
    }

    /// Leaves the group (epoch -1), giving its partitions to the others at once.
    pub async fn leave(&mut self) -> Result<()> {
        let response = self.send_heartbeat(-1).await?;
        check(response.error_code, format!("leave group {}", self.group))?;
        self.owned.clear();
        Ok(())
    }

    /// Commits `offsets` as this member.
    pub async fn commit(&self, offsets: &BTreeMap<TopicPartition, i64>) -> Result<()> {
        commit_offsets(
            &self.client,
            &self.group,
            Some((&self.member_id, self.member_epoch)),
            offsets,
        )
        .await
    }
}
