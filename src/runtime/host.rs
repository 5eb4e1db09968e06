//! The state of one invocation's store and the host side of the
//! `switchyard:handler/host` interface: `log`, `publish` and `config`.
//!
//! Publishes are only buffered here, bounded by the limits in `limits`; the
//! caller publishes them once the invocation has succeeded, which makes "a
//! failed invocation publishes nothing" true by construction. A
//! [`PublishGate`] can refuse a publish at once so the guest learns about an
//! unknown topic while it can still react.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::bindings::{publish_request, switchyard::handler::host, wit};
use super::limits::{
    MAX_PUBLISH_BYTES, MAX_PUBLISH_BYTES_PER_INVOCATION, MAX_PUBLISHES_PER_INVOCATION, MemoryCap,
};
use super::logs::SharedLogs;
use super::outbound::Outbound;
use super::types::{LogSource, Publish};

/// Checks a guest's publish when it is made, before it is buffered: the
/// router implements it to refuse unknown topics or invalid FIFO options, so
/// the guest gets the error from `publish` instead of a silent loss later.
/// It must be quick and must not block: it runs on the guest's call path.
pub trait PublishGate: Send + Sync + 'static {
    /// `Ok` to accept, or the reason for refusing, which the guest receives.
    fn check(&self, function: &str, publish: &Publish) -> Result<(), String>;
}

/// The gate that accepts every publish; validation is left to the router when
/// it publishes the buffered events.
#[derive(Debug, Clone, Copy, Default)]
pub struct AcceptAll;

impl PublishGate for AcceptAll {
    fn check(&self, _function: &str, _publish: &Publish) -> Result<(), String> {
        Ok(())
    }
}

/// What a store holds for one invocation.
pub(crate) struct State {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    outbound: Outbound,
    table: ResourceTable,
    pub(crate) memory: MemoryCap,
    pub(crate) guest: GuestState,
}

/// The part of [`State`] the `switchyard:handler/host` imports use.
pub(crate) struct GuestState {
    function: Arc<str>,
    config: Arc<BTreeMap<String, String>>,
    gate: Arc<dyn PublishGate>,
    pub(crate) logs: SharedLogs,
    pub(crate) published: Vec<Publish>,
    published_bytes: usize,
}

impl State {
    /// A fresh state with the sandbox's WASI context: no preopened
    /// directories, no environment variables or arguments, stdin closed,
    /// stdout and stderr captured into the invocation's logs, and every
    /// socket operation and name lookup denied.
    pub(crate) fn new(
        function: Arc<str>,
        config: Arc<BTreeMap<String, String>>,
        gate: Arc<dyn PublishGate>,
        memory_limit_bytes: usize,
        outbound: Outbound,
    ) -> State {
        let logs = outbound.logs.clone();
        let wasi = WasiCtxBuilder::new()
            .stdout(logs.stream(LogSource::Stdout))
            .stderr(logs.stream(LogSource::Stderr))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        State {
            wasi,
            http: WasiHttpCtx::new(),
            outbound,
            table: ResourceTable::new(),
            memory: MemoryCap {
                limit_bytes: memory_limit_bytes,
            },
            guest: GuestState {
                function,
                config,
                gate,
                logs,
                published: Vec::new(),
                published_bytes: 0,
            },
        }
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

impl GuestState {
    /// Buffers `publish` if the budgets and the gate allow it.
    fn buffer(&mut self, publish: Publish) -> Result<(), String> {
        if self.published.len() >= MAX_PUBLISHES_PER_INVOCATION {
            return Err(format!(
                "publish limit reached: at most {MAX_PUBLISHES_PER_INVOCATION} publishes per invocation"
            ));
        }
        let footprint = publish.footprint();
        if footprint > MAX_PUBLISH_BYTES {
            return Err(format!(
                "publish too large: {footprint} bytes, at most {MAX_PUBLISH_BYTES}"
            ));
        }
        if self.published_bytes + footprint > MAX_PUBLISH_BYTES_PER_INVOCATION {
            return Err(format!(
                "publish limit reached: at most {MAX_PUBLISH_BYTES_PER_INVOCATION} bytes of publishes per invocation"
            ));
        }
        self.gate.check(&self.function, &publish)?;
        self.published_bytes += footprint;
        self.published.push(publish);
        Ok(())
    }
}

impl host::Host for GuestState {
    fn log(&mut self, level: wit::Level, message: String) {
        self.logs.lock().push(level.into(), LogSource::Log, message);
    }

    fn publish(
        &mut self,
        topic: String,
        body: wit::Body,
        attributes: Vec<wit::Attribute>,
        options: wit::PublishOptions,
    ) -> Result<(), String> {
        self.buffer(publish_request(topic, body, attributes, options))
    }

    fn config(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }
}

impl wit::Host for GuestState {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::types::Body;

    struct OnlyTopic(&'static str);

    impl PublishGate for OnlyTopic {
        fn check(&self, _function: &str, publish: &Publish) -> Result<(), String> {
            if publish.topic == self.0 {
                Ok(())
            } else {
                Err(format!("unknown topic {}", publish.topic))
            }
        }
    }

    fn guest(gate: Arc<dyn PublishGate>) -> GuestState {
        State::new(
            "f".into(),
            Arc::default(),
            gate,
            1 << 20,
            Outbound::none("f".into()),
        )
        .guest
    }

    fn publish(topic: &str, body_bytes: usize) -> Publish {
        Publish {
            topic: topic.into(),
            body: Body::Bytes(vec![0; body_bytes]),
            attributes: Vec::new(),
            group_id: None,
            dedup_id: None,
        }
    }

    #[test]
    fn the_gate_refuses_before_anything_is_buffered() {
        let mut guest = guest(Arc::new(OnlyTopic("known")));
        assert_eq!(guest.buffer(publish("known", 1)), Ok(()));
        assert_eq!(
            guest.buffer(publish("other", 1)),
            Err("unknown topic other".into())
        );
        assert_eq!(guest.published.len(), 1);
    }

    #[test]
    fn publishes_past_the_count_limit_are_refused() {
        let mut guest = guest(Arc::new(AcceptAll));
        for _ in 0..MAX_PUBLISHES_PER_INVOCATION {
            guest.buffer(publish("t", 0)).unwrap();
        }
        assert!(guest.buffer(publish("t", 0)).unwrap_err().contains("limit"));
        assert_eq!(guest.published.len(), MAX_PUBLISHES_PER_INVOCATION);
    }

    #[test]
    fn publishes_past_the_byte_limits_are_refused() {
        let mut guest = guest(Arc::new(AcceptAll));
        assert!(
            guest
                .buffer(publish("t", MAX_PUBLISH_BYTES))
                .unwrap_err()
                .contains("too large")
        );
        let big = MAX_PUBLISH_BYTES - 1;
        let fit = MAX_PUBLISH_BYTES_PER_INVOCATION / MAX_PUBLISH_BYTES;
        for _ in 0..fit {
            guest.buffer(publish("t", big)).unwrap();
        }
        assert!(
            guest
                .buffer(publish("t", big))
                .unwrap_err()
                .contains("bytes of publishes")
        );
    }
}
