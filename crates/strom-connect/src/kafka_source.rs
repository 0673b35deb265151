//! The Kafka source of pipelines: a member of the pipeline's classic consumer group
//! ([`Consumer::subscribe`], cooperative-sticky assignor, no auto-commit), committing
//! explicitly where the sink says its output is durable, and finding out after each poll which
//! partitions it gained or lost ([`Ownership`]).
//!
//! The client rebalances inside `poll` and tells nobody (there is no rebalance listener), so
//! the sinks compare assignments and generations across polls. What they must allow for:
//! a partition revoked in a poll may already be read by its new owner when the poll returns,
//! and a partition kept through a new generation may have been lost and given back (the
//! client then restarts it at the committed offset) with another member writing it meanwhile.

use std::collections::{BTreeMap, BTreeSet};

use strom_client::{
    Assignor, AutoOffsetReset, Client, Consumer, ConsumerConfig, ConsumerRecord, OffsetSpec,
    ResponseError, TopicPartition,
};

use crate::config::Start;
use crate::error::Result;

/// `session.timeout.ms` of pipeline members: how long a killed member holds its partitions.
/// Short (the broker's minimum is 6 s by default) so a restarted or surviving sink takes over
/// quickly.
const SESSION_TIMEOUT_MS: i32 = 10_000;
/// `heartbeat.interval.ms` of pipeline members.
const HEARTBEAT_INTERVAL_MS: u64 = 1_000;
/// `max.poll.interval.ms`: longest a member may take to come back to `poll` in a rebalance
/// (finishing a large Parquet file happens between polls).
const REBALANCE_TIMEOUT_MS: i32 = 60_000;

/// Topics read by a consumer group.
pub(crate) struct KafkaSource {
    pub topics: Vec<String>,
    pub group: String,
    pub start: Start,
}

impl KafkaSource {
    /// A member of the group subscribed to the topics; it joins on its first poll. Partitions
    /// start at the group's committed offsets, else at `start`.
    pub fn consumer(&self, client: &Client) -> Result<Consumer> {
        let mut consumer = Consumer::new(client.clone(), self.consumer_config());
        consumer.subscribe(&self.topics)?;
        Ok(consumer)
    }

    fn consumer_config(&self) -> ConsumerConfig {
        ConsumerConfig {
            auto_offset_reset: match self.start {
                Start::Earliest => AutoOffsetReset::Earliest,
                Start::Latest => AutoOffsetReset::Latest,
            },
            enable_auto_commit: false,
            // Incremental: a rebalance moves only the partitions that change owner, so the
            // others keep their open files.
            assignors: vec![Assignor::CooperativeSticky],
            session_timeout_ms: SESSION_TIMEOUT_MS,
            heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
            rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
            ..ConsumerConfig::with_group(self.group.clone())
        }
    }

    /// Where a partition with no committed offset and no output starts.
    pub fn start_spec(&self) -> OffsetSpec {
        match self.start {
            Start::Earliest => OffsetSpec::Earliest,
            Start::Latest => OffsetSpec::Latest,
        }
    }
}

/// How the assignment changed between two observations.
#[derive(Debug, Default)]
pub(crate) struct Change {
    /// The generation now (`None` while fenced and not rejoined yet).
    pub generation: Option<i32>,
    /// Partitions no longer assigned.
    pub revoked: Vec<TopicPartition>,
    /// Partitions newly assigned.
    pub gained: Vec<TopicPartition>,
    /// Partitions assigned before and after a new generation: probably kept throughout, but
    /// possibly lost and given back, so their sink checks them again.
    pub kept: Vec<TopicPartition>,
}

/// The assignment and generation as of the last observation.
#[derive(Debug, Default)]
pub(crate) struct Ownership {
    owned: BTreeSet<TopicPartition>,
    generation: Option<i32>,
}

impl Ownership {
    /// Compares `consumer`'s assignment and generation with the last observation.
    pub fn observe(&mut self, consumer: &Consumer) -> Option<Change> {
        let generation = consumer.group_member().map(|(_, generation)| generation);
        let now: BTreeSet<TopicPartition> = consumer.assignment().into_iter().collect();
        let new_generation = generation.is_some() && generation != self.generation;
        if now == self.owned && !new_generation {
            return None;
        }
        let change = Change {
            generation,
            revoked: self.owned.difference(&now).cloned().collect(),
            gained: now.difference(&self.owned).cloned().collect(),
            kept: if new_generation {
                self.owned.intersection(&now).cloned().collect()
            } else {
                Vec::new()
            },
        };
        self.owned = now;
        if generation.is_some() {
            self.generation = generation;
        }
        tracing::info!(generation = ?change.generation, revoked = ?change.revoked, gained = ?change.gained,
            kept = change.kept.len(), "assignment changed");
        Some(change)
    }
}

/// Whether `consumer` lost its generation (fenced, or its session ran out) and has not
/// rejoined: its partitions may be another member's already, so it must write nothing.
pub(crate) fn fenced(consumer: &Consumer) -> bool {
    consumer.group_member().is_none()
}

/// Commits `offsets` as the member. A commit the group refuses (a rebalance under way, a
/// fenced member) is logged and skipped: the output is durable already, the next commit or
/// the next owner catches up. Returns whether it committed.
pub(crate) async fn commit(
    consumer: &mut Consumer,
    offsets: &BTreeMap<TopicPartition, i64>,
) -> Result<bool> {
    if offsets.is_empty() {
        return Ok(true);
    }
    match consumer.commit_offsets(offsets).await {
        Ok(()) => Ok(true),
        Err(error) if refused_by_group(&error) || error.is_retriable() => {
            tracing::warn!(%error, "offset commit refused; it is retried after the rebalance");
            Ok(false)
        }
        Err(error) => Err(error.into()),
    }
}

fn refused_by_group(error: &strom_client::Error) -> bool {
    matches!(
        error.kafka_code(),
        Some(
            ResponseError::RebalanceInProgress
                | ResponseError::IllegalGeneration
                | ResponseError::UnknownMemberId
                | ResponseError::FencedInstanceId
        )
    )
}

/// Removes the records of `partitions` from `records`.
pub(crate) fn drop_records_of(
    records: &mut Vec<ConsumerRecord>,
    partitions: &BTreeSet<TopicPartition>,
) {
    if partitions.is_empty() {
        return;
    }
    records.retain(|r| {
        !partitions
            .iter()
            .any(|tp| tp.partition == r.partition && *tp.topic == *r.topic)
    });
}

/// Records behind the high watermarks of the assigned partitions.
pub(crate) fn lag(consumer: &Consumer) -> i64 {
    consumer
        .assignment()
        .iter()
        .map(|tp| match consumer.position(tp) {
            Some(position) if consumer.high_watermark(tp) >= 0 => {
                (consumer.high_watermark(tp) - position).max(0)
            }
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_restarted_partitions_are_dropped() {
        let record = |topic: &str, partition| ConsumerRecord {
            topic: topic.into(),
            partition,
            offset: 0,
            timestamp_ms: 0,
            log_append_time: false,
            key: None,
            value: None,
            headers: Vec::new(),
        };
        let mut records = vec![record("a", 0), record("a", 1), record("b", 0)];
        drop_records_of(&mut records, &BTreeSet::from([TopicPartition::new("a", 0)]));
        let left: Vec<(String, i32)> = records
            .iter()
            .map(|r| (r.topic.to_string(), r.partition))
            .collect();
        assert_eq!(left, [("a".to_string(), 1), ("b".to_string(), 0)]);
    }

    #[test]
    fn pipeline_members_commit_explicitly_and_cooperatively() {
        let source = KafkaSource {
            topics: vec!["t".into()],
            group: "g".into(),
            start: Start::Latest,
        };
        let config = source.consumer_config();
        assert_eq!(config.group_id.as_deref(), Some("g"));
        assert!(!config.enable_auto_commit);
        assert_eq!(config.assignors, [Assignor::CooperativeSticky]);
        assert_eq!(config.auto_offset_reset, AutoOffsetReset::Latest);
        assert_eq!(source.start_spec(), OffsetSpec::Latest);
    }
}
