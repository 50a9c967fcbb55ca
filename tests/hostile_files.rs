//! Hostile directory entries: special files and symbolic links carrying the
//! names of segments and lock files. None may make an open hang, and none
//! may redirect a write to a file outside the log directory.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use tidelog::{Error, Options};

fn options() -> Options {
    Options::new().segment_capacity(64 << 10).grow_step(4096)
}

const SEG0: &str = "0000000000000000.tlog";
const SEG1: &str = "0000000000010000.tlog";

/// Runs `open` on another thread and fails the test if it has not returned
/// within 20 seconds (a hang), instead of hanging the test run.
fn within_time<T: Send + 'static>(what: &str, open: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(open());
    });
    rx.recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("{what} hung"))
}

fn mkfifo(path: &Path) {
    assert!(
        common::run("mkfifo", &[path.to_str().unwrap()]),
        "mkfifo failed"
    );
}

/// Both kinds of open of `dir` refuse it with `NotARegularFile` naming
/// `kind`, in bounded time.
fn both_refuse(dir: &Path, kind: &str) {
    for writable in [false, true] {
        let d = dir.to_owned();
        let r = within_time(
            if writable {
                "Log::open"
            } else {
                "Log::open_read_only"
            },
            move || {
                if writable {
                    options().open(&d).map(drop)
                } else {
                    options().open_read_only(&d).map(drop)
                }
            },
        );
        match r {
            Err(ref e @ Error::NotARegularFile { kind: k, .. }) => {
                assert_eq!(k, kind, "writable {writable}: {e}");
                assert!(e.to_string().contains(kind), "{e}");
                assert!(e.is_corruption());
            }
            other => panic!("writable {writable}: expected NotARegularFile, got {other:?}"),
        }
    }
}

#[test]
fn a_fifo_named_like_the_first_segment_is_refused_without_hanging() {
    let tmp = tempfile::tempdir().unwrap();
    mkfifo(&tmp.path().join(SEG0));
    both_refuse(tmp.path(), "a FIFO");
}

#[test]
fn a_fifo_named_like_the_newest_segment_is_refused_without_hanging() {
    let tmp = tempfile::tempdir().unwrap();
    let log = options().open(tmp.path()).unwrap();
    log.appender().unwrap().append(b"real").unwrap();
    drop(log);
    mkfifo(&tmp.path().join(SEG1));
    both_refuse(tmp.path(), "a FIFO");
}

#[test]
fn a_socket_named_like_a_segment_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let _listener = UnixListener::bind(tmp.path().join(SEG0)).unwrap();
    both_refuse(tmp.path(), "a socket");
}

#[test]
fn a_directory_named_like_a_segment_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir(tmp.path().join(SEG0)).unwrap();
    both_refuse(tmp.path(), "a directory");
}

#[test]
fn a_device_named_like_a_segment_is_refused() {
    if !common::is_root() {
        common::note("skipped a_device_named_like_a_segment_is_refused: mknod needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // The null device's numbers: opening it would block on nothing, but
    // reading it as a segment would find no header.
    let path = tmp.path().join(SEG0);
    if !common::run("mknod", &[path.to_str().unwrap(), "c", "1", "3"]) {
        common::note("skipped a_device_named_like_a_segment_is_refused: mknod failed here");
        return;
    }
    both_refuse(tmp.path(), "a character device");
}

/// A file outside the log that a symlink in the log points at, and what it
/// holds.
fn outside_file(tmp: &Path) -> (std::path::PathBuf, Vec<u8>) {
    let victim = tmp.join("victim");
    let content = b"precious data that is not a tidelog file".to_vec();
    fs::write(&victim, &content).unwrap();
    (victim, content)
}

#[test]
fn a_symlinked_lock_file_is_refused_and_its_target_untouched() {
    for lock in ["open.lock", "writers.lock"] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("log");
        options().open(&dir).unwrap().close().unwrap();
        let (victim, content) = outside_file(tmp.path());
        fs::remove_file(dir.join(lock)).unwrap();
        symlink(&victim, dir.join(lock)).unwrap();
        match options().open(&dir) {
            Err(Error::NotARegularFile { kind, .. }) => assert_eq!(kind, "a symbolic link"),
            other => panic!("{lock}: expected NotARegularFile, got {other:?}"),
        }
        assert_eq!(
            fs::read(&victim).unwrap(),
            content,
            "{lock}: target written"
        );
        // A read-only open takes no locks, so it reads the log as usual.
        assert!(options().open_read_only(&dir).is_ok());
    }
}

#[test]
fn a_dangling_lock_symlink_creates_nothing_outside_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    fs::create_dir(&dir).unwrap();
    let target = tmp.path().join("created-outside");
    symlink(&target, dir.join("open.lock")).unwrap();
    assert!(matches!(
        options().open(&dir),
        Err(Error::NotARegularFile { .. })
    ));
    assert!(
        fs::symlink_metadata(&target).is_err(),
        "a file was created outside the log directory"
    );
}

#[test]
fn a_segment_symlinked_to_another_log_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let other = tmp.path().join("other");
    let log = options().open(&other).unwrap();
    log.appender()
        .unwrap()
        .append(b"the other log's record")
        .unwrap();
    log.close().unwrap();
    let before = fs::read(other.join(SEG0)).unwrap();

    let dir = tmp.path().join("log");
    fs::create_dir(&dir).unwrap();
    symlink(other.join(SEG0), dir.join(SEG0)).unwrap();
    both_refuse(&dir, "a symbolic link");
    assert_eq!(
        fs::read(other.join(SEG0)).unwrap(),
        before,
        "the other log's segment changed"
    );
    // The other log is intact and has one record.
    let log = options().open_read_only(&other).unwrap();
    let mut r = log.reader();
    assert_eq!(&*r.try_next().unwrap().unwrap(), b"the other log's record");
    assert!(r.try_next().unwrap().is_none());
}

#[test]
fn a_symlinked_segment_that_appears_later_is_refused_to_appenders() {
    // The log exists and is open; a successor segment name is planted as a
    // symlink before the appender rolls over into it.
    let tmp = tempfile::tempdir().unwrap();
    let other = tmp.path().join("other");
    let seg1_other = {
        let log = options().open(&other).unwrap();
        let mut a = log.appender().unwrap();
        // Fill segment 0 of the other log so that it has a segment 1.
        while log.segments().unwrap().len() < 2 {
            a.append(&[7u8; 1000]).unwrap();
        }
        log.close().unwrap();
        other.join(SEG1)
    };
    let before = fs::read(&seg1_other).unwrap();

    let dir = tmp.path().join("log");
    let log = options().open(&dir).unwrap();
    symlink(&seg1_other, dir.join(SEG1)).unwrap();
    let mut a = log.appender().unwrap();
    let err = loop {
        match a.append(&[1u8; 1000]) {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert!(
        matches!(
            err,
            Error::NotARegularFile {
                kind: "a symbolic link",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        fs::read(&seg1_other).unwrap(),
        before,
        "appended into the other log"
    );
}

/// A one-segment log whose 8 KiB segment file claims `capacity` bytes, a
/// tail and a `grown` hint at the capacity, and (if `sealed`) an end frame
/// and a durable watermark it does not have; written in this boot when
/// `this_boot`.
fn hostile_log(dir: &Path, capacity: u64, sealed: bool, this_boot: bool) {
    fs::create_dir_all(dir).unwrap();
    let mut page = vec![0u8; 8192];
    let h = tidelog::format::header::SegmentHeader::new(capacity, 0, 0, 1);
    page[..tidelog::format::header::STATIC_LEN].copy_from_slice(&h.encode());
    page[128..136].copy_from_slice(&capacity.to_le_bytes()); // tail
    page[256..264].copy_from_slice(&capacity.to_le_bytes()); // grown
    if sealed {
        page[512..520].copy_from_slice(&1u64.to_le_bytes()); // state: sealed
        page[520..528].copy_from_slice(&capacity.to_le_bytes()); // checked
        page[640..648].copy_from_slice(&capacity.to_le_bytes()); // flushed
    }
    if this_boot {
        let id = fs::read_to_string(common::BOOT_ID_PATH).unwrap();
        let hex: String = id.trim().chars().filter(|c| *c != '-').collect();
        for i in 0..16 {
            page[528 + i] = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
        }
    }
    fs::write(dir.join(SEG0), &page).unwrap();
}

#[test]
fn a_hostile_header_cannot_make_an_open_fill_the_disk() {
    // Issue 9, defect 7: a header claiming 1 TiB (or 1 GiB) of capacity and
    // of growth made a writable open allocate up to that claim, filling the
    // file system for every log on it.
    let fs = match common::mount_ext4(128) {
        Ok(fs) => fs,
        Err(why) => {
            common::note(format!("SKIPPED hostile-allocation test: {why}"));
            return;
        }
    };
    let step = 1 << 20;
    let mut n = 0;
    for capacity in [1u64 << 40, 1 << 30] {
        for sealed in [true, false] {
            for this_boot in [true, false] {
                n += 1;
                let dir = fs.mnt.join(format!("log{n}"));
                hostile_log(&dir, capacity, sealed, this_boot);
                let before = common::free_bytes(&fs.mnt);
                let opened = Options::new().grow_step(step).open(&dir);
                let after = common::free_bytes(&fs.mnt);
                let what = format!(
                    "capacity {capacity}, sealed {sealed}, this boot {this_boot}: {:?}",
                    opened.as_ref().map(|l| l.recovery().clone())
                );
                // At most a successor segment of the configured growth step
                // (plus metadata): nothing the header claims.
                assert!(
                    before.saturating_sub(after) <= 2 * step,
                    "{what}: free space fell from {before} to {after}"
                );
                let len = fs::metadata(dir.join(SEG0)).unwrap().len();
                assert!(len <= 8192 + 4096, "{what}: the hostile file grew to {len}");
                if let Ok(log) = opened {
                    // The log works: an append lands and reads back.
                    let pos = log.appender().unwrap().append(b"works").unwrap();
                    let mut r = log.reader_at(pos).unwrap();
                    assert_eq!(&*r.try_next().unwrap().unwrap(), b"works");
                }
            }
        }
    }
    // Other logs on the file system still have their room.
    let log = Options::new()
        .segment_capacity(64 << 20)
        .grow_step(step)
        .open(fs.mnt.join("other"))
        .unwrap();
    let mut a = log.appender().unwrap();
    for _ in 0..20 {
        a.append(&[5u8; 1 << 20]).unwrap();
    }
}

#[test]
fn a_live_segment_removed_by_another_program_is_detected() {
    // Decided in issue 9: removing a segment a writer uses is outside the
    // guarantees (its records are lost with the file), but it is never
    // reported as durable, and the writer stops at its next rollover
    // instead of building a log on a file nobody can open.
    let tmp = tempfile::tempdir().unwrap();
    let log = options().open(tmp.path()).unwrap();
    let mut a = log.appender().unwrap();
    a.append(b"doomed").unwrap();
    fs::remove_file(tmp.path().join(SEG0)).unwrap();
    match log.flush() {
        Err(e @ Error::SegmentRemoved { .. }) => assert!(e.to_string().contains("removed")),
        other => panic!("flush: {other:?}"),
    }
    let err = loop {
        if let Err(e) = a.append(&[1u8; 1000]) {
            break e;
        }
    };
    assert!(matches!(err, Error::SegmentRemoved { .. }), "{err:?}");
    assert!(!tmp.path().join(SEG1).exists(), "a successor was created");
}
