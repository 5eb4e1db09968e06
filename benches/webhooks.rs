//! Webhook benchmark: starts the real `switchyard` binary (built with the bench profile) on
//! loopback and measures HTTP delivery end to end into a fast receiver in this process.
//!
//! Run: `cargo bench --bench webhooks`. Every phase is bounded in time and count, and only
//! loopback addresses are used.
//!
//! | variable               | default   | meaning                                            |
//! |------------------------|-----------|----------------------------------------------------|
//! | `WEBHOOKS_EVENTS`      | 50000     | events published per run                           |
//! | `WEBHOOKS_CONNECTIONS` | 4         | concurrent batch-publish requests                  |
//! | `WEBHOOKS_CONCURRENCY` | 64        | the subscriptions' `max_concurrency`               |
//! | `SWITCHYARD_BIN`       | (cargo's) | server binary to measure instead                   |
//!
//! Runs, each on a fresh server and data dir:
//! - (a) healthy: one `http` subscription to a receiver (axum on port 0, its own one-thread
//!   runtime, answering 200); `WEBHOOKS_EVENTS` events are batch-published (100 per
//!   request) and the rate is events over the time from the first publish until the
//!   receiver has seen every message id;
//! - (b), (c) beside a dead endpoint: the same, plus a second subscription of the same topic
//!   to a closed port (server-default `max_concurrency`, a dead-letter queue) with a retry
//!   policy, so every event also fails and is rescheduled there: (b) with SNS's default
//!   schedule (3 retries, 20 s apart), (c) with retries 1 s apart, which keeps the dead
//!   endpoint's retries inside the run. Reported is the healthy subscription's rate and its
//!   ratio to (a) (target: at least 0.9; a dead endpoint costs the healthy one at most 10%).
//!
//! The target for (a) is at least 20,000 deliveries/s.

#[path = "common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use bytes::Bytes;
use serde_json::{Value, json};
use switchyard::client::Client;
use switchyard::wire::{BatchResult, MAX_BATCH_ENTRIES, TopicSpec};
use tokio::task::JoinSet;

use common::{HealthPoll, Launch, Server, Table, env_var, http_client, server_binary};

/// Size of the `pad` string of each event: a small, typical webhook payload.
const EVENT_PAD: usize = 200;
/// Longest a run may take from the first publish to the last delivery.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);
/// How often the tool looks at the receiver's count.
const CHECK_INTERVAL: Duration = Duration::from_millis(1);
/// Rate the healthy run should reach.
const TARGET_RATE: f64 = 20_000.0;
/// Least share of the healthy rate the run beside a dead endpoint should keep.
const TARGET_RATIO: f64 = 0.9;
/// How the server is started.
const LAUNCH: Launch = Launch {
    data_dir_prefix: "switchyard-bench-",
    // Per-request logging would measure the logger; failed attempts to the dead endpoint
    // log a warning each.
    log_level: "error",
    health_poll: HealthPoll::Every(Duration::from_millis(10)),
};

fn main() -> ExitCode {
    // The load generator runs on one thread; the receiver has its own.
    common::main("webhooks", || run(Settings::from_env()))
}

/// What to run, from the environment.
struct Settings {
    events: u64,
    connections: usize,
    concurrency: u32,
    binary: PathBuf,
}

impl Settings {
    fn from_env() -> Self {
        Settings {
            events: env_var("WEBHOOKS_EVENTS", 50_000_u64).max(1),
            connections: env_var("WEBHOOKS_CONNECTIONS", 4_usize).max(1),
            concurrency: env_var("WEBHOOKS_CONCURRENCY", 64_u32).clamp(1, 256),
            binary: server_binary(),
        }
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let mut table = Table::default();
    eprintln!("webhooks: server binary {}", settings.binary.display());
    let receiver = Receiver::start()?;

    let healthy = delivery_run(&settings, &receiver, None).await?;
    let healthy_rate = healthy.rate();
    table.row(
        format!(
            "(a) one fast endpoint, max_concurrency {}",
            settings.concurrency
        ),
        format!(
            "{healthy_rate:.0} deliveries/s end to end, {} events in {:.2} s (published in {:.2} s{}; {}); target >= {TARGET_RATE:.0}: {}",
            healthy.events,
            healthy.elapsed.as_secs_f64(),
            healthy.published_in.as_secs_f64(),
            healthy.duplicates_note(),
            healthy.cpu_note(),
            if healthy_rate >= TARGET_RATE {
                "met"
            } else {
                "MISSED"
            }
        ),
    );

    let dead_policies = [
        (
            "(b) beside a dead endpoint, SNS retries (3, 20 s apart)",
            json!({"num_retries": 3, "min_delay_s": 20, "max_delay_s": 20}),
        ),
        (
            "(c) beside a dead endpoint, fast retries (3, 1 s apart)",
            json!({"num_retries": 3, "min_delay_s": 1, "max_delay_s": 1}),
        ),
    ];
    for (what, policy) in dead_policies {
        let beside = delivery_run(&settings, &receiver, Some(policy)).await?;
        let beside_rate = beside.rate();
        let ratio = beside_rate / healthy_rate;
        table.row(
            what.into(),
            format!(
                "{beside_rate:.0} deliveries/s to the healthy one, {} events in {:.2} s (published in {:.2} s{}; {}); ratio to (a) {ratio:.2}, target >= {TARGET_RATIO}: {}",
                beside.events,
                beside.elapsed.as_secs_f64(),
                beside.published_in.as_secs_f64(),
                beside.duplicates_note(),
                beside.cpu_note(),
                if ratio >= TARGET_RATIO {
                    "met"
                } else {
                    "MISSED"
                }
            ),
        );
    }
    table
        .print("switchyard webhooks (loopback; the load generator and receiver share the machine)");
    Ok(())
}

/// What one run measured.
struct RunOutcome {
    /// Events published (the setting rounded up to whole batches).
    events: u64,
    /// From the first publish until the receiver had seen every event.
    elapsed: Duration,
    /// From the first publish until the last publish was answered (all stored).
    published_in: Duration,
    /// CPU time the server used during `elapsed`.
    server_cpu: Duration,
    /// Requests beyond one per message id (redeliveries).
    duplicates: u64,
}

impl RunOutcome {
    fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }

    /// Server CPU per healthy delivery, and how many cores it kept busy on average.
    fn cpu_note(&self) -> String {
        format!(
            "server CPU {:.0} us/delivery, {:.2} cores busy",
            self.server_cpu.as_secs_f64() * 1e6 / self.events as f64,
            self.server_cpu.as_secs_f64() / self.elapsed.as_secs_f64()
        )
    }

    fn duplicates_note(&self) -> String {
        if self.duplicates == 0 {
            String::new()
        } else {
            format!(", {} redelivered", self.duplicates)
        }
    }
}

/// One run on a fresh server: subscribe, publish every event, wait until the receiver has
/// seen each once.
async fn delivery_run(
    settings: &Settings,
    receiver: &Receiver,
    dead_endpoint_policy: Option<Value>,
) -> anyhow::Result<RunOutcome> {
    let server = Server::start(&settings.binary, &LAUNCH, http_client(1)?).await?;
    let http = http_client(settings.connections + 2)?;
    let client = Client::with_http(&server.base_url, http.clone())?;
    client.put_topic("events", &TopicSpec::default()).await?;
    subscribe(
        &http,
        &server,
        "fast",
        json!({"endpoint": {"http": {"url": receiver.url(), "max_concurrency": settings.concurrency}}}),
    )
    .await?;
    if let Some(policy) = dead_endpoint_policy {
        // Bound and dropped: nothing listens there, so every attempt is refused at once.
        let dead = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        // Given-up deliveries land in a dead-letter queue, as a user would set it up.
        client
            .put_queue("dead-letters", &switchyard::wire::QueueSpec::default())
            .await?;
        subscribe(
            &http,
            &server,
            "dead",
            // The server's default max_concurrency: a dead endpoint as most are set up.
            json!({
                "endpoint": {"http": {"url": format!("http://{dead}/hook")}},
                "delivery_policy": policy,
                "dead_letter_queue": "dead-letters"
            }),
        )
        .await?;
    }
    receiver.reset();

    let body = publish_body();
    let url = format!("{}/v1/topics/events/publish-batch", server.base_url);
    let requests = settings.events.div_ceil(MAX_BATCH_ENTRIES as u64);
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let cpu_before = server.cpu_time()?;
    let started = Instant::now();
    let mut publishers = JoinSet::new();
    for _ in 0..settings.connections {
        let (http, url, body) = (http.clone(), url.clone(), body.clone());
        let (next, failed) = (next.clone(), failed.clone());
        publishers.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                let result: BatchResult = http
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                if !result.failed.is_empty() {
                    failed.store(true, Ordering::Relaxed);
                    anyhow::bail!("publish refused: {:?}", result.failed[0]);
                }
            }
            anyhow::Ok(Instant::now())
        });
    }
    // Every request carries a full batch, so the events published are rounded up.
    let published = requests * MAX_BATCH_ENTRIES as u64;
    loop {
        let seen = receiver.distinct();
        if seen >= published {
            break;
        }
        ensure!(!failed.load(Ordering::Relaxed), "a publish was refused");
        ensure!(
            started.elapsed() < RUN_TIMEOUT,
            "{seen} of {published} events delivered within {RUN_TIMEOUT:?}"
        );
        tokio::time::sleep(CHECK_INTERVAL).await;
    }
    let elapsed = started.elapsed();
    let server_cpu = server.cpu_time()? - cpu_before;
    let mut published_at = started;
    while let Some(joined) = publishers.join_next().await {
        published_at = published_at.max(joined.context("publisher task")??);
    }
    Ok(RunOutcome {
        events: published,
        elapsed,
        published_in: published_at - started,
        server_cpu,
        duplicates: receiver.requests() - receiver.distinct(),
    })
}

async fn subscribe(
    http: &reqwest::Client,
    server: &Server,
    name: &str,
    spec: Value,
) -> anyhow::Result<()> {
    let response = http
        .put(format!(
            "{}/v1/topics/events/subscriptions/{name}",
            server.base_url
        ))
        .json(&spec)
        .send()
        .await?;
    let status = response.status();
    ensure!(
        status.is_success(),
        "subscribe {name}: {status} {}",
        response.text().await.unwrap_or_default()
    );
    Ok(())
}

/// One batch-publish body, serialized once: the tool measures the server, not its own
/// JSON encoder. Message ids are the server's, so every request yields new events.
fn publish_body() -> Bytes {
    let entries: Vec<Value> = (0..MAX_BATCH_ENTRIES)
        .map(|i| {
            json!({
                "id": format!("e{i}"),
                "message": {"order": i, "pad": "x".repeat(EVENT_PAD)},
                "attributes": {"kind": "placed"}
            })
        })
        .collect();
    Bytes::from(serde_json::to_vec(&json!({ "entries": entries })).expect("JSON serializes"))
}

/// Counts of what the receiver got.
#[derive(Default)]
struct Seen {
    /// Every request.
    requests: AtomicU64,
    /// Message ids seen, to tell a redelivery from a new event.
    ids: Mutex<HashSet<String>>,
}

/// The fast endpoint: axum on its own one-thread runtime, answering 200 at once.
struct Receiver {
    address: std::net::SocketAddr,
    seen: Arc<Seen>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Receiver {
    fn start() -> anyhow::Result<Receiver> {
        use axum::extract::State;
        use axum::http::{HeaderMap, StatusCode};

        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("bind the receiver")?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let seen = Arc::new(Seen::default());
        let state = seen.clone();
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("build the receiver runtime");
            runtime.block_on(async move {
                let app = axum::Router::new()
                    .fallback(
                        |State(seen): State<Arc<Seen>>, headers: HeaderMap, body: Bytes| async move {
                            std::hint::black_box(body);
                            seen.requests.fetch_add(1, Ordering::Relaxed);
                            if let Some(id) = headers
                                .get("x-switchyard-message-id")
                                .and_then(|value| value.to_str().ok())
                            {
                                seen.ids.lock().expect("not poisoned").insert(id.to_owned());
                            }
                            StatusCode::OK
                        },
                    )
                    .with_state(state);
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = shutdown_rx.await;
                    })
                    .await;
            });
        });
        Ok(Receiver {
            address,
            seen,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.address)
    }

    fn reset(&self) {
        self.seen.requests.store(0, Ordering::Relaxed);
        self.seen.ids.lock().expect("not poisoned").clear();
    }

    fn requests(&self) -> u64 {
        self.seen.requests.load(Ordering::Relaxed)
    }

    fn distinct(&self) -> u64 {
        self.seen.ids.lock().expect("not poisoned").len() as u64
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
