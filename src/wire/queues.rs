//! Queues: what is sent to them, received and acknowledged.

use super::topics::{add_attribute, raw};
use super::{Notification, QueueSpec, SnsAttributes};
use crate::model::whole;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use utoipa::ToSchema;

/// `POST /v1/queues/{queue}/messages` body (one message), and one entry of a batch.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// The message: any JSON value, delivered byte for byte.
    #[schema(value_type = Value)]
    pub message: Box<RawValue>,
    /// Message attributes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<super::Attributes>)]
    pub attributes: Option<Value>,
    /// Seconds before the message becomes visible; the queue's `delay_s` when not given.
    /// FIFO queues take none.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole::option_u64"
    )]
    #[schema(maximum = 900)]
    pub delay_s: Option<u64>,
    /// FIFO queues: the ordering group (required there, refused elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[!-~]+$", min_length = 1, max_length = 128)]
    pub group_id: Option<String>,
    /// FIFO queues: the deduplication id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[!-~]+$", min_length = 1, max_length = 128)]
    pub dedup_id: Option<String>,
    /// Batch entries only: the id the entry's result is reported under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

impl SendRequest {
    /// A message without attributes, visible after the queue's delay.
    pub fn new(message: Value) -> Self {
        SendRequest {
            message: raw(&message),
            attributes: None,
            delay_s: None,
            group_id: None,
            dedup_id: None,
            id: None,
        }
    }

    /// Adds an attribute: a string, a number, an array of them, or an
    /// [`SnsAttribute`](super::SnsAttribute).
    pub fn attribute(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        add_attribute(&mut self.attributes, name.into(), value.into());
        self
    }

    /// Delays this message by `delay_s` seconds instead of the queue's delay.
    pub fn delay_s(mut self, delay_s: u64) -> Self {
        self.delay_s = Some(delay_s);
        self
    }

    /// Sets the FIFO ordering group.
    pub fn group_id(mut self, group_id: impl Into<String>) -> Self {
        self.group_id = Some(group_id.into());
        self
    }

    /// Sets the FIFO deduplication id.
    pub fn dedup_id(mut self, dedup_id: impl Into<String>) -> Self {
        self.dedup_id = Some(dedup_id.into());
        self
    }

    /// Sets the id a batch reports this entry's result under.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
}

/// `POST /v1/queues/{queue}/receive` body; an empty body takes every default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiveRequest {
    /// Most messages to take (default 1).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole::option_usize"
    )]
    #[schema(minimum = 1, maximum = 10)]
    pub max_messages: Option<usize>,
    /// How long to wait for the first message (default: the queue's `receive_wait_s`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole::option_u64"
    )]
    #[schema(maximum = 20)]
    pub wait_s: Option<u64>,
    /// How long the messages stay hidden (default: the queue's `visibility_timeout_s`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole::option_u64"
    )]
    #[schema(maximum = 43200)]
    pub visibility_timeout_s: Option<u64>,
}

impl ReceiveRequest {
    /// Up to `max_messages` that are visible now. The wait is 0 rather than left out, which
    /// would wait for the queue's `receive_wait_s`.
    pub fn new(max_messages: usize) -> Self {
        ReceiveRequest {
            max_messages: Some(max_messages),
            wait_s: Some(0),
            visibility_timeout_s: None,
        }
    }

    /// Waits up to `wait_s` seconds for a first message.
    pub fn wait_s(mut self, wait_s: u64) -> Self {
        self.wait_s = Some(wait_s);
        self
    }

    /// Hides the messages taken for `seconds` instead of the queue's visibility timeout.
    pub fn visibility_timeout_s(mut self, seconds: u64) -> Self {
        self.visibility_timeout_s = Some(seconds);
        self
    }
}

/// A queue as `GET /v1/queues/{queue}` shows it, with approximate counts of its messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueueInfo {
    pub name: String,
    #[serde(flatten)]
    pub spec: QueueSpec,
    /// Messages that a receive would take now.
    pub approximate_visible: u64,
    /// Messages received and not yet acknowledged or visible again.
    pub approximate_in_flight: u64,
    /// Messages waiting out their delay.
    pub approximate_delayed: u64,
}

/// `GET /v1/queues`: the name of every queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QueueList {
    pub queues: Vec<String>,
    /// When entries are left after this page: the token that asks for the next one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// The answer to a receive.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReceivedMessages {
    pub messages: Vec<ReceivedMessage>,
}

/// A received message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReceivedMessage {
    pub message_id: String,
    /// Names this receive of the message: what an ack or a visibility change takes.
    pub receipt: String,
    /// The message as sent, or the envelope of a topic's publish.
    pub message: Value,
    /// The message's attributes in SNS form.
    pub attributes: SnsAttributes,
    /// How many times the message has been received, this time included.
    pub receive_count: u32,
    /// When it was first stored (RFC 3339, milliseconds).
    pub sent_at: String,
}

impl ReceivedMessage {
    /// Reads the message as the envelope a subscription without raw delivery sends.
    pub fn notification(&self) -> Result<Notification, serde_json::Error> {
        Notification::deserialize(&self.message)
    }
}

/// `POST /v1/queues/{queue}/ack` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    /// Receipts of the messages to delete.
    #[schema(min_items = 1, max_items = 100)]
    pub receipts: Vec<String>,
}

/// The answer to an ack that succeeded for every receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AckResult {
    /// Messages deleted.
    pub acked: u64,
}

/// `POST /v1/queues/{queue}/visibility` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VisibilityRequest {
    /// The receipt of the message.
    pub receipt: String,
    /// How long it stays hidden from now; 0 makes it visible at once.
    #[serde(deserialize_with = "whole::u64")]
    #[schema(maximum = 43200)]
    pub timeout_s: u64,
}

/// The answer to a purge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PurgeResult {
    /// Messages deleted.
    pub purged: u64,
}

/// The answer to a redrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RedriveResult {
    /// Messages moved back to the queues they came from.
    pub moved: u64,
}
