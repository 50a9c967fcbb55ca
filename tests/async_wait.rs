//! Async reads (the `async` feature) under tokio: many tasks in one process
//! await records that producers in other processes append; waits are
//! cancel-safe; an idle task is not polled in a loop; the waiter thread
//! exits when nothing waits and comes back when something does.
#![cfg(feature = "async")]

mod common;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use common::{arg, arg_u64, role, tagged_record, Proc, Rng};
use futures_util::StreamExt;
use tidelog::{Options, StartAt};

/// The waiter thread is one per process: tests that count its threads
/// must not overlap with others.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Small segments, so that waiting tasks follow rollovers.
fn options() -> Options {
    Options::new().segment_capacity(1 << 20).grow_step(64 << 10)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}

/// Producer `P` appends records 0..N (`tagged_record`), pausing
/// `PAUSE_US` after every `EVERY` records so that readers catch up and
/// sleep.
#[test]
#[ignore = "child process entry point, run by the tests below"]
fn child() {
    let Some(role) = role() else { return };
    assert_eq!(role, "producer");
    let log = options().open(arg("DIR")).unwrap();
    let mut a = log.appender().unwrap();
    let (p, n, every, pause) = (
        arg_u64("P"),
        arg_u64("N"),
        arg_u64("EVERY"),
        arg_u64("PAUSE_US"),
    );
    for i in 0..n {
        a.append(&tagged_record(p, i)).unwrap();
        if (i + 1).is_multiple_of(every) {
            std::thread::sleep(Duration::from_micros(pause));
        }
    }
}

fn producer(dir: &Path, p: u64, n: u64, every: u64, pause_us: u64) -> Proc {
    Proc::spawn(
        "producer",
        &[
            ("DIR", dir.display().to_string()),
            ("P", p.to_string()),
            ("N", n.to_string()),
            ("EVERY", every.to_string()),
            ("PAUSE_US", pause_us.to_string()),
        ],
    )
}

fn finish(mut p: Proc) {
    assert!(p.child.wait().unwrap().success(), "a producer failed");
}

/// Producer and index of a `tagged_record`.
fn tag(record: &[u8]) -> (usize, u64) {
    let text = std::str::from_utf8(record).unwrap();
    let mut words = text.split(' ');
    let p = words.next().unwrap()[1..].parse().unwrap();
    let i = words.next().unwrap()[1..].parse().unwrap();
    (p, i)
}

/// Checks records arrive in each producer's order, exactly once.
struct Order {
    next: Vec<u64>,
    seen: u64,
}

impl Order {
    fn new(producers: usize) -> Self {
        Self {
            next: vec![0; producers],
            seen: 0,
        }
    }

    fn take(&mut self, record: &[u8]) {
        let (p, i) = tag(record);
        assert_eq!(i, self.next[p], "producer {p}: record {i} out of order");
        assert_eq!(record, tagged_record(p as u64, i), "bytes of p{p} i{i}");
        self.next[p] += 1;
        self.seen += 1;
    }
}

#[test]
fn many_tasks_await_producers_in_other_processes() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log = options().open(dir).unwrap();
    let ro = options().open_read_only(dir).unwrap();
    const PRODUCERS: usize = 3;
    const N: u64 = 20_000;
    let total = PRODUCERS as u64 * N;
    let rt = runtime();
    let mut tasks = Vec::new();
    // Borrowing readers, on a writable and a read-only open.
    for k in 0..26 {
        let mut reader = if k == 0 { ro.reader() } else { log.reader() };
        tasks.push(rt.spawn(async move {
            let mut order = Order::new(PRODUCERS);
            while order.seen < total {
                order.take(&reader.next_async().await.unwrap());
            }
            order.seen
        }));
    }
    // Streams of owned records.
    for _ in 0..4 {
        let mut stream = log.reader().into_stream();
        tasks.push(rt.spawn(async move {
            let mut order = Order::new(PRODUCERS);
            while order.seen < total {
                order.take(&stream.next().await.unwrap().unwrap());
            }
            order.seen
        }));
    }
    // A durable consumer committing as it goes.
    let mut consumer = log.consumer_from("tasks", StartAt::Beginning).unwrap();
    tasks.push(rt.spawn(async move {
        let mut order = Order::new(PRODUCERS);
        while order.seen < total {
            order.take(&consumer.next_async().await.unwrap());
            if order.seen.is_multiple_of(1000) {
                consumer.commit().unwrap();
            }
        }
        order.seen
    }));
    // Every task waits before the first record is appended.
    std::thread::sleep(Duration::from_millis(100));
    let producers: Vec<_> = (0..PRODUCERS as u64)
        .map(|p| producer(dir, p, N, 500, 2_000))
        .collect();
    let seen = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(120), async {
            let mut seen = Vec::new();
            for t in tasks {
                seen.push(t.await.unwrap());
            }
            seen
        })
        .await
        .expect("every task read every record within 120 s")
    });
    producers.into_iter().for_each(finish);
    assert_eq!(seen.len(), 31);
    assert!(seen.iter().all(|&s| s == total));
    assert!(
        log.segments().unwrap().len() > 2,
        "the tasks followed rollovers"
    );
    assert_eq!(
        log.consumers().unwrap()[0].committed,
        log.end_position().unwrap()
    );
}

#[test]
fn cancelled_waits_lose_nothing() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log = options().open(dir).unwrap();
    const N: u64 = 5_000;
    let rt = runtime();
    let mut reader = log.reader();
    let mut consumer = log.consumer_from("cancelled", StartAt::Beginning).unwrap();
    let p = producer(dir, 0, N, 20, 1_000);
    let (cancels, consumer) = rt.block_on(async {
        let mut rng = Rng(7);
        let mut cancels = 0u64;
        // Under timeouts of random length, most shorter than the pauses.
        let mut order = Order::new(1);
        while order.seen < N {
            let limit = Duration::from_micros(20 + rng.below(800));
            match tokio::time::timeout(limit, reader.next_async()).await {
                Ok(record) => order.take(&record.unwrap()),
                Err(_) => cancels += 1,
            }
        }
        // A consumer in a select! against a timer that often wins.
        let mut order = Order::new(1);
        let mut last_next = consumer.position();
        while order.seen < N {
            let tick = tokio::time::sleep(Duration::from_micros(20 + rng.below(800)));
            tokio::select! {
                record = consumer.next_async() => {
                    let record = record.unwrap();
                    order.take(&record);
                    last_next = record.next_position();
                }
                () = tick => {
                    cancels += 1;
                    // A cancelled wait has not moved the consumer.
                    assert_eq!(consumer.position(), last_next);
                }
            }
        }
        consumer.commit().unwrap();
        (cancels, consumer)
    });
    finish(p);
    assert!(cancels > 10, "the waits were cancelled ({cancels} times)");
    drop(consumer);
    let mut again = log.consumer("cancelled").unwrap();
    assert!(again.try_next().unwrap().is_none(), "committed at the end");
}

/// Counts the polls of a future.
struct Counted<F> {
    inner: Pin<Box<F>>,
    polls: Arc<AtomicU64>,
}

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.polls.fetch_add(1, Ordering::Relaxed);
        self.inner.as_mut().poll(cx)
    }
}

#[test]
fn an_idle_task_is_not_polled_in_a_loop() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log = options().open(dir).unwrap();
    let rt = runtime();
    let polls = Arc::new(AtomicU64::new(0));
    let mut reader = log.reader();
    let counted = Arc::clone(&polls);
    let task = rt.spawn(async move {
        let record = Counted {
            inner: Box::pin(reader.next_async()),
            polls: counted,
        }
        .await
        .unwrap();
        record.to_vec()
    });
    std::thread::sleep(Duration::from_millis(500));
    let idle_polls = polls.load(Ordering::Relaxed);
    // Woken only by the unblocker's clock, every 20 ms: about 25 polls.
    println!("polls of a task idle for 500 ms: {idle_polls}");
    assert!(
        (1..=60).contains(&idle_polls),
        "{idle_polls} polls in 500 ms"
    );
    finish(producer(dir, 0, 1, 1, 0));
    let got = rt.block_on(task).unwrap();
    assert_eq!(got, tagged_record(0, 0));
}

#[test]
fn two_readers_in_one_task() {
    // One waker, two readers: of one log (one entry in the waiter per task
    // and segment) and of another log.
    let _serial = serial();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let la = options().open(a.path()).unwrap();
    let lb = options().open(b.path()).unwrap();
    const N: u64 = 3_000;
    let rt = runtime();
    let (mut r1, mut r2, mut r3) = (la.reader(), la.reader(), lb.reader());
    let ps = [
        producer(a.path(), 0, N, 10, 500),
        producer(b.path(), 0, N, 7, 700),
    ];
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), async {
            let (mut o1, mut o2, mut o3) = (Order::new(1), Order::new(1), Order::new(1));
            while o1.seen + o2.seen + o3.seen < 3 * N {
                tokio::select! {
                    r = r1.next_async(), if o1.seen < N => o1.take(&r.unwrap()),
                    r = r2.next_async(), if o2.seen < N => o2.take(&r.unwrap()),
                    r = r3.next_async(), if o3.seen < N => o3.take(&r.unwrap()),
                }
            }
        })
        .await
        .expect("all three readers done within 60 s");
    });
    ps.into_iter().for_each(finish);
}

#[test]
fn the_waiter_thread_exits_when_idle_and_returns() {
    let _serial = serial();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log = options().open(dir).unwrap();
    let rt = runtime();
    let mut reader = log.reader();
    // A wait, so that a thread runs.
    let task = rt.spawn(async move {
        let n = reader.next_async().await.unwrap().len();
        (n, reader)
    });
    std::thread::sleep(Duration::from_millis(50));
    let (started, running) = tidelog::internals::waiter_threads();
    assert!(running && started >= 1);
    finish(producer(dir, 0, 1, 1, 0));
    let (_, mut reader) = rt.block_on(task).unwrap();
    // Nothing waits: the thread goes within about a second.
    let deadline = Instant::now() + Duration::from_secs(10);
    while tidelog::internals::waiter_threads().1 {
        assert!(Instant::now() < deadline, "the waiter thread did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The next wait starts another.
    let task = rt.spawn(async move { reader.next_async().await.unwrap().to_vec() });
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(tidelog::internals::waiter_threads(), (started + 1, true));
    log.appender().unwrap().append(b"again").unwrap();
    assert_eq!(rt.block_on(task).unwrap(), b"again");
    // A runtime shut down with tasks still waiting: nothing hangs, and the
    // waiter thread still goes.
    let mut waiting = log.reader();
    waiting.try_next().unwrap();
    rt.spawn(async move {
        let _ = waiting.next_async().await;
    });
    std::thread::sleep(Duration::from_millis(20));
    rt.shutdown_timeout(Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(10);
    while tidelog::internals::waiter_threads().1 {
        assert!(Instant::now() < deadline, "the waiter thread did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}
