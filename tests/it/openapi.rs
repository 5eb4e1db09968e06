//! `GET /openapi.json`: the served document is OpenAPI 3.1, its `$ref`s resolve, and its
//! paths and methods are exactly the routes `src/api/mod.rs` registers, so a route added
//! without documenting it (or removed without updating the document) fails here.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::harness::spawn_server;

/// The source the routes are read from.
const API_SOURCE: &str = include_str!("../../src/api/mod.rs");

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// Index just past the parenthesis matching the one at `open`, skipping string literals.
fn matching_paren(s: &str, open: usize) -> usize {
    let b = s.as_bytes();
    let (mut depth, mut i, mut in_str) = (0usize, open, false);
    while i < b.len() {
        match (in_str, b[i]) {
            (true, b'\\') => i += 1,
            (true, b'"') => in_str = false,
            (false, b'"') => in_str = true,
            (false, b'(') => depth += 1,
            (false, b')') => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    panic!("unbalanced parentheses in src/api/mod.rs after byte {open}");
}

/// Methods named by `get(`, `.put(`, ... calls in a route's method router.
fn methods_in(expr: &str) -> BTreeSet<String> {
    let b = expr.as_bytes();
    let mut out = BTreeSet::new();
    for m in METHODS {
        let call = format!("{m}(");
        for (at, _) in expr.match_indices(&call) {
            let standalone = at == 0 || !(b[at - 1].is_ascii_alphanumeric() || b[at - 1] == b'_');
            if standalone {
                out.insert(m.to_string());
            }
        }
    }
    out
}

/// `.route("PATH", METHODS)` calls of `app`; every route spells out its full path.
fn registered_routes() -> BTreeMap<String, BTreeSet<String>> {
    let start = API_SOURCE
        .find("pub fn app(")
        .expect("src/api/mod.rs defines app");
    let body = &API_SOURCE[start..];
    let body = &body[..body.find("\n}\n").expect("app ends")];
    let mut routes = BTreeMap::new();
    for (at, _) in body.match_indices(".route(") {
        let open = at + ".route".len();
        let close = matching_paren(body, open);
        let args = &body[open + 1..close - 1];
        let args = args.trim_start();
        let path_end = args[1..]
            .find('"')
            .expect("a route's path is a string literal")
            + 1;
        assert!(args.starts_with('"'), "route path is not a literal: {args}");
        let path = &args[1..path_end];
        let full = path.to_string();
        let methods = methods_in(&args[path_end + 1..]);
        assert!(!methods.is_empty(), "no methods found for route {full}");
        assert!(
            routes.insert(full.clone(), methods).is_none(),
            "route {full} registered twice"
        );
    }
    routes
}

/// Follows a local `$ref` (`#/a/b`) in `doc`.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
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
async fn openapi_document_covers_every_route() {
    let server = spawn_server(None).await;
    let raw = server
        .raw(Method::GET, "/openapi.json", "application/json", "")
        .await;
    assert_eq!(raw.status, StatusCode::OK, "{}", raw.body);
    assert!(
        raw.content_type.starts_with("application/json"),
        "content type {:?}",
        raw.content_type
    );
    let (status, doc) = server.json(Method::GET, "/openapi.json", Value::Null).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1.")),
        "not OpenAPI 3.1: {}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    // Every $ref points inside the document.
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in &refs {
        assert!(resolve(&doc, r).is_some(), "$ref {r} does not resolve");
    }

    // Documented paths and methods are exactly the registered routes.
    let routes = registered_routes();
    assert!(routes.contains_key("/v1/topics") && routes.contains_key("/openapi.json"));
    let paths = doc["paths"].as_object().expect("paths is an object");
    let documented: BTreeMap<String, BTreeSet<String>> = paths
        .iter()
        .map(|(p, item)| {
            let methods = item
                .as_object()
                .expect("a path item is an object")
                .keys()
                .filter(|k| METHODS.contains(&k.as_str()))
                .cloned()
                .collect();
            (p.clone(), methods)
        })
        .collect();
    for (path, methods) in &routes {
        assert_eq!(
            documented.get(path),
            Some(methods),
            "route {path} ({methods:?}) is not documented with exactly these methods"
        );
    }
    for path in documented.keys() {
        assert!(
            routes.contains_key(path),
            "{path} is documented but not registered"
        );
    }

    // Every /v1 operation documents its errors as problems, including 503; bodies can be
    // malformed (400) or too large (413).
    for (path, methods) in &routes {
        for method in methods {
            let op = &paths[path][method];
            let responses = op["responses"].as_object().expect("responses");
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{method} {path} has no success response"
            );
            if !path.starts_with("/v1/") {
                continue;
            }
            for status in ["401", "503"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} does not document {status}"
                );
            }
            if op.get("requestBody").is_some() {
                for status in ["400", "413"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path} takes a body but does not document {status}"
                    );
                }
            }
            for (status, response) in responses {
                if !(status.starts_with('4') || status.starts_with('5')) {
                    continue;
                }
                let response = match response["$ref"].as_str() {
                    Some(r) => resolve(&doc, r).expect("checked above"),
                    None => response,
                };
                let schema = &response["content"]["application/problem+json"]["schema"];
                assert!(
                    !schema.is_null(),
                    "{method} {path} {status} is not application/problem+json"
                );
            }
        }
    }
    let problem = &doc["components"]["schemas"]["Problem"];
    let required: BTreeSet<&str> = problem["required"]
        .as_array()
        .expect("Problem lists required members")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        required,
        BTreeSet::from(["type", "title", "status", "detail"])
    );
}
