//! The meters of each resource: plain atomic counters and histograms, found by name.
//!
//! A meter belongs to a resource for as long as it exists: its operations count into it
//! without locks, the hot ones through an `Arc` they keep (a topic's meter is held by its
//! compiled state), and deleting the resource forgets it, so the number of series grows
//! with resources, never with messages.

use prometheus_client::metrics::histogram::Histogram;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// A monotonic counter.
#[derive(Debug, Default)]
pub struct Count(AtomicU64);

impl Count {
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A histogram of durations in seconds, with buckets from half a millisecond to an hour:
/// a publish takes milliseconds, an invocation up to its deadline, and a delivery that
/// was retried can arrive an hour after its publish.
#[derive(Debug, Clone)]
pub struct Latency(Histogram);

/// Upper bounds of the latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
    3600.0,
];

impl Default for Latency {
    fn default() -> Self {
        Latency(Histogram::new(LATENCY_BUCKETS))
    }
}

impl Latency {
    pub fn observe(&self, took: Duration) {
        self.0.observe(took.as_secs_f64());
    }

    /// The histogram, for the exposition.
    pub fn histogram(&self) -> &Histogram {
        &self.0
    }
}

/// Meters by resource name. Lookups take a read lock for the time of a hash lookup; a
/// meter is made the first time its resource counts.
#[derive(Debug)]
pub struct Meters<M, K = String> {
    map: RwLock<HashMap<K, Arc<M>>>,
}

impl<M, K> Default for Meters<M, K> {
    fn default() -> Self {
        Self {
            map: RwLock::default(),
        }
    }
}

impl<M: Default, K: Eq + Hash> Meters<M, K> {
    /// The meter of `name`, made if it has none yet.
    pub fn get<Q>(&self, name: &Q) -> Arc<M>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ToOwned<Owned = K> + ?Sized,
    {
        if let Some(m) = self.read().get(name) {
            return m.clone();
        }
        self.map
            .write()
            .expect("a meter map's lock is never poisoned")
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    /// Every meter with its name, in no particular order.
    pub fn snapshot(&self) -> Vec<(K, Arc<M>)>
    where
        K: Clone,
    {
        self.read()
            .iter()
            .map(|(k, m)| (k.clone(), m.clone()))
            .collect()
    }

    /// Drops the meter of a resource that is gone.
    pub fn forget<Q>(&self, name: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        self.map
            .write()
            .expect("a meter map's lock is never poisoned")
            .remove(name);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<K, Arc<M>>> {
        self.map
            .read()
            .expect("a meter map's lock is never poisoned")
    }
}

/// A topic's publishes.
#[derive(Debug, Default)]
pub struct TopicMeter {
    /// Messages accepted.
    pub published: Count,
    /// Deliveries stored for its subscriptions (a message matching three counts three).
    pub matched: Count,
    /// Messages refused because they did not match the topic's JSON Schema.
    pub schema_rejected: Count,
    /// From the publish arriving to its deliveries being durable. Made on first use: a
    /// server may hold a hundred thousand topics that are never published to.
    publish_seconds: std::sync::OnceLock<Latency>,
    /// Its subscriptions' meters, by subscription name.
    pub subscriptions: Meters<SubscriptionMeter>,
}

/// What became of a subscription's deliveries.
#[derive(Debug, Default)]
pub struct SubscriptionMeter {
    /// Stored in its queue or stream, or accepted by its webhook or function.
    pub delivered: Count,
    /// Webhook and function attempts that failed.
    pub failed: Count,
    /// Failed attempts scheduled to be tried again.
    pub retried: Count,
    /// Deliveries given up and moved to its dead-letter queue.
    pub dead_lettered: Count,
    /// Deliveries given up without a dead-letter queue.
    pub dropped: Count,
    /// Webhook and function deliveries: from the publish to the endpoint accepting it,
    /// retries included. Made on first use: a queue or stream subscription never needs
    /// its buckets, and a topic may have a million of them.
    delivery_seconds: std::sync::OnceLock<Latency>,
}

impl TopicMeter {
    /// From the publish arriving to its deliveries being durable.
    pub fn publish_seconds(&self) -> &Latency {
        self.publish_seconds.get_or_init(Latency::default)
    }

    /// What [`Self::publish_seconds`] has observed; empty for a topic never published to,
    /// without keeping buckets for it.
    pub fn publish_seconds_so_far(&self) -> Latency {
        self.publish_seconds.get().cloned().unwrap_or_default()
    }
}

impl SubscriptionMeter {
    /// From the publish to the webhook or function accepting the delivery.
    pub fn delivery_seconds(&self) -> &Latency {
        self.delivery_seconds.get_or_init(Latency::default)
    }
}

/// A queue's traffic; its depth is read from storage at each scrape.
#[derive(Debug, Default)]
pub struct QueueMeter {
    /// Messages stored in it: sends, and deliveries of the subscriptions that feed it.
    pub sent: Count,
    /// Messages handed to receivers.
    pub received: Count,
    /// Messages acknowledged (deleted) by their receivers.
    pub acked: Count,
    /// Messages moved to its dead-letter queue after too many receives.
    pub dead_lettered: Count,
}

/// A stream's traffic; its shards' ends and its groups' lag are read at each scrape.
#[derive(Debug, Default)]
pub struct StreamMeter {
    /// Records appended: puts, and deliveries of the subscriptions that feed it.
    pub records_put: Count,
}

/// A function's invocations.
#[derive(Debug, Default)]
pub struct FunctionMeter {
    pub invocations: Count,
    /// Failed invocations by the kind of failure (`handler`, `trap`, `timeout`, …).
    pub errors: Meters<Count, &'static str>,
    /// Invocations that waited for a slot of the function's concurrency.
    pub throttles: Count,
    /// From the guest being instantiated to its answer.
    pub duration_seconds: Latency,
    /// What its latest invocations logged, for the console.
    pub recent_logs: RecentLogs,
    /// What became of its asynchronous (`Event`) invocations.
    pub events: std::sync::Arc<SubscriptionMeter>,
}

/// Log lines kept per function: enough to see what the last few dozen invocations said.
pub const RECENT_LOGS: usize = 200;

/// One line a function's invocation logged, or the host's word that it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// When the invocation ended (unix ms).
    pub at_ms: u64,
    /// `trace` to `error`.
    pub level: &'static str,
    /// `log` (the guest's log import), `stdout`, `stderr` or `host`.
    pub source: &'static str,
    pub message: String,
    /// The id of the event it handled; none for a batch.
    pub event: Option<String>,
}

/// The latest [`RECENT_LOGS`] log lines of a function's invocations, oldest first.
#[derive(Debug, Default)]
pub struct RecentLogs(Mutex<VecDeque<LogEntry>>);

impl RecentLogs {
    pub fn push(&self, entries: impl IntoIterator<Item = LogEntry>) {
        let mut ring = self
            .0
            .lock()
            .expect("the log ring's lock is never poisoned");
        for e in entries {
            if ring.len() == RECENT_LOGS {
                ring.pop_front();
            }
            ring.push_back(e);
        }
    }

    pub fn latest(&self) -> Vec<LogEntry> {
        let ring = self
            .0
            .lock()
            .expect("the log ring's lock is never poisoned");
        ring.iter().cloned().collect()
    }
}

/// Every resource's meters, and the span exporter when there is one.
#[derive(Debug, Default)]
pub struct Telemetry {
    pub topics: Meters<TopicMeter>,
    pub queues: Meters<QueueMeter>,
    pub streams: Meters<StreamMeter>,
    pub functions: Meters<FunctionMeter>,
    /// Exports spans over OTLP; `None` unless the server was given an endpoint.
    pub tracing: Option<super::spans::Tracing>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_meter_is_found_again_until_forgotten() {
        let t = Telemetry::default();
        t.queues.get("jobs").sent.add(2);
        assert_eq!(t.queues.get("jobs").sent.get(), 2);
        t.queues.forget("jobs");
        assert!(t.queues.snapshot().is_empty());
        assert_eq!(t.queues.get("jobs").sent.get(), 0);
    }

    #[test]
    fn the_log_ring_keeps_the_latest_lines() {
        let logs = RecentLogs::default();
        let line = |n: usize| LogEntry {
            at_ms: n as u64,
            level: "info",
            source: "log",
            message: format!("line {n}"),
            event: None,
        };
        logs.push((0..RECENT_LOGS + 5).map(line));
        let kept = logs.latest();
        assert_eq!(kept.len(), RECENT_LOGS);
        assert_eq!(kept[0].message, "line 5");
        assert_eq!(
            kept[RECENT_LOGS - 1].message,
            format!("line {}", RECENT_LOGS + 4)
        );
    }

    #[test]
    fn errors_are_kept_by_kind() {
        let f = FunctionMeter::default();
        f.errors.get(&"trap").inc();
        f.errors.get(&"trap").inc();
        f.errors.get(&"timeout").inc();
        assert_eq!(f.errors.get(&"trap").get(), 2);
        assert_eq!(f.errors.get(&"timeout").get(), 1);
    }
}
