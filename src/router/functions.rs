//! Functions: WebAssembly components registered by name, invoked for `function`
//! subscriptions (through their delivery queues), by their queue and stream sources, and
//! directly (`invoke`) to try a handler locally.
//!
//! A function's component is stored in the backend's metadata (content-addressed), so a
//! restart reloads it without the original file; compiled code comes from the runtime's
//! disk cache. Putting a new module under the same name swaps it for new invocations while
//! running ones finish on the old.

use super::{PublishRequest, Router, RouterError};
use crate::backend::StorageError;
use crate::hex;
use crate::model::{FieldError, FunctionSpec, Kind, validate_name};
use crate::runtime::{
    Attribute, AttributeValue, Body, Event, Function, FunctionLimits, FunctionRegistry,
    FunctionState, LoadError, Publish, PublishGate, Runtime,
};
use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::{Arc, OnceLock, Weak};
use tokio::sync::Semaphore;

pub(super) const META_FUNCTION: &str = "f/";
const META_MODULE: &str = "mod/";

/// What is stored per function: its spec as given (an uploaded module replaced by a
/// description) and the hash of its component.
#[derive(serde::Serialize, serde::Deserialize)]
struct FunctionRecord {
    spec: FunctionSpec,
    module_sha256: String,
}

/// Lets guests hear at once that a topic they publish to does not exist, instead of the
/// publish being dropped after a successful invocation.
#[derive(Default)]
pub struct TopicGate {
    router: OnceLock<Weak<Router>>,
}

impl TopicGate {
    pub fn attach(&self, router: Weak<Router>) {
        let _ = self.router.set(router);
    }
}

impl PublishGate for TopicGate {
    fn check(&self, _function: &str, publish: &Publish) -> Result<(), String> {
        let Some(router) = self.router.get().and_then(Weak::upgrade) else {
            return Ok(());
        };
        router
            .topic(&publish.topic)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
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

/// What compiling a component needs: the runtime and the slots that bound how many
/// compile at once.
struct Loader {
    runtime: Runtime,
    slots: Arc<Semaphore>,
}

/// The runtime limits of a function spec.
fn limits_of(spec: &FunctionSpec) -> FunctionLimits {
    FunctionLimits::from_api(spec.timeout_ms, spec.memory_mb, spec.concurrency)
}

/// Compiles (or loads from the cache) a component on the blocking pool, once a compile
/// slot is free: compiling is CPU-bound, and wasmtime spreads one compile over the cores
/// itself, so running more at once than there are cores only makes each one slower.
async fn compile(
    loader: Loader,
    name: String,
    bytes: Vec<u8>,
    spec: &FunctionSpec,
) -> Result<Function, LoadError> {
    let _slot = loader
        .slots
        .acquire_owned()
        .await
        .expect("the compile slots are never closed");
    let limits = limits_of(spec);
    let env = spec.env.clone();
    tokio::task::spawn_blocking(move || loader.runtime.load(&name, &bytes, limits, env))
        .await
        .expect("loading a component does not panic")
}

/// Decodes the `module` field: a path to a `.wasm` file, or the component in base64.
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

impl Router {
    /// The function to invoke: refused while it is loading or after it failed to load.
    pub fn function(&self, name: &str) -> Result<Arc<Function>, RouterError> {
        if let Some(f) = self.functions.get(name) {
            return Ok(f);
        }
        Err(match self.functions.state(name) {
            None => RouterError::not_found(Kind::Function, name),
            Some(FunctionState::Failed(reason)) => RouterError::FunctionFailed {
                name: name.to_string(),
                reason,
            },
            Some(_) => RouterError::FunctionLoading {
                name: name.to_string(),
            },
        })
    }

    /// Where a function stands: loading, ready or failed.
    pub fn function_state(&self, name: &str) -> Option<FunctionState> {
        self.functions.state(name)
    }

    /// The functions that cannot be invoked yet (loading) or at all (failed).
    pub fn functions_not_ready(&self) -> Vec<(String, FunctionState)> {
        self.functions.not_ready()
    }

    /// The deployed functions, for workers that wait for one to be ready.
    pub fn function_registry(&self) -> Arc<FunctionRegistry> {
        self.functions.clone()
    }

    /// The spec a function was put with (an uploaded module shows as its size and hash).
    pub fn function_spec(&self, name: &str) -> Option<FunctionSpec> {
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

    /// Compiles (or loads from the cache) a component off the async threads,
    /// taking one of the compile slots.
    async fn load(
        &self,
        name: &str,
        bytes: Vec<u8>,
        spec: &FunctionSpec,
    ) -> Result<Function, LoadError> {
        compile(self.loader(), name.to_string(), bytes, spec).await
    }

    fn loader(&self) -> Loader {
        Loader {
            runtime: self.runtime.clone(),
            slots: self.compile_slots.clone(),
        }
    }

    /// Marks the function as loading and compiles its component in the background; it
    /// becomes ready (or failed, with the reason) when the compile ends. A module already
    /// ready under the name keeps serving until then.
    fn load_in_background(&self, name: &str, bytes: Vec<u8>, spec: &FunctionSpec) {
        let ticket = self.functions.begin_load(name);
        let (loader, registry) = (self.loader(), self.functions.clone());
        let (name, spec) = (name.to_string(), spec.clone());
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let loaded = compile(loader, name.clone(), bytes, &spec).await;
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

    /// Checks a function's spec and reads its module: everything about a put that needs
    /// no compiling.
    fn prepare(&self, name: &str, spec: FunctionSpec) -> Result<Prepared, RouterError> {
        validate_name(Kind::Function, name).map_err(RouterError::Invalid)?;
        let mut errors = spec.validate();
        let module = match module_bytes(&spec.module) {
            Ok(m) => Some(m),
            Err(e) => {
                errors.push(FieldError::new("module", e));
                None
            }
        };
        for (i, s) in spec.sources.iter().enumerate() {
            if let Err(e) = self.check_source(s) {
                errors.push(FieldError::new(format!("sources[{i}]"), e));
            }
        }
        if let (Some((bytes, _)), true) = (&module, errors.is_empty())
            && let Err(e) = self
                .runtime
                .check(name, bytes, &limits_of(&spec), &spec.env)
        {
            errors.push(FieldError::new("module", e.to_string()));
        }
        let (Some((bytes, uploaded)), true) = (module, errors.is_empty()) else {
            return Err(RouterError::InvalidSpec {
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
    async fn store(&self, name: &str, p: &Prepared) -> Result<(), RouterError> {
        self.backend
            .put_meta(&format!("{META_MODULE}{}", p.hash), p.bytes.clone())
            .await?;
        let record = FunctionRecord {
            spec: p.stored_spec.clone(),
            module_sha256: p.hash.clone(),
        };
        self.backend
            .put_meta(
                &format!("{META_FUNCTION}{name}"),
                serde_json::to_vec(&record).expect("plain data serializes"),
            )
            .await?;
        Ok(())
    }

    /// Registers a function or replaces its module and settings once its component has
    /// compiled, so a module that does not load is refused with the reason; `Ok(true)`
    /// when created.
    pub async fn put_function(&self, name: &str, spec: FunctionSpec) -> Result<bool, RouterError> {
        let p = self.prepare(name, spec)?;
        let existing = self.function_spec(name);
        let function = self
            .load(name, p.bytes.clone(), &p.spec)
            .await
            .map_err(|e| RouterError::InvalidSpec {
                kind: Kind::Function,
                name: name.into(),
                errors: vec![FieldError::new("module", e.to_string())],
            })?;
        self.store(name, &p).await?;
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
    ) -> Result<bool, RouterError> {
        let p = self.prepare(name, spec)?;
        let existing = self.function_spec(name);
        self.store(name, &p).await?;
        self.load_in_background(name, p.bytes, &p.spec);
        self.register(name, &p.stored_spec, p.hash);
        Ok(existing.is_none())
    }

    pub async fn delete_function(&self, name: &str) -> Result<(), RouterError> {
        if self
            .function_specs
            .write()
            .expect("never poisoned")
            .remove(name)
            .is_none()
        {
            return Err(RouterError::not_found(Kind::Function, name));
        }
        self.sources.restart(name, &[]);
        self.functions.remove(name);
        self.module_hashes
            .write()
            .expect("never poisoned")
            .remove(name);
        self.backend
            .delete_meta(&format!("{META_FUNCTION}{name}"))
            .await?;
        Ok(())
    }

    /// Records a function's spec and module as the current ones, and (re)starts its
    /// sources, which wait for the function to be ready.
    fn register(&self, name: &str, spec: &FunctionSpec, module_sha256: String) {
        self.function_specs
            .write()
            .expect("never poisoned")
            .insert(name.to_string(), spec.clone());
        self.module_hashes
            .write()
            .expect("never poisoned")
            .insert(name.to_string(), module_sha256);
        self.sources.restart(name, &spec.sources);
    }

    /// Starts loading a stored function unless the same spec and module are loaded (or
    /// loading) already.
    async fn load_stored(&self, name: &str, raw: &[u8]) -> Result<(), RouterError> {
        let rec: FunctionRecord = serde_json::from_slice(raw)
            .map_err(|e| StorageError(format!("stored function {name:?} is unreadable: {e}")))?;
        let current = self
            .module_hashes
            .read()
            .expect("never poisoned")
            .get(name)
            .cloned();
        if current.as_ref() == Some(&rec.module_sha256)
            && self.function_spec(name).as_ref() == Some(&rec.spec)
        {
            return Ok(());
        }
        let Some((_, bytes)) = self
            .backend
            .list_meta(&format!("{META_MODULE}{}", rec.module_sha256))?
            .into_iter()
            .next()
        else {
            tracing::error!(function = %name, "the stored component is missing; put the function again");
            return Ok(());
        };
        self.load_in_background(name, bytes, &rec.spec);
        self.register(name, &rec.spec, rec.module_sha256);
        Ok(())
    }

    /// Starts loading every stored function in the background (at start).
    pub(super) async fn load_functions(&self) -> Result<(), RouterError> {
        for (name, raw) in self.backend.list_meta(META_FUNCTION)? {
            self.load_stored(&name, &raw).await?;
        }
        Ok(())
    }

    /// Applies another router's change to a function.
    pub(super) async fn reload_function(&self, name: &str) {
        let stored = self
            .backend
            .list_meta(&format!("{META_FUNCTION}{name}"))
            .map(|v| v.into_iter().find(|(rest, _)| rest.is_empty()));
        let result = match stored {
            Ok(Some((_, raw))) => self.load_stored(name, &raw).await,
            Ok(None) => {
                if self
                    .function_specs
                    .write()
                    .expect("never poisoned")
                    .remove(name)
                    .is_some()
                {
                    self.sources.restart(name, &[]);
                    self.functions.remove(name);
                    self.module_hashes
                        .write()
                        .expect("never poisoned")
                        .remove(name);
                }
                Ok(())
            }
            Err(e) => Err(e.into()),
        };
        if let Err(e) = result {
            tracing::error!(function = name, error = %e, "cannot apply a change of another router");
        }
    }

    fn check_source(&self, s: &crate::model::SourceSpec) -> Result<(), String> {
        match s {
            crate::model::SourceSpec::Queue { queue, .. } => {
                self.queue(queue).map(|_| ()).map_err(|e| e.to_string())
            }
            crate::model::SourceSpec::Stream { stream, .. } => {
                self.stream(stream).map(|_| ()).map_err(|e| e.to_string())
            }
        }
    }

    /// Publishes what a successful invocation published, through the normal publish
    /// path. A publish that fails (unknown topic, schema) is logged and counted: the
    /// invocation itself succeeded and is not repeated.
    pub async fn publish_from_function(&self, function: &str, published: Vec<Publish>) {
        for p in published {
            let req = match publish_request(&p) {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(function, topic = %p.topic, error = %e, "function publish dropped");
                    continue;
                }
            };
            if let Err(e) = self.publish(&p.topic, req).await {
                tracing::error!(function, topic = %p.topic, error = %e, "function publish refused");
            }
        }
    }

    /// Runs a function on one event and reports everything it did, without publishing
    /// what it published: the way to try a handler.
    pub async fn invoke(
        &self,
        name: &str,
        message: &Value,
        attributes: Option<&Value>,
    ) -> Result<Value, RouterError> {
        let f = self.function(name)?;
        let attrs = crate::model::attributes::from_api(attributes)?;
        let event = Event {
            id: uuid::Uuid::now_v7().to_string(),
            topic: String::new(),
            subscription: String::new(),
            attributes: runtime_attributes(&attrs.to_sns_json()),
            body: Body::Text(message.to_string()),
            published_at_ms: crate::backend::now_ms(),
            receive_count: 1,
        };
        let inv = f.invoke(event).await;
        let (ok, error) = match &inv.outcome {
            Ok(()) => (true, Value::Null),
            Err(e) => (
                false,
                json!({"message": e.to_string(), "retryable": e.is_retryable()}),
            ),
        };
        Ok(json!({
            "ok": ok,
            "error": error,
            "logs": inv.logs.iter().map(|l| json!({"level": format!("{:?}", l.level).to_lowercase(), "source": format!("{:?}", l.source).to_lowercase(), "message": l.message})).collect::<Vec<_>>(),
            "published": inv.published.iter().map(published_json).collect::<Vec<_>>(),
            "discarded_publishes": inv.discarded_publishes,
            "duration_ms": inv.duration.as_secs_f64() * 1000.0,
        }))
    }
}

/// A guest's publish as the API would have received it.
fn publish_request(p: &Publish) -> Result<PublishRequest, String> {
    let text = match &p.body {
        Body::Text(t) => t.clone(),
        Body::Bytes(b) => String::from_utf8(b.clone()).map_err(|_| "a binary body is not JSON")?,
    };
    // Topics carry JSON: a text that is not JSON travels as a JSON string.
    let message = match serde_json::value::RawValue::from_string(text.clone()) {
        Ok(raw) => raw,
        Err(_) => serde_json::value::to_raw_value(&text).map_err(|e| e.to_string())?,
    };
    Ok(PublishRequest {
        message,
        attributes: Some(api_attributes(&p.attributes)),
        group_id: p.group_id.clone(),
        dedup_id: p.dedup_id.clone(),
        id: None,
    })
}

fn published_json(p: &Publish) -> Value {
    let message = match &p.body {
        Body::Text(t) => serde_json::from_str(t).unwrap_or_else(|_| json!(t)),
        Body::Bytes(b) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
    };
    json!({"topic": p.topic, "message": message, "attributes": api_attributes(&p.attributes),
           "group_id": p.group_id, "dedup_id": p.dedup_id})
}

/// Runtime attributes in the API's SNS form.
fn api_attributes(attrs: &[Attribute]) -> Value {
    let mut m = serde_json::Map::new();
    for a in attrs {
        let (t, v) = match &a.value {
            AttributeValue::String(s) => ("String", s.clone()),
            AttributeValue::Number(n) => ("Number", n.clone()),
            AttributeValue::StringArray(items) => ("String.Array", json!(items).to_string()),
            AttributeValue::Binary(b) => (
                "Binary",
                base64::engine::general_purpose::STANDARD.encode(b),
            ),
        };
        m.insert(a.name.clone(), json!({"Type": t, "Value": v}));
    }
    Value::Object(m)
}

/// SNS-form attributes (as stored and delivered) as the handler world's attributes.
pub fn runtime_attributes(sns: &Value) -> Vec<Attribute> {
    let Some(map) = sns.as_object() else {
        return Vec::new();
    };
    map.iter()
        .filter_map(|(name, a)| {
            let t = a.get("Type")?.as_str()?;
            let v = a.get("Value")?.as_str()?.to_string();
            let value = match t.split('.').next().unwrap_or("") {
                _ if t == "String.Array" => AttributeValue::StringArray(
                    serde_json::from_str::<Vec<Value>>(&v)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|e| match e {
                            Value::String(s) => s,
                            other => other.to_string(),
                        })
                        .collect(),
                ),
                "Number" => AttributeValue::Number(v),
                "Binary" => AttributeValue::Binary(
                    base64::engine::general_purpose::STANDARD
                        .decode(&v)
                        .unwrap_or_default(),
                ),
                _ => AttributeValue::String(v),
            };
            Some(Attribute {
                name: name.clone(),
                value,
            })
        })
        .collect()
}
