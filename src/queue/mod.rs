//! SQS semantics: send, receive with long polling, acknowledge, change visibility, purge
//! and redrive. Parameters are checked here against the queue's settings and SQS's limits;
//! the bookkeeping of visibility, receive counts and FIFO groups is the backend's.

mod fifo;
mod receive;
mod send;

pub use fifo::{MAX_FIFO_ID_LEN, fifo_ids};
pub use receive::{MAX_RECEIVE_BATCH, ReceiveRequest};
pub use send::SendRequest;

use crate::backend::{Backend, Counts, Queue};
use crate::error::OpError;
use crate::model::Kind;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// The queues as their users see them (delivery queues are internal and not reachable).
pub struct Queues {
    backend: Arc<Backend>,
    /// Cancelled at shutdown, so long polls answer instead of holding the drain up.
    shutdown: CancellationToken,
}

impl Queues {
    pub fn new(backend: Arc<Backend>, shutdown: CancellationToken) -> Self {
        Self { backend, shutdown }
    }

    /// A user's queue.
    pub fn queue(&self, name: &str) -> Result<Queue, OpError> {
        self.backend
            .queue(name)
            .filter(|_| !crate::deliver::is_internal(name))
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

    /// Moves a dead-letter queue's messages back to the queues they came from.
    pub async fn redrive(&self, dlq: &str) -> Result<u64, OpError> {
        let h = self.queue(dlq)?;
        Ok(self.backend.redrive_back(&h).await?)
    }

    /// Messages visible, in flight and delayed.
    pub async fn counts(&self, queue: &str) -> Result<Counts, OpError> {
        let h = self.queue(queue)?;
        Ok(self.backend.counts(&h).await?)
    }
}
