//! Function sources (Lambda's event source mappings): a function consuming a queue or a
//! stream consumer group in batches.
//!
//! Queue: receive up to the batch size (waiting up to the batch window to fill it),
//! invoke, acknowledge what succeeded; failed items stay and come back after the queue's
//! visibility timeout, so the queue's redrive policy handles poison messages. A source
//! scales with its backlog as Lambda's SQS poller does: it starts with one poller, adds one
//! whenever a receive comes back full while every poller is busy, up to the source's
//! `max_concurrency`, and an extra poller leaves when it finds the queue empty. A poller
//! takes a slot of the function before it receives, so a throttled source leaves its
//! messages in the queue instead of holding them while their visibility timeout runs (and
//! their receive count toward the dead-letter queue grows); an idle source long-polls
//! without one.
//! Stream: poll as the group's member, invoke a batch per shard at once (or up to the
//! source's `parallelization_factor` per shard, each holding a share of the partition
//! keys, so a key's records stay in order), checkpoint what succeeded; on a partial
//! failure a shard resumes from its lowest failed record, on a whole failure the batch is
//! read again, with a growing pause between attempts; as Lambda's Kinesis mappings can,
//! a source may split a failed batch to find the record at fault, and give up records
//! after a number of retries or past an age, handing them to its on-failure queue or
//! topic before it checkpoints past them.
//!
//! A source waits while its function is loading: nothing is received (so no receive count
//! is spent) until it can run.

use super::{DeliveryMetrics, Outbox, event};
use crate::backend::{Received, StoredRecord};
use crate::model::{Destination, SourceSpec, StartPosition};
use crate::runtime::{AttributeValue, BatchInvocation, Event, Function, FunctionRegistry, Slot};
use crate::telemetry::Telemetry;
use crate::telemetry::spans::{KeyValue, Kind};
use crate::telemetry::trace::{TRACEPARENT, TRACESTATE};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long one receive or poll waits for the first message.
const POLL_WAIT: Duration = Duration::from_secs(20);
/// How long a queue poller holding a slot of the function waits for a message before it
/// gives the slot back (and, but for the source's first poller, stops).
const SLOTTED_POLL_WAIT: Duration = Duration::from_secs(1);
/// Pause after a failed stream batch, doubling up to `MAX_RETRY_PAUSE`.
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(500);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(30);
/// Pause when the source or the function is missing, before looking again.
const MISSING_PAUSE: Duration = Duration::from_secs(1);
/// A queue receive returns at most this many messages.
const RECEIVE_MAX: usize = 10;

/// Why a consumer-group operation of a stream source failed (logged, then retried).
pub type FeedError = Box<dyn std::error::Error + Send + Sync>;

/// What a queue source needs of the queue semantics above storage: receive (messages past
/// the queue's receive limit go to its dead-letter queue, not to the function) and
/// acknowledge.
#[async_trait::async_trait]
pub trait QueueFeed: Send + Sync + 'static {
    /// Receives up to `max` messages with the queue's visibility timeout, waiting up to
    /// `wait` for the first; answers early (maybe empty) when `stop` is cancelled.
    async fn receive(
        &self,
        queue: &str,
        max: usize,
        wait: Duration,
        stop: &CancellationToken,
    ) -> Result<Vec<Received>, FeedError>;
    /// Acknowledges (deletes) processed messages.
    async fn ack(&self, queue: &str, receipts: &[String]) -> Result<(), FeedError>;
    /// Sends `message` (JSON text) to `queue`, answering once it is stored.
    async fn send_json(&self, queue: &str, message: String) -> Result<(), FeedError>;
}

/// What a stream source needs of the consumer-group semantics above storage: join a
/// group, poll it as a member, checkpoint and re-read.
#[async_trait::async_trait]
pub trait GroupFeed: Send + Sync + 'static {
    /// Whether the stream exists.
    fn has_stream(&self, stream: &str) -> bool;
    /// Creates the group, starting at `start`, unless it exists (whatever its settings).
    async fn join(&self, stream: &str, group: &str, start: StartPosition) -> Result<(), FeedError>;
    /// A poll by `member`: records of the shards it holds, waiting up to `wait`.
    async fn poll(
        &self,
        stream: &str,
        group: &str,
        member: &str,
        max_records: usize,
        wait: Duration,
    ) -> Result<Vec<StoredRecord>, FeedError>;
    /// Records that `member` processed `shard` up to `sequence`; refused when it no
    /// longer holds the shard.
    async fn checkpoint(
        &self,
        stream: &str,
        group: &str,
        member: &str,
        shard: u32,
        sequence: u64,
    ) -> Result<(), FeedError>;
    /// Moves `member`'s read position on `shard` back to just after `after`, so its next
    /// poll reads the records after it again.
    fn rewind(&self, stream: &str, group: &str, member: &str, shard: u32, after: u64);
}

/// What every source of this router shares.
pub struct SourceParts {
    pub queues: Arc<dyn QueueFeed>,
    pub functions: Arc<FunctionRegistry>,
    pub outbox: Arc<dyn Outbox>,
    pub groups: Arc<dyn GroupFeed>,
    pub metrics: Arc<DeliveryMetrics>,
    /// Where a batch invocation's span goes, when spans are exported.
    pub telemetry: Arc<Telemetry>,
    /// Appended to a stream source's member name: routers sharing a backend each run the
    /// source as their own member, so the shards are split between them, not read twice.
    pub member_suffix: String,
}

/// The running sources, by function.
pub struct Sources {
    context: Arc<SourceParts>,
    running: Mutex<HashMap<String, Running>>,
    shutdown: CancellationToken,
}

impl Sources {
    pub fn new(parts: SourceParts, shutdown: CancellationToken) -> Self {
        Self {
            context: Arc::new(parts),
            running: Mutex::default(),
            shutdown,
        }
    }

    /// Stops a function's sources and starts `sources` in their place.
    pub fn restart(&self, function: &str, sources: &[SourceSpec]) {
        let stop = self.shutdown.child_token();
        let mut source_stats = Vec::new();
        for s in sources {
            let (cx, stop, function) = (self.context.clone(), stop.clone(), function.to_string());
            match s.clone() {
                SourceSpec::Queue {
                    queue,
                    batch_size,
                    batch_window_ms,
                    max_concurrency,
                } => {
                    let stats = Arc::new(SourceStats::default());
                    stats.add_poller(1);
                    source_stats.push((Feed::Queue(queue.clone()), stats.clone()));
                    let source = Arc::new(QueueSource {
                        function,
                        queue,
                        batch_size,
                        window: Duration::from_millis(batch_window_ms),
                        max_concurrency,
                    });
                    spawn_poller(&cx, &source, &stats, true, &stop);
                }
                SourceSpec::Stream {
                    stream,
                    group,
                    batch_size,
                    starting_position,
                    batch_window_ms,
                    parallelization_factor,
                    maximum_retry_attempts,
                    maximum_record_age_s,
                    bisect_batch_on_error,
                    on_failure,
                } => {
                    let stats = Arc::new(SourceStats::default());
                    source_stats.push((
                        Feed::Stream {
                            stream: stream.clone(),
                            group: group.clone(),
                        },
                        stats.clone(),
                    ));
                    let source = StreamSource {
                        stats,
                        member: format!("function:{function}{}", cx.member_suffix),
                        function,
                        stream,
                        group,
                        batch_size,
                        start: starting_position,
                        window: Duration::from_millis(batch_window_ms),
                        factor: parallelization_factor.unwrap_or(1),
                        max_retries: maximum_retry_attempts,
                        max_age: maximum_record_age_s.map(Duration::from_secs),
                        bisect: bisect_batch_on_error,
                        on_failure,
                    };
                    tokio::spawn(cx.stream_source(source, stop));
                }
            }
        }
        let mut running = self.running.lock().expect("never poisoned");
        let old = if sources.is_empty() {
            running.remove(function)
        } else {
            running.insert(
                function.to_string(),
                Running {
                    stop,
                    stats: source_stats,
                },
            )
        };
        if let Some(old) = old {
            old.stop.cancel();
        }
    }

    /// How each source of `function` is doing.
    pub fn readings(&self, function: &str) -> Vec<SourceReading> {
        self.running
            .lock()
            .expect("never poisoned")
            .get(function)
            .map(|r| r.stats.iter().map(|(feed, s)| s.reading(feed)).collect())
            .unwrap_or_default()
    }

    /// How every source is doing, by function.
    pub fn all_readings(&self) -> Vec<(String, SourceReading)> {
        let running = self.running.lock().expect("never poisoned");
        let mut all: Vec<_> = running
            .iter()
            .flat_map(|(f, r)| r.stats.iter().map(|(feed, s)| (f.clone(), s.reading(feed))))
            .collect();
        all.sort_by(|a, b| (&a.0, &a.1.feed).cmp(&(&b.0, &b.1.feed)));
        all
    }
}

/// A function's running sources.
struct Running {
    /// Stops them all.
    stop: CancellationToken,
    /// Each source's stats.
    stats: Vec<(Feed, Arc<SourceStats>)>,
}

async fn pause(d: Duration, stop: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = stop.cancelled() => {}
    }
}

/// A queue source's settings.
struct QueueSource {
    function: String,
    queue: String,
    batch_size: usize,
    window: Duration,
    /// Most pollers at once; `None`: the function's concurrency.
    max_concurrency: Option<usize>,
}

/// What a source reads.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Feed {
    Queue(String),
    Stream { stream: String, group: String },
}

/// How a source is doing. Counters only grow; the gauges are the pollers (a queue
/// source's concurrency), the batches in hand (a stream source's concurrency) and the age
/// of the oldest message or record of the latest batch.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Pollers of a queue source running.
    pollers: AtomicUsize,
    /// Batches received and not yet done.
    busy: AtomicUsize,
    /// The most pollers (queue) or batches (stream) at once.
    peak: AtomicUsize,
    /// Times a batch waited for a slot of the function.
    throttles: AtomicU64,
    batches: AtomicU64,
    events: AtomicU64,
    failed_batches: AtomicU64,
    invoke_micros: AtomicU64,
    backlog_age_ms: AtomicU64,
}

/// A reading of a source's [`SourceStats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceReading {
    pub feed: Feed,
    /// A queue source's pollers (1 when idle); a stream source's batches being invoked.
    pub concurrency: usize,
    pub peak_concurrency: usize,
    pub throttles: u64,
    pub batches: u64,
    pub events: u64,
    pub failed_batches: u64,
    pub invocation_time: Duration,
    pub backlog_age: Duration,
}

impl SourceStats {
    /// Counts one more poller unless `limit` run already.
    fn add_poller(&self, limit: usize) -> bool {
        let added = self
            .pollers
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok();
        if added {
            self.peak
                .fetch_max(self.pollers.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        added
    }

    fn batch_done(&self, events: usize, took: Duration, failed: bool) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.events.fetch_add(events as u64, Ordering::Relaxed);
        self.invoke_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        if failed {
            self.failed_batches.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A stream batch begins.
    fn batch_started(&self) {
        let busy = self.busy.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(busy, Ordering::Relaxed);
    }

    fn note_oldest(&self, oldest_ms: u64) {
        self.backlog_age_ms.store(
            crate::time::now_ms().saturating_sub(oldest_ms),
            Ordering::Relaxed,
        );
    }

    fn reading(&self, feed: &Feed) -> SourceReading {
        let concurrency = match feed {
            Feed::Queue(_) => &self.pollers,
            Feed::Stream { .. } => &self.busy,
        };
        SourceReading {
            feed: feed.clone(),
            concurrency: concurrency.load(Ordering::Relaxed),
            peak_concurrency: self.peak.load(Ordering::Relaxed),
            throttles: self.throttles.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            failed_batches: self.failed_batches.load(Ordering::Relaxed),
            invocation_time: Duration::from_micros(self.invoke_micros.load(Ordering::Relaxed)),
            backlog_age: Duration::from_millis(self.backlog_age_ms.load(Ordering::Relaxed)),
        }
    }
}

fn spawn_poller(
    cx: &Arc<SourceParts>,
    s: &Arc<QueueSource>,
    stats: &Arc<SourceStats>,
    anchor: bool,
    stop: &CancellationToken,
) {
    let poller: std::pin::Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(
        cx.clone()
            .queue_poller(s.clone(), stats.clone(), anchor, stop.clone()),
    );
    tokio::spawn(poller);
}

/// A slot of `f`, waited for (and counted as a throttle) when none is free; `None` when
/// the source stops first.
async fn reserve(f: &Function, stats: &SourceStats, stop: &CancellationToken) -> Option<Slot> {
    if let Some(slot) = f.try_reserve() {
        return Some(slot);
    }
    stats.throttles.fetch_add(1, Ordering::Relaxed);
    tokio::select! {
        slot = f.reserve() => Some(slot),
        () = stop.cancelled() => None,
    }
}

/// A stream source's settings.
struct StreamSource {
    function: String,
    stream: String,
    group: String,
    /// The group member this source polls as.
    member: String,
    batch_size: usize,
    start: StartPosition,
    /// How long a poll that read less than a full batch gathers more.
    window: Duration,
    /// Concurrent batches per shard.
    factor: usize,
    /// Attempts after the first before a failing batch is given up; `None`: no limit.
    max_retries: Option<u64>,
    /// Records older than this are given up instead of invoked.
    max_age: Option<Duration>,
    /// Split a failed batch in two, down to the record that fails.
    bisect: bool,
    /// Where what is given up goes.
    on_failure: Option<Destination>,
    stats: Arc<SourceStats>,
}

impl SourceParts {
    /// Waits until the source's function is ready to invoke; `None` when it does not
    /// exist or the source stops. A function that is loading, or failed to load, is
    /// waited for.
    async fn ready_function(
        &self,
        function: &str,
        stop: &CancellationToken,
    ) -> Option<Arc<Function>> {
        tokio::select! {
            f = self.functions.wait_ready(function) => f,
            _ = stop.cancelled() => None,
        }
    }

    /// Invokes `f` on a batch of events from `source` in `slot`. When spans are exported
    /// the invocation is one: the root of a trace of its own, linked to the trace each
    /// event carries (a batch has no one parent), and the parent of what it publishes.
    async fn invoke_batch(
        &self,
        f: &Function,
        slot: Slot,
        source: &str,
        events: Vec<Event>,
    ) -> BatchInvocation {
        fn value<'e>(e: &'e Event, name: &str) -> Option<&'e str> {
            match &e.attributes.iter().find(|a| a.name == name)?.value {
                AttributeValue::String(v) => Some(v.as_str()),
                _ => None,
            }
        }
        let span = self.telemetry.tracing.as_ref().map(|tracing| {
            let links: Vec<_> = events
                .iter()
                .filter_map(|e| Some((value(e, TRACEPARENT)?, value(e, TRACESTATE))))
                .collect();
            let attributes = vec![
                KeyValue::new("messaging.destination.name", source.to_string()),
                KeyValue::new("messaging.batch.message_count", events.len() as i64),
            ];
            let name = format!("invoke {}", f.name());
            tracing.start_linked(name, Kind::Consumer, links, attributes)
        });
        let mut inv = f.invoke_batch_in(Some(slot), events).await;
        if let Some(mut span) = span {
            if let Err(e) = &inv.outcome {
                span.fail(e.to_string());
            }
            let trace = [(TRACEPARENT, span.traceparent())];
            super::worker::inherit_trace(&trace, &mut inv.published);
        }
        inv
    }

    fn count_batch(&self, failed: bool) {
        self.metrics.source_batches.fetch_add(1, Ordering::Relaxed);
        if failed {
            self.metrics.source_failures.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One poller of a queue source: reserves a slot of the function, receives a batch,
    /// invokes it in that slot and acknowledges what succeeded, again and again. The
    /// anchor (the source's first poller) runs as long as the source; every other poller
    /// leaves when it finds the queue empty.
    async fn queue_poller(
        self: Arc<Self>,
        s: Arc<QueueSource>,
        stats: Arc<SourceStats>,
        anchor: bool,
        stop: CancellationToken,
    ) {
        let QueueSource {
            function, queue, ..
        } = &*s;
        // Whether the anchor's last receive found nothing: it then long-polls without a
        // slot, which an idle source should not keep from the function's other callers.
        let mut idle = true;
        while !stop.is_cancelled() {
            let Some(f) = self.ready_function(function, &stop).await else {
                pause(MISSING_PAUSE, &stop).await;
                continue;
            };
            let mut slot = None;
            if !(anchor && idle) {
                slot = reserve(&f, &stats, &stop).await;
                if slot.is_none() {
                    break;
                }
            }
            let wait = if slot.is_some() {
                SLOTTED_POLL_WAIT
            } else {
                POLL_WAIT
            };
            let want = s.batch_size.min(RECEIVE_MAX);
            let mut msgs = match self.queues.receive(queue, want, wait, &stop).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::error!(function, queue, error = %e, "source receive failed");
                    pause(MISSING_PAUSE, &stop).await;
                    continue;
                }
            };
            if msgs.is_empty() {
                if anchor {
                    idle = true;
                    continue;
                }
                break;
            }
            idle = false;
            let slot = match slot {
                Some(slot) => slot,
                // Messages in hand, waiting for a slot: only the anchor coming out of an
                // idle poll, while other callers hold every slot of the function.
                None => match reserve(&f, &stats, &stop).await {
                    Some(slot) => slot,
                    None => break,
                },
            };
            // A full receive means more is waiting: when every poller of the source is
            // busy, one more starts.
            let busy = stats.busy.fetch_add(1, Ordering::Relaxed) + 1;
            let limit = s.max_concurrency.unwrap_or(f.limits().concurrency);
            if msgs.len() == want
                && busy >= stats.pollers.load(Ordering::Relaxed)
                && stats.add_poller(limit)
            {
                spawn_poller(&self, &s, &stats, false, &stop);
            }
            let window_end = tokio::time::Instant::now() + s.window;
            while msgs.len() < s.batch_size {
                let left = window_end.saturating_duration_since(tokio::time::Instant::now());
                let more = (s.batch_size - msgs.len()).min(RECEIVE_MAX);
                match self.queues.receive(queue, more, left, &stop).await {
                    Ok(m) if !m.is_empty() => msgs.extend(m),
                    _ => break,
                }
            }
            let oldest = msgs.iter().map(|m| m.sent_at).min().unwrap_or_default();
            stats.backlog_age_ms.store(
                crate::time::now_ms().saturating_sub(oldest),
                Ordering::Relaxed,
            );
            let events = msgs.iter().map(|m| event::from_message(queue, m)).collect();
            let inv = self.invoke_batch(&f, slot, queue, events).await;
            let failed_any = !matches!(&inv.outcome, Ok(failures) if failures.is_empty());
            stats.batch_done(msgs.len(), inv.duration, failed_any);
            match inv.outcome {
                Ok(failures) => {
                    let failed: HashSet<usize> = failures.iter().map(|f| f.index).collect();
                    for fl in &failures {
                        tracing::warn!(function, queue, message_id = %fl.event_id, error = %fl.message, "batch item failed; it stays in the queue");
                    }
                    let done: Vec<String> = msgs
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| !failed.contains(i))
                        .map(|(_, m)| m.receipt.clone())
                        .collect();
                    if !done.is_empty()
                        && let Err(e) = self.queues.ack(queue, &done).await
                    {
                        tracing::error!(function, queue, error = %e, "acknowledging a processed batch failed; it will be processed again");
                    }
                    self.outbox.publish(function, inv.published).await;
                }
                Err(e) => {
                    tracing::warn!(function, queue, error = %e, messages = msgs.len(), "batch failed; the messages stay in the queue");
                }
            }
            self.count_batch(failed_any);
            stats.busy.fetch_sub(1, Ordering::Relaxed);
        }
        stats.pollers.fetch_sub(1, Ordering::Relaxed);
    }

    async fn stream_source(self: Arc<Self>, s: StreamSource, stop: CancellationToken) {
        let StreamSource {
            function,
            stream,
            group,
            member,
            ..
        } = &s;
        let mut retry_pause = FIRST_RETRY_PAUSE;
        // Per shard: the record that keeps failing and how many times it has been tried.
        let mut attempts: HashMap<u32, (u64, u64)> = HashMap::new();
        while !stop.is_cancelled() {
            let Some(f) = self.ready_function(function, &stop).await else {
                pause(MISSING_PAUSE, &stop).await;
                continue;
            };
            if !self.groups.has_stream(stream) {
                pause(MISSING_PAUSE, &stop).await;
                continue;
            }
            // A new group starts where the source says; an existing group keeps its
            // settings.
            if let Err(e) = self.groups.join(stream, group, s.start).await {
                tracing::warn!(function, stream, group, error = %e, "cannot create the source's consumer group");
            }
            let want = s.batch_size * s.factor;
            let mut recs = match self
                .groups
                .poll(stream, group, member, want, POLL_WAIT)
                .await
            {
                Ok(recs) => recs,
                Err(e) => {
                    tracing::error!(function, stream, error = %e, "source poll failed");
                    pause(MISSING_PAUSE, &stop).await;
                    continue;
                }
            };
            if recs.is_empty() {
                continue;
            }
            // Each poll reads on from where the last ended, so a shard's records stay in
            // order as they are gathered.
            let window_end = tokio::time::Instant::now() + s.window;
            while recs.len() < want && !stop.is_cancelled() {
                let left = window_end.saturating_duration_since(tokio::time::Instant::now());
                if left.is_zero() {
                    break;
                }
                match self
                    .groups
                    .poll(stream, group, member, want - recs.len(), left)
                    .await
                {
                    Ok(more) => recs.extend(more),
                    Err(e) => {
                        tracing::warn!(function, stream, error = %e, "source poll failed while gathering a batch");
                        break;
                    }
                }
            }
            s.stats
                .note_oldest(recs.iter().map(|r| r.arrived_at).min().unwrap_or_default());
            let now = crate::time::now_ms();
            let too_old = |rec: &StoredRecord| {
                s.max_age
                    .is_some_and(|age| now.saturating_sub(rec.arrived_at) > age.as_millis() as u64)
            };
            let (expired, live): (Vec<usize>, Vec<usize>) =
                (0..recs.len()).partition(|&i| too_old(&recs[i]));
            let lanes = lanes(&recs, &live, s.factor);
            let ran = futures::future::join_all(
                lanes
                    .iter()
                    .map(|lane| self.run_lane(&f, &s, &recs, lane, &stop)),
            )
            .await;
            // Per shard: what this poll did not finish (records that failed, and those not
            // tried because an earlier record of their lane failed or the source stopped),
            // and the lowest of them with why: the shard is done only below it.
            let mut unfinished: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
            let mut why_failed: HashMap<usize, String> = HashMap::new();
            for (lane, outcome) in lanes.iter().zip(ran) {
                why_failed.extend(outcome.failed);
                for &i in &lane[outcome.done..] {
                    unfinished.entry(recs[i].shard).or_default().push(i);
                }
            }
            let mut lowest_failed: BTreeMap<u32, (u64, String)> = unfinished
                .iter()
                .filter_map(|(&shard, undone)| {
                    let &i = undone.iter().min_by_key(|&&i| recs[i].sequence)?;
                    let why = why_failed.remove(&i).unwrap_or_else(|| "not tried".into());
                    Some((shard, (recs[i].sequence, why)))
                })
                .collect();
            if !expired.is_empty()
                && !self
                    .give_up(&s, &recs, &expired, RECORD_AGE_EXCEEDED, "", 0)
                    .await
            {
                // Kept until they can be handed over: nothing before the first is done.
                for &i in &expired {
                    let rec = &recs[i];
                    let lowest = lowest_failed
                        .entry(rec.shard)
                        .or_insert((rec.sequence, RECORD_AGE_EXCEEDED.into()));
                    lowest.0 = lowest.0.min(rec.sequence);
                }
            }
            // A shard whose failing record has had all its attempts gives up what this
            // poll did not finish, and moves past it.
            for (shard, (seq, why)) in lowest_failed.clone() {
                let tried = match attempts.get(&shard) {
                    Some(&(failing, n)) if failing == seq => n + 1,
                    _ => 1,
                };
                attempts.insert(shard, (seq, tried));
                let Some(max) = s.max_retries else { continue };
                if tried <= max {
                    continue;
                }
                let given = unfinished.remove(&shard).unwrap_or_default();
                if self
                    .give_up(&s, &recs, &given, RETRY_ATTEMPTS_EXHAUSTED, &why, tried)
                    .await
                {
                    lowest_failed.remove(&shard);
                    attempts.remove(&shard);
                }
            }
            attempts.retain(|shard, _| lowest_failed.contains_key(shard));
            let last = last_of_each_shard(&recs);
            for (&shard, &seq) in &last {
                // Everything before the lowest failure of the shard is done.
                let done = match lowest_failed.get(&shard) {
                    Some(&(failed, _)) => failed - 1,
                    None => seq,
                };
                // Checkpoint only progress made in this batch (a failure at the batch's
                // first record of the shard leaves its checkpoint where it was).
                if done > 0
                    && done >= first_of(&recs, shard)
                    && let Err(e) = self
                        .groups
                        .checkpoint(stream, group, member, shard, done)
                        .await
                {
                    tracing::warn!(function, stream, error = %e, "checkpoint refused; the shard moved to another member");
                }
                if lowest_failed.contains_key(&shard) {
                    self.groups.rewind(stream, group, member, shard, done);
                }
            }
            if lowest_failed.is_empty() {
                retry_pause = FIRST_RETRY_PAUSE;
            } else {
                pause(retry_pause, &stop).await;
                retry_pause = (retry_pause * 2).min(MAX_RETRY_PAUSE);
            }
        }
    }

    /// Hands the records `given` (indices into `recs`) to the source's on-failure
    /// destination, or logs them when it has none; `false` when the destination refused
    /// them, which are then kept.
    async fn give_up(
        &self,
        s: &StreamSource,
        recs: &[StoredRecord],
        given: &[usize],
        condition: &str,
        error: &str,
        attempts: u64,
    ) -> bool {
        let StreamSource {
            function,
            stream,
            group,
            ..
        } = s;
        if given.is_empty() {
            return true;
        }
        let sequences: Vec<u64> = given.iter().map(|&i| recs[i].sequence).collect();
        let Some(to) = &s.on_failure else {
            tracing::warn!(
                function,
                stream,
                group,
                condition,
                error,
                ?sequences,
                "records given up"
            );
            return true;
        };
        let message = failure_message(s, recs, given, condition, error, attempts);
        let sent = super::send_to(to, message, &*self.queues, &*self.outbox).await;
        match sent {
            Ok(()) => {
                tracing::warn!(function, stream, group, condition, error, ?sequences, destination = ?to, "records given up");
                true
            }
            Err(e) => {
                tracing::error!(function, stream, group, condition, destination = ?to, error = %e, "the on-failure destination refused what was given up; kept for another try");
                false
            }
        }
    }
}

/// Why a stream source gave records up, as Lambda says it.
const RETRY_ATTEMPTS_EXHAUSTED: &str = "RetryAttemptsExhausted";
const RECORD_AGE_EXCEEDED: &str = "RecordAgeExceeded";

/// What an on-failure destination receives: why, and the records given up.
fn failure_message(
    s: &StreamSource,
    recs: &[StoredRecord],
    given: &[usize],
    condition: &str,
    error: &str,
    attempts: u64,
) -> String {
    let records: Vec<serde_json::Value> = given
        .iter()
        .map(|&i| {
            let rec = &recs[i];
            let mut r = serde_json::json!({
                "shard_id": crate::model::shard_id(rec.shard),
                "sequence": rec.sequence.to_string(),
                "partition_key": rec.partition_key,
                "arrived_at": rec.arrived_at,
            });
            match serde_json::from_slice::<serde_json::Value>(&rec.data) {
                Ok(data) => r["data"] = data,
                Err(_) => {
                    use base64::Engine;
                    r["data_base64"] = base64::engine::general_purpose::STANDARD
                        .encode(&rec.data)
                        .into();
                }
            }
            r
        })
        .collect();
    let mut message = serde_json::json!({
        "condition": condition,
        "function": s.function,
        "stream": s.stream,
        "group": s.group,
        "records": records,
    });
    if attempts > 0 {
        message["attempts"] = attempts.into();
    }
    if !error.is_empty() {
        message["error"] = error.into();
    }
    message.to_string()
}

/// What became of one lane of a stream batch.
struct LaneOutcome {
    /// How many of the lane's records are done; from there on each failed or was not
    /// tried (an earlier record of its lane failed, and a key's records must not
    /// overtake one of theirs).
    done: usize,
    /// Records (indices into the poll) that failed, with why.
    failed: Vec<(usize, String)>,
}

/// What became of one batch of a lane.
struct BatchOutcome {
    /// How many of its records, from the start, are done.
    done: usize,
    failed: Vec<(usize, String)>,
}

impl SourceParts {
    /// Invokes `f` with the lane's records, `batch_size` at a time in order, until a batch
    /// fails.
    async fn run_lane(
        &self,
        f: &Function,
        s: &StreamSource,
        recs: &[StoredRecord],
        lane: &[usize],
        stop: &CancellationToken,
    ) -> LaneOutcome {
        let mut outcome = LaneOutcome {
            done: 0,
            failed: Vec::new(),
        };
        for batch in lane.chunks(s.batch_size) {
            let Some(b) = self.invoke_records(f, s, recs, batch, stop).await else {
                break;
            };
            outcome.done += b.done;
            outcome.failed.extend(b.failed);
            if b.done < batch.len() {
                break;
            }
        }
        outcome
    }

    /// Invokes `f` with `batch` (indices into `recs`); with `bisect_batch_on_error`, a
    /// failed batch is split in two and the halves invoked in order, down to the record
    /// that fails. `None` when the source stops first.
    fn invoke_records<'a>(
        &'a self,
        f: &'a Function,
        s: &'a StreamSource,
        recs: &'a [StoredRecord],
        batch: &'a [usize],
        stop: &'a CancellationToken,
    ) -> std::pin::Pin<Box<dyn Future<Output = Option<BatchOutcome>> + Send + 'a>> {
        Box::pin(async move {
            let StreamSource {
                function,
                stream,
                group,
                ..
            } = s;
            let slot = reserve(f, &s.stats, stop).await?;
            let events = batch
                .iter()
                .map(|&i| event::from_record(stream, group, &recs[i]))
                .collect();
            s.stats.batch_started();
            let inv = self.invoke_batch(f, slot, stream, events).await;
            s.stats.busy.fetch_sub(1, Ordering::Relaxed);
            let failed = !matches!(&inv.outcome, Ok(failures) if failures.is_empty());
            s.stats.batch_done(batch.len(), inv.duration, failed);
            self.count_batch(failed);
            match inv.outcome {
                Ok(failures) => {
                    self.outbox.publish(function, inv.published).await;
                    let mut out = BatchOutcome {
                        done: batch.len(),
                        failed: Vec::new(),
                    };
                    for fl in failures {
                        tracing::warn!(function, stream, record = %fl.event_id, error = %fl.message, "batch item failed; its shard resumes from it");
                        out.done = out.done.min(fl.index);
                        out.failed.push((batch[fl.index], fl.message));
                    }
                    Some(out)
                }
                Err(e) if s.bisect && batch.len() > 1 => {
                    tracing::warn!(function, stream, error = %e, records = batch.len(), "batch failed; invoking its halves");
                    let (first, second) = batch.split_at(batch.len() / 2);
                    let a = self.invoke_records(f, s, recs, first, stop).await?;
                    if a.done < first.len() {
                        return Some(a);
                    }
                    let b = self.invoke_records(f, s, recs, second, stop).await?;
                    Some(BatchOutcome {
                        done: first.len() + b.done,
                        failed: b.failed,
                    })
                }
                Err(e) => {
                    tracing::warn!(function, stream, error = %e, records = batch.len(), "batch failed; it will be read again");
                    Some(BatchOutcome {
                        done: 0,
                        failed: vec![(batch[0], e.to_string())],
                    })
                }
            }
        })
    }
}

/// The records `live` (indices into `recs`) spread over `factor` lanes per shard, as
/// Lambda runs `ParallelizationFactor` batches per shard at once: a lane holds records of
/// one shard in their order, and every record of a partition key is in the same lane.
fn lanes(recs: &[StoredRecord], live: &[usize], factor: usize) -> Vec<Vec<usize>> {
    let mut lanes: BTreeMap<(u32, u64), Vec<usize>> = BTreeMap::new();
    for &i in live {
        let rec = &recs[i];
        let lane = if factor <= 1 {
            0
        } else {
            key_hash(&rec.partition_key) % factor as u64
        };
        lanes.entry((rec.shard, lane)).or_default().push(i);
    }
    lanes.into_values().collect()
}

/// The last sequence of each shard in the batch.
fn last_of_each_shard(recs: &[StoredRecord]) -> BTreeMap<u32, u64> {
    recs.iter().map(|r| (r.shard, r.sequence)).collect()
}

/// A hash of a partition key. It only has to agree with itself within one poll: the
/// lanes of a poll are done before the next poll.
fn key_hash(key: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(key)
}

/// The first sequence of `shard` in the batch (records of a shard come in order).
fn first_of(recs: &[StoredRecord], shard: u32) -> u64 {
    recs.iter()
        .find(|r| r.shard == shard)
        .map(|r| r.sequence)
        .unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(shard: u32, sequence: u64, key: &str) -> StoredRecord {
        StoredRecord {
            shard,
            sequence,
            partition_key: key.to_string(),
            data: Vec::new(),
            arrived_at: 0,
        }
    }

    #[test]
    fn lanes_keep_a_key_in_order_within_its_shard() {
        let keys = ["a", "b", "c", "d", "e", "f", "g", "h"];
        let recs: Vec<StoredRecord> = (0..80)
            .map(|i| record(i as u32 % 2, i / 2 + 1, keys[i as usize % keys.len()]))
            .collect();
        let all: Vec<usize> = (0..recs.len()).collect();
        for factor in [1, 2, 4, 10] {
            let lanes = lanes(&recs, &all, factor);
            let mut seen = vec![false; recs.len()];
            for lane in &lanes {
                let first = &recs[lane[0]];
                for pair in lane.windows(2) {
                    let (a, b) = (&recs[pair[0]], &recs[pair[1]]);
                    assert_eq!(a.shard, b.shard, "a lane is one shard's");
                    assert!(a.sequence < b.sequence, "in order");
                }
                for &i in lane {
                    assert_eq!(recs[i].shard, first.shard);
                    assert!(!seen[i], "each record in one lane");
                    seen[i] = true;
                }
            }
            assert!(seen.iter().all(|&s| s), "every record in a lane");
            // Every record of a (shard, key) in the same lane.
            for rec in &recs {
                let holding: Vec<usize> = lanes
                    .iter()
                    .enumerate()
                    .filter(|(_, lane)| {
                        lane.iter().any(|&i| {
                            recs[i].shard == rec.shard && recs[i].partition_key == rec.partition_key
                        })
                    })
                    .map(|(n, _)| n)
                    .collect();
                assert_eq!(
                    holding.len(),
                    1,
                    "{factor}: {} in lanes {holding:?}",
                    rec.partition_key
                );
            }
            // At most `factor` lanes per shard, and the keys spread over more than one.
            for shard in 0..2 {
                let per_shard = lanes.iter().filter(|l| recs[l[0]].shard == shard).count();
                assert!(per_shard <= factor, "{factor}: {per_shard} lanes");
                assert!(
                    factor == 1 || per_shard > 1,
                    "{factor}: keys spread over lanes"
                );
            }
        }
    }
}
