//! Group commit, in two stages: a write-ahead log for durability, then fjall for reads.
//!
//! A caller's writes are appended to the write-ahead log (`wal`) on the caller's own
//! thread, under a lock that orders them, and the caller awaits a reply. The sync thread
//! takes every request queued while the previous sync ran (and, while callers are
//! concurrent, for at least [`MIN_SYNC_INTERVAL`] since it began), writes the records
//! appended meanwhile to the OS in one write, syncs once and answers them all, so
//! throughput grows with concurrency instead of being capped by the disk's sync rate, and
//! a request crosses one thread, not two; only the sync thread writes the log's files,
//! unless a caller waits for its records to reach the OS (see [`SyncJob`]). The apply
//! thread writes the same requests, in the same order, into fjall in atomic batches.
//! Memtable rotations and flushes make a fjall write wait now and then for tens of
//! milliseconds; with the log in front, that delays only the apply thread, not the
//! publishes. Message bodies between the two stages are read from memory (the overlay).
//!
//! Writes that are read back by range or listed (stream records, resource definitions)
//! skip the log: they are answered once fjall has them (synced, when durability is asked
//! for), which keeps what such reads see and what is acknowledged the same.

use super::wal::Wal;
use fjall::{Database, Keyspace, PersistMode, Slice};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, oneshot};

/// Upper bound of requests one sync answers, so one huge queue of them cannot make a
/// single sync (and every caller waiting on it) arbitrarily slow.
const MAX_JOBS_PER_SYNC: usize = 64 * 1024;
/// While callers are concurrent (the last sync answered more than one), a sync starts no
/// sooner than this after the previous one, so that more requests share it. On a disk
/// that syncs in a tenth of a millisecond, back-to-back syncs each answered a handful of
/// publishes, and each sync's fixed cost (a write and a flush, each a notification of the
/// virtual disk, then the callers' wake-ups) took CPU the requests needed. A lone caller
/// sending one request after another never waits.
const MIN_SYNC_INTERVAL: Duration = Duration::from_micros(250);
/// Bytes logged but not yet in fjall past which callers wait for the apply thread before
/// hearing back: about what a long fjall stall may hold in memory.
const MAX_BACKLOG_BYTES: usize = 32 << 20;
/// fjall is synced after this many logged bytes, or `SYNC_AFTER` after the last sync, so
/// that log segments become free for reuse. Frequent syncs keep each one's burst of writes
/// small: the disk serves the log's syncs behind it.
const SYNC_EVERY_BYTES: usize = 8 << 20;
const SYNC_AFTER: Duration = Duration::from_millis(100);
/// How long logged writes are held back from the apply thread, unless someone waits on
/// fjall or `APPLY_BYTES` gather first. Nothing reads them from fjall meanwhile (bodies
/// are served from the overlay), so holding them costs only memory, and saves: the apply
/// thread wakes and commits a hundred times a second instead of once per request, and a
/// message acknowledged within the window never reaches fjall at all (see
/// [`last_writes`]).
const APPLY_WINDOW: Duration = Duration::from_millis(10);
const APPLY_BYTES: usize = 1 << 20;
/// Appended bytes past which the appending caller asks the sync thread to write them out
/// rather than leave them for the next sync.
const WRITE_OUT_BYTES: usize = 1 << 20;
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
    /// retention sweeps): they ride along with the next write-out.
    done: Option<Reply>,
    /// Run once a logged job's record is in the log, ahead of `done` and before the record
    /// reaches the OS; dropped without running when the job is not logged or the append
    /// fails.
    written: Option<OnWritten>,
}

type Reply = (oneshot::Sender<Result<(), String>>, Wait);

/// What to do as soon as a write is in the log, before its sync.
pub type OnWritten = Box<dyn FnOnce() + Send>;

/// What the caller of [`Committer::send`] waits for: the durability its answer needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Handed to the OS: survives the process being killed, not a machine crash.
    Written,
    /// On disk.
    Synced,
}

/// One request on its way to fjall.
struct ApplyBatch {
    writes: Vec<Write>,
    /// LSN of the log record holding it, if it was logged.
    lsn: Option<u64>,
    /// The caller of an unlogged request, answered by the apply thread.
    reply: Option<Reply>,
    /// Overlay entries this batch retires once fjall has it.
    overlay_keys: Vec<Vec<u8>>,
    bytes: usize,
}

/// Requests held back from the apply thread (see [`APPLY_WINDOW`]), in log order.
#[derive(Default)]
struct Held {
    batches: Vec<ApplyBatch>,
    bytes: usize,
    since: Option<Instant>,
    /// Someone waits on fjall, or enough has gathered: the apply thread takes them now.
    urgent: bool,
    /// The committer is stopping: apply everything, then stop.
    closing: bool,
}

/// What the sync thread is asked for. It is the only thread that writes the log's files
/// unless a caller waits for the OS (`Wait::Written`): a write into the page an `fdatasync`
/// is writing back waits for that I/O, so done on a request thread under the log's lock, it
/// held up every publish behind it for as long as the disk took (milliseconds, seen in
/// `perf trace`), on both runtime threads at once.
enum SyncJob {
    /// A caller waiting for the disk.
    Sync(Reply),
    /// Hand what was appended to the OS, without a sync: for records nobody waits for.
    WriteOut,
}

/// The log; `None` in [`Shared::log`] once shut down.
struct Log {
    wal: Wal,
}

/// State shared by the handle and the threads.
struct Shared {
    log: Mutex<Option<Log>>,
    /// Message bodies logged but not yet in fjall, with the LSN that wrote them.
    overlay: Mutex<HashMap<Vec<u8>, (u64, Slice)>>,
    /// LSN up to which fjall holds the log's records durably.
    durable: AtomicU64,
    held: Mutex<Held>,
    /// Wakes the apply thread: the first request held, or a reason to take them now.
    ready: Condvar,
    /// Bytes logged and not yet applied.
    backlog: AtomicUsize,
    /// The apply thread's word that `backlog` went down.
    drained: Notify,
    /// Set by the first failed write or sync: after it, the store accepts no more writes,
    /// as what is on disk can no longer be vouched for.
    failed: Mutex<Option<String>>,
    has_failed: AtomicBool,
    /// Syncs of the log's files since the store opened.
    syncs: AtomicU64,
    /// Bytes appended to the log since the store opened.
    logged_bytes: AtomicU64,
}

impl Shared {
    fn failure(&self) -> Option<String> {
        if !self.has_failed.load(Ordering::Acquire) {
            return None;
        }
        self.failed.lock().expect("never poisoned").clone()
    }

    fn fail(&self, what: &str, e: impl std::fmt::Display) -> String {
        let msg = format!("storage {what} failed: {e}");
        tracing::error!(error = %msg, "storage stops accepting writes");
        let msg = self
            .failed
            .lock()
            .expect("never poisoned")
            .get_or_insert(msg)
            .clone();
        self.has_failed.store(true, Ordering::Release);
        msg
    }

    fn lock_log(&self) -> MutexGuard<'_, Option<Log>> {
        self.log.lock().expect("never poisoned")
    }

    /// Hands what was appended to the OS (nothing to do once the log is closed: closing
    /// synced it).
    fn write_out(&self) -> Result<(), String> {
        match self.lock_log().as_mut() {
            Some(log) => log.wal.write_out().map_err(|e| self.fail("log write", e)),
            None => Ok(()),
        }
    }

    /// Makes everything appended so far durable; the disk is waited for without holding
    /// the log.
    fn sync_log(&self) -> Result<(), String> {
        let (files, upto) = match self.lock_log().as_mut() {
            Some(log) => (
                log.wal
                    .files_to_sync()
                    .map_err(|e| self.fail("log write", e))?,
                log.wal.appended(),
            ),
            None => return Ok(()),
        };
        for file in files {
            file.sync_data().map_err(|e| self.fail("log sync", e))?;
            self.syncs.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(log) = self.lock_log().as_mut() {
            log.wal.mark_synced(upto);
        }
        Ok(())
    }

    /// Queues a request for the apply thread. Called under the log lock, so requests
    /// reach fjall in log order.
    fn hold(&self, batch: ApplyBatch, urgent: bool) {
        let backlog = self.backlog.fetch_add(batch.bytes, Ordering::AcqRel) + batch.bytes;
        let mut held = self.held.lock().expect("never poisoned");
        let first = held.batches.is_empty();
        held.bytes += batch.bytes;
        held.since.get_or_insert_with(Instant::now);
        held.batches.push(batch);
        let now = urgent || held.bytes >= APPLY_BYTES || backlog > MAX_BACKLOG_BYTES;
        let wake = (now && !held.urgent) || first;
        held.urgent |= now;
        drop(held);
        if wake {
            self.ready.notify_one();
        }
    }

    /// Waits while the apply thread is far behind: the caller hears back later, and so
    /// sends its next request later.
    async fn room(&self) {
        while self.backlog.load(Ordering::Acquire) > MAX_BACKLOG_BYTES {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.backlog.load(Ordering::Acquire) <= MAX_BACKLOG_BYTES || self.failure().is_some()
            {
                break;
            }
            drained.await;
        }
    }
}

/// Handle to the committer threads. Cloning shares them; they stop, after writing out
/// everything handed over, when the last handle is dropped.
#[derive(Clone)]
pub struct Committer {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    syncer: Option<mpsc::Sender<SyncJob>>,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let log = self.shared.lock_log().take();
        if let Some(mut log) = log
            && let Err(e) = log.wal.sync()
        {
            self.shared.fail("log sync", e);
        }
        self.syncer.take();
        self.shared.held.lock().expect("never poisoned").closing = true;
        self.shared.ready.notify_one();
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
    /// Syncs of the log's files, and bytes appended to it, since the store opened.
    pub fn log_stats(&self) -> (u64, u64) {
        let s = &self.inner.shared;
        (
            s.syncs.load(Ordering::Relaxed),
            s.logged_bytes.load(Ordering::Relaxed),
        )
    }

    /// Starts the sync and apply threads. `wal` continues after everything it recovered
    /// has been applied to `db`.
    pub fn start(db: Database, spaces: Spaces, wal: Wal, durable: u64) -> Self {
        let shared = Arc::new(Shared {
            log: Mutex::new(Some(Log { wal })),
            overlay: Mutex::default(),
            durable: AtomicU64::new(durable),
            held: Mutex::default(),
            ready: Condvar::new(),
            backlog: AtomicUsize::new(0),
            drained: Notify::new(),
            failed: Mutex::new(None),
            has_failed: AtomicBool::new(false),
            syncs: AtomicU64::new(0),
            logged_bytes: AtomicU64::new(0),
        });
        let (sync_tx, sync_rx) = mpsc::channel::<SyncJob>();
        let s = shared.clone();
        let sync = std::thread::Builder::new()
            .name("switchyard-sync".into())
            .spawn(move || run_sync(sync_rx, &s))
            .expect("spawning a storage thread only fails when the OS is out of threads");
        let (s, syncer) = (shared.clone(), sync_tx.clone());
        let apply = std::thread::Builder::new()
            .name("switchyard-apply".into())
            .spawn(move || run_apply(db, spaces, &s, syncer))
            .expect("spawning a storage thread only fails when the OS is out of threads");
        Self {
            inner: Arc::new(Inner {
                shared,
                syncer: Some(sync_tx),
                threads: vec![sync, apply],
            }),
        }
    }

    /// Logs `ops` now, as one atomic write, and returns a future that resolves once they
    /// are as durable as `wait` says. Requests are committed in the order they were handed
    /// over, so a caller that sends while holding a lock orders its writes by that lock.
    /// [`Wait::Written`] is for writes whose loss in a machine crash only repeats work (a
    /// receive's in-flight mark): not waiting for the disk saves the caller a sync and a
    /// thread hand-off.
    pub fn send(
        &self,
        ops: Vec<Op>,
        wait: Wait,
    ) -> impl Future<Output = Result<(), String>> + use<> {
        self.send_job(ops, wait, None)
    }

    /// Returns once everything handed over before is in fjall, for a scan of a keyspace
    /// that must see it.
    pub async fn settle(&self) -> Result<(), String> {
        // An empty request is not logged, so the apply thread answers it, in order.
        self.send_job(Vec::new(), Wait::Written, None).await
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

    /// As [`send`](Self::send) with [`Wait::Synced`], and runs `on_written` as soon as the writes are appended
    /// to the log, before they are written out and synced, on the calling thread: no task
    /// has to be woken for it, and no file write is waited for. Anything written after
    /// them is logged after them, so no crash keeps a later write and loses these. It is
    /// dropped without running when the writes are not logged (only the sync tells then)
    /// or never reach the log.
    pub fn send_tracked(
        &self,
        ops: Vec<Op>,
        on_written: OnWritten,
    ) -> impl Future<Output = Result<(), String>> + use<> {
        self.send_job(ops, Wait::Synced, Some(on_written))
    }

    fn send_job(
        &self,
        ops: Vec<Op>,
        wait: Wait,
        written: Option<OnWritten>,
    ) -> impl Future<Output = Result<(), String>> + use<> {
        let (done, rx) = oneshot::channel();
        self.inner.write(Job {
            ops,
            done: Some((done, wait)),
            written,
        });
        let shared = self.inner.shared.clone();
        async move {
            shared.room().await;
            rx.await
                .unwrap_or_else(|_| Err("storage is shut down".into()))
        }
    }

    /// Logs `ops` without waiting; they reach the OS with the next write-out (a sync, a
    /// caller that needs them written, or the apply thread's next round) and become
    /// durable with the next sync.
    pub fn submit(&self, ops: Vec<Op>) {
        if !ops.is_empty() {
            self.inner.write(Job {
                ops,
                done: None,
                written: None,
            });
        }
    }
}

impl Inner {
    /// Appends `job` to the log and queues it for fjall, on the caller's thread; the
    /// sync thread answers it, or the apply thread when it is not logged.
    fn write(&self, job: Job) {
        let s = &*self.shared;
        let Job { ops, done, written } = job;
        let refuse = |done: Option<Reply>, e: String| {
            if let Some((tx, _)) = done {
                let _ = tx.send(Err(e));
            }
        };
        let logged = is_logged(&ops);
        // The record is built before the log is taken, which is held only to append it,
        // so that concurrent callers wait on each other as little as possible.
        let mut record = logged.then(|| Wal::record_buf(ops.iter().map(encoded_len).sum()));
        let mut batch = ApplyBatch {
            writes: Vec::with_capacity(ops.len()),
            lsn: None,
            reply: None,
            overlay_keys: Vec::new(),
            bytes: 0,
        };
        for op in ops {
            let w = Write::from(op);
            if let Some(r) = &mut record {
                encode(r, &w);
            }
            batch.writes.push(w);
        }
        let mut guard = s.lock_log();
        let Some(log) = guard.as_mut() else {
            return refuse(done, "storage is shut down".into());
        };
        if let Some(e) = s.failure() {
            return refuse(done, e);
        }
        let mut now = None;
        let mut sync = None;
        let mut nudge = false;
        if let Some(record) = &mut record {
            let lsn = match log.wal.append(record) {
                Ok(lsn) => lsn,
                Err(e) => return refuse(done, s.fail("log write", e)),
            };
            batch.lsn = Some(lsn);
            batch.bytes = record.len();
            s.logged_bytes
                .fetch_add(record.len() as u64, Ordering::Relaxed);
            // Bodies become readable before anyone hears they are stored.
            let mut overlay = s.overlay.lock().expect("never poisoned");
            for w in &batch.writes {
                if let Write::Put(Space::Messages, k, v) = w {
                    overlay.insert(k.clone(), (lsn, v.clone()));
                    batch.overlay_keys.push(k.clone());
                }
            }
            drop(overlay);
            match done {
                Some((tx, Wait::Written)) => now = Some(tx),
                Some(reply) => sync = Some(reply),
                None => {}
            }
            if now.is_some()
                && let Err(e) = log.wal.write_out()
            {
                let e = s.fail("log write", e);
                refuse(now.map(|tx| (tx, Wait::Written)), e.clone());
                return refuse(sync, e);
            }
            nudge = sync.is_none() && log.wal.unwritten() >= WRITE_OUT_BYTES;
            log.wal.release(s.durable.load(Ordering::Acquire));
        } else {
            batch.reply = done;
        }
        // Someone waiting on fjall (an unlogged write, a `settle`) has everything before
        // it applied too, in order.
        let urgent = batch.reply.is_some();
        s.hold(batch, urgent);
        drop(guard);
        if let Some(tx) = now {
            let _ = tx.send(Ok(()));
        }
        if let Some(w) = written.filter(|_| logged) {
            w();
        }
        let syncer = self.syncer.as_ref().expect("only taken on drop");
        if let Some(reply) = sync {
            if let Err(mpsc::SendError(SyncJob::Sync(reply))) = syncer.send(SyncJob::Sync(reply)) {
                let _ = reply.0.send(Err("storage is shut down".into()));
            }
        } else if nudge {
            // Shut down when it fails: closing wrote everything out.
            let _ = syncer.send(SyncJob::WriteOut);
        }
    }
}

fn is_logged(ops: &[Op]) -> bool {
    !ops.is_empty()
        && ops.iter().all(|op| match op {
            Op::Put(s, ..) | Op::Delete(s, _) => s.logged(),
        })
}

/// Bytes [`encode`] appends for `op`.
fn encoded_len(op: &Op) -> usize {
    match op {
        Op::Put(_, k, v) => 10 + k.len() + v.len(),
        Op::Delete(_, k) => 10 + k.len(),
    }
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

/// A log record's payload holding `ops`, as a caller's write appends it.
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

/// `first` and whatever else is queued behind it, up to `MAX_JOBS_PER_SYNC`: what one
/// sync answers.
fn gather<T>(rx: &mpsc::Receiver<T>, first: T) -> Vec<T> {
    let mut items = vec![first];
    while items.len() < MAX_JOBS_PER_SYNC {
        match rx.try_recv() {
            Ok(item) => items.push(item),
            Err(_) => break,
        }
    }
    items
}

/// Syncs the log for those waiting on the disk: everything queued when a sync starts is
/// written out and answered by it (group commit), while callers go on appending.
fn run_sync(rx: mpsc::Receiver<SyncJob>, s: &Shared) {
    let mut last_start = Instant::now();
    let mut last_group = 0;
    while let Ok(first) = rx.recv() {
        if last_group > 1
            && let Some(rest) = MIN_SYNC_INTERVAL.checked_sub(last_start.elapsed())
        {
            std::thread::sleep(rest);
        }
        last_start = Instant::now();
        let replies: Vec<Reply> = gather(&rx, first)
            .into_iter()
            .filter_map(|job| match job {
                SyncJob::Sync(reply) => Some(reply),
                SyncJob::WriteOut => None,
            })
            .collect();
        if replies.is_empty() {
            // A failure is recorded in `s`, which refuses every later write.
            let _ = s.write_out();
            continue;
        }
        last_group = replies.len();
        // Each job's record was appended before the job was sent, so this sync covers all
        // of them; one that finds nothing new answers for records an earlier one synced.
        let mut result = s.sync_log();
        if let (Ok(()), Some(e)) = (&result, s.failure()) {
            result = Err(e);
        }
        for (tx, _) in replies {
            let _ = tx.send(result.clone());
        }
    }
}

/// What the apply thread takes next: the held requests once their window has passed, or
/// at once when someone waits or enough has gathered; empty when `tick` passes first.
/// The flag says the committer is closing.
fn take_held(s: &Shared, tick: Option<Instant>) -> (Vec<ApplyBatch>, bool) {
    let mut held = s.held.lock().expect("never poisoned");
    loop {
        if held.urgent || held.closing {
            break;
        }
        let until = match (held.since, tick) {
            (Some(t), _) => t + APPLY_WINDOW,
            (None, Some(t)) => t,
            (None, None) => {
                held = s.ready.wait(held).expect("never poisoned");
                continue;
            }
        };
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        held = s.ready.wait_timeout(held, left).expect("never poisoned").0;
    }
    held.bytes = 0;
    held.since = None;
    held.urgent = false;
    (std::mem::take(&mut held.batches), held.closing)
}

fn run_apply(db: Database, spaces: Spaces, s: &Shared, syncer: mpsc::Sender<SyncJob>) {
    let mut applied: Option<u64> = None;
    let mut unsynced = 0usize;
    let mut last_sync = Instant::now();
    loop {
        let tick = (unsynced > 0).then(|| last_sync + SYNC_AFTER);
        let (mut batches, closing) = take_held(s, tick);
        if batches.is_empty() {
            if closing {
                break;
            }
            if unsynced > 0 && last_sync.elapsed() >= SYNC_AFTER {
                // A failure is recorded in `s`, which refuses every later write.
                let _ = sync_fjall(&db, applied, s);
                unsynced = 0;
                last_sync = Instant::now();
            }
            continue;
        }
        // Records nobody waits for (delivery acks, sweeps) reach the OS at least this
        // often, written out by the sync thread (see [`SyncJob`]).
        if s.lock_log()
            .as_ref()
            .is_some_and(|log| log.wal.unwritten() > 0)
        {
            let _ = syncer.send(SyncJob::WriteOut);
        }
        let mut fb = db.batch();
        let mut lsn = None;
        let mut bytes = 0;
        let mut replies = Vec::new();
        let mut writes = Vec::new();
        for b in &mut batches {
            writes.append(&mut b.writes);
            lsn = b.lsn.or(lsn);
            bytes += b.bytes;
            replies.extend(b.reply.take());
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
        s.backlog.fetch_sub(bytes, Ordering::AcqRel);
        s.drained.notify_waiters();
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
        let ops = || {
            vec![
                Op::Put(Space::Messages, b"key".to_vec(), vec![7; 100]),
                Op::Delete(Space::State, b"k2".to_vec()),
            ]
        };
        let room: usize = ops().iter().map(encoded_len).sum();
        assert_eq!(room, encode_ops(ops()).len(), "the room set aside is exact");
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

    /// A committer on a new store in `dir`, and its messages keyspace.
    fn start_in(dir: &std::path::Path) -> (Committer, Keyspace) {
        let db = Database::builder(dir.join("db")).open().unwrap();
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
        let (wal, durable) = replay(&db, &spaces, &dir.join("wal")).unwrap();
        (Committer::start(db, spaces, wal, durable), messages)
    }

    /// Whether the log's files, as the OS has them (what a process started after a kill
    /// would read), hold `marker`.
    fn in_log(dir: &std::path::Path, marker: &[u8]) -> bool {
        std::fs::read_dir(dir.join("wal")).unwrap().any(|e| {
            let bytes = std::fs::read(e.unwrap().path()).unwrap();
            bytes.windows(marker.len()).any(|w| w == marker)
        })
    }

    #[test]
    fn records_nobody_waits_for_reach_the_os_without_a_sync() {
        let dir = tempfile::tempdir().unwrap();
        let (committer, _) = start_in(dir.path());
        let marker = b"an ack nobody waits for";
        committer.submit(vec![Op::Put(Space::State, b"k".to_vec(), marker.to_vec())]);
        let until = Instant::now() + Duration::from_secs(5);
        while !in_log(dir.path(), marker) && Instant::now() < until {
            std::thread::sleep(APPLY_WINDOW / 2);
        }
        assert!(
            in_log(dir.path(), marker),
            "the record reached the log's file"
        );
    }

    #[tokio::test]
    async fn a_write_waited_for_in_the_os_is_there_when_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let (committer, _) = start_in(dir.path());
        let marker = b"an in-flight mark";
        let mark = vec![Op::Put(Space::State, b"k".to_vec(), marker.to_vec())];
        committer.send(mark, Wait::Written).await.unwrap();
        assert!(in_log(dir.path(), marker));
    }

    #[tokio::test]
    async fn records_appended_after_a_sync_say_what_it_made_durable() {
        let dir = tempfile::tempdir().unwrap();
        let (committer, _) = start_in(dir.path());
        let put = |k: &[u8]| vec![Op::Put(Space::State, k.to_vec(), b"v".to_vec())];
        for k in [b"a", b"b", b"c"] {
            committer.send(put(k), Wait::Synced).await.unwrap();
        }
        committer.submit(put(b"d"));
        committer.send(put(b"e"), Wait::Written).await.unwrap();
        let marks = super::super::wal::marks(&dir.path().join("wal"));
        // Each record synced before the next was appended, so each carries its
        // predecessor's LSN (the unsynced `d` too, once `c` was synced).
        assert_eq!(marks, [(1, 0), (2, 1), (3, 2), (4, 3), (5, 3)]);
    }

    #[tokio::test]
    async fn callers_wait_for_room_while_fjall_is_far_behind() {
        let s = Arc::new(Shared {
            log: Mutex::new(None),
            overlay: Mutex::default(),
            durable: AtomicU64::new(0),
            held: Mutex::default(),
            ready: Condvar::new(),
            backlog: AtomicUsize::new(MAX_BACKLOG_BYTES + 1),
            drained: Notify::new(),
            failed: Mutex::new(None),
            has_failed: AtomicBool::new(false),
            syncs: AtomicU64::new(0),
            logged_bytes: AtomicU64::new(0),
        });
        let waiting = tokio::spawn({
            let s = s.clone();
            async move { s.room().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "over the limit, the caller waits");
        // What the apply thread does after each batch.
        s.backlog.fetch_sub(2, Ordering::AcqRel);
        s.drained.notify_waiters();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the caller goes on once the backlog is under the limit")
            .unwrap();
    }

    #[test]
    fn held_back_writes_reach_fjall_without_anyone_asking() {
        let dir = tempfile::tempdir().unwrap();
        let (committer, messages) = start_in(dir.path());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(committer.send(
            vec![Op::Put(Space::Messages, b"k".to_vec(), b"v".to_vec())],
            Wait::Synced,
        ))
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
