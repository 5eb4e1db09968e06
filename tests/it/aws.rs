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
    run_client(Command::new(python).arg(&path), server, script, args);
}

/// Runs a client program, given the server's URL and `args`; fails with its report
/// unless it passed every check. The report, for a caller that looks for more.
fn run_client(command: &mut Command, server: &TestServer, name: &str, args: &[&str]) -> String {
    let out = command
        .arg(server.url(""))
        .args(args)
        // The SDKs must reach the server directly, whatever the machine's proxy settings.
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .unwrap_or_else(|e| panic!("run {name}: {e}"));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{name} failed:\n{report}");
    assert!(
        !report.contains("FAILED"),
        "{name} reported a failure:\n{report}"
    );
    report
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

/// Runs the AWS CLI against `server`; its JSON output.
fn aws_cli(server: &TestServer, args: &[&str]) -> serde_json::Value {
    let out = Command::new(python_tool("aws"))
        .args(["--endpoint-url", &server.url(""), "--output", "json"])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env_remove("AWS_PROFILE")
        .output()
        .expect("run the AWS CLI");
    assert!(
        out.status.success(),
        "aws {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if out.stdout.iter().all(u8::is_ascii_whitespace) {
        return serde_json::Value::Null;
    }
    serde_json::from_slice(&out.stdout).expect("the AWS CLI prints JSON")
}

#[tokio::test]
async fn the_aws_cli_fans_out_from_an_sns_topic_to_an_sqs_queue() {
    let server = spawn_server(None).await;
    let topic = aws_cli(&server, &["sns", "create-topic", "--name", "orders"]);
    let topic_arn = topic["TopicArn"].as_str().unwrap();
    assert_eq!(topic_arn, "arn:aws:sns:us-east-1:000000000000:orders");
    let queue = aws_cli(
        &server,
        &["sqs", "create-queue", "--queue-name", "shipping"],
    );
    let queue_url = queue["QueueUrl"].as_str().unwrap();
    let attrs = aws_cli(
        &server,
        &[
            "sqs",
            "get-queue-attributes",
            "--queue-url",
            queue_url,
            "--attribute-names",
            "QueueArn",
        ],
    );
    let queue_arn = attrs["Attributes"]["QueueArn"].as_str().unwrap();
    aws_cli(
        &server,
        &[
            "sns",
            "subscribe",
            "--topic-arn",
            topic_arn,
            "--protocol",
            "sqs",
            "--notification-endpoint",
            queue_arn,
            "--attributes",
            r#"{"RawMessageDelivery":"true","FilterPolicy":"{\"kind\":[\"parcel\"]}"}"#,
        ],
    );
    for kind in ["letter", "parcel"] {
        aws_cli(
            &server,
            &[
                "sns",
                "publish",
                "--topic-arn",
                topic_arn,
                "--message",
                &format!("a {kind}"),
                "--message-attributes",
                &format!(r#"{{"kind":{{"DataType":"String","StringValue":"{kind}"}}}}"#),
            ],
        );
    }
    let received = aws_cli(
        &server,
        &[
            "sqs",
            "receive-message",
            "--queue-url",
            queue_url,
            "--max-number-of-messages",
            "10",
            "--message-attribute-names",
            "All",
        ],
    );
    let messages = received["Messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 1, "only the parcel matches: {received}");
    assert_eq!(messages[0]["Body"], "a parcel");
    assert_eq!(
        messages[0]["MessageAttributes"]["kind"]["StringValue"],
        "parcel"
    );
    let topics = aws_cli(&server, &["sns", "list-topics"]);
    assert_eq!(topics["Topics"][0]["TopicArn"], topic_arn);
}

/// A Kinesis session with the AWS CLI, read back through `/v1` and after a restart.
#[tokio::test]
async fn the_aws_cli_puts_and_reads_kinesis_records_that_v1_and_a_restart_see() {
    let mut server = spawn_server(None).await;
    aws_cli(
        &server,
        &[
            "kinesis",
            "create-stream",
            "--stream-name",
            "clicks",
            "--shard-count",
            "2",
        ],
    );
    let put = aws_cli(
        &server,
        &[
            "kinesis",
            "put-record",
            "--stream-name",
            "clicks",
            "--partition-key",
            "user-1",
            "--data",
            "plain text, not JSON",
        ],
    );
    let shard = put["ShardId"].as_str().unwrap().to_string();
    let read = |server: &TestServer| {
        let iterator = aws_cli(
            server,
            &[
                "kinesis",
                "get-shard-iterator",
                "--stream-name",
                "clicks",
                "--shard-id",
                &shard,
                "--shard-iterator-type",
                "TRIM_HORIZON",
            ],
        );
        aws_cli(
            server,
            &[
                "kinesis",
                "get-records",
                "--shard-iterator",
                iterator["ShardIterator"].as_str().unwrap(),
            ],
        )
    };
    let records = read(&server);
    // The CLI shows blobs as base64.
    assert_eq!(
        records["Records"][0]["Data"],
        "cGxhaW4gdGV4dCwgbm90IEpTT04="
    );
    assert_eq!(
        records["Records"][0]["SequenceNumber"],
        put["SequenceNumber"]
    );
    let v1_shard = format!(
        "shard-{:04}",
        shard.trim_start_matches("shardId-").parse::<u32>().unwrap()
    );
    let v1 = server
        .ok(
            reqwest::Method::GET,
            &format!("/v1/streams/clicks/shards/{v1_shard}/records?from=trim_horizon"),
            serde_json::Value::Null,
        )
        .await;
    assert_eq!(
        v1["records"][0]["data_base64"],
        "cGxhaW4gdGV4dCwgbm90IEpTT04="
    );
    assert!(v1["records"][0].get("data").is_none(), "{v1}");
    server.restart().await;
    assert_eq!(
        read(&server)["Records"][0]["Data"],
        "cGxhaW4gdGV4dCwgbm90IEpTT04="
    );
    let summary = aws_cli(
        &server,
        &[
            "kinesis",
            "describe-stream-summary",
            "--stream-name",
            "clicks",
        ],
    );
    assert_eq!(summary["StreamDescriptionSummary"]["OpenShardCount"], 2);
}

/// Runs `tests/aws/js/SCRIPT` with node against `server`, once the SDK's `package` (as
/// `@aws-sdk/PACKAGE`) is installed; its report.
fn run_node(server: &TestServer, script: &str, package: &str) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/aws/js");
    assert!(
        dir.join("node_modules/@aws-sdk").join(package).is_dir(),
        "the AWS SDK for JavaScript is missing: run scripts/test.sh, which installs tests/aws/js/package-lock.json"
    );
    run_client(
        Command::new("node").arg(dir.join(script)),
        server,
        script,
        &[],
    )
}

#[tokio::test]
async fn the_javascript_sdk_checks_every_md5_and_reads_every_answer() {
    let server = spawn_server(None).await;
    let report = run_node(&server, "sdk.mjs", "client-sqs");
    assert!(report.contains("ok errorsAsTheSdkNamesThem"), "{report}");
}

#[tokio::test]
async fn boto3_drives_kinesis_over_the_json_protocol() {
    let server = spawn_server(None).await;
    run_script(&server, "kinesis_boto3.py", &[]);
}

#[tokio::test]
async fn kinesis_answers_cbor_as_the_java_sdks_send_and_read_it() {
    let server = spawn_server(None).await;
    run_script(&server, "kinesis_cbor.py", &[]);
}

#[tokio::test]
async fn the_javascript_sdk_drives_kinesis_over_http2() {
    let server = spawn_server(None).await;
    let report = run_node(&server, "kinesis.mjs", "client-kinesis");
    assert!(report.contains("ok "), "{report}");
}

#[tokio::test]
async fn boto3_invokes_functions_and_maps_event_sources_over_the_lambda_protocol() {
    let server = spawn_server(None).await;
    let publisher = crate::guests::path("publisher");
    run_script(
        &server,
        "lambda_boto3.py",
        &[publisher.to_str().expect("a UTF-8 path")],
    );
}

#[tokio::test]
async fn boto3_subscribes_an_http_endpoint_that_confirms_with_the_token_it_was_sent() {
    let server = spawn_server(None).await;
    run_script(&server, "sns_http_boto3.py", &[]);
}
