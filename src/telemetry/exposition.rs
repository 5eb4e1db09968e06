//! One scrape's metrics as families of labelled samples, written in the Prometheus text
//! format (version 0.0.4) by `prometheus-client`, which owns the format's details: the
//! `_total` suffix of counters, histogram buckets, escaping of label values.
//!
//! A scrape gathers its families first (the caller may await storage for gauges such as
//! a queue's depth), then encodes them in one pass.

use super::Latency;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

/// The `Content-Type` of what [`Scrape::encode`] writes.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// A sample's labels: names and values.
pub type Labels = Vec<(&'static str, String)>;

/// One sample's value.
#[derive(Debug)]
enum Value {
    Counter(u64),
    /// A counter of seconds.
    Seconds(f64),
    Gauge(i64),
    /// A gauge of seconds.
    Age(f64),
    Histogram(Latency),
}

/// A metric family: its name (a counter's without `_total`, which the format adds), its
/// help and its samples.
#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    samples: Vec<(Labels, Value)>,
}

/// The families of one scrape, in the order they were added.
#[derive(Debug, Default)]
pub struct Scrape {
    families: Vec<Family>,
}

impl Scrape {
    /// Adds a counter family; `name` without the `_total` suffix.
    pub fn counters(
        &mut self,
        name: &'static str,
        help: &'static str,
        samples: impl IntoIterator<Item = (Labels, u64)>,
    ) {
        self.family(name, help, MetricType::Counter, samples, Value::Counter);
    }

    /// Adds a counter family of seconds spent; `name` without the `_total` suffix.
    pub fn seconds(
        &mut self,
        name: &'static str,
        help: &'static str,
        samples: impl IntoIterator<Item = (Labels, f64)>,
    ) {
        self.family(name, help, MetricType::Counter, samples, Value::Seconds);
    }

    /// Adds a gauge family of counts.
    pub fn gauges(
        &mut self,
        name: &'static str,
        help: &'static str,
        samples: impl IntoIterator<Item = (Labels, i64)>,
    ) {
        self.family(name, help, MetricType::Gauge, samples, Value::Gauge);
    }

    /// Adds a gauge family of seconds (an age, a time left).
    pub fn ages(
        &mut self,
        name: &'static str,
        help: &'static str,
        samples: impl IntoIterator<Item = (Labels, f64)>,
    ) {
        self.family(name, help, MetricType::Gauge, samples, Value::Age);
    }

    /// Adds a histogram family of durations in seconds.
    pub fn histograms(
        &mut self,
        name: &'static str,
        help: &'static str,
        samples: impl IntoIterator<Item = (Labels, Latency)>,
    ) {
        self.family(name, help, MetricType::Histogram, samples, Value::Histogram);
    }

    fn family<T>(
        &mut self,
        name: &'static str,
        help: &'static str,
        kind: MetricType,
        samples: impl IntoIterator<Item = (Labels, T)>,
        value: fn(T) -> Value,
    ) {
        let samples: Vec<_> = samples.into_iter().map(|(l, v)| (l, value(v))).collect();
        // A family without samples says nothing; leaving it out keeps the page short on a
        // server with few resources.
        if !samples.is_empty() {
            self.families.push(Family {
                name,
                help,
                kind,
                samples,
            });
        }
    }

    /// The scrape in the Prometheus text format.
    pub fn encode(self) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(self));
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
            .expect("writing to a String cannot fail");
        out
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.families {
            let mut family = encoder.encode_descriptor(f.name, f.help, None, f.kind)?;
            for (labels, value) in &f.samples {
                let sample = family.encode_family(labels)?;
                match value {
                    Value::Counter(v) => ConstCounter::new(*v).encode(sample)?,
                    Value::Seconds(v) => ConstCounter::new(*v).encode(sample)?,
                    Value::Gauge(v) => ConstGauge::new(*v).encode(sample)?,
                    Value::Age(v) => ConstGauge::new(*v).encode(sample)?,
                    Value::Histogram(h) => h.histogram().encode(sample)?,
                }
            }
        }
        Ok(())
    }
}

/// Labels from pairs.
pub fn labels<const N: usize>(pairs: [(&'static str, &str); N]) -> Labels {
    pairs.into_iter().map(|(k, v)| (k, v.to_string())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn families_are_written_with_help_type_and_escaped_labels() {
        let mut s = Scrape::default();
        s.counters(
            "switchyard_topic_published",
            "Messages accepted",
            [(labels([("topic", "orders")]), 3)],
        );
        s.gauges(
            "switchyard_queue_messages",
            "Messages by state",
            [(labels([("queue", "a\"b"), ("state", "visible")]), 2)],
        );
        s.gauges("switchyard_empty", "Nothing", []);
        let h = Latency::default();
        h.observe(Duration::from_millis(3));
        s.histograms(
            "switchyard_publish_seconds",
            "Publish latency",
            [(labels([("topic", "orders")]), h)],
        );
        let text = s.encode();
        assert!(text.contains("# TYPE switchyard_topic_published_total counter\n"));
        assert!(text.contains("switchyard_topic_published_total{topic=\"orders\"} 3\n"));
        assert!(text.contains("switchyard_queue_messages{queue=\"a\\\"b\",state=\"visible\"} 2\n"));
        assert!(!text.contains("switchyard_empty"));
        assert!(
            text.contains("switchyard_publish_seconds_bucket{le=\"0.005\",topic=\"orders\"} 1\n")
                || text.contains(
                    "switchyard_publish_seconds_bucket{topic=\"orders\",le=\"0.005\"} 1\n"
                )
        );
        assert!(text.contains("switchyard_publish_seconds_count{topic=\"orders\"} 1\n"));
    }
}
