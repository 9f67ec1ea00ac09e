//! Snapshot files: the newest complete snapshot of a learner's state
//! machine, written beside its store and installed atomically.
//!
//! ```text
//! snapshot-<upto>.snap = "SYNODSNP" · format u16 · upto u64 · body … · body_len u64 · sha256(body) · "SNAPEND."
//! ```
//!
//! [`SnapshotDir::install`] streams the body into `snapshot-<upto>.tmp`,
//! fsyncs it, renames it into place and fsyncs the directory, and only then
//! removes older snapshots. A crash at any point leaves the old snapshot or
//! the new one, never a torn one: a `.tmp` is never read, and is removed
//! at the next open. [`SnapshotDir::latest`] checks the header, the length
//! and the checksum before it hands the body out; a damaged installed
//! snapshot is an error, never a silent fall back (the log below it may be
//! gone).
//!
//! A snapshot travels between learners as its file's bytes
//! ([`Snapshot::read_at`]); the receiver stages them in
//! `incoming-<upto>.tmp` ([`SnapshotDir::receive`]), and
//! [`Incoming::finish`] syncs and verifies the staged file exactly as
//! `latest` verifies an installed one. Only then may the learner restore
//! from it and [`SnapshotDir::promote`] it into place.

use crate::error::StorageError;
use sha2::{Digest, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use synod_core::Slot;

const MAGIC: &[u8; 8] = b"SYNODSNP";
const END: &[u8; 8] = b"SNAPEND.";
/// The file format this build writes and reads. 2: the learner part holds
/// client sessions (it held per-client windows before).
pub const SNAPSHOT_FORMAT: u16 = 2;
const HEADER_LEN: u64 = 8 + 2 + 8;
const TRAILER_LEN: u64 = 8 + 32 + 8;

/// A directory holding one role's snapshots.
#[derive(Clone, Debug)]
pub struct SnapshotDir {
    dir: PathBuf,
}

/// An installed, verified snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Every slot below this one is covered.
    pub upto: Slot,
    /// The body's length in bytes.
    pub len: u64,
    /// SHA-256 of the body.
    pub digest: [u8; 32],
    path: PathBuf,
}

impl SnapshotDir {
    /// The snapshots in `dir` (created if absent); an unfinished `.tmp` left
    /// by a crash is removed.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| data_dir(&dir, &e))?;
        for path in files(&dir, "tmp")? {
            fs::remove_file(&path).map_err(|e| other(&path, &e))?;
        }
        Ok(Self { dir })
    }

    /// Write a snapshot covering every slot below `upto`; `body` writes its
    /// bytes. Returns it once it is durable and installed; older ones are
    /// then removed.
    pub fn install(
        &self,
        upto: Slot,
        body: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<Snapshot, StorageError> {
        let written = self.write(upto, body)?;
        self.promote(written)
    }

    /// Write a snapshot covering every slot below `upto` to a durable file
    /// beside the installed ones, without installing it: [`promote`] it,
    /// or [`discard`] it. Needs no access to the role's state, so it can
    /// run on another thread while the role goes on.
    ///
    /// [`promote`]: SnapshotDir::promote
    /// [`discard`]: SnapshotDir::discard
    pub fn write(
        &self,
        upto: Slot,
        body: impl FnOnce(&mut dyn Write) -> io::Result<()>,
    ) -> Result<Snapshot, StorageError> {
        let tmp = self.path_of(upto).with_extension("tmp");
        let (len, digest) = write_file(&tmp, upto, body).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            write_failed(&tmp, &e)
        })?;
        Ok(Snapshot {
            upto,
            len,
            digest,
            path: tmp,
        })
    }

    /// Remove a snapshot [`write`](SnapshotDir::write) wrote that will not
    /// be installed (a newer one was installed meanwhile). An installed
    /// snapshot is never removed here.
    pub fn discard(&self, written: Snapshot) {
        if written.path.extension().is_some_and(|e| e == "tmp") {
            let _ = fs::remove_file(&written.path);
        }
    }

    /// Move a durable, verified snapshot file (written by `install`, or
    /// staged by [`Incoming::finish`]) into place, sync the directory,
    /// then remove the older snapshots.
    pub fn promote(&self, snapshot: Snapshot) -> Result<Snapshot, StorageError> {
        let path = self.path_of(snapshot.upto);
        fs::rename(&snapshot.path, &path).map_err(|e| write_failed(&path, &e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| write_failed(&self.dir, &e))?;
        for older in files(&self.dir, "snap")? {
            if older != path {
                fs::remove_file(&older).map_err(|e| other(&older, &e))?;
            }
        }
        Ok(Snapshot { path, ..snapshot })
    }

    /// Stage the bytes of a snapshot covering every slot below `upto`
    /// that a peer sends (any earlier staging of it starts over).
    pub fn receive(&self, upto: Slot) -> Result<Incoming, StorageError> {
        let path = self.dir.join(format!("incoming-{upto:020}.tmp"));
        let file = File::create(&path).map_err(|e| write_failed(&path, &e))?;
        Ok(Incoming {
            upto,
            path,
            file: BufWriter::new(file),
            written: 0,
        })
    }

    /// Install a snapshot file from elsewhere (a backup) as the latest:
    /// verified as a whole (before and after the copy) and synced.
    pub fn import(&self, file: &Path) -> Result<Snapshot, StorageError> {
        let source = Snapshot::verify_file(file)?;
        let mut incoming = self.receive(source.upto)?;
        let mut reader = BufReader::new(source.open_file()?);
        io::copy(&mut reader, &mut incoming.file).map_err(|e| other(file, &e))?;
        incoming.written = source.file_len();
        let staged = incoming.finish()?;
        self.promote(staged)
    }

    fn path_of(&self, upto: Slot) -> PathBuf {
        self.dir.join(format!("snapshot-{upto:020}.snap"))
    }

    /// The newest installed snapshot, verified; `None` if there is none.
    pub fn latest(&self) -> Result<Option<Snapshot>, StorageError> {
        let Some(path) = files(&self.dir, "snap")?.into_iter().max() else {
            return Ok(None);
        };
        verify(&path).map(Some)
    }
}

/// A snapshot arriving from a peer, staged beside the installed ones.
#[derive(Debug)]
pub struct Incoming {
    upto: Slot,
    path: PathBuf,
    file: BufWriter<File>,
    written: u64,
}

impl Incoming {
    /// The snapshot being received.
    pub fn upto(&self) -> Slot {
        self.upto
    }

    /// Bytes staged so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Stage the next bytes.
    pub fn append(&mut self, data: &[u8]) -> Result<(), StorageError> {
        self.file
            .write_all(data)
            .map_err(|e| write_failed(&self.path, &e))?;
        self.written += data.len() as u64;
        Ok(())
    }

    /// Every byte is here: sync the file and verify it as a snapshot of
    /// `upto`. A file that does not verify is removed.
    pub fn finish(self) -> Result<Snapshot, StorageError> {
        let Incoming {
            upto, path, file, ..
        } = self;
        let synced = file
            .into_inner()
            .map_err(io::IntoInnerError::into_error)
            .and_then(|f| f.sync_all());
        let checked = synced
            .map_err(|e| write_failed(&path, &e))
            .and_then(|()| verify(&path));
        match checked {
            Ok(snapshot) if snapshot.upto == upto => Ok(snapshot),
            Ok(snapshot) => {
                let _ = fs::remove_file(&path);
                Err(StorageError::Corruption {
                    path,
                    detail: format!("a snapshot of {}, expected {upto}", snapshot.upto),
                })
            }
            Err(error) => {
                let _ = fs::remove_file(&path);
                Err(error)
            }
        }
    }

    /// Give the staging up.
    pub fn discard(self) {
        let _ = fs::remove_file(&self.path);
    }
}

impl Snapshot {
    /// The snapshot file at `path`, verified (header, length, checksum).
    pub fn verify_file(path: &Path) -> Result<Snapshot, StorageError> {
        verify(path)
    }

    /// The whole file's length: what a peer receives.
    pub fn file_len(&self) -> u64 {
        HEADER_LEN + self.len + TRAILER_LEN
    }

    /// The whole file, open: it stays readable through this handle even
    /// after a newer snapshot replaces it.
    pub fn open_file(&self) -> Result<File, StorageError> {
        File::open(&self.path).map_err(|e| other(&self.path, &e))
    }

    /// At most `max` bytes of the file from `offset` (none past its end).
    pub fn read_at(&self, offset: u64, max: usize) -> Result<Vec<u8>, StorageError> {
        let mut file = File::open(&self.path).map_err(|e| other(&self.path, &e))?;
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| other(&self.path, &e))?;
        let mut bytes = Vec::with_capacity(max.min(1 << 20));
        file.take(max as u64)
            .read_to_end(&mut bytes)
            .map_err(|e| other(&self.path, &e))?;
        Ok(bytes)
    }

    /// The body, to hand to `StateMachine::restore` (verified when this
    /// snapshot was found; the reader does not check again).
    pub fn body(&self) -> Result<impl Read + use<>, StorageError> {
        let mut file = File::open(&self.path).map_err(|e| other(&self.path, &e))?;
        file.seek(SeekFrom::Start(HEADER_LEN))
            .map_err(|e| other(&self.path, &e))?;
        Ok(BufReader::new(file).take(self.len))
    }
}

fn write_file(
    tmp: &Path,
    upto: Slot,
    body: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> io::Result<(u64, [u8; 32])> {
    let file = OpenOptions::new().write(true).create_new(true).open(tmp)?;
    let mut out = BufWriter::new(file);
    out.write_all(MAGIC)?;
    out.write_all(&SNAPSHOT_FORMAT.to_be_bytes())?;
    out.write_all(&upto.to_be_bytes())?;
    let mut hashing = Hashing {
        inner: &mut out,
        hasher: Sha256::new(),
        len: 0,
    };
    body(&mut hashing)?;
    let (len, digest) = (hashing.len, hashing.hasher.finalize());
    out.write_all(&len.to_be_bytes())?;
    out.write_all(&digest)?;
    out.write_all(END)?;
    let file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.sync_all()?;
    Ok((len, digest.into()))
}

/// Counts and hashes what passes through.
struct Hashing<'a, W: Write> {
    inner: &'a mut W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> Write for Hashing<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(bytes)?;
        self.hasher.update(&bytes[..written]);
        self.len += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn verify(path: &Path) -> Result<Snapshot, StorageError> {
    let corrupt = |detail: String| StorageError::Corruption {
        path: path.to_path_buf(),
        detail,
    };
    let mut file = File::open(path).map_err(|e| other(path, &e))?;
    let size = file.metadata().map_err(|e| other(path, &e))?.len();
    if size < HEADER_LEN + TRAILER_LEN {
        return Err(corrupt(format!(
            "{size} bytes: shorter than a snapshot's framing"
        )));
    }
    let mut header = [0u8; HEADER_LEN as usize];
    file.read_exact(&mut header).map_err(|e| other(path, &e))?;
    let format = u16::from_be_bytes([header[8], header[9]]);
    if &header[..8] != MAGIC || format != SNAPSHOT_FORMAT {
        return Err(corrupt(format!(
            "not a snapshot of format {SNAPSHOT_FORMAT}"
        )));
    }
    let upto = Slot::from_be_bytes(header[10..18].try_into().expect("8 bytes"));
    let mut trailer = [0u8; TRAILER_LEN as usize];
    file.seek(SeekFrom::End(-(TRAILER_LEN as i64)))
        .and_then(|_| file.read_exact(&mut trailer))
        .map_err(|e| other(path, &e))?;
    let len = u64::from_be_bytes(trailer[..8].try_into().expect("8 bytes"));
    if &trailer[40..] != END || len != size - HEADER_LEN - TRAILER_LEN {
        return Err(corrupt("the trailer does not match the file".into()));
    }
    file.seek(SeekFrom::Start(HEADER_LEN))
        .map_err(|e| other(path, &e))?;
    let mut hasher = Sha256::new();
    io::copy(&mut BufReader::new(file).take(len), &mut hasher).map_err(|e| other(path, &e))?;
    let digest: [u8; 32] = hasher.finalize().into();
    if digest[..] != trailer[8..40] {
        return Err(corrupt("the body does not match its checksum".into()));
    }
    Ok(Snapshot {
        upto,
        len,
        digest,
        path: path.to_path_buf(),
    })
}

/// The files in `dir` ending in `.extension`.
fn files(dir: &Path, extension: &str) -> Result<Vec<PathBuf>, StorageError> {
    let entries = fs::read_dir(dir).map_err(|e| data_dir(dir, &e))?;
    let mut found = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| data_dir(dir, &e))?.path();
        if path.extension().is_some_and(|e| e == extension) {
            found.push(path);
        }
    }
    Ok(found)
}

fn data_dir(path: &Path, error: &io::Error) -> StorageError {
    StorageError::DataDir {
        path: path.to_path_buf(),
        reason: error.to_string(),
    }
}

fn write_failed(path: &Path, error: &io::Error) -> StorageError {
    StorageError::WriteFailed {
        path: path.to_path_buf(),
        detail: error.to_string(),
    }
}

fn other(path: &Path, error: &io::Error) -> StorageError {
    StorageError::Other {
        path: path.to_path_buf(),
        detail: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(snapshot: &Snapshot) -> Vec<u8> {
        let mut bytes = Vec::new();
        snapshot.body().unwrap().read_to_end(&mut bytes).unwrap();
        bytes
    }

    fn install(dir: &SnapshotDir, upto: Slot, body: &[u8]) -> Snapshot {
        dir.install(upto, |out| out.write_all(body)).unwrap()
    }

    #[test]
    fn the_newest_install_is_the_latest_and_replaces_the_older() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = SnapshotDir::open(tmp.path()).unwrap();
        assert_eq!(dir.latest().unwrap(), None);
        install(&dir, 10, b"ten");
        let second = install(&dir, 20, &vec![7u8; 100_000]);
        let latest = dir.latest().unwrap().expect("installed");
        assert_eq!(latest, second);
        assert_eq!(latest.upto, 20);
        assert_eq!(body_of(&latest), vec![7u8; 100_000]);
        assert_eq!(
            files(tmp.path(), "snap").unwrap().len(),
            1,
            "the older is gone"
        );
    }

    #[test]
    fn a_failed_or_unfinished_write_leaves_the_old_snapshot() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = SnapshotDir::open(tmp.path()).unwrap();
        install(&dir, 5, b"five");
        let failed = dir.install(6, |out| {
            out.write_all(b"half")?;
            Err(io::Error::other("the state machine failed"))
        });
        assert!(matches!(failed, Err(StorageError::WriteFailed { .. })));
        std::fs::write(
            tmp.path().join("snapshot-00000000000000000007.tmp"),
            b"torn",
        )
        .unwrap();
        let dir = SnapshotDir::open(tmp.path()).unwrap();
        let latest = dir.latest().unwrap().unwrap();
        assert_eq!((latest.upto, body_of(&latest)), (5, b"five".to_vec()));
        assert!(
            files(tmp.path(), "tmp").unwrap().is_empty(),
            "leftovers removed"
        );
    }

    #[test]
    fn a_written_snapshot_counts_only_once_promoted() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = SnapshotDir::open(tmp.path()).unwrap();
        let installed = install(&dir, 5, b"five");
        let written = dir.write(9, |out| out.write_all(b"nine")).unwrap();
        assert_eq!(dir.latest().unwrap(), Some(installed.clone()), "not yet");
        dir.discard(installed.clone());
        assert_eq!(
            dir.latest().unwrap(),
            Some(installed),
            "never an installed one"
        );
        dir.discard(written);
        assert!(files(tmp.path(), "tmp").unwrap().is_empty(), "discarded");
        let written = dir.write(12, |out| out.write_all(b"twelve")).unwrap();
        let promoted = dir.promote(written).unwrap();
        let latest = dir.latest().unwrap().unwrap();
        assert_eq!((latest.upto, body_of(&latest)), (12, b"twelve".to_vec()));
        assert_eq!(latest, promoted);
        assert_eq!(files(tmp.path(), "snap").unwrap().len(), 1);
    }

    /// Copy `snapshot` into `to` through `receive`, `chunk` bytes at a time,
    /// flipping byte `flip` on the way if given.
    fn transfer(
        snapshot: &Snapshot,
        to: &SnapshotDir,
        chunk: usize,
        flip: Option<u64>,
    ) -> Result<Snapshot, StorageError> {
        let mut incoming = to.receive(snapshot.upto).unwrap();
        while incoming.written() < snapshot.file_len() {
            let mut bytes = snapshot.read_at(incoming.written(), chunk).unwrap();
            let start = incoming.written();
            let here = flip.and_then(|at| at.checked_sub(start));
            if let Some(byte) = here.and_then(|at| bytes.get_mut(at as usize)) {
                *byte ^= 1;
            }
            incoming.append(&bytes).unwrap();
        }
        incoming.finish()
    }

    #[test]
    fn a_snapshot_sent_in_chunks_verifies_and_promotes() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (from, to) = (
            SnapshotDir::open(a.path()).unwrap(),
            SnapshotDir::open(b.path()).unwrap(),
        );
        let body: Vec<u8> = (0..10_000u32).map(|n| n as u8).collect();
        let sent = install(&from, 42, &body);
        install(&to, 7, b"older");
        let staged = transfer(&sent, &to, 333, None).unwrap();
        assert_eq!(body_of(&staged), body, "readable before promotion");
        assert_eq!(to.latest().unwrap().unwrap().upto, 7, "not yet in place");
        let promoted = to.promote(staged).unwrap();
        assert_eq!(to.latest().unwrap(), Some(promoted.clone()));
        assert_eq!((promoted.upto, promoted.digest), (42, sent.digest));
        assert_eq!(files(b.path(), "snap").unwrap().len(), 1);
        assert!(files(b.path(), "tmp").unwrap().is_empty());
    }

    #[test]
    fn a_damaged_transfer_is_refused_and_leaves_nothing() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let from = SnapshotDir::open(a.path()).unwrap();
        let to = SnapshotDir::open(b.path()).unwrap();
        let sent = install(&from, 9, &vec![3u8; 5000]);
        for flip in [0, 100, sent.file_len() - 1] {
            let refused = transfer(&sent, &to, 1000, Some(flip));
            assert!(
                matches!(refused, Err(StorageError::Corruption { .. })),
                "byte {flip}"
            );
        }
        assert!(files(b.path(), "tmp").unwrap().is_empty());
        assert_eq!(to.latest().unwrap(), None);
        let mut wrong = to.receive(10).unwrap();
        wrong.append(&sent.read_at(0, 1 << 20).unwrap()).unwrap();
        assert!(
            matches!(wrong.finish(), Err(StorageError::Corruption { .. })),
            "a snapshot of another slot is refused"
        );
    }

    #[test]
    fn a_damaged_snapshot_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = SnapshotDir::open(tmp.path()).unwrap();
        install(&dir, 3, &vec![1u8; 1000]);
        let path = files(tmp.path(), "snap").unwrap().remove(0);
        let good = std::fs::read(&path).unwrap();
        let damage = |bytes: Vec<u8>| {
            std::fs::write(&path, bytes).unwrap();
            dir.latest()
        };
        let mut flipped = good.clone();
        flipped[HEADER_LEN as usize + 500] ^= 1;
        assert!(matches!(
            damage(flipped),
            Err(StorageError::Corruption { .. })
        ));
        let cut = good[..good.len() - 1].to_vec();
        assert!(matches!(damage(cut), Err(StorageError::Corruption { .. })));
        let mut foreign = good.clone();
        foreign[0] = b'X';
        assert!(matches!(
            damage(foreign),
            Err(StorageError::Corruption { .. })
        ));
        assert!(matches!(
            damage(b"tiny".to_vec()),
            Err(StorageError::Corruption { .. })
        ));
        assert!(damage(good).is_ok(), "the undamaged file verifies");
    }
}
