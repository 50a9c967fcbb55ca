//! Durable named consumers: a [`Reader`] whose position survives the
//! process, committed under a name in the log's cursor table.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::cursor::{CursorTable, SlotLock};
use crate::read::{Reader, Record, WaitStrategy};
use crate::{Position, Result};

/// Where a consumer whose name is new starts reading. (A name that exists
/// resumes at its committed position, whatever this says.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum StartAt {
    /// At the oldest record of the log. The default.
    #[default]
    Beginning,
    /// At the end of the log: only records appended from now on.
    End,
    /// At this position (a record's, or the one just after a record).
    Position(Position),
    /// At the first record appended at or after this time (see
    /// [`Log::reader_at_time`](crate::Log::reader_at_time)).
    Time(SystemTime),
}

/// A durable named consumer: reads like a [`Reader`], and commits how far
/// it got under its name, so that a consumer of the same name, in this
/// process or another, after a crash or not, resumes right after its last
/// commit. Obtained from [`Log::consumer`](crate::Log::consumer).
///
/// A commit is one atomic store in the log's cursor table (a file every
/// process maps): visible to every process at once, it survives the crash
/// of this process as soon as [`commit`](Self::commit) returns, and power
/// loss once the cursor table reaches the disk. It is crash-atomic: after
/// any crash the name holds its previous or its new position.
///
/// One consumer per name at a time: a second one, in any process, gets
/// [`Error::ConsumerBusy`](crate::Error::ConsumerBusy) until the first is
/// dropped or its process dies (the kernel drops its lock). Delivery is at
/// least once: records read after the last commit are read again after a
/// crash.
///
/// ```
/// # fn main() -> Result<(), tidelog::Error> {
/// # let tmp = tempfile::tempdir().unwrap();
/// let log = tidelog::Log::open(tmp.path())?;
/// let mut appender = log.appender()?;
/// for i in 0..3u8 {
///     appender.append(&[i])?;
/// }
/// {
///     let mut billing = log.consumer("billing")?;
///     assert_eq!(&*billing.try_next()?.unwrap(), &[0]);
///     billing.commit();
///     assert_eq!(&*billing.try_next()?.unwrap(), &[1]); // read, not committed
/// } // dropped: in another process, the same happens at a crash
/// let mut billing = log.consumer("billing")?;
/// assert_eq!(&*billing.try_next()?.unwrap(), &[1]);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Consumer {
    reader: Reader,
    table: Arc<CursorTable>,
    slot: u32,
    name: String,
    /// Where the reader resumes after the last record it returned: what
    /// `commit` records.
    next: Position,
    committed: Position,
    /// Held while the consumer lives: no other consumer of the name.
    _hold: SlotLock,
    /// Whether a commit is synced before it returns
    /// (`Durability::EveryAppend`).
    sync_commits: bool,
}

/// A consumer, as [`Log::consumers`](crate::Log::consumers) lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerInfo {
    /// Its name.
    pub name: String,
    /// Where it resumes: its committed position.
    pub committed: Position,
    /// When it last committed (or was created).
    pub last_commit: SystemTime,
    /// Bytes of the log after its committed position (positions are byte
    /// offsets, so this counts frame headers and alignment too).
    pub lag_bytes: u64,
    /// Records after its committed position.
    pub lag_records: u64,
    /// Whether a consumer of this name is running now, in any process.
    pub active: bool,
}

pub(crate) fn system_time(nanos: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(nanos)
}

impl Consumer {
    pub(crate) fn new(
        reader: Reader,
        table: Arc<CursorTable>,
        slot: u32,
        name: String,
        committed: Position,
        hold: SlotLock,
        sync_commits: bool,
    ) -> Self {
        Self {
            sync_commits,
            reader,
            table,
            slot,
            name,
            next: committed,
            committed,
            _hold: hold,
        }
    }

    /// The consumer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The position committed under the name: where a consumer of this
    /// name would resume now.
    pub fn committed(&self) -> Position {
        self.committed
    }

    /// Where [`commit`](Self::commit) would commit: just after the last
    /// record this consumer returned (or where it started).
    pub fn position(&self) -> Position {
        self.next
    }

    /// Sets how [`next_timeout`](Self::next_timeout) and
    /// [`next_blocking`](Self::next_blocking) wait.
    pub fn set_wait_strategy(&mut self, wait: WaitStrategy) {
        self.reader.set_wait_strategy(wait);
    }

    /// Builder form of [`set_wait_strategy`](Self::set_wait_strategy).
    pub fn with_wait_strategy(mut self, wait: WaitStrategy) -> Self {
        self.reader.set_wait_strategy(wait);
        self
    }

    /// The next record, or `None` if none has been published yet (see
    /// [`Reader::try_next`]).
    ///
    /// # Errors
    /// The errors of [`Reader::try_next`].
    pub fn try_next(&mut self) -> Result<Option<Record<'_>>> {
        let r = self.reader.try_next()?;
        if let Some(rec) = &r {
            self.next = rec.next_position();
        }
        Ok(r)
    }

    /// The next record, waiting up to `timeout` (see
    /// [`Reader::next_timeout`]).
    ///
    /// # Errors
    /// The errors of [`Reader::try_next`].
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<Record<'_>>> {
        let r = self.reader.next_timeout(timeout)?;
        if let Some(rec) = &r {
            self.next = rec.next_position();
        }
        Ok(r)
    }

    /// The next record, waiting as long as it takes (see
    /// [`Reader::next_blocking`]).
    ///
    /// # Errors
    /// The errors of [`Reader::try_next`].
    pub fn next_blocking(&mut self) -> Result<Record<'_>> {
        let rec = self.reader.next_blocking()?;
        self.next = rec.next_position();
        Ok(rec)
    }

    /// The next record, awaited (see [`Reader::next_async`]; the `async`
    /// feature). Cancel-safe: a future dropped before it completes has
    /// taken nothing, and [`position`](Self::position) has not moved.
    ///
    /// # Errors
    /// The errors of [`Reader::next_async`].
    #[cfg(feature = "async")]
    pub async fn next_async(&mut self) -> Result<Record<'_>> {
        let rec = self.reader.next_async().await?;
        self.next = rec.next_position();
        Ok(rec)
    }

    /// Polls for the next record (see [`Reader::poll_next_record`]).
    ///
    /// # Errors
    /// The errors of [`Reader::next_async`].
    #[cfg(feature = "async")]
    pub fn poll_next_record(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<Record<'_>>> {
        let p = self.reader.poll_next_record(cx);
        if let std::task::Poll::Ready(Ok(rec)) = &p {
            self.next = rec.next_position();
        }
        p
    }

    /// Whether this consumer waits at a record that was reserved but is
    /// not complete (see [`Reader::stall`]).
    pub fn stall(&self) -> Option<crate::Stall> {
        self.reader.stall()
    }

    /// Commits everything read so far: a consumer of this name resumes
    /// after the last record this one returned. Returns the position
    /// committed. Costs two atomic stores: the commit survives the crash
    /// of this process at once, and a power cut once the cursor table is
    /// synced ([`Log::sync`](crate::Log::sync), a periodic sync, or before
    /// this returns under [`Durability::EveryAppend`](crate::Durability)).
    ///
    /// # Errors
    /// Only under `EveryAppend`: the I/O error of syncing the cursor table
    /// (the commit is made, and visible to other processes, but may not
    /// survive a power cut).
    pub fn commit(&mut self) -> Result<Position> {
        self.commit_to(self.next)?;
        Ok(self.committed)
    }

    /// Commits up to `position`: a consumer of this name resumes there.
    /// Give a record's position (to read it again after a restart) or a
    /// [`Record::next_position`]; a consumer that resumes at a position
    /// that is not a record's gets
    /// [`Error::InvalidPosition`](crate::Error::InvalidPosition).
    ///
    /// # Errors
    /// As [`commit`](Self::commit).
    pub fn commit_to(&mut self, position: Position) -> Result<()> {
        if self.sync_commits {
            // The records before the position first: a commit on disk
            // must not name records that a power cut can still take.
            crate::durability::sync_to(self.reader.store(), position.get())?;
        }
        self.table.commit(self.slot, position.get());
        self.committed = position;
        if self.sync_commits {
            self.table.sync()?;
        }
        Ok(())
    }

    /// Skips a damaged record (see [`Reader::skip_damaged`]); the position
    /// committed next is after it.
    ///
    /// # Errors
    /// The errors of [`Reader::skip_damaged`].
    pub fn skip_damaged(&mut self) -> Result<Position> {
        let p = self.reader.skip_damaged()?;
        self.next = p;
        Ok(p)
    }
}
