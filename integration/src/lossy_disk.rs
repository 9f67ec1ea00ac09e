//! A disk that can lose power: a small in-memory FUSE filesystem (the
//! `fuser` crate) mounted under a node's data directory.
//!
//! Every file keeps two contents: what processes wrote, and what was
//! durable at its last `fsync`/`fdatasync`. [`LossyDisk::power_cut`]
//! turns every file back into its durable content, which is what a machine
//! that loses power keeps of a file whose writes sat in the page cache. It
//! can also fail every write and sync with EIO ([`LossyDisk::set_failing`])
//! or, as the negative control, make `fsync` a no-op that still reports
//! success ([`LossyDisk::set_lying`]): a disk that lies about syncing must
//! lose acknowledged writes, and the checks must catch it.
//!
//! Model, and its limits: directory entries (create, rename, unlink) are
//! durable at once, as on a journalling filesystem that commits metadata
//! in order; only file data waits for a sync. A power cut is whole-disk
//! and instantaneous, with no torn sectors. The kernel caches nothing: every
//! open is direct I/O and every attribute has a zero lifetime, so after a
//! cut the next process reads exactly the durable state.

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, UNIX_EPOCH};

/// Attributes and entries are never cached by the kernel.
const TTL: Duration = Duration::ZERO;
/// `fallocate` mode bit: allocate without changing the size.
const FALLOC_KEEP_SIZE: i32 = 1;

/// What the disk does with writes and syncs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Behaviour {
    failing: bool,
    lying: bool,
}

/// Counts of what the disk saw, for the test's report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskStats {
    /// `fsync`/`fdatasync` calls that made data durable.
    pub syncs: u64,
    /// Bytes turned back into their durable content by power cuts.
    pub bytes_lost: u64,
    /// Power cuts.
    pub power_cuts: u64,
}

struct File {
    data: Vec<u8>,
    durable: Vec<u8>,
    /// Byte ranges written since the last sync.
    dirty: Vec<(usize, usize)>,
}

impl File {
    fn mark(&mut self, start: usize, end: usize) {
        match self.dirty.last_mut() {
            Some(last) if last.1 == start => last.1 = end,
            _ => self.dirty.push((start, end)),
        }
    }

    fn sync(&mut self) {
        self.durable.resize(self.data.len(), 0);
        for (start, end) in self.dirty.drain(..) {
            let end = end.min(self.data.len());
            if start < end {
                self.durable[start..end].copy_from_slice(&self.data[start..end]);
            }
        }
    }

    /// Back to the durable content; returns the bytes that differed.
    fn cut(&mut self) -> u64 {
        let lost = self.dirty.iter().map(|(s, e)| (e - s) as u64).sum();
        self.data.clone_from(&self.durable);
        self.dirty.clear();
        lost
    }
}

enum Kind {
    File(File),
    Dir(BTreeMap<OsString, u64>),
}

struct Inode {
    kind: Kind,
    perm: u16,
    nlink: u32,
    opens: u32,
    parent: u64,
}

struct State {
    inodes: HashMap<u64, Inode>,
    next_ino: u64,
    next_fh: u64,
    behaviour: Behaviour,
    stats: DiskStats,
}

impl State {
    fn new() -> Self {
        let root = Inode {
            kind: Kind::Dir(BTreeMap::new()),
            perm: 0o755,
            nlink: 2,
            opens: 0,
            parent: 1,
        };
        Self {
            inodes: HashMap::from([(1, root)]),
            next_ino: 2,
            next_fh: 1,
            behaviour: Behaviour::default(),
            stats: DiskStats::default(),
        }
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let inode = self.inodes.get(&ino)?;
        let (kind, size) = match &inode.kind {
            Kind::File(file) => (FileType::RegularFile, file.data.len() as u64),
            Kind::Dir(entries) => (FileType::Directory, entries.len() as u64),
        };
        Some(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind,
            perm: inode.perm,
            nlink: inode.nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    fn dir(&mut self, ino: u64) -> Result<&mut BTreeMap<OsString, u64>, Errno> {
        match self.inodes.get_mut(&ino).map(|i| &mut i.kind) {
            Some(Kind::Dir(entries)) => Ok(entries),
            Some(Kind::File(_)) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn file(&mut self, ino: u64) -> Result<&mut File, Errno> {
        match self.inodes.get_mut(&ino).map(|i| &mut i.kind) {
            Some(Kind::File(file)) => Ok(file),
            Some(Kind::Dir(_)) => Err(Errno::EISDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn child(&mut self, parent: u64, name: &OsStr) -> Result<Option<u64>, Errno> {
        Ok(self.dir(parent)?.get(name).copied())
    }

    /// Add a new inode named `name` in `parent`.
    fn add(&mut self, parent: u64, name: &OsStr, kind: Kind, perm: u16) -> Result<u64, Errno> {
        if self.child(parent, name)?.is_some() {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let nlink = if matches!(kind, Kind::Dir(_)) { 2 } else { 1 };
        let inode = Inode {
            kind,
            perm,
            nlink,
            opens: 0,
            parent,
        };
        self.inodes.insert(ino, inode);
        self.dir(parent)?.insert(name.to_owned(), ino);
        Ok(ino)
    }

    /// Drop one link to `ino`; forget it once nothing names or opens it.
    fn unlink_inode(&mut self, ino: u64) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.nlink = inode.nlink.saturating_sub(1);
            if matches!(inode.kind, Kind::Dir(_)) {
                inode.nlink = 0;
            }
        }
        self.forget_if_unused(ino);
    }

    fn forget_if_unused(&mut self, ino: u64) {
        if self
            .inodes
            .get(&ino)
            .is_some_and(|i| i.nlink == 0 && i.opens == 0)
        {
            self.inodes.remove(&ino);
        }
    }

    fn remove(&mut self, parent: u64, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let ino = self.child(parent, name)?.ok_or(Errno::ENOENT)?;
        match (&self.inodes[&ino].kind, dir) {
            (Kind::Dir(entries), true) if !entries.is_empty() => return Err(Errno::ENOTEMPTY),
            (Kind::Dir(_), false) => return Err(Errno::EISDIR),
            (Kind::File(_), true) => return Err(Errno::ENOTDIR),
            _ => {}
        }
        self.dir(parent)?.remove(name);
        self.unlink_inode(ino);
        Ok(())
    }

    fn rename(
        &mut self,
        from: (u64, &OsStr),
        to: (u64, &OsStr),
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        let ino = self.child(from.0, from.1)?.ok_or(Errno::ENOENT)?;
        let replaced = self.child(to.0, to.1)?;
        if flags.contains(RenameFlags::RENAME_EXCHANGE) {
            return Err(Errno::EINVAL);
        }
        if let Some(old) = replaced {
            if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                return Err(Errno::EEXIST);
            }
            if old == ino {
                return Ok(());
            }
            if let Kind::Dir(entries) = &self.inodes[&old].kind
                && !entries.is_empty()
            {
                return Err(Errno::ENOTEMPTY);
            }
        }
        self.dir(from.0)?.remove(from.1);
        self.dir(to.0)?.insert(to.1.to_owned(), ino);
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.parent = to.0;
        }
        if let Some(old) = replaced {
            self.unlink_inode(old);
        }
        Ok(())
    }

    fn write(&mut self, ino: u64, offset: usize, data: &[u8]) -> Result<(), Errno> {
        if self.behaviour.failing {
            return Err(Errno::EIO);
        }
        let file = self.file(ino)?;
        let end = offset + data.len();
        if file.data.len() < end {
            file.data.resize(end, 0);
        }
        file.data[offset..end].copy_from_slice(data);
        file.mark(offset, end);
        Ok(())
    }

    fn resize(&mut self, ino: u64, size: usize) -> Result<(), Errno> {
        if self.behaviour.failing {
            return Err(Errno::EIO);
        }
        let file = self.file(ino)?;
        let old = file.data.len();
        file.data.resize(size, 0);
        file.mark(old.min(size), size);
        Ok(())
    }

    fn sync(&mut self, ino: u64) -> Result<(), Errno> {
        let Behaviour { failing, lying } = self.behaviour;
        if failing {
            return Err(Errno::EIO);
        }
        if let Some(Inode {
            kind: Kind::File(file),
            ..
        }) = self.inodes.get_mut(&ino)
            && !lying
        {
            file.sync();
            self.stats.syncs += 1;
        }
        Ok(())
    }

    fn power_cut(&mut self) {
        let mut lost = 0;
        for inode in self.inodes.values_mut() {
            if let Kind::File(file) = &mut inode.kind {
                lost += file.cut();
            }
        }
        self.stats.bytes_lost += lost;
        self.stats.power_cuts += 1;
    }
}

/// The filesystem served to the kernel; the state is shared with the test.
struct LossyFs {
    state: Arc<Mutex<State>>,
}

impl LossyFs {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("disk state")
    }

    fn entry(&self, result: Result<u64, Errno>, reply: ReplyEntry) {
        let state = self.state();
        match result.map(|ino| state.attr(ino)) {
            Ok(Some(attr)) => reply.entry(&TTL, &attr, Generation(0)),
            Ok(None) => reply.error(Errno::ENOENT),
            Err(e) => reply.error(e),
        }
    }
}

fn empty(result: Result<(), Errno>, reply: ReplyEmpty) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

fn perm(mode: u32, umask: u32) -> u16 {
    (mode & !umask & 0o7777) as u16
}

impl Filesystem for LossyFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = self.state().child(parent.0, name);
        self.entry(found.and_then(|c| c.ok_or(Errno::ENOENT)), reply);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.state().attr(ino.0) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
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
        _mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut state = self.state();
        if let Some(size) = size
            && let Err(e) = state.resize(ino.0, size as usize)
        {
            return reply.error(e);
        }
        if let (Some(mode), Some(inode)) = (mode, state.inodes.get_mut(&ino.0)) {
            inode.perm = perm(mode, 0);
        }
        match state.attr(ino.0) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
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
        let made = self.state().add(
            parent.0,
            name,
            Kind::Dir(BTreeMap::new()),
            perm(mode, umask),
        );
        self.entry(made, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(self.state().remove(parent.0, name, false), reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        empty(self.state().remove(parent.0, name, true), reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let renamed = self
            .state()
            .rename((parent.0, name), (newparent.0, newname), flags);
        empty(renamed, reply);
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut state = self.state();
        let fh = state.next_fh;
        state.next_fh += 1;
        match state.inodes.get_mut(&ino.0) {
            Some(inode) => {
                inode.opens += 1;
                reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO);
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
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut state = self.state();
        let file = File {
            data: Vec::new(),
            durable: Vec::new(),
            dirty: Vec::new(),
        };
        let made = state.add(parent.0, name, Kind::File(file), perm(mode, umask));
        let fh = state.next_fh;
        state.next_fh += 1;
        match made.map(|ino| (ino, state.attr(ino))) {
            Ok((ino, Some(attr))) => {
                state.inodes.get_mut(&ino).expect("just made").opens += 1;
                let flags = FopenFlags::FOPEN_DIRECT_IO;
                reply.created(&TTL, &attr, Generation(0), FileHandle(fh), flags);
            }
            Ok((_, None)) => reply.error(Errno::ENOENT),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let mut state = self.state();
        match state.file(ino.0) {
            Ok(file) => {
                let start = (offset as usize).min(file.data.len());
                let end = (start + size as usize).min(file.data.len());
                reply.data(&file.data[start..end]);
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
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        match self.state().write(ino.0, offset as usize, data) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let mut state = self.state();
        if let Some(inode) = state.inodes.get_mut(&ino.0) {
            inode.opens = inode.opens.saturating_sub(1);
        }
        state.forget_if_unused(ino.0);
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(self.state().sync(ino.0), reply);
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut state = self.state();
        let parent = state.inodes.get(&ino.0).map_or(1, |i| i.parent);
        let listed: Vec<(u64, FileType, OsString)> = match state.dir(ino.0) {
            Ok(entries) => entries
                .iter()
                .map(|(name, child)| (*child, FileType::RegularFile, name.clone()))
                .collect(),
            Err(e) => return reply.error(e),
        };
        let mut all = vec![
            (ino.0, FileType::Directory, OsString::from(".")),
            (parent, FileType::Directory, OsString::from("..")),
        ];
        for (child, _, name) in listed {
            let kind = match state.inodes.get(&child).map(|i| &i.kind) {
                Some(Kind::Dir(_)) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            all.push((child, kind, name));
        }
        for (index, (child, kind, name)) in all.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(child), index as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let failing = self.state().behaviour.failing;
        empty(if failing { Err(Errno::EIO) } else { Ok(()) }, reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(1 << 22, 1 << 21, 1 << 21, 1 << 20, 1 << 19, 4096, 255, 4096);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
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
        let mut state = self.state();
        let end = (offset + length) as usize;
        let result = match mode {
            0 => match state.file(ino.0).map(|f| f.data.len()) {
                Ok(len) if len < end => state.resize(ino.0, end),
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            },
            FALLOC_KEEP_SIZE => Ok(()),
            _ => Err(Errno::EOPNOTSUPP),
        };
        empty(result, reply);
    }
}

/// A [`LossyFs`] mounted on a directory; unmounted when dropped.
pub struct LossyDisk {
    state: Arc<Mutex<State>>,
    session: Option<fuser::BackgroundSession>,
    at: PathBuf,
}

impl LossyDisk {
    /// Mount an empty lossy disk on the existing directory `at` (needs
    /// root and /dev/fuse).
    pub fn mount_at(at: &Path) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(State::new()));
        let fs = LossyFs {
            state: state.clone(),
        };
        let mut config = fuser::Config::default();
        config.mount_options = vec![
            fuser::MountOption::FSName("synod-lossy-disk".into()),
            fuser::MountOption::DefaultPermissions,
        ];
        let session = fuser::spawn_mount2(fs, at, &config)?;
        Ok(Self {
            state,
            session: Some(session),
            at: at.to_path_buf(),
        })
    }

    /// [`Self::mount_at`] for a test that needs it: where it cannot mount,
    /// the test is skipped with a line saying so, except when `CI` is set:
    /// a test that must run in CI fails there instead (panics).
    pub fn mount_or_skip(at: &Path) -> Option<Self> {
        match Self::mount_at(at) {
            Ok(disk) => Some(disk),
            Err(e) => {
                let why = format!("cannot mount a FUSE disk at {} ({e})", at.display());
                synod_testkit::skip_unless_ci(&why);
                None
            }
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("disk state")
    }

    /// Lose power: every file is what it was at its last sync.
    pub fn power_cut(&self) {
        self.state().power_cut();
    }

    /// Fail every write and sync with EIO (or stop failing).
    pub fn set_failing(&self, failing: bool) {
        self.state().behaviour.failing = failing;
    }

    /// Make `fsync` report success without making anything durable (or
    /// sync honestly again): the negative control.
    pub fn set_lying(&self, lying: bool) {
        self.state().behaviour.lying = lying;
    }

    /// What the disk has seen.
    pub fn stats(&self) -> DiskStats {
        self.state().stats
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.at
    }
}

impl Drop for LossyDisk {
    /// Detach the mount even while a node process still has files open on
    /// it (a test's deployment may be dropped after its disks): a lazy
    /// unmount, then the session goes without waiting for its thread,
    /// which ends when the kernel lets go of the connection.
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.at)
            .stderr(std::process::Stdio::null())
            .status();
        drop(self.session.take());
    }
}
