//! The JetStream backend: the embedded backend's storage verbs on NATS JetStream, so that
//! several routers pointed at one JetStream share every queue, stream and resource.
//!
//! Mapping (all of it works on nats-server 2.9):
//! - **metadata** (`put_meta`/`delete_meta`/`list_meta`, as the embedded backend's keys)
//!   lives in the KV bucket `{prefix}_meta` (`meta`). Every instance mirrors the bucket in
//!   memory through a KV watch, so `list_meta` and the queue and stream handles are local
//!   reads, and a change made by another router is seen within milliseconds
//!   ([`JetStream::watch_meta`]).
//! - **queues** (`queues`): one work-queue stream per queue, ready messages on
//!   `{prefix}.q.{queue}.m.{partition}` and delayed ones on `{prefix}.q.{queue}.d`.
//!   Receivers share durable pull consumers: visibility is the ack wait, changing it is a
//!   nak with delay, the receive count is JetStream's delivery count.
//! - **streams** (`records`): one limits-retention stream per shard, so each shard's
//!   sequence numbers come gap-free from JetStream.
//! - **consumer groups** (`groups`): specs, leases and checkpoints in the KV bucket
//!   `{prefix}_groups`; the lease table is only ever changed by revision-checked writes.
//!
//! A publish is acknowledged only once JetStream has acknowledged every delivery
//! ([`JetStream::store`], `store`); the publishes of one call are pipelined, and each is retried
//! under the same `Nats-Msg-Id` so a lost acknowledgement never stores a message twice.

mod codec;
mod groups;
mod meta;
mod queues;
mod records;
mod store;

pub use codec::check_prefix;
pub use queues::QueueHandle;
pub use records::StreamHandle;

use super::ReceiptError;
use crate::model::Kind;
use async_nats::jetstream;
use async_nats::jetstream::kv;
use meta::{Mirror, open_bucket, start_watcher};
use std::sync::Arc;
use std::time::Duration;

/// How long one JetStream API request or publish acknowledgement may take before it is
/// retried or reported as unavailable. A healthy local server answers in well under a
/// millisecond; the margin covers a busy or restarting one.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a publish keeps retrying (under the same message id) before the caller hears
/// that NATS is unavailable. Long enough to ride out a server restart, short enough that a
/// producer is answered (503) well before typical HTTP client timeouts.
pub const PUBLISH_DEADLINE: Duration = Duration::from_secs(10);

/// How long an idempotent API request is repeated while the server does not answer in
/// time: a loaded machine can hold a stream's creation up for seconds.
const IDEMPOTENT_DEADLINE: Duration = PUBLISH_DEADLINE;

/// How long JetStream remembers the message ids of standard queues and streams: only to
/// absorb a publish retried within [`PUBLISH_DEADLINE`], so twice that. The server keeps
/// every id of the window in memory and checks each publish against them; at 100,000
/// messages a second a longer window holds millions.
const RETRY_DEDUP_WINDOW: Duration = Duration::from_secs(2 * PUBLISH_DEADLINE.as_secs());

/// Pause before recreating a failed metadata watch (the server is likely restarting).
const WATCH_RETRY: Duration = Duration::from_millis(200);

/// How often a metadata watch is checked against the bucket: one that is behind and has
/// not moved since the last check is recreated, so a change made on another router is
/// seen within two checks even when the watch's own recovery hangs.
const WATCH_CHECK: Duration = Duration::from_secs(2);

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

use super::StorageError;

/// A connection to JetStream and this instance's mirror of the metadata.
pub struct JetStream {
    client: async_nats::Client,
    js: jetstream::Context,
    prefix: String,
    /// On how many servers every stream and consumer is kept.
    replicas: usize,
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

impl JetStream {
    /// Connects to `servers` (`nats://host:port`, or several of one cluster separated by
    /// commas: any that answers will do, and the client moves to another when its server
    /// dies) and opens (creating them on first use) the metadata and group buckets of
    /// deployment `prefix`. Routers with the same prefix share everything; other prefixes
    /// are invisible to them. Every stream Switchyard makes, and every consumer on it, is
    /// kept on `replicas` servers; what an earlier start made with another count is
    /// brought to it here.
    pub async fn connect(servers: &str, prefix: &str, replicas: usize) -> Result<Self, JsError> {
        codec::check_prefix(prefix)?;
        check_replicas(replicas)?;
        let addrs = servers
            .split(',')
            .map(|s| {
                s.trim()
                    .parse::<async_nats::ServerAddr>()
                    .map_err(|e| JsError::Invalid(format!("{s:?} is not a NATS address: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let client = async_nats::ConnectOptions::new()
            .name("switchyard")
            .connection_timeout(REQUEST_TIMEOUT)
            .request_timeout(Some(REQUEST_TIMEOUT))
            // Notice a dead server fast, and come back fast once it restarts.
            .ping_interval(Duration::from_secs(5))
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((50 * attempts as u64).min(1000))
            })
            .connect(addrs.as_slice())
            .await
            .map_err(|e| JsError::Unavailable(format!("cannot connect to {servers}: {e}")))?;
        let js = jetstream::ContextBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            .ack_timeout(REQUEST_TIMEOUT)
            // Publishes wait for room rather than fail when many are in flight.
            .backpressure_on_inflight(true)
            .build(client.clone());
        let too_few = |e: JsError| match e {
            JsError::Server(why) if replicas > 1 => JsError::Invalid(format!(
                "cannot keep {replicas} replicas (--nats-replicas {replicas}): {why}; \
                 it needs a NATS cluster of at least {replicas} JetStream servers"
            )),
            e => e,
        };
        let meta = open_bucket(&client, &js, &format!("{prefix}_meta"), 1, replicas)
            .await
            .map_err(too_few)?;
        let groups = open_bucket(&client, &js, &format!("{prefix}_groups"), 1, replicas)
            .await
            .map_err(too_few)?;
        scale_streams(&client, prefix, replicas)
            .await
            .map_err(too_few)?;
        let mirror = Arc::new(Mirror::new(client.clone(), js.clone(), prefix));
        let watcher = start_watcher(&meta, mirror.clone()).await?;
        Ok(JetStream {
            client,
            js,
            prefix: prefix.to_string(),
            replicas,
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

    /// Creates a JetStream stream or updates it to `config` ([`put_js_stream`]).
    pub(crate) async fn put_js_stream(
        &self,
        stream: &str,
        config: serde_json::Value,
        exists: bool,
    ) -> Result<(), ApiError> {
        put_js_stream(&self.client, stream, config, exists).await
    }

    /// An API request whose repetition does no harm ([`api_idempotent`]).
    pub(crate) async fn api_idempotent(
        &self,
        what: String,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, ApiError> {
        api_idempotent(&self.client, what, body).await
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

/// Creates a JetStream stream or updates it to `config`, starting with the verb that
/// `exists` suggests. Another router may have created or deleted it meanwhile (or it
/// exists with other settings, such as another replica count): then a refusal switches
/// to the other verb.
pub(crate) async fn put_js_stream(
    client: &async_nats::Client,
    stream: &str,
    config: serde_json::Value,
    exists: bool,
) -> Result<(), ApiError> {
    let (first, other) = if exists {
        ("UPDATE", "CREATE")
    } else {
        ("CREATE", "UPDATE")
    };
    let request = |op| api_idempotent(client, format!("STREAM.{op}.{stream}"), config.clone());
    match request(first).await {
        Ok(_) => Ok(()),
        Err(first_error) => match request(other).await {
            Ok(_) => Ok(()),
            // Not there to update: why the create failed is the answer, not the 404.
            Err(ApiError::NotFound(_)) if !exists => Err(first_error),
            Err(e) => Err(e),
        },
    }
}

/// An API request whose repetition does no harm (creating or updating with the same
/// settings): one that timed out on a busy server is repeated as it was.
pub(crate) async fn api_idempotent(
    client: &async_nats::Client,
    what: String,
    body: serde_json::Value,
) -> Result<serde_json::Value, ApiError> {
    let deadline = tokio::time::Instant::now() + IDEMPOTENT_DEADLINE;
    let mut pause = Duration::from_millis(50);
    loop {
        match api(client, &what, body.clone()).await {
            Err(ApiError::Other(e))
                if e.is_unavailable() && tokio::time::Instant::now() + pause < deadline =>
            {
                tracing::debug!(request = %what, error = %e, "JetStream API did not answer; repeating");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            r => return r,
        }
    }
}

/// JetStream keeps a stream on at most five servers.
pub const MAX_REPLICAS: usize = 5;

/// Checks a replica count: 1 (one server holds each stream) to [`MAX_REPLICAS`].
pub fn check_replicas(replicas: usize) -> Result<(), JsError> {
    if (1..=MAX_REPLICAS).contains(&replicas) {
        Ok(())
    } else {
        Err(JsError::Invalid(format!(
            "{replicas} replicas: JetStream keeps a stream on 1 to {MAX_REPLICAS} servers"
        )))
    }
}

/// Brings every queue and stream shard of deployment `prefix` to `replicas` servers, so
/// that raising the count for a running deployment covers what it already holds. The
/// streams are found by their subjects (all under `{prefix}.`), a page of them per
/// request; their consumers follow the stream.
async fn scale_streams(
    client: &async_nats::Client,
    prefix: &str,
    replicas: usize,
) -> Result<(), JsError> {
    let mut offset = 0;
    loop {
        let page = api(
            client,
            "STREAM.LIST",
            serde_json::json!({ "offset": offset, "subject": format!("{prefix}.>") }),
        )
        .await?;
        let streams = page["streams"].as_array().cloned().unwrap_or_default();
        for info in &streams {
            let mut config = info["config"].clone();
            if config["num_replicas"].as_u64() == Some(replicas as u64) {
                continue;
            }
            let Some(name) = config["name"].as_str().map(str::to_string) else {
                continue;
            };
            config["num_replicas"] = replicas.into();
            tracing::info!(stream = %name, replicas, "bringing a stream to the replica count");
            api(client, &format!("STREAM.UPDATE.{name}"), config).await?;
        }
        offset += streams.len();
        let total = page["total"].as_u64().unwrap_or(0) as usize;
        if streams.is_empty() || offset >= total {
            return Ok(());
        }
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
