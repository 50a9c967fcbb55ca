//! One segment file: create, open, validate, grow, recover.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_utils::CachePadded;

use crate::boot::BootId;
use crate::dir::{Access, LogDir};
use crate::format::frame::{self, Header};
use crate::format::header::{
    decode_index_entry, encode_index_entry, index_entry_offset, index_shift, SegmentHeader,
    INDEX_SLOTS, MAX_POSITION, OFF_BOOT_ID, OFF_CHECKED, OFF_FLUSHED, OFF_GROWN, OFF_NOTIFY_SEQ,
    OFF_PARKED, OFF_STATE, OFF_TAIL, STATE_DIRTY, STATE_SEALED,
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
    /// The boundary index's stride, a power of two (from the capacity).
    index_shift: u32,
}

/// What recovery must do with a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Nothing: the segment is complete and verified.
    Nothing,
    /// Recover by the rules of a process crash: the page cache is intact.
    SameBoot,
    /// Recover by the rules of a restart: unsynced pages may be lost.
    Restart,
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
    /// The rules of a restart applied (the segment was last written in
    /// another boot).
    pub restarted: bool,
    /// The later segments were removed: this one was cut short after a
    /// restart, and what followed could not belong to a prefix.
    pub removed_later: bool,
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

impl Segment {
    /// Opens and validates an existing segment file.
    ///
    /// Returns `Ok(None)` if the file does not exist.
    pub(crate) fn open(dir: &LogDir, base: u64, writable: bool) -> Result<Option<Segment>> {
        let name = file_name(base);
        let path = dir.join(&name);
        let access = if writable {
            Access::Write
        } else {
            Access::Read
        };
        let Some(file) = dir.open_file(&name, access, "open segment")? else {
            return Ok(None);
        };
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat segment", &path, e))?
            .len();
        let mut buf = [0u8; 64];
        let n = (len.min(64)) as usize;
        file.read_exact_at(&mut buf[..n], 0)
            .map_err(|e| Error::io("read segment header", &path, e))?;
        let header = SegmentHeader::decode(&buf[..n]).map_err(|e| Error::header(&path, e))?;
        if len < HEADER_LEN {
            return Err(Error::TruncatedHeader { path, len });
        }
        if header.base != base {
            return Err(Error::CorruptHeader {
                path,
                reason: "base position in the header does not match the file name",
            });
        }
        let map = Mapping::new(&file, header.capacity, writable)
            .map_err(|e| Error::io("map segment", &path, e))?;
        let map = Arc::new(map);
        let seg = Segment {
            path,
            file,
            map,
            header,
            known_len: CachePadded::new(AtomicU64::new(len.min(header.capacity))),
            populated: CachePadded::new(AtomicU64::new(HEADER_LEN)),
            can_populate: AtomicBool::new(writable),
            index_shift: index_shift(header.capacity),
        };
        if writable {
            // A writer that grew the file and died (or is stopped) before
            // raising the `grown` hint: this process will append up to the
            // length it just saw, and readers elsewhere must learn that
            // they may read there. (A hint that runs ahead of the file is
            // harmless: writers and readers confirm it with `fstat`. Nothing
            // is allocated because of it: what a header claims never
            // decides how much disk to take.)
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
        dir: &LogDir,
        header: SegmentHeader,
        initial_len: u64,
        mode: u32,
        boot: BootId,
    ) -> Result<Segment> {
        if let Some(seg) = Self::open(dir, header.base, true)? {
            return Ok(seg);
        }
        let name = file_name(header.base);
        let tmp = format!(
            ".{:016x}.{}.{}.tmp",
            header.base,
            std::process::id(),
            now_nanos()
        );
        let result = Self::build(dir, &tmp, &header, initial_len, mode, boot).and_then(|()| {
            match dir.link(&tmp, &name) {
                // Whoever linked it, the entry must be durable before
                // this process appends to the segment: the winner may
                // not have reached its fsync (or may have died first).
                Ok(()) => dir.sync(),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => dir.sync(),
                Err(e) => Err(Error::io("link segment", dir.join(&name), e)),
            }
        });
        let _ = dir.remove(&tmp);
        result?;
        match Self::open(dir, header.base, true)? {
            Some(seg) => Ok(seg),
            None => Err(Error::MissingSegment {
                path: dir.join(&name),
            }),
        }
    }

    fn build(
        dir: &LogDir,
        tmp: &str,
        header: &SegmentHeader,
        initial_len: u64,
        mode: u32,
        boot: BootId,
    ) -> Result<()> {
        let path = dir.join(tmp);
        let file = dir.create_file(tmp, Access::CreateNew(mode), "create segment")?;
        let initial_len = initial_len.clamp(HEADER_LEN + PAGE, header.capacity);
        allocate(&file, &path, 0, initial_len)?;
        let mut page = vec![0u8; HEADER_LEN as usize];
        page[..64].copy_from_slice(&header.encode());
        page[OFF_TAIL..OFF_TAIL + 8].copy_from_slice(&HEADER_LEN.to_le_bytes());
        page[OFF_GROWN..OFF_GROWN + 8].copy_from_slice(&initial_len.to_le_bytes());
        page[OFF_BOOT_ID..OFF_BOOT_ID + 8].copy_from_slice(&boot.0[0].to_le_bytes());
        page[OFF_BOOT_ID + 8..OFF_BOOT_ID + 16].copy_from_slice(&boot.0[1].to_le_bytes());
        file.write_all_at(&page, 0)
            .map_err(|e| Error::io("write segment header", &path, e))?;
        file.sync_all()
            .map_err(|e| Error::io("sync segment", &path, e))?;
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

    /// What recovery must do with this segment, for a process that opens
    /// the log for writing while no other writer is alive, in the boot
    /// `boot`. `last`: whether this is the newest segment.
    pub(crate) fn recovery_need(&self, last: bool, boot: BootId) -> Need {
        if !boot.is_known() || self.boot_id() != boot {
            // Written in another boot (or this boot is unknown): whatever
            // was not on disk then may be lost, in any pattern, and only
            // the durable watermark vouches for anything.
            let complete = self.flushed() == self.capacity() && self.state() & STATE_SEALED != 0;
            return if complete {
                Need::Nothing
            } else {
                Need::Restart
            };
        }
        if self.needs_recovery(last) {
            Need::SameBoot
        } else {
            Need::Nothing
        }
    }

    /// Whether recovery must scan this segment, judged by the rules of the
    /// boot that wrote it (its page cache is intact): frames past the
    /// `checked` watermark have not been verified since they were written,
    /// a writer left a hole it could not pad, the tail word is
    /// implausible, or the sealed state contradicts the rest.
    pub(crate) fn needs_recovery(&self, last: bool) -> bool {
        let tail = self.tail_word();
        // Writers overshoot the capacity by what they reserve at once, far
        // less than this; a tail near the top of the range would wrap
        // around on the next `fetch_add`.
        if tail < HEADER_LEN || !tail.is_multiple_of(FRAME_HEADER_LEN) || tail > MAX_POSITION {
            return true;
        }
        let state = self.state();
        if state & STATE_DIRTY != 0 {
            return true;
        }
        if state & STATE_SEALED != 0 {
            // The appender that seals a segment moved the tail past the
            // data limit first: a sealed bit on a segment that nobody
            // filled is stale, and has no end frame for readers to follow.
            if tail <= self.data_limit() {
                return true;
            }
        } else if !last {
            // An older segment is sealed before its successor is used.
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
    /// no frame in progress). Trusted only in the boot that wrote it.
    pub(crate) fn checked(&self) -> u64 {
        self.map.load_header(OFF_CHECKED)
    }

    /// Records that every frame below the tail has been verified: called
    /// by the last writer to close when no writer died since the last
    /// recovery. It vouches for the page cache, not the disk, and so only
    /// for the boot in the segment's `boot_id`: after a restart only
    /// `flushed` is trusted.
    pub(crate) fn mark_checked(&self) {
        if self.map.is_writable() && self.state() & STATE_DIRTY == 0 {
            self.map
                .header_u64(OFF_CHECKED)
                .store(self.reserved_end(), Ordering::Release);
        }
    }

    /// The durable watermark: every frame below it is complete and was on
    /// stable storage before the word was stored.
    pub(crate) fn flushed(&self) -> u64 {
        self.map.load_header(OFF_FLUSHED)
    }

    /// Raises the durable watermark to `to`, which the caller has just
    /// made durable (writable mappings only).
    pub(crate) fn raise_flushed(&self, to: u64) {
        if self.map.is_writable() && self.flushed() < to {
            self.map
                .header_u64(OFF_FLUSHED)
                .fetch_max(to, Ordering::AcqRel);
        }
    }

    /// The boot the segment was last opened for writing in.
    pub(crate) fn boot_id(&self) -> BootId {
        BootId([
            self.map.load_header(OFF_BOOT_ID),
            self.map.load_header(OFF_BOOT_ID + 8),
        ])
    }

    /// Records that the segment may be written in the boot `boot` (writable
    /// mappings only). Called before anything is written to it in that
    /// boot, by a process that is alone (so nothing was written in it in
    /// this boot yet if the id changes).
    pub(crate) fn stamp_boot(&self, boot: BootId) {
        if self.map.is_writable() && self.boot_id() != boot {
            self.map
                .header_u64(OFF_BOOT_ID)
                .store(boot.0[0], Ordering::Release);
            self.map
                .header_u64(OFF_BOOT_ID + 8)
                .store(boot.0[1], Ordering::Release);
        }
    }

    /// Whether the segment file is still the one at its name in the log
    /// directory: another program may have removed or replaced it.
    pub(crate) fn check_linked(&self) -> Result<()> {
        use std::os::unix::fs::MetadataExt as _;
        let mine = self
            .file
            .metadata()
            .map_err(|e| Error::io("stat segment", &self.path, e))?;
        let there = std::fs::symlink_metadata(&self.path);
        let same =
            mine.nlink() > 0 && there.is_ok_and(|m| m.ino() == mine.ino() && m.dev() == mine.dev());
        if same {
            Ok(())
        } else {
            Err(Error::SegmentRemoved {
                path: self.path.clone(),
            })
        }
    }

    // The boundary index (see `format::header::index_shift`).

    /// Records in the boundary index that `end` is a frame boundary, for
    /// every mark in `off + 1 ..= end`: the reservation or frame
    /// `off..end` covers those marks, so the next frame starts at `end`.
    /// Cheap when no mark is covered, which is almost always.
    #[inline]
    pub(crate) fn index_note(&self, off: u64, end: u64) {
        if end >> self.index_shift > off >> self.index_shift {
            self.index_note_marks(off, end);
        }
    }

    #[cold]
    fn index_note_marks(&self, off: u64, end: u64) {
        if !self.map.is_writable() {
            return;
        }
        let s = self.index_shift;
        for k in (off >> s) + 1..=(end >> s).min(INDEX_SLOTS) {
            let mark = k << s;
            if mark >= self.header.capacity {
                break;
            }
            if let Some(e) = encode_index_entry(mark, end) {
                self.map
                    .header_u32(index_entry_offset(k))
                    .store(e, Ordering::Release);
            }
        }
    }

    /// The boundary the index records for mark `k`, if it is plausible.
    fn index_entry(&self, k: u64) -> Option<u64> {
        let mark = k << self.index_shift;
        let b = decode_index_entry(mark, self.map.load_header_u32(index_entry_offset(k)))?;
        (b <= self.header.capacity && b.is_multiple_of(FRAME_HEADER_LEN)).then_some(b)
    }

    /// The highest boundary at or below `off` that the index records, or
    /// the first frame's offset: where a walk that proves `off` starts.
    pub(crate) fn index_floor(&self, off: u64) -> u64 {
        let mut k = (off >> self.index_shift).min(INDEX_SLOTS);
        while k >= 1 {
            if let Some(b) = self.index_entry(k).filter(|&b| b <= off) {
                return b.max(HEADER_LEN);
            }
            k -= 1;
        }
        HEADER_LEN
    }

    /// The highest proven boundary at or below `off` for a reader: the
    /// index's (see [`index_floor`](Self::index_floor)), or the `checked`
    /// or `flushed` watermark (each was once the tail), whichever is
    /// higher.
    pub(crate) fn proven_floor(&self, off: u64) -> u64 {
        let tail = self.reserved_end();
        let mut best = self.index_floor(off);
        for w in [self.checked(), self.flushed()] {
            if w > best && w <= off && w <= tail && w.is_multiple_of(FRAME_HEADER_LEN) {
                best = w;
            }
        }
        best
    }

    /// The lowest boundary above `off` and at or below `limit` that the
    /// index records: where a reader or recovery resumes after damage at
    /// `off`, without taking any bytes in between for a frame.
    pub(crate) fn index_after(&self, off: u64, limit: u64) -> Option<u64> {
        let s = self.index_shift;
        let mut k = (off >> s) + 1;
        while k <= INDEX_SLOTS && k << s <= limit && k << s < self.header.capacity {
            if let Some(b) = self.index_entry(k).filter(|&b| b > off && b <= limit) {
                return Some(b);
            }
            k += 1;
        }
        None
    }

    /// The lowest proven boundary above `off` for a reader skipping damage:
    /// a boundary the index records, the `checked` or `flushed` watermark
    /// (each was once the tail), or the tail itself (clamped to the
    /// capacity: a full segment is left at its end). `None` only when `off`
    /// is at or past the tail.
    pub(crate) fn next_proven(&self, off: u64) -> Option<u64> {
        let tail = self.reserved_end();
        let mut best = self.index_after(off, tail);
        for w in [self.checked(), self.flushed(), tail] {
            if w > off && w <= tail && w.is_multiple_of(FRAME_HEADER_LEN) {
                best = Some(best.map_or(w, |b| b.min(w)));
            }
        }
        best
    }

    /// Forgets every boundary the index records above `end` (recovery, once
    /// the log ends there).
    fn index_clear_above(&self, end: u64) {
        let s = self.index_shift;
        for k in 1..=INDEX_SLOTS.min(self.header.capacity >> s) {
            let stale = k << s > end || self.index_entry(k).is_none_or(|b| b > end);
            let off = index_entry_offset(k);
            if stale && self.map.load_header_u32(off) != 0 {
                self.map.header_u32(off).store(0, Ordering::Release);
            }
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

    /// Scans the segment and repairs it. Only called while no other writer
    /// of the log is alive.
    ///
    /// The walk starts at a point already proven: after a process crash
    /// (`restart` false; the page cache holds everything written), the
    /// `checked` watermark; after a restart, the durable `flushed`
    /// watermark. Either counts only if it equals the tail or a walk from
    /// a boundary the index records reaches it exactly; otherwise the walk
    /// starts at the first frame. From there, valid frames (data with a
    /// matching CRC, padding, end) are kept.
    ///
    /// After a process crash, writers only reserve below the tail word, so
    /// holes are looked for there: an empty header (a writer reserved and
    /// died before claiming: its whole range is still zero) or an
    /// in-progress one (its extent is in the header). They become padding
    /// when a valid frame follows them, so that every acknowledged record
    /// is kept, and are cut as the torn tail otherwise. A data frame that
    /// fails its CRC, or a malformed header, below the tail is damage: the
    /// walk resumes at the next boundary the index records, and the
    /// damage stays in place for readers to report at its position. No
    /// boundary is guessed from bytes: a payload may hold anything,
    /// including frames that would pass their CRC. If the index records no
    /// boundary after the damage, nothing past it is cut.
    ///
    /// After a restart, unsynced pages may have been lost in any pattern,
    /// so the first frame past the durable watermark that is not valid
    /// ends the log: what survives is a prefix. If this is not the newest
    /// segment and it does not end complete, `before_cut` runs first (it
    /// removes the later segments, which cannot belong to the prefix) and
    /// this segment becomes the newest.
    ///
    /// Past the tail, valid frames that follow on from the last one are
    /// kept and the tail is raised over them. Everything from the end of
    /// the log to the end of the file is zeroed, so that no stale byte is
    /// taken for a frame later; the repair is synced, and only then are the
    /// words that vouch for it (`tail`, `checked`, `flushed`, `boot_id`)
    /// stored and synced.
    pub(crate) fn recover(
        &self,
        last: bool,
        restart: bool,
        boot: BootId,
        before_cut: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Recovery> {
        let file_len = self.file_len()?;
        let cap = self.header.capacity;
        let base = self.base();
        // Frames start and end on 8-byte boundaries: a file whose length is
        // not a multiple of 8 (cut short) ends in part of a word.
        let scan_end = file_len.min(cap) & !(FRAME_HEADER_LEN - 1);
        let raw_tail = self.tail_word();
        let tail_plausible = raw_tail >= HEADER_LEN
            && raw_tail.is_multiple_of(FRAME_HEADER_LEN)
            && raw_tail <= MAX_POSITION;
        let (start, hole_end) = if restart {
            // Nothing past the durable point is known to be reserved: a
            // hole there may be a lost record.
            let start = self.proven_start(self.flushed(), None, scan_end);
            (start, start)
        } else {
            let start =
                self.proven_start(self.checked(), tail_plausible.then_some(raw_tail), scan_end);
            // Holes and damage are looked for below this; past it, only a
            // run of valid frames continues the log. A tail no writer could
            // have left says nothing about where reservations end.
            let hole_end = if tail_plausible {
                raw_tail.min(scan_end)
            } else {
                scan_end
            };
            (start, hole_end)
        };
        let mut rec = Recovery {
            end: start,
            restarted: restart,
            ..Recovery::default()
        };
        let mut holes: Vec<(u64, u64)> = Vec::new();
        let mut damage: Vec<(u64, u64)> = Vec::new();
        let mut off = start;
        let mut give_up = false;
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
                    self.index_note(off, frame_end);
                    rec.end = frame_end;
                    off = frame_end;
                }
                Ok(Slot::Control(Header::Padding { .. })) if frame_end <= cap => {
                    self.commit_pending(&mut holes, &mut damage, &mut rec);
                    self.index_note(off, frame_end);
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
                // Damage: resume at the next proven boundary.
                _ => match self.index_after(off, hole_end) {
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
        if !restart && tail_plausible && !rec.sealed {
            // On the boot that wrote it, the end of the log never moves back
            // below the tail: a reader in another process may stand at any
            // boundary up to it (at the position `end_position` gave it, or
            // waiting at a dead writer's hole), and appends placed there
            // again at other boundaries would put it inside a record. So
            // what lies between the last valid frame and the tail is padded
            // over, not cut: the holes and damage found (valid frames or the
            // tail follow them), then the torn frames after them.
            let pending_end = holes
                .iter()
                .chain(damage.iter())
                .map(|&(_, end)| end)
                .max()
                .unwrap_or(0);
            self.commit_pending(&mut holes, &mut damage, &mut rec);
            if give_up {
                // Damage with no proven boundary after it below the tail:
                // kept as it is, up to the tail, for readers to report and
                // skip, rather than cut or overwritten.
                rec.damaged += 1;
                rec.end = rec.end.max(hole_end);
            } else {
                rec.end = rec.end.max(pending_end);
                if rec.end < hole_end {
                    // Torn frames: reserved and never (or not completely)
                    // written.
                    rec.bytes_cut = hole_end - rec.end;
                    self.pad(rec.end, hole_end);
                    rec.end = hole_end;
                }
            }
        }
        // Otherwise (after a restart, or with a tail no writer could have
        // left, which says nothing about where reservations end), whatever
        // follows the last valid frame is the torn tail, cut below.
        if !rec.sealed && rec.end + FRAME_HEADER_LEN > cap {
            // Padded up to the very end: no room, and no need, for a marker.
            rec.sealed = true;
        }
        if !last && !rec.sealed {
            if restart {
                // The log ends here now: later segments hold no prefix.
                before_cut()?;
                rec.removed_later = true;
            } else {
                // Every acknowledged record in later segments is kept: seal
                // this one where its valid frames end.
                let end = rec.end;
                self.grow_alone(end + FRAME_HEADER_LEN)?;
                self.map.zero_words(end as usize, (end + 8) as usize);
                let _ = self
                    .map
                    .cas_word(end as usize, 0, frame::end_word(base + end));
                rec.end = end + FRAME_HEADER_LEN;
                rec.sealed = true;
            }
        }
        let zero_to = self.file_len()?;
        if zero_to > rec.end {
            let zeroed = self
                .map
                .zero_words(rec.end as usize, zero_to as usize)
                .unwrap_or(0);
            if restart || !tail_plausible {
                // Nothing trusted says what was reserved: count what was
                // written.
                rec.bytes_cut = zeroed * FRAME_HEADER_LEN;
            }
        }
        self.index_clear_above(rec.end);
        // The repair (padding, the end marker, the zeroed tail, the index)
        // reaches the disk before any word that vouches for it. Otherwise,
        // after a power loss, the zeroed pages could come back with their
        // old frames behind records appended since at the same positions.
        self.flush_range(0, zero_to.max(rec.end))?;
        let tail = if rec.sealed { cap } else { rec.end };
        self.tail().store(tail, Ordering::Release);
        if rec.sealed {
            self.set_state(STATE_SEALED);
        } else {
            self.clear_state(STATE_SEALED);
        }
        self.clear_state(STATE_DIRTY);
        self.map
            .header_u64(OFF_CHECKED)
            .store(tail, Ordering::Release);
        self.map
            .header_u64(OFF_FLUSHED)
            .store(tail, Ordering::Release);
        // Only this process has the log open for writing: the hint may
        // come down to the truth.
        self.map
            .header_u64(OFF_GROWN)
            .store(zero_to, Ordering::Release);
        self.stamp_boot(boot);
        self.flush_header()?;
        Ok(rec)
    }

    /// Where recovery may start walking: the watermark `w` if it equals the
    /// (plausible) tail `tail` (the last writer to close set both, and
    /// appends go there), or if a walk from a boundary the index records
    /// reaches it exactly; otherwise the first frame. A watermark damaged
    /// to point inside a record would make recovery take payload words for
    /// frames, holes and damage.
    fn proven_start(&self, w: u64, tail: Option<u64>, scan_end: u64) -> u64 {
        if w <= HEADER_LEN || w > scan_end || !w.is_multiple_of(FRAME_HEADER_LEN) {
            return HEADER_LEN;
        }
        if tail == Some(w) || self.walks_to(self.index_floor(w), w, scan_end) {
            w
        } else {
            HEADER_LEN
        }
    }

    /// Whether a walk from the boundary `from` lands exactly on `to`:
    /// through valid frames (data with a matching CRC, padding), and over
    /// anything else (damage at rest below a watermark, which must not
    /// cost the records after it) to the next boundary the index records,
    /// or to `to` itself. Ends within `scan_end` (at most the file's
    /// length). Only for recovery, while no writer is alive.
    fn walks_to(&self, from: u64, to: u64, scan_end: u64) -> bool {
        let mut off = from;
        while off < to && off + FRAME_HEADER_LEN <= scan_end {
            let pos = self.base() + off;
            let valid_end = match self.map.slot(off as usize, pos, scan_end as usize) {
                Ok(Slot::Data { crc, payload }) => {
                    let end = off + frame::frame_len(payload.len() as u32);
                    (end <= self.data_limit()
                        && frame::check_data(pos, payload.len() as u32, crc, payload).is_ok())
                    .then_some(end)
                }
                Ok(Slot::Control(Header::Padding { len })) => {
                    Some(off + frame::frame_len(len)).filter(|&e| e <= self.header.capacity)
                }
                _ => None,
            };
            off = match valid_end {
                Some(end) => end,
                None => self.index_after(off, to).unwrap_or(to),
            };
        }
        off == to
    }

    /// Grows the file to cover `end`, by a page at most: for recovery,
    /// which must never let a header's claims decide how much to allocate.
    fn grow_alone(&self, end: u64) -> Result<()> {
        let known = self.file_len()?;
        if end <= known {
            return Ok(());
        }
        let target = align_up(end, PAGE)
            .unwrap_or(self.header.capacity)
            .min(self.header.capacity);
        allocate(&self.file, &self.path, known, target)?;
        self.raise_grown(target);
        self.known_len.fetch_max(target, Ordering::AcqRel);
        Ok(())
    }

    /// Turns the holes found so far into padding and records the damage
    /// seen (valid frames follow both).
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
            // An in-progress header whose extent ran past the tail is a
            // dead writer's hole; anything else is left as it is, for
            // readers to report at its position and skip to `end`.
            let word = self.map.load_word(start as usize).unwrap_or(0);
            if let Ok(Header::InProgress { .. }) = frame::decode(word, self.base() + start) {
                self.pad(start, end);
            } else {
                self.index_note(start, end);
            }
            rec.damaged += 1;
        }
    }

    /// Covers `start..end` with padding frames (as many as the 28-bit length
    /// field needs), recording them in the index. Only for areas no live
    /// writer owns.
    fn pad(&self, start: u64, end: u64) {
        let mut at = start;
        while at + FRAME_HEADER_LEN <= end {
            let len = (end - at - FRAME_HEADER_LEN).min(u64::from(frame::MAX_PADDING)) as u32;
            let word = frame::padding_word(self.base() + at, len);
            if let Some(current) = self.map.load_word(at as usize) {
                let _ = self.map.cas_word(at as usize, current, word);
            }
            let next = at + frame::frame_len(len);
            self.index_note(at, next);
            at = next;
        }
    }

    /// Syncs the header page.
    pub(crate) fn flush_header(&self) -> Result<()> {
        self.map
            .flush_range(0, HEADER_LEN as usize)
            .map_err(|e| Error::io("msync segment header", &self.path, e))
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
