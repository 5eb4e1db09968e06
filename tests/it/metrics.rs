//! `/metrics` as Prometheus reads it: the page is parsed by the Prometheus Python client's
//! parser, and the per-resource samples are checked against what the test did to each
//! topic, subscription, queue, stream, group and function.

use crate::guests;
use crate::harness::{TestServer, eventually, python_tool, spawn_server};
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Every sample of `/metrics`, by name and labels (`name{a="x",b="y"}`, labels sorted).
fn scrape(server: &TestServer) -> BTreeMap<String, f64> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/observe/prometheus_parse.py");
    let out = Command::new(python_tool("python"))
        .arg(&script)
        .arg(server.url(""))
        .output()
        .expect("the test venv's python runs");
    assert!(
        out.status.success(),
        "the Prometheus parser refused /metrics: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let s: Value = serde_json::from_str(line).unwrap();
            let labels: BTreeMap<&str, &str> = s["labels"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
                .collect();
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            let key = format!("{}{{{}}}", s["name"].as_str().unwrap(), labels.join(","));
            (key, s["value"].as_f64().unwrap())
        })
        .collect()
}

/// The sample `key`, which must be on the page.
fn sample(samples: &BTreeMap<String, f64>, key: &str) -> f64 {
    *samples
        .get(key)
        .unwrap_or_else(|| panic!("/metrics has no {key}; it has {:#?}", samples.keys()))
}

async fn receive(server: &TestServer, queue: &str, max: u32) -> Vec<String> {
    let v = server
        .ok(
            Method::POST,
            &format!("/v1/queues/{queue}/receive"),
            json!({"max_messages": max}),
        )
        .await;
    v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["receipt"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn every_resource_has_its_samples_and_they_count_what_happened() {
    let server = spawn_server(None).await;
    for (queue, spec) in [
        ("jobs-dead", json!({})),
        (
            "jobs",
            json!({"redrive_policy": {"dead_letter_queue": "jobs-dead", "max_receive_count": 1}}),
        ),
        ("failed", json!({})),
    ] {
        server
            .ok(Method::PUT, &format!("/v1/queues/{queue}"), spec)
            .await;
    }
    server
        .ok(
            Method::PUT,
            "/v1/topics/orders",
            json!({"schema": {"type": "object", "required": ["order_id"]}}),
        )
        .await;
    for (function, guest) in [("ok", "noop"), ("broken", "trap")] {
        let module = guests::path(guest).to_string_lossy().into_owned();
        server
            .ok(
                Method::PUT,
                &format!("/v1/functions/{function}"),
                json!({"module": module}),
            )
            .await;
    }
    for (sub, endpoint, extra) in [
        ("to-jobs", json!({"queue": "jobs"}), json!({})),
        ("to-ok", json!({"function": "ok"}), json!({})),
        (
            "to-broken",
            json!({"function": "broken"}),
            json!({"delivery_policy": {"num_retries": 0}, "dead_letter_queue": "failed"}),
        ),
    ] {
        let mut spec = json!({"endpoint": endpoint});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        server
            .ok(
                Method::PUT,
                &format!("/v1/topics/orders/subscriptions/{sub}"),
                spec,
            )
            .await;
    }
    server
        .ok(Method::PUT, "/v1/streams/clicks", json!({"shards": 2}))
        .await;
    server
        .ok(Method::PUT, "/v1/streams/clicks/groups/g", json!({}))
        .await;

    for i in 0..3 {
        server
            .ok(
                Method::POST,
                "/v1/topics/orders/publish",
                json!({"message": {"order_id": format!("o-{i}")}}),
            )
            .await;
    }
    let (status, _) = server
        .json(
            Method::POST,
            "/v1/topics/orders/publish",
            json!({"message": {"total": 5}}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::UNPROCESSABLE_ENTITY);
    server
        .ok(
            Method::POST,
            "/v1/streams/clicks/records",
            json!({"records": [
                {"partition_key": "a", "data": 1},
                {"partition_key": "b", "data": 2},
                {"partition_key": "c", "data": 3},
                {"partition_key": "d", "data": 4},
            ]}),
        )
        .await;

    // One message received, made visible again and received a second time: past the
    // queue's receive limit, it moves to the dead-letter queue; the other two are handed
    // out, and one of them acknowledged.
    let first = receive(&server, "jobs", 1).await;
    server
        .ok(
            Method::POST,
            "/v1/queues/jobs/visibility",
            json!({"receipt": first[0], "timeout_s": 0}),
        )
        .await;
    let rest = receive(&server, "jobs", 10).await;
    assert_eq!(rest.len(), 2);
    server
        .ok(
            Method::POST,
            "/v1/queues/jobs/ack",
            json!({"receipts": [rest[0]]}),
        )
        .await;

    // The function deliveries run in the background.
    let s = eventually(
        Duration::from_secs(30),
        "both function deliveries",
        || async {
            let s = scrape(&server);
            let done = |sub: &str, what: &str| {
                s.get(&format!(
                "switchyard_subscription_{what}_total{{subscription=\"{sub}\",topic=\"orders\"}}"
            ))
            .copied()
            };
            (done("to-ok", "delivered")? == 3.0 && done("to-broken", "dead_lettered")? == 3.0)
                .then_some(s)
        },
    )
    .await;

    let topic = "{topic=\"orders\"}";
    assert_eq!(
        sample(&s, &format!("switchyard_topic_published_total{topic}")),
        3.0
    );
    assert_eq!(
        sample(&s, &format!("switchyard_topic_matched_total{topic}")),
        9.0
    );
    assert_eq!(
        sample(
            &s,
            &format!("switchyard_topic_schema_rejected_total{topic}")
        ),
        1.0
    );
    assert_eq!(
        sample(&s, &format!("switchyard_publish_seconds_count{topic}")),
        3.0
    );
    assert_eq!(
        sample(
            &s,
            "switchyard_publish_seconds_bucket{le=\"+Inf\",topic=\"orders\"}"
        ),
        3.0
    );

    let sub = |name: &str, sub: &str| {
        sample(
            &s,
            &format!(
                "switchyard_subscription_{name}_total{{subscription=\"{sub}\",topic=\"orders\"}}"
            ),
        )
    };
    assert_eq!(sub("delivered", "to-jobs"), 3.0);
    assert_eq!(sub("delivered", "to-ok"), 3.0);
    assert_eq!(sub("failed", "to-ok"), 0.0);
    assert_eq!(sub("delivered", "to-broken"), 0.0);
    assert_eq!(sub("failed", "to-broken"), 3.0);
    assert_eq!(sub("dead_lettered", "to-broken"), 3.0);
    assert_eq!(sub("dropped", "to-broken"), 0.0);
    assert_eq!(
        sample(
            &s,
            "switchyard_delivery_seconds_count{subscription=\"to-ok\",topic=\"orders\"}"
        ),
        3.0
    );

    let queue = |name: &str, queue: &str| sample(&s, &format!("{name}{{queue=\"{queue}\"}}"));
    assert_eq!(queue("switchyard_queue_sent_total", "jobs"), 3.0);
    assert_eq!(queue("switchyard_queue_received_total", "jobs"), 3.0);
    assert_eq!(queue("switchyard_queue_acked_total", "jobs"), 1.0);
    assert_eq!(queue("switchyard_queue_dead_lettered_total", "jobs"), 1.0);
    assert_eq!(queue("switchyard_queue_sent_total", "jobs-dead"), 1.0);
    assert_eq!(queue("switchyard_queue_sent_total", "failed"), 3.0);
    let depth = |queue: &str, state: &str| {
        sample(
            &s,
            &format!("switchyard_queue_messages{{queue=\"{queue}\",state=\"{state}\"}}"),
        )
    };
    assert_eq!(depth("jobs", "visible"), 0.0);
    assert_eq!(depth("jobs", "in_flight"), 1.0);
    assert_eq!(depth("jobs-dead", "visible"), 1.0);
    assert_eq!(depth("failed", "visible"), 3.0);
    assert!(queue("switchyard_queue_oldest_message_age_seconds", "jobs") >= 0.0);
    assert!(
        queue("switchyard_queue_oldest_message_age_seconds", "jobs-dead") > 0.0,
        "a message waits in jobs-dead"
    );

    assert_eq!(
        sample(&s, "switchyard_stream_records_put_total{stream=\"clicks\"}"),
        4.0
    );
    let lag: f64 = s
        .iter()
        .filter(|(k, _)| {
            k.starts_with("switchyard_stream_group_lag_records{group=\"g\",")
                && k.contains("stream=\"clicks\"")
        })
        .map(|(_, v)| v)
        .sum();
    assert_eq!(lag, 4.0, "nothing of the stream is checkpointed yet");
    assert_eq!(
        sample(
            &s,
            "switchyard_stream_group_leases{group=\"g\",stream=\"clicks\"}"
        ),
        0.0
    );

    let function = |name: &str, f: &str| sample(&s, &format!("{name}{{function=\"{f}\"}}"));
    assert_eq!(function("switchyard_function_invocations_total", "ok"), 3.0);
    assert_eq!(
        function("switchyard_function_invocations_total", "broken"),
        3.0
    );
    assert_eq!(
        sample(
            &s,
            "switchyard_function_errors_total{function=\"broken\",kind=\"trap\"}"
        ),
        3.0
    );
    assert!(!s.contains_key("switchyard_function_errors_total{function=\"ok\",kind=\"trap\"}"));
    assert_eq!(
        function("switchyard_function_duration_seconds_count", "ok"),
        3.0
    );
    assert_eq!(function("switchyard_function_concurrency", "ok"), 0.0);

    assert!(sample(&s, "switchyard_storage_log_syncs_total{}") > 0.0);
    assert!(sample(&s, "switchyard_storage_log_bytes_total{}") > 0.0);
    assert!(sample(&s, "switchyard_storage_disk_free_bytes{}") > 0.0);

    // A deleted resource leaves the page.
    server
        .ok(Method::DELETE, "/v1/queues/jobs-dead", Value::Null)
        .await;
    let s = scrape(&server);
    assert!(
        !s.keys().any(|k| k.contains("queue=\"jobs-dead\"")),
        "a deleted queue still has samples"
    );
}
