//! The embedded backend: one fjall database in the data directory, no server needed.
//!
//! Every write that a caller is answered for goes through the group committer, so it is on
//! disk before the answer. Each queue has an in-memory index rebuilt at start from the
//! small state records; the index is changed under the queue's lock and the matching
//! writes are committed before the caller hears back. A crash between the two loses nothing
//! acknowledged: at worst a received message becomes visible again (at-least-once).
//!
//! Files: this one opens and recovers the store and keeps its metadata; `store` (a
//! publish's deliveries in one durable write), `queues` (receive, ack, visibility, moves,
//! retention), `shared` (bodies several messages carry, stored once), `records` and
//! `groups` (streams and consumer groups); beneath them `committer` and `wal` (group
//! commit through a write-ahead log), `index` and `seqmap` (a queue's in-memory index),
//! `codec` (record formats), `disk` (refusing new data on a nearly full disk).

mod codec;
mod committer;
mod disk;
mod groups;
mod index;
mod queues;
mod records;
mod seqmap;
mod shared;
mod store;
#[cfg(test)]
mod tests;
mod wal;

pub use queues::QueueHandle;

use super::{QueueKind, StorageError, to_json};
use crate::time::Clock;
use committer::{Committer, Op, Space, Spaces, Wait};
use fjall::{Database, KeyspaceCreateOptions};
use queues::{QueueRecord, new_handle};
pub use records::StreamHandle;
use shared::{SharedBodies, delete_ops};
use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};

/// Memtable size of the keyspaces holding message bodies and stream records.
const BODY_MEMTABLE_BYTES: u64 = 16 * 1024 * 1024;
/// Memtable size of the keyspaces holding small records (state, metadata, dedup ids).
const SMALL_MEMTABLE_BYTES: u64 = 8 * 1024 * 1024;
/// When fjall's sealed journals reach this many bytes, it flushes the keyspaces that keep
/// the oldest one. A journal is deleted once every keyspace has flushed what it holds, and
/// a keyspace written rarely keeps its memtable, and with it every journal since: under
/// quick consumers, whose messages are acknowledged before they reach fjall, the bodies'
/// keyspace is such a one. fjall's default (512 MiB) let a server holding a few megabytes
/// grow its data directory by half a gigabyte of journals; with the smallest bound fjall
/// allows, they peak at a few times this (the journals sealed since the oldest and the one
/// being written). fjall's journals are only read after a crash, and the write-ahead log
/// guards every acknowledged write.
pub(super) const MAX_JOURNALING_BYTES: u64 = 64 << 20;
/// Block cache: reads of recent bodies mostly hit memtables or the OS page cache.
const BLOCK_CACHE_BYTES: u64 = 16 * 1024 * 1024;

const META_QUEUE: &str = "q/";
/// The next free id of a queue or stream; ids are never reused, so the records of a
/// deleted resource can never be mistaken for those of a new one.
const META_NEXT_ID: &str = "n/id";

pub struct Embedded {
    spaces: Arc<Spaces>,
    committer: Committer,
    queues: RwLock<HashMap<String, Arc<QueueHandle>>>,
    by_id: RwLock<HashMap<u64, Arc<QueueHandle>>>,
    streams: RwLock<HashMap<String, Arc<StreamHandle>>>,
    next_id: Mutex<u64>,
    shared: SharedBodies,
    clock: Clock,
    disk: disk::DiskGuard,
    /// Visible messages each standard queue keeps in memory (see [`index`]).
    resident: usize,
}

/// The fjall database in `dir`, configured for the store.
fn open_database(dir: &Path) -> fjall::Result<Database> {
    Database::builder(dir)
        // Journal writes are synced by the committer, once per group.
        .manual_journal_persist(true)
        .cache_size(BLOCK_CACHE_BYTES)
        .max_journaling_size(MAX_JOURNALING_BYTES)
        // One flush/compaction thread: with two, fjall's first worker hands compaction
        // requests back and forth while the second compacts, spinning a core that the
        // request path needs (measured: stream puts 170k -> 206k records/s).
        .worker_threads(1)
        .open()
}

impl Embedded {
    /// Its log's syncs and bytes, and its disk's free space.
    pub fn storage_stats(&self) -> crate::backend::StorageStats {
        let (log_syncs, log_bytes) = self.committer.log_stats();
        crate::backend::StorageStats {
            log_syncs,
            log_bytes,
            disk_free_bytes: self.disk.free(),
        }
    }

    /// Opens (or creates) the store in `dir` and rebuilds every queue's index.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        Self::open_with_clock(dir, Clock::system())
    }

    /// [`Embedded::open`] with the clock that visibility timeouts, delays and retention
    /// follow: a manual one in tests.
    pub fn open_with_clock(dir: &Path, clock: Clock) -> Result<Self, StorageError> {
        Self::open_with(dir, clock, index::RESIDENT_VISIBLE)
    }

    /// [`Embedded::open_with_clock`] keeping `resident` visible messages of each standard
    /// queue in memory.
    pub(super) fn open_with(
        dir: &Path,
        clock: Clock,
        resident: usize,
    ) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StorageError::Unavailable(format!("cannot create {}: {e}", dir.display()))
        })?;
        let db = open_database(dir)?;
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
            clock,
            disk: disk::DiskGuard::new(dir),
            resident,
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

    /// The clock its timestamps follow.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Free space on the data directory's disk below which new data is refused (see
    /// [`disk`]); 0 turns the check off.
    pub fn reserve_disk(&self, bytes: u64) {
        self.disk.set_reserve(bytes);
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
        let now = self.clock.now_ms();
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
            let h = new_handle(
                rec.id,
                name,
                rec.spec,
                kind,
                (rec.created_at, rec.modified_at),
                self.resident,
            );
            {
                let mut idx = h.lock_index();
                let mut last = 0;
                for state in self.states(&h, 0..=u64::MAX) {
                    let (seq, e) = state?;
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
        self.disk.admit(key.len() + value.len())?;
        self.committer
            .send(
                vec![Op::Put(Space::Meta, key.as_bytes().to_vec(), value)],
                Wait::Synced,
            )
            .await
            .map_err(StorageError::Unavailable)
    }

    pub async fn delete_meta(&self, key: &str) -> Result<(), StorageError> {
        self.committer
            .send(
                vec![Op::Delete(Space::Meta, key.as_bytes().to_vec())],
                Wait::Synced,
            )
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

    /// Drops messages past their queue's retention and forgets dedup ids past the window.
    /// The deletions ride along with the next durable batch: losing them in a crash only
    /// means they are swept again after restart.
    pub fn sweep(&self) {
        let now = self.clock.now_ms();
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
            if let Err(e) = self.expire_spilled(&h, now, retention_ms, &mut ops, &mut released) {
                tracing::error!(queue = %h.name, error = %e, "sweeping spilled messages failed");
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

fn clone_spaces(s: &Spaces) -> Spaces {
    Spaces {
        meta: s.meta.clone(),
        messages: s.messages.clone(),
        state: s.state.clone(),
        dedup: s.dedup.clone(),
        records: s.records.clone(),
    }
}
