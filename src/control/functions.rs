//! Functions: WebAssembly components registered by name, invoked for `function`
//! subscriptions (through their delivery queues), by their queue and stream sources,
//! directly (`invoke`) to try a handler locally, and asynchronously (`invoke_later`,
//! through a queue of their own, as Lambda's `Event` invocations).
//!
//! A function's component is stored in the backend's metadata (content-addressed), so a
//! restart reloads it without the original file; compiled code comes from the runtime's
//! disk cache. Putting a new module under the same name swaps it for new invocations while
//! running ones finish on the old. Components of stored and configured functions compile
//! in the background: the function is `loading` until then, and whoever invokes it waits.

use super::{Control, meta};
use crate::backend::{QueueKind, StorageError};
use crate::deliver::SourceReading;
use crate::error::OpError;
use crate::hex;
use crate::model::attributes;
use crate::model::{
    AllowedHosts, Destination, FieldError, FunctionSpec, Kind, SourceSpec, validate_name,
};
use crate::runtime::{
    Body, Event, Function, FunctionLimits, FunctionRegistry, FunctionState, Invocation, LoadError,
    Runtime,
};
use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::sync::Semaphore;

/// What is stored per function: its spec as given (an uploaded module replaced by a
/// description) and the hash of its component.
#[derive(serde::Serialize, serde::Deserialize)]
struct FunctionRecord {
    spec: FunctionSpec,
    module_sha256: String,
}

/// A put function, checked and read, not yet compiled.
struct Prepared {
    /// As given.
    spec: FunctionSpec,
    /// As stored and shown: an uploaded module replaced by a description.
    stored_spec: FunctionSpec,
    bytes: Vec<u8>,
    /// SHA-256 of `bytes`, hex.
    hash: String,
}

/// Compiles components into functions: the runtime, and the slots that bound how many
/// compile at once.
#[derive(Clone)]
pub struct FunctionCompiler {
    runtime: Runtime,
    slots: Arc<Semaphore>,
}

impl FunctionCompiler {
    /// Compiles with `runtime`, as many components at a time as there are cores:
    /// compiling is CPU-bound, and wasmtime spreads one compile over the cores itself, so
    /// running more at once only makes each one slower.
    pub fn new(runtime: Runtime) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        FunctionCompiler {
            runtime,
            slots: Arc::new(Semaphore::new(cores)),
        }
    }

    /// Compiles (or loads from the cache) a component on the blocking pool, once a
    /// compile slot is free.
    async fn compile(
        &self,
        name: &str,
        bytes: Vec<u8>,
        spec: &FunctionSpec,
    ) -> Result<Function, LoadError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .expect("the compile slots are never closed");
        let runtime = self.runtime.clone();
        let (name, limits, env) = (name.to_string(), limits_of(spec), spec.env.clone());
        // Checked when the spec was accepted.
        let hosts = AllowedHosts::parse(&spec.allowed_hosts).unwrap_or_default();
        tokio::task::spawn_blocking(move || runtime.load(&name, &bytes, limits, env))
            .await
            .expect("loading a component does not panic")
            .map(|f| f.allow_hosts(hosts))
    }

    /// Marks the function as loading in `registry` and compiles its component in the
    /// background; it becomes ready (or failed, with the reason) when the compile ends. A
    /// module already ready under the name keeps serving until then.
    fn compile_in_background(
        &self,
        registry: &Arc<FunctionRegistry>,
        name: &str,
        bytes: Vec<u8>,
        spec: &FunctionSpec,
    ) {
        let ticket = registry.begin_load(name);
        let (compiler, registry) = (self.clone(), registry.clone());
        let (name, spec) = (name.to_string(), spec.clone());
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let loaded = compiler.compile(&name, bytes, &spec).await;
            let ms = started.elapsed().as_millis() as u64;
            match &loaded {
                Ok(f) => {
                    tracing::info!(function = %name, ms, from_cache = f.from_cache(), "function ready")
                }
                Err(e) => {
                    tracing::error!(function = %name, ms, error = %e, "function failed to load")
                }
            }
            registry.finish_load(&name, ticket, loaded.map_err(|e| e.to_string()));
        });
    }
}

/// The runtime limits of a function spec.
fn limits_of(spec: &FunctionSpec) -> FunctionLimits {
    FunctionLimits::from_api(spec.timeout_ms, spec.memory_mb, spec.concurrency)
}

/// Decodes the `module` field: a path to a `.wasm` file, or the component in base64.
/// Returns the bytes and whether they were uploaded.
fn module_bytes(module: &str) -> Result<(Vec<u8>, bool), String> {
    if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(module.trim())
        && bytes.starts_with(b"\0asm")
    {
        return Ok((bytes, true));
    }
    std::fs::read(module)
        .map(|b| (b, false))
        .map_err(|e| format!("cannot read {module:?}: {e} (give a path to a .wasm component, or the component in base64)"))
}

impl Control {
    /// The function to invoke: refused while it is loading or after it failed to load.
    pub fn function(&self, name: &str) -> Result<Arc<Function>, OpError> {
        if let Some(f) = self.functions.get(name) {
            return Ok(f);
        }
        Err(match self.functions.state(name) {
            None => OpError::not_found(Kind::Function, name),
            Some(FunctionState::Failed(reason)) => OpError::FunctionFailed {
                name: name.to_string(),
                reason,
            },
            Some(_) => OpError::FunctionLoading {
                name: name.to_string(),
            },
        })
    }

    /// Where a function stands: loading, ready or failed.
    pub fn function_state(&self, name: &str) -> Option<FunctionState> {
        self.functions.state(name)
    }

    /// How each source of `name` is doing on this router.
    pub fn source_readings(&self, name: &str) -> Vec<SourceReading> {
        self.sources.readings(name)
    }

    /// How every source is doing on this router, by function.
    pub fn all_source_readings(&self) -> Vec<(String, SourceReading)> {
        self.sources.all_readings()
    }

    /// Invocations of `name` running now on this router, if it is loaded.
    pub fn function_running(&self, name: &str) -> Option<usize> {
        self.functions.get(name).map(|f| f.running())
    }

    /// The functions that cannot be invoked yet (loading) or at all (failed).
    pub fn functions_not_ready(&self) -> Vec<(String, FunctionState)> {
        self.functions.not_ready()
    }

    /// The spec a function was put with (an uploaded module shows as its size and hash).
    pub fn function_spec(&self, name: &str) -> Option<FunctionSpec> {
        self.function_specs
            .read()
            .expect("never poisoned")
            .get(name)
            .map(|(spec, _)| spec.clone())
    }

    /// The spec a function was put with and the SHA-256 (hex) of its component.
    pub fn function_spec_and_module(&self, name: &str) -> Option<(FunctionSpec, String)> {
        self.function_specs
            .read()
            .expect("never poisoned")
            .get(name)
            .cloned()
    }

    pub fn function_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .function_specs
            .read()
            .expect("never poisoned")
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// Checks a function's spec and reads its module: everything about a put that needs
    /// no compiling.
    fn prepare(&self, name: &str, spec: FunctionSpec) -> Result<Prepared, OpError> {
        validate_name(Kind::Function, name).map_err(OpError::Invalid)?;
        let mut errors = spec.validate();
        let module = match module_bytes(&spec.module) {
            Ok(m) => Some(m),
            Err(e) => {
                errors.push(FieldError::new("module", e));
                None
            }
        };
        self.check_resources(&spec, &mut errors);
        if let (Some((bytes, _)), true) = (&module, errors.is_empty())
            && let Err(e) = self
                .compiler
                .runtime
                .check(name, bytes, &limits_of(&spec), &spec.env)
        {
            errors.push(FieldError::new("module", e.to_string()));
        }
        let (Some((bytes, uploaded)), true) = (module, errors.is_empty()) else {
            return Err(OpError::InvalidSpec {
                kind: Kind::Function,
                name: name.into(),
                errors,
            });
        };
        let hash = hex(&Sha256::digest(&bytes));
        let stored_spec = FunctionSpec {
            module: if uploaded {
                format!("(uploaded component, {} bytes, sha256 {hash})", bytes.len())
            } else {
                spec.module.clone()
            },
            ..spec.clone()
        };
        Ok(Prepared {
            spec,
            stored_spec,
            bytes,
            hash,
        })
    }

    /// Stores a prepared function's component and record, so a restart and other routers
    /// find it.
    async fn store_function(&self, name: &str, p: &Prepared) -> Result<(), OpError> {
        self.backend
            .put_meta(&meta::module_key(&p.hash), p.bytes.clone())
            .await?;
        let record = FunctionRecord {
            spec: p.stored_spec.clone(),
            module_sha256: p.hash.clone(),
        };
        self.backend
            .put_meta(
                &meta::function_key(name),
                serde_json::to_vec(&record).expect("plain data serializes"),
            )
            .await?;
        Ok(())
    }

    /// Registers a function or replaces its module and settings once its component has
    /// compiled, so a module that does not load is refused with the reason; `Ok(true)`
    /// when created.
    pub async fn put_function(&self, name: &str, spec: FunctionSpec) -> Result<bool, OpError> {
        let p = self.prepare(name, spec)?;
        let existing = self.function_spec(name);
        let function = self
            .compiler
            .compile(name, p.bytes.clone(), &p.spec)
            .await
            .map_err(|e| OpError::InvalidSpec {
                kind: Kind::Function,
                name: name.into(),
                errors: vec![FieldError::new("module", e.to_string())],
            })?;
        self.store_function(name, &p).await?;
        self.functions.insert(name, function);
        self.register(name, &p.stored_spec, p.hash);
        Ok(existing.is_none())
    }

    /// Registers a function or replaces its module and settings, compiling its component
    /// in the background: the function is `loading` until it compiled, and `failed` with
    /// the reason if it does not (which does not make this call fail). What is wrong with
    /// the spec or the module's file is refused at once. `Ok(true)` when created.
    pub async fn put_function_in_background(
        &self,
        name: &str,
        spec: FunctionSpec,
    ) -> Result<bool, OpError> {
        let p = self.prepare(name, spec)?;
        let existing = self.function_spec(name);
        self.store_function(name, &p).await?;
        self.compiler
            .compile_in_background(&self.functions, name, p.bytes, &p.spec);
        self.register(name, &p.stored_spec, p.hash);
        Ok(existing.is_none())
    }

    /// Changes a function's settings other than its component (nothing is compiled
    /// again here; sources and asynchronous invocations, as Lambda's event source
    /// mappings and event invoke configs change them): `change` edits the spec and says
    /// what to answer, or refuses. The spec it leaves is checked as a put checks it.
    pub async fn change_function<R>(
        &self,
        name: &str,
        change: impl FnOnce(&mut FunctionSpec) -> Result<R, OpError>,
    ) -> Result<R, OpError> {
        let _one_at_a_time = self.spec_changes.lock().await;
        let (mut spec, hash) = self
            .function_specs
            .read()
            .expect("never poisoned")
            .get(name)
            .cloned()
            .ok_or_else(|| OpError::not_found(Kind::Function, name))?;
        let answer = change(&mut spec)?;
        let mut errors = spec.validate();
        self.check_resources(&spec, &mut errors);
        if !errors.is_empty() {
            return Err(OpError::InvalidSpec {
                kind: Kind::Function,
                name: name.into(),
                errors,
            });
        }
        let record = FunctionRecord {
            spec: spec.clone(),
            module_sha256: hash.clone(),
        };
        self.backend
            .put_meta(
                &meta::function_key(name),
                serde_json::to_vec(&record).expect("plain data serializes"),
            )
            .await?;
        self.register(name, &spec, hash);
        Ok(answer)
    }

    pub async fn delete_function(&self, name: &str) -> Result<(), OpError> {
        if !self.unregister(name) {
            return Err(OpError::not_found(Kind::Function, name));
        }
        self.backend.delete_meta(&meta::function_key(name)).await?;
        // As Lambda discards a deleted function's asynchronous invocations not run yet.
        self.workers.remove_events(name).await?;
        Ok(())
    }

    /// Records a function's spec and module as the current ones, and (re)starts its
    /// sources when they changed (they wait for the function to be ready, and look it up
    /// for each batch, so a new component or other settings leave them running).
    fn register(&self, name: &str, spec: &FunctionSpec, module_sha256: String) {
        let previous = self
            .function_specs
            .write()
            .expect("never poisoned")
            .insert(name.to_string(), (spec.clone(), module_sha256));
        if previous.is_none_or(|(p, _)| p.sources != spec.sources) {
            self.sources.restart(name, &spec.sources);
        }
        self.workers.resume_events(name, spec);
    }

    /// Forgets a function on this router: its sources stop, invocations in flight
    /// finish. `false` when there was none.
    fn unregister(&self, name: &str) -> bool {
        if self
            .function_specs
            .write()
            .expect("never poisoned")
            .remove(name)
            .is_none()
        {
            return false;
        }
        self.sources.restart(name, &[]);
        self.workers.stop_events(name);
        self.functions.remove(name);
        self.telemetry.functions.forget(name);
        true
    }

    /// Starts loading a stored function unless the same spec and module are loaded (or
    /// loading) already.
    async fn load_stored(&self, name: &str, raw: &[u8]) -> Result<(), OpError> {
        let rec: FunctionRecord = serde_json::from_slice(raw).map_err(|e| {
            StorageError::Corrupt(format!("stored function {name:?} is unreadable: {e}"))
        })?;
        let current = self
            .function_specs
            .read()
            .expect("never poisoned")
            .get(name)
            .cloned();
        if current.as_ref() == Some(&(rec.spec.clone(), rec.module_sha256.clone())) {
            return Ok(());
        }
        let Some((_, bytes)) = self
            .backend
            .list_meta(&meta::module_key(&rec.module_sha256))?
            .into_iter()
            .next()
        else {
            tracing::error!(function = %name, "the stored component is missing; put the function again");
            return Ok(());
        };
        self.compiler
            .compile_in_background(&self.functions, name, bytes, &rec.spec);
        self.register(name, &rec.spec, rec.module_sha256);
        Ok(())
    }

    /// Starts loading every stored function in the background (at start).
    pub(super) fn load_functions(&self) -> Result<(), OpError> {
        for (name, raw) in self.backend.list_meta(meta::FUNCTION)? {
            let rec: FunctionRecord = serde_json::from_slice(&raw).map_err(|e| {
                StorageError::Corrupt(format!("stored function {name:?} is unreadable: {e}"))
            })?;
            let Some((_, bytes)) = self
                .backend
                .list_meta(&meta::module_key(&rec.module_sha256))?
                .into_iter()
                .next()
            else {
                tracing::error!(function = %name, "the stored component is missing; put the function again");
                continue;
            };
            self.compiler
                .compile_in_background(&self.functions, &name, bytes, &rec.spec);
            self.register(&name, &rec.spec, rec.module_sha256);
        }
        Ok(())
    }

    /// Applies another router's change to a function.
    pub(super) async fn reload_function(&self, name: &str) {
        let stored = self
            .backend
            .list_meta(&meta::function_key(name))
            .map(|v| v.into_iter().find(|(rest, _)| rest.is_empty()));
        let result = match stored {
            Ok(Some((_, raw))) => self.load_stored(name, &raw).await,
            Ok(None) => {
                self.unregister(name);
                Ok(())
            }
            Err(e) => Err(e.into()),
        };
        if let Err(e) = result {
            tracing::error!(function = name, error = %e, "cannot apply a change of another router");
        }
    }

    /// Checks that the queues, streams and topics a spec names exist.
    fn check_resources(&self, spec: &FunctionSpec, errors: &mut Vec<FieldError>) {
        for (i, s) in spec.sources.iter().enumerate() {
            let missing = match s {
                SourceSpec::Queue { queue, .. } => self.missing_queue(queue),
                SourceSpec::Stream {
                    stream, on_failure, ..
                } => self
                    .backend
                    .stream(stream)
                    .is_none()
                    .then(|| OpError::not_found(Kind::Stream, stream))
                    .or_else(|| on_failure.as_ref().and_then(|to| self.missing(to))),
            };
            if let Some(e) = missing {
                errors.push(FieldError::new(format!("sources[{i}]"), e.to_string()));
            }
        }
        let Some(a) = &spec.asynchronous else {
            return;
        };
        for (field, to) in [("on_success", &a.on_success), ("on_failure", &a.on_failure)] {
            if let Some(e) = to.as_ref().and_then(|to| self.missing(to)) {
                errors.push(FieldError::new(
                    format!("asynchronous.{field}"),
                    e.to_string(),
                ));
            }
        }
    }

    /// The error naming a destination that does not exist.
    fn missing(&self, to: &Destination) -> Option<OpError> {
        match to {
            Destination::Queue { queue } => self.missing_queue(queue),
            Destination::Topic { topic } => self
                .topics
                .get(topic)
                .is_none()
                .then(|| OpError::not_found(Kind::Topic, topic)),
        }
    }

    fn missing_queue(&self, queue: &str) -> Option<OpError> {
        self.backend
            .queue(queue)
            .filter(|q| q.kind() == QueueKind::User)
            .is_none()
            .then(|| OpError::not_found(Kind::Queue, queue))
    }

    /// Runs a function on one event and reports everything it did, without publishing
    /// what it published: the way to try a handler.
    pub async fn invoke(
        &self,
        name: &str,
        message: &Value,
        attributes: Option<&Value>,
    ) -> Result<Invocation, OpError> {
        let attrs = attributes::from_api(attributes)?;
        let attributes = crate::deliver::runtime_attributes(&attrs.to_sns_json());
        self.invoke_body(name, Body::Text(message.to_string()), attributes)
            .await
    }

    /// Runs a function on one event of `body` and reports everything it did, without
    /// publishing what it published.
    pub async fn invoke_body(
        &self,
        name: &str,
        body: Body,
        attributes: Vec<crate::runtime::Attribute>,
    ) -> Result<Invocation, OpError> {
        let f = self.function(name)?;
        let event = Event {
            id: uuid::Uuid::now_v7().to_string(),
            topic: String::new(),
            subscription: String::new(),
            attributes,
            body,
            published_at_ms: crate::time::now_ms(),
            receive_count: 1,
        };
        Ok(f.invoke(event).await)
    }

    /// A function's asynchronous invocations not finished yet (waiting, running, or
    /// waiting for a retry); none when it never had one.
    pub async fn events_waiting(&self, name: &str) -> Result<u64, OpError> {
        let Some(queue) = self.backend.queue(&crate::deliver::event_queue_name(name)) else {
            return Ok(0);
        };
        let c = self.backend.counts(&queue).await?;
        Ok(c.visible + c.in_flight + c.delayed)
    }

    /// Accepts an asynchronous invocation of `name` with `payload`, answering once it is
    /// stored: the function's worker runs it with the retries its spec allows (a restart
    /// included), publishes what it published once it succeeded, and sends its record to
    /// the spec's destinations. `region` is the one its caller signed for, which the
    /// record names. The answer is the id of the event the function is handed.
    pub async fn invoke_later(
        &self,
        name: &str,
        payload: Vec<u8>,
        region: &str,
    ) -> Result<String, OpError> {
        let missing = || OpError::not_found(Kind::Function, name);
        let exists = self
            .function_specs
            .read()
            .expect("never poisoned")
            .contains_key(name);
        if !exists {
            return Err(missing());
        }
        // The spec is read (and copied) only to make the queue, on the first invocation.
        let queue = match self.workers.running_event_queue(name) {
            Some(queue) => queue,
            None => {
                let spec = self.function_spec(name).ok_or_else(missing)?;
                self.workers.event_queue(name, &spec).await?
            }
        };
        let message_id = uuid::Uuid::now_v7().to_string();
        let attributes = serde_json::json!({
            crate::deliver::REGION_ATTRIBUTE: {"Type": "String", "Value": region},
        });
        let message = crate::backend::NewMessage {
            message_id: message_id.clone(),
            payload,
            attributes: serde_json::to_vec(&attributes).expect("JSON values serialize"),
            delay_ms: 0,
            group: None,
            dedup_id: None,
        };
        self.backend.enqueue(vec![(queue, message)]).await?;
        Ok(message_id)
    }
}
