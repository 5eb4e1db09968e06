//! Test guest: panics on every event. Guests abort on panic, so each call ends
//! in a WebAssembly trap that the host must report as a failed attempt.

use switchyard_guest::{BatchResult, Error, Event, Guest};

struct Trap;

impl Guest for Trap {
    fn handle(event: Event) -> Result<(), Error> {
        panic!("trap guest refuses event {}", event.id);
    }

    fn handle_batch(events: Vec<Event>) -> BatchResult {
        panic!("trap guest refuses a batch of {}", events.len());
    }
}

switchyard_guest::export!(Trap);
