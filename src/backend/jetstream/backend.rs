//! JetStream behind [`Backend`]: each verb resolves the router's handles to this backend's
//! own and calls the JetStream layer; its errors become storage errors (503), since
//! everything a caller could get wrong was checked by the router before.

use super::groups::GroupHandle;
use super::{Delivery as JsDelivery, JetStream, JsError, QueueHandle, StreamHandle};
use crate::backend::{
    Backend, Counts, Delivery, GroupInfo, MetaChange, Queue, QueueRef, ReceiptError, Received,
    StorageError, Stored, StoredRecord, Stream, StreamRef, downcast,
};
use crate::model::{GroupSpec, QueueSpec, StreamSpec};
use crate::stream::lease::{Assignment, Lease};
use std::any::Any;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;

impl From<JsError> for StorageError {
    fn from(e: JsError) -> Self {
        StorageError(e.to_string())
    }
}

impl QueueRef for QueueHandle {
    fn name(&self) -> &str {
        &self.name
    }
    fn spec(&self) -> QueueSpec {
        QueueHandle::spec(self)
    }
    fn is_fifo(&self) -> bool {
        self.fifo()
    }
    fn is_deleted(&self) -> bool {
        QueueHandle::is_deleted(self)
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
        start_after: g.start_after.clone(),
    }
}

impl JetStream {
    /// The group, which the router has looked up or created before using it.
    async fn existing_group(
        &self,
        s: &Arc<StreamHandle>,
        name: &str,
    ) -> Result<Arc<GroupHandle>, StorageError> {
        self.find_group(s, name).await?.ok_or_else(|| {
            StorageError(format!(
                "consumer group {name:?} of stream {:?} is gone",
                s.name
            ))
        })
    }
}

#[async_trait::async_trait]
impl Backend for JetStream {
    fn kind(&self) -> &'static str {
        "nats"
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn put_meta(&self, key: &str, value: Vec<u8>) -> Result<(), StorageError> {
        Ok(JetStream::put_meta(self, key, value).await?)
    }

    async fn delete_meta(&self, key: &str) -> Result<(), StorageError> {
        Ok(JetStream::delete_meta(self, key).await?)
    }

    fn list_meta(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StorageError> {
        Ok(JetStream::list_meta(self, prefix))
    }

    fn watch_meta(&self) -> Option<broadcast::Receiver<MetaChange>> {
        Some(JetStream::watch_meta(self))
    }

    fn queue(&self, name: &str) -> Option<Queue> {
        JetStream::queue(self, name).map(|q| q as Queue)
    }

    fn queue_names(&self) -> Vec<String> {
        JetStream::queue_names(self)
            .into_iter()
            .filter(|n| !crate::deliver::is_internal(n))
            .collect()
    }

    async fn put_queue(&self, name: &str, spec: QueueSpec) -> Result<Queue, StorageError> {
        Ok(JetStream::put_queue(self, name, spec).await? as Queue)
    }

    async fn delete_queue(&self, name: &str) -> Result<bool, StorageError> {
        Ok(JetStream::delete_queue(self, name).await?)
    }

    async fn store(&self, items: Vec<Delivery>) -> Result<Vec<Stored>, StorageError> {
        let items = items
            .into_iter()
            .map(|d| match d {
                Delivery::Queue(q, m) => JsDelivery::Queue(queue(&q), m),
                Delivery::Stream(s, shard, r) => JsDelivery::Stream(stream(&s), shard, r),
            })
            .collect();
        Ok(JetStream::store(self, items).await?)
    }

    async fn receive(
        &self,
        q: &Queue,
        max: usize,
        visibility_ms: u64,
        wait: Duration,
        stop: &CancellationToken,
    ) -> Result<Vec<Received>, StorageError> {
        let q = queue(q);
        // Messages a cancelled receive had taken become visible again after their
        // visibility timeout, as with a receiver that died.
        tokio::select! {
            r = JetStream::receive(self, &q, max, visibility_ms, wait) => Ok(r?),
            _ = stop.cancelled() => Ok(Vec::new()),
        }
    }

    async fn ack(
        &self,
        q: &Queue,
        receipts: &[String],
    ) -> Result<Vec<Result<(), ReceiptError>>, StorageError> {
        Ok(JetStream::ack(self, &queue(q), receipts).await?)
    }

    async fn change_visibility(
        &self,
        q: &Queue,
        receipt: &str,
        visibility_ms: u64,
    ) -> Result<Result<(), ReceiptError>, StorageError> {
        Ok(JetStream::change_visibility(self, &queue(q), receipt, visibility_ms).await?)
    }

    async fn purge(&self, q: &Queue) -> Result<u64, StorageError> {
        Ok(JetStream::purge(self, &queue(q)).await?)
    }

    async fn counts(&self, q: &Queue) -> Result<Counts, StorageError> {
        Ok(JetStream::counts(self, &queue(q)).await?)
    }

    async fn redrive_back(&self, dlq: &Queue) -> Result<u64, StorageError> {
        Ok(JetStream::redrive_back(self, &queue(dlq)).await?)
    }

    fn stream(&self, name: &str) -> Option<Stream> {
        JetStream::stream(self, name).map(|s| s as Stream)
    }

    fn stream_names(&self) -> Vec<String> {
        JetStream::stream_names(self)
    }

    async fn put_stream(&self, name: &str, spec: StreamSpec) -> Result<Stream, StorageError> {
        Ok(JetStream::put_stream(self, name, spec).await? as Stream)
    }

    async fn delete_stream(&self, name: &str) -> Result<bool, StorageError> {
        Ok(JetStream::delete_stream(self, name).await?)
    }

    async fn bounds(&self, s: &Stream, shard: u32) -> Result<(u64, u64), StorageError> {
        Ok(JetStream::bounds(self, &stream(s), shard).await?)
    }

    async fn read_shard(
        &self,
        s: &Stream,
        shard: u32,
        from: u64,
        limit: usize,
    ) -> Result<Vec<StoredRecord>, StorageError> {
        Ok(JetStream::read_shard(self, &stream(s), shard, from, limit).await?)
    }

    async fn sequence_at(&self, s: &Stream, shard: u32, ts: u64) -> Result<u64, StorageError> {
        Ok(JetStream::sequence_at(self, &stream(s), shard, ts).await?)
    }

    async fn group(
        &self,
        s: &Stream,
        name: &str,
        spec: Option<GroupSpec>,
    ) -> Result<(GroupInfo, bool), StorageError> {
        let (g, created) = JetStream::group(self, &stream(s), name, spec).await?;
        Ok((info(&g), created))
    }

    async fn find_group(&self, s: &Stream, name: &str) -> Result<Option<GroupInfo>, StorageError> {
        Ok(JetStream::find_group(self, &stream(s), name)
            .await?
            .map(|g| info(&g)))
    }

    async fn group_names(&self, s: &Stream) -> Result<Vec<String>, StorageError> {
        Ok(JetStream::group_names(self, &stream(s)).await?)
    }

    async fn heartbeat(
        &self,
        s: &Stream,
        group: &str,
        member: &str,
    ) -> Result<Assignment, StorageError> {
        let g = self.existing_group(&stream(s), group).await?;
        Ok(JetStream::heartbeat(self, &g, member).await?.assignment)
    }

    async fn leases(&self, s: &Stream, group: &str) -> Result<Vec<Option<Lease>>, StorageError> {
        let g = self.existing_group(&stream(s), group).await?;
        Ok(JetStream::leases(self, &g).await?)
    }

    async fn checkpoint(
        &self,
        s: &Stream,
        group: &str,
        member: &str,
        shard: u32,
        sequence: u64,
    ) -> Result<bool, StorageError> {
        let g = self.existing_group(&stream(s), group).await?;
        match JetStream::checkpoint(self, &g, member, shard, sequence).await {
            Ok(()) => Ok(true),
            Err(JsError::NotHolder { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn checkpoints(&self, s: &Stream, group: &str) -> Result<Vec<Option<u64>>, StorageError> {
        let g = self.existing_group(&stream(s), group).await?;
        Ok(JetStream::checkpoints(self, &g).await?)
    }
}
