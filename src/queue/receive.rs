//! Receiving: up to ten messages at a time, long polling up to twenty seconds, each hidden
//! for its visibility timeout until acknowledged (deleted) or made visible again.

use super::Queues;
use crate::backend::{Queue, ReceiptError, Received};
use crate::error::OpError;
use crate::model::{MAX_RECEIVE_WAIT_S, MAX_VISIBILITY_TIMEOUT_S};
use crate::wire::ReceiveRequest;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// SQS returns at most 10 messages per receive.
pub const MAX_RECEIVE_BATCH: usize = 10;

/// Counts a long poll for as long as it runs, however it ends.
struct LongPoll<'a>(&'a AtomicU64);

impl<'a> LongPoll<'a> {
    fn start(count: &'a AtomicU64) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        LongPoll(count)
    }
}

impl Drop for LongPoll<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Queues {
    /// Receives up to `max_messages`, waiting up to `wait_s` for the first to arrive.
    pub async fn receive(
        &self,
        queue: &str,
        req: ReceiveRequest,
    ) -> Result<Vec<Received>, OpError> {
        let h = self.queue(queue)?;
        let spec = h.spec();
        let max = req.max_messages.unwrap_or(1);
        if !(1..=MAX_RECEIVE_BATCH).contains(&max) {
            return Err(OpError::Invalid(format!(
                "max_messages must be between 1 and {MAX_RECEIVE_BATCH}, got {max}"
            )));
        }
        let wait_s = req.wait_s.unwrap_or(spec.receive_wait_s);
        if wait_s > MAX_RECEIVE_WAIT_S {
            return Err(OpError::Invalid(format!(
                "wait_s must be between 0 and {MAX_RECEIVE_WAIT_S}, got {wait_s}"
            )));
        }
        let visibility_s = req
            .visibility_timeout_s
            .unwrap_or(spec.visibility_timeout_s);
        if visibility_s > MAX_VISIBILITY_TIMEOUT_S {
            return Err(OpError::Invalid(format!(
                "visibility_timeout_s must be between 0 and {MAX_VISIBILITY_TIMEOUT_S}, got {visibility_s}"
            )));
        }
        let _long_poll = (wait_s > 0).then(|| LongPoll::start(&self.waiting));
        self.take(
            &h,
            max,
            visibility_s * 1000,
            Duration::from_secs(wait_s),
            &self.shutdown,
        )
        .await
    }

    /// Receives up to `max` messages, waiting up to `wait` for the first: messages past
    /// the queue's receive limit go to its dead-letter queue instead of being handed out,
    /// and the wait goes on while nothing else has come.
    pub(super) async fn take(
        &self,
        h: &Queue,
        max: usize,
        visibility_ms: u64,
        wait: Duration,
        stop: &CancellationToken,
    ) -> Result<Vec<Received>, OpError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let got = self
                .backend
                .receive(h, max, visibility_ms, left, stop)
                .await?;
            let was_empty = got.is_empty();
            let live = self.dead_letter(h, got).await?;
            if !live.is_empty() || was_empty || tokio::time::Instant::now() >= deadline {
                if !live.is_empty() {
                    let meter = self.telemetry.queues.get(h.name());
                    meter.received.add(live.len() as u64);
                }
                return Ok(live);
            }
        }
    }

    /// Acknowledges (deletes) messages; every receipt gets its own verdict.
    pub async fn ack(
        &self,
        queue: &str,
        receipts: &[String],
    ) -> Result<Vec<Result<(), ReceiptError>>, OpError> {
        let h = self.queue(queue)?;
        let verdicts = self.backend.ack(&h, receipts).await?;
        let acked = verdicts.iter().filter(|v| v.is_ok()).count();
        self.telemetry.queues.get(queue).acked.add(acked as u64);
        Ok(verdicts)
    }

    /// Hides a received message for `timeout_s` from now; 0 makes it visible at once.
    pub async fn change_visibility(
        &self,
        queue: &str,
        receipt: &str,
        timeout_s: u64,
    ) -> Result<(), OpError> {
        let h = self.queue(queue)?;
        if timeout_s > MAX_VISIBILITY_TIMEOUT_S {
            return Err(OpError::Invalid(format!(
                "timeout_s must be between 0 and {MAX_VISIBILITY_TIMEOUT_S}, got {timeout_s}"
            )));
        }
        self.backend
            .change_visibility(&h, receipt, timeout_s * 1000)
            .await??;
        Ok(())
    }
}
