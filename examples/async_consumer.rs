//! An async consumer under tokio, fed by a producer in another process.
//!
//! ```sh
//! cargo run --example async_consumer --features async
//! ```
//!
//! The consumer awaits records with no polling timer: the process's waiter
//! thread sleeps on the log's futex and wakes the task when the producer
//! appends. Shutdown is a `select!` against a signal; `next_async` is
//! cancel-safe, so the record in flight when shutdown wins is not lost: it
//! is read again by the next consumer of the name.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tidelog::{Log, StartAt};

const RECORDS: u64 = 10_000;

fn produce(dir: &Path, n: u64) -> Result<(), tidelog::Error> {
    let log = Log::open(dir)?;
    let mut appender = log.appender()?;
    for i in 0..n {
        appender.append(format!("reading {i}: {} degrees", 15 + i % 10).as_bytes())?;
        if i % 1000 == 999 {
            // Bursts with pauses, so the consumer sleeps in between.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(())
}

async fn consume(dir: &Path) -> Result<u64, tidelog::Error> {
    let log = Log::open(dir)?;
    let mut consumer = log.consumer_from("dashboard", StartAt::Beginning)?;
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    // Shutdown after a quiet second once records flow (the producer
    // process may take a while to start), as a service would on a signal.
    let mut n = 0u64;
    let mut quiet = Box::pin(tokio::time::sleep(Duration::from_secs(30)));
    loop {
        tokio::select! {
            record = consumer.next_async() => {
                let record = record?;
                if n < 3 || n + 1 == RECORDS {
                    println!("{}: {}", record.position(), String::from_utf8_lossy(&record));
                }
                n += 1;
                quiet.as_mut().reset(tokio::time::Instant::now() + Duration::from_secs(1));
            }
            () = &mut quiet => { let _ = stop.send(true); }
            _ = stopped.changed() => break,
        }
    }
    consumer.commit()?;
    println!(
        "consumed {n} records; committed at {}",
        consumer.committed()
    );
    Ok(n)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if let [_, cmd, dir, n] = args.as_slice() {
        if cmd == "produce" {
            produce(Path::new(dir), n.parse()?)?;
            return Ok(());
        }
    }
    let tmp = std::env::temp_dir().join(format!("tidelog-async-example-{}", std::process::id()));
    Log::open(&tmp)?; // create it before either side starts
    let mut producer = Command::new(std::env::current_exe()?)
        .args(["produce", &tmp.display().to_string(), &RECORDS.to_string()])
        .spawn()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()?;
    let n = runtime.block_on(consume(&tmp))?;
    assert!(producer.wait()?.success(), "the producer failed");
    std::fs::remove_dir_all(&tmp)?;
    assert_eq!(n, RECORDS, "every record consumed");
    Ok(())
}
