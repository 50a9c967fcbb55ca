//! A full disk is an error, never a signal, and loses nothing.

mod common;

use std::collections::HashMap;
use std::io::BufReader;

use common::{arg, hear_all, is_root, mount_tmpfs, payload, role, say, spawn, unmount};
use tidelog::{Error, Log, Options, Position};

const MAX_LEN: usize = 1500;

fn options() -> Options {
    Options::new()
        .segment_capacity(2 << 20)
        .grow_step(256 << 10)
}

#[test]
#[ignore = "child process entry point, run by the tests below"]
fn child() {
    let Some(role) = role() else { return };
    assert_eq!(role, "filler");
    let log = options().open(arg("DIR")).unwrap();
    let mut a = log.appender().unwrap();
    for i in 0.. {
        match a.append(&payload(3, i, MAX_LEN)) {
            Ok(pos) => say(format!("{i} {pos}")),
            Err(e) => {
                let kind = match e {
                    Error::NoSpace { .. } => "NoSpace",
                    _ => "other",
                };
                say(format!("error {kind} {e}"));
                return;
            }
        }
    }
}

#[test]
fn appending_to_a_full_disk_fails_cleanly_and_loses_nothing() {
    if !is_root() {
        common::note("SKIPPED disk-full test: mounting a small tmpfs needs root; run the tests as root to cover a full disk");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    if !mount_tmpfs(&mnt, "8m") {
        common::note(
            "SKIPPED disk-full test: could not mount a tmpfs (no CAP_SYS_ADMIN in this container?)",
        );
        return;
    }
    struct Unmount<'a>(&'a std::path::Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            unmount(self.0);
        }
    }
    let _guard = Unmount(&mnt);
    // Leave a file to delete later, to show that appends resume.
    let filler = mnt.join("filler");
    std::fs::write(&filler, vec![1u8; 1 << 20]).unwrap();
    let dir = mnt.join("log");

    let mut child = spawn(
        "child",
        "filler",
        &[("DIR", dir.to_str().unwrap().to_owned())],
    );
    let lines = hear_all(&mut BufReader::new(child.stdout.take().unwrap()));
    let status = child.wait().unwrap();
    // Not killed by a signal (SIGBUS would show as no exit code).
    assert_eq!(status.code(), Some(0), "child died: {status:?}");
    let last = lines.last().expect("child said nothing");
    assert!(
        last.starts_with("error NoSpace"),
        "child ended with {last:?}"
    );
    let acked: HashMap<Position, u64> = lines[..lines.len() - 1]
        .iter()
        .map(|l| {
            let (i, p) = l.split_once(' ').unwrap();
            (
                Position::from(p.parse::<u64>().unwrap()),
                i.parse().unwrap(),
            )
        })
        .collect();
    assert!(acked.len() > 2000, "only {} records fit", acked.len());

    // Every acknowledged record is readable, in a read-only and a writable
    // handle.
    for log in [
        Log::open_read_only(&dir).unwrap(),
        options().open(&dir).unwrap(),
    ] {
        let mut reader = log.reader();
        let mut found = 0;
        while let Some(r) = reader.try_next().unwrap() {
            let i = acked[&r.position()];
            assert!(*r == payload(3, i, MAX_LEN)[..]);
            found += 1;
        }
        assert_eq!(found, acked.len());
    }

    // With space freed, appending resumes.
    std::fs::remove_file(&filler).unwrap();
    let log = options().open(&dir).unwrap();
    let mut a = log.appender().unwrap();
    let pos = a.append(b"room again").unwrap();
    assert_eq!(
        &*log.reader_at(pos).unwrap().try_next().unwrap().unwrap(),
        b"room again"
    );
}
