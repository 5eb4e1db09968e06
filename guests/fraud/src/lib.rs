//! Example handler: flags suspicious orders.
//!
//! Reads an order event (JSON body with `order_id`, `total` and `country`) and,
//! when the total is above the configured maximum or the country is blocked,
//! publishes an `order_flagged` event saying why. Configuration (`env`):
//! - `max_total`: the largest total that is not suspicious (default 1000);
//! - `blocked_countries`: comma-separated country codes (default none);
//! - `flagged_topic`: where to publish (default `order_flagged`).

use serde_json::{Value, json};
use switchyard_guest::{
    Attribute, AttributeValue, BatchResult, Body, Error, Event, Guest, PublishOptions, config,
    handle_each, logf, publish,
};

const DEFAULT_MAX_TOTAL: f64 = 1000.0;
const DEFAULT_FLAGGED_TOPIC: &str = "order_flagged";

struct Fraud;

impl Guest for Fraud {
    fn handle(event: Event) -> Result<(), Error> {
        let text = event
            .text()
            .ok_or_else(|| Error::Fatal(format!("event {} has a binary body", event.id)))?;
        let order: Value = serde_json::from_str(text)
            .map_err(|error| Error::Fatal(format!("event {} is not JSON: {error}", event.id)))?;
        let order_id = order["order_id"].as_str().unwrap_or(&event.id).to_string();
        let Some(reason) = suspicion(&order)? else {
            logf!(Debug, "order {order_id} looks fine");
            return Ok(());
        };
        let topic = config("flagged_topic").unwrap_or_else(|| DEFAULT_FLAGGED_TOPIC.to_string());
        let flagged = json!({ "order_id": order_id, "reason": reason, "order": order });
        let attributes = vec![Attribute {
            name: "reason".to_string(),
            value: AttributeValue::String(reason.clone()),
        }];
        // A publish refused now (unknown topic, limits) would be refused again:
        // retrying cannot help, so the event goes to the dead-letter queue.
        publish(
            &topic,
            &Body::Text(flagged.to_string()),
            &attributes,
            &PublishOptions {
                group_id: None,
                dedup_id: None,
            },
        )
        .map_err(|error| Error::Fatal(format!("cannot publish to {topic}: {error}")))?;
        logf!(Warn, "order {order_id} flagged: {reason}");
        Ok(())
    }

    fn handle_batch(events: Vec<Event>) -> BatchResult {
        handle_each(events, Self::handle)
    }
}

/// Why `order` is suspicious, if it is.
fn suspicion(order: &Value) -> Result<Option<String>, Error> {
    let max_total = match config("max_total") {
        Some(text) => text
            .parse::<f64>()
            .map_err(|_| Error::Fatal(format!("env max_total is not a number: {text}")))?,
        None => DEFAULT_MAX_TOTAL,
    };
    let total = order["total"].as_f64().unwrap_or(0.0);
    if total > max_total {
        return Ok(Some(format!("total {total} is above {max_total}")));
    }
    let country = order["country"].as_str().unwrap_or_default();
    let blocked = config("blocked_countries").unwrap_or_default();
    if blocked
        .split(',')
        .map(str::trim)
        .any(|code| !code.is_empty() && code == country)
    {
        return Ok(Some(format!("country {country} is blocked")));
    }
    Ok(None)
}

switchyard_guest::export!(Fraud);
