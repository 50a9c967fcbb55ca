//! One segment file: create, open, validate, grow, recover.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::format::frame::{self, Header};
use crate::format::header::{
    SegmentHeader, OFF_CLEAN_TAIL, OFF_GROWN, OFF_NOTIFY_SEQ, OFF_STATE, OFF_TAIL, OFF_WAITERS,
    STATE_CLEAN, STATE_SEALED,
};
use crate::format::{align_up, FRAME_HEADER_LEN, HEADER_LEN, PAGE};
use crate::map::{Mapping, Slot};
use crate::{Error, Result};

/// File name suffix of segment files.
pub(crate) const SEGMENT_SUFFIX: &str = ".tlog";

/// The file name of the segment whose base position is `base`: 16 lowercase
/// hex digits, so that names sort in log order.
pub(crate) fn file_name(base: u64) -> String {
    format!("{base:016x}{SEGMENT_SUFFIX}")
}

/// The base position a segment file name stands for, if it is one.
pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(SEGMENT_SUFFIX)?;
    if hex.len() != 16 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// An open, validated, mapped segment.
#[derive(Debug)]
pub(crate) struct Segment {
    path: PathBuf,
    file: File,
    map: Mapping,
    header: SegmentHeader,
    /// Bytes of the file known to exist: never more than its length.
    known_len: AtomicU64,
}

/// What recovery found and did in one segment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Recovery {
    /// File offset just past the last valid frame.
    pub end: u64,
    /// The segment ends in an end-of-segment frame.
    pub sealed: bool,
    /// Holes left by dead writers, turned into padding.
    pub holes_padded: u64,
    /// Bytes cut from the tail (torn or unpublished frames).
    pub bytes_cut: u64,
    /// Damaged frames left in place between valid ones.
    pub damaged: u64,
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Grows `file` to at least `len` bytes with blocks reserved, so that no
/// later write into the mapping can hit a full disk and raise SIGBUS.
/// `posix_fallocate` never shrinks a file, so concurrent growers are safe.
fn allocate(file: &File, path: &Path, len: u64) -> Result<()> {
    crate::map::allocate(file, len).map_err(|e| Error::io("grow segment", path, e))
}

/// Fsyncs a directory, making entries created or removed in it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("sync directory", dir, e))
}

impl Segment {
    /// Opens and validates an existing segment file.
    ///
    /// Returns `Ok(None)` if the file does not exist.
    pub(crate) fn open(path: &Path, base: u64, writable: bool) -> Result<Option<Segment>> {
        let file = match OpenOptions::new().read(true).write(writable).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open segment", path, e)),
        };
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat segment", path, e))?
            .len();
        let mut buf = [0u8; 64];
        let n = (len.min(64)) as usize;
        file.read_exact_at(&mut buf[..n], 0)
            .map_err(|e| Error::io("read segment header", path, e))?;
        let header = SegmentHeader::decode(&buf[..n]).map_err(|e| Error::header(path, e))?;
        if len < HEADER_LEN {
            return Err(Error::TruncatedHeader {
                path: path.to_owned(),
                len,
            });
        }
        if header.base != base {
            return Err(Error::CorruptHeader {
                path: path.to_owned(),
                reason: "base position in the header does not match the file name",
            });
        }
        let map = Mapping::new(&file, header.capacity, writable)
            .map_err(|e| Error::io("map segment", path, e))?;
        let seg = Segment {
            path: path.to_owned(),
            file,
            map,
            header,
            known_len: AtomicU64::new(len.min(header.capacity)),
        };
        if writable {
            // The `grown` hint may run ahead of the file (a crash between the
            // allocation and the hint is not possible, but power loss can
            // persist the header page and not the allocation). Make it true.
            let grown = seg.map.header_u64(OFF_GROWN).load(Ordering::Acquire);
            if grown > len {
                let target = grown.min(header.capacity);
                allocate(&seg.file, &seg.path, target)?;
                seg.known_len.fetch_max(target, Ordering::AcqRel);
            }
        }
        Ok(Some(seg))
    }

    /// Creates the segment at `base` unless it exists, then opens it.
    ///
    /// The file is built and synced under a temporary name and hard-linked
    /// into place: `link` fails if the name exists, so when processes race to
    /// create the same segment exactly one wins, and nobody ever sees a half
    /// initialised segment.
    pub(crate) fn create(
        dir: &Path,
        header: SegmentHeader,
        initial_len: u64,
        mode: u32,
    ) -> Result<Segment> {
        let path = dir.join(file_name(header.base));
        if let Some(seg) = Self::open(&path, header.base, true)? {
            return Ok(seg);
        }
        let tmp = dir.join(format!(
            ".{:016x}.{}.{}.tmp",
            header.base,
            std::process::id(),
            now_nanos()
        ));
        let result =
            Self::build(&tmp, &header, initial_len, mode).and_then(|()| {
                match fs::hard_link(&tmp, &path) {
                    Ok(()) => sync_dir(dir),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                    Err(e) => Err(Error::io("link segment", &path, e)),
                }
            });
        let _ = fs::remove_file(&tmp);
        result?;
        match Self::open(&path, header.base, true)? {
            Some(seg) => Ok(seg),
            None => Err(Error::MissingSegment { path }),
        }
    }

    fn build(tmp: &Path, header: &SegmentHeader, initial_len: u64, mode: u32) -> Result<()> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(tmp)
            .map_err(|e| Error::io("create segment", tmp, e))?;
        let initial_len = initial_len.clamp(HEADER_LEN + PAGE, header.capacity);
        allocate(&file, tmp, initial_len)?;
        let mut page = vec![0u8; HEADER_LEN as usize];
        page[..64].copy_from_slice(&header.encode());
        page[OFF_TAIL..OFF_TAIL + 8].copy_from_slice(&HEADER_LEN.to_le_bytes());
        page[OFF_GROWN..OFF_GROWN + 8].copy_from_slice(&initial_len.to_le_bytes());
        file.write_all_at(&page, 0)
            .map_err(|e| Error::io("write segment header", tmp, e))?;
        file.sync_all()
            .map_err(|e| Error::io("sync segment", tmp, e))?;
        Ok(())
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn map(&self) -> &Mapping {
        &self.map
    }

    pub(crate) fn header(&self) -> &SegmentHeader {
        &self.header
    }

    /// Log position of file offset 0.
    #[inline]
    pub(crate) fn base(&self) -> u64 {
        self.header.base
    }

    /// The mapping length: no frame extends past it.
    #[inline]
    pub(crate) fn capacity(&self) -> u64 {
        self.header.capacity
    }

    /// The last offset at which a data frame may end: room is always left
    /// for the end-of-segment frame.
    #[inline]
    pub(crate) fn data_limit(&self) -> u64 {
        self.header.capacity - FRAME_HEADER_LEN
    }

    #[inline]
    pub(crate) fn next_base(&self) -> u64 {
        self.header.next_base()
    }

    #[inline]
    pub(crate) fn tail(&self) -> &AtomicU64 {
        self.map.header_u64(OFF_TAIL)
    }

    pub(crate) fn state(&self) -> u64 {
        self.map.header_u64(OFF_STATE).load(Ordering::Acquire)
    }

    /// Sets bits in the `state` word (writable mappings only).
    pub(crate) fn set_state(&self, bits: u64) {
        if self.map.is_writable() {
            self.map
                .header_u64(OFF_STATE)
                .fetch_or(bits, Ordering::AcqRel);
        }
    }

    /// Clears bits in the `state` word (writable mappings only).
    pub(crate) fn clear_state(&self, bits: u64) {
        if self.map.is_writable() {
            self.map
                .header_u64(OFF_STATE)
                .fetch_and(!bits, Ordering::AcqRel);
        }
    }

    /// Records a clean close: the tail is final until the next writer opens.
    pub(crate) fn mark_clean(&self) {
        if self.map.is_writable() {
            let tail = self.tail().load(Ordering::Acquire);
            self.map
                .header_u64(OFF_CLEAN_TAIL)
                .store(tail, Ordering::Release);
            self.set_state(STATE_CLEAN);
        }
    }

    /// Whether the last writer closed cleanly and nobody reserved since.
    pub(crate) fn is_clean(&self) -> bool {
        self.state() & STATE_CLEAN != 0
            && self.map.header_u64(OFF_CLEAN_TAIL).load(Ordering::Acquire)
                == self.tail().load(Ordering::Acquire)
    }

    /// Makes sure the file covers offsets below `end`, growing it by the
    /// configured step (or, on a full disk, by as little as possible).
    /// Returns the length now known to exist.
    pub(crate) fn ensure_len(&self, end: u64, step: u64) -> Result<u64> {
        let known = self.known_len.load(Ordering::Acquire);
        if end <= known {
            return Ok(known);
        }
        let cap = self.header.capacity;
        if end > cap {
            return Err(Error::CorruptFrame {
                position: (self.base() + end).into(),
                reason: "write past the end of the segment reservation",
            });
        }
        // Another writer may have grown the file already.
        let hint = self.map.header_u64(OFF_GROWN).load(Ordering::Acquire);
        if hint >= end {
            let len = self.file_len()?;
            if len >= end {
                return Ok(self.known_len.fetch_max(len, Ordering::AcqRel).max(len));
            }
        }
        let target = align_up(end, step).unwrap_or(cap).min(cap);
        let grown = match allocate(&self.file, &self.path, target) {
            Ok(()) => target,
            Err(Error::NoSpace { .. }) => {
                // Fall back to the smallest page-aligned growth that covers
                // this frame, so a nearly full disk still takes small records.
                let minimal = align_up(end, PAGE).unwrap_or(cap).min(cap);
                allocate(&self.file, &self.path, minimal)?;
                minimal
            }
            Err(e) => return Err(e),
        };
        self.map
            .header_u64(OFF_GROWN)
            .fetch_max(grown, Ordering::AcqRel);
        Ok(self.known_len.fetch_max(grown, Ordering::AcqRel).max(grown))
    }

    /// The file's current length (fstat), clamped to the reservation.
    pub(crate) fn file_len(&self) -> Result<u64> {
        let len = self
            .file
            .metadata()
            .map_err(|e| Error::io("stat segment", &self.path, e))?
            .len()
            .min(self.header.capacity);
        self.known_len.fetch_max(len, Ordering::AcqRel);
        Ok(len)
    }

    /// For readers: a length of the file that covers `end`, if it does.
    /// Cheap when `end` is within the known length; otherwise consults the
    /// writers' `grown` hint and only then pays for an fstat. Readers never
    /// trust the hint itself, only the file's real length.
    pub(crate) fn readable_len(&self, end: u64) -> Result<Option<u64>> {
        let known = self.known_len.load(Ordering::Acquire);
        if end <= known {
            return Ok(Some(known));
        }
        let hint = self.map.header_u64(OFF_GROWN).load(Ordering::Acquire);
        if hint <= known && known > HEADER_LEN {
            return Ok(None);
        }
        let len = self.file_len()?;
        Ok((end <= len).then_some(len))
    }

    /// Bytes of the file known to exist.
    pub(crate) fn known_len(&self) -> u64 {
        self.known_len.load(Ordering::Acquire)
    }

    /// Wakes readers parked on this segment, if any.
    #[inline]
    pub(crate) fn wake_readers(&self) {
        if self.map.header_u32(OFF_WAITERS).load(Ordering::SeqCst) != 0 {
            self.wake_all();
        }
    }

    /// Bumps the futex word and wakes every parked reader.
    pub(crate) fn wake_all(&self) {
        if self.map.is_writable() {
            self.map
                .header_u32(OFF_NOTIFY_SEQ)
                .fetch_add(1, Ordering::SeqCst);
        }
        self.map.futex_wake(OFF_NOTIFY_SEQ);
    }

    /// Scans the segment and repairs what dead writers left behind. Only
    /// called while no other writer of the log is alive.
    ///
    /// Walks the frames from the start. Valid frames (data with a matching
    /// CRC, padding, end) are kept. Where a writer died, there is either a
    /// zero header (reserved, nothing written) or an in-progress header: if
    /// valid frames follow, the hole becomes padding; if not, it is part of
    /// the torn tail. A data frame that fails its CRC or a malformed header
    /// followed by valid frames is damage in the middle of the log: it is
    /// left in place so that readers report it at its position. Everything
    /// after the last valid frame is zeroed, so that no stale byte can later
    /// pass for a frame, and the tail word is set to the end of valid data.
    pub(crate) fn recover(&self, seal: bool, step: u64) -> Result<Recovery> {
        let file_len = self.file_len()?;
        let cap = self.header.capacity;
        let base = self.base();
        let mut rec = Recovery {
            end: HEADER_LEN,
            ..Recovery::default()
        };
        // Writers only ever write inside reservations, which all lie below the
        // tail word; anything past it is stale and is zeroed, never parsed.
        let reserved = self.tail().load(Ordering::Acquire).clamp(HEADER_LEN, cap);
        let scan_end = file_len.min(reserved) as usize;
        // Holes and damage seen since the last valid frame.
        let mut pending_holes: Vec<(u64, u64)> = Vec::new();
        let mut pending_damage = 0u64;
        let mut off = HEADER_LEN;
        let mut crc_budget = 4 * cap;
        while off + FRAME_HEADER_LEN <= scan_end as u64 {
            let pos = base + off;
            match self.map.slot(off as usize, pos, scan_end) {
                Ok(Slot::Data { crc, payload }) => {
                    let len = payload.len() as u32;
                    let next = off + frame::frame_len(len);
                    if next > self.data_limit() {
                        pending_damage += 1;
                        off = self.find_valid(off + 8, scan_end, &mut crc_budget);
                        continue;
                    }
                    if frame::check_data(pos, len, crc, payload).is_ok() {
                        self.commit_pending(&mut pending_holes, &mut pending_damage, &mut rec);
                        rec.end = next;
                        off = next;
                    } else {
                        pending_damage += 1;
                        off = self.find_valid(off + 8, scan_end, &mut crc_budget);
                    }
                }
                Ok(Slot::Control(Header::Padding { len })) => {
                    let next = off + frame::frame_len(len);
                    if next > cap {
                        pending_damage += 1;
                        off = self.find_valid(off + 8, scan_end, &mut crc_budget);
                        continue;
                    }
                    self.commit_pending(&mut pending_holes, &mut pending_damage, &mut rec);
                    rec.end = next;
                    off = next;
                }
                Ok(Slot::Control(Header::End)) => {
                    self.commit_pending(&mut pending_holes, &mut pending_damage, &mut rec);
                    rec.end = off + FRAME_HEADER_LEN;
                    rec.sealed = true;
                    break;
                }
                Ok(Slot::Control(Header::InProgress { len })) => {
                    let next = off + frame::frame_len(len);
                    if next > self.data_limit() {
                        pending_damage += 1;
                        off = self.find_valid(off + 8, scan_end, &mut crc_budget);
                    } else {
                        pending_holes.push((off, next));
                        off = next;
                    }
                }
                Ok(Slot::Control(Header::Empty)) => {
                    // A writer reserved this space and died before writing its
                    // header; its whole reservation is still zero. Skip zeros.
                    let mut q = off + FRAME_HEADER_LEN;
                    while q + FRAME_HEADER_LEN <= scan_end as u64
                        && self.map.load_word(q as usize) == Some(0)
                    {
                        q += FRAME_HEADER_LEN;
                    }
                    if q + FRAME_HEADER_LEN > scan_end as u64 {
                        break;
                    }
                    pending_holes.push((off, q));
                    off = q;
                }
                Ok(Slot::Control(Header::Data { .. })) | Err(_) => {
                    pending_damage += 1;
                    off = self.find_valid(off + 8, scan_end, &mut crc_budget);
                }
            }
        }
        // Whatever is pending now lies past the last valid frame: torn tail.
        let end = rec.end;
        if seal && !rec.sealed {
            if end + FRAME_HEADER_LEN <= cap {
                self.ensure_len(end + FRAME_HEADER_LEN, step)?;
                // Zero the word first: it may hold a torn frame's header.
                self.map.zero_words(end as usize, (end + 8) as usize);
                let _ = self
                    .map
                    .cas_word(end as usize, 0, frame::end_word(base + end));
                rec.end = end + FRAME_HEADER_LEN;
            }
            // A segment padded up to its capacity ends there without a marker.
            rec.sealed = true;
        }
        let zero_to = self.file_len()?;
        if zero_to > rec.end {
            let zeroed = self.map.zero_words(rec.end as usize, zero_to as usize);
            rec.bytes_cut = zeroed.unwrap_or(0) * FRAME_HEADER_LEN;
        }
        let tail = if rec.sealed { cap } else { rec.end };
        self.tail().store(tail, Ordering::Release);
        if rec.sealed {
            self.set_state(STATE_SEALED);
        }
        Ok(rec)
    }

    /// Turns the holes found so far into padding (valid frames follow them)
    /// and counts the damage seen as mid-log damage.
    fn commit_pending(&self, holes: &mut Vec<(u64, u64)>, damage: &mut u64, rec: &mut Recovery) {
        for (start, end) in holes.drain(..) {
            let len = (end - start - FRAME_HEADER_LEN) as u32;
            let word = frame::padding_word(self.base() + start, len);
            if let Some(current) = self.map.load_word(start as usize) {
                if self.map.cas_word(start as usize, current, word).is_ok() {
                    rec.holes_padded += 1;
                }
            }
        }
        rec.damaged += *damage;
        *damage = 0;
    }

    /// The offset of the next frame at or after `from` that is valid on its
    /// own (a data frame with a matching CRC, padding or an end marker), or
    /// `scan_end` if there is none. `budget` bounds the bytes checksummed, so
    /// that hostile input cannot make recovery quadratic.
    fn find_valid(&self, from: u64, scan_end: usize, budget: &mut u64) -> u64 {
        let base = self.base();
        let mut q = from;
        while q + FRAME_HEADER_LEN <= scan_end as u64 {
            let pos = base + q;
            match self.map.slot(q as usize, pos, scan_end) {
                Ok(Slot::Data { crc, payload }) => {
                    let cost = payload.len() as u64 + 12;
                    if *budget < cost {
                        return scan_end as u64;
                    }
                    *budget -= cost;
                    if q + frame::frame_len(payload.len() as u32) <= self.data_limit()
                        && frame::check_data(pos, payload.len() as u32, crc, payload).is_ok()
                    {
                        return q;
                    }
                }
                Ok(Slot::Control(Header::Padding { len }))
                    if q + frame::frame_len(len) <= self.capacity() =>
                {
                    return q
                }
                Ok(Slot::Control(Header::End)) => return q,
                _ => {}
            }
            q += FRAME_HEADER_LEN;
        }
        scan_end as u64
    }

    /// Flushes the file's dirty pages in `from..to` to stable storage.
    pub(crate) fn flush_range(&self, from: u64, to: u64) -> Result<()> {
        let to = to.min(self.known_len());
        if to <= from {
            return Ok(());
        }
        let start = from & !(PAGE - 1);
        self.map
            .flush_range(start as usize, (to - start) as usize)
            .map_err(|e| Error::io("msync segment", &self.path, e))
    }

    /// Pre-faults `from..to` for writing, within the file's known length.
    #[allow(dead_code)]
    pub(crate) fn populate(&self, from: u64, to: u64) -> io::Result<()> {
        let to = to.min(self.known_len());
        if to <= from {
            return Ok(());
        }
        let start = from & !(PAGE - 1);
        self.map
            .populate_write(start as usize, (to - start) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip() {
        for base in [0u64, 4096, 1 << 30, (1 << 62) - 4096] {
            assert_eq!(parse_file_name(&file_name(base)), Some(base));
        }
        for bad in [
            "",
            ".tlog",
            "0.tlog",
            "000000000000000G.tlog",
            "0000000000000000.tlo",
            "0000000000000000.tlog.tmp",
            "000000000000000A.tlog",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }
}
