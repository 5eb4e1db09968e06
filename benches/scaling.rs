//! Scaling: how a function consuming a queue keeps up with a backlog as its source's
//! `max_concurrency` grows, for an I/O-bound and a CPU-bound handler.
//!
//! Run: `cargo bench --bench scaling`. Loopback only; every loop is bounded in count and
//! time.
//!
//! | variable              | default   | meaning                                        |
//! |-----------------------|-----------|------------------------------------------------|
//! | `SCALING_MESSAGES`    | 2000      | messages queued for each run                   |
//! | `SCALING_IO_MS`       | 20        | how long the I/O-bound handler's call takes    |
//! | `SCALING_CPU_TURNS`   | 1000      | thousands of additions the CPU-bound handler does per event (about 1 ms) |
//! | `SWITCHYARD_BIN`      | (cargo's) | server binary to measure instead               |
//!
//! The server (the real binary on a fresh data directory) gets a queue holding the
//! messages and a function consuming it in batches of 10 with the source's
//! `max_concurrency` set to each value in turn (the function's own concurrency above it).
//! I/O-bound: the `http-fetch` guest, whose every event GETs an endpoint of this process
//! that answers after `SCALING_IO_MS`, so one batch at a time handles 1000/`SCALING_IO_MS`
//! events a second and N at a time ideally N times that. CPU-bound: the `burn` guest,
//! whose every event does a fixed amount of work (`SCALING_CPU_TURNS`); the ideal is
//! the rate of one batch at a time, measured in the same run, times the cores that N
//! batches can use. The table gives the events per second from
//! the first message handed out to the queue's last ack, against that ideal, and the
//! most batches the source ran at once.

#[path = "common/mod.rs"]
mod common;
// Only `path` is used here; the tests use the rest.
#[allow(dead_code)]
#[path = "../tests/it/guests.rs"]
mod guests;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use common::{HealthPoll, Launch, Server, Table, env_var, http_client, server_binary};
use serde_json::{Value, json};

const LAUNCH: Launch = Launch {
    data_dir_prefix: "switchyard-scaling-",
    // Per-invocation logging would measure the logger.
    log_level: "warn",
    health_poll: HealthPoll::Every(Duration::from_millis(10)),
};
/// Longest one run may take to drain its queue.
const RUN_LIMIT: Duration = Duration::from_secs(300);
/// Longest a function may take to compile.
const LOAD_LIMIT: Duration = Duration::from_secs(120);
/// Messages per invocation, Lambda's default for SQS.
const BATCH: usize = 10;
const IO_CONCURRENCY: [usize; 4] = [1, 4, 16, 64];
const CPU_CONCURRENCY: [usize; 5] = [1, 2, 4, 8, 16];

fn main() -> ExitCode {
    common::main("scaling", run)
}

async fn run() -> anyhow::Result<()> {
    let messages: usize = env_var("SCALING_MESSAGES", 2_000_usize).max(100);
    let io_ms: u64 = env_var("SCALING_IO_MS", 20_u64).max(1);
    let cpu_turns: u64 = env_var("SCALING_CPU_TURNS", 1_000_u64).max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let endpoint = slow_endpoint(Duration::from_millis(io_ms)).await?;
    let http = http_client(8)?;
    let server = Server::start(&server_binary(), &LAUNCH, http.clone()).await?;
    let api = Api {
        http,
        base: server.base_url.clone(),
    };

    let mut table = Table::default();
    table.row(
        "handler, max_concurrency".into(),
        "events/s | ideal | of ideal | peak batches at once".into(),
    );
    let fetch = guests::path("http-fetch");
    for n in IO_CONCURRENCY {
        let env = json!({"url": endpoint});
        let allowed = json!([endpoint.trim_end_matches("/slow")]);
        let r = drain(&api, &fetch, env, allowed, n, messages).await?;
        let ideal = n as f64 * 1000.0 / io_ms as f64;
        table.row(format!("I/O-bound ({io_ms} ms a call), {n}"), r.row(ideal));
    }
    let burn = guests::path("burn");
    let mut one_at_a_time = None;
    for n in CPU_CONCURRENCY {
        let env = json!({"burn_turns": cpu_turns.to_string()});
        let r = drain(&api, &burn, env, json!([]), n, messages).await?;
        let base = *one_at_a_time.get_or_insert(r.events_per_s);
        let ideal = n.min(cores) as f64 * base;
        table.row(
            format!("CPU-bound ({:.0} µs an event alone), {n}", 1e6 / base),
            r.row(ideal),
        );
    }
    table.print(&format!(
        "queue source scaling: {messages} messages, batches of {BATCH}, {cores} cores"
    ));
    Ok(())
}

/// An endpoint on loopback that answers `GET /slow` after `delay`; its URL.
async fn slow_endpoint(delay: Duration) -> anyhow::Result<String> {
    let app = axum::Router::new().route(
        "/slow",
        axum::routing::get(move || async move {
            tokio::time::sleep(delay).await;
            "ok"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/slow", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> anyhow::Result<Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if !body.is_null() {
            req = req.json(&body);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        let status = resp.status();
        let text = resp.text().await?;
        ensure!(status.is_success(), "{method} {path}: {status} {text}");
        Ok(if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)?
        })
    }
}

struct Drained {
    events_per_s: f64,
    peak: u64,
}

impl Drained {
    fn row(&self, ideal: f64) -> String {
        format!(
            "{:>8.0} | {:>7.0} | {:>4.0} % | {}",
            self.events_per_s,
            ideal,
            100.0 * self.events_per_s / ideal,
            self.peak
        )
    }
}

/// Fills a queue, lets a function with `max_concurrency` `n` drain it, and removes both.
async fn drain(
    api: &Api,
    module: &std::path::Path,
    env: Value,
    allowed_hosts: Value,
    n: usize,
    messages: usize,
) -> anyhow::Result<Drained> {
    use reqwest::Method;
    let queue = format!("scaling-{n}");
    api.call(
        Method::PUT,
        &format!("/v1/queues/{queue}"),
        json!({"visibility_timeout_s": 300}),
    )
    .await?;
    let entries: Vec<Value> = (0..BATCH)
        .map(|i| json!({"id": i.to_string(), "message": {"n": i}}))
        .collect();
    for _ in 0..messages / BATCH {
        api.call(
            Method::POST,
            &format!("/v1/queues/{queue}/messages"),
            json!({ "entries": entries }),
        )
        .await?;
    }
    let function = format!("f-{n}");
    api.call(
        Method::PUT,
        &format!("/v1/functions/{function}"),
        json!({"module": module, "env": env, "allowed_hosts": allowed_hosts,
               "timeout_ms": 60000, "concurrency": n.max(4),
               "sources": [{"queue": queue, "batch_size": BATCH, "max_concurrency": n}]}),
    )
    .await?;
    // From the first message handed out (the function compiled, its source polling) to
    // the last ack.
    let put = Instant::now();
    let started = loop {
        let q = api
            .call(Method::GET, &format!("/v1/queues/{queue}"), Value::Null)
            .await?;
        if q["approximate_visible"].as_u64() < Some(messages as u64) {
            break Instant::now();
        }
        ensure!(
            put.elapsed() < LOAD_LIMIT,
            "{function} did not start in time"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let finished = loop {
        let q = api
            .call(Method::GET, &format!("/v1/queues/{queue}"), Value::Null)
            .await?;
        let left = q["approximate_visible"].as_u64().unwrap_or(0)
            + q["approximate_in_flight"].as_u64().unwrap_or(0);
        if left == 0 {
            break started.elapsed();
        }
        ensure!(
            started.elapsed() < RUN_LIMIT,
            "{queue} still held {left} messages after {RUN_LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let f = api
        .call(
            Method::GET,
            &format!("/v1/functions/{function}"),
            Value::Null,
        )
        .await?;
    let status = &f["source_status"][0];
    ensure!(
        status["events"].as_u64() == Some(messages as u64) && status["failed_batches"] == 0,
        "every message handled once, none failed: {status}"
    );
    api.call(
        Method::DELETE,
        &format!("/v1/functions/{function}"),
        Value::Null,
    )
    .await?;
    api.call(Method::DELETE, &format!("/v1/queues/{queue}"), Value::Null)
        .await?;
    Ok(Drained {
        events_per_s: messages as f64 / finished.as_secs_f64(),
        peak: status["peak_concurrency"].as_u64().unwrap_or(0),
    })
}
