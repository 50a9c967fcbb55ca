//! One segment file: create, open, validate, grow, flush.
//!
//! A [`Segment`] owns the file and its mapping; what processes do with the
//! shared words in the mapping is [`protocol`](crate::protocol)'s, and how
//! a segment is repaired is [`recovery`](crate::recovery)'s.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_utils::CachePadded;

use crate::boot::BootId;
use crate::dir::{file_name, Access, LogDir};
use crate::error::{FrameDefect, HeaderDefect};
use crate::format::header::{initial_page, HeaderError, SegmentHeader, STATIC_LEN, VERSION};
use crate::format::{align_up, HEADER_LEN, PAGE};
use crate::protocol::Shared;
use crate::sys::map::Mapping;
use crate::{Error, Result};

/// The first growth of a log's first segment (unless `grow_step` is
/// smaller): growth then doubles with the file up to the log's
/// `grow_step`, so that a log with a few records takes about 140 KiB of
/// disk (this segment and the owner table), not a whole step. (On a full
/// disk a growth falls back to the pages the frame needs.)
pub(crate) const FIRST_GROWTH: u64 = 64 << 10;

/// An open, validated, mapped segment.
#[derive(Debug)]
pub(crate) struct Segment {
    path: PathBuf,
    file: File,
    shared: Shared,
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
    /// The range this process keeps locked in memory
    /// (`Options::lock_in_memory`): moved once per pre-faulted chunk, under
    /// its lock.
    locked: parking_lot::Mutex<LockWindow>,
    /// The end of the locked window (0: none), for appenders: pages below
    /// it are resident and mapped, and need no pre-faulting.
    locked_to: AtomicU64,
}

/// What a segment keeps locked in memory for this process's appenders.
#[derive(Debug, Default)]
struct LockWindow {
    /// Locked: `from..to`, page-aligned (empty when equal).
    from: u64,
    to: u64,
    /// The kernel refused a lock: no more tries on this segment.
    failed: bool,
}

/// The error for a header that [`SegmentHeader::decode`] refused.
fn header_error(path: &Path, e: HeaderError) -> Error {
    let path = path.to_owned();
    match e {
        HeaderError::Truncated { len } => Error::TruncatedHeader { path, len },
        HeaderError::BadMagic => Error::NotASegment { path },
        HeaderError::UnsupportedVersion { found } => Error::UnsupportedVersion {
            path,
            found,
            supported: VERSION,
        },
        HeaderError::UnsupportedFeatures { flags } => Error::UnsupportedFeatures { path, flags },
        HeaderError::BadChecksum { stored, computed } => Error::CorruptHeader {
            path,
            reason: HeaderDefect::Checksum { stored, computed },
        },
        HeaderError::Invalid { reason } => Error::CorruptHeader { path, reason },
    }
}

/// The wall clock in nanoseconds since the Unix epoch: the creation time
/// written into a new segment's header, and what retention compares ages
/// with (pinned by `internals::pin` for the golden files).
pub(crate) fn now_nanos() -> u64 {
    #[cfg(feature = "unstable-internals")]
    if let Some((nanos, _)) = crate::internals::pinned() {
        return nanos;
    }
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Grows `file` to at least `len` bytes with blocks reserved, so that no
/// later write into the mapping can hit a full disk and raise SIGBUS.
/// `fallocate` never shrinks a file, so concurrent growers are safe.
fn allocate(file: &File, path: &Path, from: u64, len: u64) -> Result<()> {
    crate::sys::calls::allocate(file, from, len).map_err(|e| Error::io("grow segment", path, e))
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
        let mut buf = [0u8; STATIC_LEN];
        let n = (len.min(STATIC_LEN as u64)) as usize;
        file.read_exact_at(&mut buf[..n], 0)
            .map_err(|e| Error::io("read segment header", &path, e))?;
        let header = SegmentHeader::decode(&buf[..n]).map_err(|e| header_error(&path, e))?;
        if len < HEADER_LEN {
            return Err(Error::TruncatedHeader { path, len });
        }
        if header.base != base {
            return Err(Error::CorruptHeader {
                path,
                reason: HeaderDefect::BaseNotFileName,
            });
        }
        let map = Mapping::new(&file, header.capacity, writable)
            .map_err(|e| Error::io("map segment", &path, e))?;
        let seg = Segment {
            path,
            file,
            shared: Shared::new(Arc::new(map), &header),
            header,
            known_len: CachePadded::new(AtomicU64::new(len.min(header.capacity))),
            populated: CachePadded::new(AtomicU64::new(HEADER_LEN)),
            can_populate: AtomicBool::new(writable),
            locked: parking_lot::Mutex::new(LockWindow::default()),
            locked_to: AtomicU64::new(0),
        };
        if writable {
            // A writer that grew the file and died (or is stopped) before
            // raising the `grown` hint: this process will append up to the
            // length it just saw, and readers elsewhere must learn that
            // they may read there. (A hint that runs ahead of the file is
            // harmless: writers and readers confirm it with `fstat`. Nothing
            // is allocated because of it: what a header claims never
            // decides how much disk to take.)
            seg.shared.raise_grown(len.min(header.capacity));
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
        let tmp = crate::dir::temp_name(&format!("{:016x}", header.base));
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
        file.write_all_at(&initial_page(header, initial_len, boot.0), 0)
            .map_err(|e| Error::io("write segment header", &path, e))?;
        file.sync_all()
            .map_err(|e| Error::io("sync segment", &path, e))?;
        Ok(())
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The shared memory, for every protocol operation.
    #[inline]
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    pub(crate) fn header(&self) -> &SegmentHeader {
        &self.header
    }

    /// Log position of file offset 0.
    #[inline]
    pub(crate) fn base(&self) -> u64 {
        self.shared.base()
    }

    /// The mapping length: no frame extends past it.
    #[inline]
    pub(crate) fn capacity(&self) -> u64 {
        self.shared.capacity()
    }

    /// The last offset at which a data frame may end: room is always left
    /// for the end-of-segment frame.
    #[inline]
    pub(crate) fn data_limit(&self) -> u64 {
        self.shared.data_limit()
    }

    #[inline]
    pub(crate) fn next_base(&self) -> u64 {
        self.header.next_base()
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
                reason: FrameDefect::WritePastReservation,
            });
        }
        // Another writer may have grown the file already.
        let hint = self.shared.grown();
        if hint >= end {
            let len = self.file_len()?;
            if len >= end {
                return Ok(self.known_len.fetch_max(len, Ordering::AcqRel).max(len));
            }
        }
        // Small logs stay small: a file grows by its own length (it
        // doubles), from `FIRST_GROWTH` up to `step` at a time.
        let grow_by = step.min(known.max(FIRST_GROWTH));
        let target = align_up(end.max(known.saturating_add(grow_by)), PAGE)
            .unwrap_or(cap)
            .min(cap);
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
        self.shared.raise_grown(grown);
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
        let locked = self.locked_to.load(Ordering::Acquire);
        if end <= locked {
            // Locked in memory by the locking thread: mapped and resident.
            // No `madvise` here: it would wait for the mmap lock that
            // thread's `mlock` holds (measured: 28 to 95 ms stalls).
            return Ok(align_up(end, chunk)
                .unwrap_or(locked)
                .min(locked)
                .min(known));
        }
        if !self.can_populate.load(Ordering::Relaxed) {
            return Ok(known);
        }
        let populated = self.populated.load(Ordering::Acquire);
        if end <= populated {
            return Ok(populated.min(known));
        }
        let target = align_up(end, chunk).unwrap_or(known).min(known);
        let from = populated.max(start) & !(PAGE - 1);
        match self.shared.populate_write(from, target - from) {
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

    /// Keeps `start..start + bytes` (whole pages, as far as the file
    /// reaches) locked in memory, and unlocks what lies before `start`: the
    /// window of `Options::lock_in_memory` moves with the appenders, so
    /// that their stores never fault and the pages behind them go back to
    /// the page cache's care. Called by the locking thread (`locker`),
    /// never by an appender. A refusal (the lock limit reached, memory
    /// short) stops locking on this segment, with a trace event; appends
    /// go on.
    pub(crate) fn lock_ahead(&self, start: u64, bytes: u64, step: u64) {
        // The window is locked in the file: grow it to cover the window (a
        // failure, a full disk, only shortens the window).
        let known = self.known_len.load(Ordering::Acquire);
        let want = start.saturating_add(bytes).min(self.header.capacity);
        let reach = if want > known {
            self.ensure_len(want, step).unwrap_or(known)
        } else {
            known
        };
        self.lock_window(start, bytes, reach);
    }

    fn lock_window(&self, start: u64, bytes: u64, known: u64) {
        let mut w = self.locked.lock();
        if w.failed {
            return;
        }
        let from = start & !(PAGE - 1);
        let to = start.saturating_add(bytes).min(known) & !(PAGE - 1);
        if w.from == w.to {
            w.from = from;
            w.to = from;
        }
        // In steps of half the window, each `mlock` draining every CPU's
        // page lists (see `locker`): extend once less than half of it is
        // left ahead, unlock once half of it lies behind.
        let half = (bytes / 2) & !(PAGE - 1);
        if from > w.from.saturating_add(half) {
            // Behind first: a window that jumped is never locked twice
            // over.
            let end = from.min(w.to);
            // Unlocking pages that are locked cannot fail but for a bad
            // range, which this is not.
            let _ = self.shared.unlock_range(w.from, end - w.from);
            w.from = end;
            if w.from == w.to {
                w.from = from;
                w.to = from;
            }
        }
        // (`to` below `from` only if the file is shorter than where the
        // appenders are, which their own growth rules out; never lock
        // backwards.)
        let lo = w.to.max(from);
        if to > lo && (w.to < start.saturating_add(half) || to == known) {
            if let Err(_e) = self.shared.lock_range(lo, to - lo) {
                crate::trace::trace_event!(
                    segment = %self.path.display(),
                    error = %_e,
                    "could not lock pages ahead of the appenders in memory"
                );
                w.failed = true;
                return;
            }
            w.to = to;
            self.locked_to.store(to, Ordering::Release);
        }
    }

    /// Unlocks whatever [`lock_window`](Self::lock_window) locked: the
    /// appenders have moved on to the next segment.
    pub(crate) fn unlock_all(&self) {
        let mut w = self.locked.lock();
        self.locked_to.store(0, Ordering::Release);
        if w.to > w.from {
            let _ = self.shared.unlock_range(w.from, w.to - w.from);
        }
        w.from = 0;
        w.to = 0;
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
        self.shared.raise_grown(len);
        self.known_len.fetch_max(len, Ordering::AcqRel);
        Ok(len)
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
        let hint = self.shared.grown();
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

    /// Grows the file to cover `end`, by a page at most: for recovery,
    /// which must never let a header's claims decide how much to allocate.
    pub(crate) fn grow_alone(&self, end: u64) -> Result<()> {
        let known = self.file_len()?;
        if end <= known {
            return Ok(());
        }
        let target = align_up(end, PAGE)
            .unwrap_or(self.header.capacity)
            .min(self.header.capacity);
        allocate(&self.file, &self.path, known, target)?;
        self.shared.raise_grown(target);
        self.known_len.fetch_max(target, Ordering::AcqRel);
        Ok(())
    }

    /// Syncs the header page.
    pub(crate) fn flush_header(&self) -> Result<()> {
        self.shared
            .flush_header()
            .map_err(|e| Error::io("msync segment header", &self.path, e))
    }

    /// Makes every page of `from..to` dirty again, so that the next sync
    /// writes it: after a failed sync Linux may have marked those pages
    /// clean without writing them. The first 8 bytes of each page are
    /// written again, with the value they hold, through the file (`pwrite`
    /// into the page cache the mapping shares), not through the mapping:
    /// no store of this process touches bytes that a `Record` may borrow.
    /// The range must hold only complete frames (published data, padding,
    /// end) and header words, so the value read is the value written: a
    /// published frame never changes, and the first word of the header
    /// page is the magic. (The one writer that may still store there is a
    /// slow appender whose reservation an unblocker padded over; padding
    /// payload is read by nobody.) `to` is clamped to the file's length.
    pub(crate) fn redirty(&self, from: u64, to: u64) -> Result<()> {
        let to = to.min(self.file_len()?);
        let mut off = from & !(PAGE - 1);
        while off < to {
            let word = if off < HEADER_LEN {
                u64::from_le_bytes(crate::format::header::MAGIC)
            } else {
                match self.shared.load_word(off) {
                    Some(w) => w,
                    None => break,
                }
            };
            self.file
                .write_all_at(&word.to_le_bytes(), off)
                .map_err(|e| Error::io("rewrite segment page", &self.path, e))?;
            off += PAGE;
        }
        Ok(())
    }

    /// Flushes the file's dirty pages in `from..to` to stable storage.
    pub(crate) fn flush_range(&self, from: u64, to: u64) -> Result<()> {
        // Other processes may have grown the file: ask the kernel.
        let to = to.min(self.file_len()?);
        if to <= from {
            return Ok(());
        }
        let start = from & !(PAGE - 1);
        #[cfg(feature = "unstable-internals")]
        if crate::internals::sync_fails() {
            return Err(Error::io(
                "msync segment",
                &self.path,
                std::io::Error::from_raw_os_error(libc::EIO),
            ));
        }
        self.shared
            .mapping()
            .flush_range(start as usize, (to - start) as usize)
            .map_err(|e| Error::io("msync segment", &self.path, e))
    }
}
