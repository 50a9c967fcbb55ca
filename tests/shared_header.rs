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

/// The log of these tests: a segment whose first 64 KiB of data are full
/// of 64-byte frames up to `room` bytes before the end of the file, read to
/// the end by `reader` (which now knows the file's length as it was), and
/// the length of the file then.
fn full_first_step(dir: &Path, room: u64) -> (Log, Log, tidelog::Reader, u64) {
    let opts = Options::new().grow_step(64 << 10);
    let writer = opts.open(dir).unwrap();
    let path = seg0(dir);
    let old_len = std::fs::metadata(&path).unwrap().len();
    let mut a = writer.appender().unwrap();
    while u64::from(writer.end_position().unwrap()) < old_len - room {
        a.append(&[1u8; 48]).unwrap();
    }
    assert_eq!(u64::from(writer.end_position().unwrap()), old_len - room);
    let reader_log = opts.open_read_only(dir).unwrap();
    let mut reader = reader_log.reader();
    while reader.try_next().unwrap().is_some() {}
    assert_eq!(std::fs::metadata(&path).unwrap().len(), old_len);
    (writer, reader_log, reader, old_len)
}

/// What another writer does when it grows the file and is stopped (or
/// killed) before it raises the `grown` hint.
fn grow_behind_the_hint(dir: &Path, by: u64) {
    let path = seg0(dir);
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    let len = f.metadata().unwrap().len();
    fs2::FileExt::allocate(&f, len + by).unwrap();
}

fn grown_hint(dir: &Path) -> u64 {
    let mut b = [0u8; 8];
    File::open(seg0(dir))
        .unwrap()
        .read_exact_at(&mut b, OFF_GROWN as u64)
        .unwrap();
    u64::from_le_bytes(b)
}

fn set_grown_hint(dir: &Path, v: u64) {
    OpenOptions::new()
        .write(true)
        .open(seg0(dir))
        .unwrap()
        .write_all_at(&v.to_le_bytes(), OFF_GROWN as u64)
        .unwrap();
}

#[test]
fn a_record_across_the_length_a_reader_knew_is_read_whatever_the_hint_says() {
    // A writer that has learnt a longer length from the kernel may publish
    // a record across the old end of the file before the `grown` hint says
    // so. Found by review: a reader that knew only the old length trusted
    // the hint, skipped the fstat and reported the record as running past
    // the end of its file. The hint is set back by hand here, standing in
    // for a writer stopped between its fallocate and its hint.
    let tmp = tempfile::tempdir().unwrap();
    let (writer, _ro, mut reader, old_len) = full_first_step(tmp.path(), 64);
    grow_behind_the_hint(tmp.path(), 64 << 10);
    // The writer learns the new length (any fstat does: here the segment
    // summary), which raises the hint; then the hint is set back.
    assert_eq!(writer.segments().unwrap()[0].file_len, old_len + (64 << 10));
    set_grown_hint(tmp.path(), old_len);
    // The next record starts 64 bytes before the old end and ends past it.
    let mut a = writer.appender().unwrap();
    let pos = u64::from(a.append(&[2u8; 100]).unwrap());
    assert!(pos < old_len && pos + 8 + 100 > old_len, "{pos} {old_len}");
    let r = reader
        .try_next()
        .unwrap_or_else(|e| panic!("record across the old end: {e}"))
        .expect("record across the old end");
    assert_eq!(&*r, &[2u8; 100][..]);
}

#[test]
fn a_writer_that_opens_after_an_unannounced_growth_announces_it() {
    // A writer that grew the file and died before raising the hint; a new
    // writer process opens the log (not alone, so no recovery), sees the
    // longer file and appends there without growing it. Found by review:
    // nobody raised the hint, and readers that knew the old length waited
    // at its end (the hint said nothing had grown) until the new writer
    // grew the file itself, a whole growth step later.
    let tmp = tempfile::tempdir().unwrap();
    let (writer, _ro, mut reader, old_len) = full_first_step(tmp.path(), 0);
    grow_behind_the_hint(tmp.path(), 64 << 10);
    assert_eq!(grown_hint(tmp.path()), old_len);
    let second = Options::new().grow_step(64 << 10).open(tmp.path()).unwrap();
    assert!(!second.recovery().ran);
    assert_eq!(grown_hint(tmp.path()), old_len + (64 << 10));
    let pos = second
        .appender()
        .unwrap()
        .append(b"past the old end")
        .unwrap();
    assert_eq!(u64::from(pos), old_len);
    let r = reader.try_next().unwrap().expect("record past the old end");
    assert_eq!(&*r, b"past the old end");
    drop(writer);
}
