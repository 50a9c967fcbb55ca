//! Behaviour across real processes: the test binary re-runs itself as the
//! child (see `common::spawn`).

mod common;

use std::io::BufReader;
use std::time::Duration;

use common::{arg, arg_u64, hear, hear_all, payload, role, say, spawn};
use tidelog::{Error, Log, Options, WaitStrategy, WriterMode};

const RECORDS: u64 = 200_000;
const MAX_LEN: usize = 512;

fn small_segments() -> Options {
    Options::new().segment_capacity(1 << 20).grow_step(64 << 10)
}

/// Entry point of the child processes; ignored in a normal run.
#[test]
#[ignore = "child process entry point, run by the tests below"]
fn child() {
    let Some(role) = role() else { return };
    let dir = arg("DIR");
    match role.as_str() {
        "reader" => {
            let log = Log::open_read_only(&dir).unwrap();
            let mut reader = log.reader().with_wait_strategy(WaitStrategy::Park);
            say("ready");
            let n = arg_u64("N");
            for i in 0..n {
                let r = reader
                    .next_timeout(Duration::from_secs(60))
                    .unwrap()
                    .unwrap_or_else(|| panic!("reader timed out at record {i}"));
                assert!(*r == payload(7, i, MAX_LEN)[..], "record {i} differs");
            }
            assert!(
                reader.try_next().unwrap().is_none(),
                "more records than written"
            );
            say(format!("read {n}"));
        }
        "writer" => {
            let log = small_segments().open(&dir).unwrap();
            let mut a = log.appender().unwrap();
            for i in 0..arg_u64("N") {
                a.append(&payload(7, i, MAX_LEN)).unwrap();
            }
            say(format!("segments {}", log.segments().unwrap().len()));
        }
        "holder" => {
            let log = Options::new()
                .writer_mode(WriterMode::SingleProcess)
                .open(&dir)
                .unwrap();
            let mut a = log.appender().unwrap();
            a.append(b"held").unwrap();
            say("holding");
            // Hold the appender until the parent closes our stdin... which
            // is null, so until the parent kills us.
            std::thread::sleep(Duration::from_secs(120));
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn reader_started_first_sees_every_record_across_growth_and_rollover() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    drop(small_segments().open(&dir).unwrap());
    let dir_s = dir.to_str().unwrap().to_owned();
    let args = [("DIR", dir_s), ("N", RECORDS.to_string())];

    let mut reader = spawn("child", "reader", &args);
    let mut reader_out = BufReader::new(reader.stdout.take().unwrap());
    assert_eq!(
        hear(&mut reader_out).as_deref(),
        Some("ready"),
        "reader did not start"
    );

    let writer = spawn("child", "writer", &args);
    let out = writer.wait_with_output().unwrap();
    assert!(out.status.success(), "writer failed: {:?}", out.status);
    let report = hear_all(&mut &out.stdout[..]);
    let segments: usize = report
        .iter()
        .find_map(|l| l.strip_prefix("segments "))
        .expect("writer report")
        .parse()
        .unwrap();
    // ~200k records of ~260 bytes on 1 MiB segments.
    assert!(segments >= 40, "only {segments} segments");

    let rest = hear_all(&mut reader_out);
    let status = reader.wait().unwrap();
    assert!(status.success(), "reader failed: {status:?}");
    assert!(
        rest.contains(&format!("read {RECORDS}")),
        "reader said {rest:?}"
    );
}

#[test]
fn in_single_process_mode_a_second_process_cannot_take_the_appender_lock() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let args = [("DIR", dir.to_str().unwrap().to_owned())];
    let mut holder = spawn("child", "holder", &args);
    let mut out = BufReader::new(holder.stdout.take().unwrap());
    assert_eq!(hear(&mut out).as_deref(), Some("holding"));

    // This process may open the log and read, but not append.
    let single = Options::new().writer_mode(WriterMode::SingleProcess);
    let log = single.open(&dir).unwrap();
    match log.appender() {
        Err(Error::Locked { path }) => {
            assert!(path.ends_with("append.lock"), "{}", path.display());
            let msg = Error::Locked { path }.to_string();
            assert!(msg.contains("append.lock"), "{msg}");
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    let mut reader = log.reader();
    assert_eq!(&*reader.try_next().unwrap().unwrap(), b"held");

    // Once the holder is gone, the lock is free.
    holder.kill().unwrap();
    holder.wait().unwrap();
    drop(log);
    let log = single.open(&dir).unwrap();
    log.appender().unwrap().append(b"mine now").unwrap();
}
