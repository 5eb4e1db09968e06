//! Where invocations run: a fast lane for the short ones, a background lane for the long.
//!
//! An invocation starts on its caller's executor, which also serves requests, publishes and
//! deliveries. Nearly every handler answers within a millisecond and never leaves it. One
//! that has held that executor for [`FOREGROUND_BUDGET`] of running time moves, for the
//! rest of its run, to the background lane: executor threads of its own at the lowest CPU
//! priority ([`crate::priority`]). There it runs at full speed while cores are free and
//! gives way at once to requests and short invocations when they are not, so a function
//! stuck in a loop at its full concurrency does not slow down every other function and the
//! API with it (`cargo bench --bench isolation`). A guest that waits (in a host call, say)
//! does not hold a thread, and does not move.
//!
//! Moving is possible because an invocation is one `'static` future, which owns its store:
//! it is polled here until its budget is spent and then handed, pending, to a task on the
//! background executor. A future that moved is cancelled when its caller stops waiting.

use std::future::{Future, poll_fn};
use std::sync::OnceLock;
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, Runtime};
use tokio::task::JoinHandle;

use super::engine::EPOCH_TICK;

/// Running time on the caller's executor after which an invocation moves to the
/// background lane: one epoch tick, the time a guest runs before it first yields. What
/// needs more than that is not a handler answering at once, and every invocation that
/// starts still spends up to this long with the short ones.
pub(crate) const FOREGROUND_BUDGET: Duration = EPOCH_TICK;

/// The background lane, started the first time an invocation needs it.
#[derive(Debug, Default)]
pub(crate) struct Lanes {
    background: OnceLock<Option<Runtime>>,
}

impl Lanes {
    /// Runs `invocation` to completion: on the caller's executor while it fits the budget,
    /// on the background lane after.
    pub(crate) async fn run<F>(&self, invocation: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let mut invocation = Box::pin(invocation);
        let mut budget = FOREGROUND_BUDGET;
        let finished = poll_fn(|cx| {
            let began = Instant::now();
            if let Poll::Ready(output) = invocation.as_mut().poll(cx) {
                return Poll::Ready(Some(output));
            }
            match budget.checked_sub(began.elapsed()) {
                Some(left) if !left.is_zero() => {
                    budget = left;
                    Poll::Pending
                }
                _ => Poll::Ready(None),
            }
        })
        .await;
        if let Some(output) = finished {
            return output;
        }
        let Some(background) = self.background() else {
            return invocation.await;
        };
        let mut task = CancelOnDrop(background.spawn(invocation));
        match (&mut task.0).await {
            Ok(output) => output,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            // Only a runtime being shut down cancels the task, and the lane lives as long
            // as the functions that use it.
            Err(error) => unreachable!("the background lane dropped an invocation: {error}"),
        }
    }

    /// The background executor, or `None` when its threads cannot be started (the
    /// invocation then stays where it is).
    fn background(&self) -> Option<&Handle> {
        self.background
            .get_or_init(|| {
                let threads = std::thread::available_parallelism().map_or(1, usize::from);
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(threads)
                    .thread_name("wasm-background")
                    .on_thread_start(crate::priority::background)
                    .enable_all()
                    .build()
                    .inspect_err(|error| {
                        tracing::warn!(%error, "cannot start the background lane for long invocations");
                    })
                    .ok()
            })
            .as_ref()
            .map(Runtime::handle)
    }
}

impl Drop for Lanes {
    fn drop(&mut self) {
        // Dropping a runtime blocks until its threads stop, which may not happen on an
        // executor thread; the last function may well be dropped on one.
        if let Some(Some(runtime)) = self.background.take() {
            runtime.shutdown_background();
        }
    }
}

/// Cancels a moved invocation when its caller stops waiting for it.
struct CancelOnDrop<T>(JoinHandle<T>);

impl<T> Drop for CancelOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A future that busies its thread for `step` at each poll, `steps` times, and
    /// reports the name of the thread that finished it.
    async fn busy(steps: u32, step: Duration) -> String {
        for _ in 0..steps {
            let until = Instant::now() + step;
            while Instant::now() < until {
                std::hint::spin_loop();
            }
            tokio::task::yield_now().await;
        }
        thread_name()
    }

    fn thread_name() -> String {
        std::thread::current()
            .name()
            .unwrap_or_default()
            .to_string()
    }

    #[tokio::test]
    async fn an_invocation_that_answers_or_waits_stays_where_it_started() {
        let lanes = Lanes::default();
        assert_ne!(lanes.run(async { thread_name() }).await, "wasm-background");
        let waits = lanes.run(async {
            for _ in 0..3 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            thread_name()
        });
        assert_ne!(waits.await, "wasm-background");
        assert!(
            lanes.background.get().is_none(),
            "the background lane is not even started"
        );
    }

    #[tokio::test]
    async fn a_long_invocation_moves_to_the_background_lane_at_low_priority() {
        let lanes = Lanes::default();
        let thread = lanes.run(busy(20, Duration::from_millis(1))).await;
        assert_eq!(thread, "wasm-background");
        let nice = lanes
            .run(async {
                busy(5, Duration::from_millis(1)).await;
                // SAFETY: a plain system call about the calling thread.
                unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
            })
            .await;
        assert_eq!(nice, 19, "the background lane runs at the lowest priority");
    }

    #[tokio::test]
    async fn a_moved_invocation_is_cancelled_with_its_caller() {
        let lanes = Lanes::default();
        // The invocation holds `alive`: its receiver hears of it when the future is dropped.
        let (alive, dropped) = tokio::sync::oneshot::channel::<()>();
        let (moved_tx, moved) = tokio::sync::oneshot::channel();
        let run = lanes.run(async move {
            let _alive = alive;
            let _ = moved_tx.send(busy(5, Duration::from_millis(1)).await);
            std::future::pending::<()>().await
        });
        let thread = tokio::select! {
            () = run => unreachable!("the invocation never ends"),
            thread = moved => thread.unwrap(),
        };
        assert_eq!(thread, "wasm-background");
        // The select dropped the caller's future, which aborts the task.
        tokio::time::timeout(Duration::from_secs(10), dropped)
            .await
            .expect("the moved invocation was not cancelled")
            .expect_err("nothing is ever sent");
    }
}
