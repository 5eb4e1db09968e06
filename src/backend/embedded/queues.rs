//! Queues in the embedded store: creating and deleting them, and everything a receiver
//! does (receive with visibility and long polling, acknowledge, change visibility, move
//! between queues, purge), each change made in the queue's index under its lock and in
//! storage through the committer.

use super::codec::{self, Body};
use super::committer::{Op, Space, Wait};
use super::index::{Entry, MsgState, Page, QueueIndex, ReceiptProblem};
use super::shared::delete_ops;
use super::{Embedded, META_QUEUE};
use crate::backend::{Counts, Move, QueueKind, ReceiptError, Received, StorageError, to_json};
use crate::model::QueueSpec;
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Messages written to one queue (stored or moved there), to be indexed once the write is
/// durable.
pub(super) type ToIndex = (Arc<QueueHandle>, Vec<(u64, Entry)>);

/// One queue: its spec, index and the waiters of long polls.
pub struct QueueHandle {
    pub id: u64,
    pub name: String,
    /// When it was created and its settings last changed (unix ms; 0 when its record
    /// predates keeping them).
    pub created_at: u64,
    pub modified_at: AtomicU64,
    /// Fixed at creation (a changed `fifo` is refused), so the publish path reads it
    /// without locking and cloning the spec.
    pub(super) fifo: bool,
    /// Who reads it. A delivery queue's receives and acks need not be durable before
    /// answering (a crash only repeats a delivery).
    pub(super) kind: QueueKind,
    /// Messages enter the index once written to the log, before its sync (see
    /// [`Queue::deliver_before_sync`](crate::backend::Queue::deliver_before_sync)).
    pub(super) before_sync: AtomicBool,
    pub(super) spec: Mutex<QueueSpec>,
    pub(super) index: Mutex<QueueIndex>,
    pub(super) next_seq: AtomicU64,
    /// FIFO deduplication ids still inside the window: id -> (expires_at, message id).
    pub(super) dedup: Mutex<HashMap<String, (u64, String)>>,
    /// FIFO queues hold this across allocate-commit-index so messages enter the index in
    /// sequence order, which group order depends on.
    pub(super) fifo_order: tokio::sync::Mutex<()>,
    /// Woken whenever messages are added, so long polls answer at once.
    pub arrivals: Notify,
    pub(super) deleted: AtomicBool,
}

impl QueueHandle {
    pub fn is_fifo(&self) -> bool {
        self.fifo
    }

    pub fn kind(&self) -> QueueKind {
        self.kind
    }

    /// Whether receives and acknowledgements may answer before they are durable.
    pub(super) fn lazy_sync(&self) -> bool {
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

    pub(super) fn lock_index(&self) -> std::sync::MutexGuard<'_, QueueIndex> {
        // The index is only mutated by code that cannot panic halfway (no I/O under it).
        self.index.lock().expect("queue index lock poisoned")
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct QueueRecord {
    pub(super) id: u64,
    pub(super) spec: QueueSpec,
    /// Absent from records written before queues carried their kind: those name a
    /// delivery queue with a `:` (a user's queue name cannot hold one).
    #[serde(default)]
    pub(super) kind: Option<QueueKind>,
    /// When it was created and last changed (unix ms; 0 in records written before they
    /// were kept).
    #[serde(default)]
    pub(super) created_at: u64,
    #[serde(default)]
    pub(super) modified_at: u64,
}

impl Embedded {
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
        self.disk.admit_resource(name)?;
        let now = self.clock().now_ms();
        if let Some(h) = self.queue(name) {
            let rec = QueueRecord {
                id: h.id,
                spec: spec.clone(),
                kind: Some(h.kind),
                created_at: h.created_at,
                modified_at: now,
            };
            self.put_meta(&format!("{META_QUEUE}{name}"), to_json(&rec))
                .await?;
            *h.spec.lock().expect("never poisoned") = spec;
            h.modified_at.store(now, Ordering::Relaxed);
            return Ok(h);
        }
        let id = self.allocate_id().await?;
        let rec = QueueRecord {
            id,
            spec: spec.clone(),
            kind: Some(kind),
            created_at: now,
            modified_at: now,
        };
        self.put_meta(&format!("{META_QUEUE}{name}"), to_json(&rec))
            .await?;
        let h = new_handle(id, name.to_string(), spec, kind, (now, now), self.resident);
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
        let (gone, spilled) = h.lock_index().purge();
        let mut ops = vec![Op::Delete(
            Space::Meta,
            format!("{META_QUEUE}{name}").into_bytes(),
        )];
        // Writes to this queue still on their way to fjall must be there for the scan.
        self.committer
            .settle()
            .await
            .map_err(StorageError::Unavailable)?;
        let mut released: Vec<NonZeroU64> =
            gone.into_iter().filter_map(|(_, e)| e.shared).collect();
        for page in spilled.chunks(PURGE_PAGE) {
            let states = self.read_states(&h, page)?;
            released.extend(states.into_iter().filter_map(|(_, e)| e.shared));
        }
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
        self.release(released, ops, |c, ops| c.send(ops, Wait::Synced))
            .await
            .map_err(StorageError::Unavailable)?;
        Ok(true)
    }

    /// Receives up to `max` visible messages without waiting.
    pub async fn receive(
        &self,
        h: &Arc<QueueHandle>,
        max: usize,
        visibility_ms: u64,
    ) -> Result<Vec<Received>, StorageError> {
        self.page_in(h).await?;
        let (out, ops) = self.take(h, max, visibility_ms)?;
        if ops.is_empty() {
            return Ok(out);
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
                .send(ops, Wait::Written)
                .await
                .map_err(StorageError::Unavailable)?;
        }
        Ok(out)
    }

    /// Takes up to `max` visible messages to move them elsewhere with
    /// [`Self::move_messages`]: hidden for the queue's visibility timeout (at least a
    /// second, so that a hold can follow), as a receive hides them, but only in memory,
    /// so a crash before the move leaves them visible at the next start.
    pub async fn take_to_move(
        &self,
        h: &Arc<QueueHandle>,
        max: usize,
    ) -> Result<Vec<Received>, StorageError> {
        self.page_in(h).await?;
        let visibility_ms = (h.spec().visibility_timeout_s * 1000).max(1000);
        Ok(self.take(h, max, visibility_ms)?.0)
    }

    /// Hides messages taken to move for `ms` more (0: visible at once), in memory only
    /// as the take; a receipt gone stale changes nothing.
    pub fn hold(&self, h: &Arc<QueueHandle>, messages: &[Received], ms: u64) {
        let now = self.clock.now_ms();
        let mut idx = h.lock_index();
        for m in messages {
            if let Ok((seq, receipt_count)) = parse_receipt(h.id, &m.receipt) {
                idx.change_visibility(seq, receipt_count, now, ms).ok();
            }
        }
        drop(idx);
        // Receivers sleep until the earliest visibility they knew of.
        h.arrivals.notify_waiters();
    }

    /// Hides up to `max` visible messages in the index for `visibility_ms`; returns them
    /// and the writes that make their new state durable.
    fn take(
        &self,
        h: &Arc<QueueHandle>,
        max: usize,
        visibility_ms: u64,
    ) -> Result<(Vec<Received>, Vec<Op>), StorageError> {
        let taken = h.lock_index().take(self.clock.now_ms(), max, visibility_ms);
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
                first_received_at: Some(e.first_received_at).filter(|&t| t != 0),
                dedup_id: body.dedup_id,
                sequence: seq,
                origin: e.origin.and_then(|id| self.queue_name(id.get())),
                group: e.group,
            });
        }
        Ok((out, ops))
    }

    /// Reads a page of the queue's spilled messages back into its index when the visible
    /// ones in memory ran low (see [`QueueIndex`]).
    async fn page_in(&self, h: &Arc<QueueHandle>) -> Result<(), StorageError> {
        let Some(page) = h.lock_index().page_to_read() else {
            return Ok(());
        };
        // Put back should this receive fail or be dropped while it reads.
        let mut reading = Reading(h.as_ref(), Some(page));
        // A message is spilled once its writes are logged: once fjall has everything
        // logged so far, it has them all.
        self.committer
            .settle()
            .await
            .map_err(StorageError::Unavailable)?;
        let read = self.read_states(h, &reading.page().seqs)?;
        let page = reading.1.take().expect("taken once");
        if read.len() < page.seqs.len() {
            tracing::error!(queue = %h.name, missing = page.seqs.len() - read.len(), "spilled messages missing from storage; dropping them from the index");
        }
        h.lock_index().paged_in(&page, read, self.clock.now_ms());
        // Other receivers may be waiting for what was read.
        h.arrivals.notify_waiters();
        Ok(())
    }

    /// Deletes the oldest spilled messages of a queue that are past retention, a page at
    /// most per sweep. Spilled messages follow their send order, so the sweep stops at
    /// the first one still kept. One not yet in fjall waits for the next sweep.
    pub(super) fn expire_spilled(
        &self,
        h: &QueueHandle,
        now: u64,
        retention_ms: u64,
        ops: &mut Vec<Op>,
        released: &mut Vec<NonZeroU64>,
    ) -> Result<(), StorageError> {
        let Some(first) = h.lock_index().first_spilled() else {
            return Ok(());
        };
        let mut past = Vec::new();
        for state in self.states(h, first..=u64::MAX).take(EXPIRE_PAGE) {
            let (seq, e) = state?;
            if e.sent_at.saturating_add(retention_ms) > now {
                break;
            }
            past.push((seq, e));
        }
        let seqs: Vec<u64> = past.iter().map(|(s, _)| *s).collect();
        // Those read that are in memory are retention's to take there.
        let gone = h.lock_index().expire_spilled(&seqs);
        for (seq, e) in past {
            if gone.binary_search(&seq).is_ok() {
                delete_ops(h.id, seq, &e, ops, released);
            }
        }
        Ok(())
    }

    /// The stored states of a queue's messages `seqs` (ascending) that fjall has.
    fn read_states(
        &self,
        h: &QueueHandle,
        seqs: &[u64],
    ) -> Result<Vec<(u64, Entry)>, StorageError> {
        let (Some(&first), Some(&last)) = (seqs.first(), seqs.last()) else {
            return Ok(Vec::new());
        };
        self.states(h, first..=last)
            .filter(|state| {
                state
                    .as_ref()
                    .map_or(true, |(seq, _)| seqs.binary_search(seq).is_ok())
            })
            .collect()
    }

    /// The stored states of a queue's messages with sequence numbers in `seqs`, in order.
    pub(super) fn states<'a>(
        &'a self,
        h: &'a QueueHandle,
        seqs: std::ops::RangeInclusive<u64>,
    ) -> impl Iterator<Item = Result<(u64, Entry), StorageError>> + 'a {
        let range = codec::msg_key(h.id, *seqs.start())..=codec::msg_key(h.id, *seqs.end());
        self.spaces.state.range(range).map(move |kv| {
            let (k, v) = kv.into_inner()?;
            match (codec::split_msg_key(&k), codec::decode_state(&v)) {
                (Some((_, seq)), Some(e)) => Ok((seq, e)),
                _ => Err(StorageError::Corrupt(format!(
                    "a message state record of queue {:?} is corrupt",
                    h.name
                ))),
            }
        })
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
            .send(ops, Wait::Synced)
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
                    let ms = at.saturating_sub(self.clock.now_ms());
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
                // Its receives start again, the first one too.
                first_received_at: 0,
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
        let now = self.clock.now_ms();
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
                (!ops.is_empty()).then(|| c.send(ops, Wait::Synced))
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
                .change_visibility(seq, rc, self.clock.now_ms(), visibility_ms)
                .map(|e| (seq, e))
                .map_err(|p| receipt_error(p, receipt))
        });
        let (seq, e) = match r {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let key = codec::msg_key(h.id, seq).to_vec();
        self.committer
            .send(
                vec![Op::Put(Space::State, key, codec::encode_state(&e))],
                Wait::Synced,
            )
            .await
            .map_err(StorageError::Unavailable)?;
        // Waiting receivers sleep until the earliest visibility they knew of; this one may
        // now be earlier.
        h.arrivals.notify_waiters();
        Ok(Ok(()))
    }

    /// Deletes every message in the queue; returns how many.
    pub async fn purge(&self, h: &Arc<QueueHandle>) -> Result<u64, StorageError> {
        let (gone, spilled) = h.lock_index().purge();
        let mut ops = Vec::with_capacity(gone.len() * 2);
        let mut released = Vec::new();
        for (seq, e) in &gone {
            delete_ops(h.id, *seq, e, &mut ops, &mut released);
        }
        self.release(released, ops, |c, ops| c.send(ops, Wait::Synced))
            .await
            .map_err(StorageError::Unavailable)?;
        if !spilled.is_empty() {
            self.committer
                .settle()
                .await
                .map_err(StorageError::Unavailable)?;
        }
        // A deep backlog's deletions go in pages, so they need no more memory than a page.
        for page in spilled.chunks(PURGE_PAGE) {
            let (mut ops, mut released) = (Vec::with_capacity(page.len() * 2), Vec::new());
            for (seq, e) in self.read_states(h, page)? {
                delete_ops(h.id, seq, &e, &mut ops, &mut released);
            }
            self.release(released, ops, |c, ops| c.send(ops, Wait::Synced))
                .await
                .map_err(StorageError::Unavailable)?;
        }
        Ok((gone.len() + spilled.len()) as u64)
    }

    pub fn counts(&self, h: &QueueHandle) -> Counts {
        h.lock_index().counts(self.clock.now_ms())
    }
}

/// A queue's handle; `(created_at, modified_at)` as its record has them.
pub(super) fn new_handle(
    id: u64,
    name: String,
    spec: QueueSpec,
    kind: QueueKind,
    (created_at, modified_at): (u64, u64),
    resident: usize,
) -> Arc<QueueHandle> {
    Arc::new(QueueHandle {
        id,
        name,
        created_at,
        modified_at: AtomicU64::new(modified_at),
        fifo: spec.fifo,
        kind,
        before_sync: AtomicBool::new(false),
        index: Mutex::new(QueueIndex::with_resident(spec.fifo, resident)),
        spec: Mutex::new(spec),
        next_seq: AtomicU64::new(1),
        dedup: Mutex::default(),
        fifo_order: tokio::sync::Mutex::new(()),
        arrivals: Notify::new(),
        deleted: AtomicBool::new(false),
    })
}

/// A receipt is `QUEUE_ID-SEQ-RECEIVE_COUNT` in hex: it names the queue, the message and
/// the receive it came from, so a receipt from an earlier receive is recognisably stale.
pub(super) fn parse_receipt(queue_id: u64, r: &str) -> Result<(u64, u32), ReceiptError> {
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

/// Spilled messages a sweep reads at most, per queue.
const EXPIRE_PAGE: usize = 4096;
/// Spilled messages a purge deletes with one write.
const PURGE_PAGE: usize = 64 * 1024;

/// A page of spilled messages being read; put back into the spilled set if dropped
/// before it was read.
struct Reading<'a>(&'a QueueHandle, Option<Page>);

impl Reading<'_> {
    fn page(&self) -> &Page {
        self.1.as_ref().expect("held until read")
    }
}

impl Drop for Reading<'_> {
    fn drop(&mut self) {
        if let Some(page) = self.1.take() {
            self.0.lock_index().page_failed(page);
        }
    }
}
