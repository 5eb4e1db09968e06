//! The control plane: creating, changing, listing and deleting topics, subscriptions,
//! queues, streams and functions, for the HTTP API and the config file alike, and
//! applying the changes other routers sharing the backend make.
//!
//! Every change is written to the backend's metadata before it takes effect, so it
//! survives a restart and reaches other routers. A topic's change builds a new
//! [`TopicState`](crate::publish::TopicState) and swaps it in, so publishers never wait
//! on a rebuild. Subscriptions to `http` endpoints and functions get their delivery queue
//! and worker here; functions get their component compiled and their sources started.
//!
//! Files: `topics` (topics and subscriptions), `pending` (subscriptions waiting for
//! their endpoint's confirmation), `queues`, `streams`, `functions`, `meta` (stored
//! records and following other routers).

mod functions;
mod meta;
mod pending;
mod queues;
mod streams;
mod topics;

pub use functions::FunctionCompiler;
pub use pending::{ConfirmationRequest, PendingSubscription};

use crate::backend::Backend;
use crate::deliver::{Sources, Workers};
use crate::error::OpError;
use crate::model::FunctionSpec;
use crate::publish::Topics;
use crate::runtime::FunctionRegistry;
use crate::telemetry::Telemetry;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use tokio_util::sync::CancellationToken;

/// The control plane's state: the resources it manages and the workers it starts.
pub struct Control {
    backend: Arc<Backend>,
    /// Compiled topics, shared with the publish pipeline.
    topics: Arc<Topics>,
    /// Delivery workers of `http` and `function` subscriptions.
    workers: Workers,
    /// Queue and stream consumers of functions.
    sources: Sources,
    /// Compiles components into the deployed functions.
    compiler: FunctionCompiler,
    /// Deployed functions, with where each stands (loading, ready, failed).
    functions: Arc<FunctionRegistry>,
    /// Functions' specs as put (for `GET` and their sources), and the hash of each one's
    /// module, to tell a changed function from one loaded already.
    function_specs: RwLock<HashMap<String, (FunctionSpec, String)>>,
    /// Held while a function's settings change without a new component (its sources,
    /// its asynchronous invocations), so two changes made at once are stored one after
    /// the other and neither is lost.
    spec_changes: tokio::sync::Mutex<()>,
    /// Held while a subscription changes, one lock for every subscription whose topic
    /// and name hash to it (see `Control::subscription_change`).
    subscription_changes: Box<[tokio::sync::Mutex<()>]>,
    /// Refuse webhooks to private and loopback addresses, resolving host names with this.
    deny_private: Option<Arc<dyn crate::deliver::http::Lookup>>,
    /// Ends the task that follows other routers' changes.
    shutdown: CancellationToken,
    /// Meters of the resources, forgotten with them.
    telemetry: Arc<Telemetry>,
}

/// Locks that subscription changes hash to: enough that changes of different
/// subscriptions made at once rarely wait for each other.
const SUBSCRIPTION_CHANGE_LOCKS: usize = 64;

/// What [`Control`] is built from.
pub struct Parts {
    pub backend: Arc<Backend>,
    pub topics: Arc<Topics>,
    pub workers: Workers,
    pub sources: Sources,
    pub compiler: FunctionCompiler,
    pub functions: Arc<FunctionRegistry>,
    /// Refuse webhooks to private and loopback addresses, resolving host names with this.
    pub deny_private: Option<Arc<dyn crate::deliver::http::Lookup>>,
    pub telemetry: Arc<Telemetry>,
    pub shutdown: CancellationToken,
}

impl Control {
    /// The control plane over what is stored: topics and subscriptions are loaded (and
    /// compiled) at once; functions, workers and sources wait for [`Control::start`].
    pub fn open(parts: Parts) -> Result<Arc<Self>, OpError> {
        for (name, state) in meta::load_topics(parts.backend.as_ref(), &parts.topics)? {
            parts.topics.install(&name, Some(state));
        }
        Ok(Arc::new(Control {
            backend: parts.backend,
            topics: parts.topics,
            workers: parts.workers,
            sources: parts.sources,
            compiler: parts.compiler,
            functions: parts.functions,
            function_specs: RwLock::default(),
            spec_changes: tokio::sync::Mutex::default(),
            subscription_changes: (0..SUBSCRIPTION_CHANGE_LOCKS)
                .map(|_| tokio::sync::Mutex::default())
                .collect(),
            deny_private: parts.deny_private,
            shutdown: parts.shutdown,
            telemetry: parts.telemetry,
        }))
    }

    /// Starts loading the stored functions (in the background), their sources and the
    /// delivery workers, which wait for the functions they invoke to be ready; then
    /// follows the changes of other routers sharing the backend.
    pub async fn start(self: &Arc<Self>) -> Result<(), OpError> {
        self.load_functions()?;
        for t in self.topics.names() {
            let Some(t) = self.topics.get(&t) else {
                continue;
            };
            for (name, sub) in t.subscriptions.all() {
                self.ensure_worker(&t.name, &name, &sub).await?;
            }
        }
        self.follow_meta();
        Ok(())
    }
}
