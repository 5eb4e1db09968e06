//! Storage: where accepted messages and resource metadata live.
//!
//! The embedded backend keeps everything in one fjall database under the data directory,
//! with group commit so a publish is acknowledged only after its deliveries are synced to
//! disk, and an in-memory index per queue (`index`) so receives never scan storage.
//! Message bodies stay on disk. The JetStream backend will offer the same verbs.

mod codec;
mod committer;
mod embedded;
pub mod index;
pub mod jetstream;
mod streams;

pub use embedded::{Embedded, QueueHandle};
pub use index::Counts;
pub use streams::{GroupHandle, GroupState, NewRecord, StoredRecord, StreamHandle};

use std::sync::Arc;

/// A message about to be stored in a queue.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub message_id: String,
    /// The payload as it will be delivered (JSON text).
    pub payload: Vec<u8>,
    /// Attributes in SNS form as JSON text (`{}` when none).
    pub attributes: Vec<u8>,
    /// Delay before the message first becomes visible.
    pub delay_ms: u64,
    /// FIFO message group.
    pub group: Option<Arc<str>>,
    /// FIFO deduplication id (explicit or content hash).
    pub dedup_id: Option<String>,
}

/// One matched delivery of a publish: all of a publish's deliveries are stored with one
/// durable write.
pub enum Delivery {
    Queue(Arc<QueueHandle>, NewMessage),
    /// A record for a stream, on the shard given.
    Stream(Arc<StreamHandle>, u32, NewRecord),
}

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    Queue(Enqueued),
    Stream { shard: u32, sequence: u64 },
}

/// What became of one message handed to [`Embedded::enqueue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    Stored,
    /// A message with the same deduplication id was accepted within the dedup window; the
    /// id is that message's.
    Duplicate {
        original_message_id: String,
    },
}

/// A message handed to a receiver.
#[derive(Debug, Clone)]
pub struct Received {
    pub message_id: String,
    pub receipt: String,
    pub payload: Vec<u8>,
    pub attributes: Vec<u8>,
    pub receive_count: u32,
    pub sent_at: u64,
}

/// Why a receipt was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("receipt {0:?} is malformed or belongs to another queue")]
    Invalid(String),
    #[error(
        "receipt {0:?} has expired: the message was acknowledged, expired or received again since"
    )]
    Expired(String),
}

/// A failure of the storage itself: the caller did nothing wrong.
#[derive(Debug, Clone, thiserror::Error)]
#[error("storage: {0}")]
pub struct StorageError(pub String);

impl From<fjall::Error> for StorageError {
    fn from(e: fjall::Error) -> Self {
        StorageError(e.to_string())
    }
}

/// Metadata records are JSON; the types stored are plain data that always serializes.
pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("plain data always serializes")
}

/// Unix time in milliseconds: the clock every stored timestamp uses.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
