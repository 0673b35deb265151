//! The HTTP side: `GET /health` now; metrics and the console later.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::state::BrokerState;

/// The HTTP routes.
pub fn router(state: Arc<BrokerState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .with_state(state)
}

async fn health(State(state): State<Arc<BrokerState>>) -> Json<Value> {
    let image = state.image();
    Json(json!({
        "status": "ok",
        "node_id": state.node_id(),
        "cluster_id": image.cluster_id,
        "topics": image.topics.len(),
        "partitions_hosted": state.replicas.all().len(),
        // What the page cache trimming thread did (null when it is off); see
        // `strom_storage::cache_window`.
        "cache_trim": state.replicas.cache_trim_stats().map(|stats| json!({
            "steps_written": stats.steps_written,
            "steps_evicted": stats.steps_evicted,
            "bytes_evicted": stats.bytes_evicted,
            "jobs_skipped": stats.jobs_skipped,
        })),
    }))
}
