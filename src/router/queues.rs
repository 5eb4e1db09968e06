//! SQS semantics over HTTP: send, receive with long polling, acknowledge, change
//! visibility, purge and redrive. Parameter checks live here; the bookkeeping is the
//! backend's.

use super::publish::fifo_ids;
use super::{Router, RouterError};
use crate::backend::{Counts, NewMessage, Queue, ReceiptError, Received};
use crate::model::{Kind, MAX_DELAY_S, MAX_RECEIVE_WAIT_S, MAX_VISIBILITY_TIMEOUT_S};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::time::Duration;

/// SQS returns at most 10 messages per receive.
pub const MAX_RECEIVE_BATCH: usize = 10;

/// `POST /v1/queues/{queue}/messages` body, also one entry of a batch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    pub message: Box<RawValue>,
    #[serde(default)]
    pub attributes: Option<serde_json::Value>,
    #[serde(default)]
    pub delay_s: Option<u64>,
    #[serde(default)]
    pub group_id: Option<String>,
    #[serde(default)]
    pub dedup_id: Option<String>,
    /// Batch entries only: the caller's id for the entry.
    #[serde(default)]
    pub id: Option<String>,
}

/// `POST /v1/queues/{queue}/receive` body.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ReceiveRequest {
    #[serde(default)]
    pub max_messages: Option<usize>,
    #[serde(default)]
    pub wait_s: Option<u64>,
    #[serde(default)]
    pub visibility_timeout_s: Option<u64>,
}

impl Router {
    /// A user's queue; delivery queues are internal and not reachable through the API.
    pub fn queue(&self, name: &str) -> Result<Queue, RouterError> {
        self.backend
            .queue(name)
            .filter(|_| !crate::deliver::is_internal(name))
            .ok_or_else(|| RouterError::not_found(Kind::Queue, name))
    }

    /// Sends messages straight to a queue; each entry succeeds or fails alone, and the
    /// accepted ones are stored with one durable write.
    pub async fn send(
        &self,
        queue: &str,
        entries: Vec<SendRequest>,
    ) -> Result<Vec<(String, Result<String, RouterError>)>, RouterError> {
        let h = self.queue(queue)?;
        let spec = h.spec();
        let mut out = Vec::with_capacity(entries.len());
        let mut batch = Vec::new();
        let mut slots = Vec::new();
        for (i, mut req) in entries.into_iter().enumerate() {
            let id = super::batch_entry_id(req.id.take(), i);
            let checked = (|| {
                let body = req.message.get().as_bytes();
                let attributes = crate::model::attributes::from_api(req.attributes.as_ref())?;
                let size = body.len() + crate::model::attributes::byte_len(&attributes);
                if size > spec.max_message_bytes {
                    return Err(RouterError::TooLarge {
                        kind: Kind::Queue,
                        name: queue.to_string(),
                        size,
                        max: spec.max_message_bytes,
                    });
                }
                let delay_s = req.delay_s.unwrap_or(spec.delay_s);
                if delay_s > MAX_DELAY_S {
                    return Err(RouterError::Invalid(format!(
                        "delay_s must be between 0 and {MAX_DELAY_S}, got {delay_s}"
                    )));
                }
                if spec.fifo && req.delay_s.is_some() {
                    return Err(RouterError::Invalid(
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
                    attributes: serde_json::to_vec(&attributes.to_sns_json())
                        .expect("JSON values serialize"),
                    delay_ms: delay_s * 1000,
                    group,
                    dedup_id,
                })
            })();
            match checked {
                Ok(m) => {
                    slots.push((out.len(), batch.len(), m.message_id.clone()));
                    out.push((id, Ok(String::new())));
                    batch.push((h.clone(), m));
                }
                Err(e) => out.push((id, Err(e))),
            }
        }
        super::distinct_ids(&out)?;
        let results = self.backend.enqueue(batch).await?;
        for (slot, i, mid) in slots {
            out[slot].1 = Ok(match &results[i] {
                crate::backend::Enqueued::Stored => mid,
                crate::backend::Enqueued::Duplicate {
                    original_message_id,
                } => original_message_id.clone(),
            });
        }
        Ok(out)
    }

    /// Receives up to `max_messages`, waiting up to `wait_s` for the first to arrive.
    pub async fn receive(
        &self,
        queue: &str,
        req: ReceiveRequest,
    ) -> Result<Vec<Received>, RouterError> {
        let h = self.queue(queue)?;
        let spec = h.spec();
        let max = req.max_messages.unwrap_or(1);
        if !(1..=MAX_RECEIVE_BATCH).contains(&max) {
            return Err(RouterError::Invalid(format!(
                "max_messages must be between 1 and {MAX_RECEIVE_BATCH}, got {max}"
            )));
        }
        let wait_s = req.wait_s.unwrap_or(spec.receive_wait_s);
        if wait_s > MAX_RECEIVE_WAIT_S {
            return Err(RouterError::Invalid(format!(
                "wait_s must be between 0 and {MAX_RECEIVE_WAIT_S}, got {wait_s}"
            )));
        }
        let vis = req
            .visibility_timeout_s
            .unwrap_or(spec.visibility_timeout_s);
        if vis > MAX_VISIBILITY_TIMEOUT_S {
            return Err(RouterError::Invalid(format!(
                "visibility_timeout_s must be between 0 and {MAX_VISIBILITY_TIMEOUT_S}, got {vis}"
            )));
        }
        Ok(self
            .backend
            .receive(
                &h,
                max,
                vis * 1000,
                Duration::from_secs(wait_s),
                &self.shutdown,
            )
            .await?)
    }

    /// Acknowledges (deletes) messages; every receipt gets its own verdict.
    pub async fn ack(
        &self,
        queue: &str,
        receipts: &[String],
    ) -> Result<Vec<Result<(), ReceiptError>>, RouterError> {
        let h = self.queue(queue)?;
        Ok(self.backend.ack(&h, receipts).await?)
    }

    pub async fn change_visibility(
        &self,
        queue: &str,
        receipt: &str,
        timeout_s: u64,
    ) -> Result<(), RouterError> {
        let h = self.queue(queue)?;
        if timeout_s > MAX_VISIBILITY_TIMEOUT_S {
            return Err(RouterError::Invalid(format!(
                "timeout_s must be between 0 and {MAX_VISIBILITY_TIMEOUT_S}, got {timeout_s}"
            )));
        }
        self.backend
            .change_visibility(&h, receipt, timeout_s * 1000)
            .await??;
        Ok(())
    }

    pub async fn purge(&self, queue: &str) -> Result<u64, RouterError> {
        let h = self.queue(queue)?;
        Ok(self.backend.purge(&h).await?)
    }

    /// Moves a dead-letter queue's messages back to the queues they came from.
    pub async fn redrive(&self, dlq: &str) -> Result<u64, RouterError> {
        let h = self.queue(dlq)?;
        Ok(self.backend.redrive_back(&h).await?)
    }

    pub async fn counts(&self, queue: &str) -> Result<Counts, RouterError> {
        let h = self.queue(queue)?;
        Ok(self.backend.counts(&h).await?)
    }
}
