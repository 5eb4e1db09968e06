//! Metadata on JetStream KV: records in the bucket `{prefix}_meta`, which every router
//! mirrors in memory through a watch, so lookups are local and another router's change is
//! seen within milliseconds.

use super::queues::QueueHandle;
use super::records::StreamHandle;
use super::{
    IDEMPOTENT_DEADLINE, JetStream, JsError, REQUEST_TIMEOUT, WATCH_CHECK, WATCH_RETRY, codec,
    queues, records,
};
use crate::backend::MetaChange;
use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::broadcast;

/// The metadata as of the last change seen, and the handles built from it.
pub(crate) struct Mirror {
    /// key -> (revision, value); `None` is a deletion, kept so an older change arriving late
    /// cannot bring a record back.
    pub(super) entries: RwLock<BTreeMap<String, (u64, Option<Bytes>)>>,
    /// The highest revision the watch delivered: where a recreated watch resumes.
    pub(super) watched: AtomicU64,
    pub(super) changes: broadcast::Sender<MetaChange>,
    pub(super) queues: RwLock<HashMap<String, Arc<QueueHandle>>>,
    pub(super) streams: RwLock<HashMap<String, Arc<StreamHandle>>>,
    /// What queue handles need to run their delay pumps.
    pub(super) ctx: queues::PumpContext,
}

impl JetStream {
    /// Stores a metadata record; every instance sees it once this returns.
    pub async fn put_meta(&self, key: &str, value: Vec<u8>) -> Result<(), JsError> {
        check_key(key)?;
        let value = Bytes::from(value);
        let revision = self
            .meta
            .put(key, value.clone())
            .await
            .map_err(|e| kv_error("put", key, e))?;
        // Read-your-writes: apply it here at once instead of waiting for the watch.
        self.mirror.apply(key, revision, Some(value));
        Ok(())
    }

    /// Stores a metadata record unless the key holds one already; then that record is
    /// the one in force (mirrored here at once) and `false` is returned. So two routers
    /// creating one resource at once agree on one record.
    pub(crate) async fn create_meta(&self, key: &str, value: Vec<u8>) -> Result<bool, JsError> {
        check_key(key)?;
        let value = Bytes::from(value);
        match self.meta.create(key, value.clone()).await {
            Ok(revision) => {
                self.mirror.apply(key, revision, Some(value));
                Ok(true)
            }
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                let entry = self
                    .meta
                    .entry(key)
                    .await
                    .map_err(|e| kv_error("read", key, e))?;
                if let Some(entry) = entry {
                    let value = (entry.operation == kv::Operation::Put).then_some(entry.value);
                    self.mirror.apply(key, entry.revision, value);
                }
                Ok(false)
            }
            Err(e) => Err(kv_error("create", key, e)),
        }
    }

    pub async fn delete_meta(&self, key: &str) -> Result<(), JsError> {
        check_key(key)?;
        // A KV delete is a marker message; publishing it here (rather than through the
        // KV helper) gives its revision, so the mirror orders it exactly.
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("KV-Operation", "DEL");
        let ack = self
            .js
            .publish_with_headers(
                format!("$KV.{}.{key}", self.meta.name),
                headers,
                Bytes::new(),
            )
            .await
            .map_err(|e| kv_error("delete", key, e))?
            .await
            .map_err(|e| kv_error("delete", key, e))?;
        self.mirror.apply(key, ack.sequence, None);
        Ok(())
    }

    /// Every metadata record under `prefix`, with the prefix stripped from the keys.
    pub fn list_meta(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        self.mirror
            .entries
            .read()
            .expect("never poisoned")
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter_map(|(k, (_, v))| {
                v.as_ref()
                    .map(|v| (k[prefix.len()..].to_string(), v.to_vec()))
            })
            .collect()
    }

    /// Metadata changes made by any instance from now on.
    pub fn watch_meta(&self) -> broadcast::Receiver<MetaChange> {
        self.mirror.changes.subscribe()
    }
}

fn kv_error(op: &str, key: &str, e: impl std::fmt::Display) -> JsError {
    // The KV errors that reach here are transport ones (keys are checked before).
    JsError::Unavailable(format!("metadata {op} of {key:?}: {e}"))
}

/// KV keys are subject tokens: letters, digits, `-/_=.`, not starting or ending with `.`.
fn check_key(key: &str) -> Result<(), JsError> {
    let ok = !key.is_empty()
        && !key.starts_with('.')
        && !key.ends_with('.')
        && !key.contains("..")
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-/_=.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(JsError::Invalid(format!(
            "{key:?} is not a valid metadata key"
        )))
    }
}

/// Opens a KV bucket, creating it on first use. The bucket's stream is created directly,
/// with the settings the KV helpers of the NATS clients use: the client's own helper
/// first asks for account information in a form nats-server 2.9 does not send. Creating
/// an existing bucket with the same settings succeeds, so concurrent first starts of
/// several routers agree; one made with another replica count is brought to `replicas`.
pub(super) async fn open_bucket(
    client: &async_nats::Client,
    js: &jetstream::Context,
    bucket: &str,
    history: i64,
    replicas: usize,
) -> Result<kv::Store, JsError> {
    let stream = format!("KV_{bucket}");
    let config = serde_json::json!({
        "name": stream,
        "subjects": [format!("$KV.{bucket}.>")],
        "retention": "limits",
        "max_msgs_per_subject": history,
        "max_msgs": -1,
        "max_bytes": -1,
        "max_age": 0,
        "max_msg_size": -1,
        "storage": "file",
        "num_replicas": replicas,
        "discard": "new",
        "duplicate_window": 120_000_000_000u64,
        "allow_rollup_hdrs": true,
        "deny_delete": true,
        "allow_direct": true,
    });
    super::put_js_stream(client, &stream, config, false).await?;
    js.get_key_value(bucket)
        .await
        .map_err(|e| JsError::Unavailable(format!("cannot open bucket {bucket}: {e}")))
}

/// Follows the metadata bucket from its current state on, and returns once the mirror
/// holds that state. If the watch fails (a server restart), it is recreated from the
/// last revision it delivered, so no change is missed. Reading the current state is
/// repeated for a while when it breaks off: a cluster that has just moved the bucket to
/// more replicas, or lost a node, elects new leaders first.
pub(super) async fn start_watcher(
    meta: &kv::Store,
    mirror: Arc<Mirror>,
) -> Result<tokio::task::JoinHandle<()>, JsError> {
    let deadline = tokio::time::Instant::now() + IDEMPOTENT_DEADLINE;
    let mut watch = loop {
        match read_current(meta, &mirror).await {
            Ok(watch) => break watch,
            Err(e) if tokio::time::Instant::now() + WATCH_RETRY < deadline => {
                tracing::debug!(error = %e, "metadata not readable yet; repeating");
                tokio::time::sleep(WATCH_RETRY).await;
            }
            Err(e) => return Err(e),
        }
    };
    let meta = meta.clone();
    Ok(tokio::spawn(async move {
        loop {
            follow(&mut watch, &meta, &mirror).await;
            // Resume after the last revision the watch delivered (not the last applied:
            // this instance's own writes are applied before the watch sees them).
            loop {
                tokio::time::sleep(WATCH_RETRY).await;
                let from = mirror.watched.load(Ordering::Acquire) + 1;
                match meta.watch_all_from_revision(from).await {
                    Ok(w) => {
                        watch = w;
                        break;
                    }
                    Err(e) => tracing::debug!(error = %e, "metadata watch not back yet"),
                }
            }
        }
    }))
}

/// Brings the mirror up to the bucket's last revision (from where an earlier attempt
/// stopped) and returns the watch that got it there.
async fn read_current(meta: &kv::Store, mirror: &Mirror) -> Result<kv::Watch, JsError> {
    let unavailable =
        |e: &dyn std::fmt::Display| JsError::Unavailable(format!("metadata watch: {e}"));
    let last = meta
        .stream
        .get_info()
        .await
        .map_err(|e| unavailable(&e))?
        .state
        .last_sequence;
    let watched = mirror.watched.load(Ordering::Acquire);
    let mut watch = if watched == 0 {
        meta.watch_with_history(">").await
    } else {
        meta.watch_all_from_revision(watched + 1).await
    }
    .map_err(|e| unavailable(&e))?;
    // Every key's last entry, up to the bucket's last revision.
    while mirror.watched.load(Ordering::Acquire) < last {
        match tokio::time::timeout(REQUEST_TIMEOUT, watch.next()).await {
            Ok(Some(Ok(entry))) => mirror.apply_entry(entry),
            Ok(Some(Err(e))) => return Err(unavailable(&e)),
            Ok(None) | Err(_) => return Err(unavailable(&"ended before the current state")),
        }
    }
    Ok(watch)
}

/// Applies what `watch` delivers until it fails, ends or stalls. A stall is the bucket
/// holding revisions the watch has not delivered, with no progress between two checks:
/// the client's own recovery of a watch (after a reconnection to another server of a
/// cluster, or the loss of the server its consumer lived on) can hang, and a router that
/// stops seeing metadata changes would serve stale resources without saying so.
async fn follow(watch: &mut kv::Watch, meta: &kv::Store, mirror: &Mirror) {
    let mut check = tokio::time::interval(WATCH_CHECK);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut behind_at: Option<u64> = None;
    loop {
        tokio::select! {
            entry = watch.next() => match entry {
                Some(Ok(entry)) => mirror.apply_entry(entry),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "metadata watch failed; resuming it");
                    return;
                }
                None => {
                    tracing::warn!("metadata watch ended; resuming it");
                    return;
                }
            },
            _ = check.tick() => {
                // An unreachable server proves nothing about the watch: check again later.
                let Ok(Ok(info)) =
                    tokio::time::timeout(REQUEST_TIMEOUT, meta.stream.get_info()).await
                else {
                    continue;
                };
                let watched = mirror.watched.load(Ordering::Acquire);
                if info.state.last_sequence <= watched {
                    behind_at = None;
                } else if behind_at == Some(watched) {
                    tracing::warn!(
                        watched,
                        last = info.state.last_sequence,
                        "metadata watch stalled; resuming it"
                    );
                    return;
                } else {
                    behind_at = Some(watched);
                }
            }
        }
    }
}

impl Mirror {
    /// An empty mirror of the deployment `prefix`: no metadata seen yet.
    pub(super) fn new(
        client: async_nats::Client,
        js: async_nats::jetstream::Context,
        prefix: &str,
    ) -> Mirror {
        let (changes, _) = broadcast::channel(super::META_CHANGES_CAPACITY);
        Mirror {
            entries: RwLock::default(),
            watched: AtomicU64::new(0),
            changes,
            queues: RwLock::default(),
            streams: RwLock::default(),
            ctx: queues::PumpContext {
                client,
                js,
                prefix: prefix.to_string(),
            },
        }
    }

    /// Applies a change delivered by the watch.
    fn apply_entry(&self, e: kv::Entry) {
        self.watched.fetch_max(e.revision, Ordering::AcqRel);
        let value = match e.operation {
            kv::Operation::Put => Some(e.value),
            kv::Operation::Delete | kv::Operation::Purge => None,
        };
        self.apply(&e.key, e.revision, value);
    }

    /// Applies a change unless a newer one of the key was applied already; changes that
    /// are new are announced and reflected in the queue and stream handles. All of it
    /// happens under the entries' lock: a caller that finds its change applied already
    /// (by the watch, which delivers the router's own writes too) returns only once the
    /// handles show it, and two revisions of a key reach the handles in order.
    fn apply(&self, key: &str, revision: u64, value: Option<Bytes>) {
        let mut entries = self.entries.write().expect("never poisoned");
        match entries.get(key) {
            Some((r, _)) if *r >= revision => return,
            _ => {}
        }
        entries.insert(key.to_string(), (revision, value.clone()));
        if let Some(name) = key.strip_prefix(queues::META_QUEUE) {
            queues::sync_queue(
                &self.queues,
                &self.ctx,
                &codec::name_of_key(name),
                value.as_ref(),
            );
        } else if let Some(name) = key.strip_prefix(records::META_STREAM) {
            records::sync_stream(&self.streams, &self.ctx.prefix, name, value.as_ref());
        }
        let change = match value {
            Some(value) => MetaChange::Put {
                key: key.to_string(),
                value,
            },
            None => MetaChange::Delete {
                key: key.to_string(),
            },
        };
        // No receivers is fine: nobody is watching.
        let _ = self.changes.send(change);
        drop(entries);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The watch and the writer apply the same change at once; whichever returns second
    /// used to return before the first had built the queue's handle, and `put_queue`
    /// then answered that the queue it had just created did not exist.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_change_applied_twice_at_once_is_in_the_handles_when_either_returns() {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect("127.0.0.1:1")
            .await
            .expect("a client that connects in the background");
        let js = async_nats::jetstream::new(client.clone());
        let mirror = Arc::new(Mirror::new(client, js, "t"));
        let record = Bytes::from(
            serde_json::json!({"spec": {}, "partitions": 1, "incarnation": 7}).to_string(),
        );
        let runtime = tokio::runtime::Handle::current();
        for i in 0..500 {
            let name = format!("q{i}");
            let key = format!("{}{}", queues::META_QUEUE, codec::key_of_name(&name));
            let start = Arc::new(std::sync::Barrier::new(2));
            let appliers: Vec<_> = (0..2)
                .map(|_| {
                    let (mirror, runtime, start) = (mirror.clone(), runtime.clone(), start.clone());
                    let (key, name, record) = (key.clone(), name.clone(), record.clone());
                    std::thread::spawn(move || {
                        let _in_runtime = runtime.enter();
                        start.wait();
                        mirror.apply(&key, 1, Some(record));
                        mirror.queues.read().unwrap().contains_key(&name)
                    })
                })
                .collect();
            for a in appliers {
                assert!(
                    a.join().unwrap(),
                    "round {i}: apply returned before {name}'s handle was built"
                );
            }
        }
        for h in mirror.queues.read().unwrap().values() {
            h.mark_deleted();
        }
    }
}
