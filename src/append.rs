//! Appenders and the publication protocol.
//!
//! Appending a record of `n` bytes at a segment takes four steps:
//!
//! 1. **Reserve**: `fetch_add` the frame length on the segment's shared tail
//!    word. The old value is the frame's offset; the range is this
//!    appender's alone. A reservation that would cross the segment's data
//!    limit is not used: the appender whose range contains the limit writes
//!    the end-of-segment frame at its offset, and every appender that
//!    overshot moves to the next segment.
//! 2. **Cover**: make sure the file is long enough (`fallocate` in growth
//!    steps; never a shrinking `ftruncate`).
//! 3. **Claim**: compare-and-swap the frame's header word from zero to "in
//!    progress" with the length, then copy the payload.
//! 4. **Publish**: compare-and-swap the header from "in progress" to the
//!    final word, which carries the length and the CRC. This is the release
//!    that makes the payload visible to readers.
//!
//! Steps 3 and 4 are compare-and-swaps rather than stores because a frame
//! whose writer seems dead may be padded over by another process. If either
//! fails, the reservation is void and the appender starts over with a new
//! one, so a record is published exactly once and never into padding.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::format::frame;
use crate::format::header::{STATE_DIRTY, STATE_SEALED};
use crate::format::{FRAME_HEADER_LEN, HEADER_LEN};
use crate::log::Inner;
use crate::segment::Segment;
use crate::{Error, Position, Result};

/// Appends records to a log. Obtained from [`Log::appender`](crate::Log::appender).
///
/// Each thread should have its own appender; appenders in one process or in
/// many append concurrently without locks.
#[derive(Debug)]
pub struct Appender {
    log: Arc<Inner>,
    seg: Arc<Segment>,
    /// File length known to cover appends in `seg` (a private cache of the
    /// segment's, to skip its atomic on the common path).
    covered: u64,
}

impl Appender {
    pub(crate) fn new(log: Arc<Inner>) -> Self {
        let seg = log.active();
        Self {
            log,
            seg,
            covered: 0,
        }
    }

    /// Appends one record and returns its position.
    ///
    /// When this returns `Ok`, the record is in the shared page cache: it
    /// survives the crash of this process and is visible to every reader.
    /// It survives power loss after a [`flush`](crate::Log::flush).
    ///
    /// # Errors
    /// [`Error::RecordTooLarge`] if `payload` exceeds the log's limit;
    /// [`Error::NoSpace`] if the file system is full (nothing appended
    /// before is lost, and appending can resume once space is freed); I/O
    /// errors from growing or creating segment files.
    ///
    /// ```
    /// # fn main() -> Result<(), tidelog::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let log = tidelog::Log::open(dir.path())?;
    /// let mut appender = log.appender()?;
    /// let a = appender.append(b"first")?;
    /// let b = appender.append(b"second")?;
    /// assert!(a < b);
    /// # Ok(())
    /// # }
    /// ```
    pub fn append(&mut self, payload: &[u8]) -> Result<Position> {
        let max = self.log.opts.max_record_size;
        if payload.len() > max {
            return Err(Error::RecordTooLarge {
                len: payload.len(),
                max,
            });
        }
        let len = payload.len() as u32;
        let flen = frame::frame_len(len);
        loop {
            let seg = &*self.seg;
            // A record that cannot fit even an empty segment of this
            // (possibly foreign-made) capacity would roll over forever.
            if HEADER_LEN + flen > seg.data_limit() {
                return Err(Error::RecordTooLarge {
                    len: payload.len(),
                    max: (seg.data_limit() - HEADER_LEN - FRAME_HEADER_LEN) as usize,
                });
            }
            let off = seg.tail().fetch_add(flen, Ordering::Relaxed);
            let end = match off.checked_add(flen) {
                Some(end) if end <= seg.data_limit() => end,
                _ => {
                    self.roll_over(off)?;
                    continue;
                }
            };
            if off < HEADER_LEN || !off.is_multiple_of(FRAME_HEADER_LEN) {
                // Only a damaged tail word gets here; recovery repairs it.
                seg.set_state(STATE_DIRTY);
                return Err(Error::CorruptFrame {
                    position: Position::from(seg.base().saturating_add(off)),
                    reason: "the segment's tail word is not at a frame boundary",
                });
            }
            if end > self.covered {
                match seg.ensure_len(end, self.log.opts.grow_step) {
                    Ok(len) => self.covered = len,
                    Err(e) => {
                        self.abandon(off, len);
                        return Err(e);
                    }
                }
            }
            let Ok(mut claim) = seg.map().claim(off as usize, len) else {
                // Padded over before we got to it: reserve again.
                continue;
            };
            claim.payload_mut().copy_from_slice(payload);
            let position = seg.base() + off;
            let word = frame::data_word(position, payload);
            if claim.publish(word).is_ok() {
                seg.wake_readers();
                return Ok(Position::from(position));
            }
            // Unblocked while we were writing: our frame is padding now.
        }
    }

    /// Gives up a reservation at `off` that cannot be written (the file
    /// could not grow): pad it, so readers do not wait for it. Padding needs
    /// only the page holding the frame header; if even that cannot be
    /// allocated, the hole stays, the segment is marked dirty so that a
    /// clean close does not vouch for it, and the next recovery (or an
    /// unblocker) pads it.
    fn abandon(&self, off: u64, len: u32) {
        let seg = &self.seg;
        let step = crate::format::PAGE;
        if seg.ensure_len(off + FRAME_HEADER_LEN, step).is_ok() {
            let word = frame::padding_word(seg.base() + off, (frame::frame_len(len) - 8) as u32);
            if seg.map().cas_word(off as usize, 0, word).is_ok() {
                seg.wake_readers();
                return;
            }
        }
        seg.set_state(STATE_DIRTY);
    }

    /// Handles a reservation at `off` that overshot the segment's data
    /// limit: the appender whose reservation contains the limit seals the
    /// segment, then everyone moves to the next segment.
    #[cold]
    fn roll_over(&mut self, off: u64) -> Result<()> {
        let seg = Arc::clone(&self.seg);
        let mut sealing_error = None;
        if off <= seg.data_limit() {
            // Ours is the reservation that crossed the limit: the end marker
            // goes at its offset. Create the successor first, so that readers
            // following the marker find it; seal even if that fails, so they
            // are not left waiting at a hole.
            let next = self.log.next_for_appender(&seg);
            match seg.ensure_len(off + FRAME_HEADER_LEN, self.log.opts.grow_step) {
                Ok(_) => {
                    let word = frame::end_word(seg.base() + off);
                    let _ = seg.map().cas_word(off as usize, 0, word);
                    seg.set_state(STATE_SEALED);
                    seg.wake_all();
                }
                Err(e) => {
                    seg.set_state(STATE_DIRTY);
                    sealing_error = Some(e);
                }
            }
            self.seg = next?;
        } else {
            self.seg = self.log.next_for_appender(&seg)?;
        }
        self.covered = 0;
        match sealing_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The largest record this appender accepts.
    pub fn max_record_size(&self) -> usize {
        self.log.opts.max_record_size
    }
}
