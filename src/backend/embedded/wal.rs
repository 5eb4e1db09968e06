//! Switchyard's write-ahead log: what makes a queue write durable before fjall has it.
//!
//! fjall's journal grows its file as it goes, so every `fdatasync` also commits file
//! metadata (4–9 ms on this kind of disk), and a sync can wait behind a memtable rotation.
//! This log writes into files that were zero-filled ahead of time and are reused once fjall
//! holds their records durably, so a sync flushes data blocks only. The committer answers a
//! queue write once it is here and hands it to fjall on another thread; on start, whatever
//! fjall had not made durable is replayed from here.
//!
//! A file (a segment) starts with a header carrying a random nonce, written anew each time
//! the file is reused. Each record carries its log sequence number (LSN) and a CRC over
//! nonce, LSN and payload, so a reused file's earlier contents can never pass for records:
//! they fail the CRC, and the scan of that file stops there.
//!
//! A failed CRC alone cannot tell a torn tail (records whose sync never finished, so never
//! acknowledged) from damage to records that were acknowledged. So each record also
//! carries the highest LSN known synced when it was appended: a damaged or missing record
//! at or below the highest such mark in the log was acknowledged, and opening the log
//! fails, naming the file and offset, rather than drop it and everything after it.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};

/// Size of a pre-zeroed segment. Large enough that zeroing one is rare, small enough that
/// zeroing one in the background takes a fraction of a second.
const SEGMENT_BYTES: u64 = 16 << 20;
/// The first segment of a new store, zero-filled while it opens.
const FIRST_SEGMENT_BYTES: u64 = 1 << 20;
/// Reusable segments kept beyond the one being written; more are deleted once fjall
/// holds their records.
const MAX_FREE: usize = 4;
const MAGIC: &[u8; 8] = b"SYWAL\x00\x00\x02";
/// Segments written before records carried their sync mark: still read, never written.
const MAGIC_V1: &[u8; 8] = b"SYWAL\x00\x00\x01";
/// Magic and nonce.
const HEADER_BYTES: u64 = 16;
/// Room of the unwritten-records buffer kept between writes; a larger one (left by a
/// record of several MiB) is given back.
const MAX_KEPT_BUFFER: usize = 4 << 20;
/// The file's use tag (u32), length (u32), CRC (u32), LSN (u64) and sync mark (u64)
/// before each payload. The tag (from the nonce) is what a scan looks for past damage.
pub const RECORD_HEADER: usize = 28;
/// The record header of [`MAGIC_V1`] segments: no sync mark.
const RECORD_HEADER_V1: usize = 16;

/// One log file.
struct Segment {
    id: u64,
    /// Shared with whoever syncs it off the writing thread (see [`Wal::files_to_sync`]).
    file: Arc<File>,
    capacity: u64,
    /// LSN of the last record written in this use of the file.
    last_lsn: u64,
}

pub struct Wal {
    dir: PathBuf,
    active: Option<Segment>,
    /// End of the last record appended to the active segment.
    pos: u64,
    /// Records appended but not yet handed to the OS: the active segment's bytes from
    /// `pos - unwritten.len()`. Whoever needs them out calls [`Wal::write_out`], so
    /// records appended between two syncs reach the OS in one write.
    unwritten: Vec<u8>,
    nonce: u64,
    /// Segments written to the end, oldest first, until fjall holds their records.
    full: VecDeque<Segment>,
    /// Segments ready for reuse.
    free: Vec<Segment>,
    next_lsn: u64,
    /// Every record up to this LSN is known durable; each record appended carries it.
    synced: u64,
    next_id: u64,
    unsynced: bool,
    /// Files a roll left with records written out but not yet synced.
    left: Vec<Arc<File>>,
    /// Zero-filled segments from the preparer thread, and requests for more.
    spares: mpsc::Receiver<io::Result<Segment>>,
    want_spare: Option<mpsc::Sender<u64>>,
    spare_pending: bool,
    preparer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Wal {
    fn drop(&mut self) {
        // A zero-fill in progress finishes first, so a store reopened in this process does
        // not find a file appearing under it.
        self.want_spare.take();
        if let Some(t) = self.preparer.take() {
            let _ = t.join();
        }
    }
}

/// What a scan found: the records fjall still lacks, in LSN order, and the LSN to go on
/// from.
pub struct Recovered {
    pub records: Vec<(u64, Vec<u8>)>,
    /// Highest LSN of any intact record in any file. Every LSN up to it must count as
    /// applied once `records` are: anything above a gap was never acknowledged as synced.
    pub last_lsn: u64,
}

fn seg_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016x}.wal"))
}

/// The CRC of a record; `synced` is `None` in [`MAGIC_V1`] segments.
fn crc(nonce: u64, lsn: u64, synced: Option<u64>, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&nonce.to_le_bytes());
    h.update(&lsn.to_le_bytes());
    if let Some(m) = synced {
        h.update(&m.to_le_bytes());
    }
    h.update(payload);
    h.finalize()
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// What the scan of one file found.
struct Scanned {
    /// LSN of its last intact record in its current use.
    last: Option<u64>,
    /// Where the scan stopped: the first byte that is not an intact record.
    stop: u64,
    /// The highest sync mark among its intact records.
    synced: u64,
    /// Whether the scan stopped on something that is not a record (a failed CRC, a broken
    /// sequence), rather than on zeros or the end of the file.
    broken: bool,
    /// Whether intact records of its current use follow the break.
    stranded: bool,
}

/// The bytes that start every record of a file's use with `nonce`: never zero, so a
/// search for them skips zero-filled space.
fn use_tag(nonce: u64) -> [u8; 4] {
    (nonce as u32).max(1).to_le_bytes()
}

/// An intact record of the current use of a file at `pos`: its LSN, sync mark (0 in
/// [`MAGIC_V1`] files), payload and end. `lsn_ok` is checked before the CRC.
fn record_at(
    bytes: &[u8],
    pos: usize,
    nonce: u64,
    header: usize,
    lsn_ok: impl Fn(u64) -> bool,
) -> Option<(u64, u64, &[u8], usize)> {
    let mut h = bytes.get(pos..pos + header)?;
    if header == RECORD_HEADER {
        if h[..4] != use_tag(nonce) {
            return None;
        }
        h = &h[4..];
    }
    let len = u32::from_le_bytes(h[..4].try_into().expect("4 bytes")) as usize;
    let sum = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes"));
    let lsn = u64::from_le_bytes(h[8..16].try_into().expect("8 bytes"));
    let synced = (header == RECORD_HEADER)
        .then(|| u64::from_le_bytes(h[16..24].try_into().expect("8 bytes")));
    let start = pos + header;
    if len == 0 || start + len > bytes.len() || !lsn_ok(lsn) {
        return None;
    }
    let payload = &bytes[start..start + len];
    (crc(nonce, lsn, synced, payload) == sum).then_some((
        lsn,
        synced.unwrap_or(0),
        payload,
        start + len,
    ))
}

/// Intact records of one file: those of its current use only, in the order written. Past
/// a break, intact records of the same use are looked for too (by their use tag): their
/// sync marks tell damage to synced records from a torn tail, and they are what fjall may
/// still lack when the damage is to records it holds.
fn scan_file(bytes: &[u8], applied: u64, out: &mut Vec<(u64, Vec<u8>)>) -> Scanned {
    let mut found = Scanned {
        last: None,
        stop: 0,
        synced: 0,
        broken: false,
        stranded: false,
    };
    let header = match bytes.get(..8) {
        Some(m) if m == MAGIC => RECORD_HEADER,
        Some(m) if m == MAGIC_V1 => RECORD_HEADER_V1,
        _ => return found,
    };
    if bytes.len() < HEADER_BYTES as usize {
        return found;
    }
    let nonce = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let mut pos = HEADER_BYTES as usize;
    while let Some((lsn, synced, payload, end)) = record_at(bytes, pos, nonce, header, |lsn| {
        found.last.is_none_or(|l| lsn == l + 1)
    }) {
        if lsn > applied {
            out.push((lsn, payload.to_vec()));
        }
        found.last = Some(lsn);
        found.synced = found.synced.max(synced);
        pos = end;
    }
    found.stop = pos as u64;
    found.broken = bytes[pos..]
        .get(..header)
        .is_some_and(|h| h.iter().any(|b| *b != 0));
    if header == RECORD_HEADER {
        let tag = use_tag(nonce);
        let floor = found.last.unwrap_or(0);
        let mut at = pos + 1;
        while let Some(i) = bytes.get(at..).and_then(|b| memchr::memmem::find(b, &tag)) {
            at += i;
            match record_at(bytes, at, nonce, header, |lsn| lsn > floor) {
                Some((lsn, synced, payload, end)) => {
                    if lsn > applied {
                        out.push((lsn, payload.to_vec()));
                    }
                    found.synced = found.synced.max(synced);
                    found.stranded = true;
                    at = end;
                }
                None => at += 1,
            }
        }
    }
    found
}

impl Wal {
    /// Opens the log in `dir`, returning the records past `applied` (the LSN fjall holds
    /// durably), and starts the thread that zero-fills spare segments.
    pub fn open(dir: &Path, applied: u64) -> io::Result<(Self, Recovered)> {
        std::fs::create_dir_all(dir)?;
        let mut found: Vec<(u64, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let id = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".wal"))
                .and_then(|n| u64::from_str_radix(n, 16).ok());
            match id {
                Some(id) => found.push((id, path)),
                // An interrupted zero-fill: the preparer writes under a temporary name.
                None if path.extension().is_some_and(|e| e == "tmp") => {
                    std::fs::remove_file(&path)?;
                }
                None => {}
            }
        }
        found.sort();
        let mut records = Vec::new();
        let mut last_lsn = applied;
        let mut synced = applied;
        let mut scans = Vec::new();
        let mut free = Vec::new();
        let mut surplus = Vec::new();
        let mut next_id = 1;
        for (id, path) in found {
            next_id = next_id.max(id + 1);
            let bytes = std::fs::read(&path)?;
            let scan = scan_file(&bytes, applied, &mut records);
            last_lsn = last_lsn.max(scan.last.unwrap_or(0));
            synced = synced.max(scan.synced);
            scans.push((path.clone(), scan));
            let file = OpenOptions::new().read(true).write(true).open(&path)?;
            let capacity = file.metadata()?.len();
            let seg = Segment {
                id,
                file: Arc::new(file),
                capacity,
                last_lsn: 0,
            };
            // Once the caller has replayed the records into fjall, every file is free. The
            // ones beyond the spares kept are deleted only after that (see `release`): a
            // crash during the replay finds them again.
            if capacity <= SEGMENT_BYTES && free.len() < MAX_FREE {
                free.push(seg);
            } else {
                surplus.push(seg);
            }
        }
        // Files are written one after another, so sorting by LSN restores the log's order;
        // only an unbroken run from `applied` counts.
        records.sort_by_key(|(lsn, _)| *lsn);
        records.dedup_by_key(|(lsn, _)| *lsn);
        let unbroken = records
            .iter()
            .enumerate()
            .take_while(|(i, (lsn, _))| *lsn == applied + 1 + *i as u64)
            .count();
        let reach = applied + unbroken as u64;
        if reach < synced {
            return Err(damaged(dir, &scans, reach, synced));
        }
        if unbroken < records.len() {
            tracing::warn!(
                kept = unbroken,
                dropped = records.len() - unbroken,
                "write-ahead log has a gap (a machine crash during a write); records after it were never acknowledged and are dropped"
            );
            records.truncate(unbroken);
        }
        let (want_spare, requests) = mpsc::channel::<u64>();
        let (spare_tx, spares) = mpsc::channel();
        let prep_dir = dir.to_path_buf();
        let preparer = std::thread::Builder::new()
            .name("switchyard-wal-prep".into())
            .spawn(move || {
                crate::priority::background();
                for id in requests {
                    if spare_tx
                        .send(prepare(&prep_dir, id, SEGMENT_BYTES, true))
                        .is_err()
                    {
                        break;
                    }
                }
            })?;
        let mut wal = Wal {
            dir: dir.to_path_buf(),
            active: None,
            pos: 0,
            unwritten: Vec::new(),
            nonce: 0,
            full: surplus
                .into_iter()
                .map(|seg| Segment { last_lsn, ..seg })
                .collect(),
            free,
            next_lsn: last_lsn + 1,
            // Whatever the caller does not replay from `records` (none, or those after a
            // gap) it records as applied along with them.
            synced: last_lsn,
            next_id,
            unsynced: false,
            left: Vec::new(),
            spares,
            want_spare: Some(want_spare),
            spare_pending: false,
            preparer: Some(preparer),
        };
        if wal.free.is_empty() {
            // A new store: a small first segment zero-filled now (a few milliseconds), so
            // the first writes sync fast too; full-size ones follow in the background.
            let id = wal.take_id();
            wal.free.push(prepare(dir, id, FIRST_SEGMENT_BYTES, false)?);
            wal.request_spare();
        }
        Ok((wal, Recovered { records, last_lsn }))
    }

    /// A buffer for the next record, with room for `payload` bytes: the payload goes after
    /// the first `RECORD_HEADER` bytes, which `append` fills in.
    pub fn record_buf(payload: usize) -> Vec<u8> {
        let mut buf = Vec::with_capacity(RECORD_HEADER + payload);
        buf.resize(RECORD_HEADER, 0);
        buf
    }

    /// Appends one record (built in a `record_buf`) and returns its LSN. It reaches the OS
    /// with the next `write_out` and the disk with the next `sync`.
    pub fn append(&mut self, record: &mut [u8]) -> io::Result<u64> {
        let len = record.len() as u64;
        let payload_len = u32::try_from(len - RECORD_HEADER as u64)
            .map_err(|_| io::Error::other("write-ahead log record over 4 GiB"))?;
        let fits = self
            .active
            .as_ref()
            .is_some_and(|s| self.pos + len <= s.capacity);
        if !fits {
            self.roll(len)?;
        }
        let lsn = self.next_lsn;
        let sum = crc(self.nonce, lsn, Some(self.synced), &record[RECORD_HEADER..]);
        record[..4].copy_from_slice(&use_tag(self.nonce));
        record[4..8].copy_from_slice(&payload_len.to_le_bytes());
        record[8..12].copy_from_slice(&sum.to_le_bytes());
        record[12..20].copy_from_slice(&lsn.to_le_bytes());
        record[20..28].copy_from_slice(&self.synced.to_le_bytes());
        let seg = self.active.as_mut().expect("rolled above");
        self.unwritten.extend_from_slice(record);
        seg.last_lsn = lsn;
        self.pos += len;
        self.next_lsn += 1;
        self.unsynced = true;
        Ok(lsn)
    }

    /// Bytes appended and not yet handed to the OS.
    pub fn unwritten(&self) -> usize {
        self.unwritten.len()
    }

    /// Hands every appended record to the OS: from then on it survives the process being
    /// killed, and a sync of the files [`files_to_sync`](Self::files_to_sync) names makes
    /// it durable.
    pub fn write_out(&mut self) -> io::Result<()> {
        if self.unwritten.is_empty() {
            return Ok(());
        }
        let seg = self
            .active
            .as_ref()
            .expect("appended records have a segment");
        let at = self.pos - self.unwritten.len() as u64;
        seg.file.write_all_at(&self.unwritten, at)?;
        self.unwritten.clear();
        if self.unwritten.capacity() > MAX_KEPT_BUFFER {
            // A huge record passed through; do not keep its room.
            self.unwritten = Vec::new();
        }
        Ok(())
    }

    /// Writes out every appended record and returns the files whose sync makes them all
    /// durable, in log order, so that the caller can sync them without holding the log.
    /// They are no longer named by later calls, so the sync must follow before anyone
    /// is told the records are durable.
    pub fn files_to_sync(&mut self) -> io::Result<Vec<Arc<File>>> {
        self.write_out()?;
        let mut files = std::mem::take(&mut self.left);
        if self.unsynced {
            files.extend(self.active.as_ref().map(|s| s.file.clone()));
            self.unsynced = false;
        }
        Ok(files)
    }

    /// LSN of the last record appended: what a sync of the files
    /// [`files_to_sync`](Self::files_to_sync) names makes durable.
    pub fn appended(&self) -> u64 {
        self.next_lsn - 1
    }

    /// Records that every record up to `lsn` is durable; records appended from now on say
    /// so, which lets a scan tell damage to them from a torn tail.
    pub fn mark_synced(&mut self, lsn: u64) {
        self.synced = self.synced.max(lsn);
    }

    /// Makes every appended record durable.
    pub fn sync(&mut self) -> io::Result<()> {
        let upto = self.appended();
        for file in self.files_to_sync()? {
            file.sync_data()?;
        }
        self.mark_synced(upto);
        Ok(())
    }

    /// Frees the segments whose records fjall now holds durably (`durable` and below).
    pub fn release(&mut self, durable: u64) {
        while self.full.front().is_some_and(|s| s.last_lsn <= durable) {
            let seg = self.full.pop_front().expect("checked above");
            if seg.capacity == SEGMENT_BYTES && self.free.len() < MAX_FREE {
                self.free.push(seg);
            } else {
                let path = seg_path(&self.dir, seg.id);
                drop(seg);
                if let Err(e) = std::fs::remove_file(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove a write-ahead log segment");
                }
            }
        }
    }

    /// Starts a new segment with room for a record of `need` bytes.
    fn roll(&mut self, need: u64) -> io::Result<()> {
        // The old segment's records go out now; its sync is left to whoever syncs next (see
        // `files_to_sync`), so a roll on a caller's thread does not wait for the disk.
        self.write_out()?;
        if let Some(old) = self.active.take() {
            if std::mem::take(&mut self.unsynced) {
                self.left.push(old.file.clone());
            }
            self.full.push_back(old);
        }
        if let Ok(spare) = self.spares.try_recv() {
            self.spare_pending = false;
            match spare {
                Ok(seg) => self.free.push(seg),
                // Not fatal: the log goes on in plain files, only with slower syncs.
                Err(e) => tracing::warn!(error = %e, "cannot zero-fill a write-ahead log segment"),
            }
        }
        let mut seg = match self.free.pop() {
            Some(seg) if need + HEADER_BYTES <= seg.capacity => seg,
            other => {
                self.free.extend(other);
                // None ready (the preparer fell behind, or the record is bigger than a
                // segment): a plain file, correct but with slower syncs while it lasts.
                let capacity = SEGMENT_BYTES.max(need + HEADER_BYTES);
                let id = self.take_id();
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(seg_path(&self.dir, id))?;
                file.set_len(capacity)?;
                sync_dir(&self.dir)?;
                Segment {
                    id,
                    file: Arc::new(file),
                    capacity,
                    last_lsn: 0,
                }
            }
        };
        if self.free.is_empty() {
            self.request_spare();
        }
        self.nonce = random_nonce();
        let mut header = [0u8; HEADER_BYTES as usize];
        header[..8].copy_from_slice(MAGIC);
        header[8..].copy_from_slice(&self.nonce.to_le_bytes());
        seg.file.write_all_at(&header, 0)?;
        seg.last_lsn = 0;
        self.active = Some(seg);
        self.pos = HEADER_BYTES;
        self.unsynced = true;
        Ok(())
    }

    fn request_spare(&mut self) {
        if !self.spare_pending {
            let id = self.take_id();
            self.spare_pending = self.want_spare.as_ref().is_some_and(|w| w.send(id).is_ok());
        }
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

/// The error that stops a log from opening when records that were synced, and so may
/// have been acknowledged, cannot be read: `reach` is the last LSN read without a break,
/// `synced` the highest sync mark found.
fn damaged(dir: &Path, scans: &[(PathBuf, Scanned)], reach: u64, synced: u64) -> io::Error {
    // The record after `reach` belongs where the scan of the file holding `reach` stopped
    // (or at the start of the next file, when it did not fit).
    // Or where a file's records break off with intact ones after the break.
    let holder = scans.iter().find(|(_, s)| s.last == Some(reach));
    let place = match holder {
        Some((path, s)) if s.broken => format!("{} at byte {}", path.display(), s.stop),
        _ => match scans.iter().find(|(_, s)| s.broken && s.stranded) {
            Some((path, s)) => format!("{} at byte {}", path.display(), s.stop),
            None => match holder {
                Some((path, s)) => format!(
                    "the segment written after {}, which ends cleanly at byte {}",
                    path.display(),
                    s.stop
                ),
                None => format!("the first record after {reach} in {}", dir.display()),
            },
        },
    };
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "write-ahead log record {} is damaged or missing ({place}), but a later record says \
             every record up to {synced} was synced, so acknowledged writes would be lost; \
             the store was not opened (restore the data directory from a backup)",
            reach + 1
        ),
    )
}

/// LSN and sync mark of each intact record in the log in `dir`, in LSN order.
#[cfg(test)]
pub fn marks(dir: &Path) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("the log's dir") {
        let bytes = std::fs::read(entry.expect("an entry").path()).expect("a log file");
        if bytes.get(..8) != Some(MAGIC) {
            continue;
        }
        let nonce = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
        let mut pos = HEADER_BYTES as usize;
        while let Some((lsn, synced, _, end)) =
            record_at(&bytes, pos, nonce, RECORD_HEADER, |_| true)
        {
            out.push((lsn, synced));
            pos = end;
        }
    }
    out.sort();
    out
}

fn random_nonce() -> u64 {
    let mut b = [0u8; 8];
    // The OS's random source only fails on exotic systems; a time-based nonce is still
    // unique enough to tell one use of a file from the previous one.
    if getrandom::fill(&mut b).is_err() {
        return std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
    }
    u64::from_ne_bytes(b)
}

/// Zero-fills a segment under a temporary name, then gives it its real one, so a crash
/// midway leaves nothing that looks like a segment.
fn prepare(dir: &Path, id: u64, capacity: u64, paced: bool) -> io::Result<Segment> {
    let tmp = dir.join(format!("{id:016x}.tmp"));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    // A megabyte at a time, each synced before the next, with a pause between: written in
    // one go, the whole segment would sit in the disk's queue ahead of the active segment's
    // syncs and stall them for tens of milliseconds.
    let zeros = vec![0u8; 1 << 20];
    let mut off = 0;
    while off < capacity {
        file.write_all_at(&zeros[..(capacity - off).min(1 << 20) as usize], off)?;
        off += zeros.len() as u64;
        if paced {
            file.sync_data()?;
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
    file.sync_all()?;
    std::fs::rename(&tmp, seg_path(dir, id))?;
    sync_dir(dir)?;
    Ok(Segment {
        id,
        file: Arc::new(file),
        capacity,
        last_lsn: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(payload: &[u8]) -> Vec<u8> {
        let mut b = Wal::record_buf(payload.len());
        b.extend_from_slice(payload);
        b
    }

    fn payloads(r: &Recovered) -> Vec<(u64, Vec<u8>)> {
        r.records.clone()
    }

    #[test]
    fn records_come_back_after_reopen_from_the_applied_point() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut wal, r) = Wal::open(dir.path(), 0).unwrap();
            assert!(r.records.is_empty());
            for i in 1..=5u8 {
                assert_eq!(wal.append(&mut rec(&[i; 10])).unwrap(), i as u64);
            }
            wal.sync().unwrap();
        }
        let (_, r) = Wal::open(dir.path(), 2).unwrap();
        assert_eq!(
            payloads(&r),
            vec![(3, vec![3; 10]), (4, vec![4; 10]), (5, vec![5; 10])]
        );
        assert_eq!(r.last_lsn, 5);
    }

    #[test]
    fn a_torn_tail_ends_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let (mut wal, _) = Wal::open(dir.path(), 0).unwrap();
            for i in 1..=3u8 {
                wal.append(&mut rec(&[i; 100])).unwrap();
            }
            wal.sync().unwrap();
            wal.active.as_ref().unwrap().id
        };
        // Corrupt a byte of the third record's payload.
        let path = seg_path(dir.path(), id);
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        let third = HEADER_BYTES + 2 * (RECORD_HEADER as u64 + 100) + RECORD_HEADER as u64;
        f.write_all_at(&[0xff], third + 5).unwrap();
        let (_, r) = Wal::open(dir.path(), 0).unwrap();
        assert_eq!(
            r.records.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
            [1, 2]
        );
    }

    /// Offset of record `n` (from 1) in a file of records of `size` bytes of payload.
    fn at(n: u64, size: u64) -> u64 {
        HEADER_BYTES + (n - 1) * (RECORD_HEADER as u64 + size)
    }

    fn damage(path: &Path, offset: u64) {
        let f = OpenOptions::new().write(true).open(path).unwrap();
        f.write_all_at(&[0x5a], offset).unwrap();
    }

    /// Writes records 1..=3 and syncs, then 4 and 5, synced or only written out; returns
    /// the file.
    fn two_batches(dir: &Path, second_synced: bool) -> PathBuf {
        let (mut wal, _) = Wal::open(dir, 0).unwrap();
        for i in 1..=3u8 {
            wal.append(&mut rec(&[i; 100])).unwrap();
        }
        wal.sync().unwrap();
        for i in 4..=5u8 {
            wal.append(&mut rec(&[i; 100])).unwrap();
        }
        if second_synced {
            wal.sync().unwrap();
        } else {
            wal.write_out().unwrap();
        }
        seg_path(dir, wal.active.as_ref().unwrap().id)
    }

    fn lsns(r: &Recovered) -> Vec<u64> {
        r.records.iter().map(|(l, _)| *l).collect()
    }

    #[test]
    fn damage_to_a_synced_record_stops_the_open_naming_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = two_batches(dir.path(), true);
        // Record 2 was synced, and records 4 and 5 say so.
        damage(&path, at(2, 100) + RECORD_HEADER as u64 + 7);
        let e = Wal::open(dir.path(), 0).err().expect("the open fails");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        let msg = e.to_string();
        let want = format!("{} at byte {}", path.display(), at(2, 100));
        assert!(msg.contains("record 2 is damaged"), "{msg}");
        assert!(msg.contains(&want), "{msg} names {want}");
        // Records fjall already holds are not needed: past them, the log opens.
        let (_, r) = Wal::open(dir.path(), 2).unwrap();
        assert_eq!(lsns(&r), [3, 4, 5]);
    }

    #[test]
    fn a_torn_unsynced_tail_is_dropped_and_the_synced_records_kept() {
        // A flipped byte in the unsynced batch, the batch zeroed, the file cut short.
        type Tear = fn(&Path);
        let tears: [(&str, Tear, &[u64]); 4] = [
            ("last record", |p| damage(p, at(5, 100) + 40), &[1, 2, 3, 4]),
            (
                "first unsynced record",
                |p| damage(p, at(4, 100) + 3),
                &[1, 2, 3],
            ),
            (
                "zeroed",
                |p| {
                    let f = OpenOptions::new().write(true).open(p).unwrap();
                    f.write_all_at(&[0; 2 * (RECORD_HEADER + 100)], at(4, 100))
                        .unwrap();
                },
                &[1, 2, 3],
            ),
            (
                "truncated",
                |p| {
                    let f = OpenOptions::new().write(true).open(p).unwrap();
                    f.set_len(at(4, 100) + 30).unwrap();
                },
                &[1, 2, 3],
            ),
        ];
        for (what, tear, kept) in tears {
            let dir = tempfile::tempdir().unwrap();
            let path = two_batches(dir.path(), false);
            tear(&path);
            let (_, r) = Wal::open(dir.path(), 0).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(lsns(&r), kept, "{what}");
            assert!(
                r.records.iter().all(|(l, p)| p == &vec![*l as u8; 100]),
                "{what}"
            );
        }
    }

    #[test]
    fn damage_at_the_start_of_a_later_segment_is_found_too() {
        let dir = tempfile::tempdir().unwrap();
        let half = vec![3u8; (FIRST_SEGMENT_BYTES / 2) as usize];
        let (first, second) = {
            let (mut wal, _) = Wal::open(dir.path(), 0).unwrap();
            wal.append(&mut rec(&half)).unwrap();
            let first = wal.active.as_ref().unwrap().id;
            wal.sync().unwrap();
            wal.append(&mut rec(&half)).unwrap();
            let second = wal.active.as_ref().unwrap().id;
            assert_ne!(first, second, "the second record rolled the log");
            wal.sync().unwrap();
            wal.append(&mut rec(&half)).unwrap();
            wal.sync().unwrap();
            (first, second)
        };
        damage(&seg_path(dir.path(), second), HEADER_BYTES + 100);
        let msg = Wal::open(dir.path(), 0)
            .err()
            .expect("the open fails")
            .to_string();
        assert!(msg.contains("record 2 is damaged"), "{msg}");
        let want = format!(
            "{} at byte {HEADER_BYTES}",
            seg_path(dir.path(), second).display()
        );
        assert!(msg.contains(&want), "{msg} names {want}");
        assert!(!msg.contains(&seg_path(dir.path(), first).display().to_string()));
    }

    #[test]
    fn segments_of_the_earlier_format_are_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let nonce = 77u64;
        let mut bytes = MAGIC_V1.to_vec();
        bytes.extend_from_slice(&nonce.to_le_bytes());
        for lsn in 1..=2u64 {
            let payload = [lsn as u8; 9];
            bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&crc(nonce, lsn, None, &payload).to_le_bytes());
            bytes.extend_from_slice(&lsn.to_le_bytes());
            bytes.extend_from_slice(&payload);
        }
        bytes.resize(4096, 0);
        std::fs::write(seg_path(dir.path(), 1), bytes).unwrap();
        let (mut wal, r) = Wal::open(dir.path(), 0).unwrap();
        assert_eq!(payloads(&r), vec![(1, vec![1; 9]), (2, vec![2; 9])]);
        assert_eq!(wal.append(&mut rec(b"next")).unwrap(), 3);
    }

    #[test]
    fn a_reused_segment_does_not_replay_its_old_records() {
        let dir = tempfile::tempdir().unwrap();
        let files = || {
            let mut v: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            v.sort();
            v
        };
        let id = {
            let (mut wal, _) = Wal::open(dir.path(), 0).unwrap();
            for i in 1..=4u8 {
                wal.append(&mut rec(&[i; 50])).unwrap();
            }
            wal.sync().unwrap();
            wal.active.as_ref().unwrap().id
        };
        // Only the written file is left, so it is the one reused.
        for f in files() {
            if f.to_str() != seg_path(dir.path(), id).file_name().unwrap().to_str() {
                std::fs::remove_file(dir.path().join(f)).unwrap();
            }
        }
        // Everything applied: the file becomes free and is reused from its start by a
        // shorter run, leaving the old records 3 and 4 behind the new tail.
        {
            let (mut wal, r) = Wal::open(dir.path(), 4).unwrap();
            assert!(r.records.is_empty());
            assert_eq!(r.last_lsn, 4);
            assert_eq!(wal.append(&mut rec(&[9; 50])).unwrap(), 5);
            assert_eq!(wal.append(&mut rec(&[9; 50])).unwrap(), 6);
            wal.sync().unwrap();
            assert_eq!(
                wal.active.as_ref().unwrap().id,
                id,
                "the free file is reused"
            );
        }
        let (_, r) = Wal::open(dir.path(), 4).unwrap();
        assert_eq!(payloads(&r), vec![(5, vec![9; 50]), (6, vec![9; 50])]);
    }

    #[test]
    fn records_span_segments_and_released_ones_are_reused() {
        let dir = tempfile::tempdir().unwrap();
        let big = vec![7u8; (SEGMENT_BYTES / 3) as usize];
        let mut written = 0;
        {
            let (mut wal, _) = Wal::open(dir.path(), 0).unwrap();
            for _ in 0..7 {
                written = wal.append(&mut rec(&big)).unwrap();
            }
            wal.sync().unwrap();
            assert!(wal.full.len() >= 2);
            wal.release(written - 1);
            assert!(wal.full.is_empty(), "all but the active segment are free");
            assert!(!wal.free.is_empty());
        }
        let (_, r) = Wal::open(dir.path(), 0).unwrap();
        assert_eq!(r.records.len(), 7);
        assert_eq!(r.last_lsn, written);
        assert!(r.records.iter().all(|(_, p)| p == &big));
    }

    #[test]
    fn a_roll_leaves_the_old_segments_sync_to_the_next_sync() {
        let dir = tempfile::tempdir().unwrap();
        let half = vec![3u8; (FIRST_SEGMENT_BYTES / 2) as usize];
        {
            let (mut wal, _) = Wal::open(dir.path(), 0).unwrap();
            for _ in 0..3 {
                wal.append(&mut rec(&half)).unwrap();
            }
            assert_eq!(wal.full.len(), 1, "the second record rolled the log");
            let files = wal.files_to_sync().unwrap();
            assert_eq!(
                files.len(),
                2,
                "the segment left behind, then the active one"
            );
            assert!(wal.files_to_sync().unwrap().is_empty(), "nothing new since");
            for f in files {
                f.sync_data().unwrap();
            }
        }
        let (_, r) = Wal::open(dir.path(), 0).unwrap();
        assert_eq!(r.records.len(), 3);
    }

    #[test]
    fn a_record_larger_than_a_segment_gets_a_file_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let huge = vec![1u8; SEGMENT_BYTES as usize + 10];
        {
            let (mut wal, _) = Wal::open(dir.path(), 0).unwrap();
            wal.append(&mut rec(b"small")).unwrap();
            wal.append(&mut rec(&huge)).unwrap();
            wal.append(&mut rec(b"after")).unwrap();
            wal.sync().unwrap();
        }
        let (_, r) = Wal::open(dir.path(), 0).unwrap();
        assert_eq!(r.records.len(), 3);
        assert_eq!(r.records[1].1.len(), huge.len());
        assert_eq!(r.records[2].1, b"after");
    }
}
