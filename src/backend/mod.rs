//! Storage: where accepted messages, stream records and resource metadata live.
//!
//! The operations above see storage as one [`Backend`] with storage verbs, and queues and
//! streams as [`Queue`] and [`Stream`] handles; each is an enum of the two backends, and a
//! handle only ever reaches the backend that made it (a process runs one).
//!
//! - `embedded/`: one fjall database in the data directory behind a write-ahead log with
//!   group commit, so a publish is answered only once its deliveries are on disk; an
//!   in-memory index per queue so receives never scan storage. No server needed.
//! - `jetstream/`: the same verbs on NATS JetStream, so several routers share every
//!   resource.
//!
//! Every write a caller is answered for is durable (on disk, or acknowledged by
//! JetStream) before the verb returns. Errors are [`StorageError`]s: everything a caller
//! can get wrong is checked above, or reported in the result (receipts, lease holders).

mod embedded;
mod error;
pub mod jetstream;
mod types;

pub use embedded::Embedded;

pub use error::StorageError;
pub use types::*;

use crate::model::{QueueSpec, StreamSpec};
use jetstream::JetStream;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// Metadata records are JSON; the types stored are plain data that always serializes.
pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("plain data always serializes")
}

use crate::time::Clock;

/// The storage of one router.
// One per process, shared behind an `Arc`: the size of its variants does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Backend {
    Embedded(Embedded),
    JetStream(JetStream),
}

/// A queue, as the backend that stores it hands it out. Cloning is cheap.
#[derive(Clone)]
pub enum Queue {
    Embedded(Arc<embedded::QueueHandle>),
    JetStream(Arc<jetstream::QueueHandle>),
}

/// A stream, as the backend that stores it hands it out. Cloning is cheap.
#[derive(Clone)]
pub enum Stream {
    Embedded(Arc<embedded::StreamHandle>),
    JetStream(Arc<jetstream::StreamHandle>),
}

/// What a handle of the other backend reaching this one would mean: a bug, since a process
/// opens one backend and every handle comes from it.
const FOREIGN_HANDLE: &str = "a handle reached a backend that did not make it";

impl Queue {
    pub fn name(&self) -> &str {
        match self {
            Queue::Embedded(h) => &h.name,
            Queue::JetStream(h) => &h.name,
        }
    }

    pub fn spec(&self) -> QueueSpec {
        match self {
            Queue::Embedded(h) => h.spec(),
            Queue::JetStream(h) => h.spec(),
        }
    }

    /// When it was created and its settings last changed (unix ms; 0 when its storage
    /// predates keeping them).
    pub fn created_at(&self) -> u64 {
        match self {
            Queue::Embedded(h) => h.created_at,
            Queue::JetStream(h) => h.created_at,
        }
    }

    pub fn modified_at(&self) -> u64 {
        match self {
            Queue::Embedded(h) => h.modified_at.load(std::sync::atomic::Ordering::Relaxed),
            Queue::JetStream(h) => h.modified_at.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Who reads the queue; fixed at creation.
    pub fn kind(&self) -> QueueKind {
        match self {
            Queue::Embedded(h) => h.kind(),
            Queue::JetStream(h) => h.kind(),
        }
    }

    /// Fixed at creation, so it is read without locking.
    pub fn is_fifo(&self) -> bool {
        match self {
            Queue::Embedded(h) => h.is_fifo(),
            Queue::JetStream(h) => h.fifo(),
        }
    }

    /// Set once the queue is deleted; workers holding the handle stop.
    pub fn is_deleted(&self) -> bool {
        match self {
            Queue::Embedded(h) => h.is_deleted(),
            Queue::JetStream(h) => h.is_deleted(),
        }
    }

    /// Lets receivers take a message as soon as it is in the log, before it reaches the
    /// disk. Only for a queue whose sole reader is a sandboxed function: whatever the
    /// function does (its acknowledgement, retry, publishes) is logged after the message,
    /// so a crash before the sync loses the message and those effects together, and the
    /// publisher, not yet answered, has not been told the message was stored. JetStream
    /// cannot tell the two moments apart and ignores it.
    pub fn deliver_before_sync(&self, on: bool) {
        if let Queue::Embedded(h) = self {
            h.set_before_sync(on);
        }
    }

    /// Whether [`deliver_before_sync`](Self::deliver_before_sync) is in effect.
    pub fn delivers_before_sync(&self) -> bool {
        match self {
            Queue::Embedded(h) => h.before_sync(),
            Queue::JetStream(_) => false,
        }
    }

    fn embedded(&self) -> &Arc<embedded::QueueHandle> {
        match self {
            Queue::Embedded(h) => h,
            Queue::JetStream(_) => unreachable!("{FOREIGN_HANDLE}"),
        }
    }

    fn jetstream(&self) -> &Arc<jetstream::QueueHandle> {
        match self {
            Queue::JetStream(h) => h,
            Queue::Embedded(_) => unreachable!("{FOREIGN_HANDLE}"),
        }
    }

    fn into_embedded(self) -> Arc<embedded::QueueHandle> {
        match self {
            Queue::Embedded(h) => h,
            Queue::JetStream(_) => unreachable!("{FOREIGN_HANDLE}"),
        }
    }

    fn into_jetstream(self) -> Arc<jetstream::QueueHandle> {
        match self {
            Queue::JetStream(h) => h,
            Queue::Embedded(_) => unreachable!("{FOREIGN_HANDLE}"),
        }
    }
}

impl Stream {
    pub fn name(&self) -> &str {
        match self {
            Stream::Embedded(h) => &h.name,
            Stream::JetStream(h) => &h.name,
        }
    }

    pub fn spec(&self) -> StreamSpec {
        match self {
            Stream::Embedded(h) => h.spec(),
            Stream::JetStream(h) => h.spec(),
        }
    }

    /// When it was created (unix ms; 0 when its storage predates keeping it).
    pub fn created_at(&self) -> u64 {
        match self {
            Stream::Embedded(h) => h.created_at,
            Stream::JetStream(h) => h.created_at,
        }
    }

    pub fn shard_count(&self) -> u32 {
        match self {
            Stream::Embedded(h) => h.shard_count(),
            Stream::JetStream(h) => h.shard_count(),
        }
    }

    pub fn is_deleted(&self) -> bool {
        match self {
            Stream::Embedded(h) => h.is_deleted(),
            Stream::JetStream(h) => h.is_deleted(),
        }
    }

    /// Woken when records are appended through this process, so polls answer at once.
    /// Appends by other routers are not signalled: polls also look again periodically.
    pub fn arrivals(&self) -> &Notify {
        match self {
            Stream::Embedded(h) => &h.arrivals,
            Stream::JetStream(h) => &h.arrivals,
        }
    }

    fn embedded(&self) -> &Arc<embedded::StreamHandle> {
        match self {
            Stream::Embedded(h) => h,
            Stream::JetStream(_) => unreachable!("{FOREIGN_HANDLE}"),
        }
    }

    fn jetstream(&self) -> &Arc<jetstream::StreamHandle> {
        match self {
            Stream::JetStream(h) => h,
            Stream::Embedded(_) => unreachable!("{FOREIGN_HANDLE}"),
        }
    }

    fn into_embedded(self) -> Arc<embedded::StreamHandle> {
        match self {
            Stream::Embedded(h) => h,
            Stream::JetStream(_) => unreachable!("{FOREIGN_HANDLE}"),
        }
    }

    fn into_jetstream(self) -> Arc<jetstream::StreamHandle> {
        match self {
            Stream::JetStream(h) => h,
            Stream::Embedded(_) => unreachable!("{FOREIGN_HANDLE}"),
        }
    }
}

/// The storage verbs: metadata records, queues (store, receive with visibility, ack,
/// change visibility), streams (append, read a shard) and consumer groups (leases,
/// checkpoints).
impl Backend {
    /// The clock its timestamps follow. JetStream's is the system clock, as the timers of
    /// its server (visibility as ack wait) are.
    pub fn clock(&self) -> &Clock {
        static SYSTEM: Clock = Clock::system();
        match self {
            Backend::Embedded(e) => e.clock(),
            Backend::JetStream(_) => &SYSTEM,
        }
    }

    /// `embedded` or `nats`, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Backend::Embedded(_) => "embedded",
            Backend::JetStream(_) => "nats",
        }
    }

    /// Whether other routers share this backend: then resources change without this
    /// process doing it, and appends by others are not signalled on [`Stream::arrivals`].
    pub fn is_shared(&self) -> bool {
        matches!(self, Backend::JetStream(_))
    }

    // ---- metadata ---------------------------------------------------------------------

    pub async fn put_meta(&self, key: &str, value: Vec<u8>) -> Result<(), StorageError> {
        match self {
            Backend::Embedded(b) => b.put_meta(key, value).await,
            Backend::JetStream(b) => Ok(b.put_meta(key, value).await?),
        }
    }

    pub async fn delete_meta(&self, key: &str) -> Result<(), StorageError> {
        match self {
            Backend::Embedded(b) => b.delete_meta(key).await,
            Backend::JetStream(b) => Ok(b.delete_meta(key).await?),
        }
    }

    /// Every record under `prefix`, with the prefix stripped from the keys.
    pub fn list_meta(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        match self {
            Backend::Embedded(b) => b.list_meta(prefix),
            Backend::JetStream(b) => Ok(b.list_meta(prefix)),
        }
    }

    /// Changes made by any router from now on, for a backend that others share; `None`
    /// when this process is the only writer.
    pub fn watch_meta(&self) -> Option<tokio::sync::broadcast::Receiver<MetaChange>> {
        match self {
            Backend::Embedded(_) => None,
            Backend::JetStream(b) => Some(b.watch_meta()),
        }
    }

    // ---- queues -----------------------------------------------------------------------

    pub fn queue(&self, name: &str) -> Option<Queue> {
        match self {
            Backend::Embedded(b) => b.queue(name).map(Queue::Embedded),
            Backend::JetStream(b) => b.queue(name).map(Queue::JetStream),
        }
    }

    /// Names of the user's queues, sorted (delivery queues are internal and left out).
    pub fn queue_names(&self) -> Vec<String> {
        match self {
            Backend::Embedded(b) => b.queue_names(),
            Backend::JetStream(b) => b.queue_names(),
        }
    }

    /// Creates a queue of `kind`, or updates the mutable settings of an existing one.
    pub async fn put_queue(
        &self,
        name: &str,
        spec: QueueSpec,
        kind: QueueKind,
    ) -> Result<Queue, StorageError> {
        match self {
            Backend::Embedded(b) => Ok(Queue::Embedded(b.put_queue(name, spec, kind).await?)),
            Backend::JetStream(b) => Ok(Queue::JetStream(b.put_queue(name, spec, kind).await?)),
        }
    }

    /// Deletes a queue and its messages; `false` when there was none.
    pub async fn delete_queue(&self, name: &str) -> Result<bool, StorageError> {
        match self {
            Backend::Embedded(b) => b.delete_queue(name).await,
            Backend::JetStream(b) => Ok(b.delete_queue(name).await?),
        }
    }

    /// Stores a publish's deliveries; `Ok` only once every one is durable.
    pub async fn store(&self, items: Vec<Delivery>) -> Result<Vec<Stored>, StorageError> {
        match self {
            Backend::Embedded(b) => b.store(items).await,
            Backend::JetStream(b) => Ok(b.store(items).await?),
        }
    }

    /// Stores messages in their queues (a [`Backend::store`] of queue deliveries).
    pub async fn enqueue(
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
    pub async fn receive(
        &self,
        q: &Queue,
        max: usize,
        visibility_ms: u64,
        wait: Duration,
        stop: &CancellationToken,
    ) -> Result<Vec<Received>, StorageError> {
        match self {
            Backend::Embedded(b) => {
                b.receive_wait(q.embedded(), max, visibility_ms, wait, stop)
                    .await
            }
            // Messages a cancelled receive had taken become visible again after their
            // visibility timeout, as with a receiver that died.
            Backend::JetStream(b) => tokio::select! {
                r = b.receive(q.jetstream(), max, visibility_ms, wait) => Ok(r?),
                _ = stop.cancelled() => Ok(Vec::new()),
            },
        }
    }

    /// Takes up to `max` visible messages to move them elsewhere with
    /// [`Self::move_messages`], hidden for the queue's visibility timeout (at least a
    /// second). Unlike a
    /// receive it leaves no durable mark: a crash before the move leaves them visible at
    /// the next start (embedded) or once that timeout ends (JetStream, as a receive's).
    pub async fn take_to_move(&self, q: &Queue, max: usize) -> Result<Vec<Received>, StorageError> {
        match self {
            Backend::Embedded(b) => b.take_to_move(q.embedded(), max).await,
            Backend::JetStream(b) => Ok(b.take_to_move(q.jetstream(), max).await?),
        }
    }

    /// Keeps messages taken to move, that are not moved, hidden for `ms` more (0: visible
    /// at once). The embedded store keeps the hold in memory only; JetStream's server
    /// keeps it, so there a router that dies leaves them hidden until it ends.
    pub async fn hold(
        &self,
        q: &Queue,
        messages: &[Received],
        ms: u64,
    ) -> Result<(), StorageError> {
        match self {
            Backend::Embedded(b) => {
                b.hold(q.embedded(), messages, ms);
                Ok(())
            }
            Backend::JetStream(b) => Ok(b.hold(q.jetstream(), messages, ms).await?),
        }
    }

    /// Acknowledges (deletes) received messages; each receipt gets its own verdict.
    pub async fn ack(
        &self,
        q: &Queue,
        receipts: &[String],
    ) -> Result<Vec<Result<(), ReceiptError>>, StorageError> {
        match self {
            Backend::Embedded(b) => b.ack(q.embedded(), receipts).await,
            Backend::JetStream(b) => Ok(b.ack(q.jetstream(), receipts).await?),
        }
    }

    /// Hides a received message for `visibility_ms` from now (0: visible at once).
    pub async fn change_visibility(
        &self,
        q: &Queue,
        receipt: &str,
        visibility_ms: u64,
    ) -> Result<Result<(), ReceiptError>, StorageError> {
        match self {
            Backend::Embedded(b) => {
                b.change_visibility(q.embedded(), receipt, visibility_ms)
                    .await
            }
            Backend::JetStream(b) => Ok(b
                .change_visibility(q.jetstream(), receipt, visibility_ms)
                .await?),
        }
    }

    /// Deletes every message; returns how many.
    pub async fn purge(&self, q: &Queue) -> Result<u64, StorageError> {
        match self {
            Backend::Embedded(b) => b.purge(q.embedded()).await,
            Backend::JetStream(b) => Ok(b.purge(q.jetstream()).await?),
        }
    }

    /// The embedded store's log and disk; `None` on JetStream, whose server reports its
    /// own storage.
    pub fn storage_stats(&self) -> Option<StorageStats> {
        match self {
            Backend::Embedded(b) => Some(b.storage_stats()),
            Backend::JetStream(_) => None,
        }
    }

    pub async fn counts(&self, q: &Queue) -> Result<Counts, StorageError> {
        match self {
            Backend::Embedded(b) => Ok(b.counts(q.embedded())),
            Backend::JetStream(b) => Ok(b.counts(q.jetstream()).await?),
        }
    }

    /// Moves received messages, by their receipts, from `from` to `to` durably, so each
    /// is in exactly one of the two; a message whose receipt is no longer current stays.
    /// Returns how many moved.
    pub async fn move_messages(
        &self,
        from: &Queue,
        messages: &[Received],
        to: &Queue,
        why: Move,
    ) -> Result<u64, StorageError> {
        match self {
            Backend::Embedded(b) => {
                b.move_messages(from.embedded(), messages, to.embedded(), why)
                    .await
            }
            Backend::JetStream(b) => Ok(b
                .move_messages(from.jetstream(), messages, to.jetstream(), why)
                .await?),
        }
    }

    /// Periodic housekeeping (retention, due delays, expired dedup ids) where the backend
    /// does not do it itself.
    pub fn sweep(&self) {
        if let Backend::Embedded(b) = self {
            b.sweep()
        }
    }

    // ---- streams ----------------------------------------------------------------------

    pub fn stream(&self, name: &str) -> Option<Stream> {
        match self {
            Backend::Embedded(b) => b.stream(name).map(Stream::Embedded),
            Backend::JetStream(b) => b.stream(name).map(Stream::JetStream),
        }
    }

    /// Names of every stream, sorted.
    pub fn stream_names(&self) -> Vec<String> {
        match self {
            Backend::Embedded(b) => b.stream_names(),
            Backend::JetStream(b) => b.stream_names(),
        }
    }

    /// Creates a stream or updates its retention (the shard count is fixed).
    pub async fn put_stream(&self, name: &str, spec: StreamSpec) -> Result<Stream, StorageError> {
        match self {
            Backend::Embedded(b) => Ok(Stream::Embedded(b.put_stream(name, spec).await?)),
            Backend::JetStream(b) => Ok(Stream::JetStream(b.put_stream(name, spec).await?)),
        }
    }

    /// Deletes a stream, its records and its groups; `false` when there was none.
    pub async fn delete_stream(&self, name: &str) -> Result<bool, StorageError> {
        match self {
            Backend::Embedded(b) => b.delete_stream(name).await,
            Backend::JetStream(b) => Ok(b.delete_stream(name).await?),
        }
    }

    /// (first stored sequence, last sequence) of a shard; first is last + 1 when empty.
    pub async fn bounds(&self, s: &Stream, shard: u32) -> Result<(u64, u64), StorageError> {
        match self {
            Backend::Embedded(_) => Ok(s.embedded().bounds(shard)),
            Backend::JetStream(b) => Ok(b.bounds(s.jetstream(), shard).await?),
        }
    }

    /// Up to `limit` records of a shard from sequence `from` on, skipping expired ones; a
    /// `from` before the trim horizon reads from the oldest record kept.
    pub async fn read_shard(
        &self,
        s: &Stream,
        shard: u32,
        from: u64,
        limit: usize,
    ) -> Result<Vec<StoredRecord>, StorageError> {
        match self {
            Backend::Embedded(b) => b.read_shard(s.embedded(), shard, from, limit),
            Backend::JetStream(b) => Ok(b.read_shard(s.jetstream(), shard, from, limit).await?),
        }
    }

    /// The first sequence that arrived at or after `ts` (unix ms), else the next one.
    pub async fn sequence_at(&self, s: &Stream, shard: u32, ts: u64) -> Result<u64, StorageError> {
        match self {
            Backend::Embedded(b) => b.sequence_at(s.embedded(), shard, ts),
            Backend::JetStream(b) => Ok(b.sequence_at(s.jetstream(), shard, ts).await?),
        }
    }

    // ---- consumer groups --------------------------------------------------------------

    /// Creates a group with `info` unless it exists; returns the group's settings (the
    /// existing ones, when it did) and whether this call created it.
    pub async fn create_group(
        &self,
        s: &Stream,
        name: &str,
        info: GroupInfo,
    ) -> Result<(GroupInfo, bool), StorageError> {
        match self {
            Backend::Embedded(b) => b.create_group(s.embedded(), name, info).await,
            Backend::JetStream(b) => Ok(b.create_group(s.jetstream(), name, info).await?),
        }
    }

    /// A group's settings, `None` when it does not exist.
    pub async fn find_group(
        &self,
        s: &Stream,
        name: &str,
    ) -> Result<Option<GroupInfo>, StorageError> {
        match self {
            Backend::Embedded(_) => Ok(s.embedded().group_info(name)),
            Backend::JetStream(b) => Ok(b.find_group(s.jetstream(), name).await?),
        }
    }

    pub async fn group_names(&self, s: &Stream) -> Result<Vec<String>, StorageError> {
        match self {
            Backend::Embedded(_) => Ok(s.embedded().group_names()),
            Backend::JetStream(b) => Ok(b.group_names(s.jetstream()).await?),
        }
    }

    /// Replaces a group's lease table (bytes the layer above reads and writes) with what
    /// `update` makes of the current one (`None` before the first), so that updates from
    /// any router apply one after the other: returns what `update` returned and the
    /// table's new version, which grows with every update. `update` may run again on a
    /// newer table when another router wrote first; an `Err` from it (an unreadable table)
    /// is a [`StorageError::Corrupt`].
    pub async fn update_leases<T>(
        &self,
        s: &Stream,
        group: &str,
        update: impl FnMut(Option<&[u8]>) -> Result<(Vec<u8>, T), String> + Send,
    ) -> Result<(T, u64), StorageError> {
        match self {
            Backend::Embedded(b) => b.update_leases(s.embedded(), group, update),
            Backend::JetStream(b) => Ok(b.update_leases(s.jetstream(), group, update).await?),
        }
    }

    /// A group's lease table as last written; `None` before the first.
    pub async fn read_leases(
        &self,
        s: &Stream,
        group: &str,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        match self {
            Backend::Embedded(b) => b.read_leases(s.embedded(), group),
            Backend::JetStream(b) => Ok(b.read_leases(s.jetstream(), group).await?),
        }
    }

    /// Durably records that `shard` of the group was processed up to `sequence`.
    pub async fn put_checkpoint(
        &self,
        s: &Stream,
        group: &str,
        shard: u32,
        sequence: u64,
    ) -> Result<(), StorageError> {
        match self {
            Backend::Embedded(b) => b.put_checkpoint(s.embedded(), group, shard, sequence).await,
            Backend::JetStream(b) => Ok(b
                .put_checkpoint(s.jetstream(), group, shard, sequence)
                .await?),
        }
    }

    /// The last checkpoint of every shard.
    pub async fn checkpoints(
        &self,
        s: &Stream,
        group: &str,
    ) -> Result<Vec<Option<u64>>, StorageError> {
        match self {
            Backend::Embedded(b) => b.checkpoints(s.embedded(), group),
            Backend::JetStream(b) => Ok(b.checkpoints(s.jetstream(), group).await?),
        }
    }
}
