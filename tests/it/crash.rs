//! Durability across crashes: whatever the server acknowledged is there after a SIGKILL and
//! a restart on the same data directory. Delivery is at-least-once, so duplicates are
//! allowed; losses are not.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use switchyard::client::Client;
use switchyard::wire::{PublishRequest, QueueSpec, SendRequest, SubscriptionSpec};
use tokio::task::JoinSet;

use crate::harness::{TestServer, drain, eventually, spawn_server, topic_with_queues};

/// Concurrent producers, so that several writes are in flight when the kill lands.
const PRODUCERS: usize = 4;
/// Upper bound of messages per producer: the load stops by itself even if the kill never
/// comes.
const MAX_PER_PRODUCER: usize = 2_500;
/// Acknowledged messages before the kill: enough that the store has done real work.
const KILL_AFTER_ACKED: usize = 400;
/// Deadline for reaching [`KILL_AFTER_ACKED`].
const LOAD_WITHIN: Duration = Duration::from_secs(60);

/// Message ids the server acknowledged, shared by the producers.
type Acked = Arc<Mutex<BTreeSet<String>>>;

/// Runs `produce(producer, n)` from [`PRODUCERS`] tasks until it fails (the server is
/// gone) or each has sent [`MAX_PER_PRODUCER`]; records what was acknowledged.
fn start_producers<F, Fut>(produce: F) -> (JoinSet<()>, Acked, Arc<AtomicUsize>)
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<String, switchyard::client::ClientError>> + Send,
{
    let acked: Acked = Arc::default();
    let count = Arc::new(AtomicUsize::new(0));
    let mut producers = JoinSet::new();
    for producer in 0..PRODUCERS {
        let (produce, acked, count) = (produce.clone(), acked.clone(), count.clone());
        producers.spawn(async move {
            for n in 0..MAX_PER_PRODUCER {
                match produce(producer, n).await {
                    Ok(id) => {
                        acked.lock().unwrap().insert(id);
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    // The kill: any error from here on is the server being gone.
                    Err(_) => return,
                }
            }
        });
    }
    (producers, acked, count)
}

fn assert_none_lost(acked: &BTreeSet<String>, found: &BTreeSet<String>) {
    let lost: Vec<&String> = acked.difference(found).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged messages are lost after SIGKILL, e.g. {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
}

/// Publishes to `topic` from [`PRODUCERS`] tasks, kills the server with SIGKILL once
/// [`KILL_AFTER_ACKED`] are acknowledged, and restarts it; returns what was acknowledged.
async fn publish_through_sigkill(server: &mut TestServer, topic: &'static str) -> BTreeSet<String> {
    let client = server.client.clone();
    let payload = "x".repeat(512);
    let (mut producers, acked, count) = start_producers(move |producer, n| {
        let (client, payload) = (client.clone(), payload.clone());
        async move {
            let body = json!({"producer": producer, "n": n, "pad": payload});
            client.publish(topic, &PublishRequest::new(body)).await
        }
    });
    eventually(
        LOAD_WITHIN,
        "publishes acknowledged before the kill",
        || async { (count.load(Ordering::Relaxed) >= KILL_AFTER_ACKED).then_some(()) },
    )
    .await;
    server.kill9();
    while producers.join_next().await.is_some() {}
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() < PRODUCERS * MAX_PER_PRODUCER,
        "the load finished before the kill; the test proved nothing"
    );
    server.restart().await;
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_publish_survives_sigkill_mid_load() {
    let mut server = spawn_server(None).await;
    let sink = ("sink", SubscriptionSpec::to_queue("sink"));
    topic_with_queues(&server.client, "events", &[sink]).await;

    let acked = publish_through_sigkill(&mut server, "events").await;

    let received = drain(&server.client, "sink", PRODUCERS * MAX_PER_PRODUCER).await;
    let found: BTreeSet<String> = received
        .iter()
        .map(|m| m.notification().expect("enveloped").message_id)
        .collect();
    assert_none_lost(&acked, &found);
}

/// Raw deliveries of a publish to two queues carry the same body, which the store keeps
/// once for both: after a kill, each queue still has every acknowledged publish, body and
/// all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_stored_once_for_two_queues_survives_sigkill_in_both() {
    let mut server = spawn_server(None).await;
    let raw = |q| (q, SubscriptionSpec::to_queue(q).raw());
    topic_with_queues(&server.client, "events", &[raw("left"), raw("right")]).await;

    let acked = publish_through_sigkill(&mut server, "events").await;

    for queue in ["left", "right"] {
        let received = drain(&server.client, queue, PRODUCERS * MAX_PER_PRODUCER).await;
        for m in &received {
            assert_eq!(
                m.message["pad"].as_str().map(str::len),
                Some(512),
                "in {queue}"
            );
        }
        let found: BTreeSet<String> = received.iter().map(|m| m.message_id.clone()).collect();
        assert_none_lost(&acked, &found);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_send_survives_sigkill_mid_load() {
    let mut server = spawn_server(None).await;
    let client: Client = server.client.clone();
    client
        .put_queue("jobs", &QueueSpec::default())
        .await
        .unwrap();

    let (mut producers, acked, count) = start_producers(move |producer, n| {
        let client = client.clone();
        async move {
            let message = SendRequest::new(json!({"producer": producer, "n": n}));
            client.send("jobs", &message).await
        }
    });
    eventually(
        LOAD_WITHIN,
        "sends acknowledged before the kill",
        || async { (count.load(Ordering::Relaxed) >= KILL_AFTER_ACKED).then_some(()) },
    )
    .await;
    server.kill9();
    while producers.join_next().await.is_some() {}
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() < PRODUCERS * MAX_PER_PRODUCER);

    server.restart().await;

    let received = drain(&server.client, "jobs", PRODUCERS * MAX_PER_PRODUCER).await;
    let found: BTreeSet<String> = received.iter().map(|m| m.message_id.clone()).collect();
    assert_none_lost(&acked, &found);
}

#[tokio::test]
async fn sigterm_drains_and_exits_zero() {
    let mut server = spawn_server(None).await;
    server
        .client
        .put_queue("jobs", &QueueSpec::default())
        .await
        .unwrap();
    server
        .client
        .send("jobs", &SendRequest::new(json!("kept")))
        .await
        .unwrap();

    let status = server.stop().await;

    assert_eq!(status.code(), Some(0), "exit status {status}");
    let stored = std::fs::read_dir(server.data_dir()).unwrap().count();
    assert!(stored > 0, "the data dir is empty after a clean shutdown");
    server.restart().await;
    let kept = drain(&server.client, "jobs", 10).await;
    assert_eq!(kept.len(), 1);
}

#[tokio::test]
async fn healthz_answers_200_once_listening() {
    let server = spawn_server(None).await;

    server.client.healthz().await.unwrap();

    let response = server
        .raw(reqwest::Method::GET, "/healthz", "text/plain", "")
        .await;
    assert_eq!(response.status, reqwest::StatusCode::OK);
}
