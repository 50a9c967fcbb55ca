//! Counters a service exports ([`Log::stats`](crate::Log::stats)): what
//! this handle's appenders appended, and what its readers had to repair.
//!
//! Appending must not pay for counting: each appender keeps its own
//! counters on a cache line of its own, written by it alone with plain
//! (relaxed load and store) updates, not read-modify-writes; a snapshot
//! sums the live appenders' counters and what dropped appenders left.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

/// One appender's counters.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct AppenderCounts {
    appends: AtomicU64,
    bytes: AtomicU64,
}

impl AppenderCounts {
    /// Counts `n` records of `bytes` payload bytes (the appender is the
    /// only writer).
    #[inline]
    pub(crate) fn add(&self, n: u64, bytes: u64) {
        let a = self.appends.load(Ordering::Relaxed);
        self.appends.store(a + n, Ordering::Relaxed);
        let b = self.bytes.load(Ordering::Relaxed);
        self.bytes.store(b + bytes, Ordering::Relaxed);
    }
}

/// A handle's counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Live appenders' counters, and the sums of dropped ones'.
    appenders: Mutex<(Vec<Weak<AppenderCounts>>, u64, u64)>,
    /// Holes of dead producers passed over or padded by this handle's
    /// readers.
    pub(crate) repairs: AtomicU64,
    /// Frames padded by this handle's readers at the unblock timeout.
    pub(crate) unblocks: AtomicU64,
}

impl Counters {
    /// Counters for a new appender.
    pub(crate) fn appender(&self) -> Arc<AppenderCounts> {
        let c = Arc::new(AppenderCounts::default());
        let mut a = self.appenders.lock();
        a.0.retain(|w| w.strong_count() > 0);
        a.0.push(Arc::downgrade(&c));
        c
    }

    /// An appender is dropped: keep what it counted.
    pub(crate) fn retire(&self, c: &AppenderCounts) {
        let mut a = self.appenders.lock();
        a.1 += c.appends.load(Ordering::Relaxed);
        a.2 += c.bytes.load(Ordering::Relaxed);
        // Its entry goes: counted once, in the sums.
        let me = c as *const AppenderCounts;
        a.0.retain(|w| w.strong_count() > 0 && !std::ptr::eq(w.as_ptr(), me));
    }

    /// Records and payload bytes appended so far.
    pub(crate) fn appended(&self) -> (u64, u64) {
        let a = self.appenders.lock();
        let (mut n, mut b) = (a.1, a.2);
        for c in a.0.iter().filter_map(Weak::upgrade) {
            n += c.appends.load(Ordering::Relaxed);
            b += c.bytes.load(Ordering::Relaxed);
        }
        (n, b)
    }
}
