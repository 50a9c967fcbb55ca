//! The `async` feature's waiter: one thread per process sleeps on behalf of
//! every task that awaits a record, and wakes their wakers.
//!
//! A task whose reader finds nothing to read registers the segment it
//! waits on, the `notify_seq` value it loaded when it set the segment's
//! `parked` flag (the first half of the parking protocol, `park_begin`),
//! a deadline, and its waker. The thread sleeps in one `futex_waitv(2)`
//! call on every distinct segment's `notify_seq` word (plus a word of its
//! own that registrations bump), exactly as a blocking reader sleeps in
//! `futex_wait` on one: an appender that publishes after the task set the
//! flag bumps the word and wakes the thread, which wakes every task whose
//! value is out of date. So no task is polled while nothing happens, and
//! no wake-up is lost between a task's check and its registration: the
//! thread compares each registered value with the word before it sleeps,
//! and the kernel compares again.
//!
//! The deadline is the reader's own re-check interval (`Reader::park_plan`):
//! 20 ms for an idle writable reader (the unblocker's clock must run to
//! repair a dead appender's hole, and no appender wakes anyone for that),
//! 5 ms while it waits at a reserved frame, and 1 ms for a reader of a
//! read-only log, which cannot set the flag and must poll.
//!
//! Cancellation: a task that drops its future leaves its entry behind;
//! the entry goes at its deadline or at the next wake-up of its segment,
//! and waking a finished task's waker is harmless. The thread holds each
//! registered segment (and so its mapping) only until then, and exits after
//! a second with nothing to wait for; the next registration starts another.
//!
//! Kernels without `futex_waitv` (before Linux 5.16), and segments past
//! its limit of 128 words, are polled every millisecond.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::time::{Duration, Instant};
use std::{io, thread};

use crate::segment::Segment;
use crate::sys::calls::{self, Waited, WAITV_MAX};

/// How long the thread stays with nothing to wait for before it exits.
const IDLE_EXIT: Duration = Duration::from_secs(1);

/// The poll interval where `futex_waitv` cannot sleep on a segment.
const POLL: Duration = Duration::from_millis(1);

/// A task waiting for a segment's `notify_seq` to move on from `seq`.
struct Entry {
    seg: Arc<Segment>,
    seq: u32,
    deadline: Instant,
    waker: Waker,
}

struct State {
    entries: Vec<Entry>,
    /// Whether a waiter thread is running (it clears this, under the lock,
    /// as it exits).
    running: bool,
}

/// Bumped by every registration; the thread sleeps on it beside the
/// segments' words, so a registration wakes it to add the new segment.
static CONTROL: AtomicU32 = AtomicU32::new(0);

static STATE: Mutex<State> = Mutex::new(State {
    entries: Vec::new(),
    running: false,
});

fn state() -> MutexGuard<'static, State> {
    // The lock is never held across user code (wakers are woken after it
    // is released), so a poisoned lock still holds consistent entries.
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Registers `waker` to be woken once `seg`'s `notify_seq` no longer holds
/// `seq`, or after `wait` at the latest. The caller loaded `seq` in
/// `park_begin` before it re-checked its frame.
///
/// # Errors
/// The waiter thread could not be started.
pub(crate) fn register(
    seg: &Arc<Segment>,
    seq: u32,
    wait: Duration,
    waker: &Waker,
) -> io::Result<()> {
    let deadline = Instant::now() + wait;
    let mut st = state();
    // The same task waiting again on the same segment (each `Pending` poll
    // registers): one entry, not one per poll.
    let same = st
        .entries
        .iter_mut()
        .find(|e| Arc::ptr_eq(&e.seg, seg) && e.waker.will_wake(waker));
    match same {
        Some(e) => {
            if e.seq != seq {
                // The word moved since the older registration: its wake-up
                // is due now (a task may poll two readers of one segment).
                waker.wake_by_ref();
            }
            e.seq = seq;
            e.deadline = e.deadline.min(deadline);
        }
        None => st.entries.push(Entry {
            seg: Arc::clone(seg),
            seq,
            deadline,
            waker: waker.clone(),
        }),
    }
    if !st.running {
        thread::Builder::new()
            .name("tidelog-waiter".into())
            .spawn(run)?;
        st.running = true;
        #[cfg(feature = "unstable-internals")]
        crate::internals::waiter_running(true);
    }
    drop(st);
    CONTROL.fetch_add(1, Ordering::SeqCst);
    calls::futex_wake(&CONTROL);
    Ok(())
}

/// The waiter thread.
fn run() {
    let mut unsupported = false;
    let mut idle_since: Option<Instant> = None;
    let mut due: Vec<Waker> = Vec::new();
    let mut watch: Vec<(Arc<Segment>, u32)> = Vec::new();
    loop {
        // Loaded before the scan: a registration after it changes the word,
        // and the sleep below returns at once.
        let control = CONTROL.load(Ordering::SeqCst);
        let now = Instant::now();
        let mut next = now + IDLE_EXIT;
        {
            let mut st = state();
            let mut i = 0;
            while i < st.entries.len() {
                let e = &st.entries[i];
                let seq = e.seg.shared().notify_seq();
                if seq != e.seq || e.deadline <= now {
                    due.push(st.entries.swap_remove(i).waker);
                    continue;
                }
                next = next.min(e.deadline);
                if !watch.iter().any(|(s, _)| Arc::ptr_eq(s, &e.seg)) {
                    watch.push((Arc::clone(&e.seg), seq));
                }
                i += 1;
            }
            if st.entries.is_empty() && due.is_empty() {
                let since = *idle_since.get_or_insert(now);
                if now.duration_since(since) >= IDLE_EXIT {
                    st.running = false;
                    #[cfg(feature = "unstable-internals")]
                    crate::internals::waiter_running(false);
                    return;
                }
                next = since + IDLE_EXIT;
            } else {
                idle_since = None;
            }
            // (Wakers are woken below, after the lock is released; the
            // thread exits only with none due.)
        }
        for waker in due.drain(..) {
            waker.wake();
        }
        let mut timeout = next.saturating_duration_since(Instant::now());
        if unsupported || watch.len() >= WAITV_MAX {
            timeout = timeout.min(POLL);
        }
        if unsupported {
            calls::futex_wait(&CONTROL, control, Some(timeout));
        } else {
            let words: Vec<_> = watch
                .iter()
                .take(WAITV_MAX - 1)
                .map(|(s, v)| (s.shared().notify_word(), *v))
                .collect();
            if calls::futex_waitv((&CONTROL, control), &words, timeout) == Waited::Unsupported {
                unsupported = true;
            }
        }
        watch.clear();
    }
}
