//! Starting and stopping a broker: open the metadata and logs, bind the listeners, run the
//! accept loop and the background work (retention), and shut down cleanly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use strom_metadata::Controller;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use crate::config::BrokerConfig;
use crate::state::{now_ms, BrokerState};

/// Why a broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address asked for.
        addr: SocketAddr,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The data directory could not be opened.
    #[error("cannot open data directory {dir}: {reason}")]
    DataDir {
        /// Directory.
        dir: String,
        /// What went wrong.
        reason: String,
    },
}

/// A running broker.
pub struct Broker {
    state: Arc<BrokerState>,
    kafka_addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Broker {
    /// Opens the data directory (recovering every log), binds the listeners and starts serving.
    pub async fn start(config: BrokerConfig) -> Result<Broker, BrokerError> {
        Broker::start_with_routes(config, axum::Router::new()).await
    }

    /// Like [`Broker::start`], with more routes served on the HTTP side (for example the
    /// connectors' `GET /connect` when pipelines run inside the server).
    pub async fn start_with_routes(
        config: BrokerConfig,
        extra_routes: axum::Router,
    ) -> Result<Broker, BrokerError> {
        config.validate().map_err(BrokerError::Config)?;
        let data_dir_error = |reason: String| BrokerError::DataDir {
            dir: config.data_dir.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(&config.data_dir).map_err(|e| data_dir_error(e.to_string()))?;
        let listener = TcpListener::bind(config.kafka_addr)
            .await
            .map_err(|source| BrokerError::Bind {
                addr: config.kafka_addr,
                source,
            })?;
        let kafka_addr = listener.local_addr().map_err(|source| BrokerError::Bind {
            addr: config.kafka_addr,
            source,
        })?;
        let (host, port) = advertised(&config, kafka_addr)?;
        let mut controller = Controller::open(&config.data_dir.join("__cluster_metadata"))
            .map_err(|e| data_dir_error(e.to_string()))?;
        controller
            .register_broker(config.node_id, &host, port, config.rack.clone())
            .map_err(|e| data_dir_error(e.to_string()))?;
        let state = BrokerState::new(config.clone(), host, port, controller)
            .map_err(|e| data_dir_error(e.to_string()))?;
        let state = Arc::new(state);
        state.groups.start(&state).map_err(data_dir_error)?;
        let (shutdown, shutdown_receiver) = watch::channel(false);
        let mut tasks = vec![tokio::spawn(accept_loop(
            listener,
            state.clone(),
            shutdown_receiver.clone(),
        ))];
        tasks.push(tokio::spawn(crate::group::run_timers(
            state.clone(),
            shutdown_receiver.clone(),
            Duration::from_millis(config.offsets_retention_check_interval_ms.max(1000)),
        )));
        tasks.push(tokio::spawn(cleaner_loop(
            state.clone(),
            shutdown_receiver.clone(),
        )));
        tasks.push(tokio::spawn(retention_loop(
            state.clone(),
            shutdown_receiver.clone(),
        )));
        tasks.push(tokio::spawn(flush_loop(
            state.clone(),
            shutdown_receiver.clone(),
        )));
        let http_addr = match config.http_addr {
            Some(addr) => {
                let http = TcpListener::bind(addr)
                    .await
                    .map_err(|source| BrokerError::Bind { addr, source })?;
                let bound = http
                    .local_addr()
                    .map_err(|source| BrokerError::Bind { addr, source })?;
                let router = crate::http::router(state.clone()).merge(extra_routes);
                let mut stop = shutdown_receiver.clone();
                tasks.push(tokio::spawn(async move {
                    let serve = axum::serve(http, router).with_graceful_shutdown(async move {
                        let _ = stop.wait_for(|s| *s).await;
                    });
                    if let Err(error) = serve.await {
                        tracing::error!(%error, "HTTP server failed");
                    }
                }));
                Some(bound)
            }
            None => None,
        };
        tracing::info!(
            node_id = config.node_id,
            %kafka_addr,
            advertised = %format!("{}:{}", state.advertised_host, state.advertised_port),
            http_addr = ?http_addr,
            data_dir = %config.data_dir.display(),
            cluster_id = %state.image().cluster_id,
            "strom broker started"
        );
        Ok(Broker {
            state,
            kafka_addr,
            http_addr,
            shutdown,
            tasks,
        })
    }

    /// The address the Kafka listener is bound to.
    pub fn kafka_addr(&self) -> SocketAddr {
        self.kafka_addr
    }

    /// The address the HTTP side is bound to, if enabled.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The shared state (for tests and embedding).
    pub fn state(&self) -> &Arc<BrokerState> {
        &self.state
    }

    /// Stops accepting, ends background work, flushes and closes every log.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        let state = self.state.clone();
        let closed = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let all_clean = state.replicas.close_all();
            // Only when every log closed cleanly may the next start skip scanning them.
            let marked = all_clean
                && strom_storage::checkpoint::mark_clean_shutdown(&state.config.data_dir)
                    .map_err(|error| tracing::error!(%error, "cannot mark the clean shutdown"))
                    .is_ok();
            tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                marked_clean = marked,
                "partition logs closed"
            );
            marked
        })
        .await;
        match closed {
            Ok(true) => tracing::info!("strom broker stopped cleanly"),
            _ => tracing::warn!("strom broker stopped; the next start recovers every log"),
        }
    }
}

fn advertised(config: &BrokerConfig, bound: SocketAddr) -> Result<(String, u16), BrokerError> {
    let Some(text) = &config.advertised_kafka_addr else {
        return Ok((bound.ip().to_string(), bound.port()));
    };
    let (host, port) = text.rsplit_once(':').ok_or_else(|| {
        BrokerError::Config(format!("advertised address '{text}' needs host:port"))
    })?;
    let port = port
        .parse::<u16>()
        .map_err(|_| BrokerError::Config(format!("advertised address '{text}' has a bad port")))?;
    Ok((host.to_string(), port))
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<BrokerState>,
    mut shutdown: watch::Receiver<bool>,
) {
    let connections = Arc::new(Semaphore::new(state.config.connections_max));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = state.config.connections_max, "connection limit reached; refusing connection");
            drop(stream);
            continue;
        };
        let state = state.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = crate::connection::serve(stream, peer, state) => {}
                _ = stop.wait_for(|s| *s) => {}
            }
            drop(permit);
        });
    }
}

/// The log cleaner: compacts partitions of `cleanup.policy=compact` topics whose dirty part
/// is large enough (or old enough), one partition at a time, off the async workers.
async fn cleaner_loop(state: Arc<BrokerState>, mut shutdown: watch::Receiver<bool>) {
    let interval = Duration::from_millis(state.config.log_cleaner_backoff_ms.max(10));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let state = state.clone();
        let _ = tokio::task::spawn_blocking(move || clean_logs(&state)).await;
    }
}

fn clean_logs(state: &BrokerState) {
    for partition in state.replicas.all() {
        let now = now_ms();
        let mut log = partition.log.lock();
        if !log.needs_cleaning(now) {
            continue;
        }
        match log.clean(now) {
            Ok(stats) => tracing::info!(
                topic = %partition.topic,
                partition = partition.index,
                records_read = stats.records_read,
                records_superseded = stats.records_superseded,
                tombstones_removed = stats.tombstones_removed,
                bytes_before = stats.bytes_read,
                bytes_after = stats.bytes_written,
                "log cleaned"
            ),
            Err(error) => {
                tracing::error!(topic = %partition.topic, partition = partition.index, %error, "log cleaning failed")
            }
        }
    }
}

/// How often the flusher looks for segments that rolled without an fsync.
const ROLLED_SEGMENT_FLUSH_INTERVAL_MS: u64 = 500;

/// fsyncs segments that rolled (rolls never fsync under the partition's lock, as in Kafka) and
/// then moves each partition's recovery point; the lock is held only to plan and to complete.
/// It also writes the index files of active segments whose indexes got their first entries.
async fn flush_loop(state: Arc<BrokerState>, mut shutdown: watch::Receiver<bool>) {
    let interval = Duration::from_millis(ROLLED_SEGMENT_FLUSH_INTERVAL_MS);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let state = state.clone();
        let _ = tokio::task::spawn_blocking(move || flush_rolled_segments(&state)).await;
    }
}

fn flush_rolled_segments(state: &BrokerState) {
    for partition in state.replicas.all() {
        let planned = {
            let mut log = partition.log.lock();
            // A segment gets its index files once its indexes hold entries (a partition that
            // never receives index.interval.bytes has none); writing them here keeps them off
            // the shutdown path.
            if let Err(error) = log.write_new_index_files() {
                tracing::error!(topic = %partition.topic, partition = partition.index, %error, "cannot write index files");
            }
            log.pending_flush()
        };
        let pending = match planned {
            Ok(Some(pending)) => pending,
            Ok(None) => continue,
            Err(error) => {
                tracing::error!(topic = %partition.topic, partition = partition.index, %error, "cannot plan a flush");
                continue;
            }
        };
        let result = pending
            .sync()
            .and_then(|()| partition.log.lock().complete_flush(pending.up_to()));
        if let Err(error) = result {
            tracing::error!(topic = %partition.topic, partition = partition.index, %error, "flushing rolled segments failed");
        }
    }
}

async fn retention_loop(state: Arc<BrokerState>, mut shutdown: watch::Receiver<bool>) {
    let interval = Duration::from_millis(state.config.log_retention_check_interval_ms.max(10));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let state = state.clone();
        let _ = tokio::task::spawn_blocking(move || enforce_retention(&state)).await;
    }
}

fn enforce_retention(state: &BrokerState) {
    for partition in state.replicas.all() {
        let now = now_ms();
        let mut log = partition.log.lock();
        log.remove_expired_producers(now);
        if let Err(error) = log.roll_if_due(now) {
            tracing::error!(topic = %partition.topic, partition = partition.index, %error, "segment roll failed");
        }
        match log.enforce_retention(now) {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(
                topic = %partition.topic,
                partition = partition.index,
                deleted_segments = deleted,
                log_start_offset = log.log_start_offset(),
                "retention deleted old segments"
            ),
            Err(error) => {
                tracing::error!(topic = %partition.topic, partition = partition.index, %error, "retention failed")
            }
        }
        // Unlinked without the lock: trimming a deleted gigabyte can take hundreds of ms.
        let retired = log.take_retired_files();
        drop(log);
        if let Err(error) = retired.delete() {
            tracing::error!(topic = %partition.topic, partition = partition.index, %error, "deleting retired segment files failed");
        }
    }
}
