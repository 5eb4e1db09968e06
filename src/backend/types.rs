//! The values that cross the storage boundary: what is stored, what is read back, and
//! what became of a store.

use super::{Queue, Stream};
use crate::model::{GroupSpec, QueueSpec};
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

/// One matched delivery of a publish: a publish's deliveries are stored together, and the
/// publish is answered once all of them are durable. The one delivery type of every
/// backend.
pub enum Delivery {
    Queue(Queue, NewMessage),
    /// A record for a stream, on the shard given.
    Stream(Stream, u32, NewRecord),
}

impl Delivery {
    /// About how many bytes storing it adds (bodies several deliveries share count once
    /// for each).
    pub fn size(&self) -> usize {
        match self {
            Delivery::Queue(_, m) => m.payload.len() + m.attributes.len() + 64,
            Delivery::Stream(_, _, r) => r.data.len() + r.partition_key.len() + 32,
        }
    }
}

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    Queue(Enqueued),
    Stream { shard: u32, sequence: u64 },
}

/// What became of one message stored in a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// Stored, at this sequence number of its queue (FIFO queues answer it to senders).
    Stored { sequence: u64 },
    /// A message with the same deduplication id was accepted within the dedup window; the
    /// id is that message's.
    Duplicate { original_message_id: String },
}

/// What became of each message of a store of queue deliveries only.
pub(crate) fn queue_outcomes(stored: Vec<Stored>) -> Vec<Enqueued> {
    stored
        .into_iter()
        .map(|s| match s {
            Stored::Queue(e) => e,
            Stored::Stream { .. } => unreachable!("only queue deliveries were given"),
        })
        .collect()
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
    /// When it was first received (unix ms), where the backend keeps it.
    pub first_received_at: Option<u64>,
    /// A FIFO message's deduplication id.
    pub dedup_id: Option<String>,
    /// Its sequence number in its queue: increasing in the order messages were stored.
    pub sequence: u64,
    /// The FIFO message group.
    pub group: Option<Arc<str>>,
    /// For a message in a dead-letter queue: the queue it was moved from, while that
    /// queue exists.
    pub origin: Option<String>,
}

/// Why messages move from one queue to another, which decides what they remember of
/// where they were. Either way the receive count starts again and the original send time
/// is kept (retention counts from it, as in SQS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    /// To a dead-letter queue: they remember the queue they came from.
    ToDeadLetter,
    /// From a dead-letter queue back to where they came from: they are no longer dead
    /// letters.
    Back,
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

/// Who reads a queue, which decides how durable its receives and acknowledgements must
/// be. Stored with the queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueKind {
    /// A user's queue: listed, reachable through the API, and every receive and
    /// acknowledgement answered once it is durable.
    #[default]
    User,
    /// A subscription's delivery queue, read only by its worker: internal (not listed, not
    /// reachable through the API), and a receive or acknowledgement lost in a crash only
    /// repeats a delivery (at-least-once), so neither waits for the disk.
    Delivery,
}

/// A queue's settings as the backend keeps them.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueInfo {
    pub spec: QueueSpec,
    pub kind: QueueKind,
}

/// Messages of a queue by where they stand.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
    /// When the oldest message still in the queue was sent (unix ms), if there is one.
    pub oldest_sent_at: Option<u64>,
}

/// What the embedded store tells about its disk, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageStats {
    /// Syncs of the write-ahead log's files since the store opened.
    pub log_syncs: u64,
    /// Bytes appended to the write-ahead log since the store opened.
    pub log_bytes: u64,
    /// Bytes free on the data directory's disk, when it can be read.
    pub disk_free_bytes: Option<u64>,
}

/// A record to append to a stream shard.
#[derive(Debug, Clone)]
pub struct NewRecord {
    pub partition_key: String,
    /// Overrides the partition key's MD5 when choosing the shard.
    pub explicit_hash_key: Option<u128>,
    /// The record: bytes of any kind (JSON text when put through `/v1` with `data`).
    pub data: Vec<u8>,
}

/// A stored record as read back.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    pub shard: u32,
    pub sequence: u64,
    pub partition_key: String,
    pub data: Vec<u8>,
    /// When it was appended (unix ms).
    pub arrived_at: u64,
}

/// A consumer group as storage keeps it: its settings and where each shard without a
/// checkpoint starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    pub spec: GroupSpec,
    /// Per shard: reading starts after this sequence (0 = from the start).
    pub start_after: Vec<u64>,
}

/// A change to a metadata record made by another router sharing the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaChange {
    Put { key: String, value: bytes::Bytes },
    Delete { key: String },
}
