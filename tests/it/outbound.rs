//! Outbound HTTP from functions: the `http-fetch` guest calling a local service through
//! `wasi:http`, allowed only to the hosts its function names, never to a private address
//! under `--deny-private-endpoints`, never past its deadline or its response size cap.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body as HttpBody;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use switchyard::model::AllowedHosts;
use switchyard::runtime::{
    Body, Event, Function, FunctionLimits, InvokeError, LogSource, MAX_RESPONSE_BYTES, Runtime,
    RuntimeConfig,
};

use crate::guests;

/// A local service: what it was asked, by event id.
#[derive(Clone, Default)]
struct Service {
    asked: Arc<Mutex<Vec<String>>>,
}

impl Service {
    async fn start() -> (Service, u16) {
        let s = Service::default();
        let seen = s.clone();
        let app = axum::Router::new()
            .route(
                "/ok",
                get(move |headers: HeaderMap| async move {
                    let id = headers
                        .get("x-event-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    seen.asked.lock().unwrap().push(id);
                    "fine"
                }),
            )
            .route("/fail", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))
            .route(
                "/slow",
                // Never answers; the request ends when its client gives up.
                get(std::future::pending::<&'static str>),
            )
            .route(
                "/big",
                get(|| async { vec![b'x'; MAX_RESPONSE_BYTES as usize + 1] }),
            )
            .route(
                // Chunked, so its size is only known as it streams.
                "/big-stream",
                get(|| async {
                    let chunk = axum::body::Bytes::from(vec![b'x'; 1 << 20]);
                    let n = MAX_RESPONSE_BYTES as usize / chunk.len() + 1;
                    let chunks = futures::stream::iter(
                        (0..n).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
                    );
                    HttpBody::from_stream(chunks)
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (s, port)
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

fn runtime(deny_private_endpoints: bool) -> Runtime {
    Runtime::new(RuntimeConfig {
        max_instances: 4,
        deny_private_endpoints,
        ..RuntimeConfig::default()
    })
    .expect("runtime starts")
}

fn fetch(runtime: &Runtime, url: &str, allowed: &[&str], timeout: Duration) -> Function {
    let limits = FunctionLimits {
        timeout,
        ..FunctionLimits::default()
    };
    let env = [("url".to_string(), url.to_string())].into();
    let allowed: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
    runtime
        .load("fetch", &guests::bytes("http-fetch"), limits, env)
        .expect("http-fetch loads")
        .allow_hosts(AllowedHosts::parse(&allowed).unwrap())
}

fn event(id: &str) -> Event {
    Event {
        id: id.into(),
        topic: "orders".into(),
        subscription: "test".into(),
        attributes: Vec::new(),
        body: Body::Text("{}".into()),
        published_at_ms: 1_700_000_000_000,
        receive_count: 1,
    }
}

/// The guest's error message for a failed event.
fn failure(outcome: Result<(), InvokeError>) -> String {
    match outcome {
        Err(InvokeError::Handler { message, .. }) => message,
        other => panic!("expected the handler to fail the event, got {other:?}"),
    }
}

/// What the host told the invocation's log.
fn host_lines(logs: &[switchyard::runtime::LogLine]) -> Vec<&str> {
    logs.iter()
        .filter(|l| l.source == LogSource::Host)
        .map(|l| l.message.as_str())
        .collect()
}

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test]
async fn a_request_to_an_allowed_host_goes_out_and_its_answer_decides() {
    let (service, port) = Service::start().await;
    let rt = runtime(false);
    let ok = fetch(
        &rt,
        &format!("http://127.0.0.1:{port}/ok"),
        &["http://127.0.0.1:*"],
        5 * SECOND,
    );
    let invocation = ok.invoke(event("e-1")).await;
    assert_eq!(invocation.outcome, Ok(()), "{:?}", invocation.logs);
    assert_eq!(service.asked(), ["e-1"]);

    let exact = format!("http://127.0.0.1:{port}");
    let failing = fetch(
        &rt,
        &format!("http://127.0.0.1:{port}/fail"),
        &[&exact],
        5 * SECOND,
    );
    let message = failure(failing.invoke(event("e-2")).await.outcome);
    assert!(message.contains("answered 503"), "{message}");
}

#[tokio::test]
async fn a_host_not_allowed_is_refused_and_the_refusal_logged() {
    let (service, port) = Service::start().await;
    let rt = runtime(false);
    let url = format!("http://127.0.0.1:{port}/ok");
    for allowed in [
        &[][..],
        &["http://127.0.0.1"][..],
        &["https://127.0.0.1:*"][..],
        &["http://*.example.com:*"][..],
    ] {
        let f = fetch(&rt, &url, allowed, 5 * SECOND);
        let invocation = f.invoke(event("e-3")).await;
        let logs = invocation.logs.clone();
        let message = failure(invocation.outcome);
        assert!(
            message.contains("HttpRequestDenied"),
            "{allowed:?}: {message}"
        );
        assert_eq!(
            host_lines(&logs),
            [format!(
                "outbound request refused: http://127.0.0.1:{port} is not in the function's allowed_hosts"
            )],
            "{allowed:?}"
        );
    }
    assert!(service.asked().is_empty(), "nothing reached the service");
}

#[tokio::test]
async fn a_private_address_is_refused_under_deny_private_endpoints() {
    let (service, port) = Service::start().await;
    let rt = runtime(true);
    for host in ["127.0.0.1", "localhost"] {
        let f = fetch(
            &rt,
            &format!("http://{host}:{port}/ok"),
            &["http://*:*"],
            5 * SECOND,
        );
        let invocation = f.invoke(event("e-4")).await;
        let logs = invocation.logs.clone();
        let message = failure(invocation.outcome);
        assert!(
            message.contains("DestinationIpProhibited"),
            "{host}: {message}"
        );
        let lines = host_lines(&logs);
        assert!(
            lines.len() == 1 && lines[0].contains("private address") && lines[0].contains(host),
            "{host}: {lines:?}"
        );
    }
    assert!(service.asked().is_empty(), "nothing reached the service");
}

#[tokio::test]
async fn a_request_ends_with_the_invocations_deadline() {
    let (_service, port) = Service::start().await;
    let rt = runtime(false);
    let timeout = Duration::from_millis(300);
    let f = fetch(
        &rt,
        &format!("http://127.0.0.1:{port}/slow"),
        &["http://127.0.0.1:*"],
        timeout,
    );
    let invocation = f.invoke(event("e-5")).await;
    // The request times out at the deadline; whether the guest still gets to report it
    // or the deadline stops it first, the invocation fails as timed out.
    match invocation.outcome {
        Err(InvokeError::Timeout(t)) => assert_eq!(t, timeout),
        Err(InvokeError::Handler { message, .. }) => {
            assert!(message.contains("Timeout"), "{message}")
        }
        other => panic!("a request past the deadline must fail, got {other:?}"),
    }
    // A service that never answers cannot hold the invocation.
    assert!(
        invocation.duration < 30 * SECOND,
        "{:?}",
        invocation.duration
    );
}

#[tokio::test]
async fn an_answer_over_the_size_cap_is_refused() {
    let (_service, port) = Service::start().await;
    let rt = runtime(false);
    for path in ["big", "big-stream"] {
        let f = fetch(
            &rt,
            &format!("http://127.0.0.1:{port}/{path}"),
            &["http://127.0.0.1:*"],
            10 * SECOND,
        );
        let invocation = f.invoke(event("e-6")).await;
        let logs = invocation.logs.clone();
        let message = failure(invocation.outcome);
        // Declared too large, the request fails; streamed, the read of the body does.
        assert!(
            message.contains(&MAX_RESPONSE_BYTES.to_string()),
            "{path}: {message}"
        );
        assert_eq!(
            host_lines(&logs),
            [format!(
                "outbound request refused: the answer from 127.0.0.1 is larger than {MAX_RESPONSE_BYTES} bytes"
            )],
            "{path}"
        );
    }
}

#[tokio::test]
async fn a_function_put_through_the_api_calls_its_allowed_hosts_only() {
    use reqwest::{Method, StatusCode};
    use serde_json::{Value, json};

    let (service, port) = Service::start().await;
    let server = crate::harness::spawn_server(None).await;
    let module = guests::path("http-fetch").to_string_lossy().into_owned();
    let url = format!("http://127.0.0.1:{port}/ok");
    let put = |allowed: Value| json!({"module": module, "env": {"url": url}, "allowed_hosts": allowed, "timeout_ms": 5000});
    let (status, problem) = server
        .json(
            Method::PUT,
            "/v1/functions/fetch",
            put(json!(["127.0.0.1:*"])),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    let detail = problem.to_string();
    assert!(
        detail.contains("allowed_hosts") && detail.contains("`127.0.0.1:*`"),
        "{problem}"
    );

    let spec = server
        .ok(
            Method::PUT,
            "/v1/functions/fetch",
            put(json!(["http://127.0.0.1:*"])),
        )
        .await;
    assert_eq!(spec["allowed_hosts"], json!(["http://127.0.0.1:*"]));
    let invoke = || {
        server.ok(
            Method::POST,
            "/v1/functions/fetch/invoke",
            json!({"message": {}}),
        )
    };
    let v = invoke().await;
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(service.asked().len(), 1);

    // Narrowed to another port: refused, and the invocation's log says why.
    server
        .ok(
            Method::PUT,
            "/v1/functions/fetch",
            put(json!(["http://127.0.0.1:1"])),
        )
        .await;
    let v = crate::harness::eventually(
        Duration::from_secs(60),
        "the new spec is loaded",
        || async {
            let v = invoke().await;
            (v["ok"] == false).then_some(v)
        },
    )
    .await;
    let host_line = v["logs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["source"] == "host")
        .unwrap_or_else(|| panic!("a line from the host: {v}"));
    assert!(
        host_line["message"]
            .as_str()
            .unwrap()
            .contains("is not in the function's allowed_hosts"),
        "{v}"
    );
    assert_eq!(service.asked().len(), 1);
}
