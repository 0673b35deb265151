//! The game server: simulated players log in and trade; cheaters sometimes trade far above
//! their normal amount or from an IP they never logged in from.

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use serde_json::json;
use strom_client::{
    Admin, Client, ClientConfig, NewTopic, Producer, ProducerConfig, ProducerRecord,
};

/// `fraud-detection game-server` options.
#[derive(Debug, clap::Args)]
pub struct GameArgs {
    /// Players.
    #[arg(long, default_value_t = 1000)]
    players: u32,
    /// Events (logins and trades) in all.
    #[arg(long, default_value_t = 100_000)]
    events: u64,
    /// Players who cheat.
    #[arg(long, default_value_t = 20)]
    cheaters: u32,
    /// Random seed (the same seed gives the same events).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where to write the ids of suspicious trades, one per line.
    #[arg(long)]
    truth: Option<PathBuf>,
    /// Topic of the events.
    #[arg(long, default_value = "game-events")]
    topic: String,
    /// Partitions of the topics when this creates them.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
}

/// splitmix64: small, fast, deterministic.
pub struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct Player {
    id: String,
    ips: Vec<String>,
    base_amount: f64,
    cheater: bool,
    logins: VecDeque<String>,
    trades: u32,
}

/// Trades a cheater makes before cheating (so the detector knows their normal).
const NORMAL_TRADES_BEFORE_CHEATING: u32 = 5;

pub async fn run(brokers: &str, args: GameArgs) -> anyhow::Result<()> {
    let client = Client::connect(ClientConfig {
        client_id: "game-server".into(),
        ..ClientConfig::new(brokers)
    })
    .await?;
    ensure_topics(&client, &[args.topic.as_str(), "alerts"], args.partitions).await?;
    let mut rng = Rng(args.seed);
    let mut players: Vec<Player> = (0..args.players)
        .map(|i| Player {
            id: format!("player-{i}"),
            ips: (0..1 + rng.below(3))
                .map(|_| {
                    format!(
                        "10.{}.{}.{}",
                        rng.below(256),
                        rng.below(256),
                        1 + rng.below(254)
                    )
                })
                .collect(),
            base_amount: 10.0 + rng.unit() * 90.0,
            cheater: i < args.cheaters,
            logins: VecDeque::new(),
            trades: 0,
        })
        .collect();
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            linger_ms: 10,
            ..ProducerConfig::default()
        },
    );
    let mut truth = Vec::new();
    let (mut trades, mut deliveries) = (0u64, Vec::new());
    for n in 0..args.events {
        let player = &mut players[rng.below(u64::from(args.players)) as usize];
        let event = next_event(&mut rng, player, n, &mut truth);
        trades += u64::from(event["type"] == "trade");
        let record =
            ProducerRecord::new(args.topic.clone(), event.to_string()).key(player.id.clone());
        deliveries.push(producer.send(record).await?);
        if deliveries.len() >= 10_000 {
            for d in deliveries.drain(..) {
                d.await?;
            }
        }
    }
    for d in deliveries {
        d.await?;
    }
    producer.close().await;
    if let Some(path) = &args.truth {
        let mut file = std::fs::File::create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        for id in &truth {
            writeln!(file, "{id}")?;
        }
    }
    println!(
        "{}",
        json!({ "events": args.events, "trades": trades, "suspicious": truth.len(), "players": args.players, "cheaters": args.cheaters })
    );
    Ok(())
}

fn next_event(
    rng: &mut Rng,
    player: &mut Player,
    n: u64,
    truth: &mut Vec<String>,
) -> serde_json::Value {
    if player.logins.is_empty() || rng.unit() < 0.15 {
        let ip = player.ips[rng.below(player.ips.len() as u64) as usize].clone();
        player.logins.push_back(ip.clone());
        if player.logins.len() > 20 {
            player.logins.pop_front();
        }
        return json!({ "type": "login", "player_id": player.id, "ip": ip });
    }
    let trade_id = format!("trade-{n}");
    let mut ip = player.logins[rng.below(player.logins.len() as u64) as usize].clone();
    let mut amount = player.base_amount * (0.5 + rng.unit());
    if player.cheater && player.trades >= NORMAL_TRADES_BEFORE_CHEATING && rng.unit() < 0.3 {
        if rng.unit() < 0.5 {
            amount = player.base_amount * (20.0 + rng.unit() * 30.0);
        } else {
            ip = format!("203.0.{}.{}", rng.below(256), 1 + rng.below(254));
        }
        truth.push(trade_id.clone());
    } else {
        player.trades += 1;
    }
    json!({ "type": "trade", "player_id": player.id, "ip": ip, "trade_id": trade_id, "amount": (amount * 100.0).round() / 100.0 })
}

async fn ensure_topics(client: &Client, topics: &[&str], partitions: i32) -> anyhow::Result<()> {
    let admin = Admin::new(client.clone());
    let existing: Vec<String> = admin
        .list_topics()
        .await?
        .into_iter()
        .map(|t| t.name)
        .collect();
    let missing: Vec<NewTopic> = topics
        .iter()
        .filter(|t| !existing.iter().any(|e| e == *t))
        .map(|t| NewTopic::new(*t, partitions))
        .collect();
    if !missing.is_empty() {
        admin.create_topics(&missing).await?;
    }
    Ok(())
}
