//! Streams: created with a fixed shard count (resharding is refused), retention changed.

use super::Control;
use crate::error::OpError;
use crate::model::{Kind, StreamSpec, validate_name};

impl Control {
    /// Creates a stream or updates its retention; `Ok(true)` when it was created.
    pub async fn put_stream(&self, name: &str, spec: StreamSpec) -> Result<bool, OpError> {
        validate_name(Kind::Stream, name).map_err(OpError::Invalid)?;
        let existing = self.backend.stream(name);
        if let Some(h) = &existing {
            let old = h.spec();
            if let Some(field) = old.immutable_diff(&spec) {
                return Err(OpError::Conflict(format!(
                    "stream {name:?} exists with a different {field}; resharding is not supported, delete and recreate the stream"
                )));
            }
            if old == spec {
                return Ok(false);
            }
        }
        let errors = spec.validate();
        if !errors.is_empty() {
            return Err(OpError::InvalidSpec {
                kind: Kind::Stream,
                name: name.into(),
                errors,
            });
        }
        self.backend.put_stream(name, spec).await?;
        Ok(existing.is_none())
    }

    pub async fn delete_stream(&self, name: &str) -> Result<(), OpError> {
        if !self.backend.delete_stream(name).await? {
            return Err(OpError::not_found(Kind::Stream, name));
        }
        self.telemetry.streams.forget(name);
        Ok(())
    }
}
