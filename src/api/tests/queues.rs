//! Queue timing through the API, on a manual clock: visibility timeouts, delays,
//! retention and the receive limit that moves a message to its dead-letter queue.

use super::TestApi;
use crate::model::QueueSpec;
use axum::http::Method;
use serde_json::{Value, json};
use std::time::Duration;

async fn queue(api: &TestApi, name: &str, spec: Value) {
    api.ok(Method::PUT, &format!("/v1/queues/{name}"), spec)
        .await;
}

async fn send(api: &TestApi, queue: &str, message: Value) {
    api.ok(
        Method::POST,
        &format!("/v1/queues/{queue}/messages"),
        json!({ "message": message }),
    )
    .await;
}

async fn counts(api: &TestApi, queue: &str) -> (u64, u64, u64) {
    let q = api
        .ok(Method::GET, &format!("/v1/queues/{queue}"), Value::Null)
        .await;
    let n = |k: &str| q[k].as_u64().unwrap_or_else(|| panic!("{k} in {q}"));
    (
        n("approximate_visible"),
        n("approximate_in_flight"),
        n("approximate_delayed"),
    )
}

#[tokio::test]
async fn a_received_message_comes_back_when_its_visibility_timeout_ends() {
    let api = TestApi::new().await;
    queue(&api, "q", json!({"visibility_timeout_s": 30})).await;
    send(&api, "q", json!("a")).await;

    let first = api.receive("q").await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["receive_count"], 1);
    assert_eq!(counts(&api, "q").await, (0, 1, 0));

    api.clock.advance(Duration::from_millis(29_999));
    assert!(api.receive("q").await.is_empty(), "hidden for 30 s");
    api.clock.advance(Duration::from_millis(1));
    let again = api.receive("q").await;
    assert_eq!(again.len(), 1, "visible again after 30 s");
    assert_eq!(again[0]["message_id"], first[0]["message_id"]);
    assert_eq!(again[0]["receive_count"], 2);
    assert_ne!(again[0]["receipt"], first[0]["receipt"]);
}

#[tokio::test]
async fn a_receive_can_set_its_own_visibility_timeout() {
    let api = TestApi::new().await;
    queue(&api, "q", json!({"visibility_timeout_s": 30})).await;
    send(&api, "q", json!("a")).await;
    api.ok(
        Method::POST,
        "/v1/queues/q/receive",
        json!({"visibility_timeout_s": 5}),
    )
    .await;
    api.clock.advance(Duration::from_secs(5));
    assert_eq!(api.receive("q").await.len(), 1);
}

#[tokio::test]
async fn changing_visibility_to_zero_makes_a_message_visible_at_once() {
    let api = TestApi::new().await;
    queue(&api, "q", json!({})).await;
    send(&api, "q", json!("a")).await;
    let got = api.receive("q").await;
    api.ok(
        Method::POST,
        "/v1/queues/q/visibility",
        json!({"receipt": got[0]["receipt"], "timeout_s": 0}),
    )
    .await;
    assert_eq!(api.receive("q").await.len(), 1);
}

#[tokio::test]
async fn an_acknowledged_message_never_comes_back() {
    let api = TestApi::new().await;
    queue(&api, "q", json!({"visibility_timeout_s": 1})).await;
    send(&api, "q", json!("a")).await;
    let got = api.receive("q").await;
    let acked = api
        .ok(
            Method::POST,
            "/v1/queues/q/ack",
            json!({"receipts": [got[0]["receipt"]]}),
        )
        .await;
    assert_eq!(acked, json!({"acked": 1}));
    api.clock.advance(Duration::from_secs(3600));
    assert!(api.receive("q").await.is_empty());
    assert_eq!(counts(&api, "q").await, (0, 0, 0));
}

#[tokio::test]
async fn a_delayed_message_is_received_only_after_its_delay() {
    let api = TestApi::new().await;
    queue(&api, "q", json!({"delay_s": 10})).await;
    send(&api, "q", json!("queue delay")).await;
    api.ok(
        Method::POST,
        "/v1/queues/q/messages",
        json!({"message": "own delay", "delay_s": 20}),
    )
    .await;
    assert_eq!(counts(&api, "q").await, (0, 0, 2));
    assert!(api.receive("q").await.is_empty());

    api.clock.advance(Duration::from_secs(10));
    let got = api.receive("q").await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["message"], "queue delay");
    assert_eq!(counts(&api, "q").await, (0, 1, 1));

    api.clock.advance(Duration::from_secs(10));
    let got = api.receive("q").await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["message"], "own delay");
}

#[tokio::test]
async fn messages_older_than_the_retention_period_are_gone() {
    let api = TestApi::new().await;
    queue(&api, "q", json!({"retention_s": 60})).await;
    send(&api, "q", json!("old")).await;
    api.clock.advance(Duration::from_secs(30));
    send(&api, "q", json!("young")).await;

    api.clock.advance(Duration::from_secs(31));
    api.app.backend.sweep();
    let got = api.receive("q").await;
    let messages: Vec<&Value> = got.iter().map(|m| &m["message"]).collect();
    assert_eq!(messages, [&json!("young")]);
}

#[tokio::test]
async fn a_message_received_too_often_moves_to_the_dead_letter_queue() {
    let api = TestApi::new().await;
    queue(&api, "dlq", json!({})).await;
    queue(
        &api,
        "q",
        json!({"visibility_timeout_s": 10,
               "redrive_policy": {"dead_letter_queue": "dlq", "max_receive_count": 2}}),
    )
    .await;
    send(&api, "q", json!("poison")).await;
    for attempt in 1..=2 {
        let got = api.receive("q").await;
        assert_eq!(got.len(), 1, "receive {attempt}");
        api.clock.advance(Duration::from_secs(10));
    }
    assert!(
        api.receive("q").await.is_empty(),
        "a third receive moves it instead of handing it out"
    );
    let dead = api.receive("dlq").await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["message"], "poison");

    // Redrive sends home what is visible in the dead-letter queue, where it starts over.
    api.clock.advance(Duration::from_secs(
        QueueSpec::default().visibility_timeout_s,
    ));
    let moved = api
        .ok(Method::POST, "/v1/queues/dlq/redrive", Value::Null)
        .await;
    assert_eq!(moved, json!({"moved": 1}));
    assert_eq!(api.receive("q").await.len(), 1);
}

#[tokio::test]
async fn a_redrive_leaves_the_dead_letters_it_cannot_send_home_visible() {
    let api = TestApi::new().await;
    // At visibility 0 only the redrive's own hold keeps what it cannot move out of its
    // way until it ends.
    queue(&api, "dlq", json!({"visibility_timeout_s": 0})).await;
    queue(
        &api,
        "q",
        json!({"visibility_timeout_s": 0,
               "redrive_policy": {"dead_letter_queue": "dlq", "max_receive_count": 1}}),
    )
    .await;
    for n in 0..3 {
        send(&api, "dlq", json!(format!("sent here {n}"))).await;
    }
    send(&api, "q", json!("poison")).await;
    assert_eq!(api.receive("q").await.len(), 1);
    assert!(api.receive("q").await.is_empty(), "moved, not handed out");
    assert_eq!(counts(&api, "dlq").await, (4, 0, 0));

    let moved = api
        .ok(Method::POST, "/v1/queues/dlq/redrive", Value::Null)
        .await;
    assert_eq!(moved, json!({"moved": 1}));
    assert_eq!(counts(&api, "q").await, (1, 0, 0));
    assert_eq!(
        counts(&api, "dlq").await,
        (3, 0, 0),
        "what has no home to go back to stays, visible"
    );
}

#[tokio::test]
async fn a_subscriptions_delivery_queue_is_not_a_users_to_delete() {
    let api = TestApi::new().await;
    api.ok(Method::PUT, "/v1/topics/t", json!({})).await;
    api.ok(
        Method::PUT,
        "/v1/topics/t/subscriptions/hook",
        json!({"endpoint": {"http": {"url": "http://127.0.0.1:9/hook"}}}),
    )
    .await;
    let internal = crate::deliver::delivery_queue_name("t", "hook");
    assert!(api.app.backend.queue(&internal).is_some());

    let refused = api
        .call(
            Method::DELETE,
            &format!("/v1/queues/{internal}"),
            Value::Null,
        )
        .await;
    assert_eq!(refused.status, 404, "{:?}", refused.body);
    assert!(
        api.app.backend.queue(&internal).is_some(),
        "the subscription's deliveries are still stored"
    );
}
