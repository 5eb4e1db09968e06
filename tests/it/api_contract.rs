//! The served `/openapi.json` against the server that serves it: schemathesis generates
//! requests from the document (valid ones, which must be accepted, and invalid ones,
//! which must be refused with a 4xx), follows the links from each resource's `PUT` to
//! the operations under it, and checks every answer against the documented status and
//! schema. `tests/schemathesis.toml` lists the few rules the schemas cannot state.

use crate::harness::{TestServer, python_tool, spawn_server};
use reqwest::Method;
use serde_json::json;
use std::path::Path;
use std::time::Duration;

/// Generated requests per operation: enough to cover every member and bound of every
/// schema within a couple of minutes on CI.
const EXAMPLES_PER_OPERATION: &str = "50";

/// Longest the whole run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(900);

#[tokio::test(flavor = "multi_thread")]
async fn the_api_answers_as_its_openapi_document_says() {
    let schemathesis = python_tool("schemathesis");
    let server = spawn_server(None).await;
    seed(&server).await;
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis.toml");
    let reports = tempfile::tempdir().unwrap();
    let run = tokio::process::Command::new(schemathesis)
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(server.url("/openapi.json"))
        .args(["--checks", "all", "--no-color"])
        .args(["--max-examples", EXAMPLES_PER_OPERATION])
        // Fixed, so a run that fails fails again the same way; change it to explore.
        .args(["--seed", "20261206"])
        .arg("--report-dir")
        .arg(reports.path())
        // Its caches and reports stay out of the source tree.
        .current_dir(reports.path())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(RUN_TIMEOUT, run)
        .await
        .expect("schemathesis finishes within its time")
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found answers that differ from the document:\n{stdout}\n{}\n\
         server log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log_tail()
    );
    // A run that tested nothing would also succeed: every documented operation counts.
    let doc: serde_json::Value = reqwest::get(server.url("/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Schemathesis leaves out the document it was given, and the configuration the
    // live tail, whose answer never ends.
    let operations: usize = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(path, _)| !matches!(path.as_str(), "/openapi.json" | "/v1/topics/{topic}/tail"))
        .map(|(_, item)| item.as_object().unwrap().len())
        .sum();
    let tested = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("Tested: "))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .expect("schemathesis reports how many operations it tested");
    assert_eq!(
        tested, operations,
        "not every operation was tested:\n{stdout}"
    );
}

/// The resources `tests/schemathesis.toml` names, with messages and records in them.
async fn seed(server: &TestServer) {
    let puts = [
        ("/v1/queues/audit", json!({})),
        ("/v1/queues/spare", json!({})),
        ("/v1/topics/orders", json!({})),
        ("/v1/topics/spare", json!({})),
        (
            "/v1/topics/orders/subscriptions/to-audit",
            json!({"endpoint": {"queue": "audit"}}),
        ),
        (
            "/v1/topics/spare/subscriptions/to-audit",
            json!({"endpoint": {"queue": "spare"}}),
        ),
        ("/v1/streams/clicks", json!({"shards": 2})),
        ("/v1/streams/clicks/groups/readers", json!({})),
    ];
    for (path, body) in puts {
        server.ok(Method::PUT, path, body).await;
    }
    // Enough that receives with long visibility timeouts do not empty the queue.
    for batch in 0..5 {
        let entries: Vec<_> = (0..100)
            .map(|i| json!({"message": {"order": batch * 100 + i}, "attributes": {"kind": "created"}}))
            .collect();
        server
            .ok(
                Method::POST,
                "/v1/topics/orders/publish-batch",
                json!({ "entries": entries }),
            )
            .await;
    }
    let records: Vec<_> = (0..100)
        .map(|i| json!({"partition_key": format!("user-{i}"), "data": {"click": i}}))
        .collect();
    server
        .ok(
            Method::POST,
            "/v1/streams/clicks/records",
            json!({ "records": records }),
        )
        .await;
}
