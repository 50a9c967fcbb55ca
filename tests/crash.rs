//! A writer SIGKILLed at random moments loses no acknowledged record.

mod common;

use std::collections::HashMap;
use std::io::BufReader;
use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use common::{arg, arg_u64, hear_all, payload, role, say, spawn, Rng};
use tidelog::{Options, Position};

const MAX_LEN: usize = 2048;

fn options() -> Options {
    // Small segments and steps, so kills also land in growth and rollover.
    Options::new()
        .segment_capacity(256 << 10)
        .grow_step(16 << 10)
}

#[test]
#[ignore = "child process entry point, run by the tests below"]
fn child() {
    let Some(role) = role() else { return };
    assert_eq!(role, "appender");
    let log = options().open(arg("DIR")).unwrap();
    // The parent starts its clock now: how long the open took (recovery
    // scans every segment of a growing log) must not eat into the time
    // the child has to append before it is killed.
    say("open");
    let seed = arg_u64("SEED");
    let mut a = log.appender().unwrap();
    let mut rng = Rng(seed);
    let mut i = 0;
    loop {
        // Acknowledge in batches, so that most of the child's time (and so
        // most kills) falls inside `append` rather than in pipe writes.
        let mut batch = String::new();
        for _ in 0..1 + rng.below(64) {
            let record = payload(seed, i, MAX_LEN);
            let pos = if i % 2 == 0 {
                a.append(&record).unwrap()
            } else {
                // Zero-copy: fill the reserved frame in place, byte by byte,
                // which keeps the frame in progress long enough for kills to
                // land there too.
                let mut r = a.reserve(record.len()).unwrap();
                for (dst, src) in r.iter_mut().zip(&record) {
                    *dst = std::hint::black_box(*src);
                }
                r.commit().unwrap()
            };
            batch += &format!("{i} {pos}\n@@ ");
            i += 1;
        }
        say(batch.trim_end_matches("\n@@ "));
    }
}

#[test]
fn sigkilled_writer_loses_no_acknowledged_record() {
    const ROUNDS: u64 = 24;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let mut rng = Rng(0xC0FFEE);
    // Every acknowledged record: position -> (seed, index).
    let mut acked: HashMap<Position, (u64, u64)> = HashMap::new();
    let mut recoveries = 0;
    let mut torn_tails = 0;
    for round in 0..ROUNDS {
        let seed = 1000 + round;
        let mut child = spawn(
            "child",
            "appender",
            &[
                ("DIR", dir.to_str().unwrap().to_owned()),
                ("SEED", seed.to_string()),
            ],
        );
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        assert_eq!(
            common::hear(&mut stdout).as_deref(),
            Some("open"),
            "round {round}: the child did not open the log"
        );
        let drain = std::thread::spawn(move || hear_all(&mut stdout));
        std::thread::sleep(Duration::from_millis(20 + rng.below(180)));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "round {round}: the child was not killed by our SIGKILL: {status:?}"
        );
        let lines = drain.join().unwrap();
        assert!(
            !lines.is_empty(),
            "round {round}: the child acknowledged nothing"
        );
        for line in &lines {
            let mut it = line.split(' ');
            let i: u64 = it.next().unwrap().parse().unwrap();
            let pos = Position::from(it.next().unwrap().parse::<u64>().unwrap());
            assert!(
                acked.insert(pos, (seed, i)).is_none(),
                "position {pos} acknowledged twice"
            );
        }

        // Reopening for writing recovers; every acknowledged record is there.
        let log = options().open(&dir).unwrap();
        eprintln!("round {round}: {} acked, {:?}", lines.len(), log.recovery());
        if log.recovery().ran {
            recoveries += 1;
        }
        if log.recovery().bytes_cut > 0 {
            torn_tails += 1;
        }
        assert_eq!(log.recovery().damaged_frames, 0);
        let mut reader = log.reader();
        let mut found = 0;
        while let Some(r) = reader
            .try_next()
            .unwrap_or_else(|e| panic!("round {round}: {e}"))
        {
            if let Some(&(s, i)) = acked.get(&r.position()) {
                assert!(
                    *r == payload(s, i, MAX_LEN)[..],
                    "record {s}/{i} at {} differs",
                    r.position()
                );
                found += 1;
            }
        }
        assert_eq!(
            found,
            acked.len(),
            "round {round}: acknowledged records missing"
        );

        // And appending continues after the recovered tail.
        let mut a = log.appender().unwrap();
        let pos = a.append(b"after the crash").unwrap();
        let mut reader = log.reader_at(pos).unwrap();
        assert_eq!(&*reader.try_next().unwrap().unwrap(), b"after the crash");
    }
    assert!(
        recoveries >= ROUNDS / 2,
        "recovery ran only {recoveries} times"
    );
    assert!(torn_tails > 0, "no kill landed inside an append");
    assert!(acked.len() > 1000);
}
