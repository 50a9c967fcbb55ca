//! The log directory. Every file the library opens in it is opened relative
//! to one directory descriptor (`openat`), never through a symbolic link
//! (`O_NOFOLLOW`), never blocking in `open` (`O_NONBLOCK`), and only if it
//! is a regular file: a symlink, FIFO, socket, device or directory that
//! carries the name of a segment or a lock file is refused with
//! [`Error::NotARegularFile`]. So a directory that others can write to
//! cannot redirect the library's writes to a file outside it, nor make an
//! open hang.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use crate::sys::calls;
use crate::{Error, Result};

/// File name suffix of segment files.
const SEGMENT_SUFFIX: &str = ".tlog";

/// The file name of the segment whose base position is `base`: 16 lowercase
/// hex digits, so that names sort in log order.
pub(crate) fn file_name(base: u64) -> String {
    format!("{base:016x}{SEGMENT_SUFFIX}")
}

/// The base position a segment file name stands for, if it is one.
/// A temporary file name for building `what` before linking it under its
/// real name: unique in this process (a counter) and across processes (the
/// pid), and ignored by everything but the cleanup of stale temporaries
/// (a leading dot, a `.tmp` suffix).
pub(crate) fn temp_name(what: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(".{what}.{}.{n}.tmp", std::process::id())
}

pub(crate) fn parse_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(SEGMENT_SUFFIX)?;
    if hex.len() != 16 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// How [`LogDir::open_file`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Read only; a missing file is `Ok(None)`.
    Read,
    /// Read and write; a missing file is `Ok(None)`.
    Write,
    /// Read and write, created with this mode if missing.
    Create(u32),
    /// Read and write, created with this mode; fails if the name exists.
    CreateNew(u32),
}

/// An open log directory.
#[derive(Debug)]
pub(crate) struct LogDir {
    path: PathBuf,
    fd: File,
}

/// What a file that is not a regular file is, for the error message.
fn describe(ft: fs::FileType) -> &'static str {
    if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

impl LogDir {
    /// Opens the directory at `path` (which must exist).
    pub(crate) fn open(path: &Path) -> Result<LogDir> {
        let fd = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ENOTDIR) => Error::NotADirectory {
                    path: path.to_owned(),
                },
                Some(libc::ENOENT) => Error::NotFound {
                    path: path.to_owned(),
                },
                _ => Error::io("open log directory", path, e),
            })?;
        Ok(LogDir {
            path: path.to_owned(),
            fd,
        })
    }

    /// The directory's path, as given when it was opened.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The path of `name` in the directory, for messages.
    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Opens `name` in the directory (see the module docs). `Ok(None)` if
    /// it does not exist and `access` does not create it.
    ///
    /// # Errors
    /// [`Error::NotARegularFile`] for anything but a regular file (a
    /// symbolic link included); I/O errors, classified.
    pub(crate) fn open_file(
        &self,
        name: &str,
        access: Access,
        op: &'static str,
    ) -> Result<Option<File>> {
        let path = self.join(name);
        // Look before opening: opening a device can have side effects.
        // (The check after opening is the one that counts: the entry may
        // change in between.)
        match fs::symlink_metadata(&path) {
            Ok(m) if !m.file_type().is_file() => {
                return Err(Error::NotARegularFile {
                    path,
                    kind: describe(m.file_type()),
                })
            }
            _ => {}
        }
        let (flags, mode) = match access {
            Access::Read => (libc::O_RDONLY, 0),
            Access::Write => (libc::O_RDWR, 0),
            Access::Create(mode) => (libc::O_RDWR | libc::O_CREAT, mode),
            Access::CreateNew(mode) => (libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, mode),
        };
        let file = match calls::open_at(&self.fd, name, flags, mode) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            // ELOOP: a symlink (O_NOFOLLOW); ENXIO: a socket, or a FIFO
            // opened for writing with no reader; EISDIR: a directory opened
            // for writing.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ELOOP | libc::ENXIO | libc::EISDIR)
                ) =>
            {
                let kind = fs::symlink_metadata(&path)
                    .map_or("not a regular file", |m| describe(m.file_type()));
                return Err(Error::NotARegularFile { path, kind });
            }
            Err(e) => return Err(Error::io(op, path, e)),
        };
        let meta = file
            .metadata()
            .map_err(|e| Error::io("stat", path.clone(), e))?;
        if !meta.file_type().is_file() {
            return Err(Error::NotARegularFile {
                path,
                kind: describe(meta.file_type()),
            });
        }
        Ok(Some(file))
    }

    /// Opens `name`, which `access` creates if missing.
    pub(crate) fn create_file(&self, name: &str, access: Access, op: &'static str) -> Result<File> {
        debug_assert!(matches!(access, Access::Create(_) | Access::CreateNew(_)));
        self.open_file(name, access, op)?.ok_or_else(|| {
            Error::io(
                op,
                self.join(name),
                io::Error::from(io::ErrorKind::NotFound),
            )
        })
    }

    /// Hard-links `from` to `to` in the directory; `EEXIST` if `to` exists.
    pub(crate) fn link(&self, from: &str, to: &str) -> io::Result<()> {
        calls::link_at(&self.fd, from, to)
    }

    /// Removes the entry `name` (a symlink itself, never its target).
    pub(crate) fn remove(&self, name: &str) -> io::Result<()> {
        calls::unlink_at(&self.fd, name)
    }

    /// Fsyncs the directory, making entries created or removed in it durable.
    pub(crate) fn sync(&self) -> Result<()> {
        self.fd
            .sync_all()
            .map_err(|e| Error::io("sync directory", &self.path, e))
    }

    /// The names of the entries in the directory.
    pub(crate) fn names(&self) -> Result<Vec<String>> {
        let entries =
            fs::read_dir(&self.path).map_err(|e| Error::io("list log directory", &self.path, e))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list log directory", &self.path, e))?;
            if let Some(name) = entry.file_name().to_str() {
                out.push(name.to_owned());
            }
        }
        Ok(out)
    }

    /// The base positions of the segment files in the directory, ascending.
    pub(crate) fn segments(&self) -> Result<Vec<u64>> {
        let mut bases: Vec<u64> = self
            .names()?
            .iter()
            .filter_map(|n| parse_file_name(n))
            .collect();
        bases.sort_unstable();
        Ok(bases)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip() {
        for base in [0u64, 4096, 1 << 30, (1 << 62) - 4096] {
            assert_eq!(parse_file_name(&file_name(base)), Some(base));
        }
        for bad in [
            "",
            ".tlog",
            "0.tlog",
            "000000000000000G.tlog",
            "0000000000000000.tlo",
            "0000000000000000.tlog.tmp",
            "000000000000000A.tlog",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }
}
