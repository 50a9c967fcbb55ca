//! `Options::lock_in_memory`: the window ahead of the appenders is locked
//! (the process's `VmLck` shows it, bounded by the window as the appenders
//! move on), and a lock limit the process cannot lift is a clear error at
//! open.

mod common;

use std::process::Command;

use common::{arg, note, role};
use tidelog::{Error, Options};

/// This process's locked memory, in bytes (`VmLck` in /proc/self/status).
fn locked_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .unwrap()
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib << 10
}

#[test]
fn the_window_ahead_of_the_appenders_is_locked_and_moves_with_them() {
    let tmp = tempfile::tempdir().unwrap();
    let window = 4u64 << 20;
    let log = Options::new()
        .segment_capacity(16 << 20)
        .grow_step(8 << 20)
        .lock_in_memory(window)
        .open(tmp.path())
        .unwrap();
    let before = locked_bytes();
    let mut a = log.appender().unwrap();
    a.append(b"first").unwrap();
    // A thread of the log locks the window (appenders only post where
    // they are): wait for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let first = loop {
        let l = locked_bytes() - before;
        if l >= window / 2 || std::time::Instant::now() > deadline {
            break l;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    assert!(
        first >= window / 2 && first <= window + (1 << 20),
        "{first} bytes locked after the first append"
    );
    let record = vec![7u8; 1000];
    let mut peak = first;
    // 40 MiB: two rollovers; the window never grows past its size and the
    // half of it that may lie behind before it is unlocked (it moves in
    // steps of half of it).
    for i in 0..40_000 {
        a.append(&record).unwrap();
        if i % 1000 == 0 {
            peak = peak.max(locked_bytes() - before);
        }
    }
    assert!(log.segments().unwrap().len() >= 3);
    let now = locked_bytes() - before;
    note(format!(
        "locked: {first} after the first append, peak {peak}, {now} at the end"
    ));
    // Ahead, at most the window; behind, less than half of it (it moves
    // in steps of half of it).
    let bound = window + window / 2 + (1 << 20);
    assert!(peak <= bound, "{peak} bytes locked at the peak");
    assert!(now > 0 && now <= bound, "{now} bytes locked");
    // Every record is there.
    let mut r = log.reader();
    let mut n = 0;
    while let Some(rec) = r.try_next().unwrap() {
        n += 1;
        if n > 1 {
            assert_eq!(rec.as_bytes(), &record[..]);
        }
    }
    assert_eq!(n, 40_001);
    // Dropping the log ends the thread, which unlocks everything.
    drop(r);
    drop(a);
    drop(log);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while locked_bytes() > before && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(
        locked_bytes(),
        before,
        "still locked after the log was dropped"
    );
}

/// Entry point of the child process; ignored in a normal run.
#[test]
#[ignore = "child process entry point, run by the test below"]
fn child() {
    let Some(role) = role() else { return };
    assert_eq!(role, "lock");
    match Options::new().lock_in_memory(64 << 20).open(arg("DIR")) {
        Err(e @ Error::MemoryLockLimit { .. }) => {
            assert!(e.to_string().contains("RLIMIT_MEMLOCK"), "{e}");
            common::say(format!("refused: {e}"));
        }
        Ok(_) => common::say("opened"),
        Err(e) => common::say(format!("other: {e}")),
    }
    // Read-only opens lock nothing and are not refused.
    assert!(Options::new()
        .lock_in_memory(64 << 20)
        .open_read_only(arg("DIR"))
        .is_ok());
}

#[test]
fn a_lock_limit_the_process_cannot_lift_is_refused_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    Options::new().open(&dir).unwrap();
    // The child runs with a 64 KiB RLIMIT_MEMLOCK (set by prlimit) and,
    // as root, without CAP_IPC_LOCK (dropped from its bounding set by
    // setpriv, so that exec does not grant it); both from util-linux.
    for tool in ["prlimit", "setpriv"] {
        if Command::new(tool).arg("--version").output().is_err() {
            note(format!(
                "SKIPPED: {tool} (util-linux) is needed to run under a lock limit"
            ));
            return;
        }
    }
    let mut cmd = Command::new("prlimit");
    cmd.args(["--memlock=65536:65536", "--"]);
    if common::is_root() {
        cmd.args([
            "setpriv",
            "--bounding-set",
            "-ipc_lock",
            "--inh-caps",
            "-ipc_lock",
            "--",
        ]);
    }
    cmd.arg(std::env::current_exe().unwrap())
        .args(["child", "--exact", "--ignored", "--nocapture", "-q"])
        .env(common::ROLE_VAR, "lock")
        .env("TIDELOG_TEST_DIR", &dir)
        .stdout(std::process::Stdio::piped());
    let out = cmd.output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    assert!(
        said.lines()
            .any(|l| l.starts_with("@@ refused: cannot lock 67108864 bytes")),
        "{said}"
    );
}
