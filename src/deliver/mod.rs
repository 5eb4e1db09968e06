//! Delivery workers: the consumers of the internal delivery queues behind `http` and
//! `function` subscriptions, and of each function's queue of asynchronous invocations.
//!
//! A publish stores such a matched delivery in its subscription's delivery queue (an
//! ordinary queue with an internal name), so retries, backoff and crash safety are the
//! queue's mechanics: a failed attempt makes the message invisible until its next retry
//! (`change_visibility`), the receive count is the attempt number, and a restart picks the
//! schedule up where it was. One worker per subscription pulls from its queue, with at most
//! `max_concurrency` requests in flight, so a slow endpoint only slows itself.

mod event;
pub mod http;
pub mod sources;
mod worker;

pub use event::{REGION_ATTRIBUTE, runtime_attributes};
pub use sources::{Feed, FeedError, GroupFeed, QueueFeed, SourceParts, SourceReading, Sources};

use crate::backend::{Backend, Queue, QueueKind, StorageError};
use crate::model::{
    Backoff, DEFAULT_FUNCTION_RETRIES, DeliveryPolicy, Destination, Endpoint, FunctionSpec,
    HttpEndpoint, Notification, QueueSpec, SubscriptionSpec, arn,
};
use crate::runtime::{FunctionRegistry, Publish};
use crate::telemetry::Telemetry;
use http::Outcome;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use worker::Worker;

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

/// The internal queue of a function's asynchronous (`Event`) invocations, kept like a
/// subscription's delivery queue. A delivery queue's name holds one `:` between two names
/// that cannot contain one; this one holds two, so no subscription's queue is named so.
pub fn event_queue_name(function: &str) -> String {
    format!("function:{function}:events")
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
    /// Batches a queue or stream source handed to its function, counted once their
    /// outcome is recorded (acknowledged or checkpointed).
    pub source_batches: AtomicU64,
    /// Of those, the batches in which the function failed for at least one event, which
    /// is read again.
    pub source_failures: AtomicU64,
}

/// Where a function's publishes go once its invocation succeeded: the publish pipeline,
/// which workers and sources are given at construction.
#[async_trait::async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Publishes what `function` published; a publish that is refused is logged, since
    /// the invocation itself succeeded and is not repeated.
    async fn publish(&self, function: &str, published: Vec<Publish>);

    /// Publishes `message` (JSON text) to `topic`, answering once it is stored: what a
    /// stream source gives up goes there before the source checkpoints past it.
    async fn publish_json(&self, topic: &str, message: String) -> Result<(), FeedError>;
}

/// Sends `message` (JSON text) to a function's destination, answering once it is stored.
async fn send_to(
    to: &Destination,
    message: String,
    queues: &dyn QueueFeed,
    outbox: &dyn Outbox,
) -> Result<(), FeedError> {
    match to {
        Destination::Queue { queue } => queues.send_json(queue, message).await,
        Destination::Topic { topic } => outbox.publish_json(topic, message).await,
    }
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
        /// The ARNs an SNS notification names, when the subscription asks for SNS's form.
        sns: Option<Box<http::SnsArns>>,
    },
    Function(String),
    /// A function's asynchronous invocations: each stored message is an invocation's
    /// payload.
    Event(Box<Asynchronous>),
}

impl Target {
    /// The function it invokes.
    fn function(&self) -> Option<&str> {
        match self {
            Target::Http { .. } => None,
            Target::Function(f) => Some(f),
            Target::Event(a) => Some(&a.function),
        }
    }
}

/// A function's asynchronous invocations, as its spec has them handled.
struct Asynchronous {
    function: String,
    /// Oldest an invocation may be when it is tried.
    max_age_ms: u64,
    /// Where the record of an invocation that succeeded goes.
    on_success: Option<Destination>,
    /// Where the record of an invocation given up goes.
    on_failure: Option<Destination>,
}

/// The running workers, one per `http` or `function` subscription.
pub struct Workers {
    backend: Arc<Backend>,
    /// The deployed functions: a function's worker takes deliveries only while its
    /// function is ready, so a compile in progress costs no attempts.
    functions: Arc<FunctionRegistry>,
    /// Where function workers publish what their invocations published.
    outbox: Arc<dyn Outbox>,
    /// Where an asynchronous invocation's destination queue is sent its record.
    queues: Arc<dyn QueueFeed>,
    client: reqwest::Client,
    deny_private: bool,
    pub metrics: Arc<DeliveryMetrics>,
    /// Where each subscription's deliveries are counted.
    telemetry: Arc<Telemetry>,
    /// The running workers, by the name of the queue they take from.
    running: Mutex<HashMap<String, CancellationToken>>,
    /// Held while a function's queue of asynchronous invocations is made, so that two
    /// first invocations at once make one queue, not two of which one is lost.
    making_events: tokio::sync::Mutex<()>,
    shutdown: CancellationToken,
}

/// What the workers are built from: the storage they take deliveries from, and what
/// they deliver through.
pub struct WorkerParts {
    pub backend: Arc<Backend>,
    pub functions: Arc<FunctionRegistry>,
    pub outbox: Arc<dyn Outbox>,
    pub queues: Arc<dyn QueueFeed>,
    /// Refuse webhooks to private and loopback addresses.
    pub deny_private: bool,
    pub lookup: Arc<dyn http::Lookup>,
    pub telemetry: Arc<Telemetry>,
}

impl Workers {
    pub fn new(parts: WorkerParts, shutdown: CancellationToken) -> Self {
        let WorkerParts {
            backend,
            functions,
            outbox,
            queues,
            deny_private,
            lookup,
            telemetry,
        } = parts;
        Self {
            backend,
            functions,
            outbox,
            queues,
            client: http::client(deny_private, lookup),
            deny_private,
            metrics: Arc::default(),
            telemetry,
            running: Mutex::default(),
            making_events: tokio::sync::Mutex::default(),
            shutdown,
        }
    }

    /// Whether webhooks to private and loopback addresses are refused.
    pub fn denies_private(&self) -> bool {
        self.deny_private
    }

    /// Makes sure the subscription's delivery queue exists and a worker with its current
    /// settings runs (restarting it when they changed). `function_timeout_ms` is the
    /// timeout of the function a `function` subscription invokes, when it exists.
    pub async fn ensure(
        &self,
        topic: &str,
        sub: &str,
        spec: &SubscriptionSpec,
        function_timeout_ms: Option<u64>,
    ) -> Result<(), StorageError> {
        let (target, attempt_ms, default_policy) = match &spec.endpoint {
            Endpoint::Http(h) => (
                Target::Http {
                    endpoint: h.clone(),
                    raw: spec.raw_message_delivery,
                    url: reqwest::Url::parse(&h.url).ok(),
                    sns: match &spec.notification {
                        Notification::Sns { region, base_url } => {
                            let subscription = arn::subscription_arn(region, topic, sub);
                            Some(Box::new(http::SnsArns {
                                topic: arn::topic_arn(region, topic),
                                unsubscribe_url: base_url
                                    .as_deref()
                                    .map(|base| crate::model::unsubscribe_url(base, &subscription)),
                                subscription,
                            }))
                        }
                        Notification::Switchyard => None,
                    },
                },
                h.timeout_ms,
                DeliveryPolicy::default(),
            ),
            Endpoint::Function(f) => (
                Target::Function(f.clone()),
                function_timeout_ms.unwrap_or(crate::model::MAX_HTTP_TIMEOUT_MS),
                default_function_policy(),
            ),
            _ => return Ok(()),
        };
        let name = delivery_queue_name(topic, sub);
        let queue = self.delivery_queue(&name, attempt_ms).await?;
        self.start(Worker {
            topic: topic.to_string(),
            subscription: sub.to_string(),
            policy: spec.delivery_policy.clone().unwrap_or(default_policy),
            dead_letter_queue: spec.dead_letter_queue.clone(),
            meter: self.telemetry.topics.get(topic).subscriptions.get(sub),
            ..self.worker(queue, target, attempt_ms)
        });
        Ok(())
    }

    /// The queue of `function`'s asynchronous invocations, made on its first use, with a
    /// worker taking from it as `spec` says.
    pub async fn event_queue(
        &self,
        function: &str,
        spec: &FunctionSpec,
    ) -> Result<Queue, StorageError> {
        if let Some(queue) = self.running_event_queue(function) {
            return Ok(queue);
        }
        let _one_at_a_time = self.making_events.lock().await;
        if let Some(queue) = self.running_event_queue(function) {
            return Ok(queue);
        }
        let queue = self
            .delivery_queue(&event_queue_name(function), spec.timeout_ms)
            .await?;
        self.start_events(function, queue.clone(), spec);
        Ok(queue)
    }

    /// The queue of `function`'s asynchronous invocations, when it exists and a worker
    /// takes from it.
    pub fn running_event_queue(&self, function: &str) -> Option<Queue> {
        let name = event_queue_name(function);
        let queue = self.backend.queue(&name)?;
        let running = self.running.lock().expect("never poisoned");
        running.contains_key(&name).then_some(queue)
    }

    /// (Re)starts the worker of `function`'s asynchronous invocations with its current
    /// `spec`, when it has a queue of them: invocations accepted before a restart, or
    /// before the function changed, run.
    pub fn resume_events(&self, function: &str, spec: &FunctionSpec) {
        if let Some(queue) = self.backend.queue(&event_queue_name(function)) {
            self.start_events(function, queue, spec);
        }
    }

    fn start_events(&self, function: &str, queue: Queue, spec: &FunctionSpec) {
        let meter = self.telemetry.functions.get(function).events.clone();
        let a = spec.asynchronous.clone().unwrap_or_default();
        let target = Target::Event(Box::new(Asynchronous {
            function: function.to_string(),
            max_age_ms: a.max_event_age_s * 1000,
            on_success: a.on_success,
            on_failure: a.on_failure,
        }));
        self.start(Worker {
            // What its log lines name: the queue, which names the function.
            subscription: queue.name().to_string(),
            meter,
            policy: DeliveryPolicy {
                num_retries: a.max_retries,
                max_total_s: a.max_event_age_s,
                ..default_function_policy()
            },
            ..self.worker(queue, target, spec.timeout_ms)
        });
    }

    /// Stops the worker of `function`'s asynchronous invocations and deletes those not
    /// run yet (the function is deleted).
    pub async fn remove_events(&self, function: &str) -> Result<(), StorageError> {
        let name = event_queue_name(function);
        self.stop_queue(&name);
        self.backend.delete_queue(&name).await?;
        Ok(())
    }

    /// Stops the worker of `function`'s asynchronous invocations on this router only
    /// (another router sharing the backend deleted the function and its queue).
    pub fn stop_events(&self, function: &str) {
        self.stop_queue(&event_queue_name(function));
    }

    /// The delivery queue `name`, made if it does not exist.
    async fn delivery_queue(&self, name: &str, attempt_ms: u64) -> Result<Queue, StorageError> {
        match self.backend.queue(name) {
            Some(q) => Ok(q),
            None => {
                self.backend
                    .put_queue(name, delivery_queue_spec(attempt_ms), QueueKind::Delivery)
                    .await
            }
        }
    }

    /// A worker for `queue` with the settings of a function or webhook subscription
    /// without a policy, dead-letter queue or meter of its own.
    fn worker(&self, queue: Queue, target: Target, attempt_ms: u64) -> Worker {
        let (acks, receipts) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(worker::acknowledge(
            self.backend.clone(),
            queue.clone(),
            receipts,
        ));
        Worker {
            backend: self.backend.clone(),
            functions: self.functions.clone(),
            outbox: self.outbox.clone(),
            queues: self.queues.clone(),
            queue,
            acks,
            topic: String::new(),
            subscription: String::new(),
            target,
            attempt_ms,
            policy: default_function_policy(),
            dead_letter_queue: None,
            client: self.client.clone(),
            deny_private: self.deny_private,
            metrics: self.metrics.clone(),
            meter: Arc::default(),
            telemetry: self.telemetry.clone(),
            stop: self.shutdown.child_token(),
            failures_in_a_row: Default::default(),
            paused_until: AtomicU64::new(0),
        }
    }

    /// Runs `worker` in place of the one its queue had.
    fn start(&self, worker: Worker) {
        // A function runs sandboxed: nothing it does leaves the process except through
        // writes logged after its event, so it may start before the event's sync. A
        // webhook's request leaves at once, so it waits for the disk.
        worker
            .queue
            .deliver_before_sync(!matches!(worker.target, Target::Http { .. }));
        if let Some(old) = self
            .running
            .lock()
            .expect("never poisoned")
            .insert(worker.queue.name().to_string(), worker.stop.clone())
        {
            old.cancel();
        }
        tokio::spawn(Arc::new(worker).run());
    }

    /// Sends one request to an http endpoint in the background (SNS's subscription
    /// confirmation), retrying a failure that is worth it three times, a second, then
    /// two, then four apart; it is not stored, since the subscriber can ask again by
    /// subscribing again.
    pub fn send_once(&self, endpoint: HttpEndpoint, headers: Vec<(String, String)>, body: Vec<u8>) {
        let client = self.client.clone();
        let deny_private = self.deny_private;
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let url = reqwest::Url::parse(&endpoint.url).ok();
            for attempt in 0..4u32 {
                let mut map = reqwest::header::HeaderMap::new();
                for (k, v) in &headers {
                    http::put_header(&mut map, k, v);
                }
                let request = http::Request {
                    headers: map,
                    body: body.clone(),
                };
                match http::send(&client, &endpoint, url.as_ref(), request, deny_private).await {
                    Outcome::Delivered => return,
                    Outcome::Failed { reason } => {
                        tracing::warn!(url = %endpoint.url, %reason, "request refused; not sent again");
                        return;
                    }
                    Outcome::Retry { reason, .. } => {
                        tracing::warn!(url = %endpoint.url, %reason, attempt, "request failed");
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1 << attempt)) => {}
                    () = shutdown.cancelled() => return,
                }
            }
        });
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
        self.stop_queue(&delivery_queue_name(topic, sub));
    }

    fn stop_queue(&self, queue: &str) {
        if let Some(stop) = self.running.lock().expect("never poisoned").remove(queue) {
            stop.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Discard;
    #[async_trait::async_trait]
    impl Outbox for Discard {
        async fn publish(&self, _: &str, _: Vec<Publish>) {}
        async fn publish_json(&self, _: &str, _: String) -> Result<(), FeedError> {
            Ok(())
        }
    }

    /// Workers over an embedded store in `dir`, stopped by the token.
    fn workers_in(dir: &tempfile::TempDir) -> (Arc<Backend>, CancellationToken, Workers) {
        let backend = Arc::new(Backend::Embedded(
            crate::backend::Embedded::open(dir.path()).unwrap(),
        ));
        let stop = CancellationToken::new();
        let queues = Arc::new(Recording::default());
        let workers = Workers::new(parts(backend.clone(), queues), stop.clone());
        (backend, stop, workers)
    }

    /// Parts of workers over `backend` that send to `queues` and publish nowhere.
    fn parts(backend: Arc<Backend>, queues: Arc<dyn QueueFeed>) -> WorkerParts {
        WorkerParts {
            backend,
            functions: Arc::default(),
            outbox: Arc::new(Discard),
            queues,
            deny_private: false,
            lookup: Arc::new(http::SystemLookup),
            telemetry: Arc::default(),
        }
    }

    #[tokio::test]
    async fn two_first_asynchronous_invocations_at_once_share_one_queue() {
        let dir = tempfile::tempdir().unwrap();
        let (backend, stop, workers) = workers_in(&dir);
        let spec: FunctionSpec = serde_json::from_value(json!({"module": "f.wasm"})).unwrap();
        let (a, b) = tokio::join!(
            workers.event_queue("f", &spec),
            workers.event_queue("f", &spec)
        );
        let message = |id: &str| crate::backend::NewMessage {
            message_id: id.into(),
            payload: b"{}".to_vec(),
            attributes: Vec::new(),
            delay_ms: 0,
            group: None,
            dedup_id: None,
        };
        backend
            .enqueue(vec![(a.unwrap(), message("a")), (b.unwrap(), message("b"))])
            .await
            .unwrap();
        let queue = backend.queue(&event_queue_name("f")).unwrap();
        let c = backend.counts(&queue).await.unwrap();
        // Both are in the queue the function's worker takes from.
        assert_eq!(c.visible + c.in_flight + c.delayed, 2, "{c:?}");
        stop.cancel();
    }

    /// Queues that keep what is sent to them, and say when something was.
    #[derive(Default)]
    struct Recording {
        sent: Mutex<Vec<(String, serde_json::Value)>>,
        arrived: tokio::sync::Notify,
    }
    #[async_trait::async_trait]
    impl QueueFeed for Recording {
        async fn receive(
            &self,
            _: &str,
            _: usize,
            _: Duration,
            _: &CancellationToken,
        ) -> Result<Vec<crate::backend::Received>, FeedError> {
            Ok(Vec::new())
        }
        async fn ack(&self, _: &str, _: &[String]) -> Result<(), FeedError> {
            Ok(())
        }
        async fn send_json(&self, queue: &str, message: String) -> Result<(), FeedError> {
            let record = serde_json::from_str(&message)?;
            self.sent.lock().unwrap().push((queue.into(), record));
            self.arrived.notify_one();
            Ok(())
        }
    }

    #[tokio::test]
    async fn an_invocation_older_than_its_function_allows_is_given_up_to_its_destination() {
        let dir = tempfile::tempdir().unwrap();
        let clock = crate::time::Clock::manual(1_000_000);
        let backend = Arc::new(Backend::Embedded(
            crate::backend::Embedded::open_with_clock(dir.path(), clock.clone()).unwrap(),
        ));
        let stop = CancellationToken::new();
        let recording = Arc::new(Recording::default());
        let telemetry = Arc::new(Telemetry::default());
        let workers = Workers::new(
            WorkerParts {
                telemetry: telemetry.clone(),
                ..parts(backend.clone(), recording.clone())
            },
            stop.clone(),
        );
        let spec: FunctionSpec = serde_json::from_value(json!({
            "module": "f.wasm",
            "asynchronous": {"max_event_age_s": 60, "on_failure": {"queue": "failed"}},
        }))
        .unwrap();
        // Stored, and a minute and a second old, before its worker starts.
        let queue = workers
            .delivery_queue(&event_queue_name("f"), 1000)
            .await
            .unwrap();
        let attributes = json!({REGION_ATTRIBUTE: {"Type": "String", "Value": "eu-west-1"}});
        let message = crate::backend::NewMessage {
            message_id: "inv-1".into(),
            payload: br#"{"order": 7}"#.to_vec(),
            attributes: serde_json::to_vec(&attributes).unwrap(),
            delay_ms: 0,
            group: None,
            dedup_id: None,
        };
        backend.enqueue(vec![(queue, message)]).await.unwrap();
        clock.advance(Duration::from_secs(61));
        workers.resume_events("f", &spec);
        tokio::time::timeout(Duration::from_secs(30), recording.arrived.notified())
            .await
            .expect("the record reaches the on-failure destination");
        let sent = recording.sent.lock().unwrap().clone();
        let [(queue, record)] = sent.as_slice() else {
            panic!("one record, got {sent:?}");
        };
        assert_eq!(queue, "failed");
        assert_eq!(record["version"], "1.0");
        assert_eq!(
            record["requestContext"],
            json!({
                "requestId": "inv-1",
                "functionArn": "arn:aws:lambda:eu-west-1:000000000000:function:f:$LATEST",
                "condition": "EventAgeExceeded",
                "approximateInvokeCount": 0,
            })
        );
        assert_eq!(record["requestPayload"], json!({"order": 7}));
        // It never ran, so there is no response to tell of.
        assert!(record.get("responseContext").is_none(), "{record}");
        assert_eq!(record["timestamp"], crate::time::rfc3339_ms(1_061_000));
        let meter = telemetry.functions.get("f").events.clone();
        assert_eq!(
            meter.dead_lettered.get(),
            1,
            "counted as sent to on-failure"
        );
        assert_eq!(meter.dropped.get(), 0, "not counted as dropped");
        stop.cancel();
    }

    #[tokio::test]
    async fn only_function_deliveries_are_handed_out_before_the_sync() {
        let dir = tempfile::tempdir().unwrap();
        let (backend, stop, workers) = workers_in(&dir);
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
            workers.ensure("t", sub, &spec, None).await.unwrap();
            let q = backend.queue(&delivery_queue_name("t", sub)).unwrap();
            // A webhook's request cannot be taken back once sent: it waits for the disk.
            assert_eq!(q.delivers_before_sync(), early, "{sub}");
        }
        stop.cancel();
    }
}
