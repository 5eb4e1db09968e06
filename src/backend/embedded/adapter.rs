//! The embedded store behind [`Backend`]: each verb resolves the router's handles to this
//! backend's own and calls the store. Consumer-group leases live in memory (one process
//! serves every member), checkpoints on disk.

use super::records::{GroupHandle, StreamHandle};
use super::{Embedded, QueueHandle};
use crate::backend::{
    Backend, Counts, Delivery, GroupInfo, Queue, QueueRef, ReceiptError, Received, StorageError,
    Stored, StoredRecord, Stream, StreamRef, downcast, now_ms,
};
use crate::model::{GroupSpec, QueueSpec, StreamSpec};
use crate::stream::lease::{Assignment, Lease};
use std::any::Any;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

impl QueueRef for QueueHandle {
    fn name(&self) -> &str {
        &self.name
    }
    fn spec(&self) -> QueueSpec {
        QueueHandle::spec(self)
    }
    fn is_fifo(&self) -> bool {
        QueueHandle::is_fifo(self)
    }
    fn is_deleted(&self) -> bool {
        QueueHandle::is_deleted(self)
    }
    fn deliver_before_sync(&self, on: bool) {
        self.before_sync
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }
    fn delivers_before_sync(&self) -> bool {
        self.before_sync.load(std::sync::atomic::Ordering::Relaxed)
    }
    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

impl StreamRef for StreamHandle {
    fn name(&self) -> &str {
        &self.name
    }
    fn spec(&self) -> StreamSpec {
        StreamHandle::spec(self)
    }
    fn shard_count(&self) -> u32 {
        StreamHandle::shard_count(self)
    }
    fn is_deleted(&self) -> bool {
        StreamHandle::is_deleted(self)
    }
    fn arrivals(&self) -> &Notify {
        &self.arrivals
    }
    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

fn queue(q: &Queue) -> Arc<QueueHandle> {
    downcast(q.clone().as_any())
}

fn stream(s: &Stream) -> Arc<StreamHandle> {
    downcast(s.clone().as_any())
}

fn info(g: &GroupHandle) -> GroupInfo {
    GroupInfo {
        spec: g.spec.clone(),
        start_after: g.lock().start_after.clone(),
    }
}

/// The group, which the router has looked up or created before using it.
fn group(s: &StreamHandle, name: &str) -> Result<Arc<GroupHandle>, StorageError> {
    s.group(name).ok_or_else(|| {
        StorageError(format!(
            "consumer group {name:?} of stream {:?} is gone",
            s.name
        ))
    })
}

#[async_trait::async_trait]
impl Backend for Embedded {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    async fn put_meta(&self, key: &str, value: Vec<u8>) -> Result<(), StorageError> {
        Embedded::put_meta(self, key, value).await
    }

    async fn delete_meta(&self, key: &str) -> Result<(), StorageError> {
        Embedded::delete_meta(self, key).await
    }

    fn list_meta(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        Embedded::list_meta(self, prefix)
    }

    fn queue(&self, name: &str) -> Option<Queue> {
        Embedded::queue(self, name).map(|q| q as Queue)
    }

    fn queue_names(&self) -> Vec<String> {
        Embedded::queue_names(self)
    }

    async fn put_queue(&self, name: &str, spec: QueueSpec) -> Result<Queue, StorageError> {
        Ok(Embedded::put_queue(self, name, spec).await? as Queue)
    }

    async fn delete_queue(&self, name: &str) -> Result<bool, StorageError> {
        Embedded::delete_queue(self, name).await
    }

    async fn store(&self, items: Vec<Delivery>) -> Result<Vec<Stored>, StorageError> {
        let items = items
            .into_iter()
            .map(|d| match d {
                Delivery::Queue(q, m) => super::Delivery::Queue(queue(&q), m),
                Delivery::Stream(s, shard, r) => super::Delivery::Stream(stream(&s), shard, r),
            })
            .collect();
        Embedded::store(self, items).await
    }

    async fn receive(
        &self,
        q: &Queue,
        max: usize,
        visibility_ms: u64,
        wait: Duration,
        stop: &CancellationToken,
    ) -> Result<Vec<Received>, StorageError> {
        self.receive_wait(&queue(q), max, visibility_ms, wait, stop)
            .await
    }

    async fn ack(
        &self,
        q: &Queue,
        receipts: &[String],
    ) -> Result<Vec<Result<(), ReceiptError>>, StorageError> {
        Embedded::ack(self, &queue(q), receipts).await
    }

    async fn change_visibility(
        &self,
        q: &Queue,
        receipt: &str,
        visibility_ms: u64,
    ) -> Result<Result<(), ReceiptError>, StorageError> {
        Embedded::change_visibility(self, &queue(q), receipt, visibility_ms).await
    }

    async fn purge(&self, q: &Queue) -> Result<u64, StorageError> {
        Embedded::purge(self, &queue(q)).await
    }

    async fn counts(&self, q: &Queue) -> Result<Counts, StorageError> {
        Ok(Embedded::counts(self, &queue(q)))
    }

    async fn redrive_back(&self, dlq: &Queue) -> Result<u64, StorageError> {
        Embedded::redrive_back(self, &queue(dlq)).await
    }

    fn sweep(&self) {
        Embedded::sweep(self)
    }

    fn stream(&self, name: &str) -> Option<Stream> {
        Embedded::stream(self, name).map(|s| s as Stream)
    }

    fn stream_names(&self) -> Vec<String> {
        Embedded::stream_names(self)
    }

    async fn put_stream(&self, name: &str, spec: StreamSpec) -> Result<Stream, StorageError> {
        Ok(Embedded::put_stream(self, name, spec).await? as Stream)
    }

    async fn delete_stream(&self, name: &str) -> Result<bool, StorageError> {
        Embedded::delete_stream(self, name).await
    }

    async fn bounds(&self, s: &Stream, shard: u32) -> Result<(u64, u64), StorageError> {
        Ok(stream(s).bounds(shard))
    }

    async fn read_shard(
        &self,
        s: &Stream,
        shard: u32,
        from: u64,
        limit: usize,
    ) -> Result<Vec<StoredRecord>, StorageError> {
        Embedded::read_shard(self, &stream(s), shard, from, limit)
    }

    async fn sequence_at(&self, s: &Stream, shard: u32, ts: u64) -> Result<u64, StorageError> {
        Embedded::sequence_at(self, &stream(s), shard, ts)
    }

    async fn group(
        &self,
        s: &Stream,
        name: &str,
        spec: Option<GroupSpec>,
    ) -> Result<(GroupInfo, bool), StorageError> {
        let (g, created) = Embedded::group(self, &stream(s), name, spec).await?;
        Ok((info(&g), created))
    }

    async fn find_group(&self, s: &Stream, name: &str) -> Result<Option<GroupInfo>, StorageError> {
        Ok(stream(s).group(name).map(|g| info(&g)))
    }

    async fn group_names(&self, s: &Stream) -> Result<Vec<String>, StorageError> {
        Ok(stream(s).group_names())
    }

    async fn heartbeat(
        &self,
        s: &Stream,
        group_name: &str,
        member: &str,
    ) -> Result<Assignment, StorageError> {
        let g = group(&stream(s), group_name)?;
        let mut st = g.lock();
        Ok(st.leases.heartbeat(member, now_ms()))
    }

    async fn leases(
        &self,
        s: &Stream,
        group_name: &str,
    ) -> Result<Vec<Option<Lease>>, StorageError> {
        let g = group(&stream(s), group_name)?;
        let st = g.lock();
        Ok(st.leases.snapshot(now_ms()))
    }

    async fn checkpoint(
        &self,
        s: &Stream,
        group_name: &str,
        member: &str,
        shard: u32,
        sequence: u64,
    ) -> Result<bool, StorageError> {
        let h = stream(s);
        let g = group(&h, group_name)?;
        {
            let mut st = g.lock();
            if !st.leases.holds(member, shard, now_ms()) {
                return Ok(false);
            }
            st.checkpoints[shard as usize] = Some(sequence);
        }
        self.save_group(&h, &g).await?;
        Ok(true)
    }

    async fn checkpoints(
        &self,
        s: &Stream,
        group_name: &str,
    ) -> Result<Vec<Option<u64>>, StorageError> {
        let g = group(&stream(s), group_name)?;
        let st = g.lock();
        Ok(st.checkpoints.clone())
    }
}
