//! Queues end to end: visibility, long polling, delays, dead-letter queues and redrive,
//! FIFO ordering and deduplication, retention, purge and counts, batch send.
//! Each behaviour test runs on both backends (`NAME::embedded`, `NAME::nats`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use switchyard::client::Client;
use switchyard::wire::{
    QueueInfo, QueueSpec, ReceiveRequest, ReceivedMessage, RedrivePolicy, SendRequest, SnsAttribute,
};

use crate::harness::{TestServer, drain, eventually, receive_count};

crate::contract::on_both_backends!(
    message_reappears_after_its_visibility_timeout_with_a_higher_receive_count,
    receive_with_its_own_visibility_timeout_overrides_the_queue_default,
    changing_visibility_to_zero_makes_the_message_visible_at_once,
    long_poll_returns_as_soon_as_a_message_is_sent,
    long_poll_on_an_empty_queue_returns_empty_after_the_wait,
    queue_delay_hides_new_messages_until_it_passes,
    per_message_delay_hides_only_that_message,
    message_moves_to_the_dead_letter_queue_after_max_receives_and_redrive_returns_it,
    fifo_queue_delivers_each_group_in_send_order,
    fifo_queue_holds_back_a_group_while_its_messages_are_in_flight,
    fifo_queue_drops_a_send_with_a_repeated_dedup_id,
    messages_older_than_the_retention_period_are_dropped,
    queue_counts_visible_in_flight_and_delayed_messages,
    purge_deletes_every_message,
    acked_messages_are_deleted_for_good,
    sent_attributes_come_back_in_sns_form,
    send_batch_stores_each_valid_entry_and_reports_oversized_ones,
    get_queue_reports_its_configuration,
    cli_send_and_receive_print_one_json_line_per_message,
);

/// Deadline for a condition that a one-second timer makes true: generous for a loaded CI
/// machine, short enough that a server that never fires fails the test quickly.
const TIMER_WITHIN: Duration = Duration::from_secs(15);

/// Deadline for messages that are already stored to come back from receives.
const RECEIVE_WITHIN: Duration = Duration::from_secs(10);

async fn queue(client: &Client, name: &str, spec: QueueSpec) {
    client.put_queue(name, &spec).await.unwrap();
}

async fn receive_one_now(
    client: &Client,
    queue: &str,
    receive: &ReceiveRequest,
) -> Option<ReceivedMessage> {
    let mut messages = client.receive(queue, receive).await.unwrap();
    assert!(messages.len() <= 1, "asked for one, got {messages:?}");
    messages.pop()
}

async fn counts(client: &Client, queue: &str) -> (u64, u64, u64) {
    let QueueInfo {
        approximate_visible,
        approximate_in_flight,
        approximate_delayed,
        ..
    } = client.get_queue(queue).await.unwrap();
    (
        approximate_visible,
        approximate_in_flight,
        approximate_delayed,
    )
}

async fn message_reappears_after_its_visibility_timeout_with_a_higher_receive_count(
    server: &TestServer,
) {
    let client = &server.client;
    let spec = QueueSpec {
        visibility_timeout_s: 1,
        ..QueueSpec::default()
    };
    queue(client, "jobs", spec).await;
    client
        .send("jobs", &SendRequest::new(json!("work")))
        .await
        .unwrap();

    let first = receive_one_now(client, "jobs", &ReceiveRequest::new(1))
        .await
        .expect("a message");
    assert_eq!(first.receive_count, 1);
    assert!(
        receive_one_now(client, "jobs", &ReceiveRequest::new(1))
            .await
            .is_none(),
        "message visible again while its receipt is fresh"
    );

    let again = eventually(TIMER_WITHIN, "message visible again", || async {
        receive_one_now(client, "jobs", &ReceiveRequest::new(1)).await
    })
    .await;
    assert_eq!(again.message_id, first.message_id);
    assert_eq!(again.message, json!("work"));
    assert_eq!(again.receive_count, 2);
    assert_ne!(
        again.receipt, first.receipt,
        "a new receive gets a new receipt"
    );
}

async fn receive_with_its_own_visibility_timeout_overrides_the_queue_default(server: &TestServer) {
    let client = &server.client;
    queue(client, "jobs", QueueSpec::default()).await;
    client
        .send("jobs", &SendRequest::new(json!(1)))
        .await
        .unwrap();

    let first = receive_one_now(
        client,
        "jobs",
        &ReceiveRequest::new(1).visibility_timeout_s(1),
    )
    .await
    .expect("a message");

    let again = eventually(TIMER_WITHIN, "message visible again", || async {
        receive_one_now(client, "jobs", &ReceiveRequest::new(1)).await
    })
    .await;
    assert_eq!(again.message_id, first.message_id);
    assert_eq!(again.receive_count, 2);
}

async fn changing_visibility_to_zero_makes_the_message_visible_at_once(server: &TestServer) {
    let client = &server.client;
    queue(client, "jobs", QueueSpec::default()).await;
    client
        .send("jobs", &SendRequest::new(json!(1)))
        .await
        .unwrap();
    let first = receive_one_now(client, "jobs", &ReceiveRequest::new(1))
        .await
        .expect("a message");
    assert!(
        receive_one_now(client, "jobs", &ReceiveRequest::new(1))
            .await
            .is_none()
    );

    client
        .change_visibility("jobs", &first.receipt, 0)
        .await
        .unwrap();

    let again = receive_one_now(client, "jobs", &ReceiveRequest::new(1))
        .await
        .expect("visible at once");
    assert_eq!(again.message_id, first.message_id);
    assert_eq!(again.receive_count, 2);
}

async fn long_poll_returns_as_soon_as_a_message_is_sent(server: &TestServer) {
    let client = &server.client;
    queue(client, "jobs", QueueSpec::default()).await;
    let wait_s = 10;
    let receiver = {
        let client = client.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let received = client
                .receive("jobs", &ReceiveRequest::new(1).wait_s(wait_s))
                .await;
            (received, started.elapsed())
        })
    };
    // Sent only once the receive is waiting on the server, so it is the send that wakes it.
    eventually(Duration::from_secs(10), "the receive to wait", || async {
        (server.metric("switchyard_receives_waiting").await? == 1).then_some(())
    })
    .await;
    assert!(
        !receiver.is_finished(),
        "a receive on an empty queue with wait_s={wait_s} returned at once"
    );

    client
        .send("jobs", &SendRequest::new(json!("wake up")))
        .await
        .unwrap();

    let (received, elapsed) = receiver.await.unwrap();
    let received = received.unwrap();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].message, json!("wake up"));
    assert!(
        elapsed < Duration::from_secs(wait_s / 2),
        "long poll took {elapsed:?}, so it did not wake on the send"
    );
}

async fn long_poll_on_an_empty_queue_returns_empty_after_the_wait(server: &TestServer) {
    let client = &server.client;
    queue(client, "jobs", QueueSpec::default()).await;

    let started = Instant::now();
    let received = client
        .receive("jobs", &ReceiveRequest::new(1).wait_s(1))
        .await
        .unwrap();

    assert!(received.is_empty());
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(10),
        "a 1 s long poll took {elapsed:?}"
    );
}

async fn queue_delay_hides_new_messages_until_it_passes(server: &TestServer) {
    let client = &server.client;
    // Long enough that the checks right after the send run before it passes.
    let spec = QueueSpec {
        delay_s: 3,
        ..QueueSpec::default()
    };
    queue(client, "later", spec).await;

    client
        .send("later", &SendRequest::new(json!("soon")))
        .await
        .unwrap();

    assert!(
        receive_one_now(client, "later", &ReceiveRequest::new(1))
            .await
            .is_none()
    );
    assert_eq!(counts(client, "later").await, (0, 0, 1));
    let received = eventually(TIMER_WITHIN, "delayed message visible", || async {
        receive_one_now(client, "later", &ReceiveRequest::new(1)).await
    })
    .await;
    assert_eq!(received.message, json!("soon"));
}

async fn per_message_delay_hides_only_that_message(server: &TestServer) {
    let client = &server.client;
    queue(client, "jobs", QueueSpec::default()).await;

    client
        .send("jobs", &SendRequest::new(json!("later")).delay_s(3))
        .await
        .unwrap();
    client
        .send("jobs", &SendRequest::new(json!("now")))
        .await
        .unwrap();

    let now = client
        .receive("jobs", &ReceiveRequest::new(10))
        .await
        .unwrap();
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(now[0].message, json!("now"));
    let later = eventually(TIMER_WITHIN, "delayed message visible", || async {
        receive_one_now(client, "jobs", &ReceiveRequest::new(1)).await
    })
    .await;
    assert_eq!(later.message, json!("later"));
}

async fn message_moves_to_the_dead_letter_queue_after_max_receives_and_redrive_returns_it(
    server: &TestServer,
) {
    let client = &server.client;
    let max_receive_count = 2;
    queue(client, "jobs-dlq", QueueSpec::default()).await;
    let spec = QueueSpec {
        redrive_policy: Some(RedrivePolicy {
            dead_letter_queue: "jobs-dlq".into(),
            max_receive_count,
        }),
        ..QueueSpec::default()
    };
    queue(client, "jobs", spec).await;
    let sent = client
        .send("jobs", &SendRequest::new(json!("poison")))
        .await
        .unwrap();
    // Visibility 0: each received message is visible again at once, as if its consumer
    // failed straight away.
    let fail_fast = ReceiveRequest::new(1).visibility_timeout_s(0);

    for attempt in 1..=max_receive_count {
        let message = receive_one_now(client, "jobs", &fail_fast)
            .await
            .unwrap_or_else(|| panic!("receive {attempt} returned nothing"));
        assert_eq!(message.message_id, sent);
        assert_eq!(message.receive_count, attempt);
    }
    assert!(
        receive_one_now(client, "jobs", &fail_fast).await.is_none(),
        "a message received max_receive_count times was delivered again"
    );

    let dead = eventually(
        RECEIVE_WITHIN,
        "message in the dead-letter queue",
        || async { receive_one_now(client, "jobs-dlq", &fail_fast).await },
    )
    .await;
    assert_eq!(dead.message, json!("poison"));

    assert_eq!(client.redrive("jobs-dlq").await.unwrap(), 1);

    let back = receive_one_now(client, "jobs", &ReceiveRequest::new(1))
        .await
        .expect("redriven message is back in its source queue");
    assert_eq!(back.message, json!("poison"));
    assert_eq!(counts(client, "jobs-dlq").await, (0, 0, 0));
}

/// Sends `(group, n)` messages with unique dedup ids to a FIFO queue.
async fn send_fifo(client: &Client, queue: &str, messages: &[(&str, u32)]) {
    for (group, n) in messages {
        client
            .send(
                queue,
                &SendRequest::new(json!({"group": group, "n": n}))
                    .group_id(*group)
                    .dedup_id(format!("{group}-{n}")),
            )
            .await
            .unwrap();
    }
}

fn ns(messages: &[ReceivedMessage]) -> Vec<(String, u64)> {
    messages
        .iter()
        .map(|m| {
            (
                m.message["group"].as_str().unwrap().to_owned(),
                m.message["n"].as_u64().unwrap(),
            )
        })
        .collect()
}

async fn fifo_queue_delivers_each_group_in_send_order(server: &TestServer) {
    let client = &server.client;
    queue(client, "jobs.fifo", QueueSpec::fifo()).await;
    let interleaved: Vec<(&str, u32)> = (1..=6)
        .flat_map(|n| [("a", n), ("b", n), ("c", n)])
        .collect();
    send_fifo(client, "jobs.fifo", &interleaved).await;

    let received = drain(client, "jobs.fifo", 100).await;

    let mut by_group: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (group, n) in ns(&received) {
        by_group.entry(group).or_default().push(n);
    }
    let in_order: Vec<u64> = (1..=6).collect();
    for group in ["a", "b", "c"] {
        assert_eq!(by_group[group], in_order, "group {group}");
    }
}

async fn fifo_queue_holds_back_a_group_while_its_messages_are_in_flight(server: &TestServer) {
    let client = &server.client;
    queue(client, "jobs.fifo", QueueSpec::fifo()).await;
    send_fifo(client, "jobs.fifo", &[("a", 1), ("a", 2), ("a", 3)]).await;

    let first = client
        .receive("jobs.fifo", &ReceiveRequest::new(2))
        .await
        .unwrap();
    let first_ns = ns(&first);
    assert!(!first.is_empty());
    assert_eq!(first_ns[0], ("a".to_owned(), 1), "{first_ns:?}");
    assert!(
        client
            .receive("jobs.fifo", &ReceiveRequest::new(10))
            .await
            .unwrap()
            .is_empty(),
        "group a delivered more while a batch of it is in flight"
    );

    send_fifo(client, "jobs.fifo", &[("b", 1)]).await;
    let other_group = client
        .receive("jobs.fifo", &ReceiveRequest::new(10))
        .await
        .unwrap();
    assert_eq!(ns(&other_group), vec![("b".to_owned(), 1)]);

    let receipts: Vec<String> = first.iter().map(|m| m.receipt.clone()).collect();
    client.ack("jobs.fifo", &receipts).await.unwrap();
    // The rest of group a, in order (on JetStream one message of a group per receive).
    let rest = drain(client, "jobs.fifo", 3).await;
    let expected: Vec<(String, u64)> = (first.len() as u64 + 1..=3)
        .map(|n| ("a".to_owned(), n))
        .collect();
    assert_eq!(ns(&rest), expected);
}

async fn fifo_queue_drops_a_send_with_a_repeated_dedup_id(server: &TestServer) {
    let client = &server.client;
    queue(client, "jobs.fifo", QueueSpec::fifo()).await;
    let send = |body: Value, dedup: &str| SendRequest::new(body).group_id("g").dedup_id(dedup);

    client
        .send("jobs.fifo", &send(json!("x"), "d1"))
        .await
        .unwrap();
    client
        .send("jobs.fifo", &send(json!("y"), "d1"))
        .await
        .unwrap();
    client
        .send("jobs.fifo", &send(json!("z"), "d2"))
        .await
        .unwrap();

    let bodies: Vec<Value> = drain(client, "jobs.fifo", 10)
        .await
        .into_iter()
        .map(|m| m.message)
        .collect();
    assert_eq!(bodies, vec![json!("x"), json!("z")]);
}

async fn messages_older_than_the_retention_period_are_dropped(server: &TestServer) {
    let client = &server.client;
    let short = QueueSpec {
        retention_s: 1,
        ..QueueSpec::default()
    };
    queue(client, "short", short).await;
    queue(client, "long", QueueSpec::default()).await;
    for name in ["short", "long"] {
        client
            .send(name, &SendRequest::new(json!("old")))
            .await
            .unwrap();
    }
    // Visibility 0 so that looking does not hide the message from the next look.
    let peek = ReceiveRequest::new(1).visibility_timeout_s(0);

    eventually(TIMER_WITHIN, "message dropped after retention", || async {
        receive_one_now(client, "short", &peek)
            .await
            .is_none()
            .then_some(())
    })
    .await;

    assert_eq!(counts(client, "short").await, (0, 0, 0));
    assert!(receive_one_now(client, "long", &peek).await.is_some());
}

/// 5 visible, 2 of them received (in flight), 1 delayed for a minute.
async fn queue_with_every_kind_of_message(client: &Client) {
    queue(client, "jobs", QueueSpec::default()).await;
    for n in 0..5 {
        client
            .send("jobs", &SendRequest::new(json!(n)))
            .await
            .unwrap();
    }
    client
        .send("jobs", &SendRequest::new(json!("delayed")).delay_s(60))
        .await
        .unwrap();
    let received = client
        .receive("jobs", &ReceiveRequest::new(2))
        .await
        .unwrap();
    assert_eq!(received.len(), 2);
}

async fn queue_counts_visible_in_flight_and_delayed_messages(server: &TestServer) {
    let client = &server.client;

    queue_with_every_kind_of_message(client).await;

    eventually(
        RECEIVE_WITHIN,
        "counts 3 visible, 2 in flight, 1 delayed",
        || async { (counts(client, "jobs").await == (3, 2, 1)).then_some(()) },
    )
    .await;
}

async fn purge_deletes_every_message(server: &TestServer) {
    let client = &server.client;
    queue_with_every_kind_of_message(client).await;

    client.purge("jobs").await.unwrap();

    eventually(RECEIVE_WITHIN, "all counts zero after purge", || async {
        (counts(client, "jobs").await == (0, 0, 0)).then_some(())
    })
    .await;
    assert!(
        client
            .receive("jobs", &ReceiveRequest::new(10))
            .await
            .unwrap()
            .is_empty()
    );
    client
        .send("jobs", &SendRequest::new(json!("after")))
        .await
        .unwrap();
    let after = client
        .receive("jobs", &ReceiveRequest::new(10))
        .await
        .unwrap();
    assert_eq!(after.len(), 1, "the queue works after a purge");
}

async fn acked_messages_are_deleted_for_good(server: &TestServer) {
    let client = &server.client;
    let spec = QueueSpec {
        visibility_timeout_s: 1,
        ..QueueSpec::default()
    };
    queue(client, "jobs", spec).await;
    for n in 0..3 {
        client
            .send("jobs", &SendRequest::new(json!(n)))
            .await
            .unwrap();
    }
    let received = receive_count(client, "jobs", 3, RECEIVE_WITHIN).await;
    let receipts: Vec<String> = received.iter().map(|m| m.receipt.clone()).collect();

    assert_eq!(client.ack("jobs", &receipts).await.unwrap(), 3);

    assert_eq!(counts(client, "jobs").await, (0, 0, 0));
    // Past the visibility timeout an unacknowledged message would be back; a 2 s long
    // poll covers it.
    let later = client
        .receive("jobs", &ReceiveRequest::new(10).wait_s(2))
        .await
        .unwrap();
    assert!(later.is_empty(), "acked messages came back: {later:?}");
}

async fn sent_attributes_come_back_in_sns_form(server: &TestServer) {
    let client = &server.client;
    queue(client, "jobs", QueueSpec::default()).await;

    client
        .send(
            "jobs",
            &SendRequest::new(json!({"id": 1}))
                .attribute("color", "red")
                .attribute("count", 5)
                .attribute("price", SnsAttribute::number("1.50"))
                .attribute("tags", json!(["a", "b"])),
        )
        .await
        .unwrap();

    let received = receive_count(client, "jobs", 1, RECEIVE_WITHIN).await;
    let attributes = &received[0].attributes;
    assert_eq!(attributes["color"], SnsAttribute::string("red"));
    assert_eq!(attributes["count"], SnsAttribute::number("5"));
    assert_eq!(attributes["price"], SnsAttribute::number("1.50"));
    assert_eq!(attributes["tags"].data_type, "String.Array");
    let tags: Value = serde_json::from_str(&attributes["tags"].value).unwrap();
    assert_eq!(tags, json!(["a", "b"]));
}

async fn send_batch_stores_each_valid_entry_and_reports_oversized_ones(server: &TestServer) {
    let client = &server.client;
    let spec = QueueSpec {
        max_message_bytes: 1024,
        ..QueueSpec::default()
    };
    queue(client, "jobs", spec).await;

    let result = client
        .send_batch(
            "jobs",
            &[
                SendRequest::new(json!("small")).id("e1"),
                SendRequest::new(json!("x".repeat(2048))).id("e2"),
                SendRequest::new(json!("also small")).delay_s(0).id("e3"),
            ],
        )
        .await
        .unwrap();

    let mut stored: Vec<&str> = result.successful.iter().map(|s| s.id.as_str()).collect();
    stored.sort_unstable();
    assert_eq!(stored, vec!["e1", "e3"]);
    assert_eq!(result.failed.len(), 1, "{result:?}");
    assert_eq!(
        (result.failed[0].id.as_str(), result.failed[0].status),
        ("e2", 413)
    );
    let received = receive_count(client, "jobs", 2, RECEIVE_WITHIN).await;
    let ids: std::collections::BTreeSet<String> =
        received.iter().map(|m| m.message_id.clone()).collect();
    let sent: std::collections::BTreeSet<String> = result
        .successful
        .iter()
        .map(|s| s.message_id.clone())
        .collect();
    assert_eq!(ids, sent);
}

async fn get_queue_reports_its_configuration(server: &TestServer) {
    let client = &server.client;
    queue(client, "jobs-dlq", QueueSpec::default()).await;
    let spec = QueueSpec {
        fifo: false,
        visibility_timeout_s: 45,
        delay_s: 2,
        retention_s: 3_600,
        max_message_bytes: 4_096,
        receive_wait_s: 5,
        content_based_dedup: false,
        redrive_policy: Some(RedrivePolicy {
            dead_letter_queue: "jobs-dlq".into(),
            max_receive_count: 4,
        }),
        tags: [("team".to_string(), "billing".to_string())].into(),
    };
    queue(client, "jobs", spec.clone()).await;

    let info = client.get_queue("jobs").await.unwrap();

    assert_eq!(info.spec, spec);
    assert_eq!(
        (
            info.approximate_visible,
            info.approximate_in_flight,
            info.approximate_delayed
        ),
        (0, 0, 0)
    );
    client.delete_queue("jobs").await.unwrap();
    crate::harness::refused(
        client.get_queue("jobs").await,
        reqwest::StatusCode::NOT_FOUND,
    );
}

/// Parses each stdout line of a CLI run as JSON.
fn json_lines(output: &std::process::Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
        .collect()
}

async fn cli_send_and_receive_print_one_json_line_per_message(server: &TestServer) {
    queue(&server.client, "jobs", QueueSpec::default()).await;

    let one = server
        .cli(
            &[
                "send",
                "jobs",
                "--message",
                r#"{"id":1}"#,
                "--attr",
                "color=red",
            ],
            "",
        )
        .await;
    assert!(one.status.success(), "{one:?}");
    let sent = json_lines(&one);
    assert!(sent[0]["message_id"].is_string(), "{sent:?}");
    let lines = server
        .cli(
            &["send", "jobs", "--lines"],
            "{\"id\":2}\n\n{\"id\":3}\n\"four\"\n",
        )
        .await;
    assert!(lines.status.success(), "{lines:?}");
    let numbered: Vec<(u64, bool)> = json_lines(&lines)
        .iter()
        .map(|l| (l["line"].as_u64().unwrap(), l["message_id"].is_string()))
        .collect();
    assert_eq!(numbered, vec![(1, true), (3, true), (4, true)]);

    let received = server
        .cli(&["receive", "jobs", "--max", "10", "--ack"], "")
        .await;

    assert!(received.status.success(), "{received:?}");
    let mut bodies: Vec<String> = json_lines(&received)
        .iter()
        .map(|m| m["message"].to_string())
        .collect();
    bodies.sort();
    assert_eq!(
        bodies,
        vec![r#""four""#, r#"{"id":1}"#, r#"{"id":2}"#, r#"{"id":3}"#]
    );
    assert_eq!(
        counts(&server.client, "jobs").await,
        (0, 0, 0),
        "--ack deleted them"
    );
}
