//! Test guest: never returns. The host must end the call at its deadline.
//!
//! With the body `sleep` it blocks in a host call (a WASI sleep of an hour)
//! instead of running wasm code, which the epoch deadline alone cannot
//! interrupt; any other body spins in a loop.

use std::hint::black_box;
use std::time::Duration;
use switchyard_guest::{BatchResult, Error, Event, Guest};

/// Longer than any deadline a function can have.
const SLEEP: Duration = Duration::from_secs(3600);

struct Spin;

impl Guest for Spin {
    fn handle(event: Event) -> Result<(), Error> {
        if event.text() == Some("sleep") {
            std::thread::sleep(SLEEP);
        }
        spin()
    }

    fn handle_batch(_events: Vec<Event>) -> BatchResult {
        spin()
    }
}

fn spin() -> ! {
    let mut turns = 0u64;
    loop {
        // black_box keeps the loop from being optimised into something else.
        turns = black_box(turns.wrapping_add(1));
    }
}

switchyard_guest::export!(Spin);
