//! Several routers on one JetStream (a private `nats-server`): resources and messages are
//! shared, receivers on different routers compete without ever holding one message at
//! once, consumer-group leases span routers, and neither a router killed mid-load nor a
//! NATS restart mid-load loses anything that was acknowledged.

use crate::contract::{ack, on_nats, post, put, receive, router_on};
use crate::harness::{TestServer, eventually};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Changes made on one router are applied by the others within a second; the margin is
/// for a busy machine.
const SOON: Duration = Duration::from_secs(10);

/// Upper bound on the publishes of a load loop, and on its duration.
const LOAD_MAX: usize = 2_000;
const LOAD_TIME: Duration = Duration::from_secs(30);

async fn subscriptions(s: &TestServer, topic: &str) -> Option<Value> {
    let (status, v) = s
        .json(Method::GET, &format!("/v1/topics/{topic}"), Value::Null)
        .await;
    status.is_success().then(|| v["subscriptions"].clone())
}

/// Receives and acknowledges everything in `queue` until two receives in a row come back
/// empty, returning the published messages' `n` fields.
async fn drain_ns(s: &TestServer, queue: &str) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    let mut empty = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while empty < 2 {
        assert!(Instant::now() < deadline, "{queue} did not drain");
        let got = receive(s, queue, 10, 1).await;
        if got.is_empty() {
            empty += 1;
            continue;
        }
        empty = 0;
        ack(s, queue, &got).await;
        out.extend(
            got.iter()
                .map(|m| m["message"]["message"]["n"].as_u64().unwrap()),
        );
    }
    out
}

#[tokio::test]
async fn resources_and_messages_are_shared_between_routers() {
    let d = on_nats().await;
    let a = &d.server;
    let b = router_on(d.nats.as_ref().unwrap()).await;
    put(a, "/v1/topics/orders", json!({})).await;
    put(a, "/v1/queues/audit", json!({})).await;
    put(
        a,
        "/v1/topics/orders/subscriptions/audit",
        json!({"endpoint": {"queue": "audit"}, "filter_policy": {"kind": ["placed"]}}),
    )
    .await;
    eventually(
        SOON,
        "router B to see the subscription made on A",
        || async { (subscriptions(&b, "orders").await == Some(json!(["audit"]))).then_some(()) },
    )
    .await;
    // Published on B, filtered by the policy made on A, received on A.
    for (n, kind) in [(1, "placed"), (2, "cancelled"), (3, "placed")] {
        post(
            &b,
            "/v1/topics/orders/publish",
            json!({"message": {"n": n}, "attributes": {"kind": kind}}),
        )
        .await;
    }
    assert_eq!(drain_ns(a, "audit").await, BTreeSet::from([1, 3]));
    // Deleting on B is seen on A.
    b.ok(Method::DELETE, "/v1/topics/orders", Value::Null).await;
    eventually(SOON, "router A to see the topic deleted on B", || async {
        subscriptions(a, "orders").await.is_none().then_some(())
    })
    .await;
}

#[tokio::test]
async fn receivers_on_different_routers_never_hold_one_message_at_once() {
    let d = on_nats().await;
    let a = &d.server;
    let b = router_on(d.nats.as_ref().unwrap()).await;
    const N: usize = 300;
    put(a, "/v1/queues/jobs", json!({"visibility_timeout_s": 60})).await;
    eventually(SOON, "router B to see the queue", || async {
        let (status, _) = b.json(Method::GET, "/v1/queues/jobs", Value::Null).await;
        status.is_success().then_some(())
    })
    .await;
    for n in 0..N {
        post(a, "/v1/queues/jobs/messages", json!({"message": {"n": n}})).await;
    }
    // Both routers receive at once, without acknowledging: within the visibility timeout
    // no message may come out twice.
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let consume = |s: String| {
        let seen = seen.clone();
        async move {
            let http = reqwest::Client::new();
            let deadline = Instant::now() + Duration::from_secs(60);
            while seen.lock().unwrap().len() < N && Instant::now() < deadline {
                let v: Value = http
                    .post(format!("{s}/v1/queues/jobs/receive"))
                    .json(&json!({"max_messages": 10, "wait_s": 1}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let ids = v["messages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m["message_id"].as_str().unwrap().to_string());
                seen.lock().unwrap().extend(ids);
            }
        }
    };
    tokio::join!(consume(a.base_url.clone()), consume(b.base_url.clone()));
    let seen = seen.lock().unwrap().clone();
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a message was handed out twice");
    assert_eq!(unique.len(), N);
}

/// Publishes `{"n": i}` to `topic` through `base` one after another until `stop` is set,
/// [`LOAD_MAX`] is reached or [`LOAD_TIME`] passes; returns the `n`s that were
/// acknowledged and the statuses of those that were not.
pub async fn publish_load(
    base: String,
    topic: &'static str,
    acked: Arc<Mutex<Vec<u64>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<String> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let started = Instant::now();
    let mut refused = Vec::new();
    for n in 0..LOAD_MAX as u64 {
        if stop.load(std::sync::atomic::Ordering::Relaxed) || started.elapsed() > LOAD_TIME {
            break;
        }
        let res = http
            .post(format!("{base}/v1/topics/{topic}/publish"))
            .json(&json!({"message": {"n": n}}))
            .send()
            .await;
        match res {
            Ok(r) if r.status().is_success() => acked.lock().unwrap().push(n),
            Ok(r) => refused.push(r.status().to_string()),
            Err(e) => refused.push(format!("{e}")),
        }
    }
    refused
}

#[tokio::test]
async fn a_router_killed_mid_load_loses_nothing_it_acknowledged() {
    let mut d = on_nats().await;
    let b = router_on(d.nats.as_ref().unwrap()).await;
    let a = &mut d.server;
    put(a, "/v1/topics/t", json!({})).await;
    put(a, "/v1/queues/q", json!({"visibility_timeout_s": 2})).await;
    put(
        a,
        "/v1/topics/t/subscriptions/q",
        json!({"endpoint": {"queue": "q"}}),
    )
    .await;
    // Some messages are in flight on A when it dies.
    for n in 0..5u64 {
        post(
            a,
            "/v1/topics/t/publish",
            json!({"message": {"n": 10_000 + n}}),
        )
        .await;
    }
    let in_flight = receive(a, "q", 10, 1).await;
    assert!(!in_flight.is_empty());
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn(publish_load(
        a.base_url.clone(),
        "t",
        acked.clone(),
        stop.clone(),
    ));
    eventually(SOON, "100 publishes through A", || async {
        (acked.lock().unwrap().len() >= 100).then_some(())
    })
    .await;
    a.kill9();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    load.await.unwrap();
    let mut want: BTreeSet<u64> = acked.lock().unwrap().iter().copied().collect();
    // What was in flight on the dead router comes back after its visibility timeout.
    want.extend(
        in_flight
            .iter()
            .map(|m| m["message"]["message"]["n"].as_u64().unwrap()),
    );
    let mut got = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !want.is_subset(&got) && Instant::now() < deadline {
        got.extend(drain_ns(&b, "q").await);
    }
    let missing: Vec<&u64> = want.difference(&got).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
}

#[tokio::test]
async fn a_nats_restart_mid_load_loses_nothing_acknowledged() {
    let mut d = on_nats().await;
    let s = &d.server;
    put(s, "/v1/topics/t", json!({})).await;
    put(s, "/v1/queues/q", json!({})).await;
    put(
        s,
        "/v1/topics/t/subscriptions/q",
        json!({"endpoint": {"queue": "q"}}),
    )
    .await;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = tokio::spawn(publish_load(
        s.base_url.clone(),
        "t",
        acked.clone(),
        stop.clone(),
    ));
    eventually(SOON, "100 publishes before the restart", || async {
        (acked.lock().unwrap().len() >= 100).then_some(())
    })
    .await;
    d.nats.as_mut().unwrap().restart();
    let after = acked.lock().unwrap().len();
    eventually(
        Duration::from_secs(30),
        "publishes after the restart",
        || async { (acked.lock().unwrap().len() >= after + 100).then_some(()) },
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let refused = load.await.unwrap();
    for r in &refused {
        assert!(r.starts_with("503"), "refused otherwise than 503: {r}");
    }
    let s = &d.server;
    let acked: BTreeSet<u64> = acked.lock().unwrap().iter().copied().collect();
    let got = drain_ns(s, "q").await;
    let missing: Vec<&u64> = acked.difference(&got).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
}

async fn holders(s: &TestServer) -> Vec<Value> {
    let g = s
        .ok(Method::GET, "/v1/streams/clicks/groups/g", Value::Null)
        .await;
    g["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["member"].clone())
        .collect()
}

async fn poll(s: &TestServer, member: &str) {
    post(
        s,
        "/v1/streams/clicks/groups/g/poll",
        json!({"member": member, "max_records": 10}),
    )
    .await;
}

#[tokio::test]
async fn group_members_on_different_routers_share_shards_and_take_over() {
    let d = on_nats().await;
    let a = &d.server;
    let b = router_on(d.nats.as_ref().unwrap()).await;
    put(a, "/v1/streams/clicks", json!({"shards": 4})).await;
    put(
        a,
        "/v1/streams/clicks/groups/g",
        json!({"lease_timeout_s": 2}),
    )
    .await;
    eventually(SOON, "router B to see the stream", || async {
        let (status, _) = b.json(Method::GET, "/v1/streams/clicks", Value::Null).await;
        status.is_success().then_some(())
    })
    .await;
    // m1 polls through A, m2 through B, until the four shards are split two and two.
    eventually(SOON, "the shards split between the members", || async {
        poll(a, "m1").await;
        poll(&b, "m2").await;
        let h = holders(a).await;
        let m1 = h.iter().filter(|m| *m == "m1").count();
        let m2 = h.iter().filter(|m| *m == "m2").count();
        (m1 == 2 && m2 == 2).then_some(())
    })
    .await;
    // m2 stops polling: after its lease timeout, m1 (on the other router) takes over.
    eventually(SOON, "m1 holding all four shards", || async {
        poll(a, "m1").await;
        holders(&b).await.iter().all(|m| m == "m1").then_some(())
    })
    .await;
}
