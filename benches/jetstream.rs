//! The JetStream backend against raw async-nats on the same server: pipelined publish
//! (every message acknowledged by JetStream) and receive + ack, 1 KiB messages.
//!
//! Run with `cargo bench --bench jetstream`. It starts its own `nats-server -js` on a free
//! loopback port with a temporary store, sends a bounded number of messages, prints a
//! table with the ratio of each Switchyard path to its raw counterpart, and stops the
//! server. Each measurement runs twice (raw and Switchyard alternating) and the better
//! run counts, which damps the noise of a shared machine.

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
use switchyard::backend::jetstream::{Delivery, JetStream, QueueHandle};
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
    let server = nats::NatsServer::start();
    let backend = Arc::new(
        JetStream::connect(&server.url(), "BENCH")
            .await
            .expect("connect"),
    );
    let client = async_nats::connect(server.url())
        .await
        .expect("connect raw");
    let js = jetstream::new(client);
    let spec = QueueSpec {
        visibility_timeout_s: 60,
        ..QueueSpec::default()
    };
    // Two identical queues: raw async-nats works on one, the backend on the other.
    let raw_q = backend.put_queue("raw", spec.clone()).await.unwrap();
    let sy_q = backend.put_queue("sy", spec).await.unwrap();
    let body = Bytes::from(vec![b'x'; BODY_BYTES]);

    let mut publish = (0.0f64, 0.0f64);
    let mut receive = (0.0f64, 0.0f64);
    for round in 0..2 {
        publish.0 = publish.0.max(raw_publish(&js, &body).await);
        publish.1 = publish
            .1
            .max(sy_publish(&backend, &sy_q, &body, round).await);
        receive.0 = receive.0.max(raw_receive(&js).await);
        receive.1 = receive.1.max(sy_receive(&backend, &sy_q).await);
    }
    let _ = raw_q;

    println!();
    println!(
        "JetStream backend vs raw async-nats ({MESSAGES} messages of {BODY_BYTES} B, nats-server on loopback)"
    );
    println!("| path | raw async-nats | switchyard | ratio |");
    println!("|---|---:|---:|---:|");
    println!(
        "| publish, {IN_FLIGHT} in flight, each acked | {:.0} msg/s | {:.0} msg/s | {:.0}% |",
        publish.0,
        publish.1,
        100.0 * publish.1 / publish.0
    );
    println!(
        "| receive {BATCH} + ack each, {RECEIVERS} receivers | {:.0} msg/s | {:.0} msg/s | {:.0}% |",
        receive.0,
        receive.1,
        100.0 * receive.1 / receive.0
    );
}

/// Raw: `send_publish` on the queue's subject, a sliding window of acks.
async fn raw_publish(js: &jetstream::Context, body: &Bytes) -> f64 {
    let started = Instant::now();
    let mut window = FuturesUnordered::new();
    for _ in 0..MESSAGES {
        if window.len() >= IN_FLIGHT {
            window.next().await.unwrap();
        }
        let ack = js
            .send_publish(
                "BENCH.q.raw.m.0",
                jetstream::message::PublishMessage::build().payload(body.clone()),
            )
            .await
            .expect("publish");
        window.push(async move { ack.await.expect("ack") });
    }
    while window.next().await.is_some() {}
    MESSAGES as f64 / started.elapsed().as_secs_f64()
}

/// Switchyard: one `store` per message (a publish with one matched delivery), the same
/// window.
async fn sy_publish(backend: &JetStream, q: &Arc<QueueHandle>, body: &Bytes, round: usize) -> f64 {
    let started = Instant::now();
    let mut window = FuturesUnordered::new();
    for i in 0..MESSAGES {
        if window.len() >= IN_FLIGHT {
            let stored: Result<_, switchyard::backend::jetstream::JsError> =
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
async fn sy_receive(backend: &Arc<JetStream>, q: &Arc<QueueHandle>) -> f64 {
    let started = Instant::now();
    let loops = (0..RECEIVERS).map(|_| async {
        let mut n = 0;
        loop {
            let got = backend
                .receive(q, BATCH, 60_000, Duration::ZERO)
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
