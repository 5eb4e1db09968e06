//! Every kind of bad input gets the documented 4xx problem (never a 500), and a bad config
//! file stops the server with exit code 2 and every error listed.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchyard::wire::{
    Endpoint, PublishRequest, QueueSpec, ReceiveRequest, RedrivePolicy, SendRequest,
    SubscriptionSpec, TopicSpec,
};

use crate::harness::{
    TestServer, refused, run_server_expecting_exit, spawn_server, topic_with_queues,
};

/// A server with topic `orders` → queue `jobs`.
async fn server_with_topic_and_queue() -> TestServer {
    let server = spawn_server(None).await;
    let jobs = ("jobs", SubscriptionSpec::to_queue("jobs"));
    topic_with_queues(&server.client, "orders", &[jobs]).await;
    server
}

async fn post_json(server: &TestServer, path: &str, body: &Value) -> crate::harness::RawResponse {
    server
        .raw(Method::POST, path, "application/json", body.to_string())
        .await
}

#[tokio::test]
async fn malformed_json_is_refused_with_a_400_problem() {
    let server = server_with_topic_and_queue().await;
    let cases = [
        (Method::POST, "/v1/topics/orders/publish"),
        (Method::POST, "/v1/topics/orders/publish-batch"),
        (Method::POST, "/v1/queues/jobs/messages"),
        (Method::POST, "/v1/queues/jobs/receive"),
        (Method::POST, "/v1/queues/jobs/ack"),
        (Method::PUT, "/v1/topics/other"),
        (Method::PUT, "/v1/queues/other"),
        (Method::PUT, "/v1/topics/orders/subscriptions/other"),
    ];
    for (method, path) in cases {
        let response = server
            .raw(
                method.clone(),
                path,
                "application/json",
                r#"{"message": {"unclosed"#,
            )
            .await;
        response.problem(StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn json_of_the_wrong_shape_is_refused_with_400() {
    let server = server_with_topic_and_queue().await;
    let cases = [
        ("/v1/topics/orders/publish", json!({"attributes": {}})),
        ("/v1/topics/orders/publish", json!(["not", "an", "object"])),
        ("/v1/queues/jobs/receive", json!({"max_messages": "ten"})),
        ("/v1/queues/jobs/ack", json!({"receipts": "r1"})),
    ];
    for (path, body) in cases {
        let response = post_json(&server, path, &body).await;
        assert_eq!(
            response.status,
            StatusCode::BAD_REQUEST,
            "{path} {body}: {}",
            response.body
        );
    }
    let response = server
        .raw(
            Method::PUT,
            "/v1/queues/other",
            "application/json",
            json!({"visibility_timeout_s": "soon"}).to_string(),
        )
        .await;
    response.problem(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn unknown_resources_are_404() {
    let server = server_with_topic_and_queue().await;
    let client = &server.client;
    let not_found = StatusCode::NOT_FOUND;

    refused(client.get_topic("nope").await, not_found);
    refused(client.delete_topic("nope").await, not_found);
    refused(
        client.publish("nope", &PublishRequest::new(json!(1))).await,
        not_found,
    );
    refused(
        client
            .publish_batch("nope", &[PublishRequest::new(json!(1)).id("e1")])
            .await,
        not_found,
    );
    refused(client.list_subscriptions("nope").await, not_found);
    refused(client.get_subscription("nope", "jobs").await, not_found);
    refused(client.get_subscription("orders", "nope").await, not_found);
    refused(
        client.delete_subscription("orders", "nope").await,
        not_found,
    );
    refused(
        client
            .put_subscription("nope", "jobs", &SubscriptionSpec::to_queue("jobs"))
            .await,
        not_found,
    );
    refused(client.get_queue("nope").await, not_found);
    refused(client.delete_queue("nope").await, not_found);
    refused(
        client.send("nope", &SendRequest::new(json!(1))).await,
        not_found,
    );
    refused(
        client.receive("nope", &ReceiveRequest::new(1)).await,
        not_found,
    );
    refused(client.ack("nope", &["r".to_owned()]).await, not_found);
    refused(client.change_visibility("nope", "r", 0).await, not_found);
    refused(client.purge("nope").await, not_found);
    refused(client.redrive("nope").await, not_found);
    let response = server
        .raw(Method::GET, "/v1/queues/nope", "application/json", "")
        .await;
    response.problem(not_found);
}

#[tokio::test]
async fn subscription_to_a_missing_queue_is_refused_with_400() {
    let server = server_with_topic_and_queue().await;

    refused(
        server
            .client
            .put_subscription("orders", "ghost", &SubscriptionSpec::to_queue("ghost"))
            .await,
        StatusCode::BAD_REQUEST,
    );
}

#[tokio::test]
async fn invalid_names_are_refused_with_400() {
    let server = spawn_server(None).await;
    let client = &server.client;
    let too_long = "a".repeat(81);
    let bad = StatusCode::BAD_REQUEST;

    for name in [
        "has space",
        "bang!",
        "dot.ted",
        "ünïcode",
        "a/b",
        too_long.as_str(),
    ] {
        refused(client.put_topic(name, &TopicSpec::default()).await, bad);
        refused(client.put_queue(name, &QueueSpec::default()).await, bad);
    }
    client
        .put_topic("orders", &TopicSpec::default())
        .await
        .unwrap();
    client
        .put_queue("jobs", &QueueSpec::default())
        .await
        .unwrap();
    refused(
        client
            .put_subscription("orders", "has space", &SubscriptionSpec::to_queue("jobs"))
            .await,
        bad,
    );
    // `.fifo` names and FIFO resources go together.
    refused(
        client.put_topic("orders.fifo", &TopicSpec::default()).await,
        bad,
    );
    refused(
        client.put_topic("fifo-orders", &TopicSpec::fifo()).await,
        bad,
    );
    refused(
        client.put_queue("jobs.fifo", &QueueSpec::default()).await,
        bad,
    );
    refused(client.put_queue("fifo-jobs", &QueueSpec::fifo()).await, bad);
    // The longest valid name, and every allowed character.
    let longest = "a".repeat(80);
    client
        .put_topic(&longest, &TopicSpec::default())
        .await
        .unwrap();
    client
        .put_queue("Az09_-", &QueueSpec::default())
        .await
        .unwrap();
    let longest_fifo = format!("{}.fifo", "q".repeat(75));
    client
        .put_queue(&longest_fifo, &QueueSpec::fifo())
        .await
        .unwrap();
}

#[tokio::test]
async fn message_over_the_size_limit_is_refused_with_413() {
    let server = server_with_topic_and_queue().await;
    let client = &server.client;
    let small_queue = QueueSpec {
        max_message_bytes: 1024,
        ..QueueSpec::default()
    };
    client.put_queue("small", &small_queue).await.unwrap();

    // The default limit, 256 KiB, as in SNS and SQS.
    let big = json!("x".repeat(300 * 1024));
    refused(
        client
            .publish("orders", &PublishRequest::new(big.clone()))
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
    );
    refused(
        client.send("jobs", &SendRequest::new(big)).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    );
    refused(
        client
            .send("small", &SendRequest::new(json!("x".repeat(2048))))
            .await,
        StatusCode::PAYLOAD_TOO_LARGE,
    );
    client
        .send("small", &SendRequest::new(json!("x".repeat(512))))
        .await
        .unwrap();
}

#[tokio::test]
async fn bad_attribute_values_are_refused_with_400() {
    let server = server_with_topic_and_queue().await;
    let bad_values = [
        json!(true),
        json!(null),
        json!({"nested": 1}),
        json!([{"nested": 1}]),
        json!({"Type": "Bogus", "Value": "x"}),
        json!({"Type": "Number", "Value": "not a number"}),
        json!({"Type": "String"}),
    ];
    for value in bad_values {
        for path in ["/v1/topics/orders/publish", "/v1/queues/jobs/messages"] {
            let body = json!({"message": 1, "attributes": {"bad_attr": value}});
            let response = post_json(&server, path, &body).await;
            let problem = response.problem(StatusCode::BAD_REQUEST);
            assert!(
                problem.detail.contains("bad_attr"),
                "detail does not name the attribute: {problem:?}"
            );
        }
    }
}

#[tokio::test]
async fn receive_parameters_out_of_range_are_refused_with_400() {
    let server = server_with_topic_and_queue().await;
    let client = &server.client;
    let bad = StatusCode::BAD_REQUEST;

    refused(client.receive("jobs", &ReceiveRequest::new(0)).await, bad);
    refused(client.receive("jobs", &ReceiveRequest::new(11)).await, bad);
    refused(
        client
            .receive("jobs", &ReceiveRequest::new(1).wait_s(21))
            .await,
        bad,
    );
    refused(
        client
            .receive("jobs", &ReceiveRequest::new(1).visibility_timeout_s(43_201))
            .await,
        bad,
    );
    refused(
        client
            .send("jobs", &SendRequest::new(json!(1)).delay_s(901))
            .await,
        bad,
    );
}

#[tokio::test]
async fn queue_settings_out_of_range_are_refused_with_400() {
    let server = spawn_server(None).await;
    let client = &server.client;
    client
        .put_queue("dlq", &QueueSpec::default())
        .await
        .unwrap();
    let base = QueueSpec::default;
    let cases = [
        QueueSpec {
            visibility_timeout_s: 43_201,
            ..base()
        },
        QueueSpec {
            delay_s: 901,
            ..base()
        },
        QueueSpec {
            retention_s: 0,
            ..base()
        },
        QueueSpec {
            retention_s: 1_209_601,
            ..base()
        },
        QueueSpec {
            receive_wait_s: 21,
            ..base()
        },
        QueueSpec {
            redrive_policy: Some(RedrivePolicy {
                dead_letter_queue: "dlq".into(),
                max_receive_count: 0,
            }),
            ..base()
        },
    ];
    for spec in cases {
        refused(
            client.put_queue("jobs", &spec).await,
            StatusCode::BAD_REQUEST,
        );
    }
    // The bounds themselves are valid.
    let edges = QueueSpec {
        visibility_timeout_s: 43_200,
        delay_s: 900,
        retention_s: 1,
        receive_wait_s: 20,
        ..base()
    };
    client.put_queue("jobs", &edges).await.unwrap();
    refused(
        client
            .put_queue(
                "other",
                &QueueSpec {
                    redrive_policy: Some(RedrivePolicy {
                        dead_letter_queue: "missing".into(),
                        max_receive_count: 3,
                    }),
                    ..base()
                },
            )
            .await,
        StatusCode::BAD_REQUEST,
    );
}

#[tokio::test]
async fn invalid_filter_policy_is_refused_with_400() {
    let server = server_with_topic_and_queue().await;
    let mut spec = SubscriptionSpec::to_queue("jobs");
    spec.filter_policy = Some(json!({"color": "red"}));

    let problem = refused(
        server.client.put_subscription("orders", "bad", &spec).await,
        StatusCode::BAD_REQUEST,
    );
    assert!(problem.detail.contains("color"), "{problem:?}");
}

#[tokio::test]
async fn malformed_receipt_is_refused_with_400_naming_it() {
    let server = server_with_topic_and_queue().await;
    let client = &server.client;

    let problem = refused(
        client.ack("jobs", &["not-a-receipt".to_owned()]).await,
        StatusCode::BAD_REQUEST,
    );
    assert!(problem.detail.contains("not-a-receipt"), "{problem:?}");
    refused(
        client.change_visibility("jobs", "not-a-receipt", 0).await,
        StatusCode::BAD_REQUEST,
    );
}

#[tokio::test]
async fn stale_receipt_is_refused_with_410_listing_the_receipts_that_succeeded() {
    let server = server_with_topic_and_queue().await;
    let client = &server.client;
    for body in ["a", "b"] {
        client
            .send("jobs", &SendRequest::new(json!(body)))
            .await
            .unwrap();
    }
    // Visibility 0: visible again at once, so the next receive makes these receipts stale.
    let first = client
        .receive("jobs", &ReceiveRequest::new(10).visibility_timeout_s(0))
        .await
        .unwrap();
    assert_eq!(first.len(), 2);
    let second = client
        .receive("jobs", &ReceiveRequest::new(10))
        .await
        .unwrap();
    assert_eq!(second.len(), 2);
    let stale = first
        .iter()
        .find(|m| m.message == json!("a"))
        .unwrap()
        .receipt
        .clone();
    let fresh = second
        .iter()
        .find(|m| m.message == json!("b"))
        .unwrap()
        .receipt
        .clone();

    let problem = refused(
        client.ack("jobs", &[stale.clone(), fresh.clone()]).await,
        StatusCode::GONE,
    );

    assert!(problem.detail.contains(&stale), "{problem:?}");
    assert_eq!(
        problem
            .acked
            .expect("the problem lists what was acknowledged"),
        vec![fresh.clone()]
    );
    // `b` is deleted; `a` is still in flight under its newer receipt.
    let info = client.get_queue("jobs").await.unwrap();
    assert_eq!(
        (info.approximate_visible, info.approximate_in_flight),
        (0, 1)
    );
}

#[tokio::test]
async fn ack_of_an_already_deleted_message_is_refused_with_410() {
    let server = server_with_topic_and_queue().await;
    let client = &server.client;
    client
        .send("jobs", &SendRequest::new(json!(1)))
        .await
        .unwrap();
    let received = client
        .receive("jobs", &ReceiveRequest::new(1))
        .await
        .unwrap();
    let receipt = vec![received[0].receipt.clone()];
    assert_eq!(client.ack("jobs", &receipt).await.unwrap(), 1);

    let problem = refused(client.ack("jobs", &receipt).await, StatusCode::GONE);

    assert!(
        problem.acked.as_ref().is_none_or(Vec::is_empty),
        "{problem:?}"
    );
    refused(
        client.change_visibility("jobs", &receipt[0], 0).await,
        StatusCode::GONE,
    );
}

#[tokio::test]
async fn publish_batch_over_one_hundred_entries_is_refused() {
    let server = server_with_topic_and_queue().await;
    let entries: Vec<_> = (0..101)
        .map(|n| PublishRequest::new(json!(n)).id(format!("e{n}")))
        .collect();

    refused(
        server.client.publish_batch("orders", &entries).await,
        StatusCode::BAD_REQUEST,
    );

    let info = server.client.get_queue("jobs").await.unwrap();
    assert_eq!(
        info.approximate_visible, 0,
        "a refused batch stored messages"
    );
}

#[tokio::test]
async fn batch_with_an_entry_id_used_twice_is_refused_naming_it() {
    let server = server_with_topic_and_queue().await;
    let client = &server.client;

    let publish = [
        PublishRequest::new(json!(1)).id("a"),
        PublishRequest::new(json!(2)).id("b"),
        PublishRequest::new(json!(3)).id("a"),
    ];
    let problem = refused(
        client.publish_batch("orders", &publish).await,
        StatusCode::BAD_REQUEST,
    );
    assert!(
        problem.detail.contains("entries 0 and 2") && problem.detail.contains("\"a\""),
        "{problem:?}"
    );
    let send = [
        SendRequest::new(json!(1)).id("x"),
        SendRequest::new(json!(2)).id("x"),
    ];
    let problem = refused(
        client.send_batch("jobs", &send).await,
        StatusCode::BAD_REQUEST,
    );
    assert!(problem.detail.contains("\"x\""), "{problem:?}");
    // An entry without an id is named by its position, which a given id may not take.
    let response = post_json(
        &server,
        "/v1/topics/orders/publish-batch",
        &json!({"entries": [{"message": 1}, {"id": "0", "message": 2}]}),
    )
    .await;
    let problem = response.problem(StatusCode::BAD_REQUEST);
    assert!(problem.detail.contains("\"0\""), "{problem:?}");

    let info = client.get_queue("jobs").await.unwrap();
    assert_eq!(
        info.approximate_visible, 0,
        "a refused batch stored messages"
    );
}

#[tokio::test]
async fn subscription_endpoint_of_unknown_kind_is_refused_with_400() {
    let server = server_with_topic_and_queue().await;
    let response = server
        .raw(
            Method::PUT,
            "/v1/topics/orders/subscriptions/odd",
            "application/json",
            json!({"endpoint": {"carrier_pigeon": "coop"}}).to_string(),
        )
        .await;
    response.problem(StatusCode::BAD_REQUEST);
    // The typed form of a valid endpoint still works.
    server
        .client
        .put_subscription(
            "orders",
            "ok",
            &SubscriptionSpec {
                endpoint: Endpoint::Queue("jobs".into()),
                ..SubscriptionSpec::to_queue("jobs")
            },
        )
        .await
        .unwrap();
}

/// Asserts exit code 2 and that stderr names each of `expected` and the config file.
async fn assert_config_refused(config: &str, expected: &[&str]) {
    let (status, stderr) = run_server_expecting_exit(config).await;
    assert_eq!(
        status.code(),
        Some(2),
        "exit status {status}; stderr:\n{stderr}"
    );
    assert!(
        stderr.contains("switchyard.toml"),
        "stderr does not name the config file:\n{stderr}"
    );
    let missing: Vec<&&str> = expected.iter().filter(|e| !stderr.contains(**e)).collect();
    assert!(
        missing.is_empty(),
        "stderr does not mention {missing:?}:\n{stderr}"
    );
}

#[tokio::test]
async fn config_with_unknown_keys_stops_the_server_with_exit_2_listing_each() {
    let config = r#"
[topics.orders]
colour = "red"

[queues.jobs]
visibility_timeout = 5
"#;
    assert_config_refused(config, &["colour", "visibility_timeout"]).await;
}

#[tokio::test]
async fn config_with_dangling_references_stops_the_server_with_exit_2_listing_each() {
    let config = r#"
[topics.orders]

[queues.jobs]
redrive_policy = { dead_letter_queue = "missing-dlq", max_receive_count = 3 }

[topics.orders.subscriptions.billing]
endpoint = { queue = "missing-queue" }
"#;
    assert_config_refused(config, &["missing-dlq", "missing-queue"]).await;
}

#[tokio::test]
async fn config_with_unknown_keys_and_dangling_references_lists_every_error() {
    let config = r#"
[topics.orders]
colour = "red"

[queues.jobs]
redrive_policy = { dead_letter_queue = "missing-dlq", max_receive_count = 3 }

[topics.orders.subscriptions.billing]
endpoint = { queue = "missing-queue" }
"#;
    assert_config_refused(config, &["colour", "missing-dlq", "missing-queue"]).await;
}

#[tokio::test]
async fn config_that_is_not_toml_stops_the_server_with_exit_2() {
    assert_config_refused("[topics.orders\nfifo = ", &[]).await;
}

#[tokio::test]
async fn cli_prints_the_server_problem_and_exits_1() {
    let server = spawn_server(None).await;

    let output = server.cli(&["publish", "nope", "--message", "1"], "").await;

    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        stderr.contains("nope"),
        "the detail names the topic: {stderr}"
    );
    assert!(output.stdout.is_empty());
}

#[tokio::test]
async fn cli_refuses_bad_arguments_with_exit_2() {
    let server = spawn_server(None).await;
    server
        .client
        .put_queue("jobs", &QueueSpec::default())
        .await
        .unwrap();

    for args in [
        &["send", "jobs", "--message", "{not json"][..],
        &["send", "jobs", "--message", "1", "--attr", "no-equals-sign"],
        &["send", "jobs", "--message", "1", "--attr", "n:Number=abc"],
        &["receive", "jobs", "--max", "11"],
        &["send", "jobs"],
    ] {
        let output = server.cli(args, "").await;
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
    }
    let lines = server
        .cli(&["send", "jobs", "--lines"], "1\nnot json\n")
        .await;
    assert_eq!(lines.status.code(), Some(2), "{lines:?}");
    assert_eq!(
        server
            .client
            .get_queue("jobs")
            .await
            .unwrap()
            .approximate_visible,
        1,
        "the valid line was still sent"
    );
}
