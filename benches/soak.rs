//! Soak: mixed load on the real binary for a long time, with a row a minute of what would
//! grow if something leaked, so that "flat" can be read off the table.
//!
//! Run: `cargo bench --bench soak`. Loopback only; the load stops after `SOAK_MINUTES`.
//!
//! | variable       | default   | meaning                                                |
//! |----------------|-----------|--------------------------------------------------------|
//! | `SOAK_MINUTES` | 30        | how long the load runs                                 |
//! | `SOAK_RATE`    | 200       | publishes a second (open loop, evenly spaced)          |
//! | `SWITCHYARD_BIN` | (cargo's) | server binary to measure instead                     |
//!
//! The load, all at once: publishes of 1 KiB events at `SOAK_RATE`, each fanned out to two
//! queues (raw), a webhook (a receiver in this process) and a function (the `noop` guest);
//! two consumers receiving and acking those queues; sends to a third queue at half the
//! rate with a consumer of its own; stream puts (5 records every 100 ms) with a consumer
//! group polling and checkpointing. A row each minute: the server's RSS and open files,
//! the data directory's size, publish latency (p50, p99, max over that minute), what
//! waits in the queues, and what was delivered and consumed.

#[path = "common/mod.rs"]
mod common;
// Only `path` is used here; the tests use the rest.
#[allow(dead_code)]
#[path = "../tests/it/guests.rs"]
mod guests;

use std::path::Path;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use common::{HealthPoll, Launch, Server, Table, env_var, http_client, server_binary};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use switchyard::client::Client;
use switchyard::wire::{PublishRequest, ReceiveRequest, SendRequest};

const LAUNCH: Launch = Launch {
    data_dir_prefix: "switchyard-soak-",
    // Per-request logging would measure the logger.
    log_level: "warn",
    health_poll: HealthPoll::Every(Duration::from_millis(10)),
};
/// Publishes in flight at most; more wait (and are late, which the latency shows).
const MAX_IN_FLIGHT: usize = 256;
const REPORT_EVERY: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    common::main("soak", run)
}

/// Counters the load keeps.
#[derive(Default)]
struct Counts {
    published: AtomicU64,
    refused: AtomicU64,
    consumed: AtomicU64,
    webhooks: AtomicU64,
    records: AtomicU64,
}

async fn run() -> anyhow::Result<()> {
    let minutes: u64 = env_var("SOAK_MINUTES", 30_u64).max(1);
    let rate: u64 = env_var("SOAK_RATE", 200_u64).max(1);
    let binary = server_binary();
    eprintln!(
        "soak: {minutes} min at {rate} publishes/s, server {}",
        binary.display()
    );
    let http = http_client(MAX_IN_FLIGHT)?;
    let server = Server::start(&binary, &LAUNCH, http.clone()).await?;
    let client = Client::with_http(&server.base_url, http.clone())?;
    let counts = Arc::new(Counts::default());
    let hook = start_receiver(counts.clone())?;
    setup(&server, &http, &hook).await?;

    let latency = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let total = minutes * 60 * rate;
    let mut tasks = tokio::task::JoinSet::new();
    {
        let (client, counts, latency) = (client.clone(), counts.clone(), latency.clone());
        tasks.spawn(async move { publish(client, counts, latency, rate, total).await });
    }
    for queue in ["a", "b", "work"] {
        let (client, counts) = (client.clone(), counts.clone());
        tasks.spawn(async move { consume(client, counts, queue).await });
    }
    {
        let client = client.clone();
        tasks.spawn(async move { send(client, rate / 2).await });
    }
    {
        let (http, base, counts) = (http.clone(), server.base_url.clone(), counts.clone());
        tasks.spawn(async move { stream(http, base, counts).await });
    }

    let mut table = Table::default();
    let started = Instant::now();
    for minute in 1..=minutes {
        tokio::time::sleep_until((started + REPORT_EVERY * minute as u32).into()).await;
        let lat = std::mem::replace(&mut *latency.lock().unwrap(), Histogram::new(3)?);
        let queued = depth(&client, &["a", "b", "work"]).await;
        table.row(
            format!("minute {minute:>2}"),
            format!(
                "RSS {:.1} MB, {} open files, data {:.1} MB; publish p50 {:.2} ms p99 {:.2} ms max {:.2} ms ({} publishes, {} refused); queued {queued}; consumed {}, webhooks {}, stream records {}",
                server.rss_mb()?,
                server.open_files()?,
                dir_bytes(server.data_dir()) as f64 / 1e6,
                lat.value_at_quantile(0.5) as f64 / 1e3,
                lat.value_at_quantile(0.99) as f64 / 1e3,
                lat.max() as f64 / 1e3,
                lat.len(),
                counts.refused.load(Ordering::Relaxed),
                counts.consumed.load(Ordering::Relaxed),
                counts.webhooks.load(Ordering::Relaxed),
                counts.records.load(Ordering::Relaxed),
            ),
        );
    }
    tasks.abort_all();
    table.print(&format!(
        "soak: {minutes} min, {rate} publishes/s fanned out to 2 queues, a webhook and a function; sends at {}/s; 50 stream records/s",
        rate / 2
    ));
    Ok(())
}

async fn setup(server: &Server, http: &reqwest::Client, hook: &str) -> anyhow::Result<()> {
    let put = |path: String, body: Value| {
        let http = http.clone();
        let url = format!("{}{path}", server.base_url);
        async move {
            let res = http.put(&url).json(&body).send().await?;
            anyhow::ensure!(res.status().is_success(), "PUT {url}: {}", res.status());
            anyhow::Ok(())
        }
    };
    put("/v1/topics/orders".into(), json!({})).await?;
    for q in ["a", "b", "work"] {
        put(format!("/v1/queues/{q}"), json!({})).await?;
    }
    for q in ["a", "b"] {
        put(
            format!("/v1/topics/orders/subscriptions/{q}"),
            json!({"endpoint": {"queue": q}, "raw_message_delivery": true}),
        )
        .await?;
    }
    put(
        "/v1/topics/orders/subscriptions/hook".into(),
        json!({"endpoint": {"http": {"url": hook}}}),
    )
    .await?;
    put(
        "/v1/functions/noop".into(),
        json!({"module": guests::path("noop").to_string_lossy()}),
    )
    .await?;
    put(
        "/v1/topics/orders/subscriptions/fn".into(),
        json!({"endpoint": {"function": "noop"}}),
    )
    .await?;
    put("/v1/streams/clicks".into(), json!({"shards": 2})).await?;
    put(
        "/v1/streams/clicks/groups/g".into(),
        json!({"start_position": "trim_horizon"}),
    )
    .await?;
    server.ready_after(Duration::from_secs(120)).await?;
    Ok(())
}

async fn publish(
    client: Client,
    counts: Arc<Counts>,
    latency: Arc<Mutex<Histogram<u64>>>,
    rate: u64,
    total: u64,
) {
    let body = json!({"order": "x".repeat(1000)});
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut ticks = common::pace::pace(rate, total);
    while let Some(due) = ticks.recv().await {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (client, counts, latency, body) = (
            client.clone(),
            counts.clone(),
            latency.clone(),
            body.clone(),
        );
        tokio::spawn(async move {
            let ok = client
                .publish("orders", &PublishRequest::new(body))
                .await
                .is_ok();
            let took = due.elapsed().as_micros() as u64;
            drop(slot);
            let counter = if ok {
                &counts.published
            } else {
                &counts.refused
            };
            counter.fetch_add(1, Ordering::Relaxed);
            let _ = latency.lock().unwrap().record(took.max(1));
        });
    }
}

async fn consume(client: Client, counts: Arc<Counts>, queue: &'static str) {
    loop {
        let Ok(got) = client
            .receive(queue, &ReceiveRequest::new(10).wait_s(1))
            .await
        else {
            continue;
        };
        let receipts: Vec<String> = got.iter().map(|m| m.receipt.clone()).collect();
        if !receipts.is_empty() && client.ack(queue, &receipts).await.is_ok() {
            counts
                .consumed
                .fetch_add(receipts.len() as u64, Ordering::Relaxed);
        }
    }
}

async fn send(client: Client, rate: u64) {
    let mut ticks = common::pace::pace(rate.max(1), u64::MAX);
    let body = json!({"job": "y".repeat(500)});
    while ticks.recv().await.is_some() {
        let _ = client.send("work", &SendRequest::new(body.clone())).await;
    }
}

async fn stream(http: reqwest::Client, base: String, counts: Arc<Counts>) {
    let mut every = tokio::time::interval(Duration::from_millis(100));
    let group = format!("{base}/v1/streams/clicks/groups/g");
    for n in 0_u64.. {
        every.tick().await;
        let records: Vec<Value> = (0..5)
            .map(|k| json!({"partition_key": format!("k{}", (n + k) % 11), "data": {"n": n, "k": k}}))
            .collect();
        let _ = http
            .post(format!("{base}/v1/streams/clicks/records"))
            .json(&json!({ "records": records }))
            .send()
            .await;
        let Ok(res) = http
            .post(format!("{group}/poll"))
            .json(&json!({"member": "m", "max_records": 100}))
            .send()
            .await
        else {
            continue;
        };
        let Ok(page) = res.json::<Value>().await else {
            continue;
        };
        let mut last = std::collections::BTreeMap::new();
        for r in page["records"].as_array().into_iter().flatten() {
            counts.records.fetch_add(1, Ordering::Relaxed);
            if let Some(shard) = r["shard_id"].as_str() {
                last.insert(shard.to_string(), r["sequence"].clone());
            }
        }
        for (shard, sequence) in last {
            let _ = http
                .post(format!("{group}/checkpoint"))
                .json(&json!({"member": "m", "shard_id": shard, "sequence": sequence}))
                .send()
                .await;
        }
    }
}

/// Messages waiting or in flight in `queues`, together.
async fn depth(client: &Client, queues: &[&str]) -> u64 {
    let mut sum = 0;
    for q in queues {
        if let Ok(info) = client.get_queue(q).await {
            sum += info.approximate_visible + info.approximate_in_flight;
        }
    }
    sum
}

fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            // Allocated blocks: the log's zero-filled segments count as what they hold.
            Ok(m) => std::os::unix::fs::MetadataExt::blocks(&m) * 512,
            Err(_) => 0,
        })
        .sum()
}

/// A webhook receiver on its own thread that counts what arrives; returns its URL.
fn start_receiver(counts: Arc<Counts>) -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("bind the receiver")?;
    listener.set_nonblocking(true)?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("build the receiver runtime");
        runtime.block_on(async move {
            let app = axum::Router::new().fallback(move || {
                counts.webhooks.fetch_add(1, Ordering::Relaxed);
                async { axum::http::StatusCode::OK }
            });
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            let _ = axum::serve(listener, app).await;
        });
    });
    Ok(url)
}
