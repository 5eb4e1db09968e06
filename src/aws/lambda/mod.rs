//! Lambda over its REST protocol (JSON bodies under `/2015-03-31/`, and `/2019-09-25/`
//! for asynchronous invocations' settings): invoking functions, reading their
//! configuration, event source mappings, and event invoke configs ([`invoke_config`]),
//! answered by [`crate::control`] and [`crate::publish`].
//!
//! How Lambda maps onto Switchyard's functions:
//! - a function's ARN is `arn:aws:lambda:REGION:000000000000:function:NAME`; a request
//!   may name a function by its name, its ARN or a partial ARN, with no qualifier or
//!   `$LATEST` (functions have no versions);
//! - `Invoke` hands the payload to the handler as one event (text when it is UTF-8,
//!   bytes otherwise). A handler returns no value, so a successful invocation's payload
//!   is `null`; a failed one answers `X-Amz-Function-Error: Unhandled` and a payload
//!   naming the error, as Lambda does. What the handler published is published.
//!   `Event` invocations are stored before the 202 (its request id is the event's id)
//!   and run by the function's worker with Lambda's two retries (or as its event invoke
//!   config says), a restart included, their records sent to its destinations;
//!   `DryRun` checks that the function can be invoked;
//! - an event source mapping is one of the function's sources: an SQS queue ARN is a
//!   queue source, a Kinesis stream ARN a stream source read as consumer group
//!   `lambda-FUNCTION`. Its UUID is derived from the function and the source, so every
//!   router names it alike. Batch item failures are always reported per event, as
//!   Switchyard's handlers report them, so `FunctionResponseTypes` is
//!   `ReportBatchItemFailures` whatever was asked.
//!
//! Errors are Lambda's: the status, `x-amzn-ErrorType` and a JSON body with `Type` and
//! `message`.

mod invoke_config;

use super::{Context, Door};
use crate::error::OpError;
use crate::model::arn::{Arn, function_arn, queue_arn, stream_arn, topic_arn};
use crate::model::{
    Destination, FunctionSpec, Kind, MAX_PARALLELIZATION_FACTOR, MAX_RECORD_AGE_S,
    MAX_RETRY_ATTEMPTS, SourceSpec, StartPosition,
};
use crate::runtime::{Body, FunctionState, Invocation};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The API versions Lambda's paths start with: most operations', and the one of
/// asynchronous invocations' settings.
pub const PREFIX: &str = "/2015-03-31/";
pub const ASYNC_PREFIX: &str = "/2019-09-25/";

/// Whether `path` is one of Lambda's.
pub fn is_lambda_path(path: &str) -> bool {
    path.starts_with(PREFIX) || path.starts_with(ASYNC_PREFIX)
}

/// Largest payload of a synchronous invocation, and of an asynchronous one, as Lambda.
const MAX_SYNC_PAYLOAD: usize = 6 * 1024 * 1024;
const MAX_ASYNC_PAYLOAD: usize = 1024 * 1024;

/// The end of the log an invocation answers with `LogType: Tail`, as Lambda's.
const LOG_TAIL_BYTES: usize = 4096;

/// `ListFunctions` and `ListEventSourceMappings` answer this many unless asked for fewer.
const DEFAULT_PAGE: usize = 50;

/// A Lambda error.
#[derive(Debug)]
pub struct LambdaError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

type LambdaResult<T> = Result<T, LambdaError>;

impl LambdaError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        LambdaError {
            status,
            code,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValueException",
            message,
        )
    }

    fn function_not_found(cx: &Context, name: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            format!("Function not found: {}", function_arn(&cx.region, name)),
        )
    }

    fn mapping_not_found(uuid: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            format!(
                "The resource you requested does not exist. (Service: Lambda; event source mapping {uuid})"
            ),
        )
    }

    pub(super) fn signature(e: &super::sigv4::SigError) -> Self {
        Self::new(StatusCode::FORBIDDEN, e.code(), e.to_string())
    }

    fn from_op(cx: &Context, e: OpError) -> Self {
        let message = e.to_string();
        match e {
            OpError::NotFound {
                kind: Kind::Function,
                name,
            } => LambdaError::function_not_found(cx, &name),
            OpError::FunctionLoading { .. } => Self::new(
                StatusCode::CONFLICT,
                "ResourceConflictException",
                format!(
                    "The operation cannot be performed at this time. The function is currently in the following state: Pending ({message})"
                ),
            ),
            OpError::FunctionFailed { .. } => Self::new(
                StatusCode::CONFLICT,
                "ResourceConflictException",
                format!(
                    "The operation cannot be performed at this time. The function is currently in the following state: Failed ({message})"
                ),
            ),
            OpError::Storage(s) if s.is_retryable() => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceException",
                s.to_string(),
            ),
            OpError::Storage(s) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceException",
                s.to_string(),
            ),
            _ => LambdaError::invalid(message),
        }
    }

    pub(super) fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "Lambda request failed");
        }
        let body = serde_json::json!({"Type": "User", "message": self.message});
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
        response
            .headers_mut()
            .insert("x-amzn-errortype", HeaderValue::from_static(self.code));
        response
    }
}

/// A request to a Lambda path.
pub(super) struct Request<'a> {
    pub method: &'a str,
    /// The whole path, its version included, still percent-encoded.
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// Routes a request by its method and path.
pub(super) async fn serve(s: &Door<'_>, cx: &Context, request: Request<'_>) -> Response {
    let segments: Vec<String> = request
        .path
        .trim_end_matches('/')
        .split('/')
        .skip(1)
        .map(|seg| {
            percent_encoding::percent_decode_str(seg)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    const V2015: &str = "2015-03-31";
    const V2019: &str = "2019-09-25";
    let answer = match (request.method, segments.as_slice()) {
        ("POST", [V2015, "functions", f, "invocations"]) => invoke(s, cx, f, &request).await,
        ("GET", [V2015, "functions"]) => list_functions(s, cx, request.query),
        ("GET", [V2015, "functions", f]) => get_function(s, cx, f, true),
        ("GET", [V2015, "functions", f, "configuration"]) => get_function(s, cx, f, false),
        ("POST", [V2015, "event-source-mappings"]) => create_mapping(s, cx, request.body).await,
        ("GET", [V2015, "event-source-mappings"]) => list_mappings(s, cx, request.query),
        ("GET", [V2015, "event-source-mappings", uuid]) => {
            get_mapping(s, cx, uuid).map(|m| json(StatusCode::OK, &m))
        }
        ("DELETE", [V2015, "event-source-mappings", uuid]) => delete_mapping(s, cx, uuid).await,
        ("PUT", [V2015, "event-source-mappings", uuid]) => {
            update_mapping(s, cx, uuid, request.body).await
        }
        (method, [V2019, "functions", f, "event-invoke-config"]) => {
            invoke_config::serve(s, cx, method, f, request.query, request.body).await
        }
        ("GET", [V2019, "functions", f, "event-invoke-config", "list"]) => {
            invoke_config::list(s, cx, f)
        }
        (method, _) => Err(LambdaError::new(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            format!(
                "{method} {} is not a Lambda operation this server offers",
                request.path
            ),
        )),
    };
    answer.unwrap_or_else(LambdaError::into_response)
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(value).expect("plain data always serializes"),
    )
        .into_response()
}

/// The function a name, an ARN or a partial ARN names, with no qualifier or `$LATEST`.
fn function_name(given: &str) -> LambdaResult<&str> {
    let (name, qualifier) = match Arn::resource_of(given, "lambda") {
        Some(resource) => {
            let rest = resource.strip_prefix("function:").ok_or_else(|| {
                LambdaError::invalid(format!("{given:?} is not a Lambda function's ARN"))
            })?;
            match rest.split_once(':') {
                Some((name, q)) => (name, Some(q)),
                None => (rest, None),
            }
        }
        None => {
            // `ACCOUNT:function:NAME[:QUALIFIER]` or `NAME[:QUALIFIER]`.
            let rest = given
                .split_once(":function:")
                .map_or(given, |(_, rest)| rest);
            match rest.split_once(':') {
                Some((name, q)) => (name, Some(q)),
                None => (rest, None),
            }
        }
    };
    match qualifier {
        None | Some("$LATEST") if !name.is_empty() => Ok(name),
        None | Some("$LATEST") => Err(LambdaError::invalid("the function name is empty")),
        Some(q) => Err(LambdaError::invalid(format!(
            "qualifier {q:?}: functions here have no versions or aliases; use $LATEST or none"
        ))),
    }
}

/// Where a function stands, as Lambda's `State`, `StateReason` and `StateReasonCode`.
fn state_of(state: Option<FunctionState>) -> (&'static str, Option<String>, Option<&'static str>) {
    match state {
        Some(FunctionState::Ready) | None => ("Active", None, None),
        Some(FunctionState::Loading) => (
            "Pending",
            Some("The function's component is compiling".into()),
            Some("Creating"),
        ),
        Some(FunctionState::Failed(reason)) => ("Failed", Some(reason), Some("InvalidImage")),
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Environment {
    variables: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct FunctionConfiguration {
    function_name: String,
    function_arn: String,
    memory_size: u64,
    /// Seconds, rounded up.
    timeout: u64,
    code_sha256: String,
    version: &'static str,
    environment: Environment,
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    state_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state_reason_code: Option<&'static str>,
    last_update_status: &'static str,
}

fn configuration(s: &Door<'_>, cx: &Context, name: &str) -> LambdaResult<FunctionConfiguration> {
    let (spec, module_sha256) = s
        .app
        .control
        .function_spec_and_module(name)
        .ok_or_else(|| LambdaError::function_not_found(cx, name))?;
    let (state, state_reason, state_reason_code) = state_of(s.app.control.function_state(name));
    let FunctionSpec {
        timeout_ms,
        memory_mb,
        env,
        ..
    } = spec;
    Ok(FunctionConfiguration {
        function_name: name.to_string(),
        function_arn: function_arn(&cx.region, name),
        memory_size: memory_mb,
        timeout: timeout_ms.div_ceil(1000),
        code_sha256: hex_to_base64(&module_sha256),
        version: "$LATEST",
        environment: Environment { variables: env },
        state,
        state_reason,
        state_reason_code,
        last_update_status: "Successful",
    })
}

/// Lambda's `CodeSha256` is the digest in base64; Switchyard keeps it in hex.
fn hex_to_base64(hex: &str) -> String {
    let bytes: Vec<u8> = (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect();
    STANDARD.encode(bytes)
}

fn get_function(s: &Door<'_>, cx: &Context, given: &str, whole: bool) -> LambdaResult<Response> {
    let name = function_name(given)?;
    let configuration = configuration(s, cx, name)?;
    if !whole {
        return Ok(json(StatusCode::OK, &configuration));
    }
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Output {
        configuration: FunctionConfiguration,
    }
    Ok(json(StatusCode::OK, &Output { configuration }))
}

/// The query's `Marker` (an offset, as this server writes it) and `MaxItems`.
fn page_of(query: &str) -> LambdaResult<(usize, usize, BTreeMap<String, String>)> {
    let params: BTreeMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let start = match params.get("Marker") {
        Some(m) => m.parse().map_err(|_| {
            LambdaError::invalid(format!("Marker {m:?} is not one this server wrote"))
        })?,
        None => 0,
    };
    let max = match params.get("MaxItems") {
        Some(m) => m
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| LambdaError::invalid(format!("MaxItems {m:?} must be 1 to 10000")))?,
        None => DEFAULT_PAGE,
    };
    Ok((start, max, params))
}

fn list_functions(s: &Door<'_>, cx: &Context, query: &str) -> LambdaResult<Response> {
    let (start, max, _) = page_of(query)?;
    let names = s.app.control.function_names();
    let functions = names
        .iter()
        .skip(start)
        .take(max)
        // A function deleted since the names were read is left out.
        .filter_map(|name| configuration(s, cx, name).ok())
        .collect();
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Output {
        functions: Vec<FunctionConfiguration>,
        #[serde(skip_serializing_if = "Option::is_none")]
        next_marker: Option<String>,
    }
    Ok(json(
        StatusCode::OK,
        &Output {
            functions,
            next_marker: (names.len() > start + max).then(|| (start + max).to_string()),
        },
    ))
}

/// How an invocation is asked to run (`X-Amz-Invocation-Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InvocationType {
    RequestResponse,
    Event,
    DryRun,
}

async fn invoke(
    s: &Door<'_>,
    cx: &Context,
    given: &str,
    request: &Request<'_>,
) -> LambdaResult<Response> {
    let name = function_name(given)?;
    let header = |h: &str| request.headers.get(h).and_then(|v| v.to_str().ok());
    let kind = match header("x-amz-invocation-type") {
        None | Some("RequestResponse") => InvocationType::RequestResponse,
        Some("Event") => InvocationType::Event,
        Some("DryRun") => InvocationType::DryRun,
        Some(other) => {
            return Err(LambdaError::invalid(format!(
                "X-Amz-Invocation-Type {other:?} is not one of RequestResponse, Event, DryRun"
            )));
        }
    };
    let tail = match header("x-amz-log-type") {
        None | Some("None") => false,
        Some("Tail") => true,
        Some(other) => {
            return Err(LambdaError::invalid(format!(
                "X-Amz-Log-Type {other:?} is not one of None, Tail"
            )));
        }
    };
    let max = if kind == InvocationType::Event {
        MAX_ASYNC_PAYLOAD
    } else {
        MAX_SYNC_PAYLOAD
    };
    if request.body.len() > max {
        return Err(LambdaError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLargeException",
            format!(
                "Request must be smaller than {max} bytes for the {kind:?} invocation type; this one is {} bytes",
                request.body.len()
            ),
        ));
    }
    // Refuses a function that does not exist or cannot run yet, whatever the type.
    s.app
        .control
        .function(name)
        .map_err(|e| LambdaError::from_op(cx, e))?;
    match kind {
        InvocationType::DryRun => Ok(StatusCode::NO_CONTENT.into_response()),
        InvocationType::Event => {
            let id = s
                .app
                .control
                .invoke_later(name, request.body.to_vec(), &cx.region)
                .await
                .map_err(|e| LambdaError::from_op(cx, e))?;
            // The request id is the id of the event the function is handed.
            let id = HeaderValue::from_str(&id).expect("a UUID is a header value");
            Ok((StatusCode::ACCEPTED, [("x-amzn-requestid", id)]).into_response())
        }
        InvocationType::RequestResponse => {
            let body = Body::from_payload(request.body.to_vec());
            let inv = s
                .app
                .publisher
                .invoke(&s.app.control, name, body)
                .await
                .map_err(|e| LambdaError::from_op(cx, e))?;
            Ok(invocation_response(inv, tail))
        }
    }
}

/// A synchronous invocation's answer: its payload, whether the function failed, and
/// the end of its log when asked for.
fn invocation_response(inv: Invocation, tail: bool) -> Response {
    let log_tail = tail.then(|| STANDARD.encode(log_tail(&inv)));
    let error = inv.outcome.as_ref().err().map(|e| {
        serde_json::json!({
            "errorMessage": e.to_string(),
            "errorType": if e.is_retryable() { "RetryableError" } else { "FatalError" },
        })
    });
    let payload = error.clone().unwrap_or(serde_json::Value::Null);
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        payload.to_string(),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert(
        "x-amz-executed-version",
        HeaderValue::from_static("$LATEST"),
    );
    if error.is_some() {
        headers.insert(
            "x-amz-function-error",
            HeaderValue::from_static("Unhandled"),
        );
    }
    if let Some(tail) = log_tail.and_then(|t| HeaderValue::from_str(&t).ok()) {
        headers.insert("x-amz-log-result", tail);
    }
    response
}

/// The last [`LOG_TAIL_BYTES`] of an invocation's log, one line per entry, cut at a
/// character boundary.
fn log_tail(inv: &Invocation) -> String {
    let mut text = String::new();
    for line in &inv.logs {
        let level = format!("{:?}", line.level).to_uppercase();
        text.push_str(&format!("{level} {}\n", line.message));
    }
    let mut cut = text.len().saturating_sub(LOG_TAIL_BYTES);
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    text.split_off(cut)
}

/// An event source mapping as Lambda shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Mapping {
    #[serde(rename = "UUID")]
    uuid: String,
    event_source_arn: String,
    function_arn: String,
    batch_size: usize,
    maximum_batching_window_in_seconds: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    starting_position: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scaling_config: Option<ScalingConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parallelization_factor: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    maximum_retry_attempts: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    maximum_record_age_in_seconds: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bisect_batch_on_function_error: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    destination_config: Option<DestinationConfig>,
    function_response_types: Vec<&'static str>,
    state: &'static str,
    state_transition_reason: &'static str,
}

/// A source's UUID: derived from its function and what it reads, so that it is the same
/// on every router and after a restart.
fn mapping_uuid(function: &str, source: &SourceSpec) -> String {
    let key = match source {
        SourceSpec::Queue { queue, .. } => format!("{function}\nqueue\n{queue}"),
        SourceSpec::Stream { stream, group, .. } => {
            format!("{function}\nstream\n{stream}\n{group}")
        }
    };
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, key.as_bytes()).to_string()
}

fn mapping_of(cx: &Context, function: &str, source: &SourceSpec) -> Mapping {
    let mut mapping = base_mapping(cx, function, source);
    if let SourceSpec::Stream {
        parallelization_factor,
        maximum_retry_attempts,
        maximum_record_age_s,
        bisect_batch_on_error,
        on_failure,
        ..
    } = source
    {
        // Lambda's defaults, shown as Lambda shows them: -1 for "no limit".
        mapping.parallelization_factor = Some(parallelization_factor.unwrap_or(1));
        mapping.maximum_retry_attempts = Some(maximum_retry_attempts.map_or(-1, |n| n as i64));
        mapping.maximum_record_age_in_seconds = Some(maximum_record_age_s.map_or(-1, |n| n as i64));
        mapping.bisect_batch_on_function_error = Some(*bisect_batch_on_error);
        mapping.destination_config = Some(DestinationConfig {
            on_success: None,
            on_failure: Some(
                on_failure
                    .as_ref()
                    .map(|d| OnDestination::of(cx, d))
                    .unwrap_or_default(),
            ),
        });
    }
    mapping
}

fn base_mapping(cx: &Context, function: &str, source: &SourceSpec) -> Mapping {
    let (event_source_arn, batch_size, window_ms, starting_position) = match source {
        SourceSpec::Queue {
            queue,
            batch_size,
            batch_window_ms,
            ..
        } => (
            queue_arn(&cx.region, queue),
            *batch_size,
            *batch_window_ms,
            None,
        ),
        SourceSpec::Stream {
            stream,
            batch_size,
            batch_window_ms,
            starting_position,
            ..
        } => (
            stream_arn(&cx.region, stream),
            *batch_size,
            *batch_window_ms,
            Some(match starting_position {
                StartPosition::TrimHorizon => "TRIM_HORIZON",
                StartPosition::Latest => "LATEST",
            }),
        ),
    };
    Mapping {
        uuid: mapping_uuid(function, source),
        event_source_arn,
        function_arn: function_arn(&cx.region, function),
        batch_size,
        maximum_batching_window_in_seconds: window_ms / 1000,
        starting_position,
        scaling_config: match source {
            SourceSpec::Queue {
                max_concurrency: Some(n),
                ..
            } => Some(ScalingConfig {
                maximum_concurrency: Some(*n),
            }),
            _ => None,
        },
        parallelization_factor: None,
        maximum_retry_attempts: None,
        maximum_record_age_in_seconds: None,
        bisect_batch_on_function_error: None,
        destination_config: None,
        function_response_types: vec!["ReportBatchItemFailures"],
        state: "Enabled",
        state_transition_reason: "USER_INITIATED",
    }
}

/// Every mapping, by function name then source.
fn all_mappings(s: &Door<'_>, cx: &Context) -> Vec<(String, SourceSpec, Mapping)> {
    let mut all = Vec::new();
    for name in s.app.control.function_names() {
        let Some(spec) = s.app.control.function_spec(&name) else {
            continue;
        };
        for source in spec.sources {
            let mapping = mapping_of(cx, &name, &source);
            all.push((name.clone(), source, mapping));
        }
    }
    all
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateMappingInput {
    function_name: Option<String>,
    event_source_arn: Option<String>,
    batch_size: Option<usize>,
    maximum_batching_window_in_seconds: Option<u64>,
    starting_position: Option<String>,
    enabled: Option<bool>,
    scaling_config: Option<ScalingConfig>,
    #[serde(flatten)]
    kinesis: KinesisSettings,
    #[serde(default)]
    function_response_types: Vec<String>,
}

/// The settings only Kinesis mappings have, as CreateEventSourceMapping and
/// UpdateEventSourceMapping take them.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KinesisSettings {
    parallelization_factor: Option<usize>,
    maximum_retry_attempts: Option<i64>,
    maximum_record_age_in_seconds: Option<i64>,
    bisect_batch_on_function_error: Option<bool>,
    destination_config: Option<DestinationConfig>,
}

impl KinesisSettings {
    /// Whether any of them was given.
    fn any(&self) -> bool {
        self.parallelization_factor.is_some()
            || self.maximum_retry_attempts.is_some()
            || self.maximum_record_age_in_seconds.is_some()
            || self.bisect_batch_on_function_error.is_some()
            || self.destination_config.is_some()
    }

    /// The settings checked as Lambda checks them.
    fn checked(&self) -> LambdaResult<CheckedKinesis> {
        if self
            .destination_config
            .as_ref()
            .is_some_and(|c| c.on_success.is_some())
        {
            return Err(LambdaError::invalid(
                "DestinationConfig.OnSuccess is not supported for Kinesis event sources: a \
                 mapping sends only what it gives up, to OnFailure",
            ));
        }
        Ok(CheckedKinesis {
            factor: self
                .parallelization_factor
                .map(parallelization)
                .transpose()?,
            retries: retry_attempts(self.maximum_retry_attempts)?,
            age: record_age(self.maximum_record_age_in_seconds)?,
            on_failure: on_failure(self.destination_config.as_ref())?,
        })
    }
}

/// [`KinesisSettings`] as a stream source's settings; `None` where not given (or -1).
struct CheckedKinesis {
    factor: Option<usize>,
    retries: Option<u64>,
    age: Option<u64>,
    on_failure: Option<Destination>,
}

/// Where a stream mapping sends what it gives up, and where a function's asynchronous
/// invocations' records go.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DestinationConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    on_success: Option<OnDestination>,
    #[serde(skip_serializing_if = "Option::is_none")]
    on_failure: Option<OnDestination>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct OnDestination {
    #[serde(skip_serializing_if = "Option::is_none")]
    destination: Option<String>,
}

impl OnDestination {
    /// The ARN of `to`.
    fn of(cx: &Context, to: &Destination) -> Self {
        Self {
            destination: Some(match to {
                Destination::Queue { queue } => queue_arn(&cx.region, queue),
                Destination::Topic { topic } => topic_arn(&cx.region, topic),
            }),
        }
    }
}

/// `MaximumRetryAttempts`: -1 (the default) retries until the records expire.
fn retry_attempts(n: Option<i64>) -> LambdaResult<Option<u64>> {
    match n {
        None | Some(-1) => Ok(None),
        Some(n) if (0..=MAX_RETRY_ATTEMPTS as i64).contains(&n) => Ok(Some(n as u64)),
        Some(n) => Err(LambdaError::invalid(format!(
            "MaximumRetryAttempts {n} is not -1 or between 0 and {MAX_RETRY_ATTEMPTS}"
        ))),
    }
}

/// `MaximumRecordAgeInSeconds`: -1 (the default) keeps records however old.
fn record_age(n: Option<i64>) -> LambdaResult<Option<u64>> {
    const LAMBDA_MIN: i64 = 60;
    match n {
        None | Some(-1) => Ok(None),
        Some(n) if (LAMBDA_MIN..=MAX_RECORD_AGE_S as i64).contains(&n) => Ok(Some(n as u64)),
        Some(n) => Err(LambdaError::invalid(format!(
            "MaximumRecordAgeInSeconds {n} is not -1 or between {LAMBDA_MIN} and {MAX_RECORD_AGE_S}"
        ))),
    }
}

/// A stream mapping's on-failure destination: an SQS queue's or SNS topic's ARN.
fn on_failure(config: Option<&DestinationConfig>) -> LambdaResult<Option<Destination>> {
    destination(config.and_then(|c| c.on_failure.as_ref()), "OnFailure")
}

/// The destination an SQS queue's or SNS topic's ARN names; `field` is where it was given.
fn destination(given: Option<&OnDestination>, field: &str) -> LambdaResult<Option<Destination>> {
    let Some(arn) = given.and_then(|o| o.destination.as_deref()) else {
        return Ok(None);
    };
    match Arn::parse(arn) {
        Some(a) if a.service == "sqs" => Ok(Some(Destination::Queue {
            queue: a.resource.to_string(),
        })),
        Some(a) if a.service == "sns" => Ok(Some(Destination::Topic {
            topic: a.resource.to_string(),
        })),
        _ => Err(LambdaError::invalid(format!(
            "DestinationConfig.{field}.Destination {arn:?} is not an SQS queue's or SNS topic's ARN"
        ))),
    }
}

/// How many batches of an SQS source run at once. An empty one (no
/// `MaximumConcurrency`) removes the limit of the source, which then runs as many as the
/// function's concurrency allows.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct ScalingConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    maximum_concurrency: Option<usize>,
}

/// Lambda's bounds of `MaximumConcurrency`.
const SCALING_MIN: usize = 2;
const SCALING_MAX: usize = 1000;

const STREAM_ONLY: &str = "ParallelizationFactor, MaximumRetryAttempts, MaximumRecordAgeInSeconds, BisectBatchOnFunctionError and DestinationConfig are for Kinesis event sources; an SQS source scales with ScalingConfig and dead-letters with its queue's redrive policy";

/// A `ParallelizationFactor`, checked as Lambda does.
fn parallelization(n: usize) -> LambdaResult<usize> {
    if !(1..=MAX_PARALLELIZATION_FACTOR).contains(&n) {
        return Err(LambdaError::invalid(format!(
            "ParallelizationFactor {n} is not between 1 and {MAX_PARALLELIZATION_FACTOR}"
        )));
    }
    Ok(n)
}

/// The source's `max_concurrency` that `scaling` asks for, checked as Lambda does.
fn max_concurrency(scaling: &ScalingConfig) -> LambdaResult<Option<usize>> {
    match scaling.maximum_concurrency {
        Some(n) if !(SCALING_MIN..=SCALING_MAX).contains(&n) => Err(LambdaError::invalid(format!(
            "ScalingConfig.MaximumConcurrency {n} is not between {SCALING_MIN} and {SCALING_MAX}"
        ))),
        n => Ok(n),
    }
}

/// Refuses the mapping settings sources do not have here, saying so.
fn check_mapping_settings(enabled: Option<bool>, response_types: &[String]) -> LambdaResult<()> {
    if enabled == Some(false) {
        return Err(LambdaError::invalid(
            "a disabled event source mapping is not supported here: a source runs while it exists",
        ));
    }
    if let Some(t) = response_types
        .iter()
        .find(|t| *t != "ReportBatchItemFailures")
    {
        return Err(LambdaError::invalid(format!(
            "FunctionResponseTypes {t:?} is not one of [ReportBatchItemFailures]"
        )));
    }
    Ok(())
}

async fn create_mapping(s: &Door<'_>, cx: &Context, body: &[u8]) -> LambdaResult<Response> {
    let input: CreateMappingInput = serde_json::from_slice(body).map_err(|e| {
        LambdaError::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            format!("the request body is not a CreateEventSourceMapping request: {e}"),
        )
    })?;
    let given = input
        .function_name
        .ok_or_else(|| LambdaError::invalid("FunctionName is required"))?;
    let function = function_name(&given)?.to_string();
    let arn = input
        .event_source_arn
        .ok_or_else(|| LambdaError::invalid("EventSourceArn is required"))?;
    check_mapping_settings(input.enabled, &input.function_response_types)?;
    let source = match Arn::parse(&arn) {
        Some(a) if a.service == "sqs" => {
            if input.starting_position.is_some() {
                return Err(LambdaError::invalid(
                    "StartingPosition is for streams; an SQS source reads whatever is visible",
                ));
            }
            if input.kinesis.any() {
                return Err(LambdaError::invalid(STREAM_ONLY));
            }
            SourceSpec::Queue {
                queue: a.resource.to_string(),
                batch_size: input.batch_size.unwrap_or(10),
                batch_window_ms: input
                    .maximum_batching_window_in_seconds
                    .unwrap_or(0)
                    .saturating_mul(1000),
                max_concurrency: match &input.scaling_config {
                    Some(scaling) => max_concurrency(scaling)?,
                    None => None,
                },
            }
        }
        Some(a) if a.service == "kinesis" => {
            let stream = a.resource.strip_prefix("stream/").ok_or_else(|| {
                LambdaError::invalid(format!("{arn:?} is not a Kinesis stream's ARN"))
            })?;
            let starting_position = match input.starting_position.as_deref() {
                Some("TRIM_HORIZON") => StartPosition::TrimHorizon,
                Some("LATEST") => StartPosition::Latest,
                Some(other) => {
                    return Err(LambdaError::invalid(format!(
                        "StartingPosition {other:?} is not supported here: use TRIM_HORIZON or LATEST"
                    )));
                }
                None => {
                    return Err(LambdaError::invalid(
                        "StartingPosition is required for a Kinesis event source",
                    ));
                }
            };
            if input.scaling_config.is_some() {
                return Err(LambdaError::invalid(SCALING_IS_FOR_SQS));
            }
            let kinesis = input.kinesis.checked()?;
            SourceSpec::Stream {
                stream: stream.to_string(),
                group: format!("lambda-{function}"),
                batch_size: input.batch_size.unwrap_or(100),
                starting_position,
                batch_window_ms: input
                    .maximum_batching_window_in_seconds
                    .unwrap_or(0)
                    .saturating_mul(1000),
                parallelization_factor: kinesis.factor,
                maximum_retry_attempts: kinesis.retries,
                maximum_record_age_s: kinesis.age,
                bisect_batch_on_error: input
                    .kinesis
                    .bisect_batch_on_function_error
                    .unwrap_or(false),
                on_failure: kinesis.on_failure,
            }
        }
        _ => {
            return Err(LambdaError::invalid(format!(
                "EventSourceArn {arn:?} is neither an SQS queue's nor a Kinesis stream's ARN"
            )));
        }
    };
    let uuid = mapping_uuid(&function, &source);
    let mapping = mapping_of(cx, &function, &source);
    s.app
        .control
        .change_function(&function, |spec| {
            let sources = &mut spec.sources;
            if sources.iter().any(|s| mapping_uuid(&function, s) == uuid) {
                return Err(OpError::Conflict(format!(
                    "An event source mapping with event source ({arn}) and function ({function}) already exists. Please update or delete the existing mapping with UUID {uuid}"
                )));
            }
            sources.push(source);
            Ok(())
        })
        .await
        .map_err(|e| match e {
            OpError::Conflict(m) => {
                LambdaError::new(StatusCode::CONFLICT, "ResourceConflictException", m)
            }
            other => LambdaError::from_op(cx, other),
        })?;
    Ok(json(StatusCode::ACCEPTED, &mapping))
}

fn list_mappings(s: &Door<'_>, cx: &Context, query: &str) -> LambdaResult<Response> {
    let (start, max, params) = page_of(query)?;
    let function = params
        .get("FunctionName")
        .map(|f| function_name(f).map(str::to_string))
        .transpose()?;
    let source = params.get("EventSourceArn");
    let matching: Vec<Mapping> = all_mappings(s, cx)
        .into_iter()
        .filter(|(name, _, m)| {
            function.as_ref().is_none_or(|f| f == name)
                && source.is_none_or(|arn| *arn == m.event_source_arn)
        })
        .map(|(_, _, m)| m)
        .collect();
    #[derive(Serialize)]
    #[serde(rename_all = "PascalCase")]
    struct Output {
        event_source_mappings: Vec<Mapping>,
        #[serde(skip_serializing_if = "Option::is_none")]
        next_marker: Option<String>,
    }
    Ok(json(
        StatusCode::OK,
        &Output {
            next_marker: (matching.len() > start + max).then(|| (start + max).to_string()),
            event_source_mappings: matching.into_iter().skip(start).take(max).collect(),
        },
    ))
}

fn get_mapping(s: &Door<'_>, cx: &Context, uuid: &str) -> LambdaResult<Mapping> {
    all_mappings(s, cx)
        .into_iter()
        .find(|(_, _, m)| m.uuid == uuid)
        .map(|(_, _, m)| m)
        .ok_or_else(|| LambdaError::mapping_not_found(uuid))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateMappingInput {
    function_name: Option<String>,
    batch_size: Option<usize>,
    maximum_batching_window_in_seconds: Option<u64>,
    enabled: Option<bool>,
    scaling_config: Option<ScalingConfig>,
    #[serde(flatten)]
    kinesis: KinesisSettings,
    function_response_types: Option<Vec<String>>,
}

const SCALING_IS_FOR_SQS: &str =
    "ScalingConfig is for SQS event sources; a stream source runs one batch per shard";

/// Changes a mapping's batching; what it reads and which function it invokes stay.
async fn update_mapping(
    s: &Door<'_>,
    cx: &Context,
    uuid: &str,
    body: &[u8],
) -> LambdaResult<Response> {
    let input: UpdateMappingInput = serde_json::from_slice(body).map_err(|e| {
        LambdaError::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            format!("the request body is not an UpdateEventSourceMapping request: {e}"),
        )
    })?;
    let (function, _, _) = all_mappings(s, cx)
        .into_iter()
        .find(|(_, _, m)| m.uuid == uuid)
        .ok_or_else(|| LambdaError::mapping_not_found(uuid))?;
    if let Some(given) = &input.function_name
        && function_name(given)? != function
    {
        return Err(LambdaError::invalid(
            "a mapping's function cannot change here: delete it and create one for the other function",
        ));
    }
    check_mapping_settings(
        input.enabled,
        input.function_response_types.as_deref().unwrap_or_default(),
    )?;
    let scaling = match &input.scaling_config {
        Some(scaling) => Some(max_concurrency(scaling)?),
        None => None,
    };
    let kinesis = input.kinesis.checked()?;
    let changed = s
        .app
        .control
        .change_function(&function, |spec| {
            let sources = &mut spec.sources;
            let source = sources
                .iter_mut()
                .find(|s| mapping_uuid(&function, s) == uuid)
                .ok_or_else(|| OpError::not_found(Kind::Subscription, uuid))?;
            match source {
                SourceSpec::Queue {
                    batch_size,
                    batch_window_ms,
                    max_concurrency,
                    ..
                } => {
                    if let Some(n) = input.batch_size {
                        *batch_size = n;
                    }
                    if let Some(w) = input.maximum_batching_window_in_seconds {
                        *batch_window_ms = w.saturating_mul(1000);
                    }
                    if let Some(n) = scaling {
                        *max_concurrency = n;
                    }
                    if input.kinesis.any() {
                        return Err(OpError::Invalid(STREAM_ONLY.into()));
                    }
                }
                SourceSpec::Stream {
                    batch_size,
                    batch_window_ms,
                    parallelization_factor,
                    maximum_retry_attempts,
                    maximum_record_age_s,
                    bisect_batch_on_error,
                    on_failure,
                    ..
                } => {
                    if scaling.is_some() {
                        return Err(OpError::Invalid(SCALING_IS_FOR_SQS.into()));
                    }
                    if let Some(n) = kinesis.factor {
                        *parallelization_factor = Some(n);
                    }
                    if input.kinesis.maximum_retry_attempts.is_some() {
                        *maximum_retry_attempts = kinesis.retries;
                    }
                    if input.kinesis.maximum_record_age_in_seconds.is_some() {
                        *maximum_record_age_s = kinesis.age;
                    }
                    if let Some(b) = input.kinesis.bisect_batch_on_function_error {
                        *bisect_batch_on_error = b;
                    }
                    if input.kinesis.destination_config.is_some() {
                        *on_failure = kinesis.on_failure.clone();
                    }
                    if let Some(w) = input.maximum_batching_window_in_seconds {
                        *batch_window_ms = w.saturating_mul(1000);
                    }
                    if let Some(n) = input.batch_size {
                        *batch_size = n;
                    }
                }
            }
            Ok(source.clone())
        })
        .await
        .map_err(|e| match e {
            OpError::NotFound {
                kind: Kind::Subscription,
                ..
            } => LambdaError::mapping_not_found(uuid),
            other => LambdaError::from_op(cx, other),
        })?;
    Ok(json(
        StatusCode::ACCEPTED,
        &mapping_of(cx, &function, &changed),
    ))
}

async fn delete_mapping(s: &Door<'_>, cx: &Context, uuid: &str) -> LambdaResult<Response> {
    let (function, _, mut mapping) = all_mappings(s, cx)
        .into_iter()
        .find(|(_, _, m)| m.uuid == uuid)
        .ok_or_else(|| LambdaError::mapping_not_found(uuid))?;
    let removed = s
        .app
        .control
        .change_function(&function, |spec| {
            let sources = &mut spec.sources;
            let before = sources.len();
            sources.retain(|s| mapping_uuid(&function, s) != uuid);
            Ok(sources.len() != before)
        })
        .await
        .map_err(|e| LambdaError::from_op(cx, e))?;
    if !removed {
        return Err(LambdaError::mapping_not_found(uuid));
    }
    mapping.state = "Deleting";
    Ok(json(StatusCode::ACCEPTED, &mapping))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_function_is_named_by_name_or_arn() {
        assert_eq!(function_name("f").unwrap(), "f");
        assert_eq!(function_name("f:$LATEST").unwrap(), "f");
        assert_eq!(
            function_name("arn:aws:lambda:eu-west-1:000000000000:function:f").unwrap(),
            "f"
        );
        assert_eq!(
            function_name("arn:aws:lambda:eu-west-1:000000000000:function:f:$LATEST").unwrap(),
            "f"
        );
        assert_eq!(function_name("000000000000:function:f").unwrap(), "f");
        assert!(function_name("f:2").is_err());
        assert!(function_name("arn:aws:lambda:r:0:layer:x").is_err());
        assert!(function_name("").is_err());
    }

    #[test]
    fn maximum_concurrency_is_checked_as_lambda_does() {
        let asks = |n| {
            max_concurrency(&ScalingConfig {
                maximum_concurrency: n,
            })
        };
        assert_eq!(asks(None).unwrap(), None);
        assert_eq!(asks(Some(2)).unwrap(), Some(2));
        assert_eq!(asks(Some(1000)).unwrap(), Some(1000));
        for n in [0, 1, 1001] {
            let e = asks(Some(n)).unwrap_err();
            assert!(
                e.message.contains("MaximumConcurrency"),
                "{n}: {}",
                e.message
            );
        }
    }

    #[test]
    fn a_mapping_keeps_its_uuid_and_tells_sources_apart() {
        let queue = |q: &str| SourceSpec::Queue {
            queue: q.into(),
            batch_size: 10,
            batch_window_ms: 0,
            max_concurrency: None,
        };
        let resized = SourceSpec::Queue {
            queue: "jobs".into(),
            batch_size: 5,
            batch_window_ms: 0,
            max_concurrency: Some(4),
        };
        assert_eq!(
            mapping_uuid("f", &queue("jobs")),
            mapping_uuid("f", &resized)
        );
        assert_ne!(
            mapping_uuid("f", &queue("jobs")),
            mapping_uuid("g", &queue("jobs"))
        );
        assert_ne!(
            mapping_uuid("f", &queue("jobs")),
            mapping_uuid("f", &queue("other"))
        );
    }

    #[test]
    fn the_code_digest_is_base64() {
        assert_eq!(hex_to_base64("00ff10"), "AP8Q");
    }
}
