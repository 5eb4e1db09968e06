//! `--deny-private-endpoints` against a resolver the test controls: a host name is checked
//! when it is subscribed and again at every delivery, so a name that turns from a public
//! address to a loopback one after it was subscribed (DNS rebinding) gets nothing.

use super::TestApi;
use crate::app::AppOptions;
use crate::deliver::http::Lookup;
use axum::http::{Method, StatusCode};
use futures::future::BoxFuture;
use serde_json::json;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Answers with `first` on the first lookup and `then` on every later one.
#[derive(Debug)]
struct Rebinding {
    first: IpAddr,
    then: IpAddr,
    lookups: AtomicUsize,
}

impl Lookup for Rebinding {
    fn lookup(&self, _host: &str) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
        let n = self.lookups.fetch_add(1, Ordering::SeqCst);
        let ip = if n == 0 { self.first } else { self.then };
        Box::pin(async move { Ok(vec![ip]) })
    }
}

async fn denying(lookup: Arc<Rebinding>) -> TestApi {
    TestApi::with_options(
        None,
        AppOptions {
            deny_private_endpoints: true,
            lookup: Some(lookup),
            ..AppOptions::default()
        },
    )
    .await
}

#[tokio::test]
async fn a_name_rebound_to_loopback_after_subscribing_gets_nothing() {
    // What would receive the request if the check at delivery let it through.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((_socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    let lookup = Arc::new(Rebinding {
        first: "93.184.215.14".parse().unwrap(),
        then: "127.0.0.1".parse().unwrap(),
        lookups: AtomicUsize::new(0),
    });
    let api = denying(lookup.clone()).await;
    api.ok(Method::PUT, "/v1/topics/t", json!({})).await;
    api.ok(Method::PUT, "/v1/queues/dlq", json!({})).await;
    api.ok(
        Method::PUT,
        "/v1/topics/t/subscriptions/hook",
        json!({
            "endpoint": {"http": {"url": format!("http://rebound.test:{port}/hook")}},
            "delivery_policy": {"num_retries": 0},
            "dead_letter_queue": "dlq",
        }),
    )
    .await;
    assert_eq!(
        lookup.lookups.load(Ordering::SeqCst),
        1,
        "checked when subscribed"
    );
    api.ok(
        Method::POST,
        "/v1/topics/t/publish",
        json!({"message": "for the internal network"}),
    )
    .await;
    // The delivery gives up at once and says why.
    let got = api
        .ok(
            Method::POST,
            "/v1/queues/dlq/receive",
            json!({"max_messages": 1, "wait_s": 10}),
        )
        .await;
    let dead = got["messages"].as_array().unwrap().clone();
    assert_eq!(dead.len(), 1, "the delivery was dead-lettered");
    let why = dead[0]["attributes"]["ErrorMessage"].to_string();
    assert!(
        why.contains("resolves only to private or loopback addresses"),
        "{}",
        dead[0]
    );
    assert!(
        lookup.lookups.load(Ordering::SeqCst) >= 2,
        "checked at delivery"
    );
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "nothing reached loopback"
    );
}

#[tokio::test]
async fn names_resolving_to_private_addresses_are_refused_when_subscribed() {
    for private in [
        "127.0.0.1",
        "10.1.2.3",
        "169.254.169.254",
        "::1",
        "fd00::1",
        "::ffff:127.0.0.1",
        "0.0.0.0",
    ] {
        let api = denying(Arc::new(Rebinding {
            first: private.parse().unwrap(),
            then: private.parse().unwrap(),
            lookups: AtomicUsize::new(0),
        }))
        .await;
        api.ok(Method::PUT, "/v1/topics/t", json!({})).await;
        let answer = api
            .call(
                Method::PUT,
                "/v1/topics/t/subscriptions/hook",
                json!({"endpoint": {"http": {"url": "https://internal.test/hook"}}}),
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{private}: {}",
            answer.body
        );
        let detail = answer.body["detail"].as_str().unwrap();
        assert!(
            detail.contains("internal.test resolves to") && detail.contains("private or loopback"),
            "{private}: {detail}"
        );
    }
}
