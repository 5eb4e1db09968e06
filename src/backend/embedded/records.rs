//! Streams in the embedded backend: per-shard ordered records and retention.
//!
//! A shard's sequence numbers are allocated under its lock and its writes handed to the
//! committer under the same lock, so batches reach disk in sequence order; a shard's
//! `durable_end` is raised only after the commit, and readers never look past it.

use super::Embedded;
use super::committer::{Op, Space, Wait};
use crate::backend::{GroupInfo, NewRecord, StorageError, StoredRecord, to_json};
use crate::model::StreamSpec;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

pub(super) const META_STREAM: &str = "st/";
pub(super) const META_GROUP: &str = "g/";

/// One shard's append state.
pub(super) struct Shard {
    /// Next sequence number to hand out, and the arrival time of the last record (kept
    /// monotonic so `at_timestamp` reads can stop at the first later record).
    pub append: Mutex<(u64, u64)>,
    /// Highest sequence number on disk; 0 when the shard has never had a record.
    pub durable_end: AtomicU64,
    /// Lowest sequence number still stored (the trim horizon); `durable_end + 1` when
    /// the shard is empty.
    pub first: AtomicU64,
}

pub struct StreamHandle {
    pub id: u64,
    pub name: String,
    /// When it was created (unix ms; 0 for a stream stored before this was kept).
    pub created_at: u64,
    spec: Mutex<StreamSpec>,
    pub(super) shards: Vec<Shard>,
    pub(super) groups: Mutex<HashMap<String, Arc<GroupHandle>>>,
    /// Woken on every append to any shard, so long polls and group polls answer at once.
    pub arrivals: Notify,
    deleted: AtomicBool,
}

/// A consumer group of a stream.
pub struct GroupHandle {
    pub(super) state: Mutex<GroupState>,
}

pub(super) struct GroupState {
    pub(super) info: GroupInfo,
    /// The lease table as the layer above wrote it last; `None` until a first poll.
    pub(super) leases: Option<Vec<u8>>,
    /// Updates of the lease table so far.
    pub(super) leases_version: u64,
    /// Last processed sequence per shard, as members reported it.
    pub(super) checkpoints: Vec<Option<u64>>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StreamRecord {
    id: u64,
    spec: StreamSpec,
    #[serde(default)]
    created_at: u64,
}

impl StreamHandle {
    pub fn spec(&self) -> StreamSpec {
        self.spec.lock().expect("never poisoned").clone()
    }

    pub fn shard_count(&self) -> u32 {
        self.shards.len() as u32
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// (first stored sequence, last durable sequence) of a shard.
    pub fn bounds(&self, shard: u32) -> (u64, u64) {
        let s = &self.shards[shard as usize];
        (
            s.first.load(Ordering::Acquire),
            s.durable_end.load(Ordering::Acquire),
        )
    }
}

fn record_key(stream: u64, shard: u32, seq: u64) -> [u8; 20] {
    let mut k = [0u8; 20];
    k[..8].copy_from_slice(&stream.to_be_bytes());
    k[8..12].copy_from_slice(&shard.to_be_bytes());
    k[12..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn shard_prefix(stream: u64, shard: u32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&stream.to_be_bytes());
    k[8..].copy_from_slice(&shard.to_be_bytes());
    k
}

fn encode_record(arrived_at: u64, pk: &str, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + 2 + pk.len() + data.len());
    v.extend_from_slice(&arrived_at.to_be_bytes());
    v.extend_from_slice(&(pk.len() as u16).to_be_bytes());
    v.extend_from_slice(pk.as_bytes());
    v.extend_from_slice(data);
    v
}

fn decode_record(v: &[u8]) -> Option<(u64, String, Vec<u8>)> {
    let at = u64::from_be_bytes(v.get(..8)?.try_into().ok()?);
    let n = u16::from_be_bytes(v.get(8..10)?.try_into().ok()?) as usize;
    let pk = std::str::from_utf8(v.get(10..10 + n)?).ok()?.to_string();
    Some((at, pk, v.get(10 + n..)?.to_vec()))
}

fn seq_of(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(12..20)?.try_into().ok()?))
}

impl Embedded {
    pub(super) fn recover_streams(&self) -> Result<(), StorageError> {
        for (name, raw) in self.list_meta(META_STREAM)? {
            let rec: StreamRecord = serde_json::from_slice(&raw)
                .map_err(|e| StorageError::Corrupt(format!("stream record {name:?}: {e}")))?;
            self.note_id(rec.id);
            let h = self.new_stream(rec.id, name, rec.spec, rec.created_at)?;
            self.recover_groups(&h)?;
            self.streams
                .write()
                .expect("never poisoned")
                .insert(h.name.clone(), h);
        }
        Ok(())
    }

    /// Builds a stream handle, reading each shard's bounds from storage.
    fn new_stream(
        &self,
        id: u64,
        name: String,
        spec: StreamSpec,
        created_at: u64,
    ) -> Result<Arc<StreamHandle>, StorageError> {
        let mut shards = Vec::with_capacity(spec.shards as usize);
        for s in 0..spec.shards {
            let prefix = shard_prefix(id, s);
            let first = match self.spaces.records.prefix(prefix).next() {
                Some(kv) => seq_of(&kv.key()?).unwrap_or(1),
                None => 0,
            };
            let (last, last_at) = match self.spaces.records.prefix(prefix).next_back() {
                Some(kv) => {
                    let (k, v) = kv.into_inner()?;
                    (
                        seq_of(&k).unwrap_or(0),
                        decode_record(&v).map(|r| r.0).unwrap_or(0),
                    )
                }
                None => (0, 0),
            };
            let first = if first == 0 { last + 1 } else { first };
            shards.push(Shard {
                append: Mutex::new((last + 1, last_at)),
                durable_end: AtomicU64::new(last),
                first: AtomicU64::new(first),
            });
        }
        Ok(Arc::new(StreamHandle {
            id,
            name,
            created_at,
            spec: Mutex::new(spec),
            shards,
            groups: Mutex::default(),
            arrivals: Notify::new(),
            deleted: AtomicBool::new(false),
        }))
    }

    pub fn stream(&self, name: &str) -> Option<Arc<StreamHandle>> {
        self.streams
            .read()
            .expect("never poisoned")
            .get(name)
            .cloned()
    }

    pub fn stream_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .streams
            .read()
            .expect("never poisoned")
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// Creates a stream or updates its retention (the shard count is fixed).
    pub async fn put_stream(
        &self,
        name: &str,
        spec: StreamSpec,
    ) -> Result<Arc<StreamHandle>, StorageError> {
        self.disk.admit_resource(name)?;
        if let Some(h) = self.stream(name) {
            let rec = StreamRecord {
                id: h.id,
                spec: spec.clone(),
                created_at: h.created_at,
            };
            self.put_meta(&format!("{META_STREAM}{name}"), to_json(&rec))
                .await?;
            *h.spec.lock().expect("never poisoned") = spec;
            return Ok(h);
        }
        let id = self.allocate_id().await?;
        let rec = StreamRecord {
            id,
            spec: spec.clone(),
            created_at: self.clock().now_ms(),
        };
        self.put_meta(&format!("{META_STREAM}{name}"), to_json(&rec))
            .await?;
        let h = self.new_stream(id, name.to_string(), spec, rec.created_at)?;
        self.streams
            .write()
            .expect("never poisoned")
            .insert(name.to_string(), h.clone());
        Ok(h)
    }

    /// Deletes a stream, its records and its groups.
    pub async fn delete_stream(&self, name: &str) -> Result<bool, StorageError> {
        let Some(h) = self.streams.write().expect("never poisoned").remove(name) else {
            return Ok(false);
        };
        h.deleted.store(true, Ordering::Release);
        h.arrivals.notify_waiters();
        let mut ops = vec![Op::Delete(
            Space::Meta,
            format!("{META_STREAM}{name}").into_bytes(),
        )];
        for g in h.group_names() {
            ops.push(Op::Delete(
                Space::Meta,
                format!("{META_GROUP}{}/{g}", h.id).into_bytes(),
            ));
        }
        for kv in self.spaces.records.prefix(h.id.to_be_bytes()) {
            ops.push(Op::Delete(Space::Records, kv.key()?.to_vec()));
        }
        self.committer
            .send(ops, Wait::Synced)
            .await
            .map_err(StorageError::Unavailable)?;
        Ok(true)
    }

    /// Allocates the next sequence number of a shard whose append lock the caller holds,
    /// and adds the record's write to `ops`.
    pub(super) fn stream_ops(
        h: &StreamHandle,
        shard: u32,
        rec: NewRecord,
        ops: &mut Vec<Op>,
        append: &mut (u64, u64),
        now: u64,
    ) -> (u32, u64) {
        let seq = append.0;
        append.0 += 1;
        // Arrival times never go backwards within a shard, even if the clock does.
        append.1 = append.1.max(now);
        ops.push(Op::Put(
            Space::Records,
            record_key(h.id, shard, seq).to_vec(),
            encode_record(append.1, &rec.partition_key, &rec.data),
        ));
        (shard, seq)
    }

    /// Marks appended records durable and wakes readers.
    pub(super) fn stream_appended(h: &StreamHandle, appended: &[(u32, u64)]) {
        for &(shard, seq) in appended {
            h.shards[shard as usize]
                .durable_end
                .fetch_max(seq, Ordering::AcqRel);
        }
        h.arrivals.notify_waiters();
    }

    /// Reads up to `limit` records of a shard from sequence `from` on (inclusive), skipping
    /// records past retention.
    pub fn read_shard(
        &self,
        h: &StreamHandle,
        shard: u32,
        from: u64,
        limit: usize,
    ) -> Result<Vec<StoredRecord>, StorageError> {
        let (first, end) = h.bounds(shard);
        let from = from.max(first);
        if from > end || limit == 0 {
            return Ok(Vec::new());
        }
        let cutoff = self.clock.now_ms().saturating_sub(h.spec().retention_ms());
        let mut out = Vec::with_capacity(limit.min(1024));
        let range = record_key(h.id, shard, from)..=record_key(h.id, shard, end);
        for kv in self.spaces.records.range(range) {
            let (k, v) = kv.into_inner()?;
            let (Some(seq), Some((arrived_at, partition_key, data))) =
                (seq_of(&k), decode_record(&v))
            else {
                return Err(StorageError::Corrupt("a stream record".into()));
            };
            if arrived_at < cutoff {
                continue;
            }
            out.push(StoredRecord {
                shard,
                sequence: seq,
                partition_key,
                data,
                arrived_at,
            });
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// The first sequence of a shard that arrived at or after `ts` (unix ms), or the
    /// next sequence to be written if none did.
    pub fn sequence_at(&self, h: &StreamHandle, shard: u32, ts: u64) -> Result<u64, StorageError> {
        let (first, end) = h.bounds(shard);
        if first > end {
            return Ok(end + 1);
        }
        let range = record_key(h.id, shard, first)..=record_key(h.id, shard, end);
        for kv in self.spaces.records.range(range) {
            let (k, v) = kv.into_inner()?;
            if let (Some(seq), Some((at, _, _))) = (seq_of(&k), decode_record(&v))
                && at >= ts
            {
                return Ok(seq);
            }
        }
        Ok(end + 1)
    }

    /// Drops records past retention, oldest first, and moves each shard's trim horizon.
    pub(super) fn sweep_streams(&self, ops: &mut Vec<Op>) -> Result<(), StorageError> {
        let streams: Vec<Arc<StreamHandle>> = self
            .streams
            .read()
            .expect("never poisoned")
            .values()
            .cloned()
            .collect();
        let now = self.clock.now_ms();
        for h in streams {
            let cutoff = now.saturating_sub(h.spec().retention_ms());
            for (s, shard) in h.shards.iter().enumerate() {
                let (first, end) = h.bounds(s as u32);
                if first > end {
                    continue;
                }
                let mut new_first = first;
                let range = record_key(h.id, s as u32, first)..=record_key(h.id, s as u32, end);
                for kv in self.spaces.records.range(range) {
                    let (k, v) = kv.into_inner()?;
                    match decode_record(&v) {
                        Some((at, _, _)) if at < cutoff => {
                            ops.push(Op::Delete(Space::Records, k.to_vec()));
                            new_first = seq_of(&k).unwrap_or(new_first) + 1;
                        }
                        _ => break,
                    }
                }
                shard.first.fetch_max(new_first, Ordering::AcqRel);
            }
        }
        Ok(())
    }
}
