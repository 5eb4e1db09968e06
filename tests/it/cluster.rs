//! Routers on a three-node JetStream cluster with `--nats-replicas 3`: every stream,
//! consumer and bucket is kept on all three nodes (and ones made before with one replica
//! are raised), and a node killed or cut off under load costs latency and 503s, never an
//! acknowledged message, nor a message held by two receivers at once.

use crate::contract::{post, put};
use crate::harness::{TestServer, eventually, run_expecting_exit, spawn_server_with_args};
use crate::nats::NatsCluster;
use crate::routers::publish_load;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Changes made on one router are seen by the others within a second; a failover (a new
/// leader elected, clients reconnected) within several. The margin is for a busy machine.
const FAILOVER: Duration = Duration::from_secs(45);

/// The deployment prefix routers use by default, which starts every stream's name.
const PREFIX: &str = "switchyard";

/// A router on `servers` (comma-separated URLs) keeping `replicas` copies.
async fn router(servers: &str, replicas: usize) -> TestServer {
    spawn_server_with_args(
        None,
        &[
            "--backend",
            servers,
            "--nats-replicas",
            &replicas.to_string(),
        ],
    )
    .await
}

/// One JetStream API request to node `i`, answered as JSON (an error answer included);
/// `None` when no answer comes in time (a node it depends on is cut off).
async fn try_js_api(cluster: &NatsCluster, i: usize, what: &str, body: Value) -> Option<Value> {
    let client = async_nats::connect(cluster.nodes[i].url()).await.ok()?;
    let reply = tokio::time::timeout(
        Duration::from_secs(2),
        client.request(format!("$JS.API.{what}"), body.to_string().into()),
    )
    .await
    .ok()?
    .ok()?;
    Some(serde_json::from_slice(&reply.payload).expect("JetStream answers JSON"))
}

/// As [`try_js_api`], on a healthy cluster.
async fn js_api(cluster: &NatsCluster, i: usize, what: &str, body: Value) -> Value {
    try_js_api(cluster, i, what, body)
        .await
        .unwrap_or_else(|| panic!("{what}: no answer"))
}

/// The first node that runs.
fn live_node(cluster: &NatsCluster) -> usize {
    (0..cluster.nodes.len())
        .find(|&i| cluster.nodes[i].is_running())
        .expect("a node runs")
}

/// `STREAM.INFO` of `stream` (or `CONSUMER.INFO` when `consumer` is given) once it has a
/// leader, asked of a running node.
async fn info_with_leader(cluster: &NatsCluster, stream: &str, consumer: Option<&str>) -> Value {
    let what = match consumer {
        None => format!("STREAM.INFO.{stream}"),
        Some(c) => format!("CONSUMER.INFO.{stream}.{c}"),
    };
    eventually(FAILOVER, &format!("a leader for {what}"), || async {
        let v = try_js_api(cluster, live_node(cluster), &what, json!({})).await?;
        v["cluster"]["leader"].as_str().is_some().then_some(v)
    })
    .await
}

/// The index of the node leading `stream`.
async fn leader_of(cluster: &NatsCluster, stream: &str) -> usize {
    let info = info_with_leader(cluster, stream, None).await;
    cluster.index_of(info["cluster"]["leader"].as_str().unwrap())
}

/// The JetStream stream holding queue `name`.
fn queue_stream(name: &str) -> String {
    format!("{PREFIX}_Q_{name}")
}

/// How many servers hold `info`'s stream or consumer: its leader and its other replicas.
fn copies(info: &Value) -> usize {
    1 + info["cluster"]["replicas"].as_array().map_or(0, Vec::len)
}

/// Makes topic `t` feeding queue `q` (visibility `visibility_s`) through `s`.
async fn topic_into_queue(s: &TestServer, visibility_s: u64) {
    put(s, "/v1/topics/t", json!({})).await;
    put(
        s,
        "/v1/queues/q",
        json!({"visibility_timeout_s": visibility_s}),
    )
    .await;
    put(
        s,
        "/v1/topics/t/subscriptions/q",
        json!({"endpoint": {"queue": "q"}}),
    )
    .await;
}

/// Waits until `s` knows queue `name` (made through another router).
async fn sees_queue(s: &TestServer, name: &str) {
    eventually(
        FAILOVER,
        &format!("{} to see queue {name}", s.base_url),
        || async {
            let (status, _) = s
                .json(Method::GET, &format!("/v1/queues/{name}"), Value::Null)
                .await;
            status.is_success().then_some(())
        },
    )
    .await;
}

/// Receives without acknowledging, tolerating 503s while the cluster fails over.
async fn try_receive(s: &TestServer, queue: &str, max: usize, wait_s: u64) -> Vec<Value> {
    let (status, v) = s
        .json(
            Method::POST,
            &format!("/v1/queues/{queue}/receive"),
            json!({"max_messages": max, "wait_s": wait_s}),
        )
        .await;
    match status {
        StatusCode::OK => v["messages"].as_array().cloned().unwrap_or_default(),
        StatusCode::SERVICE_UNAVAILABLE => Vec::new(),
        other => panic!("receive answered {other}: {v}"),
    }
}

/// Receives and acknowledges through `s` until every `n` in `want` has come (or
/// [`FAILOVER`] passes), returning the published `n`s that came.
async fn drain_until(s: &TestServer, queue: &str, want: &BTreeSet<u64>) -> BTreeSet<u64> {
    let mut got = BTreeSet::new();
    let deadline = Instant::now() + FAILOVER;
    while !want.is_subset(&got) && Instant::now() < deadline {
        let messages = try_receive(s, queue, 10, 1).await;
        if messages.is_empty() {
            continue;
        }
        let receipts: Vec<&Value> = messages.iter().map(|m| &m["receipt"]).collect();
        let (status, v) = s
            .json(
                Method::POST,
                &format!("/v1/queues/{queue}/ack"),
                json!({ "receipts": receipts }),
            )
            .await;
        // An ack lost to a failover only brings the message back later.
        assert!(
            status.is_success() || status == StatusCode::SERVICE_UNAVAILABLE,
            "ack answered {status}: {v}"
        );
        got.extend(
            messages
                .iter()
                .map(|m| m["message"]["message"]["n"].as_u64().unwrap()),
        );
    }
    got
}

/// A publish load through `s` to topic `t`, stopped by the returned flag.
struct Load {
    acked: Arc<Mutex<Vec<u64>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<String>>,
}

impl Load {
    fn start(s: &TestServer) -> Load {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(publish_load(
            s.base_url.clone(),
            "t",
            acked.clone(),
            stop.clone(),
        ));
        Load { acked, stop, task }
    }

    fn count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Waits until `more` further publishes were acknowledged.
    async fn wait_for(&self, more: usize, what: &str) {
        let target = self.count() + more;
        eventually(FAILOVER, what, || async {
            (self.count() >= target).then_some(())
        })
        .await;
    }

    /// Stops the load: the acknowledged `n`s and the answers of those refused.
    async fn finish(self) -> (BTreeSet<u64>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let refused = self.task.await.unwrap();
        let acked = self.acked.lock().unwrap().iter().copied().collect();
        (acked, refused)
    }
}

fn assert_none_lost(acked: &BTreeSet<u64>, got: &BTreeSet<u64>) {
    let missing: Vec<&u64> = acked.difference(got).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged publishes lost: {missing:?}",
        missing.len(),
        acked.len()
    );
}

fn assert_only_unavailable(refused: &[String]) {
    for r in refused {
        assert!(r.starts_with("503"), "refused otherwise than 503: {r}");
    }
}

#[tokio::test]
async fn every_stream_consumer_and_bucket_gets_the_replicas_and_older_ones_are_raised() {
    let cluster = NatsCluster::start().await;
    // A deployment made with one replica, as before the flag.
    let mut first = router(&cluster.urls(), 1).await;
    topic_into_queue(&first, 30).await;
    put(&first, "/v1/queues/jobs.fifo", json!({"fifo": true})).await;
    put(&first, "/v1/streams/clicks", json!({"shards": 2})).await;
    put(&first, "/v1/streams/clicks/groups/g", json!({})).await;
    post(&first, "/v1/topics/t/publish", json!({"message": {"n": 1}})).await;
    let q = info_with_leader(&cluster, &queue_stream("q"), None).await;
    assert_eq!(q["config"]["num_replicas"], 1);
    assert_eq!(copies(&q), 1);
    first.kill9();

    // More replicas than the cluster has nodes: the start fails and says why.
    let (status, log) = run_expecting_exit(
        None,
        &["--backend", &cluster.urls(), "--nats-replicas", "5"],
    )
    .await;
    assert!(!status.success());
    assert!(
        log.contains("--nats-replicas 5") && log.contains("at least 5 JetStream servers"),
        "{log}"
    );

    let s = router(&cluster.urls(), 3).await;
    // Made after the start, with the replicas from the outset.
    put(&s, "/v1/queues/later", json!({})).await;
    put(&s, "/v1/streams/views", json!({"shards": 1})).await;
    let streams = js_api(&cluster, 0, "STREAM.NAMES", json!({})).await;
    let names: BTreeSet<&str> = streams["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    let want: BTreeSet<String> = [
        "KV_switchyard_meta".to_string(),
        "KV_switchyard_groups".to_string(),
        queue_stream("q"),
        queue_stream("later"),
        "switchyard_S_clicks_0".to_string(),
        "switchyard_S_clicks_1".to_string(),
        "switchyard_S_views_0".to_string(),
    ]
    .into();
    for name in &want {
        assert!(names.contains(name.as_str()), "{name} not among {names:?}");
    }
    for name in &names {
        eventually(FAILOVER, &format!("{name} on three servers"), || async {
            let info = info_with_leader(&cluster, name, None).await;
            (info["config"]["num_replicas"] == 3 && copies(&info) == 3).then_some(())
        })
        .await;
        let consumers = js_api(&cluster, 0, &format!("CONSUMER.NAMES.{name}"), json!({})).await;
        for consumer in consumers["consumers"].as_array().into_iter().flatten() {
            let consumer = consumer.as_str().unwrap();
            // Durable consumers follow their stream; a KV watch's ephemeral one need not.
            let info = info_with_leader(&cluster, name, Some(consumer)).await;
            if info["config"]["durable_name"].is_string() {
                assert_eq!(copies(&info), 3, "consumer {consumer} of {name}: {info}");
            }
        }
    }
    // What the one-replica deployment held is still there.
    let got = drain_until(&s, "q", &BTreeSet::from([1])).await;
    assert_eq!(got, BTreeSet::from([1]));
}

#[tokio::test]
async fn killing_the_stream_leader_under_load_loses_nothing_acknowledged() {
    let mut cluster = NatsCluster::start().await;
    let b = router(&cluster.urls(), 3).await;
    topic_into_queue(&b, 30).await;
    // Router A knows only the leader's address: it loses its own server with the leader
    // and must find the others by itself.
    let leader = leader_of(&cluster, &queue_stream("q")).await;
    let a = router(&cluster.nodes[leader].url(), 3).await;
    sees_queue(&a, "q").await;
    let load = Load::start(&a);
    load.wait_for(100, "100 publishes before the kill").await;
    cluster.nodes[leader].kill9();
    load.wait_for(100, "100 publishes after the leader died")
        .await;
    let (acked, refused) = load.finish().await;
    assert_only_unavailable(&refused);
    // A's metadata watch came back on another node: a queue made on B reaches it.
    put(&b, "/v1/queues/after", json!({})).await;
    sees_queue(&a, "after").await;
    let got = drain_until(&b, "q", &acked).await;
    assert_none_lost(&acked, &got);
    let new_leader = leader_of(&cluster, &queue_stream("q")).await;
    assert_ne!(new_leader, leader);
}

#[tokio::test]
async fn a_follower_killed_under_load_costs_nothing_and_catches_up_when_restarted() {
    let mut cluster = NatsCluster::start().await;
    let s = router(&cluster.urls(), 3).await;
    topic_into_queue(&s, 30).await;
    let stream = queue_stream("q");
    let leader = leader_of(&cluster, &stream).await;
    let follower = (leader + 1) % cluster.nodes.len();
    let load = Load::start(&s);
    load.wait_for(100, "100 publishes before the kill").await;
    cluster.nodes[follower].kill9();
    load.wait_for(200, "200 publishes with a follower down")
        .await;
    cluster.nodes[follower].restart();
    load.wait_for(100, "100 publishes after the restart").await;
    let (acked, refused) = load.finish().await;
    assert_only_unavailable(&refused);
    // The restarted node holds the stream again, up to its last message.
    let name = cluster.nodes[follower].name().to_string();
    eventually(FAILOVER, "the restarted node to catch up", || async {
        let info = info_with_leader(&cluster, &stream, None).await;
        let caught_up = info["cluster"]["replicas"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| {
                r["name"] == name.as_str()
                    && r["current"] == true
                    && r["lag"].as_u64().unwrap_or(0) == 0
            });
        let all_there = info["state"]["messages"].as_u64() >= Some(acked.len() as u64);
        (caught_up && all_there).then_some(())
    })
    .await;
    let got = drain_until(&s, "q", &acked).await;
    assert_none_lost(&acked, &got);
}

#[tokio::test]
async fn a_router_and_a_node_killed_at_once_lose_nothing_acknowledged() {
    let mut cluster = NatsCluster::start().await;
    let b = router(&cluster.urls(), 3).await;
    topic_into_queue(&b, 2).await;
    let leader = leader_of(&cluster, &queue_stream("q")).await;
    let mut a = router(&cluster.nodes[leader].url(), 3).await;
    sees_queue(&a, "q").await;
    // Messages held by A when it dies come back after their visibility timeout.
    for n in 0..5u64 {
        post(
            &a,
            "/v1/topics/t/publish",
            json!({"message": {"n": 10_000 + n}}),
        )
        .await;
    }
    let held = try_receive(&a, "q", 10, 1).await;
    assert!(!held.is_empty());
    let load = Load::start(&a);
    load.wait_for(100, "100 publishes before the kills").await;
    a.kill9();
    cluster.nodes[leader].kill9();
    let (mut want, refused) = load.finish().await;
    // The router died under its clients: refusals are broken connections or 503s.
    for r in &refused {
        assert!(!r.starts_with('4') && !r.starts_with("500"), "{r}");
    }
    want.extend(
        held.iter()
            .map(|m| m["message"]["message"]["n"].as_u64().unwrap()),
    );
    let got = drain_until(&b, "q", &want).await;
    assert_none_lost(&want, &got);
}

/// How long after a new consumer leader is seen the consumer's leadership may still move
/// (a second election among the nodes left).
const SETTLING: Duration = Duration::from_secs(2);

/// Cuts off the node leading a queue's consumer (SIGSTOP) while two routers receive
/// without acknowledging, and brings it back. JetStream hands a message out before the
/// consumer's replicas have recorded the delivery, so what a leader handed out in its
/// last moment can be handed out again by its successor within the visibility timeout.
/// Nothing handed out once the failover has settled may come out twice within it, the
/// node coming back must not hand out anything again, and every message comes out
/// (those whose answer was lost with the node, after their visibility timeout).
#[tokio::test]
async fn a_node_cut_off_and_back_hands_nothing_out_twice_once_the_failover_settled() {
    const N: usize = 300;
    const VISIBILITY: Duration = Duration::from_secs(15);
    let cluster = NatsCluster::start().await;
    let a = router(&cluster.urls(), 3).await;
    put(
        &a,
        "/v1/queues/jobs",
        json!({"visibility_timeout_s": VISIBILITY.as_secs()}),
    )
    .await;
    let b = router(&cluster.urls(), 3).await;
    sees_queue(&b, "jobs").await;
    for chunk in (0..N).collect::<Vec<_>>().chunks(10) {
        let entries: Vec<Value> = chunk
            .iter()
            .map(|n| json!({"id": n.to_string(), "message": {"n": n}}))
            .collect();
        post(
            &a,
            "/v1/queues/jobs/messages",
            json!({ "entries": entries }),
        )
        .await;
    }
    let stream = queue_stream("jobs");
    let consumer = info_with_leader(&cluster, &stream, Some("ready")).await;
    let cut = cluster.index_of(consumer["cluster"]["leader"].as_str().unwrap());
    // Every hand-out: the message id, when its receive was sent and answered.
    let seen = Arc::new(Mutex::new(Vec::<(String, Instant, Instant)>::new()));
    let unique = |seen: &Mutex<Vec<(String, Instant, Instant)>>| {
        seen.lock()
            .unwrap()
            .iter()
            .map(|(id, _, _)| id.clone())
            .collect::<HashSet<_>>()
            .len()
    };
    let done = Arc::new(AtomicBool::new(false));
    let consume = |s: &TestServer| {
        let (seen, done) = (seen.clone(), done.clone());
        let base = s.base_url.clone();
        async move {
            let http = reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            // Until the cut-off's steps are done; each of those has a deadline of its own.
            while !done.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let Ok(r) = http
                    .post(format!("{base}/v1/queues/jobs/receive"))
                    .json(&json!({"max_messages": 5, "wait_s": 1}))
                    .send()
                    .await
                else {
                    continue;
                };
                if !r.status().is_success() {
                    continue;
                }
                let v: Value = r.json().await.unwrap();
                let answered = Instant::now();
                seen.lock()
                    .unwrap()
                    .extend(v["messages"].as_array().unwrap().iter().map(|m| {
                        let id = m["message_id"].as_str().unwrap().to_string();
                        (id, sent, answered)
                    }));
            }
        }
    };
    let cut_at = Mutex::new(None::<Instant>);
    let settled_at = Mutex::new(None::<Instant>);
    let cut_off = async {
        eventually(FAILOVER, "a third of the messages out", || async {
            (unique(&seen) >= N / 3).then_some(())
        })
        .await;
        cluster.nodes[cut].pause();
        *cut_at.lock().unwrap() = Some(Instant::now());
        // The others elect another leader for the consumer and hand out the rest.
        eventually(FAILOVER, "a new consumer leader", || async {
            let other = (cut + 1) % cluster.nodes.len();
            let what = format!("CONSUMER.INFO.{stream}.ready");
            let v = try_js_api(&cluster, other, &what, json!({})).await?;
            let leader = v["cluster"]["leader"].as_str().map(str::to_string);
            leader
                .filter(|l| l.as_str() != cluster.nodes[cut].name())
                .map(|_| ())
        })
        .await;
        let settled = Instant::now() + SETTLING;
        *settled_at.lock().unwrap() = Some(settled);
        let before = unique(&seen);
        eventually(FAILOVER, "receives after the failover settled", || async {
            (Instant::now() > settled && (unique(&seen) > before || before == N)).then_some(())
        })
        .await;
        cluster.nodes[cut].resume();
        // Receives go on with the node back until everything came out.
        let back = Instant::now();
        eventually(
            FAILOVER + VISIBILITY,
            "every message out, and a moment with the node back",
            || async {
                (unique(&seen) == N && back.elapsed() > Duration::from_secs(2)).then_some(())
            },
        )
        .await;
        done.store(true, Ordering::Relaxed);
    };
    tokio::join!(consume(&a), consume(&b), cut_off);
    let cut_at = cut_at.lock().unwrap().expect("the node was cut off");
    let settled_at = settled_at.lock().unwrap().expect("the failover settled");
    let seen = seen.lock().unwrap().clone();
    let mut first: std::collections::HashMap<&String, (Instant, Instant)> = Default::default();
    let mut again = 0;
    for (id, sent, answered) in &seen {
        let Some((first_sent, first_answered)) = first.get(id).copied() else {
            first.insert(id, (*sent, *answered));
            continue;
        };
        // Asked for again before the first hand-out's visibility could have run out.
        if *sent < first_sent + VISIBILITY {
            assert!(
                first_sent < settled_at,
                "message {id} handed out twice within its visibility timeout: first asked \
                 {:?} after the cut and answered {:?} after it, then asked again {:?} after it",
                first_sent.checked_duration_since(cut_at),
                first_answered.checked_duration_since(cut_at),
                sent.checked_duration_since(cut_at),
            );
            again += 1;
        }
    }
    eprintln!("handed out again during the failover: {again}");
    assert_eq!(first.len(), N, "not every message came out");
}

/// Polls through `s` until the answer is not a 503 (the cluster failing over).
async fn poll_group(s: &TestServer, member: &str) -> Vec<Value> {
    eventually(FAILOVER, &format!("a poll by {member}"), || async {
        let (status, v) = s
            .json(
                Method::POST,
                "/v1/streams/clicks/groups/g/poll",
                json!({"member": member, "max_records": 20}),
            )
            .await;
        match status {
            StatusCode::OK => Some(v["records"].as_array().unwrap().clone()),
            StatusCode::SERVICE_UNAVAILABLE => None,
            other => panic!("poll answered {other}: {v}"),
        }
    })
    .await
}

/// Checkpoints `record` for `member` through `s`, repeating while the cluster fails over.
async fn checkpoint(s: &TestServer, member: &str, record: &Value) -> StatusCode {
    eventually(FAILOVER, &format!("a checkpoint by {member}"), || async {
        let (status, _) = s
            .json(
                Method::POST,
                "/v1/streams/clicks/groups/g/checkpoint",
                json!({"member": member, "shard_id": record["shard_id"], "sequence": record["sequence"]}),
            )
            .await;
        (status != StatusCode::SERVICE_UNAVAILABLE).then_some(status)
    })
    .await
}

#[tokio::test]
async fn group_leases_and_checkpoints_hold_through_the_loss_of_their_buckets_leader() {
    let mut cluster = NatsCluster::start().await;
    let a = router(&cluster.urls(), 3).await;
    put(&a, "/v1/streams/clicks", json!({"shards": 1})).await;
    put(
        &a,
        "/v1/streams/clicks/groups/g",
        json!({"lease_timeout_s": 60}),
    )
    .await;
    let records: Vec<Value> = (0..60)
        .map(|i| json!({"partition_key": "k", "data": i}))
        .collect();
    post(
        &a,
        "/v1/streams/clicks/records",
        json!({ "records": records }),
    )
    .await;
    let b = router(&cluster.urls(), 3).await;
    // m1 takes the shard and processes twenty records.
    let got = poll_group(&a, "m1").await;
    let data = |records: &[Value]| -> Vec<i64> {
        records
            .iter()
            .map(|r| r["data"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(data(&got), (0..20).collect::<Vec<_>>());
    assert_eq!(
        checkpoint(&a, "m1", got.last().unwrap()).await,
        StatusCode::OK
    );
    // The leases and checkpoints live in the groups bucket; its leader dies.
    let leader = leader_of(&cluster, "KV_switchyard_groups").await;
    cluster.nodes[leader].kill9();
    // m1 still holds the shard (through the other router too) and goes on from its
    // checkpoint; a newcomer gets nothing while the lease holds.
    let got = poll_group(&b, "m1").await;
    assert_eq!(data(&got), (20..40).collect::<Vec<_>>());
    assert!(poll_group(&b, "m2").await.is_empty());
    assert_eq!(
        checkpoint(&b, "m2", got.last().unwrap()).await,
        StatusCode::CONFLICT,
        "a member without the lease may not checkpoint"
    );
    assert_eq!(
        checkpoint(&b, "m1", got.last().unwrap()).await,
        StatusCode::OK
    );
    let got = poll_group(&a, "m1").await;
    assert_eq!(data(&got), (40..60).collect::<Vec<_>>());
}
