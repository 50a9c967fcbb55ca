//! Power cuts, simulated: crash images whose 4 KiB pages, or 512-byte
//! sectors, each come from some moment after the last flush (including
//! after a clean close), recovered in a child process that sees another
//! boot id than the one that wrote them (a private mount namespace with a
//! file bound over `/proc/sys/kernel/random/boot_id`). After recovery the
//! log must read from start to end with no error, hold every record that
//! was flushed, and hold a prefix of the log in position order: no gap.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{arg, hear_all, note, payload, role, say, Rng};
use tidelog::{Log, Options, Position};

const CAPACITY: u64 = 64 << 10;

fn options() -> Options {
    Options::new()
        .segment_capacity(CAPACITY)
        .grow_step(4096)
        .unblock_timeout(Duration::from_millis(100))
}

/// The segment files of a log directory: name to bytes.
type Snapshot = BTreeMap<String, Vec<u8>>;

fn snapshot(dir: &Path) -> Snapshot {
    let mut out = Snapshot::new();
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        if name.ends_with(".tlog") {
            out.insert(name, fs::read(e.path()).unwrap());
        }
    }
    out
}

fn read_all(log: &Log) -> Result<Vec<(Position, Vec<u8>)>, tidelog::Error> {
    let mut r = log.reader();
    let mut out = Vec::new();
    while let Some(rec) = r.try_next()? {
        out.push((rec.position(), rec.to_vec()));
    }
    Ok(out)
}

/// Writes records as `position length bytes...` lines of hex, for a child.
fn write_truth(path: &Path, records: &[(Position, Vec<u8>)], must_survive: usize) {
    let mut s = format!("{must_survive}\n");
    for (p, b) in records {
        s.push_str(&format!("{} {}\n", p, hex(b)));
    }
    fs::write(path, s).unwrap();
}

fn read_truth(path: &Path) -> (Vec<(Position, Vec<u8>)>, usize) {
    let s = fs::read_to_string(path).unwrap();
    let mut lines = s.lines();
    let must: usize = lines.next().unwrap().parse().unwrap();
    let recs = lines
        .map(|l| {
            let (p, h) = l.split_once(' ').unwrap();
            (Position::from(p.parse::<u64>().unwrap()), unhex(h))
        })
        .collect();
    (recs, must)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// Recovers the log in `dir` (in a process that sees another boot) and
/// checks it against `truth`; returns how many records survived.
fn check_recovered(
    dir: &Path,
    truth: &[(Position, Vec<u8>)],
    must: usize,
) -> Result<usize, String> {
    let log = options()
        .open(dir)
        .map_err(|e| format!("open failed: {e}"))?;
    if !log.recovery().after_restart {
        return Err(format!(
            "recovery did not see a restart: {:?}",
            log.recovery()
        ));
    }
    let got = read_all(&log).map_err(|e| format!("reading after recovery: {e}"))?;
    if got.len() > truth.len() || got[..] != truth[..got.len()] {
        let first_bad = got
            .iter()
            .zip(truth)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(truth.len()));
        return Err(format!(
            "not a prefix of the log: {} records survived, the {first_bad}th differs ({:?} vs {:?})",
            got.len(),
            got.get(first_bad).map(|r| r.0),
            truth.get(first_bad).map(|r| r.0)
        ));
    }
    if got.len() < must {
        return Err(format!(
            "lost flushed records: {} survived, {must} were flushed",
            got.len()
        ));
    }
    // The log takes appends after the prefix, and a second open (now on
    // the boot that recovered it) changes nothing.
    let pos = log
        .appender()
        .map_err(|e| format!("appender: {e}"))?
        .append(b"after recovery")
        .map_err(|e| format!("append after recovery: {e}"))?;
    drop(log);
    let log = options()
        .open(dir)
        .map_err(|e| format!("second open: {e}"))?;
    let again = read_all(&log).map_err(|e| format!("reading after the second open: {e}"))?;
    let mut want = got.clone();
    want.push((pos, b"after recovery".to_vec()));
    if again != want {
        return Err(format!(
            "second open: {} records, expected {}",
            again.len(),
            want.len()
        ));
    }
    Ok(got.len())
}

#[test]
#[ignore = "child process entry point, run by the tests below"]
fn child() {
    let Some(role) = role() else { return };
    match role.as_str() {
        // Recover every image under ROOT and check it against TRUTH.
        "images" => {
            let (truth, must) = read_truth(Path::new(&arg("TRUTH")));
            let mut dirs: Vec<PathBuf> = fs::read_dir(arg("ROOT"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.is_dir())
                .collect();
            dirs.sort();
            for d in dirs {
                let name = d.file_name().unwrap().to_string_lossy().into_owned();
                match check_recovered(&d, &truth, must) {
                    Ok(n) => say(format!("ok {name} {n}")),
                    Err(e) => say(format!("fail {name} {e}")),
                }
            }
        }
        other => panic!("unknown role {other}"),
    }
}

/// Runs the `images` child in a namespace that sees a fresh boot id; `None`
/// if this machine cannot fake a restart (and says so).
fn recover_after_restart(
    root: &Path,
    truth: &[(Position, Vec<u8>)],
    must: usize,
    seed: u64,
) -> Option<Vec<String>> {
    if let Err(why) = common::can_fake_restart() {
        note(format!("SKIPPED power-loss recovery: {why}"));
        return None;
    }
    let truth_file = root.join("truth");
    write_truth(&truth_file, truth, must);
    let boot_file = root.join("boot_id");
    fs::write(&boot_file, common::fake_boot_id(seed)).unwrap();
    let mut child = common::spawn_restarted(
        "child",
        "images",
        &[
            ("ROOT", root.join("images").to_str().unwrap().to_owned()),
            ("TRUTH", truth_file.to_str().unwrap().to_owned()),
        ],
        &boot_file,
    );
    let lines = hear_all(&mut BufReader::new(child.stdout.take().unwrap()));
    let status = child.wait().unwrap();
    assert!(status.success(), "recovering child failed: {status:?}");
    Some(lines)
}

/// Builds a crash image from the snapshots: the directory as it was at a
/// random snapshot (segment files are created durably, so a file that
/// existed then exists), each file's length from a random snapshot that
/// has it, and each `grain`-sized piece of it from a random snapshot that
/// has the file (zeros where that snapshot's file was shorter). With
/// `only`, everything comes from that one snapshot: a crash right then,
/// with every page written back.
fn build_image(
    snaps: &[Snapshot],
    locks: &Path,
    grain: usize,
    only: Option<usize>,
    rng: &mut Rng,
    out: &Path,
) {
    fs::create_dir_all(out).unwrap();
    for lock in ["open.lock", "writers.lock"] {
        fs::copy(locks.join(lock), out.join(lock)).unwrap();
    }
    if let Some(i) = only {
        for (name, bytes) in &snaps[i] {
            fs::write(out.join(name), bytes).unwrap();
        }
        return;
    }
    let dir_time = rng.below(snaps.len() as u64) as usize;
    let names: BTreeSet<&String> = snaps[..=dir_time].iter().flat_map(|s| s.keys()).collect();
    for name in names {
        let has: Vec<&Vec<u8>> = snaps.iter().filter_map(|s| s.get(name)).collect();
        let len = has[rng.below(has.len() as u64) as usize].len();
        let mut img = vec![0u8; len];
        for (i, chunk) in img.chunks_mut(grain).enumerate() {
            let from = has[rng.below(has.len() as u64) as usize];
            let at = i * grain;
            if at < from.len() {
                let n = chunk.len().min(from.len() - at);
                chunk[..n].copy_from_slice(&from[at..at + n]);
            }
        }
        fs::write(out.join(name), img).unwrap();
    }
}

#[test]
fn power_cut_images_recover_to_a_prefix_holding_every_flushed_record() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let log = options().open(&dir).unwrap();
    let mut a = log.appender().unwrap();
    let mut b = log.appender().unwrap();
    let mut i = 0u64;
    let mut next = |a: &mut tidelog::Appender| {
        i += 1;
        a.append(&payload(1, i, 1500)).unwrap()
    };
    for _ in 0..40 {
        next(&mut a);
    }
    // A flush with a reservation in flight below the records it covers:
    // the flush waits for it to be published.
    let mut acked = BTreeSet::new();
    std::thread::scope(|s| {
        let mut r = b.reserve(300).unwrap();
        r.fill(0x33);
        acked.insert(next(&mut a));
        acked.insert(next(&mut a));
        s.spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            r.commit().unwrap();
        });
        log.flush().unwrap();
    });
    // A flush with a reservation that outlives the unblock timeout: the
    // flush pads it over, and its commit appends the record again later.
    std::thread::scope(|s| {
        let mut r = b.reserve(200).unwrap();
        r.fill(0x44);
        acked.insert(next(&mut a));
        s.spawn(move || {
            std::thread::sleep(Duration::from_millis(400));
            r.commit().unwrap();
        });
        log.flush().unwrap();
    });
    for rec in read_all(&log).unwrap() {
        acked.insert(rec.0);
    }
    let flushed_upto = *acked.iter().max().unwrap();
    let mut snaps = vec![snapshot(&dir)];

    // Appends after the last flush, from two appenders, with snapshots
    // between them, some taken while a reservation is half written, and
    // rolling over into new segments.
    let mut rng = Rng(7);
    for step in 0..12 {
        for _ in 0..rng.below(30) {
            next(&mut a);
        }
        let mut r = b.reserve(rng.below(500) as usize).unwrap();
        let half = r.len() / 2;
        r[..half].fill(step as u8 + 1);
        snaps.push(snapshot(&dir));
        r[half..].fill(step as u8 + 1);
        r.commit().unwrap();
        for _ in 0..rng.below(10) {
            next(&mut b);
        }
        snaps.push(snapshot(&dir));
    }
    drop((a, b));
    drop(log);
    // After a clean close.
    snaps.push(snapshot(&dir));
    let segments = snaps.last().unwrap().len();
    assert!(segments >= 3, "only {segments} segments");

    let truth = read_all(&Log::open_read_only(&dir).unwrap()).unwrap();
    let must = truth.iter().filter(|r| r.0 <= flushed_upto).count();
    assert!(
        must >= 44 && must < truth.len(),
        "{must} of {}",
        truth.len()
    );

    let images = tmp.path().join("images");
    let mut rng = Rng(20261130);
    for n in 0..160 {
        let grain = if n % 2 == 0 { 4096 } else { 512 };
        // Every tenth image is one consistent snapshot; the last one is
        // the log after its clean close.
        let only = match n {
            159 => Some(snaps.len() - 1),
            _ if n % 10 == 9 => Some(rng.below(snaps.len() as u64) as usize),
            _ => None,
        };
        build_image(
            &snaps,
            &dir,
            grain,
            only,
            &mut rng,
            &images.join(format!("{n:03}-{grain}")),
        );
    }
    let Some(lines) = recover_after_restart(tmp.path(), &truth, must, 1) else {
        return;
    };
    assert_eq!(lines.len(), 160, "{lines:?}");
    let failures: Vec<&String> = lines.iter().filter(|l| !l.starts_with("ok ")).collect();
    assert!(
        failures.is_empty(),
        "{} of 160 images failed:\n{failures:#?}",
        failures.len()
    );
    let survived: Vec<usize> = lines
        .iter()
        .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    let whole = survived.iter().filter(|&&n| n == truth.len()).count();
    let cut = survived.len() - whole;
    note(format!(
        "power-cut images: 160 recovered; {whole} kept all {} records, {cut} were cut to a prefix (shortest {}, flushed {must})",
        truth.len(),
        survived.iter().min().unwrap()
    ));
    // The generator must actually lose something sometimes, or it tests
    // nothing.
    assert!(cut > 10 && whole > 0, "whole {whole}, cut {cut}");
}

#[test]
fn an_old_header_page_after_a_clean_close_loses_nothing_after_a_restart() {
    // Issue 9, defect 1: 125 records over several small segments, dropped
    // without a flush (a clean close), and segment 0's header page put
    // back as it was after 40 records, the data pages left as they were.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("log");
    let seg0 = dir.join("0000000000000000.tlog");
    let log = options().open(&dir).unwrap();
    let mut a = log.appender().unwrap();
    let mut old_header = Vec::new();
    for i in 0..125u64 {
        a.append(&payload(9, i, 1200)).unwrap();
        if i == 39 {
            old_header = fs::read(&seg0).unwrap()[..4096].to_vec();
        }
    }
    drop(a);
    drop(log);
    assert!(snapshot(&dir).len() >= 2);
    let truth = read_all(&Log::open_read_only(&dir).unwrap()).unwrap();
    assert_eq!(truth.len(), 125);
    let mut image = fs::read(&seg0).unwrap();
    image[..4096].copy_from_slice(&old_header);

    // On the same boot (a header written back late by hand): recovery of
    // segment 0 runs although later segments are clean, and keeps all.
    let same = tmp.path().join("same");
    fs::create_dir(&same).unwrap();
    for e in fs::read_dir(&dir).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), same.join(e.file_name())).unwrap();
    }
    fs::write(same.join("0000000000000000.tlog"), &image).unwrap();
    let log = options().open(&same).unwrap();
    assert!(log.recovery().ran, "{:?}", log.recovery());
    assert_eq!(read_all(&log).unwrap(), truth);
    let pos = log.appender().unwrap().append(b"after").unwrap();
    drop(log);
    let log = options().open(&same).unwrap();
    let all = read_all(&log).unwrap();
    assert_eq!(all.len(), 126);
    assert_eq!(all[125], (pos, b"after".to_vec()));

    // After a restart: the same image, recovered as after a power cut.
    let imgdir = tmp.path().join("images").join("defect1");
    fs::create_dir_all(&imgdir).unwrap();
    for e in fs::read_dir(&dir).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), imgdir.join(e.file_name())).unwrap();
    }
    fs::write(imgdir.join("0000000000000000.tlog"), &image).unwrap();
    let Some(lines) = recover_after_restart(tmp.path(), &truth, 0, 2) else {
        return;
    };
    // Every data page is there, so nothing is lost.
    assert_eq!(lines, vec!["ok defect1 125".to_owned()]);
}
