//! A server listens before its functions' components have compiled: it serves at once,
//! a function is `loading` until its component is ready (deliveries to it wait in its
//! delivery queue, `invoke` answers 503), and a component that does not compile leaves
//! the server serving and the function `failed` with the reason.

use crate::guests;
use crate::harness::{Launch, TestServer, eventually};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

/// `base` (a component of the handler world) with a large core module added that nothing
/// instantiates. wasmtime compiles every core module of a component, so this one takes
/// as long to load as its extra code is large, and once loaded behaves as `base`.
fn bulky(base: &[u8], functions: u32, steps_per_function: i32) -> Vec<u8> {
    use wasm_encoder::{
        CodeSection, Function, FunctionSection, Instruction, Module, TypeSection, ValType,
    };
    let mut types = TypeSection::new();
    types.ty().function([ValType::I32], [ValType::I32]);
    let mut signatures = FunctionSection::new();
    let mut code = CodeSection::new();
    for _ in 0..functions {
        signatures.function(0);
        let mut body = Function::new([]);
        for step in 0..steps_per_function {
            body.instruction(&Instruction::LocalGet(0))
                .instruction(&Instruction::I32Const(step))
                .instruction(&Instruction::I32Mul)
                .instruction(&Instruction::I32Const(step ^ 0x5bd1))
                .instruction(&Instruction::I32Xor)
                .instruction(&Instruction::LocalSet(0));
        }
        body.instruction(&Instruction::LocalGet(0))
            .instruction(&Instruction::End);
        code.function(&body);
    }
    let mut module = Module::new();
    module.section(&types).section(&signatures).section(&code);
    with_core_module_section(base, &module.finish())
}

/// `component` with one more section: a core module (section id 1 of the component
/// binary format), which may come after every other section.
fn with_core_module_section(component: &[u8], module: &[u8]) -> Vec<u8> {
    const CORE_MODULE_SECTION: u8 = 1;
    let mut out = component.to_vec();
    out.push(CORE_MODULE_SECTION);
    let mut size = u32::try_from(module.len()).expect("the module is under 4 GiB");
    loop {
        let byte = (size & 0x7f) as u8;
        size >>= 7;
        if size == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(module);
    out
}

fn write_module(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, bytes).expect("write the component");
    path.to_string_lossy().into_owned()
}

async fn get_raw(
    server: &TestServer,
    path: &str,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let response = server
        .http
        .get(server.url(path))
        .send()
        .await
        .expect("the server answers");
    let status = response.status();
    let headers = response.headers().clone();
    (
        status,
        headers,
        response.text().await.expect("read the body"),
    )
}

#[tokio::test]
async fn the_server_serves_while_a_function_compiles_and_delivers_to_it_once_ready() {
    let dir = tempfile::tempdir().unwrap();
    // Megabytes of code: seconds of compiling, where an HTTP answer takes milliseconds,
    // whatever else the machine is doing.
    let slow = write_module(
        dir.path(),
        "slow",
        &bulky(&guests::bytes("publisher"), 2_000, 200),
    );
    let config = format!(
        r#"
        [queues.seen]
        [functions.slow]
        module = "{slow}"
        env = {{ topic = "out", count = "1" }}
        [topics.orders.subscriptions.slow]
        endpoint = {{ function = "slow" }}
        [topics.out.subscriptions.seen]
        endpoint = {{ queue = "seen" }}
        "#
    );
    let server = Launch::new(Some(&config), &[])
        .cold_cache()
        .listening_only()
        .spawn()
        .await;

    let (status, _, body) = get_raw(&server, "/healthz").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    let function = server
        .ok(Method::GET, "/v1/functions/slow", Value::Null)
        .await;
    assert_eq!(function["state"], "loading", "{function}");
    let (status, _, body) = get_raw(&server, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let readiness: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(readiness["loading"], json!(["slow"]), "{readiness}");
    let response = server
        .http
        .post(server.url("/v1/functions/slow/invoke"))
        .json(&json!({"message": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["type"], "/problems/function-loading", "{problem}");
    // Accepted now, delivered once the function is ready.
    server
        .ok(
            Method::POST,
            "/v1/topics/orders/publish",
            json!({"message": {"order": 1}}),
        )
        .await;
    assert_eq!(
        server
            .ok(Method::GET, "/v1/functions/slow", Value::Null)
            .await["state"],
        "loading",
        "the component compiled before the publish was answered: make it larger"
    );

    server.wait_until_ready().await;
    let function = server
        .ok(Method::GET, "/v1/functions/slow", Value::Null)
        .await;
    assert_eq!(function["state"], "ready", "{function}");
    let seen = eventually(
        Duration::from_secs(60),
        "the function's publish",
        || async {
            let v = server
                .ok(
                    Method::POST,
                    "/v1/queues/seen/receive",
                    json!({"max_messages": 10}),
                )
                .await;
            v["messages"].as_array().filter(|m| !m.is_empty()).cloned()
        },
    )
    .await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    // The wait cost no attempt: the one delivery succeeded at its first.
    assert_eq!(
        server.metric("switchyard_delivery_attempts_total").await,
        Some(1)
    );
    assert_eq!(
        server.metric("switchyard_delivery_retries_total").await,
        Some(0)
    );
}

#[tokio::test]
async fn a_component_that_does_not_compile_leaves_the_server_serving_and_the_function_failed() {
    let dir = tempfile::tempdir().unwrap();
    // A component header with a core module section that holds no module.
    let broken = write_module(
        dir.path(),
        "broken",
        &with_core_module_section(&guests::bytes("noop"), b"not a module"),
    );
    let fine = guests::path("noop").to_string_lossy().into_owned();
    let config = format!(
        r#"
        [functions.broken]
        module = "{broken}"
        [functions.fine]
        module = "{fine}"
        "#
    );
    let server = Launch::new(Some(&config), &[])
        .listening_only()
        .spawn()
        .await;
    let function = eventually(Duration::from_secs(300), "the load to fail", || async {
        let f = server
            .ok(Method::GET, "/v1/functions/broken", Value::Null)
            .await;
        (f["state"] == "failed").then_some(f)
    })
    .await;
    let reason = function["error"].as_str().unwrap();
    assert!(reason.contains("compile"), "{reason}");

    let (status, _, body) = get_raw(&server, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let readiness: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(readiness["failed"]["broken"], json!(reason), "{readiness}");
    let (status, problem) = server
        .json(
            Method::POST,
            "/v1/functions/broken/invoke",
            json!({"message": {}}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["type"], "/problems/function-failed", "{problem}");

    // Everything else works: the other function, and new resources.
    eventually(Duration::from_secs(300), "fine to load", || async {
        let f = server
            .ok(Method::GET, "/v1/functions/fine", Value::Null)
            .await;
        (f["state"] == "ready").then_some(())
    })
    .await;
    let invoked = server
        .ok(
            Method::POST,
            "/v1/functions/fine/invoke",
            json!({"message": {}}),
        )
        .await;
    assert_eq!(invoked["ok"], true, "{invoked}");
    server.ok(Method::PUT, "/v1/queues/q", json!({})).await;

    // A working module put in its place makes it ready, and the server with it.
    server
        .ok(Method::PUT, "/v1/functions/broken", json!({"module": fine}))
        .await;
    let (status, _, body) = get_raw(&server, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
