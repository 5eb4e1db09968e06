//! Test guest: grows its memory. The host must stop it at the function's memory
//! limit and report it as out of memory, and must contain a stack overflow.
//!
//! The event body says what to do:
//! - `grow:N`: grow the linear memory to exactly N bytes (a multiple of the
//!   64 KiB page) with `memory.grow`, and succeed; a grow the host refuses
//!   fails the call (the host traps it first);
//! - `recurse`: recurse without end, overflowing the WebAssembly call stack;
//! - `recurse-frames`: the same with a buffer in each frame, overflowing the
//!   stack the guest keeps in its linear memory first;
//! - anything else: allocate until memory runs out.

use std::hint::black_box;
use switchyard_guest::{BatchResult, Error, Event, Guest};

/// Grows in steps of 1 MiB: a few dozen steps reach any sensible limit.
const CHUNK_BYTES: usize = 1 << 20;
const PAGE_BYTES: usize = 64 << 10;

struct Memhog;

impl Guest for Memhog {
    fn handle(event: Event) -> Result<(), Error> {
        match event.text() {
            Some("recurse") => {
                black_box(recurse(black_box(1)));
                Ok(())
            }
            Some("recurse-frames") => {
                black_box(recurse_frames(black_box(1)));
                Ok(())
            }
            Some(text) if text.starts_with("grow:") => {
                let bytes: usize = text["grow:".len()..]
                    .parse()
                    .map_err(|_| Error::Fatal(format!("not a size: {text}")))?;
                grow_to(bytes)
            }
            _ => hog(),
        }
    }

    fn handle_batch(_events: Vec<Event>) -> BatchResult {
        hog()
    }
}

fn grow_to(bytes: usize) -> Result<(), Error> {
    let now = core::arch::wasm32::memory_size(0);
    let want = bytes / PAGE_BYTES;
    if want > now && core::arch::wasm32::memory_grow(0, want - now) == usize::MAX {
        return Err(Error::Retryable(format!(
            "memory.grow to {bytes} bytes failed"
        )));
    }
    Ok(())
}

/// The call's result goes through `black_box`, so the recursion cannot be
/// turned into a loop; the depth never reaches the test that would end it, which
/// only says the recursion may end.
fn recurse(depth: u64) -> u64 {
    if black_box(depth) == 0 {
        return 0;
    }
    black_box(recurse(black_box(depth + 1))) + 1
}

/// Each frame keeps a buffer live across the call, in the guest's own stack.
fn recurse_frames(depth: u64) -> u64 {
    if black_box(depth) == 0 {
        return 0;
    }
    let frame = black_box([depth; 64]);
    recurse_frames(depth + 1) + frame[(depth % 64) as usize]
}

fn hog() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // Touch the chunk so the allocation is real.
        hoard.push(black_box(vec![1u8; CHUNK_BYTES]));
    }
}

switchyard_guest::export!(Memhog);
