//! A read-only reader changes nothing: no byte, no mtime, no new file.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use common::{is_root, run};
use tidelog::{Log, Options};

/// Every file under `dir` with its bytes, mode and mtime.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32, SystemTime)> {
    let mut out = BTreeMap::new();
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        out.insert(
            e.path(),
            (
                fs::read(e.path()).unwrap(),
                m.permissions().mode(),
                m.modified().unwrap(),
            ),
        );
    }
    out
}

fn read_all(dir: &Path) -> Vec<Vec<u8>> {
    let log = Log::open_read_only(dir).unwrap();
    let mut reader = log.reader();
    let mut out = Vec::new();
    while let Some(r) = reader.try_next().unwrap() {
        out.push(r.to_vec());
    }
    // Waiting is read-only too.
    assert!(reader
        .next_timeout(std::time::Duration::from_millis(20))
        .unwrap()
        .is_none());
    out
}

#[test]
fn read_only_reader_of_read_only_files_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let expected: Vec<Vec<u8>> = (0..5000u32)
        .map(|i| i.to_le_bytes().repeat(i as usize % 50))
        .collect();
    {
        let log = Options::new()
            .segment_capacity(64 << 10)
            .grow_step(4096)
            .open(&dir)
            .unwrap();
        let mut a = log.appender().unwrap();
        for r in &expected {
            a.append(r).unwrap();
        }
        // Leave it as a crashed writer would: not closed cleanly.
        std::mem::forget(a);
        std::mem::forget(log);
    }
    for e in fs::read_dir(&dir).unwrap() {
        fs::set_permissions(e.unwrap().path(), fs::Permissions::from_mode(0o444)).unwrap();
    }
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o555)).unwrap();
    // Make mtimes distinguishable from anything written now.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let before = snapshot(&dir);
    assert!(before.len() > 3);

    assert_eq!(read_all(&dir), expected);
    assert_eq!(
        snapshot(&dir),
        before,
        "the read-only reader changed the log"
    );

    // As root, permission bits do not stop writes; a read-only bind mount does.
    if is_root() {
        let ro = tmp.path().join("ro");
        fs::create_dir(&ro).unwrap();
        let (d, r) = (dir.to_str().unwrap(), ro.to_str().unwrap());
        if run("mount", &["--bind", d, r]) {
            let remounted = run("mount", &["-o", "remount,bind,ro", r]);
            let result = std::panic::catch_unwind(|| {
                assert!(remounted, "could not remount read-only");
                assert_eq!(read_all(&ro), expected);
            });
            run("umount", &[r]);
            result.unwrap();
        } else {
            common::note("SKIPPED the read-only mount part of the read-only test: bind mounts are not permitted here");
        }
        assert_eq!(snapshot(&dir), before);
    }
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
}
