//! W3C trace context from a publish to every delivery it causes: given as `traceparent`
//! and `tracestate` headers on the publish, it reaches a queue consumer as attributes, a
//! webhook as headers, and a function's event, whose own publishes carry it on.

use crate::guests;
use crate::harness::{TestServer, eventually, spawn_server};
use crate::webhooks::Receiver;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const STATE: &str = "rojo=00f067aa0ba902b7";

async fn publish_with(server: &TestServer, traceparent: &str, message: Value) {
    let res = reqwest::Client::new()
        .post(server.url("/v1/topics/orders/publish"))
        .header("traceparent", traceparent)
        .header("tracestate", STATE)
        .json(&json!({"message": message}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), reqwest::StatusCode::OK);
}

/// The attributes of the messages `queue` holds, once it holds `n`.
async fn attributes(server: &TestServer, queue: &str, n: usize) -> Vec<Value> {
    eventually(
        Duration::from_secs(20),
        &format!("{n} in {queue}"),
        || async {
            let v = server
                .ok(
                    Method::POST,
                    &format!("/v1/queues/{queue}/receive"),
                    json!({"max_messages": 10, "visibility_timeout_s": 0}),
                )
                .await;
            let got: Vec<Value> = v["messages"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m["attributes"].clone())
                .collect();
            (got.len() >= n).then_some(got)
        },
    )
    .await
}

#[tokio::test]
async fn a_publishers_trace_reaches_consumers_webhooks_and_what_functions_publish() {
    let server = spawn_server(None).await;
    let (hook, url) = Receiver::start(&[]).await;
    for q in ["q", "out-q"] {
        server
            .ok(Method::PUT, &format!("/v1/queues/{q}"), json!({}))
            .await;
    }
    for t in ["orders", "out"] {
        server
            .ok(Method::PUT, &format!("/v1/topics/{t}"), json!({}))
            .await;
    }
    server
        .ok(
            Method::PUT,
            "/v1/functions/pub",
            json!({"module": guests::path("publisher"), "env": {"topic": "out"}}),
        )
        .await;
    for (topic, sub, spec) in [
        (
            "orders",
            "to-q",
            json!({"endpoint": {"queue": "q"}, "raw_message_delivery": true}),
        ),
        (
            "orders",
            "hook",
            json!({"endpoint": {"http": {"url": url}}}),
        ),
        ("orders", "fn", json!({"endpoint": {"function": "pub"}})),
        (
            "out",
            "to-out-q",
            json!({"endpoint": {"queue": "out-q"}, "raw_message_delivery": true}),
        ),
    ] {
        server
            .ok(
                Method::PUT,
                &format!("/v1/topics/{topic}/subscriptions/{sub}"),
                spec,
            )
            .await;
    }

    publish_with(&server, PARENT, json!({"count": 1})).await;

    let queued = attributes(&server, "q", 1).await;
    assert_eq!(queued[0]["traceparent"]["Value"], PARENT, "{queued:?}");
    assert_eq!(queued[0]["tracestate"]["Value"], STATE, "{queued:?}");
    let hit = hook.wait_for(1, Duration::from_secs(20)).await.remove(0);
    assert_eq!(hit.header("traceparent"), PARENT);
    assert_eq!(hit.header("tracestate"), STATE);
    let onward = attributes(&server, "out-q", 1).await;
    assert_eq!(
        onward[0]["traceparent"]["Value"], PARENT,
        "the function's publish continues the trace: {onward:?}"
    );

    // A malformed traceparent is ignored, not refused.
    server
        .ok(Method::POST, "/v1/queues/q/purge", Value::Null)
        .await;
    publish_with(&server, "00-not-a-trace-01", json!({"count": 0})).await;
    let queued = attributes(&server, "q", 1).await;
    assert!(queued[0].get("traceparent").is_none(), "{queued:?}");
}
