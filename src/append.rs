//! Appenders and the publication protocol.
//!
//! Appending a record of `n` bytes at a segment takes four steps:
//!
//! 1. **Reserve**: `fetch_add` the frame length on the segment's shared tail
//!    word. The old value is the frame's offset; the range is this
//!    appender's alone. A reservation that would cross the segment's data
//!    limit is not used: the appender whose range contains the limit writes
//!    the end-of-segment frame at its offset, and every appender that
//!    overshot moves to the next segment.
//! 2. **Cover**: make sure the file is long enough (`fallocate` in growth
//!    steps; never a shrinking `ftruncate`).
//! 3. **Claim**: compare-and-swap the frame's header word from zero to "in
//!    progress" with the length, then copy the payload.
//! 4. **Publish**: compare-and-swap the header from "in progress" to the
//!    final word, which carries the length and the CRC. This is the release
//!    that makes the payload visible to readers.
//!
//! Steps 3 and 4 are compare-and-swaps rather than stores because a frame
//! whose writer seems dead may be padded over by another process. If either
//! fails, the reservation is void and the appender starts over with a new
//! one, so a record is published exactly once and never into padding.

use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{FrameDefect, PositionDefect};
use crate::format::frame::{self, STAMP_LEN};
use crate::format::{FRAME_HEADER_LEN, HEADER_LEN};
use crate::owners::OwnerSlot;
use crate::protocol::Writer;
use crate::segment::Segment;
use crate::store::Store;
use crate::sys::map::{Claim, Mapping};
use crate::{Error, Position, Result};

/// Pages are pre-faulted for writing this many bytes at a time.
const PREFAULT_CHUNK: u64 = 1 << 20;

/// The largest reservation `append_batch` makes at once.
const BATCH_BYTES: u64 = 256 << 10;

/// How far past the tail [`Appender::pretouch`] prepares the log.
pub const PRETOUCH_AHEAD: u64 = 64 << 20;

/// Work done by one call of [`Appender::pretouch`]: four pages, a few
/// microseconds, so that a producer can call it whenever it is idle
/// without delaying its next record by more than that.
const PRETOUCH_CHUNK: u64 = 16 << 10;

/// Appends records to a log. Obtained from [`Log::appender`](crate::Log::appender).
///
/// Each thread should have its own appender; appenders in one process or in
/// many append concurrently without locks.
///
/// ```
/// # fn main() -> Result<(), tidelog::Error> {
/// # let tmp = tempfile::tempdir().unwrap();
/// let log = tidelog::Log::open(tmp.path())?;
/// std::thread::scope(|s| {
///     for t in 0..4u8 {
///         let mut appender = log.appender()?;
///         s.spawn(move || appender.append(&[t; 16]).map(|_| ()));
///     }
///     Ok::<_, tidelog::Error>(())
/// })?;
/// let mut reader = log.reader();
/// let mut n = 0;
/// while reader.try_next()?.is_some() {
///     n += 1;
/// }
/// assert_eq!(n, 4);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Appender {
    log: Arc<Store>,
    seg: Arc<Segment>,
    /// File length known to cover appends in `seg` (a private cache of the
    /// segment's, to skip its atomic on the common path).
    covered: u64,
    /// Set while a [`Reservation`] of this appender is open. Still set at
    /// the next append means the reservation was leaked (`mem::forget`)
    /// without publishing or padding its frame: the segment is marked dirty,
    /// so that a clean close does not vouch for the unfinished frame and
    /// the next open recovers it.
    reserving: AtomicBool,
    /// This appender's slot in the owner table: its liveness, and the
    /// `busy` word that tells readers it may own a hole (see `owners`).
    slot: OwnerSlot,
    /// A log position at or below the start of any reservation this
    /// appender makes from now on (the end of its last one): what it
    /// announces in `busy` before reserving.
    floor: u64,
    /// What this appender appended, for `Log::stats`.
    counts: Arc<crate::stats::AppenderCounts>,
}

impl Appender {
    pub(crate) fn new(log: Arc<Store>) -> Result<Self> {
        let owners = log.owners()?.ok_or_else(|| Error::ReadOnly {
            path: log.dir.path().to_owned(),
        })?;
        let slot = owners.take(&log.dir)?;
        let seg = log.active();
        let floor = seg.base() + HEADER_LEN;
        let counts = log.counters.appender();
        Ok(Self {
            log,
            seg,
            covered: 0,
            reserving: AtomicBool::new(false),
            slot,
            floor,
            counts,
        })
    }

    /// See `reserving`. `self.seg` is still the leaked reservation's
    /// segment: only `claim_loop` moves it, and this runs first.
    #[inline]
    fn check_leaked_reservation(&mut self) {
        if *self.reserving.get_mut() {
            self.seg.shared().mark_dirty();
            *self.reserving.get_mut() = false;
        }
    }

    /// Appends one record and returns its position.
    ///
    /// When this returns `Ok`, the record is in the shared page cache: it
    /// survives the crash of this process and is visible to every reader.
    /// It survives power loss after a [`sync`](crate::Log::sync), or at
    /// once under [`Durability::EveryAppend`](crate::Durability).
    ///
    /// # Errors
    /// [`Error::RecordTooLarge`] if `payload` exceeds the log's limit;
    /// [`Error::NoSpace`] if the file system is full (nothing appended
    /// before is lost, and appending can resume once space is freed); I/O
    /// errors from growing or creating segment files.
    /// [`Error::SyncFailed`]: under `EveryAppend`, the record was appended
    /// (readers see it) but its sync failed, so it may not survive a power
    /// cut; under `Periodic`, the last periodic sync failed, and nothing
    /// was appended (appends resume once a periodic sync succeeds).
    ///
    /// ```
    /// # fn main() -> Result<(), tidelog::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let log = tidelog::Log::open(dir.path())?;
    /// let mut appender = log.appender()?;
    /// let a = appender.append(b"first")?;
    /// let b = appender.append(b"second")?;
    /// assert!(a < b);
    /// # Ok(())
    /// # }
    /// ```
    pub fn append(&mut self, payload: &[u8]) -> Result<Position> {
        let len = self.check_len(payload.len())?;
        self.before_append()?;
        let flen = frame::record_frame_len(len);
        let at = self.claimed(flen, |seg, w, off| {
            let mut claim = w.claim(off, len + STAMP_LEN)?;
            let stamp = stamp_now();
            let (time, record) = claim.payload_mut().split_at_mut(STAMP_LEN as usize);
            time.copy_from_slice(&stamp.to_le_bytes());
            record.copy_from_slice(payload);
            let position = seg.base() + off;
            claim
                .publish(frame::record_word(position, stamp, payload))
                .ok()?;
            w.wake_readers();
            Some(Position::from(position))
        })?;
        self.counts.add(1, u64::from(len));
        self.after_append(at.get() + flen)?;
        Ok(at)
    }

    /// Appends one record with a tag beside it, and returns its position.
    ///
    /// The tag is metadata that travels with the record in the same frame,
    /// published with it in one step (never one without the other), and
    /// not part of the record's bytes: readers see `payload` as it is, and
    /// [`Record::tag`](crate::Record::tag) gives the tag back. A frame
    /// costs 8 bytes more than [`append`](Self::append)'s. The NATS bridge
    /// (`tidelog-nats`) keeps each message's stream sequence there, so that
    /// the log is its own offset store ([`Log::last_tag`](crate::Log::last_tag)).
    ///
    /// # Errors
    /// As [`append`](Self::append); the tag's 8 bytes count against the
    /// record size limit.
    pub fn append_tagged(&mut self, tag: u64, payload: &[u8]) -> Result<Position> {
        // The tag's 8 bytes count against the limit: the frame is what
        // the limit bounds (it must fit a segment).
        let max = self
            .log
            .opts
            .max_record_size
            .saturating_sub(frame::TAG_LEN as usize);
        if payload.len() > max {
            return Err(Error::RecordTooLarge {
                len: payload.len(),
                max,
            });
        }
        let len = payload.len() as u32;
        self.before_append()?;
        let flen = frame::tagged_frame_len(len);
        let env = frame::envelope_len(true) as usize;
        let at = self.claimed(flen, |seg, w, off| {
            let mut claim = w.claim(off, len + frame::envelope_len(true))?;
            let stamp = stamp_now();
            let (head, record) = claim.payload_mut().split_at_mut(env);
            head[..STAMP_LEN as usize].copy_from_slice(&stamp.to_le_bytes());
            head[STAMP_LEN as usize..].copy_from_slice(&tag.to_le_bytes());
            record.copy_from_slice(payload);
            let position = seg.base() + off;
            claim
                .publish(frame::tagged_record_word(position, stamp, tag, payload))
                .ok()?;
            w.wake_readers();
            Some(Position::from(position))
        })?;
        self.counts.add(1, u64::from(len));
        self.after_append(at.get() + flen)?;
        Ok(at)
    }

    /// What the durability policy asks before an append: under
    /// `Periodic`, that the last periodic sync succeeded (or the loss
    /// bound would not hold).
    #[inline]
    fn before_append(&self) -> Result<()> {
        if let crate::Durability::Periodic(_) = self.log.opts.durability {
            let errno = self.log.periodic_errno.load(Ordering::Acquire);
            if errno != 0 {
                return Err(crate::durability::periodic_failure(&self.log, errno));
            }
        }
        Ok(())
    }

    /// What the durability policy asks after an append that ends at `end`:
    /// under `EveryAppend`, that it is on stable storage.
    #[inline]
    fn after_append(&self, end: u64) -> Result<()> {
        if self.log.opts.durability == crate::Durability::EveryAppend {
            crate::durability::sync_to(&self.log, end)?;
        }
        Ok(())
    }

    /// Makes everything appended to the log so far, by any appender in any
    /// process, durable (see [`Log::sync`](crate::Log::sync)), and returns
    /// the durable position.
    ///
    /// ```
    /// # fn main() -> Result<(), tidelog::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let log = tidelog::Log::open(dir.path())?;
    /// let mut appender = log.appender()?;
    /// let at = appender.append(b"order 12")?;
    /// assert!(appender.flush()? > at);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// The errors of [`Log::sync`](crate::Log::sync).
    pub fn flush(&mut self) -> Result<Position> {
        crate::durability::sync_all(&self.log).map(Position::from)
    }

    /// Reserves room for a record of `len` bytes to be written in place,
    /// straight into the shared mapping: fill the returned [`Reservation`]
    /// (it dereferences to a zeroed `&mut [u8]` of `len` bytes), then
    /// [`commit`](Reservation::commit) it. Dropping it without committing
    /// turns the space into padding.
    ///
    /// Readers wait at an uncommitted reservation, so fill it promptly: one
    /// held longer than the log's unblock timeout may be padded over by a
    /// reader, in which case `commit` appends a copy at a new position. A
    /// reservation leaked with `mem::forget` stays a hole that readers wait
    /// at until the appender appends again or is dropped (then they find
    /// the hole's owner gone and pass it), or until the unblock timeout;
    /// the appender marks its segment for recovery at its next append or
    /// when it is dropped.
    ///
    /// # Errors
    /// As [`append`](Self::append).
    ///
    /// ```
    /// # fn main() -> Result<(), tidelog::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let log = tidelog::Log::open(dir.path())?;
    /// let mut appender = log.appender()?;
    /// let mut r = appender.reserve(12)?;
    /// r[..5].copy_from_slice(b"price");
    /// r[5..].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7]);
    /// let pos = r.commit()?;
    /// assert_eq!(log.reader_at(pos)?.try_next()?.unwrap().len(), 12);
    /// # Ok(())
    /// # }
    /// ```
    pub fn reserve(&mut self, len: usize) -> Result<Reservation<'_>> {
        let len32 = self.check_len(len)?;
        self.before_append()?;
        let claimed = self.claim_loop(frame::record_frame_len(len32), |seg, _, off| {
            let mut claim = seg.shared().claim_owned(off, len32 + STAMP_LEN)?;
            let stamp = stamp_now();
            claim.payload_mut()[..STAMP_LEN as usize].copy_from_slice(&stamp.to_le_bytes());
            Some((claim, seg.base() + off))
        });
        let (claim, position) = claimed.inspect_err(|_| self.slot.idle())?;
        *self.reserving.get_mut() = true;
        Ok(Reservation {
            appender: self,
            claim: Some(claim),
            position,
        })
    }

    /// Appends records in order, with one reservation for up to 256 KiB of
    /// them: the records of one reservation are contiguous in the log and
    /// cost one atomic add on the shared tail word instead of one each
    /// (every record still gets its own claim and publish, so readers see
    /// each as soon as it is complete). Returns the positions of the first
    /// and the last record, or `None` for an empty batch.
    ///
    /// Batches larger than 256 KiB are split into several reservations. If
    /// an unblocker pads over part of a batch (its producer stalled past the
    /// unblock timeout), the records not yet published are appended again
    /// one by one after it, still in order.
    ///
    /// # Errors
    /// [`Error::RecordTooLarge`] if any record exceeds the log's limit, and
    /// then nothing is appended. Otherwise the errors of
    /// [`append`](Self::append): a full disk, I/O, or a record that does
    /// not fit an empty segment of a smaller capacity that another process
    /// created. What was appended before the error is a prefix of the
    /// batch, in order, which a reader of the log sees.
    ///
    /// ```
    /// # fn main() -> Result<(), tidelog::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let log = tidelog::Log::open(dir.path())?;
    /// let mut appender = log.appender()?;
    /// let span = appender.append_batch(&[&b"tick 1"[..], b"tick 2", b"tick 3"])?.unwrap();
    /// let mut reader = log.reader_at(*span.start())?;
    /// assert_eq!(&*reader.try_next()?.unwrap(), b"tick 1");
    /// # Ok(())
    /// # }
    /// ```
    pub fn append_batch<R: AsRef<[u8]>>(
        &mut self,
        records: &[R],
    ) -> Result<Option<RangeInclusive<Position>>> {
        // `as_ref` once per record: every pass below must see the same bytes.
        let slices: Vec<&[u8]> = records.iter().map(AsRef::as_ref).collect();
        for r in &slices {
            self.check_len(r.len())?;
        }
        self.before_append()?;
        let mut first = None;
        let mut last = None;
        let mut rest = &slices[..];
        while !rest.is_empty() {
            // The next reservation: records up to BATCH_BYTES, and no more
            // than an empty segment holds (at least one record).
            let most = BATCH_BYTES.min(self.seg.data_limit() - HEADER_LEN - FRAME_HEADER_LEN);
            let mut flen = 0u64;
            let mut n = 0;
            for r in rest {
                let f = frame::record_frame_len(r.len() as u32);
                if n > 0 && flen + f > most {
                    break;
                }
                flen += f;
                n += 1;
            }
            let (chunk, tail) = rest.split_at(n);
            let (published, span) =
                match self.claimed(flen, |seg, w, off| publish_batch(seg, w, off, chunk)) {
                    Ok(done) => done,
                    // The chunk was sized for a segment larger than the one
                    // the appends rolled over into (created with a smaller
                    // capacity, maybe by another process). Nothing of it was
                    // reserved: size it again for this segment, where any
                    // chunk of more than one record fits.
                    Err(Error::RecordTooLarge { .. }) if n > 1 => continue,
                    Err(e) => return Err(e),
                };
            rest = tail;
            let bytes: usize = chunk[..published].iter().map(|r| r.len()).sum();
            self.counts.add(published as u64, bytes as u64);
            if let Some((a, b)) = span {
                first = first.or(Some(a));
                last = Some(b);
            }
            // Padded over mid-batch: the rest of this chunk, one by one.
            for r in &chunk[published..] {
                let p = self.append(r)?;
                first = first.or(Some(p));
                last = Some(p);
            }
        }
        if let (Some(l), Some(r)) = (last, slices.last()) {
            self.after_append(l.get() + frame::record_frame_len(r.len() as u32))?;
        }
        Ok(first.zip(last).map(|(a, b)| a..=b))
    }

    fn check_len(&self, len: usize) -> Result<u32> {
        let max = self.log.opts.max_record_size;
        if len > max {
            return Err(Error::RecordTooLarge { len, max });
        }
        Ok(len as u32)
    }

    /// [`claim_loop`](Self::claim_loop) for frames that are all published
    /// or given up when `body` returns: the appender is idle again after.
    #[inline]
    fn claimed<T>(
        &mut self,
        flen: u64,
        body: impl FnMut(&Segment, Writer<'_>, u64) -> Option<T>,
    ) -> Result<T> {
        let done = self.claim_loop(flen, body);
        self.slot.idle();
        done
    }

    /// The reservation loop shared by `append`, `reserve` and
    /// `append_batch`: reserves `flen` bytes of frames, rolling over and
    /// growing the file as needed, then hands the segment and the offset to
    /// `body`, which claims (and maybe fills and publishes) the frames.
    /// `None` from `body` means the reservation was padded over by an
    /// unblocker before anything was published: reserve again.
    #[inline]
    fn claim_loop<T>(
        &mut self,
        flen: u64,
        mut body: impl FnMut(&Segment, Writer<'_>, u64) -> Option<T>,
    ) -> Result<T> {
        self.check_leaked_reservation();
        loop {
            let seg = &*self.seg;
            // A reservation that cannot fit even an empty segment of this
            // (possibly foreign-made) capacity would roll over forever.
            if HEADER_LEN + flen > seg.data_limit() {
                // In record bytes: less the frame's header and the
                // record's time (`len` may still count alignment).
                let overhead = FRAME_HEADER_LEN + u64::from(STAMP_LEN);
                return Err(Error::RecordTooLarge {
                    len: (flen - overhead) as usize,
                    max: (seg.data_limit() - HEADER_LEN - overhead) as usize,
                });
            }
            let Some(w) = seg.shared().writer() else {
                return Err(Error::ReadOnly {
                    path: self.log.dir.path().to_owned(),
                });
            };
            // Readers must see `busy` at or below this reservation before
            // they can see the reservation (see `owners`). (Not the tail
            // loaded now, which would be tighter when other appenders
            // interleave: loading the tail's cache line just before the
            // `fetch_add` costs a second transfer of it when a reader on
            // another core holds it; 1 -> 1 at 64 B measured 3.9 M
            // against 4.6 M records/s, two runs each.)
            self.slot.reserving(self.floor);
            let off = w.reserve(flen);
            let end = match off.checked_add(flen) {
                Some(end) if end <= seg.data_limit() => end,
                _ => {
                    self.roll_over(off)?;
                    self.floor = self.floor.max(self.seg.base() + HEADER_LEN);
                    continue;
                }
            };
            self.floor = seg.base() + end;
            #[cfg(feature = "unstable-internals")]
            crate::internals::after_reserve(seg.base() + off);
            if off < HEADER_LEN || !off.is_multiple_of(FRAME_HEADER_LEN) {
                // Only a damaged tail word gets here; recovery repairs it.
                seg.shared().mark_dirty();
                return Err(Error::CorruptFrame {
                    position: Position::from(seg.base().saturating_add(off)),
                    reason: FrameDefect::TailNotAtBoundary,
                });
            }
            // `end` is where the next frame starts, whatever becomes of
            // this reservation (published, or padded over with the same
            // extent, or as 8-byte frames): record it for the marks the
            // reservation covers.
            w.index_note(off, end);
            if end > self.covered {
                match seg.prepare_write(off, end, self.log.opts.grow_step, PREFAULT_CHUNK) {
                    Ok(covered) => {
                        self.covered = covered;
                        if let Some(l) = &self.log.locker {
                            l.request(&self.seg, off);
                        }
                    }
                    Err(e) => {
                        self.abandon(off, flen);
                        return Err(e);
                    }
                }
            }
            if let Some(done) = body(seg, w, off) {
                return Ok(done);
            }
        }
    }

    /// Gives up a reservation at `off` that cannot be written (the file
    /// could not grow): pad it, so readers do not wait for it. Padding needs
    /// only the page holding the frame header; if even that cannot be
    /// allocated, the hole stays, the segment is marked dirty so that a
    /// clean close does not vouch for it, and the next recovery (or an
    /// unblocker) pads it.
    fn abandon(&self, off: u64, flen: u64) {
        let seg = &self.seg;
        let step = crate::format::PAGE;
        // `flen` is at most a batch (well under the padding limit).
        if seg.ensure_len(off + FRAME_HEADER_LEN, step).is_ok()
            && seg.shared().pad_reservation(off, flen)
        {
            seg.shared().wake_readers();
            return;
        }
        seg.shared().mark_dirty();
    }

    /// Handles a reservation at `off` that overshot the segment's data
    /// limit: the appender whose reservation contains the limit seals the
    /// segment, then everyone moves to the next segment.
    #[cold]
    fn roll_over(&mut self, off: u64) -> Result<()> {
        let seg = Arc::clone(&self.seg);
        crate::trace::trace_span!("tidelog.rollover", segment = seg.base());
        let mut sealing_error = None;
        if off <= seg.data_limit() {
            // Ours is the reservation that crossed the limit: the end marker
            // goes at its offset. Create the successor first, so that readers
            // following the marker find it; seal even if that fails, so they
            // are not left waiting at a hole.
            let next = self.log.next_for_appender(&seg);
            match seg.ensure_len(off + FRAME_HEADER_LEN, self.log.opts.grow_step) {
                Ok(_) => {
                    seg.shared().seal(off);
                    seg.shared().wake_all();
                }
                Err(e) => {
                    seg.shared().mark_dirty();
                    sealing_error = Some(e);
                }
            }
            self.seg = next?;
        } else {
            self.seg = self.log.next_for_appender(&seg)?;
        }
        self.covered = 0;
        match sealing_error {
            Some(e) => Err(e),
            None => {
                if off <= seg.data_limit() {
                    // Sealed, and readers woken: now retention may run.
                    self.log.retain_at_rollover();
                }
                Ok(())
            }
        }
    }

    /// Prepares the log ahead of the appends to come, off their path: grows
    /// the segment file and pre-faults its pages for writing, up to
    /// [`PRETOUCH_AHEAD`] bytes past the tail, doing at most 16 KiB of work
    /// (four pages, a few microseconds; growing the file, once per growth
    /// step, takes longer) per call. Returns whether there was work to do:
    /// `while appender.pretouch()? {}` prepares the whole window.
    ///
    /// Appends do the same when they must, which costs the append that
    /// crosses into unprepared space that much latency. A producer with idle
    /// time (one that sends at a fixed rate, or waits for input) calls this
    /// while idle, so that its appends never do; Chronicle Queue's
    /// "pretoucher" plays the same role.
    ///
    /// # Errors
    /// The errors of growing a segment file ([`Error::NoSpace`] and I/O
    /// errors).
    pub fn pretouch(&mut self) -> Result<bool> {
        let seg = &*self.seg;
        let tail = seg.shared().reserved_end();
        // A full segment: the next appends go to its successor, which the
        // first of them creates.
        if tail >= seg.data_limit() {
            return Ok(false);
        }
        let target = (tail + PRETOUCH_AHEAD).min(seg.data_limit());
        if self.covered >= target {
            return Ok(false);
        }
        let from = self.covered.max(tail);
        let next = (from + PRETOUCH_CHUNK).min(target);
        self.covered = seg.prepare_write(from, next, self.log.opts.grow_step, PRETOUCH_CHUNK)?;
        if let Some(l) = &self.log.locker {
            l.request(&self.seg, from);
        }
        Ok(true)
    }

    /// The largest record this appender accepts.
    pub fn max_record_size(&self) -> usize {
        self.log.opts.max_record_size
    }
}

/// The append time stored with a record: nanoseconds since the Unix epoch.
#[inline]
fn stamp_now() -> u64 {
    #[cfg(feature = "unstable-internals")]
    if let Some(t) = crate::internals::pinned_stamp() {
        return t;
    }
    crate::sys::calls::wall_ns_coarse()
}

/// Claims, fills and publishes the frames of a batch reserved at `off`, in
/// order. Returns how many were published and the positions of the first
/// and last of them; `None` if the first frame was padded over (nothing
/// published: reserve again). If a later frame was padded over, the frames
/// after it are padded too (they are ours; an unblocker may have got there
/// first) and left to the caller to append again.
fn publish_batch(
    seg: &Segment,
    sh: Writer<'_>,
    off: u64,
    chunk: &[&[u8]],
) -> Option<(usize, Option<(Position, Position)>)> {
    let mut at = off;
    let mut span: Option<(Position, Position)> = None;
    // One clock read for the reservation: its records are appended
    // together.
    let stamp = stamp_now();
    for (i, &payload) in chunk.iter().enumerate() {
        let len = payload.len() as u32;
        let position = seg.base() + at;
        let ok = match sh.claim(at, len + STAMP_LEN) {
            Some(mut claim) => {
                let (time, record) = claim.payload_mut().split_at_mut(STAMP_LEN as usize);
                time.copy_from_slice(&stamp.to_le_bytes());
                record.copy_from_slice(payload);
                claim
                    .publish(frame::record_word(position, stamp, payload))
                    .is_ok()
            }
            None => false,
        };
        if !ok {
            // Give up the rest of the reservation, so that readers do not
            // wait for it.
            let mut pad_at = at + frame::record_frame_len(len);
            for r in &chunk[i + 1..] {
                let f = frame::record_frame_len(r.len() as u32);
                sh.pad_reservation(pad_at, f);
                pad_at += f;
            }
            sh.wake_readers();
            return (i > 0).then_some((i, span));
        }
        let p = Position::from(position);
        span = Some((span.map_or(p, |s| s.0), p));
        at += frame::record_frame_len(len);
    }
    sh.wake_readers();
    Some((chunk.len(), span))
}

/// Room for one record, reserved in the log and written in place. Obtained
/// from [`Appender::reserve`]; dereferences to the record's bytes.
///
/// ```
/// # fn main() -> Result<(), tidelog::Error> {
/// # let tmp = tempfile::tempdir().unwrap();
/// let log = tidelog::Log::open(tmp.path())?;
/// let mut appender = log.appender()?;
/// // Serialize straight into the log: no intermediate buffer.
/// let mut r = appender.reserve(8)?;
/// r.copy_from_slice(&42u64.to_le_bytes());
/// let pos = r.commit()?;
/// // A reservation dropped without `commit` leaves nothing for readers.
/// drop(appender.reserve(100)?);
/// let mut reader = log.reader();
/// let record = reader.try_next()?.unwrap();
/// assert_eq!((record.position(), &*record), (pos, &42u64.to_le_bytes()[..]));
/// assert!(reader.try_next()?.is_none());
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Reservation<'a> {
    appender: &'a mut Appender,
    claim: Option<Claim<Arc<Mapping>>>,
    position: u64,
}

impl Reservation<'_> {
    /// Where the record will be, unless it has to be appended again (see
    /// [`commit`](Self::commit)).
    pub fn position(&self) -> Position {
        Position::from(self.position)
    }

    /// Publishes the record and returns its position.
    ///
    /// If the reservation was held past the unblock timeout and a reader
    /// padded it over, the record is appended again (copied from where it
    /// was written) and the new position is returned: the record is
    /// published exactly once either way.
    ///
    /// # Errors
    /// Only when the record has to be appended again: the errors of
    /// [`Appender::append`].
    pub fn commit(mut self) -> Result<Position> {
        let Some(claim) = self.claim.take() else {
            return Err(Error::InvalidPosition {
                position: self.position(),
                reason: PositionDefect::AlreadyCommitted,
            });
        };
        let word = frame::data_word(self.position, claim.payload());
        let flen = frame::frame_len(claim.payload().len() as u32);
        let len = claim.payload().len() as u64 - u64::from(STAMP_LEN);
        let published = claim.publish(word);
        let a = &mut *self.appender;
        a.slot.idle();
        *a.reserving.get_mut() = false;
        match published {
            Ok(()) => {
                a.seg.shared().wake_readers();
                a.counts.add(1, len);
                if a.log.opts.durability == crate::Durability::EveryAppend {
                    crate::durability::sync_to(&a.log, self.position + flen)?;
                }
                Ok(Position::from(self.position))
            }
            Err(void) => {
                // Padded over by an unblocker: append a copy, through the
                // same appender (its slot, its segment).
                let bytes = void.payload()[STAMP_LEN as usize..].to_vec();
                drop(void);
                a.append(&bytes)
            }
        }
    }
}

impl std::ops::Deref for Reservation<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match &self.claim {
            Some(c) => &c.payload()[STAMP_LEN as usize..],
            None => &[],
        }
    }
}

impl std::ops::DerefMut for Reservation<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        match &mut self.claim {
            Some(c) => &mut c.payload_mut()[STAMP_LEN as usize..],
            None => &mut [],
        }
    }
}

impl Drop for Appender {
    fn drop(&mut self) {
        self.log.counters.retire(&self.counts);
        self.check_leaked_reservation();
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let a = &mut *self.appender;
        *a.reserving.get_mut() = false;
        if let Some(claim) = self.claim.take() {
            if claim.abandon(self.position) {
                a.seg.shared().wake_readers();
            }
        }
        a.slot.idle();
    }
}
