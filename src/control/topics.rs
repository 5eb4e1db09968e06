//! Topics and their subscriptions.

use super::{Control, meta};
use crate::backend::to_json;
use crate::error::OpError;
use crate::model::{Endpoint, FieldError, Kind, SubscriptionSpec, TopicSpec, validate_name};
use crate::publish::{Checked, TopicState};
use std::collections::BTreeMap;
use std::sync::Arc;

impl Control {
    /// A topic as compiled now.
    pub fn topic(&self, name: &str) -> Result<Arc<TopicState>, OpError> {
        self.topics.find(name)
    }

    /// Names of every topic, sorted.
    pub fn topic_names(&self) -> Vec<String> {
        self.topics.names()
    }

    /// Creates a topic or updates what may change; `Ok(true)` when it was created.
    pub async fn put_topic(&self, name: &str, spec: TopicSpec) -> Result<bool, OpError> {
        validate_name(Kind::Topic, name).map_err(OpError::Invalid)?;
        let existing = self.topics.get(name);
        if let Some(old) = &existing {
            if let Some(field) = old.spec.immutable_diff(&spec) {
                return Err(OpError::Conflict(format!(
                    "topic {name:?} exists with a different {field}, which cannot change; delete it first"
                )));
            }
            if old.spec == spec {
                return Ok(false);
            }
        }
        let errors = spec.validate(name);
        if !errors.is_empty() {
            return Err(OpError::InvalidSpec {
                kind: Kind::Topic,
                name: name.into(),
                errors,
            });
        }
        let state = match &existing {
            Some(old) => old.changed(spec.clone())?,
            None => {
                TopicState::build(name, spec.clone(), BTreeMap::new(), self.topics.meter(name))?
            }
        };
        self.backend
            .put_meta(&meta::topic_key(name), to_json(&spec))
            .await?;
        self.topics.install(name, Some(state));
        Ok(existing.is_none())
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), OpError> {
        let t = self.topics.find(name)?;
        for sub in t.subscriptions.names() {
            self.backend
                .delete_meta(&meta::subscription_key(name, &sub))
                .await?;
            self.workers.remove(name, &sub).await?;
        }
        self.backend.delete_meta(&meta::topic_key(name)).await?;
        self.topics.install(name, None);
        Ok(())
    }

    /// Creates or updates a subscription; `Ok(true)` when it was created.
    pub async fn put_subscription(
        &self,
        topic: &str,
        name: &str,
        mut spec: SubscriptionSpec,
    ) -> Result<bool, OpError> {
        validate_name(Kind::Subscription, name).map_err(OpError::Invalid)?;
        let _one_change = self.subscription_change(topic, name).lock().await;
        let t = self.topics.find(topic)?;
        let existing = t.subscriptions.get(name);
        if let Endpoint::Http(h) = &mut spec.endpoint
            && h.secret.is_none()
        {
            // Keep the secret a receiver already verifies with; make one for a new
            // subscription.
            h.secret = match existing.as_ref().map(|s| &s.endpoint) {
                Some(Endpoint::Http(old)) => old.secret.clone(),
                _ => None,
            }
            .or_else(|| Some(crate::random_secret()));
        }
        let mut errors = spec.validate();
        errors.extend(self.private_endpoint_error(&spec).await);
        match &spec.endpoint {
            Endpoint::Queue(q) if errors.is_empty() => match self.backend.queue(q) {
                None => errors.push(FieldError::new(
                    "endpoint.queue",
                    format!("queue {q:?} does not exist"),
                )),
                Some(h) if h.is_fifo() && !t.spec.fifo => errors.push(FieldError::new(
                    "endpoint.queue",
                    format!("FIFO queue {q:?} can only subscribe to a FIFO topic"),
                )),
                Some(_) => {}
            },
            Endpoint::Stream { stream, .. }
                if errors.is_empty() && self.backend.stream(stream).is_none() =>
            {
                errors.push(FieldError::new(
                    "endpoint.stream",
                    format!("stream {stream:?} does not exist"),
                ))
            }
            Endpoint::Function(f) if errors.is_empty() && self.function_spec(f).is_none() => errors
                .push(FieldError::new(
                    "endpoint.function",
                    format!("function {f:?} does not exist"),
                )),
            _ => {}
        }
        if let Some(d) = &spec.dead_letter_queue
            && errors.is_empty()
            && self.backend.queue(d).is_none()
        {
            errors.push(FieldError::new(
                "dead_letter_queue",
                format!("queue {d:?} does not exist"),
            ));
        }
        if !errors.is_empty() {
            return Err(OpError::InvalidSpec {
                kind: Kind::Subscription,
                name: name.into(),
                errors,
            });
        }
        if let Some(old) = &existing {
            if let Some(field) = old.immutable_diff(&spec) {
                return Err(OpError::Conflict(format!(
                    "subscription {name:?} exists with a different {field}, which cannot change; delete it first"
                )));
            }
            if *old == spec {
                return Ok(false);
            }
        }
        let created = existing.is_none();
        let checked = Checked::new(spec.clone()).map_err(|e| {
            OpError::Invalid(format!("topic {topic:?}: subscription {name:?}: {e}"))
        })?;
        // The delivery queue exists before the subscription is stored, so another router
        // applying the stored subscription finds the queue rather than making its own,
        // and before the topic state that routes to it is visible.
        self.ensure_worker(topic, name, &spec).await?;
        let stored = self
            .backend
            .put_meta(&meta::subscription_key(topic, name), to_json(&spec))
            .await;
        if let Err(e) = stored {
            if created {
                let _ = self.workers.remove(topic, name).await;
            }
            return Err(e.into());
        }
        t.subscriptions.put(name, checked);
        Ok(created)
    }

    pub async fn delete_subscription(&self, topic: &str, name: &str) -> Result<(), OpError> {
        let _one_change = self.subscription_change(topic, name).lock().await;
        let t = self.topics.find(topic)?;
        if !t.subscriptions.contains(name) {
            return Err(OpError::not_found(Kind::Subscription, name));
        }
        self.backend
            .delete_meta(&meta::subscription_key(topic, name))
            .await?;
        t.subscriptions.remove(name);
        self.workers.remove(topic, name).await?;
        Ok(())
    }

    /// Held while the subscription `topic`/`name` changes, so that two changes of it made
    /// at once are stored and applied in one order; changes of other subscriptions (most
    /// often) go on beside it.
    pub(super) fn subscription_change(&self, topic: &str, name: &str) -> &tokio::sync::Mutex<()> {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one((topic, name));
        &self.subscription_changes[h as usize % self.subscription_changes.len()]
    }

    /// Makes sure an `http` or `function` subscription's delivery queue exists and its
    /// worker runs with the subscription's settings.
    pub(super) async fn ensure_worker(
        &self,
        topic: &str,
        name: &str,
        spec: &SubscriptionSpec,
    ) -> Result<(), OpError> {
        let function_timeout_ms = match &spec.endpoint {
            Endpoint::Function(f) => self.function_spec(f).map(|s| s.timeout_ms),
            _ => None,
        };
        Ok(self
            .workers
            .ensure(topic, name, spec, function_timeout_ms)
            .await?)
    }
}
