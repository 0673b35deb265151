//! `strom server`: configuration layering and the broker's lifetime.

use std::net::SocketAddr;
use std::path::PathBuf;

use std::sync::{Arc, RwLock};

use anyhow::Context;
use clap::Args;
use strom_broker::{Broker, BrokerConfig};
use strom_connect::{PipelineConfig, Pipelines, Statuses};

/// Flags of `strom server`; each also reads a `STROM_*` environment variable.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// TOML file with broker settings (field names as in these flags, with underscores).
    #[arg(long, env = "STROM_CONFIG")]
    config: Option<PathBuf>,
    /// This node's id [default: 0].
    #[arg(long, env = "STROM_NODE_ID")]
    node_id: Option<i32>,
    /// Directory for logs and metadata [default: ./strom-data].
    #[arg(long, env = "STROM_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Kafka listener address [default: 127.0.0.1:9092].
    #[arg(long, env = "STROM_KAFKA_ADDR")]
    kafka_addr: Option<SocketAddr>,
    /// host:port clients are told to connect to [default: the listener's address].
    #[arg(long, env = "STROM_ADVERTISED_KAFKA_ADDR")]
    advertised_kafka_addr: Option<String>,
    /// HTTP address for /health [default: 127.0.0.1:9644]; "off" disables it.
    #[arg(long, env = "STROM_HTTP_ADDR")]
    http_addr: Option<String>,
    /// Create unknown topics on first use [default: true].
    #[arg(long, env = "STROM_AUTO_CREATE_TOPICS_ENABLE")]
    auto_create_topics_enable: Option<bool>,
    /// Partitions of auto-created topics [default: 1].
    #[arg(long, env = "STROM_NUM_PARTITIONS")]
    num_partitions: Option<i32>,
    /// How often retention runs, in milliseconds [default: 60000].
    #[arg(long, env = "STROM_LOG_RETENTION_CHECK_INTERVAL_MS")]
    log_retention_check_interval_ms: Option<u64>,
    /// Largest request frame in bytes [default: 104857600].
    #[arg(long, env = "STROM_SOCKET_REQUEST_MAX_BYTES")]
    socket_request_max_bytes: Option<usize>,
}

/// Builds the configuration (defaults < file < environment < flags) and runs the broker, the
/// connector pipelines declared under `[[connect.pipeline]]` and the in-broker transforms of
/// the metadata (`crate::transforms`), until SIGINT or SIGTERM.
pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    let (config, pipelines) = build_config(args)?;
    raise_open_files_limit();
    crate::allocator::warm_heap(config.heap_warm_mib.saturating_mul(1024 * 1024));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("strom")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let statuses: Arc<RwLock<Statuses>> = Arc::default();
        let served = statuses.clone();
        let connect_route = axum::Router::new().route(
            "/connect",
            axum::routing::get(move || {
                let statuses = served.read().map(|s| s.clone()).unwrap_or_default();
                async move { axum::Json(statuses.json()) }
            }),
        );
        let transforms = crate::transforms::Shared::default();
        let routes = connect_route.merge(crate::transforms::routes(transforms.clone()));
        let broker = Broker::start_with_routes(config, routes).await?;
        transforms.set_broker(broker.state().clone());
        let transform_runner = crate::transforms::Runner::start(
            broker.state().clone(),
            broker.kafka_addr().to_string(),
            transforms,
        );
        let running = if pipelines.is_empty() {
            None
        } else {
            let address = broker.kafka_addr().to_string();
            tracing::info!(
                count = pipelines.len(),
                "starting embedded connector pipelines"
            );
            let running = Pipelines::start(&address, pipelines);
            if let Ok(mut slot) = statuses.write() {
                *slot = running.statuses();
            }
            Some(running)
        };
        wait_for_signal().await?;
        tracing::info!("shutting down");
        // In-broker transforms commit the batch in hand while the broker still serves them.
        transform_runner.stop().await;
        if let Some(running) = running {
            // Pipelines finish their files and commit while the broker still serves them.
            running.stop().await;
        }
        broker.shutdown().await;
        Ok(())
    })
}

/// The `[connect]` table of strom.toml: pipelines the server runs itself.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectSection {
    #[serde(default)]
    pipeline: Vec<PipelineConfig>,
}

fn build_config(args: ServerArgs) -> anyhow::Result<(BrokerConfig, Vec<PipelineConfig>)> {
    let (mut config, pipelines) = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            let mut table: toml::Table = toml::from_str(&text)
                .with_context(|| format!("invalid config file {}", path.display()))?;
            let connect: ConnectSection = match table.remove("connect") {
                Some(value) => value
                    .try_into()
                    .with_context(|| format!("invalid [connect] section in {}", path.display()))?,
                None => ConnectSection::default(),
            };
            let config: BrokerConfig = toml::Value::Table(table)
                .try_into()
                .with_context(|| format!("invalid config file {}", path.display()))?;
            for pipeline in &connect.pipeline {
                pipeline
                    .validate()
                    .with_context(|| format!("invalid pipeline in {}", path.display()))?;
            }
            (config, connect.pipeline)
        }
        None => (BrokerConfig::default(), Vec::new()),
    };
    if let Some(v) = args.node_id {
        config.node_id = v;
    }
    if let Some(v) = args.data_dir {
        config.data_dir = v;
    }
    if let Some(v) = args.kafka_addr {
        config.kafka_addr = v;
    }
    if let Some(v) = args.advertised_kafka_addr {
        config.advertised_kafka_addr = Some(v);
    }
    if let Some(v) = args.http_addr {
        config.http_addr = if v.eq_ignore_ascii_case("off") {
            None
        } else {
            Some(
                v.parse()
                    .with_context(|| format!("bad --http-addr '{v}'"))?,
            )
        };
    }
    if let Some(v) = args.auto_create_topics_enable {
        config.auto_create_topics_enable = v;
    }
    if let Some(v) = args.num_partitions {
        config.num_partitions = v;
    }
    if let Some(v) = args.log_retention_check_interval_ms {
        config.log_retention_check_interval_ms = v;
    }
    if let Some(v) = args.socket_request_max_bytes {
        config.socket_request_max_bytes = v;
    }
    config.validate().map_err(anyhow::Error::msg)?;
    Ok((config, pipelines))
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("cannot watch SIGINT")?,
        _ = terminate.recv() => {}
    }
    Ok(())
}

/// Each partition keeps a few files open, so thousands of partitions need more descriptors than
/// the usual soft limit: raise it to the hard limit, as Kafka's packaging advises.
fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        if limit.rlim_cur < limit.rlim_max {
            let wanted = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                tracing::info!(
                    open_files_max = limit.rlim_max,
                    "raised the open files limit"
                );
            }
        }
    }
}
