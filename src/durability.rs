//! Durability: making what was appended survive a power cut, recording that
//! it does (the `flushed` watermark of each segment), and sharing that work
//! between every thread and process that needs it, as `docs/FORMAT.md`
//! ("Durability") specifies.
//!
//! **Group commit.** A caller that needs the log durable up to a position
//! ([`sync_to`]) first looks at the durable watermark. If it is short, the
//! caller tries to lead: a mutex inside the process, then an exclusive
//! `flock` on `sync.lock` across processes (the kernel drops it when its
//! holder dies). The leader walks every frame up to the tail as it is now,
//! waiting for each to be published, syncs each segment with records past
//! its watermark (`msync(MS_SYNC)`, which is `fdatasync` of the range),
//! syncs the directory if it holds a segment this handle has not synced,
//! and only then raises the watermarks, bumps each segment's `synced_seq`
//! and wakes its futex. Everyone else sleeps on that futex (with a short
//! timeout, in case the leader dies) and looks again. So sixteen appenders
//! that need a sync at once pay for one or two, whichever process they are
//! in.
//!
//! **Failures.** After a failed `fsync`, Linux may mark the pages it
//! covered clean without writing them, and a later `fsync` then succeeds
//! without writing them either. A leader whose sync fails makes every page
//! of the range dirty again (`Segment::redirty`: the first bytes of each
//! page written again through the file, with their value) and tries once
//! more; if that fails too, it records the failure in the segment's
//! `sync_error` word, which every waiter reports, and does not raise the
//! watermark. The `errno` stays in the word until a sync succeeds, and
//! every leader until then makes the pages dirty again first, so a failure
//! is never followed by a success that did not write the pages.
//!
//! **Policies.** [`Durability::EveryAppend`](crate::Durability) makes
//! `append` call [`sync_to`] for its record; `Periodic` runs [`periodic`] on
//! a thread of its own; `Buffered` syncs only when asked.

use std::fs::File;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use fs2::FileExt;
use parking_lot::MutexGuard;

use crate::format::{FRAME_ALIGN, HEADER_LEN};
use crate::read::Reader;
use crate::segment::Segment;
use crate::store::Store;
use crate::{Error, Position, Result};

/// The lock file a sync's leader holds exclusively.
pub(crate) const SYNC_LOCK: &str = "sync.lock";

/// How long a waiter sleeps before it looks again on its own: a leader in
/// another process may have died without waking anyone.
const FOLLOWER_NAP: Duration = Duration::from_millis(2);

/// The leadership of a sync, in this process and across processes: the
/// mutex guard of this process's lock file, locked exclusively.
struct Lead<'a> {
    file: MutexGuard<'a, Option<File>>,
}

impl Drop for Lead<'_> {
    fn drop(&mut self) {
        if let Some(f) = self.file.as_ref() {
            let _ = FileExt::unlock(f);
        }
    }
}

/// Becomes the leader of the next sync, if nobody else is.
fn try_lead(store: &Store) -> Result<Option<Lead<'_>>> {
    let Some(mut file) = store.sync_lead.try_lock() else {
        return Ok(None);
    };
    if file.is_none() {
        *file = Some(store.dir.create_file(
            SYNC_LOCK,
            crate::dir::Access::Create(store.opts.file_mode),
            "sync lock file",
        )?);
    }
    let Some(f) = file.as_ref() else {
        return Ok(None);
    };
    match f.try_lock_exclusive() {
        Ok(()) => Ok(Some(Lead { file })),
        Err(e) if crate::liveness::would_block(&e) => Ok(None),
        Err(e) => Err(Error::io("lock", store.dir.join(SYNC_LOCK), e)),
    }
}

/// The segment holding log position `p` (the newest whose base is at or
/// below it), if it still exists.
fn segment_at(store: &Arc<Store>, bases: &[u64], p: u64) -> Result<Option<Arc<Segment>>> {
    let i = bases.partition_point(|&b| b <= p);
    match i.checked_sub(1) {
        Some(i) => store.segment(bases[i]),
        None => Ok(None),
    }
}

/// Whether a segment is durable to its end: sealed, and its watermark at
/// its reserved end.
fn fully_durable(seg: &Segment) -> bool {
    // Not the sealed bit: an appender that died (or ran out of disk)
    // between crossing the data limit and sealing leaves it unset, and the
    // walk pads its hole; nothing more is ever appended to a segment whose
    // tail crossed the limit.
    let sh = seg.shared();
    sh.tail() > sh.data_limit() && sh.flushed() >= sh.reserved_end()
}

/// The durable position of the log: every record below it is on stable
/// storage. The first segment (from the one holding the last position this
/// handle saw durable) that is not durable to its end says where; at least
/// the oldest segment's first record position.
pub(crate) fn durable_position(store: &Arc<Store>) -> Result<u64> {
    let bases = store.dir.segments()?;
    let d = durable_in(store, &bases)?;
    Ok(d.max(bases.first().map_or(HEADER_LEN, |b| b + HEADER_LEN)))
}

fn durable_in(store: &Arc<Store>, bases: &[u64]) -> Result<u64> {
    let known = store.durable.load(Ordering::Acquire);
    let start = bases.partition_point(|&b| b <= known).saturating_sub(1);
    let mut durable = known;
    for &base in &bases[start..] {
        let Some(seg) = store.segment(base)? else {
            continue;
        };
        if fully_durable(&seg) {
            durable = durable.max(seg.next_base() + HEADER_LEN);
            continue;
        }
        // A segment whose watermark was never raised says `base`: nothing
        // of it is known durable, not even its header.
        durable = durable.max(base + seg.shared().flushed());
        break;
    }
    store.durable.fetch_max(durable, Ordering::AcqRel);
    Ok(durable)
}

/// Makes the log durable up to at least `target` (a log position), leading
/// a sync or waiting for another's; returns the durable position.
///
/// # Errors
/// [`Error::SyncFailed`] if the sync that was to cover `target` failed (in
/// this process or in the one that led it); the errors of [`lead`].
pub(crate) fn sync_to(store: &Arc<Store>, target: u64) -> Result<u64> {
    if target <= store.durable.load(Ordering::Acquire) {
        return Ok(store.durable.load(Ordering::Acquire));
    }
    if !store.is_writable() {
        return sync_read_only(store);
    }
    loop {
        let bases = store.dir.segments()?;
        let durable = durable_in(store, &bases)?;
        if durable >= target {
            return Ok(durable);
        }
        let Some(seg) = segment_at(store, &bases, durable)? else {
            // The durable position's segment was retired: look again.
            store.durable.fetch_max(
                bases.first().map_or(durable, |b| b + HEADER_LEN),
                Ordering::AcqRel,
            );
            if bases.is_empty() {
                return Ok(durable);
            }
            continue;
        };
        let sh = seg.shared();
        // Loaded before the leader is looked for: a sync that ends after
        // this point bumps `synced_seq` past `seq`, so the wait below does
        // not sleep through it.
        let seq = sh.synced_seq();
        let error = sh.sync_error();
        let flushed = sh.flushed();
        if let Some(lead) = try_lead(store)? {
            let r = lead_sync(store, &lead);
            drop(lead);
            r?;
            if durable_in(store, &store.dir.segments()?)? == durable {
                // Nothing was left to sync, yet the target is not covered:
                // a rollover in another process is under way. Do not spin.
                std::thread::sleep(FOLLOWER_NAP);
            }
            continue;
        }
        sh.announce_sync_waiter();
        if sh.flushed_seqcst() == flushed {
            sh.synced_wait(seq, FOLLOWER_NAP);
        }
        // Everything before this segment was durable (`durable` is in
        // it): if its watermark now covers the target, so does the log's,
        // without listing the directory again.
        let covered = seg.base() + sh.flushed();
        if covered >= target && sh.sync_error() >> 32 == error >> 32 {
            store.durable.fetch_max(covered, Ordering::AcqRel);
            return Ok(covered);
        }
        let now = sh.sync_error();
        if now >> 32 != error >> 32 && now & 0xFFFF_FFFF != 0 {
            // The sync this call waited for failed.
            return Err(Error::SyncFailed {
                path: seg.path().to_owned(),
                durable: Position::from(durable_position(store)?),
                errno: (now & 0xFFFF_FFFF) as i32,
            });
        }
    }
}

/// `Log::sync` on a read-only handle: reports the durable position the
/// writers recorded. It syncs nothing: a read-only handle cannot record a
/// failure in `sync_error`, and a failure it saw alone would be reported to
/// nobody else (Linux reports a write-back error once per open file).
fn sync_read_only(store: &Arc<Store>) -> Result<u64> {
    durable_position(store)
}

/// The leader's sync: for each segment from the durable position's on,
/// walks its frames up to its tail as it is now (waiting for each to be
/// published; a frame whose writer died is padded over as a reader would),
/// syncs the segment (making its pages dirty again first if an earlier sync
/// of it failed), then the directory; then raises the watermarks and wakes
/// the waiters.
fn lead_sync(store: &Arc<Store>, _lead: &Lead<'_>) -> Result<()> {
    gather(store)?;
    // Records appended to a segment someone removed are not in the log:
    // never report them durable.
    store.check_active()?;
    let bases = store.dir.segments()?;
    let durable = durable_in(store, &bases)?;
    let start = bases.partition_point(|&b| b <= durable).saturating_sub(1);
    let mut synced: Vec<(Arc<Segment>, u64, bool)> = Vec::new();
    for &base in &bases[start..] {
        let Some(seg) = store.segment(base)? else {
            continue;
        };
        let sh = seg.shared();
        if let Err(e) = seg.check_linked() {
            if bases.last() == Some(&base) {
                return Err(e);
            }
            // Retention deleted it (only sealed segments with a successor
            // are deleted): nothing of it is in the log any more.
            continue;
        }
        let to = sh.reserved_end();
        let from = sh.flushed();
        if from >= to {
            continue;
        }
        let first = if from >= HEADER_LEN && from.is_multiple_of(FRAME_ALIGN) {
            from
        } else {
            HEADER_LEN
        };
        // Every frame below the new watermark must be complete before it
        // is synced, or a restart could find a hole there and cut the
        // records after it.
        let mut walker = Reader::new(Arc::clone(store), Arc::clone(&seg), first);
        loop {
            match walker.walk_to(base + to, None) {
                Ok(_) => break,
                Err(e) if e.is_corruption() && e.position().is_some() => {
                    // Damage is passed over only to a boundary below which
                    // every frame is known complete (the `checked` or
                    // `flushed` watermark): frames between the damage and
                    // a boundary the index records, or the tail, may still
                    // be unpublished, and a watermark raised over them
                    // would call their records durable before they are.
                    let at = walker.position();
                    let safe = sh.checked().max(sh.flushed()).min(to);
                    let past = walker.skip_damaged()?;
                    if past == at || past.get() > base + safe {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        let clean = sync_segment(store, &seg, first, to)?;
        synced.push((seg, to, clean));
    }
    if let Err(e) = store.sync_dir_for(&bases) {
        let errno = errno_of(&e);
        for (seg, _, _) in &synced {
            seg.shared().publish_sync_error(errno);
        }
        return Err(e);
    }
    for (seg, to, clean) in &synced {
        // A sync that failed once and then succeeded may have eaten the
        // error of pages above `to` that background write-back failed to
        // write (the error is the file's, reported once): the next leader,
        // whose range starts at `to`, makes its pages dirty again first.
        seg.shared().publish_synced(*to, *clean);
    }
    durable_in(store, &bases)?;
    Ok(())
}

/// Syncs `seg` up to `to`: once, and once more after making the range's
/// pages dirty again if that fails (or if an earlier sync of the segment
/// failed and no sync has succeeded since). A second failure is recorded in
/// the segment's `sync_error` word, which wakes and fails every waiter.
/// Returns whether the first try succeeded.
fn sync_segment(store: &Arc<Store>, seg: &Segment, first: u64, to: u64) -> Result<bool> {
    let sh = seg.shared();
    let failed = |errno: i32| {
        sh.publish_sync_error(errno);
        Error::SyncFailed {
            path: seg.path().to_owned(),
            durable: Position::from(store.durable.load(Ordering::Acquire)),
            errno,
        }
    };
    if sh.sync_error() & 0xFFFF_FFFF != 0 {
        seg.redirty(first, to).map_err(|e| failed(errno_of(&e)))?;
    }
    let err = match seg.flush_range(0, to) {
        Ok(()) => return Ok(true),
        Err(e) => e,
    };
    // From here on every way out that is not a success is published, so
    // that no later sync (whose `msync` may not see the error again)
    // reports these pages written.
    seg.redirty(first, to).map_err(|e| failed(errno_of(&e)))?;
    if seg.flush_range(0, to).is_ok() {
        return Ok(false);
    }
    Err(failed(errno_of(&err)))
}

fn errno_of(e: &Error) -> i32 {
    let source = match e {
        Error::Io { source, .. }
        | Error::NoSpace { source, .. }
        | Error::PermissionDenied { source, .. } => Some(source),
        _ => None,
    };
    source
        .and_then(std::io::Error::raw_os_error)
        .unwrap_or(libc::EIO)
}

/// The leader's wait for company: while more records keep arriving (the
/// end of the log moved while the leader yielded the CPU once), up to
/// `max_delay`, and until `max_batch` bytes are unsynced, so that the
/// appenders woken by the last sync append and join this one instead of
/// the next. A lone appender pays one `sched_yield`.
fn gather(store: &Arc<Store>) -> Result<()> {
    let gc = store.opts.group_commit;
    if gc.max_delay.is_zero() {
        return Ok(());
    }
    let deadline = Instant::now() + gc.max_delay;
    // The active segment's tail: cheap, and what moves while appenders
    // arrive (a rollover only ends the wait early).
    let seg = store.active();
    let start = seg.shared().tail();
    let mut end = start;
    loop {
        if end.saturating_sub(start) >= gc.max_batch || Instant::now() >= deadline {
            return Ok(());
        }
        std::thread::yield_now();
        let now = seg.shared().tail();
        if now == end {
            return Ok(());
        }
        end = now;
    }
}

/// [`Log::flush`](crate::Log::flush), [`Log::sync`](crate::Log::sync):
/// everything appended so far, by any process.
pub(crate) fn sync_all(store: &Arc<Store>) -> Result<u64> {
    if store.is_writable() {
        // Records appended to a segment someone removed are not in the
        // log: never report them durable.
        store.check_active()?;
    }
    let end = store.end_position()?;
    let d = sync_to(store, end)?;
    // The consumers' and groups' tables follow the log.
    store.sync_tables()?;
    Ok(d)
}

/// Whether anything appended is not durable yet.
fn unsynced(store: &Arc<Store>) -> Result<bool> {
    Ok(store.end_position()? > durable_position(store)?)
}

/// The thread of [`Durability::Periodic`](crate::Durability): every
/// `interval`, syncs the log and its tables if anything is unsynced, and
/// records the outcome, which the appenders of this handle check. Ends when
/// the store is dropped (its sender with it).
pub(crate) fn periodic(store: Weak<Store>, interval: Duration, stop: mpsc::Receiver<()>) {
    loop {
        match stop.recv_timeout(interval) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let Some(store) = store.upgrade() else {
            return;
        };
        // The tables are synced every time: consumers may commit while
        // nothing is appended (an `msync` with no dirty page writes nothing).
        let outcome = match unsynced(&store) {
            Ok(true) => sync_all(&store).map(|_| ()),
            Ok(false) => store.sync_tables(),
            Err(e) => Err(e),
        };
        let errno = match &outcome {
            Err(Error::SyncFailed { errno, .. }) => *errno,
            // Damage, a removed segment: the appenders meet those on
            // their own; they are not a failure to sync.
            Err(e) if !e.is_corruption() => errno_of(e),
            _ => 0,
        };
        store.periodic_errno.store(errno, Ordering::Release);
    }
}

/// Starts the thread of `Durability::Periodic` for a writable handle; it
/// ends when the store is dropped.
pub(crate) fn start_periodic(store: &Arc<Store>) -> Result<()> {
    let crate::Durability::Periodic(interval) = store.opts.durability else {
        return Ok(());
    };
    if !store.is_writable() {
        return Ok(());
    }
    let (tx, rx) = mpsc::channel();
    let weak = Arc::downgrade(store);
    std::thread::Builder::new()
        .name("tidelog-sync".into())
        .spawn(move || periodic(weak, interval, rx))
        .map_err(|e| Error::io("start the periodic sync thread", store.dir.path(), e))?;
    store.set_periodic_stop(tx);
    Ok(())
}

/// The error appenders of a `Periodic` log report while the last periodic
/// sync failed.
pub(crate) fn periodic_failure(store: &Arc<Store>, errno: i32) -> Error {
    Error::SyncFailed {
        path: store.dir.path().to_owned(),
        durable: Position::from(store.durable.load(Ordering::Acquire)),
        errno,
    }
}
