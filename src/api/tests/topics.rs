//! Topics and subscriptions through the API in-process.

use super::TestApi;
use axum::http::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn every_subscription_of_every_topic_is_listed_in_one_call() {
    let api = TestApi::new().await;
    api.ok(Method::PUT, "/v1/queues/q", json!({})).await;
    for topic in ["b", "a"] {
        api.ok(Method::PUT, &format!("/v1/topics/{topic}"), json!({}))
            .await;
    }
    for (topic, name, endpoint) in [
        ("b", "to-q", json!({"queue": "q"})),
        ("a", "hook", json!({"http": {"url": "http://127.0.0.1:9/"}})),
        ("a", "also-q", json!({"queue": "q"})),
    ] {
        api.ok(
            Method::PUT,
            &format!("/v1/topics/{topic}/subscriptions/{name}"),
            json!({"endpoint": endpoint}),
        )
        .await;
    }
    let all = api.ok(Method::GET, "/v1/subscriptions", Value::Null).await;
    let listed: Vec<(&str, &str)> = all["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["topic"].as_str().unwrap(), s["name"].as_str().unwrap()))
        .collect();
    assert_eq!(listed, [("a", "also-q"), ("a", "hook"), ("b", "to-q")]);
    let hook = &all["subscriptions"][1];
    assert!(
        hook["endpoint"]["http"]["secret"]
            .as_str()
            .unwrap()
            .starts_with("(set;"),
        "secrets stay hidden: {hook}"
    );
}
