//! `tidelog bench --durability`: acknowledgements per second under each
//! durability policy, with 1, 4 and 16 appenders as threads of one process
//! and as processes, beside one `fdatasync` per append measured in the same
//! run.
//!
//! An acknowledgement is an `append` that returned `Ok`: under
//! `every-append` it is durable (on stable storage); under `buffered` and
//! `periodic` it is in the shared page cache (durable after the next sync,
//! or the next period). The baseline appends the same records to a plain
//! file, each `write` followed by its own `fdatasync`, from the same number
//! of threads: what a producer that needs "on disk before I acknowledge"
//! pays without group commit.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use tidelog::{Durability, GroupCommit, Options};

use super::{Figure, Result};

/// The periodic policy's interval in the benchmark.
pub const PERIOD: Duration = Duration::from_millis(100);

/// Arguments of the hidden `tidelog bench-durable-worker`: one appender
/// process of a durability run.
#[derive(Debug, clap::Args)]
pub struct DurableWorkerArgs {
    #[arg(long)]
    dir: PathBuf,
    #[arg(long)]
    policy: String,
    #[arg(long)]
    size: usize,
    #[arg(long)]
    seconds: f64,
    #[arg(long)]
    segment_mib: u64,
}

fn durability(policy: &str) -> Result<Durability> {
    Ok(match policy {
        "buffered" => Durability::Buffered,
        "periodic" => Durability::Periodic(PERIOD),
        "every-append" => Durability::EveryAppend,
        other => return Err(format!("unknown policy {other}").into()),
    })
}

fn options(policy: &str, segment_mib: u64) -> Result<Options> {
    let mut gc = GroupCommit::default();
    if let Some(us) = std::env::var("TIDELOG_BENCH_GC_DELAY_US")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        gc.max_delay = Duration::from_micros(us);
    }
    Ok(Options::new()
        .segment_capacity(segment_mib << 20)
        .durability(durability(policy)?)
        .group_commit(gc))
}

/// Appends `size`-byte records with `appender` until `stop`; returns how
/// many were acknowledged.
fn append_until(log: &tidelog::Log, size: usize, stop: &AtomicBool) -> Result<u64> {
    let mut a = log.appender()?;
    let mut rec = vec![0x5Au8; size];
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        rec[..8].copy_from_slice(&n.to_le_bytes());
        a.append(&rec)?;
        n += 1;
    }
    Ok(n)
}

/// The worker: opens the log, says `ready`, waits for a line, appends for
/// the given time, prints the count.
pub fn worker(args: DurableWorkerArgs) -> Result<ExitCode> {
    let log = options(&args.policy, args.segment_mib)?.open(&args.dir)?;
    let stop = Arc::new(AtomicBool::new(false));
    println!("ready");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    if line.trim() != "go" {
        // The parent went away (end of input) or said something else.
        return Err("bench-durable-worker: no go from the parent".into());
    }
    let timer = {
        let stop = Arc::clone(&stop);
        let d = Duration::from_secs_f64(args.seconds);
        std::thread::spawn(move || {
            std::thread::sleep(d);
            stop.store(true, Ordering::Relaxed);
        })
    };
    let n = append_until(&log, args.size, &stop)?;
    timer.join().map_err(|_| "timer thread panicked")?;
    log.close()?;
    println!("{n}");
    Ok(ExitCode::SUCCESS)
}

/// Runs `f` on `threads` threads started together, for `seconds`, then
/// tells them to stop (the flag `f` watches) and sums what they return:
/// the one clock both the library runs and the baseline are timed by.
fn timed_threads<F>(threads: usize, seconds: f64, f: F) -> Result<u64>
where
    F: Fn(&AtomicBool) -> std::result::Result<u64, String> + Sync,
{
    let stop = AtomicBool::new(false);
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| -> Result<u64> {
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    f(&stop)
                })
            })
            .collect();
        barrier.wait();
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
        let mut total = 0;
        for h in hs {
            total += h.join().map_err(|_| "a benchmark thread panicked")??;
        }
        Ok(total)
    })
}

/// The worker processes of one run, killed if the run fails part way.
struct Workers(Vec<(std::process::Child, BufReader<std::process::ChildStdout>)>);

impl Drop for Workers {
    fn drop(&mut self) {
        for (c, _) in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One run: `appenders` threads (or processes) under `policy` for
/// `seconds`; acknowledgements per second.
fn run_log(
    dir: &Path,
    policy: &str,
    appenders: usize,
    processes: bool,
    size: usize,
    seconds: f64,
    segment_mib: u64,
) -> Result<f64> {
    let _ = std::fs::remove_dir_all(dir);
    if processes {
        let mut workers = Workers(Vec::new());
        for _ in 0..appenders {
            let mut c = Command::new(std::env::current_exe()?)
                .arg("bench-durable-worker")
                .arg("--dir")
                .arg(dir)
                .args(["--policy", policy])
                .args(["--size", &size.to_string()])
                .args(["--seconds", &seconds.to_string()])
                .args(["--segment-mib", &segment_mib.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()?;
            let out = BufReader::new(c.stdout.take().ok_or("no stdout")?);
            workers.0.push((c, out));
            let (_, out) = workers.0.last_mut().ok_or("no worker")?;
            let mut line = String::new();
            out.read_line(&mut line)?;
            if line.trim() != "ready" {
                return Err("a durability worker did not get ready".into());
            }
        }
        for (c, _) in &mut workers.0 {
            writeln!(c.stdin.as_mut().ok_or("no stdin")?, "go")?;
        }
        let mut total = 0u64;
        for (c, out) in &mut workers.0 {
            let mut line = String::new();
            out.read_line(&mut line)?;
            total += line
                .trim()
                .parse::<u64>()
                .map_err(|_| format!("a durability worker said {line:?}"))?;
            if !c.wait()?.success() {
                return Err("a durability worker failed".into());
            }
        }
        return Ok(total as f64 / seconds);
    }
    let log = options(policy, segment_mib)?.open(dir)?;
    let total = timed_threads(appenders, seconds, |stop| {
        append_until(&log, size, stop).map_err(|e| e.to_string())
    })?;
    log.close()?;
    Ok(total as f64 / seconds)
}

/// The baseline: `threads` threads append `size`-byte records to one file
/// (each at its own offset, reserved with an atomic add), each write
/// followed by its own `fdatasync`.
fn run_fdatasync(dir: &Path, threads: usize, size: usize, seconds: f64) -> Result<f64> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    let file = std::fs::File::create(dir.join("fdatasync.dat"))?;
    let next = AtomicU64::new(0);
    let total = timed_threads(threads, seconds, |stop| {
        let rec = vec![0x5Au8; size];
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            let at = next.fetch_add(size as u64, Ordering::Relaxed);
            file.write_all_at(&rec, at).map_err(|e| e.to_string())?;
            file.sync_data().map_err(|e| e.to_string())?;
            n += 1;
        }
        Ok(n)
    })?;
    Ok(total as f64 / seconds)
}

/// Every run of the durability scenario, as figures.
pub fn figures(
    tmp: &Path,
    size: usize,
    seconds: f64,
    segment_mib: u64,
    mut progress: impl FnMut(&str),
) -> Result<Vec<Figure>> {
    let dir = tmp.join("durability");
    let mut out = Vec::new();
    let mut at16 = std::collections::HashMap::new();
    for n in [1usize, 4, 16] {
        progress(&format!(
            "durability: one fdatasync per append, {n} threads"
        ));
        let base = run_fdatasync(&dir, n, size, seconds)?;
        at16.insert(("fdatasync", false, n), base);
        out.push(Figure::new(
            "durability",
            &format!("one fdatasync per append, {n} thread(s)"),
            base,
            "acks/s",
        ));
        for policy in ["buffered", "periodic", "every-append"] {
            for processes in [false, true] {
                let what = if processes { "processes" } else { "threads" };
                progress(&format!("durability: {policy}, {n} {what}"));
                let rate = run_log(&dir, policy, n, processes, size, seconds, segment_mib)?;
                at16.insert((policy, processes, n), rate);
                let label = if policy == "periodic" {
                    format!("periodic ({} ms), {n} {what}", PERIOD.as_millis())
                } else {
                    format!("{policy}, {n} {what}")
                };
                out.push(Figure::new("durability", &label, rate, "acks/s"));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let get = |k: (&'static str, bool, usize)| at16.get(&k).copied().unwrap_or(f64::NAN);
    for processes in [false, true] {
        let what = if processes { "processes" } else { "threads" };
        out.push(Figure::new(
            "durability",
            &format!("group commit, 16 {what}: every-append / one fdatasync per append"),
            get(("every-append", processes, 16)) / get(("fdatasync", false, 16)),
            "x",
        ));
        out.push(Figure::new(
            "durability",
            &format!("group commit, 16 {what}: every-append / one fdatasync per append, 1 thread"),
            get(("every-append", processes, 16)) / get(("fdatasync", false, 1)),
            "x",
        ));
        out.push(Figure::new(
            "durability",
            &format!("periodic cost, 16 {what}: 1 - periodic / buffered"),
            100.0 * (1.0 - get(("periodic", processes, 16)) / get(("buffered", processes, 16))),
            "%",
        ));
    }
    Ok(out)
}
