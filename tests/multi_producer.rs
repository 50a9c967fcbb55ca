//! Many producer processes appending to one log at once, and readers that
//! are never stuck behind a producer that died. Real processes throughout:
//! the test binary re-runs itself as producers and readers.

mod common;

use std::collections::HashMap;
use std::io::BufReader;
use std::os::unix::process::ExitStatusExt;
use std::process::Child;
use std::time::{Duration, Instant};

use common::{arg, arg_u64, hear, hear_all, role, say, spawn, Proc, Rng};
use tidelog::format::frame::{self, Header};
use tidelog::{Log, Options, Position, WaitStrategy};

fn record_rng(producer: u32, round: u32, seq: u64) -> Rng {
    Rng(u64::from(producer) << 40 ^ u64::from(round) << 32 ^ seq)
}

/// The length of a producer's record.
fn record_len(producer: u32, round: u32, seq: u64) -> usize {
    16 + record_rng(producer, round, seq).below(120) as usize
}

/// Writes a producer's record into `out` (of `record_len` bytes): who,
/// which round, which sequence number, then filler derived from those, so
/// that a reader recognises garbage.
fn write_record(producer: u32, round: u32, seq: u64, out: &mut [u8]) {
    let mut rng = record_rng(producer, round, seq);
    rng.below(120);
    out[0..4].copy_from_slice(&producer.to_le_bytes());
    out[4..8].copy_from_slice(&round.to_le_bytes());
    out[8..16].copy_from_slice(&seq.to_le_bytes());
    for b in &mut out[16..] {
        *b = rng.next_u64() as u8;
    }
}

fn record(producer: u32, round: u32, seq: u64) -> Vec<u8> {
    let mut v = vec![0; record_len(producer, round, seq)];
    write_record(producer, round, seq, &mut v);
    v
}

fn parse(r: &[u8]) -> Option<(u32, u32, u64)> {
    if r.len() < 16 {
        return None;
    }
    let producer = u32::from_le_bytes(r[0..4].try_into().ok()?);
    let round = u32::from_le_bytes(r[4..8].try_into().ok()?);
    let seq = u64::from_le_bytes(r[8..16].try_into().ok()?);
    (record(producer, round, seq) == r).then_some((producer, round, seq))
}

fn options() -> Options {
    // The kill storm passes a long timeout to its children, so that only
    // the owner table's judgement can get readers past a dead producer.
    let unblock = std::env::var("TIDELOG_TEST_UNBLOCK_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(UNBLOCK_MS);
    Options::new()
        .segment_capacity(2 << 20)
        .grow_step(256 << 10)
        .unblock_timeout(Duration::from_millis(unblock))
}

const UNBLOCK_MS: u64 = 300;

/// The unblock timeout of the kill storm: far longer than any wait the
/// storm allows, so every hole it passes was judged, not timed out.
const STORM_UNBLOCK_MS: u64 = 30_000;

/// Entry point of the child processes; ignored in a normal run.
#[test]
#[ignore = "child process entry point, run by the tests below"]
fn child() {
    let Some(role) = role() else { return };
    let dir = arg("DIR");
    match role.as_str() {
        // Appends N records, acknowledging them in batches. Every other
        // record is written in place (reserve, fill, commit), so that a
        // good share of the producer's time lies between reserving and
        // publishing, where a kill leaves a hole for the unblocker.
        "producer" => {
            let log = options().open(&dir).unwrap();
            let mut a = log.appender().unwrap();
            let (id, round, n) = (arg_u64("ID") as u32, arg_u64("ROUND") as u32, arg_u64("N"));
            let mut batch = Vec::new();
            for seq in 0..n {
                if seq % 2 == 0 {
                    a.append(&record(id, round, seq)).unwrap();
                } else {
                    let mut r = a.reserve(record_len(id, round, seq)).unwrap();
                    write_record(id, round, seq, &mut r);
                    r.commit().unwrap();
                }
                batch.push(seq);
                if batch.len() == 64 || seq + 1 == n {
                    say(format!("acked {}", seq + 1));
                    batch.clear();
                }
            }
            say("done");
        }
        // Reads until a record "END", checking that every producer's records
        // arrive exactly once and in order; says "round R" at each round
        // marker and finally one count per (round, producer).
        "reader" => {
            let log = if arg("MODE") == "ro" {
                options().open_read_only(&dir).unwrap()
            } else {
                options().open(&dir).unwrap()
            };
            let mut reader = log.reader().with_wait_strategy(WaitStrategy::Park);
            say("ready");
            let mut next: HashMap<(u32, u32), u64> = HashMap::new();
            loop {
                let r = reader
                    .next_timeout(Duration::from_secs(120))
                    .unwrap()
                    .expect("reader timed out");
                if &*r == b"END" {
                    break;
                }
                if let Some(round) = r.strip_prefix(b"ROUND ") {
                    say(format!("round {}", String::from_utf8_lossy(round)));
                    say(format!(
                        "repairs {}",
                        tidelog::internals::dead_owner_repairs()
                    ));
                    continue;
                }
                let (p, round, seq) = parse(&r).unwrap_or_else(|| {
                    panic!(
                        "garbage record at {}: {:?}",
                        r.position(),
                        &r[..r.len().min(32)]
                    )
                });
                let expected = next.entry((round, p)).or_insert(0);
                assert_eq!(
                    seq, *expected,
                    "producer {p} round {round}: out of order or duplicated"
                );
                *expected += 1;
            }
            let mut counts: Vec<_> = next.into_iter().collect();
            counts.sort();
            for ((round, p), n) in counts {
                say(format!("count {round} {p} {n}"));
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn reader_counts(lines: &[String]) -> HashMap<(u32, u32), u64> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix("count "))
        .map(|l| {
            let v: Vec<u64> = l.split(' ').map(|x| x.parse().unwrap()).collect();
            ((v[0] as u32, v[1] as u32), v[2])
        })
        .collect()
}

fn append_marker(dir: &std::path::Path, marker: &[u8]) {
    let log = options().open(dir).unwrap();
    log.appender().unwrap().append(marker).unwrap();
}

#[test]
fn four_producer_processes_two_reader_processes() {
    const PRODUCERS: u32 = 4;
    const PER_PRODUCER: u64 = 250_000;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    drop(options().open(&dir).unwrap());
    let d = dir.to_str().unwrap().to_owned();
    let mut readers: Vec<Proc> = ["ro", "rw"]
        .iter()
        .map(|mode| Proc::spawn("reader", &[("DIR", d.clone()), ("MODE", mode.to_string())]))
        .collect();
    for r in &mut readers {
        assert_eq!(hear(&mut r.out).as_deref(), Some("ready"));
    }
    let producers: Vec<Child> = (0..PRODUCERS)
        .map(|id| {
            spawn(
                "child",
                "producer",
                &[
                    ("DIR", d.clone()),
                    ("ID", id.to_string()),
                    ("ROUND", "0".into()),
                    ("N", PER_PRODUCER.to_string()),
                ],
            )
        })
        .collect();
    for p in producers {
        let out = p.wait_with_output().unwrap();
        assert!(out.status.success(), "producer failed: {:?}", out.status);
    }
    append_marker(&dir, b"END");
    for mut r in readers {
        let lines = hear_all(&mut r.out);
        assert!(r.child.wait().unwrap().success(), "reader failed");
        let counts = reader_counts(&lines);
        for id in 0..PRODUCERS {
            assert_eq!(
                counts.get(&(0, id)),
                Some(&PER_PRODUCER),
                "producer {id}: {counts:?}"
            );
        }
    }
    let log = Log::open_read_only(&dir).unwrap();
    let segments = log.segments().unwrap().len();
    assert!(
        segments >= 6,
        "only {segments} segments: fewer than 5 rollovers"
    );
}

#[test]
fn kill_storm_loses_no_acknowledged_record_and_readers_never_stall() {
    const ROUNDS: u32 = 30;
    const PRODUCERS: u32 = 3;
    const PER_PRODUCER: u64 = 20_000;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    drop(options().open(&dir).unwrap());
    let d = dir.to_str().unwrap().to_owned();
    let unblock = ("UNBLOCK_MS", STORM_UNBLOCK_MS.to_string());
    // One reader with write access (it pads a dead producer's hole), one
    // read-only (it passes over it by itself, writing nothing).
    let mut readers: Vec<Proc> = ["rw", "ro"]
        .iter()
        .map(|mode| {
            Proc::spawn(
                "reader",
                &[
                    ("DIR", d.clone()),
                    ("MODE", mode.to_string()),
                    unblock.clone(),
                ],
            )
        })
        .collect();
    for r in &mut readers {
        assert_eq!(hear(&mut r.out).as_deref(), Some("ready"));
    }
    let mut rng = Rng(77);
    let mut acked: HashMap<(u32, u32), u64> = HashMap::new();
    let mut killed_mid_append = 0;
    let mut repairs = [0u64; 2];
    let mut longest_wait = Duration::ZERO;
    for round in 0..ROUNDS {
        let mut producers: Vec<Proc> = (0..PRODUCERS)
            .map(|id| {
                Proc::spawn(
                    "producer",
                    &[
                        ("DIR", d.clone()),
                        ("ID", id.to_string()),
                        ("ROUND", round.to_string()),
                        ("N", PER_PRODUCER.to_string()),
                        unblock.clone(),
                    ],
                )
            })
            .collect();
        let victim = rng.below(u64::from(PRODUCERS)) as usize;
        // Read the victim's acknowledgements until a random count, then
        // kill it in the middle of whatever it is doing.
        let kill_after = 1 + rng.below(300);
        let mut victim_acked = 0;
        for _ in 0..kill_after {
            match hear(&mut producers[victim].out) {
                Some(l) if l.starts_with("acked ") => victim_acked = l[6..].parse().unwrap(),
                _ => break,
            }
        }
        producers[victim].child.kill().unwrap();
        let status = producers[victim].child.wait().unwrap();
        // What it acknowledged before dying is still in the pipe.
        let mut finished = false;
        for l in hear_all(&mut producers[victim].out) {
            if let Some(n) = l.strip_prefix("acked ") {
                victim_acked = n.parse().unwrap();
            }
            finished |= l == "done";
        }
        // Killed, or (rarely) done before the kill came: never failed on
        // its own.
        assert!(
            status.signal() == Some(libc::SIGKILL) || (finished && status.success()),
            "round {round}: victim ended with {status:?}"
        );
        if victim_acked < PER_PRODUCER {
            killed_mid_append += 1;
        }
        acked.insert((round, victim as u32), victim_acked);
        for (id, p) in producers.iter_mut().enumerate() {
            if id == victim {
                continue;
            }
            let lines = hear_all(&mut p.out);
            assert!(p.child.wait().unwrap().success());
            assert_eq!(lines.last().map(String::as_str), Some("done"));
            acked.insert((round, id as u32), PER_PRODUCER);
        }
        // A marker after everything: the readers reach it only by getting
        // past whatever the victim left behind.
        let marked = Instant::now();
        append_marker(&dir, format!("ROUND {round}").as_bytes());
        for (k, r) in readers.iter_mut().enumerate() {
            assert_eq!(hear(&mut r.out), Some(format!("round {round}")));
            let line = hear(&mut r.out).unwrap();
            repairs[k] = line.strip_prefix("repairs ").unwrap().parse().unwrap();
        }
        let waited = marked.elapsed();
        longest_wait = longest_wait.max(waited);
        // The victim is dead, so both readers judge its hole (if it left
        // one) at once: nothing waits for the 30 s timeout. The margin
        // allows for a loaded machine.
        assert!(
            waited < Duration::from_secs(STORM_UNBLOCK_MS / 1000 / 4),
            "round {round}: readers took {waited:?} to get past the dead producer"
        );
    }
    append_marker(&dir, b"END");
    for mut r in readers {
        let lines = hear_all(&mut r.out);
        assert!(r.child.wait().unwrap().success(), "reader failed");
        let counts = reader_counts(&lines);
        for (&(round, id), &n) in &acked {
            let seen = counts.get(&(round, id)).copied().unwrap_or(0);
            assert!(
                seen >= n,
                "round {round} producer {id}: {n} acknowledged, {seen} read"
            );
            if n == PER_PRODUCER {
                assert_eq!(seen, n);
            }
        }
    }
    assert!(
        killed_mid_append >= ROUNDS / 2,
        "only {killed_mid_append} kills landed mid-run"
    );
    // Half the victims' time is spent between reserve and commit: with
    // 30 rounds, a storm in which no kill left a hole means the rounds
    // did not exercise the dead-owner path at all.
    assert!(
        repairs[0] >= 1 && repairs[1] >= 1,
        "no dead producer's hole was judged and passed: {repairs:?}"
    );
    common::note(format!(
        "kill storm: {killed_mid_append} kills mid-run; holes of dead producers passed at once: \
         {} by the read-write reader, {} by the read-only one; longest wait for a round marker \
         {longest_wait:?} (unblock timeout {STORM_UNBLOCK_MS} ms)",
        repairs[0], repairs[1]
    ));

    // Recovery at the next open keeps all of it.
    let log = options().open(&dir).unwrap();
    let mut reader = log.reader();
    let mut next: HashMap<(u32, u32), u64> = HashMap::new();
    while let Some(r) = reader.try_next().unwrap() {
        if let Some((p, round, seq)) = parse(&r) {
            let e = next.entry((round, p)).or_insert(0);
            assert_eq!(seq, *e);
            *e += 1;
        }
    }
    for (k, &n) in &acked {
        assert!(next.get(k).copied().unwrap_or(0) >= n);
    }
}

#[test]
#[ignore = "child process entry point, run by the test below"]
fn stalled_writer() {
    if role().as_deref() != Some("stalled") {
        return;
    }
    let log = options().open(arg("DIR")).unwrap();
    let mut a = log.appender().unwrap();
    let mut r = a.reserve(11).unwrap();
    r.copy_from_slice(b"late record");
    say(format!("reserved {}", r.position()));
    // The parent stops this process (SIGSTOP) here, between reserve and
    // commit, for longer than the unblock timeout.
    std::thread::sleep(Duration::from_millis(500));
    let pos = r.commit().unwrap();
    say(format!("committed {pos}"));
}

#[test]
fn a_writer_stopped_between_reserve_and_commit_is_unblocked_and_republishes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let log = options().open(&dir).unwrap();
    let mut a = log.appender().unwrap();
    let before = a.append(b"before").unwrap();

    let mut child = spawn(
        "stalled_writer",
        "stalled",
        &[("DIR", dir.to_str().unwrap().into())],
    );
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let line = hear(&mut out).unwrap();
    let reserved: u64 = line.strip_prefix("reserved ").unwrap().parse().unwrap();
    let pid = child.id() as i32;
    assert!(common::run("kill", &["-STOP", &pid.to_string()]));

    // A record appended after the stalled one's reservation.
    let after = a.append(b"after").unwrap();
    assert!(u64::from(after) > reserved);

    // This process reads: it waits at the stalled frame for the unblock
    // timeout, pads it, and moves on.
    let mut reader = log.reader();
    assert_eq!(&*reader.try_next().unwrap().unwrap(), b"before");
    let started = Instant::now();
    let r = reader
        .next_timeout(Duration::from_secs(30))
        .unwrap()
        .unwrap();
    assert_eq!(&*r, b"after");
    assert!(started.elapsed() >= Duration::from_millis(UNBLOCK_MS));

    // The hole is padding now, exactly the stalled frame's size.
    let seg = dir.join(format!("{:016x}.tlog", 0));
    let bytes = std::fs::read(&seg).unwrap();
    let word = u64::from_le_bytes(
        bytes[reserved as usize..reserved as usize + 8]
            .try_into()
            .unwrap(),
    );
    assert_eq!(
        frame::decode(word, reserved),
        Ok(Header::Padding {
            len: (frame::record_frame_len(11) - 8) as u32
        })
    );

    // Resume the writer: its commit loses to the padding and appends again.
    assert!(common::run("kill", &["-CONT", &pid.to_string()]));
    let line = hear(&mut out).unwrap();
    let committed: u64 = line.strip_prefix("committed ").unwrap().parse().unwrap();
    assert!(child.wait().unwrap().success());
    assert!(committed > u64::from(after), "republished at {committed}");
    let r = reader
        .next_timeout(Duration::from_secs(30))
        .unwrap()
        .unwrap();
    assert_eq!(
        (&*r, r.position()),
        (&b"late record"[..], Position::from(committed))
    );
    assert!(reader.try_next().unwrap().is_none());

    // Exactly once, and nothing else changed.
    let mut all = Vec::new();
    let mut reader = log.reader();
    while let Some(r) = reader.try_next().unwrap() {
        all.push((r.position(), r.to_vec()));
    }
    assert_eq!(
        all,
        vec![
            (before, b"before".to_vec()),
            (after, b"after".to_vec()),
            (Position::from(committed), b"late record".to_vec())
        ]
    );
}
