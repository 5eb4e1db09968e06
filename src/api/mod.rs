//! The HTTP API (`/v1`, JSON): thin handlers that parse, call the operations and render.
//!
//! `app` builds the whole `axum::Router`, so tests can drive it without a socket. Errors
//! are rendered by [`error::Problem`]; no handler formats an error itself.

pub mod error;

use crate::app::App;
use crate::backend::Received;
use crate::backend::StoredRecord;
use crate::error::OpError;
use crate::model::{FunctionSpec, GroupSpec, QueueSpec, StreamSpec, SubscriptionSpec, TopicSpec};
use crate::publish::PublishRequest;
use crate::queue::{ReceiveRequest, SendRequest};
use crate::runtime::FunctionState;
use crate::stream;
use crate::stream::{CheckpointRequest, PollRequest, PutRecord};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
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

/// What every handler shares. One `Arc`, because axum clones the state for each request
/// and each layer it passes.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub app: Arc<App>,
    pub metrics: Metrics,
    /// When set, every `/v1` call needs `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
}

impl AppState {
    pub fn new(app: Arc<App>, token: Option<String>) -> Self {
        Self(Arc::new(Shared {
            app,
            metrics: Metrics::default(),
            token,
        }))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

type ApiResult = Result<Response, Problem>;

pub fn app(state: AppState) -> Routes {
    let v1 = Routes::new()
        .route("/v1/topics", get(list_topics))
        .route(
            "/v1/topics/{topic}",
            get(get_topic).put(put_topic).delete(delete_topic),
        )
        .route("/v1/topics/{topic}/publish", post(publish))
        .route("/v1/topics/{topic}/publish-batch", post(publish_batch))
        .route("/v1/topics/{topic}/subscriptions", get(list_subscriptions))
        .route(
            "/v1/topics/{topic}/subscriptions/{name}",
            get(get_subscription)
                .put(put_subscription)
                .delete(delete_subscription),
        )
        .route("/v1/queues", get(list_queues))
        .route(
            "/v1/queues/{queue}",
            get(get_queue).put(put_queue).delete(delete_queue),
        )
        .route("/v1/queues/{queue}/messages", post(send))
        .route("/v1/queues/{queue}/receive", post(receive))
        .route("/v1/queues/{queue}/ack", post(ack))
        .route("/v1/queues/{queue}/visibility", post(visibility))
        .route("/v1/queues/{queue}/purge", post(purge))
        .route("/v1/queues/{queue}/redrive", post(redrive))
        .route("/v1/policies/test", post(test_policy))
        .route("/v1/functions", get(list_functions))
        .route(
            "/v1/functions/{function}",
            get(get_function).put(put_function).delete(delete_function),
        )
        .route("/v1/functions/{function}/invoke", post(invoke_function))
        .route("/v1/streams", get(list_streams))
        .route(
            "/v1/streams/{stream}",
            get(get_stream).put(put_stream).delete(delete_stream),
        )
        .route("/v1/streams/{stream}/records", post(put_records))
        .route("/v1/streams/{stream}/shards", get(list_shards))
        .route(
            "/v1/streams/{stream}/shards/{shard}/records",
            get(read_shard),
        )
        .route(
            "/v1/streams/{stream}/groups/{group}",
            get(get_group).put(put_group),
        )
        .route("/v1/streams/{stream}/groups/{group}/poll", post(poll))
        .route(
            "/v1/streams/{stream}/groups/{group}/checkpoint",
            post(checkpoint),
        );
    // Without a token there is nothing to check, and no layer to pass through.
    let v1 = if state.token.is_some() {
        v1.route_layer(middleware::from_fn_with_state(state.clone(), authorize))
    } else {
        v1
    };
    // Routes carry their `/v1` prefix themselves: a nested router would strip and re-match
    // the prefix on every request.
    v1.route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .fallback(|| async { Problem::new(StatusCode::NOT_FOUND, "not-found", "no such route") })
        .layer(middleware::map_response_with_state(
            state.clone(),
            count_errors,
        ))
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

async fn count_errors(State(s): State<AppState>, res: Response) -> Response {
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
    let d = &s.app.delivery_metrics;
    for (name, help, v) in [
        (
            "switchyard_delivery_attempts_total",
            "Webhook delivery attempts",
            &d.attempts,
        ),
        (
            "switchyard_delivered_total",
            "Webhook deliveries answered 2xx",
            &d.delivered,
        ),
        (
            "switchyard_delivery_retries_total",
            "Failed attempts scheduled for a retry",
            &d.retries,
        ),
        (
            "switchyard_dead_lettered_total",
            "Deliveries given up and moved to a dead-letter queue",
            &d.dead_lettered,
        ),
        (
            "switchyard_dropped_total",
            "Deliveries given up without a dead-letter queue",
            &d.dropped,
        ),
    ] {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
            v.load(Ordering::Relaxed)
        ));
    }
    for q in s.app.queues.names() {
        if let Ok(c) = s.app.queues.counts(&q).await {
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

/// The OpenAPI 3.1 document of this API (`tests/it/openapi.rs` checks it lists every route).
async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
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
    Json(json!({ "topics": s.app.control.topic_names() }))
}

fn topic_json(s: &AppState, name: &str) -> Result<Value, OpError> {
    let t = s.app.control.topic(name)?;
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
    let created = s.app.control.put_topic(&topic, spec).await?;
    Ok(created_or_ok(created, topic_json(&s, &topic)?))
}

async fn delete_topic(State(s): State<AppState>, Path(topic): Path<String>) -> ApiResult {
    s.app.control.delete_topic(&topic).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn publish(
    State(s): State<AppState>,
    Path(topic): Path<String>,
    ApiJson(req): ApiJson<PublishRequest>,
) -> ApiResult {
    let out = s.app.publisher.publish(&topic, req).await?;
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

fn batch_response<T>(
    results: Vec<(String, Result<T, OpError>)>,
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
    let results = s.app.publisher.publish_batch(&topic, batch.entries).await?;
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
    let t = s.app.control.topic(&topic)?;
    let subs = t
        .subscriptions
        .keys()
        .map(|name| subscription_json(&s, &topic, name, false))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(json!({ "subscriptions": subs })).into_response())
}

/// A subscription as the API shows it. An http endpoint's secret is shown only when
/// `reveal_secret` (in the answer to the `PUT` that created it).
fn subscription_json(
    s: &AppState,
    topic: &str,
    name: &str,
    reveal_secret: bool,
) -> Result<Value, OpError> {
    let t = s.app.control.topic(topic)?;
    let spec = t.subscriptions.get(name).ok_or_else(|| OpError::NotFound {
        kind: crate::model::Kind::Subscription,
        name: name.to_string(),
    })?;
    let mut v = serde_json::to_value(spec).expect("spec serializes");
    v["name"] = json!(name);
    v["topic"] = json!(topic);
    if !reveal_secret && let Some(http) = v["endpoint"].get_mut("http") {
        http["secret"] = json!("(set; shown only when the subscription was created)");
    }
    Ok(v)
}

async fn get_subscription(
    State(s): State<AppState>,
    Path((topic, name)): Path<(String, String)>,
) -> ApiResult {
    Ok(Json(subscription_json(&s, &topic, &name, false)?).into_response())
}

async fn put_subscription(
    State(s): State<AppState>,
    Path((topic, name)): Path<(String, String)>,
    ApiJson(spec): ApiJson<SubscriptionSpec>,
) -> ApiResult {
    let created = s.app.control.put_subscription(&topic, &name, spec).await?;
    Ok(created_or_ok(
        created,
        subscription_json(&s, &topic, &name, created)?,
    ))
}

async fn delete_subscription(
    State(s): State<AppState>,
    Path((topic, name)): Path<(String, String)>,
) -> ApiResult {
    s.app.control.delete_subscription(&topic, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- queues ---------------------------------------------------------------------------

async fn list_queues(State(s): State<AppState>) -> Json<Value> {
    Json(json!({ "queues": s.app.queues.names() }))
}

async fn queue_json(s: &AppState, name: &str) -> Result<Value, OpError> {
    let h = s.app.queues.queue(name)?;
    let c = s.app.queues.counts(name).await?;
    let mut v = serde_json::to_value(h.spec()).expect("spec serializes");
    v["name"] = json!(name);
    v["approximate_visible"] = json!(c.visible);
    v["approximate_in_flight"] = json!(c.in_flight);
    v["approximate_delayed"] = json!(c.delayed);
    Ok(v)
}

async fn get_queue(State(s): State<AppState>, Path(queue): Path<String>) -> ApiResult {
    Ok(Json(queue_json(&s, &queue).await?).into_response())
}

async fn put_queue(
    State(s): State<AppState>,
    Path(queue): Path<String>,
    ApiJson(spec): ApiJson<QueueSpec>,
) -> ApiResult {
    let created = s.app.control.put_queue(&queue, spec).await?;
    Ok(created_or_ok(created, queue_json(&s, &queue).await?))
}

async fn delete_queue(State(s): State<AppState>, Path(queue): Path<String>) -> ApiResult {
    s.app.control.delete_queue(&queue).await?;
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
        error::parse_json::<Batch<SendRequest>>(body.get().as_bytes()).map(SendBody::Batch)
    } else {
        error::parse_json::<SendRequest>(body.get().as_bytes()).map(SendBody::One)
    }?;
    match parsed {
        SendBody::One(req) => {
            let (_, r) = s
                .app
                .queues
                .send(&queue, vec![req])
                .await?
                .pop()
                .expect("one entry in, one result out");
            Ok(Json(json!({ "message_id": r? })).into_response())
        }
        SendBody::Batch(b) => {
            check_batch_len(b.entries.len())?;
            let results = s.app.queues.send(&queue, b.entries).await?;
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
        error::parse_json(&body)?
    };
    let msgs = s.app.queues.receive(&queue, req).await?;
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
    let verdicts = s.app.queues.ack(&queue, &req.receipts).await?;
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
    s.app
        .queues
        .change_visibility(&queue, &req.receipt, req.timeout_s)
        .await?;
    Ok(Json(json!({})).into_response())
}

async fn purge(State(s): State<AppState>, Path(queue): Path<String>) -> ApiResult {
    let n = s.app.queues.purge(&queue).await?;
    Ok(Json(json!({ "purged": n })).into_response())
}

async fn redrive(State(s): State<AppState>, Path(queue): Path<String>) -> ApiResult {
    let n = s.app.queues.redrive(&queue).await?;
    Ok(Json(json!({ "moved": n })).into_response())
}

// ---- streams --------------------------------------------------------------------------

async fn list_streams(State(s): State<AppState>) -> Json<Value> {
    Json(json!({ "streams": s.app.streams.names() }))
}

async fn stream_json(s: &AppState, name: &str) -> Result<Value, OpError> {
    let h = s.app.streams.stream(name)?;
    let mut v = serde_json::to_value(h.spec()).expect("spec serializes");
    v["name"] = json!(name);
    v["groups"] = json!(s.app.streams.group_names(name).await?);
    Ok(v)
}

async fn get_stream(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    Ok(Json(stream_json(&s, &name).await?).into_response())
}

async fn put_stream(
    State(s): State<AppState>,
    Path(name): Path<String>,
    ApiJson(spec): ApiJson<StreamSpec>,
) -> ApiResult {
    let created = s.app.control.put_stream(&name, spec).await?;
    Ok(created_or_ok(created, stream_json(&s, &name).await?))
}

async fn delete_stream(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    s.app.control.delete_stream(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutRecords {
    records: Vec<PutRecord>,
}

async fn put_records(
    State(s): State<AppState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<PutRecords>,
) -> ApiResult {
    let placed = s.app.streams.put_records(&name, req.records).await?;
    let records: Vec<Value> = placed
        .into_iter()
        .map(|(shard, seq)| json!({"shard_id": stream::shard_id(shard), "sequence": seq.to_string()}))
        .collect();
    Ok(Json(json!({ "records": records })).into_response())
}

async fn list_shards(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    let h = s.app.streams.stream(&name)?;
    let n = h.shard_count();
    let mut shards = Vec::with_capacity(n as usize);
    for i in 0..n {
        let (lo, hi) = stream::shard_range(i, n);
        let (first, end) = s.app.backend.bounds(&h, i).await.map_err(OpError::from)?;
        shards.push(json!({
            "shard_id": stream::shard_id(i),
            "hash_key_range": {"start": lo.to_string(), "end": hi.to_string()},
            "sequence_range": {"first": first.to_string(), "last": end.to_string()},
        }));
    }
    Ok(Json(json!({ "shards": shards })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadQuery {
    from: Option<String>,
    limit: Option<usize>,
}

/// Renders stream records; `data` is stored as JSON text and spliced in as it is.
fn render_records(records: &[StoredRecord], next: Option<&str>) -> Response {
    let mut out = String::with_capacity(
        64 + records
            .iter()
            .map(|r| r.data.len() + r.partition_key.len() + 96)
            .sum::<usize>(),
    );
    out.push_str("{\"records\":[");
    for (i, r) in records.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            "{{\"shard_id\":\"{}\",\"sequence\":\"{}\",\"partition_key\":{},\"arrived_at\":{},\"data\":",
            stream::shard_id(r.shard),
            r.sequence,
            json!(r.partition_key),
            r.arrived_at
        ));
        out.push_str(std::str::from_utf8(&r.data).unwrap_or("null"));
        out.push('}');
    }
    out.push(']');
    if let Some(next) = next {
        out.push_str(",\"next\":");
        out.push_str(&json!(next).to_string());
    }
    out.push('}');
    ([(header::CONTENT_TYPE, "application/json")], out).into_response()
}

async fn read_shard(
    State(s): State<AppState>,
    Path((name, shard)): Path<(String, String)>,
    query: Result<Query<ReadQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult {
    let Query(q) = query.map_err(|e| Problem::bad_request(format!("invalid query: {e}")))?;
    let from = q.from.as_deref().unwrap_or("trim_horizon");
    let page = s
        .app
        .streams
        .read_shard(&name, &shard, from, q.limit)
        .await?;
    Ok(render_records(&page.records, Some(&page.next.to_string())))
}

async fn group_json(s: &AppState, name: &str, group: &str) -> Result<Value, OpError> {
    let (spec, shards) = s.app.streams.describe_group(name, group).await?;
    let shards: Vec<Value> = shards
        .into_iter()
        .enumerate()
        .map(|(i, (lease, checkpoint))| {
            json!({
                "shard_id": stream::shard_id(i as u32),
                "member": lease.map(|l| l.member),
                "checkpoint": checkpoint.map(|c| c.to_string()),
            })
        })
        .collect();
    let mut v = serde_json::to_value(&spec).expect("spec serializes");
    v["name"] = json!(group);
    v["shards"] = json!(shards);
    Ok(v)
}

async fn get_group(
    State(s): State<AppState>,
    Path((name, group)): Path<(String, String)>,
) -> ApiResult {
    Ok(Json(group_json(&s, &name, &group).await?).into_response())
}

async fn put_group(
    State(s): State<AppState>,
    Path((name, group)): Path<(String, String)>,
    ApiJson(spec): ApiJson<GroupSpec>,
) -> ApiResult {
    let created = s.app.streams.put_group(&name, &group, spec).await?;
    Ok(created_or_ok(created, group_json(&s, &name, &group).await?))
}

async fn poll(
    State(s): State<AppState>,
    Path((name, group)): Path<(String, String)>,
    ApiJson(req): ApiJson<PollRequest>,
) -> ApiResult {
    let records = s.app.streams.poll(&name, &group, req).await?;
    Ok(render_records(&records, None))
}

async fn checkpoint(
    State(s): State<AppState>,
    Path((name, group)): Path<(String, String)>,
    ApiJson(req): ApiJson<CheckpointRequest>,
) -> ApiResult {
    s.app.streams.checkpoint(&name, &group, req).await?;
    Ok(Json(json!({})).into_response())
}

// ---- policies -------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyTest {
    policy: Value,
    #[serde(default)]
    scope: Option<String>,
    /// The message body (any JSON), for body scope.
    #[serde(default)]
    message: Option<Box<RawValue>>,
    /// Attributes in the publish forms, for attribute scope.
    #[serde(default)]
    attributes: Option<Value>,
}

async fn test_policy(ApiJson(req): ApiJson<PolicyTest>) -> ApiResult {
    use crate::policy_test;
    let scope = policy_test::parse_scope(req.scope.as_deref().unwrap_or("MessageAttributes"))
        .map_err(Problem::bad_request)?;
    let attrs =
        crate::model::attributes::from_api(req.attributes.as_ref()).map_err(OpError::from)?;
    let body = req
        .message
        .as_ref()
        .map(|m| m.get().as_bytes())
        .unwrap_or(b"");
    let m = policy_test::evaluate(&req.policy, scope, body, &attrs)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "invalid-filter-policy", e))?;
    Ok(Json(json!({ "match": m })).into_response())
}

// ---- functions ------------------------------------------------------------------------

async fn list_functions(State(s): State<AppState>) -> Json<Value> {
    Json(json!({ "functions": s.app.control.function_names() }))
}

fn function_json(s: &AppState, name: &str) -> Result<Value, OpError> {
    let not_found = || OpError::NotFound {
        kind: crate::model::Kind::Function,
        name: name.to_string(),
    };
    let spec = s.app.control.function_spec(name).ok_or_else(not_found)?;
    let state = s.app.control.function_state(name).ok_or_else(not_found)?;
    let mut v = serde_json::to_value(spec).expect("spec serializes");
    v["name"] = json!(name);
    v["state"] = json!(state.name());
    if let FunctionState::Failed(reason) = &state {
        v["error"] = json!(reason);
    }
    Ok(v)
}

/// Readiness: 200 once every function's component has loaded; 503 naming those still
/// loading and those that failed (with the reason) until then.
async fn readyz(State(s): State<AppState>) -> Response {
    let pending = s.app.control.functions_not_ready();
    if pending.is_empty() {
        return Json(json!({"ready": true})).into_response();
    }
    let mut loading = Vec::new();
    let mut failed = serde_json::Map::new();
    for (name, state) in pending {
        match state {
            FunctionState::Failed(reason) => {
                failed.insert(name, json!(reason));
            }
            _ => loading.push(name),
        }
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"ready": false, "loading": loading, "failed": failed})),
    )
        .into_response()
}

async fn get_function(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    Ok(Json(function_json(&s, &name)?).into_response())
}

async fn put_function(
    State(s): State<AppState>,
    Path(name): Path<String>,
    ApiJson(spec): ApiJson<FunctionSpec>,
) -> ApiResult {
    let created = s.app.control.put_function(&name, spec).await?;
    Ok(created_or_ok(created, function_json(&s, &name)?))
}

async fn delete_function(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult {
    s.app.control.delete_function(&name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InvokeRequest {
    message: Value,
    #[serde(default)]
    attributes: Option<Value>,
}

/// Runs a function on one event: `{"message": ANY, "attributes"?}` -> the handler's
/// result, its logs and what it published (not routed: this is a trial run).
async fn invoke_function(
    State(s): State<AppState>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<InvokeRequest>,
) -> ApiResult {
    let inv = s
        .app
        .control
        .invoke(&name, &req.message, req.attributes.as_ref())
        .await?;
    Ok(Json(invocation_json(&inv)).into_response())
}

/// What a trial invocation did: its outcome, logs and what it would have published.
fn invocation_json(inv: &crate::runtime::Invocation) -> Value {
    use crate::runtime::Body;
    use base64::Engine;
    let (ok, error) = match &inv.outcome {
        Ok(()) => (true, Value::Null),
        Err(e) => (
            false,
            json!({"message": e.to_string(), "retryable": e.is_retryable()}),
        ),
    };
    let published: Vec<Value> = inv
        .published
        .iter()
        .map(|p| {
            let message = match &p.body {
                Body::Text(t) => serde_json::from_str(t).unwrap_or_else(|_| json!(t)),
                Body::Bytes(b) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
            };
            json!({"topic": p.topic, "message": message,
                   "attributes": crate::publish::sns_attributes(&p.attributes),
                   "group_id": p.group_id, "dedup_id": p.dedup_id})
        })
        .collect();
    json!({
        "ok": ok,
        "error": error,
        "logs": inv.logs.iter().map(|l| json!({"level": format!("{:?}", l.level).to_lowercase(), "source": format!("{:?}", l.source).to_lowercase(), "message": l.message})).collect::<Vec<_>>(),
        "published": published,
        "discarded_publishes": inv.discarded_publishes,
        "duration_ms": inv.duration.as_secs_f64() * 1000.0,
    })
}
