//! Telling a torn WAL tail from a damaged WAL.
//!
//! A process killed in the middle of a write, or a power cut before an
//! fsync, can leave the newest RocksDB WAL ending inside its last record.
//! That record was never synced, so nothing in it was acknowledged and
//! dropping it loses nothing. RocksDB's strict recovery mode cannot tell
//! this apart from a damaged record whose length field now points past the
//! end of the file, so it refuses both. This module tells them apart:
//!
//! - every group [`RocksStore`](crate::RocksStore) writes ends with a
//!   *commit marker* (the last operation of the `WriteBatch`, so the last
//!   bytes of the WAL record). A record torn by a crash is a prefix of what
//!   was written and so never holds its own marker;
//! - [`inspect_newest`] walks the record framing of the newest WAL file
//!   (32 KiB blocks, 7-byte fragment headers, fragments never crossing a
//!   block) and finds where the last complete record ends. The tail after
//!   it may be dropped only if the framing is sound up to it and the tail
//!   holds no complete marker: a marker there means a complete, possibly
//!   acknowledged group would be thrown away, which is damage.
//!
//! After dropping a tail the store is opened in strict mode again, so any
//! other damage (checksums of the kept records, older WAL files, SSTs)
//! still fails the open. What this cannot see is damage that both corrupts
//! the last record's length and wipes its marker; no local check can tell
//! that from a torn write.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use synod_storage::StorageError;

/// RocksDB's WAL block size.
const BLOCK: usize = 32 * 1024;
/// RocksDB's fragment header: checksum (4), length (2, LE), type (1).
const HEADER: usize = 7;

const FULL: u8 = 1;
const FIRST: u8 = 2;
const MIDDLE: u8 = 3;
const LAST: u8 = 4;
/// Standalone metadata records (compression type, timestamp sizes).
const METADATA: [u8; 2] = [9, 10];
/// Record types with this bit set are metadata RocksDB may safely ignore.
const IGNORABLE: u8 = 0x80;

const MARKER_MAGIC: [u8; 8] = *b"\xffsynodgc";
/// Length of a commit marker: magic, group number, its complement.
pub(crate) const MARKER_LEN: usize = 24;

/// The commit marker for group `group`.
pub(crate) fn marker(group: u64) -> [u8; MARKER_LEN] {
    let mut bytes = [0u8; MARKER_LEN];
    bytes[..8].copy_from_slice(&MARKER_MAGIC);
    bytes[8..16].copy_from_slice(&group.to_be_bytes());
    bytes[16..].copy_from_slice(&(!group).to_be_bytes());
    bytes
}

/// The group number in `bytes`, if they are a well-formed marker.
pub(crate) fn parse_marker(bytes: &[u8]) -> Option<u64> {
    let bytes: &[u8; MARKER_LEN] = bytes.try_into().ok()?;
    let group = u64::from_be_bytes(bytes[8..16].try_into().ok()?);
    let check = u64::from_be_bytes(bytes[16..].try_into().ok()?);
    (bytes[..8] == MARKER_MAGIC && check == !group).then_some(group)
}

/// A torn tail that was dropped from a WAL file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The WAL file.
    pub wal: PathBuf,
    /// Its length now: where the last complete record ended.
    pub kept: u64,
    /// How many bytes of the incomplete record were dropped.
    pub dropped: u64,
}

/// What the end of a WAL's bytes looks like.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Tail {
    /// The last record is complete (or the framing is not one this module
    /// understands): nothing to drop.
    Clean,
    /// The file ends inside a record that starts at this offset and holds
    /// no commit marker.
    Torn(usize),
    /// The file ends inside what the framing calls one record, but the
    /// bytes past its start are not a torn write.
    Damaged(String),
}

/// Where the walk over the framing stands.
#[derive(Default)]
struct Walk {
    pos: usize,
    /// Start of the logical record being read, if inside a fragmented one.
    fragment_start: Option<usize>,
}

impl Walk {
    /// The cut point if the file ends here: the start of the unfinished
    /// logical record.
    fn cut(&self) -> usize {
        self.fragment_start.unwrap_or(self.pos)
    }
}

/// Decide what the end of the WAL `bytes` is.
pub(crate) fn classify(bytes: &[u8]) -> Tail {
    match incomplete_record_start(bytes) {
        Ok(None) => Tail::Clean,
        Ok(Some(cut)) if holds_marker(bytes, cut) => Tail::Damaged(format!(
            "the WAL ends inside a record at offset {cut}, but a complete commit \
             marker follows it: synced groups would be lost"
        )),
        Ok(Some(cut)) => Tail::Torn(cut),
        Err(reason) => Tail::Damaged(reason),
    }
}

/// Walk the framing of `bytes`. `Ok(None)`: it ends after a complete
/// record; `Ok(Some(at))`: it ends inside the record starting at `at`;
/// `Err`: the framing itself is broken before the end.
fn incomplete_record_start(bytes: &[u8]) -> Result<Option<usize>, String> {
    let mut walk = Walk::default();
    loop {
        let left_in_block = BLOCK - walk.pos % BLOCK;
        if left_in_block < HEADER {
            let trailer_end = walk.pos + left_in_block;
            let trailer = &bytes[walk.pos..trailer_end.min(bytes.len())];
            if trailer.iter().any(|b| *b != 0) {
                return Err(format!("non-zero block trailer at offset {}", walk.pos));
            }
            if trailer_end >= bytes.len() {
                return Ok(walk.fragment_start);
            }
            walk.pos = trailer_end;
            continue;
        }
        if walk.pos == bytes.len() {
            return Ok(walk.fragment_start);
        }
        if walk.pos + HEADER > bytes.len() {
            return Ok(Some(walk.cut()));
        }
        let header = &bytes[walk.pos..walk.pos + HEADER];
        let length = usize::from(u16::from_le_bytes([header[4], header[5]]));
        let kind = header[6];
        if kind == 0 && length == 0 {
            return zero_fill(bytes, &walk);
        }
        if HEADER + length > left_in_block {
            return Err(format!(
                "record at offset {} claims {length} bytes, past its block",
                walk.pos
            ));
        }
        if walk.pos + HEADER + length > bytes.len() {
            return Ok(Some(walk.cut()));
        }
        step(&mut walk, kind)?;
        walk.pos += HEADER + length;
    }
}

/// A zero header: preallocated or never-written space. Only an all-zero
/// rest of the file is a torn tail.
fn zero_fill(bytes: &[u8], walk: &Walk) -> Result<Option<usize>, String> {
    if bytes[walk.pos..].iter().all(|b| *b == 0) {
        Ok(Some(walk.cut()))
    } else {
        Err(format!(
            "zero record header at offset {} before more data",
            walk.pos
        ))
    }
}

/// Advance the fragment state over one complete physical record.
fn step(walk: &mut Walk, kind: u8) -> Result<(), String> {
    let inside = walk.fragment_start.is_some();
    let standalone = METADATA.contains(&kind) || kind & IGNORABLE != 0;
    match kind {
        FULL if !inside => {}
        FIRST if !inside => walk.fragment_start = Some(walk.pos),
        MIDDLE if inside => {}
        LAST if inside => walk.fragment_start = None,
        _ if standalone && !inside => {}
        _ => {
            return Err(format!(
                "record type {kind} at offset {} where it cannot be",
                walk.pos
            ));
        }
    }
    Ok(())
}

/// Whether the bytes from `from` on hold a complete commit marker, reading
/// across block boundaries (whose fragment headers may split one).
fn holds_marker(bytes: &[u8], from: usize) -> bool {
    let payload: Vec<u8> = (from..bytes.len())
        .filter(|at| at % BLOCK >= HEADER)
        .map(|at| bytes[at])
        .collect();
    payload
        .windows(MARKER_LEN)
        .any(|window| parse_marker(window).is_some())
}

/// The newest WAL file in `dir` (RocksDB names them `<number>.log`).
fn newest_wal(dir: &Path) -> std::io::Result<Option<PathBuf>> {
    let mut newest: Option<(u64, PathBuf)> = None;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let number = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_suffix(".log"))
            .and_then(|stem| stem.parse::<u64>().ok());
        if let Some(number) = number
            && newest.as_ref().is_none_or(|(best, _)| number > *best)
        {
            newest = Some((number, path));
        }
    }
    Ok(newest.map(|(_, path)| path))
}

/// The outcome of looking at the newest WAL after a failed strict open.
#[derive(Debug)]
pub(crate) enum Inspection {
    /// A torn tail was cut off (and the cut synced).
    Dropped(TornTail),
    /// Nothing that may be dropped; the open error stands as it is.
    Nothing,
    /// The end of the WAL is damage, not a torn write.
    Damaged(String),
}

/// Look at the newest WAL in `dir`; if it ends in a torn record, cut it
/// off and sync the file.
pub(crate) fn inspect_newest(dir: &Path) -> Result<Inspection, StorageError> {
    let io = |e: std::io::Error| StorageError::Other {
        path: dir.to_path_buf(),
        detail: format!("inspecting the WAL: {e}"),
    };
    let Some(wal) = newest_wal(dir).map_err(io)? else {
        return Ok(Inspection::Nothing);
    };
    let bytes = std::fs::read(&wal).map_err(io)?;
    let cut = match classify(&bytes) {
        Tail::Clean => return Ok(Inspection::Nothing),
        Tail::Damaged(reason) => {
            return Ok(Inspection::Damaged(format!("{}: {reason}", wal.display())));
        }
        Tail::Torn(cut) => cut,
    };
    let file = OpenOptions::new().write(true).open(&wal).map_err(io)?;
    file.set_len(cut as u64).map_err(io)?;
    file.sync_all().map_err(io)?;
    Ok(Inspection::Dropped(TornTail {
        wal,
        kept: cut as u64,
        dropped: (bytes.len() - cut) as u64,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames `records` the way RocksDB's log writer does.
    fn frame(records: &[Vec<u8>]) -> Vec<u8> {
        let mut out = Vec::new();
        for record in records {
            let mut rest = record.as_slice();
            let mut first = true;
            loop {
                let left = BLOCK - out.len() % BLOCK;
                if left < HEADER {
                    out.resize(out.len() + left, 0);
                    continue;
                }
                let take = rest.len().min(left - HEADER);
                let end = take == rest.len();
                let kind = match (first, end) {
                    (true, true) => FULL,
                    (true, false) => FIRST,
                    (false, false) => MIDDLE,
                    (false, true) => LAST,
                };
                out.extend_from_slice(&[0xab, 0xcd, 0xef, 0x01]);
                out.extend_from_slice(&(take as u16).to_le_bytes());
                out.push(kind);
                out.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
                first = false;
                if end {
                    break;
                }
            }
        }
        out
    }

    /// A group's payload: some data, then its marker.
    fn group(n: u64, size: usize) -> Vec<u8> {
        let mut bytes = vec![n as u8; size];
        bytes.extend_from_slice(&marker(n));
        bytes
    }

    #[test]
    fn markers_round_trip_and_reject_damage() {
        assert_eq!(parse_marker(&marker(42)), Some(42));
        let mut damaged = marker(42);
        damaged[9] ^= 1;
        assert_eq!(parse_marker(&damaged), None);
        assert_eq!(parse_marker(&marker(42)[1..]), None);
    }

    #[test]
    fn a_complete_log_is_clean() {
        let log = frame(&[group(1, 10), group(2, 50_000), group(3, 5)]);
        assert_eq!(classify(&log), Tail::Clean);
        assert_eq!(classify(&[]), Tail::Clean);
    }

    #[test]
    fn every_cut_inside_the_last_record_is_a_torn_tail() {
        let kept = frame(&[group(1, 10), group(2, 100)]);
        let log = frame(&[group(1, 10), group(2, 100), group(3, 70_000)]);
        for cut in (kept.len() + 1..log.len()).step_by(97) {
            assert_eq!(
                classify(&log[..cut]),
                Tail::Torn(kept.len()),
                "cut at {cut} of {}",
                log.len()
            );
        }
    }

    #[test]
    fn a_zero_filled_tail_is_torn() {
        let mut log = frame(&[group(1, 10)]);
        let kept = log.len();
        log.resize(kept + 4096, 0);
        assert_eq!(classify(&log), Tail::Torn(kept));
    }

    #[test]
    fn a_length_pointing_past_the_end_before_a_marker_is_damage() {
        let mut log = frame(&[group(1, 10), group(2, 10), group(3, 10)]);
        let second = HEADER + group(1, 10).len();
        let past_end = (log.len() - second) as u16;
        log[second + 4..second + 6].copy_from_slice(&past_end.to_le_bytes());
        assert!(matches!(classify(&log), Tail::Damaged(_)), "{log:?}");
    }

    #[test]
    fn a_length_past_its_block_is_damage() {
        let mut log = frame(&[group(1, 10), group(2, 10)]);
        log[4..6].copy_from_slice(&u16::MAX.to_le_bytes());
        assert!(matches!(classify(&log), Tail::Damaged(_)));
    }

    #[test]
    fn a_marker_split_by_a_block_header_is_still_seen() {
        // Group 2's first fragment ends the block halfway through its marker.
        let before = frame(&[group(1, 10)]).len();
        let size = BLOCK - before - HEADER - MARKER_LEN / 2;
        let log = frame(&[group(1, 10), group(2, size)]);
        let raw_hit = log
            .windows(MARKER_LEN)
            .any(|window| parse_marker(window) == Some(2));
        assert!(!raw_hit, "the test must split the marker");
        assert!(holds_marker(&log, before));
        assert!(!holds_marker(&log[..log.len() - 1], before));
    }
}
