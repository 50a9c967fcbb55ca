//! One segment file: create, open, validate, grow, recover.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_utils::CachePadded;

use crate::format::frame::{self, Header};
use crate::format::header::{
    SegmentHeader, MAX_POSITION, OFF_CHECKED, OFF_GROWN, OFF_NOTIFY_SEQ, OFF_PARKED, OFF_STATE,
    OFF_TAIL, STATE_DIRTY, STATE_SEALED,
};
use crate::format::{align_up, FRAME_HEADER_LEN, HEADER_LEN, PAGE};
use crate::map::{Mapping, Slot};
use crate::{Error, Result};

/// Bytes recovery of one segment may checksum while searching past damaged
/// frames for valid ones, all searches together, so that hostile input
/// cannot make it quadratic. Each `pread` of a candidate's successor is
/// charged [`PREAD_COST`].
const SEARCH_BUDGET: u64 = 256 << 20;

/// What one `pread` outside the search window costs against a budget.
const PREAD_COST: u64 = 4096;

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
    map: Arc<Mapping>,
    header: SegmentHeader,
    /// Bytes of the file known to exist: never more than its length. Read
    /// by every appender and reader of this process, written rarely: on its
    /// own cache line, away from `populated`.
    known_len: CachePadded<AtomicU64>,
    /// Bytes of the mapping whose page-table entries this process has
    /// populated for writing (page tables are per process).
    populated: CachePadded<AtomicU64>,
    /// Cleared if the kernel refuses `MADV_POPULATE_WRITE` (before 5.14).
    can_populate: AtomicBool,
}

/// What [`Segment::probe_start`] found at a position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Start {
    /// A frame boundary: a frame valid on its own, or a boundary by
    /// construction.
    Boundary,
    /// An unwritten or in-progress word below the tail: a boundary whose
    /// frame is not published yet, or not a boundary at all.
    Unknown,
    /// Not the start of a frame.
    NotAFrame,
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
/// `fallocate` never shrinks a file, so concurrent growers are safe.
fn allocate(file: &File, path: &Path, from: u64, len: u64) -> Result<()> {
    crate::map::allocate(file, from, len).map_err(|e| Error::io("grow segment", path, e))
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
        let map = Arc::new(map);
        let seg = Segment {
            path: path.to_owned(),
            file,
            map,
            header,
            known_len: CachePadded::new(AtomicU64::new(len.min(header.capacity))),
            populated: CachePadded::new(AtomicU64::new(HEADER_LEN)),
            can_populate: AtomicBool::new(writable),
        };
        if writable {
            // The `grown` hint may run ahead of the file (a crash between the
            // allocation and the hint is not possible, but power loss can
            // persist the header page and not the allocation). Make it true.
            // Bounded by what has been reserved, so that a garbage hint
            // cannot make every open allocate up to the capacity.
            let grown = seg.map.load_header(OFF_GROWN);
            let reserved = align_up(seg.reserved_end(), PAGE).unwrap_or(header.capacity);
            if grown > len && len < reserved {
                let target = grown.min(reserved).min(header.capacity);
                allocate(&seg.file, &seg.path, len, target)?;
                seg.known_len.fetch_max(target, Ordering::AcqRel);
            }
            // The other way round: a writer that grew the file and died (or
            // is stopped) before raising the hint. This process will append
            // up to the length it just saw, and readers elsewhere must learn
            // that they may read there.
            seg.raise_grown(len.min(header.capacity));
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
        let result = Self::build(&tmp, &header, initial_len, mode).and_then(|()| {
            match fs::hard_link(&tmp, &path) {
                // Whoever linked it, the entry must be durable before
                // this process appends to the segment: the winner may
                // not have reached its fsync (or may have died first).
                Ok(()) => sync_dir(dir),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => sync_dir(dir),
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
        allocate(&file, tmp, 0, initial_len)?;
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

    /// The mapping, for a claim that must own it.
    pub(crate) fn shared_map(&self) -> &Arc<Mapping> {
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

    /// The shared tail word, for appenders and recovery (writable
    /// mappings only). Loads go through [`tail_word`](Self::tail_word).
    #[inline]
    pub(crate) fn tail(&self) -> &AtomicU64 {
        self.map.header_u64(OFF_TAIL)
    }

    /// The tail word as it is now (acquire semantics; any mapping).
    #[inline]
    pub(crate) fn tail_word(&self) -> u64 {
        self.map.load_header(OFF_TAIL)
    }

    pub(crate) fn state(&self) -> u64 {
        self.map.load_header(OFF_STATE)
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

    /// The reserved part of the segment: `tail` clamped to the capacity.
    pub(crate) fn reserved_end(&self) -> u64 {
        self.tail_word().clamp(HEADER_LEN, self.header.capacity)
    }

    /// Whether recovery must scan this segment: frames past the `checked`
    /// watermark have not been verified since they were written, a writer
    /// left a hole it could not pad, or the tail word is implausible.
    pub(crate) fn needs_recovery(&self) -> bool {
        let tail = self.tail_word();
        // Writers overshoot the capacity by what they reserve at once, far
        // less than this; a tail near the top of the range would wrap
        // around on the next `fetch_add`.
        if tail < HEADER_LEN || !tail.is_multiple_of(FRAME_HEADER_LEN) || tail > MAX_POSITION {
            return true;
        }
        if self.state() & STATE_DIRTY != 0 {
            return true;
        }
        let checked = self.checked();
        if checked != self.reserved_end() {
            return true;
        }
        // Appends go at `tail`: the word there must be unwritten.
        let end = tail.saturating_add(FRAME_HEADER_LEN);
        end <= self.header.capacity
            && end <= self.known_len()
            && self.map.load_word(tail as usize) != Some(0)
    }

    /// The `checked` watermark: every frame below it is complete (no hole,
    /// no frame in progress).
    pub(crate) fn checked(&self) -> u64 {
        self.map.load_header(OFF_CHECKED)
    }

    /// Records that every frame below the tail has been verified: called
    /// by the last writer to close when no writer died since the last
    /// recovery, and by recovery itself.
    pub(crate) fn mark_checked(&self) {
        if self.map.is_writable() && self.state() & STATE_DIRTY == 0 {
            self.map
                .header_u64(OFF_CHECKED)
                .store(self.reserved_end(), Ordering::Release);
        }
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
        let hint = self.map.load_header(OFF_GROWN);
        if hint >= end {
            let len = self.file_len()?;
            if len >= end {
                return Ok(self.known_len.fetch_max(len, Ordering::AcqRel).max(len));
            }
        }
        let target = align_up(end, step).unwrap_or(cap).min(cap);
        // Blocks below the known length are allocated: every writer
        // allocates what it grows, and recovery makes `grown` true at open.
        let grown = match allocate(&self.file, &self.path, known, target) {
            Ok(()) => target,
            Err(Error::NoSpace { .. }) => {
                // Fall back to the smallest page-aligned growth that covers
                // this frame, so a nearly full disk still takes small records.
                let minimal = align_up(end, PAGE).unwrap_or(cap).min(cap);
                allocate(&self.file, &self.path, known, minimal)?;
                minimal
            }
            Err(e) => return Err(e),
        };
        self.raise_grown(grown);
        Ok(self.known_len.fetch_max(grown, Ordering::AcqRel).max(grown))
    }

    /// Makes the file cover offsets below `end` (see [`ensure_len`]) and
    /// pre-faults the pages from `start` up to there for writing (rounded up
    /// to `chunk`); pages below `start` belong to frames other appenders
    /// (maybe in other processes) wrote, which this process does not need
    /// mapped. Pre-faulting spares appends a page fault per 4 KiB page, so
    /// that appends store into mapped pages instead of taking a page fault
    /// per 4 KiB page. On this class of machine a write fault on a fresh
    /// page of a shared file mapping costs about 9 us; populating the same
    /// pages with `MADV_POPULATE_WRITE` costs under 1 us each. Returns the
    /// offset below which both hold.
    ///
    /// [`ensure_len`]: Self::ensure_len
    pub(crate) fn prepare_write(&self, start: u64, end: u64, step: u64, chunk: u64) -> Result<u64> {
        let known = self.ensure_len(end, step)?;
        if !self.can_populate.load(Ordering::Relaxed) {
            return Ok(known);
        }
        let populated = self.populated.load(Ordering::Acquire);
        if end <= populated {
            return Ok(populated.min(known));
        }
        let target = align_up(end, chunk).unwrap_or(known).min(known);
        let from = populated.max(start) & !(PAGE - 1);
        match self
            .map
            .populate_write(from as usize, (target - from) as usize)
        {
            Ok(()) => {
                self.populated.fetch_max(target, Ordering::AcqRel);
                Ok(target)
            }
            Err(_) => {
                // Not supported here: appends take the page faults instead.
                self.can_populate.store(false, Ordering::Relaxed);
                Ok(known)
            }
        }
    }

    /// The file's current length (fstat), clamped to the reservation.
    ///
    /// A process with write access also raises the `grown` hint to it: an
    /// appender of this process may now write up to this length, and a
    /// reader in another process must learn that it can read there even if
    /// the process that grew the file has not published the hint yet (it
    /// may be stopped between its `fallocate` and its hint).
    pub(crate) fn file_len(&self) -> Result<u64> {
        let len = self
            .file
            .metadata()
            .map_err(|e| Error::io("stat segment", &self.path, e))?
            .len()
            .min(self.header.capacity);
        // The hint first: an appender of this process may write up to the
        // length as soon as `known_len` holds it.
        self.raise_grown(len);
        self.known_len.fetch_max(len, Ordering::AcqRel);
        Ok(len)
    }

    /// Raises the `grown` hint to `len` (writable mappings only). Loads
    /// first: a read-modify-write that changes nothing still writes the
    /// header page (x86 `lock cmpxchg` always stores), which would make
    /// every flush write it back.
    fn raise_grown(&self, len: u64) {
        if self.map.is_writable() && self.map.load_header(OFF_GROWN) < len {
            self.map
                .header_u64(OFF_GROWN)
                .fetch_max(len, Ordering::AcqRel);
        }
    }

    /// For readers waiting for a frame header at `end - 8`: a length of the
    /// file that covers `end`, if it does. Cheap when `end` is within the
    /// known length; otherwise consults the writers' `grown` hint and only
    /// then pays for an fstat. The hint only decides whether to ask the
    /// kernel; readers never trust it as a length.
    pub(crate) fn readable_len(&self, end: u64) -> Result<Option<u64>> {
        let known = self.known_len.load(Ordering::Acquire);
        if end <= known {
            return Ok(Some(known));
        }
        let hint = self.map.load_header(OFF_GROWN);
        if hint <= known && known > HEADER_LEN {
            return Ok(None);
        }
        self.covering_len(end)
    }

    /// The file's length if it covers `end` (always an fstat): for a reader
    /// that found a published frame extending past the length it knew,
    /// which its writer can only have published once the file covered it.
    pub(crate) fn covering_len(&self, end: u64) -> Result<Option<u64>> {
        let len = self.file_len()?;
        Ok((end <= len).then_some(len))
    }

    /// Bytes of the file known to exist.
    pub(crate) fn known_len(&self) -> u64 {
        self.known_len.load(Ordering::Acquire)
    }

    /// Wakes readers parked on this segment, if any registered since the
    /// last wake-up. The `parked` flag is cleared by the waker, not by the
    /// readers: a reader killed while parked costs one wake-up, not a system
    /// call on every append that follows.
    #[inline]
    pub(crate) fn wake_readers(&self) {
        let parked = self.map.header_u32(OFF_PARKED);
        if parked.load(Ordering::SeqCst) != 0 && parked.swap(0, Ordering::SeqCst) != 0 {
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
    /// Walks the frames from the `checked` watermark (frames below it were
    /// verified before), once a copy of the file shows that a frame starts
    /// there, or else from the first frame. Valid frames (data with a
    /// matching CRC, padding, end) are kept. Where a writer died there is
    /// either a zero header (reserved, nothing written: its whole range is
    /// still zero) or an in-progress header (its extent is in the header).
    /// Writers only reserve below the tail word, so such holes are only
    /// looked for there: they become padding if a valid frame follows them,
    /// and are cut as the torn tail otherwise. A data frame that fails its
    /// CRC, or a malformed header, below the tail is damage: if a valid
    /// frame follows, its header word is left in place so that readers
    /// report it at its position, and the rest of it is zeroed
    /// (`neutralise`); if the search for one runs out of budget, nothing
    /// past it is cut either.
    ///
    /// Past the tail, valid frames that follow on from the last one without
    /// a gap are kept and the tail is raised over them: only a damaged tail
    /// word, or a header page older than its data after a power loss, puts
    /// records there. The first word past them that is not a valid frame
    /// ends the log, and everything from there to the end of the file is
    /// zeroed. A tail word no writer could have left (below the header,
    /// misaligned, absurdly large) says nothing about where reservations
    /// end: the whole file is searched for holes then.
    pub(crate) fn recover(&self, seal: bool, step: u64) -> Result<Recovery> {
        let file_len = self.file_len()?;
        let cap = self.header.capacity;
        let base = self.base();
        let scan_end = file_len.min(cap);
        let raw_tail = self.tail_word();
        let tail_plausible = raw_tail >= HEADER_LEN
            && raw_tail.is_multiple_of(FRAME_HEADER_LEN)
            && raw_tail <= MAX_POSITION;
        // Holes and damage are looked for below this; past it, only a run
        // of valid frames continues the log.
        let hole_end = if tail_plausible {
            raw_tail.min(scan_end)
        } else {
            scan_end
        };
        let checked = self.checked();
        let start = if checked > HEADER_LEN
            && checked <= scan_end
            && checked.is_multiple_of(FRAME_HEADER_LEN)
            && self.starts_frame_copy(checked, raw_tail)?
        {
            checked
        } else {
            HEADER_LEN
        };
        let mut rec = Recovery {
            end: start,
            ..Recovery::default()
        };
        let mut holes: Vec<(u64, u64)> = Vec::new();
        let mut damage: Vec<(u64, u64)> = Vec::new();
        let mut off = start;
        let mut give_up = false;
        let mut budget = SEARCH_BUDGET;
        while off + FRAME_HEADER_LEN <= scan_end {
            let pos = base + off;
            let slot = self.map.slot(off as usize, pos, scan_end as usize);
            let frame_end = match &slot {
                Ok(Slot::Data { payload, .. }) => off + frame::frame_len(payload.len() as u32),
                Ok(Slot::Control(h)) => off + h.frame_len(),
                Err(_) => 0,
            };
            match slot {
                Ok(Slot::Data { crc, payload })
                    if frame_end <= self.data_limit()
                        && frame::check_data(pos, payload.len() as u32, crc, payload).is_ok() =>
                {
                    self.commit_pending(&mut holes, &mut damage, &mut rec);
                    rec.end = frame_end;
                    off = frame_end;
                }
                Ok(Slot::Control(Header::Padding { .. })) if frame_end <= cap => {
                    self.commit_pending(&mut holes, &mut damage, &mut rec);
                    rec.end = frame_end;
                    off = frame_end;
                }
                Ok(Slot::Control(Header::End)) => {
                    self.commit_pending(&mut holes, &mut damage, &mut rec);
                    rec.end = frame_end;
                    rec.sealed = true;
                    break;
                }
                // Past the tail, the run of valid frames ends at anything
                // else: nobody reserved space there.
                _ if off >= hole_end => break,
                Ok(Slot::Control(Header::InProgress { .. })) if frame_end <= hole_end => {
                    holes.push((off, frame_end));
                    off = frame_end;
                }
                Ok(Slot::Control(Header::Empty)) => {
                    // The hole runs to the next non-zero word or the tail;
                    // what follows decides, as for an in-progress hole:
                    // a valid frame (past the tail too) makes it padding,
                    // anything else makes it the torn tail.
                    let mut q = off + FRAME_HEADER_LEN;
                    while q + FRAME_HEADER_LEN <= hole_end
                        && self.map.load_word(q as usize) == Some(0)
                    {
                        q += FRAME_HEADER_LEN;
                    }
                    if q + FRAME_HEADER_LEN > scan_end {
                        break;
                    }
                    holes.push((off, q));
                    off = q;
                }
                _ => match self.find_valid(off + FRAME_HEADER_LEN, hole_end, &mut budget)? {
                    Some(q) => {
                        damage.push((off, q));
                        off = q;
                    }
                    None => {
                        give_up = true;
                        break;
                    }
                },
            }
        }
        if give_up {
            // Damage we could not see past: keep everything up to the tail
            // for readers to report, rather than cut records we cannot see.
            rec.damaged += damage.len() as u64 + 1;
            rec.end = rec.end.max(hole_end);
            // Everything up to the tail is kept: the holes in it are dead
            // writers', and `checked` will say that none is left below it.
            for (start, end) in holes.drain(..) {
                self.pad(start, end);
                rec.holes_padded += 1;
            }
        }
        // Anything still pending lies past the last valid frame: torn tail,
        // frames reserved and never (or not completely) written.
        let end = rec.end;
        if !rec.sealed && tail_plausible {
            // Reserved space past the last valid frame.
            rec.bytes_cut = hole_end.saturating_sub(end);
        }
        if seal && !rec.sealed {
            if end + FRAME_HEADER_LEN <= cap {
                self.ensure_len(end + FRAME_HEADER_LEN, step)?;
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
            let zeroed = self
                .map
                .zero_words(rec.end as usize, zero_to as usize)
                .unwrap_or(0);
            if !tail_plausible {
                // Nothing says what was reserved: count what was written.
                rec.bytes_cut = zeroed * FRAME_HEADER_LEN;
            }
        }

        let tail = if rec.sealed { cap } else { rec.end };
        self.tail().store(tail, Ordering::Release);
        if rec.sealed {
            self.set_state(STATE_SEALED);
        }
        self.clear_state(STATE_DIRTY);
        self.map
            .header_u64(OFF_CHECKED)
            .store(if rec.sealed { cap } else { rec.end }, Ordering::Release);
        // Make the repair durable before anything is appended after it.
        // Otherwise, after a power loss, the zeroed pages (still dirty in
        // the page cache) could come back with their old frames, which
        // records appended since at the same positions would not hide: the
        // next recovery would follow them past the tail, out of order.
        self.flush_range(0, zero_to.max(rec.end))?;
        Ok(rec)
    }

    /// Turns the holes found so far into padding and neutralises the
    /// damage seen (valid frames follow both), counting it as mid-log damage.
    fn commit_pending(
        &self,
        holes: &mut Vec<(u64, u64)>,
        damage: &mut Vec<(u64, u64)>,
        rec: &mut Recovery,
    ) {
        for (start, end) in holes.drain(..) {
            self.pad(start, end);
            rec.holes_padded += 1;
        }
        for (start, end) in damage.drain(..) {
            self.neutralise(start, end);
            rec.damaged += 1;
        }
    }

    /// Makes the damaged range `start..end` (a valid frame follows it) stay
    /// exactly that however the tail moves later. Whether a frame inside it
    /// looks valid can depend on the tail (padding or a record must end
    /// below it), so a reader skipping the damage after more appends could
    /// otherwise stop inside the range, or an unblocker pad over what
    /// follows it. The header word is kept, so that readers still report
    /// the damage at its position, and the rest is zeroed; an in-progress
    /// header (one whose extent ran past the tail) is a dead writer's hole
    /// and becomes padding.
    fn neutralise(&self, start: u64, end: u64) {
        let word = self.map.load_word(start as usize).unwrap_or(0);
        match frame::decode(word, self.base() + start) {
            Ok(Header::InProgress { .. }) => self.pad(start, end),
            _ => {
                self.map
                    .zero_words((start + FRAME_HEADER_LEN) as usize, end as usize);
            }
        }
    }

    /// Covers `start..end` with padding frames (as many as the 28-bit length
    /// field needs). Only for areas no live writer owns.
    fn pad(&self, start: u64, end: u64) {
        let mut at = start;
        while at + FRAME_HEADER_LEN <= end {
            let len = (end - at - FRAME_HEADER_LEN).min(u64::from(frame::MAX_PADDING)) as u32;
            let word = frame::padding_word(self.base() + at, len);
            if let Some(current) = self.map.load_word(at as usize) {
                let _ = self.map.cas_word(at as usize, current, word);
            }
            at += frame::frame_len(len);
        }
    }

    /// The offset of the next frame in `from..to` that is valid on its own
    /// (a data frame with a matching CRC, padding or an end marker), or `to`
    /// if there is none; `None` if `budget` (bytes checksummed) ran out
    /// first. Reads through `pread` copies, never through the mapping, so it
    /// may pass over frames other threads are still writing.
    pub(crate) fn find_valid(&self, from: u64, to: u64, budget: &mut u64) -> Result<Option<u64>> {
        const WINDOW: u64 = 1 << 20;
        let to = to.min(self.header.capacity);
        let base = self.base();
        let mut window = Vec::new();
        let mut window_at = from;
        let mut payload = Vec::new();
        let mut q = from;
        while q + FRAME_HEADER_LEN <= to {
            if q + FRAME_HEADER_LEN > window_at + window.len() as u64 {
                window_at = q;
                let n = (to - q).min(WINDOW) as usize;
                window.resize(n, 0);
                let got = self.read_at(&mut window, q)?;
                window.truncate(got - got % 8);
                if window.is_empty() {
                    break;
                }
            }
            let i = (q - window_at) as usize;
            let word = u64::from_le_bytes(window[i..i + 8].try_into().unwrap_or_default());
            let pos = base + q;
            match frame::decode(word, pos) {
                Ok(Header::Data { len, crc }) => {
                    let end = q + frame::frame_len(len);
                    // Cheap checks first: in bounds, and followed by a
                    // plausible header (or the end of the range).
                    let in_bounds = end <= to.min(self.data_limit());
                    let plausible = in_bounds
                        && (end + FRAME_HEADER_LEN > to || {
                            let mut next = [0u8; 8];
                            let w_end = window_at + window.len() as u64;
                            if end >= window_at && end + FRAME_HEADER_LEN <= w_end {
                                let j = (end - window_at) as usize;
                                next.copy_from_slice(&window[j..j + 8]);
                            } else {
                                if *budget < PREAD_COST {
                                    return Ok(None);
                                }
                                *budget -= PREAD_COST;
                                if self.read_at(&mut next, end)? != 8 {
                                    next = [0xFF; 8];
                                }
                            }
                            frame::decode(u64::from_le_bytes(next), base + end).is_ok()
                        });
                    if plausible {
                        let cost = u64::from(len) + 12;
                        if *budget < cost {
                            return Ok(None);
                        }
                        *budget -= cost;
                        payload.resize(len as usize, 0);
                        if self.read_at(&mut payload, q + FRAME_HEADER_LEN)? == len as usize
                            && frame::check_data(pos, len, crc, &payload).is_ok()
                        {
                            return Ok(Some(q));
                        }
                    }
                }
                Ok(Header::Padding { len }) if q + frame::frame_len(len) <= to => {
                    return Ok(Some(q))
                }
                Ok(Header::End) => return Ok(Some(q)),
                _ => {}
            }
            q += FRAME_HEADER_LEN;
        }
        Ok(Some(to))
    }

    /// `pread` as much of `buf` as the file holds at `off`.
    fn read_at(&self, buf: &mut [u8], off: u64) -> Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.file.read_at(&mut buf[done..], off + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("read segment", &self.path, e)),
            }
        }
        Ok(done)
    }

    /// What a position given by a caller (`Log::reader_at`) is, judged on
    /// `pread` copies so that nothing is read through the mapping before the
    /// position is known to be a frame boundary.
    pub(crate) fn probe_start(&self, off: u64) -> Result<Start> {
        // The first frame of a segment and the tail are boundaries by
        // construction (the tail only grows, by whole frames).
        if off == HEADER_LEN || off == self.reserved_end() {
            return Ok(Start::Boundary);
        }
        let mut word = [0u8; 8];
        if self.read_at(&mut word, off)? < 8 {
            return Ok(Start::NotAFrame);
        }
        let pos = self.base() + off;
        Ok(match frame::decode(u64::from_le_bytes(word), pos) {
            // A reserved frame not published yet, or a zero word inside some
            // record's payload: only its publication will tell.
            Ok(Header::Empty | Header::InProgress { .. }) if off < self.reserved_end() => {
                Start::Unknown
            }
            Ok(Header::Data { .. }) if self.check_data_copy(off)? => Start::Boundary,
            // Their checksums cover the position: a payload does not produce
            // one by accident.
            Ok(Header::Padding { .. } | Header::End) => Start::Boundary,
            _ => Start::NotAFrame,
        })
    }

    /// Whether recovery may start at the `checked` watermark `off`: it
    /// equals the tail word (the two agree: the last writer to close set
    /// both, and appends go there), or a `pread` copy shows a frame that is
    /// valid on its own starting there (its CRC covers its position, so a
    /// word inside a record does not pass by accident). A watermark damaged
    /// to point inside a record would otherwise make recovery take payload
    /// words for holes and damage and overwrite them; rescanning from the
    /// segment's start instead of trusting a watermark that agrees with the
    /// tail would re-read frames that appends since then may have been
    /// placed after on its word (found by the recover fuzzer).
    fn starts_frame_copy(&self, off: u64, tail: u64) -> Result<bool> {
        if off == tail {
            return Ok(true);
        }
        let mut word = [0u8; 8];
        if self.read_at(&mut word, off)? < 8 {
            return Ok(false);
        }
        let word = u64::from_le_bytes(word);
        Ok(match frame::decode(word, self.base() + off) {
            Ok(Header::Data { .. }) => self.check_data_copy(off)?,
            Ok(Header::Padding { .. } | Header::End) => true,
            _ => false,
        })
    }

    fn check_data_copy(&self, off: u64) -> Result<bool> {
        let mut word = [0u8; 8];
        self.read_at(&mut word, off)?;
        let pos = self.base() + off;
        let Ok(Header::Data { len, crc }) = frame::decode(u64::from_le_bytes(word), pos) else {
            return Ok(false);
        };
        let end = off + frame::frame_len(len);
        if end > self.data_limit() || end > self.file_len()? {
            return Ok(false);
        }
        let mut payload = vec![0u8; len as usize];
        Ok(
            self.read_at(&mut payload, off + FRAME_HEADER_LEN)? == payload.len()
                && frame::check_data(pos, len, crc, &payload).is_ok(),
        )
    }

    /// Flushes the file's dirty pages in `from..to` to stable storage.
    pub(crate) fn flush_range(&self, from: u64, to: u64) -> Result<()> {
        // Other processes may have grown the file: ask the kernel.
        let to = to.min(self.file_len()?);
        if to <= from {
            return Ok(());
        }
        let start = from & !(PAGE - 1);
        self.map
            .flush_range(start as usize, (to - start) as usize)
            .map_err(|e| Error::io("msync segment", &self.path, e))
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
