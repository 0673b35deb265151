//! Admin operations on consumer groups: list, describe (members, assignments, offsets, lag),
//! alter committed offsets, delete.

use std::collections::BTreeMap;

use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, GroupId, ListGroupsRequest,
};
use kafka_protocol::protocol::StrBytes;

use crate::admin::Admin;
use crate::assignor::{decode_assignment, decode_subscription, CONSUMER_PROTOCOL_TYPE};
use crate::error::{check, Error, Result};
use crate::group::{commit_offsets, fetch_committed, find_coordinator, send_to_coordinator};
use crate::offsets::OffsetSpec;
use crate::types::TopicPartition;

/// A group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// Group id.
    pub group_id: String,
    /// `consumer` for consumer groups (empty for groups with only committed offsets).
    pub protocol_type: String,
    /// State (`Stable`, `Empty`, ...), empty if the broker does not say (ListGroups < v4).
    pub state: String,
    /// `classic` or `consumer` (KIP-848), empty if the broker does not say.
    pub group_type: String,
}

/// A member of a described group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMemberDescription {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
    /// The member's `client.id`.
    pub client_id: String,
    /// The member's address as the broker saw it.
    pub client_host: String,
    /// Topics it subscribed to (consumer groups only).
    pub subscription: Vec<String>,
    /// Partitions assigned to it (consumer groups only).
    pub assignment: Vec<TopicPartition>,
}

/// A consumer group partition's offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupPartitionOffsets {
    /// The partition.
    pub tp: TopicPartition,
    /// Committed offset, if any.
    pub committed: Option<i64>,
    /// The partition's high watermark (end offset as consumers see it).
    pub end_offset: i64,
    /// `end_offset - committed` (None when nothing is committed).
    pub lag: Option<i64>,
    /// Member id of the member that has the partition, if any.
    pub member_id: Option<String>,
}

/// A consumer group: state, protocol, members with assignments, offsets and lag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// Group id.
    pub group_id: String,
    /// `Stable`, `PreparingRebalance`, `CompletingRebalance`, `Empty`, `Dead`.
    pub state: String,
    /// `consumer` for consumer groups.
    pub protocol_type: String,
    /// The assignor in use (`range`, `cooperative-sticky`, ...).
    pub protocol: String,
    /// Node id of the group coordinator.
    pub coordinator: i32,
    /// Members.
    pub members: Vec<GroupMemberDescription>,
    /// Committed offsets, end offsets and lag per partition: every partition with a committed
    /// offset or assigned to a member.
    pub offsets: Vec<GroupPartitionOffsets>,
}

/// Where [`Admin::reset_group_offsets`] would move (or moved) one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetReset {
    /// The partition.
    pub tp: TopicPartition,
    /// The committed offset before.
    pub current: Option<i64>,
    /// The new committed offset.
    pub target: i64,
}

fn gid(group: &str) -> GroupId {
    GroupId(StrBytes::from_string(group.to_string()))
}

impl Admin {
    /// Every group of the cluster (ListGroups on every broker), sorted by id.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        let metadata = self.client().refresh_metadata(Some(&[]), false).await?;
        let mut groups = BTreeMap::new();
        for node_id in metadata.brokers.keys() {
            let (_, response) = self
                .client()
                .send_to(*node_id, &ListGroupsRequest::default())
                .await?;
            check(
                response.error_code,
                || format!("list groups on broker {node_id}"),
                None,
            )?;
            for g in response.groups {
                let listing = GroupListing {
                    group_id: g.group_id.0.to_string(),
                    protocol_type: g.protocol_type.to_string(),
                    state: g.group_state.to_string(),
                    group_type: g.group_type.to_string(),
                };
                groups.insert(listing.group_id.clone(), listing);
            }
        }
        Ok(groups.into_values().collect())
    }

    /// A group's state, members and assignments (DescribeGroups), with its committed
    /// offsets, the partitions' end offsets and the lag.
    ///
    /// Fails with GROUP_ID_NOT_FOUND (as Kafka's tool does) when the group neither exists
    /// nor has committed offsets.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        let coordinator = find_coordinator(self.client(), group).await?;
        let mut request = DescribeGroupsRequest::default();
        request.groups = vec![gid(group)];
        let (_, response) = send_to_coordinator(self.client(), &coordinator, &request).await?;
        let described = response.groups.into_iter().next().ok_or_else(|| {
            Error::Protocol(format!("DescribeGroups has no answer for {group:?}"))
        })?;
        check(
            described.error_code,
            || format!("describe group {group:?}"),
            described.error_message.as_ref(),
        )?;
        let consumer = described.protocol_type.as_str() == CONSUMER_PROTOCOL_TYPE;
        let members: Vec<GroupMemberDescription> = described
            .members
            .iter()
            .map(|m| GroupMemberDescription {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
                client_id: m.client_id.to_string(),
                client_host: m.client_host.to_string(),
                subscription: if consumer {
                    decode_subscription(&m.member_metadata)
                        .map(|s| s.topics)
                        .unwrap_or_default()
                } else {
                    Vec::new()
                },
                assignment: if consumer {
                    decode_assignment(&m.member_assignment).unwrap_or_default()
                } else {
                    Vec::new()
                },
            })
            .collect();
        let committed = fetch_committed(self.client(), group, None).await?;
        let state = described.group_state.to_string();
        if state == "Dead" && committed.is_empty() {
            return Err(Error::kafka(
                69,
                format!("describe group {group:?}"),
                Some("no such group".to_string()),
            ));
        }
        let offsets = self.group_offsets(&members, &committed).await?;
        Ok(GroupDescription {
            group_id: group.to_string(),
            state,
            protocol_type: described.protocol_type.to_string(),
            protocol: described.protocol_data.to_string(),
            coordinator: coordinator.node_id,
            members,
            offsets,
        })
    }

    async fn group_offsets(
        &self,
        members: &[GroupMemberDescription],
        committed: &BTreeMap<TopicPartition, i64>,
    ) -> Result<Vec<GroupPartitionOffsets>> {
        let mut owners: BTreeMap<TopicPartition, Option<String>> = committed
            .iter()
            .filter(|(_, o)| **o >= 0)
            .map(|(tp, _)| (tp.clone(), None))
            .collect();
        for m in members {
            for tp in &m.assignment {
                owners.insert(tp.clone(), Some(m.member_id.clone()));
            }
        }
        // Partitions of deleted topics have no end offset; report them with -1.
        let mut specs = Vec::new();
        for tp in owners.keys() {
            if self.client().topic(&tp.topic, false).await.is_ok() {
                specs.push((tp.clone(), OffsetSpec::Latest));
            }
        }
        let ends = self.list_offsets(&specs).await?;
        Ok(owners
            .into_iter()
            .map(|(tp, member_id)| {
                let committed = committed.get(&tp).copied().filter(|o| *o >= 0);
                let end_offset = ends.get(&tp).map_or(-1, |o| o.offset);
                let lag = committed
                    .filter(|_| end_offset >= 0)
                    .map(|c| (end_offset - c).max(0));
                GroupPartitionOffsets {
                    tp,
                    committed,
                    end_offset,
                    lag,
                    member_id,
                }
            })
            .collect())
    }

    /// The group's committed offsets (every partition it has one for).
    pub async fn list_group_offsets(&self, group: &str) -> Result<BTreeMap<TopicPartition, i64>> {
        let committed = fetch_committed(self.client(), group, None).await?;
        Ok(committed.into_iter().filter(|(_, o)| *o >= 0).collect())
    }

    /// Works out where `spec` puts the committed offset of each partition of `topic` (all
    /// partitions when `partitions` is empty): a dry run unless `execute`, which commits the
    /// new offsets. Refuses (as Kafka's tool does) while the group has members: their commits
    /// would overwrite the reset.
    pub async fn reset_group_offsets(
        &self,
        group: &str,
        topic: &str,
        partitions: &[i32],
        spec: OffsetSpec,
        execute: bool,
    ) -> Result<Vec<OffsetReset>> {
        let info = self
            .client()
            .refresh_metadata(Some(&[topic.to_string()]), false)
            .await?;
        let info = info
            .topics
            .get(topic)
            .ok_or_else(|| Error::UnknownTopic(topic.to_string()))?;
        for p in partitions {
            if !info.partitions.iter().any(|x| x.partition == *p) {
                return Err(Error::UnknownPartition {
                    topic: topic.to_string(),
                    partition: *p,
                });
            }
        }
        let tps: Vec<TopicPartition> = info
            .partitions
            .iter()
            .filter(|p| partitions.is_empty() || partitions.contains(&p.partition))
            .map(|p| TopicPartition::new(topic, p.partition))
            .collect();
        let committed = fetch_committed(self.client(), group, Some(&tps)).await?;
        let earliest = self
            .list_offsets(
                &tps.iter()
                    .map(|tp| (tp.clone(), OffsetSpec::Earliest))
                    .collect::<Vec<_>>(),
            )
            .await?;
        let latest = self
            .list_offsets(
                &tps.iter()
                    .map(|tp| (tp.clone(), OffsetSpec::Latest))
                    .collect::<Vec<_>>(),
            )
            .await?;
        let wanted = self
            .list_offsets(&tps.iter().map(|tp| (tp.clone(), spec)).collect::<Vec<_>>())
            .await?;
        let mut plan = Vec::with_capacity(tps.len());
        for tp in tps {
            let (low, high) = (earliest[&tp].offset, latest[&tp].offset);
            // A timestamp after the last record finds nothing: the end, as Kafka's tool does.
            let target = match wanted[&tp].offset {
                o if o < 0 => high,
                o => o.clamp(low, high),
            };
            let current = committed.get(&tp).copied().filter(|o| *o >= 0);
            plan.push(OffsetReset {
                tp,
                current,
                target,
            });
        }
        if execute {
            let description = self.describe_group(group).await;
            if let Ok(d) = &description {
                if !d.members.is_empty() {
                    return Err(Error::Invalid(format!(
                        "group {group:?} has {} active member(s) (state {}); stop its consumers first, then reset",
                        d.members.len(),
                        d.state
                    )));
                }
            }
            let offsets: BTreeMap<TopicPartition, i64> =
                plan.iter().map(|r| (r.tp.clone(), r.target)).collect();
            commit_offsets(self.client(), group, None, &offsets).await?;
        }
        Ok(plan)
    }

    /// Deletes groups (they must have no members); fails on the first refusal after trying all.
    pub async fn delete_groups(&self, groups: &[String]) -> Result<()> {
        let mut first_error = None;
        for group in groups {
            let coordinator = find_coordinator(self.client(), group).await?;
            let mut request = DeleteGroupsRequest::default();
            request.groups_names = vec![gid(group)];
            let (_, response) = send_to_coordinator(self.client(), &coordinator, &request).await?;
            for r in &response.results {
                if let Err(error) = check(
                    r.error_code,
                    || format!("delete group {:?}", r.group_id.0.as_str()),
                    None,
                ) {
                    first_error.get_or_insert(error);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
