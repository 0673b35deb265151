//! The HTTP ingest endpoint: `POST /` (the pipeline's topic) or `POST /topics/NAME`.
//!
//! A JSON body (`Content-Type: application/json`) is one object or an array of them, one
//! record each; any other body is lines, one record per non-empty line. Keys come from
//! `?key=K` (every record) or the source's `key_field` (each JSON record's field). The answer,
//! sent once every record is acknowledged, is `{"records": N}`; errors are 400 (bad body) or
//! 503 (the cluster refused).

use axum::body::Bytes as Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::runner::{Output, Shutdown};

/// Bytes of one request body at most.
pub const BODY_BYTES_MAX: usize = 16 * 1024 * 1024;

#[derive(Clone)]
struct Ingest {
    output: Output,
    key_field: Option<String>,
}

/// Serves until `shutdown`.
pub async fn run(
    addr: &str,
    key_field: Option<String>,
    output: Output,
    mut shutdown: Shutdown,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::io(format!("bind {addr}"), e))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::io("local address", e))?;
    tracing::info!(addr = %local, "HTTP ingest listening");
    let app = Router::new()
        .route("/", post(ingest_default))
        .route("/topics/:topic", post(ingest_topic))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(Ingest { output, key_field });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.changed().await;
        })
        .await
        .map_err(|e| Error::io("serve HTTP ingest", e))
}

async fn ingest_default(
    State(ingest): State<Ingest>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> (StatusCode, Json<Value>) {
    handle(&ingest, None, &uri, &headers, body).await
}

async fn ingest_topic(
    State(ingest): State<Ingest>,
    Path(topic): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> (StatusCode, Json<Value>) {
    handle(&ingest, Some(topic), &uri, &headers, body).await
}

fn query_key(uri: &Uri) -> Option<String> {
    uri.query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix("key="))
        .map(|k| k.replace("%20", " "))
}

async fn handle(
    ingest: &Ingest,
    topic: Option<String>,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> (StatusCode, Json<Value>) {
    let json_body = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let batch = match parse(
        &body,
        json_body,
        query_key(uri),
        ingest.key_field.as_deref(),
    ) {
        Ok(batch) => batch,
        Err(message) => return (StatusCode::BAD_REQUEST, Json(json!({ "error": message }))),
    };
    match ingest.output.send_all(topic, batch).await {
        Ok(sent) => (StatusCode::OK, Json(json!({ "records": sent }))),
        Err(error) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": error.to_string() })),
        ),
    }
}

type Batch = Vec<(Option<Bytes>, Bytes)>;

fn key_of(value: &Value, key: &Option<String>, key_field: Option<&str>) -> Option<Bytes> {
    if let Some(key) = key {
        return Some(Bytes::from(key.clone()));
    }
    let field = value.get(key_field?)?;
    Some(Bytes::from(match field {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }))
}

fn parse(
    body: &[u8],
    json_body: bool,
    key: Option<String>,
    key_field: Option<&str>,
) -> std::result::Result<Batch, String> {
    if json_body {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
        let items = match value {
            Value::Array(items) => items,
            other => vec![other],
        };
        return Ok(items
            .into_iter()
            .map(|v| (key_of(&v, &key, key_field), Bytes::from(v.to_string())))
            .collect());
    }
    let text = std::str::from_utf8(body).map_err(|_| "body is not UTF-8 text".to_string())?;
    Ok(text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let parsed: Option<Value> = serde_json::from_str(line).ok();
            let k = parsed
                .as_ref()
                .and_then(|v| key_of(v, &key, key_field))
                .or_else(|| key.clone().map(Bytes::from));
            (k, Bytes::from(line.to_string()))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_become_records_with_keys() {
        let batch = parse(br#"[{"p":"a","x":1},{"p":2}]"#, true, None, Some("p")).unwrap();
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[0].0.as_deref(), Some(&b"a"[..]));
        assert_eq!(batch[1].0.as_deref(), Some(&b"2"[..]));
        let lines = parse(b"one\n\ntwo\n", false, Some("k".into()), None).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[1], (Some(Bytes::from("k")), Bytes::from("two")));
        assert!(parse(b"{nope", true, None, None).is_err());
        assert!(parse(&[0xff, 0xfe], false, None, None).is_err());
    }
}
