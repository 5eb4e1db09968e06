//! The embedded store's own tests: shared bodies, recovery and replay from the log,
//! receipts, moves and deduplication across restarts, reads before the sync.

use super::codec::{self, Body};
use super::index::{Entry, MsgState};
use super::queues::QueueHandle;
use super::wal::Wal;
use super::*;
use crate::backend::{Counts, Delivery, Enqueued, Move, NewMessage, Queue, ReceiptError};
use crate::model::QueueSpec;

impl Embedded {
    /// Stores messages in their queues, as the backend's `enqueue` does.
    async fn enqueue(
        &self,
        items: Vec<(Arc<QueueHandle>, NewMessage)>,
    ) -> Result<Vec<Enqueued>, StorageError> {
        let stored = self
            .store(
                items
                    .into_iter()
                    .map(|(h, m)| Delivery::Queue(Queue::Embedded(h), m))
                    .collect(),
            )
            .await?;
        Ok(crate::backend::queue_outcomes(stored))
    }
}

fn msg(id: &str) -> NewMessage {
    NewMessage {
        message_id: id.into(),
        payload: format!("{{\"n\":\"{id}\"}}").into_bytes(),
        attributes: b"{}".to_vec(),
        delay_ms: 0,
        group: None,
        dedup_id: None,
    }
}

/// Shared bodies in fjall, once everything handed over is there.
async fn shared_bodies(s: &Embedded) -> usize {
    s.committer.settle().await.unwrap();
    s.spaces.messages.prefix(codec::SHARED_PREFIX).count()
}

#[tokio::test]
async fn a_body_several_messages_carry_is_stored_once_until_the_last_goes() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Embedded::open(dir.path()).unwrap();
        let dlq = s
            .put_queue("dlq", QueueSpec::default(), QueueKind::User)
            .await
            .unwrap();
        let a = s
            .put_queue("a", QueueSpec::default(), QueueKind::User)
            .await
            .unwrap();
        let b = s
            .put_queue("b", QueueSpec::default(), QueueKind::User)
            .await
            .unwrap();
        let c = s
            .put_queue("c", QueueSpec::default(), QueueKind::User)
            .await
            .unwrap();
        let other = NewMessage {
            payload: br#"{"n":"other"}"#.to_vec(),
            ..msg("m1")
        };
        s.enqueue(vec![
            (a.clone(), msg("m1")),
            (b.clone(), msg("m1")),
            (c.clone(), msg("m1")),
            (c.clone(), other),
        ])
        .await
        .unwrap();
        assert_eq!(shared_bodies(&s).await, 1);
        // Only the message whose payload differs has a body of its own.
        let own = |q: &QueueHandle| s.spaces.messages.prefix(codec::queue_prefix(q.id)).count();
        assert_eq!((own(&a), own(&b), own(&c)), (0, 0, 1));

        // Moved to the dead-letter queue, the message still carries the body.
        let dead = s.receive(&a, 1, 0).await.unwrap();
        assert_eq!(dead[0].payload, br#"{"n":"m1"}"#);
        let moved = s.move_messages(&a, &dead, &dlq, Move::ToDeadLetter);
        assert_eq!(moved.await.unwrap(), 1);
        assert!(s.receive(&a, 1, 0).await.unwrap().is_empty());
        assert_eq!(s.counts(&dlq).visible, 1);
        let got = s.receive(&b, 10, 60_000).await.unwrap();
        assert_eq!(got[0].payload, br#"{"n":"m1"}"#);
        s.ack(&b, &[got[0].receipt.clone()]).await.unwrap();
        assert_eq!(shared_bodies(&s).await, 1);
    }
    // The carriers left (the dead letter and c's) are counted again at start.
    let s = Embedded::open(dir.path()).unwrap();
    let (c, dlq) = (s.queue("c").unwrap(), s.queue("dlq").unwrap());
    assert_eq!(s.purge(&c).await.unwrap(), 2);
    assert_eq!(shared_bodies(&s).await, 1);
    let got = s.receive(&dlq, 10, 60_000).await.unwrap();
    assert_eq!(got[0].payload, br#"{"n":"m1"}"#);
    s.ack(&dlq, &[got[0].receipt.clone()]).await.unwrap();
    assert_eq!(shared_bodies(&s).await, 0);
}

#[tokio::test]
async fn deleting_queues_releases_their_shared_bodies_and_orphans_go_at_start() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Embedded::open(dir.path()).unwrap();
        let a = s
            .put_queue("a", QueueSpec::default(), QueueKind::User)
            .await
            .unwrap();
        let b = s
            .put_queue("b", QueueSpec::default(), QueueKind::User)
            .await
            .unwrap();
        s.enqueue(vec![(a.clone(), msg("m1")), (b.clone(), msg("m1"))])
            .await
            .unwrap();
        assert!(s.delete_queue("a").await.unwrap());
        assert_eq!(shared_bodies(&s).await, 1);
        assert_eq!(
            s.receive(&b, 1, 0).await.unwrap()[0].payload,
            br#"{"n":"m1"}"#
        );
        assert!(s.delete_queue("b").await.unwrap());
        assert_eq!(shared_bodies(&s).await, 0);
        // A shared body no message carries, as a crash in the middle of deleting a
        // queue that was being published to could leave.
        let orphan = NonZeroU64::new(41).unwrap();
        s.committer
            .send(
                vec![Op::Put(
                    Space::Messages,
                    codec::shared_key(orphan).to_vec(),
                    b"body".to_vec(),
                )],
                Wait::Synced,
            )
            .await
            .unwrap();
    }
    let s = Embedded::open(dir.path()).unwrap();
    assert_eq!(shared_bodies(&s).await, 0);
    // Its id is not handed out again.
    assert!(s.shared.next.load(Ordering::Relaxed) > 41);
}

/// What a randomised run of [`shared_bodies_follow_their_carriers`] does.
#[derive(Debug, Clone)]
enum StoreOp {
    /// One message to each queue of the mask (bit i: `QUEUES[i]`), as a fan-out.
    Publish(u8),
    /// Receives up to 10 (visible again at once), then acknowledges them or not.
    Receive(usize, bool),
    Purge(usize),
    /// Deletes the queue and creates it again, empty.
    Recreate(usize),
    Reopen,
}

/// `a` sends what it received twice to `d`; `a` and `d` are one family in the model,
/// which cannot tell when a message moves.
const QUEUES: [&str; 4] = ["a", "b", "c", "d"];
const FAMILY: [usize; 4] = [0, 1, 2, 0];

fn store_op() -> impl proptest::strategy::Strategy<Value = StoreOp> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (1u8..8).prop_map(StoreOp::Publish),
        4 => (0usize..4, any::<bool>()).prop_map(|(q, ack)| StoreOp::Receive(q, ack)),
        1 => (1usize..3).prop_map(StoreOp::Purge),
        1 => Just(StoreOp::Recreate(2)),
        1 => Just(StoreOp::Reopen),
    ]
}

async fn open_queues(s: &Embedded) -> Vec<Arc<QueueHandle>> {
    let mut out = Vec::new();
    for name in QUEUES {
        let spec = match name {
            "a" => QueueSpec {
                redrive_policy: Some(crate::model::RedrivePolicy {
                    dead_letter_queue: "d".into(),
                    max_receive_count: 2,
                }),
                ..QueueSpec::default()
            },
            _ => QueueSpec::default(),
        };
        out.push(s.put_queue(name, spec, QueueKind::User).await.unwrap());
    }
    out
}

/// Runs `ops` against the store, keeping `resident` visible messages of a queue in
/// memory, and a model of which messages each queue family holds; then every message is
/// received with its body and acknowledged, after which no body of any kind is left.
async fn run_store_ops(ops: &[StoreOp], resident: usize) {
    let dir = tempfile::tempdir().unwrap();
    let open = || Embedded::open_with(dir.path(), Clock::system(), resident).unwrap();
    let mut s = open();
    let mut qs = open_queues(&s).await;
    let mut model: [std::collections::BTreeMap<String, usize>; 3] = Default::default();
    let mut published = 0;
    for (i, op) in ops.iter().enumerate() {
        match op {
            StoreOp::Publish(mask) => {
                let id = format!("m{published}");
                published += 1;
                let mut items = Vec::new();
                for (q, h) in qs.iter().enumerate() {
                    if mask & (1 << q) != 0 {
                        items.push((h.clone(), msg(&id)));
                        *model[FAMILY[q]].entry(id.clone()).or_default() += 1;
                    }
                }
                s.enqueue(items).await.unwrap();
            }
            StoreOp::Receive(q, ack) => {
                let got = s.receive(&qs[*q], 10, 0).await.unwrap();
                for m in &got {
                    let expected = format!(r#"{{"n":"{}"}}"#, m.message_id);
                    assert_eq!(m.payload, expected.as_bytes(), "op {i}: {op:?}");
                }
                if *ack {
                    let receipts: Vec<String> = got.iter().map(|m| m.receipt.clone()).collect();
                    let verdicts = s.ack(&qs[*q], &receipts).await.unwrap();
                    assert!(verdicts.iter().all(Result::is_ok), "op {i}: {op:?}");
                    for m in &got {
                        let held = model[FAMILY[*q]].get_mut(&m.message_id).unwrap();
                        *held -= 1;
                        if *held == 0 {
                            model[FAMILY[*q]].remove(&m.message_id);
                        }
                    }
                }
            }
            StoreOp::Purge(q) => {
                s.purge(&qs[*q]).await.unwrap();
                model[FAMILY[*q]].clear();
            }
            StoreOp::Recreate(q) => {
                assert!(s.delete_queue(QUEUES[*q]).await.unwrap());
                qs[*q] = s
                    .put_queue(QUEUES[*q], QueueSpec::default(), QueueKind::User)
                    .await
                    .unwrap();
                model[FAMILY[*q]].clear();
            }
            StoreOp::Reopen => {
                drop(qs);
                drop(s);
                s = open();
                qs = open_queues(&s).await;
            }
        }
    }
    for (family, expected) in model.iter().enumerate() {
        let mut held = std::collections::BTreeMap::new();
        for q in (0..QUEUES.len()).filter(|&q| FAMILY[q] == family) {
            loop {
                let got = s.receive(&qs[q], 10, 600_000).await.unwrap();
                if got.is_empty() {
                    break;
                }
                for m in &got {
                    let body = format!(r#"{{"n":"{}"}}"#, m.message_id);
                    assert_eq!(m.payload, body.as_bytes());
                    *held.entry(m.message_id.clone()).or_default() += 1;
                }
                let receipts: Vec<String> = got.iter().map(|m| m.receipt.clone()).collect();
                s.ack(&qs[q], &receipts).await.unwrap();
            }
        }
        assert_eq!(&held, expected, "family of {}", QUEUES[family]);
    }
    assert_eq!(shared_bodies(&s).await, 0);
    assert_eq!(
        s.spaces.messages.iter().count(),
        0,
        "a body outlived its messages"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, ..Default::default() })]

    #[test]
    fn shared_bodies_follow_their_carriers(ops in proptest::collection::vec(store_op(), 0..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run_store_ops(&ops, index::RESIDENT_VISIBLE));
    }

    /// The same with queues that keep two visible messages in memory and spill the rest.
    #[test]
    fn spilled_messages_are_read_back_once_each(ops in proptest::collection::vec(store_op(), 0..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run_store_ops(&ops, 2));
    }
}

/// Creates a store in `dir` with one queue, `q`, closes it and returns the queue's id.
async fn store_with_queue(dir: &std::path::Path) -> u64 {
    let s = Embedded::open(dir).unwrap();
    s.put_queue("q", QueueSpec::default(), QueueKind::User)
        .await
        .unwrap()
        .id
}

#[tokio::test]
async fn acknowledged_writes_that_fjall_lacks_are_replayed_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let qid = store_with_queue(dir.path()).await;
    // What a kill between the two stages leaves: a synced log record that never
    // reached fjall.
    {
        let (mut wal, found) = Wal::open(&dir.path().join("wal"), 0).unwrap();
        assert!(found.records.is_empty());
        let mut rec = logged_message(qid, 7, "replayed");
        wal.append(&mut rec).unwrap();
        wal.sync().unwrap();
    }
    for _ in 0..2 {
        // Replayed once; the second open finds fjall holding it and replays nothing.
        let s = Embedded::open(dir.path()).unwrap();
        let q = s.queue("q").unwrap();
        assert_eq!(s.counts(&q).visible, 1);
        let sent = s.enqueue(vec![(q.clone(), msg("after"))]).await.unwrap();
        assert_eq!(sent.len(), 1);
        let got = s.receive(&q, 10, 0).await.unwrap();
        let ids: Vec<_> = got.iter().map(|m| m.message_id.as_str()).collect();
        assert_eq!(ids[0], "replayed");
        for m in &got {
            if m.message_id == "after" {
                s.ack(&q, std::slice::from_ref(&m.receipt)).await.unwrap();
            }
        }
    }
}

/// A log record storing message `id` (sequence `seq`) in the queue with id `qid`.
fn logged_message(qid: u64, seq: u64, id: &str) -> Vec<u8> {
    let key = codec::msg_key(qid, seq).to_vec();
    let entry = Entry {
        sent_at: crate::time::now_ms(),
        visible_at: 0,
        receive_count: 0,
        state: MsgState::Visible,
        group: None,
        origin: None,
        shared: None,
        first_received_at: 0,
    };
    let body = Body {
        message_id: id.into(),
        dedup_id: None,
        attributes: b"{}".to_vec(),
        payload: b"{}".to_vec(),
    };
    let mut rec = Wal::record_buf(0);
    rec.extend(committer::encode_ops(vec![
        Op::Put(Space::Messages, key.clone(), codec::encode_body(&body)),
        Op::Put(Space::State, key, codec::encode_state(&entry)),
    ]));
    rec
}

#[tokio::test]
async fn a_damaged_log_record_that_was_synced_stops_the_open_naming_the_file() {
    for damaged in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let qid = store_with_queue(dir.path()).await;
        // Two syncs that fjall never saw: the second record says the first was synced.
        let wal_dir = dir.path().join("wal");
        {
            let (mut wal, _) = Wal::open(&wal_dir, 0).unwrap();
            wal.append(&mut logged_message(qid, 1, "first-of-two"))
                .unwrap();
            wal.sync().unwrap();
            wal.append(&mut logged_message(qid, 2, "second-of-two"))
                .unwrap();
            wal.sync().unwrap();
        }
        let mut holder = None;
        for entry in std::fs::read_dir(&wal_dir).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            if let Some(at) = memchr::memmem::find(&bytes, b"first-of-two") {
                holder = Some(path.clone());
                if damaged {
                    let mut bytes = bytes;
                    bytes[at + 3] ^= 0x20;
                    std::fs::write(&path, bytes).unwrap();
                }
            }
        }
        let holder = holder.expect("a log file holds the record");
        match Embedded::open(dir.path()) {
            Ok(s) => {
                assert!(!damaged, "a damaged synced record must stop the open");
                assert_eq!(s.counts(&s.queue("q").unwrap()).visible, 2);
            }
            Err(e) => {
                assert!(damaged, "an intact log opens: {e}");
                let msg = e.to_string();
                assert!(msg.contains("is damaged or missing"), "{msg}");
                assert!(msg.contains(&holder.display().to_string()), "{msg}");
            }
        }
    }
}

#[tokio::test]
async fn stored_messages_survive_reopen_with_their_receive_state() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Embedded::open(dir.path()).unwrap();
        let q = s
            .put_queue("q", QueueSpec::default(), QueueKind::User)
            .await
            .unwrap();
        s.enqueue(vec![(q.clone(), msg("a")), (q.clone(), msg("b"))])
            .await
            .unwrap();
        let got = s.receive(&q, 1, 60_000).await.unwrap();
        assert_eq!(got[0].message_id, "a");
    }
    let s = Embedded::open(dir.path()).unwrap();
    let q = s.queue("q").unwrap();
    let c = s.counts(&q);
    assert_eq!((c.visible, c.in_flight), (1, 1));
    let got = s.receive(&q, 10, 1000).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message_id, "b");
    assert_eq!(got[0].payload, br#"{"n":"b"}"#);
    // New messages continue the sequence instead of overwriting old ones.
    s.enqueue(vec![(q.clone(), msg("c"))]).await.unwrap();
    assert_eq!(s.counts(&q).visible, 1);
}

#[tokio::test]
async fn ack_is_durable_and_receipts_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Embedded::open(dir.path()).unwrap();
        let q = s
            .put_queue("q", QueueSpec::default(), QueueKind::User)
            .await
            .unwrap();
        s.enqueue(vec![(q.clone(), msg("a"))]).await.unwrap();
        let r = s.receive(&q, 1, 60_000).await.unwrap();
        let verdicts = s
            .ack(
                &q,
                &[r[0].receipt.clone(), "nonsense".into(), "1-99-1".into()],
            )
            .await
            .unwrap();
        assert!(verdicts[0].is_ok());
        assert!(matches!(verdicts[1], Err(ReceiptError::Invalid(_))));
        assert!(matches!(verdicts[2], Err(ReceiptError::Expired(_))));
    }
    let s = Embedded::open(dir.path()).unwrap();
    let q = s.queue("q").unwrap();
    assert_eq!(s.counts(&q), Counts::default());
}

#[test]
fn the_journals_stay_bounded_while_a_quiet_keyspace_holds_the_oldest() {
    const RECORD: usize = 1 << 20;
    const WRITTEN: u64 = 16 * MAX_JOURNALING_BYTES;
    /// Keys written over and over, so the tables stay small and only the journals grow.
    const KEYS: u64 = 32;
    let dir = tempfile::tempdir().unwrap();
    let db = open_database(dir.path()).unwrap();
    let small = || KeyspaceCreateOptions::default().max_memtable_size(SMALL_MEMTABLE_BYTES);
    // Bodies acknowledged within the committer's window never reach fjall, so under a
    // steady load of quick consumers the bodies' keyspace sees a few writes that its
    // memtable holds for ever, while the small records of the queues' state stream
    // through the journals.
    let quiet = db.keyspace("quiet", small).unwrap();
    let busy = db.keyspace("busy", small).unwrap();
    quiet.insert(b"quiet", b"x").unwrap();
    // Random, so that the journals cannot compress it.
    let record: Vec<u8> = std::iter::repeat_with(|| fastrand::u8(..))
        .take(RECORD)
        .collect();
    let mut most = 0;
    for i in 0..WRITTEN / RECORD as u64 {
        busy.insert((i % KEYS).to_be_bytes(), &record).unwrap();
        // At the pace of a server whose flushes keep up with its writes.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while db.outstanding_flushes() > 0 {
            assert!(std::time::Instant::now() < until, "flushes never caught up");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        most = most.max(db.journal_disk_space().unwrap());
    }
    // Without a bound the quiet memtable keeps every journal written since it was: all
    // that was written. With it, fjall flushes that memtable once the sealed journals
    // reach the bound and deletes them once every keyspace has flushed past them: the
    // journals then peak at a few times the bound (how many depends on how the flushes
    // fall), however much is written.
    assert!(
        most <= WRITTEN / 2,
        "{most} bytes of journals at most while {WRITTEN} bytes were written"
    );
}

#[tokio::test]
async fn moved_messages_remember_their_origin_until_they_move_back() {
    let dir = tempfile::tempdir().unwrap();
    let s = Embedded::open(dir.path()).unwrap();
    let q = s
        .put_queue("q", QueueSpec::default(), QueueKind::User)
        .await
        .unwrap();
    let dlq = s
        .put_queue("dlq", QueueSpec::default(), QueueKind::User)
        .await
        .unwrap();
    s.enqueue(vec![(q.clone(), msg("a")), (q.clone(), msg("b"))])
        .await
        .unwrap();
    let got = s.receive(&q, 2, 0).await.unwrap();
    // b's receipt goes stale: it is received again before the move.
    let again = s.receive(&q, 2, 30_000).await.unwrap();
    assert_eq!(again.len(), 2);
    let moved = s
        .move_messages(
            &q,
            &[again[0].clone(), got[1].clone()],
            &dlq,
            Move::ToDeadLetter,
        )
        .await
        .unwrap();
    assert_eq!(moved, 1, "only the current receipt moves a message");
    let dead = s.receive(&dlq, 10, 0).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message_id, "a");
    assert_eq!(dead[0].origin.as_deref(), Some("q"));
    assert_eq!(dead[0].receive_count, 1, "a move starts the count again");
    assert_eq!(dead[0].payload, msg("a").payload);

    assert_eq!(
        s.move_messages(&dlq, &dead, &q, Move::Back).await.unwrap(),
        1
    );
    let mut back = s.receive(&q, 10, 0).await.unwrap();
    back.retain(|m| m.message_id == "a");
    assert_eq!(back[0].origin, None, "back home it is no dead letter");
    assert_eq!(s.counts(&dlq), Counts::default());
}

#[tokio::test]
async fn messages_taken_to_move_and_not_moved_are_visible_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Embedded::open(dir.path()).unwrap();
        let dlq = s
            .put_queue("dlq", QueueSpec::default(), QueueKind::User)
            .await
            .unwrap();
        s.enqueue(vec![(dlq.clone(), msg("a")), (dlq.clone(), msg("b"))])
            .await
            .unwrap();
        let taken = s.take_to_move(&dlq, 10).await.unwrap();
        assert_eq!(taken.len(), 2);
        let c = s.counts(&dlq);
        assert_eq!((c.visible, c.in_flight), (0, 2), "hidden from receivers");
        s.hold(&dlq, &taken[..1], 300_000);
        // Something else reaches the disk after the take, as it would before a crash.
        s.enqueue(vec![(dlq.clone(), msg("c"))]).await.unwrap();
        s.committer.settle().await.unwrap();
    }
    let s = Embedded::open(dir.path()).unwrap();
    let dlq = s.queue("dlq").unwrap();
    let c = s.counts(&dlq);
    assert_eq!((c.visible, c.in_flight), (3, 0));
    let got = s.receive(&dlq, 10, 0).await.unwrap();
    assert!(
        got.iter().all(|m| m.receive_count == 1),
        "a take to move is no receive: {got:?}"
    );
}

#[tokio::test]
async fn fifo_dedup_id_is_remembered_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let spec = QueueSpec {
        fifo: true,
        ..QueueSpec::default()
    };
    let fifo_msg = |id: &str| NewMessage {
        group: Some("g".into()),
        dedup_id: Some("d1".into()),
        ..msg(id)
    };
    {
        let s = Embedded::open(dir.path()).unwrap();
        let q = s
            .put_queue("q.fifo", spec.clone(), QueueKind::User)
            .await
            .unwrap();
        let r = s.enqueue(vec![(q.clone(), fifo_msg("a"))]).await.unwrap();
        assert!(matches!(r[..], [Enqueued::Stored { .. }]), "{r:?}");
    }
    let s = Embedded::open(dir.path()).unwrap();
    let q = s.queue("q.fifo").unwrap();
    let r = s.enqueue(vec![(q.clone(), fifo_msg("b"))]).await.unwrap();
    assert_eq!(
        r,
        [Enqueued::Duplicate {
            original_message_id: "a".into()
        }]
    );
    assert_eq!(s.counts(&q).visible, 1);
}

#[tokio::test]
async fn the_log_tells_when_logged_writes_are_in_it_and_only_them() {
    let dir = tempfile::tempdir().unwrap();
    let s = Embedded::open(dir.path()).unwrap();
    let tracked = |ops| {
        let (tx, rx) = std::sync::mpsc::channel();
        let durable = s
            .committer
            .send_tracked(ops, Box::new(move || tx.send(()).unwrap()));
        (rx, durable)
    };
    let (written, durable) = tracked(vec![Op::Put(Space::State, b"k".to_vec(), b"v".to_vec())]);
    durable.await.unwrap();
    assert!(written.try_recv().is_ok(), "a queue write is in the log");
    let (written, durable) = tracked(vec![Op::Put(Space::Records, b"k".to_vec(), b"v".to_vec())]);
    durable.await.unwrap();
    assert!(
        written.try_recv().is_err(),
        "a stream write only becomes durable in fjall"
    );
}

#[tokio::test]
async fn a_fan_out_to_queues_read_before_and_after_the_sync_stores_both() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Embedded::open(dir.path()).unwrap();
        let early = s
            .put_queue("t:function", QueueSpec::default(), QueueKind::Delivery)
            .await
            .unwrap();
        early.set_before_sync(true);
        let late = s
            .put_queue("q", QueueSpec::default(), QueueKind::User)
            .await
            .unwrap();
        for i in 0..3 {
            let id = format!("m{i}");
            s.enqueue(vec![(early.clone(), msg(&id)), (late.clone(), msg(&id))])
                .await
                .unwrap();
        }
        for q in [&early, &late] {
            let got = s.receive(q, 10, 60_000).await.unwrap();
            let ids: Vec<_> = got.iter().map(|m| m.message_id.as_str()).collect();
            assert_eq!(ids, ["m0", "m1", "m2"], "in {}", q.name);
            s.ack(q, &[got[0].receipt.clone()]).await.unwrap();
        }
    }
    let s = Embedded::open(dir.path()).unwrap();
    for name in ["t:function", "q"] {
        let c = s.counts(&s.queue(name).unwrap());
        assert_eq!((c.visible, c.in_flight), (0, 2), "in {name}");
    }
}

#[tokio::test]
async fn a_queue_and_a_stream_keep_when_they_were_created_and_changed_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = crate::time::Clock::manual(1_000_000);
    {
        let s = Embedded::open_with_clock(dir.path(), clock.clone()).unwrap();
        let q = s
            .put_queue("q", QueueSpec::default(), QueueKind::User)
            .await
            .unwrap();
        s.put_stream("st", crate::model::StreamSpec::new(1))
            .await
            .unwrap();
        clock.advance(std::time::Duration::from_secs(5));
        let changed = QueueSpec {
            delay_s: 3,
            ..QueueSpec::default()
        };
        s.put_queue("q", changed, QueueKind::User).await.unwrap();
        assert_eq!(q.created_at, 1_000_000);
        assert_eq!(q.modified_at.load(Ordering::Relaxed), 1_005_000);
    }
    let s = Embedded::open_with_clock(dir.path(), clock).unwrap();
    let q = s.queue("q").unwrap();
    assert_eq!(
        (q.created_at, q.modified_at.load(Ordering::Relaxed)),
        (1_000_000, 1_005_000)
    );
    assert_eq!(s.stream("st").unwrap().created_at, 1_000_000);
}

/// Senders and receivers at once on a queue that keeps eight visible messages in memory:
/// pages are read while messages arrive, are spilled and are received, and each message
/// comes out once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_queue_spilling_while_sent_to_and_received_from_hands_each_message_out_once() {
    const SENDERS: usize = 4;
    const EACH: usize = 250;
    let dir = tempfile::tempdir().unwrap();
    let s = Arc::new(Embedded::open_with(dir.path(), Clock::system(), 8).unwrap());
    let q = s
        .put_queue("q", QueueSpec::default(), QueueKind::User)
        .await
        .unwrap();
    let mut senders = Vec::new();
    for t in 0..SENDERS {
        let (s, q) = (s.clone(), q.clone());
        senders.push(tokio::spawn(async move {
            for chunk in (0..EACH).collect::<Vec<_>>().chunks(5) {
                let items = chunk
                    .iter()
                    .map(|n| (q.clone(), msg(&format!("{t}-{n}"))))
                    .collect();
                s.enqueue(items).await.unwrap();
            }
        }));
    }
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut receivers = Vec::new();
    for _ in 0..2 {
        let (s, q, seen) = (s.clone(), q.clone(), seen.clone());
        receivers.push(tokio::spawn(async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            while seen.lock().unwrap().len() < SENDERS * EACH {
                assert!(
                    std::time::Instant::now() < deadline,
                    "not every message came out"
                );
                let wait = std::time::Duration::from_millis(50);
                let stop = tokio_util::sync::CancellationToken::new();
                let got = s.receive_wait(&q, 10, 600_000, wait, &stop).await.unwrap();
                let receipts: Vec<String> = got.iter().map(|m| m.receipt.clone()).collect();
                let verdicts = s.ack(&q, &receipts).await.unwrap();
                assert!(verdicts.iter().all(Result::is_ok));
                seen.lock()
                    .unwrap()
                    .extend(got.into_iter().map(|m| m.message_id));
            }
        }));
    }
    for t in senders.into_iter().chain(receivers) {
        t.await.unwrap();
    }
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    let mut want: Vec<String> = (0..SENDERS)
        .flat_map(|t| (0..EACH).map(move |n| format!("{t}-{n}")))
        .collect();
    want.sort();
    assert_eq!(seen, want);
    assert_eq!(s.counts(&q), Counts::default());
}

/// Retention reaches spilled messages too, though nothing reads them back: a queue nobody
/// receives from does not keep them past their time.
#[tokio::test]
async fn spilled_messages_past_retention_are_swept_from_storage() {
    let dir = tempfile::tempdir().unwrap();
    let clock = crate::time::Clock::manual(1_000_000);
    let s = Embedded::open_with(dir.path(), clock.clone(), 2).unwrap();
    let q = s
        .put_queue("q", QueueSpec::default(), QueueKind::User)
        .await
        .unwrap();
    let items = (0..6)
        .map(|n| (q.clone(), msg(&format!("old{n}"))))
        .collect();
    s.enqueue(items).await.unwrap();
    clock.advance(std::time::Duration::from_secs(
        QueueSpec::default().retention_s - 1,
    ));
    s.enqueue(vec![(q.clone(), msg("new"))]).await.unwrap();
    clock.advance(std::time::Duration::from_secs(2));
    s.committer.settle().await.unwrap();
    s.sweep();
    assert_eq!(s.counts(&q).visible, 1, "only the newer message is kept");
    s.committer.settle().await.unwrap();
    let states = s.spaces.state.prefix(codec::queue_prefix(q.id)).count();
    assert_eq!(states, 1, "the expired ones are gone from storage");
    let got = s.receive(&q, 10, 1000).await.unwrap();
    let ids: Vec<&str> = got.iter().map(|m| m.message_id.as_str()).collect();
    assert_eq!(ids, ["new"]);
}
