//! The server itself: liveness, readiness, metrics, the OpenAPI document, and trying a
//! filter policy without deploying it.

use super::error::{ApiJson, Problem};
use super::{ApiResult, AppState, Problems};
use crate::error::OpError;
use crate::runtime::FunctionState;
use crate::telemetry::exposition;
use crate::wire::{PolicyTestRequest, PolicyTestResult, Readiness};
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

// The routes outside `/v1`, which need no token.
handlers!(routes, documented: healthz, readyz, metrics, openapi);

// The `/v1` routes of the server itself.
handlers!(v1_routes, v1_documented: test_policy);

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
        content_type = "text/plain; version=0.0.4; charset=utf-8"), Problems))]
async fn metrics(State(s): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if s.token_on_metrics
        && let Some(refused) = s.refusal(&headers)
    {
        return refused;
    }
    let scrape = super::metrics::gather(&s).await;
    (
        [(header::CONTENT_TYPE, exposition::CONTENT_TYPE)],
        scrape.encode(),
    )
        .into_response()
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
