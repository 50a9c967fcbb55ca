//! Hooks for the project's own tests, compiled only with the
//! `unstable-internals` feature: not part of the API.
//!
//! [`pin`] fixes the two inputs of a segment file that are not the
//! caller's: the creation time in its header and the kernel's boot id, so
//! that the same appends write byte-identical files (the golden files of
//! `tests/golden.rs`).

use std::sync::Mutex;

use crate::boot::BootId;

static PINNED: Mutex<Option<(u64, BootId)>> = Mutex::new(None);

/// The pinned append time of records (0: not pinned): an atomic, so the
/// append path pays a relaxed load for it, not a lock.
static PINNED_STAMP: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// From now on, in this process, segments are created at `created_nanos`,
/// records are appended at that time too, and the machine's boot id reads
/// as `boot_id` (the kernel's text form).
///
/// # Panics
/// If `boot_id` is not a boot id.
pub fn pin(created_nanos: u64, boot_id: &str) {
    let boot = BootId::parse(boot_id).expect("a boot id: 32 hex digits");
    *PINNED.lock().unwrap_or_else(|e| e.into_inner()) = Some((created_nanos, boot));
    PINNED_STAMP.store(created_nanos, std::sync::atomic::Ordering::Relaxed);
}

/// The pinned append time of records, if [`pin`] was called.
#[inline]
pub(crate) fn pinned_stamp() -> Option<u64> {
    match PINNED_STAMP.load(std::sync::atomic::Ordering::Relaxed) {
        0 => None,
        t => Some(t),
    }
}

/// The pinned creation time and boot id, if [`pin`] was called.
pub(crate) fn pinned() -> Option<(u64, BootId)> {
    *PINNED.lock().unwrap_or_else(|e| e.into_inner())
}

static FAILING_SYNCS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// From now on, in this process, the next `n` syncs of segment data fail
/// with `EIO` before reaching the kernel: for testing what callers of
/// `Log::sync` and `append` under `Durability::EveryAppend` see when a
/// disk fails.
pub fn fail_syncs(n: u32) {
    FAILING_SYNCS.store(n, std::sync::atomic::Ordering::SeqCst);
}

static FAILED_SYNCS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static SYNC_DELAY_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// From now on, in this process, every sync of segment data first sleeps
/// `delay`: a slow disk, so that concurrent callers queue up behind a
/// leader.
pub fn slow_syncs(delay: std::time::Duration) {
    SYNC_DELAY_MS.store(
        delay.as_millis() as u64,
        std::sync::atomic::Ordering::SeqCst,
    );
}

/// How many syncs [`fail_syncs`] has failed so far in this process.
pub fn failed_syncs() -> u64 {
    FAILED_SYNCS.load(std::sync::atomic::Ordering::SeqCst)
}

/// Whether the sync about to be made must fail (see [`fail_syncs`]),
/// after the delay of [`slow_syncs`].
pub(crate) fn sync_fails() -> bool {
    let delay = SYNC_DELAY_MS.load(std::sync::atomic::Ordering::SeqCst);
    if delay > 0 {
        std::thread::sleep(std::time::Duration::from_millis(delay));
    }
    let fails = FAILING_SYNCS
        .fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |n| n.checked_sub(1),
        )
        .is_ok();
    if fails {
        FAILED_SYNCS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    fails
}

static PAUSE_AFTER_RESERVE: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);
static ANNOUNCE: Mutex<Option<fn(u64)>> = Mutex::new(None);

/// From now on, in this process, the next append stops for good right
/// after its reservation (before it claims its frame): it calls
/// `announce` with the reservation's position, then sleeps until the
/// process is killed. For tests of a writer that dies holding an empty
/// reservation.
pub fn pause_after_reserve(announce: fn(u64)) {
    *ANNOUNCE.lock().unwrap_or_else(|e| e.into_inner()) = Some(announce);
    PAUSE_AFTER_RESERVE.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// The hook of [`pause_after_reserve`], called by every reservation.
#[inline]
pub(crate) fn after_reserve(position: u64) {
    if PAUSE_AFTER_RESERVE.load(std::sync::atomic::Ordering::Relaxed) {
        if let Some(announce) = *ANNOUNCE.lock().unwrap_or_else(|e| e.into_inner()) {
            announce(position);
        }
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

static REPAIRS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How many holes readers of this process passed over (or padded) because
/// their owner was found dead, before any unblock timeout.
pub fn dead_owner_repairs() -> u64 {
    REPAIRS.load(std::sync::atomic::Ordering::SeqCst)
}

/// Counts one repair for [`dead_owner_repairs`].
pub(crate) fn count_repair() {
    REPAIRS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

static WAITERS_STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static WAITER_RUNNING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The async waiter threads this process has started, and whether one is
/// running now (the `async` feature).
pub fn waiter_threads() -> (u64, bool) {
    (
        WAITERS_STARTED.load(std::sync::atomic::Ordering::SeqCst),
        WAITER_RUNNING.load(std::sync::atomic::Ordering::SeqCst),
    )
}

/// Notes a waiter thread's start or exit for [`waiter_threads`].
#[cfg(feature = "async")]
pub(crate) fn waiter_running(running: bool) {
    if running {
        WAITERS_STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    WAITER_RUNNING.store(running, std::sync::atomic::Ordering::SeqCst);
}
