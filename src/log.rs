//! The log directory: segments, locks, recovery at open, rollover.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, FileExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use fs2::FileExt as _;
use parking_lot::Mutex;

use crate::append::Appender;
use crate::boot::BootId;
use crate::dir::{Access, LogDir};
use crate::format::header::{SegmentHeader, STATE_DIRTY, STATE_SEALED};
use crate::format::HEADER_LEN;
use crate::options::{Resolved, WriterMode};
use crate::read::Reader;
use crate::segment::{self, Need, Segment};
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
    /// Bytes of torn, unpublished frames at the end of the log: reserved
    /// space past the last valid frame. On the boot that wrote them they
    /// are padded over, so that the end of the log (and every position a
    /// reader holds) does not move back; after a restart they are cut.
    /// (When the tail word itself was damaged, or after a restart, so that
    /// nothing trusted says what was reserved: the non-zero bytes zeroed
    /// past the end of the log.)
    pub bytes_cut: u64,
    /// Damaged frames left in place between valid ones; readers report them
    /// as errors at their positions.
    pub damaged_frames: u64,
    /// The machine restarted since a segment was last written (its boot id
    /// differs), so unsynced pages may have been lost: recovery kept what
    /// it could prove from the durable watermark on, up to the first frame
    /// it could not, so that what survives is a prefix of the log.
    pub after_restart: bool,
    /// Segments removed because an earlier one was cut short after a
    /// restart: their records could not belong to the surviving prefix
    /// (none of them had been flushed).
    pub segments_removed: u64,
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
    pub(crate) dir: LogDir,
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
    /// The boot this handle was opened in (read at open).
    pub(crate) boot: BootId,
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

fn open_lock_file(dir: &LogDir, name: &str, mode: u32) -> Result<File> {
    dir.create_file(name, Access::Create(mode), "open lock file")
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
        let dir = LogDir::open(dir)?;
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
                path: inner.dir.path().to_owned(),
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
    /// The position is proven before anything is read there: the reader
    /// starts at the highest proven boundary below it (a boundary the
    /// segment's index records, one at most 1/768th of the segment's
    /// capacity before it, or a watermark) and walks to it frame by frame,
    /// handing out nothing on the way. A CRC that matches at the position
    /// proves nothing by itself: a record's payload may hold a frame
    /// checksummed for the position it sits at. If a frame before the
    /// position is not published yet, the walk finishes once it is (the
    /// reader's first [`try_next`](Reader::try_next) calls continue it);
    /// if one is damaged, the reader reports that damage.
    ///
    /// # Errors
    /// [`Error::InvalidPosition`] for a position outside the log or not at a
    /// frame boundary.
    pub fn reader_at(&self, position: Position) -> Result<Reader> {
        let pos = position.get();
        let invalid = |reason| Error::InvalidPosition { position, reason };
        let bases = self.inner.dir.segments()?;
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
            return Err(invalid("past the end of the log"));
        }
        if off == HEADER_LEN || off == seg.reserved_end() {
            // Boundaries by construction: the first frame, and the tail
            // (it only grows, by whole reservations).
            return Ok(Reader::new(Arc::clone(&self.inner), seg, off));
        }
        // Prove it: walk from a proven boundary before it (one the index
        // records, or a watermark), frame by frame.
        let start = seg.proven_floor(off);
        let mut reader = Reader::new(Arc::clone(&self.inner), seg, start);
        reader.seek_to(pos)?;
        Ok(reader)
    }

    /// The position the next record appended will have, unless appends in
    /// other threads or processes come first: where a reader that wants only
    /// new records starts.
    ///
    /// # Errors
    /// I/O errors from looking up the newest segment.
    pub fn end_position(&self) -> Result<Position> {
        let bases = self.inner.dir.segments()?;
        for &base in bases.iter().rev() {
            if let Some(seg) = self.inner.segment(base)? {
                let tail = seg.tail_word();
                if tail > seg.data_limit() {
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
        self.inner.dir.path()
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
        for base in self.inner.dir.segments()? {
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

    /// Writes everything appended so far, by any process, to stable
    /// storage, and records that it is there.
    ///
    /// For each segment with records past its durable watermark: walks
    /// them up to the tail as it is now, waiting for every frame there to
    /// be published (a frame whose writer died is padded over after the
    /// unblock timeout, as a reader would), then `msync(MS_SYNC)`s the
    /// segment, then raises the segment's `flushed` watermark to the tail
    /// and syncs the header page. Then, if a segment file appeared since
    /// this handle's last flush, the directory is fsynced, so that segment
    /// files created by other processes are durable too.
    ///
    /// A record survives a process crash as soon as `append` returns; it
    /// survives power loss once a flush that started after it returns
    /// `Ok`. After a restart, recovery keeps everything below the
    /// watermarks and cuts the log at the first frame after them that it
    /// cannot prove, so what survives is a prefix of the log.
    ///
    /// Commit or drop this thread's open [`Reservation`](crate::Reservation)s
    /// first: the flush waits for them like for any writer's, and after the
    /// unblock timeout pads them over (their `commit` then appends again).
    ///
    /// # Errors
    /// I/O errors from `msync` or `fsync`; [`Error::SegmentRemoved`] if
    /// another program removed a segment this process appends to (its
    /// records are not durable in the log); damage found on the way that
    /// cannot be skipped (see [`Reader::skip_damaged`]), reported at its
    /// position.
    pub fn flush(&self) -> Result<()> {
        let inner = &self.inner;
        if inner.writable {
            // Records appended to a segment someone removed are not in the
            // log: never report them durable.
            inner.active().check_linked()?;
        }
        let bases = inner.dir.segments()?;
        for &base in &bases {
            let Some(seg) = inner.segment(base)? else {
                continue;
            };
            if !inner.writable {
                seg.flush_range(0, seg.reserved_end())?;
                continue;
            }
            seg.check_linked()?;
            let to = seg.reserved_end();
            let from = seg.flushed();
            if from >= to {
                continue;
            }
            let start = if from >= HEADER_LEN && from.is_multiple_of(crate::format::FRAME_ALIGN) {
                from
            } else {
                HEADER_LEN
            };
            // Every frame below the new watermark must be complete before
            // it is synced, or a restart could find a hole there and cut
            // the records after it.
            let mut walker = Reader::new(Arc::clone(inner), Arc::clone(&seg), start);
            loop {
                match walker.walk_to(base + to, None) {
                    Ok(_) => break,
                    Err(e) if e.is_corruption() && e.position().is_some() => {
                        let at = walker.position();
                        if walker.skip_damaged()? == at {
                            return Err(e);
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            seg.flush_range(0, to)?;
            seg.raise_flushed(to);
            seg.flush_header()?;
        }
        // The directory only when it holds a segment this handle has not
        // seen synced yet: an fsync of an unchanged directory can still
        // cost a disk cache flush.
        let covers = bases.last().map_or(0, |b| b + 1);
        if inner.dir_synced.load(Ordering::Acquire) < covers {
            inner.dir.sync()?;
            inner.dir_synced.fetch_max(covers, Ordering::AcqRel);
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

/// What a writable open established, for [`Inner::assemble`].
struct WriterState {
    /// The shared lock on `writers.lock`.
    liveness: File,
    recovery: RecoveryReport,
    /// The boot recovery judged the segments by.
    boot: BootId,
}

impl Inner {
    fn open_read_only(dir: LogDir, opts: Resolved) -> Result<Inner> {
        let bases = dir.segments()?;
        let Some(&first) = bases.first() else {
            return Err(Error::NotFound {
                path: dir.path().to_owned(),
            });
        };
        let open = |base: u64| -> Result<Arc<Segment>> {
            match Segment::open(&dir, base, false)? {
                Some(s) => Ok(Arc::new(s)),
                None => Err(Error::MissingSegment {
                    path: dir.join(&segment::file_name(base)),
                }),
            }
        };
        let oldest = open(first)?;
        let last = *bases.last().unwrap_or(&first);
        let active = if last == first {
            Arc::clone(&oldest)
        } else {
            open(last)?
        };
        Ok(Self::assemble(dir, opts, oldest, active, None))
    }

    /// `writer`: what a writable open established; `None` for read-only.
    fn assemble(
        dir: LogDir,
        opts: Resolved,
        oldest: Arc<Segment>,
        active: Arc<Segment>,
        writer: Option<WriterState>,
    ) -> Inner {
        let writable = writer.is_some();
        let (liveness, recovery, boot) = match writer {
            Some(w) => (Some(w.liveness), w.recovery, w.boot),
            None => (
                None,
                RecoveryReport::default(),
                BootId::current().unwrap_or(BootId::UNKNOWN),
            ),
        };
        let mut segments = BTreeMap::new();
        segments.insert(oldest.base(), Arc::downgrade(&oldest));
        segments.insert(active.base(), Arc::downgrade(&active));
        Inner {
            dir,
            opts,
            writable,
            segments: Mutex::new(segments),
            oldest,
            active: Mutex::new(active),
            liveness,
            append_lock: Mutex::new(None),
            recovery,
            dir_synced: AtomicU64::new(0),
            boot,
            pid: std::process::id(),
        }
    }

    fn open_writable(dir: LogDir, opts: Resolved) -> Result<Inner> {
        // Without it a process crash could not be told from a restart, and
        // recovery after a crash would cut acknowledged records.
        let boot = BootId::current()
            .map_err(|e| Error::io("read the kernel's boot id", crate::boot::BOOT_ID_PATH, e))?;
        let open_lock = open_lock_file(&dir, OPEN_LOCK, opts.file_mode)?;
        open_lock
            .lock_exclusive()
            .map_err(|e| Error::io("lock", dir.join(OPEN_LOCK), e))?;
        let liveness = open_lock_file(&dir, WRITERS_LOCK, opts.file_mode)?;
        let alone = match liveness.try_lock_exclusive() {
            Ok(()) => true,
            Err(e) if would_block(&e) => false,
            Err(e) => return Err(Error::io("lock", dir.join(WRITERS_LOCK), e)),
        };
        let result = Self::open_segments(&dir, &opts, alone, boot);
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
            oldest,
            active,
            Some(WriterState {
                liveness,
                recovery,
                boot,
            }),
        ))
    }

    /// Opens every segment, recovering those that need it first when
    /// `alone`. Returns the oldest and the newest segment.
    ///
    /// Every segment is looked at, not only the newest ones: an older
    /// segment can need recovery while a newer one is clean (a header page
    /// older than its data, a stale sealed bit), and one must not hide the
    /// other.
    fn open_segments(
        dir: &LogDir,
        opts: &Resolved,
        alone: bool,
        boot: BootId,
    ) -> Result<(Arc<Segment>, Arc<Segment>, RecoveryReport)> {
        let mut report = RecoveryReport::default();
        if alone {
            Self::remove_stale_temporaries(dir);
        }
        let mut bases = dir.segments()?;
        let create = |base: u64, index: u64| -> Result<Arc<Segment>> {
            let header = SegmentHeader::new(opts.segment_capacity, base, index, now_nanos());
            let seg = Segment::create(
                dir,
                header,
                HEADER_LEN + opts.grow_step,
                opts.file_mode,
                boot,
            )?;
            Ok(Arc::new(seg))
        };
        if bases.is_empty() {
            let seg = create(0, 0)?;
            return Ok((Arc::clone(&seg), seg, report));
        }
        let open = |base: u64| -> Result<Arc<Segment>> {
            let seg = Segment::open(dir, base, true)?.ok_or_else(|| Error::MissingSegment {
                path: dir.join(&segment::file_name(base)),
            })?;
            Ok(Arc::new(seg))
        };
        let oldest = open(bases[0])?;
        if alone {
            let mut i = 0;
            while i < bases.len() {
                let last = i + 1 == bases.len();
                let seg = if i == 0 {
                    Arc::clone(&oldest)
                } else {
                    open(bases[i])?
                };
                let need = seg.recovery_need(last, boot);
                if need != Need::Nothing {
                    let later = &bases[i + 1..];
                    // A cut after a restart: the later segments cannot be
                    // part of the surviving prefix. Newest first, so that a
                    // crash midway leaves no gap.
                    let mut remove_later = || -> Result<()> {
                        for &b in later.iter().rev() {
                            let name = segment::file_name(b);
                            match dir.remove(&name) {
                                Ok(()) => {}
                                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                                Err(e) => {
                                    return Err(Error::io("remove segment", dir.join(&name), e))
                                }
                            }
                        }
                        dir.sync()
                    };
                    let r = seg.recover(last, need == Need::Restart, boot, &mut remove_later)?;
                    report.ran = true;
                    report.segments_scanned += 1;
                    report.holes_padded += r.holes_padded;
                    report.bytes_cut += r.bytes_cut;
                    report.damaged_frames += r.damaged;
                    report.after_restart |= r.restarted;
                    if r.removed_later {
                        report.segments_removed += later.len() as u64;
                        bases.truncate(i + 1);
                    }
                }
                i += 1;
            }
        }
        let last_base = *bases.last().unwrap_or(&0);
        let mut active = if last_base == oldest.base() {
            Arc::clone(&oldest)
        } else {
            open(last_base)?
        };
        if alone {
            // Appends in this boot may follow: a crash from now on is one
            // the page cache survives, until the next restart.
            active.stamp_boot(boot);
        }
        // A crash between sealing a segment and creating its successor
        // leaves the log ending in a sealed segment: create the successor.
        if active.state() & STATE_SEALED != 0 && active.tail_word() > active.data_limit() {
            active = create(active.next_base(), successor_index(&active)?)?;
        }
        Ok((oldest, active, report))
    }

    fn remove_stale_temporaries(dir: &LogDir) {
        if let Ok(names) = dir.names() {
            for name in names {
                if name.starts_with('.') && name.ends_with(".tmp") {
                    let _ = dir.remove(&name);
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
        let Some(seg) = Segment::open(&self.dir, base, self.writable)? else {
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
        if self.dir.segments()?.iter().any(|&b| b > base) {
            return Err(Error::MissingSegment {
                path: self.dir.join(&segment::file_name(base)),
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
        // A segment another program removed or replaced while this process
        // appended to it: its records are lost to the log, and a successor
        // would follow a file nobody can open.
        cur.check_linked()?;
        let seg = Arc::new(Segment::create(
            &self.dir,
            header,
            HEADER_LEN + self.opts.grow_step,
            self.opts.file_mode,
            self.boot,
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
    /// Advances the `checked` watermark of every segment written in this
    /// boot to its tail, except where a writer left a hole it could not pad
    /// (the segment is dirty), which the next open recovers. The watermark
    /// vouches for the page cache only: after a restart, recovery trusts
    /// the durable `flushed` watermark instead.
    fn mark_all_checked(&self) {
        let Ok(bases) = self.dir.segments() else {
            return;
        };
        for base in bases {
            let Ok(Some(seg)) = self.segment(base) else {
                return;
            };
            if seg.boot_id() == self.boot
                && seg.state() & STATE_DIRTY == 0
                && seg.checked() != seg.reserved_end()
            {
                seg.mark_checked();
            }
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
