//! What an operation (control, publish, queue, stream) can answer instead of a result:
//! everything a caller can get wrong, each naming the resource it concerns, plus the
//! storage's own failures. The HTTP doors map these to statuses in one place each
//! (`api::error`).

use crate::backend::{ReceiptError, StorageError};
use crate::model::attributes::AttributeError;
use crate::model::{FieldError, Kind};

/// An operation's error.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("{kind} {name:?} does not exist")]
    NotFound { kind: Kind, name: String },
    #[error("{0}")]
    Invalid(String),
    #[error("invalid {kind} {name:?}: {}", join(.errors))]
    InvalidSpec {
        kind: Kind,
        name: String,
        errors: Vec<FieldError>,
    },
    #[error("{0}")]
    Attribute(#[from] AttributeError),
    #[error("{0}")]
    Conflict(String),
    /// What was asked for existed but is gone (retention).
    #[error("{0}")]
    Expired(String),
    #[error("message is {size} bytes; {kind} {name:?} accepts at most {max}")]
    TooLarge {
        kind: Kind,
        name: String,
        size: usize,
        max: usize,
    },
    #[error("message does not match the schema of topic {topic:?} at {pointer:?}: {message}")]
    SchemaViolation {
        topic: String,
        pointer: String,
        message: String,
    },
    /// The function's component is still compiling; asking again shortly will do.
    #[error("function {name:?} is loading; try again shortly")]
    FunctionLoading { name: String },
    /// The function's component did not load; it cannot run until a new module is put.
    #[error("function {name:?} failed to load: {reason}")]
    FunctionFailed { name: String, reason: String },
    #[error("{0}")]
    Receipt(#[from] ReceiptError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

fn join(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl OpError {
    pub fn not_found(kind: Kind, name: &str) -> Self {
        OpError::NotFound {
            kind,
            name: name.to_string(),
        }
    }
}
