//! Spans of an event's way, exported over OTLP/HTTP with the OpenTelemetry SDK when the
//! server is given an endpoint (`--otlp-endpoint`, or `OTEL_EXPORTER_OTLP_ENDPOINT`):
//! a publish (with its match and store), each delivery attempt, each invocation. A span's
//! parent comes from the message's `traceparent` attribute, and what a span hands on
//! (the stored message, a webhook's header, a function's publishes) names the span, so
//! one trace follows an event through every hop. Without an endpoint there is no tracer
//! and every call here is a check of an `Option`.

use opentelemetry::Context;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    Link, Span as _, SpanContext, SpanKind, Status, TraceContextExt as _, Tracer as _,
    TracerProvider as _,
};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use std::borrow::Cow;
use std::collections::HashMap;

pub use opentelemetry::KeyValue;
pub use opentelemetry::trace::SpanKind as Kind;

/// The exporter and the tracer its spans start from.
pub struct Tracing {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl std::fmt::Debug for Tracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracing").finish_non_exhaustive()
    }
}

impl Tracing {
    /// Exports spans in batches to the OTLP/HTTP collector at `endpoint` (its base URL;
    /// `/v1/traces` is appended).
    pub fn otlp(endpoint: &str) -> Result<Tracing, String> {
        let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        let exporter = SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url)
            .build()
            .map_err(|e| format!("cannot export spans to {endpoint}: {e}"))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name("switchyard").build())
            .build();
        let tracer = provider.tracer("switchyard");
        Ok(Tracing { provider, tracer })
    }

    /// Starts a span, a child of the trace context `parent` (a `traceparent` value, with
    /// its `tracestate`) or the root of a new trace.
    pub fn start(
        &self,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        parent: Option<(&str, Option<&str>)>,
        attributes: Vec<KeyValue>,
    ) -> Span {
        let cx = parent.map_or_else(Context::new, |(p, s)| remote(p, s));
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &cx);
        Span(span)
    }

    /// Starts the root of a new trace, linked to the trace contexts `links` (each a
    /// `traceparent` with its `tracestate`): the span of work done for many messages at
    /// once, each in a trace of its own.
    pub fn start_linked<'a>(
        &self,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        links: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
        attributes: Vec<KeyValue>,
    ) -> Span {
        let links = links
            .into_iter()
            .map(|(p, s)| remote(p, s).span().span_context().clone())
            .filter(SpanContext::is_valid)
            .map(Link::with_context)
            .collect();
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .with_links(links)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &Context::new());
        Span(span)
    }

    /// Starts a span inside `parent`.
    pub fn child(&self, parent: &Span, name: impl Into<Cow<'static, str>>) -> Span {
        let cx = Context::new().with_remote_span_context(parent.0.span_context().clone());
        let span = self
            .tracer
            .span_builder(name)
            .with_kind(SpanKind::Internal)
            .start_with_context(&self.tracer, &cx);
        Span(span)
    }

    /// Sends the spans not yet exported; called at shutdown.
    pub fn flush(&self) {
        if let Err(e) = self.provider.force_flush() {
            tracing::warn!(error = %e, "exporting the last spans failed");
        }
    }
}

/// A span being recorded; it ends when dropped or [`Span::end`]ed.
pub struct Span(opentelemetry_sdk::trace::Span);

impl Span {
    /// The span as a `traceparent`, for what it hands on.
    pub fn traceparent(&self) -> String {
        traceparent(self.0.span_context())
    }

    /// Marks the span failed, saying why.
    pub fn fail(&mut self, why: impl Into<Cow<'static, str>>) {
        self.0.set_status(Status::error(why));
    }

    pub fn end(mut self) {
        self.0.end();
    }
}

/// The context of a span of another process, from its `traceparent` and `tracestate`.
fn remote(traceparent: &str, tracestate: Option<&str>) -> Context {
    let mut carrier = HashMap::from([("traceparent".to_string(), traceparent.to_string())]);
    if let Some(state) = tracestate {
        carrier.insert("tracestate".to_string(), state.to_string());
    }
    TraceContextPropagator::new().extract(&carrier)
}

fn traceparent(cx: &SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        cx.trace_id(),
        cx.span_id(),
        cx.trace_flags().to_u8()
    )
}
