//! The server itself: liveness, readiness, metrics, the OpenAPI document, and trying a
//! filter policy without deploying it.

use super::error::{ApiJson, Problem};
use super::{ApiResult, AppState, Problems};
use crate::deliver::{Feed, SourceReading};
use crate::error::OpError;
use crate::runtime::FunctionState;
use crate::wire::{PolicyTestRequest, PolicyTestResult, Readiness};
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::atomic::Ordering;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The routes outside `/v1`, which need no token.
pub(super) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .routes(routes!(openapi))
}

/// The `/v1` routes of the server itself.
pub(super) fn v1_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(test_policy))
}

/// Liveness: the server answers.
#[utoipa::path(get, path = "/healthz", tag = "server", security(()),
    responses((status = 200, description = "The server is up.", body = String,
        content_type = "text/plain")))]
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: every function's component has loaded.
#[utoipa::path(get, path = "/readyz", tag = "server", security(()),
    responses(
        (status = 200, description = "Every function is ready.", body = Readiness),
        (status = 503, description = "Functions are loading, or failed to load.", body = Readiness)))]
async fn readyz(State(s): State<AppState>) -> Response {
    let mut readiness = Readiness {
        ready: true,
        loading: Vec::new(),
        failed: Default::default(),
    };
    for (name, state) in s.app.control.functions_not_ready() {
        readiness.ready = false;
        match state {
            FunctionState::Failed(reason) => {
                readiness.failed.insert(name, reason);
            }
            _ => readiness.loading.push(name),
        }
    }
    let status = if readiness.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness)).into_response()
}

/// Counters and gauges in the Prometheus text format. Open to all, unless the server was
/// started with `--token-metrics`.
#[utoipa::path(get, path = "/metrics", tag = "server",
    responses((status = 200, description = "The metrics.", body = String,
        content_type = "text/plain; version=0.0.4"), Problems))]
async fn metrics(State(s): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if s.token_on_metrics
        && let Some(refused) = s.refusal(&headers)
    {
        return refused;
    }
    let m = &s.metrics;
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, v: u64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
        ));
    };
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
        counter(name, help, v.load(Ordering::Relaxed));
    }
    let d = &s.app.delivery_metrics;
    for (name, help, v) in [
        (
            "switchyard_delivery_attempts_total",
            "Delivery attempts to webhook and function subscriptions",
            &d.attempts,
        ),
        (
            "switchyard_delivered_total",
            "Deliveries to webhook and function subscriptions that succeeded",
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
        (
            "switchyard_source_batches_total",
            "Batches a function's queue or stream source invoked it with",
            &d.source_batches,
        ),
        (
            "switchyard_source_failed_batches_total",
            "Source batches in which an event failed and is read again",
            &d.source_failures,
        ),
    ] {
        counter(name, help, v.load(Ordering::Relaxed));
    }
    source_metrics(&mut out, &s.app.control.all_source_readings());
    out.push_str(&format!(
        "# HELP switchyard_receives_waiting Queue receives long-polling for a message\n\
         # TYPE switchyard_receives_waiting gauge\nswitchyard_receives_waiting {}\n",
        s.app.queues.receives_waiting()
    ));
    let mut depth = String::new();
    for q in s.app.queues.names() {
        if let Ok(c) = s.app.queues.counts(&q).await {
            for (state, v) in [
                ("visible", c.visible),
                ("in_flight", c.in_flight),
                ("delayed", c.delayed),
            ] {
                depth.push_str(&format!(
                    "switchyard_queue_messages{{queue=\"{q}\",state=\"{state}\"}} {v}\n"
                ));
            }
        }
    }
    if !depth.is_empty() {
        out.push_str("# HELP switchyard_queue_messages Messages in a queue by state\n");
        out.push_str("# TYPE switchyard_queue_messages gauge\n");
        out.push_str(&depth);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// This document: the OpenAPI 3.1 description of every route.
#[utoipa::path(get, path = "/openapi.json", tag = "server", security(()),
    responses((status = 200, description = "The OpenAPI document.", body = Object)))]
async fn openapi(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        s.openapi_document(),
    )
        .into_response()
}

/// Does a filter policy match a message? For trying a policy before deploying it.
#[utoipa::path(post, path = "/v1/policies/test", tag = "policies",
    request_body = PolicyTestRequest,
    responses((status = 200, description = "Whether it matches.", body = PolicyTestResult),
        Problems))]
async fn test_policy(
    ApiJson(req): ApiJson<PolicyTestRequest>,
) -> ApiResult<Json<PolicyTestResult>> {
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
    let matches = policy_test::evaluate(&req.policy, scope, body, &attrs)
        .map_err(|e| Problem::new(StatusCode::BAD_REQUEST, "invalid-filter-policy", e))?;
    Ok(Json(PolicyTestResult { matches }))
}

/// The per-source families: one sample per function and what it consumes, labelled
/// `queue`, or `stream` and `group`.
fn source_metrics(out: &mut String, readings: &[(String, SourceReading)]) {
    if readings.is_empty() {
        return;
    }
    type Value = fn(&SourceReading) -> String;
    let families: [(&str, &str, &str, Value); 8] = [
        (
            "switchyard_source_concurrency",
            "gauge",
            "A queue source's pollers; a stream source's batches being invoked",
            |r| r.concurrency.to_string(),
        ),
        (
            "switchyard_source_peak_concurrency",
            "gauge",
            "The most a source ran at once since it started",
            |r| r.peak_concurrency.to_string(),
        ),
        (
            "switchyard_source_throttles_total",
            "counter",
            "Times a source's batch waited for a slot of its function",
            |r| r.throttles.to_string(),
        ),
        (
            "switchyard_source_invocations_total",
            "counter",
            "Batches a source invoked its function with",
            |r| r.batches.to_string(),
        ),
        (
            "switchyard_source_events_total",
            "counter",
            "Events in the batches a source invoked its function with",
            |r| r.events.to_string(),
        ),
        (
            "switchyard_source_failed_invocations_total",
            "counter",
            "A source's batches in which an event failed",
            |r| r.failed_batches.to_string(),
        ),
        (
            "switchyard_source_invocation_seconds_total",
            "counter",
            "Time a source's invocations took",
            |r| format!("{:.6}", r.invocation_time.as_secs_f64()),
        ),
        (
            "switchyard_source_backlog_age_seconds",
            "gauge",
            "Age of the oldest message or record of a source's latest batch when read",
            |r| format!("{:.3}", r.backlog_age.as_secs_f64()),
        ),
    ];
    for (name, kind, help, value) in families {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (function, r) in readings {
            let labels = match &r.feed {
                Feed::Queue(queue) => format!("function=\"{function}\",queue=\"{queue}\""),
                Feed::Stream { stream, group } => {
                    format!("function=\"{function}\",stream=\"{stream}\",group=\"{group}\"")
                }
            };
            out.push_str(&format!("{name}{{{labels}}} {}\n", value(r)));
        }
    }
}
