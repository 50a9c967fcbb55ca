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

/// From now on, in this process, segments are created at `created_nanos`
/// and the machine's boot id reads as `boot_id` (the kernel's text form).
///
/// # Panics
/// If `boot_id` is not a boot id.
pub fn pin(created_nanos: u64, boot_id: &str) {
    let boot = BootId::parse(boot_id).expect("a boot id: 32 hex digits");
    *PINNED.lock().unwrap_or_else(|e| e.into_inner()) = Some((created_nanos, boot));
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

/// Whether the sync about to be made must fail (see [`fail_syncs`]).
pub(crate) fn sync_fails() -> bool {
    FAILING_SYNCS
        .fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |n| n.checked_sub(1),
        )
        .is_ok()
}
