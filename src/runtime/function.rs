//! A loaded function and its invocations.
//!
//! Each invocation, single event or batch, runs the same way, top to bottom in
//! [`Function::execute`]: wait for a permit of the function (its concurrency)
//! and one of the runtime (its instance pool); create a fresh store with the
//! memory cap and the epoch deadline; instantiate from the pre-instantiated
//! component; call the export; then turn whatever happened into an outcome.
//! A trap, a timeout or exhausted memory ends that store only: the host and
//! every other invocation carry on.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::{Store, Trap, UpdateDeadline};

use super::Shared;
use super::bindings::{Handler, HandlerPre, wit};
use super::cache::Source;
use super::engine::Ticking;
use super::error::InvokeError;
use super::host::State;
use super::limits::{FunctionLimits, MAX_BATCH_EVENTS, MemoryLimitExceeded};
use super::outbound::Outbound;
use super::types::{Event, LogLine, Publish};
use crate::model::AllowedHosts;
use crate::telemetry::{FunctionMeter, LogEntry};

/// Extra wall-clock time, beyond the deadline, before an invocation blocked in
/// a host call (a guest sleeping, say) is abandoned. A running guest is
/// stopped by the epoch deadline first; this only catches guests that are not
/// running wasm code when the deadline passes.
const WALL_CLOCK_GRACE: Duration = Duration::from_millis(100);

/// The result of invoking a function with one event.
#[derive(Debug)]
pub struct Invocation {
    /// `Ok` when the handler accepted the event.
    pub outcome: Result<(), InvokeError>,
    /// Events the guest published, to be published by the caller. Always
    /// empty when the outcome is an error: a failed attempt publishes nothing.
    pub published: Vec<Publish>,
    /// Publishes the guest made that were discarded because it failed.
    pub discarded_publishes: usize,
    /// Log lines, in order (the `log` import, stdout and stderr).
    pub logs: Vec<LogLine>,
    /// Log lines past the per-invocation limit, dropped.
    pub logs_dropped: usize,
    /// Time from the call until the outcome, including waiting for a permit.
    pub duration: Duration,
}

/// The result of invoking a function with a batch of events.
#[derive(Debug)]
pub struct BatchInvocation {
    /// `Ok` with the events that failed (empty: all succeeded) when the guest
    /// returned a batch result; an error when the whole batch failed.
    pub outcome: Result<Vec<ItemFailure>, InvokeError>,
    /// Events the guest published, to be published by the caller. Kept when
    /// the guest returned a batch result, even with failed items (publishes
    /// cannot be attributed to items); empty when the whole batch failed.
    pub published: Vec<Publish>,
    /// Publishes discarded because the whole batch failed.
    pub discarded_publishes: usize,
    /// Log lines, in order.
    pub logs: Vec<LogLine>,
    /// Log lines past the per-invocation limit, dropped.
    pub logs_dropped: usize,
    /// Time from the call until the outcome, including waiting for a permit.
    pub duration: Duration,
}

/// One event of a batch that the handler reported as failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemFailure {
    /// Position of the event in the batch.
    pub index: usize,
    /// Its id.
    pub event_id: String,
    /// Whether delivering it again may succeed.
    pub retryable: bool,
    /// The handler's message.
    pub message: String,
}

/// One unit of a function's concurrency, taken before its invocation: a caller that must
/// not take work it cannot run at once (a queue source, which would otherwise receive a
/// batch and let its visibility timeout run while it waits) reserves a slot first and then
/// invokes in it.
#[derive(Debug)]
pub struct Slot(OwnedSemaphorePermit);

/// A component loaded as a function, ready to invoke. Cheap to share behind
/// an `Arc`; invocations run concurrently up to its concurrency limit.
pub struct Function {
    pub(crate) name: Arc<str>,
    pub(crate) limits: FunctionLimits,
    pub(crate) config: Arc<BTreeMap<String, String>>,
    /// Where its outbound HTTP requests may go.
    pub(crate) allowed_hosts: AllowedHosts,
    pub(crate) pre: HandlerPre<State>,
    pub(crate) permits: Arc<Semaphore>,
    pub(crate) source: Source,
    pub(crate) shared: Arc<Shared>,
    /// Its invocations' counters, kept across reloads under the same name.
    pub(crate) meter: Arc<FunctionMeter>,
}

impl fmt::Debug for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Function")
            .field("name", &self.name)
            .field("limits", &self.limits)
            .field("from_cache", &self.from_cache())
            .finish_non_exhaustive()
    }
}

/// What one run of the guest left behind.
struct Execution<R> {
    result: Result<R, InvokeError>,
    published: Vec<Publish>,
    logs: Vec<LogLine>,
    logs_dropped: usize,
    duration: Duration,
}

type CallFuture<'a, R> = Pin<Box<dyn Future<Output = wasmtime::Result<R>> + Send + 'a>>;

/// The error an invocation's store raises when its deadline passes.
#[derive(Debug, thiserror::Error)]
#[error("deadline exceeded")]
struct DeadlineExceeded;

impl Function {
    /// Lets its invocations send HTTP requests to `hosts` (none until this is called).
    pub fn allow_hosts(mut self, hosts: AllowedHosts) -> Function {
        self.allowed_hosts = hosts;
        self
    }

    /// The function's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its limits.
    pub fn limits(&self) -> FunctionLimits {
        self.limits
    }

    /// Whether the compiled component came from the disk cache.
    pub fn from_cache(&self) -> bool {
        self.source == Source::Cache
    }

    /// Waits for a free slot of the function's concurrency.
    pub async fn reserve(&self) -> Slot {
        Slot(
            self.permits
                .clone()
                .acquire_owned()
                .await
                .expect("function semaphore is never closed"),
        )
    }

    /// A free slot of the function's concurrency, if there is one now.
    pub fn try_reserve(&self) -> Option<Slot> {
        self.permits.clone().try_acquire_owned().ok().map(Slot)
    }

    /// Invokes the handler's `handle` export with one event.
    pub async fn invoke(&self, event: Event) -> Invocation {
        let message_id = event.id.clone();
        let event = wit::Event::from(event);
        let run = self
            .execute(None, move |handler, store| {
                Box::pin(async move { handler.call_handle(store, &event).await })
            })
            .await;
        let outcome = match run.result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(handler_error(error)),
            Err(error) => Err(error),
        };
        if let Err(error) = &outcome {
            tracing::debug!(function = %self.name, %message_id, %error, "invocation failed");
        }
        let error = outcome.as_ref().err();
        let failure = error.map(|e| (e.kind(), e.to_string()));
        self.record(failure, run.duration, &run.logs, Some(&message_id));
        let (published, discarded_publishes) = keep_if(outcome.is_ok(), run.published);
        Invocation {
            outcome,
            published,
            discarded_publishes,
            logs: run.logs,
            logs_dropped: run.logs_dropped,
            duration: run.duration,
        }
    }

    /// Invokes the handler's `handle-batch` export with a batch of events, in
    /// order. At most [`MAX_BATCH_EVENTS`] events fit in one call.
    pub async fn invoke_batch(&self, events: Vec<Event>) -> BatchInvocation {
        self.invoke_batch_in(None, events).await
    }

    /// As [`invoke_batch`](Self::invoke_batch), in a slot reserved beforehand (of this
    /// function: a slot of another is given back, and one of this function's taken).
    pub async fn invoke_batch_in(&self, slot: Option<Slot>, events: Vec<Event>) -> BatchInvocation {
        let started = Instant::now();
        if events.len() > MAX_BATCH_EVENTS {
            let error = InvokeError::BatchTooLarge {
                len: events.len(),
                max: MAX_BATCH_EVENTS,
            };
            let failure = Some((error.kind(), error.to_string()));
            self.record(failure, Duration::ZERO, &[], None);
            return BatchInvocation {
                outcome: Err(error),
                published: Vec::new(),
                discarded_publishes: 0,
                logs: Vec::new(),
                logs_dropped: 0,
                duration: started.elapsed(),
            };
        }
        let ids: Vec<String> = events.iter().map(|event| event.id.clone()).collect();
        let events: Vec<wit::Event> = events.into_iter().map(Into::into).collect();
        let run = self
            .execute(slot, move |handler, store| {
                Box::pin(async move { handler.call_handle_batch(store, &events).await })
            })
            .await;
        let outcome = run.result.and_then(|result| item_failures(result, &ids));
        match &outcome {
            Err(error) => {
                tracing::debug!(function = %self.name, events = ids.len(), %error, "batch failed")
            }
            Ok(failures) if !failures.is_empty() => {
                tracing::debug!(function = %self.name, events = ids.len(), failed = failures.len(), "batch items failed")
            }
            Ok(_) => {}
        }
        let failure = match &outcome {
            Err(error) => Some((error.kind(), error.to_string())),
            Ok(failures) if !failures.is_empty() => {
                let each: Vec<String> = failures
                    .iter()
                    .map(|f| format!("{} ({})", f.event_id, f.message))
                    .collect();
                let why = format!(
                    "{} of {} events failed: {}",
                    each.len(),
                    ids.len(),
                    each.join("; ")
                );
                Some(("handler", why))
            }
            Ok(_) => None,
        };
        self.record(failure, run.duration, &run.logs, None);
        let (published, discarded_publishes) = keep_if(outcome.is_ok(), run.published);
        BatchInvocation {
            outcome,
            published,
            discarded_publishes,
            logs: run.logs,
            logs_dropped: run.logs_dropped,
            duration: run.duration,
        }
    }

    /// Counts an invocation that ended, failed (with an error of a kind, and why) or
    /// not, and keeps what it logged, and why it failed, among the function's recent logs.
    fn record(
        &self,
        failure: Option<(&'static str, String)>,
        took: Duration,
        logs: &[LogLine],
        event: Option<&str>,
    ) {
        self.meter.invocations.inc();
        self.meter.duration_seconds.observe(took);
        let at_ms = crate::time::now_ms();
        let entry = |level, source, message| LogEntry {
            at_ms,
            level,
            source,
            message,
            event: event.map(str::to_string),
        };
        let lines = logs
            .iter()
            .map(|l| entry(l.level.name(), l.source.name(), l.message.clone()));
        let failed = failure.map(|(kind, why)| {
            self.meter.errors.get(&kind).inc();
            entry("error", "host", format!("invocation failed: {why}"))
        });
        self.meter.recent_logs.push(lines.chain(failed));
    }

    /// Invocations running now: its slots taken.
    pub fn running(&self) -> usize {
        self.limits.concurrency - self.permits.available_permits()
    }

    /// Its invocations' counters.
    pub fn meter(&self) -> &FunctionMeter {
        &self.meter
    }

    /// Runs `call` against a fresh instance, within the function's limits, in `slot` or
    /// in one it waits for.
    async fn execute<R: Send + 'static>(
        &self,
        slot: Option<Slot>,
        call: impl for<'a> FnOnce(&'a Handler, &'a mut Store<State>) -> CallFuture<'a, R>
        + Send
        + 'static,
    ) -> Execution<R> {
        let started = Instant::now();
        let slot = match slot {
            Some(slot) if Arc::ptr_eq(slot.0.semaphore(), &self.permits) => slot,
            _ => match self.try_reserve() {
                Some(slot) => slot,
                None => {
                    self.meter.throttles.inc();
                    self.reserve().await
                }
            },
        };
        // The semaphore is never closed, so acquiring cannot fail.
        let instance_permit = self
            .shared
            .instances
            .clone()
            .acquire_owned()
            .await
            .expect("instance semaphore is never closed");

        let deadline = Instant::now() + self.limits.timeout;
        let outbound = Outbound::new(
            self.name.clone(),
            self.allowed_hosts.clone(),
            self.shared.deny_private_endpoints,
            deadline,
        );
        let state = State::new(
            self.name.clone(),
            self.config.clone(),
            self.shared.gate.clone(),
            self.limits.memory_bytes,
            outbound,
        );
        let mut store = Store::new(&self.shared.engine, state);
        store.limiter(|state| &mut state.memory);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| on_tick(deadline));
        let mut admitted = Admitted {
            store,
            _permits: (slot, instance_permit, self.shared.ticker.running()),
        };

        // One future that owns everything the guest touches, so that it can move to the
        // background lane when it runs long.
        let pre = self.pre.clone();
        let limits = self.limits;
        let invocation = async move {
            let store = &mut admitted.store;
            let run = async {
                let handler = pre
                    .instantiate_async(&mut *store)
                    .await
                    .map_err(|error| classify(error, &limits, true))?;
                call(&handler, store)
                    .await
                    .map_err(|error| classify(error, &limits, false))
            };
            let result = tokio::time::timeout(limits.timeout + WALL_CLOCK_GRACE, run)
                .await
                .unwrap_or(Err(InvokeError::Timeout(limits.timeout)));
            (result, admitted)
        };
        let (result, admitted) = self.shared.lanes.run(invocation).await;

        let state = admitted.store.into_data();
        let (logs, logs_dropped) = state.guest.logs.take().finish();
        Execution {
            result,
            published: state.guest.published,
            logs,
            logs_dropped,
            duration: started.elapsed(),
        }
    }
}

/// An invocation's store and what admitted it. Fields drop in order: the store, and with
/// it the instance's slot in the pool, goes before the permits let another invocation in.
struct Admitted {
    store: Store<State>,
    _permits: (Slot, OwnedSemaphorePermit, Ticking),
}

/// What a running guest does at an epoch tick: stop once `deadline` has passed, else
/// yield, so a busy guest never holds an executor thread. The deadline is checked against
/// the clock rather than by counting ticks: a tick comes a little late whenever the
/// ticker's thread wakes late, and counted, a 1 s deadline took over 1.1 s.
fn on_tick(deadline: Instant) -> wasmtime::Result<UpdateDeadline> {
    if Instant::now() >= deadline {
        return Err(wasmtime::Error::new(DeadlineExceeded));
    }
    Ok(UpdateDeadline::Yield(1))
}

/// The publishes to keep and how many were discarded.
fn keep_if(success: bool, published: Vec<Publish>) -> (Vec<Publish>, usize) {
    if success {
        (published, 0)
    } else {
        (Vec::new(), published.len())
    }
}

fn handler_error(error: wit::Error) -> InvokeError {
    match error {
        wit::Error::Retryable(message) => InvokeError::Handler {
            retryable: true,
            message,
        },
        wit::Error::Fatal(message) => InvokeError::Handler {
            retryable: false,
            message,
        },
    }
}

/// The batch result as item failures, checked against the batch: an index
/// outside it fails the whole batch, a repeated index counts once.
fn item_failures(
    result: wit::BatchResult,
    ids: &[String],
) -> Result<Vec<ItemFailure>, InvokeError> {
    let mut seen = BTreeSet::new();
    let mut failures = Vec::with_capacity(result.failures.len());
    for failure in result.failures {
        let index = usize::try_from(failure.index).unwrap_or(usize::MAX);
        let Some(event_id) = ids.get(index) else {
            return Err(InvokeError::InvalidBatchResult(format!(
                "item {} reported as failed, but the batch has {} events",
                failure.index,
                ids.len()
            )));
        };
        if !seen.insert(index) {
            continue;
        }
        let (retryable, message) = match failure.error {
            wit::Error::Retryable(message) => (true, message),
            wit::Error::Fatal(message) => (false, message),
        };
        failures.push(ItemFailure {
            index,
            event_id: event_id.clone(),
            retryable,
            message,
        });
    }
    failures.sort_by_key(|failure| failure.index);
    Ok(failures)
}

/// Turns a wasmtime error from instantiating or calling the guest into the
/// outcome it means.
fn classify(error: wasmtime::Error, limits: &FunctionLimits, instantiating: bool) -> InvokeError {
    if error.is::<DeadlineExceeded>() {
        return InvokeError::Timeout(limits.timeout);
    }
    if let Some(exceeded) = error.downcast_ref::<MemoryLimitExceeded>() {
        return InvokeError::OutOfMemory {
            limit_bytes: exceeded.limit_bytes,
        };
    }
    if let Some(exit) = error.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return InvokeError::Exit(exit.0);
    }
    if let Some(trap) = error.downcast_ref::<Trap>() {
        return match trap {
            Trap::Interrupt => InvokeError::Timeout(limits.timeout),
            trap => InvokeError::Trap(trap.to_string()),
        };
    }
    let message = error
        .chain()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ");
    if instantiating {
        InvokeError::Instantiate(message)
    } else {
        InvokeError::Trap(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("e{i}")).collect()
    }

    fn failure(index: u32, error: wit::Error) -> wit::ItemFailure {
        wit::ItemFailure { index, error }
    }

    #[test]
    fn a_tick_ends_the_call_once_its_deadline_has_passed_on_the_clock() {
        // However few ticks came before it.
        let Err(ended) = on_tick(Instant::now()) else {
            panic!("a deadline that has passed must end the call");
        };
        assert!(ended.downcast_ref::<DeadlineExceeded>().is_some());
        let later = Instant::now() + Duration::from_secs(3600);
        assert!(matches!(on_tick(later), Ok(UpdateDeadline::Yield(1))));
    }

    #[test]
    fn item_failures_carry_the_event_id_in_index_order_once() {
        let result = wit::BatchResult {
            failures: vec![
                failure(2, wit::Error::Fatal("poison".into())),
                failure(0, wit::Error::Retryable("busy".into())),
                failure(2, wit::Error::Retryable("again".into())),
            ],
        };
        let failures = item_failures(result, &ids(3)).unwrap();
        assert_eq!(
            failures,
            [
                ItemFailure {
                    index: 0,
                    event_id: "e0".into(),
                    retryable: true,
                    message: "busy".into()
                },
                ItemFailure {
                    index: 2,
                    event_id: "e2".into(),
                    retryable: false,
                    message: "poison".into()
                },
            ]
        );
    }

    #[test]
    fn an_index_outside_the_batch_fails_the_whole_batch() {
        let result = wit::BatchResult {
            failures: vec![failure(3, wit::Error::Fatal("x".into()))],
        };
        assert!(matches!(
            item_failures(result, &ids(3)),
            Err(InvokeError::InvalidBatchResult(_))
        ));
    }

    #[test]
    fn failed_attempts_discard_their_publishes() {
        let publish = Publish {
            topic: "t".into(),
            body: super::super::types::Body::Text("x".into()),
            attributes: Vec::new(),
            group_id: None,
            dedup_id: None,
        };
        assert_eq!(
            keep_if(false, vec![publish.clone(), publish.clone()]),
            (Vec::new(), 2)
        );
        assert_eq!(keep_if(true, vec![publish.clone()]), (vec![publish], 0));
    }

    #[test]
    fn errors_are_classified_by_their_cause() {
        let limits = FunctionLimits::default();
        let timeout = classify(wasmtime::Error::new(DeadlineExceeded), &limits, false);
        assert_eq!(timeout, InvokeError::Timeout(limits.timeout));
        let oom = wasmtime::Error::new(MemoryLimitExceeded {
            limit_bytes: 7,
            desired_bytes: 8,
        })
        .context("while growing memory");
        assert_eq!(
            classify(oom, &limits, false),
            InvokeError::OutOfMemory { limit_bytes: 7 }
        );
        let trap = classify(
            wasmtime::Error::new(Trap::UnreachableCodeReached),
            &limits,
            false,
        );
        assert!(matches!(trap, InvokeError::Trap(message) if message.contains("unreachable")));
        let other = classify(wasmtime::Error::msg("no slot"), &limits, true);
        assert_eq!(other, InvokeError::Instantiate("no slot".into()));
    }
}
