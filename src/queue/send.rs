//! Sending straight to a queue: each message checked against the queue's size, delay and
//! FIFO rules, the accepted ones stored with one durable write.

use super::{Queues, fifo_ids};
use crate::backend::{Enqueued, NewMessage};
use crate::error::OpError;
use crate::model::attributes;
use crate::model::{Kind, MAX_DELAY_S, QueueSpec};
use crate::wire::SendRequest;

impl Queues {
    /// Sends messages to a queue; each entry succeeds or fails alone (with its message id,
    /// or the original's when it was a duplicate), and the accepted ones are stored with
    /// one durable write.
    pub async fn send(
        &self,
        queue: &str,
        entries: Vec<SendRequest>,
    ) -> Result<Vec<(String, Result<Sent, OpError>)>, OpError> {
        let h = self.queue(queue)?;
        let spec = h.spec();
        let mut out = Vec::with_capacity(entries.len());
        let mut batch = Vec::new();
        // Per accepted entry: its place in `out` and in `batch`, and its message id.
        let mut slots = Vec::new();
        for (i, mut req) in entries.into_iter().enumerate() {
            let id = crate::batch::entry_id(req.id.take(), i);
            match check(queue, &spec, req) {
                Ok(m) => {
                    slots.push((out.len(), batch.len(), m.message_id.clone()));
                    out.push((id, Ok(Sent::default())));
                    batch.push((h.clone(), m));
                }
                Err(e) => out.push((id, Err(e))),
            }
        }
        crate::batch::distinct_ids(&out)?;
        let results = self.backend.enqueue(batch).await?;
        self.telemetry
            .queues
            .get(queue)
            .sent
            .add(results.len() as u64);
        for (slot, i, message_id) in slots {
            out[slot].1 = Ok(match &results[i] {
                Enqueued::Stored { sequence } => Sent {
                    message_id,
                    sequence: spec.fifo.then_some(*sequence),
                },
                Enqueued::Duplicate {
                    original_message_id,
                } => Sent {
                    message_id: original_message_id.clone(),
                    sequence: None,
                },
            });
        }
        Ok(out)
    }
}

/// A message sent: its id, and for a FIFO queue its sequence number (not known for a
/// duplicate, which is the original message).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sent {
    pub message_id: String,
    pub sequence: Option<u64>,
}

/// A send checked against its queue: the message to store, with its new id.
fn check(queue: &str, spec: &QueueSpec, req: SendRequest) -> Result<NewMessage, OpError> {
    let body = req.message.get().as_bytes();
    let attributes = attributes::from_api(req.attributes.as_ref())?;
    let size = body.len() + attributes::byte_len(&attributes);
    if size > spec.max_message_bytes {
        return Err(OpError::TooLarge {
            kind: Kind::Queue,
            name: queue.to_string(),
            size,
            max: spec.max_message_bytes,
        });
    }
    let delay_s = req.delay_s.unwrap_or(spec.delay_s);
    if delay_s > MAX_DELAY_S {
        return Err(OpError::Invalid(format!(
            "delay_s must be between 0 and {MAX_DELAY_S}, got {delay_s}"
        )));
    }
    if spec.fifo && req.delay_s.is_some() {
        return Err(OpError::Invalid(
            "FIFO queues take no per-message delay_s (set the queue's delay_s)".into(),
        ));
    }
    let (group, dedup_id) = fifo_ids(
        Kind::Queue,
        queue,
        spec.fifo,
        spec.content_based_dedup,
        req.group_id,
        req.dedup_id,
        body,
    )?;
    Ok(NewMessage {
        message_id: uuid::Uuid::now_v7().to_string(),
        payload: body.to_vec(),
        attributes: serde_json::to_vec(&attributes.to_sns_json()).expect("JSON values serialize"),
        delay_ms: delay_s * 1000,
        group,
        dedup_id,
    })
}
