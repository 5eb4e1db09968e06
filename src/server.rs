//! A running server: opens storage, builds the operations over it ([`App`]), applies the
//! config file, serves the HTTP API beside the retention sweeper, and drains on shutdown.

use crate::api::{self, AppState};
use crate::app::{App, AppOptions};
use crate::backend::jetstream::JetStream;
use crate::backend::{Backend, Embedded};
use anyhow::Context;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// How often expired messages and dedup ids are swept. Retention is enforced on receive
/// too, so this only bounds how long expired messages occupy disk and counts.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// Where resources and messages are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendChoice {
    /// fjall in the data directory: one process, no server.
    Embedded,
    /// NATS JetStream, shared by every router with the same prefix: `url` names one server
    /// or several of a cluster (comma-separated), and every stream is kept on `replicas`
    /// of its servers.
    Nats {
        url: String,
        prefix: String,
        replicas: usize,
    },
}

impl BackendChoice {
    /// Reads `--backend` (`embedded`, or `nats://HOST:PORT` with more servers of the same
    /// cluster after commas), `--nats-prefix` and `--nats-replicas`.
    pub fn parse(backend: &str, prefix: &str, replicas: usize) -> Result<Self, String> {
        if backend == "embedded" {
            return Ok(BackendChoice::Embedded);
        }
        if !backend.starts_with("nats://") {
            return Err(format!(
                "unknown backend {backend:?}: use \"embedded\" or \"nats://HOST:PORT\""
            ));
        }
        for server in backend.split(',') {
            let rest = server.strip_prefix("nats://").unwrap_or("");
            if rest.is_empty() || rest.contains('/') {
                return Err(format!(
                    "backend {backend:?}: {server:?} is not a NATS address: use \
                     nats://HOST:PORT, or several separated by commas"
                ));
            }
        }
        crate::backend::jetstream::check_prefix(prefix)
            .map_err(|e| format!("--nats-prefix: {e}"))?;
        crate::backend::jetstream::check_replicas(replicas)
            .map_err(|e| format!("--nats-replicas: {e}"))?;
        Ok(BackendChoice::Nats {
            url: backend.to_string(),
            prefix: prefix.to_string(),
            replicas,
        })
    }
}

/// What `switchyard serve` was asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    pub backend: BackendChoice,
    /// The embedded backend's data, and the compiled-component cache of either backend
    /// unless `compiled_cache` puts it elsewhere.
    pub data_dir: PathBuf,
    /// Where compiled components are cached; `DATA_DIR/compiled` when not given.
    pub compiled_cache: Option<PathBuf>,
    pub config: Option<PathBuf>,
    pub token: Option<String>,
    /// Require the token on `/metrics` too.
    pub token_metrics: bool,
    /// Refuse webhooks to private and loopback addresses (for servers that accept
    /// subscriptions from untrusted users).
    pub deny_private_endpoints: bool,
    /// Where spans are exported (OTLP/HTTP base URL); none when not given.
    pub otlp_endpoint: Option<String>,
    /// Bytes kept free on the embedded backend's disk (0: no check).
    pub min_free_disk: u64,
}

/// Everything `run` needs, opened and checked before the listener accepts anything.
pub struct Prepared {
    app: Arc<App>,
    token: Option<String>,
    token_metrics: bool,
}

/// Turns transparent huge pages off for this process. The allocator asks for them, and
/// the first touch of one zeroes 2 MiB at once: a stall of several milliseconds (6 ms
/// measured in a VM) on whichever thread allocates, request and log threads included,
/// every time memory grows. Latency-minded servers (Redis, most databases) turn them off.
pub fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with integer arguments only; it sets a flag of this process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// Opens storage and applies the config file. Config errors come back as a list, so the
/// caller can print every one of them.
pub async fn prepare(opts: Options) -> Result<Prepared, PrepareError> {
    let backend: Arc<Backend> = match &opts.backend {
        BackendChoice::Embedded => {
            let store = Embedded::open(&opts.data_dir).with_context(|| {
                format!("opening the data directory {}", opts.data_dir.display())
            })?;
            store.reserve_disk(opts.min_free_disk);
            Arc::new(Backend::Embedded(store))
        }
        BackendChoice::Nats {
            url,
            prefix,
            replicas,
        } => Arc::new(Backend::JetStream(
            JetStream::connect(url, prefix, *replicas)
                .await
                .with_context(|| format!("opening the JetStream backend at {url}"))?,
        )),
    };
    let app = Arc::new(
        App::open(
            backend.clone(),
            AppOptions {
                deny_private_endpoints: opts.deny_private_endpoints,
                compiled_cache: Some(
                    opts.compiled_cache
                        .clone()
                        .unwrap_or_else(|| opts.data_dir.join("compiled")),
                ),
                lookup: None,
                otlp_endpoint: opts.otlp_endpoint.clone(),
            },
        )
        .context("loading resources")?,
    );
    app.start()
        .await
        .context("starting functions and workers")?;
    if let Some(path) = &opts.config {
        let existing = crate::config::Existing {
            topics: app.control.topic_names().into_iter().collect(),
            queues: backend.queue_names().into_iter().collect(),
            streams: backend.stream_names().into_iter().collect(),
            functions: app.control.function_names().into_iter().collect(),
        };
        let cfg = crate::config::load(path, &existing).map_err(PrepareError::Config)?;
        cfg.apply(&app.control)
            .await
            .with_context(|| format!("applying {}", path.display()))?;
    }
    Ok(Prepared {
        app,
        token: opts.token,
        token_metrics: opts.token_metrics,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("invalid config")]
    Config(Vec<crate::config::ConfigError>),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Serves until `shutdown` completes, then stops accepting, ends long polls and waits for
/// requests in flight.
pub async fn run(
    listener: TcpListener,
    prepared: Prepared,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = prepared.app;
    let state = AppState::new(app.clone(), prepared.token, prepared.token_metrics);
    let sweeper = {
        let backend = app.backend.clone();
        let stop = app.shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_INTERVAL);
            loop {
                tokio::select! {
                    _ = tick.tick() => backend.sweep(),
                    _ = stop.cancelled() => break,
                }
            }
        })
    };
    let stop = app.shutdown.clone();
    api::listen::serve(
        listener,
        api::app(state),
        api::listen::Limits::default(),
        async move {
            shutdown.await;
            tracing::info!("shutting down");
            // Long polls end now, so the requests in flight can finish.
            stop.cancel();
        },
    )
    .await;
    app.shutdown.cancel();
    let _ = sweeper.await;
    if let Some(tracing) = &app.telemetry.tracing {
        // The exporter's client blocks; the last spans go out off the runtime's threads.
        tokio::task::block_in_place(|| tracing.flush());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::BackendChoice;

    #[test]
    fn backend_choices_parse_and_bad_ones_are_named() {
        assert_eq!(
            BackendChoice::parse("embedded", "switchyard", 1),
            Ok(BackendChoice::Embedded)
        );
        assert_eq!(
            BackendChoice::parse("nats://10.0.0.1:4222", "prod", 1),
            Ok(BackendChoice::Nats {
                url: "nats://10.0.0.1:4222".into(),
                prefix: "prod".into(),
                replicas: 1,
            })
        );
        assert_eq!(
            BackendChoice::parse("nats://a:4222,nats://b:4222", "prod", 3),
            Ok(BackendChoice::Nats {
                url: "nats://a:4222,nats://b:4222".into(),
                prefix: "prod".into(),
                replicas: 3,
            })
        );
        let e = BackendChoice::parse("postgres://x", "switchyard", 1).unwrap_err();
        assert!(
            e.contains("postgres://x") && e.contains("nats://HOST:PORT"),
            "{e}"
        );
        assert!(BackendChoice::parse("nats://", "switchyard", 1).is_err());
        let e = BackendChoice::parse("nats://a:1,b:2", "switchyard", 1).unwrap_err();
        assert!(e.contains("\"b:2\" is not a NATS address"), "{e}");
        let e = BackendChoice::parse("nats://h:4222", "a.b", 1).unwrap_err();
        assert!(e.contains("--nats-prefix"), "{e}");
        for bad in [0, 6] {
            let e = BackendChoice::parse("nats://h:4222", "p", bad).unwrap_err();
            assert!(e.contains("--nats-replicas") && e.contains("1 to 5"), "{e}");
        }
    }
}
