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
use crate::publish::TopicState;
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
pub(super) fn load_topics(backend: &Backend) -> Result<Vec<(String, TopicState)>, OpError> {
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
    let mut topics = Vec::new();
    for (name, raw) in backend.list_meta(TOPIC)? {
        let spec: TopicSpec =
            serde_json::from_slice(&raw).map_err(|e| unreadable("topic", &name, e))?;
        let state = TopicState::build(&name, spec, subs.remove(&name).unwrap_or_default())?;
        topics.push((name, state));
    }
    Ok(topics)
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
            && let Some((topic, _)) = rest.split_once('/')
        {
            self.reload_topic(topic).await;
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

    /// Rebuilds a topic from the stored records, and starts or stops the delivery workers
    /// of its subscriptions to match.
    async fn reload_topic(&self, name: &str) {
        let state = match read_topic(self.backend.as_ref(), name) {
            Ok((None, _)) => None,
            Ok((Some(spec), subs)) => match TopicState::build(name, spec, subs) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::error!(topic = name, error = %e, "cannot apply a change of another router");
                    return;
                }
            },
            Err(e) => {
                tracing::error!(topic = name, error = %e, "cannot apply a change of another router");
                return;
            }
        };
        let old = self.topics.get(name);
        let old_subs = old.as_ref().map(|t| &t.subscriptions);
        let new_subs = state.as_ref().map(|t| t.subscriptions.clone());
        for (sub, spec) in new_subs.iter().flatten() {
            if old_subs.and_then(|o| o.get(sub)) != Some(spec)
                && let Err(e) = self.ensure_worker(name, sub, spec).await
            {
                tracing::error!(topic = name, subscription = %sub, error = %e, "cannot start the delivery worker");
            }
        }
        for sub in old_subs.into_iter().flat_map(|o| o.keys()) {
            if !new_subs.as_ref().is_some_and(|n| n.contains_key(sub)) {
                self.workers.stop(name, sub);
            }
        }
        self.topics.install(name, state);
    }
}
