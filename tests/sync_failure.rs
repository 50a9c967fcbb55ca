//! What a failed sync does: every waiter hears it, the durable watermark
//! stays, no later call reports it as a success, and the periodic policy
//! stops appends while it lasts. A test binary of its own: the failure
//! hook is process-wide.

mod common;

use std::time::{Duration, Instant};

use tidelog::{Durability, Error};

use common::{durability_options as options, tagged_record as record};

#[test]
fn a_failed_sync_fails_every_waiter_and_is_never_reported_as_a_success_later() {
    let dir = tempfile::tempdir().unwrap();
    let log = options(Durability::Buffered).open(dir.path()).unwrap();
    let mut a = log.appender().unwrap();
    for i in 0..1000 {
        a.append(&record(9, i)).unwrap();
    }
    let before = log.sync().unwrap();
    for i in 1000..3000 {
        a.append(&record(9, i)).unwrap();
    }
    // Every sync of segment data fails from now on (the leader's first
    // try and its retry after making the pages dirty again, then every
    // later leader's), as on a disk that returns EIO.
    tidelog::internals::fail_syncs(u32::MAX);
    // A slow disk: the four threads below all arrive while the first
    // leads.
    tidelog::internals::slow_syncs(Duration::from_millis(400));
    let failed_before = tidelog::internals::failed_syncs();
    // Several threads sync at once: one leads, the others wait for it, and
    // every one of them hears that it failed.
    let go = std::sync::Barrier::new(4);
    let results: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    go.wait();
                    log.sync()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    tidelog::internals::slow_syncs(Duration::ZERO);
    // One leader tried twice (the second time after making the pages
    // dirty again); the three others waited for it and heard its failure
    // instead of leading syncs of their own.
    assert_eq!(tidelog::internals::failed_syncs() - failed_before, 2);
    for r in &results {
        match r {
            Err(Error::SyncFailed { errno, durable, .. }) => {
                assert_eq!(*errno, libc::EIO);
                assert!(*durable <= log.end_position().unwrap());
            }
            other => panic!("a sync on a failing disk returned {other:?}"),
        }
    }
    let stuck = log.durable_position().unwrap();
    assert!(stuck >= before && stuck < log.end_position().unwrap());
    // Still failing: still an error, never a success.
    assert!(matches!(log.sync(), Err(Error::SyncFailed { .. })));
    let mut every = options(Durability::EveryAppend).open(dir.path()).unwrap();
    assert!(matches!(
        every.appender().unwrap().append(b"not durable"),
        Err(Error::SyncFailed { .. })
    ));
    assert_eq!(log.durable_position().unwrap(), stuck);
    // The disk heals: the next sync writes everything again and succeeds.
    tidelog::internals::fail_syncs(0);
    let after = log.sync().unwrap();
    assert_eq!(after, log.end_position().unwrap());
    every = options(Durability::EveryAppend).open(dir.path()).unwrap();
    let at = every.appender().unwrap().append(b"durable").unwrap();
    assert!(every.durable_position().unwrap() > at);
    periodic_failures_stop_appends_until_a_sync_succeeds();
}

/// Run by the test above, after it (the failure hook is process-wide).
fn periodic_failures_stop_appends_until_a_sync_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let log = options(Durability::Periodic(Duration::from_millis(10)))
        .open(dir.path())
        .unwrap();
    let mut a = log.appender().unwrap();
    a.append(b"before").unwrap();
    tidelog::internals::fail_syncs(u32::MAX);
    let start = Instant::now();
    let err = loop {
        match a.append(b"while failing") {
            Ok(_) => {}
            Err(e) => break e,
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no periodic sync failed"
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    assert!(
        matches!(err, Error::SyncFailed { errno, .. } if errno == libc::EIO),
        "{err}"
    );
    tidelog::internals::fail_syncs(0);
    let start = Instant::now();
    while a.append(b"after").is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "appends never resumed"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(log.sync().unwrap() >= log.end_position().unwrap());
}
