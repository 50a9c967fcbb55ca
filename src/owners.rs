//! Who owns a reservation: the owner table (`owners`), which lets a reader
//! stuck at an unfinished frame tell a dead writer's hole from a live
//! writer's, at once and in any process.
//!
//! Every [`Appender`](crate::Appender) takes a slot of the table and holds an
//! open-file-description lock on it while it lives; the kernel drops the
//! lock when the appender is dropped or its process dies. Before each
//! reservation the appender stores in its slot's `busy` word a position at
//! or below the reservation's start (the end of its previous one, a past
//! value of the tail), and stores 0 once every frame of the reservation is
//! published or given up. Both are Release stores on a cache line of the
//! appender's own; the reservation itself (`fetch_add` on the tail) is a
//! Release read-modify-write.
//!
//! A reader at an unfinished frame at position `p` that it has seen below
//! the tail ([`judge`](Owners::judge)):
//!
//! 1. scans the `busy` words of the slots in use (Acquire loads);
//! 2. if a slot whose lock is held has `busy` in `1..=p`, the frame's
//!    owner may be that live appender: wait (the unblock timeout still
//!    applies);
//! 3. otherwise the owner is dead, provided the frame's word, loaded again
//!    after the scan, is unchanged. Why: the owner stored its `busy` before
//!    its `fetch_add`, and the reader saw that `fetch_add` (or a later one)
//!    in the tail it loaded, so the scan sees the owner's `busy` or a later
//!    value of it; a later value is stored only after the owner published
//!    (or padded) the frame, which the reload then sees.
//!
//! The same argument bounds how far a dead owner's empty reservation may
//! be passed over: no live appender's unclaimed reservation starts below
//! the smallest `busy` of the other slots (`limit`), so zero words below it
//! and below the tail are the dead owner's, or another dead one's.

use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::dir::LogDir;
use crate::format::owners::{
    fault_text, slot_offset, FILE_NAME, GEOMETRY, OFF_HIGH, SLOTS, SLOT_BUSY, SLOT_LEN, SLOT_PID,
    SLOT_TAKEN_NANOS,
};
use crate::sys::calls;
use crate::table::TableFile;
use crate::{Error, Result};

/// The owner table of a log, mapped.
#[derive(Debug)]
pub(crate) struct Owners {
    table: TableFile,
    /// This handle's slots, and the file description whose locks hold
    /// them (opened at the first slot taken). Locks of one description
    /// never conflict with each other, so the set, not the kernel, keeps
    /// this handle from taking a slot twice.
    held: Mutex<Held>,
    /// Where the next search for a free slot starts.
    hint: AtomicU64,
}

#[derive(Debug, Default)]
struct Held {
    file: Option<File>,
    slots: Vec<bool>,
}

/// What [`Owners::judge`] concluded about the owner of a hole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A live appender may own it.
    Alive,
    /// Its owner is dead. Zero words below `limit` (a log position) and
    /// below the tail belong to dead owners only.
    Dead { limit: u64 },
}

fn corrupt(path: std::path::PathBuf) -> impl Fn(crate::format::table::HeaderFault) -> Error {
    move |f| {
        Error::io(
            "open owner table",
            path.clone(),
            std::io::Error::new(std::io::ErrorKind::InvalidData, fault_text(f)),
        )
    }
}

impl Owners {
    /// Opens the owner table of the log in `dir`, creating it if missing.
    pub(crate) fn open(dir: &LogDir, mode: u32) -> Result<Owners> {
        let path = dir.join(FILE_NAME);
        let table = TableFile::open(dir, FILE_NAME, &GEOMETRY, mode, true, corrupt(path.clone()))?
            .ok_or_else(|| {
                Error::io(
                    "open owner table",
                    path,
                    std::io::ErrorKind::NotFound.into(),
                )
            })?;
        Ok(Self::new(table))
    }

    /// Opens the owner table of the log in `dir` for judging only: `None`
    /// if no writer has made one.
    pub(crate) fn open_read_only(dir: &LogDir) -> Result<Option<Owners>> {
        let path = dir.join(FILE_NAME);
        Ok(TableFile::open_read_only(dir, FILE_NAME, &GEOMETRY, corrupt(path))?.map(Self::new))
    }

    fn new(table: TableFile) -> Owners {
        Owners {
            table,
            held: Mutex::new(Held {
                file: None,
                slots: vec![false; SLOTS as usize],
            }),
            hint: AtomicU64::new(u64::from(std::process::id())),
        }
    }

    /// Takes a free slot for an appender: one whose lock nobody holds.
    pub(crate) fn take(self: &Arc<Self>, dir: &LogDir) -> Result<OwnerSlot> {
        let mut held = self.held.lock();
        if held.file.is_none() {
            held.file = Some(self.table.open_description(dir)?);
        }
        let start = self.hint.fetch_add(1, Ordering::Relaxed);
        for k in 0..u64::from(SLOTS) {
            let i = ((start + k) % u64::from(SLOTS)) as u32;
            if held.slots[i as usize] {
                continue;
            }
            let file = held.file.as_ref().expect("opened above");
            let locked = calls::ofd_lock(file, slot_offset(i), 1, false)
                .map_err(|e| Error::io("lock owner slot", self.table.path(), e))?;
            if !locked {
                continue;
            }
            held.slots[i as usize] = true;
            let at = slot_offset(i);
            // Ours alone now: whatever a dead owner left is stale.
            self.table.store(at + SLOT_BUSY, 0);
            self.table
                .store(at + SLOT_PID, u64::from(std::process::id()));
            self.table
                .store(at + SLOT_TAKEN_NANOS, calls::wall_ns_coarse());
            if let Some(w) = self.table.word(OFF_HIGH) {
                w.fetch_max(u64::from(i) + 1, Ordering::AcqRel);
            }
            return Ok(OwnerSlot {
                owners: Arc::clone(self),
                index: i,
            });
        }
        Err(Error::TooManyAppenders { max: SLOTS })
    }

    fn release(&self, index: u32) {
        let at = slot_offset(index);
        self.table.store(at + SLOT_BUSY, 0);
        let mut held = self.held.lock();
        if let Some(file) = &held.file {
            let _ = calls::ofd_unlock(file, at, 1);
        }
        held.slots[index as usize] = false;
    }

    /// Judges the owner of an unfinished frame at log position `position`,
    /// which the caller saw below the tail (by an Acquire load of the tail
    /// or of the frame's in-progress word) before calling. The caller must
    /// load the frame's word again afterwards and act on a `Dead` verdict
    /// only if it is unchanged (see the module docs).
    pub(crate) fn judge(&self, position: u64) -> Result<Verdict> {
        let high = self.table.load(OFF_HIGH).min(u64::from(SLOTS)) as u32;
        let mut limit = u64::MAX;
        for i in 0..high {
            let at = slot_offset(i);
            let busy = self.table.load(at + SLOT_BUSY);
            if busy == 0 {
                continue;
            }
            if busy > position {
                // Not this frame's owner. Dead or alive, no unclaimed
                // reservation of its owner starts below `busy`.
                limit = limit.min(busy);
                continue;
            }
            let alive = self.table.is_held(at, 1)? || self.held_here(i);
            if alive {
                return Ok(Verdict::Alive);
            }
        }
        Ok(Verdict::Dead { limit })
    }

    /// Whether this handle holds slot `i` (its own locks are invisible to
    /// its probes only if they share the description; they do not, but a
    /// handle never judges its own appenders dead).
    fn held_here(&self, i: u32) -> bool {
        self.held.lock().slots[i as usize]
    }
}

/// An appender's slot in the owner table, held while it lives.
#[derive(Debug)]
pub(crate) struct OwnerSlot {
    owners: Arc<Owners>,
    index: u32,
}

impl OwnerSlot {
    /// The slot's `busy` word.
    #[inline]
    fn busy(&self) -> Option<&AtomicU64> {
        self.owners.table.word(slot_offset(self.index) + SLOT_BUSY)
    }

    /// Announces a reservation about to be made at or above `floor` (a log
    /// position), before the `fetch_add` that makes it.
    #[inline]
    pub(crate) fn reserving(&self, floor: u64) {
        if let Some(w) = self.busy() {
            w.store(floor, Ordering::Release);
        }
    }

    /// Announces that every reservation of this appender is published or
    /// given up.
    #[inline]
    pub(crate) fn idle(&self) {
        if let Some(w) = self.busy() {
            w.store(0, Ordering::Release);
        }
    }
}

impl Drop for OwnerSlot {
    fn drop(&mut self) {
        self.owners.release(self.index);
    }
}

const _: () = assert!(SLOT_LEN == 64);
