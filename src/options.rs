//! Options for opening a log.

use std::time::Duration;

use crate::error::OptionsDefect;
use crate::format::frame::{MAX_RECORD, STAMP_LEN};
use crate::format::header::{check_capacity, MAX_CAPACITY};
use crate::format::{FRAME_HEADER_LEN, HEADER_LEN, PAGE};
use crate::{Error, Result};

/// Default segment capacity: 1 GiB of reserved address space per segment.
pub const DEFAULT_SEGMENT_CAPACITY: u64 = 1 << 30;
/// Default growth step of a segment file: 64 MiB, chosen by measurement.
/// Pre-faulting the pages of a freshly allocated range costs about 2 us per
/// 4 KiB page when files grow in 4 to 8 MiB steps and about 1 us with 64 MiB
/// steps on ext4 (see docs/BENCHMARKS.md); larger steps gain little more.
pub const DEFAULT_GROW_STEP: u64 = 64 << 20;
/// Default record size limit.
pub const DEFAULT_MAX_RECORD_SIZE: usize = 16 << 20;
/// Default time a reader waits behind an unpublished frame before a process
/// with write access declares its writer dead and pads the hole.
pub const DEFAULT_UNBLOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// Who may append to a log at the same time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum WriterMode {
    /// Any number of processes, each with any number of appenders, append
    /// at once, lock-free. The default.
    #[default]
    MultiProcess,
    /// Appenders in one process only. The first process to ask for an
    /// appender holds an exclusive lock until its `Log` is dropped; any other
    /// process asking for one gets [`Error::Locked`] (the lock file is
    /// `append.lock` in the log directory). For deployments that want the
    /// guarantee of a single producer process.
    SingleProcess,
}

/// When an appended record is on stable storage, so that it survives a
/// power cut (every policy keeps a record through the crash of its process
/// as soon as `append` returns: it is in the shared page cache).
///
/// Whatever the policy, [`Log::sync`](crate::Log::sync) and
/// [`Appender::flush`](crate::Appender::flush) make everything appended so
/// far durable, and [`Log::durable_position`](crate::Log::durable_position)
/// says how far the log is durable. Syncs are shared across threads and
/// processes (group commit, see [`GroupCommit`]): one caller leads and
/// syncs, the others wait for the durable watermark it raises.
///
/// ```
/// # fn main() -> Result<(), tidelog::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// use tidelog::{Durability, Options};
///
/// let log = Options::new().durability(Durability::EveryAppend).open(dir.path())?;
/// let at = log.appender()?.append(b"payment 7: settled")?; // on disk now
/// assert!(log.durable_position()? > at);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Durability {
    /// Nothing is synced unless asked: a record survives a process crash as
    /// soon as `append` returns, and a power cut once a
    /// [`sync`](crate::Log::sync) that started after it returns. The
    /// default, and the fastest.
    #[default]
    Buffered,
    /// A thread of this process syncs the log (and the consumers' and
    /// groups' tables) every interval while anything is unsynced: a power
    /// cut loses at most the records appended in the last interval (plus
    /// the time one sync takes). A failed sync is reported by the next
    /// `append` of every appender of this handle, and by `sync`.
    Periodic(std::time::Duration),
    /// `append` returns only once the record is on stable storage (with the
    /// records of every other appender that waited at the same time: one
    /// sync for all of them). Consumer commits and group acknowledgements
    /// are synced before they return too.
    EveryAppend,
}

/// How concurrent syncs are batched (see [`Durability`]). The appenders
/// that arrive while one sync runs share the next one. Before syncing, the
/// leader also yields the CPU while more records keep arriving, for at most
/// `max_delay` (default 1 ms) and until `max_batch` bytes (default 1 MiB)
/// are unsynced: a lone appender pays one `sched_yield`, and appenders
/// woken together by the last sync join this one. A zero delay turns the
/// wait off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GroupCommit {
    /// The longest a leader waits for more records before syncing.
    pub max_delay: std::time::Duration,
    /// A leader syncs at once when this many bytes are unsynced.
    pub max_batch: u64,
}

impl Default for GroupCommit {
    fn default() -> Self {
        Self {
            max_delay: std::time::Duration::from_millis(1),
            max_batch: 1 << 20,
        }
    }
}

/// How much of a log to keep: whole sealed segments are deleted, oldest
/// first, while the log is larger than `max_bytes` or a segment's newest
/// record is older than `max_age`, but never past the slowest durable
/// consumer unless [`past_consumers`](Self::past_consumers) says so. No
/// limit by default.
///
/// ```
/// # fn main() -> Result<(), tidelog::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// use std::time::Duration;
/// use tidelog::{Options, Retention};
///
/// let log = Options::new()
///     .retention(Retention::new().max_bytes(8 << 30).max_age(Duration::from_secs(7 * 86_400)))
///     .open(dir.path())?;
/// let report = log.apply_retention()?; // it also runs at every rollover
/// assert_eq!(report.segments_deleted, 0);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    pub(crate) max_bytes: Option<u64>,
    pub(crate) max_age: Option<Duration>,
    pub(crate) past_consumers: bool,
}

impl Retention {
    /// No limit: keep everything.
    pub fn new() -> Self {
        Self::default()
    }

    /// Delete sealed segments, oldest first, while the log's segment files
    /// take more than `bytes`.
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = Some(bytes);
        self
    }

    /// Delete sealed segments whose newest record is older than `age` (a
    /// segment's newest record is no younger than the creation of the
    /// segment after it).
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// Delete past durable consumers that have not read that far. A
    /// consumer that was cut resumes with
    /// [`Error::Retired`](crate::Error::Retired), which names the oldest
    /// position kept.
    pub fn past_consumers(mut self, yes: bool) -> Self {
        self.past_consumers = yes;
        self
    }

    /// Whether this retention deletes anything ever.
    pub(crate) fn is_limited(&self) -> bool {
        self.max_bytes.is_some() || self.max_age.is_some()
    }
}

/// Options for opening a log: a builder with defaults for everything.
///
/// ```
/// # fn main() -> Result<(), tidelog::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// let log = tidelog::Options::new()
///     .segment_capacity(64 << 20)
///     .grow_step(1 << 20)
///     .max_record_size(64 << 10)
///     .open(dir.path().join("events"))?;
/// # drop(log);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Options {
    pub(crate) segment_capacity: u64,
    pub(crate) grow_step: u64,
    pub(crate) max_record_size: Option<usize>,
    pub(crate) file_mode: u32,
    pub(crate) writer_mode: WriterMode,
    pub(crate) unblock_timeout: Duration,
    pub(crate) retention: Retention,
    pub(crate) durability: Durability,
    pub(crate) group_commit: GroupCommit,
    pub(crate) lock_in_memory: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self::new()
    }
}

impl Options {
    /// The defaults: 1 GiB segments growing in 64 MiB steps, records up to
    /// 16 MiB, files created with mode 0600.
    pub fn new() -> Self {
        Self {
            segment_capacity: DEFAULT_SEGMENT_CAPACITY,
            grow_step: DEFAULT_GROW_STEP,
            max_record_size: None,
            file_mode: 0o600,
            writer_mode: WriterMode::default(),
            unblock_timeout: DEFAULT_UNBLOCK_TIMEOUT,
            retention: Retention::new(),
            durability: Durability::Buffered,
            group_commit: GroupCommit::default(),
            lock_in_memory: 0,
        }
    }

    /// Bytes of address space reserved per segment, header included: the
    /// largest a segment file can grow before appends roll over to the next
    /// one. A multiple of 4096 between 64 KiB and 1 TiB. Applies to segments
    /// this process creates; existing segments keep their own.
    pub fn segment_capacity(mut self, bytes: u64) -> Self {
        self.segment_capacity = bytes;
        self
    }

    /// The most a segment file grows at a time (rounded up to whole
    /// pages; 64 MiB by default). A log's first segment starts at 64 KiB
    /// (or this step, if smaller) and doubles with each growth up to it, so that a small log
    /// stays small; later segments start at a whole step. Larger steps mean
    /// fewer `fallocate` calls; smaller steps mean less disk reserved ahead
    /// of the data.
    pub fn grow_step(mut self, bytes: u64) -> Self {
        self.grow_step = bytes;
        self
    }

    /// The largest record accepted. Defaults to 16 MiB, or less when the
    /// segment capacity cannot hold that much.
    pub fn max_record_size(mut self, bytes: usize) -> Self {
        self.max_record_size = Some(bytes);
        self
    }

    /// Permission bits for files and directories this process creates
    /// (directories also get the matching execute bits). Default `0o600`.
    pub fn file_mode(mut self, mode: u32) -> Self {
        self.file_mode = mode & 0o777;
        self
    }

    /// Who may append at the same time. See [`WriterMode`].
    pub fn writer_mode(mut self, mode: WriterMode) -> Self {
        self.writer_mode = mode;
        self
    }

    /// How long a reader waits behind a frame that was reserved but never
    /// published before a process with write access pads it over. Default
    /// [`DEFAULT_UNBLOCK_TIMEOUT`].
    ///
    /// Make it longer than any pause a live writer takes between reserving
    /// and publishing (a [`Reservation`](crate::Reservation) held open, a
    /// process descheduled or stopped). A shorter timeout loses nothing, but
    /// readers pad over live writers' frames, which then append their
    /// records again at new positions. Zero pads every reserved frame at
    /// once: for tools and tests that know that no writer is alive.
    pub fn unblock_timeout(mut self, timeout: Duration) -> Self {
        self.unblock_timeout = timeout;
        self
    }

    /// How much of the log to keep (see [`Retention`]). It runs at every
    /// rollover this handle makes and from
    /// [`Log::apply_retention`](crate::Log::apply_retention). No limit by
    /// default.
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// Keeps the `bytes` ahead of this process's appenders locked in memory
    /// (`mlock`), and unlocks the pages behind them, so that appends store
    /// into resident, mapped pages: for latency-critical producers on
    /// machines with a core to spare. A thread of the log does the locking
    /// (appenders only post where they are), at `SCHED_IDLE` priority, in
    /// steps of half the window, and grows the file to cover the window;
    /// appenders skip their own pre-faulting inside it. 0, the default,
    /// locks nothing. Opening the log for writing fails with
    /// [`Error::MemoryLockLimit`](crate::Error::MemoryLockLimit) when
    /// `bytes` exceeds `RLIMIT_MEMLOCK` and the process lacks
    /// `CAP_IPC_LOCK`; if the kernel refuses a lock later (memory short,
    /// other locks of the process), locking stops on that segment and
    /// appends go on.
    ///
    /// Measured on a 2-vCPU machine with the producer and a spinning
    /// reader pinned to its two CPUs (docs/BENCHMARKS.md): no better, and
    /// sometimes much worse (one run's p99 58 ms against 23 us), because
    /// the locking thread's work and `mlock`'s draining of every CPU's page
    /// lists have no idle CPU to run on.
    pub fn lock_in_memory(mut self, bytes: u64) -> Self {
        self.lock_in_memory = bytes;
        self
    }

    /// When appended records reach stable storage (see [`Durability`]).
    /// Default [`Durability::Buffered`].
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// How concurrent syncs are batched (see [`GroupCommit`]).
    pub fn group_commit(mut self, group_commit: GroupCommit) -> Self {
        self.group_commit = group_commit;
        self
    }

    /// Validates the options and fills in derived values.
    pub(crate) fn resolve(&self) -> Result<Resolved> {
        check_capacity(self.segment_capacity).map_err(|c| Error::InvalidOptions {
            reason: OptionsDefect::Capacity(c),
        })?;
        if self.durability == Durability::Periodic(Duration::ZERO) {
            return Err(Error::InvalidOptions {
                reason: OptionsDefect::ZeroSyncInterval,
            });
        }
        if self.grow_step == 0 {
            return Err(Error::InvalidOptions {
                reason: OptionsDefect::ZeroGrowStep,
            });
        }
        let page = crate::sys::calls::page_size().max(PAGE);
        let grow_step = match crate::format::align_up(self.grow_step, page) {
            Some(s) if s <= MAX_CAPACITY => s,
            _ => {
                return Err(Error::InvalidOptions {
                    reason: OptionsDefect::GrowStepTooLarge,
                })
            }
        };
        // The largest record that fits an empty segment with room left for
        // the end-of-segment frame (a record's frame holds its append time
        // too).
        let stamp = u64::from(STAMP_LEN);
        let fits = self.segment_capacity - HEADER_LEN - 2 * FRAME_HEADER_LEN - stamp;
        let fits = fits.min(u64::from(MAX_RECORD) - stamp) as usize;
        let max_record_size = match self.max_record_size {
            Some(m) if m > fits => {
                return Err(Error::InvalidOptions {
                    reason: OptionsDefect::RecordDoesNotFit,
                })
            }
            Some(m) => m,
            None => DEFAULT_MAX_RECORD_SIZE.min(fits),
        };
        Ok(Resolved {
            segment_capacity: self.segment_capacity,
            grow_step,
            max_record_size,
            file_mode: self.file_mode,
            writer_mode: self.writer_mode,
            unblock_timeout: self.unblock_timeout,
            retention: self.retention,
            durability: self.durability,
            group_commit: self.group_commit,
            lock_in_memory: crate::format::align_up(self.lock_in_memory, page)
                .unwrap_or(!(page - 1)),
        })
    }
}

/// Validated options.
#[derive(Debug, Clone)]
pub(crate) struct Resolved {
    pub segment_capacity: u64,
    pub grow_step: u64,
    pub max_record_size: usize,
    pub file_mode: u32,
    pub writer_mode: WriterMode,
    pub unblock_timeout: Duration,
    pub retention: Retention,
    pub durability: Durability,
    pub group_commit: GroupCommit,
    /// Bytes to keep locked ahead of the appenders (whole pages); 0: none.
    pub lock_in_memory: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_resolve() {
        let r = Options::new().resolve().unwrap();
        assert_eq!(r.max_record_size, DEFAULT_MAX_RECORD_SIZE);
        assert_eq!(r.grow_step % 4096, 0);
    }

    #[test]
    fn small_segments_shrink_the_default_record_limit() {
        let r = Options::new().segment_capacity(64 << 10).resolve().unwrap();
        // Room for the end frame, the record's frame header and its time.
        assert_eq!(r.max_record_size as u64, (64 << 10) - HEADER_LEN - 16 - 8);
    }

    #[test]
    fn contradictions_are_refused() {
        for o in [
            Options::new().segment_capacity(1000),
            Options::new().grow_step(0),
            Options::new()
                .segment_capacity(64 << 10)
                .max_record_size(1 << 20),
            Options::new().max_record_size(usize::MAX),
        ] {
            assert!(
                matches!(o.resolve(), Err(Error::InvalidOptions { .. })),
                "{o:?}"
            );
        }
    }
}
