//! Group commit: one thread turns many concurrent write requests into one durable batch.
//!
//! A caller hands over its writes and awaits a reply; the committer thread takes every
//! request queued while the previous `fdatasync` ran, writes them as one atomic fjall batch
//! and syncs once. Throughput therefore grows with concurrency instead of being capped by
//! the disk's sync rate, and a caller is answered only after its writes are on disk.

use fjall::{Database, Keyspace, PersistMode};
use std::sync::mpsc;
use tokio::sync::oneshot;

/// Upper bound of writes folded into one batch, so one huge backlog of requests cannot make
/// a single commit (and every caller waiting on it) arbitrarily slow.
const MAX_OPS_PER_COMMIT: usize = 64 * 1024;

/// Which keyspace a write goes to. Kept as an index so write requests stay plain data.
#[derive(Debug, Clone, Copy)]
pub enum Space {
    Meta,
    Messages,
    State,
    Dedup,
    Records,
}

/// One write.
#[derive(Debug)]
pub enum Op {
    Put(Space, Vec<u8>, Vec<u8>),
    Delete(Space, Vec<u8>),
}

struct Job {
    ops: Vec<Op>,
    /// Who waits, and for what; `None` for writes nobody waits for (delivery acks,
    /// retention sweeps): they ride along with the next batch.
    done: Option<(oneshot::Sender<Result<(), String>>, Wait)>,
}

/// What a caller waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Handed to the OS: survives the process being killed, not a machine crash.
    Written,
    /// On disk.
    Synced,
}

/// Handle to the committer thread. Cloning shares the thread.
#[derive(Clone)]
pub struct Committer {
    tx: mpsc::Sender<Job>,
}

pub struct Spaces {
    pub meta: Keyspace,
    pub messages: Keyspace,
    pub state: Keyspace,
    pub dedup: Keyspace,
    pub records: Keyspace,
}

impl Spaces {
    fn get(&self, s: Space) -> &Keyspace {
        match s {
            Space::Meta => &self.meta,
            Space::Messages => &self.messages,
            Space::State => &self.state,
            Space::Dedup => &self.dedup,
            Space::Records => &self.records,
        }
    }
}

impl Committer {
    /// Starts the committer thread. It stops when every handle is dropped.
    pub fn start(db: Database, spaces: Spaces) -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("switchyard-commit".into())
            .spawn(move || run(db, spaces, rx))
            .expect("spawning the commit thread only fails when the OS is out of threads");
        Self { tx }
    }

    /// Writes `ops` atomically and returns once they are durable.
    pub async fn commit(&self, ops: Vec<Op>) -> Result<(), String> {
        self.send(ops).await
    }

    /// Hands `ops` to the committer now and returns a future for their durability.
    /// Batches are committed in the order they were handed over, so a caller that sends
    /// while holding a lock orders its writes by that lock.
    pub fn send(&self, ops: Vec<Op>) -> impl Future<Output = Result<(), String>> + use<> {
        self.send_waiting(ops, Wait::Synced)
    }

    /// Writes `ops` atomically and returns once the OS has them (before the batch's
    /// sync): for writes whose loss in a machine crash only repeats work, but which must
    /// survive the process being killed.
    pub async fn write(&self, ops: Vec<Op>) -> Result<(), String> {
        self.send_waiting(ops, Wait::Written).await
    }

    fn send_waiting(
        &self,
        ops: Vec<Op>,
        wait: Wait,
    ) -> impl Future<Output = Result<(), String>> + use<> {
        let (done, rx) = oneshot::channel();
        let sent = self.tx.send(Job {
            ops,
            done: Some((done, wait)),
        });
        async move {
            sent.map_err(|_| "storage is shut down".to_string())?;
            rx.await
                .unwrap_or_else(|_| Err("storage is shut down".into()))
        }
    }

    /// Queues `ops` without waiting; they reach the OS at once and become durable with the
    /// next batch that someone waits for.
    pub fn submit(&self, ops: Vec<Op>) {
        if !ops.is_empty() {
            let _ = self.tx.send(Job { ops, done: None });
        }
    }
}

fn run(db: Database, spaces: Spaces, rx: mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        let mut n = jobs[0].ops.len();
        while n < MAX_OPS_PER_COMMIT {
            match rx.try_recv() {
                Ok(j) => {
                    n += j.ops.len();
                    jobs.push(j);
                }
                Err(_) => break,
            }
        }
        let mut batch = db.batch();
        for job in &mut jobs {
            for op in job.ops.drain(..) {
                match op {
                    Op::Put(s, k, v) => batch.insert(spaces.get(s), k, v),
                    Op::Delete(s, k) => batch.remove(spaces.get(s), k),
                }
            }
        }
        // Writes nobody waits for durably (delivery acks and in-flight marks, sweeps)
        // come far more often than durable ones; syncing for them alone would take the disk
        // from the publishes that must wait for it. They reach the OS at once, so only a
        // machine crash (not a killed process) can lose them before the next sync.
        let written = batch
            .commit()
            .and_then(|()| db.persist(PersistMode::Buffer))
            .map_err(|e| format!("storage write failed: {e}"));
        let mut synced = Vec::new();
        for job in jobs {
            match job.done {
                Some((done, Wait::Written)) => {
                    let _ = done.send(written.clone());
                }
                Some((done, Wait::Synced)) => synced.push(done),
                None => {}
            }
        }
        let result = if synced.is_empty() {
            written
        } else {
            written.and_then(|()| {
                db.persist(PersistMode::SyncData)
                    .map_err(|e| format!("storage write failed: {e}"))
            })
        };
        if let Err(e) = &result {
            tracing::error!(error = %e, "group commit failed");
        }
        for done in synced {
            let _ = done.send(result.clone());
        }
    }
}
