//! The server's token, route by route: every documented `/v1` operation (and `/metrics`
//! with `--token-metrics`) refuses a caller without it or with another, and takes one
//! with it; the routes a load balancer or a scraper calls stay open.

use super::{TestApi, documented_operations};
use crate::api::{AppState, app};
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;

const TOKEN: &str = "s3cret-token";

/// The status and problem type of `method uri` sent with `authorization`.
async fn call(
    routes: &axum::Router,
    method: &Method,
    uri: &str,
    authorization: Option<&str>,
) -> (StatusCode, String) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(a) = authorization {
        req = req.header(header::AUTHORIZATION, a);
    }
    let res = routes
        .clone()
        .oneshot(req.body(Body::from("{}")).unwrap())
        .await
        .unwrap();
    let status = res.status();
    // A topic's live tail never ends: its status is the answer.
    if res.headers()[header::CONTENT_TYPE] == "text/event-stream" {
        return (status, String::new());
    }
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let kind = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["type"].as_str().map(str::to_string))
        .unwrap_or_default();
    (status, kind)
}

#[tokio::test]
async fn with_a_token_every_v1_operation_and_the_metrics_need_it() {
    let api = TestApi::new().await;
    let routes = app(AppState::new(api.app.clone(), Some(TOKEN.into()), true));
    let bearer = format!("Bearer {TOKEN}");
    let operations = documented_operations();
    assert!(
        operations.len() > 30,
        "only {} operations",
        operations.len()
    );
    for (method, path, uri) in &operations {
        let guarded = path.starts_with("/v1/") || path == "/metrics";
        for wrong in [
            None,
            Some("Bearer s3cret-toke"),
            Some("Basic czNjcmV0LXRva2Vu"),
        ] {
            let (status, kind) = call(&routes, method, uri, wrong).await;
            if guarded {
                assert_eq!(
                    status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {uri} with {wrong:?}"
                );
                assert_eq!(kind, "/problems/unauthorized", "{method} {uri}");
            } else {
                assert_ne!(status, StatusCode::UNAUTHORIZED, "{method} {uri} is open");
            }
        }
        let (status, _) = call(&routes, method, uri, Some(&bearer)).await;
        assert_ne!(
            status,
            StatusCode::UNAUTHORIZED,
            "{method} {uri} with the token"
        );
    }
}

#[tokio::test]
async fn without_token_metrics_the_metrics_stay_open() {
    let api = TestApi::new().await;
    let routes = app(AppState::new(api.app.clone(), Some(TOKEN.into()), false));
    let (status, _) = call(&routes, &Method::GET, "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(&routes, &Method::GET, "/v1/topics", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[test]
fn secrets_compare_equal_only_when_equal() {
    assert!(crate::same_secret(b"s3cret", b"s3cret"));
    for other in [&b""[..], b"s3cre", b"s3cret ", b"S3cret", b"s3crex"] {
        assert!(!crate::same_secret(other, b"s3cret"), "{other:?}");
    }
}
