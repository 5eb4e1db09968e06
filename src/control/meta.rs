//! The control plane's records in the backend's metadata, and following the changes that
//! other routers sharing the backend make to them.
//!
//! Keys: `t/TOPIC` (a topic's spec), `s/TOPIC/SUB` (a subscription's spec), `f/NAME` (a
//! function's record) and `mod/SHA256` (a component, content-addressed). Queues and streams
//! are the backend's own records, which it follows itself.

use super::Control;
use crate::backend::{Backend, MetaChange, StorageError};
use crate::error::OpError;
use crate::model::{SubscriptionSpec, TopicSpec};
use crate::publish::{Checked, TopicState, Topics};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tokio::sync::broadcast;

pub(super) const TOPIC: &str = "t/";
pub(super) const SUBSCRIPTION: &str = "s/";
pub(super) const FUNCTION: &str = "f/";
pub(super) const MODULE: &str = "mod/";

pub(super) fn topic_key(topic: &str) -> String {
    format!("{TOPIC}{topic}")
}

pub(super) fn subscription_key(topic: &str, sub: &str) -> String {
    format!("{SUBSCRIPTION}{topic}/{sub}")
}

pub(super) fn function_key(function: &str) -> String {
    format!("{FUNCTION}{function}")
}

pub(super) fn module_key(sha256: &str) -> String {
    format!("{MODULE}{sha256}")
}

fn unreadable(what: &str, name: &str, e: serde_json::Error) -> StorageError {
    StorageError::Corrupt(format!("stored {what} {name:?} is unreadable: {e}"))
}

/// Every stored topic with its subscriptions, compiled.
pub(super) fn load_topics(
    backend: &Backend,
    topics: &Topics,
) -> Result<Vec<(String, TopicState)>, OpError> {
    let mut subs: HashMap<String, BTreeMap<String, SubscriptionSpec>> = HashMap::new();
    for (key, raw) in backend.list_meta(SUBSCRIPTION)? {
        let Some((topic, sub)) = key.split_once('/') else {
            continue;
        };
        let spec: SubscriptionSpec =
            serde_json::from_slice(&raw).map_err(|e| unreadable("subscription", &key, e))?;
        subs.entry(topic.to_string())
            .or_default()
            .insert(sub.to_string(), spec);
    }
    let mut loaded = Vec::new();
    for (name, raw) in backend.list_meta(TOPIC)? {
        let spec: TopicSpec =
            serde_json::from_slice(&raw).map_err(|e| unreadable("topic", &name, e))?;
        let subs = subs.remove(&name).unwrap_or_default();
        let state = TopicState::build(&name, spec, subs, topics.meter(&name))?;
        loaded.push((name, state));
    }
    Ok(loaded)
}

/// One topic's stored spec (`None` when it is gone) and subscriptions.
fn read_topic(
    backend: &Backend,
    name: &str,
) -> Result<(Option<TopicSpec>, BTreeMap<String, SubscriptionSpec>), OpError> {
    let spec = backend
        .list_meta(&topic_key(name))?
        .into_iter()
        .find(|(rest, _)| rest.is_empty())
        .map(|(_, raw)| serde_json::from_slice::<TopicSpec>(&raw))
        .transpose()
        .map_err(|e| unreadable("topic", name, e))?;
    let mut subs = BTreeMap::new();
    for (sub, raw) in backend.list_meta(&format!("{SUBSCRIPTION}{name}/"))? {
        let spec: SubscriptionSpec =
            serde_json::from_slice(&raw).map_err(|e| unreadable("subscription", &sub, e))?;
        subs.insert(sub, spec);
    }
    Ok((spec, subs))
}

/// One subscription's stored spec; `None` when it is gone.
fn read_subscription(
    backend: &Backend,
    topic: &str,
    sub: &str,
) -> Result<Option<SubscriptionSpec>, OpError> {
    let key = subscription_key(topic, sub);
    backend
        .list_meta(&key)?
        .into_iter()
        .find(|(rest, _)| rest.is_empty())
        .map(|(_, raw)| serde_json::from_slice(&raw))
        .transpose()
        .map_err(|e| unreadable("subscription", &key, e).into())
}

impl Control {
    /// On a shared backend, applies the changes other routers make to topics,
    /// subscriptions and functions, until shutdown.
    pub(super) fn follow_meta(self: &Arc<Self>) {
        let Some(mut changes) = self.backend.watch_meta() else {
            return;
        };
        let control = self.clone();
        tokio::spawn(async move {
            loop {
                let change = tokio::select! {
                    c = changes.recv() => c,
                    _ = control.shutdown.cancelled() => return,
                };
                match change {
                    Ok(MetaChange::Put { key, .. } | MetaChange::Delete { key }) => {
                        control.apply_meta(&key).await
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "metadata changes came too fast; reloading all");
                        control.reload_all().await;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    async fn apply_meta(&self, key: &str) {
        if let Some(name) = key.strip_prefix(TOPIC) {
            self.reload_topic(name).await;
        } else if let Some(rest) = key.strip_prefix(SUBSCRIPTION)
            && let Some((topic, sub)) = rest.split_once('/')
        {
            self.reload_subscription(topic, sub).await;
        } else if let Some(name) = key.strip_prefix(FUNCTION) {
            self.reload_function(name).await;
        }
    }

    async fn reload_all(&self) {
        let mut topics = self.topics.names();
        if let Ok(stored) = self.backend.list_meta(TOPIC) {
            topics.extend(stored.into_iter().map(|(n, _)| n));
        }
        topics.sort();
        topics.dedup();
        for t in topics {
            self.reload_topic(&t).await;
        }
        let mut functions = self.function_names();
        if let Ok(stored) = self.backend.list_meta(FUNCTION) {
            functions.extend(stored.into_iter().map(|(n, _)| n));
        }
        functions.sort();
        functions.dedup();
        for f in functions {
            self.reload_function(&f).await;
        }
    }

    /// Brings a topic and its subscriptions to what is stored, and starts or stops the
    /// delivery workers of its subscriptions to match.
    async fn reload_topic(&self, name: &str) {
        let failed = |e: &dyn std::fmt::Display| {
            tracing::error!(topic = name, error = %e, "cannot apply a change of another router");
        };
        let (spec, stored) = match read_topic(self.backend.as_ref(), name) {
            Ok(read) => read,
            Err(e) => return failed(&e),
        };
        let old = self.topics.get(name);
        let Some(spec) = spec else {
            for sub in old.iter().flat_map(|t| t.subscriptions.names()) {
                self.workers.stop(name, &sub);
            }
            self.topics.install(name, None);
            return;
        };
        let Some(old) = old else {
            let state = match TopicState::build(name, spec, stored.clone(), self.topics.meter(name))
            {
                Ok(s) => s,
                Err(e) => return failed(&e),
            };
            self.topics.install(name, Some(state));
            for (sub, spec) in &stored {
                self.start_worker(name, sub, spec).await;
            }
            return;
        };
        if old.spec != spec {
            match old.changed(spec) {
                Ok(state) => self.topics.install(name, Some(state)),
                Err(e) => return failed(&e),
            }
        }
        for sub in old.subscriptions.names() {
            if !stored.contains_key(&sub) {
                self.apply_subscription(&old, &sub, None).await;
            }
        }
        for (sub, spec) in stored {
            self.apply_subscription(&old, &sub, Some(spec)).await;
        }
    }

    /// Brings one subscription to what is stored.
    async fn reload_subscription(&self, topic: &str, sub: &str) {
        let Some(t) = self.topics.get(topic) else {
            // Its topic is not known here yet: the topic's own change brings it.
            return self.reload_topic(topic).await;
        };
        match read_subscription(self.backend.as_ref(), topic, sub) {
            Ok(spec) => self.apply_subscription(&t, sub, spec).await,
            Err(e) => {
                tracing::error!(topic, subscription = sub, error = %e, "cannot apply a change of another router");
            }
        }
    }

    /// Makes the subscription `sub` of `t` what another router stored (`None`: removed),
    /// with its delivery worker.
    async fn apply_subscription(&self, t: &TopicState, sub: &str, spec: Option<SubscriptionSpec>) {
        let _one_change = self.subscription_change(&t.name, sub).lock().await;
        let Some(spec) = spec else {
            if t.subscriptions.remove(sub) {
                self.workers.stop(&t.name, sub);
            }
            return;
        };
        if t.subscriptions.get(sub).as_ref() == Some(&spec) {
            return;
        }
        match Checked::new(spec.clone()) {
            Ok(checked) => t.subscriptions.put(sub, checked),
            Err(e) => {
                tracing::error!(topic = %t.name, subscription = sub, error = %e, "cannot apply a change of another router");
                return;
            }
        }
        self.start_worker(&t.name, sub, &spec).await;
    }

    async fn start_worker(&self, topic: &str, sub: &str, spec: &SubscriptionSpec) {
        if let Err(e) = self.ensure_worker(topic, sub, spec).await {
            tracing::error!(topic, subscription = %sub, error = %e, "cannot start the delivery worker");
        }
    }
}
