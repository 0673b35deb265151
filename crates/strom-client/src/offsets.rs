//! ListOffsets: earliest, latest and by-timestamp offsets of partitions, asked of their leaders.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::types::TopicPartition;

/// Which offset of a partition to look up (or seek to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The high watermark (the next offset to be written, as consumers see it).
    Latest,
    /// An exact offset.
    Offset(i64),
    /// The first offset whose timestamp is at or after this time (ms since the epoch); the
    /// end of the log if there is none.
    Timestamp(i64),
}

impl std::str::FromStr for OffsetSpec {
    type Err = String;
    /// `start`/`earliest`/`beginning`, `end`/`latest`, `@TIMESTAMP_MS`, or an offset.
    fn from_str(s: &str) -> Result<OffsetSpec, String> {
        match s {
            "start" | "earliest" | "beginning" => Ok(OffsetSpec::Earliest),
            "end" | "latest" => Ok(OffsetSpec::Latest),
            _ => {
                if let Some(ts) = s.strip_prefix('@') {
                    return ts
                        .parse()
                        .map(OffsetSpec::Timestamp)
                        .map_err(|_| format!("bad timestamp in {s:?}"));
                }
                s.parse().map(OffsetSpec::Offset).map_err(|_| {
                    format!("offset must be start, end, an offset or @TIMESTAMP_MS, not {s:?}")
                })
            }
        }
    }
}

/// An offset and the timestamp of its record (-1 when not a timestamp lookup).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    /// The offset; -1 when a timestamp lookup found no record.
    pub offset: i64,
    /// Timestamp of the record found by a timestamp lookup, else -1.
    pub timestamp_ms: i64,
}

/// Looks up offsets, one ListOffsets request per leader. `OffsetSpec::Offset` is answered
/// without asking.
pub async fn list_offsets(
    client: &Client,
    specs: &[(TopicPartition, OffsetSpec)],
) -> Result<BTreeMap<TopicPartition, ListedOffset>> {
    let mut out = BTreeMap::new();
    let mut by_leader: HashMap<i32, Vec<(TopicPartition, i64)>> = HashMap::new();
    for (tp, spec) in specs {
        let timestamp = match spec {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::Timestamp(ts) => *ts,
            OffsetSpec::Offset(offset) => {
                out.insert(
                    tp.clone(),
                    ListedOffset {
                        offset: *offset,
                        timestamp_ms: -1,
                    },
                );
                continue;
            }
        };
        let leader = leader_of(client, tp).await?;
        by_leader
            .entry(leader)
            .or_default()
            .push((tp.clone(), timestamp));
    }
    let asks = by_leader
        .into_iter()
        .map(|(leader, partitions)| ask_leader(client, leader, partitions));
    for answer in futures::future::join_all(asks).await {
        out.extend(answer?);
    }
    Ok(out)
}

/// The leader of `tp`, refreshing metadata once if the cache does not know it.
pub async fn leader_of(client: &Client, tp: &TopicPartition) -> Result<i32> {
    if let Some(leader) = client.cached_leader(&tp.topic, tp.partition) {
        return Ok(leader);
    }
    client
        .refresh_metadata(Some(std::slice::from_ref(&tp.topic)), false)
        .await?;
    if client.cached_topic(&tp.topic).is_none() {
        return Err(Error::UnknownTopic(tp.topic.clone()));
    }
    client
        .cached_leader(&tp.topic, tp.partition)
        .ok_or_else(|| Error::UnknownPartition {
            topic: tp.topic.clone(),
            partition: tp.partition,
        })
}

async fn ask_leader(
    client: &Client,
    leader: i32,
    partitions: Vec<(TopicPartition, i64)>,
) -> Result<Vec<(TopicPartition, ListedOffset)>> {
    let mut topics: BTreeMap<String, Vec<ListOffsetsPartition>> = BTreeMap::new();
    for (tp, timestamp) in &partitions {
        let mut p = ListOffsetsPartition::default();
        p.partition_index = tp.partition;
        p.current_leader_epoch = -1;
        p.timestamp = *timestamp;
        topics.entry(tp.topic.clone()).or_default().push(p);
    }
    let mut request = ListOffsetsRequest::default();
    request.replica_id = BrokerId(-1);
    request.topics = topics
        .into_iter()
        .map(|(name, partitions)| {
            let mut topic = ListOffsetsTopic::default();
            topic.name = TopicName(StrBytes::from_string(name));
            topic.partitions = partitions;
            topic
        })
        .collect();
    let (_, response) = client.send_to(leader, &request).await?;
    let mut out = Vec::new();
    for topic in response.topics {
        for p in topic.partitions {
            let tp = TopicPartition::new(topic.name.0.to_string(), p.partition_index);
            crate::error::check(p.error_code, || format!("list offsets of {tp}"), None)?;
            out.push((
                tp,
                ListedOffset {
                    offset: p.offset,
                    timestamp_ms: p.timestamp,
                },
            ));
        }
    }
    for (tp, _) in &partitions {
        if !out.iter().any(|(t, _)| t == tp) {
            return Err(Error::Protocol(format!(
                "ListOffsets response has no answer for {tp}"
            )));
        }
    }
    Ok(out)
}
