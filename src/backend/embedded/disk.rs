//! Keeps the data directory's disk from filling up: writes that add data (publishes,
//! sends, stream puts, new resources) are refused while the free space is below a
//! reserve, and accepted again as soon as space is freed.
//!
//! The reserve is what the writes already accepted still need: the log's spare segments,
//! fjall's memtable flushes and compactions, the records of receives and acks. fjall
//! treats a failed journal write as fatal for the rest of the process, so the disk must
//! never actually run out under it; refusing new data early keeps reads, receives and
//! acks working on a nearly full disk, which is what frees space again. The same idea as
//! RabbitMQ's disk alarm.

use crate::backend::StorageError;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The reserve when none is configured.
pub const DEFAULT_RESERVE: u64 = 128 << 20;
/// What a resource's definition is counted as, about.
const RESOURCE_BYTES: usize = 1024;
/// Free space is read again after this many bytes were admitted since the last reading...
const RECHECK_BYTES: u64 = 1 << 20;
/// ...or after this long, so that space freed (or taken) by others is seen.
const RECHECK_AFTER: Duration = Duration::from_millis(100);
/// While refusing, a reading no older than this is trusted, so a flood of refused
/// requests does not become a flood of `statvfs` calls.
const RECHECK_REFUSING: Duration = Duration::from_millis(20);

pub struct DiskGuard {
    dir: PathBuf,
    reserve: AtomicU64,
    reading: Mutex<Reading>,
}

struct Reading {
    /// Bytes free for this process at the last reading (`None`: it could not be read).
    free: Option<u64>,
    at: Instant,
    /// Bytes admitted since.
    admitted: u64,
}

impl DiskGuard {
    pub fn new(dir: &Path) -> Self {
        let guard = DiskGuard {
            dir: dir.to_path_buf(),
            reserve: AtomicU64::new(DEFAULT_RESERVE),
            reading: Mutex::new(Reading {
                free: None,
                at: Instant::now(),
                admitted: 0,
            }),
        };
        guard.read(&mut guard.reading.lock().expect("never poisoned"));
        guard
    }

    /// Bytes free for this process on the data directory's disk, read now.
    pub fn free(&self) -> Option<u64> {
        let mut r = self.reading.lock().expect("never poisoned");
        self.read(&mut r);
        r.free
    }

    /// Sets the reserve; 0 turns the guard off.
    pub fn set_reserve(&self, bytes: u64) {
        self.reserve.store(bytes, Ordering::Relaxed);
    }

    /// Admits a new resource (queue, stream, group) named `name`: its definition is small,
    /// but it is new data all the same.
    pub fn admit_resource(&self, name: &str) -> Result<(), StorageError> {
        self.admit(name.len() + RESOURCE_BYTES)
    }

    /// Admits a write adding about `bytes`, or refuses it while the disk is too full.
    pub fn admit(&self, bytes: usize) -> Result<(), StorageError> {
        let reserve = self.reserve.load(Ordering::Relaxed);
        if reserve == 0 {
            return Ok(());
        }
        let bytes = bytes as u64;
        let mut r = self.reading.lock().expect("never poisoned");
        let stale = r.admitted >= RECHECK_BYTES || r.at.elapsed() >= RECHECK_AFTER;
        if stale || !fits(&r, bytes, reserve) && r.at.elapsed() >= RECHECK_REFUSING {
            self.read(&mut r);
        }
        if !fits(&r, bytes, reserve) {
            let free = r.free.unwrap_or(0).saturating_sub(r.admitted);
            return Err(StorageError::Full(format!(
                "the disk holding {} has {} free, less than the {} kept in reserve \
                 (--min-free-disk-mb); new data is refused until space is freed, while \
                 reads, receives and acks go on",
                self.dir.display(),
                mib(free),
                mib(reserve),
            )));
        }
        r.admitted += bytes;
        Ok(())
    }

    fn read(&self, r: &mut Reading) {
        r.free = match rustix::fs::statvfs(&self.dir) {
            Ok(s) => Some(s.f_bavail.saturating_mul(s.f_frsize)),
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot read the free space of the data directory's disk");
                None
            }
        };
        r.at = Instant::now();
        r.admitted = 0;
    }
}

/// Whether `bytes` more leave the reserve free; an unreadable disk does not stop writes
/// (the writes themselves will say what is wrong).
fn fits(r: &Reading, bytes: u64, reserve: u64) -> bool {
    r.free
        .is_none_or(|free| free.saturating_sub(r.admitted + bytes) >= reserve)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_below_the_reserve_and_admits_again_once_space_is_back() {
        let dir = tempfile::tempdir().unwrap();
        let guard = DiskGuard::new(dir.path());
        let free = guard
            .reading
            .lock()
            .unwrap()
            .free
            .expect("statvfs works here");
        guard.set_reserve(free / 2);
        guard.admit(1000).expect("plenty of room");
        // A reserve beyond what the disk has: everything is refused, with the reason.
        guard.set_reserve(free + (1 << 30));
        let e = guard.admit(10).unwrap_err();
        assert!(e.is_retryable());
        let msg = e.to_string();
        assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
        assert!(msg.contains("--min-free-disk-mb"), "{msg}");
        guard.set_reserve(0);
        guard
            .admit(usize::MAX)
            .expect("a reserve of 0 turns the guard off");
    }

    #[test]
    fn admitted_bytes_count_against_the_last_reading() {
        let r = Reading {
            free: Some(10_000),
            at: Instant::now(),
            admitted: 3_000,
        };
        assert!(fits(&r, 2_000, 5_000));
        assert!(!fits(&r, 2_001, 5_000));
        let unknown = Reading { free: None, ..r };
        assert!(
            fits(&unknown, u64::MAX, 5_000),
            "an unreadable disk stops nothing"
        );
    }
}
