//! The publish path on JetStream: every delivery of a store published (pipelined) under a
//! message id, and the store answered once JetStream has acknowledged all of them.

use super::{JetStream, JsError, PUBLISH_DEADLINE, codec};
use crate::backend::{Delivery, Enqueued, Stored, Stream};
use crate::time::now_ms;
use async_nats::jetstream;
use bytes::Bytes;
use std::collections::VecDeque;
use std::time::Duration;

/// A delivery ready to publish.
pub(super) struct Prepared {
    pub(super) subject: String,
    pub(super) headers: async_nats::HeaderMap,
    pub(super) payload: Bytes,
    pub(super) msg_id: String,
    pub(super) target: Target,
}

pub(super) enum Target {
    Queue {
        /// The JetStream stream holding the queue.
        stream: String,
        message_id: String,
        /// Whether `msg_id` is the caller's deduplication id (else it is the message id).
        dedup: bool,
    },
    Stream {
        shard: u32,
    },
    /// A message moved between queues (dead-lettered, redriven or due after a delay).
    Move,
}

/// Most publishes of one store awaiting their acknowledgement at once: well below the
/// connection's limit on unacknowledged publishes, which every store shares.
const PIPELINE: usize = 1024;

fn message(p: &Prepared) -> jetstream::message::PublishMessage {
    jetstream::message::PublishMessage::build()
        .payload(p.payload.clone())
        .headers(p.headers.clone())
        .message_id(&p.msg_id)
}

fn publish_error(e: async_nats::jetstream::context::PublishError) -> JsError {
    use async_nats::jetstream::context::PublishErrorKind as K;
    match e.kind() {
        // No responders: JetStream is down or restarting (the router checked the target
        // exists before publishing).
        K::StreamNotFound | K::TimedOut | K::BrokenPipe | K::MaxAckPending => {
            JsError::Unavailable(e.to_string())
        }
        _ => JsError::Server(e.to_string()),
    }
}

impl JetStream {
    /// Stores a publish's deliveries: every one is published (pipelined), and this returns
    /// once JetStream has acknowledged all of them. On `Err` some deliveries may be stored
    /// and others not; retrying the call with the same message ids stores none twice
    /// within the duplicate window.
    pub async fn store(&self, items: Vec<Delivery>) -> Result<Vec<Stored>, JsError> {
        let now = now_ms();
        let mut streams: Vec<Stream> = items
            .iter()
            .filter_map(|d| match d {
                Delivery::Stream(s, _, _) => Some(s.clone()),
                Delivery::Queue(..) => None,
            })
            .collect();
        streams.dedup_by(|a, b| a.name() == b.name());
        let prepared: Vec<Prepared> = items
            .into_iter()
            .map(|d| self.prepare(d, now))
            .collect::<Result<_, _>>()?;
        let deadline = tokio::time::Instant::now() + PUBLISH_DEADLINE;
        let acks = self.publish_in_order(&prepared, deadline).await?;
        let mut out = Vec::with_capacity(prepared.len());
        for (p, ack) in prepared.iter().zip(acks) {
            out.push(match &p.target {
                Target::Stream { shard } => Stored::Stream {
                    shard: *shard,
                    sequence: ack.sequence,
                },
                Target::Move => unreachable!("store never moves messages"),
                Target::Queue {
                    stream,
                    message_id,
                    dedup,
                } => {
                    if ack.duplicate && *dedup {
                        Stored::Queue(self.duplicate_of(stream, ack.sequence, message_id).await)
                    } else {
                        // A duplicate of a message id is this very publish, retried.
                        Stored::Queue(Enqueued::Stored {
                            sequence: ack.sequence,
                        })
                    }
                }
            });
        }
        for s in streams {
            s.arrivals().notify_waiters();
        }
        Ok(out)
    }

    fn prepare(&self, d: Delivery, now: u64) -> Result<Prepared, JsError> {
        match d {
            Delivery::Queue(q, m) => Ok(q.into_jetstream().prepare(m, now)),
            Delivery::Stream(s, shard, rec) => s.into_jetstream().prepare(shard, rec),
        }
    }

    /// Publishes `prepared` from this one task, so they reach NATS, and a shard's records
    /// their stream, in the order given; up to [`PIPELINE`] wait for their acknowledgement
    /// at once. One that is not acknowledged is retried on its own, which can reorder it
    /// only while NATS is unavailable; the first that fails for good fails them all (some
    /// may be stored).
    pub(super) async fn publish_in_order(
        &self,
        prepared: &[Prepared],
        deadline: tokio::time::Instant,
    ) -> Result<Vec<jetstream::publish::PublishAck>, JsError> {
        let mut acks = Vec::with_capacity(prepared.len());
        let mut in_flight = VecDeque::with_capacity(prepared.len().min(PIPELINE));
        for p in prepared {
            if in_flight.len() == PIPELINE {
                let (sent, oldest) = in_flight.pop_front().expect("the pipeline is full");
                acks.push(self.acknowledged(oldest, sent, deadline).await?);
            }
            // A send that fails is retried by `acknowledged`.
            let sent = self
                .js
                .send_publish(p.subject.clone(), message(p))
                .await
                .ok();
            in_flight.push_back((sent, p));
        }
        for (sent, p) in in_flight {
            acks.push(self.acknowledged(p, sent, deadline).await?);
        }
        Ok(acks)
    }

    /// The acknowledgement of a publish that was `sent` (or could not be), retried under
    /// its message id while NATS is unavailable.
    async fn acknowledged(
        &self,
        p: &Prepared,
        sent: Option<jetstream::context::PublishAckFuture>,
        deadline: tokio::time::Instant,
    ) -> Result<jetstream::publish::PublishAck, JsError> {
        if let Some(ack) = sent {
            match ack.await {
                Ok(ack) => return Ok(ack),
                Err(e) => {
                    let e = publish_error(e);
                    if !e.is_unavailable() {
                        return Err(e);
                    }
                }
            }
        }
        self.publish_until(p, deadline).await
    }

    /// Publishes one message and waits for its acknowledgement, retrying under the same
    /// message id while NATS is unavailable, until `deadline`.
    async fn publish_until(
        &self,
        p: &Prepared,
        deadline: tokio::time::Instant,
    ) -> Result<jetstream::publish::PublishAck, JsError> {
        let mut backoff = Duration::from_millis(20);
        loop {
            let err = match self.js.send_publish(p.subject.clone(), message(p)).await {
                Ok(ack) => match ack.await {
                    Ok(ack) => return Ok(ack),
                    Err(e) => publish_error(e),
                },
                Err(e) => publish_error(e),
            };
            if !err.is_unavailable() || tokio::time::Instant::now() + backoff >= deadline {
                return Err(err);
            }
            tracing::debug!(subject = %p.subject, error = %err, "publish not acknowledged; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }

    /// What a publish JetStream found to be a duplicate of the message at `seq` was: this
    /// very publish retried, or a duplicate of another message. Once the original has been
    /// received and acknowledged JetStream no longer has it, and its id is unknown.
    async fn duplicate_of(&self, stream: &str, seq: u64, message_id: &str) -> Enqueued {
        let original = match self.js.get_stream_no_info(stream).await {
            Ok(s) => s
                .direct_get(seq)
                .await
                .ok()
                .and_then(|m| codec::decode_frame(&m.payload))
                .map(|f| f.message_id),
            Err(_) => None,
        };
        match original {
            Some(id) if id == message_id => Enqueued::Stored { sequence: seq },
            Some(id) => Enqueued::Duplicate {
                original_message_id: id,
            },
            None => Enqueued::Duplicate {
                original_message_id: String::new(),
            },
        }
    }
}
