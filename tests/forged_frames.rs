//! Payloads are untrusted: a record may carry bytes that look exactly like
//! frames checksummed for the positions they sit at. None of them may ever
//! be taken for a frame: not by `reader_at` at a position inside the
//! record, not by `skip_damaged` after the record is damaged, and not by
//! recovery (issue 9, defect 4).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;

use tidelog::format::frame;
use tidelog::{Error, Log, Options, Position};

fn options() -> Options {
    // Small segments: the boundary index has a mark every 4 KiB.
    Options::new().segment_capacity(64 << 10).grow_step(4096)
}

const SMUGGLED: &[u8] = b"smuggled record";
const OUTER_LEN: usize = 600;

/// A log whose fourth record's payload holds a data frame checksummed for
/// the position it sits at, followed by 8-byte padding frames, each valid
/// for its position, up to the end of the record: a walk started anywhere
/// inside the payload chains through forged frames onto the real ones that
/// follow. Returns the records appended (position to payload) and the
/// position of the outer record.
fn smuggling_log(dir: &Path) -> (BTreeMap<u64, Vec<u8>>, u64) {
    let log = options().open(dir).unwrap();
    let mut a = log.appender().unwrap();
    let mut truth = BTreeMap::new();
    for i in 0..3 {
        let p = format!("before {i}").into_bytes();
        truth.insert(a.append(&p).unwrap().get(), p);
    }
    let mut r = a.reserve(OUTER_LEN).unwrap();
    let outer = r.position().get();
    r.fill(0xAB);
    // Record byte j sits at position outer + 16 + j (after the frame's
    // header and the record's append time).
    let inner_at = 64;
    let mut forged = Vec::new();
    frame::encode_record(outer + 16 + inner_at as u64, 1, SMUGGLED, &mut forged);
    r[inner_at..inner_at + forged.len()].copy_from_slice(&forged);
    let mut j = inner_at + forged.len();
    while j + 8 <= OUTER_LEN {
        let w = frame::padding_word(outer + 16 + j as u64, 0);
        r[j..j + 8].copy_from_slice(&w.to_le_bytes());
        j += 8;
    }
    let payload = r.to_vec();
    assert_eq!(r.commit().unwrap().get(), outer);
    truth.insert(outer, payload);
    // Enough records after it to cross the next index marks.
    for i in 0..300 {
        let p = format!("after {i}").into_bytes();
        truth.insert(a.append(&p).unwrap().get(), p);
    }
    drop(a);
    log.close().unwrap();
    (truth, outer)
}

/// Reads the log from its start, skipping damage; checks that every record
/// handed out is one that was appended, at its position, and returns how
/// many were read and how many damaged frames were skipped.
fn read_checked(log: &Log, truth: &BTreeMap<u64, Vec<u8>>) -> (usize, usize) {
    let mut r = log.reader();
    let (mut n, mut damaged) = (0, 0);
    for _ in 0..10_000 {
        match r.try_next() {
            Ok(Some(rec)) => {
                assert_ne!(&*rec, SMUGGLED, "a forged frame was handed out");
                let p = rec.position().get();
                assert_eq!(
                    truth.get(&p).map(Vec::as_slice),
                    Some(&*rec),
                    "record at {p} was never appended there"
                );
                n += 1;
            }
            Ok(None) => return (n, damaged),
            Err(e) => {
                assert!(e.is_corruption(), "{e}");
                damaged += 1;
                let at = r.position();
                let to = r.skip_damaged().unwrap();
                assert!(to > at, "skip_damaged did not move from {at}");
            }
        }
    }
    panic!("the reader did not reach the end");
}

#[test]
fn reader_at_a_position_inside_a_record_is_refused_even_where_a_frame_is_forged() {
    let tmp = tempfile::tempdir().unwrap();
    let (truth, outer) = smuggling_log(tmp.path());
    for log in [
        options().open_read_only(tmp.path()).unwrap(),
        options().open(tmp.path()).unwrap(),
    ] {
        // Every 8-byte position inside the outer record, the forged data
        // frame's and the forged padding frames' included.
        for p in (outer + 8..outer + 16 + OUTER_LEN as u64).step_by(8) {
            match log.reader_at(Position::from(p)) {
                Err(Error::InvalidPosition { position, .. }) => assert_eq!(position.get(), p),
                Err(e) => panic!("{p}: {e}"),
                Ok(mut r) => panic!(
                    "{p}: a reader, which reads {:?}",
                    r.try_next().map(|o| o.map(|r| r.to_vec()))
                ),
            }
        }
        // Real positions are accepted, wherever the walk starts.
        for (&p, payload) in &truth {
            let mut r = log.reader_at(Position::from(p)).unwrap();
            assert_eq!(&*r.try_next().unwrap().unwrap(), &payload[..], "{p}");
        }
    }
}

/// Flips bit `bit` of the outer record's frame (bit 0 is the lowest bit of
/// its header word) in a copy of the log.
fn flipped_copy(src: &Path, dst: &Path, outer: u64, bit: u64) {
    fs::create_dir_all(dst).unwrap();
    for e in fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    // Segment 0 has base 0: the file offset is the position.
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dst.join("0000000000000000.tlog"))
        .unwrap();
    let at = outer + bit / 8;
    let mut b = [0u8];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= 1 << (bit % 8);
    f.write_all_at(&b, at).unwrap();
}

/// The bits flipped: every bit of the header word (the 28 length bits move
/// the frame's end into the forged frames or past them), and payload bits
/// before, inside and after the forged data frame.
fn bits() -> Vec<u64> {
    let mut v: Vec<u64> = (0..64).collect();
    v.extend([
        8 * 8 + 5,
        (8 + 64) * 8 + 3,
        (8 + 70) * 8,
        (8 + 200) * 8 + 7,
        (8 + 599) * 8 + 1,
    ]);
    v
}

#[test]
fn skip_damaged_never_hands_out_a_forged_frame_after_a_bit_flip() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("log");
    let (truth, outer) = smuggling_log(&src);
    for bit in bits() {
        let dst = tmp.path().join(format!("flip{bit}"));
        flipped_copy(&src, &dst, outer, bit);
        let log = options().open_read_only(&dst).unwrap();
        let (n, damaged) = read_checked(&log, &truth);
        // Flips of the in-progress bit or the kind can leave a frame that
        // is no longer data; every flip is noticed somehow.
        assert!(damaged >= 1, "bit {bit}: flip went unnoticed ({n} records)");
        // The three records before the damage are always read, and the
        // reader gets past the damage to records appended after it.
        assert!(n >= 3 + 100, "bit {bit}: only {n} records");
    }
}

#[test]
fn recovery_never_keeps_a_forged_frame_after_a_bit_flip() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("log");
    let (truth, outer) = smuggling_log(&src);
    for bit in bits() {
        let dst = tmp.path().join(format!("flip{bit}"));
        flipped_copy(&src, &dst, outer, bit);
        // Pretend the writer crashed, so that recovery reads everything.
        let f = fs::OpenOptions::new()
            .write(true)
            .open(dst.join("0000000000000000.tlog"))
            .unwrap();
        f.write_all_at(&0u64.to_le_bytes(), 520).unwrap();
        drop(f);
        let log = options().open(&dst).unwrap();
        assert!(log.recovery().ran);
        let (n, _) = read_checked(&log, &truth);
        assert!(n >= 3 + 100, "bit {bit}: only {n} records");
        // Appends after recovery are read after everything that survived.
        let pos = log.appender().unwrap().append(b"later").unwrap();
        let mut r = log.reader_at(pos).unwrap();
        assert_eq!(&*r.try_next().unwrap().unwrap(), b"later");
        drop(log);
        let log = options().open(&dst).unwrap();
        let mut truth = truth.clone();
        truth.insert(pos.get(), b"later".to_vec());
        read_checked(&log, &truth);
    }
}
