//! Request and response bodies of the HTTP API (topics, subscriptions, queues), as the
//! contract names them. Request types serialize exactly the documented fields; response
//! types tolerate members they do not know, so a newer server does not break an older client.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Message attributes as a producer sends them: name → value.
pub type Attributes = BTreeMap<String, AttributeValue>;

/// Message attributes as the server returns them, in SNS form.
pub type ReceivedAttributes = BTreeMap<String, MessageAttribute>;

/// One attribute value in a publish or send request.
///
/// The server accepts a JSON string (SNS `String`), a number (`Number`), an array of strings
/// and numbers (`String.Array`) or the explicit SNS form `{"Type","Value"}` (needed for
/// `Binary`, and to keep a number's exact spelling).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttributeValue {
    /// `String`.
    String(String),
    /// `Number`.
    Number(serde_json::Number),
    /// `String.Array`.
    Array(Vec<Value>),
    /// The SNS form, `{"Type":"Binary","Value":"aGk="}`.
    Typed(MessageAttribute),
}

impl From<&str> for AttributeValue {
    fn from(value: &str) -> Self {
        AttributeValue::String(value.to_owned())
    }
}

impl From<String> for AttributeValue {
    fn from(value: String) -> Self {
        AttributeValue::String(value)
    }
}

impl From<i64> for AttributeValue {
    fn from(value: i64) -> Self {
        AttributeValue::Number(value.into())
    }
}

impl From<MessageAttribute> for AttributeValue {
    fn from(value: MessageAttribute) -> Self {
        AttributeValue::Typed(value)
    }
}

/// An attribute in SNS form: `{"Type":"String|Number|String.Array|Binary","Value":"…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageAttribute {
    /// `String`, `Number`, `String.Array` or `Binary`.
    #[serde(rename = "Type")]
    pub data_type: String,
    /// The value as text (a JSON array for `String.Array`, base64 for `Binary`).
    #[serde(rename = "Value")]
    pub value: String,
}

impl MessageAttribute {
    /// A `String` attribute.
    pub fn string(value: impl Into<String>) -> Self {
        MessageAttribute {
            data_type: "String".to_owned(),
            value: value.into(),
        }
    }

    /// A `Number` attribute with the number's exact spelling.
    pub fn number(value: impl Into<String>) -> Self {
        MessageAttribute {
            data_type: "Number".to_owned(),
            value: value.into(),
        }
    }
}

/// `PUT /v1/topics/{topic}` body; also what `GET` returns (plus server-added members).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TopicSpec {
    /// First-in-first-out per message group, with deduplication. Name must end in `.fifo`.
    #[serde(default)]
    pub fifo: bool,
    /// JSON Schema every published message must satisfy; `null` for none.
    #[serde(default)]
    pub schema: Option<Value>,
    /// FIFO only: deduplicate by a hash of the message body when no `dedup_id` is given.
    #[serde(default)]
    pub content_based_dedup: bool,
}

impl TopicSpec {
    /// A FIFO topic without content-based deduplication.
    pub fn fifo() -> Self {
        TopicSpec {
            fifo: true,
            ..TopicSpec::default()
        }
    }
}

/// A topic as `GET /v1/topics/{topic}` describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopicInfo {
    /// The topic's name, when the server includes it.
    #[serde(default)]
    pub name: Option<String>,
    /// Its configuration.
    #[serde(flatten)]
    pub spec: TopicSpec,
}

/// `POST /v1/topics/{topic}/publish` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Publish {
    /// The event: any JSON value.
    pub message: Value,
    /// Message attributes, matched by `MessageAttributes`-scope filter policies.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: Attributes,
    /// FIFO only: the ordering group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// FIFO only: deduplication id (a second message with the same id in the dedup window
    /// is accepted and dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_id: Option<String>,
}

impl Publish {
    /// A message without attributes.
    pub fn new(message: Value) -> Self {
        Publish {
            message,
            attributes: Attributes::new(),
            group_id: None,
            dedup_id: None,
        }
    }

    /// Adds an attribute.
    pub fn attribute(mut self, name: impl Into<String>, value: impl Into<AttributeValue>) -> Self {
        self.attributes.insert(name.into(), value.into());
        self
    }

    /// Sets the FIFO message group.
    pub fn group_id(mut self, group_id: impl Into<String>) -> Self {
        self.group_id = Some(group_id.into());
        self
    }

    /// Sets the FIFO deduplication id.
    pub fn dedup_id(mut self, dedup_id: impl Into<String>) -> Self {
        self.dedup_id = Some(dedup_id.into());
        self
    }

    /// Makes this message a batch entry with the given id.
    pub fn entry(self, id: impl Into<String>) -> BatchEntry<Publish> {
        BatchEntry {
            id: id.into(),
            item: self,
        }
    }
}

/// `POST /v1/queues/{queue}/messages` body (one message).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendMessage {
    /// The message: any JSON value.
    pub message: Value,
    /// Message attributes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: Attributes,
    /// Seconds before the message becomes visible; overrides the queue's `delay_s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_s: Option<u32>,
    /// FIFO only: the ordering group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// FIFO only: deduplication id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup_id: Option<String>,
}

impl SendMessage {
    /// A message without attributes or delay.
    pub fn new(message: Value) -> Self {
        SendMessage {
            message,
            attributes: Attributes::new(),
            delay_s: None,
            group_id: None,
            dedup_id: None,
        }
    }

    /// Adds an attribute.
    pub fn attribute(mut self, name: impl Into<String>, value: impl Into<AttributeValue>) -> Self {
        self.attributes.insert(name.into(), value.into());
        self
    }

    /// Delays this message.
    pub fn delay_s(mut self, delay_s: u32) -> Self {
        self.delay_s = Some(delay_s);
        self
    }

    /// Sets the FIFO message group.
    pub fn group_id(mut self, group_id: impl Into<String>) -> Self {
        self.group_id = Some(group_id.into());
        self
    }

    /// Sets the FIFO deduplication id.
    pub fn dedup_id(mut self, dedup_id: impl Into<String>) -> Self {
        self.dedup_id = Some(dedup_id.into());
        self
    }

    /// Makes this message a batch entry with the given id.
    pub fn entry(self, id: impl Into<String>) -> BatchEntry<SendMessage> {
        BatchEntry {
            id: id.into(),
            item: self,
        }
    }
}

/// One entry of a batch request: the item plus the caller's `id`, which the result echoes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchEntry<T> {
    /// Caller-chosen, unique within the request.
    pub id: String,
    /// The message.
    #[serde(flatten)]
    pub item: T,
}

/// `{"entries":[…]}`, the body of both batch calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch<T> {
    /// The entries, at most [`MAX_BATCH_ENTRIES`](super::MAX_BATCH_ENTRIES).
    pub entries: Vec<BatchEntry<T>>,
}

/// `{"message_id":…}`: the answer to a single publish or send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageIdResponse {
    /// The id the server gave the message.
    pub message_id: String,
}

/// The answer to a batch publish or send: which entries were stored, which were refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResult {
    /// Stored entries.
    #[serde(default)]
    pub successful: Vec<BatchSuccess>,
    /// Refused entries, each with the status a single request would have got.
    #[serde(default)]
    pub failed: Vec<BatchFailure>,
}

/// A stored batch entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchSuccess {
    /// The entry's `id` from the request.
    pub id: String,
    /// The id the server gave the message.
    pub message_id: String,
}

/// A refused batch entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchFailure {
    /// The entry's `id` from the request.
    pub id: String,
    /// The HTTP status a single request with this entry would have got.
    pub status: u16,
    /// Why the entry was refused.
    #[serde(default)]
    pub detail: String,
}

/// Where a subscription delivers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Endpoint {
    /// `{"queue":"q"}`.
    Queue {
        /// The queue's name.
        queue: String,
    },
    /// `{"stream":"s","partition_key":"/json/pointer"}`.
    Stream {
        /// The stream's name.
        stream: String,
        /// JSON pointer into the message that yields the partition key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        partition_key: Option<String>,
    },
    /// `{"http":{"url":…}}`.
    Http {
        /// The webhook.
        http: HttpEndpoint,
    },
    /// `{"function":"f"}`.
    Function {
        /// The function's name.
        function: String,
    },
}

impl Endpoint {
    /// A queue endpoint.
    pub fn queue(name: impl Into<String>) -> Self {
        Endpoint::Queue { queue: name.into() }
    }
}

/// A webhook endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpEndpoint {
    /// Where events are POSTed.
    pub url: String,
}

/// Which part of a message a filter policy looks at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum FilterPolicyScope {
    /// The message attributes (SNS default).
    #[default]
    MessageAttributes,
    /// The message body, which must then be a JSON object.
    MessageBody,
}

/// `PUT /v1/topics/{topic}/subscriptions/{name}` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionSpec {
    /// Where matching events go.
    pub endpoint: Endpoint,
    /// SNS filter policy; `null` delivers every event.
    #[serde(default)]
    pub filter_policy: Option<Value>,
    /// What the filter policy applies to.
    #[serde(default)]
    pub filter_policy_scope: FilterPolicyScope,
    /// Deliver the message itself instead of the notification envelope.
    #[serde(default)]
    pub raw_message_delivery: bool,
    /// Queue receiving events this subscription could not deliver.
    #[serde(default)]
    pub dead_letter_queue: Option<String>,
    /// Retry policy for `http` and `function` endpoints.
    #[serde(default)]
    pub delivery_policy: Option<Value>,
}

impl SubscriptionSpec {
    /// Every event, enveloped, to the named queue.
    pub fn to_queue(queue: impl Into<String>) -> Self {
        SubscriptionSpec {
            endpoint: Endpoint::queue(queue),
            filter_policy: None,
            filter_policy_scope: FilterPolicyScope::MessageAttributes,
            raw_message_delivery: false,
            dead_letter_queue: None,
            delivery_policy: None,
        }
    }

    /// Only events matching `policy` in `scope`.
    pub fn filter(mut self, scope: FilterPolicyScope, policy: Value) -> Self {
        self.filter_policy_scope = scope;
        self.filter_policy = Some(policy);
        self
    }

    /// Deliver the message itself, attributes as attributes.
    pub fn raw(mut self) -> Self {
        self.raw_message_delivery = true;
        self
    }
}

/// A subscription as `GET` describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionInfo {
    /// The subscription's name, when the server includes it.
    #[serde(default)]
    pub name: Option<String>,
    /// The topic, when the server includes it.
    #[serde(default)]
    pub topic: Option<String>,
    /// Its configuration.
    #[serde(flatten)]
    pub spec: SubscriptionSpec,
}

/// Moves messages received too often to a dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedrivePolicy {
    /// The dead-letter queue's name.
    pub dead_letter_queue: String,
    /// A message received more often than this moves to the dead-letter queue.
    pub max_receive_count: u32,
}

/// `PUT /v1/queues/{queue}` body; the defaults are the contract's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueSpec {
    /// First-in-first-out per message group, with deduplication. Name must end in `.fifo`.
    #[serde(default)]
    pub fifo: bool,
    /// Seconds a received message stays invisible to other receivers (0..=43200).
    #[serde(default = "QueueSpec::default_visibility_timeout_s")]
    pub visibility_timeout_s: u32,
    /// Seconds a new message stays invisible (0..=900).
    #[serde(default)]
    pub delay_s: u32,
    /// Seconds a message is kept (1..=1209600).
    #[serde(default = "QueueSpec::default_retention_s")]
    pub retention_s: u32,
    /// Largest accepted message, in bytes.
    #[serde(default = "QueueSpec::default_max_message_bytes")]
    pub max_message_bytes: u32,
    /// Default long-poll wait of a receive (0..=20).
    #[serde(default)]
    pub receive_wait_s: u32,
    /// Dead-letter queue and receive limit; `null` for none.
    #[serde(default)]
    pub redrive_policy: Option<RedrivePolicy>,
}

impl QueueSpec {
    fn default_visibility_timeout_s() -> u32 {
        30
    }
    fn default_retention_s() -> u32 {
        345_600
    }
    fn default_max_message_bytes() -> u32 {
        262_144
    }

    /// A FIFO queue with the default timers.
    pub fn fifo() -> Self {
        QueueSpec {
            fifo: true,
            ..QueueSpec::default()
        }
    }
}

impl Default for QueueSpec {
    fn default() -> Self {
        QueueSpec {
            fifo: false,
            visibility_timeout_s: Self::default_visibility_timeout_s(),
            delay_s: 0,
            retention_s: Self::default_retention_s(),
            max_message_bytes: Self::default_max_message_bytes(),
            receive_wait_s: 0,
            redrive_policy: None,
        }
    }
}

/// A queue as `GET /v1/queues/{queue}` describes it: configuration and approximate counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueInfo {
    /// The queue's name, when the server includes it.
    #[serde(default)]
    pub name: Option<String>,
    /// Its configuration.
    #[serde(flatten)]
    pub spec: QueueSpec,
    /// Messages that a receive could return now.
    #[serde(default)]
    pub approximate_visible: u64,
    /// Messages received and neither acknowledged nor visible again.
    #[serde(default)]
    pub approximate_in_flight: u64,
    /// Messages whose delay has not passed yet.
    #[serde(default)]
    pub approximate_delayed: u64,
}

/// `POST /v1/queues/{queue}/receive` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receive {
    /// 1..=10.
    pub max_messages: u32,
    /// Long-poll: seconds to wait for a first message (0..=20).
    pub wait_s: u32,
    /// Overrides the queue's visibility timeout for the messages returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility_timeout_s: Option<u32>,
}

impl Receive {
    /// Up to `max_messages`, without waiting.
    pub fn new(max_messages: u32) -> Self {
        Receive {
            max_messages,
            wait_s: 0,
            visibility_timeout_s: None,
        }
    }

    /// Waits up to `wait_s` seconds for a first message.
    pub fn wait_s(mut self, wait_s: u32) -> Self {
        self.wait_s = wait_s;
        self
    }

    /// Hides the returned messages for `seconds` instead of the queue's default.
    pub fn visibility_timeout_s(mut self, seconds: u32) -> Self {
        self.visibility_timeout_s = Some(seconds);
        self
    }
}

/// The answer to a receive.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Received {
    /// At most `max_messages`; empty when none was visible within the wait.
    #[serde(default)]
    pub messages: Vec<ReceivedMessage>,
}

/// A received message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceivedMessage {
    /// The queue message's id.
    pub message_id: String,
    /// The handle for `ack` and `visibility`, valid until the message is received again.
    pub receipt: String,
    /// The message: what was sent, the published message (raw delivery) or the notification
    /// envelope (see [`Notification`]).
    pub message: Value,
    /// Attributes in SNS form.
    #[serde(default)]
    pub attributes: ReceivedAttributes,
    /// How often this message has been received, this time included.
    pub receive_count: u32,
    /// When the message entered the queue, as the server writes it.
    #[serde(default)]
    pub sent_at: Value,
}

impl ReceivedMessage {
    /// Reads the message as the notification envelope of a non-raw topic subscription.
    pub fn notification(&self) -> Result<Notification, serde_json::Error> {
        Notification::deserialize(&self.message)
    }
}

/// The envelope a subscription without raw delivery wraps around each event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Always `Notification`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The id the publish returned.
    pub message_id: String,
    /// The topic it was published to.
    pub topic: String,
    /// The subscription that delivered it.
    pub subscription: String,
    /// The published message.
    pub message: Value,
    /// The published attributes, in SNS form.
    #[serde(default)]
    pub attributes: ReceivedAttributes,
    /// When it was published, as the server writes it.
    #[serde(default)]
    pub published_at: Value,
}

/// `POST /v1/queues/{queue}/ack` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Receipts of the messages to delete.
    pub receipts: Vec<String>,
}

/// `{"acked":N}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acked {
    /// How many messages were deleted.
    pub acked: u64,
}

/// `POST /v1/queues/{queue}/visibility` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeVisibility {
    /// The message's current receipt.
    pub receipt: String,
    /// Seconds from now until it becomes visible again; 0 makes it visible at once.
    pub timeout_s: u32,
}

/// `{"moved":N}`: the answer to a redrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moved {
    /// How many messages went back to their source queue.
    pub moved: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn attribute_values_serialize_in_the_shapes_the_contract_accepts() {
        let publish = Publish::new(json!({"a": 1}))
            .attribute("s", "red")
            .attribute("n", 5)
            .attribute("t", MessageAttribute::number("1.50"))
            .attribute("l", AttributeValue::Array(vec![json!("x"), json!(2)]));
        assert_eq!(
            serde_json::to_value(&publish).unwrap(),
            json!({
                "message": {"a": 1},
                "attributes": {
                    "l": ["x", 2],
                    "n": 5,
                    "s": "red",
                    "t": {"Type": "Number", "Value": "1.50"}
                }
            })
        );
    }

    #[test]
    fn batch_entry_flattens_the_item_next_to_its_id() {
        let batch = Batch {
            entries: vec![SendMessage::new(json!("hi")).delay_s(3).entry("e1")],
        };
        assert_eq!(
            serde_json::to_value(&batch).unwrap(),
            json!({"entries": [{"id": "e1", "message": "hi", "delay_s": 3}]})
        );
    }

    #[test]
    fn endpoints_serialize_as_single_key_objects() {
        assert_eq!(
            serde_json::to_value(Endpoint::queue("q")).unwrap(),
            json!({"queue": "q"})
        );
        let http: Endpoint = serde_json::from_value(json!({"http": {"url": "http://x"}})).unwrap();
        assert_eq!(
            http,
            Endpoint::Http {
                http: HttpEndpoint {
                    url: "http://x".into()
                }
            }
        );
        let stream: Endpoint =
            serde_json::from_value(json!({"stream": "s", "partition_key": "/id"})).unwrap();
        assert!(matches!(stream, Endpoint::Stream { .. }));
    }

    #[test]
    fn queue_info_reads_counts_next_to_the_configuration() {
        let info: QueueInfo = serde_json::from_value(json!({
            "name": "q",
            "fifo": false,
            "visibility_timeout_s": 5,
            "approximate_visible": 3,
            "approximate_in_flight": 1,
            "approximate_delayed": 2,
            "created_at": "later additions are ignored"
        }))
        .unwrap();
        assert_eq!(info.spec.visibility_timeout_s, 5);
        assert_eq!(info.spec.retention_s, 345_600);
        assert_eq!(
            (
                info.approximate_visible,
                info.approximate_in_flight,
                info.approximate_delayed
            ),
            (3, 1, 2)
        );
    }

    #[test]
    fn received_envelope_reads_as_a_notification() {
        let received: ReceivedMessage = serde_json::from_value(json!({
            "message_id": "m1",
            "receipt": "r1",
            "message": {
                "type": "Notification",
                "message_id": "p1",
                "topic": "orders",
                "subscription": "all",
                "message": {"id": 7},
                "attributes": {"color": {"Type": "String", "Value": "red"}},
                "published_at": "2026-01-01T00:00:00Z"
            },
            "attributes": {},
            "receive_count": 1,
            "sent_at": 1
        }))
        .unwrap();
        let envelope = received.notification().unwrap();
        assert_eq!(envelope.message_id, "p1");
        assert_eq!(
            envelope.attributes["color"],
            MessageAttribute::string("red")
        );
    }
}
