//! `--token` from outside the process: refused and accepted over HTTP, sent by the CLI
//! from its `--token` flag or `SWITCHYARD_TOKEN`, on `/metrics` with `--token-metrics`,
//! which needs a token to guard with.

use crate::harness::{run_expecting_exit, spawn_server_with_args};
use reqwest::StatusCode;

const TOKEN: &str = "s3cret-token";

#[tokio::test]
async fn the_token_is_needed_over_http_and_the_cli_sends_it_from_its_flag_or_environment() {
    let s = spawn_server_with_args(None, &["--token", TOKEN, "--token-metrics"]).await;
    let get = |path: &str, token: Option<&str>| {
        let mut req = s.http.get(s.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move { req.send().await.unwrap() }
    };
    for path in ["/v1/topics", "/metrics"] {
        for wrong in [None, Some("s3cret-tokem")] {
            let r = get(path, wrong).await;
            assert_eq!(
                r.status(),
                StatusCode::UNAUTHORIZED,
                "{path} with {wrong:?}"
            );
            let problem: serde_json::Value = r.json().await.unwrap();
            assert!(
                problem["detail"].as_str().unwrap().contains("Bearer TOKEN"),
                "{problem}"
            );
        }
        assert_eq!(
            get(path, Some(TOKEN)).await.status(),
            StatusCode::OK,
            "{path}"
        );
    }
    assert_eq!(get("/healthz", None).await.status(), StatusCode::OK);

    let create = s
        .http
        .put(s.url("/v1/topics/orders"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert!(create.status().is_success());
    let publish = ["publish", "orders", "--message", "{\"n\":1}"];
    let refused = s.cli(&publish, "").await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("401") || stderr.contains("Bearer"),
        "{stderr}"
    );
    let with_flag: Vec<&str> = publish.iter().copied().chain(["--token", TOKEN]).collect();
    let out = s.cli(&with_flag, "").await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = s
        .cli_with_env(&publish, "", &[("SWITCHYARD_TOKEN", TOKEN)])
        .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = s
        .cli_with_env(&publish, "", &[("SWITCHYARD_TOKEN", "wrong")])
        .await;
    assert!(!out.status.success());
}

#[tokio::test]
async fn token_metrics_without_a_token_refuses_to_start() {
    let (status, stderr) = run_expecting_exit(None, &["--token-metrics"]).await;
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--token"), "{stderr}");
}
