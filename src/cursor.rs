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

use crate::dir::LogDir;
use crate::error::CursorDefect;
use crate::format::cursor::{
    decode_name, encode_name, header_defect, slot_offset, FILE_NAME, GEOMETRY, MAX_NAME, SLOTS,
    SLOT_COMMIT_NANOS, SLOT_CREATED_NANOS, SLOT_LEN, SLOT_NAME, SLOT_NAME_CRC, SLOT_NAME_LEN,
    SLOT_POSITION, SLOT_STATE, STATE_FREE, STATE_LIVE,
};
use crate::sys::calls::wall_ns_coarse;
use crate::table::{Hold, TableFile};
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
    file: TableFile,
}

/// A consumer's hold on its slot: an exclusive lock on the slot's bytes
/// through a file description of its own, dropped with it.
pub(crate) type SlotLock = Hold;

impl CursorTable {
    /// Writes the table to stable storage.
    pub(crate) fn sync(&self) -> Result<()> {
        self.file.sync()
    }

    fn corrupt(&self, slot: Option<u32>, reason: CursorDefect) -> Error {
        Error::CorruptCursorTable {
            path: self.file.path(),
            slot,
            reason,
        }
    }

    /// Opens the table of the log in `dir`, creating it (fully formed,
    /// under a temporary name, then linked) if `create` and it does not
    /// exist; `Ok(None)` if it does not exist and not `create`.
    pub(crate) fn open(dir: &LogDir, mode: u32, create: bool) -> Result<Option<CursorTable>> {
        let path = dir.join(FILE_NAME);
        let file = TableFile::open(dir, FILE_NAME, &GEOMETRY, mode, create, |f| {
            Error::CorruptCursorTable {
                path: path.clone(),
                slot: None,
                reason: header_defect(f),
            }
        })?;
        Ok(file.map(|file| CursorTable { file }))
    }

    /// Opens the existing table for listing only (loads and lock probes):
    /// for a file system or files this process may not write.
    pub(crate) fn open_read_only(dir: &LogDir) -> Result<Option<CursorTable>> {
        let path = dir.join(FILE_NAME);
        let file =
            TableFile::open_read_only(dir, FILE_NAME, &GEOMETRY, |f| Error::CorruptCursorTable {
                path: path.clone(),
                slot: None,
                reason: header_defect(f),
            })?;
        Ok(file.map(|file| CursorTable { file }))
    }

    fn load(&self, slot: u32, field: u64) -> u64 {
        self.file.load(slot_offset(slot) + field)
    }

    fn store(&self, slot: u32, field: u64, v: u64) {
        self.file.store(slot_offset(slot) + field, v);
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
        let _lock = self.file.lock()?;
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
        self.file
            .hold(dir, slot_offset(slot), SLOT_LEN)?
            .ok_or_else(|| Error::ConsumerBusy {
                name: name.to_owned(),
            })
    }

    /// Whether a consumer holds `slot` now (a probe that takes nothing).
    pub(crate) fn is_held(&self, slot: u32) -> Result<bool> {
        self.file.is_held(slot_offset(slot), SLOT_LEN)
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
        let _lock = self.file.lock()?;
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
        let _lock = self.file.lock()?;
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
