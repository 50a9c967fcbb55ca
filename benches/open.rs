//! Opening a log with a full 1 GiB segment of 64-byte records: after a
//! clean close (no scan) and after a crash (a full recovery scan, every
//! record's CRC checked). DESIGN.md's targets: 10 ms and 1 s.

#![expect(
    missing_docs,
    reason = "criterion_group! generates an undocumented function"
)]

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use tidelog::format::header::OFF_CHECKED;
use tidelog::Options;

const CAPACITY: u64 = 1 << 30;

fn options() -> Options {
    Options::new().segment_capacity(CAPACITY)
}

fn open(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let log = options().open(&dir).unwrap();
    let mut a = log.appender().unwrap();
    let payload = [0x5Au8; 64];
    let mut n = 0u64;
    // Fill the segment to within 1 MiB of its end, without rolling over:
    // a writer that crashes leaves the newest segment to recover.
    while log.segments().unwrap()[0].used < CAPACITY - (1 << 20) {
        for _ in 0..10_000 {
            a.append(&payload).unwrap();
        }
        n += 10_000;
    }
    assert_eq!(log.segments().unwrap().len(), 1);
    drop(a);
    drop(log);
    let segment = dir.join(format!("{:016x}.tlog", 0));
    eprintln!("log of {n} records of 64 B in one 1 GiB segment");

    let mut group = c.benchmark_group("open_1gib_segment");
    group.bench_function("after_clean_close", |b| {
        b.iter(|| drop(options().open(&dir).unwrap()));
    });
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("after_crash_full_scan", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // What a writer that died leaves: nothing verified since the
                // segment began, so recovery scans all of it.
                OpenOptions::new()
                    .write(true)
                    .open(&segment)
                    .unwrap()
                    .write_all_at(&0u64.to_le_bytes(), OFF_CHECKED as u64)
                    .unwrap();
                let start = Instant::now();
                let log = options().open(&dir).unwrap();
                total += start.elapsed();
                assert!(log.recovery().ran);
                drop(log);
            }
            total
        });
    });
    group.finish();
}

criterion_group!(benches, open);
criterion_main!(benches);
