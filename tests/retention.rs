//! Retention: whole sealed segments deleted oldest first, never past a
//! durable consumer unless told to, safe with readers inside deleted
//! segments and with several processes applying it at once; long-lived
//! handles let go of deleted segments so that their space is freed.

mod common;

use std::io::BufReader;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{arg, arg_u64, hear, hear_all, role, say, spawn};
use tidelog::{Error, Log, Options, Position, Retention, StartAt};

const CAPACITY: u64 = 64 << 10;

fn options() -> Options {
    Options::new()
        .segment_capacity(CAPACITY)
        .grow_step(CAPACITY)
}

fn record(i: u64) -> Vec<u8> {
    let mut r = i.to_le_bytes().to_vec();
    r.resize(500, (i % 251) as u8);
    r
}

fn index_of(r: &[u8]) -> u64 {
    u64::from_le_bytes(r[..8].try_into().unwrap())
}

fn segment_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tlog")
        })
        .count()
}

/// Mappings of `pid` of files in `dir` that were deleted.
fn deleted_mappings(pid: u32, dir: &Path) -> usize {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let dir = dir.to_str().unwrap();
    let mut seen: Vec<&str> = maps
        .lines()
        .filter(|l| l.contains(dir) && l.ends_with("(deleted)"))
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    seen.sort_unstable();
    seen.dedup();
    seen.len()
}

#[test]
#[ignore = "child process entry point, run by the tests below"]
fn child() {
    let Some(role) = role() else { return };
    let dir = arg("DIR");
    match role.as_str() {
        // Reads every record from the start, one at a time, pausing when
        // told, and says where it is.
        "slow-reader" => {
            let log = Log::open_read_only(&dir).unwrap();
            let mut r = log.reader();
            let pause_at = arg_u64("PAUSE_AT");
            let total = arg_u64("TOTAL");
            let mut stdin = String::new();
            for i in 0..total {
                if i == pause_at {
                    say("paused");
                    std::io::stdin().read_line(&mut stdin).unwrap();
                }
                let rec = r
                    .next_timeout(Duration::from_secs(10))
                    .unwrap_or_else(|e| panic!("record {i}: {e}"))
                    .expect("a record within 10 s");
                assert_eq!(index_of(&rec), i, "records skipped");
                assert_eq!(&*rec, &record(i)[..]);
            }
            say(format!(
                "read {total} {}",
                deleted_mappings(std::process::id(), Path::new(&dir))
            ));
        }
        // Applies retention once, at a moment the parent chose.
        "trimmer" => {
            let log = options().open(&dir).unwrap();
            let mut stdin = String::new();
            say("ready");
            std::io::stdin().read_line(&mut stdin).unwrap();
            let r = log
                .apply_retention_with(Retention::new().max_bytes(arg_u64("MAX")), false)
                .unwrap();
            say(format!("deleted {}", r.segments_deleted));
        }
        // Appends for ever, with retention at every rollover.
        "producer" => {
            let log = options()
                .retention(
                    Retention::new()
                        .max_bytes(4 * CAPACITY)
                        .past_consumers(true),
                )
                .open(&dir)
                .unwrap();
            let mut a = log.appender().unwrap();
            say("producing");
            for i in 0.. {
                a.append(&record(i)).unwrap();
                if i % 64 == 0 {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
        // Consumes for ever as a durable consumer, committing as it goes.
        "consumer" => {
            let log = Log::open_read_only(&dir).unwrap();
            let mut c = log.consumer("tail").unwrap();
            say("consuming");
            loop {
                match c.next_timeout(Duration::from_millis(100)) {
                    Ok(Some(_)) => {
                        c.commit().unwrap();
                    }
                    Ok(None) => {}
                    // Cut by the producer's retention, which may pass
                    // consumers: start again at the oldest kept.
                    Err(Error::Retired { .. }) => {
                        drop(c);
                        log.reset_consumer("tail", StartAt::Beginning).unwrap();
                        c = log.consumer("tail").unwrap();
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        }
        other => panic!("unknown role {other}"),
    }
}

/// A log of `n` records of 500 bytes, about 120 to a 64 KiB segment.
fn filled(dir: &Path, n: u64) -> Vec<Position> {
    let log = options().open(dir).unwrap();
    let mut a = log.appender().unwrap();
    let p = (0..n).map(|i| a.append(&record(i)).unwrap()).collect();
    drop(a);
    log.close().unwrap();
    p
}

#[test]
fn retention_deletes_oldest_sealed_segments_and_names_the_oldest_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let pos = filled(&dir, 1200);
    assert!(segment_count(&dir) >= 10);
    let log = options()
        .retention(Retention::new().max_bytes(3 * CAPACITY))
        .open(&dir)
        .unwrap();
    let report = log.apply_retention().unwrap();
    assert!(report.segments_deleted >= 7, "{report:?}");
    assert_eq!(segment_count(&dir), 3);
    assert!(report.bytes_freed >= 7 * (CAPACITY - 4096));
    // What is left reads without error, from the oldest kept.
    let mut r = log.reader();
    let first = r.try_next().unwrap().unwrap();
    assert_eq!(first.position(), report.oldest);
    let first_kept = index_of(&first) as usize;
    let mut n = 1;
    while let Some(rec) = r.try_next().unwrap() {
        assert_eq!(index_of(&rec) as usize, first_kept + n);
        n += 1;
    }
    assert_eq!(first_kept + n, 1200);
    // A position that was deleted is an error naming the oldest kept one.
    match log.reader_at(pos[0]) {
        Err(e @ Error::Retired { .. }) => {
            assert!(e.to_string().contains(&report.oldest.to_string()), "{e}");
            assert_eq!(e.position(), Some(pos[0]));
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    // Nothing more to delete; the newest segment is never deleted.
    assert_eq!(log.apply_retention().unwrap().segments_deleted, 0);
    let all = log
        .apply_retention_with(Retention::new().max_bytes(0), false)
        .unwrap();
    assert_eq!(all.segments_deleted, 2);
    assert_eq!(segment_count(&dir), 1);
}

#[test]
fn retention_never_passes_a_durable_consumer_unless_told_to() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    filled(&dir, 1200);
    let log = options().open(&dir).unwrap();
    {
        let mut slow = log.consumer("slow").unwrap();
        for _ in 0..300 {
            slow.try_next().unwrap().unwrap();
        }
        slow.commit().unwrap();
    }
    let keep_little = Retention::new().max_bytes(CAPACITY);
    let r = log.apply_retention_with(keep_little, false).unwrap();
    // Only the segments "slow" has read entirely.
    assert_eq!(r.held_back_by.as_deref(), Some("slow"));
    assert!(r.segments_deleted >= 1 && r.segments_deleted <= 2, "{r:?}");
    let mut slow = log.consumer("slow").unwrap();
    assert_eq!(index_of(&slow.try_next().unwrap().unwrap()), 300);
    drop(slow);
    // Deleting the consumer lets retention proceed.
    log.delete_consumer("slow").unwrap();
    let r = log.apply_retention_with(keep_little, false).unwrap();
    assert!(r.held_back_by.is_none() && r.segments_deleted > 2, "{r:?}");
    // Told to pass consumers, it does; the cut consumer hears of it.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    filled(&dir, 1200);
    let log = options().open(&dir).unwrap();
    drop(log.consumer("behind").unwrap());
    let r = log
        .apply_retention_with(keep_little.past_consumers(true), false)
        .unwrap();
    assert!(r.segments_deleted > 5 && r.held_back_by.is_none());
    match log.consumer("behind") {
        Err(Error::Retired { oldest, .. }) => assert_eq!(oldest, r.oldest),
        other => panic!("{:?}", other.map(|c| c.committed())),
    }
    log.reset_consumer("behind", StartAt::Beginning).unwrap();
    let mut c = log.consumer("behind").unwrap();
    assert_eq!(c.try_next().unwrap().unwrap().position(), r.oldest);
}

#[test]
fn a_reader_process_inside_a_deleted_segment_reads_every_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let pos = filled(&dir, 250);
    // Segment 0 holds the first ~120 records.
    let mut reader = spawn(
        "child",
        "slow-reader",
        &[
            ("DIR", dir.to_str().unwrap().to_owned()),
            ("PAUSE_AT", "60".to_owned()),
            ("TOTAL", "250".to_owned()),
        ],
    );
    let mut stdin = reader.stdin.take();
    let mut out = BufReader::new(reader.stdout.take().unwrap());
    assert_eq!(hear(&mut out).as_deref(), Some("paused"));
    // Delete segment 0, which the reader is inside, and only it.
    let log = options().open(&dir).unwrap();
    let seg0 = log.segments().unwrap()[0].file_len;
    let total: u64 = log.segments().unwrap().iter().map(|s| s.file_len).sum();
    let r = log
        .apply_retention_with(Retention::new().max_bytes(total - seg0), false)
        .unwrap();
    assert_eq!(r.segments_deleted, 1, "{r:?}");
    assert!(matches!(log.reader_at(pos[0]), Err(Error::Retired { .. })));
    drop(stdin.take());
    let lines = hear_all(&mut out);
    assert!(reader.wait().unwrap().success());
    // Every record read, and the deleted segment let go of at the end.
    assert_eq!(lines, vec!["read 250 0".to_owned()]);
}

#[test]
fn two_processes_applying_retention_at_once_delete_nothing_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    filled(&dir, 1200);
    let before = segment_count(&dir);
    let spawn_trimmer = || {
        spawn(
            "child",
            "trimmer",
            &[
                ("DIR", dir.to_str().unwrap().to_owned()),
                ("MAX", (3 * CAPACITY).to_string()),
            ],
        )
    };
    let mut a = spawn_trimmer();
    let mut b = spawn_trimmer();
    let mut ao = BufReader::new(a.stdout.take().unwrap());
    let mut bo = BufReader::new(b.stdout.take().unwrap());
    assert_eq!(hear(&mut ao).as_deref(), Some("ready"));
    assert_eq!(hear(&mut bo).as_deref(), Some("ready"));
    // Go: both at once.
    drop((a.stdin.take(), b.stdin.take()));
    let count = |l: Option<String>| -> usize {
        l.unwrap()
            .strip_prefix("deleted ")
            .unwrap()
            .parse()
            .unwrap()
    };
    let (da, db) = (count(hear(&mut ao)), count(hear(&mut bo)));
    assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
    assert_eq!(da + db, before - 3, "deleted {da} and {db} of {before}");
    assert_eq!(segment_count(&dir), 3);
    let log = Log::open_read_only(&dir).unwrap();
    let mut r = log.reader();
    let mut last = None;
    while let Some(rec) = r.try_next().unwrap() {
        let i = index_of(&rec);
        assert!(last.is_none_or(|l| l + 1 == i));
        last = Some(i);
    }
    assert_eq!(last, Some(1199));
}

#[test]
fn long_lived_producer_and_consumer_let_go_of_deleted_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    options().open(&dir).unwrap().close().unwrap();
    let d = dir.to_str().unwrap().to_owned();
    let mut producer = spawn("child", "producer", &[("DIR", d.clone())]);
    let mut po = BufReader::new(producer.stdout.take().unwrap());
    assert_eq!(hear(&mut po).as_deref(), Some("producing"));
    let mut consumer = spawn("child", "consumer", &[("DIR", d)]);
    let mut co = BufReader::new(consumer.stdout.take().unwrap());
    assert_eq!(hear(&mut co).as_deref(), Some("consuming"));
    // Let many segments come and go.
    let start = Instant::now();
    let mut deleted_seen = 0;
    while start.elapsed() < Duration::from_secs(3) {
        std::thread::sleep(Duration::from_millis(250));
        assert!(segment_count(&dir) <= 6, "retention is not keeping up");
        deleted_seen =
            deleted_seen.max(Log::open_read_only(&dir).unwrap().segments().unwrap()[0].index);
    }
    assert!(deleted_seen >= 10, "only {deleted_seen} segments retired");
    // Neither keeps more than one deleted segment mapped (the one a
    // reader may still be finishing).
    let (pp, cp) = (
        deleted_mappings(producer.id(), &dir),
        deleted_mappings(consumer.id(), &dir),
    );
    producer.kill().unwrap();
    consumer.kill().unwrap();
    producer.wait().unwrap();
    consumer.wait().unwrap();
    common::note(format!(
        "long-lived handles: {deleted_seen} segments retired; deleted segments still mapped: producer {pp}, consumer {cp}"
    ));
    assert!(
        pp <= 1 && cp <= 1,
        "producer maps {pp}, consumer {cp} deleted segments"
    );
}

#[test]
fn an_idle_writer_whose_segments_were_retired_elsewhere_goes_on() {
    // Two handles are two stores: nothing is shared but the files, as
    // between processes. `idle` opens the log and waits while `busy`
    // appends and retires the segment `idle` would append to.
    let dir = tempfile::tempdir().unwrap();
    let idle = options().open(dir.path()).unwrap();
    let mut idle_appender = idle.appender().unwrap();
    idle_appender.append(&record(0)).unwrap();
    let busy = options()
        .retention(
            Retention::new()
                .max_bytes(3 * CAPACITY)
                .past_consumers(true),
        )
        .open(dir.path())
        .unwrap();
    let mut a = busy.appender().unwrap();
    let mut i = 1;
    while busy.segments().unwrap()[0].index < 3 {
        a.append(&record(i)).unwrap();
        i += 1;
    }
    // Its newest segment is gone: syncing and appending still work, in
    // the newest segment that exists.
    idle.sync().unwrap();
    let at = idle_appender.append(&record(i)).unwrap();
    idle.sync().unwrap();
    let mut r = busy.reader_at(at).unwrap();
    assert_eq!(index_of(&r.try_next().unwrap().unwrap()), i);
    // A new appender of the idle handle starts in the newest segment too.
    let at2 = idle.appender().unwrap().append(&record(i + 1)).unwrap();
    assert!(at2 > at);
}
