//! Benchmark of the function runtime: the cost of invoking a WebAssembly
//! handler, per event in batches, of loading a cached component, and of the
//! deadline mechanism.
//!
//! Run: `cargo bench --bench runtime` (builds the guests in `guests/` first,
//! as the tests do). Prints one table; every loop is bounded.
//! `cargo bench --bench runtime -- single` runs only the measures whose name
//! contains `single` (also: `languages`, `handoff`, `batch`, `load`, `deadline`), for profiling.
//!
//! - single invocation: `Function::invoke` of the `noop` guest (fresh store,
//!   instantiation from the pre-instantiated component, call, teardown) and of
//!   `email` (parses JSON, logs a line), on a current-thread executor;
//! - languages: the `fraud` example in Rust, Python (`guests/python`, componentize-py)
//!   and JavaScript (`guests/js`, componentize-js): its first invocation once loaded
//!   from the compiled-component cache, and a warm invocation (the tools come from
//!   `scripts/test.sh`'s environment);
//! - hand-off: a round trip through tokio's blocking pool, the cost the
//!   alternative design (synchronous guests on a bounded blocking pool) would
//!   add to each invocation;
//! - batch: `Function::invoke_batch` of 100 events to `noop`, per event;
//! - cached load: `Runtime::load` of `noop` served from the disk cache
//!   (digest check, mapping, import checks, pre-instantiation);
//! - deadline cost: the same CPU-bound kernels (each about 0.1 s of work) on
//!   engines with and without epoch interruption, the first with the ticker
//!   running and a deadline callback as in the runtime: a worst case (a loop
//!   calling a tiny function) and a byte-scanning loop like parsing;
//! - publish-to-handler latency: a server in this process (embedded store in a
//!   temporary directory) with the `email` guest subscribed to a topic; events are
//!   published over HTTP at a fixed rate (open loop, evenly spaced by a pacer
//!   thread, from a runtime of the load generator's own) and each is timed from when
//!   the request goes out until the worker has run the handler (seen through the log
//!   line the router emits for it), so the time includes the durable store of the
//!   publish, the worker's wake-up and the invocation.

#[path = "../tests/it/guests.rs"]
mod guests;
#[path = "common/pace.rs"]
mod pace;

// The allocator of the `switchyard` binary, so invocations allocate as they do in the server.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use switchyard::runtime::{
    Body, EPOCH_TICK, Event, Function, FunctionLimits, Runtime, RuntimeConfig,
};
use wasmtime::{Config, Engine, Instance, Module, Store, UpdateDeadline};

/// Rounds a single-event measurement is split into; the median round is reported.
const ROUNDS: u32 = 9;
/// Invocations per single-event measurement.
const SINGLE_ITERATIONS: u32 = 20_000;
/// Batches per batch measurement.
const BATCH_ITERATIONS: u32 = 1_000;
/// Events per batch.
const BATCH_SIZE: usize = 100;
/// Invocations per language in the languages measure (an interpreter's take milliseconds).
const LANGUAGE_ITERATIONS: u32 = 1_000;
/// Cached loads measured.
const LOAD_ITERATIONS: u32 = 200;
/// Calls of the kernel per engine; the fastest is kept.
const KERNEL_RUNS: u32 = 5;

fn main() {
    // As the `switchyard` binary does at start, so memory behaves as in the server.
    switchyard::server::disable_transparent_huge_pages();
    let cache = tempfile::tempdir().expect("temporary cache directory");
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeConfig::default()
    })
    .expect("runtime starts");
    let executor = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let noop_bytes = guests::bytes("noop");
    let noop = load(&runtime, "noop", &noop_bytes);
    let email = load(&runtime, "email", &guests::bytes("email"));

    // `cargo bench` passes `--bench`; any other argument selects measures.
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .collect();
    let selected = |name: &str| {
        filters.is_empty() || filters.iter().any(|filter| name.contains(filter.as_str()))
    };

    println!(
        "runtime benchmark ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    row("measure", "result".to_string(), "target");
    if selected("single") {
        let single_noop = executor.block_on(per_invocation(&noop, SINGLE_ITERATIONS));
        row(
            "single invocation, noop guest",
            micros(single_noop),
            "<= 10 µs",
        );
        let single_email = executor.block_on(per_invocation(&email, SINGLE_ITERATIONS / 4));
        row(
            "single invocation, email guest (JSON + log)",
            micros(single_email),
            "",
        );
    }
    if selected("languages") {
        for (language, bytes) in [
            ("Rust", guests::bytes("fraud")),
            ("Python", read(guests::python("fraud"))),
            ("JavaScript", read(guests::js("fraud"))),
        ] {
            // Compiled into the cache once, then loaded from it as a restarted server does.
            load(&runtime, "fraud", &bytes);
            let fraud = load(&runtime, "fraud", &bytes);
            let started = Instant::now();
            let first = executor.block_on(fraud.invoke(event(0)));
            let cold = started.elapsed();
            assert!(first.outcome.is_ok(), "{:?}", first.outcome);
            let warm = executor.block_on(per_invocation(&fraud, LANGUAGE_ITERATIONS));
            row(
                &format!("fraud example in {language}: first / warm invocation"),
                format!(
                    "{:.2} / {:.3} ms",
                    cold.as_secs_f64() * 1e3,
                    warm.as_secs_f64() * 1e3
                ),
                if language == "Rust" {
                    ""
                } else {
                    "warm < 1 ms"
                },
            );
        }
    }
    if selected("handoff") {
        let handoff = executor.block_on(per_blocking_handoff(SINGLE_ITERATIONS));
        row(
            "for comparison: hand-off to a blocking pool",
            micros(handoff),
            "",
        );
    }
    if selected("batch") {
        let batch = executor.block_on(per_batch(&noop, BATCH_ITERATIONS)) / BATCH_SIZE as u32;
        row(
            "batch of 100, noop guest, per event",
            micros(batch),
            "<= 1 µs",
        );
    }
    if selected("load") {
        let cached_load = per_cached_load(&runtime, &noop_bytes);
        row(
            "load from the disk cache, noop guest",
            format!("{:.2} ms", cached_load.as_secs_f64() * 1e3),
            "< 5 ms",
        );
    }
    if selected("deadline") {
        for (name, wat, turns) in KERNELS {
            let (on, off) = deadline_kernel(wat, *turns);
            let cost = on.as_secs_f64() / off.as_secs_f64() - 1.0;
            let result = format!("{:+.1} %", cost * 100.0);
            let detail = format!(
                "deadline cost, {name} kernel ({:.0} vs {:.0} ms)",
                on.as_secs_f64() * 1e3,
                off.as_secs_f64() * 1e3
            );
            row(&detail, result, "< 15 %");
        }
    }
    if selected("latency") {
        let (q, missing) = publish_to_handler();
        row(
            &format!("publish to handler at {LATENCY_RATE}/s: p50 / p90"),
            format!("{:.2} / {:.2} ms", q[0], q[1]),
            "",
        );
        row(
            &format!("publish to handler at {LATENCY_RATE}/s: p99 / max"),
            format!("{:.2} / {:.2} ms", q[2], q[3]),
            "p99 < 1 ms",
        );
        assert_eq!(missing, 0, "handlers not seen for {missing} events");
    }
}

/// Events per second and length of the latency measure.
const LATENCY_RATE: u64 = 5_000;
const LATENCY_SECONDS: u64 = 5;
/// Most publishes in flight in the latency measure, each on a connection opened before
/// the clock starts (as `wrk` does). Opened on demand instead, a hiccup (a slow sync of
/// this shared disk, which the publish's answer waits for) made the tool open hundreds of
/// connections at once, and the in-process server paid for accepting them: the tool's own
/// stall. The handler does not wait for the sync, so neither should the next publish:
/// enough connections that a publisher sending 5,000 a second is not held up by answers
/// for as long as this disk's slowest syncs (hundreds of milliseconds).
const LATENCY_IN_FLIGHT: usize = 4096;

/// When the handler of each message id was seen to have run.
#[derive(Clone)]
struct HandlerSeen(Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for HandlerSeen {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        struct Id(Option<String>);
        impl tracing::field::Visit for Id {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message_id" {
                    self.0 = Some(format!("{value:?}"));
                }
            }
        }
        if !event.metadata().target().starts_with("switchyard::deliver") {
            return;
        }
        let now = Instant::now();
        let mut id = Id(None);
        event.record(&mut id);
        if let Some(id) = id.0 {
            self.0.lock().unwrap().entry(id).or_insert(now);
        }
    }
}

/// p50/p90/p99/max in ms of publish-to-handler latency at [`LATENCY_RATE`].
fn publish_to_handler() -> (Vec<f64>, usize) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    // Sized for every event up front: the map is filled on the server's threads, and
    // growing it there (a rehash of thousands of keys under its lock) was a stall of the
    // tool's own in the measured tail.
    let seen = HandlerSeen(Arc::new(std::sync::Mutex::new(
        std::collections::HashMap::with_capacity((LATENCY_RATE * LATENCY_SECONDS) as usize),
    )));
    // Only the per-invocation log lines are recorded; nothing is printed.
    let subscriber = tracing_subscriber::registry().with(
        seen.clone()
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO),
    );
    tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let data = tempfile::tempdir().expect("data dir");
        let prepared = switchyard::server::prepare(switchyard::server::Options {
            backend: switchyard::server::BackendChoice::Embedded,
            data_dir: data.path().to_path_buf(),
            compiled_cache: None,
            config: None,
            token: None,
            token_metrics: false,
            deny_private_endpoints: false,
            otlp_endpoint: None,
            min_free_disk: 0,
        })
        .await
        .unwrap_or_else(|_| panic!("server prepares"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listener_address = listener.local_addr().unwrap();
        let base = format!("http://{listener_address}/v1");
        let stop = tokio_util::sync::CancellationToken::new();
        let server = {
            let stop = stop.clone();
            tokio::spawn(switchyard::server::run(listener, prepared, async move {
                stop.cancelled().await
            }))
        };
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let module = guests::path("email").to_string_lossy().into_owned();
        for (path, body) in [
            ("/topics/orders", serde_json::json!({})),
            (
                "/functions/email",
                serde_json::json!({"module": module, "concurrency": 16}),
            ),
            (
                "/topics/orders/subscriptions/email",
                serde_json::json!({"endpoint": {"function": "email"}}),
            ),
        ] {
            let r = http
                .put(format!("{base}{path}"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{path}: {}", r.status());
        }
        let url = format!("{base}/topics/orders/publish");
        let health = format!("http://{listener_address}/healthz");
        // The load generator runs on a thread of its own, as a separate client would: the
        // server's runtime does only the server's work.
        let sent = tokio::task::spawn_blocking(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(publish_at_rate(url, health))
        })
        .await
        .expect("load generator");
        // Wait (bounded) for the last handlers.
        let deadline = Instant::now() + Duration::from_secs(30);
        while seen.0.lock().unwrap().len() < sent.len() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.cancel();
        let _ = server.await;
        let seen = seen.0.lock().unwrap();
        let mut h = hdrhistogram::Histogram::<u64>::new(3).unwrap();
        let mut missing = 0;
        for (id, at) in &sent {
            match seen.get(id) {
                Some(t) => h.record(t.duration_since(*at).as_micros() as u64).unwrap(),
                None => missing += 1,
            }
        }
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1e3;
        (
            vec![ms(0.5), ms(0.9), ms(0.99), h.max() as f64 / 1e3],
            missing,
        )
    })
}

/// Publishes `LATENCY_RATE` events a second for `LATENCY_SECONDS`, open loop; returns each
/// event's message id and when its request went out.
async fn publish_at_rate(url: String, health: String) -> Vec<(String, Instant)> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(LATENCY_IN_FLIGHT)
        .build()
        .unwrap();
    let mut warm = tokio::task::JoinSet::new();
    for _ in 0..LATENCY_IN_FLIGHT {
        let (http, health) = (http.clone(), health.clone());
        warm.spawn(async move { http.get(health).send().await.expect("health").status() });
    }
    while let Some(status) = warm.join_next().await {
        assert!(status.expect("warm-up").is_success());
    }
    let total = LATENCY_RATE * LATENCY_SECONDS;
    let mut ticks = pace::pace(LATENCY_RATE, total);
    let slots = Arc::new(tokio::sync::Semaphore::new(LATENCY_IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    let mut i = 0u64;
    while ticks.recv().await.is_some() {
        i += 1;
        // Timed from here rather than from when the tick was due: the pacer's lateness is
        // this tool's, not the server's. Waiting for a free connection counts.
        let at = Instant::now();
        let (http, url, slots) = (http.clone(), url.clone(), slots.clone());
        tasks.spawn(async move {
            let _slot = slots.acquire_owned().await.expect("never closed");
            let body = serde_json::json!({"message": {
                "order_id": format!("o-{i}"),
                "customer_email": "buyer@example.com",
            }});
            let r = http.post(url).json(&body).send().await.expect("publish");
            let v: serde_json::Value = r.json().await.expect("answer");
            (
                v["message_id"].as_str().expect("message id").to_string(),
                at,
            )
        });
    }
    let mut sent = Vec::with_capacity(total as usize);
    while let Some(r) = tasks.join_next().await {
        sent.push(r.unwrap());
    }
    sent
}

fn row(measure: &str, result: String, target: &str) {
    println!("{measure:<52} {result:>12}   {target}");
}

fn read(path: std::path::PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

fn micros(duration: Duration) -> String {
    format!("{:.2} µs", duration.as_secs_f64() * 1e6)
}

fn load(runtime: &Runtime, name: &str, bytes: &[u8]) -> Function {
    runtime
        .load(name, bytes, FunctionLimits::default(), BTreeMap::new())
        .unwrap_or_else(|error| panic!("loading {name}: {error}"))
}

fn event(i: usize) -> Event {
    Event {
        id: format!("evt-{i}"),
        topic: "orders".into(),
        subscription: "bench".into(),
        attributes: Vec::new(),
        body: Body::Text(format!(
            r#"{{"order_id":"o-{i}","customer_email":"ada@example.com","total":12.5,"country":"DE","items":1}}"#
        )),
        published_at_ms: 1_700_000_000_000,
        receive_count: 1,
    }
}

/// Mean time of one `invoke`, after a warm-up of a tenth of the iterations.
async fn per_invocation(function: &Function, iterations: u32) -> Duration {
    for i in 0..iterations / 10 {
        assert!(function.invoke(event(i as usize)).await.outcome.is_ok());
    }
    // The median of several rounds: on a shared host one round can lose its core for a
    // while, which a single mean over all calls would fold in.
    let per_round = (iterations / ROUNDS).max(1);
    let mut rounds = Vec::with_capacity(ROUNDS as usize);
    for round in 0..ROUNDS {
        let events: Vec<Event> = (0..per_round)
            .map(|i| event((round * per_round + i) as usize))
            .collect();
        let started = Instant::now();
        for event in events {
            let invocation = function.invoke(event).await;
            assert!(invocation.outcome.is_ok(), "{:?}", invocation.outcome);
            black_box(invocation);
        }
        rounds.push(started.elapsed() / per_round);
    }
    rounds.sort();
    rounds[rounds.len() / 2]
}

/// Mean round trip of an empty closure through tokio's blocking pool: what
/// running guests synchronously on a bounded blocking pool would add to every
/// invocation, against the fiber switch of async execution.
async fn per_blocking_handoff(iterations: u32) -> Duration {
    let started = Instant::now();
    for i in 0..iterations {
        black_box(
            tokio::task::spawn_blocking(move || black_box(i))
                .await
                .unwrap(),
        );
    }
    started.elapsed() / iterations
}

/// Mean time of one `invoke_batch` of [`BATCH_SIZE`] events.
async fn per_batch(function: &Function, iterations: u32) -> Duration {
    let batches: Vec<Vec<Event>> = (0..iterations as usize)
        .map(|b| (0..BATCH_SIZE).map(|i| event(b * BATCH_SIZE + i)).collect())
        .collect();
    let warm: Vec<Event> = (0..BATCH_SIZE).map(event).collect();
    assert!(function.invoke_batch(warm).await.outcome.is_ok());
    let started = Instant::now();
    for batch in batches {
        let invocation = function.invoke_batch(batch).await;
        assert_eq!(invocation.outcome, Ok(Vec::new()));
        black_box(invocation);
    }
    started.elapsed() / iterations
}

/// Mean time of a `load` served from the disk cache.
fn per_cached_load(runtime: &Runtime, bytes: &[u8]) -> Duration {
    let hits_before = runtime.cache_stats().hits;
    let started = Instant::now();
    for _ in 0..LOAD_ITERATIONS {
        let function = load(runtime, "noop", bytes);
        assert!(function.from_cache());
        black_box(function);
    }
    let elapsed = started.elapsed() / LOAD_ITERATIONS;
    assert_eq!(
        runtime.cache_stats().hits - hits_before,
        u64::from(LOAD_ITERATIONS)
    );
    elapsed
}

/// Two CPU-bound kernels, each exported as `run(n) -> i64`:
/// - `call-loop`: a loop calling a tiny function each turn, the worst case
///   for epoch checks (one on every function entry and loop back-edge, with
///   almost no work between them);
/// - `scan`: FNV-1a over a 64 KiB buffer, byte by byte, `n` times: the shape
///   of parsing and hashing, what handlers mostly do.
const KERNELS: &[(&str, &str, i64)] = &[
    (
        "call-loop",
        r#"
(module
  (func $step (param i64 i64) (result i64)
    (i64.add (i64.mul (local.get 0) (i64.const 6364136223846793005)) (local.get 1)))
  (func (export "run") (param $n i64) (result i64)
    (local $i i64) (local $acc i64)
    (loop $turn
      (local.set $acc (call $step (local.get $acc) (local.get $i)))
      (local.set $i (i64.add (local.get $i) (i64.const 1)))
      (br_if $turn (i64.lt_s (local.get $i) (local.get $n))))
    (local.get $acc)))
"#,
        50_000_000,
    ),
    (
        "scan",
        r#"
(module
  (memory 1)
  (func (export "run") (param $n i64) (result i64)
    (local $round i64) (local $at i32) (local $hash i64)
    (local.set $hash (i64.const 0xcbf29ce484222325))
    (loop $rounds
      (local.set $at (i32.const 0))
      (loop $bytes
        (local.set $hash
          (i64.mul
            (i64.xor (local.get $hash) (i64.load8_u (local.get $at)))
            (i64.const 0x100000001b3)))
        (i32.store8 (local.get $at) (i32.wrap_i64 (local.get $hash)))
        (local.set $at (i32.add (local.get $at) (i32.const 1)))
        (br_if $bytes (i32.lt_u (local.get $at) (i32.const 65536))))
      (local.set $round (i64.add (local.get $round) (i64.const 1)))
      (br_if $rounds (i64.lt_s (local.get $round) (local.get $n))))
    (local.get $hash)))
"#,
        400,
    ),
];

/// Fastest run of a kernel with and without epoch interruption.
fn deadline_kernel(wat: &str, turns: i64) -> (Duration, Duration) {
    let wasm = wat::parse_str(wat).expect("valid kernel");
    let run = |epoch: bool| -> Duration {
        let mut config = Config::new();
        // Compiled as the runtime compiles guests.
        config
            .epoch_interruption(epoch)
            .compiler_inlining(wasmtime::Inlining::Yes);
        let engine = Engine::new(&config).unwrap();
        let module = Module::new(&engine, &wasm).unwrap();
        let mut store = Store::new(&engine, ());
        let ticking = Arc::new(AtomicBool::new(epoch));
        let ticker = {
            let (engine, ticking) = (engine.clone(), ticking.clone());
            std::thread::spawn(move || {
                while ticking.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
        };
        if epoch {
            store.set_epoch_deadline(1);
            store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Continue(1)));
        }
        let instance = Instance::new(&mut store, &module, &[]).unwrap();
        let kernel = instance
            .get_typed_func::<i64, i64>(&mut store, "run")
            .unwrap();
        let fastest = (0..KERNEL_RUNS)
            .map(|_| {
                let started = Instant::now();
                black_box(kernel.call(&mut store, black_box(turns)).unwrap());
                started.elapsed()
            })
            .min()
            .expect("at least one run");
        ticking.store(false, Ordering::Relaxed);
        ticker.join().unwrap();
        fastest
    };
    (run(true), run(false))
}
