//! `switchyard tail TOPIC`: a topic's events as they are published, through the CLI
//! and its server-sent events, with a filter policy; and how `tail` tells a topic from a
//! stream.

use crate::harness::{TestServer, eventually, spawn_server};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

async fn watchers(server: &TestServer, topic: &str) -> Option<u64> {
    server
        .metric(&format!("switchyard_topic_watchers{{topic=\"{topic}\"}}"))
        .await
}

#[tokio::test]
async fn tail_follows_a_topic_live_with_a_filter_policy() {
    let server = spawn_server(None).await;
    server.ok(Method::PUT, "/v1/queues/q", json!({})).await;
    server.ok(Method::PUT, "/v1/topics/orders", json!({})).await;
    server
        .ok(
            Method::PUT,
            "/v1/topics/orders/subscriptions/to-q",
            json!({"endpoint": {"queue": "q"}, "filter_policy": {"country": ["NL"]}, "filter_policy_scope": "MessageBody"}),
        )
        .await;
    let tail = server.cli(
        &[
            "tail",
            "orders",
            "--count",
            "2",
            "--filter-policy",
            r#"{"total": [{"numeric": [">", 10]}]}"#,
            "--filter-policy-scope",
            "body",
        ],
        "",
    );
    let publish = async {
        // The tail follows from the moment it is connected: publish only then.
        eventually(Duration::from_secs(20), "the tail to connect", || async {
            (watchers(&server, "orders").await? == 1).then_some(())
        })
        .await;
        for (id, total, country) in [("a", 5, "NL"), ("b", 50, "DE"), ("c", 500, "NL")] {
            server
                .ok(
                    Method::POST,
                    "/v1/topics/orders/publish",
                    json!({"message": {"id": id, "total": total, "country": country}}),
                )
                .await;
        }
    };
    let (out, ()) = tokio::join!(tail, publish);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&str> = events
        .iter()
        .map(|e| e["message"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["b", "c"], "only totals over 10, in order: {events:?}");
    assert_eq!(events[0]["subscriptions"], json!([]), "b went nowhere");
    assert_eq!(events[1]["subscriptions"], json!(["to-q"]));
    assert_eq!(events[1]["topic"], "orders");
    assert!(events[1]["message_id"].is_string() && events[1]["published_at"].is_string());
    // The tail is gone once the CLI exits.
    eventually(Duration::from_secs(20), "the tail to close", || async {
        (watchers(&server, "orders").await? == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn tail_tells_a_topic_from_a_stream_and_refuses_what_is_neither() {
    let server = spawn_server(None).await;
    server.ok(Method::PUT, "/v1/topics/clicks", json!({})).await;
    server
        .ok(Method::PUT, "/v1/streams/clicks", json!({"shards": 1}))
        .await;
    let both = server.cli(&["tail", "clicks", "--count", "1"], "").await;
    assert_eq!(both.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&both.stderr).contains("say --topic or --stream"),
        "{both:?}"
    );
    let stream = server
        .cli(&["tail", "clicks", "--stream", "--no-follow"], "")
        .await;
    assert!(stream.status.success(), "{stream:?}");
    let neither = server.cli(&["tail", "nothing"], "").await;
    assert_eq!(neither.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&neither.stderr).contains("no topic or stream named \"nothing\""),
        "{neither:?}"
    );
    let bad = server
        .cli(
            &["tail", "clicks", "--topic", "--filter-policy", "{\"a\": 1}"],
            "",
        )
        .await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("invalid filter policy"),
        "{bad:?}"
    );
    let (status, problem) = server
        .json(Method::GET, "/v1/topics/nothing/tail", Value::Null)
        .await;
    assert_eq!(status, reqwest::StatusCode::NOT_FOUND, "{problem}");
}
