//! A filesystem that loses what was not synced, for power-cut tests: the idea of LazyFS
//! (which Jepsen uses), in memory, served over FUSE from the test process.
//!
//! Every write lands in the file at once, so the running server reads what it wrote, but
//! the bytes it overwrote are kept until the file is synced (`fsync` or `fdatasync`).
//! [`CutFs::power_cut`] unmounts (dropping every kernel cache of the mount), puts back
//! the overwritten bytes of every file since its last sync, cuts each file to its last
//! synced length, and mounts again: what a machine that lost power would find. Metadata
//! (creating, renaming and deleting files and directories, and a file's length set by
//! `truncate` or `fallocate`) is kept at once, as a journalling filesystem keeps it; what
//! is lost is file data, which is what a program's syncs are for.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
    WriteFlags,
};

/// Attributes and entries are not cached by the kernel: a server and the test both look.
const TTL: Duration = Duration::ZERO;
const BLOCK: u64 = 4096;

/// The mounted filesystem; unmounted when dropped.
pub struct CutFs {
    dir: PathBuf,
    state: Arc<Mutex<State>>,
    session: Option<BackgroundSession>,
}

impl CutFs {
    /// Mounts an empty filesystem on `dir` (an existing, empty directory).
    pub fn mount(dir: &Path) -> CutFs {
        let mut root = Node::new(Kind::Dir(BTreeMap::new()), 0o755);
        root.nlink = 2;
        let state = State {
            nodes: HashMap::from([(INodeNo::ROOT.0, root)]),
            next_ino: INodeNo::ROOT.0 + 1,
            unsynced_bytes_lost: 0,
        };
        let mut fs = CutFs {
            dir: dir.to_path_buf(),
            state: Arc::new(Mutex::new(state)),
            session: None,
        };
        fs.attach();
        fs
    }

    fn attach(&mut self) {
        let mut config = Config::default();
        config.mount_options = vec![MountOption::FSName("cutfs".into())];
        let session = fuser::spawn_mount(
            Served {
                state: self.state.clone(),
            },
            &self.dir,
            &config,
        )
        .unwrap_or_else(|e| {
            panic!(
                "mounting the power-cut filesystem on {} failed ({e}): this test needs \
                 root and /dev/fuse",
                self.dir.display()
            )
        });
        self.session = Some(session);
    }

    fn detach(&mut self) {
        if let Some(session) = self.session.take() {
            session
                .umount_and_join()
                .expect("unmount the power-cut filesystem (is a process still using it?)");
        }
    }

    /// Loses everything not synced, as a power cut would, and mounts the result. Whoever
    /// wrote to it must be dead (a process killed and reaped). Returns how many bytes of
    /// file data were put back or cut off.
    pub fn power_cut(&mut self) -> u64 {
        self.detach();
        let lost = self.state.lock().expect("never poisoned").cut();
        self.attach();
        lost
    }
}

impl Drop for CutFs {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            // Lazily, so a test failing with a server still in the mount cleans up too.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.dir)
                .status();
            drop(session);
        }
    }
}

struct State {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    unsynced_bytes_lost: u64,
}

struct Node {
    kind: Kind,
    perm: u16,
    nlink: u32,
    mtime: SystemTime,
    /// Open handles: an unlinked file lives until the last is released.
    open: u32,
}

enum Kind {
    Dir(BTreeMap<OsString, u64>),
    File(Data),
}

#[derive(Default)]
struct Data {
    bytes: Vec<u8>,
    /// The length a power cut leaves.
    synced_len: usize,
    /// What each write since the last sync overwrote, oldest first.
    undo: Vec<(usize, Vec<u8>)>,
}

impl Data {
    fn write(&mut self, at: usize, buf: &[u8]) {
        let end = at + buf.len();
        let kept_end = end.min(self.bytes.len());
        if at < kept_end {
            self.undo.push((at, self.bytes[at..kept_end].to_vec()));
        }
        if end > self.bytes.len() {
            self.bytes.resize(end, 0);
        }
        self.bytes[at..end].copy_from_slice(buf);
    }

    /// A length set by truncate or fallocate: metadata, kept at once.
    fn set_len(&mut self, len: usize) {
        self.bytes.resize(len, 0);
        self.synced_len = len;
    }

    fn sync(&mut self) {
        self.undo.clear();
        self.synced_len = self.bytes.len();
    }

    fn cut(&mut self) -> u64 {
        let mut lost = 0;
        for (at, old) in self.undo.drain(..).rev() {
            let end = at + old.len();
            if self.bytes.len() < end {
                self.bytes.resize(end, 0);
            }
            lost += old.len() as u64;
            self.bytes[at..end].copy_from_slice(&old);
        }
        lost += self.bytes.len().saturating_sub(self.synced_len) as u64;
        self.bytes.resize(self.synced_len, 0);
        lost
    }
}

impl Node {
    fn new(kind: Kind, perm: u16) -> Node {
        Node {
            kind,
            perm,
            nlink: 1,
            mtime: SystemTime::now(),
            open: 0,
        }
    }

    fn attr(&self, ino: u64) -> FileAttr {
        let (kind, size) = match &self.kind {
            Kind::Dir(_) => (FileType::Directory, BLOCK),
            Kind::File(d) => (FileType::RegularFile, d.bytes.len() as u64),
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: self.mtime,
            mtime: self.mtime,
            ctime: self.mtime,
            crtime: self.mtime,
            kind,
            perm: self.perm,
            nlink: self.nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: BLOCK as u32,
            flags: 0,
        }
    }
}

impl State {
    fn cut(&mut self) -> u64 {
        // Files unlinked while open are gone with the processes that held them.
        self.nodes.retain(|_, n| n.nlink > 0);
        let lost: u64 = self
            .nodes
            .values_mut()
            .filter_map(|n| match &mut n.kind {
                Kind::File(d) => Some(d.cut()),
                Kind::Dir(_) => None,
            })
            .sum();
        for n in self.nodes.values_mut() {
            n.open = 0;
        }
        self.unsynced_bytes_lost += lost;
        lost
    }

    fn dir(&mut self, ino: INodeNo) -> Result<&mut BTreeMap<OsString, u64>, Errno> {
        match self.nodes.get_mut(&ino.0).map(|n| &mut n.kind) {
            Some(Kind::Dir(entries)) => Ok(entries),
            Some(Kind::File(_)) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn file(&mut self, ino: INodeNo) -> Result<&mut Data, Errno> {
        match self.nodes.get_mut(&ino.0).map(|n| &mut n.kind) {
            Some(Kind::File(d)) => Ok(d),
            Some(Kind::Dir(_)) => Err(Errno::EISDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn attr(&self, ino: u64) -> Result<FileAttr, Errno> {
        self.nodes
            .get(&ino)
            .map(|n| n.attr(ino))
            .ok_or(Errno::ENOENT)
    }

    fn add(&mut self, parent: INodeNo, name: &OsStr, node: Node) -> Result<u64, Errno> {
        let ino = self.next_ino;
        let entries = self.dir(parent)?;
        if entries.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        entries.insert(name.to_owned(), ino);
        self.next_ino += 1;
        self.nodes.insert(ino, node);
        Ok(ino)
    }

    /// Drops one link to `ino`; the node goes once no link and no handle is left.
    fn unlink_node(&mut self, ino: u64) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.nlink = n.nlink.saturating_sub(1);
            if n.nlink == 0 && n.open == 0 {
                self.nodes.remove(&ino);
            }
        }
    }
}

/// The FUSE side: every call takes the state's lock.
struct Served {
    state: Arc<Mutex<State>>,
}

impl Served {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("never poisoned")
    }
}

fn at(offset: u64) -> usize {
    usize::try_from(offset).expect("offsets fit in memory")
}

impl Filesystem for Served {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut s = self.state();
        let found = s
            .dir(parent)
            .and_then(|e| e.get(name).copied().ok_or(Errno::ENOENT));
        match found.and_then(|ino| s.attr(ino)) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.state().attr(ino.0) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut s = self.state();
        if let Some(size) = size {
            match s.file(ino) {
                Ok(d) => d.set_len(at(size)),
                Err(e) => return reply.error(e),
            }
        }
        let Some(n) = s.nodes.get_mut(&ino.0) else {
            return reply.error(Errno::ENOENT);
        };
        if let Some(mode) = mode {
            n.perm = (mode & 0o7777) as u16;
        }
        if size.is_some() || mtime.is_some() {
            n.mtime = SystemTime::now();
        }
        reply.attr(&TTL, &n.attr(ino.0));
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mut s = self.state();
        let mut node = Node::new(Kind::Dir(BTreeMap::new()), (mode & !umask & 0o7777) as u16);
        node.nlink = 2;
        match s.add(parent, name, node).and_then(|ino| s.attr(ino)) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut s = self.state();
        let removed = s
            .dir(parent)
            .and_then(|e| e.remove(name).ok_or(Errno::ENOENT));
        match removed {
            Ok(ino) => {
                s.unlink_node(ino);
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut s = self.state();
        let Some(ino) = s.dir(parent).ok().and_then(|e| e.get(name).copied()) else {
            return reply.error(Errno::ENOENT);
        };
        match s.dir(INodeNo(ino)) {
            Ok(entries) if !entries.is_empty() => return reply.error(Errno::ENOTEMPTY),
            Ok(_) => {}
            Err(e) => return reply.error(e),
        }
        s.dir(parent).expect("checked above").remove(name);
        s.nodes.remove(&ino);
        reply.ok()
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let mut s = self.state();
        let Some(ino) = s.dir(parent).ok().and_then(|e| e.get(name).copied()) else {
            return reply.error(Errno::ENOENT);
        };
        let replaced = match s.dir(newparent) {
            Ok(e) => e.get(newname).copied(),
            Err(e) => return reply.error(e),
        };
        if let Some(old) = replaced {
            if old == ino {
                return reply.ok();
            }
            if let Ok(entries) = s.dir(INodeNo(old))
                && !entries.is_empty()
            {
                return reply.error(Errno::ENOTEMPTY);
            }
        }
        s.dir(parent).expect("checked above").remove(name);
        s.dir(newparent)
            .expect("checked above")
            .insert(newname.to_owned(), ino);
        if let Some(old) = replaced {
            s.unlink_node(old);
        }
        reply.ok()
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let mut s = self.state();
        if flags.0 & libc::O_TRUNC != 0
            && let Ok(d) = s.file(ino)
        {
            d.set_len(0);
        }
        match s.nodes.get_mut(&ino.0) {
            Some(n) => {
                n.open += 1;
                reply.opened(FileHandle(0), FopenFlags::empty())
            }
            None => reply.error(Errno::ENOENT),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut s = self.state();
        let existing = match s.dir(parent) {
            Ok(e) => e.get(name).copied(),
            Err(e) => return reply.error(e),
        };
        let ino = match existing {
            Some(_) if flags & libc::O_EXCL != 0 => return reply.error(Errno::EEXIST),
            Some(ino) => {
                if flags & libc::O_TRUNC != 0
                    && let Ok(d) = s.file(INodeNo(ino))
                {
                    d.set_len(0);
                }
                ino
            }
            None => {
                let node = Node::new(Kind::File(Data::default()), (mode & !umask & 0o7777) as u16);
                s.add(parent, name, node).expect("checked above")
            }
        };
        let n = s.nodes.get_mut(&ino).expect("just found or made");
        n.open += 1;
        let attr = n.attr(ino);
        reply.created(
            &TTL,
            &attr,
            Generation(0),
            FileHandle(0),
            FopenFlags::empty(),
        );
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let mut s = self.state();
        match s.file(ino) {
            Ok(d) => {
                let from = at(offset).min(d.bytes.len());
                let to = (from + size as usize).min(d.bytes.len());
                reply.data(&d.bytes[from..to])
            }
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut s = self.state();
        match s.file(ino) {
            Ok(d) => {
                d.write(at(offset), data);
                reply.written(data.len() as u32)
            }
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok()
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let mut s = self.state();
        if let Some(n) = s.nodes.get_mut(&ino.0) {
            n.open = n.open.saturating_sub(1);
            if n.open == 0 && n.nlink == 0 {
                s.nodes.remove(&ino.0);
            }
        }
        reply.ok()
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut s = self.state();
        if let Ok(d) = s.file(ino) {
            d.sync();
        }
        reply.ok()
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(0), FopenFlags::empty())
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut s = self.state();
        let entries: Vec<(OsString, u64)> = match s.dir(ino) {
            Ok(e) => e.iter().map(|(n, i)| (n.clone(), *i)).collect(),
            Err(e) => return reply.error(e),
        };
        let all = [(OsString::from("."), ino.0), (OsString::from(".."), ino.0)]
            .into_iter()
            .chain(entries);
        for (i, (name, child)) in all.enumerate().skip(at(offset)) {
            let kind = match s.nodes.get(&child).map(|n| &n.kind) {
                Some(Kind::File(_)) => FileType::RegularFile,
                _ => FileType::Directory,
            };
            if reply.add(INodeNo(child), i as u64 + 1, kind, &name) {
                break;
            }
        }
        reply.ok()
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok()
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let used: u64 = self
            .state()
            .nodes
            .values()
            .map(|n| match &n.kind {
                Kind::File(d) => (d.bytes.len() as u64).div_ceil(BLOCK),
                Kind::Dir(_) => 1,
            })
            .sum();
        let blocks = 16 << 20; // 64 GiB of 4 KiB blocks
        let free = blocks - used.min(blocks);
        reply.statfs(
            blocks,
            free,
            free,
            1 << 20,
            1 << 20,
            BLOCK as u32,
            255,
            BLOCK as u32,
        );
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok()
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if mode != 0 {
            return reply.error(Errno::EOPNOTSUPP);
        }
        let mut s = self.state();
        match s.file(ino) {
            Ok(d) => {
                let end = at(offset + length);
                if end > d.bytes.len() {
                    d.set_len(end);
                }
                reply.ok()
            }
            Err(e) => reply.error(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_puts_back_what_was_overwritten_and_cuts_what_was_appended_since_the_sync() {
        let mut d = Data::default();
        d.write(0, b"hello world");
        d.sync();
        d.write(6, b"there, friend");
        d.write(0, b"J");
        assert_eq!(d.bytes, b"Jello there, friend");
        let lost = d.cut();
        assert_eq!(d.bytes, b"hello world");
        assert!(lost > 0);
        d.set_len(20);
        d.write(15, b"abc");
        d.cut();
        assert_eq!(&d.bytes[..11], b"hello world");
        assert_eq!(
            d.bytes.len(),
            20,
            "a length set by truncate is metadata, kept"
        );
        assert!(d.bytes[11..].iter().all(|b| *b == 0));
    }
}
