//! Test guest: does a fixed amount of CPU work per event (`burn_turns` thousand
//! additions, env, default 1000, about a millisecond), then succeeds: a CPU-bound
//! handler of known cost, for the scaling benchmark. The work is counted, not timed, so
//! an invocation that waits for a core still costs the same CPU.

use std::hint::black_box;
use switchyard_guest::{BatchResult, Error, Event, Guest, config, handle_each};

struct Burn;

impl Guest for Burn {
    fn handle(_event: Event) -> Result<(), Error> {
        let turns: u64 = config("burn_turns")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        let mut sum = 0u64;
        for _ in 0..turns {
            // black_box keeps the loop from being optimised into something else.
            for _ in 0..1000 {
                sum = black_box(sum.wrapping_add(1));
            }
        }
        black_box(sum);
        Ok(())
    }

    fn handle_batch(events: Vec<Event>) -> BatchResult {
        handle_each(events, Self::handle)
    }
}

switchyard_guest::export!(Burn);
