//! The cursor table of a log, mapped: durable named consumers' committed
//! positions (layout in [`format::cursor`](crate::format::cursor)).
//!
//! - A **commit** is one atomic store of the position (and one of the
//!   time): visible to every process at once, and crash-atomic (an aligned
//!   8-byte word is never torn, in memory or in a sector), so after any
//!   crash a name holds its previous or its new position.
//! - **Creating, deleting and resetting** a name are rare: they hold the
//!   table lock (an open-file-description lock on byte 0 of the file, and a
//!   mutex in this process) while they write, and the slot's `state` word
//!   is stored last when creating and first when deleting, so that a crash
//!   in between leaves a free slot, never a half-written name.
//! - **One consumer per name.** A live consumer holds an exclusive
//!   open-file-description lock on its slot's bytes, on a file description
//!   of its own: the kernel drops it when the consumer is dropped or its
//!   process dies, and a second consumer of the name, in any process, is
//!   refused with [`Error::ConsumerBusy`] meanwhile.

use std::fs::File;
use std::io;
use std::sync::atomic::Ordering;

use parking_lot::Mutex;

use crate::dir::{Access, LogDir};
use crate::error::CursorDefect;
use crate::format::cursor::{
    check_header, decode_name, encode_header, encode_name, slot_offset, FILE_LEN, FILE_NAME,
    MAX_NAME, SLOTS, SLOT_COMMIT_NANOS, SLOT_CREATED_NANOS, SLOT_LEN, SLOT_NAME, SLOT_NAME_CRC,
    SLOT_NAME_LEN, SLOT_POSITION, SLOT_STATE, STATE_FREE, STATE_LIVE,
};
use crate::sys::calls::{self, wall_ns_coarse};
use crate::sys::map::Mapping;
use crate::{Error, Result};

/// A live slot, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SlotInfo {
    pub(crate) slot: u32,
    pub(crate) name: String,
    pub(crate) position: u64,
    pub(crate) commit_nanos: u64,
    pub(crate) created_nanos: u64,
}

/// An open cursor table.
#[derive(Debug)]
pub(crate) struct CursorTable {
    dir_path: std::path::PathBuf,
    file: File,
    map: Mapping,
    /// Serialises this process's create, delete and reset (the OFD lock
    /// on byte 0 excludes other processes; it does not exclude threads
    /// sharing `file`'s description).
    local: Mutex<()>,
}

/// Holds the table lock while alive.
struct TableLock<'a> {
    table: &'a CursorTable,
    _local: parking_lot::MutexGuard<'a, ()>,
}

impl Drop for TableLock<'_> {
    fn drop(&mut self) {
        let _ = calls::ofd_unlock(&self.table.file, 0, 1);
    }
}

/// A consumer's hold on its slot: an exclusive lock on the slot's bytes
/// through a file description of its own, dropped with it.
#[derive(Debug)]
pub(crate) struct SlotLock {
    _file: File,
}

impl CursorTable {
    fn path(&self) -> std::path::PathBuf {
        self.dir_path.join(FILE_NAME)
    }

    fn corrupt(&self, slot: Option<u32>, reason: CursorDefect) -> Error {
        Error::CorruptCursorTable {
            path: self.path(),
            slot,
            reason,
        }
    }

    /// Opens the table of the log in `dir`, creating it (fully formed,
    /// under a temporary name, then linked) if `create` and it does not
    /// exist; `Ok(None)` if it does not exist and not `create`.
    pub(crate) fn open(dir: &LogDir, mode: u32, create: bool) -> Result<Option<CursorTable>> {
        let path = dir.join(FILE_NAME);
        let file = match dir.open_file(FILE_NAME, Access::Write, "open cursor table")? {
            Some(f) => f,
            None if !create => return Ok(None),
            None => {
                let tmp = format!(
                    ".{FILE_NAME}.{}.{}.tmp",
                    std::process::id(),
                    wall_ns_coarse()
                );
                let built = (|| {
                    let f =
                        dir.create_file(&tmp, Access::CreateNew(mode), "create cursor table")?;
                    calls::allocate(&f, 0, FILE_LEN)
                        .map_err(|e| Error::io("grow cursor table", dir.join(&tmp), e))?;
                    use std::os::unix::fs::FileExt as _;
                    f.write_all_at(&encode_header(), 0)
                        .map_err(|e| Error::io("write cursor table", dir.join(&tmp), e))?;
                    f.sync_all()
                        .map_err(|e| Error::io("sync cursor table", dir.join(&tmp), e))?;
                    match dir.link(&tmp, FILE_NAME) {
                        Ok(()) => Ok(()),
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                        Err(e) => Err(Error::io("link cursor table", path.clone(), e)),
                    }
                })();
                let _ = dir.remove(&tmp);
                built?;
                dir.sync()?;
                dir.open_file(FILE_NAME, Access::Write, "open cursor table")?
                    .ok_or_else(|| {
                        Error::io(
                            "open cursor table",
                            path.clone(),
                            io::ErrorKind::NotFound.into(),
                        )
                    })?
            }
        };
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat cursor table", path.clone(), e))?
            .len();
        let mut head = [0u8; 28];
        use std::os::unix::fs::FileExt as _;
        let n = file
            .read_at(&mut head, 0)
            .map_err(|e| Error::io("read cursor table", path.clone(), e))?;
        let table_err = |reason| Error::CorruptCursorTable {
            path: path.clone(),
            slot: None,
            reason,
        };
        check_header(&head[..n]).map_err(table_err)?;
        if len < FILE_LEN {
            return Err(table_err(CursorDefect::Truncated));
        }
        let map = Mapping::new(&file, FILE_LEN, true)
            .map_err(|e| Error::io("map cursor table", path.clone(), e))?;
        Ok(Some(CursorTable {
            dir_path: dir.path().to_owned(),
            file,
            map,
            local: Mutex::new(()),
        }))
    }

    fn lock(&self) -> Result<TableLock<'_>> {
        let local = self.local.lock();
        calls::ofd_lock(&self.file, 0, 1, true)
            .map_err(|e| Error::io("lock cursor table", self.path(), e))?;
        Ok(TableLock {
            table: self,
            _local: local,
        })
    }

    fn load(&self, slot: u32, field: u64) -> u64 {
        self.map
            .load_at((slot_offset(slot) + field) as usize)
            .unwrap_or(0)
    }

    fn store(&self, slot: u32, field: u64, v: u64) {
        if let Some(w) = self
            .map
            .writable()
            .and_then(|w| w.word_at((slot_offset(slot) + field) as usize))
        {
            w.store(v, Ordering::Release);
        }
    }

    /// The live slot at `slot`, `None` if it is free.
    pub(crate) fn read_slot(&self, slot: u32) -> Result<Option<SlotInfo>> {
        match self.load(slot, SLOT_STATE) {
            STATE_FREE => return Ok(None),
            STATE_LIVE => {}
            _ => return Err(self.corrupt(Some(slot), CursorDefect::SlotState)),
        }
        let mut words = [0u64; MAX_NAME / 8];
        for (i, w) in words.iter_mut().enumerate() {
            *w = self.load(slot, SLOT_NAME + 8 * i as u64);
        }
        let name = decode_name(
            &words,
            self.load(slot, SLOT_NAME_LEN),
            self.load(slot, SLOT_NAME_CRC),
        )
        .map_err(|r| self.corrupt(Some(slot), r))?;
        Ok(Some(SlotInfo {
            slot,
            name,
            position: self.load(slot, SLOT_POSITION),
            commit_nanos: self.load(slot, SLOT_COMMIT_NANOS),
            created_nanos: self.load(slot, SLOT_CREATED_NANOS),
        }))
    }

    /// Every live slot, by slot number.
    pub(crate) fn list(&self) -> Result<Vec<SlotInfo>> {
        let mut out = Vec::new();
        for slot in 0..SLOTS {
            if let Some(info) = self.read_slot(slot)? {
                out.push(info);
            }
        }
        Ok(out)
    }

    /// The live slot named `name`.
    pub(crate) fn find(&self, name: &str) -> Result<Option<SlotInfo>> {
        Ok(self.list()?.into_iter().find(|s| s.name == name))
    }

    /// The slot named `name`, created with `position` if there is none.
    /// Returns it and whether it was created.
    pub(crate) fn find_or_create(&self, name: &str, position: u64) -> Result<(SlotInfo, bool)> {
        let (words, len, crc) = encode_name(name).ok_or_else(|| Error::InvalidConsumerName {
            name: name.to_owned(),
        })?;
        let _lock = self.lock()?;
        let live = self.list()?;
        if let Some(s) = live.iter().find(|s| s.name == name) {
            return Ok((s.clone(), false));
        }
        let Some(slot) = (0..SLOTS).find(|&i| self.load(i, SLOT_STATE) == STATE_FREE) else {
            return Err(Error::TooManyConsumers { max: SLOTS });
        };
        let now = wall_ns_coarse();
        for (i, w) in words.iter().enumerate() {
            self.store(slot, SLOT_NAME + 8 * i as u64, *w);
        }
        self.store(slot, SLOT_NAME_LEN, len);
        self.store(slot, SLOT_NAME_CRC, crc);
        self.store(slot, SLOT_POSITION, position);
        self.store(slot, SLOT_COMMIT_NANOS, now);
        self.store(slot, SLOT_CREATED_NANOS, now);
        // Last: until now the slot was free, whatever else it held.
        self.store(slot, SLOT_STATE, STATE_LIVE);
        Ok((
            SlotInfo {
                slot,
                name: name.to_owned(),
                position,
                commit_nanos: now,
                created_nanos: now,
            },
            true,
        ))
    }

    /// Takes the consumer's hold on `slot`, or [`Error::ConsumerBusy`].
    pub(crate) fn hold(&self, dir: &LogDir, slot: u32, name: &str) -> Result<SlotLock> {
        let file = dir
            .open_file(FILE_NAME, Access::Write, "open cursor table")?
            .ok_or_else(|| Error::ConsumerNotFound {
                name: name.to_owned(),
            })?;
        let held = calls::ofd_lock(&file, slot_offset(slot), SLOT_LEN, false)
            .map_err(|e| Error::io("lock cursor slot", self.path(), e))?;
        if !held {
            return Err(Error::ConsumerBusy {
                name: name.to_owned(),
            });
        }
        Ok(SlotLock { _file: file })
    }

    /// Whether a consumer holds `slot` now (a probe: takes and drops the
    /// slot lock on a fresh description).
    pub(crate) fn is_held(&self, dir: &LogDir, slot: u32, name: &str) -> Result<bool> {
        match self.hold(dir, slot, name) {
            Ok(_) => Ok(false),
            Err(Error::ConsumerBusy { .. }) => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Commits `position` for the consumer holding `slot`: one atomic store
    /// of the position, one of the time.
    #[inline]
    pub(crate) fn commit(&self, slot: u32, position: u64) {
        self.store(slot, SLOT_POSITION, position);
        self.store(slot, SLOT_COMMIT_NANOS, wall_ns_coarse());
    }

    /// Moves the consumer `name` (which must not be in use) to `position`.
    pub(crate) fn reset(&self, dir: &LogDir, name: &str, position: u64) -> Result<()> {
        let _lock = self.lock()?;
        let s = self.find(name)?.ok_or_else(|| Error::ConsumerNotFound {
            name: name.to_owned(),
        })?;
        let _hold = self.hold(dir, s.slot, name)?;
        self.commit(s.slot, position);
        Ok(())
    }

    /// Deletes the consumer `name` (which must not be in use): its slot is
    /// free at once (the state word first), and cleared after.
    pub(crate) fn delete(&self, dir: &LogDir, name: &str) -> Result<()> {
        let _lock = self.lock()?;
        let s = self.find(name)?.ok_or_else(|| Error::ConsumerNotFound {
            name: name.to_owned(),
        })?;
        // Held while the slot is freed; a consumer that takes the hold
        // after checks that the slot still holds its name.
        let _hold = self.hold(dir, s.slot, name)?;
        self.store(s.slot, SLOT_STATE, STATE_FREE);
        let mut field = SLOT_POSITION;
        while field < SLOT_LEN {
            self.store(s.slot, field, 0);
            field += 8;
        }
        Ok(())
    }
}
