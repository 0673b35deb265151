//! In-broker transforms: topic-to-topic pipelines that live in the cluster metadata and that
//! `strom server` runs itself (`strom transform create NAME --input T --output T2 --step ...`).
//!
//! A transform is a metadata record (`MetadataRecord::Transform`: name, input, output and the
//! steps as JSON), so it is durable and survives restarts. Its steps are the connectors'
//! transforms (`strom_connect::transform::TransformConfig`: filter, mask, hash, drop, route,
//! header); the metadata layer keeps them as opaque JSON so the broker crate never depends on
//! the connectors. This module gives
//!
//! - HTTP routes on the broker's HTTP side: `POST /transforms` (`{name, input, output, steps}`;
//!   400 when invalid, 409 when the name is taken), `GET /transforms` (with each one's live
//!   progress), `GET /transforms/NAME` and `DELETE /transforms/NAME` (404 when unknown);
//! - the [`Runner`], which follows the metadata image and runs one `strom_connect` pipeline per
//!   transform: a Kafka source on `[input]` in consumer group `__transform-NAME` (starting at
//!   the earliest offset the first time), the steps, and a Kafka sink to `output`, against the
//!   broker's own Kafka listener. A deleted transform's pipeline stops; all stop on shutdown
//!   before the broker does.
//!
//! # Delivery guarantee: at-least-once
//!
//! Transactions do not exist yet, so output is **at-least-once**, not exactly-once. For each
//! batch it polls, the pipeline produces the transformed records (`acks=all`), waits until
//! every one is acknowledged, and only then commits the input offsets to group
//! `__transform-NAME`. Consequences:
//!
//! - Nothing is lost: an input record's offset is committed only after its output is durable.
//! - A clean stop (SIGTERM, or deleting the transform) finishes the batch in hand and commits
//!   it, so a restart after a clean stop writes no duplicates.
//! - After a crash (SIGKILL, power loss) the batch that was produced but not yet committed is
//!   transformed and produced again on restart: the output then holds those records twice,
//!   in input order (the output is a prefix of the input's transformed records followed by a
//!   replay from the last committed offset). At most one poll's worth of records is repeated:
//!   up to `max.partition.fetch.bytes` (1 MiB) of input per input partition, plus the rest of
//!   a record batch that straddles it (thousands of small records).
//! - The output producer is the connectors' Kafka sink producer, which does not enable
//!   idempotence today; a produce retried after a lost acknowledgement can therefore also
//!   write a record twice. Exactly-once output needs transactions (read-process-write with
//!   the offsets committed in the same transaction).
//!
//! Re-creating a transform with the same name resumes from the offsets group
//! `__transform-NAME` committed; `strom group delete __transform-NAME` starts it over.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};
use strom_broker::state::BrokerState;
use strom_connect::config::Start;
use strom_connect::transform::TransformConfig;
use strom_connect::{PipelineConfig, Pipelines, SinkConfig, SourceConfig, Statuses};
use strom_metadata::{TransformError, TransformImage};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often the runner compares the metadata image with the pipelines it runs.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How long stopping one pipeline may take before the runner gives up waiting for it.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The consumer group of a transform's pipeline.
pub fn group_name(transform: &str) -> String {
    format!("__transform-{transform}")
}

/// What the HTTP routes and the runner share: the broker (set once it has started; the
/// routes answer 503 before) and each running transform's progress.
#[derive(Clone, Default)]
pub struct Shared {
    broker: Arc<OnceLock<Arc<BrokerState>>>,
    statuses: Arc<RwLock<BTreeMap<String, RunState>>>,
}

/// What the runner did with a transform.
#[derive(Clone)]
enum RunState {
    Running(Statuses),
    /// The stored steps could not be turned into a pipeline (e.g. written by a newer version).
    Invalid(String),
}

impl Shared {
    /// Makes the routes serve: call once the broker has started.
    pub fn set_broker(&self, state: Arc<BrokerState>) {
        let _ = self.broker.set(state);
    }

    fn status_json(&self, name: &str) -> Value {
        let statuses = self.statuses.read().ok();
        match statuses.as_ref().and_then(|s| s.get(name)) {
            Some(RunState::Running(s)) => s
                .status()
                .into_iter()
                .next()
                .map(|s| serde_json::to_value(s).unwrap_or(Value::Null))
                .unwrap_or(Value::Null),
            Some(RunState::Invalid(error)) => json!({ "state": "invalid", "last_error": error }),
            None => Value::Null,
        }
    }
}

/// Turns a stored transform into the pipeline that runs it; the error says what is wrong.
pub fn pipeline_config(transform: &TransformImage) -> Result<PipelineConfig, String> {
    let steps: Vec<TransformConfig> =
        serde_json::from_str(&transform.steps).map_err(|e| format!("invalid steps: {e}"))?;
    let config = PipelineConfig {
        name: Some(format!("transform-{}", transform.name)),
        source: SourceConfig::Kafka {
            topics: vec![transform.input.clone()],
            group: group_name(&transform.name),
            start: Start::Earliest,
        },
        transform: steps,
        sink: SinkConfig::Kafka {
            topic: transform.output.clone(),
            acks: Some("all".to_string()),
            compression: None,
        },
    };
    config
        .validate()
        .map_err(|e| format!("invalid steps: {e}"))?;
    Ok(config)
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// The routes, to merge into the broker's HTTP side.
pub fn routes(shared: Shared) -> Router {
    Router::new()
        .route("/transforms", get(list).post(create))
        .route("/transforms/:name", get(describe).delete(delete))
        .with_state(shared)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// 503 until the broker has started (the routes are built before it).
fn starting() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the broker is still starting; try again",
    )
}

fn transform_json(shared: &Shared, transform: &TransformImage) -> Value {
    let steps: Value =
        serde_json::from_str(&transform.steps).unwrap_or(Value::String(transform.steps.clone()));
    json!({
        "name": transform.name,
        "input": transform.input,
        "output": transform.output,
        "group": group_name(&transform.name),
        "steps": steps,
        "status": shared.status_json(&transform.name),
    })
}

fn transform_error(refused: TransformError) -> Response {
    let status = match &refused {
        TransformError::AlreadyExists(_) => StatusCode::CONFLICT,
        TransformError::Unknown(_) => StatusCode::NOT_FOUND,
        TransformError::Invalid(_) => StatusCode::BAD_REQUEST,
        TransformError::Log(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, refused.to_string())
}

/// The body of `POST /transforms`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    name: String,
    input: String,
    output: String,
    #[serde(default = "no_steps")]
    steps: Value,
}

fn no_steps() -> Value {
    Value::Array(Vec::new())
}

async fn create(State(shared): State<Shared>, body: Bytes) -> Response {
    let Some(state) = shared.broker.get().cloned() else {
        return starting();
    };
    let request: CreateRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "body must be JSON {{\"name\", \"input\", \"output\", \"steps\": [...]}}: {e}"
                ),
            )
        }
    };
    if !request.steps.is_array() {
        return error(
            StatusCode::BAD_REQUEST,
            "steps must be a JSON array of transform steps",
        );
    }
    let steps = request.steps.to_string();
    let candidate = TransformImage {
        name: request.name.clone(),
        input: request.input.clone(),
        output: request.output.clone(),
        steps: steps.clone(),
        created_offset: -1,
    };
    if let Err(message) = pipeline_config(&candidate) {
        return error(StatusCode::BAD_REQUEST, message);
    }
    let created = state.with_controller(|c| {
        Ok(c.create_transform(&request.name, &request.input, &request.output, &steps))
    });
    let created = match created {
        Ok(Ok(created)) => created,
        Ok(Err(e)) => return transform_error(e),
        Err(e) => return transform_error(e.into()),
    };
    // The topics are created with the broker's defaults when auto-creation is on; otherwise
    // the pipeline reports the missing topic in its status until someone creates it.
    let failures = state.auto_create_topics(&[created.input.clone(), created.output.clone()]);
    for (topic, code) in failures {
        tracing::warn!(transform = %created.name, %topic, code, "could not create a transform topic");
    }
    tracing::info!(transform = %created.name, input = %created.input, output = %created.output, "transform created");
    (StatusCode::CREATED, Json(transform_json(&shared, &created))).into_response()
}

async fn list(State(shared): State<Shared>) -> Response {
    let Some(state) = shared.broker.get().cloned() else {
        return starting();
    };
    let image = state.image();
    let transforms: Vec<Value> = image
        .transforms
        .values()
        .map(|t| transform_json(&shared, t))
        .collect();
    Json(json!({ "transforms": transforms })).into_response()
}

async fn describe(State(shared): State<Shared>, Path(name): Path<String>) -> Response {
    let Some(state) = shared.broker.get().cloned() else {
        return starting();
    };
    match state.image().transforms.get(&name) {
        Some(t) => Json(transform_json(&shared, t)).into_response(),
        None => transform_error(TransformError::Unknown(name)),
    }
}

async fn delete(State(shared): State<Shared>, Path(name): Path<String>) -> Response {
    let Some(state) = shared.broker.get().cloned() else {
        return starting();
    };
    match state.with_controller(|c| Ok(c.delete_transform(&name))) {
        Ok(Ok(deleted)) => {
            tracing::info!(transform = %deleted.name, "transform deleted");
            Json(transform_json(&shared, &deleted)).into_response()
        }
        Ok(Err(e)) => transform_error(e),
        Err(e) => transform_error(e.into()),
    }
}

// ---------------------------------------------------------------------------------------------
// Runner

/// Runs one pipeline per transform of the metadata image, following its changes.
pub struct Runner {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Runner {
    /// Starts following the image of `state`; pipelines connect to `brokers` (this broker).
    pub fn start(state: Arc<BrokerState>, brokers: String, shared: Shared) -> Runner {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(follow(state, brokers, shared, stopped));
        Runner { stop, task }
    }

    /// Stops every transform's pipeline (the batch in hand is produced and its offsets
    /// committed) and waits for them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

struct Running {
    transform: TransformImage,
    pipelines: Option<Pipelines>,
}

async fn follow(
    state: Arc<BrokerState>,
    brokers: String,
    shared: Shared,
    mut stopped: watch::Receiver<bool>,
) {
    let mut running: BTreeMap<String, Running> = BTreeMap::new();
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stopped.changed() => break,
        }
        if *stopped.borrow() {
            break;
        }
        let image = state.image();
        let gone: Vec<String> = running
            .iter()
            .filter(|(name, r)| image.transforms.get(*name) != Some(&r.transform))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            if let Some(r) = running.remove(&name) {
                if let Ok(mut statuses) = shared.statuses.write() {
                    statuses.remove(&name);
                }
                tracing::info!(transform = %name, "stopping transform");
                stop_pipelines(&name, r.pipelines).await;
            }
        }
        for (name, transform) in &image.transforms {
            if running.contains_key(name) {
                continue;
            }
            let (run_state, pipelines) = match pipeline_config(transform) {
                Ok(config) => {
                    tracing::info!(
                        transform = %name,
                        input = %transform.input,
                        output = %transform.output,
                        group = %group_name(name),
                        "starting transform (at-least-once)"
                    );
                    let pipelines = Pipelines::start(&brokers, vec![config]);
                    (RunState::Running(pipelines.statuses()), Some(pipelines))
                }
                Err(error) => {
                    tracing::error!(transform = %name, %error, "cannot run transform");
                    (RunState::Invalid(error), None)
                }
            };
            if let Ok(mut statuses) = shared.statuses.write() {
                statuses.insert(name.clone(), run_state);
            }
            running.insert(
                name.clone(),
                Running {
                    transform: transform.clone(),
                    pipelines,
                },
            );
        }
    }
    let mut stopping = tokio::task::JoinSet::new();
    for (name, r) in running {
        stopping.spawn(async move { stop_pipelines(&name, r.pipelines).await });
    }
    while stopping.join_next().await.is_some() {}
    if let Ok(mut statuses) = shared.statuses.write() {
        statuses.clear();
    }
}

async fn stop_pipelines(name: &str, pipelines: Option<Pipelines>) {
    let Some(pipelines) = pipelines else {
        return;
    };
    if tokio::time::timeout(STOP_TIMEOUT, pipelines.stop())
        .await
        .is_err()
    {
        tracing::warn!(transform = %name, "transform did not stop in time; abandoning it (its uncommitted batch will be repeated)");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(steps: &str) -> TransformImage {
        TransformImage {
            name: "clean".to_string(),
            input: "raw".to_string(),
            output: "clean-out".to_string(),
            steps: steps.to_string(),
            created_offset: 3,
        }
    }

    #[test]
    fn a_transform_becomes_a_kafka_to_kafka_pipeline() {
        let config = pipeline_config(&image(
            r#"[{"type":"hash","fields":["$.ip"]},{"type":"filter","field":"$.type","equals":"trade"}]"#,
        ))
        .unwrap();
        assert_eq!(config.transform.len(), 2);
        let SourceConfig::Kafka { topics, group, .. } = &config.source else {
            panic!("{config:?}")
        };
        assert_eq!(topics, &["raw".to_string()]);
        assert_eq!(group, "__transform-clean");
        assert!(matches!(&config.sink, SinkConfig::Kafka { topic, .. } if topic == "clean-out"));
    }

    #[test]
    fn bad_steps_are_explained() {
        for steps in [
            r#"[{"type":"nope"}]"#,
            r#"[{"type":"hash","fields":["$."]}]"#,
            r#"[{"type":"filter","field":"$.a"}]"#,
            r#"{"type":"hash"}"#,
        ] {
            let error = pipeline_config(&image(steps)).unwrap_err();
            assert!(error.starts_with("invalid steps"), "{steps}: {error}");
        }
    }
}
