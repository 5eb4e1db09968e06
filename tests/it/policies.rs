//! Trying filter policies before deploying them: `switchyard policy test` (single case and
//! JSON lines) and `POST /v1/policies/test`, checked against the AWS-documented cases.

use crate::harness::spawn_server;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::io::Write;
use std::process::{Command, Stdio};

const BINARY: &str = env!("CARGO_BIN_EXE_switchyard");

/// The conformance cases (a copy of the shared AWS-derived file kept with the filter crate).
fn cases() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crates/filter/tests/fixtures/filter-policy-cases.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("read the conformance cases"))
        .expect("the conformance cases are JSON")
}

fn policy_test(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BINARY)
        .args(["policy", "test"])
        .args(args)
        .output()
        .expect("run switchyard policy test");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn jsonl_mode_answers_every_conformance_case_as_aws_documents() {
    let cases = cases();
    let mut child = Command::new(BINARY)
        .args(["policy", "test", "--jsonl"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run switchyard policy test --jsonl");
    {
        let mut stdin = child.stdin.take().expect("piped stdin");
        for c in &cases {
            writeln!(stdin, "{c}").expect("write a case");
        }
    }
    let out = child.wait_with_output().expect("wait for policy test");
    assert!(out.status.success());
    let answers: Vec<Value> = String::from_utf8(out.stdout)
        .expect("UTF-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).expect("each answer is JSON"))
        .collect();
    assert_eq!(answers.len(), cases.len(), "one answer line per case");
    for (c, a) in cases.iter().zip(&answers) {
        match &c["expect"] {
            Value::Bool(b) => assert_eq!(a["match"], json!(b), "case {}: {a}", c["name"]),
            Value::String(s) if s == "invalid" => {
                assert!(
                    a["error"].is_string(),
                    "case {} must be refused: {a}",
                    c["name"]
                )
            }
            _ => assert!(
                a.get("error").is_none(),
                "case {} must be valid: {a}",
                c["name"]
            ),
        }
    }
}

#[test]
fn single_case_prints_match_or_no_match_with_exit_codes() {
    let (code, out, _) = policy_test(&[
        "--policy",
        r#"{"event":["order_placed"]}"#,
        "--attributes",
        r#"{"event":"order_placed"}"#,
    ]);
    assert_eq!((code, out.trim()), (0, "match"));
    let (code, out, _) = policy_test(&[
        "--policy",
        r#"{"total":[{"numeric":[">",100]}]}"#,
        "--scope",
        "body",
        "--message",
        r#"{"total":3.015e1}"#,
    ]);
    assert_eq!((code, out.trim()), (1, "no match"));
}

#[test]
fn single_case_with_an_invalid_policy_exits_2_naming_the_key() {
    let (code, _, err) = policy_test(&["--policy", r#"{"price":"x"}"#, "--message", "{}"]);
    assert_eq!(code, 2);
    assert!(err.contains("\"price\""), "{err}");
}

#[tokio::test]
async fn http_policy_test_matches_and_refuses_invalid_policies_with_400() {
    let server = spawn_server(None).await;
    let res = server
        .raw(
            Method::POST,
            "/v1/policies/test",
            "application/json",
            json!({"policy": {"total": [{"numeric": [">=", 301.5]}]}, "scope": "MessageBody",
                   "message": {"total": 3.015e2}})
            .to_string(),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.body);
    assert_eq!(
        serde_json::from_str::<Value>(&res.body).unwrap(),
        json!({"match": true})
    );

    let res = server
        .raw(
            Method::POST,
            "/v1/policies/test",
            "application/json",
            json!({"policy": {"a": {"b": ["x"]}}, "scope": "MessageAttributes",
                   "attributes": {"a": "x"}})
            .to_string(),
        )
        .await;
    let p = res.problem(StatusCode::BAD_REQUEST);
    assert!(p.detail.contains("nested"), "{}", p.detail);
}
