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

/// Subscriptions replaced while messages are published, the slots changing at once
/// (each slot's new subscription put before its old one is deleted, so some subscription
/// of the slot is always there, and the ids of deleted ones are reused by later ones):
/// every message reaches its slot's queue at least once and no other queue, and once the
/// changes stop a message reaches exactly the subscriptions left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_changed_while_publishing_route_by_whole_policies_only() {
    const SLOTS: usize = 6;
    const GENERATIONS: usize = 12;
    let api = std::sync::Arc::new(TestApi::new().await);
    api.ok(Method::PUT, "/v1/topics/t", json!({})).await;
    let sub = |slot: usize, generation: usize| {
        (
            format!("/v1/topics/t/subscriptions/s{slot}-{generation}"),
            json!({
                "endpoint": {"queue": format!("q{slot}")},
                "filter_policy": {"to": [format!("k{slot}")]},
                "raw_message_delivery": true,
            }),
        )
    };
    for slot in 0..SLOTS {
        api.ok(Method::PUT, &format!("/v1/queues/q{slot}"), json!({}))
            .await;
        let (path, spec) = sub(slot, 0);
        api.ok(Method::PUT, &path, spec).await;
    }
    let mut changes = tokio::task::JoinSet::new();
    for slot in 0..SLOTS {
        let api = api.clone();
        changes.spawn(async move {
            for generation in 1..GENERATIONS {
                let (path, spec) = sub(slot, generation);
                api.ok(Method::PUT, &path, spec).await;
                let (old, _) = sub(slot, generation - 1);
                api.ok(Method::DELETE, &old, Value::Null).await;
            }
        });
    }
    let mut published = [0usize; SLOTS];
    let mut n = 0;
    while !changes.is_empty() || n < 50 {
        while let Some(done) = changes.try_join_next() {
            done.unwrap();
        }
        let slot = n % SLOTS;
        api.ok(
            Method::POST,
            "/v1/topics/t/publish",
            json!({"message": {"slot": slot, "n": n}, "attributes": {"to": format!("k{slot}")}}),
        )
        .await;
        published[slot] += 1;
        n += 1;
    }
    let left = api
        .ok(Method::GET, "/v1/topics/t/subscriptions", Value::Null)
        .await;
    assert_eq!(left["subscriptions"].as_array().unwrap().len(), SLOTS);

    for (slot, published) in published.iter().enumerate() {
        let mut seen = std::collections::BTreeSet::new();
        loop {
            let messages = api.receive(&format!("q{slot}")).await;
            if messages.is_empty() {
                break;
            }
            for m in &messages {
                let body = &m["message"];
                assert_eq!(body["slot"], slot, "queue q{slot} received {body}");
                seen.insert(body["n"].as_u64().unwrap());
            }
        }
        assert_eq!(seen.len(), *published, "q{slot}: every message arrived");
    }

    for slot in 0..SLOTS {
        api.ok(
            Method::POST,
            "/v1/topics/t/publish",
            json!({"message": {"slot": slot}, "attributes": {"to": format!("k{slot}")}}),
        )
        .await;
    }
    for slot in 0..SLOTS {
        let q = api
            .ok(Method::GET, &format!("/v1/queues/q{slot}"), Value::Null)
            .await;
        assert_eq!(q["approximate_visible"], 1, "q{slot}: {q}");
    }
}

/// Lists answer a page at a time when asked, and the pages together are the whole list.
#[tokio::test]
async fn lists_page_with_next_tokens() {
    let api = TestApi::new().await;
    api.ok(Method::PUT, "/v1/queues/q", json!({})).await;
    for topic in ["t3", "t1", "t2", "t0", "t4"] {
        api.ok(Method::PUT, &format!("/v1/topics/{topic}"), json!({}))
            .await;
        for sub in ["b", "a"] {
            api.ok(
                Method::PUT,
                &format!("/v1/topics/{topic}/subscriptions/{sub}"),
                json!({"endpoint": {"queue": "q"}}),
            )
            .await;
        }
    }
    let pages = |path: &'static str, field: &'static str, limit: u32| {
        let api = &api;
        async move {
            let mut all = Vec::new();
            let mut next: Option<String> = None;
            loop {
                let query = match &next {
                    Some(token) => format!("?limit={limit}&next={token}"),
                    None => format!("?limit={limit}"),
                };
                let page = api
                    .ok(Method::GET, &format!("{path}{query}"), Value::Null)
                    .await;
                let entries = page[field].as_array().unwrap().clone();
                assert!(entries.len() <= limit as usize);
                all.extend(entries);
                match page["next"].as_str() {
                    Some(token) => next = Some(token.to_string()),
                    None => return all,
                }
            }
        }
    };
    assert_eq!(
        pages("/v1/topics", "topics", 2).await,
        ["t0", "t1", "t2", "t3", "t4"]
    );
    assert_eq!(pages("/v1/queues", "queues", 1).await, ["q"]);
    let subs: Vec<String> = pages("/v1/subscriptions", "subscriptions", 3)
        .await
        .iter()
        .map(|s| {
            format!(
                "{}/{}",
                s["topic"].as_str().unwrap(),
                s["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(subs.len(), 10);
    assert_eq!(subs[..3], ["t0/a", "t0/b", "t1/a"]);
    assert_eq!(
        pages("/v1/topics/t2/subscriptions", "subscriptions", 1)
            .await
            .len(),
        2
    );

    let whole = api.ok(Method::GET, "/v1/topics", Value::Null).await;
    assert_eq!(whole["topics"].as_array().unwrap().len(), 5);
    assert!(whole.get("next").is_none(), "{whole}");
    for bad in [
        "/v1/topics?limit=0",
        "/v1/queues?limit=1001",
        "/v1/subscriptions?limit=x",
    ] {
        let answer = api.call(Method::GET, bad, Value::Null).await;
        assert_eq!(answer.status, 400, "{bad}: {}", answer.body);
    }
}
