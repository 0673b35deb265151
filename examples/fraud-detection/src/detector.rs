//! The detector: a member of consumer group `fraud-detectors`. Per player it remembers the
//! last 20 logins and the last 20 unflagged trades, and flags a trade whose amount is far above
//! the player's normal (more than `amount_factor` times the mean of their recent trades) or
//! whose IP is none of the IPs of their last 20 logins.
//!
//! No detection is lost when a detector dies: alerts are acknowledged by the broker before the
//! offsets of the trades they cover are committed, and a detector that gains a partition
//! rebuilds its memory by replaying the partition from the start up to the committed offset
//! (without alerting), then flags from there on. Alerts between the dead member's last commit
//! and its death are sent again (at least once; `trade_id` identifies duplicates).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use strom_client::{
    AutoOffsetReset, Client, ClientConfig, Consumer, ConsumerConfig, ConsumerRecord, OffsetSpec,
    Producer, ProducerConfig, ProducerRecord, TopicPartition,
};
use strom_connect::group::{fetch_offsets, GroupMember};

/// `fraud-detection detector` options.
#[derive(Debug, clap::Args)]
pub struct DetectorArgs {
    /// Consumer group.
    #[arg(long, default_value = "fraud-detectors")]
    group: String,
    /// Topic of game events.
    #[arg(long, default_value = "game-events")]
    input: String,
    /// Topic of alerts.
    #[arg(long, default_value = "alerts")]
    output: String,
    /// Logins and trades remembered per player.
    #[arg(long, default_value_t = 20)]
    history: usize,
    /// A trade above this many times the player's mean amount is flagged.
    #[arg(long, default_value_t = 5.0)]
    amount_factor: f64,
    /// Trades of a player needed before amounts are judged.
    #[arg(long, default_value_t = 3)]
    min_trades: usize,
    /// Name in alerts and logs.
    #[arg(long, default_value = "detector")]
    name: String,
}

#[derive(Default)]
struct PlayerMemory {
    logins: VecDeque<String>,
    amounts: VecDeque<f64>,
}

struct Rules {
    history: usize,
    amount_factor: f64,
    min_trades: usize,
}

impl Rules {
    /// Applies one event to a player's memory; returns the reason when it is a flagged trade.
    fn apply(&self, memory: &mut PlayerMemory, event: &Value) -> Option<String> {
        let ip = event["ip"].as_str().unwrap_or_default().to_string();
        match event["type"].as_str() {
            Some("login") => {
                memory.logins.push_back(ip);
                if memory.logins.len() > self.history {
                    memory.logins.pop_front();
                }
                None
            }
            Some("trade") => {
                let amount = event["amount"].as_f64().unwrap_or(0.0);
                let reason = if !memory.logins.contains(&ip) {
                    Some(format!(
                        "ip {ip} is not among the last {} logins",
                        memory.logins.len()
                    ))
                } else if memory.amounts.len() >= self.min_trades {
                    let mean = memory.amounts.iter().sum::<f64>() / memory.amounts.len() as f64;
                    (amount > self.amount_factor * mean).then(|| {
                        format!(
                            "amount {amount} is over {}x the mean {mean:.2}",
                            self.amount_factor
                        )
                    })
                } else {
                    None
                };
                if reason.is_none() {
                    memory.amounts.push_back(amount);
                    if memory.amounts.len() > self.history {
                        memory.amounts.pop_front();
                    }
                }
                reason
            }
            _ => None,
        }
    }
}

struct Detector {
    args: DetectorArgs,
    rules: Rules,
    client: Client,
    consumer: Consumer,
    producer: Producer,
    /// Per owned partition: players' memory.
    memory: BTreeMap<TopicPartition, HashMap<String, PlayerMemory>>,
    /// Per owned partition being rebuilt: alerts start at this offset.
    replay_until: BTreeMap<TopicPartition, i64>,
    alerts: u64,
}

pub async fn run(brokers: &str, args: DetectorArgs) -> anyhow::Result<()> {
    let client = Client::connect(ClientConfig {
        client_id: args.name.clone(),
        ..ClientConfig::new(brokers)
    })
    .await?;
    let consumer = Consumer::new(
        client.clone(),
        ConsumerConfig {
            auto_offset_reset: AutoOffsetReset::Earliest,
            ..ConsumerConfig::default()
        },
    );
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            linger_ms: 5,
            ..ProducerConfig::default()
        },
    );
    let rules = Rules {
        history: args.history,
        amount_factor: args.amount_factor,
        min_trades: args.min_trades,
    };
    let mut member = GroupMember::join(
        client.clone(),
        &args.group,
        std::slice::from_ref(&args.input),
    )
    .await?;
    tracing::info!(name = %args.name, member = %member.member_id, "joined group {}", args.group);
    let mut detector = Detector {
        args,
        rules,
        client,
        consumer,
        producer,
        memory: BTreeMap::new(),
        replay_until: BTreeMap::new(),
        alerts: 0,
    };
    detector
        .reassign(&member, member.assignment().to_vec())
        .await?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut next_heartbeat = Instant::now();
    loop {
        if Instant::now() >= next_heartbeat {
            if let Some(assignment) = member.heartbeat().await? {
                detector.reassign(&member, assignment).await?;
                member.heartbeat().await?; // acknowledge what is owned now
            }
            next_heartbeat =
                Instant::now() + Duration::from_millis(member.heartbeat_interval_ms as u64);
        }
        let records = tokio::select! {
            records = detector.consumer.poll(Duration::from_millis(200)) => records?,
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        };
        detector.process(&member, records).await?;
    }
    detector.commit(&member).await?;
    member.leave().await?;
    detector.producer.close().await;
    tracing::info!(alerts = detector.alerts, "left the group");
    Ok(())
}

impl Detector {
    /// Takes a new assignment: commits and forgets revoked partitions, rebuilds gained ones.
    async fn reassign(
        &mut self,
        member: &GroupMember,
        assignment: Vec<TopicPartition>,
    ) -> anyhow::Result<()> {
        let next: BTreeSet<TopicPartition> = assignment.into_iter().collect();
        let now: BTreeSet<TopicPartition> = self.consumer.assignment().into_iter().collect();
        let revoked: Vec<TopicPartition> = now.difference(&next).cloned().collect();
        let gained: Vec<TopicPartition> = next.difference(&now).cloned().collect();
        if revoked.is_empty() && gained.is_empty() {
            return Ok(());
        }
        self.commit(member).await?;
        for tp in &revoked {
            self.memory.remove(tp);
            self.replay_until.remove(tp);
        }
        let committed = fetch_offsets(&self.client, &self.args.group, &gained).await?;
        self.consumer.assign(next.iter().cloned());
        for tp in &gained {
            let until = committed.get(tp).copied().unwrap_or(0);
            self.consumer.seek(tp, OffsetSpec::Earliest)?;
            self.memory.insert(tp.clone(), HashMap::new());
            self.replay_until.insert(tp.clone(), until);
        }
        tracing::info!(name = %self.args.name, ?revoked, ?gained, epoch = member.member_epoch, "assignment changed");
        Ok(())
    }

    async fn process(
        &mut self,
        member: &GroupMember,
        records: Vec<ConsumerRecord>,
    ) -> anyhow::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut deliveries = Vec::new();
        for record in records {
            let tp = TopicPartition::new(record.topic.clone(), record.partition);
            let Some(players) = self.memory.get_mut(&tp) else {
                continue;
            };
            let Some(event) = record
                .value
                .as_deref()
                .and_then(|v| serde_json::from_slice::<Value>(v).ok())
            else {
                continue;
            };
            let player = event["player_id"].as_str().unwrap_or_default().to_string();
            let reason = self
                .rules
                .apply(players.entry(player.clone()).or_default(), &event);
            let replaying = self
                .replay_until
                .get(&tp)
                .is_some_and(|until| record.offset < *until);
            if let (Some(reason), false) = (reason, replaying) {
                let alert = json!({ "trade_id": event["trade_id"], "player_id": player, "reason": reason,
                    "amount": event["amount"], "ip": event["ip"], "detector": self.args.name });
                let out =
                    ProducerRecord::new(self.args.output.clone(), alert.to_string()).key(player);
                deliveries.push(self.producer.send(out).await?);
            }
        }
        self.alerts += deliveries.len() as u64;
        for delivery in deliveries {
            delivery.await?;
        }
        self.commit(member).await
    }

    /// Commits the positions of owned partitions past their replay point. Alerts are already
    /// acknowledged when this runs.
    async fn commit(&mut self, member: &GroupMember) -> anyhow::Result<()> {
        let mut offsets = BTreeMap::new();
        for tp in self.consumer.assignment() {
            let (Some(position), Some(until)) =
                (self.consumer.position(&tp), self.replay_until.get(&tp))
            else {
                continue;
            };
            if position >= *until {
                offsets.insert(tp, position);
            }
        }
        if let Err(error) = member.commit(&offsets).await {
            tracing::warn!(%error, "commit refused (a rebalance is under way); the next owner replays from the last commit");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        Rules {
            history: 20,
            amount_factor: 5.0,
            min_trades: 3,
        }
    }

    #[test]
    fn flags_unknown_ips_and_outsized_amounts_only() {
        let (rules, mut memory) = (rules(), PlayerMemory::default());
        let login = json!({"type": "login", "player_id": "p", "ip": "10.0.0.1"});
        assert_eq!(rules.apply(&mut memory, &login), None);
        for amount in [10.0, 12.0, 8.0] {
            assert_eq!(
                rules.apply(
                    &mut memory,
                    &json!({"type": "trade", "ip": "10.0.0.1", "amount": amount})
                ),
                None
            );
        }
        assert!(rules
            .apply(
                &mut memory,
                &json!({"type": "trade", "ip": "10.0.0.1", "amount": 50.1})
            )
            .is_some());
        assert_eq!(
            rules.apply(
                &mut memory,
                &json!({"type": "trade", "ip": "10.0.0.1", "amount": 49.0})
            ),
            None
        );
        assert!(rules
            .apply(
                &mut memory,
                &json!({"type": "trade", "ip": "203.0.1.1", "amount": 10.0})
            )
            .is_some());
        assert_eq!(
            memory.amounts.len(),
            4,
            "flagged trades do not move the normal"
        );
    }
}
