//! Function sources (Lambda's event source mappings): a function consuming a queue or a
//! stream consumer group in batches.
//!
//! Queue: receive up to the batch size (waiting up to the batch window to fill it),
//! invoke, acknowledge what succeeded; failed items stay and come back after the queue's
//! visibility timeout, so the queue's redrive policy handles poison messages.
//! Stream: poll as the group's member, invoke, checkpoint what succeeded; on a partial
//! failure a shard resumes from its lowest failed record, on a whole failure the batch is
//! read again, with a growing pause between attempts.

use crate::model::{SourceSpec, StartPosition};
use crate::router::{CheckpointRequest, PollRequest, Router, SequenceArg};
use crate::runtime::{Body, Event, Function};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long one receive or poll waits for the first message.
const POLL_WAIT: Duration = Duration::from_secs(20);
/// Pause after a failed stream batch, doubling up to `MAX_RETRY_PAUSE`.
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(500);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(30);
/// Pause when the source or the function is missing, before looking again.
const MISSING_PAUSE: Duration = Duration::from_secs(1);
/// A queue receive returns at most this many messages.
const RECEIVE_MAX: usize = 10;

/// The running sources, by function.
pub struct Sources {
    router: OnceLock<Weak<Router>>,
    running: Mutex<HashMap<String, CancellationToken>>,
    shutdown: CancellationToken,
}

impl Sources {
    pub fn new(shutdown: CancellationToken) -> Self {
        Self {
            router: OnceLock::new(),
            running: Mutex::default(),
            shutdown,
        }
    }

    pub fn attach(&self, router: Weak<Router>) {
        let _ = self.router.set(router);
    }

    /// Stops a function's sources and starts `sources` in their place.
    pub fn restart(&self, function: &str, sources: &[SourceSpec]) {
        let stop = self.shutdown.child_token();
        if let Some(old) = self
            .running
            .lock()
            .expect("never poisoned")
            .insert(function.to_string(), stop.clone())
        {
            old.cancel();
        }
        let Some(router) = self.router.get().cloned() else {
            return;
        };
        for s in sources {
            let (router, stop, function, s) = (
                router.clone(),
                stop.clone(),
                function.to_string(),
                s.clone(),
            );
            match s {
                SourceSpec::Queue {
                    queue,
                    batch_size,
                    batch_window_ms,
                } => {
                    tokio::spawn(queue_source(
                        router,
                        function,
                        queue,
                        batch_size,
                        Duration::from_millis(batch_window_ms),
                        stop,
                    ));
                }
                SourceSpec::Stream {
                    stream,
                    group,
                    batch_size,
                    starting_position,
                } => {
                    tokio::spawn(stream_source(
                        router,
                        function,
                        stream,
                        group,
                        batch_size,
                        starting_position,
                        stop,
                    ));
                }
            }
        }
    }
}

/// Routers sharing a backend each run the source as their own group member, so the
/// shards are split between them instead of read twice.
fn r_suffix(router: &Weak<Router>) -> String {
    router
        .upgrade()
        .filter(|r| r.backend.is_shared())
        .map(|r| format!("@{}", r.instance))
        .unwrap_or_default()
}

async fn pause(d: Duration, stop: &CancellationToken) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = stop.cancelled() => {}
    }
}

/// Waits until the source's function is ready to invoke; `None` when it does not exist
/// or the source stops. A function that is loading, or failed to load, is waited for.
async fn ready_function(
    router: &Weak<Router>,
    function: &str,
    stop: &CancellationToken,
) -> Option<Arc<Function>> {
    let registry = router.upgrade()?.function_registry();
    tokio::select! {
        f = registry.wait_ready(function) => f,
        _ = stop.cancelled() => None,
    }
}

async fn queue_source(
    router: Weak<Router>,
    function: String,
    queue: String,
    batch_size: usize,
    window: Duration,
    stop: CancellationToken,
) {
    while !stop.is_cancelled() {
        let Some(f) = ready_function(&router, &function, &stop).await else {
            pause(MISSING_PAUSE, &stop).await;
            continue;
        };
        let Some(r) = router.upgrade() else { return };
        let Ok(h) = r.queue(&queue) else {
            drop(r);
            pause(MISSING_PAUSE, &stop).await;
            continue;
        };
        let vis_ms = h.spec().visibility_timeout_s * 1000;
        let mut msgs = match r
            .backend
            .receive(&h, batch_size.min(RECEIVE_MAX), vis_ms, POLL_WAIT, &stop)
            .await
        {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(function, queue, error = %e, "source receive failed");
                pause(MISSING_PAUSE, &stop).await;
                continue;
            }
        };
        if msgs.is_empty() {
            continue;
        }
        let window_end = tokio::time::Instant::now() + window;
        while msgs.len() < batch_size {
            let left = window_end.saturating_duration_since(tokio::time::Instant::now());
            let more = (batch_size - msgs.len()).min(RECEIVE_MAX);
            match r.backend.receive(&h, more, vis_ms, left, &stop).await {
                Ok(m) if !m.is_empty() => msgs.extend(m),
                _ => break,
            }
        }
        let events = msgs
            .iter()
            .map(|m| Event {
                id: m.message_id.clone(),
                topic: String::new(),
                subscription: queue.clone(),
                attributes: crate::router::runtime_attributes(
                    &serde_json::from_slice(&m.attributes).unwrap_or_default(),
                ),
                body: Body::Text(String::from_utf8_lossy(&m.payload).into_owned()),
                published_at_ms: m.sent_at,
                receive_count: m.receive_count,
            })
            .collect();
        let inv = f.invoke_batch(events).await;
        match inv.outcome {
            Ok(failures) => {
                let failed: std::collections::HashSet<usize> =
                    failures.iter().map(|f| f.index).collect();
                for fl in &failures {
                    tracing::warn!(function, queue, message_id = %fl.event_id, error = %fl.message, "batch item failed; it stays in the queue");
                }
                let done: Vec<String> = msgs
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !failed.contains(i))
                    .map(|(_, m)| m.receipt.clone())
                    .collect();
                if !done.is_empty()
                    && let Err(e) = r.backend.ack(&h, &done).await
                {
                    tracing::error!(function, queue, error = %e, "acknowledging a processed batch failed; it will be processed again");
                }
                r.publish_from_function(&function, inv.published).await;
            }
            Err(e) => {
                tracing::warn!(function, queue, error = %e, messages = msgs.len(), "batch failed; the messages stay in the queue");
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn stream_source(
    router: Weak<Router>,
    function: String,
    stream: String,
    group: String,
    batch_size: usize,
    start: StartPosition,
    stop: CancellationToken,
) {
    let member = format!("function:{function}{}", r_suffix(&router));
    let mut retry_pause = FIRST_RETRY_PAUSE;
    while !stop.is_cancelled() {
        let Some(f) = ready_function(&router, &function, &stop).await else {
            pause(MISSING_PAUSE, &stop).await;
            continue;
        };
        let Some(r) = router.upgrade() else { return };
        // A new group starts where the source says; an existing group keeps its settings.
        let spec = crate::model::GroupSpec {
            start_position: start,
            ..crate::model::GroupSpec::default()
        };
        if r.stream(&stream).is_err() {
            drop(r);
            pause(MISSING_PAUSE, &stop).await;
            continue;
        }
        let _ = r.put_group(&stream, &group, spec).await;
        let recs = match r
            .poll(
                &stream,
                &group,
                PollRequest {
                    member: member.clone(),
                    max_records: Some(batch_size),
                    wait_s: Some(POLL_WAIT.as_secs()),
                },
            )
            .await
        {
            Ok(recs) => recs,
            Err(e) => {
                tracing::error!(function, stream, error = %e, "source poll failed");
                drop(r);
                pause(MISSING_PAUSE, &stop).await;
                continue;
            }
        };
        if recs.is_empty() {
            continue;
        }
        let events = recs
            .iter()
            .map(|rec| Event {
                id: format!("{}:{}", crate::stream::shard_id(rec.shard), rec.sequence),
                topic: stream.clone(),
                subscription: group.clone(),
                attributes: Vec::new(),
                body: Body::Text(String::from_utf8_lossy(&rec.data).into_owned()),
                published_at_ms: rec.arrived_at,
                receive_count: 1,
            })
            .collect();
        let inv = f.invoke_batch(events).await;
        // Per shard: the last record handed over, and the lowest one that failed.
        let mut last: BTreeMap<u32, u64> = BTreeMap::new();
        for rec in &recs {
            last.insert(rec.shard, rec.sequence);
        }
        let mut lowest_failed: BTreeMap<u32, u64> = BTreeMap::new();
        let ok = match &inv.outcome {
            Ok(failures) => {
                for fl in failures {
                    let rec = &recs[fl.index];
                    let e = lowest_failed.entry(rec.shard).or_insert(rec.sequence);
                    *e = (*e).min(rec.sequence);
                    tracing::warn!(function, stream, record = %fl.event_id, error = %fl.message, "batch item failed; its shard resumes from it");
                }
                true
            }
            Err(e) => {
                tracing::warn!(function, stream, error = %e, records = recs.len(), "batch failed; it will be read again");
                for rec in &recs {
                    let e = lowest_failed.entry(rec.shard).or_insert(rec.sequence);
                    *e = (*e).min(rec.sequence);
                }
                false
            }
        };
        for (&shard, &seq) in &last {
            // Everything before the lowest failure of the shard is done.
            let done = match lowest_failed.get(&shard) {
                Some(&failed) => failed - 1,
                None => seq,
            };
            // Checkpoint only progress made in this batch (a failure at the batch's first
            // record of the shard leaves its checkpoint where it was).
            if done > 0 && done >= first_of(&recs, shard) {
                let res = r
                    .checkpoint(
                        &stream,
                        &group,
                        CheckpointRequest {
                            member: member.clone(),
                            shard_id: crate::stream::shard_id(shard),
                            sequence: SequenceArg::Number(done),
                        },
                    )
                    .await;
                if let Err(e) = res {
                    tracing::warn!(function, stream, error = %e, "checkpoint refused; the shard moved to another member");
                }
            }
            if lowest_failed.contains_key(&shard) {
                r.rewind(&stream, &group, &member, shard, done);
            }
        }
        if ok {
            r.publish_from_function(&function, inv.published).await;
        }
        if lowest_failed.is_empty() {
            retry_pause = FIRST_RETRY_PAUSE;
        } else {
            drop(r);
            pause(retry_pause, &stop).await;
            retry_pause = (retry_pause * 2).min(MAX_RETRY_PAUSE);
        }
    }
}

/// The first sequence of `shard` in the batch (records of a shard come in order).
fn first_of(recs: &[crate::backend::StoredRecord], shard: u32) -> u64 {
    recs.iter()
        .find(|r| r.shard == shard)
        .map(|r| r.sequence)
        .unwrap_or(u64::MAX)
}
