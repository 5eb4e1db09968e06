//! Bodies that several messages of one store carry alike (a publish's deliveries to
//! `http` and `function` subscriptions, raw deliveries to several queues): written once,
//! counted, and deleted with the last message that carries them.

use super::Embedded;
use super::codec;
use super::committer::{Committer, Op, Space};
use super::index::Entry;
use crate::backend::{Delivery, NewMessage, StorageError};
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bodies written once for several messages of one store (see [`codec::shared_key`]).
/// Counts are rebuilt at start from the state records, which name the body they share.
#[derive(Default)]
pub(super) struct SharedBodies {
    /// How many messages carry each shared body; the last one deletes it.
    pub(super) refs: Mutex<HashMap<NonZeroU64, u32>>,
    /// The next shared body id; ids are never reused.
    pub(super) next: AtomicU64,
}

/// Which store items carry the same body, found before the writes are built.
#[derive(Clone, Copy)]
pub(super) enum Share {
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
pub(super) fn find_shared(items: &[Delivery]) -> Vec<Share> {
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
pub(super) fn delete_ops(
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
    /// Takes the reference counts of shared bodies found in the queues, and deletes the
    /// shared bodies no message carries any more (their last one was in a queue deleted
    /// while it was being published to).
    pub(super) fn recover_shared(
        &self,
        refs: HashMap<NonZeroU64, u32>,
    ) -> Result<(), StorageError> {
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
    pub(super) fn release<R>(
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
}
