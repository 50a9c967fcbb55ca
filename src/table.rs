//! A table file that every process of a log maps: the cursor table and the
//! group table. Created fully formed (under a temporary name, then linked),
//! mapped shared and writable, read and written only through aligned
//! 64-bit atomics; a lock on byte 0 serialises the rare changes of
//! structure (creating or deleting an entry), and locks on other byte
//! ranges, each through a file description of its own, say who is alive.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, MutexGuard};

use crate::dir::{Access, LogDir};
use crate::format::table::{check_header, encode_header, Geometry, HeaderFault};
use crate::sys::calls;
use crate::sys::map::Mapping;
use crate::{Error, Result};

/// An open table file.
#[derive(Debug)]
pub(crate) struct TableFile {
    dir_path: PathBuf,
    name: &'static str,
    file: File,
    map: Mapping,
    /// Serialises this process's changes of structure (the lock on byte 0
    /// excludes other processes; it does not exclude threads sharing
    /// `file`'s description).
    local: Mutex<()>,
    /// The last sync of this handle failed (see [`sync`](Self::sync)).
    sync_failed: std::sync::atomic::AtomicBool,
}

/// Holds the table lock while alive.
pub(crate) struct TableLock<'a> {
    file: &'a File,
    _local: MutexGuard<'a, ()>,
}

impl Drop for TableLock<'_> {
    fn drop(&mut self) {
        let _ = calls::ofd_unlock(self.file, 0, 1);
    }
}

/// A hold on a byte range of a table: an exclusive lock through a file
/// description of its own, which the kernel drops when this is dropped or
/// the process dies.
#[derive(Debug)]
pub(crate) struct Hold {
    _file: File,
}

impl TableFile {
    /// Opens the table `name` of the log in `dir`, creating it if `create`
    /// and it does not exist; `Ok(None)` if it does not exist and not
    /// `create`. `corrupt` turns a refused header into the table's error.
    pub(crate) fn open(
        dir: &LogDir,
        name: &'static str,
        geometry: &Geometry,
        mode: u32,
        create: bool,
        corrupt: impl Fn(HeaderFault) -> Error,
    ) -> Result<Option<TableFile>> {
        let path = dir.join(name);
        let op = "open table";
        let file = match dir.open_file(name, Access::Write, op)? {
            Some(f) => f,
            None if !create => return Ok(None),
            None => {
                let tmp = crate::dir::temp_name(name);
                let built = (|| {
                    let f = dir.create_file(&tmp, Access::CreateNew(mode), "create table")?;
                    calls::allocate(&f, 0, geometry.file_len())
                        .map_err(|e| Error::io("grow table", dir.join(&tmp), e))?;
                    f.write_all_at(&encode_header(geometry), 0)
                        .map_err(|e| Error::io("write table", dir.join(&tmp), e))?;
                    f.sync_all()
                        .map_err(|e| Error::io("sync table", dir.join(&tmp), e))?;
                    match dir.link(&tmp, name) {
                        Ok(()) => Ok(()),
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                        Err(e) => Err(Error::io("link table", path.clone(), e)),
                    }
                })();
                let _ = dir.remove(&tmp);
                built?;
                dir.sync()?;
                dir.open_file(name, Access::Write, op)?
                    .ok_or_else(|| Error::io(op, path.clone(), io::ErrorKind::NotFound.into()))?
            }
        };
        Self::map(dir, name, file, geometry, true, corrupt).map(Some)
    }

    /// Opens the existing table `name` of the log in `dir` for reading
    /// only (loads and lock probes; no stores): `Ok(None)` if it does not
    /// exist.
    pub(crate) fn open_read_only(
        dir: &LogDir,
        name: &'static str,
        geometry: &Geometry,
        corrupt: impl Fn(HeaderFault) -> Error,
    ) -> Result<Option<TableFile>> {
        match dir.open_file(name, Access::Read, "open table")? {
            Some(file) => Self::map(dir, name, file, geometry, false, corrupt).map(Some),
            None => Ok(None),
        }
    }

    fn map(
        dir: &LogDir,
        name: &'static str,
        file: File,
        geometry: &Geometry,
        writable: bool,
        corrupt: impl Fn(HeaderFault) -> Error,
    ) -> Result<TableFile> {
        let path = dir.join(name);
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat table", path.clone(), e))?
            .len();
        let mut head = [0u8; 28];
        let n = file
            .read_at(&mut head, 0)
            .map_err(|e| Error::io("read table", path.clone(), e))?;
        check_header(&head[..n], geometry).map_err(&corrupt)?;
        if len < geometry.file_len() {
            return Err(corrupt(HeaderFault::Truncated));
        }
        if writable {
            // A table copied sparse (or made by another program) has holes:
            // a store into one on a full disk would raise SIGBUS. Its blocks
            // are reserved now (a no-op for a table this crate made).
            calls::allocate(&file, 0, geometry.file_len())
                .map_err(|e| Error::io("allocate table", path.clone(), e))?;
        }
        let map = Mapping::new(&file, geometry.file_len(), writable)
            .map_err(|e| Error::io("map table", path.clone(), e))?;
        Ok(TableFile {
            dir_path: dir.path().to_owned(),
            name,
            file,
            map,
            local: Mutex::new(()),
            sync_failed: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The file's path.
    pub(crate) fn path(&self) -> PathBuf {
        self.dir_path.join(self.name)
    }

    /// Takes the table lock: byte 0, exclusive, waiting for it.
    pub(crate) fn lock(&self) -> Result<TableLock<'_>> {
        let local = self.local.lock();
        calls::ofd_lock(&self.file, 0, 1, true)
            .map_err(|e| Error::io("lock table", self.path(), e))?;
        Ok(TableLock {
            file: &self.file,
            _local: local,
        })
    }

    /// Writes the table's dirty pages to stable storage (`msync(MS_SYNC)`).
    ///
    /// After a failed sync Linux may mark the pages clean without writing
    /// them, and report the error only once: every page is made dirty
    /// again (an atomic `fetch_or(0)` on its first word: the table is only
    /// ever accessed through atomics, so this cannot race with anything)
    /// and synced once more; while that keeps failing, every later sync of
    /// this handle does the same first.
    pub(crate) fn sync(&self) -> Result<()> {
        if self.sync_failed.load(Ordering::Acquire) {
            self.redirty();
        }
        let first = self.map.flush_range(0, self.map.len());
        let result = match first {
            Ok(()) => Ok(()),
            Err(_) => {
                self.redirty();
                self.map.flush_range(0, self.map.len())
            }
        };
        self.sync_failed.store(result.is_err(), Ordering::Release);
        result.map_err(|e| Error::io("msync table", self.path(), e))
    }

    fn redirty(&self) {
        let mut off = 0;
        while off < self.map.len() as u64 {
            if let Some(w) = self.word(off) {
                w.fetch_or(0, Ordering::Relaxed);
            }
            off += crate::format::PAGE;
        }
    }

    /// The word at `off` (0 outside the file, which callers' offsets never
    /// are).
    #[inline]
    pub(crate) fn load(&self, off: u64) -> u64 {
        self.map.load_at(off as usize).unwrap_or(0)
    }

    /// The word at `off`, for stores and read-modify-writes.
    #[inline]
    pub(crate) fn word(&self, off: u64) -> Option<&AtomicU64> {
        self.map.writable().and_then(|w| w.word_at(off as usize))
    }

    /// Stores `v` at `off` (Release).
    #[inline]
    pub(crate) fn store(&self, off: u64, v: u64) {
        if let Some(w) = self.word(off) {
            w.store(v, Ordering::Release);
        }
    }

    /// Compare-and-swap of the word at `off`; `Err` carries the value
    /// found.
    #[inline]
    pub(crate) fn cas(&self, off: u64, current: u64, new: u64) -> std::result::Result<(), u64> {
        match self.word(off) {
            Some(w) => w
                .compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire)
                .map(|_| ()),
            None => Err(!current),
        }
    }

    /// A new open file description of this table, for locks of its own
    /// (which conflict with this handle's probes, in this process too).
    pub(crate) fn open_description(&self, dir: &LogDir) -> Result<File> {
        let file = dir
            .open_file(self.name, Access::Write, "open table")?
            .ok_or_else(|| Error::io("open table", self.path(), io::ErrorKind::NotFound.into()))?;
        // Opened by name: it must still be the file this table maps, or
        // locks would be on a file nobody probes.
        let same = |f: &File| {
            use std::os::unix::fs::MetadataExt as _;
            f.metadata().map(|m| (m.dev(), m.ino()))
        };
        let stat = |e| Error::io("stat table", self.path(), e);
        if same(&file).map_err(stat)? != same(&self.file).map_err(stat)? {
            return Err(Error::io(
                "open table",
                self.path(),
                io::Error::other("the table file was replaced while in use"),
            ));
        }
        Ok(file)
    }

    /// Takes a hold on `len` bytes at `start`: `None` if another
    /// description holds them.
    pub(crate) fn hold(&self, dir: &LogDir, start: u64, len: u64) -> Result<Option<Hold>> {
        let file = self.open_description(dir)?;
        let held = calls::ofd_lock(&file, start, len, false)
            .map_err(|e| Error::io("lock table range", self.path(), e))?;
        Ok(held.then_some(Hold { _file: file }))
    }

    /// Whether someone holds `len` bytes at `start` now (a probe that takes
    /// nothing).
    pub(crate) fn is_held(&self, start: u64, len: u64) -> Result<bool> {
        calls::ofd_probe(&self.file, start, len)
            .map_err(|e| Error::io("probe table range", self.path(), e))
    }
}
