//! The real code under a randomized interleaving of slow writers and
//! impatient unblockers: readers with an unblock timeout far shorter than
//! the writers' pauses pad over frames that are being written, all the time.
//! Every record must still be read exactly once, in each writer's order,
//! with its own bytes. (The exhaustive check of the protocol is in
//! `protocol_model.rs`; this runs the library itself.)

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{payload, Rng};
use tidelog::Options;

/// Record `i` of writer `w`: at least 8 bytes, starting with `w`.
fn rec(w: u64, i: u64) -> Vec<u8> {
    let mut p = payload(w, i, 300);
    p.resize(p.len().max(8), 0);
    p[..8].copy_from_slice(&w.to_le_bytes());
    p
}

#[test]
fn false_unblocks_never_lose_or_duplicate_a_record() {
    const WRITERS: u64 = 3;
    const PER_WRITER: u64 = 3_000;
    let tmp = tempfile::tempdir().unwrap();
    let log = Arc::new(
        Options::new()
            .segment_capacity(256 << 10)
            .grow_step(16 << 10)
            .unblock_timeout(Duration::from_micros(50))
            .open(tmp.path())
            .unwrap(),
    );
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let log = Arc::clone(&log);
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut reader = log.reader();
                let mut next = HashMap::new();
                let mut total = 0;
                // Once the writers are done, every record must arrive soon:
                // a lost one fails the test instead of hanging it.
                let mut done_at: Option<Instant> = None;
                loop {
                    match reader.next_timeout(Duration::from_millis(1)).unwrap() {
                        Some(r) => {
                            let w = u64::from_le_bytes(r[..8].try_into().unwrap());
                            let i = next.entry(w).or_insert(0u64);
                            assert_eq!(&*r, &rec(w, *i)[..], "writer {w} record {i}");
                            *i += 1;
                            total += 1;
                        }
                        None if done.load(Ordering::Acquire) => {
                            if total == WRITERS * PER_WRITER {
                                return next;
                            }
                            let since = *done_at.get_or_insert_with(Instant::now);
                            assert!(
                                since.elapsed() < Duration::from_secs(30),
                                "reader stuck at {} with {total} of {} records: {next:?}",
                                reader.position(),
                                WRITERS * PER_WRITER
                            );
                        }
                        None => {}
                    }
                }
            })
        })
        .collect();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut a = log.appender().unwrap();
                let mut rng = Rng(w);
                let mut republished = 0;
                for i in 0..PER_WRITER {
                    let p = rec(w, i);
                    let mut r = a.reserve(p.len()).unwrap();
                    let reserved = r.position();
                    // Pause between reserve and commit, sometimes for far
                    // longer than the unblock timeout.
                    match rng.below(4) {
                        0 => std::thread::sleep(Duration::from_micros(rng.below(300))),
                        1 => std::thread::yield_now(),
                        _ => {}
                    }
                    r.copy_from_slice(&p);
                    if r.commit().unwrap() != reserved {
                        republished += 1;
                    }
                }
                republished
            })
        })
        .collect();
    let republished: u64 = writers.into_iter().map(|h| h.join().unwrap()).sum();
    done.store(true, Ordering::Release);
    for r in readers {
        let next = r.join().unwrap();
        for w in 0..WRITERS {
            assert_eq!(next.get(&w), Some(&PER_WRITER));
        }
    }
    // The point of the test: the unblockers really did race the writers.
    assert!(
        republished > 20,
        "only {republished} records were republished"
    );
    common::note(format!(
        "unblock stress: {republished} records republished after a false unblock"
    ));
}
