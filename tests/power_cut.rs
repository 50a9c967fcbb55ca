//! Power cuts on a real file system: only what was explicitly synced
//! survives, and everything a policy promised is there.
//!
//! The recipe (root only; it says why it skipped otherwise):
//! - an ext4 image attached with `losetup --direct-io=on` (so the image
//!   file holds exactly what reached the block device) and mounted with
//!   `-o commit=600` (no journal commit but those a sync forces), with
//!   `vm.dirty_writeback_centisecs` at 0 (no background writeback; the old
//!   value is restored after);
//! - each cut: producer processes (under one durability policy, the three
//!   in turn) and a durable consumer run on the log; all are SIGKILLed at
//!   a random moment (during appends, rollovers, group commits, retention,
//!   or the recovery of the previous cut's kill); the image is copied at
//!   once: the copy is the disk as a power cut at that moment leaves it;
//! - the copy is attached and mounted (ext4 replays its journal), and a
//!   child that sees another boot id (as after a restart) opens the log,
//!   reads it to the end and resumes the consumer.
//!
//! Checked at every cut: reading the recovered log delivers no corrupt
//! record and ends cleanly; every record a producer learned was durable
//! (an `EveryAppend` acknowledgement, or a position at or below the
//! durable watermark) is there, intact, exactly once, at its position; the
//! consumer resumes at or after its last durable commit, and at a record
//! boundary of the recovered log.

mod common;

use std::collections::HashMap;
use std::fs;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{arg, arg_u64, hear_all, note, role, say, spawn, Proc, Rng};
use tidelog::{Durability, Log, Options, Retention, StartAt};

const PRODUCERS: u64 = 3;

fn policy(name: &str) -> Durability {
    match name {
        "buffered" => Durability::Buffered,
        "periodic" => Durability::Periodic(Duration::from_millis(30)),
        "every" => Durability::EveryAppend,
        other => panic!("unknown policy {other}"),
    }
}

fn options(p: &str) -> Options {
    Options::new()
        .segment_capacity(256 << 10)
        .grow_step(64 << 10)
        .unblock_timeout(Duration::from_millis(200))
        .retention(Retention::new().max_bytes(4 << 20))
        .durability(policy(p))
}

/// Record `seq` of producer `p` in cut `cut`: a tag, then filler derived
/// from it, so that a damaged or misplaced record is recognised.
fn record(p: u64, cut: u64, seq: u64) -> Vec<u8> {
    let tag = format!("p{p} c{cut} s{seq} ");
    let mut rng = Rng(p << 48 ^ cut << 32 ^ seq);
    let len = 24 + rng.below(200) as usize;
    let mut v = tag.into_bytes();
    while v.len() < len {
        v.push(b'a' + (rng.next_u64() % 26) as u8);
    }
    v
}

fn parse(r: &[u8]) -> Option<(u64, u64, u64)> {
    let text = std::str::from_utf8(r.get(..r.len().min(40))?).ok()?;
    let mut it = text.split(' ');
    let p = it.next()?.strip_prefix('p')?.parse().ok()?;
    let c = it.next()?.strip_prefix('c')?.parse().ok()?;
    let s = it.next()?.strip_prefix('s')?.parse().ok()?;
    (record(p, c, s) == r).then_some((p, c, s))
}

#[test]
#[ignore = "child process entry point, run by the test below"]
fn child() {
    let Some(role) = role() else { return };
    let dir = arg("DIR");
    match role.as_str() {
        // Appends until killed; says "durable SEQ POSITION" whenever it
        // learns that its records up to SEQ (the last at POSITION) are
        // durable: at once under EveryAppend, through the durable
        // watermark otherwise (after a sync now and then under Buffered).
        "producer" => {
            let p = arg("POLICY");
            let log = options(&p).open(&dir).unwrap();
            let mut a = log.appender().unwrap();
            let (id, cut) = (arg_u64("ID"), arg_u64("CUT"));
            let mut pending = std::collections::VecDeque::new();
            for seq in 0.. {
                let r = record(id, cut, seq);
                let at = a.append(&r).unwrap().get();
                if seq == 0 {
                    say(format!("first {at}"));
                }
                if p == "every" {
                    say(format!("durable {seq} {at}"));
                    continue;
                }
                let end = at + tidelog::format::frame::record_frame_len(r.len() as u32);
                pending.push_back((seq, at, end));
                if seq % 64 == 63 {
                    let durable = if p == "buffered" && seq % 256 == 255 {
                        log.sync().unwrap().get()
                    } else {
                        log.durable_position().unwrap().get()
                    };
                    let mut last = None;
                    while pending.front().is_some_and(|&(_, _, end)| end <= durable) {
                        last = pending.pop_front();
                    }
                    if let Some((seq, at, _)) = last {
                        say(format!("durable {seq} {at}"));
                    }
                }
            }
        }
        // Reads as the durable consumer "c", committing every 200 records;
        // says "committed POSITION" once a commit is durable (at once under
        // EveryAppend, after a sync otherwise).
        "consumer" => {
            let p = arg("POLICY");
            let log = options(&p).open(&dir).unwrap();
            let mut c = log.consumer_from("c", StartAt::Beginning).unwrap();
            let mut n = 0u64;
            loop {
                if c.next_timeout(Duration::from_millis(50)).unwrap().is_none() {
                    continue;
                }
                n += 1;
                if n.is_multiple_of(200) {
                    let at = c.commit().unwrap();
                    if p != "every" {
                        log.sync().unwrap();
                    }
                    say(format!("committed {at}"));
                }
            }
        }
        // After the cut, as after a restart: recovers the log, reads it to
        // the end, and resumes the consumer.
        "check" => {
            let log = Options::new().open(&dir).unwrap();
            let first = log.segments().unwrap()[0].base;
            say(format!("first {first}"));
            say(format!("moved {}", log.recovery().consumers_moved_back));
            let mut reader = log.reader();
            loop {
                match reader.try_next() {
                    Ok(Some(r)) => match parse(&r) {
                        Some((p, c, s)) => say(format!(
                            "rec {} {} {p} {c} {s}",
                            r.position(),
                            r.next_position()
                        )),
                        None => say(format!("garbage {}", r.position())),
                    },
                    Ok(None) => break,
                    Err(e) => {
                        say(format!("error {e}"));
                        break;
                    }
                }
            }
            say(format!("end {}", log.end_position().unwrap()));
            match log.consumer("c") {
                Ok(mut c) => {
                    let at = c.position();
                    match c.try_next() {
                        Ok(_) => say(format!("consumer {at}")),
                        Err(e) => say(format!("consumer-error {at} {e}")),
                    }
                }
                Err(tidelog::Error::ConsumerNotFound { .. }) => say("consumer none"),
                Err(e) => say(format!("consumer-error 0 {e}")),
            }
        }
        other => panic!("unknown role {other}"),
    }
}

/// Restores a sysctl when dropped.
struct Sysctl {
    path: &'static str,
    old: String,
}

impl Sysctl {
    fn set(path: &'static str, value: &str) -> Option<Sysctl> {
        let old = fs::read_to_string(path).ok()?;
        fs::write(path, value).ok()?;
        Some(Sysctl { path, old })
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let _ = fs::write(self.path, self.old.trim());
    }
}

/// An ext4 image attached with direct I/O and mounted; detached and
/// unmounted when dropped.
struct Disk {
    img: PathBuf,
    mnt: PathBuf,
    dev: String,
}

impl Disk {
    fn make(root: &Path, mib: u64) -> Result<Disk, String> {
        let img = root.join("disk.img");
        let f = fs::File::create(&img).unwrap();
        f.set_len(mib << 20).unwrap();
        drop(f);
        if !common::run("mkfs.ext4", &["-q", "-F", img.to_str().unwrap()]) {
            return Err("mkfs.ext4 failed or is missing (Debian package e2fsprogs)".into());
        }
        let out = std::process::Command::new("losetup")
            .args(["--direct-io=on", "--find", "--show", img.to_str().unwrap()])
            .output()
            .map_err(|e| format!("losetup is missing: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "losetup --direct-io=on failed (no loop device here?): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let mnt = root.join("mnt");
        fs::create_dir(&mnt).unwrap();
        if !common::run("mount", &["-o", "commit=600", &dev, mnt.to_str().unwrap()]) {
            common::run("losetup", &["-d", &dev]);
            return Err("mounting the ext4 image failed".into());
        }
        Ok(Disk { img, mnt, dev })
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        common::run("umount", &[self.mnt.to_str().unwrap()]);
        common::run("losetup", &["-d", &self.dev]);
    }
}

/// What producers and the consumer learned was durable before a cut.
#[derive(Default)]
struct Promises {
    /// Per (producer, cut): the last durable sequence number and its
    /// position.
    durable: HashMap<(u64, u64), (u64, u64)>,
    /// Per (producer, cut): the position of its first record.
    first: HashMap<(u64, u64), u64>,
    /// The consumer's last durable commit.
    committed: u64,
}

/// One cut: runs producers and the consumer under `policy` for a random
/// while, kills them all, and copies the image to `copy`.
fn run_and_cut(
    disk: &Disk,
    dir: &Path,
    policy: &str,
    cut: u64,
    rng: &mut Rng,
    copy: &Path,
    promised: &mut Promises,
) -> u32 {
    let d = dir.to_str().unwrap().to_owned();
    let mut procs: Vec<(Option<u64>, Proc)> = Vec::new();
    for id in 0..PRODUCERS {
        let mut child = spawn(
            "child",
            "producer",
            &[
                ("DIR", d.clone()),
                ("POLICY", policy.into()),
                ("ID", id.to_string()),
                ("CUT", cut.to_string()),
            ],
        );
        let out = BufReader::new(child.stdout.take().unwrap());
        procs.push((Some(id), Proc { child, out }));
    }
    let mut child = spawn(
        "child",
        "consumer",
        &[("DIR", d), ("POLICY", policy.into())],
    );
    let out = BufReader::new(child.stdout.take().unwrap());
    procs.push((None, Proc { child, out }));
    // Some cuts land while the processes open the log (and the first one
    // recovers after the previous cut's kill), most while they run.
    let wait = match rng.below(4) {
        0 => rng.below(30),
        _ => 30 + rng.below(400),
    };
    std::thread::sleep(Duration::from_millis(wait));
    for (_, p) in &procs {
        common::run("kill", &["-KILL", &p.child.id().to_string()]);
    }
    for (_, p) in &mut procs {
        p.child.wait().unwrap();
    }
    // The power cut: the device as it is now.
    fs::copy(&disk.img, copy).unwrap();
    let kills = procs.len() as u32;
    for (who, p) in procs.iter_mut() {
        let who = *who;
        for line in hear_all(&mut p.out) {
            let mut w = line.split(' ');
            match (who, w.next()) {
                (Some(id), Some("durable")) => {
                    let seq = w.next().unwrap().parse().unwrap();
                    let at = w.next().unwrap().parse().unwrap();
                    promised.durable.insert((id, cut), (seq, at));
                }
                (Some(id), Some("first")) => {
                    promised
                        .first
                        .insert((id, cut), w.next().unwrap().parse().unwrap());
                }
                (None, Some("committed")) => {
                    promised.committed = w.next().unwrap().parse().unwrap();
                }
                _ => panic!("unexpected line {line:?}"),
            }
        }
    }
    kills
}

/// Mounts the copy, recovers it as after a restart, and checks it against
/// the promises. Returns the records checked.
fn check_copy(root: &Path, copy: &Path, cut: u64, promised: &Promises) -> (u64, u64) {
    let mnt = root.join("copy-mnt");
    fs::create_dir_all(&mnt).unwrap();
    assert!(
        common::run(
            "mount",
            &["-o", "loop", copy.to_str().unwrap(), mnt.to_str().unwrap()]
        ),
        "cut {cut}: the copy does not mount"
    );
    let boot = root.join("boot_id");
    fs::write(&boot, common::fake_boot_id(cut)).unwrap();
    let mut child = common::spawn_restarted(
        "child",
        "check",
        &[("DIR", mnt.join("log").to_str().unwrap().to_owned())],
        &boot,
    );
    let lines = hear_all(&mut BufReader::new(child.stdout.take().unwrap()));
    let status = child.wait().unwrap();
    common::run("umount", &[mnt.to_str().unwrap()]);
    assert!(
        status.success(),
        "cut {cut}: the checking child failed: {status:?}"
    );

    let mut first = 0;
    let mut end = 0;
    let mut found: HashMap<(u64, u64, u64), u64> = HashMap::new();
    let mut boundaries = std::collections::HashSet::new();
    let mut consumer = None;
    let mut moved = 0;
    for line in &lines {
        let w: Vec<&str> = line.split(' ').collect();
        match w[0] {
            "first" => first = w[1].parse().unwrap(),
            "moved" => moved += w[1].parse::<u64>().unwrap(),
            "rec" => {
                let at: u64 = w[1].parse().unwrap();
                // Where a reader goes on after the record: a consumer that
                // read it resumes there, even when a hole (padding) or the
                // end of a segment follows rather than a record.
                let next: u64 = w[2].parse().unwrap();
                let key = (
                    w[3].parse().unwrap(),
                    w[4].parse().unwrap(),
                    w[5].parse().unwrap(),
                );
                assert!(
                    found.insert(key, at).is_none(),
                    "cut {cut}: record {key:?} delivered twice"
                );
                boundaries.insert(at);
                boundaries.insert(next);
            }
            "garbage" => panic!("cut {cut}: a record that no producer wrote at {}", w[1]),
            "error" => panic!("cut {cut}: reading the recovered log failed: {line}"),
            "end" => end = w[1].parse().unwrap(),
            "consumer" => consumer = w[1].parse::<u64>().ok(),
            "consumer-error" => panic!("cut {cut}: the consumer cannot resume: {line}"),
            _ => panic!("cut {cut}: unexpected line {line:?}"),
        }
    }
    boundaries.insert(end);
    let mut checked = 0;
    for (&(p, c), &(last, at)) in &promised.durable {
        if at < first {
            // Retention deleted the segments that held them.
            continue;
        }
        // Retention deletes whole segments, oldest first: if this
        // producer's first record lies below the oldest segment kept, a
        // prefix of its records may be gone; the rest must all be there.
        let start = promised.first[&(p, c)];
        let from = if start < first {
            (0..=last)
                .find(|s| found.contains_key(&(p, c, *s)))
                .unwrap_or(last)
        } else {
            0
        };
        for s in from..=last {
            match found.get(&(p, c, s)) {
                Some(&pos) => {
                    if s == last {
                        assert_eq!(pos, at, "cut {cut}: p{p} c{c} s{s} moved");
                    }
                    checked += 1;
                }
                None => panic!(
                    "cut {cut}: p{p} c{c} s{s} was durable (up to s{last} at {at}) but is lost \
                     (the log runs from {first} to {end})"
                ),
            }
        }
    }
    if let Some(at) = consumer {
        assert!(
            at >= promised.committed,
            "cut {cut}: the consumer resumes at {at}, before its durable commit {}",
            promised.committed
        );
        assert!(
            boundaries.contains(&at) || at < first,
            "cut {cut}: the consumer resumes at {at}, not a record boundary of the recovered log"
        );
    } else {
        assert_eq!(
            promised.committed, 0,
            "cut {cut}: the consumer's durable commit is lost"
        );
    }
    (checked, moved)
}

#[test]
fn power_cuts_lose_nothing_that_was_durable() {
    const CUTS: u64 = 51;
    if !common::is_root() {
        note("SKIPPED power cuts: needs root (loop devices, mounts, sysctls)");
        return;
    }
    if let Err(why) = common::can_fake_restart() {
        note(format!("SKIPPED power cuts: {why}"));
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let disk = match Disk::make(root, 256) {
        Ok(d) => d,
        Err(why) => {
            note(format!("SKIPPED power cuts: {why}"));
            return;
        }
    };
    let Some(_writeback) = Sysctl::set("/proc/sys/vm/dirty_writeback_centisecs", "0") else {
        note("SKIPPED power cuts: cannot set vm.dirty_writeback_centisecs");
        return;
    };
    let dir = disk.mnt.join("log");
    let copy = root.join("copy.img");
    let mut rng = Rng(0x90_0E12);
    let mut promised = Promises::default();
    let (mut kills, mut records, mut moved) = (0u32, 0u64, 0u64);
    let started = Instant::now();
    for cut in 0..CUTS {
        let policy = ["buffered", "periodic", "every"][(cut % 3) as usize];
        kills += run_and_cut(&disk, &dir, policy, cut, &mut rng, &copy, &mut promised);
        let (checked, back) = check_copy(root, &copy, cut, &promised);
        records += checked;
        moved += back;
    }
    note(format!(
        "power cuts: {CUTS} cuts (three policies in turn), {kills} processes killed, \
         {records} durable records checked after the cuts, 0 lost; {moved} consumer commits \
         found past the end of the recovered log and moved back to it; in {:?}",
        started.elapsed()
    ));
    drop(Log::open_read_only(&dir).unwrap());
}
