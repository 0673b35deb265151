//! The command-line tools: `topic`, `produce`, `consume`, `group`, `cluster`, `bench`.
//!
//! Every command talks to the cluster through `strom-client` only, so each works against any
//! Kafka broker. Read commands print human tables by default and JSON with `--format json`.

pub mod bench;
pub mod cluster;
pub mod connect;
pub mod consume;
pub mod group;
pub mod produce;
pub mod topic;
pub mod transform;

use std::future::Future;

use anyhow::Context;
use clap::{Args, ValueEnum};
use strom_client::{Client, ClientConfig};

/// Options every client command shares.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Brokers to bootstrap from, comma separated.
    #[arg(
        short = 'b',
        long,
        global = true,
        env = "STROM_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    pub brokers: String,
    /// Output format of read commands.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable tables.
    Text,
    /// JSON (one document, or one object per line for streams).
    Json,
}

impl GlobalArgs {
    /// Connects to the cluster.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        let config = ClientConfig {
            client_id: "strom-cli".to_string(),
            ..ClientConfig::new(&self.brokers)
        };
        Ok(Client::connect(config).await?)
    }
}

/// Runs `future` on a fresh multi-threaded runtime.
pub fn block_on<F: Future<Output = anyhow::Result<()>>>(future: F) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("strom-cli")
        .build()
        .context("cannot start the async runtime")?
        .block_on(future)
}

/// Prints rows as a table with aligned columns (the last column is not padded).
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{:<width$}  ", cell, width = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Formats a list of node ids as `0,1,2`.
pub fn ids(nodes: &[i32]) -> String {
    nodes
        .iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses `key=value`.
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected key=value, got {s:?}")),
    }
}

/// Prints `value` as pretty JSON.
pub fn print_json(value: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}
