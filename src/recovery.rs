//! Recovery: what a process that opens the log for writing while no other
//! writer is alive does to make it whole, specified in `docs/FORMAT.md`
//! ("Recovery").
//!
//! 1. [`need`]: for each segment, oldest first, whether it needs recovery,
//!    and by which rules: those of a process crash (the segment was last
//!    written on this boot: the page cache holds everything written) or
//!    those of a restart (another boot: unsynced pages may be lost).
//! 2. [`recover`]: for each segment that needs it, a walk from a proven
//!    start (`checked` on this boot, `flushed` after a restart), keeping
//!    valid frames, padding dead writers' holes (this boot) or cutting at
//!    the first frame it cannot prove (after a restart; later segments are
//!    then removed), resuming after damage only at proven boundaries.
//! 3. The repair is synced before the words that vouch for it are stored
//!    ([`Shared::settle`]) and synced in turn.

use std::io;
use std::sync::Arc;

use crate::boot::BootId;
use crate::dir::{file_name, LogDir};
use crate::format::frame::{self, Header};
use crate::format::header::MAX_POSITION;
use crate::format::{FRAME_HEADER_LEN, HEADER_LEN};
use crate::protocol::Shared;
use crate::segment::Segment;
use crate::sys::map::Slot;
use crate::{Error, Result};

/// What recovery did when the log was opened for writing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Whether recovery ran (it runs when no other writer is alive and the
    /// last writer did not close cleanly).
    pub ran: bool,
    /// Segments scanned.
    pub segments_scanned: u64,
    /// Holes left by writers that died between reserving and publishing,
    /// turned into padding.
    pub holes_padded: u64,
    /// Bytes of torn, unpublished frames at the end of the log: reserved
    /// space past the last valid frame. On the boot that wrote them they
    /// are padded over, so that the end of the log (and every position a
    /// reader holds) does not move back; after a restart they are cut.
    /// (When the tail word itself was damaged, or after a restart, so that
    /// nothing trusted says what was reserved: the non-zero bytes zeroed
    /// past the end of the log.)
    pub bytes_cut: u64,
    /// Damaged frames left in place between valid ones; readers report them
    /// as errors at their positions.
    pub damaged_frames: u64,
    /// The machine restarted since a segment was last written (its boot id
    /// differs), so unsynced pages may have been lost: recovery kept what
    /// it could prove from the durable watermark on, up to the first frame
    /// it could not, so that what survives is a prefix of the log.
    pub after_restart: bool,
    /// Segments removed because an earlier one was cut short after a
    /// restart: their records could not belong to the surviving prefix
    /// (none of them had been flushed).
    pub segments_removed: u64,
    /// Durable consumers whose committed position lay past the end of the
    /// recovered log (after a power cut, a commit may reach the disk while
    /// the records it passed did not) and now resume at its end.
    pub consumers_moved_back: u64,
}

/// What recovery must do with a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Need {
    /// Nothing: the segment is complete and verified.
    Nothing,
    /// Recover by the rules of a process crash: the page cache is intact.
    SameBoot,
    /// Recover by the rules of a restart: unsynced pages may be lost.
    Restart,
}

/// What recovery found and did in one segment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Recovery {
    /// File offset just past the last valid frame.
    pub end: u64,
    /// The segment ends in an end-of-segment frame.
    pub sealed: bool,
    /// Holes left by dead writers, turned into padding.
    pub holes_padded: u64,
    /// Bytes of torn frames padded (this boot) or cut (after a restart).
    pub bytes_cut: u64,
    /// Damaged frames left in place between valid ones.
    pub damaged: u64,
    /// The rules of a restart applied (the segment was last written in
    /// another boot).
    pub restarted: bool,
    /// The later segments were removed: this one was cut short after a
    /// restart, and what followed could not belong to a prefix.
    pub removed_later: bool,
}

/// Recovers every segment of the log that needs it, oldest first. `segs`
/// are all the log's segments, opened for writing, oldest first; the ones
/// removed after a cut (see [`recover`]) are dropped from it. Only called
/// while no other writer of the log is alive.
///
/// Every segment is looked at, not only the newest ones: an older segment
/// can need recovery while a newer one is clean (a header page older than
/// its data, a stale sealed bit), and one must not hide the other.
pub(crate) fn recover_log(
    dir: &LogDir,
    segs: &mut Vec<Arc<Segment>>,
    boot: BootId,
) -> Result<RecoveryReport> {
    crate::trace::trace_span!("tidelog.recover", dir = %dir.path().display());
    let mut report = RecoveryReport::default();
    let mut i = 0;
    while i < segs.len() {
        let last = i + 1 == segs.len();
        let seg = Arc::clone(&segs[i]);
        let need = need(&seg, last, boot);
        if need != Need::Nothing {
            let later: Vec<u64> = segs[i + 1..].iter().map(|s| s.base()).collect();
            // A cut after a restart: the later segments cannot be part of
            // the surviving prefix. Newest first, so that a crash midway
            // leaves no gap.
            let mut remove_later = || -> Result<()> {
                for &b in later.iter().rev() {
                    let name = file_name(b);
                    match dir.remove(&name) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(Error::io("remove segment", dir.join(&name), e)),
                    }
                }
                dir.sync()
            };
            let r = recover(&seg, last, need == Need::Restart, boot, &mut remove_later)?;
            report.ran = true;
            report.segments_scanned += 1;
            report.holes_padded += r.holes_padded;
            report.bytes_cut += r.bytes_cut;
            report.damaged_frames += r.damaged;
            report.after_restart |= r.restarted;
            if r.removed_later {
                report.segments_removed += later.len() as u64;
                segs.truncate(i + 1);
            }
        }
        i += 1;
    }
    Ok(report)
}

/// What recovery must do with this segment, for a process that opens
/// the log for writing while no other writer is alive, in the boot
/// `boot`. `last`: whether this is the newest segment.
pub(crate) fn need(seg: &Segment, last: bool, boot: BootId) -> Need {
    let sh = seg.shared();
    if !boot.is_known() || sh.boot_id() != boot {
        // Written in another boot (or this boot is unknown): whatever
        // was not on disk then may be lost, in any pattern, and only
        // the durable watermark vouches for anything.
        let complete = sh.flushed() == seg.capacity() && sh.is_sealed();
        return if complete {
            Need::Nothing
        } else {
            Need::Restart
        };
    }
    if needs_recovery(seg, last) {
        Need::SameBoot
    } else {
        Need::Nothing
    }
}

/// Whether recovery must scan this segment, judged by the rules of the
/// boot that wrote it (its page cache is intact): frames past the
/// `checked` watermark have not been verified since they were written,
/// a writer left a hole it could not pad, the tail word is
/// implausible, or the sealed state contradicts the rest.
pub(crate) fn needs_recovery(seg: &Segment, last: bool) -> bool {
    let sh = seg.shared();
    let tail = sh.tail();
    // Writers overshoot the capacity by what they reserve at once, far
    // less than this; a tail near the top of the range would wrap
    // around on the next `fetch_add`.
    if tail < HEADER_LEN || !tail.is_multiple_of(FRAME_HEADER_LEN) || tail > MAX_POSITION {
        return true;
    }
    if sh.is_dirty() {
        return true;
    }
    if sh.is_sealed() {
        // The appender that seals a segment moved the tail past the
        // data limit first: a sealed bit on a segment that nobody
        // filled is stale, and has no end frame for readers to follow.
        if tail <= seg.data_limit() {
            return true;
        }
    } else if !last {
        // An older segment is sealed before its successor is used.
        return true;
    }
    let checked = sh.checked();
    if checked != sh.reserved_end() {
        return true;
    }
    // Appends go at `tail`: the word there must be unwritten.
    let end = tail.saturating_add(FRAME_HEADER_LEN);
    end <= seg.capacity() && end <= seg.known_len() && sh.load_word(tail) != Some(0)
}

/// Scans the segment and repairs it. Only called while no other writer
/// of the log is alive.
///
/// The walk starts at a point already proven: after a process crash
/// (`restart` false; the page cache holds everything written), the
/// `checked` watermark; after a restart, the durable `flushed`
/// watermark. Either counts only if it equals the tail or a walk from
/// a boundary the index records reaches it exactly; otherwise the walk
/// starts at the first frame. From there, valid frames (data with a
/// matching CRC, padding, end) are kept.
///
/// After a process crash, writers only reserve below the tail word, so
/// holes are looked for there: an empty header (a writer reserved and
/// died before claiming: its whole range is still zero) or an
/// in-progress one (its extent is in the header). They become padding
/// when a valid frame follows them, so that every acknowledged record
/// is kept, and are cut as the torn tail otherwise. A data frame that
/// fails its CRC, or a malformed header, below the tail is damage: the
/// walk resumes at the next boundary the index records, and the
/// damage stays in place for readers to report at its position. No
/// boundary is guessed from bytes: a payload may hold anything,
/// including frames that would pass their CRC. If the index records no
/// boundary after the damage, nothing past it is cut.
///
/// After a restart, unsynced pages may have been lost in any pattern,
/// so the first frame past the durable watermark that is not valid
/// ends the log: what survives is a prefix. If this is not the newest
/// segment and it does not end complete, `before_cut` runs first (it
/// removes the later segments, which cannot belong to the prefix) and
/// this segment becomes the newest.
///
/// Past the tail, valid frames that follow on from the last one are
/// kept and the tail is raised over them. Everything from the end of
/// the log to the end of the file is zeroed, so that no stale byte is
/// taken for a frame later; the repair is synced, and only then are the
/// words that vouch for it (`tail`, `checked`, `flushed`, `boot_id`)
/// stored and synced.
pub(crate) fn recover(
    seg: &Segment,
    last: bool,
    restart: bool,
    boot: BootId,
    before_cut: &mut dyn FnMut() -> Result<()>,
) -> Result<Recovery> {
    let sh = seg.shared();
    let file_len = seg.file_len()?;
    let cap = seg.capacity();
    // Frames start and end on 8-byte boundaries: a file whose length is
    // not a multiple of 8 (cut short) ends in part of a word.
    let scan_end = file_len.min(cap) & !(FRAME_HEADER_LEN - 1);
    let raw_tail = sh.tail();
    let tail_plausible = raw_tail >= HEADER_LEN
        && raw_tail.is_multiple_of(FRAME_HEADER_LEN)
        && raw_tail <= MAX_POSITION;
    let (start, hole_end) = if restart {
        // Nothing past the durable point is known to be reserved: a
        // hole there may be a lost record.
        let start = proven_start(seg, sh.flushed(), None, scan_end);
        (start, start)
    } else {
        let start = proven_start(
            seg,
            sh.checked(),
            tail_plausible.then_some(raw_tail),
            scan_end,
        );
        // Holes and damage are looked for below this; past it, only a
        // run of valid frames continues the log. A tail no writer could
        // have left says nothing about where reservations end.
        let hole_end = if tail_plausible {
            raw_tail.min(scan_end)
        } else {
            scan_end
        };
        (start, hole_end)
    };
    let mut rec = Recovery {
        end: start,
        restarted: restart,
        ..Recovery::default()
    };
    let mut holes: Vec<(u64, u64)> = Vec::new();
    let mut damage: Vec<(u64, u64)> = Vec::new();
    let mut off = start;
    let mut give_up = false;
    while off + FRAME_HEADER_LEN <= scan_end {
        let pos = seg.base() + off;
        let slot = sh.slot(off, scan_end);
        let frame_end = match &slot {
            Ok(Slot::Data { payload, .. }) => off + frame::frame_len(payload.len() as u32),
            Ok(Slot::Control(h)) => off + h.frame_len(),
            Err(_) => 0,
        };
        match slot {
            Ok(Slot::Data {
                crc,
                payload,
                tagged,
            }) if frame_end <= seg.data_limit()
                && frame::check_data(pos, payload.len() as u32, crc, tagged, payload).is_ok() =>
            {
                commit_pending(sh, &mut holes, &mut damage, &mut rec);
                sh.index_note(off, frame_end);
                rec.end = frame_end;
                off = frame_end;
            }
            Ok(Slot::Control(Header::Padding { .. })) if frame_end <= cap => {
                commit_pending(sh, &mut holes, &mut damage, &mut rec);
                sh.index_note(off, frame_end);
                rec.end = frame_end;
                off = frame_end;
            }
            Ok(Slot::Control(Header::End)) => {
                commit_pending(sh, &mut holes, &mut damage, &mut rec);
                rec.end = frame_end;
                rec.sealed = true;
                break;
            }
            // Past the tail, the run of valid frames ends at anything
            // else: nobody reserved space there.
            _ if off >= hole_end => break,
            Ok(Slot::Control(Header::InProgress { .. })) if frame_end <= hole_end => {
                holes.push((off, frame_end));
                off = frame_end;
            }
            Ok(Slot::Control(Header::Empty)) => {
                // The hole runs to the next non-zero word or the tail;
                // what follows decides, as for an in-progress hole:
                // a valid frame (past the tail too) makes it padding,
                // anything else makes it the torn tail.
                let mut q = off + FRAME_HEADER_LEN;
                while q + FRAME_HEADER_LEN <= hole_end && sh.load_word(q) == Some(0) {
                    q += FRAME_HEADER_LEN;
                }
                if q + FRAME_HEADER_LEN > scan_end {
                    break;
                }
                holes.push((off, q));
                off = q;
            }
            // Damage: resume at the next proven boundary.
            _ => match sh.index_after(off, hole_end) {
                Some(q) => {
                    damage.push((off, q));
                    off = q;
                }
                None => {
                    give_up = true;
                    break;
                }
            },
        }
    }
    if !restart && tail_plausible && !rec.sealed {
        // On the boot that wrote it, the end of the log never moves back
        // below the tail: a reader in another process may stand at any
        // boundary up to it (at the position `end_position` gave it, or
        // waiting at a dead writer's hole), and appends placed there
        // again at other boundaries would put it inside a record. So
        // what lies between the last valid frame and the tail is padded
        // over, not cut: the holes and damage found (valid frames or the
        // tail follow them), then the torn frames after them.
        let pending_end = holes
            .iter()
            .chain(damage.iter())
            .map(|&(_, end)| end)
            .max()
            .unwrap_or(0);
        commit_pending(sh, &mut holes, &mut damage, &mut rec);
        if give_up {
            // Damage with no proven boundary after it below the tail:
            // kept as it is, up to the tail, for readers to report and
            // skip, rather than cut or overwritten.
            rec.damaged += 1;
            rec.end = rec.end.max(hole_end);
        } else {
            rec.end = rec.end.max(pending_end);
            if rec.end < hole_end {
                // Torn frames: reserved and never (or not completely)
                // written.
                rec.bytes_cut = hole_end - rec.end;
                sh.pad_hole(rec.end, hole_end);
                rec.end = hole_end;
            }
        }
    }
    // Otherwise (after a restart, or with a tail no writer could have
    // left, which says nothing about where reservations end), whatever
    // follows the last valid frame is the torn tail, cut below.
    if !rec.sealed && rec.end + FRAME_HEADER_LEN > cap {
        // Padded up to the very end: no room, and no need, for a marker.
        rec.sealed = true;
    }
    if !last && !rec.sealed {
        if restart {
            // The log ends here now: later segments hold no prefix.
            before_cut()?;
            rec.removed_later = true;
        } else {
            // Every acknowledged record in later segments is kept: seal
            // this one where its valid frames end.
            let end = rec.end;
            seg.grow_alone(end + FRAME_HEADER_LEN)?;
            sh.write_end_frame(end);
            rec.end = end + FRAME_HEADER_LEN;
            rec.sealed = true;
        }
    }
    let zero_to = seg.file_len()?;
    if zero_to > rec.end {
        let zeroed = sh.zero_words(rec.end, zero_to);
        if restart || !tail_plausible {
            // Nothing trusted says what was reserved: count what was
            // written.
            rec.bytes_cut = zeroed * FRAME_HEADER_LEN;
        }
    }
    sh.index_clear_above(rec.end);
    // The repair (padding, the end marker, the zeroed tail, the index)
    // reaches the disk before any word that vouches for it. Otherwise,
    // after a power loss, the zeroed pages could come back with their
    // old frames behind records appended since at the same positions.
    seg.flush_range(0, zero_to.max(rec.end))?;
    let tail = if rec.sealed { cap } else { rec.end };
    sh.settle(tail, rec.sealed, zero_to, boot);
    seg.flush_header()?;
    Ok(rec)
}

/// Where recovery may start walking: the watermark `w` if it equals the
/// (plausible) tail `tail` (the last writer to close set both, and
/// appends go there), or if a walk from a boundary the index records
/// reaches it exactly; otherwise the first frame. A watermark damaged
/// to point inside a record would make recovery take payload words for
/// frames, holes and damage.
fn proven_start(seg: &Segment, w: u64, tail: Option<u64>, scan_end: u64) -> u64 {
    if w <= HEADER_LEN || w > scan_end || !w.is_multiple_of(FRAME_HEADER_LEN) {
        return HEADER_LEN;
    }
    if tail == Some(w) || walks_to(seg, seg.shared().index_floor(w), w, scan_end) {
        w
    } else {
        HEADER_LEN
    }
}

/// Whether a walk from the boundary `from` lands exactly on `to`:
/// through valid frames (data with a matching CRC, padding), and over
/// anything else (damage at rest below a watermark, which must not
/// cost the records after it) to the next boundary the index records,
/// or to `to` itself. Ends within `scan_end` (at most the file's
/// length). Only for recovery, while no writer is alive.
fn walks_to(seg: &Segment, from: u64, to: u64, scan_end: u64) -> bool {
    let sh = seg.shared();
    let mut off = from;
    while off < to && off + FRAME_HEADER_LEN <= scan_end {
        let pos = seg.base() + off;
        let valid_end = match sh.slot(off, scan_end) {
            Ok(Slot::Data {
                crc,
                payload,
                tagged,
            }) => {
                let end = off + frame::frame_len(payload.len() as u32);
                (end <= seg.data_limit()
                    && frame::check_data(pos, payload.len() as u32, crc, tagged, payload).is_ok())
                .then_some(end)
            }
            Ok(Slot::Control(Header::Padding { len })) => {
                Some(off + frame::frame_len(len)).filter(|&e| e <= seg.capacity())
            }
            _ => None,
        };
        off = match valid_end {
            Some(end) => end,
            None => sh.index_after(off, to).unwrap_or(to),
        };
    }
    off == to
}

/// Turns the holes found so far into padding and records the damage
/// seen (valid frames follow both).
fn commit_pending(
    sh: &Shared,
    holes: &mut Vec<(u64, u64)>,
    damage: &mut Vec<(u64, u64)>,
    rec: &mut Recovery,
) {
    for (start, end) in holes.drain(..) {
        sh.pad_hole(start, end);
        rec.holes_padded += 1;
    }
    for (start, end) in damage.drain(..) {
        // An in-progress header whose extent ran past the tail is a
        // dead writer's hole; anything else is left as it is, for
        // readers to report at its position and skip to `end`.
        let word = sh.load_word(start).unwrap_or(0);
        if let Ok(Header::InProgress { .. }) = frame::decode(word, sh.base() + start) {
            sh.pad(start, end);
        } else {
            sh.index_note(start, end);
        }
        rec.damaged += 1;
    }
}
