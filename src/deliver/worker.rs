//! One subscription's worker (or one function's, for its asynchronous invocations):
//! takes deliveries from its delivery queue while the endpoint has room, attempts each,
//! and acknowledges it, schedules its retry (the message stays invisible until then) or
//! gives up on it (to the dead-letter queue, or dropped).

use super::http::{self, Notification, Outcome};
use super::{
    ACK_BATCH, Asynchronous, BREAKER_FAILURES, BREAKER_MAX_PAUSE_MS, DeliveryMetrics,
    IN_FLIGHT_MARGIN_MS, Outbox, POLL_WAIT, QueueFeed, RECEIVE_BATCH, STORAGE_ERROR_BACKOFF,
    Target, event, with_subscription,
};
use crate::backend::{Backend, NewMessage, Queue, Received};
use crate::model::DeliveryPolicy;
use crate::runtime::FunctionRegistry;
use crate::telemetry::spans::{KeyValue, Kind, Span};
use crate::telemetry::trace::{TRACEPARENT, TRACESTATE};
use crate::telemetry::{SubscriptionMeter, Telemetry};
use crate::time::now_ms;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub(super) struct Worker {
    pub(super) backend: Arc<Backend>,
    pub(super) functions: Arc<FunctionRegistry>,
    pub(super) outbox: Arc<dyn Outbox>,
    /// Where an asynchronous invocation's record goes when its destination is a queue.
    pub(super) queues: Arc<dyn QueueFeed>,
    pub(super) queue: Queue,
    /// Receipts of finished deliveries, acknowledged in batches by [`acknowledge`].
    pub(super) acks: tokio::sync::mpsc::UnboundedSender<String>,
    pub(super) topic: String,
    pub(super) subscription: String,
    pub(super) target: Target,
    /// Longest one attempt may take.
    pub(super) attempt_ms: u64,
    pub(super) policy: DeliveryPolicy,
    pub(super) dead_letter_queue: Option<String>,
    pub(super) client: reqwest::Client,
    pub(super) deny_private: bool,
    pub(super) metrics: Arc<DeliveryMetrics>,
    /// The subscription's own counters.
    pub(super) meter: Arc<SubscriptionMeter>,
    /// Where its dead letters are counted as sent to their queue.
    pub(super) telemetry: Arc<Telemetry>,
    pub(super) stop: CancellationToken,
    /// Failed attempts in a row; reset by a success.
    pub(super) failures_in_a_row: std::sync::atomic::AtomicU32,
    /// While in the future (unix ms), the worker takes no new deliveries.
    pub(super) paused_until: AtomicU64,
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

    pub(super) async fn run(self: Arc<Self>) {
        let concurrency = match &self.target {
            Target::Http { endpoint, .. } => endpoint.max_concurrency as usize,
            // The function's own semaphore bounds its instances; this bounds the
            // deliveries held in memory waiting for one.
            Target::Function(_) | Target::Event(_) => {
                crate::model::DEFAULT_HTTP_CONCURRENCY as usize
            }
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
            if let Some(f) = self.target.function() {
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
        if let Target::Event(a) = &self.target {
            return self.attempt_invocation(a, m).await;
        }
        let attempt = m.receive_count;
        let mut n: Notification<'_> = match serde_json::from_slice(&m.payload) {
            Ok(n) => n,
            Err(e) => {
                let reason = format!("stored delivery is unreadable: {e}");
                return self
                    .give_up(&m, &m.payload, &reason, GiveUp::RetriesExhausted)
                    .await;
            }
        };
        let full = n.subscription.is_empty().then(|| {
            n.subscription = &self.subscription;
            with_subscription(&m.payload, &self.subscription)
        });
        let envelope = full.as_deref().unwrap_or(&m.payload);
        self.metrics.attempts.fetch_add(1, Ordering::Relaxed);
        // Read once: the attempt's span, a webhook's headers and a function's publishes
        // all carry it on.
        let mut trace = crate::telemetry::trace::trace_of(n.attributes.get());
        let mut span = self.attempt_span(&n, &trace, attempt);
        let outcome = match &self.target {
            Target::Http {
                endpoint,
                raw,
                url,
                sns,
            } => {
                let mut req = match sns {
                    Some(arns) => http::build_sns(endpoint, *raw, &n, arns),
                    None => http::build(endpoint, *raw, envelope, &n, attempt, now_ms() / 1000),
                };
                // The endpoint's work is a child of this attempt.
                if let Some(s) = &span {
                    set_traceparent(&mut trace, s.traceparent());
                }
                for (name, value) in &trace {
                    http::put_header(&mut req.headers, name, value);
                }
                http::send(&self.client, endpoint, url.as_ref(), req, self.deny_private).await
            }
            Target::Function(f) => {
                let event = event::from_notification(&n, &m);
                self.invoke(f, n.message_id, event, trace, span.as_ref())
                    .await
            }
            Target::Event(_) => unreachable!("an invocation is attempted on its own"),
        };
        if let (Some(s), Outcome::Retry { reason, .. } | Outcome::Failed { reason }) =
            (&mut span, &outcome)
        {
            s.fail(reason.clone());
        }
        self.settle(&m, n.message_id, envelope, outcome).await
    }

    /// Runs an asynchronous invocation unless it is too old to, and sends its record to
    /// the function's on-success destination once it ran.
    async fn attempt_invocation(&self, a: &Asynchronous, m: Received) {
        let age_ms = self.backend.clock().now_ms().saturating_sub(m.sent_at);
        if age_ms > a.max_age_ms {
            let reason = format!(
                "accepted {} s ago, more than the function's max_event_age_s of {} s",
                age_ms / 1000,
                a.max_age_ms / 1000
            );
            return self.give_up(&m, &m.payload, &reason, GiveUp::TooOld).await;
        }
        self.metrics.attempts.fetch_add(1, Ordering::Relaxed);
        let outcome = self
            .invoke(
                &a.function,
                &m.message_id,
                event::from_invocation(&m),
                Vec::new(),
                None,
            )
            .await;
        if let (Outcome::Delivered, Some(to)) = (&outcome, &a.on_success) {
            let now = self.backend.clock().now_ms();
            let record =
                event::invocation_record(&a.function, &m, "Success", m.receive_count, None, now);
            // The invocation ran and is not run again for a record that cannot be sent.
            if let Err(e) = super::send_to(to, record, &*self.queues, &*self.outbox).await {
                tracing::error!(function = %a.function, message_id = %m.message_id, destination = ?to, error = %e, "the on-success destination refused the invocation's record");
            }
        }
        self.settle(&m, &m.message_id, &m.payload, outcome).await
    }

    /// Records an attempt's outcome: acknowledged, scheduled to be tried again, or given
    /// up (`envelope` is what a dead-letter queue receives).
    async fn settle(&self, m: &Received, message_id: &str, envelope: &[u8], outcome: Outcome) {
        let attempt = m.receive_count;
        match &outcome {
            Outcome::Delivered => self.note(true),
            Outcome::Retry { .. } => self.note(false),
            // A refusal says nothing about whether the endpoint is up.
            Outcome::Failed { .. } => {}
        }
        if !matches!(outcome, Outcome::Delivered) {
            self.meter.failed.inc();
        }
        match outcome {
            Outcome::Delivered => {
                tracing::debug!(topic = %self.topic, subscription = %self.subscription, message_id, attempt, "delivered");
                self.metrics.delivered.fetch_add(1, Ordering::Relaxed);
                self.meter.delivered.inc();
                let since_publish = self.backend.clock().now_ms().saturating_sub(m.sent_at);
                self.meter
                    .delivery_seconds()
                    .observe(Duration::from_millis(since_publish));
                self.ack(m).await;
            }
            Outcome::Retry {
                reason,
                retry_after,
            } => {
                let elapsed =
                    Duration::from_millis(self.backend.clock().now_ms().saturating_sub(m.sent_at));
                match self.policy.next_delay(attempt, elapsed, random_unit()) {
                    Some(delay) => {
                        let delay = delay.max(retry_after.unwrap_or_default());
                        tracing::warn!(topic = %self.topic, subscription = %self.subscription, message_id, attempt, retry_in_ms = delay.as_millis() as u64, reason = %reason, "delivery failed; will retry");
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
                        self.meter.retried.inc();
                    }
                    None => {
                        let reason = format!("{reason} (after {attempt} attempts)");
                        let why = if attempt > self.policy.num_retries {
                            GiveUp::RetriesExhausted
                        } else {
                            GiveUp::TooOldToRetry
                        };
                        self.give_up(m, envelope, &reason, why).await
                    }
                }
            }
            Outcome::Failed { reason } => {
                self.give_up(m, envelope, &reason, GiveUp::RetriesExhausted)
                    .await
            }
        }
    }

    /// The span of one delivery attempt, inside the trace the message carries, when spans
    /// are exported.
    fn attempt_span(
        &self,
        n: &Notification<'_>,
        trace: &[(&str, String)],
        attempt: u32,
    ) -> Option<Span> {
        let tracing = self.telemetry.tracing.as_ref()?;
        let value = |name| {
            trace
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.as_str())
        };
        let parent = value(TRACEPARENT).map(|p| (p, value(TRACESTATE)));
        let kind = match self.target {
            Target::Http { .. } => Kind::Client,
            Target::Function(_) | Target::Event(_) => Kind::Consumer,
        };
        let attributes = vec![
            KeyValue::new("messaging.destination.name", self.topic.clone()),
            KeyValue::new("messaging.message.id", n.message_id.to_string()),
            KeyValue::new("switchyard.subscription", self.subscription.clone()),
            KeyValue::new("switchyard.attempt", i64::from(attempt)),
        ];
        let name = format!("deliver {}/{}", self.topic, self.subscription);
        Some(tracing.start(name, kind, parent, attributes))
    }

    /// One function invocation for a delivery; what it published is published once it
    /// succeeded, and dropped with it when it failed.
    async fn invoke(
        &self,
        function: &str,
        message_id: &str,
        event: crate::runtime::Event,
        mut trace: Vec<(&'static str, String)>,
        attempt_span: Option<&Span>,
    ) -> Outcome {
        let Some(f) = self.functions.get(function) else {
            // It may be registered again; the policy decides how long to wait for that.
            return Outcome::Retry {
                reason: format!("function {function:?} does not exist or is not loaded"),
                retry_after: None,
            };
        };
        let mut span = attempt_span.and_then(|parent| {
            let tracing = self.telemetry.tracing.as_ref()?;
            Some(tracing.child(parent, format!("invoke {function}")))
        });
        let inv = f.invoke(event).await;
        if let (Some(s), Err(e)) = (&mut span, &inv.outcome) {
            s.fail(e.to_string());
        }
        for l in &inv.logs {
            tracing::info!(function, message_id, level = ?l.level, "{}", l.message);
        }
        match inv.outcome {
            Ok(()) => {
                let mut published = inv.published;
                if let Some(s) = &span {
                    // What it published is a child of this invocation.
                    set_traceparent(&mut trace, s.traceparent());
                }
                inherit_trace(&trace, &mut published);
                self.outbox.publish(function, published).await;
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
    /// An asynchronous invocation's record goes to its function's on-failure destination.
    async fn give_up(&self, m: &Received, envelope: &[u8], reason: &str, why: GiveUp) {
        if let Target::Event(a) = &self.target
            && let Some(to) = &a.on_failure
        {
            return self.give_up_invocation(a, to, m, reason, why).await;
        }
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
                let dlq_meter = self.telemetry.queues.get(dlq.name());
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
                self.meter.dead_lettered.inc();
                dlq_meter.sent.inc();
            }
            None => {
                if let Target::Event(a) = &self.target {
                    tracing::error!(function = %a.function, message_id = %m.message_id, attempts, reason, "asynchronous invocation given up and dropped");
                } else {
                    tracing::error!(topic = %self.topic, subscription = %self.subscription, message_id = %m.message_id, attempts, reason, "delivery given up and dropped: the subscription has no dead-letter queue");
                }
                self.metrics.dropped.fetch_add(1, Ordering::Relaxed);
                self.meter.dropped.inc();
            }
        }
        self.ack(m).await;
    }

    /// Sends the record of an asynchronous invocation given up to its function's
    /// on-failure destination, and then lets it go; kept when the destination refuses it,
    /// so it is given up again once it reappears.
    async fn give_up_invocation(
        &self,
        a: &Asynchronous,
        to: &crate::model::Destination,
        m: &Received,
        reason: &str,
        why: GiveUp,
    ) {
        let (condition, invocations) = match why {
            GiveUp::RetriesExhausted => ("RetriesExhausted", m.receive_count),
            GiveUp::TooOldToRetry => ("EventAgeExceeded", m.receive_count),
            // This receive's attempt was not made.
            GiveUp::TooOld => ("EventAgeExceeded", m.receive_count.saturating_sub(1)),
        };
        let now = self.backend.clock().now_ms();
        let error = (invocations > 0).then_some(reason);
        let record = event::invocation_record(&a.function, m, condition, invocations, error, now);
        if let Err(e) = super::send_to(to, record, &*self.queues, &*self.outbox).await {
            tracing::error!(function = %a.function, message_id = %m.message_id, destination = ?to, error = %e, "the on-failure destination refused the invocation's record; kept for another try");
            return;
        }
        tracing::warn!(function = %a.function, message_id = %m.message_id, condition, reason, destination = ?to, "asynchronous invocation given up; its record sent to the on-failure destination");
        self.meter.dead_lettered.inc();
        self.ack(m).await;
    }

    async fn ack(&self, m: &Received) {
        // Closed only once this worker is gone, and a worker with attempts is not.
        let _ = self.acks.send(m.receipt.clone());
    }
}

/// Why a delivery or an asynchronous invocation is given up.
#[derive(Clone, Copy)]
pub(super) enum GiveUp {
    /// Its attempts failed and the policy allows no more, or one was refused outright.
    RetriesExhausted,
    /// Its last attempt failed, and the next would come later than it may be tried.
    TooOldToRetry,
    /// It is older than it may be tried, and was not attempted this time.
    TooOld,
}

/// Makes `traceparent` the trace context's parent, in place of the one it had.
fn set_traceparent(trace: &mut Vec<(&'static str, String)>, traceparent: String) {
    trace.retain(|(name, _)| *name != TRACEPARENT);
    trace.push((TRACEPARENT, traceparent));
}

/// What a function publishes while handling an event continues the event's trace: each
/// publish that carries no trace context of its own gets the event's.
pub(super) fn inherit_trace(trace: &[(&str, String)], published: &mut [crate::runtime::Publish]) {
    use crate::runtime::{Attribute, AttributeValue};
    if trace.is_empty() {
        return;
    }
    for p in published {
        if p.attributes.iter().any(|a| a.name == TRACEPARENT) {
            continue;
        }
        p.attributes
            .extend(trace.iter().map(|(name, value)| Attribute {
                name: name.to_string(),
                value: AttributeValue::String(value.clone()),
            }));
    }
}

/// Acknowledges a worker's finished deliveries: whatever piled up while the previous batch
/// was stored goes in one call, so the queue's lock and the committer are taken once per
/// batch instead of once per delivery. Ends when the worker and its attempts are gone,
/// after the last receipts.
pub(super) async fn acknowledge(
    backend: Arc<Backend>,
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
