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
//! Kernels without `futex_waitv` (before Linux 5.16), a seccomp filter
//! that refuses it, and segments past its limit of 128 words are polled
//! every millisecond.

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
    // No executor code runs under the lock (wakers are cloned, woken and
    // dropped outside it), so a poisoned lock still holds consistent
    // entries.
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
    // Executor code (a waker's clone and wake) runs outside the lock.
    let new_waker = waker.clone();
    let mut st = state();
    // The same task waiting again on the same segment (each `Pending` poll
    // registers): one entry, not one per poll.
    let same = st
        .entries
        .iter_mut()
        .find(|e| Arc::ptr_eq(&e.seg, seg) && e.waker.will_wake(waker));
    let (wake_now, tell_thread) = match same {
        Some(e) => {
            // The word moved since the older registration: its wake-up is
            // due now (a task may poll two readers of one segment).
            let moved = e.seq != seq;
            let sooner = deadline < e.deadline;
            e.seq = seq;
            e.deadline = e.deadline.min(deadline);
            // Otherwise the thread sleeps on this segment already, until a
            // deadline no later than this one: nothing to tell it.
            (moved, moved || sooner)
        }
        None => {
            st.entries.push(Entry {
                seg: Arc::clone(seg),
                seq,
                deadline,
                waker: new_waker,
            });
            (false, true)
        }
    };
    if !st.running {
        match thread::Builder::new()
            .name("tidelog-waiter".into())
            .spawn(run)
        {
            Ok(_) => {
                st.running = true;
                #[cfg(feature = "unstable-internals")]
                crate::internals::waiter_running(true);
            }
            Err(e) => {
                // Nobody would scan the entry: take it back, and with it
                // the segment it holds.
                let mut gone = Vec::new();
                let mut i = 0;
                while i < st.entries.len() {
                    let e = &st.entries[i];
                    if Arc::ptr_eq(&e.seg, seg) && e.waker.will_wake(waker) {
                        gone.push(st.entries.swap_remove(i));
                    } else {
                        i += 1;
                    }
                }
                drop(st);
                drop(gone);
                return Err(e);
            }
        }
    }
    drop(st);
    if wake_now {
        waker.wake_by_ref();
    }
    if tell_thread {
        CONTROL.fetch_add(1, Ordering::SeqCst);
        calls::futex_wake(&CONTROL);
    }
    Ok(())
}

/// Marks the thread gone if it unwinds (a waker's `wake` panicked), so that
/// the next registration starts another, which scans the entries left
/// behind.
struct Running;

impl Drop for Running {
    fn drop(&mut self) {
        if thread::panicking() {
            state().running = false;
            #[cfg(feature = "unstable-internals")]
            crate::internals::waiter_running(false);
        }
    }
}

/// The waiter thread.
fn run() {
    let _running = Running;
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
