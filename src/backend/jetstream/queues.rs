//! Queues on JetStream: SQS semantics from a work-queue stream and durable pull consumers.
//!
//! - **Visibility** is the consumer's ack wait (the queue's `visibility_timeout_s`); a
//!   receive asking for another timeout naks each message with that delay, which keeps it
//!   pending (in flight) and redelivers it when the delay ends. `change_visibility` is
//!   the same nak; 0 makes the message visible at once.
//! - **Receive count** is JetStream's delivery count, read from the ack subject.
//! - **Receipts** carry the ack subject, so any router can ack or nak any message.
//! - **Redrive**: a message delivered more than `max_receive_count` times is moved to the
//!   dead-letter queue by the receive that sees it (publish there, then ack here).
//! - **Delay**: JetStream 2.9 cannot schedule a message, so delayed messages go to the
//!   queue's `.d` subject, where a second consumer holds them: each router's delay pump
//!   pulls them and naks each with a delay until it is due, then publishes it to the ready
//!   subject (under a message id, so a pump that dies halfway never doubles it) and acks.
//!   This keeps delayed messages out of the receivers' way, their receive count exact, and
//!   `approximate_delayed` a plain consumer count. (The alternative, a nak with delay at
//!   the first delivery, would count the delay as a receive and fill the in-flight window.)
//! - **FIFO**: a group's messages go to one of [`FIFO_PARTITIONS`] subjects by a hash of
//!   the group, each with its own consumer allowing one message in flight. So a group's
//!   next message is delivered only once the one before it is acknowledged (or, after its
//!   visibility timeout, redelivered first), as SQS locks a group; different groups in
//!   different partitions are received in parallel.
//! - **Dedup**: the `Nats-Msg-Id` header within the stream's duplicate window. Every
//!   message has one (its deduplication id, else its message id), so a publish retried
//!   after a lost acknowledgement is stored once.

use super::codec::{self, AckInfo, Frame, QueueNames};
use super::store::{Prepared, Target};
use super::{ApiError, JetStream, JsError, REQUEST_TIMEOUT, RETRY_DEDUP_WINDOW};
use crate::backend::{Counts, Move, NewMessage, QueueKind, ReceiptError, Received};
use crate::model::{FIFO_DEDUP_WINDOW_S, Kind, QueueSpec};
use crate::time::now_ms;
use async_nats::{HeaderMap, StatusCode};
use bytes::Bytes;
use futures::StreamExt;
use serde_json::json;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::time::Instant;

pub(super) const META_QUEUE: &str = "q/";

/// Partitions of a FIFO queue: how many message groups can be in flight at once. Fixed
/// when the queue is created (it is stored with it).
pub const FIFO_PARTITIONS: u32 = 8;

/// SQS's in-flight limit for standard queues; JetStream stops delivering past it.
const MAX_IN_FLIGHT: i64 = 120_000;

/// How long a delayed message may sit with a pump that died before another one gets it.
const DELAY_ACK_WAIT: Duration = Duration::from_secs(30);
/// How long one pump pull waits for due messages.
const PUMP_WAIT: Duration = Duration::from_secs(5);
/// Delayed messages handled per pump pull.
const PUMP_BATCH: usize = 256;

/// FIFO receives poll the partitions (a pull waits on one consumer only); the interval
/// starts short and doubles to this.
const FIFO_MAX_POLL: Duration = Duration::from_millis(200);

/// How long a pull that should not wait may still wait on the server: only when the
/// consumer has messages but cannot hand them out (a FIFO partition with its message in
/// flight), so it is short.
const NO_WAIT_EXPIRY: Duration = Duration::from_millis(50);

/// Message headers of this backend.
const H_DUE: &str = "Sy-Due";
const H_ORIGIN: &str = "Sy-Origin";

#[derive(serde::Serialize, serde::Deserialize)]
struct QueueRecord {
    spec: QueueSpec,
    /// Absent from records written before queues carried their kind: those name a
    /// delivery queue with a `:` (a user's queue name cannot hold one).
    #[serde(default)]
    kind: Option<QueueKind>,
    /// FIFO partitions (1 for standard queues).
    partitions: u32,
    /// Random per creation: receipts name it, so they never act on a recreated queue.
    incarnation: u64,
    /// When it was created and last changed (unix ms; 0 in records written before they
    /// were kept).
    #[serde(default)]
    created_at: u64,
    #[serde(default)]
    modified_at: u64,
}

/// What a delay pump needs of the backend.
#[derive(Clone)]
pub(crate) struct PumpContext {
    pub client: async_nats::Client,
    pub js: async_nats::jetstream::Context,
    pub prefix: String,
}

/// One queue as this instance knows it.
pub struct QueueHandle {
    pub name: String,
    /// When it was created and its settings last changed (unix ms; 0 when its record
    /// predates keeping them).
    pub created_at: u64,
    pub modified_at: AtomicU64,
    kind: QueueKind,
    names: QueueNames,
    spec: Mutex<QueueSpec>,
    partitions: u32,
    incarnation: u64,
    /// Next FIFO partition to look at first, so receivers spread over the partitions.
    rotation: AtomicU32,
    pump: Mutex<Option<tokio::task::JoinHandle<()>>>,
    deleted: AtomicBool,
}

impl QueueHandle {
    pub fn kind(&self) -> QueueKind {
        self.kind
    }

    pub fn spec(&self) -> QueueSpec {
        self.spec.lock().expect("never poisoned").clone()
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    pub(super) fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
        if let Some(p) = self.pump.lock().expect("never poisoned").take() {
            p.abort();
        }
    }

    pub fn fifo(&self) -> bool {
        self.partitions > 1 || self.spec().fifo
    }

    fn consumers(&self) -> Vec<String> {
        let fifo = self.fifo();
        (0..self.partitions)
            .map(|p| QueueNames::ready_consumer(fifo, p))
            .collect()
    }

    /// The consumer's ack wait: the queue's visibility timeout (JetStream has no zero).
    fn ack_wait_ms(&self) -> u64 {
        (self.spec().visibility_timeout_s * 1000).max(1000)
    }

    fn partition(&self, group: Option<&str>) -> u32 {
        match group {
            Some(g) if self.partitions > 1 => codec::partition_of(g, self.partitions),
            _ => 0,
        }
    }

    pub(super) fn prepare(&self, m: NewMessage, now: u64) -> Prepared {
        let mut headers = HeaderMap::new();
        let subject = if m.delay_ms > 0 {
            headers.insert(H_DUE, (now + m.delay_ms).to_string().as_str());
            self.names.delayed.clone()
        } else {
            self.names.ready_subject(self.partition(m.group.as_deref()))
        };
        let dedup = m.dedup_id.is_some();
        let msg_id = match &m.dedup_id {
            Some(d) => format!("d:{d}"),
            None => format!("m:{}", m.message_id),
        };
        let payload = codec::encode_frame(
            &m.message_id,
            now,
            m.group.as_deref(),
            m.dedup_id.as_deref(),
            &m.attributes,
            &m.payload,
        );
        Prepared {
            subject,
            headers,
            payload: Bytes::from(payload),
            msg_id,
            target: Target::Queue {
                stream: self.names.stream.clone(),
                message_id: m.message_id,
                dedup,
            },
        }
    }
}

/// Reflects a queue record (or its deletion) in the queue handles of the metadata mirror.
pub(super) fn sync_queue(
    queues: &RwLock<HashMap<String, Arc<QueueHandle>>>,
    ctx: &PumpContext,
    name: &str,
    value: Option<&Bytes>,
) {
    {
        let mut queues = queues.write().expect("never poisoned");
        let Some(value) = value else {
            if let Some(h) = queues.remove(name) {
                h.mark_deleted();
            }
            return;
        };
        let Ok(rec) = serde_json::from_slice::<QueueRecord>(value) else {
            tracing::error!(queue = name, "queue record is corrupt; ignoring it");
            return;
        };
        if let Some(h) = queues.get(name)
            && h.incarnation == rec.incarnation
        {
            *h.spec.lock().expect("never poisoned") = rec.spec;
            h.modified_at.store(rec.modified_at, Ordering::Relaxed);
            return;
        }
        let kind = rec.kind.unwrap_or(if name.contains(':') {
            QueueKind::Delivery
        } else {
            QueueKind::User
        });
        let h = Arc::new(QueueHandle {
            name: name.to_string(),
            created_at: rec.created_at,
            modified_at: AtomicU64::new(rec.modified_at),
            kind,
            names: QueueNames::new(&ctx.prefix, name),
            spec: Mutex::new(rec.spec),
            partitions: rec.partitions.max(1),
            incarnation: rec.incarnation,
            rotation: AtomicU32::new(0),
            pump: Mutex::new(None),
            deleted: AtomicBool::new(false),
        });
        let pump = tokio::spawn(pump(ctx.clone(), h.names.clone(), h.partitions));
        *h.pump.lock().expect("never poisoned") = Some(pump);
        if let Some(old) = queues.insert(name.to_string(), h) {
            old.mark_deleted();
        }
    }
}

impl JetStream {
    pub fn queue(&self, name: &str) -> Option<Arc<QueueHandle>> {
        self.mirror
            .queues
            .read()
            .expect("never poisoned")
            .get(name)
            .cloned()
    }

    pub fn queue_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .mirror
            .queues
            .read()
            .expect("never poisoned")
            .values()
            .filter(|h| h.kind == QueueKind::User)
            .map(|h| h.name.clone())
            .collect();
        v.sort();
        v
    }

    /// Creates a queue of `kind`, or updates the mutable settings of an existing one
    /// (retention and visibility timeout). Safe to run from several routers at once.
    pub async fn put_queue(
        &self,
        name: &str,
        spec: QueueSpec,
        kind: QueueKind,
    ) -> Result<Arc<QueueHandle>, JsError> {
        let existing = self.queue(name);
        let (partitions, incarnation) = match &existing {
            Some(h) => (h.partitions, h.incarnation),
            None => (
                if spec.fifo { FIFO_PARTITIONS } else { 1 },
                uuid::Uuid::now_v7().as_u128() as u64,
            ),
        };
        let names = QueueNames::new(&self.prefix, name);
        let retention = Duration::from_secs(spec.retention_s.max(1));
        let window = if spec.fifo {
            Duration::from_secs(FIFO_DEDUP_WINDOW_S)
        } else {
            RETRY_DEDUP_WINDOW
        }
        .min(retention);
        let config = json!({
            "name": names.stream,
            "subjects": [format!("{}.>", names.ready), names.delayed],
            "retention": "workqueue",
            "storage": "file",
            "discard": "old",
            "num_replicas": self.replicas,
            "max_age": retention.as_nanos() as u64,
            "duplicate_window": window.as_nanos() as u64,
            "allow_direct": true,
        });
        self.put_js_stream(&names.stream, config, existing.is_some())
            .await
            .map_err(|e| e.into_js(Kind::Queue, name))?;
        let fifo = partitions > 1;
        let ack_wait = Duration::from_millis((spec.visibility_timeout_s * 1000).max(1000));
        for p in 0..partitions {
            let consumer = QueueNames::ready_consumer(fifo, p);
            let filter = if fifo {
                names.ready_subject(p)
            } else {
                format!("{}.>", names.ready)
            };
            self.put_consumer(
                &names.stream,
                &consumer,
                &filter,
                ack_wait,
                if fifo { 1 } else { MAX_IN_FLIGHT },
            )
            .await
            .map_err(|e| e.into_js(Kind::Queue, name))?;
        }
        self.put_consumer(
            &names.stream,
            codec::DELAY_CONSUMER,
            &names.delayed,
            DELAY_ACK_WAIT,
            MAX_IN_FLIGHT,
        )
        .await
        .map_err(|e| e.into_js(Kind::Queue, name))?;
        let now = now_ms();
        let rec = QueueRecord {
            spec,
            kind: Some(existing.as_ref().map_or(kind, |h| h.kind)),
            partitions,
            incarnation,
            created_at: existing.as_ref().map_or(now, |h| h.created_at),
            modified_at: now,
        };
        let key = format!("{META_QUEUE}{}", codec::key_of_name(name));
        let value = serde_json::to_vec(&rec).expect("plain data always serializes");
        if existing.is_some() {
            self.put_meta(&key, value).await?;
        } else {
            // Another router creating the queue at the same moment may win: its record
            // (and incarnation, which receipts name) is then the queue's.
            self.create_meta(&key, value).await?;
        }
        self.queue(name).ok_or_else(|| JsError::NotFound {
            kind: Kind::Queue,
            name: name.to_string(),
        })
    }

    /// Creates a durable pull consumer, or updates the settings that may change.
    async fn put_consumer(
        &self,
        stream: &str,
        durable: &str,
        filter: &str,
        ack_wait: Duration,
        max_ack_pending: i64,
    ) -> Result<(), ApiError> {
        let request = json!({
                "stream_name": stream,
                "config": {
                    "durable_name": durable,
                    "deliver_policy": "all",
                    "ack_policy": "explicit",
                    "ack_wait": ack_wait.as_nanos() as u64,
                    "max_deliver": -1,
                    "filter_subject": filter,
                    "replay_policy": "instant",
                    "max_ack_pending": max_ack_pending,
                }
        });
        self.api_idempotent(
            format!("CONSUMER.DURABLE.CREATE.{stream}.{durable}"),
            request,
        )
        .await
        .map(|_| ())
    }

    /// Deletes a queue and every message in it.
    pub async fn delete_queue(&self, name: &str) -> Result<bool, JsError> {
        if self.queue(name).is_none() {
            return Ok(false);
        }
        let names = QueueNames::new(&self.prefix, name);
        match self
            .api(&format!("STREAM.DELETE.{}", names.stream), json!({}))
            .await
        {
            Ok(_) | Err(ApiError::NotFound(_)) => {}
            Err(ApiError::Other(e)) => return Err(e),
        }
        self.delete_meta(&format!("{META_QUEUE}{}", codec::key_of_name(name)))
            .await?;
        Ok(true)
    }

    /// Receives up to `max` messages, waiting up to `wait` for the first, and hides them
    /// for `visibility_ms`.
    pub async fn receive(
        &self,
        q: &Arc<QueueHandle>,
        max: usize,
        visibility_ms: u64,
        wait: Duration,
    ) -> Result<Vec<Received>, JsError> {
        let deadline = Instant::now() + wait;
        let mut poll = Duration::from_millis(10);
        loop {
            let msgs = if q.fifo() {
                self.pull_fifo(q, max).await?
            } else {
                self.pull_standard(q, max, deadline).await?
            };
            let fetched = msgs.len();
            let out = self.take(q, msgs, visibility_ms).await?;
            if !out.is_empty() || Instant::now() >= deadline || q.is_deleted() {
                return Ok(out);
            }
            if fetched == 0 && q.fifo() {
                tokio::time::sleep_until(deadline.min(Instant::now() + poll)).await;
                poll = (poll * 2).min(FIFO_MAX_POLL);
            }
        }
    }

    /// Takes up to `max` visible messages to move them elsewhere with
    /// [`Self::move_messages`], hidden for the queue's visibility timeout (the consumer's
    /// ack wait, so no nak makes the hold longer): a router that dies before the move
    /// leaves them to be received again then, as a receiver that died does.
    pub async fn take_to_move(
        &self,
        q: &Arc<QueueHandle>,
        max: usize,
    ) -> Result<Vec<Received>, JsError> {
        self.receive(q, max, q.ack_wait_ms(), Duration::ZERO).await
    }

    /// Hides messages taken to move for `ms` more (0: visible at once): a nak with that
    /// delay, which the server keeps whatever becomes of this router.
    pub async fn hold(
        &self,
        q: &QueueHandle,
        messages: &[Received],
        ms: u64,
    ) -> Result<(), JsError> {
        let receipts: Vec<String> = messages.iter().map(|m| m.receipt.clone()).collect();
        self.settle(q, &receipts, &nak_body(ms)).await?;
        Ok(())
    }

    /// Standard queues: take what is there; if nothing is, wait on one pull for the first
    /// message and then take what else is there. (A pull for `max` would wait for all
    /// `max` or the expiry; SQS answers as soon as there is something.)
    async fn pull_standard(
        &self,
        q: &QueueHandle,
        max: usize,
        deadline: Instant,
    ) -> Result<Vec<async_nats::Message>, JsError> {
        let stream = &q.names.stream;
        let mut msgs = pull(&self.client, stream, "ready", max, None).await?;
        let left = deadline.saturating_duration_since(Instant::now());
        if msgs.is_empty() && left >= Duration::from_millis(10) {
            msgs = pull(&self.client, stream, "ready", 1, Some(left)).await?;
            if !msgs.is_empty() && max > 1 {
                msgs.extend(pull(&self.client, stream, "ready", max - 1, None).await?);
            }
        }
        Ok(msgs)
    }

    /// FIFO queues: one message per partition (each allows one in flight), starting at a
    /// rotating partition, asking only as many partitions at once as there is room for.
    async fn pull_fifo(
        &self,
        q: &QueueHandle,
        max: usize,
    ) -> Result<Vec<async_nats::Message>, JsError> {
        let n = q.partitions;
        let start = q.rotation.fetch_add(1, Ordering::Relaxed) % n;
        let order: Vec<String> = (0..n)
            .map(|i| QueueNames::ready_consumer(true, (start + i) % n))
            .collect();
        let mut out = Vec::new();
        let mut next = 0;
        while out.len() < max && next < order.len() {
            let wave = (max - out.len()).min(order.len() - next);
            let got = futures::future::join_all(
                order[next..next + wave]
                    .iter()
                    .map(|c| pull(&self.client, &q.names.stream, c, 1, None)),
            )
            .await;
            next += wave;
            for g in got {
                out.extend(g?);
            }
        }
        Ok(out)
    }

    /// Turns pulled messages into received ones and applies the requested visibility
    /// timeout.
    async fn take(
        &self,
        q: &Arc<QueueHandle>,
        msgs: Vec<async_nats::Message>,
        visibility_ms: u64,
    ) -> Result<Vec<Received>, JsError> {
        if msgs.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity(msgs.len());
        let mut subjects = Vec::with_capacity(msgs.len());
        for m in msgs {
            let Some((subject, info, frame)) = delivered(&m) else {
                tracing::error!(queue = %q.name, "unreadable message; dropping it");
                if let Some(r) = &m.reply {
                    let _ = ack_request(&self.client, r, b"+TERM").await;
                }
                continue;
            };
            let origin = m
                .headers
                .as_ref()
                .and_then(|h| h.get(H_ORIGIN))
                .map(|v| v.as_str().to_string())
                .filter(|o| self.queue(o).is_some());
            out.push(Received {
                message_id: frame.message_id,
                receipt: codec::encode_receipt(q.incarnation, &subject),
                payload: frame.payload,
                attributes: frame.attributes,
                receive_count: info.delivered.min(u32::MAX as u64) as u32,
                sent_at: frame.sent_at,
                // JetStream keeps when a message was delivered last, not first.
                first_received_at: None,
                dedup_id: frame.dedup_id,
                sequence: info.stream_seq,
                group: frame.group.map(Arc::from),
                origin,
            });
            subjects.push(subject);
        }
        if visibility_ms != q.ack_wait_ms() {
            let body = nak_body(visibility_ms);
            let naks = futures::future::join_all(
                subjects.iter().map(|s| ack_request(&self.client, s, &body)),
            )
            .await;
            for n in naks {
                n?;
            }
        }
        Ok(out)
    }

    /// Moves received messages, by their receipts, from `from` to `to`: publish to `to`
    /// first (under an id naming the source message, so a move repeated after a crash is
    /// stored once), then acknowledge where they were. A receipt of another queue is
    /// skipped. Returns how many moved.
    pub async fn move_messages(
        &self,
        from: &QueueHandle,
        messages: &[Received],
        to: &Arc<QueueHandle>,
        why: Move,
    ) -> Result<u64, JsError> {
        let mut subjects = Vec::with_capacity(messages.len());
        let mut prepared = Vec::with_capacity(messages.len());
        for m in messages {
            let Ok((subject, _)) = codec::parse_receipt(&m.receipt, from.incarnation, &from.names)
            else {
                continue;
            };
            let Some(info) = codec::parse_ack_subject(&subject) else {
                continue;
            };
            let mut headers = HeaderMap::new();
            if why == Move::ToDeadLetter {
                headers.insert(H_ORIGIN, from.name.as_str());
            }
            prepared.push(Prepared {
                subject: to.names.ready_subject(to.partition(m.group.as_deref())),
                headers,
                payload: Bytes::from(codec::encode_frame(
                    &m.message_id,
                    m.sent_at,
                    m.group.as_deref(),
                    m.dedup_id.as_deref(),
                    &m.attributes,
                    &m.payload,
                )),
                msg_id: format!("mv:{}:{}", from.names.stream, info.stream_seq),
                target: Target::Move,
            });
            subjects.push(subject);
        }
        let deadline = Instant::now() + super::PUBLISH_DEADLINE;
        self.publish_in_order(&prepared, deadline).await?;
        let acks = futures::future::join_all(
            subjects
                .iter()
                .map(|s| ack_request(&self.client, s, b"+ACK")),
        )
        .await;
        for a in acks {
            a?;
        }
        Ok(subjects.len() as u64)
    }

    /// Acknowledges (deletes) received messages; each receipt gets its own verdict.
    ///
    /// Unlike the embedded backend, JetStream accepts the ack of a receipt from an earlier
    /// receive of a message (as SQS does for standard queues), and of a message already
    /// acknowledged; only receipts of another or a recreated queue are refused.
    pub async fn ack(
        &self,
        q: &QueueHandle,
        receipts: &[String],
    ) -> Result<Vec<Result<(), ReceiptError>>, JsError> {
        self.settle(q, receipts, b"+ACK").await
    }

    /// Changes how long a received message stays invisible, counted from now.
    pub async fn change_visibility(
        &self,
        q: &QueueHandle,
        receipt: &str,
        visibility_ms: u64,
    ) -> Result<Result<(), ReceiptError>, JsError> {
        let body = nak_body(visibility_ms);
        let mut v = self.settle(q, &[receipt.to_string()], &body).await?;
        Ok(v.pop().expect("one verdict per receipt"))
    }

    async fn settle(
        &self,
        q: &QueueHandle,
        receipts: &[String],
        body: &[u8],
    ) -> Result<Vec<Result<(), ReceiptError>>, JsError> {
        let parsed: Vec<Result<String, ReceiptError>> = receipts
            .iter()
            .map(|r| codec::parse_receipt(r, q.incarnation, &q.names).map(|(s, _)| s))
            .collect();
        let sent = futures::future::join_all(parsed.iter().map(|p| async move {
            match p {
                Ok(subject) => Some(ack_request(&self.client, subject, body).await),
                Err(_) => None,
            }
        }))
        .await;
        let mut out = Vec::with_capacity(receipts.len());
        for ((p, s), r) in parsed.into_iter().zip(sent).zip(receipts) {
            out.push(match (p, s) {
                (Err(e), _) => Err(e),
                (Ok(_), Some(Ok(()))) => Ok(()),
                // Nobody answers for the consumer: the queue is gone.
                (Ok(_), Some(Err(AckFailure::Gone))) => Err(ReceiptError::Expired(r.clone())),
                (Ok(_), Some(Err(AckFailure::Unavailable(e)))) => return Err(e),
                (Ok(_), None) => unreachable!("a parsed receipt is always sent"),
            });
        }
        Ok(out)
    }

    /// Deletes every message in the queue (delayed and in flight too); returns how many.
    pub async fn purge(&self, q: &QueueHandle) -> Result<u64, JsError> {
        let v = self
            .api(&format!("STREAM.PURGE.{}", q.names.stream), json!({}))
            .await
            .map_err(|e| e.into_js(Kind::Queue, &q.name))?;
        Ok(v.get("purged").and_then(|p| p.as_u64()).unwrap_or(0))
    }

    /// Approximate counts from the consumers: not yet delivered (visible), delivered and
    /// not acknowledged (in flight, including those whose visibility has just run out),
    /// and held by the delay consumer (delayed).
    pub async fn counts(&self, q: &QueueHandle) -> Result<Counts, JsError> {
        let mut consumers = q.consumers();
        consumers.push(codec::DELAY_CONSUMER.to_string());
        let subjects: Vec<String> = consumers
            .iter()
            .map(|c| format!("CONSUMER.INFO.{}.{c}", q.names.stream))
            .collect();
        let stream_info = format!("STREAM.INFO.{}", q.names.stream);
        let (infos, stream) = tokio::join!(
            futures::future::join_all(subjects.iter().map(|s| self.api(s, json!({})))),
            self.api(&stream_info, json!({})),
        );
        let stream = stream.map_err(|e| e.into_js(Kind::Queue, &q.name))?;
        let state = &stream["state"];
        let mut counts = Counts {
            // A work queue's stream keeps only what is not yet acknowledged, so its first
            // message is the oldest in the queue.
            oldest_sent_at: (state["messages"].as_u64() > Some(0))
                .then(|| {
                    state["first_ts"]
                        .as_str()
                        .and_then(crate::time::parse_rfc3339_ms)
                })
                .flatten(),
            ..Counts::default()
        };
        let n = infos.len();
        for (i, info) in infos.into_iter().enumerate() {
            let info = info.map_err(|e| e.into_js(Kind::Queue, &q.name))?;
            let field = |f: &str| info.get(f).and_then(|v| v.as_u64()).unwrap_or(0);
            if i + 1 == n {
                counts.delayed = field("num_pending") + field("num_ack_pending");
            } else {
                counts.visible += field("num_pending");
                counts.in_flight += field("num_ack_pending");
            }
        }
        Ok(counts)
    }
}

/// The ack subject, delivery facts and frame of a pulled message.
fn delivered(m: &async_nats::Message) -> Option<(String, AckInfo, Frame)> {
    let subject = m.reply.as_ref()?.to_string();
    let info = codec::parse_ack_subject(&subject)?;
    let frame = codec::decode_frame(&m.payload)?;
    Some((subject, info, frame))
}

/// A nak that redelivers after `ms` (at once for 0).
fn nak_body(ms: u64) -> Vec<u8> {
    if ms == 0 {
        b"-NAK".to_vec()
    } else {
        format!("-NAK {{\"delay\":{}}}", ms * 1_000_000).into_bytes()
    }
}

pub(crate) enum AckFailure {
    /// No consumer answers for the subject: its queue is gone.
    Gone,
    Unavailable(JsError),
}

impl From<AckFailure> for JsError {
    fn from(f: AckFailure) -> Self {
        match f {
            AckFailure::Gone => JsError::Server("the consumer of a message is gone".into()),
            AckFailure::Unavailable(e) => e,
        }
    }
}

/// Acks, naks or terms a delivery and waits for the server to confirm it.
pub(crate) async fn ack_request(
    client: &async_nats::Client,
    subject: &str,
    body: &[u8],
) -> Result<(), AckFailure> {
    let r = tokio::time::timeout(
        REQUEST_TIMEOUT,
        client.request(subject.to_string(), Bytes::copy_from_slice(body)),
    )
    .await;
    match r {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
            Err(AckFailure::Gone)
        }
        Ok(Err(e)) => Err(AckFailure::Unavailable(JsError::Unavailable(format!(
            "ack: {e}"
        )))),
        Err(_) => Err(AckFailure::Unavailable(JsError::Unavailable(
            "ack: timed out".into(),
        ))),
    }
}

/// One pull request on a durable consumer: without `wait` it answers at once with what is
/// there (up to `batch`); with it, the server holds the request until `batch` messages
/// were delivered or `wait` ran out.
pub(crate) async fn pull(
    client: &async_nats::Client,
    stream: &str,
    consumer: &str,
    batch: usize,
    wait: Option<Duration>,
) -> Result<Vec<async_nats::Message>, JsError> {
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await?;
    // A no-wait pull still gets an expiry: without one, a pull the server cannot answer
    // yet (the consumer's in-flight limit is reached) waits on the server after we gave
    // up, and a message it later delivers would sit unseen until its ack wait ran out.
    let request = match wait {
        None => json!({
            "batch": batch,
            "no_wait": true,
            "expires": NO_WAIT_EXPIRY.as_nanos() as u64,
        }),
        Some(w) => json!({ "batch": batch, "expires": w.as_nanos() as u64 }),
    };
    client
        .publish_with_reply(
            format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
            inbox,
            serde_json::to_vec(&request)
                .expect("JSON values always serialize")
                .into(),
        )
        .await?;
    let until = Instant::now() + wait.unwrap_or(NO_WAIT_EXPIRY) + REQUEST_TIMEOUT;
    let mut out = Vec::new();
    let result = loop {
        if out.len() >= batch {
            break Ok(());
        }
        match tokio::time::timeout_at(until, sub.next()).await {
            Err(_) => {
                break Err(JsError::Unavailable(format!(
                    "pull from {stream}/{consumer}: no answer"
                )));
            }
            Ok(None) => break Ok(()),
            Ok(Some(m)) => match m.status {
                None | Some(StatusCode::OK) => out.push(m),
                Some(StatusCode::IDLE_HEARTBEAT) => {}
                Some(StatusCode::NOT_FOUND) | Some(StatusCode::TIMEOUT) => break Ok(()),
                Some(StatusCode::NO_RESPONDERS) => {
                    break Err(JsError::Unavailable(format!(
                        "pull from {stream}/{consumer}: JetStream does not answer"
                    )));
                }
                Some(s) => {
                    break Err(JsError::Server(format!(
                        "pull from {stream}/{consumer}: {s} {}",
                        m.description.as_deref().unwrap_or("")
                    )));
                }
            },
        }
    };
    let _ = sub.unsubscribe().await;
    match result {
        // Whatever was delivered is in flight: hand it out even if the end went wrong.
        Err(e) if out.is_empty() => Err(e),
        _ => Ok(out),
    }
}

/// Moves a queue's delayed messages to its ready subject once they are due. Every router
/// runs one per queue; they share the delay consumer, so each message is moved once (and
/// if a pump dies halfway, by another after [`DELAY_ACK_WAIT`], under the same id).
async fn pump(ctx: PumpContext, names: QueueNames, partitions: u32) {
    loop {
        // As receivers do: take what is due, else wait on a pull for one message (a pull
        // for a batch would only answer once the batch is full or expired).
        let pulled = match pull(
            &ctx.client,
            &names.stream,
            codec::DELAY_CONSUMER,
            PUMP_BATCH,
            None,
        )
        .await
        {
            Ok(m) if m.is_empty() => {
                pull(
                    &ctx.client,
                    &names.stream,
                    codec::DELAY_CONSUMER,
                    1,
                    Some(PUMP_WAIT),
                )
                .await
            }
            other => other,
        };
        let msgs = match pulled {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(stream = %names.stream, error = %e, "delay pump pull failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let now = now_ms();
        futures::future::join_all(msgs.into_iter().map(|m| {
            let ctx = &ctx;
            let names = &names;
            async move {
                let Some(reply) = m.reply.as_ref().map(|r| r.to_string()) else {
                    return;
                };
                let due = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(H_DUE))
                    .and_then(|v| v.as_str().parse::<u64>().ok())
                    .unwrap_or(0);
                if due > now {
                    let _ = ack_request(&ctx.client, &reply, &nak_body(due - now)).await;
                    return;
                }
                let (Some(info), Some(frame)) = (
                    codec::parse_ack_subject(&reply),
                    codec::decode_frame(&m.payload),
                ) else {
                    let _ = ack_request(&ctx.client, &reply, b"+TERM").await;
                    return;
                };
                let partition = match frame.group.as_deref() {
                    Some(g) if partitions > 1 => codec::partition_of(g, partitions),
                    _ => 0,
                };
                let msg = async_nats::jetstream::message::PublishMessage::build()
                    .payload(m.payload.clone())
                    .message_id(format!("dl:{}", info.stream_seq));
                let stored = match ctx
                    .js
                    .send_publish(names.ready_subject(partition), msg)
                    .await
                {
                    Ok(ack) => ack.await.is_ok(),
                    Err(_) => false,
                };
                if stored {
                    let _ = ack_request(&ctx.client, &reply, b"+ACK").await;
                }
                // Else it comes back after the ack wait and is moved then.
            }
        }))
        .await;
    }
}
