//! Functions: how they stand, and trial invocations.

use super::{FunctionSpec, SnsAttributes};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// A function as `GET /v1/functions/{function}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FunctionInfo {
    pub name: String,
    #[serde(flatten)]
    pub spec: FunctionSpec,
    pub state: FunctionState,
    /// Why its component did not load (state `failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How each of its sources is doing, on this router.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_status: Vec<SourceStatus>,
}

/// A source of a function at work: how many batches it runs at once and what it has done
/// since the source (re)started on this router.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SourceStatus {
    /// The queue consumed (a queue source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// The stream consumed (a stream source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<String>,
    /// The consumer group it reads as (a stream source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// A queue source's pollers, each receiving or invoking a batch (1 when idle, up to
    /// the source's `max_concurrency` under a backlog); a stream source's batches being
    /// invoked.
    pub concurrency: usize,
    /// The most it ran at once.
    pub peak_concurrency: usize,
    /// Times a batch waited for a slot of the function (a queue source's before it was
    /// received).
    pub throttles: u64,
    /// Batches invoked.
    pub batches: u64,
    /// Events in those batches.
    pub events: u64,
    /// Batches in which an event failed.
    pub failed_batches: u64,
    /// Time spent in those invocations, in milliseconds.
    pub invocation_ms: u64,
    /// Age of the oldest message or record of the latest batch when it was read, in
    /// milliseconds: how far behind the source is.
    pub backlog_age_ms: u64,
}

/// Where a function stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FunctionState {
    /// Its component is compiling; invocations wait, `invoke` answers 503.
    Loading,
    Ready,
    /// Its component did not load (see `error`); it stays so until a new module is put.
    Failed,
}

/// `GET /v1/functions`: every function's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FunctionList {
    pub functions: Vec<String>,
}

/// `POST /v1/functions/{function}/invoke` body: one event to run the function on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvokeRequest {
    /// The event's message: any JSON value.
    pub message: Value,
    /// The event's attributes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<super::Attributes>)]
    pub attributes: Option<Value>,
}

/// What a trial invocation did. What it published was not routed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InvokeResult {
    /// Whether the handler succeeded.
    pub ok: bool,
    /// Why it failed.
    pub error: Option<InvokeFailure>,
    /// Its log lines, in order.
    pub logs: Vec<LogLine>,
    /// What it published (kept only when it succeeded).
    pub published: Vec<Published>,
    /// Publishes discarded because it failed.
    pub discarded_publishes: usize,
    /// How long the invocation took, waiting for an instance included.
    pub duration_ms: f64,
}

/// Why an invocation failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InvokeFailure {
    pub message: String,
    /// Whether a delivery that failed so would be retried.
    pub retryable: bool,
}

/// A line a handler logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LogLine {
    /// `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// `log` (the `log` import), `stdout`, `stderr`, or `host`: the host about what the
    /// handler asked of it (an outbound request refused).
    pub source: String,
    pub message: String,
}

/// An event a handler published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Published {
    pub topic: String,
    /// The message (a JSON value; binary bodies in base64).
    pub message: Value,
    pub attributes: SnsAttributes,
    pub group_id: Option<String>,
    pub dedup_id: Option<String>,
}

/// A function's latest log lines, oldest first: what its invocations logged, and why
/// those that failed did (`GET /v1/functions/{function}/logs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FunctionLogs {
    pub logs: Vec<FunctionLog>,
}

/// One line of [`FunctionLogs`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FunctionLog {
    /// When the invocation ended (RFC 3339).
    pub at: String,
    /// `trace`, `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// `log`, `stdout`, `stderr`, or `host` for what the router says about the invocation.
    pub source: String,
    pub message: String,
    /// The event the invocation handled (none for a batch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}
