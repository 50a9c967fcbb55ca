//! Consumer groups with real processes: three workers share 200,000
//! records while one is SIGKILLed holding batches and another is SIGSTOPped
//! past the visibility timeout; a poison record that kills every worker it
//! reaches ends in the dead letters after `max_deliveries`.

mod common;

use std::collections::BTreeMap;
use std::io::BufReader;
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{arg, arg_u64, hear, note, role, say, spawn};
use tidelog::{Error, GroupOptions, Log, Options, Position};

fn options() -> Options {
    Options::new().segment_capacity(1 << 20).grow_step(64 << 10)
}

fn record(i: u64) -> Vec<u8> {
    let mut r = i.to_le_bytes().to_vec();
    r.resize(8 + (i % 57) as usize, (i % 251) as u8);
    r
}

fn index_of(r: &[u8]) -> u64 {
    u64::from_le_bytes(r[..8].try_into().unwrap())
}

fn filled(dir: &std::path::Path, n: u64) -> Vec<Position> {
    let log = options().open(dir).unwrap();
    let mut a = log.appender().unwrap();
    let positions = (0..n).map(|i| a.append(&record(i)).unwrap()).collect();
    drop(a);
    log.close().unwrap();
    positions
}

fn group_options() -> GroupOptions {
    GroupOptions::new()
        .batch(64)
        .visibility_timeout(Duration::from_millis(arg_u64("VISIBILITY_MS")))
        .max_deliveries(3)
}

/// A batch as a worker reports it: first record index, records, deliveries.
fn describe(batch: &[(u64, u64, u32)]) -> String {
    batch
        .iter()
        .map(|(first, n, d)| format!("{first}:{n}:{d}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
#[ignore = "child process entry point, run by the tests below"]
fn child() {
    let Some(role) = role() else { return };
    assert_eq!(role, "worker");
    let log = options().open_read_only(arg("DIR")).unwrap();
    let mut member = log.group_member_with("work", group_options()).unwrap();
    let hold = arg_u64("HOLD") as usize;
    let pause_at = arg_u64("PAUSE_AT");
    let poison = arg_u64("POISON");
    say("joined");
    let mut rounds = 0;
    loop {
        let mut held = Vec::new();
        while held.len() < hold {
            match member.claim_timeout(Duration::from_millis(50)).unwrap() {
                Some(b) => held.push(b),
                None => break,
            }
        }
        if held.is_empty() {
            continue;
        }
        let mut seen = Vec::new();
        for b in &mut held {
            let (mut first, mut n) = (None, 0);
            while let Some(r) = member.next_record(b).unwrap() {
                let i = index_of(&r);
                assert_eq!(&*r, &record(i)[..], "record {i} as written");
                if i == poison {
                    say(format!("poison {}", b.deliveries()));
                    std::process::abort();
                }
                assert!(first.is_none_or(|f| f + n == i), "a batch is a run");
                first.get_or_insert(i);
                n += 1;
            }
            assert_eq!(n, b.len() as u64);
            seen.push((first.unwrap(), n, b.deliveries()));
        }
        rounds += 1;
        say(format!("holding {}", describe(&seen)));
        if rounds == pause_at {
            // The parent kills this process, or stops it and, once it lets
            // it go on, tells it to ack: the stop always comes first.
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).unwrap();
        }
        for (b, s) in held.into_iter().zip(seen) {
            let what = describe(&[s]);
            say(format!("acking {what}"));
            match member.ack(b) {
                Ok(()) => say(format!("acked {what}")),
                Err(Error::ClaimLost { .. }) => say(format!("lost {what}")),
                Err(e) => panic!("ack: {e}"),
            }
        }
    }
}

/// A running worker and the lines it says, through a channel.
struct Worker {
    child: Child,
}

fn start_worker(
    dir: &std::path::Path,
    id: usize,
    env: &[(&str, String)],
    tx: &mpsc::Sender<(usize, Option<String>)>,
) -> Worker {
    let mut args = vec![("DIR", dir.display().to_string())];
    args.extend(env.iter().cloned());
    let mut child = spawn("child", "worker", &args);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let tx = tx.clone();
    std::thread::spawn(move || {
        while let Some(line) = hear(&mut out) {
            if tx.send((id, Some(line))).is_err() {
                return;
            }
        }
        let _ = tx.send((id, None));
    });
    Worker { child }
}

/// Lets a stopped worker run again and tells it to go on.
fn resume(w: &mut Worker) {
    use std::io::Write as _;
    signal(w, "CONT");
    let stdin = w.child.stdin.as_mut().unwrap();
    stdin.write_all(b"go\n").unwrap();
    stdin.flush().unwrap();
}

/// Sends `sig` (a name such as "STOP") to a worker, with kill(1): the
/// tests hold no `unsafe`.
fn signal(w: &Worker, sig: &str) {
    let pid = w.child.id().to_string();
    assert!(
        common::run("kill", &[&format!("-{sig}"), &pid]),
        "kill -{sig} {pid}"
    );
}

/// Parses "first:n:d,first:n:d".
fn batches(s: &str) -> Vec<(u64, u64, u32)> {
    s.split(',')
        .map(|b| {
            let v: Vec<u64> = b.split(':').map(|x| x.parse().unwrap()).collect();
            (v[0], v[1], v[2] as u32)
        })
        .collect()
}

/// Every acknowledgement the workers reported, by record.
struct Acks {
    count: Vec<u8>,
    total: u64,
    redelivered: u64,
}

impl Acks {
    fn new(n: u64) -> Self {
        Self {
            count: vec![0; n as usize],
            total: 0,
            redelivered: 0,
        }
    }

    fn add(&mut self, (first, n, d): (u64, u64, u32), who: usize) {
        for i in first..first + n {
            self.count[i as usize] += 1;
            assert_eq!(
                self.count[i as usize], 1,
                "record {i} acknowledged twice (worker {who})"
            );
        }
        self.total += n;
        if d > 1 {
            self.redelivered += n;
        }
    }
}

#[test]
fn three_workers_share_200k_records_through_a_kill_and_a_stop() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let n = 200_000;
    filled(&dir, n);
    // Long enough that a busy machine does not make the running workers
    // overrun it.
    let visibility = Duration::from_millis(1000);
    let (tx, rx) = mpsc::channel();
    let common = |pause_at: u64| {
        vec![
            ("VISIBILITY_MS", visibility.as_millis().to_string()),
            ("HOLD", "2".to_owned()),
            ("PAUSE_AT", pause_at.to_string()),
            ("POISON", u64::MAX.to_string()),
        ]
    };
    // Worker 0 is killed in its 100th round, holding two batches; worker
    // 1 is stopped in its 150th (of some 500 each), for four visibility
    // timeouts. Both wait there for a line from the parent before they
    // ack, so that the kill and the stop come first however slow the
    // machine; worker 1 gets its line once it runs again.
    let mut workers = vec![
        start_worker(&dir, 0, &common(100), &tx),
        start_worker(&dir, 1, &common(150), &tx),
        start_worker(&dir, 2, &common(0), &tx),
    ];
    let mut acks = Acks::new(n);
    let mut rounds = [0u64; 3];
    let mut killed_held: Vec<(u64, u64, u32)> = Vec::new();
    let mut stopped_held: Vec<(u64, u64, u32)> = Vec::new();
    let mut stopped_until: Option<Instant> = None;
    let mut lost = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(240);
    while acks.total < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} acknowledged",
            acks.total
        );
        if let Some(t) = stopped_until {
            if Instant::now() >= t {
                resume(&mut workers[1]);
                stopped_until = None;
            }
        }
        let Ok((id, line)) = rx.recv_timeout(Duration::from_millis(20)) else {
            continue;
        };
        let Some(line) = line else {
            assert_eq!(id, 0, "worker {id} ended");
            continue;
        };
        let (verb, rest) = line.split_once(' ').unwrap_or((&line, ""));
        match verb {
            "joined" | "acking" => {}
            "holding" => {
                rounds[id] += 1;
                if id == 0 && rounds[0] == 100 {
                    signal(&workers[0], "KILL");
                    killed_held = batches(rest);
                }
                if id == 1 && rounds[1] == 150 {
                    signal(&workers[1], "STOP");
                    stopped_held = batches(rest);
                    stopped_until = Some(Instant::now() + visibility * 4);
                }
            }
            "acked" => acks.add(batches(rest)[0], id),
            "lost" => {
                assert_eq!(id, 1, "only the stopped worker overruns");
                lost.extend(batches(rest));
            }
            other => panic!("worker {id} said {other}"),
        }
    }
    // Every record once; now hear what the stopped worker says about the
    // batches it held when it was stopped.
    let until = Instant::now() + Duration::from_secs(10);
    while lost.len() < stopped_held.len() && Instant::now() < until {
        if let Some(t) = stopped_until {
            if Instant::now() >= t {
                resume(&mut workers[1]);
                stopped_until = None;
            }
        }
        if let Ok((1, Some(line))) = rx.recv_timeout(Duration::from_millis(50)) {
            if let Some(rest) = line.strip_prefix("lost ") {
                lost.extend(batches(rest));
            }
            assert!(
                !line.starts_with("acked "),
                "{line} after every record was acknowledged"
            );
        }
    }
    for w in &mut workers {
        let _ = w.child.kill();
        let _ = w.child.wait();
    }
    assert_eq!(acks.count.iter().filter(|&&c| c != 1).count(), 0);
    assert_eq!(
        killed_held.len(),
        2,
        "worker 0 held two batches when killed"
    );
    let killed: u64 = killed_held.iter().map(|b| b.1).sum();
    assert!(
        acks.redelivered >= killed,
        "the killed worker's {killed} records were delivered again ({} redelivered)",
        acks.redelivered
    );
    // The stopped worker's batches were handed on while it was stopped,
    // and its acknowledgements after were refused.
    assert!(
        !stopped_held.is_empty(),
        "worker 1 was stopped holding batches"
    );
    let stopped: Vec<(u64, u64)> = stopped_held.iter().map(|b| (b.0, b.1)).collect();
    let refused: Vec<(u64, u64)> = lost.iter().map(|b| (b.0, b.1)).collect();
    assert_eq!(refused, stopped, "every batch it held was refused");
    let log = options().open_read_only(&dir).unwrap();
    let info = &log.groups().unwrap()[0];
    assert_eq!(info.watermark, log.end_position().unwrap());
    assert_eq!((info.in_flight, info.dead_letters), (0, 0));
    note(format!(
        "3 workers, {n} records: worker 0 killed holding {killed} records, worker 1 stopped \
         holding {} records; {} records delivered again",
        stopped.iter().map(|b| b.1).sum::<u64>(),
        acks.redelivered
    ));
}

#[test]
fn a_poison_record_that_kills_its_workers_ends_in_the_dead_letters() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let n = 2_000;
    let poison = 1_234;
    let positions = filled(&dir, n);
    let env = vec![
        ("VISIBILITY_MS", "30000".to_owned()),
        ("HOLD", "1".to_owned()),
        ("PAUSE_AT", "0".to_owned()),
        ("POISON", poison.to_string()),
    ];
    let (tx, rx) = mpsc::channel();
    let mut worker = start_worker(&dir, 0, &env, &tx);
    let mut acks = Acks::new(n);
    let mut deaths = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while acks.total < n - 1 {
        assert!(
            Instant::now() < deadline,
            "only {} acknowledged",
            acks.total
        );
        let Ok((id, line)) = rx.recv_timeout(Duration::from_millis(50)) else {
            continue;
        };
        match line {
            None => {
                // The worker died: another takes its place.
                let status = worker.child.wait().unwrap();
                assert!(!status.success());
                assert!(deaths.len() < 10, "too many deaths");
                worker = start_worker(&dir, id + 1, &env, &tx);
            }
            Some(line) => {
                let (verb, rest) = line.split_once(' ').unwrap_or((&line, ""));
                match verb {
                    "poison" => {
                        deaths.insert(id, rest.parse::<u32>().unwrap());
                    }
                    "acked" => acks.add(batches(rest)[0], id),
                    "joined" | "holding" | "acking" => {}
                    other => panic!("worker said {other}"),
                }
            }
        }
    }
    let _ = worker.child.kill();
    let _ = worker.child.wait();
    // It killed three workers, at its first, second and third delivery.
    assert_eq!(deaths.values().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(acks.count[poison as usize], 0);
    assert_eq!(acks.count.iter().filter(|&&c| c == 1).count() as u64, n - 1);
    let log = options().open_read_only(&dir).unwrap();
    let dead = log.dead_letters("work").unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].position, positions[poison as usize]);
    assert_eq!(dead[0].deliveries, 3);
    let info = &log.groups().unwrap()[0];
    assert_eq!(info.watermark, log.end_position().unwrap());
    let _ = Log::open_read_only(&dir).unwrap();
}
