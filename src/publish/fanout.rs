//! The last step before storing: one delivery for each subscription a message matched.
//!
//! A queue subscription gets the envelope (or, with raw delivery, the message and its
//! attributes), a stream subscription a record on the shard of its partition key, and an
//! `http` or `function` subscription an entry in its delivery queue, which its worker
//! consumes. The envelope is serialized once per publish, without a subscription: that is
//! what every delivery queue stores (the same bytes, which the backend keeps once), and a
//! queue or stream subscription gets it completed with its own name.

use super::TopicState;
use super::check::Message;
use super::subscriptions::Set;
use crate::backend::{Backend, Delivery, NewMessage, NewRecord};
use crate::deliver::{delivery_queue_name, with_subscription};
use crate::model::{
    Endpoint, MAX_PARTITION_KEY_LEN, Notification, SnsNotification, SubscriptionSpec,
};
use serde::Serialize;
use serde_json::value::RawValue;

/// The SNS-style notification a subscriber receives unless raw delivery is on.
///
/// The subscription comes last, so that the envelope serialized without it can be
/// completed by appending it ([`with_subscription`]).
#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message_id: &'a str,
    topic: &'a str,
    message: &'a RawValue,
    attributes: &'a RawValue,
    published_at: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscription: Option<&'a str>,
}

/// The deliveries of `message` to the subscriptions `matched` (the matcher's ids), each
/// with the id of its subscription. A subscription whose queue or stream no longer exists
/// gets none (or goes to its dead-letter queue), with a warning.
pub(super) fn deliveries(
    backend: &Backend,
    topic: &TopicState,
    subs: &Set,
    message: &Message,
    matched: Vec<u32>,
) -> Vec<(u32, Delivery)> {
    if matched.is_empty() {
        return Vec::new();
    }
    let mut fanout = Fanout::new(topic, message, backend.clock().now_ms());
    matched
        .into_iter()
        .filter_map(|id| {
            let sub = subs.entry(id)?;
            let delivery = fanout.delivery(backend, &sub.name, &sub.spec)?;
            Some((id, delivery))
        })
        .collect()
}

/// What the deliveries of one message share, each made at most once.
struct Fanout<'a> {
    topic: &'a TopicState,
    message: &'a Message,
    /// The attributes in SNS form, serialized once.
    sns_attributes: Box<RawValue>,
    published_at: String,
    /// The envelope without a subscription, once a delivery needed it.
    envelope: Option<Vec<u8>>,
    /// The message parsed, once a stream subscription needed a partition key from it.
    parsed: Option<Option<serde_json::Value>>,
}

impl<'a> Fanout<'a> {
    fn new(topic: &'a TopicState, message: &'a Message, now_ms: u64) -> Self {
        Fanout {
            topic,
            message,
            sns_attributes: serde_json::value::to_raw_value(&message.attributes.to_sns_json())
                .expect("JSON values serialize"),
            published_at: crate::time::rfc3339_ms(now_ms),
            envelope: None,
            parsed: None,
        }
    }

    fn delivery(
        &mut self,
        backend: &Backend,
        name: &str,
        sub: &SubscriptionSpec,
    ) -> Option<Delivery> {
        match &sub.endpoint {
            Endpoint::Http(_) | Endpoint::Function(_) => self.for_worker(backend, name),
            Endpoint::Queue(queue) => self.for_queue(backend, name, sub, queue),
            Endpoint::Stream {
                stream,
                partition_key,
            } => self.for_stream(backend, name, sub, stream, partition_key.as_deref()),
        }
    }

    /// The envelope without a subscription.
    fn envelope(&mut self) -> &[u8] {
        let (message, topic) = (self.message, self.topic);
        let (attributes, published_at) = (&self.sns_attributes, &self.published_at);
        self.envelope.get_or_insert_with(|| {
            serde_json::to_vec(&Envelope {
                kind: "Notification",
                message_id: &message.id,
                topic: &topic.name,
                message: &message.body,
                attributes,
                published_at,
                subject: message.subject.as_deref(),
                subscription: None,
            })
            .expect("an envelope serializes")
        })
    }

    /// The SNS notification of the message, for a topic ARN in `region` and an endpoint
    /// of kind `kind`.
    fn sns_notification(&self, region: &str, kind: &str) -> Vec<u8> {
        let message = self.message;
        let topic_arn = crate::model::arn::topic_arn(region, &self.topic.name);
        serde_json::to_vec(&SnsNotification {
            kind: "Notification",
            message_id: &message.id,
            topic_arn: &topic_arn,
            subject: message.subject.as_deref(),
            message: &message.text_for(kind),
            timestamp: &self.published_at,
            unsubscribe_url: None,
            message_attributes: (!message.attributes.is_empty()).then_some(&*self.sns_attributes),
        })
        .expect("a notification serializes")
    }

    /// What a queue or stream subscription receives: the message itself with raw
    /// delivery, else its envelope. `kind` is the endpoint's kind, which picks its text
    /// from a structured publish.
    fn payload(&mut self, name: &str, sub: &SubscriptionSpec, kind: &str) -> Vec<u8> {
        if sub.raw_message_delivery {
            return match &self.message.per_kind {
                Some(_) => crate::wire::message_of_text(&self.message.text_for(kind))
                    .get()
                    .as_bytes()
                    .to_vec(),
                None => self.message.body.get().as_bytes().to_vec(),
            };
        }
        match &sub.notification {
            Notification::Switchyard => with_subscription(self.envelope(), name),
            Notification::Sns { region, .. } => self.sns_notification(region, kind),
        }
    }

    /// An entry in the delivery queue of an `http` or `function` subscription: the
    /// envelope without a subscription, which the worker completes, since it needs
    /// everything the envelope carries whatever format it finally sends.
    fn for_worker(&mut self, backend: &Backend, name: &str) -> Option<Delivery> {
        let queue = delivery_queue_name(&self.topic.name, name);
        let Some(h) = backend.queue(&queue) else {
            tracing::error!(topic = %self.topic.name, subscription = %name, "delivery queue missing; delivery skipped");
            return None;
        };
        Some(Delivery::Queue(
            h,
            NewMessage {
                message_id: self.message.id.clone(),
                payload: self.envelope().to_vec(),
                attributes: b"{}".to_vec(),
                delay_ms: 0,
                group: None,
                dedup_id: None,
            },
        ))
    }

    fn for_queue(
        &mut self,
        backend: &Backend,
        name: &str,
        sub: &SubscriptionSpec,
        queue: &str,
    ) -> Option<Delivery> {
        let h = backend.queue(queue).or_else(|| {
            let dlq = sub
                .dead_letter_queue
                .as_deref()
                .and_then(|d| backend.queue(d));
            tracing::warn!(topic = %self.topic.name, subscription = %name, queue, dead_letter = dlq.is_some(), "subscribed queue no longer exists");
            dlq
        })?;
        let fifo = h.is_fifo();
        let attributes = if sub.raw_message_delivery {
            self.sns_attributes.get().as_bytes().to_vec()
        } else {
            b"{}".to_vec()
        };
        Some(Delivery::Queue(
            h,
            NewMessage {
                message_id: self.message.id.clone(),
                payload: self.payload(name, sub, "sqs"),
                attributes,
                delay_ms: 0,
                group: self.message.group.clone().filter(|_| fifo),
                dedup_id: self.message.dedup.clone().filter(|_| fifo),
            },
        ))
    }

    fn for_stream(
        &mut self,
        backend: &Backend,
        name: &str,
        sub: &SubscriptionSpec,
        stream: &str,
        partition_key: Option<&str>,
    ) -> Option<Delivery> {
        let Some(h) = backend.stream(stream) else {
            tracing::warn!(topic = %self.topic.name, subscription = %name, stream, "subscribed stream no longer exists");
            return None;
        };
        let key = partition_key
            .and_then(|pointer| self.key_at(pointer))
            .unwrap_or_else(|| self.message.id.clone());
        let shard = crate::stream::shard_for_hash(crate::stream::hash_key(&key), h.shard_count());
        Some(Delivery::Stream(
            h,
            shard,
            NewRecord {
                partition_key: key,
                explicit_hash_key: None,
                data: self.payload(name, sub, "firehose"),
            },
        ))
    }

    /// The partition key at a JSON pointer into the message: strings as they are, other
    /// scalars as their JSON text; null, objects, arrays and what is missing give none
    /// (the message id is used instead).
    fn key_at(&mut self, pointer: &str) -> Option<String> {
        let message: &'a Message = self.message;
        let body = message.body.get();
        let value = self
            .parsed
            .get_or_insert_with(|| serde_json::from_str(body).ok())
            .as_ref()?
            .pointer(pointer)?;
        let key = match value {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            _ => return None,
        };
        (!key.is_empty() && key.len() <= MAX_PARTITION_KEY_LEN).then_some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_completes_the_stored_envelope_into_the_one_a_queue_receives() {
        let message = RawValue::from_string(r#"{"order":"o-1","note":"}"}"#.into()).unwrap();
        let attributes =
            RawValue::from_string(r#"{"k":{"Type":"String","Value":"v"}}"#.into()).unwrap();
        let envelope = |subscription| {
            serde_json::to_vec(&Envelope {
                kind: "Notification",
                message_id: "m-1",
                topic: "orders",
                message: &message,
                attributes: &attributes,
                published_at: "2026-01-01T00:00:00.000Z",
                subject: Some("s"),
                subscription,
            })
            .unwrap()
        };
        let stored = envelope(None);
        assert_eq!(
            with_subscription(&stored, "email-v2"),
            envelope(Some("email-v2"))
        );
    }
}
