//! The backend contract end to end: the same scenarios through the HTTP API of the real
//! binary, once on the embedded backend and once on JetStream (a private `nats-server`
//! started per test). Whatever a user can observe through the API must not depend on the
//! backend; the few documented differences are left out here and tested per backend.

use crate::guests;
use crate::harness::{TestServer, eventually, spawn_server, spawn_server_with_args};
use crate::nats::NatsServer;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

/// Longest wait for something that should happen within about a second.
const SOON: Duration = Duration::from_secs(10);

/// A server on one backend; the private nats-server (if any) lives as long as it.
pub struct Deployment {
    pub server: TestServer,
    pub nats: Option<NatsServer>,
}

pub async fn embedded() -> Deployment {
    Deployment {
        server: spawn_server(None).await,
        nats: None,
    }
}

/// A router on a fresh private nats-server.
pub async fn on_nats() -> Deployment {
    let nats = NatsServer::start();
    let server = router_on(&nats).await;
    Deployment {
        server,
        nats: Some(nats),
    }
}

/// Another router sharing `nats` (and everything stored in it).
pub async fn router_on(nats: &NatsServer) -> TestServer {
    spawn_server_with_args(None, &["--backend", &nats.url()]).await
}

/// Runs each scenario on both backends: `mod NAME { embedded, nats }`.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn embedded() {
                let d = super::embedded().await;
                super::$name(&d.server).await;
            }

            #[tokio::test]
            async fn nats() {
                let d = super::on_nats().await;
                super::$name(&d.server).await;
            }
        }
    )*};
}

/// Runs each named behaviour test, `async fn NAME(server: &TestServer)`, once on each
/// backend: `NAME::embedded` and `NAME::nats`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn embedded() {
                let d = $crate::contract::embedded().await;
                super::$name(&d.server).await;
            }

            #[tokio::test]
            async fn nats() {
                let d = $crate::contract::on_nats().await;
                super::$name(&d.server).await;
            }
        }
    )*};
}
pub(crate) use on_both_backends;

contract!(
    fan_out_follows_filter_policies,
    visibility_timeout_hides_and_redelivers,
    dead_letters_after_max_receives_and_redrive_back,
    fifo_keeps_group_order_and_drops_duplicates,
    delayed_messages_stay_hidden_until_due,
    streams_number_records_per_shard_and_groups_checkpoint,
    caller_errors_are_4xx_on_every_backend,
    functions_run_and_publish_downstream,
    webhooks_are_retried_then_delivered_signed,
);

pub async fn put(s: &TestServer, path: &str, body: Value) -> Value {
    s.ok(Method::PUT, path, body).await
}

pub async fn post(s: &TestServer, path: &str, body: Value) -> Value {
    s.ok(Method::POST, path, body).await
}

pub async fn receive(s: &TestServer, queue: &str, max: usize, wait_s: u64) -> Vec<Value> {
    let v = post(
        s,
        &format!("/v1/queues/{queue}/receive"),
        json!({"max_messages": max, "wait_s": wait_s}),
    )
    .await;
    v["messages"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("a receive answers with `messages`: {v}"))
}

pub async fn ack(s: &TestServer, queue: &str, messages: &[Value]) {
    let receipts: Vec<&Value> = messages.iter().map(|m| &m["receipt"]).collect();
    post(
        s,
        &format!("/v1/queues/{queue}/ack"),
        json!({ "receipts": receipts }),
    )
    .await;
}

/// Receives and acknowledges until `n` messages have come, within [`SOON`].
pub async fn receive_n(s: &TestServer, queue: &str, n: usize) -> Vec<Value> {
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + SOON;
    while got.len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{queue}: {} of {n} messages: {got:?}",
            got.len()
        );
        let batch = receive(s, queue, 10, 1).await;
        if !batch.is_empty() {
            ack(s, queue, &batch).await;
        }
        got.extend(batch);
    }
    got
}

fn inner(m: &Value) -> &Value {
    &m["message"]["message"]
}

async fn fan_out_follows_filter_policies(s: &TestServer) {
    put(s, "/v1/topics/orders", json!({})).await;
    for q in ["all", "big", "raw"] {
        put(s, &format!("/v1/queues/{q}"), json!({})).await;
    }
    put(
        s,
        "/v1/topics/orders/subscriptions/all",
        json!({"endpoint": {"queue": "all"}}),
    )
    .await;
    put(
        s,
        "/v1/topics/orders/subscriptions/big",
        json!({"endpoint": {"queue": "big"}, "filter_policy_scope": "MessageBody",
               "filter_policy": {"total": [{"numeric": [">=", 100]}]}}),
    )
    .await;
    put(
        s,
        "/v1/topics/orders/subscriptions/raw",
        json!({"endpoint": {"queue": "raw"}, "raw_message_delivery": true,
               "filter_policy": {"kind": ["order_placed"]}}),
    )
    .await;
    for (total, kind) in [(50, "order_placed"), (150, "order_placed"), (300, "refund")] {
        post(
            s,
            "/v1/topics/orders/publish",
            json!({"message": {"total": total}, "attributes": {"kind": kind}}),
        )
        .await;
    }
    let all = receive_n(s, "all", 3).await;
    let totals: BTreeSet<i64> = all
        .iter()
        .map(|m| inner(m)["total"].as_i64().unwrap())
        .collect();
    assert_eq!(totals, BTreeSet::from([50, 150, 300]));
    let big = receive_n(s, "big", 2).await;
    let totals: BTreeSet<i64> = big
        .iter()
        .map(|m| inner(m)["total"].as_i64().unwrap())
        .collect();
    assert_eq!(totals, BTreeSet::from([150, 300]));
    let raw = receive_n(s, "raw", 2).await;
    for m in &raw {
        assert!(m["message"]["total"].as_i64().unwrap() < 200, "{m}");
        assert_eq!(m["attributes"]["kind"]["Value"], "order_placed", "{m}");
    }
    for q in ["all", "big", "raw"] {
        assert!(
            receive(s, q, 10, 0).await.is_empty(),
            "{q} has extra messages"
        );
    }
}

async fn visibility_timeout_hides_and_redelivers(s: &TestServer) {
    put(s, "/v1/queues/tasks", json!({"visibility_timeout_s": 1})).await;
    post(s, "/v1/queues/tasks/messages", json!({"message": {"n": 1}})).await;
    let first = receive(s, "tasks", 1, 2).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["receive_count"], 1);
    assert!(
        receive(s, "tasks", 1, 0).await.is_empty(),
        "hidden while in flight"
    );
    let again = eventually(SOON, "redelivery after the visibility timeout", || async {
        let got = receive(s, "tasks", 1, 1).await;
        (!got.is_empty()).then_some(got)
    })
    .await;
    assert_eq!(again[0]["message_id"], first[0]["message_id"]);
    assert_eq!(again[0]["receive_count"], 2);
    // Visible again at once with a zero timeout.
    post(
        s,
        "/v1/queues/tasks/visibility",
        json!({"receipt": again[0]["receipt"], "timeout_s": 0}),
    )
    .await;
    let third = receive(s, "tasks", 1, 2).await;
    assert_eq!(third.len(), 1);
    assert_eq!(third[0]["receive_count"], 3);
    ack(s, "tasks", &third).await;
    let counts = s.ok(Method::GET, "/v1/queues/tasks", Value::Null).await;
    assert_eq!(counts["approximate_visible"], 0, "{counts}");
    assert!(receive(s, "tasks", 1, 1).await.is_empty());
}

async fn dead_letters_after_max_receives_and_redrive_back(s: &TestServer) {
    put(s, "/v1/queues/dlq", json!({})).await;
    put(
        s,
        "/v1/queues/jobs",
        json!({"redrive_policy": {"dead_letter_queue": "dlq", "max_receive_count": 2}}),
    )
    .await;
    post(s, "/v1/queues/jobs/messages", json!({"message": "poison"})).await;
    for n in 1..=2 {
        let got = receive(s, "jobs", 1, 2).await;
        assert_eq!(got.len(), 1, "receive {n}");
        post(
            s,
            "/v1/queues/jobs/visibility",
            json!({"receipt": got[0]["receipt"], "timeout_s": 0}),
        )
        .await;
    }
    let dead = eventually(SOON, "the message in the dead-letter queue", || async {
        // The receive past max_receive_count moves the message instead of returning it.
        assert!(receive(s, "jobs", 1, 0).await.is_empty());
        let got = receive(s, "dlq", 1, 0).await;
        (!got.is_empty()).then_some(got)
    })
    .await;
    assert_eq!(dead[0]["message"], "poison");
    post(
        s,
        "/v1/queues/dlq/visibility",
        json!({"receipt": dead[0]["receipt"], "timeout_s": 0}),
    )
    .await;
    let moved = post(s, "/v1/queues/dlq/redrive", Value::Null).await;
    assert_eq!(moved["moved"], 1, "{moved}");
    let back = receive_n(s, "jobs", 1).await;
    assert_eq!(back[0]["message"], "poison");
}

async fn fifo_keeps_group_order_and_drops_duplicates(s: &TestServer) {
    put(s, "/v1/queues/seq.fifo", json!({"fifo": true})).await;
    let mut ids = Vec::new();
    for n in 0..6 {
        let v = post(
            s,
            "/v1/queues/seq.fifo/messages",
            json!({"message": {"n": n}, "group_id": format!("g{}", n % 2), "dedup_id": format!("d{n}")}),
        )
        .await;
        ids.push(v["message_id"].clone());
    }
    // A retry under a used dedup id is not stored again and names the original.
    let dup = post(
        s,
        "/v1/queues/seq.fifo/messages",
        json!({"message": {"n": 0}, "group_id": "g0", "dedup_id": "d0"}),
    )
    .await;
    assert_eq!(dup["message_id"], ids[0]);
    let got = receive_n(s, "seq.fifo", 6).await;
    for g in 0..2 {
        let order: Vec<i64> = got
            .iter()
            .map(|m| m["message"]["n"].as_i64().unwrap())
            .filter(|n| n % 2 == g)
            .collect();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(order, sorted, "group g{g} out of order");
        assert_eq!(order.len(), 3);
    }
}

async fn delayed_messages_stay_hidden_until_due(s: &TestServer) {
    put(s, "/v1/queues/later", json!({})).await;
    post(
        s,
        "/v1/queues/later/messages",
        json!({"message": "soon", "delay_s": 1}),
    )
    .await;
    assert!(receive(s, "later", 1, 0).await.is_empty(), "delayed");
    let got = eventually(SOON, "the delayed message", || async {
        let got = receive(s, "later", 1, 1).await;
        (!got.is_empty()).then_some(got)
    })
    .await;
    assert_eq!(got[0]["message"], "soon");
    assert_eq!(got[0]["receive_count"], 1);
}

async fn streams_number_records_per_shard_and_groups_checkpoint(s: &TestServer) {
    // A name with a dot, as Kinesis allows: JetStream's names and subjects cannot hold one.
    put(s, "/v1/streams/clicks.v2", json!({"shards": 2})).await;
    let records: Vec<Value> = (0..20)
        .map(|i| json!({"partition_key": format!("user-{}", i % 4), "data": {"i": i}}))
        .collect();
    let placed = post(
        s,
        "/v1/streams/clicks.v2/records",
        json!({ "records": records }),
    )
    .await;
    let mut last = std::collections::HashMap::new();
    for r in placed["records"].as_array().unwrap() {
        let shard = r["shard_id"].as_str().unwrap().to_string();
        let seq: u64 = r["sequence"].as_str().unwrap().parse().unwrap();
        let prev = last.insert(shard, seq).unwrap_or(0);
        assert!(seq > prev, "sequences grow within a shard");
    }
    let mut read = 0;
    for shard in last.keys() {
        let page = s
            .ok(
                Method::GET,
                &format!("/v1/streams/clicks.v2/shards/{shard}/records?from=trim_horizon"),
                Value::Null,
            )
            .await;
        read += page["records"].as_array().unwrap().len();
    }
    assert_eq!(read, 20);

    put(
        s,
        "/v1/streams/clicks.v2/groups/g",
        json!({"start_position": "trim_horizon", "lease_timeout_s": 2}),
    )
    .await;
    let mut seen = 0;
    let mut polled = Vec::new();
    while seen < 20 {
        let v = post(
            s,
            "/v1/streams/clicks.v2/groups/g/poll",
            json!({"member": "m1", "max_records": 100, "wait_s": 1}),
        )
        .await;
        let recs = v["records"].as_array().unwrap().clone();
        assert!(!recs.is_empty(), "records stop at {seen}");
        seen += recs.len();
        polled.extend(recs);
    }
    assert_eq!(seen, 20);
    for r in &polled {
        post(
            s,
            "/v1/streams/clicks.v2/groups/g/checkpoint",
            json!({"member": "m1", "shard_id": r["shard_id"], "sequence": r["sequence"]}),
        )
        .await;
    }
    let (status, _) = s
        .json(
            Method::POST,
            "/v1/streams/clicks.v2/groups/g/checkpoint",
            json!({"member": "stranger", "shard_id": polled[0]["shard_id"], "sequence": polled[0]["sequence"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let g = s
        .ok(Method::GET, "/v1/streams/clicks.v2/groups/g", Value::Null)
        .await;
    for shard in g["shards"].as_array().unwrap() {
        assert_eq!(shard["member"], "m1", "{g}");
        let id = shard["shard_id"].as_str().unwrap();
        assert_eq!(
            shard["checkpoint"]
                .as_str()
                .map(|c| c.parse::<u64>().unwrap()),
            last.get(id).copied(),
            "{g}"
        );
    }
}

async fn caller_errors_are_4xx_on_every_backend(s: &TestServer) {
    put(
        s,
        "/v1/topics/typed",
        json!({"schema": {"type": "object", "required": ["id"]}}),
    )
    .await;
    put(s, "/v1/queues/small", json!({"max_message_bytes": 1024})).await;
    let cases = [
        (
            Method::POST,
            "/v1/topics/typed/publish",
            json!({"message": {"x": 1}}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            Method::POST,
            "/v1/topics/nope/publish",
            json!({"message": 1}),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::POST,
            "/v1/queues/nope/receive",
            json!({}),
            StatusCode::NOT_FOUND,
        ),
        (
            Method::POST,
            "/v1/queues/small/messages",
            json!({"message": "x".repeat(2000)}),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            Method::POST,
            "/v1/queues/small/ack",
            json!({"receipts": ["garbage"]}),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::PUT,
            "/v1/topics/typed/subscriptions/s",
            json!({"endpoint": {"queue": "nope"}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::PUT,
            "/v1/topics/typed/subscriptions/p",
            json!({"endpoint": {"queue": "small"}, "filter_policy": {"a": [{"numeric": ["<", "x"]}]}}),
            StatusCode::BAD_REQUEST,
        ),
        (
            Method::GET,
            "/v1/streams/nope",
            Value::Null,
            StatusCode::NOT_FOUND,
        ),
    ];
    for (method, path, body, want) in cases {
        let (status, v) = s.json(method, path, body).await;
        assert_eq!(status, want, "{path}: {v}");
    }
}

async fn functions_run_and_publish_downstream(s: &TestServer) {
    put(s, "/v1/queues/out", json!({})).await;
    put(s, "/v1/topics/in", json!({})).await;
    put(s, "/v1/topics/out", json!({})).await;
    put(
        s,
        "/v1/topics/out/subscriptions/q",
        json!({"endpoint": {"queue": "out"}}),
    )
    .await;
    put(
        s,
        "/v1/functions/pub",
        json!({"module": guests::path("publisher").to_string_lossy(), "env": {"topic": "out"}}),
    )
    .await;
    put(
        s,
        "/v1/topics/in/subscriptions/f",
        json!({"endpoint": {"function": "pub"}}),
    )
    .await;
    post(s, "/v1/topics/in/publish", json!({"message": {"count": 2}})).await;
    let got = receive_n(s, "out", 2).await;
    assert_eq!(got.len(), 2);
}

async fn webhooks_are_retried_then_delivered_signed(s: &TestServer) {
    let (rx, url) = crate::webhooks::Receiver::start(&[(503, None)]).await;
    put(s, "/v1/topics/hooks", json!({})).await;
    let sub = put(
        s,
        "/v1/topics/hooks/subscriptions/h",
        json!({"endpoint": {"http": {"url": url}}, "delivery_policy": crate::webhooks::fast_policy(2)}),
    )
    .await;
    assert!(sub["endpoint"]["http"]["secret"].is_string(), "{sub}");
    post(s, "/v1/topics/hooks/publish", json!({"message": {"n": 7}})).await;
    let hits = rx.wait_for(2, Duration::from_secs(20)).await;
    let attempts: Vec<&str> = hits
        .iter()
        .map(|h| h.header("x-switchyard-attempt"))
        .collect();
    assert_eq!(attempts, ["1", "2"]);
    assert_eq!(hits[1].json()["message"], json!({"n": 7}));
    assert!(!hits[1].header("x-switchyard-signature").is_empty());
}
