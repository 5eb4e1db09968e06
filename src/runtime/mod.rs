//! The function runtime: runs WebAssembly components of the
//! `switchyard:handler` world (see `wit/`) in wasmtime, sandboxed.
//!
//! In the pipeline it sits behind the delivery workers and function sources:
//! they hand it an [`Event`] (or a batch) and get back an outcome, the guest's
//! logs and the events it asked to publish. It does not receive, acknowledge
//! or publish anything itself: the caller publishes [`Invocation::published`]
//! (always empty for a failed attempt) and decides about retries with
//! [`InvokeError::is_retryable`].
//!
//! - [`Runtime`]: one engine, its epoch ticker, its instance pool and the
//!   compiled-component cache; loads components into [`Function`]s.
//! - [`Function`]: a pre-instantiated component with its limits; each
//!   invocation gets a fresh store with a memory cap and an epoch deadline.
//! - [`FunctionRegistry`]: functions by name, for hot swapping, with where
//!   each stands (loading in the background, ready, failed).
//!
//! A guest cannot hurt the host: no filesystem, sockets, environment or
//! arguments; HTTP out only to its function's allowed hosts; bounded memory, time, logs and publishes; a trap, timeout or
//! exhausted memory is a failed attempt of that event, never a crash; and a
//! guest that runs long moves to a background lane at low CPU priority, so it
//! cannot slow down the API or other functions.
//!
//! Modules: `engine` (engine and ticker), `cache` (compiled components on
//! disk), `imports` (what a guest may import), `limits` (every bound),
//! `host` (store state and host imports), `outbound` (outgoing HTTP), `logs` (log capture), `function`
//! (invocation), `lanes` (where an invocation runs), `registry` (hot swap), `types` (values crossing the boundary),
//! `bindings` (generated from the WIT world), `error`.

mod bindings;
mod cache;
mod engine;
mod error;
mod function;
mod host;
mod imports;
mod lanes;
mod limits;
mod logs;
mod outbound;
mod registry;
pub mod scaffold;
mod types;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::Semaphore;
use wasmtime::Engine;
use wasmtime::component::{Component, HasSelf, Linker};

pub use cache::CacheStats;
pub use engine::EPOCH_TICK;
pub use error::{InvokeError, LoadError};
pub use function::{BatchInvocation, Function, Invocation, ItemFailure, Slot};
pub use host::{AcceptAll, PublishGate};
pub use limits::{
    DEFAULT_CONCURRENCY, DEFAULT_MEMORY_BYTES, DEFAULT_TIMEOUT, FunctionLimits, MAX_BATCH_EVENTS,
    MAX_CONCURRENCY, MAX_CONFIG_BYTES, MAX_CONFIG_ENTRIES, MAX_LOG_LINE_BYTES,
    MAX_LOG_LINES_PER_INVOCATION, MAX_PUBLISH_BYTES, MAX_PUBLISH_BYTES_PER_INVOCATION,
    MAX_PUBLISHES_PER_INVOCATION, MAX_TIMEOUT, MIN_MEMORY_BYTES,
};
pub use outbound::MAX_RESPONSE_BYTES;
pub use registry::{FunctionRegistry, FunctionState, LoadTicket, Registry};
pub use types::{Attribute, AttributeValue, Body, Event, Level, LogLine, LogSource, Publish};

use crate::model::AllowedHosts;
use crate::telemetry::Telemetry;
use bindings::{Handler, HandlerPre};
use host::State;

/// Default bound on instances alive at once across all functions: every
/// running invocation holds one. The pool reserves address space (not
/// memory) for each, so this is cheap to raise.
pub const DEFAULT_MAX_INSTANCES: u32 = 64;
/// Default largest memory cap a function may ask for.
pub const DEFAULT_MAX_MEMORY_BYTES: usize = 512 << 20;

/// How to build a [`Runtime`].
#[derive(Clone)]
pub struct RuntimeConfig {
    /// Directory of the compiled-component cache; `None` compiles on every load.
    pub cache_dir: Option<PathBuf>,
    /// Instances alive at once across all functions; invocations beyond wait.
    pub max_instances: u32,
    /// Largest memory cap a function may ask for (sizes the instance pool).
    pub max_memory_bytes: usize,
    /// Checks each publish as the guest makes it.
    pub publish_gate: Arc<dyn PublishGate>,
    /// Refuse outbound requests to private, loopback and link-local addresses.
    pub deny_private_endpoints: bool,
    /// Where each function's invocations are counted.
    pub telemetry: Arc<Telemetry>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            cache_dir: None,
            max_instances: DEFAULT_MAX_INSTANCES,
            max_memory_bytes: DEFAULT_MAX_MEMORY_BYTES,
            publish_gate: Arc::new(AcceptAll),
            deny_private_endpoints: false,
            telemetry: Arc::default(),
        }
    }
}

impl std::fmt::Debug for RuntimeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeConfig")
            .field("cache_dir", &self.cache_dir)
            .field("max_instances", &self.max_instances)
            .field("max_memory_bytes", &self.max_memory_bytes)
            .finish_non_exhaustive()
    }
}

/// Why a runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("invalid runtime config: {0}")]
    Config(String),
    #[error("cannot create the wasmtime engine: {0}")]
    Engine(String),
    #[error("cannot use cache directory {path}: {source}")]
    CacheDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the epoch ticker thread: {0}")]
    Ticker(std::io::Error),
    #[error("cannot start the compile threads: {0}")]
    CompilePool(std::io::Error),
}

/// The engine and everything functions share. Cloning is cheap.
#[derive(Clone, Debug)]
pub struct Runtime {
    shared: Arc<Shared>,
}

/// State shared by the runtime and every function loaded from it; the epoch
/// ticker stops when the last of them is dropped.
pub(crate) struct Shared {
    pub(crate) engine: Engine,
    linker: Linker<State>,
    cache: cache::ComponentCache,
    /// One permit per instance slot of the pool, so a burst waits for a slot
    /// instead of failing to instantiate.
    pub(crate) instances: Arc<Semaphore>,
    pub(crate) gate: Arc<dyn PublishGate>,
    max_memory_bytes: usize,
    pub(crate) deny_private_endpoints: bool,
    /// Where components are compiled: low-priority threads.
    compile_pool: rayon::ThreadPool,
    pub(crate) ticker: engine::EpochTicker,
    pub(crate) lanes: lanes::Lanes,
    telemetry: Arc<Telemetry>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("cache", &self.cache)
            .field("max_memory_bytes", &self.max_memory_bytes)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// Creates the engine, its instance pool, the cache directory and the
    /// epoch ticker thread.
    pub fn new(config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        if config.max_instances == 0 {
            return Err(RuntimeError::Config(
                "max_instances must be at least 1".into(),
            ));
        }
        if config.max_memory_bytes < MIN_MEMORY_BYTES {
            return Err(RuntimeError::Config(format!(
                "max_memory_bytes must be at least {MIN_MEMORY_BYTES}"
            )));
        }
        let engine = engine::build(config.max_instances, config.max_memory_bytes)
            .map_err(|error| RuntimeError::Engine(error.to_string()))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker))
            .and_then(|()| {
                Handler::add_to_linker::<State, HasSelf<host::GuestState>>(&mut linker, |state| {
                    &mut state.guest
                })
            })
            .map_err(|error| RuntimeError::Engine(error.to_string()))?;
        let cache =
            cache::ComponentCache::new(&engine, config.cache_dir.clone()).map_err(|source| {
                RuntimeError::CacheDir {
                    path: config.cache_dir.clone().unwrap_or_default(),
                    source,
                }
            })?;
        let ticker = engine::EpochTicker::start(&engine).map_err(RuntimeError::Ticker)?;
        let compile_pool = engine::compile_pool().map_err(RuntimeError::CompilePool)?;
        Ok(Runtime {
            shared: Arc::new(Shared {
                engine,
                linker,
                cache,
                instances: Arc::new(Semaphore::new(config.max_instances as usize)),
                gate: config.publish_gate,
                max_memory_bytes: config.max_memory_bytes,
                deny_private_endpoints: config.deny_private_endpoints,
                compile_pool,
                ticker,
                lanes: lanes::Lanes::default(),
                telemetry: config.telemetry,
            }),
        })
    }

    /// Loads `bytes`, a component of the `switchyard:handler` world, as the
    /// function `name`: validates the limits and config, compiles it (or maps
    /// it from the cache), checks its imports and exports and pre-instantiates
    /// it.
    ///
    /// Compiling is CPU-bound and can take a while for a large component:
    /// from async code, call this through `tokio::task::spawn_blocking`.
    pub fn load(
        &self,
        name: &str,
        bytes: &[u8],
        limits: FunctionLimits,
        config: BTreeMap<String, String>,
    ) -> Result<Function, LoadError> {
        self.check(name, bytes, &limits, &config)?;
        let function = name.to_string();
        let engine = &self.shared.engine;
        let (component, source) = self
            .shared
            .compile_pool
            .install(|| {
                self.shared
                    .cache
                    .load(engine, bytes, || Component::from_binary(engine, bytes))
            })
            .map_err(|error| LoadError::Compile {
                function: function.clone(),
                reason: error_chain(&error),
            })?;

        for (import, _) in component.component_type().imports(engine) {
            imports::check_import(import).map_err(|reason| LoadError::UnsupportedImport {
                function: function.clone(),
                import: import.to_string(),
                reason,
            })?;
        }
        check_resources(&component, &limits).map_err(|reason| LoadError::TooLarge {
            function: function.clone(),
            reason,
        })?;
        let pre = self
            .shared
            .linker
            .instantiate_pre(&component)
            .map_err(|error| LoadError::IncompatibleImports {
                function: function.clone(),
                reason: error_chain(&error),
            })?;
        let pre = HandlerPre::new(pre).map_err(|error| LoadError::NotAHandler {
            function: function.clone(),
            reason: error_chain(&error),
        })?;

        Ok(Function {
            name: name.into(),
            limits,
            config: Arc::new(config),
            allowed_hosts: AllowedHosts::default(),
            pre,
            permits: Arc::new(Semaphore::new(limits.concurrency)),
            source,
            shared: self.shared.clone(),
            meter: self.shared.telemetry.functions.get(name),
        })
    }

    /// The checks of [`load`](Self::load) that need no compiling: the limits,
    /// the config and the component's header. Cheap, so a caller that loads
    /// in the background can refuse what could never load at once.
    pub fn check(
        &self,
        name: &str,
        bytes: &[u8],
        limits: &FunctionLimits,
        config: &BTreeMap<String, String>,
    ) -> Result<(), LoadError> {
        let function = name.to_string();
        limits
            .validate(self.shared.max_memory_bytes)
            .map_err(|reason| LoadError::InvalidLimits {
                function: function.clone(),
                reason,
            })?;
        limits::validate_config(config).map_err(|reason| LoadError::InvalidConfig {
            function: function.clone(),
            reason,
        })?;
        if !is_component(bytes) {
            return Err(LoadError::NotAComponent {
                function,
                reason: "the header is not that of a component (a core module needs wrapping into a component)".into(),
            });
        }
        Ok(())
    }

    /// Counters of the compiled-component cache.
    pub fn cache_stats(&self) -> CacheStats {
        self.shared.cache.stats()
    }
}

/// An error with its causes, outermost first: wasmtime puts the detail (which
/// function, which type) in the inner ones.
fn error_chain(error: &wasmtime::Error) -> String {
    error
        .chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}

/// Whether `bytes` start with the header of a component (not a core module).
fn is_component(bytes: &[u8]) -> bool {
    const MAGIC: &[u8] = b"\0asm";
    /// Version 0x0d and layer 1: the component encoding.
    const COMPONENT_VERSION_AND_LAYER: &[u8] = &[0x0d, 0x00, 0x01, 0x00];
    bytes.len() >= 8 && &bytes[..4] == MAGIC && &bytes[4..8] == COMPONENT_VERSION_AND_LAYER
}

/// Checks the initial memory of `component` against the function's memory
/// cap, so a load fails instead of every invocation. (Whether its memories and
/// tables fit a pool slot is checked by wasmtime when compiling.)
fn check_resources(component: &Component, limits: &FunctionLimits) -> Result<(), String> {
    // `None` means the component instantiates nested components or modules
    // whose needs are only known at instantiation; the pool then decides.
    let Some(needs) = component.resources_required() else {
        return Ok(());
    };
    const WASM_PAGE: u64 = 64 << 10;
    if let Some(pages) = needs.max_initial_memory_size {
        let bytes = pages.saturating_mul(WASM_PAGE);
        if bytes > limits.memory_bytes as u64 {
            return Err(format!(
                "its initial memory of {bytes} bytes exceeds the memory limit of {} bytes",
                limits.memory_bytes
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn components_compile_on_threads_of_the_lowest_priority() {
        let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
        // SAFETY: reads the calling thread's own nice value.
        let nice =
            || unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) };
        let caller = nice();
        let on_pool = runtime.shared.compile_pool.broadcast(|_| nice());
        assert!(on_pool.iter().all(|&n| n == 19), "{on_pool:?}");
        assert_eq!(nice(), caller, "the caller's own thread is untouched");
    }

    #[test]
    fn core_modules_and_garbage_are_not_components() {
        assert!(is_component(b"\0asm\x0d\x00\x01\x00rest"));
        assert!(!is_component(b"\0asm\x01\x00\x00\x00rest"));
        assert!(!is_component(b"hello"));
    }
}
