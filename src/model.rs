//! The resources a user declares (topics, queues, subscriptions) as plain data.
//!
//! These types are the one definition shared by the HTTP API (`PUT` bodies), the config
//! file and what is stored in the backend's metadata, so both ways of creating a resource
//! create the same thing. Each spec parses with serde (`deny_unknown_fields`) and is then
//! checked by its `validate`, which reports every problem at once as [`FieldError`]s; nothing
//! here does I/O.

use serde::{Deserialize, Serialize};
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
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Topic => "topic",
            Kind::Queue => "queue",
            Kind::Subscription => "subscription",
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

/// Where a subscription delivers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Endpoint {
    Queue(String),
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
    /// Retry policy for endpoints that can fail transiently (HTTP); queue endpoints
    /// never need one.
    #[serde(default)]
    pub delivery_policy: Option<serde_json::Value>,
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
        }
        if let Some(policy) = &self.filter_policy
            && let Err(e) = crate::matching::parse_policy(policy)
        {
            errs.push(FieldError::new("filter_policy", e));
        }
        if let Some(q) = &self.dead_letter_queue
            && let Err(e) = validate_name(Kind::Queue, q)
        {
            errs.push(FieldError::new("dead_letter_queue", e));
        }
        if self.delivery_policy.is_some() {
            errs.push(FieldError::new(
                "delivery_policy",
                "a queue endpoint stores every delivery at once; delivery policies are for endpoints that can fail",
            ));
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
