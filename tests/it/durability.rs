//! Crashes and power cuts under mixed load. Publishes fan out to two queues, a webhook and
//! a function (which publishes in turn); sends are received and acked; a FIFO queue's
//! groups are sent to and consumed in order; messages bounce (visibility set to 0) into a
//! dead-letter queue and are redriven back; records are put to a stream whose consumer
//! group polls and checkpoints. At a random moment the server is killed (SIGKILL), and in
//! the power-cut test the power is cut too: its data directory is on cutfs (`cutfs.rs`),
//! which throws away whatever was written but not synced. After each restart:
//!
//! - every acknowledged publish is in both queues and reaches the webhook and the
//!   function, and every acknowledged send is where it belongs, bodies byte for byte;
//! - nothing acknowledged as deleted comes back, and nothing appears that no one sent;
//! - a FIFO group's messages come out in the order sent;
//! - a bounced message is in its queue or the dead-letter queue, not both;
//! - stream sequences have no gaps, acknowledged records are there, and checkpoints are
//!   not behind what was acknowledged.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use switchyard::client::Client;
use switchyard::wire::{PublishRequest, QueueSpec, ReceiveRequest, SendRequest, SubscriptionSpec};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::cutfs::CutFs;
use crate::guests;
use crate::harness::{Launch, TestServer, topic_with_queues};
use crate::webhooks::Receiver;

/// Rounds of the power-cut test; `DURABILITY_ROUNDS` asks for more.
const POWER_CUTS: u64 = 10;
/// Rounds of the crash test.
const CRASHES: u64 = 20;
/// The kill comes after a random number of the load's requests, up to this many...
const MAX_REQUESTS_BEFORE_KILL: usize = 1_500;
/// ...or after this long, whichever is first.
const MAX_LOAD: Duration = Duration::from_secs(5);
/// Operations per load task and round: the load ends by itself if the kill never comes.
const MAX_OPS: usize = 3_000;
/// Visibility timeout of the queues consumed during the load, so messages in flight at
/// the kill come back soon after the restart.
const VISIBILITY_S: u64 = 1;
/// FIFO message groups.
const GROUPS: usize = 3;
/// How long deliveries to the webhook and the function may take after a restart.
const DELIVERED_WITHIN: Duration = Duration::from_secs(60);

/// What the server acknowledged, and what was tried, during one round.
#[derive(Default)]
struct Ledger {
    /// Publishes answered 2xx (id → body), and the bodies of every publish tried.
    published: BTreeMap<String, String>,
    tried_publish: BTreeSet<String>,
    /// Sends answered 2xx per queue (id → body), and the bodies of every send tried.
    sent: BTreeMap<&'static str, BTreeMap<String, String>>,
    tried_send: BTreeSet<String>,
    /// Ids whose ack was answered 2xx, and of every ack tried.
    deleted: BTreeSet<String>,
    tried_ack: BTreeSet<String>,
    /// Stream puts answered 2xx: (shard, sequence) → data; and the data of every put tried.
    records: BTreeMap<(String, u64), String>,
    tried_records: BTreeSet<String>,
    /// Checkpoints answered 2xx: shard → highest sequence.
    checkpoints: BTreeMap<String, u64>,
}

/// The ledger of a round, and how many requests the load has made, for choosing the
/// moment of the kill.
#[derive(Default)]
struct Progress {
    ledger: Mutex<Ledger>,
    requests: AtomicUsize,
    moved: Notify,
}

type Shared = Arc<Progress>;

fn note(progress: &Shared, f: impl FnOnce(&mut Ledger)) {
    f(&mut progress.ledger.lock().expect("never poisoned"));
    progress.requests.fetch_add(1, Ordering::Relaxed);
    progress.moved.notify_waiters();
}

/// Waits until the load has made `n` requests, or `MAX_LOAD` has passed.
async fn requests_made(progress: &Progress, n: usize) {
    let deadline = tokio::time::Instant::now() + MAX_LOAD;
    loop {
        let moved = progress.moved.notified();
        tokio::pin!(moved);
        moved.as_mut().enable();
        if progress.requests.load(Ordering::Relaxed) >= n {
            return;
        }
        if tokio::time::timeout_at(deadline, moved).await.is_err() {
            return;
        }
    }
}

async fn publisher(client: Client, ledger: Shared, round: u64, tag: u64) {
    for n in 0..MAX_OPS {
        let body = json!({"round": round, "publisher": tag, "n": n, "pad": "p".repeat(n % 500)});
        note(&ledger, |l| {
            l.tried_publish.insert(body.to_string());
        });
        match client
            .publish("orders", &PublishRequest::new(body.clone()))
            .await
        {
            Ok(id) => note(&ledger, |l| {
                l.published.insert(id, body.to_string());
            }),
            Err(_) => return,
        }
    }
}

/// Sends to `queue`; to a FIFO queue, round-robin over [`GROUPS`] groups.
async fn sender(client: Client, ledger: Shared, round: u64, queue: &'static str) {
    let fifo = queue.ends_with(".fifo");
    for n in 0..MAX_OPS {
        let group = n % GROUPS;
        let body = json!({"round": round, "queue": queue, "group": group, "n": n, "pad": "s".repeat(n % 700)});
        note(&ledger, |l| {
            l.tried_send.insert(body.to_string());
        });
        let mut request = SendRequest::new(body.clone());
        if fifo {
            request.group_id = Some(format!("g{group}"));
            request.dedup_id = Some(format!("r{round}-n{n}"));
        }
        match client.send(queue, &request).await {
            Ok(id) => note(&ledger, |l| {
                l.sent
                    .entry(queue)
                    .or_default()
                    .insert(id, body.to_string());
            }),
            Err(_) => return,
        }
    }
}

/// Receives from `queue` and acks everything.
async fn worker(client: Client, ledger: Shared, queue: &'static str) {
    for _ in 0..MAX_OPS {
        let Ok(got) = client
            .receive(queue, &ReceiveRequest::new(10).wait_s(1))
            .await
        else {
            return;
        };
        let receipts: Vec<String> = got.iter().map(|m| m.receipt.clone()).collect();
        if receipts.is_empty() {
            continue;
        }
        note(&ledger, |l| {
            l.tried_ack.extend(got.iter().map(|m| m.message_id.clone()));
        });
        match client.ack(queue, &receipts).await {
            Ok(n) if n as usize == receipts.len() => note(&ledger, |l| {
                l.deleted.extend(got.iter().map(|m| m.message_id.clone()));
            }),
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// Receives from `flaky` and makes every message visible again at once, so its next
/// receive moves it to the dead-letter queue; every fourth round it redrives the dead
/// letters back, so that a kill finds messages on both sides and on the way between.
async fn bouncer(client: Client) {
    for round in 0..MAX_OPS {
        let Ok(got) = client
            .receive("flaky", &ReceiveRequest::new(10).wait_s(1))
            .await
        else {
            return;
        };
        for m in got {
            if client
                .change_visibility("flaky", &m.receipt, 0)
                .await
                .is_err()
            {
                return;
            }
        }
        if round % 4 == 3 && client.redrive("flaky-dlq").await.is_err() {
            return;
        }
    }
}

async fn putter(http: reqwest::Client, base: String, ledger: Shared, round: u64) {
    for n in 0..MAX_OPS {
        let data: Vec<Value> = (0..5)
            .map(|k| json!({"round": round, "put": n, "k": k}))
            .collect();
        note(&ledger, |l| {
            l.tried_records.extend(data.iter().map(Value::to_string));
        });
        let records: Vec<Value> = data
            .iter()
            .enumerate()
            .map(|(k, d)| json!({"partition_key": format!("key-{}", (n + k) % 7), "data": d}))
            .collect();
        let Ok(res) = http
            .post(format!("{base}/v1/streams/clicks/records"))
            .json(&json!({ "records": records }))
            .send()
            .await
        else {
            return;
        };
        if !res.status().is_success() {
            return;
        }
        let Ok(placed) = res.json::<Value>().await else {
            return;
        };
        note(&ledger, |l| {
            for (p, d) in placed["records"].as_array().unwrap().iter().zip(&data) {
                let seq = p["sequence"].as_str().unwrap().parse().unwrap();
                let shard = p["shard_id"].as_str().unwrap().to_string();
                l.records.insert((shard, seq), d.to_string());
            }
        });
    }
}

async fn group_member(http: reqwest::Client, base: String, ledger: Shared) {
    let group = format!("{base}/v1/streams/clicks/groups/g");
    for _ in 0..MAX_OPS {
        let Ok(res) = http
            .post(format!("{group}/poll"))
            .json(&json!({"member": "m", "max_records": 50, "wait_s": 1}))
            .send()
            .await
        else {
            return;
        };
        let Ok(page) = res.json::<Value>().await else {
            return;
        };
        let mut last: BTreeMap<String, u64> = BTreeMap::new();
        for r in page["records"].as_array().into_iter().flatten() {
            let seq: u64 = r["sequence"].as_str().unwrap().parse().unwrap();
            let shard = r["shard_id"].as_str().unwrap().to_string();
            let e = last.entry(shard).or_default();
            *e = (*e).max(seq);
        }
        for (shard, seq) in last {
            let Ok(res) = http
                .post(format!("{group}/checkpoint"))
                .json(&json!({"member": "m", "shard_id": shard, "sequence": seq.to_string()}))
                .send()
                .await
            else {
                return;
            };
            if res.status().is_success() {
                note(&ledger, |l| {
                    let e = l.checkpoints.entry(shard).or_default();
                    *e = (*e).max(seq);
                });
            }
        }
    }
}

/// Receives and acks everything in `queue` until a receive waiting `wait_s` comes back
/// empty; returns (id, body) in the order received.
async fn drain_queue(s: &TestServer, queue: &str, wait_s: u64) -> Vec<(String, String)> {
    let mut all = Vec::new();
    loop {
        let got = s
            .client
            .receive(queue, &ReceiveRequest::new(10).wait_s(wait_s))
            .await
            .unwrap_or_else(|e| panic!("receive from {queue}: {e}"));
        if got.is_empty() {
            return all;
        }
        let receipts: Vec<String> = got.iter().map(|m| m.receipt.clone()).collect();
        s.client.ack(queue, &receipts).await.expect("ack");
        all.extend(
            got.into_iter()
                .map(|m| (m.message_id, m.message.to_string())),
        );
    }
}

/// Every record of every shard: shard → [(sequence, data)].
async fn read_stream(s: &TestServer) -> BTreeMap<String, Vec<(u64, String)>> {
    let shards = s
        .ok(Method::GET, "/v1/streams/clicks/shards", Value::Null)
        .await;
    let mut out = BTreeMap::new();
    for shard in shards["shards"].as_array().unwrap() {
        let id = shard["shard_id"].as_str().unwrap().to_string();
        let mut from = "trim_horizon".to_string();
        let mut records = Vec::new();
        loop {
            let page = s
                .ok(
                    Method::GET,
                    &format!("/v1/streams/clicks/shards/{id}/records?from={from}&limit=1000"),
                    Value::Null,
                )
                .await;
            let got = page["records"].as_array().unwrap();
            if got.is_empty() {
                break;
            }
            for r in got {
                let seq = r["sequence"].as_str().unwrap().parse().unwrap();
                records.push((seq, r["data"].to_string()));
            }
            from = page["next"].as_str().unwrap().to_string();
        }
        out.insert(id, records);
    }
    out
}

/// Everything checked across rounds.
#[derive(Default)]
struct Seen {
    /// Per queue: bodies and ids drained (acked, so deleted).
    gone_bodies: BTreeMap<&'static str, BTreeSet<String>>,
    gone_ids: BTreeSet<String>,
    /// Every stream record acknowledged, the data of every put tried, and the highest
    /// checkpoint acknowledged per shard.
    records: BTreeMap<(String, u64), String>,
    tried_records: BTreeSet<String>,
    checkpoints: BTreeMap<String, u64>,
    /// Publish ids the function has published for, and the webhook has received.
    function_outputs: BTreeSet<String>,
    acknowledged: usize,
}

async fn check(s: &TestServer, hook: &Receiver, round: u64, l: Ledger, seen: &mut Seen) {
    seen.acknowledged += l.published.len()
        + l.sent.values().map(BTreeMap::len).sum::<usize>()
        + l.deleted.len()
        + l.records.len();
    let published: BTreeSet<&String> = l.published.values().collect();
    for q in ["a", "b"] {
        let got: BTreeSet<String> = drain_queue(s, q, 0)
            .await
            .into_iter()
            .map(|(_, b)| b)
            .collect();
        let missing: Vec<_> = published.iter().filter(|b| !got.contains(**b)).collect();
        assert!(
            missing.is_empty(),
            "round {round}: {q} lost acknowledged publishes {missing:?}"
        );
        let gone = seen.gone_bodies.entry(q).or_default();
        for body in &got {
            assert!(
                l.tried_publish.contains(body),
                "round {round}: {q} holds {body}, never published"
            );
            assert!(
                !gone.contains(body),
                "round {round}: {q} holds {body} again after its ack"
            );
        }
        gone.extend(got);
    }

    // Consumed queues: what was acknowledged and not (maybe) acked is there, unchanged.
    // Messages in flight at the kill come back after their visibility timeout; the dead
    // letters are only ever redriven, and are drained after `flaky` moves its own.
    let wait = VISIBILITY_S + 1;
    let (work, fifo, (flaky, dlq)) = tokio::join!(
        drain_queue(s, "work", wait),
        drain_queue(s, "orders.fifo", wait),
        async {
            let flaky = drain_queue(s, "flaky", wait).await;
            (flaky, drain_queue(s, "flaky-dlq", 0).await)
        }
    );
    let drained = BTreeMap::from([
        ("work", work),
        ("orders.fifo", fifo),
        ("flaky", flaky),
        ("flaky-dlq", dlq),
    ]);
    let flaky: Vec<(String, String)> = [&drained["flaky"], &drained["flaky-dlq"]]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    let mut ids = BTreeSet::new();
    for (id, _) in &flaky {
        assert!(
            ids.insert(id),
            "round {round}: {id} was both in flaky and its dead-letter queue"
        );
    }
    for (queue, got) in [
        ("work", &drained["work"]),
        ("orders.fifo", &drained["orders.fifo"]),
        ("flaky", &flaky),
    ] {
        let by_id: BTreeMap<&String, &String> = got.iter().map(|(i, b)| (i, b)).collect();
        for (id, body) in l.sent.get(queue).into_iter().flatten() {
            // An ack tried but not answered may or may not have been made.
            if !l.tried_ack.contains(id) {
                assert_eq!(
                    by_id.get(id),
                    Some(&body),
                    "round {round}: acknowledged send {id} to {queue}"
                );
            }
        }
        for (id, body) in got {
            assert!(
                !l.deleted.contains(id) && !seen.gone_ids.contains(id),
                "round {round}: {id} came back to {queue} after its ack"
            );
            assert!(
                l.tried_send.contains(body),
                "round {round}: {queue} holds {body}, never sent"
            );
        }
    }
    // Within a FIFO group, messages come out in the order they were sent.
    let mut last_n: BTreeMap<u64, u64> = BTreeMap::new();
    for (_, body) in &drained["orders.fifo"] {
        let v: Value = serde_json::from_str(body).unwrap();
        let (g, n) = (v["group"].as_u64().unwrap(), v["n"].as_u64().unwrap());
        if let Some(prev) = last_n.insert(g, n) {
            assert!(
                n > prev,
                "round {round}: FIFO group {g} gave {n} after {prev}"
            );
        }
    }
    for got in drained.values() {
        seen.gone_ids.extend(got.iter().map(|(i, _)| i.clone()));
    }
    seen.gone_ids.extend(l.deleted);

    // Streams and checkpoints.
    seen.records.extend(l.records);
    seen.tried_records.extend(l.tried_records);
    let stream = read_stream(s).await;
    for (shard, recs) in &stream {
        for pair in recs.windows(2) {
            assert_eq!(pair[1].0, pair[0].0 + 1, "round {round}: a gap in {shard}");
        }
        for (_, data) in recs {
            assert!(
                seen.tried_records.contains(data),
                "round {round}: {shard} holds {data}, never put"
            );
        }
    }
    for ((shard, seq), data) in &seen.records {
        let found = stream[shard].iter().find(|(s, _)| s == seq).map(|(_, d)| d);
        assert_eq!(
            found,
            Some(data),
            "round {round}: acknowledged record {shard}/{seq}"
        );
    }
    for (shard, seq) in l.checkpoints {
        let e = seen.checkpoints.entry(shard).or_default();
        *e = (*e).max(seq);
    }
    let group = s
        .ok(Method::GET, "/v1/streams/clicks/groups/g", Value::Null)
        .await;
    for g in group["shards"].as_array().unwrap() {
        let shard = g["shard_id"].as_str().unwrap();
        let at: u64 = g["checkpoint"].as_str().map_or(0, |c| c.parse().unwrap());
        let want = seen.checkpoints.get(shard).copied().unwrap_or(0);
        assert!(
            at >= want,
            "round {round}: {shard} checkpoint {at}, acknowledged {want}"
        );
    }

    // Deliveries go on after the restart: every acknowledged publish reaches the webhook
    // with its body, and the function publishes for it. The wait is the long poll of the
    // function's output queue.
    let deadline = Instant::now() + DELIVERED_WITHIN;
    let mut wait_s = 0;
    loop {
        for (_, m) in drain_queue(s, "fn-out", wait_s).await {
            let out: String = serde_json::from_str(&m).unwrap_or(m);
            if let Some(id) = out.strip_suffix(":0") {
                seen.function_outputs.insert(id.to_string());
            }
        }
        let hits: BTreeMap<String, String> = hook
            .hits()
            .iter()
            .map(|h| {
                let id = h.header("x-switchyard-message-id").to_string();
                (id, h.json()["message"].to_string())
            })
            .collect();
        let late: Vec<&String> = l
            .published
            .iter()
            .filter(|(id, body)| {
                hits.get(*id) != Some(body) || !seen.function_outputs.contains(*id)
            })
            .map(|(id, _)| id)
            .collect();
        if late.is_empty() {
            break;
        }
        wait_s = 1;
        assert!(
            Instant::now() < deadline,
            "round {round}: within {DELIVERED_WITHIN:?}, {} acknowledged publishes did not reach \
             the webhook (with their body) and the function: {late:?}",
            late.len()
        );
    }
}

enum Cut {
    /// SIGKILL: the OS keeps what was written.
    Kill,
    /// SIGKILL, then the unsynced data is lost too.
    Power(CutFs),
}

async fn run(mut cut: Cut, data_in: Option<&std::path::Path>, rounds: u64) {
    let seed = std::env::var("DURABILITY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("durability seed {seed} (DURABILITY_SEED={seed} repeats the moments)");
    let mut rng = fastrand::Rng::with_seed(seed);
    let rounds = std::env::var("DURABILITY_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(rounds);
    let (hook, hook_url) = Receiver::start(&[]).await;
    let mut launch = Launch::new(None, &[]);
    if let Some(dir) = data_in {
        launch = launch.data_in(dir);
    }
    let mut s = launch.spawn().await;
    topic_with_queues(
        &s.client,
        "orders",
        &[
            ("a", SubscriptionSpec::to_queue("a").raw()),
            ("b", SubscriptionSpec::to_queue("b").raw()),
        ],
    )
    .await;
    let consumed = QueueSpec {
        visibility_timeout_s: VISIBILITY_S,
        ..QueueSpec::default()
    };
    s.client.put_queue("work", &consumed).await.unwrap();
    s.ok(
        Method::PUT,
        "/v1/queues/orders.fifo",
        json!({"fifo": true, "visibility_timeout_s": VISIBILITY_S}),
    )
    .await;
    s.client
        .put_queue("flaky-dlq", &QueueSpec::default())
        .await
        .unwrap();
    s.ok(
        Method::PUT,
        "/v1/queues/flaky",
        json!({"visibility_timeout_s": VISIBILITY_S, "redrive_policy": {"dead_letter_queue": "flaky-dlq", "max_receive_count": 1}}),
    )
    .await;
    s.ok(
        Method::PUT,
        "/v1/topics/orders/subscriptions/hook",
        json!({"endpoint": {"http": {"url": hook_url}}}),
    )
    .await;
    topic_with_queues(
        &s.client,
        "fn-out",
        &[("fn-out", SubscriptionSpec::to_queue("fn-out").raw())],
    )
    .await;
    s.ok(
        Method::PUT,
        "/v1/functions/echo",
        json!({"module": guests::path("publisher").to_string_lossy(), "env": {"topic": "fn-out"}}),
    )
    .await;
    s.ok(
        Method::PUT,
        "/v1/topics/orders/subscriptions/echo",
        json!({"endpoint": {"function": "echo"}}),
    )
    .await;
    s.ok(Method::PUT, "/v1/streams/clicks", json!({"shards": 2}))
        .await;
    s.ok(
        Method::PUT,
        "/v1/streams/clicks/groups/g",
        json!({"start_position": "trim_horizon"}),
    )
    .await;

    let mut seen = Seen::default();
    let mut lost_bytes = 0;
    for round in 0..rounds {
        let ledger: Shared = Arc::default();
        let mut load = JoinSet::new();
        for tag in 0..2 {
            load.spawn(publisher(s.client.clone(), ledger.clone(), round, tag));
        }
        for queue in ["work", "orders.fifo", "flaky"] {
            load.spawn(sender(s.client.clone(), ledger.clone(), round, queue));
        }
        for queue in ["work", "orders.fifo"] {
            load.spawn(worker(s.client.clone(), ledger.clone(), queue));
        }
        load.spawn(bouncer(s.client.clone()));
        load.spawn(putter(
            s.http.clone(),
            s.base_url.clone(),
            ledger.clone(),
            round,
        ));
        load.spawn(group_member(
            s.http.clone(),
            s.base_url.clone(),
            ledger.clone(),
        ));
        requests_made(&ledger, rng.usize(20..MAX_REQUESTS_BEFORE_KILL)).await;
        s.kill9();
        if let Cut::Power(fs) = &mut cut {
            lost_bytes += fs.power_cut();
        }
        while load.join_next().await.is_some() {}
        s.restart().await;
        let l = std::mem::take(&mut *ledger.ledger.lock().unwrap());
        check(&s, &hook, round, l, &mut seen).await;
    }
    eprintln!(
        "{rounds} rounds: {} acknowledged writes kept, {lost_bytes} unsynced bytes thrown away",
        seen.acknowledged
    );
    if let Cut::Power(_) = cut {
        assert!(
            lost_bytes > 0,
            "the cuts threw nothing away: they proved nothing"
        );
    }
    drop(s);
}

#[tokio::test]
async fn a_crash_at_any_moment_of_mixed_load_loses_nothing_acknowledged() {
    run(Cut::Kill, None, CRASHES).await;
}

#[tokio::test]
async fn acknowledged_writes_survive_power_cuts_at_random_moments_under_load() {
    let mount = tempfile::Builder::new()
        .prefix("switchyard-cutfs-")
        .tempdir()
        .unwrap();
    let fs = CutFs::mount(mount.path());
    run(Cut::Power(fs), Some(mount.path()), POWER_CUTS).await;
}
