//! Consumer groups in the embedded backend: a group's record (its settings, where each
//! shard starts and the last checkpoints) in the metadata space, and its lease table in
//! memory, since one process serves every member. What the lease table says is decided
//! above storage; here it is bytes, changed one update at a time.

use super::Embedded;
use super::committer::{Op, Space, Wait};
use super::records::{GroupHandle, GroupState, META_GROUP, StreamHandle};
use crate::backend::{GroupInfo, StorageError, to_json};
use crate::model::{GroupSpec, Kind};
use std::sync::{Arc, Mutex};

/// What is stored per group.
#[derive(serde::Serialize, serde::Deserialize)]
struct GroupRecord {
    spec: GroupSpec,
    checkpoints: Vec<Option<u64>>,
    start_after: Vec<u64>,
}

impl GroupHandle {
    fn new(info: GroupInfo, checkpoints: Vec<Option<u64>>) -> Arc<Self> {
        Arc::new(GroupHandle {
            state: Mutex::new(GroupState {
                info,
                leases: None,
                leases_version: 0,
                checkpoints,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GroupState> {
        // Every change under the lock is a few assignments that cannot panic halfway.
        self.state.lock().expect("group state lock poisoned")
    }
}

impl GroupState {
    fn record(&self) -> GroupRecord {
        GroupRecord {
            spec: self.info.spec.clone(),
            checkpoints: self.checkpoints.clone(),
            start_after: self.info.start_after.clone(),
        }
    }
}

fn group_key(stream: &StreamHandle, group: &str) -> Vec<u8> {
    format!("{META_GROUP}{}/{group}", stream.id).into_bytes()
}

impl StreamHandle {
    fn group(&self, name: &str) -> Result<Arc<GroupHandle>, StorageError> {
        self.groups
            .lock()
            .expect("never poisoned")
            .get(name)
            .cloned()
            .ok_or_else(|| StorageError::NotFound {
                kind: Kind::Group,
                name: format!("{name} of stream {}", self.name),
            })
    }

    /// A group's settings, `None` when it does not exist.
    pub fn group_info(&self, name: &str) -> Option<GroupInfo> {
        let g = self.group(name).ok()?;
        let info = g.lock().info.clone();
        Some(info)
    }

    pub fn group_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .groups
            .lock()
            .expect("never poisoned")
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }
}

impl Embedded {
    /// Loads a stream's groups at start.
    pub(super) fn recover_groups(&self, h: &StreamHandle) -> Result<(), StorageError> {
        let n = h.shard_count() as usize;
        for (name, raw) in self.list_meta(&format!("{META_GROUP}{}/", h.id))? {
            let g: GroupRecord = serde_json::from_slice(&raw)
                .map_err(|e| StorageError::Corrupt(format!("consumer group {name:?}: {e}")))?;
            let mut checkpoints = g.checkpoints;
            checkpoints.resize(n, None);
            let mut start_after = g.start_after;
            start_after.resize(n, 0);
            let info = GroupInfo {
                spec: g.spec,
                start_after,
            };
            let handle = GroupHandle::new(info, checkpoints);
            h.groups
                .lock()
                .expect("never poisoned")
                .insert(name, handle);
        }
        Ok(())
    }

    /// Creates a group with `info` unless it exists; returns the group's settings and
    /// whether this call created it.
    pub async fn create_group(
        &self,
        h: &StreamHandle,
        name: &str,
        info: GroupInfo,
    ) -> Result<(GroupInfo, bool), StorageError> {
        self.disk.admit_resource(name)?;
        let n = h.shard_count() as usize;
        let durable = {
            let mut groups = h.groups.lock().expect("never poisoned");
            // Two first polls may race; the first to insert wins and both use its record.
            if let Some(existing) = groups.get(name) {
                return Ok((existing.lock().info.clone(), false));
            }
            let g = GroupHandle::new(info.clone(), vec![None; n]);
            let record = g.lock().record();
            groups.insert(name.to_string(), g);
            self.committer.send(
                vec![Op::Put(Space::Meta, group_key(h, name), to_json(&record))],
                Wait::Synced,
            )
        };
        durable.await.map_err(StorageError::Unavailable)?;
        Ok((info, true))
    }

    /// Replaces a group's lease table with what `update` makes of the current one
    /// (`None` before the first), under the group's lock, so updates apply one after the
    /// other; returns `update`'s answer and the table's new version.
    pub fn update_leases<T>(
        &self,
        h: &StreamHandle,
        group: &str,
        update: impl FnOnce(Option<&[u8]>) -> Result<(Vec<u8>, T), String>,
    ) -> Result<(T, u64), StorageError> {
        let g = h.group(group)?;
        let mut st = g.lock();
        let (table, out) = update(st.leases.as_deref()).map_err(StorageError::Corrupt)?;
        st.leases = Some(table);
        st.leases_version += 1;
        Ok((out, st.leases_version))
    }

    /// A group's lease table as last written; `None` before the first poll.
    pub fn read_leases(
        &self,
        h: &StreamHandle,
        group: &str,
    ) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(h.group(group)?.lock().leases.clone())
    }

    /// Durably records that `shard` of the group was processed up to `sequence`.
    pub async fn put_checkpoint(
        &self,
        h: &StreamHandle,
        group: &str,
        shard: u32,
        sequence: u64,
    ) -> Result<(), StorageError> {
        let g = h.group(group)?;
        // The record is handed to the committer under the lock, so records reach the log
        // in the order their checkpoints were taken and a later one is never overwritten
        // by an earlier.
        let durable = {
            let mut st = g.lock();
            st.checkpoints[shard as usize] = Some(sequence);
            let record = st.record();
            self.committer.send(
                vec![Op::Put(Space::Meta, group_key(h, group), to_json(&record))],
                Wait::Synced,
            )
        };
        durable.await.map_err(StorageError::Unavailable)
    }

    /// The last checkpoint of every shard.
    pub fn checkpoints(
        &self,
        h: &StreamHandle,
        group: &str,
    ) -> Result<Vec<Option<u64>>, StorageError> {
        Ok(h.group(group)?.lock().checkpoints.clone())
    }
}
