//! Consumer groups on JetStream KV: spec, lease table and checkpoints of every group in
//! the bucket `{prefix}_groups`, shared by all routers.
//!
//! The lease table of a group is one record, changed only by a revision-checked write
//! (create when absent, update at the revision read). Each heartbeat reads the table,
//! applies [`Leases::heartbeat`] and writes it back at the revision it read; a write that
//! lost a race is retried on the newer table. So the table goes through one sequence of
//! versions that every router agrees on, and since every version gives each shard at most
//! one holder, two members never both hold a lease, whichever routers they poll.
//! Checkpoints are one record per shard, written only by the member holding its lease.

use super::codec::escape;
use super::records::StreamHandle;
use super::{JetStream, JsError};
use crate::backend::now_ms;
use crate::model::{GroupSpec, Kind, StartPosition};
use crate::stream::lease::{Assignment, Lease, Leases};
use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::StreamExt;
use std::sync::Arc;
use std::time::Duration;

/// Heartbeats that lose the race for the lease table this many times in a row give up
/// (the caller retries on its next poll). Each attempt is two round trips.
const MAX_LEASE_ATTEMPTS: u32 = 32;

#[derive(serde::Serialize, serde::Deserialize)]
struct GroupRecord {
    spec: GroupSpec,
    /// Where a shard without checkpoint starts: after this sequence (0 = from the start).
    start_after: Vec<u64>,
}

/// A consumer group: its settings and where its records live.
pub struct GroupHandle {
    pub name: String,
    pub spec: GroupSpec,
    pub start_after: Vec<u64>,
    /// `{stream}.{group}` in the groups bucket.
    key: String,
    shards: u32,
}

/// What a heartbeat changed, and the lease table version it wrote.
#[derive(Debug)]
pub struct Heartbeat {
    pub assignment: Assignment,
    /// The revision of the lease table this heartbeat wrote: heartbeats of one group are
    /// totally ordered by it.
    pub revision: u64,
    /// Every shard's lease as of that revision.
    pub leases: Vec<Option<Lease>>,
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
    /// A consumer group, created with `spec` when it does not exist; `true` when this call
    /// created it. Two routers creating one group at once agree on one of their records.
    pub async fn group(
        &self,
        h: &Arc<StreamHandle>,
        name: &str,
        spec: Option<GroupSpec>,
    ) -> Result<(Arc<GroupHandle>, bool), JsError> {
        if let Some(g) = h.groups.lock().expect("never poisoned").get(name) {
            return Ok((g.clone(), false));
        }
        let key = group_key(&h.name, name);
        let spec_key = format!("{key}.spec");
        let (record, created) = match self.read_group(&spec_key).await? {
            Some(r) => (r, false),
            None => {
                let spec = spec.unwrap_or_default();
                let mut start_after = Vec::with_capacity(h.shard_count() as usize);
                for s in 0..h.shard_count() {
                    start_after.push(match spec.start_position {
                        StartPosition::TrimHorizon => 0,
                        StartPosition::Latest => self.bounds(h, s).await?.1,
                    });
                }
                let record = GroupRecord { spec, start_after };
                let value = Bytes::from(serde_json::to_vec(&record).expect("plain data"));
                match self.groups.create(&spec_key, value).await {
                    Ok(_) => (record, true),
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                        let r = self.read_group(&spec_key).await?.ok_or_else(|| {
                            JsError::Unavailable(format!("group {name:?} vanished while created"))
                        })?;
                        (r, false)
                    }
                    Err(e) => return Err(unavailable("group create", e)),
                }
            }
        };
        let g = Arc::new(GroupHandle {
            name: name.to_string(),
            spec: record.spec,
            start_after: record.start_after,
            key,
            shards: h.shard_count(),
        });
        let mut groups = h.groups.lock().expect("never poisoned");
        let g = groups.entry(name.to_string()).or_insert(g).clone();
        Ok((g, created))
    }

    /// A consumer group if it exists (created by any router).
    pub async fn find_group(
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
        let g = Arc::new(GroupHandle {
            name: name.to_string(),
            spec: record.spec,
            start_after: record.start_after,
            key,
            shards: h.shard_count(),
        });
        let mut groups = h.groups.lock().expect("never poisoned");
        Ok(Some(groups.entry(name.to_string()).or_insert(g).clone()))
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

    /// A poll by `member`: renews its leases, releases what it should give up and takes
    /// what is free for it, with one revision-checked write of the group's lease table.
    pub async fn heartbeat(&self, g: &GroupHandle, member: &str) -> Result<Heartbeat, JsError> {
        let key = g.leases_key();
        let timeout_ms = g.spec.lease_timeout_s * 1000;
        for attempt in 0..MAX_LEASE_ATTEMPTS {
            let (mut leases, revision) = self.read_leases(g, &key, timeout_ms).await?;
            let now = now_ms();
            let assignment = leases.heartbeat(member, now);
            let value = Bytes::from(serde_json::to_vec(&leases).expect("plain data"));
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
                Ok(revision) => {
                    return Ok(Heartbeat {
                        assignment,
                        revision,
                        leases: leases.snapshot(now),
                    });
                }
                // Another heartbeat wrote first: start over from its table.
                Err((true, _)) => {
                    let jitter = now % 5 + attempt as u64;
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

    async fn read_leases(
        &self,
        g: &GroupHandle,
        key: &str,
        timeout_ms: u64,
    ) -> Result<(Leases, Option<u64>), JsError> {
        let entry = self
            .groups
            .entry(key)
            .await
            .map_err(|e| unavailable("lease read", e))?;
        Ok(match entry {
            Some(e) if e.operation == kv::Operation::Put => (
                serde_json::from_slice(&e.value)
                    .map_err(|err| JsError::Corrupt(format!("lease table {key}: {err}")))?,
                Some(e.revision),
            ),
            // Deleted: a new table, written at the deletion's revision.
            Some(e) => (Leases::new(g.shards, timeout_ms), Some(e.revision)),
            None => (Leases::new(g.shards, timeout_ms), None),
        })
    }

    /// Every shard's lease as it stands.
    pub async fn leases(&self, g: &GroupHandle) -> Result<Vec<Option<Lease>>, JsError> {
        let timeout_ms = g.spec.lease_timeout_s * 1000;
        let (leases, _) = self.read_leases(g, &g.leases_key(), timeout_ms).await?;
        Ok(leases.snapshot(now_ms()))
    }

    /// Records that `member` has processed `shard` up to `sequence`; refused unless the
    /// member holds the shard's lease.
    pub async fn checkpoint(
        &self,
        g: &GroupHandle,
        member: &str,
        shard: u32,
        sequence: u64,
    ) -> Result<(), JsError> {
        if shard >= g.shards {
            return Err(JsError::NotFound {
                kind: Kind::Shard,
                name: shard.to_string(),
            });
        }
        let holds = self
            .leases(g)
            .await?
            .get(shard as usize)
            .cloned()
            .flatten()
            .is_some_and(|l| l.member == member);
        if !holds {
            return Err(JsError::NotHolder {
                member: member.to_string(),
                shard,
            });
        }
        self.groups
            .put(g.checkpoint_key(shard), Bytes::from(sequence.to_string()))
            .await
            .map_err(|e| unavailable("checkpoint write", e))?;
        Ok(())
    }

    /// The last checkpoint of every shard (`None` where there is none yet).
    pub async fn checkpoints(&self, g: &GroupHandle) -> Result<Vec<Option<u64>>, JsError> {
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
