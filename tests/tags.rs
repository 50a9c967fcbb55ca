//! Tagged records: a tag published in the same frame as its record, kept
//! beside the record's bytes, and found again from the log's end by
//! `Log::last_tag`, also after the appender was killed mid-append.

mod common;

use common::{arg, arg_u64, role, Proc, Rng};
use tidelog::{Error, Options, Retention};

fn options() -> Options {
    Options::new()
        .segment_capacity(64 << 10)
        .grow_step(16 << 10)
}

fn body(tag: u64) -> Vec<u8> {
    common::payload(0x7a6, tag, 300)
}

#[test]
fn tags_travel_beside_the_records_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let log = options().open(tmp.path()).unwrap();
    let mut a = log.appender().unwrap();
    let mut expect = Vec::new();
    let mut rng = Rng(5);
    // Across rollovers: tagged and plain records mixed, tags in any order.
    for i in 0..3000u64 {
        let b = body(i);
        if rng.below(3) == 0 {
            a.append(&b).unwrap();
            expect.push((None, b));
        } else {
            let tag = rng.next_u64();
            a.append_tagged(tag, &b).unwrap();
            expect.push((Some(tag), b));
        }
    }
    assert!(log.segments().unwrap().len() > 5);
    let mut r = log.reader();
    let mut last = None;
    for (tag, b) in &expect {
        let rec = r.try_next().unwrap().unwrap();
        assert_eq!((rec.tag(), rec.as_bytes()), (*tag, &b[..]));
        if let Some(t) = rec.tag() {
            last = Some((rec.position(), t));
        }
        let owned = tidelog::OwnedRecord::from(rec);
        assert_eq!(owned.tag(), *tag);
    }
    assert!(r.try_next().unwrap().is_none());
    assert_eq!(log.last_tag().unwrap(), last);
    drop(a);
    drop(log);
    // Reopened, and read-only.
    assert_eq!(
        options().open(tmp.path()).unwrap().last_tag().unwrap(),
        last
    );
    let ro = options().open_read_only(tmp.path()).unwrap();
    assert_eq!(ro.last_tag().unwrap(), last);
}

#[test]
fn last_tag_looks_back_past_untagged_records_and_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let log = options().open(tmp.path()).unwrap();
    let mut a = log.appender().unwrap();
    assert_eq!(log.last_tag().unwrap(), None);
    let at = a.append_tagged(u64::MAX, b"the only tagged one").unwrap();
    // Many segments of plain records after it: the search walks back
    // through every index stride and segment.
    for i in 0..5000u64 {
        a.append(&body(i)).unwrap();
    }
    assert!(log.segments().unwrap().len() > 10);
    assert_eq!(log.last_tag().unwrap(), Some((at, u64::MAX)));
    // Retention deleted the segment that held it: no tag left.
    drop(a);
    drop(log);
    let log = options()
        .retention(Retention::new().max_bytes(128 << 10))
        .open(tmp.path())
        .unwrap();
    log.appender()
        .unwrap()
        .append(b"trigger retention")
        .unwrap();
    log.apply_retention().unwrap();
    assert!(log.segments().unwrap()[0].base.get() > 0);
    assert_eq!(log.last_tag().unwrap(), None);
}

#[test]
fn a_tag_counts_against_the_record_size_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let log = options().max_record_size(1000).open(tmp.path()).unwrap();
    let mut a = log.appender().unwrap();
    a.append(&[1; 1000]).unwrap();
    a.append_tagged(1, &[1; 992]).unwrap();
    match a.append_tagged(2, &[1; 993]) {
        Err(Error::RecordTooLarge { len: 993, max: 992 }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(log.last_tag().unwrap().unwrap().1, 1);
}

#[test]
fn a_damaged_tag_is_caught_by_the_crc() {
    let tmp = tempfile::tempdir().unwrap();
    let log = options().open(tmp.path()).unwrap();
    let at = log
        .appender()
        .unwrap()
        .append_tagged(0x55, b"payload")
        .unwrap();
    drop(log);
    // The tag's first byte: header word (8), time (8), then the tag.
    let file = tmp.path().join("0000000000000000.tlog");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[at.get() as usize + 16] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    let ro = options().open_read_only(tmp.path()).unwrap();
    assert!(matches!(
        ro.reader().try_next(),
        Err(Error::ChecksumMismatch { .. })
    ));
    assert!(matches!(ro.last_tag(), Err(Error::ChecksumMismatch { .. })));
}

/// Entry point of the child process; ignored in a normal run.
#[test]
#[ignore = "child process entry point, run by the test below"]
fn child() {
    let Some(role) = role() else { return };
    assert_eq!(role, "tagger");
    let log = options().open(arg("DIR")).unwrap();
    let mut a = log.appender().unwrap();
    // Resume after the last tag, as the NATS bridge's ingest does.
    let mut next = log.last_tag().unwrap().map_or(0, |(_, t)| t + 1);
    common::say(format!("from {next}"));
    let until = arg_u64("UNTIL");
    while next < until {
        a.append_tagged(next, &body(next)).unwrap();
        next += 1;
    }
    common::say("done");
}

/// An appender killed at random moments, restarted each time from the log's
/// last tag, leaves every tag exactly once, in order, each beside its own
/// record: the tag and its record are published together or not at all.
#[test]
fn killed_taggers_resume_from_the_last_tag() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let until = 40_000u64;
    let mut rng = Rng(0x7a65);
    let mut resumed = Vec::new();
    for round in 0.. {
        let mut p = Proc::spawn(
            "tagger",
            &[
                ("DIR", dir.display().to_string()),
                ("UNTIL", until.to_string()),
            ],
        );
        let from: u64 = common::hear(&mut p.out).unwrap()[5..].parse().unwrap();
        resumed.push(from);
        if round < 12 {
            std::thread::sleep(std::time::Duration::from_micros(rng.below(40_000)));
            let _ = p.child.kill();
            let _ = p.child.wait();
        } else {
            assert_eq!(common::hear(&mut p.out).as_deref(), Some("done"));
            assert!(p.child.wait().unwrap().success());
            break;
        }
    }
    let log = options().open(&dir).unwrap();
    let mut r = log.reader();
    let mut n = 0u64;
    while let Some(rec) = r.try_next().unwrap() {
        assert_eq!(rec.tag(), Some(n), "records out of order or duplicated");
        assert_eq!(rec.as_bytes(), &body(n)[..]);
        n += 1;
    }
    assert_eq!(n, until);
    // The rounds made progress and some were killed mid-run.
    assert!(resumed.windows(2).all(|w| w[0] <= w[1]), "{resumed:?}");
    assert!(
        resumed.iter().filter(|&&f| f > 0 && f < until).count() >= 3,
        "{resumed:?}"
    );
}
