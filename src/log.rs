//! The log directory: segments, locks, recovery at open, rollover.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use fs2::FileExt as _;
use parking_lot::Mutex;

use crate::append::Appender;
use crate::format::header::{SegmentHeader, STATE_DIRTY, STATE_SEALED};
use crate::format::HEADER_LEN;
use crate::options::{Resolved, WriterMode};
use crate::read::Reader;
use crate::segment::{self, Segment, Start};
use crate::{Error, Options, Position, Result};

/// Lock file every process with the log open for writing holds shared; an
/// exclusive lock on it proves that no other writer is alive.
pub(crate) const WRITERS_LOCK: &str = "writers.lock";
/// Lock file that serialises opening and closing for writing. Its first 8
/// bytes count the processes registered as writers (read and written only
/// under the lock): a writer that dies never unregisters, so a last writer
/// that finds the count above zero knows someone died since the last
/// recovery.
pub(crate) const OPEN_LOCK: &str = "open.lock";
/// Lock file held exclusively by the one process allowed to append in
/// [`WriterMode::SingleProcess`].
pub(crate) const APPEND_LOCK: &str = "append.lock";

/// An append-only log in a directory, opened for reading and appending or
/// for reading only.
///
/// `Log` is cheap to share: wrap it in an `Arc` or hand out appenders and
/// readers, which keep what they need alive themselves.
///
/// Open the log in each process that uses it, after any `fork`: a child's
/// inherited copy shares the parent's lock descriptions, which the
/// liveness protocol cannot tell apart (the copy does nothing when dropped).
///
/// ```
/// # fn main() -> Result<(), tidelog::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// let log = tidelog::Log::open(dir.path().join("orders"))?;
/// let mut appender = log.appender()?;
/// let first = appender.append(b"order 1")?;
/// appender.append(b"order 2")?;
///
/// let mut reader = log.reader();
/// let record = reader.try_next()?.expect("a record");
/// assert_eq!(&*record, b"order 1");
/// assert_eq!(record.position(), first);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Log {
    pub(crate) inner: Arc<Inner>,
}

/// What recovery did when the log was opened for writing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Whether recovery ran (it runs when no other writer is alive and the
    /// last writer did not close cleanly).
    pub ran: bool,
    /// Segments scanned.
    pub segments_scanned: u64,
    /// Holes left by writers that died between reserving and publishing,
    /// turned into padding.
    pub holes_padded: u64,
    /// Bytes of torn, unpublished frames cut from the tail: the reserved
    /// space past the last valid frame. (When the tail word itself was
    /// damaged, so that nothing says what was reserved: the non-zero bytes
    /// zeroed past the last valid frame.)
    pub bytes_cut: u64,
    /// Damaged frames left in place between valid ones; readers report them
    /// as errors at their positions.
    pub damaged_frames: u64,
}

/// A summary of one segment, for tools and monitoring.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentInfo {
    /// The segment file.
    pub path: PathBuf,
    /// Sequence number within the log.
    pub index: u64,
    /// Position of the segment's first byte.
    pub base: Position,
    /// Reserved size in bytes.
    pub capacity: u64,
    /// Current file length in bytes.
    pub file_len: u64,
    /// Bytes reserved by appenders so far, header included (at most the
    /// capacity).
    pub used: u64,
    /// Whether an end-of-segment marker has been published.
    pub sealed: bool,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) dir: PathBuf,
    pub(crate) opts: Resolved,
    pub(crate) writable: bool,
    /// Open segments by base position, shared by the appenders and readers
    /// of this process.
    segments: Mutex<BTreeMap<u64, Weak<Segment>>>,
    /// The oldest segment, kept open so that `reader()` cannot fail.
    oldest: Arc<Segment>,
    /// The newest segment this process knows: where appenders start.
    active: Mutex<Arc<Segment>>,
    /// Shared lock on `writers.lock` while open for writing.
    liveness: Option<File>,
    /// Exclusive lock on `append.lock` once this process has an appender.
    append_lock: Mutex<Option<File>>,
    recovery: RecoveryReport,
    /// One past the base of the newest segment whose directory entry this
    /// handle's `flush` has made durable (0: none yet).
    dir_synced: AtomicU64,
    /// The process that opened the log. A child made by `fork` shares the
    /// lock files' open descriptions with it, so its copy must not run the
    /// close protocol (see `Drop`).
    pid: u32,
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn open_lock_file(dir: &Path, name: &str, mode: u32) -> Result<File> {
    let path = dir.join(name);
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(mode)
        .open(&path)
        .map_err(|e| Error::io("open lock file", path, e))
}

/// The number of registered writers in `open.lock` (held exclusively):
/// `None` if the count cannot be read (then nobody may vouch for a clean
/// close until a writer that is alone resets it).
fn registered_writers(lock: &File) -> Option<u64> {
    let mut b = [0u8; 8];
    match lock.read_at(&mut b, 0) {
        Ok(8) => Some(u64::from_le_bytes(b)),
        // A new lock file.
        Ok(0) => Some(0),
        _ => None,
    }
}

/// A count no number of live writers reaches: "unknown, do not vouch".
const UNKNOWN_WRITERS: u64 = 1 << 32;

fn set_registered_writers(lock: &File, n: u64) -> io::Result<()> {
    lock.write_all_at(&n.to_le_bytes(), 0)
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::EWOULDBLOCK)
}

/// The base positions of the segment files in `dir`, ascending.
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io("list log directory", dir, e))?;
    let mut bases = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("list log directory", dir, e))?;
        if let Some(base) = entry
            .file_name()
            .to_str()
            .and_then(segment::parse_file_name)
        {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

impl Log {
    /// Opens the log at `dir` for reading and appending with default
    /// [`Options`], creating it if it does not exist.
    ///
    /// If no other process has the log open for writing and the last writer
    /// did not close cleanly, recovery runs first (see
    /// [`recovery`](Self::recovery)).
    ///
    /// # Errors
    /// [`Error::NotADirectory`] if `dir` is a file; header errors
    /// ([`Error::NotASegment`], [`Error::UnsupportedVersion`],
    /// [`Error::TruncatedHeader`], [`Error::CorruptHeader`]) for a segment
    /// file that is not a valid segment; I/O errors.
    pub fn open(dir: impl AsRef<Path>) -> Result<Log> {
        Options::new().open(dir)
    }

    /// Opens an existing log for reading only, with default [`Options`]:
    /// nothing in the directory is created, locked or written.
    ///
    /// # Errors
    /// [`Error::NotFound`] if the directory does not exist, and the errors
    /// of [`open`](Self::open).
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<Log> {
        Options::new().open_read_only(dir)
    }

    pub(crate) fn open_with(dir: &Path, opts: Resolved, writable: bool) -> Result<Log> {
        match fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(Error::NotADirectory {
                    path: dir.to_owned(),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !writable {
                    return Err(Error::NotFound {
                        path: dir.to_owned(),
                    });
                }
                let dir_mode = opts.file_mode | ((opts.file_mode & 0o444) >> 2);
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(dir_mode)
                    .create(dir)
                    .map_err(|e| Error::io("create log directory", dir, e))?;
            }
            Err(e) => return Err(Error::io("stat log directory", dir, e)),
        }
        let inner = if writable {
            Inner::open_writable(dir, opts)?
        } else {
            Inner::open_read_only(dir, opts)?
        };
        Ok(Log {
            inner: Arc::new(inner),
        })
    }

    /// A new appender. Appenders are independent: give each thread its own.
    ///
    /// # Errors
    /// [`Error::ReadOnly`] for a log opened read-only; [`Error::Locked`] in
    /// [`WriterMode::SingleProcess`] when another process holds the append
    /// lock (the default, [`WriterMode::MultiProcess`], has no such lock).
    pub fn appender(&self) -> Result<Appender> {
        let inner = &self.inner;
        if !inner.writable {
            return Err(Error::ReadOnly {
                path: inner.dir.clone(),
            });
        }
        match inner.opts.writer_mode {
            WriterMode::MultiProcess => {}
            WriterMode::SingleProcess => {
                let mut held = inner.append_lock.lock();
                if held.is_none() {
                    let file = open_lock_file(&inner.dir, APPEND_LOCK, inner.opts.file_mode)?;
                    match file.try_lock_exclusive() {
                        Ok(()) => *held = Some(file),
                        Err(e) if would_block(&e) => {
                            return Err(Error::Locked {
                                path: inner.dir.join(APPEND_LOCK),
                            })
                        }
                        Err(e) => return Err(Error::io("lock", inner.dir.join(APPEND_LOCK), e)),
                    }
                }
            }
        }
        Ok(Appender::new(Arc::clone(inner)))
    }

    /// A reader positioned at the oldest record.
    pub fn reader(&self) -> Reader {
        Reader::new(
            Arc::clone(&self.inner),
            Arc::clone(&self.inner.oldest),
            HEADER_LEN,
        )
    }

    /// A reader positioned at `position`, which must be the position of a
    /// record of this log (as returned by [`Appender::append`] or
    /// [`Record::position`](crate::Record::position)), the position just
    /// after one ([`Record::next_position`](crate::Record::next_position)),
    /// or [`end_position`](Self::end_position).
    ///
    /// The position is checked on copies of the file (`pread`) before the
    /// reader touches the mapping there. A published frame is checked by its
    /// CRC, which covers the position. A position whose frame is not
    /// published yet (an unwritten word below the tail) cannot be told from
    /// a zero word inside some record: the reader then waits, looking only at
    /// file copies and never unblocking, until a frame is published there,
    /// and reports [`Error::InvalidPosition`] if what appears is not a frame.
    ///
    /// # Errors
    /// [`Error::InvalidPosition`] for a position outside the log or not at a
    /// frame boundary.
    pub fn reader_at(&self, position: Position) -> Result<Reader> {
        let pos = position.get();
        let invalid = |reason| Error::InvalidPosition { position, reason };
        let bases = list_segments(&self.inner.dir)?;
        let Some(&base) = bases.iter().rev().find(|&&b| b <= pos) else {
            return Err(invalid("before the oldest segment"));
        };
        let Some(seg) = self.inner.segment(base)? else {
            return Err(invalid("before the oldest segment"));
        };
        let off = pos - base;
        if off >= seg.capacity() {
            // The first position of a successor that does not exist yet is
            // where a reader at the end of a full segment waits.
            let full = seg.tail_word() > seg.data_limit();
            if off == seg.capacity() + HEADER_LEN && full {
                let end = seg.capacity();
                return Ok(Reader::new(Arc::clone(&self.inner), seg, end));
            }
            return Err(invalid("not inside a segment's data area"));
        }
        if off < HEADER_LEN || !off.is_multiple_of(crate::format::FRAME_ALIGN) {
            return Err(invalid("not at a frame boundary"));
        }
        if off > seg.reserved_end() {
            return Err(invalid("beyond the end of the log"));
        }
        let verified = match seg.probe_start(off)? {
            Start::Boundary => true,
            Start::Unknown => false,
            Start::NotAFrame => return Err(invalid("not the start of a valid frame")),
        };
        let mut reader = Reader::new(Arc::clone(&self.inner), seg, off);
        if !verified {
            reader.start_unverified();
        }
        Ok(reader)
    }

    /// The position the next record appended will have, unless appends in
    /// other threads or processes come first: where a reader that wants only
    /// new records starts.
    ///
    /// # Errors
    /// I/O errors from looking up the newest segment.
    pub fn end_position(&self) -> Result<Position> {
        let bases = list_segments(&self.inner.dir)?;
        for &base in bases.iter().rev() {
            if let Some(seg) = self.inner.segment(base)? {
                let tail = seg.tail_word();
                if tail > seg.data_limit() || seg.state() & STATE_SEALED != 0 {
                    // Full: the log continues at the next segment.
                    return Ok(Position::from(seg.next_base() + HEADER_LEN));
                }
                return Ok(Position::from(base + tail));
            }
        }
        Ok(Position::from(HEADER_LEN))
    }

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Whether the log was opened read-only.
    pub fn is_read_only(&self) -> bool {
        !self.inner.writable
    }

    /// The largest record this log accepts, in bytes.
    pub fn max_record_size(&self) -> usize {
        self.inner.opts.max_record_size
    }

    /// What recovery found when this log was opened.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.inner.recovery
    }

    /// A summary of every segment, oldest first.
    ///
    /// # Errors
    /// I/O errors and header errors of the segment files.
    pub fn segments(&self) -> Result<Vec<SegmentInfo>> {
        let mut out = Vec::new();
        for base in list_segments(&self.inner.dir)? {
            if let Some(seg) = self.inner.segment(base)? {
                let tail = seg.tail_word();
                out.push(SegmentInfo {
                    path: seg.path().to_owned(),
                    index: seg.header().index,
                    base: Position::from(base),
                    capacity: seg.capacity(),
                    file_len: seg.file_len()?,
                    used: tail.min(seg.capacity()),
                    sealed: seg.state() & STATE_SEALED != 0,
                });
            }
        }
        Ok(out)
    }

    /// Writes everything appended so far, by any process, to stable storage:
    /// `msync(MS_SYNC)` of the reserved part of every segment, header pages
    /// included, then, if a segment file appeared since this handle's last
    /// flush, an fsync of the directory, so that segment files created by
    /// other processes are durable too. A record survives a
    /// process crash as soon as `append` returns; it survives power loss
    /// once a flush that started after it returns `Ok`.
    ///
    /// # Errors
    /// I/O errors from `msync` or `fsync`.
    pub fn flush(&self) -> Result<()> {
        let bases = list_segments(&self.inner.dir)?;
        for &base in &bases {
            if let Some(seg) = self.inner.segment(base)? {
                seg.flush_range(0, seg.reserved_end())?;
            }
        }
        // The directory only when it holds a segment this handle has not
        // seen synced yet: an fsync of an unchanged directory can still
        // cost a disk cache flush.
        let covers = bases.last().map_or(0, |b| b + 1);
        if self.inner.dir_synced.load(Ordering::Acquire) < covers {
            segment::sync_dir(&self.inner.dir)?;
            self.inner.dir_synced.fetch_max(covers, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Flushes (see [`flush`](Self::flush)) and closes the log handle,
    /// returning any error that dropping it would hide.
    ///
    /// # Errors
    /// The errors of [`flush`](Self::flush).
    pub fn close(self) -> Result<()> {
        if self.inner.writable {
            self.flush()?;
        }
        Ok(())
    }
}

impl Inner {
    fn open_read_only(dir: &Path, opts: Resolved) -> Result<Inner> {
        let bases = list_segments(dir)?;
        let Some(&first) = bases.first() else {
            return Err(Error::NotFound {
                path: dir.to_owned(),
            });
        };
        let open = |base: u64| -> Result<Arc<Segment>> {
            let path = dir.join(segment::file_name(base));
            match Segment::open(&path, base, false)? {
                Some(s) => Ok(Arc::new(s)),
                None => Err(Error::MissingSegment { path }),
            }
        };
        let oldest = open(first)?;
        let last = *bases.last().unwrap_or(&first);
        let active = if last == first {
            Arc::clone(&oldest)
        } else {
            open(last)?
        };
        Ok(Self::assemble(
            dir,
            opts,
            false,
            oldest,
            active,
            None,
            RecoveryReport::default(),
        ))
    }

    fn assemble(
        dir: &Path,
        opts: Resolved,
        writable: bool,
        oldest: Arc<Segment>,
        active: Arc<Segment>,
        liveness: Option<File>,
        recovery: RecoveryReport,
    ) -> Inner {
        let mut segments = BTreeMap::new();
        segments.insert(oldest.base(), Arc::downgrade(&oldest));
        segments.insert(active.base(), Arc::downgrade(&active));
        Inner {
            dir: dir.to_owned(),
            opts,
            writable,
            segments: Mutex::new(segments),
            oldest,
            active: Mutex::new(active),
            liveness,
            append_lock: Mutex::new(None),
            recovery,
            dir_synced: AtomicU64::new(0),
            pid: std::process::id(),
        }
    }

    fn open_writable(dir: &Path, opts: Resolved) -> Result<Inner> {
        let open_lock = open_lock_file(dir, OPEN_LOCK, opts.file_mode)?;
        open_lock
            .lock_exclusive()
            .map_err(|e| Error::io("lock", dir.join(OPEN_LOCK), e))?;
        let liveness = open_lock_file(dir, WRITERS_LOCK, opts.file_mode)?;
        let alone = match liveness.try_lock_exclusive() {
            Ok(()) => true,
            Err(e) if would_block(&e) => false,
            Err(e) => return Err(Error::io("lock", dir.join(WRITERS_LOCK), e)),
        };
        let result = Self::open_segments(dir, &opts, alone);
        if result.is_ok() {
            let others = if alone {
                0
            } else {
                registered_writers(&open_lock).unwrap_or(UNKNOWN_WRITERS)
            };
            // A registration that did not land would let the last writer
            // to close vouch for frames a dead writer left unfinished.
            set_registered_writers(&open_lock, others + 1)
                .map_err(|e| Error::io("register writer", dir.join(OPEN_LOCK), e))?;
        }
        // With `open.lock` held, nobody else is trying for an exclusive lock
        // on `writers.lock`, so taking (or converting to) a shared one cannot
        // deadlock, and no opener can slip in between and run recovery.
        liveness
            .lock_shared()
            .map_err(|e| Error::io("lock", dir.join(WRITERS_LOCK), e))?;
        drop(open_lock);
        let (oldest, active, recovery) = result?;
        Ok(Self::assemble(
            dir,
            opts,
            true,
            oldest,
            active,
            Some(liveness),
            recovery,
        ))
    }

    /// Opens every segment, recovering them first when `alone`. Returns the
    /// oldest and the newest segment.
    fn open_segments(
        dir: &Path,
        opts: &Resolved,
        alone: bool,
    ) -> Result<(Arc<Segment>, Arc<Segment>, RecoveryReport)> {
        let mut report = RecoveryReport::default();
        if alone {
            Self::remove_stale_temporaries(dir);
        }
        let mut bases = list_segments(dir)?;
        if bases.is_empty() {
            let header = SegmentHeader::new(opts.segment_capacity, 0, 0, now_nanos());
            let seg = Segment::create(dir, header, HEADER_LEN + opts.grow_step, opts.file_mode)?;
            let seg = Arc::new(seg);
            return Ok((Arc::clone(&seg), seg, report));
        }
        let open = |base: u64| -> Result<Segment> {
            let path = dir.join(segment::file_name(base));
            Segment::open(&path, base, true)?.ok_or(Error::MissingSegment { path })
        };
        let oldest = Arc::new(open(bases[0])?);
        if alone {
            // Segments written since the last verified clean point form a
            // suffix of the log: find it from the newest end, then recover
            // each segment in it (sealing all but the last).
            let mut suffix = Vec::new();
            for (i, &base) in bases.iter().enumerate().rev() {
                let seg = if i == 0 { None } else { Some(open(base)?) };
                let needs = seg.as_ref().unwrap_or(&oldest).needs_recovery();
                if !needs {
                    break;
                }
                suffix.push((i, seg));
            }
            let last = bases.len() - 1;
            for (i, seg) in suffix.into_iter().rev() {
                let seg = seg.as_ref().unwrap_or(&oldest);
                let r = seg.recover(i != last, opts.grow_step)?;
                report.ran = true;
                report.segments_scanned += 1;
                report.holes_padded += r.holes_padded;
                report.bytes_cut += r.bytes_cut;
                report.damaged_frames += r.damaged;
            }
        }
        let last_base = *bases.last().unwrap_or(&0);
        let mut active = if last_base == oldest.base() {
            Arc::clone(&oldest)
        } else {
            Arc::new(open(last_base)?)
        };
        // A crash between sealing a segment and creating its successor
        // leaves the log ending in a sealed segment: create the successor.
        if active.state() & STATE_SEALED != 0 {
            let header = SegmentHeader::new(
                opts.segment_capacity,
                active.next_base(),
                successor_index(&active)?,
                now_nanos(),
            );
            active = Arc::new(Segment::create(
                dir,
                header,
                HEADER_LEN + opts.grow_step,
                opts.file_mode,
            )?);
            bases.push(active.base());
        }
        Ok((oldest, active, report))
    }

    fn remove_stale_temporaries(dir: &Path) {
        if let Ok(entries) = fs::read_dir(dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with('.') && name.ends_with(".tmp") {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
    }

    /// The segment at `base`, from the cache or opened; `None` if its file
    /// does not exist.
    pub(crate) fn segment(&self, base: u64) -> Result<Option<Arc<Segment>>> {
        let mut cache = self.segments.lock();
        if let Some(seg) = cache.get(&base).and_then(Weak::upgrade) {
            return Ok(Some(seg));
        }
        let path = self.dir.join(segment::file_name(base));
        let Some(seg) = Segment::open(&path, base, self.writable)? else {
            return Ok(None);
        };
        let seg = Arc::new(seg);
        cache.retain(|_, w| w.strong_count() > 0);
        cache.insert(base, Arc::downgrade(&seg));
        Ok(Some(seg))
    }

    /// The segment after `cur` for a reader: `None` while it does not exist
    /// yet. A missing successor while later segments exist is an error.
    pub(crate) fn next_for_reader(&self, cur: &Segment) -> Result<Option<Arc<Segment>>> {
        let base = cur.next_base();
        if let Some(seg) = self.segment(base)? {
            if Some(seg.header().index) != cur.header().index.checked_add(1) {
                return Err(Error::CorruptHeader {
                    path: seg.path().to_owned(),
                    reason: "segment index does not follow its predecessor's",
                });
            }
            return Ok(Some(seg));
        }
        if list_segments(&self.dir)?.iter().any(|&b| b > base) {
            return Err(Error::MissingSegment {
                path: self.dir.join(segment::file_name(base)),
            });
        }
        Ok(None)
    }

    /// The segment appenders should use: the newest this process knows.
    pub(crate) fn active(&self) -> Arc<Segment> {
        Arc::clone(&self.active.lock())
    }

    /// The successor of `cur` for an appender, created if it does not exist.
    pub(crate) fn next_for_appender(&self, cur: &Segment) -> Result<Arc<Segment>> {
        let base = cur.next_base();
        let mut active = self.active.lock();
        if active.base() >= base {
            if active.base() == base {
                return Ok(Arc::clone(&active));
            }
            if let Some(seg) = self.segment(base)? {
                return Ok(seg);
            }
        }
        let header = SegmentHeader::new(
            self.opts.segment_capacity,
            base,
            successor_index(cur)?,
            now_nanos(),
        );
        let seg = Arc::new(Segment::create(
            &self.dir,
            header,
            HEADER_LEN + self.opts.grow_step,
            self.opts.file_mode,
        )?);
        {
            let mut cache = self.segments.lock();
            cache.retain(|_, w| w.strong_count() > 0);
            cache.insert(base, Arc::downgrade(&seg));
        }
        if seg.base() > active.base() {
            *active = Arc::clone(&seg);
        }
        drop(active);
        // Readers parked at the end of `cur` wait for this segment.
        cur.wake_all();
        Ok(seg)
    }
}

/// The index of the segment after `seg`.
fn successor_index(seg: &Segment) -> Result<u64> {
    seg.header()
        .index
        .checked_add(1)
        .ok_or(Error::CorruptHeader {
            path: seg.path().to_owned(),
            reason: "segment index out of range",
        })
}

impl Inner {
    /// Advances the `checked` watermark of every segment written since the
    /// last verified point (a suffix of the log), oldest first, up to the
    /// first dirty segment (a writer left a hole there it could not pad).
    /// The segments after a dirty one stay unchecked too: the next open
    /// looks for segments to recover from the newest end and stops at the
    /// first that needs nothing, so it must not stop before the dirty one.
    fn mark_all_checked(&self) {
        let Ok(bases) = list_segments(&self.dir) else {
            return;
        };
        let mut suffix = Vec::new();
        for &base in bases.iter().rev() {
            let Ok(Some(seg)) = self.segment(base) else {
                return;
            };
            if !seg.needs_recovery() {
                break;
            }
            suffix.push(seg);
        }
        for seg in suffix.iter().rev() {
            if seg.state() & STATE_DIRTY != 0 {
                return;
            }
            seg.mark_checked();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let Some(liveness) = self.liveness.take() else {
            return;
        };
        if std::process::id() != self.pid {
            // A copy inherited through `fork`: its lock descriptions are
            // the parent's, so "exclusive" below would prove nothing.
            return;
        }
        // If this is the last writer, record a clean close so that the next
        // open can skip the recovery scan. `open.lock` keeps openers out
        // while we decide.
        let Ok(open_lock) = open_lock_file(&self.dir, OPEN_LOCK, self.opts.file_mode) else {
            return;
        };
        if open_lock.lock_exclusive().is_err() {
            return;
        }
        // An unreadable count vouches for nothing; a failed write below
        // leaves the count too high, which only makes the next open recover.
        let remaining =
            registered_writers(&open_lock).map_or(UNKNOWN_WRITERS, |n| n.saturating_sub(1));
        if liveness.try_lock_exclusive().is_ok() {
            // The last writer. If every other writer registered since the
            // last recovery has unregistered, nobody died mid-append, so
            // every frame below each tail is complete: record that, so the
            // next open can skip scanning. Otherwise leave it to recovery.
            if remaining == 0 {
                self.mark_all_checked();
            }
            let _ = set_registered_writers(&open_lock, 0);
        } else {
            let _ = set_registered_writers(&open_lock, remaining);
        }
        drop(liveness);
        drop(open_lock);
    }
}

/// The thread-safety the API promises: a `Log` is shared between threads;
/// appenders, readers and records move between them.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    const fn send<T: Send>() {}
    send_sync::<Log>();
    send::<Appender>();
    send::<Reader>();
    send::<crate::Record<'static>>();
    send::<crate::Reservation<'static>>();
};
