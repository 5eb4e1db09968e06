//! The store path: a publish's deliveries (queue messages and stream records) written with
//! one atomic, durable write, and indexed for receivers once it is durable (or, for queues
//! read before the sync, once it is in the log).

use super::Embedded;
use super::codec::{self, Body};
use super::committer::{Op, Space, Wait};
use super::index::{Entry, MsgState};
use super::queues::{QueueHandle, ToIndex};
use super::records::StreamHandle;
use super::shared::{Share, find_shared};
use crate::backend::{Delivery, Enqueued, StorageError, Stored};
use crate::model::FIFO_DEDUP_WINDOW_S;
use crate::time::Clock;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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
    clock: Clock,
}

impl EarlyIndex {
    /// Indexes the messages unless that was done already.
    fn index(&self) {
        if !self.indexed.swap(true, Ordering::AcqRel) {
            Embedded::index_stored(self.entries.iter().cloned(), self.clock.now_ms());
        }
    }
}

/// A message just stored: its queue, sequence number and index entry.
pub(super) type NewEntry = (Arc<QueueHandle>, u64, Entry);

impl Embedded {
    /// Stores a publish's deliveries (queue messages and stream records) with one atomic,
    /// durable write. Nothing is visible to receivers before it is on disk, but messages
    /// for queues read before the sync, once the log has them.
    pub async fn store(&self, items: Vec<Delivery>) -> Result<Vec<Stored>, StorageError> {
        self.disk.admit(items.iter().map(Delivery::size).sum())?;
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
        Self::index_stored(pending, self.clock.now_ms());
        for (h, shard, seq) in appended {
            Self::stream_appended(&h, &[(shard, seq)]);
        }
        Ok(results)
    }

    /// Adds stored messages to their queues' indexes and wakes the receivers. A batch
    /// publish puts many messages in each of a few queues: each queue's index is locked
    /// and its receivers woken once, not once per message. A queue's messages keep their
    /// order, which FIFO group order depends on.
    pub(super) fn index_stored(stored: impl IntoIterator<Item = NewEntry>, now: u64) {
        let mut by_queue: Vec<ToIndex> = Vec::new();
        for (h, seq, entry) in stored {
            match by_queue.iter_mut().find(|(q, _)| Arc::ptr_eq(q, &h)) {
                Some((_, entries)) => entries.push((seq, entry)),
                None => by_queue.push((h, vec![(seq, entry)])),
            }
        }
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

        let now = self.clock.now_ms();
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
                    let (shard, seq) = Self::stream_ops(&h, shard, rec, &mut ops, guard, now);
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
                    dedup_id: m.dedup_id,
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
                first_received_at: 0,
            };
            ops.push(Op::Put(Space::State, key, codec::encode_state(&entry)));
            pending.push((h, seq, entry));
            results.push(Stored::Queue(Enqueued::Stored { sequence: seq }));
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
                clock: self.clock().clone(),
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
                Box::pin(self.committer.send(ops, Wait::Synced)) as std::pin::Pin<Box<_>>,
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
}
