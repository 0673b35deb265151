//! The detector: a member of consumer group `fraud-detectors` (classic protocol, cooperative
//! sticky assignor). Per player it remembers the last 20 logins and the last 20 unflagged
//! trades, and flags a trade whose amount is far above the player's normal (more than
//! `amount_factor` times the mean of their recent trades) or whose IP is none of the IPs of
//! their last 20 logins.
//!
//! No detection is lost when a detector dies: alerts are acknowledged by the broker before the
//! offsets of the trades they cover are committed, and a detector that gains a partition
//! rebuilds its memory by replaying the partition from the start up to the committed offset
//! (without alerting), then flags from there on. Alerts between the dead member's last commit
//! and its death are sent again (at least once; `trade_id` identifies duplicates).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use serde_json::{json, Value};
use strom_client::{
    Assignor, AutoOffsetReset, Client, ClientConfig, Consumer, ConsumerConfig, ConsumerRecord,
    OffsetSpec, Producer, ProducerConfig, ProducerRecord, TopicPartition,
};

/// `session.timeout.ms`: how long a killed detector keeps its partitions from the others.
const SESSION_TIMEOUT_MS: i32 = 10_000;
/// `heartbeat.interval.ms`.
const HEARTBEAT_INTERVAL_MS: u64 = 1_000;

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
    consumer: Consumer,
    producer: Producer,
    /// Per owned partition: players' memory.
    memory: BTreeMap<TopicPartition, HashMap<String, PlayerMemory>>,
    /// Per owned partition: alerts start at this offset (the committed offset when it was
    /// gained; the events before it only rebuild the memory).
    replay_until: BTreeMap<TopicPartition, i64>,
    /// Per owned partition: the offset after the last event applied to its memory.
    next: BTreeMap<TopicPartition, i64>,
    /// The assignment and generation the memory was last reconciled with.
    owned: BTreeSet<TopicPartition>,
    generation: Option<i32>,
    alerts: u64,
}

pub async fn run(brokers: &str, args: DetectorArgs) -> anyhow::Result<()> {
    let client = Client::connect(ClientConfig {
        client_id: args.name.clone(),
        ..ClientConfig::new(brokers)
    })
    .await?;
    let mut consumer = Consumer::new(
        client.clone(),
        ConsumerConfig {
            auto_offset_reset: AutoOffsetReset::Earliest,
            // Offsets are committed once the alerts they cover are acknowledged.
            enable_auto_commit: false,
            assignors: vec![Assignor::CooperativeSticky],
            session_timeout_ms: SESSION_TIMEOUT_MS,
            heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
            ..ConsumerConfig::with_group(args.group.clone())
        },
    );
    consumer.subscribe(std::slice::from_ref(&args.input))?;
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
    tracing::info!(name = %args.name, "joining group {}", args.group);
    let mut detector = Detector {
        args,
        rules,
        consumer,
        producer,
        memory: BTreeMap::new(),
        replay_until: BTreeMap::new(),
        next: BTreeMap::new(),
        owned: BTreeSet::new(),
        generation: None,
        alerts: 0,
    };
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let mut records = tokio::select! {
            records = detector.consumer.poll(Duration::from_millis(200)) => records?,
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        };
        detector.reassign(&mut records).await?;
        detector.process(records).await?;
    }
    // A poll cut short may have rebalanced: commit only what is still owned.
    detector.reassign(&mut Vec::new()).await?;
    detector.commit().await;
    detector.producer.close().await;
    detector.consumer.close().await?;
    tracing::info!(alerts = detector.alerts, "left the group");
    Ok(())
}

impl Detector {
    /// Follows the assignment the last poll left: forgets revoked partitions and rebuilds
    /// gained ones (replaying them from the start, alerting only past the committed offset).
    /// A partition kept through a new generation keeps its memory unless another member
    /// committed past it meanwhile (it was lost and given back). Records of the poll for
    /// partitions that restart are dropped.
    async fn reassign(&mut self, records: &mut Vec<ConsumerRecord>) -> anyhow::Result<()> {
        let generation = self
            .consumer
            .group_member()
            .map(|(_, generation)| generation);
        let now: BTreeSet<TopicPartition> = self.consumer.assignment().into_iter().collect();
        let new_generation = generation.is_some() && generation != self.generation;
        if now == self.owned && !new_generation {
            return Ok(());
        }
        let revoked: Vec<TopicPartition> = self.owned.difference(&now).cloned().collect();
        let gained: Vec<TopicPartition> = now.difference(&self.owned).cloned().collect();
        let kept: Vec<TopicPartition> = if new_generation {
            self.owned.intersection(&now).cloned().collect()
        } else {
            Vec::new()
        };
        self.owned = now;
        if generation.is_some() {
            self.generation = generation;
        }
        for tp in &revoked {
            self.memory.remove(tp);
            self.replay_until.remove(tp);
            self.next.remove(tp);
        }
        let check: Vec<TopicPartition> = gained.iter().chain(&kept).cloned().collect();
        let committed = if check.is_empty() {
            BTreeMap::new()
        } else {
            self.consumer.committed(&check).await?
        };
        let mut restarted = BTreeSet::new();
        let mut rebuilt = Vec::new();
        for tp in &check {
            let committed = committed.get(tp).copied().flatten();
            restarted.insert(tp.clone());
            if let (true, Some(&next)) = (kept.contains(tp), self.next.get(tp)) {
                let reached = next.max(self.replay_until.get(tp).copied().unwrap_or(0));
                if committed.is_none_or(|c| c <= reached) {
                    // The client may have moved the position back to the committed offset.
                    self.consumer.seek(tp, OffsetSpec::Offset(next))?;
                    continue;
                }
            }
            self.consumer.seek(tp, OffsetSpec::Earliest)?;
            self.memory.insert(tp.clone(), HashMap::new());
            self.replay_until.insert(tp.clone(), committed.unwrap_or(0));
            self.next.remove(tp);
            rebuilt.push(tp.clone());
        }
        records.retain(|r| {
            !restarted
                .iter()
                .any(|tp| tp.partition == r.partition && *tp.topic == *r.topic)
        });
        tracing::info!(name = %self.args.name, ?revoked, ?gained, ?rebuilt, ?generation, "assignment changed");
        Ok(())
    }

    async fn process(&mut self, records: Vec<ConsumerRecord>) -> anyhow::Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut deliveries = Vec::new();
        for record in records {
            let tp = TopicPartition::new(&*record.topic, record.partition);
            let Some(players) = self.memory.get_mut(&tp) else {
                continue;
            };
            self.next.insert(tp.clone(), record.offset + 1);
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
        self.commit().await;
        Ok(())
    }

    /// Commits, per owned partition past its replay point, the offset after the last event
    /// applied. Alerts are already acknowledged when this runs.
    async fn commit(&mut self) {
        let offsets: BTreeMap<TopicPartition, i64> = self
            .next
            .iter()
            .filter(|(tp, next)| {
                self.replay_until
                    .get(*tp)
                    .is_some_and(|until| *next >= until)
            })
            .map(|(tp, next)| (tp.clone(), *next))
            .collect();
        if let Err(error) = self.consumer.commit_offsets(&offsets).await {
            tracing::warn!(%error, "commit refused (a rebalance is under way); the next owner replays from the last commit");
        }
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
