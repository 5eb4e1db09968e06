//! Host bindings of the `switchyard:handler` world (generated from `wit/`) and
//! the conversions between the generated types and the router's own
//! ([`super::types`]). Conversions move strings and buffers; nothing is copied.

// The world's `use` brings `Event`, `Error` and `BatchResult` into this
// module's root, so the router's types are referred to by path.
use super::types as own;

wasmtime::component::bindgen!({
    path: "wit",
    world: "handler",
    // Exports run on a fiber so that a busy guest yields to the executor at
    // every epoch tick; host imports are cheap and synchronous.
    exports: { default: async },
});

pub(crate) use self::switchyard::handler::types as wit;

impl From<own::Event> for wit::Event {
    fn from(event: own::Event) -> Self {
        wit::Event {
            id: event.id,
            topic: event.topic,
            subscription: event.subscription,
            attributes: event.attributes.into_iter().map(Into::into).collect(),
            body: event.body.into(),
            published_at: event.published_at_ms,
            receive_count: event.receive_count,
        }
    }
}

impl From<own::Attribute> for wit::Attribute {
    fn from(attribute: own::Attribute) -> Self {
        wit::Attribute {
            name: attribute.name,
            value: match attribute.value {
                own::AttributeValue::String(text) => wit::AttributeValue::String(text),
                own::AttributeValue::Number(text) => wit::AttributeValue::Number(text),
                own::AttributeValue::StringArray(items) => wit::AttributeValue::StringArray(items),
                own::AttributeValue::Binary(bytes) => wit::AttributeValue::Binary(bytes),
            },
        }
    }
}

impl From<wit::Attribute> for own::Attribute {
    fn from(attribute: wit::Attribute) -> Self {
        own::Attribute {
            name: attribute.name,
            value: match attribute.value {
                wit::AttributeValue::String(text) => own::AttributeValue::String(text),
                wit::AttributeValue::Number(text) => own::AttributeValue::Number(text),
                wit::AttributeValue::StringArray(items) => own::AttributeValue::StringArray(items),
                wit::AttributeValue::Binary(bytes) => own::AttributeValue::Binary(bytes),
            },
        }
    }
}

impl From<own::Body> for wit::Body {
    fn from(body: own::Body) -> Self {
        match body {
            own::Body::Text(text) => wit::Body::Text(text),
            own::Body::Bytes(bytes) => wit::Body::Bytes(bytes),
        }
    }
}

impl From<wit::Body> for own::Body {
    fn from(body: wit::Body) -> Self {
        match body {
            wit::Body::Text(text) => own::Body::Text(text),
            wit::Body::Bytes(bytes) => own::Body::Bytes(bytes),
        }
    }
}

impl From<wit::Level> for own::Level {
    fn from(level: wit::Level) -> Self {
        match level {
            wit::Level::Trace => own::Level::Trace,
            wit::Level::Debug => own::Level::Debug,
            wit::Level::Info => own::Level::Info,
            wit::Level::Warn => own::Level::Warn,
            wit::Level::Error => own::Level::Error,
        }
    }
}

/// Builds the router's [`Publish`] from the arguments of the `publish` import.
pub(crate) fn publish_request(
    topic: String,
    body: wit::Body,
    attributes: Vec<wit::Attribute>,
    options: wit::PublishOptions,
) -> own::Publish {
    own::Publish {
        topic,
        body: body.into(),
        attributes: attributes.into_iter().map(Into::into).collect(),
        group_id: options.group_id,
        dedup_id: options.dedup_id,
    }
}
