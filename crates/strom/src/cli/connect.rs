//! `strom connect`: run data pipelines (sources, transforms, sinks) from `strom-connect`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use strom_connect::config::{FileSinkConfig, Start};
use strom_connect::sink::encode::Mode;
use strom_connect::{PipelineConfig, Pipelines, SinkConfig, SourceConfig};

use super::GlobalArgs;

/// `strom connect ...`
#[derive(Debug, Args)]
pub struct ConnectArgs {
    #[command(subcommand)]
    command: ConnectCommand,
    /// Serve progress as JSON at GET /connect on this address.
    #[arg(long, global = true)]
    http_addr: Option<String>,
}

#[derive(Debug, Subcommand)]
enum ConnectCommand {
    /// Run the pipelines of one or more pipeline files until Ctrl-C or SIGTERM.
    Run {
        /// Pipeline files (TOML: [source], [[transform]], [sink]).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Check pipeline files and print what they would do.
    Check {
        /// Pipeline files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Land topics as files: `strom connect sink parquet --topics T --group G --root DIR`.
    Sink {
        /// `parquet` or `jsonl`.
        #[arg(value_name = "FORMAT", value_parser = ["parquet", "jsonl"])]
        file_format: String,
        #[command(flatten)]
        sink: SinkArgs,
    },
    /// Ingest into a topic: `strom connect source taildir|http|stdin --topic T ...`.
    Source {
        /// `taildir`, `http` or `stdin`.
        #[arg(value_parser = ["taildir", "http", "stdin"])]
        kind: String,
        /// Target topic.
        #[arg(long)]
        topic: String,
        /// taildir: `DIR/PATTERN` of files to tail.
        #[arg(long)]
        files: Option<String>,
        /// taildir: the positions file.
        #[arg(long)]
        positions: Option<PathBuf>,
        /// http: listen address.
        #[arg(long, default_value = "127.0.0.1:8088")]
        addr: String,
        /// http: JSON field whose value is the key.
        #[arg(long)]
        key_field: Option<String>,
        /// stdin: split lines into key and value at this separator.
        #[arg(long)]
        key_separator: Option<String>,
    },
}

#[derive(Debug, Args)]
struct SinkArgs {
    /// Topics, comma separated.
    #[arg(long, value_delimiter = ',', required = true)]
    topics: Vec<String>,
    /// Consumer group.
    #[arg(long)]
    group: String,
    /// Directory, file:///dir or s3://bucket/prefix.
    #[arg(long)]
    root: String,
    /// Rows per file at most.
    #[arg(long)]
    roll_records: Option<usize>,
    /// Record bytes per file at most.
    #[arg(long)]
    roll_bytes: Option<usize>,
    /// Seconds a file stays open at most.
    #[arg(long)]
    roll_secs: Option<u64>,
    /// raw or json.
    #[arg(long, default_value = "raw")]
    mode: Mode,
    /// Parquet compression: snappy, zstd or none.
    #[arg(long)]
    compression: Option<String>,
    /// Start of partitions with no progress: earliest or latest.
    #[arg(long, default_value = "earliest", value_parser = ["earliest", "latest"])]
    start: String,
}

fn load(files: &[PathBuf]) -> anyhow::Result<Vec<PipelineConfig>> {
    files
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let mut config = PipelineConfig::from_toml(&text)
                .with_context(|| format!("in {}", path.display()))?;
            if config.name.is_none() {
                config.name = path.file_stem().map(|s| s.to_string_lossy().to_string());
            }
            Ok(config)
        })
        .collect()
}

fn one_liner(command: ConnectCommand) -> anyhow::Result<PipelineConfig> {
    let config = match command {
        ConnectCommand::Sink {
            file_format: format,
            sink,
        } => {
            let file = FileSinkConfig {
                root: sink.root,
                mode: sink.mode,
                roll_records: sink.roll_records,
                roll_bytes: sink.roll_bytes,
                roll_secs: sink.roll_secs,
                compression: sink.compression,
                ..FileSinkConfig::default()
            };
            let start = if sink.start == "latest" {
                Start::Latest
            } else {
                Start::Earliest
            };
            PipelineConfig {
                name: Some(format!("{format}-sink")),
                source: SourceConfig::Kafka {
                    topics: sink.topics,
                    group: sink.group,
                    start,
                },
                transform: Vec::new(),
                sink: if format == "parquet" {
                    SinkConfig::Parquet(file)
                } else {
                    SinkConfig::Jsonl(file)
                },
            }
        }
        ConnectCommand::Source {
            kind,
            topic,
            files,
            positions,
            addr,
            key_field,
            key_separator,
        } => {
            let source = match kind.as_str() {
                "taildir" => SourceConfig::Taildir {
                    files: files.context("taildir needs --files DIR/PATTERN")?,
                    positions: positions.context("taildir needs --positions FILE")?,
                    poll_ms: None,
                },
                "http" => SourceConfig::Http { addr, key_field },
                _ => SourceConfig::Stdin { key_separator },
            };
            PipelineConfig {
                name: Some(format!("{kind}-source")),
                source,
                transform: Vec::new(),
                sink: SinkConfig::Kafka {
                    topic,
                    acks: None,
                    compression: None,
                },
            }
        }
        _ => unreachable!("run and check are not one-liners"),
    };
    config.validate()?;
    Ok(config)
}

/// Runs `strom connect`.
pub async fn run(global: &GlobalArgs, args: ConnectArgs) -> anyhow::Result<()> {
    let configs = match args.command {
        ConnectCommand::Check { files } => {
            for config in load(&files)? {
                println!(
                    "{}: ok ({:?} -> {} transform(s) -> {:?})",
                    config.display_name(),
                    config.source,
                    config.transform.len(),
                    config.sink
                );
            }
            return Ok(());
        }
        ConnectCommand::Run { files } => load(&files)?,
        other => vec![one_liner(other)?],
    };
    let mut pipelines = Pipelines::start(&global.brokers, configs);
    let (stop_http, http_stopped) = tokio::sync::watch::channel(false);
    if let Some(addr) = &args.http_addr {
        let statuses = pipelines.statuses();
        let addr = addr.clone();
        tokio::spawn(async move {
            if let Err(error) = strom_connect::serve_status(&addr, statuses, http_stopped).await {
                tracing::error!(%error, "GET /connect server failed");
            }
        });
    }
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; finishing open files"),
        _ = terminate.recv() => tracing::info!("terminated; finishing open files"),
        _ = pipelines.join() => {}
    }
    let failed: Vec<String> = pipelines
        .status()
        .into_iter()
        .filter_map(|s| s.last_error.map(|e| format!("{}: {e}", s.name)))
        .collect();
    pipelines.stop().await;
    let _ = stop_http.send(true);
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{}", failed.join("; "))
    }
}
