//! Streams end to end: Kinesis-style shards, sequence numbers and iterators, retention,
//! topic fan-out to a stream, and consumer groups sharing shards through leases.
//! Each behaviour test runs on both backends (`NAME::embedded`, `NAME::nats`); restart
//! is the embedded store's.

use crate::harness::{TestServer, clock_past, eventually, spawn_server};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

crate::contract::on_both_backends!(
    records_keep_per_key_order_and_each_key_stays_on_one_shard,
    every_iterator_type_reads_from_where_it_says,
    records_past_retention_are_gone_and_reading_before_the_trim_point_is_refused,
    bad_stream_input_is_refused_with_4xx,
    topic_fans_out_to_a_stream_keyed_by_a_json_pointer,
    two_and_then_three_members_balance_the_shards,
    a_dead_members_shards_resume_after_its_last_checkpoint_without_skipping,
);

async fn call(
    server: &TestServer,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    server.json(method, path, body.unwrap_or(Value::Null)).await
}

async fn ok(server: &TestServer, method: Method, path: &str, body: Option<Value>) -> Value {
    server.ok(method, path, body.unwrap_or(Value::Null)).await
}

async fn put_stream(server: &TestServer, name: &str, spec: Value) {
    ok(
        server,
        Method::PUT,
        &format!("/v1/streams/{name}"),
        Some(spec),
    )
    .await;
}

async fn put_records(server: &TestServer, name: &str, records: Vec<Value>) -> Vec<(String, u64)> {
    let v = ok(
        server,
        Method::POST,
        &format!("/v1/streams/{name}/records"),
        Some(json!({ "records": records })),
    )
    .await;
    v["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["shard_id"].as_str().unwrap().to_string(),
                r["sequence"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect()
}

async fn read(
    server: &TestServer,
    name: &str,
    shard: &str,
    from: &str,
    limit: usize,
) -> (StatusCode, Value) {
    call(
        server,
        Method::GET,
        &format!("/v1/streams/{name}/shards/{shard}/records?from={from}&limit={limit}"),
        None,
    )
    .await
}

/// Reads a whole shard from `from`, following `next`.
async fn read_all(server: &TestServer, name: &str, shard: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut from = "trim_horizon".to_string();
    loop {
        let (status, v) = read(server, name, shard, &from, 1000).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let recs = v["records"].as_array().unwrap().clone();
        from = v["next"].as_str().unwrap().to_string();
        if recs.is_empty() {
            return out;
        }
        out.extend(recs);
    }
}

async fn shard_ids(server: &TestServer, name: &str) -> Vec<String> {
    let v = ok(
        server,
        Method::GET,
        &format!("/v1/streams/{name}/shards"),
        None,
    )
    .await;
    v["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["shard_id"].as_str().unwrap().to_string())
        .collect()
}

async fn poll(
    server: &TestServer,
    stream: &str,
    group: &str,
    member: &str,
    max: usize,
) -> Vec<Value> {
    let v = ok(
        server,
        Method::POST,
        &format!("/v1/streams/{stream}/groups/{group}/poll"),
        Some(json!({"member": member, "max_records": max})),
    )
    .await;
    v["records"].as_array().unwrap().clone()
}

async fn checkpoint(
    server: &TestServer,
    stream: &str,
    group: &str,
    member: &str,
    rec: &Value,
) -> StatusCode {
    call(
        server,
        Method::POST,
        &format!("/v1/streams/{stream}/groups/{group}/checkpoint"),
        Some(json!({"member": member, "shard_id": rec["shard_id"], "sequence": rec["sequence"]})),
    )
    .await
    .0
}

async fn held_shards(server: &TestServer, stream: &str, group: &str) -> BTreeMap<String, usize> {
    let v = ok(
        server,
        Method::GET,
        &format!("/v1/streams/{stream}/groups/{group}"),
        None,
    )
    .await;
    let mut held = BTreeMap::new();
    for s in v["shards"].as_array().unwrap() {
        if let Some(m) = s["member"].as_str() {
            *held.entry(m.to_string()).or_insert(0) += 1;
        }
    }
    held
}

async fn records_keep_per_key_order_and_each_key_stays_on_one_shard(server: &TestServer) {
    put_stream(server, "clicks", json!({"shards": 4})).await;
    let keys: Vec<String> = (0..50).map(|k| format!("user-{k}")).collect();
    let mut placed: HashMap<String, BTreeSet<String>> = HashMap::new();
    for batch in 0..20 {
        let records: Vec<Value> = (0..500)
            .map(|i| {
                let n = batch * 500 + i;
                json!({"partition_key": keys[n % 50], "data": {"key": keys[n % 50], "n": n}})
            })
            .collect();
        let keys_of_batch: Vec<String> = records
            .iter()
            .map(|r| r["partition_key"].as_str().unwrap().to_string())
            .collect();
        for (k, (shard, _)) in keys_of_batch
            .iter()
            .zip(put_records(server, "clicks", records).await)
        {
            placed.entry(k.clone()).or_default().insert(shard);
        }
    }
    assert!(
        placed.values().all(|s| s.len() == 1),
        "a key landed on two shards"
    );

    let mut seen = 0;
    let mut last_n: HashMap<String, i64> = HashMap::new();
    for shard in shard_ids(server, "clicks").await {
        let recs = read_all(server, "clicks", &shard).await;
        let mut last_seq = 0u64;
        for r in &recs {
            let seq: u64 = r["sequence"].as_str().unwrap().parse().unwrap();
            assert!(seq > last_seq, "sequence numbers increase within a shard");
            last_seq = seq;
            let key = r["partition_key"].as_str().unwrap();
            assert_eq!(placed[key].iter().next().unwrap(), &shard);
            let n = r["data"]["n"].as_i64().unwrap();
            let prev = last_n.insert(key.to_string(), n).unwrap_or(-1);
            assert!(n > prev, "records of {key} out of order: {n} after {prev}");
        }
        seen += recs.len();
    }
    assert_eq!(seen, 10_000);
}

async fn every_iterator_type_reads_from_where_it_says(server: &TestServer) {
    put_stream(server, "s", json!({"shards": 1})).await;
    let first = put_records(
        server,
        "s",
        (0..3)
            .map(|i| json!({"partition_key": "k", "data": i}))
            .collect(),
    )
    .await;
    let shard = first[0].0.clone();
    // A moment after the first three arrived, passed before the next two are put.
    let (_, v) = read(server, "s", &shard, "trim_horizon", 10).await;
    let between = v["records"][2]["arrived_at"].as_u64().expect("arrived_at") + 1;
    clock_past(between).await;
    put_records(
        server,
        "s",
        (3..5)
            .map(|i| json!({"partition_key": "k", "data": i}))
            .collect(),
    )
    .await;

    let data = |v: &Value| -> Vec<i64> {
        v["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["data"].as_i64().unwrap())
            .collect()
    };
    let (_, v) = read(server, "s", &shard, "trim_horizon", 10).await;
    assert_eq!(data(&v), [0, 1, 2, 3, 4]);
    assert_eq!(v["next"], "after:5");
    let (_, v) = read(server, "s", &shard, "at:2", 2).await;
    assert_eq!(data(&v), [1, 2]);
    assert_eq!(v["next"], "after:3");
    let (_, v) = read(server, "s", &shard, "after:3", 10).await;
    assert_eq!(data(&v), [3, 4]);
    let (_, v) = read(server, "s", &shard, &format!("at_timestamp:{between}"), 10).await;
    assert_eq!(data(&v), [3, 4]);
    let (_, v) = read(server, "s", &shard, "latest", 10).await;
    assert_eq!(data(&v), Vec::<i64>::new());
    assert_eq!(v["next"], "after:5");
    put_records(server, "s", vec![json!({"partition_key": "k", "data": 5})]).await;
    let (_, v) = read(server, "s", &shard, "after:5", 10).await;
    assert_eq!(data(&v), [5]);

    // Positions that cannot be served are refused, naming the problem.
    let (status, v) = read(server, "s", &shard, "at:99", 10).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        v["detail"].as_str().unwrap().contains("beyond the end"),
        "{v}"
    );
    let (status, v) = read(server, "s", &shard, "at:x", 10).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(v["detail"].as_str().unwrap().contains("\"x\""), "{v}");
    let (status, _) = read(server, "s", "shard-0009", "latest", 10).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = read(server, "nope", &shard, "latest", 10).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn records_past_retention_are_gone_and_reading_before_the_trim_point_is_refused(
    server: &TestServer,
) {
    put_stream(server, "short", json!({"shards": 1, "retention_s": 1})).await;
    let placed = put_records(
        server,
        "short",
        vec![json!({"partition_key": "k", "data": 1})],
    )
    .await;
    let shard = placed[0].0.clone();
    eventually(Duration::from_secs(10), "the record expires", || async {
        let (_, v) = read(server, "short", &shard, "trim_horizon", 10).await;
        v["records"].as_array().unwrap().is_empty().then_some(())
    })
    .await;
    // Once swept, the trim horizon has moved past sequence 1.
    eventually(
        Duration::from_secs(10),
        "the trim horizon moves",
        || async {
            let (status, v) = read(server, "short", &shard, "at:1", 10).await;
            (status == StatusCode::GONE).then_some(v)
        },
    )
    .await;
}

async fn bad_stream_input_is_refused_with_4xx(server: &TestServer) {
    put_stream(server, "s", json!({"shards": 2})).await;
    let big = "x".repeat(1024 * 1024 + 1);
    let (status, _) = call(
        server,
        Method::POST,
        "/v1/streams/s/records",
        Some(json!({"records": [{"partition_key": "k", "data": big}]})),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _) = call(
        server,
        Method::POST,
        "/v1/streams/s/records",
        Some(json!({"records": [{"partition_key": "", "data": 1}]})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, v) = call(
        server,
        Method::PUT,
        "/v1/streams/s",
        Some(json!({"shards": 3})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(v["detail"].as_str().unwrap().contains("resharding"), "{v}");
    let (status, _) = call(
        server,
        Method::PUT,
        "/v1/streams/t",
        Some(json!({"shards": 0})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = call(
        server,
        Method::POST,
        "/v1/streams/s/groups/g/checkpoint",
        Some(json!({"member": "m", "shard_id": "shard-0000", "sequence": "1"})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "unknown group");
}

async fn topic_fans_out_to_a_stream_keyed_by_a_json_pointer(server: &TestServer) {
    put_stream(server, "orders", json!({"shards": 4})).await;
    ok(server, Method::PUT, "/v1/topics/t", Some(json!({}))).await;
    ok(server, Method::PUT, "/v1/topics/t/subscriptions/log",
        Some(json!({"endpoint": {"stream": "orders", "partition_key": "/customer"}, "raw_message_delivery": true}))).await;
    for i in 0..20 {
        ok(
            server,
            Method::POST,
            "/v1/topics/t/publish",
            Some(json!({"message": {"customer": format!("c{}", i % 3), "i": i}})),
        )
        .await;
    }
    let mut by_key: HashMap<String, (String, Vec<i64>)> = HashMap::new();
    for shard in shard_ids(server, "orders").await {
        for r in read_all(server, "orders", &shard).await {
            let key = r["partition_key"].as_str().unwrap().to_string();
            assert_eq!(r["data"]["customer"], json!(key));
            let e = by_key.entry(key).or_insert((shard.clone(), Vec::new()));
            assert_eq!(e.0, shard);
            e.1.push(r["data"]["i"].as_i64().unwrap());
        }
    }
    assert_eq!(by_key.len(), 3);
    for (_, (_, is)) in by_key {
        assert!(is.windows(2).all(|w| w[0] < w[1]));
    }
}

async fn two_and_then_three_members_balance_the_shards(server: &TestServer) {
    put_stream(server, "s", json!({"shards": 4})).await;
    ok(
        server,
        Method::PUT,
        "/v1/streams/s/groups/g",
        Some(json!({"lease_timeout_s": 5})),
    )
    .await;
    poll(server, "s", "g", "a", 10).await;
    eventually(
        Duration::from_secs(10),
        "a and b hold two shards each",
        || async {
            poll(server, "s", "g", "a", 10).await;
            poll(server, "s", "g", "b", 10).await;
            let held = held_shards(server, "s", "g").await;
            (held.get("a") == Some(&2) && held.get("b") == Some(&2)).then_some(())
        },
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "a, b and c share four shards 2-1-1",
        || async {
            for m in ["a", "b", "c"] {
                poll(server, "s", "g", m, 10).await;
            }
            let held = held_shards(server, "s", "g").await;
            let mut sizes: Vec<usize> = held.values().copied().collect();
            sizes.sort();
            (sizes == [1, 1, 2]).then_some(())
        },
    )
    .await;
}

async fn a_dead_members_shards_resume_after_its_last_checkpoint_without_skipping(
    server: &TestServer,
) {
    put_stream(server, "s", json!({"shards": 2})).await;
    ok(
        server,
        Method::PUT,
        "/v1/streams/s/groups/g",
        Some(json!({"lease_timeout_s": 1})),
    )
    .await;
    let records: Vec<Value> = (0..200)
        .map(|i| json!({"partition_key": format!("k{i}"), "data": i}))
        .collect();
    put_records(server, "s", records).await;

    // Alone, `a` takes both shards and processes (checkpoints) ten records of each.
    let got = poll(server, "s", "g", "a", 20).await;
    assert!(!got.is_empty());
    let mut checkpointed: HashMap<String, u64> = HashMap::new();
    let mut processed: BTreeSet<i64> = BTreeSet::new();
    for r in &got {
        processed.insert(r["data"].as_i64().unwrap());
        assert_eq!(checkpoint(server, "s", "g", "a", r).await, StatusCode::OK);
        checkpointed.insert(
            r["shard_id"].as_str().unwrap().to_string(),
            r["sequence"].as_str().unwrap().parse().unwrap(),
        );
    }
    // `a` reads more but dies before checkpointing them.
    let lost = poll(server, "s", "g", "a", 20).await;
    assert!(!lost.is_empty());

    // `b` cannot read a's shards while a's leases live, then takes them over.
    let seen_by_b = std::cell::RefCell::new(Vec::<Value>::new());
    let (seen, processed) = (&seen_by_b, &processed);
    let server_ref = &server;
    eventually(
        Duration::from_secs(10),
        "b to drain both shards",
        || async move {
            let recs = poll(server_ref, "s", "g", "b", 500).await;
            // One checkpoint per shard and batch, as a consumer does: a record-by-record run of
            // them on a loaded machine can outlast the one-second lease they are checked against.
            let mut last: HashMap<&str, &Value> = HashMap::new();
            for r in &recs {
                last.insert(r["shard_id"].as_str().unwrap(), r);
            }
            for r in last.values() {
                assert_eq!(
                    checkpoint(server_ref, "s", "g", "b", r).await,
                    StatusCode::OK
                );
            }
            let mut seen = seen.borrow_mut();
            seen.extend(recs);
            let all: BTreeSet<i64> = seen
                .iter()
                .map(|r| r["data"].as_i64().unwrap())
                .chain(processed.iter().copied())
                .collect();
            (all.len() == 200).then_some(())
        },
    )
    .await;
    let seen_by_b = seen_by_b.into_inner();
    // b resumed right after a's checkpoints: nothing skipped, nothing before them repeated.
    for r in &seen_by_b {
        let shard = r["shard_id"].as_str().unwrap();
        let seq: u64 = r["sequence"].as_str().unwrap().parse().unwrap();
        let after = checkpointed.get(shard).copied().unwrap_or(0);
        assert!(seq > after, "b re-read a checkpointed record");
    }
    // The dead member no longer holds anything, and cannot checkpoint.
    assert_eq!(
        checkpoint(server, "s", "g", "a", &got[0]).await,
        StatusCode::CONFLICT
    );
}

#[tokio::test]
async fn restart_keeps_sequences_and_checkpoints() {
    let mut server = spawn_server(None).await;
    put_stream(&server, "s", json!({"shards": 1})).await;
    put_records(
        &server,
        "s",
        (0..5)
            .map(|i| json!({"partition_key": "k", "data": i}))
            .collect(),
    )
    .await;
    let got = poll(&server, "s", "g", "m", 3).await;
    assert_eq!(got.len(), 3);
    assert_eq!(
        checkpoint(&server, "s", "g", "m", &got[2]).await,
        StatusCode::OK
    );

    server.restart().await;

    let placed = put_records(&server, "s", vec![json!({"partition_key": "k", "data": 5})]).await;
    assert_eq!(placed[0].1, 6, "sequence numbers continue after a restart");
    let got = poll(&server, "s", "g", "m", 10).await;
    let data: Vec<i64> = got.iter().map(|r| r["data"].as_i64().unwrap()).collect();
    assert_eq!(data, [3, 4, 5], "the group resumes after its checkpoint");
}
