//! Scale bench: what a topic with very many subscriptions costs, through the HTTP API of
//! the real `switchyard` binary (bench profile) on loopback.
//!
//! Run: `cargo bench --bench scale`. Every phase is bounded in count and time.
//!
//! | variable              | default | meaning                                          |
//! |-----------------------|---------|--------------------------------------------------|
//! | `SCALE_SUBSCRIPTIONS` | 100000  | filtered subscriptions added to one topic        |
//! | `SCALE_CLIENTS`       | 16      | concurrent clients adding them                   |
//! | `SCALE_MAX_SECONDS`   | 900     | stop adding after this long                      |
//! | `SCALE_PUBLISHES`     | 2000    | publishes timed once they are in                 |
//! | `SCALE_TOPICS`        | 10000   | topics and queues of phase (e); 0 skips it       |
//! | `SCALE_FANOUT`        | 10000   | subscriptions one message matches in (f); 0 skips |
//! | `SCALE_BACKLOG`       | 1000000 | 1 KiB messages backlogged in (g); 0 skips        |
//! | `SWITCHYARD_BIN`      | (cargo's) | server binary to measure instead               |
//!
//! Phases:
//! - (a) adding `SCALE_SUBSCRIPTIONS` subscriptions with the filter policy
//!   `{"customer": ["c<i>"]}`, all to one queue, from `SCALE_CLIENTS` clients: the rate of
//!   the first 1,000 and of the last 1,000 (what one more costs on a small topic and on a
//!   large one), the whole, and the server's RSS per subscription;
//! - (b) publishing to the topic one at a time, each message matching one subscription
//!   (a random customer), and matching none: latency p50 / p99;
//! - (c) the server killed and started again on its data dir: to healthy, and RSS;
//! - (d) removing 1,000 of the subscriptions: the rate;
//! - (e) on a fresh server, `SCALE_TOPICS` topics and as many queues, each topic with one
//!   subscription to its queue, created from `SCALE_CLIENTS` clients; then every topic
//!   listed a page of 1,000 at a time; RSS; the server killed and started again: to
//!   healthy, and RSS;
//! - (f) on a fresh server, one topic with `SCALE_FANOUT` subscriptions without a policy
//!   (spread over 10 queues) and messages published to it one at a time for a few
//!   seconds: deliveries stored per second.
//! - (g) on a fresh server, 80,000 messages of 1 KiB sent to one queue and
//!   `SCALE_BACKLOG` to another (batches of 10), then receive + ack (10 at a time,
//!   `SCALE_CLIENTS` clients) of 20,000 messages from each, twice, alternating: rate and
//!   receive latency at either depth, and RSS; the server killed and started again on
//!   the backlog: to healthy, RSS, and the receive + ack once more.

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use hdrhistogram::Histogram;
use serde_json::json;
use switchyard::client::Client;
use switchyard::wire::{FilterScope, PublishRequest, QueueSpec, SubscriptionSpec, TopicSpec};
use tokio::task::JoinSet;

use common::{HealthPoll, Launch, Server, Table, env_var, ms, server_binary};

const LAUNCH: Launch = Launch {
    data_dir_prefix: "switchyard-scale-",
    log_level: "warn",
    health_poll: HealthPoll::Ramp,
};

/// Adds counted together for the first and last rates.
const BLOCK: u64 = 1_000;
/// Subscriptions removed in (d).
const REMOVALS: u64 = 1_000;

fn main() -> std::process::ExitCode {
    common::main("scale", run)
}

async fn run() -> anyhow::Result<()> {
    let subscriptions: u64 = env_var("SCALE_SUBSCRIPTIONS", 100_000);
    let clients: usize = env_var("SCALE_CLIENTS", 16);
    let max = Duration::from_secs(env_var("SCALE_MAX_SECONDS", 900));
    let publishes: u64 = env_var("SCALE_PUBLISHES", 2_000);
    ensure!(
        subscriptions >= 2 * BLOCK,
        "SCALE_SUBSCRIPTIONS must be at least {}",
        2 * BLOCK
    );
    let binary = server_binary();
    let mut table = Table::default();

    let server = Server::start(&binary, &LAUNCH, common::http_client(1)?).await?;
    let client = Client::with_http(&server.base_url, common::http_client(clients)?)?;
    client.put_queue("sink", &QueueSpec::default()).await?;
    client.put_topic("wide", &TopicSpec::default()).await?;
    let rss_before = server.rss_mb()?;

    // (a) Adds, from `clients` tasks taking the next number each.
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + max;
    let mut tasks = JoinSet::new();
    for _ in 0..clients {
        let (client, next, done) = (client.clone(), next.clone(), done.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= subscriptions || Instant::now() >= deadline {
                    return anyhow::Ok(());
                }
                let spec = SubscriptionSpec::to_queue("sink").filter(
                    FilterScope::MessageAttributes,
                    json!({"customer": [format!("c{i}")]}),
                );
                client
                    .put_subscription("wide", &format!("s{i:08}"), &spec)
                    .await
                    .with_context(|| format!("add subscription {i}"))?;
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    // When each block of adds completed, watched from here.
    let mut marks = vec![Duration::ZERO];
    let mut reported = Instant::now();
    while !tasks.is_empty() {
        tokio::select! {
            joined = tasks.join_next() => {
                if let Some(r) = joined {
                    r.context("an adding task")??;
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(1)) => {}
        }
        let n = done.load(Ordering::Relaxed);
        while n >= BLOCK * marks.len() as u64 {
            marks.push(started.elapsed());
        }
        if reported.elapsed() > Duration::from_secs(10) {
            eprintln!("  scale: {n} subscriptions added");
            reported = Instant::now();
        }
    }
    let took = started.elapsed();
    let added = done.load(Ordering::Relaxed);
    let rate = |block: usize| BLOCK as f64 / (marks[block] - marks[block - 1]).as_secs_f64();
    let blocks = marks.len() - 1;
    ensure!(
        blocks >= 2,
        "fewer than {} subscriptions added in time",
        2 * BLOCK
    );
    table.row(
        format!("(a) add {subscriptions} filtered subscriptions to one topic, {clients} clients"),
        format!(
            "{added} in {:.1} s ({:.0}/s); first {BLOCK}: {:.0}/s, last {BLOCK}: {:.0}/s (ratio {:.2})",
            took.as_secs_f64(),
            added as f64 / took.as_secs_f64(),
            rate(1),
            rate(blocks),
            rate(blocks) / rate(1),
        ),
    );
    let rss = server.rss_mb()?;
    table.row(
        format!("(a) RSS with {added} subscriptions"),
        format!(
            "{rss:.1} MB ({rss_before:.1} MB before; {:.0} bytes per subscription)",
            (rss - rss_before) * 1_048_576.0 / added as f64
        ),
    );

    // (b) Publish latency, one at a time.
    let publish = |customer: String| -> anyhow::Result<PublishRequest> {
        Ok(serde_json::from_value(json!({
            "message": {"order": 1},
            "attributes": {"customer": customer}
        }))?)
    };
    for (what, matching) in [
        ("matching one subscription", true),
        ("matching none", false),
    ] {
        let before = client.get_queue("sink").await?.approximate_visible;
        let mut hist = Histogram::<u64>::new(3)?;
        for k in 0..publishes {
            let customer = if matching {
                format!("c{}", fastrand::u64(..added))
            } else {
                format!("nobody{k}")
            };
            let request = publish(customer)?;
            let t0 = Instant::now();
            client.publish("wide", &request).await?;
            hist.record(t0.elapsed().as_micros() as u64)?;
        }
        let delivered = client.get_queue("sink").await?.approximate_visible - before;
        let want = if matching { publishes } else { 0 };
        ensure!(
            delivered == want,
            "{publishes} publishes {what} delivered {delivered} messages"
        );
        table.row(
            format!("(b) publish {what}, {publishes} one at a time"),
            format!(
                "p50 {:.2} ms, p99 {:.2} ms",
                hist.value_at_quantile(0.5) as f64 / 1e3,
                hist.value_at_quantile(0.99) as f64 / 1e3
            ),
        );
    }

    // (c) Restart.
    let server = server
        .restart(&binary, &LAUNCH, common::http_client(1)?, &[])
        .await?;
    table.row(
        format!("(c) killed and started again with {added} subscriptions"),
        format!(
            "healthy after {:.0} ms; RSS {:.1} MB",
            ms(server.started_in),
            server.rss_mb()?
        ),
    );

    // (d) Removals, from the same number of clients.
    let client = Client::with_http(&server.base_url, common::http_client(clients)?)?;
    let removals = REMOVALS.min(added);
    let took = spread(removals, clients, move |i| {
        let client = client.clone();
        async move {
            client
                .delete_subscription("wide", &format!("s{i:08}"))
                .await
                .with_context(|| format!("remove subscription {i}"))
        }
    })
    .await?;
    table.row(
        format!("(d) remove {removals} of them, {clients} clients"),
        format!("{:.0}/s", removals as f64 / took.as_secs_f64()),
    );

    drop(server);

    let topics: u64 = env_var("SCALE_TOPICS", 10_000);
    if topics > 0 {
        many_topics(&binary, topics, clients, &mut table).await?;
    }
    let fanout: u64 = env_var("SCALE_FANOUT", 10_000);
    if fanout > 0 {
        wide_fanout(&binary, fanout, clients, &mut table).await?;
    }
    let backlog: u64 = env_var("SCALE_BACKLOG", 1_000_000);
    if backlog > 0 {
        deep_backlog(&binary, backlog, clients, &mut table).await?;
    }

    table.print("switchyard at scale (loopback; the load generator shares the machine)");
    Ok(())
}

/// Runs `op(i)` for every `i` below `n` from `clients` tasks at once.
async fn spread<F, Fut>(n: u64, clients: usize, op: F) -> anyhow::Result<Duration>
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..clients {
        let (next, op) = (next.clone(), op.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return anyhow::Ok(());
                }
                op(i).await?;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.context("a client task")??;
    }
    Ok(started.elapsed())
}

/// (e) Many topics and queues, each topic with a subscription to its queue.
async fn many_topics(
    binary: &std::path::Path,
    n: u64,
    clients: usize,
    table: &mut Table,
) -> anyhow::Result<()> {
    let server = Server::start(binary, &LAUNCH, common::http_client(1)?).await?;
    let client = Client::with_http(&server.base_url, common::http_client(clients)?)?;
    let c = client.clone();
    let took = spread(n, clients, move |i| {
        let c = c.clone();
        async move {
            let (topic, queue) = (format!("t{i:07}"), format!("q{i:07}"));
            c.put_queue(&queue, &QueueSpec::default()).await?;
            c.put_topic(&topic, &TopicSpec::default()).await?;
            c.put_subscription(&topic, "s", &SubscriptionSpec::to_queue(queue))
                .await?;
            Ok(())
        }
    })
    .await?;
    table.row(
        format!("(e) create {n} topics and {n} queues, a subscription each, {clients} clients"),
        format!(
            "{:.1} s ({:.0} topics/s)",
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64()
        ),
    );

    let http = common::http_client(1)?;
    let started = Instant::now();
    let (mut listed, mut pages, mut next) = (0usize, 0, None::<String>);
    loop {
        let mut url = format!("{}/v1/topics?limit=1000", server.base_url);
        if let Some(token) = &next {
            url.push_str(&format!("&next={token}"));
        }
        let page: serde_json::Value = http
            .get(&url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        listed += page["topics"].as_array().context("`topics`")?.len();
        pages += 1;
        match page["next"].as_str() {
            Some(token) => next = Some(token.to_string()),
            None => break,
        }
    }
    ensure!(listed as u64 == n, "listed {listed} of {n} topics");
    table.row(
        format!("(e) list the {n} topics, 1,000 a page"),
        format!("{pages} pages in {:.0} ms", ms(started.elapsed())),
    );
    let rss = server.rss_mb()?;
    let server = server
        .restart(binary, &LAUNCH, common::http_client(1)?, &[])
        .await?;
    table.row(
        format!("(e) RSS with {n} topics and queues; killed and started again"),
        format!(
            "{rss:.1} MB; healthy after {:.0} ms, RSS {:.1} MB",
            ms(server.started_in),
            server.rss_mb()?
        ),
    );
    Ok(())
}

/// (f) One message stored for every one of `n` subscriptions.
async fn wide_fanout(
    binary: &std::path::Path,
    n: u64,
    clients: usize,
    table: &mut Table,
) -> anyhow::Result<()> {
    const QUEUES: u64 = 10;
    const SECONDS: Duration = Duration::from_secs(5);
    const MAX_MESSAGES: u64 = 1_000;
    let server = Server::start(binary, &LAUNCH, common::http_client(1)?).await?;
    let client = Client::with_http(&server.base_url, common::http_client(clients)?)?;
    client.put_topic("fan", &TopicSpec::default()).await?;
    for q in 0..QUEUES {
        client
            .put_queue(&format!("fan{q}"), &QueueSpec::default())
            .await?;
    }
    let c = client.clone();
    spread(n, clients, move |i| {
        let c = c.clone();
        async move {
            let spec = SubscriptionSpec::to_queue(format!("fan{}", i % QUEUES));
            c.put_subscription("fan", &format!("s{i:07}"), &spec)
                .await?;
            Ok(())
        }
    })
    .await?;
    let request: PublishRequest = serde_json::from_value(json!({"message": {"order": 1}}))?;
    let started = Instant::now();
    let mut published = 0;
    while started.elapsed() < SECONDS && published < MAX_MESSAGES {
        client.publish("fan", &request).await?;
        published += 1;
    }
    let took = started.elapsed();
    let mut stored = 0;
    for q in 0..QUEUES {
        stored += client
            .get_queue(&format!("fan{q}"))
            .await?
            .approximate_visible;
    }
    ensure!(
        stored == published * n,
        "{published} publishes to {n} subscriptions stored {stored} messages"
    );
    table.row(
        format!("(f) publish to {n} matching subscriptions, one at a time"),
        format!(
            "{published} publishes in {:.1} s: {:.0} deliveries/s stored ({:.1} ms a publish)",
            took.as_secs_f64(),
            stored as f64 / took.as_secs_f64(),
            ms(took) / published as f64
        ),
    );
    Ok(())
}

/// Messages received and acknowledged in each measurement of (g).
const DRAIN: u64 = 20_000;
/// Messages in the shallow queue of (g): what its drains take, and as many again, so
/// that it never runs dry while measured.
const SHALLOW: u64 = 4 * DRAIN;

/// (g) Receive + ack from a queue of [`SHALLOW`] messages and from one with `n`
/// backlogged, and the backlog across a restart.
async fn deep_backlog(
    binary: &std::path::Path,
    n: u64,
    clients: usize,
    table: &mut Table,
) -> anyhow::Result<()> {
    ensure!(
        n >= 2 * SHALLOW,
        "SCALE_BACKLOG must be at least {}",
        2 * SHALLOW
    );
    let server = Server::start(binary, &LAUNCH, common::http_client(1)?).await?;
    let client = Client::with_http(&server.base_url, common::http_client(clients)?)?;
    for q in ["shallow", "deep"] {
        client.put_queue(q, &QueueSpec::default()).await?;
    }
    fill(&client, "shallow", SHALLOW, clients).await?;
    let took = fill(&client, "deep", n, clients).await?;
    table.row(
        format!("(g) send {n} × 1 KiB to one queue, batches of 10, {clients} clients"),
        format!(
            "{:.1} s ({:.0} messages/s); RSS {:.1} MB",
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64(),
            server.rss_mb()?
        ),
    );
    let mut acked = 0;
    for round in 1..=2 {
        let shallow = drain(&client, "shallow", clients).await?;
        let deep = drain(&client, "deep", clients).await?;
        acked += deep.acked;
        table.row(
            format!(
                "(g) round {round}: receive 10 + ack, {clients} clients, from {SHALLOW} / from {n}"
            ),
            format!(
                "{shallow} / {deep}: ratio {:.2}; RSS {:.1} MB",
                deep.rate / shallow.rate,
                server.rss_mb()?
            ),
        );
    }
    let server = server
        .restart(binary, &LAUNCH, common::http_client(1)?, &[])
        .await?;
    let started_in = server.started_in;
    let rss = server.rss_mb()?;
    let client = Client::with_http(&server.base_url, common::http_client(clients)?)?;
    let left = client.get_queue("deep").await?.approximate_visible;
    ensure!(
        left == n - acked,
        "{left} messages visible after the restart, not {}",
        n - acked
    );
    let again = drain(&client, "deep", clients).await?;
    table.row(
        format!("(g) killed and started again with {left} backlogged"),
        format!(
            "healthy after {:.0} ms, RSS {rss:.1} MB; receive + ack {again}",
            ms(started_in)
        ),
    );
    Ok(())
}

/// Sends `n` messages of 1 KiB to `queue` in batches of 10.
async fn fill(client: &Client, queue: &str, n: u64, clients: usize) -> anyhow::Result<Duration> {
    ensure!(
        n.is_multiple_of(10),
        "messages are sent 10 at a time: {n} is not a multiple"
    );
    let message: switchyard::wire::SendRequest =
        serde_json::from_value(json!({ "message": "x".repeat(1022) }))?;
    let batch = Arc::new(vec![message; 10]);
    let (c, queue) = (client.clone(), queue.to_string());
    spread(n / 10, clients, move |_| {
        let (c, queue, batch) = (c.clone(), queue.clone(), batch.clone());
        async move {
            let r = c.send_batch(&queue, &batch).await?;
            ensure!(r.failed.is_empty(), "a send failed: {:?}", r.failed);
            Ok(())
        }
    })
    .await
}

/// What one drain of [`DRAIN`] messages measured.
struct Drained {
    /// Messages received and acknowledged: [`DRAIN`], and what the last receives took
    /// beyond.
    acked: u64,
    rate: f64,
    latency: Histogram<u64>,
}

impl std::fmt::Display for Drained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0} messages/s, receive p50 / p99 {:.2} / {:.2} ms",
            self.rate,
            self.latency.value_at_quantile(0.5) as f64 / 1000.0,
            self.latency.value_at_quantile(0.99) as f64 / 1000.0
        )
    }
}

/// Receives and acknowledges [`DRAIN`] messages of `queue`, ten at a time.
async fn drain(client: &Client, queue: &str, clients: usize) -> anyhow::Result<Drained> {
    let request: switchyard::wire::ReceiveRequest =
        serde_json::from_value(json!({"max_messages": 10, "wait_s": 1}))?;
    let taken = Arc::new(AtomicU64::new(0));
    let latency = Arc::new(std::sync::Mutex::new(Histogram::<u64>::new(3)?));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..clients {
        let (c, queue, request) = (client.clone(), queue.to_string(), request.clone());
        let (taken, latency) = (taken.clone(), latency.clone());
        tasks.spawn(async move {
            while taken.load(Ordering::Relaxed) < DRAIN {
                ensure!(
                    started.elapsed() < Duration::from_secs(300),
                    "{queue}: {} of {DRAIN} received in 300 s",
                    taken.load(Ordering::Relaxed)
                );
                let asked = Instant::now();
                let got = c.receive(&queue, &request).await?;
                latency
                    .lock()
                    .expect("never poisoned")
                    .record(asked.elapsed().as_micros() as u64)?;
                let receipts: Vec<String> = got.into_iter().map(|m| m.receipt).collect();
                if !receipts.is_empty() {
                    c.ack(&queue, &receipts).await?;
                    taken.fetch_add(receipts.len() as u64, Ordering::Relaxed);
                }
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.context("a client task")??;
    }
    let took = started.elapsed();
    let latency = latency.lock().expect("never poisoned").clone();
    let acked = taken.load(Ordering::Relaxed);
    Ok(Drained {
        acked,
        rate: acked as f64 / took.as_secs_f64(),
        latency,
    })
}
