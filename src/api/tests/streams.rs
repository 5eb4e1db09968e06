//! Consumer-group leases through the API, on a manual clock: a member keeps its shard
//! while it polls, loses it once the lease timeout passes without a poll, and the member
//! that takes over resumes after the last checkpoint.

use super::TestApi;
use axum::http::Method;
use serde_json::{Value, json};
use std::time::Duration;

const LEASE_TIMEOUT_S: u64 = 10;

/// A one-shard stream `s` holding records 1..=count, and a group `g` reading it.
async fn stream_with_group(api: &TestApi, count: u64) {
    api.ok(Method::PUT, "/v1/streams/s", json!({"shards": 1}))
        .await;
    api.ok(
        Method::PUT,
        "/v1/streams/s/groups/g",
        json!({"start_position": "trim_horizon", "lease_timeout_s": LEASE_TIMEOUT_S}),
    )
    .await;
    let records: Vec<Value> = (1..=count)
        .map(|n| json!({"partition_key": "k", "data": n}))
        .collect();
    api.ok(
        Method::POST,
        "/v1/streams/s/records",
        json!({ "records": records }),
    )
    .await;
}

/// What `member` got from one poll that does not wait: each record's data.
async fn poll(api: &TestApi, member: &str, max_records: u64) -> Vec<Value> {
    let page = api
        .ok(
            Method::POST,
            "/v1/streams/s/groups/g/poll",
            json!({"member": member, "max_records": max_records}),
        )
        .await;
    page["records"]
        .as_array()
        .expect("a poll answers with `records`")
        .iter()
        .map(|r| r["data"].clone())
        .collect()
}

async fn holder(api: &TestApi) -> Value {
    let info = api
        .ok(Method::GET, "/v1/streams/s/groups/g", Value::Null)
        .await;
    info["shards"][0]["member"].clone()
}

#[tokio::test]
async fn a_shard_stays_with_its_member_until_the_lease_lapses() {
    let api = TestApi::new().await;
    stream_with_group(&api, 3).await;
    assert_eq!(poll(&api, "a", 2).await, [json!(1), json!(2)]);
    api.ok(
        Method::POST,
        "/v1/streams/s/groups/g/checkpoint",
        json!({"member": "a", "shard_id": "shard-0000", "sequence": 2}),
    )
    .await;

    api.clock.advance(Duration::from_secs(LEASE_TIMEOUT_S - 1));
    assert!(poll(&api, "b", 10).await.is_empty(), "a's lease is live");
    assert_eq!(holder(&api).await, "a");

    api.clock.advance(Duration::from_secs(1));
    assert_eq!(
        poll(&api, "b", 10).await,
        [json!(3)],
        "b takes the lapsed shard and resumes after a's checkpoint"
    );
    assert_eq!(holder(&api).await, "b");
}

#[tokio::test]
async fn polling_renews_a_lease() {
    let api = TestApi::new().await;
    stream_with_group(&api, 1).await;
    assert_eq!(poll(&api, "a", 10).await, [json!(1)]);
    for round in 1..=3 {
        api.clock.advance(Duration::from_secs(LEASE_TIMEOUT_S - 1));
        poll(&api, "a", 10).await;
        assert!(poll(&api, "b", 10).await.is_empty(), "round {round}");
        assert_eq!(holder(&api).await, "a", "round {round}");
    }
}

#[tokio::test]
async fn a_checkpoint_without_the_lease_is_a_conflict() {
    let api = TestApi::new().await;
    stream_with_group(&api, 1).await;
    poll(&api, "a", 10).await;
    let refused = api
        .call(
            Method::POST,
            "/v1/streams/s/groups/g/checkpoint",
            json!({"member": "b", "shard_id": "shard-0000", "sequence": 1}),
        )
        .await;
    assert_eq!(refused.status, 409, "{:?}", refused.body);
}
