//! Test guest: never returns. The host must end the call at its deadline.

use std::hint::black_box;
use switchyard_guest::{BatchResult, Error, Event, Guest};

struct Spin;

impl Guest for Spin {
    fn handle(_event: Event) -> Result<(), Error> {
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
