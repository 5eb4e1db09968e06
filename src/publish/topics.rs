//! Topics as publishers see them: each one compiled into an immutable [`TopicState`] (its
//! schema, its subscriptions and one matcher for all their filter policies), swapped whole
//! when anything about it changes. A publish takes the current state once and never waits
//! on a change being built.

use super::matcher::TopicMatcher;
use super::tail::Tail;
use crate::error::OpError;
use crate::model::{FieldError, Kind, SubscriptionSpec, TopicSpec};
use crate::runtime::{Publish, PublishGate};
use crate::telemetry::{SubscriptionMeter, Telemetry, TopicMeter};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

/// A topic, compiled: replaced whole on any change.
pub struct TopicState {
    pub name: String,
    pub spec: TopicSpec,
    pub(super) schema: Option<jsonschema::Validator>,
    /// Subscriptions by name.
    pub subscriptions: BTreeMap<String, SubscriptionSpec>,
    /// Subscription names in the order the matcher's ids refer to.
    pub(super) sub_order: Vec<String>,
    pub(super) matcher: TopicMatcher,
    /// What its publishes count into; the same meter across rebuilds.
    pub meter: Arc<TopicMeter>,
    /// Its subscriptions' meters, in `sub_order`.
    pub(super) sub_meters: Vec<Arc<SubscriptionMeter>>,
    /// Who follows its publishes live; the same watchers across rebuilds.
    pub tail: Tail,
}

impl TopicState {
    /// Compiles a topic's schema and its subscriptions' filter policies.
    pub fn build(
        name: &str,
        spec: TopicSpec,
        subscriptions: BTreeMap<String, SubscriptionSpec>,
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
        let sub_order: Vec<String> = subscriptions.keys().cloned().collect();
        let matcher = TopicMatcher::build(subscriptions.values())
            .map_err(|e| OpError::Invalid(format!("topic {name:?}: {e}")))?;
        Ok(Self {
            name: name.to_string(),
            spec,
            schema,
            subscriptions,
            sub_order,
            matcher,
            // Replaced by the topic's lasting meters when installed.
            meter: Arc::default(),
            sub_meters: Vec::new(),
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

    /// Makes `state` the topic `name` from now on, counting into the topic's meters;
    /// `None` removes it and forgets them.
    pub fn install(&self, name: &str, state: Option<TopicState>) {
        let mut map = self
            .map
            .write()
            .expect("the topic map lock is never poisoned");
        match state {
            Some(mut s) => {
                s.meter = self.telemetry.topics.get(name);
                let subs = &s.meter.subscriptions;
                if let Some(old) = map.get(name) {
                    s.tail = old.tail.clone();
                    old.subscriptions
                        .keys()
                        .filter(|sub| !s.subscriptions.contains_key(*sub))
                        .for_each(|removed| subs.forget(removed));
                }
                s.sub_meters = s.sub_order.iter().map(|sub| subs.get(sub)).collect();
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
