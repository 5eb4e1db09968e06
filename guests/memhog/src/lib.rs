//! Test guest: allocates until memory runs out. The host must stop it at the
//! function's memory limit and report it as out of memory.

use std::hint::black_box;
use switchyard_guest::{BatchResult, Error, Event, Guest};

/// Grows in steps of 1 MiB: a few dozen steps reach any sensible limit.
const CHUNK_BYTES: usize = 1 << 20;

struct Memhog;

impl Guest for Memhog {
    fn handle(_event: Event) -> Result<(), Error> {
        hog()
    }

    fn handle_batch(_events: Vec<Event>) -> BatchResult {
        hog()
    }
}

fn hog() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // Touch the chunk so the allocation is real.
        hoard.push(black_box(vec![1u8; CHUNK_BYTES]));
    }
}

switchyard_guest::export!(Memhog);
