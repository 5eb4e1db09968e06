//! Switchyard on JetStream against raw async-nats on the same server: pipelined publish
//! (every message acknowledged by JetStream) and receive + ack, 1 KiB messages, both
//! through the storage layer in-process and end to end through the HTTP API of a
//! `switchyard serve --backend nats://…` process.
//!
//! Run with `cargo bench --bench jetstream`. It starts its own `nats-server -js` on a free
//! loopback port with a temporary store, sends a bounded number of messages, prints a
//! table with the ratio of each Switchyard path to its raw counterpart, and stops the
//! servers. Each measurement runs twice (raw and Switchyard alternating) and the better
//! run counts, which damps the noise of a shared machine.
//!
//! `cargo bench --bench jetstream -- --cluster` does the same on a three-node cluster on
//! loopback with every stream on three replicas (raw and Switchyard alike), the HTTP paths
//! through two routers, and then kills the leader of the queue's stream under a publish
//! load through both routers, printing a timeline: per second, publishes acknowledged and
//! refused and their latency, and at the end whether every acknowledged one is there.

#[allow(dead_code)]
#[path = "../tests/it/nats.rs"]
mod nats;

use async_nats::jetstream;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard::backend::NewMessage;
use switchyard::backend::jetstream::JetStream;
use switchyard::backend::{Backend, Delivery, Queue, QueueKind};
use switchyard::model::QueueSpec;

/// Messages per measurement: enough for a steady rate, few enough to finish in seconds.
const MESSAGES: usize = 20_000;
/// Body size, as the acceptance criterion states.
const BODY_BYTES: usize = 1024;
/// Publishes in flight at once, for both paths.
const IN_FLIGHT: usize = 256;
/// Concurrent receive loops, for both paths.
const RECEIVERS: usize = 4;
/// Messages per receive (SQS's maximum).
const BATCH: usize = 10;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("build a runtime");
    runtime.block_on(run());
}

async fn run() {
    let clustered = std::env::args().any(|a| a == "--cluster");
    let (mut cluster, single, replicas) = if clustered {
        (Some(nats::NatsCluster::start().await), None, 3)
    } else {
        (None, Some(nats::NatsServer::start()), 1)
    };
    let urls: Vec<String> = match (&cluster, &single) {
        (Some(c), _) => c.nodes.iter().map(|n| n.url()).collect(),
        (None, Some(s)) => vec![s.url()],
        (None, None) => unreachable!("one of them was started"),
    };
    let servers = urls.join(",");
    let backend = Arc::new(Backend::JetStream(
        JetStream::connect(&servers, "BENCH", replicas)
            .await
            .expect("connect"),
    ));
    let client = async_nats::connect(urls.as_slice())
        .await
        .expect("connect raw");
    let js = jetstream::new(client);
    let spec = QueueSpec {
        visibility_timeout_s: 60,
        ..QueueSpec::default()
    };
    // Two identical queues: raw async-nats works on one, the backend on the other.
    let raw_q = backend
        .put_queue("raw", spec.clone(), QueueKind::User)
        .await
        .unwrap();
    let sy_q = backend
        .put_queue("sy", spec, QueueKind::User)
        .await
        .unwrap();
    let body = Bytes::from(vec![b'x'; BODY_BYTES]);

    // A third queue takes the raw publishes with message ids; it is purged after each.
    let raw_id_q = backend
        .put_queue("rawid", spec_for_ids(), QueueKind::User)
        .await
        .unwrap();
    let mut publish = (0.0f64, 0.0f64, 0.0f64);
    let mut receive = (0.0f64, 0.0f64);
    for round in 0..2 {
        publish.0 = publish
            .0
            .max(raw_publish(&js, "BENCH.q.raw.m.0", false, &body).await);
        publish.1 = publish
            .1
            .max(raw_publish(&js, "BENCH.q.rawid.m.0", true, &body).await);
        backend.purge(&raw_id_q).await.expect("purge");
        publish.2 = publish
            .2
            .max(sy_publish(&backend, &sy_q, &body, round).await);
        receive.0 = receive.0.max(raw_receive(&js).await);
        receive.1 = receive.1.max(sy_receive(&backend, &sy_q).await);
    }
    let _ = raw_q;

    // End to end: router processes on the same NATS (one, or two on a cluster), a topic
    // with one queue subscription; events published in batches over HTTP, received and
    // acked over HTTP, spread over the routers.
    let routers: Vec<Router> = futures::future::join_all(
        (0..if clustered { 2 } else { 1 }).map(|_| Router::start(&servers, replicas)),
    )
    .await;
    let bases: Vec<String> = routers.iter().map(|r| r.base.clone()).collect();
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(HTTP_CONNECTIONS)
        .build()
        .expect("HTTP client");
    routers[0].setup(&http).await;
    for base in &bases[1..] {
        Router::wait_for_queue(&http, base).await;
    }
    let mut e2e_publish = 0.0f64;
    let mut e2e_receive = 0.0f64;
    for _ in 0..2 {
        e2e_publish = e2e_publish.max(http_publish(&http, &bases, &body).await);
        e2e_receive = e2e_receive.max(http_receive(&http, &bases).await);
    }

    println!();
    let on = if clustered {
        "a 3-node nats-server cluster on loopback, 3 replicas, 2 routers"
    } else {
        "nats-server on loopback"
    };
    println!(
        "Switchyard on JetStream vs raw async-nats ({MESSAGES} messages of {BODY_BYTES} B, {on})"
    );
    println!("| path | msg/s | vs raw | vs raw with message ids |");
    println!("|---|---:|---:|---:|");
    let row = |what: String, rate: f64, raw: f64, raw_id: Option<f64>| {
        println!(
            "| {what} | {rate:.0} | {:.0}% | {} |",
            100.0 * rate / raw,
            raw_id.map_or("".to_string(), |r| format!("{:.0}%", 100.0 * rate / r))
        );
    };
    let (raw, raw_id) = (publish.0, publish.1);
    row(
        format!("raw publish, {IN_FLIGHT} in flight, each acked"),
        raw,
        raw,
        Some(raw_id),
    );
    row(
        "raw publish with a Nats-Msg-Id each (as Switchyard sends, for safe retries)".into(),
        raw_id,
        raw,
        Some(raw_id),
    );
    row(
        "Switchyard storage layer, one publish per message".into(),
        publish.2,
        raw,
        Some(raw_id),
    );
    row(
        format!(
            "Switchyard HTTP publish to a topic, {HTTP_BATCH} per request, {HTTP_CONNECTIONS} connections"
        ),
        e2e_publish,
        raw,
        Some(raw_id),
    );
    row(
        format!("raw fetch {BATCH} + ack each, {RECEIVERS} receivers"),
        receive.0,
        receive.0,
        None,
    );
    row(
        "Switchyard storage layer, receive + ack".into(),
        receive.1,
        receive.0,
        None,
    );
    row(
        format!("Switchyard HTTP receive {BATCH} + ack, {HTTP_CONNECTIONS} consumers"),
        e2e_receive,
        receive.0,
        None,
    );
    if let Some(cluster) = cluster.as_mut() {
        leader_kill_timeline(cluster, &js, &http, &bases).await;
    }
}

/// How long the failover timeline runs, and when in it the leader is killed.
const TIMELINE: Duration = Duration::from_secs(16);
const KILL_AT: Duration = Duration::from_secs(5);
/// Concurrent single-event publishers during the timeline, spread over the routers.
const TIMELINE_PUBLISHERS: usize = 8;
/// Upper bound on the timeline's publishes.
const TIMELINE_MAX: usize = 500_000;

/// Publishes single events through every router while the leader of the queue's stream
/// is killed; prints a per-second table, then checks every acknowledged event arrived.
async fn leader_kill_timeline(
    cluster: &mut nats::NatsCluster,
    js: &jetstream::Context,
    http: &reqwest::Client,
    bases: &[String],
) {
    let info = js
        .get_stream("switchyard_Q_e2e")
        .await
        .expect("the queue's stream")
        .info()
        .await
        .expect("stream info")
        .clone();
    let leader = info
        .cluster
        .and_then(|c| c.leader)
        .expect("the stream has a leader");
    let leader = cluster.index_of(&leader);
    // (second, latency, acknowledged) of every publish; the `n`s acknowledged.
    let samples = Arc::new(std::sync::Mutex::new(Vec::<(u64, Duration, bool)>::new()));
    let acked = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let publishers = (0..TIMELINE_PUBLISHERS).map(|p| {
        let (samples, acked, next) = (samples.clone(), acked.clone(), next.clone());
        let url = format!("{}/topics/events/publish", bases[p % bases.len()]);
        async move {
            while started.elapsed() < TIMELINE {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= TIMELINE_MAX {
                    break;
                }
                let sent = Instant::now();
                let ok = http
                    .post(&url)
                    .json(&serde_json::json!({"message": {"n": n}}))
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                let second = sent.duration_since(started).as_secs();
                samples.lock().unwrap().push((second, sent.elapsed(), ok));
                if ok {
                    acked.lock().unwrap().push(n as u64);
                }
            }
        }
    });
    let kill = async {
        tokio::time::sleep(KILL_AT).await;
        cluster.nodes[leader].kill9();
    };
    tokio::join!(futures::future::join_all(publishers), kill);

    println!();
    println!(
        "Publishes during a leader kill at {}s ({TIMELINE_PUBLISHERS} publishers, single events, 2 routers)",
        KILL_AT.as_secs()
    );
    println!("| second | acknowledged | refused | p50 ms | p99 ms | max ms |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let samples = std::mem::take(&mut *samples.lock().unwrap());
    for second in 0..TIMELINE.as_secs() + 1 {
        let mut lat: Vec<Duration> = samples
            .iter()
            .filter(|s| s.0 == second)
            .map(|s| s.1)
            .collect();
        if lat.is_empty() {
            println!("| {second} | 0 | 0 | | | |");
            continue;
        }
        lat.sort();
        let ok = samples.iter().filter(|s| s.0 == second && s.2).count();
        let at = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize].as_secs_f64() * 1000.0;
        println!(
            "| {second} | {ok} | {} | {:.1} | {:.1} | {:.1} |",
            lat.len() - ok,
            at(0.5),
            at(0.99),
            at(1.0)
        );
    }
    let acked: std::collections::BTreeSet<u64> = acked.lock().unwrap().iter().copied().collect();
    let found = drain_ns(http, bases).await;
    let lost = acked.difference(&found).count();
    println!(
        "acknowledged {}, received afterwards {}, acknowledged but missing {lost}",
        acked.len(),
        found.len()
    );
}

/// Receives and acks the timeline's events through every router until the queue is
/// empty, returning their `n`s.
async fn drain_ns(http: &reqwest::Client, bases: &[String]) -> std::collections::BTreeSet<u64> {
    let mut out = std::collections::BTreeSet::new();
    let mut empty = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while empty < bases.len() * 2 && Instant::now() < deadline {
        let base = &bases[empty % bases.len()];
        let Ok(r) = http
            .post(format!("{base}/queues/e2e/receive"))
            .json(&serde_json::json!({"max_messages": BATCH, "wait_s": 1}))
            .send()
            .await
        else {
            continue;
        };
        let v: serde_json::Value = r.json().await.unwrap_or_default();
        let messages = v["messages"].as_array().cloned().unwrap_or_default();
        if messages.is_empty() {
            empty += 1;
            continue;
        }
        empty = 0;
        let receipts: Vec<&serde_json::Value> = messages.iter().map(|m| &m["receipt"]).collect();
        let _ = http
            .post(format!("{base}/queues/e2e/ack"))
            .json(&serde_json::json!({ "receipts": receipts }))
            .send()
            .await;
        // Raw delivery: the message is the published JSON itself.
        out.extend(messages.iter().filter_map(|m| m["message"]["n"].as_u64()));
    }
    out
}

/// The spec of the queue taking raw publishes with ids (as any standard queue).
fn spec_for_ids() -> QueueSpec {
    QueueSpec::default()
}

/// Requests in flight at once on the HTTP paths.
const HTTP_CONNECTIONS: usize = 16;
/// Events per HTTP publish: the API's batch maximum.
const HTTP_BATCH: usize = 100;

/// A `switchyard serve --backend nats://…` process, killed on drop.
struct Router {
    child: std::process::Child,
    base: String,
    _data: tempfile::TempDir,
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Router {
    async fn start(nats_url: &str, replicas: usize) -> Router {
        use std::io::BufRead;
        let data = tempfile::tempdir().expect("data dir");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["serve", "--listen", "127.0.0.1:0", "--backend", nats_url])
            .args(["--nats-replicas", &replicas.to_string()])
            .arg("--data-dir")
            .arg(data.path())
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn switchyard");
        let stdout = child.stdout.take().expect("piped");
        let line = tokio::task::spawn_blocking(move || {
            std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .find_map(|l| l.strip_prefix("listening on ").map(str::to_string))
        })
        .await
        .expect("reader")
        .expect("the router prints its address");
        Router {
            child,
            base: format!("http://{line}/v1"),
            _data: data,
        }
    }

    /// Waits until a router sees the queue another one made.
    async fn wait_for_queue(http: &reqwest::Client, base: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = http.get(format!("{base}/queues/e2e")).send().await;
            if r.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(Instant::now() < deadline, "{base} never saw the queue");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn setup(&self, http: &reqwest::Client) {
        for (path, body) in [
            ("/topics/events", serde_json::json!({})),
            (
                "/queues/e2e",
                serde_json::json!({"visibility_timeout_s": 60}),
            ),
            (
                "/topics/events/subscriptions/e2e",
                serde_json::json!({"endpoint": {"queue": "e2e"}, "raw_message_delivery": true}),
            ),
        ] {
            let r = http
                .put(format!("{}{path}", self.base))
                .json(&body)
                .send()
                .await
                .expect("setup request");
            assert!(r.status().is_success(), "{path}: {}", r.status());
        }
    }
}

/// [`MESSAGES`] events in batches of [`HTTP_BATCH`], [`HTTP_CONNECTIONS`] at once, the
/// requests spread over the routers.
async fn http_publish(http: &reqwest::Client, bases: &[String], body: &Bytes) -> f64 {
    // 1 KiB as a JSON string: the stored message is the same size as the raw one.
    let text = String::from_utf8(body.to_vec()).expect("ASCII body");
    let entries: Vec<serde_json::Value> = (0..HTTP_BATCH)
        .map(|i| serde_json::json!({"id": i.to_string(), "message": text}))
        .collect();
    let request =
        Bytes::from(serde_json::to_vec(&serde_json::json!({ "entries": entries })).unwrap());
    let urls: Vec<String> = bases
        .iter()
        .map(|base| format!("{base}/topics/events/publish-batch"))
        .collect();
    let requests = MESSAGES / HTTP_BATCH;
    let started = Instant::now();
    let mut window = FuturesUnordered::new();
    for i in 0..requests {
        if window.len() >= HTTP_CONNECTIONS {
            window.next().await;
        }
        let url = urls[i % urls.len()].clone();
        let (http, request) = (http.clone(), request.clone());
        window.push(async move {
            let r = http
                .post(url)
                .header("content-type", "application/json")
                .body(request)
                .send()
                .await
                .expect("publish");
            assert!(r.status().is_success(), "publish: {}", r.status());
            let v: serde_json::Value = r.json().await.expect("answer");
            assert_eq!(
                v["successful"].as_array().map(Vec::len),
                Some(HTTP_BATCH),
                "{v}"
            );
        });
    }
    while window.next().await.is_some() {}
    MESSAGES as f64 / started.elapsed().as_secs_f64()
}

/// Receive 10 and ack them over HTTP until the queue is empty, the receivers spread over
/// the routers.
async fn http_receive(http: &reqwest::Client, bases: &[String]) -> f64 {
    let started = Instant::now();
    let loops = (0..HTTP_CONNECTIONS).map(|i| async move {
        let base = &bases[i % bases.len()];
        let mut n = 0;
        loop {
            let v: serde_json::Value = http
                .post(format!("{base}/queues/e2e/receive"))
                .json(&serde_json::json!({"max_messages": BATCH}))
                .send()
                .await
                .expect("receive")
                .json()
                .await
                .expect("answer");
            let receipts: Vec<&serde_json::Value> = v["messages"]
                .as_array()
                .expect("messages")
                .iter()
                .map(|m| &m["receipt"])
                .collect();
            if receipts.is_empty() {
                return n;
            }
            n += receipts.len();
            let r = http
                .post(format!("{base}/queues/e2e/ack"))
                .json(&serde_json::json!({ "receipts": receipts }))
                .send()
                .await
                .expect("ack");
            assert!(r.status().is_success(), "ack: {}", r.status());
        }
    });
    let n: usize = futures::future::join_all(loops).await.into_iter().sum();
    assert_eq!(n, MESSAGES, "HTTP receive got every message once");
    MESSAGES as f64 / started.elapsed().as_secs_f64()
}

/// Raw: `send_publish` on `subject`, a sliding window of acks; with `ids`, each message
/// carries a unique `Nats-Msg-Id`, which JetStream checks against its duplicate window.
async fn raw_publish(
    js: &jetstream::Context,
    subject: &'static str,
    ids: bool,
    body: &Bytes,
) -> f64 {
    let started = Instant::now();
    let mut window = FuturesUnordered::new();
    for i in 0..MESSAGES {
        if window.len() >= IN_FLIGHT {
            window.next().await.unwrap();
        }
        let mut m = jetstream::message::PublishMessage::build().payload(body.clone());
        if ids {
            m = m.message_id(format!("{}-{i}", started.elapsed().as_nanos()));
        }
        let ack = js.send_publish(subject, m).await.expect("publish");
        window.push(async move { ack.await.expect("ack") });
    }
    while window.next().await.is_some() {}
    MESSAGES as f64 / started.elapsed().as_secs_f64()
}

/// Switchyard: one `store` per message (a publish with one matched delivery), the same
/// window.
async fn sy_publish(backend: &Backend, q: &Queue, body: &Bytes, round: usize) -> f64 {
    let started = Instant::now();
    let mut window = FuturesUnordered::new();
    for i in 0..MESSAGES {
        if window.len() >= IN_FLIGHT {
            let stored: Result<_, switchyard::backend::StorageError> =
                window.next().await.expect("the window is not empty");
            stored.expect("store");
        }
        let m = NewMessage {
            message_id: format!("{round}-{i}"),
            payload: body.to_vec(),
            attributes: b"{}".to_vec(),
            delay_ms: 0,
            group: None,
            dedup_id: None,
        };
        window.push(backend.store(vec![Delivery::Queue(q.clone(), m)]));
    }
    while let Some(r) = window.next().await {
        r.expect("store");
    }
    MESSAGES as f64 / started.elapsed().as_secs_f64()
}

/// Raw: the queue's durable consumer, `fetch` of a batch and `double_ack` of each.
async fn raw_receive(js: &jetstream::Context) -> f64 {
    let stream = js.get_stream("BENCH_Q_raw").await.expect("stream");
    let consumer: jetstream::consumer::PullConsumer =
        stream.get_consumer("ready").await.expect("consumer");
    let started = Instant::now();
    let loops = (0..RECEIVERS).map(|_| {
        let consumer = consumer.clone();
        async move {
            let mut n = 0;
            loop {
                let mut batch = consumer
                    .fetch()
                    .max_messages(BATCH)
                    .expires(Duration::from_millis(50))
                    .messages()
                    .await
                    .expect("fetch");
                let mut acks = Vec::with_capacity(BATCH);
                while let Some(m) = batch.next().await {
                    let m = m.expect("message");
                    acks.push(async move { m.double_ack().await.expect("ack") });
                }
                if acks.is_empty() {
                    return n;
                }
                n += acks.len();
                futures::future::join_all(acks).await;
            }
        }
    });
    let n: usize = futures::future::join_all(loops).await.into_iter().sum();
    assert_eq!(n, MESSAGES, "raw receive got every message once");
    MESSAGES as f64 / started.elapsed().as_secs_f64()
}

/// Switchyard: `receive` of a batch and `ack` of its receipts.
async fn sy_receive(backend: &Arc<Backend>, q: &Queue) -> f64 {
    let started = Instant::now();
    let stop = tokio_util::sync::CancellationToken::new();
    let loops = (0..RECEIVERS).map(|_| async {
        let mut n = 0;
        loop {
            let got = backend
                .receive(q, BATCH, 60_000, Duration::ZERO, &stop)
                .await
                .expect("receive");
            if got.is_empty() {
                return n;
            }
            n += got.len();
            let receipts: Vec<String> = got.into_iter().map(|r| r.receipt).collect();
            let verdicts = backend.ack(q, &receipts).await.expect("ack");
            assert!(verdicts.iter().all(|v| v.is_ok()));
        }
    });
    let n: usize = futures::future::join_all(loops).await.into_iter().sum();
    assert_eq!(n, MESSAGES, "switchyard receive got every message once");
    MESSAGES as f64 / started.elapsed().as_secs_f64()
}
