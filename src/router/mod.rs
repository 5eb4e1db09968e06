//! The router: topics, subscriptions and queues, and the operations on them that the HTTP
//! API and the config file call.
//!
//! A topic's subscriptions and filter policies are compiled into one immutable
//! [`TopicState`]; a change builds a new one and swaps the `Arc` under a write lock held
//! only for the swap, so publishers never wait on a rebuild. Resource changes are written
//! to the backend's metadata before they take effect, so they survive restarts.

mod functions;
mod publish;
mod queues;
mod streams;

pub use functions::{TopicGate, runtime_attributes};
pub use publish::{PublishOutcome, PublishRequest};
pub use queues::{ReceiveRequest, SendRequest};
pub use streams::{CheckpointRequest, PollRequest, PutRecord, SequenceArg, ShardPage};

use crate::backend::MetaChange;
use crate::backend::{Backend, ReceiptError, StorageError, to_json};
use crate::matching::TopicMatcher;
use crate::model::attributes::AttributeError;
use crate::model::{
    Endpoint, FieldError, Kind, QueueSpec, SubscriptionSpec, TopicSpec, validate_name,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

const META_TOPIC: &str = "t/";
const META_SUBSCRIPTION: &str = "s/";

/// The id a batch entry's result is reported under: the one the caller gave, else the
/// entry's position in the batch.
fn batch_entry_id(given: Option<String>, position: usize) -> String {
    given.unwrap_or_else(|| position.to_string())
}

/// Refuses a batch in which two entries, listed with their results in entry order, share
/// an id: results are reported by id, so they could not be told apart (SNS and SQS refuse
/// such a batch too). Checked before anything is stored.
fn distinct_ids<T>(entries: &[(String, T)]) -> Result<(), RouterError> {
    let mut first = HashMap::with_capacity(entries.len());
    for (i, (id, _)) in entries.iter().enumerate() {
        if let Some(earlier) = first.insert(id.as_str(), i) {
            return Err(RouterError::Invalid(format!(
                "batch entry ids must be distinct: entries {earlier} and {i} both have id {id:?}"
            )));
        }
    }
    Ok(())
}

/// Everything a caller can get wrong, plus storage failures (the one non-caller case).
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
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

impl RouterError {
    fn not_found(kind: Kind, name: &str) -> Self {
        RouterError::NotFound {
            kind,
            name: name.to_string(),
        }
    }
}

/// A topic as publishers see it: immutable, replaced whole on any change.
pub struct TopicState {
    pub name: String,
    pub spec: TopicSpec,
    schema: Option<jsonschema::Validator>,
    /// Subscriptions by name.
    pub subscriptions: BTreeMap<String, SubscriptionSpec>,
    /// Subscription names in the order the matcher's ids refer to.
    sub_order: Vec<String>,
    matcher: TopicMatcher,
}

impl TopicState {
    fn build(
        name: &str,
        spec: TopicSpec,
        subscriptions: BTreeMap<String, SubscriptionSpec>,
    ) -> Result<Self, RouterError> {
        let schema = match &spec.schema {
            Some(s) => {
                Some(
                    jsonschema::validator_for(s).map_err(|e| RouterError::InvalidSpec {
                        kind: Kind::Topic,
                        name: name.to_string(),
                        errors: vec![FieldError::new("schema", e.to_string())],
                    })?,
                )
            }
            None => None,
        };
        let sub_order: Vec<String> = subscriptions.keys().cloned().collect();
        let matcher = TopicMatcher::build(subscriptions.values())
            .map_err(|e| RouterError::Invalid(format!("topic {name:?}: {e}")))?;
        Ok(Self {
            name: name.to_string(),
            spec,
            schema,
            subscriptions,
            sub_order,
            matcher,
        })
    }
}

/// The shared state behind every API call.
pub struct Router {
    pub backend: Arc<dyn Backend>,
    /// Delivery workers of `http` and `function` subscriptions.
    pub workers: crate::deliver::Workers,
    /// Queue and stream consumers of functions.
    sources: crate::deliver::sources::Sources,
    /// The WebAssembly engine and its compiled-component cache.
    runtime: crate::runtime::Runtime,
    /// Deployed functions, swapped whole on a new module, with where each stands.
    functions: Arc<crate::runtime::FunctionRegistry>,
    /// Bounds how many components compile at once (one per core).
    compile_slots: Arc<tokio::sync::Semaphore>,
    /// Functions' specs as put (for `GET` and their sources).
    function_specs: RwLock<HashMap<String, crate::model::FunctionSpec>>,
    gate: Arc<TopicGate>,
    topics: RwLock<HashMap<String, Arc<TopicState>>>,
    /// Where each group member reads each shard it holds.
    cursors: std::sync::Mutex<streams::Cursors>,
    /// The module hash of each loaded function, to tell a changed function from one
    /// loaded already.
    module_hashes: RwLock<HashMap<String, String>>,
    /// This process among the routers sharing a backend.
    pub instance: String,
    /// Cancelled at shutdown so long polls answer instead of holding the drain up.
    pub shutdown: CancellationToken,
}

impl Router {
    /// Loads topics and subscriptions from the backend's metadata. Nothing runs until
    /// [`Router::start`].
    pub fn open(
        backend: Arc<dyn Backend>,
        deny_private: bool,
        compiled_cache: Option<std::path::PathBuf>,
    ) -> Result<Self, RouterError> {
        let mut subs: HashMap<String, BTreeMap<String, SubscriptionSpec>> = HashMap::new();
        for (key, raw) in backend.list_meta(META_SUBSCRIPTION)? {
            let Some((topic, sub)) = key.split_once('/') else {
                continue;
            };
            let spec: SubscriptionSpec = serde_json::from_slice(&raw).map_err(|e| {
                StorageError(format!("stored subscription {key:?} is unreadable: {e}"))
            })?;
            subs.entry(topic.to_string())
                .or_default()
                .insert(sub.to_string(), spec);
        }
        let mut topics = HashMap::new();
        for (name, raw) in backend.list_meta(META_TOPIC)? {
            let spec: TopicSpec = serde_json::from_slice(&raw)
                .map_err(|e| StorageError(format!("stored topic {name:?} is unreadable: {e}")))?;
            let state = TopicState::build(&name, spec, subs.remove(&name).unwrap_or_default())?;
            topics.insert(name, Arc::new(state));
        }
        let shutdown = CancellationToken::new();
        let gate = Arc::new(TopicGate::default());
        let runtime = crate::runtime::Runtime::new(crate::runtime::RuntimeConfig {
            cache_dir: compiled_cache,
            publish_gate: gate.clone(),
            ..crate::runtime::RuntimeConfig::default()
        })
        .map_err(|e| StorageError(format!("starting the WebAssembly runtime: {e}")))?;
        let functions = Arc::new(crate::runtime::FunctionRegistry::new());
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Self {
            workers: crate::deliver::Workers::new(
                backend.clone(),
                functions.clone(),
                deny_private,
                shutdown.clone(),
            ),
            sources: crate::deliver::sources::Sources::new(shutdown.clone()),
            runtime,
            functions,
            compile_slots: Arc::new(tokio::sync::Semaphore::new(cores)),
            function_specs: RwLock::default(),
            gate,
            backend,
            topics: RwLock::new(topics),
            cursors: Default::default(),
            module_hashes: RwLock::default(),
            instance: uuid::Uuid::now_v7().simple().to_string()[20..].to_string(),
            shutdown,
        })
    }

    /// Starts loading the stored functions (in the background) and starts their sources
    /// and the delivery workers, which wait for the functions they invoke to be ready.
    pub async fn start(self: &Arc<Self>) -> Result<(), RouterError> {
        let router = self;
        router.gate.attach(Arc::downgrade(self));
        router.workers.attach(Arc::downgrade(self));
        router.sources.attach(Arc::downgrade(self));
        router.load_functions().await?;
        let topics: Vec<Arc<TopicState>> = router
            .topics
            .read()
            .expect("never poisoned")
            .values()
            .cloned()
            .collect();
        for t in topics {
            for (name, sub) in &t.subscriptions {
                router.workers.ensure(&t.name, name, sub).await?;
            }
        }
        router.follow_meta();
        Ok(())
    }

    /// On a shared backend, applies the changes other routers make to topics,
    /// subscriptions and functions (queues and streams the backend follows itself).
    fn follow_meta(self: &Arc<Self>) {
        let Some(mut changes) = self.backend.watch_meta() else {
            return;
        };
        let router = Arc::downgrade(self);
        let stop = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let change = tokio::select! {
                    c = changes.recv() => c,
                    _ = stop.cancelled() => return,
                };
                let Some(r) = router.upgrade() else { return };
                match change {
                    Ok(MetaChange::Put { key, .. } | MetaChange::Delete { key }) => {
                        r.apply_meta(&key).await
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "metadata changes came too fast; reloading all");
                        r.reload_all().await;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    async fn apply_meta(&self, key: &str) {
        if let Some(name) = key.strip_prefix(META_TOPIC) {
            self.reload_topic(name).await;
        } else if let Some(rest) = key.strip_prefix(META_SUBSCRIPTION)
            && let Some((topic, _)) = rest.split_once('/')
        {
            self.reload_topic(topic).await;
        } else if let Some(name) = key.strip_prefix(functions::META_FUNCTION) {
            self.reload_function(name).await;
        }
    }

    async fn reload_all(&self) {
        let mut topics: Vec<String> = self.topic_names();
        if let Ok(stored) = self.backend.list_meta(META_TOPIC) {
            topics.extend(stored.into_iter().map(|(n, _)| n));
        }
        topics.sort();
        topics.dedup();
        for t in topics {
            self.reload_topic(&t).await;
        }
        let mut functions = self.function_names();
        if let Ok(stored) = self.backend.list_meta(functions::META_FUNCTION) {
            functions.extend(stored.into_iter().map(|(n, _)| n));
        }
        functions.sort();
        functions.dedup();
        for f in functions {
            self.reload_function(&f).await;
        }
    }

    /// Rebuilds a topic from the stored records, and starts or stops the delivery
    /// workers of its subscriptions to match.
    async fn reload_topic(&self, name: &str) {
        let read = || -> Result<_, RouterError> {
            let spec = self
                .backend
                .list_meta(&format!("{META_TOPIC}{name}"))?
                .into_iter()
                .find(|(rest, _)| rest.is_empty())
                .map(|(_, raw)| serde_json::from_slice::<TopicSpec>(&raw))
                .transpose()
                .map_err(|e| StorageError(format!("stored topic {name:?} is unreadable: {e}")))?;
            let mut subs = BTreeMap::new();
            for (sub, raw) in self
                .backend
                .list_meta(&format!("{META_SUBSCRIPTION}{name}/"))?
            {
                let spec: SubscriptionSpec = serde_json::from_slice(&raw).map_err(|e| {
                    StorageError(format!("stored subscription {sub:?} is unreadable: {e}"))
                })?;
                subs.insert(sub, spec);
            }
            Ok((spec, subs))
        };
        let (spec, subs) = match read() {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(topic = name, error = %e, "cannot apply a change of another router");
                return;
            }
        };
        let old = self.topic(name).ok();
        let old_subs = old.as_ref().map(|t| &t.subscriptions);
        let state = match spec {
            None => None,
            Some(spec) => match TopicState::build(name, spec, subs) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::error!(topic = name, error = %e, "cannot apply a change of another router");
                    return;
                }
            },
        };
        let new_subs = state.as_ref().map(|t| t.subscriptions.clone());
        for (sub, spec) in new_subs.iter().flatten() {
            if old_subs.and_then(|o| o.get(sub)) != Some(spec)
                && let Err(e) = self.workers.ensure(name, sub, spec).await
            {
                tracing::error!(topic = name, subscription = %sub, error = %e, "cannot start the delivery worker");
            }
        }
        for sub in old_subs.into_iter().flat_map(|o| o.keys()) {
            if !new_subs.as_ref().is_some_and(|n| n.contains_key(sub)) {
                self.workers.stop(name, sub);
            }
        }
        self.swap_topic(state, name);
    }

    pub fn topic(&self, name: &str) -> Result<Arc<TopicState>, RouterError> {
        self.topics
            .read()
            .expect("topic map lock is never held across a panic")
            .get(name)
            .cloned()
            .ok_or_else(|| RouterError::not_found(Kind::Topic, name))
    }

    pub fn topic_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .topics
            .read()
            .expect("never poisoned")
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }

    fn swap_topic(&self, state: Option<TopicState>, name: &str) {
        let mut map = self.topics.write().expect("never poisoned");
        match state {
            Some(s) => map.insert(name.to_string(), Arc::new(s)),
            None => map.remove(name),
        };
    }

    /// Creates a topic or updates what may change; `Ok(true)` when it was created.
    pub async fn put_topic(&self, name: &str, spec: TopicSpec) -> Result<bool, RouterError> {
        validate_name(Kind::Topic, name).map_err(RouterError::Invalid)?;
        let existing = self.topic(name).ok();
        if let Some(old) = &existing {
            if let Some(field) = old.spec.immutable_diff(&spec) {
                return Err(RouterError::Conflict(format!(
                    "topic {name:?} exists with a different {field}, which cannot change; delete it first"
                )));
            }
            if old.spec == spec {
                return Ok(false);
            }
        }
        let errors = spec.validate(name);
        if !errors.is_empty() {
            return Err(RouterError::InvalidSpec {
                kind: Kind::Topic,
                name: name.into(),
                errors,
            });
        }
        let subs = existing
            .as_ref()
            .map(|t| t.subscriptions.clone())
            .unwrap_or_default();
        let state = TopicState::build(name, spec.clone(), subs)?;
        self.backend
            .put_meta(&format!("{META_TOPIC}{name}"), to_json(&spec))
            .await?;
        self.swap_topic(Some(state), name);
        Ok(existing.is_none())
    }

    pub async fn delete_topic(&self, name: &str) -> Result<(), RouterError> {
        let t = self.topic(name)?;
        for sub in t.subscriptions.keys() {
            self.backend
                .delete_meta(&format!("{META_SUBSCRIPTION}{name}/{sub}"))
                .await?;
            self.workers.remove(name, sub).await?;
        }
        self.backend
            .delete_meta(&format!("{META_TOPIC}{name}"))
            .await?;
        self.swap_topic(None, name);
        Ok(())
    }

    /// Creates or updates a subscription; `Ok(true)` when it was created.
    pub async fn put_subscription(
        &self,
        topic: &str,
        name: &str,
        mut spec: SubscriptionSpec,
    ) -> Result<bool, RouterError> {
        validate_name(Kind::Subscription, name).map_err(RouterError::Invalid)?;
        let t = self.topic(topic)?;
        if let Endpoint::Http(h) = &mut spec.endpoint
            && h.secret.is_none()
        {
            // Keep the secret a receiver already verifies with; make one for a new
            // subscription.
            h.secret = match t.subscriptions.get(name).map(|s| &s.endpoint) {
                Some(Endpoint::Http(old)) => old.secret.clone(),
                _ => None,
            }
            .or_else(|| Some(crate::deliver::new_secret()));
        }
        let mut errors = spec.validate();
        if let Endpoint::Http(h) = &spec.endpoint
            && self.workers.denies_private()
            && let Some(ip) = reqwest::Url::parse(&h.url).ok().and_then(|u| {
                u.host_str()
                    .and_then(|x| x.trim_matches(['[', ']']).parse().ok())
            })
            && !crate::deliver::http::is_public(ip)
        {
            errors.push(FieldError::new(
                "endpoint.http.url",
                format!(
                    "{ip} is a private or loopback address, which this server does not deliver to"
                ),
            ));
        }
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
            Endpoint::Stream { stream, .. } if errors.is_empty() => {
                self.check_stream_endpoint(stream, &mut errors)
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
            return Err(RouterError::InvalidSpec {
                kind: Kind::Subscription,
                name: name.into(),
                errors,
            });
        }
        let existing = t.subscriptions.get(name);
        if let Some(old) = existing {
            if let Some(field) = old.immutable_diff(&spec) {
                return Err(RouterError::Conflict(format!(
                    "subscription {name:?} exists with a different {field}, which cannot change; delete it first"
                )));
            }
            if *old == spec {
                return Ok(false);
            }
        }
        let created = existing.is_none();
        let mut subs = t.subscriptions.clone();
        subs.insert(name.to_string(), spec.clone());
        let state = TopicState::build(topic, t.spec.clone(), subs)?;
        // The delivery queue exists before the subscription is stored, so another router
        // applying the stored subscription finds the queue rather than making its own,
        // and before the topic state that routes to it is visible.
        self.workers.ensure(topic, name, &spec).await?;
        let stored = self
            .backend
            .put_meta(
                &format!("{META_SUBSCRIPTION}{topic}/{name}"),
                to_json(&spec),
            )
            .await;
        if let Err(e) = stored {
            if created {
                let _ = self.workers.remove(topic, name).await;
            }
            return Err(e.into());
        }
        self.swap_topic(Some(state), topic);
        Ok(created)
    }

    pub async fn delete_subscription(&self, topic: &str, name: &str) -> Result<(), RouterError> {
        let t = self.topic(topic)?;
        if !t.subscriptions.contains_key(name) {
            return Err(RouterError::not_found(Kind::Subscription, name));
        }
        let mut subs = t.subscriptions.clone();
        subs.remove(name);
        let state = TopicState::build(topic, t.spec.clone(), subs)?;
        self.backend
            .delete_meta(&format!("{META_SUBSCRIPTION}{topic}/{name}"))
            .await?;
        self.swap_topic(Some(state), topic);
        self.workers.remove(topic, name).await?;
        Ok(())
    }

    /// Creates a queue or updates what may change; `Ok(true)` when it was created.
    pub async fn put_queue(&self, name: &str, spec: QueueSpec) -> Result<bool, RouterError> {
        validate_name(Kind::Queue, name).map_err(RouterError::Invalid)?;
        let existing = self.backend.queue(name);
        if let Some(h) = &existing {
            let old = h.spec();
            if let Some(field) = old.immutable_diff(&spec) {
                return Err(RouterError::Conflict(format!(
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
            return Err(RouterError::InvalidSpec {
                kind: Kind::Queue,
                name: name.into(),
                errors,
            });
        }
        self.backend.put_queue(name, spec).await?;
        Ok(existing.is_none())
    }

    pub async fn delete_queue(&self, name: &str) -> Result<(), RouterError> {
        if !self.backend.delete_queue(name).await? {
            return Err(RouterError::not_found(Kind::Queue, name));
        }
        Ok(())
    }
}
