//! The wasmtime engine shared by every function, and its epoch ticker.
//!
//! Configuration: the component model; epoch interruption, which bounds a
//! guest's run time; async execution, so a guest runs on a fiber that yields
//! to the tokio executor at every tick instead of holding a worker thread; and
//! the pooling instance allocator, which makes a per-invocation instance a
//! cheap reuse of a preallocated slot (copy-on-write memory images, no mmap
//! per call). One thread increments the epoch every [`EPOCH_TICK`] while
//! invocations run, and sleeps when there are none for a while, so an idle
//! server does not wake a core a thousand times a second.
//!
//! Async rather than synchronous guests on a bounded blocking pool, by
//! measurement (`cargo bench --bench runtime`): a round trip through tokio's
//! blocking pool alone costs more than a whole async invocation (instantiation,
//! call and teardown), and the fiber the async call runs on is reused from the
//! pool.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use wasmtime::{
    Config, Enabled, Engine, Inlining, InstanceAllocationStrategy, PoolingAllocationConfig,
};

/// Period of the epoch ticker: the granularity of deadlines and how often a
/// busy guest yields to the executor. At 1 ms a timeout is precise to the
/// millisecond the API speaks in, while the ticker costs one wake-up per
/// millisecond and the yield a few microseconds per millisecond of guest run
/// time (under 1%).
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// How long the ticker goes on after the last invocation ends before it
/// sleeps: under a steady stream of invocations it never has to be woken.
const TICKER_LINGER: Duration = Duration::from_millis(100);

/// Core module instances one component may hold in a pool slot. A Rust guest
/// built for `wasm32-wasip2` has its own module plus a few small shims; a Python
/// one (componentize-py) has the interpreter, its libc and adapters, 14 in all.
const CORE_INSTANCES_PER_COMPONENT: u32 = 32;
/// Linear memories one component may hold (a Rust guest has one).
const MEMORIES_PER_COMPONENT: u32 = 2;
/// Tables one component may hold (a Rust guest and its shims use a few, a
/// Python or JavaScript one more).
const TABLES_PER_COMPONENT: u32 = 16;
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

/// The threads components are compiled on, at the lowest CPU priority, so that compiling
/// a large component (tens of seconds for an interpreter's) takes only what requests and
/// invocations leave of the cores. wasmtime's parallel compilation runs on the rayon pool
/// it is called from: compiling inside [`rayon::ThreadPool::install`] keeps all of it on
/// these threads.
pub(crate) fn compile_pool() -> std::io::Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(thread::available_parallelism().map_or(1, |n| n.get()))
        .thread_name(|i| format!("wasm-compile-{i}"))
        .start_handler(|_| crate::priority::background())
        .build()
        .map_err(std::io::Error::other)
}

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

/// The thread that advances the engine's epoch while invocations run. It
/// stops when this handle is dropped or when the engine is gone.
#[derive(Debug)]
pub(crate) struct EpochTicker {
    state: Arc<TickerState>,
}

#[derive(Debug, Default)]
struct TickerState {
    /// Invocations holding a [`Ticking`] guard.
    running: AtomicUsize,
    /// Set while the ticker sleeps for want of invocations: only then does a
    /// new invocation take the lock to wake it.
    asleep: AtomicBool,
    /// Whether the handle was dropped.
    stopped: Mutex<bool>,
    wake: Condvar,
}

/// Keeps the epoch advancing while held: an invocation's deadline is checked at
/// each tick.
pub(crate) struct Ticking(Arc<TickerState>);

impl Drop for Ticking {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, SeqCst);
    }
}

impl EpochTicker {
    pub(crate) fn start(engine: &Engine) -> std::io::Result<EpochTicker> {
        let state = Arc::new(TickerState::default());
        let engine = engine.weak();
        let shared = state.clone();
        thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                run_ticker(&shared, || match engine.upgrade() {
                    Some(engine) => {
                        engine.increment_epoch();
                        true
                    }
                    None => false,
                })
            })?;
        Ok(EpochTicker { state })
    }

    /// Marks an invocation as running until the guard is dropped.
    pub(crate) fn running(&self) -> Ticking {
        let s = &*self.state;
        // Paired with the ticker's store of `asleep` and load of `running`
        // (both SeqCst): either it sees this invocation before sleeping, or this
        // sees it asleep and wakes it under the lock it sleeps with.
        s.running.fetch_add(1, SeqCst);
        if s.asleep.load(SeqCst) {
            let _stopped = s.stopped.lock().expect("never poisoned");
            s.wake.notify_one();
        }
        Ticking(self.state.clone())
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        *self.state.stopped.lock().expect("never poisoned") = true;
        self.state.wake.notify_one();
    }
}

/// Calls `tick` every [`EPOCH_TICK`] while invocations run, and for
/// [`TICKER_LINGER`] after the last one; returns when stopped or when `tick`
/// says the engine is gone.
fn run_ticker(s: &TickerState, mut tick: impl FnMut() -> bool) {
    let mut idle = Duration::ZERO;
    let mut stopped = s.stopped.lock().expect("never poisoned");
    loop {
        if s.running.load(SeqCst) > 0 {
            idle = Duration::ZERO;
        } else if idle >= TICKER_LINGER {
            s.asleep.store(true, SeqCst);
            while !*stopped && s.running.load(SeqCst) == 0 {
                stopped = s.wake.wait(stopped).expect("never poisoned");
            }
            s.asleep.store(false, SeqCst);
            idle = Duration::ZERO;
        }
        let next = Instant::now() + EPOCH_TICK;
        while !*stopped && Instant::now() < next {
            let left = next.saturating_duration_since(Instant::now());
            stopped = s
                .wake
                .wait_timeout(stopped, left)
                .expect("never poisoned")
                .0;
        }
        if *stopped || !tick() {
            return;
        }
        idle += EPOCH_TICK;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits up to a second for `s.asleep` to become `asleep`.
    fn settles(s: &TickerState, asleep: bool) -> bool {
        let until = Instant::now() + Duration::from_secs(1);
        while s.asleep.load(SeqCst) != asleep && Instant::now() < until {
            thread::sleep(EPOCH_TICK);
        }
        s.asleep.load(SeqCst) == asleep
    }

    #[test]
    fn the_ticker_sleeps_without_invocations_and_wakes_for_one() {
        let engine = Engine::new(Config::new().epoch_interruption(true)).unwrap();
        let ticker = EpochTicker::start(&engine).unwrap();
        let s = &*ticker.state;
        assert!(settles(s, true), "the ticker never went to sleep");

        // A guest spinning for seconds is stopped by its deadline: the epoch
        // moves again as soon as the invocation is marked running.
        let wasm = wat::parse_str(
            r#"(module (func (export "spin") (local $i i64)
                 (loop $l
                   (local.set $i (i64.add (local.get $i) (i64.const 1)))
                   (br_if $l (i64.lt_u (local.get $i) (i64.const 10000000000))))))"#,
        );
        let module = wasmtime::Module::new(&engine, wasm.unwrap()).unwrap();
        let mut store = wasmtime::Store::new(&engine, ());
        store.set_epoch_deadline(5);
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
        let spin = instance
            .get_typed_func::<(), ()>(&mut store, "spin")
            .unwrap();
        let guard = ticker.running();
        let trap = spin.call(&mut store, ()).unwrap_err();
        assert_eq!(
            trap.downcast_ref::<wasmtime::Trap>(),
            Some(&wasmtime::Trap::Interrupt)
        );
        assert!(!s.asleep.load(SeqCst));
        drop(guard);
        assert!(settles(s, true), "the ticker did not sleep again");
    }
}
