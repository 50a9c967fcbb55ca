//! Readers: iterating, waiting, following the log across segments.

use std::hint;
use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{FrameDefect, PositionDefect};
use crate::format::frame::{self, Header};
use crate::format::{FRAME_ALIGN, FRAME_HEADER_LEN, HEADER_LEN};
use crate::owners::Verdict;
use crate::segment::Segment;
use crate::store::Store;
use crate::sys::map::{Slot, SlotError};
use crate::{Error, Position, Result};

/// How a reader waits for records that have not been appended yet.
///
/// ```
/// # fn main() -> Result<(), tidelog::Error> {
/// # let tmp = tempfile::tempdir().unwrap();
/// use std::time::Duration;
/// use tidelog::{Log, WaitStrategy};
///
/// let log = Log::open(tmp.path())?;
/// // Lowest latency, one core busy while idle:
/// let mut spinning = log.reader().with_wait_strategy(WaitStrategy::Spin);
/// // No CPU while idle; woken by the appender through a futex:
/// let mut parked = log.reader().with_wait_strategy(WaitStrategy::Park);
/// log.appender()?.append(b"tick")?;
/// assert_eq!(&*spinning.next_timeout(Duration::from_secs(1))?.unwrap(), b"tick");
/// assert_eq!(&*parked.next_timeout(Duration::from_secs(1))?.unwrap(), b"tick");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WaitStrategy {
    /// Poll in a tight loop: the lowest latency, one core busy.
    Spin,
    /// Poll, yielding the CPU to the scheduler between polls.
    Yield,
    /// Poll `spins` times, then park on the segment's futex until an
    /// appender wakes it. The default.
    SpinThenPark {
        /// Polls before parking.
        spins: u32,
    },
    /// Park on the futex straight away: no CPU used while idle.
    Park,
}

impl Default for WaitStrategy {
    fn default() -> Self {
        Self::SpinThenPark { spins: 200 }
    }
}

/// Parked readers of read-only logs cannot register for wake-ups (that
/// would write to the log), so they re-check at this interval.
const READ_ONLY_PARK: Duration = Duration::from_millis(1);

/// Reads records in order. Obtained from [`Log::reader`](crate::Log::reader)
/// or [`Log::reader_at`](crate::Log::reader_at).
///
/// A reader only ever sees published records, each exactly once, in log
/// order, and verifies each record's CRC before handing out its bytes.
///
/// ```
/// # fn main() -> Result<(), tidelog::Error> {
/// # let tmp = tempfile::tempdir().unwrap();
/// use tidelog::Log;
///
/// let log = Log::open(tmp.path())?;
/// let mut appender = log.appender()?;
/// for order in [&b"order 1"[..], b"order 2"] {
///     appender.append(order)?;
/// }
/// // In a consumer (any process): every record so far, then `None`.
/// let mut reader = Log::open_read_only(tmp.path())?.reader();
/// let mut seen = Vec::new();
/// while let Some(record) = reader.try_next()? {
///     seen.push(record.to_vec());
/// }
/// assert_eq!(seen, [b"order 1".to_vec(), b"order 2".to_vec()]);
/// // Later records are read from where the reader stands.
/// appender.append(b"order 3")?;
/// assert_eq!(&*reader.try_next()?.unwrap(), b"order 3");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Reader {
    log: Arc<Store>,
    seg: Arc<Segment>,
    /// File offset of the next frame in `seg`.
    off: u64,
    /// File length known to exist (a private copy of the segment's).
    readable: u64,
    /// The segment's tail word as last loaded: every published frame ends
    /// at or below it, so the reader reloads the shared (contended) word
    /// only when a frame ends past this copy.
    tail_seen: u64,
    wait: WaitStrategy,
    /// Where the reader has been waiting behind an unpublished frame, the
    /// header word it saw there and since when: the unblocker's clock.
    blocked: Option<Blocked>,
    /// Started (by `Log::reader_at`) at a position not yet proven to be a
    /// frame boundary: the reader starts at a boundary the index records
    /// before it and walks there, frame by frame, without handing out the
    /// records it passes. Landing on the position proves it; passing over
    /// it means a frame spans it, and the reader reports
    /// [`Error::InvalidPosition`].
    seek: Option<u64>,
    /// While seeking: stop (return `Pending`) once the position is reached,
    /// instead of reading the record there.
    seek_stop: bool,
    /// Stop waiting (return `Pending`) once the reader's position reaches
    /// this, even with nothing published: for a walk to a fixed end.
    stop_at: Option<u64>,
}

/// A record borrowed from the log's mapping: no copy is made.
///
/// Dereferences to the payload bytes. The borrow ends before the reader can
/// move on, so the bytes stay mapped while the record lives.
///
/// ```
/// # fn main() -> Result<(), tidelog::Error> {
/// # let tmp = tempfile::tempdir().unwrap();
/// let log = tidelog::Log::open(tmp.path())?;
/// let pos = log.appender()?.append(b"hello")?;
/// let mut reader = log.reader();
/// let record = reader.try_next()?.expect("a record");
/// assert_eq!(record.position(), pos);
/// assert_eq!(record.len(), 5); // through `Deref<Target = [u8]>`
/// assert!(record.starts_with(b"he"));
/// // Where to resume after it, in this process or another:
/// let resume = record.next_position();
/// assert!(log.reader_at(resume)?.try_next()?.is_none());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    payload: &'a [u8],
    stamp: u64,
    tag: Option<u64>,
    position: Position,
    next: Position,
}

impl<'a> Record<'a> {
    /// The record's position in the log: its id.
    pub fn position(&self) -> Position {
        self.position
    }

    /// The position just after this record: where a reader resumes to read
    /// what follows it.
    pub fn next_position(&self) -> Position {
        self.next
    }

    /// The payload, with the lifetime of the borrow of the reader.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.payload
    }

    /// When the record was appended: the appender's real-time clock just
    /// after it reserved the record's room (`CLOCK_REALTIME_COARSE`: exact
    /// to the kernel's tick, 1 to 4 ms). The records of one reservation of
    /// [`append_batch`](crate::Appender::append_batch) (up to 256 KiB)
    /// share one time; a [`reserve`](crate::Appender::reserve)d record has
    /// the time of its reservation, not of its commit. Stored in the
    /// record's frame, under its CRC.
    ///
    /// Times follow positions as long as the clock does: a clock set back
    /// (by hand, or by NTP stepping it) gives later records earlier times,
    /// and two appenders whose appends overlap may store times out of
    /// position order by the length of the overlap.
    ///
    /// ```
    /// # fn main() -> Result<(), tidelog::Error> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// use std::time::{Duration, SystemTime};
    /// let log = tidelog::Log::open(tmp.path())?;
    /// log.appender()?.append(b"now")?;
    /// let t = log.reader().try_next()?.unwrap().timestamp();
    /// let age = SystemTime::now().duration_since(t).unwrap_or_default();
    /// assert!(age < Duration::from_secs(60));
    /// # Ok(())
    /// # }
    /// ```
    pub fn timestamp(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.stamp)
    }

    /// The append time, in nanoseconds since the Unix epoch (see
    /// [`timestamp`](Self::timestamp)).
    pub fn timestamp_nanos(&self) -> u64 {
        self.stamp
    }

    /// The tag appended with the record by
    /// [`Appender::append_tagged`](crate::Appender::append_tagged), if it
    /// was: metadata kept in the record's frame beside its bytes, not in
    /// them (the NATS bridge keeps each message's stream sequence there).
    /// `None` for records appended without one.
    ///
    /// ```
    /// # fn main() -> Result<(), tidelog::Error> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// let log = tidelog::Log::open(tmp.path())?;
    /// let mut appender = log.appender()?;
    /// appender.append_tagged(41, b"with a tag")?;
    /// appender.append(b"without")?;
    /// let mut reader = log.reader();
    /// let r = reader.try_next()?.unwrap();
    /// assert_eq!((r.tag(), &*r), (Some(41), &b"with a tag"[..]));
    /// assert_eq!(reader.try_next()?.unwrap().tag(), None);
    /// # Ok(())
    /// # }
    /// ```
    pub fn tag(&self) -> Option<u64> {
        self.tag
    }
}

impl Deref for Record<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.payload
    }
}

impl AsRef<[u8]> for Record<'_> {
    fn as_ref(&self) -> &[u8] {
        self.payload
    }
}

/// A record copied out of the log: what a `RecordStream` yields (the
/// `async` feature), or what to keep after the reader moves on.
///
/// ```
/// # fn main() -> Result<(), tidelog::Error> {
/// # let tmp = tempfile::tempdir().unwrap();
/// use tidelog::OwnedRecord;
/// let log = tidelog::Log::open(tmp.path())?;
/// log.appender()?.append(b"keep me")?;
/// let mut reader = log.reader();
/// let kept = OwnedRecord::from(reader.try_next()?.unwrap());
/// drop(reader);
/// assert_eq!(&*kept, b"keep me");
/// assert_eq!(kept.into_payload(), b"keep me".to_vec());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OwnedRecord {
    payload: Vec<u8>,
    stamp: u64,
    tag: Option<u64>,
    position: Position,
    next: Position,
}

impl OwnedRecord {
    /// The record's position in the log: its id.
    pub fn position(&self) -> Position {
        self.position
    }

    /// The position just after this record (see [`Record::next_position`]).
    pub fn next_position(&self) -> Position {
        self.next
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The payload, taken out.
    pub fn into_payload(self) -> Vec<u8> {
        self.payload
    }

    /// When the record was appended (see [`Record::timestamp`]).
    pub fn timestamp(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.stamp)
    }

    /// The record's tag, if it was appended with one (see [`Record::tag`]).
    pub fn tag(&self) -> Option<u64> {
        self.tag
    }
}

impl From<Record<'_>> for OwnedRecord {
    fn from(r: Record<'_>) -> Self {
        Self {
            payload: r.payload.to_vec(),
            stamp: r.stamp,
            tag: r.tag,
            position: r.position,
            next: r.next,
        }
    }
}

impl Deref for OwnedRecord {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.payload
    }
}

impl AsRef<[u8]> for OwnedRecord {
    fn as_ref(&self) -> &[u8] {
        &self.payload
    }
}

/// The unblocker's clock: where the reader has been waiting, the header
/// word it saw there, since when that frame has been seen reserved and
/// unchanged, and when the reader last looked at the tail.
#[derive(Debug, Clone, Copy)]
struct Blocked {
    position: u64,
    word: u64,
    since: Option<u64>,
    checked_at: Option<u64>,
    /// When the frame's owner was last judged, and what was found.
    judged_at: Option<u64>,
    owner: StallOwner,
}

/// Judge the owner of an unfinished frame once it has been seen reserved
/// and unchanged this long: an appender between its reservation and its
/// publish usually takes well under a microsecond.
const OWNER_GRACE_NS: u64 = 1_000_000;
/// Judge it again this often while it stays unfinished.
const OWNER_RECHECK_NS: u64 = 5_000_000;
/// A reader of a writable log parked at the tail wakes up this often, to
/// notice a reservation whose writer died before publishing (nobody wakes
/// it for that): with [`OWNER_RECHECK_NS`], a dead writer's hole is passed
/// within about 30 ms.
const IDLE_RECHECK: Duration = Duration::from_millis(20);

/// A reader waiting at a record that was reserved but is not complete:
/// see [`Reader::stall`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stall {
    /// Where the unfinished record is.
    pub position: Position,
    /// How long this reader has seen it reserved and unchanged.
    pub waited: Duration,
    /// What is known of the appender that reserved it.
    pub owner: StallOwner,
}

/// What a stalled reader knows of the appender that reserved the record it
/// waits at (see [`Stall`]). An owner found dead is never reported: the
/// reader passes over its hole at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StallOwner {
    /// Not judged yet: the record has been unfinished for about a
    /// millisecond or less, as any record briefly is.
    NotJudged,
    /// An appender that is alive may own it: a slow writer, a writer
    /// stopped (`SIGSTOP`, a debugger), or one that leaked a reservation.
    /// A reader of a log opened for writing pads it over after the unblock
    /// timeout; a read-only reader waits for such a reader, or for
    /// recovery.
    MaybeAlive,
    /// The log has no owner table yet (a read-only reader finds none
    /// before a writable handle makes one), or it cannot be read: the
    /// owner's fate is unknown, and only the unblock timeout of a writable
    /// reader, or recovery, gets past the hole.
    Unknown,
}

/// The outcome of one step of the reader's state machine.
enum Step {
    /// A verified data frame at this offset of the current segment, with
    /// this payload length.
    Record { off: u64, len: u32 },
    /// Nothing to read yet.
    Pending,
}

impl Reader {
    pub(crate) fn new(log: Arc<Store>, seg: Arc<Segment>, off: u64) -> Self {
        Self {
            log,
            seg,
            off,
            readable: 0,
            tail_seen: 0,
            wait: WaitStrategy::default(),
            blocked: None,
            seek: None,
            seek_stop: false,
            stop_at: None,
        }
    }

    /// A reader at `position` of the log `log` (see
    /// [`Log::reader_at`](crate::Log::reader_at)).
    pub(crate) fn at(log: &Arc<Store>, position: Position) -> Result<Reader> {
        let pos = position.get();
        let invalid = |reason| Error::InvalidPosition { position, reason };
        let bases = log.dir.segments()?;
        if let Some(&first) = bases.first() {
            if pos < first && first > 0 {
                return Err(Error::Retired {
                    position,
                    oldest: Position::from(first + HEADER_LEN),
                });
            }
        }
        let Some(&base) = bases.iter().rev().find(|&&b| b <= pos) else {
            return Err(invalid(PositionDefect::BeforeOldestSegment));
        };
        let Some(seg) = log.segment(base)? else {
            // Listed a moment ago: retention deleted it meanwhile.
            let oldest = log.dir.segments()?.first().map_or(0, |b| b + HEADER_LEN);
            return Err(Error::Retired {
                position,
                oldest: Position::from(oldest),
            });
        };
        let off = pos - base;
        if off >= seg.capacity() {
            // The first position of a successor that does not exist yet is
            // where a reader at the end of a full segment waits.
            let full = seg.shared().tail() > seg.data_limit();
            if off == seg.capacity() + HEADER_LEN && full {
                let end = seg.capacity();
                return Ok(Reader::new(Arc::clone(log), seg, end));
            }
            return Err(invalid(PositionDefect::OutsideDataArea));
        }
        if off < HEADER_LEN || !off.is_multiple_of(FRAME_ALIGN) {
            return Err(invalid(PositionDefect::NotAtFrameBoundary));
        }
        let tail = seg.shared().reserved_end();
        if off > tail {
            return Err(invalid(PositionDefect::PastEnd));
        }
        if off == HEADER_LEN || off == tail {
            // Boundaries by construction: the first frame, and the tail
            // (it only grows, by whole reservations).
            return Ok(Reader::new(Arc::clone(log), seg, off));
        }
        // Prove it: walk from a proven boundary before it (one the index
        // records, or a watermark), frame by frame.
        let start = seg.shared().proven_floor(off);
        let mut reader = Reader::new(Arc::clone(log), seg, start);
        reader.seek_to(pos)?;
        Ok(reader)
    }

    /// The position and tag of the last tagged record of the log below
    /// `end`: the last segment's records are read from the last boundary
    /// its index records, then from the one before, and so on, then the
    /// segments before it, until one holds a tagged record. A frame not
    /// published yet below `end` is waited for (a dead owner's hole is
    /// judged and passed within milliseconds; a live appender's, by the
    /// unblock timeout at the latest).
    pub(crate) fn last_tag(log: &Arc<Store>, end: u64) -> Result<Option<(Position, u64)>> {
        let mut upper = end;
        for base in log.dir.segments()?.into_iter().rev() {
            if base >= upper {
                continue;
            }
            let Some(seg) = log.segment(base)? else {
                // Retention deleted it: so were the ones before it.
                break;
            };
            for &mark in seg.shared().index_boundaries().iter().rev() {
                let start = base + mark;
                if start >= upper {
                    continue;
                }
                let mut r = Reader::new(Arc::clone(log), Arc::clone(&seg), mark);
                let mut found = None;
                while r.position().get() < upper {
                    // Below `end` every frame is reserved: nothing read
                    // now is a hole the reader waits at until it is
                    // published or passed.
                    match r.next_timeout(Duration::from_millis(50))? {
                        Some(rec) if rec.position.get() < upper => {
                            if let Some(tag) = rec.tag {
                                found = Some((rec.position, tag));
                            }
                        }
                        Some(_) => break,
                        None => {}
                    }
                }
                if found.is_some() {
                    return Ok(found);
                }
                upper = start;
            }
        }
        Ok(None)
    }

    /// A reader at the first record of `log` appended at or after `t`
    /// (nanoseconds since the Unix epoch), or at the end of the log if
    /// there is none (see [`Log::reader_at_time`](crate::Log::reader_at_time)).
    ///
    /// Two binary searches over proven boundaries, each probing the time of
    /// the first record at or after a boundary: over the segments (their
    /// first frames), then over the boundaries the chosen segment's index
    /// records (1/768th of its capacity apart); then a walk of at most one
    /// index stride to the record. A probe that meets a record not yet
    /// complete (an appender's, live or dead, not yet passed) finds no time
    /// there, which the search takes for "not older than `t`".
    pub(crate) fn at_time(log: &Arc<Store>, t: u64) -> Result<Reader> {
        // The time of the first record at or after `off` of `seg` (it may
        // be in a later segment); `None` if there is none yet.
        let probe = |seg: &Arc<Segment>, off: u64| -> Result<Option<u64>> {
            let mut r = Reader::new(Arc::clone(log), Arc::clone(seg), off);
            Ok(r.try_next()?.map(|rec| rec.stamp))
        };
        let bases = log.dir.segments()?;
        // The last segment whose first record is older than `t`; only the
        // segments probed are opened. One retention deleted meanwhile is
        // older than any left.
        let (mut lo, mut hi) = (0, bases.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let older = match log.segment(bases[mid])? {
                Some(seg) => probe(&seg, HEADER_LEN)?.is_some_and(|s| s < t),
                None => true,
            };
            if older {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        let chosen = match lo.checked_sub(1) {
            Some(i) => log.segment(bases[i])?,
            None => None,
        };
        let start = match chosen {
            Some(seg) => {
                // The last boundary its index records whose next record is
                // older than `t` (the first frame's is).
                let marks = seg.shared().index_boundaries();
                let (mut a, mut b) = (0, marks.len());
                while a < b {
                    let mid = a + (b - a) / 2;
                    if probe(&seg, marks[mid])?.is_some_and(|s| s < t) {
                        a = mid + 1;
                    } else {
                        b = mid;
                    }
                }
                let at = marks[a.max(1) - 1];
                (seg, at)
            }
            // Every record is at or after `t`, or the segment went: from
            // the oldest record kept.
            None => {
                log.refresh_oldest();
                (log.oldest(), HEADER_LEN)
            }
        };
        let mut reader = Reader::new(Arc::clone(log), start.0, start.1);
        loop {
            let before = reader.clone();
            match reader.try_next()? {
                Some(rec) if rec.stamp >= t => return Ok(before),
                Some(_) => {}
                None => return Ok(reader),
            }
        }
    }

    /// Makes the reader walk from its (proven) position to `target`,
    /// proving that `target` is a frame boundary, and then read from there
    /// (see `seek`). Walks as far as the published frames allow now;
    /// returns `Err(InvalidPosition)` if a frame spans `target`.
    pub(crate) fn seek_to(&mut self, target: u64) -> Result<()> {
        self.seek = Some(target);
        self.seek_stop = true;
        let r = self.step();
        self.seek_stop = false;
        match r {
            Ok(_) => Ok(()),
            Err(e @ Error::InvalidPosition { .. }) => Err(e),
            // Damage on the way, or an error reaching the mapping: the
            // reader stays where it is and reports it when read.
            Err(e @ Error::Io { .. }) => Err(e),
            Err(_) => Ok(()),
        }
    }

    /// Walks to `end` (a position), waiting for every frame before it to
    /// be published or padded over, without handing out records. Returns
    /// the reader's position when it stopped: at or past `end` unless the
    /// `deadline` passed first.
    ///
    /// # Errors
    /// The errors of [`try_next`](Self::try_next) (damage stops the walk).
    pub(crate) fn walk_to(&mut self, end: u64, deadline: Option<Instant>) -> Result<u64> {
        self.stop_at = Some(end);
        let r = loop {
            if self.position().get() >= end {
                break Ok(self.position().get());
            }
            match self.wait_for(deadline) {
                Ok(Step::Record { .. }) => continue,
                Ok(Step::Pending) if self.position().get() >= end => {
                    break Ok(self.position().get())
                }
                Ok(Step::Pending) => break Ok(self.position().get()),
                Err(e) => break Err(e),
            }
        };
        self.stop_at = None;
        r
    }

    /// Sets how [`next_timeout`](Self::next_timeout) and
    /// [`next_blocking`](Self::next_blocking) wait.
    pub fn set_wait_strategy(&mut self, wait: WaitStrategy) {
        self.wait = wait;
    }

    /// Builder form of [`set_wait_strategy`](Self::set_wait_strategy).
    pub fn with_wait_strategy(mut self, wait: WaitStrategy) -> Self {
        self.wait = wait;
        self
    }

    /// The position of the next frame the reader will look at.
    pub fn position(&self) -> Position {
        Position::from(self.seg.base() + self.off)
    }

    /// The next record, or `None` if none has been published yet. Never
    /// blocks.
    ///
    /// ```
    /// # fn main() -> Result<(), tidelog::Error> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// let log = tidelog::Log::open(tmp.path())?;
    /// let mut reader = log.reader();
    /// assert!(reader.try_next()?.is_none());
    /// log.appender()?.append(b"now")?;
    /// assert_eq!(&*reader.try_next()?.unwrap(), b"now");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::ChecksumMismatch`] or [`Error::CorruptFrame`] with the
    /// position of a damaged frame (the reader stays there; call
    /// [`skip_damaged`](Self::skip_damaged) to go past it);
    /// [`Error::MissingSegment`] if the next segment is gone; I/O errors.
    pub fn try_next(&mut self) -> Result<Option<Record<'_>>> {
        match self.step()? {
            Step::Record { off, len } => Ok(Some(self.record(off, len)?)),
            Step::Pending => Ok(None),
        }
    }

    /// The next record, waiting up to `timeout` for one to be published.
    /// `None` if the time ran out.
    ///
    /// ```
    /// # fn main() -> Result<(), tidelog::Error> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// use std::time::Duration;
    /// let log = tidelog::Log::open(tmp.path())?;
    /// let mut reader = log.reader();
    /// assert!(reader.next_timeout(Duration::from_millis(10))?.is_none());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// The errors of [`try_next`](Self::try_next).
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Record<'_>>> {
        let deadline = Instant::now().checked_add(timeout);
        match self.wait_for(deadline)? {
            Step::Record { off, len } => Ok(Some(self.record(off, len)?)),
            Step::Pending => Ok(None),
        }
    }

    /// The next record, waiting as long as it takes.
    ///
    /// ```
    /// # fn main() -> Result<(), tidelog::Error> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// let log = tidelog::Log::open(tmp.path())?;
    /// let mut reader = log.reader();
    /// let producer = {
    ///     let mut appender = log.appender()?;
    ///     std::thread::spawn(move || appender.append(b"late").map(|_| ()))
    /// };
    /// assert_eq!(&*reader.next_blocking()?, b"late");
    /// producer.join().unwrap()?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// The errors of [`try_next`](Self::try_next).
    pub fn next_blocking(&mut self) -> Result<Record<'_>> {
        loop {
            if let Step::Record { off, len } = self.wait_for(None)? {
                return self.record(off, len);
            }
        }
    }

    /// The next record, awaited: for async code, on any executor (the
    /// `async` feature). The task sleeps, using no CPU, until an appender
    /// in any process publishes: one thread per process sleeps on the
    /// futex words of every segment its tasks wait on, and wakes their
    /// wakers. The record is borrowed from the mapping, as with
    /// [`try_next`](Self::try_next).
    ///
    /// Cancel-safe: a future dropped before it completes has taken nothing
    /// from the reader (in `select!`, or under a timeout).
    ///
    /// An idle reader of a writable log is still woken every 20 ms (5 ms
    /// while it waits at a reserved record), to notice an appender that
    /// died holding a reservation; a reader of a log opened read-only
    /// cannot register for wake-ups and is polled every millisecond.
    ///
    /// ```
    /// # fn main() -> Result<(), tidelog::Error> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// let log = tidelog::Log::open(tmp.path())?;
    /// let mut reader = log.reader();
    /// let mut appender = log.appender()?;
    /// let producer = std::thread::spawn(move || appender.append(b"awaited").map(|_| ()));
    /// // Any executor; a minimal one here.
    /// let record = futures_executor::block_on(reader.next_async())?;
    /// assert_eq!(&*record, b"awaited");
    /// # producer.join().unwrap()?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// The errors of [`try_next`](Self::try_next), and an I/O error if the
    /// waiter thread cannot be started.
    #[cfg(feature = "async")]
    pub async fn next_async(&mut self) -> Result<Record<'_>> {
        let (off, len) = std::future::poll_fn(|cx| self.poll_step(cx)).await?;
        self.record(off, len)
    }

    /// Polls for the next record, for hand-written futures and streams:
    /// `Pending` registers the task's waker as
    /// [`next_async`](Self::next_async) does.
    ///
    /// # Errors
    /// The errors of [`next_async`](Self::next_async).
    #[cfg(feature = "async")]
    pub fn poll_next_record(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<Record<'_>>> {
        match self.poll_step(cx) {
            std::task::Poll::Ready(Ok((off, len))) => std::task::Poll::Ready(self.record(off, len)),
            std::task::Poll::Ready(Err(e)) => std::task::Poll::Ready(Err(e)),
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }

    /// Moves past a damaged frame at the reader's position to the next
    /// frame boundary that is proven, and returns the position skipped to.
    ///
    /// Proven boundaries are the ones the segment's boundary index records
    /// (its appenders note one every 1/768th of the segment's capacity: 2
    /// MiB apart for the default 1 GiB segments, 4 KiB apart for the
    /// smallest), the verified and durable watermarks, and the tail. No
    /// boundary is ever guessed from the bytes after the damage, which may
    /// be a payload holding anything, frames that pass their CRC included.
    /// So the records between the damage and the next proven boundary are
    /// lost to this reader: at most one index stride of them. A full
    /// segment with no later boundary recorded is left at its end, for the
    /// next segment.
    ///
    /// Call it only to give up on damage: it moves the reader whatever is at
    /// its position. If nothing proven follows (the reader is at the tail),
    /// the reader stays where it is.
    ///
    /// ```
    /// # fn main() -> Result<(), tidelog::Error> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// # let log = tidelog::Log::open(tmp.path())?;
    /// # log.appender()?.append(b"fine")?;
    /// let mut reader = log.reader();
    /// loop {
    ///     match reader.try_next() {
    ///         Ok(Some(record)) => { /* use it */ }
    ///         Ok(None) => break,
    ///         Err(e) if e.is_corruption() => {
    ///             eprintln!("giving up on damage: {e}");
    ///             reader.skip_damaged()?;
    ///         }
    ///         Err(e) => return Err(e),
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// I/O errors.
    pub fn skip_damaged(&mut self) -> Result<Position> {
        if let Some(q) = self.seg.shared().next_proven(self.off) {
            self.off = q;
            self.blocked = None;
            // A position being walked to (`Log::reader_at`) that the skip
            // passed cannot be proven: the reader goes on from here.
            self.seek = None;
        }
        Ok(self.position())
    }

    fn record(&self, off: u64, len: u32) -> Result<Record<'_>> {
        let pos = self.seg.base() + off;
        match self.seg.shared().slot(off, self.readable) {
            Ok(Slot::Data {
                payload, tagged, ..
            }) if payload.len() == len as usize => match frame::split_envelope(payload, tagged) {
                Some((stamp, tag, record)) => Ok(Record {
                    payload: record,
                    stamp,
                    tag,
                    position: Position::from(pos),
                    next: Position::from(pos + frame::frame_len(len)),
                }),
                None => Err(Error::CorruptFrame {
                    position: Position::from(pos),
                    reason: if tagged {
                        FrameDefect::MissingTag
                    } else {
                        FrameDefect::MissingTime
                    },
                }),
            },
            _ => Err(Error::CorruptFrame {
                position: Position::from(pos),
                reason: FrameDefect::ChangedUnderReader,
            }),
        }
    }

    /// Advances over padding and segment ends to the next published record,
    /// verifies it and moves past it.
    fn step(&mut self) -> Result<Step> {
        loop {
            let off = self.off;
            let pos = self.seg.base() + off;
            if let Some(target) = self.seek {
                if pos == target {
                    self.seek = None;
                    if self.seek_stop {
                        return Ok(Step::Pending);
                    }
                } else if pos > target {
                    return Err(Error::InvalidPosition {
                        position: Position::from(target),
                        reason: PositionDefect::InsideFrame,
                    });
                }
            }
            if off + FRAME_HEADER_LEN > self.seg.capacity() {
                // Padded up to the very end: the segment is over.
                if self.follow()? {
                    continue;
                }
                return Ok(Step::Pending);
            }
            if off + FRAME_HEADER_LEN > self.readable {
                match self.seg.readable_len(off + FRAME_HEADER_LEN)? {
                    Some(len) => self.readable = len,
                    None => {
                        // Reserved, but the file does not reach it: its
                        // writer died (or met a full disk) before growing
                        // the file. It is an empty frame to the unblocker's
                        // clock, which grows the file to pad it (a page at a
                        // time); before the tail, nothing is late.
                        if off < self.seg.shared().reserved_end()
                            && self.unblock(off, Header::Empty)?
                        {
                            continue;
                        }
                        return Ok(Step::Pending);
                    }
                }
            }
            match self.seg.shared().slot(off, self.readable) {
                Ok(Slot::Data {
                    crc,
                    payload,
                    tagged,
                }) => {
                    let len = payload.len() as u32;
                    let next = off + frame::frame_len(len);
                    if next > self.seg.data_limit() {
                        return Err(Error::CorruptFrame {
                            position: Position::from(pos),
                            reason: FrameDefect::IntoSegmentEnd,
                        });
                    }
                    if let Err(computed) = frame::check_data(pos, len, crc, tagged, payload) {
                        return Err(Error::ChecksumMismatch {
                            position: Position::from(pos),
                            stored: crc,
                            computed,
                        });
                    }
                    if len < frame::envelope_len(tagged) {
                        return Err(Error::CorruptFrame {
                            position: Position::from(pos),
                            reason: if tagged {
                                FrameDefect::MissingTag
                            } else {
                                FrameDefect::MissingTime
                            },
                        });
                    }
                    // A writer reserves (moves the tail past its frame)
                    // before it publishes, and the Acquire load of the
                    // header word above saw the publish, so the tail seen
                    // now covers the frame. One that ends past the tail is
                    // not a writer's; trusting it would let the next append
                    // land inside it and derail this reader.
                    if next > self.tail_seen {
                        self.tail_seen = self.seg.shared().tail();
                        if next > self.tail_seen {
                            return Err(Error::CorruptFrame {
                                position: Position::from(pos),
                                reason: FrameDefect::PastReserved,
                            });
                        }
                    }
                    self.off = next;
                    if self.seek.is_some() {
                        // Walking to a position: pass over the records
                        // before it.
                        continue;
                    }
                    return Ok(Step::Record { off, len });
                }
                Ok(Slot::Control(Header::Padding { len })) => {
                    // Padding only ever covers reserved space, and the tail
                    // never moves back below it: padding that runs past the
                    // tail (or the segment) is not one a writer made, and
                    // following it would skip everything after it.
                    let next = off + frame::frame_len(len);
                    if next > self.seg.shared().reserved_end() {
                        return Err(Error::CorruptFrame {
                            position: Position::from(pos),
                            reason: FrameDefect::PaddingPastReserved,
                        });
                    }
                    self.off = next;
                }
                Ok(Slot::Control(Header::End)) => {
                    // The end marker is written by the appender whose
                    // reservation crossed the data limit, after that
                    // reservation: a marker in a segment that is not full is
                    // not one a writer made.
                    if self.seg.shared().tail() <= self.seg.data_limit() {
                        return Err(Error::CorruptFrame {
                            position: Position::from(pos),
                            reason: FrameDefect::EndInPartialSegment,
                        });
                    }
                    if self.stop_at.is_some() {
                        // A walk to a fixed end (a flush) is over with this
                        // segment: it must not wait for a successor that a
                        // failed rollover may never create.
                        self.off = self.seg.capacity();
                        return Ok(Step::Pending);
                    }
                    if !self.follow()? {
                        return Ok(Step::Pending);
                    }
                }
                Ok(Slot::Control(h @ (Header::Empty | Header::InProgress { .. }))) => {
                    if let Some(reason) = self.unfinished_is_corrupt(off, h) {
                        // Recovery in another process may have padded,
                        // sealed or cut this frame between our load of its
                        // word and our load of `checked` or the tail (it
                        // changes the word first, then Release-stores
                        // those): report only what is still there.
                        let seen = match h {
                            Header::InProgress { len } => frame::in_progress_word(len),
                            _ => 0,
                        };
                        if self.seg.shared().load_word(off) != Some(seen) {
                            continue;
                        }
                        return Err(Error::CorruptFrame {
                            position: Position::from(pos),
                            reason,
                        });
                    }
                    if self.unblock(off, h)? {
                        continue;
                    }
                    return Ok(Step::Pending);
                }
                Ok(Slot::Control(Header::Data { .. })) => {
                    unreachable!("data is never a control slot")
                }
                Err(SlotError::Beyond { end }) => {
                    let end = end as u64;
                    if end > self.seg.capacity() {
                        return Err(Error::CorruptFrame {
                            position: Position::from(pos),
                            reason: FrameDefect::PastSegment,
                        });
                    }
                    // A published frame: its writer grew the file to cover
                    // it first. Ask the kernel, not the `grown` hint, which
                    // the process that grew the file may not have raised yet.
                    match self.seg.covering_len(end)? {
                        Some(len) => self.readable = len,
                        None => {
                            return Err(Error::CorruptFrame {
                                position: Position::from(pos),
                                reason: FrameDefect::PastFile,
                            })
                        }
                    }
                }
                Err(SlotError::Malformed(reason)) => {
                    return Err(Error::CorruptFrame {
                        position: Position::from(pos),
                        reason,
                    })
                }
            }
        }
    }

    /// Why the empty or in-progress frame at `off` cannot be a live
    /// writer's, if it cannot: it lies below the `checked` watermark (every
    /// frame there is complete: a header that lies about the watermark), or
    /// it is in progress and runs past the tail or the data limit (the
    /// writer's claim, a SeqCst compare-and-swap, came after its reserve,
    /// so the tail loaded now covers a real one). Padding over such a
    /// frame could swallow records appended after it. `checked` is rarely
    /// written, so its load is a cache hit; the contended tail is loaded
    /// only when the frame ends past the copy the reader holds.
    fn unfinished_is_corrupt(&mut self, off: u64, h: Header) -> Option<FrameDefect> {
        let checked = self.seg.shared().checked();
        if off < checked && checked <= self.seg.capacity() {
            return Some(FrameDefect::UnfinishedBelowWatermark);
        }
        if self.seg.shared().is_sealed() && self.seg.shared().tail() <= self.seg.data_limit() {
            // Sealing moves the tail past the data limit before the bit is
            // set: this segment claims to be sealed but has no end frame,
            // and nothing will ever be appended here. Waiting would be
            // forever; a writable open repairs it.
            return Some(FrameDefect::SealedWithoutEnd);
        }
        if let Header::InProgress { len } = h {
            let end = off + frame::frame_len(len);
            if end > self.tail_seen {
                self.tail_seen = self.seg.shared().tail();
            }
            if end > self.tail_seen || end > self.seg.data_limit() {
                return Some(FrameDefect::InProgressPastReserved);
            }
        }
        None
    }

    /// The unblocker's clock. Called when the frame at `off` is empty or in
    /// progress. If the reader has seen exactly this for longer than the
    /// unblock timeout, and the log is open for writing, the writer that
    /// reserved the frame is presumed dead and the frame is padded over by
    /// compare-and-swap (`Shared::unblock`), so that readers move on:
    ///
    /// - an in-progress frame (its writer claimed it): its header is swapped
    ///   for a padding header of the same length;
    /// - an empty frame (its writer reserved and never claimed): every zero
    ///   word from here up to the first non-zero word, or the tail, becomes an
    ///   8-byte padding frame, one compare-and-swap each, in order. A word a
    ///   writer claims first stops the run.
    ///
    /// A writer that was only slow loses its compare-and-swap (its claim or
    /// its publish) and appends its record again at a new position, so a
    /// record is never lost and never published into padding. Returns
    /// whether anything was padded.
    fn unblock(&mut self, off: u64, header: Header) -> Result<bool> {
        let timeout = self.log.opts.unblock_timeout;
        let writable = self.seg.shared().is_writable();
        let word = match header {
            Header::InProgress { len } => frame::in_progress_word(len),
            _ => 0,
        };
        let key = self.seg.base() + off;
        let timeout_ns = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        // Timeouts of seconds do not need a precise clock; the coarse one
        // costs a few nanoseconds, so a spinning reader can look every poll.
        let now = crate::sys::calls::now_ns(timeout < Duration::from_millis(20));
        let b = match &mut self.blocked {
            Some(b) if b.position == key && b.word == word => b,
            slot => slot.insert(Blocked {
                position: key,
                word,
                since: None,
                checked_at: None,
                judged_at: None,
                owner: StallOwner::NotJudged,
            }),
        };
        // The tail word is a contended cache line: look at it at most every
        // quarter of the timeout (and at most every millisecond).
        let interval = (timeout_ns / 4).min(1_000_000);
        if b.checked_at
            .is_some_and(|at| now.saturating_sub(at) < interval)
        {
            return Ok(false);
        }
        b.checked_at = Some(now);
        // At the tail of an idle log nothing is late: the clock starts only
        // once the frame is seen reserved, so a writer that reserves after a
        // long quiet spell still gets the whole timeout. The tail loaded
        // here (Acquire) also bounds what a dead owner's hole may span.
        let tail = self.seg.shared().reserved_end();
        if word == 0 && off >= tail {
            b.since = None;
            return Ok(false);
        }
        let since = match b.since {
            None if !timeout.is_zero() => {
                // The precise clock, read once: the coarse one lags by up
                // to a tick, and a start read late on it would let a live
                // writer's frame be padded a little before its timeout.
                b.since = Some(crate::sys::calls::now_ns(true));
                return Ok(false);
            }
            None => now,
            Some(since) => since,
        };
        let waited = now.saturating_sub(since);
        if waited >= OWNER_GRACE_NS
            && b.judged_at
                .is_none_or(|at| now.saturating_sub(at) >= OWNER_RECHECK_NS)
        {
            b.judged_at = Some(now);
            let verdict = match self.log.owners() {
                Ok(Some(owners)) => owners.judge(key).ok(),
                Ok(None) | Err(_) => None,
            };
            match verdict {
                Some(Verdict::Alive) => b.owner = StallOwner::MaybeAlive,
                Some(Verdict::Dead { limit }) => {
                    // Act only on the word the judgement was about.
                    if !self.still(off, word)? {
                        return Ok(true);
                    }
                    let mut limit = limit.saturating_sub(self.seg.base()).min(tail);
                    // A walk to a position (a seek, a flush) must land on
                    // it, not pass it inside a run of holes.
                    for target in [self.seek, self.stop_at].into_iter().flatten() {
                        if target > key {
                            limit = limit.min(target - self.seg.base());
                        }
                    }
                    return self.pass_dead(off, header, limit);
                }
                // No owner table, or one that cannot be read.
                None => b.owner = StallOwner::Unknown,
            }
        }
        if waited < timeout_ns || !writable {
            return Ok(false);
        }
        self.blocked = None;
        let seg = Arc::clone(&self.seg);
        let step = self.log.opts.grow_step;
        // The file must cover each word padded (its writer may have died
        // before growing it): grown as the run goes, so that on a nearly
        // full disk a page is enough to get readers past the hole.
        let padded = seg
            .shared()
            .unblock(off, header, u64::MAX, |end| seg.ensure_len(end, step))?;
        if padded {
            self.log
                .counters
                .unblocks
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            crate::trace::trace_event!(
                position = seg.base() + off,
                "padded an unfinished record at the unblock timeout"
            );
        }
        Ok(padded)
    }

    /// Whether the frame at `off` still holds `word` (for a frame the file
    /// does not reach, whether it still does not: nothing was claimed
    /// there).
    fn still(&mut self, off: u64, word: u64) -> Result<bool> {
        let end = off + FRAME_HEADER_LEN;
        if end > self.readable {
            match self.seg.readable_len(end)? {
                Some(len) => self.readable = len,
                None => return Ok(word == 0),
            }
        }
        Ok(self.seg.shared().load_word_seqcst(off) == Some(word))
    }

    /// Gets past the unfinished frame at `off`, whose owner was found dead:
    /// a reader of a writable log pads it over by compare-and-swap (as the
    /// unblocker does, but for an empty frame only up to `limit`, a file
    /// offset below which no live appender's reservation starts); a
    /// read-only reader passes over the same bytes by itself, writing
    /// nothing: the in-progress frame's extent, or the zero words (and
    /// those past the end of the file) below `limit`. Returns whether the
    /// reader can move on.
    fn pass_dead(&mut self, off: u64, header: Header, limit: u64) -> Result<bool> {
        let seg = Arc::clone(&self.seg);
        let passed = if seg.shared().is_writable() {
            let step = self.log.opts.grow_step;
            seg.shared()
                .unblock(off, header, limit, |end| seg.ensure_len(end, step))?
        } else {
            let mut q = off;
            match header {
                // Its extent lies below the tail: `unfinished_is_corrupt`.
                Header::InProgress { len } => q += frame::frame_len(len),
                _ => {
                    let limit = limit.min(seg.capacity());
                    while q + FRAME_HEADER_LEN <= limit {
                        if q + FRAME_HEADER_LEN > self.readable {
                            match seg.readable_len(q + FRAME_HEADER_LEN)? {
                                Some(len) => self.readable = len,
                                None => {
                                    // Never written: zero, up to the limit.
                                    q = limit & !(FRAME_HEADER_LEN - 1);
                                    break;
                                }
                            }
                        }
                        if seg.shared().load_word(q) != Some(0) {
                            break;
                        }
                        q += FRAME_HEADER_LEN;
                    }
                }
            }
            let moved = q > off;
            if moved {
                self.off = q;
            }
            moved
        };
        if passed {
            self.log
                .counters
                .repairs
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            crate::trace::trace_event!(
                position = seg.base() + off,
                "passed a dead producer's hole"
            );
            self.blocked = None;
            #[cfg(feature = "unstable-internals")]
            crate::internals::count_repair();
        }
        Ok(passed)
    }

    /// The open log this reader reads.
    pub(crate) fn store(&self) -> &Arc<Store> {
        &self.log
    }

    /// Whether this reader is waiting at a record that was reserved but is
    /// not complete, where, for how long, and what is known of its owner:
    /// `None` while it is not (it has records to read, or waits at the end
    /// of the log).
    ///
    /// A reserved record is normally complete within microseconds. A hole
    /// whose appender died is passed over within milliseconds (padded by a
    /// reader of a writable log, passed over locally by a read-only one).
    /// What remains is a hole whose owner may be alive (a stopped or slow
    /// writer) or cannot be judged: readers of writable logs pad it after
    /// the unblock timeout, but a read-only reader cannot, and waits.
    /// This is how a read-only consumer tells "nothing new" from "stuck
    /// behind a hole".
    ///
    /// ```
    /// # fn main() -> Result<(), tidelog::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let log = tidelog::Log::open(dir.path())?;
    /// let mut reader = log.reader();
    /// assert!(reader.try_next()?.is_none());
    /// assert_eq!(reader.stall(), None); // at the end, not stalled
    /// # Ok(())
    /// # }
    /// ```
    pub fn stall(&self) -> Option<Stall> {
        let b = self
            .blocked
            .filter(|b| b.position == self.position().get())?;
        let since = b.since?;
        let now = crate::sys::calls::now_ns(true);
        Some(Stall {
            position: Position::from(b.position),
            waited: Duration::from_nanos(now.saturating_sub(since)),
            owner: b.owner,
        })
    }

    /// Moves to the next segment if it exists.
    fn follow(&mut self) -> Result<bool> {
        match self.log.next_for_reader(&self.seg)? {
            Some(next) => {
                self.seg = next;
                self.off = HEADER_LEN;
                self.readable = 0;
                self.tail_seen = 0;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn wait_for(&mut self, deadline: Option<Instant>) -> Result<Step> {
        let mut polls: u32 = 0;
        loop {
            if let s @ Step::Record { .. } = self.step()? {
                return Ok(s);
            }
            if self.stop_at.is_some_and(|end| self.position().get() >= end) {
                return Ok(Step::Pending);
            }
            // Read the clock only when there is a deadline to check.
            let now = deadline.map(|_| Instant::now());
            if let (Some(d), Some(now)) = (deadline, now) {
                if now >= d {
                    return Ok(Step::Pending);
                }
            }
            polls = polls.saturating_add(1);
            match self.wait {
                WaitStrategy::Spin => hint::spin_loop(),
                WaitStrategy::Yield => std::thread::yield_now(),
                WaitStrategy::SpinThenPark { spins } if polls <= spins => hint::spin_loop(),
                WaitStrategy::SpinThenPark { .. } | WaitStrategy::Park => {
                    self.park(deadline.zip(now).map(|(d, now)| d - now))
                }
            }
        }
    }

    /// Parks on the segment's futex until an appender publishes or the
    /// timeout passes.
    ///
    /// The reader loads `notify_seq`, sets the `parked` flag, re-checks its
    /// frame, then sleeps while `notify_seq` is unchanged. An appender
    /// publishes (a sequentially consistent compare-and-swap), then loads
    /// `parked` (sequentially consistent); if it is set, the appender
    /// clears it, bumps `notify_seq` and wakes every parked reader. Either
    /// the appender sees the flag, or the re-check sees the frame; and an
    /// appender that finds the flag already cleared by another knows that
    /// one bumps `notify_seq` after this reader loaded it, so the reader
    /// does not sleep through it.
    fn park(&mut self, timeout: Option<Duration>) {
        if let Some((seq, wait)) = self.park_plan(timeout) {
            self.seg.shared().park_wait(seq, Some(wait));
        }
    }

    /// The first half of [`park`](Self::park): registers for a wake-up and
    /// re-checks the frame. `None` if there is no need to sleep (the frame
    /// is ready); otherwise the `notify_seq` value to sleep on and for how
    /// long at most, after which the reader must poll again: the unblocker's
    /// clock (a writable reader), the poll interval of a reader that cannot
    /// register (read-only), or `timeout`.
    fn park_plan(&mut self, timeout: Option<Duration>) -> Option<(u32, Duration)> {
        // A parked reader polls rarely: have its next poll look at the
        // unblocker's clock.
        if let Some(b) = &mut self.blocked {
            b.checked_at = None;
        }
        let sh = self.seg.shared();
        let registered = sh.is_writable();
        let wait = if registered {
            // Wake up in time to judge (and, past the unblock timeout, pad)
            // a frame whose writer died: no appender will wake us for it.
            let blocked = self.blocked.is_some_and(|b| b.since.is_some());
            let cap = if blocked {
                Duration::from_nanos(OWNER_RECHECK_NS)
            } else {
                IDLE_RECHECK
            };
            let unblock = self
                .log
                .opts
                .unblock_timeout
                .max(Duration::from_millis(1))
                .min(cap);
            timeout.map_or(unblock, |t| t.min(unblock))
        } else {
            timeout.map_or(READ_ONLY_PARK, |t| t.min(READ_ONLY_PARK))
        };
        let seq = sh.park_begin();
        match self.readiness() {
            Readiness::Ready => None,
            Readiness::Wait => Some((seq, wait)),
            Readiness::Poll => Some((seq, wait.min(READ_ONLY_PARK))),
        }
    }

    /// Polls for the next step, for the `async` feature: a record, an
    /// error, or `Pending` with the task's waker registered with the
    /// process's waiter thread (see `waiter.rs`), which wakes it when an
    /// appender publishes or when the reader must poll again.
    #[cfg(feature = "async")]
    fn poll_step(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(u64, u32)>> {
        use std::task::Poll;
        match self.step() {
            Ok(Step::Pending) => {}
            Ok(Step::Record { off, len }) => return Poll::Ready(Ok((off, len))),
            Err(e) => return Poll::Ready(Err(e)),
        }
        match self.park_plan(None) {
            None => {
                // Ready after all: poll again at once, through the executor.
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Some((seq, wait)) => match crate::waiter::register(&self.seg, seq, wait, cx.waker()) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(Error::io(
                    "start the waiter thread",
                    self.seg.path(),
                    e,
                ))),
            },
        }
    }

    /// Whether the frame at the reader's position is still waiting for an
    /// appender (after the reader set the `parked` flag).
    fn readiness(&self) -> Readiness {
        let off = self.off;
        let end = off + FRAME_HEADER_LEN;
        if end > self.seg.capacity() {
            // At the end of a padded-out segment, waiting for its successor.
            return Readiness::Poll;
        }
        if end > self.readable {
            match self.seg.readable_len(end) {
                Ok(Some(_)) | Err(_) => return Readiness::Ready,
                Ok(None) => return Readiness::Wait,
            }
        }
        let word = self.seg.shared().load_word_seqcst(off);
        match word.map(|w| frame::decode(w, self.seg.base() + off)) {
            Some(Ok(Header::Empty | Header::InProgress { .. })) => Readiness::Wait,
            // An end marker whose successor segment does not exist yet: the
            // creator wakes us, but it may have done so just before we
            // registered, so only sleep briefly.
            Some(Ok(Header::End)) | Some(Err(_)) => Readiness::Poll,
            _ => Readiness::Ready,
        }
    }
}

enum Readiness {
    Ready,
    Wait,
    Poll,
}
