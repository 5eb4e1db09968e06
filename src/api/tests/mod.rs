//! The HTTP API in-process: [`app`] over an embedded store in a temporary directory,
//! driven with `oneshot`, no socket and no server process. The store follows a manual
//! clock, so timeouts, delays and retention are tested by advancing it, not by waiting.
//!
//! This file holds the harness and the tests of the API as a whole; the others follow the
//! resources.

mod auth;
mod aws;
mod compat;
mod functions;
mod queues;
mod ssrf;
mod streams;
mod tail;
mod topics;

use super::{AppState, app, openapi};
use crate::app::{App, AppOptions};
use crate::backend::Backend;
use crate::backend::Embedded;
use crate::time::Clock;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::Value;
use std::sync::Arc;
use tower::ServiceExt;

/// Where the manual clock starts: 2026-01-01T00:00:00Z.
const START_MS: u64 = 1_767_225_600_000;

/// One router over a fresh embedded store.
pub(crate) struct TestApi {
    pub routes: axum::Router,
    pub app: Arc<App>,
    /// The store's clock; [`Clock::advance`] moves it.
    pub clock: Clock,
    _dir: tempfile::TempDir,
}

/// A response with its body read.
pub(crate) struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Value,
}

impl TestApi {
    pub async fn new() -> Self {
        Self::with_token(None).await
    }

    pub async fn with_token(token: Option<&str>) -> Self {
        Self::with_options(token, AppOptions::default()).await
    }

    pub async fn with_options(token: Option<&str>, options: AppOptions) -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::open(dir, Clock::manual(START_MS), token, options).await
    }

    /// One router over the embedded data directory packed in `archive` (a `.tar.gz` of
    /// its contents), its clock at `now_ms`.
    pub async fn on_archive(archive: &std::path::Path, now_ms: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("tar")
            .arg("-xzf")
            .arg(archive)
            .arg("-C")
            .arg(dir.path())
            .status()
            .expect("run tar");
        assert!(status.success(), "unpacking {} failed", archive.display());
        Self::open(dir, Clock::manual(now_ms), None, AppOptions::default()).await
    }

    async fn open(
        dir: tempfile::TempDir,
        clock: Clock,
        token: Option<&str>,
        options: AppOptions,
    ) -> Self {
        let backend = Arc::new(Backend::Embedded(
            Embedded::open_with_clock(dir.path(), clock.clone()).unwrap(),
        ));
        let app = Arc::new(App::open(backend, options).unwrap());
        app.start().await.unwrap();
        let routes = app_routes(&app, token);
        Self {
            routes,
            app,
            clock,
            _dir: dir,
        }
    }

    /// Sends `body` (JSON unless `Value::Null`) and reads the answer.
    pub async fn call(&self, method: Method, path: &str, body: Value) -> Answer {
        let mut req = Request::builder().method(method).uri(path);
        let body = if body.is_null() {
            Body::empty()
        } else {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(body.to_string())
        };
        self.send(req.body(body).unwrap()).await
    }

    /// A receive that does not wait: the messages it took.
    pub async fn receive(&self, queue: &str) -> Vec<Value> {
        let body = self
            .ok(
                Method::POST,
                &format!("/v1/queues/{queue}/receive"),
                serde_json::json!({"max_messages": 10, "wait_s": 0}),
            )
            .await;
        body["messages"]
            .as_array()
            .expect("a receive answers with `messages`")
            .clone()
    }

    /// Calls that must succeed: the answer's body.
    pub async fn ok(&self, method: Method, path: &str, body: Value) -> Value {
        let answer = self.call(method.clone(), path, body).await;
        assert!(
            answer.status.is_success(),
            "{method} {path}: {} {}",
            answer.status,
            answer.body
        );
        answer.body
    }

    pub async fn send(&self, req: Request<Body>) -> Answer {
        let res = self.routes.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let content_type = res
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        // A topic's live tail never ends: its status is the answer.
        if content_type == "text/event-stream" {
            return Answer {
                status,
                content_type,
                body: Value::Null,
            };
        }
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Answer {
            status,
            content_type,
            body,
        }
    }
}

impl Drop for TestApi {
    fn drop(&mut self) {
        self.app.shutdown.cancel();
    }
}

fn app_routes(ops: &Arc<App>, token: Option<&str>) -> axum::Router {
    app(AppState::new(ops.clone(), token.map(str::to_string), false))
}

/// A value for a path parameter that its pattern accepts.
fn sample_param(name: &str) -> &'static str {
    if name == "shard" { "shard-0000" } else { "x" }
}

/// Every documented operation: its method, its documented path, and that path with its
/// parameters filled in.
fn documented_operations() -> Vec<(Method, String, String)> {
    let doc = openapi();
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            let mut uri = path.clone();
            while let Some(open) = uri.find('{') {
                let close = open + uri[open..].find('}').unwrap();
                let value = sample_param(&uri[open + 1..close]);
                uri.replace_range(open..=close, value);
            }
            out.push((method, path.clone(), uri));
        }
    }
    out
}

/// Every documented operation is a route: called with its path parameters filled in, it
/// never reaches the unknown-route or wrong-method answer. Together with the document
/// being generated from the routes, the document and the routes cannot drift apart.
#[tokio::test]
async fn every_documented_operation_is_routed() {
    let api = TestApi::new().await;
    let operations = documented_operations();
    assert!(
        operations.len() > 30,
        "only {} operations documented",
        operations.len()
    );
    for (method, path, uri) in operations {
        let answer = api.call(method.clone(), &uri, Value::Null).await;
        let kind = answer.body["type"].as_str().unwrap_or_default();
        assert!(
            !kind.ends_with("/no-such-route") && !kind.ends_with("/method-not-allowed"),
            "{method} {uri} (documented as {path}) is not routed: {}",
            answer.body
        );
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_problems() {
    let api = TestApi::new().await;
    let answer = api.call(Method::GET, "/v1/nothing-here", Value::Null).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.content_type, "application/problem+json");
    assert!(
        answer.body["type"]
            .as_str()
            .unwrap()
            .ends_with("/no-such-route")
    );
    let answer = api.call(Method::PATCH, "/v1/topics", Value::Null).await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(
        answer.body["type"]
            .as_str()
            .unwrap()
            .ends_with("/method-not-allowed")
    );
}

/// The served document is OpenAPI 3.1, every `$ref` resolves, and every `/v1` operation
/// documents its errors as problems and the bearer token it may need.
#[tokio::test]
async fn openapi_document_is_served_and_consistent() {
    let api = TestApi::new().await;
    let answer = api.call(Method::GET, "/openapi.json", Value::Null).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.content_type.starts_with("application/json"));
    let doc = answer.body;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
    assert_eq!(doc["info"]["title"], "Switchyard");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in &refs {
        let pointer = r.strip_prefix('#').expect("local $ref");
        assert!(doc.pointer(pointer).is_some(), "$ref {r} does not resolve");
    }
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{method} {path} documents no success"
            );
            if !path.starts_with("/v1/") {
                continue;
            }
            for status in ["4XX", "5XX"] {
                let problem =
                    &responses[status]["content"]["application/problem+json"]["schema"]["$ref"];
                assert_eq!(
                    problem, "#/components/schemas/Problem",
                    "{method} {path} {status}"
                );
            }
            assert!(
                op["security"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some())),
                "{method} {path} does not document the bearer token"
            );
        }
    }
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|x| collect_refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

#[tokio::test]
async fn a_token_guards_v1_but_not_health() {
    let api = TestApi::with_token(Some("s3cret")).await;
    let answer = api.call(Method::GET, "/v1/topics", Value::Null).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(answer.content_type, "application/problem+json");
    let answer = api.call(Method::GET, "/healthz", Value::Null).await;
    assert_eq!(answer.status, StatusCode::OK);
    let req = Request::get("/v1/topics")
        .header(header::AUTHORIZATION, "Bearer s3cret")
        .body(Body::empty())
        .unwrap();
    assert_eq!(api.send(req).await.status, StatusCode::OK);
}
