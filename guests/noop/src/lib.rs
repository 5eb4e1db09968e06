//! Test guest: accepts every event and does nothing, so that measuring it
//! measures the runtime's own cost per invocation and per event.

use switchyard_guest::{BatchResult, Error, Event, Guest};

struct Noop;

impl Guest for Noop {
    fn handle(_event: Event) -> Result<(), Error> {
        Ok(())
    }

    fn handle_batch(_events: Vec<Event>) -> BatchResult {
        BatchResult {
            failures: Vec::new(),
        }
    }
}

switchyard_guest::export!(Noop);
