//! The wasmtime engine shared by every function, and its epoch ticker.
//!
//! Configuration: the component model; epoch interruption, which bounds a
//! guest's run time; async execution, so a guest runs on a fiber that yields
//! to the tokio executor at every tick instead of holding a worker thread; and
//! the pooling instance allocator, which makes a per-invocation instance a
//! cheap reuse of a preallocated slot (copy-on-write memory images, no mmap
//! per call). One thread increments the epoch every [`EPOCH_TICK`].
//!
//! Async rather than synchronous guests on a bounded blocking pool, by
//! measurement (`cargo bench --bench runtime`): a round trip through tokio's
//! blocking pool alone costs more than a whole async invocation (instantiation,
//! call and teardown), and the fiber the async call runs on is reused from the
//! pool.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::Duration;

use wasmtime::{
    Config, Enabled, Engine, Inlining, InstanceAllocationStrategy, PoolingAllocationConfig,
};

/// Period of the epoch ticker: the granularity of deadlines and how often a
/// busy guest yields to the executor. At 1 ms a timeout is precise to the
/// millisecond the API speaks in, while the ticker costs one wake-up per
/// millisecond and the yield a few microseconds per millisecond of guest run
/// time (under 1%).
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Core module instances one component may hold in a pool slot. A Rust guest
/// built for `wasm32-wasip2` has its own module plus a few small shims.
const CORE_INSTANCES_PER_COMPONENT: u32 = 8;
/// Linear memories one component may hold (a Rust guest has one).
const MEMORIES_PER_COMPONENT: u32 = 2;
/// Tables one component may hold (a Rust guest and its shims use a few).
const TABLES_PER_COMPONENT: u32 = 4;
/// Wasm stack of a guest: enough for deep recursion in ordinary handlers,
/// small enough that a runaway recursion traps quickly.
const MAX_WASM_STACK: usize = 512 << 10;
/// Native stack of the fiber a guest runs on: the wasm stack plus room for
/// host calls made from it.
const ASYNC_STACK: usize = MAX_WASM_STACK + (1 << 20);

/// Bytes of each linear memory that are reset in place (only the pages an
/// invocation wrote, found with Linux's `PAGEMAP_SCAN`) instead of being
/// unmapped with `madvise`: the next invocation in that slot then takes no page
/// faults for them. 16 MiB covers the stack, data and heap a handler touches;
/// writes beyond it are reset with `madvise` as usual.
const MEMORY_KEEP_RESIDENT: usize = 16 << 20;
/// The same for tables (a handler's tables are a few KiB).
const TABLE_KEEP_RESIDENT: usize = 64 << 10;

/// Builds the engine. `max_instances` bounds the instances alive at once
/// across all functions (one per running invocation); `max_memory_bytes`
/// bounds the linear memory of one instance.
pub(crate) fn build(max_instances: u32, max_memory_bytes: usize) -> wasmtime::Result<Engine> {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(max_instances)
        .total_core_instances(max_instances.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .total_memories(max_instances.saturating_mul(MEMORIES_PER_COMPONENT))
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .total_tables(max_instances.saturating_mul(TABLES_PER_COMPONENT))
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .total_stacks(max_instances)
        .max_memory_size(max_memory_bytes);
    // Without PAGEMAP_SCAN, keeping memory resident means resetting all of
    // those bytes with memset on every invocation, which costs more than the
    // page faults it saves; only use it when dirty pages can be found.
    if PoolingAllocationConfig::is_pagemap_scan_available() {
        pool.pagemap_scan(Enabled::Yes)
            .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT)
            .table_keep_resident(TABLE_KEEP_RESIDENT);
    }

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        // Every call of a wasm function begins with an epoch check: inlining small
        // callees (what the guest's compiler left as calls, and the component glue)
        // removes those checks along with the calls. A loop calling a tiny function runs
        // as fast with the deadline as without it (`--bench runtime deadline`), where it
        // ran at half speed. Compiling takes about 3.5 times as long (the `email` guest
        // 45 -> 160 ms on two cores), once per module hash (disk cache).
        .compiler_inlining(Inlining::Yes)
        .max_wasm_stack(MAX_WASM_STACK)
        .async_stack_size(ASYNC_STACK)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config)
}

/// The thread that advances the engine's epoch. It stops when this handle is
/// dropped (the channel disconnects) or when the engine is gone.
#[derive(Debug)]
pub(crate) struct EpochTicker {
    _stop: mpsc::Sender<()>,
}

impl EpochTicker {
    pub(crate) fn start(engine: &Engine) -> std::io::Result<EpochTicker> {
        let (stop, stopped) = mpsc::channel::<()>();
        let engine = engine.weak();
        thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                loop {
                    match stopped.recv_timeout(EPOCH_TICK) {
                        Err(RecvTimeoutError::Timeout) => match engine.upgrade() {
                            Some(engine) => engine.increment_epoch(),
                            None => return,
                        },
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
            })?;
        Ok(EpochTicker { _stop: stop })
    }
}
