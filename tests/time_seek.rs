//! Record times and seeks by time: every record carries its append time;
//! `Log::reader_at_time` finds the first record appended at or after a
//! time, on logs of many segments, with retention, and with a producer in
//! another process.

mod common;

use std::time::{Duration, SystemTime};

use common::{arg, arg_u64, role, Proc};
use tidelog::{Log, Options, Retention};

/// Small segments: each phase below spans several.
fn options() -> Options {
    Options::new()
        .segment_capacity(64 << 10)
        .grow_step(16 << 10)
}

fn record(phase: u64, i: u64) -> Vec<u8> {
    let mut r = format!("phase {phase} record {i} ").into_bytes();
    r.resize(40 + (i % 200) as usize, b'.');
    r
}

/// Appends `phases` phases of `per` records with `gap` between them;
/// returns the time of the middle of each gap before a phase (the first
/// one before anything is appended).
fn appended(log: &Log, phases: u64, per: u64, gap: Duration) -> Vec<SystemTime> {
    let mut a = log.appender().unwrap();
    let mut cuts = Vec::new();
    for phase in 0..phases {
        std::thread::sleep(gap / 2);
        cuts.push(SystemTime::now());
        std::thread::sleep(gap / 2);
        for i in 0..per {
            a.append(&record(phase, i)).unwrap();
        }
    }
    cuts
}

/// The gap between phases: the append time is the coarse clock, up to a
/// scheduler tick (4 ms at 250 Hz) behind the precise one.
const GAP: Duration = Duration::from_millis(40);

#[test]
fn seeks_by_time_across_many_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let log = options().open(tmp.path()).unwrap();
    let cuts = appended(&log, 8, 1500, GAP);
    let segments = log.segments().unwrap().len();
    assert!(segments > 20, "{segments} segments");
    for (phase, &cut) in cuts.iter().enumerate() {
        let mut r = log.reader_at_time(cut).unwrap();
        let first = r.try_next().unwrap().expect("a record after the cut");
        assert_eq!(
            &*first,
            record(phase as u64, 0),
            "the first of phase {phase}"
        );
        assert!(first.timestamp() >= cut);
        // And it reads on from there, in order.
        assert_eq!(&*r.try_next().unwrap().unwrap(), record(phase as u64, 1));
    }
    // Before everything: the first record; after: the end, where the next
    // record appended is read.
    let mut r = log
        .reader_at_time(cuts[0] - Duration::from_secs(3600))
        .unwrap();
    assert_eq!(&*r.try_next().unwrap().unwrap(), record(0, 0));
    std::thread::sleep(Duration::from_millis(20));
    let later = SystemTime::now() + Duration::from_millis(10);
    let mut r = log.reader_at_time(later).unwrap();
    assert!(r.try_next().unwrap().is_none());
    assert_eq!(r.position(), log.end_position().unwrap());
    log.appender().unwrap().append(b"after").unwrap();
    assert_eq!(&*r.try_next().unwrap().unwrap(), b"after");
}

#[test]
fn records_carry_their_append_time() {
    let tmp = tempfile::tempdir().unwrap();
    let log = options().open(tmp.path()).unwrap();
    let mut a = log.appender().unwrap();
    let tick = Duration::from_millis(10);
    let before = SystemTime::now();
    a.append(b"one").unwrap();
    let mut r = a.reserve(5).unwrap();
    r.copy_from_slice(b"three");
    std::thread::sleep(Duration::from_millis(30));
    r.commit().unwrap();
    a.append_batch(&[&b"batch a"[..], b"batch b"]).unwrap();
    let after = SystemTime::now();
    let mut reader = log.reader();
    let mut times = Vec::new();
    while let Some(rec) = reader.try_next().unwrap() {
        let t = rec.timestamp();
        assert!(t + tick >= before && t <= after, "{:?}", rec.as_bytes());
        times.push((rec.to_vec(), t));
    }
    assert_eq!(times.len(), 4);
    assert!(times.windows(2).all(|w| w[0].1 <= w[1].1), "in order");
    // A reservation is stamped when it is made, not when it is committed.
    assert!(times[2].1.duration_since(times[1].1).unwrap() >= Duration::from_millis(20));
    // A batch shares one time.
    assert_eq!(times[2].1, times[3].1);
}

#[test]
fn seeks_by_time_after_retention() {
    let tmp = tempfile::tempdir().unwrap();
    let log = options()
        .retention(Retention::new().max_bytes(512 << 10))
        .open(tmp.path())
        .unwrap();
    let cuts = appended(&log, 8, 700, GAP);
    let oldest = log.segments().unwrap()[0].base;
    assert!(oldest.get() > 0, "retention deleted the oldest segments");
    // Phases whose start is gone: the oldest record kept.
    let mut r = log.reader_at_time(cuts[0]).unwrap();
    let first = r.try_next().unwrap().unwrap();
    assert!(first.position() > oldest);
    let mut all = log.reader();
    assert_eq!(
        all.try_next().unwrap().unwrap().position(),
        first.position()
    );
    // The last phases are all there.
    for phase in [5u64, 6, 7] {
        let mut r = log.reader_at_time(cuts[phase as usize]).unwrap();
        assert_eq!(&*r.try_next().unwrap().unwrap(), record(phase, 0));
    }
}

/// Entry point of the child process; ignored in a normal run.
#[test]
#[ignore = "child process entry point, run by the test below"]
fn child() {
    let Some(role) = role() else { return };
    assert_eq!(role, "producer");
    let log = options().open(arg("DIR")).unwrap();
    let mut a = log.appender().unwrap();
    for i in 0..arg_u64("N") {
        a.append(&record(arg_u64("PHASE"), i)).unwrap();
    }
}

#[test]
fn seeks_by_time_among_records_of_other_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let log = options().open(dir).unwrap();
    let mut cuts = Vec::new();
    for phase in 0..4u64 {
        std::thread::sleep(GAP / 2);
        cuts.push(SystemTime::now());
        std::thread::sleep(GAP / 2);
        let mut p = Proc::spawn(
            "producer",
            &[
                ("DIR", dir.display().to_string()),
                ("PHASE", phase.to_string()),
                ("N", "3000".to_string()),
            ],
        );
        assert!(p.child.wait().unwrap().success());
    }
    let ro = options().open_read_only(dir).unwrap();
    for (phase, &cut) in cuts.iter().enumerate() {
        for l in [&log, &ro] {
            let mut r = l.reader_at_time(cut).unwrap();
            assert_eq!(&*r.try_next().unwrap().unwrap(), record(phase as u64, 0));
        }
    }
}

#[test]
fn a_new_consumer_starts_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let log = options().open(tmp.path()).unwrap();
    let cuts = appended(&log, 3, 500, GAP);
    let mut c = log
        .consumer_from("late", tidelog::StartAt::Time(cuts[2]))
        .unwrap();
    assert_eq!(&*c.try_next().unwrap().unwrap(), record(2, 0));
    c.commit().unwrap();
    drop(c);
    // An existing name resumes where it committed, whatever the start says.
    let mut again = log
        .consumer_from("late", tidelog::StartAt::Time(cuts[0]))
        .unwrap();
    assert_eq!(&*again.try_next().unwrap().unwrap(), record(2, 1));
}
