//! Who has the log open for writing: the lock files and the writer count.
//!
//! The kernel answers "is that writer alive?": every process with the log
//! open for writing holds a shared `flock` on `writers.lock`, which the
//! kernel drops when the process dies, so an exclusive lock on it proves
//! that no other writer is alive (no PIDs, which are reused, and no
//! timeouts). `open.lock`, held exclusively while a process opens or closes
//! the log for writing, serialises that check with recovery and with the
//! registration count in its first 8 bytes: a writer that dies never
//! unregisters, so a last writer that finds the count above zero knows
//! that someone died since the last recovery.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;

use fs2::FileExt;

use crate::dir::{Access, LogDir};
use crate::{Error, Result};

/// Lock file every process with the log open for writing holds shared; an
/// exclusive lock on it proves that no other writer is alive.
pub(crate) const WRITERS_LOCK: &str = "writers.lock";
/// Lock file that serialises opening and closing for writing. Its first 8
/// bytes count the processes registered as writers (read and written only
/// under the lock).
pub(crate) const OPEN_LOCK: &str = "open.lock";
/// Lock file held exclusively by the one process allowed to append in
/// [`WriterMode::SingleProcess`](crate::WriterMode::SingleProcess).
pub(crate) const APPEND_LOCK: &str = "append.lock";

/// Lock file held exclusively while a process applies retention.
pub(crate) const RETENTION_LOCK: &str = "retention.lock";

/// A count no number of live writers reaches: "unknown, do not vouch".
const UNKNOWN_WRITERS: u64 = 1 << 32;

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

fn set_registered_writers(lock: &File, n: u64) -> io::Result<()> {
    lock.write_all_at(&n.to_le_bytes(), 0)
}

/// Whether a non-blocking lock failed because someone else holds it.
pub(crate) fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::EWOULDBLOCK)
}

/// This process's registration as a writer of a log: the shared lock on
/// `writers.lock`, kept until [`close`](Self::close).
#[derive(Debug)]
pub(crate) struct Registration {
    liveness: File,
    mode: u32,
    /// The process that registered. A child made by `fork` shares the
    /// lock files' open descriptions with it, so its copy must not run the
    /// close protocol.
    pid: u32,
}

impl Registration {
    /// Registers this process as a writer of the log in `dir`. Under
    /// `open.lock`, learns whether any other writer is alive, runs `open`
    /// with the answer (`alone`: recovery may run), and, if it succeeds,
    /// counts this process in and takes the shared lock that says it is
    /// alive.
    pub(crate) fn register<T>(
        dir: &LogDir,
        mode: u32,
        open: impl FnOnce(bool) -> Result<T>,
    ) -> Result<(T, Registration)> {
        let open_lock = open_lock_file(dir, OPEN_LOCK, mode)?;
        open_lock
            .lock_exclusive()
            .map_err(|e| Error::io("lock", dir.join(OPEN_LOCK), e))?;
        let liveness = open_lock_file(dir, WRITERS_LOCK, mode)?;
        let alone = match liveness.try_lock_exclusive() {
            Ok(()) => true,
            Err(e) if would_block(&e) => false,
            Err(e) => return Err(Error::io("lock", dir.join(WRITERS_LOCK), e)),
        };
        let opened = open(alone);
        if opened.is_ok() {
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
        // fs2's flock(2), named in full: newer `std` has a `File::lock_shared`.
        FileExt::lock_shared(&liveness)
            .map_err(|e| Error::io("lock", dir.join(WRITERS_LOCK), e))?;
        drop(open_lock);
        Ok((
            opened?,
            Registration {
                liveness,
                mode,
                pid: std::process::id(),
            },
        ))
    }

    /// Unregisters. If this is the last writer and every writer registered
    /// since the last recovery has unregistered (nobody died mid-append, so
    /// every frame below each tail is complete), runs `vouch` first, so
    /// that the next open can skip the recovery scan. Errors only make the
    /// next open recover.
    pub(crate) fn close(self, dir: &LogDir, vouch: impl FnOnce()) {
        if std::process::id() != self.pid {
            // A copy inherited through `fork`: its lock descriptions are
            // the parent's, so "exclusive" below would prove nothing.
            return;
        }
        // `open.lock` keeps openers out while we decide.
        let Ok(open_lock) = open_lock_file(dir, OPEN_LOCK, self.mode) else {
            return;
        };
        if open_lock.lock_exclusive().is_err() {
            return;
        }
        // An unreadable count vouches for nothing; a failed write below
        // leaves the count too high, which only makes the next open recover.
        let remaining =
            registered_writers(&open_lock).map_or(UNKNOWN_WRITERS, |n| n.saturating_sub(1));
        if self.liveness.try_lock_exclusive().is_ok() {
            if remaining == 0 {
                vouch();
            }
            let _ = set_registered_writers(&open_lock, 0);
        } else {
            let _ = set_registered_writers(&open_lock, remaining);
        }
        drop(self.liveness);
        drop(open_lock);
    }
}

/// Takes the append lock of
/// [`WriterMode::SingleProcess`](crate::WriterMode::SingleProcess): held
/// while the returned file is open.
///
/// # Errors
/// [`Error::Locked`] if another process holds it.
pub(crate) fn lock_appends(dir: &LogDir, mode: u32) -> Result<File> {
    let file = open_lock_file(dir, APPEND_LOCK, mode)?;
    match file.try_lock_exclusive() {
        Ok(()) => Ok(file),
        Err(e) if would_block(&e) => Err(Error::Locked {
            path: dir.join(APPEND_LOCK),
        }),
        Err(e) => Err(Error::io("lock", dir.join(APPEND_LOCK), e)),
    }
}

/// Takes an exclusive `flock` on the lock file `name` of `dir` if nobody
/// holds it: `None` if someone does.
pub(crate) fn try_lock_exclusive(dir: &LogDir, name: &str, mode: u32) -> Result<Option<File>> {
    let file = open_lock_file(dir, name, mode)?;
    match file.try_lock_exclusive() {
        Ok(()) => Ok(Some(file)),
        Err(e) if would_block(&e) => Ok(None),
        Err(e) => Err(Error::io("lock", dir.join(name), e)),
    }
}

/// Takes a shared `flock` on the lock file `name` of `dir`, waiting for
/// it: held while the returned file is open.
pub(crate) fn lock_shared(dir: &LogDir, name: &str, mode: u32) -> Result<File> {
    let file = open_lock_file(dir, name, mode)?;
    FileExt::lock_shared(&file).map_err(|e| Error::io("lock", dir.join(name), e))?;
    Ok(file)
}

/// Takes an exclusive `flock` on the lock file `name` of `dir`, waiting for
/// it: held while the returned file is open.
pub(crate) fn lock_exclusive(dir: &LogDir, name: &str, mode: u32) -> Result<File> {
    let file = open_lock_file(dir, name, mode)?;
    file.lock_exclusive()
        .map_err(|e| Error::io("lock", dir.join(name), e))?;
    Ok(file)
}
