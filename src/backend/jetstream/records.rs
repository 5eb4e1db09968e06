//! Kinesis-style streams on JetStream: one limits-retention JetStream stream per shard.
//!
//! JetStream numbers messages per stream, so a stream per shard gives each shard its own
//! gap-free sequence (1, 2, 3, ...) as the embedded backend has, straight from the server
//! and with no mapping to keep consistent across routers. (One stream with a subject per
//! shard would number the shards' records together.) Retention is the stream's `max_age`;
//! reads are direct gets by sequence, pipelined.

use super::codec;
use super::store::{Prepared, Target};
use super::{ApiError, JetStream, JsError, RETRY_DEDUP_WINDOW};
use crate::backend::GroupInfo;
use crate::backend::{NewRecord, StoredRecord};
use crate::model::{Kind, StreamSpec};
use crate::time::now_ms;
use async_nats::HeaderMap;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

pub(super) const META_STREAM: &str = "st/";

/// Direct gets in flight per read.
const READ_PIPELINE: usize = 64;

#[derive(serde::Serialize, serde::Deserialize)]
struct StreamRecord {
    spec: StreamSpec,
    /// When it was created (unix ms; 0 for a stream stored before this was kept).
    #[serde(default)]
    created_at: u64,
}

/// A consumer group: its settings and where its records live.
pub struct GroupHandle {
    pub name: String,
    pub(super) info: GroupInfo,
    /// `{stream}.{group}` in the groups bucket.
    pub(super) key: String,
    pub(super) shards: u32,
}

/// One stream as this instance knows it.
pub struct StreamHandle {
    pub name: String,
    pub created_at: u64,
    spec: Mutex<StreamSpec>,
    /// Per shard: its JetStream stream and subject.
    shards: Vec<(String, String)>,
    pub(super) groups: Mutex<HashMap<String, Arc<GroupHandle>>>,
    /// Woken when this instance appends to the stream.
    pub arrivals: tokio::sync::Notify,
    deleted: AtomicBool,
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

    fn shard(&self, shard: u32) -> Result<&(String, String), JsError> {
        self.shards
            .get(shard as usize)
            .ok_or_else(|| JsError::NotFound {
                kind: Kind::Shard,
                name: format!("{shard} of stream {}", self.name),
            })
    }

    pub(super) fn prepare(&self, shard: u32, rec: NewRecord) -> Result<Prepared, JsError> {
        let (_, subject) = self.shard(shard)?;
        Ok(Prepared {
            subject: subject.clone(),
            headers: HeaderMap::new(),
            payload: Bytes::from(codec::encode_record(&rec.partition_key, &rec.data)),
            // Records have no id of their own; this one only makes retries idempotent.
            msg_id: format!("r:{}", uuid::Uuid::now_v7()),
            target: Target::Stream { shard },
        })
    }
}

/// Reflects a stream record (or its deletion) in the stream handles of the metadata
/// mirror.
pub(super) fn sync_stream(
    streams: &RwLock<HashMap<String, Arc<StreamHandle>>>,
    prefix: &str,
    name: &str,
    value: Option<&Bytes>,
) {
    {
        let mut streams = streams.write().expect("never poisoned");
        let Some(value) = value else {
            if let Some(h) = streams.remove(name) {
                h.deleted.store(true, Ordering::Release);
                h.arrivals.notify_waiters();
            }
            return;
        };
        let Ok(rec) = serde_json::from_slice::<StreamRecord>(value) else {
            tracing::error!(stream = name, "stream record is corrupt; ignoring it");
            return;
        };
        if let Some(h) = streams.get(name)
            && h.shard_count() == rec.spec.shards
        {
            *h.spec.lock().expect("never poisoned") = rec.spec;
            return;
        }
        let shards = (0..rec.spec.shards)
            .map(|s| codec::shard_names(prefix, name, s))
            .collect();
        let h = Arc::new(StreamHandle {
            name: name.to_string(),
            created_at: rec.created_at,
            spec: Mutex::new(rec.spec),
            shards,
            groups: Mutex::default(),
            arrivals: tokio::sync::Notify::new(),
            deleted: AtomicBool::new(false),
        });
        if let Some(old) = streams.insert(name.to_string(), h) {
            old.deleted.store(true, Ordering::Release);
        }
    }
}

impl JetStream {
    pub fn stream(&self, name: &str) -> Option<Arc<StreamHandle>> {
        self.mirror
            .streams
            .read()
            .expect("never poisoned")
            .get(name)
            .cloned()
    }

    pub fn stream_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .mirror
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
    ) -> Result<Arc<StreamHandle>, JsError> {
        let max_age = Duration::from_millis(spec.retention_ms().max(1000));
        for s in 0..spec.shards {
            let (stream, subject) = codec::shard_names(&self.prefix, name, s);
            let config = json!({
                "name": stream,
                "subjects": [subject],
                "retention": "limits",
                "storage": "file",
                "discard": "old",
                "num_replicas": self.replicas,
                "max_age": max_age.as_nanos() as u64,
                "duplicate_window": RETRY_DEDUP_WINDOW.min(max_age).as_nanos() as u64,
                "allow_direct": true,
            });
            // An existing shard stream gets an update (a retention change).
            self.put_js_stream(&stream, config, false)
                .await
                .map_err(|e| e.into_js(Kind::Stream, name))?;
        }
        let created_at = self.stream(name).map_or_else(now_ms, |h| h.created_at);
        let rec = StreamRecord { spec, created_at };
        self.put_meta(
            &format!("{META_STREAM}{name}"),
            serde_json::to_vec(&rec).expect("plain data always serializes"),
        )
        .await?;
        self.stream(name).ok_or_else(|| JsError::NotFound {
            kind: Kind::Stream,
            name: name.to_string(),
        })
    }

    /// Deletes a stream, its records and its consumer groups.
    pub async fn delete_stream(&self, name: &str) -> Result<bool, JsError> {
        let Some(h) = self.stream(name) else {
            return Ok(false);
        };
        for (stream, _) in &h.shards {
            match self
                .api(&format!("STREAM.DELETE.{stream}"), json!({}))
                .await
            {
                Ok(_) | Err(ApiError::NotFound(_)) => {}
                Err(ApiError::Other(e)) => return Err(e),
            }
        }
        self.delete_groups(name).await?;
        self.delete_meta(&format!("{META_STREAM}{name}")).await?;
        Ok(true)
    }

    /// (first stored sequence, last sequence) of a shard; `(last + 1, last)` when empty.
    pub async fn bounds(&self, h: &StreamHandle, shard: u32) -> Result<(u64, u64), JsError> {
        let (stream, _) = h.shard(shard)?;
        let info = self
            .api(&format!("STREAM.INFO.{stream}"), json!({}))
            .await
            .map_err(|e| e.into_js(Kind::Stream, &h.name))?;
        let state = &info["state"];
        let n = |f: &str| state.get(f).and_then(|v| v.as_u64()).unwrap_or(0);
        let last = n("last_seq");
        if n("messages") == 0 {
            return Ok((last + 1, last));
        }
        Ok((n("first_seq").max(1), last))
    }

    /// Reads up to `limit` records of a shard from sequence `from` on (inclusive), skipping
    /// records past retention.
    pub async fn read_shard(
        &self,
        h: &StreamHandle,
        shard: u32,
        from: u64,
        limit: usize,
    ) -> Result<Vec<StoredRecord>, JsError> {
        let (first, last) = self.bounds(h, shard).await?;
        let from = from.max(first).max(1);
        if from > last || limit == 0 {
            return Ok(Vec::new());
        }
        let to = last.min(from.saturating_add(limit as u64 - 1));
        let (stream, _) = h.shard(shard)?;
        let js_stream = self
            .js
            .get_stream_no_info(stream)
            .await
            .map_err(|e| JsError::Server(e.to_string()))?;
        let cutoff = now_ms().saturating_sub(h.spec().retention_ms());
        let mut gets = futures::stream::iter(from..=to)
            .map(|seq| {
                let s = &js_stream;
                async move { (seq, s.direct_get(seq).await) }
            })
            .buffered(READ_PIPELINE);
        let mut out = Vec::with_capacity((to - from + 1) as usize);
        while let Some((seq, got)) = gets.next().await {
            let m = match got {
                Ok(m) => m,
                // Expired or deleted since the bounds were read.
                Err(e)
                    if e.kind() == async_nats::jetstream::stream::DirectGetErrorKind::NotFound =>
                {
                    continue;
                }
                Err(e) => return Err(JsError::Unavailable(format!("read of {stream}: {e}"))),
            };
            let arrived_at = (m.time.unix_timestamp_nanos() / 1_000_000).max(0) as u64;
            if arrived_at < cutoff {
                continue;
            }
            let (partition_key, data) = codec::decode_record(&m.payload)
                .ok_or_else(|| JsError::Corrupt(format!("record {seq} of {stream}")))?;
            out.push(StoredRecord {
                shard,
                sequence: seq,
                partition_key,
                data,
                arrived_at,
            });
        }
        Ok(out)
    }

    /// The first sequence of a shard that arrived at or after `ts` (unix ms), or the next
    /// sequence to be written if none did: a binary search over arrival times, which
    /// JetStream keeps in sequence order.
    pub async fn sequence_at(&self, h: &StreamHandle, shard: u32, ts: u64) -> Result<u64, JsError> {
        let (first, last) = self.bounds(h, shard).await?;
        if first > last {
            return Ok(last + 1);
        }
        let (stream, _) = h.shard(shard)?;
        let js_stream = self
            .js
            .get_stream_no_info(stream)
            .await
            .map_err(|e| JsError::Server(e.to_string()))?;
        let (mut lo, mut hi) = (first, last + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let at = match js_stream.direct_get(mid).await {
                Ok(m) => Some((m.time.unix_timestamp_nanos() / 1_000_000).max(0) as u64),
                Err(e)
                    if e.kind() == async_nats::jetstream::stream::DirectGetErrorKind::NotFound =>
                {
                    None
                }
                Err(e) => return Err(JsError::Unavailable(format!("read of {stream}: {e}"))),
            };
            match at {
                Some(at) if at >= ts => hi = mid,
                // Before `ts`, or expired meanwhile (so older than anything kept).
                _ => lo = mid + 1,
            }
        }
        Ok(lo)
    }
}
