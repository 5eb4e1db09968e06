//! The events a function receives, made from what storage holds: a subscription's
//! delivery (the envelope), an asynchronous invocation's payload, a queue's message or a
//! stream's record; and the record of what became of an asynchronous invocation.

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

/// Where an asynchronous invocation's region is kept among its stored attributes: the
/// region its caller signed for, which the function's ARN in its record names.
pub const REGION_ATTRIBUTE: &str = "Region";

/// The record of what became of an asynchronous invocation, as Lambda sends it to a
/// destination: `condition` is `Success`, `RetriesExhausted` or `EventAgeExceeded`,
/// `invocations` how many times it ran, `error` why its last run failed.
pub(super) fn invocation_record(
    function: &str,
    m: &Received,
    condition: &str,
    invocations: u32,
    error: Option<&str>,
    now_ms: u64,
) -> String {
    let attributes: Value = serde_json::from_slice(&m.attributes).unwrap_or_default();
    let region = attributes[REGION_ATTRIBUTE]["Value"]
        .as_str()
        .unwrap_or(crate::model::arn::DEFAULT_REGION);
    let request = serde_json::from_slice::<Value>(&m.payload)
        .unwrap_or_else(|_| String::from_utf8_lossy(&m.payload).into_owned().into());
    let mut record = serde_json::json!({
        "version": "1.0",
        "timestamp": crate::time::rfc3339_ms(now_ms),
        "requestContext": {
            "requestId": m.message_id,
            "functionArn": format!("{}:$LATEST", crate::model::arn::function_arn(region, function)),
            "condition": condition,
            "approximateInvokeCount": invocations,
        },
        "requestPayload": request,
    });
    if invocations > 0 {
        record["responseContext"] = serde_json::json!({
            "statusCode": 200,
            "executedVersion": "$LATEST",
        });
        // A handler answers nothing but success or an error.
        record["responsePayload"] = match error {
            Some(e) => {
                record["responseContext"]["functionError"] = "Unhandled".into();
                serde_json::json!({ "errorMessage": e })
            }
            None => Value::Null,
        };
    }
    record.to_string()
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
