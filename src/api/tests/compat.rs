//! A data directory written by an earlier build opens with this one and holds what it
//! held: resources with their settings, messages, records, checkpoints and sequence
//! numbers. The archive is made by `tests/fixtures/make-embedded-data.sh`.

use super::TestApi;
use axum::http::Method;
use serde_json::{Value, json};
use std::path::Path;

/// When the archive was written (unix ms): its clock starts a minute later, well inside
/// every retention period.
const WRITTEN_AT_MS: u64 = 1_796_558_285_614;

async fn open_v1() -> TestApi {
    let archive =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/embedded-data-v1.tar.gz");
    TestApi::on_archive(&archive, WRITTEN_AT_MS + 60_000).await
}

async fn receive_all(api: &TestApi, queue: &str) -> Vec<Value> {
    let got = api
        .ok(
            Method::POST,
            &format!("/v1/queues/{queue}/receive"),
            json!({"max_messages": 10}),
        )
        .await;
    got["messages"].as_array().expect("messages").clone()
}

#[tokio::test]
async fn resources_keep_their_settings() {
    let api = open_v1().await;
    let topics = api.ok(Method::GET, "/v1/topics", Value::Null).await;
    assert_eq!(topics["topics"], json!(["orders"]));
    let sub = api
        .ok(
            Method::GET,
            "/v1/topics/orders/subscriptions/billing",
            Value::Null,
        )
        .await;
    assert_eq!(sub["endpoint"], json!({"queue": "billing"}));
    assert_eq!(sub["filter_policy"], json!({"kind": ["order"]}));
    let billing = api.ok(Method::GET, "/v1/queues/billing", Value::Null).await;
    assert_eq!(billing["visibility_timeout_s"], 45);
    assert_eq!(
        billing["redrive_policy"],
        json!({"dead_letter_queue": "billing-dlq", "max_receive_count": 3})
    );
    let audit = api
        .ok(Method::GET, "/v1/queues/audit.fifo", Value::Null)
        .await;
    assert_eq!(audit["fifo"], true);
    let clicks = api.ok(Method::GET, "/v1/streams/clicks", Value::Null).await;
    assert_eq!(clicks["shards"], 2);
}

#[tokio::test]
async fn messages_come_back_in_order() {
    let api = open_v1().await;
    let billing = receive_all(&api, "billing").await;
    let ids: Vec<&Value> = billing
        .iter()
        .map(|m| &m["message"]["message"]["id"])
        .collect();
    assert_eq!(ids, [&json!(1), &json!(3)], "{billing:?}");

    let audit = receive_all(&api, "audit.fifo").await;
    let bodies: Vec<&Value> = audit.iter().map(|m| &m["message"]).collect();
    assert_eq!(bodies, [&json!("first"), &json!("second")]);
}

#[tokio::test]
async fn records_checkpoints_and_sequences_carry_on() {
    let api = open_v1().await;
    let group = api
        .ok(
            Method::GET,
            "/v1/streams/clicks/groups/readers",
            Value::Null,
        )
        .await;
    assert_eq!(
        group["shards"],
        json!([
            {"shard_id": "shard-0000", "member": null, "checkpoint": "3"},
            {"shard_id": "shard-0001", "member": null, "checkpoint": "1"},
        ])
    );
    let page = api
        .ok(
            Method::GET,
            "/v1/streams/clicks/shards/shard-0000/records?from=trim_horizon",
            Value::Null,
        )
        .await;
    let data: Vec<&Value> = page["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["data"])
        .collect();
    assert_eq!(data, [&json!(1), &json!(3), &json!(4)]);
    let put = api
        .ok(
            Method::POST,
            "/v1/streams/clicks/records",
            json!({"records": [{"partition_key": "a", "data": 5}]}),
        )
        .await;
    assert_eq!(put["records"][0]["shard_id"], "shard-0000");
    assert_eq!(put["records"][0]["sequence"], "4", "{put}");
}
