//! `/v1/functions`: WebAssembly functions, and trying one on an event.

use super::error::ApiJson;
use super::{ApiResult, AppState, FunctionPath, Problems, put_answer};
use crate::deliver::Feed;
use crate::error::OpError;
use crate::model::Kind;
use crate::runtime::{Body, FunctionState as LoadState, Invocation};
use crate::wire::{
    FunctionInfo, FunctionList, FunctionLog, FunctionLogs, FunctionSpec, FunctionState,
    InvokeFailure, InvokeRequest, InvokeResult, LogLine, Published, SourceStatus,
};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use serde_json::json;

handlers!(
    routes,
    documented:
        list_functions, get_function, put_function, delete_function, invoke, function_logs,
);

fn function_info(s: &AppState, name: &str) -> Result<FunctionInfo, OpError> {
    let not_found = || OpError::not_found(Kind::Function, name);
    let spec = s.app.control.function_spec(name).ok_or_else(not_found)?;
    let state = s.app.control.function_state(name).ok_or_else(not_found)?;
    let (state, error) = match state {
        LoadState::Loading => (FunctionState::Loading, None),
        LoadState::Ready => (FunctionState::Ready, None),
        LoadState::Failed(reason) => (FunctionState::Failed, Some(reason)),
    };
    let source_status = s
        .app
        .control
        .source_readings(name)
        .into_iter()
        .map(|r| {
            let (queue, stream, group) = match r.feed {
                Feed::Queue(queue) => (Some(queue), None, None),
                Feed::Stream { stream, group } => (None, Some(stream), Some(group)),
            };
            SourceStatus {
                queue,
                stream,
                group,
                concurrency: r.concurrency,
                peak_concurrency: r.peak_concurrency,
                throttles: r.throttles,
                batches: r.batches,
                events: r.events,
                failed_batches: r.failed_batches,
                invocation_ms: r.invocation_time.as_millis() as u64,
                backlog_age_ms: r.backlog_age.as_millis() as u64,
            }
        })
        .collect();
    Ok(FunctionInfo {
        name: name.to_string(),
        spec,
        state,
        error,
        source_status,
    })
}

/// List functions.
#[utoipa::path(get, path = "/v1/functions", tag = "functions",
    responses((status = 200, description = "Every function's name.", body = FunctionList),
        Problems))]
async fn list_functions(State(s): State<AppState>) -> Json<FunctionList> {
    Json(FunctionList {
        functions: s.app.control.function_names(),
    })
}

/// Get a function, and whether its component is loading, ready or failed.
#[utoipa::path(get, path = "/v1/functions/{function}", tag = "functions",
    params(FunctionPath),
    responses((status = 200, description = "The function.", body = FunctionInfo), Problems))]
async fn get_function(
    State(s): State<AppState>,
    Path(FunctionPath { function }): Path<FunctionPath>,
) -> ApiResult<Json<FunctionInfo>> {
    Ok(Json(function_info(&s, &function)?))
}

/// What a function's latest invocations logged (its last 200 lines), and why those that
/// failed did: deliveries, sources and trial invocations alike.
#[utoipa::path(get, path = "/v1/functions/{function}/logs", tag = "functions",
    params(FunctionPath),
    responses((status = 200, description = "Its latest log lines, oldest first.",
        body = FunctionLogs), Problems))]
async fn function_logs(
    State(s): State<AppState>,
    Path(FunctionPath { function }): Path<FunctionPath>,
) -> ApiResult<Json<FunctionLogs>> {
    if s.app.control.function_spec(&function).is_none() {
        return Err(OpError::not_found(Kind::Function, &function).into());
    }
    let logs = s
        .app
        .telemetry
        .functions
        .get(&function)
        .recent_logs
        .latest();
    Ok(Json(FunctionLogs {
        logs: logs
            .into_iter()
            .map(|l| FunctionLog {
                at: crate::time::rfc3339_ms(l.at_ms),
                level: l.level.to_string(),
                source: l.source.to_string(),
                message: l.message,
                message_id: l.event,
            })
            .collect(),
    }))
}

/// Register a function, or replace its module and settings; answered once its component
/// has compiled (400 with the reason if it does not).
#[utoipa::path(put, path = "/v1/functions/{function}", tag = "functions",
    params(FunctionPath), request_body = FunctionSpec,
    responses(
        (status = 200, description = "The function, replaced or as it was.", body = FunctionInfo),
        (status = 201, description = "The function, created.", body = FunctionInfo),
        Problems))]
async fn put_function(
    State(s): State<AppState>,
    Path(FunctionPath { function }): Path<FunctionPath>,
    ApiJson(spec): ApiJson<FunctionSpec>,
) -> ApiResult<Response> {
    let created = s.app.control.put_function(&function, spec).await?;
    Ok(put_answer(created, function_info(&s, &function)?))
}

/// Delete a function; invocations in flight finish.
#[utoipa::path(delete, path = "/v1/functions/{function}", tag = "functions",
    params(FunctionPath),
    responses((status = 204, description = "Deleted."), Problems))]
async fn delete_function(
    State(s): State<AppState>,
    Path(FunctionPath { function }): Path<FunctionPath>,
) -> ApiResult<StatusCode> {
    s.app.control.delete_function(&function).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Run a function on one event and show its result, logs and what it would publish
/// (not routed: a trial). 503 with `Retry-After` while its component is loading.
#[utoipa::path(post, path = "/v1/functions/{function}/invoke", tag = "functions",
    params(FunctionPath), request_body = InvokeRequest,
    responses((status = 200, description = "What the invocation did.", body = InvokeResult),
        Problems))]
async fn invoke(
    State(s): State<AppState>,
    Path(FunctionPath { function }): Path<FunctionPath>,
    ApiJson(req): ApiJson<InvokeRequest>,
) -> ApiResult<Json<InvokeResult>> {
    let inv = s
        .app
        .control
        .invoke(&function, &req.message, req.attributes.as_ref())
        .await?;
    Ok(Json(invoke_result(&inv)))
}

/// What a trial invocation did, as the API reports it.
fn invoke_result(inv: &Invocation) -> InvokeResult {
    let error = inv.outcome.as_ref().err().map(|e| InvokeFailure {
        message: e.to_string(),
        retryable: e.is_retryable(),
    });
    InvokeResult {
        ok: error.is_none(),
        error,
        logs: inv
            .logs
            .iter()
            .map(|l| LogLine {
                level: l.level.name().to_string(),
                source: l.source.name().to_string(),
                message: l.message.clone(),
            })
            .collect(),
        published: inv
            .published
            .iter()
            .map(|p| Published {
                topic: p.topic.clone(),
                message: match &p.body {
                    Body::Text(t) => serde_json::from_str(t).unwrap_or_else(|_| json!(t)),
                    Body::Bytes(b) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
                },
                attributes: serde_json::from_value(crate::publish::sns_attributes(&p.attributes))
                    .expect("SNS-form attributes read back"),
                group_id: p.group_id.clone(),
                dedup_id: p.dedup_id.clone(),
            })
            .collect(),
        discarded_publishes: inv.discarded_publishes,
        duration_ms: inv.duration.as_secs_f64() * 1000.0,
    }
}
