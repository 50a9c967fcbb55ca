//! Append and read throughput, in process.
//!
//! Each measurement appends into a fresh temporary log that is deleted
//! afterwards, so the numbers include growing the segment files (fallocate)
//! and first-touch page faults: the real cost of an append, not of writing
//! into pages that are already resident.

#![expect(
    missing_docs,
    reason = "criterion_group! generates an undocumented function"
)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tidelog::Options;

const SIZES: [usize; 3] = [64, 1024, 64 * 1024];

fn options() -> Options {
    Options::new().segment_capacity(1 << 30)
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    for size in SIZES {
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, &size| {
            let payload = vec![0xA5u8; size];
            b.iter_custom(|iters| {
                let tmp = tempfile::tempdir().unwrap();
                let log = options().open(tmp.path()).unwrap();
                let mut appender = log.appender().unwrap();
                let start = Instant::now();
                for _ in 0..iters {
                    appender.append(&payload).unwrap();
                }
                start.elapsed()
            });
        });
    }
    group.finish();
}

fn read(c: &mut Criterion) {
    let mut group = c.benchmark_group("read");
    for size in SIZES {
        let tmp = tempfile::tempdir().unwrap();
        let log = options().open(tmp.path()).unwrap();
        let mut appender = log.appender().unwrap();
        let payload = vec![0x5Au8; size];
        let count = (256 << 20) / (size + 8);
        for _ in 0..count {
            appender.append(&payload).unwrap();
        }
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            let mut reader = log.reader();
            b.iter_custom(|iters| {
                let start = Instant::now();
                let mut sum = 0u64;
                for _ in 0..iters {
                    let r = match reader.try_next().unwrap() {
                        Some(r) => r,
                        None => {
                            reader = log.reader();
                            reader.try_next().unwrap().unwrap()
                        }
                    };
                    sum = sum.wrapping_add(r[0] as u64);
                }
                std::hint::black_box(sum);
                start.elapsed()
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = append, read
}
criterion_main!(benches);
