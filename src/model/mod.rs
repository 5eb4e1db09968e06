//! The resources a user declares (topics, queues, subscriptions, streams, functions) as
//! plain data, one file per resource.
//!
//! These types are the one definition shared by the HTTP API (`PUT` bodies), the config
//! file and what is stored in the backend's metadata, so both ways of creating a resource
//! create the same thing. Each spec parses with serde (`deny_unknown_fields`) and is then
//! checked by its `validate`, which reports every problem at once as [`FieldError`]s; nothing
//! here does I/O. Everything else in the crate may use these types; they use nothing of it.

pub mod arn;
pub mod attributes;
pub mod delivery_policy;
mod endpoint;
mod function;
pub mod hosts;
mod queue;
mod stream;
mod subscription;
mod topic;
pub mod whole;

pub use delivery_policy::{Backoff, DeliveryPolicy};
pub use endpoint::*;
pub use function::*;
pub use hosts::AllowedHosts;
pub use queue::*;
pub use stream::*;
pub use subscription::*;
pub use topic::*;

use std::fmt;

/// Longest resource name. Short enough to keep storage keys small, long enough for
/// descriptive names (SQS allows 80).
pub const MAX_NAME_LEN: usize = 80;
/// Longest stream name (Kinesis allows 128).
pub const MAX_STREAM_NAME_LEN: usize = 128;

/// Default and maximum size of one message body, as SNS and SQS (256 KiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 256 * 1024;

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
    /// A message move task of a dead-letter queue.
    MoveTask,
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
            Kind::MoveTask => "message move task",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks a resource name: 1..=80 characters of `[A-Za-z0-9_-]`, optionally ending in
/// `.fifo` (the SQS/SNS rule, so names port to AWS unchanged); a stream's, 1..=128 of
/// `[A-Za-z0-9_.-]` (the Kinesis rule).
pub fn validate_name(kind: Kind, name: &str) -> Result<(), String> {
    if kind == Kind::Stream {
        if name.is_empty() || name.len() > MAX_STREAM_NAME_LEN {
            return Err(format!(
                "invalid stream name {name:?}: must be 1 to {MAX_STREAM_NAME_LEN} characters"
            ));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(format!(
                "invalid stream name {name:?}: only letters, digits, '-', '_' and '.' are allowed"
            ));
        }
        if name.bytes().all(|b| b == b'.') {
            // `.` and `..` are URL path segments that clients resolve away.
            return Err(format!(
                "invalid stream name {name:?}: a name of dots alone cannot be addressed"
            ));
        }
        return Ok(());
    }
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

/// Most tags a resource carries, as SNS, SQS and Kinesis allow.
pub const MAX_TAGS: usize = 50;

/// Tags as SNS, SQS and Kinesis accept them: at most [`MAX_TAGS`], keys of 1 to 128 characters not
/// starting with `aws:` (AWS reserves those), values of up to 256.
pub(crate) fn check_tags(
    tags: &std::collections::BTreeMap<String, String>,
    errs: &mut Vec<FieldError>,
) {
    if tags.len() > MAX_TAGS {
        errs.push(FieldError::new(
            "tags",
            format!("at most {MAX_TAGS} tags, got {}", tags.len()),
        ));
    }
    for (k, v) in tags {
        let key_len = k.chars().count();
        if key_len == 0 || key_len > 128 || k.starts_with("aws:") {
            errs.push(FieldError::new(
                "tags",
                format!("tag key {k:?} must be 1 to 128 characters, not starting with \"aws:\""),
            ));
        }
        if v.chars().count() > 256 {
            errs.push(FieldError::new(
                "tags",
                format!("the value of tag {k:?} is longer than 256 characters"),
            ));
        }
    }
}

pub(crate) fn check_fifo_name(name: &str, fifo: bool, errs: &mut Vec<FieldError>) {
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

pub(crate) fn check_range(field: &str, v: u64, min: u64, max: u64, errs: &mut Vec<FieldError>) {
    if !(min..=max).contains(&v) {
        errs.push(FieldError::new(
            field,
            format!("must be between {min} and {max}, got {v}"),
        ));
    }
}

pub(crate) fn check_max_bytes(v: Option<usize>, errs: &mut Vec<FieldError>) {
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
        assert!(validate_name(Kind::Queue, "a.b").is_err());
    }

    #[test]
    fn stream_names_follow_the_kinesis_rule() {
        for ok in ["clicks", "clicks.v2", "a-b_c.d", ".a.", &"s".repeat(128)] {
            assert!(validate_name(Kind::Stream, ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "...",
            "a b",
            "a/b",
            "a:b",
            "a=b",
            &"s".repeat(129),
        ] {
            assert!(validate_name(Kind::Stream, bad).is_err(), "{bad}");
        }
    }
}
