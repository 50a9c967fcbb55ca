//! tidelog: an append-only, memory-mapped log that works as a durable
//! inter-process queue.
//!
//! A log is a directory of segment files. Each segment reserves a large
//! virtual mapping up front and its file grows inside that reservation as
//! records are appended, so readers in other processes see new records
//! without remapping. Appenders reserve space with one atomic add on a
//! shared tail word; readers borrow records straight from the mapping, check
//! their CRC and hand out `&[u8]` without copying.
//!
//! ```
//! # fn main() -> Result<(), tidelog::Error> {
//! # let tmp = tempfile::tempdir().unwrap();
//! # let dir = tmp.path().join("queue");
//! use tidelog::Log;
//!
//! // Producer (any process):
//! let log = Log::open(&dir)?;
//! let mut appender = log.appender()?;
//! let pos = appender.append(b"hello")?;
//!
//! // Consumer (any process; read-only needs no write permission):
//! let log = Log::open_read_only(&dir)?;
//! let mut reader = log.reader();
//! while let Some(record) = reader.try_next()? {
//!     assert_eq!(record.position(), pos);
//!     assert_eq!(&*record, b"hello");
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Guarantees
//! - A record is visible to every reader and survives a crash of the
//!   appending process as soon as [`Appender::append`] returns; it survives
//!   power loss after [`Log::flush`].
//! - Readers see each published record once, in position order, and never
//!   bytes that fail their CRC: damage is an [`Error`] carrying its position.
//! - Record boundaries are proven by walking from known ones, never guessed
//!   from bytes, so a payload cannot pose as records, whatever it holds.
//! - A full disk is [`Error::NoSpace`], never `SIGBUS`: segment files are
//!   grown with `fallocate` before any byte is written through the mapping.
//! - Opening a log for writing after a process crash cuts torn, unpublished
//!   frames and keeps every record whose `append` returned `Ok`; after a
//!   restart (a different kernel boot id), it keeps every flushed record
//!   and cuts the log to a prefix that reads without error.
//!
//! The file format and the protocol are specified in `docs/FORMAT.md`.
//!
//! # Trust
//! Like every memory-mapped store, tidelog assumes that only tidelog
//! modifies the files of a log while they are mapped: a segment truncated
//! by another program kills the processes that map it with `SIGBUS` when
//! they touch the lost pages, and a segment removed under a writer loses
//! the records in it (the writer's next flush or rollover reports
//! [`Error::SegmentRemoved`]). Files damaged at rest (bit rot, truncation,
//! a hostile copy) are detected and reported; symbolic links and special
//! files in a log directory are refused.

#![deny(unsafe_code)]
#![warn(missing_docs)]

mod append;
mod boot;
mod consumer;
mod cursor;
mod dir;
mod durability;
mod error;
#[cfg(feature = "unstable-internals")]
#[doc(hidden)]
pub mod format;
#[cfg(not(feature = "unstable-internals"))]
mod format;
mod group;
mod group_table;
#[cfg(feature = "unstable-internals")]
#[doc(hidden)]
pub mod internals;
mod liveness;
mod locker;
mod log;
mod options;
mod owners;
mod position;
mod protocol;
mod read;
mod recovery;
mod retention;
mod segment;
mod stats;
mod store;
#[cfg(feature = "async")]
mod stream;
mod sys;
mod table;
mod trace;
#[cfg(feature = "async")]
mod waiter;

pub use append::{Appender, Reservation, PRETOUCH_AHEAD};
pub use consumer::{Consumer, ConsumerInfo, StartAt};
pub use error::{
    CapacityDefect, CursorDefect, Error, FrameDefect, GroupDefect, HeaderDefect, OptionsDefect,
    PositionDefect, Result,
};
pub use group::{Batch, DeadLetter, GroupInfo, GroupMember, GroupOptions};
pub use log::{Log, LogId, SegmentInfo, Stats};
pub use options::{
    Durability, GroupCommit, Options, Retention, WriterMode, DEFAULT_GROW_STEP,
    DEFAULT_MAX_RECORD_SIZE, DEFAULT_SEGMENT_CAPACITY, DEFAULT_UNBLOCK_TIMEOUT,
};
pub use position::Position;
pub use read::{OwnedRecord, Reader, Record, Stall, StallOwner, WaitStrategy};
pub use recovery::RecoveryReport;
pub use retention::RetentionReport;
#[cfg(feature = "async")]
pub use stream::{RecordStream, Source};
