//! The public facade: [`Log`], opened for writing or reading, handing out
//! appenders and readers. What it delegates to: `store` (the open log and
//! its segments), `durability` (flush), `append` and `read`.

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::append::Appender;
use crate::consumer::{system_time, Consumer, ConsumerInfo, StartAt};
use crate::cursor::CursorTable;
use crate::dir::LogDir;
use crate::format::HEADER_LEN;
use crate::group::{DeadLetter, GroupInfo, GroupMember, GroupOptions};
use crate::group_table::GroupTable;
use crate::options::Retention;
use crate::options::{Resolved, WriterMode};
use crate::read::Reader;
use crate::recovery::RecoveryReport;
use crate::retention::RetentionReport;
use crate::store::Store;
use crate::{Error, Options, Position, Result};

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
    pub(crate) inner: Arc<Store>,
}

/// Counters and gauges of a log as this handle sees it, for a service to
/// export ([`Log::stats`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Records appended through this handle, by all its appenders (live
    /// and dropped).
    pub appends: u64,
    /// Payload bytes of those records.
    pub appended_bytes: u64,
    /// Holes left by producers that died mid-append which this handle's
    /// readers got past (padded, or passed over if read-only) as soon as
    /// the owner was found dead.
    pub dead_writer_holes: u64,
    /// Unfinished records this handle's readers padded over at the unblock
    /// timeout: a producer stopped or slow that long (it appends its record
    /// again).
    pub unblocks: u64,
    /// Whether opening this handle recovered the log (a writer had not
    /// closed cleanly): 1 or 0. Details in [`Log::recovery`].
    pub recoveries: u64,
    /// Where the next record will go.
    pub end_position: Position,
    /// Below this, everything is on stable storage.
    pub durable_position: Position,
    /// Segment files.
    pub segments: u64,
    /// Bytes of segment files.
    pub segment_bytes: u64,
    /// Every durable consumer with its lag (in records and bytes).
    pub consumers: Vec<ConsumerInfo>,
}

/// A log's identity: 16 random bytes drawn when the log is created and kept
/// in the header of every one of its segments (FORMAT.md, "Header"). Stable
/// for the log's life, through restarts, rollovers and retention; two logs
/// never share one (unless one directory is copied to make the other). A
/// bridge to another system names records by it and their positions.
///
/// Printed as 32 lowercase hex digits, and parsed back from them.
///
/// ```
/// # fn main() -> Result<(), tidelog::Error> {
/// # let tmp = tempfile::tempdir().unwrap();
/// let log = tidelog::Log::open(tmp.path())?;
/// let id = log.id();
/// assert_eq!(id.to_string().len(), 32);
/// assert_eq!(id.to_string().parse::<tidelog::LogId>(), Ok(id));
/// drop(log);
/// assert_eq!(tidelog::Log::open_read_only(tmp.path())?.id(), id);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LogId([u8; 16]);

impl LogId {
    /// The id from its 16 bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// Its 16 bytes, as stored.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl std::fmt::Display for LogId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl std::str::FromStr for LogId {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("{s:?} is not a log id (32 hex digits)");
        // Hex digits only (`from_str_radix` alone would take a '+').
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let mut id = [0u8; 16];
        for (i, b) in id.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Self(id))
    }
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
    /// When the segment was created (its header says so): no record in it
    /// is older. The next segment's creation bounds its newest record.
    pub created: std::time::SystemTime,
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
        if writable && opts.lock_in_memory > 0 {
            if let Some(limit) = crate::sys::calls::memlock_limit() {
                if opts.lock_in_memory > limit && !crate::sys::calls::can_lock_beyond_limit() {
                    return Err(Error::MemoryLockLimit {
                        requested: opts.lock_in_memory,
                        limit,
                    });
                }
            }
        }
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
            Store::open_writable(dir, opts)?
        } else {
            Store::open_read_only(dir, opts)?
        };
        let inner = Arc::new(inner);
        crate::durability::start_periodic(&inner)?;
        Ok(Log { inner })
    }

    /// A new appender. Appenders are independent: give each thread its own.
    ///
    /// # Errors
    /// [`Error::ReadOnly`] for a log opened read-only; [`Error::Locked`] in
    /// [`WriterMode::SingleProcess`] when another process holds the append
    /// lock (the default, [`WriterMode::MultiProcess`], has no such lock).
    pub fn appender(&self) -> Result<Appender> {
        let inner = &self.inner;
        if !inner.is_writable() {
            return Err(Error::ReadOnly {
                path: inner.dir.path().to_owned(),
            });
        }
        if inner.opts.writer_mode == WriterMode::SingleProcess {
            inner.lock_appends()?;
        }
        Appender::new(Arc::clone(inner))
    }

    /// A reader positioned at the oldest record.
    ///
    /// ```
    /// # fn main() -> Result<(), tidelog::Error> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// let log = tidelog::Log::open(tmp.path())?;
    /// log.appender()?.append(b"first")?;
    /// assert_eq!(&*log.reader().try_next()?.unwrap(), b"first");
    /// # Ok(())
    /// # }
    /// ```
    pub fn reader(&self) -> Reader {
        // A segment retention deleted (in any process) is not where a new
        // reader starts.
        self.inner.refresh_oldest();
        Reader::new(Arc::clone(&self.inner), self.inner.oldest(), HEADER_LEN)
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
    /// ```
    /// # fn main() -> Result<(), tidelog::Error> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// let log = tidelog::Log::open(tmp.path())?;
    /// let mut appender = log.appender()?;
    /// appender.append(b"seen before")?;
    /// let resume = appender.append(b"not yet processed")?;
    /// let mut reader = log.reader_at(resume)?;
    /// assert_eq!(&*reader.try_next()?.unwrap(), b"not yet processed");
    /// // A position inside a record is refused, whatever its bytes hold.
    /// let inside = tidelog::Position::from(resume.get() + 8);
    /// assert!(matches!(
    ///     log.reader_at(inside),
    ///     Err(tidelog::Error::InvalidPosition { .. })
    /// ));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidPosition`] for a position outside the log or not at a
    /// frame boundary.
    pub fn reader_at(&self, position: Position) -> Result<Reader> {
        Reader::at(&self.inner, position)
    }

    /// A reader at the first record appended at or after `time`, or at
    /// the end of the log if every record is older: "from ten minutes
    /// ago". Records carry their append time ([`Record::timestamp`](crate::Record::timestamp)),
    /// to the kernel's clock tick.
    ///
    /// The search reads the first record of about `log2(segments)`
    /// segments (opening only those) and of about 10 boundaries of one
    /// segment's index, then walks at most 1/768th of a segment (2 MiB of
    /// the default 1 GiB): well under a millisecond on a log in the page
    /// cache. It relies on times following positions; where the clock was
    /// set back, or where appenders' times interleave, it finds one place
    /// where the times cross `time`, and records on either side of it may
    /// be on the other side of `time` by as much as the clock went back. A
    /// record not yet complete where the search probes (an appender's, live
    /// or dead, whose hole no reader passed yet) counts as not older than
    /// `time`, so the reader may start before it and deliver, once it is
    /// complete, records older than `time`.
    ///
    /// ```
    /// # fn main() -> Result<(), tidelog::Error> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// use std::time::{Duration, SystemTime};
    /// let log = tidelog::Log::open(tmp.path())?;
    /// let mut appender = log.appender()?;
    /// appender.append(b"old")?;
    /// std::thread::sleep(Duration::from_millis(50));
    /// let since = SystemTime::now();
    /// std::thread::sleep(Duration::from_millis(50));
    /// appender.append(b"new")?;
    /// let mut reader = log.reader_at_time(since)?;
    /// assert_eq!(&*reader.try_next()?.unwrap(), b"new");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// Damage met on the way ([`Error::ChecksumMismatch`],
    /// [`Error::CorruptFrame`]), I/O errors.
    pub fn reader_at_time(&self, time: SystemTime) -> Result<Reader> {
        let t = time
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Reader::at_time(&self.inner, t)
    }

    /// The position and tag of the last record appended with a tag
    /// ([`Appender::append_tagged`](crate::Appender::append_tagged)), or
    /// `None` if no record the log keeps has one: how a process that tags
    /// what it appends with where it came from (a message's sequence
    /// number, an offset upstream) finds where to resume after a crash,
    /// with the log as its only offset store. A tag is published in the
    /// same frame as its record, so a crash leaves both or neither.
    ///
    /// Reads the log backwards one index stride at a time (2 MiB of the
    /// default 1 GiB segment), from its end as it is when
    /// called: fast when tagged records are frequent near the end, a read
    /// of every record when none is tagged. A frame not yet published
    /// below the end is waited for: a dead appender's hole is passed
    /// within milliseconds, and a live appender's when it publishes; on a
    /// log opened for writing, the unblock timeout (5 s by default) bounds
    /// the wait, but on a read-only log a stopped appender (`SIGSTOP`)
    /// holds it until it goes on or dies.
    ///
    /// ```
    /// # fn main() -> Result<(), tidelog::Error> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// let log = tidelog::Log::open(tmp.path())?;
    /// let mut appender = log.appender()?;
    /// assert_eq!(log.last_tag()?, None);
    /// appender.append_tagged(7, b"message 7")?;
    /// let at = appender.append_tagged(8, b"message 8")?;
    /// appender.append(b"untagged")?;
    /// assert_eq!(log.last_tag()?, Some((at, 8)));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// Damage met on the way ([`Error::ChecksumMismatch`],
    /// [`Error::CorruptFrame`]), I/O errors.
    pub fn last_tag(&self) -> Result<Option<(Position, u64)>> {
        let end = self.inner.end_position()?;
        Reader::last_tag(&self.inner, end)
    }

    /// The position the next record appended will have, unless appends in
    /// other threads or processes come first: where a reader that wants only
    /// new records starts.
    ///
    /// ```
    /// # fn main() -> Result<(), tidelog::Error> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// let log = tidelog::Log::open(tmp.path())?;
    /// log.appender()?.append(b"old news")?;
    /// // A consumer that only wants what comes next:
    /// let mut reader = log.reader_at(log.end_position()?)?;
    /// assert!(reader.try_next()?.is_none());
    /// log.appender()?.append(b"fresh")?;
    /// assert_eq!(&*reader.try_next()?.unwrap(), b"fresh");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// I/O errors from looking up the newest segment.
    pub fn end_position(&self) -> Result<Position> {
        self.inner.end_position().map(Position::from)
    }

    /// The log's directory, as given when it was opened.
    pub fn path(&self) -> &std::path::Path {
        self.inner.dir.path()
    }

    /// The log's identity (see [`LogId`]).
    pub fn id(&self) -> LogId {
        LogId(self.inner.oldest().header().log_id)
    }

    /// The durable named consumer `name`, resuming at the position
    /// committed under it, or at the log's oldest record if the name is
    /// new (see [`consumer_from`](Self::consumer_from)).
    ///
    /// # Errors
    /// [`Error::ConsumerBusy`] while another consumer of the name runs, in
    /// any process; [`Error::InvalidConsumerName`]; the errors of
    /// [`reader_at`](Self::reader_at) for the committed position; I/O
    /// errors of the cursor table.
    pub fn consumer(&self, name: &str) -> Result<Consumer> {
        self.consumer_from(name, StartAt::Beginning)
    }

    /// The durable named consumer `name`: resuming at the position
    /// committed under it, or, if the name is new, created at `start`.
    ///
    /// Creates the log's cursor table (the file `cursors`) if it has none,
    /// and writes to it, also through a read-only handle: a consumer's
    /// commits are the one thing a read-only process writes.
    ///
    /// ```
    /// # fn main() -> Result<(), tidelog::Error> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// use tidelog::{Log, StartAt};
    /// let log = Log::open(tmp.path())?;
    /// log.appender()?.append(b"before")?;
    /// let mut fresh = log.consumer_from("audit", StartAt::End)?;
    /// log.appender()?.append(b"after")?;
    /// assert_eq!(&*fresh.try_next()?.unwrap(), b"after");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`consumer`](Self::consumer).
    pub fn consumer_from(&self, name: &str, start: StartAt) -> Result<Consumer> {
        let table = self.cursor_table()?;
        loop {
            let (info, _) = match table.find(name)? {
                Some(info) => (info, false),
                None => {
                    // A new name: its start is proven a record boundary
                    // before it is stored (a bogus one would hold retention
                    // back for ever), and retention is held off meanwhile.
                    let _hold = self.inner.hold_off_retention()?;
                    let start = self.resolve(start)?;
                    self.reader_at(start)?;
                    table.find_or_create(name, start.get())?
                }
            };
            let hold = table.hold(&self.inner.dir, info.slot, name)?;
            // Deleted, and maybe reused, between the two? Checked under the
            // hold, which a delete must take too.
            match table.read_slot(info.slot)? {
                Some(s) if s.name == name => {
                    let committed = Position::from(s.position);
                    let reader = self.reader_at(committed)?;
                    return Ok(Consumer::new(
                        reader,
                        table,
                        info.slot,
                        name.to_owned(),
                        committed,
                        hold,
                        self.inner.opts.durability == crate::Durability::EveryAppend,
                    ));
                }
                _ => continue,
            }
        }
    }

    /// Every durable named consumer: name, committed position, lag, time of
    /// the last commit, and whether it runs now. Counting the lag in
    /// records reads the records after each committed position.
    ///
    /// # Errors
    /// [`Error::CorruptCursorTable`]; I/O errors.
    pub fn consumers(&self) -> Result<Vec<ConsumerInfo>> {
        let table = match self.inner.cursor_table(false) {
            // A read-only file system, or a table this process may not
            // write: list it all the same, without keeping it.
            Err(Error::ReadOnlyFileSystem { .. } | Error::PermissionDenied { .. }) => {
                CursorTable::open_read_only(&self.inner.dir)?.map(Arc::new)
            }
            other => other?,
        };
        let Some(table) = table else {
            return Ok(Vec::new());
        };
        let end = self.end_position()?.get();
        let mut out = Vec::new();
        for s in table.list()? {
            let lag_records = self.records_after(s.position)?;
            out.push(ConsumerInfo {
                active: table.is_held(s.slot)?,
                name: s.name,
                committed: Position::from(s.position),
                last_commit: system_time(s.commit_nanos),
                lag_bytes: end.saturating_sub(s.position),
                lag_records,
            });
        }
        Ok(out)
    }

    /// Moves the consumer `name` to `to` (not running now).
    ///
    /// # Errors
    /// [`Error::ConsumerNotFound`]; [`Error::ConsumerBusy`] while it runs;
    /// [`Error::InvalidPosition`] or [`Error::Retired`] if `to` is not a
    /// record boundary the log holds (nothing is changed then).
    pub fn reset_consumer(&self, name: &str, to: StartAt) -> Result<()> {
        let table = self.existing_table(name)?;
        let _hold = self.inner.hold_off_retention()?;
        let to = self.resolve(to)?;
        self.reader_at(to)?;
        table.reset(&self.inner.dir, name, to.get())
    }

    /// Deletes the consumer `name` (not running now).
    ///
    /// # Errors
    /// [`Error::ConsumerNotFound`]; [`Error::ConsumerBusy`] while it runs.
    pub fn delete_consumer(&self, name: &str) -> Result<()> {
        self.existing_table(name)?.delete(&self.inner.dir, name)
    }

    /// Records from `position` to the end of the log (0 if `position` is
    /// not one a reader can start at).
    fn records_after(&self, position: u64) -> Result<u64> {
        let mut n = 0;
        if let Ok(mut r) = self.reader_at(Position::from(position)) {
            loop {
                match r.try_next() {
                    Ok(Some(_)) => n += 1,
                    Ok(None) => break,
                    Err(_) => {
                        let at = r.position();
                        if r.skip_damaged()? == at {
                            break;
                        }
                    }
                }
            }
        }
        Ok(n)
    }

    /// Joins the consumer group `name` (see [`GroupMember`]), creating it
    /// with the default [`GroupOptions`] if it does not exist.
    ///
    /// # Errors
    /// As [`group_member_with`](Self::group_member_with).
    pub fn group_member(&self, name: &str) -> Result<GroupMember> {
        self.group_member_with(name, GroupOptions::default())
    }

    /// Joins the consumer group `name`, creating it with `opts` if it does
    /// not exist (a group keeps the settings it was created with; `opts`'s
    /// batch size is this member's).
    ///
    /// Creates the log's group table (the file `groups`) if it has none,
    /// and writes to it, also through a read-only handle.
    ///
    /// ```
    /// # fn main() -> Result<(), tidelog::Error> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// use std::time::Duration;
    /// use tidelog::{GroupOptions, Log};
    /// let log = Log::open(tmp.path())?;
    /// log.appender()?.append(b"job")?;
    /// let opts = GroupOptions::new()
    ///     .batch(16)
    ///     .visibility_timeout(Duration::from_secs(5))
    ///     .max_deliveries(3);
    /// let mut a = log.group_member_with("jobs", opts)?;
    /// let mut b = log.group_member_with("jobs", opts)?;
    /// let batch = a.claim()?.expect("one record");
    /// assert!(b.claim()?.is_none()); // a holds it
    /// a.release(batch)?; // handed back: b gets it, a second delivery
    /// let again = b.claim()?.expect("redelivered");
    /// assert_eq!(again.deliveries(), 2);
    /// b.ack(again)?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidGroupName`]; [`Error::InvalidOptions`];
    /// [`Error::TooManyGroups`]; [`Error::TooManyMembers`]; the errors of
    /// [`reader_at`](Self::reader_at) for the group's dispatch position;
    /// [`Error::CorruptGroupTable`]; I/O errors.
    pub fn group_member_with(&self, name: &str, opts: GroupOptions) -> Result<GroupMember> {
        let (max_deliveries, visibility) = opts.check()?;
        let table = self.group_table(true)?;
        loop {
            let rec = match table.find(name)? {
                Some(rec) => rec,
                None => {
                    let _hold = self.inner.hold_off_retention()?;
                    let start = self.resolve(opts.start_at())?;
                    // Proven a record boundary before any member relies on it.
                    self.reader_at(start)?;
                    table.find_or_create(name, start.get(), max_deliveries, visibility)?
                }
            };
            match GroupMember::join(
                Arc::clone(&self.inner),
                Arc::clone(&table),
                rec.block,
                name,
                &opts,
            ) {
                // Deleted between the two: create it again.
                Err(Error::GroupNotFound { .. }) => continue,
                r => return r,
            }
        }
    }

    /// Every consumer group: its watermark, dispatch position, lag,
    /// members, batches in flight and dead letters. Counting the lag in
    /// records reads the records after each watermark.
    ///
    /// # Errors
    /// [`Error::CorruptGroupTable`]; I/O errors.
    pub fn groups(&self) -> Result<Vec<GroupInfo>> {
        let table = match self.inner.group_table(false) {
            Err(Error::ReadOnlyFileSystem { .. } | Error::PermissionDenied { .. }) => {
                GroupTable::open_read_only(&self.inner.dir)?.map(Arc::new)
            }
            other => other?,
        };
        let Some(table) = table else {
            return Ok(Vec::new());
        };
        let end = self.end_position()?.get();
        let mut out = Vec::new();
        for g in table.list()? {
            let watermark = table.watermark(g.block)?;
            let (in_flight, orphans) = table.claim_counts(g.block)?;
            let members = table
                .members(g.block)?
                .into_iter()
                .map(|(_, pid, joined)| (pid as u32, system_time(joined)))
                .collect();
            out.push(GroupInfo {
                watermark: Position::from(watermark),
                dispatched: Position::from(g.dispatch),
                lag_records: self.records_after(watermark)?,
                lag_bytes: end.saturating_sub(watermark),
                members,
                in_flight,
                orphans,
                dead_letters: g.dead_count,
                max_deliveries: u32::try_from(g.max_deliveries).unwrap_or(u32::MAX),
                visibility_timeout: std::time::Duration::from_nanos(g.visibility_nanos),
                created: system_time(g.created_nanos),
                name: g.name,
            });
        }
        Ok(out)
    }

    /// The dead letters of the group `name`, oldest first: the latest 128
    /// (the group keeps a ring of them; [`GroupInfo::dead_letters`] counts
    /// them all).
    ///
    /// # Errors
    /// [`Error::GroupNotFound`]; [`Error::CorruptGroupTable`].
    pub fn dead_letters(&self, name: &str) -> Result<Vec<DeadLetter>> {
        let table = self.existing_groups(name)?;
        let g = table.find(name)?.ok_or_else(|| Error::GroupNotFound {
            name: name.to_owned(),
        })?;
        Ok(table
            .dead_letters(g.block)
            .into_iter()
            .map(|d| DeadLetter::from_parts(d.position, d.end, d.deliveries, d.nanos))
            .collect())
    }

    /// Moves the group `name` (no members running) to `to`: batches in
    /// flight are dropped, and records before `to` count as done.
    ///
    /// # Errors
    /// [`Error::GroupNotFound`]; [`Error::GroupBusy`] while members run;
    /// the errors of [`reader_at`](Self::reader_at) for `to`.
    pub fn reset_group(&self, name: &str, to: StartAt) -> Result<()> {
        let table = self.existing_groups(name)?;
        let _hold = self.inner.hold_off_retention()?;
        let to = self.resolve(to)?;
        self.reader_at(to)?;
        table.reset(name, to.get())
    }

    /// Deletes the group `name` (no members running), and its dead
    /// letters.
    ///
    /// # Errors
    /// [`Error::GroupNotFound`]; [`Error::GroupBusy`] while members run.
    pub fn delete_group(&self, name: &str) -> Result<()> {
        self.existing_groups(name)?.delete(name)
    }

    fn group_table(&self, create: bool) -> Result<Arc<GroupTable>> {
        self.inner
            .group_table(create)?
            .ok_or_else(|| Error::NotFound {
                path: self.inner.dir.path().to_owned(),
            })
    }

    fn existing_groups(&self, name: &str) -> Result<Arc<GroupTable>> {
        self.inner
            .group_table(false)?
            .ok_or_else(|| Error::GroupNotFound {
                name: name.to_owned(),
            })
    }

    fn cursor_table(&self) -> Result<Arc<CursorTable>> {
        self.inner
            .cursor_table(true)?
            .ok_or_else(|| Error::NotFound {
                path: self.inner.dir.path().to_owned(),
            })
    }

    fn existing_table(&self, name: &str) -> Result<Arc<CursorTable>> {
        self.inner
            .cursor_table(false)?
            .ok_or_else(|| Error::ConsumerNotFound {
                name: name.to_owned(),
            })
    }

    /// The position a start means now.
    fn resolve(&self, start: StartAt) -> Result<Position> {
        Ok(match start {
            StartAt::Beginning => {
                self.inner.refresh_oldest();
                Position::from(self.inner.oldest().base() + HEADER_LEN)
            }
            StartAt::End => self.end_position()?,
            StartAt::Position(p) => p,
            StartAt::Time(t) => self.reader_at_time(t)?.position(),
        })
    }

    /// Applies the retention of this handle's [`Options`] now (it also runs
    /// at every rollover): deletes whole sealed segments, oldest first,
    /// while the log is larger or older than it allows, never past the
    /// slowest durable consumer unless the retention says so.
    ///
    /// Safe while other processes append, read, or apply retention too:
    /// segments are only unlinked (a process reading one reads it to its
    /// end and moves on), under a lock, and the directory is fsynced
    /// after.
    ///
    /// # Errors
    /// [`Error::ReadOnly`] for a read-only handle; I/O errors;
    /// [`Error::CorruptCursorTable`].
    pub fn apply_retention(&self) -> Result<RetentionReport> {
        self.apply_retention_with(self.inner.opts.retention, false)
    }

    /// Applies `retention` instead of this handle's (for tools); with
    /// `dry_run`, only says what it would delete.
    ///
    /// # Errors
    /// As [`apply_retention`](Self::apply_retention).
    pub fn apply_retention_with(
        &self,
        retention: Retention,
        dry_run: bool,
    ) -> Result<RetentionReport> {
        if !dry_run && !self.inner.is_writable() {
            return Err(Error::ReadOnly {
                path: self.inner.dir.path().to_owned(),
            });
        }
        self.inner
            .apply_retention(retention, dry_run, crate::retention::Wait::Yes)
    }

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        self.inner.dir.path()
    }

    /// Whether the log was opened read-only.
    pub fn is_read_only(&self) -> bool {
        !self.inner.is_writable()
    }

    /// The largest record this log accepts, in bytes.
    pub fn max_record_size(&self) -> usize {
        self.inner.opts.max_record_size
    }

    /// What recovery found when this log was opened.
    pub fn recovery(&self) -> &RecoveryReport {
        self.inner.recovery()
    }

    /// Counters a service exports: appends and bytes through this handle,
    /// dead producers' holes and unblocks its readers handled, whether
    /// opening it recovered the log, the end and durable positions, the
    /// segments' size, and every consumer's lag. The appenders' counters
    /// cost them no atomic read-modify-write; counting the consumers' lag
    /// in records reads the records after each committed position.
    ///
    /// ```
    /// # fn main() -> Result<(), tidelog::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let log = tidelog::Log::open(dir.path())?;
    /// log.appender()?.append(b"one")?;
    /// let stats = log.stats()?;
    /// assert_eq!((stats.appends, stats.appended_bytes), (1, 3));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// I/O errors listing the segments or reading the consumers.
    pub fn stats(&self) -> Result<Stats> {
        let (appends, appended_bytes) = self.inner.counters.appended();
        let segments = self.segments()?;
        Ok(Stats {
            appends,
            appended_bytes,
            dead_writer_holes: self
                .inner
                .counters
                .repairs
                .load(std::sync::atomic::Ordering::Relaxed),
            unblocks: self
                .inner
                .counters
                .unblocks
                .load(std::sync::atomic::Ordering::Relaxed),
            recoveries: u64::from(self.recovery().ran),
            end_position: self.end_position()?,
            durable_position: self.durable_position()?,
            segments: segments.len() as u64,
            segment_bytes: segments.iter().map(|s| s.file_len).sum(),
            consumers: self.consumers()?,
        })
    }

    /// A summary of every segment, oldest first.
    ///
    /// # Errors
    /// I/O errors and header errors of the segment files.
    pub fn segments(&self) -> Result<Vec<SegmentInfo>> {
        let mut out = Vec::new();
        for base in self.inner.dir.segments()? {
            if let Some(seg) = self.inner.segment(base)? {
                let tail = seg.shared().tail();
                out.push(SegmentInfo {
                    path: seg.path().to_owned(),
                    index: seg.header().index,
                    base: Position::from(base),
                    capacity: seg.capacity(),
                    file_len: seg.file_len()?,
                    used: tail.min(seg.capacity()),
                    sealed: seg.shared().is_sealed(),
                    created: std::time::UNIX_EPOCH
                        + std::time::Duration::from_nanos(seg.header().created_nanos),
                });
            }
        }
        Ok(out)
    }

    /// Writes everything appended so far, by any process, to stable
    /// storage, records that it is there, and returns the durable position
    /// (everything below it is on stable storage).
    ///
    /// Syncs are shared: if another thread or process is syncing, this
    /// waits for its sync (and leads the next one if that did not cover
    /// everything). The leader walks the records up to the end of the log
    /// as it is now, waiting for every frame there to be published (a
    /// frame whose writer died is padded over, as a reader would), syncs
    /// each segment with records past its durable watermark
    /// (`msync(MS_SYNC)`), then the directory if it holds a segment this
    /// handle has not synced, and only then raises the watermarks. The
    /// consumers' and groups' tables are synced after.
    ///
    /// On a read-only handle it syncs nothing and returns the durable
    /// position the writers recorded: a read-only process cannot record a
    /// failed sync for the others to see.
    ///
    /// A record survives a process crash as soon as `append` returns; it
    /// survives power loss once a sync that started after it returns `Ok`
    /// (see [`Durability`](crate::Durability) for policies that sync on
    /// their own). After a restart, recovery keeps everything below the
    /// watermarks and cuts the log at the first frame after them that it
    /// cannot prove, so what survives is a prefix of the log.
    ///
    /// Commit or drop this thread's open [`Reservation`](crate::Reservation)s
    /// first: the sync waits for them like for any writer's, and after the
    /// unblock timeout pads them over (their `commit` then appends again).
    ///
    /// ```
    /// # fn main() -> Result<(), tidelog::Error> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// let log = tidelog::Log::open(tmp.path())?;
    /// let at = log.appender()?.append(b"payment 7: settled")?;
    /// let durable = log.sync()?; // now it survives a power cut too
    /// assert!(durable > at);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::SyncFailed`] if a sync failed (this one, or the one it
    /// waited for in another process): a failure is never reported as a
    /// success later. I/O errors; [`Error::SegmentRemoved`] if another
    /// program removed a segment this process appends to (its records are
    /// not durable in the log); damage found on the way that cannot be
    /// skipped (see [`Reader::skip_damaged`]), reported at its position.
    pub fn sync(&self) -> Result<Position> {
        crate::durability::sync_all(&self.inner).map(Position::from)
    }

    /// [`sync`](Self::sync), for those who do not need the position.
    ///
    /// # Errors
    /// The errors of [`sync`](Self::sync).
    pub fn flush(&self) -> Result<()> {
        self.sync().map(|_| ())
    }

    /// The durable position: every record below it is on stable storage,
    /// as the durable watermarks of the segments record. It only grows
    /// (until retention deletes the segments below it).
    ///
    /// # Errors
    /// I/O errors from listing or opening segments.
    pub fn durable_position(&self) -> Result<Position> {
        crate::durability::durable_position(&self.inner).map(Position::from)
    }

    /// Flushes (see [`flush`](Self::flush)) and closes the log handle,
    /// returning any error that dropping it would hide.
    ///
    /// # Errors
    /// The errors of [`flush`](Self::flush).
    pub fn close(self) -> Result<()> {
        if self.inner.is_writable() {
            self.flush()?;
        }
        Ok(())
    }
}

/// Opening, from the options (here rather than in `options.rs`, so that the
/// options do not depend on what they open).
impl Options {
    /// Opens the log at `dir` for reading and appending, creating the
    /// directory and its first segment if they do not exist.
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] for contradictory options, and any error of
    /// [`Log::open`].
    pub fn open(&self, dir: impl AsRef<Path>) -> Result<Log> {
        Log::open_with(dir.as_ref(), self.resolve()?, true)
    }

    /// Opens an existing log for reading only. Files are opened `O_RDONLY`
    /// and mapped `PROT_READ`; nothing in the directory is created, locked or
    /// modified.
    ///
    /// # Errors
    /// [`Error::NotFound`] if there is no log at `dir`, and any error of
    /// [`Log::open_read_only`].
    pub fn open_read_only(&self, dir: impl AsRef<Path>) -> Result<Log> {
        Log::open_with(dir.as_ref(), self.resolve()?, false)
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
