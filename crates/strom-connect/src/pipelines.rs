//! Several pipelines in one process: what `strom connect run` and an embedding server use.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::PipelineConfig;
use crate::runner;
use crate::status::{Status, StatusSnapshot};

/// Running pipelines, each in its own task, restarted after a failure with a backoff.
pub struct Pipelines {
    statuses: Vec<Arc<Status>>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Wait before restarting a failed pipeline.
const RESTART_BACKOFF: std::time::Duration = std::time::Duration::from_secs(2);

impl Pipelines {
    /// Starts every pipeline against `brokers` on the current tokio runtime. A pipeline that
    /// fails is restarted after [`RESTART_BACKOFF`] (it resumes exactly where its sink's
    /// durable state says); one that ends (stdin at end of input) stays stopped.
    pub fn start(brokers: &str, configs: Vec<PipelineConfig>) -> Pipelines {
        let (stop, stopped) = watch::channel(false);
        let mut statuses = Vec::new();
        let mut tasks = Vec::new();
        for config in configs {
            let status = Status::new(config.display_name());
            statuses.push(status.clone());
            let brokers = brokers.to_string();
            let stopped = stopped.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    match runner::run(config.clone(), &brokers, status.clone(), stopped.clone()).await {
                        Ok(()) => return,
                        Err(error) => tracing::error!(pipeline = %status.name, %error, "pipeline failed; restarting"),
                    }
                    if *stopped.borrow() {
                        return;
                    }
                    tokio::time::sleep(RESTART_BACKOFF).await;
                    if *stopped.borrow() {
                        return;
                    }
                }
            }));
        }
        Pipelines {
            statuses,
            stop,
            tasks,
        }
    }

    /// Progress of every pipeline (what `GET /connect` serves).
    pub fn status(&self) -> Vec<StatusSnapshot> {
        self.statuses().status()
    }

    /// [`Pipelines::status`] as JSON: `{"pipelines": [...]}`.
    pub fn status_json(&self) -> serde_json::Value {
        self.statuses().json()
    }

    /// A cheap handle on the statuses, for an HTTP server.
    pub fn statuses(&self) -> Statuses {
        Statuses(self.statuses.clone())
    }

    /// Whether every pipeline has ended.
    pub fn all_finished(&self) -> bool {
        self.tasks.iter().all(JoinHandle::is_finished)
    }

    /// Stops every pipeline (open files finished, offsets committed) and waits for them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }

    /// Waits until every pipeline has ended by itself.
    pub async fn join(&mut self) {
        for task in &mut self.tasks {
            let _ = task.await;
        }
        self.tasks.clear();
    }
}

/// The statuses of running pipelines; cloning is cheap.
#[derive(Clone, Default)]
pub struct Statuses(Vec<Arc<Status>>);

impl Statuses {
    /// Snapshots of every pipeline.
    pub fn status(&self) -> Vec<StatusSnapshot> {
        self.0.iter().map(|s| s.snapshot()).collect()
    }

    /// `{"pipelines": [...]}`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({ "pipelines": self.status() })
    }

    /// A router serving `GET /connect` with [`Statuses::json`], to merge into an HTTP server.
    pub fn router(&self) -> axum::Router {
        let statuses = self.clone();
        axum::Router::new().route(
            "/connect",
            axum::routing::get(move || async move { axum::Json(statuses.json()) }),
        )
    }
}

/// Serves `GET /connect` on `addr` until `shutdown` (for `strom connect run --http-addr`).
pub async fn serve_status(
    addr: &str,
    statuses: Statuses,
    mut shutdown: watch::Receiver<bool>,
) -> crate::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| crate::Error::io(format!("bind {addr}"), e))?;
    tracing::info!(addr = %listener.local_addr().map_err(|e| crate::Error::io("local address", e))?, "GET /connect served");
    axum::serve(listener, statuses.router())
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await
        .map_err(|e| crate::Error::io("serve /connect", e))
}
