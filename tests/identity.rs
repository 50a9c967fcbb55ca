//! The log's identity: drawn at random when a log is created, the same in
//! every segment's header, stable through reopening, rollover, retention
//! and crashes, and different for every log.

mod common;

use std::collections::HashSet;

use common::{arg, role, Proc};
use tidelog::format::header::{SegmentHeader, OFF_LOG_ID};
use tidelog::{LogId, Options, Retention};

fn options() -> Options {
    Options::new()
        .segment_capacity(64 << 10)
        .grow_step(16 << 10)
}

/// The `log_id` of every segment file in `dir`, as stored.
fn ids_on_disk(dir: &std::path::Path) -> Vec<[u8; 16]> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "tlog"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| {
            let bytes = std::fs::read(p).unwrap();
            let h = SegmentHeader::decode(&bytes).unwrap();
            assert_eq!(&bytes[OFF_LOG_ID..OFF_LOG_ID + 16], &h.log_id);
            h.log_id
        })
        .collect()
}

#[test]
fn every_segment_carries_the_id_of_its_log() {
    let tmp = tempfile::tempdir().unwrap();
    let log = options()
        .retention(Retention::new().max_bytes(256 << 10))
        .open(tmp.path())
        .unwrap();
    let id = log.id();
    assert_ne!(id.as_bytes(), &[0; 16]);
    let mut a = log.appender().unwrap();
    for i in 0..20_000u32 {
        a.append(&i.to_le_bytes()).unwrap();
    }
    drop(a);
    // Rollovers made many segments, retention deleted the first ones.
    assert!(log.segments().unwrap()[0].base.get() > 0);
    let on_disk = ids_on_disk(tmp.path());
    assert!(on_disk.len() > 3);
    assert!(on_disk.iter().all(|d| d == id.as_bytes()));
    assert_eq!(log.id(), id);
    drop(log);
    assert_eq!(options().open(tmp.path()).unwrap().id(), id);
    assert_eq!(options().open_read_only(tmp.path()).unwrap().id(), id);
}

/// Entry point of the child process; ignored in a normal run.
#[test]
#[ignore = "child process entry point, run by the test below"]
fn child() {
    let Some(role) = role() else { return };
    assert_eq!(role, "id");
    let log = options().open(arg("DIR")).unwrap();
    common::say(log.id());
}

#[test]
fn every_log_has_its_own_and_other_processes_see_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut seen = HashSet::new();
    for n in 0..20 {
        let dir = tmp.path().join(format!("log{n}"));
        let id = options().open(&dir).unwrap().id();
        assert!(seen.insert(id), "two logs share {id}");
        if n < 3 {
            // Another process opening the log reads the same id.
            let mut p = Proc::spawn("id", &[("DIR", dir.display().to_string())]);
            let said = common::hear(&mut p.out).unwrap();
            assert!(p.child.wait().unwrap().success());
            assert_eq!(said.parse::<LogId>().unwrap(), id);
        }
    }
}

#[test]
fn ids_print_and_parse() {
    let id = LogId::from_bytes(*b"0123456789abcdef");
    assert_eq!(id.to_string(), "30313233343536373839616263646566");
    assert_eq!("30313233343536373839616263646566".parse(), Ok(id));
    assert!("3031".parse::<LogId>().is_err());
    assert!("zz313233343536373839616263646566".parse::<LogId>().is_err());
    assert!("+f313233343536373839616263646566".parse::<LogId>().is_err());
}
