//! Group commit, in two stages: a write-ahead log for durability, then fjall for reads.
//!
//! A caller hands over its writes and awaits a reply. The log thread takes every request
//! queued while the previous sync ran, appends the queue writes among them to the
//! write-ahead log (`wal`) as one record and syncs once, so throughput grows with
//! concurrency instead of being capped by the disk's sync rate; those callers are answered
//! then. The apply thread writes the same requests, in the same order, into fjall as one
//! atomic batch. Memtable rotations and flushes make a fjall write wait now and then for
//! tens of milliseconds; with the log in front, that delays only the apply thread, not the
//! publishes. Message bodies between the two stages are read from memory (the overlay).
//!
//! Writes that are read back by range or listed (stream records, resource definitions)
//! skip the log: they are answered once fjall has them (synced, when durability is asked
//! for), which keeps what such reads see and what is acknowledged the same.

use super::wal::Wal;
use fjall::{Database, Keyspace, PersistMode, Slice};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Upper bound of writes folded into one batch, so one huge backlog of requests cannot make
/// a single commit (and every caller waiting on it) arbitrarily slow.
const MAX_OPS_PER_COMMIT: usize = 64 * 1024;
/// Bytes logged but not yet in fjall before the log thread waits for the apply thread: what
/// a long fjall stall may hold in memory.
const MAX_BACKLOG_BYTES: usize = 32 << 20;
/// fjall is synced after this many logged bytes, or `SYNC_AFTER` after the last sync, so
/// that log segments become free for reuse. Frequent syncs keep each one's burst of writes
/// small: the disk serves the log's syncs behind it.
const SYNC_EVERY_BYTES: usize = 8 << 20;
const SYNC_AFTER: Duration = Duration::from_millis(100);
/// How long the log thread holds logged writes back from the apply thread, unless someone
/// waits on fjall or `APPLY_BYTES` gather first. Nothing reads them from fjall meanwhile
/// (bodies are served from the overlay), so holding them costs only memory, and saves: the
/// apply thread wakes and commits a few hundred times a second instead of once per group
/// commit, and a message acknowledged within the window never reaches fjall at all (see
/// [`last_writes`]).
const APPLY_WINDOW: Duration = Duration::from_millis(10);
const APPLY_BYTES: usize = 1 << 20;
/// The meta key holding the LSN of the last log record applied to fjall. It is written in
/// the same atomic batch as the record's writes, so recovery knows exactly where to resume.
const WAL_APPLIED_KEY: &[u8] = b"\x00wal-applied";

/// Which keyspace a write goes to. Kept as an index so write requests stay plain data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Space {
    Meta,
    Messages,
    State,
    Dedup,
    Records,
}

impl Space {
    fn code(self) -> u8 {
        match self {
            Space::Meta => 0,
            Space::Messages => 1,
            Space::State => 2,
            Space::Dedup => 3,
            Space::Records => 4,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            0 => Space::Meta,
            1 => Space::Messages,
            2 => Space::State,
            3 => Space::Dedup,
            4 => Space::Records,
            _ => return None,
        })
    }

    /// Spaces that are only read by key at run time (or scanned at start), so a write to
    /// them may be acknowledged from the log before fjall has it.
    fn logged(self) -> bool {
        matches!(self, Space::Messages | Space::State | Space::Dedup)
    }
}

/// One write.
#[derive(Debug)]
pub enum Op {
    Put(Space, Vec<u8>, Vec<u8>),
    Delete(Space, Vec<u8>),
}

/// A write on its way to fjall; values are shared with the overlay.
enum Write {
    Put(Space, Vec<u8>, Slice),
    Delete(Space, Vec<u8>),
}

impl From<Op> for Write {
    fn from(op: Op) -> Self {
        match op {
            Op::Put(s, k, v) => Write::Put(s, k, Slice::from(v)),
            Op::Delete(s, k) => Write::Delete(s, k),
        }
    }
}

impl Write {
    /// The key this write sets or removes.
    fn slot(&self) -> (Space, &[u8]) {
        match self {
            Write::Put(s, k, _) | Write::Delete(s, k) => (*s, k),
        }
    }

    fn add_to(self, batch: &mut fjall::OwnedWriteBatch, spaces: &Spaces) {
        match self {
            Write::Put(s, k, v) => batch.insert(spaces.get(s), k, v),
            Write::Delete(s, k) => batch.remove(spaces.get(s), k),
        }
    }
}

struct Job {
    ops: Vec<Op>,
    /// Who waits, and for what; `None` for writes nobody waits for (delivery acks,
    /// retention sweeps): they ride along with the next batch.
    done: Option<Reply>,
    /// Run on the log thread once a logged job's record has reached the OS, ahead of
    /// `done`; dropped without running when the job is not logged or the write fails.
    written: Option<OnWritten>,
}

type Reply = (oneshot::Sender<Result<(), String>>, Wait);

/// What to do as soon as a write is in the log, before its sync.
pub type OnWritten = Box<dyn FnOnce() + Send>;

/// What a caller waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Handed to the OS: survives the process being killed, not a machine crash.
    Written,
    /// On disk.
    Synced,
}

/// Requests as the log thread passes them on, in order.
struct ApplyBatch {
    writes: Vec<Write>,
    /// LSN of the log record holding the logged part, if any.
    lsn: Option<u64>,
    /// Callers of unlogged requests, answered by the apply thread.
    replies: Vec<Reply>,
    /// Overlay entries this batch retires once fjall has it.
    overlay_keys: Vec<Vec<u8>>,
    bytes: usize,
}

/// Logged batches the log thread holds back from the apply thread (see [`APPLY_WINDOW`]).
#[derive(Default)]
struct Pending {
    batches: Vec<ApplyBatch>,
    bytes: usize,
    since: Option<Instant>,
}

impl Pending {
    fn push(&mut self, batch: ApplyBatch) {
        self.bytes += batch.bytes;
        self.since.get_or_insert_with(Instant::now);
        self.batches.push(batch);
    }

    /// Time left before the held batches must go.
    fn remaining(&self) -> Option<Duration> {
        self.since.map(|t| APPLY_WINDOW.saturating_sub(t.elapsed()))
    }

    /// Hands the held batches to the apply thread; false once it is gone.
    fn flush(&mut self, apply: &mpsc::Sender<Vec<ApplyBatch>>) -> bool {
        self.bytes = 0;
        self.since = None;
        self.batches.is_empty() || apply.send(std::mem::take(&mut self.batches)).is_ok()
    }
}

/// Callers waiting for the disk, and the file whose sync answers them.
struct SyncJob {
    file: Arc<std::fs::File>,
    replies: Vec<Reply>,
}

/// State shared by the handle and the threads.
struct Shared {
    /// Message bodies logged but not yet in fjall, with the LSN that wrote them.
    overlay: Mutex<HashMap<Vec<u8>, (u64, Slice)>>,
    /// LSN up to which fjall holds the log's records durably.
    durable: AtomicU64,
    /// Bytes handed to the apply thread and not yet applied.
    backlog: Mutex<usize>,
    drained: Condvar,
    /// Set by the first failed write or sync: after it, the store accepts no more writes,
    /// as what is on disk can no longer be vouched for.
    failed: Mutex<Option<String>>,
}

impl Shared {
    fn failure(&self) -> Option<String> {
        self.failed.lock().expect("never poisoned").clone()
    }

    fn fail(&self, what: &str, e: impl std::fmt::Display) -> String {
        let msg = format!("storage {what} failed: {e}");
        tracing::error!(error = %msg, "storage stops accepting writes");
        self.failed
            .lock()
            .expect("never poisoned")
            .get_or_insert(msg)
            .clone()
    }
}

/// Handle to the committer threads. Cloning shares them; they stop, after writing out
/// everything handed over, when the last handle is dropped.
#[derive(Clone)]
pub struct Committer {
    inner: Arc<Inner>,
}

struct Inner {
    tx: Option<mpsc::Sender<Job>>,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.tx.take();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
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
    /// Starts the log and apply threads. `wal` continues after everything it recovered
    /// has been applied to `db`.
    pub fn start(db: Database, spaces: Spaces, wal: Wal, durable: u64) -> Self {
        let shared = Arc::new(Shared {
            overlay: Mutex::default(),
            durable: AtomicU64::new(durable),
            backlog: Mutex::new(0),
            drained: Condvar::new(),
            failed: Mutex::new(None),
        });
        let (tx, rx) = mpsc::channel::<Job>();
        let (apply_tx, apply_rx) = mpsc::channel::<Vec<ApplyBatch>>();
        let (sync_tx, sync_rx) = mpsc::channel::<SyncJob>();
        let s = shared.clone();
        let log = std::thread::Builder::new()
            .name("switchyard-log".into())
            .spawn(move || run_log(wal, rx, apply_tx, sync_tx, &s))
            .expect("spawning a storage thread only fails when the OS is out of threads");
        let s = shared.clone();
        let sync = std::thread::Builder::new()
            .name("switchyard-sync".into())
            .spawn(move || run_sync(sync_rx, &s))
            .expect("spawning a storage thread only fails when the OS is out of threads");
        let s = shared.clone();
        let apply = std::thread::Builder::new()
            .name("switchyard-apply".into())
            .spawn(move || run_apply(db, spaces, apply_rx, &s))
            .expect("spawning a storage thread only fails when the OS is out of threads");
        Self {
            inner: Arc::new(Inner {
                tx: Some(tx),
                shared,
                threads: vec![log, sync, apply],
            }),
        }
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

    /// Returns once everything handed over before is in fjall, for a scan of a keyspace
    /// that must see it.
    pub async fn settle(&self) -> Result<(), String> {
        // An empty request is not logged, so the apply thread answers it, in order.
        self.send_waiting(Vec::new(), Wait::Written).await
    }

    /// A message body that is durable but maybe not yet in fjall.
    pub fn pending_body(&self, key: &[u8]) -> Option<Slice> {
        self.inner
            .shared
            .overlay
            .lock()
            .expect("never poisoned")
            .get(key)
            .map(|(_, v)| v.clone())
    }

    /// As [`send`](Self::send), and runs `on_written` on the log thread as soon as the
    /// writes are in the log and handed to the OS, before the sync: no task has to be
    /// woken for it. It is dropped without running when the writes are not logged (only
    /// the sync tells then) or never reach the log.
    pub fn send_tracked(
        &self,
        ops: Vec<Op>,
        on_written: OnWritten,
    ) -> impl Future<Output = Result<(), String>> + use<> {
        self.send_job(ops, Wait::Synced, Some(on_written))
    }

    fn send_waiting(
        &self,
        ops: Vec<Op>,
        wait: Wait,
    ) -> impl Future<Output = Result<(), String>> + use<> {
        self.send_job(ops, wait, None)
    }

    fn send_job(
        &self,
        ops: Vec<Op>,
        wait: Wait,
        written: Option<OnWritten>,
    ) -> impl Future<Output = Result<(), String>> + use<> {
        let (done, rx) = oneshot::channel();
        let sent = self.tx().send(Job {
            ops,
            done: Some((done, wait)),
            written,
        });
        async move {
            sent.map_err(|_| "storage is shut down".to_string())?;
            rx.await
                .unwrap_or_else(|_| Err("storage is shut down".into()))
        }
    }

    fn tx(&self) -> &mpsc::Sender<Job> {
        self.inner.tx.as_ref().expect("only taken on drop")
    }

    /// Queues `ops` without waiting; they reach the OS at once and become durable with the
    /// next batch that someone waits for.
    pub fn submit(&self, ops: Vec<Op>) {
        if !ops.is_empty() {
            let _ = self.tx().send(Job {
                ops,
                done: None,
                written: None,
            });
        }
    }
}

fn is_logged(ops: &[Op]) -> bool {
    !ops.is_empty()
        && ops.iter().all(|op| match op {
            Op::Put(s, ..) | Op::Delete(s, _) => s.logged(),
        })
}

/// Appends one write to a log record: space, kind, key and value, lengths as u32.
fn encode(out: &mut Vec<u8>, w: &Write) {
    let (space, kind, key, value): (Space, u8, &[u8], &[u8]) = match w {
        Write::Put(s, k, v) => (*s, 1, k, v),
        Write::Delete(s, k) => (*s, 0, k, &[]),
    };
    out.push(space.code());
    out.push(kind);
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(value);
}

/// A log record's payload holding `ops`, as the log thread writes it.
#[cfg(test)]
pub fn encode_ops(ops: Vec<Op>) -> Vec<u8> {
    let mut out = Vec::new();
    for op in ops {
        encode(&mut out, &Write::from(op));
    }
    out
}

/// The writes of one log record, or `None` if it is malformed.
fn decode(mut p: &[u8]) -> Option<Vec<Op>> {
    fn take<'a>(p: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (a, b) = p.split_at_checked(n)?;
        *p = b;
        Some(a)
    }
    fn len(p: &mut &[u8]) -> Option<usize> {
        Some(u32::from_le_bytes(take(p, 4)?.try_into().ok()?) as usize)
    }
    let mut ops = Vec::new();
    while !p.is_empty() {
        let head = take(&mut p, 2)?;
        let space = Space::from_code(head[0])?;
        let n = len(&mut p)?;
        let key = take(&mut p, n)?.to_vec();
        let n = len(&mut p)?;
        let value = take(&mut p, n)?;
        ops.push(match head[1] {
            1 => Op::Put(space, key, value.to_vec()),
            0 => Op::Delete(space, key),
            _ => return None,
        });
    }
    Some(ops)
}

/// `first` and whatever else is queued behind it, up to `MAX_OPS_PER_COMMIT` writes (as
/// counted by `ops`): what one group commit takes. Returns them and their write count.
fn gather<T>(rx: &mpsc::Receiver<T>, first: T, ops: impl Fn(&T) -> usize) -> (Vec<T>, usize) {
    let mut n = ops(&first);
    let mut items = vec![first];
    while n < MAX_OPS_PER_COMMIT {
        match rx.try_recv() {
            Ok(item) => {
                n += ops(&item);
                items.push(item);
            }
            Err(_) => break,
        }
    }
    (items, n)
}

fn run_log(
    mut wal: Wal,
    rx: mpsc::Receiver<Job>,
    apply: mpsc::Sender<Vec<ApplyBatch>>,
    syncer: mpsc::Sender<SyncJob>,
    s: &Shared,
) {
    let mut pending = Pending::default();
    loop {
        let first = match pending.remaining() {
            None => match rx.recv() {
                Ok(job) => job,
                Err(_) => break,
            },
            Some(left) => match rx.recv_timeout(left) {
                Ok(job) => job,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if !pending.flush(&apply) {
                        break;
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            },
        };
        let (jobs, n) = gather(&rx, first, |j| j.ops.len());
        if let Some(e) = s.failure() {
            for job in jobs {
                if let Some((done, _)) = job.done {
                    let _ = done.send(Err(e.clone()));
                }
            }
            continue;
        }
        let mut batch = ApplyBatch {
            writes: Vec::with_capacity(n),
            lsn: None,
            replies: Vec::new(),
            overlay_keys: Vec::new(),
            bytes: 0,
        };
        let mut record = Wal::record_buf();
        // Requests whose writes are logged go into one record; the others pass through.
        // Both keep their order on the way to fjall.
        let mut replies: Vec<Reply> = Vec::new();
        let mut told: Vec<OnWritten> = Vec::new();
        for job in jobs {
            let logged = is_logged(&job.ops);
            if logged {
                told.extend(job.written);
            }
            for op in job.ops {
                let w = Write::from(op);
                if logged {
                    encode(&mut record, &w);
                }
                batch.writes.push(w);
            }
            match job.done {
                Some(reply) if logged => replies.push(reply),
                Some(reply) => batch.replies.push(reply),
                None => {}
            }
        }
        let logged_bytes = record.len() - super::wal::RECORD_HEADER;
        let lsn = if logged_bytes > 0 {
            match wal.append(&mut record) {
                Ok(lsn) => Some(lsn),
                Err(e) => {
                    let e = s.fail("log write", e);
                    for (done, _) in replies.into_iter().chain(batch.replies) {
                        let _ = done.send(Err(e.clone()));
                    }
                    continue;
                }
            }
        } else {
            None
        };
        if let Some(lsn) = lsn {
            // Bodies become readable before anyone hears they are stored.
            let mut overlay = s.overlay.lock().expect("never poisoned");
            for w in &batch.writes {
                if let Write::Put(Space::Messages, k, v) = w {
                    overlay.insert(k.clone(), (lsn, v.clone()));
                    batch.overlay_keys.push(k.clone());
                }
            }
        }
        // Those who wait only for the OS are answered before the sync, and fjall gets the
        // batch while the sync runs: neither has to wait for the disk.
        let (written, synced): (Vec<Reply>, Vec<Reply>) = replies
            .into_iter()
            .partition(|(_, wait)| *wait == Wait::Written);
        for (done, _) in written {
            let _ = done.send(Ok(()));
        }
        for t in told {
            t();
        }
        batch.lsn = lsn;
        batch.bytes = record.len();
        let bytes = batch.bytes;
        // Someone waiting on fjall (an unlogged write, a `settle`) has everything before
        // it applied too, in order.
        let urgent = !batch.replies.is_empty();
        pending.push(batch);
        let over_limit = |backlog: usize| backlog > MAX_BACKLOG_BYTES && backlog > bytes;
        let over = {
            let mut backlog = s.backlog.lock().expect("never poisoned");
            *backlog += bytes;
            over_limit(*backlog)
        };
        if (urgent
            || over
            || pending.bytes >= APPLY_BYTES
            || pending.remaining() == Some(Duration::ZERO))
            && !pending.flush(&apply)
        {
            break;
        }
        if over {
            // Everything held went out above, so the apply thread can drain it.
            let mut backlog = s.backlog.lock().expect("never poisoned");
            while over_limit(*backlog) {
                backlog = s.drained.wait(backlog).expect("never poisoned");
            }
        }
        // The sync runs on its own thread, so records keep reaching the OS (and those who
        // wait only for that keep hearing at once) while the disk works.
        if !synced.is_empty() {
            let file = wal.sync_handle().expect("a logged record has a segment");
            if let Err(mpsc::SendError(job)) = syncer.send(SyncJob {
                file,
                replies: synced,
            }) {
                for (done, _) in job.replies {
                    let _ = done.send(Err("storage is shut down".into()));
                }
            }
        }
        wal.release(s.durable.load(Ordering::Acquire));
    }
    pending.flush(&apply);
    if let Err(e) = wal.sync() {
        s.fail("log sync", e);
    }
}

/// Syncs the log for those waiting on the disk: everything queued when a sync starts is
/// answered by it (group commit), while the log thread goes on writing.
fn run_sync(rx: mpsc::Receiver<SyncJob>, s: &Shared) {
    while let Ok(first) = rx.recv() {
        let (jobs, _) = gather(&rx, first, |j| j.replies.len());
        // Jobs are in log order; a roll in between synced the file left behind, but each
        // file named must still be synced for the records written to it.
        let mut result = Ok(());
        let mut synced: Vec<&Arc<std::fs::File>> = Vec::new();
        for job in &jobs {
            if result.is_ok() && !synced.iter().any(|f| Arc::ptr_eq(f, &job.file)) {
                result = job.file.sync_data().map_err(|e| s.fail("log sync", e));
                synced.push(&job.file);
            }
        }
        for job in jobs {
            for (done, _) in job.replies {
                let _ = done.send(result.clone());
            }
        }
    }
}

fn run_apply(db: Database, spaces: Spaces, rx: mpsc::Receiver<Vec<ApplyBatch>>, s: &Shared) {
    let mut applied: Option<u64> = None;
    let mut unsynced = 0usize;
    let mut last_sync = Instant::now();
    loop {
        let first = if unsynced > 0 {
            match rx.recv_timeout(SYNC_AFTER.saturating_sub(last_sync.elapsed())) {
                Ok(b) => b,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    // A failure is recorded in `s`, which refuses every later write.
                    let _ = sync_fjall(&db, applied, s);
                    unsynced = 0;
                    last_sync = Instant::now();
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(b) => b,
                Err(_) => break,
            }
        };
        let (held, _) = gather(&rx, first, |v| v.iter().map(|b| b.writes.len()).sum());
        let mut batches: Vec<ApplyBatch> = held.into_iter().flatten().collect();
        let mut fb = db.batch();
        let mut lsn = None;
        let mut bytes = 0;
        let mut replies = Vec::new();
        let mut writes = Vec::new();
        for b in &mut batches {
            writes.append(&mut b.writes);
            lsn = b.lsn.or(lsn);
            bytes += b.bytes;
            replies.append(&mut b.replies);
        }
        for w in last_writes(writes) {
            w.add_to(&mut fb, &spaces);
        }
        if let Some(l) = lsn {
            fb.insert(&spaces.meta, WAL_APPLIED_KEY, l.to_be_bytes());
        }
        let mut result = fb.commit().map_err(|e| s.fail("write", e));
        if result.is_ok() && !replies.is_empty() {
            result = db
                .persist(PersistMode::Buffer)
                .map_err(|e| s.fail("write", e));
        }
        if result.is_ok() {
            applied = lsn.or(applied);
            let mut overlay = s.overlay.lock().expect("never poisoned");
            for b in &batches {
                for k in &b.overlay_keys {
                    // Only if no later record rewrote the body meanwhile.
                    if overlay.get(k).is_some_and(|(l, _)| Some(*l) == b.lsn) {
                        overlay.remove(k);
                    }
                }
            }
        }
        // On failure the overlay keeps the bodies: they are durable in the log and stay
        // readable until the process stops; the next start replays them.
        unsynced += bytes;
        let synced_wanted = replies.iter().any(|(_, w)| *w == Wait::Synced);
        let due = unsynced >= SYNC_EVERY_BYTES || last_sync.elapsed() >= SYNC_AFTER;
        if result.is_ok() && (synced_wanted || (unsynced > 0 && due)) {
            result = sync_fjall(&db, applied, s);
            unsynced = 0;
            last_sync = Instant::now();
        }
        for (done, _) in replies {
            let _ = done.send(result.clone());
        }
        let mut backlog = s.backlog.lock().expect("never poisoned");
        *backlog -= bytes;
        s.drained.notify_all();
    }
    if let Err(e) = db.persist(PersistMode::SyncAll) {
        s.fail("sync", e);
    } else if let Some(l) = applied {
        s.durable.store(l, Ordering::Release);
    }
}

/// Opens the write-ahead log in `dir` and applies to fjall, durably, the records it lacks
/// (acknowledged before a crash or kill while fjall lagged behind). Returns the log and the
/// LSN fjall now holds, for `Committer::start`.
pub fn replay(db: &Database, spaces: &Spaces, dir: &std::path::Path) -> Result<(Wal, u64), String> {
    let applied = match spaces
        .meta
        .get(WAL_APPLIED_KEY)
        .map_err(|e| e.to_string())?
    {
        Some(v) => u64::from_be_bytes(
            v.as_ref()
                .try_into()
                .map_err(|_| "the write-ahead log position in the store is corrupt".to_string())?,
        ),
        None => 0,
    };
    let (wal, found) = Wal::open(dir, applied)
        .map_err(|e| format!("cannot open the write-ahead log in {}: {e}", dir.display()))?;
    if found.last_lsn > applied {
        let mut batch = db.batch();
        let replayed = found.records.len();
        for (lsn, payload) in found.records {
            let ops = decode(&payload)
                .ok_or_else(|| format!("write-ahead log record {lsn} is corrupt"))?;
            for op in ops {
                Write::from(op).add_to(&mut batch, spaces);
            }
        }
        batch.insert(&spaces.meta, WAL_APPLIED_KEY, found.last_lsn.to_be_bytes());
        batch
            .commit()
            .and_then(|()| db.persist(PersistMode::SyncAll))
            .map_err(|e| format!("replaying the write-ahead log failed: {e}"))?;
        tracing::info!(records = replayed, "replayed the write-ahead log");
    }
    Ok((wal, found.last_lsn))
}

/// The writes of a coalesced batch that change its outcome: the last one of each key.
/// fjall commits the batch atomically, so the earlier ones would only be overwritten in
/// it; dropping them keeps short-lived messages (stored, delivered and deleted within one
/// batch) out of fjall's journal, memtables and tables.
fn last_writes(writes: Vec<Write>) -> Vec<Write> {
    let mut seen = std::collections::HashSet::with_capacity(writes.len());
    let mut keep: Vec<bool> = writes.iter().rev().map(|w| seen.insert(w.slot())).collect();
    drop(seen);
    keep.reverse();
    writes
        .into_iter()
        .zip(keep)
        .filter_map(|(w, k)| k.then_some(w))
        .collect()
}

/// Makes what fjall holds durable, and with it the log up to `applied`.
fn sync_fjall(db: &Database, applied: Option<u64>, s: &Shared) -> Result<(), String> {
    db.persist(PersistMode::SyncData)
        .map_err(|e| s.fail("sync", e))?;
    if let Some(l) = applied {
        s.durable.store(l, Ordering::Release);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_records_decode_to_the_writes_encoded() {
        let writes = [
            Write::Put(Space::Messages, b"k1".to_vec(), Slice::from(vec![1, 2, 3])),
            Write::Delete(Space::State, b"k2".to_vec()),
            Write::Put(Space::Dedup, Vec::new(), Slice::from(Vec::new())),
        ];
        let mut rec = Vec::new();
        for w in &writes {
            encode(&mut rec, w);
        }
        let ops = decode(&rec).unwrap();
        assert_eq!(ops.len(), 3);
        assert!(matches!(&ops[0], Op::Put(Space::Messages, k, v) if k == b"k1" && v == &[1, 2, 3]));
        assert!(matches!(&ops[1], Op::Delete(Space::State, k) if k == b"k2"));
        assert!(matches!(&ops[2], Op::Put(Space::Dedup, k, v) if k.is_empty() && v.is_empty()));
        // Cut anywhere (the log's CRC catches that first), a record neither panics nor
        // decodes to more than it held.
        for cut in 1..rec.len() {
            assert!(
                decode(&rec[..cut]).is_none_or(|o| o.len() < 3),
                "cut at {cut}"
            );
        }
        assert!(decode(&[9, 1, 0, 0, 0, 0, 0, 0, 0, 0]).is_none());
    }

    #[test]
    fn a_coalesced_batch_keeps_only_the_last_write_of_each_key() {
        let put = |s, k: &[u8], v: u8| Write::Put(s, k.to_vec(), Slice::from(vec![v]));
        let kept = last_writes(vec![
            put(Space::Messages, b"a", 1),
            put(Space::State, b"a", 2),
            Write::Delete(Space::Messages, b"a".to_vec()),
            put(Space::Messages, b"b", 3),
            put(Space::State, b"a", 4),
            put(Space::Messages, b"b", 5),
        ]);
        let shown: Vec<_> = kept
            .iter()
            .map(|w| match w {
                Write::Put(s, k, v) => (*s, k.clone(), Some(v.to_vec())),
                Write::Delete(s, k) => (*s, k.clone(), None),
            })
            .collect();
        // Same key in another space is another key; survivors keep their order.
        assert_eq!(
            shown,
            vec![
                (Space::Messages, b"a".to_vec(), None),
                (Space::State, b"a".to_vec(), Some(vec![4])),
                (Space::Messages, b"b".to_vec(), Some(vec![5])),
            ]
        );
    }

    #[test]
    fn held_back_writes_reach_fjall_without_anyone_asking() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::builder(dir.path().join("db")).open().unwrap();
        let open = |name: &str| {
            db.keyspace(name, fjall::KeyspaceCreateOptions::default)
                .unwrap()
        };
        let spaces = Spaces {
            meta: open("meta"),
            messages: open("messages"),
            state: open("state"),
            dedup: open("dedup"),
            records: open("records"),
        };
        let messages = spaces.messages.clone();
        let (wal, durable) = replay(&db, &spaces, &dir.path().join("wal")).unwrap();
        let committer = Committer::start(db.clone(), spaces, wal, durable);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(committer.commit(vec![Op::Put(Space::Messages, b"k".to_vec(), b"v".to_vec())]))
            .unwrap();
        // Served from the overlay at once, in fjall after the window.
        assert_eq!(committer.pending_body(b"k").as_deref(), Some(&b"v"[..]));
        let until = Instant::now() + Duration::from_secs(5);
        while committer.pending_body(b"k").is_some() && Instant::now() < until {
            std::thread::sleep(APPLY_WINDOW / 2);
        }
        assert!(committer.pending_body(b"k").is_none());
        assert_eq!(messages.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn only_requests_confined_to_queue_spaces_are_logged() {
        assert!(is_logged(&[Op::Delete(Space::State, vec![1])]));
        assert!(!is_logged(&[]));
        assert!(!is_logged(&[
            Op::Delete(Space::State, vec![1]),
            Op::Put(Space::Records, vec![1], vec![2]),
        ]));
        assert!(!is_logged(&[Op::Put(Space::Meta, vec![1], vec![2])]));
    }
}
