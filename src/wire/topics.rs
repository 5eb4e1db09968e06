//! Topics, their subscriptions, and what is published to them.

use super::{SubscriptionSpec, TopicSpec};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{
    ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};

/// `POST /v1/topics/{topic}/publish` body, and one entry of a batch.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// The event: any JSON value, delivered byte for byte.
    #[schema(value_type = Value)]
    pub message: Box<RawValue>,
    /// Message attributes, which `MessageAttributes`-scope filter policies match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Attributes>)]
    pub attributes: Option<Value>,
    /// FIFO topics: the ordering group (required there, refused elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[!-~]+$", min_length = 1, max_length = 128)]
    pub group_id: Option<String>,
    /// FIFO topics: the deduplication id (a second message with the same id within five
    /// minutes is accepted and dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[!-~]+$", min_length = 1, max_length = 128)]
    pub dedup_id: Option<String>,
    /// Batch entries only: the id the entry's result is reported under (its position in
    /// the batch when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A subject line, as SNS's `Subject`: carried in the envelope (`subject`, or
    /// `Subject` in an SNS notification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[!-~][ -~]*$", min_length = 1, max_length = 100)]
    pub subject: Option<String>,
    /// `json`: `message` is an object of texts, `default` and optionally one per kind of
    /// endpoint (`sqs` for queues, `firehose` for streams), as SNS's `MessageStructure`.
    /// Subscriptions with raw delivery or SNS notifications get their kind's text (else
    /// `default`); everything else sees `default` as the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_structure: Option<MessageStructure>,
}

/// How a publish's `message` is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageStructure {
    /// An object of texts by kind of endpoint, with a `default`.
    Json,
}

/// A published text as a topic carries it: a JSON object or array as itself, byte for
/// byte; anything else as a JSON string. Either way the text comes back unchanged as an
/// SNS notification's `Message`.
pub fn message_of_text(text: &str) -> Box<RawValue> {
    if (text.starts_with('{') || text.starts_with('['))
        && let Ok(raw) = RawValue::from_string(text.to_string())
        // The parser drops whitespace around the value, which the text must keep.
        && raw.get() == text
    {
        return raw;
    }
    serde_json::value::to_raw_value(text).expect("strings serialize")
}

/// The text a stored message stands for (the inverse of [`message_of_text`]).
pub use crate::model::text_of_message;

impl PublishRequest {
    /// A message without attributes.
    pub fn new(message: Value) -> Self {
        PublishRequest {
            message: raw(&message),
            attributes: None,
            group_id: None,
            dedup_id: None,
            id: None,
            subject: None,
            message_structure: None,
        }
    }

    /// Adds an attribute: a string, a number, an array of them, or an [`SnsAttribute`].
    pub fn attribute(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        add_attribute(&mut self.attributes, name.into(), value.into());
        self
    }

    /// Sets the FIFO ordering group.
    pub fn group_id(mut self, group_id: impl Into<String>) -> Self {
        self.group_id = Some(group_id.into());
        self
    }

    /// Sets the FIFO deduplication id.
    pub fn dedup_id(mut self, dedup_id: impl Into<String>) -> Self {
        self.dedup_id = Some(dedup_id.into());
        self
    }

    /// Sets the id a batch reports this entry's result under.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }
}

/// A JSON value as the raw text a request carries.
pub(super) fn raw(value: &Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).expect("a JSON value serializes")
}

/// Adds `name` to a request's attributes, which a builder keeps an object.
pub(super) fn add_attribute(attributes: &mut Option<Value>, name: String, value: Value) {
    let mut map = match attributes.take() {
        Some(Value::Object(map)) => map,
        _ => Map::new(),
    };
    map.insert(name, value);
    *attributes = Some(Value::Object(map));
}

/// Message attributes as a producer writes them: name to value, at most 10. A value is a
/// string (SNS `String`), a number (`Number`), an array of strings and numbers
/// (`String.Array`), or the SNS form `{"Type": ..., "Value": ...}` (needed for `Binary`,
/// and to keep a number's exact spelling).
pub struct Attributes;

/// Canonical base64 with padding, as the standard decoder accepts it (the bits after
/// the last full byte zero).
const BASE64: &str =
    "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$";

/// An attribute in its `{"Type", "Value"}` form, of one of `types`.
fn typed(types: &[&str], value: ObjectBuilder) -> ObjectBuilder {
    ObjectBuilder::new()
        .property(
            "Type",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(types.iter().copied())),
        )
        .required("Type")
        .property("Value", value)
        .required("Value")
        .additional_properties(Some(
            utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
        ))
}

impl utoipa::PartialSchema for Attributes {
    fn schema() -> RefOr<Schema> {
        let scalar = |t: Type| ObjectBuilder::new().schema_type(t);
        let value = OneOfBuilder::new()
            .item(scalar(Type::String).min_length(Some(1)))
            .item(scalar(Type::Number))
            .item(
                ArrayBuilder::new().items(
                    OneOfBuilder::new()
                        .item(scalar(Type::String))
                        .item(scalar(Type::Number)),
                ),
            )
            .item(typed(
                &["String", "String.Array"],
                scalar(Type::String).min_length(Some(1)),
            ))
            .item(typed(
                &["Number"],
                // Finite as SNS requires: at most 15 digits each side, a 2-digit exponent.
                scalar(Type::String).pattern(Some(
                    r"^[+-]?([0-9]{1,15}(\.[0-9]{0,15})?|\.[0-9]{1,15})([eE][+-]?[0-9]{1,2})?$",
                )),
            ))
            .item(typed(
                &["Binary"],
                scalar(Type::String)
                    .min_length(Some(4))
                    .pattern(Some(BASE64)),
            ));
        ObjectBuilder::new()
            .schema_type(SchemaType::new(Type::Object))
            .property_names(Some(
                scalar(Type::String)
                    .pattern(Some(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"))
                    .max_length(Some(256)),
            ))
            .max_properties(Some(10))
            .additional_properties(Some(RefOr::T(Schema::OneOf(value.build()))))
            .into()
    }
}

impl ToSchema for Attributes {}

/// Attributes in SNS form, as they are stored and delivered: name to
/// `{"Type": "String|Number|String.Array|Binary", "Value": "..."}`.
pub type SnsAttributes = std::collections::BTreeMap<String, SnsAttribute>;

/// One attribute in SNS form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SnsAttribute {
    /// `String`, `Number`, `String.Array` or `Binary`.
    #[serde(rename = "Type")]
    pub data_type: String,
    /// The value as text (a JSON array for `String.Array`, base64 for `Binary`).
    #[serde(rename = "Value")]
    pub value: String,
}

impl SnsAttribute {
    /// A `String` attribute.
    pub fn string(value: impl Into<String>) -> Self {
        SnsAttribute {
            data_type: "String".to_owned(),
            value: value.into(),
        }
    }

    /// A `Number` attribute, spelled as given (`1.50` stays `1.50`).
    pub fn number(value: impl Into<String>) -> Self {
        SnsAttribute {
            data_type: "Number".to_owned(),
            value: value.into(),
        }
    }
}

impl From<SnsAttribute> for Value {
    fn from(attribute: SnsAttribute) -> Self {
        serde_json::json!({"Type": attribute.data_type, "Value": attribute.value})
    }
}

/// A topic as `GET /v1/topics/{topic}` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TopicInfo {
    pub name: String,
    #[serde(flatten)]
    pub spec: TopicSpec,
    /// Names of its subscriptions.
    pub subscriptions: Vec<String>,
}

/// `GET /v1/topics`: every topic's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TopicList {
    pub topics: Vec<String>,
    /// When entries are left after this page: the token that asks for the next one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// A subscription as `GET` shows it. An `http` endpoint's secret is shown only in the
/// answer to the `PUT` that created the subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionInfo {
    pub name: String,
    pub topic: String,
    #[serde(flatten)]
    pub spec: SubscriptionSpec,
}

/// `GET /v1/topics/{topic}/subscriptions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionList {
    pub subscriptions: Vec<SubscriptionInfo>,
    /// When entries are left after this page: the token that asks for the next one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// The notification an endpoint receives unless raw delivery is on (the body of a queue
/// message, a stream record or a webhook request).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Notification {
    /// Always `Notification`.
    #[serde(rename = "type")]
    pub kind: String,
    pub message_id: String,
    pub topic: String,
    /// The message as published.
    pub message: Value,
    pub attributes: SnsAttributes,
    /// When it was published (RFC 3339, milliseconds).
    pub published_at: String,
    /// The subscription that delivered it.
    pub subscription: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The document's base64 is exactly what the server decodes, so a request the
        /// document allows is never refused for its base64.
        #[test]
        fn the_documented_base64_is_what_decodes(text in "[A-Za-z0-9+/=]{0,9}") {
            use base64::Engine;
            let schema = serde_json::json!({"type": "string", "pattern": BASE64});
            let documented = jsonschema::validator_for(&schema).unwrap().is_valid(&serde_json::json!(text));
            let decodes = base64::engine::general_purpose::STANDARD.decode(&text).is_ok();
            proptest::prop_assert_eq!(documented, decodes, "{:?}", text);
        }
    }

    #[test]
    fn a_published_text_comes_back_unchanged() {
        for text in [
            "hello",
            "42",
            "\"quoted\"",
            "true",
            "{\"a\": 1}",
            " [1, 2]",
            "{not json",
            "",
        ] {
            assert_eq!(text_of_message(&message_of_text(text)), text);
        }
        assert_eq!(message_of_text("{\"a\": 1}").get(), "{\"a\": 1}");
        assert_eq!(message_of_text("42").get(), "\"42\"");
    }
}

/// The query of `GET /v1/topics/{topic}/tail`: which of the topic's events to follow.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TailQuery {
    /// Only events this SNS filter policy (JSON) matches; all when absent.
    pub filter_policy: Option<String>,
    /// What the policy applies to: `MessageAttributes` (default) or `MessageBody`.
    #[param(pattern = "^(MessageAttributes|MessageBody)$")]
    pub filter_policy_scope: Option<String>,
}

/// One event of a topic's live tail (`event: message`), as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TailedEvent {
    pub message_id: String,
    pub topic: String,
    /// The message as published.
    #[schema(value_type = Object)]
    pub message: Value,
    /// Its attributes in SNS form.
    #[schema(value_type = Object)]
    pub attributes: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub published_at: String,
    /// The subscriptions it was delivered to.
    pub subscriptions: Vec<String>,
}
