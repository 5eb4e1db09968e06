//! Queues: created with their settings checked, including that a redrive policy names a
//! dead-letter queue of the same kind (FIFO or standard) that exists.

use super::Control;
use crate::backend::QueueKind;
use crate::error::OpError;
use crate::model::{FieldError, Kind, QueueSpec, validate_name};

impl Control {
    /// Creates a queue or updates what may change; `Ok(true)` when it was created.
    pub async fn put_queue(&self, name: &str, spec: QueueSpec) -> Result<bool, OpError> {
        validate_name(Kind::Queue, name).map_err(OpError::Invalid)?;
        let existing = self.backend.queue(name);
        if let Some(h) = &existing {
            let old = h.spec();
            if let Some(field) = old.immutable_diff(&spec) {
                return Err(OpError::Conflict(format!(
                    "queue {name:?} exists with a different {field}, which cannot change; delete it first"
                )));
            }
            if old == spec {
                return Ok(false);
            }
        }
        let mut errors = spec.validate(name);
        if let Some(rp) = &spec.redrive_policy
            && errors.is_empty()
        {
            match self.backend.queue(&rp.dead_letter_queue) {
                None => errors.push(FieldError::new(
                    "redrive_policy.dead_letter_queue",
                    format!("queue {:?} does not exist", rp.dead_letter_queue),
                )),
                Some(d) if d.is_fifo() != spec.fifo => errors.push(FieldError::new(
                    "redrive_policy.dead_letter_queue",
                    "a FIFO queue needs a FIFO dead-letter queue, a standard queue a standard one",
                )),
                Some(_) => {}
            }
        }
        if !errors.is_empty() {
            return Err(OpError::InvalidSpec {
                kind: Kind::Queue,
                name: name.into(),
                errors,
            });
        }
        self.backend.put_queue(name, spec, QueueKind::User).await?;
        Ok(existing.is_none())
    }

    /// Deletes a user's queue; a subscription's delivery queue is not one (it goes with
    /// its subscription).
    pub async fn delete_queue(&self, name: &str) -> Result<(), OpError> {
        let is_users = self
            .backend
            .queue(name)
            .is_some_and(|q| q.kind() == QueueKind::User);
        if !is_users || !self.backend.delete_queue(name).await? {
            return Err(OpError::not_found(Kind::Queue, name));
        }
        self.telemetry.queues.forget(name);
        Ok(())
    }
}
