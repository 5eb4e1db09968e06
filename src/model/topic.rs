//! Topics: where producers publish.

use super::{DEFAULT_MAX_MESSAGE_BYTES, FieldError, check_fifo_name, check_max_bytes};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `PUT /v1/topics/{topic}` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TopicSpec {
    /// FIFO topics keep order per `group_id` and deduplicate by `dedup_id`; the topic's
    /// name must then end in `.fifo`.
    pub fifo: bool,
    /// JSON Schema every published message must satisfy.
    pub schema: Option<serde_json::Value>,
    /// FIFO only: deduplicate publishes by a hash of the message when no `dedup_id` is
    /// given.
    pub content_based_dedup: bool,
    /// Largest accepted message with its attributes, in bytes (default 262144).
    #[serde(deserialize_with = "super::whole::option_usize")]
    #[schema(minimum = 1, maximum = 262144)]
    pub max_message_bytes: Option<usize>,
    /// A human-readable name, as SNS's `DisplayName` (at most 100 characters).
    #[schema(max_length = 100)]
    pub display_name: Option<String>,
    /// Cost-allocation tags, as SNS's: at most 50, keys of 1 to 128 characters, values
    /// of up to 256.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub tags: std::collections::BTreeMap<String, String>,
}

impl TopicSpec {
    /// A FIFO topic, without content-based deduplication.
    pub fn fifo() -> Self {
        TopicSpec {
            fifo: true,
            ..TopicSpec::default()
        }
    }

    pub fn validate(&self, name: &str) -> Vec<FieldError> {
        let mut errs = Vec::new();
        check_fifo_name(name, self.fifo, &mut errs);
        if self.content_based_dedup && !self.fifo {
            errs.push(FieldError::new(
                "content_based_dedup",
                "only FIFO topics deduplicate",
            ));
        }
        if let Some(schema) = &self.schema
            && let Err(e) = jsonschema::validator_for(schema)
        {
            errs.push(FieldError::new(
                "schema",
                format!("not a valid JSON Schema: {e}"),
            ));
        }
        check_max_bytes(self.max_message_bytes, &mut errs);
        super::check_tags(&self.tags, &mut errs);
        if let Some(d) = &self.display_name
            && d.chars().count() > 100
        {
            errs.push(FieldError::new("display_name", "at most 100 characters"));
        }
        errs
    }

    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes.unwrap_or(DEFAULT_MAX_MESSAGE_BYTES)
    }

    /// Fields that cannot change once the topic exists (a changed one is a 409).
    pub fn immutable_diff(&self, new: &TopicSpec) -> Option<&'static str> {
        (self.fifo != new.fifo).then_some("fifo")
    }
}
