//! The first step of a publish: the message against its topic's rules (size, FIFO ids,
//! schema). A message that passes gets its id.

use super::TopicState;
use crate::error::OpError;
use crate::model::Kind;
use crate::model::attributes::{self, Attributes};
use crate::queue::fifo_ids;
use crate::wire::{MessageStructure, PublishRequest};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

/// A message that passed its topic's checks, ready to fan out.
pub(super) struct Message {
    pub id: String,
    /// The message as published: JSON text that `serde_json` has checked.
    pub body: Box<RawValue>,
    pub attributes: Attributes,
    /// FIFO message group.
    pub group: Option<Arc<str>>,
    /// FIFO deduplication id (given, or the content hash).
    pub dedup: Option<String>,
    /// SNS's `Subject`.
    pub subject: Option<String>,
    /// A `json`-structured publish's texts by kind of endpoint (`sqs`, `firehose`, …),
    /// `default` being the body.
    pub per_kind: Option<BTreeMap<String, String>>,
}

impl Message {
    /// The text a subscription of endpoint kind `kind` gets: its own in a structured
    /// publish, else the message's.
    pub fn text_for(&self, kind: &str) -> Cow<'_, str> {
        match self.per_kind.as_ref().and_then(|texts| texts.get(kind)) {
            Some(text) => Cow::Borrowed(text),
            None => crate::wire::text_of_message(&self.body),
        }
    }
}

/// Checks a publish against its topic.
pub(super) fn check(t: &TopicState, mut req: PublishRequest) -> Result<Message, OpError> {
    let per_kind = match req.message_structure {
        None => None,
        Some(MessageStructure::Json) => {
            let texts = structured(&req.message)?;
            req.message = crate::wire::message_of_text(&texts["default"]);
            Some(texts)
        }
    };
    let attributes = attributes::from_api(req.attributes.as_ref())?;
    if let Some(subject) = &req.subject {
        check_subject(subject)?;
    }
    let body = req.message.get().as_bytes();
    let others: usize = per_kind
        .iter()
        .flatten()
        .filter(|(kind, _)| *kind != "default")
        .map(|(kind, text)| kind.len() + text.len())
        .sum();
    size(t, body.len() + others, &attributes)?;
    let (group, dedup) = fifo_ids(
        Kind::Topic,
        &t.name,
        t.spec.fifo,
        t.spec.content_based_dedup,
        req.group_id,
        req.dedup_id,
        body,
    )?;
    schema(t, &req.message)?;
    Ok(Message {
        id: uuid::Uuid::now_v7().to_string(),
        body: req.message,
        attributes,
        group,
        dedup,
        subject: req.subject,
        per_kind,
    })
}

/// The texts of a `json`-structured message, as SNS reads them: an object whose values
/// are all strings, with a `default`.
fn structured(message: &RawValue) -> Result<BTreeMap<String, String>, OpError> {
    let texts: BTreeMap<String, String> = serde_json::from_str(message.get()).map_err(|_| {
        OpError::Invalid(
            "Message Structure - JSON message body failed to parse: with message_structure json, the message is an object of texts"
                .into(),
        )
    })?;
    if !texts.contains_key("default") {
        return Err(OpError::Invalid(
            "Message Structure - No default entry in JSON message body".into(),
        ));
    }
    Ok(texts)
}

/// SNS's rule for a subject: printable ASCII, not starting with a space, at most 100
/// characters (so it fits an email subject line).
fn check_subject(subject: &str) -> Result<(), OpError> {
    let printable = subject.bytes().all(|b| (b' '..=b'~').contains(&b));
    if subject.is_empty() || subject.len() > 100 || !printable || subject.starts_with(' ') {
        return Err(OpError::Invalid(format!(
            "subject {subject:?} must be 1 to 100 printable ASCII characters, without line breaks, not starting with a space"
        )));
    }
    Ok(())
}

/// The message and its attributes together within the topic's size limit.
fn size(t: &TopicState, body_len: usize, attrs: &Attributes) -> Result<(), OpError> {
    let size = body_len + attributes::byte_len(attrs);
    let max = t.spec.max_message_bytes();
    if size > max {
        return Err(OpError::TooLarge {
            kind: Kind::Topic,
            name: t.name.clone(),
            size,
            max,
        });
    }
    Ok(())
}

/// The message against the topic's JSON Schema, if it has one; the error names the first
/// failing place by its JSON pointer.
fn schema(t: &TopicState, message: &RawValue) -> Result<(), OpError> {
    let Some(schema) = &t.schema else {
        return Ok(());
    };
    let value: serde_json::Value = serde_json::from_str(message.get())
        .map_err(|e| OpError::Invalid(format!("message is not valid JSON: {e}")))?;
    match schema.iter_errors(&value).next() {
        None => Ok(()),
        Some(e) => {
            t.meter.schema_rejected.inc();
            let pointer = e.instance_path().to_string();
            Err(OpError::SchemaViolation {
                topic: t.name.clone(),
                pointer: if pointer.is_empty() {
                    "/".into()
                } else {
                    pointer
                },
                message: e.to_string(),
            })
        }
    }
}
