//! SQS semantics: send, receive with long polling, acknowledge, change visibility, purge,
//! redrive and message move tasks. Parameters are checked here against the queue's settings and SQS's limits;
//! the bookkeeping of visibility, receive counts and FIFO groups is the backend's.

mod fifo;
mod move_task;
mod receive;
mod redrive;
mod send;

pub use fifo::{MAX_FIFO_ID_LEN, fifo_ids};
pub use move_task::{MoveStatus, MoveTask};
pub use receive::MAX_RECEIVE_BATCH;
pub use send::Sent;

use redrive::{Held, REDRIVE_BATCH};

use crate::backend::{Backend, Counts, Queue, QueueKind};
use crate::error::OpError;
use crate::model::Kind;
use crate::telemetry::Telemetry;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio_util::sync::CancellationToken;

/// A message's body as SQS clients see it: the text of a JSON string, else the JSON
/// itself. Only a string is parsed: a stored message is JSON written without leading
/// space, so its first byte says which it is, and an object or array is as it is stored.
pub fn body_text(payload: &[u8]) -> std::borrow::Cow<'_, str> {
    if payload.first() == Some(&b'"')
        && let Ok(text) = serde_json::from_slice::<String>(payload)
    {
        return std::borrow::Cow::Owned(text);
    }
    String::from_utf8_lossy(payload)
}

/// The queues as their users see them (delivery queues are internal and not reachable).
pub struct Queues {
    backend: Arc<Backend>,
    /// Cancelled at shutdown, so long polls answer instead of holding the drain up.
    shutdown: CancellationToken,
    /// Receives under way that may wait for a message.
    waiting: AtomicU64,
    /// Message move tasks started on this router.
    move_tasks: move_task::MoveTasks,
    /// Where each queue's traffic is counted.
    telemetry: Arc<Telemetry>,
}

impl Queues {
    pub fn new(
        backend: Arc<Backend>,
        shutdown: CancellationToken,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        Self {
            backend,
            shutdown,
            waiting: AtomicU64::new(0),
            move_tasks: move_task::MoveTasks::default(),
            telemetry,
        }
    }

    /// Receives under way that asked to wait for a message (a long poll), whether or not
    /// they are waiting this moment.
    pub fn receives_waiting(&self) -> u64 {
        self.waiting.load(Ordering::Relaxed)
    }

    /// A user's queue.
    pub fn queue(&self, name: &str) -> Result<Queue, OpError> {
        self.backend
            .queue(name)
            .filter(|q| q.kind() == QueueKind::User)
            .ok_or_else(|| OpError::not_found(Kind::Queue, name))
    }

    /// Names of the user's queues, sorted.
    pub fn names(&self) -> Vec<String> {
        self.backend.queue_names()
    }

    /// Deletes every message; returns how many.
    pub async fn purge(&self, queue: &str) -> Result<u64, OpError> {
        let h = self.queue(queue)?;
        Ok(self.backend.purge(&h).await?)
    }

    /// Messages visible, in flight and delayed.
    pub async fn counts(&self, queue: &str) -> Result<Counts, OpError> {
        let h = self.queue(queue)?;
        Ok(self.backend.counts(&h).await?)
    }
}

/// What a function's queue source does through the queue semantics here.
#[async_trait::async_trait]
impl crate::deliver::QueueFeed for Queues {
    async fn receive(
        &self,
        queue: &str,
        max: usize,
        wait: std::time::Duration,
        stop: &CancellationToken,
    ) -> Result<Vec<crate::backend::Received>, crate::deliver::FeedError> {
        let h = self.queue(queue)?;
        let visibility_ms = h.spec().visibility_timeout_s * 1000;
        Ok(self.take(&h, max, visibility_ms, wait, stop).await?)
    }

    async fn ack(&self, queue: &str, receipts: &[String]) -> Result<(), crate::deliver::FeedError> {
        Queues::ack(self, queue, receipts).await?;
        Ok(())
    }

    async fn send_json(
        &self,
        queue: &str,
        message: String,
    ) -> Result<(), crate::deliver::FeedError> {
        let req = crate::wire::SendRequest {
            message: serde_json::value::RawValue::from_string(message)?,
            attributes: None,
            delay_s: None,
            group_id: None,
            dedup_id: None,
            id: None,
        };
        for (_, sent) in Queues::send(self, queue, vec![req]).await? {
            sent?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_a_strings_text_or_the_json_as_stored() {
        assert_eq!(body_text(br#""a \"q\" \u00e9""#), "a \"q\" é");
        assert_eq!(body_text(br#"{"n":1, "s":"x"}"#), r#"{"n":1, "s":"x"}"#);
        assert_eq!(body_text(b"[1,2]"), "[1,2]");
        assert_eq!(body_text(b"42"), "42");
    }
}
