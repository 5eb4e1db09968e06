//! The first step of a publish: the message against its topic's rules (size, FIFO ids,
//! schema). A message that passes gets its id.

use super::TopicState;
use crate::error::OpError;
use crate::model::Kind;
use crate::model::attributes::{self, Attributes};
use crate::queue::fifo_ids;
use crate::wire::PublishRequest;
use serde_json::value::RawValue;
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
}

/// Checks a publish against its topic.
pub(super) fn check(t: &TopicState, req: PublishRequest) -> Result<Message, OpError> {
    let attributes = attributes::from_api(req.attributes.as_ref())?;
    if let Some(subject) = &req.subject {
        check_subject(subject)?;
    }
    let body = req.message.get().as_bytes();
    size(t, body, &attributes)?;
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
    })
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
fn size(t: &TopicState, body: &[u8], attrs: &Attributes) -> Result<(), OpError> {
    let size = body.len() + attributes::byte_len(attrs);
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
