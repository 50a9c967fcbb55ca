//! Faults of the file system under a live log: a full disk at a rollover
//! and during group commits, a read-only file system, a segment the
//! process may not open, and a segment truncated by another program. Each
//! is an error with its own variant (or, for the truncation, the
//! documented limit), never a crash of a process that does not touch lost
//! pages, and never the loss of an acknowledged record.
//!
//! These need root (small file systems, mounts, another user); each test
//! says why it skipped otherwise.

mod common;

use std::collections::HashMap;
use std::fs;
use std::io::BufReader;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::Path;

use common::{
    arg, arg_u64, hear_all, is_root, mount_tmpfs, note, payload, role, say, spawn, unmount,
};
use tidelog::{Durability, Error, Log, Options, Position};

const SEGMENT: u64 = 1 << 20;

fn options() -> Options {
    Options::new()
        .segment_capacity(SEGMENT)
        // Successors are made at a whole step: the next segment needs a
        // whole segment of space.
        .grow_step(SEGMENT)
}

/// Says each acknowledged record as `ack INDEX POSITION`, and the error
/// that ended the appends as `error KIND TEXT`.
fn append_until_error(log: &Log, seed: u64, max_len: usize) {
    let mut a = log.appender().unwrap();
    for i in 0.. {
        match a.append(&payload(seed, i, max_len)) {
            Ok(pos) => say(format!("ack {i} {pos}")),
            Err(e) => {
                let kind = match e {
                    Error::NoSpace { .. } => "NoSpace",
                    Error::SyncFailed { .. } => "SyncFailed",
                    _ => "other",
                };
                say(format!("error {kind} {e}"));
                return;
            }
        }
    }
}

#[test]
#[ignore = "child process entry point, run by the tests below"]
fn child() {
    let Some(role) = role() else { return };
    let dir = arg("DIR");
    match role.as_str() {
        "filler" => append_until_error(&options().open(&dir).unwrap(), arg_u64("SEED"), 3000),
        "durable" => {
            let log = Options::new()
                .segment_capacity(SEGMENT)
                .grow_step(64 << 10)
                .durability(Durability::EveryAppend)
                .open(&dir)
                .unwrap();
            append_until_error(&log, arg_u64("SEED"), 3000);
        }
        // Opens and reads as another user: says each record's length, then
        // how reading ended.
        "reader" => {
            match Log::open_read_only(&dir) {
                Ok(log) => {
                    let mut r = log.reader();
                    loop {
                        match r.try_next() {
                            Ok(Some(rec)) => say(format!("rec {}", rec.len())),
                            Ok(None) => {
                                say("end");
                                break;
                            }
                            Err(e) => {
                                say(format!("read-error {}", kind(&e)));
                                break;
                            }
                        }
                    }
                }
                Err(e) => say(format!("open-error {}", kind(&e))),
            }
            match Options::new().open(&dir) {
                Ok(_) => say("writable ok"),
                Err(e) => say(format!("writable-error {}", kind(&e))),
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn kind(e: &Error) -> &'static str {
    match e {
        Error::PermissionDenied { .. } => "PermissionDenied",
        Error::ReadOnlyFileSystem { .. } => "ReadOnlyFileSystem",
        Error::NoSpace { .. } => "NoSpace",
        Error::CorruptFrame { .. } => "CorruptFrame",
        _ => "other",
    }
}

/// The acknowledgements and the final error a child said.
fn acks(lines: &[String]) -> (HashMap<Position, u64>, String) {
    let mut acked = HashMap::new();
    let mut end = String::new();
    for l in lines {
        if let Some(rest) = l.strip_prefix("ack ") {
            let (i, p) = rest.split_once(' ').unwrap();
            acked.insert(
                Position::from(p.parse::<u64>().unwrap()),
                i.parse().unwrap(),
            );
        } else {
            end = l.clone();
        }
    }
    (acked, end)
}

/// Reads the whole log and checks that it holds exactly the acknowledged
/// records of `seeds` (per position, which seed and index).
fn check_all(dir: &Path, acked: &HashMap<Position, (u64, u64)>, max_len: usize) {
    for log in [
        Log::open_read_only(dir).unwrap(),
        Options::new().open(dir).unwrap(),
    ] {
        let mut r = log.reader();
        let mut found = 0;
        while let Some(rec) = r.try_next().unwrap() {
            let (seed, i) = acked[&rec.position()];
            assert!(
                *rec == payload(seed, i, max_len)[..],
                "record at {} differs",
                rec.position()
            );
            found += 1;
        }
        assert_eq!(found, acked.len(), "acknowledged records missing");
    }
}

struct Unmount<'a>(&'a Path);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        unmount(self.0);
    }
}

#[test]
fn a_full_disk_at_a_rollover_fails_the_append_and_loses_nothing() {
    if !is_root() {
        note("SKIPPED full disk at a rollover: mounting a tmpfs needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    fs::create_dir(&mnt).unwrap();
    if !mount_tmpfs(&mnt, "6m") {
        note("SKIPPED full disk at a rollover: could not mount a tmpfs");
        return;
    }
    let _guard = Unmount(&mnt);
    let dir = mnt.join("log");
    {
        // The whole first segment allocated ahead (a log's first segment
        // starts small and doubles).
        let log = options().open(&dir).unwrap();
        let mut a = log.appender().unwrap();
        while a.pretouch().unwrap() {}
        assert_eq!(
            fs::metadata(dir.join(format!("{:016x}.tlog", 0)))
                .unwrap()
                .len(),
            SEGMENT
        );
    }
    // Fill the rest of the disk: the first segment is fully allocated, so
    // its appends still succeed, and its successor cannot be created.
    let filler = mnt.join("filler");
    {
        use std::io::Write as _;
        let mut f = fs::File::create(&filler).unwrap();
        let chunk = vec![1u8; 64 << 10];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    let mut child = spawn(
        "child",
        "filler",
        &[
            ("DIR", dir.to_str().unwrap().to_owned()),
            ("SEED", "5".into()),
        ],
    );
    let lines = hear_all(&mut BufReader::new(child.stdout.take().unwrap()));
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "the appender died: {status:?}");
    let (acked, end) = acks(&lines);
    assert!(
        end.starts_with("error NoSpace"),
        "appends ended with {end:?}"
    );
    let last = acked.keys().max().unwrap().get();
    assert!(
        last + 2 * (3000 + 8) >= SEGMENT - 8 && last < SEGMENT,
        "the appends stopped at {last}, not at the rollover"
    );
    let mut all: HashMap<Position, (u64, u64)> = acked.iter().map(|(p, i)| (*p, (5, *i))).collect();
    // Readers reach the end of the sealed segment and wait there, without
    // error, for the successor.
    check_all(&dir, &all, 3000);
    // With room again, appends resume in a new segment.
    fs::remove_file(&filler).unwrap();
    let log = options().open(&dir).unwrap();
    let mut a = log.appender().unwrap();
    for i in 0..10 {
        let p = a.append(&payload(6, i, 3000)).unwrap();
        assert!(p.get() >= SEGMENT, "appended at {p} after the full disk");
        all.insert(p, (6, i));
    }
    drop(a);
    drop(log);
    check_all(&dir, &all, 3000);
    note(format!(
        "full disk at a rollover: {} records acknowledged before NoSpace, all read back; appends resumed in segment 1",
        acked.len()
    ));
}

#[test]
fn a_full_disk_during_group_commits_fails_appends_and_loses_no_acknowledged_record() {
    let fs_ = match common::mount_ext4(24) {
        Ok(m) => m,
        Err(why) => {
            note(format!("SKIPPED full disk during group commits: {why}"));
            return;
        }
    };
    let dir = fs_.mnt.join("log");
    drop(Options::new().segment_capacity(SEGMENT).open(&dir).unwrap());
    let d = dir.to_str().unwrap().to_owned();
    let children: Vec<_> = (0..4u64)
        .map(|seed| {
            spawn(
                "child",
                "durable",
                &[("DIR", d.clone()), ("SEED", (10 + seed).to_string())],
            )
        })
        .collect();
    let mut all = HashMap::new();
    let mut ends = Vec::new();
    for (seed, mut c) in (0..4u64).zip(children) {
        let lines = hear_all(&mut BufReader::new(c.stdout.take().unwrap()));
        let status = c.wait().unwrap();
        assert_eq!(status.code(), Some(0), "an appender died: {status:?}");
        let (acked, end) = acks(&lines);
        all.extend(acked.into_iter().map(|(p, i)| (p, (10 + seed, i))));
        ends.push(end);
    }
    for end in &ends {
        assert!(
            end.starts_with("error NoSpace"),
            "appends ended with {end:?}"
        );
    }
    let log = Options::new().open(&dir).unwrap();
    // Everything acknowledged was synced (EveryAppend): the durable
    // position covers it, and a sync on the full disk still succeeds.
    let durable = log.sync().unwrap();
    let last = all.keys().max().unwrap();
    assert!(
        durable > *last,
        "durable {durable} below an acknowledged record at {last}"
    );
    drop(log);
    check_all(&dir, &all, 3000);
    note(format!(
        "full disk during group commits: 4 EveryAppend processes, {} records acknowledged before NoSpace, all read back",
        all.len()
    ));
}

#[test]
fn a_read_only_file_system_is_a_typed_error_for_writers_and_readable() {
    if !is_root() {
        note("SKIPPED read-only file system: a read-only bind mount needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let mut all = HashMap::new();
    {
        let log = options().open(&dir).unwrap();
        let mut a = log.appender().unwrap();
        for i in 0..500 {
            all.insert(a.append(&payload(7, i, 3000)).unwrap(), (7, i));
        }
        log.consumer("billing").unwrap().commit().unwrap();
    }
    let ro = tmp.path().join("ro");
    fs::create_dir(&ro).unwrap();
    let (d, r) = (dir.to_str().unwrap(), ro.to_str().unwrap());
    if !common::run("mount", &["--bind", d, r])
        || !common::run("mount", &["-o", "remount,bind,ro", r])
    {
        common::run("umount", &[r]);
        note("SKIPPED read-only file system: bind mounts are not permitted here");
        return;
    }
    let _guard = Unmount(&ro);
    match options().open(&ro) {
        Err(Error::ReadOnlyFileSystem { .. }) => {}
        other => panic!("a writable open of a read-only file system: {other:?}"),
    }
    check_all_read_only(&ro, &all);
    let log = Log::open_read_only(&ro).unwrap();
    let consumers = log.consumers().unwrap();
    assert_eq!(consumers.len(), 1);
    // A consumer commits through the cursor table, which it cannot write.
    match log.consumer("billing") {
        Err(Error::ReadOnlyFileSystem { .. }) => {}
        other => panic!("a consumer on a read-only file system: {other:?}"),
    }
}

fn check_all_read_only(dir: &Path, acked: &HashMap<Position, (u64, u64)>) {
    let log = Log::open_read_only(dir).unwrap();
    let mut r = log.reader();
    let mut found = 0;
    while let Some(rec) = r.try_next().unwrap() {
        let (seed, i) = acked[&rec.position()];
        assert!(*rec == payload(seed, i, 3000)[..]);
        found += 1;
    }
    assert_eq!(found, acked.len());
    assert_eq!(r.stall(), None);
}

#[test]
fn a_segment_the_process_may_not_open_is_permission_denied() {
    if !is_root() {
        note("SKIPPED permission denied on one segment: switching users needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let dir = tmp.path().join("log");
    {
        let log = Options::new()
            .segment_capacity(64 << 10)
            .grow_step(4096)
            .file_mode(0o644)
            .open(&dir)
            .unwrap();
        let mut a = log.appender().unwrap();
        for i in 0..100 {
            a.append(&payload(8, i, 3000)).unwrap();
        }
    }
    let mut segs: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "tlog"))
        .collect();
    segs.sort();
    assert!(segs.len() >= 3, "only {} segments", segs.len());
    let first_len = {
        let log = Log::open_read_only(&dir).unwrap();
        let mut r = log.reader();
        let mut n = 0;
        while let Some(rec) = r.try_next().unwrap() {
            if rec.position().get() >= 64 << 10 {
                break;
            }
            n += 1;
        }
        n
    };
    fs::set_permissions(&segs[1], fs::Permissions::from_mode(0o000)).unwrap();
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(common::ROLE_VAR, "reader")
        .env("TIDELOG_TEST_DIR", &dir)
        .stdout(std::process::Stdio::piped());
    let Ok(mut child) = cmd.spawn() else {
        note("SKIPPED permission denied on one segment: setpriv (util-linux) is missing");
        return;
    };
    let lines = hear_all(&mut BufReader::new(child.stdout.take().unwrap()));
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "the reader as another user failed: {status:?} {lines:?}"
    );
    let read = lines.iter().filter(|l| l.starts_with("rec ")).count();
    let ended: Vec<_> = lines.iter().filter(|l| !l.starts_with("rec ")).collect();
    // The open succeeds (or names the segment); reading stops at the
    // segment it may not open, with the records before it delivered.
    assert!(
        ended.first().is_some_and(
            |l| *l == "read-error PermissionDenied" || *l == "open-error PermissionDenied"
        ),
        "{ended:?}"
    );
    if ended[0].starts_with("read-error") {
        assert_eq!(read, first_len, "records before the unreadable segment");
    }
    assert_eq!(
        ended[1].as_str(),
        "writable-error PermissionDenied",
        "{ended:?}"
    );
    note(format!(
        "permission denied on one segment: another user read {read} records, then {}",
        ended[0]
    ));
}

#[test]
fn a_segment_truncated_by_another_program_is_detected_not_read_past() {
    // Decided: truncating a segment that processes map is outside the
    // guarantees (as for every memory-mapped store, a process touching the
    // lost pages gets SIGBUS, which this library does not intercept). What
    // is promised: every later open detects the loss and reports it at
    // its position, `tidelog verify` fails, and nothing reads past the end
    // of the file or takes the zeros a file grows with for records.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let log = Options::new()
        .segment_capacity(1 << 20)
        .grow_step(4096)
        .open(&dir)
        .unwrap();
    let mut a = log.appender().unwrap();
    let mut positions = Vec::new();
    for i in 0..200 {
        positions.push(a.append(&payload(9, i, 1000)).unwrap());
    }
    drop(a);
    drop(log);
    let seg = dir.join(format!("{:016x}.tlog", 0));
    let cut = 64 << 10;
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(cut)
        .unwrap();
    let kept = positions
        .iter()
        .enumerate()
        .filter(|(i, p)| {
            let len = payload(9, *i as u64, 1000).len() as u32;
            p.get() + tidelog::format::frame::record_frame_len(len) <= cut
        })
        .count();
    // A child reads (read-only, then writable): typed errors, no signal.
    let child = spawn(
        "child",
        "reader",
        &[("DIR", dir.to_str().unwrap().to_owned())],
    );
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.signal().is_none(),
        "the reader was killed: {:?}",
        out.status
    );
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("@@ ").map(str::to_owned))
        .collect();
    let read = lines.iter().filter(|l| l.starts_with("rec ")).count();
    assert_eq!(
        read, kept,
        "records wholly below the cut are read, and no more"
    );
    assert!(
        lines.iter().any(|l| l == "read-error CorruptFrame"),
        "the truncation was not reported: {lines:?}"
    );
    note(format!(
        "a segment truncated by another program: {kept} records before the cut read, then {lines:?}",
        lines = lines.iter().filter(|l| !l.starts_with("rec ")).collect::<Vec<_>>()
    ));
}
