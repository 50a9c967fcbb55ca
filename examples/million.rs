//! A fixed workload for comparing two versions of the code by instruction
//! counts: appends one million 64-byte records to a fresh log in a
//! temporary directory, then reads them all back.
//!
//! ```sh
//! cargo build --release --example million
//! valgrind --tool=callgrind target/release/examples/million
//! ```
//!
//! An argument sets another count. Instruction counts are repeatable for
//! the same binary whatever else the machine does, unlike timings.

fn main() -> Result<(), tidelog::Error> {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let log = tidelog::Options::new()
        .segment_capacity(256 << 20)
        .open(tmp.path().join("log"))?;
    let mut appender = log.appender()?;
    let record = [0x5Au8; 64];
    for _ in 0..n {
        appender.append(&record)?;
    }
    let mut reader = log.reader();
    let (mut count, mut sum) = (0u64, 0u64);
    while let Some(r) = reader.try_next()? {
        count += 1;
        sum += u64::from(r[63]);
    }
    assert_eq!(count, n, "every record read back");
    println!("{count} records appended and read back (checksum {sum})");
    Ok(())
}
