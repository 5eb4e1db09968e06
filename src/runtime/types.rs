//! The values that cross the boundary between the router and a function: the
//! event handed to the guest, the events it publishes and its log lines.
//!
//! They mirror the records of the `switchyard:handler` WIT world but belong to
//! the router, so the rest of the crate never depends on generated bindings.

/// One event handed to a function (the WIT `event` record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The message id assigned when the event was published.
    pub id: String,
    /// The topic it was published to.
    pub topic: String,
    /// The subscription, queue or stream it is delivered through.
    pub subscription: String,
    /// Message attributes, names unique.
    pub attributes: Vec<Attribute>,
    /// The message.
    pub body: Body,
    /// When the router accepted the event, in milliseconds since the Unix epoch.
    pub published_at_ms: u64,
    /// Deliveries of this event to a function so far, this one included.
    pub receive_count: u32,
}

/// A named message attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub value: AttributeValue,
}

/// A message attribute value, with the SNS data types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeValue {
    /// `String`.
    String(String),
    /// `Number`, as the decimal text that was published.
    Number(String),
    /// `String.Array`, elements as text.
    StringArray(Vec<String>),
    /// `Binary`.
    Binary(Vec<u8>),
}

/// A message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// Text; JSON messages travel as their text.
    Text(String),
    /// Raw bytes.
    Bytes(Vec<u8>),
}

impl Body {
    /// Bytes as a body: text when they are UTF-8.
    pub fn from_payload(bytes: Vec<u8>) -> Body {
        match String::from_utf8(bytes) {
            Ok(text) => Body::Text(text),
            Err(e) => Body::Bytes(e.into_bytes()),
        }
    }

    /// Size in bytes, as counted against publish limits.
    pub fn len(&self) -> usize {
        match self {
            Body::Text(text) => text.len(),
            Body::Bytes(bytes) => bytes.len(),
        }
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An event a guest asked to publish. The runtime only buffers it: the caller
/// publishes it through the router once the invocation has succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// The destination topic.
    pub topic: String,
    /// The message.
    pub body: Body,
    /// Message attributes.
    pub attributes: Vec<Attribute>,
    /// FIFO message group.
    pub group_id: Option<String>,
    /// FIFO deduplication id.
    pub dedup_id: Option<String>,
}

impl Publish {
    /// Bytes this publish holds in host memory, as counted against the
    /// per-invocation publish budget: body, topic, ids and attributes.
    pub fn footprint(&self) -> usize {
        let attributes: usize = self
            .attributes
            .iter()
            .map(|attribute| {
                attribute.name.len()
                    + match &attribute.value {
                        AttributeValue::String(text) | AttributeValue::Number(text) => text.len(),
                        AttributeValue::StringArray(items) => items.iter().map(String::len).sum(),
                        AttributeValue::Binary(bytes) => bytes.len(),
                    }
            })
            .sum();
        self.topic.len()
            + self.body.len()
            + attributes
            + self.group_id.as_ref().map_or(0, String::len)
            + self.dedup_id.as_ref().map_or(0, String::len)
    }
}

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogSource {
    /// The `log` import.
    Log,
    /// The guest's standard output (level `Info`).
    Stdout,
    /// The guest's standard error (level `Warn`); a panic message lands here.
    Stderr,
    /// The host, about something the guest asked of it (an outbound request refused).
    Host,
}

impl LogSource {
    pub fn name(self) -> &'static str {
        match self {
            LogSource::Log => "log",
            LogSource::Stdout => "stdout",
            LogSource::Stderr => "stderr",
            LogSource::Host => "host",
        }
    }
}

/// One line logged by a guest during an invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: Level,
    pub source: LogSource,
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_footprint_counts_every_owned_byte() {
        let publish = Publish {
            topic: "t".into(),
            body: Body::Text("body".into()),
            attributes: vec![
                Attribute {
                    name: "a".into(),
                    value: AttributeValue::Number("12".into()),
                },
                Attribute {
                    name: "b".into(),
                    value: AttributeValue::StringArray(vec!["x".into(), "yz".into()]),
                },
            ],
            group_id: Some("g".into()),
            dedup_id: None,
        };
        assert_eq!(publish.footprint(), 1 + 4 + (1 + 2) + (1 + 3) + 1);
    }
}
