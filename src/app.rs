//! The operations wired together over one backend: what every door (the HTTP API, the
//! config file) calls. Each part is built once and handed what it needs, in the order of
//! their dependencies: topics, then the publish pipeline, queues and streams, then the
//! delivery workers and function sources (given the pipeline to publish through and the
//! stream groups to read), and last the control plane that starts them.

use crate::backend::Backend;
use crate::control::{Control, FunctionCompiler, Parts};
use crate::deliver::{DeliveryMetrics, Outbox, SourceParts, Sources, WorkerParts, Workers};
use crate::error::OpError;
use crate::publish::{Publisher, Topics};
use crate::queue::Queues;
use crate::runtime::{FunctionRegistry, Runtime, RuntimeConfig};
use crate::stream::Streams;
use crate::telemetry::Telemetry;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use tokio_util::sync::CancellationToken;

/// Counters of what the doors were asked and answered, exported on `/metrics`; every
/// door counts into the same ones.
#[derive(Default)]
pub struct Metrics {
    pub published: AtomicU64,
    pub deliveries: AtomicU64,
    pub received: AtomicU64,
    pub acked: AtomicU64,
    pub client_errors: AtomicU64,
}

/// How to build an [`App`].
#[derive(Debug, Clone, Default)]
pub struct AppOptions {
    /// Refuse webhooks to private and loopback addresses.
    pub deny_private_endpoints: bool,
    /// Where compiled components are cached; `None` compiles on every load.
    pub compiled_cache: Option<PathBuf>,
    /// Resolves webhook host names for the private-address checks; the system's
    /// resolver when not given.
    pub lookup: Option<Arc<dyn crate::deliver::http::Lookup>>,
    /// Export spans over OTLP/HTTP to this collector (base URL); none when not given.
    pub otlp_endpoint: Option<String>,
}

/// The operations of one router.
pub struct App {
    pub control: Arc<Control>,
    pub publisher: Arc<Publisher>,
    pub queues: Arc<Queues>,
    pub streams: Arc<Streams>,
    pub backend: Arc<Backend>,
    /// Counters of the delivery workers, for `/metrics`.
    pub delivery_metrics: Arc<DeliveryMetrics>,
    /// Every resource's counters and histograms, for `/metrics`.
    pub telemetry: Arc<Telemetry>,
    /// Cancelled at shutdown: long polls answer, workers and sources stop.
    pub shutdown: CancellationToken,
}

impl App {
    /// Builds the operations over `backend` and loads the stored topics; nothing runs
    /// until [`App::start`].
    pub fn open(backend: Arc<Backend>, options: AppOptions) -> Result<App, OpError> {
        let shutdown = CancellationToken::new();
        let tracing = match &options.otlp_endpoint {
            Some(endpoint) => {
                Some(crate::telemetry::spans::Tracing::otlp(endpoint).map_err(OpError::Invalid)?)
            }
            None => None,
        };
        let telemetry = Arc::new(Telemetry {
            tracing,
            ..Telemetry::default()
        });
        let topics = Arc::new(Topics::new(telemetry.clone()));
        let runtime = Runtime::new(RuntimeConfig {
            cache_dir: options.compiled_cache,
            publish_gate: topics.clone(),
            deny_private_endpoints: options.deny_private_endpoints,
            telemetry: telemetry.clone(),
            ..RuntimeConfig::default()
        })
        .map_err(|e| {
            crate::backend::StorageError::Unavailable(format!(
                "starting the WebAssembly runtime: {e}"
            ))
        })?;
        let functions = Arc::new(FunctionRegistry::new());
        let publisher = Arc::new(Publisher::new(
            backend.clone(),
            topics.clone(),
            telemetry.clone(),
        ));
        let queues = Arc::new(Queues::new(
            backend.clone(),
            shutdown.clone(),
            telemetry.clone(),
        ));
        let streams = Arc::new(Streams::new(
            backend.clone(),
            shutdown.clone(),
            telemetry.clone(),
        ));
        let outbox: Arc<dyn Outbox> = publisher.clone();
        let lookup = options
            .lookup
            .unwrap_or_else(|| Arc::new(crate::deliver::http::SystemLookup));
        let workers = Workers::new(
            WorkerParts {
                backend: backend.clone(),
                functions: functions.clone(),
                outbox: outbox.clone(),
                queues: queues.clone(),
                deny_private: options.deny_private_endpoints,
                lookup: lookup.clone(),
                telemetry: telemetry.clone(),
            },
            shutdown.clone(),
        );
        let delivery_metrics = workers.metrics.clone();
        // Routers sharing a backend each run a function's stream source as a member of
        // their own, so the shards are split between them instead of read twice.
        let member_suffix = if backend.is_shared() {
            format!("@{}", &uuid::Uuid::now_v7().simple().to_string()[20..])
        } else {
            String::new()
        };
        let sources = Sources::new(
            SourceParts {
                queues: queues.clone(),
                groups: streams.clone(),
                functions: functions.clone(),
                outbox,
                metrics: delivery_metrics.clone(),
                telemetry: telemetry.clone(),
                member_suffix,
            },
            shutdown.clone(),
        );
        let control = Control::open(Parts {
            backend: backend.clone(),
            topics,
            workers,
            sources,
            compiler: FunctionCompiler::new(runtime),
            functions,
            deny_private: options.deny_private_endpoints.then_some(lookup),
            telemetry: telemetry.clone(),
            shutdown: shutdown.clone(),
        })?;
        Ok(App {
            control,
            publisher,
            queues,
            streams,
            backend,
            delivery_metrics,
            telemetry,
            shutdown,
        })
    }

    /// Starts the stored functions' loading, the delivery workers and the function
    /// sources, and following other routers' changes.
    pub async fn start(&self) -> Result<(), OpError> {
        self.control.start().await
    }
}
