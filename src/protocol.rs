//! The shared-memory protocol of a segment: a typed view of its header
//! words and every operation processes perform on them and on frame header
//! words. No other module names a header offset.
//!
//! - **Reserve**: `fetch_add` on the tail word ([`Writer::reserve`]), then
//!   record the reservation's end in the boundary index.
//! - **Claim** and **publish**: compare-and-swap of a frame's header word
//!   from zero to in progress, then to the final word
//!   ([`Writer::claim`], [`Claim::publish`](crate::sys::map::Claim::publish)).
//! - **Pad**: a reservation given up ([`Shared::pad_reservation`]), a dead
//!   writer's frame ([`Shared::unblock`]), recovery's holes ([`Shared::pad`]).
//! - **Seal**: the end frame of a full segment ([`Shared::seal`]).
//! - **Park** and **wake**: the `parked` flag and the `notify_seq` futex
//!   ([`Shared::park_begin`], [`Shared::park_wait`],
//!   [`Shared::wake_readers`], [`Shared::wake_all`]).
//! - The watermarks (`checked`, `flushed`), the sealed and dirty bits, the
//!   boot id and the boundary index.
//!
//! `docs/FORMAT.md` specifies all of it; this module is its one
//! implementation. Stores go through [`Writable`], which only a mapping
//! opened for writing hands out: on a read-only log every store here is
//! absent (a no-op, or `None`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::boot::BootId;
use crate::error::FrameDefect;
use crate::format::frame::{self, Header};
use crate::format::header::{
    decode_index_entry, encode_index_entry, index_entry_offset, index_shift, SegmentHeader,
    INDEX_SLOTS, OFF_BOOT_ID, OFF_CHECKED, OFF_FLUSHED, OFF_GROWN, OFF_NOTIFY_SEQ, OFF_PARKED,
    OFF_STATE, OFF_SYNCED_SEQ, OFF_SYNC_ERROR, OFF_SYNC_WAITERS, OFF_TAIL, STATE_DIRTY,
    STATE_SEALED,
};
use crate::format::{FRAME_HEADER_LEN, HEADER_LEN};
use crate::sys::map::{Claim, Mapping, Slot, SlotError, Writable};
use crate::{Error, Position, Result};

/// A segment's shared memory: its mapping, seen through the protocol.
#[derive(Debug)]
pub(crate) struct Shared {
    map: Arc<Mapping>,
    base: u64,
    capacity: u64,
    /// The boundary index's stride, a power of two (from the capacity).
    index_shift: u32,
}

/// Store access to a segment's shared memory, checked once: what an
/// appender uses on its hot path (a read-only log has none).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Writer<'a> {
    sh: &'a Shared,
    w: Writable<'a>,
}

impl<'a> Writer<'a> {
    /// Reserves `flen` bytes of frames: the offset of the reservation. The
    /// range is this caller's alone; it may run past the data limit (see
    /// the publication protocol).
    #[inline]
    pub(crate) fn reserve(self, flen: u64) -> u64 {
        // Release: the appender's `busy` word (see `owners`) is stored
        // before, and a reader that sees this reservation in the tail
        // must see that store.
        self.w
            .header_u64(OFF_TAIL)
            .fetch_add(flen, Ordering::Release)
    }

    /// Claims the frame at `off` for a record of `len` bytes (step 3 of
    /// the publication protocol); `None` if another process padded it
    /// over.
    #[inline]
    pub(crate) fn claim(self, off: u64, len: u32) -> Option<Claim<&'a Mapping>> {
        self.w.claim(off as usize, len).ok()
    }

    /// Records in the boundary index that `end` is a frame boundary (see
    /// [`Shared::index_note`]).
    #[inline]
    pub(crate) fn index_note(self, off: u64, end: u64) {
        if end >> self.sh.index_shift > off >> self.sh.index_shift {
            self.sh.index_note_marks(self.w, off, end);
        }
    }

    /// Wakes readers parked on the segment (see [`Shared::wake_readers`]).
    #[inline]
    pub(crate) fn wake_readers(self) {
        let parked = self.w.header_u32(OFF_PARKED);
        if parked.load(Ordering::SeqCst) != 0 && parked.swap(0, Ordering::SeqCst) != 0 {
            self.sh.wake_all();
        }
    }

    /// Pads the frame of `flen` bytes at `off`, reserved by this caller and
    /// not claimed, so that readers do not wait for it. `false` if it was
    /// not zero (another process padded it first).
    pub(crate) fn pad_reservation(self, off: u64, flen: u64) -> bool {
        let word = frame::padding_word(self.sh.base + off, (flen - FRAME_HEADER_LEN) as u32);
        self.w.cas_word(off as usize, 0, word).is_ok()
    }
}

impl Shared {
    pub(crate) fn new(map: Arc<Mapping>, header: &SegmentHeader) -> Self {
        Self {
            map,
            base: header.base,
            capacity: header.capacity,
            index_shift: index_shift(header.capacity),
        }
    }

    #[inline]
    fn w(&self) -> Option<Writable<'_>> {
        self.map.writable()
    }

    /// Store access, checked once; `None` for a read-only mapping.
    #[inline]
    pub(crate) fn writer(&self) -> Option<Writer<'_>> {
        Some(Writer {
            sh: self,
            w: self.map.writable()?,
        })
    }

    /// Whether this process may store into the segment.
    #[inline]
    pub(crate) fn is_writable(&self) -> bool {
        self.w().is_some()
    }

    /// The mapping (for flushing).
    pub(crate) fn mapping(&self) -> &Mapping {
        &self.map
    }

    /// Log position of file offset 0.
    #[inline]
    pub(crate) fn base(&self) -> u64 {
        self.base
    }

    /// The mapping length: no frame extends past it.
    #[inline]
    pub(crate) fn capacity(&self) -> u64 {
        self.capacity
    }

    /// The last offset at which a data frame may end: room is always left
    /// for the end-of-segment frame.
    #[inline]
    pub(crate) fn data_limit(&self) -> u64 {
        self.capacity - FRAME_HEADER_LEN
    }

    // The tail and the state.

    /// The tail word as it is now (acquire semantics; any mapping).
    #[inline]
    pub(crate) fn tail(&self) -> u64 {
        self.map.load_header(OFF_TAIL)
    }

    /// The reserved part of the segment: the tail clamped to the capacity.
    #[inline]
    pub(crate) fn reserved_end(&self) -> u64 {
        self.tail().clamp(HEADER_LEN, self.capacity)
    }

    /// The `state` word: [`STATE_SEALED`], [`STATE_DIRTY`].
    pub(crate) fn state(&self) -> u64 {
        self.map.load_header(OFF_STATE)
    }

    /// Whether the sealed bit is set.
    pub(crate) fn is_sealed(&self) -> bool {
        self.state() & STATE_SEALED != 0
    }

    /// Whether the dirty bit is set.
    pub(crate) fn is_dirty(&self) -> bool {
        self.state() & STATE_DIRTY != 0
    }

    /// Marks the segment dirty: a writer left a hole it could not pad, so
    /// no close may vouch for it (writable mappings only).
    pub(crate) fn mark_dirty(&self) {
        if let Some(w) = self.w() {
            w.header_u64(OFF_STATE)
                .fetch_or(STATE_DIRTY, Ordering::AcqRel);
        }
    }

    // The watermarks and the boot id.

    /// The `checked` watermark: every frame below it is complete (no hole,
    /// no frame in progress). Trusted only in the boot that wrote it.
    pub(crate) fn checked(&self) -> u64 {
        self.map.load_header(OFF_CHECKED)
    }

    /// Records that every frame below the tail has been verified: called
    /// by the last writer to close when no writer died since the last
    /// recovery. It vouches for the page cache, not the disk, and so only
    /// for the boot in the segment's `boot_id`: after a restart only
    /// `flushed` is trusted.
    pub(crate) fn mark_checked(&self) {
        if let Some(w) = self.w() {
            if !self.is_dirty() {
                w.header_u64(OFF_CHECKED)
                    .store(self.reserved_end(), Ordering::Release);
            }
        }
    }

    /// The durable watermark: every frame below it is complete and was on
    /// stable storage before the word was stored.
    pub(crate) fn flushed(&self) -> u64 {
        self.map.load_header(OFF_FLUSHED)
    }

    // Group commit (see `durability`).

    /// The `synced_seq` futex word as it is now.
    pub(crate) fn synced_seq(&self) -> u32 {
        self.map.load_header_u32_seqcst(OFF_SYNCED_SEQ)
    }

    /// Sleeps while `synced_seq` still holds `seq`, for at most `timeout`:
    /// an appender waiting for another process's sync.
    pub(crate) fn synced_wait(&self, seq: u32, timeout: Duration) {
        self.map.futex_wait(OFF_SYNCED_SEQ, seq, Some(timeout));
    }

    /// Says that a process waits for another's sync (the `sync_waiters`
    /// flag), before it re-checks `flushed` and sleeps: with the leader's
    /// raise-then-load order this is the parking protocol's Dekker pattern.
    pub(crate) fn announce_sync_waiter(&self) {
        if let Some(w) = self.w() {
            let flag = w.header_u32(OFF_SYNC_WAITERS);
            if flag.load(Ordering::SeqCst) == 0 {
                flag.store(1, Ordering::SeqCst);
            }
        }
    }

    /// The `flushed` watermark in the total order of the waiting protocol.
    pub(crate) fn flushed_seqcst(&self) -> u64 {
        self.map.load_header_seqcst(OFF_FLUSHED)
    }

    /// After a sync that made everything below `to` durable: raises
    /// `flushed`, clears the pending `errno` of an earlier failure (its
    /// pages were written again), and, if anyone announced a wait, bumps
    /// `synced_seq` and wakes every waiter.
    ///
    /// `clean`: the sync succeeded at its first try. If not, an `errno` is
    /// left pending (same generation: no waiter fails), so that the next
    /// leader makes its pages dirty again before syncing.
    pub(crate) fn publish_synced(&self, to: u64, clean: bool) {
        let Some(w) = self.w() else {
            return;
        };
        if self.flushed() < to {
            w.header_u64(OFF_FLUSHED).fetch_max(to, Ordering::SeqCst);
        }
        let e = self.sync_error();
        let want = if clean {
            e & !0xFFFF_FFFF
        } else {
            (e & !0xFFFF_FFFF) | u64::from(libc::EIO as u32)
        };
        if e != want {
            let _ = w.header_u64(OFF_SYNC_ERROR).compare_exchange(
                e,
                want,
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
        let waiters = w.header_u32(OFF_SYNC_WAITERS);
        if waiters.load(Ordering::SeqCst) != 0 && waiters.swap(0, Ordering::SeqCst) != 0 {
            w.header_u32(OFF_SYNCED_SEQ).fetch_add(1, Ordering::SeqCst);
            self.map.futex_wake(OFF_SYNCED_SEQ);
        }
    }

    /// The `sync_error` word: the generation of the last failed sync (high
    /// 32 bits) and its `errno` while its pages are still to be written
    /// again (low 32 bits).
    pub(crate) fn sync_error(&self) -> u64 {
        self.map.load_header(OFF_SYNC_ERROR)
    }

    /// Records a failed sync (a new generation with its `errno`) and wakes
    /// every waiter, which reports it.
    pub(crate) fn publish_sync_error(&self, errno: i32) {
        let Some(w) = self.w() else {
            return;
        };
        let errno = u64::from(errno.max(1) as u32);
        let word = w.header_u64(OFF_SYNC_ERROR);
        let mut cur = word.load(Ordering::Acquire);
        loop {
            let next = ((cur >> 32).wrapping_add(1) << 32) | errno;
            match word.compare_exchange(cur, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(found) => cur = found,
            }
        }
        w.header_u32(OFF_SYNCED_SEQ).fetch_add(1, Ordering::SeqCst);
        self.map.futex_wake(OFF_SYNCED_SEQ);
    }

    /// The boot the segment was last opened for writing in.
    pub(crate) fn boot_id(&self) -> BootId {
        BootId([
            self.map.load_header(OFF_BOOT_ID),
            self.map.load_header(OFF_BOOT_ID + 8),
        ])
    }

    /// Records that the segment may be written in the boot `boot` (writable
    /// mappings only). Called before anything is written to it in that
    /// boot, by a process that is alone (so nothing was written in it in
    /// this boot yet if the id changes).
    pub(crate) fn stamp_boot(&self, boot: BootId) {
        if let Some(w) = self.w() {
            if self.boot_id() != boot {
                w.header_u64(OFF_BOOT_ID)
                    .store(boot.0[0], Ordering::Release);
                w.header_u64(OFF_BOOT_ID + 8)
                    .store(boot.0[1], Ordering::Release);
            }
        }
    }

    /// The `grown` hint: a length the file is known to have had. Decides
    /// when to ask `fstat`; never trusted as a length.
    pub(crate) fn grown(&self) -> u64 {
        self.map.load_header(OFF_GROWN)
    }

    /// Raises the `grown` hint to `len` (writable mappings only). Loads
    /// first: a read-modify-write that changes nothing still writes the
    /// header page (x86 `lock cmpxchg` always stores), which would make
    /// every flush write it back.
    pub(crate) fn raise_grown(&self, len: u64) {
        if let Some(w) = self.w() {
            if self.grown() < len {
                w.header_u64(OFF_GROWN).fetch_max(len, Ordering::AcqRel);
            }
        }
    }

    /// Recovery's last word on the segment, once its repair is durable:
    /// the tail, the sealed bit, the dirty bit cleared, both watermarks at
    /// the tail (everything below it is complete and synced), the `grown`
    /// hint at the file's real length (only this process writes), and the
    /// boot. Writable mappings only.
    pub(crate) fn settle(&self, tail: u64, sealed: bool, file_len: u64, boot: BootId) {
        let Some(w) = self.w() else {
            return;
        };
        w.header_u64(OFF_TAIL).store(tail, Ordering::Release);
        let state = w.header_u64(OFF_STATE);
        if sealed {
            state.fetch_or(STATE_SEALED, Ordering::AcqRel);
        } else {
            state.fetch_and(!STATE_SEALED, Ordering::AcqRel);
        }
        state.fetch_and(!STATE_DIRTY, Ordering::AcqRel);
        w.header_u64(OFF_CHECKED).store(tail, Ordering::Release);
        w.header_u64(OFF_FLUSHED).store(tail, Ordering::Release);
        w.header_u64(OFF_GROWN).store(file_len, Ordering::Release);
        self.stamp_boot(boot);
    }

    // Frames.

    /// Loads the frame header word at `off` (acquire).
    #[inline]
    pub(crate) fn load_word(&self, off: u64) -> Option<u64> {
        self.map.load_word(off as usize)
    }

    /// What the frame at `off` holds (see [`Mapping::slot`]); `readable_end`
    /// must not exceed the file's length.
    #[inline]
    pub(crate) fn slot(&self, off: u64, readable_end: u64) -> Result<Slot<'_>, SlotError> {
        self.map
            .slot(off as usize, self.base + off, readable_end as usize)
    }

    /// As [`Writer::claim`], for a claim that outlives a borrow.
    pub(crate) fn claim_owned(&self, off: u64, len: u32) -> Option<Claim<Arc<Mapping>>> {
        self.map.claim_owned(off as usize, len).ok()
    }

    /// Pads the frame of `flen` bytes at `off`, reserved by this caller and
    /// not claimed, so that readers do not wait for it. `false` if it was
    /// not zero (another process padded it first).
    pub(crate) fn pad_reservation(&self, off: u64, flen: u64) -> bool {
        self.writer().is_some_and(|w| w.pad_reservation(off, flen))
    }

    /// Publishes the end frame at `off`, the offset of the reservation that
    /// crossed the data limit, and sets the sealed bit.
    pub(crate) fn seal(&self, off: u64) {
        if let Some(w) = self.w() {
            let _ = w.cas_word(off as usize, 0, frame::end_word(self.base + off));
            w.header_u64(OFF_STATE)
                .fetch_or(STATE_SEALED, Ordering::AcqRel);
        }
    }

    /// Recovery: places an end frame at `off`, whatever the word held.
    pub(crate) fn write_end_frame(&self, off: u64) {
        if let Some(w) = self.w() {
            w.zero_words(off as usize, (off + FRAME_HEADER_LEN) as usize);
            let _ = w.cas_word(off as usize, 0, frame::end_word(self.base + off));
        }
    }

    /// Recovery: covers `start..end` with padding frames (as many as the
    /// 28-bit length field needs), recording them in the index. Only for
    /// areas no live writer owns.
    pub(crate) fn pad(&self, start: u64, end: u64) {
        let Some(w) = self.w() else {
            return;
        };
        let mut at = start;
        while at + FRAME_HEADER_LEN <= end {
            let len = (end - at - FRAME_HEADER_LEN).min(u64::from(frame::MAX_PADDING)) as u32;
            let word = frame::padding_word(self.base + at, len);
            if let Some(current) = self.map.load_word(at as usize) {
                let _ = w.cas_word(at as usize, current, word);
            }
            let next = at + frame::frame_len(len);
            self.index_note(at, next);
            at = next;
        }
    }

    /// Recovery: covers a hole `start..end` with padding as a reader that
    /// passed over part of it may have seen it: each zero word becomes an
    /// 8-byte padding frame and each in-progress frame that fits becomes
    /// padding of its own extent, so that every offset where a read-only
    /// reader stopped (it passes dead owners' holes word by word, or
    /// frame by frame) stays a frame boundary. Anything else from there on
    /// is covered as [`pad`](Self::pad) does.
    pub(crate) fn pad_hole(&self, start: u64, end: u64) {
        if self.w().is_none() {
            return;
        }
        let mut at = start;
        while at + FRAME_HEADER_LEN <= end {
            let word = self.map.load_word(at as usize).unwrap_or(u64::MAX);
            let next = match frame::decode(word, self.base + at) {
                Ok(Header::Empty) => at + FRAME_HEADER_LEN,
                Ok(Header::InProgress { len }) if at + frame::frame_len(len) <= end => {
                    at + frame::frame_len(len)
                }
                _ => {
                    self.pad(at, end);
                    return;
                }
            };
            self.pad(at, next);
            at = next;
        }
    }

    /// Recovery: zeroes every non-zero word in `start..end`; returns how
    /// many there were (0 for a read-only mapping).
    pub(crate) fn zero_words(&self, start: u64, end: u64) -> u64 {
        self.w()
            .map_or(0, |w| w.zero_words(start as usize, end as usize))
    }

    /// Pre-faults `off..off + len` for writing (see
    /// [`Writable::populate_write`]); `Ok` and nothing done on a read-only
    /// mapping.
    pub(crate) fn populate_write(&self, off: u64, len: u64) -> std::io::Result<()> {
        match self.w() {
            Some(w) => w.populate_write(off as usize, len as usize),
            None => Ok(()),
        }
    }

    /// Locks `off..off + len` in memory (see [`Writable::lock`]); `Ok` and
    /// nothing done on a read-only mapping.
    pub(crate) fn lock_range(&self, off: u64, len: u64) -> std::io::Result<()> {
        match self.w() {
            Some(w) => w.lock(off as usize, len as usize),
            None => Ok(()),
        }
    }

    /// Unlocks `off..off + len` (see [`Writable::unlock`]).
    pub(crate) fn unlock_range(&self, off: u64, len: u64) -> std::io::Result<()> {
        match self.w() {
            Some(w) => w.unlock(off as usize, len as usize),
            None => Ok(()),
        }
    }

    /// The unblocker's action, for a frame at `off` whose writer is presumed
    /// dead (a reader saw `header` there, reserved, for longer than the
    /// unblock timeout): pads it over by compare-and-swap, so that readers
    /// move on.
    ///
    /// - An in-progress frame (its writer claimed it): its header is
    ///   swapped for a padding header of the same length.
    /// - An empty frame (its writer reserved and never claimed): every zero
    ///   word from here up to the first non-zero word, or the tail, becomes
    ///   an 8-byte padding frame, one compare-and-swap each, in order. A
    ///   word a writer claims first stops the run. `grow` makes the file
    ///   cover an offset (its writer may have died before growing it): a
    ///   page at a time on a full disk is enough to get readers past.
    ///
    /// A writer that was only slow loses its compare-and-swap (its claim or
    /// its publish) and appends its record again at a new position, so a
    /// record is never lost and never published into padding. Returns
    /// whether anything was padded (and then wakes parked readers).
    pub(crate) fn unblock(
        &self,
        off: u64,
        header: Header,
        limit: u64,
        mut grow: impl FnMut(u64) -> Result<u64>,
    ) -> Result<bool> {
        let Some(w) = self.w() else {
            return Ok(false);
        };
        let position = self.base + off;
        let padded = match header {
            Header::InProgress { len } => {
                let pad = frame::frame_len(len) - FRAME_HEADER_LEN;
                if pad > u64::from(frame::MAX_PADDING) {
                    return Err(Error::CorruptFrame {
                        position: Position::from(position),
                        reason: FrameDefect::TooLongToPad,
                    });
                }
                let word = frame::padding_word(position, pad as u32);
                w.cas_word(off as usize, frame::in_progress_word(len), word)
                    .is_ok()
            }
            _ => {
                // Reservations all lie below the tail; `limit` keeps the run
                // off reservations of live appenders (see `owners`).
                let limit = self.reserved_end().min(limit);
                let mut covered = 0;
                let mut q = off;
                while q + FRAME_HEADER_LEN <= limit {
                    if q + FRAME_HEADER_LEN > covered {
                        match grow(q + FRAME_HEADER_LEN) {
                            Ok(len) => covered = len,
                            Err(_) => break,
                        }
                    }
                    let pad = frame::padding_word(self.base + q, 0);
                    if w.cas_word(q as usize, 0, pad).is_err() {
                        break;
                    }
                    q += FRAME_HEADER_LEN;
                }
                q > off
            }
        };
        if padded {
            self.wake_readers();
        }
        Ok(padded)
    }

    // Waking and parking.

    /// Wakes readers parked on this segment, if any registered since the
    /// last wake-up. The `parked` flag is cleared by the waker, not by the
    /// readers: a reader killed while parked costs one wake-up, not a system
    /// call on every append that follows.
    #[inline]
    pub(crate) fn wake_readers(&self) {
        if let Some(w) = self.writer() {
            w.wake_readers();
        }
    }

    /// Bumps the futex word and wakes every parked reader.
    pub(crate) fn wake_all(&self) {
        if let Some(w) = self.w() {
            w.header_u32(OFF_NOTIFY_SEQ).fetch_add(1, Ordering::SeqCst);
        }
        self.map.futex_wake(OFF_NOTIFY_SEQ);
    }

    /// The first half of parking: loads `notify_seq` and (on a writable
    /// mapping) sets the `parked` flag, in that order. The caller then
    /// re-checks its frame and, if still nothing, calls
    /// [`park_wait`](Self::park_wait) with the value returned. With the
    /// appender's publish-then-load-`parked` order this is Dekker's
    /// pattern: either the appender sees the flag, or the re-check sees
    /// the frame. Readers of a read-only mapping cannot set the flag; they
    /// must poll.
    pub(crate) fn park_begin(&self) -> u32 {
        let seq = self.map.load_header_u32_seqcst(OFF_NOTIFY_SEQ);
        if let Some(w) = self.w() {
            // Already set by another reader: whoever clears it wakes us
            // too, and its clearing comes after our load in the total
            // order, so after our load of `notify_seq`.
            let parked = w.header_u32(OFF_PARKED);
            if parked.load(Ordering::SeqCst) == 0 {
                parked.store(1, Ordering::SeqCst);
            }
        }
        seq
    }

    /// The `notify_seq` futex word, for a waiter that sleeps on several
    /// segments at once (the `async` feature's waiter thread).
    #[cfg(feature = "async")]
    pub(crate) fn notify_word(&self) -> crate::sys::map::FutexWord<'_> {
        self.map.futex_word(OFF_NOTIFY_SEQ)
    }

    /// `notify_seq` as it is now (see [`park_begin`](Self::park_begin)).
    #[cfg(feature = "async")]
    pub(crate) fn notify_seq(&self) -> u32 {
        self.map.load_header_u32_seqcst(OFF_NOTIFY_SEQ)
    }

    /// Sleeps while `notify_seq` still holds `seq`, for at most `timeout`.
    pub(crate) fn park_wait(&self, seq: u32, timeout: Option<Duration>) {
        self.map.futex_wait(OFF_NOTIFY_SEQ, seq, timeout);
    }

    /// Loads the frame header word at `off` in the total order of the
    /// parking protocol (see [`park_begin`](Self::park_begin)).
    pub(crate) fn load_word_seqcst(&self, off: u64) -> Option<u64> {
        self.map.load_word_seqcst(off as usize)
    }

    // The boundary index (see `format::header::index_shift`).

    /// Records in the boundary index that `end` is a frame boundary, for
    /// every mark in `off + 1 ..= end`: the reservation or frame
    /// `off..end` covers those marks, so the next frame starts at `end`.
    /// Cheap when no mark is covered, which is almost always.
    #[inline]
    pub(crate) fn index_note(&self, off: u64, end: u64) {
        if let Some(w) = self.writer() {
            w.index_note(off, end);
        }
    }

    #[cold]
    fn index_note_marks(&self, w: Writable<'_>, off: u64, end: u64) {
        let s = self.index_shift;
        for k in (off >> s) + 1..=(end >> s).min(INDEX_SLOTS) {
            let mark = k << s;
            if mark >= self.capacity {
                break;
            }
            if let Some(e) = encode_index_entry(mark, end) {
                w.header_u32(index_entry_offset(k))
                    .store(e, Ordering::Release);
            }
        }
    }

    /// The boundary the index records for mark `k`, if it is plausible.
    fn index_entry(&self, k: u64) -> Option<u64> {
        let mark = k << self.index_shift;
        let b = decode_index_entry(mark, self.map.load_header_u32(index_entry_offset(k)))?;
        (b <= self.capacity && b.is_multiple_of(FRAME_HEADER_LEN)).then_some(b)
    }

    /// The highest boundary at or below `off` that the index records, or
    /// the first frame's offset: where a walk that proves `off` starts.
    pub(crate) fn index_floor(&self, off: u64) -> u64 {
        let mut k = (off >> self.index_shift).min(INDEX_SLOTS);
        while k >= 1 {
            if let Some(b) = self.index_entry(k).filter(|&b| b <= off) {
                return b.max(HEADER_LEN);
            }
            k -= 1;
        }
        HEADER_LEN
    }

    /// The highest proven boundary at or below `off` for a reader: the
    /// index's (see [`index_floor`](Self::index_floor)), or the `checked`
    /// or `flushed` watermark (each was once the tail), whichever is
    /// higher.
    pub(crate) fn proven_floor(&self, off: u64) -> u64 {
        let tail = self.reserved_end();
        let mut best = self.index_floor(off);
        for w in [self.checked(), self.flushed()] {
            if w > best && w <= off && w <= tail && w.is_multiple_of(FRAME_HEADER_LEN) {
                best = w;
            }
        }
        best
    }

    /// Every boundary the index records below the tail, in order, after
    /// the first frame's offset: where a search by time probes.
    pub(crate) fn index_boundaries(&self) -> Vec<u64> {
        let tail = self.reserved_end();
        let mut out = vec![HEADER_LEN];
        for k in 1..=INDEX_SLOTS.min(self.capacity >> self.index_shift) {
            if let Some(b) = self.index_entry(k).filter(|&b| b < tail) {
                if b > *out.last().unwrap_or(&0) {
                    out.push(b);
                }
            }
        }
        out
    }

    /// The lowest boundary above `off` and at or below `limit` that the
    /// index records: where a reader or recovery resumes after damage at
    /// `off`, without taking any bytes in between for a frame.
    pub(crate) fn index_after(&self, off: u64, limit: u64) -> Option<u64> {
        let s = self.index_shift;
        let mut k = (off >> s) + 1;
        while k <= INDEX_SLOTS && k << s <= limit && k << s < self.capacity {
            if let Some(b) = self.index_entry(k).filter(|&b| b > off && b <= limit) {
                return Some(b);
            }
            k += 1;
        }
        None
    }

    /// The lowest proven boundary above `off` for a reader skipping damage:
    /// a boundary the index records, the `checked` or `flushed` watermark
    /// (each was once the tail), or the tail itself (clamped to the
    /// capacity: a full segment is left at its end). `None` only when `off`
    /// is at or past the tail.
    pub(crate) fn next_proven(&self, off: u64) -> Option<u64> {
        let tail = self.reserved_end();
        let mut best = self.index_after(off, tail);
        for w in [self.checked(), self.flushed(), tail] {
            if w > off && w <= tail && w.is_multiple_of(FRAME_HEADER_LEN) {
                best = Some(best.map_or(w, |b| b.min(w)));
            }
        }
        best
    }

    /// Forgets every boundary the index records above `end` (recovery, once
    /// the log ends there).
    pub(crate) fn index_clear_above(&self, end: u64) {
        let Some(w) = self.w() else {
            return;
        };
        let s = self.index_shift;
        for k in 1..=INDEX_SLOTS.min(self.capacity >> s) {
            let stale = k << s > end || self.index_entry(k).is_none_or(|b| b > end);
            let off = index_entry_offset(k);
            if stale && self.map.load_header_u32(off) != 0 {
                w.header_u32(off).store(0, Ordering::Release);
            }
        }
    }

    /// Syncs the header page.
    pub(crate) fn flush_header(&self) -> std::io::Result<()> {
        self.map.flush_range(0, HEADER_LEN as usize)
    }
}
