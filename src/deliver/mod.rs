//! Delivery workers: the consumers of the internal delivery queues behind `http` and
//! `function` subscriptions.
//!
//! A publish stores such a matched delivery in its subscription's delivery queue (an
//! ordinary queue with an internal name), so retries, backoff and crash safety are the
//! queue's mechanics: a failed attempt makes the message invisible until its next retry
//! (`change_visibility`), the receive count is the attempt number, and a restart picks the
//! schedule up where it was. One worker per subscription pulls from its queue, with at most
//! `max_concurrency` requests in flight, so a slow endpoint only slows itself.

pub mod http;
pub mod sources;

use crate::backend::{Backend, NewMessage, Queue, Received, StorageError, now_ms};
use crate::model::{Backoff, DeliveryPolicy};
use crate::model::{DEFAULT_FUNCTION_RETRIES, Endpoint, HttpEndpoint, QueueSpec, SubscriptionSpec};
use crate::router::Router;
use crate::runtime::FunctionRegistry;
use http::{Notification, Outcome};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// How long a worker's receive waits for new deliveries before looking again.
const POLL_WAIT: Duration = Duration::from_secs(20);
/// Most deliveries taken per receive: internal queues are not bound by the API's 10.
const RECEIVE_BATCH: usize = 64;
/// Consecutive failed attempts after which an endpoint is paused, so a dead endpoint
/// does not turn every queued delivery into an immediate failure and a retry write.
const BREAKER_FAILURES: u32 = 5;
/// Longest pause of a failing endpoint; the policy's `min_delay_s` if shorter.
const BREAKER_MAX_PAUSE_MS: u64 = 30_000;
/// Added to an endpoint's timeout for the visibility of a message being delivered, so it
/// only reappears when the worker holding it has died.
const IN_FLIGHT_MARGIN_MS: u64 = 10_000;
/// Most receipts acknowledged with one storage call.
const ACK_BATCH: usize = 256;
/// After a storage error, wait this long before the next receive.
const STORAGE_ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// The internal queue that feeds a subscription's endpoint. User names cannot contain
/// `:`, so this never collides with a queue a user creates.
pub fn delivery_queue_name(topic: &str, subscription: &str) -> String {
    format!("{topic}:{subscription}")
}

/// A delivery queue's stored envelope, which the publish path writes without a
/// subscription so that every delivery queue of a publish stores the same bytes, with
/// `subscription` added as its last member: the envelope a queue subscription of the same
/// publish receives. The stored envelope is a JSON object as serde_json writes it, so it
/// ends with its closing brace.
pub fn with_subscription(envelope: &[u8], subscription: &str) -> Vec<u8> {
    let Some((b'}', members)) = envelope.split_last() else {
        return envelope.to_vec();
    };
    let mut out = Vec::with_capacity(envelope.len() + subscription.len() + 20);
    out.extend_from_slice(members);
    out.extend_from_slice(b",\"subscription\":");
    serde_json::to_writer(&mut out, subscription).expect("strings serialize");
    out.push(b'}');
    out
}

/// Whether a queue is internal (a delivery queue) rather than a user's.
pub fn is_internal(queue: &str) -> bool {
    queue.contains(':')
}

/// Lambda's retry schedule of an asynchronous invocation: two retries, about a minute
/// and two minutes after the failure.
pub fn default_function_policy() -> DeliveryPolicy {
    DeliveryPolicy {
        num_retries: DEFAULT_FUNCTION_RETRIES,
        min_delay_s: 60,
        max_delay_s: 120,
        backoff: Backoff::Exponential,
        ..DeliveryPolicy::default()
    }
}

/// Settings of a delivery queue: kept as long as any queue keeps messages, since the
/// retry policy, not retention, decides when to give up.
fn delivery_queue_spec(attempt_timeout_ms: u64) -> QueueSpec {
    QueueSpec {
        visibility_timeout_s: (attempt_timeout_ms + IN_FLIGHT_MARGIN_MS).div_ceil(1000),
        retention_s: crate::model::MAX_RETENTION_S,
        // Envelopes are larger than the messages they carry.
        max_message_bytes: 2 * crate::model::DEFAULT_MAX_MESSAGE_BYTES,
        ..QueueSpec::default()
    }
}

/// Counters exported on `/metrics`.
#[derive(Default)]
pub struct DeliveryMetrics {
    pub attempts: AtomicU64,
    pub delivered: AtomicU64,
    pub retries: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub dropped: AtomicU64,
}

/// Where a worker delivers.
enum Target {
    Http {
        endpoint: HttpEndpoint,
        raw: bool,
        /// Parsed once: parsing (with IDNA host mapping) per request is measurable at
        /// thousands of deliveries a second. `None` when it does not parse; the request
        /// then fails as it would with the text.
        url: Option<reqwest::Url>,
    },
    Function(String),
}

/// The running workers, one per `http` or `function` subscription.
pub struct Workers {
    backend: Arc<dyn Backend>,
    /// The deployed functions: a function's worker takes deliveries only while its
    /// function is ready, so a compile in progress costs no attempts.
    functions: Arc<FunctionRegistry>,
    /// Set once the router is shared; function workers invoke and publish through it.
    router: OnceLock<Weak<Router>>,
    client: reqwest::Client,
    deny_private: bool,
    pub metrics: Arc<DeliveryMetrics>,
    running: Mutex<HashMap<(String, String), CancellationToken>>,
    shutdown: CancellationToken,
}

impl Workers {
    pub fn new(
        backend: Arc<dyn Backend>,
        functions: Arc<FunctionRegistry>,
        deny_private: bool,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            backend,
            functions,
            router: OnceLock::new(),
            client: http::client(deny_private),
            deny_private,
            metrics: Arc::default(),
            running: Mutex::default(),
            shutdown,
        }
    }

    /// Connects the workers to the router they serve.
    pub fn attach(&self, router: Weak<Router>) {
        let _ = self.router.set(router);
    }

    /// Whether webhooks to private and loopback addresses are refused.
    pub fn denies_private(&self) -> bool {
        self.deny_private
    }

    /// Makes sure the subscription's delivery queue exists and a worker with its current
    /// settings runs (restarting it when they changed).
    pub async fn ensure(
        &self,
        topic: &str,
        sub: &str,
        spec: &SubscriptionSpec,
    ) -> Result<(), StorageError> {
        let router = self.router.get().cloned().unwrap_or_default();
        let (target, attempt_ms, default_policy) = match &spec.endpoint {
            Endpoint::Http(h) => (
                Target::Http {
                    endpoint: h.clone(),
                    raw: spec.raw_message_delivery,
                    url: reqwest::Url::parse(&h.url).ok(),
                },
                h.timeout_ms,
                DeliveryPolicy::default(),
            ),
            Endpoint::Function(f) => {
                let timeout = router
                    .upgrade()
                    .and_then(|r| r.function_spec(f))
                    .map(|s| s.timeout_ms)
                    .unwrap_or(crate::model::MAX_HTTP_TIMEOUT_MS);
                (
                    Target::Function(f.clone()),
                    timeout,
                    default_function_policy(),
                )
            }
            _ => return Ok(()),
        };
        let name = delivery_queue_name(topic, sub);
        let queue = match self.backend.queue(&name) {
            Some(q) => q,
            None => {
                self.backend
                    .put_queue(&name, delivery_queue_spec(attempt_ms))
                    .await?
            }
        };
        // A function runs sandboxed: nothing it does leaves the process except through
        // writes logged after its event, so it may start before the event's sync. A
        // webhook's request leaves at once, so it waits for the disk.
        queue.deliver_before_sync(matches!(target, Target::Function(_)));
        let stop = self.shutdown.child_token();
        if let Some(old) = self
            .running
            .lock()
            .expect("never poisoned")
            .insert((topic.to_string(), sub.to_string()), stop.clone())
        {
            old.cancel();
        }
        let (acks, receipts) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(acknowledge(self.backend.clone(), queue.clone(), receipts));
        let worker = Arc::new(Worker {
            backend: self.backend.clone(),
            functions: self.functions.clone(),
            router,
            queue,
            acks,
            topic: topic.to_string(),
            subscription: sub.to_string(),
            target,
            attempt_ms,
            policy: spec.delivery_policy.clone().unwrap_or(default_policy),
            dead_letter_queue: spec.dead_letter_queue.clone(),
            client: self.client.clone(),
            deny_private: self.deny_private,
            metrics: self.metrics.clone(),
            stop,
            failures_in_a_row: Default::default(),
            paused_until: AtomicU64::new(0),
        });
        tokio::spawn(worker.run());
        Ok(())
    }

    /// Stops the subscription's worker and deletes its delivery queue.
    pub async fn remove(&self, topic: &str, sub: &str) -> Result<(), StorageError> {
        self.stop(topic, sub);
        self.backend
            .delete_queue(&delivery_queue_name(topic, sub))
            .await?;
        Ok(())
    }

    /// Stops the subscription's worker on this router only (another router sharing the
    /// backend removed the subscription and its queue).
    pub fn stop(&self, topic: &str, sub: &str) {
        if let Some(stop) = self
            .running
            .lock()
            .expect("never poisoned")
            .remove(&(topic.to_string(), sub.to_string()))
        {
            stop.cancel();
        }
    }
}

struct Worker {
    backend: Arc<dyn Backend>,
    functions: Arc<FunctionRegistry>,
    router: Weak<Router>,
    queue: Queue,
    /// Receipts of finished deliveries, acknowledged in batches by [`acknowledge`].
    acks: tokio::sync::mpsc::UnboundedSender<String>,
    topic: String,
    subscription: String,
    target: Target,
    /// Longest one attempt may take.
    attempt_ms: u64,
    policy: DeliveryPolicy,
    dead_letter_queue: Option<String>,
    client: reqwest::Client,
    deny_private: bool,
    metrics: Arc<DeliveryMetrics>,
    stop: CancellationToken,
    /// Failed attempts in a row; reset by a success.
    failures_in_a_row: std::sync::atomic::AtomicU32,
    /// While in the future (unix ms), the worker takes no new deliveries.
    paused_until: AtomicU64,
}

impl Worker {
    /// Counts an attempt's outcome for the endpoint's circuit breaker.
    fn note(&self, ok: bool) {
        if ok {
            self.failures_in_a_row.store(0, Ordering::Relaxed);
            return;
        }
        let n = self.failures_in_a_row.fetch_add(1, Ordering::Relaxed) + 1;
        if n >= BREAKER_FAILURES {
            let pause = (self.policy.min_delay_s * 1000).min(BREAKER_MAX_PAUSE_MS);
            self.paused_until
                .fetch_max(now_ms() + pause, Ordering::Relaxed);
        }
    }

    async fn run(self: Arc<Self>) {
        let concurrency = match &self.target {
            Target::Http { endpoint, .. } => endpoint.max_concurrency as usize,
            // The function's own semaphore bounds its instances; this bounds the
            // deliveries held in memory waiting for one.
            Target::Function(_) => crate::model::DEFAULT_HTTP_CONCURRENCY as usize,
        };
        let permits = Arc::new(Semaphore::new(concurrency));
        let visibility_ms = self.attempt_ms + IN_FLIGHT_MARGIN_MS;
        tracing::debug!(topic = %self.topic, subscription = %self.subscription, "delivery worker started");
        loop {
            // A failing endpoint rests before it is tried again.
            let paused = self
                .paused_until
                .load(Ordering::Relaxed)
                .saturating_sub(now_ms());
            if paused > 0 {
                tracing::debug!(topic = %self.topic, subscription = %self.subscription, pause_ms = paused, "endpoint failing; pausing deliveries");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(paused)) => {}
                    _ = self.stop.cancelled() => break,
                }
            }
            // A function still loading (or failed to load) takes nothing: its deliveries
            // wait in the queue, not counted as attempts. A function that does not exist
            // at all is attempted, and the retry policy decides how long to wait for it.
            if let Target::Function(f) = &self.target {
                tokio::select! {
                    _ = self.functions.wait_ready(f) => {}
                    _ = self.stop.cancelled() => break,
                }
            }
            // Take a free slot before receiving, so no message waits invisible in memory
            // while the endpoint is saturated.
            let first = tokio::select! {
                p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                _ = self.stop.cancelled() => break,
            };
            // At saturation each finished attempt frees one slot; letting the attempts that
            // are already done finish first makes one receive (and one storage write) take
            // their slots together instead of one message at a time.
            tokio::task::yield_now().await;
            let n = (1 + permits.available_permits()).min(RECEIVE_BATCH);
            let msgs = match self
                .backend
                .receive(&self.queue, n, visibility_ms, POLL_WAIT, &self.stop)
                .await
            {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(topic = %self.topic, subscription = %self.subscription, error = %e, "delivery queue receive failed");
                    tokio::time::sleep(STORAGE_ERROR_BACKOFF).await;
                    continue;
                }
            };
            if self.queue.is_deleted() {
                break;
            }
            let mut first = Some(first);
            for m in msgs {
                let permit = match first.take() {
                    Some(p) => p,
                    None => permits
                        .clone()
                        .acquire_owned()
                        .await
                        .expect("the semaphore is never closed"),
                };
                let w = self.clone();
                tokio::spawn(async move {
                    w.attempt(m).await;
                    drop(permit);
                });
            }
        }
        tracing::debug!(topic = %self.topic, subscription = %self.subscription, "delivery worker stopped");
    }

    async fn attempt(&self, m: Received) {
        let attempt = m.receive_count;
        let mut n: Notification<'_> = match serde_json::from_slice(&m.payload) {
            Ok(n) => n,
            Err(e) => {
                let reason = format!("stored delivery is unreadable: {e}");
                return self.give_up(&m, &m.payload, &reason).await;
            }
        };
        let full = n.subscription.is_empty().then(|| {
            n.subscription = &self.subscription;
            with_subscription(&m.payload, &self.subscription)
        });
        let envelope = full.as_deref().unwrap_or(&m.payload);
        self.metrics.attempts.fetch_add(1, Ordering::Relaxed);
        let outcome = match &self.target {
            Target::Http { endpoint, raw, url } => {
                let req = http::build(endpoint, *raw, envelope, &n, attempt, now_ms() / 1000);
                http::send(&self.client, endpoint, url.as_ref(), req, self.deny_private).await
            }
            Target::Function(f) => self.invoke(f, &n, &m).await,
        };
        match &outcome {
            Outcome::Delivered => self.note(true),
            Outcome::Retry { .. } => self.note(false),
            // A refusal says nothing about whether the endpoint is up.
            Outcome::Failed { .. } => {}
        }
        match outcome {
            Outcome::Delivered => {
                tracing::debug!(topic = %self.topic, subscription = %self.subscription, message_id = %n.message_id, attempt, "delivered");
                self.metrics.delivered.fetch_add(1, Ordering::Relaxed);
                self.ack(&m).await;
            }
            Outcome::Retry {
                reason,
                retry_after,
            } => {
                let elapsed = Duration::from_millis(now_ms().saturating_sub(m.sent_at));
                match self.policy.next_delay(attempt, elapsed, random_unit()) {
                    Some(delay) => {
                        let delay = delay.max(retry_after.unwrap_or_default());
                        tracing::warn!(topic = %self.topic, subscription = %self.subscription, message_id = %n.message_id, attempt, retry_in_ms = delay.as_millis() as u64, reason = %reason, "delivery failed; will retry");
                        if let Err(e) = self
                            .backend
                            .change_visibility(&self.queue, &m.receipt, delay.as_millis() as u64)
                            .await
                        {
                            tracing::error!(error = %e, "scheduling a retry failed; the message reappears after its visibility timeout");
                        }
                        // Counted once scheduled (stored, with the attempt count), so the
                        // metric never runs ahead of what a restart would find.
                        self.metrics.retries.fetch_add(1, Ordering::Relaxed);
                    }
                    None => {
                        let reason = format!("{reason} (after {attempt} attempts)");
                        self.give_up(&m, envelope, &reason).await
                    }
                }
            }
            Outcome::Failed { reason } => self.give_up(&m, envelope, &reason).await,
        }
    }

    /// One function invocation for a delivery; what it published is published once it
    /// succeeded, and dropped with it when it failed.
    async fn invoke(&self, function: &str, n: &Notification<'_>, m: &Received) -> Outcome {
        let Some(router) = self.router.upgrade() else {
            return Outcome::Retry {
                reason: "the server is shutting down".into(),
                retry_after: None,
            };
        };
        let f = match router.function(function) {
            Ok(f) => f,
            // It may be registered again; the policy decides how long to wait for that.
            Err(e) => {
                return Outcome::Retry {
                    reason: e.to_string(),
                    retry_after: None,
                };
            }
        };
        let event = crate::runtime::Event {
            id: n.message_id.to_string(),
            topic: n.topic.to_string(),
            subscription: n.subscription.to_string(),
            attributes: crate::router::runtime_attributes(
                &serde_json::from_str(n.attributes.get()).unwrap_or_default(),
            ),
            body: crate::runtime::Body::Text(n.message.get().to_string()),
            published_at_ms: m.sent_at,
            receive_count: m.receive_count,
        };
        let inv = f.invoke(event).await;
        for l in &inv.logs {
            tracing::info!(function, message_id = %n.message_id, level = ?l.level, "{}", l.message);
        }
        match inv.outcome {
            Ok(()) => {
                router.publish_from_function(function, inv.published).await;
                Outcome::Delivered
            }
            Err(e) if e.is_retryable() => Outcome::Retry {
                reason: format!("function {function:?} failed: {e}"),
                retry_after: None,
            },
            Err(e) => Outcome::Failed {
                reason: format!("function {function:?} failed: {e}"),
            },
        }
    }

    /// The last attempt failed: to the dead-letter queue with the reason and the attempt
    /// count, or dropped with an error log when the subscription has none. `envelope` is
    /// what the dead-letter queue receives: the delivery's envelope, subscription included.
    async fn give_up(&self, m: &Received, envelope: &[u8], reason: &str) {
        let attempts = m.receive_count;
        let dlq = self
            .dead_letter_queue
            .as_deref()
            .and_then(|q| self.backend.queue(q));
        match dlq {
            Some(dlq) => {
                let attributes = serde_json::json!({
                    "ErrorCode": {"Type": "String", "Value": "DeliveryFailed"},
                    "ErrorMessage": {"Type": "String", "Value": reason},
                    "Attempts": {"Type": "Number", "Value": attempts.to_string()},
                    "Subscription": {"Type": "String", "Value": format!("{}/{}", self.topic, self.subscription)},
                });
                let stored = self
                    .backend
                    .enqueue(vec![(
                        dlq,
                        NewMessage {
                            message_id: m.message_id.clone(),
                            payload: envelope.to_vec(),
                            attributes: serde_json::to_vec(&attributes)
                                .expect("JSON values serialize"),
                            delay_ms: 0,
                            group: None,
                            dedup_id: None,
                        },
                    )])
                    .await;
                if let Err(e) = stored {
                    // Keep the delivery: it reappears and is given up on again.
                    tracing::error!(error = %e, "storing a dead letter failed");
                    return;
                }
                tracing::warn!(topic = %self.topic, subscription = %self.subscription, message_id = %m.message_id, attempts, reason, "delivery given up; moved to the dead-letter queue");
                self.metrics.dead_lettered.fetch_add(1, Ordering::Relaxed);
            }
            None => {
                tracing::error!(topic = %self.topic, subscription = %self.subscription, message_id = %m.message_id, attempts, reason, "delivery given up and dropped: the subscription has no dead-letter queue");
                self.metrics.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.ack(m).await;
    }

    async fn ack(&self, m: &Received) {
        // Closed only once this worker is gone, and a worker with attempts is not.
        let _ = self.acks.send(m.receipt.clone());
    }
}

/// Acknowledges a worker's finished deliveries: whatever piled up while the previous batch
/// was stored goes in one call, so the queue's lock and the committer are taken once per
/// batch instead of once per delivery. Ends when the worker and its attempts are gone,
/// after the last receipts.
async fn acknowledge(
    backend: Arc<dyn Backend>,
    queue: Queue,
    mut receipts: tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let mut batch = Vec::with_capacity(ACK_BATCH);
    while receipts.recv_many(&mut batch, ACK_BATCH).await > 0 {
        if let Err(e) = backend.ack(&queue, &batch).await {
            tracing::error!(error = %e, count = batch.len(), "acknowledging deliveries failed; they will be delivered again");
        }
        batch.clear();
    }
}

/// A uniform draw in [0, 1) for retry jitter.
fn random_unit() -> f64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

/// A fresh signing secret: 32 random bytes, hex-encoded.
pub fn new_secret() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the OS random source is available");
    crate::hex(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn only_function_deliveries_are_handed_out_before_the_sync() {
        let dir = tempfile::tempdir().unwrap();
        let backend: Arc<dyn Backend> =
            Arc::new(crate::backend::Embedded::open(dir.path()).unwrap());
        let stop = CancellationToken::new();
        let workers = Workers::new(backend.clone(), Arc::default(), false, stop.clone());
        let subscriptions = [
            (
                "hook",
                json!({"http": {"url": "http://127.0.0.1:9/"}}),
                false,
            ),
            ("fn", json!({"function": "f"}), true),
        ];
        for (sub, endpoint, early) in subscriptions {
            let spec: SubscriptionSpec =
                serde_json::from_value(json!({ "endpoint": endpoint })).unwrap();
            workers.ensure("t", sub, &spec).await.unwrap();
            let q = backend.queue(&delivery_queue_name("t", sub)).unwrap();
            // A webhook's request cannot be taken back once sent: it waits for the disk.
            assert_eq!(q.delivers_before_sync(), early, "{sub}");
        }
        stop.cancel();
    }
}
