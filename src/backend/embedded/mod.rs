//! The embedded backend: one fjall database in the data directory, no server needed.
//!
//! Every write that a caller is answered for goes through the group committer, so it is on
//! disk before the answer. Each queue has an in-memory [`QueueIndex`] rebuilt at start from
//! the small state records; the index is changed under the queue's lock and the matching
//! writes are committed before the caller hears back. A crash between the two loses nothing
//! acknowledged: at worst a received message becomes visible again (at-least-once).

mod codec;
mod committer;
mod groups;
mod index;
mod priority;
mod records;
mod seqmap;
mod wal;

use super::{
    Counts, Delivery, Enqueued, Move, NewMessage, QueueKind, ReceiptError, Received, StorageError,
    Stored, now_ms, to_json,
};
use crate::model::{FIFO_DEDUP_WINDOW_S, QueueSpec};
use codec::Body;
use committer::{Committer, Op, Space, Spaces};
use fjall::{Database, KeyspaceCreateOptions};
use index::{Entry, MsgState, QueueIndex, ReceiptProblem};
pub use records::StreamHandle;
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::Notify;

/// Memtable size of the keyspaces holding message bodies and stream records.
const BODY_MEMTABLE_BYTES: u64 = 16 * 1024 * 1024;
/// Memtable size of the keyspaces holding small records (state, metadata, dedup ids).
const SMALL_MEMTABLE_BYTES: u64 = 8 * 1024 * 1024;
/// Block cache: reads of recent bodies mostly hit memtables or the OS page cache.
const BLOCK_CACHE_BYTES: u64 = 16 * 1024 * 1024;

const META_QUEUE: &str = "q/";
/// The next free id of a queue or stream; ids are never reused, so the records of a
/// deleted resource can never be mistaken for those of a new one.
const META_NEXT_ID: &str = "n/id";

/// One queue: its spec, index and the waiters of long polls.
pub struct QueueHandle {
    pub id: u64,
    pub name: String,
    /// Fixed at creation (a changed `fifo` is refused), so the publish path reads it
    /// without locking and cloning the spec.
    fifo: bool,
    /// Who reads it. A delivery queue's receives and acks need not be durable before
    /// answering (a crash only repeats a delivery).
    kind: QueueKind,
    /// Messages enter the index once written to the log, before its sync (see
    /// [`Queue::deliver_before_sync`](crate::backend::Queue::deliver_before_sync)).
    before_sync: AtomicBool,
    spec: Mutex<QueueSpec>,
    index: Mutex<QueueIndex>,
    next_seq: AtomicU64,
    /// FIFO deduplication ids still inside the window: id -> (expires_at, message id).
    dedup: Mutex<HashMap<String, (u64, String)>>,
    /// FIFO queues hold this across allocate-commit-index so messages enter the index in
    /// sequence order, which group order depends on.
    fifo_order: tokio::sync::Mutex<()>,
    /// Woken whenever messages are added, so long polls answer at once.
    pub arrivals: Notify,
    deleted: AtomicBool,
}

impl QueueHandle {
    pub fn is_fifo(&self) -> bool {
        self.fifo
    }

    pub fn kind(&self) -> QueueKind {
        self.kind
    }

    /// Whether receives and acknowledgements may answer before they are durable.
    fn lazy_sync(&self) -> bool {
        self.kind == QueueKind::Delivery
    }

    pub fn before_sync(&self) -> bool {
        self.before_sync.load(Ordering::Relaxed)
    }

    pub fn set_before_sync(&self, on: bool) {
        self.before_sync.store(on, Ordering::Relaxed);
    }

    pub fn spec(&self) -> QueueSpec {
        self.spec
            .lock()
            .expect("spec lock is never held across a panic")
            .clone()
    }

    /// When the next delayed or in-flight message becomes visible (unix ms).
    pub fn next_due(&self) -> Option<u64> {
        self.lock_index().next_due()
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    fn lock_index(&self) -> std::sync::MutexGuard<'_, QueueIndex> {
        // The index is only mutated by code that cannot panic halfway (no I/O under it).
        self.index.lock().expect("queue index lock poisoned")
    }
}

/// A locked shard's append state, keyed by (stream id, shard).
type ShardGuard<'a> = ((u64, u32), std::sync::MutexGuard<'a, (u64, u64)>);

/// A store whose writes are with the committer: what to do once they are durable.
struct Staged {
    /// Messages for queues read before the sync, if any.
    early: Option<Arc<EarlyIndex>>,
    durable: std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>,
    results: Vec<Stored>,
    pending: Vec<NewEntry>,
    appended: Vec<(Arc<StreamHandle>, u32, u64)>,
    claimed: Vec<(Arc<QueueHandle>, String)>,
    /// Shared bodies written, with how many messages carry each.
    new_shared: Vec<(NonZeroU64, u32)>,
}

/// Messages for queues read before the sync (see
/// [`Queue::deliver_before_sync`](crate::backend::Queue::deliver_before_sync)): indexed by
/// the publishing thread as soon as they are appended to the log, or by the publish once
/// durable when the write is not one the log takes.
struct EarlyIndex {
    /// Kept after indexing, to take them back should the sync fail.
    entries: Vec<NewEntry>,
    indexed: AtomicBool,
}

impl EarlyIndex {
    /// Indexes the messages unless that was done already.
    fn index(&self) {
        if !self.indexed.swap(true, Ordering::AcqRel) {
            Embedded::index_stored(self.entries.iter().cloned());
        }
    }
}

/// A message just stored: its queue, sequence number and index entry.
type NewEntry = (Arc<QueueHandle>, u64, Entry);

/// Messages written to one queue (stored or moved there), to be indexed once the write is
/// durable.
type ToIndex = (Arc<QueueHandle>, Vec<(u64, Entry)>);

#[derive(serde::Serialize, serde::Deserialize)]
struct QueueRecord {
    id: u64,
    spec: QueueSpec,
    /// Absent from records written before queues carried their kind: those name a
    /// delivery queue with a `:` (a user's queue name cannot hold one).
    #[serde(default)]
    kind: Option<QueueKind>,
}

pub struct Embedded {
    pub(super) spaces: Arc<Spaces>,
    pub(super) committer: Committer,
    queues: RwLock<HashMap<String, Arc<QueueHandle>>>,
    by_id: RwLock<HashMap<u64, Arc<QueueHandle>>>,
    pub(super) streams: RwLock<HashMap<String, Arc<StreamHandle>>>,
    next_id: Mutex<u64>,
    shared: SharedBodies,
}

/// Bodies written once for several messages of one store (see [`codec::shared_key`]).
/// Counts are rebuilt at start from the state records, which name the body they share.
#[derive(Default)]
struct SharedBodies {
    /// How many messages carry each shared body; the last one deletes it.
    refs: Mutex<HashMap<NonZeroU64, u32>>,
    /// The next shared body id; ids are never reused.
    next: AtomicU64,
}

/// Which store items carry the same body, found before the writes are built.
#[derive(Clone, Copy)]
enum Share {
    /// Stores its own body (or is not a queue message).
    Own,
    /// The first of `n` messages carrying this body: it writes the shared body.
    First(u32),
    /// Carries the body the item at this index writes.
    Same(usize),
}

/// Marks the queue messages of `items` whose body (message id, attributes and payload)
/// is that of an earlier one; empty (no allocation on the publish path) when none is. A publish's deliveries are adjacent and a delivery queue's
/// message is the same for every subscription, so comparing with the last distinct body
/// finds them; a FIFO message with a deduplication id keeps its own, since it may turn
/// out a duplicate and not be stored at all.
fn find_shared(items: &[Delivery]) -> Vec<Share> {
    let mut share = Vec::new();
    let mut first: Option<(usize, &NewMessage)> = None;
    for (i, item) in items.iter().enumerate() {
        let Delivery::Queue(_, m) = item else {
            continue;
        };
        if m.dedup_id.is_some() {
            continue;
        }
        match first {
            Some((f, fm))
                if fm.message_id == m.message_id
                    && fm.payload == m.payload
                    && fm.attributes == m.attributes =>
            {
                if share.is_empty() {
                    share = vec![Share::Own; items.len()];
                }
                share[f] = match share[f] {
                    Share::First(n) => Share::First(n + 1),
                    _ => Share::First(2),
                };
                share[i] = Share::Same(f);
            }
            _ => first = Some((i, m)),
        }
    }
    share
}

/// The writes that delete a message; a shared body it carries goes to `released`, for
/// [`Embedded::release`] to delete once no other message carries it.
fn delete_ops(
    queue_id: u64,
    seq: u64,
    e: &Entry,
    ops: &mut Vec<Op>,
    released: &mut Vec<NonZeroU64>,
) {
    let key = codec::msg_key(queue_id, seq).to_vec();
    match e.shared {
        Some(id) => released.push(id),
        None => ops.push(Op::Delete(Space::Messages, key.clone())),
    }
    ops.push(Op::Delete(Space::State, key));
}

impl Embedded {
    /// Opens (or creates) the store in `dir` and rebuilds every queue's index.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StorageError::Unavailable(format!("cannot create {}: {e}", dir.display()))
        })?;
        let db = Database::builder(dir)
            // Journal writes are synced by the committer, once per group.
            .manual_journal_persist(true)
            .cache_size(BLOCK_CACHE_BYTES)
            // One flush/compaction thread: with two, fjall's first worker hands compaction
            // requests back and forth while the second compacts, spinning a core that the
            // request path needs (measured: stream puts 170k -> 206k records/s).
            .worker_threads(1)
            .open()?;
        // Memtables are where unflushed writes sit in memory; fjall's 64 MiB default per
        // keyspace lets a backlog's bodies pile up in RAM. Bodies also go to blob files
        // (key-value separation), so compaction does not rewrite them.
        let small = || KeyspaceCreateOptions::default().max_memtable_size(SMALL_MEMTABLE_BYTES);
        let bodies = || {
            KeyspaceCreateOptions::default()
                .max_memtable_size(BODY_MEMTABLE_BYTES)
                .with_kv_separation(Some(fjall::KvSeparationOptions::default()))
        };
        let spaces = Spaces {
            meta: db.keyspace("meta", small)?,
            messages: db.keyspace("messages", bodies)?,
            state: db.keyspace("state", small)?,
            dedup: db.keyspace("dedup", small)?,
            records: db.keyspace("records", bodies)?,
        };
        let (wal, durable) =
            committer::replay(&db, &spaces, &dir.join("wal")).map_err(StorageError::Unavailable)?;
        let spaces = Arc::new(spaces);
        let committer = Committer::start(db, clone_spaces(&spaces), wal, durable);
        let store = Embedded {
            spaces,
            committer,
            queues: RwLock::default(),
            by_id: RwLock::default(),
            streams: RwLock::default(),
            next_id: Mutex::new(1),
            shared: SharedBodies::default(),
        };
        if let Some(v) = store.spaces.meta.get(META_NEXT_ID)? {
            store.note_id(
                serde_json::from_slice::<u64>(&v)
                    .unwrap_or(1)
                    .saturating_sub(1),
            );
        }
        store.recover()?;
        store.recover_streams()?;
        Ok(store)
    }

    /// Makes sure ids up to `id` are never handed out again.
    pub(super) fn note_id(&self, id: u64) {
        let mut next = self.next_id.lock().expect("never poisoned");
        *next = (*next).max(id + 1);
    }

    /// A fresh queue or stream id, durably reserved.
    pub(super) async fn allocate_id(&self) -> Result<u64, StorageError> {
        let id = {
            let mut next = self.next_id.lock().expect("never poisoned");
            let id = *next;
            *next += 1;
            id
        };
        self.put_meta(META_NEXT_ID, to_json(&(id + 1))).await?;
        Ok(id)
    }

    fn recover(&self) -> Result<(), StorageError> {
        let now = now_ms();
        let mut refs: HashMap<NonZeroU64, u32> = HashMap::new();
        for (name, raw) in self.list_meta(META_QUEUE)? {
            let rec: QueueRecord = serde_json::from_slice(&raw)
                .map_err(|e| StorageError::Corrupt(format!("queue record {name:?}: {e}")))?;
            self.note_id(rec.id);
            let kind = rec.kind.unwrap_or(if name.contains(':') {
                QueueKind::Delivery
            } else {
                QueueKind::User
            });
            let h = new_handle(rec.id, name, rec.spec, kind);
            {
                let mut idx = h.lock_index();
                let mut last = 0;
                for kv in self.spaces.state.prefix(codec::queue_prefix(rec.id)) {
                    let (k, v) = kv.into_inner()?;
                    let (Some((_, seq)), Some(e)) =
                        (codec::split_msg_key(&k), codec::decode_state(&v))
                    else {
                        return Err(StorageError::Corrupt(format!(
                            "a message state record of queue {:?} is corrupt",
                            h.name
                        )));
                    };
                    last = last.max(seq);
                    if let Some(id) = e.shared {
                        *refs.entry(id).or_default() += 1;
                    }
                    idx.insert(seq, e, now);
                }
                h.next_seq.store(last + 1, Ordering::Relaxed);
            }
            self.install(h);
        }
        self.recover_shared(refs)?;
        let by_id = self.by_id.read().expect("never poisoned");
        for kv in self.spaces.dedup.iter() {
            let (k, v) = kv.into_inner()?;
            let Some(qid) = k
                .get(..8)
                .map(|b| u64::from_be_bytes(b.try_into().unwrap()))
            else {
                continue;
            };
            let (Some(h), Some((exp, mid))) = (by_id.get(&qid), codec::decode_dedup(&v)) else {
                continue;
            };
            if exp > now {
                let id = String::from_utf8_lossy(&k[8..]).into_owned();
                h.dedup
                    .lock()
                    .expect("never poisoned")
                    .insert(id, (exp, mid));
            }
        }
        Ok(())
    }

    /// Takes the reference counts of shared bodies found in the queues, and deletes the
    /// shared bodies no message carries any more (their last one was in a queue deleted
    /// while it was being published to).
    fn recover_shared(&self, refs: HashMap<NonZeroU64, u32>) -> Result<(), StorageError> {
        let mut last = refs.keys().map(|id| id.get()).max().unwrap_or(0);
        let mut orphans = Vec::new();
        for k in self.spaces.messages.prefix(codec::SHARED_PREFIX) {
            let k = k.key()?;
            let Some(id) = codec::split_msg_key(&k).and_then(|(_, id)| NonZeroU64::new(id)) else {
                continue;
            };
            last = last.max(id.get());
            if !refs.contains_key(&id) {
                orphans.push(Op::Delete(Space::Messages, k.to_vec()));
            }
        }
        if !orphans.is_empty() {
            tracing::info!(
                count = orphans.len(),
                "deleting shared message bodies no message carries"
            );
            // Lost in a crash, they are found again at the next start.
            self.committer.submit(orphans);
        }
        self.shared.next.store(last + 1, Ordering::Relaxed);
        *self.shared.refs.lock().expect("never poisoned") = refs;
        Ok(())
    }

    /// Hands `ops`, writes that delete messages, to `send` with the deletion of every
    /// shared body whose last carrier is among them (`released` names what they carried).
    /// Counted and handed over under one lock, so the write that deletes a body is logged
    /// after every write that dropped another carrier of it: replaying the log never
    /// leaves a message whose body is gone.
    fn release<R>(
        &self,
        released: Vec<NonZeroU64>,
        mut ops: Vec<Op>,
        send: impl FnOnce(&Committer, Vec<Op>) -> R,
    ) -> R {
        if released.is_empty() {
            return send(&self.committer, ops);
        }
        let mut refs = self.shared.refs.lock().expect("never poisoned");
        for id in released {
            if let Some(n) = refs.get_mut(&id) {
                *n -= 1;
                if *n == 0 {
                    refs.remove(&id);
                    ops.push(Op::Delete(Space::Messages, codec::shared_key(id).to_vec()));
                }
            }
        }
        send(&self.committer, ops)
    }

    fn install(&self, h: Arc<QueueHandle>) {
        self.by_id
            .write()
            .expect("never poisoned")
            .insert(h.id, h.clone());
        self.queues
            .write()
            .expect("never poisoned")
            .insert(h.name.clone(), h);
    }

    // ---- metadata -------------------------------------------------------------------

    /// Stores a metadata record durably.
    pub async fn put_meta(&self, key: &str, value: Vec<u8>) -> Result<(), StorageError> {
        self.committer
            .commit(vec![Op::Put(Space::Meta, key.as_bytes().to_vec(), value)])
            .await
            .map_err(StorageError::Unavailable)
    }

    pub async fn delete_meta(&self, key: &str) -> Result<(), StorageError> {
        self.committer
            .commit(vec![Op::Delete(Space::Meta, key.as_bytes().to_vec())])
            .await
            .map_err(StorageError::Unavailable)
    }

    /// Every metadata record under `prefix`, with the prefix stripped from the keys.
    pub fn list_meta(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        let mut out = Vec::new();
        for kv in self.spaces.meta.prefix(prefix) {
            let (k, v) = kv.into_inner()?;
            let name = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            out.push((name, v.to_vec()));
        }
        Ok(out)
    }

    // ---- queues ---------------------------------------------------------------------

    pub fn queue(&self, name: &str) -> Option<Arc<QueueHandle>> {
        self.queues
            .read()
            .expect("never poisoned")
            .get(name)
            .cloned()
    }

    /// Names of the user's queues (delivery queues are internal and left out).
    pub fn queue_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .queues
            .read()
            .expect("never poisoned")
            .values()
            .filter(|h| h.kind == QueueKind::User)
            .map(|h| h.name.clone())
            .collect();
        v.sort();
        v
    }

    /// Creates a queue of `kind`, or updates the mutable settings of an existing one.
    pub async fn put_queue(
        &self,
        name: &str,
        spec: QueueSpec,
        kind: QueueKind,
    ) -> Result<Arc<QueueHandle>, StorageError> {
        if let Some(h) = self.queue(name) {
            let rec = QueueRecord {
                id: h.id,
                spec: spec.clone(),
                kind: Some(h.kind),
            };
            self.put_meta(&format!("{META_QUEUE}{name}"), to_json(&rec))
                .await?;
            *h.spec.lock().expect("never poisoned") = spec;
            return Ok(h);
        }
        let id = self.allocate_id().await?;
        let rec = QueueRecord {
            id,
            spec: spec.clone(),
            kind: Some(kind),
        };
        self.put_meta(&format!("{META_QUEUE}{name}"), to_json(&rec))
            .await?;
        let h = new_handle(id, name.to_string(), spec, kind);
        self.install(h.clone());
        Ok(h)
    }

    /// Deletes a queue and every message in it.
    pub async fn delete_queue(&self, name: &str) -> Result<bool, StorageError> {
        let Some(h) = self.queues.write().expect("never poisoned").remove(name) else {
            return Ok(false);
        };
        self.by_id.write().expect("never poisoned").remove(&h.id);
        h.deleted.store(true, Ordering::Release);
        h.arrivals.notify_waiters();
        // Emptied so that nothing releases a shared body twice: an ack or an expiry now
        // finds the messages gone.
        let released: Vec<NonZeroU64> = h
            .lock_index()
            .purge()
            .into_iter()
            .filter_map(|(_, e)| e.shared)
            .collect();
        let mut ops = vec![Op::Delete(
            Space::Meta,
            format!("{META_QUEUE}{name}").into_bytes(),
        )];
        // Writes to this queue still on their way to fjall must be there for the scan.
        self.committer
            .settle()
            .await
            .map_err(StorageError::Unavailable)?;
        let prefix = codec::queue_prefix(h.id);
        for space in [Space::Messages, Space::State, Space::Dedup] {
            let ks = match space {
                Space::Messages => &self.spaces.messages,
                Space::State => &self.spaces.state,
                _ => &self.spaces.dedup,
            };
            for kv in ks.prefix(prefix) {
                ops.push(Op::Delete(space, kv.key()?.to_vec()));
            }
        }
        self.release(released, ops, |c, ops| c.send(ops))
            .await
            .map_err(StorageError::Unavailable)?;
        Ok(true)
    }

    /// Stores a publish's deliveries (queue messages and stream records) with one atomic,
    /// durable write. Nothing is visible to receivers before it is on disk, but messages
    /// for queues read before the sync, once the log has them.
    pub async fn store(&self, items: Vec<Delivery>) -> Result<Vec<Stored>, StorageError> {
        // FIFO queues are held in id order (no deadlock between concurrent fan-outs) for
        // the whole call so their messages enter the index in sequence order.
        let mut fifo: Vec<Arc<QueueHandle>> = items
            .iter()
            .filter_map(|d| match d {
                Delivery::Queue(q, _) if q.embedded().fifo => Some(q.embedded().clone()),
                _ => None,
            })
            .collect();
        fifo.sort_by_key(|h| h.id);
        fifo.dedup_by_key(|h| h.id);
        let mut _order_guards = Vec::with_capacity(fifo.len());
        for h in &fifo {
            _order_guards.push(h.fifo_order.lock().await);
        }
        let Staged {
            early,
            durable,
            results,
            pending,
            appended,
            claimed,
            new_shared,
        } = self.stage(items);
        if let Err(e) = durable.await {
            let mut refs = self.shared.refs.lock().expect("never poisoned");
            for (id, _) in &new_shared {
                refs.remove(id);
            }
            drop(refs);
            // Forget the dedup ids claimed above, so a retry of this publish is not taken
            // for a duplicate of something that was never stored.
            for (h, id) in claimed {
                h.dedup.lock().expect("never poisoned").remove(&id);
            }
            // Take back what was offered before the sync; an attempt already under way
            // ends with a stale receipt.
            if let Some(early) = early
                && early.indexed.load(Ordering::Acquire)
            {
                for (h, seq, _) in &early.entries {
                    h.lock_index().remove(*seq);
                }
            }
            return Err(StorageError::Unavailable(e));
        }
        if let Some(early) = early {
            early.index();
        }
        Self::index_stored(pending);
        for (h, shard, seq) in appended {
            Self::stream_appended(&h, &[(shard, seq)]);
        }
        Ok(results)
    }

    /// Adds stored messages to their queues' indexes and wakes the receivers. A batch
    /// publish puts many messages in each of a few queues: each queue's index is locked
    /// and its receivers woken once, not once per message. A queue's messages keep their
    /// order, which FIFO group order depends on.
    fn index_stored(stored: impl IntoIterator<Item = NewEntry>) {
        let mut by_queue: Vec<ToIndex> = Vec::new();
        for (h, seq, entry) in stored {
            match by_queue.iter_mut().find(|(q, _)| Arc::ptr_eq(q, &h)) {
                Some((_, entries)) => entries.push((seq, entry)),
                None => by_queue.push((h, vec![(seq, entry)])),
            }
        }
        let now = now_ms();
        for (h, entries) in by_queue {
            if !h.is_deleted() {
                let mut idx = h.lock_index();
                for (seq, entry) in entries {
                    idx.insert(seq, entry, now);
                }
                drop(idx);
                h.arrivals.notify_waiters();
            }
        }
    }

    /// Locks the shards appended to (in order), allocates sequence numbers and hands the
    /// writes to the committer, all without awaiting, so no lock is held across an await.
    fn stage(&self, items: Vec<Delivery>) -> Staged {
        // Shards appended to, locked in (stream, shard) order until the write is handed
        // to the committer, so sequence order is commit order.
        let mut shard_keys: Vec<(u64, u32, Arc<StreamHandle>)> = items
            .iter()
            .filter_map(|d| match d {
                Delivery::Stream(h, s, _) => {
                    let h = h.embedded();
                    Some((h.id, *s, h.clone()))
                }
                _ => None,
            })
            .collect();
        shard_keys.sort_by_key(|(id, s, _)| (*id, *s));
        shard_keys.dedup_by_key(|(id, s, _)| (*id, *s));
        let mut shard_guards: Vec<ShardGuard<'_>> = Vec::with_capacity(shard_keys.len());
        for (id, s, h) in &shard_keys {
            shard_guards.push((
                (*id, *s),
                h.shards[*s as usize]
                    .append
                    .lock()
                    .expect("shard lock poisoned"),
            ));
        }

        let now = now_ms();
        let share = find_shared(&items);
        // The shared body id of each item that writes one, by index.
        let mut shared_ids: Vec<Option<NonZeroU64>> = Vec::new();
        let mut ops = Vec::with_capacity(items.len() * 2);
        let mut results = Vec::with_capacity(items.len());
        let mut pending: Vec<NewEntry> = Vec::with_capacity(items.len());
        let mut appended: Vec<(Arc<StreamHandle>, u32, u64)> = Vec::new();
        let mut claimed: Vec<(Arc<QueueHandle>, String)> = Vec::new();
        let mut new_shared: Vec<(NonZeroU64, u32)> = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let (h, m) = match item {
                Delivery::Queue(q, m) => (q.into_embedded(), m),
                Delivery::Stream(h, shard, rec) => {
                    let h = h.into_embedded();
                    let guard = shard_guards
                        .iter_mut()
                        .find(|(k, _)| *k == (h.id, shard))
                        .map(|(_, g)| g)
                        .expect("every appended shard was locked above");
                    let (shard, seq) = Self::stream_ops(&h, shard, rec, &mut ops, guard);
                    results.push(Stored::Stream {
                        shard,
                        sequence: seq,
                    });
                    appended.push((h, shard, seq));
                    continue;
                }
            };
            if let Some(id) = &m.dedup_id {
                let mut dd = h.dedup.lock().expect("never poisoned");
                match dd.get(id) {
                    Some((exp, original)) if *exp > now => {
                        results.push(Stored::Queue(Enqueued::Duplicate {
                            original_message_id: original.clone(),
                        }));
                        continue;
                    }
                    _ => {
                        let exp = now + FIFO_DEDUP_WINDOW_S * 1000;
                        dd.insert(id.clone(), (exp, m.message_id.clone()));
                        ops.push(Op::Put(
                            Space::Dedup,
                            codec::dedup_key(h.id, id),
                            codec::encode_dedup(exp, &m.message_id),
                        ));
                        claimed.push((h.clone(), id.clone()));
                    }
                }
            }
            let seq = h.next_seq.fetch_add(1, Ordering::Relaxed);
            let key = codec::msg_key(h.id, seq).to_vec();
            let body = || {
                codec::encode_body(&Body {
                    message_id: m.message_id,
                    attributes: m.attributes,
                    payload: m.payload,
                })
            };
            let shared = match share.get(i).copied().unwrap_or(Share::Own) {
                Share::Own => {
                    ops.push(Op::Put(Space::Messages, key.clone(), body()));
                    None
                }
                Share::First(n) => {
                    let id = self.shared.next.fetch_add(1, Ordering::Relaxed);
                    let id = NonZeroU64::new(id).expect("shared body ids start at 1");
                    ops.push(Op::Put(
                        Space::Messages,
                        codec::shared_key(id).to_vec(),
                        body(),
                    ));
                    new_shared.push((id, n));
                    shared_ids.resize(i + 1, None);
                    shared_ids[i] = Some(id);
                    Some(id)
                }
                Share::Same(f) => shared_ids[f],
            };
            let entry = Entry {
                sent_at: now,
                visible_at: now + m.delay_ms,
                receive_count: 0,
                state: MsgState::Visible,
                group: m.group,
                origin: None,
                shared,
            };
            ops.push(Op::Put(Space::State, key, codec::encode_state(&entry)));
            pending.push((h, seq, entry));
            results.push(Stored::Queue(Enqueued::Stored));
        }
        if !new_shared.is_empty() {
            // Counted before the write is handed over: a message read before the sync
            // may be acknowledged before this store returns.
            let mut refs = self.shared.refs.lock().expect("never poisoned");
            for (id, n) in &new_shared {
                refs.insert(*id, *n);
            }
        }
        let (early, durable) = if pending.iter().any(|(h, ..)| h.before_sync()) {
            let (now, later): (Vec<_>, Vec<_>) = std::mem::take(&mut pending)
                .into_iter()
                .partition(|(h, ..)| h.before_sync());
            pending = later;
            let early = Arc::new(EarlyIndex {
                entries: now,
                indexed: AtomicBool::new(false),
            });
            let on_written = {
                let early = early.clone();
                Box::new(move || early.index())
            };
            let durable = self.committer.send_tracked(ops, on_written);
            (Some(early), Box::pin(durable) as std::pin::Pin<Box<_>>)
        } else {
            (
                None,
                Box::pin(self.committer.send(ops)) as std::pin::Pin<Box<_>>,
            )
        };
        drop(shard_guards);
        Staged {
            early,
            durable,
            results,
            pending,
            appended,
            claimed,
            new_shared,
        }
    }

    /// Receives up to `max` visible messages without waiting.
    pub async fn receive(
        &self,
        h: &Arc<QueueHandle>,
        max: usize,
        visibility_ms: u64,
    ) -> Result<Vec<Received>, StorageError> {
        let taken = h.lock_index().take(now_ms(), max, visibility_ms);
        if taken.is_empty() {
            return Ok(Vec::new());
        }
        let mut ops = Vec::with_capacity(taken.len());
        let mut out = Vec::with_capacity(taken.len());
        for (seq, e) in taken {
            let key = codec::msg_key(h.id, seq);
            let Some(body) = self.read_body(&codec::body_key(h.id, seq, &e))? else {
                tracing::error!(queue = %h.name, seq, "message body missing; dropping it from the index");
                h.lock_index().remove(seq);
                continue;
            };
            ops.push(Op::Put(Space::State, key.to_vec(), codec::encode_state(&e)));
            out.push(Received {
                message_id: body.message_id,
                receipt: format!("{:x}-{:x}-{:x}", h.id, seq, e.receive_count),
                payload: body.payload,
                attributes: body.attributes,
                receive_count: e.receive_count,
                sent_at: e.sent_at,
                origin: e.origin.and_then(|id| self.queue_name(id.get())),
                group: e.group,
            });
        }
        if h.lazy_sync() {
            // A delivery queue's in-flight marks need not be durable before the worker
            // starts: lost, the delivery is only attempted once more (at-least-once). They
            // are logged ahead of anything the attempt writes (its ack or retry), and reach
            // the OS with the log's next write-out (the next sync, or within the apply
            // window); not waiting for that takes a storage round trip out of
            // publish-to-handler time.
            self.committer.submit(ops);
        } else {
            // In-flight marks survive a kill once in the OS. A machine crash before the
            // next sync (well under a millisecond) can only make the messages visible
            // again early, with their receive count as before: at-least-once delivery,
            // as SQS promises. Not waiting for the disk halves a receive's storage time.
            self.committer
                .send_written(ops)
                .await
                .map_err(StorageError::Unavailable)?;
        }
        Ok(out)
    }

    /// The name of the queue with id `id`, while it exists.
    fn queue_name(&self, id: u64) -> Option<String> {
        self.by_id
            .read()
            .expect("never poisoned")
            .get(&id)
            .map(|h| h.name.clone())
    }

    /// Moves received messages, by their receipts, from `from` to `to` with one durable
    /// write; a message whose receipt is no longer current stays where it is. Returns how
    /// many moved.
    pub async fn move_messages(
        &self,
        from: &Arc<QueueHandle>,
        messages: &[Received],
        to: &Arc<QueueHandle>,
        why: Move,
    ) -> Result<u64, StorageError> {
        let mut entries = Vec::with_capacity(messages.len());
        {
            let mut idx = from.lock_index();
            for m in messages {
                let Ok((seq, receipt_count)) = parse_receipt(from.id, &m.receipt) else {
                    continue;
                };
                if let Ok(e) = idx.ack(seq, receipt_count) {
                    entries.push((seq, e));
                }
            }
        }
        if entries.is_empty() {
            return Ok(0);
        }
        let n = entries.len() as u64;
        let mut ops = Vec::with_capacity(entries.len() * 4);
        let moved = self.move_ops(from, to, entries, why, &mut ops)?;
        // A move waits for the disk, as a publish does: the message must not be lost
        // between the two queues.
        self.committer
            .commit(ops)
            .await
            .map_err(StorageError::Unavailable)?;
        self.index_moved(&moved.0, moved.1);
        Ok(n)
    }

    /// Receives up to `max` messages, waiting up to `wait` for the first to arrive or to
    /// become visible (long polling). Returns early, maybe empty, when `stop` is cancelled
    /// or the queue is deleted.
    pub async fn receive_wait(
        &self,
        h: &Arc<QueueHandle>,
        max: usize,
        visibility_ms: u64,
        wait: std::time::Duration,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<Vec<Received>, StorageError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before looking, so an arrival between the look and the wait is
            // not missed.
            let arrived = h.arrivals.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            let got = self.receive(h, max, visibility_ms).await?;
            let now = tokio::time::Instant::now();
            if !got.is_empty() || now >= deadline || h.is_deleted() || stop.is_cancelled() {
                return Ok(got);
            }
            // Also wake when a delayed or in-flight message becomes visible.
            let wake = match h.next_due() {
                Some(at) => {
                    let ms = at.saturating_sub(now_ms());
                    deadline.min(now + std::time::Duration::from_millis(ms))
                }
                None => deadline,
            };
            tokio::select! {
                _ = arrived => {}
                _ = tokio::time::sleep_until(wake) => {}
                _ = stop.cancelled() => {}
            }
        }
    }

    /// Builds the writes that move messages from `from` to `to` (new sequence numbers in
    /// `to`, receive count reset, original send time kept for retention as SQS does).
    fn move_ops(
        &self,
        from: &Arc<QueueHandle>,
        to: &Arc<QueueHandle>,
        entries: Vec<(u64, Entry)>,
        why: Move,
        ops: &mut Vec<Op>,
    ) -> Result<ToIndex, StorageError> {
        let mut moved = Vec::with_capacity(entries.len());
        for (seq, e) in entries {
            let old = codec::msg_key(from.id, seq);
            // A shared body stays where it is: the moved message still carries it.
            let body = match e.shared {
                Some(_) => None,
                None => match self.body_bytes(&old)? {
                    Some(body) => Some(body),
                    None => continue,
                },
            };
            let new_seq = to.next_seq.fetch_add(1, Ordering::Relaxed);
            let new_key = codec::msg_key(to.id, new_seq).to_vec();
            let origin = match why {
                Move::ToDeadLetter => NonZeroU64::new(from.id),
                // Back to where it came from: it is no longer a dead letter.
                Move::Back => None,
            };
            let ne = Entry {
                sent_at: e.sent_at,
                visible_at: 0,
                receive_count: 0,
                state: MsgState::Visible,
                group: if to.fifo { e.group } else { None },
                origin,
                shared: e.shared,
            };
            if let Some(body) = body {
                ops.push(Op::Delete(Space::Messages, old.to_vec()));
                ops.push(Op::Put(Space::Messages, new_key.clone(), body.to_vec()));
            }
            ops.push(Op::Delete(Space::State, old.to_vec()));
            ops.push(Op::Put(Space::State, new_key, codec::encode_state(&ne)));
            moved.push((new_seq, ne));
        }
        Ok((to.clone(), moved))
    }

    fn index_moved(&self, to: &Arc<QueueHandle>, entries: Vec<(u64, Entry)>) {
        let now = now_ms();
        let mut idx = to.lock_index();
        for (seq, e) in entries {
            idx.insert(seq, e, now);
        }
        drop(idx);
        to.arrivals.notify_waiters();
    }

    /// A message body, from the committer while fjall does not have it yet.
    fn body_bytes(&self, key: &[u8]) -> Result<Option<fjall::Slice>, StorageError> {
        match self.committer.pending_body(key) {
            Some(v) => Ok(Some(v)),
            None => Ok(self.spaces.messages.get(key)?),
        }
    }

    fn read_body(&self, key: &[u8]) -> Result<Option<Body>, StorageError> {
        match self.body_bytes(key)? {
            None => Ok(None),
            Some(v) => codec::decode_body(&v)
                .map(Some)
                .ok_or_else(|| StorageError::Corrupt("a message body".into())),
        }
    }

    /// Deletes received messages by receipt. Each receipt gets its own verdict; the
    /// accepted deletions are durable when this returns.
    pub async fn ack(
        &self,
        h: &Arc<QueueHandle>,
        receipts: &[String],
    ) -> Result<Vec<Result<(), ReceiptError>>, StorageError> {
        let mut ops = Vec::with_capacity(receipts.len() * 2);
        let mut released = Vec::new();
        let mut verdicts = Vec::with_capacity(receipts.len());
        {
            let mut idx = h.lock_index();
            for r in receipts {
                let v = parse_receipt(h.id, r).and_then(|(seq, rc)| {
                    idx.ack(seq, rc)
                        .map(|e| (seq, e))
                        .map_err(|p| receipt_error(p, r))
                });
                match v {
                    Ok((seq, e)) => {
                        delete_ops(h.id, seq, &e, &mut ops, &mut released);
                        verdicts.push(Ok(()));
                    }
                    Err(e) => verdicts.push(Err(e)),
                }
            }
        }
        let durable = self.release(released, ops, |c, ops| {
            if h.lazy_sync() {
                // A delivery's ack lost in a crash only repeats the delivery
                // (at-least-once), so the worker does not wait for the sync.
                c.submit(ops);
                None
            } else {
                (!ops.is_empty()).then(|| c.send(ops))
            }
        });
        if let Some(durable) = durable {
            durable.await.map_err(StorageError::Unavailable)?;
        }
        Ok(verdicts)
    }

    /// Changes how long a received message stays invisible, counted from now.
    pub async fn change_visibility(
        &self,
        h: &Arc<QueueHandle>,
        receipt: &str,
        visibility_ms: u64,
    ) -> Result<Result<(), ReceiptError>, StorageError> {
        let r = parse_receipt(h.id, receipt).and_then(|(seq, rc)| {
            h.lock_index()
                .change_visibility(seq, rc, now_ms(), visibility_ms)
                .map(|e| (seq, e))
                .map_err(|p| receipt_error(p, receipt))
        });
        let (seq, e) = match r {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let key = codec::msg_key(h.id, seq).to_vec();
        self.committer
            .commit(vec![Op::Put(Space::State, key, codec::encode_state(&e))])
            .await
            .map_err(StorageError::Unavailable)?;
        // Waiting receivers sleep until the earliest visibility they knew of; this one may
        // now be earlier.
        h.arrivals.notify_waiters();
        Ok(Ok(()))
    }

    /// Deletes every message in the queue; returns how many.
    pub async fn purge(&self, h: &Arc<QueueHandle>) -> Result<u64, StorageError> {
        let gone = h.lock_index().purge();
        let mut ops = Vec::with_capacity(gone.len() * 2);
        let mut released = Vec::new();
        for (seq, e) in &gone {
            delete_ops(h.id, *seq, e, &mut ops, &mut released);
        }
        self.release(released, ops, |c, ops| c.send(ops))
            .await
            .map_err(StorageError::Unavailable)?;
        Ok(gone.len() as u64)
    }

    pub fn counts(&self, h: &QueueHandle) -> Counts {
        h.lock_index().counts(now_ms())
    }

    /// Drops messages past their queue's retention and forgets dedup ids past the window.
    /// The deletions ride along with the next durable batch: losing them in a crash only
    /// means they are swept again after restart.
    pub fn sweep(&self) {
        let now = now_ms();
        let mut ops = Vec::new();
        let mut released = Vec::new();
        if let Err(e) = self.sweep_streams(&mut ops) {
            tracing::error!(error = %e, "sweeping streams failed");
        }
        let queues: Vec<Arc<QueueHandle>> = self
            .queues
            .read()
            .expect("never poisoned")
            .values()
            .cloned()
            .collect();
        for h in queues {
            let retention_ms = h.spec().retention_s * 1000;
            for (seq, e) in h.lock_index().expire(now, retention_ms) {
                delete_ops(h.id, seq, &e, &mut ops, &mut released);
            }
            h.dedup
                .lock()
                .expect("never poisoned")
                .retain(|id, (exp, _)| {
                    let keep = *exp > now;
                    if !keep {
                        ops.push(Op::Delete(Space::Dedup, codec::dedup_key(h.id, id)));
                    }
                    keep
                });
        }
        self.release(released, ops, |c, ops| c.submit(ops));
    }
}

fn new_handle(id: u64, name: String, spec: QueueSpec, kind: QueueKind) -> Arc<QueueHandle> {
    Arc::new(QueueHandle {
        id,
        name,
        fifo: spec.fifo,
        kind,
        before_sync: AtomicBool::new(false),
        index: Mutex::new(QueueIndex::new(spec.fifo)),
        spec: Mutex::new(spec),
        next_seq: AtomicU64::new(1),
        dedup: Mutex::default(),
        fifo_order: tokio::sync::Mutex::new(()),
        arrivals: Notify::new(),
        deleted: AtomicBool::new(false),
    })
}

fn clone_spaces(s: &Spaces) -> Spaces {
    Spaces {
        meta: s.meta.clone(),
        messages: s.messages.clone(),
        state: s.state.clone(),
        dedup: s.dedup.clone(),
        records: s.records.clone(),
    }
}

/// A receipt is `QUEUE_ID-SEQ-RECEIVE_COUNT` in hex: it names the queue, the message and
/// the receive it came from, so a receipt from an earlier receive is recognisably stale.
fn parse_receipt(queue_id: u64, r: &str) -> Result<(u64, u32), ReceiptError> {
    let invalid = || ReceiptError::Invalid(r.to_string());
    let mut it = r.splitn(3, '-');
    let (Some(q), Some(s), Some(c)) = (it.next(), it.next(), it.next()) else {
        return Err(invalid());
    };
    let q = u64::from_str_radix(q, 16).map_err(|_| invalid())?;
    let s = u64::from_str_radix(s, 16).map_err(|_| invalid())?;
    let c = u32::from_str_radix(c, 16).map_err(|_| invalid())?;
    if q != queue_id {
        return Err(invalid());
    }
    Ok((s, c))
}

fn receipt_error(p: ReceiptProblem, r: &str) -> ReceiptError {
    match p {
        ReceiptProblem::Gone | ReceiptProblem::Stale => ReceiptError::Expired(r.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::wal::Wal;
    use super::*;
    use crate::backend::Queue;

    impl Embedded {
        /// Stores messages in their queues, as the backend's `enqueue` does.
        async fn enqueue(
            &self,
            items: Vec<(Arc<QueueHandle>, NewMessage)>,
        ) -> Result<Vec<Enqueued>, StorageError> {
            let stored = self
                .store(
                    items
                        .into_iter()
                        .map(|(h, m)| Delivery::Queue(Queue::Embedded(h), m))
                        .collect(),
                )
                .await?;
            Ok(crate::backend::queue_outcomes(stored))
        }
    }

    fn msg(id: &str) -> NewMessage {
        NewMessage {
            message_id: id.into(),
            payload: format!("{{\"n\":\"{id}\"}}").into_bytes(),
            attributes: b"{}".to_vec(),
            delay_ms: 0,
            group: None,
            dedup_id: None,
        }
    }

    /// Shared bodies in fjall, once everything handed over is there.
    async fn shared_bodies(s: &Embedded) -> usize {
        s.committer.settle().await.unwrap();
        s.spaces.messages.prefix(codec::SHARED_PREFIX).count()
    }

    #[tokio::test]
    async fn a_body_several_messages_carry_is_stored_once_until_the_last_goes() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Embedded::open(dir.path()).unwrap();
            let dlq = s
                .put_queue("dlq", QueueSpec::default(), QueueKind::User)
                .await
                .unwrap();
            let a = s
                .put_queue("a", QueueSpec::default(), QueueKind::User)
                .await
                .unwrap();
            let b = s
                .put_queue("b", QueueSpec::default(), QueueKind::User)
                .await
                .unwrap();
            let c = s
                .put_queue("c", QueueSpec::default(), QueueKind::User)
                .await
                .unwrap();
            let other = NewMessage {
                payload: br#"{"n":"other"}"#.to_vec(),
                ..msg("m1")
            };
            s.enqueue(vec![
                (a.clone(), msg("m1")),
                (b.clone(), msg("m1")),
                (c.clone(), msg("m1")),
                (c.clone(), other),
            ])
            .await
            .unwrap();
            assert_eq!(shared_bodies(&s).await, 1);
            // Only the message whose payload differs has a body of its own.
            let own = |q: &QueueHandle| s.spaces.messages.prefix(codec::queue_prefix(q.id)).count();
            assert_eq!((own(&a), own(&b), own(&c)), (0, 0, 1));

            // Moved to the dead-letter queue, the message still carries the body.
            let dead = s.receive(&a, 1, 0).await.unwrap();
            assert_eq!(dead[0].payload, br#"{"n":"m1"}"#);
            let moved = s.move_messages(&a, &dead, &dlq, Move::ToDeadLetter);
            assert_eq!(moved.await.unwrap(), 1);
            assert!(s.receive(&a, 1, 0).await.unwrap().is_empty());
            assert_eq!(s.counts(&dlq).visible, 1);
            let got = s.receive(&b, 10, 60_000).await.unwrap();
            assert_eq!(got[0].payload, br#"{"n":"m1"}"#);
            s.ack(&b, &[got[0].receipt.clone()]).await.unwrap();
            assert_eq!(shared_bodies(&s).await, 1);
        }
        // The carriers left (the dead letter and c's) are counted again at start.
        let s = Embedded::open(dir.path()).unwrap();
        let (c, dlq) = (s.queue("c").unwrap(), s.queue("dlq").unwrap());
        assert_eq!(s.purge(&c).await.unwrap(), 2);
        assert_eq!(shared_bodies(&s).await, 1);
        let got = s.receive(&dlq, 10, 60_000).await.unwrap();
        assert_eq!(got[0].payload, br#"{"n":"m1"}"#);
        s.ack(&dlq, &[got[0].receipt.clone()]).await.unwrap();
        assert_eq!(shared_bodies(&s).await, 0);
    }

    #[tokio::test]
    async fn deleting_queues_releases_their_shared_bodies_and_orphans_go_at_start() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Embedded::open(dir.path()).unwrap();
            let a = s
                .put_queue("a", QueueSpec::default(), QueueKind::User)
                .await
                .unwrap();
            let b = s
                .put_queue("b", QueueSpec::default(), QueueKind::User)
                .await
                .unwrap();
            s.enqueue(vec![(a.clone(), msg("m1")), (b.clone(), msg("m1"))])
                .await
                .unwrap();
            assert!(s.delete_queue("a").await.unwrap());
            assert_eq!(shared_bodies(&s).await, 1);
            assert_eq!(
                s.receive(&b, 1, 0).await.unwrap()[0].payload,
                br#"{"n":"m1"}"#
            );
            assert!(s.delete_queue("b").await.unwrap());
            assert_eq!(shared_bodies(&s).await, 0);
            // A shared body no message carries, as a crash in the middle of deleting a
            // queue that was being published to could leave.
            let orphan = NonZeroU64::new(41).unwrap();
            s.committer
                .commit(vec![Op::Put(
                    Space::Messages,
                    codec::shared_key(orphan).to_vec(),
                    b"body".to_vec(),
                )])
                .await
                .unwrap();
        }
        let s = Embedded::open(dir.path()).unwrap();
        assert_eq!(shared_bodies(&s).await, 0);
        // Its id is not handed out again.
        assert!(s.shared.next.load(Ordering::Relaxed) > 41);
    }

    /// What a randomised run of [`shared_bodies_follow_their_carriers`] does.
    #[derive(Debug, Clone)]
    enum StoreOp {
        /// One message to each queue of the mask (bit i: `QUEUES[i]`), as a fan-out.
        Publish(u8),
        /// Receives up to 10 (visible again at once), then acknowledges them or not.
        Receive(usize, bool),
        Purge(usize),
        /// Deletes the queue and creates it again, empty.
        Recreate(usize),
        Reopen,
    }

    /// `a` sends what it received twice to `d`; `a` and `d` are one family in the model,
    /// which cannot tell when a message moves.
    const QUEUES: [&str; 4] = ["a", "b", "c", "d"];
    const FAMILY: [usize; 4] = [0, 1, 2, 0];

    fn store_op() -> impl proptest::strategy::Strategy<Value = StoreOp> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (1u8..8).prop_map(StoreOp::Publish),
            4 => (0usize..4, any::<bool>()).prop_map(|(q, ack)| StoreOp::Receive(q, ack)),
            1 => (1usize..3).prop_map(StoreOp::Purge),
            1 => Just(StoreOp::Recreate(2)),
            1 => Just(StoreOp::Reopen),
        ]
    }

    async fn open_queues(s: &Embedded) -> Vec<Arc<QueueHandle>> {
        let mut out = Vec::new();
        for name in QUEUES {
            let spec = match name {
                "a" => QueueSpec {
                    redrive_policy: Some(crate::model::RedrivePolicy {
                        dead_letter_queue: "d".into(),
                        max_receive_count: 2,
                    }),
                    ..QueueSpec::default()
                },
                _ => QueueSpec::default(),
            };
            out.push(s.put_queue(name, spec, QueueKind::User).await.unwrap());
        }
        out
    }

    /// Runs `ops` against the store and a model of which messages each queue family
    /// holds; then every message is received with its body and acknowledged, after
    /// which no body of any kind is left.
    async fn run_store_ops(ops: &[StoreOp]) {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Embedded::open(dir.path()).unwrap();
        let mut qs = open_queues(&s).await;
        let mut model: [std::collections::BTreeMap<String, usize>; 3] = Default::default();
        let mut published = 0;
        for (i, op) in ops.iter().enumerate() {
            match op {
                StoreOp::Publish(mask) => {
                    let id = format!("m{published}");
                    published += 1;
                    let mut items = Vec::new();
                    for (q, h) in qs.iter().enumerate() {
                        if mask & (1 << q) != 0 {
                            items.push((h.clone(), msg(&id)));
                            *model[FAMILY[q]].entry(id.clone()).or_default() += 1;
                        }
                    }
                    s.enqueue(items).await.unwrap();
                }
                StoreOp::Receive(q, ack) => {
                    let got = s.receive(&qs[*q], 10, 0).await.unwrap();
                    for m in &got {
                        let expected = format!(r#"{{"n":"{}"}}"#, m.message_id);
                        assert_eq!(m.payload, expected.as_bytes(), "op {i}: {op:?}");
                    }
                    if *ack {
                        let receipts: Vec<String> = got.iter().map(|m| m.receipt.clone()).collect();
                        let verdicts = s.ack(&qs[*q], &receipts).await.unwrap();
                        assert!(verdicts.iter().all(Result::is_ok), "op {i}: {op:?}");
                        for m in &got {
                            let held = model[FAMILY[*q]].get_mut(&m.message_id).unwrap();
                            *held -= 1;
                            if *held == 0 {
                                model[FAMILY[*q]].remove(&m.message_id);
                            }
                        }
                    }
                }
                StoreOp::Purge(q) => {
                    s.purge(&qs[*q]).await.unwrap();
                    model[FAMILY[*q]].clear();
                }
                StoreOp::Recreate(q) => {
                    assert!(s.delete_queue(QUEUES[*q]).await.unwrap());
                    qs[*q] = s
                        .put_queue(QUEUES[*q], QueueSpec::default(), QueueKind::User)
                        .await
                        .unwrap();
                    model[FAMILY[*q]].clear();
                }
                StoreOp::Reopen => {
                    drop(qs);
                    drop(s);
                    s = Embedded::open(dir.path()).unwrap();
                    qs = open_queues(&s).await;
                }
            }
        }
        for (family, expected) in model.iter().enumerate() {
            let mut held = std::collections::BTreeMap::new();
            for q in (0..QUEUES.len()).filter(|&q| FAMILY[q] == family) {
                loop {
                    let got = s.receive(&qs[q], 10, 600_000).await.unwrap();
                    if got.is_empty() {
                        break;
                    }
                    for m in &got {
                        let body = format!(r#"{{"n":"{}"}}"#, m.message_id);
                        assert_eq!(m.payload, body.as_bytes());
                        *held.entry(m.message_id.clone()).or_default() += 1;
                    }
                    let receipts: Vec<String> = got.iter().map(|m| m.receipt.clone()).collect();
                    s.ack(&qs[q], &receipts).await.unwrap();
                }
            }
            assert_eq!(&held, expected, "family of {}", QUEUES[family]);
        }
        assert_eq!(shared_bodies(&s).await, 0);
        assert_eq!(
            s.spaces.messages.iter().count(),
            0,
            "a body outlived its messages"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, ..Default::default() })]

        #[test]
        fn shared_bodies_follow_their_carriers(ops in proptest::collection::vec(store_op(), 0..40)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(run_store_ops(&ops));
        }
    }

    #[tokio::test]
    async fn acknowledged_writes_that_fjall_lacks_are_replayed_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let qid = {
            let s = Embedded::open(dir.path()).unwrap();
            s.put_queue("q", QueueSpec::default(), QueueKind::User)
                .await
                .unwrap()
                .id
        };
        // What a kill between the two stages leaves: a synced log record that never
        // reached fjall.
        {
            let (mut wal, found) = Wal::open(&dir.path().join("wal"), 0).unwrap();
            assert!(found.records.is_empty());
            let key = codec::msg_key(qid, 7).to_vec();
            let entry = Entry {
                sent_at: now_ms(),
                visible_at: 0,
                receive_count: 0,
                state: MsgState::Visible,
                group: None,
                origin: None,
                shared: None,
            };
            let body = Body {
                message_id: "replayed".into(),
                attributes: b"{}".to_vec(),
                payload: b"{}".to_vec(),
            };
            let mut rec = Wal::record_buf(0);
            rec.extend(committer::encode_ops(vec![
                Op::Put(Space::Messages, key.clone(), codec::encode_body(&body)),
                Op::Put(Space::State, key, codec::encode_state(&entry)),
            ]));
            wal.append(&mut rec).unwrap();
            wal.sync().unwrap();
        }
        for _ in 0..2 {
            // Replayed once; the second open finds fjall holding it and replays nothing.
            let s = Embedded::open(dir.path()).unwrap();
            let q = s.queue("q").unwrap();
            assert_eq!(s.counts(&q).visible, 1);
            let sent = s.enqueue(vec![(q.clone(), msg("after"))]).await.unwrap();
            assert_eq!(sent.len(), 1);
            let got = s.receive(&q, 10, 0).await.unwrap();
            let ids: Vec<_> = got.iter().map(|m| m.message_id.as_str()).collect();
            assert_eq!(ids[0], "replayed");
            for m in &got {
                if m.message_id == "after" {
                    s.ack(&q, std::slice::from_ref(&m.receipt)).await.unwrap();
                }
            }
        }
    }

    #[tokio::test]
    async fn stored_messages_survive_reopen_with_their_receive_state() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Embedded::open(dir.path()).unwrap();
            let q = s
                .put_queue("q", QueueSpec::default(), QueueKind::User)
                .await
                .unwrap();
            s.enqueue(vec![(q.clone(), msg("a")), (q.clone(), msg("b"))])
                .await
                .unwrap();
            let got = s.receive(&q, 1, 60_000).await.unwrap();
            assert_eq!(got[0].message_id, "a");
        }
        let s = Embedded::open(dir.path()).unwrap();
        let q = s.queue("q").unwrap();
        let c = s.counts(&q);
        assert_eq!((c.visible, c.in_flight), (1, 1));
        let got = s.receive(&q, 10, 1000).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].message_id, "b");
        assert_eq!(got[0].payload, br#"{"n":"b"}"#);
        // New messages continue the sequence instead of overwriting old ones.
        s.enqueue(vec![(q.clone(), msg("c"))]).await.unwrap();
        assert_eq!(s.counts(&q).visible, 1);
    }

    #[tokio::test]
    async fn ack_is_durable_and_receipts_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Embedded::open(dir.path()).unwrap();
            let q = s
                .put_queue("q", QueueSpec::default(), QueueKind::User)
                .await
                .unwrap();
            s.enqueue(vec![(q.clone(), msg("a"))]).await.unwrap();
            let r = s.receive(&q, 1, 60_000).await.unwrap();
            let verdicts = s
                .ack(
                    &q,
                    &[r[0].receipt.clone(), "nonsense".into(), "1-99-1".into()],
                )
                .await
                .unwrap();
            assert!(verdicts[0].is_ok());
            assert!(matches!(verdicts[1], Err(ReceiptError::Invalid(_))));
            assert!(matches!(verdicts[2], Err(ReceiptError::Expired(_))));
        }
        let s = Embedded::open(dir.path()).unwrap();
        let q = s.queue("q").unwrap();
        assert_eq!(s.counts(&q), Counts::default());
    }

    #[tokio::test]
    async fn moved_messages_remember_their_origin_until_they_move_back() {
        let dir = tempfile::tempdir().unwrap();
        let s = Embedded::open(dir.path()).unwrap();
        let q = s
            .put_queue("q", QueueSpec::default(), QueueKind::User)
            .await
            .unwrap();
        let dlq = s
            .put_queue("dlq", QueueSpec::default(), QueueKind::User)
            .await
            .unwrap();
        s.enqueue(vec![(q.clone(), msg("a")), (q.clone(), msg("b"))])
            .await
            .unwrap();
        let got = s.receive(&q, 2, 0).await.unwrap();
        // b's receipt goes stale: it is received again before the move.
        let again = s.receive(&q, 2, 30_000).await.unwrap();
        assert_eq!(again.len(), 2);
        let moved = s
            .move_messages(
                &q,
                &[again[0].clone(), got[1].clone()],
                &dlq,
                Move::ToDeadLetter,
            )
            .await
            .unwrap();
        assert_eq!(moved, 1, "only the current receipt moves a message");
        let dead = s.receive(&dlq, 10, 0).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].message_id, "a");
        assert_eq!(dead[0].origin.as_deref(), Some("q"));
        assert_eq!(dead[0].receive_count, 1, "a move starts the count again");
        assert_eq!(dead[0].payload, msg("a").payload);

        assert_eq!(
            s.move_messages(&dlq, &dead, &q, Move::Back).await.unwrap(),
            1
        );
        let mut back = s.receive(&q, 10, 0).await.unwrap();
        back.retain(|m| m.message_id == "a");
        assert_eq!(back[0].origin, None, "back home it is no dead letter");
        assert_eq!(s.counts(&dlq), Counts::default());
    }

    #[tokio::test]
    async fn fifo_dedup_id_is_remembered_across_restart() {
        let dir = tempfile::tempdir().unwrap();
        let spec = QueueSpec {
            fifo: true,
            ..QueueSpec::default()
        };
        let fifo_msg = |id: &str| NewMessage {
            group: Some("g".into()),
            dedup_id: Some("d1".into()),
            ..msg(id)
        };
        {
            let s = Embedded::open(dir.path()).unwrap();
            let q = s
                .put_queue("q.fifo", spec.clone(), QueueKind::User)
                .await
                .unwrap();
            let r = s.enqueue(vec![(q.clone(), fifo_msg("a"))]).await.unwrap();
            assert_eq!(r, [Enqueued::Stored]);
        }
        let s = Embedded::open(dir.path()).unwrap();
        let q = s.queue("q.fifo").unwrap();
        let r = s.enqueue(vec![(q.clone(), fifo_msg("b"))]).await.unwrap();
        assert_eq!(
            r,
            [Enqueued::Duplicate {
                original_message_id: "a".into()
            }]
        );
        assert_eq!(s.counts(&q).visible, 1);
    }

    #[tokio::test]
    async fn the_log_tells_when_logged_writes_are_in_it_and_only_them() {
        let dir = tempfile::tempdir().unwrap();
        let s = Embedded::open(dir.path()).unwrap();
        let tracked = |ops| {
            let (tx, rx) = std::sync::mpsc::channel();
            let durable = s
                .committer
                .send_tracked(ops, Box::new(move || tx.send(()).unwrap()));
            (rx, durable)
        };
        let (written, durable) = tracked(vec![Op::Put(Space::State, b"k".to_vec(), b"v".to_vec())]);
        durable.await.unwrap();
        assert!(written.try_recv().is_ok(), "a queue write is in the log");
        let (written, durable) =
            tracked(vec![Op::Put(Space::Records, b"k".to_vec(), b"v".to_vec())]);
        durable.await.unwrap();
        assert!(
            written.try_recv().is_err(),
            "a stream write only becomes durable in fjall"
        );
    }

    #[tokio::test]
    async fn a_fan_out_to_queues_read_before_and_after_the_sync_stores_both() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Embedded::open(dir.path()).unwrap();
            let early = s
                .put_queue("t:function", QueueSpec::default(), QueueKind::Delivery)
                .await
                .unwrap();
            early.set_before_sync(true);
            let late = s
                .put_queue("q", QueueSpec::default(), QueueKind::User)
                .await
                .unwrap();
            for i in 0..3 {
                let id = format!("m{i}");
                s.enqueue(vec![(early.clone(), msg(&id)), (late.clone(), msg(&id))])
                    .await
                    .unwrap();
            }
            for q in [&early, &late] {
                let got = s.receive(q, 10, 60_000).await.unwrap();
                let ids: Vec<_> = got.iter().map(|m| m.message_id.as_str()).collect();
                assert_eq!(ids, ["m0", "m1", "m2"], "in {}", q.name);
                s.ack(q, &[got[0].receipt.clone()]).await.unwrap();
            }
        }
        let s = Embedded::open(dir.path()).unwrap();
        for name in ["t:function", "q"] {
            let c = s.counts(&s.queue(name).unwrap());
            assert_eq!((c.visible, c.in_flight), (0, 2), "in {name}");
        }
    }
}
