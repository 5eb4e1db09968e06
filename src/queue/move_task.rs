//! Message move tasks, SQS's redrive back: a dead-letter queue's messages moved in the
//! background, at a bounded rate, to the queues they came from or all to one queue; listed
//! while they run and after they end, and cancelled on request. Tasks live on the router
//! that started them and end with it; what they moved stays moved.

use super::{Held, Queues, REDRIVE_BATCH};
use crate::backend::Queue;
use crate::error::OpError;
use crate::model::Kind;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Tasks kept per source queue once ended, newest first, as SQS lists them.
const ENDED_KEPT: usize = 10;

/// Where a task stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoveStatus {
    Running,
    Completed,
    Cancelling,
    Cancelled,
    Failed(String),
}

impl MoveStatus {
    /// SQS's name for it.
    pub fn as_str(&self) -> &'static str {
        match self {
            MoveStatus::Running => "RUNNING",
            MoveStatus::Completed => "COMPLETED",
            MoveStatus::Cancelling => "CANCELLING",
            MoveStatus::Cancelled => "CANCELLED",
            MoveStatus::Failed(_) => "FAILED",
        }
    }
}

/// One move task.
#[derive(Debug)]
pub struct MoveTask {
    /// Names the task to cancel it.
    pub handle: String,
    pub source: String,
    /// Where every message goes; `None`: each back to the queue it came from.
    pub destination: Option<String>,
    /// Most messages moved per second; `None`: as fast as the store takes them.
    pub max_per_second: Option<u32>,
    /// The source's visible messages when the task started: it moves at most these.
    pub to_move: u64,
    moved: AtomicU64,
    pub started_at: u64,
    status: Mutex<MoveStatus>,
    cancel: CancellationToken,
}

impl MoveTask {
    pub fn moved(&self) -> u64 {
        self.moved.load(Ordering::Relaxed)
    }

    pub fn status(&self) -> MoveStatus {
        self.status.lock().expect("never poisoned").clone()
    }

    fn set(&self, status: MoveStatus) {
        *self.status.lock().expect("never poisoned") = status;
    }
}

/// The tasks of one router.
#[derive(Debug, Default)]
pub struct MoveTasks {
    tasks: Mutex<Vec<Arc<MoveTask>>>,
}

impl Queues {
    /// The queues whose redrive policy names `dlq` as their dead-letter queue.
    pub fn dead_letter_sources(&self, dlq: &str) -> Vec<String> {
        self.names()
            .into_iter()
            .filter(|n| {
                self.queue(n).is_ok_and(|q| {
                    q.spec()
                        .redrive_policy
                        .is_some_and(|rp| rp.dead_letter_queue == dlq)
                })
            })
            .collect()
    }

    /// Starts moving the dead letters of `source` back (to `destination`, or each to the
    /// queue it came from), at most `max_per_second` a second. `source` must be some
    /// queue's dead-letter queue, and run one task at a time.
    pub async fn start_move_task(
        self: &Arc<Self>,
        source: &str,
        destination: Option<&str>,
        max_per_second: Option<u32>,
    ) -> Result<Arc<MoveTask>, OpError> {
        let from = self.queue(source)?;
        if self.dead_letter_sources(source).is_empty() {
            return Err(OpError::Invalid(format!(
                "queue {source:?} is no queue's dead-letter queue: a move task moves dead letters"
            )));
        }
        let to = match destination {
            Some(d) if d == source => {
                return Err(OpError::Invalid(
                    "the destination is the source queue".into(),
                ));
            }
            Some(d) => Some(self.queue(d)?),
            None => None,
        };
        if let Some(0) = max_per_second {
            return Err(OpError::Invalid(
                "MaxNumberOfMessagesPerSecond must be at least 1".into(),
            ));
        }
        let to_move = self.backend.counts(&from).await?.visible;
        let task = {
            let mut tasks = self.move_tasks.tasks.lock().expect("never poisoned");
            if tasks
                .iter()
                .any(|t| t.source == source && t.status() == MoveStatus::Running)
            {
                return Err(OpError::Conflict(format!(
                    "a move task is already running for queue {source:?}"
                )));
            }
            let task = Arc::new(MoveTask {
                handle: uuid::Uuid::now_v7().to_string(),
                source: source.to_string(),
                destination: destination.map(str::to_string),
                max_per_second,
                to_move,
                moved: AtomicU64::new(0),
                started_at: crate::time::now_ms(),
                status: Mutex::new(MoveStatus::Running),
                cancel: self.shutdown.child_token(),
            });
            tasks.insert(0, task.clone());
            // Ended tasks beyond what is listed are forgotten.
            let mut ended = 0;
            tasks.retain(|t| {
                if t.source != source || t.status() == MoveStatus::Running {
                    return true;
                }
                ended += 1;
                ended <= ENDED_KEPT
            });
            task
        };
        let queues = self.clone();
        let running = task.clone();
        tokio::spawn(async move {
            let status = match queues.run_move_task(&running, &from, to.as_ref()).await {
                Ok(()) if running.cancel.is_cancelled() => MoveStatus::Cancelled,
                Ok(()) => MoveStatus::Completed,
                Err(e) => MoveStatus::Failed(e.to_string()),
            };
            tracing::info!(source = %running.source, moved = running.moved(), status = status.as_str(), "message move task ended");
            running.set(status);
        });
        Ok(task)
    }

    async fn run_move_task(
        &self,
        task: &MoveTask,
        from: &Queue,
        to: Option<&Queue>,
    ) -> Result<(), OpError> {
        let mut held = Held::default();
        let result = async {
            while task.moved() < task.to_move && !task.cancel.is_cancelled() {
                let left = (task.to_move - task.moved()) as usize;
                let round = match task.max_per_second {
                    Some(rate) => left.min(rate as usize).min(REDRIVE_BATCH),
                    None => left.min(REDRIVE_BATCH),
                };
                let started = tokio::time::Instant::now();
                let (moved, done) = self.move_dead_letters(from, to, round, &mut held).await?;
                task.moved.fetch_add(moved, Ordering::Relaxed);
                if done {
                    break;
                }
                if let Some(rate) = task.max_per_second {
                    // A round of `round` messages takes at least round/rate seconds.
                    let due = Duration::from_secs_f64(round as f64 / rate as f64);
                    tokio::select! {
                        () = tokio::time::sleep_until(started + due) => {}
                        () = task.cancel.cancelled() => {}
                    }
                }
            }
            Ok(())
        }
        .await;
        self.release(from, held).await?;
        result
    }

    /// The tasks started on this router whose source is `source`, newest first.
    pub fn move_tasks(&self, source: &str) -> Vec<Arc<MoveTask>> {
        self.move_tasks
            .tasks
            .lock()
            .expect("never poisoned")
            .iter()
            .filter(|t| t.source == source)
            .cloned()
            .collect()
    }

    /// Cancels a running task; what it moved stays moved.
    pub fn cancel_move_task(&self, handle: &str) -> Result<Arc<MoveTask>, OpError> {
        let task = self
            .move_tasks
            .tasks
            .lock()
            .expect("never poisoned")
            .iter()
            .find(|t| t.handle == handle)
            .cloned()
            .ok_or_else(|| OpError::not_found(Kind::MoveTask, handle))?;
        {
            let mut status = task.status.lock().expect("never poisoned");
            if *status != MoveStatus::Running {
                return Err(OpError::Invalid(format!(
                    "move task {handle} is {}, not running",
                    status.as_str()
                )));
            }
            *status = MoveStatus::Cancelling;
        }
        task.cancel.cancel();
        Ok(task)
    }
}
