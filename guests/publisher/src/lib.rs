//! Test guest: publishes events, then succeeds or fails.
//!
//! The event body is JSON: `{"count": N, "fail": bool, "topic": "t", "hold_ms": M}`;
//! each field is optional and falls back to the function's `env` (`count`, `topic`)
//! and then to 1 event on topic `published`, success. With `hold_ms` the handler
//! first sleeps that long, keeping its instance busy. Event `i` (from 0) has the
//! body `"<event id>:<i>"` and attribute `seq` (Number) `i`. A refused publish
//! is logged and counted, and the handler goes on: tests use this to see the
//! host's per-invocation publish limits.

use serde_json::Value;
use switchyard_guest::{
    Attribute, AttributeValue, BatchResult, Body, Error, Event, Guest, PublishOptions, config,
    handle_each, logf, publish,
};

const DEFAULT_TOPIC: &str = "published";

struct Publisher;

impl Guest for Publisher {
    fn handle(event: Event) -> Result<(), Error> {
        let request: Value = event
            .text()
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or(Value::Null);
        if let Some(ms) = request["hold_ms"].as_u64() {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        let count = request["count"]
            .as_u64()
            .or_else(|| config("count").and_then(|text| text.parse().ok()))
            .unwrap_or(1);
        let topic = request["topic"]
            .as_str()
            .map(str::to_string)
            .or_else(|| config("topic"))
            .unwrap_or_else(|| DEFAULT_TOPIC.to_string());
        let mut refused = 0u64;
        for seq in 0..count {
            let attributes = vec![Attribute {
                name: "seq".to_string(),
                value: AttributeValue::Number(seq.to_string()),
            }];
            let body = Body::Text(format!("{}:{seq}", event.id));
            let options = PublishOptions {
                group_id: None,
                dedup_id: None,
            };
            if let Err(error) = publish(&topic, &body, &attributes, &options) {
                refused += 1;
                if refused == 1 {
                    logf!(Warn, "publish {seq} refused: {error}");
                }
            }
        }
        logf!(
            Info,
            "published {} of {count}, refused {refused}",
            count - refused
        );
        if request["fail"].as_bool().unwrap_or(false) {
            return Err(Error::Retryable(format!(
                "event {} asked to fail",
                event.id
            )));
        }
        Ok(())
    }

    fn handle_batch(events: Vec<Event>) -> BatchResult {
        handle_each(events, Self::handle)
    }
}

switchyard_guest::export!(Publisher);
