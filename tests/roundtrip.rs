//! Records come back identical and in order, across segment rollovers, from
//! one appender or many threads.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::payload;
use tidelog::{Log, Options, Position};

#[test]
fn one_million_random_records_across_rollovers() {
    const N: u64 = 1_000_000;
    const SEED: u64 = 1;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let log = Options::new()
        .segment_capacity(256 << 20)
        .grow_step(4 << 20)
        .open(&dir)
        .unwrap();
    let mut appender = log.appender().unwrap();
    let mut positions = Vec::with_capacity(N as usize);
    for i in 0..N {
        positions.push(appender.append(&payload(SEED, i, 4096)).unwrap());
    }
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "positions increase"
    );
    let segments = log.segments().unwrap();
    assert!(
        segments.len() >= 4,
        "only {} segments: fewer than 3 rollovers",
        segments.len()
    );
    assert!(segments[..segments.len() - 1].iter().all(|s| s.sealed));

    // Read back from a fresh handle, so nothing cached from appending helps.
    drop(appender);
    drop(log);
    let log = Log::open_read_only(&dir).unwrap();
    let mut reader = log.reader();
    for i in 0..N {
        let record = reader
            .try_next()
            .unwrap()
            .unwrap_or_else(|| panic!("record {i} missing"));
        assert_eq!(record.position(), positions[i as usize]);
        assert!(*record == payload(SEED, i, 4096)[..], "record {i} differs");
    }
    assert!(reader.try_next().unwrap().is_none());

    // Seeking to any record's position reads from there.
    for &i in &[0, 1, N / 2, N - 1] {
        let mut r = log.reader_at(positions[i as usize]).unwrap();
        assert!(*r.try_next().unwrap().unwrap() == payload(SEED, i, 4096)[..]);
    }
}

#[test]
fn many_threads_append_concurrently() {
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 50_000;
    let tmp = tempfile::tempdir().unwrap();
    let log = Arc::new(
        Options::new()
            .segment_capacity(1 << 20)
            .grow_step(64 << 10)
            .open(tmp.path())
            .unwrap(),
    );
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                let mut a = log.appender().unwrap();
                (0..PER_THREAD)
                    .map(|i| a.append(&payload(t, i, 100)).unwrap())
                    .collect::<Vec<Position>>()
            })
        })
        .collect();
    let mut expected = HashMap::new();
    for (t, h) in handles.into_iter().enumerate() {
        for (i, pos) in h.join().unwrap().into_iter().enumerate() {
            assert!(
                expected.insert(pos, (t as u64, i as u64)).is_none(),
                "position {pos} twice"
            );
        }
    }
    assert!(log.segments().unwrap().len() > 5);
    let mut next_index = [0u64; THREADS as usize];
    let mut reader = log.reader();
    let mut seen = 0;
    while let Some(r) = reader.try_next().unwrap() {
        let (t, i) = expected[&r.position()];
        assert_eq!(i, next_index[t as usize], "thread {t} out of order");
        next_index[t as usize] += 1;
        assert!(*r == payload(t, i, 100)[..]);
        seen += 1;
    }
    assert_eq!(seen, THREADS * PER_THREAD);
}

#[test]
fn reader_follows_a_live_appender_in_the_same_process() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Arc::new(
        Options::new()
            .segment_capacity(64 << 10)
            .grow_step(4096)
            .open(tmp.path())
            .unwrap(),
    );
    let writer = {
        let log = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut a = log.appender().unwrap();
            for i in 0..20_000u64 {
                a.append(&payload(9, i, 300)).unwrap();
            }
        })
    };
    let mut reader = log.reader();
    for i in 0..20_000u64 {
        let r = reader
            .next_timeout(std::time::Duration::from_secs(30))
            .unwrap()
            .unwrap_or_else(|| panic!("timed out waiting for record {i}"));
        assert!(*r == payload(9, i, 300)[..]);
    }
    writer.join().unwrap();
}

#[test]
fn reopen_continues_after_the_last_record() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = Options::new().segment_capacity(64 << 10).grow_step(4096);
    let mut positions = Vec::new();
    for round in 0..5u64 {
        let log = opts.open(tmp.path()).unwrap();
        let mut a = log.appender().unwrap();
        for i in 0..300 {
            positions.push((a.append(&payload(round, i, 200)).unwrap(), round, i));
        }
        log.close().unwrap();
    }
    let log = opts.open(tmp.path()).unwrap();
    assert!(!log.recovery().ran, "a clean close needs no recovery");
    let mut reader = log.reader();
    for &(pos, round, i) in &positions {
        let r = reader.try_next().unwrap().unwrap();
        assert_eq!(r.position(), pos);
        assert!(*r == payload(round, i, 200)[..]);
    }
    assert!(reader.try_next().unwrap().is_none());
}

#[test]
fn batches_are_contiguous_in_order_and_cross_rollovers() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Options::new()
        .segment_capacity(64 << 10)
        .grow_step(4096)
        .open(tmp.path())
        .unwrap();
    let mut a = log.appender().unwrap();
    let mut expected = Vec::new();
    let mut spans = Vec::new();
    for b in 0..200u64 {
        // Batches of 1 to 40 records, some larger than a reservation chunk
        // in total, some crossing segment ends.
        let batch: Vec<Vec<u8>> = (0..1 + b % 40).map(|i| payload(b, i, 2000)).collect();
        let span = a.append_batch(&batch).unwrap().unwrap();
        assert!(span.start() <= span.end());
        spans.push(span);
        expected.extend(batch);
    }
    assert!(a.append_batch::<&[u8]>(&[]).unwrap().is_none());
    assert!(log.segments().unwrap().len() > 20);
    assert!(spans.windows(2).all(|w| w[0].end() < w[1].start()));
    let mut reader = log.reader();
    for (i, e) in expected.iter().enumerate() {
        let r = reader
            .try_next()
            .unwrap()
            .unwrap_or_else(|| panic!("record {i} missing"));
        assert_eq!(&*r, &e[..], "record {i}");
    }
    assert!(reader.try_next().unwrap().is_none());
    // A record over the limit fails the whole batch: nothing is appended.
    let too_big = vec![0u8; log.max_record_size() + 1];
    let err = a
        .append_batch(&[&b"not kept"[..], &too_big[..]])
        .unwrap_err();
    assert!(matches!(err, tidelog::Error::RecordTooLarge { .. }));
    assert!(reader.try_next().unwrap().is_none());
}

#[test]
fn a_batch_rolling_into_a_smaller_segment_is_split_again() {
    // Segments keep the capacity they were created with; a log reopened
    // with a smaller `segment_capacity` creates smaller successors. Found by
    // review: a batch sized for the old segment that rolled over into a
    // smaller one failed with RecordTooLarge, after earlier chunks of it
    // had been appended, though every record fitted.
    let tmp = tempfile::tempdir().unwrap();
    let big = Options::new().segment_capacity(1 << 20);
    let log = big.open(tmp.path()).unwrap();
    let mut a = log.appender().unwrap();
    // Fill the 1 MiB segment to within 64 KiB of its end.
    while log.segments().unwrap()[0].used < (1 << 20) - (64 << 10) {
        a.append(&[1u8; 4000]).unwrap();
    }
    drop(a);
    drop(log);
    let small = Options::new().segment_capacity(64 << 10);
    let log = small.open(tmp.path()).unwrap();
    let before = log.end_position().unwrap();
    let records: Vec<Vec<u8>> = (0..200u32).map(|i| vec![i as u8; 1000]).collect();
    let span = log
        .appender()
        .unwrap()
        .append_batch(&records)
        .unwrap()
        .unwrap();
    assert!(*span.start() >= before);
    let mut r = log.reader_at(*span.start()).unwrap();
    for (i, want) in records.iter().enumerate() {
        let got = r
            .try_next()
            .unwrap()
            .unwrap_or_else(|| panic!("record {i}"));
        assert_eq!(&*got, &want[..], "record {i}");
    }
    assert!(r.try_next().unwrap().is_none());
    assert!(log.segments().unwrap().len() >= 3);
}
