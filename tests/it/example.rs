//! The order fan-out example (`examples/order-fanout/`), run as the README runs it: its
//! config with its module paths, and the guests from `guests/`; only the address of the
//! mail catcher follows the test server's port.

use crate::guests;
use crate::harness::{eventually, spawn_server_with_args};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

#[tokio::test]
async fn one_order_fans_out_to_email_fraud_and_shipping_and_fraud_flags_it() {
    // Builds the guests the config refers to.
    guests::path("fraud");
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/order-fanout/switchyard.toml"
    );
    let server = spawn_server_with_args(None, &["--config", config]).await;
    // The config sends mail to the outbox queue of a router on 8088; this one listens on
    // a port of its own.
    let port = server.base_url.rsplit(':').next().unwrap().to_string();
    server
        .ok(
            Method::PUT,
            "/v1/functions/email",
            json!({"module": guests::path("email"),
                   "env": {"sender": "orders@shop.example",
                           "mail_url": format!("http://127.0.0.1:{port}/v1/queues/outbox/messages")},
                   "allowed_hosts": [format!("http://127.0.0.1:{port}")]}),
        )
        .await;
    let order = json!({"order_id": "o-1", "customer_email": "ana@example.com", "total": 950,
                       "country": "NL"});
    server
        .ok(
            Method::POST,
            "/v1/topics/orders/publish",
            json!({"message": order, "attributes": {"event": "order_placed", "delivery": "parcel"}}),
        )
        .await;
    // email, fraud and shipping each handled it once.
    eventually(
        Duration::from_secs(30),
        "three handlers succeed",
        || async { (server.metric("switchyard_delivered_total").await? == 3).then_some(()) },
    )
    .await;
    let flagged = eventually(Duration::from_secs(30), "fraud flags the order", || async {
        let v = server
            .ok(
                Method::POST,
                "/v1/queues/flagged/receive",
                json!({"max_messages": 10}),
            )
            .await;
        v["messages"].as_array().filter(|m| !m.is_empty()).cloned()
    })
    .await;
    assert!(
        flagged[0]["message"].to_string().contains("o-1"),
        "{flagged:?}"
    );
    let mail = server
        .ok(
            Method::POST,
            "/v1/queues/outbox/receive",
            json!({"max_messages": 10}),
        )
        .await;
    assert_eq!(
        mail["messages"][0]["message"],
        json!({"from": "orders@shop.example", "to": "ana@example.com",
               "subject": "Order o-1 is confirmed", "text": "Thank you for your order o-1."}),
        "{mail}"
    );
    let audit = server
        .ok(
            Method::POST,
            "/v1/queues/orders-audit/receive",
            json!({"max_messages": 10}),
        )
        .await;
    assert_eq!(audit["messages"][0]["message"], order);
    let dlq = server
        .ok(Method::GET, "/v1/queues/orders-dlq", Value::Null)
        .await;
    assert_eq!(dlq["approximate_visible"], 0, "no handler failed");
}
