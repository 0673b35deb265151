//! `strom produce TOPIC`: one record per line of stdin.

use std::collections::{BTreeMap, VecDeque};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use serde_json::json;
use strom_client::{
    parse_compression, Acks, Compression, DeliveryFuture, Producer, ProducerConfig, ProducerRecord,
};
use tokio::io::AsyncBufReadExt;

use super::{parse_key_value, print_json, Format, GlobalArgs};

/// Deliveries awaited in the background at most; reading stdin waits beyond it.
const PENDING_DELIVERIES_MAX: usize = 100_000;

/// How long a record may take to be acknowledged before `strom produce` gives up on it.
const DELIVERY_TIMEOUT_MS: u64 = 30_000;

/// `strom produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Topic to write to.
    topic: String,
    /// Key of every record.
    #[arg(short = 'k', long, conflicts_with = "key_separator")]
    key: Option<String>,
    /// Split each line at the first SEP into key and value (a line without SEP has no key).
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// Header of every record, repeatable: -H source=cli.
    #[arg(short = 'H', long = "header", value_parser = parse_key_value)]
    headers: Vec<(String, String)>,
    /// Partition to write to [default: by key, Java client compatible; spread without key].
    #[arg(short = 'p', long)]
    partition: Option<i32>,
    /// Compression: none, gzip, snappy, lz4, zstd.
    #[arg(long, default_value = "none", value_parser = parse_compression)]
    compression: Compression,
    /// Acks: 0, 1, -1/all.
    #[arg(long, default_value = "all")]
    acks: Acks,
    /// How long a batch waits for more records.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// Batch size in bytes.
    #[arg(long, default_value_t = 16384)]
    batch_size: usize,
}

#[derive(Default)]
struct PartitionSummary {
    count: u64,
    first_offset: i64,
    last_offset: i64,
}

/// Runs `strom produce`.
pub async fn run(global: &GlobalArgs, args: ProduceArgs) -> anyhow::Result<()> {
    let client = global.connect().await?;
    let config = ProducerConfig {
        acks: args.acks,
        compression: args.compression,
        linger_ms: args.linger_ms,
        batch_size_bytes: args.batch_size,
        delivery_timeout_ms: DELIVERY_TIMEOUT_MS,
        ..ProducerConfig::default()
    };
    let producer = Producer::new(client, config);
    let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let mut pending: VecDeque<DeliveryFuture> = VecDeque::new();
    let mut summary: BTreeMap<i32, PartitionSummary> = BTreeMap::new();
    let mut line = Vec::new();
    let headers: Vec<(String, Option<Bytes>)> = args
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Some(Bytes::from(v.clone()))))
        .collect();
    loop {
        line.clear();
        let n = stdin
            .read_until(b'\n', &mut line)
            .await
            .context("cannot read stdin")?;
        if n == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let (key, value) = split_line(&line, &args);
        let record = ProducerRecord {
            topic: args.topic.clone(),
            partition: args.partition,
            key,
            value: Some(value),
            headers: headers.clone(),
            timestamp_ms: None,
        };
        pending.push_back(producer.send(record).await?);
        if pending.len() >= PENDING_DELIVERIES_MAX {
            record_delivery(&mut summary, pending.pop_front().expect("not empty").await?);
        }
    }
    producer.flush().await;
    let mut first_error = None;
    for delivery in pending {
        match delivery.await {
            Ok(meta) => record_delivery(&mut summary, meta),
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    producer.close().await;
    if let Some(error) = first_error {
        bail!(error);
    }
    print_summary(global.format, &args.topic, &summary);
    Ok(())
}

fn split_line(line: &[u8], args: &ProduceArgs) -> (Option<Bytes>, Bytes) {
    if let Some(key) = &args.key {
        return (Some(Bytes::from(key.clone())), Bytes::copy_from_slice(line));
    }
    if let Some(separator) = args.key_separator.as_deref().filter(|s| !s.is_empty()) {
        let sep = separator.as_bytes();
        if let Some(at) = line.windows(sep.len()).position(|w| w == sep) {
            return (
                Some(Bytes::copy_from_slice(&line[..at])),
                Bytes::copy_from_slice(&line[at + sep.len()..]),
            );
        }
    }
    (None, Bytes::copy_from_slice(line))
}

fn record_delivery(
    summary: &mut BTreeMap<i32, PartitionSummary>,
    meta: strom_client::RecordMetadata,
) {
    let s = summary.entry(meta.partition).or_insert(PartitionSummary {
        count: 0,
        first_offset: meta.offset,
        last_offset: meta.offset,
    });
    s.count += 1;
    s.first_offset = s.first_offset.min(meta.offset);
    s.last_offset = s.last_offset.max(meta.offset);
}

fn print_summary(format: Format, topic: &str, summary: &BTreeMap<i32, PartitionSummary>) {
    let total: u64 = summary.values().map(|s| s.count).sum();
    if format == Format::Json {
        let partitions: BTreeMap<String, serde_json::Value> = summary
            .iter()
            .map(|(p, s)| (p.to_string(), json!({"count": s.count, "first_offset": s.first_offset, "last_offset": s.last_offset})))
            .collect();
        print_json(&json!({"topic": topic, "count": total, "partitions": partitions}));
        return;
    }
    let parts: Vec<String> = summary
        .iter()
        .map(|(p, s)| {
            if s.first_offset < 0 {
                format!("partition {p}: {} (offsets unknown with acks=0)", s.count)
            } else {
                format!(
                    "partition {p}: {} at offsets {}..={}",
                    s.count, s.first_offset, s.last_offset
                )
            }
        })
        .collect();
    println!("produced {total} record(s) to {topic}");
    for part in parts {
        println!("  {part}");
    }
}
