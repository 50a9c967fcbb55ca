//! Retention: deleting whole sealed segments, oldest first, so that a
//! long-running log does not fill the disk (see `docs/FORMAT.md`,
//! "Retention").
//!
//! Segments are only ever unlinked, never truncated: a process that maps a
//! deleted segment keeps its pages until it lets go, reads it to its end
//! and moves on. The directory is fsynced after. Deciding and unlinking
//! hold `retention.lock`, so that processes applying retention at once
//! delete nothing twice; the slowest consumer is read under that lock,
//! and creating or moving a consumer or a group holds it shared, so that
//! a position being stored cannot fall into a segment being deleted.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use crate::dir::{file_name, LogDir};
use crate::format::HEADER_LEN;
use crate::liveness;
use crate::options::Retention;
use crate::segment::Segment;
use crate::{Error, Position, Result};

/// What [`Log::apply_retention`](crate::Log::apply_retention) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionReport {
    /// Segment files deleted (or, for a dry run, that would be).
    pub segments_deleted: u64,
    /// Bytes of those files.
    pub bytes_freed: u64,
    /// The oldest position the log holds afterwards.
    pub oldest: Position,
    /// The durable consumer, or consumer group (as `group NAME`), that kept
    /// retention from deleting more, if one did.
    pub held_back_by: Option<String>,
}

/// The slowest durable consumer or consumer group: its name and the
/// position before which it has everything (a consumer's committed
/// position, a group's watermark).
pub(crate) type Floor = Option<(String, u64)>;

/// Whether [`apply`] waits for another process applying retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Wait for the lock (`Log::apply_retention`, `tidelog trim`).
    Yes,
    /// Skip this round if another process holds it (at a rollover: the
    /// appender that rolled over must not wait for a trimmer).
    No,
}

/// Applies `retention` to the log in `dir`. `segment` opens a segment by
/// base; `floor` reads the slowest durable consumer (ignored if the
/// retention may pass consumers), under the lock, and `settle` makes the
/// positions it read durable before the first segment is deleted: a power
/// cut must never leave a consumer's committed position on disk older
/// than the segments retention deleted because of a newer one. With
/// `dry_run`, decides and deletes nothing, and takes no lock (a read-only
/// handle may ask).
pub(crate) fn apply(
    dir: &LogDir,
    mode: u32,
    retention: Retention,
    segment: impl Fn(u64) -> Result<Option<Arc<Segment>>>,
    (floor, settle): (impl FnOnce() -> Result<Floor>, impl FnOnce() -> Result<()>),
    dry_run: bool,
    wait: Wait,
) -> Result<RetentionReport> {
    crate::trace::trace_span!("tidelog.retention", dry_run);
    let bases = dir.segments()?;
    let mut report = RetentionReport {
        oldest: Position::from(bases.first().map_or(0, |b| b + HEADER_LEN)),
        ..RetentionReport::default()
    };
    if !retention.is_limited() || bases.len() < 2 {
        return Ok(report);
    }
    let _lock = match (dry_run, wait) {
        (true, _) => None,
        (false, Wait::Yes) => Some(liveness::lock_exclusive(
            dir,
            liveness::RETENTION_LOCK,
            mode,
        )?),
        (false, Wait::No) => {
            match liveness::try_lock_exclusive(dir, liveness::RETENTION_LOCK, mode)? {
                Some(lock) => Some(lock),
                None => return Ok(report),
            }
        }
    };
    // Listed again under the lock: another process may have deleted some.
    let bases = dir.segments()?;
    let mut segs = Vec::with_capacity(bases.len());
    for &b in &bases {
        match segment(b)? {
            Some(s) => segs.push(s),
            // Deleted meanwhile by someone not holding the lock: stop here.
            None => break,
        }
    }
    let mut total = 0u64;
    let mut lens = Vec::with_capacity(segs.len());
    for s in &segs {
        let len = s.file_len()?;
        lens.push(len);
        total += len;
    }
    let now = Duration::from_nanos(crate::segment::now_nanos());
    // Read under the lock: a consumer created or moved back meanwhile held
    // it shared while it stored its position.
    let floor = if retention.past_consumers {
        None
    } else {
        floor()?
    };
    let mut deleted = 0;
    let mut failed = None;
    let mut settle = Some(settle);
    // Never the newest segment; only sealed ones, oldest first.
    for i in 0..segs.len().saturating_sub(1) {
        let seg = &segs[i];
        let sh = seg.shared();
        if !(sh.is_sealed() && sh.tail() > sh.data_limit()) {
            break;
        }
        let too_big = retention.max_bytes.is_some_and(|m| total > m);
        // Its newest record is no younger than its successor's creation.
        let sealed_at = Duration::from_nanos(segs[i + 1].header().created_nanos);
        let too_old = retention
            .max_age
            .is_some_and(|age| now.saturating_sub(sealed_at) > age);
        if !too_big && !too_old {
            break;
        }
        if let Some((name, committed)) = &floor {
            if *committed < seg.next_base() {
                report.held_back_by = Some(name.clone());
                break;
            }
        }
        if !dry_run {
            if floor.is_some() {
                if let Some(settle) = settle.take() {
                    settle()?;
                }
            }
            let name = file_name(seg.base());
            match dir.remove(&name) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    // The segments deleted before are still made durable.
                    failed = Some(Error::io("delete segment", dir.join(&name), e));
                    break;
                }
            }
        }
        total -= lens[i];
        report.segments_deleted += 1;
        report.bytes_freed += lens[i];
        deleted = i + 1;
    }
    if deleted > 0 && !dry_run {
        dir.sync()?;
        crate::trace::trace_event!(
            segments = report.segments_deleted,
            bytes = report.bytes_freed,
            "retention deleted segments"
        );
    }
    if let Some(e) = failed {
        return Err(e);
    }
    if let Some(s) = segs.get(deleted) {
        report.oldest = Position::from(s.base() + HEADER_LEN);
    }
    Ok(report)
}
