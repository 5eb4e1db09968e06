//! Example handler: confirms an order to its customer.
//!
//! Expects an order event whose body is JSON with `order_id` and
//! `customer_email`. The sender address comes from the function's `env`
//! (`sender`). Sending itself is out of scope for an example: the handler logs
//! the message it would send.

use serde_json::Value;
use switchyard_guest::{BatchResult, Error, Event, Guest, config, handle_each, logf};

/// Sender used when the function's `env` sets none.
const DEFAULT_SENDER: &str = "orders@example.com";

struct Email;

impl Guest for Email {
    fn handle(event: Event) -> Result<(), Error> {
        let order = parse_order(&event)?;
        let recipient = order["customer_email"].as_str().ok_or_else(|| {
            Error::Fatal(format!("order event {} has no customer_email", event.id))
        })?;
        let order_id = order["order_id"].as_str().unwrap_or(&event.id);
        let sender = config("sender").unwrap_or_else(|| DEFAULT_SENDER.to_string());
        logf!(
            Info,
            "email from {sender} to {recipient}: order {order_id} is confirmed"
        );
        Ok(())
    }

    fn handle_batch(events: Vec<Event>) -> BatchResult {
        handle_each(events, Self::handle)
    }
}

/// The order in the event body; an unreadable body can never succeed, so it is fatal.
fn parse_order(event: &Event) -> Result<Value, Error> {
    let text = event
        .text()
        .ok_or_else(|| Error::Fatal(format!("event {} has a binary body", event.id)))?;
    serde_json::from_str(text)
        .map_err(|error| Error::Fatal(format!("event {} is not JSON: {error}", event.id)))
}

switchyard_guest::export!(Email);
