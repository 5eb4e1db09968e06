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
//! - (d) removing 1,000 of the subscriptions: the rate.

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
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..clients {
        let (client, next) = (client.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= REMOVALS.min(added) {
                    return anyhow::Ok(());
                }
                client
                    .delete_subscription("wide", &format!("s{i:08}"))
                    .await
                    .with_context(|| format!("remove subscription {i}"))?;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.context("a removing task")??;
    }
    table.row(
        format!("(d) remove {REMOVALS} of them, {clients} clients"),
        format!(
            "{:.0}/s",
            REMOVALS.min(added) as f64 / started.elapsed().as_secs_f64()
        ),
    );

    table.print("switchyard at scale (loopback; the load generator shares the machine)");
    Ok(())
}
