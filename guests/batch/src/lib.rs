//! Test guest: fails the items whose body asks for it.
//!
//! A body `fail-retry` fails the item with a retryable error, `fail-fatal` with
//! a fatal one; `trap` panics, failing the whole batch; `sleep-ms:N` succeeds after waiting N milliseconds (in a host call, as
//! a handler waiting for a service would); any other body succeeds. The body may also be
//! the JSON string `"fail-retry"`, as a queue or stream carries a published string.

use switchyard_guest::{BatchResult, Error, Event, Guest, handle_each};

struct Batch;

impl Guest for Batch {
    fn handle(event: Event) -> Result<(), Error> {
        match event.text().map(|t| t.trim_matches('"')) {
            Some("fail-retry") => Err(Error::Retryable(format!("item {} failed", event.id))),
            Some("fail-fatal") => Err(Error::Fatal(format!("item {} is poison", event.id))),
            Some("trap") => panic!("item {} traps", event.id),
            Some(text) if text.starts_with("sleep-ms:") => {
                let ms: u64 = text["sleep-ms:".len()..]
                    .parse()
                    .map_err(|_| Error::Fatal(format!("not a duration: {text}")))?;
                std::thread::sleep(std::time::Duration::from_millis(ms));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn handle_batch(events: Vec<Event>) -> BatchResult {
        handle_each(events, Self::handle)
    }
}

switchyard_guest::export!(Batch);
