//! Every kind of bad input is its own typed error, and none is a panic.

mod common;

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use tidelog::{Error, Log, Options, Position};

/// A log with `n` records in one segment; returns the segment file and the
/// records' positions.
fn make_log(dir: &Path, n: u64) -> (PathBuf, Vec<Position>) {
    let log = Log::open(dir).unwrap();
    let mut a = log.appender().unwrap();
    let positions = (0..n)
        .map(|i| a.append(format!("record number {i}").as_bytes()).unwrap())
        .collect();
    let seg = log.segments().unwrap()[0].path.clone();
    log.close().unwrap();
    (seg, positions)
}

fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

fn both_modes(dir: &Path) -> [Result<Log, Error>; 2] {
    [Log::open(dir), Log::open_read_only(dir)]
}

#[test]
fn a_regular_file_is_not_a_log() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file");
    fs::write(&file, b"hello").unwrap();
    for r in both_modes(&file) {
        match r {
            Err(e @ Error::NotADirectory { .. }) => {
                assert!(e.to_string().contains("not a directory"))
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_missing_log_cannot_be_opened_read_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nothing");
    assert!(matches!(
        Log::open_read_only(&dir),
        Err(Error::NotFound { .. })
    ));
    assert!(!dir.exists(), "read-only open created the directory");
}

#[test]
fn a_segment_with_another_magic_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (seg, _) = make_log(tmp.path(), 3);
    patch(&seg, 0, b"NOTALOG!");
    for r in both_modes(tmp.path()) {
        match r {
            Err(Error::NotASegment { path }) => assert_eq!(path, seg),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_newer_format_version_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (seg, _) = make_log(tmp.path(), 3);
    patch(&seg, 8, &2u32.to_le_bytes());
    for r in both_modes(tmp.path()) {
        match r {
            Err(
                e @ Error::UnsupportedVersion {
                    found: 2,
                    supported: 1,
                    ..
                },
            ) => {
                assert!(e.to_string().contains("version 2"), "{e}")
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_truncated_header_is_refused() {
    for len in [0u64, 5, 30, 100, 4000] {
        let tmp = tempfile::tempdir().unwrap();
        let (seg, _) = make_log(tmp.path(), 3);
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len)
            .unwrap();
        for r in both_modes(tmp.path()) {
            match r {
                Err(Error::TruncatedHeader { len: l, .. }) => assert_eq!(l, len),
                other => panic!("length {len}: {other:?}"),
            }
        }
    }
}

#[test]
fn a_corrupted_header_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (seg, _) = make_log(tmp.path(), 3);
    patch(&seg, 20, &[0xff]); // inside the capacity field
    let crc = tidelog::format::header::OFF_CRC;
    let stored = u32::from_le_bytes(fs::read(&seg).unwrap()[crc..crc + 4].try_into().unwrap());
    for r in both_modes(tmp.path()) {
        match r {
            Err(
                ref e @ Error::CorruptHeader {
                    reason:
                        tidelog::HeaderDefect::Checksum {
                            stored: s,
                            computed,
                        },
                    ..
                },
            ) => {
                // Both checksums are kept, for whoever looks into it.
                assert_eq!(s, stored);
                assert_ne!(computed, stored);
                assert!(e.to_string().contains(&format!("{stored:#010x}")), "{e}");
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_flipped_byte_mid_log_is_reported_at_its_position() {
    // Small segments, so that the boundary index has a mark every 4 KiB.
    let tmp = tempfile::tempdir().unwrap();
    let opts = Options::new().segment_capacity(64 << 10).grow_step(4096);
    let (seg, positions) = {
        let log = opts.open(tmp.path()).unwrap();
        let mut a = log.appender().unwrap();
        let positions: Vec<Position> = (0..1000)
            .map(|i| a.append(format!("record number {i}").as_bytes()).unwrap())
            .collect();
        let seg = log.segments().unwrap()[0].path.clone();
        assert_eq!(log.segments().unwrap().len(), 1);
        log.close().unwrap();
        (seg, positions)
    };
    let victim = positions[50];
    // Flip a payload byte of record 50 (segment 0 has base 0, so the file
    // offset is the position).
    let off = u64::from(victim) + 8 + 3;
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&seg)
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, off).unwrap();
    f.write_all_at(&[b[0] ^ 0x40], off).unwrap();
    drop(f);
    // Skipping the damage resumes at the first frame at or after the next
    // index mark (8192), never at a boundary guessed from the bytes.
    let resume = positions
        .iter()
        .position(|p| u64::from(*p) >= 8192)
        .unwrap();

    let check = |log: &Log| {
        let mut reader = log.reader();
        for i in 0..50 {
            let r = reader.try_next().unwrap().unwrap();
            assert_eq!(&*r, format!("record number {i}").as_bytes());
        }
        match reader.try_next() {
            Err(e @ Error::ChecksumMismatch { .. }) => {
                assert_eq!(e.position(), Some(victim));
                assert!(e.is_corruption());
                assert!(e.to_string().contains(&victim.to_string()));
            }
            other => panic!("{other:?}"),
        }
        // The reader stays at the damage until told to skip it.
        assert!(reader.try_next().is_err());
        assert_eq!(reader.skip_damaged().unwrap(), positions[resume]);
        for i in resume..1000 {
            let r = reader.try_next().unwrap().unwrap();
            assert_eq!(&*r, format!("record number {i}").as_bytes());
        }
        assert!(reader.try_next().unwrap().is_none());
        // A position between the damage and the mark cannot be proven to
        // be a record's: the walk from the segment's start meets the damage
        // first, and says so.
        let mut r = log.reader_at(positions[51]).unwrap();
        match r.try_next() {
            Err(e @ Error::ChecksumMismatch { .. }) => assert_eq!(e.position(), Some(victim)),
            other => panic!("{:?}", other.map(|o| o.map(|r| r.to_vec()))),
        }
        // One at or past the mark can.
        let mut r = log.reader_at(positions[resume + 1]).unwrap();
        let want = format!("record number {}", resume + 1);
        assert_eq!(&*r.try_next().unwrap().unwrap(), want.as_bytes());
    };
    check(&opts.open_read_only(tmp.path()).unwrap());
    // Pretend the writer crashed: reset the header's `checked` watermark
    // (nothing verified), so that opening for writing runs recovery.
    patch(&seg, 520, &0u64.to_le_bytes());
    // Recovery keeps the damage in place (it is not a torn tail) and keeps
    // every record after it.
    let log = opts.open(tmp.path()).unwrap();
    assert_eq!(log.recovery().damaged_frames, 1, "{:?}", log.recovery());
    check(&log);
    drop(log);
    // A clean close means the next open skips the scan.
    let log = opts.open(tmp.path()).unwrap();
    assert!(!log.recovery().ran);
}

#[test]
fn a_record_over_the_limit_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Options::new()
        .max_record_size(1000)
        .open(tmp.path())
        .unwrap();
    let mut a = log.appender().unwrap();
    a.append(&[7; 1000]).unwrap();
    match a.append(&[7; 1001]) {
        Err(Error::RecordTooLarge {
            len: 1001,
            max: 1000,
        }) => {}
        other => panic!("{other:?}"),
    }
    // Nothing was reserved for it.
    let mut reader = log.reader();
    assert_eq!(reader.try_next().unwrap().unwrap().len(), 1000);
    assert!(reader.try_next().unwrap().is_none());
}

#[test]
fn a_read_only_log_has_no_appender() {
    let tmp = tempfile::tempdir().unwrap();
    make_log(tmp.path(), 1);
    let log = Log::open_read_only(tmp.path()).unwrap();
    assert!(log.is_read_only());
    assert!(matches!(log.appender(), Err(Error::ReadOnly { .. })));
}

#[test]
fn positions_that_are_not_records_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, positions) = make_log(tmp.path(), 10);
    let log = Log::open_read_only(tmp.path()).unwrap();
    for bad in [0, 8, 4097, u64::from(positions[9]) + 4096, u64::MAX] {
        assert!(
            matches!(
                log.reader_at(Position::from(bad)),
                Err(Error::InvalidPosition { .. })
            ),
            "{bad}"
        );
    }
    // The end of the log is a valid place to start.
    let end = log.end_position().unwrap();
    assert!(log.reader_at(end).unwrap().try_next().unwrap().is_none());
}

#[test]
fn invalid_options_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for opts in [
        Options::new().segment_capacity(12345),
        Options::new().segment_capacity(4096),
        Options::new().grow_step(0),
        Options::new()
            .segment_capacity(1 << 20)
            .max_record_size(2 << 20),
    ] {
        assert!(matches!(
            opts.open(tmp.path()),
            Err(Error::InvalidOptions { .. })
        ));
    }
}

#[test]
fn a_header_claiming_more_than_the_file_holds_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (seg, positions) = make_log(tmp.path(), 3);
    // Forge the last record's length to run past the end of the file.
    let last = u64::from(positions[2]);
    let len = fs::metadata(&seg).unwrap().len();
    let fake_len = (len - last) as u32 + 64;
    let word = u64::from(fake_len | (1 << 28));
    patch(&seg, last, &word.to_le_bytes());
    let log = Log::open_read_only(tmp.path()).unwrap();
    let mut reader = log.reader();
    reader.try_next().unwrap().unwrap();
    reader.try_next().unwrap().unwrap();
    match reader.try_next() {
        Err(Error::CorruptFrame { position, .. }) => assert_eq!(position, positions[2]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_position_inside_a_record_never_damages_it() {
    // A made-up position that lands on a zero word inside a published
    // record looks like an unwritten frame. It is refused at once (a walk
    // from the segment's start passes over it), never padded over (that
    // would corrupt an acknowledged record) and never read.
    let tmp = tempfile::tempdir().unwrap();
    let log = Options::new()
        .unblock_timeout(std::time::Duration::ZERO)
        .open(tmp.path())
        .unwrap();
    let mut a = log.appender().unwrap();
    let record = [0u8; 256];
    let pos = a.append(&record).unwrap();
    a.append(b"after").unwrap();
    let inside = Position::from(u64::from(pos) + 8 + 64);
    match log.reader_at(inside) {
        Err(Error::InvalidPosition { position, .. }) => assert_eq!(position, inside),
        other => panic!("{:?}", other.map(|_| "a reader")),
    }
    let mut reader = log.reader_at(pos).unwrap();
    assert_eq!(&*reader.try_next().unwrap().unwrap(), &record[..]);
    assert_eq!(&*reader.try_next().unwrap().unwrap(), b"after");
}

#[test]
fn a_reader_at_an_unpublished_next_position_reads_it_once_published() {
    let tmp = tempfile::tempdir().unwrap();
    let log = Log::open(tmp.path()).unwrap();
    let mut a = log.appender().unwrap();
    a.append(b"one").unwrap();
    // Reserve the next frame, so its position is below the tail but
    // unwritten, and start a reader there.
    let mut r = a.reserve(3).unwrap();
    let next = r.position();
    // Another appender makes the tail move past it.
    log.appender().unwrap().append(b"three").unwrap();
    let mut reader = log.reader_at(next).unwrap();
    assert!(reader.try_next().unwrap().is_none());
    r.copy_from_slice(b"two");
    assert_eq!(r.commit().unwrap(), next);
    assert_eq!(&*reader.try_next().unwrap().unwrap(), b"two");
    assert_eq!(&*reader.try_next().unwrap().unwrap(), b"three");
}
