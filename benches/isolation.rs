//! Isolation: what a function stuck in a loop at its full concurrency does to the
//! invocations of another function.
//!
//! Run: `cargo bench --bench isolation`. Loopback only; every loop is bounded in count
//! and time.
//!
//! | variable                | default   | meaning                                       |
//! |-------------------------|-----------|-----------------------------------------------|
//! | `ISOLATION_INVOCATIONS` | 3000      | invocations of the measured function a phase  |
//! | `ISOLATION_LOOPERS`     | 8         | the looping function's concurrency            |
//! | `SWITCHYARD_BIN`        | (cargo's) | server binary to measure instead              |
//!
//! The server (the real binary on a fresh data directory) has two functions: `email` (the
//! order example's handler: parses a JSON order, logs a line) and `spin` (a loop that
//! never ends, stopped at its deadline of 2 s). `email` is invoked over HTTP, one call
//! after another, first alone, then while `spin` runs at its full concurrency (each of its
//! invocations that ends is replaced at once, so every permit stays taken). The table
//! gives the latency percentiles of `email` in both phases and the ratio of their p99:
//! the goal is at most 2.

#[path = "common/mod.rs"]
mod common;
// Only `path` is used here; the tests use the rest.
#[allow(dead_code)]
#[path = "../tests/it/guests.rs"]
mod guests;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use common::{HealthPoll, Launch, Server, Table, env_var, http_client, server_binary};
use hdrhistogram::Histogram;
use serde_json::json;
use switchyard::client::Client;
use switchyard::wire::{FunctionState, InvokeRequest};

const LAUNCH: Launch = Launch {
    data_dir_prefix: "switchyard-isolation-",
    // Per-invocation logging would measure the logger.
    log_level: "warn",
    health_poll: HealthPoll::Every(Duration::from_millis(10)),
};
/// The looping function's deadline: each of its invocations holds a permit this long.
const SPIN_TIMEOUT_MS: u64 = 2_000;
/// Longest a phase may take, whatever the number of invocations asked for.
const PHASE_LIMIT: Duration = Duration::from_secs(120);
/// Longest the functions may take to compile.
const LOAD_LIMIT: Duration = Duration::from_secs(120);

fn main() -> ExitCode {
    common::main("isolation", run)
}

async fn run() -> anyhow::Result<()> {
    let invocations: u64 = env_var("ISOLATION_INVOCATIONS", 3_000_u64).max(100);
    let loopers: usize = env_var("ISOLATION_LOOPERS", 8_usize).max(1);
    let binary = server_binary();
    let http = http_client(loopers + 4)?;
    let server = Server::start(&binary, &LAUNCH, http.clone()).await?;
    let client = Client::with_http(&server.base_url, http.clone())?;
    for (name, spec) in [
        (
            "email",
            json!({"module": guests::path("email"), "concurrency": 4}),
        ),
        (
            "spin",
            json!({"module": guests::path("spin"), "concurrency": loopers, "timeout_ms": SPIN_TIMEOUT_MS}),
        ),
    ] {
        let url = format!("{}/v1/functions/{name}", server.base_url);
        let res = http.put(&url).json(&spec).send().await?;
        ensure!(res.status().is_success(), "PUT {url}: {}", res.status());
    }
    for name in ["email", "spin"] {
        let until = Instant::now() + LOAD_LIMIT;
        loop {
            let info = client.get_function(name).await?;
            match info.state {
                FunctionState::Ready => break,
                FunctionState::Failed => anyhow::bail!("{name} did not load: {:?}", info.error),
                FunctionState::Loading => {
                    ensure!(
                        Instant::now() < until,
                        "{name} still loading after {LOAD_LIMIT:?}"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    let order = InvokeRequest {
        message: json!({"order_id": "o-1", "customer_email": "ada@example.com", "total": 42.5}),
        attributes: None,
    };
    // Warm-up: connections, the instance pool's slots, the server's allocator.
    measure(&client, &order, invocations / 10).await?;
    let alone = measure(&client, &order, invocations).await?;

    let looping = Arc::new(AtomicU64::new(0));
    let mut loops = tokio::task::JoinSet::new();
    let stop_looping = Instant::now() + PHASE_LIMIT + Duration::from_millis(SPIN_TIMEOUT_MS);
    for _ in 0..loopers {
        let (client, looping) = (client.clone(), looping.clone());
        loops.spawn(async move {
            let spin = InvokeRequest {
                message: json!("loop"),
                attributes: None,
            };
            while Instant::now() < stop_looping {
                looping.fetch_add(1, Ordering::Relaxed);
                // Each call ends at the deadline with a failure, which is expected.
                let _ = client.invoke("spin", &spin).await;
            }
        });
    }
    // The loops are running once every looper has sent its first call and the server has
    // taken them all: `spin`'s first invocations take a permit each for two seconds, and
    // a measure started before they all run would be partly alone.
    let until = Instant::now() + Duration::from_secs(10);
    while looping.load(Ordering::Relaxed) < loopers as u64 {
        ensure!(Instant::now() < until, "the loops did not start");
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cpu_before = server.cpu_time()?;
    let started = Instant::now();
    let beside = measure(&client, &order, invocations).await?;
    let busy = (server.cpu_time()? - cpu_before).as_secs_f64() / started.elapsed().as_secs_f64();
    loops.abort_all();

    let mut table = Table::default();
    let row = |h: &Histogram<u64>| {
        format!(
            "p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({} calls)",
            h.value_at_quantile(0.5) as f64 / 1e3,
            h.value_at_quantile(0.9) as f64 / 1e3,
            h.value_at_quantile(0.99) as f64 / 1e3,
            h.max() as f64 / 1e3,
            h.len(),
        )
    };
    table.row("email alone".into(), row(&alone));
    table.row(
        format!("email beside spin at its concurrency of {loopers}"),
        row(&beside),
    );
    table.row(
        "server CPU while spin runs (cores busy)".into(),
        format!("{busy:.2}"),
    );
    table.row(
        "p99 beside / p99 alone (goal <= 2)".into(),
        format!(
            "{:.2}",
            beside.value_at_quantile(0.99) as f64 / alone.value_at_quantile(0.99) as f64
        ),
    );
    table.print(&format!(
        "isolation: {invocations} sequential invocations of `email` over HTTP, alone and beside a looping function ({} cores)",
        std::thread::available_parallelism().map_or(0, usize::from)
    ));
    Ok(())
}

/// Invokes `email` `count` times, one after another (within [`PHASE_LIMIT`]); the latency
/// of each call in microseconds.
async fn measure(
    client: &Client,
    order: &InvokeRequest,
    count: u64,
) -> anyhow::Result<Histogram<u64>> {
    let mut latency = Histogram::<u64>::new(3)?;
    let until = Instant::now() + PHASE_LIMIT;
    for _ in 0..count {
        if Instant::now() >= until {
            break;
        }
        let sent = Instant::now();
        let result = client
            .invoke("email", order)
            .await
            .context("invoke email")?;
        latency.record(sent.elapsed().as_micros() as u64)?;
        ensure!(result.ok, "email failed: {:?}", result.error);
    }
    Ok(latency)
}
