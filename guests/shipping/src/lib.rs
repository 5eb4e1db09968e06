//! Example handler: prepares the shipment of an order.
//!
//! Expects an order event whose body is JSON with `order_id`, `country` and
//! `items`. The warehouse comes from the function's `env` (`warehouse`). The
//! label it would print goes to standard output, which the runtime turns into a
//! log line, as a program written for a terminal would do.

use serde_json::Value;
use switchyard_guest::{BatchResult, Error, Event, Guest, config, handle_each, logf};

/// Warehouse used when the function's `env` sets none.
const DEFAULT_WAREHOUSE: &str = "main";

struct Shipping;

impl Guest for Shipping {
    fn handle(event: Event) -> Result<(), Error> {
        let text = event
            .text()
            .ok_or_else(|| Error::Fatal(format!("event {} has a binary body", event.id)))?;
        let order: Value = serde_json::from_str(text)
            .map_err(|error| Error::Fatal(format!("event {} is not JSON: {error}", event.id)))?;
        let country = order["country"]
            .as_str()
            .ok_or_else(|| Error::Fatal(format!("order event {} has no country", event.id)))?;
        let items = order["items"].as_u64().unwrap_or(1);
        let order_id = order["order_id"].as_str().unwrap_or(&event.id);
        let warehouse = config("warehouse").unwrap_or_else(|| DEFAULT_WAREHOUSE.to_string());
        println!("label: order {order_id}, {items} item(s), {warehouse} -> {country}");
        logf!(Info, "shipment of order {order_id} prepared at {warehouse}");
        Ok(())
    }

    fn handle_batch(events: Vec<Event>) -> BatchResult {
        handle_each(events, Self::handle)
    }
}

switchyard_guest::export!(Shipping);
