//! `/metrics`: the router's families in the Prometheus text format, one sample per
//! resource (topic, subscription, queue, stream and group, function, source), never per
//! message. Counters come from the meters the operations keep; gauges (queue depths, the
//! age of the oldest message, group lag) are read from storage at each scrape.

use super::AppState;
use crate::app::App;
use crate::deliver::{Feed, SourceReading};
use crate::model::Endpoint;
use crate::publish::TopicState;
use crate::telemetry::exposition::{Labels, Scrape, labels};
use crate::telemetry::{QueueMeter, SubscriptionMeter, TopicMeter};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Everything `/metrics` shows, gathered now.
pub(super) async fn gather(s: &AppState) -> Scrape {
    let mut out = Scrape::default();
    totals(&mut out, s);
    topics(&mut out, &s.app);
    queues(&mut out, &s.app).await;
    streams(&mut out, &s.app).await;
    functions(&mut out, &s.app).await;
    sources(&mut out, &s.app.control.all_source_readings());
    storage(&mut out, &s.app);
    out
}

/// The router-wide counters, summed over every resource.
fn totals(out: &mut Scrape, s: &AppState) {
    let total = |v: &AtomicU64| [(Labels::new(), v.load(Ordering::Relaxed))];
    let (m, d) = (&s.metrics, &s.app.delivery_metrics);
    let families: [(&'static str, &'static str, &AtomicU64); 12] = [
        (
            "switchyard_published",
            "Messages accepted by publish",
            &m.published,
        ),
        (
            "switchyard_deliveries",
            "Deliveries stored for subscriptions",
            &m.deliveries,
        ),
        (
            "switchyard_received",
            "Messages handed to queue receivers",
            &m.received,
        ),
        ("switchyard_acked", "Messages acknowledged", &m.acked),
        (
            "switchyard_client_errors",
            "Requests answered with a 4xx",
            &m.client_errors,
        ),
        (
            "switchyard_delivery_attempts",
            "Delivery attempts to webhook and function subscriptions",
            &d.attempts,
        ),
        (
            "switchyard_delivered",
            "Deliveries to webhook and function subscriptions that succeeded",
            &d.delivered,
        ),
        (
            "switchyard_delivery_retries",
            "Failed attempts scheduled for a retry",
            &d.retries,
        ),
        (
            "switchyard_dead_lettered",
            "Deliveries given up and moved to a dead-letter queue",
            &d.dead_lettered,
        ),
        (
            "switchyard_dropped",
            "Deliveries given up without a dead-letter queue",
            &d.dropped,
        ),
        (
            "switchyard_source_batches",
            "Batches a function's queue or stream source invoked it with",
            &d.source_batches,
        ),
        (
            "switchyard_source_failed_batches",
            "Source batches in which an event failed and is read again",
            &d.source_failures,
        ),
    ];
    for (name, help, v) in families {
        out.counters(name, help, total(v));
    }
    out.gauges(
        "switchyard_receives_waiting",
        "Queue receives long-polling for a message",
        [(Labels::new(), s.app.queues.receives_waiting() as i64)],
    );
}

/// A counter family read from one kind of meter: its name, its help, and the counter.
type CounterFamily<M> = (&'static str, &'static str, fn(&M) -> u64);

/// One sample of each family per item, each item giving its labels and its meter.
fn counter_families<M, T>(
    out: &mut Scrape,
    families: &[CounterFamily<M>],
    items: &[T],
    meter: impl Fn(&T) -> (&Labels, &M),
) {
    for (name, help, field) in families {
        out.counters(
            name,
            help,
            items.iter().map(|item| {
                let (labels, m) = meter(item);
                (labels.clone(), field(m))
            }),
        );
    }
}

/// Per topic and per subscription.
fn topics(out: &mut Scrape, app: &App) {
    let topics: Vec<_> = app
        .control
        .topic_names()
        .into_iter()
        .filter_map(|name| app.control.topic(&name).ok())
        .collect();
    let topic = |t: &TopicState| labels([("topic", &t.name)]);
    let per_topic = |f: fn(&TopicMeter) -> u64| {
        topics
            .iter()
            .map(|t| (topic(t), f(&t.meter)))
            .collect::<Vec<_>>()
    };
    out.counters(
        "switchyard_topic_published",
        "Messages a topic accepted",
        per_topic(|m| m.published.get()),
    );
    out.counters(
        "switchyard_topic_matched",
        "Deliveries stored for a topic's subscriptions (a message matching three counts three)",
        per_topic(|m| m.matched.get()),
    );
    out.counters(
        "switchyard_topic_schema_rejected",
        "Messages a topic refused for not matching its JSON Schema",
        per_topic(|m| m.schema_rejected.get()),
    );
    out.gauges(
        "switchyard_topic_watchers",
        "Live tails following a topic (the console, switchyard tail)",
        topics.iter().map(|t| (topic(t), t.tail.watchers() as i64)),
    );
    out.histograms(
        "switchyard_publish_seconds",
        "Time from a publish arriving to its deliveries being durable",
        topics
            .iter()
            .map(|t| (topic(t), t.meter.publish_seconds_so_far())),
    );

    // Subscription meters with the labels that name them, and whether a worker delivers
    // them (webhook and function subscriptions have delivery latencies).
    let subs: Vec<(Labels, Arc<SubscriptionMeter>, bool)> = topics
        .iter()
        .flat_map(|t| {
            t.subscriptions.all().into_iter().map(move |(name, spec)| {
                let by_worker = matches!(spec.endpoint, Endpoint::Http(_) | Endpoint::Function(_));
                (
                    labels([("topic", &t.name), ("subscription", &name)]),
                    t.meter.subscriptions.get(&name),
                    by_worker,
                )
            })
        })
        .collect();
    let families: [CounterFamily<SubscriptionMeter>; 5] = [
        (
            "switchyard_subscription_delivered",
            "Messages stored in a subscription's queue or stream, or accepted by its webhook or function",
            |m| m.delivered.get(),
        ),
        (
            "switchyard_subscription_failed",
            "Webhook and function delivery attempts that failed",
            |m| m.failed.get(),
        ),
        (
            "switchyard_subscription_retried",
            "Failed attempts scheduled to be tried again",
            |m| m.retried.get(),
        ),
        (
            "switchyard_subscription_dead_lettered",
            "Deliveries a subscription gave up on and moved to its dead-letter queue",
            |m| m.dead_lettered.get(),
        ),
        (
            "switchyard_subscription_dropped",
            "Deliveries a subscription gave up on without a dead-letter queue",
            |m| m.dropped.get(),
        ),
    ];
    counter_families(out, &families, &subs, |(l, m, _)| (l, m));
    out.histograms(
        "switchyard_delivery_seconds",
        "Time from a publish to its webhook or function accepting it, retries included",
        subs.iter()
            .filter(|(_, _, by_worker)| *by_worker)
            .map(|(l, m, _)| (l.clone(), m.delivery_seconds().clone())),
    );
}

/// Per queue: depth by state, the age of the oldest message, and traffic.
async fn queues(out: &mut Scrape, app: &App) {
    let now = app.backend.clock().now_ms();
    let mut depth = Vec::new();
    let mut oldest = Vec::new();
    let mut traffic = Vec::new();
    for name in app.queues.names() {
        // A queue deleted since it was listed has nothing to show.
        let Ok(c) = app.queues.counts(&name).await else {
            continue;
        };
        for (state, v) in [
            ("visible", c.visible),
            ("in_flight", c.in_flight),
            ("delayed", c.delayed),
        ] {
            depth.push((labels([("queue", &name), ("state", state)]), v as i64));
        }
        let age_ms = c.oldest_sent_at.map_or(0, |at| now.saturating_sub(at));
        oldest.push((labels([("queue", &name)]), age_ms as f64 / 1000.0));
        traffic.push((labels([("queue", &name)]), app.telemetry.queues.get(&name)));
    }
    out.gauges(
        "switchyard_queue_messages",
        "Messages in a queue by state",
        depth,
    );
    out.ages(
        "switchyard_queue_oldest_message_age_seconds",
        "Age of the oldest message in a queue (0 when it is empty)",
        oldest,
    );
    let families: [CounterFamily<QueueMeter>; 4] = [
        (
            "switchyard_queue_sent",
            "Messages stored in a queue: sends, and deliveries of the subscriptions that feed it",
            |m| m.sent.get(),
        ),
        (
            "switchyard_queue_received",
            "Messages a queue handed to receivers",
            |m| m.received.get(),
        ),
        (
            "switchyard_queue_acked",
            "Messages of a queue acknowledged (deleted) by their receivers",
            |m| m.acked.get(),
        ),
        (
            "switchyard_queue_dead_lettered",
            "Messages moved from a queue to its dead-letter queue after too many receives",
            |m| m.dead_lettered.get(),
        ),
    ];
    counter_families(out, &families, &traffic, |(l, m)| (l, m));
}

/// Per stream: records put; per group: shards leased and lag per shard.
async fn streams(out: &mut Scrape, app: &App) {
    let mut put = Vec::new();
    let mut leases = Vec::new();
    let mut lag = Vec::new();
    for name in app.streams.names() {
        let Ok(shards) = app.streams.shards(&name).await else {
            continue;
        };
        let meter = app.telemetry.streams.get(&name);
        put.push((labels([("stream", &name)]), meter.records_put.get()));
        for group in app.streams.group_names(&name).await.unwrap_or_default() {
            let Ok((_, held)) = app.streams.describe_group(&name, &group).await else {
                continue;
            };
            let leased = held.iter().filter(|(lease, _)| lease.is_some()).count();
            leases.push((
                labels([("stream", &name), ("group", &group)]),
                leased as i64,
            ));
            for (shard, (_, checkpoint)) in shards.iter().zip(&held) {
                // Records after the checkpoint; all the shard holds before the first.
                let done = checkpoint.unwrap_or(shard.first.saturating_sub(1));
                let behind = shard.last.saturating_sub(done);
                let shard_id = crate::model::shard_id(shard.shard);
                lag.push((
                    labels([("stream", &name), ("group", &group), ("shard", &shard_id)]),
                    behind as i64,
                ));
            }
        }
    }
    out.counters(
        "switchyard_stream_records_put",
        "Records appended to a stream: puts, and deliveries of the subscriptions that feed it",
        put,
    );
    out.gauges(
        "switchyard_stream_group_leases",
        "Shards of a stream a consumer group's members hold a live lease on",
        leases,
    );
    out.gauges(
        "switchyard_stream_group_lag_records",
        "Records of a shard after a consumer group's checkpoint",
        lag,
    );
}

/// Per function: invocations, errors by kind, durations, what runs now, throttles, and
/// its asynchronous invocations.
async fn functions(out: &mut Scrape, app: &App) {
    let functions: Vec<_> = app
        .control
        .function_names()
        .into_iter()
        .map(|name| {
            let meter = app.telemetry.functions.get(&name);
            let running = app.control.function_running(&name).unwrap_or(0);
            (name, meter, running)
        })
        .collect();
    let function = |name: &str| labels([("function", name)]);
    let mut waiting = Vec::new();
    for (name, _, _) in &functions {
        // A function deleted since it was listed has nothing to show.
        if let Ok(n) = app.control.events_waiting(name).await {
            waiting.push((function(name), n as i64));
        }
    }
    out.gauges(
        "switchyard_function_async_events",
        "Asynchronous invocations of a function accepted and not finished: waiting, running or waiting for a retry",
        waiting,
    );
    let events: Vec<(Labels, Arc<SubscriptionMeter>)> = functions
        .iter()
        .map(|(n, m, _)| (function(n), m.events.clone()))
        .collect();
    let families: [CounterFamily<SubscriptionMeter>; 4] = [
        (
            "switchyard_function_async_events_succeeded",
            "Asynchronous invocations of a function that ran without an error",
            |m| m.delivered.get(),
        ),
        (
            "switchyard_function_async_events_retried",
            "Failed asynchronous invocations of a function scheduled to run again",
            |m| m.retried.get(),
        ),
        (
            "switchyard_function_async_events_dropped",
            "Asynchronous invocations of a function given up, retries spent or too old, with no on-failure destination",
            |m| m.dropped.get(),
        ),
        (
            "switchyard_function_async_events_sent_to_on_failure",
            "Asynchronous invocations of a function given up, their records sent to its on-failure destination",
            |m| m.dead_lettered.get(),
        ),
    ];
    counter_families(out, &families, &events, |(l, m)| (l, m));
    out.counters(
        "switchyard_function_invocations",
        "Invocations of a function that ended, with or without an error",
        functions
            .iter()
            .map(|(n, m, _)| (function(n), m.invocations.get())),
    );
    out.counters(
        "switchyard_function_errors",
        "Invocations of a function that failed, by kind (handler, trap, timeout, out_of_memory, ...)",
        functions.iter().flat_map(|(n, m, _)| {
            m.errors
                .snapshot()
                .into_iter()
                .map(move |(kind, c)| (labels([("function", n), ("kind", kind)]), c.get()))
        }),
    );
    out.counters(
        "switchyard_function_throttles",
        "Invocations of a function that waited for a slot of its concurrency",
        functions
            .iter()
            .map(|(n, m, _)| (function(n), m.throttles.get())),
    );
    out.gauges(
        "switchyard_function_concurrency",
        "Invocations of a function running now",
        functions
            .iter()
            .map(|(n, _, running)| (function(n), *running as i64)),
    );
    out.histograms(
        "switchyard_function_duration_seconds",
        "Time an invocation of a function took",
        functions
            .iter()
            .map(|(n, m, _)| (function(n), m.duration_seconds.clone())),
    );
}

/// The per-source families: one sample per function and what it consumes, labelled
/// `queue`, or `stream` and `group`.
fn sources(out: &mut Scrape, readings: &[(String, SourceReading)]) {
    fn each<T>(
        readings: &[(String, SourceReading)],
        value: fn(&SourceReading) -> T,
    ) -> Vec<(Labels, T)> {
        readings
            .iter()
            .map(|(function, r)| {
                let labels = match &r.feed {
                    Feed::Queue(queue) => labels([("function", function), ("queue", queue)]),
                    Feed::Stream { stream, group } => {
                        labels([("function", function), ("stream", stream), ("group", group)])
                    }
                };
                (labels, value(r))
            })
            .collect()
    }
    out.gauges(
        "switchyard_source_concurrency",
        "A queue source's pollers; a stream source's batches being invoked",
        each(readings, |r| r.concurrency as i64),
    );
    out.gauges(
        "switchyard_source_peak_concurrency",
        "The most a source ran at once since it started",
        each(readings, |r| r.peak_concurrency as i64),
    );
    out.counters(
        "switchyard_source_throttles",
        "Times a source's batch waited for a slot of its function",
        each(readings, |r| r.throttles),
    );
    out.counters(
        "switchyard_source_invocations",
        "Batches a source invoked its function with",
        each(readings, |r| r.batches),
    );
    out.counters(
        "switchyard_source_events",
        "Events in the batches a source invoked its function with",
        each(readings, |r| r.events),
    );
    out.counters(
        "switchyard_source_failed_invocations",
        "A source's batches in which an event failed",
        each(readings, |r| r.failed_batches),
    );
    out.seconds(
        "switchyard_source_invocation_seconds",
        "Time a source's invocations took",
        each(readings, |r| r.invocation_time.as_secs_f64()),
    );
    out.ages(
        "switchyard_source_backlog_age_seconds",
        "Age of the oldest message or record of a source's latest batch when read",
        each(readings, |r| r.backlog_age.as_secs_f64()),
    );
}

/// The embedded store's log and disk.
fn storage(out: &mut Scrape, app: &App) {
    let Some(stats) = app.backend.storage_stats() else {
        return;
    };
    out.counters(
        "switchyard_storage_log_syncs",
        "Syncs of the write-ahead log's files since the store opened",
        [(Labels::new(), stats.log_syncs)],
    );
    out.counters(
        "switchyard_storage_log_bytes",
        "Bytes appended to the write-ahead log since the store opened",
        [(Labels::new(), stats.log_bytes)],
    );
    out.gauges(
        "switchyard_storage_disk_free_bytes",
        "Bytes free on the data directory's disk",
        stats
            .disk_free_bytes
            .map(|free| (Labels::new(), i64::try_from(free).unwrap_or(i64::MAX))),
    );
}
