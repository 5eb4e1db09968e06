//! Handlers in Python and JavaScript end to end through the real server: the fraud
//! example of each language, built from `guests/python` and `guests/js` with
//! componentize-py and componentize-js, subscribed to a topic and publishing downstream,
//! and consuming a queue in batches whose failed items it reports.

use crate::guests;
use crate::harness::{TestServer, eventually, spawn_server};
use reqwest::Method;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

/// A first compile of an interpreter's component takes tens of seconds on a busy machine.
const WITHIN: Duration = Duration::from_secs(180);

async fn fraud_subscribes_publishes_and_reports_batch_failures(module: PathBuf) {
    let server = spawn_server(None).await;
    for (path, body) in [
        ("/v1/queues/flagged", json!({})),
        ("/v1/queues/orders-dlq", json!({})),
        (
            "/v1/queues/orders-q",
            json!({"visibility_timeout_s": 1,
                   "redrive_policy": {"dead_letter_queue": "orders-dlq", "max_receive_count": 1}}),
        ),
        ("/v1/topics/orders", json!({})),
        ("/v1/topics/order_flagged", json!({})),
        (
            "/v1/topics/order_flagged/subscriptions/review",
            json!({"endpoint": {"queue": "flagged"}, "raw_message_delivery": true}),
        ),
    ] {
        server.ok(Method::PUT, path, body).await;
    }
    server
        .ok(
            Method::PUT,
            "/v1/functions/fraud",
            json!({"module": module, "env": {"max_total": "100", "blocked_countries": "XX"},
                   "timeout_ms": 10000,
                   "sources": [{"queue": "orders-q", "batch_size": 10}]}),
        )
        .await;
    server
        .ok(
            Method::PUT,
            "/v1/topics/orders/subscriptions/fraud",
            json!({"endpoint": {"function": "fraud"}}),
        )
        .await;

    // Through a subscription: a suspicious order is flagged downstream.
    server
        .ok(
            Method::POST,
            "/v1/topics/orders/publish",
            json!({"message": {"order_id": "o-1", "total": 500, "country": "NL"}}),
        )
        .await;
    let flagged = received(&server, "flagged", 1).await;
    assert_eq!(
        flagged[0]["message"],
        json!({"order_id": "o-1", "reason": "total 500 is above 100",
               "order": {"order_id": "o-1", "total": 500, "country": "NL"}})
    );
    assert_eq!(
        flagged[0]["attributes"]["reason"]["Value"],
        "total 500 is above 100"
    );

    // As a queue source: one batch, whose item that is no order fails alone.
    for message in [
        json!({"order_id": "o-2", "total": 5, "country": "NL"}),
        json!("not an order"),
        json!({"order_id": "o-3", "total": 5, "country": "XX"}),
    ] {
        server
            .ok(
                Method::POST,
                "/v1/queues/orders-q/messages",
                json!({ "message": message }),
            )
            .await;
    }
    let flagged = received(&server, "flagged", 1).await;
    assert_eq!(flagged[0]["message"]["reason"], "country XX is blocked");
    let dead = received(&server, "orders-dlq", 1).await;
    assert_eq!(dead[0]["message"], "not an order");
    let q = server
        .ok(Method::GET, "/v1/queues/orders-q", Value::Null)
        .await;
    assert_eq!(
        (
            q["approximate_visible"].as_u64(),
            q["approximate_in_flight"].as_u64()
        ),
        (Some(0), Some(0)),
        "the orders that succeeded were acknowledged: {q}"
    );
    let status = server
        .ok(Method::GET, "/v1/functions/fraud", Value::Null)
        .await;
    let source = &status["source_status"][0];
    assert!(source["failed_batches"].as_u64() >= Some(1), "{status}");
}

/// Receives (and acknowledges) from `queue` until `n` messages came.
async fn received(server: &TestServer, queue: &str, n: usize) -> Vec<Value> {
    let got = std::sync::Mutex::new(Vec::new());
    eventually(WITHIN, &format!("{n} messages in {queue}"), || async {
        let v = server
            .ok(
                Method::POST,
                &format!("/v1/queues/{queue}/receive"),
                json!({"max_messages": 10, "wait_s": 1}),
            )
            .await;
        for m in v["messages"].as_array().into_iter().flatten() {
            server
                .ok(
                    Method::POST,
                    &format!("/v1/queues/{queue}/ack"),
                    json!({"receipts": [m["receipt"]]}),
                )
                .await;
            got.lock().unwrap().push(m.clone());
        }
        let got = got.lock().unwrap();
        (got.len() >= n).then(|| got.clone())
    })
    .await
}

#[tokio::test]
async fn a_python_handler_subscribes_publishes_and_reports_batch_failures() {
    fraud_subscribes_publishes_and_reports_batch_failures(guests::python("fraud")).await;
}

#[tokio::test]
async fn a_javascript_handler_subscribes_publishes_and_reports_batch_failures() {
    fraud_subscribes_publishes_and_reports_batch_failures(guests::js("fraud")).await;
}
