//! The publish pipeline: check the message, match it against the topic's subscriptions,
//! and store every matched delivery in one durable write before answering.

use super::{Router, RouterError, TopicState};
use crate::backend::{Delivery, Enqueued, NewMessage, NewRecord, Stored, now_ms};
use crate::hex;
use crate::model::{Endpoint, Kind};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// Longest FIFO group or deduplication id (SQS: 128 characters).
pub const MAX_FIFO_ID_LEN: usize = 128;

/// `POST /v1/topics/{topic}/publish` body, also one entry of a batch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    pub message: Box<RawValue>,
    #[serde(default)]
    pub attributes: Option<serde_json::Value>,
    #[serde(default)]
    pub group_id: Option<String>,
    #[serde(default)]
    pub dedup_id: Option<String>,
    /// Batch entries only: the caller's id for the entry.
    #[serde(default)]
    pub id: Option<String>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct PublishOutcome {
    pub message_id: String,
    /// Subscriptions that received the message.
    pub delivered: usize,
}

/// A message checked against its topic, ready to fan out.
struct Checked {
    message_id: String,
    deliveries: Vec<Delivery>,
}

/// The SNS-style notification a subscriber receives unless raw delivery is on.
///
/// The subscription comes last, so a publish serializes the envelope once, without it:
/// that is what every `http` and `function` subscription's delivery queue stores (the
/// same bytes, which the backend keeps once, the worker appending its subscription), and
/// a queue or stream subscription gets it with its subscription appended
/// ([`crate::deliver::with_subscription`]), which gives what this serializes with it.
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
    subscription: Option<&'a str>,
}

impl Router {
    /// Publishes one message; answers once every matched delivery is durably stored.
    pub async fn publish(
        &self,
        topic: &str,
        req: PublishRequest,
    ) -> Result<PublishOutcome, RouterError> {
        let t = self.topic(topic)?;
        let checked = self.check(&t, req)?;
        let delivered = checked.deliveries.len();
        let results = self.backend.store(checked.deliveries).await?;
        Ok(PublishOutcome {
            message_id: original_id(&results).unwrap_or(checked.message_id),
            delivered,
        })
    }

    /// Publishes many messages with one durable write; each entry succeeds or fails alone.
    pub async fn publish_batch(
        &self,
        topic: &str,
        entries: Vec<PublishRequest>,
    ) -> Result<Vec<(String, Result<PublishOutcome, RouterError>)>, RouterError> {
        let t = self.topic(topic)?;
        let mut out = Vec::with_capacity(entries.len());
        let mut all = Vec::new();
        let mut spans = Vec::new();
        for (i, mut req) in entries.into_iter().enumerate() {
            let id = super::batch_entry_id(req.id.take(), i);
            match self.check(&t, req) {
                Ok(c) => {
                    spans.push((
                        out.len(),
                        all.len(),
                        c.deliveries.len(),
                        c.message_id.clone(),
                    ));
                    all.extend(c.deliveries);
                    out.push((
                        id,
                        Ok(PublishOutcome {
                            message_id: c.message_id,
                            delivered: 0,
                        }),
                    ));
                }
                Err(e) => out.push((id, Err(e))),
            }
        }
        super::distinct_ids(&out)?;
        let results = self.backend.store(all).await?;
        for (slot, start, n, mid) in spans {
            if let (_, Ok(o)) = &mut out[slot] {
                o.delivered = n;
                o.message_id = original_id(&results[start..start + n]).unwrap_or(mid);
            }
        }
        Ok(out)
    }

    fn check(&self, t: &TopicState, req: PublishRequest) -> Result<Checked, RouterError> {
        let body = req.message.get().as_bytes();
        let attributes = crate::model::attributes::from_api(req.attributes.as_ref())?;
        let size = body.len() + crate::model::attributes::byte_len(&attributes);
        let max = t.spec.max_message_bytes();
        if size > max {
            return Err(RouterError::TooLarge {
                kind: Kind::Topic,
                name: t.name.clone(),
                size,
                max,
            });
        }
        let (group, dedup) = fifo_ids(
            Kind::Topic,
            &t.name,
            t.spec.fifo,
            t.spec.content_based_dedup,
            req.group_id,
            req.dedup_id,
            body,
        )?;
        if let Some(schema) = &t.schema {
            let value: serde_json::Value = serde_json::from_str(req.message.get())
                .map_err(|e| RouterError::Invalid(format!("message is not valid JSON: {e}")))?;
            if let Some(e) = schema.iter_errors(&value).next() {
                let pointer = e.instance_path().to_string();
                return Err(RouterError::SchemaViolation {
                    topic: t.name.clone(),
                    pointer: if pointer.is_empty() {
                        "/".into()
                    } else {
                        pointer
                    },
                    message: e.to_string(),
                });
            }
        }

        let message_id = uuid::Uuid::now_v7().to_string();
        let mut matched = Vec::new();
        // `body` is a `RawValue`'s text, which is what the matcher's contract asks for.
        t.matcher.matches(body, &attributes, &mut matched);
        let mut deliveries = Vec::with_capacity(matched.len());
        if !matched.is_empty() {
            let sns_attrs = attributes.to_sns_json();
            let published_at = crate::time::rfc3339_ms(now_ms());
            // Serialized once and copied into every subscription's envelope, instead of
            // serializing the map again for each.
            let sns_attrs =
                serde_json::value::to_raw_value(&sns_attrs).expect("JSON values serialize");
            let sns_attrs_bytes = sns_attrs.get().as_bytes().to_vec();
            // Parsed only when a stream subscription needs a partition key from it.
            let mut parsed: Option<Option<serde_json::Value>> = None;
            let envelope = || {
                serde_json::to_vec(&Envelope {
                    kind: "Notification",
                    message_id: &message_id,
                    topic: &t.name,
                    message: &req.message,
                    attributes: &sns_attrs,
                    published_at: &published_at,
                    subscription: None,
                })
                .expect("envelope serializes")
            };
            // The envelope without a subscription, serialized once for the publish: what
            // every delivery queue stores, and what each other subscription's envelope
            // is completed from.
            let mut for_workers: Option<Vec<u8>> = None;
            for id in matched {
                let name = &t.sub_order[id as usize];
                let sub = &t.subscriptions[name];
                let payload = |for_workers: &mut Option<Vec<u8>>| {
                    if sub.raw_message_delivery {
                        body.to_vec()
                    } else {
                        crate::deliver::with_subscription(
                            for_workers.get_or_insert_with(envelope),
                            name,
                        )
                    }
                };
                match &sub.endpoint {
                    Endpoint::Http(_) | Endpoint::Function(_) => {
                        let q = crate::deliver::delivery_queue_name(&t.name, name);
                        let Some(h) = self.backend.queue(&q) else {
                            tracing::error!(topic = %t.name, subscription = %name, "delivery queue missing; delivery skipped");
                            continue;
                        };
                        deliveries.push(Delivery::Queue(
                            h,
                            NewMessage {
                                message_id: message_id.clone(),
                                // The worker needs everything the envelope carries,
                                // whatever format it finally sends.
                                payload: for_workers.get_or_insert_with(envelope).clone(),
                                attributes: b"{}".to_vec(),
                                delay_ms: 0,
                                group: None,
                                dedup_id: None,
                            },
                        ));
                    }
                    Endpoint::Queue(q) => {
                        let Some(h) = self.backend.queue(q).or_else(|| {
                            let dlq = sub
                                .dead_letter_queue
                                .as_deref()
                                .and_then(|d| self.backend.queue(d));
                            tracing::warn!(topic = %t.name, subscription = %name, queue = %q, dead_letter = dlq.is_some(), "subscribed queue no longer exists");
                            dlq
                        }) else {
                            continue;
                        };
                        let fifo_queue = h.is_fifo();
                        let attrs = if sub.raw_message_delivery {
                            sns_attrs_bytes.clone()
                        } else {
                            b"{}".to_vec()
                        };
                        deliveries.push(Delivery::Queue(
                            h,
                            NewMessage {
                                message_id: message_id.clone(),
                                payload: payload(&mut for_workers),
                                attributes: attrs,
                                delay_ms: 0,
                                group: group.clone().filter(|_| fifo_queue),
                                dedup_id: dedup.clone().filter(|_| fifo_queue),
                            },
                        ));
                    }
                    Endpoint::Stream {
                        stream,
                        partition_key,
                    } => {
                        let Some(h) = self.backend.stream(stream) else {
                            tracing::warn!(topic = %t.name, subscription = %name, stream = %stream, "subscribed stream no longer exists");
                            continue;
                        };
                        let key = partition_key
                            .as_deref()
                            .and_then(|p| {
                                parsed
                                    .get_or_insert_with(|| serde_json::from_slice(body).ok())
                                    .as_ref()
                                    .and_then(|v| v.pointer(p))
                                    .and_then(key_text)
                            })
                            .unwrap_or_else(|| message_id.clone());
                        let shard = crate::stream::shard_for_hash(
                            crate::stream::hash_key(&key),
                            h.shard_count(),
                        );
                        deliveries.push(Delivery::Stream(
                            h,
                            shard,
                            NewRecord {
                                partition_key: key,
                                explicit_hash_key: None,
                                data: payload(&mut for_workers),
                            },
                        ));
                    }
                }
            }
        }
        Ok(Checked {
            message_id,
            deliveries,
        })
    }
}

/// When every delivery was a duplicate, the message id of the original publish.
fn original_id(results: &[Stored]) -> Option<String> {
    let mut original = None;
    for r in results {
        match r {
            Stored::Queue(Enqueued::Duplicate {
                original_message_id,
            }) => original = Some(original_message_id.clone()),
            _ => return None,
        }
    }
    original
}

/// A partition key taken from the message: strings as they are, other scalars as their
/// JSON text; null, objects and arrays give none (the message id is used instead).
fn key_text(v: &serde_json::Value) -> Option<String> {
    let k = match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::Bool(b) => b.to_string(),
        _ => return None,
    };
    (!k.is_empty() && k.len() <= crate::model::MAX_PARTITION_KEY_LEN).then_some(k)
}

/// Checks the FIFO ids of a publish or send and derives the deduplication id.
pub(crate) fn fifo_ids(
    kind: Kind,
    name: &str,
    fifo: bool,
    content_based_dedup: bool,
    group_id: Option<String>,
    dedup_id: Option<String>,
    body: &[u8],
) -> Result<(Option<Arc<str>>, Option<String>), RouterError> {
    if !fifo {
        if group_id.is_some() || dedup_id.is_some() {
            return Err(RouterError::Invalid(format!(
                "group_id and dedup_id are only for FIFO resources; {kind} {name:?} is not FIFO"
            )));
        }
        return Ok((None, None));
    }
    let Some(group) = group_id else {
        return Err(RouterError::Invalid(format!(
            "FIFO {kind} {name:?} needs a group_id on every message"
        )));
    };
    for (field, v) in [("group_id", Some(&group)), ("dedup_id", dedup_id.as_ref())] {
        if let Some(v) = v
            && (v.is_empty()
                || v.len() > MAX_FIFO_ID_LEN
                || !v.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(RouterError::Invalid(format!(
                "{field} must be 1 to {MAX_FIFO_ID_LEN} printable ASCII characters"
            )));
        }
    }
    let dedup = match dedup_id {
        Some(d) => d,
        None if content_based_dedup => hex(&Sha256::digest(body)),
        None => {
            return Err(RouterError::Invalid(format!(
                "FIFO {kind} {name:?} needs a dedup_id, or content_based_dedup enabled"
            )));
        }
    };
    Ok((Some(Arc::from(group.as_str())), Some(dedup)))
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
                subscription,
            })
            .unwrap()
        };
        let stored = envelope(None);
        assert_eq!(
            crate::deliver::with_subscription(&stored, "email-v2"),
            envelope(Some("email-v2"))
        );
    }
}
