//! SQS over its JSON protocol (`application/x-amz-json-1.0`, `X-Amz-Target:
//! AmazonSQS.ACTION`): queues, messages and their attributes as the SDKs send and read
//! them, answered by [`crate::queue`] and [`crate::control`].
//!
//! How SQS maps onto Switchyard's queues:
//! - a queue URL is `http://HOST/000000000000/NAME`; only its last segment is read;
//! - a message body is any text. It is stored as a JSON string holding that text, so it
//!   comes back byte for byte; a message sent through `/v1` whose message is not a JSON
//!   string is received here as its JSON text;
//! - message attributes are stored in SNS form (`Type`, `Value`, base64 for `Binary`), the
//!   form topics and filter policies use, and their MD5 is computed as SQS computes it;
//! - queue attributes are the queue's settings (`VisibilityTimeout` is
//!   `visibility_timeout_s`, …) and its message counts.
//!
//! Errors carry the JSON protocol's `__type` and the `x-amzn-query-error` header with the
//! older query protocol's code, which the SDKs report as the error code (so code that
//! checks `AWS.SimpleQueueService.NonExistentQueue` keeps working).

use super::{ACCOUNT_ID, Context, Door};
use crate::backend::{ReceiptError, Received, StorageError};
use crate::error::OpError;
use crate::model::{Kind, QueueSpec, RedrivePolicy};
use crate::queue::{MoveStatus, Sent};
use crate::wire::{ReceiveRequest, SendRequest};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use md5::{Digest, Md5};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

/// SQS batches hold at most ten entries.
const MAX_BATCH: usize = 10;

/// `ListQueues` answers at most this many URLs unless asked for fewer.
const MAX_LIST: usize = 1000;

/// An SQS error as the JSON protocol sends it.
#[derive(Debug)]
pub struct SqsError {
    status: StatusCode,
    /// The error shape's name in the SQS model: `__type` is `com.amazonaws.sqs#` + this.
    shape: &'static str,
    /// The query protocol's code, sent in `x-amzn-query-error`.
    query_code: &'static str,
    message: String,
}

impl SqsError {
    fn new(
        status: StatusCode,
        shape: &'static str,
        query_code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        SqsError {
            status,
            shape,
            query_code,
            message: message.into(),
        }
    }

    fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValue",
            "InvalidParameterValue",
            message,
        )
    }

    fn missing(parameter: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "MissingParameter",
            "MissingParameter",
            format!("The request must contain the parameter {parameter}."),
        )
    }

    fn no_such_queue() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "QueueDoesNotExist",
            "AWS.SimpleQueueService.NonExistentQueue",
            "The specified queue does not exist.",
        )
    }

    fn invalid_attribute_name(name: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidAttributeName",
            "InvalidAttributeName",
            format!("Unknown Attribute {name}."),
        )
    }

    fn invalid_attribute_value(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidAttributeValue",
            "InvalidAttributeValue",
            message,
        )
    }

    pub(super) fn signature(e: &super::sigv4::SigError) -> Self {
        Self::new(StatusCode::FORBIDDEN, e.code(), e.code(), e.to_string())
    }

    pub(super) fn unknown_target(target: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            "InvalidAction",
            format!("X-Amz-Target {target:?} names no operation this server offers"),
        )
    }

    /// Status, the query protocol's code, and the message.
    pub(super) fn parts(&self) -> (StatusCode, &'static str, &str) {
        (self.status, self.query_code, &self.message)
    }

    pub(super) fn into_response_json(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.shape, message = %self.message, "SQS request failed");
        }
        let body = json!({
            "__type": format!("com.amazonaws.sqs#{}", self.shape),
            "message": self.message,
        });
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/x-amz-json-1.0")],
            body.to_string(),
        )
            .into_response();
        if let Ok(v) = HeaderValue::from_str(&format!("{};Sender", self.query_code)) {
            response.headers_mut().insert("x-amzn-query-error", v);
        }
        response
    }
}

impl From<OpError> for SqsError {
    fn from(e: OpError) -> Self {
        let message = e.to_string();
        match e {
            OpError::NotFound {
                kind: Kind::Queue, ..
            } => SqsError::no_such_queue(),
            OpError::Storage(StorageError::NotFound {
                kind: Kind::Queue, ..
            }) => SqsError::no_such_queue(),
            OpError::InvalidSpec { .. } => SqsError::invalid_attribute_value(message),
            OpError::Receipt(ReceiptError::Invalid(_)) => SqsError::new(
                StatusCode::BAD_REQUEST,
                "ReceiptHandleIsInvalid",
                "ReceiptHandleIsInvalid",
                message,
            ),
            OpError::Receipt(ReceiptError::Expired(_)) => SqsError::new(
                StatusCode::BAD_REQUEST,
                "MessageNotInflight",
                "AWS.SimpleQueueService.MessageNotInflight",
                message,
            ),
            OpError::Storage(s) if s.is_retryable() => SqsError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "ServiceUnavailable",
                s.to_string(),
            ),
            OpError::Storage(s) => SqsError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "InternalError",
                s.to_string(),
            ),
            OpError::Conflict(_) => SqsError::new(
                StatusCode::BAD_REQUEST,
                "QueueNameExists",
                "QueueAlreadyExists",
                message,
            ),
            _ => SqsError::invalid_parameter(message),
        }
    }
}

pub(super) type SqsResult = Result<Value, SqsError>;

/// Answers one SQS JSON request.
pub(super) async fn json(s: &Door<'_>, cx: &Context, action: &str, body: &[u8]) -> Response {
    match run(s, cx, action, Input::Json(body)).await {
        Ok(body) => (
            [(header::CONTENT_TYPE, "application/x-amz-json-1.0")],
            body.to_string(),
        )
            .into_response(),
        Err(e) => e.into_response_json(),
    }
}

/// An action's request: the JSON protocol's body, or the same request already read into
/// a JSON value (from the query protocol's form).
pub(super) enum Input<'a> {
    Json(&'a [u8]),
    Value(Value),
}

/// Runs one action on its request.
pub(super) async fn run(s: &Door<'_>, cx: &Context, action: &str, body: Input<'_>) -> SqsResult {
    match action {
        "CreateQueue" => create_queue(s, cx, parse(body)?).await,
        "GetQueueUrl" => get_queue_url(s, cx, parse(body)?),
        "ListQueues" => list_queues(s, cx, parse(body)?),
        "DeleteQueue" => delete_queue(s, parse(body)?).await,
        "PurgeQueue" => purge_queue(s, parse(body)?).await,
        "GetQueueAttributes" => get_queue_attributes(s, cx, parse(body)?).await,
        "SetQueueAttributes" => set_queue_attributes(s, parse(body)?).await,
        "SendMessage" => send_message(s, parse(body)?).await,
        "SendMessageBatch" => send_message_batch(s, parse(body)?).await,
        "ReceiveMessage" => receive_message(s, parse(body)?).await,
        "DeleteMessage" => delete_message(s, parse(body)?).await,
        "DeleteMessageBatch" => delete_message_batch(s, parse(body)?).await,
        "ChangeMessageVisibility" => change_visibility(s, parse(body)?).await,
        "ChangeMessageVisibilityBatch" => change_visibility_batch(s, parse(body)?).await,
        "TagQueue" => tag_queue(s, parse(body)?).await,
        "UntagQueue" => untag_queue(s, parse(body)?).await,
        "ListQueueTags" => list_queue_tags(s, parse(body)?),
        "ListDeadLetterSourceQueues" => list_dead_letter_sources(s, cx, parse(body)?),
        "StartMessageMoveTask" => start_move_task(s, parse(body)?).await,
        "ListMessageMoveTasks" => list_move_tasks(s, cx, parse(body)?),
        "CancelMessageMoveTask" => cancel_move_task(s, parse(body)?),
        _ => Err(SqsError::new(
            StatusCode::BAD_REQUEST,
            "UnsupportedOperation",
            "AWS.SimpleQueueService.UnsupportedOperation",
            format!("SQS action {action:?} is not supported by this server"),
        )),
    }
}

/// Reads a request; an empty body is an empty object.
fn parse<T: DeserializeOwned>(input: Input<'_>) -> Result<T, SqsError> {
    let read = match input {
        Input::Json(body) if body.iter().all(u8::is_ascii_whitespace) => {
            serde_json::from_slice(b"{}")
        }
        Input::Json(body) => serde_json::from_slice(body),
        Input::Value(value) => serde_json::from_value(value),
    };
    read.map_err(|e| {
        SqsError::new(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValue",
            "InvalidParameterValue",
            format!("the request body is not a valid SQS request: {e}"),
        )
    })
}

fn queue_url(cx: &Context, name: &str) -> String {
    format!("http://{}/{ACCOUNT_ID}/{name}", cx.host)
}

fn queue_arn(cx: &Context, name: &str) -> String {
    crate::model::arn::queue_arn(&cx.region, name)
}

/// The queue a `QueueUrl` names: its last path segment.
fn queue_name(url: Option<String>) -> Result<String, SqsError> {
    let url = url.ok_or_else(|| SqsError::missing("QueueUrl"))?;
    let name = url.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    if name.is_empty() {
        return Err(SqsError::invalid_parameter(format!(
            "{url:?} is not a queue URL"
        )));
    }
    Ok(name.to_string())
}

/// The queue an ARN names (`arn:aws:sqs:REGION:ACCOUNT:NAME`).
fn queue_of_arn(arn: &str) -> Option<&str> {
    crate::model::arn::Arn::resource_of(arn, "sqs")
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct QueueNameRequest {
    queue_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct QueueUrlRequest {
    queue_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateQueue {
    queue_name: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    /// Lower-case in SQS's JSON model (`tags`); `Tags` from the query protocol's `Tag.N`.
    #[serde(default, rename = "tags", alias = "Tags")]
    tags: BTreeMap<String, String>,
}

async fn create_queue(s: &Door<'_>, cx: &Context, req: CreateQueue) -> SqsResult {
    let name = req
        .queue_name
        .ok_or_else(|| SqsError::missing("QueueName"))?;
    let mut spec = QueueSpec {
        fifo: name.ends_with(".fifo"),
        ..QueueSpec::default()
    };
    apply_attributes(&mut spec, &req.attributes, true)?;
    if let Ok(existing) = s.app.queues.queue(&name) {
        // SQS: creating a queue that exists is fine only with the same attributes; its
        // tags are not attributes, and are left as they are.
        let existing = existing.spec();
        spec.tags.clone_from(&existing.tags);
        if existing != spec {
            return Err(SqsError::new(
                StatusCode::BAD_REQUEST,
                "QueueNameExists",
                "QueueAlreadyExists",
                format!("A queue already exists with the name {name} and different attributes."),
            ));
        }
    } else {
        spec.tags = req.tags;
        s.app.control.put_queue(&name, spec).await?;
    }
    Ok(json!({ "QueueUrl": queue_url(cx, &name) }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagQueue {
    queue_url: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
}

async fn tag_queue(s: &Door<'_>, req: TagQueue) -> SqsResult {
    let name = queue_name(req.queue_url)?;
    let mut spec = s.app.queues.queue(&name)?.spec();
    spec.tags.extend(req.tags);
    s.app.control.put_queue(&name, spec).await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UntagQueue {
    queue_url: Option<String>,
    #[serde(default)]
    tag_keys: Vec<String>,
}

async fn untag_queue(s: &Door<'_>, req: UntagQueue) -> SqsResult {
    let name = queue_name(req.queue_url)?;
    let mut spec = s.app.queues.queue(&name)?.spec();
    for key in &req.tag_keys {
        spec.tags.remove(key);
    }
    s.app.control.put_queue(&name, spec).await?;
    Ok(json!({}))
}

fn list_queue_tags(s: &Door<'_>, req: QueueUrlRequest) -> SqsResult {
    let name = queue_name(req.queue_url)?;
    let tags = s.app.queues.queue(&name)?.spec().tags;
    if tags.is_empty() {
        return Ok(json!({}));
    }
    Ok(json!({ "Tags": tags }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListDeadLetterSources {
    queue_url: Option<String>,
    max_results: Option<usize>,
    next_token: Option<String>,
}

/// The queues whose redrive policy names this one as their dead-letter queue.
fn list_dead_letter_sources(s: &Door<'_>, cx: &Context, req: ListDeadLetterSources) -> SqsResult {
    let name = queue_name(req.queue_url)?;
    s.app.queues.queue(&name)?;
    let sources = s.app.queues.dead_letter_sources(&name).into_iter();
    let (urls, next) = page(cx, sources, req.max_results, req.next_token)?;
    // Lower-case in SQS's JSON model.
    let mut out = json!({ "queueUrls": urls });
    if let Some(token) = next {
        out["NextToken"] = json!(token);
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartMoveTask {
    source_arn: Option<String>,
    destination_arn: Option<String>,
    max_number_of_messages_per_second: Option<u32>,
}

/// The queue an ARN of a request names.
fn queue_of_member(member: &str, arn: Option<&str>) -> Result<String, SqsError> {
    let arn = arn.ok_or_else(|| SqsError::missing(member))?;
    queue_of_arn(arn).map(str::to_string).ok_or_else(|| {
        SqsError::invalid_parameter(format!("{member} {arn:?} is not an SQS queue ARN"))
    })
}

/// SQS's most messages a move task moves per second.
const MAX_MOVE_RATE: u32 = 500;

/// Starts moving a dead-letter queue's messages back, in the background.
async fn start_move_task(s: &Door<'_>, req: StartMoveTask) -> SqsResult {
    let source = queue_of_member("SourceArn", req.source_arn.as_deref())?;
    let destination = req
        .destination_arn
        .as_deref()
        .map(|arn| queue_of_member("DestinationArn", Some(arn)))
        .transpose()?;
    if let Some(rate) = req.max_number_of_messages_per_second
        && !(1..=MAX_MOVE_RATE).contains(&rate)
    {
        return Err(SqsError::invalid_parameter(format!(
            "MaxNumberOfMessagesPerSecond must be 1 to {MAX_MOVE_RATE}, got {rate}"
        )));
    }
    let task = s
        .app
        .queues
        .start_move_task(
            &source,
            destination.as_deref(),
            req.max_number_of_messages_per_second,
        )
        .await
        .map_err(move_task_error)?;
    Ok(json!({ "TaskHandle": task.handle }))
}

/// A move task's refusal: a conflict is SQS's `UnsupportedOperation`, an unknown task its
/// `ResourceNotFoundException`.
fn move_task_error(e: OpError) -> SqsError {
    match e {
        OpError::Conflict(m) | OpError::Invalid(m) => SqsError::new(
            StatusCode::BAD_REQUEST,
            "UnsupportedOperation",
            "AWS.SimpleQueueService.UnsupportedOperation",
            m,
        ),
        OpError::NotFound {
            kind: Kind::MoveTask,
            ..
        } => SqsError::new(
            StatusCode::BAD_REQUEST,
            "ResourceNotFoundException",
            "ResourceNotFoundException",
            "The resource that you specified for the TaskHandle parameter does not exist.",
        ),
        other => other.into(),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListMoveTasks {
    source_arn: Option<String>,
    max_results: Option<usize>,
}

/// The move tasks of a source queue, newest first.
fn list_move_tasks(s: &Door<'_>, cx: &Context, req: ListMoveTasks) -> SqsResult {
    let source_arn = req.source_arn.clone();
    let source = queue_of_member("SourceArn", req.source_arn.as_deref())?;
    s.app.queues.queue(&source)?;
    let max = req.max_results.unwrap_or(1);
    if !(1..=10).contains(&max) {
        return Err(SqsError::invalid_parameter(format!(
            "MaxResults must be 1 to 10, got {max}"
        )));
    }
    let results: Vec<Value> = s
        .app
        .queues
        .move_tasks(&source)
        .into_iter()
        .take(max)
        .map(|t| {
            let status = t.status();
            let mut entry = json!({
                "Status": status.as_str(),
                "SourceArn": source_arn.clone().unwrap_or_default(),
                "ApproximateNumberOfMessagesMoved": t.moved(),
                "ApproximateNumberOfMessagesToMove": t.to_move,
                "StartedTimestamp": t.started_at,
            });
            if status == MoveStatus::Running {
                entry["TaskHandle"] = json!(t.handle);
            }
            if let Some(d) = &t.destination {
                entry["DestinationArn"] = json!(crate::model::arn::queue_arn(&cx.region, d));
            }
            if let Some(rate) = t.max_per_second {
                entry["MaxNumberOfMessagesPerSecond"] = json!(rate);
            }
            if let MoveStatus::Failed(reason) = &status {
                entry["FailureReason"] = json!(reason);
            }
            entry
        })
        .collect();
    Ok(json!({ "Results": results }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CancelMoveTask {
    task_handle: Option<String>,
}

fn cancel_move_task(s: &Door<'_>, req: CancelMoveTask) -> SqsResult {
    let handle = req
        .task_handle
        .ok_or_else(|| SqsError::missing("TaskHandle"))?;
    let task = s
        .app
        .queues
        .cancel_move_task(&handle)
        .map_err(move_task_error)?;
    Ok(json!({ "ApproximateNumberOfMessagesMoved": task.moved() }))
}

/// One page of queue URLs from `names`, in name order after `next_token`, with the token
/// of the next page: given only when asked to page (`MaxResults`), as SQS does.
fn page(
    cx: &Context,
    names: impl Iterator<Item = String>,
    max_results: Option<usize>,
    next_token: Option<String>,
) -> Result<(Vec<String>, Option<String>), SqsError> {
    let limit = match max_results {
        None => MAX_LIST,
        Some(n @ 1..=MAX_LIST) => n,
        Some(n) => {
            return Err(SqsError::invalid_parameter(format!(
                "MaxResults must be between 1 and {MAX_LIST}, got {n}"
            )));
        }
    };
    let mut names: Vec<String> = names
        .filter(|n| next_token.as_ref().is_none_or(|after| n > after))
        .collect();
    names.sort();
    let more = names.len() > limit;
    names.truncate(limit);
    let urls = names.iter().map(|n| queue_url(cx, n)).collect();
    let next = (more && max_results.is_some())
        .then(|| names.pop())
        .flatten();
    Ok((urls, next))
}

fn get_queue_url(s: &Door<'_>, cx: &Context, req: QueueNameRequest) -> SqsResult {
    let name = req
        .queue_name
        .ok_or_else(|| SqsError::missing("QueueName"))?;
    s.app.queues.queue(&name)?;
    Ok(json!({ "QueueUrl": queue_url(cx, &name) }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListQueues {
    queue_name_prefix: Option<String>,
    max_results: Option<usize>,
    next_token: Option<String>,
}

fn list_queues(s: &Door<'_>, cx: &Context, req: ListQueues) -> SqsResult {
    let prefix = req.queue_name_prefix.unwrap_or_default();
    let names = s
        .app
        .queues
        .names()
        .into_iter()
        .filter(|n| n.starts_with(&prefix));
    let (urls, next) = page(cx, names, req.max_results, req.next_token)?;
    let mut out = Map::new();
    if !urls.is_empty() {
        out.insert("QueueUrls".into(), json!(urls));
    }
    if let Some(token) = next {
        out.insert("NextToken".into(), json!(token));
    }
    Ok(Value::Object(out))
}

async fn delete_queue(s: &Door<'_>, req: QueueUrlRequest) -> SqsResult {
    let name = queue_name(req.queue_url)?;
    s.app.control.delete_queue(&name).await?;
    Ok(json!({}))
}

async fn purge_queue(s: &Door<'_>, req: QueueUrlRequest) -> SqsResult {
    let name = queue_name(req.queue_url)?;
    s.app.queues.purge(&name).await?;
    Ok(json!({}))
}

/// Applies SQS queue attributes to a spec; `creating` allows what only a create may set.
fn apply_attributes(
    spec: &mut QueueSpec,
    attributes: &BTreeMap<String, String>,
    creating: bool,
) -> Result<(), SqsError> {
    for (name, value) in attributes {
        let number = || {
            value.trim().parse::<u64>().map_err(|_| {
                SqsError::invalid_attribute_value(format!(
                    "Invalid value for the parameter {name}: {value:?} is not a whole number."
                ))
            })
        };
        let flag = || match value.as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(SqsError::invalid_attribute_value(format!(
                "Invalid value for the parameter {name}: {value:?} is not true or false."
            ))),
        };
        match name.as_str() {
            "VisibilityTimeout" => spec.visibility_timeout_s = number()?,
            "DelaySeconds" => spec.delay_s = number()?,
            "MessageRetentionPeriod" => spec.retention_s = number()?,
            "MaximumMessageSize" => spec.max_message_bytes = number()? as usize,
            "ReceiveMessageWaitTimeSeconds" => spec.receive_wait_s = number()?,
            "ContentBasedDeduplication" => spec.content_based_dedup = flag()?,
            "FifoQueue" => {
                let fifo = flag()?;
                if !creating && fifo != spec.fifo {
                    return Err(SqsError::invalid_attribute_name(name));
                }
                spec.fifo = fifo;
            }
            "RedrivePolicy" => spec.redrive_policy = redrive_policy(value)?,
            // Encryption and access policies have no meaning for a local queue; SDKs and
            // infrastructure tools set them routinely, so they are accepted and ignored.
            "KmsMasterKeyId"
            | "KmsDataKeyReusePeriodSeconds"
            | "SqsManagedSseEnabled"
            | "Policy"
            | "RedriveAllowPolicy"
            | "DeduplicationScope"
            | "FifoThroughputLimit" => {}
            _ => return Err(SqsError::invalid_attribute_name(name)),
        }
    }
    Ok(())
}

/// `{"deadLetterTargetArn": ARN, "maxReceiveCount": N}` (N as a number or a string); an
/// empty value removes the policy.
fn redrive_policy(value: &str) -> Result<Option<RedrivePolicy>, SqsError> {
    if value.trim().is_empty() {
        return Ok(None);
    }
    let bad = || {
        SqsError::invalid_attribute_value(format!(
            "Value {value} for parameter RedrivePolicy is invalid. Reason: it must be \
             {{\"deadLetterTargetArn\": ARN, \"maxReceiveCount\": N}}."
        ))
    };
    let v: Value = serde_json::from_str(value).map_err(|_| bad())?;
    let arn = v["deadLetterTargetArn"].as_str().ok_or_else(bad)?;
    let dead_letter_queue = queue_of_arn(arn).ok_or_else(bad)?.to_string();
    let max_receive_count = match &v["maxReceiveCount"] {
        Value::Number(n) => n.as_u64(),
        Value::String(t) => t.parse().ok(),
        _ => None,
    }
    .and_then(|n| u32::try_from(n).ok())
    .ok_or_else(bad)?;
    Ok(Some(RedrivePolicy {
        dead_letter_queue,
        max_receive_count,
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetQueueAttributes {
    queue_url: Option<String>,
    #[serde(default)]
    attribute_names: Vec<String>,
}

async fn get_queue_attributes(s: &Door<'_>, cx: &Context, req: GetQueueAttributes) -> SqsResult {
    let name = queue_name(req.queue_url)?;
    let queue = s.app.queues.queue(&name)?;
    let spec = queue.spec();
    let counts = s.app.queues.counts(&name).await?;
    let mut all: Vec<(&str, String)> = vec![
        ("QueueArn", queue_arn(cx, &name)),
        ("ApproximateNumberOfMessages", counts.visible.to_string()),
        (
            "ApproximateNumberOfMessagesNotVisible",
            counts.in_flight.to_string(),
        ),
        (
            "ApproximateNumberOfMessagesDelayed",
            counts.delayed.to_string(),
        ),
        ("VisibilityTimeout", spec.visibility_timeout_s.to_string()),
        ("DelaySeconds", spec.delay_s.to_string()),
        ("MessageRetentionPeriod", spec.retention_s.to_string()),
        ("MaximumMessageSize", spec.max_message_bytes.to_string()),
        (
            "ReceiveMessageWaitTimeSeconds",
            spec.receive_wait_s.to_string(),
        ),
        ("SqsManagedSseEnabled", "false".into()),
    ];
    // Epoch seconds, as SQS writes them; unknown for a queue stored before they were kept.
    for (attribute, at) in [
        ("CreatedTimestamp", queue.created_at()),
        ("LastModifiedTimestamp", queue.modified_at()),
    ] {
        if at > 0 {
            all.push((attribute, (at / 1000).to_string()));
        }
    }
    if let Some(p) = &spec.redrive_policy {
        all.push((
            "RedrivePolicy",
            json!({
                "deadLetterTargetArn": queue_arn(cx, &p.dead_letter_queue),
                "maxReceiveCount": p.max_receive_count,
            })
            .to_string(),
        ));
    }
    if spec.fifo {
        all.push(("FifoQueue", "true".into()));
        all.push((
            "ContentBasedDeduplication",
            spec.content_based_dedup.to_string(),
        ));
    }
    let wanted = |attr: &str| req.attribute_names.iter().any(|n| n == "All" || n == attr);
    for n in &req.attribute_names {
        if n != "All" && !KNOWN_QUEUE_ATTRIBUTES.contains(&n.as_str()) {
            return Err(SqsError::invalid_attribute_name(n));
        }
    }
    let attributes: Map<String, Value> = all
        .into_iter()
        .filter(|(n, _)| wanted(n))
        .map(|(n, v)| (n.to_string(), Value::String(v)))
        .collect();
    if attributes.is_empty() {
        return Ok(json!({}));
    }
    Ok(json!({ "Attributes": attributes }))
}

/// Every queue attribute name SQS defines; asking for one this server does not track
/// (encryption, or the timestamps of a queue stored before they were kept) answers
/// without it rather than failing.
const KNOWN_QUEUE_ATTRIBUTES: &[&str] = &[
    "Policy",
    "VisibilityTimeout",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "CreatedTimestamp",
    "LastModifiedTimestamp",
    "QueueArn",
    "ApproximateNumberOfMessagesDelayed",
    "DelaySeconds",
    "ReceiveMessageWaitTimeSeconds",
    "RedrivePolicy",
    "FifoQueue",
    "ContentBasedDeduplication",
    "KmsMasterKeyId",
    "KmsDataKeyReusePeriodSeconds",
    "DeduplicationScope",
    "FifoThroughputLimit",
    "RedriveAllowPolicy",
    "SqsManagedSseEnabled",
];

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SetQueueAttributes {
    queue_url: Option<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

async fn set_queue_attributes(s: &Door<'_>, req: SetQueueAttributes) -> SqsResult {
    let name = queue_name(req.queue_url)?;
    let mut spec = s.app.queues.queue(&name)?.spec();
    apply_attributes(&mut spec, &req.attributes, false)?;
    s.app.control.put_queue(&name, spec).await?;
    Ok(json!({}))
}

/// A message attribute as SQS sends it.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MessageAttribute {
    data_type: Option<String>,
    string_value: Option<String>,
    /// Base64 in the JSON protocol.
    binary_value: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendMessage {
    queue_url: Option<String>,
    #[serde(flatten)]
    entry: SendEntry,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendEntry {
    id: Option<String>,
    message_body: Option<String>,
    delay_seconds: Option<u64>,
    #[serde(default)]
    message_attributes: BTreeMap<String, MessageAttribute>,
    message_group_id: Option<String>,
    message_deduplication_id: Option<String>,
}

/// The MD5s SQS answers a send with.
struct Digests {
    body: String,
    attributes: Option<String>,
}

/// A send entry as the queue operation takes it, and the MD5s of what it sends.
fn prepare(entry: SendEntry) -> Result<(SendRequest, Digests), SqsError> {
    let body = entry
        .message_body
        .ok_or_else(|| SqsError::missing("MessageBody"))?;
    if body.is_empty() {
        return Err(SqsError::invalid_parameter(
            "The request must contain a MessageBody of at least one character.",
        ));
    }
    let md5_body = crate::hex(&Md5::digest(body.as_bytes()));
    let mut attributes = Map::new();
    let mut for_md5 = Vec::with_capacity(entry.message_attributes.len());
    for (name, a) in entry.message_attributes {
        let data_type = a.data_type.ok_or_else(|| {
            SqsError::invalid_parameter(format!(
                "The message attribute '{name}' must contain a DataType."
            ))
        })?;
        let (value, raw) = if data_type.starts_with("Binary") {
            let text = a.binary_value.ok_or_else(|| {
                SqsError::invalid_parameter(format!(
                    "The message attribute '{name}' with type 'Binary' must use field 'Binary'."
                ))
            })?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(&text)
                .map_err(|_| {
                    SqsError::invalid_parameter(format!(
                        "The message attribute '{name}' has a BinaryValue that is not base64."
                    ))
                })?;
            (text, bytes)
        } else {
            let text = a.string_value.ok_or_else(|| {
                SqsError::invalid_parameter(format!(
                    "The message attribute '{name}' with type '{data_type}' must use field 'String'."
                ))
            })?;
            let bytes = text.clone().into_bytes();
            (text, bytes)
        };
        for_md5.push((name.clone(), data_type.clone(), raw));
        attributes.insert(name, json!({"Type": data_type, "Value": value}));
    }
    let md5_attributes = (!for_md5.is_empty()).then(|| attributes_md5(&for_md5));
    let mut request = SendRequest::new(Value::String(body));
    request.attributes = (!attributes.is_empty()).then_some(Value::Object(attributes));
    request.delay_s = entry.delay_seconds;
    request.group_id = entry.message_group_id;
    request.dedup_id = entry.message_deduplication_id;
    request.id = entry.id;
    Ok((
        request,
        Digests {
            body: md5_body,
            attributes: md5_attributes,
        },
    ))
}

/// MD5 of message attributes as SQS computes it: for each attribute in name order, its
/// name, its data type and its value, each preceded by its length as four big-endian
/// bytes, with a transport byte (1 for text, 2 for binary) before the value.
fn attributes_md5(attributes: &[(String, String, Vec<u8>)]) -> String {
    let mut sorted: Vec<&(String, String, Vec<u8>)> = attributes.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    fn field(md5: &mut Md5, bytes: &[u8]) {
        md5.update((bytes.len() as u32).to_be_bytes());
        md5.update(bytes);
    }
    let mut md5 = Md5::new();
    for (name, data_type, value) in sorted {
        field(&mut md5, name.as_bytes());
        field(&mut md5, data_type.as_bytes());
        let transport: u8 = if data_type.starts_with("Binary") {
            2
        } else {
            1
        };
        md5.update([transport]);
        field(&mut md5, value);
    }
    crate::hex(&md5.finalize())
}

fn send_result(id: Option<&str>, sent: &Sent, digests: &Digests) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(id) = id {
        out.insert("Id".into(), json!(id));
    }
    out.insert("MessageId".into(), json!(sent.message_id));
    if let Some(sequence) = sent.sequence {
        out.insert("SequenceNumber".into(), json!(sequence_number(sequence)));
    }
    out.insert("MD5OfMessageBody".into(), json!(digests.body));
    if let Some(md5) = &digests.attributes {
        out.insert("MD5OfMessageAttributes".into(), json!(md5));
    }
    out
}

async fn send_message(s: &Door<'_>, req: SendMessage) -> SqsResult {
    let name = queue_name(req.queue_url)?;
    let (request, digests) = prepare(req.entry)?;
    let mut results = s.app.queues.send(&name, vec![request]).await?;
    let (_, result) = results.pop().expect("one result per entry");
    let sent = result?;
    s.metrics.published.fetch_add(1, Ordering::Relaxed);
    Ok(Value::Object(send_result(None, &sent, &digests)))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SendMessageBatch {
    queue_url: Option<String>,
    entries: Option<Vec<SendEntry>>,
}

/// Checks a batch's size and entry ids as SQS does.
fn check_batch<'a>(ids: impl Iterator<Item = Option<&'a str>>, n: usize) -> Result<(), SqsError> {
    if n == 0 {
        return Err(SqsError::new(
            StatusCode::BAD_REQUEST,
            "EmptyBatchRequest",
            "AWS.SimpleQueueService.EmptyBatchRequest",
            "There should be at least one entry in the request.",
        ));
    }
    if n > MAX_BATCH {
        return Err(SqsError::new(
            StatusCode::BAD_REQUEST,
            "TooManyEntriesInBatchRequest",
            "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
            format!("Maximum number of entries per request are {MAX_BATCH}. You have sent {n}."),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for id in ids {
        let id = id.ok_or_else(|| SqsError::missing("Id"))?;
        let valid = !id.is_empty()
            && id.len() <= 80
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(SqsError::new(
                StatusCode::BAD_REQUEST,
                "InvalidBatchEntryId",
                "AWS.SimpleQueueService.InvalidBatchEntryId",
                format!(
                    "A batch entry id can only contain alphanumeric characters, hyphens and \
                     underscores. It can be at most 80 letters long; {id:?} is not."
                ),
            ));
        }
        if !seen.insert(id) {
            return Err(SqsError::new(
                StatusCode::BAD_REQUEST,
                "BatchEntryIdsNotDistinct",
                "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
                format!("Id {id} repeated."),
            ));
        }
    }
    Ok(())
}

fn batch_failure(id: &str, e: SqsError) -> Value {
    json!({
        "Id": id,
        "SenderFault": !e.status.is_server_error(),
        "Code": e.query_code,
        "Message": e.message,
    })
}

async fn send_message_batch(s: &Door<'_>, req: SendMessageBatch) -> SqsResult {
    let name = queue_name(req.queue_url)?;
    let entries = req.entries.unwrap_or_default();
    check_batch(entries.iter().map(|e| e.id.as_deref()), entries.len())?;
    s.app.queues.queue(&name)?;
    let mut successful = Vec::new();
    let mut failed = Vec::new();
    // The requests go to the queue; their ids and MD5s stay for the answer.
    let mut requests = Vec::new();
    let mut answers = Vec::new();
    for entry in entries {
        let id = entry.id.clone().expect("checked above");
        match prepare(entry) {
            Ok((request, digests)) => {
                requests.push(request);
                answers.push((id, digests));
            }
            Err(e) => failed.push(batch_failure(&id, e)),
        }
    }
    if !requests.is_empty() {
        let results = s.app.queues.send(&name, requests).await?;
        for ((id, digests), (_, result)) in answers.iter().zip(results) {
            match result {
                Ok(sent) => successful.push(Value::Object(send_result(Some(id), &sent, digests))),
                Err(e) => failed.push(batch_failure(id, e.into())),
            }
        }
        s.metrics
            .published
            .fetch_add(successful.len() as u64, Ordering::Relaxed);
    }
    Ok(json!({ "Successful": successful, "Failed": failed }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReceiveMessage {
    queue_url: Option<String>,
    max_number_of_messages: Option<usize>,
    wait_time_seconds: Option<u64>,
    visibility_timeout: Option<u64>,
    #[serde(default)]
    attribute_names: Vec<String>,
    #[serde(default)]
    message_system_attribute_names: Vec<String>,
    #[serde(default)]
    message_attribute_names: Vec<String>,
}

async fn receive_message(s: &Door<'_>, req: ReceiveMessage) -> SqsResult {
    let name = queue_name(req.queue_url)?;
    let request = ReceiveRequest {
        max_messages: Some(req.max_number_of_messages.unwrap_or(1)),
        wait_s: req.wait_time_seconds,
        visibility_timeout_s: req.visibility_timeout,
    };
    let received = s.app.queues.receive(&name, request).await?;
    s.metrics
        .received
        .fetch_add(received.len() as u64, Ordering::Relaxed);
    let system: Vec<&str> = req
        .attribute_names
        .iter()
        .chain(&req.message_system_attribute_names)
        .map(String::as_str)
        .collect();
    let messages: Vec<Value> = received
        .iter()
        .map(|m| render_message(m, &system, &req.message_attribute_names))
        .collect();
    if messages.is_empty() {
        return Ok(json!({}));
    }
    Ok(json!({ "Messages": messages }))
}

/// Whether a message attribute is asked for: by name, by `All` or `.*`, or by a
/// `prefix.*` pattern.
fn attribute_wanted(name: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|p| {
        p == "All"
            || p == ".*"
            || p == name
            || p.strip_suffix(".*").is_some_and(|prefix| {
                name.starts_with(prefix) && name[prefix.len()..].starts_with('.')
            })
    })
}

/// A FIFO sequence number as SQS writes them: decimal, 20 digits, so that their text
/// sorts as their numbers do.
fn sequence_number(sequence: u64) -> String {
    format!("{sequence:020}")
}

fn render_message(m: &Received, system: &[&str], wanted: &[String]) -> Value {
    let body = crate::queue::body_text(&m.payload);
    let mut out = Map::new();
    out.insert("MessageId".into(), json!(m.message_id));
    out.insert("ReceiptHandle".into(), json!(m.receipt));
    out.insert(
        "MD5OfBody".into(),
        json!(crate::hex(&Md5::digest(body.as_bytes()))),
    );
    out.insert("Body".into(), json!(body));
    let all = system.contains(&"All");
    let want = |n: &str| all || system.contains(&n);
    let mut attrs = Map::new();
    if want("SentTimestamp") {
        attrs.insert("SentTimestamp".into(), json!(m.sent_at.to_string()));
    }
    if want("ApproximateReceiveCount") {
        attrs.insert(
            "ApproximateReceiveCount".into(),
            json!(m.receive_count.to_string()),
        );
    }
    if want("ApproximateFirstReceiveTimestamp")
        && let Some(at) = m.first_received_at
    {
        attrs.insert(
            "ApproximateFirstReceiveTimestamp".into(),
            json!(at.to_string()),
        );
    }
    if want("SenderId") {
        attrs.insert("SenderId".into(), json!(ACCOUNT_ID));
    }
    if want("MessageDeduplicationId")
        && let Some(id) = &m.dedup_id
    {
        attrs.insert("MessageDeduplicationId".into(), json!(id));
    }
    if let Some(group) = &m.group {
        if want("MessageGroupId") {
            attrs.insert("MessageGroupId".into(), json!(group.as_ref()));
        }
        if want("SequenceNumber") {
            attrs.insert("SequenceNumber".into(), json!(sequence_number(m.sequence)));
        }
    }
    if !attrs.is_empty() {
        out.insert("Attributes".into(), Value::Object(attrs));
    }
    let stored: Map<String, Value> = serde_json::from_slice(&m.attributes).unwrap_or_default();
    let mut message_attributes = Map::new();
    let mut for_md5 = Vec::new();
    for (name, a) in stored {
        if !attribute_wanted(&name, wanted) {
            continue;
        }
        let data_type = a["Type"].as_str().unwrap_or("String").to_string();
        let value = a["Value"].as_str().unwrap_or_default().to_string();
        if data_type.starts_with("Binary") {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(&value)
                .unwrap_or_default();
            for_md5.push((name.clone(), data_type.clone(), bytes));
            message_attributes.insert(name, json!({"DataType": data_type, "BinaryValue": value}));
        } else {
            for_md5.push((name.clone(), data_type.clone(), value.clone().into_bytes()));
            message_attributes.insert(name, json!({"DataType": data_type, "StringValue": value}));
        }
    }
    if !message_attributes.is_empty() {
        out.insert(
            "MD5OfMessageAttributes".into(),
            json!(attributes_md5(&for_md5)),
        );
        out.insert(
            "MessageAttributes".into(),
            Value::Object(message_attributes),
        );
    }
    Value::Object(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteMessage {
    queue_url: Option<String>,
    receipt_handle: Option<String>,
}

/// SQS accepts a delete with a receipt from an earlier receive (the message may then stay
/// in the queue); only a receipt that is not one is refused.
fn deleted(verdict: Result<(), ReceiptError>) -> Result<(), SqsError> {
    match verdict {
        Ok(()) | Err(ReceiptError::Expired(_)) => Ok(()),
        Err(e) => Err(OpError::Receipt(e).into()),
    }
}

async fn delete_message(s: &Door<'_>, req: DeleteMessage) -> SqsResult {
    let name = queue_name(req.queue_url)?;
    let receipt = req
        .receipt_handle
        .ok_or_else(|| SqsError::missing("ReceiptHandle"))?;
    let mut verdicts = s.app.queues.ack(&name, &[receipt]).await?;
    deleted(verdicts.pop().expect("one verdict per receipt"))?;
    s.metrics.acked.fetch_add(1, Ordering::Relaxed);
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReceiptEntry {
    id: Option<String>,
    receipt_handle: Option<String>,
    visibility_timeout: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ReceiptBatch {
    queue_url: Option<String>,
    entries: Option<Vec<ReceiptEntry>>,
}

async fn delete_message_batch(s: &Door<'_>, req: ReceiptBatch) -> SqsResult {
    let name = queue_name(req.queue_url)?;
    let entries = req.entries.unwrap_or_default();
    check_batch(entries.iter().map(|e| e.id.as_deref()), entries.len())?;
    let mut successful = Vec::new();
    let mut failed = Vec::new();
    let mut ids = Vec::new();
    let mut receipts = Vec::new();
    for e in entries {
        let id = e.id.expect("checked above");
        match e.receipt_handle {
            Some(r) => {
                ids.push(id);
                receipts.push(r);
            }
            None => failed.push(batch_failure(&id, SqsError::missing("ReceiptHandle"))),
        }
    }
    let verdicts = if receipts.is_empty() {
        Vec::new()
    } else {
        s.app.queues.ack(&name, &receipts).await?
    };
    for (id, verdict) in ids.iter().zip(verdicts) {
        match deleted(verdict) {
            Ok(()) => successful.push(json!({ "Id": id })),
            Err(e) => failed.push(batch_failure(id, e)),
        }
    }
    s.metrics
        .acked
        .fetch_add(successful.len() as u64, Ordering::Relaxed);
    Ok(json!({ "Successful": successful, "Failed": failed }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ChangeVisibility {
    queue_url: Option<String>,
    receipt_handle: Option<String>,
    visibility_timeout: Option<u64>,
}

async fn change_visibility(s: &Door<'_>, req: ChangeVisibility) -> SqsResult {
    let name = queue_name(req.queue_url)?;
    let receipt = req
        .receipt_handle
        .ok_or_else(|| SqsError::missing("ReceiptHandle"))?;
    let timeout = req
        .visibility_timeout
        .ok_or_else(|| SqsError::missing("VisibilityTimeout"))?;
    s.app
        .queues
        .change_visibility(&name, &receipt, timeout)
        .await?;
    Ok(json!({}))
}

async fn change_visibility_batch(s: &Door<'_>, req: ReceiptBatch) -> SqsResult {
    let name = queue_name(req.queue_url)?;
    let entries = req.entries.unwrap_or_default();
    check_batch(entries.iter().map(|e| e.id.as_deref()), entries.len())?;
    s.app.queues.queue(&name)?;
    let mut successful = Vec::new();
    let mut failed = Vec::new();
    for e in entries {
        let id = e.id.expect("checked above");
        let outcome = match (e.receipt_handle, e.visibility_timeout) {
            (None, _) => Err(SqsError::missing("ReceiptHandle")),
            (_, None) => Err(SqsError::missing("VisibilityTimeout")),
            (Some(r), Some(t)) => s
                .app
                .queues
                .change_visibility(&name, &r, t)
                .await
                .map_err(SqsError::from),
        };
        match outcome {
            Ok(()) => successful.push(json!({ "Id": id })),
            Err(e) => failed.push(batch_failure(&id, e)),
        }
    }
    Ok(json!({ "Successful": successful, "Failed": failed }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_of_queues_is_in_name_order_with_a_token_only_when_paging() {
        let cx = Context {
            host: "h".into(),
            region: "us-east-1".into(),
        };
        let names = || ["c", "a", "d", "b"].map(String::from).into_iter();
        let url = |n: &str| format!("http://h/000000000000/{n}");
        let (urls, next) = page(&cx, names(), None, None).unwrap();
        assert_eq!(urls, ["a", "b", "c", "d"].map(url));
        assert_eq!(next, None);
        let (urls, next) = page(&cx, names(), Some(2), None).unwrap();
        assert_eq!(urls, ["a", "b"].map(url));
        assert_eq!(next.as_deref(), Some("b"));
        let (urls, next) = page(&cx, names(), Some(2), next).unwrap();
        assert_eq!(urls, ["c", "d"].map(url));
        assert_eq!(next, None);
        for bad in [0, MAX_LIST + 1] {
            assert!(page(&cx, names(), Some(bad), None).is_err());
        }
    }
}
