//! Topics as publishers see them: each one compiled into a [`TopicState`] (its schema, and
//! its subscriptions with one matcher for all their filter policies). A change of the topic
//! itself swaps the state whole; its subscriptions change in place, one at a time (see
//! [`Subscriptions`]). A publish takes the current state once and never waits on a change
//! being built.

use super::subscriptions::Subscriptions;
use super::tail::Tail;
use crate::error::OpError;
use crate::model::{FieldError, Kind, SubscriptionSpec, TopicSpec};
use crate::runtime::{Publish, PublishGate};
use crate::telemetry::{Telemetry, TopicMeter};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

/// A topic, compiled: replaced whole when the topic changes, sharing its subscriptions
/// with the state it replaces.
pub struct TopicState {
    pub name: String,
    pub spec: TopicSpec,
    pub(super) schema: Option<jsonschema::Validator>,
    pub subscriptions: Arc<Subscriptions>,
    /// What its publishes count into; the same meter across rebuilds.
    pub meter: Arc<TopicMeter>,
    /// Who follows its publishes live; the same watchers across rebuilds.
    pub tail: Tail,
}

impl TopicState {
    /// Compiles a topic's schema and its subscriptions' filter policies, counting into
    /// `meter`.
    pub fn build(
        name: &str,
        spec: TopicSpec,
        subscriptions: BTreeMap<String, SubscriptionSpec>,
        meter: Arc<TopicMeter>,
    ) -> Result<Self, OpError> {
        let subscriptions = Subscriptions::build(subscriptions, meter.clone())
            .map_err(|e| OpError::Invalid(format!("topic {name:?}: {e}")))?;
        Self::with_subscriptions(name, spec, Arc::new(subscriptions), meter)
    }

    /// The topic changed to `spec`, with the subscriptions it has.
    pub fn changed(&self, spec: TopicSpec) -> Result<Self, OpError> {
        Self::with_subscriptions(
            &self.name,
            spec,
            self.subscriptions.clone(),
            self.meter.clone(),
        )
    }

    fn with_subscriptions(
        name: &str,
        spec: TopicSpec,
        subscriptions: Arc<Subscriptions>,
        meter: Arc<TopicMeter>,
    ) -> Result<Self, OpError> {
        let schema = match &spec.schema {
            Some(s) => Some(
                jsonschema::validator_for(s).map_err(|e| OpError::InvalidSpec {
                    kind: Kind::Topic,
                    name: name.to_string(),
                    errors: vec![FieldError::new("schema", e.to_string())],
                })?,
            ),
            None => None,
        };
        Ok(Self {
            name: name.to_string(),
            spec,
            schema,
            subscriptions,
            meter,
            tail: Tail::default(),
        })
    }
}

/// Every topic by name. Lookups take a read lock only long enough to clone an `Arc`.
#[derive(Default)]
pub struct Topics {
    map: RwLock<HashMap<String, Arc<TopicState>>>,
    telemetry: Arc<Telemetry>,
}

impl Topics {
    /// No topics yet; their meters are kept in `telemetry`.
    pub fn new(telemetry: Arc<Telemetry>) -> Self {
        Self {
            map: RwLock::default(),
            telemetry,
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<TopicState>> {
        self.read().get(name).cloned()
    }

    /// The topic, or the error that names it missing.
    pub fn find(&self, name: &str) -> Result<Arc<TopicState>, OpError> {
        self.get(name)
            .ok_or_else(|| OpError::not_found(Kind::Topic, name))
    }

    /// Names of every topic, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.read().keys().cloned().collect();
        v.sort();
        v
    }

    /// The meters a topic `name` counts into: give them to [`TopicState::build`].
    pub fn meter(&self, name: &str) -> Arc<TopicMeter> {
        self.telemetry.topics.get(name)
    }

    /// Makes `state` the topic `name` from now on; `None` removes it and forgets its
    /// meters.
    pub fn install(&self, name: &str, state: Option<TopicState>) {
        let mut map = self
            .map
            .write()
            .expect("the topic map lock is never poisoned");
        match state {
            Some(mut s) => {
                if let Some(old) = map.get(name) {
                    s.tail = old.tail.clone();
                    if !Arc::ptr_eq(&old.subscriptions, &s.subscriptions) {
                        let kept = s.subscriptions.names();
                        old.subscriptions
                            .names()
                            .iter()
                            .filter(|sub| kept.binary_search(sub).is_err())
                            .for_each(|removed| s.meter.subscriptions.forget(removed));
                    }
                }
                map.insert(name.to_string(), Arc::new(s));
            }
            None => {
                map.remove(name);
                self.telemetry.topics.forget(name);
            }
        };
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<TopicState>>> {
        self.map
            .read()
            .expect("the topic map lock is never poisoned")
    }
}

/// Lets guests hear at once that a topic they publish to does not exist, instead of the
/// publish being dropped after a successful invocation.
impl PublishGate for Topics {
    fn check(&self, _function: &str, publish: &Publish) -> Result<(), String> {
        self.find(&publish.topic)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
