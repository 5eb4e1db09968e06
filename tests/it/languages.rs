//! Handlers in Python and JavaScript end to end through the real server: the fraud
//! example of each language, built from `guests/python` and `guests/js` with
//! componentize-py and componentize-js, subscribed to a topic and publishing downstream,
//! and consuming a queue in batches whose failed items it reports; and the projects
//! `switchyard new` makes, built with the command their README gives, in each language.

use crate::guests;
use crate::harness::{TestServer, eventually, spawn_server};
use reqwest::Method;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::Duration;

/// A first compile of an interpreter's component takes tens of seconds on a busy machine.
const WITHIN: Duration = Duration::from_secs(180);

async fn fraud_subscribes_publishes_and_reports_batch_failures(module: PathBuf) {
    let server = spawn_server(None).await;
    for (path, body) in [
        ("/v1/queues/flagged", json!({})),
        ("/v1/queues/orders-dlq", json!({})),
        (
            "/v1/queues/orders-q",
            json!({"visibility_timeout_s": 1,
                   "redrive_policy": {"dead_letter_queue": "orders-dlq", "max_receive_count": 1}}),
        ),
        ("/v1/topics/orders", json!({})),
        ("/v1/topics/order_flagged", json!({})),
        (
            "/v1/topics/order_flagged/subscriptions/review",
            json!({"endpoint": {"queue": "flagged"}, "raw_message_delivery": true}),
        ),
    ] {
        server.ok(Method::PUT, path, body).await;
    }
    server
        .ok(
            Method::PUT,
            "/v1/functions/fraud",
            json!({"module": module, "env": {"max_total": "100", "blocked_countries": "XX"},
                   "timeout_ms": 10000,
                   "sources": [{"queue": "orders-q", "batch_size": 10}]}),
        )
        .await;
    server
        .ok(
            Method::PUT,
            "/v1/topics/orders/subscriptions/fraud",
            json!({"endpoint": {"function": "fraud"}}),
        )
        .await;

    // Through a subscription: a suspicious order is flagged downstream.
    server
        .ok(
            Method::POST,
            "/v1/topics/orders/publish",
            json!({"message": {"order_id": "o-1", "total": 500, "country": "NL"}}),
        )
        .await;
    let flagged = received(&server, "flagged", 1).await;
    assert_eq!(
        flagged[0]["message"],
        json!({"order_id": "o-1", "reason": "total 500 is above 100",
               "order": {"order_id": "o-1", "total": 500, "country": "NL"}})
    );
    assert_eq!(
        flagged[0]["attributes"]["reason"]["Value"],
        "total 500 is above 100"
    );

    // As a queue source: one batch, whose item that is no order fails alone.
    for message in [
        json!({"order_id": "o-2", "total": 5, "country": "NL"}),
        json!("not an order"),
        json!({"order_id": "o-3", "total": 5, "country": "XX"}),
    ] {
        server
            .ok(
                Method::POST,
                "/v1/queues/orders-q/messages",
                json!({ "message": message }),
            )
            .await;
    }
    let flagged = received(&server, "flagged", 1).await;
    assert_eq!(flagged[0]["message"]["reason"], "country XX is blocked");
    let dead = received(&server, "orders-dlq", 1).await;
    assert_eq!(dead[0]["message"], "not an order");
    let q = server
        .ok(Method::GET, "/v1/queues/orders-q", Value::Null)
        .await;
    assert_eq!(
        (
            q["approximate_visible"].as_u64(),
            q["approximate_in_flight"].as_u64()
        ),
        (Some(0), Some(0)),
        "the orders that succeeded were acknowledged: {q}"
    );
    let status = server
        .ok(Method::GET, "/v1/functions/fraud", Value::Null)
        .await;
    let source = &status["source_status"][0];
    assert!(source["failed_batches"].as_u64() >= Some(1), "{status}");
}

/// Receives (and acknowledges) from `queue` until `n` messages came.
async fn received(server: &TestServer, queue: &str, n: usize) -> Vec<Value> {
    let got = std::sync::Mutex::new(Vec::new());
    eventually(WITHIN, &format!("{n} messages in {queue}"), || async {
        let v = server
            .ok(
                Method::POST,
                &format!("/v1/queues/{queue}/receive"),
                json!({"max_messages": 10, "wait_s": 1}),
            )
            .await;
        for m in v["messages"].as_array().into_iter().flatten() {
            server
                .ok(
                    Method::POST,
                    &format!("/v1/queues/{queue}/ack"),
                    json!({"receipts": [m["receipt"]]}),
                )
                .await;
            got.lock().unwrap().push(m.clone());
        }
        let got = got.lock().unwrap();
        (got.len() >= n).then(|| got.clone())
    })
    .await
}

#[tokio::test]
async fn a_python_handler_subscribes_publishes_and_reports_batch_failures() {
    fraud_subscribes_publishes_and_reports_batch_failures(guests::python("fraud")).await;
}

#[tokio::test]
async fn a_javascript_handler_subscribes_publishes_and_reports_batch_failures() {
    fraud_subscribes_publishes_and_reports_batch_failures(guests::js("fraud")).await;
}

/// Runs `command`, failing the test with what it printed when it fails.
fn run(command: &mut std::process::Command) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} exited with {}:\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn switchyard_new_makes_a_project_that_builds_and_runs_in_each_language() {
    let root = tempfile::tempdir().unwrap();
    let server = spawn_server(None).await;
    let componentize_py = crate::harness::python_tool("componentize-py");
    for lang in ["rust", "python", "js"] {
        let name = format!("hello-{lang}");
        let dir = root.path().join(&name);
        run(std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["new", &name, "--lang", lang, "--dir"])
            .arg(&dir));
        // The command its README gives, with the tools scripts/test.sh installed.
        let component = match lang {
            "rust" => {
                run(std::process::Command::new(
                    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()),
                )
                .args(["build", "--release", "--target", "wasm32-wasip2"])
                .current_dir(&dir)
                .env_remove("CARGO_TARGET_DIR")
                .env_remove("RUSTFLAGS")
                .env_remove("CARGO_ENCODED_RUSTFLAGS")
                .env_remove("CARGO_BUILD_TARGET"));
                dir.join("target/wasm32-wasip2/release/hello_rust.wasm")
            }
            "python" => {
                run(std::process::Command::new(&componentize_py)
                    .args(["-d", "wit", "-w", "handler", "componentize", "app"])
                    .args(["-o", "handler.wasm"])
                    .current_dir(&dir));
                dir.join("handler.wasm")
            }
            _ => {
                // From the npm cache the suite's own install filled.
                run(std::process::Command::new("npm")
                    .args(["install", "--prefer-offline", "--no-audit", "--no-fund"])
                    .current_dir(&dir)
                    .env("npm_config_loglevel", "error"));
                run(std::process::Command::new("npm")
                    .args(["run", "build"])
                    .current_dir(&dir));
                dir.join("handler.wasm")
            }
        };
        server
            .ok(
                Method::PUT,
                &format!("/v1/functions/{name}"),
                json!({"module": component, "env": {"greeting": "got"}, "timeout_ms": 10000}),
            )
            .await;
        let v = server
            .ok(
                Method::POST,
                &format!("/v1/functions/{name}/invoke"),
                json!({"message": {"hello": "world"}}),
            )
            .await;
        assert_eq!(v["ok"], true, "{lang}: {v}");
        let line = v["logs"][0]["message"].as_str().unwrap_or_default();
        assert!(
            line.starts_with(&format!("{name}: got ")) && line.contains("world"),
            "{lang}: {v}"
        );
    }
}
