//! Following a topic live: once a publish is stored, the topic's watchers (the console's
//! live tail, `switchyard tail TOPIC`) are offered the message and the subscriptions it
//! matched. Nothing is built while nobody watches, and a watcher that falls behind loses
//! the oldest events it has not read (and is told how many) rather than holding up
//! publishes or the other watchers.

use super::TopicState;
use super::check::Message;
use crate::model::attributes::Attributes;
use serde::Serialize;
use serde_json::value::RawValue;
use std::sync::{Arc, OnceLock};
use tokio::sync::broadcast;

/// Events kept for each watcher of a topic until it reads them.
pub const TAIL_BUFFER: usize = 1024;

/// A topic's watchers; carried over when the topic is rebuilt. The channel, whose
/// buffer of `TAIL_BUFFER` events is allocated whole, is made when the first watcher
/// comes: most topics are never watched, and a server may have a hundred thousand.
#[derive(Clone, Default)]
pub struct Tail(Arc<OnceLock<broadcast::Sender<Arc<Tailed>>>>);

impl Tail {
    /// Whether anyone watches; publishes skip the rest when not.
    pub(super) fn watched(&self) -> bool {
        self.watchers() > 0
    }

    /// How many follow the topic now.
    pub fn watchers(&self) -> usize {
        self.0.get().map_or(0, broadcast::Sender::receiver_count)
    }

    pub(super) fn offer(&self, event: Tailed) {
        if let Some(sender) = self.0.get() {
            // Nobody left to read it is no error: the watcher went away meanwhile.
            let _ = sender.send(Arc::new(event));
        }
    }

    /// A new watcher, which sees what is published from now on.
    pub fn watch(&self) -> broadcast::Receiver<Arc<Tailed>> {
        self.0
            .get_or_init(|| broadcast::channel(TAIL_BUFFER).0)
            .subscribe()
    }
}

/// A stored publish as its watchers see it.
pub struct Tailed {
    /// The event as JSON: what a watcher is sent.
    pub json: String,
    /// The message and its attributes, for a watcher's filter policy.
    pub body: Box<RawValue>,
    pub attributes: Attributes,
}

#[derive(Serialize)]
struct Event<'a> {
    message_id: &'a str,
    topic: &'a str,
    message: &'a RawValue,
    attributes: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    published_at: String,
    /// The subscriptions it was delivered to.
    subscriptions: Vec<&'a str>,
}

/// What the watchers of `t` are offered for `message`, once stored, delivered to the
/// subscriptions named `matched`.
pub(super) fn tailed<'a>(
    t: &TopicState,
    message: &Message,
    matched: impl Iterator<Item = &'a str>,
    now_ms: u64,
) -> Tailed {
    let event = Event {
        message_id: &message.id,
        topic: &t.name,
        message: &message.body,
        attributes: message.attributes.to_sns_json(),
        subject: message.subject.as_deref(),
        published_at: crate::time::rfc3339_ms(now_ms),
        subscriptions: matched.collect(),
    };
    Tailed {
        json: serde_json::to_string(&event).expect("an event serializes"),
        body: message.body.clone(),
        attributes: message.attributes.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u32) -> Tailed {
        Tailed {
            json: n.to_string(),
            body: RawValue::from_string(n.to_string()).unwrap(),
            attributes: Attributes::new(),
        }
    }

    #[test]
    fn the_buffer_is_made_for_the_first_watcher_and_kept_across_clones() {
        let tail = Tail::default();
        tail.offer(event(1));
        assert!(tail.0.get().is_none(), "no watcher, no buffer");
        assert!(!tail.watched());
        let rebuilt = tail.clone();
        let mut watcher = rebuilt.watch();
        assert!(tail.watched(), "the clone shares the watchers");
        tail.offer(event(2));
        assert_eq!(watcher.try_recv().unwrap().json, "2");
        drop(watcher);
        assert_eq!(tail.watchers(), 0);
    }
}
