//! HTTP endpoints end to end: a local receiver (axum on port 0) records every request and
//! answers from a script, while the real server delivers envelope, raw and CloudEvents
//! bodies, signs them, retries per policy and gives up to a dead-letter queue.

use crate::harness::{Launch, TestServer, eventually, spawn_server, spawn_server_with_args};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    at: Instant,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Hit {
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

/// A scripted answer: status and `Retry-After` seconds.
pub(crate) type Answer = (u16, Option<u64>);

/// Answers: a queue of (status, Retry-After) consumed one per request; 200 when empty.
#[derive(Clone, Default)]
pub(crate) struct Receiver {
    hits: Arc<Mutex<Vec<Hit>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
}

impl Receiver {
    pub(crate) async fn start(script: &[Answer]) -> (Self, String) {
        let r = Receiver::default();
        r.script.lock().unwrap().extend(script.iter().copied());
        let app = axum::Router::new().fallback(handle).with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (r, url)
    }

    pub(crate) fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    pub(crate) async fn wait_for(&self, n: usize, within: Duration) -> Vec<Hit> {
        eventually(
            within,
            &format!("{n} requests reach the receiver"),
            || async {
                let h = self.hits();
                (h.len() >= n).then_some(h)
            },
        )
        .await
    }
}

async fn handle(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> impl IntoResponse {
    r.hits.lock().unwrap().push(Hit {
        at: Instant::now(),
        headers,
        body: body.to_vec(),
    });
    let (status, retry_after) = r.script.lock().unwrap().pop_front().unwrap_or((200, None));
    let mut h = HeaderMap::new();
    if let Some(s) = retry_after {
        h.insert("retry-after", s.to_string().parse().unwrap());
    }
    (StatusCode::from_u16(status).unwrap(), h)
}

async fn call(server: &TestServer, method: Method, path: &str, body: Value) -> (u16, Value) {
    let (status, v) = server.json(method, path, body).await;
    (status.as_u16(), v)
}

/// Creates topic `t` with one http subscription `s`; returns the subscription as the
/// creating `PUT` answered it (with its secret).
async fn subscribe(server: &TestServer, sub: Value) -> Value {
    let (st, _) = call(server, Method::PUT, "/v1/topics/t", json!({})).await;
    assert!(st == 200 || st == 201);
    let (st, v) = call(server, Method::PUT, "/v1/topics/t/subscriptions/s", sub).await;
    assert_eq!(st, 201, "{v}");
    v
}

async fn publish(server: &TestServer, message: Value, attributes: Value) -> String {
    let (st, v) = call(
        server,
        Method::POST,
        "/v1/topics/t/publish",
        json!({"message": message, "attributes": attributes}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    v["message_id"].as_str().unwrap().to_string()
}

/// The few lines a receiver needs to check a signature.
fn verify(secret: &str, hit: &Hit) -> bool {
    let ts = hit.header("x-switchyard-timestamp");
    let Some(sig) = hit.header("x-switchyard-signature").strip_prefix("v1=") else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(&hit.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    expected == sig
}

pub(crate) fn fast_policy(retries: u32) -> Value {
    json!({"num_retries": retries, "min_delay_s": 1, "max_delay_s": 1})
}

#[tokio::test]
async fn envelope_is_posted_signed_with_the_subscription_secret() {
    let server = spawn_server(None).await;
    let (rx, url) = Receiver::start(&[]).await;
    let sub = subscribe(
        &server,
        json!({"endpoint": {"http": {"url": url, "headers": {"x-api-key": "k1"}}}}),
    )
    .await;
    let secret = sub["endpoint"]["http"]["secret"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(secret.len(), 64);
    let id = publish(&server, json!({"order": 1}), json!({"kind": "placed"})).await;

    let hit = rx.wait_for(1, Duration::from_secs(10)).await.remove(0);
    assert!(
        verify(&secret, &hit),
        "the signature verifies with the secret"
    );
    assert!(!verify("wrong-secret-wrong-secret", &hit));
    assert_eq!(hit.header("x-switchyard-message-id"), id);
    assert_eq!(hit.header("x-api-key"), "k1");
    assert_eq!(hit.header("content-type"), "application/json");
    let body = hit.json();
    assert_eq!(body["type"], "Notification");
    assert_eq!(body["message"], json!({"order": 1}));
    assert_eq!(
        body["attributes"]["kind"],
        json!({"Type": "String", "Value": "placed"})
    );
    assert_eq!(body["subscription"], "s");

    // The secret is shown once: later reads do not reveal it.
    let (_, got) = call(
        &server,
        Method::GET,
        "/v1/topics/t/subscriptions/s",
        Value::Null,
    )
    .await;
    assert_ne!(got["endpoint"]["http"]["secret"], json!(secret));
}

#[tokio::test]
async fn raw_delivery_posts_the_message_with_attributes_as_headers() {
    let server = spawn_server(None).await;
    let (rx, url) = Receiver::start(&[]).await;
    subscribe(
        &server,
        json!({"endpoint": {"http": {"url": url}}, "raw_message_delivery": true}),
    )
    .await;
    publish(&server, json!({"a": [1, 2]}), json!({"Color": "red"})).await;
    let hit = rx.wait_for(1, Duration::from_secs(10)).await.remove(0);
    assert_eq!(hit.json(), json!({"a": [1, 2]}));
    assert_eq!(hit.header("x-switchyard-attr-color"), "red");
}

#[tokio::test]
async fn cloudevents_binary_and_structured_modes() {
    let server = spawn_server(None).await;
    let (rx, url) = Receiver::start(&[]).await;
    subscribe(
        &server,
        json!({"endpoint": {"http": {"url": url.clone(), "format": "cloudevents"}}}),
    )
    .await;
    let (st, _) = call(
        &server,
        Method::PUT,
        "/v1/topics/t/subscriptions/structured",
        json!({"endpoint": {"http": {"url": url, "format": "cloudevents-structured"}}}),
    )
    .await;
    assert_eq!(st, 201);
    let id = publish(&server, json!({"n": 7}), json!({})).await;
    let hits = rx.wait_for(2, Duration::from_secs(10)).await;
    let binary = hits
        .iter()
        .find(|h| h.header("ce-specversion") == "1.0")
        .expect("a binary-mode request");
    assert_eq!(binary.header("ce-id"), id);
    assert_eq!(binary.header("ce-source"), "/switchyard/topics/t");
    assert!(!binary.header("ce-type").is_empty());
    assert!(!binary.header("ce-time").is_empty());
    assert_eq!(binary.json(), json!({"n": 7}));
    let structured = hits
        .iter()
        .find(|h| h.header("content-type") == "application/cloudevents+json")
        .expect("a structured-mode request");
    let ce = structured.json();
    assert_eq!(ce["specversion"], "1.0");
    assert_eq!(ce["id"], json!(id));
    assert_eq!(ce["data"], json!({"n": 7}));
}

#[tokio::test]
async fn failed_attempts_are_retried_on_schedule_until_one_succeeds() {
    let server = spawn_server(None).await;
    let (rx, url) = Receiver::start(&[(500, None), (503, None)]).await;
    subscribe(
        &server,
        json!({"endpoint": {"http": {"url": url}}, "delivery_policy": fast_policy(3)}),
    )
    .await;
    publish(&server, json!({"x": 1}), json!({})).await;
    let hits = rx.wait_for(3, Duration::from_secs(20)).await;
    let attempts: Vec<&str> = hits
        .iter()
        .map(|h| h.header("x-switchyard-attempt"))
        .collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    for w in hits.windows(2) {
        // The policy's delay is a lower bound on the gap between attempts.
        assert!(
            w[1].at - w[0].at >= Duration::from_millis(900),
            "retried too early"
        );
    }
    // Delivered on the third attempt (acknowledged once counted): nothing more arrives.
    eventually(Duration::from_secs(10), "the delivery is done", || async {
        (server.metric("switchyard_delivered_total").await? == 1).then_some(())
    })
    .await;
    assert_eq!(rx.hits().len(), 3);
}

#[tokio::test]
async fn retry_after_of_a_429_is_honoured() {
    let server = spawn_server(None).await;
    let (rx, url) = Receiver::start(&[(429, Some(3))]).await;
    subscribe(
        &server,
        json!({"endpoint": {"http": {"url": url}}, "delivery_policy": fast_policy(2)}),
    )
    .await;
    publish(&server, json!({}), json!({})).await;
    let hits = rx.wait_for(2, Duration::from_secs(20)).await;
    assert!(
        hits[1].at - hits[0].at >= Duration::from_millis(2900),
        "Retry-After: 3 was not honoured"
    );
}

#[tokio::test]
async fn a_400_is_not_retried_and_goes_to_the_dead_letter_queue_with_the_reason() {
    let server = spawn_server(None).await;
    let (rx, url) = Receiver::start(&[(400, None)]).await;
    let (st, _) = call(&server, Method::PUT, "/v1/queues/dead", json!({})).await;
    assert_eq!(st, 201);
    subscribe(&server, json!({"endpoint": {"http": {"url": url}}, "delivery_policy": fast_policy(3), "dead_letter_queue": "dead"})).await;
    let id = publish(&server, json!({"y": 2}), json!({})).await;
    let dead = eventually(
        Duration::from_secs(10),
        "the delivery reaches the dead-letter queue",
        || async {
            let (_, v) = call(
                &server,
                Method::POST,
                "/v1/queues/dead/receive",
                json!({"max_messages": 10}),
            )
            .await;
            let m = v["messages"]
                .as_array()
                .cloned()
                .expect("a receive answers with `messages`");
            (!m.is_empty()).then_some(m)
        },
    )
    .await;
    assert_eq!(rx.hits().len(), 1, "a 400 is not retried");
    assert_eq!(dead[0]["message_id"], json!(id));
    assert_eq!(dead[0]["message"]["message"], json!({"y": 2}));
    // The dead letter is the envelope the endpoint was sent, naming the subscription.
    assert_eq!(dead[0]["message"]["subscription"], "s");
    assert_eq!(dead[0]["attributes"]["Attempts"]["Value"], "1");
    assert!(
        dead[0]["attributes"]["ErrorMessage"]["Value"]
            .as_str()
            .unwrap()
            .contains("400")
    );
}

#[tokio::test]
async fn after_the_last_retry_the_delivery_is_dead_lettered_with_the_attempt_count() {
    let server = spawn_server(None).await;
    let (rx, url) = Receiver::start(&[(500, None), (500, None), (500, None)]).await;
    call(&server, Method::PUT, "/v1/queues/dead", json!({})).await;
    subscribe(&server, json!({"endpoint": {"http": {"url": url}}, "delivery_policy": fast_policy(1), "dead_letter_queue": "dead"})).await;
    publish(&server, json!({}), json!({})).await;
    let dead = eventually(Duration::from_secs(15), "dead-lettered", || async {
        let (_, v) = call(&server, Method::POST, "/v1/queues/dead/receive", json!({})).await;
        let m = v["messages"]
            .as_array()
            .cloned()
            .expect("a receive answers with `messages`");
        (!m.is_empty()).then_some(m)
    })
    .await;
    assert_eq!(rx.hits().len(), 2, "one attempt and one retry");
    assert_eq!(dead[0]["attributes"]["Attempts"]["Value"], "2");
    assert!(
        dead[0]["attributes"]["ErrorMessage"]["Value"]
            .as_str()
            .unwrap()
            .contains("500")
    );
}

#[tokio::test]
async fn a_dead_endpoint_does_not_hold_up_a_healthy_one() {
    let server = spawn_server(None).await;
    let (rx, url) = Receiver::start(&[]).await;
    // Nothing listens on this port: every attempt is refused.
    let dead_url = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hook", l.local_addr().unwrap())
    };
    subscribe(&server, json!({"endpoint": {"http": {"url": url}}})).await;
    let (st, _) = call(
        &server,
        Method::PUT,
        "/v1/topics/t/subscriptions/dead",
        json!({"endpoint": {"http": {"url": dead_url}}, "delivery_policy": fast_policy(5)}),
    )
    .await;
    assert_eq!(st, 201);
    for i in 0..50 {
        publish(&server, json!({"i": i}), json!({})).await;
    }
    let hits = rx.wait_for(50, Duration::from_secs(20)).await;
    assert_eq!(hits.len(), 50);
}

#[tokio::test]
async fn a_restart_mid_retry_continues_the_schedule_without_losing_the_event() {
    let mut server = spawn_server(None).await;
    let (rx, url) = Receiver::start(&[(500, None)]).await;
    subscribe(
        &server,
        json!({"endpoint": {"http": {"url": url}}, "delivery_policy": fast_policy(3)}),
    )
    .await;
    let id = publish(&server, json!({"z": 3}), json!({})).await;
    rx.wait_for(1, Duration::from_secs(10)).await;
    // Mid-retry: the failed attempt's retry is scheduled (the metric counts it once
    // stored). Killed before that, the attempt itself may be forgotten, which
    // at-least-once delivery allows; the event is never lost either way.
    eventually(
        Duration::from_secs(10),
        "the retry is scheduled",
        || async { (server.metric("switchyard_delivery_retries_total").await? == 1).then_some(()) },
    )
    .await;
    server.kill9();
    server.restart().await;
    let hits = rx.wait_for(2, Duration::from_secs(40)).await;
    assert_eq!(hits[1].header("x-switchyard-message-id"), id);
    assert_eq!(
        hits[1].header("x-switchyard-attempt"),
        "2",
        "the attempt count carried over"
    );
}

#[tokio::test]
async fn invalid_http_subscriptions_are_refused_naming_the_field() {
    let server = spawn_server(None).await;
    call(&server, Method::PUT, "/v1/topics/t", json!({})).await;
    for (sub, field) in [
        (
            json!({"endpoint": {"http": {"url": "ftp://example.com/x"}}}),
            "endpoint.http.url",
        ),
        (
            json!({"endpoint": {"http": {"url": "not a url"}}}),
            "endpoint.http.url",
        ),
        (
            json!({"endpoint": {"http": {"url": "http://127.0.0.1:1/", "timeout_ms": 0}}}),
            "endpoint.http.timeout_ms",
        ),
        (
            json!({"endpoint": {"http": {"url": "http://127.0.0.1:1/"}}, "delivery_policy": {"min_delay_s": 30, "max_delay_s": 5}}),
            "delivery_policy.max_delay_s",
        ),
        (
            json!({"endpoint": {"http": {"url": "http://127.0.0.1:1/"}}, "delivery_policy": {"backoff": "sideways"}}),
            "backoff",
        ),
    ] {
        let (st, v) = call(
            &server,
            Method::PUT,
            "/v1/topics/t/subscriptions/bad",
            sub.clone(),
        )
        .await;
        assert_eq!(st, 400, "{sub}: {v}");
        assert!(v["detail"].as_str().unwrap().contains(field), "{sub}: {v}");
    }
}

#[tokio::test]
async fn private_addresses_are_refused_when_the_server_is_told_to() {
    let server = spawn_server_with_args(None, &["--deny-private-endpoints"]).await;
    call(&server, Method::PUT, "/v1/topics/t", json!({})).await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://[::1]:9/hook",
        "http://[::ffff:127.0.0.1]:9/hook",
        "http://0.0.0.0:9/hook",
        "http://10.0.0.1/hook",
        "http://192.168.1.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[fd00::1]/hook",
        "http://[fe80::1]/hook",
    ] {
        let (st, v) = call(
            &server,
            Method::PUT,
            "/v1/topics/t/subscriptions/s",
            json!({"endpoint": {"http": {"url": url}}}),
        )
        .await;
        assert_eq!(st, 400, "{url}: {v}");
        assert!(
            v["detail"]
                .as_str()
                .unwrap()
                .contains("private or loopback"),
            "{url}: {v}"
        );
    }
}

#[tokio::test]
async fn proxy_variables_in_the_servers_environment_are_not_used_for_webhooks() {
    // A proxy that counts who connects to it.
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = proxy.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let mut launch = Launch::new(None, &[]);
    for name in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        launch = launch.env(name, &proxy_url);
    }
    let server = launch.spawn().await;
    let (rx, url) = Receiver::start(&[]).await;
    subscribe(&server, json!({"endpoint": {"http": {"url": url}}})).await;
    publish(&server, json!({"n": 1}), json!({})).await;
    rx.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a webhook went through the proxy"
    );
}
