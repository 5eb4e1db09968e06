//! The HTTP API (`/v1`, JSON): thin handlers that parse, call the [`Router`] and render.
//!
//! `app` builds the whole `axum::Router`, so tests can drive it without a socket. Errors
//! are rendered by [`error::Problem`]; no handler formats an error itself.

pub mod error;

use crate::backend::Received;
use crate::model::{QueueSpec, SubscriptionSpec, TopicSpec};
use crate::router::{PublishRequest, ReceiveRequest, Router, RouterError, SendRequest};
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router as Routes};
use error::{ApiJson, Problem, receipt_status};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Largest request body: a full batch of 100 messages at the 256 KiB limit fits.
pub const MAX_BODY_BYTES: usize = 100 * 256 * 1024 + 64 * 1024;

/// Largest batch of a publish-batch or batch send.
pub const MAX_BATCH_ENTRIES: usize = 100;

/// Counters exported on `/metrics`.
#[derive(Default)]
pub struct Metrics {
    pub published: AtomicU64,
    pub deliveries: AtomicU64,
    pub received: AtomicU64,
    pub acked: AtomicU64,
    pub client_errors: AtomicU64,
}

#[derive(Clone)]
pub struct AppState {
    pub router: Arc<Router>,
    pub metrics: Arc<Metrics>,
    /// When set, every `/v1` call needs `Authorization: Bearer TOKEN`.
    pub token: Option<Arc<str>>,
}

type ApiResult = Result<Response, Problem>;

pub fn app(state: AppState) -> Routes {
    let v1 = Routes::new()
        .route("/topics", get(list_topics))
        .route(
            "/topics/{topic}",
            get(get_topic).put(put_topic).delete(delete_topic),
        )
        .route("/topics/{topic}/publish", post(publish))
        .route("/topics/{topic}/publish-batch", post(publish_batch))
        .route("/topics/{topic}/subscriptions", get(list_subscriptions))
        .route(
            "/topics/{topic}/subscriptions/{name}",
            get(get_subscription)
                .put(put_subscription)
                .delete(delete_subscription),
        )
        .route("/queues", get(list_queues))
        .route(
            "/queues/{queue}",
            get(get_queue).put(put_queue).delete(delete_queue),
        )
        .route("/queues/{queue}/messages", post(send))
        .route("/queues/{queue}/receive", post(receive))
        .route("/queues/{queue}/ack", post(ack))
        .route("/queues/{queue}/visibility", post(visibility))
        .route("/queues/{queue}/purge", post(purge))
        .route("/queues/{queue}/redrive", post(redrive))
        .layer(middleware::from_fn_with_state(state.clone(), authorize));
    Routes::new()
        .nest("/v1", v1)
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .fallback(|| async { Problem::new(StatusCode::NOT_FOUND, "not-found", "no such route") })
        .layer(middleware::from_fn_with_state(state.clone(), count_errors))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn authorize(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(token) = &s.token {
        let ok = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| t.as_bytes() == token.as_bytes());
        if !ok {
            return Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this server needs Authorization: Bearer TOKEN",
            )
            .into_response();
        }
    }
    next.run(req).await
}

async fn count_errors(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    if res.status().is_client_error() {
        s.metrics.client_errors.fetch_add(1, Ordering::Relaxed);
    }
    res
}

async fn metrics(State(s): State<AppState>) -> Response {
    let m = &s.metrics;
    let mut out = String::new();
    for (name, help, v) in [
        (
            "switchyard_published_total",
            "Messages accepted by publish",
            &m.published,
        ),
        (
            "switchyard_deliveries_total",
            "Deliveries stored for subscriptions",
            &m.deliveries,
        ),
        (
            "switchyard_received_total",
            "Messages handed to queue receivers",
            &m.received,
        ),
        ("switchyard_acked_total", "Messages acknowledged", &m.acked),
        (
            "switchyard_client_errors_total",
            "Requests answered with a 4xx",
            &m.client_errors,
        ),
    ] {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
            v.load(Ordering::Relaxed)
        ));
    }
    for q in s.router.backend.queue_names() {
        if let Ok(c) = s.router.counts(&q) {
            for (state, v) in [
                ("visible", c.visible),
                ("in_flight", c.in_flight),
                ("delayed", c.delayed),
            ] {
                out.push_str(&format!(
                    "switchyard_queue_messages{{queue=\"{q}\",state=\"{state}\"}} {v}\n"
                ));
            }
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

fn created_or_ok(created: bool, body: Value) -> Response {
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, Json(body)).into_response()
}

// ---- topics ---------------------------------------------------------------------------

async fn list_topics(State(s): State<AppState>) -> Json<Value> {
    Json(json!({ "topics": s.router.topic_names() }))
}

fn topic_json(s: &AppState, name: &str) -> Result<Value, RouterError> {
    let t = s.router.topic(name)?;
    let mut v = serde_json::to_value(&t.spec).expect("spec serializes");
    v["name"] = json!(name);
    v["subscriptions"] = json!(t.subscriptions.keys().collect::<Vec<_>>());
    Ok(v)
}

async fn get_topic(State(s): State<AppState>, Path(topic): Path<String>) -> ApiResult {
    Ok(Json(topic_json(&s, &topic)?).into_response())
}

async fn put_topic(
    State(s): State<AppState>,
    Path(topic): Path<String>,
    ApiJson(spec): ApiJson<TopicSpec>,
) -> ApiResult {
    let created = s.router.put_topic(&topic, spec).await?;
    Ok(created_or_ok(created, topic_json(&s, &topic)?))
}

async fn delete_topic(State(s): State<AppState>, Path(topic): Path<String>) -> ApiResult {
    s.router.delete_topic(&topic).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn publish(
    State(s): State<AppState>,
    Path(topic): Path<String>,
    ApiJson(req): ApiJson<PublishRequest>,
) -> ApiResult {
    let out = s.router.publish(&topic, req).await?;
    s.metrics.published.fetch_add(1, Ordering::Relaxed);
    s.metrics
        .deliveries
        .fetch_add(out.delivered as u64, Ordering::Relaxed);
    Ok(Json(json!({ "message_id": out.message_id })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch<T> {
    entries: Vec<T>,
}

fn check_batch_len(n: usize) -> Result<(), Problem> {
    if n == 0 || n > MAX_BATCH_ENTRIES {
        return Err(Problem::bad_request(format!(
            "a batch holds 1 to {MAX_BATCH_ENTRIES} entries, got {n}"
        )));
    }
    Ok(())
}

fn batch_response<T: serde::Serialize>(
    results: Vec<(String, Result<T, RouterError>)>,
    ok: impl Fn(T) -> Value,
) -> (Value, u64) {
    let mut successful = Vec::new();
    let mut failed = Vec::new();
    for (id, r) in results {
        match r {
            Ok(v) => {
                let mut v = ok(v);
                v["id"] = json!(id);
                successful.push(v);
            }
            Err(e) => {
                let p = Problem::from(e);
                failed.push(json!({"id": id, "status": p.status.as_u16(), "detail": p.detail}));
            }
        }
    }
    let n = successful.len() as u64;
    (json!({ "successful": successful, "failed": failed }), n)
}

async fn publish_batch(
    State(s): State<AppState>,
    Path(topic): Path<String>,
    ApiJson(batch): ApiJson<Batch<PublishRequest>>,
) -> ApiResult {
    check_batch_len(batch.entries.len())?;
    let results = s.router.publish_batch(&topic, batch.entries).await?;
    let deliveries: usize = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok().map(|o| o.delivered))
        .sum();
    let (body, n) = batch_response(results, |o| json!({ "message_id": o.message_id }));
    s.metrics.published.fetch_add(n, Ordering::Relaxed);
    s.metrics
        .deliveries
        .fetch_add(deliveries as u64, Ordering::Relaxed);
    Ok(Json(body).into_response())
}

// ---- subscriptions --------------------------------------------------------------------

async fn list_subscriptions(State(s): State<AppState>, Path(topic): Path<String>) -> ApiResult {
    let t = s.router.topic(&topic)?;
    Ok(
        Json(json!({ "subscriptions": t.subscriptions.keys().collect::<Vec<_>>() }))
            .into_response(),
    )
}

fn subscription_json(s: &AppState, topic: &str, name: &str) -> Result<Value, RouterError> {
    let t = s.router.topic(topic)?;
    let spec = t
        .subscriptions
        .get(name)
        .ok_or_else(|| RouterError::NotFound {
            kind: crate::model::Kind::Subscription,
            name: name.to_string(),
        })?;
    let mut v = serde_json::to_value(spec).expect("spec serializes");
    v["name"] = json!(name);
    v["topic"] = json!(topic);
    Ok(v)
}

async fn get_subscription(
    State(s): State<AppState>,
    Path((topic, name)): Path<(String, String)>,
) -> ApiResult {
    Ok(Json(subscription_json(&s, &topic, &name)?).into_response())
}

async fn put_subscription(
    State(s): State<AppState>,
    Path((topic, name)): Path<(String, String)>,
    ApiJson(spec): ApiJson<SubscriptionSpec>,
) -> ApiResult {
    let created = s.router.put_subscription(&topic, &name, spec).await?;
    Ok(created_or_ok(
        created,
        subscription_json(&s, &topic, &name)?,
    ))
}

async fn delete_subscription(
    State(s): State<AppState>,
    Path((topic, name)): Path<(String, String)>,
) -> ApiResult {
    s.router.delete_subscription(&topic, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- queues ---------------------------------------------------------------------------

async fn list_queues(State(s): State<AppState>) -> Json<Value> {
    Json(json!({ "queues": s.router.backend.queue_names() }))
}

fn queue_json(s: &AppState, name: &str) -> Result<Value, RouterError> {
    let h = s.router.queue(name)?;
    let c = s.router.counts(name)?;
    let mut v = serde_json::to_value(h.spec()).expect("spec serializes");
    v["name"] = json!(name);
    v["approximate_visible"] = json!(c.visible);
    v["approximate_in_flight"] = json!(c.in_flight);
    v["approximate_delayed"] = json!(c.delayed);
    Ok(v)
}

async fn get_queue(State(s): State<AppState>, Path(queue): Path<String>) -> ApiResult {
    Ok(Json(queue_json(&s, &queue)?).into_response())
}

async fn put_queue(
    State(s): State<AppState>,
    Path(queue): Path<String>,
    ApiJson(spec): ApiJson<QueueSpec>,
) -> ApiResult {
    let created = s.router.put_queue(&queue, spec).await?;
    Ok(created_or_ok(created, queue_json(&s, &queue)?))
}

async fn delete_queue(State(s): State<AppState>, Path(queue): Path<String>) -> ApiResult {
    s.router.delete_queue(&queue).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A send body: one message, or `{"entries": [...]}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum SendBody {
    Batch(Batch<SendRequest>),
    One(SendRequest),
}

async fn send(
    State(s): State<AppState>,
    Path(queue): Path<String>,
    ApiJson(body): ApiJson<Box<RawValue>>,
) -> ApiResult {
    // Parsed in two steps so a malformed single message reports its own error rather than
    // serde's "did not match any variant".
    let is_batch = serde_json::from_str::<Value>(body.get())
        .ok()
        .is_some_and(|v| v.get("entries").is_some());
    let parsed = if is_batch {
        serde_json::from_str::<Batch<SendRequest>>(body.get()).map(SendBody::Batch)
    } else {
        serde_json::from_str::<SendRequest>(body.get()).map(SendBody::One)
    }
    .map_err(|e| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "malformed-json",
            format!("invalid JSON body: {e}"),
        )
    })?;
    match parsed {
        SendBody::One(req) => {
            let (_, r) = s
                .router
                .send(&queue, vec![req])
                .await?
                .pop()
                .expect("one entry in, one result out");
            Ok(Json(json!({ "message_id": r? })).into_response())
        }
        SendBody::Batch(b) => {
            check_batch_len(b.entries.len())?;
            let results = s.router.send(&queue, b.entries).await?;
            let (body, _) = batch_response(results, |mid| json!({ "message_id": mid }));
            Ok(Json(body).into_response())
        }
    }
}

/// Renders received messages. Payload and attributes are stored as JSON text and are
/// spliced in as they are, without re-parsing.
fn render_received(msgs: &[Received]) -> Response {
    let mut out = String::with_capacity(
        32 + msgs
            .iter()
            .map(|m| m.payload.len() + m.attributes.len() + 200)
            .sum::<usize>(),
    );
    out.push_str("{\"messages\":[");
    for (i, m) in msgs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"message_id\":");
        out.push_str(&json!(m.message_id).to_string());
        out.push_str(",\"receipt\":");
        out.push_str(&json!(m.receipt).to_string());
        out.push_str(",\"message\":");
        out.push_str(std::str::from_utf8(&m.payload).unwrap_or("null"));
        out.push_str(",\"attributes\":");
        out.push_str(std::str::from_utf8(&m.attributes).unwrap_or("{}"));
        out.push_str(&format!(
            ",\"receive_count\":{},\"sent_at\":{}}}",
            m.receive_count,
            json!(crate::time::rfc3339_ms(m.sent_at))
        ));
    }
    out.push_str("]}");
    ([(header::CONTENT_TYPE, "application/json")], out).into_response()
}

async fn receive(
    State(s): State<AppState>,
    Path(queue): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult {
    // An empty body means all defaults, as SQS's ReceiveMessage with no parameters.
    let req: ReceiveRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ReceiveRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed-json",
                format!("invalid JSON body: {e}"),
            )
        })?
    };
    let msgs = s.router.receive(&queue, req).await?;
    s.metrics
        .received
        .fetch_add(msgs.len() as u64, Ordering::Relaxed);
    Ok(render_received(&msgs))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckRequest {
    receipts: Vec<String>,
}

async fn ack(
    State(s): State<AppState>,
    Path(queue): Path<String>,
    ApiJson(req): ApiJson<AckRequest>,
) -> ApiResult {
    if req.receipts.is_empty() || req.receipts.len() > MAX_BATCH_ENTRIES {
        return Err(Problem::bad_request(format!(
            "receipts must hold 1 to {MAX_BATCH_ENTRIES} receipts"
        )));
    }
    let verdicts = s.router.ack(&queue, &req.receipts).await?;
    let mut acked = Vec::new();
    let mut failed = Vec::new();
    for (r, v) in req.receipts.iter().zip(verdicts) {
        match v {
            Ok(()) => acked.push(r.clone()),
            Err(e) => failed.push(e),
        }
    }
    s.metrics
        .acked
        .fetch_add(acked.len() as u64, Ordering::Relaxed);
    let Some(first) = failed.first() else {
        return Ok(Json(json!({ "acked": acked.len() })).into_response());
    };
    let (status, kind) = receipt_status(first);
    let detail = failed
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    let mut p = Problem::new(status, kind, detail);
    p.extra = Some(json!({ "acked": acked }));
    Err(p)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VisibilityRequest {
    receipt: String,
    timeout_s: u64,
}

async fn visibility(
    State(s): State<AppState>,
    Path(queue): Path<String>,
    ApiJson(req): ApiJson<VisibilityRequest>,
) -> ApiResult {
    s.router
        .change_visibility(&queue, &req.receipt, req.timeout_s)
        .await?;
    Ok(Json(json!({})).into_response())
}

async fn purge(State(s): State<AppState>, Path(queue): Path<String>) -> ApiResult {
    let n = s.router.purge(&queue).await?;
    Ok(Json(json!({ "purged": n })).into_response())
}

async fn redrive(State(s): State<AppState>, Path(queue): Path<String>) -> ApiResult {
    let n = s.router.redrive(&queue).await?;
    Ok(Json(json!({ "moved": n })).into_response())
}
