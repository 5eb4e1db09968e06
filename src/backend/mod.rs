//! Storage: where accepted messages and resource metadata live.
//!
//! The embedded backend keeps everything in one fjall database under the data directory,
//! with group commit so a publish is acknowledged only after its deliveries are synced to
//! disk, and an in-memory index per queue (`index`) so receives never scan storage.
//! Message bodies stay on disk. The JetStream backend offers the same verbs on NATS, so
//! several routers can share every resource.
//!
//! The router sees both through [`Backend`], with queues and streams as [`Queue`] and
//! [`Stream`] handles that each backend resolves to its own type.

mod embedded;
pub mod jetstream;

pub use embedded::Embedded;
pub use embedded::index::Counts;
pub use embedded::records::{NewRecord, StoredRecord};

use crate::model::{GroupSpec, QueueSpec, StreamSpec};
use crate::stream::lease::{Assignment, Lease};
use std::any::Any;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

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
/// publish is answered once all of them are durable.
pub enum Delivery {
    Queue(Queue, NewMessage),
    /// A record for a stream, on the shard given.
    Stream(Stream, u32, NewRecord),
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

/// A queue as the router holds it, whichever backend stores it.
pub trait QueueRef: Send + Sync + 'static {
    fn name(&self) -> &str;
    fn spec(&self) -> QueueSpec;
    /// Fixed at creation, so it is read without locking.
    fn is_fifo(&self) -> bool;
    /// Set once the queue is deleted; workers holding the handle stop.
    fn is_deleted(&self) -> bool;
    /// Lets receivers take a message as soon as it is in the log, before it reaches the
    /// disk. Only for a queue whose sole reader is a sandboxed function: whatever the
    /// function does (its acknowledgement, retry, publishes) is logged after the message,
    /// so a crash before the sync loses the message and those effects together, and the
    /// publisher, not yet answered, has not been told the message was stored. A backend
    /// that cannot tell the two moments apart ignores it.
    fn deliver_before_sync(&self, _on: bool) {}
    /// Whether [`deliver_before_sync`](Self::deliver_before_sync) is in effect.
    fn delivers_before_sync(&self) -> bool {
        false
    }
    /// For the backend that made the handle, to get its own type back.
    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

/// A stream as the router holds it.
pub trait StreamRef: Send + Sync + 'static {
    fn name(&self) -> &str;
    fn spec(&self) -> StreamSpec;
    fn shard_count(&self) -> u32;
    fn is_deleted(&self) -> bool;
    /// Woken when records are appended through this process, so polls answer at once.
    /// Appends by other routers are not signalled: polls also look again periodically.
    fn arrivals(&self) -> &Notify;
    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

pub type Queue = Arc<dyn QueueRef>;
pub type Stream = Arc<dyn StreamRef>;

/// Resolves a handle to the concrete type of the backend that made it. Handles never
/// cross backends (a process runs one), so a mismatch is a bug, not a caller error.
pub(crate) fn downcast<T: Send + Sync + 'static>(h: Arc<dyn Any + Send + Sync>) -> Arc<T> {
    h.downcast::<T>()
        .unwrap_or_else(|_| panic!("a handle reached a backend that did not make it"))
}

/// A consumer group as a poll needs it.
#[derive(Debug, Clone)]
pub struct GroupInfo {
    pub spec: GroupSpec,
    /// Where a shard without checkpoint starts: after this sequence (0 = from the start).
    pub start_after: Vec<u64>,
}

/// A change to a metadata record made by another router sharing the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaChange {
    Put { key: String, value: bytes::Bytes },
    Delete { key: String },
}

/// The storage verbs the router needs: metadata records, SQS-style queues, Kinesis-style
/// streams and their consumer groups. Every write a caller is answered for is durable
/// (on disk, or acknowledged by JetStream) before the call returns.
///
/// Errors are [`StorageError`]s (the API answers 503): everything a caller can get wrong
/// is checked by the router before it calls the backend, or reported in the result
/// (receipts, lease holders).
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// `embedded` or `nats`, for health and logs.
    fn kind(&self) -> &'static str;

    /// Whether other routers share this backend: then resources change without this
    /// process doing it, and appends by others are not signalled on [`StreamRef::arrivals`].
    fn is_shared(&self) -> bool {
        false
    }

    // ---- metadata ---------------------------------------------------------------------

    async fn put_meta(&self, key: &str, value: Vec<u8>) -> Result<(), StorageError>;
    async fn delete_meta(&self, key: &str) -> Result<(), StorageError>;
    /// Every record under `prefix`, with the prefix stripped from the keys.
    fn list_meta(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError>;
    /// Changes made by any router from now on, for a backend that others share; `None`
    /// when this process is the only writer.
    fn watch_meta(&self) -> Option<tokio::sync::broadcast::Receiver<MetaChange>> {
        None
    }

    // ---- queues -----------------------------------------------------------------------

    fn queue(&self, name: &str) -> Option<Queue>;
    /// Names of the user's queues (delivery queues are internal and left out).
    fn queue_names(&self) -> Vec<String>;
    /// Creates a queue, or updates the mutable settings of an existing one.
    async fn put_queue(&self, name: &str, spec: QueueSpec) -> Result<Queue, StorageError>;
    /// Deletes a queue and its messages; `false` when there was none.
    async fn delete_queue(&self, name: &str) -> Result<bool, StorageError>;
    /// Stores a publish's deliveries; `Ok` only once every one is durable.
    async fn store(&self, items: Vec<Delivery>) -> Result<Vec<Stored>, StorageError>;
    /// Stores messages in their queues (a [`Backend::store`] of queue deliveries).
    async fn enqueue(
        &self,
        items: Vec<(Queue, NewMessage)>,
    ) -> Result<Vec<Enqueued>, StorageError> {
        let stored = self
            .store(
                items
                    .into_iter()
                    .map(|(q, m)| Delivery::Queue(q, m))
                    .collect(),
            )
            .await?;
        Ok(queue_outcomes(stored))
    }
    /// Receives up to `max` messages, hiding them for `visibility_ms`, waiting up to `wait`
    /// for the first one; answers at once (possibly empty) when `stop` is cancelled.
    async fn receive(
        &self,
        q: &Queue,
        max: usize,
        visibility_ms: u64,
        wait: Duration,
        stop: &CancellationToken,
    ) -> Result<Vec<Received>, StorageError>;
    /// Acknowledges (deletes) received messages; each receipt gets its own verdict.
    async fn ack(
        &self,
        q: &Queue,
        receipts: &[String],
    ) -> Result<Vec<Result<(), ReceiptError>>, StorageError>;
    /// Hides a received message for `visibility_ms` from now (0: visible at once).
    async fn change_visibility(
        &self,
        q: &Queue,
        receipt: &str,
        visibility_ms: u64,
    ) -> Result<Result<(), ReceiptError>, StorageError>;
    /// Deletes every message; returns how many.
    async fn purge(&self, q: &Queue) -> Result<u64, StorageError>;
    async fn counts(&self, q: &Queue) -> Result<Counts, StorageError>;
    /// Moves a dead-letter queue's messages back to the queues they came from.
    async fn redrive_back(&self, dlq: &Queue) -> Result<u64, StorageError>;
    /// Periodic housekeeping (retention, due delays, expired visibility), if the backend
    /// does not do it itself.
    fn sweep(&self) {}

    // ---- streams ----------------------------------------------------------------------

    fn stream(&self, name: &str) -> Option<Stream>;
    fn stream_names(&self) -> Vec<String>;
    /// Creates a stream or updates its retention (the shard count is fixed).
    async fn put_stream(&self, name: &str, spec: StreamSpec) -> Result<Stream, StorageError>;
    /// Deletes a stream, its records and its groups; `false` when there was none.
    async fn delete_stream(&self, name: &str) -> Result<bool, StorageError>;
    /// (first stored sequence, last sequence) of a shard; first is last + 1 when empty.
    async fn bounds(&self, s: &Stream, shard: u32) -> Result<(u64, u64), StorageError>;
    /// Up to `limit` records of a shard from sequence `from` on, skipping expired ones; a
    /// `from` before the trim horizon reads from the oldest record kept.
    async fn read_shard(
        &self,
        s: &Stream,
        shard: u32,
        from: u64,
        limit: usize,
    ) -> Result<Vec<StoredRecord>, StorageError>;
    /// The first sequence that arrived at or after `ts` (unix ms), else the next one.
    async fn sequence_at(&self, s: &Stream, shard: u32, ts: u64) -> Result<u64, StorageError>;

    // ---- consumer groups --------------------------------------------------------------

    /// A group, created with `spec` (default settings when `None`) if it does not exist;
    /// `true` when this call created it.
    async fn group(
        &self,
        s: &Stream,
        name: &str,
        spec: Option<GroupSpec>,
    ) -> Result<(GroupInfo, bool), StorageError>;
    /// A group's settings, `None` when it does not exist.
    async fn find_group(&self, s: &Stream, name: &str) -> Result<Option<GroupInfo>, StorageError>;
    async fn group_names(&self, s: &Stream) -> Result<Vec<String>, StorageError>;
    /// A poll by `member`: renews its leases, releases what it should give up and takes
    /// what is free for it. Two members never hold one shard at once.
    async fn heartbeat(
        &self,
        s: &Stream,
        group: &str,
        member: &str,
    ) -> Result<Assignment, StorageError>;
    /// Every shard's current lease.
    async fn leases(&self, s: &Stream, group: &str) -> Result<Vec<Option<Lease>>, StorageError>;
    /// Records `member`'s progress on `shard`; `Ok(false)` (nothing written) when the
    /// member does not hold the shard's lease.
    async fn checkpoint(
        &self,
        s: &Stream,
        group: &str,
        member: &str,
        shard: u32,
        sequence: u64,
    ) -> Result<bool, StorageError>;
    /// The last checkpoint of every shard.
    async fn checkpoints(&self, s: &Stream, group: &str) -> Result<Vec<Option<u64>>, StorageError>;
}
