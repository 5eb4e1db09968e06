//! The JetStream backend's verbs against a real, private `nats-server` (see `nats.rs`):
//! queues, streams, consumer groups and metadata, several routers sharing one JetStream,
//! and a server killed and restarted under load.

use crate::harness::{clock_past, eventually};
use crate::nats::NatsServer;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use switchyard::backend::jetstream::JetStream;
use switchyard::backend::{
    Backend, Delivery, Enqueued, GroupInfo, MetaChange, NewMessage, NewRecord, Queue, QueueKind,
    ReceiptError, Received, StorageError, Stored, Stream,
};
use switchyard::model::{GroupSpec, QueueSpec, RedrivePolicy, StartPosition, StreamSpec};
use switchyard::queue::Queues;
use switchyard::stream::lease::{Assignment, Lease, Leases};
use switchyard::wire::ReceiveRequest;
use tokio_util::sync::CancellationToken;

const PREFIX: &str = "SY";
/// Longest wait for anything that should happen within about a second.
const SOON: Duration = Duration::from_secs(5);
const NO_WAIT: Duration = Duration::ZERO;

/// The JetStream backend as a router holds it, with the verbs' usual arguments filled in.
struct Js(Arc<Backend>);

impl std::ops::Deref for Js {
    type Target = Backend;

    fn deref(&self) -> &Backend {
        &self.0
    }
}

impl Js {
    async fn put_queue(&self, name: &str, spec: QueueSpec) -> Result<Queue, StorageError> {
        self.0.put_queue(name, spec, QueueKind::User).await
    }

    async fn receive(
        &self,
        q: &Queue,
        max: usize,
        visibility_ms: u64,
        wait: Duration,
    ) -> Result<Vec<Received>, StorageError> {
        self.0
            .receive(q, max, visibility_ms, wait, &CancellationToken::new())
            .await
    }

    /// A heartbeat of `member`, as the stream layer makes it: the lease table updated by
    /// [`Leases::heartbeat`], with the table version it wrote.
    async fn heartbeat(&self, s: &Stream, group: &str, member: &str) -> (Assignment, u64) {
        let info = self.0.find_group(s, group).await.unwrap().unwrap();
        let (shards, timeout) = (s.shard_count(), info.spec.lease_timeout_s * 1000);
        self.0
            .update_leases(s, group, |stored| {
                let mut table = Leases::decode(stored, shards, timeout)?;
                let a = table.heartbeat(member, switchyard::time::now_ms());
                Ok((table.encode(), a))
            })
            .await
            .unwrap()
    }

    /// Every shard's lease as the group's table stands.
    async fn leases(&self, s: &Stream, group: &str) -> Vec<Option<Lease>> {
        let info = self.0.find_group(s, group).await.unwrap().unwrap();
        let stored = self.0.read_leases(s, group).await.unwrap();
        Leases::decode(
            stored.as_deref(),
            s.shard_count(),
            info.spec.lease_timeout_s * 1000,
        )
        .unwrap()
        .snapshot(switchyard::time::now_ms())
    }
}

async fn connect(server: &NatsServer) -> Js {
    Js(Arc::new(Backend::JetStream(
        JetStream::connect(&server.url(), PREFIX, 1)
            .await
            .expect("connect to the private nats-server"),
    )))
}

/// Pull requests waiting on `consumer` of the JetStream stream `stream`.
async fn pulls_waiting(server: &NatsServer, stream: &str, consumer: &str) -> usize {
    let client = async_nats::connect(server.url())
        .await
        .expect("connect to the private nats-server");
    let stream = async_nats::jetstream::new(client)
        .get_stream(stream)
        .await
        .expect("the queue's stream exists");
    stream
        .consumer_info(consumer)
        .await
        .expect("the queue's consumer exists")
        .num_waiting
}

fn msg(id: &str) -> NewMessage {
    NewMessage {
        message_id: id.into(),
        payload: format!("{{\"n\":\"{id}\"}}").into_bytes(),
        attributes: br#"{"k":{"Type":"String","Value":"v"}}"#.to_vec(),
        delay_ms: 0,
        group: None,
        dedup_id: None,
    }
}

fn in_group(id: &str, group: &str) -> NewMessage {
    NewMessage {
        group: Some(group.into()),
        dedup_id: Some(format!("dedup-{id}")),
        ..msg(id)
    }
}

fn spec(visibility_timeout_s: u64) -> QueueSpec {
    QueueSpec {
        visibility_timeout_s,
        ..QueueSpec::default()
    }
}

async fn send(js: &Js, q: &Queue, msgs: Vec<NewMessage>) -> Vec<Enqueued> {
    js.enqueue(msgs.into_iter().map(|m| (q.clone(), m)).collect())
        .await
        .expect("enqueue")
}

fn ids(got: &[switchyard::backend::Received]) -> Vec<String> {
    got.iter().map(|r| r.message_id.clone()).collect()
}

// ---- queues ---------------------------------------------------------------------------

#[tokio::test]
async fn stored_messages_are_received_once_and_acked_away() {
    let server = NatsServer::start();
    let js = connect(&server).await;
    let q = js.put_queue("q", spec(30)).await.unwrap();
    let before = switchyard::time::now_ms();
    send(&js, &q, vec![msg("a"), msg("b"), msg("c")]).await;

    let got = js.receive(&q, 10, 30_000, NO_WAIT).await.unwrap();
    assert_eq!(ids(&got), ["a", "b", "c"]);
    assert_eq!(got[0].payload, br#"{"n":"a"}"#);
    assert_eq!(got[0].attributes, br#"{"k":{"Type":"String","Value":"v"}}"#);
    assert_eq!(got[0].receive_count, 1);
    assert!(got[0].sent_at >= before);
    // In flight: nobody else gets them.
    assert!(
        js.receive(&q, 10, 30_000, NO_WAIT)
            .await
            .unwrap()
            .is_empty()
    );

    let receipts: Vec<String> = got.iter().map(|r| r.receipt.clone()).collect();
    let verdicts = js.ack(&q, &receipts).await.unwrap();
    assert!(verdicts.iter().all(|v| v.is_ok()));
    let c = js.counts(&q).await.unwrap();
    assert_eq!((c.visible, c.in_flight, c.delayed), (0, 0, 0));
}

#[tokio::test]
async fn routers_creating_one_queue_at_once_agree_on_it() {
    let server = NatsServer::start();
    let (a, b) = (connect(&server).await, connect(&server).await);
    let (qa, qb) = tokio::join!(a.put_queue("q", spec(30)), b.put_queue("q", spec(30)));
    let (qa, qb) = (qa.unwrap(), qb.unwrap());
    send(&a, &qa, vec![msg("x")]).await;
    let got = a.receive(&qa, 1, 30_000, NO_WAIT).await.unwrap();
    assert_eq!(ids(&got), ["x"]);
    // A receipt handed out through one router is good on the other: both hold the
    // record that won.
    let verdicts = b.ack(&qb, &[got[0].receipt.clone()]).await.unwrap();
    assert_eq!(verdicts, [Ok(())]);
}

#[tokio::test]
async fn receipts_of_another_or_a_recreated_queue_are_refused() {
    let server = NatsServer::start();
    let js = connect(&server).await;
    let q = js.put_queue("q", spec(30)).await.unwrap();
    let other = js.put_queue("other", spec(30)).await.unwrap();
    send(&js, &q, vec![msg("a")]).await;
    let got = js.receive(&q, 1, 30_000, NO_WAIT).await.unwrap();
    let receipt = got[0].receipt.clone();

    let v = js
        .ack(&other, &[receipt.clone(), "nonsense".into()])
        .await
        .unwrap();
    assert!(matches!(v[0], Err(ReceiptError::Invalid(_))));
    assert!(matches!(v[1], Err(ReceiptError::Invalid(_))));
    // A receipt can never name a subject outside the queue's consumers.
    let forged = receipt.replace("$JS.ACK", "$JS.API");
    assert!(matches!(
        js.ack(&q, &[forged]).await.unwrap()[0],
        Err(ReceiptError::Invalid(_))
    ));

    assert!(js.delete_queue("q").await.unwrap());
    assert!(!js.delete_queue("q").await.unwrap());
    assert!(q.is_deleted());
    let q2 = js.put_queue("q", spec(30)).await.unwrap();
    assert!(matches!(
        js.ack(&q2, &[receipt]).await.unwrap()[0],
        Err(ReceiptError::Expired(_))
    ));
}

#[tokio::test]
async fn an_unacked_message_is_redelivered_after_its_visibility_timeout() {
    let server = NatsServer::start();
    let js = connect(&server).await;
    let q = js.put_queue("q", spec(1)).await.unwrap();
    send(&js, &q, vec![msg("a")]).await;
    let first = js.receive(&q, 1, 1000, NO_WAIT).await.unwrap();
    assert_eq!(first[0].receive_count, 1);
    assert!(js.receive(&q, 1, 1000, NO_WAIT).await.unwrap().is_empty());

    // A long poll is answered by the redelivery.
    let again = js
        .receive(&q, 1, 1000, Duration::from_secs(4))
        .await
        .unwrap();
    assert_eq!(ids(&again), ["a"]);
    assert_eq!(again[0].receive_count, 2);
    assert_ne!(again[0].receipt, first[0].receipt);
}

#[tokio::test]
async fn a_receive_may_choose_its_visibility_and_change_it_later() {
    let server = NatsServer::start();
    let js = connect(&server).await;
    let q = js.put_queue("q", spec(60)).await.unwrap();
    send(&js, &q, vec![msg("a")]).await;

    // Shorter than the queue's 60 s: visible again after half a second.
    let got = js.receive(&q, 1, 500, NO_WAIT).await.unwrap();
    assert_eq!(ids(&got), ["a"]);
    let again = js
        .receive(&q, 1, 60_000, Duration::from_secs(3))
        .await
        .unwrap();
    assert_eq!(ids(&again), ["a"]);
    assert_eq!(again[0].receive_count, 2);

    // Visibility 0: visible at once.
    let v = js
        .change_visibility(&q, &again[0].receipt, 0)
        .await
        .unwrap();
    assert!(v.is_ok());
    let third = js
        .receive(&q, 1, 60_000, Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(ids(&third), ["a"]);
    assert_eq!(third[0].receive_count, 3);

    // Longer: b received with a short timeout is extended, so it stays hidden.
    js.ack(&q, &[third[0].receipt.clone()]).await.unwrap();
    send(&js, &q, vec![msg("b")]).await;
    let b = js.receive(&q, 1, 300, NO_WAIT).await.unwrap();
    assert_eq!(ids(&b), ["b"]);
    js.change_visibility(&q, &b[0].receipt, 60_000)
        .await
        .unwrap()
        .unwrap();
    assert!(
        js.receive(&q, 1, 60_000, Duration::from_millis(800))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_message_past_max_receives_moves_to_the_dead_letter_queue_and_back() {
    let server = NatsServer::start();
    let js = connect(&server).await;
    let dlq = js.put_queue("dlq", spec(30)).await.unwrap();
    let q = js
        .put_queue(
            "q",
            QueueSpec {
                redrive_policy: Some(RedrivePolicy {
                    dead_letter_queue: "dlq".into(),
                    max_receive_count: 2,
                }),
                ..spec(30)
            },
        )
        .await
        .unwrap();
    send(&js, &q, vec![msg("a")]).await;
    // The SQS rules over the JetStream backend, as a router applies them.
    let queues = Queues::new(js.0.clone(), CancellationToken::new(), Default::default());
    let receive = |wait_s| ReceiveRequest {
        max_messages: Some(1),
        wait_s: Some(wait_s),
        visibility_timeout_s: Some(0),
    };
    // Visibility 0 hands it straight back: received twice, then dead-lettered.
    for n in 1..=2 {
        let got = queues.receive("q", receive(2)).await.unwrap();
        assert_eq!(got[0].receive_count, n);
    }
    assert!(queues.receive("q", receive(0)).await.unwrap().is_empty());
    let c = js.counts(&dlq).await.unwrap();
    assert_eq!(c.visible, 1);
    let c = js.counts(&q).await.unwrap();
    assert_eq!((c.visible, c.in_flight), (0, 0));

    let dead = js.receive(&dlq, 1, 0, NO_WAIT).await.unwrap();
    assert_eq!(dead[0].origin.as_deref(), Some("q"));
    assert_eq!(queues.redrive("dlq").await.unwrap(), 1);
    let got = js.receive(&q, 1, 30_000, NO_WAIT).await.unwrap();
    assert_eq!(ids(&got), ["a"]);
    assert_eq!(got[0].receive_count, 1);
    assert_eq!(got[0].payload, br#"{"n":"a"}"#);
    assert_eq!(js.counts(&dlq).await.unwrap().visible, 0);
}

#[tokio::test]
async fn a_delayed_message_stays_hidden_until_due() {
    let server = NatsServer::start();
    let js = connect(&server).await;
    let q = js.put_queue("q", spec(30)).await.unwrap();
    let sent = std::time::Instant::now();
    send(
        &js,
        &q,
        vec![
            NewMessage {
                delay_ms: 1000,
                ..msg("late")
            },
            msg("now"),
        ],
    )
    .await;
    let got = js.receive(&q, 10, 30_000, NO_WAIT).await.unwrap();
    assert_eq!(ids(&got), ["now"]);
    let c = js.counts(&q).await.unwrap();
    assert_eq!(c.delayed, 1);

    let late = js
        .receive(&q, 10, 30_000, Duration::from_secs(4))
        .await
        .unwrap();
    assert_eq!(ids(&late), ["late"]);
    assert!(sent.elapsed() >= Duration::from_millis(1000));
    // The wait was not a receive.
    assert_eq!(late[0].receive_count, 1);
    assert_eq!(js.counts(&q).await.unwrap().delayed, 0);
}

#[tokio::test]
async fn delayed_fifo_messages_keep_their_group_order() {
    let server = NatsServer::start();
    let js = connect(&server).await;
    let q = js
        .put_queue(
            "q.fifo",
            QueueSpec {
                fifo: true,
                delay_s: 1,
                ..spec(30)
            },
        )
        .await
        .unwrap();
    let delayed = |id: &str| NewMessage {
        delay_ms: 500,
        ..in_group(id, "g")
    };
    send(&js, &q, vec![delayed("g-0"), delayed("g-1")]).await;
    assert!(
        js.receive(&q, 10, 30_000, NO_WAIT)
            .await
            .unwrap()
            .is_empty()
    );
    let mut order = Vec::new();
    while order.len() < 2 {
        let got = js
            .receive(&q, 10, 30_000, Duration::from_secs(3))
            .await
            .unwrap();
        assert_eq!(got.len(), 1, "one message of the group at a time");
        order.push(got[0].message_id.clone());
        js.ack(&q, &[got[0].receipt.clone()]).await.unwrap();
    }
    assert_eq!(order, ["g-0", "g-1"]);
}

#[tokio::test]
async fn fifo_groups_are_received_in_order_one_in_flight_each() {
    let server = NatsServer::start();
    let js = connect(&server).await;
    let q = js
        .put_queue(
            "q.fifo",
            QueueSpec {
                fifo: true,
                ..spec(30)
            },
        )
        .await
        .unwrap();
    let mut batch = Vec::new();
    for i in 0..4 {
        for g in ["g1", "g2", "g3"] {
            batch.push(in_group(&format!("{g}-{i}"), g));
        }
    }
    send(&js, &q, batch).await;

    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    let mut rounds = 0;
    while seen.values().map(Vec::len).sum::<usize>() < 12 {
        rounds += 1;
        assert!(rounds < 50, "FIFO queue did not drain: {seen:?}");
        let got = js
            .receive(&q, 10, 30_000, Duration::from_secs(1))
            .await
            .unwrap();
        // Never two messages of one group in flight at once.
        let groups: BTreeSet<&str> = got.iter().map(|r| &r.message_id[..2]).collect();
        assert_eq!(groups.len(), got.len(), "{:?}", ids(&got));
        // Nothing more of these groups while they are in flight.
        let more = js.receive(&q, 10, 30_000, NO_WAIT).await.unwrap();
        for r in &more {
            assert!(
                !groups.contains(&r.message_id[..2]),
                "{} while its group is in flight",
                r.message_id
            );
        }
        for r in got.iter().chain(&more) {
            seen.entry(r.message_id[..2].to_string())
                .or_default()
                .push(r.message_id.clone());
        }
        let receipts: Vec<String> = got.iter().chain(&more).map(|r| r.receipt.clone()).collect();
        js.ack(&q, &receipts).await.unwrap();
    }
    for (g, order) in seen {
        let want: Vec<String> = (0..4).map(|i| format!("{g}-{i}")).collect();
        assert_eq!(order, want);
    }
}

#[tokio::test]
async fn a_fifo_message_whose_visibility_runs_out_comes_back_before_its_successor() {
    let server = NatsServer::start();
    let js = connect(&server).await;
    let q = js
        .put_queue(
            "q.fifo",
            QueueSpec {
                fifo: true,
                ..spec(1)
            },
        )
        .await
        .unwrap();
    send(&js, &q, vec![in_group("a1", "a"), in_group("a2", "a")]).await;
    let got = js.receive(&q, 10, 1000, NO_WAIT).await.unwrap();
    assert_eq!(ids(&got), ["a1"]);
    let again = js
        .receive(&q, 10, 1000, Duration::from_secs(4))
        .await
        .unwrap();
    assert_eq!(ids(&again), ["a1"]);
    assert_eq!(again[0].receive_count, 2);
}

#[tokio::test]
async fn a_dedup_id_is_stored_once_and_names_the_original() {
    let server = NatsServer::start();
    let js = connect(&server).await;
    let q = js
        .put_queue(
            "q.fifo",
            QueueSpec {
                fifo: true,
                ..spec(30)
            },
        )
        .await
        .unwrap();
    let first = NewMessage {
        dedup_id: Some("d1".into()),
        ..in_group("m1", "g")
    };
    let second = NewMessage {
        dedup_id: Some("d1".into()),
        ..in_group("m2", "g")
    };
    let stored = send(&js, &q, vec![first.clone()]).await;
    assert!(
        matches!(stored[..], [Enqueued::Stored { .. }]),
        "{stored:?}"
    );
    assert_eq!(
        send(&js, &q, vec![second]).await,
        [Enqueued::Duplicate {
            original_message_id: "m1".into()
        }]
    );
    // The same publish retried (same message, same dedup id) is not a duplicate of itself:
    // it is the message stored, at its sequence.
    assert_eq!(send(&js, &q, vec![first]).await, stored);
    assert_eq!(js.counts(&q).await.unwrap().visible, 1);
    // A receive tells the sequence the send was stored at.
    let got = js.receive(&q, 10, 30_000, NO_WAIT).await.unwrap();
    let [Enqueued::Stored { sequence }] = stored[..] else {
        unreachable!("checked above")
    };
    assert_eq!(got[0].sequence, sequence);

    // Standard queues: a retried publish of one message id is stored once.
    let s = js.put_queue("s", spec(30)).await.unwrap();
    let stored = send(&js, &s, vec![msg("x")]).await;
    assert_eq!(send(&js, &s, vec![msg("x")]).await, stored);
    assert_eq!(js.counts(&s).await.unwrap().visible, 1);
}

#[tokio::test]
async fn counts_follow_messages_and_purge_empties_the_queue() {
    let server = NatsServer::start();
    let js = connect(&server).await;
    let q = js.put_queue("q", spec(30)).await.unwrap();
    let mut batch: Vec<NewMessage> = (0..5).map(|i| msg(&format!("m{i}"))).collect();
    batch.push(NewMessage {
        delay_ms: 60_000,
        ..msg("later")
    });
    send(&js, &q, batch).await;
    js.receive(&q, 2, 30_000, NO_WAIT).await.unwrap();
    let c = js.counts(&q).await.unwrap();
    assert_eq!((c.visible, c.in_flight, c.delayed), (3, 2, 1));
    assert_eq!(js.purge(&q).await.unwrap(), 6);
    let c = js.counts(&q).await.unwrap();
    assert_eq!((c.visible, c.in_flight, c.delayed), (0, 0, 0));
    assert!(
        js.receive(&q, 10, 30_000, NO_WAIT)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn one_store_fans_out_to_queues_and_stream_shards() {
    let server = NatsServer::start();
    let js = connect(&server).await;
    let q1 = js.put_queue("q1", spec(30)).await.unwrap();
    let q2 = js.put_queue("q2", spec(30)).await.unwrap();
    let st = js
        .put_stream(
            "s",
            StreamSpec {
                shards: 2,
                ..StreamSpec::default()
            },
        )
        .await
        .unwrap();
    let rec = |pk: &str| NewRecord {
        partition_key: pk.into(),
        explicit_hash_key: None,
        data: b"{}".to_vec(),
    };
    let stored = js
        .store(vec![
            Delivery::Queue(q1.clone(), msg("a")),
            Delivery::Stream(st.clone(), 1, rec("k")),
            Delivery::Queue(q2.clone(), msg("a")),
            Delivery::Stream(st.clone(), 1, rec("k")),
        ])
        .await
        .unwrap();
    assert_eq!(
        stored,
        [
            // Each queue's first message.
            Stored::Queue(Enqueued::Stored { sequence: 1 }),
            Stored::Stream {
                shard: 1,
                sequence: 1
            },
            Stored::Queue(Enqueued::Stored { sequence: 1 }),
            Stored::Stream {
                shard: 1,
                sequence: 2
            },
        ]
    );
    assert_eq!(js.counts(&q1).await.unwrap().visible, 1);
    assert_eq!(js.counts(&q2).await.unwrap().visible, 1);
}

// ---- streams --------------------------------------------------------------------------

#[tokio::test]
async fn each_shard_numbers_its_records_and_reads_from_any_position() {
    let server = NatsServer::start();
    let js = connect(&server).await;
    let st = js
        .put_stream(
            "clicks",
            StreamSpec {
                shards: 2,
                ..StreamSpec::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(js.bounds(&st, 0).await.unwrap(), (1, 0));
    let mut items = Vec::new();
    for i in 0..5 {
        items.push(Delivery::Stream(
            st.clone(),
            i % 2,
            NewRecord {
                partition_key: format!("pk\n{i}"),
                explicit_hash_key: None,
                data: format!("{{\"i\":{i}}}").into_bytes(),
            },
        ));
    }
    let before = switchyard::time::now_ms();
    let stored = js.store(items).await.unwrap();
    let seqs: Vec<(u32, u64)> = stored
        .iter()
        .map(|s| match s {
            Stored::Stream { shard, sequence } => (*shard, *sequence),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(seqs, [(0, 1), (1, 1), (0, 2), (1, 2), (0, 3)]);
    assert_eq!(js.bounds(&st, 0).await.unwrap(), (1, 3));

    let recs = js.read_shard(&st, 0, 2, 10).await.unwrap();
    let got: Vec<(u64, &str)> = recs
        .iter()
        .map(|r| (r.sequence, std::str::from_utf8(&r.data).unwrap()))
        .collect();
    assert_eq!(got, [(2, r#"{"i":2}"#), (3, r#"{"i":4}"#)]);
    assert_eq!(recs[0].partition_key, "pk\n2");
    assert!(recs[0].arrived_at + 1000 >= before);
    assert_eq!(js.read_shard(&st, 1, 0, 1).await.unwrap().len(), 1);
    assert!(js.read_shard(&st, 1, 3, 10).await.unwrap().is_empty());
    assert!(matches!(
        js.read_shard(&st, 2, 1, 10).await,
        Err(StorageError::NotFound { .. })
    ));

    assert_eq!(js.sequence_at(&st, 0, 0).await.unwrap(), 1);
    assert_eq!(
        js.sequence_at(&st, 0, switchyard::time::now_ms() + 60_000)
            .await
            .unwrap(),
        4
    );
    // A record that arrives after a moment is found by that moment: the moment is just
    // after the newest record so far, and the next record is put once it has passed.
    let mut newest = 0;
    for shard in 0..2 {
        for r in js.read_shard(&st, shard, 0, 100).await.unwrap() {
            newest = newest.max(r.arrived_at);
        }
    }
    let mark = newest + 1;
    clock_past(mark).await;
    let later = NewRecord {
        partition_key: "k".into(),
        explicit_hash_key: None,
        data: b"1".to_vec(),
    };
    js.store(vec![Delivery::Stream(st.clone(), 0, later)])
        .await
        .unwrap();
    assert_eq!(js.sequence_at(&st, 0, mark).await.unwrap(), 4);
    assert_eq!(js.sequence_at(&st, 1, mark).await.unwrap(), 3);
}

#[tokio::test]
async fn records_past_retention_are_dropped() {
    let server = NatsServer::start();
    let js = connect(&server).await;
    let st = js.put_stream("short", StreamSpec::default()).await.unwrap();
    let rec = NewRecord {
        partition_key: "k".into(),
        explicit_hash_key: None,
        data: b"1".to_vec(),
    };
    js.store(vec![Delivery::Stream(st.clone(), 0, rec)])
        .await
        .unwrap();
    assert_eq!(js.read_shard(&st, 0, 1, 10).await.unwrap().len(), 1);
    // Retention may change on a live stream.
    let shorter = StreamSpec {
        retention_s: Some(1),
        ..StreamSpec::default()
    };
    let st = js.put_stream("short", shorter.clone()).await.unwrap();
    assert_eq!(st.spec(), shorter);
    eventually(SOON, "the record to expire", || async {
        let (first, last) = js.bounds(&st, 0).await.unwrap();
        (first > last && js.read_shard(&st, 0, 1, 10).await.unwrap().is_empty()).then_some(())
    })
    .await;
    // Sequence numbers go on after the trim.
    assert_eq!(js.bounds(&st, 0).await.unwrap(), (2, 1));
}

// ---- consumer groups ------------------------------------------------------------------

async fn stream_with_group(js: &Js, shards: u32, lease_timeout_s: u64) -> Stream {
    let st = js
        .put_stream(
            "s",
            StreamSpec {
                shards,
                ..StreamSpec::default()
            },
        )
        .await
        .unwrap();
    let info = GroupInfo {
        spec: GroupSpec {
            start_position: StartPosition::TrimHorizon,
            lease_timeout_s,
        },
        start_after: vec![0; shards as usize],
    };
    let (_, created) = js.create_group(&st, "g", info).await.unwrap();
    assert!(created);
    st
}

#[tokio::test]
async fn two_routers_never_both_hold_a_lease() {
    let server = NatsServer::start();
    let a = Arc::new(connect(&server).await);
    let b = Arc::new(connect(&server).await);
    let st_a = stream_with_group(&a, 4, 30).await;
    let st_b = eventually(SOON, "router b to see the stream", || async {
        b.stream("s")
    })
    .await;
    let existing = b.find_group(&st_b, "g").await.unwrap();
    assert_eq!(existing.map(|g| g.spec.lease_timeout_s), Some(30));

    // Four members on two routers heartbeat as fast as they can, all at once.
    let mut tasks = Vec::new();
    for (i, member) in ["m1", "m2", "m3", "m4"].into_iter().enumerate() {
        let (js, st) = if i % 2 == 0 {
            (a.clone(), st_a.clone())
        } else {
            (b.clone(), st_b.clone())
        };
        tasks.push(tokio::spawn(async move {
            let mut beats = Vec::new();
            for _ in 0..15 {
                let (assignment, version) = js.heartbeat(&st, "g", member).await;
                beats.push((version, member, assignment.held));
            }
            beats
        }));
    }
    let mut beats = Vec::new();
    for t in tasks {
        beats.extend(t.await.unwrap());
    }
    // Replay in the order the lease table was written: a member holds what its latest
    // heartbeat said until its next one. No shard may be claimed by two at once.
    beats.sort();
    let versions: BTreeSet<u64> = beats.iter().map(|b| b.0).collect();
    assert_eq!(
        versions.len(),
        beats.len(),
        "two heartbeats wrote one version"
    );
    let mut holder: Vec<Option<&str>> = vec![None; 4];
    for (version, member, held) in &beats {
        for h in holder.iter_mut() {
            if *h == Some(*member) {
                *h = None;
            }
        }
        for &s in held {
            assert!(
                holder[s as usize].is_none(),
                "version {version}: {member} took shard {s} still held by {:?}",
                holder[s as usize]
            );
            holder[s as usize] = Some(member);
        }
    }
    // Once every member has polled a few more times, each holds one shard.
    for _ in 0..3 {
        for (i, member) in ["m1", "m2", "m3", "m4"].into_iter().enumerate() {
            let (js, st) = if i % 2 == 0 { (&a, &st_a) } else { (&b, &st_b) };
            js.heartbeat(st, "g", member).await;
        }
    }
    let leases = a.leases(&st_a, "g").await;
    let members: BTreeSet<String> = leases.iter().flatten().map(|l| l.member.clone()).collect();
    assert_eq!(members.len(), 4, "{leases:?}");
}

#[tokio::test]
async fn a_silent_members_leases_pass_to_another_after_the_timeout() {
    let server = NatsServer::start();
    let a = connect(&server).await;
    let b = connect(&server).await;
    let st_a = stream_with_group(&a, 2, 1).await;
    let st_b = eventually(SOON, "router b to see the stream", || async {
        b.stream("s")
    })
    .await;
    assert_eq!(a.heartbeat(&st_a, "g", "dead").await.0.held, [0, 1]);
    // Held by "dead" until its lease lapses.
    assert!(b.heartbeat(&st_b, "g", "alive").await.0.held.is_empty());
    let taken = eventually(SOON, "the leases to pass to alive", || async {
        let (a, _) = b.heartbeat(&st_b, "g", "alive").await;
        (a.held.len() == 2).then_some(a)
    })
    .await;
    assert_eq!(taken.acquired, [0, 1]);
}

#[tokio::test]
async fn groups_and_checkpoints_persist_across_routers() {
    let server = NatsServer::start();
    {
        let a = connect(&server).await;
        let st = stream_with_group(&a, 2, 30).await;
        a.put_checkpoint(&st, "g", 1, 42).await.unwrap();
        assert_eq!(a.group_names(&st).await.unwrap(), ["g"]);
    }
    let b = connect(&server).await;
    let st = b
        .stream("s")
        .expect("the stream is known from the metadata");
    let info = GroupInfo {
        spec: GroupSpec::default(),
        start_after: vec![0, 0],
    };
    let (g, created) = b.create_group(&st, "g", info.clone()).await.unwrap();
    assert!(!created, "the group another router made is found");
    assert_eq!(g.spec.lease_timeout_s, 30);
    assert_eq!(b.checkpoints(&st, "g").await.unwrap(), [None, Some(42)]);
    // Deleting the stream forgets its groups.
    assert!(b.delete_stream("s").await.unwrap());
    let st = b.put_stream("s", StreamSpec::default()).await.unwrap();
    let (_, created) = b.create_group(&st, "g", info).await.unwrap();
    assert!(created);
}

// ---- metadata and routers sharing everything ------------------------------------------

#[tokio::test]
async fn metadata_changes_reach_every_router_within_a_second() {
    let server = NatsServer::start();
    let a = connect(&server).await;
    let b = connect(&server).await;
    let mut changes = b.watch_meta().expect("JetStream is shared");
    a.put_meta("t/orders", b"{}".to_vec()).await.unwrap();
    let change = tokio::time::timeout(Duration::from_secs(1), changes.recv())
        .await
        .expect("a change within a second")
        .unwrap();
    assert_eq!(
        change,
        MetaChange::Put {
            key: "t/orders".into(),
            value: bytes::Bytes::from_static(b"{}")
        }
    );
    assert_eq!(
        b.list_meta("t/").unwrap(),
        [("orders".to_string(), b"{}".to_vec())]
    );
    assert!(matches!(
        a.put_meta("bad key", vec![]).await,
        Err(StorageError::Refused(_))
    ));

    // Queues made on one router are usable on the other.
    let qa = a.put_queue("q", spec(30)).await.unwrap();
    let qb = eventually(SOON, "router b to see the queue", || async { b.queue("q") }).await;
    send(&a, &qa, vec![msg("x")]).await;
    assert_eq!(
        ids(&b.receive(&qb, 1, 30_000, NO_WAIT).await.unwrap()),
        ["x"]
    );

    a.delete_meta("t/orders").await.unwrap();
    assert!(a.list_meta("t/").unwrap().is_empty());
    eventually(SOON, "the deletion to reach b", || async {
        b.list_meta("t/").unwrap().is_empty().then_some(())
    })
    .await;
    assert!(a.delete_queue("q").await.unwrap());
    eventually(SOON, "the queue deletion to reach b", || async {
        qb.is_deleted().then_some(())
    })
    .await;
    // A router started later sees the current state at once.
    let c = connect(&server).await;
    assert!(c.queue("q").is_none());
    assert!(c.list_meta("t/").unwrap().is_empty());
}

#[tokio::test]
async fn a_message_in_flight_on_a_dead_router_is_received_on_another() {
    let server = NatsServer::start();
    let b = connect(&server).await;
    {
        let a = connect(&server).await;
        let q = a.put_queue("q", spec(1)).await.unwrap();
        send(&a, &q, vec![msg("a")]).await;
        assert_eq!(a.receive(&q, 1, 1000, NO_WAIT).await.unwrap().len(), 1);
        // `a` goes away without acknowledging.
    }
    let q = eventually(SOON, "router b to see the queue", || async { b.queue("q") }).await;
    let got = b
        .receive(&q, 1, 1000, Duration::from_secs(4))
        .await
        .unwrap();
    assert_eq!(ids(&got), ["a"]);
    assert_eq!(got[0].receive_count, 2);
}

#[tokio::test]
async fn a_long_poll_answers_as_soon_as_a_message_arrives() {
    let server = NatsServer::start();
    let js = Arc::new(connect(&server).await);
    let q = js.put_queue("q", spec(30)).await.unwrap();
    let started = std::time::Instant::now();
    let waiter = {
        let (js, q) = (js.clone(), q.clone());
        tokio::spawn(async move { js.receive(&q, 10, 30_000, Duration::from_secs(10)).await })
    };
    // Sent only once the receive is waiting on the queue, so it is the send that wakes it.
    eventually(SOON, "the receive to wait", || async {
        (pulls_waiting(&server, &format!("{PREFIX}_Q_q"), "ready").await > 0).then_some(())
    })
    .await;
    send(&js, &q, vec![msg("a"), msg("b")]).await;
    let got = waiter.await.unwrap().unwrap();
    assert!(!got.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_nats_restart_under_load_loses_nothing_acknowledged() {
    let mut server = NatsServer::start();
    let js = Arc::new(connect(&server).await);
    let other = connect(&server).await;
    let q = js.put_queue("q", spec(30)).await.unwrap();

    // Publishes of four messages each, back to back, until told to stop.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let producer = {
        let (js, q, stop, acked, failed) = (
            js.clone(),
            q.clone(),
            stop.clone(),
            acked.clone(),
            failed.clone(),
        );
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let batch: Vec<NewMessage> = (0..4).map(|j| msg(&format!("m{i}-{j}"))).collect();
                let ids: Vec<String> = batch.iter().map(|m| m.message_id.clone()).collect();
                match js
                    .enqueue(batch.into_iter().map(|m| (q.clone(), m)).collect())
                    .await
                {
                    Ok(_) => acked.lock().unwrap().extend(ids),
                    // Never acknowledged, so allowed to be lost; but only as unavailable.
                    Err(e) => {
                        assert!(e.is_retryable(), "{e}");
                        failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
        })
    };
    let count = || acked.lock().unwrap().len();
    eventually(SOON, "publishes before the kill", || async {
        (count() >= 200).then_some(())
    })
    .await;
    server.kill9();
    let at_kill = count();
    // The outage is felt: publishes fail while the server is down.
    // A publish retries for up to its deadline (10 s) before it fails.
    eventually(
        Duration::from_secs(30),
        "a publish to fail while the server is down",
        || async { (failed.load(std::sync::atomic::Ordering::Relaxed) > 0).then_some(()) },
    )
    .await;
    server.restart();
    // Publishing resumes on its own once the server is back.
    eventually(
        Duration::from_secs(15),
        "publishes after the restart",
        || async { (count() >= at_kill + 200).then_some(()) },
    )
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    producer.await.unwrap();
    let acked = acked.lock().unwrap().clone();

    // Metadata watches resume too: another router sees a queue made after the restart.
    js.put_queue("after", spec(30)).await.unwrap();
    eventually(SOON, "the other router to see the new queue", || async {
        other.queue("after")
    })
    .await;

    let mut received = BTreeSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !acked.iter().all(|id| received.contains(id)) {
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {} acknowledged messages never arrived",
            acked.iter().filter(|id| !received.contains(*id)).count(),
            acked.len()
        );
        if let Ok(got) = js.receive(&q, 10, 30_000, Duration::from_millis(200)).await {
            for r in &got {
                received.insert(r.message_id.clone());
            }
            let receipts: Vec<String> = got.iter().map(|r| r.receipt.clone()).collect();
            let _ = js.ack(&q, &receipts).await;
        }
    }
}

#[tokio::test]
async fn a_queue_keeps_when_it_was_created_and_last_changed_for_every_router() {
    let server = NatsServer::start();
    let js = connect(&server).await;
    let before = switchyard::time::now_ms();
    let created = js.put_queue("q", spec(30)).await.unwrap().created_at();
    assert!(created >= before);
    let changed = js.put_queue("q", spec(45)).await.unwrap();
    let modified = changed.modified_at();
    assert!(modified >= created);
    assert_eq!(
        changed.created_at(),
        created,
        "a change keeps the creation time"
    );
    // Another router reads both from the stored record.
    let other = connect(&server).await;
    let seen = other.queue("q").expect("the other router knows the queue");
    assert_eq!((seen.created_at(), seen.modified_at()), (created, modified));
}

#[tokio::test]
async fn a_stream_keeps_when_it_was_created_for_every_router() {
    let server = NatsServer::start();
    let js = connect(&server).await;
    let before = switchyard::time::now_ms();
    let created = js
        .put_stream("s", StreamSpec::default())
        .await
        .unwrap()
        .created_at();
    assert!(created >= before);
    // A retention change keeps it; another router reads it from the stored record.
    let changed = StreamSpec {
        retention_hours: 48,
        ..StreamSpec::default()
    };
    assert_eq!(
        js.put_stream("s", changed).await.unwrap().created_at(),
        created
    );
    let other = connect(&server).await;
    assert_eq!(other.stream("s").unwrap().created_at(), created);
}
