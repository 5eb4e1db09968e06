//! What the router tells its operators: counters and latency histograms per resource
//! ([`Telemetry`]), kept by the operations that do the work, and their exposition in the
//! Prometheus text format ([`exposition`]), read on each scrape of `/metrics`; and each
//! function's latest log lines ([`RecentLogs`]), which the console shows; and the W3C
//! trace context a publish carries to its deliveries ([`trace`]).
//!
//! A leaf like [`crate::model`]: every layer may count into it, it imports none of them.

pub mod exposition;
mod meters;
pub mod spans;
pub mod trace;

pub use meters::{
    Count, FunctionMeter, Latency, LogEntry, Meters, QueueMeter, RECENT_LOGS, RecentLogs,
    StreamMeter, SubscriptionMeter, Telemetry, TopicMeter,
};
