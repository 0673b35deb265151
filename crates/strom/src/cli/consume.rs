//! `strom consume TOPIC...`: print records with a kcat-like format string or as JSON lines,
//! from assigned partitions or as a member of a consumer group (`-g`).

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use serde_json::json;
use strom_client::{
    Assignor, AutoOffsetReset, Consumer, ConsumerConfig, ConsumerRecord, OffsetSpec, TopicPartition,
};

use super::{Format, GlobalArgs};

/// How long one poll waits for records.
const POLL_WAIT_MS: u64 = 500;

/// `strom consume`.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// Topics to read.
    #[arg(required = true)]
    topics: Vec<String>,
    /// Where to start: start, end, an OFFSET, or @TIMESTAMP_MS (first record at or after it).
    /// With -g, where partitions without a committed offset start (start or end).
    #[arg(short = 'o', long, default_value = "start")]
    offset: OffsetSpec,
    /// Consume as a member of this consumer group: partitions are shared with the group's
    /// other members (any Kafka client), reading resumes from the group's committed offsets,
    /// and what is printed is committed.
    #[arg(short = 'g', long)]
    group: Option<String>,
    /// Assignors offered to the group with -g, in order of preference (range,
    /// cooperative-sticky); only cooperative-sticky gives incremental rebalancing.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "range,cooperative-sticky"
    )]
    assignor: Vec<Assignor>,
    /// Stop after NUM records.
    #[arg(short = 'n', long = "num")]
    count: Option<u64>,
    /// Only these partitions, comma separated (default: all).
    #[arg(short = 'p', long, value_delimiter = ',')]
    partitions: Vec<i32>,
    /// Exit when the end of every partition is reached.
    #[arg(short = 'e', long)]
    exit_at_end: bool,
    /// Output format string: %t topic, %p partition, %o offset, %k key, %v (or %s) value,
    /// %h headers (k=v,k=v), %T timestamp ms, %K key size, %S value size, %% percent;
    /// escapes \n \t \r \\.
    #[arg(short = 'f', long = "fmt", default_value = "%v\\n")]
    fmt: String,
}

/// Runs `strom consume`.
pub async fn run(global: &GlobalArgs, args: ConsumeArgs) -> anyhow::Result<()> {
    if args.group.is_some() {
        return run_group(global, args).await;
    }
    let client = global.connect().await?;
    let mut consumer = Consumer::new(client.clone(), ConsumerConfig::default());
    let mut assignment = Vec::new();
    for topic in &args.topics {
        let info = client
            .refresh_metadata(Some(std::slice::from_ref(topic)), false)
            .await?;
        let Some(info) = info.topics.get(topic) else {
            bail!("unknown topic {topic:?}")
        };
        for p in &info.partitions {
            if args.partitions.is_empty() || args.partitions.contains(&p.partition) {
                assignment.push(TopicPartition::new(topic.clone(), p.partition));
            }
        }
        for p in &args.partitions {
            if !info.partitions.iter().any(|x| x.partition == *p) {
                bail!("topic {topic:?} has no partition {p}");
            }
        }
    }
    consumer.assign(assignment.clone());
    consumer.seek_all(args.offset);
    let format = parse_format(&args.fmt);
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let mut printed: u64 = 0;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        if args.count.is_some_and(|n| printed >= n) {
            break;
        }
        if args.exit_at_end && assignment.iter().all(|tp| consumer.at_end(tp)) {
            break;
        }
        let records = tokio::select! {
            records = consumer.poll(Duration::from_millis(POLL_WAIT_MS)) => records?,
            _ = &mut ctrl_c => break,
        };
        for record in records {
            if args.count.is_some_and(|n| printed >= n) {
                break;
            }
            let written = match global.format {
                Format::Json => writeln!(stdout, "{}", record_json(&record)),
                Format::Text => stdout.write_all(&render(&format, &record)),
            };
            if let Err(error) = written.and_then(|_| stdout.flush()) {
                if error.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(());
                }
                return Err(error.into());
            }
            printed += 1;
        }
    }
    let _ = stdout.flush();
    Ok(())
}

/// Runs `strom consume -g GROUP`: subscribe, print, commit what was printed, leave on exit.
async fn run_group(global: &GlobalArgs, args: ConsumeArgs) -> anyhow::Result<()> {
    let group = args.group.clone().expect("called with a group");
    let auto_offset_reset = match args.offset {
        OffsetSpec::Earliest => AutoOffsetReset::Earliest,
        OffsetSpec::Latest => AutoOffsetReset::Latest,
        _ => bail!("with -g, -o can only be start or end (where partitions without a committed offset begin); \
                    to start a group elsewhere, use `strom group reset-offsets {group} --topic TOPIC --to OFFSET --execute`"),
    };
    if !args.partitions.is_empty() {
        bail!("-p cannot be used with -g: the group assigns the partitions (drop -g to read chosen partitions)");
    }
    let client = global.connect().await?;
    for topic in &args.topics {
        let metadata = client
            .refresh_metadata(Some(std::slice::from_ref(topic)), false)
            .await?;
        if !metadata.topics.contains_key(topic) {
            bail!("unknown topic {topic:?}; `strom topic list` shows the topics");
        }
    }
    let config = ConsumerConfig {
        auto_offset_reset,
        assignors: args.assignor.clone(),
        // What is printed is committed explicitly below, so a count (-n) never commits
        // records it did not print.
        enable_auto_commit: false,
        ..ConsumerConfig::with_group(group)
    };
    let mut consumer = Consumer::new(client, config);
    consumer.subscribe(&args.topics)?;
    let result = group_loop(global, &args, &mut consumer).await;
    let closed = consumer.close().await;
    result.and(closed.map_err(Into::into))
}

async fn group_loop(
    global: &GlobalArgs,
    args: &ConsumeArgs,
    consumer: &mut Consumer,
) -> anyhow::Result<()> {
    let format = parse_format(&args.fmt);
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let mut printed: u64 = 0;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        if args.count.is_some_and(|n| printed >= n) {
            return Ok(());
        }
        let assignment = consumer.assignment();
        if args.exit_at_end
            && !assignment.is_empty()
            && assignment.iter().all(|tp| consumer.at_end(tp))
        {
            return Ok(());
        }
        let records = tokio::select! {
            records = consumer.poll(Duration::from_millis(POLL_WAIT_MS)) => records?,
            _ = &mut ctrl_c => return Ok(()),
            _ = terminate.recv() => return Ok(()),
        };
        let mut next: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        for record in records {
            if args.count.is_some_and(|n| printed >= n) {
                break;
            }
            let written = match global.format {
                Format::Json => writeln!(stdout, "{}", record_json(&record)),
                Format::Text => stdout.write_all(&render(&format, &record)),
            };
            if let Err(error) = written.and_then(|_| stdout.flush()) {
                if error.kind() == std::io::ErrorKind::BrokenPipe {
                    break;
                }
                return Err(error.into());
            }
            next.insert(
                TopicPartition::new(&*record.topic, record.partition),
                record.offset + 1,
            );
            printed += 1;
        }
        if let Err(error) = consumer.commit_offsets(&next).await {
            // A rebalance began: the next poll rejoins; another member may re-read these.
            tracing::warn!(%error, "commit failed");
        }
    }
}

/// One piece of a format string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Literal bytes.
    Text(Vec<u8>),
    /// `%x`.
    Field(char),
}

/// Parses a kcat-like format string into pieces.
pub fn parse_format(fmt: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut text = Vec::new();
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '%' => match chars.next() {
                Some('%') => text.push(b'%'),
                Some(field @ ('t' | 'p' | 'o' | 'k' | 'v' | 's' | 'h' | 'T' | 'K' | 'S')) => {
                    if !text.is_empty() {
                        pieces.push(Piece::Text(std::mem::take(&mut text)));
                    }
                    pieces.push(Piece::Field(field));
                }
                Some(other) => {
                    text.push(b'%');
                    text.extend(other.to_string().as_bytes());
                }
                None => text.push(b'%'),
            },
            '\\' => match chars.next() {
                Some('n') => text.push(b'\n'),
                Some('t') => text.push(b'\t'),
                Some('r') => text.push(b'\r'),
                Some('0') => text.push(0),
                Some('\\') => text.push(b'\\'),
                Some(other) => {
                    text.push(b'\\');
                    text.extend(other.to_string().as_bytes());
                }
                None => text.push(b'\\'),
            },
            c => text.extend(c.to_string().as_bytes()),
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    pieces
}

/// Renders one record with parsed format pieces.
pub fn render(pieces: &[Piece], record: &ConsumerRecord) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in pieces {
        match piece {
            Piece::Text(bytes) => out.extend_from_slice(bytes),
            Piece::Field('t') => out.extend_from_slice(record.topic.as_bytes()),
            Piece::Field('p') => out.extend_from_slice(record.partition.to_string().as_bytes()),
            Piece::Field('o') => out.extend_from_slice(record.offset.to_string().as_bytes()),
            Piece::Field('T') => out.extend_from_slice(record.timestamp_ms.to_string().as_bytes()),
            Piece::Field('k') => out.extend_from_slice(record.key.as_deref().unwrap_or_default()),
            Piece::Field('v' | 's') => {
                out.extend_from_slice(record.value.as_deref().unwrap_or_default())
            }
            Piece::Field('K') => out.extend_from_slice(size(record.key.as_deref()).as_bytes()),
            Piece::Field('S') => out.extend_from_slice(size(record.value.as_deref()).as_bytes()),
            Piece::Field('h') => {
                for (i, (k, v)) in record.headers.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(k.as_bytes());
                    out.push(b'=');
                    out.extend_from_slice(v.as_deref().unwrap_or_default());
                }
            }
            Piece::Field(_) => {}
        }
    }
    out
}

fn size(bytes: Option<&[u8]>) -> String {
    bytes.map_or_else(|| "-1".to_string(), |b| b.len().to_string())
}

fn lossy(bytes: Option<&[u8]>) -> serde_json::Value {
    match bytes {
        Some(b) => json!(String::from_utf8_lossy(b)),
        None => serde_json::Value::Null,
    }
}

/// One record as a JSON object (key, value and header values as UTF-8, lossily).
pub fn record_json(record: &ConsumerRecord) -> serde_json::Value {
    let headers: serde_json::Map<String, serde_json::Value> = record
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), lossy(v.as_deref())))
        .collect();
    json!({
        "topic": &*record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp_ms,
        "key": lossy(record.key.as_deref()),
        "value": lossy(record.value.as_deref()),
        "headers": headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> ConsumerRecord {
        ConsumerRecord {
            topic: "t".into(),
            partition: 2,
            offset: 41,
            timestamp_ms: 1_700_000_000_000,
            log_append_time: false,
            key: Some("k1".into()),
            value: Some("hello".into()),
            headers: vec![("a".into(), Some("1".into())), ("b".into(), None)],
        }
    }

    #[test]
    fn renders_every_field_like_kcat() {
        let pieces = parse_format("%t|%p|%o|%k|%v|%s|%h|%T|%K|%S|100%%\\n");
        let out = render(&pieces, &record());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "t|2|41|k1|hello|hello|a=1,b=|1700000000000|2|5|100%\n"
        );
    }

    #[test]
    fn unknown_fields_and_escapes_stay_literal() {
        let pieces = parse_format("%x\\q%");
        assert_eq!(
            String::from_utf8(render(&pieces, &record())).unwrap(),
            "%x\\q%"
        );
    }

    #[test]
    fn null_key_renders_empty() {
        let mut r = record();
        r.key = None;
        assert_eq!(render(&parse_format("[%k]%K"), &r), b"[]-1");
    }
}
