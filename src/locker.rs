//! The thread that keeps the window ahead of this process's appenders
//! locked in memory (`Options::lock_in_memory`), off the append path.
//!
//! `mlock` starts by draining every CPU's page lists (`lru_add_drain_all`),
//! which waits for a kernel worker on each CPU. On a CPU busy with a
//! spinning reader that wait lasted 43 to 95 ms (measured with `strace -T`
//! when appenders locked their window themselves: the spinning reader's p99
//! went from 28-172 us to 77-84 ms). So appenders only post where they are;
//! this thread moves the window, in steps of half of it, and waits for the
//! kernel instead of them.

use std::sync::mpsc;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::segment::Segment;

/// Where the appenders of this process are: a segment and an offset in it.
struct Request {
    seg: Arc<Segment>,
    start: u64,
}

/// The handle of the locking thread (started at the first request).
#[derive(Debug)]
pub(crate) struct Locker {
    bytes: u64,
    step: u64,
    tx: Mutex<Option<mpsc::Sender<Request>>>,
}

impl Locker {
    /// A locker of `bytes` ahead of the appenders, growing files by `step`.
    pub(crate) fn new(bytes: u64, step: u64) -> Self {
        Self {
            bytes,
            step,
            tx: Mutex::new(None),
        }
    }

    /// Posts that an appender is at `start` of `seg`. Never waits for the
    /// kernel: at most a channel send (and, the first time, a thread spawn).
    pub(crate) fn request(&self, seg: &Arc<Segment>, start: u64) {
        let mut tx = self.tx.lock();
        let req = Request {
            seg: Arc::clone(seg),
            start,
        };
        let req = match tx.as_ref() {
            Some(t) => match t.send(req) {
                Ok(()) => return,
                // The thread is gone (it panicked): start another.
                Err(mpsc::SendError(req)) => req,
            },
            None => req,
        };
        let (sender, rx) = mpsc::channel();
        let (bytes, step) = (self.bytes, self.step);
        let spawned = std::thread::Builder::new()
            .name("tidelog-lock".into())
            .spawn(move || run(&rx, bytes, step));
        if spawned.is_ok() && sender.send(req).is_ok() {
            *tx = Some(sender);
        }
    }
}

/// Moves the window to the latest position posted; when the appenders
/// move to another segment, unlocks the one they left. Ends (unlocking
/// everything) when the log's handle is dropped.
fn run(rx: &mpsc::Receiver<Request>, bytes: u64, step: u64) {
    // Its work (zeroing and mapping the pages it locks) must not take CPU
    // time from the appenders it runs beside: it runs when a CPU is idle.
    crate::sys::calls::make_thread_idle();
    let mut current: Option<Arc<Segment>> = None;
    while let Ok(mut req) = rx.recv() {
        while let Ok(later) = rx.try_recv() {
            req = later;
        }
        if let Some(old) = current.take() {
            if !Arc::ptr_eq(&old, &req.seg) {
                old.unlock_all();
            }
        }
        req.seg.lock_ahead(req.start, bytes, step);
        current = Some(req.seg);
    }
    if let Some(seg) = current {
        seg.unlock_all();
    }
}
