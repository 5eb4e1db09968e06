//! The JetStream backend: the embedded backend's storage verbs on NATS JetStream, so that
//! several routers pointed at one JetStream share every queue, stream and resource.
//!
//! Mapping (all of it works on nats-server 2.9):
//! - **metadata** (`put_meta`/`delete_meta`/`list_meta`, as the embedded backend's keys)
//!   lives in the KV bucket `{prefix}_meta`. Every instance mirrors the bucket in memory
//!   through a KV watch, so `list_meta` and the queue and stream handles are local reads,
//!   and a change made by another router is seen within milliseconds ([`JetStream::watch_meta`]).
//! - **queues** ([`queues`]): one work-queue stream per queue, ready messages on
//!   `{prefix}.q.{queue}.m.{partition}` and delayed ones on `{prefix}.q.{queue}.d`.
//!   Receivers share durable pull consumers: visibility is the ack wait, changing it is a
//!   nak with delay, the receive count is JetStream's delivery count.
//! - **streams** ([`streams`]): one limits-retention stream per shard, so each shard's
//!   sequence numbers come gap-free from JetStream.
//! - **consumer groups** ([`groups`]): specs, leases and checkpoints in the KV bucket
//!   `{prefix}_groups`; the lease table is only ever changed by revision-checked writes.
//!
//! A publish is acknowledged only once JetStream has acknowledged every delivery
//! ([`JetStream::store`]); the publishes of one call are pipelined, and each is retried
//! under the same `Nats-Msg-Id` so a lost acknowledgement never stores a message twice.

mod codec;
mod groups;
mod queues;
mod records;

pub use codec::check_prefix;
pub use groups::GroupHandle;
pub use queues::QueueHandle;
pub use records::StreamHandle;

use super::{Enqueued, ReceiptError, Stored, now_ms};
use crate::model::Kind;
use async_nats::jetstream;
use async_nats::jetstream::kv;
use bytes::Bytes;
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::broadcast;

/// How long one JetStream API request or publish acknowledgement may take before it is
/// retried or reported as unavailable. A healthy local server answers in well under a
/// millisecond; the margin covers a busy or restarting one.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a publish keeps retrying (under the same message id) before the caller hears
/// that NATS is unavailable. Long enough to ride out a server restart, short enough that a
/// producer is answered (503) well before typical HTTP client timeouts.
pub const PUBLISH_DEADLINE: Duration = Duration::from_secs(10);

/// Repeats of an idempotent API request that found the server unavailable.
const IDEMPOTENT_RETRIES: u32 = 2;

/// How long JetStream remembers the message ids of standard queues and streams: only to
/// absorb a publish retried within [`PUBLISH_DEADLINE`], so twice that. The server keeps
/// every id of the window in memory and checks each publish against them; at 100,000
/// messages a second a longer window holds millions.
const RETRY_DEDUP_WINDOW: Duration = Duration::from_secs(2 * PUBLISH_DEADLINE.as_secs());

/// Pause before recreating a failed metadata watch (the server is likely restarting).
const WATCH_RETRY: Duration = Duration::from_millis(200);

/// Metadata changes buffered per watcher; a watcher that falls further behind is told it
/// lagged and should re-list.
const META_CHANGES_CAPACITY: usize = 1024;

/// Why a JetStream operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsError {
    /// NATS or JetStream cannot be reached, or did not answer in time: nothing the caller
    /// did wrong, retry later (the API answers 503).
    #[error("NATS is unavailable: {0}")]
    Unavailable(String),
    /// The caller asked for something that cannot be (a bad prefix or key).
    #[error("{0}")]
    Invalid(String),
    #[error("{kind} {name:?} does not exist")]
    NotFound { kind: Kind, name: String },
    /// A checkpoint from a member that does not hold the shard's lease.
    #[error("member {member:?} does not hold a lease on shard {shard}")]
    NotHolder { member: String, shard: u32 },
    /// JetStream answered with an error the caller could not have avoided.
    #[error("JetStream refused: {0}")]
    Server(String),
    /// Stored data this backend cannot read.
    #[error("corrupt data: {0}")]
    Corrupt(String),
}

impl From<JsError> for StorageError {
    fn from(e: JsError) -> Self {
        match e {
            JsError::NotFound { kind, name } => StorageError::NotFound { kind, name },
            JsError::Corrupt(what) => StorageError::Corrupt(what),
            JsError::NotHolder { .. } => StorageError::Conflict(e.to_string()),
            JsError::Invalid(what) => StorageError::Refused(what),
            JsError::Unavailable(_) | JsError::Server(_) => {
                StorageError::Unavailable(e.to_string())
            }
        }
    }
}

impl JsError {
    /// Whether the same call may succeed later without any change by the caller.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, JsError::Unavailable(_))
    }
}

impl From<async_nats::RequestError> for JsError {
    fn from(e: async_nats::RequestError) -> Self {
        JsError::Unavailable(e.to_string())
    }
}

impl From<async_nats::SubscribeError> for JsError {
    fn from(e: async_nats::SubscribeError) -> Self {
        JsError::Unavailable(e.to_string())
    }
}

impl From<async_nats::PublishError> for JsError {
    fn from(e: async_nats::PublishError) -> Self {
        JsError::Unavailable(e.to_string())
    }
}

use super::{Delivery, MetaChange, StorageError};

/// A connection to JetStream and this instance's mirror of the metadata.
pub struct JetStream {
    client: async_nats::Client,
    js: jetstream::Context,
    prefix: String,
    meta: kv::Store,
    groups: kv::Store,
    mirror: Arc<Mirror>,
    /// Follows the metadata bucket; stopped when the instance is dropped.
    watcher: tokio::task::JoinHandle<()>,
}

impl Drop for JetStream {
    fn drop(&mut self) {
        self.watcher.abort();
        // Stop the delay pumps, which hold the connection open otherwise.
        let queues = std::mem::take(&mut *self.mirror.queues.write().expect("never poisoned"));
        for q in queues.values() {
            q.mark_deleted();
        }
    }
}

/// The metadata as of the last change seen, and the handles built from it.
pub(crate) struct Mirror {
    /// key -> (revision, value); `None` is a deletion, kept so an older change arriving late
    /// cannot bring a record back.
    entries: RwLock<BTreeMap<String, (u64, Option<Bytes>)>>,
    /// The highest revision the watch delivered: where a recreated watch resumes.
    watched: AtomicU64,
    changes: broadcast::Sender<MetaChange>,
    queues: RwLock<HashMap<String, Arc<QueueHandle>>>,
    streams: RwLock<HashMap<String, Arc<StreamHandle>>>,
    /// What queue handles need to run their delay pumps.
    ctx: queues::PumpContext,
}

impl JetStream {
    /// Connects to `url` (`nats://host:port`) and opens (creating them on first use) the
    /// metadata and group buckets of deployment `prefix`. Routers with the same prefix share
    /// everything; other prefixes are invisible to them.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, JsError> {
        codec::check_prefix(prefix)?;
        let client = async_nats::ConnectOptions::new()
            .name("switchyard")
            .connection_timeout(REQUEST_TIMEOUT)
            .request_timeout(Some(REQUEST_TIMEOUT))
            // Notice a dead server fast, and come back fast once it restarts.
            .ping_interval(Duration::from_secs(5))
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((50 * attempts as u64).min(1000))
            })
            .connect(url)
            .await
            .map_err(|e| JsError::Unavailable(format!("cannot connect to {url}: {e}")))?;
        let js = jetstream::ContextBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            .ack_timeout(REQUEST_TIMEOUT)
            // Publishes wait for room rather than fail when many are in flight.
            .backpressure_on_inflight(true)
            .build(client.clone());
        let meta = open_bucket(&client, &js, &format!("{prefix}_meta"), 1).await?;
        let groups = open_bucket(&client, &js, &format!("{prefix}_groups"), 1).await?;
        let (changes, _) = broadcast::channel(META_CHANGES_CAPACITY);
        let mirror = Arc::new(Mirror {
            entries: RwLock::default(),
            watched: AtomicU64::new(0),
            changes,
            queues: RwLock::default(),
            streams: RwLock::default(),
            ctx: queues::PumpContext {
                client: client.clone(),
                js: js.clone(),
                prefix: prefix.to_string(),
            },
        });
        let watcher = start_watcher(&meta, mirror.clone()).await?;
        Ok(JetStream {
            client,
            js,
            prefix: prefix.to_string(),
            meta,
            groups,
            mirror,
            watcher,
        })
    }

    /// The underlying connection (for health checks and tests).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    // ---- metadata -------------------------------------------------------------------

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

    // ---- the publish path -----------------------------------------------------------

    /// Stores a publish's deliveries: every one is published (pipelined), and this returns
    /// once JetStream has acknowledged all of them. On `Err` some deliveries may be stored
    /// and others not; retrying the call with the same message ids stores none twice
    /// within the duplicate window.
    pub async fn store(&self, items: Vec<Delivery>) -> Result<Vec<Stored>, JsError> {
        let now = now_ms();
        let mut streams: Vec<Arc<StreamHandle>> = items
            .iter()
            .filter_map(|d| match d {
                Delivery::Stream(s, _, _) => Some(s.jetstream().clone()),
                Delivery::Queue(..) => None,
            })
            .collect();
        streams.dedup_by(|a, b| Arc::ptr_eq(a, b));
        let prepared: Vec<Prepared> = items
            .into_iter()
            .map(|d| self.prepare(d, now))
            .collect::<Result<_, _>>()?;
        let deadline = tokio::time::Instant::now() + PUBLISH_DEADLINE;
        let acks =
            futures::future::join_all(prepared.iter().map(|p| self.publish_until(p, deadline)))
                .await;
        let mut out = Vec::with_capacity(prepared.len());
        for (p, ack) in prepared.iter().zip(acks) {
            let ack = ack?;
            out.push(match &p.target {
                Target::Stream { shard } => Stored::Stream {
                    shard: *shard,
                    sequence: ack.sequence,
                },
                Target::Move => unreachable!("store never moves messages"),
                Target::Queue {
                    queue,
                    message_id,
                    dedup,
                } => {
                    if ack.duplicate && *dedup {
                        Stored::Queue(queue.duplicate_of(ack.sequence, message_id).await)
                    } else {
                        // A duplicate of a message id is this very publish, retried.
                        Stored::Queue(Enqueued::Stored)
                    }
                }
            });
        }
        for s in streams {
            s.arrivals.notify_waiters();
        }
        Ok(out)
    }

    fn prepare(&self, d: Delivery, now: u64) -> Result<Prepared, JsError> {
        match d {
            Delivery::Queue(q, m) => Ok(q.into_jetstream().prepare(m, now)),
            Delivery::Stream(s, shard, rec) => s.into_jetstream().prepare(shard, rec),
        }
    }

    /// Publishes one message and waits for its acknowledgement, retrying under the same
    /// message id while NATS is unavailable, until `deadline`.
    async fn publish_until(
        &self,
        p: &Prepared,
        deadline: tokio::time::Instant,
    ) -> Result<jetstream::publish::PublishAck, JsError> {
        let mut backoff = Duration::from_millis(20);
        loop {
            let msg = jetstream::message::PublishMessage::build()
                .payload(p.payload.clone())
                .headers(p.headers.clone())
                .message_id(&p.msg_id);
            let err = match self.js.send_publish(p.subject.clone(), msg).await {
                Ok(ack) => match ack.await {
                    Ok(ack) => return Ok(ack),
                    Err(e) => publish_error(e),
                },
                Err(e) => publish_error(e),
            };
            if !err.is_unavailable() || tokio::time::Instant::now() + backoff >= deadline {
                return Err(err);
            }
            tracing::debug!(subject = %p.subject, error = %err, "publish not acknowledged; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }

    // ---- the JetStream API ----------------------------------------------------------

    /// Creates a JetStream stream or updates it to `config`, starting with the verb that
    /// `exists` suggests. Another router may have created or deleted it meanwhile: then a
    /// refusal switches to the other verb.
    pub(crate) async fn put_js_stream(
        &self,
        stream: &str,
        config: serde_json::Value,
        exists: bool,
    ) -> Result<(), ApiError> {
        let (first, other) = if exists {
            ("UPDATE", "CREATE")
        } else {
            ("CREATE", "UPDATE")
        };
        let request = |op| self.api_idempotent(format!("STREAM.{op}.{stream}"), config.clone());
        match request(first).await {
            Ok(_) => Ok(()),
            Err(_) => request(other).await.map(|_| ()),
        }
    }

    /// An API request whose repetition does no harm (creating or updating with the same
    /// settings): one that timed out on a busy server is repeated as it was.
    pub(crate) async fn api_idempotent(
        &self,
        what: String,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, ApiError> {
        let mut retries = IDEMPOTENT_RETRIES;
        loop {
            match self.api(&what, body.clone()).await {
                Err(ApiError::Other(e)) if e.is_unavailable() && retries > 0 => retries -= 1,
                r => return r,
            }
        }
    }

    /// One JetStream API request (`$JS.API.{what}`), its error mapped: 503 and no answer
    /// mean unavailable, 404 means not found.
    pub(crate) async fn api(
        &self,
        what: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, ApiError> {
        api(&self.client, what, body).await
    }
}

/// A JetStream API answer that is an error, with its code.
#[derive(Debug)]
pub(crate) enum ApiError {
    NotFound(String),
    Other(JsError),
}

impl From<ApiError> for JsError {
    /// For requests about something that must exist: a 404 is the server's problem.
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::NotFound(t) => JsError::Server(t),
            ApiError::Other(e) => e,
        }
    }
}

impl ApiError {
    fn into_js(self, kind: Kind, name: &str) -> JsError {
        match self {
            ApiError::NotFound(_) => JsError::NotFound {
                kind,
                name: name.to_string(),
            },
            ApiError::Other(e) => e,
        }
    }
}

pub(crate) async fn api(
    client: &async_nats::Client,
    what: &str,
    body: serde_json::Value,
) -> Result<serde_json::Value, ApiError> {
    let payload = serde_json::to_vec(&body).expect("JSON values always serialize");
    let reply = tokio::time::timeout(
        REQUEST_TIMEOUT,
        client.request(format!("$JS.API.{what}"), payload.into()),
    )
    .await
    .map_err(|_| ApiError::Other(JsError::Unavailable(format!("{what}: timed out"))))?
    .map_err(|e| ApiError::Other(JsError::Unavailable(format!("{what}: {e}"))))?;
    let v: serde_json::Value = serde_json::from_slice(&reply.payload)
        .map_err(|e| ApiError::Other(JsError::Server(format!("{what}: unreadable answer: {e}"))))?;
    if let Some(err) = v.get("error") {
        let code = err.get("code").and_then(|c| c.as_u64()).unwrap_or(0);
        let text = format!(
            "{what}: {}",
            err.get("description")
                .and_then(|d| d.as_str())
                .unwrap_or("unknown error")
        );
        return Err(match code {
            404 => ApiError::NotFound(text),
            503 => ApiError::Other(JsError::Unavailable(text)),
            _ => ApiError::Other(JsError::Server(text)),
        });
    }
    Ok(v)
}

/// A delivery ready to publish.
struct Prepared {
    subject: String,
    headers: async_nats::HeaderMap,
    payload: Bytes,
    msg_id: String,
    target: Target,
}

enum Target {
    Queue {
        queue: Arc<QueueHandle>,
        message_id: String,
        /// Whether `msg_id` is the caller's deduplication id (else it is the message id).
        dedup: bool,
    },
    Stream {
        shard: u32,
    },
    /// A message moved between queues (dead-lettered, redriven or due after a delay).
    Move,
}

fn publish_error(e: async_nats::jetstream::context::PublishError) -> JsError {
    use async_nats::jetstream::context::PublishErrorKind as K;
    match e.kind() {
        // No responders: JetStream is down or restarting (the router checked the target
        // exists before publishing).
        K::StreamNotFound | K::TimedOut | K::BrokenPipe | K::MaxAckPending => {
            JsError::Unavailable(e.to_string())
        }
        _ => JsError::Server(e.to_string()),
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
/// several routers agree.
async fn open_bucket(
    client: &async_nats::Client,
    js: &jetstream::Context,
    bucket: &str,
    history: i64,
) -> Result<kv::Store, JsError> {
    let stream = format!("KV_{bucket}");
    api(
        client,
        &format!("STREAM.CREATE.{stream}"),
        serde_json::json!({
            "name": stream,
            "subjects": [format!("$KV.{bucket}.>")],
            "retention": "limits",
            "max_msgs_per_subject": history,
            "max_msgs": -1,
            "max_bytes": -1,
            "max_age": 0,
            "max_msg_size": -1,
            "storage": "file",
            "num_replicas": 1,
            "discard": "new",
            "duplicate_window": 120_000_000_000u64,
            "allow_rollup_hdrs": true,
            "deny_delete": true,
            "allow_direct": true,
        }),
    )
    .await
    .map_err(JsError::from)?;
    js.get_key_value(bucket)
        .await
        .map_err(|e| JsError::Unavailable(format!("cannot open bucket {bucket}: {e}")))
}

/// Follows the metadata bucket from its current state on, and returns once the mirror
/// holds that state. If the watch fails (a server restart), it is recreated from the
/// last revision it delivered, so no change is missed.
async fn start_watcher(
    meta: &kv::Store,
    mirror: Arc<Mirror>,
) -> Result<tokio::task::JoinHandle<()>, JsError> {
    let unavailable =
        |e: &dyn std::fmt::Display| JsError::Unavailable(format!("metadata watch: {e}"));
    let last = meta
        .stream
        .get_info()
        .await
        .map_err(|e| unavailable(&e))?
        .state
        .last_sequence;
    let mut watch = meta
        .watch_with_history(">")
        .await
        .map_err(|e| unavailable(&e))?;
    // The initial state: every key's last entry, up to the bucket's last revision.
    while mirror.watched.load(Ordering::Acquire) < last {
        match tokio::time::timeout(REQUEST_TIMEOUT, watch.next()).await {
            Ok(Some(Ok(entry))) => mirror.apply_entry(entry),
            Ok(Some(Err(e))) => return Err(unavailable(&e)),
            Ok(None) | Err(_) => return Err(unavailable(&"ended before the current state")),
        }
    }
    let meta = meta.clone();
    Ok(tokio::spawn(async move {
        loop {
            while let Some(entry) = watch.next().await {
                match entry {
                    Ok(entry) => mirror.apply_entry(entry),
                    Err(e) => {
                        tracing::warn!(error = %e, "metadata watch failed; resuming it");
                        break;
                    }
                }
            }
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

impl Mirror {
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
    /// are new are announced and reflected in the queue and stream handles.
    fn apply(&self, key: &str, revision: u64, value: Option<Bytes>) {
        {
            let mut entries = self.entries.write().expect("never poisoned");
            match entries.get(key) {
                Some((r, _)) if *r >= revision => return,
                _ => {}
            }
            entries.insert(key.to_string(), (revision, value.clone()));
        }
        if let Some(name) = key.strip_prefix(queues::META_QUEUE) {
            self.sync_queue(&codec::name_of_key(name), value.as_ref());
        } else if let Some(name) = key.strip_prefix(records::META_STREAM) {
            self.sync_stream(name, value.as_ref());
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
    }
}
