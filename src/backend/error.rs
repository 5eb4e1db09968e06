//! What storage can answer instead of a result. Everything a caller can get wrong is
//! checked above the backend; what is left says whether trying again can help.

use crate::model::Kind;

/// A failure of the storage itself.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// The storage cannot serve now: a disk error, or NATS unreachable or too slow.
    /// Nothing the caller did wrong; the same call may succeed later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The disk is (nearly) full: new data is refused until space is freed.
    #[error("storage full: {0}")]
    Full(String),
    /// What is stored cannot be read back: trying again does not help.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The resource was deleted (by this router or another) while the call used it.
    #[error("{kind} {name:?} does not exist")]
    NotFound { kind: Kind, name: String },
    /// Another writer changed the record first; reading it again and retrying may do.
    #[error("{0}")]
    Conflict(String),
    /// The storage cannot hold what it was given (a key outside what it accepts): a bug
    /// above it, which checks every name first. Trying again does not help.
    #[error("storage refused: {0}")]
    Refused(String),
}

impl StorageError {
    /// Whether the same call may succeed later without any change by the caller.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StorageError::Unavailable(_) | StorageError::Full(_) | StorageError::Conflict(_)
        )
    }
}

impl From<fjall::Error> for StorageError {
    fn from(e: fjall::Error) -> Self {
        StorageError::Unavailable(e.to_string())
    }
}
