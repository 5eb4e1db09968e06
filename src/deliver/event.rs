//! The events a function receives, made from what storage holds: a subscription's
//! delivery (the envelope), an asynchronous invocation's payload, a queue's message or a
//! stream's record.

use super::http::Notification;
use crate::backend::{Received, StoredRecord};
use crate::runtime::{Attribute, AttributeValue, Body, Event};
use base64::Engine;
use serde_json::Value;

/// The event of a `function` subscription's delivery.
pub(super) fn from_notification(n: &Notification<'_>, m: &Received) -> Event {
    Event {
        id: n.message_id.to_string(),
        topic: n.topic.to_string(),
        subscription: n.subscription.to_string(),
        attributes: runtime_attributes(
            &serde_json::from_str(n.attributes.get()).unwrap_or_default(),
        ),
        body: Body::Text(n.message.get().to_string()),
        published_at_ms: m.sent_at,
        receive_count: m.receive_count,
    }
}

/// The event of an asynchronous (`Event`) invocation: its payload as it was sent, as a
/// synchronous invocation gets it, under the id its caller was answered with.
pub(super) fn from_invocation(m: &Received) -> Event {
    Event {
        id: m.message_id.clone(),
        topic: String::new(),
        subscription: String::new(),
        attributes: Vec::new(),
        body: Body::from_payload(m.payload.clone()),
        published_at_ms: m.sent_at,
        receive_count: m.receive_count,
    }
}

/// The event of a message a queue source received from `queue`.
pub(super) fn from_message(queue: &str, m: &Received) -> Event {
    Event {
        id: m.message_id.clone(),
        topic: String::new(),
        subscription: queue.to_string(),
        attributes: runtime_attributes(&serde_json::from_slice(&m.attributes).unwrap_or_default()),
        body: Body::Text(String::from_utf8_lossy(&m.payload).into_owned()),
        published_at_ms: m.sent_at,
        receive_count: m.receive_count,
    }
}

/// The event of a record a stream source read as a member of `group`.
pub(super) fn from_record(stream: &str, group: &str, rec: &StoredRecord) -> Event {
    Event {
        id: format!("{}:{}", crate::model::shard_id(rec.shard), rec.sequence),
        topic: stream.to_string(),
        subscription: group.to_string(),
        attributes: Vec::new(),
        body: Body::from_payload(rec.data.clone()),
        published_at_ms: rec.arrived_at,
        receive_count: 1,
    }
}

/// SNS-form attributes (as stored and delivered) as the handler world's attributes.
pub fn runtime_attributes(sns: &Value) -> Vec<Attribute> {
    let Some(map) = sns.as_object() else {
        return Vec::new();
    };
    map.iter()
        .filter_map(|(name, a)| {
            let t = a.get("Type")?.as_str()?;
            let v = a.get("Value")?.as_str()?.to_string();
            let value = match t.split('.').next().unwrap_or("") {
                _ if t == "String.Array" => AttributeValue::StringArray(
                    serde_json::from_str::<Vec<Value>>(&v)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|e| match e {
                            Value::String(s) => s,
                            other => other.to_string(),
                        })
                        .collect(),
                ),
                "Number" => AttributeValue::Number(v),
                "Binary" => AttributeValue::Binary(
                    base64::engine::general_purpose::STANDARD
                        .decode(&v)
                        .unwrap_or_default(),
                ),
                _ => AttributeValue::String(v),
            };
            Some(Attribute {
                name: name.clone(),
                value,
            })
        })
        .collect()
}
