//! Durable named consumers: commits survive the consumer's process, one
//! consumer per name, listing, resetting and deleting; and a consumer
//! SIGKILLed at random moments resumes exactly after its last commit.

mod common;

use std::collections::BTreeMap;
use std::io::BufReader;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use common::{arg, arg_u64, hear, hear_all, role, say, spawn, Rng};
use tidelog::{Error, Log, Options, Position, StartAt};

fn options() -> Options {
    Options::new()
        .segment_capacity(256 << 10)
        .grow_step(16 << 10)
}

fn record(i: u64) -> Vec<u8> {
    let mut r = i.to_le_bytes().to_vec();
    r.resize(8 + (i % 97) as usize, (i % 251) as u8);
    r
}

fn index_of(r: &[u8]) -> u64 {
    u64::from_le_bytes(r[..8].try_into().unwrap())
}

/// A log with `n` records, record `i` holding `i`; returns their positions.
fn filled(dir: &std::path::Path, n: u64) -> Vec<Position> {
    let log = options().open(dir).unwrap();
    let mut a = log.appender().unwrap();
    let positions = (0..n).map(|i| a.append(&record(i)).unwrap()).collect();
    drop(a);
    log.close().unwrap();
    positions
}

#[test]
#[ignore = "child process entry point, run by the tests below"]
fn child() {
    let Some(role) = role() else { return };
    let log = options().open_read_only(arg("DIR")).unwrap();
    match role.as_str() {
        // Reads batches of random size and commits after each, telling
        // the parent before and after every commit, until killed.
        "consumer" => {
            let mut rng = Rng(arg_u64("SEED"));
            let mut c = log.consumer("worker").unwrap();
            let first = c.try_next().unwrap().map(|r| index_of(&r));
            say(format!("start {} {first:?}", c.committed()));
            let mut expect = first.map(|i| i + 1);
            loop {
                for _ in 0..1 + rng.below(300) {
                    match c.try_next().unwrap() {
                        Some(r) => {
                            let i = index_of(&r);
                            assert_eq!(Some(i), expect, "records out of order or skipped");
                            assert_eq!(&*r, &record(i)[..]);
                            expect = Some(i + 1);
                        }
                        None => break,
                    }
                }
                let to = c.position();
                say(format!("will {to}"));
                c.commit().unwrap();
                say(format!("done {to}"));
                // Spread the log over the rounds.
                std::thread::sleep(Duration::from_micros(rng.below(1500)));
            }
        }
        // Holds the consumer "held" until killed.
        "holder" => {
            let _c = log.consumer("held").unwrap();
            say("holding");
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn a_consumer_killed_at_random_resumes_exactly_after_its_last_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let positions = filled(&dir, 100_000);
    let index: BTreeMap<Position, u64> = positions
        .iter()
        .enumerate()
        .map(|(i, p)| (*p, i as u64))
        .collect();
    let first_position = positions[0];
    let mut rng = Rng(42);
    // Where the last round's consumer had committed, as far as the parent
    // knows: its last "done", and a "will" it may have completed before
    // the kill.
    let mut done = first_position;
    let mut will: Option<Position> = None;
    let mut commits = 0u64;
    let mut rounds_with_progress = 0;
    for round in 0..25 {
        let mut child = spawn(
            "child",
            "consumer",
            &[
                ("DIR", dir.to_str().unwrap().to_owned()),
                ("SEED", round.to_string()),
            ],
        );
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let start = hear(&mut out).expect("the child started");
        // The kill lands at a random moment after the child's first
        // commit, however slow the machine is to start it.
        let mut lines = Vec::new();
        loop {
            let l = hear(&mut out).expect("the child commits");
            let first_commit = l.starts_with("done ");
            lines.push(l);
            if first_commit {
                break;
            }
        }
        let drain = std::thread::spawn(move || hear_all(&mut out));
        std::thread::sleep(Duration::from_millis(rng.below(60)));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "round {round}: {status:?}"
        );
        lines.extend(drain.join().unwrap());

        // The new consumer resumed at the last commit that returned.
        let mut words = start.split(' ');
        assert_eq!(words.next(), Some("start"));
        let resumed = Position::from(words.next().unwrap().parse::<u64>().unwrap());
        assert!(
            resumed == done || Some(resumed) == will,
            "round {round}: resumed at {resumed}, last commit {done} (maybe {will:?})"
        );
        let mut progressed = false;
        will = None;
        for l in &lines {
            let (what, p) = l.split_once(' ').unwrap();
            let p = Position::from(p.parse::<u64>().unwrap());
            match what {
                "will" => will = Some(p),
                "done" => {
                    assert!(p >= done, "round {round}: commits went backwards");
                    commits += 1;
                    progressed |= p > done;
                    done = p;
                    will = None;
                }
                _ => panic!("{l}"),
            }
        }
        rounds_with_progress += u32::from(progressed);
    }
    // The committed position is where a reader of the last record ends, or
    // a record's position: every record before it was read in order by
    // some round (each child checked its records are consecutive from its
    // start), and the rounds made progress.
    // Every round commits once before its kill; it moves the position
    // unless the log is read to its end already.
    assert!(
        rounds_with_progress >= 10,
        "only {rounds_with_progress} rounds committed"
    );
    let log = options().open_read_only(&dir).unwrap();
    let info = log.consumers().unwrap();
    assert_eq!(info.len(), 1);
    assert!(info[0].committed == done || Some(info[0].committed) == will);
    assert!(!info[0].active);
    common::note(format!(
        "consumer kill rounds: {rounds_with_progress} of 25 rounds committed, {commits} commits, up to record {} of 100000",
        index.get(&info[0].committed).copied().unwrap_or(100_000)
    ));
}

#[test]
fn one_consumer_per_name_across_processes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    filled(&dir, 10);
    let mut holder = spawn(
        "child",
        "holder",
        &[("DIR", dir.to_str().unwrap().to_owned())],
    );
    let mut out = BufReader::new(holder.stdout.take().unwrap());
    assert_eq!(hear(&mut out).as_deref(), Some("holding"));
    let log = options().open(&dir).unwrap();
    match log.consumer("held") {
        Err(e @ Error::ConsumerBusy { .. }) => assert!(e.to_string().contains("held")),
        other => panic!("{:?}", other.map(|c| c.name().to_owned())),
    }
    assert!(log.consumers().unwrap()[0].active);
    assert!(matches!(
        log.delete_consumer("held"),
        Err(Error::ConsumerBusy { .. })
    ));
    assert!(matches!(
        log.reset_consumer("held", StartAt::End),
        Err(Error::ConsumerBusy { .. })
    ));
    // Its death frees the name at once: the kernel drops its lock.
    holder.kill().unwrap();
    holder.wait().unwrap();
    let c = log.consumer("held").unwrap();
    // And in one process too, a second one is refused.
    assert!(matches!(
        log.consumer("held"),
        Err(Error::ConsumerBusy { .. })
    ));
    drop(c);
    assert!(log.consumer("held").is_ok());
}

#[test]
fn commits_list_reset_and_delete() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let pos = filled(&dir, 100);
    let log = options().open(&dir).unwrap();
    assert!(log.consumers().unwrap().is_empty());
    {
        let mut a = log.consumer("a").unwrap();
        for _ in 0..10 {
            a.try_next().unwrap().unwrap();
        }
        assert_eq!(a.commit().unwrap(), pos[10]);
        a.commit_to(pos[4]).unwrap();
        assert_eq!(a.committed(), pos[4]);
    }
    let mut b = log.consumer_from("b", StartAt::End).unwrap();
    assert!(b.try_next().unwrap().is_none());
    let c = log.consumer_from("c", StartAt::Position(pos[50])).unwrap();
    drop(c);
    drop(b);
    let mut list = log.consumers().unwrap();
    list.sort_by(|x, y| x.name.cmp(&y.name));
    let names: Vec<_> = list.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    assert_eq!(list[0].committed, pos[4]);
    assert_eq!(list[0].lag_records, 96);
    assert_eq!(list[1].lag_records, 0);
    assert_eq!(list[2].lag_records, 50);
    assert!(list[0].lag_bytes > list[2].lag_bytes);
    // A new handle, as in another process, resumes at the commit.
    let other = options().open_read_only(&dir).unwrap();
    let mut a = other.consumer("a").unwrap();
    assert_eq!(index_of(&a.try_next().unwrap().unwrap()), 4);
    drop(a);
    log.reset_consumer("a", StartAt::Beginning).unwrap();
    assert_eq!(
        index_of(&log.consumer("a").unwrap().try_next().unwrap().unwrap()),
        0
    );
    log.delete_consumer("c").unwrap();
    assert!(matches!(
        log.delete_consumer("c"),
        Err(Error::ConsumerNotFound { .. })
    ));
    assert_eq!(log.consumers().unwrap().len(), 2);
    // A deleted name starts afresh.
    let mut c = log.consumer("c").unwrap();
    assert_eq!(index_of(&c.try_next().unwrap().unwrap()), 0);
    assert!(matches!(
        log.consumer(""),
        Err(Error::InvalidConsumerName { .. })
    ));
    assert!(matches!(
        log.consumer(&"n".repeat(65)),
        Err(Error::InvalidConsumerName { .. })
    ));
}

#[test]
fn a_committed_position_that_is_not_a_record_is_refused_at_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let pos = filled(&dir, 10);
    let log = options().open(&dir).unwrap();
    log.consumer("x")
        .unwrap()
        .commit_to(Position::from(pos[3].get() + 8))
        .unwrap();
    assert!(matches!(
        log.consumer("x"),
        Err(Error::InvalidPosition { .. })
    ));
    log.reset_consumer("x", StartAt::Position(pos[3])).unwrap();
    assert_eq!(
        index_of(&log.consumer("x").unwrap().try_next().unwrap().unwrap()),
        3
    );
}

#[test]
fn a_damaged_cursor_table_is_a_typed_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    filled(&dir, 3);
    let log = options().open(&dir).unwrap();
    drop(log.consumer("x").unwrap());
    drop(log);
    let path = dir.join("cursors");
    let mut bytes = std::fs::read(&path).unwrap();
    // The state word of slot 0.
    bytes[4096] = 7;
    std::fs::write(&path, &bytes).unwrap();
    let log = options().open(&dir).unwrap();
    match log.consumers() {
        Err(Error::CorruptCursorTable { slot: Some(0), .. }) => {}
        other => panic!("{other:?}"),
    }
    bytes[0] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let log = options().open(&dir).unwrap();
    assert!(matches!(
        log.consumer("y"),
        Err(Error::CorruptCursorTable { slot: None, .. })
    ));
    // Read-only with no table: no consumers, nothing created.
    let tmp2 = tempfile::tempdir().unwrap();
    filled(tmp2.path(), 1);
    let ro = Log::open_read_only(tmp2.path()).unwrap();
    assert!(ro.consumers().unwrap().is_empty());
    assert!(!tmp2.path().join("cursors").exists());
}

#[test]
fn a_bogus_start_or_reset_position_is_refused_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pos = filled(dir.path(), 10);
    let log = options().open(dir.path()).unwrap();
    let inside = Position::from(pos[3].get() + 8);
    assert!(matches!(
        log.consumer_from("bogus", StartAt::Position(inside)),
        Err(Error::InvalidPosition { .. })
    ));
    // Nothing was stored under the name: no consumer, nothing holding
    // retention back.
    assert!(log.consumers().unwrap().iter().all(|c| c.name != "bogus"));
    let mut c = log.consumer_from("ok", StartAt::Position(pos[2])).unwrap();
    c.try_next().unwrap().unwrap();
    c.commit().unwrap();
    drop(c);
    assert!(matches!(
        log.reset_consumer("ok", StartAt::Position(inside)),
        Err(Error::InvalidPosition { .. })
    ));
    assert_eq!(log.consumer("ok").unwrap().committed(), pos[3]);
}
