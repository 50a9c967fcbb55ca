//! The open log: its directory, its segments (a cache of the open ones,
//! the oldest one and the active one), rollover into a successor, and this
//! process's registration as a writer. Shared by the `Log` handle, its
//! appenders and its readers.

use std::collections::BTreeMap;
use std::fs::File;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::boot::{BootId, BOOT_ID_PATH};
use crate::cursor::CursorTable;
use crate::dir::{file_name, LogDir};
use crate::error::HeaderDefect;
use crate::format::header::SegmentHeader;
use crate::format::HEADER_LEN;
use crate::group_table::GroupTable;
use crate::liveness::{self, Registration};
use crate::options::Resolved;
use crate::options::Retention;
use crate::owners::Owners;
use crate::recovery::{self, RecoveryReport};
use crate::retention::{self, RetentionReport};
use crate::segment::{now_nanos, Segment};
use crate::{Error, Position, Result};

/// An open log.
#[derive(Debug)]
pub(crate) struct Store {
    pub(crate) dir: LogDir,
    pub(crate) opts: Resolved,
    /// The boot this handle was opened in (read at open).
    boot: BootId,
    writable: bool,
    /// Open segments by base position, shared by the appenders and readers
    /// of this process.
    segments: Mutex<BTreeMap<u64, Weak<Segment>>>,
    /// The oldest segment this process knows, kept open so that
    /// `reader()` cannot fail; replaced when retention deletes it, so that
    /// its disk space is freed.
    oldest: Mutex<Arc<Segment>>,
    /// The newest segment this process knows: where appenders start.
    active: Mutex<Arc<Segment>>,
    /// This process's registration as a writer, while open for writing.
    registration: Option<Registration>,
    /// The append lock of `WriterMode::SingleProcess`, once taken.
    append_lock: Mutex<Option<File>>,
    recovery: RecoveryReport,
    /// One past the base of the newest segment whose directory entry this
    /// handle's flush has made durable (0: none yet).
    dir_synced: AtomicU64,
    /// The cursor table, once a consumer needed it.
    cursors: Mutex<Option<Arc<CursorTable>>>,
    groups: Mutex<Option<Arc<GroupTable>>>,
    /// The owner table, once an appender or a stuck reader needed it.
    owners: Mutex<Option<Arc<Owners>>>,
    /// The thread keeping the window ahead of the appenders locked in
    /// memory (`Options::lock_in_memory`), on writable handles that ask.
    pub(crate) locker: Option<crate::locker::Locker>,
    /// This process's lock file for leading a sync (see `durability`),
    /// opened at the first sync; the mutex elects the leader among this
    /// process's threads.
    pub(crate) sync_lead: Mutex<Option<File>>,
    /// A log position below which this handle has seen everything durable
    /// (a cache of the segments' watermarks).
    pub(crate) durable: AtomicU64,
    /// `errno` of the last periodic sync, 0 if it succeeded
    /// (`Durability::Periodic`).
    pub(crate) periodic_errno: AtomicI32,
    /// Stops the periodic sync thread when dropped.
    periodic_stop: Mutex<Option<mpsc::Sender<()>>>,
    /// What `Log::stats` reports.
    pub(crate) counters: crate::stats::Counters,
}

/// The oldest and the newest segment of a log.
type Ends = (Arc<Segment>, Arc<Segment>);

/// The kernel's boot id now (see `boot`).
fn current_boot() -> std::io::Result<BootId> {
    #[cfg(feature = "unstable-internals")]
    if let Some((_, boot)) = crate::internals::pinned() {
        return Ok(boot);
    }
    BootId::current()
}

/// A new log's identity: 16 random bytes from the kernel (pinned for the
/// golden files).
fn new_log_id(dir: &LogDir) -> Result<[u8; 16]> {
    #[cfg(feature = "unstable-internals")]
    if let Some((created, _)) = crate::internals::pinned() {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&created.to_le_bytes());
        id[8..].copy_from_slice(b"golden\0\0");
        return Ok(id);
    }
    let mut id = [0u8; 16];
    crate::sys::calls::random_bytes(&mut id)
        .map_err(|e| Error::io("draw a log id (getrandom)", dir.path(), e))?;
    Ok(id)
}

/// The index of the segment after `seg`.
fn successor_index(seg: &Segment) -> Result<u64> {
    seg.header()
        .index
        .checked_add(1)
        .ok_or(Error::CorruptHeader {
            path: seg.path().to_owned(),
            reason: HeaderDefect::IndexOutOfRange,
        })
}

impl Store {
    /// Opens the log in `dir` for reading only: nothing is created, locked
    /// or written.
    pub(crate) fn open_read_only(dir: LogDir, opts: Resolved) -> Result<Store> {
        let (oldest, active) = Self::open_ends(&dir, false)?;
        let boot = current_boot().unwrap_or(BootId::UNKNOWN);
        Ok(Self::assemble(
            dir,
            opts,
            boot,
            (oldest, active),
            None,
            RecoveryReport::default(),
        ))
    }

    /// Opens the log in `dir` for reading and appending, creating its first
    /// segment if it has none, and recovering it first if no other writer
    /// is alive.
    pub(crate) fn open_writable(dir: LogDir, opts: Resolved) -> Result<Store> {
        // Without it a process crash could not be told from a restart, and
        // recovery after a crash would cut acknowledged records.
        let boot =
            current_boot().map_err(|e| Error::io("read the kernel's boot id", BOOT_ID_PATH, e))?;
        let ((ends, recovery), registration) =
            Registration::register(&dir, opts.file_mode, |alone| {
                let (ends, mut report) = Self::open_segments(&dir, &opts, alone, boot)?;
                if alone {
                    // A damaged cursor table must not keep the log from
                    // opening: its consumers report it when used.
                    report.consumers_moved_back =
                        Self::clamp_consumers(&dir, &opts, &ends.1).unwrap_or(0);
                    // The owner table exists before any appender needs
                    // it: on a disk that fills up later, appenders can
                    // still be made. (On a full disk now, appenders
                    // report it.)
                    let _ = Owners::open(&dir, opts.file_mode);
                }
                Ok((ends, report))
            })?;
        Ok(Self::assemble(
            dir,
            opts,
            boot,
            ends,
            Some(registration),
            recovery,
        ))
    }

    fn assemble(
        dir: LogDir,
        opts: Resolved,
        boot: BootId,
        (oldest, active): Ends,
        registration: Option<Registration>,
        recovery: RecoveryReport,
    ) -> Store {
        let locker = (registration.is_some() && opts.lock_in_memory > 0)
            .then(|| crate::locker::Locker::new(opts.lock_in_memory, opts.grow_step));
        let mut segments = BTreeMap::new();
        segments.insert(oldest.base(), Arc::downgrade(&oldest));
        segments.insert(active.base(), Arc::downgrade(&active));
        Store {
            dir,
            opts,
            boot,
            writable: registration.is_some(),
            segments: Mutex::new(segments),
            oldest: Mutex::new(oldest),
            active: Mutex::new(active),
            registration,
            append_lock: Mutex::new(None),
            recovery,
            dir_synced: AtomicU64::new(0),
            cursors: Mutex::new(None),
            groups: Mutex::new(None),
            owners: Mutex::new(None),
            locker,
            counters: crate::stats::Counters::default(),
            sync_lead: Mutex::new(None),
            durable: AtomicU64::new(0),
            periodic_errno: AtomicI32::new(0),
            periodic_stop: Mutex::new(None),
        }
    }

    /// Keeps the sender that stops the periodic sync thread when the store
    /// is dropped.
    pub(crate) fn set_periodic_stop(&self, tx: mpsc::Sender<()>) {
        *self.periodic_stop.lock() = Some(tx);
    }

    /// The end of the log: where the next record would go (the position
    /// after everything reserved so far, by any process).
    pub(crate) fn end_position(&self) -> Result<u64> {
        let bases = self.dir.segments()?;
        for &base in bases.iter().rev() {
            if let Some(seg) = self.segment(base)? {
                let tail = seg.shared().tail();
                if tail > seg.data_limit() {
                    // Full: the log continues at the next segment.
                    return Ok(seg.next_base() + HEADER_LEN);
                }
                return Ok(base + tail.max(HEADER_LEN));
            }
        }
        Ok(HEADER_LEN)
    }

    /// Syncs the cursor and group tables, if this handle opened them.
    pub(crate) fn sync_tables(&self) -> Result<()> {
        let cursors = self.cursors.lock().clone();
        if let Some(t) = cursors {
            t.sync()?;
        }
        let groups = self.groups.lock().clone();
        if let Some(t) = groups {
            t.sync()?;
        }
        Ok(())
    }

    /// Moves every consumer's committed position that lies past the end of
    /// the log back to the end (and syncs the table), while no other
    /// writer is alive. Only a power cut makes one: a commit reaches the
    /// disk in the cursor table, independently of the log, and may name a
    /// position whose records were never synced. Resuming there would skip
    /// the records appended after the restart up to it. Returns how many
    /// were moved.
    fn clamp_consumers(dir: &LogDir, opts: &Resolved, newest: &Segment) -> Result<u64> {
        let Some(table) = CursorTable::open(dir, opts.file_mode, false)? else {
            return Ok(0);
        };
        let tail = newest.shared().tail();
        let end = if tail > newest.data_limit() {
            newest.next_base() + HEADER_LEN
        } else {
            newest.base() + tail.max(HEADER_LEN)
        };
        let mut moved = 0;
        for s in table.list()? {
            if s.position > end {
                table.commit(s.slot, end);
                moved += 1;
            }
        }
        if moved > 0 {
            table.sync()?;
        }
        Ok(moved)
    }

    /// Opens every segment, recovering those that need it first when
    /// `alone`. Returns the oldest and the newest segment.
    fn open_segments(
        dir: &LogDir,
        opts: &Resolved,
        alone: bool,
        boot: BootId,
    ) -> Result<(Ends, RecoveryReport)> {
        if alone {
            Self::remove_stale_temporaries(dir);
        }
        // `log_id`: the log's, for a successor; drawn anew for the first
        // segment of a new log.
        let create = |base: u64, index: u64, log_id: [u8; 16]| -> Result<Arc<Segment>> {
            let header = SegmentHeader::new(opts.segment_capacity, base, index, now_nanos())
                .with_log_id(log_id);
            // The first segment starts small (see `FIRST_GROWTH`); a
            // successor, in a log that filled one already, at a full step.
            let initial = if index == 0 {
                opts.grow_step.min(crate::segment::FIRST_GROWTH)
            } else {
                opts.grow_step
            };
            let seg = Segment::create(dir, header, HEADER_LEN + initial, opts.file_mode, boot)?;
            Ok(Arc::new(seg))
        };
        let bases = dir.segments()?;
        if bases.is_empty() {
            let seg = create(0, 0, new_log_id(dir)?)?;
            return Ok(((Arc::clone(&seg), seg), RecoveryReport::default()));
        }
        let open = |base: u64| -> Result<Arc<Segment>> {
            let seg = Segment::open(dir, base, true)?.ok_or_else(|| Error::MissingSegment {
                path: dir.join(&file_name(base)),
            })?;
            Ok(Arc::new(seg))
        };
        let mut report = RecoveryReport::default();
        let (oldest, mut active) = if !alone {
            // Other writers are alive: one may be applying retention.
            Self::open_ends(dir, true)?
        } else {
            let mut segs = bases.iter().map(|&b| open(b)).collect::<Result<Vec<_>>>()?;
            report = recovery::recover_log(dir, &mut segs, boot)?;
            crate::trace::trace_event!(
                ran = report.ran,
                segments_scanned = report.segments_scanned,
                holes_padded = report.holes_padded,
                bytes_cut = report.bytes_cut,
                after_restart = report.after_restart,
                "recovery"
            );
            let active = Arc::clone(segs.last().unwrap_or(&segs[0]));
            // Appends in this boot may follow: a crash from now on is one
            // the page cache survives, until the next restart.
            active.shared().stamp_boot(boot);
            (Arc::clone(&segs[0]), active)
        };
        // A crash between sealing a segment and creating its successor
        // leaves the log ending in a sealed segment: create the successor.
        let sh = active.shared();
        // On a full disk the open goes on without it: the first append
        // creates it (or reports the full disk), and readers wait at the
        // end of the sealed segment meanwhile.
        if sh.is_sealed() && sh.tail() > sh.data_limit() {
            match create(
                active.next_base(),
                successor_index(&active)?,
                active.header().log_id,
            ) {
                Ok(next) => active = next,
                Err(Error::NoSpace { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(((oldest, active), report))
    }

    /// Opens the oldest and the newest segment. Retention in another
    /// process may delete the oldest between listing and opening it: then
    /// the directory is listed again (a segment missing while a later one
    /// exists is damage only if it is not the oldest).
    fn open_ends(dir: &LogDir, writable: bool) -> Result<Ends> {
        for _ in 0..64 {
            let bases = dir.segments()?;
            let (Some(&first), Some(&last)) = (bases.first(), bases.last()) else {
                return Err(Error::NotFound {
                    path: dir.path().to_owned(),
                });
            };
            let Some(oldest) = Segment::open(dir, first, writable)? else {
                continue;
            };
            let oldest = Arc::new(oldest);
            if last == first {
                return Ok((Arc::clone(&oldest), oldest));
            }
            match Segment::open(dir, last, writable)? {
                Some(active) => return Ok((oldest, Arc::new(active))),
                None => {
                    return Err(Error::MissingSegment {
                        path: dir.join(&file_name(last)),
                    })
                }
            }
        }
        Err(Error::MissingSegment {
            path: dir.join("(the oldest segment, deleted again and again while opening)"),
        })
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

    /// Whether the log was opened for writing.
    pub(crate) fn is_writable(&self) -> bool {
        self.writable
    }

    /// The oldest segment, as of the last look (see
    /// [`refresh_oldest`](Self::refresh_oldest)).
    pub(crate) fn oldest(&self) -> Arc<Segment> {
        Arc::clone(&self.oldest.lock())
    }

    /// Looks for the oldest segment again: if retention (in any process)
    /// deleted the one held, lets go of it (so that its space is freed) and
    /// holds the new oldest. Failing to open that one keeps the old.
    pub(crate) fn refresh_oldest(&self) {
        let Ok(bases) = self.dir.segments() else {
            return;
        };
        let Some(&first) = bases.first() else {
            return;
        };
        // The newest segment this process appends to, if retention deleted
        // it (it was sealed, and another process appends further on): let
        // go of it for the newest that exists.
        if self.active.lock().base() < first {
            if let Some(&last) = bases.last() {
                if let Ok(Some(seg)) = self.segment(last) {
                    let mut active = self.active.lock();
                    if active.base() < seg.base() {
                        *active = seg;
                    }
                }
            }
        }
        if self.oldest.lock().base() == first {
            return;
        }
        if let Ok(Some(seg)) = self.segment(first) {
            *self.oldest.lock() = seg;
        }
    }

    /// Checks that the segment appenders use is still linked in the
    /// directory (another program may have removed it). One that retention
    /// deleted, in any process, while a newer segment exists is not an
    /// error: this process moves on to the newest.
    pub(crate) fn check_active(&self) -> Result<()> {
        let active = self.active();
        match active.check_linked() {
            Ok(()) => Ok(()),
            Err(e) => {
                let bases = self.dir.segments()?;
                if bases.first().is_some_and(|&first| first > active.base()) {
                    self.refresh_oldest();
                    return Ok(());
                }
                Err(e)
            }
        }
    }

    /// Applies `retention` (see [`retention::apply`]), then lets go of the
    /// segments deleted.
    pub(crate) fn apply_retention(
        &self,
        retention: Retention,
        dry_run: bool,
        wait: retention::Wait,
    ) -> Result<RetentionReport> {
        let report = retention::apply(
            &self.dir,
            self.opts.file_mode,
            retention,
            |b| self.segment(b),
            (|| self.retention_floor(), || self.sync_tables()),
            dry_run,
            wait,
        )?;
        self.refresh_oldest();
        Ok(report)
    }

    /// Holds off retention (a shared `retention.lock`) while a consumer or
    /// a group stores a position: retention reads the slowest consumer
    /// under the exclusive lock, so it sees the position, or the position
    /// is chosen after its deletions.
    pub(crate) fn hold_off_retention(&self) -> Result<File> {
        liveness::lock_shared(&self.dir, liveness::RETENTION_LOCK, self.opts.file_mode)
    }

    /// What recovery did at open.
    pub(crate) fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// Takes the append lock of `WriterMode::SingleProcess`, unless this
    /// handle holds it already.
    pub(crate) fn lock_appends(&self) -> Result<()> {
        let mut held = self.append_lock.lock();
        if held.is_none() {
            *held = Some(liveness::lock_appends(&self.dir, self.opts.file_mode)?);
        }
        Ok(())
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
                    reason: HeaderDefect::IndexNotSuccessor,
                });
            }
            // A reader moving on is a good moment to let go of segments
            // retention deleted (the one it leaves may be one).
            self.refresh_oldest();
            return Ok(Some(seg));
        }
        let bases = self.dir.segments()?;
        if bases.iter().any(|&b| b > base) {
            if bases.first().is_some_and(|&first| base < first) {
                // Retention deleted it (and the segments after the one the
                // reader finished are all older than the oldest kept).
                return Err(Error::Retired {
                    position: Position::from(base + HEADER_LEN),
                    oldest: Position::from(bases[0] + HEADER_LEN),
                });
            }
            return Err(Error::MissingSegment {
                path: self.dir.join(&file_name(base)),
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
        if active.base() == base {
            return Ok(Arc::clone(&active));
        }
        // Made already, by another appender or process.
        if let Some(seg) = self.segment(base)? {
            if seg.base() > active.base() {
                *active = Arc::clone(&seg);
            }
            return Ok(seg);
        }
        // A segment another program removed or replaced while this process
        // appended to it: its records are lost to the log, and a successor
        // would follow a file nobody can open. Unless retention deleted it
        // and its successor too (an idle appender of a busy log): then the
        // appends go on in the newest segment.
        if let Err(e) = cur.check_linked() {
            let bases = self.dir.segments()?;
            let newest = match bases.last() {
                Some(&last) if bases[0] > cur.base() => self.segment(last)?,
                _ => None,
            };
            let Some(seg) = newest else {
                return Err(e);
            };
            if seg.base() > active.base() {
                *active = Arc::clone(&seg);
            }
            return Ok(seg);
        }
        let header = SegmentHeader::new(
            self.opts.segment_capacity,
            base,
            successor_index(cur)?,
            now_nanos(),
        )
        .with_log_id(cur.header().log_id);
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
        cur.shared().wake_all();
        Ok(seg)
    }

    /// Retention at a rollover, once the segment left behind is sealed:
    /// skipped if another process is applying retention (the appender must
    /// not wait). Its failure must not fail the append that rolled over:
    /// `Log::apply_retention` reports it.
    pub(crate) fn retain_at_rollover(&self) {
        if self.opts.retention.is_limited() {
            let _ = self.apply_retention(self.opts.retention, false, retention::Wait::No);
        }
    }

    /// The cursor table, opened once; created if `create` and missing,
    /// `None` if missing otherwise.
    pub(crate) fn cursor_table(&self, create: bool) -> Result<Option<Arc<CursorTable>>> {
        let mut held = self.cursors.lock();
        if held.is_none() {
            *held = CursorTable::open(&self.dir, self.opts.file_mode, create)?.map(Arc::new);
        }
        Ok(held.clone())
    }

    /// The group table, opened once; created if `create` and missing,
    /// `None` if missing otherwise.
    pub(crate) fn group_table(&self, create: bool) -> Result<Option<Arc<GroupTable>>> {
        let mut held = self.groups.lock();
        if held.is_none() {
            *held = GroupTable::open(&self.dir, self.opts.file_mode, create)?.map(Arc::new);
        }
        Ok(held.clone())
    }

    /// The owner table, opened once: created by a writable handle if
    /// missing; `None` for a read-only handle while no writer has made one.
    pub(crate) fn owners(&self) -> Result<Option<Arc<Owners>>> {
        let mut held = self.owners.lock();
        if held.is_none() {
            *held = if self.writable {
                Some(Owners::open(&self.dir, self.opts.file_mode)?)
            } else {
                Owners::open_read_only(&self.dir)?
            }
            .map(Arc::new);
        }
        Ok(held.clone())
    }

    /// The slowest durable consumer or consumer group (as `group NAME`):
    /// its name and the position before which it has everything.
    pub(crate) fn retention_floor(&self) -> Result<crate::retention::Floor> {
        let mut floor: crate::retention::Floor = None;
        let mut lower = |name: String, at: u64| {
            if floor.as_ref().is_none_or(|(_, f)| at < *f) {
                floor = Some((name, at));
            }
        };
        if let Some(t) = self.cursor_table(false)? {
            for s in t.list()? {
                lower(s.name, s.position);
            }
        }
        if let Some(t) = self.group_table(false)? {
            for g in t.list()? {
                lower(format!("group {}", g.name), t.watermark(g.block)?);
            }
        }
        Ok(floor)
    }

    /// Fsyncs the directory if it holds a segment this handle has not seen
    /// synced yet (`bases` is the directory's list): an fsync of an
    /// unchanged directory can still cost a disk cache flush.
    pub(crate) fn sync_dir_for(&self, bases: &[u64]) -> Result<()> {
        let covers = bases.last().map_or(0, |b| b + 1);
        if self.dir_synced.load(Ordering::Acquire) < covers {
            self.dir.sync()?;
            self.dir_synced.fetch_max(covers, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Advances the `checked` watermark of every segment written in this
    /// boot to its tail, except where a writer left a hole it could not pad
    /// (the segment is dirty), which the next open recovers. The watermark
    /// vouches for the page cache only: after a restart, recovery trusts
    /// the durable `flushed` watermark instead.
    fn vouch_checked(&self) {
        let Ok(bases) = self.dir.segments() else {
            return;
        };
        for base in bases {
            let Ok(Some(seg)) = self.segment(base) else {
                return;
            };
            let sh = seg.shared();
            if sh.boot_id() == self.boot && !sh.is_dirty() && sh.checked() != sh.reserved_end() {
                sh.mark_checked();
            }
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Some(registration) = self.registration.take() {
            // The last writer to close, if nobody died since the last
            // recovery, vouches that no frame below any tail is a hole.
            registration.close(&self.dir, || self.vouch_checked());
        }
    }
}
