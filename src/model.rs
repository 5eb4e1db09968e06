//! The resources a user declares (topics, queues, subscriptions) as plain data.
//!
//! These types are the one definition shared by the HTTP API (`PUT` bodies), the config
//! file and what is stored in the backend's metadata, so both ways of creating a resource
//! create the same thing. Each spec parses with serde (`deny_unknown_fields`) and is then
//! checked by its `validate`, which reports every problem at once as [`FieldError`]s; nothing
//! here does I/O.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Longest resource name. Short enough to keep storage keys small, long enough for
/// descriptive names (SQS allows 80).
pub const MAX_NAME_LEN: usize = 80;

/// Default and maximum size of one message body, as SNS and SQS (256 KiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// SQS limits, in seconds.
pub const MAX_VISIBILITY_TIMEOUT_S: u64 = 12 * 60 * 60;
pub const MAX_DELAY_S: u64 = 15 * 60;
pub const MAX_RETENTION_S: u64 = 14 * 24 * 60 * 60;
pub const DEFAULT_RETENTION_S: u64 = 4 * 24 * 60 * 60;
pub const MAX_RECEIVE_WAIT_S: u64 = 20;
pub const DEFAULT_VISIBILITY_TIMEOUT_S: u64 = 30;
/// SQS allows 1..=1000 receives before redrive.
pub const MAX_RECEIVE_COUNT: u32 = 1000;

/// One problem in a user-supplied spec: which field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path of the offending field, e.g. `redrive_policy.max_receive_count`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// What kind of resource a name belongs to; used in errors and storage keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Topic,
    Queue,
    Subscription,
    Stream,
    Shard,
    Group,
    Function,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Topic => "topic",
            Kind::Queue => "queue",
            Kind::Subscription => "subscription",
            Kind::Stream => "stream",
            Kind::Shard => "shard",
            Kind::Group => "consumer group",
            Kind::Function => "function",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks a resource name: 1..=80 characters of `[A-Za-z0-9_-]`, optionally ending in
/// `.fifo` (the SQS/SNS rule, so names port to AWS unchanged).
pub fn validate_name(kind: Kind, name: &str) -> Result<(), String> {
    let stem = name.strip_suffix(".fifo").unwrap_or(name);
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!(
            "invalid {kind} name {name:?}: must be 1 to {MAX_NAME_LEN} characters"
        ));
    }
    if stem.is_empty()
        || !stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "invalid {kind} name {name:?}: only letters, digits, '-' and '_' are allowed (and a '.fifo' suffix)"
        ));
    }
    Ok(())
}

/// `PUT /v1/topics/{topic}` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TopicSpec {
    /// FIFO topics keep order per `group_id` and deduplicate by `dedup_id`.
    pub fifo: bool,
    /// JSON Schema every published message must satisfy.
    pub schema: Option<serde_json::Value>,
    /// Deduplicate FIFO publishes by a hash of the message when no `dedup_id` is given.
    pub content_based_dedup: bool,
    /// Largest accepted message, in bytes.
    pub max_message_bytes: Option<usize>,
}

impl TopicSpec {
    pub fn validate(&self, name: &str) -> Vec<FieldError> {
        let mut errs = Vec::new();
        check_fifo_name(name, self.fifo, &mut errs);
        if self.content_based_dedup && !self.fifo {
            errs.push(FieldError::new(
                "content_based_dedup",
                "only FIFO topics deduplicate",
            ));
        }
        if let Some(schema) = &self.schema
            && let Err(e) = jsonschema::validator_for(schema)
        {
            errs.push(FieldError::new(
                "schema",
                format!("not a valid JSON Schema: {e}"),
            ));
        }
        check_max_bytes(self.max_message_bytes, &mut errs);
        errs
    }

    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes.unwrap_or(DEFAULT_MAX_MESSAGE_BYTES)
    }

    /// Fields that cannot change once the topic exists (a changed one is a 409).
    pub fn immutable_diff(&self, new: &TopicSpec) -> Option<&'static str> {
        (self.fifo != new.fifo).then_some("fifo")
    }
}

/// Where a queue sends messages it failed to process `max_receive_count` times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedrivePolicy {
    pub dead_letter_queue: String,
    pub max_receive_count: u32,
}

/// `PUT /v1/queues/{queue}` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSpec {
    pub fifo: bool,
    pub visibility_timeout_s: u64,
    pub delay_s: u64,
    pub retention_s: u64,
    pub max_message_bytes: usize,
    pub receive_wait_s: u64,
    pub content_based_dedup: bool,
    pub redrive_policy: Option<RedrivePolicy>,
}

impl Default for QueueSpec {
    fn default() -> Self {
        Self {
            fifo: false,
            visibility_timeout_s: DEFAULT_VISIBILITY_TIMEOUT_S,
            delay_s: 0,
            retention_s: DEFAULT_RETENTION_S,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            receive_wait_s: 0,
            content_based_dedup: false,
            redrive_policy: None,
        }
    }
}

impl QueueSpec {
    /// Checks the spec on its own; whether the dead-letter queue exists is checked by the
    /// caller, who knows the other queues.
    pub fn validate(&self, name: &str) -> Vec<FieldError> {
        let mut errs = Vec::new();
        check_fifo_name(name, self.fifo, &mut errs);
        check_range(
            "visibility_timeout_s",
            self.visibility_timeout_s,
            0,
            MAX_VISIBILITY_TIMEOUT_S,
            &mut errs,
        );
        check_range("delay_s", self.delay_s, 0, MAX_DELAY_S, &mut errs);
        // Below SQS's 60 s minimum on purpose: short retention makes expiry testable.
        check_range(
            "retention_s",
            self.retention_s,
            1,
            MAX_RETENTION_S,
            &mut errs,
        );
        check_range(
            "receive_wait_s",
            self.receive_wait_s,
            0,
            MAX_RECEIVE_WAIT_S,
            &mut errs,
        );
        check_max_bytes(Some(self.max_message_bytes), &mut errs);
        if self.content_based_dedup && !self.fifo {
            errs.push(FieldError::new(
                "content_based_dedup",
                "only FIFO queues deduplicate",
            ));
        }
        if let Some(rp) = &self.redrive_policy {
            if let Err(e) = validate_name(Kind::Queue, &rp.dead_letter_queue) {
                errs.push(FieldError::new("redrive_policy.dead_letter_queue", e));
            } else if rp.dead_letter_queue == name {
                errs.push(FieldError::new(
                    "redrive_policy.dead_letter_queue",
                    "a queue cannot be its own dead-letter queue",
                ));
            }
            if !(1..=MAX_RECEIVE_COUNT).contains(&rp.max_receive_count) {
                errs.push(FieldError::new(
                    "redrive_policy.max_receive_count",
                    format!("must be between 1 and {MAX_RECEIVE_COUNT}"),
                ));
            }
        }
        errs
    }

    pub fn immutable_diff(&self, new: &QueueSpec) -> Option<&'static str> {
        (self.fifo != new.fifo).then_some("fifo")
    }
}

/// Where a subscription delivers. Written as `{"queue":"q"}` or
/// `{"stream":"s","partition_key":"/json/pointer"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "EndpointRepr", into = "EndpointRepr")]
pub enum Endpoint {
    Queue(String),
    Stream {
        stream: String,
        /// JSON pointer into the message naming the partition key; the message id when
        /// absent or when the pointer finds nothing.
        partition_key: Option<String>,
    },
    Http(HttpEndpoint),
    /// A WebAssembly function, by name.
    Function(String),
}

/// How an HTTP endpoint receives a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum HttpFormat {
    /// The JSON envelope (or, with raw delivery, the message itself).
    #[default]
    Envelope,
    /// CloudEvents 1.0 binary mode: `ce-*` headers, the message as the body.
    Cloudevents,
    /// CloudEvents 1.0 structured mode: `application/cloudevents+json`.
    CloudeventsStructured,
}

/// Default time an endpoint has to answer (SNS: 15 s; local endpoints answer faster).
pub const DEFAULT_HTTP_TIMEOUT_MS: u64 = 5_000;
/// Longest an endpoint may take to answer before the attempt counts as failed.
pub const MAX_HTTP_TIMEOUT_MS: u64 = 60_000;
/// Default and largest number of requests in flight to one endpoint.
pub const DEFAULT_HTTP_CONCURRENCY: u32 = 16;
pub const MAX_HTTP_CONCURRENCY: u32 = 256;

/// `{"http": {...}}`: a webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpEndpoint {
    pub url: String,
    /// Extra request headers, e.g. an API key of the receiver.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "default_http_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_http_concurrency")]
    pub max_concurrency: u32,
    #[serde(default)]
    pub format: HttpFormat,
    /// Key of the `x-switchyard-signature` HMAC. Generated when not given; shown once, in
    /// the answer to the `PUT` that created the subscription.
    #[serde(default)]
    pub secret: Option<String>,
}

fn default_http_timeout_ms() -> u64 {
    DEFAULT_HTTP_TIMEOUT_MS
}

fn default_http_concurrency() -> u32 {
    DEFAULT_HTTP_CONCURRENCY
}

impl HttpEndpoint {
    pub fn validate(&self, errs: &mut Vec<FieldError>) {
        match reqwest::Url::parse(&self.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            Ok(u) => errs.push(FieldError::new(
                "endpoint.http.url",
                format!(
                    "{:?} must be an http or https URL with a host, not {:?}",
                    self.url,
                    u.scheme()
                ),
            )),
            Err(e) => errs.push(FieldError::new(
                "endpoint.http.url",
                format!("{:?} is not a URL: {e}", self.url),
            )),
        }
        for (k, v) in &self.headers {
            if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
                || reqwest::header::HeaderValue::from_str(v).is_err()
            {
                errs.push(FieldError::new(
                    format!("endpoint.http.headers.{k}"),
                    "not a valid HTTP header",
                ));
            }
        }
        if !(1..=MAX_HTTP_TIMEOUT_MS).contains(&self.timeout_ms) {
            errs.push(FieldError::new(
                "endpoint.http.timeout_ms",
                format!("must be between 1 and {MAX_HTTP_TIMEOUT_MS}"),
            ));
        }
        if !(1..=MAX_HTTP_CONCURRENCY).contains(&self.max_concurrency) {
            errs.push(FieldError::new(
                "endpoint.http.max_concurrency",
                format!("must be between 1 and {MAX_HTTP_CONCURRENCY}"),
            ));
        }
        if let Some(s) = &self.secret
            && !(16..=256).contains(&s.len())
        {
            errs.push(FieldError::new(
                "endpoint.http.secret",
                "must be 16 to 256 characters",
            ));
        }
    }
}

/// The wire form of [`Endpoint`]: one object with exactly one kind key.
#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct EndpointRepr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    queue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stream: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    partition_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    http: Option<HttpEndpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    function: Option<String>,
}

impl TryFrom<EndpointRepr> for Endpoint {
    type Error = String;

    fn try_from(r: EndpointRepr) -> Result<Self, String> {
        match (r.queue, r.stream, r.http, r.function) {
            (Some(q), None, None, None) => {
                if r.partition_key.is_some() {
                    return Err("partition_key goes with a stream endpoint, not a queue".into());
                }
                Ok(Endpoint::Queue(q))
            }
            (None, Some(stream), None, None) => Ok(Endpoint::Stream {
                stream,
                partition_key: r.partition_key,
            }),
            (None, None, Some(h), None) => {
                if r.partition_key.is_some() {
                    return Err("partition_key goes with a stream endpoint, not http".into());
                }
                Ok(Endpoint::Http(h))
            }
            (None, None, None, Some(f)) => {
                if r.partition_key.is_some() {
                    return Err("partition_key goes with a stream endpoint, not a function".into());
                }
                Ok(Endpoint::Function(f))
            }
            _ => Err(
                r#"an endpoint names exactly one of "queue", "stream", "http" or "function""#
                    .into(),
            ),
        }
    }
}

impl From<Endpoint> for EndpointRepr {
    fn from(e: Endpoint) -> Self {
        match e {
            Endpoint::Queue(q) => EndpointRepr {
                queue: Some(q),
                ..Default::default()
            },
            Endpoint::Stream {
                stream,
                partition_key,
            } => EndpointRepr {
                stream: Some(stream),
                partition_key,
                ..Default::default()
            },
            Endpoint::Http(h) => EndpointRepr {
                http: Some(h),
                ..Default::default()
            },
            Endpoint::Function(f) => EndpointRepr {
                function: Some(f),
                ..Default::default()
            },
        }
    }
}

/// `PUT /v1/streams/{stream}` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamSpec {
    pub shards: u32,
    pub retention_hours: u64,
    /// Retention in seconds; overrides `retention_hours` when set. Finer than Kinesis
    /// allows, so short-lived local streams (and tests of expiry) need not wait an hour.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_s: Option<u64>,
}

impl Default for StreamSpec {
    fn default() -> Self {
        Self {
            shards: 1,
            retention_hours: crate::stream::DEFAULT_RETENTION_HOURS,
            retention_s: None,
        }
    }
}

impl StreamSpec {
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        check_range(
            "shards",
            self.shards as u64,
            1,
            crate::stream::MAX_SHARDS as u64,
            &mut errs,
        );
        check_range(
            "retention_hours",
            self.retention_hours,
            1,
            crate::stream::MAX_RETENTION_HOURS,
            &mut errs,
        );
        if let Some(r) = self.retention_s {
            check_range(
                "retention_s",
                r,
                1,
                crate::stream::MAX_RETENTION_HOURS * 3600,
                &mut errs,
            );
        }
        errs
    }

    /// How long records are kept, in milliseconds.
    pub fn retention_ms(&self) -> u64 {
        self.retention_s
            .unwrap_or(self.retention_hours * 3600)
            .saturating_mul(1000)
    }

    pub fn immutable_diff(&self, new: &StreamSpec) -> Option<&'static str> {
        // Resharding (split and merge) is not supported: a shard count is fixed.
        (self.shards != new.shards).then_some("shards")
    }
}

/// Where a new consumer group starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum StartPosition {
    #[default]
    TrimHorizon,
    Latest,
}

/// Longest lease a consumer group may configure; past it a dead member holds shards for
/// too long to call it failover.
pub const MAX_LEASE_TIMEOUT_S: u64 = 300;

/// `PUT /v1/streams/{stream}/groups/{group}` body; a group polled before it was put is
/// created with the defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupSpec {
    pub start_position: StartPosition,
    pub lease_timeout_s: u64,
}

impl Default for GroupSpec {
    fn default() -> Self {
        Self {
            start_position: StartPosition::TrimHorizon,
            lease_timeout_s: 10,
        }
    }
}

impl GroupSpec {
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        check_range(
            "lease_timeout_s",
            self.lease_timeout_s,
            1,
            MAX_LEASE_TIMEOUT_S,
            &mut errs,
        );
        errs
    }
}

/// `PUT /v1/topics/{topic}/subscriptions/{name}` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionSpec {
    pub endpoint: Endpoint,
    #[serde(default)]
    pub filter_policy: Option<serde_json::Value>,
    #[serde(default)]
    pub filter_policy_scope: FilterScope,
    #[serde(default)]
    pub raw_message_delivery: bool,
    /// Queue that receives deliveries this subscription cannot make (its queue was
    /// deleted), as SNS's subscription redrive policy.
    #[serde(default)]
    pub dead_letter_queue: Option<String>,
    /// Retry policy for endpoints that can fail transiently (HTTP); queue and stream
    /// endpoints store every delivery at once and take none.
    #[serde(default)]
    pub delivery_policy: Option<crate::deliver::retry::DeliveryPolicy>,
}

/// Which part of a message a filter policy looks at (SNS `FilterPolicyScope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum FilterScope {
    #[default]
    MessageAttributes,
    MessageBody,
}

impl SubscriptionSpec {
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        match &self.endpoint {
            Endpoint::Queue(q) => {
                if let Err(e) = validate_name(Kind::Queue, q) {
                    errs.push(FieldError::new("endpoint.queue", e));
                }
            }
            Endpoint::Http(h) => h.validate(&mut errs),
            Endpoint::Function(f) => {
                if let Err(e) = validate_name(Kind::Function, f) {
                    errs.push(FieldError::new("endpoint.function", e));
                }
            }
            Endpoint::Stream {
                stream,
                partition_key,
            } => {
                if let Err(e) = validate_name(Kind::Stream, stream) {
                    errs.push(FieldError::new("endpoint.stream", e));
                }
                if let Some(p) = partition_key
                    && !(p.is_empty() || p.starts_with('/'))
                {
                    errs.push(FieldError::new(
                        "endpoint.partition_key",
                        format!("{p:?} is not a JSON pointer (it must start with '/')"),
                    ));
                }
            }
        }
        if let Some(policy) = &self.filter_policy
            && let Err(e) = crate::matching::parse_policy(policy, self.filter_policy_scope)
        {
            errs.push(FieldError::new("filter_policy", e));
        }
        if let Some(q) = &self.dead_letter_queue
            && let Err(e) = validate_name(Kind::Queue, q)
        {
            errs.push(FieldError::new("dead_letter_queue", e));
        }
        match (&self.endpoint, &self.delivery_policy) {
            (Endpoint::Http(_) | Endpoint::Function(_), Some(p)) => errs.extend(p.validate()),
            (Endpoint::Queue(_) | Endpoint::Stream { .. }, Some(_)) => errs.push(FieldError::new(
                "delivery_policy",
                "queue and stream endpoints store every delivery at once; delivery policies are for endpoints that can fail (http)",
            )),
            _ => {}
        }
        errs
    }

    pub fn immutable_diff(&self, new: &SubscriptionSpec) -> Option<&'static str> {
        (self.endpoint != new.endpoint).then_some("endpoint")
    }
}

fn check_fifo_name(name: &str, fifo: bool, errs: &mut Vec<FieldError>) {
    match (name.ends_with(".fifo"), fifo) {
        (true, false) => errs.push(FieldError::new(
            "fifo",
            format!("{name:?} ends in .fifo, so it must be declared with fifo = true"),
        )),
        (false, true) => errs.push(FieldError::new(
            "fifo",
            format!("a FIFO resource's name must end in .fifo, {name:?} does not"),
        )),
        _ => {}
    }
}

fn check_range(field: &str, v: u64, min: u64, max: u64, errs: &mut Vec<FieldError>) {
    if !(min..=max).contains(&v) {
        errs.push(FieldError::new(
            field,
            format!("must be between {min} and {max}, got {v}"),
        ));
    }
}

fn check_max_bytes(v: Option<usize>, errs: &mut Vec<FieldError>) {
    if let Some(v) = v
        && !(1..=DEFAULT_MAX_MESSAGE_BYTES).contains(&v)
    {
        errs.push(FieldError::new(
            "max_message_bytes",
            format!("must be between 1 and {DEFAULT_MAX_MESSAGE_BYTES}, got {v}"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_sqs_rule() {
        assert!(validate_name(Kind::Queue, "orders-1_a").is_ok());
        assert!(validate_name(Kind::Queue, "orders.fifo").is_ok());
        assert!(validate_name(Kind::Queue, "").is_err());
        assert!(validate_name(Kind::Queue, ".fifo").is_err());
        assert!(validate_name(Kind::Queue, "a b").is_err());
        assert!(validate_name(Kind::Queue, &"a".repeat(81)).is_err());
    }

    #[test]
    fn queue_spec_reports_every_problem_at_once() {
        let spec = QueueSpec {
            visibility_timeout_s: 50_000,
            delay_s: 901,
            redrive_policy: Some(RedrivePolicy {
                dead_letter_queue: "q".into(),
                max_receive_count: 0,
            }),
            ..QueueSpec::default()
        };
        let errs = spec.validate("q");
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "visibility_timeout_s",
                "delay_s",
                "redrive_policy.dead_letter_queue",
                "redrive_policy.max_receive_count"
            ]
        );
    }

    #[test]
    fn fifo_flag_and_name_must_agree() {
        let spec = QueueSpec {
            fifo: true,
            ..QueueSpec::default()
        };
        assert_eq!(spec.validate("plain").len(), 1);
        assert!(spec.validate("plain.fifo").is_empty());
        assert_eq!(QueueSpec::default().validate("x.fifo").len(), 1);
    }

    #[test]
    fn endpoint_serializes_as_api_md_says() {
        let s: SubscriptionSpec =
            serde_json::from_str(r#"{"endpoint":{"queue":"q"},"raw_message_delivery":true}"#)
                .unwrap();
        assert_eq!(s.endpoint, Endpoint::Queue("q".into()));
        assert_eq!(s.filter_policy_scope, FilterScope::MessageAttributes);
        assert!(
            serde_json::from_str::<SubscriptionSpec>(r#"{"endpoint":{"queue":"q"},"x":1}"#)
                .is_err()
        );
    }
}

/// Lambda's default number of retries of an asynchronous invocation.
pub const DEFAULT_FUNCTION_RETRIES: u32 = 2;

/// `PUT /v1/functions/{function}` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionSpec {
    /// Path of a WebAssembly component (`.wasm`), or the component itself in base64.
    pub module: String,
    #[serde(default = "default_function_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_function_memory_mb")]
    pub memory_mb: u64,
    /// Invocations of this function running at once; more wait.
    #[serde(default = "default_function_concurrency")]
    pub concurrency: usize,
    /// Values the guest reads with `config(key)`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Queues and streams the function consumes in batches.
    #[serde(default)]
    pub sources: Vec<SourceSpec>,
}

fn default_function_timeout_ms() -> u64 {
    1000
}
fn default_function_memory_mb() -> u64 {
    64
}
fn default_function_concurrency() -> usize {
    4
}

/// Most events in one batch a source hands a function.
pub const MAX_SOURCE_BATCH: usize = 1000;
/// Longest a queue source waits to fill a batch.
pub const MAX_BATCH_WINDOW_MS: u64 = 300_000;

/// A function source (Lambda's event source mapping).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub enum SourceSpec {
    Queue {
        queue: String,
        #[serde(default = "default_queue_batch")]
        batch_size: usize,
        /// How long to gather messages before invoking with a partial batch.
        #[serde(default)]
        batch_window_ms: u64,
    },
    Stream {
        stream: String,
        group: String,
        #[serde(default = "default_stream_batch")]
        batch_size: usize,
        #[serde(default)]
        starting_position: StartPosition,
    },
}

fn default_queue_batch() -> usize {
    10
}
fn default_stream_batch() -> usize {
    100
}

impl FunctionSpec {
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if self.module.is_empty() {
            errs.push(FieldError::new(
                "module",
                "must name a .wasm file or hold one in base64",
            ));
        }
        check_range("timeout_ms", self.timeout_ms, 1, 15 * 60 * 1000, &mut errs);
        check_range("memory_mb", self.memory_mb, 2, 512, &mut errs);
        check_range("concurrency", self.concurrency as u64, 1, 1000, &mut errs);
        for (i, s) in self.sources.iter().enumerate() {
            match s {
                SourceSpec::Queue {
                    queue,
                    batch_size,
                    batch_window_ms,
                } => {
                    if let Err(e) = validate_name(Kind::Queue, queue) {
                        errs.push(FieldError::new(format!("sources[{i}].queue"), e));
                    }
                    check_range(
                        &format!("sources[{i}].batch_size"),
                        *batch_size as u64,
                        1,
                        MAX_SOURCE_BATCH as u64,
                        &mut errs,
                    );
                    check_range(
                        &format!("sources[{i}].batch_window_ms"),
                        *batch_window_ms,
                        0,
                        MAX_BATCH_WINDOW_MS,
                        &mut errs,
                    );
                }
                SourceSpec::Stream {
                    stream,
                    group,
                    batch_size,
                    ..
                } => {
                    if let Err(e) = validate_name(Kind::Stream, stream) {
                        errs.push(FieldError::new(format!("sources[{i}].stream"), e));
                    }
                    if let Err(e) = validate_name(Kind::Group, group) {
                        errs.push(FieldError::new(format!("sources[{i}].group"), e));
                    }
                    check_range(
                        &format!("sources[{i}].batch_size"),
                        *batch_size as u64,
                        1,
                        MAX_SOURCE_BATCH as u64,
                        &mut errs,
                    );
                }
            }
        }
        errs
    }
}
