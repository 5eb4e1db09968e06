//! Functions: WebAssembly components, and the queues and streams they consume.

use super::{FieldError, Kind, StartPosition, check_range, validate_name};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// Lambda's default number of retries of an asynchronous invocation.
pub const DEFAULT_FUNCTION_RETRIES: u32 = 2;

/// `PUT /v1/functions/{function}` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FunctionSpec {
    /// Path of a WebAssembly component (`.wasm`), or the component itself in base64.
    #[schema(min_length = 1)]
    pub module: String,
    /// Longest one invocation may run (default 1000).
    #[serde(
        default = "default_function_timeout_ms",
        deserialize_with = "super::whole::u64"
    )]
    #[schema(minimum = 1, maximum = 900000)]
    pub timeout_ms: u64,
    /// Memory cap of one invocation (default 64).
    #[serde(
        default = "default_function_memory_mb",
        deserialize_with = "super::whole::u64"
    )]
    #[schema(minimum = 2, maximum = 512)]
    pub memory_mb: u64,
    /// Invocations of this function running at once; more wait (default 4).
    #[serde(
        default = "default_function_concurrency",
        deserialize_with = "super::whole::usize"
    )]
    #[schema(minimum = 1, maximum = 1000)]
    pub concurrency: usize,
    /// Values the guest reads with `config(key)`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Where the handler may send HTTP requests (`wasi:http/outgoing-handler`):
    /// `SCHEME://HOST[:PORT]` patterns, `*` for any scheme, host (`*.example.com`: any
    /// name below it) or port; without a port only the scheme's default. None by default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(example = json!(["https://api.example.com", "http://127.0.0.1:*"]))]
    pub allowed_hosts: Vec<String>,
    /// Queues and streams the function consumes in batches.
    #[serde(default)]
    pub sources: Vec<SourceSpec>,
    /// What becomes of its asynchronous (`Event`) invocations (Lambda's event invoke
    /// config). Unset: two retries, kept up to six hours, given up to the log only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asynchronous: Option<AsyncSpec>,
}

/// What becomes of a function's asynchronous invocations: how often and how long they
/// are tried, and where a record of each one goes once it succeeded or was given up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AsyncSpec {
    /// Attempts after a failed first one (Lambda's `MaximumRetryAttempts`, 0 to 2;
    /// default 2), a minute and then two minutes apart.
    #[serde(
        default = "default_async_retries",
        deserialize_with = "super::whole::u32"
    )]
    #[schema(minimum = 0, maximum = 2)]
    pub max_retries: u32,
    /// Oldest an invocation may be when it is tried, in seconds since it was accepted
    /// (Lambda's `MaximumEventAgeInSeconds`, 60 to 21,600; default 21,600): an older one
    /// is given up.
    #[serde(
        default = "default_max_event_age_s",
        deserialize_with = "super::whole::u64"
    )]
    #[schema(minimum = 60, maximum = 21600)]
    pub max_event_age_s: u64,
    /// Where a record of each invocation that succeeded goes: a queue or a topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_success: Option<Destination>,
    /// Where a record of each invocation given up goes, with why: a queue or a topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_failure: Option<Destination>,
}

impl Default for AsyncSpec {
    fn default() -> Self {
        Self {
            max_retries: DEFAULT_FUNCTION_RETRIES,
            max_event_age_s: MAX_EVENT_AGE_S,
            on_success: None,
            on_failure: None,
        }
    }
}

fn default_async_retries() -> u32 {
    DEFAULT_FUNCTION_RETRIES
}
fn default_max_event_age_s() -> u64 {
    MAX_EVENT_AGE_S
}

/// Lambda's bounds of an asynchronous invocation's age.
pub const MIN_EVENT_AGE_S: u64 = 60;
pub const MAX_EVENT_AGE_S: u64 = 21_600;

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

/// Most concurrent invocations of a function, and of one of its sources.
pub const MAX_CONCURRENCY: usize = 1000;

/// Where a stream source sends the records it gave up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged, deny_unknown_fields)]
pub enum Destination {
    Queue {
        #[schema(
            pattern = r"^[A-Za-z0-9_-]+(\.fifo)?$",
            min_length = 1,
            max_length = 80
        )]
        queue: String,
    },
    Topic {
        #[schema(
            pattern = r"^[A-Za-z0-9_-]+(\.fifo)?$",
            min_length = 1,
            max_length = 256
        )]
        topic: String,
    },
}

impl Destination {
    /// Checks the name it gives; `field` is where it sits in the spec.
    fn check(&self, field: &str, errs: &mut Vec<FieldError>) {
        let (kind, name, member) = match self {
            Destination::Queue { queue } => (Kind::Queue, queue, "queue"),
            Destination::Topic { topic } => (Kind::Topic, topic, "topic"),
        };
        if let Err(e) = validate_name(kind, name) {
            errs.push(FieldError::new(format!("{field}.{member}"), e));
        }
    }
}

/// Most retry attempts of a stream source, and the oldest record it may be given.
pub const MAX_RETRY_ATTEMPTS: u64 = 10_000;
pub const MAX_RECORD_AGE_S: u64 = 604_800;

/// Most concurrent batches per shard of a stream source.
pub const MAX_PARALLELIZATION_FACTOR: usize = 10;

/// A function source (Lambda's event source mapping).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged, deny_unknown_fields)]
pub enum SourceSpec {
    Queue {
        /// The queue consumed.
        #[schema(
            pattern = r"^[A-Za-z0-9_-]+(\.fifo)?$",
            min_length = 1,
            max_length = 80
        )]
        queue: String,
        /// Most messages in one invocation (default 10).
        #[serde(
            default = "default_queue_batch",
            deserialize_with = "super::whole::usize"
        )]
        #[schema(minimum = 1, maximum = 1000)]
        batch_size: usize,
        /// How long to gather messages before invoking with a partial batch.
        #[serde(default, deserialize_with = "super::whole::u64")]
        #[schema(maximum = 300000)]
        batch_window_ms: u64,
        /// Most batches of this source invoked at once (Lambda's `MaximumConcurrency`):
        /// the source adds one while messages wait and every running batch is busy, and
        /// goes back to a single long poll when the queue is idle. Default: the function's
        /// concurrency, which also caps all its invocations together.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "super::whole::option_usize"
        )]
        #[schema(minimum = 1, maximum = 1000)]
        max_concurrency: Option<usize>,
    },
    Stream {
        /// The stream consumed.
        #[schema(
            pattern = r"^[A-Za-z0-9_-]+(\.fifo)?$",
            min_length = 1,
            max_length = 80
        )]
        stream: String,
        /// The consumer group the function reads as.
        #[schema(
            pattern = r"^[A-Za-z0-9_-]+(\.fifo)?$",
            min_length = 1,
            max_length = 80
        )]
        group: String,
        /// Most records in one invocation (default 100).
        #[serde(
            default = "default_stream_batch",
            deserialize_with = "super::whole::usize"
        )]
        #[schema(minimum = 1, maximum = 1000)]
        batch_size: usize,
        /// Where a new group starts.
        #[serde(default)]
        starting_position: StartPosition,
        /// How long to gather records before invoking with a partial batch (Lambda's
        /// `MaximumBatchingWindowInSeconds`; default 0: invoke with what one poll read).
        #[serde(
            default,
            skip_serializing_if = "is_zero",
            deserialize_with = "super::whole::u64"
        )]
        #[schema(maximum = 300000)]
        batch_window_ms: u64,
        /// Batches invoked at once per shard (Lambda's `ParallelizationFactor`, 1 to 10;
        /// default 1): a shard's records are spread over that many by partition key, so
        /// the records of one key are still handled in order, and a shard is checkpointed
        /// only past what all of them have done.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "super::whole::option_usize"
        )]
        #[schema(minimum = 1, maximum = 10)]
        parallelization_factor: Option<usize>,
        /// Attempts after the first before a failing batch is given up (Lambda's
        /// `MaximumRetryAttempts`, 0 to 10,000); unset: retried until it succeeds or its
        /// records are too old.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "super::whole::option_u64"
        )]
        #[schema(minimum = 0, maximum = 10000)]
        maximum_retry_attempts: Option<u64>,
        /// Records older than this (seconds since they were put) are given up instead of
        /// invoked (Lambda's `MaximumRecordAgeInSeconds`, here from 1 to 604,800); unset:
        /// no limit.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "super::whole::option_u64"
        )]
        #[schema(minimum = 1, maximum = 604800)]
        maximum_record_age_s: Option<u64>,
        /// On a failed batch, split it in two and invoke the halves, down to the record
        /// that fails, so the records before it are done (Lambda's
        /// `BisectBatchOnFunctionError`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        bisect_batch_on_error: bool,
        /// Where what is given up goes, with the reason: a queue or a topic. Unset: it is
        /// only logged.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        on_failure: Option<Destination>,
    },
}

fn is_zero(n: &u64) -> bool {
    *n == 0
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
        if let Err(why) = super::AllowedHosts::parse(&self.allowed_hosts) {
            errs.push(FieldError::new("allowed_hosts", why));
        }
        check_range(
            "concurrency",
            self.concurrency as u64,
            1,
            MAX_CONCURRENCY as u64,
            &mut errs,
        );
        for (i, s) in self.sources.iter().enumerate() {
            match s {
                SourceSpec::Queue {
                    queue,
                    batch_size,
                    batch_window_ms,
                    max_concurrency,
                } => {
                    if let Some(n) = max_concurrency {
                        check_range(
                            &format!("sources[{i}].max_concurrency"),
                            *n as u64,
                            1,
                            MAX_CONCURRENCY as u64,
                            &mut errs,
                        );
                    }
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
                    batch_window_ms,
                    parallelization_factor,
                    maximum_retry_attempts,
                    maximum_record_age_s,
                    on_failure,
                    ..
                } => {
                    check_range(
                        &format!("sources[{i}].batch_window_ms"),
                        *batch_window_ms,
                        0,
                        MAX_BATCH_WINDOW_MS,
                        &mut errs,
                    );
                    if let Some(n) = maximum_retry_attempts {
                        check_range(
                            &format!("sources[{i}].maximum_retry_attempts"),
                            *n,
                            0,
                            MAX_RETRY_ATTEMPTS,
                            &mut errs,
                        );
                    }
                    if let Some(n) = maximum_record_age_s {
                        check_range(
                            &format!("sources[{i}].maximum_record_age_s"),
                            *n,
                            1,
                            MAX_RECORD_AGE_S,
                            &mut errs,
                        );
                    }
                    if let Some(to) = on_failure {
                        to.check(&format!("sources[{i}].on_failure"), &mut errs);
                    }
                    if let Some(n) = parallelization_factor {
                        check_range(
                            &format!("sources[{i}].parallelization_factor"),
                            *n as u64,
                            1,
                            MAX_PARALLELIZATION_FACTOR as u64,
                            &mut errs,
                        );
                    }
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
        if let Some(a) = &self.asynchronous {
            check_range(
                "asynchronous.max_retries",
                u64::from(a.max_retries),
                0,
                u64::from(DEFAULT_FUNCTION_RETRIES),
                &mut errs,
            );
            check_range(
                "asynchronous.max_event_age_s",
                a.max_event_age_s,
                MIN_EVENT_AGE_S,
                MAX_EVENT_AGE_S,
                &mut errs,
            );
            if let Some(to) = &a.on_success {
                to.check("asynchronous.on_success", &mut errs);
            }
            if let Some(to) = &a.on_failure {
                to.check("asynchronous.on_failure", &mut errs);
            }
        }
        errs
    }
}
