//! Topics end to end: fan-out to queue subscriptions, filter policies, delivery shapes,
//! batch publish, schemas, FIFO deduplication, idempotent PUT and the config file.
//! Each behaviour test runs on both backends (`NAME::embedded`, `NAME::nats`).

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use switchyard::client::Client;
use switchyard::wire::{
    FilterScope, PublishRequest, QueueSpec, ReceiveRequest, ReceivedMessage, SnsAttribute,
    SubscriptionSpec, TopicSpec,
};

use crate::harness::{
    TestServer, drain, envelope_message, receive_count, refused, spawn_server, topic_with_queues,
};

crate::contract::on_both_backends!(
    one_publish_reaches_the_unfiltered_and_the_matching_subscriptions_only,
    filter_policies_select_by_attribute_and_by_body,
    envelope_delivery_wraps_the_message_with_topic_subscription_and_attributes,
    raw_delivery_delivers_the_published_message_with_its_attributes,
    publish_batch_stores_valid_entries_and_reports_each_failure,
    publish_batch_of_one_hundred_entries_delivers_every_entry,
    publish_violating_the_schema_is_refused_naming_the_failing_json_pointer,
    put_topic_twice_with_the_same_body_succeeds,
    put_topic_changing_fifo_is_refused_with_409_and_leaves_it_unchanged,
    put_queue_changing_fifo_is_refused_with_409,
    put_queue_with_a_changed_mutable_field_updates_it,
    subscriptions_are_listed_described_and_deleted,
    deleted_topic_refuses_publishes_with_404,
    fifo_topic_drops_a_publish_with_a_repeated_dedup_id,
    fifo_topic_with_content_based_dedup_drops_identical_bodies,
);

/// Long enough for a handful of receives on a loaded machine.
const RECEIVE_WITHIN: Duration = Duration::from_secs(10);

async fn assert_empty(client: &Client, queue: &str) {
    let extra = client
        .receive(queue, &ReceiveRequest::new(10))
        .await
        .unwrap();
    assert!(
        extra.is_empty(),
        "{queue} got messages it should not: {extra:?}"
    );
}

fn envelope_ids(messages: &[ReceivedMessage]) -> BTreeSet<String> {
    messages
        .iter()
        .map(|m| m.notification().expect("enveloped").message_id)
        .collect()
}

async fn one_publish_reaches_the_unfiltered_and_the_matching_subscriptions_only(
    server: &TestServer,
) {
    let client = &server.client;
    topic_with_queues(
        client,
        "orders",
        &[
            ("everything", SubscriptionSpec::to_queue("everything")),
            (
                "red-only",
                SubscriptionSpec::to_queue("red-only")
                    .filter(FilterScope::MessageAttributes, json!({"color": ["red"]})),
            ),
            (
                "big-only",
                SubscriptionSpec::to_queue("big-only")
                    .filter(FilterScope::MessageBody, json!({"size": ["big"]})),
            ),
        ],
    )
    .await;

    let id = client
        .publish(
            "orders",
            &PublishRequest::new(json!({"size": "small", "n": 1})).attribute("color", "red"),
        )
        .await
        .unwrap();

    // A publish is answered only once every matched delivery is stored: no waiting needed.
    for queue in ["everything", "red-only"] {
        let got = receive_count(client, queue, 1, RECEIVE_WITHIN).await;
        assert_eq!(envelope_ids(&got), BTreeSet::from([id.clone()]), "{queue}");
    }
    assert_empty(client, "big-only").await;
}

async fn filter_policies_select_by_attribute_and_by_body(server: &TestServer) {
    let client = &server.client;
    topic_with_queues(
        client,
        "orders",
        &[
            ("everything", SubscriptionSpec::to_queue("everything")),
            (
                "red-only",
                SubscriptionSpec::to_queue("red-only")
                    .filter(FilterScope::MessageAttributes, json!({"color": ["red"]})),
            ),
            (
                "big-only",
                SubscriptionSpec::to_queue("big-only")
                    .filter(FilterScope::MessageBody, json!({"size": ["big"]})),
            ),
        ],
    )
    .await;
    let publish = |size: &str, color: &str| {
        PublishRequest::new(json!({"size": size})).attribute("color", color)
    };

    let red_small = client
        .publish("orders", &publish("small", "red"))
        .await
        .unwrap();
    let blue_big = client
        .publish("orders", &publish("big", "blue"))
        .await
        .unwrap();
    let green_small = client
        .publish("orders", &publish("small", "green"))
        .await
        .unwrap();
    // The body-scope policy looks at the body only: `size` as an attribute does not match.
    let big_as_attribute = client
        .publish(
            "orders",
            &PublishRequest::new(json!({"size": "small"})).attribute("size", "big"),
        )
        .await
        .unwrap();

    let everything = receive_count(client, "everything", 4, RECEIVE_WITHIN).await;
    assert_eq!(
        envelope_ids(&everything),
        BTreeSet::from([
            red_small.clone(),
            blue_big.clone(),
            green_small,
            big_as_attribute
        ])
    );
    let red = receive_count(client, "red-only", 1, RECEIVE_WITHIN).await;
    assert_eq!(envelope_ids(&red), BTreeSet::from([red_small]));
    let big = receive_count(client, "big-only", 1, RECEIVE_WITHIN).await;
    assert_eq!(envelope_ids(&big), BTreeSet::from([blue_big]));
    assert_empty(client, "red-only").await;
    assert_empty(client, "big-only").await;
}

async fn envelope_delivery_wraps_the_message_with_topic_subscription_and_attributes(
    server: &TestServer,
) {
    let client = &server.client;
    topic_with_queues(
        client,
        "orders",
        &[("audit", SubscriptionSpec::to_queue("audit"))],
    )
    .await;

    let id = client
        .publish(
            "orders",
            &PublishRequest::new(json!({"id": 7, "items": ["a", "b"]}))
                .attribute("color", "red")
                .attribute("count", 5),
        )
        .await
        .unwrap();

    let received = receive_count(client, "audit", 1, RECEIVE_WITHIN).await;
    let envelope = received[0].notification().expect("a notification envelope");
    assert_eq!(envelope.kind, "Notification");
    assert_eq!(envelope.message_id, id);
    assert_eq!(envelope.topic, "orders");
    assert_eq!(envelope.subscription, "audit");
    assert_eq!(envelope.message, json!({"id": 7, "items": ["a", "b"]}));
    assert_eq!(envelope.attributes["color"], SnsAttribute::string("red"));
    assert_eq!(envelope.attributes["count"], SnsAttribute::number("5"));
    assert!(!envelope.published_at.is_empty(), "published_at is missing");
    assert_eq!(received[0].receive_count, 1);
}

async fn raw_delivery_delivers_the_published_message_with_its_attributes(server: &TestServer) {
    let client = &server.client;
    topic_with_queues(
        client,
        "orders",
        &[("billing", SubscriptionSpec::to_queue("billing").raw())],
    )
    .await;

    client
        .publish(
            "orders",
            &PublishRequest::new(json!({"id": 7})).attribute("color", "red"),
        )
        .await
        .unwrap();

    let received = receive_count(client, "billing", 1, RECEIVE_WITHIN).await;
    assert_eq!(received[0].message, json!({"id": 7}));
    assert_eq!(received[0].attributes["color"], SnsAttribute::string("red"));
}

async fn publish_batch_stores_valid_entries_and_reports_each_failure(server: &TestServer) {
    let client = &server.client;
    let schema = json!({
        "type": "object",
        "required": ["id"],
        "properties": {"id": {"type": "integer"}}
    });
    client
        .put_topic(
            "orders",
            &TopicSpec {
                schema: Some(schema),
                ..TopicSpec::default()
            },
        )
        .await
        .unwrap();
    client
        .put_queue("billing", &QueueSpec::default())
        .await
        .unwrap();
    client
        .put_subscription(
            "orders",
            "billing",
            &SubscriptionSpec::to_queue("billing").raw(),
        )
        .await
        .unwrap();

    let result = client
        .publish_batch(
            "orders",
            &[
                PublishRequest::new(json!({"id": 1})).id("e1"),
                PublishRequest::new(json!({"id": "not a number"})).id("e2"),
                PublishRequest::new(json!({"id": 3})).id("e3"),
            ],
        )
        .await
        .unwrap();

    let stored: BTreeSet<&str> = result.successful.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(stored, BTreeSet::from(["e1", "e3"]));
    assert_eq!(result.failed.len(), 1, "{result:?}");
    assert_eq!(result.failed[0].id, "e2");
    assert_eq!(result.failed[0].status, 422);
    assert!(
        result.failed[0].detail.contains("/id"),
        "{:?}",
        result.failed[0]
    );
    let bodies: BTreeSet<String> = receive_count(client, "billing", 2, RECEIVE_WITHIN)
        .await
        .iter()
        .map(|m| m.message.to_string())
        .collect();
    assert_eq!(
        bodies,
        BTreeSet::from([json!({"id": 1}).to_string(), json!({"id": 3}).to_string()])
    );
    assert_empty(client, "billing").await;
}

async fn publish_batch_of_one_hundred_entries_delivers_every_entry(server: &TestServer) {
    let client = &server.client;
    topic_with_queues(
        client,
        "orders",
        &[("billing", SubscriptionSpec::to_queue("billing"))],
    )
    .await;
    let entries: Vec<_> = (0..100)
        .map(|n| PublishRequest::new(json!({"n": n})).id(format!("e{n}")))
        .collect();

    let result = client.publish_batch("orders", &entries).await.unwrap();

    assert!(result.failed.is_empty(), "{:?}", result.failed);
    assert_eq!(result.successful.len(), 100);
    let published: BTreeSet<String> = result
        .successful
        .iter()
        .map(|s| s.message_id.clone())
        .collect();
    let received = receive_count(client, "billing", 100, RECEIVE_WITHIN).await;
    assert_eq!(envelope_ids(&received), published);
}

async fn publish_violating_the_schema_is_refused_naming_the_failing_json_pointer(
    server: &TestServer,
) {
    let client = &server.client;
    let schema = json!({
        "type": "object",
        "required": ["amount"],
        "properties": {"amount": {"type": "number", "minimum": 0}}
    });
    client
        .put_topic(
            "payments",
            &TopicSpec {
                schema: Some(schema),
                ..TopicSpec::default()
            },
        )
        .await
        .unwrap();
    client
        .put_queue("ledger", &QueueSpec::default())
        .await
        .unwrap();
    client
        .put_subscription(
            "payments",
            "ledger",
            &SubscriptionSpec::to_queue("ledger").raw(),
        )
        .await
        .unwrap();

    let problem = refused(
        client
            .publish("payments", &PublishRequest::new(json!({"amount": -5})))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    );
    assert!(problem.detail.contains("/amount"), "{problem:?}");
    client
        .publish("payments", &PublishRequest::new(json!({"amount": 5})))
        .await
        .unwrap();

    let received = receive_count(client, "ledger", 1, RECEIVE_WITHIN).await;
    assert_eq!(received[0].message, json!({"amount": 5}));
    assert_empty(client, "ledger").await;
}

async fn put_topic_twice_with_the_same_body_succeeds(server: &TestServer) {
    let client = &server.client;
    let spec = TopicSpec {
        schema: Some(json!({"type": "object"})),
        ..TopicSpec::fifo()
    };

    client.put_topic("orders.fifo", &spec).await.unwrap();
    client.put_topic("orders.fifo", &spec).await.unwrap();

    let info = client.get_topic("orders.fifo").await.unwrap();
    assert_eq!(info.spec, spec);
}

async fn put_topic_changing_fifo_is_refused_with_409_and_leaves_it_unchanged(server: &TestServer) {
    let client = &server.client;
    client
        .put_topic("orders.fifo", &TopicSpec::fifo())
        .await
        .unwrap();

    let problem = refused(
        client.put_topic("orders.fifo", &TopicSpec::default()).await,
        StatusCode::CONFLICT,
    );

    assert!(problem.detail.contains("fifo"), "{problem:?}");
    assert!(client.get_topic("orders.fifo").await.unwrap().spec.fifo);
}

async fn put_queue_changing_fifo_is_refused_with_409(server: &TestServer) {
    let client = &server.client;
    client
        .put_queue("jobs.fifo", &QueueSpec::fifo())
        .await
        .unwrap();
    client
        .put_queue("jobs.fifo", &QueueSpec::fifo())
        .await
        .unwrap();

    refused(
        client.put_queue("jobs.fifo", &QueueSpec::default()).await,
        StatusCode::CONFLICT,
    );

    assert!(client.get_queue("jobs.fifo").await.unwrap().spec.fifo);
}

async fn put_queue_with_a_changed_mutable_field_updates_it(server: &TestServer) {
    let client = &server.client;
    client
        .put_queue("jobs", &QueueSpec::default())
        .await
        .unwrap();

    let changed = QueueSpec {
        visibility_timeout_s: 5,
        receive_wait_s: 2,
        ..QueueSpec::default()
    };
    client.put_queue("jobs", &changed).await.unwrap();

    assert_eq!(client.get_queue("jobs").await.unwrap().spec, changed);
}

async fn subscriptions_are_listed_described_and_deleted(server: &TestServer) {
    let client = &server.client;
    let red = SubscriptionSpec::to_queue("red")
        .filter(FilterScope::MessageAttributes, json!({"color": ["red"]}))
        .raw();
    topic_with_queues(
        client,
        "orders",
        &[
            ("all", SubscriptionSpec::to_queue("all")),
            ("red", red.clone()),
        ],
    )
    .await;

    let listed: BTreeSet<String> = client
        .list_subscriptions("orders")
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(listed, BTreeSet::from(["all".into(), "red".into()]));
    assert_eq!(
        client.get_subscription("orders", "red").await.unwrap().spec,
        red
    );

    client.delete_subscription("orders", "red").await.unwrap();
    refused(
        client.get_subscription("orders", "red").await,
        StatusCode::NOT_FOUND,
    );
    client
        .publish(
            "orders",
            &PublishRequest::new(json!(1)).attribute("color", "red"),
        )
        .await
        .unwrap();
    receive_count(client, "all", 1, RECEIVE_WITHIN).await;
    assert_empty(client, "red").await;
}

async fn deleted_topic_refuses_publishes_with_404(server: &TestServer) {
    let client = &server.client;
    client
        .put_topic("orders", &TopicSpec::default())
        .await
        .unwrap();

    client.delete_topic("orders").await.unwrap();

    refused(client.get_topic("orders").await, StatusCode::NOT_FOUND);
    refused(
        client
            .publish("orders", &PublishRequest::new(json!(1)))
            .await,
        StatusCode::NOT_FOUND,
    );
}

/// FIFO topic → FIFO queue, raw delivery, so bodies come back as published.
async fn fifo_pipeline(client: &Client, content_based_dedup: bool) {
    client
        .put_topic(
            "orders.fifo",
            &TopicSpec {
                content_based_dedup,
                ..TopicSpec::fifo()
            },
        )
        .await
        .unwrap();
    client
        .put_queue("billing.fifo", &QueueSpec::fifo())
        .await
        .unwrap();
    client
        .put_subscription(
            "orders.fifo",
            "billing",
            &SubscriptionSpec::to_queue("billing.fifo").raw(),
        )
        .await
        .unwrap();
}

fn bodies(messages: &[ReceivedMessage]) -> Vec<Value> {
    messages.iter().map(|m| m.message.clone()).collect()
}

async fn fifo_topic_drops_a_publish_with_a_repeated_dedup_id(server: &TestServer) {
    let client = &server.client;
    fifo_pipeline(client, false).await;
    let publish = |n: i64, dedup: &str| {
        PublishRequest::new(json!({"n": n}))
            .group_id("g")
            .dedup_id(dedup)
    };

    client
        .publish("orders.fifo", &publish(1, "d1"))
        .await
        .unwrap();
    client
        .publish("orders.fifo", &publish(2, "d1"))
        .await
        .unwrap();
    client
        .publish("orders.fifo", &publish(3, "d2"))
        .await
        .unwrap();

    let received = drain(client, "billing.fifo", 10).await;
    assert_eq!(bodies(&received), vec![json!({"n": 1}), json!({"n": 3})]);
}

async fn fifo_topic_with_content_based_dedup_drops_identical_bodies(server: &TestServer) {
    let client = &server.client;
    fifo_pipeline(client, true).await;

    for body in [json!({"a": 1}), json!({"a": 1}), json!({"a": 2})] {
        client
            .publish("orders.fifo", &PublishRequest::new(body).group_id("g"))
            .await
            .unwrap();
    }

    let received = drain(client, "billing.fifo", 10).await;
    assert_eq!(bodies(&received), vec![json!({"a": 1}), json!({"a": 2})]);
}

/// Every kind of resource, cross-referenced, in the file format of the config.
const CONFIG: &str = r#"
[topics.orders]
fifo = false

[queues.billing]
visibility_timeout_s = 5

[queues.shipping-dlq]

[queues.shipping]
redrive_policy = { dead_letter_queue = "shipping-dlq", max_receive_count = 3 }

[topics.orders.subscriptions.billing]
endpoint = { queue = "billing" }
raw_message_delivery = true

[topics.orders.subscriptions.shipping]
endpoint = { queue = "shipping" }
filter_policy = { kind = ["ship"] }
filter_policy_scope = "MessageBody"
"#;

async fn assert_config_resources(client: &Client) {
    client.get_topic("orders").await.unwrap();
    assert_eq!(
        client
            .get_queue("billing")
            .await
            .unwrap()
            .spec
            .visibility_timeout_s,
        5
    );
    let shipping = client.get_queue("shipping").await.unwrap();
    let redrive = shipping
        .spec
        .redrive_policy
        .expect("shipping has a redrive policy");
    assert_eq!(redrive.dead_letter_queue, "shipping-dlq");
    assert_eq!(redrive.max_receive_count, 3);
    client.get_queue("shipping-dlq").await.unwrap();
    let billing = client.get_subscription("orders", "billing").await.unwrap();
    assert!(billing.spec.raw_message_delivery);
    let shipping = client.get_subscription("orders", "shipping").await.unwrap();
    assert_eq!(shipping.spec.filter_policy, Some(json!({"kind": ["ship"]})));
    assert_eq!(shipping.spec.filter_policy_scope, FilterScope::MessageBody);
}

#[tokio::test]
async fn config_file_resources_exist_at_start_and_survive_restart_with_their_messages() {
    let mut server = spawn_server(Some(CONFIG)).await;
    assert_config_resources(&server.client).await;
    server
        .client
        .publish(
            "orders",
            &PublishRequest::new(json!({"kind": "ship", "id": 1})),
        )
        .await
        .unwrap();
    server
        .client
        .publish(
            "orders",
            &PublishRequest::new(json!({"kind": "refund", "id": 2})),
        )
        .await
        .unwrap();

    server.restart().await;

    let client = &server.client;
    assert_config_resources(client).await;
    let billing = drain(client, "billing", 10).await;
    let ids: BTreeSet<i64> = billing
        .iter()
        .map(|m| m.message["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, BTreeSet::from([1, 2]));
    let shipping = drain(client, "shipping", 10).await;
    assert_eq!(shipping.len(), 1, "{shipping:?}");
    assert_eq!(envelope_message(&shipping[0])["id"], 1);
}

#[tokio::test]
async fn resources_created_over_http_survive_restart() {
    let mut server = spawn_server(None).await;
    let queue = QueueSpec {
        visibility_timeout_s: 7,
        ..QueueSpec::default()
    };
    server
        .client
        .put_topic("orders", &TopicSpec::default())
        .await
        .unwrap();
    server.client.put_queue("billing", &queue).await.unwrap();
    server
        .client
        .put_subscription("orders", "billing", &SubscriptionSpec::to_queue("billing"))
        .await
        .unwrap();

    server.restart().await;

    let client = &server.client;
    assert_eq!(client.get_queue("billing").await.unwrap().spec, queue);
    client.get_subscription("orders", "billing").await.unwrap();
    client
        .publish("orders", &PublishRequest::new(json!(1)))
        .await
        .unwrap();
    receive_count(client, "billing", 1, RECEIVE_WITHIN).await;
}
