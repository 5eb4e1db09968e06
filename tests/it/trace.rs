//! W3C trace context from a publish to every delivery it causes: given as `traceparent`
//! and `tracestate` headers on the publish, it reaches a queue consumer as attributes, a
//! webhook as headers, and a function's event, whose own publishes carry it on. With
//! `--otlp-endpoint`, the spans of that way reach an OTLP collector (a small one here,
//! decoding the protocol's messages) as one trace; a function consuming a queue in
//! batches invokes in a trace of its own, linked to each message's.

use crate::guests;
use crate::harness::{Launch, TestServer, eventually, spawn_server};
use crate::webhooks::Receiver;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use reqwest::Method;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const STATE: &str = "rojo=00f067aa0ba902b7";

/// The functions' timeout: an invocation timed out on a busy machine is retried, and the
/// tests that count invocations mean the first to succeed.
const SLOW_MACHINE_MS: u64 = 60_000;

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

/// A queue `q`, a webhook and the `publisher` function subscribed to `orders`, and
/// queue `out-q` subscribed to `out`, where the function publishes. The webhook's
/// receiver is returned.
async fn resources(server: &TestServer) -> Receiver {
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
            json!({"module": guests::path("publisher"), "env": {"topic": "out"},
                   "timeout_ms": SLOW_MACHINE_MS}),
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
    hook
}

#[tokio::test]
async fn a_publishers_trace_reaches_consumers_webhooks_and_what_functions_publish() {
    let server = spawn_server(None).await;
    let hook = resources(&server).await;
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

/// One span as the collector got it: ids in hex.
#[derive(Debug, Clone)]
struct Got {
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    /// The spans it is linked to, as (trace id, span id).
    links: Vec<(String, String)>,
}

/// An OTLP/HTTP collector on loopback keeping every span it is sent.
async fn collector() -> (Arc<Mutex<Vec<Got>>>, String) {
    let spans: Arc<Mutex<Vec<Got>>> = Arc::default();
    let kept = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let kept = kept.clone();
            async move {
                let req = ExportTraceServiceRequest::decode(body).expect("an OTLP request");
                let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
                for rs in req.resource_spans {
                    for ss in rs.scope_spans {
                        for s in ss.spans {
                            kept.lock().unwrap().push(Got {
                                name: s.name,
                                trace_id: hex(&s.trace_id),
                                span_id: hex(&s.span_id),
                                parent: hex(&s.parent_span_id),
                                links: s
                                    .links
                                    .iter()
                                    .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
                                    .collect(),
                            });
                        }
                    }
                }
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (spans, url)
}

#[tokio::test]
async fn with_an_otlp_endpoint_one_trace_follows_the_event_through_every_hop() {
    // Built before the collector runs: building blocks this test's only thread.
    guests::path("publisher");
    let (spans, url) = collector().await;
    let server = Launch::new(None, &["--otlp-endpoint", &url])
        .env("OTEL_BSP_SCHEDULE_DELAY", "50")
        .spawn()
        .await;
    let hook = resources(&server).await;
    publish_with(&server, PARENT, json!({"count": 1})).await;

    let names = [
        "publish orders",
        "match",
        "store",
        "deliver orders/hook",
        "deliver orders/fn",
        "invoke pub",
        "publish out",
    ];
    let got = eventually(
        Duration::from_secs(30),
        "every span of the trace",
        || async {
            let got = spans.lock().unwrap().clone();
            names
                .iter()
                .all(|n| got.iter().any(|s| s.name == *n))
                .then_some(got)
        },
    )
    .await;
    // A delivery attempt that failed on a busy machine is tried again: every attempt
    // and what it caused is in the trace, each the child of the one before.
    let all = |name: &str| -> Vec<Got> { got.iter().filter(|s| s.name == name).cloned().collect() };
    let ids = |spans: &[Got]| -> Vec<String> { spans.iter().map(|s| s.span_id.clone()).collect() };
    let trace_id = &PARENT[3..35];
    for n in names {
        for s in all(n) {
            assert_eq!(
                s.trace_id, trace_id,
                "{n} is in the publisher's trace: {got:#?}"
            );
        }
    }
    let publish = all("publish orders");
    assert_eq!(publish.len(), 1, "one publish: {got:#?}");
    let publish = &publish[0];
    assert_eq!(
        publish.parent,
        &PARENT[36..52],
        "the publisher's span is its parent"
    );
    // The function's publish is matched and stored too, as its own publish's children.
    for child in ["match", "store"] {
        assert!(
            all(child).iter().any(|s| s.parent == publish.span_id),
            "{child} is the publish's child: {got:#?}"
        );
    }
    for child in ["deliver orders/hook", "deliver orders/fn"] {
        for s in all(child) {
            assert_eq!(s.parent, publish.span_id, "{child}");
        }
    }
    let attempts = ids(&all("deliver orders/fn"));
    for invoke in all("invoke pub") {
        assert!(
            attempts.contains(&invoke.parent),
            "an invocation is an attempt's child: {got:#?}"
        );
    }
    let invocations = ids(&all("invoke pub"));
    for p in all("publish out") {
        assert!(
            invocations.contains(&p.parent),
            "a function's publish is its invocation's child: {got:#?}"
        );
    }
    // The webhook's request is an attempt's child; the queue's message names the publish.
    let hit = hook.wait_for(1, Duration::from_secs(20)).await.remove(0);
    let header = hit.header("traceparent");
    let hook_attempts = ids(&all("deliver orders/hook"));
    assert!(
        hook_attempts
            .iter()
            .any(|a| header == format!("00-{trace_id}-{a}-01")),
        "the webhook's traceparent {header} names an attempt: {got:#?}"
    );
    let queued = attributes(&server, "q", 1).await;
    assert_eq!(
        queued[0]["traceparent"]["Value"],
        format!("00-{trace_id}-{}-01", publish.span_id)
    );
}

#[tokio::test]
async fn a_batch_from_a_queue_is_invoked_in_a_span_linked_to_each_message_trace() {
    const OTHER: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    // Built before the collector runs: building blocks this test's only thread.
    guests::path("publisher");
    let (spans, url) = collector().await;
    let server = Launch::new(None, &["--otlp-endpoint", &url])
        .env("OTEL_BSP_SCHEDULE_DELAY", "50")
        .spawn()
        .await;
    for q in ["work", "out-q"] {
        server
            .ok(Method::PUT, &format!("/v1/queues/{q}"), json!({}))
            .await;
    }
    for t in ["orders", "out"] {
        server
            .ok(Method::PUT, &format!("/v1/topics/{t}"), json!({}))
            .await;
    }
    for (topic, queue) in [("orders", "work"), ("out", "out-q")] {
        server
            .ok(
                Method::PUT,
                &format!("/v1/topics/{topic}/subscriptions/to-{queue}"),
                json!({"endpoint": {"queue": queue}, "raw_message_delivery": true}),
            )
            .await;
    }
    // Both wait in the queue before the function exists, so one receive takes both.
    publish_with(&server, PARENT, json!({"count": 1})).await;
    publish_with(&server, OTHER, json!({"count": 2})).await;
    server
        .ok(
            Method::PUT,
            "/v1/functions/pub",
            json!({"module": guests::path("publisher"), "env": {"topic": "out"},
                   "timeout_ms": SLOW_MACHINE_MS,
                   "sources": [{"queue": "work", "batch_size": 10}]}),
        )
        .await;

    let got = eventually(
        Duration::from_secs(30),
        "the batch's invocation and its publishes",
        || async {
            let got = spans.lock().unwrap().clone();
            let publishes = got.iter().filter(|s| s.name == "publish out").count();
            (got.iter().any(|s| s.name == "invoke pub") && publishes >= 2).then_some(got)
        },
    )
    .await;
    let invoke: Vec<&Got> = got.iter().filter(|s| s.name == "invoke pub").collect();
    assert_eq!(invoke.len(), 1, "one batch: {got:#?}");
    let invoke = invoke[0];
    assert_eq!(invoke.parent, "", "a root of its own");
    let published: Vec<&Got> = got.iter().filter(|s| s.name == "publish orders").collect();
    let mut want: Vec<(String, String)> = published
        .iter()
        .map(|s| (s.trace_id.clone(), s.span_id.clone()))
        .collect();
    let mut links = invoke.links.clone();
    want.sort();
    links.sort();
    assert_eq!(links, want, "linked to both messages' publishes: {got:#?}");
    let traces: Vec<&str> = want.iter().map(|(t, _)| t.as_str()).collect();
    assert!(traces.contains(&&PARENT[3..35]) && traces.contains(&&OTHER[3..35]));
    for p in got.iter().filter(|s| s.name == "publish out") {
        assert_eq!(
            (p.trace_id.as_str(), p.parent.as_str()),
            (invoke.trace_id.as_str(), invoke.span_id.as_str()),
            "what the batch published is the invocation's child"
        );
    }
}
