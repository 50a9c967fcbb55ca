//! The shared mapping of a segment: the one place that turns addresses
//! into atomics and byte slices.
//!
//! A [`Mapping`] is a `MAP_SHARED` view of a whole segment reservation. The
//! file behind it is usually shorter than the mapping; touching a page past
//! the end of the file raises `SIGBUS`. This module cannot know the file's
//! length, so every method that touches frame bytes takes the end of the
//! readable range from the caller, and the protocol code upholds the rule
//! that it never passes an end beyond the file's length (see `segment.rs`).
//!
//! Access is in the types, as memmap2 does with `Mmap` and `MmapMut`: a
//! `Mapping` only loads; stores and read-modify-writes exist only on
//! [`Writable`], which only a mapping made writable hands out, and on
//! [`Claim`], which only a `Writable` makes.
//!
//! Memory shared with other processes is only ever accessed in three ways:
//!
//! 1. Header words and frame header words are accessed as atomics
//!    (`AtomicU64`/`AtomicU32`), never as plain integers, so concurrent
//!    writers, readers and unblockers never race on them. Through a
//!    read-only (`PROT_READ`) mapping they are only ever loaded with
//!    `Ordering::Relaxed`, followed by a fence where a stronger ordering is
//!    needed: the standard library defines atomic loads on read-only memory
//!    only for relaxed loads no wider than a register ("Atomic accesses to
//!    read-only memory" in `std::sync::atomic`); stores, read-modify-writes
//!    and stronger loads may be implemented with instructions that fault.
//! 2. A frame's payload is written through a [`Claim`], which only exists
//!    after this process won the compare-and-swap that moved the frame's header
//!    word from zero to "in progress". The fetch-add on the tail word gives
//!    each frame to exactly one appender and the compare-and-swap shuts out
//!    the unblocker, so a claim is exclusive; no reader looks at payload bytes
//!    before the header is published.
//! 3. A payload is read as `&[u8]` only after an acquire load of its header
//!    word, at an offset known to be a frame boundary, showed a published
//!    data frame. Boundaries are proven by walking frames from known ones
//!    (a segment's first frame, the tail, a watermark, an entry of the
//!    boundary index); offsets a caller makes up are walked to the same way
//!    before anything is read there. Published frames are never written
//!    again by a writer or an unblocker, so the shared borrow is not
//!    aliased by their writes. The exception is recovery's torn tail; see
//!    the SAFETY comment in [`Mapping::slot`].
//!
//! The trust assumption that remains is the one every memory-mapped store
//! makes: no other program modifies the files while they are mapped.

use std::borrow::Borrow;
use std::fs::File;
use std::io;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use memmap2::{Advice, MmapOptions, MmapRaw};

use crate::format::frame::{self, Header};
use crate::format::HEADER_LEN;

#[cfg(not(all(
    target_os = "linux",
    target_endian = "little",
    target_pointer_width = "64"
)))]
compile_error!("tidelog supports 64-bit little-endian Linux only");

/// What a failed compare-and-swap reports when it could not even be tried.
/// It is never a valid header word (in progress and kind 7 at once).
pub(crate) const NOT_SWAPPABLE: u64 = u64::MAX;

/// A shared mapping of one segment's whole reservation. Loads only; see
/// [`writable`](Self::writable) for stores.
#[derive(Debug)]
pub(crate) struct Mapping {
    raw: MmapRaw,
    writable: bool,
}

/// Store access to a mapping that was made writable: the only way to store
/// into shared memory or read-modify-write it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Writable<'a> {
    map: &'a Mapping,
}

/// A header word of a mapping, borrowed for a futex call: nothing outside
/// `sys` can load or store through it.
#[cfg(feature = "async")]
#[derive(Debug, Clone, Copy)]
pub(crate) struct FutexWord<'a>(pub(super) &'a AtomicU32);

/// Proof that this process owns an in-progress data frame of `map`: its
/// header word holds the in-progress marker this process stored by
/// compare-and-swap through a [`Writable`]. Not `Clone`: one claim per won
/// compare-and-swap. `M` is how the claim holds its mapping: borrowed
/// (`&Mapping`) on the append path, owned (`Arc<Mapping>`) by reservations
/// that outlive a borrow.
#[derive(Debug)]
pub(crate) struct Claim<M: Borrow<Mapping>> {
    map: M,
    off: usize,
    len: u32,
}

impl<M: Borrow<Mapping>> Claim<M> {
    /// The claim's mapping as writable: a claim is only ever made through
    /// a [`Writable`].
    fn writable(&self) -> Writable<'_> {
        Writable {
            map: self.map.borrow(),
        }
    }

    /// The payload area of the claimed frame, for reading back what this
    /// process wrote.
    #[inline]
    pub(crate) fn payload(&self) -> &[u8] {
        // SAFETY: as for `payload_mut`: the bytes belong to this claim alone
        // and lie inside the mapping; a shared borrow of `self` excludes the
        // mutable one.
        unsafe {
            std::slice::from_raw_parts(
                self.map.borrow().raw.as_ptr().add(self.off + 8),
                self.len as usize,
            )
        }
    }

    /// Turns the claim back into padding (for a reservation dropped without
    /// commit), so readers do not wait for it.
    pub(crate) fn abandon(self, position: u64) -> bool {
        let pad = (frame::frame_len(self.len) - 8) as u32;
        self.writable()
            .cas_word(
                self.off,
                frame::in_progress_word(self.len),
                frame::padding_word(position, pad),
            )
            .is_ok()
    }

    /// The payload area of the claimed frame.
    #[inline]
    pub(crate) fn payload_mut(&mut self) -> &mut [u8] {
        // SAFETY: this claim proves that this process won the zero ->
        // in-progress CAS for the frame at `off` of `map`, through a
        // `Writable`, so the mapping is writable. `Writable::claim` checked
        // that the frame lies inside the mapping and past the header page.
        // The tail fetch-add gave those bytes to one appender, and the CAS
        // from zero can be won once (no tidelog code ever stores zero into a
        // header word below a live tail; recovery, which zeroes words, runs
        // only while no writer is alive), so no other claim covers them.
        // Readers only form references to payloads behind published headers
        // at proven boundaries, and the unblocker never reads past an
        // in-progress header, so nothing else reads or writes these bytes
        // while the `&mut` borrow of `self` lives. (The one way a reader can
        // stand at a stale boundary is the exception described at
        // `Mapping::slot`: a read-only reader that outlived a restart's
        // recovery; it reads atomically at its position, and a payload it
        // might then checksum while we write it fails its CRC.) The file
        // covers them: appenders grow the file before they claim (a
        // violation would be SIGBUS, not memory unsafety).
        unsafe {
            std::slice::from_raw_parts_mut(
                self.map.borrow().raw.as_mut_ptr().add(self.off + 8),
                self.len as usize,
            )
        }
    }

    /// Publishes the frame by swapping its in-progress header for `word`.
    /// Fails if the frame was padded over by another process meanwhile,
    /// handing the (now void) claim back so that its bytes can be copied.
    #[inline]
    pub(crate) fn publish(self, word: u64) -> Result<(), Self> {
        match self
            .writable()
            .cas_word(self.off, frame::in_progress_word(self.len), word)
        {
            Ok(()) => Ok(()),
            Err(_) => Err(self),
        }
    }
}

/// What a reader finds at a frame offset.
#[derive(Debug)]
pub(crate) enum Slot<'a> {
    /// A frame without readable payload: empty, in progress, padding or end.
    Control(Header),
    /// A published data frame. The CRC has not been checked yet.
    Data {
        /// The CRC stored in the header.
        crc: u32,
        /// The payload bytes.
        payload: &'a [u8],
        /// A tagged data frame (kind 4).
        tagged: bool,
    },
}

/// Why [`Mapping::slot`] could not return a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotError {
    /// The header word is not one a writer produces.
    Malformed(crate::error::FrameDefect),
    /// The frame extends past `readable_end`.
    Beyond {
        /// Where the frame would end.
        end: usize,
    },
}

impl Mapping {
    /// Maps `len` bytes of `file`, which must have been opened for reading,
    /// and for writing too if `writable`.
    pub(crate) fn new(file: &File, len: u64, writable: bool) -> io::Result<Self> {
        if len < HEADER_LEN || usize::try_from(len).is_err() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "mapping shorter than a segment header",
            ));
        }
        let mut opts = MmapOptions::new();
        opts.len(len as usize);
        let raw = if writable {
            opts.map_raw(file)?
        } else {
            opts.map_raw_read_only(file)?
        };
        Ok(Self { raw, writable })
    }

    /// Store access, if the mapping was made writable.
    #[inline]
    pub(crate) fn writable(&self) -> Option<Writable<'_>> {
        self.writable.then_some(Writable { map: self })
    }

    /// The 8-byte word at `off`, or `None` if it is misaligned or out of the
    /// mapping. The caller must not pass an offset at or past the file's end.
    #[inline]
    fn word(&self, off: usize) -> Option<&AtomicU64> {
        if !off.is_multiple_of(8) || off.checked_add(8)? > self.raw.len() {
            return None;
        }
        // SAFETY: `off` is 8-aligned and `off + 8 <= len`, and the mapping's
        // base is page-aligned, so the pointer is in bounds and aligned for a
        // u64 for as long as `self` (and so the mapping) lives. Shared memory
        // words are only ever accessed atomically (module docs, point 1), so
        // there is no non-atomic access to race with. `from_ptr` asks for a
        // pointer valid for writes, which a read-only mapping's is not: there
        // the returned atomic is only used for relaxed loads of at most 8
        // bytes (the loads of `Mapping`), which the standard library defines
        // on read-only memory. Every store and read-modify-write is a method
        // of `Writable` (or of `Claim`, made only through one), which only a
        // writable mapping hands out.
        Some(unsafe { AtomicU64::from_ptr(self.raw.as_mut_ptr().add(off).cast::<u64>()) })
    }

    /// The header word of a frame at `off`: past the header page, aligned,
    /// inside the mapping.
    #[inline]
    fn frame_word(&self, off: usize) -> Option<&AtomicU64> {
        if off < HEADER_LEN as usize {
            return None;
        }
        self.word(off)
    }

    /// A 64-bit word of the header page (see `word`).
    #[inline]
    fn header_word_u64(&self, off: usize) -> &AtomicU64 {
        assert!(off + 8 <= HEADER_LEN as usize && off.is_multiple_of(8));
        match self.word(off) {
            Some(w) => w,
            // `new` refuses mappings shorter than the header.
            None => unreachable!("header word outside a mapping of at least HEADER_LEN"),
        }
    }

    /// A 32-bit word of the header page (for loads, stores through
    /// `Writable`, and futex calls).
    #[inline]
    fn header_word_u32(&self, off: usize) -> &AtomicU32 {
        assert!(off + 4 <= HEADER_LEN as usize && off.is_multiple_of(4));
        // SAFETY: `off + 4 <= HEADER_LEN <= len` (checked in `new`) and `off` is
        // 4-aligned, so the pointer is in bounds and aligned for as long as the
        // mapping lives; header words are only accessed atomically. On a
        // read-only mapping the atomic is only used for relaxed loads and
        // futex calls (see `word`).
        unsafe { AtomicU32::from_ptr(self.raw.as_mut_ptr().add(off).cast::<u32>()) }
    }

    /// Loads a 64-bit header word with acquire semantics: a relaxed load,
    /// then an acquire fence, which synchronises like an acquire load and
    /// is defined on read-only mappings too. (On x86-64 both are a plain
    /// `mov`.)
    #[inline]
    pub(crate) fn load_header(&self, off: usize) -> u64 {
        let v = self.header_word_u64(off).load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        v
    }

    /// Loads a 32-bit header word with acquire semantics (as
    /// [`load_header`](Self::load_header)).
    #[inline]
    pub(crate) fn load_header_u32(&self, off: usize) -> u32 {
        let v = self.header_word_u32(off).load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        v
    }

    /// Loads a 32-bit header word in the single total order of sequentially
    /// consistent operations on a writable mapping (the parking protocol
    /// needs it); on a read-only mapping, whose readers do not take part in
    /// that protocol, a relaxed load and a fence.
    #[inline]
    pub(crate) fn load_header_u32_seqcst(&self, off: usize) -> u32 {
        let w = self.header_word_u32(off);
        if self.writable {
            w.load(Ordering::SeqCst)
        } else {
            let v = w.load(Ordering::Relaxed);
            fence(Ordering::SeqCst);
            v
        }
    }

    /// Loads a 64-bit header word as
    /// [`load_header_u32_seqcst`](Self::load_header_u32_seqcst) does.
    #[inline]
    pub(crate) fn load_header_seqcst(&self, off: usize) -> u64 {
        let w = self.header_word_u64(off);
        if self.writable {
            w.load(Ordering::SeqCst)
        } else {
            let v = w.load(Ordering::Relaxed);
            fence(Ordering::SeqCst);
            v
        }
    }

    /// Loads the frame header word at `off` with acquire semantics (a
    /// relaxed load and an acquire fence, as [`load_header`](Self::load_header)).
    #[inline]
    pub(crate) fn load_word(&self, off: usize) -> Option<u64> {
        let v = self.frame_word(off)?.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        Some(v)
    }

    /// Loads the frame header word at `off` in the single total order of
    /// sequentially consistent operations (the parking protocol needs it).
    /// Only readers with write access park in that protocol; a read-only
    /// mapping gets a relaxed load and a sequentially consistent fence.
    #[inline]
    pub(crate) fn load_word_seqcst(&self, off: usize) -> Option<u64> {
        let w = self.frame_word(off)?;
        if self.writable {
            Some(w.load(Ordering::SeqCst))
        } else {
            let v = w.load(Ordering::Relaxed);
            fence(Ordering::SeqCst);
            Some(v)
        }
    }

    /// Loads the 64-bit word at `off`, anywhere in the mapping (acquire, as
    /// [`load_header`](Self::load_header)); `None` if misaligned or out of
    /// the mapping. For files that are all header, such as the cursor
    /// table.
    #[inline]
    pub(crate) fn load_at(&self, off: usize) -> Option<u64> {
        let v = self.word(off)?.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        Some(v)
    }

    /// What the frame at `off` (log position `position`) holds. A data frame's
    /// payload is only returned if it ends at or before `readable_end`, which
    /// must not exceed the file's length.
    #[inline]
    pub(crate) fn slot(
        &self,
        off: usize,
        position: u64,
        readable_end: usize,
    ) -> Result<Slot<'_>, SlotError> {
        let readable_end = readable_end.min(self.raw.len());
        if off.checked_add(8).is_none_or(|e| e > readable_end) {
            return Err(SlotError::Beyond {
                end: off.saturating_add(8),
            });
        }
        let Some(w) = self.load_word(off) else {
            return Err(SlotError::Malformed(crate::error::FrameDefect::Misaligned));
        };
        match frame::decode(w, position).map_err(SlotError::Malformed)? {
            Header::Data { len, crc, tagged } => {
                let start = off + 8;
                let end = start + len as usize;
                let frame_end = off + frame::frame_len(len) as usize;
                if frame_end > readable_end {
                    return Err(SlotError::Beyond { end: frame_end });
                }
                // SAFETY: callers pass frame boundaries only: offsets reached
                // by walking frames from a proven boundary (a segment's first
                // frame, the tail, a watermark, a boundary-index entry; see
                // `Reader::seek_to`, `recovery::walks_to`). At a boundary,
                // the load above (relaxed, then an acquire fence) saw a
                // published data header, so the writer's payload stores
                // happen-before this point (the publish CAS is a release).
                // `start..end` is inside the mapping and inside the file
                // (`frame_end <= readable_end`, which the caller keeps within
                // the file's length). Published frames are never written
                // again by a writer or an unblocker (module docs, point 3),
                // so the shared borrow is not aliased by their writes. On
                // the boot that wrote a segment, recovery never moves the end
                // of the log back below the tail (it pads torn frames), so
                // every boundary a reader holds stays one. The one exception
                // is recovery after a restart: it cuts the log at the first
                // frame it cannot prove, zeroes everything after (word by
                // word, atomic stores), and later appends reuse that space.
                // A read-only reader that opened the log on the new boot
                // before that recovery ran, and got past the cut, may then
                // stand inside a new frame, and may be checksumming a frame
                // while it is zeroed or rewritten. It sees a mix of bytes
                // that fails the CRC (the CRC covers the position), and
                // `Reader` hands out no payload before its CRC has passed; a
                // payload handed out before stays mapped (files are never
                // shrunk), only its bytes change.
                let payload = unsafe {
                    std::slice::from_raw_parts(self.raw.as_ptr().add(start), end - start)
                };
                Ok(Slot::Data {
                    crc,
                    payload,
                    tagged,
                })
            }
            h => Ok(Slot::Control(h)),
        }
    }

    /// The mapping's length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.raw.len()
    }

    /// Writes back dirty pages in `off..off + len` and waits (`msync(MS_SYNC)`).
    pub(crate) fn flush_range(&self, off: usize, len: usize) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        self.raw.flush_range(off, len)
    }

    /// The 32-bit header word at `off`, for [`futex_waitv`](super::calls::futex_waitv)
    /// only: no load or store goes through it.
    #[cfg(feature = "async")]
    pub(crate) fn futex_word(&self, off: usize) -> FutexWord<'_> {
        FutexWord(self.header_word_u32(off))
    }

    /// Parks the calling thread while the 32-bit header word at `off` still
    /// holds `expected`, for at most `timeout`. Spurious returns are allowed.
    pub(crate) fn futex_wait(&self, off: usize, expected: u32, timeout: Option<Duration>) {
        super::calls::futex_wait(self.header_word_u32(off), expected, timeout);
    }

    /// Wakes every thread, in any process, parked on the header word at `off`.
    pub(crate) fn futex_wake(&self, off: usize) {
        super::calls::futex_wake(self.header_word_u32(off));
    }

    /// As [`Writable::claim`], for a claim that owns a reference count:
    /// `Err(NOT_SWAPPABLE)` unless the mapping is writable.
    pub(crate) fn claim_owned(
        self: &Arc<Self>,
        off: usize,
        len: u32,
    ) -> Result<Claim<Arc<Mapping>>, u64> {
        self.writable().ok_or(NOT_SWAPPABLE)?.try_claim(off, len)?;
        Ok(Claim {
            map: Arc::clone(self),
            off,
            len,
        })
    }
}

impl<'a> Writable<'a> {
    /// A 64-bit header word, for stores and read-modify-writes.
    #[inline]
    pub(crate) fn header_u64(self, off: usize) -> &'a AtomicU64 {
        self.map.header_word_u64(off)
    }

    /// A 32-bit header word, for stores and read-modify-writes.
    #[inline]
    pub(crate) fn header_u32(self, off: usize) -> &'a AtomicU32 {
        self.map.header_word_u32(off)
    }

    /// The 64-bit word at `off`, anywhere in the mapping, for stores; `None`
    /// if misaligned or out of the mapping.
    #[inline]
    pub(crate) fn word_at(self, off: usize) -> Option<&'a AtomicU64> {
        self.map.word(off)
    }

    /// Compare-and-swap of the frame header word at `off` (sequentially
    /// consistent, which the wake-up protocol relies on). `Err` carries the
    /// value found, or [`NOT_SWAPPABLE`] for an offset outside the mapping
    /// (which does not happen when the caller is correct).
    #[inline]
    pub(crate) fn cas_word(self, off: usize, current: u64, new: u64) -> Result<(), u64> {
        let Some(w) = self.map.frame_word(off) else {
            return Err(NOT_SWAPPABLE);
        };
        w.compare_exchange(current, new, Ordering::SeqCst, Ordering::Acquire)
            .map(|_| ())
    }

    /// Claims the zero header word at `off` for a data frame of `len` payload
    /// bytes. `Err` carries the word found there instead of zero.
    #[inline]
    pub(crate) fn claim(self, off: usize, len: u32) -> Result<Claim<&'a Mapping>, u64> {
        self.try_claim(off, len)?;
        Ok(Claim {
            map: self.map,
            off,
            len,
        })
    }

    #[inline]
    fn try_claim(self, off: usize, len: u32) -> Result<(), u64> {
        let end = frame::frame_len(len) as usize;
        if off.checked_add(end).is_none_or(|e| e > self.map.raw.len()) {
            return Err(NOT_SWAPPABLE);
        }
        self.cas_word(off, 0, frame::in_progress_word(len))
    }

    /// Zeroes the non-zero words in `start..end` with atomic stores. Only
    /// called by recovery, while no other writer is alive, on bytes past the
    /// end of the log. Words that are already zero are not written, so the
    /// pages of a fresh region are not dirtied. Returns how many words were
    /// zeroed (stopping at the end of the mapping).
    pub(crate) fn zero_words(self, start: usize, end: usize) -> u64 {
        let mut zeroed = 0;
        let mut off = start;
        while off < end {
            let Some(w) = self.map.frame_word(off) else {
                break;
            };
            if w.load(Ordering::Relaxed) != 0 {
                w.store(0, Ordering::Relaxed);
                zeroed += 1;
            }
            off += 8;
        }
        zeroed
    }

    /// Pre-faults `off..off + len` for writing (`MADV_POPULATE_WRITE`), so
    /// that appends there do not take page faults. The range must lie inside
    /// the file.
    pub(crate) fn populate_write(self, off: usize, len: usize) -> io::Result<()> {
        self.map.raw.advise_range(Advice::PopulateWrite, off, len)
    }

    /// Locks `off..off + len` in memory (`mlock`): its pages are faulted in
    /// and stay resident until unlocked or unmapped. The range must lie
    /// inside the file (the kernel fails a range past its end).
    pub(crate) fn lock(self, off: usize, len: usize) -> io::Result<()> {
        let ptr = self.range_ptr(off, len)?;
        // SAFETY: `mlock` neither reads nor writes the memory: it changes
        // the residency of the pages of `ptr..ptr + len`, which
        // `range_ptr` checked lie inside this mapping, and the mapping
        // stays mapped while `self.map` is borrowed. Nothing Rust knows of
        // is aliased or invalidated.
        let r = unsafe { libc::mlock(ptr, len) };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Undoes [`lock`](Self::lock) for `off..off + len` (`munlock`).
    pub(crate) fn unlock(self, off: usize, len: usize) -> io::Result<()> {
        let ptr = self.range_ptr(off, len)?;
        // SAFETY: as for `lock`: `munlock` only changes the residency of
        // pages inside this mapping.
        let r = unsafe { libc::munlock(ptr, len) };
        if r == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// The address of `off` in the mapping, if `off..off + len` lies inside
    /// it.
    fn range_ptr(self, off: usize, len: usize) -> io::Result<*const libc::c_void> {
        if off.checked_add(len).is_none_or(|e| e > self.map.raw.len()) {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        // `wrapping_add` stays inside the mapping (checked above) without
        // an `unsafe` pointer offset.
        Ok(self.map.raw.as_ptr().wrapping_add(off).cast())
    }
}
