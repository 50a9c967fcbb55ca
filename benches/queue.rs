//! The queue's costs in process: a consumer's commit (the target: at most
//! 50 ns, a few atomic stores), and reading through a consumer that
//! commits after every record.

#![expect(
    missing_docs,
    reason = "criterion_group! generates an undocumented function"
)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tidelog::Options;

fn commit(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let log = Options::new()
        .segment_capacity(64 << 20)
        .open(tmp.path())
        .unwrap();
    let mut a = log.appender().unwrap();
    for _ in 0..1000 {
        a.append(&[7u8; 64]).unwrap();
    }
    let mut consumer = log.consumer("bench").unwrap();
    consumer.try_next().unwrap().unwrap();
    let mut group = c.benchmark_group("consumer");
    group.throughput(Throughput::Elements(1));
    group.bench_function("commit", |b| b.iter(|| consumer.commit().unwrap()));
    drop(consumer);
    group.bench_function("read_and_commit_64", |b| {
        b.iter_custom(|iters| {
            let tmp = tempfile::tempdir().unwrap();
            let log = Options::new()
                .segment_capacity(1 << 30)
                .open(tmp.path())
                .unwrap();
            let mut a = log.appender().unwrap();
            for _ in 0..iters {
                a.append(&[7u8; 64]).unwrap();
            }
            let mut consumer = log.consumer("bench").unwrap();
            let start = Instant::now();
            for _ in 0..iters {
                consumer.try_next().unwrap().unwrap();
                consumer.commit().unwrap();
            }
            start.elapsed()
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = commit
}
criterion_main!(benches);
