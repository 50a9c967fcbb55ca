//! The one error type.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::format::header::HeaderError;
use crate::Position;

/// Everything that can go wrong, one variant per cause.
///
/// Corruption is never reported as text inside an [`io::Error`]: a torn
/// tail, a damaged record in the middle of the log and a file that is not a
/// log at all are different variants, so callers can react to each.
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
        reason: &'static str,
    },
    /// A frame header at `position` is not one a writer produces, or claims
    /// bytes the file does not hold.
    CorruptFrame {
        /// Where the frame starts.
        position: Position,
        /// What is wrong.
        reason: &'static str,
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
        reason: &'static str,
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
    /// A segment the log needs is missing while later ones exist.
    MissingSegment {
        /// Where the segment should be.
        path: PathBuf,
    },
    /// The options contradict each other or the format's limits.
    InvalidOptions {
        /// What is wrong.
        reason: &'static str,
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

    pub(crate) fn header(path: impl Into<PathBuf>, e: HeaderError) -> Self {
        let path = path.into();
        match e {
            HeaderError::Truncated { len } => Self::TruncatedHeader { path, len },
            HeaderError::BadMagic => Self::NotASegment { path },
            HeaderError::UnsupportedVersion { found } => Self::UnsupportedVersion {
                path,
                found,
                supported: crate::format::header::VERSION,
            },
            HeaderError::UnsupportedFeatures { flags } => Self::UnsupportedFeatures { path, flags },
            HeaderError::BadChecksum { .. } => Self::CorruptHeader {
                path,
                reason: "header checksum mismatch",
            },
            HeaderError::Invalid { reason } => Self::CorruptHeader { path, reason },
        }
    }

    /// The log position the error is about, for corruption and position errors.
    pub fn position(&self) -> Option<Position> {
        match self {
            Self::CorruptFrame { position, .. }
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
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { op, path, source } => write!(f, "{op} {}: {source}", path.display()),
            Self::NoSpace { path, .. } => write!(f, "no space left to grow {}", path.display()),
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
            Self::SegmentRemoved { path } => write!(
                f,
                "segment {} was removed or replaced by another program while in use",
                path.display()
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
