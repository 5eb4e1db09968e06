//! Test guest: keeps the CPU busy for `burn_us` microseconds of wall-clock time per
//! event (env, default 1000), then succeeds: a CPU-bound handler of known cost, for the
//! scaling benchmark.

use std::hint::black_box;
use std::time::{Duration, Instant};
use switchyard_guest::{BatchResult, Error, Event, Guest, config, handle_each};

struct Burn;

impl Guest for Burn {
    fn handle(_event: Event) -> Result<(), Error> {
        let us = config("burn_us")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        let until = Instant::now() + Duration::from_micros(us);
        let mut turns = 0u64;
        while Instant::now() < until {
            // black_box keeps the loop from being optimised into something else.
            for _ in 0..1000 {
                turns = black_box(turns.wrapping_add(1));
            }
        }
        Ok(())
    }

    fn handle_batch(events: Vec<Event>) -> BatchResult {
        handle_each(events, Self::handle)
    }
}

switchyard_guest::export!(Burn);
