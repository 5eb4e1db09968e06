//! WebAssembly functions end to end through the real server: registration, subscriptions
//! with retries and dead letters, publishing from a guest, hot swap, trial invocation, and
//! queue and stream sources with partial batch failures. Guests come from `guests/`.

use crate::guests;
use crate::harness::{TestServer, eventually, spawn_server, topic_with_queues};
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;
use switchyard::model::SubscriptionSpec;

fn module(name: &str) -> String {
    guests::path(name).to_string_lossy().into_owned()
}

async fn put_function(server: &TestServer, name: &str, spec: Value) -> Value {
    server
        .ok(Method::PUT, &format!("/v1/functions/{name}"), spec)
        .await
}

async fn put_queue(server: &TestServer, name: &str, spec: Value) {
    server
        .ok(Method::PUT, &format!("/v1/queues/{name}"), spec)
        .await;
}

async fn receive_all(server: &TestServer, queue: &str) -> Vec<Value> {
    receive(server, queue, 0).await
}

/// One receive of up to 10 messages, long-polling up to `wait_s` for the first.
async fn receive(server: &TestServer, queue: &str, wait_s: u64) -> Vec<Value> {
    let v = server
        .ok(
            Method::POST,
            &format!("/v1/queues/{queue}/receive"),
            json!({"max_messages": 10, "wait_s": wait_s}),
        )
        .await;
    v["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("a receive answers with `messages`: {v}"))
        .clone()
}

/// Receives until `n` messages came, long-polling so a message is taken as it arrives.
async fn eventually_received(
    server: &TestServer,
    queue: &str,
    n: usize,
    within: Duration,
) -> Vec<Value> {
    let mut got: Vec<Value> = Vec::new();
    let deadline = std::time::Instant::now() + within;
    while got.len() < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{queue}: {} of {n} messages within {within:?}: {got:?}",
            got.len()
        );
        got.extend(receive(server, queue, 1).await);
    }
    got
}

fn fast_retries(n: u32) -> Value {
    json!({"num_retries": n, "min_delay_s": 1, "max_delay_s": 1})
}

#[tokio::test]
async fn functions_register_from_a_path_or_an_upload_and_bad_modules_are_refused() {
    let server = spawn_server(None).await;
    let v = put_function(&server, "email", json!({"module": module("email")})).await;
    assert_eq!(v["timeout_ms"], 1000);
    let upload = base64::engine::general_purpose::STANDARD.encode(guests::bytes("noop"));
    let v = put_function(&server, "noop", json!({"module": upload})).await;
    assert!(v["module"].as_str().unwrap().contains("uploaded"), "{v}");
    let listed = server.ok(Method::GET, "/v1/functions", Value::Null).await;
    assert_eq!(listed["functions"], json!(["email", "noop"]));

    let (st, v) = server
        .json(
            Method::PUT,
            "/v1/functions/bad",
            json!({"module": "/nonexistent/x.wasm"}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("module"), "{v}");
    let not_wasm = base64::engine::general_purpose::STANDARD.encode(b"\0asm but not really");
    let (st, v) = server
        .json(
            Method::PUT,
            "/v1/functions/bad",
            json!({"module": not_wasm}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, _) = server
        .json(
            Method::PUT,
            "/v1/functions/bad",
            json!({"module": module("noop"), "memory_mb": 100000}),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = server
        .json(
            Method::POST,
            "/v1/functions/missing/invoke",
            json!({"message": {}}),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn invoke_shows_the_result_logs_and_published_events_without_routing_them() {
    let server = spawn_server(None).await;
    server
        .ok(Method::PUT, "/v1/topics/order_flagged", json!({}))
        .await;
    put_function(
        &server,
        "fraud",
        json!({"module": module("fraud"), "env": {"max_total": "100"}}),
    )
    .await;
    let v = server
        .ok(
            Method::POST,
            "/v1/functions/fraud/invoke",
            json!({"message": {"order_id": "o-1", "total": 500, "country": "NL"}}),
        )
        .await;
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["published"][0]["topic"], "order_flagged", "{v}");
    let v = server
        .ok(
            Method::POST,
            "/v1/functions/fraud/invoke",
            json!({"message": {"order_id": "o-2", "total": 5, "country": "NL"}}),
        )
        .await;
    assert_eq!(v["published"], json!([]), "{v}");
}

/// An asynchronous invocation through Lambda's REST path; the request id it is answered
/// with.
async fn invoke_event(server: &TestServer, function: &str, payload: Value) -> String {
    let response = server
        .http
        .post(server.url(&format!("/2015-03-31/functions/{function}/invocations")))
        .header("x-amz-invocation-type", "Event")
        .body(payload.to_string())
        .send()
        .await
        .expect("send an invocation");
    assert_eq!(response.status(), StatusCode::ACCEPTED, "{payload}");
    response.headers()["x-amzn-requestid"]
        .to_str()
        .expect("a request id is text")
        .to_string()
}

#[tokio::test]
async fn accepted_event_invocations_survive_a_crash_and_run_after_the_restart() {
    let mut server = spawn_server(None).await;
    let raw = SubscriptionSpec {
        raw_message_delivery: true,
        ..SubscriptionSpec::to_queue("out")
    };
    topic_with_queues(&server.client, "published", &[("out", raw)]).await;
    put_function(
        &server,
        "pub",
        json!({"module": module("publisher"), "concurrency": 1, "timeout_ms": 5000}),
    )
    .await;
    // The first holds the only instance, so those after it wait their turn in storage
    // (or in the worker's hands) when the server dies.
    let holder = invoke_event(&server, "pub", json!({"hold_ms": 4500, "count": 0})).await;
    let mut waiting = BTreeSet::new();
    for _ in 0..4 {
        waiting.insert(invoke_event(&server, "pub", json!({"count": 1})).await);
    }
    assert!(!waiting.contains(&holder));
    // The four wait for the holder, which may have finished on a slow machine.
    const PENDING: &str = "switchyard_function_async_events{function=\"pub\"}";
    let pending = server.metric(PENDING).await.expect("/metrics answers");
    assert!(pending >= 4, "{pending} pending");
    server.kill9();
    server.restart().await;
    // Each publishes its event's id once it ran.
    let within = Duration::from_secs(90);
    let deadline = std::time::Instant::now() + within;
    let mut ran = BTreeSet::new();
    while !waiting.is_subset(&ran) {
        assert!(
            std::time::Instant::now() < deadline,
            "within {within:?} these ran: {ran:?}; accepted: {waiting:?}"
        );
        for m in receive(&server, "out", 1).await {
            let body = m["message"].as_str().expect("a text body").to_string();
            let (id, _) = body.rsplit_once(':').expect("<event id>:<i>");
            ran.insert(id.to_string());
        }
    }
    assert_eq!(ran, waiting, "only the accepted invocations ran");
    eventually(Duration::from_secs(30), "none pending", || async {
        (server.metric(PENDING).await == Some(0)).then_some(())
    })
    .await;
    let succeeded = "switchyard_function_async_events_succeeded_total{function=\"pub\"}";
    assert!(server.metric(succeeded).await >= Some(4));
}

#[tokio::test]
async fn a_function_subscriber_publishes_and_its_events_are_delivered_downstream() {
    let server = spawn_server(None).await;
    put_queue(&server, "flagged", json!({})).await;
    server.ok(Method::PUT, "/v1/topics/orders", json!({})).await;
    server
        .ok(Method::PUT, "/v1/topics/order_flagged", json!({}))
        .await;
    server
        .ok(
            Method::PUT,
            "/v1/topics/order_flagged/subscriptions/review",
            json!({"endpoint": {"queue": "flagged"}, "raw_message_delivery": true}),
        )
        .await;
    put_function(
        &server,
        "fraud",
        json!({"module": module("fraud"), "env": {"max_total": "100"}}),
    )
    .await;
    server
        .ok(
            Method::PUT,
            "/v1/topics/orders/subscriptions/fraud",
            json!({"endpoint": {"function": "fraud"}, "filter_policy": {"event": ["order_placed"]}}),
        )
        .await;
    for (id, total, event) in [
        ("o-1", 500, "order_placed"),
        ("o-2", 5, "order_placed"),
        ("o-3", 900, "order_cancelled"),
    ] {
        server
            .ok(
                Method::POST,
                "/v1/topics/orders/publish",
                json!({"message": {"order_id": id, "total": total, "country": "NL"}, "attributes": {"event": event}}),
            )
            .await;
    }
    let flagged = eventually_received(&server, "flagged", 1, Duration::from_secs(20)).await;
    assert_eq!(flagged.len(), 1);
    assert!(
        flagged[0]["message"].to_string().contains("o-1"),
        "{flagged:?}"
    );
    // Once both orders placed were delivered to the function, what it published is stored.
    eventually(Duration::from_secs(20), "two deliveries", || async {
        (server.metric("switchyard_delivered_total").await? == 2).then_some(())
    })
    .await;
    assert!(
        receive_all(&server, "flagged").await.is_empty(),
        "only o-1 is suspicious"
    );
}

#[tokio::test]
async fn a_failed_invocation_publishes_nothing_and_ends_in_the_dead_letter_queue() {
    let server = spawn_server(None).await;
    put_queue(&server, "out", json!({})).await;
    put_queue(&server, "dead", json!({})).await;
    server.ok(Method::PUT, "/v1/topics/in", json!({})).await;
    server.ok(Method::PUT, "/v1/topics/out", json!({})).await;
    server
        .ok(
            Method::PUT,
            "/v1/topics/out/subscriptions/q",
            json!({"endpoint": {"queue": "out"}}),
        )
        .await;
    put_function(
        &server,
        "pub",
        json!({"module": module("publisher"), "env": {"topic": "out"}}),
    )
    .await;
    server
        .ok(
            Method::PUT,
            "/v1/topics/in/subscriptions/f",
            json!({"endpoint": {"function": "pub"}, "delivery_policy": fast_retries(1), "dead_letter_queue": "dead"}),
        )
        .await;
    // Succeeds: its two publishes are routed.
    server
        .ok(
            Method::POST,
            "/v1/topics/in/publish",
            json!({"message": {"count": 2}}),
        )
        .await;
    eventually_received(&server, "out", 2, Duration::from_secs(20)).await;
    // Fails after publishing: the publishes are discarded, twice (attempt and retry).
    server
        .ok(
            Method::POST,
            "/v1/topics/in/publish",
            json!({"message": {"count": 3, "fail": true}}),
        )
        .await;
    let dead = eventually_received(&server, "dead", 1, Duration::from_secs(20)).await;
    assert_eq!(dead[0]["attributes"]["Attempts"]["Value"], "2");
    assert_eq!(dead[0]["message"]["subscription"], "f");
    assert!(
        receive_all(&server, "out").await.is_empty(),
        "a failed invocation's publishes are discarded"
    );
}

#[tokio::test]
async fn traps_timeouts_and_memory_exhaustion_are_failed_attempts_then_dead_letters() {
    let server = spawn_server(None).await;
    put_queue(&server, "dead", json!({})).await;
    server.ok(Method::PUT, "/v1/topics/t", json!({})).await;
    put_function(&server, "trap", json!({"module": module("trap")})).await;
    put_function(
        &server,
        "spin",
        json!({"module": module("spin"), "timeout_ms": 200}),
    )
    .await;
    put_function(
        &server,
        "memhog",
        json!({"module": module("memhog"), "memory_mb": 8}),
    )
    .await;
    for f in ["trap", "spin", "memhog"] {
        server
            .ok(
                Method::PUT,
                &format!("/v1/topics/t/subscriptions/{f}"),
                json!({"endpoint": {"function": f}, "delivery_policy": fast_retries(1), "dead_letter_queue": "dead"}),
            )
            .await;
    }
    server
        .ok(
            Method::POST,
            "/v1/topics/t/publish",
            json!({"message": "go"}),
        )
        .await;
    let dead = eventually_received(&server, "dead", 3, Duration::from_secs(30)).await;
    let mut reasons: Vec<String> = dead
        .iter()
        .map(|m| {
            format!(
                "{} {}",
                m["attributes"]["Subscription"]["Value"].as_str().unwrap(),
                m["attributes"]["ErrorMessage"]["Value"].as_str().unwrap()
            )
        })
        .collect();
    reasons.sort();
    assert!(
        reasons[0].starts_with("t/memhog") && reasons[0].to_lowercase().contains("memory"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].starts_with("t/spin") && reasons[1].contains("deadline"),
        "{reasons:?}"
    );
    assert!(
        reasons[2].starts_with("t/trap") && reasons[2].to_lowercase().contains("trap"),
        "{reasons:?}"
    );
    // The server kept serving throughout.
    server.ok(Method::GET, "/v1/topics/t", Value::Null).await;
}

#[tokio::test]
async fn putting_a_new_module_swaps_it_for_new_invocations() {
    let server = spawn_server(None).await;
    // One event, which the first module handles and the second traps on: only the swap
    // can change its outcome.
    let event = json!({"message": {"order_id": "o", "customer_email": "a@b.example"}});
    put_function(&server, "f", json!({"module": module("email")})).await;
    let before = server
        .ok(Method::POST, "/v1/functions/f/invoke", event.clone())
        .await;
    put_function(&server, "f", json!({"module": module("trap")})).await;
    let after = server
        .ok(Method::POST, "/v1/functions/f/invoke", event)
        .await;
    assert_eq!(before["ok"], true, "{before}");
    assert_eq!(after["ok"], false, "{after}");
}

#[tokio::test]
async fn a_queue_source_acks_successes_and_leaves_failed_items_to_the_redrive_policy() {
    let server = spawn_server(None).await;
    put_queue(&server, "poison", json!({})).await;
    put_queue(
        &server,
        "jobs",
        json!({"visibility_timeout_s": 1, "redrive_policy": {"dead_letter_queue": "poison", "max_receive_count": 2}}),
    )
    .await;
    for body in ["ok-1", "fail-retry", "ok-2"] {
        server
            .ok(
                Method::POST,
                "/v1/queues/jobs/messages",
                json!({"message": body}),
            )
            .await;
    }
    put_function(
        &server,
        "batch",
        json!({"module": module("batch"), "sources": [{"queue": "jobs", "batch_size": 10, "batch_window_ms": 200}]}),
    )
    .await;
    let poison = eventually_received(&server, "poison", 1, Duration::from_secs(30)).await;
    assert_eq!(poison[0]["message"], "fail-retry");
    let q = server.ok(Method::GET, "/v1/queues/jobs", Value::Null).await;
    assert_eq!(
        q["approximate_visible"].as_u64().unwrap() + q["approximate_in_flight"].as_u64().unwrap(),
        0,
        "{q}"
    );
}

/// Sends `n` messages of `body` to `queue` in one batch.
async fn send_copies(server: &TestServer, queue: &str, n: usize, body: &str) {
    let entries: Vec<Value> = (0..n).map(|_| json!({"message": body})).collect();
    server
        .ok(
            Method::POST,
            &format!("/v1/queues/{queue}/messages"),
            json!({"entries": entries}),
        )
        .await;
}

/// The status of `function`'s source of `queue`.
async fn queue_source(server: &TestServer, function: &str, queue: &str) -> Value {
    let f = server
        .ok(
            Method::GET,
            &format!("/v1/functions/{function}"),
            Value::Null,
        )
        .await;
    f["source_status"]
        .as_array()
        .unwrap_or_else(|| panic!("a function with a queue source shows it: {f}"))
        .iter()
        .find(|s| s["queue"] == queue)
        .unwrap_or_else(|| panic!("no status of the source of {queue}: {f}"))
        .clone()
}

#[tokio::test]
async fn a_queue_source_scales_with_its_backlog_within_the_function_s_concurrency_and_back() {
    const MESSAGES: u64 = 200;
    let server = spawn_server(None).await;
    put_queue(&server, "dead", json!({})).await;
    // One receive too many sends a message to the dead-letter queue: a source that
    // received while throttled, holding messages past their visibility, would show there.
    put_queue(
        &server,
        "backlog",
        json!({"visibility_timeout_s": 30, "redrive_policy": {"dead_letter_queue": "dead", "max_receive_count": 1}}),
    )
    .await;
    for _ in 0..MESSAGES / 100 {
        send_copies(&server, "backlog", 100, "sleep-ms:20").await;
    }
    // Each event waits 20 ms as a call to a slow service would: the backlog takes 4 s
    // one batch at a time, a second with four at once.
    put_function(
        &server,
        "batch",
        json!({"module": module("batch"), "concurrency": 4,
               "sources": [{"queue": "backlog", "batch_size": 1, "max_concurrency": 8}]}),
    )
    .await;
    let done = eventually(Duration::from_secs(60), "the backlog processed", || async {
        let s = queue_source(&server, "batch", "backlog").await;
        (s["events"] == MESSAGES).then_some(s)
    })
    .await;
    let peak = done["peak_concurrency"].as_u64().unwrap();
    assert!(peak > 1, "the source scaled up: {done}");
    assert!(peak <= 8, "within its max_concurrency: {done}");
    // Eight pollers, four slots: the others waited for a slot before receiving.
    assert!(done["throttles"].as_u64().unwrap() > 0, "{done}");
    assert_eq!(
        done["batches"], MESSAGES,
        "each message processed once: {done}"
    );
    assert_eq!(done["failed_batches"], 0, "{done}");
    let q = server
        .ok(Method::GET, "/v1/queues/backlog", Value::Null)
        .await;
    assert_eq!(
        (
            q["approximate_visible"].as_u64(),
            q["approximate_in_flight"].as_u64()
        ),
        (Some(0), Some(0)),
        "{q}"
    );
    assert!(
        receive_all(&server, "dead").await.is_empty(),
        "nothing dead-lettered"
    );
    // Idle, it goes back to a single long poll.
    eventually(
        Duration::from_secs(30),
        "the source back to one poller",
        || async {
            let s = queue_source(&server, "batch", "backlog").await;
            (s["concurrency"] == 1).then_some(())
        },
    )
    .await;
    let events = server
        .metric(r#"switchyard_source_events_total{function="batch",queue="backlog"}"#)
        .await;
    assert_eq!(events, Some(MESSAGES));
}

#[tokio::test]
async fn a_throttled_queue_source_leaves_its_messages_in_the_queue_until_a_slot_is_free() {
    let server = spawn_server(None).await;
    put_queue(&server, "dead", json!({})).await;
    // A message received and then held while its function is busy would outlive its 2 s
    // of visibility, be received again and, at a receive limit of one, go to "dead".
    put_queue(
        &server,
        "slow",
        json!({"visibility_timeout_s": 2, "redrive_policy": {"dead_letter_queue": "dead", "max_receive_count": 1}}),
    )
    .await;
    send_copies(&server, "slow", 3, "sleep-ms:1200").await;
    // One slot, four pollers: three of them wait for the slot at any time.
    put_function(
        &server,
        "batch",
        json!({"module": module("batch"), "concurrency": 1, "timeout_ms": 5000,
               "sources": [{"queue": "slow", "batch_size": 1, "max_concurrency": 4}]}),
    )
    .await;
    let done = eventually(
        Duration::from_secs(60),
        "the three messages processed",
        || async {
            let s = queue_source(&server, "batch", "slow").await;
            (s["events"] == 3).then_some(s)
        },
    )
    .await;
    assert!(done["throttles"].as_u64().unwrap() > 0, "{done}");
    assert_eq!(done["failed_batches"], 0, "{done}");
    assert!(
        receive_all(&server, "dead").await.is_empty(),
        "nothing dead-lettered"
    );
}

#[tokio::test]
async fn a_stream_source_with_a_parallelization_factor_handles_every_record_once() {
    const RECORDS: usize = 40;
    let server = spawn_server(None).await;
    server
        .ok(Method::PUT, "/v1/streams/s", json!({"shards": 1}))
        .await;
    server.ok(Method::PUT, "/v1/topics/out", json!({})).await;
    put_queue(&server, "seen", json!({})).await;
    server
        .ok(
            Method::PUT,
            "/v1/topics/out/subscriptions/q",
            json!({"endpoint": {"queue": "seen"}, "raw_message_delivery": true}),
        )
        .await;
    // Eight keys over four lanes; each record makes the function publish one event that
    // names the record.
    let records: Vec<Value> = (0..RECORDS)
        .map(|i| json!({"partition_key": format!("k{}", i % 8), "data": {"count": 1, "topic": "out"}}))
        .collect();
    server
        .ok(
            Method::POST,
            "/v1/streams/s/records",
            json!({"records": records}),
        )
        .await;
    put_function(
        &server,
        "publisher",
        json!({"module": module("publisher"),
               "sources": [{"stream": "s", "group": "g", "batch_size": 2, "parallelization_factor": 4}]}),
    )
    .await;
    let f = server
        .ok(Method::GET, "/v1/functions/publisher", Value::Null)
        .await;
    assert_eq!(f["sources"][0]["parallelization_factor"], 4, "{f}");
    let got = eventually_received(&server, "seen", RECORDS, Duration::from_secs(60)).await;
    let mut named: Vec<String> = got
        .iter()
        .map(|m| m["message"].as_str().unwrap().to_string())
        .collect();
    named.sort();
    named.dedup();
    assert_eq!(named.len(), RECORDS, "every record once: {named:?}");
    let status = eventually(Duration::from_secs(20), "the source's status", || async {
        let f = server
            .ok(Method::GET, "/v1/functions/publisher", Value::Null)
            .await;
        let status = f["source_status"][0].clone();
        (status["events"] == RECORDS).then_some(status)
    })
    .await;
    assert_eq!(
        (&status["stream"], &status["group"]),
        (&json!("s"), &json!("g")),
        "{status}"
    );
    assert_eq!(status["failed_batches"], 0, "{status}");
    let last = RECORDS.to_string();
    eventually(
        Duration::from_secs(20),
        "checkpointed to the end",
        || async {
            let (_, g) = server
                .json(Method::GET, "/v1/streams/s/groups/g", Value::Null)
                .await;
            (g["shards"][0]["checkpoint"].as_str() == Some(last.as_str())).then_some(())
        },
    )
    .await;
    // A factor outside 1 to 10 is refused, naming the field.
    let (status, problem) = server
        .json(
            Method::PUT,
            "/v1/functions/publisher",
            json!({"module": module("publisher"),
                   "sources": [{"stream": "s", "group": "g", "parallelization_factor": 11}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert!(
        problem.to_string().contains("parallelization_factor"),
        "{problem}"
    );
}

/// A stream `s` of one shard holding `data`, a queue `failed`, and the `batch` function
/// reading `s` as group `g` with the extra source settings `options`.
async fn stream_source_with(server: &TestServer, data: &[&str], options: Value) {
    server
        .ok(Method::PUT, "/v1/streams/s", json!({"shards": 1}))
        .await;
    put_queue(server, "failed", json!({})).await;
    let records: Vec<Value> = data
        .iter()
        .map(|d| json!({"partition_key": "k", "data": d}))
        .collect();
    server
        .ok(
            Method::POST,
            "/v1/streams/s/records",
            json!({"records": records}),
        )
        .await;
    let mut source = json!({"stream": "s", "group": "g", "batch_size": 10});
    source
        .as_object_mut()
        .unwrap()
        .extend(options.as_object().unwrap().clone());
    put_function(
        server,
        "batch",
        json!({"module": module("batch"), "sources": [source]}),
    )
    .await;
}

/// What the source gave up, as its on-failure queue received it.
async fn given_up(server: &TestServer) -> Value {
    let got = eventually_received(server, "failed", 1, Duration::from_secs(30)).await;
    let body = got[0]["message"].clone();
    match body {
        Value::String(text) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
        other => other,
    }
}

fn given_up_data(report: &Value) -> Vec<Value> {
    report["records"]
        .as_array()
        .unwrap_or_else(|| panic!("records given up: {report}"))
        .iter()
        .map(|r| r["data"].clone())
        .collect()
}

async fn checkpointed_to(server: &TestServer, sequence: &str) {
    eventually(
        Duration::from_secs(20),
        "the shard checkpointed",
        || async {
            let (_, g) = server
                .json(Method::GET, "/v1/streams/s/groups/g", Value::Null)
                .await;
            (g["shards"][0]["checkpoint"].as_str() == Some(sequence)).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_stream_source_gives_up_after_its_retries_and_sends_the_records_on() {
    let server = spawn_server(None).await;
    stream_source_with(
        &server,
        &["ok-1", "fail-retry", "ok-2"],
        json!({"maximum_retry_attempts": 2, "on_failure": {"queue": "failed"}}),
    )
    .await;
    let report = given_up(&server).await;
    assert_eq!(report["condition"], "RetryAttemptsExhausted", "{report}");
    assert_eq!(
        report["attempts"], 3,
        "the first attempt and two retries: {report}"
    );
    assert_eq!(
        (&report["stream"], &report["group"]),
        (&json!("s"), &json!("g"))
    );
    assert!(
        report["error"].as_str().unwrap().contains("failed"),
        "{report}"
    );
    // From the failing record on, as Lambda retries a batch from its first failure.
    assert_eq!(given_up_data(&report), [json!("fail-retry"), json!("ok-2")]);
    checkpointed_to(&server, "3").await;
}

#[tokio::test]
async fn a_bisected_stream_batch_gives_up_only_from_the_record_that_fails() {
    let server = spawn_server(None).await;
    server
        .ok(Method::PUT, "/v1/topics/failures", json!({}))
        .await;
    put_queue(&server, "failed", json!({})).await;
    server
        .ok(
            Method::PUT,
            "/v1/topics/failures/subscriptions/q",
            json!({"endpoint": {"queue": "failed"}, "raw_message_delivery": true}),
        )
        .await;
    stream_source_with(
        &server,
        &["ok-1", "ok-2", "trap", "ok-3"],
        json!({"maximum_retry_attempts": 0, "bisect_batch_on_error": true,
               "on_failure": {"topic": "failures"}}),
    )
    .await;
    let report = given_up(&server).await;
    // The whole batch trapped; its halves found the record: the two before it are done.
    assert_eq!(
        given_up_data(&report),
        [json!("trap"), json!("ok-3")],
        "{report}"
    );
    assert!(
        report["error"].as_str().unwrap().contains("trap"),
        "{report}"
    );
    checkpointed_to(&server, "4").await;
}

#[tokio::test]
async fn a_stream_source_gathers_records_for_its_batch_window() {
    let server = spawn_server(None).await;
    stream_source_with(
        &server,
        &["first"],
        json!({"batch_size": 3, "batch_window_ms": 120000}),
    )
    .await;
    // Once the source holds the shard it has read the first record, and gathers. The
    // source makes its group: until then there is none.
    eventually(
        Duration::from_secs(60),
        "the source holds the shard",
        || async {
            let (_, g) = server
                .json(Method::GET, "/v1/streams/s/groups/g", Value::Null)
                .await;
            g["shards"][0]["member"].is_string().then_some(())
        },
    )
    .await;
    server
        .ok(
            Method::POST,
            "/v1/streams/s/records",
            json!({"records": [{"partition_key": "k", "data": "second"},
                               {"partition_key": "k", "data": "third"}]}),
        )
        .await;
    let status = eventually(Duration::from_secs(60), "one batch ran", || async {
        let f = server
            .ok(Method::GET, "/v1/functions/batch", Value::Null)
            .await;
        let s = f["source_status"][0].clone();
        (s["batches"].as_u64() >= Some(1)).then_some(s)
    })
    .await;
    assert_eq!(
        (status["batches"].as_u64(), status["events"].as_u64()),
        (Some(1), Some(3)),
        "one full batch, not the first record alone: {status}"
    );
}

#[tokio::test]
async fn a_stream_source_gives_up_records_older_than_its_maximum_age() {
    let server = spawn_server(None).await;
    stream_source_with(
        &server,
        &["fail-retry"],
        json!({"maximum_record_age_s": 1, "on_failure": {"queue": "failed"}}),
    )
    .await;
    let report = given_up(&server).await;
    assert_eq!(report["condition"], "RecordAgeExceeded", "{report}");
    assert_eq!(given_up_data(&report), [json!("fail-retry")]);
    checkpointed_to(&server, "1").await;
    // Settings out of range, or a destination that does not exist, are refused.
    for (options, field) in [
        (json!({"maximum_record_age_s": 0}), "maximum_record_age_s"),
        (
            json!({"maximum_retry_attempts": 10001}),
            "maximum_retry_attempts",
        ),
        (json!({"on_failure": {"queue": "nowhere"}}), "nowhere"),
    ] {
        let mut source = json!({"stream": "s", "group": "g"});
        source
            .as_object_mut()
            .unwrap()
            .extend(options.as_object().unwrap().clone());
        let (status, problem) = server
            .json(
                Method::PUT,
                "/v1/functions/batch",
                json!({"module": module("batch"), "sources": [source]}),
            )
            .await;
        assert!(status.is_client_error(), "{options}: {status} {problem}");
        assert!(problem.to_string().contains(field), "{options}: {problem}");
    }
}

#[tokio::test]
async fn a_stream_source_checkpoints_successes_and_resumes_from_the_lowest_failure() {
    let server = spawn_server(None).await;
    server
        .ok(Method::PUT, "/v1/streams/s", json!({"shards": 1}))
        .await;
    server
        .ok(
            Method::POST,
            "/v1/streams/s/records",
            json!({"records": [
                {"partition_key": "k", "data": "ok-1"},
                {"partition_key": "k", "data": "fail-retry"},
                {"partition_key": "k", "data": "ok-2"}
            ]}),
        )
        .await;
    put_function(
        &server,
        "batch",
        json!({"module": module("batch"), "sources": [{"stream": "s", "group": "g", "batch_size": 10}]}),
    )
    .await;
    // The source creates the group on its first poll: until then there is no checkpoint.
    let checkpoint = || async {
        let (_, g) = server
            .json(Method::GET, "/v1/streams/s/groups/g", Value::Null)
            .await;
        g["shards"][0]["checkpoint"].as_str().map(str::to_string)
    };
    eventually(
        Duration::from_secs(20),
        "the first record is checkpointed",
        || async { (checkpoint().await.as_deref() == Some("1")).then_some(()) },
    )
    .await;
    // The failure holds the shard at record 2 while it keeps failing...
    eventually(Duration::from_secs(20), "record 2 failed twice", || async {
        (server
            .metric("switchyard_source_failed_batches_total")
            .await?
            >= 2)
            .then_some(())
    })
    .await;
    assert_eq!(checkpoint().await.as_deref(), Some("1"));
    // ...and once the handler is fixed, processing resumes from it to the end.
    put_function(
        &server,
        "batch",
        json!({"module": module("noop"), "sources": [{"stream": "s", "group": "g", "batch_size": 10}]}),
    )
    .await;
    eventually(
        Duration::from_secs(30),
        "the shard is processed to the end",
        || async { (checkpoint().await.as_deref() == Some("3")).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn the_invoke_command_prints_the_result_and_exits_by_outcome() {
    let server = spawn_server(None).await;
    put_function(&server, "email", json!({"module": module("email")})).await;
    let out = server
        .cli(
            &[
                "invoke",
                "email",
                "--message",
                r#"{"order_id":"o-9","customer_email":"x@y.example"}"#,
            ],
            "",
        )
        .await;
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert!(!v["logs"].as_array().unwrap().is_empty(), "{v}");
    let out = server
        .cli(
            &["invoke", "email", "--message", r#"{"order_id":"o-9"}"#],
            "",
        )
        .await;
    assert_eq!(out.status.code(), Some(1), "a handler error exits 1");
    let out = server.cli(&["invoke", "email", "--message", "{"], "").await;
    assert_eq!(out.status.code(), Some(2), "bad input exits 2");
}

#[tokio::test]
async fn a_functions_recent_logs_show_what_its_deliveries_logged_and_why_they_failed() {
    let server = spawn_server(None).await;
    server.ok(Method::PUT, "/v1/topics/orders", json!({})).await;
    server
        .ok(Method::PUT, "/v1/topics/order_flagged", json!({}))
        .await;
    put_function(
        &server,
        "fraud",
        json!({"module": module("fraud"), "env": {"max_total": "100"}}),
    )
    .await;
    put_function(&server, "broken", json!({"module": module("trap")})).await;
    for (sub, f) in [("fraud", "fraud"), ("broken", "broken")] {
        server
            .ok(
                Method::PUT,
                &format!("/v1/topics/orders/subscriptions/{sub}"),
                json!({"endpoint": {"function": f}, "delivery_policy": {"num_retries": 0}}),
            )
            .await;
    }
    let published = server
        .ok(
            Method::POST,
            "/v1/topics/orders/publish",
            json!({"message": {"order_id": "o-9", "total": 500, "country": "NL"}}),
        )
        .await;
    let id = published["message_id"].as_str().unwrap().to_string();
    let logs = |function: &'static str| {
        let server = &server;
        async move {
            let v = server
                .ok(
                    Method::GET,
                    &format!("/v1/functions/{function}/logs"),
                    Value::Null,
                )
                .await;
            v["logs"].as_array().unwrap().clone()
        }
    };
    let fraud = eventually(Duration::from_secs(20), "fraud's log line", || async {
        let lines = logs("fraud").await;
        (!lines.is_empty()).then_some(lines)
    })
    .await;
    assert_eq!(fraud[0]["message_id"], id.as_str());
    assert_eq!(fraud[0]["level"], "warn");
    assert!(
        fraud[0]["message"]
            .as_str()
            .unwrap()
            .contains("o-9 flagged"),
        "{fraud:?}"
    );
    let broken = eventually(Duration::from_secs(20), "the trap's log lines", || async {
        let lines = logs("broken").await;
        lines.iter().any(|l| l["source"] == "host").then_some(lines)
    })
    .await;
    let failed = broken.iter().find(|l| l["source"] == "host").unwrap();
    assert_eq!(failed["level"], "error");
    assert_eq!(failed["message_id"], id.as_str());
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .starts_with("invocation failed: guest trapped"),
        "{failed}"
    );
    assert!(
        broken.iter().any(|l| l["source"] == "stderr"
            && l["message"]
                .as_str()
                .unwrap()
                .contains("trap guest refuses")),
        "the panic message is kept: {broken:?}"
    );
    let (status, _) = server
        .json(Method::GET, "/v1/functions/nothing/logs", Value::Null)
        .await;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND);
}

/// A function's sources keep running, counts and all, when only its other settings
/// change: an event invoke config put through Lambda leaves its queue source as it was.
#[tokio::test]
async fn changing_a_functions_asynchronous_settings_leaves_its_sources_running() {
    let server = spawn_server(None).await;
    put_queue(&server, "jobs", json!({})).await;
    put_queue(&server, "failed", json!({})).await;
    send_copies(&server, "jobs", 3, "ok-1").await;
    put_function(
        &server,
        "batch",
        json!({"module": module("batch"), "sources": [{"queue": "jobs"}]}),
    )
    .await;
    let events = |s: &Value| s["events"].as_u64().unwrap_or_else(|| panic!("{s}"));
    let before = eventually(
        Duration::from_secs(60),
        "the source's first events",
        || async {
            let s = queue_source(&server, "batch", "jobs").await;
            (events(&s) >= 3).then_some(s)
        },
    )
    .await;
    let (status, config) = server
        .json(
            Method::PUT,
            "/2019-09-25/functions/batch/event-invoke-config",
            json!({"DestinationConfig": {"OnFailure": {
                "Destination": "arn:aws:sqs:us-east-1:000000000000:failed"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{config}");
    let after = queue_source(&server, "batch", "jobs").await;
    assert_eq!(
        (events(&after), &after["batches"]),
        (events(&before), &before["batches"]),
        "the source was started again: {after}"
    );
    send_copies(&server, "jobs", 2, "ok-2").await;
    eventually(
        Duration::from_secs(60),
        "the source's next events",
        || async {
            let s = queue_source(&server, "batch", "jobs").await;
            (events(&s) >= events(&before) + 2).then_some(())
        },
    )
    .await;
}
