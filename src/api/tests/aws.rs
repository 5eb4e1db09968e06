//! The AWS door as the listener sees it: what reaches it, what it answers when it cannot
//! serve, and that its errors have the protocol's shape. Its operations are tested with
//! the AWS SDKs end to end (tests/it/aws.rs).

use super::TestApi;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::json;
use tower::ServiceExt;

fn sqs(action: &str, body: serde_json::Value) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri("/")
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amz-target", format!("AmazonSQS.{action}"))
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn a_post_to_the_root_without_a_target_is_no_route() {
    let api = TestApi::new().await;
    let answer = api.call(Method::POST, "/", json!({})).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.body["type"], "/problems/no-such-route");
}

#[tokio::test]
async fn the_queue_url_route_takes_only_aws_posts() {
    let api = TestApi::new().await;
    for (method, path) in [
        (Method::GET, "/v1/nothing"),
        (Method::GET, "/000000000000/jobs"),
        (Method::POST, "/000000000000/jobs"),
    ] {
        let answer = api.call(method.clone(), path, json!({})).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(
            answer.body["type"], "/problems/no-such-route",
            "{method} {path}"
        );
    }
    let created = api
        .send(query(
            "Action=CreateQueue&Version=2012-11-05&QueueName=jobs",
        ))
        .await;
    assert_eq!(created.status, StatusCode::OK);
    let mut to_queue =
        query("Action=GetQueueAttributes&Version=2012-11-05&AttributeName.1=QueueArn");
    *to_queue.uri_mut() = "/000000000000/jobs".parse().unwrap();
    let answer = api.send(to_queue).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        xml(&answer).contains(
            "<Name>QueueArn</Name><Value>arn:aws:sqs:us-east-1:000000000000:jobs</Value>"
        ),
        "{}",
        xml(&answer)
    );
}

#[tokio::test]
async fn errors_have_the_json_protocol_shape_and_the_query_code() {
    let api = TestApi::new().await;
    let res = api
        .routes
        .clone()
        .oneshot(sqs("GetQueueUrl", json!({"QueueName": "nope"})))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        res.headers()["x-amzn-query-error"],
        "AWS.SimpleQueueService.NonExistentQueue;Sender"
    );
    let answer = api
        .send(sqs("GetQueueUrl", json!({"QueueName": "nope"})))
        .await;
    assert_eq!(answer.content_type, "application/x-amz-json-1.0");
    assert_eq!(answer.body["__type"], "com.amazonaws.sqs#QueueDoesNotExist");

    let unknown = api.send(sqs("Teleport", json!({}))).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        unknown.body["__type"],
        "com.amazonaws.sqs#UnsupportedOperation"
    );
    let malformed = api
        .send(
            Request::builder()
                .method(Method::POST)
                .uri("/")
                .header("x-amz-target", "AmazonSQS.SendMessage")
                .body(Body::from("{not json"))
                .unwrap(),
        )
        .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        malformed.body["__type"],
        "com.amazonaws.sqs#InvalidParameterValue"
    );
}

#[tokio::test]
async fn with_a_token_an_unsigned_aws_request_is_refused() {
    let api = TestApi::with_token(Some("secret")).await;
    let answer = api
        .send(sqs("CreateQueue", json!({"QueueName": "q"})))
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(
        answer.body["__type"],
        "com.amazonaws.sqs#MissingAuthenticationToken"
    );
    assert!(api.app.queues.queue("q").is_err(), "nothing was created");
}

fn query(body: &str) -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri("/")
        .header(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// The XML text of an answer the harness could not read as JSON.
fn xml(answer: &super::Answer) -> &str {
    answer.body.as_str().unwrap_or_default()
}

#[tokio::test]
async fn sns_errors_are_xml_error_responses_with_the_model_codes() {
    let api = TestApi::new().await;
    let answer = api
        .send(query(
            "Action=GetTopicAttributes&Version=2010-03-31&TopicArn=arn%3Aaws%3Asns%3Aus-east-1%3A000000000000%3Anope",
        ))
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(answer.content_type, "text/xml");
    let body = xml(&answer);
    assert!(
        body.contains("<ErrorResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\"><Error><Type>Sender</Type><Code>NotFound</Code><Message>Topic does not exist</Message>"),
        "{body}"
    );

    let missing = api
        .send(query("Action=Publish&Version=2010-03-31&Message=m"))
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert!(xml(&missing).contains("<Code>InvalidParameter</Code>"));

    let unknown = api.send(query("Action=Teleport&Version=2010-03-31")).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert!(xml(&unknown).contains("<Code>InvalidAction</Code>"));
}

#[tokio::test]
async fn a_form_for_a_service_without_a_query_protocol_here_says_so() {
    let api = TestApi::new().await;
    let unknown = api.send(query("Action=DescribeThings")).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert!(xml(&unknown).contains("<Code>InvalidAction</Code>"));
    let mut signed_for_ec2 = query("Action=DescribeInstances&Version=2016-11-15");
    signed_for_ec2.headers_mut().insert(
        "authorization",
        "AWS4-HMAC-SHA256 Credential=AKID/20261206/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0"
            .parse()
            .unwrap(),
    );
    let ec2 = api.send(signed_for_ec2).await;
    assert_eq!(ec2.status, StatusCode::BAD_REQUEST);
    assert!(
        xml(&ec2).contains("&quot;ec2&quot; is not served here"),
        "{}",
        xml(&ec2)
    );
}

#[tokio::test]
async fn with_a_token_an_unsigned_sns_request_is_refused() {
    let api = TestApi::with_token(Some("secret")).await;
    let answer = api
        .send(query("Action=CreateTopic&Version=2010-03-31&Name=t"))
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(xml(&answer).contains("<Code>MissingAuthenticationToken</Code>"));
    assert!(api.app.control.topic("t").is_err(), "nothing was created");
}

/// Lambda's event invoke configs live under an API version of their own, which reaches
/// the door; what it cannot take is answered in Lambda's error shape.
#[tokio::test]
async fn event_invoke_configs_answer_lambdas_errors() {
    let api = TestApi::new().await;
    let path = "/2019-09-25/functions/f/event-invoke-config";
    let malformed = Request::builder()
        .method(Method::PUT)
        .uri(path)
        .body(Body::from("{not json"))
        .unwrap();
    let answer = api.send(malformed).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(
        answer.body["message"]
            .as_str()
            .unwrap()
            .contains("not an event invoke config"),
        "{}",
        answer.body
    );
    let cases = [
        (
            Method::GET,
            path.to_string(),
            StatusCode::NOT_FOUND,
            "Function not found",
        ),
        (
            Method::GET,
            format!("{path}?Qualifier=7"),
            StatusCode::BAD_REQUEST,
            "no versions or aliases",
        ),
        (
            Method::PATCH,
            path.to_string(),
            StatusCode::METHOD_NOT_ALLOWED,
            "PATCH is not an operation",
        ),
        (
            Method::GET,
            "/2019-09-25/functions/f/other".to_string(),
            StatusCode::BAD_REQUEST,
            "is not a Lambda operation",
        ),
    ];
    for (method, uri, status, says) in cases {
        let answer = api
            .call(method.clone(), &uri, serde_json::Value::Null)
            .await;
        assert_eq!(answer.status, status, "{method} {uri}: {}", answer.body);
        let message = answer.body["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{method} {uri}: {}", answer.body);
    }
}
