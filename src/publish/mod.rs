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
mod subscriptions;
mod tail;
mod tally;
mod topics;

pub use function::sns_attributes;
pub use subscriptions::{Checked, Subscriptions};
pub use tail::{TAIL_BUFFER, Tail, Tailed};
pub use topics::{TopicState, Topics};

use crate::backend::{Backend, Enqueued, Stored};
use crate::error::OpError;
use crate::telemetry::Telemetry;
use crate::telemetry::spans::{KeyValue, Kind, Span};
use crate::telemetry::trace::{TRACEPARENT, TRACESTATE};
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
        let mut message = check::check(&t, req)?;
        let mut span = self.publish_span(&t, &mut message);
        let step = |name| Some(self.telemetry.tracing.as_ref()?.child(span.as_ref()?, name));
        let (deliveries, tailed) = {
            let subs = t.subscriptions.read();
            let matching = step("match");
            let matched = matched(&subs, &message);
            drop(matching);
            let fanned = fanout::deliveries(self.backend.as_ref(), &t, &subs, &message, matched);
            let tailed = self.tailed(&t, &subs, &message, &fanned);
            let mut deliveries = Vec::with_capacity(fanned.len());
            tally.message(&self.telemetry, &subs, fanned, &mut deliveries);
            (deliveries, tailed)
        };
        let delivered = deliveries.len();
        let storing = step("store");
        let results = self.backend.store(deliveries).await;
        drop(storing);
        if let (Some(s), Err(e)) = (&mut span, &results) {
            s.fail(e.to_string());
        }
        let results = results?;
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
        let mut traced = Vec::new();
        {
            // Read once for the whole batch; never held across the store.
            let subs = t.subscriptions.read();
            for (i, mut req) in entries.into_iter().enumerate() {
                let id = crate::batch::entry_id(req.id.take(), i);
                match check::check(&t, req) {
                    Ok(mut message) => {
                        // One span per message; it ends once the batch is stored.
                        traced.extend(self.publish_span(&t, &mut message));
                        let matched = matched(&subs, &message);
                        let fanned =
                            fanout::deliveries(self.backend.as_ref(), &t, &subs, &message, matched);
                        tailed.extend(self.tailed(&t, &subs, &message, &fanned));
                        spans.push((out.len(), all.len(), fanned.len()));
                        tally.message(&self.telemetry, &subs, fanned, &mut all);
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
        }
        crate::batch::distinct_ids(&out)?;
        let results = self.backend.store(all).await;
        if let Err(e) = &results {
            traced
                .iter_mut()
                .for_each(|s: &mut Span| s.fail(e.to_string()));
        }
        drop(traced);
        let results = results?;
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
    /// The span of one message's publish, when spans are exported: inside the trace the
    /// message carries (or the root of a new one), which the message carries on from now
    /// on as this span.
    fn publish_span(&self, t: &TopicState, message: &mut check::Message) -> Option<Span> {
        let tracing = self.telemetry.tracing.as_ref()?;
        let value = |name| message.attributes.get(name).map(|v| v.value().to_string());
        let (parent, state) = (value(TRACEPARENT), value(TRACESTATE));
        let attributes = vec![
            KeyValue::new("messaging.system", "switchyard"),
            KeyValue::new("messaging.destination.name", t.name.clone()),
            KeyValue::new("messaging.message.id", message.id.clone()),
        ];
        let span = tracing.start(
            format!("publish {}", t.name),
            Kind::Producer,
            parent.as_deref().map(|p| (p, state.as_deref())),
            attributes,
        );
        message
            .attributes
            .insert(TRACEPARENT, "String", span.traceparent())
            .expect("a traceparent is a valid String attribute");
        Some(span)
    }

    /// A watcher of `topic`'s publishes from now on.
    pub fn watch(&self, topic: &str) -> Result<broadcast::Receiver<Arc<Tailed>>, OpError> {
        Ok(self.topics.find(topic)?.tail.watch())
    }

    /// What the topic's watchers will be offered once the message is stored; nothing when
    /// nobody watches.
    fn tailed(
        &self,
        t: &TopicState,
        subs: &subscriptions::Set,
        message: &check::Message,
        fanned: &[(u32, crate::backend::Delivery)],
    ) -> Option<Tailed> {
        t.tail.watched().then(|| {
            let matched = fanned
                .iter()
                .filter_map(|(id, _)| Some(subs.entry(*id)?.name.as_str()));
            tail::tailed(t, message, matched, self.backend.clock().now_ms())
        })
    }
}

/// The ids of the subscriptions the message matches, in id order.
fn matched(subs: &subscriptions::Set, message: &check::Message) -> Vec<u32> {
    let mut ids = Vec::new();
    // The body is a `RawValue`'s text, which is what the matcher's contract asks for.
    subs.matches(message.body.get().as_bytes(), &message.attributes, &mut ids);
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
