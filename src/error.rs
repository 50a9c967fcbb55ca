//! The one error type.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::Position;

/// Declares a `#[non_exhaustive]` enum of unit variants, each with its doc
/// and the text `Display` prints for it.
macro_rules! defects {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self {
                    $(Self::$variant => $text,)*
                })
            }
        }
    };
}

defects! {
    /// Why a frame is not one a writer makes: the reason of
    /// [`Error::CorruptFrame`].
    ///
    /// ```
    /// # use tidelog::FrameDefect;
    /// assert_eq!(FrameDefect::PastFile.to_string(), "frame runs past the end of its file");
    /// ```
    FrameDefect {
        /// An in-progress header that is not a data frame's, or that
        /// carries a checksum.
        MalformedInProgress => "malformed in-progress frame header",
        /// A padding header whose checksum or length is wrong.
        MalformedPadding => "malformed padding frame header",
        /// An end-of-segment header whose checksum or length is wrong.
        MalformedEnd => "malformed end-of-segment frame header",
        /// A header of a kind no writer makes.
        UnknownKind => "unknown frame kind",
        /// A frame offset that is not a multiple of 8.
        Misaligned => "misaligned frame offset",
        /// A record that runs into the room kept for the end-of-segment
        /// frame.
        IntoSegmentEnd => "record runs into the end of its segment",
        /// A record that ends past the tail: no writer publishes past its
        /// reservation.
        PastReserved => "record runs past the reserved space",
        /// Padding that ends past the tail.
        PaddingPastReserved => "padding runs past the end of the reserved space",
        /// An in-progress frame that ends past the tail or the data limit.
        InProgressPastReserved => "in-progress frame runs past the reserved space",
        /// A data frame whose payload is too short to hold its record's
        /// append time.
        MissingTime => "data frame too short to hold its record's append time",
        /// A tagged data frame whose payload is too short to hold its
        /// record's append time and tag.
        MissingTag => "tagged data frame too short to hold its record's time and tag",
        /// An end-of-segment marker in a segment whose tail has not crossed
        /// the data limit.
        EndInPartialSegment => "end-of-segment marker in a segment that is not full",
        /// A frame that ends past the segment's capacity.
        PastSegment => "frame runs past the end of its segment",
        /// A frame that ends past the end of its file (a truncated segment).
        PastFile => "frame runs past the end of its file",
        /// A frame still unfinished below the verified watermark.
        UnfinishedBelowWatermark => "unfinished frame below the verified watermark",
        /// The segment is marked sealed but has no end-of-segment marker.
        SealedWithoutEnd => "segment marked sealed but has no end-of-segment marker",
        /// An in-progress frame too long for one padding frame to cover.
        TooLongToPad => "in-progress frame too long to pad over",
        /// A write that would pass the end of the segment's reservation.
        WritePastReservation => "write past the end of the segment reservation",
        /// The segment's tail word is not at a frame boundary.
        TailNotAtBoundary => "the segment's tail word is not at a frame boundary",
        /// A published frame changed under the reader.
        ChangedUnderReader => "published frame changed under the reader",
    }
}

defects! {
    /// Why a segment capacity is refused, in a header or in the options.
    CapacityDefect {
        /// Not a multiple of 4096.
        NotPageMultiple => "segment capacity is not a multiple of 4096",
        /// Below 64 KiB.
        TooSmall => "segment capacity is below the minimum of 64 KiB",
        /// Above 1 TiB.
        TooLarge => "segment capacity is above the maximum of 1 TiB",
    }
}

/// Why a segment header is refused: the reason of [`Error::CorruptHeader`].
///
/// ```
/// # use tidelog::HeaderDefect;
/// let d = HeaderDefect::Checksum { stored: 1, computed: 2 };
/// assert_eq!(
///     d.to_string(),
///     "header checksum mismatch (stored 0x00000001, computed 0x00000002)"
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HeaderDefect {
    /// The static header does not match its checksum.
    Checksum {
        /// The checksum stored in the header.
        stored: u32,
        /// The checksum of the bytes found.
        computed: u32,
    },
    /// The header length field is not 4096.
    HeaderLength,
    /// An impossible capacity.
    Capacity(CapacityDefect),
    /// The base position is not a multiple of 4096.
    BaseMisaligned,
    /// The base position plus the capacity passes 2^62.
    BaseOutOfRange,
    /// The base position does not match the file name.
    BaseNotFileName,
    /// The segment index does not follow its predecessor's.
    IndexNotSuccessor,
    /// The segment index cannot have a successor.
    IndexOutOfRange,
}

impl fmt::Display for HeaderDefect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Checksum { stored, computed } => write!(
                f,
                "header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            Self::HeaderLength => f.write_str("header length is not 4096"),
            Self::Capacity(c) => c.fmt(f),
            Self::BaseMisaligned => f.write_str("segment base position is not a multiple of 4096"),
            Self::BaseOutOfRange => f.write_str("segment base position is out of range"),
            Self::BaseNotFileName => {
                f.write_str("base position in the header does not match the file name")
            }
            Self::IndexNotSuccessor => {
                f.write_str("segment index does not follow its predecessor's")
            }
            Self::IndexOutOfRange => f.write_str("segment index out of range"),
        }
    }
}

defects! {
    /// Why a position is refused: the reason of [`Error::InvalidPosition`].
    PositionDefect {
        /// Before the oldest segment's first position.
        BeforeOldestSegment => "before the oldest segment",
        /// In a segment's header, or past a full segment's end.
        OutsideDataArea => "not inside a segment's data area",
        /// Not a multiple of 8, or not a frame's first byte.
        NotAtFrameBoundary => "not at a frame boundary",
        /// Past the end of the log.
        PastEnd => "past the end of the log",
        /// Inside a frame of the log: a walk from a proven boundary passes
        /// over it.
        InsideFrame => "not the start of a record: a frame of this log spans it",
        /// A reservation committed twice.
        AlreadyCommitted => "reservation already committed",
    }
}

defects! {
    /// Why a cursor table is refused: the reason of
    /// [`Error::CorruptCursorTable`].
    CursorDefect {
        /// Shorter than its header or its slots.
        Truncated => "cursor table is truncated",
        /// Does not start with the cursor table's magic bytes.
        NotACursorTable => "not a tidelog cursor table (bad magic)",
        /// Written by a newer version of the format.
        UnsupportedVersion => "cursor table format version is not supported",
        /// The header does not match its checksum.
        HeaderChecksum => "cursor table header checksum mismatch",
        /// The slot size or count is not this build's.
        Geometry => "cursor table slot geometry is not supported",
        /// A slot's state word holds a value no writer stores.
        SlotState => "cursor slot state is neither free nor live",
        /// A live slot's name is empty or longer than 64 bytes.
        NameLength => "cursor name length out of range",
        /// A live slot's name does not match its checksum.
        NameChecksum => "cursor name checksum mismatch",
        /// A live slot's name is not UTF-8.
        NameNotUtf8 => "cursor name is not UTF-8",
    }
}

defects! {
    /// Why a group table is refused: the reason of
    /// [`Error::CorruptGroupTable`].
    GroupDefect {
        /// Shorter than its header or its blocks.
        Truncated => "group table is truncated",
        /// Does not start with the group table's magic bytes.
        NotAGroupTable => "not a tidelog group table (bad magic)",
        /// Written by a newer version of the format.
        UnsupportedVersion => "group table format version is not supported",
        /// The header does not match its checksum.
        HeaderChecksum => "group table header checksum mismatch",
        /// The block size or count is not this build's.
        Geometry => "group table block geometry is not supported",
        /// A block's state word holds a value no writer stores.
        GroupState => "group state is neither free nor live",
        /// A live group's name is empty or longer than 64 bytes.
        NameLength => "group name length out of range",
        /// A live group's name does not match its checksum.
        NameChecksum => "group name checksum mismatch",
        /// A live group's name is not UTF-8.
        NameNotUtf8 => "group name is not UTF-8",
        /// A group's maximum deliveries or visibility timeout is out of range.
        Settings => "group settings out of range",
        /// The dispatch word names a claim slot that does not exist.
        Dispatch => "group dispatch word names no claim slot",
        /// A claim word holds a state or an owner no writer stores.
        ClaimWord => "claim word holds an unknown state or owner",
        /// A claim's range is empty, reversed or not at frame alignment.
        ClaimRange => "claim range is not a run of records",
    }
}

/// Why options are refused: the reason of [`Error::InvalidOptions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OptionsDefect {
    /// An impossible segment capacity.
    Capacity(CapacityDefect),
    /// A growth step of zero.
    ZeroGrowStep,
    /// A growth step above 1 TiB.
    GrowStepTooLarge,
    /// A record size limit that does not fit in a segment of the capacity.
    RecordDoesNotFit,
    /// A periodic durability interval of zero.
    ZeroSyncInterval,
    /// A consumer group's batch of zero records, maximum deliveries of zero
    /// or above 2^32 - 2, or visibility timeout of zero.
    GroupSettings,
}

impl fmt::Display for OptionsDefect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Capacity(c) => c.fmt(f),
            Self::ZeroGrowStep => f.write_str("grow step must not be zero"),
            Self::GrowStepTooLarge => f.write_str("grow step is above the maximum of 1 TiB"),
            Self::RecordDoesNotFit => {
                f.write_str("max record size does not fit in a segment of this capacity")
            }
            Self::ZeroSyncInterval => f.write_str("a periodic sync interval must not be zero"),
            Self::GroupSettings => f.write_str(
                "a group needs a batch of 1 or more records, 1 to 2^32 - 2 deliveries \
                 and a visibility timeout above zero",
            ),
        }
    }
}

/// Everything that can go wrong, one variant per cause.
///
/// Corruption is never reported as text inside an [`io::Error`]: a torn
/// tail, a damaged record in the middle of the log and a file that is not a
/// log at all are different variants, so callers can react to each.
///
/// ```
/// # fn main() -> Result<(), tidelog::Error> {
/// # let tmp = tempfile::tempdir().unwrap();
/// use tidelog::{Error, Log};
///
/// match Log::open_read_only(tmp.path().join("no such log")) {
///     Err(Error::NotFound { path }) => assert!(path.ends_with("no such log")),
///     other => panic!("{other:?}"),
/// }
/// let log = Log::open(tmp.path())?;
/// match log.appender()?.append(&vec![0; 17 << 20]) {
///     Err(e @ Error::RecordTooLarge { .. }) => {
///         assert!(!e.is_corruption());
///         assert!(e.to_string().contains("exceeds the limit"));
///     }
///     other => panic!("{other:?}"),
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// An I/O call failed for a reason without a variant of its own.
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// [`Options::lock_in_memory`](crate::Options::lock_in_memory) asked
    /// to lock more than `RLIMIT_MEMLOCK` allows this process (which does
    /// not hold `CAP_IPC_LOCK`).
    MemoryLockLimit {
        /// Bytes asked for.
        requested: u64,
        /// The soft `RLIMIT_MEMLOCK`, in bytes.
        limit: u64,
    },
    /// The file system has no space left (`ENOSPC` or `EDQUOT`). Nothing
    /// already appended is lost; appends may succeed again once space is freed.
    NoSpace {
        /// The file that could not grow.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The operating system refused access (`EACCES` or `EPERM`).
    PermissionDenied {
        /// What was being done.
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The file system is mounted read-only (`EROFS`).
    ReadOnlyFileSystem {
        /// What was being done.
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
    },
    /// The log path exists but is not a directory.
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// The log directory does not exist and the log was opened read-only.
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// A segment file does not start with the tidelog magic bytes.
    NotASegment {
        /// The file.
        path: PathBuf,
    },
    /// A segment was written by a newer format version.
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// A segment uses incompatible features this build does not know.
    UnsupportedFeatures {
        /// The file.
        path: PathBuf,
        /// The unknown feature bits.
        flags: u32,
    },
    /// A segment file is shorter than its header.
    TruncatedHeader {
        /// The file.
        path: PathBuf,
        /// Its length in bytes.
        len: u64,
    },
    /// A segment header fails its checksum or holds impossible values.
    CorruptHeader {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: HeaderDefect,
    },
    /// A frame header at `position` is not one a writer produces, or claims
    /// bytes the file does not hold.
    CorruptFrame {
        /// Where the frame starts.
        position: Position,
        /// What is wrong.
        reason: FrameDefect,
    },
    /// The record at `position` does not match its checksum. Its bytes are
    /// not handed out.
    ChecksumMismatch {
        /// Where the record starts.
        position: Position,
        /// The checksum in the frame header.
        stored: u32,
        /// The checksum of the bytes found.
        computed: u32,
    },
    /// A record is larger than the log's limit.
    RecordTooLarge {
        /// The record's length.
        len: usize,
        /// The limit ([`Options::max_record_size`](crate::Options::max_record_size)).
        max: usize,
    },
    /// The log was opened read-only and cannot be written.
    ReadOnly {
        /// The log directory.
        path: PathBuf,
    },
    /// Another process holds the lock this operation needs.
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A position that is not the start of a record of this log.
    InvalidPosition {
        /// The position given.
        position: Position,
        /// Why it was refused.
        reason: PositionDefect,
    },
    /// A file in the log directory that carries the name of a segment or a
    /// lock file is not a regular file: a symbolic link, a FIFO, a socket, a
    /// device or a directory. tidelog never follows symbolic links in the
    /// log directory and never opens special files there.
    NotARegularFile {
        /// The file.
        path: PathBuf,
        /// What it is instead ("a symbolic link", "a FIFO", ...).
        kind: &'static str,
    },
    /// A segment file this process has mapped was removed from the log
    /// directory, or replaced by another file, by someone else. Records
    /// appended to it are not part of the log any more; nothing more is
    /// appended or reported durable through it.
    SegmentRemoved {
        /// Where the segment was.
        path: PathBuf,
    },
    /// The cursor table (the file `cursors` in the log directory) is
    /// damaged or not one.
    CorruptCursorTable {
        /// The file.
        path: PathBuf,
        /// The slot concerned, if the damage is in one.
        slot: Option<u32>,
        /// What is wrong.
        reason: CursorDefect,
    },
    /// Another consumer, in this process or another, uses this name now:
    /// two readers committing under one name would skip each other's
    /// records.
    ConsumerBusy {
        /// The name.
        name: String,
    },
    /// No consumer has this name.
    ConsumerNotFound {
        /// The name.
        name: String,
    },
    /// Every slot of the cursor table is taken.
    TooManyConsumers {
        /// How many consumers a log can have.
        max: u32,
    },
    /// Every slot of the owner table is taken: the log has as many live
    /// appenders (in all processes together) as it can track.
    TooManyAppenders {
        /// How many appenders a log can have at once.
        max: u32,
    },
    /// A consumer name that is empty or longer than 64 bytes.
    InvalidConsumerName {
        /// The name given.
        name: String,
    },
    /// The group table (the file `groups` in the log directory) is damaged
    /// or not one.
    CorruptGroupTable {
        /// The file.
        path: PathBuf,
        /// The group block concerned, if the damage is in one.
        group: Option<u32>,
        /// What is wrong.
        reason: GroupDefect,
    },
    /// No consumer group has this name.
    GroupNotFound {
        /// The name.
        name: String,
    },
    /// The group has members running now (deleting or resetting it needs
    /// none).
    GroupBusy {
        /// The name.
        name: String,
    },
    /// Every block of the group table is taken.
    TooManyGroups {
        /// How many groups a log can have.
        max: u32,
    },
    /// The group has as many members running as it can have.
    TooManyMembers {
        /// The group.
        name: String,
        /// How many members a group can have at once.
        max: u32,
    },
    /// Every claim slot of the group is in use: members hold that many
    /// batches unacknowledged.
    TooManyClaims {
        /// The group.
        name: String,
        /// How many batches a group can have in flight.
        max: u32,
    },
    /// A group name that is empty or longer than 64 bytes.
    InvalidGroupName {
        /// The name given.
        name: String,
    },
    /// The batch was taken from this member, because it overran the
    /// group's visibility timeout (or a tool reset the group), and handed
    /// to another: this acknowledgement counts for nothing, and the records
    /// are, or will be, delivered again. Also for a batch another member
    /// claimed (it is not this member's to settle).
    ClaimLost {
        /// The group.
        name: String,
        /// The first position of the batch.
        position: Position,
    },
    /// A sync (`msync`, `fsync`) of the log failed, here or in another
    /// process that led a sync this call waited for. Records below
    /// `durable` are on stable storage; those after it may not be, even
    /// though they are in the log (readers see them). A failed sync is
    /// never reported as a success later: the pages it covered are written
    /// again by the next sync, which reports its own result.
    SyncFailed {
        /// The file whose sync failed.
        path: PathBuf,
        /// The durable position when it failed.
        durable: Position,
        /// The `errno` of the failure (for example `EIO` or `ENOSPC`).
        errno: i32,
    },
    /// The position was in segments that retention deleted.
    Retired {
        /// The position asked for (or where a reader stood).
        position: Position,
        /// The oldest position the log still holds.
        oldest: Position,
    },
    /// A segment the log needs is missing while later ones exist.
    MissingSegment {
        /// Where the segment should be.
        path: PathBuf,
    },
    /// The options contradict each other or the format's limits.
    InvalidOptions {
        /// What is wrong.
        reason: OptionsDefect,
    },
}

impl Error {
    /// Classifies an I/O error into the variants callers react to.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => Self::NoSpace { path, source },
            Some(libc::EACCES) | Some(libc::EPERM) => Self::PermissionDenied { op, path, source },
            Some(libc::EROFS) => Self::ReadOnlyFileSystem { op, path },
            _ => Self::Io { op, path, source },
        }
    }

    /// The log position the error is about, for corruption and position errors.
    pub fn position(&self) -> Option<Position> {
        match self {
            Self::CorruptFrame { position, .. }
            | Self::Retired { position, .. }
            | Self::ClaimLost { position, .. }
            | Self::ChecksumMismatch { position, .. }
            | Self::InvalidPosition { position, .. } => Some(*position),
            _ => None,
        }
    }

    /// True for errors that mean the stored data is damaged (as opposed to a
    /// failing system call, a full disk or a caller's mistake).
    pub fn is_corruption(&self) -> bool {
        matches!(
            self,
            Self::NotASegment { .. }
                | Self::TruncatedHeader { .. }
                | Self::CorruptHeader { .. }
                | Self::CorruptFrame { .. }
                | Self::ChecksumMismatch { .. }
                | Self::MissingSegment { .. }
                | Self::NotARegularFile { .. }
                | Self::SegmentRemoved { .. }
                | Self::CorruptCursorTable { .. }
                | Self::CorruptGroupTable { .. }
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { op, path, source } => write!(f, "{op} {}: {source}", path.display()),
            Self::NoSpace { path, .. } => write!(f, "no space left to grow {}", path.display()),
            Self::MemoryLockLimit { requested, limit } => write!(
                f,
                "cannot lock {requested} bytes in memory: RLIMIT_MEMLOCK allows {limit} \
                 (raise it: `ulimit -l`, `LimitMEMLOCK=` in a systemd unit, or grant \
                 CAP_IPC_LOCK)"
            ),
            Self::PermissionDenied { op, path, .. } => {
                write!(f, "permission denied: {op} {}", path.display())
            }
            Self::ReadOnlyFileSystem { op, path } => {
                write!(f, "read-only file system: {op} {}", path.display())
            }
            Self::NotADirectory { path } => {
                write!(f, "{} is not a directory, so it cannot be a log", path.display())
            }
            Self::NotFound { path } => write!(f, "no log at {}", path.display()),
            Self::NotASegment { path } => {
                write!(f, "{} is not a tidelog segment (bad magic)", path.display())
            }
            Self::UnsupportedVersion {
                path,
                found,
                supported,
            } => write!(
                f,
                "{} has format version {found}; this build reads versions up to {supported}",
                path.display()
            ),
            Self::UnsupportedFeatures { path, flags } => write!(
                f,
                "{} uses format features this build does not know (flags {flags:#x})",
                path.display()
            ),
            Self::TruncatedHeader { path, len } => write!(
                f,
                "{} is truncated: {len} bytes is shorter than a segment header",
                path.display()
            ),
            Self::CorruptHeader { path, reason } => {
                write!(f, "corrupt segment header in {}: {reason}", path.display())
            }
            Self::CorruptFrame { position, reason } => {
                write!(f, "corrupt frame at position {position}: {reason}")
            }
            Self::ChecksumMismatch {
                position,
                stored,
                computed,
            } => write!(
                f,
                "record at position {position} fails its checksum (stored {stored:#010x}, computed {computed:#010x})"
            ),
            Self::RecordTooLarge { len, max } => {
                write!(f, "record of {len} bytes exceeds the limit of {max} bytes")
            }
            Self::ReadOnly { path } => {
                write!(f, "log {} is open read-only", path.display())
            }
            Self::Locked { path } => write!(
                f,
                "another process holds the lock {}",
                path.display()
            ),
            Self::InvalidPosition { position, reason } => {
                write!(f, "invalid position {position}: {reason}")
            }
            Self::NotARegularFile { path, kind } => write!(
                f,
                "{} is {kind}, not a regular file; tidelog neither follows links nor opens special files in a log directory",
                path.display()
            ),
            Self::SyncFailed {
                path,
                durable,
                errno,
            } => write!(
                f,
                "sync of {} failed ({}); the log is durable up to position {durable}",
                path.display(),
                io::Error::from_raw_os_error(*errno)
            ),
            Self::SegmentRemoved { path } => write!(
                f,
                "segment {} was removed or replaced by another program while in use",
                path.display()
            ),
            Self::CorruptCursorTable { path, slot, reason } => match slot {
                Some(i) => write!(f, "corrupt cursor table {} (slot {i}): {reason}", path.display()),
                None => write!(f, "corrupt cursor table {}: {reason}", path.display()),
            },
            Self::ConsumerBusy { name } => write!(
                f,
                "consumer {name:?} is in use by another process or handle"
            ),
            Self::ConsumerNotFound { name } => write!(f, "no consumer named {name:?}"),
            Self::TooManyConsumers { max } => {
                write!(f, "the log has {max} consumers already, its most")
            }
            Self::TooManyAppenders { max } => write!(
                f,
                "the log has {max} live appenders already, its most (drop appenders that are not in use)"
            ),
            Self::InvalidConsumerName { name } => write!(
                f,
                "consumer name {name:?} must be 1 to 64 bytes of UTF-8"
            ),
            Self::CorruptGroupTable { path, group, reason } => match group {
                Some(g) => write!(f, "corrupt group table {} (group block {g}): {reason}", path.display()),
                None => write!(f, "corrupt group table {}: {reason}", path.display()),
            },
            Self::GroupNotFound { name } => write!(f, "no consumer group named {name:?}"),
            Self::GroupBusy { name } => {
                write!(f, "consumer group {name:?} has members running")
            }
            Self::TooManyGroups { max } => {
                write!(f, "the log has {max} consumer groups already, its most")
            }
            Self::TooManyMembers { name, max } => write!(
                f,
                "consumer group {name:?} has {max} members running already, its most"
            ),
            Self::TooManyClaims { name, max } => write!(
                f,
                "consumer group {name:?} has {max} batches unacknowledged already, its most"
            ),
            Self::InvalidGroupName { name } => write!(
                f,
                "group name {name:?} must be 1 to 64 bytes of UTF-8"
            ),
            Self::ClaimLost { name, position } => write!(
                f,
                "the batch at {position} of consumer group {name:?} was handed to another member \
                 (visibility timeout overrun); it will be delivered again"
            ),
            Self::Retired { position, oldest } => write!(
                f,
                "position {position} was deleted by retention; the oldest position kept is {oldest}"
            ),
            Self::MissingSegment { path } => write!(
                f,
                "segment {} is missing but later segments exist",
                path.display()
            ),
            Self::InvalidOptions { reason } => write!(f, "invalid options: {reason}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. }
            | Self::NoSpace { source, .. }
            | Self::PermissionDenied { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Shorthand for results whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
