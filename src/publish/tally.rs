//! After the store: what a publish counts into its topic's, subscriptions', queues' and
//! streams' meters. The meters of where each delivery goes are looked up before the
//! store (the deliveries move into it) and counted only once it succeeded, so a refused
//! publish counts nothing.

use super::TopicState;
use super::subscriptions::Set;
use crate::backend::{Delivery, QueueKind};
use crate::model::Endpoint;
use crate::telemetry::{QueueMeter, StreamMeter, SubscriptionMeter, Telemetry};
use std::sync::Arc;
use std::time::Instant;

/// Where one stored delivery went, as far as the meters care.
enum Target {
    /// Its subscription's queue or stream.
    Queue(Arc<QueueMeter>),
    Stream(Arc<StreamMeter>),
    /// The subscription's dead-letter queue, its own queue being gone.
    DeadLetter(Arc<QueueMeter>),
    /// The delivery queue of a webhook or function subscription, whose worker counts
    /// what becomes of it.
    Worker,
}

/// What a publish (or a batch of them) will count once stored.
pub(super) struct Tally {
    started: Instant,
    messages: u64,
    /// Per delivery, its subscription's meter and where it went.
    deliveries: Vec<(Option<Arc<SubscriptionMeter>>, Target)>,
}

impl Tally {
    pub(super) fn new(started: Instant) -> Self {
        Tally {
            started,
            messages: 0,
            deliveries: Vec::new(),
        }
    }

    /// Notes one message's deliveries (with their subscriptions' ids) and hands the
    /// deliveries on to be stored.
    pub(super) fn message(
        &mut self,
        telemetry: &Telemetry,
        subs: &Set,
        fanned: Vec<(u32, Delivery)>,
        into: &mut Vec<Delivery>,
    ) {
        self.messages += 1;
        self.deliveries.reserve(fanned.len());
        for (id, d) in fanned {
            let sub = subs.entry(id);
            let to = match &d {
                Delivery::Queue(q, _) if q.kind() != QueueKind::User => Target::Worker,
                Delivery::Queue(q, _) => {
                    let meter = telemetry.queues.get(q.name());
                    match sub.map(|s| &s.spec.endpoint) {
                        Some(Endpoint::Queue(own)) if own == q.name() => Target::Queue(meter),
                        _ => Target::DeadLetter(meter),
                    }
                }
                Delivery::Stream(s, ..) => Target::Stream(telemetry.streams.get(s.name())),
            };
            self.deliveries.push((sub.map(|s| s.meter.clone()), to));
            into.push(d);
        }
    }

    /// Counts what was stored.
    pub(super) fn stored(self, t: &TopicState) {
        t.meter.published.add(self.messages);
        t.meter.matched.add(self.deliveries.len() as u64);
        t.meter.publish_seconds().observe(self.started.elapsed());
        for (sub, to) in self.deliveries {
            let delivered = match to {
                Target::Queue(q) => {
                    q.sent.inc();
                    true
                }
                Target::Stream(s) => {
                    s.records_put.inc();
                    true
                }
                Target::DeadLetter(q) => {
                    q.sent.inc();
                    false
                }
                Target::Worker => continue,
            };
            if let Some(m) = sub {
                if delivered {
                    &m.delivered
                } else {
                    &m.dead_lettered
                }
                .inc();
            }
        }
    }
}
