//! Test guest: fails the items whose body asks for it.
//!
//! A body `fail-retry` fails the item with a retryable error, `fail-fatal` with
//! a fatal one; any other body succeeds. The body may also be the JSON string
//! `"fail-retry"`, as a queue or stream carries a published string.

use switchyard_guest::{BatchResult, Error, Event, Guest, handle_each};

struct Batch;

impl Guest for Batch {
    fn handle(event: Event) -> Result<(), Error> {
        match event.text().map(|t| t.trim_matches('"')) {
            Some("fail-retry") => Err(Error::Retryable(format!("item {} failed", event.id))),
            Some("fail-fatal") => Err(Error::Fatal(format!("item {} is poison", event.id))),
            _ => Ok(()),
        }
    }

    fn handle_batch(events: Vec<Event>) -> BatchResult {
        handle_each(events, Self::handle)
    }
}

switchyard_guest::export!(Batch);
