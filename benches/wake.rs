//! Wake-up cost of a parked reader: a ping-pong between two logs, where
//! the main thread appends a ping to one and waits (parked on the futex)
//! for the echo on the other. The echo side is either a thread parked in
//! `next_blocking` or a tokio task in `next_async`, woken through the
//! process's waiter thread (the `async` feature). The difference of the two
//! round trips is what the waiter thread adds to one wake-up.

#![expect(
    missing_docs,
    reason = "criterion_group! generates an undocumented function"
)]

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use tidelog::{Log, Options, WaitStrategy};

fn open(dir: &Path) -> Log {
    Options::new().segment_capacity(64 << 20).open(dir).unwrap()
}

/// `iters` round trips; `echo` runs the other side.
fn round_trips(iters: u64, echo: impl FnOnce(Log, Log, u64) + Send + 'static) -> Duration {
    let tmp = tempfile::tempdir().unwrap();
    let (ping_dir, pong_dir) = (tmp.path().join("ping"), tmp.path().join("pong"));
    let (ping, pong) = (open(&ping_dir), open(&pong_dir));
    let mut pings = ping.appender().unwrap();
    let mut pongs = pong.reader().with_wait_strategy(WaitStrategy::Park);
    let other = std::thread::spawn(move || echo(open(&ping_dir), open(&pong_dir), iters));
    // Let the echo side start waiting.
    std::thread::sleep(Duration::from_millis(20));
    let start = Instant::now();
    for _ in 0..iters {
        pings.append(&[1u8; 64]).unwrap();
        pongs.next_blocking().unwrap();
    }
    let took = start.elapsed();
    other.join().unwrap();
    took
}

fn wake(c: &mut Criterion) {
    let mut group = c.benchmark_group("wake");
    group.bench_function("round_trip_parked_thread", |b| {
        b.iter_custom(|iters| {
            round_trips(iters, |ping, pong, iters| {
                let mut r = ping.reader().with_wait_strategy(WaitStrategy::Park);
                let mut a = pong.appender().unwrap();
                for _ in 0..iters {
                    r.next_blocking().unwrap();
                    a.append(&[2u8; 64]).unwrap();
                }
            })
        })
    });
    group.bench_function("round_trip_tokio_task", |b| {
        b.iter_custom(|iters| {
            round_trips(iters, |ping, pong, iters| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let mut r = ping.reader();
                    let mut a = pong.appender().unwrap();
                    for _ in 0..iters {
                        r.next_async().await.unwrap();
                        a.append(&[2u8; 64]).unwrap();
                    }
                })
            })
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
    targets = wake
}
criterion_main!(benches);
