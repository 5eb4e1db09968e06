//! The publish pipeline: validate the message against its topic, match it against the
//! topic's subscriptions, and store every matched delivery in one durable write before
//! answering.
//!
//! [`Publisher::publish`] reads top to bottom as those steps: `check` (size, FIFO ids,
//! schema), `matcher` (one compiled matcher per topic), `fanout` (a delivery per matched
//! subscription: its queue, stream shard, or the delivery queue of an `http` or
//! `function` subscription), then one [`Backend::store`] of them all.

mod check;
mod fanout;
mod function;
mod matcher;
mod tail;
mod tally;
mod topics;

pub use function::sns_attributes;
pub use tail::{TAIL_BUFFER, Tail, Tailed};
pub use topics::{TopicState, Topics};

use crate::backend::{Backend, Enqueued, Stored};
use crate::error::OpError;
use crate::telemetry::Telemetry;
use crate::wire::PublishRequest;
use std::sync::Arc;
use std::time::Instant;
use tally::Tally;
use tokio::sync::broadcast;

/// What became of one publish.
#[derive(Debug, PartialEq, Eq)]
pub struct PublishOutcome {
    pub message_id: String,
    /// Subscriptions that received the message.
    pub delivered: usize,
}

/// Publishes to topics: the one way events enter the pipeline, whether from the HTTP
/// API, the config's functions or a guest's `publish`.
pub struct Publisher {
    backend: Arc<Backend>,
    topics: Arc<Topics>,
    telemetry: Arc<Telemetry>,
}

impl Publisher {
    pub fn new(backend: Arc<Backend>, topics: Arc<Topics>, telemetry: Arc<Telemetry>) -> Self {
        Self {
            backend,
            topics,
            telemetry,
        }
    }

    /// Publishes one message; answers once every matched delivery is durably stored.
    pub async fn publish(
        &self,
        topic: &str,
        req: PublishRequest,
    ) -> Result<PublishOutcome, OpError> {
        let mut tally = Tally::new(Instant::now());
        let t = self.topics.find(topic)?;
        let message = check::check(&t, req)?;
        let matched = matched(&t, &message);
        let fanned = fanout::deliveries(self.backend.as_ref(), &t, &message, matched);
        let tailed = self.tailed(&t, &message, &fanned);
        let mut deliveries = Vec::with_capacity(fanned.len());
        tally.message(&self.telemetry, &t, fanned, &mut deliveries);
        let delivered = deliveries.len();
        let results = self.backend.store(deliveries).await?;
        tally.stored(&t);
        tailed.into_iter().for_each(|e| t.tail.offer(e));
        Ok(PublishOutcome {
            message_id: original_id(&results).unwrap_or(message.id),
            delivered,
        })
    }

    /// Publishes many messages with one durable write; each entry succeeds or fails alone.
    pub async fn publish_batch(
        &self,
        topic: &str,
        entries: Vec<PublishRequest>,
    ) -> Result<Vec<(String, Result<PublishOutcome, OpError>)>, OpError> {
        let mut tally = Tally::new(Instant::now());
        let t = self.topics.find(topic)?;
        let mut out = Vec::with_capacity(entries.len());
        let mut all = Vec::new();
        // Per accepted entry: its place in `out`, and where its deliveries are in `all`.
        let mut spans = Vec::new();
        let mut tailed = Vec::new();
        for (i, mut req) in entries.into_iter().enumerate() {
            let id = crate::batch::entry_id(req.id.take(), i);
            match check::check(&t, req) {
                Ok(message) => {
                    let matched = matched(&t, &message);
                    let fanned = fanout::deliveries(self.backend.as_ref(), &t, &message, matched);
                    tailed.extend(self.tailed(&t, &message, &fanned));
                    spans.push((out.len(), all.len(), fanned.len()));
                    tally.message(&self.telemetry, &t, fanned, &mut all);
                    out.push((
                        id,
                        Ok(PublishOutcome {
                            message_id: message.id,
                            delivered: 0,
                        }),
                    ));
                }
                Err(e) => out.push((id, Err(e))),
            }
        }
        crate::batch::distinct_ids(&out)?;
        let results = self.backend.store(all).await?;
        tally.stored(&t);
        tailed.into_iter().for_each(|e| t.tail.offer(e));
        for (slot, start, n) in spans {
            if let (_, Ok(o)) = &mut out[slot] {
                o.delivered = n;
                if let Some(original) = original_id(&results[start..start + n]) {
                    o.message_id = original;
                }
            }
        }
        Ok(out)
    }
}

impl Publisher {
    /// A watcher of `topic`'s publishes from now on.
    pub fn watch(&self, topic: &str) -> Result<broadcast::Receiver<Arc<Tailed>>, OpError> {
        Ok(self.topics.find(topic)?.tail.watch())
    }

    /// What the topic's watchers will be offered once the message is stored; nothing when
    /// nobody watches.
    fn tailed(
        &self,
        t: &TopicState,
        message: &check::Message,
        fanned: &[(u32, crate::backend::Delivery)],
    ) -> Option<Tailed> {
        t.tail.watched().then(|| {
            let matched = fanned.iter().map(|(id, _)| *id);
            tail::tailed(t, message, matched, self.backend.clock().now_ms())
        })
    }
}

/// The ids of the subscriptions the message matches, in id order.
fn matched(t: &TopicState, message: &check::Message) -> Vec<u32> {
    let mut ids = Vec::new();
    // The body is a `RawValue`'s text, which is what the matcher's contract asks for.
    t.matcher
        .matches(message.body.get().as_bytes(), &message.attributes, &mut ids);
    ids
}

/// When every delivery was a duplicate, the message id of the original publish.
fn original_id(results: &[Stored]) -> Option<String> {
    let mut original = None;
    for r in results {
        match r {
            Stored::Queue(Enqueued::Duplicate {
                original_message_id,
            }) => original = Some(original_message_id.clone()),
            _ => return None,
        }
    }
    original
}
