//! Small logs stay small: a log's first segment starts at 64 KiB of disk
//! and doubles as it fills, up to the growth step, instead of reserving a
//! whole step (64 MiB by default) for its first record.

mod common;

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use tidelog::{Log, Options};

/// Bytes of disk the files of `dir` take (allocated blocks).
fn disk_use(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().blocks() * 512)
        .sum()
}

#[test]
fn a_one_record_log_takes_little_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let log = Log::open(&dir).unwrap();
    log.appender()
        .unwrap()
        .append(b"19 bytes of payload")
        .unwrap();
    log.close().unwrap();
    let used = disk_use(&dir);
    common::note(format!(
        "a one-record log with default options takes {used} bytes of disk"
    ));
    assert!(used <= 1 << 20, "a one-record log takes {used} bytes");
    // And reopening it does not grow it.
    drop(Log::open(&dir).unwrap());
    assert_eq!(disk_use(&dir), used);
}

#[test]
fn a_growing_log_doubles_up_to_its_step() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let log = Options::new()
        .segment_capacity(64 << 20)
        .grow_step(4 << 20)
        .open(&dir)
        .unwrap();
    let mut a = log.appender().unwrap();
    let record = vec![7u8; 1000];
    let seg = dir.join(format!("{:016x}.tlog", 0));
    let mut lens = vec![std::fs::metadata(&seg).unwrap().len()];
    let mut written = 0u64;
    while written < 20 << 20 {
        a.append(&record).unwrap();
        written += 1008;
        let len = std::fs::metadata(&seg).unwrap().len();
        if len != *lens.last().unwrap() {
            lens.push(len);
            // Never more than twice what the records need (or the first
            // growth, or one step ahead).
            let need = 4096 + written;
            assert!(
                len <= (2 * need).max(4096 + (64 << 10)) || len <= need + (4 << 20),
                "{len} bytes for {need}"
            );
        }
    }
    // Doubling from 68 KiB, then 4 MiB steps.
    assert_eq!(lens[0], 4096 + (64 << 10), "{lens:?}");
    assert!(lens.windows(2).all(|w| w[1] - w[0] <= 4 << 20), "{lens:?}");
    assert!(lens.windows(2).any(|w| w[1] - w[0] == 4 << 20), "{lens:?}");
    common::note(format!("file lengths as a log grew to 20 MiB: {lens:?}"));
    drop(a);
    let mut r = log.reader();
    let mut n = 0;
    while r.try_next().unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n * 1008, written);
}
