//! Consumer groups on JetStream KV: the record, lease table and checkpoints of every group
//! in the bucket `{prefix}_groups`, shared by all routers.
//!
//! The lease table of a group is one record, changed only by a revision-checked write
//! (create when absent, update at the revision read): each update reads the table, applies
//! the change the layer above asks for and writes it back at the revision it read; a
//! write that lost a race is retried on the newer table. So the table goes through one
//! sequence of versions that every router agrees on. Checkpoints are one record per shard.

use super::codec::escape;
use super::records::{GroupHandle, StreamHandle};
use super::{JetStream, JsError};
use crate::backend::GroupInfo;
use crate::model::{GroupSpec, Kind};
use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;

/// Updates of a lease table that lose the race this many times in a row give up (the
/// caller retries on its next poll). Each attempt is two round trips.
const MAX_LEASE_ATTEMPTS: u32 = 32;

#[derive(serde::Serialize, serde::Deserialize)]
struct GroupRecord {
    spec: GroupSpec,
    /// Where a shard without checkpoint starts: after this sequence (0 = from the start).
    start_after: Vec<u64>,
}

impl GroupHandle {
    fn leases_key(&self) -> String {
        format!("{}.leases", self.key)
    }

    fn checkpoint_key(&self, shard: u32) -> String {
        format!("{}.cp.{shard}", self.key)
    }
}

fn group_key(stream: &str, group: &str) -> String {
    format!("{}.{}", escape(stream), escape(group))
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> JsError {
    JsError::Unavailable(format!("{what}: {e}"))
}

impl JetStream {
    /// Creates a group with `info` unless it exists; returns the group's settings and
    /// whether this call created it. Two routers creating one group at once agree on one
    /// of their records.
    pub async fn create_group(
        &self,
        h: &Arc<StreamHandle>,
        name: &str,
        info: GroupInfo,
    ) -> Result<(GroupInfo, bool), JsError> {
        if let Some(g) = self.group_handle(h, name).await? {
            return Ok((g.info.clone(), false));
        }
        let key = group_key(&h.name, name);
        let spec_key = format!("{key}.spec");
        let record = GroupRecord {
            spec: info.spec,
            start_after: info.start_after,
        };
        let value = Bytes::from(serde_json::to_vec(&record).expect("plain data"));
        let (record, created) = match self.groups.create(&spec_key, value).await {
            Ok(_) => (record, true),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                let r = self.read_group(&spec_key).await?.ok_or_else(|| {
                    JsError::Unavailable(format!("group {name:?} vanished while created"))
                })?;
                (r, false)
            }
            Err(e) => return Err(unavailable("group create", e)),
        };
        let g = self.cache_group(h, name, key, record);
        Ok((g.info.clone(), created))
    }

    /// A consumer group's settings if it exists (created by any router).
    pub async fn find_group(
        &self,
        h: &Arc<StreamHandle>,
        name: &str,
    ) -> Result<Option<GroupInfo>, JsError> {
        Ok(self.group_handle(h, name).await?.map(|g| g.info.clone()))
    }

    /// The group's handle from this router's cache, else from its record.
    async fn group_handle(
        &self,
        h: &Arc<StreamHandle>,
        name: &str,
    ) -> Result<Option<Arc<GroupHandle>>, JsError> {
        if let Some(g) = h.groups.lock().expect("never poisoned").get(name) {
            return Ok(Some(g.clone()));
        }
        let key = group_key(&h.name, name);
        let Some(record) = self.read_group(&format!("{key}.spec")).await? else {
            return Ok(None);
        };
        Ok(Some(self.cache_group(h, name, key, record)))
    }

    /// The group's handle, or the error that it is gone.
    async fn existing_group(
        &self,
        h: &Arc<StreamHandle>,
        name: &str,
    ) -> Result<Arc<GroupHandle>, JsError> {
        self.group_handle(h, name)
            .await?
            .ok_or_else(|| JsError::NotFound {
                kind: Kind::Group,
                name: format!("{name} of stream {}", h.name),
            })
    }

    fn cache_group(
        &self,
        h: &StreamHandle,
        name: &str,
        key: String,
        record: GroupRecord,
    ) -> Arc<GroupHandle> {
        let g = Arc::new(GroupHandle {
            name: name.to_string(),
            info: GroupInfo {
                spec: record.spec,
                start_after: record.start_after,
            },
            key,
            shards: h.shard_count(),
        });
        let mut groups = h.groups.lock().expect("never poisoned");
        groups.entry(name.to_string()).or_insert(g).clone()
    }

    async fn read_group(&self, key: &str) -> Result<Option<GroupRecord>, JsError> {
        let Some(v) = self
            .groups
            .get(key)
            .await
            .map_err(|e| unavailable("group read", e))?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&v)
            .map(Some)
            .map_err(|e| JsError::Corrupt(format!("group record {key}: {e}")))
    }

    /// The names of a stream's groups.
    pub async fn group_names(&self, h: &StreamHandle) -> Result<Vec<String>, JsError> {
        let prefix = format!("{}.", escape(&h.name));
        let mut names = Vec::new();
        for key in self.group_keys().await? {
            if let Some(rest) = key.strip_prefix(&prefix)
                && let Some(g) = rest.strip_suffix(".spec")
                && !g.contains('.')
            {
                names.push(g.replace('=', "."));
            }
        }
        names.sort();
        Ok(names)
    }

    async fn group_keys(&self) -> Result<Vec<String>, JsError> {
        let mut keys = self
            .groups
            .keys()
            .await
            .map_err(|e| unavailable("group list", e))?;
        let mut out = Vec::new();
        while let Some(k) = keys.next().await {
            out.push(k.map_err(|e| unavailable("group list", e))?);
        }
        Ok(out)
    }

    /// Forgets every group of a stream (on stream deletion).
    pub(super) async fn delete_groups(&self, stream: &str) -> Result<(), JsError> {
        let prefix = format!("{}.", escape(stream));
        for key in self.group_keys().await? {
            if key.starts_with(&prefix) {
                self.groups
                    .purge(&key)
                    .await
                    .map_err(|e| unavailable("group delete", e))?;
            }
        }
        Ok(())
    }

    /// Replaces the group's lease table with what `update` makes of it, with
    /// revision-checked writes: an update that lost a race runs again on the newer table.
    /// The version returned is the table's KV revision.
    pub async fn update_leases<T>(
        &self,
        h: &Arc<StreamHandle>,
        group: &str,
        mut update: impl FnMut(Option<&[u8]>) -> Result<(Vec<u8>, T), String>,
    ) -> Result<(T, u64), JsError> {
        let g = self.existing_group(h, group).await?;
        let key = g.leases_key();
        for attempt in 0..MAX_LEASE_ATTEMPTS {
            let (current, revision) = self.read_lease_entry(&key).await?;
            let (table, out) = update(current.as_deref()).map_err(JsError::Corrupt)?;
            let value = Bytes::from(table);
            let written = match revision {
                Some(r) => self.groups.update(&key, value, r).await.map_err(|e| {
                    (
                        e.kind() == kv::UpdateErrorKind::WrongLastRevision,
                        e.to_string(),
                    )
                }),
                None => self.groups.create(&key, value).await.map_err(|e| {
                    (
                        e.kind() == kv::CreateErrorKind::AlreadyExists,
                        e.to_string(),
                    )
                }),
            };
            match written {
                Ok(revision) => return Ok((out, revision)),
                // Another router wrote first: start over from its table.
                Err((true, _)) => {
                    let jitter = crate::time::now_ms() % 5 + attempt as u64;
                    tokio::time::sleep(Duration::from_millis(jitter)).await;
                }
                Err((false, e)) => return Err(unavailable("lease write", e)),
            }
        }
        Err(JsError::Unavailable(format!(
            "lease table of group {:?} is too contended; poll again",
            g.name
        )))
    }

    /// The lease table and the revision to write its successor at (`None`: create it).
    async fn read_lease_entry(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u64>), JsError> {
        let entry = self
            .groups
            .entry(key)
            .await
            .map_err(|e| unavailable("lease read", e))?;
        Ok(match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                (Some(e.value.to_vec()), Some(e.revision))
            }
            // Deleted: a new table, written at the deletion's revision.
            Some(e) => (None, Some(e.revision)),
            None => (None, None),
        })
    }

    /// The group's lease table as last written.
    pub async fn read_leases(
        &self,
        h: &Arc<StreamHandle>,
        group: &str,
    ) -> Result<Option<Vec<u8>>, JsError> {
        let g = self.existing_group(h, group).await?;
        Ok(self.read_lease_entry(&g.leases_key()).await?.0)
    }

    /// Records that `shard` of the group was processed up to `sequence`.
    pub async fn put_checkpoint(
        &self,
        h: &Arc<StreamHandle>,
        group: &str,
        shard: u32,
        sequence: u64,
    ) -> Result<(), JsError> {
        let g = self.existing_group(h, group).await?;
        if shard >= g.shards {
            return Err(JsError::NotFound {
                kind: Kind::Shard,
                name: shard.to_string(),
            });
        }
        self.groups
            .put(g.checkpoint_key(shard), Bytes::from(sequence.to_string()))
            .await
            .map_err(|e| unavailable("checkpoint write", e))?;
        Ok(())
    }

    /// The last checkpoint of every shard (`None` where there is none yet).
    pub async fn checkpoints(
        &self,
        h: &Arc<StreamHandle>,
        group: &str,
    ) -> Result<Vec<Option<u64>>, JsError> {
        let g = self.existing_group(h, group).await?;
        let got =
            futures::future::join_all((0..g.shards).map(|s| self.groups.get(g.checkpoint_key(s))))
                .await;
        got.into_iter()
            .map(|r| {
                let v = r.map_err(|e| unavailable("checkpoint read", e))?;
                Ok(v.and_then(|v| std::str::from_utf8(&v).ok()?.parse().ok()))
            })
            .collect()
    }
}
