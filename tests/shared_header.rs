//! The shared words of a segment header when the processes that use them
//! fail or lag: a reader killed while parked, a writer that grew the file
//! and has not yet said so.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tidelog::format::header::{OFF_GROWN, OFF_PARKED};
use tidelog::{Log, Options};

fn seg0(dir: &Path) -> PathBuf {
    dir.join(format!("{:016x}.tlog", 0))
}

fn u32_at(path: &Path, off: usize) -> u32 {
    let mut b = [0u8; 4];
    File::open(path)
        .unwrap()
        .read_exact_at(&mut b, off as u64)
        .unwrap();
    u32::from_le_bytes(b)
}

#[test]
fn a_reader_killed_while_parked_costs_one_wake_up() {
    // A reader that parks sets the `parked` flag; a reader killed while
    // parked never clears anything. Found by review: with a count of
    // parked readers instead of a flag, the count stayed above zero for
    // good and every append to the segment paid a futex system call.
    // Here the dead reader is simulated by setting the flag in the file.
    let tmp = tempfile::tempdir().unwrap();
    let log = Log::open(tmp.path()).unwrap();
    let mut a = log.appender().unwrap();
    a.append(b"first").unwrap();
    let path = seg0(tmp.path());
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .write_all_at(&1u32.to_le_bytes(), OFF_PARKED as u64)
        .unwrap();
    assert_eq!(u32_at(&path, OFF_PARKED), 1);
    a.append(b"second").unwrap();
    assert_eq!(
        u32_at(&path, OFF_PARKED),
        0,
        "the append that woke the (dead) reader must clear the flag"
    );
}

#[test]
fn a_record_past_the_length_a_reader_knew_is_read_before_the_hint_is_raised() {
    // A writer grows the file with fallocate and only then raises the
    // `grown` hint; another writer that has learnt the new length (by an
    // fstat) may publish a record across the old end before that. Found by
    // review: a reader that knew only the old length then trusted the
    // unraised hint, skipped the fstat and reported the record as running
    // past the end of its file. Two handles stand in for the processes:
    // each has its own mapping and its own idea of the file's length.
    let tmp = tempfile::tempdir().unwrap();
    let opts = Options::new().grow_step(64 << 10);
    let writer = opts.open(tmp.path()).unwrap();
    drop(writer.appender().unwrap());
    let reader_log = opts.open_read_only(tmp.path()).unwrap();
    let mut reader = reader_log.reader();
    assert!(reader.try_next().unwrap().is_none());
    let path = seg0(tmp.path());
    let old_len = std::fs::metadata(&path).unwrap().len();
    let mut grown = [0u8; 8];
    File::open(&path)
        .unwrap()
        .read_exact_at(&mut grown, OFF_GROWN as u64)
        .unwrap();
    assert_eq!(u64::from_le_bytes(grown), old_len);

    // The "other writer": grows the file, is stopped before its hint.
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    fs2::FileExt::allocate(&f, old_len + (64 << 10)).unwrap();
    drop(f);
    // This writer learns the new length (any fstat does: here the segment
    // summary), then appends across the old end without growing.
    assert_eq!(writer.segments().unwrap()[0].file_len, old_len + (64 << 10));
    let mut a = writer.appender().unwrap();
    let payload = [0x5Au8; 100];
    let mut n = 0u64;
    let mut crossed = false;
    while !crossed {
        let pos = u64::from(a.append(&payload).unwrap());
        crossed = pos + 8 + 100 > old_len;
        n += 1;
    }
    for i in 0..n {
        let r = reader
            .try_next()
            .unwrap_or_else(|e| panic!("record {i} of {n}: {e}"))
            .unwrap_or_else(|| panic!("record {i} of {n} missing"));
        assert_eq!(&*r, &payload[..]);
    }
}
