//! A fixed-rate pacer for the open-loop latency phases.
//!
//! The ticks come from a thread of their own that sleeps until each one is due:
//! `std::thread::sleep` wakes within tens of microseconds, where tokio's timer wakes on
//! whole milliseconds and so would send each millisecond's requests in one burst, which
//! the server would then have to queue. Evenly spaced requests are what "N events a
//! second" means.

use std::time::{Duration, Instant};

/// Ticks `total` times, `rate` a second; each tick carries the instant it was due, so the
/// receiver can tell how late it came (the pacer's wake-up and the hop to the receiving
/// runtime: this tool's own error).
pub fn pace(rate: u64, total: u64) -> tokio::sync::mpsc::UnboundedReceiver<Instant> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let period = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
    std::thread::Builder::new()
        .name("pacer".into())
        .spawn(move || {
            let started = Instant::now();
            for n in 0..total {
                let due = started + period.mul_f64(n as f64);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                if tx.send(due).is_err() {
                    break;
                }
            }
        })
        .expect("spawning a thread only fails when the OS is out of threads");
    rx
}
