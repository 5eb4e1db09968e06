//! Example handler: confirms an order to its customer.
//!
//! Expects an order event whose body is JSON with `order_id` and
//! `customer_email`. The function's `env` gives the sender address (`sender`)
//! and the mail service (`mail_url`): the mail is POSTed there as
//! `{"message": {"from", "to", "subject", "text"}}`, the shape of Switchyard's
//! own send-to-queue API, so that a queue can catch the mails of a local run. A
//! service that does not answer 2xx fails the event, to be retried. Without a
//! `mail_url` the handler only logs the mail.

use serde_json::{Value, json};
use switchyard_guest::{BatchResult, Error, Event, Guest, config, handle_each, http, logf};

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
        if let Some(url) = config("mail_url") {
            let mail = json!({"message": {
                "from": sender,
                "to": recipient,
                "subject": format!("Order {order_id} is confirmed"),
                "text": format!("Thank you for your order {order_id}."),
            }});
            let answer = http::post(
                &url,
                &[("content-type", "application/json")],
                mail.to_string().as_bytes(),
            )
            .map_err(|e| Error::Retryable(format!("sending the mail: POST {e}")))?;
            if !answer.is_success() {
                return Err(Error::Retryable(format!(
                    "the mail service at {url} answered {}",
                    answer.status
                )));
            }
        }
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
