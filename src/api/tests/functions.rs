//! Functions' settings through the API: what a put refuses, and why.

use super::TestApi;
use axum::http::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn a_functions_asynchronous_settings_are_refused_field_by_field() {
    let api = TestApi::new().await;
    api.ok(Method::PUT, "/v1/queues/failed", json!({})).await;
    let answer = api
        .call(
            Method::PUT,
            "/v1/functions/f",
            json!({
                "module": "missing.wasm",
                "asynchronous": {
                    "max_retries": 3,
                    "max_event_age_s": 59,
                    "on_success": {"topic": "no such topic"},
                    "on_failure": {"queue": "missing"},
                },
            }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    let detail = answer.body["detail"].as_str().unwrap();
    for named in [
        "asynchronous.max_retries: must be between 0 and 2, got 3",
        "asynchronous.max_event_age_s: must be between 60 and 21600, got 59",
        "asynchronous.on_success.topic",
        "asynchronous.on_failure: queue \"missing\" does not exist",
    ] {
        assert!(detail.contains(named), "{named:?} not in {detail:?}");
    }
    // A destination that exists is not refused.
    let answer = api
        .call(
            Method::PUT,
            "/v1/functions/f",
            json!({"module": "missing.wasm", "asynchronous": {"on_failure": {"queue": "failed"}}}),
        )
        .await;
    let detail = answer.body["detail"].as_str().unwrap();
    assert!(!detail.contains("asynchronous"), "{detail}");
}
