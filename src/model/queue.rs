//! Queues: SQS-style, with visibility timeouts, delays, retention and redrive.

use super::{
    DEFAULT_MAX_MESSAGE_BYTES, FieldError, Kind, check_fifo_name, check_max_bytes, check_range,
    check_tags, validate_name,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// SQS limits, in seconds.
pub const MAX_VISIBILITY_TIMEOUT_S: u64 = 12 * 60 * 60;
pub const MAX_DELAY_S: u64 = 15 * 60;
pub const MAX_RETENTION_S: u64 = 14 * 24 * 60 * 60;
pub const DEFAULT_RETENTION_S: u64 = 4 * 24 * 60 * 60;
pub const MAX_RECEIVE_WAIT_S: u64 = 20;
pub const DEFAULT_VISIBILITY_TIMEOUT_S: u64 = 30;
/// How long a FIFO deduplication id is remembered: a message with the id of one accepted
/// within it is a duplicate (SQS and SNS: 5 minutes). Every backend enforces this one.
pub const FIFO_DEDUP_WINDOW_S: u64 = 5 * 60;
/// SQS allows 1..=1000 receives before redrive.
pub const MAX_RECEIVE_COUNT: u32 = 1000;

/// Where a queue sends messages it failed to process `max_receive_count` times.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedrivePolicy {
    /// The queue receiving what failed too often: of the same kind (FIFO or standard) as
    /// this one, not this one.
    #[schema(
        pattern = r"^[A-Za-z0-9_-]+(\.fifo)?$",
        min_length = 1,
        max_length = 80
    )]
    pub dead_letter_queue: String,
    /// Receives after which a message moves to the dead-letter queue.
    #[serde(deserialize_with = "super::whole::u32")]
    #[schema(minimum = 1, maximum = 1000)]
    pub max_receive_count: u32,
}

/// `PUT /v1/queues/{queue}` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSpec {
    /// First-in-first-out per message group, with deduplication; the queue's name must
    /// then end in `.fifo`.
    pub fifo: bool,
    /// How long a received message stays hidden from other receivers (default 30).
    #[serde(deserialize_with = "super::whole::u64")]
    #[schema(maximum = 43200)]
    pub visibility_timeout_s: u64,
    /// Delay before a new message becomes visible (default 0).
    #[serde(deserialize_with = "super::whole::u64")]
    #[schema(maximum = 900)]
    pub delay_s: u64,
    /// How long a message is kept (default 345600, four days).
    #[serde(deserialize_with = "super::whole::u64")]
    #[schema(minimum = 1, maximum = 1209600)]
    pub retention_s: u64,
    /// Largest message with its attributes, in bytes (default 262144).
    #[serde(deserialize_with = "super::whole::usize")]
    #[schema(minimum = 1, maximum = 262144)]
    pub max_message_bytes: usize,
    /// How long a receive waits for a message unless it says (default 0).
    #[serde(deserialize_with = "super::whole::u64")]
    #[schema(maximum = 20)]
    pub receive_wait_s: u64,
    /// FIFO only: deduplicate by a hash of the message when no `dedup_id` is given.
    pub content_based_dedup: bool,
    /// Where messages received too often go.
    pub redrive_policy: Option<RedrivePolicy>,
    /// Cost-allocation tags, as SQS's: at most 50, keys of 1 to 128 characters, values
    /// of up to 256.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
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
            tags: BTreeMap::new(),
        }
    }
}

impl QueueSpec {
    /// A FIFO queue with the default timers, without content-based deduplication.
    pub fn fifo() -> Self {
        QueueSpec {
            fifo: true,
            ..QueueSpec::default()
        }
    }

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
        check_tags(&self.tags, &mut errs);
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
