//! The AWS door with the AWS SDKs themselves: `tests/aws/*.py` drive a real server with
//! boto3 (installed by scripts/test.sh from tests/requirements.txt) and check every
//! answer, MD5s included, against what AWS documents.

use crate::harness::{
    TestServer, python_tool, query_protocol_python, spawn_server, spawn_server_with_args,
};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `tests/aws/SCRIPT` against `server`; fails with its report unless every check
/// passed.
fn run_script(server: &TestServer, script: &str, args: &[&str]) {
    run_script_with(python_tool("python"), server, script, args)
}

fn run_script_with(python: PathBuf, server: &TestServer, script: &str, args: &[&str]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/aws")
        .join(script);
    let out = Command::new(python)
        .arg(&path)
        .arg(server.url(""))
        .args(args)
        // The SDKs must reach the server directly, whatever the machine's proxy settings.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .expect("run python");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{script} failed:\n{report}");
    assert!(
        !report.contains("FAILED"),
        "{script} reported a failure:\n{report}"
    );
}

#[tokio::test]
async fn boto3_drives_sqs_over_the_json_protocol() {
    let server = spawn_server(None).await;
    run_script(&server, "sqs_boto3.py", &["json"]);
}

#[tokio::test]
async fn an_older_boto3_drives_sqs_over_the_query_protocol() {
    let server = spawn_server(None).await;
    run_script_with(query_protocol_python(), &server, "sqs_boto3.py", &["query"]);
}

#[tokio::test]
async fn with_a_token_the_sdks_must_sign_with_it() {
    let server = spawn_server_with_args(None, &["--token", "s3cret-token"]).await;
    run_script(&server, "signatures.py", &["s3cret-token"]);
}

#[tokio::test]
async fn boto3_drives_sns_over_the_query_protocol() {
    let server = spawn_server(None).await;
    run_script(&server, "sns_boto3.py", &[]);
}
