//! A producer and a consumer in two processes, sharing a log directory.
//!
//! ```sh
//! cargo run --example pair            # runs both: the consumer as a child process
//! cargo run --example pair -- produce /tmp/orders 1000
//! cargo run --example pair -- consume /tmp/orders
//! ```
//!
//! The consumer is durable: it commits how far it got under the name
//! `billing`, so a second run prints only what was appended since.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tidelog::{Log, StartAt};

fn produce(dir: &Path, n: u64) -> Result<(), tidelog::Error> {
    let log = Log::open(dir)?;
    let mut appender = log.appender()?;
    for i in 0..n {
        appender.append(format!("order {i}: {} widgets", i % 7 + 1).as_bytes())?;
    }
    // Not needed for other processes to see the records (they do as soon
    // as `append` returns); this makes them survive a power cut.
    log.sync()?;
    Ok(())
}

fn consume(dir: &Path) -> Result<(), tidelog::Error> {
    let log = Log::open(dir)?;
    let mut consumer = log.consumer_from("billing", StartAt::Beginning)?;
    let mut n = 0;
    // Stop once nothing new arrives for half a second.
    while let Some(record) = consumer.next_timeout(Duration::from_millis(500))? {
        if n < 3 {
            println!(
                "{}: {}",
                record.position(),
                String::from_utf8_lossy(&record)
            );
        }
        n += 1;
    }
    consumer.commit()?;
    println!(
        "consumed {n} records; committed at {}",
        consumer.committed()
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("produce") => produce(
            Path::new(&args[1]),
            args.get(2).map_or(Ok(1000), |n| n.parse())?,
        )?,
        Some("consume") => consume(Path::new(&args[1]))?,
        _ => {
            let tmp = tempfile::tempdir()?;
            let dir = tmp.path().join("orders");
            // The consumer first, in another process: it waits for records.
            let consumer = Command::new(std::env::current_exe()?)
                .arg("consume")
                .arg(&dir)
                .spawn()?;
            std::thread::sleep(Duration::from_millis(100));
            produce(&dir, 1000)?;
            let status = consumer.wait_with_output()?.status;
            assert!(status.success(), "the consumer failed: {status}");
        }
    }
    Ok(())
}
