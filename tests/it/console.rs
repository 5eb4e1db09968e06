//! The web console in a real browser: `tests/ui/console.py` drives Debian's Chromium
//! through Playwright against a server holding a topic, a queue, a subscription and a
//! function, and with `--token` through the login. Screenshots of each page are kept in
//! `target/console-screenshots/` for a look after the run.

use crate::guests;
use crate::harness::{TestServer, python_tool, spawn_server, spawn_server_with_args};
use reqwest::Method;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

async fn resources(server: &TestServer) {
    server
        .ok(Method::PUT, "/v1/queues/orders-audit", json!({}))
        .await;
    server.ok(Method::PUT, "/v1/topics/orders", json!({})).await;
    server
        .ok(Method::PUT, "/v1/topics/order_flagged", json!({}))
        .await;
    server
        .ok(
            Method::PUT,
            "/v1/topics/orders/subscriptions/audit",
            json!({"endpoint": {"queue": "orders-audit"}, "filter_policy": {"kind": ["order"]}}),
        )
        .await;
    server
        .ok(
            Method::PUT,
            "/v1/functions/fraud",
            json!({"module": guests::path("fraud"), "env": {"max_total": "500"}}),
        )
        .await;
}

fn screenshots(run: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/console-screenshots")
        .join(run)
}

/// Runs the browser script; panics with its output when a step fails.
fn drive(server: &TestServer, run: &str, token: Option<&str>) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/console.py");
    let mut command = Command::new(python_tool("python"));
    command
        .arg(&script)
        .arg(server.url(""))
        .arg(screenshots(run));
    command.args(token);
    let out = command.output().expect("the test venv's python runs");
    assert!(
        out.status.success(),
        "the console did not do what it should:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_console_shows_the_topology_tails_publishes_invokes_and_tests_policies() {
    let server = spawn_server(None).await;
    resources(&server).await;
    drive(&server, "open", None);
}

#[tokio::test]
async fn with_a_token_the_console_asks_for_it_and_keeps_it_in_the_tab() {
    let server = spawn_server_with_args(None, &["--token", "console-secret"]).await;
    // The harness's requests carry no token; the typed client's do.
    let client = switchyard::client::Client::new(&server.url(""))
        .unwrap()
        .with_token("console-secret");
    client
        .put_topic("orders", &Default::default())
        .await
        .unwrap();
    drive(&server, "token", Some("console-secret"));
}
