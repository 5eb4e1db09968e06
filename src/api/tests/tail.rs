//! A topic's live tail in-process: a follower that does not read loses the oldest events
//! beyond its buffer and is told how many, while publishing goes on undisturbed.

use super::TestApi;
use crate::publish::TAIL_BUFFER;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// The next server-sent event of `body`: its kind and data.
async fn next_event(body: &mut Body, pending: &mut String) -> (String, Value) {
    loop {
        if let Some(end) = pending.find("\n\n") {
            let block: String = pending.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(str::to_string)
            };
            if let Some(data) = field("data: ") {
                let kind = field("event: ").unwrap_or_else(|| "message".into());
                return (kind, serde_json::from_str(&data).unwrap());
            }
            continue;
        }
        let frame = body.frame().await.expect("the tail goes on").unwrap();
        if let Ok(data) = frame.into_data() {
            pending.push_str(std::str::from_utf8(&data).unwrap());
        }
    }
}

#[tokio::test]
async fn a_follower_that_falls_behind_is_told_how_many_events_it_lost() {
    let api = TestApi::new().await;
    api.ok(Method::PUT, "/v1/topics/t", json!({})).await;
    let response = api
        .routes
        .clone()
        .oneshot(
            Request::get("/v1/topics/t/tail")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut body = response.into_body();

    let extra = 76;
    let total = TAIL_BUFFER + extra;
    for start in (0..total).step_by(100) {
        let entries: Vec<Value> = (start..total.min(start + 100))
            .map(|n| json!({"message": {"n": n}}))
            .collect();
        let v = api
            .ok(
                Method::POST,
                "/v1/topics/t/publish-batch",
                json!({"entries": entries}),
            )
            .await;
        assert!(v["failed"].as_array().unwrap().is_empty(), "{v}");
    }

    let mut pending = String::new();
    let (kind, data) = next_event(&mut body, &mut pending).await;
    assert_eq!(kind, "dropped");
    assert_eq!(data, json!({"dropped": extra}));
    // What it kept are the newest, in order.
    for n in extra..total {
        let (kind, event) = next_event(&mut body, &mut pending).await;
        assert_eq!(kind, "message");
        assert_eq!(event["message"], json!({"n": n}));
    }
}

#[tokio::test]
async fn an_invalid_tail_query_is_refused() {
    let api = TestApi::new().await;
    api.ok(Method::PUT, "/v1/topics/t", json!({})).await;
    for (query, problem) in [
        ("filter_policy=nope", "invalid-filter-policy"),
        ("filter_policy=%7B%22a%22%3A1%7D", "invalid-filter-policy"),
        ("filter_policy_scope=Everything", "invalid-request"),
        ("colour=red", "invalid-request"),
    ] {
        let a = api
            .call(
                Method::GET,
                &format!("/v1/topics/t/tail?{query}"),
                Value::Null,
            )
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{query}: {}", a.body);
        assert!(
            a.body["type"].as_str().unwrap().ends_with(problem),
            "{query}: {}",
            a.body
        );
    }
}
